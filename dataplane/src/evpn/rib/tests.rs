//! The received-routes table: imports, withdrawals by route key, MAC and
//! IMET reference counting, graceful restart, the MAC Mobility rules
//! through `MacBook`, and a property test that the intents always describe
//! the table.

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use netgauze_bgp_pkt::BgpMessage;
use proptest::prelude::*;

use super::*;
use crate::control::macbook::MacBook;
use crate::control::mobility::NodeId;
use crate::evpn::advertise;
use crate::evpn::codec;
use crate::evpn::vni::{VniRouting, VniTable};

const ASN: u32 = 65000;
const ME: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const C: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10));

fn local_vnis() -> VniTable {
    VniTable::auto(ASN, ME, [100])
}

/// How VTEP `vtep` (its own router id) names `vni`.
fn remote(vtep: Ipv4Addr, vni: u32) -> VniRouting {
    VniRouting::auto(ASN, vtep, vni, 1)
}

/// Sends `u` through the wire first, as a peer's UPDATE would arrive.
fn wire(u: BgpUpdateMessage) -> BgpUpdateMessage {
    let bytes = codec::encode(&BgpMessage::Update(u)).expect("encodes");
    match codec::decode(&bytes, true).expect("decodes") {
        BgpMessage::Update(u) => u,
        other => panic!("{other:?}"),
    }
}

fn mac_from(vtep: Ipv4Addr, ip: Option<IpAddr>, seq: u32) -> BgpUpdateMessage {
    wire(advertise::mac_route(&remote(vtep, 100), vtep, MAC, ip, seq).expect("builds"))
}

fn mac_withdraw_from(vtep: Ipv4Addr, ip: Option<IpAddr>) -> BgpUpdateMessage {
    wire(
        advertise::withdraw(vec![advertise::mac_nlri(&remote(vtep, 100), MAC, ip)])
            .expect("builds"),
    )
}

fn imet_from(vtep: Ipv4Addr, index: u16) -> BgpUpdateMessage {
    wire(advertise::imet_route(&VniRouting::auto(ASN, vtep, 100, index), vtep).expect("builds"))
}

fn imet_withdraw_from(vtep: Ipv4Addr, index: u16) -> BgpUpdateMessage {
    let r = VniRouting::auto(ASN, vtep, 100, index);
    wire(advertise::withdraw(vec![advertise::imet_nlri(&r, vtep)]).expect("builds"))
}

fn advert(vtep: Ipv4Addr, seq: u32) -> MacAdvert {
    MacAdvert {
        vni: 100,
        mac: MAC,
        vtep,
        seq,
    }
}

fn gone(vtep: Ipv4Addr, seq: u32) -> Intent {
    Intent::MacGone(MacWithdraw {
        vni: 100,
        mac: MAC,
        vtep,
        seq,
    })
}

#[test]
fn a_type_2_route_places_the_mac_behind_its_next_hop() {
    let mut rib = AdjRibIn::new(ME);
    let a = rib.apply(&mac_from(B, None, 4), &local_vnis());
    assert_eq!(a.intents, [Intent::Mac(advert(B, 4))]);
    assert!(a.skipped.is_empty() && !a.end_of_rib);
}

#[test]
fn a_mac_goes_with_its_last_route() {
    let mut rib = AdjRibIn::new(ME);
    let v = local_vnis();
    rib.apply(&mac_from(B, None, 2), &v);
    rib.apply(&mac_from(B, Some(IP), 2), &v);
    assert_eq!(rib.counts(), (2, 0));
    assert_eq!(
        rib.apply(&mac_withdraw_from(B, Some(IP)), &v).intents,
        [Intent::IpGone(IpBinding {
            vni: 100,
            mac: MAC,
            ip: IP
        })],
        "the MAC-only route stays; the address goes"
    );
    assert_eq!(
        rib.apply(&mac_withdraw_from(B, None), &v).intents,
        [gone(B, 2)]
    );
    let again = rib.apply(&mac_withdraw_from(B, None), &v);
    assert_eq!(again.skipped, [Skip::UnknownWithdrawal]);
}

