//! The member's running side: redeeming an invite token (`vlnet ctl join`)
//! and the session with the controller — a full sync on every (re)connect,
//! then deltas both ways, each decided by the
//! [`MemberCore`](super::core::member::MemberCore). While the controller is
//! unreachable the member keeps forwarding from its persisted state and
//! retries (see [`ControlPlane::run_member`] for the pacing).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::controller::send_timed;
use super::core::member::MemberCore;
use super::error::ControlError;
use super::membership::{membership_path, ControllerInfo, Membership};
use super::plane::{unix_now, ControlPlane, Inner, SessionHandle, SESSION_QUEUE};
use super::session::{self, Receiver, Sender, SessionError, DEAD_AFTER, KEEPALIVE};
use super::token::{Token, TokenError};
use super::tunnel::DesiredPeer;
use super::wire::{Join, Message, Welcome};
use crate::config::Role;
use crate::wg::KeyPair;

/// How long `join` keeps trying to reach the controller (a valid token
/// connects within a round trip or two; WireGuard retries every 5 s).
const JOIN_TIMEOUT: Duration = Duration::from_secs(8);
/// Pause after an attempt that got no answer at all (the WAN or the
/// controller's host is down): the attempt's own timeout paces the loop, so
/// a WAN that comes back is used within about a second (before jitter).
const RETRY: Duration = Duration::from_millis(100);
/// Longest pause after attempts the controller answered but refused (its
/// daemon is down or restarting): those double from [`RETRY`] up to this,
/// so a cluster's members do not hammer a controller that comes back.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Timeout of one connection attempt: one SYN (TCP retries after 1 s), so
/// that an attempt started while the WAN was down does not delay the
/// reconnection once it is back.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long `vlnet ctl leave` waits for the controller to end the session.
const LEAVE_WAIT: Duration = Duration::from_secs(5);

