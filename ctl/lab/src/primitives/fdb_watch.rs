//! [`FdbWatch`]: when a vlnet node's FDB started placing one MAC behind a
//! given VTEP, read by polling the node's pinned `vlnet_fdb` map every
//! [`POLL`] on a thread of its own. A move through the data plane leaves a
//! record (`vlnet ctl moves`); one through a control plane (an EVPN route)
//! writes the map and leaves none: this sees both the same way, on the
//! monotonic clock the move records use.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aya::maps::{HashMap, Map, MapData};
use vlnet_dataplane::fdb::monotonic_ns;
use vlnet_dataplane::maps::fdb_key;
use vlnet_ebpf::abi::{vlnet_fdb_entry, vlnet_fdb_key};

use crate::primitives::daemon::Daemon;
use crate::primitives::netns::LabError;

/// How often the map is read.
pub const POLL: Duration = Duration::from_micros(250);

/// A thread watching one node's FDB entry for one MAC.
#[derive(Debug)]
pub struct FdbWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Option<u64>>>,
}

impl FdbWatch {
    /// Starts watching `daemon`'s entry for `mac` on `vni` until it names
    /// `vtep`, for at most `limit`. The entry must name another VTEP (or
    /// be absent) when the watch starts, or nothing is reported.
    pub fn start(
        daemon: &Daemon,
        vni: u32,
        mac: [u8; 6],
        vtep: Ipv4Addr,
        limit: Duration,
    ) -> Result<Self, LabError> {
        let map = open_fdb(&daemon.pin_dir().join("maps").join("vlnet_fdb"))?;
        let key = fdb_key(vni, mac);
        let want = u32::from(vtep).to_be();
        let names = move |e: Option<vlnet_fdb_entry>| e.is_some_and(|e| e.vtep_be == want);
        if names(map.get(&key, 0).ok()) {
            return Err(LabError::Invalid(format!(
                "node {}: {vni}/{mac:02x?} is behind {vtep} already",
                daemon.name()
            )));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline && !stopped.load(Ordering::Relaxed) {
                if names(map.get(&key, 0).ok()) {
                    return Some(monotonic_ns());
                }
                std::thread::sleep(POLL);
            }
            None
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Waits for the watch to end (the entry seen, or the limit passed):
    /// when (monotonic ns) the entry was first seen naming the VTEP, if it
    /// was.
    #[must_use]
    pub fn finish(mut self) -> Option<u64> {
        self.thread.take()?.join().ok().flatten()
    }
}

impl Drop for FdbWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The pinned FDB map at `path`.
fn open_fdb(path: &Path) -> Result<HashMap<MapData, vlnet_fdb_key, vlnet_fdb_entry>, LabError> {
    let data = MapData::from_pin(path)
        .map_err(|e| LabError::Invalid(format!("opening {}: {e}", path.display())))?;
    HashMap::try_from(Map::HashMap(data))
        .map_err(|e| LabError::Invalid(format!("{} is no FDB map: {e}", path.display())))
}
