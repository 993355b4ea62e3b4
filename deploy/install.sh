#!/usr/bin/env bash
# Installs (or with --uninstall removes) vlnet from a source tree: the
# binary, the systemd unit, the example config, the Proxmox hookscript, the
# Prometheus and Grafana files and the docs. See deploy/PROXMOX.md.
#
#   deploy/install.sh [--prefix DIR] [--destdir DIR] [--binary PATH] [--proxmox]
#   deploy/install.sh --uninstall [--prefix DIR] [--destdir DIR] [--proxmox]
#
# Layout (DESTDIR prepended to every path, as in a package build):
#   PREFIX/bin/vlnet                     0755, replaced atomically (a running
#                                        daemon keeps its old copy)
#   /etc/systemd/system/vlnet.service    0644, ExecStart = PREFIX/bin/vlnet
#   /etc/vlnet/vlnet.toml                0640, only if there is none
#   /etc/vlnet/vlnet.toml.example        0644, always the current example
#   PREFIX/share/vlnet/vlnet-hook.sh     0755, calls PREFIX/bin/vlnet; with
#     or /var/lib/vz/snippets/...        --proxmox in the `local` storage's
#                                        snippets directory instead
#   PREFIX/share/vlnet/prometheus/, grafana/   monitoring files, 0644
#   PREFIX/share/doc/vlnet/              README.md, PROXMOX.md, 0644
#
# --uninstall removes all of that except /etc/vlnet (configs) and the state
# (/var/lib/vlnet, pinned programs), and except a hookscript in the snippets
# directory: Proxmox refuses to start a VM whose hookscript is missing.
set -euo pipefail

usage="usage: $0 [--prefix DIR] [--destdir DIR] [--binary PATH] [--proxmox] [--uninstall]"
src=$(cd "$(dirname "$0")/.." && pwd)
prefix=/usr/local
destdir=
binary=$src/target/release/vlnet
proxmox=0
uninstall=0

die() {
    echo "install.sh: $*" >&2
    exit 1
}

# The value of option $1, given as $2 (the next argument).
value() {
    [[ $# -ge 2 && -n $2 && $2 != --* ]] || die "$1 needs a value ($usage)"
    printf '%s' "$2"
}

while [[ $# -gt 0 ]]; do
    case $1 in
    --prefix) prefix=$(value "$@"); shift ;;
    --destdir) destdir=$(value "$@"); shift ;;
    --binary) binary=$(value "$@"); shift ;;
    --proxmox) proxmox=1 ;;
    --uninstall) uninstall=1 ;;
    -h | --help)
        echo "$usage"
        exit 0
        ;;
    *) die "unknown option '$1' ($usage)" ;;
    esac
    shift
done

# The prefix ends up in the unit's ExecStart and in sed expressions.
[[ $prefix =~ ^/[A-Za-z0-9._/+-]*$ ]] ||
    die "--prefix must be an absolute path of letters, digits and ._/+- (got '$prefix')"
prefix=${prefix%/}
destdir=${destdir%/}
if [[ -z $destdir && $EUID -ne 0 ]]; then
    die "installing into / needs root (run it as root), or stage with --destdir DIR"
fi

[[ -f $src/deploy/vlnet.service ]] || die "$src is not a vlnet source tree (no deploy/vlnet.service)"

bin=$prefix/bin/vlnet
unit=/etc/systemd/system/vlnet.service
enabled=/etc/systemd/system/multi-user.target.wants/vlnet.service
etc=/etc/vlnet
share=$prefix/share/vlnet
doc=$prefix/share/doc/vlnet
snippets=/var/lib/vz/snippets
hook=$share/vlnet-hook.sh
((proxmox)) && hook=$snippets/vlnet-hook.sh
monitoring=(prometheus/prometheus.yml prometheus/vlnet-alerts.yml
    prometheus/vlnet-alerts.test.yml grafana/vlnet-dashboard.json)
docs=(README.md deploy/PROXMOX.md)

