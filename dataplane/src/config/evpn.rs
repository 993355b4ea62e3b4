//! `[evpn]`: the BGP EVPN speaker (see [`crate::evpn`]) — this node's AS,
//! router id and the route reflectors it peers with — and, per `[[vni]]`,
//! `evpn = true` with an optional route distinguisher and route targets.
//!
//! An EVPN VNI is control-plane only: its remote MACs come from type-2
//! routes and its flood list from type-3 routes, so it has no static peers.

use std::collections::HashSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

use netgauze_bgp_pkt::nlri::RouteDistinguisher;
use serde::Deserialize;

use super::{Role, VniConfig};
use crate::evpn::vni::{RouteTarget, VniRouting, VniTable};

/// The BGP port.
pub const BGP_PORT: u16 = 179;
/// Default `evpn.hold_time`, seconds (RFC 4271 §10 suggests 90).
pub const DEFAULT_HOLD_TIME: u16 = 90;
/// Default `evpn.restart_time`, seconds (FRR's default).
pub const DEFAULT_RESTART_TIME: u16 = 120;
/// The longest restart time the capability carries (12 bits, RFC 4724).
pub const MAX_RESTART_TIME: u16 = 4095;
/// Default `evpn.max_routes_per_neighbor`.
pub const DEFAULT_MAX_ROUTES_PER_NEIGHBOR: u32 = 100_000;

/// `[evpn]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvpnConfig {
    /// This node's AS number (the route reflectors' too: iBGP), not 0.
    pub asn: u32,
    /// The BGP identifier; `None`: the node's VTEP address.
    #[serde(default)]
    pub router_id: Option<Ipv4Addr>,
    /// The route reflectors (port 179 unless given).
    pub neighbors: Vec<Neighbor>,
    /// The hold time proposed, seconds: 0 (no keepalives) or at least 3.
    #[serde(default = "default_hold_time")]
    pub hold_time: u16,
    /// Routes one neighbor may send (MAC and IMET routes together) before
    /// its session is closed with Cease / Maximum Number of Prefixes
    /// Reached and its routes are withdrawn.
    #[serde(default = "default_max_routes")]
    pub max_routes_per_neighbor: u32,
    /// Graceful restart (RFC 4724), seconds: how long the neighbors keep
    /// this node's routes while its daemon restarts, and the longest this
    /// node keeps its data plane's EVPN state after a restart waiting for
    /// their End-of-RIB. 0: not announced, nothing kept.
    #[serde(default = "default_restart_time")]
    pub restart_time: u16,
    /// On a gateway: networks in which a member's own underlay address is
    /// its MACs' next hop, instead of the gateway (the zone's VTEPs then
    /// send it plain VXLAN there: list only networks trusted as the cloud
    /// LAN is). Empty: every member behind the gateway.
    #[serde(default)]
    pub direct: Vec<ipnetwork::Ipv4Network>,
}

fn default_hold_time() -> u16 {
    DEFAULT_HOLD_TIME
}

fn default_restart_time() -> u16 {
    DEFAULT_RESTART_TIME
}

fn default_max_routes() -> u32 {
    DEFAULT_MAX_ROUTES_PER_NEIGHBOR
}

/// One `evpn.neighbors` item: `"198.18.0.2"` or `"198.18.0.2:1179"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Neighbor(pub SocketAddrV4);

impl FromStr for Neighbor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            return Ok(Self(SocketAddrV4::new(ip, BGP_PORT)));
        }
        s.parse::<SocketAddrV4>().map(Self).map_err(|_| {
            format!(
                "neighbor {s:?} is not an IPv4 address with an optional port \
                 (\"198.18.0.2\" or \"198.18.0.2:179\")"
            )
        })
    }
}

