#!/usr/bin/env bash
# Installs what vlnet's build and tests need on Debian 12 and mounts bpffs.
# Idempotent: apt runs only when a package is missing, bpffs is mounted once.
set -euo pipefail

if [[ $EUID -ne 0 ]]; then
    echo "install-deps.sh: run as root (sudo bash tests/install-deps.sh)" >&2
    exit 1
fi

packages=(
    clang-19 llvm-19 libbpf-dev bpftool      # building the eBPF programs
    iproute2 iputils-ping ethtool util-linux procps # namespaces, veth, bridges, nsenter, sysctl
    nftables                                  # NAT and link cuts in the WAN test-bed
    iperf3 tshark tcpdump                     # probes
    prometheus                                # scrape test
    wireguard-go wireguard-tools              # WireGuard interop peer
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    echo "install-deps.sh: installing ${missing[*]}"
    apt-get update
    # tshark asks whether non-root users may capture; the tests run as root.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
    echo "install-deps.sh: all packages present"
fi

# vlnet pins its maps and programs under /sys/fs/bpf/vlnet/.
if ! mountpoint -q /sys/fs/bpf || [[ $(stat -f -c %T /sys/fs/bpf) != bpf_fs ]]; then
    mount -t bpf bpf /sys/fs/bpf
    echo "install-deps.sh: mounted bpffs at /sys/fs/bpf"
fi
mkdir -p /sys/fs/bpf/vlnet
