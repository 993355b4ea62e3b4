//! A real QEMU guest live-migrates from one vlnet node to another while a
//! VM behind a kernel-vxlan node pings it every 10 ms: QEMU's own announce
//! (RARP) switches the path, the guest answers from its new host, the pings
//! lost stay within QEMU's downtime plus the time the guest took to announce
//! itself (measured: the new host's data plane stamps the guest's first
//! frame), and the new host records the move and times the first frame that
//! reaches the guest. Needs root, `qemu-system-x86_64` (TCG) and the guest
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
use vlnet_dataplane::fdb::monotonic_ns;
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
/// pings in that window are lost whatever the VTEPs do. The budget takes the
/// larger of this and the delay measured in the run.
const ANNOUNCE_DELAY_MS: f64 = 50.0;
/// The guest must announce itself within this long after the migration
/// completes. Usually it takes tens of ms. Under TCG on a loaded machine the
/// resumed guest has been seen to need over a second (it runs from a cold
/// translation cache), so the bound catches a missing announce, not a slow one.
const ANNOUNCE_BOUND: Duration = Duration::from_secs(3);

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

/// The runs of unanswered requests in `seqs` (the answered ones), as
/// (last answered, next answered).
fn gaps(seqs: &[u32]) -> Vec<(u32, u32)> {
    seqs.windows(2)
        .filter(|w| w[1] > w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect()
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

    let pings_ns = monotonic_ns();
    let pings = std::thread::spawn(move || probe::ping(&pinger, GUEST_IP, 400, INTERVAL));
    std::thread::sleep(Duration::from_secs(1));
    let migrate_ns = monotonic_ns();
    let report = source.migrate(&incoming).unwrap();
    // `migrate` polls every 20 ms: completion is at most that long before.
    let completed_ns = monotonic_ns();
    source.stop();
    let r = pings.join().unwrap().unwrap();
    let lost = f64::from(r.sent - r.received);
    let new_host = s.sites[1].daemon.as_ref().unwrap();
    // The new host's data plane stamps the guest's first frame (its
    // announce) as a `local` move, on the clock read above.
    let Some(announced_ns) = move_time_ns(new_host, GUEST_MAC, "local").unwrap() else {
        panic!(
            "the new host never saw the guest: {}\n{}",
            new_host.ctl(&["moves"]).unwrap(),
            forwarding_state(&s)
        );
    };
    let announce = Duration::from_nanos(announced_ns.saturating_sub(completed_ns));
    eprintln!(
        "migration: total {:.0} ms, downtime {:.0} ms, guest announced {:.0} ms after completion; \
         pings: {} sent, {lost} lost",
        report.total_ms,
        report.downtime_ms,
        announce.as_secs_f64() * 1e3,
        r.sent
    );
    assert!(
        announce <= ANNOUNCE_BOUND,
        "the guest announced itself {announce:?} after the migration completed"
    );
    let announce_ms = (announce.as_secs_f64() * 1e3).max(ANNOUNCE_DELAY_MS);
    let allowed = ((report.downtime_ms + announce_ms) / 10.0).ceil() + 2.0;
    // Where the events fall in the ping sequence (request k leaves about
    // k × 10 ms after ping starts), to place a gap in a failure. ping's own
    // start-up (here up to ~0.2 s) makes these upper bounds.
    let seq_at = |ns: u64| ns.saturating_sub(pings_ns) / 10_000_000;
    assert!(
        lost <= allowed,
        "{lost} pings lost, QEMU's downtime and the guest's announce allow {allowed}; \
         near ping seq: migration started {}, completed {}, guest announced {}; gaps {:?}\n{r:?}\n{}",
        seq_at(migrate_ns),
        seq_at(completed_ns),
        seq_at(announced_ns),
        gaps(&r.seqs),
        forwarding_state(&s)
    );

    // The guest answers from its new host, and that host recorded the move.
    let again = probe::ping(s.sites[2].vm.ns(), GUEST_IP, 20, INTERVAL).unwrap();
    assert_eq!(again.received, 20, "{again:?}");
    let Some(delivered) = move_time_ns(new_host, GUEST_MAC, "delivered").unwrap() else {
        panic!("move not recorded: {}", new_host.ctl(&["moves"]).unwrap());
    };
    eprintln!(
        "path switch at the new host: first frame from afar {:.3} ms after the announce",
        Duration::from_nanos(delivered.saturating_sub(announced_ns)).as_secs_f64() * 1e3
    );
    drop(target);
}
