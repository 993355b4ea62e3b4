//! One BGP session as the RFC 4271 §8 state machine, with no I/O: events
//! go in ([`Event`]), actions come out ([`Action`]) for the task that owns
//! the TCP connection and the timers to carry out.
//!
//! vlnet always opens the connection itself (the route reflectors it peers
//! with accept it), so the machine has no Active state and no collision
//! detection: Idle → Connect → `OpenSent` → `OpenConfirm` → Established. Every
//! failure drops back to Idle and schedules the next attempt after an
//! exponential back-off ([`Backoff`]); [`Event::Stop`] ends the session
//! until the next [`Event::Start`].
//!
//! Nothing a peer sends can panic it: a frame that does not decode, a
//! message in the wrong state or an unacceptable OPEN is answered with the
//! NOTIFICATION the RFCs ask for (message header, OPEN, UPDATE errors; FSM
//! errors with the RFC 6608 subcodes), then the connection closes; the
//! reason comes out in [`Action::Down`] to be logged and counted.

use std::time::Duration;

use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::BgpMessage;

use super::codec;
use super::notification::Notification;
use super::open::{self, Local, Negotiated};
use crate::conn_limit::Backoff;

/// The hold time while waiting for the peer's OPEN (RFC 4271 §8: "a large
/// value", 4 minutes suggested).
pub const OPEN_HOLD: Duration = Duration::from_mins(4);
/// How long a TCP connect may take before it is abandoned and retried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the session is (RFC 4271 §8.2.2, without Active).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not connected; waiting to be started or for the retry timer.
    Idle,
    /// A TCP connection is being opened.
    Connect,
    /// Our OPEN is sent; waiting for the peer's.
    OpenSent,
    /// OPENs exchanged; waiting for the peer's KEEPALIVE.
    OpenConfirm,
    /// Routes flow.
    Established,
}

/// The session's timers; the shell runs one of each at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Retry the connection (and give up on a connect that takes too long).
    ConnectRetry,
    /// The peer has been silent for the hold time.
    Hold,
    /// Time to send a KEEPALIVE.
    Keepalive,
}

/// Something that happened to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// Start the session (RFC 4271 `ManualStart`).
    Start,
    /// Stop it, with a Cease/Administrative Shutdown if connected.
    Stop,
    /// The TCP connection asked for by [`Action::Connect`] is up.
    TcpConnected,
    /// The connection failed or closed.
    TcpClosed,
    /// One whole message arrived (as [`codec::frame_len`] delimits them).
    Frame(&'a [u8]),
    /// The byte stream could not be framed ([`codec::frame_len`]'s answer).
    BadFrame(&'a Notification),
    /// A timer the session started has fired.
    Timer(Timer),
    /// Close the session with this NOTIFICATION (the route owner's
    /// decision, e.g. too many routes); it retries after the back-off.
    Cease(&'a Notification),
}

/// Something the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open a TCP connection to the peer (port 179).
    Connect,
    /// Send a message.
    Send(BgpMessage),
    /// Close the connection.
    Close,
    /// (Re)start a timer.
    StartTimer(Timer, Duration),
    /// Stop a timer.
    StopTimer(Timer),
    /// The session is established with these parameters: advertise the
    /// local routes, then End-of-RIB.
    Established(Negotiated),
    /// The peer sent routes.
    Update(BgpUpdateMessage),
    /// The peer asked for our routes again (ROUTE-REFRESH).
    Refresh,
    /// An established or opening session went down.
    Down(Down),
}

/// Why a session went down, and what to do with the peer's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    /// What happened.
    pub reason: DownReason,
    /// Keep the peer's routes as stale for this long (it announced graceful
    /// restart with forwarding preserved, and the session did not end with a
    /// NOTIFICATION); `None`: withdraw them now.
    pub retain: Option<Duration>,
}

/// Why a session went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We sent this NOTIFICATION (malformed or unexpected input, hold timer).
    Sent(Notification),
    /// The peer sent this NOTIFICATION.
    Received(Notification),
    /// The connection closed without a NOTIFICATION.
    ConnectionLost,
    /// [`Event::Stop`].
    Stopped,
}

/// One session's state machine.
#[derive(Debug, Clone)]
pub struct Session {
    local: Local,
    state: State,
    started: bool,
    backoff: Backoff,
    negotiated: Option<Negotiated>,
}

