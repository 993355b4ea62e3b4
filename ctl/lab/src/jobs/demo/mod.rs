//! `vlnet lab demo`, the README's main job: a cloud of two nodes (cloud-1
//! runs vlnet and is the controller, the gateway of the zone; cloud-2 runs
//! the kernel's vxlan driver as an unmodified Proxmox host does), a client
//! site behind a WAN whose delay comes from the user-space delay line,
//! attached with `vlnet ctl client add` / `vlnet ctl join`; traffic from a
//! user at the client site and from cloud-2 to a QEMU VM in the cloud, the
//! VM live-migrated to the client through WireGuard, and their view before
//! and after (cloud-2 reaches it at the client through cloud-1's relay).
//! Prints progress as it goes, then a timeline and a summary table.
//!
//! Everything it builds is removed when it ends, fails or is interrupted
//! (SIGINT/SIGTERM are checked between steps; the guards clean up).
//!
//! # Layout
//! - [`bed`]: the hosts, the client's attachment.
//! - [`measure`]: probes, captures, counters and move records.
//! - [`timeline`]: progress display and timeline.
//! - [`summary`]: the summary table (pure).

pub mod bed;
pub mod measure;
pub mod summary;
pub mod timeline;

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use self::bed::DemoBed;
use self::measure::{
    across, arrival, drops, drops_between, kernel_interop, kernel_to_guest, start_wan_sample,
    wan_sample, WAN_SAMPLE,
};
use self::summary::{opt, wan_words, Across, Summary};
use self::timeline::Timeline;
use crate::beds::guest::{
    user_view, Guest, GuestSites, GUEST_IP, GUEST_MAC, SETTLE, USER_PING_INTERVAL,
};
use crate::beds::scenario::VNI;
use crate::primitives::guest_memory::GuestMemory;
use crate::primitives::interrupt::Interrupt;
use crate::primitives::qemu::{GuestImage, MigrationReport, GUEST_DIR};
use crate::primitives::session::PingSession;
use crate::TempDir;

/// Steps the demo announces.
const STEPS: u32 = 8;
/// Pings before the migration starts.
const LEAD: Duration = Duration::from_millis(500);

