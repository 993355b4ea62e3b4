//! A real QEMU guest live-migrates from one vlnet node to another while a
//! VM behind a kernel-vxlan node pings it every 10 ms: QEMU's own announce
//! (RARP) switches the path, the guest answers from its new host, the pings
//! lost stay within QEMU's downtime plus the announce delay, and the new host
//! records the move and times the first frame that reaches the guest. Needs root, `qemu-system-x86_64` (TCG) and the guest
//! kernel fetched by `tests/install-deps.sh`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use support::node::vlnet_binary;
use vlnet_lab::beds::scenario::{Scenario, Vtep, BRIDGE};
use vlnet_lab::jobs::migrate::move_time_ns;
use vlnet_lab::primitives::guest_memory::GuestMemory;
use vlnet_lab::primitives::probe;
use vlnet_lab::primitives::qemu::{GuestImage, GuestSpec, MigrationUri, Qemu, GUEST_DIR};
use vlnet_lab::{Datapath, TempDir};

const GUEST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const GUEST_MAC: &str = "52:54:00:00:00:64";
/// Ping interval during the migration.
const INTERVAL: Duration = Duration::from_millis(10);
/// QEMU announces ~40 ms after the source stops (DESIGN, measured here):
/// pings in that window are lost whatever the VTEPs do.
const ANNOUNCE_DELAY_MS: f64 = 50.0;

/// Every host's bridge FDB and the vlnet nodes' FDB and moves, to explain a
/// failure.
fn forwarding_state(s: &Scenario) -> String {
    let mut out = String::new();
    for (i, site) in s.sites.iter().enumerate() {
        let bridge = site
            .host
            .ns()
            .run(&["bridge", "fdb", "show"])
            .unwrap_or_default();
        let _ = write!(out, "--- site {i} bridge fdb ---\n{bridge}");
        if let Some(d) = &site.daemon {
            for what in ["fdb", "moves"] {
                let text = d.ctl(&[what]).unwrap_or_default();
                let _ = write!(out, "--- site {i} vlnet {what} ---\n{text}");
            }
        }
    }
    out
}

#[test]
fn a_live_migrated_guest_keeps_its_address_across_vlnet_nodes() {
    let vlnet = Vtep::Vlnet(Datapath::Tc);
    let s = Scenario::build("qm", &[vlnet, vlnet, Vtep::Kernel], vlnet_binary()).unwrap();
    let dir = TempDir::new("qm").unwrap();
    let image = GuestImage::build(Path::new(GUEST_DIR)).unwrap();
    let incoming = MigrationUri::Unix(dir.path().join("migrate.sock"));
    let source = Qemu::start(
        &s.sites[0].host,
        BRIDGE,
        &GuestSpec {
            image: &image,
            name: "src",
            mac: GUEST_MAC,
            ip: (GUEST_IP, 24),
            dir: dir.path(),
            incoming: None,
            memory: GuestMemory::default(),
        },
    )
    .unwrap();
    let pinger = s.sites[2].vm.ns().clone();
    // TCG boots the guest in seconds; wait until it answers across the tunnel.
    let booted = Instant::now();
    while probe::ping(&pinger, GUEST_IP, 1, Duration::from_millis(200))
        .map_or(true, |r| r.received == 0)
    {
        assert!(
            booted.elapsed() < Duration::from_secs(90),
            "guest never answered; console:\n{}",
            source.console()
        );
    }
    eprintln!("guest up after {:?}", booted.elapsed());
    let target = Qemu::start(
        &s.sites[1].host,
        BRIDGE,
        &GuestSpec {
            image: &image,
            name: "dst",
            mac: GUEST_MAC,
            ip: (GUEST_IP, 24),
            dir: dir.path(),
            incoming: Some(&incoming),
            memory: GuestMemory::default(),
        },
    )
    .unwrap();

    let pings = std::thread::spawn(move || probe::ping(&pinger, GUEST_IP, 400, INTERVAL));
    std::thread::sleep(Duration::from_secs(1));
    let report = source.migrate(&incoming).unwrap();
    source.stop();
    let r = pings.join().unwrap().unwrap();
    let lost = f64::from(r.sent - r.received);
    eprintln!(
        "migration: total {:.0} ms, downtime {:.0} ms; pings: {} sent, {lost} lost",
        report.total_ms, report.downtime_ms, r.sent
    );
    let allowed = ((report.downtime_ms + ANNOUNCE_DELAY_MS) / 10.0).ceil() + 2.0;
    assert!(
        lost <= allowed,
        "{lost} pings lost, QEMU's downtime allows {allowed}: {r:?}\n{}",
        forwarding_state(&s)
    );

    // The guest answers from its new host, and that host recorded the move.
    let again = probe::ping(s.sites[2].vm.ns(), GUEST_IP, 20, INTERVAL).unwrap();
    assert_eq!(again.received, 20, "{again:?}");
    let new_host = s.sites[1].daemon.as_ref().unwrap();
    let local = move_time_ns(new_host, GUEST_MAC, "local").unwrap();
    let delivered = move_time_ns(new_host, GUEST_MAC, "delivered").unwrap();
    let (Some(local), Some(delivered)) = (local, delivered) else {
        panic!("move not recorded: {}", new_host.ctl(&["moves"]).unwrap());
    };
    eprintln!(
        "path switch at the new host: first frame from afar {:.3} ms after the announce",
        Duration::from_nanos(delivered.saturating_sub(local)).as_secs_f64() * 1e3
    );
    drop(target);
}
