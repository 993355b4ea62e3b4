//! Next hops: every remote VTEP's egress interface and MACs, resolved from
//! the kernel's routes and neighbours into `vlnet_nexthops`.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;
use vlnet_ebpf::abi::{vlnet_nexthop, VLNET_NH_L3};

use crate::maps::{Maps, MapsError};
use crate::netlink::{Netlink, NextHop};
use crate::node::Node;

/// How often next hops are re-resolved from the kernel's tables.
pub const NEXTHOP_REFRESH: Duration = Duration::from_secs(1);
/// How often while some next hop is still unresolved.
pub const NEXTHOP_RETRY: Duration = Duration::from_millis(100);

/// How long start-up waits for the kernel to resolve new next hops, so that
/// the first flooded ARP does not find them unresolved.
const RESOLVE_WAIT: Duration = Duration::from_secs(2);

/// Resolves every peer's next hop into `vlnet_nexthops`; unresolved ones get
/// a managed neighbour entry so the kernel resolves them and keeps them fresh
/// (waiting up to [`RESOLVE_WAIT`] for that).
pub async fn resolve_next_hops(nl: &Netlink, node: &Node, peers: &[Ipv4Addr]) {
    let deadline = tokio::time::Instant::now() + RESOLVE_WAIT;
    loop {
        let pending = apply_next_hops(node, next_hop_updates(nl, peers).await);
        if !pending || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wanted: HashSet<Ipv4Addr> = peers.iter().copied().collect();
    let mut maps = node.maps();
    for stale in maps
        .nexthop_vteps()
        .into_iter()
        .filter(|v| !wanted.contains(v))
    {
        let _ = maps.remove_nexthop(stale);
    }
}

async fn next_hop_updates(nl: &Netlink, peers: &[Ipv4Addr]) -> Vec<(Ipv4Addr, NextHop)> {
    let hops = match nl.next_hops(peers).await {
        Ok(hops) => hops,
        Err(e) => {
            warn!(error = %e, "next-hop lookup failed");
            return Vec::new();
        }
    };
    for (peer, hop) in &hops {
        if let NextHop::Unresolved { ifindex, via } = hop {
            if let Err(e) = nl.ensure_managed_neighbour(*ifindex, *via).await {
                warn!(%peer, %via, error = %e, "cannot add managed neighbour");
            }
        }
    }
    hops
}

/// Writes `updates` into `vlnet_nexthops`; true while one of them is still
/// unresolved.
fn apply_next_hops(node: &Node, updates: Vec<(Ipv4Addr, NextHop)>) -> bool {
    let pending = updates
        .iter()
        .any(|(_, hop)| matches!(hop, NextHop::Unresolved { .. }));
    let mut maps = node.maps();
    for update in updates {
        apply_next_hop(&mut maps, update);
    }
    pending
}

fn apply_next_hop(maps: &mut Maps, (peer, hop): (Ipv4Addr, NextHop)) {
    let result = match hop {
        NextHop::Resolved {
            ifindex,
            smac,
            dmac,
        } => set_next_hop_if_changed(
            maps,
            peer,
            vlnet_nexthop {
                ifindex,
                smac,
                dmac,
                ..Default::default()
            },
        ),
        NextHop::Direct { ifindex, saddr } => set_next_hop_if_changed(
            maps,
            peer,
            vlnet_nexthop {
                ifindex,
                saddr_be: u32::from(saddr).to_be(),
                flags: VLNET_NH_L3,
                ..Default::default()
            },
        ),
        NextHop::NoRoute => maps.set_nexthop(peer, &vlnet_nexthop::default()),
        NextHop::Unresolved { .. } => maps.remove_nexthop(peer),
    };
    if let Err(e) = result {
        warn!(%peer, error = %e, "cannot update next hop");
    }
}

fn set_next_hop_if_changed(
    maps: &mut Maps,
    peer: Ipv4Addr,
    entry: vlnet_nexthop,
) -> Result<(), MapsError> {
    if maps.nexthop(peer) == Some(entry) {
        return Ok(());
    }
    maps.set_nexthop(peer, &entry)
}

/// Keeps every peer's next hop fresh: every [`NEXTHOP_REFRESH`], or
/// [`NEXTHOP_RETRY`] while one is unresolved.
pub async fn refresh_next_hops(node: Arc<Node>) {
    let nl = match Netlink::connect() {
        Ok(nl) => nl,
        Err(e) => {
            warn!(error = %e, "next-hop refresh disabled");
            return;
        }
    };
    loop {
        let peers = node.next_hop_peers();
        let pending = apply_next_hops(&node, next_hop_updates(&nl, &peers).await);
        // Poll fast while a peer is being resolved: frames other than IPv4
        // cannot reach it until then.
        tokio::time::sleep(if pending {
            NEXTHOP_RETRY
        } else {
            NEXTHOP_REFRESH
        })
        .await;
    }
}
