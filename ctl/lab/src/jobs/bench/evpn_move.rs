//! The bench's `evpn-move` run: the migration run's VM move (link moved,
//! QEMU's RARP announce sent, a third site pinging every 10 ms), made
//! [`MOVES`] times back and forth between sites 0 and 1, through BGP EVPN,
//! through vlnet's static peers and through vlnet's own control plane, in
//! the same run:
//! - `evpn`: three vlnet sites with `evpn = true` on the VNI and no static
//!   peers, clients of one FRR route reflector (see
//!   [`EvpnZone`](crate::beds::evpn_zone::EvpnZone)). On an EVPN VNI the
//!   data plane moves no MAC: the third site switches when the new host's
//!   type-2 route (MAC Mobility sequence number + 1) comes back from the
//!   reflector.
//! - `vlnet`: three vlnet sites that are static peers of each other (the
//!   migration run's [`Scenario`]): no control plane between them; every
//!   VTEP that decapsulates the flooded announce moves the MAC at once.
//! - `members`: a vlnet controller and three members joined by token on
//!   its cloud LAN (see [`MemberSites`]), the members the sites: the new
//!   host's advert (MAC Mobility sequence number) goes to the controller,
//!   which relays it to the others, the operator having granted the move
//!   (`vlnet ctl vm move`) before it. A member's FDB names another
//!   member's MACs behind its tunnel address.
//!
//! The switch is timed from the announce leaving the VM to the third
//! site's FDB placing the MAC at the new host, read from its pinned map
//! (see [`FdbWatch`](crate::primitives::fdb_watch)), the same way for all;
//! `vlnet` also has its data plane's own records (`local` at the new host
//! to `remote` at the third site). Through EVPN the new host usually holds
//! no entry for the MAC when the announce comes (the old host withdrew it
//! as its port went), so it records no `local` move either. Needs FRR's
//! bgpd: without it the run is skipped with a message.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use crate::beds::evpn_zone::EvpnZone;
use crate::beds::scenario::{Scenario, Vtep};
use crate::jobs::bench::member_sites::MemberSites;
use crate::jobs::experiment::results::Spread;
use crate::jobs::migrate::{measure_move_to, MoveMeasure, MoveSites, PING_INTERVAL};
use crate::primitives::daemon::Daemon;
use crate::primitives::frr::{self, FRR_BIN};
use crate::primitives::probe;
use crate::Datapath;

/// Moves per plane: site 0 → 1, back, and so on.
pub const MOVES: usize = 5;
/// The pinging site.
const THIRD: usize = 2;
/// Longest wait for every site to place the VM at its host between moves.
const SETTLE_LIMIT: Duration = Duration::from_secs(15);

/// One plane's moves.
#[derive(Debug, Clone, Serialize)]
pub struct PlaneMoves {
    /// Each move as the third site saw it.
    pub moves: Vec<MoveMeasure>,
    /// Median pings lost per move.
    pub pings_lost_median: f64,
    /// Median switch, announce to the third site's FDB, ms (moves that
    /// have one).
    pub fdb_switch_ms_median: Option<f64>,
    /// Median switch as the third site's data plane recorded it, ms (none
    /// through EVPN: its data plane moves nothing).
    pub switch_ms_median: Option<f64>,
}

impl PlaneMoves {
    fn new(moves: Vec<MoveMeasure>) -> Self {
        let lost: Vec<f64> = moves.iter().map(|m| f64::from(m.pings_lost)).collect();
        let fdb: Vec<f64> = moves.iter().filter_map(|m| m.fdb_switch_ms).collect();
        let data: Vec<f64> = moves.iter().filter_map(|m| m.switch_ms).collect();
        Self {
            pings_lost_median: median(&lost).unwrap_or(0.0),
            fdb_switch_ms_median: median(&fdb),
            switch_ms_median: median(&data),
            moves,
        }
    }
}

/// The three planes.
#[derive(Debug, Clone, Serialize)]
pub struct EvpnMoveReport {
    /// Through BGP EVPN and an FRR route reflector.
    pub evpn: PlaneMoves,
    /// Through vlnet's static peers (data-plane learning).
    pub vlnet: PlaneMoves,
    /// Through a vlnet controller and its members (vlnet's control plane).
    pub members: PlaneMoves,
}

