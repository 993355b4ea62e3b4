//! The experiment's numbers: one [`RunResult`] per migration, a
//! [`SettingSummary`] (median and min–max) per setting, and their files
//! (`results.json`, `results.csv`). Pure: no I/O here.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::setting::Setting;
use crate::primitives::guest_memory::GuestMemory;

/// What one live migration cost and changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// What the guest migrated over.
    pub setting: Setting,
    /// 1-based run number within the setting.
    pub run: u32,
    /// QEMU's `total-time`: from `migrate` to completion, ms.
    pub migration_ms: f64,
    /// QEMU's `downtime`: the guest was stopped this long, ms.
    pub downtime_ms: f64,
    /// The user's pings (every [`PING_INTERVAL_MS`]) across the move, up to
    /// the last one answered.
    pub pings_sent: u32,
    /// Of those, unanswered.
    pub pings_lost: u32,
    /// The longest run of unanswered pings, as time: how long the user
    /// could not reach the guest, ms.
    pub outage_ms: f64,
    /// The user's ping RTT to the guest before the move, median, ms.
    pub rtt_before_ms: Option<f64>,
    /// The same after the move.
    pub rtt_after_ms: Option<f64>,
    /// TCP throughput from the user to the guest before the move, Mbit/s.
    pub throughput_before_mbps: Option<f64>,
    /// The same after the move.
    pub throughput_after_mbps: Option<f64>,
    /// Guest memory the migration stream carried (QEMU's
    /// `ram.transferred`), MiB.
    #[serde(default)]
    pub ram_mib: f64,
    /// How fast the guest changed its memory just before the move (QEMU's
    /// `calc-dirty-rate` over 1 s), MiB/s; measured for a loaded guest only.
    #[serde(default)]
    pub dirty_rate_mib_s: Option<f64>,
}

/// Interval of the user's pings across a move, ms.
pub use crate::beds::guest::USER_PING_INTERVAL_MS as PING_INTERVAL_MS;

/// Median and range of one metric over a setting's runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The median (mean of the middle two for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` if there are none.
    #[must_use]
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().collect();
        v.sort_by(f64::total_cmp);
        let (&min, &max) = (v.first()?, v.last()?);
        let mid = v.len() / 2;
        let median = if v.len().is_multiple_of(2) {
            f64::midpoint(v[mid - 1], v[mid])
        } else {
            v[mid]
        };
        Some(Self { median, min, max })
    }
}

/// One setting's runs in a few numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingSummary {
    /// The setting.
    pub setting: Setting,
    /// Runs measured.
    pub runs: u32,
    /// [`RunResult::migration_ms`].
    pub migration_ms: Option<Spread>,
    /// [`RunResult::downtime_ms`].
    pub downtime_ms: Option<Spread>,
    /// [`RunResult::pings_lost`].
    pub pings_lost: Option<Spread>,
    /// [`RunResult::outage_ms`].
    pub outage_ms: Option<Spread>,
    /// [`RunResult::rtt_before_ms`] (runs that measured it).
    pub rtt_before_ms: Option<Spread>,
    /// [`RunResult::rtt_after_ms`].
    pub rtt_after_ms: Option<Spread>,
    /// [`RunResult::throughput_before_mbps`].
    pub throughput_before_mbps: Option<Spread>,
    /// [`RunResult::throughput_after_mbps`].
    pub throughput_after_mbps: Option<Spread>,
    /// [`RunResult::ram_mib`].
    #[serde(default)]
    pub ram_mib: Option<Spread>,
    /// [`RunResult::dirty_rate_mib_s`].
    #[serde(default)]
    pub dirty_rate_mib_s: Option<Spread>,
}

impl SettingSummary {
    /// Summarises the runs of `setting` among `runs`.
    #[must_use]
    pub fn of(setting: Setting, runs: &[RunResult]) -> Self {
        let mine: Vec<&RunResult> = runs.iter().filter(|r| r.setting == setting).collect();
        let spread =
            |f: fn(&RunResult) -> Option<f64>| Spread::of(mine.iter().filter_map(|r| f(r)));
        Self {
            setting,
            runs: mine.len() as u32,
            migration_ms: spread(|r| Some(r.migration_ms)),
            downtime_ms: spread(|r| Some(r.downtime_ms)),
            pings_lost: spread(|r| Some(f64::from(r.pings_lost))),
            outage_ms: spread(|r| Some(r.outage_ms)),
            rtt_before_ms: spread(|r| r.rtt_before_ms),
            rtt_after_ms: spread(|r| r.rtt_after_ms),
            throughput_before_mbps: spread(|r| r.throughput_before_mbps),
            throughput_after_mbps: spread(|r| r.throughput_after_mbps),
            ram_mib: spread(|r| Some(r.ram_mib)),
            dirty_rate_mib_s: spread(|r| r.dirty_rate_mib_s),
        }
    }
}

/// How the experiment was run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    /// The settings, in order.
    pub settings: Vec<Setting>,
    /// Migrations per setting.
    pub runs: u32,
    /// RTT of the client's WAN link in `vxlan-wg`, ms.
    pub wan_delay_ms: f64,
    /// Seconds of each TCP throughput probe.
    pub throughput_secs: f64,
    /// Interval of the user's pings across a move, ms.
    pub ping_interval_ms: u64,
    /// The guest's memory and its load (`--guest-mem`, `--dirty`).
    #[serde(default)]
    pub guest_memory: GuestMemory,
}

