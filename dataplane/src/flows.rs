//! Inner flows as the kernel tracked them (`lib/flows.h`): turning map
//! entries into [`FlowRecord`]s, and choosing which ones `vlnet ctl flows`
//! shows.

use std::cmp::Reverse;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use vlnet_ebpf::abi::{
    vlnet_flow, vlnet_flow_key, vlnet_peer_key, vlnet_rtt_hist, VLNET_FAMILY_IPV6,
    VLNET_RTT_BUCKETS,
};

use crate::mac::MacAddr;

const NS_PER_SEC: f64 = 1e9;

/// One inner flow seen at this VTEP: "local" is the endpoint behind this
/// node, "remote" the one behind `remote_vtep`. Times are nanoseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// VXLAN network identifier.
    pub vni: u32,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 `ICMPv6`, ...).
    pub protocol: u8,
    /// The local endpoint's address.
    pub local_ip: IpAddr,
    /// Its port (the echo id for ICMP echo flows, else 0 for ICMP).
    pub local_port: u16,
    /// The remote endpoint's address.
    pub remote_ip: IpAddr,
    /// Its port.
    pub remote_port: u16,
    /// The local endpoint's MAC (the VM's).
    pub local_mac: MacAddr,
    /// The VTEP the remote endpoint is behind; `None` while only flooded.
    pub remote_vtep: Option<Ipv4Addr>,
    /// Packets local → remote.
    pub tx_packets: u64,
    /// Inner bytes local → remote.
    pub tx_bytes: u64,
    /// Packets remote → local.
    pub rx_packets: u64,
    /// Inner bytes remote → local.
    pub rx_bytes: u64,
    /// RTT samples taken (VTEP → remote endpoint → VTEP).
    pub rtt_samples: u64,
    /// Smallest RTT sample.
    pub rtt_min_ns: Option<u64>,
    /// Latest RTT sample.
    pub rtt_last_ns: Option<u64>,
    /// Smoothed RTT (weight 1/8 per sample, as TCP's SRTT).
    pub srtt_ns: Option<u64>,
    /// Seconds since the flow's first packet.
    pub age_secs: f64,
    /// Seconds since its last packet.
    pub idle_secs: f64,
}

impl FlowRecord {
    /// The record of a kernel entry, ages taken against `now_ns`
    /// (`CLOCK_MONOTONIC`, as `bpf_ktime_get_ns`).
    #[must_use]
    #[allow(clippy::cast_precision_loss, reason = "seconds for display")]
    pub fn from_kernel(key: &vlnet_flow_key, flow: &vlnet_flow, now_ns: u64) -> Self {
        let sampled = |ns: u64| (flow.rtt_samples > 0).then_some(ns);
        let secs_since = |ns: u64| now_ns.saturating_sub(ns) as f64 / NS_PER_SEC;
        Self {
            vni: key.vni,
            protocol: key.proto,
            local_ip: ip(key.family, key.local_ip),
            local_port: u16::from_be(key.local_port_be),
            remote_ip: ip(key.family, key.remote_ip),
            remote_port: u16::from_be(key.remote_port_be),
            local_mac: MacAddr(flow.local_mac),
            remote_vtep: (flow.remote_vtep_be != 0)
                .then(|| Ipv4Addr::from(u32::from_be(flow.remote_vtep_be))),
            tx_packets: flow.tx_packets,
            tx_bytes: flow.tx_bytes,
            rx_packets: flow.rx_packets,
            rx_bytes: flow.rx_bytes,
            rtt_samples: flow.rtt_samples,
            rtt_min_ns: sampled(flow.rtt_min_ns),
            rtt_last_ns: sampled(flow.rtt_last_ns),
            srtt_ns: sampled(flow.srtt_ns),
            age_secs: secs_since(flow.first_seen_ns),
            idle_secs: secs_since(flow.last_seen_ns),
        }
    }

    /// The flow's identity, as the kernel keys it: (VNI, protocol, local
    /// address and port, remote address and port).
    #[must_use]
    pub fn id(&self) -> FlowId {
        (
            self.vni,
            self.protocol,
            self.local_ip,
            self.local_port,
            self.remote_ip,
            self.remote_port,
        )
    }

    /// Bytes both ways.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.tx_bytes + self.rx_bytes
    }

    /// The protocol's name, or its number.
    #[must_use]
    pub fn protocol_name(&self) -> String {
        match self.protocol {
            1 => "icmp".to_owned(),
            6 => "tcp".to_owned(),
            17 => "udp".to_owned(),
            58 => "icmpv6".to_owned(),
            n => format!("ip{n}"),
        }
    }
}

