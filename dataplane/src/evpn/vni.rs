//! Each VNI's route distinguisher and route targets, derived as FRR derives
//! them under `advertise-all-vni` (so vlnet and FRR nodes import each
//! other's routes with no per-VNI config) or set by hand:
//! - RT `ASN:VNI` (a 2-octet-AS route target; for an AS above 65535 FRR
//!   uses a 4-octet-AS route target `ASN:(VNI & 0xffff)`, and so does
//!   vlnet);
//! - RD `router-id:N`, N a small per-VNI index FRR hands out in the order
//!   the VNIs appear, from 2 (index 1 is the default instance's VRF; seen
//!   on FRR 8.4: its first VNI's RD is `router-id:2`). vlnet numbers its
//!   VNIs from 2 in ascending order; the RD only has to be unique per
//!   router, peers never derive it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use netgauze_bgp_pkt::community::{
    ExtendedCommunity, TransitiveFourOctetExtendedCommunity, TransitiveTwoOctetExtendedCommunity,
};
use netgauze_bgp_pkt::nlri::RouteDistinguisher;

/// The RD index of a node's first VNI, as FRR hands it out.
pub const FIRST_RD_INDEX: u16 = 2;

/// A route target (RFC 4360, RFC 5668).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteTarget {
    /// 2-octet AS, 4-octet value.
    As2 {
        /// The AS number.
        asn: u16,
        /// The value (a VNI when derived).
        value: u32,
    },
    /// 4-octet AS, 2-octet value.
    As4 {
        /// The AS number.
        asn: u32,
        /// The value (the VNI's low 16 bits when derived).
        value: u16,
    },
}

impl RouteTarget {
    /// The route target FRR derives for `vni` in `asn`.
    #[must_use]
    pub fn auto(asn: u32, vni: u32) -> Self {
        match u16::try_from(asn) {
            Ok(asn) => Self::As2 { asn, value: vni },
            Err(_) => Self::As4 {
                asn,
                value: (vni & 0xffff) as u16,
            },
        }
    }

    /// The extended community carrying this route target.
    #[must_use]
    pub fn to_community(self) -> ExtendedCommunity {
        match self {
            Self::As2 { asn, value } => ExtendedCommunity::TransitiveTwoOctet(
                TransitiveTwoOctetExtendedCommunity::RouteTarget {
                    global_admin: asn,
                    local_admin: value,
                },
            ),
            Self::As4 { asn, value } => ExtendedCommunity::TransitiveFourOctet(
                TransitiveFourOctetExtendedCommunity::RouteTarget {
                    global_admin: asn,
                    local_admin: value,
                },
            ),
        }
    }

    /// The route target an extended community carries, if it is one
    /// (IPv4-address route targets are not used by EVPN VNIs and are
    /// skipped).
    #[must_use]
    pub fn from_community(c: &ExtendedCommunity) -> Option<Self> {
        match c {
            ExtendedCommunity::TransitiveTwoOctet(
                TransitiveTwoOctetExtendedCommunity::RouteTarget {
                    global_admin,
                    local_admin,
                },
            ) => Some(Self::As2 {
                asn: *global_admin,
                value: *local_admin,
            }),
            ExtendedCommunity::TransitiveFourOctet(
                TransitiveFourOctetExtendedCommunity::RouteTarget {
                    global_admin,
                    local_admin,
                },
            ) => Some(Self::As4 {
                asn: *global_admin,
                value: *local_admin,
            }),
            _ => None,
        }
    }
}

impl fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::As2 { asn, value } => write!(f, "{asn}:{value}"),
            Self::As4 { asn, value } => write!(f, "{asn}:{value}"),
        }
    }
}

/// How one VNI is named in BGP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VniRouting {
    /// The VXLAN network identifier (the label of its routes, RFC 8365).
    pub vni: u32,
    /// The RD of this node's routes for the VNI.
    pub rd: RouteDistinguisher,
    /// Routes carrying any of these are imported into the VNI.
    pub import: Vec<RouteTarget>,
    /// This node's routes for the VNI carry these.
    pub export: Vec<RouteTarget>,
}

