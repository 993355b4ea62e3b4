//! One setting's runs on its [`Testbed`]: the guest boots on host A; each
//! run measures the user's view of it before, across and after a live
//! migration A → B; between runs the guest migrates back to A (not
//! measured).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use super::results::{RunResult, PING_INTERVAL_MS};
use super::setting::Setting;
use super::testbed::Testbed;
use crate::lab::interrupt::Interrupt;
use crate::lab::probe;
use crate::lab::qemu::{
    GuestImage, GuestSpec, MigrationReport, MigrationUri, Qemu, GUEST_SINK_PORT,
};
use crate::lab::scenario::BRIDGE;
use crate::lab::session::{tcp_throughput, PingSession};
use crate::lab::LabError;

/// The guest's overlay address.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The guest's MAC.
pub const GUEST_MAC: &str = "52:54:00:00:00:64";
/// The port a destination QEMU listens on for the migration stream.
pub const MIGRATION_PORT: u16 = 4444;
/// Seconds of each TCP throughput probe.
pub const THROUGHPUT_TIME: Duration = Duration::from_secs(2);
/// Interval of the user's pings across a move.
const PING_INTERVAL: Duration = Duration::from_millis(PING_INTERVAL_MS);
/// Pings whose median is the user's RTT.
const RTT_PINGS: u32 = 30;
/// How long the guest may take to boot (TCG) or to answer after a move.
const ANSWER_LIMIT: Duration = Duration::from_mins(2);
/// Pings before `migrate` starts.
const LEAD: Duration = Duration::from_millis(500);
/// Pings after the migration completed (plus the WAN RTT): QEMU's announce
/// rounds are over by then.
const SETTLE: Duration = Duration::from_secs(1);

/// The guest: the QEMU it runs in now, and on which host.
pub struct Guest<'a> {
    bed: &'a Testbed,
    image: &'a GuestImage,
    dir: &'a Path,
    qemu: Qemu,
    side: usize,
    starts: u32,
}

impl<'a> Guest<'a> {
    /// Boots the guest on host A and waits until the user reaches it.
    pub fn boot(
        bed: &'a Testbed,
        image: &'a GuestImage,
        dir: &'a Path,
        interrupt: &Interrupt,
    ) -> Result<Self, LabError> {
        let qemu = start(bed, image, dir, 0, "g0", None)?;
        let guest = Self {
            bed,
            image,
            dir,
            qemu,
            side: 0,
            starts: 1,
        };
        guest.wait_answers(interrupt)?;
        Ok(guest)
    }

    /// Waits until the guest answers the user's ping.
    fn wait_answers(&self, interrupt: &Interrupt) -> Result<(), LabError> {
        let started = Instant::now();
        let user = self.bed.user().ns();
        while probe::ping(user, GUEST_IP, 1, Duration::from_millis(200))?.received == 0 {
            interrupt.check()?;
            if started.elapsed() > ANSWER_LIMIT {
                return Err(LabError::Invalid(format!(
                    "the guest did not answer within {ANSWER_LIMIT:?}; console:\n{}",
                    self.qemu.console()
                )));
            }
        }
        Ok(())
    }

    /// Live-migrates the guest to the other host (a QEMU started there
    /// listens on its [`Testbed::migration_addr`]) and stops the source.
    fn migrate(&mut self) -> Result<MigrationReport, LabError> {
        let to = 1 - self.side;
        let uri = MigrationUri::Tcp(SocketAddrV4::new(
            self.bed.migration_addr(to),
            MIGRATION_PORT,
        ));
        let name = format!("g{}", self.starts);
        self.starts += 1;
        let target = start(self.bed, self.image, self.dir, to, &name, Some(&uri))?;
        let report = self.qemu.migrate(&uri)?;
        std::mem::replace(&mut self.qemu, target).stop();
        self.side = to;
        Ok(report)
    }

    /// Brings the guest back to host A (unmeasured) and waits until the user
    /// reaches it there.
    pub fn return_home(&mut self, interrupt: &Interrupt) -> Result<(), LabError> {
        if self.side != 0 {
            self.migrate()?;
        }
        self.wait_answers(interrupt)?;
        std::thread::sleep(SETTLE);
        Ok(())
    }
}

/// Starts QEMU for the guest on host `side`.
fn start(
    bed: &Testbed,
    image: &GuestImage,
    dir: &Path,
    side: usize,
    name: &str,
    incoming: Option<&MigrationUri>,
) -> Result<Qemu, LabError> {
    Qemu::start(
        bed.host(side),
        BRIDGE,
        &GuestSpec {
            image,
            name,
            mac: GUEST_MAC,
            ip: (GUEST_IP, 24),
            dir,
            incoming,
        },
    )
}

/// The user's view of the guest: median RTT and TCP throughput (Mbit/s);
/// a probe that fails is reported on stderr and left unmeasured.
fn user_view(bed: &Testbed, when: &str) -> (Option<f64>, Option<f64>) {
    let user = bed.user().ns();
    let rtt = match probe::ping(user, GUEST_IP, RTT_PINGS, PING_INTERVAL) {
        Ok(r) => r.rtt_p50_ms(),
        Err(e) => {
            eprintln!("  warning: RTT {when} the move not measured: {e}");
            None
        }
    };
    let sink = SocketAddrV4::new(GUEST_IP, GUEST_SINK_PORT);
    let tput = match tcp_throughput(user, sink, THROUGHPUT_TIME) {
        Ok(bps) => Some(bps / 1e6),
        Err(e) => {
            eprintln!("  warning: throughput {when} the move not measured: {e}");
            None
        }
    };
    (rtt, tput)
}

/// Measures run `run` of `setting`: the guest must be on host A; it ends on
/// host B.
pub fn measure_run(
    guest: &mut Guest<'_>,
    setting: Setting,
    run: u32,
    wan_delay: Duration,
) -> Result<RunResult, LabError> {
    if guest.side != 0 {
        return Err(LabError::Invalid(
            "a run must start with the guest on host A".into(),
        ));
    }
    let (rtt_before_ms, throughput_before_mbps) = user_view(guest.bed, "before");
    let session = PingSession::start(guest.bed.user().ns(), GUEST_IP, PING_INTERVAL)?;
    std::thread::sleep(LEAD);
    let migrated = guest.migrate();
    std::thread::sleep(SETTLE + wan_delay);
    let pings = session.stop()?;
    let report = migrated?;
    let (pings_sent, pings_lost) = pings.answered_window();
    let (rtt_after_ms, throughput_after_mbps) = user_view(guest.bed, "after");
    Ok(RunResult {
        setting,
        run,
        migration_ms: report.total_ms,
        downtime_ms: report.downtime_ms,
        pings_sent,
        pings_lost,
        outage_ms: pings.longest_outage(PING_INTERVAL).as_secs_f64() * 1e3,
        rtt_before_ms,
        rtt_after_ms,
        throughput_before_mbps,
        throughput_after_mbps,
    })
}
