//! Interrupting a lab job at a chosen point of its progress output, as an
//! operator's Ctrl-C would.

use std::io;
use std::time::{Duration, Instant};

/// Reads `lines` until one satisfies `reached`; panics naming `what` if the
/// output ends first or `limit` passes.
pub fn wait_for_line(
    lines: &mut impl Iterator<Item = io::Result<String>>,
    reached: impl Fn(&str) -> bool,
    limit: Duration,
    what: &str,
) {
    let started = Instant::now();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("output ended before {what}"))
            .unwrap();
        if reached(&line) {
            return;
        }
        assert!(started.elapsed() < limit, "never reached {what}");
    }
}

/// Sends SIGINT to process `pid` (a child of the test).
pub fn sigint(pid: u32) {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGINT) };
}
