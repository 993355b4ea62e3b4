//! Two route reflectors (FRR 8.4, Debian `frr`), one FRR leaf and a vlnet
//! daemon peering with both reflectors, a VM behind the vlnet node, the
//! leaf and the second reflector (VNI 100, kernel VXLAN without learning on
//! the FRR nodes, as Proxmox's EVPN zone writes them). Checks that every VM
//! reaches every other; that killing the first reflector's bgpd (SIGKILL by
//! its pid file: its sessions drop at once, no NOTIFICATION) loses no ping
//! between the VMs while it happens and after, and no route held through
//! both reflectors (vlnet's FDB, the leaf's MACs); and that a VM added
//! afterwards on the leaf and one on the vlnet node are announced through
//! the second reflector alone: vlnet's `ctl fdb` lists the leaf's new MAC
//! behind the leaf, the leaf's `show evpn mac` lists vlnet's new MAC behind
//! vlnet, and the new VMs ping each other and the old ones. FRR's daemons
//! and the namespaces go even when a check fails.
//! Needs root, `ip`, `bridge`, and `/usr/lib/frr/{zebra,bgpd}` + `vtysh`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use support::frr::{
    self, holds_for, reachable, vlnet_fdb, vlnet_fdb_has, wait_for, FrrNode, Role, Zone,
};
use support::node::vlnet_binary;
use vlnet_lab::primitives::probe;
use vlnet_lab::{Daemon, Underlay, Vm};

const ZONE: Zone = frr::VNI100;
const VLNET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const RR1: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const RR2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const LEAF: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 4);
/// VMs 0–2 from the start (behind vlnet, the leaf, RR2), 3 and 4 added
/// after RR1 died (behind the leaf and vlnet).
const VM_IP: [Ipv4Addr; 5] = [
    Ipv4Addr::new(192, 0, 2, 1),
    Ipv4Addr::new(192, 0, 2, 2),
    Ipv4Addr::new(192, 0, 2, 3),
    Ipv4Addr::new(192, 0, 2, 4),
    Ipv4Addr::new(192, 0, 2, 5),
];
const VM_MAC: [&str; 5] = [
    "02:00:00:00:d1:01",
    "02:00:00:00:d2:01",
    "02:00:00:00:d3:01",
    "02:00:00:00:d2:02",
    "02:00:00:00:d1:02",
];
/// Pings across the kill: one every 20 ms for 4 s, RR1 killed after 1 s.
const PING_INTERVAL: Duration = Duration::from_millis(20);
const PINGS: u32 = 200;
const KILL_AFTER: Duration = Duration::from_secs(1);

/// The zone: reflectors first in the struct so their daemons stop first.
struct Bed {
    rr1: FrrNode,
    rr2: FrrNode,
    leaf: FrrNode,
    daemon: Daemon,
    vl_host: vlnet_lab::Host,
    _underlay: Underlay,
}

impl Bed {
    fn context(&self, what: &str) -> String {
        format!(
            "{what}\n--- RR2 summary:\n{}\n--- leaf MACs:\n{}\n--- vlnet FDB: {}\n--- vlnet evpn: {}\n--- vlnet log:\n{}",
            self.rr2.vtysh("show bgp l2vpn evpn summary"),
            self.leaf.vtysh(&format!("show evpn mac vni {}", ZONE.vni)),
            vlnet_fdb(&self.daemon),
            self.daemon.ctl(&["evpn", "--json"]).unwrap_or_default(),
            self.daemon.log_tail(40)
        )
    }
}

#[test]
fn the_zone_survives_a_route_reflector() {
    let started = Instant::now();
    let underlay = Underlay::new("evr").unwrap();
    let clients = [VLNET, LEAF];
    let rr1 = ZONE.frr_node(&underlay, "rr1", RR1, Role::Reflector(&clients));
    let rr2 = ZONE.frr_node(&underlay, "rr2", RR2, Role::Reflector(&clients));
    let leaf = ZONE.frr_node(&underlay, "leaf", LEAF, Role::Client(&[RR1, RR2]));
    let vl_host = ZONE.host(&underlay, "vl", VLNET);
    let daemon = Daemon::start(
        vl_host.ns(),
        ZONE.vlnet_spec("evr", VLNET, &[RR1, RR2]),
        vlnet_binary(),
    )
    .expect("vlnet daemon");
    let bed = Bed {
        rr1,
        rr2,
        leaf,
        daemon,
        vl_host,
        _underlay: underlay,
    };
    let vms = [
        ZONE.vm(&bed.vl_host, "vm0", VM_MAC[0], VM_IP[0]),
        ZONE.vm(&bed.leaf.host, "vm1", VM_MAC[1], VM_IP[1]),
        ZONE.vm(&bed.rr2.host, "vm2", VM_MAC[2], VM_IP[2]),
    ];
    assert!(
        wait_for(Duration::from_secs(30), || [&bed.rr1, &bed.rr2]
            .iter()
            .all(|rr| rr.established(VLNET) && rr.established(LEAF))),
        "{}",
        bed.context("the sessions with both reflectors did not come up")
    );
    every_pair_reachable(&bed, &vms);
    // Every MAC is known where it must be before the kill, so the pings
    // across it measure the failover, not the first announcements.
    assert!(
        wait_for(Duration::from_secs(10), || vlnet_fdb_has(
            &bed.daemon,
            ZONE.vni,
            VM_MAC[1],
            LEAF
        ) && vlnet_fdb_has(
            &bed.daemon,
            ZONE.vni,
            VM_MAC[2],
            RR2
        ) && bed
            .leaf
            .holds_remote(ZONE.vni, VM_MAC[0], VLNET)),
        "{}",
        bed.context("the MACs did not reach vlnet and the leaf")
    );

    pings_survive_the_kill(&bed, &vms);
    routes_stay_after_the_kill(&bed);
    new_macs_propagate_through_rr2(&bed, &vms);
    eprintln!("redundancy test took {:?}", started.elapsed());
}

