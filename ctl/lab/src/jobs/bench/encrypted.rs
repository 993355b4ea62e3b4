//! The bench's encrypted topologies, built, then measured like the others
//! (TCP and ping; no small-packet runs):
//! - `vlnet-wg`: a two-node [`Cluster`], the member on the controller's LAN
//!   and joined by token; VXLAN travels in vlnet's boringtun WireGuard.
//! - `kernel-wggo`: a [`WggoPair`], kernel vxlan inside wireguard-go.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::{measure_ends, no_bridge_netfilter, Ends, Measurement};
use crate::beds::cluster::{Cluster, Place};
use crate::beds::wggo_pair::WggoPair;
use crate::Vm;

/// Builds `vlnet-wg`, waits for the member's control session, and measures
/// VM0 (on the controller) → VM1 (on the member).
pub(super) fn vlnet_wg(binary: &Path, secs: u32) -> Result<Measurement> {
    let c = Cluster::build("bw", &[Place::Cloud], binary)?;
    c.wait_connected()?;
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    no_bridge_netfilter(&[
        c.wan.cloud().switch(),
        a.site.host().ns(),
        b.site.host().ns(),
    ])?;
    tcp_and_ping(&a.vm, &b.vm, secs, vec![a.daemon.name(), b.daemon.name()])
}

/// Builds `kernel-wggo` and measures VM0 → VM1.
pub(super) fn kernel_wggo(secs: u32) -> Result<Measurement> {
    let pair = WggoPair::build("bg")?;
    let [a, b] = &pair.sites;
    no_bridge_netfilter(&[pair.underlay.switch(), a.host.ns(), b.host.ns()])?;
    tcp_and_ping(&a.vm, &b.vm, secs, Vec::new())
}

/// TCP and ping from `client` to `server` (no small-packet runs: the
/// generator's clear VXLAN cannot enter a WireGuard tunnel); the costs of
/// the programs of `vlnet_nodes`.
fn tcp_and_ping(
    client: &Vm,
    server: &Vm,
    secs: u32,
    vlnet_nodes: Vec<&str>,
) -> Result<Measurement> {
    measure_ends(
        &Ends {
            client: client.ns(),
            server: server.ns(),
            server_ip: server.ip(),
            small_packets: None,
            vlnet_nodes,
        },
        secs,
        Duration::ZERO,
    )
}
