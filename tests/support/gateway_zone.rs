//! The FRR node and VMs of the EVPN gateway tests (`evpn_gateway`,
//! `evpn_direct_member`): a cluster bed whose controller is the gateway,
//! and an FRR node on its cloud LAN.

use std::net::Ipv4Addr;
use std::time::Duration;

use vlnet_lab::beds::cluster::{Cluster, SECURE_VM_MTU};
use vlnet_lab::beds::scenario::{vm_ip, vm_mac, BRIDGE, VNI};
use vlnet_lab::primitives::probe::{self, PingReport};
use vlnet_lab::primitives::topology::VM_IF;
use vlnet_lab::{Host, Vm};

use super::frr;

/// Index of the FRR node's VM that migrates (its MAC and overlay address).
pub const FRR_VM: usize = 60;
/// Index of the FRR node's VM that stays.
pub const FRR_VM_STAYS: usize = 61;

/// A VM on `host`'s bridge with VM index `i`'s MAC and address, at the
/// cluster's VM MTU (its frames to clients go through WireGuard).
pub fn secure_vm(host: &Host, name: &str, i: usize) -> Vm {
    let vm = host.add_vm(name, BRIDGE, &vm_mac(i), vm_ip(i), 24).unwrap();
    let mtu = SECURE_VM_MTU.to_string();
    vm.ns()
        .run(&["ip", "link", "set", VM_IF, "mtu", &mtu])
        .unwrap();
    vm
}

/// The FRR node at cloud LAN index `index` (VTEP `vtep`): its bridge with a
/// kernel VXLAN device that does not learn, as Proxmox's EVPN zone writes
/// it, and its two VMs ([`FRR_VM`], [`FRR_VM_STAYS`]).
pub fn frr_node(c: &Cluster, index: u8, vtep: Ipv4Addr) -> (Host, Vm, Vm) {
    let host = c.wan.add_cloud_host("frr", index).unwrap();
    host.add_bridge(BRIDGE).unwrap();
    frr::add_vxlan(host.ns().name(), VNI, BRIDGE, vtep);
    let moves = secure_vm(&host, "fvm", FRR_VM);
    let stays = secure_vm(&host, "fvm2", FRR_VM_STAYS);
    (host, moves, stays)
}

/// Five pings 100 ms apart from `from` to `to`.
pub fn pings(from: &Vm, to: Ipv4Addr) -> PingReport {
    probe::ping(from.ns(), to, 5, Duration::from_millis(100)).unwrap()
}