impl TryFrom<String> for Neighbor {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for Neighbor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A `[[vni]] rd`: `"198.18.0.1:2"` (IPv4 administrator) or `"65000:100"`
/// (AS administrator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Rd(pub RouteDistinguisher);

impl TryFrom<String> for Rd {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let bad = || {
            format!(
                "route distinguisher {s:?} is neither IPv4:number (\"198.18.0.1:2\", number \
                 0..=65535) nor ASN:number (\"65000:100\")"
            )
        };
        let (admin, number) = s.rsplit_once(':').ok_or_else(bad)?;
        if let Ok(ip) = admin.parse::<Ipv4Addr>() {
            let number = number.parse().map_err(|_| bad())?;
            return Ok(Self(RouteDistinguisher::Ipv4Administrator { ip, number }));
        }
        let asn: u32 = admin.parse().map_err(|_| bad())?;
        Ok(Self(match u16::try_from(asn) {
            Ok(asn2) => RouteDistinguisher::As2Administrator {
                asn2,
                number: number.parse().map_err(|_| bad())?,
            },
            Err(_) => RouteDistinguisher::As4Administrator {
                asn4: asn,
                number: number.parse().map_err(|_| bad())?,
            },
        }))
    }
}

/// A `[[vni]] route_targets` item: `"65000:100"` (a 2-octet AS with a
/// 4-octet value, or a 4-octet AS with a 2-octet value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Rt(pub RouteTarget);

impl TryFrom<String> for Rt {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let bad = || {
            format!(
                "route target {s:?} is not ASN:number (\"65000:100\"; with a 4-octet ASN the \
                 number is at most 65535)"
            )
        };
        let (asn, value) = s.split_once(':').ok_or_else(bad)?;
        let asn: u32 = asn.parse().map_err(|_| bad())?;
        Ok(Self(match u16::try_from(asn) {
            Ok(asn) => RouteTarget::As2 {
                asn,
                value: value.parse().map_err(|_| bad())?,
            },
            Err(_) => RouteTarget::As4 {
                asn,
                value: value.parse().map_err(|_| bad())?,
            },
        }))
    }
}

