//! The running control plane: the node's role (controller or member), its
//! WireGuard tunnel, its MAC book, and what it asks of the data plane (VNIs,
//! peers per VNI, FDB entries). The controller's sessions live in
//! `controller.rs`, the member's in `member.rs`, local MAC discovery in
//! `locals.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::macbook::{FdbChange, MacBook, Relay};
use super::membership::{membership_path, Membership};
use super::registry::{registry_path, Registry};
use super::tunnel::{
    log_file, pid_file, DesiredPeer, Tunnel, TunnelError, TunnelSpec, WG_OVERHEAD,
};
use super::wire::{Member, Message};
use crate::config::{Config, Role, WireguardConfig};
use crate::netlink::Netlink;

/// What the control plane needs from the data plane.
pub trait DataplaneHooks: Send + Sync + 'static {
    /// Programs control-plane entries into the FDB.
    fn apply_fdb(&self, changes: &[FdbChange]);
    /// The VNIs served now: (VNI, bridge, bridge-side overlay port).
    fn vni_ports(&self) -> Vec<(u32, String, String)>;
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
}

/// Why control messages were refused, for `/metrics`.
#[derive(Debug, Default)]
pub struct RejectCounters {
    /// From an address that is neither a member nor invited.
    pub not_member: AtomicU64,
    /// Bad protocol version.
    pub bad_version: AtomicU64,
    /// Malformed frame or payload.
    pub malformed: AtomicU64,
    /// A member advertising a VTEP or VNI that is not its own.
    pub forged: AtomicU64,
    /// A message out of place (e.g. no Hello first).
    pub unexpected: AtomicU64,
    /// A refused invite token.
    pub bad_token: AtomicU64,
}

impl RejectCounters {
    /// `(reason, count)` for every reason.
    #[must_use]
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        [
            ("not_member", &self.not_member),
            ("bad_version", &self.bad_version),
            ("malformed", &self.malformed),
            ("forged", &self.forged),
            ("unexpected", &self.unexpected),
            ("bad_token", &self.bad_token),
        ]
        .into_iter()
        .map(|(n, c)| (n, c.load(Ordering::Relaxed)))
        .collect()
    }
}

/// A member (or open invite) as `vlnet ctl client list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// Its name.
    pub name: String,
    /// `connected`, `offline`, `invited` or `expired`.
    pub state: String,
    /// Its tunnel address.
    pub tunnel_addr: Ipv4Addr,
    /// Its VNIs.
    pub vnis: Vec<u32>,
    /// Seconds since the last WireGuard handshake.
    pub handshake_age_secs: Option<u64>,
    /// Where its packets come from.
    pub endpoint: Option<SocketAddr>,
    /// MACs it advertises.
    pub macs: usize,
    /// Bytes received from it over WireGuard.
    pub rx_bytes: u64,
    /// Bytes sent to it over WireGuard.
    pub tx_bytes: u64,
}

/// A live controller session, as the controller relays to it.
#[derive(Debug)]
pub(super) struct SessionHandle {
    pub(super) id: u64,
    pub(super) tx: mpsc::UnboundedSender<Message>,
    pub(super) vnis: BTreeSet<u32>,
}

/// The controller's state.
#[derive(Debug)]
pub(super) struct ControllerState {
    pub(super) registry: Registry,
    pub(super) book: MacBook,
    pub(super) sessions: HashMap<String, SessionHandle>,
}

/// A member's state.
#[derive(Debug, Default)]
pub(super) struct MemberState {
    pub(super) membership: Option<Membership>,
    pub(super) book: Option<MacBook>,
    pub(super) outbox: Option<mpsc::UnboundedSender<Message>>,
    pub(super) dirty: bool,
}

/// The control plane's mutable state, by role.
#[derive(Debug)]
pub(super) enum Inner {
    Controller(ControllerState),
    Member(MemberState),
}