#[test]
fn a_route_replaced_with_another_next_hop_moves_the_mac() {
    let mut rib = AdjRibIn::new(ME);
    let v = local_vnis();
    rib.apply(&mac_from(B, None, 1), &v);
    // Same NLRI (B's RD), new next hop.
    let moved = wire(advertise::mac_route(&remote(B, 100), C, MAC, None, 1).expect("builds"));
    assert_eq!(
        rib.apply(&moved, &v).intents,
        [gone(B, 1), Intent::Mac(advert(C, 1))]
    );
}

#[test]
fn type_3_routes_make_the_flood_list() {
    let mut rib = AdjRibIn::new(ME);
    let v = local_vnis();
    assert_eq!(
        rib.apply(&imet_from(B, 1), &v).intents,
        [Intent::FloodAdd { vni: 100, vtep: B }]
    );
    assert!(
        rib.apply(&imet_from(B, 1), &v).intents.is_empty(),
        "a repeat changes nothing"
    );
    assert!(
        rib.apply(&imet_from(B, 7), &v).intents.is_empty(),
        "a second route to the same VTEP"
    );
    assert!(rib.apply(&imet_withdraw_from(B, 7), &v).intents.is_empty());
    assert_eq!(
        rib.apply(&imet_withdraw_from(B, 1), &v).intents,
        [Intent::FloodRemove { vni: 100, vtep: B }]
    );
}

#[test]
fn routes_that_do_not_fit_are_skipped() {
    let mut rib = AdjRibIn::new(ME);
    let v = local_vnis();
    let other_vni = wire(advertise::mac_route(&remote(B, 200), B, MAC, None, 0).expect("builds"));
    assert_eq!(rib.apply(&other_vni, &v).skipped, [Skip::NotImported]);
    let own = wire(advertise::mac_route(&remote(ME, 100), ME, MAC, None, 0).expect("builds"));
    assert_eq!(rib.apply(&own, &v).skipped, [Skip::Own]);
    assert_eq!(rib.apply(&imet_from(ME, 1), &v).skipped, [Skip::Own]);
    // A gateway's route for a direct member's MAC (next hop: the member),
    // reflected back: ours by its RD.
    let ours = v.get(100).unwrap();
    let direct = wire(advertise::mac_route(ours, C, MAC, Some(IP), 0).expect("builds"));
    assert_eq!(rib.apply(&direct, &v).skipped, [Skip::Own]);
    assert_eq!(rib.counts(), (0, 0));
}

#[test]
fn a_restarting_peer_keeps_its_routes_until_end_of_rib() {
    let mut rib = AdjRibIn::new(ME);
    let v = local_vnis();
    let other = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
    rib.apply(&mac_from(B, None, 0), &v);
    rib.apply(
        &wire(advertise::mac_route(&remote(C, 100), C, other, None, 0).expect("builds")),
        &v,
    );
    rib.apply(&imet_from(B, 1), &v);
    rib.apply(&imet_from(C, 1), &v);
    rib.mark_stale();
    // The peer comes back and sends B's routes again, not C's.
    assert_eq!(
        rib.apply(&mac_from(B, None, 0), &v).intents,
        [Intent::Mac(advert(B, 0))]
    );
    assert!(rib.apply(&imet_from(B, 1), &v).intents.is_empty());
    let eor = rib.apply(&wire(advertise::end_of_rib().expect("builds")), &v);
    assert!(eor.end_of_rib);
    let mut got = eor.intents;
    got.sort_by_key(|i| format!("{i:?}"));
    assert_eq!(
        got,
        [
            Intent::FloodRemove { vni: 100, vtep: C },
            Intent::MacGone(MacWithdraw {
                vni: 100,
                mac: other,
                vtep: C,
                seq: 0
            }),
        ]
    );
    assert_eq!(rib.counts(), (1, 1));
    assert_eq!(rib.clear().len(), 2, "a plain drop withdraws the rest");
}

