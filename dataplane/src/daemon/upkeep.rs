//! The daemon's periodic upkeep of the maps: FDB ageing and capacity,
//! arrivals of migrated VMs, traffic samples for placement advice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::capacity;
use crate::fdb::{self, monotonic_ns};
use crate::netlink::Netlink;
use crate::node::Node;
use crate::traffic;

/// How long a MAC that moved here waits for its first frame from afar
/// before its arrival stops being timed.
const ARRIVAL_WAIT: Duration = Duration::from_secs(10);

/// Records the node's traffic for placement advice every
/// [`traffic::SAMPLE_EVERY`], starting now.
pub async fn sample_traffic(node: Arc<Node>) {
    let nl = match Netlink::connect() {
        Ok(nl) => nl,
        Err(e) => {
            warn!(error = %e, "placement advice disabled: no netlink");
            return;
        }
    };
    let mut tick = tokio::time::interval(traffic::SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let snapshot = node.traffic_snapshot(&nl).await;
        node.record_traffic(snapshot);
    }
}

/// Forgets arrivals that never saw a frame, every second.
pub async fn expire_arrivals(node: Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let wait = u64::try_from(ARRIVAL_WAIT.as_nanos()).unwrap_or(u64::MAX);
        if let Err(e) = node.maps().expire_arrivals(monotonic_ns(), wait) {
            warn!(error = %e, "cannot expire arrivals");
        }
    }
}

/// How often the FDB's capacity per VNI is enforced.
const CAPACITY_EVERY: Duration = Duration::from_secs(1);

/// Keeps every VNI within its FDB capacity, every [`CAPACITY_EVERY`]:
/// evicts the oldest learned entries of a VNI above it, pauses learning in
/// a full VNI (resumes it once there is room), and warns once when a VNI
/// crosses [`capacity::WARN_PERCENT`] of its capacity.
pub async fn enforce_fdb_capacity(node: Arc<Node>) {
    let mut watch = capacity::Watch::default();
    let mut paused = BTreeSet::new();
    let mut tick = tokio::time::interval(CAPACITY_EVERY);
    loop {
        tick.tick().await;
        let plan = match node.maps().enforce_fdb_capacity(&mut watch) {
            Ok(plan) => plan,
            Err(e) => {
                warn!(error = %e, "cannot enforce the FDB capacity");
                continue;
            }
        };
        if !plan.evict.is_empty() {
            info!(
                count = plan.evict.len(),
                "evicted the oldest learned FDB entries of full VNIs"
            );
        }
        for fill in &plan.nearly_full {
            warn!(
                vni = fill.vni,
                entries = fill.entries,
                capacity = fill.capacity,
                "FDB share of the VNI is {} % full; at capacity, new MACs are no longer \
                 learned (raise node.fdb_max_per_vni or the VNI's fdb_max?)",
                fill.percent()
            );
        }
        for vni in plan.paused.difference(&paused) {
            warn!(vni, "FDB share of the VNI is full: learning paused");
        }
        for vni in paused.difference(&plan.paused) {
            info!(vni, "FDB share of the VNI has room again: learning resumed");
        }
        paused = plan.paused;
    }
}

/// Removes learned FDB entries idle for `ageing_secs`, checking every
/// tenth of it (1 to 30 s).
pub async fn age_fdb(node: Arc<Node>, ageing_secs: u64) {
    let period = Duration::from_secs((ageing_secs / 10).clamp(1, 30));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let mut maps = node.maps();
        let expired = fdb::expired(&maps.fdb(), monotonic_ns(), ageing_secs);
        for key in &expired {
            if let Err(e) = maps.remove_fdb(key) {
                warn!(error = %e, "cannot age FDB entry");
            }
        }
        if !expired.is_empty() {
            info!(count = expired.len(), "aged out learned FDB entries");
        }
    }
}