/// [`FlowRecord::id`].
pub type FlowId = (u32, u8, IpAddr, u16, IpAddr, u16);

fn ip(family: u8, bytes: [u8; 16]) -> IpAddr {
    if family == VLNET_FAMILY_IPV6 as u8 {
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    }
}

/// How `vlnet ctl flows` orders flows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowSort {
    /// Highest smoothed RTT first; flows without samples last.
    Rtt,
    /// Most bytes (both ways) first.
    #[default]
    Bytes,
}

/// Which flows to show: one VNI or all, ordered, at most `top`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowQuery {
    /// Only this VNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// At most this many flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<usize>,
    /// Order.
    #[serde(default)]
    pub sort: FlowSort,
}

impl FlowQuery {
    /// The flows of `all` this query selects, in its order (ties by
    /// [`FlowRecord::id`], so the output is stable).
    #[must_use]
    pub fn select(&self, all: Vec<FlowRecord>) -> Vec<FlowRecord> {
        let mut flows: Vec<FlowRecord> = all
            .into_iter()
            .filter(|f| self.vni.is_none_or(|v| f.vni == v))
            .collect();
        match self.sort {
            FlowSort::Bytes => flows.sort_by_key(|f| (Reverse(f.bytes()), f.id())),
            FlowSort::Rtt => {
                flows.sort_by_key(|f| (f.srtt_ns.is_none(), Reverse(f.srtt_ns), f.id()));
            }
        }
        if let Some(top) = self.top {
            flows.truncate(top);
        }
        flows
    }
}

/// Upper bounds, in seconds, of the kernel's RTT buckets but the last
/// (open-ended) one: bucket `i` ends at 2^(i+1) µs.
#[must_use]
pub fn rtt_bucket_bounds() -> Vec<f64> {
    (1..VLNET_RTT_BUCKETS)
        .map(|i| f64::from(1u32 << i) * 1e-6)
        .collect()
}

/// The RTT samples of the flows through one (VNI, remote VTEP), in
/// Prometheus form.
#[derive(Debug, Clone, PartialEq)]
pub struct RttHistogram {
    /// VXLAN network identifier.
    pub vni: u32,
    /// The remote VTEP.
    pub peer: Ipv4Addr,
    /// Samples at or below each bound of [`rtt_bucket_bounds`] (cumulative).
    pub cumulative: Vec<u64>,
    /// All samples.
    pub count: u64,
    /// Their sum, seconds.
    pub sum_secs: f64,
}

