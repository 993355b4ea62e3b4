//! A real QEMU guest live-migrates between an FRR 8.4 leaf (kernel VXLAN
//! without learning, as Proxmox's EVPN zone writes it) and a vlnet node,
//! both clients of an FRR route reflector on VNI 100, while a witness VM
//! behind the reflector pings it every 10 ms. Leaf → vlnet: QEMU's announce
//! makes vlnet advertise the guest's MAC with the next MAC Mobility
//! sequence number, the reflector holds it behind vlnet's VTEP with a
//! higher number than before, and the longest run of unanswered pings
//! stays within QEMU's downtime plus a second for the routes to travel
//! (single losses a loaded machine scatters over the run are printed, not
//! counted against the move). Then vlnet → leaf the
//! same way: the number rises again and vlnet places the guest behind the
//! leaf. The guest answers the witness after each move. QEMU, FRR's
//! daemons and the namespaces go even when a check fails.
//! Needs root, `qemu-system-x86_64` (TCG), the guest kernel fetched by
//! `tests/install-deps.sh`, and `/usr/lib/frr/{zebra,bgpd}` + `vtysh`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use support::frr::{self, vlnet_fdb_has, wait_for, FrrNode, Role, Zone};
use support::node::vlnet_binary;
use vlnet_lab::beds::guest::{Guest, GuestSites, GUEST_IP, GUEST_MAC};
use vlnet_lab::beds::scenario::BRIDGE;
use vlnet_lab::primitives::guest_memory::GuestMemory;
use vlnet_lab::primitives::interrupt::Interrupt;
use vlnet_lab::primitives::probe;
use vlnet_lab::primitives::qemu::{GuestImage, GUEST_DIR};
use vlnet_lab::{Daemon, Host, LabError, TempDir, Underlay, Vm};

/// The lab's guest plugs into the bridge of the lab's beds.
const ZONE: Zone = Zone {
    bridge: BRIDGE,
    ..frr::VNI100
};
const VLNET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const RR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const LEAF: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const WITNESS_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const WITNESS_MAC: &str = "02:00:00:00:c3:01";
/// Ping interval during a migration.
const INTERVAL: Duration = Duration::from_millis(10);
/// What a move may cost beyond QEMU's downtime: the guest's announce
/// (~40 ms), the bridge read that makes vlnet see it, and the route
/// travelling through the reflector to the witness's node, or the leaf's
/// zebra doing the same the other way.
const ROUTE_BUDGET_MS: f64 = 1000.0;

struct Bed {
    rr: FrrNode,
    leaf: FrrNode,
    daemon: Daemon,
    vl_host: Host,
    witness: Vm,
    _underlay: Underlay,
}

impl Bed {
    /// The reflector's MAC Mobility number for the guest, if it holds the
    /// guest's MAC behind `vtep`.
    fn rr_seq_behind(&self, vtep: Ipv4Addr) -> Option<u64> {
        self.rr.remote_seq(ZONE.vni, GUEST_MAC, vtep)
    }

    fn context(&self, what: &str) -> String {
        format!(
            "{what}\n--- RR's MAC:\n{:?}\n--- leaf's MAC:\n{:?}\n--- vlnet FDB: {}\n--- vlnet log:\n{}",
            self.rr.evpn_mac(ZONE.vni, GUEST_MAC),
            self.leaf.evpn_mac(ZONE.vni, GUEST_MAC),
            frr::vlnet_fdb(&self.daemon),
            self.daemon.log_tail(40)
        )
    }