/// What the run gave.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The planes measured.
    Measured(EvpnMoveReport),
    /// Not run, for this reason.
    Skipped(String),
}

impl Outcome {
    /// The report as JSON, or `{"skipped": reason}`.
    pub fn to_json(&self) -> Result<serde_json::Value> {
        Ok(match self {
            Self::Measured(report) => serde_json::to_value(report)?,
            Self::Skipped(reason) => serde_json::json!({ "skipped": reason }),
        })
    }

    /// The report as text, or why it was skipped.
    #[must_use]
    pub fn table(&self) -> String {
        match self {
            Self::Measured(report) => report.table(),
            Self::Skipped(reason) => format!("evpn-move: skipped: {reason}\n"),
        }
    }
}

/// Runs the three planes, or says why not (with a message on stderr) when FRR
/// is not installed.
pub fn run(binary: &Path) -> Result<Outcome> {
    if !frr::installed() {
        let reason =
            format!("{FRR_BIN}/bgpd is missing (apt-get install --no-install-recommends frr)");
        eprintln!("evpn-move skipped: {reason}");
        return Ok(Outcome::Skipped(reason));
    }
    let evpn = {
        let mut zone = EvpnZone::build("bem", 3, binary).context("building the EVPN zone")?;
        eprintln!("    through EVPN (3 vlnet sites, an FRR route reflector)");
        moves(&mut zone.scenario).context("moves through EVPN")?
    };
    let vlnet = {
        let vtep = Vtep::Vlnet(Datapath::Tc);
        let mut s = Scenario::build("bmp", &[vtep, vtep, vtep], binary)?;
        eprintln!("    through vlnet's static peers (3 vlnet sites)");
        moves(&mut s).context("moves through vlnet's static peers")?
    };
    let members = {
        let mut m = MemberSites::build("bmm", 3, binary)?;
        eprintln!("    through vlnet's controller (3 members on its cloud LAN)");
        moves(&mut m).context("moves through vlnet's controller")?
    };
    Ok(Outcome::Measured(EvpnMoveReport {
        evpn: PlaneMoves::new(evpn),
        vlnet: PlaneMoves::new(vlnet),
        members: PlaneMoves::new(members),
    }))
}

/// Every site learns site 0's VM there, then it moves [`MOVES`] times
/// between sites 0 and 1, every site placing it at its new host before the
/// next move.
fn moves(s: &mut impl MoveSites) -> Result<Vec<MoveMeasure>> {
    for from in 1..s.count() {
        warm_up(s, from)?;
    }
    settle(s, 0)?;
    let mut out = Vec::with_capacity(MOVES);
    for i in 0..MOVES {
        let to = usize::from(i % 2 == 0);
        let m = measure_move_to(s, to, THIRD).with_context(|| format!("move {}", i + 1))?;
        eprintln!(
            "      move {} to site {to}: {} of {} pings lost, switch {} ms (FDB) {} ms (data plane)",
            i + 1,
            m.pings_lost,
            m.pings_sent,
            ms(m.fdb_switch_ms),
            ms(m.switch_ms)
        );
        out.push(m);
        settle(s, to)?;
    }
    Ok(out)
}

/// Pings site 0's VM from site `from`'s until one reply comes back (ARP
/// floods through the zone first; EVPN routes take a moment).
fn warm_up(s: &impl MoveSites, from: usize) -> Result<()> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    while probe::ping(s.vm(from).ns(), s.vm(0).ip(), 1, PING_INTERVAL)?.received == 0 {
        ensure!(
            Instant::now() < deadline,
            "site {from}'s VM got no ping reply from site 0's within {SETTLE_LIMIT:?}"
        );
    }
    Ok(())
}

