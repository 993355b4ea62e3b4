//! The agent: local MACs out as routes once established, neighbors' routes
//! into the FDB and the remote VTEPs (flooded and located), withdrawals, MAC moves both ways, two
//! route reflectors, the route bound, sessions going down with and without
//! graceful restart. Updates go through the wire codec, as they would
//! arrive.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::BgpMessage;

use super::*;
use crate::evpn::codec;
use crate::evpn::open::Negotiated;
use crate::evpn::rib::Intent;
use crate::evpn::session::{Down, DownReason};
use crate::evpn::vni::VniRouting;

const ASN: u32 = 65000;
const ME: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const C: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
const MAC2: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
const NOW: Duration = Duration::from_secs(10);

fn agent(peers: usize, max_routes: u32) -> Agent {
    Agent::new("vl1", ME, VniTable::auto(ASN, ME, [100]), peers, max_routes)
}

fn wire(u: BgpUpdateMessage) -> BgpUpdateMessage {
    let bytes = codec::encode(&BgpMessage::Update(u)).expect("encodes");
    match codec::decode(&bytes, true).expect("decodes") {
        BgpMessage::Update(u) => u,
        other => panic!("{other:?}"),
    }
}

fn remote(vtep: Ipv4Addr) -> VniRouting {
    VniRouting::auto(ASN, vtep, 100, 2)
}

fn mac_from(vtep: Ipv4Addr, mac: MacAddr, seq: u32) -> Report {
    Report::Update(wire(
        advertise::mac_route(&remote(vtep), vtep, mac, None, seq).expect("builds"),
    ))
}

/// VNI 100's remote VTEPs.
fn vteps(flood: &[Ipv4Addr], located: &[Ipv4Addr]) -> RemoteVteps {
    let set = |v: &[Ipv4Addr]| v.iter().copied().collect::<BTreeSet<_>>();
    RemoteVteps {
        flood: [(100, set(flood))].into(),
        located: if located.is_empty() {
            VtepsByVni::new()
        } else {
            [(100, set(located))].into()
        },
    }
}

fn mac_gone_from(vtep: Ipv4Addr, mac: MacAddr) -> Report {
    Report::Update(wire(
        advertise::withdraw(vec![advertise::mac_nlri(&remote(vtep), mac, None)]).expect("builds"),
    ))
}

fn imet_from(vtep: Ipv4Addr) -> Report {
    Report::Update(wire(
        advertise::imet_route(&remote(vtep), vtep).expect("builds"),
    ))
}

fn established() -> Report {
    Report::Established(Negotiated {
        peer_id: B,
        hold: Some(Duration::from_secs(90)),
        keepalive: Some(Duration::from_secs(30)),
        asn4: true,
        route_refresh: true,
        peer_restart: None,
    })
}

fn down(retain: Option<Duration>) -> Report {
    Report::Down(Down {
        reason: DownReason::ConnectionLost,
        retain,
    })
}

fn up(a: &mut Agent, peer: usize) {
    a.report(peer, &established(), NOW);
}

/// What a peer (a route reflector's view, VTEP `C`) makes of the UPDATEs
/// sent to `peer`.
fn seen_by(peer: usize, effects: &[Effect]) -> Vec<Intent> {
    seen_in(&mut AdjRibIn::new(C), peer, effects)
}

/// What `rib` (a route reflector's view, VTEP `C`) makes of the UPDATEs
/// sent to `peer`, on top of what it holds.
fn seen_in(rib: &mut AdjRibIn, peer: usize, effects: &[Effect]) -> Vec<Intent> {
    let vnis = VniTable::auto(ASN, C, [100]);
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { peer: p, update } if *p == peer => Some(wire(update.clone())),
            _ => None,
        })
        .flat_map(|u| rib.apply(&u, &vnis).intents)
        .collect()
}

