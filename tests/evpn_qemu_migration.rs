//! A real QEMU guest live-migrates between an FRR 8.4 leaf (kernel VXLAN
//! without learning, as Proxmox's EVPN zone writes it) and a vlnet node,
//! both clients of an FRR route reflector on VNI 100, while a witness VM
//! behind the reflector pings it every 10 ms. Leaf → vlnet: QEMU's announce
//! makes vlnet advertise the guest's MAC with the next MAC Mobility
//! sequence number, the reflector holds it behind vlnet's VTEP with a
//! higher number than before, and the pings lost stay within QEMU's
//! downtime plus a second for the routes to travel. Then vlnet → leaf the
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
use std::time::{Duration, Instant};

use support::frr::{self, vlnet_fdb_has, wait_for, FrrNode, Role, Zone};
use support::node::vlnet_binary;
use vlnet_lab::primitives::guest_memory::GuestMemory;
use vlnet_lab::primitives::probe;
use vlnet_lab::primitives::qemu::{GuestImage, GuestSpec, MigrationUri, Qemu, GUEST_DIR};
use vlnet_lab::{Daemon, Host, TempDir, Underlay, Vm};

const ZONE: Zone = frr::VNI100;
const VLNET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const RR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const LEAF: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const GUEST_MAC: &str = "52:54:00:00:00:65";
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

    /// Migrates `source` to a new QEMU on `to` while the witness pings;
    /// returns the target and asserts the pings lost.
    fn migrate(&self, source: Qemu, to: &Host, name: &str, image: &GuestImage, dir: &Path) -> Qemu {
        let incoming = MigrationUri::Unix(dir.join(format!("{name}.sock")));
        let target =
            Qemu::start(to, ZONE.bridge, &spec(image, name, dir, Some(&incoming))).unwrap();
        let pinger = self.witness.ns().clone();
        let pings = std::thread::spawn(move || probe::ping(&pinger, GUEST_IP, 300, INTERVAL));
        std::thread::sleep(Duration::from_millis(500));
        let report = source.migrate(&incoming).unwrap();
        source.stop();
        let r = pings.join().unwrap().unwrap();
        let lost = f64::from(r.sent - r.received);
        let allowed = ((report.downtime_ms + ROUTE_BUDGET_MS) / 10.0).ceil();
        eprintln!(
            "migration to {name}: total {:.0} ms, downtime {:.0} ms; pings {} sent, {lost} lost",
            report.total_ms, report.downtime_ms, r.sent
        );
        assert!(
            lost <= allowed,
            "{}",
            self.context(&format!(
                "{lost} pings lost moving to {name}, QEMU's downtime and the routes allow {allowed}"
            ))
        );
        target
    }
}

fn spec<'a>(
    image: &'a GuestImage,
    name: &'a str,
    dir: &'a Path,
    incoming: Option<&'a MigrationUri>,
) -> GuestSpec<'a> {
    GuestSpec {
        image,
        name,
        mac: GUEST_MAC,
        ip: (GUEST_IP, 24),
        dir,
        incoming,
        memory: GuestMemory::default(),
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
    let on_leaf = Qemu::start(
        &bed.leaf.host,
        ZONE.bridge,
        &spec(&image, "leaf", dir.path(), None),
    )
    .unwrap();
    // TCG boots the guest in seconds; wait until it answers the witness.
    let booted = Instant::now();
    while probe::ping(bed.witness.ns(), GUEST_IP, 1, Duration::from_millis(200))
        .map_or(true, |r| r.received == 0)
    {
        assert!(
            booted.elapsed() < Duration::from_secs(90),
            "{}",
            bed.context(&format!(
                "the guest never answered; console:\n{}",
                on_leaf.console()
            ))
        );
    }
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

    let on_vlnet = bed.migrate(on_leaf, &bed.vl_host, "vl", &image, dir.path());
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

    let back = bed.migrate(on_vlnet, &bed.leaf.host, "leaf2", &image, dir.path());
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
    drop(back);
}
