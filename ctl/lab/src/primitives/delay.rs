//! [`DelayLine`]: an Ethernet link between two namespaces that holds every
//! frame for a set one-way delay — WAN latency for the lab.
//!
//! Why user space: this kernel has no `sch_netem` and loads no modules, so
//! `tc qdisc … netem delay` is not available. Each end of the line is a TAP
//! device in its namespace; one thread per direction reads frames from one
//! TAP, keeps them in a FIFO queue, and writes each to the other TAP when it
//! is due:
//!
//! ```text
//!   ns A: <a> (TAP) ─fd─▶ [A→B: hold one_way] ─fd─▶ <b> (TAP) :ns B
//!                   ◀─fd─ [B→A: hold one_way] ◀─fd─
//! ```
//!
//! It is layer 2 like a veth pair: ARP, VXLAN, WireGuard's UDP and TC/XDP
//! programs attached to either end see ordinary Ethernet frames. Unlike a
//! veth it has no offloads (the kernel segments and checksums every frame
//! before user space sees it, as on a real wire), and each frame costs a
//! read, a copy and a write: a few hundred Mbit/s, not Gbit/s.
//!
//! Timing: a frame is stamped on arrival with its due time (arrival + the
//! delay then in force, monotonic clock), and the thread sleeps in `ppoll`
//! with a nanosecond timeout until the head of its queue is due, so the
//! error does not accumulate and order is kept.
//!
//! The TAPs are not persistent: they exist as long as their file
//! descriptors, so they vanish when the line is dropped, and also when the
//! process dies without dropping it.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, PipeReader, PipeWriter, Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd as _, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::primitives::netns::{LabError, NetNs};
use crate::primitives::topology::check_ifname;

/// MTU of both TAPs unless [`DelayLine::with_mtu`] says otherwise.
pub const DEFAULT_MTU: u32 = 1500;
/// Frames one direction holds at most; further frames are dropped (and
/// counted) until it drains. 10 ms at 1 Gbit/s of full frames is ~830.
pub const QUEUE_LIMIT: usize = 4096;
/// The largest frame a TAP hands over: MTU 65535 + Ethernet 14 + VLAN tag 4.
const MAX_FRAME: usize = 65_535 + 14 + 4;
/// Frames read in one go before due frames are written again.
const READ_BATCH: usize = 64;

/// What one direction of a [`DelayLine`] has forwarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Frames written to the far TAP.
    pub frames: u64,
    /// Their bytes, Ethernet header included.
    pub bytes: u64,
    /// Frames lost: the queue was full ([`QUEUE_LIMIT`]) or the far TAP
    /// refused them (e.g. it was down).
    pub dropped: u64,
}

/// Both directions of a [`DelayLine`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DelayStats {
    /// From end `a` to end `b`.
    pub a_to_b: DirectionStats,
    /// From end `b` to end `a`.
    pub b_to_a: DirectionStats,
}

/// Two TAP devices, one per namespace, joined by forwarder threads that
/// delay every frame by the same one-way delay (the RTT is twice it).
///
/// Dropping it stops the threads and removes both TAPs. Addresses are the
/// caller's to set, as on a veth pair.
#[derive(Debug)]
pub struct DelayLine {
    delay: Arc<AtomicU64>,
    counters: [Arc<Counters>; 2],
    stop: Option<PipeWriter>,
    threads: Vec<JoinHandle<()>>,
}

impl DelayLine {
    /// A line between TAP `a.1` in namespace `a.0` and TAP `b.1` in `b.0`
    /// (names ≤ 15 characters, new in their namespace), both up with MTU
    /// [`DEFAULT_MTU`], delaying each direction by `one_way`.
    pub fn new(a: (&NetNs, &str), b: (&NetNs, &str), one_way: Duration) -> Result<Self, LabError> {
        Self::with_mtu(a, b, one_way, DEFAULT_MTU)
    }

