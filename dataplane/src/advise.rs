//! Placement advice: for a VM on this node, where its traffic comes from and
//! which node would give that traffic the lowest RTT.
//!
//! # Model
//! Over a window (the last minute), a VM exchanged `b_here` bytes with
//! endpoints on this node (bridge port counters minus tunnel traffic) and
//! `b_s` bytes with endpoints behind each remote VTEP `s`, whose flows saw a
//! traffic-weighted RTT `r_s` (measured in the kernel, `lib/flows.h`; the
//! underlay probe's RTT when no flow was sampled). The cost of a placement is
//! the traffic-weighted RTT its traffic would see:
//!
//! - here: `Σ b_s·r_s / B` (traffic on this node costs ~0);
//! - at `X`: `(b_here·d_X + Σ_{s≠X} b_s·(r_s + d_X)) / B`, where `d_X` is the
//!   RTT from here to `X` (underlay probe, else `r_X`): `X`'s own traffic
//!   becomes local, this node's traffic now crosses `here↔X`, and a third
//!   site's RTT from `X` is bounded by going through here (triangle
//!   inequality), a pessimistic estimate that favours staying.
//!
//! The VM should move to the cheapest `X` only if it saves at least
//! [`Thresholds::min_gain_ns`] and [`Thresholds::min_gain_fraction`] of the
//! current cost: a migration costs downtime, so small gains say "stay".

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;
use crate::model::{human_bytes, human_millis as ms};

/// Traffic between a VM and the endpoints behind one remote VTEP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteTraffic {
    /// The remote VTEP.
    pub vtep: Ipv4Addr,
    /// Bytes both ways in the window.
    pub bytes: u64,
    /// Flows that carried them.
    pub flows: usize,
    /// Traffic-weighted smoothed RTT of those flows, if any was sampled.
    pub flow_rtt_ns: Option<u64>,
}

/// One VM's traffic over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmTraffic {
    /// VXLAN network identifier.
    pub vni: u32,
    /// The VM's MAC.
    pub mac: MacAddr,
    /// Its addresses seen in flows.
    pub ips: Vec<IpAddr>,
    /// Bytes with endpoints on this node; `None` when its bridge port is
    /// unknown.
    pub local_bytes: Option<u64>,
    /// Traffic per remote VTEP, most bytes first.
    pub sites: Vec<SiteTraffic>,
    /// Length of the window, seconds.
    pub window_secs: f64,
}

/// When a move is worth it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Smallest saving of traffic-weighted RTT, ns.
    pub min_gain_ns: u64,
    /// Smallest saving as a fraction of the current cost.
    pub min_gain_fraction: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            min_gain_ns: 2_000_000,
            min_gain_fraction: 0.2,
        }
    }
}

/// The expected traffic-weighted RTT if the VM ran behind `vtep`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The node's VTEP.
    pub vtep: Ipv4Addr,
    /// Its name, when the control plane knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// RTT from here to it used by the model (`d_X`), ns.
    pub distance_ns: u64,
    /// Expected traffic-weighted RTT there, ns.
    pub weighted_rtt_ns: u64,
}

/// What to do with the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Verdict {
    /// Keep it here.
    Stay,
    /// Migrate it to the node behind `vtep`.
    Move {
        /// Target VTEP.
        vtep: Ipv4Addr,
    },
    /// Nothing to go by: no traffic crossed the tunnels in the window.
    NoData,
}

/// The advice for one VM, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    /// The VM's traffic.
    pub traffic: VmTraffic,
    /// Traffic-weighted RTT where it runs now, ns.
    pub here_weighted_rtt_ns: u64,
    /// Every other placement considered, cheapest first.
    pub placements: Vec<Placement>,
    /// The recommendation.
    pub verdict: Verdict,
    /// Saving of the recommended (or the best) placement, ns; negative if
    /// every other placement is worse.
    pub saving_ns: i64,
    /// The reasoning in sentences, for `vlnet ctl advise`.
    pub explanation: Vec<String>,
}

