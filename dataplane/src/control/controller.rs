//! The controller's running side: the operator's commands (`client
//! add/list/remove`, `vm move`), the control listener on the tunnel address
//! (joins and member sessions), and members' WireGuard endpoints. Every
//! decision is the [`ControllerCore`](super::core::controller::ControllerCore)'s;
//! this file only moves bytes and carries out effects.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, info_span, warn, Instrument};

use super::core::controller::ControllerCore;
use super::core::{RejectReason, Rejection};
use super::error::ControlError;
use super::plane::{unix_now, ClientRecord, ControlPlane, Inner, SessionHandle, SESSION_QUEUE};
use super::registry::{ControllerAddrs, InviteRequest, Registry};
use super::session::{self, Receiver, Sender, SessionError, DEAD_AFTER, KEEPALIVE};
use super::wire::{Hello, Join, Message, WireError};
use crate::conn_limit::backoff::Backoff;
use crate::mac::MacAddr;

/// How long the controller waits for a joining client to close its join
/// connection before switching its key.
const JOIN_CLOSE_WAIT: Duration = Duration::from_secs(5);
/// How often members' WireGuard endpoints are checked.
const ENDPOINT_POLL: Duration = Duration::from_secs(1);
/// Control connections one tunnel address may hold open at once (a member
/// needs one; a join and a reconnect overlapping need two).
pub const CONNECTIONS_PER_ADDRESS: usize = 4;
/// Control connections open at once in all.
pub const MAX_CONNECTIONS: usize = 1024;
/// Longest a send on a session may take before the session is dropped as
/// stuck (its member stopped reading).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who is on the other end of a control connection.
enum Caller {
    Member(String, Ipv4Addr),
    Invited(Ipv4Addr),
}

/// Open control connections per tunnel address.
#[derive(Debug, Default)]
pub(super) struct ConnectionCounts {
    by_addr: Mutex<HashMap<Ipv4Addr, usize>>,
}

/// One open control connection; its count goes when it is dropped.
struct ConnectionSlot {
    counts: Arc<ConnectionCounts>,
    addr: Ipv4Addr,
}

impl ConnectionCounts {
    /// A slot for a connection from `addr`, unless it or everyone holds
    /// too many already.
    fn take(self: &Arc<Self>, addr: Ipv4Addr) -> Option<ConnectionSlot> {
        let mut by_addr = self
            .by_addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let total: usize = by_addr.values().sum();
        let n = by_addr.entry(addr).or_insert(0);
        if *n >= CONNECTIONS_PER_ADDRESS || total >= MAX_CONNECTIONS {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            counts: Arc::clone(self),
            addr,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut by_addr = self
            .counts
            .by_addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = by_addr.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                by_addr.remove(&self.addr);
            }
        }
    }
}

impl ControlPlane {
    /// `vlnet ctl client add`: opens an invite (for a class of `uses`
    /// clients when given) and returns its token, once saved.
    pub fn client_add(
        &self,
        name: &str,
        vnis: &[u32],
        ttl_secs: u64,
        uses: Option<u32>,
    ) -> Result<String, ControlError> {
        let tunnel = self.wg.address.ok_or(ControlError::NoTunnelAddress)?;
        let addrs = ControllerAddrs {
            endpoint: self.endpoint,
            tunnel,
            control_port: self.wg.control_port,
        };
        let request = InviteRequest {
            name,
            vnis,
            ttl_secs,
            uses,
        };
        let now = self.now();
        let token = self.change_controller("the invite", |c, _| {
            c.client_add(&request, &addrs, now, &mut rand::rng())
        })?;
        info!(client = name, ?vnis, ttl_secs, ?uses, "invite issued");
        Ok(token)
    }

    /// `vlnet ctl client remove`: revokes the key, withdraws the MACs — once
    /// the removal is saved; a removal that cannot be saved changes nothing.
    pub fn client_remove(&self, name: &str) -> Result<(), ControlError> {
        let now = self.now();
        let served = self.served();
        self.change_controller("the removal", |c, cloud| {
            c.client_remove(name, &served, now, cloud)
                .map(|effects| ((), effects))
        })?;
        info!(client = name, "member removed; key revoked");
        Ok(())
    }

    /// `vlnet ctl vm move MAC --vni N --to MEMBER`: lets the member take the
    /// MAC once within `ttl_secs` (a live migration to it), once saved.
    pub fn grant_move(
        &self,
        vni: u32,
        mac: MacAddr,
        to: &str,
        ttl_secs: u64,
    ) -> Result<(), ControlError> {
        let now = self.now();
        self.change_controller("the grant", |c, cloud| {
            c.grant_move(vni, mac, to, ttl_secs, now, cloud)
                .map(|effects| ((), effects))
        })?;
        info!(vni, %mac, member = to, ttl_secs, "MAC move granted");
        Ok(())
    }