impl VniRouting {
    /// FRR's automatic RD and RTs for `vni`, the `index`-th VNI of a node
    /// with `router_id` in `asn`.
    #[must_use]
    pub fn auto(asn: u32, router_id: Ipv4Addr, vni: u32, index: u16) -> Self {
        let rt = RouteTarget::auto(asn, vni);
        Self {
            vni,
            rd: RouteDistinguisher::Ipv4Administrator {
                ip: router_id,
                number: index,
            },
            import: vec![rt],
            export: vec![rt],
        }
    }
}

/// The node's VNIs as BGP names them, and which VNI a received route
/// belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VniTable {
    by_vni: BTreeMap<u32, VniRouting>,
}

impl VniTable {
    /// Automatic RDs and RTs for `vnis`, numbered from [`FIRST_RD_INDEX`]
    /// in ascending order (VNIs past index 65535 are left out: an RD index
    /// has 16 bits).
    #[must_use]
    pub fn auto(asn: u32, router_id: Ipv4Addr, vnis: impl IntoIterator<Item = u32>) -> Self {
        let mut sorted: Vec<u32> = vnis.into_iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let by_vni = sorted
            .into_iter()
            .zip(FIRST_RD_INDEX..=u16::MAX)
            .map(|(vni, index)| (vni, VniRouting::auto(asn, router_id, vni, index)))
            .collect();
        Self { by_vni }
    }

    /// Replaces one VNI's naming (RD or RTs set by hand).
    pub fn set(&mut self, routing: VniRouting) {
        self.by_vni.insert(routing.vni, routing);
    }

    /// The naming of `vni`, if the node has it.
    #[must_use]
    pub fn get(&self, vni: u32) -> Option<&VniRouting> {
        self.by_vni.get(&vni)
    }

    /// Every VNI's naming, in VNI order.
    pub fn iter(&self) -> impl Iterator<Item = &VniRouting> {
        self.by_vni.values()
    }

    /// The VNI a route with these route targets is imported into: the
    /// lowest VNI one of whose import targets it carries.
    #[must_use]
    pub fn import(&self, targets: &[RouteTarget]) -> Option<u32> {
        self.by_vni
            .values()
            .find(|r| r.import.iter().any(|rt| targets.contains(rt)))
            .map(|r| r.vni)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    #[test]
    fn frr_auto_targets() {
        assert_eq!(RouteTarget::auto(65000, 100).to_string(), "65000:100");
        assert_eq!(
            RouteTarget::auto(65000, 100),
            RouteTarget::As2 {
                asn: 65000,
                value: 100
            }
        );
        assert_eq!(
            RouteTarget::auto(4_200_000_000, 0x1_0064),
            RouteTarget::As4 {
                asn: 4_200_000_000,
                value: 0x64
            }
        );
    }

    #[test]
    fn targets_survive_their_community() {
        for rt in [
            RouteTarget::auto(65000, 16_000_000),
            RouteTarget::auto(4_200_000_000, 7),
        ] {
            assert_eq!(RouteTarget::from_community(&rt.to_community()), Some(rt));
        }
    }

    #[test]
    fn rds_number_the_vnis_in_order_from_two() {
        let t = VniTable::auto(65000, ID, [300, 100, 200, 100]);
        let rds: Vec<_> = t.iter().map(|r| (r.vni, r.rd)).collect();
        let rd = |n| RouteDistinguisher::Ipv4Administrator { ip: ID, number: n };
        assert_eq!(rds, [(100, rd(2)), (200, rd(3)), (300, rd(4))]);
    }

    #[test]
    fn routes_import_by_target() {
        let mut t = VniTable::auto(65000, ID, [100, 200]);
        assert_eq!(t.import(&[RouteTarget::auto(65000, 200)]), Some(200));
        assert_eq!(t.import(&[RouteTarget::auto(65001, 200)]), None, "other AS");
        assert_eq!(t.import(&[]), None);
        let mut custom = VniRouting::auto(65000, ID, 100, 1);
        custom.import = vec![RouteTarget::As2 { asn: 1, value: 1 }];
        t.set(custom);
        assert_eq!(
            t.import(&[RouteTarget::auto(65000, 100)]),
            None,
            "import set by hand"
        );
        assert_eq!(
            t.import(&[RouteTarget::As2 { asn: 1, value: 1 }]),
            Some(100)
        );
    }
}