/// What `vlnet ctl leave` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveReport {
    /// The name the controller knew us by.
    pub name: String,
    /// The controller's name.
    pub controller: String,
    /// Whether the controller was told (not `--force`).
    pub told: bool,
}

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
    pub async fn join(self: &Arc<Self>, text: &str) -> Result<JoinReport, ControlError> {
        if self.wg.role != Role::Member {
            return Err(ControlError::IsController(
                "run `vlnet ctl join` on the client",
            ));
        }
        if let Inner::Member(Some(m)) = &*self.inner() {
            let ms = m.joined();
            return Err(ControlError::AlreadyJoined {
                name: ms.name.clone(),
                controller: ms.controller.name.clone(),
            });
        }
        let token = Token::parse(text)?;
        let invite = &token.invite;
        if unix_now() >= invite.expires_at {
            return Err(TokenError::Expired {
                at: invite.expires_at,
            }
            .into());
        }
        let keys = KeyPair::generate();
        let result = self.redeem(text, &token, &keys).await;
        let welcome = match result {
            Ok(w) => w,
            Err(e) => {
                self.drop_join_tunnel();
                return Err(e);
            }
        };
        let controller = welcome
            .members
            .iter()
            .find(|m| m.public_key == invite.controller_public_key)
            .map_or_else(|| "controller".to_owned(), |m| m.name.clone());
        // A class invite's member has a name and address of its own.
        let name = welcome.name.clone().unwrap_or_else(|| invite.name.clone());
        let membership = Membership {
            name: name.clone(),
            private_key: keys.private,
            tunnel_addr: welcome.tunnel_addr,
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
            zone: std::collections::BTreeMap::new(),
        };
        let path = membership_path(&self.state_dir, &self.node);
        if let Err(source) = membership.save(&path) {
            self.drop_join_tunnel();
            return Err(ControlError::NotSaved {
                what: "joining",
                path,
                source,
            });
        }
        if let Inner::Member(m) = &mut *self.inner() {
            *m = Some(Box::new(MemberCore::new(membership)));
        }
        self.sync_peers();
        self.notify();
        self.spawn_tasks().await;
        info!(%name, controller = %controller, "joined");
        Ok(JoinReport {
            name,
            controller,
            tunnel_addr: welcome.tunnel_addr,
            vnis: welcome.vnis,
            members: welcome.members.len(),
        })
    }

    /// Takes down the tunnel of a join that failed, so that a retry starts
    /// afresh.
    fn drop_join_tunnel(&self) {
        let tunnel = self.tunnel().take();
        if let Some(t) = tunnel {
            let _ = t.stop();
        }
        self.notify();
    }

    /// Tunnel up with the one-time key, Join, Welcome, then our own key.
    async fn redeem(
        &self,
        text: &str,
        token: &Token,
        keys: &KeyPair,
    ) -> Result<Welcome, ControlError> {
        let invite = &token.invite;
        self.bring_up_tunnel(
            invite.private_key.0,
            invite.tunnel_addr,
            invite.tunnel_prefix,
        )
        .await?;
        let controller = DesiredPeer {
            public_key: invite.controller_public_key,
            endpoint: Some(invite.controller),
            tunnel_addr: invite.controller_tunnel_addr,
            keepalive: self.wg.keepalive_secs,
        };
        if let Some(t) = &mut *self.tunnel() {
            t.sync_peers(std::slice::from_ref(&controller))?;
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
                Err(source) if tokio::time::Instant::now() >= deadline => {
                    return Err(ControlError::JoinUnanswered {
                        timeout: JOIN_TIMEOUT,
                        endpoint: invite.controller,
                        source,
                    });
                }
                Err(_) => tokio::time::sleep(RETRY).await,
            }
        };
        let (mut rx, mut tx) = session::split(stream);
        let join = Join {
            token: text.to_owned(),
            public_key: keys.public,
        };
        tx.send(&Message::Join(join)).await?;
        let answer = rx.recv(Duration::from_secs(10)).await;
        tx.close().await;
        let welcome = match answer {
            Ok(Message::Welcome(w)) => w,
            Ok(Message::Error(e)) => return Err(ControlError::JoinRefused(e.message)),
            Ok(other) => return Err(ControlError::JoinUnexpected(other.kind().name())),
            Err(e) => return Err(e.into()),
        };
        if welcome.tunnel_addr == invite.tunnel_addr {
            if let Some(t) = &*self.tunnel() {
                t.set_private_key(keys.private)?;
            }
        } else {
            // A class invite: the token's address was only for the join.
            let tunnel = self.tunnel().take();
            if let Some(t) = tunnel {
                t.stop()?;
            }
            self.bring_up_tunnel(keys.private, welcome.tunnel_addr, invite.tunnel_prefix)
                .await?;
        }
        Ok(welcome)
    }

    /// `vlnet ctl leave`: asks the controller to remove this member (its
    /// key revoked, its MACs withdrawn, as `client remove` does), waits for
    /// it to end the session, then forgets the membership here: tunnel
    /// down, the cluster's FDB entries and the granted VNIs gone; the VNIs
    /// of the config file keep being served. `force` forgets without asking
    /// (the controller keeps the member until `client remove` there).
    pub async fn leave(&self, force: bool) -> Result<LeaveReport, ControlError> {
        if self.wg.role != Role::Member {
            return Err(ControlError::IsController(
                "members leave, controllers stay",
            ));
        }
        let (ctl, name) = match &*self.inner() {
            Inner::Member(Some(m)) => (m.joined().controller.clone(), m.joined().name.clone()),
            _ => return Err(ControlError::NotJoined),
        };
        let told = !force;
        if told {
            let asked = self.with_member(|m| match m.leave() {
                Some(effects) => (true, effects),
                None => (false, Vec::new()),
            });
            if !matches!(asked, Some(Ok(true))) {
                return Err(ControlError::NoSession {
                    controller: ctl.name,
                    name,
                });
            }
            if !self.wait_disconnected(LEAVE_WAIT).await {
                return Err(ControlError::LeaveUnconfirmed {
                    controller: ctl.name,
                    waited: LEAVE_WAIT,
                });
            }
        }
        // The membership file goes first, under the state's lock (so that
        // no session saves it again in between): a member that cannot
        // forget its membership on disk keeps it here too, or it would come
        // back on the next start.
        let forget = {
            let mut inner = self.inner();
            let path = membership_path(&self.state_dir, &self.node);
            match std::fs::remove_file(&path) {
                Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                    return Err(ControlError::NotSaved {
                        what: "leaving",
                        path,
                        source,
                    });
                }
                _ => {}
            }
            match &mut *inner {
                Inner::Member(m) => m.take().map(|m| m.forget()).unwrap_or_default(),
                Inner::Controller(_) => Vec::new(),
            }
        };
        self.end_epoch();
        self.execute(forget)?;
        // Ends a session still up (--force): its task sees the queue close.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&ctl.name);
        let tunnel = self.tunnel().take();
        if let Some(t) = tunnel {
            if let Err(e) = t.stop() {
                warn!(error = %e, "cannot stop the WireGuard device");
            }
        }
        self.notify();
        info!(%name, controller = %ctl.name, told, "left the cluster");
        Ok(LeaveReport {
            name,
            controller: ctl.name,
            told,
        })
    }

    /// Waits up to `limit` for the session with the controller to end.
    async fn wait_disconnected(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            let connected = self.with_member(|m| (m.is_connected(), Vec::new()));
            if !matches!(connected, Some(Ok(true))) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// The controller to reach and our tunnel address, once joined.
    fn controller_info(&self) -> Option<(ControllerInfo, Ipv4Addr)> {
        let inner = self.inner();
        let Inner::Member(Some(m)) = &*inner else {
            return None;
        };
        let ms = m.joined();
        Some((ms.controller.clone(), ms.tunnel_addr))
    }

    /// Keeps a session with the controller, reconnecting until the member
    /// leaves (membership `epoch` is over), every
    /// pause jittered so that members do not come back in step: an attempt
    /// that timed out (no answer: the WAN is down) is retried after
    /// [`RETRY`] with a fresh WireGuard handshake; one the controller
    /// refused, or a session that ended before its Hello, backs off
    /// exponentially to [`RETRY_MAX`]; a session that was up starts afresh.
    pub(super) async fn run_member(self: Arc<Self>, epoch: u64) {
        let mut pause = RETRY;
        loop {
            let Some((ctl, me)) = self.controller_info().filter(|_| self.in_epoch(epoch)) else {
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
            if let Ok(stream) = connected {
                let (mut rx, mut tx) = session::split(stream);
                let ended = self.controller_session(&ctl, &mut rx, &mut tx).await;
                let _ = self.with_member(|m| {
                    m.disconnected();
                    ((), Vec::new())
                });
                self.sessions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&ctl.name);
                let up = matches!(ended, Ok(true) | Err((true, _)));
                pause = next_pause(if up { Attempt::WasUp } else { Attempt::Refused }, pause);
                if let Err((_, e)) = &ended {
                    self.count_failure(&ctl.name, e);
                    warn!(controller = %ctl.name, reason = %e, "control session ended; reconnecting");
                }
            } else if connected
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
            {
                // WireGuard retries a handshake only every 5 s; a fresh
                // peer starts one with the next packet.
                if let Some(t) = &*self.tunnel() {
                    let _ = t.restart_peer(&ctl.public_key);
                }
                pause = next_pause(Attempt::TimedOut, pause);
            } else {
                pause = next_pause(Attempt::Refused, pause);
            }
            tokio::time::sleep(jitter(pause)).await;
        }
    }

    /// One session: Hello both ways, our full table, then messages both
    /// ways. `Ok(up)`/`Err((up, why))` say whether it got as far as the
    /// controller's Hello.
    async fn controller_session(
        &self,
        ctl: &ControllerInfo,
        rx: &mut Receiver,
        tx: &mut Sender,
    ) -> Result<bool, (bool, SessionError)> {
        let Some(Ok(hello)) = self.with_member(|m| (m.hello(self.vtep), Vec::new())) else {
            return Ok(false);
        };
        send_timed(tx, &Message::Hello(hello))
            .await
            .map_err(|e| (false, e))?;
        match rx.recv(DEAD_AFTER).await.map_err(|e| (false, e))? {
            Message::Hello(h) => {
                info!(controller = %h.node, version = %h.version, "control session up");
            }
            Message::Error(e) => {
                warn!(reason = %e.message, "the controller refused the session");
                return Ok(false);
            }
            other => {
                warn!(kind = other.kind().name(), "expected Hello");
                return Ok(false);
            }
        }
        let (out_tx, mut out_rx) = mpsc::channel(SESSION_QUEUE);
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                ctl.name.clone(),
                SessionHandle {
                    id: self.session_id(),
                    tx: out_tx,
                },
            );
        let Some(Ok(first)) = self.with_member(|m| (m.connected(), Vec::new())) else {
            return Ok(true);
        };
        for m in &first {
            send_timed(tx, m).await.map_err(|e| (true, e))?;
        }
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        let mut deadline = tokio::time::Instant::now() + DEAD_AFTER;
        loop {
            tokio::select! {
                m = rx.next() => {
                    let message = m.map_err(|e| (true, e))?;
                    let now = self.now();
                    if let Some(Err(e)) = self.with_member(|m| ((), m.on_message(message, now))) {
                        warn!(error = %e, "cannot save the membership");
                    }
                    deadline = tokio::time::Instant::now() + DEAD_AFTER;
                }
                out = out_rx.recv() => match out {
                    Some(m) => send_timed(tx, &m).await.map_err(|e| (true, e))?,
                    None => return Ok(true), // dropped as too slow
                },
                _ = keepalive.tick() => send_timed(tx, &Message::Keepalive).await.map_err(|e| (true, e))?,
                () = tokio::time::sleep_until(deadline) => return Err((true, SessionError::Timeout(DEAD_AFTER))),
            }
        }
    }
}

