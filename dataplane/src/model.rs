//! What the node reports about itself: the records the admin API returns,
//! `vlnet ctl` prints and `/metrics` exports. Plain data, serialisable.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// How the underlay decapsulates: at XDP or at TC ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatapathMode {
    /// TC ingress on the underlay (keeps GSO/GRO; best on veth).
    Tc,
    /// XDP on the underlay (earliest drop point; for native-XDP NICs).
    Xdp,
}

/// Node-wide state, `vlnet ctl status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node name from the config.
    pub node: String,
    /// Local VTEP address.
    pub vtep: Ipv4Addr,
    /// Underlay interface name.
    pub underlay: String,
    /// Decap mode in use.
    pub datapath: DatapathMode,
    /// Underlay L3 MTU; overlay ports get this minus 50.
    pub underlay_mtu: u32,
    /// Daemon process id.
    pub pid: u32,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Whether this daemon adopted programs pinned by a previous one.
    pub adopted: bool,
    /// Every program link of the node and what this daemon did with it.
    #[serde(default)]
    pub links: Vec<LinkStatus>,
    /// Configured VNIs.
    pub vnis: Vec<VniStatus>,
    /// Dropped packets by reason (every reason, zeros included).
    pub drops: Vec<DropCount>,
    /// Whether this node relays between static peers and members (a
    /// gateway: the controller).
    #[serde(default)]
    pub relay: bool,
    /// Frames relayed, by direction (zeros on a node that does not relay).
    #[serde(default)]
    pub relayed: Vec<RelayCount>,
    /// On a joined member: its membership (controller, tunnel, session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<Box<crate::control::MemberStatus>>,
    /// ARP/ND suppression: requests answered or kept here, bindings held.
    #[serde(default)]
    pub suppression: Suppression,
}

/// ARP/ND suppression on a node (`ebpf/c/lib/neigh.h`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// ARP requests answered here for a VM behind another VTEP.
    pub arp_replied: u64,
    /// Neighbour solicitations answered here for a VM behind another VTEP.
    pub nd_replied: u64,
    /// ARP requests for a VM on this node: its bridge delivered them, no
    /// tunnel carried them.
    pub arp_local: u64,
    /// Neighbour solicitations for a VM on this node, likewise.
    pub nd_local: u64,
    /// Snooped bindings not recorded because the table was full.
    pub snoop_full: u64,
    /// Bindings snooped from this node's VMs.
    pub bindings_local: u64,
    /// Bindings from the control plane.
    pub bindings_control: u64,
    /// Bindings snooped from the zone's VMs (frames from static peers).
    #[serde(default)]
    pub bindings_zone: u64,
}

/// What the daemon did with one of its program links (a program attached
/// to an interface, pinned so that it outlives the daemon).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The program, e.g. `tc_overlay_tx`.
    pub program: String,
    /// The interface it runs on.
    pub interface: String,
    /// What happened to it.
    pub action: LinkAction,
    /// Why, for a re-attach or an upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What the daemon did with a program link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkAction {
    /// Attached by this daemon (nothing was pinned for it).
    Attached,
    /// Pinned by a previous daemon, running on its live interface: kept.
    Adopted,
    /// Pinned by a previous daemon with other code: switched atomically to
    /// this build's program.
    Upgraded,
    /// Pinned, but no longer running on the interface it names (deleted and
    /// recreated, say): attached again.
    Reattached,
}

/// What a reload changed (`vlnet ctl reload`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// One line per change, in words (none: the file had not changed).
    pub changes: Vec<String>,
    /// How long applying it took, ms.
    pub took_ms: u64,
}

/// One VNI on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VniStatus {
    /// VXLAN network identifier.
    pub vni: u32,
    /// Local bridge the overlay port is a member of.
    pub bridge: String,
    /// Bridge-side end of the overlay port.
    pub port: String,
    /// Number of remote VTEPs in the flood list.
    pub peers: usize,
    /// FDB entries for this VNI.
    pub fdb_entries: usize,
    /// The bridge bypass, when the VNI has it on (`[[vni]] bypass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypass: Option<BypassStatus>,
}

