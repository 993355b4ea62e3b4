//! Prometheus `/metrics`: the node's counters in the text exposition format.
//!
//! Nothing is cached: at each scrape [`VlnetCollector`] (or [`render`]) asks a
//! [`MetricsSource`] for the current numbers, which the daemon reads from the
//! kernel maps. Names follow the Prometheus naming guide: `vlnet_*`, counters
//! end in `_total`, bytes are `_bytes`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};
use tokio::net::TcpListener;

use crate::conn_limit::{self, ConnLimit, Limits};
use crate::flows::{rtt_bucket_bounds, RttHistogram};
use crate::model::{
    EvpnReport, FdbKind, NodeStatus, PeerStatus, RelayCount, Suppression, VniStatus,
};
use crate::moves::{SwitchHistogram, SWITCH_BUCKETS};
use crate::node::NodeError;
use crate::peer_rtt::PeerRtt;

/// Path the metrics are served on; every other path is 404.
pub const METRICS_PATH: &str = "/metrics";
/// `Content-Type` of the text exposition format.
pub const CONTENT_TYPE_TEXT: &str = prometheus::TEXT_FORMAT;

/// Where the numbers come from (the daemon's view of its maps). Each call is
/// made once per scrape; an `Err` sets `vlnet_up` to 0 and leaves that
/// call's metrics out rather than exporting made-up zeros.
pub trait MetricsSource {
    /// Node identity and drop counters.
    fn status(&self) -> Result<NodeStatus, NodeError>;
    /// Per `(vni, peer)` traffic counters.
    fn peers(&self) -> Result<Vec<PeerStatus>, NodeError>;
    /// Number of FDB entries per `(vni, kind)`.
    fn fdb_counts(&self) -> Result<Vec<(u32, FdbKind, u64)>, NodeError>;
    /// MAC moves seen by the data plane, and first broadcasts of MACs new
    /// here.
    fn moves(&self) -> Option<crate::moves::MoveCounts> {
        None
    }
    /// Path-switch times of VMs that moved here.
    fn path_switches(&self) -> Option<SwitchHistogram> {
        None
    }
    /// The control plane's numbers, if the node has one.
    fn control(&self) -> Option<ControlMetrics> {
        None
    }
    /// Inner flows tracked in the kernel, if flow tracking runs.
    fn flows(&self) -> Option<FlowMetrics> {
        None
    }
    /// Underlay RTT probes, per remote VTEP.
    fn peer_rtts(&self) -> Option<Vec<(std::net::Ipv4Addr, PeerRtt)>> {
        None
    }
    /// Each VNI's FDB capacity and the control-plane entries it refused.
    fn fdb_capacity(&self) -> Option<FdbCapacity> {
        None
    }
    /// The EVPN speaker's sessions, if the node has `[evpn]`.
    fn evpn(&self) -> Option<EvpnReport> {
        None
    }
    /// Packets that took the bridge bypass: (delivered straight to a VM's
    /// port, encapsulated at a VM's port). Its ports are in
    /// [`NodeStatus`]'s VNIs.
    fn bypass_packets(&self) -> Option<(u64, u64)> {
        None
    }
}

/// The FDB's capacity per VNI for one scrape (its fill level is
/// `vlnet_fdb_entries`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FdbCapacity {
    /// `(vni, capacity)` of every VNI served.
    pub capacity: Vec<(u32, u32)>,
    /// `(vni, control-plane entries refused)` for VNIs with refusals.
    pub refused: Vec<(u32, u64)>,
}

/// The inner flows' numbers for one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowMetrics {
    /// RTT samples per (VNI, remote VTEP).
    pub rtt: Vec<RttHistogram>,
    /// Flows in the kernel's table, per VNI.
    pub counts: Vec<(u32, u64)>,
}

/// The control plane's numbers for one scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlMetrics {
    /// Refused control messages and connections, by reason.
    pub rejected: Vec<(&'static str, u64)>,
    /// Members with a live control session (controller) or 1/0 for the
    /// session with the controller (member).
    pub sessions: u64,
    /// MACs frozen as duplicates.
    pub frozen_macs: u64,
    /// Claims of MACs held elsewhere waiting for their release (controller).
    pub waiting_claims: u64,
    /// Each member's WireGuard numbers (controller).
    pub members: Vec<crate::control::MemberTraffic>,
    /// Datagrams the WireGuard device dropped, `(reason, count)`; empty
    /// while no device is up.
    pub wg_rx_dropped: Vec<(String, u64)>,
}

/// Why `/metrics` could not be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address could not be bound.
    #[error("cannot listen for /metrics on {addr}: {source} (check node.metrics_listen)")]
    Bind {
        /// Configured address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The metric descriptions were rejected by the prometheus crate.
    #[error("invalid metric description {name}: {source}")]
    Describe {
        /// Metric name.
        name: &'static str,
        /// The prometheus error.
        source: prometheus::Error,
    },
}

/// One exported metric family.
struct Spec {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
}

