//! Direct members (`[evpn] direct`): a gateway advertises a member's MACs
//! with the member's own address only while its session is up, its
//! WireGuard packets come from the address its Hello named, the address is
//! in a direct network and nobody else's; such a member is told the zone's
//! VTEPs on its VNIs, and an empty list once it is direct no more.

use super::*;
use crate::control::wire::{ZoneVni, ZoneVteps};
use crate::wg::Key;

const LAN: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 7);
const LAN2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 8);
const FRR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 30);

fn key(i: usize) -> Key {
    [u8::try_from(i).unwrap() + 1; 32]
}

/// A gateway with members m0..m2 on VNI 100 (m0 also on 200) and direct
/// network 198.18.0.0/24; none connected.
fn gateway() -> ControllerCore {
    let policy = Policy {
        direct: vec!["198.18.0.0/24".parse().unwrap()],
        ..Policy::default()
    };
    ControllerCore::new(controller_identity(), registry(3), policy)
}

/// Member `i` connects, its Hello naming `underlay`; returns what it is
/// sent first and then by `zone_updates`.
fn connect(c: &mut ControllerCore, i: usize, underlay: Option<Ipv4Addr>) -> Vec<Message> {
    let hello = Hello {
        node: name(i),
        version: "t".into(),
        vtep: vtep(i),
        vnis: vec![VNI],
        underlay,
    };
    let mut out = c
        .open_session(&name(i), vtep(i), &hello, i as u64, &[VNI])
        .unwrap();
    out.extend(sent_to(i, c.zone_updates()));
    out
}

fn sent_to(i: usize, effects: Vec<Effect>) -> Vec<Message> {
    effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Send { to, message } if to == name(i) => Some(message),
            _ => None,
        })
        .collect()
}

fn zone_of(messages: &[Message]) -> Option<ZoneVteps> {
    messages.iter().rev().find_map(|m| match m {
        Message::ZoneVteps(z) => Some(z.clone()),
        _ => None,
    })
}

fn seen(c: &mut ControllerCore, endpoints: &[(usize, &str)]) -> Vec<Effect> {
    let seen: Vec<(Key, Option<SocketAddr>)> = endpoints
        .iter()
        .map(|(i, e)| (key(*i), Some(e.parse().unwrap())))
        .collect();
    c.endpoints_seen(&seen, &[VNI])
}

fn holds(c: &mut ControllerCore, i: usize, m: u8) {
    let advert = MacAdvert {
        vni: VNI,
        mac: mac(m),
        vtep: vtep(i),
        seq: 0,
    };
    let fx = c.on_message(
        &name(i),
        Message::MacAdvert(advert),
        &[VNI],
        at(5),
        &NoCloud,
    );
    assert!(!fx.iter().any(|e| matches!(e, Effect::Reject(_))), "{fx:?}");
}

#[test]
fn a_member_on_the_lan_is_direct_and_told_the_zone() {
    let mut c = gateway();
    seen(&mut c, &[(0, "198.18.0.7:51820"), (1, "203.0.113.7:4000")]);
    assert!(
        c.set_zone([(VNI, [FRR].into())].into()).is_empty(),
        "no session yet"
    );
    let first = connect(&mut c, 0, Some(LAN));
    assert_eq!(c.direct_address(&name(0)), Some(LAN));
    assert_eq!(
        zone_of(&first),
        Some(ZoneVteps {
            vnis: vec![ZoneVni {
                vni: VNI,
                vteps: vec![FRR]
            }]
        }),
        "its VNIs' zone VTEPs: {first:?}"
    );
    // Behind NAT (its packets come from another address): not direct, and
    // told nothing.
    let first = connect(&mut c, 1, Some(LAN2));
    assert_eq!(c.direct_address(&name(1)), None);
    assert_eq!(zone_of(&first), None);
    assert_eq!(c.direct_members(), BTreeMap::from([(vtep(0), LAN)]));
    assert_eq!(
        c.direct_by_vni(),
        BTreeMap::from([(VNI, [LAN].into()), (OTHER_VNI, [LAN].into())]),
        "every VNI granted to it"
    );
    // Its MACs go out with its own address; the other's behind the gateway.
    holds(&mut c, 0, 1);
    holds(&mut c, 1, 2);
    let macs = c.member_macs();
    assert_eq!(macs[&(VNI, mac(1))].next_hop, Some(LAN));
    assert_eq!(macs[&(VNI, mac(2))].next_hop, None);
    // The zone changes: the direct member alone hears of it.
    let fx = c.set_zone([(VNI, [FRR, STATIC_PEER].into())].into());
    assert_eq!(fx.len(), 1, "{fx:?}");
    assert_eq!(
        zone_of(&sent_to(0, fx)).unwrap().vnis[0].vteps,
        [STATIC_PEER, FRR]
    );
    // It roams behind NAT: direct no more, told an empty zone.
    let fx = seen(&mut c, &[(0, "203.0.113.9:4000")]);
    assert_eq!(zone_of(&sent_to(0, fx)), Some(ZoneVteps::default()));
    assert_eq!(c.member_macs()[&(VNI, mac(1))].next_hop, None);
    // Back on the LAN: direct again.
    let fx = seen(&mut c, &[(0, "198.18.0.7:51820")]);
    assert_eq!(zone_of(&sent_to(0, fx)).unwrap().vnis.len(), 1);
    // Its session ends: its MACs go behind the gateway.
    assert!(sent_to(0, c.close_session(&name(0), 0)).is_empty());
    assert_eq!(c.member_macs()[&(VNI, mac(1))].next_hop, None);
    assert!(c.direct_members().is_empty() && c.direct_by_vni().is_empty());
}

