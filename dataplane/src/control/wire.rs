//! The control protocol's messages and their framing.
//!
//! Nodes and clients talk to the controller over a TCP stream carried inside
//! the WireGuard tunnel. The stream is a sequence of frames:
//!
//! ```text
//! +---------+------+----------------+-----------------+
//! | version | type | length (u32 BE)| payload         |
//! | 1 byte  | 1 B  | 4 bytes        | `length` bytes  |
//! +---------+------+----------------+-----------------+
//! ```
//!
//! - `version` is [`VERSION`]; anything else is refused with
//!   [`WireError::Version`] as soon as the first byte arrives, so a peer of
//!   another protocol generation is told apart before any payload is read.
//! - `type` names the message ([`MessageType`]); unknown types are refused.
//! - `length` is checked against [`MAX_PAYLOAD`] before anything is
//!   buffered or allocated for the payload.
//! - The payload is the message body as JSON (the type byte selects the
//!   body's struct, so the JSON carries no enum tag). `Keepalive` has an
//!   empty payload.
//!
//! JSON for the body (and binary for the framing) because: it is already a
//! dependency, it tolerates added fields within one protocol version (unknown
//! fields are ignored, so a newer peer may add optional data without a
//! version bump), and captures are readable. Control traffic is small — a
//! MAC advert is about 90 bytes — so a denser encoding would buy little.
//!
//! Every decoded message is validated ([`Message::validate`]) before it is
//! returned, and [`encode`] validates too, so whatever encodes also decodes.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_NAME_LEN, MAX_TOKEN_LEN, MAX_VNI};
use crate::mac::MacAddr;

/// The protocol version this build speaks (the first byte of every frame).
pub const VERSION: u8 = 1;
/// Bytes in a frame header: version, type, and a big-endian u32 length.
pub const HEADER_LEN: usize = 6;
/// The largest payload accepted or produced: 1 MiB. A [`FullSync`] of about
/// ten thousand entries fits.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// The longest software version string in a [`Hello`], in bytes.
pub const MAX_VERSION_LEN: usize = 64;
/// The longest text in an [`ErrorMessage`], in bytes.
pub const MAX_ERROR_LEN: usize = 4096;
/// The most IP addresses a [`NeighAdvert`] binds to one MAC.
pub const MAX_NEIGH_IPS: usize = 16;

/// Which message a frame carries (its type byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// [`Hello`].
    Hello = 1,
    /// [`Join`].
    Join = 2,
    /// [`Welcome`].
    Welcome = 3,
    /// [`MacAdvert`].
    MacAdvert = 4,
    /// [`MacWithdraw`].
    MacWithdraw = 5,
    /// [`FullSync`].
    FullSync = 6,
    /// [`Message::Keepalive`].
    Keepalive = 7,
    /// [`ErrorMessage`].
    Error = 8,
    /// [`Members`].
    Members = 9,
    /// [`Message::Leave`].
    Leave = 10,
    /// [`NeighAdvert`] (10 is `Leave`, issue 15).
    NeighAdvert = 11,
    /// [`ZoneVteps`].
    ZoneVteps = 12,
}

impl MessageType {
    /// The type for a type byte, if it names one.
    #[must_use]
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::Hello,
            2 => Self::Join,
            3 => Self::Welcome,
            4 => Self::MacAdvert,
            5 => Self::MacWithdraw,
            6 => Self::FullSync,
            7 => Self::Keepalive,
            8 => Self::Error,
            9 => Self::Members,
            10 => Self::Leave,
            11 => Self::NeighAdvert,
            12 => Self::ZoneVteps,
            _ => return None,
        })
    }

    /// The message's name, for errors and logs.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Hello => "Hello",
            Self::Join => "Join",
            Self::Welcome => "Welcome",
            Self::MacAdvert => "MacAdvert",
            Self::MacWithdraw => "MacWithdraw",
            Self::FullSync => "FullSync",
            Self::Keepalive => "Keepalive",
            Self::Error => "Error",
            Self::Members => "Members",
            Self::Leave => "Leave",
            Self::NeighAdvert => "NeighAdvert",
            Self::ZoneVteps => "ZoneVteps",
        }
    }
}

/// A peer introduces itself (first message on a connection, both ways).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's node name.
    pub node: String,
    /// The sender's software version (the protocol version is in the frame).
    pub version: String,
    /// The sender's VTEP address.
    pub vtep: Ipv4Addr,
    /// The VNIs the sender serves.
    pub vnis: Vec<u32>,
    /// A member's VTEP address on its own underlay (where it takes plain
    /// VXLAN): a gateway may advertise its MACs into EVPN with this next
    /// hop when the cloud reaches it there (see [`ZoneVteps`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay: Option<Ipv4Addr>,
}

/// A client redeems its invite (client → controller, after the first
/// WireGuard handshake made with the token's one-time key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    /// The invite token, as printed by `vlnet ctl client add`.
    pub token: String,
    /// The client's own, long-term WireGuard public key.
    pub public_key: [u8; 32],
}

/// One member of the cluster, as the controller describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's name.
    pub name: String,
    /// Its WireGuard public key.
    pub public_key: [u8; 32],
    /// Its underlay endpoint, if it has a reachable one (clients behind NAT
    /// may not).
    pub endpoint: Option<SocketAddr>,
    /// Its address inside the WireGuard tunnel.
    pub tunnel_addr: Ipv4Addr,
    /// Its VTEP address.
    pub vtep: Ipv4Addr,
    /// The VNIs it serves.
    pub vnis: Vec<u32>,
}