const TUNNEL_RX_PACKETS: Spec = Spec {
    name: "vlnet_tunnel_rx_packets_total",
    help: "Inner frames decapsulated from a remote VTEP of a VNI.",
    kind: MetricType::COUNTER,
    labels: &["vni", "peer"],
};
const TUNNEL_RX_BYTES: Spec = Spec {
    name: "vlnet_tunnel_rx_bytes_total",
    help:
        "Inner bytes (Ethernet frame, no outer headers) decapsulated from a remote VTEP of a VNI.",
    kind: MetricType::COUNTER,
    labels: &["vni", "peer"],
};
const TUNNEL_TX_PACKETS: Spec = Spec {
    name: "vlnet_tunnel_tx_packets_total",
    help: "Inner frames encapsulated to a remote VTEP of a VNI (flooded copies included).",
    kind: MetricType::COUNTER,
    labels: &["vni", "peer"],
};
const TUNNEL_TX_BYTES: Spec = Spec {
    name: "vlnet_tunnel_tx_bytes_total",
    help: "Inner bytes (Ethernet frame, no outer headers) encapsulated to a remote VTEP of a VNI.",
    kind: MetricType::COUNTER,
    labels: &["vni", "peer"],
};
const DROPS: Spec = Spec {
    name: "vlnet_drops_total",
    help: "Packets the VTEP programs dropped, by reason (every reason is listed, zeros too).",
    kind: MetricType::COUNTER,
    labels: &["reason"],
};
const FDB_ENTRIES: Spec = Spec {
    name: "vlnet_fdb_entries",
    help: "MAC addresses in the forwarding database, by VNI and by origin \
           (static: config; control: control plane; learned: from decapsulated frames).",
    kind: MetricType::GAUGE,
    labels: &["vni", "kind"],
};
const FDB_CAPACITY: Spec = Spec {
    name: "vlnet_fdb_capacity",
    help: "MAC addresses a VNI may hold in the forwarding database (node.fdb_max_per_vni or \
           its fdb_max); compare with the sum of vlnet_fdb_entries.",
    kind: MetricType::GAUGE,
    labels: &["vni"],
};
const FDB_REFUSED: Spec = Spec {
    name: "vlnet_fdb_refused_total",
    help: "Control-plane MAC entries refused because the VNI's FDB share was full of static \
           and control-plane entries (learned ones are evicted first).",
    kind: MetricType::COUNTER,
    labels: &["vni"],
};
const RELAY_PACKETS: Spec = Spec {
    name: "vlnet_relay_packets_total",
    help: "Copies a gateway relayed, by direction: to_members (decapsulated from a static \
           peer, sent to members) or to_zone (from a member, sent to static peers); a flood \
           counts once per copy.",
    kind: MetricType::COUNTER,
    labels: &["direction"],
};
const RELAY_BYTES: Spec = Spec {
    name: "vlnet_relay_bytes_total",
    help: "Inner bytes (Ethernet frame, no outer headers) of the copies a gateway relayed, \
           by direction.",
    kind: MetricType::COUNTER,
    labels: &["direction"],
};
const ARP_SUPPRESSED: Spec = Spec {
    name: "vlnet_arp_suppressed_total",
    help: "ARP requests (proto=arp) and IPv6 neighbour solicitations (proto=nd) from local \
           VMs that crossed no tunnel: answered here for a VM behind another VTEP \
           (answer=reply) or left to a VM on this node, which its bridge delivered them to \
           (answer=local).",
    kind: MetricType::COUNTER,
    labels: &["proto", "answer"],
};
const NEIGH_ENTRIES: Spec = Spec {
    name: "vlnet_neigh_entries",
    help: "IP to MAC bindings held for ARP/ND suppression: snooped from this node's VMs \
           (kind=local), from the zone's VMs behind static peers (kind=zone) or from the \
           control plane (kind=control); at most 65536 in all.",
    kind: MetricType::GAUGE,
    labels: &["kind"],
};
const NEIGH_SNOOP_FULL: Spec = Spec {
    name: "vlnet_neigh_snoop_full_total",
    help: "Snooped IP bindings not recorded because the suppression table was full (requests \
           for them flood as without suppression).",
    kind: MetricType::COUNTER,
    labels: &[],
};
const BYPASS_PACKETS: Spec = Spec {
    name: "vlnet_bypass_packets_total",
    help: "Packets that took the bridge bypass (VNIs with bypass = true): direction=rx, \
           decapsulated and delivered straight to a local VM's port; direction=tx, a local \
           VM's frame encapsulated at its port. GSO packets count in wire segments.",
    kind: MetricType::COUNTER,
    labels: &["direction"],
};
const BYPASS_PORTS: Spec = Spec {
    name: "vlnet_bypass_ports",
    help: "Ports of a bypass VNI's bridge: state=bypassed, taking the bridge bypass; \
           state=refused, left to the bridge (behind a Proxmox firewall bridge, VLAN \
           filtering, another kind of port, or someone else's tc/XDP program: see vlnet ctl \
           status).",
    kind: MetricType::GAUGE,
    labels: &["vni", "state"],
};
const EVPN_SESSION_UP: Spec = Spec {
    name: "vlnet_evpn_session_up",
    help: "1 if the BGP EVPN session with the neighbor (a route reflector of [evpn] neighbors) \
           is established, 0 if not.",
    kind: MetricType::GAUGE,
    labels: &["neighbor"],
};
const EVPN_ROUTES: Spec = Spec {
    name: "vlnet_evpn_routes",
    help: "EVPN routes held from the neighbor: type=mac (type 2, MAC/IP advertisement), \
           type=imet (type 3, inclusive multicast: flood lists).",
    kind: MetricType::GAUGE,
    labels: &["neighbor", "type"],
};
const NODE_INFO: Spec = Spec {
    name: "vlnet_node_info",
    help: "Always 1; labels name the node, its VTEP address and the decap datapath in use.",
    kind: MetricType::GAUGE,
    labels: &["node", "vtep", "datapath"],
};
const PATH_SWITCH: Spec = Spec {
    name: "vlnet_path_switch_seconds",
    help: "For VMs that moved to this node: time from their announce entering the overlay \
           port to the first frame reaching them from another VTEP.",
    kind: MetricType::HISTOGRAM,
    labels: &[],
};
const MAC_MOVES: Spec = Spec {
    name: "vlnet_mac_moves_total",
    help: "MAC moves the data plane made: remote (a MAC now seen behind another VTEP) or \
           local (a MAC known remote now sends from this node: a VM migrated here); and \
           arrived: MACs new here that sent their first broadcast (the bridges are read at \
           once).",
    kind: MetricType::COUNTER,
    labels: &["kind"],
};
const CONTROL_REJECTED: Spec = Spec {
    name: "vlnet_control_rejected_total",
    help: "Control connections and messages refused, by reason (not_member, bad_version, \
           malformed, forged, unexpected, bad_token, not_owner, quota, frozen, slow_reader, \
           too_many_connections, duplicate_ip).",
    kind: MetricType::COUNTER,
    labels: &["reason"],
};
const CONTROL_SESSIONS: Spec = Spec {
    name: "vlnet_control_sessions",
    help: "Live control sessions: members connected (controller), 1 if connected to the \
           controller (member).",
    kind: MetricType::GAUGE,
    labels: &[],
};
const FROZEN_MACS: Spec = Spec {
    name: "vlnet_mac_frozen",
    help: "MACs frozen as duplicates (RFC 7432 15.1: too many moves within the window, \
           e.g. two live copies of one VM).",
    kind: MetricType::GAUGE,
    labels: &[],
};
const WAITING_CLAIMS: Spec = Spec {
    name: "vlnet_control_claims_waiting",
    help: "Members' claims of MACs held elsewhere, refused and waiting for the holder to \
           release the MAC or an operator to grant the move (controller).",
    kind: MetricType::GAUGE,
    labels: &[],
};
const FLOW_RTT: Spec = Spec {
    name: "vlnet_flow_rtt_seconds",
    help: "RTT of inner flows, measured passively in the kernel from this VTEP to the remote \
           endpoint and back (TCP timestamps, SYN/SYN-ACK, ICMP echo), by VNI and remote VTEP.",
    kind: MetricType::HISTOGRAM,
    labels: &["vni", "peer"],
};
const FLOWS: Spec = Spec {
    name: "vlnet_flows",
    help: "Inner flows in the kernel's flow table (least recently seen evicted first).",
    kind: MetricType::GAUGE,
    labels: &["vni"],
};
const PEER_RTT: Spec = Spec {
    name: "vlnet_peer_rtt_seconds",
    help: "Underlay RTT to a remote VTEP: median of the last 8 ICMP echo probes, one a \
           second on the path VXLAN takes.",
    kind: MetricType::GAUGE,
    labels: &["peer"],
};
const PEER_REACHABLE: Spec = Spec {
    name: "vlnet_peer_reachable",
    help: "1 if the remote VTEP answered one of the last 3 underlay probes, else 0.",
    kind: MetricType::GAUGE,
    labels: &["peer"],
};
const MEMBER_HANDSHAKE_AGE: Spec = Spec {
    name: "vlnet_member_handshake_age_seconds",
    help: "Seconds since the last WireGuard handshake with a member (controller; absent \
           before the first).",
    kind: MetricType::GAUGE,
    labels: &["member"],
};
const MEMBER_RX_BYTES: Spec = Spec {
    name: "vlnet_member_rx_bytes_total",
    help: "WireGuard bytes received from a member (controller; since the WireGuard device \
           started).",
    kind: MetricType::COUNTER,
    labels: &["member"],
};
const WG_RX_DROPPED: Spec = Spec {
    name: "vlnet_wg_rx_dropped_total",
    help: "Datagrams the WireGuard device received and dropped, by reason: auth (failed \
           authentication: corrupted, forged or another key), replay (counter seen before or \
           behind the window), malformed, no_session, source_not_allowed, under_load, other.",
    kind: MetricType::COUNTER,
    labels: &["reason"],
};
const MEMBER_TX_BYTES: Spec = Spec {
    name: "vlnet_member_tx_bytes_total",
    help: "WireGuard bytes sent to a member (controller; since the WireGuard device started).",
    kind: MetricType::COUNTER,
    labels: &["member"],
};
const MEMBER_CONNECTED: Spec = Spec {
    name: "vlnet_member_connected",
    help: "1 while a member's control session is up, else 0 (controller).",
    kind: MetricType::GAUGE,
    labels: &["member"],
};
const BUILD_INFO: Spec = Spec {
    name: "vlnet_build_info",
    help: "Always 1: the version and commit of the running daemon.",
    kind: MetricType::GAUGE,
    labels: &["version", "commit"],
};
const UP: Spec = Spec {
    name: "vlnet_up",
    help: "1 if the daemon could read all its counters for this scrape, 0 if some are missing.",
    kind: MetricType::GAUGE,
    labels: &[],
};

