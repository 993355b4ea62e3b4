//! The running control plane: the node's role with its decision core
//! ([`ControllerCore`] or [`MemberCore`]), its WireGuard tunnel, its live
//! sessions, and the effects the cores return, carried out here
//! (`ControlPlane::execute`). The controller's sessions live in
//! `controller.rs`, the member's in `member.rs`, local MAC discovery and the
//! periodic upkeep in `locals.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::mutex::lock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::warn;

use super::core::controller::{ControllerCore, Identity, Policy};
use super::core::member::MemberCore;
use super::core::{CloudView, Effect, Now, RejectReason, Rejection};
use super::error::ControlError;
use super::macbook::FdbChange;
use super::member_routes::MemberRoutes;
use super::membership::{membership_path, Membership};
use super::neighbook::{MacKey, NeighSet};
use super::registry::{registry_path, Registry, RegistryError};
use super::tunnel::{
    log_file, pid_file, DesiredPeer, Tunnel, TunnelError, TunnelSpec, WG_OVERHEAD,
};
use super::wire::Message;
use crate::config::{Config, Role, WireguardConfig};
use crate::log_limit::{LogLimiter, Verdict};
use crate::mac::MacAddr;
use crate::netlink::Netlink;
use crate::tasks::TaskSet;

/// What the control plane needs from the data plane.
pub trait DataplaneHooks: Send + Sync + 'static {
    /// Programs this control plane's entries into the FDB. A removal
    /// leaves an entry behind a VTEP on the underlay alone: that is the
    /// EVPN agent's (a gateway runs both planes; a MAC that moved from one
    /// to the other is not taken back by the plane it left).
    fn apply_fdb(&self, changes: &[FdbChange]);
    /// Programs the EVPN agent's entries into the FDB. A removal leaves an
    /// entry behind a VTEP in the WireGuard tunnel (a member's) alone.
    fn apply_evpn_fdb(&self, changes: &[FdbChange]);
    /// The VNIs served now: (VNI, bridge, bridge-side overlay port).
    fn vni_ports(&self) -> Vec<(u32, String, String)>;
    /// The VTEP a static, learned or EVPN FDB entry places `mac` on `vni`
    /// behind (not this control plane's entries: those behind a VTEP in
    /// the tunnel).
    fn fdb_holder(&self, vni: u32, mac: MacAddr) -> Option<Ipv4Addr>;
    /// Drops the entry the VNI's bridge holds for `mac` on a local port: it
    /// lives elsewhere now.
    fn forget_local(&self, vni: u32, mac: MacAddr);
    /// The MACs living behind this node as the data plane last read them
    /// from its bridges; changes wake the receiver.
    fn local_macs(&self) -> watch::Receiver<BTreeSet<(u32, MacAddr)>>;
    /// Programs control-plane IP bindings (each set replaces its MAC's).
    fn apply_neigh(&self, changes: &[(MacKey, NeighSet)]);
    /// The IP bindings the data plane snooped from VMs on this node, by MAC.
    fn local_neighs(&self) -> BTreeMap<MacKey, NeighSet>;
    /// The IP bindings of the zone's VMs, by MAC: snooped from their frames
    /// (from static peers) or bound by an EVPN zone's MAC/IP routes; the
    /// snooped ones of MACs no longer behind a zone VTEP are dropped.
    fn zone_neighs(&self) -> BTreeMap<MacKey, NeighSet>;
    /// Removes every control-plane IP binding (the control plane starts
    /// afresh and installs its own).
    fn clear_control_neighs(&self);
}

/// The data plane as the decision core sees it.
struct Cloud<'a>(&'a dyn DataplaneHooks);

impl CloudView for Cloud<'_> {
    fn fdb_holder(&self, vni: u32, mac: MacAddr) -> Option<Ipv4Addr> {
        self.0.fdb_holder(vni, mac)
    }
}