impl EvpnConfig {
    /// Checks `[evpn]` against the node's VTEP (`vtep`, if set).
    fn check(&self, vtep: Option<Ipv4Addr>) -> Result<(), (String, String)> {
        let key = |field: &str| format!("evpn.{field}");
        if self.asn == 0 {
            return Err((
                key("asn"),
                "0 is not an AS number (1..=4294967295; the route reflectors' AS)".to_owned(),
            ));
        }
        if let Some(id) = self.router_id {
            if id.is_unspecified() || id.is_multicast() || id.is_broadcast() {
                return Err((
                    key("router_id"),
                    format!("{id} cannot be a BGP identifier; use a unicast address"),
                ));
            }
        }
        if self.neighbors.is_empty() {
            return Err((
                key("neighbors"),
                "no neighbors; list the route reflectors (\"198.18.0.2\" or \"198.18.0.2:179\")"
                    .to_owned(),
            ));
        }
        let mut seen = HashSet::new();
        for (i, n) in self.neighbors.iter().enumerate() {
            let k = key(&format!("neighbors[{i}]"));
            let ip = *n.0.ip();
            if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
                return Err((k, format!("{ip} is not a unicast address")));
            }
            if Some(ip) == vtep {
                return Err((
                    k,
                    format!("{ip} is this node's own node.vtep; list the route reflectors"),
                ));
            }
            if n.0.port() == 0 {
                return Err((k, "port 0 is not a port".to_owned()));
            }
            if !seen.insert(ip) {
                return Err((k, format!("{ip} is listed twice")));
            }
        }
        if matches!(self.hold_time, 1 | 2) {
            return Err((
                key("hold_time"),
                format!(
                    "{} is not allowed: 0 (no keepalives) or at least 3 seconds (RFC 4271)",
                    self.hold_time
                ),
            ));
        }
        if self.max_routes_per_neighbor == 0 {
            return Err((
                key("max_routes_per_neighbor"),
                "0 is not allowed (at least 1)".to_owned(),
            ));
        }
        if self.restart_time > MAX_RESTART_TIME {
            return Err((
                key("restart_time"),
                format!(
                    "{} is too long: at most {MAX_RESTART_TIME} seconds (RFC 4724), \
                     or 0 for no graceful restart",
                    self.restart_time
                ),
            ));
        }
        Ok(())
    }

    /// Checks `[evpn]` in its node: its own keys ([`Self::check`] against
    /// the node's VTEP `vtep`), `[wireguard]` beside it only on a controller
    /// (`role`: the gateway between EVPN and the members), and some EVPN
    /// VNI among `vnis`.
    pub(super) fn check_node(
        &self,
        vtep: Option<Ipv4Addr>,
        role: Option<Role>,
        vnis: &[VniConfig],
    ) -> Result<(), (String, String)> {
        self.check(vtep)?;
        if role == Some(Role::Member) {
            // A member's MACs reach EVPN through its controller, the gateway.
            return Err((
                "evpn".to_owned(),
                "[evpn] on a member is not supported: its controller is the gateway into \
                 EVPN (put [evpn] there), or remove [wireguard]"
                    .to_owned(),
            ));
        }
        if !self.direct.is_empty() && role != Some(Role::Controller) {
            return Err((
                "evpn.direct".to_owned(),
                "only a gateway (a node with [wireguard] role = \"controller\") has members \
                 to advertise with their own address; remove evpn.direct"
                    .to_owned(),
            ));
        }
        if !vnis.iter().any(|v| v.evpn) {
            return Err((
                "evpn".to_owned(),
                "no [[vni]] has evpn = true; mark the VNIs the speaker serves, or remove [evpn]"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Each EVPN VNI's route distinguisher and route targets: FRR's
    /// automatic ones ([`VniTable::auto`]) unless the `[[vni]]` sets them.
    #[must_use]
    pub fn vni_table(&self, router_id: Ipv4Addr, vnis: &[VniConfig]) -> VniTable {
        let evpn = vnis.iter().filter(|v| v.evpn);
        let mut table = VniTable::auto(self.asn, router_id, evpn.clone().map(|v| v.id));
        for v in evpn {
            let Some(auto) = table.get(v.id).cloned() else {
                continue;
            };
            let targets: Vec<RouteTarget> = v.route_targets.iter().map(|rt| rt.0).collect();
            table.set(VniRouting {
                vni: v.id,
                rd: v.rd.map_or(auto.rd, |rd| rd.0),
                import: if targets.is_empty() {
                    auto.import
                } else {
                    targets.clone()
                },
                export: if targets.is_empty() {
                    auto.export
                } else {
                    targets
                },
            });
        }
        table
    }
}

/// Checks the EVPN keys of `[[vni]]` number `i`: they need `[evpn]`, and an
/// EVPN VNI has no static peers.
pub(super) fn check_vni(
    i: usize,
    vni: &VniConfig,
    evpn: Option<&EvpnConfig>,
) -> Result<(), (String, String)> {
    let key = |field: &str| format!("vni[{i}].{field}");
    if !vni.evpn && (vni.rd.is_some() || !vni.route_targets.is_empty()) {
        return Err((
            key("evpn"),
            "rd and route_targets are for EVPN VNIs: add evpn = true, or leave them out".to_owned(),
        ));
    }
    if !vni.evpn {
        return Ok(());
    }
    if evpn.is_none() {
        return Err((
            key("evpn"),
            "an EVPN VNI needs an [evpn] section (asn, neighbors)".to_owned(),
        ));
    }
    if !vni.peers.is_empty() {
        return Err((
            key("peers"),
            "an EVPN VNI takes its VTEPs from type-3 routes and its MACs from type-2 routes \
             only; static peers (which learn MACs from traffic) cannot be mixed in: remove \
             peers, or evpn = true"
                .to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, ConfigError};

    const NODE: &str = "[node]\nname = \"pve1\"\nunderlay = \"eth0\"\nvtep = \"198.18.0.1\"\n";
    const EVPN: &str = "[evpn]\nasn = 65000\nneighbors = [\"198.18.0.2\", \"198.18.0.3:1179\"]\n";
    const VNI: &str = "[[vni]]\nid = 100\nbridge = \"vnet100\"\nevpn = true\n";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/test/vlnet.toml"))
    }

    /// The message of the `Invalid` error `text` gets, which must be on `key`.
    fn invalid(text: &str, key: &str) -> String {
        match parse(text) {
            Err(ConfigError::Invalid {
                key: k, message, ..
            }) => {
                assert_eq!(k, key, "wrong key; message: {message}");
                message
            }
            other => panic!("expected Invalid on {key}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_neighbor_ports() {
        let c = parse(&format!("{NODE}{EVPN}{VNI}")).unwrap();
        let e = c.evpn.as_ref().unwrap();
        assert_eq!(e.asn, 65000);
        assert_eq!(e.router_id, None);
        assert_eq!(e.hold_time, 90);
        assert_eq!(e.max_routes_per_neighbor, 100_000);
        assert_eq!(e.restart_time, 120);
        assert_eq!(
            e.neighbors,
            [
                Neighbor("198.18.0.2:179".parse().unwrap()),
                Neighbor("198.18.0.3:1179".parse().unwrap())
            ]
        );
        assert!(c.vni[0].evpn);
        assert!(c.arp_suppress(100), "an EVPN VNI suppresses ARP/ND");
        let off = parse(&format!("{NODE}{EVPN}{VNI}arp_suppress = false\n")).unwrap();
        assert!(!off.arp_suppress(100), "unless told not to");
        let id = Ipv4Addr::new(198, 18, 0, 1);
        let table = e.vni_table(id, &c.vni);
        assert_eq!(table.get(100), VniTable::auto(65000, id, [100]).get(100));
    }

    #[test]
    fn rd_and_route_targets_override_the_automatic_ones() {
        let vni =
            format!("{VNI}rd = \"65000:7\"\nroute_targets = [\"65000:1\", \"4200000000:2\"]\n");
        let c = parse(&format!("{NODE}{EVPN}{vni}")).unwrap();
        let table = c
            .evpn
            .as_ref()
            .unwrap()
            .vni_table(Ipv4Addr::new(198, 18, 0, 1), &c.vni);
        let r = table.get(100).unwrap();
        assert_eq!(
            r.rd,
            RouteDistinguisher::As2Administrator {
                asn2: 65000,
                number: 7
            }
        );
        let rts = [
            RouteTarget::As2 {
                asn: 65000,
                value: 1,
            },
            RouteTarget::As4 {
                asn: 4_200_000_000,
                value: 2,
            },
        ];
        assert_eq!(r.import, rts);
        assert_eq!(r.export, rts);
        let ip_rd = parse(&format!("{NODE}{EVPN}{VNI}rd = \"198.18.0.1:9\"\n")).unwrap();
        assert_eq!(
            ip_rd.vni[0].rd.unwrap().0,
            RouteDistinguisher::Ipv4Administrator {
                ip: Ipv4Addr::new(198, 18, 0, 1),
                number: 9
            }
        );
    }

    #[test]
    fn bad_evpn_sections_are_refused() {
        let with = |evpn: &str| format!("{NODE}{evpn}{VNI}");
        let m = invalid(
            &with("[evpn]\nasn = 0\nneighbors = [\"198.18.0.2\"]\n"),
            "evpn.asn",
        );
        assert!(m.contains("0 is not an AS number"), "{m}");
        let m = invalid(
            &with("[evpn]\nasn = 65000\nneighbors = []\n"),
            "evpn.neighbors",
        );
        assert!(m.contains("no neighbors"), "{m}");
        let m = invalid(
            &with("[evpn]\nasn = 65000\nneighbors = [\"198.18.0.2\"]\nrestart_time = 4096\n"),
            "evpn.restart_time",
        );
        assert!(m.contains("at most 4095 seconds"), "{m}");
        let off = parse(&with(
            "[evpn]\nasn = 65000\nneighbors = [\"198.18.0.2\"]\nrestart_time = 0\n",
        ))
        .unwrap();
        assert_eq!(off.evpn.unwrap().restart_time, 0);
        let m = invalid(
            &with("[evpn]\nasn = 65000\nneighbors = [\"198.18.0.2\", \"198.18.0.2:1179\"]\n"),
            "evpn.neighbors[1]",
        );
        assert!(m.contains("198.18.0.2 is listed twice"), "{m}");
        let m = invalid(
            &with("[evpn]\nasn = 65000\nneighbors = [\"198.18.0.1\"]\n"),
            "evpn.neighbors[0]",
        );
        assert!(m.contains("own node.vtep"), "{m}");
        let m = invalid(
            &with("[evpn]\nasn = 65000\nneighbors = [\"224.0.0.5\"]\n"),
            "evpn.neighbors[0]",
        );
        assert!(m.contains("not a unicast address"), "{m}");
        let m = invalid(
            &with("[evpn]\nasn = 65000\nneighbors = [\"198.18.0.2\"]\nhold_time = 2\n"),
            "evpn.hold_time",
        );
        assert!(m.contains("at least 3"), "{m}");
        let m = invalid(
            &with(
                "[evpn]\nasn = 65000\nneighbors = [\"198.18.0.2\"]\nmax_routes_per_neighbor = 0\n",
            ),
            "evpn.max_routes_per_neighbor",
        );
        assert!(m.contains("at least 1"), "{m}");
        let m = invalid(
            &format!("{NODE}{EVPN}[[vni]]\nid = 100\nbridge = \"vnet100\"\n"),
            "evpn",
        );
        assert!(m.contains("no [[vni]] has evpn = true"), "{m}");
        let m = invalid(
            &format!("{NODE}{EVPN}[wireguard]\nrole = \"member\"\n{VNI}"),
            "evpn",
        );
        assert!(m.contains("controller is the gateway"), "{m}");
        let gateway = parse(&format!(
            "{NODE}{EVPN}direct = [\"198.18.0.0/24\"]\n\
             [wireguard]\nrole = \"controller\"\naddress = \"198.19.0.1/24\"\n{VNI}"
        ))
        .expect("a gateway");
        assert_eq!(
            gateway.evpn.unwrap().direct,
            ["198.18.0.0/24".parse::<ipnetwork::Ipv4Network>().unwrap()]
        );
        let m = invalid(
            &format!("{NODE}{EVPN}direct = [\"198.18.0.0/24\"]\n{VNI}"),
            "evpn.direct",
        );
        assert!(m.contains("only a gateway"), "{m}");
    }

    #[test]
    fn bad_addresses_are_refused_with_the_form_expected() {
        for bad in ["198.18.0", "fe80::1", "198.18.0.2:port", "rr1.example"] {
            let text = format!("{NODE}[evpn]\nasn = 65000\nneighbors = [{bad:?}]\n{VNI}");
            match parse(&text) {
                Err(ConfigError::Parse { message, .. }) => {
                    assert!(
                        message.contains("is not an IPv4 address with an optional port"),
                        "{message}"
                    );
                    assert!(message.contains(bad), "{message}");
                }
                other => panic!("{bad}: expected a parse error, got {other:?}"),
            }
        }
        for (key, bad) in [
            ("rd", "\"65000\""),
            ("rd", "\"198.18.0.1:70000\""),
            ("route_targets", "[\"x:1\"]"),
        ] {
            let text = format!("{NODE}{EVPN}{VNI}{key} = {bad}\n");
            match parse(&text) {
                Err(ConfigError::Parse { message, .. }) => assert!(
                    message.contains("is not") || message.contains("neither"),
                    "{message}"
                ),
                other => panic!("{key} = {bad}: expected a parse error, got {other:?}"),
            }
        }
    }

    #[test]
    fn evpn_vnis_need_evpn_and_no_static_peers() {
        let m = invalid(&format!("{NODE}{VNI}"), "vni[0].evpn");
        assert!(m.contains("needs an [evpn] section"), "{m}");
        let m = invalid(
            &format!("{NODE}{EVPN}{VNI}peers = [\"198.18.0.9\"]\n"),
            "vni[0].peers",
        );
        assert!(m.contains("static peers"), "{m}");
        let m = invalid(
            &format!(
                "{NODE}[[vni]]\nid = 100\nbridge = \"vnet100\"\nroute_targets = [\"65000:1\"]\n"
            ),
            "vni[0].evpn",
        );
        assert!(m.contains("add evpn = true"), "{m}");
    }
}
