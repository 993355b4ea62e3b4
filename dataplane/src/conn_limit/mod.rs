//! Accepting connections under a cap, for every listener an outsider can
//! reach (`/metrics`, the admin API, the control listener).
//!
//! - **Cap**: at most [`Limits::max_conns`] live connections. When a new one
//!   arrives at the cap, the connection that has waited longest without a
//!   complete request (idle or slow) is closed to make room; if every slot is
//!   busy serving, the new one is closed at once. So a client holding
//!   thousands of idle connections cannot keep a fresh request (a Prometheus
//!   scrape, `vlnet ctl status`) out: the newcomer is the last in line for
//!   eviction, and it is busy as soon as its request is in.
//! - **Timeouts**: a connection waiting for the first byte of a request is
//!   closed after [`Limits::idle_timeout`]; one whose request has begun, if it
//!   is not complete within [`Limits::read_timeout`] of its first byte.
//!   Serving has no timeout here (the handler bounds its own writes).
//! - **Accept errors** (`EMFILE`, `ENFILE`, `ENOBUFS`, …) pause the loop, 10 ms
//!   doubling to 1 s and back to 10 ms after a success, instead of spinning.
//! - **Logging**: evictions, refusals and accept errors are logged at most
//!   once per [`LOG_PERIOD`] per kind, with the count left out.
//!
//! The handler marks the request phase: the stream it gets ([`Tracked`])
//! notices the first byte; [`Conn::busy`] marks a complete request until its
//! guard drops. [`serve`] is the whole accept loop; [`ConnLimit::admit`],
//! [`ConnLimit::accept_failed`], [`Conn::closed`] and [`Backoff`] are its
//! parts, for a loop of one's own.
//!
//! # Layout
//! - [`table`]: the pure part: slots, phases, eviction order, deadlines.
//! - [`backoff`]: the pause after a failed `accept`.
//! - `tracked`: the stream wrapper that notices a request's first byte.

pub mod backoff;
pub mod table;
mod tracked;

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Notify;
use tracing::{debug, warn, Instrument as _};

pub use backoff::Backoff;
pub use table::Phase;
use table::{Admission, Status, Table};
pub use tracked::Tracked;

use crate::log_limit::{LogLimiter, Verdict};

/// How often each kind of event (eviction, refusal, an accept error by
/// errno) may be logged per listener.
pub const LOG_PERIOD: Duration = Duration::from_secs(10);

/// The bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Live connections at most.
    pub max_conns: usize,
    /// How long a connection may wait for the first byte of a request
    /// (after its accept, or between keep-alive requests).
    pub idle_timeout: Duration,
    /// How long a request may take to arrive whole, from its first byte.
    pub read_timeout: Duration,
}

/// A listener whose accepted connections [`serve`] can limit: tokio's TCP
/// and Unix listeners.
pub trait Listener: Send + Sync + 'static {
    /// An accepted connection.
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// The peer's address.
    type Addr: Send + 'static;
    /// Polls for the next connection (as `TcpListener::poll_accept`).
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, Self::Addr)>>;
}

impl Listener for TcpListener {
    type Stream = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, Self::Addr)>> {
        TcpListener::poll_accept(self, cx)
    }
}

impl Listener for UnixListener {
    type Stream = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, Self::Addr)>> {
        UnixListener::poll_accept(self, cx)
    }
}

/// Accepts connections on `listener` under `limit` until the task running
/// this is dropped. Each admitted connection runs `handler` in a task of its
/// own, which ends (closing the stream) when the handler returns, the
/// connection times out, or it is evicted.
pub async fn serve<L, H, F>(listener: L, limit: Arc<ConnLimit>, handler: H)
where
    L: Listener,
    H: Fn(Tracked<L::Stream>, L::Addr, Conn) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut backoff = Backoff::default();
    loop {
        let (stream, addr) = match std::future::poll_fn(|cx| listener.poll_accept(cx)).await {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(e) => {
                let pause = backoff.failed();
                limit.accept_failed(&e, pause);
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        // Refused: dropping the stream closes it.
        let Some(lease) = limit.admit() else {
            continue;
        };
        let conn = lease.conn().clone();
        let serving = handler(Tracked::new(stream, conn.clone()), addr, conn.clone());
        tokio::spawn(
            async move {
                let _lease = lease;
                tokio::select! {
                    () = serving => {}
                    () = conn.closed() => {}
                }
            }
            .in_current_span(),
        );
    }
}

/// What is logged about a listener, each kind rate-limited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Event {
    /// `accept` failed with this errno (or a non-OS error).
    AcceptFailed(Option<i32>),
    /// A connection was closed to make room.
    Evicted,
    /// A new connection was closed: every slot was busy.
    Refused,
}