/// After RR1's death vlnet's session with it is down, and nothing held
/// through both reflectors is gone.
fn routes_stay_after_the_kill(bed: &Bed) {
    assert!(
        wait_for(Duration::from_secs(5), || vlnet_session_state(
            &bed.daemon,
            RR1
        )
        .is_some_and(|s| s != "established")),
        "{}",
        bed.context("vlnet did not notice RR1's death")
    );
    // Pings would also pass by flooding: the routes themselves must stay,
    // held from RR2.
    assert!(
        holds_for(Duration::from_secs(2), || vlnet_fdb_has(
            &bed.daemon,
            ZONE.vni,
            VM_MAC[1],
            LEAF
        ) && vlnet_fdb_has(
            &bed.daemon,
            ZONE.vni,
            VM_MAC[2],
            RR2
        )),
        "{}",
        bed.context("vlnet dropped MACs that RR2 still reflects")
    );
    assert!(
        holds_for(Duration::from_secs(1), || bed
            .leaf
            .holds_remote(ZONE.vni, VM_MAC[0], VLNET)),
        "{}",
        bed.context("the leaf dropped vlnet's MAC that RR2 still reflects")
    );
    assert!(
        !bed.leaf.established(RR1) && bed.leaf.established(RR2),
        "{}",
        bed.context("the leaf should have lost RR1 and kept RR2")
    );
}

/// New VMs after RR1's death: their MACs travel through RR2 alone.
fn new_macs_propagate_through_rr2(bed: &Bed, vms: &[Vm; 3]) {
    let new_leaf_vm = ZONE.vm(&bed.leaf.host, "vm3", VM_MAC[3], VM_IP[3]);
    let new_vlnet_vm = ZONE.vm(&bed.vl_host, "vm4", VM_MAC[4], VM_IP[4]);
    assert!(
        reachable(&new_vlnet_vm, VM_IP[3], Duration::from_secs(20)),
        "{}",
        bed.context("the new VMs do not reach each other")
    );
    assert!(
        wait_for(Duration::from_secs(10), || vlnet_fdb_has(
            &bed.daemon,
            ZONE.vni,
            VM_MAC[3],
            LEAF
        )),
        "{}",
        bed.context("vlnet did not learn the leaf's new MAC through RR2")
    );
    assert!(
        wait_for(Duration::from_secs(10), || bed
            .leaf
            .holds_remote(ZONE.vni, VM_MAC[4], VLNET)),
        "{}",
        bed.context("the leaf did not learn vlnet's new MAC through RR2")
    );
    let all = [&vms[0], &vms[1], &vms[2], &new_leaf_vm, &new_vlnet_vm];
    for (from, to) in [(4, 3), (3, 4), (4, 1), (3, 0), (4, 2)] {
        assert!(
            reachable(all[from], VM_IP[to], Duration::from_secs(10)),
            "{}",
            bed.context(&format!("VM {from} does not reach VM {to}"))
        );
        let ping = probe::ping(all[from].ns(), VM_IP[to], 5, Duration::from_millis(50)).unwrap();
        assert_eq!(
            ping.received,
            ping.sent,
            "{}",
            bed.context(&format!("VM {from} → VM {to}: {ping:?}"))
        );
    }
}

/// The state of vlnet's session with `neighbor` (`ctl evpn --json`).
fn vlnet_session_state(daemon: &Daemon, neighbor: Ipv4Addr) -> Option<String> {
    let report: serde_json::Value =
        serde_json::from_str(&daemon.ctl(&["evpn", "--json"]).ok()?).ok()?;
    report["neighbors"]
        .as_array()?
        .iter()
        .find(|n| n["neighbor"] == format!("{neighbor}:179"))
        .and_then(|n| n["state"].as_str().map(str::to_owned))
}

fn every_pair_reachable(bed: &Bed, vms: &[Vm; 3]) {
    for from in 0..vms.len() {
        for to in (0..vms.len()).filter(|&to| to != from) {
            assert!(
                reachable(&vms[from], VM_IP[to], Duration::from_secs(20)),
                "{}",
                bed.context(&format!("VM {from} does not reach VM {to}"))
            );
        }
    }
}

/// Pings between every VM pair through RR1's death: none may be lost.
/// The routes of every MAC are held from both reflectors, so losing one
/// withdraws nothing anywhere; and no hold timer is waited for.
fn pings_survive_the_kill(bed: &Bed, vms: &[Vm; 3]) {
    let pairs = [(0, 1), (1, 0), (0, 2), (2, 1)];
    let reports = std::thread::scope(|s| {
        let pingers: Vec<_> = pairs
            .iter()
            .map(|&(from, to)| {
                let ns = vms[from].ns();
                s.spawn(move || probe::ping(ns, VM_IP[to], PINGS, PING_INTERVAL).unwrap())
            })
            .collect();
        std::thread::sleep(KILL_AFTER);
        bed.rr1.kill_bgpd();
        pingers
            .into_iter()
            .map(|p| p.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (&(from, to), ping) in pairs.iter().zip(&reports) {
        eprintln!(
            "VM {from} → VM {to} across the kill: {} of {} answered",
            ping.received, ping.sent
        );
    }
    for (&(from, to), ping) in pairs.iter().zip(&reports) {
        assert_eq!(
            (ping.received, ping.errors),
            (ping.sent, 0),
            "{}",
            bed.context(&format!(
                "VM {from} → VM {to} lost pings when RR1's bgpd died: {ping:?}"
            ))
        );
    }
}
