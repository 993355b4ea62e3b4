//! The gateway end to end: a kernel-vxlan node's VM reaching a client's
//! VM through the gateway (kernel vxlan → cloud LAN → the gateway's relay
//! → WireGuard → the client), against the gateway's own VM reaching the
//! same client VM directly (vlnet → WireGuard → the client), in one run on
//! one cluster (see [`cluster`](crate::beds::cluster)): TCP (iperf3, one
//! stream) and ping RTT, and their ratios. The client is across an
//! undelayed WAN link, so the ratios show what the relay adds.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{no_bridge_netfilter, warm_up, IPERF_PORT, PINGS, PING_INTERVAL};
use crate::beds::cluster::{Cluster, ClusterOptions, Place};
use crate::beds::scenario::{vm_ip, vm_mac};
use crate::primitives::probe;
use crate::NetNs;

/// The client in the cluster.
const CLIENT: usize = 1;

/// One path's figures.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PathFigures {
    /// iperf3, one stream, Gbit/s.
    pub tcp_gbit_s: f64,
    /// Median ping RTT, ms.
    pub ping_rtt_p50_ms: f64,
}

/// Both paths to the client and their ratios.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GatewayRun {
    /// Kernel node's VM → gateway → client VM.
    pub relayed: PathFigures,
    /// Gateway's VM → client VM.
    pub direct: PathFigures,
    /// Relayed TCP throughput / direct (↑ better).
    pub tcp_ratio: f64,
    /// Relayed ping RTT / direct (↓ better).
    pub rtt_ratio: f64,
}

impl GatewayRun {
    /// The table `vlnet lab bench` prints.
    #[must_use]
    pub fn table(&self) -> String {
        format!(
            "gateway relay (kernel node → gateway → client) vs direct (vlnet node → client)\n\
             metric               relayed     direct   ratio\n\
             TCP 1 stream (Gbit/s) {:>8.3}   {:>8.3}   {:.2}\n\
             ping RTT p50 (ms)     {:>8.3}   {:>8.3}   {:.2} (↓ better)\n",
            self.relayed.tcp_gbit_s,
            self.direct.tcp_gbit_s,
            self.tcp_ratio,
            self.relayed.ping_rtt_p50_ms,
            self.direct.ping_rtt_p50_ms,
            self.rtt_ratio,
        )
    }
}

/// Builds the gateway, its kernel-vxlan peer and a client, and measures
/// both paths for `secs` of TCP each.
pub fn run(binary: &Path, secs: u32) -> Result<GatewayRun> {
    let options = ClusterOptions {
        kernel_peers: 1,
        ..ClusterOptions::default()
    };
    let c = Cluster::build_with("bg", &[Place::PublicClient], &options, binary)?;
    c.wait_connected()?;
    let mut namespaces = vec![c.wan.cloud().switch()];
    namespaces.extend(c.nodes.iter().map(|n| n.site.host().ns()));
    namespaces.push(c.kernels[0].host.ns());
    no_bridge_netfilter(&namespaces)?;
    let client_ip = vm_ip(CLIENT);
    warm_up(c.nodes[0].vm.ns(), client_ip)?;
    c.wait_placed(0, &vm_mac(CLIENT), c.tunnel_addr(CLIENT)?)
        .context("the gateway never held the client VM's route")?;
    let kernel = c.kernels[0].vm.ns();
    warm_up(kernel, client_ip)?;
    let relayed = figures(kernel, c.nodes[CLIENT].vm.ns(), client_ip, secs)?;
    let direct = figures(c.nodes[0].vm.ns(), c.nodes[CLIENT].vm.ns(), client_ip, secs)?;
    Ok(GatewayRun {
        relayed,
        direct,
        tcp_ratio: relayed.tcp_gbit_s / direct.tcp_gbit_s.max(1e-9),
        rtt_ratio: relayed.ping_rtt_p50_ms / direct.ping_rtt_p50_ms.max(1e-9),
    })
}

/// Ping RTT and TCP from `from` to `to` (at `ip`).
fn figures(from: &NetNs, to: &NetNs, ip: Ipv4Addr, secs: u32) -> Result<PathFigures> {
    let ping = probe::ping(from, ip, PINGS, PING_INTERVAL)?;
    let _server = probe::iperf3_server(to, ip, IPERF_PORT)?;
    let tcp = probe::iperf3_client(from, ip, secs, 1, IPERF_PORT)?;
    eprintln!(
        "      {} → {ip}: TCP {:.3} Gbit/s, ping p50 {:.3} ms",
        from.name(),
        tcp.bits_per_second / 1e9,
        ping.rtt_p50_ms().unwrap_or(f64::NAN)
    );
    Ok(PathFigures {
        tcp_gbit_s: tcp.bits_per_second / 1e9,
        ping_rtt_p50_ms: ping.rtt_p50_ms().unwrap_or(0.0),
    })
}