const SPECS: [&Spec; 31] = [
    &EVPN_SESSION_UP,
    &EVPN_ROUTES,
    &BYPASS_PACKETS,
    &BYPASS_PORTS,
    &MEMBER_HANDSHAKE_AGE,
    &MEMBER_RX_BYTES,
    &MEMBER_TX_BYTES,
    &MEMBER_CONNECTED,
    &WG_RX_DROPPED,
    &BUILD_INFO,
    &PATH_SWITCH,
    &FLOW_RTT,
    &FLOWS,
    &PEER_RTT,
    &PEER_REACHABLE,
    &FROZEN_MACS,
    &MAC_MOVES,
    &CONTROL_REJECTED,
    &CONTROL_SESSIONS,
    &TUNNEL_RX_PACKETS,
    &TUNNEL_RX_BYTES,
    &TUNNEL_TX_PACKETS,
    &TUNNEL_TX_BYTES,
    &DROPS,
    &FDB_ENTRIES,
    &FDB_CAPACITY,
    &FDB_REFUSED,
    &RELAY_PACKETS,
    &RELAY_BYTES,
    &NODE_INFO,
    &UP,
];

/// A family being filled: samples keyed by their sorted labels.
struct Builder {
    spec: &'static Spec,
    samples: BTreeMap<Vec<(&'static str, String)>, f64>,
}

impl Builder {
    fn new(spec: &'static Spec) -> Self {
        Builder {
            spec,
            samples: BTreeMap::new(),
        }
    }

