//! One run on a setting's test-bed: the user's view of the guest before,
//! across and after a live migration A → B (between runs the guest
//! migrates back to A, not measured).

use std::net::SocketAddrV4;
use std::time::Duration;

use super::results::{RunResult, PING_INTERVAL_MS};
use super::setting::Setting;
use crate::lab::guest::{Guest, GuestSites, GUEST_IP, SETTLE};
use crate::lab::probe;
use crate::lab::qemu::GUEST_SINK_PORT;
use crate::lab::session::{tcp_throughput, PingSession};
use crate::lab::LabError;

/// Seconds of each TCP throughput probe.
pub const THROUGHPUT_TIME: Duration = Duration::from_secs(2);
/// Interval of the user's pings across a move.
const PING_INTERVAL: Duration = Duration::from_millis(PING_INTERVAL_MS);
/// Pings whose median is the user's RTT.
const RTT_PINGS: u32 = 30;
/// Pings before `migrate` starts.
const LEAD: Duration = Duration::from_millis(500);

/// The user's view of the guest: median RTT and TCP throughput (Mbit/s);
/// a probe that fails is reported on stderr and left unmeasured.
pub fn user_view(sites: &dyn GuestSites, when: &str) -> (Option<f64>, Option<f64>) {
    let user = sites.user().ns();
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
    if guest.side() != 0 {
        return Err(LabError::Invalid(
            "a run must start with the guest on host A".into(),
        ));
    }
    let (rtt_before_ms, throughput_before_mbps) = user_view(guest.sites(), "before");
    let session = PingSession::start(guest.sites().user().ns(), GUEST_IP, PING_INTERVAL)?;
    std::thread::sleep(LEAD);
    let migrated = guest.migrate();
    std::thread::sleep(SETTLE + wan_delay);
    let pings = session.stop()?;
    let report = migrated?;
    let (pings_sent, pings_lost) = pings.answered_window();
    let (rtt_after_ms, throughput_after_mbps) = user_view(guest.sites(), "after");
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
