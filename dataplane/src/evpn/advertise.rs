//! This node's routes as UPDATE messages, as FRR sends them for a VXLAN
//! VNI under `advertise-all-vni` (iBGP: ORIGIN IGP, empty `AS_PATH`,
//! `LOCAL_PREF` 100):
//! - type 2, MAC/IP advertisement: RD of the VNI, ESI 0, Ethernet tag 0,
//!   the MAC (and an IP, if known), label 1 = the VNI; next hop this VTEP;
//!   the VNI's route targets, the VXLAN encapsulation community, and the
//!   MAC Mobility community when the sequence number is above 0 (§15: none
//!   means 0);
//! - type 3, inclusive multicast (IMET): Ethernet tag 0, originating router
//!   this VTEP, with a PMSI Tunnel attribute asking for ingress
//!   replication to this VTEP;
//! - withdrawals (`MP_UNREACH_NLRI`) of either, and the End-of-RIB marker.

use std::net::{IpAddr, Ipv4Addr};

use netgauze_bgp_pkt::community::ExtendedCommunity;
use netgauze_bgp_pkt::nlri::{
    EthernetSegmentIdentifier, EthernetTag, InclusiveMulticastEthernetTagRoute, L2EvpnAddress,
    L2EvpnRoute, MacAddress, MacIpAdvertisement, MplsLabel,
};
use netgauze_bgp_pkt::path_attribute::{
    AsPath, ExtendedCommunities, LocalPreference, MpReach, MpUnreach, Origin, PathAttribute,
    PathAttributeValue,
};
use netgauze_bgp_pkt::update::BgpUpdateMessage;

use super::attrs;
use super::vni::VniRouting;
use crate::mac::MacAddr;

/// `LOCAL_PREF` of this node's routes (FRR's default).
pub const LOCAL_PREF: u32 = 100;

/// An UPDATE vlnet built is inconsistent (a bug, not a peer's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot build the UPDATE: {0}")]
pub struct BuildError(
    /// What is inconsistent.
    pub String,
);

/// The type-2 route for `mac` (with `ip`, if given) in the VNI.
#[must_use]
pub fn mac_nlri(routing: &VniRouting, mac: MacAddr, ip: Option<IpAddr>) -> L2EvpnRoute {
    L2EvpnRoute::MacIpAdvertisement(MacIpAdvertisement::new(
        routing.rd,
        EthernetSegmentIdentifier::new([0; 10]),
        EthernetTag::new(0),
        MacAddress::new(mac.0),
        ip,
        MplsLabel::new(attrs::vni_label(routing.vni)),
        None,
    ))
}

/// The type-3 route of this VTEP in the VNI.
#[must_use]
pub fn imet_nlri(routing: &VniRouting, vtep: Ipv4Addr) -> L2EvpnRoute {
    L2EvpnRoute::InclusiveMulticastEthernetTagRoute(InclusiveMulticastEthernetTagRoute::new(
        routing.rd,
        EthernetTag::new(0),
        IpAddr::V4(vtep),
    ))
}

/// Advertises `mac` (with `ip`, if known) behind `vtep` at sequence
/// number `seq`.
pub fn mac_route(
    routing: &VniRouting,
    vtep: Ipv4Addr,
    mac: MacAddr,
    ip: Option<IpAddr>,
    seq: u32,
) -> Result<BgpUpdateMessage, BuildError> {
    mac_ip_route(routing, vtep, mac, ip, seq, false)
}

/// [`mac_route`], and for an IPv6 `ip` whose host is a router (`router`),
/// the ARP/ND extended community with the Router flag (RFC 9047).
pub fn mac_ip_route(
    routing: &VniRouting,
    vtep: Ipv4Addr,
    mac: MacAddr,
    ip: Option<IpAddr>,
    seq: u32,
    router: bool,
) -> Result<BgpUpdateMessage, BuildError> {
    let mut communities = targets(routing);
    if seq > 0 {
        communities.push(attrs::mac_mobility(seq));
    }
    if router && ip.is_some_and(|ip| ip.is_ipv6()) {
        communities.push(attrs::nd_router());
    }
    reach(vtep, mac_nlri(routing, mac, ip), communities, None)
}

/// Advertises this VTEP's membership of the VNI (its flood-list entry).
pub fn imet_route(routing: &VniRouting, vtep: Ipv4Addr) -> Result<BgpUpdateMessage, BuildError> {
    let pmsi = attrs::pmsi_ingress_replication(routing.vni, vtep);
    reach(vtep, imet_nlri(routing, vtep), targets(routing), Some(pmsi))
}

/// Withdraws routes (built with [`mac_nlri`] or [`imet_nlri`]).
pub fn withdraw(routes: Vec<L2EvpnRoute>) -> Result<BgpUpdateMessage, BuildError> {
    let nlri: Vec<L2EvpnAddress> = routes
        .into_iter()
        .map(|r| L2EvpnAddress::new(None, r))
        .collect();
    let unreach = attr(
        false,
        PathAttributeValue::MpUnreach(MpUnreach::L2Evpn { nlri: nlri.into() }),
    )?;
    Ok(BgpUpdateMessage::new(vec![], vec![unreach], vec![]))
}

/// The End-of-RIB marker for L2VPN/EVPN (RFC 4724 §2): sent after the
/// initial routes, it tells a restarting peer's helper to drop our stale
/// ones.
pub fn end_of_rib() -> Result<BgpUpdateMessage, BuildError> {
    withdraw(vec![])
}

