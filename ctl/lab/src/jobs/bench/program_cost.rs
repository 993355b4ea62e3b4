//! What each of vlnet's kernel programs costs per run, from the kernel's
//! own BPF run-time statistics (`BPF_ENABLE_STATS`, what the sysctl
//! `kernel.bpf_stats_enabled` switches on, for as long as [`StatsOn`]
//! lives): the run time and run count of every program a topology's vlnet
//! nodes attached (their pinned links say which), summed by name over its
//! hosts, before and after its runs. The statistics
//! add two clock reads to every run of every BPF program (the generator's
//! too), for every topology alike.
//!
//! Flow tracking's price is the difference between `vlnet-tc` and
//! `vlnet-tc-noflows` in the two programs every tunnelled packet crosses
//! (encapsulation at the sender, decapsulation at the receiver), set
//! against the path's whole cost per packet: one over the rate at which
//! 64-byte frames reach the VM, on this machine's one receiving core.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use serde::Serialize;
use vlnet_dataplane::bpf;

/// The kernel's program names are cut to 15 bytes (`BPF_OBJ_NAME_LEN` − 1).
const KERNEL_NAME_LEN: usize = 15;

/// The programs reported, as vlnet names them.
const PROGRAMS: [&str; 6] = [
    bpf::PROG_TC_OVERLAY_TX,
    bpf::PROG_TC_VM_TX,
    bpf::PROG_TC_UNDERLAY_RX,
    bpf::PROG_XDP_UNDERLAY_RX,
    bpf::PROG_XDP_OVERLAY_PASS,
    bpf::PROG_TC_TUNNEL_RX,
];

/// The two programs every tunnelled packet crosses in TC mode.
const PER_PACKET: [&str; 2] = [bpf::PROG_TC_OVERLAY_TX, bpf::PROG_TC_UNDERLAY_RX];

/// Run-time statistics, on while this lives.
pub struct StatsOn {
    /// The kernel keeps the statistics on while this is open.
    _on: OwnedFd,
}

impl StatsOn {
    /// Turns the statistics on (needs root).
    pub fn enable() -> Result<Self> {
        aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .map(|on| Self { _on: on })
            .context("enabling BPF run-time statistics (BPF_ENABLE_STATS)")
    }
}

/// `program → (run time ns, runs)` of the loaded vlnet programs.
pub type Snapshot = BTreeMap<&'static str, (u64, u64)>;

/// The counters of the vlnet programs among `ids` (a topology's: other
/// programs of the same names may run beside it, a test's say), summed by
/// name.
#[must_use]
pub fn snapshot(ids: &BTreeSet<u32>) -> Snapshot {
    let mut totals = Snapshot::new();
    for info in aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|info| ids.contains(&info.id()))
    {
        let Some(name) = info.name_as_str() else {
            continue;
        };
        let Some(program) = PROGRAMS
            .into_iter()
            .find(|p| &p[..p.len().min(KERNEL_NAME_LEN)] == name)
        else {
            continue;
        };
        let entry = totals.entry(program).or_default();
        entry.0 += u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX);
        entry.1 += info.run_count();
    }
    totals
}

/// One program's cost over a topology's runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgramCost {
    /// vlnet's name for it.
    pub program: &'static str,
    /// Times it ran.
    pub runs: u64,
    /// Mean run time, ns.
    pub ns_per_run: f64,
}

/// What ran between `before` and `after` (programs that did not run are
/// left out).
#[must_use]
pub fn cost_between(before: &Snapshot, after: &Snapshot) -> Vec<ProgramCost> {
    PROGRAMS
        .into_iter()
        .filter_map(|program| {
            let (ns1, runs1) = after.get(program).copied()?;
            let (ns0, runs0) = before.get(program).copied().unwrap_or_default();
            let runs = runs1.checked_sub(runs0).filter(|r| *r > 0)?;
            let ns = ns1.saturating_sub(ns0);
            #[allow(
                clippy::cast_precision_loss,
                reason = "counts far below 2^52; a mean for a report"
            )]
            let ns_per_run = ns as f64 / runs as f64;
            Some(ProgramCost {
                program,
                runs,
                ns_per_run,
            })
        })
        .collect()
}

/// Flow tracking's price per packet and its share of the path's cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrackingCost {
    /// Extra ns per tunnelled packet (encap + decap), tracking on − off.
    pub ns_per_packet: f64,
    /// The path's cost per packet, ns: 1 / 64-byte frames delivered per
    /// second with tracking on.
    pub path_ns_per_packet: f64,
    /// `ns_per_packet / path_ns_per_packet`.
    pub share: f64,
}

