//! The OPEN message: what vlnet announces (RFC 4271 §4.2 with the
//! capabilities of RFC 4760, 6793, 2918 and 4724) and what it accepts from
//! a peer (§6.2), with the session parameters both sides agree on.

use std::net::Ipv4Addr;
use std::time::Duration;

use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, GracefulRestartAddressFamily, GracefulRestartCapability,
    MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::BgpMessage;
use netgauze_iana::address_family::AddressType;

use super::notification::{self, Notification};

/// `AS_TRANS` (RFC 6793): the 2-octet AS an OPEN carries for a 4-octet AS.
pub const AS_TRANS: u16 = 23456;

/// The multiprotocol capability for L2VPN/EVPN as it appears in an OPEN
/// (code 1, length 4, AFI 25, reserved, SAFI 70): the data of the
/// Unsupported Capability notification when a peer lacks it.
pub const EVPN_CAPABILITY: [u8; 6] = [1, 4, 0, 25, 0, 70];

/// What this side of a session is and announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// This node's AS number.
    pub asn: u32,
    /// This node's BGP identifier (router id).
    pub router_id: Ipv4Addr,
    /// The AS the peer must have (the same as `asn` for iBGP).
    pub peer_asn: u32,
    /// The hold time proposed, in seconds (0, or at least 3).
    pub hold_time: u16,
    /// Graceful restart (RFC 4724), if announced.
    pub graceful_restart: Option<GracefulRestart>,
}

/// This node's graceful restart announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestart {
    /// How long the peer should keep our routes while we restart, seconds
    /// (at most 4095).
    pub restart_time: u16,
    /// Set on the first session after the daemon restarted (the R bit):
    /// the peer keeps our routes until our End-of-RIB.
    pub restarting: bool,
    /// The data plane kept forwarding across the restart (the F bit for
    /// EVPN): the peer's routes we still hold are good.
    pub forwarding_preserved: bool,
}

/// The parameters of an established session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's BGP identifier.
    pub peer_id: Ipv4Addr,
    /// The hold time both sides use (`None`: 0, no keepalives).
    pub hold: Option<Duration>,
    /// The keepalive interval, a third of the hold time.
    pub keepalive: Option<Duration>,
    /// Both sides speak 4-octet AS numbers.
    pub asn4: bool,
    /// The peer accepts ROUTE-REFRESH.
    pub route_refresh: bool,
    /// The peer's graceful restart announcement, if it made one for EVPN.
    pub peer_restart: Option<PeerRestart>,
}

/// What a peer announced about its graceful restart for EVPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRestart {
    /// How long to keep its routes after the session drops.
    pub restart_time: Duration,
    /// The peer kept its forwarding state across its restart (the F bit):
    /// its old routes are still good until it sends End-of-RIB.
    pub forwarding_preserved: bool,
}

/// The OPEN vlnet sends.
#[must_use]
pub fn build(local: &Local) -> BgpMessage {
    let evpn = AddressType::L2VpnBgpEvpn;
    let mut caps = vec![
        BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(evpn)),
        BgpCapability::RouteRefresh,
        BgpCapability::FourOctetAs(FourOctetAsCapability::new(local.asn)),
    ];
    if let Some(gr) = local.graceful_restart {
        caps.push(BgpCapability::GracefulRestartCapability(
            GracefulRestartCapability::new(
                gr.restarting,
                false,
                gr.restart_time.min(4095),
                vec![GracefulRestartAddressFamily::new(
                    gr.forwarding_preserved,
                    evpn,
                )],
            ),
        ));
    }
    let my_as = u16::try_from(local.asn).unwrap_or(AS_TRANS);
    BgpMessage::Open(BgpOpenMessage::new(
        my_as,
        local.hold_time,
        local.router_id,
        vec![BgpOpenMessageParameter::Capabilities(caps.into())],
    ))
}