/// The controller's answer to a [`Join`]: the client's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The member's name, when the controller chose it (each join of a
    /// reusable invite `NAME` becomes its own member `NAME-k`); otherwise
    /// the token's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The client's address inside the tunnel (for a reusable invite, not
    /// the token's: that one only carries the join).
    pub tunnel_addr: Ipv4Addr,
    /// The VNIs the client may use.
    pub vnis: Vec<u32>,
    /// The cluster's members.
    pub members: Vec<Member>,
}

/// The cluster's current members (controller → member, whenever one joins,
/// leaves or roams), replacing the list the receiver held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// Every member except the receiver, the controller included.
    pub members: Vec<Member>,
}

/// A MAC lives behind `vtep` on `vni` (the newest `seq` wins; ties go to
/// the lower VTEP address, RFC 7432 §15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacAdvert {
    /// The VXLAN network identifier (1..=2^24-1).
    pub vni: u32,
    /// A unicast, non-zero MAC.
    pub mac: MacAddr,
    /// The VTEP the MAC is behind.
    pub vtep: Ipv4Addr,
    /// The move sequence number (32 bits, as RFC 7432 section 7.7 carries it).
    pub seq: u32,
}

impl MacAdvert {
    /// The withdrawal of this very route.
    #[must_use]
    pub fn withdrawal(&self) -> MacWithdraw {
        MacWithdraw {
            vni: self.vni,
            mac: self.mac,
            vtep: self.vtep,
            seq: self.seq,
        }
    }
}

/// A MAC is no longer behind `vtep` on `vni`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacWithdraw {
    /// The VXLAN network identifier (1..=2^24-1).
    pub vni: u32,
    /// A unicast, non-zero MAC.
    pub mac: MacAddr,
    /// The VTEP that withdraws it.
    pub vtep: Ipv4Addr,
    /// The sequence number of the advert being withdrawn.
    pub seq: u32,
}

/// The IP addresses bound to a MAC on a VNI (ARP/ND suppression, as EVPN's
/// route type 2 carries a MAC with its IPs), replacing what the sender said
/// of that MAC before; no `ips`: none. Sent after the MAC's advert and, on
/// (re)connect, after the [`FullSync`], one per MAC with bindings. The
/// bindings belong to the MAC, not to `vtep`: when the MAC moves they stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighAdvert {
    /// The VXLAN network identifier (1..=2^24-1).
    pub vni: u32,
    /// A unicast, non-zero MAC.
    pub mac: MacAddr,
    /// The VTEP the MAC is behind, as the sender knows it.
    pub vtep: Ipv4Addr,
    /// Unicast addresses bound to `mac`, each once, at most [`MAX_NEIGH_IPS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
    /// The MAC's host is an IPv6 router (its NA's R flag): answers carry it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub router: bool,
}

/// The most VTEPs one VNI of a [`ZoneVteps`] lists.
pub const MAX_ZONE_VTEPS: usize = 4096;

/// One VNI's VTEPs in a [`ZoneVteps`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneVni {
    /// The VXLAN network identifier (1..=2^24-1).
    pub vni: u32,
    /// The EVPN zone's VTEPs on it, each once, at most [`MAX_ZONE_VTEPS`].
    pub vteps: Vec<Ipv4Addr>,
}

/// The EVPN zone's VTEPs that send this member plain VXLAN on its underlay
/// (controller → a member the gateway advertises with its own address as
/// next hop), replacing what the receiver held; no `vnis`: none (the
/// gateway advertises it behind itself again).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneVteps {
    /// The VNIs, each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vnis: Vec<ZoneVni>,
}

/// The sender's whole table, replacing what the receiver held from it (sent
/// on (re)connect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullSync {
    /// Every entry.
    pub entries: Vec<MacAdvert>,
}

/// The peer refuses something; the connection is closed after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// What went wrong, for humans.
    pub message: String,
}

/// A control protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`Join`].
    Join(Join),
    /// See [`Welcome`].
    Welcome(Welcome),
    /// See [`MacAdvert`].
    MacAdvert(MacAdvert),
    /// See [`MacWithdraw`].
    MacWithdraw(MacWithdraw),
    /// See [`FullSync`].
    FullSync(FullSync),
    /// Liveness only; empty payload.
    Keepalive,
    /// See [`ErrorMessage`].
    Error(ErrorMessage),
    /// See [`Members`].
    Members(Members),
    /// Member → controller: remove me from the cluster (`vlnet ctl leave`);
    /// empty payload. The controller removes the member as `client remove`
    /// does and ends the session.
    Leave,
    /// See [`NeighAdvert`].
    NeighAdvert(NeighAdvert),
    /// See [`ZoneVteps`].
    ZoneVteps(ZoneVteps),
}