/// The VNI's export route targets and the VXLAN encapsulation.
fn targets(routing: &VniRouting) -> Vec<ExtendedCommunity> {
    let mut c: Vec<ExtendedCommunity> = routing.export.iter().map(|rt| rt.to_community()).collect();
    c.push(attrs::vxlan_encapsulation());
    c
}

/// An UPDATE reaching `route` through `vtep`.
fn reach(
    vtep: Ipv4Addr,
    route: L2EvpnRoute,
    communities: Vec<ExtendedCommunity>,
    pmsi: Option<PathAttributeValue>,
) -> Result<BgpUpdateMessage, BuildError> {
    let mut a = vec![
        well_known(PathAttributeValue::Origin(Origin::IGP))?,
        well_known(PathAttributeValue::AsPath(AsPath::As4PathSegments(
            vec![].into(),
        )))?,
        well_known(PathAttributeValue::LocalPreference(LocalPreference::new(
            LOCAL_PREF,
        )))?,
        attr(
            false,
            PathAttributeValue::MpReach(MpReach::L2Evpn {
                next_hop: IpAddr::V4(vtep),
                nlri: vec![L2EvpnAddress::new(None, route)].into(),
            }),
        )?,
        attr(
            true,
            PathAttributeValue::ExtendedCommunities(ExtendedCommunities::new(communities)),
        )?,
    ];
    if let Some(p) = pmsi {
        a.push(attr(true, p)?);
    }
    Ok(BgpUpdateMessage::new(vec![], a, vec![]))
}

fn well_known(value: PathAttributeValue) -> Result<PathAttribute, BuildError> {
    PathAttribute::from(false, true, false, false, value)
        .map_err(|(_, e)| BuildError(format!("attribute flags rejected ({e})")))
}

/// An optional attribute, transitive or not.
fn attr(transitive: bool, value: PathAttributeValue) -> Result<PathAttribute, BuildError> {
    PathAttribute::from(true, transitive, false, false, value)
        .map_err(|(_, e)| BuildError(format!("attribute flags rejected ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evpn::codec;
    use crate::evpn::vni::VniTable;
    use netgauze_bgp_pkt::BgpMessage;

    const VTEP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);

    fn routing() -> VniRouting {
        VniTable::auto(65000, VTEP, [100])
            .get(100)
            .cloned()
            .expect("vni 100")
    }

    /// Encodes, decodes and compares; returns the bytes.
    fn round_trip(u: BgpUpdateMessage) -> Vec<u8> {
        let m = BgpMessage::Update(u);
        let bytes = codec::encode(&m).expect("encodes");
        assert_eq!(codec::decode(&bytes, true).expect("decodes"), m);
        bytes
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_mac_route_carries_vni_targets_and_mobility() {
        let b = round_trip(mac_route(&routing(), VTEP, MAC, None, 3).expect("builds"));
        // Type 2, length 33: RD 198.18.0.1:2, ESI 0, tag 0, MAC, no IP, label VNI 100.
        let mut nlri = vec![2, 33, 0, 1, 198, 18, 0, 1, 0, 2];
        nlri.extend([0; 14]);
        nlri.extend([48, 2, 0, 0, 0, 0, 0x0a, 0, 0, 0, 100]);
        assert!(contains(&b, &nlri), "{b:02x?}");
        assert!(
            contains(&b, &[0x00, 0x02, 0xfd, 0xe8, 0, 0, 0, 100]),
            "RT 65000:100"
        );
        assert!(
            contains(&b, &[0x03, 0x0c, 0, 0, 0, 0, 0, 8]),
            "VXLAN encapsulation"
        );
        assert!(
            contains(&b, &[0x06, 0x00, 0, 0, 0, 0, 0, 3]),
            "MAC Mobility seq 3"
        );
        // Next hop: AFI 25, SAFI 70, 4-byte next hop.
        assert!(contains(&b, &[0, 25, 70, 4, 198, 18, 0, 1]));
    }

    #[test]
    fn sequence_zero_has_no_mobility_community() {
        let b = round_trip(
            mac_route(
                &routing(),
                VTEP,
                MAC,
                Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))),
                0,
            )
            .expect("builds"),
        );
        assert!(!contains(&b, &[0x06, 0x00, 0, 0]));
        assert!(contains(&b, &[32, 10, 0, 0, 5, 0, 0, 100]), "IP then label");
    }

    #[test]
    fn an_imet_route_asks_for_ingress_replication() {
        let b = round_trip(imet_route(&routing(), VTEP).expect("builds"));
        // Type 3, length 17: RD, tag 0, 32-bit originator.
        assert!(contains(
            &b,
            &[3, 17, 0, 1, 198, 18, 0, 1, 0, 2, 0, 0, 0, 0, 32, 198, 18, 0, 1]
        ));
        // PMSI: optional transitive, type 22, length 9.
        assert!(contains(&b, &[0xc0, 22, 9, 0, 6, 0, 0, 100, 198, 18, 0, 1]));
    }

    #[test]
    fn withdrawals_and_end_of_rib() {
        let r = routing();
        round_trip(withdraw(vec![mac_nlri(&r, MAC, None), imet_nlri(&r, VTEP)]).expect("builds"));
        let eor = end_of_rib().expect("builds");
        assert_eq!(
            eor.end_of_rib(),
            Some(netgauze_iana::address_family::AddressType::L2VpnBgpEvpn)
        );
        round_trip(eor);
    }
}
