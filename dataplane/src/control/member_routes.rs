//! What a gateway advertises into EVPN for its members (published by the
//! controller's control plane, read by the EVPN agent): the MACs they hold,
//! with their addresses and next hops, and the direct members the zone
//! floods to.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::neighbook::{MacKey, NeighSet};

/// The MACs a controller's members hold.
pub type MemberMacs = BTreeMap<MacKey, MemberMac>;

/// One MAC a controller's member holds, as a gateway advertises it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberMac {
    /// The member's own address when the gateway advertises it as next hop
    /// (a direct member); `None`: the gateway's VTEP.
    pub next_hop: Option<Ipv4Addr>,
    /// The addresses bound to the MAC.
    pub neighs: NeighSet,
}

/// Everything a gateway advertises for its members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberRoutes {
    /// Their MACs (type-2 routes).
    pub macs: MemberMacs,
    /// Per VNI, the direct members' own addresses (type-3 routes: the zone
    /// floods to them itself).
    pub floods: BTreeMap<u32, BTreeSet<Ipv4Addr>>,
}
