//! A gateway's relay (`VLNET_CFG_RELAY`, `lib/relay.h`) between its static
//! peers (the zone) and its members: a known unicast frame for the other
//! side gets new outer headers in place (the inner frame byte for byte,
//! TTL, DSCP and ECN as for a local frame) and goes there only; floods
//! follow split horizon; a member's frames are relayed only from MACs it
//! owns; XDP leaves relaying to TC. Then the real paths through a TUN: the
//! zone's frame reaches a member through the tunnel, a member's frame from
//! the tunnel reaches the zone on the wire.
//!
//! In the `BPF_PROG_TEST_RUN` tests the members are reached over the
//! underlay (the relay goes by a VTEP's `VLNET_VTEP_LEARN` flag, not by its
//! path), so every flood copy crosses `ul0` and is captured on `ul1`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::support::frames::{self, off, VM_A_MAC, VM_B_MAC};
use super::support::packet_socket::PacketSocket;
use super::support::vtep_bed::{
    Bed, Mode, LOCAL, PEER, STATIC_PEER, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS,
    XDP_REDIRECT,
};
use super::{bare, Tun, PEER2, TUN_LOCAL};
use vlnet_dataplane::bpf;
use vlnet_dataplane::maps::fdb_key;
use vlnet_dataplane::trust::{VtepBinding, VtepPath};
use vlnet_ebpf::abi::{
    vlnet_fdb_entry, vlnet_nexthop, VLNET_FDB_CONTROL, VLNET_FDB_LEARNED, VLNET_NH_L3,
};

/// Two members of VNI 100.
const MEMBER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 7);
const MEMBER2: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 8);
/// A member reached through the bed's TUN.
const TUNNEL_MEMBER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 9);
/// Another VM's MAC.
const VM_C_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0c, 0x01];

fn entry(vtep: Ipv4Addr, flags: u32) -> vlnet_fdb_entry {
    vlnet_fdb_entry {
        vtep_be: u32::from(vtep).to_be(),
        flags,
        updated_ns: 1,
    }
}

/// A gateway bed: VNI 100's flood list is the zone `PEER`, `PEER2` then the
/// members `MEMBER`, `MEMBER2`, every one reached over `ul0`.
fn gateway(tag: &str) -> Bed {
    let mut bed = Bed::new(tag);
    bed.set_relay(true);
    let member_on_the_underlay = VtepBinding {
        path: VtepPath::Underlay,
        learn: false,
        direct: false,
    };
    bed.add_peer(100, PEER2, STATIC_PEER);
    bed.add_peer(100, MEMBER, member_on_the_underlay);
    bed.add_peer(100, MEMBER2, member_on_the_underlay);
    let nexthop = bed.maps.nexthop(PEER).unwrap();
    for vtep in [PEER2, MEMBER, MEMBER2] {
        bed.maps.set_nexthop(vtep, &nexthop).unwrap();
    }
    let port = bed.vlx100;
    bed.set_flood(100, port, &[PEER, PEER2], &[MEMBER, MEMBER2]);
    bed
}

fn place(bed: &mut Bed, mac: [u8; 6], vtep: Ipv4Addr, flags: u32) {
    bed.maps
        .set_fdb(&fdb_key(100, mac), &entry(vtep, flags))
        .unwrap();
}

/// `(packets, bytes)` relayed to members and to the zone.
fn relayed(bed: &Bed) -> [(u64, u64); 2] {
    let counts = bed.maps.relay_counts();
    let of = |dir: &str| {
        let c = counts.iter().find(|c| c.direction == dir).unwrap();
        (c.packets, c.bytes)
    };
    [of("to_members"), of("to_zone")]
}

/// Frames sent to each peer of VNI 100 (by address).
fn sent(bed: &Bed) -> BTreeMap<Ipv4Addr, u64> {
    bed.maps
        .peers()
        .into_iter()
        .filter(|p| p.vni == 100)
        .map(|p| (p.vtep, p.tx_packets))
        .collect()
}

/// [`sent`] when exactly `vteps` got one frame each.
fn sent_to(vteps: &[Ipv4Addr]) -> BTreeMap<Ipv4Addr, u64> {
    [PEER, PEER2, MEMBER, MEMBER2]
        .into_iter()
        .map(|v| (v, u64::from(vteps.contains(&v))))
        .collect()
}