/// Kinds of [`Event`]s a listener can see many of (errnos included).
const LOG_KEYS: usize = 32;

/// One connection's side of the table: how to wake its watcher, and whether
/// it waits for the first byte of a request.
#[derive(Debug)]
struct Shared {
    wake: Notify,
    awaiting_request: AtomicBool,
}

/// The live connections of one listener under its [`Limits`].
#[derive(Debug)]
pub struct ConnLimit {
    name: &'static str,
    limits: Limits,
    table: Mutex<Table<Arc<Shared>>>,
    log: Mutex<LogLimiter<Event>>,
}

impl ConnLimit {
    /// A cap for the listener `name` (as log lines call it).
    #[must_use]
    pub fn new(name: &'static str, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            name,
            limits,
            table: Mutex::new(Table::new(limits)),
            log: Mutex::new(LogLimiter::new(LOG_PERIOD, LOG_KEYS)),
        })
    }

    /// Live connections.
    #[must_use]
    pub fn live(&self) -> usize {
        self.table().len()
    }

    /// Admits a new connection, closing the one idle the longest if the cap
    /// is reached; `None` if every slot is busy (close the new one). The
    /// connection holds its slot until the [`Lease`] drops.
    #[must_use]
    pub fn admit(self: &Arc<Self>) -> Option<Lease> {
        let shared = Arc::new(Shared {
            wake: Notify::new(),
            awaiting_request: AtomicBool::new(true),
        });
        let admission = self.table().admit(Arc::clone(&shared), Instant::now());
        match admission {
            Admission::Admitted { id, evicted } => {
                if let Some(evicted) = evicted {
                    evicted.wake.notify_waiters();
                    self.log(Event::Evicted, |suppressed| {
                        warn!(
                            listener = self.name,
                            max_connections = self.limits.max_conns,
                            suppressed,
                            "connection cap reached: closed the connection that waited longest \
                             for a request to make room"
                        );
                    });
                }
                Some(Lease {
                    conn: Conn {
                        limit: Arc::clone(self),
                        id,
                        shared,
                    },
                })
            }
            Admission::Refused => {
                self.log(Event::Refused, |suppressed| {
                    warn!(
                        listener = self.name,
                        max_connections = self.limits.max_conns,
                        suppressed,
                        "connection cap reached with every connection busy: closed a new one"
                    );
                });
                None
            }
        }
    }

    /// Logs (rate-limited) that `accept` failed with `error` and the loop
    /// pauses for `pause`.
    pub fn accept_failed(&self, error: &io::Error, pause: Duration) {
        self.log(Event::AcceptFailed(error.raw_os_error()), |suppressed| {
            warn!(
                listener = self.name,
                %error,
                pause_ms = pause.as_millis(),
                suppressed,
                "accept failed; pausing before the next attempt"
            );
        });
    }

    fn table(&self) -> MutexGuard<'_, Table<Arc<Shared>>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log(&self, event: Event, line: impl FnOnce(u64)) {
        let verdict = self
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(event, Instant::now());
        if let Verdict::Log { suppressed } = verdict {
            line(suppressed);
        }
    }
}

/// A connection's slot: held by its task, freed when dropped.
#[derive(Debug)]
pub struct Lease {
    conn: Conn,
}

impl Lease {
    /// The connection, to mark it busy or wait for it to be closed.
    #[must_use]
    pub fn conn(&self) -> &Conn {
        &self.conn
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.conn.limit.table().remove(self.conn.id);
    }
}

/// One admitted connection, as its handler sees it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Conn {
    limit: Arc<ConnLimit>,
    id: u64,
    shared: Arc<Shared>,
}

