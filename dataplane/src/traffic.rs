//! Each local VM's traffic over a sliding window, the input of placement
//! advice ([`crate::advise`]): the kernel's flow table says how much crossed
//! the tunnels to which VTEP and at what RTT; the VM's bridge port counters
//! say how much it exchanged in total, so the difference stayed on this node.
//!
//! The daemon records a [`Snapshot`] every [`SAMPLE_EVERY`]; the traffic of
//! the window is the difference between a fresh snapshot and the oldest one
//! kept (at most [`WINDOW`] old).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::advise::{SiteTraffic, VmTraffic};
use crate::flows::{FlowId, FlowRecord};
use crate::mac::MacAddr;

/// Time between two recorded snapshots.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How far back the window reaches.
pub const WINDOW: Duration = Duration::from_mins(1);

/// A VM: its VNI and MAC.
pub type VmId = (u32, MacAddr);

/// One look at the node's traffic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// `CLOCK_MONOTONIC`, ns.
    pub at_ns: u64,
    /// Bytes both ways through each local VM's bridge port.
    pub ports: BTreeMap<VmId, u64>,
    /// Every tracked flow.
    pub flows: Vec<FlowRecord>,
}

/// Growth of a counter since `before` (a counter that went back restarted:
/// everything it holds is new).
fn growth(now: u64, before: Option<u64>) -> u64 {
    match before {
        Some(b) if b <= now => now - b,
        _ => now,
    }
}

/// The snapshots of the current window, oldest first.
#[derive(Debug, Default)]
pub struct TrafficHistory {
    snapshots: VecDeque<Snapshot>,
}

impl TrafficHistory {
    /// Keeps `snapshot`, forgetting those it makes older than the window
    /// (one at least [`WINDOW`] old stays as the window's start).
    pub fn record(&mut self, snapshot: Snapshot) {
        let horizon = snapshot.at_ns.saturating_sub(WINDOW.as_nanos() as u64);
        self.snapshots.push_back(snapshot);
        while self.snapshots.len() > 1 && self.snapshots[1].at_ns <= horizon {
            self.snapshots.pop_front();
        }
    }