/// Why bytes are not a valid control message (or a message cannot be sent).
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The frame's version byte is not [`VERSION`].
    #[error("unsupported protocol version {got} (this build speaks {VERSION})")]
    Version {
        /// The version byte received.
        got: u8,
    },
    /// The frame's type byte names no message.
    #[error("unknown message type {got}")]
    UnknownType {
        /// The type byte received.
        got: u8,
    },
    /// The payload length exceeds [`MAX_PAYLOAD`].
    #[error("{kind} payload of {len} bytes exceeds the limit of {max}")]
    Oversize {
        /// The message type (name).
        kind: &'static str,
        /// The announced or encoded length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The payload is not a well-formed body for its type.
    #[error("bad {kind} payload: {source}")]
    Payload {
        /// The message type (name).
        kind: &'static str,
        /// What the JSON decoder (or encoder) said.
        source: serde_json::Error,
    },
    /// A message without a body carries a non-empty payload.
    #[error("{kind} must have an empty payload, got {len} bytes")]
    UnexpectedPayload {
        /// The message type (name).
        kind: &'static str,
        /// The payload length.
        len: usize,
    },
    /// A VNI is outside 1..=2^24-1.
    #[error("{kind}.{field}: VNI {vni} is out of range (1..={MAX_VNI})")]
    Vni {
        /// The message type (name).
        kind: &'static str,
        /// The field holding it.
        field: &'static str,
        /// The VNI received.
        vni: u32,
    },
    /// A MAC in an advert or withdraw is multicast/broadcast or all-zero.
    #[error("{kind}.mac: {mac} is not a unicast host address")]
    Mac {
        /// The message type (name).
        kind: &'static str,
        /// The MAC received.
        mac: MacAddr,
    },
    /// Any other field is invalid.
    #[error("{kind}.{field}: {reason}")]
    Field {
        /// The message type (name).
        kind: &'static str,
        /// The field.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// An earlier frame failed; the stream cannot be resynchronised.
    #[error("the stream already failed; close the connection")]
    Poisoned,
}

impl Message {
    /// The message's type.
    #[must_use]
    pub fn kind(&self) -> MessageType {
        match self {
            Self::Hello(_) => MessageType::Hello,
            Self::Join(_) => MessageType::Join,
            Self::Welcome(_) => MessageType::Welcome,
            Self::MacAdvert(_) => MessageType::MacAdvert,
            Self::MacWithdraw(_) => MessageType::MacWithdraw,
            Self::FullSync(_) => MessageType::FullSync,
            Self::Keepalive => MessageType::Keepalive,
            Self::Error(_) => MessageType::Error,
            Self::Members(_) => MessageType::Members,
            Self::Leave => MessageType::Leave,
            Self::NeighAdvert(_) => MessageType::NeighAdvert,
            Self::ZoneVteps(_) => MessageType::ZoneVteps,
        }
    }

    /// Checks every field: VNIs in range and not repeated within a list,
    /// MACs unicast and non-zero, addresses usable, names and texts bounded.
    pub fn validate(&self) -> Result<(), WireError> {
        let kind = self.kind().name();
        match self {
            Self::Hello(h) => {
                check_name(kind, "node", &h.node)?;
                check_text(kind, "version", &h.version, MAX_VERSION_LEN, false)?;
                check_host(kind, "vtep", h.vtep)?;
                if let Some(underlay) = h.underlay {
                    check_host(kind, "underlay", underlay)?;
                }
                check_vnis(kind, "vnis", &h.vnis)
            }
            Self::Join(j) => {
                if j.token.is_empty()
                    || j.token.len() > MAX_TOKEN_LEN
                    || !j.token.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(field(
                        kind,
                        "token",
                        format!("must be 1..={MAX_TOKEN_LEN} printable ASCII characters"),
                    ));
                }
                check_key(kind, "public_key", &j.public_key)
            }
            Self::Welcome(w) => {
                if let Some(name) = &w.name {
                    check_name(kind, "name", name)?;
                }
                check_host(kind, "tunnel_addr", w.tunnel_addr)?;
                check_vnis(kind, "vnis", &w.vnis)?;
                check_members(kind, &w.members)
            }
            Self::Members(m) => check_members(kind, &m.members),
            Self::MacAdvert(a) => check_entry(kind, a.vni, a.mac, a.vtep),
            Self::MacWithdraw(w) => check_entry(kind, w.vni, w.mac, w.vtep),
            Self::NeighAdvert(n) => {
                check_entry(kind, n.vni, n.mac, n.vtep)?;
                check_ips(kind, &n.ips)
            }
            Self::FullSync(s) => {
                let mut seen = BTreeSet::new();
                for e in &s.entries {
                    check_entry(kind, e.vni, e.mac, e.vtep)?;
                    if !seen.insert((e.vni, e.mac)) {
                        return Err(field(
                            kind,
                            "entries",
                            format!("{} on VNI {} appears twice", e.mac, e.vni),
                        ));
                    }
                }
                Ok(())
            }
            Self::ZoneVteps(z) => check_zone(kind, &z.vnis),
            Self::Keepalive | Self::Leave => Ok(()),
            Self::Error(e) => check_text(kind, "message", &e.message, MAX_ERROR_LEN, true),
        }
    }
}

fn check_members(kind: &'static str, members: &[Member]) -> Result<(), WireError> {
    let mut names = BTreeSet::new();
    for m in members {
        check_name(kind, "members.name", &m.name)?;
        if !names.insert(m.name.as_str()) {
            return Err(field(
                kind,
                "members.name",
                format!("{:?} appears twice", m.name),
            ));
        }
        check_key(kind, "members.public_key", &m.public_key)?;
        if let Some(ep) = m.endpoint {
            if ep.port() == 0 || ep.ip().is_unspecified() || ep.ip().is_multicast() {
                return Err(field(
                    kind,
                    "members.endpoint",
                    format!("{ep} is not a usable endpoint"),
                ));
            }
        }
        check_host(kind, "members.tunnel_addr", m.tunnel_addr)?;
        check_host(kind, "members.vtep", m.vtep)?;
        check_vnis(kind, "members.vnis", &m.vnis)?;
    }
    Ok(())
}

fn check_zone(kind: &'static str, vnis: &[ZoneVni]) -> Result<(), WireError> {
    let ids: Vec<u32> = vnis.iter().map(|z| z.vni).collect();
    check_vnis(kind, "vnis.vni", &ids)?;
    for z in vnis {
        if z.vteps.len() > MAX_ZONE_VTEPS {
            return Err(field(
                kind,
                "vnis.vteps",
                format!(
                    "{} VTEPs on VNI {}, at most {MAX_ZONE_VTEPS}",
                    z.vteps.len(),
                    z.vni
                ),
            ));
        }
        let mut seen = BTreeSet::new();
        for &vtep in &z.vteps {
            check_host(kind, "vnis.vteps", vtep)?;
            if !seen.insert(vtep) {
                return Err(field(
                    kind,
                    "vnis.vteps",
                    format!("{vtep} appears twice on VNI {}", z.vni),
                ));
            }
        }
    }
    Ok(())
}

