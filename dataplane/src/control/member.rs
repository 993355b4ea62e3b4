//! The member's side: redeeming an invite token (`vlnet ctl join`) and the
//! session with the controller — a full sync on every (re)connect, then
//! deltas both ways. While the controller is unreachable the member keeps
//! forwarding from its persisted state and retries every 0.6 s.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::controller::unix_now;
use super::macbook::{Applied, MacBook};
use super::membership::{membership_path, ControllerInfo, Membership};
use super::mobility::NodeId;
use super::plane::{ControlPlane, Inner};
use super::session::{self, Receiver, Sender, SessionError, DEAD_AFTER, KEEPALIVE};
use super::token::{Token, TokenError};
use super::tunnel::DesiredPeer;
use super::wire::{FullSync, Hello, Join, Message, Welcome};
use crate::config::Role;
use crate::wg::KeyPair;

/// How long `join` keeps trying to reach the controller (a valid token
/// connects within a round trip or two; WireGuard retries every 5 s).
const JOIN_TIMEOUT: Duration = Duration::from_secs(8);
/// Pause between connection attempts.
const RETRY: Duration = Duration::from_millis(100);
/// Timeout of one connection attempt: one SYN (TCP retries after 1 s), so
/// that an attempt started while the WAN was down does not delay the
/// reconnection once it is back.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// What `vlnet ctl join` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinReport {
    /// The name the controller knows us by.
    pub name: String,
    /// The controller's name.
    pub controller: String,
    /// Our tunnel address (our VTEP towards members).
    pub tunnel_addr: Ipv4Addr,
    /// The VNIs granted.
    pub vnis: Vec<u32>,
    /// Other members known (the controller included).
    pub members: usize,
}

impl ControlPlane {
    /// `vlnet ctl join TOKEN`: brings WireGuard up with the token's one-time
    /// key, redeems the token with a key pair made here, and starts serving
    /// the granted VNIs.
    pub async fn join(self: &Arc<Self>, text: &str) -> Result<JoinReport, String> {
        if self.wg.role != Role::Member {
            return Err("this node is a controller; run `vlnet ctl join` on the client".to_owned());
        }
        if let Inner::Member(m) = &*self.inner() {
            if let Some(ms) = &m.membership {
                return Err(format!(
                    "already joined as {:?} to controller {:?}; `vlnet ctl teardown` first to leave",
                    ms.name, ms.controller.name
                ));
            }
        }
        let token = Token::parse(text).map_err(|e| e.to_string())?;
        let invite = &token.invite;
        if unix_now() >= invite.expires_at {
            return Err(TokenError::Expired {
                at: invite.expires_at,
            }
            .to_string());
        }
        let keys = KeyPair::generate();
        let result = self.redeem(text, &token, &keys).await;
        let welcome = match result {
            Ok(w) => w,
            Err(e) => {
                // So that a retry starts afresh.
                let tunnel = self.tunnel().take();
                if let Some(t) = tunnel {
                    let _ = t.stop();
                }
                self.notify();
                return Err(e);
            }
        };
        let controller = welcome
            .members
            .iter()
            .find(|m| m.public_key == invite.controller_public_key)
            .map_or_else(|| "controller".to_owned(), |m| m.name.clone());
        let membership = Membership {
            name: invite.name.clone(),
            private_key: keys.private,
            tunnel_addr: invite.tunnel_addr,
            tunnel_prefix: invite.tunnel_prefix,
            controller: ControllerInfo {
                name: controller.clone(),
                public_key: invite.controller_public_key,
                endpoint: invite.controller,
                tunnel_addr: invite.controller_tunnel_addr,
                control_port: invite.control_port,
            },
            vnis: welcome.vnis.clone(),
            members: welcome.members.clone(),
            routes: Vec::new(),
        };
        let path = membership_path(&self.state_dir, &self.node);
        membership
            .save(&path)
            .map_err(|e| format!("saving {}: {e}", path.display()))?;
        if let Inner::Member(m) = &mut *self.inner() {
            m.book = Some(MacBook::new(&membership.name, membership.tunnel_addr));
            m.membership = Some(membership);
        }
        self.sync_peers();
        self.notify();
        self.spawn_tasks();
        info!(name = %invite.name, controller = %controller, "joined");
        Ok(JoinReport {
            name: invite.name.clone(),
            controller,
            tunnel_addr: invite.tunnel_addr,
            vnis: welcome.vnis,
            members: welcome.members.len(),
        })
    }