/// The bridge bypass of one VNI: which of its bridge's ports take it, and
/// why the others do not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BypassStatus {
    /// Ports that take the bypass (`tc_vm_tx` attached).
    pub ports: Vec<String>,
    /// Those of them the XDP decap delivers to as XDP frames (a tap, or a
    /// veth whose peer runs a native XDP program; XDP datapath only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xdp_ports: Vec<String>,
    /// Ports left to the bridge.
    pub refused: Vec<RefusedPort>,
    /// Ports that sent from more MACs than the bypass takes from one port
    /// (their surplus takes the bridge).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crowded: Vec<CrowdedPort>,
}

/// A bypassed port with more MACs behind it than its share of the bypass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrowdedPort {
    /// Its name.
    pub port: String,
    /// How many of its MACs the bridge carries instead.
    pub left_to_bridge: usize,
}

/// A bridge port left out of the bypass, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedPort {
    /// Its name.
    pub port: String,
    /// Why, e.g. `behind a Proxmox firewall bridge (fwbr100i0)`.
    pub reason: String,
}

/// Dropped packets for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCount {
    /// Reason name, as in `vlnet_drops_total{reason}`.
    pub reason: String,
    /// Packets dropped.
    pub packets: u64,
}

/// Copies a gateway relayed in one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayCount {
    /// `to_members` (from static peers) or `to_zone` (from members), as in
    /// `vlnet_relay_packets_total{direction}`.
    pub direction: String,
    /// Copies sent (GSO packets counted in segments).
    pub packets: u64,
    /// Their inner frame bytes.
    pub bytes: u64,
}

/// A remote VTEP of one VNI and the traffic exchanged with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// VXLAN network identifier.
    pub vni: u32,
    /// Remote VTEP address.
    pub vtep: Ipv4Addr,
    /// Inner frames received from the peer.
    pub rx_packets: u64,
    /// Inner bytes received from the peer.
    pub rx_bytes: u64,
    /// Inner frames sent to the peer.
    pub tx_packets: u64,
    /// Inner bytes sent to the peer.
    pub tx_bytes: u64,
    /// Underlay next hop: its MAC when resolved, `tunnel #<ifindex>` through
    /// an L3 device (WireGuard), else `unresolved` (the kernel is resolving
    /// it) or `no route`.
    pub next_hop: String,
    /// Underlay RTT to the peer (smoothed, from the probes), once measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ns: Option<u64>,
}

/// The EVPN speaker, `vlnet ctl evpn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvpnReport {
    /// The BGP sessions, one per `[evpn] neighbors` entry.
    pub neighbors: Vec<EvpnNeighbor>,
    /// The EVPN VNIs.
    pub vnis: Vec<EvpnVni>,
}

/// One BGP session of the EVPN speaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvpnNeighbor {
    /// The route reflector's address and port.
    pub neighbor: String,
    /// `established` or `down` (connecting, or waiting to retry).
    pub state: String,
    /// Seconds since the session came up, while it is.
    pub uptime_secs: Option<u64>,
    /// MAC/IP (type 2) routes held from it.
    pub mac_routes: u64,
    /// Inclusive multicast (type 3) routes held from it.
    pub imet_routes: u64,
}

/// One EVPN VNI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvpnVni {
    /// The VNI.
    pub vni: u32,
    /// This node's MACs, advertised as type-2 routes.
    pub local_macs: u64,
    /// MACs behind other VTEPs, from type-2 routes.
    pub remote_macs: u64,
    /// The flood list, from type-3 routes.
    pub vteps: Vec<Ipv4Addr>,
}

/// How an FDB entry got there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FdbKind {
    /// From the config; never aged or learned over.
    Static,
    /// Learned from a decapsulated frame; ages out.
    Learned,
    /// From the control plane; never aged, but a frame from another VTEP
    /// moves it (it becomes learned there).
    Control,
}

/// One MAC location, `vlnet ctl fdb`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbRecord {
    /// VXLAN network identifier.
    pub vni: u32,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Remote VTEP the MAC lives behind.
    pub vtep: Ipv4Addr,
    /// Static, learned or control.
    pub kind: FdbKind,
    /// Seconds since the entry was last confirmed.
    pub age_secs: u64,
}

/// A byte count in binary units: `700 B`, `1.5 MiB`.
#[must_use]
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[allow(
        clippy::cast_precision_loss,
        reason = "one decimal is shown; f64 is exact far beyond that"
    )]
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration in nanoseconds as milliseconds with two decimals (`20.41 ms`).
#[must_use]
pub fn human_millis(ns: f64) -> String {
    format!("{:.2} ms", ns / 1e6)
}