/// Everything `results.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// How it was run.
    pub parameters: Parameters,
    /// Every run, in order.
    pub runs: Vec<RunResult>,
    /// One summary per setting, in order.
    pub summary: Vec<SettingSummary>,
}

impl Results {
    /// Results of `runs`, summarised per setting of `parameters`.
    #[must_use]
    pub fn new(parameters: Parameters, runs: Vec<RunResult>) -> Self {
        let summary = parameters
            .settings
            .iter()
            .map(|&s| SettingSummary::of(s, &runs))
            .collect();
        Self {
            parameters,
            runs,
            summary,
        }
    }

    /// `results.json`: pretty-printed.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// `results.csv`: a header and one row per run; an unmeasured value is
    /// an empty cell.
    #[must_use]
    pub fn to_csv(&self) -> String {
        let opt = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.3}"));
        let mut out = String::from(CSV_HEADER);
        out.push('\n');
        for r in &self.runs {
            let _ = writeln!(
                out,
                "{},{},{:.3},{:.3},{},{},{:.3},{},{},{},{},{:.3},{}",
                r.setting.name(),
                r.run,
                r.migration_ms,
                r.downtime_ms,
                r.pings_sent,
                r.pings_lost,
                r.outage_ms,
                opt(r.rtt_before_ms),
                opt(r.rtt_after_ms),
                opt(r.throughput_before_mbps),
                opt(r.throughput_after_mbps),
                r.ram_mib,
                opt(r.dirty_rate_mib_s),
            );
        }
        out
    }
}

/// The first line of `results.csv`.
pub const CSV_HEADER: &str = "setting,run,migration_ms,downtime_ms,pings_sent,pings_lost,\
outage_ms,rtt_before_ms,rtt_after_ms,throughput_before_mbps,throughput_after_mbps,\
ram_mib,dirty_rate_mib_s";

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A run with round numbers for the tests of this module and the report.
    pub(crate) fn run(setting: Setting, run: u32, migration_ms: f64) -> RunResult {
        RunResult {
            setting,
            run,
            migration_ms,
            downtime_ms: 10.0,
            pings_sent: 150,
            pings_lost: 3,
            outage_ms: 30.0,
            rtt_before_ms: Some(20.5),
            rtt_after_ms: Some(0.4),
            throughput_before_mbps: Some(80.0),
            throughput_after_mbps: None,
            ram_mib: 20.0,
            dirty_rate_mib_s: None,
        }
    }

    pub(crate) fn parameters(settings: Vec<Setting>) -> Parameters {
        Parameters {
            settings,
            runs: 2,
            wan_delay_ms: 20.0,
            throughput_secs: 2.0,
            ping_interval_ms: PING_INTERVAL_MS,
            guest_memory: GuestMemory::default(),
        }
    }

    #[test]
    fn spread_takes_the_middle_and_the_ends() {
        let s = Spread::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of([4.0, 1.0, 2.0, 3.0]).unwrap();
        assert!((s.median - 2.5).abs() < 1e-12);
        assert_eq!(Spread::of([]), None);
    }

    #[test]
    fn summaries_are_per_setting_and_skip_unmeasured_values() {
        let runs = vec![
            run(Setting::Lan, 1, 700.0),
            run(Setting::Lan, 2, 900.0),
            run(Setting::VxlanWg, 1, 2000.0),
        ];
        let r = Results::new(parameters(vec![Setting::Lan, Setting::VxlanWg]), runs);
        assert_eq!(r.summary.len(), 2);
        let lan = &r.summary[0];
        assert_eq!(lan.runs, 2);
        assert!((lan.migration_ms.unwrap().median - 800.0).abs() < 1e-9);
        assert_eq!(lan.throughput_after_mbps, None);
        assert!((r.summary[1].migration_ms.unwrap().max - 2000.0).abs() < 1e-9);
    }

    #[test]
    fn json_has_the_documented_fields_and_round_trips() {
        let r = Results::new(
            parameters(vec![Setting::Vxlan]),
            vec![run(Setting::Vxlan, 1, 650.0)],
        );
        let json = r.to_json().unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let first = &v["runs"][0];
        for field in [
            "setting",
            "run",
            "migration_ms",
            "downtime_ms",
            "pings_sent",
            "pings_lost",
            "rtt_before_ms",
            "rtt_after_ms",
            "outage_ms",
            "ram_mib",
            "dirty_rate_mib_s",
        ] {
            assert!(first.get(field).is_some(), "{field} missing in {first}");
        }
        assert_eq!(first["setting"], "vxlan");
        assert_eq!(v["parameters"]["guest_memory"]["mib"], 256);
        assert_eq!(serde_json::from_str::<Results>(&json).unwrap(), r);
    }

    #[test]
    fn csv_has_one_row_per_run_and_empty_cells_for_gaps() {
        let r = Results::new(
            parameters(vec![Setting::Lan]),
            vec![run(Setting::Lan, 1, 700.0), run(Setting::Lan, 2, 710.0)],
        );
        let csv = r.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(
            lines[1],
            "lan,1,700.000,10.000,150,3,30.000,20.500,0.400,80.000,,20.000,"
        );
        let columns = CSV_HEADER.split(',').count();
        assert!(lines.iter().all(|l| l.split(',').count() == columns));
    }
}
