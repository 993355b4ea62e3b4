//! The I/O edge: one task per neighbor that carries a [`Session`] over TCP
//! (port 179 in production), runs its timers, splits the byte stream into
//! messages, and reports what the session says ([`Report`]) to the task
//! that owns the routes, which in turn sends UPDATEs through it
//! ([`Command`]). All decisions are the session's; this file only moves
//! bytes and time.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::BgpMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::codec;
use super::notification::Notification;
use super::open::Negotiated;
use super::session::{Action, Down, Event, Session, State, Timer};

/// How long one write may take before the connection counts as dead.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the session tells the route owner.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// The session is up: send the local routes, then End-of-RIB.
    Established(Negotiated),
    /// The peer sent routes.
    Update(BgpUpdateMessage),
    /// The peer asked for all our routes again.
    Refresh,
    /// The session went down (and will retry unless stopped).
    Down(Down),
}

/// What the route owner asks of the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Send a message (UPDATEs; dropped unless the session is established).
    Send(BgpMessage),
    /// Close the session with this NOTIFICATION; it retries after the
    /// back-off.
    Cease(Notification),
    /// Stop the session (Cease) and end the task.
    Stop,
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// The connection, timers and buffers of one session.
struct Shell {
    peer: SocketAddr,
    reader: Option<OwnedReadHalf>,
    writer: Option<OwnedWriteHalf>,
    connecting: Option<Connecting>,
    timers: HashMap<Timer, Instant>,
    buf: Vec<u8>,
    reports: mpsc::Sender<Report>,
}

/// Runs `session` towards `peer` until [`Command::Stop`], or until either
/// channel closes.
pub async fn run(
    peer: SocketAddr,
    mut session: Session,
    mut commands: mpsc::Receiver<Command>,
    reports: mpsc::Sender<Report>,
) {
    let mut shell = Shell {
        peer,
        reader: None,
        writer: None,
        connecting: None,
        timers: HashMap::new(),
        buf: Vec::new(),
        reports,
    };
    let mut chunk = vec![0u8; codec::MAX_MESSAGE_LEN];
    if !shell.step(&mut session, Event::Start).await {
        return;
    }
    loop {
        let deadline = shell.timers.values().min().copied();
        let event = tokio::select! {
            r = async {
                match shell.connecting.as_mut() {
                    Some(c) => c.await,
                    None => std::future::pending().await,
                }
            } => {
                shell.connecting = None;
                match r {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        let (r, w) = stream.into_split();
                        shell.reader = Some(r);
                        shell.writer = Some(w);
                        Owned::Event(OwnedEvent::TcpConnected)
                    }
                    Err(e) => {
                        tracing::debug!(peer = %shell.peer, error = %e, "BGP connect failed");
                        Owned::Event(OwnedEvent::TcpClosed)
                    }
                }
            }
            n = async {
                match shell.reader.as_mut() {
                    Some(r) => r.read(&mut chunk).await,
                    None => std::future::pending().await,
                }
            } => match n {
                Ok(0) | Err(_) => Owned::Event(OwnedEvent::TcpClosed),
                Ok(n) => Owned::Bytes(n),
            },
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                let due = shell.timers.iter().filter(|(_, at)| **at <= now).map(|(t, _)| *t).next();
                match due {
                    Some(t) => {
                        shell.timers.remove(&t);
                        Owned::Event(OwnedEvent::Timer(t))
                    }
                    None => continue,
                }
            }
            c = commands.recv() => match c {
                Some(Command::Send(m)) => Owned::Send(m),
                Some(Command::Cease(n)) => Owned::Cease(n),
                Some(Command::Stop) | None => Owned::Event(OwnedEvent::Stop),
            },
        };
        let alive = match event {
            Owned::Event(OwnedEvent::Stop) => {
                shell.step(&mut session, Event::Stop).await;
                return;
            }
            Owned::Event(e) => shell.step(&mut session, e.borrowed()).await,
            Owned::Cease(n) => shell.step(&mut session, Event::Cease(&n)).await,
            Owned::Bytes(n) => {
                shell.buf.extend_from_slice(&chunk[..n]);
                shell.frames(&mut session).await
            }
            Owned::Send(m) => {
                if session.state() == State::Established && !shell.write(&m).await {
                    shell.step(&mut session, Event::TcpClosed).await
                } else {
                    true
                }
            }
        };
        if !alive {
            return;
        }
    }
}

