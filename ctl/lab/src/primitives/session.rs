//! Probes that run across an event rather than for a set count:
//! [`PingSession`], a ping left running until it is stopped (to see what a
//! user sees during a live migration), and [`tcp_throughput`], a timed TCP
//! send to a sink that discards what it reads (the QEMU guest's busybox
//! `nc`, which has no iperf3).

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::process::Stdio;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::primitives::netns::{drain, ChildGuard, LabError, NetNs};
use crate::primitives::probe::{parse_ping, PingReport};

/// How long a stopped ping may take to print its summary.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// Connect, write and drain limits of [`tcp_throughput`].
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// What [`tcp_throughput`] writes at a time.
const CHUNK: usize = 64 * 1024;

/// `ping -n -i interval dst` running in a namespace until [`stop`](Self::stop).
#[derive(Debug)]
pub struct PingSession {
    guard: ChildGuard,
    stdout: JoinHandle<Vec<u8>>,
}

impl PingSession {
    /// Starts pinging `dst` from `ns` every `interval`.
    pub fn start(
        ns: &NetNs,
        dst: std::net::Ipv4Addr,
        interval: Duration,
    ) -> Result<Self, LabError> {
        let mut cmd = ns.cmd("ping");
        cmd.args(["-n", "-i"])
            .arg(format!("{:.3}", interval.as_secs_f64()))
            .arg(dst.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut guard = ChildGuard::spawn(&mut cmd)?;
        let stdout = drain(guard.child_mut().stdout.take());
        Ok(Self { guard, stdout })
    }

    /// Interrupts ping (SIGINT: it prints its summary) and reads its report.
    pub fn stop(mut self) -> Result<PingReport, LabError> {
        let pid = libc::pid_t::try_from(self.guard.id())
            .map_err(|_| LabError::Invalid("ping's pid does not fit pid_t".into()))?;
        // SAFETY: kill(2) on our own child, which the guard has not reaped.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let status = self.guard.wait_within(STOP_WAIT)?;
        let command = self.guard.command().to_owned();
        self.guard.kill();
        let out = self.stdout.join().unwrap_or_default();
        if status.is_none() {
            return Err(LabError::Timeout {
                command,
                after: STOP_WAIT,
            });
        }
        parse_ping(&String::from_utf8_lossy(&out))
    }
}

/// Sends zeros over one TCP connection from `ns` to `dst` for `duration`,
/// then closes its side and waits for the sink to close: bits/s over the
/// whole exchange, so data still buffered at the end is counted only once
/// it has been read.
pub fn tcp_throughput(ns: &NetNs, dst: SocketAddrV4, duration: Duration) -> Result<f64, LabError> {
    let send = move || -> std::io::Result<f64> {
        let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(dst), TCP_TIMEOUT)?;
        stream.set_write_timeout(Some(TCP_TIMEOUT))?;
        stream.set_read_timeout(Some(TCP_TIMEOUT))?;
        let chunk = vec![0u8; CHUNK];
        let started = Instant::now();
        let mut bytes = 0u64;
        while started.elapsed() < duration {
            stream.write_all(&chunk)?;
            bytes += CHUNK as u64;
        }
        stream.shutdown(Shutdown::Write)?;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest)?;
        #[allow(clippy::cast_precision_loss, reason = "bytes sent stay far below 2^52")]
        Ok(bytes as f64 * 8.0 / started.elapsed().as_secs_f64())
    };
    ns.within(send)?
        .map_err(|e| LabError::io(format!("TCP throughput to {dst} from {}", ns.name()), e))
}
