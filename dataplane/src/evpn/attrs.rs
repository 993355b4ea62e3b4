//! The path attributes and extended communities EVPN over VXLAN uses
//! beyond plain BGP, read from and written to the wire types:
//! - the PMSI Tunnel attribute of type-3 routes (RFC 6514 §5): ingress
//!   replication (tunnel type 6) to the VTEP named in the tunnel
//!   identifier, the VNI in the label field (RFC 8365 §5.1.3);
//! - the encapsulation extended community (RFC 9012 §4.1, type 0x03
//!   subtype 0x0c) with tunnel type 8, VXLAN (RFC 8365 §5.1.3);
//! - the MAC Mobility extended community (RFC 7432 §7.7) and its sequence
//!   number; route targets.
//!
//! netgauze has no typed variant for the first two and carries them as
//! opaque bytes, so their layout is spelled out here.

use std::net::Ipv4Addr;

use netgauze_bgp_pkt::community::{
    EvpnExtendedCommunity, ExtendedCommunity, TransitiveOpaqueExtendedCommunity,
};
use netgauze_bgp_pkt::path_attribute::{PathAttribute, PathAttributeValue, UnknownAttribute};

use super::vni::RouteTarget;

/// The PMSI Tunnel attribute's type code.
pub const PMSI_TUNNEL: u8 = 22;
/// PMSI tunnel type: ingress replication.
pub const INGRESS_REPLICATION: u8 = 6;
/// The encapsulation extended community's subtype (transitive opaque).
pub const ENCAPSULATION_SUBTYPE: u8 = 0x0c;
/// Tunnel type VXLAN in the encapsulation extended community.
pub const TUNNEL_VXLAN: u16 = 8;

/// A 24-bit VNI as a 3-octet label field (RFC 8365 §5.1.3).
#[must_use]
pub fn vni_label(vni: u32) -> [u8; 3] {
    let b = vni.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// The VNI in a 3-octet label field.
#[must_use]
pub fn label_vni(label: [u8; 3]) -> u32 {
    u32::from_be_bytes([0, label[0], label[1], label[2]])
}

/// A PMSI Tunnel attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pmsi {
    /// The tunnel type (6: ingress replication).
    pub tunnel_type: u8,
    /// The VNI in the label field.
    pub vni: u32,
    /// The tunnel endpoint, for ingress replication over IPv4.
    pub endpoint: Option<Ipv4Addr>,
}

/// The PMSI Tunnel attribute of a type-3 route: ingress replication of
/// `vni` to `vtep` (optional transitive).
#[must_use]
pub fn pmsi_ingress_replication(vni: u32, vtep: Ipv4Addr) -> PathAttributeValue {
    let mut value = vec![0, INGRESS_REPLICATION];
    value.extend_from_slice(&vni_label(vni));
    value.extend_from_slice(&vtep.octets());
    PathAttributeValue::UnknownAttribute(UnknownAttribute::new(PMSI_TUNNEL, value))
}

/// The PMSI Tunnel attribute among `attrs`, if there is a well-formed one
/// (flags, type, label, then an IPv4 endpoint or other identifier).
#[must_use]
pub fn read_pmsi(attrs: &[PathAttribute]) -> Option<Pmsi> {
    attrs.iter().find_map(|a| match a.value() {
        PathAttributeValue::UnknownAttribute(u) if u.code() == PMSI_TUNNEL => {
            let v = u.value();
            let (&tunnel_type, rest) = v.get(1..)?.split_first()?;
            let label: [u8; 3] = rest.get(..3)?.try_into().ok()?;
            let id = &rest[3..];
            let endpoint = <[u8; 4]>::try_from(id).ok().map(Ipv4Addr::from);
            Some(Pmsi {
                tunnel_type,
                vni: label_vni(label),
                endpoint,
            })
        }
        _ => None,
    })
}

/// The encapsulation extended community for VXLAN.
#[must_use]
pub fn vxlan_encapsulation() -> ExtendedCommunity {
    let t = TUNNEL_VXLAN.to_be_bytes();
    ExtendedCommunity::TransitiveOpaque(TransitiveOpaqueExtendedCommunity::Unassigned {
        sub_type: ENCAPSULATION_SUBTYPE,
        value: [0, 0, 0, 0, t[0], t[1]],
    })
}

/// The MAC Mobility extended community for sequence number `seq` (not
/// sticky).
#[must_use]
pub fn mac_mobility(seq: u32) -> ExtendedCommunity {
    ExtendedCommunity::Evpn(EvpnExtendedCommunity::MacMobility {
        flags: 0,
        seq_no: seq,
    })
}

/// The sub-type of the EVPN ARP/ND extended community (RFC 9047 §3).
pub const ND_SUBTYPE: u8 = 0x08;
/// Its Router flag: the IPv6 host of a MAC/IP route is a router (neighbor
/// advertisements answering for it carry R).
pub const ND_ROUTER_FLAG: u8 = 0x01;

