//! MAC/IP routes (EVPN type 2 with an IP, RFC 7432 §7.2) between vlnet and
//! FRR 8.4 (Debian `frr`): a route reflector and a leaf with kernel VXLAN
//! without learning and `neigh_suppress`, as Proxmox's EVPN zone writes
//! them, the leaf's bridge holding an address as a Proxmox vnet with a
//! gateway does (zebra learns its VMs' addresses there), and a vlnet node
//! peering with the reflector; a VM behind vlnet and one behind the leaf.
//! Checks that vlnet advertises its VM's address, as its VM's ARP showed
//! it: the reflector holds the MAC/IP route and the leaf's `show evpn
//! arp-cache` lists the address behind vlnet's VTEP; that vlnet takes the
//! leaf VM's MAC/IP route as an ARP binding and answers its own VM's ARP
//! request for that address itself (`suppression.arp_replied` grows); and
//! that the address is withdrawn with its VM.
//! Needs root, `ip`, `bridge`, and `/usr/lib/frr/{zebra,bgpd}` + `vtysh`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use support::frr::{self, reachable, vlnet_fdb, wait_for, Role, Zone};
use support::node::vlnet_binary;
use vlnet_lab::primitives::probe;
use vlnet_lab::{Daemon, Underlay};

const ZONE: Zone = frr::VNI100;
const VLNET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const RR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const LEAF: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const VM_IP: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)];
const VM_MAC: [&str; 2] = ["02:00:00:00:a1:01", "02:00:00:00:a2:01"];
/// The leaf's bridge address (a vnet's gateway).
const LEAF_GATEWAY: &str = "192.0.2.254/24";

/// vlnet's `suppression` counter or gauge `field` (`ctl status --json`).
fn suppression(daemon: &Daemon, field: &str) -> u64 {
    daemon.status_json().unwrap()["suppression"][field]
        .as_u64()
        .unwrap()
}

#[test]
fn vlnet_and_frr_exchange_their_vms_addresses_as_mac_ip_routes() {
    let underlay = Underlay::new("emi").unwrap();
    let rr = ZONE.frr_node(&underlay, "rr", RR, Role::Reflector(&[VLNET, LEAF]));
    let leaf = ZONE.frr_node(&underlay, "leaf", LEAF, Role::Client(&[RR]));
    leaf.sh(&format!("ip addr add {LEAF_GATEWAY} dev {}", ZONE.bridge));
    let vl_host = ZONE.host(&underlay, "vl", VLNET);
    let daemon = Daemon::start(
        vl_host.ns(),
        ZONE.vlnet_spec("emi", VLNET, &[RR]),
        vlnet_binary(),
    )
    .expect("vlnet daemon");
    let vm0 = ZONE.vm(&vl_host, "vm0", VM_MAC[0], VM_IP[0]);
    let _vm1 = ZONE.vm(&leaf.host, "vm1", VM_MAC[1], VM_IP[1]);
    let context = |what: &str| {
        format!(
            "{what}\n--- RR MAC/IP routes:\n{}\n--- leaf ARP cache:\n{}\n--- vlnet status: {}\n\
             --- vlnet FDB: {}\n--- vlnet log:\n{}",
            rr.vtysh("show bgp l2vpn evpn route type macip"),
            leaf.vtysh(&format!("show evpn arp-cache vni {}", ZONE.vni)),
            daemon
                .status_json()
                .map(|s| s["suppression"].to_string())
                .unwrap_or_default(),
            vlnet_fdb(&daemon),
            daemon.log_tail(30)
        )
    };
    assert!(
        wait_for(Duration::from_secs(30), || rr.established(VLNET)
            && rr.established(LEAF)),
        "{}",
        context("the sessions did not come up")
    );
    // vm0's ARP teaches vlnet its address; the leaf's bridge resolving vm1
    // teaches zebra vm1's.
    assert!(
        reachable(&vm0, VM_IP[1], Duration::from_secs(20)),
        "{}",
        context("vm0 does not reach vm1")
    );
    leaf.sh(&format!("ping -c 1 -W 2 {}", VM_IP[1]));

    let ours = format!("[2]:[0]:[48]:[{}]:[32]:[{}]", VM_MAC[0], VM_IP[0]);
    assert!(
        wait_for(Duration::from_secs(10), || rr
            .vtysh("show bgp l2vpn evpn route type macip")
            .contains(&ours)),
        "{}",
        context("the reflector did not get vlnet's MAC/IP route")
    );
    assert!(
        wait_for(Duration::from_secs(10), || {
            let cache = leaf.vtysh(&format!("show evpn arp-cache vni {}", ZONE.vni));
            cache.lines().any(|l| {
                l.contains(&VM_IP[0].to_string())
                    && l.contains("remote")
                    && l.contains(&VLNET.to_string())
            })
        }),
        "{}",
        context("the leaf does not list vm0's address behind vlnet")
    );

    // The leaf's MAC/IP route for vm1 becomes a binding here, and vm0's
    // next ARP request for it is answered by vlnet.
    assert!(
        wait_for(Duration::from_secs(10), || suppression(
            &daemon,
            "bindings_control"
        ) >= 1),
        "{}",
        context("vlnet holds no binding from the leaf's MAC/IP route")
    );
    let before = suppression(&daemon, "arp_replied");
    vm0.ns()
        .run(&[
            "ip",
            "neigh",
            "flush",
            "dev",
            vlnet_lab::primitives::topology::VM_IF,
        ])
        .unwrap();
    let ping = probe::ping(vm0.ns(), VM_IP[1], 3, Duration::from_millis(100)).unwrap();
    assert_eq!(ping.received, 3, "{}", context(&format!("{ping:?}")));
    assert!(
        suppression(&daemon, "arp_replied") > before,
        "{}",
        context("vlnet did not answer vm0's ARP request for vm1")
    );

    // vm0 goes: its MAC/IP route goes with its MAC route.
    drop(vm0);
    assert!(
        wait_for(Duration::from_secs(10), || !rr
            .vtysh("show bgp l2vpn evpn route type macip")
            .contains(&ours)),
        "{}",
        context("vm0's MAC/IP route outlived vm0")
    );
}