    /// Each VM's traffic from the oldest snapshot to `now`, for VMs whose
    /// traffic crossed a tunnel in that time.
    #[must_use]
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_sign_loss,
        clippy::items_after_statements,
        reason = "weights and seconds; a weighted mean of RTTs is non-negative"
    )]
    pub fn vm_traffic(&self, now: &Snapshot) -> Vec<VmTraffic> {
        let empty = Snapshot::default();
        let base = self.snapshots.front().unwrap_or(&empty);
        let base_flows: BTreeMap<FlowId, u64> =
            base.flows.iter().map(|f| (f.id(), f.bytes())).collect();

        #[derive(Default)]
        struct Site {
            bytes: u64,
            flows: usize,
            rtt_weighted: f64,
            rtt_weight: f64,
        }
        let mut vms: BTreeMap<VmId, (BTreeSet<IpAddr>, BTreeMap<Ipv4Addr, Site>)> = BTreeMap::new();
        for f in &now.flows {
            let bytes = growth(f.bytes(), base_flows.get(&f.id()).copied());
            // Multicast towards this node (IPv6 neighbour discovery, ...)
            // has no VM as its local end.
            let Some(vtep) = f
                .remote_vtep
                .filter(|_| bytes > 0 && f.local_mac.is_unicast())
            else {
                continue;
            };
            let (ips, sites) = vms.entry((f.vni, f.local_mac)).or_default();
            ips.insert(f.local_ip);
            let site = sites.entry(vtep).or_default();
            site.bytes += bytes;
            site.flows += 1;
            if let Some(srtt) = f.srtt_ns {
                site.rtt_weighted += srtt as f64 * bytes as f64;
                site.rtt_weight += bytes as f64;
            }
        }

        let window_secs = now.at_ns.saturating_sub(base.at_ns) as f64 / 1e9;
        vms.into_iter()
            .map(|((vni, mac), (ips, sites))| {
                let mut sites: Vec<SiteTraffic> = sites
                    .into_iter()
                    .map(|(vtep, s)| SiteTraffic {
                        vtep,
                        bytes: s.bytes,
                        flows: s.flows,
                        flow_rtt_ns: (s.rtt_weight > 0.0)
                            .then(|| (s.rtt_weighted / s.rtt_weight) as u64),
                    })
                    .collect();
                sites.sort_by_key(|s| (std::cmp::Reverse(s.bytes), s.vtep));
                let remote: u64 = sites.iter().map(|s| s.bytes).sum();
                let local_bytes = now.ports.get(&(vni, mac)).map(|&port| {
                    growth(port, base.ports.get(&(vni, mac)).copied()).saturating_sub(remote)
                });
                VmTraffic {
                    vni,
                    mac,
                    ips: ips.into_iter().collect(),
                    local_bytes,
                    sites,
                    window_secs,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
    const CLOUD: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    fn mac() -> MacAddr {
        "02:00:00:00:00:01".parse().unwrap()
    }

    fn flow(remote: &str, vtep: Ipv4Addr, tx: u64, srtt_ms: u64) -> FlowRecord {
        FlowRecord {
            vni: 100,
            protocol: 6,
            local_ip: "192.0.2.10".parse().unwrap(),
            local_port: 5201,
            remote_ip: remote.parse().unwrap(),
            remote_port: 40000,
            local_mac: mac(),
            remote_vtep: Some(vtep),
            tx_packets: 1,
            tx_bytes: tx,
            rx_packets: 0,
            rx_bytes: 0,
            rtt_samples: 1,
            rtt_min_ns: Some(srtt_ms * 1_000_000),
            rtt_last_ns: Some(srtt_ms * 1_000_000),
            srtt_ns: Some(srtt_ms * 1_000_000),
            age_secs: 0.0,
            idle_secs: 0.0,
        }
    }

    fn snapshot(at: u64, port: u64, flows: Vec<FlowRecord>) -> Snapshot {
        Snapshot {
            at_ns: at * SEC,
            ports: BTreeMap::from([((100, mac()), port)]),
            flows,
        }
    }

    #[test]
    fn the_window_counts_growth_per_site_and_the_rest_as_local() {
        let mut h = TrafficHistory::default();
        h.record(snapshot(
            0,
            1_000,
            vec![flow("198.51.100.1", CLIENT, 500, 20)],
        ));
        let now = snapshot(
            10,
            11_000,
            vec![
                flow("198.51.100.1", CLIENT, 6_500, 20),
                flow("198.51.100.2", CLIENT, 1_000, 30),
                flow("198.51.100.3", CLOUD, 1_000, 1),
            ],
        );
        let vms = h.vm_traffic(&now);
        assert_eq!(vms.len(), 1);
        let vm = &vms[0];
        assert!((vm.window_secs - 10.0).abs() < 1e-9);
        assert_eq!(vm.sites[0].vtep, CLIENT);
        assert_eq!((vm.sites[0].bytes, vm.sites[0].flows), (7_000, 2));
        // Weighted by bytes: (6000 * 20 + 1000 * 30) / 7000 ms.
        assert_eq!(vm.sites[0].flow_rtt_ns, Some(21_428_571));
        assert_eq!((vm.sites[1].vtep, vm.sites[1].bytes), (CLOUD, 1_000));
        // Port grew 10000; 8000 of it crossed tunnels.
        assert_eq!(vm.local_bytes, Some(2_000));
    }

    #[test]
    fn idle_flooded_and_multicast_flows_are_left_out() {
        let mut h = TrafficHistory::default();
        h.record(snapshot(0, 0, vec![flow("198.51.100.1", CLIENT, 500, 20)]));
        let mut flooded = flow("198.51.100.9", CLIENT, 100, 20);
        flooded.remote_vtep = None;
        let mut multicast = flow("198.51.100.8", CLIENT, 100, 20);
        multicast.local_mac = "33:33:00:00:00:02".parse().unwrap();
        let now = snapshot(
            10,
            0,
            vec![flow("198.51.100.1", CLIENT, 500, 20), flooded, multicast],
        );
        assert!(h.vm_traffic(&now).is_empty());
    }

    #[test]
    fn old_snapshots_leave_the_window() {
        let mut h = TrafficHistory::default();
        for at in [0, 10, 20, 30, 40, 50, 60, 70] {
            h.record(snapshot(at, 0, vec![]));
        }
        assert_eq!(h.snapshots.front().unwrap().at_ns, 10 * SEC);
    }
}