fn fdb(effects: &[Effect]) -> Vec<FdbChange> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Fdb(c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn install(mac: MacAddr, vtep: Ipv4Addr) -> FdbChange {
    FdbChange::Install {
        vni: 100,
        mac,
        vtep,
    }
}

fn remove(mac: MacAddr) -> FdbChange {
    FdbChange::Remove { vni: 100, mac }
}

fn ad(vtep: Ipv4Addr, seq: u32) -> Intent {
    Intent::Mac(MacAdvert {
        vni: 100,
        mac: MAC,
        vtep,
        seq,
    })
}

fn local(macs: &[(u32, MacAddr)]) -> BTreeSet<(u32, MacAddr)> {
    macs.iter().copied().collect()
}

#[test]
fn local_macs_go_out_as_type_2_with_type_3_once_established() {
    let mut a = agent(1, 100);
    let e = a.local(&local(&[(100, MAC), (200, MAC2)]), NOW);
    assert!(
        e.is_empty(),
        "nothing is sent before the session is up: {e:?}"
    );
    let e = a.report(0, &established(), NOW);
    let seen = seen_by(0, &e);
    assert_eq!(
        seen,
        [Intent::FloodAdd { vni: 100, vtep: ME }, ad(ME, 0)],
        "type 3, then type 2 of the EVPN VNI only (200 is not one)"
    );
    let last = match e.last() {
        Some(Effect::Send { update, .. }) => update.clone(),
        other => panic!("{other:?}"),
    };
    assert!(last.end_of_rib().is_some(), "End-of-RIB last");

    let e = a.local(&local(&[(100, MAC), (100, MAC2)]), NOW);
    let mut second = ad(ME, 0);
    if let Intent::Mac(m) = &mut second {
        m.mac = MAC2;
    }
    assert_eq!(seen_by(0, &e), [second], "a new MAC goes out alone");
    let e = a.local(&local(&[(100, MAC)]), NOW);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        matches!(&e[0], Effect::Send { peer: 0, .. }),
        "a withdrawal"
    );

    let e = a.report(0, &Report::Refresh, NOW);
    assert_eq!(
        seen_by(0, &e),
        [Intent::FloodAdd { vni: 100, vtep: ME }, ad(ME, 0)]
    );
}

#[test]
fn peer_routes_program_the_fdb_and_flood_list_and_withdrawals_remove_them() {
    let mut a = agent(1, 100);
    let e = a.report(0, &mac_from(B, MAC, 0), NOW);
    assert!(
        e.is_empty(),
        "updates before Established are ignored: {e:?}"
    );
    up(&mut a, 0);
    let e = a.report(0, &mac_from(B, MAC, 0), NOW);
    assert_eq!(fdb(&e), [install(MAC, B)]);
    assert!(e.contains(&Effect::Vteps(vteps(&[], &[B]))), "{e:?}");
    let e = a.report(0, &imet_from(B), NOW);
    assert_eq!(e, [Effect::Vteps(vteps(&[B], &[B]))]);
    assert_eq!(a.remote_vteps(), vteps(&[B], &[B]));
    assert_eq!(
        a.peers(),
        [PeerView {
            up: true,
            mac_routes: 1,
            imet_routes: 1
        }]
    );
    a.local(&local(&[(100, MAC2)]), NOW);
    assert_eq!(
        a.vni_views(),
        [VniView {
            vni: 100,
            local_macs: 1,
            remote_macs: 1,
            vteps: vec![B]
        }]
    );
    let e = a.report(0, &mac_gone_from(B, MAC), NOW);
    assert_eq!(fdb(&e), [remove(MAC)]);
    assert!(e.contains(&Effect::Vteps(vteps(&[B], &[]))), "{e:?}");
    assert_eq!(a.routes().len(), 1, "ours is left");
}

#[test]
fn a_vtep_with_mac_routes_and_no_imet_route_is_located_but_not_flooded() {
    let mut a = agent(2, 100);
    up(&mut a, 0);
    up(&mut a, 1);
    a.report(0, &mac_from(C, MAC, 0), NOW);
    let e = a.report(0, &mac_from(C, MAC2, 0), NOW);
    assert!(
        !e.iter().any(|x| matches!(x, Effect::Vteps(_))),
        "C was located already: {e:?}"
    );
    let e = a.report(1, &mac_from(C, MAC, 0), NOW);
    assert!(fdb(&e).is_empty(), "{e:?}");
    assert_eq!(a.remote_vteps(), vteps(&[], &[C]));
    // C stays located while any neighbor places any MAC behind it.
    a.report(0, &mac_gone_from(C, MAC), NOW);
    a.report(0, &mac_gone_from(C, MAC2), NOW);
    assert_eq!(a.remote_vteps(), vteps(&[], &[C]));
    let e = a.report(1, &mac_gone_from(C, MAC), NOW);
    assert_eq!(fdb(&e), [remove(MAC)]);
    assert_eq!(e.last(), Some(&Effect::Vteps(vteps(&[], &[]))));
}

