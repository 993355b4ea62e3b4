//! The running node as the admin API and `/metrics` see it: fixed facts
//! decided at start-up plus live reads of the kernel maps. Its requests
//! fail with a [`NodeError`] (`node/error.rs`).

mod error;
mod plane;

pub use error::NodeError;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::mutex::lock;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::advise::{advise, Advice, Thresholds};
use crate::api::ApiHandler;
use crate::control::macbook::FdbChange;
use crate::control::neighbook::{MacKey, NeighSet};
use crate::control::{ClientRecord, ControlPlane, DataplaneHooks, JoinReport, LeaveReport};
use crate::daemon::ReloadError;
use crate::fdb::{self, monotonic_ns};
use crate::flows::{FlowQuery, FlowRecord, RttHistogram};
use crate::mac::MacAddr;
use crate::maps::{ControlFdb, Maps};
use crate::metrics::{ControlMetrics, FdbCapacity, FlowMetrics, MetricsSource};
use crate::model::{
    BypassStatus, DatapathMode, EvpnReport, FdbKind, FdbRecord, LinkStatus, NodeStatus, PeerStatus,
    ReloadReport, VniStatus,
};
use crate::moves::{MoveKind, MoveLog, MoveRecord};
use crate::netlink::Netlink;
use crate::peer_rtt::{PeerRtt, PeerRttTable};
use crate::traffic::{Snapshot, TrafficHistory};
use plane::Plane;

/// Facts decided at start-up and on every convergence.
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
    /// Whether the node relays between static peers and members (a
    /// gateway: the controller).
    pub relay: bool,
    /// (VNI, bridge, bridge-side port name, peer count).
    pub vnis: Vec<(u32, String, String, usize)>,
    /// The VNIs with the bridge bypass on.
    pub bypass: BTreeSet<u32>,
    /// Every program link and what this daemon did with it.
    pub links: Vec<LinkStatus>,
}

/// Shared state of a running daemon.
pub struct Node {
    facts: Mutex<NodeFacts>,
    started: Instant,
    maps: Mutex<Maps>,
    next_hop_peers: Mutex<Vec<Ipv4Addr>>,
    control: OnceLock<Arc<ControlPlane>>,
    moves: Mutex<MoveLog>,
    peer_rtt: Arc<Mutex<PeerRttTable>>,
    traffic: Mutex<TrafficHistory>,
    locals: watch::Sender<BTreeSet<(u32, MacAddr)>>,
    locals_poke: Notify,
    bridge_macs: Mutex<BTreeSet<(u32, MacAddr)>>,
    bypass: Mutex<BTreeMap<u32, BypassStatus>>,
    shutdown: Notify,
    reloads: OnceLock<mpsc::Sender<ReloadReply>>,
    evpn: crate::evpn::run::Status,
}

/// Where a reload's outcome goes (the convergence task answers).
pub type ReloadReply = oneshot::Sender<Result<ReloadReport, ReloadError>>;

impl Node {
    /// A node serving `facts` and reading `maps`.
    #[must_use]
    pub fn new(facts: NodeFacts, maps: Maps) -> Self {
        Self {
            facts: Mutex::new(facts),
            started: Instant::now(),
            maps: Mutex::new(maps),
            next_hop_peers: Mutex::new(Vec::new()),
            control: OnceLock::new(),
            moves: Mutex::new(MoveLog::default()),
            peer_rtt: Arc::default(),
            traffic: Mutex::default(),
            locals: watch::channel(BTreeSet::new()).0,
            locals_poke: Notify::new(),
            bridge_macs: Mutex::default(),
            bypass: Mutex::default(),
            shutdown: Notify::new(),
            reloads: OnceLock::new(),
            evpn: crate::evpn::run::Status::default(),
        }
    }

    /// The EVPN agent's neighbors (none without `[evpn]`), shared with the
    /// agent, which keeps them up to date.
    #[must_use]
    pub fn evpn_status(&self) -> crate::evpn::run::Status {
        Arc::clone(&self.evpn)
    }