/// The running control plane.
pub struct ControlPlane {
    pub(super) node: String,
    pub(super) wg: WireguardConfig,
    pub(super) state_dir: PathBuf,
    pub(super) tunnel_mtu: u32,
    /// Where members reach the controller (controller only).
    pub(super) endpoint: SocketAddr,
    pub(super) hooks: Arc<dyn DataplaneHooks>,
    pub(super) inner: Mutex<Inner>,
    pub(super) tunnel: Mutex<Option<Tunnel>>,
    changed: watch::Sender<u64>,
    pub(super) local_poke: tokio::sync::Notify,
    epoch: Instant,
    next_session: AtomicU64,
    /// Refused control messages by reason.
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

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The registry could not be read or created.
    #[error(transparent)]
    Registry(#[from] super::registry::RegistryError),
    /// The membership file could not be read.
    #[error("membership {}: {source}", path.display())]
    Membership {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The tunnel could not be brought up.
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let inner = match wg.role {
            Role::Controller => {
                let registry = Registry::load_or_create(
                    &registry_path(&state_dir, &cfg.node.name),
                    &mut rand::rng(),
                )?;
                let addr = wg.address.map_or(vtep, ipnetwork::Ipv4Network::ip);
                Inner::Controller(ControllerState {
                    registry,
                    book: MacBook::new(&cfg.node.name, addr),
                    sessions: HashMap::new(),
                })
            }
            Role::Member => {
                let path = membership_path(&state_dir, &cfg.node.name);
                let membership = Membership::load(&path)
                    .map_err(|source| ControlError::Membership { path, source })?;
                let book = membership.as_ref().map(|m| {
                    let mut book = MacBook::new(&m.name, m.tunnel_addr);
                    let origin = super::mobility::NodeId::new(&m.controller.name);
                    for r in &m.routes {
                        book.advert(r, &origin, Duration::ZERO);
                    }
                    book
                });
                Inner::Member(MemberState {
                    membership,
                    book,
                    ..MemberState::default()
                })
            }
        };
        let endpoint = wg
            .endpoint
            .unwrap_or_else(|| SocketAddr::new(vtep.into(), wg.listen_port));
        Ok(Arc::new(Self {
            node: cfg.node.name.clone(),
            wg: wg.clone(),
            state_dir,
            tunnel_mtu: underlay_mtu.saturating_sub(WG_OVERHEAD),
            endpoint,
            hooks,
            inner: Mutex::new(inner),
            tunnel: Mutex::new(None),
            changed: watch::channel(0).0,
            local_poke: tokio::sync::Notify::new(),
            epoch: Instant::now(),
            next_session: AtomicU64::new(1),
            rejects: RejectCounters::default(),
        }))
    }

    /// Brings the tunnel up when the node is a controller or has joined and
    /// programs the persisted routes; [`spawn_tasks`](Self::spawn_tasks)
    /// then starts the sessions.
    pub async fn start(self: &Arc<Self>) -> Result<(), ControlError> {
        let spec = {
            let inner = lock(&self.inner);
            match &*inner {
                Inner::Controller(c) => {
                    let net = self.wg.address.map(|a| (a.ip(), a.prefix()));
                    net.map(|(addr, prefix)| (c.registry.private_key, addr, prefix))
                }
                Inner::Member(m) => m
                    .membership
                    .as_ref()
                    .map(|m| (m.private_key, m.tunnel_addr, m.tunnel_prefix)),
            }
        };
        let Some((private_key, addr, prefix)) = spec else {
            return Ok(()); // a member that has not joined yet
        };
        self.bring_up_tunnel(private_key, addr, prefix).await?;
        self.sync_peers();
        let entries = self.with_book(|b| b.fdb_entries()).unwrap_or_default();
        self.hooks.apply_fdb(&entries);
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

    /// Starts the background tasks (sessions, local MACs, endpoints) of a
    /// controller or joined member; nothing for a member not joined yet.
    pub fn spawn_tasks(self: &Arc<Self>) {
        if self.tunnel().is_none() {
            return;
        }
        let is_controller = matches!(*lock(&self.inner), Inner::Controller(_));
        if is_controller {
            tokio::spawn(Arc::clone(self).serve_controller());
            tokio::spawn(Arc::clone(self).watch_endpoints());
        } else {
            tokio::spawn(Arc::clone(self).run_member());
        }
        tokio::spawn(Arc::clone(self).watch_local_macs());
    }

    /// How long `vlnet ctl vm moved` keeps a MAC local without the bridge
    /// learning it.
    pub const CLAIM_FOR: Duration = Duration::from_mins(1);

    /// Declares `mac` local on `vni` (`vlnet ctl vm moved`): advertised with
    /// the next sequence number at once.
    pub fn claim_local(&self, vni: u32, mac: crate::mac::MacAddr) {
        let until = self.now() + Self::CLAIM_FOR;
        self.with_book(|b| b.claim(vni, mac, until));
        self.poke_local_macs();
    }

    /// Reads the bridges now instead of at the next poll (the data plane saw
    /// a MAC arrive here).
    pub fn poke_local_macs(&self) {
        self.local_poke.notify_one();
    }

    /// Asks the data plane to converge again (VNIs, peers or tunnel changed).
    pub(super) fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Resolves when the data plane should converge again.
    #[must_use]
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Monotonic time for the mobility rules.
    pub(super) fn now(&self) -> Duration {
        self.epoch.elapsed()
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

    pub(super) fn with_book<T>(&self, f: impl FnOnce(&mut MacBook) -> T) -> Option<T> {
        match &mut *self.inner() {
            Inner::Controller(c) => Some(f(&mut c.book)),
            Inner::Member(m) => m.book.as_mut().map(f),
        }
    }

    /// MACs frozen as duplicates now.
    #[must_use]
    pub fn frozen_macs(&self) -> Vec<super::mobility::FrozenMac> {
        let now = self.now();
        self.with_book(|b| b.frozen(now)).unwrap_or_default()
    }

    /// Live control sessions: members connected (controller), or 1 while
    /// connected to the controller (member).
    #[must_use]
    pub fn sessions(&self) -> u64 {
        match &*self.inner() {
            Inner::Controller(c) => c.sessions.len() as u64,
            Inner::Member(m) => u64::from(m.outbox.is_some()),
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
                for m in c.registry.members.values() {
                    for &vni in &m.vnis {
                        d.peers.entry(vni).or_default().insert(m.tunnel_addr);
                    }
                }
            }
            Inner::Member(MemberState {
                membership: Some(ms),
                ..
            }) => {
                d.vnis = ms.vnis.iter().copied().collect();
                d.trusted.insert(ms.controller.tunnel_addr);
                for m in &ms.members {
                    for vni in m.vnis.iter().filter(|v| d.vnis.contains(v)) {
                        d.peers.entry(*vni).or_default().insert(m.tunnel_addr);
                    }
                }
            }
            Inner::Member(_) => {}
        }
        d
    }

    /// Brings the WireGuard peers to what the registry or membership says.
    pub(super) fn sync_peers(&self) {
        let desired = self.desired_peers();
        if let Some(t) = &mut *self.tunnel() {
            if let Err(e) = t.sync_peers(&desired) {
                tracing::warn!(error = %e, "cannot update WireGuard peers");
            }
        }
    }

    fn desired_peers(&self) -> Vec<DesiredPeer> {
        let keepalive = self.wg.keepalive_secs;
        match &*self.inner() {
            Inner::Controller(c) => {
                let members = c.registry.members.values().map(|m| DesiredPeer {
                    public_key: m.public_key,
                    endpoint: m.endpoint,
                    tunnel_addr: m.tunnel_addr,
                    keepalive,
                });
                let invites = c.registry.invites.values().map(|i| DesiredPeer {
                    public_key: i.public_key,
                    endpoint: None,
                    tunnel_addr: i.tunnel_addr,
                    keepalive: 0,
                });
                members.chain(invites).collect()
            }
            Inner::Member(MemberState {
                membership: Some(ms),
                ..
            }) => {
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
            Inner::Member(_) => Vec::new(),
        }
    }

    /// The member list as member `name` should see it: the controller and
    /// every other member.
    pub(super) fn members_for(&self, c: &ControllerState, name: &str) -> Vec<Member> {
        let me = Member {
            name: self.node.clone(),
            public_key: c.registry.public_key(),
            endpoint: Some(self.endpoint),
            tunnel_addr: c.book.my_vtep(),
            vtep: c.book.my_vtep(),
            vnis: self.hooks.vni_ports().iter().map(|p| p.0).collect(),
        };
        let others = c
            .registry
            .members
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .map(|(n, m)| Member {
                name: n.clone(),
                public_key: m.public_key,
                endpoint: m.endpoint,
                tunnel_addr: m.tunnel_addr,
                vtep: m.tunnel_addr,
                vnis: m.vnis.clone(),
            });
        std::iter::once(me).chain(others).collect()
    }

    /// Sends `relays` to every session but `from`'s that serves their VNI.
    pub(super) fn relay(c: &ControllerState, from: Option<&str>, relays: &[Relay]) {
        for (name, s) in &c.sessions {
            if Some(name.as_str()) == from {
                continue;
            }
            for r in relays.iter().filter(|r| s.vnis.contains(&r.vni())) {
                let _ = s.tx.send(match r {
                    Relay::Advert(a) => Message::MacAdvert(*a),
                    Relay::Withdraw(w) => Message::MacWithdraw(*w),
                });
            }
        }
    }

    /// Sends every session its member list.
    pub(super) fn broadcast_members(&self, c: &ControllerState) {
        for (name, s) in &c.sessions {
            let members = self.members_for(c, name);
            let _ =
                s.tx.send(Message::Members(super::wire::Members { members }));
        }
    }
}
