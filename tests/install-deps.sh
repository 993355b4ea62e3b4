#!/usr/bin/env bash
# Installs what vlnet's build and tests need on Debian 12 and mounts bpffs.
# Idempotent: apt runs only when a package is missing, bpffs is mounted once.
set -euo pipefail

if [[ $EUID -ne 0 ]]; then
    echo "install-deps.sh: run as root (bash tests/install-deps.sh)" >&2
    exit 1
fi

packages=(
    clang-19 llvm-19 libbpf-dev linux-libc-dev bpftool # the eBPF programs; bpftool for tests
    iproute2 iputils-ping ethtool util-linux procps # namespaces, veth, bridges, nsenter, sysctl
    nftables                                  # NAT and link cuts in the WAN test-bed
    iperf3 tshark tcpdump iputils-arping      # probes; arping -U announces a moved VM
    prometheus                                # /usr/bin/prometheus and /usr/bin/promtool
    wireguard-go wireguard-tools              # WireGuard interop peer
    frr                                       # EVPN interop: zebra + bgpd (tests/evpn_*.rs)
    gobgpd                                    # EVPN route reflector that keeps a restarting node's routes
    qemu-system-x86 busybox-static            # live migration of a real guest
    systemd                                   # systemd-analyze verify of deploy/vlnet.service
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
    # Package scripts must not start services (prometheus would listen on
    # :9090): a policy-rc.d answering 101 ("forbidden") stops both
    # invoke-rc.d (no systemd, e.g. a container) and deb-systemd-invoke. One
    # already in place (a container image's) is left alone.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
        trap 'rm -f "$policy"' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    if ((own_policy)); then
        rm -f "$policy"
        trap - EXIT
    fi
    # Under systemd the unit is still enabled for the next boot; the tests
    # start their own servers, so a prometheus installed here stays off.
    if [[ " ${missing[*]} " == *" prometheus "* && -d /run/systemd/system ]]; then
        systemctl disable --now prometheus.service
    fi
    # Likewise frr: the tests/evpn_*.rs run their own zebra and bgpd.
    if [[ " ${missing[*]} " == *" frr "* && -d /run/systemd/system ]]; then
        systemctl disable --now frr.service
    fi
    # And gobgpd: tests/evpn_graceful_restart.rs runs its own.
    if [[ " ${missing[*]} " == *" gobgpd "* && -d /run/systemd/system ]]; then
        systemctl disable --now gobgpd.service
    fi
else
    echo "install-deps.sh: all packages present"
fi

# The .deb (deploy/deb/build.sh, tests/package.rs) is packed by cargo-deb,
# built once from crates.io into ~/.cargo/bin.
if ! command -v cargo-deb >/dev/null; then
    echo "install-deps.sh: installing cargo-deb"
    cargo install cargo-deb --locked
fi

# vlnet pins its maps and programs under /sys/fs/bpf/vlnet/.
if ! mountpoint -q /sys/fs/bpf || [[ $(stat -f -c %T /sys/fs/bpf) != bpf_fs ]]; then
    mount -t bpf bpf /sys/fs/bpf
    echo "install-deps.sh: mounted bpffs at /sys/fs/bpf"
fi
mkdir -p /sys/fs/bpf/vlnet

# The live-migration guest: a Debian cloud kernel and the virtio-net modules
# its busybox initramfs loads, extracted once into $guest_dir.
guest_dir=/var/cache/vlnet/guest
guest_kernel_package() {
    apt-cache search --names-only '^linux-image-[0-9][0-9.]*-[0-9]+-cloud-amd64$' \
        | awk '{print $1}' | sort -V | tail -1
}
if [[ ! -f $guest_dir/vmlinuz ]]; then
    pkg=$(guest_kernel_package)
    if [[ -z $pkg ]]; then
        apt-get update
        pkg=$(guest_kernel_package)
    fi
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && apt-get download "$pkg" >/dev/null 2>&1 && dpkg-deb -x ./*.deb root)
    mkdir -p "$guest_dir"
    cp "$work"/root/boot/vmlinuz-* "$guest_dir/vmlinuz"
    for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
        failover net_failover virtio_net; do
        find "$work/root/lib/modules" -name "$m.ko" -exec cp {} "$guest_dir/" \;
    done
    echo "install-deps.sh: guest kernel $pkg in $guest_dir"
fi
