//! One run on a setting's test-bed: the user's view of the guest before,
//! across and after a live migration A → B (between runs the guest
//! migrates back to A, not measured).

use std::time::Duration;

use super::results::RunResult;
use super::setting::Setting;
use crate::beds::guest::{user_view, Guest, GUEST_IP, SETTLE, USER_PING_INTERVAL};
use crate::primitives::session::PingSession;
use crate::LabError;

/// Pings before `migrate` starts.
const LEAD: Duration = Duration::from_millis(500);

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
    let before = user_view(guest.sites(), "before the move");
    let dirty_rate_mib_s = guest.dirty_rate().unwrap_or_else(|e| {
        eprintln!("  warning: the guest's dirty rate not measured: {e}");
        None
    });
    let session = PingSession::start(guest.sites().user().ns(), GUEST_IP, USER_PING_INTERVAL)?;
    std::thread::sleep(LEAD);
    let migrated = guest.migrate();
    std::thread::sleep(SETTLE + wan_delay);
    let pings = session.stop()?;
    let report = migrated?;
    let (pings_sent, pings_lost) = pings.answered_window();
    let after = user_view(guest.sites(), "after the move");
    Ok(RunResult {
        setting,
        run,
        migration_ms: report.total_ms,
        downtime_ms: report.downtime_ms,
        pings_sent,
        pings_lost,
        outage_ms: pings.longest_outage(USER_PING_INTERVAL).as_secs_f64() * 1e3,
        rtt_before_ms: before.rtt_ms,
        rtt_after_ms: after.rtt_ms,
        throughput_before_mbps: before.throughput_mbps,
        throughput_after_mbps: after.throughput_mbps,
        ram_mib: report.ram_mib,
        dirty_rate_mib_s,
    })
}