    /// Where reload requests go (the convergence task, set at start-up).
    pub fn set_reloads(&self, reloads: mpsc::Sender<ReloadReply>) {
        let _ = self.reloads.set(reloads);
    }

    /// Asks the convergence task to read the config again and apply it;
    /// its answer.
    pub async fn reload(&self) -> Result<ReloadReport, NodeError> {
        let sender = self.reloads.get().ok_or(NodeError::Starting)?;
        let (reply, answer) = oneshot::channel();
        sender.try_send(reply).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => NodeError::ReloadBusy,
            mpsc::error::TrySendError::Closed(_) => NodeError::Stopping,
        })?;
        Ok(answer.await.map_err(|_| NodeError::Stopping)??)
    }

    /// Exclusive access to the maps (held briefly: no I/O under the lock).
    /// Lock order: the control plane takes its own state first and these
    /// under it, so never ask the control plane while holding them.
    pub fn maps(&self) -> MutexGuard<'_, Maps> {
        lock(&self.maps)
    }

    /// Replaces the facts after a convergence.
    pub fn set_facts(&self, facts: NodeFacts) {
        *lock(&self.facts) = facts;
    }

    /// Replaces the program links reported (the bridge bypass attached or
    /// detached some between convergences).
    pub fn set_links(&self, links: Vec<LinkStatus>) {
        lock(&self.facts).links = links;
    }

    /// The remote VTEPs whose next hops are kept resolved.
    #[must_use]
    pub fn next_hop_peers(&self) -> Vec<Ipv4Addr> {
        lock(&self.next_hop_peers).clone()
    }

    /// Sets the remote VTEPs whose next hops are kept resolved.
    pub fn set_next_hop_peers(&self, peers: Vec<Ipv4Addr>) {
        *lock(&self.next_hop_peers) = peers;
    }

    /// Where the underlay RTT probes record their results.
    #[must_use]
    pub fn peer_rtt_table(&self) -> Arc<Mutex<PeerRttTable>> {
        Arc::clone(&self.peer_rtt)
    }

    /// Every tracked inner flow, read from the kernel now.
    #[must_use]
    pub fn flow_records(&self) -> Vec<FlowRecord> {
        let flows = self.maps().flows();
        let now = monotonic_ns();
        flows
            .iter()
            .map(|(key, flow)| FlowRecord::from_kernel(key, flow, now))
            .collect()
    }

    /// The node's traffic now: every flow, and the bytes through each local
    /// VM's bridge port (VMs are the MACs the bridges learned on ports other
    /// than vlnet's).
    pub async fn traffic_snapshot(&self, nl: &Netlink) -> Snapshot {
        let mut ports = BTreeMap::new();
        for (vni, bridge, port, _) in self.facts().vnis {
            let Ok((Some(bridge), Some(port))) =
                futures::try_join!(nl.link(&bridge), nl.link(&port))
            else {
                continue;
            };
            let Ok(learned) = nl.bridge_learned_ports(bridge.index, port.index).await else {
                continue;
            };
            for (mac, ifindex) in learned {
                if let Ok(Some(bytes)) = nl.link_bytes(ifindex).await {
                    ports.insert((vni, mac), bytes);
                }
            }
        }
        Snapshot {
            at_ns: monotonic_ns(),
            ports,
            flows: self.flow_records(),
        }
    }

    /// Adds a snapshot to the advice window.
    pub fn record_traffic(&self, snapshot: Snapshot) {
        lock(&self.traffic).record(snapshot);
    }

    /// The MACs living behind this node, as last read from its bridges
    /// (`(vni, mac)` learned on ports other than the overlay ports), kept
    /// up to date by [`crate::locals::watch`].
    #[must_use]
    pub fn local_macs(&self) -> watch::Receiver<BTreeSet<(u32, MacAddr)>> {
        self.locals.subscribe()
    }

    /// Publishes the local MACs just read (subscribers wake only on change).
    pub fn publish_locals(&self, observed: BTreeSet<(u32, MacAddr)>) {
        self.locals.send_if_modified(|current| {
            let changed = *current != observed;
            *current = observed;
            changed
        });
    }

    /// Records each bypass VNI's ports, as just read (see
    /// [`crate::bypass`]).
    pub fn set_bypass_status(&self, status: BTreeMap<u32, BypassStatus>) {
        *lock(&self.bypass) = status;
    }

    /// Each bypass VNI's ports, as last read.
    #[must_use]
    pub fn bypass_status(&self) -> BTreeMap<u32, BypassStatus> {
        lock(&self.bypass).clone()
    }

    /// Asks [`crate::locals::watch`] to read the bridges now.
    pub fn poke_locals(&self) {
        self.locals_poke.notify_one();
    }

    /// Resolves when [`Self::poke_locals`] was called.
    pub async fn locals_poked(&self) {
        self.locals_poke.notified().await;
    }

    /// Records a MAC move the programs reported; a MAC that moved here is
    /// recorded as local and advertised at once rather than at the next poll
    /// of the bridges.
    pub fn record_move(&self, record: MoveRecord) {
        let (vni, mac, from) = (record.vni, record.mac, record.from);
        match record.kind {
            MoveKind::Remote => {
                tracing::info!(vni, %mac, %from, to = ?record.to, "MAC moved to another VTEP");
            }
            MoveKind::Local => tracing::info!(vni, %mac, %from, "MAC moved here"),
            // `from` is the frame's sender here, not where the MAC was.
            MoveKind::Delivered => tracing::info!(
                vni,
                %mac,
                sender = %from,
                path_switch_us = ?record.path_switch_us,
                "first frame for a MAC that moved here"
            ),
        }
        let local = record.kind == MoveKind::Local;
        lock(&self.moves).push(record);
        if local {
            // Read at once; the control plane advertises what it publishes.
            self.poke_locals();
        }
    }

    /// Records each VNI's bridge's own address, as just read (see
    /// [`Self::record_arrival`]).
    pub fn set_bridge_macs(&self, macs: BTreeSet<(u32, MacAddr)>) {
        *lock(&self.bridge_macs) = macs;
    }

    /// `mac`, new on `vni` here, sent its first broadcast (a VM came up, or
    /// moved here after its old entry went): counted, and the bridges are
    /// read at once so that the control plane advertises it without waiting
    /// for the next poll. The VNI's bridge's own address is no VM's and is
    /// left alone: the bridge broadcasts from it too (IPv6 router
    /// solicitations, backing off from 4 s), and as each read of the bridges
    /// drops the kernel's record of an address they did not learn, every
    /// such frame would count again.
    pub fn record_arrival(&self, vni: u32, mac: MacAddr) {
        if lock(&self.bridge_macs).contains(&(vni, mac)) {
            return;
        }
        lock(&self.moves).arrived();
        self.poke_locals();
    }

    /// Attaches the control plane (once).
    pub fn set_control(&self, control: Arc<ControlPlane>) {
        let _ = self.control.set(control);
    }

    fn control(&self) -> Result<&Arc<ControlPlane>, NodeError> {
        self.control.get().ok_or(NodeError::NoControlPlane)
    }

    /// Resolves when a shutdown was requested through the API.
    pub async fn shutdown_requested(&self) {
        self.shutdown.notified().await;
    }

    /// The node's facts.
    #[must_use]
    pub fn facts(&self) -> NodeFacts {
        lock(&self.facts).clone()
    }
}

