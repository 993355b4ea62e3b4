#!/usr/bin/env bash
# vlnet hookscript for Proxmox VE: once a guest (a VM or a container) has
# started on this node, tell vlnet that its MACs live here, so every VTEP
# switches its path at once even when nothing announces the guest (a VM
# stopped on one node and started on another, a container after its restart
# migration; QEMU's own RARPs cover live migrations).
#
# Install on every node (the .deb puts it in /usr/share/vlnet/;
# deploy/install.sh --proxmox copies it; see deploy/PROXMOX.md, which also
# shows how to chain it with a hookscript a guest already has):
#   cp /usr/share/vlnet/vlnet-hook.sh /var/lib/vz/snippets/vlnet-hook.sh
#   qm set <vmid> --hookscript local:snippets/vlnet-hook.sh
#   pct set <ctid> --hookscript local:snippets/vlnet-hook.sh
#
# Proxmox calls it as: vlnet-hook.sh <id> <phase>, with phase pre-start,
# post-start, pre-stop or post-stop, for VMs and containers alike. On the
# target of a VM's live migration post-start runs when QEMU starts waiting
# for the incoming state, with PVE_MIGRATED_FROM set, while the VM still
# runs on the source: announcing then would pull its traffic away too early,
# so the hook leaves that case to QEMU's announce after the switchover. A
# container never runs in two places (it migrates by restarting): it is
# announced after every start. Interfaces on bridges vlnet does not serve
# are skipped (vlnet says so); the hook never fails the guest's start.
set -uo pipefail

id=${1:?usage: $0 ID PHASE}
phase=${2:?usage: $0 ID PHASE}
# Proxmox runs hooks with PATH=/sbin:/bin:/usr/sbin:/usr/bin, so the path is
# absolute; the .deb and deploy/install.sh write theirs here.
vlnet=${VLNET:-/usr/local/bin/vlnet}

[[ $phase == post-start ]] || exit 0

# A VM's netN: virtio=BC:24:11:2A:3B:4C,bridge=vnet100,firewall=1
# A container's netN: name=eth0,bridge=vnet100,hwaddr=BC:24:11:2A:3B:4E,ip=dhcp,type=veth
if config=$(qm config "$id" 2>/dev/null); then
    [[ -z ${PVE_MIGRATED_FROM:-} ]] || exit 0
    guest="VM $id"
    mac_key='[a-z0-9_-]+'
elif config=$(pct config "$id" 2>/dev/null); then
    guest="container $id"
    mac_key=hwaddr
else
    echo "vlnet-hook: $id is neither a VM (qm config) nor a container (pct config): nothing announced" >&2
    exit 0
fi

while IFS= read -r line; do
    [[ $line =~ ^net[0-9]+:\ (.*)$ ]] || continue
    opts=${BASH_REMATCH[1]}
    mac=$(sed -nE "s/(^|.*,)$mac_key=([0-9A-Fa-f:]{17})(,.*|$)/\2/p" <<<"$opts" | head -n 1)
    bridge=$(sed -nE 's/(^|.*,)bridge=([^,]+).*/\2/p' <<<"$opts")
    [[ -n $mac && -n $bridge ]] || continue
    "$vlnet" ctl vm moved "$mac" --bridge "$bridge" ||
        echo "vlnet-hook: $guest: $mac on $bridge not announced" >&2
done <<<"$config"
exit 0
