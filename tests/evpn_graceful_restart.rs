//! Graceful restart (RFC 4724) of the vlnet daemon in an EVPN zone. `gobgpd` is
//! the route reflector (Debian's FRR 8.4 cannot keep a restarting peer's
//! EVPN routes, see `support::gobgp`); an FRR 8.4 leaf with kernel VXLAN
//! without learning, as Proxmox's EVPN zone writes it, and a vlnet node are
//! its clients; one VM behind vlnet, two behind the leaf.
//!
//! The vlnet daemon is killed (SIGKILL: no NOTIFICATION, its programs stay)
//! and started again while the leaf's VM and vlnet's ping each other every
//! 10 ms, and one leaf VM leaves meanwhile; then it is stopped with SIGTERM
//! and started again, as a service restart does. Checks that no ping is lost
//! either way; that the leaf keeps vlnet's MAC behind vlnet all along (the
//! reflector kept it, stale); and that after the restart vlnet's FDB holds
//! the leaf's remaining VM and no longer the one that left (swept after the
//! End-of-RIB), the agent logging one MAC swept.
//! Needs root, `ip`, `bridge`, `/usr/lib/frr/{zebra,bgpd}` + `vtysh`, and
//! `gobgpd` + `gobgp`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use support::frr::{self, holds_for, reachable, vlnet_fdb_has, wait_for, FrrNode, Role, Zone};
use support::gobgp::GoBgp;
use support::node::vlnet_binary;
use vlnet_lab::primitives::daemon::last_lines;
use vlnet_lab::primitives::probe;
use vlnet_lab::{Daemon, Host, Underlay, Vm};

const ZONE: Zone = frr::VNI100;
const VLNET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const RR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const LEAF: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
/// VM 0 behind vlnet, VMs 1 and 2 behind the leaf (2 leaves during the
/// restart).
const VM_IP: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 1),
    Ipv4Addr::new(192, 0, 2, 2),
    Ipv4Addr::new(192, 0, 2, 3),
];
const VM_MAC: [&str; 3] = [
    "02:00:00:00:e1:01",
    "02:00:00:00:e2:01",
    "02:00:00:00:e2:02",
];
/// Pings across the restart: every 10 ms for 5 s; the daemon is killed
/// after 1 s and started again 1 s later.
const PING_INTERVAL: Duration = Duration::from_millis(10);
const PINGS: u32 = 500;
const KILL_AFTER: Duration = Duration::from_secs(1);
const DOWN_FOR: Duration = Duration::from_secs(1);

/// The zone: the daemons stop before the namespaces go.
struct Bed {
    rr: GoBgp,
    leaf: FrrNode,
    daemon: Daemon,
    vl_host: Host,
    _rr_host: Host,
    _underlay: Underlay,
}

impl Bed {
    fn context(&self, what: &str) -> String {
        format!(
            "{what}\n--- RR neighbors:\n{}\n--- RR EVPN table:\n{}\n--- leaf MACs:\n{}\n\
             --- vlnet FDB: {}\n--- vlnet evpn: {}\n--- vlnet log:\n{}\n--- RR log (tail):\n{}",
            self.rr.cli("neighbor"),
            self.rr.cli("global rib -a evpn"),
            self.leaf.vtysh(&format!("show evpn mac vni {}", ZONE.vni)),
            self.daemon.ctl(&["fdb", "--json"]).unwrap_or_default(),
            self.daemon.ctl(&["evpn", "--json"]).unwrap_or_default(),
            self.daemon.log_tail(40),
            last_lines(&self.rr.log(), 30),
        )
    }
}

#[test]
fn a_daemon_restart_keeps_the_zones_routes_and_loses_no_ping() {
    let underlay = Underlay::new("egr").unwrap();
    let rr_host = underlay.add_host("rr", RR).unwrap();
    let rr = GoBgp::reflector(rr_host.ns().name(), ZONE.asn, RR, &[VLNET, LEAF]);
    let leaf = ZONE.frr_node(&underlay, "leaf", LEAF, Role::Client(&[RR]));
    let vl_host = ZONE.host(&underlay, "vl", VLNET);
    let daemon = Daemon::start(
        vl_host.ns(),
        ZONE.vlnet_spec("egr", VLNET, &[RR]),
        vlnet_binary(),
    )
    .expect("vlnet daemon");
    let mut bed = Bed {
        rr,
        leaf,
        daemon,
        vl_host,
        _rr_host: rr_host,
        _underlay: underlay,
    };
    let vm0 = ZONE.vm(&bed.vl_host, "vm0", VM_MAC[0], VM_IP[0]);
    let vm1 = ZONE.vm(&bed.leaf.host, "vm1", VM_MAC[1], VM_IP[1]);
    let vm2 = ZONE.vm(&bed.leaf.host, "vm2", VM_MAC[2], VM_IP[2]);
    zone_converged(&bed, [&vm0, &vm1]);
    pings_survive_the_restart(&mut bed, [&vm0, &vm1], Some(vm2), Stop::Kill);
    the_departed_mac_is_swept(&bed);
    // As `systemctl restart` does it: SIGTERM, the sessions close without a
    // NOTIFICATION (the programs stay), and the same again.
    pings_survive_the_restart(&mut bed, [&vm0, &vm1], None, Stop::Term);
    let ping = probe::ping(vm1.ns(), VM_IP[0], 5, Duration::from_millis(50)).unwrap();
    assert_eq!(ping.received, 5, "{}", bed.context(&format!("{ping:?}")));
}