impl Conn {
    /// Marks a complete request (or a session that began with one): the
    /// connection is busy, never evicted or timed out, until the guard
    /// drops; then it waits for its next request, at the back of the
    /// eviction order.
    #[must_use]
    pub fn busy(&self) -> BusyGuard {
        self.set_phase(Phase::Busy);
        BusyGuard { conn: self.clone() }
    }

    /// Resolves when the connection must close: it was evicted, or it timed
    /// out (it is then removed from the table).
    pub async fn closed(&self) {
        loop {
            let mut notified = pin!(self.shared.wake.notified());
            notified.as_mut().enable();
            let deadline = {
                let mut table = self.limit.table();
                match table.status(self.id) {
                    Status::Gone => return,
                    Status::Busy => None,
                    Status::Until(deadline) if Instant::now() >= deadline => {
                        table.remove(self.id);
                        debug!(
                            listener = self.limit.name,
                            "closed a connection that timed out"
                        );
                        return;
                    }
                    Status::Until(deadline) => Some(deadline),
                }
            };
            match deadline {
                None => notified.await,
                Some(deadline) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(deadline.into()) => {}
                    }
                }
            }
        }
    }

    /// Called by [`Tracked`] when bytes arrive: the first ones of a request
    /// start its read timeout.
    fn bytes_arrived(&self) {
        if self.shared.awaiting_request.swap(false, Ordering::AcqRel) {
            let mut table = self.limit.table();
            if table.is_in(self.id, Phase::Idle) {
                table.set_phase(self.id, Phase::Reading, Instant::now());
                drop(table);
                self.shared.wake.notify_waiters();
            }
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.limit.table().set_phase(self.id, phase, Instant::now());
        self.shared.wake.notify_waiters();
    }
}

/// A connection busy serving a request; it waits for the next one when this
/// drops.
#[derive(Debug)]
pub struct BusyGuard {
    conn: Conn,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.conn
            .shared
            .awaiting_request
            .store(true, Ordering::Release);
        self.conn.set_phase(Phase::Idle);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    const LIMITS: Limits = Limits {
        max_conns: 2,
        idle_timeout: Duration::from_millis(600),
        read_timeout: Duration::from_millis(300),
    };