/// The sequence-number rules are `MacBook`'s (RFC 7432 §15): the intents
/// feed it unchanged.
#[test]
fn mobility_rules_come_from_the_macbook() {
    let v = local_vnis();
    let now = Duration::ZERO;
    let peer = NodeId::new("rr");
    let mut rib = AdjRibIn::new(ME);
    let mut book = MacBook::new("me", ME);
    let mut feed = |u: BgpUpdateMessage, book: &mut MacBook| {
        for i in rib.apply(&u, &v).intents {
            match i {
                Intent::Mac(a) => {
                    book.advert(&a, &peer, now);
                }
                Intent::MacGone(w) => {
                    book.withdraw(&w, now);
                }
                _ => {}
            }
        }
    };
    feed(mac_from(C, None, 1), &mut book);
    feed(mac_from(B, None, 1), &mut book);
    assert_eq!(
        book.get(100, MAC).map(|a| a.vtep),
        Some(B),
        "a tie goes to the lower VTEP"
    );
    feed(mac_from(C, None, 2), &mut book);
    assert_eq!(
        book.get(100, MAC).map(|a| a.vtep),
        Some(C),
        "the higher seq wins"
    );
    feed(mac_withdraw_from(B, None), &mut book);
    assert_eq!(
        book.get(100, MAC).map(|a| a.vtep),
        Some(C),
        "a late withdrawal of the old location"
    );

    // The VM migrates here: the announce is seen locally, the advert is
    // the next sequence number, and its UPDATE carries it.
    let delta = book.observe_local(&BTreeSet::from([(100, MAC)]), now);
    assert_eq!(delta.adverts, [advert(ME, 3)]);
    let u = advertise::mac_route(
        v.get(100).expect("vni"),
        ME,
        MAC,
        None,
        delta.adverts[0].seq,
    )
    .expect("builds");
    assert_eq!(
        attrs::read_mac_mobility(attrs::extended_communities(u.path_attributes())),
        (3, false)
    );
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    Mac {
        vtep: u8,
        rd: u16,
        ip: bool,
        seq: u32,
        vni: bool,
    },
    MacWithdraw {
        vtep: u8,
        rd: u16,
        ip: bool,
    },
    Imet {
        vtep: u8,
        rd: u16,
        endpoint: u8,
    },
    ImetWithdraw {
        vtep: u8,
        rd: u16,
        endpoint: u8,
    },
    Stale,
    Sweep,
    Clear,
}

fn vtep(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}

fn op() -> impl Strategy<Value = Op> {
    let v = 1u8..4;
    let rd = 1u16..3;
    prop_oneof![
        4 => (v.clone(), rd.clone(), any::<bool>(), 0u32..3, proptest::bool::weighted(0.9))
            .prop_map(|(vtep, rd, ip, seq, vni)| Op::Mac { vtep, rd, ip, seq, vni }),
        3 => (v.clone(), rd.clone(), any::<bool>()).prop_map(|(vtep, rd, ip)| Op::MacWithdraw { vtep, rd, ip }),
        3 => (v.clone(), rd.clone(), v.clone()).prop_map(|(vtep, rd, endpoint)| Op::Imet { vtep, rd, endpoint }),
        2 => (v.clone(), rd, v).prop_map(|(vtep, rd, endpoint)| Op::ImetWithdraw { vtep, rd, endpoint }),
        1 => Just(Op::Stale),
        1 => Just(Op::Sweep),
        1 => Just(Op::Clear),
    ]
}