#[test]
fn a_mac_moving_here_gets_the_next_sequence_number_and_away_withdraws_ours() {
    let mut a = agent(1, 100);
    up(&mut a, 0);
    a.report(0, &mac_from(B, MAC, 3), NOW);
    // The VM arrives here: one above B's sequence number, B's entry goes.
    let e = a.local(&local(&[(100, MAC)]), NOW);
    assert_eq!(fdb(&e), [remove(MAC)]);
    assert_eq!(seen_by(0, &e), [ad(ME, 4)]);
    // It moves on to C with a higher number: installed there, ours withdrawn.
    let e = a.report(0, &mac_from(C, MAC, 5), NOW);
    assert_eq!(fdb(&e), [install(MAC, C)]);
    assert!(e.contains(&Effect::Forget { vni: 100, mac: MAC }), "{e:?}");
    let withdrawal = e.iter().find_map(|x| match x {
        Effect::Send { update, .. } => Some(update.clone()),
        _ => None,
    });
    let mut rib = AdjRibIn::new(C);
    let vnis = VniTable::auto(ASN, C, [100]);
    rib.apply(
        &wire(
            a.mac_update(&MacAdvert {
                vni: 100,
                mac: MAC,
                vtep: ME,
                seq: 4,
            })
            .expect("builds"),
        ),
        &vnis,
    );
    let gone = rib.apply(&wire(withdrawal.expect("our route withdrawn")), &vnis);
    assert!(
        matches!(gone.intents.as_slice(), [Intent::MacGone(w)] if w.vtep == ME),
        "{gone:?}"
    );
    // A stale copy with a lower number changes nothing.
    let e = a.report(0, &mac_from(B, MAC, 4), NOW);
    assert!(fdb(&e).is_empty(), "{e:?}");
}

#[test]
fn two_route_reflectors_withdraw_a_mac_only_when_both_did() {
    let mut a = agent(2, 100);
    up(&mut a, 0);
    up(&mut a, 1);
    for peer in [0, 1] {
        a.report(peer, &mac_from(B, MAC, 0), NOW);
        a.report(peer, &imet_from(B), NOW);
    }
    let e = a.report(0, &mac_gone_from(B, MAC), NOW);
    assert!(
        fdb(&e).is_empty(),
        "the other reflector still has it: {e:?}"
    );
    let e = a.report(0, &down(None), NOW);
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(a.remote_vteps(), vteps(&[B], &[B]));
    let e = a.report(1, &down(None), NOW);
    assert_eq!(fdb(&e), [remove(MAC)]);
    assert!(e.contains(&Effect::Vteps(vteps(&[], &[]))), "{e:?}");
}

#[test]
fn a_neighbor_over_the_route_bound_is_ceased_and_its_routes_withdrawn() {
    let mut a = agent(1, 2);
    up(&mut a, 0);
    a.report(0, &mac_from(B, MAC, 0), NOW);
    a.report(0, &imet_from(B), NOW);
    let e = a.report(0, &mac_from(B, MAC2, 0), NOW);
    assert!(
        e.contains(&Effect::Cease {
            peer: 0,
            notification: Notification::max_prefixes(2)
        }),
        "{e:?}"
    );
    let mut changes = fdb(&e);
    changes.sort_by_key(|c| format!("{c:?}"));
    let mut want = vec![install(MAC2, B), remove(MAC), remove(MAC2)];
    want.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(changes, want);
    assert!(a.routes().is_empty());
    assert_eq!(a.remote_vteps(), vteps(&[], &[]));
    let e = a.report(0, &mac_from(B, MAC, 0), NOW);
    assert!(e.is_empty(), "its updates in flight are ignored: {e:?}");
    let e = a.report(0, &down(Some(Duration::from_mins(2))), NOW);
    assert!(e.is_empty(), "nothing left to keep: {e:?}");
    up(&mut a, 0);
    let e = a.report(0, &mac_from(B, MAC, 0), NOW);
    assert_eq!(
        fdb(&e),
        [install(MAC, B)],
        "taken again once re-established"
    );
}