/// The outer destination of a relayed packet.
fn outer_dst(packet: &[u8]) -> Ipv4Addr {
    let d = &packet[off::IP_SRC + 4..off::IP_SRC + 8];
    Ipv4Addr::new(d[0], d[1], d[2], d[3])
}

/// Checks the outer headers the gateway wrote for `inner` to `dst`, as
/// encap writes them for a local frame (the bed: TTL 64, DSCP 0).
fn assert_relayed(bed: &Bed, packet: &[u8], dst: Ipv4Addr, inner: &[u8], tos: u8) {
    assert_eq!(packet[..6], bed.ns.mac("ul1"), "next hop's MAC");
    assert_eq!(packet[6..12], bed.ns.mac("ul0"));
    assert_eq!(packet[off::IP], 0x45, "a fresh 20-byte IPv4 header");
    assert_eq!(packet[off::TOS], tos, "outer TOS");
    assert_eq!(packet[22], 64, "the node's TTL");
    assert_eq!(
        packet[off::IP_SRC..off::IP_SRC + 4],
        LOCAL.octets(),
        "the gateway's VTEP"
    );
    assert_eq!(outer_dst(packet), dst);
    assert_eq!(frames::checksum(&packet[off::IP..off::IP + 20]), 0);
    let total = u16::from_be_bytes([packet[off::TOT_LEN], packet[off::TOT_LEN + 1]]);
    assert_eq!(usize::from(total), 36 + inner.len());
    assert_eq!(packet[36..38], 4789u16.to_be_bytes());
    assert_eq!(packet[40..42], [0, 0], "UDP checksum zero");
    assert_eq!(packet[off::VXLAN..off::INNER], [8, 0, 0, 0, 0, 0, 100, 0]);
    assert_eq!(packet[off::INNER..], inner[..], "the inner frame");
}

/// A frame from the zone for a member's MAC goes to that member only, with
/// the gateway's outer headers over the inner frame; the decap's ECN rule
/// comes first (an outer CE marks the ECN-capable inner packet CE) and the
/// encap's follows (inner CE: outer ECT(0)), as for a local frame.
#[test]
fn a_zone_frame_for_a_members_mac_is_relayed_in_place() {
    let mut bed = gateway("rlyuni");
    place(&mut bed, VM_B_MAC, MEMBER, VLNET_FDB_CONTROL);
    let ect0 = (10 << 2) | 0b10;
    let inner = frames::inner_udp(VM_B_MAC, ect0, 100);

    let (ret, out) = bed.decap(Mode::Tc, &frames::vxlan(PEER, LOCAL, 100, 0, &inner));
    assert_eq!(ret, TC_ACT_REDIRECT, "drops: {:?}", bed.maps.drops());
    assert_relayed(&bed, &out, MEMBER, &inner, 0b10);
    assert_eq!(relayed(&bed), [(1, inner.len() as u64), (0, 0)]);
    assert_eq!(sent(&bed), sent_to(&[MEMBER]));
    assert_eq!(
        bed.fdb_entry(100, VM_A_MAC).map(|e| (e.vtep_be, e.flags)),
        Some((u32::from(PEER).to_be(), VLNET_FDB_LEARNED)),
        "the zone's VM is learned as usual"
    );

    let (ret, out) = bed.decap(Mode::Tc, &frames::vxlan(PEER, LOCAL, 100, 0b11, &inner));
    assert_eq!(ret, TC_ACT_REDIRECT);
    let marked = frames::inner_udp(VM_B_MAC, (10 << 2) | 0b11, 100);
    assert_relayed(&bed, &out, MEMBER, &marked, 0b10);

    // An outer header with options: the relayed one has none.
    let plain = frames::vxlan(PEER, LOCAL, 100, 0, &inner);
    let mut with_options = plain[..off::IP + 20].to_vec();
    with_options.extend_from_slice(&[1, 1, 1, 0]);
    with_options.extend_from_slice(&plain[off::IP + 20..]);
    with_options[off::IP] = 0x46;
    let total = u16::from_be_bytes([plain[off::TOT_LEN], plain[off::TOT_LEN + 1]]) + 4;
    with_options[off::TOT_LEN..off::TOT_LEN + 2].copy_from_slice(&total.to_be_bytes());
    frames::fix_ipv4_checksum(&mut with_options, off::IP);
    let (ret, out) = bed.decap(Mode::Tc, &with_options);
    assert_eq!(ret, TC_ACT_REDIRECT, "drops: {:?}", bed.maps.drops());
    assert_relayed(&bed, &out, MEMBER, &inner, 0b10);
    assert_eq!(bed.total_drops(), 0);

    // Too big for the path, as a local frame would be.
    let big = frames::inner_udp(VM_B_MAC, 0, 1500 - 28 + 1);
    let (ret, _) = bed.decap(Mode::Tc, &frames::vxlan(PEER, LOCAL, 100, 0, &big));
    assert_eq!((ret, bed.drops("mtu_exceeded")), (TC_ACT_SHOT, 1));
    assert_eq!(relayed(&bed)[0].0, 3);
}

