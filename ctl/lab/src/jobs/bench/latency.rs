//! The bench's flow-RTT accuracy run: a client behind a WAN link whose delay
//! line adds [`INJECTED_RTT_MS`] joins a controller over WireGuard, pings
//! the controller's VM in several rounds (each `ping` run is a new ICMP echo
//! id, so a new flow), and the kernel's smoothed RTT of each round's flow
//! is compared with ping's own median for that round.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::beds::cluster::{Cluster, Place};
use crate::beds::scenario::vm_ip;
use crate::primitives::probe;

/// One-way delay of the client's WAN link.
const ONE_WAY: Duration = Duration::from_millis(10);
/// The RTT it adds.
pub const INJECTED_RTT_MS: f64 = 20.0;
/// Rounds, and pings per round at 20 ms intervals.
const ROUNDS: usize = 5;
const PINGS: u32 = 25;

/// What the run found.
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyReport {
    /// RTT the delay line adds, ms.
    pub injected_rtt_ms: f64,
    /// Per round: (ping's median, the kernel's smoothed RTT of the flow), ms.
    pub rounds: Vec<(f64, f64)>,
    /// Median over rounds of |kernel − ping|, ms.
    pub median_abs_error_ms: f64,
}

/// Builds the cluster, pings, reads `vlnet ctl flows`.
pub fn run(binary: &Path) -> Result<AccuracyReport> {
    let c = Cluster::build("bl", &[Place::PublicClientBehind(ONE_WAY)], binary)?;
    c.wait_connected()?;
    let (client, target) = (&c.nodes[1], vm_ip(0));
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let before = icmp_flows(&c, target)?;
        let ping = probe::ping(client.vm.ns(), target, PINGS, Duration::from_millis(20))?;
        let p50 = ping
            .rtt_p50_ms()
            .ok_or_else(|| anyhow!("no ping reply across the WAN: {ping:?}"))?;
        let new = icmp_flows(&c, target)?
            .into_iter()
            .find(|f| before.iter().all(|b| b.0 != f.0))
            .ok_or_else(|| anyhow!("no new ICMP flow after a ping round"))?;
        rounds.push((p50, new.1));
    }
    let mut errors: Vec<f64> = rounds.iter().map(|(p, k)| (k - p).abs()).collect();
    errors.sort_by(f64::total_cmp);
    Ok(AccuracyReport {
        injected_rtt_ms: INJECTED_RTT_MS,
        median_abs_error_ms: errors[errors.len() / 2],
        rounds,
    })
}

/// (echo id, smoothed RTT in ms) of the client's ICMP flows to `target`.
fn icmp_flows(c: &Cluster, target: Ipv4Addr) -> Result<Vec<(u64, f64)>> {
    let text = c.nodes[1].daemon.ctl(&["flows", "--json"])?;
    let flows: serde_json::Value = serde_json::from_str(&text).context("vlnet ctl flows --json")?;
    Ok(flows
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["protocol"] == 1 && f["remote_ip"] == target.to_string())
        .filter_map(|f| {
            let srtt = f["srtt_ns"].as_f64()? / 1e6;
            Some((f["local_port"].as_u64()?, srtt))
        })
        .collect())
}

impl AccuracyReport {
    /// The report as text.
    #[must_use]
    pub fn table(&self) -> String {
        let rounds: Vec<String> = self
            .rounds
            .iter()
            .map(|(p, k)| format!("{p:.2}/{k:.2}"))
            .collect();
        format!(
            "flow RTT accuracy: {:.0} ms injected on the WAN, ping p50 / kernel smoothed RTT per \
             round (ms): {}\n  median |error| {:.3} ms (test bound 2 ms)\n",
            self.injected_rtt_ms,
            rounds.join("  "),
            self.median_abs_error_ms
        )
    }
}