    /// Adds `value` to the sample with these label values (in `spec.labels`
    /// order); repeated label sets add up.
    #[allow(
        clippy::cast_precision_loss,
        reason = "Prometheus samples are f64; counters past 2^53 lose only low bits"
    )]
    fn add(&mut self, values: &[String], value: u64) {
        self.add_f64(values, value as f64);
    }

    /// [`Self::add`] for a value that is not a count.
    fn add_f64(&mut self, values: &[String], value: f64) {
        let mut labels: Vec<(&'static str, String)> = self
            .spec
            .labels
            .iter()
            .copied()
            .zip(values.iter().cloned())
            .collect();
        labels.sort();
        *self.samples.entry(labels).or_insert(0.0) += value;
    }

    fn build(self) -> Option<MetricFamily> {
        if self.samples.is_empty() {
            return None;
        }
        let metrics = self
            .samples
            .into_iter()
            .map(|(labels, value)| {
                let mut metric = proto::Metric::from_label(label_pairs(labels));
                if self.spec.kind == MetricType::COUNTER {
                    let mut counter = proto::Counter::default();
                    counter.set_value(value);
                    metric.set_counter(counter);
                } else {
                    let mut gauge = proto::Gauge::default();
                    gauge.set_value(value);
                    metric.set_gauge(gauge);
                }
                metric
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(self.spec.name.to_owned());
        family.set_help(self.spec.help.to_owned());
        family.set_field_type(self.spec.kind);
        family.set_metric(metrics);
        Some(family)
    }
}

fn label_pairs(labels: Vec<(&'static str, String)>) -> Vec<LabelPair> {
    labels
        .into_iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name(name.to_owned());
            pair.set_value(value);
            pair
        })
        .collect()
}

/// One histogram of a family: label values in `spec.labels` order, then
/// (upper bound, cumulative count) per bucket, count and sum.
struct HistogramSample {
    labels: Vec<String>,
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum: f64,
}

fn histogram(spec: &'static Spec, samples: Vec<HistogramSample>) -> Option<MetricFamily> {
    if samples.is_empty() {
        return None;
    }
    let metrics = samples
        .into_iter()
        .map(|sample| {
            let buckets = sample
                .buckets
                .into_iter()
                .map(|(bound, n)| {
                    let mut b = proto::Bucket::default();
                    b.set_upper_bound(bound);
                    b.set_cumulative_count(n);
                    b
                })
                .collect();
            let mut hist = proto::Histogram::default();
            hist.set_sample_count(sample.count);
            hist.set_sample_sum(sample.sum);
            hist.set_bucket(buckets);
            let mut labels: Vec<_> = spec.labels.iter().copied().zip(sample.labels).collect();
            labels.sort();
            let mut metric = proto::Metric::from_label(label_pairs(labels));
            metric.set_histogram(hist);
            metric
        })
        .collect();
    let mut family = MetricFamily::default();
    family.set_name(spec.name.to_owned());
    family.set_help(spec.help.to_owned());
    family.set_field_type(spec.kind);
    family.set_metric(metrics);
    Some(family)
}

fn switch_histogram(h: &SwitchHistogram) -> HistogramSample {
    HistogramSample {
        labels: Vec::new(),
        buckets: SWITCH_BUCKETS.iter().copied().zip(h.buckets).collect(),
        count: h.count,
        sum: h.sum,
    }
}

fn flow_rtt_histogram(h: &RttHistogram) -> HistogramSample {
    HistogramSample {
        labels: vec![h.vni.to_string(), h.peer.to_string()],
        buckets: rtt_bucket_bounds()
            .into_iter()
            .zip(h.cumulative.iter().copied())
            .collect(),
        count: h.count,
        sum: h.sum_secs,
    }
}

/// The inner flows' RTT and the underlay probes' families.
#[allow(clippy::cast_precision_loss, reason = "an RTT in ns is far below 2^53")]
fn latency_families(source: &dyn MetricsSource) -> Vec<Option<MetricFamily>> {
    let mut out = Vec::new();
    if let Some(flows) = source.flows() {
        out.push(histogram(
            &FLOW_RTT,
            flows.rtt.iter().map(flow_rtt_histogram).collect(),
        ));
        let mut counts = Builder::new(&FLOWS);
        for (vni, n) in flows.counts {
            counts.add(&[vni.to_string()], n);
        }
        out.push(counts.build());
    }

    if let Some(peers) = source.peer_rtts() {
        let mut rtt = Builder::new(&PEER_RTT);
        let mut reachable = Builder::new(&PEER_REACHABLE);
        for (vtep, p) in peers {
            let label = [vtep.to_string()];
            if let Some(srtt) = p.srtt_ns {
                rtt.add_f64(&label, srtt as f64 / 1e9);
            }
            reachable.add(&label, u64::from(p.reachable));
        }
        out.extend([rtt.build(), reachable.build()]);
    }

    out
}

/// `vlnet_relay_packets_total` and `vlnet_relay_bytes_total` by direction.
fn relay_families(relayed: &[RelayCount]) -> [Option<MetricFamily>; 2] {
    let mut packets = Builder::new(&RELAY_PACKETS);
    let mut bytes = Builder::new(&RELAY_BYTES);
    for r in relayed {
        packets.add(std::slice::from_ref(&r.direction), r.packets);
        bytes.add(std::slice::from_ref(&r.direction), r.bytes);
    }
    [packets.build(), bytes.build()]
}

/// `vlnet_bypass_ports` of every bypass VNI, both states listed.
fn bypass_ports_family(vnis: &[VniStatus]) -> Option<MetricFamily> {
    let mut ports = Builder::new(&BYPASS_PORTS);
    for v in vnis {
        if let Some(b) = &v.bypass {
            let vni = v.vni.to_string();
            ports.add(&[vni.clone(), "bypassed".to_owned()], b.ports.len() as u64);
            ports.add(&[vni, "refused".to_owned()], b.refused.len() as u64);
        }
    }
    ports.build()
}

/// The relay counters (a gateway only) and the ARP/ND suppression ones.
fn gateway_and_suppression_families(status: &NodeStatus) -> Vec<Option<MetricFamily>> {
    let mut out = Vec::new();
    if status.relay {
        out.extend(relay_families(&status.relayed));
    }
    out.extend(suppression_families(&status.suppression));
    out
}

/// `vlnet_arp_suppressed_total`, `vlnet_neigh_entries` and
/// `vlnet_neigh_snoop_full_total`.
fn suppression_families(s: &Suppression) -> [Option<MetricFamily>; 3] {
    let mut suppressed = Builder::new(&ARP_SUPPRESSED);
    for (proto, answer, n) in [
        ("arp", "reply", s.arp_replied),
        ("arp", "local", s.arp_local),
        ("nd", "reply", s.nd_replied),
        ("nd", "local", s.nd_local),
    ] {
        suppressed.add(&[proto.to_owned(), answer.to_owned()], n);
    }
    let mut entries = Builder::new(&NEIGH_ENTRIES);
    entries.add(&["local".to_owned()], s.bindings_local);
    entries.add(&["control".to_owned()], s.bindings_control);
    entries.add(&["zone".to_owned()], s.bindings_zone);
    let mut full = Builder::new(&NEIGH_SNOOP_FULL);
    full.add(&[], s.snoop_full);
    [suppressed.build(), entries.build(), full.build()]
}

/// `vlnet_fdb_capacity` and `vlnet_fdb_refused_total` (0 for every VNI
/// served without refusals).
fn fdb_capacity_families(fdb: FdbCapacity) -> [Option<MetricFamily>; 2] {
    let mut capacity = Builder::new(&FDB_CAPACITY);
    let mut refused = Builder::new(&FDB_REFUSED);
    for (vni, n) in fdb.capacity {
        capacity.add(&[vni.to_string()], u64::from(n));
        refused.add(&[vni.to_string()], 0);
    }
    for (vni, n) in fdb.refused {
        refused.add(&[vni.to_string()], n);
    }
    [capacity.build(), refused.build()]
}

/// The control plane's families: refusals, sessions, frozen MACs, waiting
/// claims, and (controller) each member's WireGuard numbers.
fn control_families(control: ControlMetrics) -> Vec<Option<MetricFamily>> {
    let mut rejected = Builder::new(&CONTROL_REJECTED);
    for (reason, n) in control.rejected {
        rejected.add(&[reason.to_owned()], n);
    }
    let mut sessions = Builder::new(&CONTROL_SESSIONS);
    sessions.add(&[], control.sessions);
    let mut frozen = Builder::new(&FROZEN_MACS);
    frozen.add(&[], control.frozen_macs);
    let mut waiting = Builder::new(&WAITING_CLAIMS);
    waiting.add(&[], control.waiting_claims);
    let mut wg_dropped = Builder::new(&WG_RX_DROPPED);
    for (reason, n) in control.wg_rx_dropped {
        wg_dropped.add(&[reason], n);
    }
    let mut out = vec![
        rejected.build(),
        sessions.build(),
        frozen.build(),
        waiting.build(),
        wg_dropped.build(),
    ];
    out.extend(member_families(&control.members));
    out
}

/// The controller's per-member WireGuard families.
fn member_families(members: &[crate::control::MemberTraffic]) -> [Option<MetricFamily>; 4] {
    let mut age = Builder::new(&MEMBER_HANDSHAKE_AGE);
    let mut rx = Builder::new(&MEMBER_RX_BYTES);
    let mut tx = Builder::new(&MEMBER_TX_BYTES);
    let mut connected = Builder::new(&MEMBER_CONNECTED);
    for m in members {
        let label = [m.name.clone()];
        if let Some(secs) = m.handshake_age_secs {
            age.add(&label, secs);
        }
        rx.add(&label, m.rx_bytes);
        tx.add(&label, m.tx_bytes);
        connected.add(&label, u64::from(m.connected));
    }
    [age.build(), rx.build(), tx.build(), connected.build()]
}

/// What `/metrics` serves: vlnet's families and the daemon process's
/// (`process_*`: CPU, memory, descriptors, start time).
#[must_use]
pub fn served_families(source: &dyn MetricsSource) -> Vec<MetricFamily> {
    let mut out = families(source);
    out.extend(prometheus::process_collector::ProcessCollector::for_self().collect());
    out
}

/// Asks `source` once and builds every family. Empty families (no peers
/// yet, or a failed call) are left out, as the text format requires.
#[must_use]
pub fn families(source: &dyn MetricsSource) -> Vec<MetricFamily> {
    let mut up = true;
    let mut out = Vec::new();

    match source.peers() {
        Ok(peers) => {
            let mut rx_packets = Builder::new(&TUNNEL_RX_PACKETS);
            let mut rx_bytes = Builder::new(&TUNNEL_RX_BYTES);
            let mut tx_packets = Builder::new(&TUNNEL_TX_PACKETS);
            let mut tx_bytes = Builder::new(&TUNNEL_TX_BYTES);
            for peer in &peers {
                let labels = [peer.vni.to_string(), peer.vtep.to_string()];
                rx_packets.add(&labels, peer.rx_packets);
                rx_bytes.add(&labels, peer.rx_bytes);
                tx_packets.add(&labels, peer.tx_packets);
                tx_bytes.add(&labels, peer.tx_bytes);
            }
            out.extend([rx_packets, rx_bytes, tx_packets, tx_bytes].map(Builder::build));
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read peer counters");
            up = false;
        }
    }

    match source.status() {
        Ok(status) => {
            let mut drops = Builder::new(&DROPS);
            for (_, reason) in vlnet_ebpf::abi::DROP_REASON_NAMES {
                drops.add(&[(*reason).to_owned()], 0);
            }
            for drop in &status.drops {
                drops.add(std::slice::from_ref(&drop.reason), drop.packets);
            }
            let mut info = Builder::new(&NODE_INFO);
            let datapath = serde_json::to_value(status.datapath)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            out.extend(gateway_and_suppression_families(&status));
            out.push(bypass_ports_family(&status.vnis));
            info.add(&[status.node, status.vtep.to_string(), datapath], 1);
            out.extend([drops.build(), info.build()]);
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read node status");
            up = false;
        }
    }

    match source.fdb_counts() {
        Ok(counts) => {
            let mut fdb = Builder::new(&FDB_ENTRIES);
            for (vni, kind, count) in counts {
                let kind = match kind {
                    FdbKind::Static => "static",
                    FdbKind::Learned => "learned",
                    FdbKind::Control => "control",
                };
                fdb.add(&[vni.to_string(), kind.to_owned()], count);
            }
            out.push(fdb.build());
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read FDB counts");
            up = false;
        }
    }

    if let Some(fdb) = source.fdb_capacity() {
        out.extend(fdb_capacity_families(fdb));
    }

    out.extend(evpn_families(source));

    if let Some((rx, tx)) = source.bypass_packets() {
        let mut packets = Builder::new(&BYPASS_PACKETS);
        packets.add(&["rx".to_owned()], rx);
        packets.add(&["tx".to_owned()], tx);
        out.push(packets.build());
    }

    if let Some(counts) = source.moves() {
        let mut moves = Builder::new(&MAC_MOVES);
        moves.add(&["remote".to_owned()], counts.remote);
        moves.add(&["local".to_owned()], counts.local);
        moves.add(&["arrived".to_owned()], counts.arrived);
        out.push(moves.build());
    }

    if let Some(h) = source.path_switches() {
        out.push(histogram(&PATH_SWITCH, vec![switch_histogram(&h)]));
    }

    out.extend(latency_families(source));

    if let Some(control) = source.control() {
        out.extend(control_families(control));
    }

    let mut build = Builder::new(&BUILD_INFO);
    build.add(&[crate::VERSION.to_owned(), crate::COMMIT.to_owned()], 1);
    out.push(build.build());

    let mut up_family = Builder::new(&UP);
    up_family.add(&[], u64::from(up));
    out.push(up_family.build());
    out.into_iter().flatten().collect()
}

/// Renders the current metrics in the Prometheus text format, as
/// `/metrics` serves them.
#[must_use]
pub fn render(source: &dyn MetricsSource) -> String {
    match encode(&served_families(source)) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "metrics: text encoding failed");
            format!(
                "# vlnet: encoding failed: {}\n",
                e.to_string().replace('\n', " ")
            )
        }
    }
}