#[test]
fn a_session_down_withdraws_its_routes_unless_the_peer_restarts_gracefully() {
    let mut a = agent(1, 100);
    up(&mut a, 0);
    a.local(&local(&[(100, MAC2)]), NOW);
    a.report(0, &mac_from(B, MAC, 0), NOW);
    a.report(0, &imet_from(B), NOW);
    let e = a.report(0, &down(None), NOW);
    assert_eq!(fdb(&e), [remove(MAC)]);
    assert!(e.contains(&Effect::Vteps(vteps(&[], &[]))), "{e:?}");
    assert_eq!(a.routes().len(), 1, "our own MAC stays");

    up(&mut a, 0);
    a.report(0, &mac_from(B, MAC, 0), NOW);
    let e = a.report(0, &down(Some(Duration::from_mins(2))), NOW);
    assert_eq!(
        e,
        [Effect::SweepAfter {
            peer: 0,
            generation: 2,
            after: Duration::from_mins(2)
        }]
    );
    assert!(a.sweep(0, 1, NOW).is_empty(), "an older drop's timer");
    let e = a.sweep(0, 2, NOW);
    assert_eq!(fdb(&e), [remove(MAC)], "the restart time ran out");
}

fn end_of_rib() -> Report {
    Report::Update(wire(advertise::end_of_rib().expect("builds")))
}

/// The data plane held MAC behind B and MAC2 behind C, both flooded to.
fn kept() -> Kept {
    let evpn = BTreeSet::from([100]);
    let held = |mac, vtep| crate::evpn::restart::HeldEntry {
        vni: 100,
        mac,
        vtep,
        from_evpn: true,
    };
    Kept::read(
        &evpn,
        ME,
        &[(100, 0, B), (100, 1, C)],
        &[held(MAC, B), held(MAC2, C)],
        |_, _| false,
    )
}

#[test]
fn a_restarted_node_keeps_what_its_data_plane_held_until_every_end_of_rib() {
    let mut a = agent(2, 100);
    a.resume(kept());
    assert!(a.restarting());
    assert_eq!(a.remote_vteps(), vteps(&[B, C], &[B, C]), "kept at once");
    up(&mut a, 0);
    up(&mut a, 1);
    // Both neighbors send B's MAC and IMET again; C's are gone (C left
    // while this node was down).
    for peer in [0, 1] {
        a.report(peer, &imet_from(B), NOW);
        let fx = a.report(peer, &mac_from(B, MAC, 0), NOW);
        assert!(
            !fdb(&fx)
                .iter()
                .any(|c| matches!(c, FdbChange::Remove { .. })),
            "nothing is removed while restarting: {fx:?}"
        );
    }
    assert_eq!(a.remote_vteps(), vteps(&[B, C], &[B, C]), "C still kept");
    let first = a.report(0, &end_of_rib(), NOW);
    assert!(first.is_empty(), "one End-of-RIB of two: {first:?}");
    assert!(a.restarting());
    let last = a.report(1, &end_of_rib(), NOW);
    assert!(!a.restarting());
    assert_eq!(
        fdb(&last),
        vec![FdbChange::Remove {
            vni: 100,
            mac: MAC2
        }],
        "only the MAC no route placed again goes"
    );
    assert!(last.contains(&Effect::Vteps(vteps(&[B], &[B]))), "{last:?}");
}

#[test]
fn the_restart_ends_at_the_restart_time_without_every_end_of_rib() {
    let mut a = agent(2, 100);
    a.resume(kept());
    up(&mut a, 0);
    a.report(0, &mac_from(C, MAC2, 0), NOW);
    a.report(0, &end_of_rib(), NOW);
    assert!(a.restarting(), "neighbor 1 never came up");
    a.report(0, &mac_ip_from(C, MAC2, 0), NOW);
    let over = a.restart_over();
    assert_eq!(fdb(&over), vec![FdbChange::Remove { vni: 100, mac: MAC }]);
    assert!(over.contains(&Effect::Vteps(vteps(&[], &[C]))), "{over:?}");
    assert_eq!(
        neigh(&over),
        vec![(100, MAC, vec![])],
        "the swept MAC's kept addresses go; MAC2's were bound again"
    );
    assert!(a.restart_over().is_empty(), "only once");
}

#[test]
fn a_mac_that_left_this_node_is_placed_behind_the_vtep_it_went_to() {
    // Its port went before it announced itself elsewhere: our route is
    // withdrawn first, the new one starts at 0 again (RFC 7432 §15).
    let mut a = agent(1, 100);
    up(&mut a, 0);
    a.local(&local(&[(100, MAC)]), NOW);
    a.local(&local(&[]), NOW + Duration::from_secs(1));
    let fx = a.report(0, &mac_from(B, MAC, 0), NOW + Duration::from_secs(2));
    assert_eq!(fdb(&fx), vec![install(MAC, B)], "{fx:?}");
}