/// One wake-up of the loop.
enum Owned {
    Event(OwnedEvent),
    Bytes(usize),
    Send(BgpMessage),
    Cease(Notification),
}

/// The events that own no data.
#[derive(Clone, Copy)]
enum OwnedEvent {
    Stop,
    TcpConnected,
    TcpClosed,
    Timer(Timer),
}

impl OwnedEvent {
    fn borrowed(self) -> Event<'static> {
        match self {
            Self::Stop => Event::Stop,
            Self::TcpConnected => Event::TcpConnected,
            Self::TcpClosed => Event::TcpClosed,
            Self::Timer(t) => Event::Timer(t),
        }
    }
}

impl Shell {
    /// Feeds every whole message in the buffer to the session.
    async fn frames(&mut self, session: &mut Session) -> bool {
        loop {
            match codec::frame_len(&self.buf) {
                Ok(Some(len)) if self.buf.len() >= len => {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    if !self.step(session, Event::Frame(&frame)).await {
                        return false;
                    }
                    if self.reader.is_none() {
                        return true; // the session closed the connection
                    }
                }
                Ok(_) => return true,
                Err(n) => return self.step(session, Event::BadFrame(&n)).await,
            }
        }
    }

    /// Hands one event to the session and carries out its actions; a write
    /// that fails becomes a `TcpClosed`. False when the report channel is
    /// gone (nobody listens: the task ends).
    async fn step(&mut self, session: &mut Session, event: Event<'_>) -> bool {
        let mut actions = session.handle(event);
        loop {
            let mut failed = false;
            for a in actions {
                match a {
                    Action::Connect => {
                        self.connecting = Some(Box::pin(TcpStream::connect(self.peer)));
                    }
                    Action::Send(m) => {
                        if !failed && !self.write(&m).await {
                            failed = true;
                        }
                    }
                    Action::Close => {
                        self.reader = None;
                        self.writer = None;
                        self.connecting = None;
                        self.buf.clear();
                    }
                    Action::StartTimer(t, d) => {
                        self.timers.insert(t, Instant::now() + d);
                    }
                    Action::StopTimer(t) => {
                        self.timers.remove(&t);
                    }
                    Action::Established(n) => {
                        tracing::info!(peer = %self.peer, peer_id = %n.peer_id, "BGP session established");
                        if self.reports.send(Report::Established(n)).await.is_err() {
                            return false;
                        }
                    }
                    Action::Update(u) => {
                        if self.reports.send(Report::Update(u)).await.is_err() {
                            return false;
                        }
                    }
                    Action::Refresh => {
                        if self.reports.send(Report::Refresh).await.is_err() {
                            return false;
                        }
                    }
                    Action::Down(d) => {
                        tracing::warn!(peer = %self.peer, reason = ?d.reason, "BGP session down");
                        if self.reports.send(Report::Down(d)).await.is_err() {
                            return false;
                        }
                    }
                }
            }
            if !failed {
                return true;
            }
            actions = session.handle(Event::TcpClosed);
        }
    }

    /// Writes one message; false if there is no connection or it failed.
    async fn write(&mut self, m: &BgpMessage) -> bool {
        let Some(w) = self.writer.as_mut() else {
            return false;
        };
        let bytes = match codec::encode(m) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "BGP message not sent");
                return true;
            }
        };
        matches!(
            tokio::time::timeout(WRITE_TIMEOUT, w.write_all(&bytes)).await,
            Ok(Ok(()))
        )
    }
}

#[cfg(test)]
mod tests;