/// How a connection attempt (and the session it opened) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// No answer: the WAN or the controller's host is down.
    TimedOut,
    /// Answered and refused, or ended before the controller's Hello: its
    /// daemon is down, restarting or overloaded.
    Refused,
    /// A session got as far as the controller's Hello.
    WasUp,
}

/// The pause before the next attempt after `attempt`, `pause` being the
/// last one (jitter comes on top).
fn next_pause(attempt: Attempt, pause: Duration) -> Duration {
    match attempt {
        Attempt::TimedOut | Attempt::WasUp => RETRY,
        Attempt::Refused => (pause * 2).min(RETRY_MAX),
    }
}

/// `pause` scaled by a random factor in [0.5, 1).
fn jitter(pause: Duration) -> Duration {
    pause.mul_f64(rand::rng().random_range(0.5..1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_back_off_and_silence_keeps_the_pace_of_the_timeout() {
        let mut pause = RETRY;
        let mut seen = Vec::new();
        for _ in 0..8 {
            pause = next_pause(Attempt::Refused, pause);
            seen.push(pause.as_millis());
        }
        assert_eq!(seen, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(next_pause(Attempt::WasUp, pause), RETRY);
        assert_eq!(next_pause(Attempt::TimedOut, pause), RETRY);
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(1));
            assert!(j >= Duration::from_millis(500) && j < Duration::from_secs(1));
        }
    }
}