/// The ARP/ND extended community with the Router flag (FRR sends it on an
/// IPv6 MAC/IP route whose host is a router, and only then).
#[must_use]
pub fn nd_router() -> ExtendedCommunity {
    ExtendedCommunity::Evpn(EvpnExtendedCommunity::Unassigned {
        sub_type: ND_SUBTYPE,
        value: [ND_ROUTER_FLAG, 0, 0, 0, 0, 0],
    })
}

/// Whether the communities carry the ARP/ND extended community with the
/// Router flag.
#[must_use]
pub fn read_nd_router(communities: &[ExtendedCommunity]) -> bool {
    communities.iter().any(|c| {
        matches!(
            c,
            ExtendedCommunity::Evpn(EvpnExtendedCommunity::Unassigned {
                sub_type: ND_SUBTYPE,
                value,
            }) if value[0] & ND_ROUTER_FLAG != 0
        )
    })
}

/// A route's MAC Mobility: its sequence number (0 without the community,
/// RFC 7432 §15) and whether it is sticky (a static MAC, which never moves).
#[must_use]
pub fn read_mac_mobility(communities: &[ExtendedCommunity]) -> (u32, bool) {
    communities
        .iter()
        .find_map(|c| match c {
            ExtendedCommunity::Evpn(EvpnExtendedCommunity::MacMobility { flags, seq_no }) => {
                Some((*seq_no, flags & 1 != 0))
            }
            _ => None,
        })
        .unwrap_or((0, false))
}

/// Whether the communities announce an encapsulation other than VXLAN
/// (none announced means the default, which for these peers is VXLAN).
#[must_use]
pub fn other_encapsulation(communities: &[ExtendedCommunity]) -> bool {
    let encaps: Vec<&[u8; 6]> = communities
        .iter()
        .filter_map(|c| match c {
            ExtendedCommunity::TransitiveOpaque(
                TransitiveOpaqueExtendedCommunity::Unassigned {
                    sub_type: ENCAPSULATION_SUBTYPE,
                    value,
                },
            ) => Some(value),
            _ => None,
        })
        .collect();
    !encaps.is_empty()
        && !encaps
            .iter()
            .any(|v| u16::from_be_bytes([v[4], v[5]]) == TUNNEL_VXLAN)
}

/// The extended communities among `attrs` (empty if none).
#[must_use]
pub fn extended_communities(attrs: &[PathAttribute]) -> &[ExtendedCommunity] {
    attrs
        .iter()
        .find_map(|a| match a.value() {
            PathAttributeValue::ExtendedCommunities(c) => Some(c.communities()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The route targets among `communities`.
#[must_use]
pub fn route_targets(communities: &[ExtendedCommunity]) -> Vec<RouteTarget> {
    communities
        .iter()
        .filter_map(RouteTarget::from_community)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(v: PathAttributeValue) -> PathAttribute {
        PathAttribute::from(true, true, false, false, v).expect("flags")
    }

    #[test]
    fn labels_carry_24_bit_vnis() {
        assert_eq!(vni_label(100), [0, 0, 100]);
        assert_eq!(label_vni(vni_label(16_777_215)), 16_777_215);
    }

    #[test]
    fn pmsi_round_trips_as_frr_writes_it() {
        let vtep = Ipv4Addr::new(198, 18, 0, 1);
        let a = attr(pmsi_ingress_replication(100, vtep));
        match a.value() {
            PathAttributeValue::UnknownAttribute(u) => {
                assert_eq!(u.value(), [0, 6, 0, 0, 100, 198, 18, 0, 1]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            read_pmsi(&[a]),
            Some(Pmsi {
                tunnel_type: 6,
                vni: 100,
                endpoint: Some(vtep)
            })
        );
    }

    #[test]
    fn a_short_pmsi_is_ignored() {
        let short = attr(PathAttributeValue::UnknownAttribute(UnknownAttribute::new(
            22,
            vec![0, 6, 0],
        )));
        assert_eq!(read_pmsi(&[short]), None);
        let ipv6 = attr(PathAttributeValue::UnknownAttribute(UnknownAttribute::new(
            22,
            vec![0, 6, 0, 0, 1, 0, 0],
        )));
        assert_eq!(read_pmsi(&[ipv6]).map(|p| p.endpoint), Some(None));
    }

    #[test]
    fn mobility_and_encapsulation() {
        let cs = [vxlan_encapsulation(), mac_mobility(7)];
        assert_eq!(read_mac_mobility(&cs), (7, false));
        assert_eq!(read_mac_mobility(&[]), (0, false));
        let sticky = ExtendedCommunity::Evpn(EvpnExtendedCommunity::MacMobility {
            flags: 1,
            seq_no: 0,
        });
        assert_eq!(read_mac_mobility(&[sticky]), (0, true));
        assert!(!other_encapsulation(&cs));
        assert!(!other_encapsulation(&[]));
        let mpls =
            ExtendedCommunity::TransitiveOpaque(TransitiveOpaqueExtendedCommunity::Unassigned {
                sub_type: ENCAPSULATION_SUBTYPE,
                value: [0, 0, 0, 0, 0, 10],
            });
        assert!(other_encapsulation(&[mpls]));
    }
}