impl Session {
    /// A stopped session for `local`, retrying with `backoff`.
    #[must_use]
    pub fn new(local: Local, backoff: Backoff) -> Self {
        Self {
            local,
            state: State::Idle,
            started: false,
            backoff,
            negotiated: None,
        }
    }

    /// Where the session is.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// The parameters agreed with the peer, once its OPEN was accepted.
    #[must_use]
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Handles one event and returns what to do.
    pub fn handle(&mut self, event: Event<'_>) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Start => self.start(&mut out),
            Event::Stop => self.stop(&mut out),
            Event::TcpConnected => self.connected(&mut out),
            Event::TcpClosed => self.closed(&mut out),
            Event::Frame(frame) => self.frame(frame, &mut out),
            Event::BadFrame(n) | Event::Cease(n) => {
                if self.connected_state() {
                    self.fail(DownReason::Sent(n.clone()), &mut out);
                }
            }
            Event::Timer(t) => self.timer(t, &mut out),
        }
        out
    }

    fn connected_state(&self) -> bool {
        matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        )
    }

    fn start(&mut self, out: &mut Vec<Action>) {
        if self.started {
            return;
        }
        self.started = true;
        if self.state == State::Idle {
            self.connect(out);
        }
    }

    fn connect(&mut self, out: &mut Vec<Action>) {
        self.state = State::Connect;
        out.push(Action::Connect);
        out.push(Action::StartTimer(Timer::ConnectRetry, CONNECT_TIMEOUT));
    }

    fn stop(&mut self, out: &mut Vec<Action>) {
        self.started = false;
        match self.state {
            State::Idle => out.push(Action::StopTimer(Timer::ConnectRetry)),
            State::Connect => {
                out.push(Action::StopTimer(Timer::ConnectRetry));
                out.push(Action::Close);
                self.state = State::Idle;
            }
            State::OpenSent | State::OpenConfirm | State::Established => {
                out.push(Action::Send(Notification::admin_shutdown().to_message()));
                self.down(DownReason::Stopped, out);
            }
        }
    }

    fn connected(&mut self, out: &mut Vec<Action>) {
        if self.state != State::Connect {
            // A connection nobody asked for (any more): drop it.
            out.push(Action::Close);
            return;
        }
        self.state = State::OpenSent;
        out.push(Action::StopTimer(Timer::ConnectRetry));
        out.push(Action::Send(open::build(&self.local)));
        out.push(Action::StartTimer(Timer::Hold, OPEN_HOLD));
    }

    fn closed(&mut self, out: &mut Vec<Action>) {
        match self.state {
            State::Idle => {}
            State::Connect => {
                self.state = State::Idle;
                out.push(Action::StopTimer(Timer::ConnectRetry));
                self.schedule_retry(out);
            }
            State::OpenSent | State::OpenConfirm | State::Established => {
                self.down(DownReason::ConnectionLost, out);
            }
        }
    }

    fn timer(&mut self, timer: Timer, out: &mut Vec<Action>) {
        match (timer, self.state) {
            (Timer::ConnectRetry, State::Idle) if self.started => self.connect(out),
            (Timer::ConnectRetry, State::Connect) => {
                // The connect took too long: abandon it and try again later.
                out.push(Action::Close);
                self.state = State::Idle;
                self.schedule_retry(out);
            }
            (Timer::Hold, State::OpenSent | State::OpenConfirm | State::Established) => {
                self.fail(DownReason::Sent(Notification::hold_timer_expired()), out);
            }
            (Timer::Keepalive, State::OpenConfirm | State::Established) => {
                out.push(Action::Send(BgpMessage::KeepAlive));
                if let Some(ka) = self.negotiated.as_ref().and_then(|n| n.keepalive) {
                    out.push(Action::StartTimer(Timer::Keepalive, ka));
                }
            }
            // A timer that fired after its state was left.
            _ => {}
        }
    }

    fn frame(&mut self, frame: &[u8], out: &mut Vec<Action>) {
        if !self.connected_state() {
            return;
        }
        let asn4 = self.negotiated.as_ref().is_none_or(|n| n.asn4);
        let message = match codec::decode(frame, asn4) {
            Ok(m) => m,
            Err(e) => {
                match e.answer {
                    Some(n) => self.fail(DownReason::Sent(n), out),
                    // A NOTIFICATION we cannot read still ends the session.
                    None => self.down(
                        DownReason::Received(Notification::new(
                            0,
                            0,
                            frame.get(19..).unwrap_or_default(),
                        )),
                        out,
                    ),
                }
                return;
            }
        };
        if let BgpMessage::Notification(_) = &message {
            let n =
                Notification::from_message(&message).unwrap_or_else(|| Notification::new(0, 0, []));
            self.down(DownReason::Received(n), out);
            return;
        }
        match (self.state, message) {
            (State::OpenSent, BgpMessage::Open(o)) => match open::accept(&self.local, &o) {
                Ok(n) => {
                    self.state = State::OpenConfirm;
                    out.push(Action::Send(BgpMessage::KeepAlive));
                    Self::arm_timers(&n, out);
                    self.negotiated = Some(n);
                }
                Err(notification) => self.fail(DownReason::Sent(notification), out),
            },
            (State::OpenConfirm, BgpMessage::KeepAlive) => {
                self.state = State::Established;
                self.backoff.succeeded();
                if let Some(n) = &self.negotiated {
                    self.restart_hold(out);
                    out.push(Action::Established(n.clone()));
                }
            }
            (State::Established, BgpMessage::KeepAlive) => self.restart_hold(out),
            (State::Established, BgpMessage::Update(u)) => {
                self.restart_hold(out);
                out.push(Action::Update(u));
            }
            (State::Established, BgpMessage::RouteRefresh(_)) => {
                self.restart_hold(out);
                out.push(Action::Refresh);
            }
            (state, message) => {
                let subcode = match state {
                    State::OpenSent => 1,
                    State::OpenConfirm => 2,
                    _ => 3,
                };
                self.fail(
                    DownReason::Sent(Notification::unexpected(subcode, type_code(&message))),
                    out,
                );
            }
        }
    }

    fn arm_timers(n: &Negotiated, out: &mut Vec<Action>) {
        if let (Some(hold), Some(ka)) = (n.hold, n.keepalive) {
            out.push(Action::StartTimer(Timer::Hold, hold));
            out.push(Action::StartTimer(Timer::Keepalive, ka));
        } else {
            out.push(Action::StopTimer(Timer::Hold));
            out.push(Action::StopTimer(Timer::Keepalive));
        }
    }

    fn restart_hold(&self, out: &mut Vec<Action>) {
        if let Some(hold) = self.negotiated.as_ref().and_then(|n| n.hold) {
            out.push(Action::StartTimer(Timer::Hold, hold));
        }
    }

    /// Sends the NOTIFICATION in `reason` and drops the session.
    fn fail(&mut self, reason: DownReason, out: &mut Vec<Action>) {
        if let DownReason::Sent(n) = &reason {
            out.push(Action::Send(n.to_message()));
        }
        self.down(reason, out);
    }

    /// Closes the connection, reports why and schedules the next attempt.
    fn down(&mut self, reason: DownReason, out: &mut Vec<Action>) {
        // RFC 4724 §4.2: only a connection lost without a NOTIFICATION keeps
        // the routes (RFC 8538's notification support is not negotiated).
        let graceful =
            matches!(reason, DownReason::ConnectionLost) && self.state == State::Established;
        let retain = self
            .negotiated
            .as_ref()
            .and_then(|n| n.peer_restart)
            .filter(|r| graceful && r.forwarding_preserved)
            .map(|r| r.restart_time);
        out.push(Action::Close);
        out.push(Action::StopTimer(Timer::Hold));
        out.push(Action::StopTimer(Timer::Keepalive));
        out.push(Action::Down(Down { reason, retain }));
        self.state = State::Idle;
        self.negotiated = None;
        self.schedule_retry(out);
    }

    fn schedule_retry(&mut self, out: &mut Vec<Action>) {
        if self.started {
            out.push(Action::StartTimer(
                Timer::ConnectRetry,
                self.backoff.failed(),
            ));
        }
    }
}

/// The message type octet (RFC 4271 §4.1), the data of an FSM error.
fn type_code(message: &BgpMessage) -> u8 {
    match message {
        BgpMessage::Open(_) => 1,
        BgpMessage::Update(_) => 2,
        BgpMessage::Notification(_) => 3,
        BgpMessage::KeepAlive => 4,
        BgpMessage::RouteRefresh(_) => 5,
    }
}

#[cfg(test)]
mod tests;