    /// `vlnet ctl client list`.
    pub fn client_list(&self) -> Result<Vec<ClientRecord>, ControlError> {
        let status = self
            .tunnel()
            .as_ref()
            .map(|t| t.status().unwrap_or_default())
            .unwrap_or_default();
        let now = unix_now();
        let inner = self.inner();
        let Inner::Controller(c) = &*inner else {
            return Err(ControlError::NotController);
        };
        let routes = c.book().routes(None);
        let direct = c.direct_members();
        let members = c.registry().members.iter().map(|(name, m)| {
            let wg = status.iter().find(|p| p.public_key == m.public_key);
            ClientRecord {
                name: name.clone(),
                state: if c.is_connected(name) {
                    "connected"
                } else {
                    "offline"
                }
                .to_owned(),
                tunnel_addr: m.tunnel_addr,
                vnis: m.vnis.clone(),
                handshake_age_secs: wg
                    .and_then(|p| p.handshake_age(std::time::SystemTime::now()))
                    .map(|d| d.as_secs()),
                endpoint: wg.and_then(|p| p.endpoint).or(m.endpoint),
                macs: routes.iter().filter(|r| r.vtep == m.tunnel_addr).count(),
                rx_bytes: wg.map_or(0, |p| p.rx_bytes),
                tx_bytes: wg.map_or(0, |p| p.tx_bytes),
                uses_left: None,
                direct: direct.get(&m.tunnel_addr).copied(),
            }
        });
        let invites = c.registry().invites.iter().map(|(name, i)| ClientRecord {
            name: name.clone(),
            state: if Registry::invite_expired(i, now) {
                "expired"
            } else if i.seats() == 0 {
                "spent"
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
            uses_left: i.uses_left,
            direct: None,
        });
        Ok(members.chain(invites).collect())
    }

    /// Accepts control connections on the tunnel address, forever: at most
    /// [`CONNECTIONS_PER_ADDRESS`] per tunnel address and
    /// [`MAX_CONNECTIONS`] in all; a failed accept backs off (as the other
    /// listeners do, [`Backoff`]).
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
        let counts = Arc::new(ConnectionCounts::default());
        let mut backoff = Backoff::default();
        // The connections' tasks: they end with this one.
        let mut connections = JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => {
                    backoff.succeeded();
                    accepted
                }
                Err(e) => {
                    let pause = backoff.failed();
                    self.rejected(&Rejection {
                        member: "-".into(),
                        reason: RejectReason::TooManyConnections,
                        mac: None,
                        detail: format!("accept failed ({e}); pausing {pause:?}"),
                    });
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            let IpAddr::V4(ip) = peer.ip() else {
                continue;
            };
            let Some(slot) = counts.take(ip) else {
                self.rejected(&Rejection {
                    member: ip.to_string(),
                    reason: RejectReason::TooManyConnections,
                    mac: None,
                    detail: format!("more than {CONNECTIONS_PER_ADDRESS} control connections"),
                });
                continue; // dropping the stream closes it
            };
            let span = info_span!("control", %peer);
            connections.spawn(
                Arc::clone(&self)
                    .handle_connection(stream, peer, slot)
                    .instrument(span),
            );
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
        if let Some((name, _)) = c.registry().member_at(ip) {
            return Some(Caller::Member(name.to_owned(), ip));
        }
        let now = unix_now();
        c.registry()
            .invites
            .values()
            .any(|i| i.tunnel_addr == ip && Registry::invite_open(i, now))
            .then_some(Caller::Invited(ip))
    }

    /// Counts why a session ended, if it was the peer's fault.
    pub(super) fn count_failure(&self, who: &str, e: &SessionError) {
        let reason = match e {
            SessionError::Wire(WireError::Version { .. }) => RejectReason::BadVersion,
            SessionError::Wire(_) => RejectReason::Malformed,
            SessionError::WriteTimeout(_) => RejectReason::SlowReader,
            _ => return,
        };
        self.rejected(&Rejection {
            member: who.to_owned(),
            reason,
            mac: None,
            detail: e.to_string(),
        });
    }

    async fn handle_connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        _slot: ConnectionSlot,
    ) {
        let (mut rx, tx) = session::split(stream);
        let Some(caller) = self.caller(peer) else {
            self.rejected(&Rejection {
                member: peer.ip().to_string(),
                reason: RejectReason::NotMember,
                mac: None,
                detail: "control connection from a non-member".into(),
            });
            tx.refuse("not a member").await;
            return;
        };
        let first = match rx.recv(DEAD_AFTER).await {
            Ok(m) => m,
            Err(e) => {
                self.count_failure(&peer.ip().to_string(), &e);
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
                self.rejected(&Rejection {
                    member: peer.ip().to_string(),
                    reason: RejectReason::Unexpected,
                    mac: None,
                    detail: format!("first message {}", other.kind().name()),
                });
                tx.refuse("expected Hello (members) or Join (invited clients)")
                    .await;
            }
        }
    }