/// What the data plane must serve besides the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// VNIs granted by the controller (a member's).
    pub vnis: BTreeSet<u32>,
    /// Remote VTEPs (members' tunnel addresses) per VNI.
    pub peers: BTreeMap<u32, BTreeSet<Ipv4Addr>>,
    /// Remote VTEPs among `peers` whose frames may move MACs in the data
    /// plane: on a joined member, the controller's tunnel address.
    pub trusted: BTreeSet<Ipv4Addr>,
    /// The WireGuard interface, once up.
    pub tunnel: Option<String>,
    /// The tunnel's MTU, once up.
    pub tunnel_mtu: Option<u32>,
    /// Remote VTEPs per EVPN VNI, from type-3 and type-2 routes (the EVPN
    /// agent's, not the control plane's): on the underlay, and they move no
    /// MACs.
    pub evpn: crate::evpn::agent::RemoteVteps,
    /// On a member the gateway advertises with its own address: per VNI,
    /// the EVPN zone's VTEPs that send it plain VXLAN on its underlay (they
    /// get no floods; the gateway relays those).
    pub direct: BTreeMap<u32, BTreeSet<Ipv4Addr>>,
    /// On a gateway, the tunnel addresses of its direct members (the EVPN
    /// zone floods to them itself).
    pub direct_members: BTreeSet<Ipv4Addr>,
}

/// Refused control input by reason, for `/metrics`.
#[derive(Debug, Default)]
pub struct RejectCounters {
    counts: [AtomicU64; RejectReason::ALL.len()],
}

impl RejectCounters {
    /// Counts one `reason`.
    pub fn count(&self, reason: RejectReason) {
        if let Some(i) = RejectReason::ALL.iter().position(|r| *r == reason) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(reason, count)` for every reason.
    #[must_use]
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        RejectReason::ALL
            .iter()
            .zip(&self.counts)
            .map(|(r, c)| (r.name(), c.load(Ordering::Relaxed)))
            .collect()
    }
}

/// A member (or open invite) as `vlnet ctl client list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// Its name.
    pub name: String,
    /// `connected`, `offline`, `invited`, `spent` (a class invite with no use
    /// left) or `expired`.
    pub state: String,
    /// Its tunnel address.
    pub tunnel_addr: Ipv4Addr,
    /// Its VNIs.
    pub vnis: Vec<u32>,
    /// Seconds since the last WireGuard handshake.
    pub handshake_age_secs: Option<u64>,
    /// Where its packets come from.
    pub endpoint: Option<SocketAddr>,
    /// MACs it holds.
    pub macs: usize,
    /// Bytes received from it over WireGuard.
    pub rx_bytes: u64,
    /// Bytes sent to it over WireGuard.
    pub tx_bytes: u64,
    /// A class invite's joins left (`client add NAME --uses N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_left: Option<u32>,
    /// On a gateway, its own address when its MACs go into EVPN with it as
    /// next hop (`[evpn] direct`); otherwise they go behind the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<Ipv4Addr>,
}

/// A joined member's membership, as its `vlnet ctl status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The name the controller knows this member by.
    pub name: String,
    /// The controller's name.
    pub controller: String,
    /// The controller's WireGuard endpoint.
    pub controller_endpoint: SocketAddr,
    /// This member's tunnel address (its VTEP towards the cluster).
    pub tunnel_addr: Ipv4Addr,
    /// Seconds since the last WireGuard handshake with the controller.
    pub handshake_age_secs: Option<u64>,
    /// Whether the control session with the controller is up.
    pub session: bool,
    /// The VNIs the controller granted.
    pub vnis: Vec<u32>,
    /// MACs this member holds (advertised from its bridges).
    pub macs: usize,
    /// The EVPN zone's VTEPs that send it plain VXLAN on its underlay, per
    /// VNI (the gateway advertises it with its own address).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub direct_from: BTreeMap<u32, BTreeSet<Ipv4Addr>>,
}

/// One member's WireGuard numbers, for the controller's `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberTraffic {
    /// The member's name.
    pub name: String,
    /// Seconds since its last WireGuard handshake.
    pub handshake_age_secs: Option<u64>,
    /// Bytes received from it.
    pub rx_bytes: u64,
    /// Bytes sent to it.
    pub tx_bytes: u64,
    /// Whether its control session is up.
    pub connected: bool,
}