fn encode(families: &[MetricFamily]) -> Result<String, prometheus::Error> {
    let mut buf = Vec::new();
    TextEncoder::new().encode(families, &mut buf)?;
    String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

/// The EVPN speaker's sessions and routes per neighbor (none without
/// `[evpn]`).
fn evpn_families(source: &dyn MetricsSource) -> Vec<Option<MetricFamily>> {
    let Some(evpn) = source.evpn() else {
        return Vec::new();
    };
    let mut up = Builder::new(&EVPN_SESSION_UP);
    let mut routes = Builder::new(&EVPN_ROUTES);
    for n in &evpn.neighbors {
        up.add(
            std::slice::from_ref(&n.neighbor),
            u64::from(n.state == "established"),
        );
        routes.add(&[n.neighbor.clone(), "mac".to_owned()], n.mac_routes);
        routes.add(&[n.neighbor.clone(), "imet".to_owned()], n.imet_routes);
    }
    vec![up.build(), routes.build()]
}

/// A [`Collector`] for a `prometheus::Registry`, for embedding vlnet's
/// metrics next to others; it asks the source at every gather.
pub struct VlnetCollector {
    source: Arc<dyn MetricsSource + Send + Sync>,
    descs: Vec<Desc>,
}

impl VlnetCollector {
    /// Wraps `source`; fails only if a built-in description is invalid.
    pub fn new(source: Arc<dyn MetricsSource + Send + Sync>) -> Result<Self, MetricsError> {
        let descs = SPECS
            .iter()
            .map(|spec| {
                Desc::new(
                    spec.name.to_owned(),
                    spec.help.to_owned(),
                    spec.labels.iter().map(|l| (*l).to_owned()).collect(),
                    std::collections::HashMap::new(),
                )
                .map_err(|source| MetricsError::Describe {
                    name: spec.name,
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(VlnetCollector { source, descs })
    }
}

impl std::fmt::Debug for VlnetCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VlnetCollector").finish_non_exhaustive()
    }
}

impl Collector for VlnetCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        families(&*self.source)
    }
}

/// Binds `listen` and serves `/metrics` until the task is dropped.
pub async fn serve(
    listen: SocketAddr,
    source: Arc<dyn MetricsSource + Send + Sync>,
) -> Result<(), MetricsError> {
    let listener = bind(listen)?;
    serve_listener(listener, source).await
}

/// Binds the metrics listen address. Must run inside a tokio runtime.
pub fn bind(listen: SocketAddr) -> Result<TcpListener, MetricsError> {
    let err = |source| MetricsError::Bind {
        addr: listen,
        source,
    };
    let std_listener = std::net::TcpListener::bind(listen).map_err(err)?;
    std_listener.set_nonblocking(true).map_err(err)?;
    TcpListener::from_std(std_listener).map_err(err)
}

/// Bounds of the `/metrics` listener.
///
/// - 64 connections: a Prometheus server keeps one connection per target
///   (two while a scrape overlaps a slow one), so even a few HA servers,
///   federation and an operator's `curl` stay far below; at 16 KiB of
///   request buffer each ([`MAX_REQUEST_HEAD`]) they hold at most 1 MiB.
/// - 30 s idle: longer than Prometheus' default 15 s scrape interval, so its
///   keep-alive connection is reused between scrapes; a connection that
///   sends nothing at all is closed after it (and evicted sooner if slots
///   run out).
/// - 5 s to read a request from its first byte: a scrape request is one
///   small packet; 5 s allows for retransmissions on a lossy link.
pub const METRICS_LIMITS: Limits = Limits {
    max_conns: 64,
    idle_timeout: Duration::from_secs(30),
    read_timeout: Duration::from_secs(5),
};

/// Largest request head (request line and headers) read into memory; a
/// bigger one is answered 431 and closed. Scrape requests are well under
/// 1 KiB.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Serves HTTP/1 on an already bound listener under [`METRICS_LIMITS`], one
/// task per connection, until the task running this is dropped.
///
/// The limits are enforced by [`conn_limit`], not by hyper's
/// `header_read_timeout`: hyper starts that timer whenever it waits for a
/// request head, between keep-alive requests too, so it cannot give an idle
/// keep-alive connection longer than a slow request.
pub async fn serve_listener(
    listener: TcpListener,
    source: Arc<dyn MetricsSource + Send + Sync>,
) -> Result<(), MetricsError> {
    let limit = ConnLimit::new("metrics", METRICS_LIMITS);
    conn_limit::serve(listener, limit, move |stream, _, conn| {
        let source = Arc::clone(&source);
        async move {
            let service = hyper::service::service_fn(move |req| {
                let source = Arc::clone(&source);
                // The request head is in: busy until the answer is ready.
                let busy = conn.busy();
                async move {
                    let response = respond(&req, source).await;
                    drop(busy);
                    Ok::<_, Infallible>(response)
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .max_buf_size(MAX_REQUEST_HEAD)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        }
    })
    .await;
    Ok(())
}

async fn respond(
    req: &Request<Incoming>,
    source: Arc<dyn MetricsSource + Send + Sync>,
) -> Response<Full<Bytes>> {
    if req.uri().path() != METRICS_PATH {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    let text = tokio::task::spawn_blocking(move || encode(&served_families(&*source))).await;
    match text {
        Ok(Ok(text)) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_TEXT));
            response
        }
        Ok(Err(e)) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding failed: {e}\n"),
        ),
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("collecting failed: {e}\n"),
        ),
    }
}