/// A member's frame for a MAC behind a static peer is relayed only when
/// its inner source is placed behind that member; the zone then sees the
/// gateway's VTEP as the source (and learns the member's MAC behind it).
#[test]
fn a_members_frame_for_the_zone_needs_a_source_it_owns() {
    let mut bed = gateway("rlyown");
    place(&mut bed, VM_B_MAC, PEER2, VLNET_FDB_LEARNED);
    let inner = frames::inner_udp(VM_B_MAC, 0, 64);
    let frame = frames::vxlan(MEMBER, LOCAL, 100, 0, &inner);

    for (holder, what) in [(None, "unknown"), (Some(MEMBER2), "another member's")] {
        match holder {
            Some(vtep) => place(&mut bed, VM_A_MAC, vtep, VLNET_FDB_CONTROL),
            None => bed.maps.remove_fdb(&fdb_key(100, VM_A_MAC)).unwrap(),
        }
        let before = bed.drops("relay_not_owned");
        let (ret, _) = bed.decap(Mode::Tc, &frame);
        assert_eq!(ret, TC_ACT_SHOT, "{what} source");
        assert_eq!(bed.drops("relay_not_owned"), before + 1, "{what} source");
    }
    assert_eq!(relayed(&bed), [(0, 0), (0, 0)]);
    assert!(sent(&bed).values().all(|n| *n == 0), "nothing sent");

    place(&mut bed, VM_A_MAC, MEMBER, VLNET_FDB_CONTROL);
    let (ret, out) = bed.decap(Mode::Tc, &frame);
    assert_eq!(ret, TC_ACT_REDIRECT, "drops: {:?}", bed.maps.drops());
    assert_relayed(&bed, &out, PEER2, &inner, 0);
    assert_eq!(relayed(&bed), [(0, 0), (1, inner.len() as u64)]);
    assert_eq!(sent(&bed), sent_to(&[PEER2]));
    assert_eq!(
        bed.fdb_entry(100, VM_A_MAC),
        Some(entry(MEMBER, VLNET_FDB_CONTROL)),
        "a member's frame writes nothing"
    );
}