/// Every session up, every VM reached (VM 2 from VM 0), every MAC where
/// it belongs.
fn zone_converged(bed: &Bed, [vm0, vm1]: [&Vm; 2]) {
    assert!(
        wait_for(Duration::from_secs(30), || bed.rr.established(VLNET)
            && bed.rr.established(LEAF)),
        "{}",
        bed.context("the sessions did not come up")
    );
    for (from, to) in [(vm1, VM_IP[0]), (vm0, VM_IP[1]), (vm0, VM_IP[2])] {
        assert!(
            reachable(from, to, Duration::from_secs(20)),
            "{}",
            bed.context(&format!("{to} is not reached"))
        );
    }
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
            LEAF
        ) && bed
            .leaf
            .holds_remote(ZONE.vni, VM_MAC[0], VLNET)),
        "{}",
        bed.context("the MACs did not reach vlnet and the leaf")
    );
}

/// How the daemon stops before it starts again.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// SIGKILL: a crash.
    Kill,
    /// SIGTERM: a service restart.
    Term,
}

/// VM 1 and VM 0 ping each other while the daemon stops (`stop`), `leaving`
/// leaves and the daemon starts again: none is lost, and the leaf keeps
/// vlnet's MAC all along.
fn pings_survive_the_restart(bed: &mut Bed, [vm0, vm1]: [&Vm; 2], leaving: Option<Vm>, stop: Stop) {
    let pings = std::thread::scope(|s| {
        let pingers = [(vm1, VM_IP[0]), (vm0, VM_IP[1])].map(|(from, to)| {
            let ns = from.ns();
            s.spawn(move || probe::ping(ns, to, PINGS, PING_INTERVAL).unwrap())
        });
        std::thread::sleep(KILL_AFTER);
        match stop {
            Stop::Kill => bed.daemon.kill9(),
            Stop::Term => {
                let exited = bed.daemon.terminate(Duration::from_secs(10)).unwrap();
                assert!(exited.is_some(), "the daemon did not stop on SIGTERM");
            }
        }
        drop(leaving); // leaves while vlnet is down: the leaf withdraws it
        let kept = holds_for(DOWN_FOR, || {
            bed.leaf.holds_remote(ZONE.vni, VM_MAC[0], VLNET)
        });
        bed.daemon.restart().expect("the daemon starts again");
        let pings = pingers.map(|p| p.join().unwrap());
        assert!(
            kept,
            "{}",
            bed.context("the leaf dropped vlnet's MAC while vlnet restarted")
        );
        pings
    });
    let what = ["leaf VM → vlnet VM", "vlnet VM → leaf VM"];
    for (what, ping) in what.iter().zip(&pings) {
        eprintln!(
            "{what} across the restart ({stop:?}): {} of {} answered",
            ping.received, ping.sent
        );
    }
    for (what, ping) in what.iter().zip(&pings) {
        assert_eq!(
            (ping.received, ping.errors),
            (ping.sent, 0),
            "{}",
            bed.context(&format!(
                "{what} lost pings across the restart ({stop:?}): {ping:?}"
            ))
        );
    }
}

/// After the End-of-RIB, the MAC that left during the restart is gone from
/// vlnet's FDB, and only it: the others stay on both sides.
fn the_departed_mac_is_swept(bed: &Bed) {
    assert!(
        wait_for(Duration::from_secs(15), || !vlnet_fdb_has(
            &bed.daemon,
            ZONE.vni,
            VM_MAC[2],
            LEAF
        ) && bed
            .daemon
            .log()
            .contains("EVPN graceful restart over")),
        "{}",
        bed.context("the VM that left during the restart was not swept")
    );
    assert!(
        bed.daemon.log().contains("swept=1"),
        "{}",
        bed.context("the restart should have swept exactly one MAC")
    );
    assert!(
        holds_for(Duration::from_secs(1), || vlnet_fdb_has(
            &bed.daemon,
            ZONE.vni,
            VM_MAC[1],
            LEAF
        ) && bed
            .leaf
            .holds_remote(ZONE.vni, VM_MAC[0], VLNET)),
        "{}",
        bed.context("a MAC still in the zone was lost after the restart")
    );
}