impl ApiHandler for Node {
    fn status(&self) -> Result<NodeStatus, NodeError> {
        // Before the maps' lock: the control plane takes its own lock first
        // and the maps' under it (its view of the cloud), so holding the
        // maps while asking it would deadlock against its upkeep.
        let member = self
            .control
            .get()
            .and_then(|c| c.member_status())
            .map(Box::new);
        let facts = self.facts();
        let bypass = self.bypass_status();
        let maps = self.maps();
        let entries = maps.fdb();
        let vnis = facts
            .vnis
            .iter()
            .map(|(vni, bridge, port, peers)| VniStatus {
                vni: *vni,
                bridge: bridge.clone(),
                port: port.clone(),
                peers: *peers,
                fdb_entries: entries.iter().filter(|(k, _)| k.vni == *vni).count(),
                bypass: facts
                    .bypass
                    .contains(vni)
                    .then(|| bypass.get(vni).cloned().unwrap_or_default()),
            })
            .collect();
        Ok(NodeStatus {
            node: facts.name.clone(),
            vtep: facts.vtep,
            underlay: facts.underlay.clone(),
            datapath: facts.datapath,
            underlay_mtu: facts.underlay_mtu,
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            adopted: facts.adopted,
            links: facts.links.clone(),
            vnis,
            drops: maps.drops(),
            relay: facts.relay,
            relayed: maps.relay_counts(),
            member,
            suppression: maps.suppression(),
        })
    }