/// Floods cross the gateway once, towards the other side only: the zone's
/// to every member, a member's (from a MAC it owns) to every static peer;
/// each is delivered here too. Unknown unicast floods the same way, unless
/// its MAC lives here; a known MAC on the same side is not relayed at all.
#[test]
fn floods_follow_split_horizon() {
    let mut bed = gateway("rlyflood");
    let capture = PacketSocket::bind(bed.ns.ifindex("ul1"));
    capture.set_rcvbuf(1 << 20);
    let arp = frames::inner_arp_request();

    let (ret, out) = bed.decap(Mode::Tc, &frames::vxlan(PEER, LOCAL, 100, 0, &arp));
    assert_eq!((ret, out), (TC_ACT_REDIRECT, arp.clone()), "delivered here");
    let copies = capture.recv_vxlan(2);
    let mut to: Vec<Ipv4Addr> = copies.iter().map(|c| outer_dst(c)).collect();
    to.sort();
    assert_eq!(to, [MEMBER, MEMBER2], "each member once, no static peer");
    for copy in &copies {
        assert_relayed(&bed, copy, outer_dst(copy), &arp, 0);
    }
    assert_eq!(sent(&bed), sent_to(&[MEMBER, MEMBER2]));
    assert_eq!(relayed(&bed), [(2, 2 * arp.len() as u64), (0, 0)]);

    // A member's broadcast from a MAC it owns: to the static peers only.
    let mut bed = gateway("rlyflood2");
    let capture = PacketSocket::bind(bed.ns.ifindex("ul1"));
    place(&mut bed, VM_A_MAC, MEMBER, VLNET_FDB_CONTROL);
    let (ret, out) = bed.decap(Mode::Tc, &frames::vxlan(MEMBER, LOCAL, 100, 0, &arp));
    assert_eq!((ret, out), (TC_ACT_REDIRECT, arp.clone()));
    let mut to: Vec<Ipv4Addr> = capture.recv_vxlan(2).iter().map(|c| outer_dst(c)).collect();
    to.sort();
    assert_eq!(to, [PEER, PEER2], "each static peer once, no member");
    assert_eq!(sent(&bed), sent_to(&[PEER, PEER2]));

    // From a MAC it does not own: delivered here only, counted; from one
    // held by another member: dropped, counted under that reason alone.
    let mut not_owned = arp.clone();
    not_owned[6..12].copy_from_slice(&VM_C_MAC);
    let frame = frames::vxlan(MEMBER, LOCAL, 100, 0, &not_owned);
    let (ret, out) = bed.decap(Mode::Tc, &frame);
    assert_eq!((ret, out), (TC_ACT_REDIRECT, not_owned));
    assert_eq!(bed.drops("relay_not_owned"), 1);
    place(&mut bed, VM_C_MAC, MEMBER2, VLNET_FDB_CONTROL);
    assert_eq!(bed.decap(Mode::Tc, &frame).0, TC_ACT_SHOT);
    assert_eq!(bed.drops("source_not_owned"), 1);
    assert_eq!(bed.drops("relay_not_owned"), 1);
    assert_eq!(sent(&bed), sent_to(&[PEER, PEER2]), "no new copy");

    // Unknown unicast from the zone floods to the members...
    let mut bed = gateway("rlyflood3");
    let unknown = frames::inner_udp(VM_B_MAC, 0, 10);
    let (ret, out) = bed.decap(Mode::Tc, &frames::vxlan(PEER, LOCAL, 100, 0, &unknown));
    assert_eq!((ret, out), (TC_ACT_REDIRECT, unknown.clone()));
    assert_eq!(sent(&bed), sent_to(&[MEMBER, MEMBER2]));
    // ... unless its MAC lives here; nor is a MAC behind a static peer relayed.
    bed.maps.record_local(&fdb_key(100, VM_B_MAC), 1).unwrap();
    bed.decap(Mode::Tc, &frames::vxlan(PEER, LOCAL, 100, 0, &unknown));
    let mut for_the_zone = unknown.clone();
    for_the_zone[..6].copy_from_slice(&VM_C_MAC);
    place(&mut bed, VM_C_MAC, PEER2, VLNET_FDB_LEARNED);
    let (ret, out) = bed.decap(Mode::Tc, &frames::vxlan(PEER, LOCAL, 100, 0, &for_the_zone));
    assert_eq!(
        (ret, out),
        (TC_ACT_REDIRECT, for_the_zone),
        "delivered here"
    );
    assert_eq!(sent(&bed), sent_to(&[MEMBER, MEMBER2]), "no new copy");

    // A node that is no gateway relays nothing.
    assert_eq!(bed.total_drops(), 0);
    bed.set_relay(false);
    bed.decap(Mode::Tc, &frames::vxlan(PEER, LOCAL, 100, 0, &arp));
    place(&mut bed, VM_B_MAC, MEMBER, VLNET_FDB_CONTROL);
    let (ret, out) = bed.decap(Mode::Tc, &frames::vxlan(PEER, LOCAL, 100, 0, &unknown));
    assert_eq!((ret, out), (TC_ACT_REDIRECT, unknown), "delivered here");
    assert_eq!(sent(&bed), sent_to(&[MEMBER, MEMBER2]), "no new copy");
}