fn plain(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::Ipv4Addr;

    use super::*;
    use crate::model::{BypassStatus, DatapathMode, DropCount, RefusedPort};

    struct Fake {
        fail: bool,
    }

    impl MetricsSource for Fake {
        fn evpn(&self) -> Option<EvpnReport> {
            Some(EvpnReport {
                neighbors: vec![crate::model::EvpnNeighbor {
                    neighbor: "198.18.0.2:179".to_owned(),
                    state: "established".to_owned(),
                    uptime_secs: Some(5),
                    mac_routes: 7,
                    imet_routes: 2,
                }],
                vnis: Vec::new(),
            })
        }

        fn bypass_packets(&self) -> Option<(u64, u64)> {
            Some((30, 20))
        }

        fn moves(&self) -> Option<crate::moves::MoveCounts> {
            (!self.fail).then_some(crate::moves::MoveCounts {
                remote: 4,
                local: 1,
                arrived: 2,
            })
        }

        fn path_switches(&self) -> Option<SwitchHistogram> {
            let mut buckets = [1; SWITCH_BUCKETS.len()];
            buckets[0] = 0;
            (!self.fail).then_some(SwitchHistogram {
                buckets,
                sum: 0.0003,
                count: 1,
            })
        }

        fn control(&self) -> Option<ControlMetrics> {
            (!self.fail).then(|| ControlMetrics {
                rejected: vec![("forged", 2), ("not_member", 0)],
                sessions: 3,
                frozen_macs: 1,
                waiting_claims: 2,
                members: vec![
                    crate::control::MemberTraffic {
                        name: "laptop".into(),
                        handshake_age_secs: Some(12),
                        rx_bytes: 4096,
                        tx_bytes: 2048,
                        connected: true,
                    },
                    crate::control::MemberTraffic {
                        name: "class-1".into(),
                        handshake_age_secs: None,
                        rx_bytes: 0,
                        tx_bytes: 0,
                        connected: false,
                    },
                ],
                wg_rx_dropped: vec![("auth".into(), 5), ("replay".into(), 1)],
            })
        }

        fn flows(&self) -> Option<FlowMetrics> {
            let mut cumulative = vec![0; rtt_bucket_bounds().len()];
            for n in &mut cumulative[14..] {
                *n = 2; // two samples in [16.4 ms, 32.8 ms)
            }
            Some(FlowMetrics {
                rtt: vec![RttHistogram {
                    vni: 100,
                    peer: Ipv4Addr::new(198, 18, 0, 2),
                    cumulative,
                    count: 2,
                    sum_secs: 0.041,
                }],
                counts: vec![(100, 3)],
            })
        }

        fn peer_rtts(&self) -> Option<Vec<(Ipv4Addr, PeerRtt)>> {
            let answered = PeerRtt {
                srtt_ns: Some(20_500_000),
                reachable: true,
                ..PeerRtt::default()
            };
            Some(vec![
                (Ipv4Addr::new(198, 18, 0, 2), answered),
                (Ipv4Addr::new(198, 18, 0, 3), PeerRtt::default()),
            ])
        }

        fn status(&self) -> Result<NodeStatus, NodeError> {
            if self.fail {
                return Err(NodeError::Starting);
            }
            Ok(NodeStatus {
                node: "pve1".into(),
                vtep: Ipv4Addr::new(198, 18, 0, 1),
                underlay: "eth0".into(),
                datapath: DatapathMode::Tc,
                underlay_mtu: 1500,
                pid: 1,
                uptime_secs: 1,
                adopted: false,
                links: Vec::new(),
                member: None,
                vnis: vec![VniStatus {
                    vni: 100,
                    bridge: "vnet100".into(),
                    port: "vlp100".into(),
                    peers: 1,
                    fdb_entries: 4,
                    bypass: Some(BypassStatus {
                        ports: vec!["tap100i0".into(), "tap101i0".into()],
                        xdp_ports: Vec::new(),
                        refused: vec![RefusedPort {
                            port: "fwpr102p0".into(),
                            reason: "behind a Proxmox firewall bridge (fwbr102i0)".into(),
                        }],
                        crowded: Vec::new(),
                    }),
                }],
                drops: vec![
                    DropCount {
                        reason: "unknown_vni".into(),
                        packets: 4,
                    },
                    DropCount {
                        reason: "truncated".into(),
                        packets: 0,
                    },
                ],
                relay: true,
                relayed: vec![
                    RelayCount {
                        direction: "to_members".into(),
                        packets: 12,
                        bytes: 1200,
                    },
                    RelayCount {
                        direction: "to_zone".into(),
                        packets: 0,
                        bytes: 0,
                    },
                ],
                suppression: Suppression {
                    arp_replied: 7,
                    ..Suppression::default()
                },
            })
        }

        fn peers(&self) -> Result<Vec<PeerStatus>, NodeError> {
            Ok(vec![
                PeerStatus {
                    vni: 100,
                    vtep: Ipv4Addr::new(198, 18, 0, 2),
                    rx_packets: 7,
                    rx_bytes: 700,
                    tx_packets: 9,
                    tx_bytes: 900,
                    next_hop: "02:00:00:00:00:02".to_owned(),
                    rtt_ns: None,
                },
                PeerStatus {
                    vni: 200,
                    vtep: Ipv4Addr::new(198, 18, 0, 3),
                    rx_packets: 0,
                    rx_bytes: 0,
                    tx_packets: 1,
                    tx_bytes: 60,
                    next_hop: "02:00:00:00:00:02".to_owned(),
                    rtt_ns: None,
                },
            ])
        }

        fn fdb_counts(&self) -> Result<Vec<(u32, FdbKind, u64)>, NodeError> {
            Ok(vec![(100, FdbKind::Learned, 3), (100, FdbKind::Static, 1)])
        }

        fn fdb_capacity(&self) -> Option<FdbCapacity> {
            Some(FdbCapacity {
                capacity: vec![(100, 4096), (200, 10)],
                refused: vec![(200, 5)],
            })
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn render_exact_samples() {
        let text = render(&Fake { fail: false });
        let all = lines(&text);
        for expected in [
            "# TYPE vlnet_tunnel_rx_packets_total counter",
            r#"vlnet_tunnel_rx_packets_total{peer="198.18.0.2",vni="100"} 7"#,
            r#"vlnet_tunnel_rx_packets_total{peer="198.18.0.3",vni="200"} 0"#,
            r#"vlnet_tunnel_rx_bytes_total{peer="198.18.0.2",vni="100"} 700"#,
            r#"vlnet_tunnel_tx_packets_total{peer="198.18.0.2",vni="100"} 9"#,
            r#"vlnet_tunnel_tx_bytes_total{peer="198.18.0.3",vni="200"} 60"#,
            "# TYPE vlnet_drops_total counter",
            r#"vlnet_drops_total{reason="unknown_vni"} 4"#,
            r#"vlnet_drops_total{reason="truncated"} 0"#,
            r#"vlnet_drops_total{reason="looped"} 0"#,
            "# TYPE vlnet_fdb_entries gauge",
            r#"vlnet_fdb_entries{kind="learned",vni="100"} 3"#,
            r#"vlnet_fdb_entries{kind="static",vni="100"} 1"#,
            "# TYPE vlnet_fdb_capacity gauge",
            r#"vlnet_fdb_capacity{vni="100"} 4096"#,
            r#"vlnet_fdb_capacity{vni="200"} 10"#,
            "# TYPE vlnet_fdb_refused_total counter",
            r#"vlnet_fdb_refused_total{vni="100"} 0"#,
            r#"vlnet_fdb_refused_total{vni="200"} 5"#,
            r#"vlnet_node_info{datapath="tc",node="pve1",vtep="198.18.0.1"} 1"#,
            "# TYPE vlnet_relay_packets_total counter",
            r#"vlnet_relay_packets_total{direction="to_members"} 12"#,
            r#"vlnet_relay_packets_total{direction="to_zone"} 0"#,
            r#"vlnet_relay_bytes_total{direction="to_members"} 1200"#,
            "vlnet_up 1",
            "vlnet_control_rejected_total{reason=\"forged\"} 2",
            "vlnet_control_rejected_total{reason=\"not_member\"} 0",
            "vlnet_control_sessions 3",
            "vlnet_mac_frozen 1",
            "vlnet_path_switch_seconds_bucket{le=\"0.0001\"} 0",
            "vlnet_path_switch_seconds_bucket{le=\"0.0005\"} 1",
            "vlnet_path_switch_seconds_bucket{le=\"+Inf\"} 1",
            "vlnet_path_switch_seconds_count 1",
            "vlnet_mac_moves_total{kind=\"remote\"} 4",
            "vlnet_mac_moves_total{kind=\"local\"} 1",
            "vlnet_mac_moves_total{kind=\"arrived\"} 2",
            "# TYPE vlnet_evpn_session_up gauge",
            r#"vlnet_evpn_session_up{neighbor="198.18.0.2:179"} 1"#,
            r#"vlnet_evpn_routes{neighbor="198.18.0.2:179",type="imet"} 2"#,
            r#"vlnet_evpn_routes{neighbor="198.18.0.2:179",type="mac"} 7"#,
            "# TYPE vlnet_bypass_packets_total counter",
            r#"vlnet_bypass_packets_total{direction="rx"} 30"#,
            r#"vlnet_bypass_packets_total{direction="tx"} 20"#,
            "# TYPE vlnet_bypass_ports gauge",
            r#"vlnet_bypass_ports{state="bypassed",vni="100"} 2"#,
            r#"vlnet_bypass_ports{state="refused",vni="100"} 1"#,
            "# TYPE vlnet_flow_rtt_seconds histogram",
            r#"vlnet_flow_rtt_seconds_bucket{peer="198.18.0.2",vni="100",le="0.000002"} 0"#,
            r#"vlnet_flow_rtt_seconds_bucket{peer="198.18.0.2",vni="100",le="0.016384"} 0"#,
            r#"vlnet_flow_rtt_seconds_bucket{peer="198.18.0.2",vni="100",le="0.032768"} 2"#,
            r#"vlnet_flow_rtt_seconds_bucket{peer="198.18.0.2",vni="100",le="+Inf"} 2"#,
            r#"vlnet_flow_rtt_seconds_sum{peer="198.18.0.2",vni="100"} 0.041"#,
            r#"vlnet_flow_rtt_seconds_count{peer="198.18.0.2",vni="100"} 2"#,
            r#"vlnet_flows{vni="100"} 3"#,
            r#"vlnet_peer_rtt_seconds{peer="198.18.0.2"} 0.0205"#,
            r#"vlnet_peer_reachable{peer="198.18.0.2"} 1"#,
            r#"vlnet_peer_reachable{peer="198.18.0.3"} 0"#,
            r#"vlnet_member_handshake_age_seconds{member="laptop"} 12"#,
            r#"vlnet_member_rx_bytes_total{member="laptop"} 4096"#,
            r#"vlnet_member_tx_bytes_total{member="laptop"} 2048"#,
            r#"vlnet_member_connected{member="laptop"} 1"#,
            r#"vlnet_member_rx_bytes_total{member="class-1"} 0"#,
            r#"vlnet_member_connected{member="class-1"} 0"#,
            r#"vlnet_wg_rx_dropped_total{reason="auth"} 5"#,
            r#"vlnet_wg_rx_dropped_total{reason="replay"} 1"#,
            "# TYPE process_resident_memory_bytes gauge",
        ] {
            assert!(all.contains(&expected), "missing {expected:?} in\n{text}");
        }
        assert!(
            !text.contains(r#"vlnet_member_handshake_age_seconds{member="class-1"}"#),
            "no made-up age before a handshake:\n{text}"
        );
        let build = format!(
            r#"vlnet_build_info{{commit="{}",version="{}"}} 1"#,
            crate::COMMIT,
            crate::VERSION
        );
        assert!(
            all.contains(&build.as_str()),
            "missing {build:?} in\n{text}"
        );
        assert_ne!(crate::COMMIT, "unknown", "built from a git checkout");
        let drops = all
            .iter()
            .filter(|l| l.starts_with("vlnet_drops_total{"))
            .count();
        assert_eq!(drops, vlnet_ebpf::abi::DROP_REASON_NAMES.len(), "{text}");
        for spec in SPECS {
            assert!(
                all.contains(&format!("# HELP {} {}", spec.name, spec.help).as_str()),
                "help of {} missing in\n{text}",
                spec.name
            );
        }
    }

    #[test]
    fn failed_source_is_down_without_made_up_counters() {
        let text = render(&Fake { fail: true });
        assert!(lines(&text).contains(&"vlnet_up 0"), "{text}");
        assert!(!text.contains("vlnet_drops_total{"), "{text}");
        assert!(!text.contains("vlnet_node_info{"), "{text}");
        // What could be read is still there.
        assert!(text.contains("vlnet_tunnel_rx_packets_total{"), "{text}");
    }

    #[test]
    fn collector_works_in_a_registry() {
        let registry = prometheus::Registry::new();
        let collector = VlnetCollector::new(Arc::new(Fake { fail: false })).unwrap();
        registry.register(Box::new(collector)).unwrap();
        let gathered = registry.gather();
        let names: Vec<&str> = gathered.iter().map(MetricFamily::name).collect();
        assert!(names.contains(&"vlnet_up"), "{names:?}");
        assert!(names.contains(&"vlnet_drops_total"), "{names:?}");
    }

    fn http_get(addr: SocketAddr, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_serves_metrics_and_404s_the_rest() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve_listener(listener, Arc::new(Fake { fail: false })));

        let (ok, missing) =
            tokio::task::spawn_blocking(move || (http_get(addr, "/metrics"), http_get(addr, "/")))
                .await
                .unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4\r\n"),
            "{ok}"
        );
        assert!(ok.contains("\nvlnet_up 1\n"), "{ok}");
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing}"
        );
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scrape_is_served_past_a_cap_full_of_idle_connections() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve_listener(listener, Arc::new(Fake { fail: false })));
        let idle: Vec<tokio::net::TcpStream> = futures::future::join_all(
            (0..3 * METRICS_LIMITS.max_conns).map(|_| tokio::net::TcpStream::connect(addr)),
        )
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
        let started = std::time::Instant::now();
        let ok = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
            .await
            .unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // All but the cap's worth of idle connections were closed (the
        // scrape's own evicted one more).
        let evicted = crate::conn_limit::tests::closed_count(idle).await;
        assert_eq!(evicted, 2 * METRICS_LIMITS.max_conns + 1);
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_oversized_request_head_is_refused() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve_listener(listener, Arc::new(Fake { fail: false })));
        let answer = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let padding = "x".repeat(MAX_REQUEST_HEAD);
            // The server may close before reading it all.
            let _ = write!(
                stream,
                "GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Pad: {padding}\r\n\r\n"
            );
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            answer
        })
        .await
        .unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 431 "),
            "{}",
            &answer[..answer.len().min(200)]
        );
        server.abort();
    }

    #[test]
    fn bind_error_names_the_address() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let err = bind(addr).unwrap_err().to_string();
        assert!(err.contains(&addr.to_string()), "{err}");
        assert!(err.contains("node.metrics_listen"), "{err}");
    }
}
