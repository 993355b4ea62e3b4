//! The controller's side: invites (`client add/list/remove`), the control
//! listener (joins and member sessions), relaying MAC routes between members
//! like a route reflector, and following members' WireGuard endpoints.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::macbook::{Applied, Relay};
use super::mobility::NodeId;
use super::plane::{ClientRecord, ControlPlane, ControllerState, Inner, SessionHandle};
use super::registry::{ControllerAddrs, InviteRequest, Removed};
use super::session::{self, Receiver, Sender, SessionError, DEAD_AFTER, KEEPALIVE};
use super::token::Token;
use super::wire::{FullSync, Hello, Join, MacAdvert, Members, Message, Welcome, WireError};
use crate::control::registry::registry_path;

/// How long the controller waits for a joining client to close its join
/// connection before switching its key.
const JOIN_CLOSE_WAIT: Duration = Duration::from_secs(5);
/// How often members' WireGuard endpoints are checked.
const ENDPOINT_POLL: Duration = Duration::from_secs(1);

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Who is on the other end of a control connection.
enum Caller {
    Member(String, Ipv4Addr),
    Invited(Ipv4Addr),
}

impl ControlPlane {
    fn controller<T>(&self, f: impl FnOnce(&mut ControllerState) -> T) -> Result<T, String> {
        match &mut *self.inner() {
            Inner::Controller(c) => Ok(f(c)),
            Inner::Member(_) => Err(
                "this node is not a controller (its config has no [wireguard] role = \"controller\")"
                    .to_owned(),
            ),
        }
    }

    fn save_registry(&self, c: &ControllerState) {
        let path = registry_path(&self.state_dir, &self.node);
        if let Err(e) = c.registry.save(&path) {
            warn!(error = %e, "cannot save the registry");
        }
    }

    /// `vlnet ctl client add`: opens an invite and returns its token.
    pub fn client_add(&self, name: &str, vnis: &[u32], ttl_secs: u64) -> Result<String, String> {
        let Some(tunnel) = self.wg.address else {
            return Err("wireguard.address is not set".to_owned());
        };
        let addrs = ControllerAddrs {
            endpoint: self.endpoint,
            tunnel,
            control_port: self.wg.control_port,
        };
        let request = InviteRequest {
            name,
            vnis,
            ttl_secs,
        };
        let token = self.controller(|c| {
            let token = c
                .registry
                .invite(&request, &addrs, unix_now(), &mut rand::rng())
                .map_err(|e| e.to_string())?;
            self.save_registry(c);
            Ok::<_, String>(token)
        })??;
        self.sync_peers();
        info!(client = name, ?vnis, ttl_secs, "invite issued");
        Ok(token)
    }

    /// `vlnet ctl client remove`: revokes the key, withdraws the MACs.
    pub fn client_remove(&self, name: &str) -> Result<(), String> {
        let now = self.now();
        let fdb = self.controller(|c| {
            let removed = c
                .registry
                .remove(name)
                .ok_or_else(|| format!("no member or invite named {name:?}"))?;
            self.save_registry(c);
            let mut applied = Applied::default();
            if let Removed::Member(m) = removed {
                applied = c.book.withdraw_vtep(m.tunnel_addr, now);
                c.sessions.remove(name);
                Self::relay(c, Some(name), &applied.relay);
                self.broadcast_members(c);
            }
            Ok::<_, String>(applied.fdb)
        })??;
        self.sync_peers();
        self.hooks.apply_fdb(&fdb);
        self.notify();
        info!(client = name, "member removed; key revoked");
        Ok(())
    }