    fn peers(&self) -> Result<Vec<PeerStatus>, NodeError> {
        let mut peers = self.maps().peers();
        let rtt = lock(&self.peer_rtt);
        for p in &mut peers {
            p.rtt_ns = rtt.srtt_ns(p.vtep);
        }
        Ok(peers)
    }

    fn flows(&self, query: FlowQuery) -> Result<Vec<FlowRecord>, NodeError> {
        Ok(query.select(self.flow_records()))
    }

    fn fdb(&self, vni: Option<u32>) -> Result<Vec<FdbRecord>, NodeError> {
        Ok(fdb::records(&self.maps().fdb(), vni, monotonic_ns()))
    }

    fn shutdown(&self) {
        self.shutdown.notify_one();
    }

    fn client_add(
        &self,
        name: &str,
        vnis: &[u32],
        ttl_secs: u64,
        uses: Option<u32>,
    ) -> Result<String, NodeError> {
        Ok(self.control()?.client_add(name, vnis, ttl_secs, uses)?)
    }

    fn client_list(&self) -> Result<Vec<ClientRecord>, NodeError> {
        Ok(self.control()?.client_list()?)
    }

    fn client_remove(&self, name: &str) -> Result<(), NodeError> {
        Ok(self.control()?.client_remove(name)?)
    }

    fn vm_moved(
        &self,
        mac: MacAddr,
        vni: Option<u32>,
        bridge: Option<&str>,
    ) -> Result<(), NodeError> {
        let facts = self.facts();
        let found = facts
            .vnis
            .iter()
            .find(|v| vni.is_none_or(|n| v.0 == n) && bridge.is_none_or(|b| v.1 == b));
        let Some(&(vni, ref bridge, _, _)) = found.filter(|_| vni.is_some() || bridge.is_some())
        else {
            return Err(match (vni, bridge) {
                (Some(n), _) => NodeError::VniNotServed(n),
                (None, Some(b)) => NodeError::BridgeNotServed(b.to_owned()),
                (None, None) => NodeError::NoVmPlace,
            });
        };
        crate::announce::announce(bridge, mac).map_err(|source| NodeError::Announce {
            bridge: bridge.clone(),
            vni,
            source,
        })?;
        if let Some(control) = self.control.get() {
            control.claim_local(vni, mac);
        }
        tracing::info!(vni, %mac, %bridge, "VM moved here: announced");
        Ok(())
    }

    fn vm_move(&self, mac: MacAddr, vni: u32, to: &str, ttl_secs: u64) -> Result<(), NodeError> {
        Ok(self.control()?.grant_move(vni, mac, to, ttl_secs)?)
    }

    fn moves(&self) -> Result<Vec<MoveRecord>, NodeError> {
        Ok(lock(&self.moves).records())
    }

