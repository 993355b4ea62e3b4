//! MAC moves as the data plane sees them: the programs report each move
//! through the `vlnet_events` ring buffer the moment they update the FDB; the
//! daemon keeps the latest ones for `vlnet ctl moves` and counts them for
//! `/metrics`. For a MAC that moved here the programs also report the first
//! frame that reaches it from another VTEP: the time from the announce to
//! that frame is the path switch as this node sees it
//! (`vlnet_path_switch_seconds`). A MAC that sends its first broadcast here
//! (a VM that came up, or moved here after its old entry went) is not a
//! move: it is counted, and the daemon reads its bridges at once.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

use aya::maps::{MapData, RingBuf};
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use vlnet_ebpf::abi::{
    vlnet_mac_event, VLNET_MOVE_ARRIVED, VLNET_MOVE_DELIVERED, VLNET_MOVE_LOCAL,
};

use crate::fdb::monotonic_ns;
use crate::mac::MacAddr;

/// Moves kept for `vlnet ctl moves`.
pub const HISTORY: usize = 256;

/// Where a move took a MAC, as the data plane saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MoveKind {
    /// A frame from the MAC arrived from another VTEP than its entry named:
    /// the entry now points there.
    Remote,
    /// A frame from the MAC entered this node's overlay port while its entry
    /// named a remote VTEP: it lives here now (a VM migrated in).
    Local,
    /// The first frame for a MAC that moved here arrived from `from`.
    Delivered,
}

/// Upper bounds of the path-switch histogram, seconds.
pub const SWITCH_BUCKETS: [f64; 10] =
    [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// One move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRecord {
    /// When the frame was seen, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The same instant on `CLOCK_MONOTONIC`, ns (comparable between nodes
    /// on one machine, e.g. in `vlnet lab`: the path switch is a bystander's
    /// `remote` move minus the new host's `local` one).
    pub monotonic_ns: u64,
    /// The VNI.
    pub vni: u32,
    /// The MAC.
    pub mac: MacAddr,
    /// The VTEP it was behind.
    pub from: Ipv4Addr,
    /// The VTEP it is behind now; `None`: this node.
    pub to: Option<Ipv4Addr>,
    /// What kind of move.
    pub kind: MoveKind,
    /// For [`MoveKind::Delivered`]: µs from the move here to this frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_switch_us: Option<u64>,
}

impl MoveRecord {
    /// The record of a kernel event seen at `event.ts_ns` (monotonic), given
    /// the monotonic and wall clocks read now.
    #[must_use]
    pub fn from_event(event: &vlnet_mac_event, mono_now_ns: u64, unix_now_ms: u64) -> Self {
        let age_ms = mono_now_ns.saturating_sub(event.ts_ns) / 1_000_000;
        let ip = |be: u32| Ipv4Addr::from(u32::from_be(be));
        let kind = match u32::from(event.kind) {
            VLNET_MOVE_LOCAL => MoveKind::Local,
            VLNET_MOVE_DELIVERED => MoveKind::Delivered,
            _ => MoveKind::Remote,
        };
        Self {
            at_unix_ms: unix_now_ms.saturating_sub(age_ms),
            monotonic_ns: event.ts_ns,
            vni: event.vni,
            mac: MacAddr(event.mac),
            from: ip(event.old_vtep_be),
            to: (kind == MoveKind::Remote).then(|| ip(event.new_vtep_be)),
            kind,
            path_switch_us: None,
        }
    }
}

/// The latest moves, how many of each kind were seen, and the path-switch
/// times.
#[derive(Debug, Default)]
pub struct MoveLog {
    records: VecDeque<MoveRecord>,
    counts: MoveCounts,
    switches: SwitchHistogram,
}

/// Moves counted since the daemon started, and first broadcasts of MACs
/// new here.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MoveCounts {
    /// [`MoveKind::Remote`] moves.
    pub remote: u64,
    /// [`MoveKind::Local`] moves.
    pub local: u64,
    /// MACs that sent their first broadcast here.
    pub arrived: u64,
}

/// Path-switch times in [`SWITCH_BUCKETS`] (cumulative, as Prometheus
/// histograms count).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SwitchHistogram {
    /// Observations at or below each bound of [`SWITCH_BUCKETS`].
    pub buckets: [u64; SWITCH_BUCKETS.len()],
    /// Sum of the observations, seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl SwitchHistogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, n) in SWITCH_BUCKETS.iter().zip(&mut self.buckets) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