/// Runs the demo with the client's WAN RTT `wan_rtt`; needs root, QEMU and
/// the guest kernel (`tests/install-deps.sh`).
pub fn run(wan_rtt: Duration) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "vlnet lab demo needs root (namespaces, BPF, taps)"
    );
    let vlnet = std::env::current_exe().context("locating the vlnet binary")?;
    let interrupt = Interrupt::install()?;
    let mut t = Timeline::new(STEPS);
    let image = GuestImage::build(Path::new(GUEST_DIR))?;
    let (bed, joined) = build(&mut t, wan_rtt, &vlnet, &interrupt)?;
    let drops_before = drops(&bed)?;

    interrupt.check()?;
    t.step(4, &format!("booting VM {GUEST_IP} (QEMU) on cloud-1"));
    let dir = TempDir::new("demo-qemu")?;
    let mut guest = Guest::boot(&bed, &image, GuestMemory::default(), dir.path(), &interrupt)?;
    t.event(format!(
        "VM {GUEST_IP} runs on cloud-1; the client user reaches it across the WAN"
    ));

    interrupt.check()?;
    t.step(5, "traffic before the move: client user → VM (ping, TCP); cloud-2 (kernel vxlan) ↔ cloud-1 and → VM (ping)");
    let mut kernel = kernel_interop(&bed)?;
    kernel.to_guest[0] = kernel_to_guest(&bed)?;
    t.event(format!(
        "cloud-2 ↔ cloud-1: {}/{} and {}/{} pings, {} VXLAN frames on the wire",
        kernel.to_vlnet.0,
        kernel.to_vlnet.1,
        kernel.from_vlnet.0,
        kernel.from_vlnet.1,
        kernel.vxlan_frames
    ));
    let before = user_view(&bed, "before the move");
    t.event(format!(
        "client user → VM in the cloud: RTT {} ms, TCP {} Mbit/s",
        opt(before.rtt_ms, 2),
        opt(before.throughput_mbps, 0)
    ));

    interrupt.check()?;
    t.step(6, "live-migrating the VM cloud-1 → client through WireGuard; the client user, cloud-1's VM and cloud-2's VM ping it every 10 ms");
    let moved = migrate_watched(&mut guest, &bed, &mut t, wan_rtt)?;

    interrupt.check()?;
    t.step(
        7,
        &format!("traffic after the move: client user and cloud-2 → VM at the same IP {GUEST_IP}"),
    );
    let after = user_view(&bed, "after the move");
    t.event(format!(
        "client user → VM at the client: RTT {} ms, TCP {} Mbit/s",
        opt(after.rtt_ms, 2),
        opt(after.throughput_mbps, 0)
    ));
    kernel.to_guest[1] = kernel_to_guest(&bed)?;
    t.event(format!(
        "cloud-2 (kernel vxlan) → VM at the client, relayed by cloud-1: {}/{} pings",
        kernel.to_guest[1].0, kernel.to_guest[1].1
    ));
    let drops_after = drops(&bed)?;

    let summary = Summary {
        vm_ip: GUEST_IP,
        vni: VNI,
        wan_rtt_ms: wan_rtt.as_secs_f64() * 1e3,
        join_ms: joined.as_secs_f64() * 1e3,
        before,
        after,
        migration_ms: moved.report.total_ms,
        downtime_ms: moved.report.downtime_ms,
        path_switch_ms: moved.path_switch.map(|d| d.as_secs_f64() * 1e3),
        client_user: moved.client_user,
        cloud_user: moved.cloud_user,
        kernel_user: moved.kernel_user,
        wan_sample: moved.wan_sample,
        kernel,
        drops: drops_between(&drops_before, &drops_after),
    };
    println!(
        "\n{}\n{}\n{}",
        admin_view(&bed),
        t.render(),
        summary.render()
    );

    t.step(
        8,
        "cleaning up (QEMU, daemons, namespaces, links, pinned programs)",
    );
    drop(guest);
    drop(dir);
    drop(bed);
    ensure!(
        summary.reachable_after(),
        "the VM did not answer the client user after the move"
    );
    ensure!(
        summary.kernel_reaches_after(),
        "the VM at the client did not answer cloud-2 (kernel vxlan) through cloud-1"
    );
    ensure!(
        summary.wan_sample.1 == 0 && summary.wan_sample.0 > 0,
        "plain VXLAN crossed the WAN (or nothing was captured): {:?} of {WAN_SAMPLE}",
        summary.wan_sample
    );
    println!("demo finished in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// Steps 1–3: the cloud, the client site, the client's attachment; returns
/// the test-bed and the time from `ctl join` to the control session.
fn build(
    t: &mut Timeline,
    wan_rtt: Duration,
    vlnet: &Path,
    interrupt: &Interrupt,
) -> Result<(DemoBed, Duration)> {
    t.step(1, "building the cloud: cloud-1 runs vlnet (controller), cloud-2 the kernel vxlan driver (an unmodified Proxmox host)");
    let mut bed = DemoBed::build_cloud(vlnet)?;
    t.event("cloud up: VNI 100 between cloud-1 and cloud-2 over plain VXLAN");

    interrupt.check()?;
    t.step(
        2,
        &format!(
            "building the client site behind {}",
            wan_words(wan_rtt.as_secs_f64() * 1e3)
        ),
    );
    bed.add_client(wan_rtt)?;
    t.event("client site up; its vlnet daemon runs, not attached yet");

    interrupt.check()?;
    t.step(
        3,
        "attaching the client: `vlnet ctl client add` on cloud-1, `vlnet ctl join -` on the client",
    );
    let (token, joined) = bed.attach_client()?;
    t.event(format!(
        "token issued on cloud-1: {}…",
        token.chars().take(24).collect::<String>()
    ));
    t.event(format!(
        "client joined: WireGuard up, control session to cloud-1 after {:.2} s",
        joined.as_secs_f64()
    ));
    Ok((bed, joined))
}

/// What step 6 saw.
struct Moved {
    report: MigrationReport,
    client_user: Across,
    cloud_user: Across,
    kernel_user: Across,
    wan_sample: (usize, usize),
    path_switch: Option<Duration>,
}

/// Step 6: the live migration cloud-1 → client while the client user,
/// cloud-1's VM and cloud-2's VM ping the VM and tshark samples the WAN
/// link.
fn migrate_watched(
    guest: &mut Guest<'_>,
    bed: &DemoBed,
    t: &mut Timeline,
    wan_rtt: Duration,
) -> Result<Moved> {
    let client_pings = PingSession::start(bed.user().ns(), GUEST_IP, USER_PING_INTERVAL)?;
    let cloud_pings = PingSession::start(bed.cloud().vm.ns(), GUEST_IP, USER_PING_INTERVAL)?;
    let kernel_pings = PingSession::start(bed.kernel()?.vm.ns(), GUEST_IP, USER_PING_INTERVAL)?;
    std::thread::sleep(LEAD);
    let wan = start_wan_sample(bed)?;
    t.event(format!(
        "the operator lets the client take the VM's MAC: vlnet ctl vm move {GUEST_MAC} --vni {VNI} --to {} (on cloud-1)",
        bed.client().member_name
    ));
    t.event("migration starts (QEMU, stream between the WireGuard tunnel addresses)");
    let report = guest.migrate()?;
    t.event(format!(
        "migration complete: {:.0} ms, downtime {:.0} ms; the VM runs on the client",
        report.total_ms, report.downtime_ms
    ));
    std::thread::sleep(SETTLE + wan_rtt);
    let client_user = across(&client_pings.stop()?);
    let cloud_user = across(&cloud_pings.stop()?);
    let kernel_user = across(&kernel_pings.stop()?);
    let wan_sample = wan_sample(wan)?;
    let arrival = arrival(bed, GUEST_MAC)?;
    if let Some(ns) = arrival.moved_ns {
        t.event_at_monotonic(
            ns,
            "the VM's announce enters the client's vlnet: it lives here now",
        );
    }
    if let Some((ns, after)) = arrival.delivered {
        t.event_at_monotonic(
            ns,
            format!(
                "first frame from the cloud reaches the VM at the client ({:.1} ms after the announce)",
                after.as_secs_f64() * 1e3
            ),
        );
    }
    t.event(format!(
        "client user lost {} of {} pings, cloud-1's VM {} of {}, cloud-2's VM {} of {}; WAN: {} of {} sampled packets plain VXLAN",
        client_user.lost,
        client_user.sent,
        cloud_user.lost,
        cloud_user.sent,
        kernel_user.lost,
        kernel_user.sent,
        wan_sample.1,
        wan_sample.0
    ));
    Ok(Moved {
        report,
        client_user,
        cloud_user,
        kernel_user,
        wan_sample,
        path_switch: arrival.delivered.map(|(_, d)| d),
    })
}

/// What the admin sees: `ctl client list` on cloud-1 and `ctl moves` on
/// the client (a tool that fails is shown as its error).
fn admin_view(bed: &DemoBed) -> String {
    let show = |title: &str, out: Result<String, crate::LabError>| {
        format!(
            "== {title} ==\n{}",
            out.unwrap_or_else(|e| format!("({e})\n"))
        )
    };
    format!(
        "{}\n{}",
        show(
            "vlnet ctl client list (cloud-1)",
            bed.cloud().daemon.ctl(&["client", "list"])
        ),
        show(
            "vlnet ctl moves (client)",
            bed.client().daemon.ctl(&["moves"])
        )
    )
}