const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

fn mac_ip_from(vtep: Ipv4Addr, mac: MacAddr, seq: u32) -> Report {
    Report::Update(wire(
        advertise::mac_route(&remote(vtep), vtep, mac, Some(IP), seq).expect("builds"),
    ))
}

fn mac_ip_gone_from(vtep: Ipv4Addr, mac: MacAddr) -> Report {
    Report::Update(wire(
        advertise::withdraw(vec![advertise::mac_nlri(&remote(vtep), mac, Some(IP))])
            .expect("builds"),
    ))
}

fn neigh(effects: &[Effect]) -> Vec<(u32, MacAddr, Vec<IpAddr>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Neigh { key, set } => Some((key.0, key.1, set.ips.iter().copied().collect())),
            _ => None,
        })
        .collect()
}

#[test]
fn mac_ip_routes_bind_the_address_until_the_last_one_goes() {
    let mut a = agent(2, 100);
    up(&mut a, 0);
    up(&mut a, 1);
    let first = a.report(0, &mac_ip_from(B, MAC, 0), NOW);
    assert_eq!(neigh(&first), vec![(100, MAC, vec![IP])]);
    assert_eq!(
        fdb(&first),
        vec![install(MAC, B)],
        "a MAC/IP route places the MAC too"
    );
    assert!(
        neigh(&a.report(1, &mac_ip_from(B, MAC, 0), NOW)).is_empty(),
        "already bound"
    );
    assert!(
        neigh(&a.report(0, &mac_ip_gone_from(B, MAC), NOW)).is_empty(),
        "RR 2 still binds it"
    );
    assert_eq!(
        neigh(&a.report(1, &mac_ip_gone_from(B, MAC), NOW)),
        vec![(100, MAC, vec![])]
    );
}

#[test]
fn snooped_addresses_of_local_macs_go_out_as_mac_ip_routes() {
    let mut a = agent(1, 100);
    up(&mut a, 0);
    a.local(&local(&[(100, MAC)]), NOW);
    let set = NeighSet {
        ips: BTreeSet::from([IP]),
        router: false,
    };
    let snooped = [((100, MAC), set)].into();
    // Only this node's MACs: another's snooped binding is not advertised.
    let other = [((100, MAC2), NeighSet::default())].into();
    assert!(a.local_neighs(&other).is_empty());
    let fx = a.local_neighs(&snooped);
    let binding = IpBinding {
        vni: 100,
        mac: MAC,
        ip: IP,
    };
    assert!(seen_by(0, &fx).contains(&Intent::Ip(binding)), "{fx:?}");
    assert!(a.local_neighs(&snooped).is_empty(), "sent once");
    // A neighbor that comes up again gets it in its full table.
    a.report(0, &down(None), NOW);
    let table = a.report(0, &established(), NOW);
    let mut rr = AdjRibIn::new(C);
    assert!(seen_in(&mut rr, 0, &table).contains(&Intent::Ip(binding)));
    // The MAC goes: its address is withdrawn with it.
    let gone = a.local(&local(&[]), NOW + Duration::from_secs(1));
    assert!(
        seen_in(&mut rr, 0, &gone).contains(&Intent::IpGone(binding)),
        "{gone:?}"
    );
    assert!(a.local_neighs(&snooped).is_empty(), "not ours any more");
}

#[test]
fn a_direct_members_mac_goes_out_with_its_own_next_hop_and_back_behind_us() {
    const MEMBER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 7);
    let mut a = agent(1, 100);
    up(&mut a, 0);
    // Set before the MAC is advertised: its first route has the next hop.
    assert!(a.set_next_hops([((100, MAC), MEMBER)].into()).is_empty());
    let e = a.local(&local(&[(100, MAC), (100, MAC2)]), NOW);
    let mut rr = AdjRibIn::new(C);
    let seen = seen_in(&mut rr, 0, &e);
    assert!(seen.contains(&ad(MEMBER, 0)), "{seen:?}");
    assert!(
        seen.iter()
            .any(|i| matches!(i, Intent::Mac(m) if m.mac == MAC2 && m.vtep == ME)),
        "the others behind this node: {seen:?}"
    );
    // The same next hop again: nothing to send.
    assert!(a.set_next_hops([((100, MAC), MEMBER)].into()).is_empty());
    // The member is direct no more: the same route (same seq) behind us.
    // (The reflector's table replaces the route: the old one goes.)
    let e = a.set_next_hops(BTreeMap::new());
    assert_eq!(seen_in(&mut rr, 0, &e).last(), Some(&ad(ME, 0)));
    // And direct again; its full table carries the member's next hop.
    let e = a.set_next_hops([((100, MAC), MEMBER)].into());
    assert_eq!(seen_in(&mut rr, 0, &e).last(), Some(&ad(MEMBER, 0)));
    a.report(0, &down(None), NOW);
    let table = a.report(0, &established(), NOW);
    assert!(seen_by(0, &table).contains(&ad(MEMBER, 0)));
}