impl MoveLog {
    /// Records a move, forgetting the oldest beyond [`HISTORY`]; a delivery
    /// is timed against the latest move of its MAC here.
    pub fn push(&mut self, mut record: MoveRecord) {
        match record.kind {
            MoveKind::Remote => self.counts.remote += 1,
            MoveKind::Local => self.counts.local += 1,
            MoveKind::Delivered => {
                let arrived = self.records.iter().rev().find(|r| {
                    r.kind == MoveKind::Local && r.vni == record.vni && r.mac == record.mac
                });
                if let Some(arrived) = arrived {
                    let ns = record.monotonic_ns.saturating_sub(arrived.monotonic_ns);
                    record.path_switch_us = Some(ns / 1_000);
                    self.switches
                        .observe(std::time::Duration::from_nanos(ns).as_secs_f64());
                }
            }
        }
        if self.records.len() == HISTORY {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    /// The kept moves, oldest first.
    #[must_use]
    pub fn records(&self) -> Vec<MoveRecord> {
        self.records.iter().cloned().collect()
    }

    /// Counts a MAC's first broadcast here.
    pub fn arrived(&mut self) {
        self.counts.arrived += 1;
    }

    /// What was counted since the daemon started.
    #[must_use]
    pub fn counts(&self) -> MoveCounts {
        self.counts
    }

    /// The path-switch times observed.
    #[must_use]
    pub fn switches(&self) -> &SwitchHistogram {
        &self.switches
    }
}

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads the ring buffer forever, handing every move to `sink` and calling
/// `arrived` with the VNI and MAC of every first broadcast of a MAC new here.
pub async fn watch(
    ring: RingBuf<MapData>,
    mut sink: impl FnMut(MoveRecord),
    mut arrived: impl FnMut(u32, MacAddr),
) {
    // SAFETY: the ring buffer owns its map's file descriptor, open and
    // unchanged for as long as the RingBuf lives (moved into the AsyncFd).
    let registered = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "MAC move events unavailable");
            return;
        }
    };
    loop {
        let Ok(mut guard) = fd.readable_mut().await else {
            return;
        };
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if let Some(event) = vlnet_ebpf::mac_event(&item) {
                if u32::from(event.kind) == VLNET_MOVE_ARRIVED {
                    arrived(event.vni, MacAddr(event.mac));
                    continue;
                }
                sink(MoveRecord::from_event(
                    &event,
                    monotonic_ns(),
                    unix_now_ms(),
                ));
            }
        }
        guard.clear_ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vlnet_ebpf::abi::VLNET_MOVE_REMOTE;

    fn event(kind: u32) -> vlnet_mac_event {
        vlnet_mac_event {
            ts_ns: 5_000_000_000,
            vni: 100,
            old_vtep_be: u32::from(Ipv4Addr::new(198, 18, 0, 1)).to_be(),
            new_vtep_be: u32::from(Ipv4Addr::new(198, 18, 0, 2)).to_be(),
            mac: [2, 0, 0, 0, 0, 1],
            kind: kind as u8,
            pad: 0,
        }
    }

    #[test]
    fn events_become_records_on_the_wall_clock() {
        let r = MoveRecord::from_event(&event(VLNET_MOVE_REMOTE), 6_000_000_000, 1_000_000);
        assert_eq!(r.at_unix_ms, 999_000);
        assert_eq!(r.from, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(r.to, Some(Ipv4Addr::new(198, 18, 0, 2)));
        assert_eq!(r.kind, MoveKind::Remote);
        let r = MoveRecord::from_event(&event(VLNET_MOVE_LOCAL), 6_000_000_000, 1_000_000);
        assert_eq!((r.to, r.kind), (None, MoveKind::Local));
    }

    #[test]
    fn a_delivery_times_the_path_switch() {
        let mut log = MoveLog::default();
        let mut local = MoveRecord::from_event(&event(VLNET_MOVE_LOCAL), 0, 0);
        local.monotonic_ns = 1_000_000;
        log.push(local);
        let mut delivered = MoveRecord::from_event(&event(VLNET_MOVE_DELIVERED), 0, 0);
        delivered.monotonic_ns = 4_000_000;
        assert_eq!(delivered.kind, MoveKind::Delivered);
        log.push(delivered);
        let last = log.records().pop().unwrap();
        assert_eq!(last.path_switch_us, Some(3_000));
        let h = log.switches();
        assert_eq!(h.count, 1);
        assert_eq!(
            h.buckets[..4],
            [0, 0, 0, 1],
            "3 ms falls in the 5 ms bucket"
        );
        assert_eq!(*h.buckets.last().unwrap(), 1);
    }

    #[test]
    fn the_log_keeps_the_latest_and_counts_all() {
        let mut log = MoveLog::default();
        let r = MoveRecord::from_event(&event(VLNET_MOVE_REMOTE), 0, 0);
        for _ in 0..HISTORY + 5 {
            log.push(r.clone());
        }
        log.push(MoveRecord::from_event(&event(VLNET_MOVE_LOCAL), 0, 0));
        assert_eq!(log.records().len(), HISTORY);
        assert_eq!(
            log.counts(),
            MoveCounts {
                remote: HISTORY as u64 + 5,
                local: 1,
                arrived: 0
            }
        );
        assert_eq!(log.records().last().unwrap().kind, MoveKind::Local);
    }
}