/// Tracking's price from the costs with (`on`) and without (`off`) it and
/// the rate 64-byte frames were delivered at with it (Mpps).
#[must_use]
pub fn tracking_cost(
    on: &[ProgramCost],
    off: &[ProgramCost],
    delivered_mpps: f64,
) -> Option<TrackingCost> {
    let per_packet = |costs: &[ProgramCost]| -> Option<f64> {
        PER_PACKET
            .into_iter()
            .map(|p| costs.iter().find(|c| c.program == p).map(|c| c.ns_per_run))
            .sum()
    };
    let ns_per_packet = per_packet(on)? - per_packet(off)?;
    let path_ns_per_packet = (delivered_mpps > 0.0).then(|| 1e3 / delivered_mpps)?;
    Some(TrackingCost {
        ns_per_packet,
        path_ns_per_packet,
        share: ns_per_packet / path_ns_per_packet,
    })
}

/// The table: one row per program, one column per topology that ran vlnet
/// programs, then tracking's price.
#[must_use]
pub fn table(costs: &[(&'static str, Vec<ProgramCost>)], tracking: Option<TrackingCost>) -> String {
    let topologies: Vec<&(&str, Vec<ProgramCost>)> =
        costs.iter().filter(|(_, c)| !c.is_empty()).collect();
    let mut out = String::from(
        "kernel programs, ns per run (BPF run-time statistics over each topology's runs)\n",
    );
    let _ = write!(out, "{:<18}", "program");
    for (name, _) in &topologies {
        let _ = write!(out, "{name:>18}");
    }
    out.push('\n');
    for program in PROGRAMS {
        if !topologies
            .iter()
            .any(|(_, c)| c.iter().any(|c| c.program == program))
        {
            continue;
        }
        let _ = write!(out, "{program:<18}");
        for (_, c) in &topologies {
            match c.iter().find(|c| c.program == program) {
                Some(c) => {
                    let _ = write!(out, "{:>18}", format!("{:.0} ({})", c.ns_per_run, c.runs));
                }
                None => {
                    let _ = write!(out, "{:>18}", "-");
                }
            }
        }
        out.push('\n');
    }
    match tracking {
        Some(t) => {
            let _ = writeln!(
                out,
                "flow tracking: {:+.0} ns per packet (encap + decap), {:.1} % of the path's \
                 {:.0} ns per 64-byte packet",
                t.ns_per_packet,
                t.share * 100.0,
                t.path_ns_per_packet
            );
        }
        None => out.push_str("flow tracking: not measured\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_deltas_per_run_and_tracking_is_priced_against_the_path() {
        let before: Snapshot = [("tc_overlay_tx", (1_000, 10)), ("tc_underlay_rx", (0, 0))].into();
        let after: Snapshot = [
            ("tc_overlay_tx", (101_000, 1_010)),
            ("tc_underlay_rx", (150_000, 1_000)),
            ("tc_tunnel_rx", (5, 0)),
        ]
        .into();
        let on = cost_between(&before, &after);
        assert_eq!(
            on,
            [
                ProgramCost {
                    program: "tc_overlay_tx",
                    runs: 1_000,
                    ns_per_run: 100.0
                },
                ProgramCost {
                    program: "tc_underlay_rx",
                    runs: 1_000,
                    ns_per_run: 150.0
                },
            ],
            "a program that did not run is left out"
        );
        let off = vec![
            ProgramCost {
                program: "tc_overlay_tx",
                runs: 5,
                ns_per_run: 90.0,
            },
            ProgramCost {
                program: "tc_underlay_rx",
                runs: 5,
                ns_per_run: 140.0,
            },
        ];
        let t = tracking_cost(&on, &off, 0.2).unwrap();
        assert!((t.ns_per_packet - 20.0).abs() < 1e-9);
        assert!((t.path_ns_per_packet - 5_000.0).abs() < 1e-9);
        assert!((t.share - 0.004).abs() < 1e-9);
        assert_eq!(tracking_cost(&on, &off[..1], 0.2), None, "decap missing");
        assert_eq!(tracking_cost(&on, &off, 0.0), None, "no rate");

        let text = table(&[("vlnet-tc", on), ("kernel", Vec::new())], Some(t));
        assert!(text.contains("tc_underlay_rx"), "{text}");
        assert!(text.contains("150 (1000)"), "{text}");
        let header = text.lines().nth(1).unwrap();
        assert!(
            header.contains("vlnet-tc") && !header.contains("kernel"),
            "topologies without programs have no column: {text}"
        );
        assert!(text.contains("+20 ns per packet"), "{text}");
        assert!(text.contains("0.4 % of the path's 5000 ns"), "{text}");
    }
}
