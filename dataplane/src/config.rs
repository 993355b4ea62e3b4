//! The node config, `/etc/vlnet/vlnet.toml`: its types, defaults and
//! validation.
//!
//! [`Config::load`] parses and validates in one step, before anything touches
//! the system, so a bad config never half-applies. Every validation message
//! names the key (`vni[1].id`), says what is wrong and what is allowed.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::limits::{MAX_IFNAME, MAX_NODE_NAME, MAX_VNI};
use crate::mac::MacAddr;
use crate::proxmox_sdn::Zone;

mod evpn;
mod open_ports;

pub use evpn::{EvpnConfig, Neighbor, Rd, Rt, BGP_PORT};
pub use open_ports::{port_set, BadPortRange, PortRange, PortRangeError, Proto};

/// Where the daemon looks for its config unless `--config` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vlnet/vlnet.toml";
/// Default `node.state_dir`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vlnet";
/// Default `node.api_socket`.
pub const DEFAULT_API_SOCKET: &str = "/run/vlnet/vlnet.sock";
/// Default `node.metrics_listen`.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9469));
/// Default `node.ttl` (outer IPv4 TTL), as the kernel vxlan driver uses.
pub const DEFAULT_TTL: u8 = 64;
/// Default `node.fdb_ageing_secs` (the kernel vxlan driver's ageing time).
pub const DEFAULT_FDB_AGEING_SECS: u64 = 300;
/// Default `node.fdb_max_per_vni`: MAC addresses one VNI may hold in the FDB.
pub const DEFAULT_FDB_MAX_PER_VNI: u32 = 4096;
/// Entries of the kernel's FDB, shared by every VNI: the VNIs' capacities
/// may not add up to more.
pub const FDB_MAX: u32 = vlnet_ebpf::abi::VLNET_FDB_MAX;
/// Most host ports open to members (`wireguard.open_ports` plus, on a
/// controller, the control port): the kernel map's size.
pub const MAX_OPEN_PORTS: usize = vlnet_ebpf::abi::VLNET_OPEN_PORTS_MAX as usize;
/// Default `wireguard.ifname`.
pub const DEFAULT_WG_IFNAME: &str = "vlwg0";
/// Default `wireguard.listen_port` (WireGuard's customary port).
pub const DEFAULT_WG_PORT: u16 = 51820;
/// Default `wireguard.keepalive_secs` (what `wg` users set behind NAT).
pub const DEFAULT_KEEPALIVE_SECS: u16 = 25;
/// Default `wireguard.control_port`.
pub const DEFAULT_CONTROL_PORT: u16 = 7470;
/// Largest DSCP value (6 bits).
pub const MAX_DSCP: u8 = 63;
/// Most static peers per VNI (a quarter of the kernel's flood list,
/// `VLNET_MAX_FLOOD`; members take the rest).
pub const MAX_PEERS_PER_VNI: usize = vlnet_ebpf::abi::VLNET_MAX_FLOOD as usize / 4;
/// Default `wireguard.max_members_per_vni`: a class of students and then some.
pub const DEFAULT_MAX_MEMBERS_PER_VNI: u32 = 1024;
/// Largest `wireguard.max_members_per_vni`: with every static peer and the
/// controller, a VNI's flood list still fits `VLNET_MAX_FLOOD`.
pub const MAX_MEMBERS_PER_VNI: u32 =
    vlnet_ebpf::abi::VLNET_MAX_FLOOD - MAX_PEERS_PER_VNI as u32 - 1;

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}: {source}{}", path.display(), read_hint(source))]
    Read {
        /// Config file path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema (unknown key,
    /// wrong type). The message carries line and column.
    #[error("config {}: {message}", path.display())]
    Parse {
        /// Config file path.
        path: PathBuf,
        /// toml's message, with line, column and the offending text.
        message: String,
    },
    /// The file parsed but a value breaks a rule.
    #[error("config {}: {key}: {message}", path.display())]
    Invalid {
        /// Config file path.
        path: PathBuf,
        /// The offending key, e.g. `vni[1].id`.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The Proxmox SDN zone `[proxmox]` names cannot be used.
    #[error("config {}: [proxmox]: {message}", path.display())]
    Zone {
        /// Config file path.
        path: PathBuf,
        /// What is wrong, naming the zone's file (and line).
        message: String,
    },
}

/// What to do about a config that cannot be read.
fn read_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::NotFound => {
            "; write one (every key is explained in vlnet.toml.example, under \
             /usr/share/doc/vlnet/) or give --config PATH"
        }
        std::io::ErrorKind::PermissionDenied => "; run as root",
        _ => "",
    }
}

/// The whole node config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[node]`: node-wide settings.
    pub node: NodeConfig,
    /// `[[vni]]`: the virtual networks this node bridges.
    #[serde(default)]
    pub vni: Vec<VniConfig>,
    /// `[wireguard]`: the encrypted tunnel and control plane; `None` for a
    /// node that only has static peers (until it joins a controller).
    #[serde(default)]
    pub wireguard: Option<WireguardConfig>,
    /// `[proxmox]`: VNIs and peers taken from a Proxmox SDN VXLAN zone.
    #[serde(default)]
    pub proxmox: Option<ProxmoxConfig>,
    /// `[evpn]`: the BGP EVPN speaker for the VNIs with `evpn = true`.
    #[serde(default)]
    pub evpn: Option<EvpnConfig>,
    /// The zone `[proxmox]` names, as read with the config (its vnets and
    /// peers are already in [`vni`](Self::vni)).
    #[serde(skip)]
    pub sdn_zone: Option<Zone>,
    /// The zone files' [`fingerprint`](crate::proxmox_sdn::fingerprint)
    /// taken before they were read: a watcher reloads when it changes.
    #[serde(skip)]
    pub sdn_fingerprint: Option<u64>,
}

/// `[proxmox]`: serve the vnets of a Proxmox SDN VXLAN zone with the
/// zone's nodes as static peers, read from the cluster's files and followed
/// while the daemon runs (see [`crate::proxmox_sdn`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxmoxConfig {
    /// The SDN directory (`/etc/pve/sdn` on a node of the cluster).
    #[serde(default = "default_sdn_dir")]
    pub sdn: PathBuf,
    /// The VXLAN zone; needed when the cluster has several.
    #[serde(default)]
    pub zone: Option<String>,
}