# Copies $2 to $DESTDIR$3 with mode $1 through a temporary file and a rename,
# so the file is never seen half-written and a running binary is replaced,
# not overwritten. Reads stdin when $2 is "-".
put() {
    local mode=$1 from=$2 to=$destdir$3
    mkdir -p "$(dirname "$to")"
    local tmp
    tmp=$(mktemp "$to.XXXXXX")
    if [[ $from == - ]]; then cat >"$tmp"; else cat "$from" >"$tmp"; fi
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$to"
    echo "  $to"
}

# systemd reads units again, when it runs this system.
reload_systemd() {
    if [[ -z $destdir && -d /run/systemd/system ]]; then
        systemctl daemon-reload
    fi
}

if ((uninstall)); then
    if [[ -z $destdir && -d /run/systemd/system ]] && systemctl is-active --quiet vlnet; then
        die "vlnet.service is running: stop it first with 'vlnet ctl teardown' (forwarding stops) and 'systemctl disable vlnet'"
    fi
    echo "Removing vlnet:"
    for f in "$bin" "$unit" "$enabled" "$share/vlnet-hook.sh" "$etc/vlnet.toml.example" \
        "${monitoring[@]/#/$share/}" "$doc/README.md" "$doc/PROXMOX.md"; do
        if [[ -e $destdir$f || -L $destdir$f ]]; then
            rm -f "$destdir$f"
            echo "  $destdir$f"
        fi
    done
    for d in "$share/prometheus" "$share/grafana" "$share" "$doc"; do
        rmdir "$destdir$d" 2>/dev/null || true
    done
    reload_systemd
    echo "Kept: $destdir$etc (configs), /var/lib/vlnet (state)."
    if [[ -e $destdir$snippets/vlnet-hook.sh ]]; then
        echo "Kept: $destdir$snippets/vlnet-hook.sh; detach it from each VM" \
            "(qm set VMID --delete hookscript), then delete it."
    fi
    exit 0
fi

[[ -f $binary ]] || die "no vlnet binary at $binary: build it (cargo build --release) or pass --binary PATH"
[[ -x $binary ]] || die "$binary is not executable"

echo "Installing vlnet:"
put 0755 "$binary" "$bin"
sed -e "s|^ExecStart=[^ ]*/vlnet |ExecStart=$bin |" \
    -e "s|^ExecReload=[^ ]*/vlnet |ExecReload=$bin |" \
    -e "s|^Documentation=file://[^ ]*/README.md|Documentation=file://$doc/README.md|" \
    "$src/deploy/vlnet.service" | put 0644 - "$unit"
grep -q "^ExecStart=$bin " "$destdir$unit" || die "could not set ExecStart in $destdir$unit"
put 0644 "$src/deploy/vlnet.toml.example" "$etc/vlnet.toml.example"
if [[ -e $destdir$etc/vlnet.toml ]]; then
    echo "  $destdir$etc/vlnet.toml exists: kept"
else
    put 0640 "$src/deploy/vlnet.toml.example" "$etc/vlnet.toml"
fi
sed "s|^vlnet=\${VLNET:-[^}]*}|vlnet=\${VLNET:-$bin}|" "$src/deploy/proxmox-hookscript.sh" |
    put 0755 - "$hook"
grep -qF "vlnet=\${VLNET:-$bin}" "$destdir$hook" || die "could not set the vlnet path in $destdir$hook"
for f in "${monitoring[@]}"; do
    put 0644 "$src/deploy/$f" "$share/$f"
done
for f in "${docs[@]}"; do
    put 0644 "$src/$f" "$doc/$(basename "$f")"
done
reload_systemd

cat <<EOF

Next steps:
  1. Edit $etc/vlnet.toml (every key: $etc/vlnet.toml.example).
  2. systemctl daemon-reload && systemctl enable --now vlnet
  3. vlnet ctl status
EOF
if ((proxmox)); then
    echo "  4. Per VM: qm set VMID --hookscript local:snippets/vlnet-hook.sh" \
        "(the 'local' storage needs content type 'snippets'; see $doc/PROXMOX.md)"
fi
