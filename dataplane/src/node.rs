//! The running node as the admin API and `/metrics` see it: fixed facts
//! decided at start-up plus live reads of the kernel maps.

use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use crate::api::ApiHandler;
use crate::fdb::{self, monotonic_ns};
use crate::maps::Maps;
use crate::metrics::MetricsSource;
use crate::model::{DatapathMode, FdbKind, FdbRecord, NodeStatus, PeerStatus, VniStatus};

/// Facts fixed when the daemon started.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// Node name.
    pub name: String,
    /// Local VTEP address.
    pub vtep: Ipv4Addr,
    /// Underlay interface.
    pub underlay: String,
    /// Underlay L3 MTU.
    pub underlay_mtu: u32,
    /// Decap mode in use.
    pub datapath: DatapathMode,
    /// Whether pinned programs of a previous daemon were adopted.
    pub adopted: bool,
    /// (VNI, bridge, bridge-side port name, peer count).
    pub vnis: Vec<(u32, String, String, usize)>,
}

/// Shared state of a running daemon.
pub struct Node {
    facts: NodeFacts,
    started: Instant,
    maps: Mutex<Maps>,
    shutdown: Notify,
}

impl Node {
    /// A node serving `facts` and reading `maps`.
    #[must_use]
    pub fn new(facts: NodeFacts, maps: Maps) -> Self {
        Self {
            facts,
            started: Instant::now(),
            maps: Mutex::new(maps),
            shutdown: Notify::new(),
        }
    }

    /// Exclusive access to the maps (held briefly: no I/O under the lock).
    pub fn maps(&self) -> MutexGuard<'_, Maps> {
        self.maps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resolves when a shutdown was requested through the API.
    pub async fn shutdown_requested(&self) {
        self.shutdown.notified().await;
    }

    /// The node's facts.
    #[must_use]
    pub fn facts(&self) -> &NodeFacts {
        &self.facts
    }
}

impl ApiHandler for Node {
    fn status(&self) -> Result<NodeStatus, String> {
        let maps = self.maps();
        let entries = maps.fdb();
        let vnis = self
            .facts
            .vnis
            .iter()
            .map(|(vni, bridge, port, peers)| VniStatus {
                vni: *vni,
                bridge: bridge.clone(),
                port: port.clone(),
                peers: *peers,
                fdb_entries: entries.iter().filter(|(k, _)| k.vni == *vni).count(),
            })
            .collect();
        Ok(NodeStatus {
            node: self.facts.name.clone(),
            vtep: self.facts.vtep,
            underlay: self.facts.underlay.clone(),
            datapath: self.facts.datapath,
            underlay_mtu: self.facts.underlay_mtu,
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            adopted: self.facts.adopted,
            vnis,
            drops: maps.drops(),
        })
    }

    fn peers(&self) -> Result<Vec<PeerStatus>, String> {
        Ok(self.maps().peers())
    }

    fn fdb(&self, vni: Option<u32>) -> Result<Vec<FdbRecord>, String> {
        Ok(fdb::records(&self.maps().fdb(), vni, monotonic_ns()))
    }

    fn shutdown(&self) {
        self.shutdown.notify_one();
    }
}

impl MetricsSource for Node {
    fn status(&self) -> Result<NodeStatus, String> {
        ApiHandler::status(self)
    }

    fn peers(&self) -> Result<Vec<PeerStatus>, String> {
        ApiHandler::peers(self)
    }

    fn fdb_counts(&self) -> Result<Vec<(u32, FdbKind, u64)>, String> {
        let mut counts: std::collections::BTreeMap<(u32, FdbKind), u64> =
            std::collections::BTreeMap::default();
        for (key, entry) in self.maps().fdb() {
            *counts.entry((key.vni, fdb::kind(&entry))).or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((vni, kind), n)| (vni, kind, n))
            .collect())
    }
}