proptest! {
    /// Whatever routes arrive, replaying the intents gives exactly the
    /// locations and flood entries the table holds (no MAC or flood entry
    /// leaks, none is removed while a route still names it).
    #[test]
    fn intents_always_describe_the_table(ops in proptest::collection::vec(op(), 0..60)) {
        let v = local_vnis();
        let mut rib = AdjRibIn::new(vtep(1));
        let mut macs: HashSet<(u32, MacAddr, Ipv4Addr)> = HashSet::new();
        let mut flood: HashSet<(u32, Ipv4Addr)> = HashSet::new();
        let mut ips: HashSet<IpBinding> = HashSet::new();
        for op in ops {
            let intents = match op {
                Op::Mac { vtep: n, rd, ip, seq, vni } => {
                    let r = VniRouting::auto(ASN, vtep(n), if vni { 100 } else { 200 }, rd);
                    rib.apply(&advertise::mac_route(&r, vtep(n), MAC, ip.then_some(IP), seq).expect("builds"), &v).intents
                }
                Op::MacWithdraw { vtep: n, rd, ip } => {
                    let r = VniRouting::auto(ASN, vtep(n), 100, rd);
                    rib.apply(&advertise::withdraw(vec![advertise::mac_nlri(&r, MAC, ip.then_some(IP))]).expect("builds"), &v).intents
                }
                Op::Imet { vtep: n, rd, endpoint } => {
                    let r = VniRouting::auto(ASN, vtep(n), 100, rd);
                    // The RD names VTEP `n`; the route's originator and
                    // endpoint may be another one (a changed endpoint).
                    rib.apply(&advertise::imet_route(&r, vtep(endpoint)).expect("builds"), &v).intents
                }
                Op::ImetWithdraw { vtep: n, rd, endpoint } => {
                    let r = VniRouting::auto(ASN, vtep(n), 100, rd);
                    rib.apply(&advertise::withdraw(vec![advertise::imet_nlri(&r, vtep(endpoint))]).expect("builds"), &v).intents
                }
                Op::Stale => { rib.mark_stale(); vec![] }
                Op::Sweep => rib.sweep_stale(),
                Op::Clear => rib.clear(),
            };
            for i in intents {
                match i {
                    Intent::Mac(a) => { macs.insert((a.vni, a.mac, a.vtep)); }
                    Intent::MacGone(w) => prop_assert!(macs.remove(&(w.vni, w.mac, w.vtep)), "withdrew an absent MAC"),
                    Intent::Ip(b) => prop_assert!(ips.insert(b), "bound twice"),
                    Intent::IpGone(b) => prop_assert!(ips.remove(&b), "unbound an absent address"),
                    Intent::Router { .. } => {}
                    Intent::FloodAdd { vni, vtep } => prop_assert!(flood.insert((vni, vtep)), "added twice"),
                    Intent::FloodRemove { vni, vtep } => prop_assert!(flood.remove(&(vni, vtep)), "removed an absent entry"),
                }
            }
            let held: HashSet<_> = rib.macs.values().map(|e| (e.advert.vni, e.advert.mac, e.advert.vtep)).collect();
            prop_assert_eq!(&macs, &held);
            let held: HashSet<_> = rib.imets.values().map(|e| (e.vni, e.vtep)).collect();
            prop_assert_eq!(&flood, &held);
            let held: HashSet<_> = rib.macs.iter().filter_map(|(k, e)| k.2.map(|ip| IpBinding { vni: e.advert.vni, mac: k.1, ip })).collect();
            prop_assert_eq!(&ips, &held);
        }
    }
}

/// Real EVPN UPDATEs to mutate: type 2 with and without IP, type 3, a
/// withdrawal, End-of-RIB.
fn seeds() -> Vec<Vec<u8>> {
    let r = remote(B, 100);
    [
        advertise::mac_route(&r, B, MAC, Some(IP), 7),
        advertise::mac_route(&r, B, MAC, None, 0),
        advertise::imet_route(&r, B),
        advertise::withdraw(vec![
            advertise::mac_nlri(&r, MAC, None),
            advertise::imet_nlri(&r, B),
        ]),
        advertise::end_of_rib(),
    ]
    .into_iter()
    .map(|u| codec::encode(&BgpMessage::Update(u.expect("builds"))).expect("encodes"))
    .collect()
}

proptest! {
    /// Corrupted and truncated EVPN UPDATEs never panic the decoder, and
    /// whatever still decodes never panics the route table either.
    #[test]
    fn mutated_updates_never_panic(
        seed in 0usize..5,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut m = seeds().swap_remove(seed);
        for (at, byte) in flips {
            let i = at.index(m.len());
            // Keep the marker most of the time, so parsing goes deep.
            if i >= 16 || byte % 4 == 0 {
                m[i] = byte;
            }
        }
        if let Some(c) = cut {
            m.truncate(c.index(m.len()));
        }
        let _ = codec::frame_len(&m);
        if let Ok(BgpMessage::Update(u)) = codec::decode(&m, true) {
            let mut rib = AdjRibIn::new(ME);
            let _ = rib.apply(&u, &local_vnis());
            rib.mark_stale();
            let _ = rib.apply(&u, &local_vnis());
            let _ = rib.sweep_stale();
        }
    }
}