/// A direct member (`VLNET_VTEP_DIRECT`: the zone floods to it itself) gets
/// no relayed copy of the zone's floods, but still its known unicast, and
/// the gateway's own floods; its own floods are relayed to the zone.
#[test]
fn a_direct_member_gets_no_relayed_floods() {
    let mut bed = gateway("rlydirect");
    let direct = VtepBinding {
        path: VtepPath::Underlay,
        learn: false,
        direct: true,
    };
    bed.add_peer(100, MEMBER2, direct);
    let capture = PacketSocket::bind(bed.ns.ifindex("ul1"));
    capture.set_rcvbuf(1 << 20);
    let arp = frames::inner_arp_request();
    let (ret, out) = bed.decap(Mode::Tc, &frames::vxlan(PEER, LOCAL, 100, 0, &arp));
    assert_eq!((ret, out), (TC_ACT_REDIRECT, arp.clone()), "delivered here");
    let copies = capture.recv_vxlan(1);
    assert_eq!(outer_dst(&copies[0]), MEMBER);
    assert_eq!(
        sent(&bed),
        sent_to(&[MEMBER]),
        "no copy to the direct member"
    );
    assert_eq!(relayed(&bed), [(1, arp.len() as u64), (0, 0)]);
    // Its MAC's known unicast is still relayed to it.
    place(&mut bed, VM_B_MAC, MEMBER2, VLNET_FDB_CONTROL);
    let unicast = frames::inner_udp(VM_B_MAC, 0, 10);
    let (ret, out) = bed.decap(Mode::Tc, &frames::vxlan(PEER, LOCAL, 100, 0, &unicast));
    assert_eq!(ret, TC_ACT_REDIRECT);
    assert_eq!(outer_dst(&out), MEMBER2, "the relayed frame itself");
    // Its own broadcast from a MAC it owns goes to the zone.
    place(&mut bed, VM_A_MAC, MEMBER2, VLNET_FDB_CONTROL);
    bed.decap(Mode::Tc, &frames::vxlan(MEMBER2, LOCAL, 100, 0, &arp));
    let mut to: Vec<Ipv4Addr> = capture.recv_vxlan(2).iter().map(|c| outer_dst(c)).collect();
    to.sort();
    assert_eq!(to, [PEER, PEER2]);
}

/// At XDP a frame to relay passes untouched and uncounted to TC (which
/// runs beside XDP on a gateway); a member's unicast frame it may not
/// relay is dropped there already; other frames are decapsulated as usual.
#[test]
fn xdp_leaves_relaying_to_tc() {
    let mut bed = gateway("rlyxdp");
    place(&mut bed, VM_B_MAC, MEMBER, VLNET_FDB_CONTROL);
    let inner = frames::inner_udp(VM_B_MAC, 0, 30);
    let frame = frames::vxlan(PEER, LOCAL, 100, 0, &inner);
    let (ret, out) = bed.decap(Mode::Xdp, &frame);
    assert_eq!((ret, out), (XDP_PASS, frame));
    assert!(
        bed.fdb_entry(100, VM_A_MAC).is_none(),
        "nothing learned at XDP"
    );
    assert_eq!(relayed(&bed), [(0, 0), (0, 0)]);
    let arp = frames::vxlan(PEER, LOCAL, 100, 0, &frames::inner_arp_request());
    assert_eq!(bed.decap(Mode::Xdp, &arp).0, XDP_PASS, "a flood to relay");

    place(&mut bed, VM_B_MAC, PEER2, VLNET_FDB_LEARNED);
    let (ret, _) = bed.decap(Mode::Xdp, &frames::vxlan(MEMBER, LOCAL, 100, 0, &inner));
    assert_eq!((ret, bed.drops("relay_not_owned")), (XDP_DROP, 1));

    bed.maps.record_local(&fdb_key(100, VM_C_MAC), 1).unwrap();
    let mut here = inner.clone();
    here[..6].copy_from_slice(&VM_C_MAC);
    let (ret, out) = bed.decap(Mode::Xdp, &frames::vxlan(PEER, LOCAL, 100, 0, &here));
    assert_eq!((ret, out), (XDP_REDIRECT, here), "a local VM's frame");
}

/// What [`tunnel_member`] made: VNI 400 with the zone `PEER` (underlay)
/// and the member [`TUNNEL_MEMBER`] reached through `vltun0`.
struct TunnelGateway {
    bed: Bed,
    tun: Tun,
}

fn tunnel_member(tag: &str) -> TunnelGateway {
    let mut bed = Bed::new(tag);
    bed.set_relay(true);
    let tunnel = bed.add_tunnel();
    let tun = Tun::open("vltun0");
    bed.add_peer(400, PEER, STATIC_PEER);
    bed.add_peer(400, TUNNEL_MEMBER, VtepBinding::MEMBER);
    let nexthop = vlnet_nexthop {
        ifindex: tunnel.ifindex,
        saddr_be: u32::from(TUN_LOCAL).to_be(),
        flags: VLNET_NH_L3,
        ..Default::default()
    };
    bed.maps.set_nexthop(TUNNEL_MEMBER, &nexthop).unwrap();
    bed.set_flood(400, tunnel.vlx400, &[PEER], &[TUNNEL_MEMBER]);
    TunnelGateway { bed, tun }
}