/// Waits (bounded) until the pinging site holds site 0's VM behind site
/// `at`'s VTEP (the pinging site's view only: the old host's is not
/// waited for).
fn settle(s: &impl MoveSites, at: usize) -> Result<()> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    let (mac, vtep) = (s.vm(0).mac(), s.vtep(at).to_string());
    let Some(daemon) = s.daemon(THIRD) else {
        return Ok(());
    };
    while !holds(daemon, mac, &vtep)? {
        ensure!(
            Instant::now() < deadline,
            "site {THIRD} does not place site 0's VM behind site {at} after {SETTLE_LIMIT:?}: {}\n{}",
            daemon.ctl(&["fdb", "--json"]).unwrap_or_default(),
            context(s, at)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// What the new host `at` says of its EVPN routes and moves (for failure
/// messages).
fn context(s: &impl MoveSites, at: usize) -> String {
    s.daemon(at).map_or_else(String::new, |d| {
        format!(
            "--- site {at}'s ctl evpn:\n{}\n--- its moves:\n{}\n--- its log:\n{}",
            d.ctl(&["evpn"]).unwrap_or_default(),
            d.ctl(&["moves"]).unwrap_or_default(),
            d.log_tail(30)
        )
    })
}

/// Whether `daemon`'s FDB places `mac` behind `vtep`.
fn holds(daemon: &Daemon, mac: &str, vtep: &str) -> Result<bool> {
    let fdb: serde_json::Value = serde_json::from_str(&daemon.ctl(&["fdb", "--json"])?)?;
    Ok(fdb
        .as_array()
        .is_some_and(|all| all.iter().any(|r| r["mac"] == mac && r["vtep"] == vtep)))
}

/// The median of `values`, if any.
fn median(values: &[f64]) -> Option<f64> {
    Spread::of(values.iter().copied()).map(|s| s.median)
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.3}"))
}

impl EvpnMoveReport {
    /// The report as text.
    #[must_use]
    pub fn table(&self) -> String {
        let (e, v, m) = (&self.evpn, &self.vlnet, &self.members);
        format!(
            "evpn-move: a VM moves {MOVES} times between two hosts (RARP announce), a third site \
             pings it every {} ms; medians\n\
             \x20                                              EVPN (FRR RR)  vlnet (static peers)  \
             vlnet (controller members)\n\
             \x20 pings lost (of {})                       {:>13} {:>21} {:>27}\n\
             \x20 switch, announce to third site's FDB (ms) {:>13} {:>21} {:>27}\n\
             \x20 switch, data plane's move record (ms)     {:>13} {:>21} {:>27}\n",
            PING_INTERVAL.as_millis(),
            e.moves.first().map_or(0, |m| m.pings_sent),
            e.pings_lost_median,
            v.pings_lost_median,
            m.pings_lost_median,
            ms(e.fdb_switch_ms_median),
            ms(v.fdb_switch_ms_median),
            ms(m.fdb_switch_ms_median),
            ms(e.switch_ms_median),
            ms(v.switch_ms_median),
            ms(m.switch_ms_median),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_run_says_why_in_json_and_text() {
        let skipped = Outcome::Skipped("no bgpd".into());
        assert_eq!(
            skipped.to_json().unwrap(),
            serde_json::json!({ "skipped": "no bgpd" })
        );
        assert!(skipped.table().contains("skipped: no bgpd"));
    }

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn a_plane_without_data_plane_records_has_no_median_for_them() {
        let m = |lost, fdb| MoveMeasure {
            pings_sent: 200,
            pings_lost: lost,
            switch_ms: None,
            fdb_switch_ms: fdb,
        };
        let p = PlaneMoves::new(vec![m(3, Some(40.0)), m(1, None), m(2, Some(20.0))]);
        assert!((p.pings_lost_median - 2.0).abs() < f64::EPSILON, "{p:?}");
        assert_eq!(p.fdb_switch_ms_median, Some(30.0));
        assert_eq!(p.switch_ms_median, None);
    }

    #[test]
    fn the_members_plane_has_its_json_field_and_table_column() {
        let plane = |fdb| {
            PlaneMoves::new(vec![MoveMeasure {
                pings_sent: 200,
                pings_lost: 5,
                switch_ms: None,
                fdb_switch_ms: Some(fdb),
            }])
        };
        let report = Outcome::Measured(EvpnMoveReport {
            evpn: plane(300.0),
            vlnet: plane(0.5),
            members: plane(123.0),
        });
        let json = report.to_json().unwrap();
        assert_eq!(json["members"]["fdb_switch_ms_median"], 123.0, "{json:#}");
        let table = report.table();
        assert!(table.contains("vlnet (controller members)"), "{table}");
        let fdb_row = table.lines().find(|l| l.contains("FDB")).unwrap();
        assert!(fdb_row.trim_end().ends_with("123.000"), "{table}");
    }
}
