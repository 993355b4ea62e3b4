#!/usr/bin/env bash
# vlnet hookscript for Proxmox VE: once a VM runs on this node after a
# migration (or a start), tell vlnet that its MACs live here, so every VTEP
# switches its path at once even when the guest or hypervisor sends no
# announce (QEMU normally sends RARPs itself; this is the safety net).
#
# Install on every node:
#   cp deploy/proxmox-hookscript.sh /var/lib/vz/snippets/vlnet-hook.sh
#   chmod +x /var/lib/vz/snippets/vlnet-hook.sh
#   qm set <vmid> --hookscript local:snippets/vlnet-hook.sh
#
# Proxmox calls it as: vlnet-hook.sh <vmid> <phase>. Interfaces on bridges
# vlnet does not serve are skipped (vlnet says so; the hook never fails the
# VM's start or migration).
set -uo pipefail

vmid=${1:?usage: $0 VMID PHASE}
phase=${2:?usage: $0 VMID PHASE}
vlnet=${VLNET:-vlnet}

case $phase in
post-migrate | post-start) ;;
*) exit 0 ;;
esac

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