    /// Live-migrates `guest` to its other host while the witness pings;
    /// asserts the longest outage.
    fn migrate(&self, guest: &mut Guest<'_>) {
        let pinger = self.witness.ns().clone();
        let pings = std::thread::spawn(move || probe::ping(&pinger, GUEST_IP, 300, INTERVAL));
        std::thread::sleep(Duration::from_millis(500));
        let report = guest.migrate().unwrap();
        let r = pings.join().unwrap().unwrap();
        let (sent, lost) = (r.sent, r.sent - r.received);
        // Requests after the last reply count too: a guest that never
        // answers again was unreachable until ping stopped.
        let last_answered = r.seqs.iter().max().copied().unwrap_or(0);
        let tail = INTERVAL * r.sent.saturating_sub(last_answered);
        let outage = r.longest_outage(INTERVAL).max(tail).as_secs_f64() * 1e3;
        let allowed = report.downtime_ms + ROUTE_BUDGET_MS;
        let to = guest.side();
        eprintln!(
            "migration to side {to}: total {:.0} ms, downtime {:.0} ms; pings {sent} sent, \
             {lost} lost, longest outage {outage:.0} ms",
            report.total_ms, report.downtime_ms
        );
        assert!(
            outage <= allowed,
            "{}",
            self.context(&format!(
                "the guest was unreachable for {outage:.0} ms moving to side {to} ({lost} of \
                 {sent} pings lost); QEMU's downtime and the routes allow {allowed:.0} ms"
            ))
        );
    }
}

/// The guest starts on the leaf (side 0) and moves to vlnet (side 1); QEMU
/// listens for a migration on its host's underlay address.
impl GuestSites for Bed {
    fn host(&self, side: usize) -> &Host {
        [&self.leaf.host, &self.vl_host][side]
    }

    fn migration_addr(&self, side: usize) -> Ipv4Addr {
        [LEAF, VLNET][side]
    }

    fn user(&self) -> &Vm {
        &self.witness
    }
}

#[test]
fn a_live_migrated_guest_moves_between_frr_and_vlnet_and_back() {
    let underlay = Underlay::new("evq").unwrap();
    let rr = ZONE.frr_node(&underlay, "rr", RR, Role::Reflector(&[VLNET, LEAF]));
    let leaf = ZONE.frr_node(&underlay, "leaf", LEAF, Role::Client(&[RR]));
    let vl_host = ZONE.host(&underlay, "vl", VLNET);
    let daemon = Daemon::start(
        vl_host.ns(),
        ZONE.vlnet_spec("evq", VLNET, &[RR]),
        vlnet_binary(),
    )
    .expect("vlnet daemon");
    let witness = ZONE.vm(&rr.host, "witness", WITNESS_MAC, WITNESS_IP);
    let bed = Bed {
        rr,
        leaf,
        daemon,
        vl_host,
        witness,
        _underlay: underlay,
    };
    let dir = TempDir::new("evq").unwrap();
    let image = GuestImage::build(Path::new(GUEST_DIR)).unwrap();
    let interrupt = Interrupt::install().unwrap();
    let mut guest = Guest::boot(&bed, &image, GuestMemory::default(), dir.path(), &interrupt)
        .unwrap_or_else(|e: LabError| panic!("{}", bed.context(&format!("the guest: {e}"))));
    let mut seq = None;
    assert!(
        wait_for(Duration::from_secs(10), || {
            seq = bed.rr_seq_behind(LEAF);
            seq.is_some() && vlnet_fdb_has(&bed.daemon, ZONE.vni, GUEST_MAC, LEAF)
        }),
        "{}",
        bed.context("the guest is not known behind the leaf")
    );
    let on_leaf_seq = seq.unwrap();

    bed.migrate(&mut guest);
    assert!(
        wait_for(Duration::from_secs(10), || {
            seq = bed.rr_seq_behind(VLNET);
            seq.is_some_and(|s| s > on_leaf_seq)
        }),
        "{}",
        bed.context(&format!(
            "the reflector does not hold the guest behind vlnet above sequence {on_leaf_seq}"
        ))
    );
    let on_vlnet_seq = seq.unwrap();

    bed.migrate(&mut guest);
    assert!(
        wait_for(Duration::from_secs(10), || {
            bed.rr_seq_behind(LEAF).is_some_and(|s| s > on_vlnet_seq)
                && vlnet_fdb_has(&bed.daemon, ZONE.vni, GUEST_MAC, LEAF)
        }),
        "{}",
        bed.context(&format!(
            "after the move back: the reflector's number is not above {on_vlnet_seq}, or vlnet \
             does not place the guest behind the leaf"
        ))
    );
    let again = probe::ping(bed.witness.ns(), GUEST_IP, 20, INTERVAL).unwrap();
    assert_eq!(again.received, again.sent, "{again:?}");
}