#[test]
fn addresses_outside_the_direct_networks_or_claimed_twice_are_not_direct() {
    let mut c = gateway();
    c.set_zone([(VNI, [FRR].into())].into());
    // Outside 198.18.0.0/24, though its packets come from there.
    seen(&mut c, &[(0, "198.51.100.7:51820")]);
    connect(&mut c, 0, Some(Ipv4Addr::new(198, 51, 100, 7)));
    assert_eq!(c.direct_address(&name(0)), None);
    // A Hello without an underlay address (an older member).
    seen(&mut c, &[(1, "198.18.0.8:51820")]);
    connect(&mut c, 1, None);
    assert_eq!(c.direct_address(&name(1)), None);
    // The address of a zone VTEP, or of the gateway itself.
    seen(&mut c, &[(2, "198.18.0.30:51820")]);
    connect(&mut c, 2, Some(FRR));
    assert_eq!(c.direct_address(&name(2)), None);
    seen(&mut c, &[(2, "198.18.0.1:51821")]);
    connect(&mut c, 2, Some(Ipv4Addr::new(198, 18, 0, 1)));
    assert_eq!(c.direct_address(&name(2)), None);
    // Two members at one address: neither.
    seen(&mut c, &[(1, "198.18.0.7:51820"), (2, "198.18.0.7:51821")]);
    connect(&mut c, 1, Some(LAN));
    assert_eq!(c.direct_address(&name(1)), Some(LAN));
    let fx = connect(&mut c, 2, Some(LAN));
    assert_eq!(zone_of(&fx), None);
    assert_eq!(c.direct_address(&name(1)), None);
    assert_eq!(c.direct_address(&name(2)), None);
    // One of them leaves: the other is direct.
    let fx = c.close_session(&name(2), 2);
    assert_eq!(c.direct_address(&name(1)), Some(LAN));
    assert_eq!(zone_of(&sent_to(1, fx)).unwrap().vnis[0].vteps, [FRR]);
}

#[test]
fn a_member_keeps_the_zone_of_its_own_vnis_and_converges_on_a_change() {
    let mut sim = Sim::new(2, 10);
    let zone = ZoneVteps {
        vnis: vec![
            ZoneVni {
                vni: VNI,
                vteps: vec![FRR],
            },
            ZoneVni {
                vni: 999,
                vteps: vec![FRR],
            },
        ],
    };
    let m = sim.members[1].as_mut().unwrap();
    let fx = m.on_message(Message::ZoneVteps(zone.clone()), at(9));
    assert!(
        fx.contains(&Effect::Converge) && fx.contains(&Effect::Persist),
        "{fx:?}"
    );
    assert_eq!(
        m.membership().zone,
        BTreeMap::from([(VNI, [FRR].into())]),
        "VNI 999 is not granted to it"
    );
    assert!(m.on_message(Message::ZoneVteps(zone), at(10)).is_empty());
    let fx = m.on_message(Message::ZoneVteps(ZoneVteps::default()), at(11));
    assert!(fx.contains(&Effect::Converge));
    assert!(m.membership().zone.is_empty());
}