/// Advises on `vm`; `underlay_rtt` gives the probed RTT to a VTEP and
/// `names` the nodes' names where known.
#[must_use]
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    reason = "byte and ns figures far below 2^53; costs are non-negative"
)]
pub fn advise(
    vm: VmTraffic,
    underlay_rtt: impl Fn(Ipv4Addr) -> Option<u64>,
    names: &BTreeMap<Ipv4Addr, String>,
    th: Thresholds,
) -> Advice {
    // (vtep, bytes, rtt from here) of every site with a known RTT.
    let sites: Vec<(Ipv4Addr, f64, f64)> = vm
        .sites
        .iter()
        .filter_map(|s| {
            let rtt = s.flow_rtt_ns.or_else(|| underlay_rtt(s.vtep))?;
            Some((s.vtep, s.bytes as f64, rtt as f64))
        })
        .collect();
    let local = vm.local_bytes.unwrap_or(0) as f64;
    let total = local + sites.iter().map(|s| s.1).sum::<f64>();
    let mut explanation = describe_traffic(&vm, names);
    if sites.is_empty() || total == 0.0 {
        explanation.push("no traffic crossed the tunnels in the window: nothing to advise".into());
        return Advice {
            traffic: vm,
            here_weighted_rtt_ns: 0,
            placements: Vec::new(),
            verdict: Verdict::NoData,
            saving_ns: 0,
            explanation,
        };
    }

    let here = sites.iter().map(|&(_, b, r)| b * r).sum::<f64>() / total;
    let mut placements: Vec<Placement> = sites
        .iter()
        .map(|&(x, _, r_x)| {
            let d = underlay_rtt(x).map_or(r_x, |u| u as f64);
            let elsewhere: f64 = sites
                .iter()
                .filter(|s| s.0 != x)
                .map(|&(_, b, r)| b * (r + d))
                .sum();
            Placement {
                vtep: x,
                name: names.get(&x).cloned(),
                distance_ns: d as u64,
                weighted_rtt_ns: ((local * d + elsewhere) / total) as u64,
            }
        })
        .collect();
    placements.sort_by_key(|p| (p.weighted_rtt_ns, p.vtep));

    let best = &placements[0];
    let saving = here - best.weighted_rtt_ns as f64;
    let worth = saving >= th.min_gain_ns as f64 && saving >= th.min_gain_fraction * here;
    explanation.push(format!(
        "traffic-weighted RTT here: {}; at {}: {} (its own traffic becomes local, the rest \
         is estimated at most {} farther: through here)",
        ms(here),
        label(best.vtep, names),
        ms(best.weighted_rtt_ns as f64),
        ms(best.distance_ns as f64),
    ));
    let verdict = if worth {
        explanation.push(format!(
            "move to {}: saves {} ({:.0} %), above the thresholds ({} and {:.0} %)",
            label(best.vtep, names),
            ms(saving),
            100.0 * saving / here,
            ms(th.min_gain_ns as f64),
            100.0 * th.min_gain_fraction
        ));
        Verdict::Move { vtep: best.vtep }
    } else {
        explanation.push(format!(
            "stay: the best move saves {}, below the thresholds ({} and {:.0} % of {}); \
             a migration costs more than it gains",
            ms(saving.max(0.0)),
            ms(th.min_gain_ns as f64),
            100.0 * th.min_gain_fraction,
            ms(here)
        ));
        Verdict::Stay
    };
    Advice {
        traffic: vm,
        here_weighted_rtt_ns: here as u64,
        saving_ns: saving as i64,
        placements,
        verdict,
        explanation,
    }
}

#[allow(clippy::cast_precision_loss, reason = "display only")]
fn describe_traffic(vm: &VmTraffic, names: &BTreeMap<Ipv4Addr, String>) -> Vec<String> {
    let remote: u64 = vm.sites.iter().map(|s| s.bytes).sum();
    let total = remote + vm.local_bytes.unwrap_or(0);
    let share = |b: u64| {
        if total == 0 {
            0.0
        } else {
            100.0 * b as f64 / total as f64
        }
    };
    let mut parts: Vec<String> = vm
        .sites
        .iter()
        .map(|s| {
            format!(
                "{:.0} % from {} ({} flows, RTT {})",
                share(s.bytes),
                label(s.vtep, names),
                s.flows,
                s.flow_rtt_ns
                    .map_or_else(|| "not sampled".to_owned(), |r| ms(r as f64))
            )
        })
        .collect();
    parts.push(match vm.local_bytes {
        Some(b) => format!("{:.0} % on this node", share(b)),
        None => "traffic on this node unknown (bridge port not found)".to_owned(),
    });
    vec![format!(
        "traffic in the last {:.0} s: {}; {}",
        vm.window_secs,
        human_bytes(total),
        parts.join(", ")
    )]
}