    /// `vlnet ctl client list`.
    pub fn client_list(&self) -> Result<Vec<ClientRecord>, String> {
        let status = self
            .tunnel()
            .as_ref()
            .map(|t| t.status().unwrap_or_default())
            .unwrap_or_default();
        let now = unix_now();
        self.controller(|c| {
            let routes = c.book.routes(None);
            let members = c.registry.members.iter().map(|(name, m)| {
                let wg = status.iter().find(|p| p.public_key == m.public_key);
                ClientRecord {
                    name: name.clone(),
                    state: if c.sessions.contains_key(name) {
                        "connected"
                    } else {
                        "offline"
                    }
                    .to_owned(),
                    tunnel_addr: m.tunnel_addr,
                    vnis: m.vnis.clone(),
                    handshake_age_secs: wg.and_then(|p| p.last_handshake).map(|d| d.as_secs()),
                    endpoint: wg.and_then(|p| p.endpoint).or(m.endpoint),
                    macs: routes.iter().filter(|r| r.vtep == m.tunnel_addr).count(),
                    rx_bytes: wg.map_or(0, |p| p.rx_bytes),
                    tx_bytes: wg.map_or(0, |p| p.tx_bytes),
                }
            });
            let invites = c.registry.invites.iter().map(|(name, i)| ClientRecord {
                name: name.clone(),
                state: if now >= i.expires_at {
                    "expired"
                } else {
                    "invited"
                }
                .to_owned(),
                tunnel_addr: i.tunnel_addr,
                vnis: i.vnis.clone(),
                handshake_age_secs: None,
                endpoint: None,
                macs: 0,
                rx_bytes: 0,
                tx_bytes: 0,
            });
            members.chain(invites).collect()
        })
    }