fn default_sdn_dir() -> PathBuf {
    PathBuf::from(crate::proxmox_sdn::DEFAULT_SDN_DIR)
}

/// A node's part in the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds the registry of members and relays MAC adverts.
    Controller,
    /// Joins a controller with `vlnet ctl join TOKEN`.
    #[default]
    Member,
}

/// `[wireguard]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireguardConfig {
    /// Controller or member.
    #[serde(default)]
    pub role: Role,
    /// The WireGuard interface (unique on the machine: its UAPI socket is
    /// `/var/run/wireguard/<ifname>.sock`).
    #[serde(default = "default_wg_ifname")]
    pub ifname: String,
    /// UDP port WireGuard listens on (0: any free port; members behind NAT
    /// do not need a fixed one).
    #[serde(default = "default_wg_port")]
    pub listen_port: u16,
    /// Controller only: its tunnel address and the pool members' addresses
    /// come from, e.g. `198.19.0.1/24`.
    #[serde(default)]
    pub address: Option<ipnetwork::Ipv4Network>,
    /// Controller only: where members reach its WireGuard port (written into
    /// invite tokens). Default: `node.vtep` (or the underlay's address) and
    /// `listen_port`.
    #[serde(default)]
    pub endpoint: Option<SocketAddr>,
    /// Seconds between WireGuard keepalives, so NAT mappings stay open
    /// (1..=3600).
    #[serde(default = "default_keepalive_secs")]
    pub keepalive_secs: u16,
    /// TCP port of the control protocol, on tunnel addresses only.
    #[serde(default = "default_control_port")]
    pub control_port: u16,
    /// Controller only: MACs one member may hold per VNI (its claims beyond
    /// are refused), 1..=65536.
    #[serde(default = "default_mac_quota")]
    pub mac_quota: u32,
    /// Controller only: members (joined or invited) one VNI may have; an
    /// invite beyond is refused. 1..=[`MAX_MEMBERS_PER_VNI`].
    #[serde(default = "default_max_members_per_vni")]
    pub max_members_per_vni: u32,
    /// Host ports members may reach on this node through the tunnel, besides
    /// VXLAN and (on a controller) the control port: everything else from
    /// the tunnel to the host is dropped. E.g. `["tcp/7000", "udp/5000-5010"]`.
    #[serde(default)]
    pub open_ports: Vec<PortRange>,
}

impl WireguardConfig {
    /// Every `(protocol, port)` open to members: `open_ports`, and the
    /// control port on a controller.
    #[must_use]
    pub fn open_port_set(&self) -> BTreeSet<(Proto, u16)> {
        let mut set = port_set(&self.open_ports);
        if self.role == Role::Controller {
            set.insert((Proto::Tcp, self.control_port));
        }
        set
    }
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name, `[a-z0-9-]`, at most 32 characters.
    pub name: String,
    /// Interface that carries VXLAN.
    pub underlay: String,
    /// Local VTEP address; `None` means the first IPv4 address of `underlay`.
    #[serde(default)]
    pub vtep: Option<Ipv4Addr>,
    /// Persistent state directory.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Admin API Unix socket.
    #[serde(default = "default_api_socket")]
    pub api_socket: PathBuf,
    /// Address `/metrics` listens on.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: SocketAddr,
    /// Decap mode on the underlay.
    #[serde(default)]
    pub datapath: DatapathSetting,
    /// Outer IPv4 TTL, 1..=255.
    #[serde(default = "default_ttl")]
    pub ttl: u8,
    /// Outer DSCP: fixed, or inherited from the inner packet.
    #[serde(default)]
    pub dscp: DscpSetting,
    /// Seconds before an unconfirmed learned FDB entry expires (> 0).
    #[serde(default = "default_fdb_ageing_secs")]
    pub fdb_ageing_secs: u64,
    /// Track inner flows and measure their RTT in the kernel (`ctl flows`,
    /// `ctl advise`, `vlnet_flow_rtt_seconds`).
    #[serde(default = "default_flow_tracking")]
    pub flow_tracking: bool,
    /// MAC addresses one VNI may hold in the FDB (static, control-plane and
    /// learned entries together), unless its `[[vni]] fdb_max` says
    /// otherwise; also the capacity of VNIs granted by a controller.
    #[serde(default = "default_fdb_max_per_vni")]
    pub fdb_max_per_vni: u32,
}

fn default_flow_tracking() -> bool {
    true
}

/// `[[vni]]`: one virtual network.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VniConfig {
    /// VXLAN network identifier, 1..=16777215.
    pub id: u32,
    /// Local bridge the overlay port joins.
    pub bridge: String,
    /// Static remote VTEPs (the flood list).
    #[serde(default)]
    pub peers: Vec<Ipv4Addr>,
    /// MACs pinned to a peer; never learned over or aged.
    #[serde(default)]
    pub static_fdb: Vec<StaticFdb>,
    /// This VNI's FDB capacity; `node.fdb_max_per_vni` when `None`.
    #[serde(default)]
    pub fdb_max: Option<u32>,
    /// ARP/ND suppression on this VNI ([`Config::arp_suppress`] when `None`).
    #[serde(default)]
    pub arp_suppress: Option<bool>,
    /// The bridge bypass on this VNI (opt-in, see [`crate::bypass`]): known
    /// unicast IP between a local VM's port and the underlay skips the
    /// bridge and the overlay port.
    #[serde(default)]
    pub bypass: bool,
    /// The VNI is EVPN-controlled (needs `[evpn]`): remote MACs and the
    /// flood list come from BGP EVPN routes only.
    #[serde(default)]
    pub evpn: bool,
    /// The EVPN route distinguisher; `None`: FRR's automatic one.
    #[serde(default)]
    pub rd: Option<Rd>,
    /// The EVPN route targets (import and export); empty: FRR's automatic
    /// one, ASN:VNI.
    #[serde(default)]
    pub route_targets: Vec<Rt>,
}

/// One `static_fdb` entry: a MAC pinned behind a VTEP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticFdb {
    /// Unicast, non-zero MAC.
    pub mac: MacAddr,
    /// One of the VNI's peers.
    pub vtep: Ipv4Addr,
}