/// For real: a zone frame arriving on `ul0` for a member's MAC leaves
/// through the TUN as the bare IPv4 packet WireGuard encrypts, from the
/// gateway's tunnel address.
#[test]
fn a_zone_frame_reaches_a_member_through_the_tunnel() {
    let TunnelGateway { mut bed, tun } = tunnel_member("rlytun");
    let ul0 = bed.ul0;
    bed.programs
        .attach_tc(bpf::PROG_TC_UNDERLAY_RX, "ul0", ul0)
        .unwrap();
    bed.maps
        .set_fdb(
            &fdb_key(400, VM_B_MAC),
            &entry(TUNNEL_MEMBER, VLNET_FDB_CONTROL),
        )
        .unwrap();
    let inner = frames::inner_udp(VM_B_MAC, 0, 200);
    PacketSocket::bind(bed.ns.ifindex("ul1")).send(&frames::vxlan(PEER, LOCAL, 400, 0, &inner));
    let packet = tun.recv();
    assert_eq!(packet[0], 0x45, "bare IPv4: {packet:02x?}");
    assert_eq!(packet[12..16], TUN_LOCAL.octets(), "the tunnel address");
    assert_eq!(packet[16..20], TUNNEL_MEMBER.octets());
    assert_eq!(packet[22..24], 4789u16.to_be_bytes());
    assert_eq!(packet[36..], inner[..], "the inner frame");
    assert_eq!(relayed(&bed)[0], (1, inner.len() as u64));
    assert_eq!(bed.total_drops(), 0);
}

/// For real: a member's frames written to the TUN (as WireGuard decrypts
/// them) reach the zone on the wire from the gateway's VTEP: unicast to the
/// MAC's static peer, and a broadcast both to the zone and to the bridge.
#[test]
fn a_members_frames_from_the_tunnel_reach_the_zone() {
    let TunnelGateway { mut bed, tun } = tunnel_member("rlytun2");
    let ifindex = bed.ns.ifindex("vltun0");
    bed.programs
        .attach_tc(bpf::PROG_TC_TUNNEL_RX, "vltun0", ifindex)
        .unwrap();
    let ul1 = PacketSocket::bind(bed.ns.ifindex("ul1"));
    let bridge_side = PacketSocket::bind(bed.ns.ifindex("vlp400"));
    let owned = entry(TUNNEL_MEMBER, VLNET_FDB_CONTROL);
    bed.maps.set_fdb(&fdb_key(400, VM_A_MAC), &owned).unwrap();
    let zone = entry(PEER, VLNET_FDB_LEARNED);
    bed.maps.set_fdb(&fdb_key(400, VM_B_MAC), &zone).unwrap();

    let inner = frames::inner_udp(VM_B_MAC, 0, 200);
    tun.send(&bare(&frames::vxlan(
        TUNNEL_MEMBER,
        TUN_LOCAL,
        400,
        0,
        &inner,
    )));
    let packet = ul1.recv_ending_with(&inner);
    assert_eq!(packet[..6], bed.ns.mac("ul1"));
    assert_eq!(packet[off::IP_SRC..off::IP_SRC + 4], LOCAL.octets());
    assert_eq!(outer_dst(&packet), PEER);
    assert_eq!(packet.len(), off::INNER + inner.len());
    assert_eq!(frames::checksum(&packet[off::IP..off::IP + 20]), 0);

    let arp = frames::inner_arp_request();
    tun.send(&bare(&frames::vxlan(
        TUNNEL_MEMBER,
        TUN_LOCAL,
        400,
        0,
        &arp,
    )));
    let copy = ul1.recv_ending_with(&arp);
    assert_eq!(outer_dst(&copy), PEER);
    assert_eq!(
        bridge_side.recv_ending_with(&arp),
        arp,
        "delivered here too"
    );
    assert_eq!(relayed(&bed)[1].0, 2);
    assert_eq!(bed.total_drops(), 0);
}