fn field(kind: &'static str, field: &'static str, reason: String) -> WireError {
    WireError::Field {
        kind,
        field,
        reason,
    }
}

fn check_name(kind: &'static str, name: &'static str, value: &str) -> Result<(), WireError> {
    check_text(kind, name, value, MAX_NAME_LEN, false)
}

fn check_text(
    kind: &'static str,
    name: &'static str,
    value: &str,
    max: usize,
    multiline: bool,
) -> Result<(), WireError> {
    if value.is_empty() || value.len() > max {
        return Err(field(kind, name, format!("must be 1..={max} bytes")));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t')))
    {
        return Err(field(kind, name, "contains control characters".into()));
    }
    Ok(())
}

fn check_host(kind: &'static str, name: &'static str, addr: Ipv4Addr) -> Result<(), WireError> {
    if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
        return Err(field(kind, name, format!("{addr} is not a host address")));
    }
    Ok(())
}

fn check_ips(kind: &'static str, ips: &[IpAddr]) -> Result<(), WireError> {
    if ips.len() > MAX_NEIGH_IPS {
        return Err(field(
            kind,
            "ips",
            format!("{} addresses, at most {MAX_NEIGH_IPS}", ips.len()),
        ));
    }
    let mut seen = BTreeSet::new();
    for ip in ips {
        let host = match ip {
            IpAddr::V4(v4) => !v4.is_broadcast(),
            IpAddr::V6(_) => true,
        };
        if !host || ip.is_unspecified() || ip.is_multicast() {
            return Err(field(kind, "ips", format!("{ip} is not a unicast address")));
        }
        if !seen.insert(ip) {
            return Err(field(kind, "ips", format!("{ip} appears twice")));
        }
    }
    Ok(())
}

fn check_key(kind: &'static str, name: &'static str, key: &[u8; 32]) -> Result<(), WireError> {
    if key.iter().all(|&b| b == 0) {
        return Err(field(kind, name, "is all zero".into()));
    }
    Ok(())
}

fn check_vni(kind: &'static str, name: &'static str, vni: u32) -> Result<(), WireError> {
    if (1..=MAX_VNI).contains(&vni) {
        Ok(())
    } else {
        Err(WireError::Vni {
            kind,
            field: name,
            vni,
        })
    }
}

fn check_vnis(kind: &'static str, name: &'static str, vnis: &[u32]) -> Result<(), WireError> {
    let mut seen = BTreeSet::new();
    for &vni in vnis {
        check_vni(kind, name, vni)?;
        if !seen.insert(vni) {
            return Err(field(kind, name, format!("VNI {vni} appears twice")));
        }
    }
    Ok(())
}

fn check_entry(
    kind: &'static str,
    vni: u32,
    mac: MacAddr,
    vtep: Ipv4Addr,
) -> Result<(), WireError> {
    check_vni(kind, "vni", vni)?;
    if !mac.is_unicast() || mac.is_zero() {
        return Err(WireError::Mac { kind, mac });
    }
    check_host(kind, "vtep", vtep)
}

/// Encodes one message as a frame.
///
/// Fails if the message does not pass [`Message::validate`] (the peer would
/// refuse it) or its payload exceeds [`MAX_PAYLOAD`] (a [`FullSync`] of
/// more than about ten thousand entries).
pub fn encode(message: &Message) -> Result<Vec<u8>, WireError> {
    message.validate()?;
    let kind = message.kind();
    let payload = match message {
        Message::Hello(m) => serde_json::to_vec(m),
        Message::Join(m) => serde_json::to_vec(m),
        Message::Welcome(m) => serde_json::to_vec(m),
        Message::MacAdvert(m) => serde_json::to_vec(m),
        Message::MacWithdraw(m) => serde_json::to_vec(m),
        Message::FullSync(m) => serde_json::to_vec(m),
        Message::Keepalive | Message::Leave => Ok(Vec::new()),
        Message::Error(m) => serde_json::to_vec(m),
        Message::Members(m) => serde_json::to_vec(m),
        Message::NeighAdvert(m) => serde_json::to_vec(m),
        Message::ZoneVteps(m) => serde_json::to_vec(m),
    }
    .map_err(|source| WireError::Payload {
        kind: kind.name(),
        source,
    })?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= MAX_PAYLOAD)
        .ok_or(WireError::Oversize {
            kind: kind.name(),
            len: payload.len() as u64,
            max: MAX_PAYLOAD,
        })?;
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.push(VERSION);
    frame.push(kind as u8);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Decodes the first frame in `bytes`, if it is complete.
///
/// Returns the message and the number of bytes it took, or `None` if more
/// bytes are needed. Header fields are checked as soon as they are present,
/// so a bad version, type or length fails without waiting for the rest.
pub fn decode(bytes: &[u8]) -> Result<Option<(Message, usize)>, WireError> {
    let Some(&version) = bytes.first() else {
        return Ok(None);
    };
    if version != VERSION {
        return Err(WireError::Version { got: version });
    }
    let Some(&type_byte) = bytes.get(1) else {
        return Ok(None);
    };
    let kind =
        MessageType::from_byte(type_byte).ok_or(WireError::UnknownType { got: type_byte })?;
    let Some(len_bytes) = bytes.get(2..HEADER_LEN) else {
        return Ok(None);
    };
    let mut len_be = [0u8; 4];
    len_be.copy_from_slice(len_bytes);
    let len = u32::from_be_bytes(len_be);
    if len as usize > MAX_PAYLOAD {
        return Err(WireError::Oversize {
            kind: kind.name(),
            len: u64::from(len),
            max: MAX_PAYLOAD,
        });
    }
    let total = HEADER_LEN + len as usize;
    let Some(payload) = bytes.get(HEADER_LEN..total) else {
        return Ok(None);
    };
    let message = decode_payload(kind, payload)?;
    message.validate()?;
    Ok(Some((message, total)))
}