/// `node.datapath`: which decap mode to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatapathSetting {
    /// TC on veth and on drivers without native XDP, XDP elsewhere.
    #[default]
    Auto,
    /// Always TC ingress.
    Tc,
    /// Always XDP.
    Xdp,
}

/// `node.dscp`: the outer DSCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DscpSetting {
    /// Copy the inner packet's DSCP (`"inherit"`).
    Inherit,
    /// A fixed value, 0..=63.
    Fixed(u8),
}

impl Default for DscpSetting {
    fn default() -> Self {
        DscpSetting::Fixed(0)
    }
}

impl<'de> Deserialize<'de> for DscpSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DscpVisitor;

        impl Visitor<'_> for DscpVisitor {
            type Value = DscpSetting;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "\"inherit\" or an integer 0..={MAX_DSCP}")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<DscpSetting, E> {
                if v == "inherit" {
                    Ok(DscpSetting::Inherit)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DscpSetting, E> {
                u8::try_from(v)
                    .map(DscpSetting::Fixed)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DscpSetting, E> {
                u8::try_from(v)
                    .map(DscpSetting::Fixed)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
        }

        deserializer.deserialize_any(DscpVisitor)
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

fn default_api_socket() -> PathBuf {
    PathBuf::from(DEFAULT_API_SOCKET)
}

fn default_metrics_listen() -> SocketAddr {
    DEFAULT_METRICS_LISTEN
}

fn default_wg_ifname() -> String {
    DEFAULT_WG_IFNAME.to_owned()
}

fn default_wg_port() -> u16 {
    DEFAULT_WG_PORT
}

fn default_keepalive_secs() -> u16 {
    DEFAULT_KEEPALIVE_SECS
}

fn default_control_port() -> u16 {
    DEFAULT_CONTROL_PORT
}

fn default_mac_quota() -> u32 {
    crate::control::core::controller::DEFAULT_MAC_QUOTA
}

fn default_max_members_per_vni() -> u32 {
    DEFAULT_MAX_MEMBERS_PER_VNI
}

fn default_ttl() -> u8 {
    DEFAULT_TTL
}

fn default_fdb_ageing_secs() -> u64 {
    DEFAULT_FDB_AGEING_SECS
}

fn default_fdb_max_per_vni() -> u32 {
    DEFAULT_FDB_MAX_PER_VNI
}

impl Config {
    /// Reads, parses and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `path` is only used in messages.
    /// With `[proxmox]`, the zone's files are read and its vnets merged
    /// into the VNIs before the rules are checked.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config = Self::parse_file_only(text, path)?;
        config.read_proxmox_zone(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// [`load`](Self::load) without reading the Proxmox SDN zone: the
    /// file's own VNIs only (for commands that must work while the
    /// cluster's files cannot be read, e.g. `vlnet ctl teardown`).
    pub fn load_without_zone(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_file_only(&text, path)
    }

    fn parse_file_only(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Reads the zone `[proxmox]` names and merges it into the VNIs.
    fn read_proxmox_zone(&mut self, path: &Path) -> Result<(), ConfigError> {
        let Some(p) = &self.proxmox else {
            return Ok(());
        };
        let invalid = |message: String| ConfigError::Zone {
            path: path.to_owned(),
            message,
        };
        let me = self.node.vtep.ok_or_else(|| {
            invalid(
                "needs node.vtep: this node's own address is left out of the zone's peers"
                    .to_owned(),
            )
        })?;
        // Before reading: a change in between is then seen as one.
        self.sdn_fingerprint = crate::proxmox_sdn::fingerprint(&p.sdn);
        let zone = crate::proxmox_sdn::read_zone(&p.sdn, p.zone.as_deref(), Some(me))
            .map_err(|e| invalid(e.to_string()))?;
        crate::proxmox_sdn::merge(&mut self.vni, &zone);
        self.sdn_zone = Some(zone);
        Ok(())
    }

    /// Whether this node is a gateway, relaying between its static peers
    /// and the members (the controller is).
    #[must_use]
    pub fn is_gateway(&self) -> bool {
        self.wireguard
            .as_ref()
            .is_some_and(|wg| wg.role == Role::Controller)
    }

    /// The static peers of `vni` (none for a VNI not in the file).
    #[must_use]
    pub fn vni_peers(&self, vni: u32) -> &[Ipv4Addr] {
        self.vni
            .iter()
            .find(|v| v.id == vni)
            .map_or(&[], |v| v.peers.as_slice())
    }

    /// Whether `vni` snoops its VMs' ARP/ND and answers requests for known
    /// bindings locally: its `[[vni]] arp_suppress`, else on for nodes with
    /// a control plane (a controller or member: the bindings of the other
    /// nodes' VMs come through it) and on EVPN VNIs (MAC/IP routes bring
    /// them, as `neigh_suppress` in a Proxmox EVPN zone), off on plain
    /// static-peer VNIs (they would only learn their own VMs' bindings, and
    /// their zone floods ARP as the kernel's vxlan does).
    #[must_use]
    pub fn arp_suppress(&self, vni: u32) -> bool {
        let v = self.vni.iter().find(|v| v.id == vni);
        v.and_then(|v| v.arp_suppress)
            .unwrap_or(self.wireguard.is_some() || v.is_some_and(|v| v.evpn))
    }

    /// Whether `vni` has the bridge bypass on (`[[vni]] bypass`; off for a
    /// VNI not in the file, e.g. one granted by a controller).
    #[must_use]
    pub fn bypass(&self, vni: u32) -> bool {
        self.vni.iter().any(|v| v.id == vni && v.bypass)
    }

    /// The FDB capacity of `vni`: its `[[vni]] fdb_max`, else
    /// `node.fdb_max_per_vni` (also for VNIs not in the file).
    #[must_use]
    pub fn fdb_capacity(&self, vni: u32) -> u32 {
        self.vni
            .iter()
            .find(|v| v.id == vni)
            .and_then(|v| v.fdb_max)
            .unwrap_or(self.node.fdb_max_per_vni)
    }

    /// Checks every rule; the first broken one is returned. `path` is only
    /// used in messages.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        self.check().map_err(|(key, message)| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        })
    }

    fn check(&self) -> Result<(), (String, String)> {
        let node = &self.node;
        check_node_name(&node.name).map_err(|m| ("node.name".to_owned(), m))?;
        check_ifname(&node.underlay).map_err(|m| ("node.underlay".to_owned(), m))?;
        if let Some(vtep) = node.vtep {
            check_unicast_ip(vtep).map_err(|m| ("node.vtep".to_owned(), m))?;
        }
        if node.ttl == 0 {
            return Err((
                "node.ttl".to_owned(),
                "0 is out of range (1..=255)".to_owned(),
            ));
        }
        if let DscpSetting::Fixed(v) = node.dscp {
            if v > MAX_DSCP {
                return Err((
                    "node.dscp".to_owned(),
                    format!("{v} is out of range (\"inherit\" or 0..={MAX_DSCP})"),
                ));
            }
        }
        if node.fdb_ageing_secs == 0 {
            return Err((
                "node.fdb_ageing_secs".to_owned(),
                "0 is not allowed (must be at least 1 second)".to_owned(),
            ));
        }
        if self.vni.is_empty() && self.wireguard.is_none() {
            return Err((
                "vni".to_owned(),
                "no [[vni]] sections; at least one is required (or a [wireguard] section, \
                 to receive VNIs from a controller)"
                    .to_owned(),
            ));
        }
        if let Some(wg) = &self.wireguard {
            wg.check()?;
        }
        if let Some(e) = &self.evpn {
            e.check_node(
                node.vtep,
                self.wireguard.as_ref().map(|w| w.role),
                &self.vni,
            )?;
        }
        let mut ids = HashSet::new();
        let mut bridges = HashSet::new();
        for (i, vni) in self.vni.iter().enumerate() {
            let key = |field: &str| format!("vni[{i}].{field}");
            if !(1..=MAX_VNI).contains(&vni.id) {
                return Err((
                    key("id"),
                    format!("{} is out of range (1..={MAX_VNI})", vni.id),
                ));
            }
            if !ids.insert(vni.id) {
                return Err((
                    key("id"),
                    format!(
                        "{} is used by an earlier [[vni]]; ids must be unique",
                        vni.id
                    ),
                ));
            }
            check_ifname(&vni.bridge).map_err(|m| (key("bridge"), m))?;
            if !bridges.insert(vni.bridge.as_str()) {
                return Err((
                    key("bridge"),
                    format!(
                        "{:?} is used by an earlier [[vni]]; each VNI needs its own bridge",
                        vni.bridge
                    ),
                ));
            }
            self.check_peers(i, vni)?;
            evpn::check_vni(i, vni, self.evpn.as_ref())?;
            check_static_fdb(i, vni)?;
            if vni.fdb_max == Some(0) {
                return Err((
                    key("fdb_max"),
                    "0 is not allowed (at least 1; leave it out for node.fdb_max_per_vni)"
                        .to_owned(),
                ));
            }
        }
        self.check_fdb_capacity()
    }

    /// The VNIs' FDB capacities fit the kernel's FDB.
    fn check_fdb_capacity(&self) -> Result<(), (String, String)> {
        let per_vni = self.node.fdb_max_per_vni;
        if !(1..=FDB_MAX).contains(&per_vni) {
            return Err((
                "node.fdb_max_per_vni".to_owned(),
                format!("{per_vni} is out of range (1..={FDB_MAX}, the FDB's size)"),
            ));
        }
        let total: u64 = self
            .vni
            .iter()
            .map(|v| u64::from(self.fdb_capacity(v.id)))
            .sum();
        if total > u64::from(FDB_MAX) {
            let shares: Vec<String> = self
                .vni
                .iter()
                .map(|v| format!("vni {} {}", v.id, self.fdb_capacity(v.id)))
                .collect();
            return Err((
                "vni".to_owned(),
                format!(
                    "the VNIs' FDB capacities add up to {total} ({}), more than the FDB's \
                     {FDB_MAX} entries; lower node.fdb_max_per_vni ({per_vni}) or the \
                     [[vni]] fdb_max values",
                    shares.join(", ")
                ),
            ));
        }
        Ok(())
    }

    fn check_peers(&self, i: usize, vni: &VniConfig) -> Result<(), (String, String)> {
        if vni.peers.len() > MAX_PEERS_PER_VNI {
            return Err((
                format!("vni[{i}].peers"),
                format!(
                    "{} peers; at most {MAX_PEERS_PER_VNI} static peers per VNI (the rest of \
                     the flood list is for members)",
                    vni.peers.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        for (j, &peer) in vni.peers.iter().enumerate() {
            let key = format!("vni[{i}].peers[{j}]");
            check_unicast_ip(peer).map_err(|m| (key.clone(), m))?;
            if Some(peer) == self.node.vtep {
                return Err((
                    key,
                    format!("{peer} is this node's own node.vtep; list only remote VTEPs"),
                ));
            }
            if !seen.insert(peer) {
                return Err((key, format!("{peer} is listed twice")));
            }
        }
        Ok(())
    }
}

impl WireguardConfig {
    fn check(&self) -> Result<(), (String, String)> {
        let key = |field: &str| format!("wireguard.{field}");
        check_ifname(&self.ifname).map_err(|m| (key("ifname"), m))?;
        if !(1..=3600).contains(&self.keepalive_secs) {
            return Err((
                key("keepalive_secs"),
                format!("{} is out of range (1..=3600)", self.keepalive_secs),
            ));
        }
        if self.control_port == 0 {
            return Err((key("control_port"), "0 is not a port".to_owned()));
        }
        if !(1..=65536).contains(&self.mac_quota) {
            return Err((
                key("mac_quota"),
                format!("{} is out of range (1..=65536)", self.mac_quota),
            ));
        }
        if !(1..=MAX_MEMBERS_PER_VNI).contains(&self.max_members_per_vni) {
            return Err((
                key("max_members_per_vni"),
                format!(
                    "{} is out of range (1..={MAX_MEMBERS_PER_VNI}: a VNI's flood list holds \
                     {} VTEPs, static peers and the controller included)",
                    self.max_members_per_vni,
                    vlnet_ebpf::abi::VLNET_MAX_FLOOD
                ),
            ));
        }
        let open = self.open_port_set().len();
        if open > MAX_OPEN_PORTS {
            return Err((
                key("open_ports"),
                format!(
                    "{open} ports in all (the control port included on a controller); \
                     at most {MAX_OPEN_PORTS}"
                ),
            ));
        }
        match (self.role, self.address) {
            (Role::Controller, None) => Err((
                key("address"),
                "a controller needs its tunnel address and pool, e.g. \"198.19.0.1/24\"".to_owned(),
            )),
            (Role::Controller, Some(net)) if net.prefix() > 30 => Err((
                key("address"),
                format!(
                    "/{} leaves no addresses for members; use /30 or shorter",
                    net.prefix()
                ),
            )),
            (Role::Controller, Some(net))
                if net.ip() == net.network() || net.ip() == net.broadcast() =>
            {
                Err((
                    key("address"),
                    format!("{} is not a host address of {net}", net.ip()),
                ))
            }
            (Role::Member, Some(_)) => Err((
                key("address"),
                "only a controller sets it; a member gets its address from its invite token"
                    .to_owned(),
            )),
            (Role::Member, _) if self.endpoint.is_some() => Err((
                key("endpoint"),
                "only a controller sets it (it is written into invite tokens)".to_owned(),
            )),
            _ => Ok(()),
        }
    }
}

fn check_static_fdb(i: usize, vni: &VniConfig) -> Result<(), (String, String)> {
    let mut macs = HashSet::new();
    for (j, entry) in vni.static_fdb.iter().enumerate() {
        let key = |field: &str| format!("vni[{i}].static_fdb[{j}].{field}");
        if entry.mac.is_zero() || !entry.mac.is_unicast() {
            return Err((
                key("mac"),
                format!(
                    "{} is not a host address; only non-zero unicast MACs \
                     (first octet even) can be pinned",
                    entry.mac
                ),
            ));
        }
        if !macs.insert(entry.mac) {
            return Err((
                key("mac"),
                format!("{} is listed twice in this VNI", entry.mac),
            ));
        }
        if !vni.peers.contains(&entry.vtep) {
            return Err((
                key("vtep"),
                format!(
                    "{} is not one of vni[{i}].peers; a static entry must point at a peer",
                    entry.vtep
                ),
            ));
        }
    }
    Ok(())
}

fn check_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty; give the node a name of [a-z0-9-]".to_owned());
    }
    if name.len() > MAX_NODE_NAME {
        return Err(format!(
            "{name:?} is {} characters; at most {MAX_NODE_NAME} allowed",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{name:?} contains {c:?}; only lowercase letters, digits and '-' are allowed"
        ));
    }
    Ok(())
}

/// Linux's `dev_valid_name`: 1..=15 bytes, not `.` or `..`, no `/`, `:` or
/// whitespace.
fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty; an interface name has 1..=15 characters".to_owned());
    }
    if name.len() > MAX_IFNAME {
        return Err(format!(
            "{name:?} is {} bytes; interface names have at most {MAX_IFNAME}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "{name:?} contains {c:?}; interface names cannot contain '/', ':' or whitespace"
        ));
    }
    Ok(())
}

fn check_unicast_ip(ip: Ipv4Addr) -> Result<(), String> {
    if ip.is_unspecified() {
        Err(format!("{ip} is not a VTEP address (unspecified)"))
    } else if ip.is_multicast() {
        Err(format!(
            "{ip} is multicast; VTEPs must be unicast (multicast flooding is not supported)"
        ))
    } else if ip.is_broadcast() {
        Err(format!("{ip} is broadcast; VTEPs must be unicast"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../deploy/vlnet.toml.example");

    const MINIMAL: &str = r#"
[node]
name = "pve1"
underlay = "eth0"

[[vni]]
id = 100
bridge = "vnet100"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/test/vlnet.toml"))
    }

    /// Parses `MINIMAL` plus `extra` lines appended to `[node]` and a second
    /// VNI section, expecting an `Invalid` error on `key`.
    fn invalid(text: &str, key: &str) -> String {
        match parse(text) {
            Err(ConfigError::Invalid {
                key: k, message, ..
            }) => {
                assert_eq!(k, key, "wrong key; message: {message}");
                let shown = parse(text).unwrap_err().to_string();
                assert!(shown.contains("/test/vlnet.toml"), "{shown}");
                assert!(shown.contains(key), "{shown}");
                message
            }
            other => panic!("expected Invalid on {key}, got {other:?}"),
        }
    }

    fn with_node(extra: &str) -> String {
        MINIMAL.replace(
            "underlay = \"eth0\"\n",
            &format!("underlay = \"eth0\"\n{extra}\n"),
        )
    }

    fn with_vni(body: &str) -> String {
        format!("{MINIMAL}\n[[vni]]\n{body}\n")
    }

    #[test]
    fn a_proxmox_zone_gives_vnis_and_peers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("zones.cfg"),
            "vxlan: class\n\tpeers 198.18.0.1,198.18.0.2,198.18.0.3\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("vnets.cfg"),
            "vnet: vnet100\n\tzone class\n\ttag 100\n\nvnet: vnet200\n\tzone class\n\ttag 200\n",
        )
        .unwrap();
        let section = format!("\n[proxmox]\nsdn = {:?}\n", dir.path());
        let text = format!("{}{section}", with_node("vtep = \"198.18.0.1\""));
        let config = parse(&text).unwrap();
        let peers = |id: u32| {
            config
                .vni
                .iter()
                .find(|v| v.id == id)
                .unwrap()
                .peers
                .clone()
        };
        let zone: Vec<Ipv4Addr> =
            vec!["198.18.0.2".parse().unwrap(), "198.18.0.3".parse().unwrap()];
        assert_eq!(peers(100), zone, "the file's VNI 100 gets the zone's peers");
        assert_eq!(config.vni[0].bridge, "vnet100");
        assert_eq!(peers(200), zone, "vnet200 is served too");
        assert_eq!(config.sdn_zone.as_ref().unwrap().id, "class");

        let zone_error = |text: &str| match parse(text) {
            Err(e @ ConfigError::Zone { .. }) => e.to_string(),
            other => panic!("expected a zone error, got {other:?}"),
        };
        let message = zone_error(&format!("{MINIMAL}{section}"));
        assert!(message.contains("[proxmox]: needs node.vtep"), "{message}");
        let missing = format!(
            "{}\n[proxmox]\nsdn = \"/nonexistent/sdn\"\n",
            with_node("vtep = \"198.18.0.1\"")
        );
        let message = zone_error(&missing);
        assert!(message.contains("/nonexistent/sdn/zones.cfg"), "{message}");
        let path = std::env::temp_dir().join(format!("vlt-zone-cfg-{}.toml", std::process::id()));
        std::fs::write(&path, &missing).unwrap();
        let file_only = Config::load_without_zone(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(file_only.vni.len(), 1, "the file's VNIs");
    }

    #[test]
    fn minimal_gets_every_default() {
        let config = parse(MINIMAL).unwrap();
        let node = &config.node;
        assert_eq!(node.name, "pve1");
        assert_eq!(node.underlay, "eth0");
        assert_eq!(node.vtep, None);
        assert_eq!(node.state_dir, Path::new("/var/lib/vlnet"));
        assert_eq!(node.api_socket, Path::new("/run/vlnet/vlnet.sock"));
        assert_eq!(node.metrics_listen, "127.0.0.1:9469".parse().unwrap());
        assert_eq!(node.datapath, DatapathSetting::Auto);
        assert_eq!(node.ttl, 64);
        assert_eq!(node.dscp, DscpSetting::Fixed(0));
        assert_eq!(node.fdb_ageing_secs, 300);
        assert_eq!(config.vni.len(), 1);
        assert_eq!(config.vni[0].id, 100);
        assert_eq!(config.vni[0].bridge, "vnet100");
        assert!(config.vni[0].peers.is_empty());
        assert!(config.vni[0].static_fdb.is_empty());
    }

    #[test]
    fn full_config_parses() {
        let text = r#"
[node]
name = "client-7"
underlay = "enp1s0"
vtep = "198.18.0.1"
state_dir = "/srv/vlnet"
api_socket = "/tmp/v.sock"
metrics_listen = "[::1]:9500"
datapath = "xdp"
ttl = 32
dscp = "inherit"
fdb_ageing_secs = 60

[[vni]]
id = 16777215
bridge = "vmbr1"
peers = ["198.18.0.2", "198.18.0.3"]
static_fdb = [{ mac = "02:00:00:00:00:01", vtep = "198.18.0.3" }]

[[vni]]
id = 1
bridge = "vmbr2"
"#;
        let config = parse(text).unwrap();
        assert_eq!(config.node.vtep, Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(config.node.state_dir, Path::new("/srv/vlnet"));
        assert_eq!(config.node.metrics_listen, "[::1]:9500".parse().unwrap());
        assert_eq!(config.node.datapath, DatapathSetting::Xdp);
        assert_eq!(config.node.ttl, 32);
        assert_eq!(config.node.dscp, DscpSetting::Inherit);
        assert_eq!(config.node.fdb_ageing_secs, 60);
        assert_eq!(config.vni[0].peers.len(), 2);
        assert_eq!(
            config.vni[0].static_fdb,
            vec![StaticFdb {
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                vtep: Ipv4Addr::new(198, 18, 0, 3),
            }]
        );
        assert_eq!(config.vni[1].id, 1);
    }

    #[test]
    fn shipped_example_is_valid() {
        let config = parse(EXAMPLE).unwrap();
        assert_eq!(config.vni.len(), 1);
        assert_eq!(config.vni[0].id, 100);
        assert_eq!(config.vni[0].bridge, "vnet100");
        assert_eq!(config.vni[0].peers.len(), 2);
    }

    #[test]
    fn dscp_number_and_tc() {
        let config = parse(&with_node("dscp = 46\ndatapath = \"tc\"")).unwrap();
        assert_eq!(config.node.dscp, DscpSetting::Fixed(46));
        assert_eq!(config.node.datapath, DatapathSetting::Tc);
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let err = parse("[node]\nname = \"a\"\nunderlay = eth0\n").unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, ConfigError::Parse { .. }));
        assert!(shown.contains("/test/vlnet.toml"), "{shown}");
        assert!(shown.contains("line 3"), "{shown}");
    }

    #[test]
    fn unknown_key_rejected() {
        let err = parse(&with_node("colour = \"blue\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        let err = parse(&format!("{MINIMAL}\nmtu = 1400\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("mtu"), "{err}");
        let err = parse(&format!("{MINIMAL}\n[extra]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("extra"), "{err}");
    }

    #[test]
    fn bad_types_rejected_with_line() {
        for extra in [
            "ttl = 256",
            "dscp = 64000",
            "dscp = \"copy\"",
            "datapath = \"dpdk\"",
        ] {
            let err = parse(&with_node(extra)).unwrap_err();
            assert!(matches!(err, ConfigError::Parse { .. }), "{extra}: {err}");
            assert!(err.to_string().contains("line 5"), "{extra}: {err}");
        }
    }

    #[test]
    fn missing_file_names_path() {
        let err = Config::load(Path::new("/nonexistent/vlnet.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/vlnet.toml"), "{err}");
        assert!(err.to_string().contains("vlnet.toml.example"), "{err}");
    }

    #[test]
    fn node_name_rules() {
        let m = invalid(&MINIMAL.replace("\"pve1\"", "\"\""), "node.name");
        assert!(m.contains("empty"), "{m}");
        let long = "a".repeat(33);
        let m = invalid(&MINIMAL.replace("pve1", &long), "node.name");
        assert!(m.contains("at most 32"), "{m}");
        let m = invalid(&MINIMAL.replace("pve1", "PVE/1"), "node.name");
        assert!(m.contains("[a-z0-9-]") || m.contains("lowercase"), "{m}");
        assert!(parse(&MINIMAL.replace("pve1", &"a".repeat(32))).is_ok());
    }

    #[test]
    fn underlay_rules() {
        for bad in ["", "a-very-long-name0", "eth/0", "eth 0", "eth:0", ".."] {
            invalid(
                &MINIMAL.replace("\"eth0\"", &format!("{bad:?}")),
                "node.underlay",
            );
        }
        assert!(parse(&MINIMAL.replace("eth0", "a-very-long-nam")).is_ok());
    }

    #[test]
    fn ttl_dscp_ageing_rules() {
        let m = invalid(&with_node("ttl = 0"), "node.ttl");
        assert!(m.contains("1..=255"), "{m}");
        let m = invalid(&with_node("dscp = 64"), "node.dscp");
        assert!(m.contains("0..=63"), "{m}");
        let m = invalid(&with_node("fdb_ageing_secs = 0"), "node.fdb_ageing_secs");
        assert!(m.contains("at least 1"), "{m}");
    }

    #[test]
    fn vni_list_required() {
        let text = "[node]\nname = \"a\"\nunderlay = \"eth0\"\nvni = []\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("vni"), "{err}");
        let err = parse("[node]\nname = \"a\"\nunderlay = \"eth0\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least one is required"), "{err}");
        // A member may start without VNIs: its controller grants them.
        let cfg = parse("[node]\nname = \"a\"\nunderlay = \"eth0\"\n[wireguard]\n").unwrap();
        let wg = cfg.wireguard.unwrap();
        assert_eq!(wg.role, Role::Member);
        assert_eq!(wg.ifname, DEFAULT_WG_IFNAME);
        assert_eq!(wg.listen_port, DEFAULT_WG_PORT);
        assert_eq!(wg.keepalive_secs, DEFAULT_KEEPALIVE_SECS);
        assert_eq!(wg.control_port, DEFAULT_CONTROL_PORT);
    }

    #[test]
    fn wireguard_rules() {
        let base = "[node]\nname = \"a\"\nunderlay = \"eth0\"\n[wireguard]\n";
        let ok = parse(&format!(
            "{base}role = \"controller\"\naddress = \"198.19.0.1/24\"\nendpoint = \"198.18.0.1:51820\"\n"
        ))
        .unwrap();
        assert_eq!(ok.wireguard.unwrap().role, Role::Controller);
        for (body, key, says) in [
            (
                "role = \"controller\"\n",
                "wireguard.address",
                "needs its tunnel address",
            ),
            (
                "role = \"controller\"\naddress = \"198.19.0.1/31\"\n",
                "wireguard.address",
                "no addresses",
            ),
            (
                "role = \"controller\"\naddress = \"198.19.0.0/24\"\n",
                "wireguard.address",
                "not a host address",
            ),
            (
                "address = \"198.19.0.1/24\"\n",
                "wireguard.address",
                "only a controller",
            ),
            (
                "endpoint = \"198.18.0.1:1\"\n",
                "wireguard.endpoint",
                "only a controller",
            ),
            (
                "keepalive_secs = 0\n",
                "wireguard.keepalive_secs",
                "out of range",
            ),
            ("ifname = \"a/b\"\n", "wireguard.ifname", "cannot contain"),
            ("control_port = 0\n", "wireguard.control_port", "not a port"),
            (
                "max_members_per_vni = 0\n",
                "wireguard.max_members_per_vni",
                "out of range (1..=3071",
            ),
            (
                "max_members_per_vni = 3072\n",
                "wireguard.max_members_per_vni",
                "flood list holds 4096",
            ),
        ] {
            let err = parse(&format!("{base}{body}")).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(says), "{body}: {err}");
        }
        let err = parse(&format!("{base}role = \"boss\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant"), "{err}");
    }

    #[test]
    fn empty_vni_array_is_invalid() {
        // `vni = []` under [node] is an unknown node key; at top level it is
        // an empty list, which validation rejects.
        let text = "vni = []\n[node]\nname = \"a\"\nunderlay = \"eth0\"\n";
        let m = invalid(text, "vni");
        assert!(m.contains("at least one"), "{m}");
    }

    #[test]
    fn vni_id_rules() {
        let m = invalid(&with_vni("id = 16777216\nbridge = \"b2\""), "vni[1].id");
        assert_eq!(m, "16777216 is out of range (1..=16777215)");
        invalid(&with_vni("id = 0\nbridge = \"b2\""), "vni[1].id");
        let m = invalid(&with_vni("id = 100\nbridge = \"b2\""), "vni[1].id");
        assert!(m.contains("unique"), "{m}");
    }

    #[test]
    fn bridge_rules() {
        invalid(&with_vni("id = 200\nbridge = \"br/0\""), "vni[1].bridge");
        invalid(&with_vni("id = 200\nbridge = \"\""), "vni[1].bridge");
        let m = invalid(&with_vni("id = 200\nbridge = \"vnet100\""), "vni[1].bridge");
        assert!(m.contains("own bridge"), "{m}");
    }

    #[test]
    fn peer_rules() {
        let vni = |peers: &str| with_vni(&format!("id = 200\nbridge = \"b2\"\npeers = [{peers}]"));
        let m = invalid(&vni("\"198.18.0.2\", \"198.18.0.2\""), "vni[1].peers[1]");
        assert!(m.contains("twice"), "{m}");
        invalid(&vni("\"0.0.0.0\""), "vni[1].peers[0]");
        let m = invalid(&vni("\"198.18.0.2\", \"239.1.1.1\""), "vni[1].peers[1]");
        assert!(m.contains("multicast"), "{m}");
        invalid(&vni("\"255.255.255.255\""), "vni[1].peers[0]");

        let own = with_node("vtep = \"198.18.0.1\"")
            + "\n[[vni]]\nid = 200\nbridge = \"b2\"\npeers = [\"198.18.0.1\"]\n";
        let m = invalid(&own, "vni[1].peers[0]");
        assert!(m.contains("node.vtep"), "{m}");

        let many: Vec<String> = (0..=MAX_PEERS_PER_VNI)
            .map(|n| format!("\"198.18.{}.{}\"", 1 + n / 250, 1 + n % 250))
            .collect();
        let m = invalid(&vni(&many.join(", ")), "vni[1].peers");
        assert!(m.contains("at most 1024"), "{m}");
        assert!(parse(&vni(&many[..MAX_PEERS_PER_VNI].join(", "))).is_ok());
    }

    #[test]
    fn bypass_is_opt_in_with_either_decap() {
        let cfg = parse(&with_vni("id = 200\nbridge = \"b2\"\nbypass = true")).unwrap();
        assert!(!cfg.bypass(100), "off unless asked for");
        assert!(cfg.bypass(200));
        assert!(!cfg.bypass(300), "a VNI not in the file");
        let xdp = with_node("datapath = \"xdp\"")
            + "\n[[vni]]\nid = 200\nbridge = \"b2\"\nbypass = true\n";
        assert!(
            parse(&xdp).is_ok(),
            "XDP decap delivers to ports that take XDP frames"
        );
        let tc = with_node("datapath = \"tc\"")
            + "\n[[vni]]\nid = 200\nbridge = \"b2\"\nbypass = true\n";
        assert!(parse(&tc).is_ok());
        let err = parse(&with_vni("id = 200\nbridge = \"b2\"\nbypass = \"yes\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected a boolean"), "{err}");
    }

    #[test]
    fn fdb_capacity_defaults_and_overrides() {
        let config = parse(&with_vni("id = 200\nbridge = \"b2\"\nfdb_max = 100")).unwrap();
        assert_eq!(config.node.fdb_max_per_vni, DEFAULT_FDB_MAX_PER_VNI);
        assert_eq!(config.fdb_capacity(100), DEFAULT_FDB_MAX_PER_VNI);
        assert_eq!(config.fdb_capacity(200), 100);
        assert_eq!(
            config.fdb_capacity(999),
            DEFAULT_FDB_MAX_PER_VNI,
            "granted VNIs"
        );
        let config = parse(&with_node("fdb_max_per_vni = 10")).unwrap();
        assert_eq!(config.fdb_capacity(100), 10);
    }

    #[test]
    fn fdb_capacity_rules() {
        let m = invalid(&with_node("fdb_max_per_vni = 0"), "node.fdb_max_per_vni");
        assert!(m.contains("out of range"), "{m}");
        let m = invalid(
            &with_node("fdb_max_per_vni = 131073"),
            "node.fdb_max_per_vni",
        );
        assert!(m.contains("131072"), "{m}");
        let m = invalid(
            &with_vni("id = 200\nbridge = \"b2\"\nfdb_max = 0"),
            "vni[1].fdb_max",
        );
        assert!(m.contains("at least 1"), "{m}");
        // 4096 + 127000 > 131072: the message names every share and the sum.
        let m = invalid(
            &with_vni("id = 200\nbridge = \"b2\"\nfdb_max = 127000"),
            "vni",
        );
        assert!(m.contains("add up to 131096"), "{m}");
        assert!(
            m.contains("vni 100 4096") && m.contains("vni 200 127000"),
            "{m}"
        );
        assert!(m.contains("131072"), "{m}");
        // Exactly full is fine.
        assert!(parse(&with_vni("id = 200\nbridge = \"b2\"\nfdb_max = 126976")).is_ok());
    }

    #[test]
    fn open_ports_parse_and_count_the_control_port() {
        let base = "[node]\nname = \"a\"\nunderlay = \"eth0\"\n[wireguard]\n";
        let cfg = parse(&format!(
            "{base}role = \"controller\"\naddress = \"198.19.0.1/24\"\n\
             open_ports = [\"tcp/7000\", \"udp/5000-5001\", \"tcp/7000\"]\n"
        ))
        .unwrap();
        let wg = cfg.wireguard.unwrap();
        assert_eq!(wg.open_ports.len(), 3);
        let set = wg.open_port_set();
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            [
                (Proto::Tcp, 7000),
                (Proto::Tcp, DEFAULT_CONTROL_PORT),
                (Proto::Udp, 5000),
                (Proto::Udp, 5001)
            ]
        );
        // A member opens only what it lists.
        let member = parse(&format!("{base}open_ports = [\"tcp/4444\"]\n")).unwrap();
        assert_eq!(member.wireguard.unwrap().open_port_set().len(), 1);
        let none = parse(base).unwrap();
        assert!(none.wireguard.unwrap().open_port_set().is_empty());
    }

    #[test]
    fn open_port_rules() {
        let base = "[node]\nname = \"a\"\nunderlay = \"eth0\"\n[wireguard]\n";
        // A bad item: a parse error naming the item and the line.
        let err = parse(&format!("{base}open_ports = [\"tcp/80\", \"tcp/0\"]\n")).unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, ConfigError::Parse { .. }), "{shown}");
        assert!(
            shown.contains("\"tcp/0\"") && shown.contains("out of range"),
            "{shown}"
        );
        assert!(shown.contains("line 5"), "{shown}");
        let err = parse(&format!("{base}open_ports = [\"icmp/1\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"icmp\" is not"), "{err}");
        // 1024 ports are the most.
        assert!(parse(&format!("{base}open_ports = [\"tcp/1000-2023\"]\n")).is_ok());
        let m = invalid(
            &format!("{base}open_ports = [\"tcp/1000-2023\", \"udp/1\"]\n"),
            "wireguard.open_ports",
        );
        assert!(
            m.contains("1025 ports") && m.contains("at most 1024"),
            "{m}"
        );
        // On a controller the control port counts too.
        let m = invalid(
            &format!(
                "{base}role = \"controller\"\naddress = \"198.19.0.1/24\"\n\
                 open_ports = [\"tcp/1000-2023\"]\n"
            ),
            "wireguard.open_ports",
        );
        assert!(m.contains("control port"), "{m}");
    }

    #[test]
    fn static_fdb_rules() {
        let vni = |entries: &str| {
            with_vni(&format!(
                "id = 200\nbridge = \"b2\"\npeers = [\"198.18.0.2\"]\nstatic_fdb = [{entries}]"
            ))
        };
        let ok = "{ mac = \"02:00:00:00:00:01\", vtep = \"198.18.0.2\" }";
        assert!(parse(&vni(ok)).is_ok());

        let m = invalid(
            &vni("{ mac = \"01:00:5e:00:00:01\", vtep = \"198.18.0.2\" }"),
            "vni[1].static_fdb[0].mac",
        );
        assert!(m.contains("unicast"), "{m}");
        invalid(
            &vni("{ mac = \"00:00:00:00:00:00\", vtep = \"198.18.0.2\" }"),
            "vni[1].static_fdb[0].mac",
        );
        let m = invalid(
            &vni("{ mac = \"02:00:00:00:00:01\", vtep = \"198.18.0.9\" }"),
            "vni[1].static_fdb[0].vtep",
        );
        assert!(m.contains("peers"), "{m}");
        let m = invalid(&vni(&format!("{ok}, {ok}")), "vni[1].static_fdb[1].mac");
        assert!(m.contains("twice"), "{m}");

        let err = parse(&vni("{ mac = \"02:00\", vtep = \"198.18.0.2\" }"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("aa:bb:cc:dd:ee:ff"), "{err}");
        let err = parse(&vni(
            "{ mac = \"02:00:00:00:00:01\", vtep = \"198.18.0.2\", age = 3 }",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("age"), "{err}");
    }
}