    fn advise(&self, thresholds: Thresholds) -> Result<Vec<Advice>, NodeError> {
        let nl = Netlink::connect()?;
        let now = tokio::runtime::Handle::current().block_on(self.traffic_snapshot(&nl));
        let vms = lock(&self.traffic).vm_traffic(&now);
        let names: BTreeMap<Ipv4Addr, String> = self
            .control
            .get()
            .and_then(|c| c.client_list().ok())
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.tunnel_addr, c.name))
            .collect();
        let rtt = lock(&self.peer_rtt);
        Ok(vms
            .into_iter()
            .map(|vm| advise(vm, |v| rtt.srtt_ns(v), &names, thresholds))
            .collect())
    }

    fn join(&self, token: &str) -> Result<JoinReport, NodeError> {
        let control = Arc::clone(self.control()?);
        Ok(tokio::runtime::Handle::current().block_on(control.join(token))?)
    }

    fn leave(&self, force: bool) -> Result<LeaveReport, NodeError> {
        let control = Arc::clone(self.control()?);
        Ok(tokio::runtime::Handle::current().block_on(control.leave(force))?)
    }

    fn reload(&self) -> Result<ReloadReport, NodeError> {
        tokio::runtime::Handle::current().block_on(Node::reload(self))
    }

    fn evpn(&self) -> Result<EvpnReport, NodeError> {
        let snapshot = lock(&self.evpn);
        if snapshot.neighbors.is_empty() {
            return Err(NodeError::NoEvpn);
        }
        Ok(snapshot.report())
    }
}

impl Node {
    /// Programs `plane`'s FDB `changes`.
    fn apply_fdb_of(&self, plane: Plane, changes: &[FdbChange]) {
        let mut maps = self.maps();
        for change in changes {
            if let FdbChange::Remove { vni, mac } = change {
                let behind = maps
                    .fdb_entry(*vni, mac.0)
                    .map(|e| Ipv4Addr::from(u32::from_be(e.vtep_be)));
                if behind.is_some_and(|v| !plane.may_remove_behind(maps.vtep_path(v))) {
                    continue; // the other plane's now
                }
            }
            if let FdbChange::Install { vni, mac, .. } = change {
                // Behind a remote VTEP now: frames for it leave the bypass
                // at once (the next read of the bridges would be late).
                if let Err(e) = maps.forget_bypass(*vni, mac.0) {
                    tracing::warn!(vni, %mac, error = %e, "cannot remove the MAC's bridge bypass");
                }
            }
            match maps.apply_control_fdb(change) {
                Ok(ControlFdb::Applied | ControlFdb::Refused { warn: false, .. }) => {}
                Ok(ControlFdb::Refused { vni, warn: true }) => {
                    let capacity = maps.fdb_capacities().of(vni);
                    tracing::warn!(
                        vni,
                        capacity,
                        ?change,
                        "FDB share of the VNI is full of static and control-plane entries: \
                         entry refused (vlnet_fdb_refused_total; raise its fdb_max?)"
                    );
                }
                Err(e) => tracing::warn!(?change, error = %e, "cannot program FDB entry"),
            }
        }
    }
}

impl DataplaneHooks for Node {
    fn apply_fdb(&self, changes: &[FdbChange]) {
        self.apply_fdb_of(Plane::Members, changes);
    }

    fn apply_evpn_fdb(&self, changes: &[FdbChange]) {
        self.apply_fdb_of(Plane::Evpn, changes);
    }

    fn vni_ports(&self) -> Vec<(u32, String, String)> {
        self.facts()
            .vnis
            .into_iter()
            .map(|(vni, bridge, port, _)| (vni, bridge, port))
            .collect()
    }

    fn fdb_holder(&self, vni: u32, mac: MacAddr) -> Option<Ipv4Addr> {
        let maps = self.maps();
        let e = maps.fdb_entry(vni, mac.0)?;
        let vtep = Ipv4Addr::from(u32::from_be(e.vtep_be));
        let control = e.flags & vlnet_ebpf::abi::VLNET_FDB_CONTROL != 0;
        let members = maps.vtep_path(vtep) == Some(vlnet_ebpf::abi::VLNET_PATH_TUNNEL);
        (!control || !members).then_some(vtep)
    }

    fn local_macs(&self) -> watch::Receiver<BTreeSet<(u32, MacAddr)>> {
        Node::local_macs(self)
    }

    fn apply_neigh(&self, changes: &[(MacKey, NeighSet)]) {
        let batch = changes.iter().map(|(key, set)| (*key, set));
        if let Err(e) = self.maps().apply_neighs(batch) {
            tracing::warn!(changes = changes.len(), error = %e, "cannot program IP bindings");
        }
    }