/// Messages queued for one session; a session that falls this far behind is
/// dropped (its member resyncs on reconnect).
pub const SESSION_QUEUE: usize = 4096;

/// A live session's outgoing queue.
#[derive(Debug)]
pub(super) struct SessionHandle {
    pub(super) id: u64,
    pub(super) tx: mpsc::Sender<Message>,
}

/// The control plane's state, by role.
#[derive(Debug)]
pub(super) enum Inner {
    Controller(Box<ControllerCore>),
    /// A member; `None` until it joined.
    Member(Option<Box<MemberCore>>),
}

/// Refused input is logged at most once per this period per member and
/// reason (per MAC for claims of MACs held elsewhere).
const REJECT_LOG_PERIOD: Duration = Duration::from_mins(10);
/// Keys the refusal log tracks: with the overflow slot, at most this many
/// plus one lines per [`REJECT_LOG_PERIOD`], whatever members send.
const REJECT_LOG_KEYS: usize = 256;

/// What a refusal is logged once for.
type RejectionKey = (String, RejectReason, Option<(u32, MacAddr)>);

/// The running control plane.
pub struct ControlPlane {
    pub(super) node: String,
    pub(super) wg: WireguardConfig,
    pub(super) state_dir: PathBuf,
    pub(super) tunnel_mtu: u32,
    /// The node's own VTEP address on its underlay.
    pub(super) vtep: Ipv4Addr,
    /// Where members reach the controller (controller only).
    pub(super) endpoint: SocketAddr,
    pub(super) hooks: Arc<dyn DataplaneHooks>,
    pub(super) inner: Mutex<Inner>,
    pub(super) tunnel: Mutex<Option<Tunnel>>,
    /// Outgoing queues of live sessions, by member name (a member's one
    /// session with the controller is under the controller's name).
    pub(super) sessions: Mutex<HashMap<String, SessionHandle>>,
    changed: watch::Sender<u64>,
    /// On a controller, what a gateway advertises into EVPN for its
    /// members (their MACs, addresses and next hops; the direct ones'
    /// type-3 routes).
    member_routes: watch::Sender<MemberRoutes>,
    pub(super) local_poke: tokio::sync::Notify,
    epoch: Instant,
    next_session: AtomicU64,
    /// Bumped when a member leaves: tasks spawned for an earlier membership
    /// end (a new join spawns its own).
    membership_epoch: AtomicU64,
    logged: Mutex<LogLimiter<RejectionKey>>,
    /// The background tasks (sessions, local MACs, upkeep, endpoints),
    /// stopped by [`shutdown`](ControlPlane::shutdown).
    tasks: Mutex<TaskSet>,
    /// Refused control input by reason.
    pub rejects: RejectCounters,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("node", &self.node)
            .field("role", &self.wg.role)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ControlPlane {
    /// Loads the node's control state (registry or membership) without
    /// touching the system. `vtep` and `underlay_mtu` are the node's.
    pub fn load(
        cfg: &Config,
        wg: &WireguardConfig,
        vtep: Ipv4Addr,
        underlay_mtu: u32,
        hooks: Arc<dyn DataplaneHooks>,
    ) -> Result<Arc<Self>, ControlError> {
        let state_dir = cfg.node.state_dir.clone();
        let endpoint = wg
            .endpoint
            .unwrap_or_else(|| SocketAddr::new(vtep.into(), wg.listen_port));
        let inner = match wg.role {
            Role::Controller => {
                let registry = Registry::load_or_create(
                    &registry_path(&state_dir, &cfg.node.name),
                    &mut rand::rng(),
                )?;
                let me = Identity {
                    name: cfg.node.name.clone(),
                    endpoint,
                    tunnel_addr: wg.address.map_or(vtep, ipnetwork::Ipv4Network::ip),
                };
                let policy = Policy {
                    mac_quota: wg.mac_quota,
                    max_members_per_vni: wg.max_members_per_vni,
                    direct: cfg
                        .evpn
                        .as_ref()
                        .map(|e| e.direct.clone())
                        .unwrap_or_default(),
                };
                Inner::Controller(Box::new(ControllerCore::new(me, registry, policy)))
            }
            Role::Member => {
                let path = membership_path(&state_dir, &cfg.node.name);
                let membership = Membership::load(&path)
                    .map_err(|source| ControlError::Membership { path, source })?;
                Inner::Member(membership.map(|m| Box::new(MemberCore::new(m))))
            }
        };
        Ok(Arc::new(Self {
            node: cfg.node.name.clone(),
            wg: wg.clone(),
            state_dir,
            tunnel_mtu: underlay_mtu.saturating_sub(WG_OVERHEAD),
            vtep,
            endpoint,
            hooks,
            inner: Mutex::new(inner),
            tunnel: Mutex::new(None),
            sessions: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            member_routes: watch::channel(MemberRoutes::default()).0,
            local_poke: tokio::sync::Notify::new(),
            epoch: Instant::now(),
            next_session: AtomicU64::new(1),
            membership_epoch: AtomicU64::new(0),
            logged: Mutex::new(LogLimiter::new(REJECT_LOG_PERIOD, REJECT_LOG_KEYS)),
            tasks: Mutex::new(TaskSet::new()),
            rejects: RejectCounters::default(),
        }))
    }

    /// Brings the tunnel up when the node is a controller or has joined and
    /// programs the persisted routes; [`spawn_tasks`](Self::spawn_tasks)
    /// then starts the sessions.
    pub async fn start(self: &Arc<Self>) -> Result<(), ControlError> {
        let spec = match &*self.inner() {
            Inner::Controller(c) => self
                .wg
                .address
                .map(|a| (c.registry().private_key, a.ip(), a.prefix())),
            Inner::Member(m) => m.as_ref().map(|m| {
                let ms = m.joined();
                (ms.private_key, ms.tunnel_addr, ms.tunnel_prefix)
            }),
        };
        let Some((private_key, addr, prefix)) = spec else {
            return Ok(()); // a member that has not joined yet
        };
        self.bring_up_tunnel(private_key, addr, prefix).await?;
        self.sync_peers();
        let entries = match &*self.inner() {
            Inner::Controller(c) => c.book().fdb_entries(),
            Inner::Member(m) => m
                .as_ref()
                .map(|m| m.book().fdb_entries())
                .unwrap_or_default(),
        };
        self.hooks.apply_fdb(&entries);
        self.publish_member_routes();
        self.hooks.clear_control_neighs();
        Ok(())
    }

    pub(super) async fn bring_up_tunnel(
        &self,
        private_key: crate::wg::Key,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), TunnelError> {
        let nl = Netlink::connect()?;
        let tunnel = Tunnel::up(
            &nl,
            &TunnelSpec {
                ifname: &self.wg.ifname,
                private_key,
                listen_port: self.wg.listen_port,
                addr,
                prefix,
                mtu: self.tunnel_mtu,
                pid_file: &pid_file(&self.state_dir, &self.node),
                log: &log_file(&self.state_dir, &self.node),
            },
        )
        .await?;
        *lock(&self.tunnel) = Some(tunnel);
        self.notify();
        Ok(())
    }

    /// Starts the background tasks (sessions, local MACs, upkeep,
    /// endpoints) of a controller or joined member, each named in the
    /// plane's task set; nothing for a member not joined yet. A member's
    /// tasks end when it leaves (its membership epoch is over).
    pub async fn spawn_tasks(self: &Arc<Self>) {
        if self.tunnel().is_none() {
            return;
        }
        let is_controller = matches!(*self.inner(), Inner::Controller(_));
        let epoch = self.membership_epoch.load(Ordering::Relaxed);
        if is_controller {
            // The controller's own MACs first: a member's claim must never
            // find one of them free just because we have not looked yet.
            self.observe_local_once().await;
        }
        let mut tasks = lock(&self.tasks);
        if is_controller {
            tasks.spawn("control_listener", Arc::clone(self).serve_controller());
            tasks.spawn("member_endpoints", Arc::clone(self).watch_endpoints());
        } else {
            tasks.spawn("controller_session", Arc::clone(self).run_member(epoch));
        }
        tasks.spawn(
            "advertise_local_macs",
            Arc::clone(self).watch_local_macs(epoch),
        );
        tasks.spawn("control_upkeep", Arc::clone(self).upkeep(epoch));
    }

    /// Stops every background task (the daemon is stopping): sessions close,
    /// the tunnel and its peers stay (forwarding goes on).
    pub async fn shutdown(&self) {
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        tasks.shutdown().await;
    }

    /// How long `vlnet ctl vm moved` keeps a MAC local without the bridge
    /// learning it.
    pub const CLAIM_FOR: Duration = Duration::from_mins(1);

    /// Declares `mac` local on `vni` (`vlnet ctl vm moved`): advertised with
    /// the next sequence number at once.
    pub fn claim_local(&self, vni: u32, mac: MacAddr) {
        let until = self.now().mono + Self::CLAIM_FOR;
        match &mut *self.inner() {
            Inner::Controller(c) => c.claim_local(vni, mac, until),
            Inner::Member(Some(m)) => m.claim_local(vni, mac, until),
            Inner::Member(None) => {}
        }
        // Looked at now, not at the next tick.
        self.local_poke.notify_one();
    }

    /// Asks the data plane to converge again (VNIs, peers or tunnel changed).
    pub(super) fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// What a gateway advertises into EVPN for its members, on a controller
    /// (nothing on a member); changes wake the receiver.
    #[must_use]
    pub fn member_routes(&self) -> watch::Receiver<MemberRoutes> {
        let rx = self.member_routes.subscribe();
        self.publish_member_routes();
        rx
    }

    /// On a gateway: the EVPN zone's VTEPs changed (the agent's flood lists
    /// and located VTEPs); direct members are told (see
    /// `core/controller/direct.rs`).
    pub fn set_zone(&self, vteps: &crate::evpn::agent::RemoteVteps) {
        let mut zone = vteps.flood.clone();
        for (vni, located) in &vteps.located {
            zone.entry(*vni).or_default().extend(located);
        }
        let _ = self.direct_changed(|c| c.set_zone(zone));
    }

    /// Runs `f` on the controller's core and carries out its effects; `f`
    /// may have changed which members are direct: the members' routes are
    /// published again and, if the direct members changed, the data plane
    /// converges (their `VLNET_VTEP_DIRECT`).
    pub(super) fn direct_changed(
        &self,
        f: impl FnOnce(&mut ControllerCore) -> Vec<Effect>,
    ) -> Option<Result<(), ControlError>> {
        let mut before = None;
        let done = self.with_controller(|c, _| {
            before = Some(c.direct_members());
            ((), f(c))
        });
        let after = match &*self.inner() {
            Inner::Controller(c) => Some(c.direct_members()),
            Inner::Member(_) => None,
        };
        if before != after {
            self.notify();
        }
        self.publish_member_routes();
        done
    }

    /// Publishes what the gateway advertises for its members now
    /// (subscribers wake only on change); nothing to do without a subscriber
    /// (a controller without `[evpn]`), which reads it when it subscribes.
    fn publish_member_routes(&self) {
        if self.member_routes.receiver_count() == 0 {
            return;
        }
        let routes = match &*self.inner() {
            Inner::Controller(c) => MemberRoutes {
                macs: c.member_macs(),
                floods: c.direct_by_vni(),
            },
            Inner::Member(_) => MemberRoutes::default(),
        };
        self.member_routes.send_if_modified(|current| {
            let changed = *current != routes;
            *current = routes;
            changed
        });
    }

    /// Resolves when the data plane should converge again.
    #[must_use]
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The time for the decision cores.
    pub(super) fn now(&self) -> Now {
        Now {
            mono: self.epoch.elapsed(),
            unix: unix_now(),
        }
    }

    pub(super) fn session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    pub(super) fn tunnel(&self) -> MutexGuard<'_, Option<Tunnel>> {
        lock(&self.tunnel)
    }

