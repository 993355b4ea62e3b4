#!/usr/bin/env bash
# vlnet hookscript for Proxmox VE: once a VM has started on this node, tell
# vlnet that its MACs live here, so every VTEP switches its path at once
# even when nothing announces the VM (a VM stopped on one node and started
# on another; QEMU's own RARPs cover live migrations).
#
# Install on every node (deploy/install.sh --proxmox does the copy; see
# deploy/PROXMOX.md):
#   cp deploy/proxmox-hookscript.sh /var/lib/vz/snippets/vlnet-hook.sh
#   chmod +x /var/lib/vz/snippets/vlnet-hook.sh
#   qm set <vmid> --hookscript local:snippets/vlnet-hook.sh
#
# Proxmox calls it as: vlnet-hook.sh <vmid> <phase>, with phase pre-start,
# post-start, pre-stop or post-stop. On the target of a live migration
# post-start runs when QEMU starts waiting for the incoming state, with
# PVE_MIGRATED_FROM set, while the VM still runs on the source: announcing
# then would pull its traffic away too early, so the hook leaves that case
# to QEMU's announce after the switchover. Interfaces on bridges vlnet does
# not serve are skipped (vlnet says so; the hook never fails the VM's start).
set -uo pipefail

vmid=${1:?usage: $0 VMID PHASE}
phase=${2:?usage: $0 VMID PHASE}
# Proxmox runs hooks with PATH=/sbin:/bin:/usr/sbin:/usr/bin, so the path is
# absolute; deploy/install.sh writes its --prefix here.
vlnet=${VLNET:-/usr/local/bin/vlnet}

[[ $phase == post-start && -z ${PVE_MIGRATED_FROM:-} ]] || exit 0

# netN lines look like: net0: virtio=BC:24:11:2A:3B:4C,bridge=vnet100,firewall=1
qm config "$vmid" | while IFS= read -r line; do
    [[ $line =~ ^net[0-9]+:\ (.*)$ ]] || continue
    opts=${BASH_REMATCH[1]}
    mac=$(sed -nE 's/^[a-z0-9_-]+=([0-9A-Fa-f:]{17}).*/\1/p' <<<"$opts")
    bridge=$(sed -nE 's/.*(^|,)bridge=([^,]+).*/\2/p' <<<"$opts")
    [[ -n $mac && -n $bridge ]] || continue
    "$vlnet" ctl vm moved "$mac" --bridge "$bridge" ||
        echo "vlnet-hook: VM $vmid: $mac on $bridge not announced" >&2
done
exit 0