/// Checks a peer's OPEN (RFC 4271 §6.2) and agrees on the session's
/// parameters, or says which NOTIFICATION refuses it.
pub fn accept(local: &Local, open: &BgpOpenMessage) -> Result<Negotiated, Notification> {
    if open.version() != 4 {
        return Err(Notification::new(notification::OPEN, 1, 4u16.to_be_bytes()));
    }
    let caps = open.capabilities();
    let asn4 = caps.iter().find_map(|c| match c {
        BgpCapability::FourOctetAs(a) => Some(a.asn4()),
        _ => None,
    });
    let peer_asn = asn4.unwrap_or(u32::from(open.my_as()));
    if peer_asn != local.peer_asn {
        return Err(Notification::new(
            notification::OPEN,
            2,
            open.my_as().to_be_bytes(),
        ));
    }
    let id = open.bgp_id();
    if id.is_unspecified() || id.is_broadcast() || (peer_asn == local.asn && id == local.router_id)
    {
        return Err(Notification::new(notification::OPEN, 3, id.octets()));
    }
    let peer_hold = open.hold_time();
    if peer_hold == 1 || peer_hold == 2 {
        return Err(Notification::new(
            notification::OPEN,
            6,
            peer_hold.to_be_bytes(),
        ));
    }
    let evpn = AddressType::L2VpnBgpEvpn;
    let has_evpn = caps.iter().any(
        |c| matches!(c, BgpCapability::MultiProtocolExtensions(m) if m.address_type() == evpn),
    );
    if !has_evpn {
        return Err(Notification::new(notification::OPEN, 7, EVPN_CAPABILITY));
    }
    let hold = local.hold_time.min(peer_hold);
    let hold = (hold != 0).then(|| Duration::from_secs(u64::from(hold)));
    let peer_restart = caps.iter().find_map(|c| match c {
        BgpCapability::GracefulRestartCapability(gr) => {
            let af = gr
                .address_families()
                .iter()
                .find(|af| af.address_type() == evpn)?;
            Some(PeerRestart {
                restart_time: Duration::from_secs(u64::from(gr.time())),
                forwarding_preserved: af.forwarding_state(),
            })
        }
        _ => None,
    });
    Ok(Negotiated {
        peer_id: id,
        hold,
        keepalive: hold.map(|h| (h / 3).max(Duration::from_secs(1))),
        asn4: asn4.is_some(),
        route_refresh: caps.iter().any(|c| {
            matches!(
                c,
                BgpCapability::RouteRefresh | BgpCapability::EnhancedRouteRefresh
            )
        }),
        peer_restart,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evpn::codec;

    pub(crate) fn local() -> Local {
        Local {
            asn: 65000,
            router_id: Ipv4Addr::new(198, 18, 0, 1),
            peer_asn: 65000,
            hold_time: 90,
            graceful_restart: Some(GracefulRestart {
                restart_time: 120,
                restarting: false,
                forwarding_preserved: true,
            }),
        }
    }

    fn peer(asn: u32, id: [u8; 4]) -> Local {
        Local {
            asn,
            router_id: Ipv4Addr::from(id),
            peer_asn: 65000,
            hold_time: 180,
            graceful_restart: None,
        }
    }

    fn open_of(m: &BgpMessage) -> &BgpOpenMessage {
        match m {
            BgpMessage::Open(o) => o,
            other => panic!("not an OPEN: {other:?}"),
        }
    }

    #[test]
    fn our_open_round_trips_and_carries_every_capability() {
        let sent = build(&local());
        let bytes = codec::encode(&sent).expect("encodes");
        assert_eq!(codec::decode(&bytes, false).expect("decodes"), sent);
        let o = open_of(&sent);
        assert_eq!((o.my_as(), o.hold_time()), (65000, 90));
        let caps = o.capabilities();
        assert!(caps
            .iter()
            .any(|c| matches!(c, BgpCapability::RouteRefresh)));
        assert!(caps.iter().any(|c| matches!(c, BgpCapability::GracefulRestartCapability(g) if g.time() == 120 && !g.restart())));
        // The EVPN capability is on the wire as RFC 4760 spells it.
        assert!(bytes.windows(6).any(|w| w == EVPN_CAPABILITY));
    }

    #[test]
    fn a_four_octet_as_goes_out_as_as_trans() {
        let mut l = local();
        l.asn = 4_200_000_001;
        let o = build(&l);
        assert_eq!(open_of(&o).my_as(), AS_TRANS);
        assert_eq!(open_of(&o).my_asn4(), 4_200_000_001);
    }

    #[test]
    fn a_good_peer_negotiates_the_smaller_hold_time() {
        let n = accept(&local(), open_of(&build(&peer(65000, [198, 18, 0, 9])))).expect("accepted");
        assert_eq!(n.hold, Some(Duration::from_secs(90)));
        assert_eq!(n.keepalive, Some(Duration::from_secs(30)));
        assert!(n.asn4 && n.route_refresh);
        assert_eq!(n.peer_restart, None);
        assert_eq!(n.peer_id, Ipv4Addr::new(198, 18, 0, 9));
    }

    #[test]
    fn a_zero_hold_time_means_no_keepalives() {
        let mut p = peer(65000, [198, 18, 0, 9]);
        p.hold_time = 0;
        let n = accept(&local(), open_of(&build(&p))).expect("accepted");
        assert_eq!((n.hold, n.keepalive), (None, None));
    }

    #[test]
    fn the_peers_graceful_restart_is_read() {
        let mut p = peer(65000, [198, 18, 0, 9]);
        p.graceful_restart = Some(GracefulRestart {
            restart_time: 300,
            restarting: true,
            forwarding_preserved: true,
        });
        let n = accept(&local(), open_of(&build(&p))).expect("accepted");
        assert_eq!(
            n.peer_restart,
            Some(PeerRestart {
                restart_time: Duration::from_mins(5),
                forwarding_preserved: true
            })
        );
    }

    #[test]
    fn the_r_and_f_bits_follow_the_restart() {
        for (restarting, forwarding_preserved) in [(false, false), (true, true)] {
            let mut p = peer(65000, [198, 18, 0, 9]);
            p.graceful_restart = Some(GracefulRestart {
                restart_time: 120,
                restarting,
                forwarding_preserved,
            });
            let sent = build(&p);
            let gr = open_of(&sent)
                .capabilities()
                .into_iter()
                .find_map(|c| match c {
                    BgpCapability::GracefulRestartCapability(g) => Some(g.clone()),
                    _ => None,
                })
                .expect("announced");
            assert_eq!(gr.restart(), restarting);
            assert_eq!(
                gr.address_families()
                    .iter()
                    .map(|af| (af.address_type(), af.forwarding_state()))
                    .collect::<Vec<_>>(),
                vec![(AddressType::L2VpnBgpEvpn, forwarding_preserved)]
            );
        }
    }

    #[test]
    fn bad_opens_get_the_right_notification() {
        let code = |p: &Local| {
            accept(&local(), open_of(&build(p)))
                .map(|_| ())
                .map_err(|n| (n.code, n.subcode))
        };
        assert_eq!(code(&peer(65001, [198, 18, 0, 9])), Err((2, 2)), "wrong AS");
        assert_eq!(
            code(&peer(65000, [198, 18, 0, 1])),
            Err((2, 3)),
            "our own id"
        );
        assert_eq!(code(&peer(65000, [0, 0, 0, 0])), Err((2, 3)), "zero id");
        let mut p = peer(65000, [198, 18, 0, 9]);
        p.hold_time = 2;
        assert_eq!(code(&p), Err((2, 6)), "hold time 2");
        let no_evpn = BgpOpenMessage::new(65000, 90, Ipv4Addr::new(198, 18, 0, 9), vec![]);
        let n = accept(&local(), &no_evpn).expect_err("no EVPN");
        assert_eq!(
            (n.code, n.subcode, n.data),
            (2, 7, EVPN_CAPABILITY.to_vec())
        );
    }
}