fn decode_payload(kind: MessageType, payload: &[u8]) -> Result<Message, WireError> {
    let bad = |source| WireError::Payload {
        kind: kind.name(),
        source,
    };
    Ok(match kind {
        MessageType::Hello => Message::Hello(serde_json::from_slice(payload).map_err(bad)?),
        MessageType::Join => Message::Join(serde_json::from_slice(payload).map_err(bad)?),
        MessageType::Welcome => Message::Welcome(serde_json::from_slice(payload).map_err(bad)?),
        MessageType::MacAdvert => Message::MacAdvert(serde_json::from_slice(payload).map_err(bad)?),
        MessageType::MacWithdraw => {
            Message::MacWithdraw(serde_json::from_slice(payload).map_err(bad)?)
        }
        MessageType::FullSync => Message::FullSync(serde_json::from_slice(payload).map_err(bad)?),
        MessageType::Keepalive | MessageType::Leave => {
            if !payload.is_empty() {
                return Err(WireError::UnexpectedPayload {
                    kind: kind.name(),
                    len: payload.len(),
                });
            }
            if kind == MessageType::Leave {
                Message::Leave
            } else {
                Message::Keepalive
            }
        }
        MessageType::Error => Message::Error(serde_json::from_slice(payload).map_err(bad)?),
        MessageType::Members => Message::Members(serde_json::from_slice(payload).map_err(bad)?),
        MessageType::NeighAdvert => {
            Message::NeighAdvert(serde_json::from_slice(payload).map_err(bad)?)
        }
        MessageType::ZoneVteps => Message::ZoneVteps(serde_json::from_slice(payload).map_err(bad)?),
    })
}

/// Turns a byte stream into messages: [`feed`](Self::feed) what the socket
/// reads, then call [`next_message`](Self::next_message) until it returns
/// `Ok(None)`.
///
/// After an error the decoder is poisoned (every later call returns
/// [`WireError::Poisoned`]): framing cannot be recovered, so close the
/// connection. It never holds more than what was fed; a frame's announced
/// length is checked before its payload is awaited.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    poisoned: bool,
}