    /// [`new`](Self::new) with both TAPs at `mtu`.
    pub fn with_mtu(
        a: (&NetNs, &str),
        b: (&NetNs, &str),
        one_way: Duration,
        mtu: u32,
    ) -> Result<Self, LabError> {
        let tap_a = Arc::new(create_tap(a, mtu)?);
        let tap_b = Arc::new(create_tap(b, mtu)?);
        let (stop_rx, stop_tx) = io::pipe().map_err(|e| LabError::io("creating a pipe", e))?;
        let mut line = Self {
            delay: Arc::new(AtomicU64::new(nanos(one_way))),
            counters: Default::default(),
            stop: Some(stop_tx),
            threads: Vec::with_capacity(2),
        };
        // From here on `line` owns the threads: a failure stops those started.
        let directions = [
            (&tap_a, &tap_b, format!("{}→{}", a.1, b.1), 0),
            (&tap_b, &tap_a, format!("{}→{}", b.1, a.1), 1),
        ];
        for (from, to, name, i) in directions {
            let direction = Direction {
                from: Arc::clone(from),
                to: Arc::clone(to),
                stop: stop_rx
                    .try_clone()
                    .map_err(|e| LabError::io("cloning a pipe", e))?,
                delay: Arc::clone(&line.delay),
                counters: Arc::clone(&line.counters[i]),
            };
            let thread = thread::Builder::new()
                .name(format!("delay {name}"))
                .spawn(move || {
                    if let Err(e) = direction.run() {
                        eprintln!("lab: delay line {name} stopped: {e}");
                    }
                })
                .map_err(|e| LabError::io("starting a delay-line thread", e))?;
            line.threads.push(thread);
        }
        Ok(line)
    }

    /// The one-way delay now in force.
    #[must_use]
    pub fn delay(&self) -> Duration {
        Duration::from_nanos(self.delay.load(Ordering::Relaxed))
    }

    /// Changes the one-way delay of both directions for frames that arrive
    /// from now on; frames already on the line keep theirs. Order is kept,
    /// so after a decrease new frames wait behind those in flight (at most
    /// the old delay).
    pub fn set_delay(&self, one_way: Duration) {
        self.delay.store(nanos(one_way), Ordering::Relaxed);
    }

    /// Frames and bytes forwarded (and dropped) so far, per direction.
    #[must_use]
    pub fn stats(&self) -> DelayStats {
        DelayStats {
            a_to_b: self.counters[0].snapshot(),
            b_to_a: self.counters[1].snapshot(),
        }
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        // Closing the only writer hangs the pipe up: every thread's ppoll
        // returns, the thread ends and drops its TAP descriptors.
        drop(self.stop.take());
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                eprintln!("lab: a delay-line thread panicked");
            }
        }
    }
}

/// `one_way` in nanoseconds, saturating (u64 holds 584 years).
fn nanos(one_way: Duration) -> u64 {
    u64::try_from(one_way.as_nanos()).unwrap_or(u64::MAX)
}

/// Creates TAP `ifname` in `ns`, sets its MTU and brings it up.
fn create_tap((ns, ifname): (&NetNs, &str), mtu: u32) -> Result<File, LabError> {
    check_ifname(ifname)?;
    let tap = ns
        .within(|| open_tuntap(ifname, libc::IFF_TAP))?
        .map_err(|e| LabError::io(format!("creating TAP {ifname} in {}", ns.name()), e))?;
    // On failure `tap` is closed and the device goes with it.
    ns.run(&["ip", "link", "set", ifname, "mtu", &mtu.to_string(), "up"])?;
    Ok(tap)
}