    /// Tunnel up with the one-time key, Join, Welcome, then our own key.
    async fn redeem(&self, text: &str, token: &Token, keys: &KeyPair) -> Result<Welcome, String> {
        let invite = &token.invite;
        self.bring_up_tunnel(
            invite.private_key.0,
            invite.tunnel_addr,
            invite.tunnel_prefix,
        )
        .await
        .map_err(|e| e.to_string())?;
        let controller = DesiredPeer {
            public_key: invite.controller_public_key,
            endpoint: Some(invite.controller),
            tunnel_addr: invite.controller_tunnel_addr,
            keepalive: self.wg.keepalive_secs,
        };
        if let Some(t) = &mut *self.tunnel() {
            t.sync_peers(std::slice::from_ref(&controller))
                .map_err(|e| e.to_string())?;
        }
        let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
        let stream = loop {
            match session::connect(
                &self.wg.ifname,
                invite.tunnel_addr,
                invite.controller_tunnel_addr,
                invite.control_port,
                CONNECT_TIMEOUT,
            )
            .await
            {
                Ok(s) => break s,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(format!(
                        "the controller did not answer through WireGuard within {JOIN_TIMEOUT:?} \
                         ({e}): the token was already used or revoked (the controller no longer \
                         accepts its one-time key), or its endpoint {} is unreachable",
                        invite.controller
                    ));
                }
                Err(_) => tokio::time::sleep(RETRY).await,
            }
        };
        let (mut rx, mut tx) = session::split(stream);
        let join = Join {
            token: text.to_owned(),
            public_key: keys.public,
        };
        tx.send(&Message::Join(join))
            .await
            .map_err(|e| e.to_string())?;
        let answer = rx.recv(Duration::from_secs(10)).await;
        tx.close().await;
        let welcome = match answer {
            Ok(Message::Welcome(w)) => w,
            Ok(Message::Error(e)) => return Err(format!("the controller refused: {}", e.message)),
            Ok(other) => return Err(format!("unexpected answer {}", other.kind().name())),
            Err(e) => return Err(e.to_string()),
        };
        if let Some(t) = &*self.tunnel() {
            t.set_private_key(keys.private).map_err(|e| e.to_string())?;
        }
        Ok(welcome)
    }

    fn member_outline(&self) -> Option<(ControllerInfo, Ipv4Addr, Hello)> {
        let inner = self.inner();
        let Inner::Member(m) = &*inner else {
            return None;
        };
        let ms = m.membership.as_ref()?;
        let hello = Hello {
            node: ms.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            vtep: ms.tunnel_addr,
            vnis: ms.vnis.clone(),
        };
        Some((ms.controller.clone(), ms.tunnel_addr, hello))
    }

    /// Keeps a session with the controller, reconnecting forever.
    pub(super) async fn run_member(self: Arc<Self>) {
        loop {
            let Some((ctl, me, hello)) = self.member_outline() else {
                return;
            };
            let connected = session::connect(
                &self.wg.ifname,
                me,
                ctl.tunnel_addr,
                ctl.control_port,
                CONNECT_TIMEOUT,
            )
            .await;
            let Ok(stream) = connected else {
                // WireGuard retries a handshake only every 5 s; a fresh
                // peer starts one with the next packet.
                if let Some(t) = &*self.tunnel() {
                    let _ = t.restart_peer(&ctl.public_key);
                }
                tokio::time::sleep(RETRY).await;
                continue;
            };
            let (mut rx, mut tx) = session::split(stream);
            let ended = self.controller_session(&ctl, hello, &mut rx, &mut tx).await;
            if let Inner::Member(m) = &mut *self.inner() {
                m.outbox = None;
            }
            if let Err(e) = &ended {
                self.count_failure(e);
            }
            warn!(controller = %ctl.name, reason = ?ended.err(), "control session ended; reconnecting");
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn controller_session(
        &self,
        ctl: &ControllerInfo,
        hello: Hello,
        rx: &mut Receiver,
        tx: &mut Sender,
    ) -> Result<(), SessionError> {
        tx.send(&Message::Hello(hello)).await?;
        match rx.recv(DEAD_AFTER).await? {
            Message::Hello(h) => {
                info!(controller = %h.node, version = %h.version, "control session up");
            }
            Message::Error(e) => {
                warn!(reason = %e.message, "the controller refused the session");
                return Err(SessionError::Closed);
            }
            other => {
                warn!(kind = other.kind().name(), "expected Hello");
                return Err(SessionError::Closed);
            }
        }
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        let local = match &mut *self.inner() {
            Inner::Member(m) => {
                m.outbox = Some(out_tx);
                m.book
                    .as_ref()
                    .map(MacBook::local_routes)
                    .unwrap_or_default()
            }
            Inner::Controller(_) => Vec::new(),
        };
        tx.send(&Message::FullSync(FullSync { entries: local }))
            .await?;
        let origin = NodeId::new(&ctl.name);
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        let mut deadline = tokio::time::Instant::now() + DEAD_AFTER;
        loop {
            tokio::select! {
                m = rx.next() => {
                    self.on_controller_message(&origin, m?);
                    deadline = tokio::time::Instant::now() + DEAD_AFTER;
                }
                Some(out) = out_rx.recv() => tx.send(&out).await?,
                _ = keepalive.tick() => tx.send(&Message::Keepalive).await?,
                () = tokio::time::sleep_until(deadline) => return Err(SessionError::Timeout(DEAD_AFTER)),
            }
        }
    }

    fn on_controller_message(&self, origin: &NodeId, message: Message) {
        let now = self.now();
        let mut members_changed = false;
        let fdb = match &mut *self.inner() {
            Inner::Member(m) => {
                let (Some(book), Some(ms)) = (m.book.as_mut(), m.membership.as_mut()) else {
                    return;
                };
                let applied = match message {
                    Message::MacAdvert(a) => book.advert(&a, origin, now),
                    Message::MacWithdraw(w) => book.withdraw(&w, now),
                    Message::FullSync(s) => book.full_sync(origin, &s.entries, now),
                    Message::Members(list) => {
                        members_changed = ms.members != list.members;
                        ms.members = list.members;
                        Applied::default()
                    }
                    Message::Keepalive => return,
                    other => {
                        warn!(
                            kind = other.kind().name(),
                            "unexpected message from the controller"
                        );
                        return;
                    }
                };
                m.dirty = true;
                applied.fdb
            }
            Inner::Controller(_) => return,
        };
        self.hooks.apply_fdb(&fdb);
        if members_changed {
            self.sync_peers();
            self.notify();
        }
    }
}