impl Decoder {
    /// An empty decoder.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !self.poisoned {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete message, `None` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        if self.poisoned {
            return Err(WireError::Poisoned);
        }
        match decode(&self.buf) {
            Ok(Some((message, used))) => {
                self.buf.drain(..used);
                Ok(Some(message))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.poisoned = true;
                self.buf = Vec::new();
                Err(e)
            }
        }
    }

    /// Bytes held that do not yet form a whole frame (or are not yet taken).
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::SocketAddrV4;

    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const VTEP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    fn advert() -> MacAdvert {
        MacAdvert {
            vni: 100,
            mac: MAC,
            vtep: VTEP,
            seq: 7,
        }
    }

    fn samples() -> Vec<Message> {
        vec![
            Message::Hello(Hello {
                node: "pve1".into(),
                version: "0.1.0".into(),
                vtep: VTEP,
                vnis: vec![100, 200],
                underlay: None,
            }),
            Message::Join(Join {
                token: "vlnet1.abc.def".into(),
                public_key: [9; 32],
            }),
            Message::Welcome(Welcome {
                name: Some("class-3".into()),
                tunnel_addr: Ipv4Addr::new(10, 99, 0, 2),
                vnis: vec![100],
                members: vec![
                    Member {
                        name: "cloud".into(),
                        public_key: [1; 32],
                        endpoint: Some("203.0.113.1:51820".parse().unwrap()),
                        tunnel_addr: Ipv4Addr::new(10, 99, 0, 1),
                        vtep: VTEP,
                        vnis: vec![100, 200],
                    },
                    Member {
                        name: "laptop".into(),
                        public_key: [2; 32],
                        endpoint: None,
                        tunnel_addr: Ipv4Addr::new(10, 99, 0, 3),
                        vtep: Ipv4Addr::new(10, 99, 0, 3),
                        vnis: vec![100],
                    },
                ],
            }),
            Message::MacAdvert(advert()),
            Message::MacWithdraw(MacWithdraw {
                vni: MAX_VNI,
                mac: MAC,
                vtep: VTEP,
                seq: u32::MAX,
            }),
            Message::FullSync(FullSync {
                entries: vec![
                    advert(),
                    MacAdvert {
                        vni: 200,
                        ..advert()
                    },
                ],
            }),
            Message::FullSync(FullSync { entries: vec![] }),
            Message::Keepalive,
            Message::Leave,
            Message::Error(ErrorMessage {
                message: "token expired\nask for a new one".into(),
            }),
            Message::NeighAdvert(NeighAdvert {
                vni: 100,
                mac: MacAddr([0x02, 0, 0, 0, 0, 1]),
                vtep: VTEP,
                ips: vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
                router: true,
            }),
            Message::ZoneVteps(ZoneVteps {
                vnis: vec![ZoneVni {
                    vni: 100,
                    vteps: vec![Ipv4Addr::new(198, 18, 0, 30), Ipv4Addr::new(198, 18, 0, 31)],
                }],
            }),
            Message::ZoneVteps(ZoneVteps::default()),
        ]
    }

    #[test]
    fn zone_vteps_are_checked() {
        let zone = |vni: u32, vteps: Vec<Ipv4Addr>| {
            Message::ZoneVteps(ZoneVteps {
                vnis: vec![ZoneVni { vni, vteps }],
            })
        };
        let a = Ipv4Addr::new(198, 18, 0, 30);
        let bad = [
            (zone(0, vec![a]), "VNI 0"),
            (zone(100, vec![a, a]), "appears twice"),
            (zone(100, vec![Ipv4Addr::BROADCAST]), "not a host address"),
            (
                zone(100, vec![Ipv4Addr::new(224, 0, 0, 1)]),
                "not a host address",
            ),
            (
                zone(
                    100,
                    (0..=MAX_ZONE_VTEPS as u32)
                        .map(|i| Ipv4Addr::from(0x0a00_0000 + i))
                        .collect(),
                ),
                "at most 4096",
            ),
        ];
        for (message, expected) in bad {
            let err = message.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        let twice = Message::ZoneVteps(ZoneVteps {
            vnis: vec![
                ZoneVni {
                    vni: 100,
                    vteps: vec![a],
                },
                ZoneVni {
                    vni: 100,
                    vteps: vec![],
                },
            ],
        });
        assert!(twice.validate().unwrap_err().to_string().contains("twice"));
        // A Hello's underlay address is checked; an older peer's Hello
        // (no underlay) decodes.
        let body = br#"{"node":"pve1","version":"1","vtep":"198.18.0.1","vnis":[]}"#;
        let mut f = vec![VERSION, MessageType::Hello as u8];
        f.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        f.extend_from_slice(body);
        let (m, _) = decode(&f).unwrap().unwrap();
        assert!(matches!(m, Message::Hello(Hello { underlay: None, .. })));
        let hello = Message::Hello(Hello {
            node: "pve1".into(),
            version: "1".into(),
            vtep: VTEP,
            vnis: vec![],
            underlay: Some(Ipv4Addr::UNSPECIFIED),
        });
        assert!(hello
            .validate()
            .unwrap_err()
            .to_string()
            .contains("underlay"));
    }

    #[test]
    fn neigh_advert_is_additive_and_checked() {
        // An older peer's body (no ips, no router) decodes: both default.
        let body = br#"{"vni":100,"mac":"02:00:00:00:00:01","vtep":"198.18.0.1"}"#;
        let f = frame(VERSION, MessageType::NeighAdvert as u8, body);
        let Message::NeighAdvert(n) = decode(&f).unwrap().unwrap().0 else {
            panic!("not a NeighAdvert")
        };
        assert!(n.ips.is_empty() && !n.router);
        let good = NeighAdvert {
            ips: vec!["192.0.2.1".parse().unwrap()],
            ..n.clone()
        };
        assert!(encode(&Message::NeighAdvert(good)).is_ok());
        for bad in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "::", "ff02::1"] {
            let m = Message::NeighAdvert(NeighAdvert {
                ips: vec![bad.parse().unwrap()],
                ..n.clone()
            });
            assert!(
                matches!(encode(&m), Err(WireError::Field { field: "ips", .. })),
                "{bad}"
            );
        }
        let twice = Message::NeighAdvert(NeighAdvert {
            ips: vec!["192.0.2.1".parse().unwrap(); 2],
            ..n.clone()
        });
        assert!(matches!(
            encode(&twice),
            Err(WireError::Field { field: "ips", .. })
        ));
        let many = Message::NeighAdvert(NeighAdvert {
            ips: (1..=17u8).map(|i| IpAddr::from([192, 0, 2, i])).collect(),
            ..n
        });
        assert!(matches!(
            encode(&many),
            Err(WireError::Field { field: "ips", .. })
        ));
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<Message>, WireError> {
        let mut d = Decoder::new();
        d.feed(bytes);
        let mut out = Vec::new();
        while let Some(m) = d.next_message()? {
            out.push(m);
        }
        Ok(out)
    }

    fn frame(version: u8, kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![version, kind];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            let bytes = encode(&m).unwrap();
            assert_eq!(bytes[0], VERSION);
            assert_eq!(bytes[1], m.kind() as u8);
            let (back, used) = decode(&bytes).unwrap().unwrap();
            assert_eq!(back, m);
            assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn header_layout_is_fixed() {
        let bytes = encode(&Message::Keepalive).unwrap();
        assert_eq!(bytes, [1, 7, 0, 0, 0, 0]);
        let bytes = encode(&Message::MacAdvert(advert())).unwrap();
        let len = u32::from_be_bytes(bytes[2..6].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - HEADER_LEN);
        let body: serde_json::Value = serde_json::from_slice(&bytes[6..]).unwrap();
        assert_eq!(body["mac"], "02:00:00:00:00:01");
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let bytes = encode(&Message::MacAdvert(advert())).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).unwrap().is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn unknown_version_is_refused_on_first_byte() {
        assert!(matches!(decode(&[2]), Err(WireError::Version { got: 2 })));
        assert!(matches!(decode(&[0]), Err(WireError::Version { got: 0 })));
        let mut f = encode(&Message::Keepalive).unwrap();
        f[0] = 9;
        assert!(matches!(decode(&f), Err(WireError::Version { got: 9 })));
    }

    #[test]
    fn unknown_type_is_refused() {
        for t in [0u8, 99, 255] {
            assert!(matches!(
                decode(&[VERSION, t]),
                Err(WireError::UnknownType { got }) if got == t
            ));
        }
    }

    #[test]
    fn oversize_length_is_refused_from_the_header_alone() {
        let mut header = vec![VERSION, MessageType::FullSync as u8];
        header.extend_from_slice(&(MAX_PAYLOAD as u32 + 1).to_be_bytes());
        assert!(matches!(
            decode(&header),
            Err(WireError::Oversize { len, .. }) if len == MAX_PAYLOAD as u64 + 1
        ));
        header[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&header), Err(WireError::Oversize { .. })));
    }

    #[test]
    fn oversize_message_does_not_encode() {
        let entries = (1..=20_000u32)
            .map(|i| MacAdvert {
                vni: 1,
                mac: MacAddr([0x02, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
                vtep: VTEP,
                seq: 0,
            })
            .collect();
        let m = Message::FullSync(FullSync { entries });
        assert!(matches!(encode(&m), Err(WireError::Oversize { .. })));
    }

    #[test]
    fn bad_payload_is_refused() {
        let f = frame(VERSION, MessageType::MacAdvert as u8, b"{\"vni\":");
        assert!(matches!(
            decode(&f),
            Err(WireError::Payload {
                kind: "MacAdvert",
                ..
            })
        ));
        let f = frame(VERSION, MessageType::Hello as u8, b"[1,2,3]");
        assert!(matches!(decode(&f), Err(WireError::Payload { .. })));
        // A body for another type does not pass.
        let join = serde_json::to_vec(&Join {
            token: "t".into(),
            public_key: [1; 32],
        })
        .unwrap();
        let f = frame(VERSION, MessageType::MacAdvert as u8, &join);
        assert!(matches!(decode(&f), Err(WireError::Payload { .. })));
        let f = frame(VERSION, MessageType::Keepalive as u8, b"{}");
        assert!(matches!(
            decode(&f),
            Err(WireError::UnexpectedPayload { len: 2, .. })
        ));
    }

    fn advert_frame(vni: u32, mac: &str) -> Vec<u8> {
        let body = format!(r#"{{"vni":{vni},"mac":"{mac}","vtep":"198.18.0.1","seq":1}}"#);
        frame(VERSION, MessageType::MacAdvert as u8, body.as_bytes())
    }

    #[test]
    fn vni_out_of_range_is_refused() {
        assert!(decode(&advert_frame(MAX_VNI, "02:00:00:00:00:01")).is_ok());
        for vni in [0, MAX_VNI + 1, u32::MAX] {
            assert!(matches!(
                decode(&advert_frame(vni, "02:00:00:00:00:01")),
                Err(WireError::Vni { vni: v, field: "vni", .. }) if v == vni
            ));
        }
        let m = Message::Hello(Hello {
            node: "n".into(),
            version: "1".into(),
            vtep: VTEP,
            vnis: vec![1 << 24],
            underlay: None,
        });
        assert!(matches!(
            encode(&m),
            Err(WireError::Vni { field: "vnis", .. })
        ));
    }

    #[test]
    fn multicast_and_zero_macs_are_refused() {
        for mac in [
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
        ] {
            assert!(
                matches!(
                    decode(&advert_frame(100, mac)),
                    Err(WireError::Mac {
                        kind: "MacAdvert",
                        ..
                    })
                ),
                "{mac}"
            );
        }
        let m = Message::MacWithdraw(MacWithdraw {
            vni: 1,
            mac: MacAddr::ZERO,
            vtep: VTEP,
            seq: 0,
        });
        assert!(matches!(encode(&m), Err(WireError::Mac { .. })));
        let bad_mac = frame(
            VERSION,
            MessageType::MacAdvert as u8,
            br#"{"vni":1,"mac":"zz","vtep":"198.18.0.1","seq":1}"#,
        );
        assert!(matches!(decode(&bad_mac), Err(WireError::Payload { .. })));
    }

    #[test]
    fn other_fields_are_checked() {
        let cases: Vec<(Message, &str)> = vec![
            (
                Message::Hello(Hello {
                    node: String::new(),
                    version: "1".into(),
                    vtep: VTEP,
                    vnis: vec![],
                    underlay: None,
                }),
                "node",
            ),
            (
                Message::Hello(Hello {
                    node: "n".into(),
                    version: "1".into(),
                    vtep: Ipv4Addr::UNSPECIFIED,
                    vnis: vec![],
                    underlay: None,
                }),
                "vtep",
            ),
            (
                Message::Hello(Hello {
                    node: "n".into(),
                    version: "1".into(),
                    vtep: VTEP,
                    vnis: vec![5, 5],
                    underlay: None,
                }),
                "vnis",
            ),
            (
                Message::Join(Join {
                    token: "has space".into(),
                    public_key: [1; 32],
                }),
                "token",
            ),
            (
                Message::Join(Join {
                    token: "t".into(),
                    public_key: [0; 32],
                }),
                "public_key",
            ),
            (
                Message::FullSync(FullSync {
                    entries: vec![advert(), advert()],
                }),
                "entries",
            ),
            (
                Message::Error(ErrorMessage {
                    message: "x".repeat(MAX_ERROR_LEN + 1),
                }),
                "message",
            ),
        ];
        for (m, want) in cases {
            match encode(&m) {
                Err(WireError::Field { field, .. }) => assert_eq!(field, want, "{m:?}"),
                other => panic!("{m:?}: {other:?}"),
            }
        }
        let Message::Welcome(mut w) = samples()[2].clone() else {
            unreachable!()
        };
        w.members[0].endpoint = Some("0.0.0.0:1".parse().unwrap());
        assert!(matches!(
            encode(&Message::Welcome(w.clone())),
            Err(WireError::Field {
                field: "members.endpoint",
                ..
            })
        ));
        w.members[0].endpoint = None;
        w.members[1].name = "cloud".into();
        assert!(matches!(
            encode(&Message::Welcome(w)),
            Err(WireError::Field {
                field: "members.name",
                ..
            })
        ));
    }

    #[test]
    fn decoder_is_poisoned_after_an_error() {
        let mut d = Decoder::new();
        d.feed(&[VERSION, 200]);
        assert!(matches!(
            d.next_message(),
            Err(WireError::UnknownType { .. })
        ));
        d.feed(&encode(&Message::Keepalive).unwrap());
        assert!(matches!(d.next_message(), Err(WireError::Poisoned)));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn several_messages_in_one_read() {
        let mut bytes = Vec::new();
        for m in samples() {
            bytes.extend(encode(&m).unwrap());
        }
        assert_eq!(decode_all(&bytes).unwrap(), samples());
    }

    fn arb_vni() -> impl Strategy<Value = u32> {
        1..=MAX_VNI
    }

    fn arb_vnis() -> impl Strategy<Value = Vec<u32>> {
        proptest::collection::btree_set(arb_vni(), 0..4).prop_map(|s| s.into_iter().collect())
    }

    fn arb_host() -> impl Strategy<Value = Ipv4Addr> {
        (1u8..=223, any::<u8>(), any::<u8>(), 1u8..=254)
            .prop_map(|(a, b, c, d)| Ipv4Addr::new(a, b, c, d))
    }

    fn arb_mac() -> impl Strategy<Value = MacAddr> {
        any::<[u8; 6]>().prop_map(|mut m| {
            m[0] &= 0xfe;
            if m == [0; 6] {
                m[5] = 1;
            }
            MacAddr(m)
        })
    }

    fn arb_key() -> impl Strategy<Value = [u8; 32]> {
        any::<[u8; 32]>().prop_map(|mut k| {
            k[0] |= 1;
            k
        })
    }

    fn arb_name() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9.-]{0,20}"
    }

    fn arb_advert() -> impl Strategy<Value = MacAdvert> {
        (arb_vni(), arb_mac(), arb_host(), any::<u32>()).prop_map(|(vni, mac, vtep, seq)| {
            MacAdvert {
                vni,
                mac,
                vtep,
                seq,
            }
        })
    }

    fn arb_member() -> impl Strategy<Value = Member> {
        (
            arb_name(),
            arb_key(),
            proptest::option::of((arb_host(), 1u16..)),
            arb_host(),
            arb_host(),
            arb_vnis(),
        )
            .prop_map(|(name, public_key, ep, tunnel_addr, vtep, vnis)| Member {
                name,
                public_key,
                endpoint: ep.map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(ip, port))),
                tunnel_addr,
                vtep,
                vnis,
            })
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (arb_name(), "[0-9a-z.+-]{1,12}", arb_host(), arb_vnis()).prop_map(
                |(node, version, vtep, vnis)| Message::Hello(Hello {
                    node,
                    version,
                    underlay: Some(vtep),
                    vtep,
                    vnis
                })
            ),
            ("[A-Za-z0-9._-]{1,200}", arb_key())
                .prop_map(|(token, public_key)| Message::Join(Join { token, public_key })),
            (
                arb_host(),
                arb_vnis(),
                proptest::collection::btree_map(arb_name(), arb_member(), 0..3)
            )
                .prop_map(|(tunnel_addr, vnis, members)| Message::Welcome(Welcome {
                    name: None,
                    tunnel_addr,
                    vnis,
                    members: members
                        .into_iter()
                        .map(|(name, m)| Member { name, ..m })
                        .collect(),
                })),
            arb_advert().prop_map(Message::MacAdvert),
            arb_advert().prop_map(|a| Message::MacWithdraw(MacWithdraw {
                vni: a.vni,
                mac: a.mac,
                vtep: a.vtep,
                seq: a.seq,
            })),
            proptest::collection::btree_map((arb_vni(), arb_mac()), arb_advert(), 0..5).prop_map(
                |m| Message::FullSync(FullSync {
                    entries: m
                        .into_iter()
                        .map(|((vni, mac), a)| MacAdvert { vni, mac, ..a })
                        .collect(),
                })
            ),
            proptest::collection::btree_map(arb_name(), arb_member(), 0..3).prop_map(|members| {
                Message::Members(Members {
                    members: members
                        .into_iter()
                        .map(|(name, m)| Member { name, ..m })
                        .collect(),
                })
            }),
            proptest::collection::btree_map(
                arb_vni(),
                proptest::collection::btree_set(arb_host(), 0..4),
                0..3
            )
            .prop_map(|m| Message::ZoneVteps(ZoneVteps {
                vnis: m
                    .into_iter()
                    .map(|(vni, vteps)| ZoneVni {
                        vni,
                        vteps: vteps.into_iter().collect(),
                    })
                    .collect(),
            })),
            Just(Message::Keepalive),
            Just(Message::Leave),
            "[ -~\n]{1,80}".prop_map(|message| Message::Error(ErrorMessage { message })),
        ]
    }

    /// Bytes that often pass the header checks, so the payload checks run.
    fn arb_frame_like() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            (0u8..10, proptest::collection::vec(any::<u8>(), 0..64))
                .prop_map(|(t, p)| frame(VERSION, t, &p)),
            (0u8..10, "[ -~]{0,80}").prop_map(|(t, p)| frame(VERSION, t, p.as_bytes())),
        ]
    }

    proptest! {
        #[test]
        fn no_byte_sequence_panics_the_decoder(
            chunks in proptest::collection::vec(arb_frame_like(), 0..6),
        ) {
            let mut d = Decoder::new();
            for chunk in &chunks {
                d.feed(chunk);
                while let Ok(Some(m)) = d.next_message() {
                    prop_assert!(m.validate().is_ok());
                }
            }
        }

        #[test]
        fn split_messages_decode_back(
            messages in proptest::collection::vec(arb_message(), 1..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let mut bytes = Vec::new();
            for m in &messages {
                bytes.extend(encode(m).unwrap());
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            cuts.push(0);
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let mut d = Decoder::new();
            let mut out = Vec::new();
            for w in cuts.windows(2) {
                d.feed(&bytes[w[0]..w[1]]);
                while let Some(m) = d.next_message().unwrap() {
                    out.push(m);
                }
            }
            prop_assert_eq!(out, messages);
            prop_assert_eq!(d.buffered(), 0);
        }
    }
}