fn label(vtep: Ipv4Addr, names: &BTreeMap<Ipv4Addr, String>) -> String {
    names
        .get(&vtep)
        .map_or_else(|| vtep.to_string(), |n| format!("{vtep} ({n})"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
    const CLOUD: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const MS: u64 = 1_000_000;

    fn vm(local: u64, sites: &[(Ipv4Addr, u64, u64)]) -> VmTraffic {
        VmTraffic {
            vni: 100,
            mac: "02:00:00:00:00:01".parse().unwrap(),
            ips: vec!["192.0.2.10".parse().unwrap()],
            local_bytes: Some(local),
            sites: sites
                .iter()
                .map(|&(vtep, bytes, rtt)| SiteTraffic {
                    vtep,
                    bytes,
                    flows: 1,
                    flow_rtt_ns: Some(rtt),
                })
                .collect(),
            window_secs: 60.0,
        }
    }

    fn no_probes(_: Ipv4Addr) -> Option<u64> {
        None
    }

    #[test]
    fn traffic_mostly_from_a_far_client_recommends_the_client() {
        let names = BTreeMap::from([(CLIENT, "lab-pc".to_owned())]);
        let a = advise(
            vm(1_000, &[(CLIENT, 90_000, 20 * MS), (CLOUD, 9_000, MS / 5)]),
            no_probes,
            &names,
            Thresholds::default(),
        );
        assert_eq!(a.verdict, Verdict::Move { vtep: CLIENT });
        // Here: 0.9 * 20 ms + 0.09 * 0.2 ms = 18.018 ms.
        assert_eq!(a.here_weighted_rtt_ns, 18_018_000);
        // At the client: (1000 * 20 + 9000 * 20.2) ms / 100000 = 2.018 ms.
        assert_eq!(a.placements[0].vtep, CLIENT);
        assert_eq!(a.placements[0].weighted_rtt_ns, 2_018_000);
        assert_eq!(a.saving_ns, 16_000_000);
        assert!(a.explanation.iter().any(|l| l.contains("lab-pc")), "{a:?}");
        assert!(a.explanation.last().unwrap().starts_with("move to"));
    }

    #[test]
    fn traffic_mostly_on_this_node_says_stay() {
        let a = advise(
            vm(1_000_000, &[(CLIENT, 10_000, 20 * MS)]),
            no_probes,
            &BTreeMap::new(),
            Thresholds::default(),
        );
        assert_eq!(a.verdict, Verdict::Stay);
        assert!(a.saving_ns < 0, "moving would make it worse: {a:?}");
        assert!(a.explanation.last().unwrap().starts_with("stay"));
    }

    #[test]
    fn a_small_gain_says_stay() {
        // Both sites near: moving saves < 2 ms.
        let a = advise(
            vm(0, &[(CLOUD, 100, MS), (CLIENT, 10, MS)]),
            no_probes,
            &BTreeMap::new(),
            Thresholds::default(),
        );
        assert_eq!(a.verdict, Verdict::Stay);
    }

    #[test]
    fn the_underlay_probe_fills_in_for_unsampled_flows_and_distances() {
        let mut traffic = vm(0, &[(CLIENT, 100, 0)]);
        traffic.sites[0].flow_rtt_ns = None;
        let a = advise(
            traffic,
            |v| (v == CLIENT).then_some(30 * MS),
            &BTreeMap::new(),
            Thresholds::default(),
        );
        assert_eq!(a.here_weighted_rtt_ns, 30 * MS);
        assert_eq!(a.placements[0].distance_ns, 30 * MS);
        assert_eq!(a.verdict, Verdict::Move { vtep: CLIENT });
    }

    #[test]
    fn no_tunnel_traffic_gives_no_advice() {
        let a = advise(
            vm(5_000, &[]),
            no_probes,
            &BTreeMap::new(),
            Thresholds::default(),
        );
        assert_eq!(a.verdict, Verdict::NoData);
    }
}