    async fn handle_join(&self, ip: Ipv4Addr, join: &Join, mut rx: Receiver, mut tx: Sender) {
        let (now, served) = (self.now(), self.served());
        let Some(pool) = self.wg.address else {
            return;
        };
        let redeemed = match self
            .change_controller("the join", |c, _| c.redeem(join, ip, pool, &served, now))
        {
            Ok(r) => r,
            Err(ControlError::Redeem(e)) => {
                let message = e.to_string();
                self.rejected(&Rejection {
                    member: ip.to_string(),
                    reason: RejectReason::BadToken,
                    mac: None,
                    detail: message.clone(),
                });
                tx.refuse(&message).await;
                return;
            }
            Err(e) => {
                warn!(%ip, error = %e, "join not saved");
                tx.refuse("the controller could not save the join; try again")
                    .await;
                return;
            }
        };
        let name = redeemed.name;
        if let Err(e) = send_timed(&mut tx, &Message::Welcome(redeemed.welcome)).await {
            warn!(client = %name, error = %e, "sending Welcome failed");
        }
        // The client closes once it has the Welcome; only then its one-time
        // key may go.
        let _ = rx.recv(JOIN_CLOSE_WAIT).await;
        let endpoint = self.tunnel().as_ref().and_then(|t| {
            let status = t.status().ok()?;
            status
                .into_iter()
                .find(|p| Some(p.public_key) == redeemed.one_time)
                .and_then(|p| p.endpoint)
        });
        if let Some(Err(e)) = self.with_controller(|c, _| ((), c.joined(&name, endpoint, &served)))
        {
            warn!(client = %name, error = %e, "cannot save the new member's endpoint");
        }
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
        let id = self.session_id();
        let served = self.served();
        let opened =
            self.with_controller(|c, _| (c.open_session(name, ip, hello, id, &served), Vec::new()));
        let first = match opened {
            Some(Ok(Ok(first))) => first,
            Some(Ok(Err(rejection))) => {
                self.rejected(&rejection);
                tx.refuse(&rejection.detail).await;
                return;
            }
            _ => return,
        };
        let (out_tx, mut out_rx) = mpsc::channel(SESSION_QUEUE);
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), SessionHandle { id, tx: out_tx });
        info!(member = name, "member connected");
        // A direct member is told the zone's VTEPs (only sends: no error).
        let _ = self.direct_changed(ControllerCore::zone_updates);
        let ended = self
            .session_loop(name, first, &mut rx, &mut tx, &mut out_rx)
            .await;
        let _ = self.direct_changed(|c| c.close_session(name, id));
        {
            let mut sessions = self
                .sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if sessions.get(name).is_some_and(|s| s.id == id) {
                sessions.remove(name);
            }
        }
        if let Err(e) = &ended {
            self.count_failure(name, e);
        }
        info!(member = name, reason = ?ended.err(), "member disconnected");
    }

    async fn session_loop(
        &self,
        name: &str,
        first: Vec<Message>,
        rx: &mut Receiver,
        tx: &mut Sender,
        out_rx: &mut mpsc::Receiver<Message>,
    ) -> Result<(), SessionError> {
        for m in &first {
            send_timed(tx, m).await?;
        }
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        let mut deadline = tokio::time::Instant::now() + DEAD_AFTER;
        loop {
            tokio::select! {
                m = rx.next() => {
                    let message = m?;
                    if message == Message::Leave {
                        info!(member = name, "member leaves: key revoked, MACs withdrawn");
                    }
                    let (now, served) = (self.now(), self.served());
                    let effects = self.with_controller(|c, cloud| ((), c.on_message(name, message, &served, now, cloud)));
                    if let Some(Err(e)) = effects {
                        warn!(member = name, error = %e, "cannot save the registry");
                    }
                    deadline = tokio::time::Instant::now() + DEAD_AFTER;
                }
                out = out_rx.recv() => match out {
                    Some(m) => send_timed(tx, &m).await?,
                    None => return Ok(()), // removed, or dropped as too slow
                },
                _ = keepalive.tick() => send_timed(tx, &Message::Keepalive).await?,
                () = tokio::time::sleep_until(deadline) => return Err(SessionError::Timeout(DEAD_AFTER)),
            }
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
            let seen: Vec<_> = status.iter().map(|p| (p.public_key, p.endpoint)).collect();
            let served = self.served();
            if let Some(Err(e)) = self.direct_changed(|c| c.endpoints_seen(&seen, &served)) {
                warn!(error = %e, "cannot save the registry");
            }
        }
    }
}

/// Sends `message`, giving up after [`WRITE_TIMEOUT`] (the peer stopped
/// reading).
pub(super) async fn send_timed(tx: &mut Sender, message: &Message) -> Result<(), SessionError> {
    tokio::time::timeout(WRITE_TIMEOUT, tx.send(message))
        .await
        .map_err(|_| SessionError::WriteTimeout(WRITE_TIMEOUT))?
}

#[cfg(test)]
mod tests;