    /// Accepts control connections on the tunnel address, forever.
    pub(super) async fn serve_controller(self: Arc<Self>) {
        let Some(net) = self.wg.address else {
            return;
        };
        let listener = loop {
            match session::listen(&self.wg.ifname, net.ip(), self.wg.control_port) {
                Ok(l) => break l,
                Err(e) => {
                    warn!(error = %e, "cannot listen for control connections; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        info!(addr = %net.ip(), port = self.wg.control_port, "control protocol listening");
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    tokio::spawn(Arc::clone(&self).handle_connection(stream, peer));
                }
                Err(e) => warn!(error = %e, "accept failed"),
            }
        }
    }

    fn caller(&self, peer: SocketAddr) -> Option<Caller> {
        let IpAddr::V4(ip) = peer.ip() else {
            return None;
        };
        let inner = self.inner();
        let Inner::Controller(c) = &*inner else {
            return None;
        };
        if let Some((name, _)) = c.registry.member_at(ip) {
            return Some(Caller::Member(name.to_owned(), ip));
        }
        c.registry
            .invites
            .values()
            .any(|i| i.tunnel_addr == ip)
            .then_some(Caller::Invited(ip))
    }

    /// Counts why a session ended, if it was the peer's fault.
    pub(super) fn count_failure(&self, e: &SessionError) {
        match e {
            SessionError::Wire(WireError::Version { .. }) => {
                self.rejects.bad_version.fetch_add(1, Ordering::Relaxed);
            }
            SessionError::Wire(_) => {
                self.rejects.malformed.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    async fn handle_connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let (mut rx, tx) = session::split(stream);
        let Some(caller) = self.caller(peer) else {
            self.rejects.not_member.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, "control connection from a non-member refused");
            tx.refuse("not a member").await;
            return;
        };
        let first = match rx.recv(DEAD_AFTER).await {
            Ok(m) => m,
            Err(e) => {
                self.count_failure(&e);
                warn!(%peer, error = %e, "control connection dropped");
                tx.refuse(&e.to_string()).await;
                return;
            }
        };
        match (caller, first) {
            (Caller::Invited(ip), Message::Join(join)) => self.handle_join(ip, &join, rx, tx).await,
            (Caller::Member(name, ip), Message::Hello(hello)) => {
                self.member_session(&name, ip, &hello, rx, tx).await;
            }
            (_, other) => {
                self.rejects.unexpected.fetch_add(1, Ordering::Relaxed);
                warn!(%peer, kind = other.kind().name(), "unexpected first message");
                tx.refuse("expected Hello (members) or Join (invited clients)")
                    .await;
            }
        }
    }

    async fn handle_join(&self, ip: Ipv4Addr, join: &Join, mut rx: Receiver, mut tx: Sender) {
        let redeemed = self.controller(|c| {
            let token = Token::parse(&join.token).map_err(|e| e.to_string())?;
            if token.invite.tunnel_addr != ip {
                return Err(format!(
                    "invite token is for tunnel address {}, not {ip}",
                    token.invite.tunnel_addr
                ));
            }
            let one_time = c
                .registry
                .invites
                .get(&token.invite.name)
                .map(|i| i.public_key);
            let (name, member) = c
                .registry
                .redeem(&join.token, join.public_key, unix_now())
                .map_err(|e| e.to_string())?;
            self.save_registry(c);
            let welcome = Welcome {
                tunnel_addr: member.tunnel_addr,
                vnis: member.vnis.clone(),
                members: self.members_for(c, &name),
            };
            Ok((name, one_time, welcome))
        });
        let (name, one_time, welcome) = match redeemed {
            Ok(Ok(r)) => r,
            Ok(Err(message)) | Err(message) => {
                self.rejects.bad_token.fetch_add(1, Ordering::Relaxed);
                warn!(%ip, reason = %message, "join refused");
                tx.refuse(&message).await;
                return;
            }
        };
        if let Err(e) = tx.send(&Message::Welcome(welcome)).await {
            warn!(client = %name, error = %e, "sending Welcome failed");
        }
        // The client closes once it has the Welcome; only then its one-time
        // key may go.
        let _ = rx.recv(JOIN_CLOSE_WAIT).await;
        let endpoint = self.tunnel().as_ref().and_then(|t| {
            let status = t.status().ok()?;
            status
                .into_iter()
                .find(|p| Some(p.public_key) == one_time)
                .and_then(|p| p.endpoint)
        });
        let _ = self.controller(|c| {
            if let Some(m) = c.registry.members.get_mut(&name) {
                m.endpoint = endpoint;
            }
            self.save_registry(c);
            self.broadcast_members(c);
        });
        self.sync_peers();
        self.notify();
        info!(client = %name, %ip, ?endpoint, "client joined");
    }

    async fn member_session(
        &self,
        name: &str,
        ip: Ipv4Addr,
        hello: &Hello,
        mut rx: Receiver,
        mut tx: Sender,
    ) {
        if hello.node != name || hello.vtep != ip {
            self.rejects.unexpected.fetch_add(1, Ordering::Relaxed);
            warn!(%ip, claimed = %hello.node, "Hello does not match the member at this address");
            tx.refuse(&format!("the member at {ip} is {name:?}")).await;
            return;
        }
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        let id = self.session_id();
        let first = self.controller(|c| {
            let vnis: BTreeSet<u32> = c
                .registry
                .members
                .get(name)
                .map(|m| m.vnis.iter().copied().collect())
                .unwrap_or_default();
            let routes: Vec<MacAdvert> = c
                .book
                .routes(Some(&vnis))
                .into_iter()
                .filter(|r| r.vtep != ip)
                .collect();
            let members = self.members_for(c, name);
            c.sessions.insert(
                name.to_owned(),
                SessionHandle {
                    id,
                    tx: out_tx,
                    vnis,
                },
            );
            let me = Hello {
                node: self.node.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                vtep: c.book.my_vtep(),
                vnis: self.hooks.vni_ports().iter().map(|p| p.0).collect(),
            };
            [
                Message::Hello(me),
                Message::Members(Members { members }),
                Message::FullSync(FullSync { entries: routes }),
            ]
        });
        let Ok(first) = first else {
            return;
        };
        info!(member = name, "member connected");
        let ended = self
            .session_loop(name, ip, first, &mut rx, &mut tx, &mut out_rx)
            .await;
        let _ = self.controller(|c| {
            if c.sessions.get(name).is_some_and(|s| s.id == id) {
                c.sessions.remove(name);
            }
        });
        if let Err(e) = &ended {
            self.count_failure(e);
        }
        info!(member = name, reason = ?ended.err(), "member disconnected");
    }

    async fn session_loop(
        &self,
        name: &str,
        ip: Ipv4Addr,
        first: [Message; 3],
        rx: &mut Receiver,
        tx: &mut Sender,
        out_rx: &mut mpsc::UnboundedReceiver<Message>,
    ) -> Result<(), SessionError> {
        for m in &first {
            tx.send(m).await?;
        }
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        let mut deadline = tokio::time::Instant::now() + DEAD_AFTER;
        loop {
            tokio::select! {
                m = rx.next() => {
                    self.on_member_message(name, ip, m?);
                    deadline = tokio::time::Instant::now() + DEAD_AFTER;
                }
                out = out_rx.recv() => match out {
                    Some(m) => tx.send(&m).await?,
                    None => return Ok(()), // removed
                },
                _ = keepalive.tick() => tx.send(&Message::Keepalive).await?,
                () = tokio::time::sleep_until(deadline) => return Err(SessionError::Timeout(DEAD_AFTER)),
            }
        }
    }

    /// Whether a member may speak for `(vni, vtep)`.
    fn owns(c: &ControllerState, name: &str, ip: Ipv4Addr, vni: u32, vtep: Ipv4Addr) -> bool {
        vtep == ip
            && c.registry
                .members
                .get(name)
                .is_some_and(|m| m.vnis.contains(&vni))
    }

    fn forged(&self, name: &str, vni: u32, vtep: Ipv4Addr) {
        self.rejects.forged.fetch_add(1, Ordering::Relaxed);
        warn!(member = name, vni, %vtep, "forged route refused (not the member's VTEP or VNI)");
    }

    fn on_member_message(&self, name: &str, ip: Ipv4Addr, message: Message) {
        let now = self.now();
        let origin = NodeId::new(name);
        let fdb = self.controller(|c| {
            let applied = match message {
                Message::MacAdvert(a) => {
                    if !Self::owns(c, name, ip, a.vni, a.vtep) {
                        self.forged(name, a.vni, a.vtep);
                        return Vec::new();
                    }
                    c.book.advert(&a, &origin, now)
                }
                Message::MacWithdraw(w) => {
                    if !Self::owns(c, name, ip, w.vni, w.vtep) {
                        self.forged(name, w.vni, w.vtep);
                        return Vec::new();
                    }
                    c.book.withdraw(&w, now)
                }
                Message::FullSync(s) => {
                    let valid: Vec<MacAdvert> = s
                        .entries
                        .into_iter()
                        .filter(|e| {
                            let ok = Self::owns(c, name, ip, e.vni, e.vtep);
                            if !ok {
                                self.forged(name, e.vni, e.vtep);
                            }
                            ok
                        })
                        .collect();
                    c.book.full_sync(&origin, &valid, now)
                }
                Message::Keepalive => return Vec::new(),
                other => {
                    self.rejects.unexpected.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        member = name,
                        kind = other.kind().name(),
                        "unexpected message ignored"
                    );
                    return Vec::new();
                }
            };
            let relays: Vec<Relay> = applied.relay;
            Self::relay(c, Some(name), &relays);
            applied.fdb
        });
        if let Ok(fdb) = fdb {
            self.hooks.apply_fdb(&fdb);
        }
    }

    /// Records where members' WireGuard packets come from and tells the
    /// others when one roams, forever.
    pub(super) async fn watch_endpoints(self: Arc<Self>) {
        let mut tick = tokio::time::interval(ENDPOINT_POLL);
        loop {
            tick.tick().await;
            let Some(Ok(status)) = self.tunnel().as_ref().map(super::tunnel::Tunnel::status) else {
                continue;
            };
            let _ = self.controller(|c| {
                let mut changed = false;
                for m in c.registry.members.values_mut() {
                    let seen = status
                        .iter()
                        .find(|p| p.public_key == m.public_key)
                        .and_then(|p| p.endpoint);
                    if seen.is_some() && seen != m.endpoint {
                        m.endpoint = seen;
                        changed = true;
                    }
                }
                if changed {
                    self.save_registry(c);
                    self.broadcast_members(c);
                }
            });
        }
    }
}