    fn local_neighs(&self) -> BTreeMap<MacKey, NeighSet> {
        self.maps().local_neighs().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the snooped IP bindings");
            BTreeMap::new()
        })
    }

    fn zone_neighs(&self) -> BTreeMap<MacKey, NeighSet> {
        self.maps().zone_neighs().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the zone's snooped IP bindings");
            BTreeMap::new()
        })
    }

    fn clear_control_neighs(&self) {
        if let Err(e) = self.maps().clear_control_neighs() {
            tracing::warn!(error = %e, "cannot clear the control plane's IP bindings");
        }
    }

    fn forget_local(&self, vni: u32, mac: MacAddr) {
        if let Err(e) = self.maps().forget_bypass(vni, mac.0) {
            tracing::warn!(vni, %mac, error = %e, "cannot remove the moved MAC's bridge bypass");
        }
        let Some((_, bridge, port)) = self.vni_ports().into_iter().find(|v| v.0 == vni) else {
            return;
        };
        tokio::spawn(async move {
            let forgot = async {
                let nl = Netlink::connect()?;
                let (Some(bridge), Some(port)) = (nl.link(&bridge).await?, nl.link(&port).await?)
                else {
                    return Ok(0);
                };
                nl.forget_bridge_mac(bridge.index, port.index, mac).await
            };
            match forgot.await {
                Ok(n) => tracing::info!(vni, %mac, entries = n, "MAC moved away: bridge forgot it"),
                Err(e) => {
                    tracing::warn!(vni, %mac, error = %e, "cannot remove a moved MAC from the bridge");
                }
            }
        });
    }
}

impl MetricsSource for Node {
    fn moves(&self) -> Option<crate::moves::MoveCounts> {
        Some(lock(&self.moves).counts())
    }

    fn path_switches(&self) -> Option<crate::moves::SwitchHistogram> {
        Some(lock(&self.moves).switches().clone())
    }

    fn control(&self) -> Option<ControlMetrics> {
        let control = self.control.get()?;
        Some(ControlMetrics {
            rejected: control.rejects.snapshot(),
            sessions: control.sessions(),
            frozen_macs: control.frozen_macs().len() as u64,
            waiting_claims: control.waiting_claims(),
            members: control.member_traffic(),
            wg_rx_dropped: control.wg_rx_drops(),
        })
    }

    fn flows(&self) -> Option<FlowMetrics> {
        let mut counts = std::collections::BTreeMap::<u32, u64>::new();
        for (key, _) in self.maps().flows() {
            *counts.entry(key.vni).or_default() += 1;
        }
        let rtt = self
            .maps()
            .rtt_histograms()
            .iter()
            .map(|(key, hist)| RttHistogram::from_kernel(key, hist))
            .collect();
        Some(FlowMetrics {
            rtt,
            counts: counts.into_iter().collect(),
        })
    }

    fn peer_rtts(&self) -> Option<Vec<(Ipv4Addr, PeerRtt)>> {
        Some(lock(&self.peer_rtt).snapshot())
    }

    fn bypass_packets(&self) -> Option<(u64, u64)> {
        Some(self.maps().bypass_packets())
    }

    fn evpn(&self) -> Option<EvpnReport> {
        let snapshot = lock(&self.evpn);
        (!snapshot.neighbors.is_empty()).then(|| snapshot.report())
    }

    fn fdb_capacity(&self) -> Option<FdbCapacity> {
        let maps = self.maps();
        Some(FdbCapacity {
            capacity: maps.fdb_capacities().served().collect(),
            refused: maps.fdb_refused(),
        })
    }

    fn status(&self) -> Result<NodeStatus, NodeError> {
        ApiHandler::status(self)
    }

    fn peers(&self) -> Result<Vec<PeerStatus>, NodeError> {
        ApiHandler::peers(self)
    }

    fn fdb_counts(&self) -> Result<Vec<(u32, FdbKind, u64)>, NodeError> {
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