    /// A line server: each line read is answered with `ok\n`; a line
    /// `hold\n` keeps the connection busy until the client closes it.
    async fn line_server(limits: Limits) -> (std::net::SocketAddr, Arc<ConnLimit>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limit = ConnLimit::new("test", limits);
        tokio::spawn(serve(
            listener,
            Arc::clone(&limit),
            |stream, _, conn| async move {
                let mut stream = tokio::io::BufReader::new(stream);
                let mut line = String::new();
                loop {
                    line.clear();
                    match tokio::io::AsyncBufReadExt::read_line(&mut stream, &mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let busy = conn.busy();
                    if line == "hold\n" {
                        let _ = stream.write_all(b"holding\n").await;
                        let _ = stream.read_to_end(&mut Vec::new()).await;
                        return;
                    }
                    let _ = stream.write_all(b"ok\n").await;
                    drop(busy);
                }
            },
        ));
        (addr, limit)
    }

    /// Sends `line` and reads one answer line; `None` if the server closed.
    async fn ask(stream: &mut TcpStream, line: &[u8]) -> Option<String> {
        stream.write_all(line).await.ok()?;
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while stream.read(&mut byte).await.ok()? == 1 {
            answer.push(byte[0]);
            if byte[0] == b'\n' {
                return String::from_utf8(answer).ok();
            }
        }
        None
    }

    /// Whether the server closed `stream` (EOF or reset) within `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 16];
        matches!(
            tokio::time::timeout(within, stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    /// How many of `streams` the server has closed (EOF or reset within
    /// half a second).
    pub(crate) async fn closed_count<S: AsyncRead + Unpin>(streams: Vec<S>) -> usize {
        let closed = streams.into_iter().map(|mut s| async move {
            let mut buf = [0u8; 16];
            matches!(
                tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await,
                Ok(Ok(0) | Err(_))
            )
        });
        futures::future::join_all(closed)
            .await
            .into_iter()
            .filter(|&c| c)
            .count()
    }

    async fn live_becomes(limit: &ConnLimit, n: usize) {
        for _ in 0..100 {
            if limit.live() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} live connections, expected {n}", limit.live());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_newcomer_evicts_the_connection_idle_longest() {
        let (addr, limit) = line_server(LIMITS).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        live_becomes(&limit, 1).await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        live_becomes(&limit, 2).await;
        // The first one served a request, so it now waits behind the second.
        assert_eq!(ask(&mut first, b"hi\n").await.as_deref(), Some("ok\n"));
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert_eq!(ask(&mut third, b"hi\n").await.as_deref(), Some("ok\n"));
        assert!(
            closed_within(&mut second, Duration::from_millis(200)).await,
            "the connection that waited longest is closed"
        );
        assert_eq!(ask(&mut first, b"again\n").await.as_deref(), Some("ok\n"));
        assert_eq!(limit.live(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_every_slot_busy_the_newcomer_is_closed() {
        let (addr, limit) = line_server(LIMITS).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            assert_eq!(
                ask(&mut stream, b"hold\n").await.as_deref(),
                Some("holding\n")
            );
            held.push(stream);
        }
        let mut late = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut late, Duration::from_millis(200)).await);
        assert_eq!(limit.live(), 2);
        // Busy connections have no timeout.
        tokio::time::sleep(LIMITS.idle_timeout + LIMITS.read_timeout).await;
        assert_eq!(limit.live(), 2);
        // One closes: the next newcomer gets its slot.
        held.pop();
        live_becomes(&limit, 1).await;
        let mut next = TcpStream::connect(addr).await.unwrap();
        assert_eq!(ask(&mut next, b"hi\n").await.as_deref(), Some("ok\n"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_and_slow_connections_time_out() {
        let (addr, limit) = line_server(LIMITS).await;
        // Idle: no byte at all. Closed after the idle timeout, not before.
        // The clock starts before the connect, so no earlier than the
        // server's (which starts at accept, maybe before this task runs on).
        let start = Instant::now();
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert!(!closed_within(&mut idle, LIMITS.idle_timeout / 2).await);
        assert!(closed_within(&mut idle, LIMITS.idle_timeout).await);
        let waited = start.elapsed();
        assert!(waited >= LIMITS.idle_timeout, "{waited:?}");
        // Slow: half a request. Closed after the read timeout.
        let start = Instant::now();
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"half a li").await.unwrap();
        assert!(closed_within(&mut slow, LIMITS.idle_timeout).await);
        let waited = start.elapsed();
        assert!(
            waited >= LIMITS.read_timeout && waited < LIMITS.idle_timeout,
            "{waited:?}"
        );
        // A connection between requests gets a fresh idle timeout.
        let mut keep = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(LIMITS.idle_timeout / 2).await;
        assert_eq!(ask(&mut keep, b"hi\n").await.as_deref(), Some("ok\n"));
        tokio::time::sleep(LIMITS.idle_timeout / 2).await;
        assert_eq!(ask(&mut keep, b"hi\n").await.as_deref(), Some("ok\n"));
        live_becomes(&limit, 1).await;
    }

    /// A listener out of descriptors: every accept fails with `EMFILE`.
    struct Exhausted {
        attempts: Arc<AtomicUsize>,
    }

    impl Listener for Exhausted {
        type Stream = TcpStream;
        type Addr = ();
        fn poll_accept(&self, _: &mut Context<'_>) -> Poll<io::Result<(TcpStream, ())>> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            Poll::Ready(Err(io::Error::from_raw_os_error(libc::EMFILE)))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn accept_errors_back_off_instead_of_spinning() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let listener = Exhausted {
            attempts: Arc::clone(&attempts),
        };
        let limit = ConnLimit::new("exhausted", LIMITS);
        let server = tokio::spawn(serve(listener, limit, |_, (), _| async {}));
        // Pauses of 10, 20, 40, 80, 160, 320 ms: attempts at 0, 10, 30, 70,
        // 150, 310 and 630 ms.
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.abort();
        let n = attempts.load(Ordering::SeqCst);
        assert!((5..=7).contains(&n), "{n} accept attempts in 500 ms");
    }
}