#[test]
fn a_direct_member_gets_a_type_3_route_while_it_is_direct() {
    const MEMBER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 7);
    let mut a = agent(1, 100);
    up(&mut a, 0);
    let floods = |vni: u32| BTreeMap::from([(vni, BTreeSet::from([MEMBER]))]);
    assert!(
        a.set_direct_floods(&floods(200)).is_empty(),
        "not an EVPN VNI here"
    );
    let mut rr = AdjRibIn::new(C);
    let e = a.set_direct_floods(&floods(100));
    assert_eq!(
        seen_in(&mut rr, 0, &e),
        [Intent::FloodAdd {
            vni: 100,
            vtep: MEMBER
        }]
    );
    assert!(a.set_direct_floods(&floods(100)).is_empty(), "sent once");
    a.report(0, &down(None), NOW);
    let table = a.report(0, &established(), NOW);
    assert!(seen_by(0, &table).contains(&Intent::FloodAdd {
        vni: 100,
        vtep: MEMBER
    }));
    let e = a.set_direct_floods(&BTreeMap::new());
    assert_eq!(
        seen_in(&mut rr, 0, &e),
        [Intent::FloodRemove {
            vni: 100,
            vtep: MEMBER
        }]
    );
}

/// The router flags of the `Neigh` effects among `effects`.
fn routers(effects: &[Effect]) -> Vec<bool> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Neigh { set, .. } => Some(set.router),
            _ => None,
        })
        .collect()
}

#[test]
fn the_nd_router_flag_is_read_and_sent_on_ipv6_mac_ip_routes() {
    let v6: IpAddr = "2001:db8::10".parse().unwrap();
    let mut a = agent(1, 100);
    up(&mut a, 0);
    // Received: FRR's IPv6 MAC/IP route of a router binds it with R.
    let route = |router: bool| {
        Report::Update(wire(
            advertise::mac_ip_route(&remote(B), B, MAC, Some(v6), 0, router).expect("builds"),
        ))
    };
    let fx = a.report(0, &route(true), NOW);
    assert_eq!(routers(&fx).last(), Some(&true), "{fx:?}");
    assert!(routers(&a.report(0, &route(true), NOW)).is_empty(), "once");
    // Its last binding gone, the flag goes with it.
    let gone = Report::Update(wire(
        advertise::withdraw(vec![advertise::mac_nlri(&remote(B), MAC, Some(v6))]).expect("builds"),
    ));
    assert_eq!(routers(&a.report(0, &gone, NOW)), [false]);
    let plain = a.report(0, &route(false), NOW);
    assert_eq!(routers(&plain), [false], "no flag, no R");

    // Sent: a local router's IPv6 route carries the community; its IPv4
    // route does not; a change of the flag sends the IPv6 route again.
    a.local(&local(&[(100, MAC2)]), NOW);
    let set = |router: bool| {
        let ips = BTreeSet::from([v6, IP]);
        BTreeMap::from([((100, MAC2), NeighSet { ips, router })])
    };
    let carried = |effects: &[Effect]| -> Vec<(bool, bool)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { update, .. } => Some(wire(update.clone())),
                _ => None,
            })
            .map(|u| {
                let v6_route = format!("{u:?}").contains("2001:db8::10");
                let communities = crate::evpn::attrs::extended_communities(u.path_attributes());
                let flag = crate::evpn::attrs::read_nd_router(communities);
                (v6_route, flag)
            })
            .collect()
    };
    let mut first = carried(&a.local_neighs(&set(true)));
    first.sort_unstable();
    assert_eq!(first, [(false, false), (true, true)]);
    assert_eq!(carried(&a.local_neighs(&set(false))), [(true, false)]);
    assert!(a.local_neighs(&set(false)).is_empty());
}
