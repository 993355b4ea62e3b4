//! Pings running in the background while a test acts. The thread holds a
//! handle on the pinging namespace; a test that fails mid-way must not
//! leave it running past the test (the namespace would then outlive the
//! process): dropping [`Background`] waits for the pings to end.

use std::net::Ipv4Addr;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use vlnet_lab::primitives::probe::{self, PingReport};
use vlnet_lab::NetNs;

/// `count` pings from `ns` to `dst` every `interval`, in a thread.
pub struct Background(Option<JoinHandle<PingReport>>);

impl Background {
    /// Starts the pings.
    pub fn start(ns: &NetNs, dst: Ipv4Addr, count: u32, interval: Duration) -> Self {
        let ns = ns.clone();
        Self(Some(thread::spawn(move || {
            probe::ping(&ns, dst, count, interval).unwrap()
        })))
    }

    /// Waits for the pings to end; their report.
    pub fn finish(mut self) -> PingReport {
        self.0.take().unwrap().join().unwrap()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(pings) = self.0.take() {
            let _ = pings.join();
        }
    }
}