/// Opens `/dev/net/tun` (non-blocking) and attaches it to a new,
/// non-persistent TAP (`mode` `IFF_TAP`: reads and writes are bare Ethernet
/// frames) or TUN (`IFF_TUN`: bare IP packets) `ifname` (≤ 15 bytes),
/// without packet information. The device is created in the calling
/// thread's network namespace.
///
/// One ioctl by hand rather than a TUN/TAP crate: `libc` is already a
/// dependency and the project does the same for TUN in its tests, whereas
/// a crate would add dependencies for this single call (MTU and link state
/// are set with `ip`, like everything else in the lab).
pub(crate) fn open_tuntap(ifname: &str, mode: libc::c_int) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")?;
    // SAFETY: ifreq is plain data; all zeros is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // The name is at most 15 bytes, so the 16-byte field stays NUL-terminated.
    for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src.cast_signed();
    }
    req.ifr_ifru.ifru_flags = (mode | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which `req` is.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Counters of one direction, shared with its thread.
#[derive(Debug, Default)]
struct Counters {
    frames: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> DirectionStats {
        DirectionStats {
            frames: self.frames.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// A frame on the line and when it may leave.
struct Frame {
    due: Instant,
    data: Vec<u8>,
}

/// Why [`wait`] returned.
enum Wake {
    /// The stop pipe was hung up.
    Stop,
    /// The source TAP has frames (or an error, which the read reports).
    Input,
    /// The timeout passed (or a signal came).
    Timeout,
}

/// One direction: reads `from`, holds each frame, writes it to `to`.
struct Direction {
    from: Arc<File>,
    to: Arc<File>,
    stop: PipeReader,
    delay: Arc<AtomicU64>,
    counters: Arc<Counters>,
}

impl Direction {
    /// Forwards until the stop pipe hangs up (`Ok`) or the source TAP fails.
    fn run(self) -> io::Result<()> {
        let mut queue = VecDeque::new();
        // Buffers of written frames, reused so the steady state allocates nothing.
        let mut spare = Vec::new();
        let mut scratch = vec![0; MAX_FRAME];
        loop {
            while let Some(frame) = queue.pop_front_if(|f: &mut Frame| f.due <= Instant::now()) {
                self.deliver(&frame.data);
                spare.push(frame.data);
            }
            let timeout = queue
                .front()
                .map(|f| f.due.saturating_duration_since(Instant::now()));
            match wait(self.from.as_fd(), self.stop.as_fd(), timeout)? {
                Wake::Stop => return Ok(()),
                Wake::Input => self.receive(&mut queue, &mut spare, &mut scratch)?,
                Wake::Timeout => {}
            }
        }
    }

    /// Reads up to [`READ_BATCH`] frames into the queue, each due after the
    /// delay in force now.
    fn receive(
        &self,
        queue: &mut VecDeque<Frame>,
        spare: &mut Vec<Vec<u8>>,
        scratch: &mut [u8],
    ) -> io::Result<()> {
        for _ in 0..READ_BATCH {
            let len = match (&*self.from).read(scratch) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if queue.len() >= QUEUE_LIMIT {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let delay = Duration::from_nanos(self.delay.load(Ordering::Relaxed));
            let mut data = spare.pop().unwrap_or_default();
            data.clear();
            data.extend_from_slice(&scratch[..len]);
            queue.push_back(Frame {
                due: Instant::now() + delay,
                data,
            });
        }
        Ok(())
    }

    /// Writes one frame to the far TAP, counting it as sent or dropped.
    fn deliver(&self, frame: &[u8]) {
        if (&*self.to).write(frame).is_ok() {
            self.counters.frames.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes
                .fetch_add(frame.len() as u64, Ordering::Relaxed);
        } else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sleeps until `src` is readable, `stop` is hung up, or `timeout` (`None`:
/// no limit) has passed. `ppoll` rather than `poll`: its timeout has
/// nanosecond resolution, `poll`'s only milliseconds.
fn wait(src: BorrowedFd<'_>, stop: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<Wake> {
    let mut fds = [src, stop].map(|fd| libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    let timeout = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos()),
    });
    let timeout = timeout
        .as_ref()
        .map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: `fds` holds two pollfds for descriptors borrowed for this call;
    // `timeout` is null or points to a live timespec; no signal mask.
    let n = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, timeout, std::ptr::null()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(Wake::Timeout)
        } else {
            Err(e)
        };
    }
    Ok(if fds[1].revents != 0 {
        Wake::Stop
    } else if fds[0].revents != 0 {
        Wake::Input
    } else {
        Wake::Timeout
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_saturates() {
        assert_eq!(nanos(Duration::from_millis(10)), 10_000_000);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }

    #[test]
    fn wait_times_out_then_sees_the_stop_pipe_hang_up() {
        let (src, _src_tx) = io::pipe().unwrap();
        let (stop, stop_tx) = io::pipe().unwrap();
        let started = Instant::now();
        let due = Duration::from_millis(5);
        assert!(matches!(
            wait(src.as_fd(), stop.as_fd(), Some(due)),
            Ok(Wake::Timeout)
        ));
        let slept = started.elapsed();
        assert!(slept >= due, "{slept:?}");
        drop(stop_tx);
        assert!(matches!(
            wait(src.as_fd(), stop.as_fd(), None),
            Ok(Wake::Stop)
        ));
    }
}