    /// The data plane, as the decision cores ask it.
    pub(super) fn cloud(&self) -> impl CloudView + '_ {
        Cloud(self.hooks.as_ref())
    }

    /// The VNIs this node serves now.
    pub(super) fn served(&self) -> Vec<u32> {
        self.hooks.vni_ports().iter().map(|p| p.0).collect()
    }

    /// Runs `f` on the controller's core and carries out the effects it
    /// returns; `None` on a member.
    pub(super) fn with_controller<T>(
        &self,
        f: impl FnOnce(&mut ControllerCore, &dyn CloudView) -> (T, Vec<Effect>),
    ) -> Option<Result<T, ControlError>> {
        let (value, effects) = {
            let mut inner = self.inner();
            let Inner::Controller(c) = &mut *inner else {
                return None;
            };
            let cloud = self.cloud();
            f(c, &cloud)
        };
        Some(self.execute(effects).map(|()| value))
    }

    /// An operator's change (`client add/remove`, `vm move`, a join): runs
    /// `f` on a copy of the controller's core and, when it asks for the
    /// registry to be saved, saves the copy's first. Only once saved does the
    /// copy replace the core and are the other effects carried out; a failed
    /// save (or a refusal from `f`) changes nothing, and `what` names the
    /// change in the error.
    pub(super) fn change_controller<T, E>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut ControllerCore, &dyn CloudView) -> Result<(T, Vec<Effect>), E>,
    ) -> Result<T, ControlError>
    where
        ControlError: From<E>,
    {
        let (value, effects) = {
            let mut inner = self.inner();
            let Inner::Controller(core) = &mut *inner else {
                return Err(ControlError::NotController);
            };
            let mut draft = core.clone();
            let (value, effects) = f(&mut draft, &self.cloud())?;
            if effects.contains(&Effect::Persist) {
                let path = registry_path(&self.state_dir, &self.node);
                match draft.registry().save(&path) {
                    Ok(()) => {}
                    Err(RegistryError::Io { path, source }) => {
                        return Err(ControlError::NotSaved { what, path, source });
                    }
                    Err(other) => return Err(other.into()),
                }
            }
            *core = draft;
            (value, effects)
        };
        let rest = effects
            .into_iter()
            .filter(|e| *e != Effect::Persist)
            .collect();
        self.execute(rest)?;
        Ok(value)
    }

    /// Runs `f` on a joined member's core and carries out its effects;
    /// `None` on a controller or a member not joined yet.
    pub(super) fn with_member<T>(
        &self,
        f: impl FnOnce(&mut MemberCore) -> (T, Vec<Effect>),
    ) -> Option<Result<T, ControlError>> {
        let (value, effects) = {
            let mut inner = self.inner();
            let Inner::Member(Some(m)) = &mut *inner else {
                return None;
            };
            f(m)
        };
        Some(self.execute(effects).map(|()| value))
    }

    /// Carries out `effects` in order. Sends never block: a session whose
    /// queue is full is dropped. Stops at the first state that cannot be
    /// saved and reports it (what came before it was done).
    pub(super) fn execute(&self, effects: Vec<Effect>) -> Result<(), ControlError> {
        for effect in effects {
            match effect {
                Effect::Send { to, message } => self.send(&to, message),
                Effect::Fdb(changes) => {
                    self.hooks.apply_fdb(&changes);
                    self.publish_member_routes();
                }
                Effect::Neigh(changes) => {
                    self.hooks.apply_neigh(&changes);
                    self.publish_member_routes();
                }
                Effect::ForgetLocal { vni, mac } => self.hooks.forget_local(vni, mac),
                Effect::Reject(r) => self.rejected(&r),
                Effect::Persist => self.persist()?,
                Effect::SyncPeers => self.sync_peers(),
                Effect::Converge => self.notify(),
                Effect::EndSession { member } => {
                    lock(&self.sessions).remove(&member);
                }
            }
        }
        Ok(())
    }

    /// Queues `message` on `to`'s session; a session that cannot take it
    /// (it stopped reading) is dropped and counted.
    fn send(&self, to: &str, message: Message) {
        let mut sessions = lock(&self.sessions);
        let Some(s) = sessions.get(to) else {
            return; // not connected: it resyncs on connect
        };
        match s.tx.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                sessions.remove(to);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                sessions.remove(to);
                drop(sessions);
                self.rejected(&Rejection {
                    member: to.to_owned(),
                    reason: RejectReason::SlowReader,
                    mac: None,
                    detail: format!(
                        "{SESSION_QUEUE} messages queued and not read; session dropped"
                    ),
                });
            }
        }
    }

    /// Counts refused input and logs it: once per [`REJECT_LOG_PERIOD`] per
    /// member and reason (per MAC for claims of MACs held elsewhere), with
    /// the number of refusals not logged since.
    pub(super) fn rejected(&self, r: &Rejection) {
        self.rejects.count(r.reason);
        let per_mac = (r.reason == RejectReason::NotOwner)
            .then_some(r.mac)
            .flatten();
        let verdict =
            lock(&self.logged).check((r.member.clone(), r.reason, per_mac), Instant::now());
        if let Verdict::Log { suppressed } = verdict {
            let (vni, mac) = r.mac.map_or((None, None), |(v, m)| (Some(v), Some(m)));
            warn!(
                member = %r.member,
                reason = r.reason.name(),
                vni,
                mac = mac.map(tracing::field::display),
                detail = %r.detail,
                suppressed,
                "control input refused (see vlnet_control_rejected_total for every refusal)"
            );
        }
    }

    /// Saves the registry (controller) or the membership (member).
    fn persist(&self) -> Result<(), ControlError> {
        match &mut *self.inner() {
            Inner::Controller(c) => {
                let path = registry_path(&self.state_dir, &self.node);
                c.registry().save(&path)?;
            }
            Inner::Member(Some(m)) => {
                m.take_dirty();
                let path = membership_path(&self.state_dir, &self.node);
                m.membership()
                    .save(&path)
                    .map_err(|source| ControlError::Membership { path, source })?;
            }
            Inner::Member(None) => {}
        }
        Ok(())
    }

    /// MACs frozen as duplicates now.
    #[must_use]
    pub fn frozen_macs(&self) -> Vec<super::mobility::FrozenMac> {
        let now = self.now().mono;
        match &*self.inner() {
            Inner::Controller(c) => c.book().frozen(now),
            Inner::Member(m) => m.as_ref().map(|m| m.book().frozen(now)).unwrap_or_default(),
        }
    }

    /// Live control sessions: members connected (controller), or 1 while
    /// connected to the controller (member).
    #[must_use]
    pub fn sessions(&self) -> u64 {
        match &*self.inner() {
            Inner::Controller(c) => c.connected().len() as u64,
            Inner::Member(m) => u64::from(m.as_ref().is_some_and(|m| m.is_connected())),
        }
    }

    /// The membership of a joined member; `None` on a controller or a
    /// member that has not joined.
    #[must_use]
    pub fn member_status(&self) -> Option<MemberStatus> {
        let (ms, session, macs) = match &*self.inner() {
            Inner::Member(Some(m)) => (
                m.joined().clone(),
                m.is_connected(),
                m.book().local_routes().len(),
            ),
            _ => return None,
        };
        let handshake_age_secs = self
            .tunnel()
            .as_ref()
            .and_then(|t| t.status().ok())
            .and_then(|peers| {
                peers
                    .into_iter()
                    .find(|p| p.public_key == ms.controller.public_key)
            })
            .and_then(|p| p.handshake_age(SystemTime::now()))
            .map(|d| d.as_secs());
        Some(MemberStatus {
            name: ms.name,
            controller: ms.controller.name,
            controller_endpoint: ms.controller.endpoint,
            tunnel_addr: ms.tunnel_addr,
            handshake_age_secs,
            session,
            vnis: ms.vnis,
            macs,
            direct_from: ms.zone,
        })
    }

    /// Every member's WireGuard numbers (controller; empty on a member).
    #[must_use]
    pub fn member_traffic(&self) -> Vec<MemberTraffic> {
        if !matches!(*self.inner(), Inner::Controller(_)) {
            return Vec::new();
        }
        self.client_list()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| {
                c.uses_left.is_none() && matches!(c.state.as_str(), "connected" | "offline")
            })
            .map(|c| MemberTraffic {
                connected: c.state == "connected",
                name: c.name,
                handshake_age_secs: c.handshake_age_secs,
                rx_bytes: c.rx_bytes,
                tx_bytes: c.tx_bytes,
            })
            .collect()
    }

    /// Received datagrams the WireGuard device dropped, `(reason, count)`;
    /// empty while the tunnel is down or the device does not answer.
    pub fn wg_rx_drops(&self) -> Vec<(String, u64)> {
        self.tunnel()
            .as_ref()
            .and_then(|t| t.rx_drops().ok())
            .unwrap_or_default()
    }

    /// Whether tasks spawned in membership `epoch` should still run (the
    /// member has not left since).
    pub(super) fn in_epoch(&self, epoch: u64) -> bool {
        self.membership_epoch.load(Ordering::Relaxed) == epoch
    }

    /// The member left: its tasks end.
    pub(super) fn end_epoch(&self) {
        self.membership_epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// Claims refused and waiting for their MAC's release (controller).
    #[must_use]
    pub fn waiting_claims(&self) -> u64 {
        match &*self.inner() {
            Inner::Controller(c) => c.claims().len() as u64,
            Inner::Member(_) => 0,
        }
    }

    /// What the data plane must serve besides the config file.
    #[must_use]
    pub fn dynamic(&self) -> Dynamic {
        let (tunnel, tunnel_mtu) = match &*self.tunnel() {
            Some(t) => (Some(t.ifname().to_owned()), Some(self.tunnel_mtu)),
            None => (None, None),
        };
        let mut d = Dynamic {
            tunnel,
            tunnel_mtu,
            ..Dynamic::default()
        };
        match &*self.inner() {
            Inner::Controller(c) => {
                d.peers = c.peers_by_vni();
                d.direct_members = c.direct_members().into_keys().collect();
            }
            Inner::Member(Some(m)) => {
                let ms = m.joined();
                d.vnis = ms.vnis.iter().copied().collect();
                d.trusted.insert(ms.controller.tunnel_addr);
                d.direct = ms
                    .zone
                    .iter()
                    .filter(|(vni, _)| d.vnis.contains(vni))
                    .map(|(vni, vteps)| (*vni, vteps.clone()))
                    .collect();
                for m in &ms.members {
                    for vni in m.vnis.iter().filter(|v| d.vnis.contains(v)) {
                        d.peers.entry(*vni).or_default().insert(m.tunnel_addr);
                    }
                }
                d.trusted.insert(ms.controller.tunnel_addr);
            }
            Inner::Member(None) => {}
        }
        d
    }

    /// Brings the WireGuard peers to what the registry or membership says.
    pub(super) fn sync_peers(&self) {
        let desired = self.desired_peers();
        if let Some(t) = &mut *self.tunnel() {
            if let Err(e) = t.sync_peers(&desired) {
                warn!(error = %e, "cannot update WireGuard peers");
            }
        }
    }

    fn desired_peers(&self) -> Vec<DesiredPeer> {
        let keepalive = self.wg.keepalive_secs;
        match &*self.inner() {
            Inner::Controller(c) => c.desired_peers(keepalive, unix_now()),
            Inner::Member(Some(m)) => {
                let ms = m.joined();
                let mine: BTreeSet<u32> = ms.vnis.iter().copied().collect();
                let ctl = &ms.controller;
                let mut peers = vec![DesiredPeer {
                    public_key: ctl.public_key,
                    endpoint: Some(ctl.endpoint),
                    tunnel_addr: ctl.tunnel_addr,
                    keepalive,
                }];
                for m in &ms.members {
                    if m.public_key == ctl.public_key || !m.vnis.iter().any(|v| mine.contains(v)) {
                        continue;
                    }
                    peers.push(DesiredPeer {
                        public_key: m.public_key,
                        endpoint: m.endpoint,
                        tunnel_addr: m.tunnel_addr,
                        keepalive,
                    });
                }
                peers
            }
            Inner::Member(None) => Vec::new(),
        }
    }
}