impl RttHistogram {
    /// The histogram of a kernel entry (counts summed over CPUs).
    #[must_use]
    #[allow(
        clippy::cast_precision_loss,
        reason = "a sum of RTTs, far below 2^53 ns"
    )]
    pub fn from_kernel(key: &vlnet_peer_key, hist: &vlnet_rtt_hist) -> Self {
        let cumulative: Vec<u64> = hist
            .count
            .iter()
            .scan(0u64, |total, &n| {
                *total += n;
                Some(*total)
            })
            .collect();
        Self {
            vni: key.vni,
            peer: Ipv4Addr::from(u32::from_be(key.vtep_be)),
            count: cumulative.last().copied().unwrap_or_default(),
            cumulative: cumulative[..cumulative.len() - 1].to_vec(),
            sum_secs: hist.sum_ns as f64 / NS_PER_SEC,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use vlnet_ebpf::abi::VLNET_FAMILY_IPV4;

    fn kernel_flow(local: [u8; 4], srtt_ns: u64, bytes: u64) -> (vlnet_flow_key, vlnet_flow) {
        let mut key = vlnet_flow_key {
            vni: 100,
            local_port_be: 5201u16.to_be(),
            remote_port_be: 40000u16.to_be(),
            proto: 6,
            family: VLNET_FAMILY_IPV4 as u8,
            ..Default::default()
        };
        key.local_ip[..4].copy_from_slice(&local);
        key.remote_ip[..4].copy_from_slice(&[198, 51, 100, 9]);
        let flow = vlnet_flow {
            first_seen_ns: 1_000_000_000,
            last_seen_ns: 3_000_000_000,
            tx_bytes: bytes,
            rx_bytes: 1,
            rtt_samples: u64::from(srtt_ns > 0),
            rtt_min_ns: srtt_ns,
            rtt_last_ns: srtt_ns,
            srtt_ns,
            remote_vtep_be: u32::from(Ipv4Addr::new(198, 18, 0, 2)).to_be(),
            local_mac: [2, 0, 0, 0, 0, 1],
            ..Default::default()
        };
        (key, flow)
    }

    #[test]
    fn kernel_entries_become_readable_records() {
        let (key, flow) = kernel_flow([192, 0, 2, 10], 20_000_000, 1000);
        let r = FlowRecord::from_kernel(&key, &flow, 4_000_000_000);
        assert_eq!(r.local_ip, "192.0.2.10".parse::<IpAddr>().unwrap());
        assert_eq!(r.remote_ip, "198.51.100.9".parse::<IpAddr>().unwrap());
        assert_eq!((r.local_port, r.remote_port), (5201, 40000));
        assert_eq!(r.remote_vtep, Some(Ipv4Addr::new(198, 18, 0, 2)));
        assert_eq!(r.srtt_ns, Some(20_000_000));
        assert_eq!(r.local_mac.to_string(), "02:00:00:00:00:01");
        assert!((r.age_secs - 3.0).abs() < 1e-9 && (r.idle_secs - 1.0).abs() < 1e-9);
        assert_eq!((r.protocol_name(), r.bytes()), ("tcp".to_owned(), 1001));
    }

    #[test]
    fn a_flow_without_samples_has_no_rtt_and_ipv6_keeps_all_bytes() {
        let (mut key, flow) = kernel_flow([192, 0, 2, 10], 0, 5);
        key.family = VLNET_FAMILY_IPV6 as u8;
        key.local_ip = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        let r = FlowRecord::from_kernel(&key, &flow, 4_000_000_000);
        assert_eq!((r.rtt_min_ns, r.srtt_ns), (None, None));
        assert_eq!(r.local_ip, "2001:db8::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn kernel_histograms_become_cumulative_buckets() {
        let mut hist = vlnet_rtt_hist::default();
        hist.count[0] = 1; // < 2 us
        hist.count[14] = 2; // [16.4 ms, 32.8 ms)
        hist.count[VLNET_RTT_BUCKETS as usize - 1] = 1; // open-ended
        hist.sum_ns = 60_000_000;
        let key = vlnet_peer_key {
            vni: 100,
            vtep_be: u32::from(Ipv4Addr::new(198, 18, 0, 2)).to_be(),
        };
        let h = RttHistogram::from_kernel(&key, &hist);
        let bounds = rtt_bucket_bounds();
        assert_eq!(h.cumulative.len(), bounds.len());
        assert!((bounds[0] - 2e-6).abs() < 1e-12 && (bounds[14] - 0.032_768).abs() < 1e-9);
        assert_eq!(
            (h.cumulative[0], h.cumulative[13], h.cumulative[14]),
            (1, 1, 3)
        );
        assert_eq!((h.count, h.peer), (4, Ipv4Addr::new(198, 18, 0, 2)));
        assert!((h.sum_secs - 0.06).abs() < 1e-9);
    }

    #[test]
    fn queries_filter_order_and_cut() {
        let now = 4_000_000_000;
        let records: Vec<FlowRecord> = [
            ([192, 0, 2, 1], 5_000_000, 10),
            ([192, 0, 2, 2], 0, 1000),
            ([192, 0, 2, 3], 30_000_000, 100),
        ]
        .into_iter()
        .map(|(ip, rtt, bytes)| {
            let (k, f) = kernel_flow(ip, rtt, bytes);
            FlowRecord::from_kernel(&k, &f, now)
        })
        .collect();
        let last_octet = |flows: &[FlowRecord]| -> Vec<u8> {
            flows
                .iter()
                .map(|f| match f.local_ip {
                    IpAddr::V4(a) => a.octets()[3],
                    IpAddr::V6(_) => 0,
                })
                .collect()
        };
        let by_rtt = FlowQuery {
            sort: FlowSort::Rtt,
            ..FlowQuery::default()
        };
        assert_eq!(last_octet(&by_rtt.select(records.clone())), [3, 1, 2]);
        let top_bytes = FlowQuery {
            top: Some(2),
            ..FlowQuery::default()
        };
        assert_eq!(last_octet(&top_bytes.select(records.clone())), [2, 3]);
        let other_vni = FlowQuery {
            vni: Some(200),
            ..FlowQuery::default()
        };
        assert!(other_vni.select(records).is_empty());
    }
}
