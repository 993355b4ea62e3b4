//! Who may send what: a VTEP's VXLAN is accepted only on the path it is
//! bound to; a member's frames may not carry a MAC held elsewhere or living
//! here, and create no FDB entry; a full VNI learns no new key; the tunnel
//! lets members reach only VXLAN and the open host ports; a broadcast's
//! source is recorded as local.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::support::frames::{self, VM_A_MAC, VM_B_MAC};
use super::support::packet_socket::PacketSocket;
use super::support::vtep_bed::{
    both_modes, verdicts, Bed, Mode, LOCAL, PEER, TC_ACT_OK, TC_ACT_SHOT,
};
use super::{bare, Tun, PEER2, SECURE, TUN_LOCAL};
use vlnet_dataplane::bpf;
use vlnet_dataplane::maps::fdb_key;
use vlnet_dataplane::trust::{VtepBinding, VtepPath};
use vlnet_ebpf::abi::{
    vlnet_fdb_entry, VLNET_FDB_CONTROL, VLNET_FDB_LEARNED, VLNET_FDB_STATIC, VLNET_VNI_LEARN_PAUSED,
};

/// A member's tunnel address.
const MEMBER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 7);
/// A peer of VNI 100 bound to no path at all.
const UNBOUND: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 9);

fn entry(vtep: Ipv4Addr, flags: u32) -> vlnet_fdb_entry {
    vlnet_fdb_entry {
        vtep_be: u32::from(vtep).to_be(),
        flags,
        updated_ns: 1,
    }
}

/// Inner frames from VM A (the MAC under dispute) to VM B.
fn inner() -> Vec<u8> {
    frames::inner_udp(VM_B_MAC, 0, 20)
}

fn rx_packets(bed: &Bed, vni: u32, vtep: Ipv4Addr) -> u64 {
    bed.maps
        .peers()
        .into_iter()
        .find(|p| p.vni == vni && p.vtep == vtep)
        .map_or(0, |p| p.rx_packets)
}

/// A member's tunnel address sending on the underlay (a forged outer source:
/// the underlay has no WireGuard) is dropped as `wrong_path` before anything
/// is learned, and so is a peer bound to no path; the static peer passes.
fn member_address_on_the_underlay_is_the_wrong_path(mode: Mode) {
    let mut bed = Bed::new("wpul");
    let (_, drop, redirect) = verdicts(mode);
    bed.add_peer(100, MEMBER, VtepBinding::MEMBER);
    bed.maps.ensure_peer(100, UNBOUND).unwrap();
    let held = entry(PEER2, VLNET_FDB_LEARNED);
    bed.maps.set_fdb(&fdb_key(100, VM_A_MAC), &held).unwrap();

    let (ret, _) = bed.decap(mode, &frames::vxlan(MEMBER, LOCAL, 100, 0, &inner()));
    assert_eq!(ret, drop, "a member's address on the underlay");
    assert_eq!(bed.drops("wrong_path"), 1);
    let (ret, _) = bed.decap(mode, &frames::vxlan(UNBOUND, LOCAL, 100, 0, &inner()));
    assert_eq!(ret, drop, "a peer bound to no path");
    assert_eq!(bed.drops("wrong_path"), 2);
    assert_eq!(bed.total_drops(), 2);
    assert_eq!(
        bed.fdb_entry(100, VM_A_MAC),
        Some(held),
        "no FDB entry moved"
    );
    assert_eq!(
        rx_packets(&bed, 100, MEMBER),
        0,
        "nothing counted as received"
    );

    let (ret, _) = bed.decap(mode, &frames::vxlan(PEER, LOCAL, 100, 0, &inner()));
    assert_eq!(ret, redirect, "the static peer is on its path");
    assert_eq!(bed.total_drops(), 2);
}

both_modes!(member_address_on_the_underlay_is_the_wrong_path);

/// A static peer's address arriving through the tunnel is the wrong path
/// too (counted before any learning).
#[test]
fn static_peer_through_the_tunnel_is_the_wrong_path() {
    let mut bed = Bed::new("wptun");
    let tunnel = bed.add_tunnel();
    bed.maps.ensure_peer(400, PEER).unwrap();
    let packet = bare(&frames::vxlan(PEER, TUN_LOCAL, 400, 0, &inner()));
    let (ret, _) = bed.tunnel_rx(&tunnel, &packet);
    assert_eq!((ret, bed.drops("wrong_path")), (TC_ACT_SHOT, 1));
    assert_eq!(bed.total_drops(), 1);
    assert!(bed.maps.fdb().is_empty(), "nothing learned");
}

/// The ownership rules of a VTEP without `VLNET_VTEP_LEARN` (a member),
/// driven through both underlay entry points: the rule goes by the VTEP's
/// flag, not by its path, and decap is the same code for every entry point.
fn member_frames_may_not_take_macs(mode: Mode) {
    let mut bed = Bed::new("own");
    let (_, drop, redirect) = verdicts(mode);
    let member = VtepBinding {
        path: VtepPath::Underlay,
        learn: false,
        direct: false,
    };
    bed.add_peer(100, MEMBER, member);
    let frame = frames::vxlan(MEMBER, LOCAL, 100, 0, &inner());

    // Held by another VTEP, whatever the kind of entry: dropped, unchanged.
    let mut expected_drops = 0;
    for flags in [VLNET_FDB_CONTROL, VLNET_FDB_LEARNED, VLNET_FDB_STATIC] {
        let held = entry(PEER, flags);
        bed.maps.set_fdb(&fdb_key(100, VM_A_MAC), &held).unwrap();
        let (ret, _) = bed.decap(mode, &frame);
        expected_drops += 1;
        assert_eq!(ret, drop, "MAC held at another VTEP (flags {flags})");
        assert_eq!(bed.drops("source_not_owned"), expected_drops);
        assert_eq!(bed.fdb_entry(100, VM_A_MAC), Some(held), "FDB unchanged");
    }
    assert_eq!(rx_packets(&bed, 100, MEMBER), 0);

    // At its own VTEP: delivered, and nothing written (not even a refresh).
    let own = entry(MEMBER, VLNET_FDB_CONTROL);
    bed.maps.set_fdb(&fdb_key(100, VM_A_MAC), &own).unwrap();
    let (ret, out) = bed.decap(mode, &frame);
    assert_eq!((ret, out), (redirect, inner()), "its own MAC");
    assert_eq!(bed.fdb_entry(100, VM_A_MAC), Some(own));

    // Unknown here: delivered, not learned (its advert brings it).
    bed.maps.remove_fdb(&fdb_key(100, VM_A_MAC)).unwrap();
    let (ret, _) = bed.decap(mode, &frame);
    assert_eq!(ret, redirect, "an unknown MAC");
    assert_eq!(bed.fdb_entry(100, VM_A_MAC), None, "no entry created");
    assert_eq!(rx_packets(&bed, 100, MEMBER), 2);

    // Living behind this node: dropped.
    bed.maps.record_local(&fdb_key(100, VM_A_MAC), 1).unwrap();
    let (ret, _) = bed.decap(mode, &frame);
    assert_eq!(ret, drop, "a local MAC");
    assert_eq!(bed.drops("source_not_owned"), expected_drops + 1);
    assert_eq!(bed.fdb_entry(100, VM_A_MAC), None);
    assert_eq!(bed.total_drops(), expected_drops + 1);

    // The same frame from the static peer (learning) still moves MACs.
    bed.maps
        .set_fdb(&fdb_key(100, VM_A_MAC), &entry(PEER2, VLNET_FDB_CONTROL))
        .unwrap();
    let (ret, _) = bed.decap(mode, &frames::vxlan(PEER, LOCAL, 100, 0, &inner()));
    assert_eq!(ret, redirect);
    let moved = bed.fdb_entry(100, VM_A_MAC).unwrap();
    assert_eq!(
        (moved.vtep_be, moved.flags),
        (u32::from(PEER).to_be(), VLNET_FDB_LEARNED),
        "a static peer's frame moves the entry"
    );
}

both_modes!(member_frames_may_not_take_macs);

/// While a VNI's learning is paused (its FDB share is full) a frame from a
/// static peer creates no key but is delivered; existing keys still move;
/// once resumed, learning creates keys again.
fn paused_learning_creates_no_key_but_delivers(mode: Mode) {
    let mut bed = Bed::new("pause");
    let (_, _, redirect) = verdicts(mode);
    let set_paused = |bed: &mut Bed, on: bool| {
        let mut cfg = bed.maps.vni(100).unwrap();
        cfg.flags = if on { VLNET_VNI_LEARN_PAUSED } else { 0 };
        bed.maps.set_vni(100, &cfg).unwrap();
    };
    set_paused(&mut bed, true);
    let frame = frames::vxlan(PEER, LOCAL, 100, 0, &inner());
    let (ret, out) = bed.decap(mode, &frame);
    assert_eq!((ret, out), (redirect, inner()), "delivered");
    assert_eq!(
        bed.fdb_entry(100, VM_A_MAC),
        None,
        "no new key while paused"
    );

    bed.maps
        .set_fdb(&fdb_key(100, VM_A_MAC), &entry(PEER2, VLNET_FDB_LEARNED))
        .unwrap();
    bed.decap(mode, &frame);
    let moved = bed.fdb_entry(100, VM_A_MAC).unwrap();
    assert_eq!(
        moved.vtep_be,
        u32::from(PEER).to_be(),
        "an existing key still moves"
    );

    bed.maps.remove_fdb(&fdb_key(100, VM_A_MAC)).unwrap();
    set_paused(&mut bed, false);
    bed.decap(mode, &frame);
    assert!(
        bed.fdb_entry(100, VM_A_MAC).is_some(),
        "learned once resumed"
    );
    assert_eq!(bed.total_drops(), 0);
}

both_modes!(paused_learning_creates_no_key_but_delivers);

/// A member through the real tunnel (a TUN's ingress, where
/// `BPF_PROG_TEST_RUN` cannot decap): a frame from a MAC held by the secure
/// static peer is dropped and counted; one from an unknown MAC comes out of
/// the overlay port and creates no FDB entry.
#[test]
fn member_through_the_tunnel_delivers_only_what_it_may() {
    let mut bed = Bed::new("owntun");
    let tunnel = bed.add_tunnel();
    bed.add_peer(400, MEMBER, VtepBinding::MEMBER);
    let tun = Tun::open("vltun0");
    bed.programs
        .attach_tc(bpf::PROG_TC_TUNNEL_RX, "vltun0", tunnel.ifindex)
        .unwrap();
    let capture = PacketSocket::bind(bed.ns.ifindex("vlp400"));

    let held = entry(SECURE, VLNET_FDB_CONTROL);
    bed.maps.set_fdb(&fdb_key(400, VM_A_MAC), &held).unwrap();
    let stolen = frames::inner_udp(VM_B_MAC, 0, 31);
    tun.send(&bare(&frames::vxlan(MEMBER, TUN_LOCAL, 400, 0, &stolen)));
    let deadline = Instant::now() + Duration::from_secs(3);
    while bed.drops("source_not_owned") == 0 {
        assert!(
            Instant::now() < deadline,
            "the stolen MAC's frame was not dropped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(bed.fdb_entry(400, VM_A_MAC), Some(held));

    bed.maps.remove_fdb(&fdb_key(400, VM_A_MAC)).unwrap();
    let unknown = frames::inner_udp(VM_B_MAC, 0, 47);
    tun.send(&bare(&frames::vxlan(MEMBER, TUN_LOCAL, 400, 0, &unknown)));
    let out = capture.recv_ending_with(&unknown);
    assert_eq!(out, unknown, "delivered exactly");
    assert_eq!(bed.fdb_entry(400, VM_A_MAC), None, "not learned");
    assert_eq!(bed.total_drops(), 1, "{:?}", bed.maps.drops());
}

/// A bare IPv4 packet from `src` to `dst` carrying `l4` as protocol `proto`.
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = frames::ipv4_header(src, dst, proto, 0, l4.len());
    p.extend_from_slice(l4);
    p
}

/// A TCP header to `port` with `flags`, no options.
fn tcp(port: u16, flags: u8) -> Vec<u8> {
    let mut h = 40000u16.to_be_bytes().to_vec();
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&[
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        5 << 4,
        flags,
        0xff,
        0xff,
        0,
        0,
        0,
        0,
    ]);
    h
}

/// A UDP header and 4 bytes of payload to `port`.
fn udp(port: u16) -> Vec<u8> {
    let mut h = 40000u16.to_be_bytes().to_vec();
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&[0, 12, 0, 0, 1, 2, 3, 4]);
    h
}

/// An ICMP message of `kind` with an 8-byte header.
fn icmp(kind: u8) -> Vec<u8> {
    vec![kind, 0, 0, 0, 0, 1, 0, 1]
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;

/// Every rule of the tunnel's host filter, with its verdict and count: what
/// members may reach on this node besides VXLAN.
#[test]
fn the_tunnel_reaches_only_open_ports_on_the_node() {
    let mut bed = Bed::new("tunflt");
    let tunnel = bed.add_tunnel();
    bed.maps.open_port(6, 7000).unwrap();
    bed.maps.open_port(17, 5000).unwrap();
    let from = SECURE;
    let to = |proto, l4: &[u8]| ipv4(from, TUN_LOCAL, proto, l4);
    let mut later_fragment = to(17, &udp(9999));
    later_fragment[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
    frames::fix_ipv4_checksum(&mut later_fragment, 0);
    let mut with_options = ipv4(
        from,
        TUN_LOCAL,
        6,
        &[[1, 1, 1, 0].as_slice(), &tcp(7000, SYN)].concat(),
    );
    with_options[0] = 0x46; // the 4 option bytes are NOPs and EOL, the TCP header follows
    let total = u16::try_from(with_options.len()).unwrap();
    with_options[2..4].copy_from_slice(&total.to_be_bytes());
    frames::fix_ipv4_checksum(&mut with_options, 0);
    let mut short_tcp = to(6, &tcp(7000, SYN));
    short_tcp.truncate(20 + 12);
    let mut ipv6 = frames::inner_ipv6(VM_B_MAC, 0)[14..].to_vec();
    ipv6.extend_from_slice(&[0; 8]);
    let transit = bare(&frames::vxlan(
        from,
        Ipv4Addr::new(198, 19, 0, 9),
        400,
        0,
        &inner(),
    ));

    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("ICMP echo request", to(1, &icmp(8)), true),
        ("ICMP echo reply", to(1, &icmp(0)), true),
        ("ICMP destination unreachable", to(1, &icmp(3)), true),
        ("ICMP time exceeded", to(1, &icmp(11)), true),
        ("ICMP redirect", to(1, &icmp(5)), false),
        ("ICMP timestamp request", to(1, &icmp(13)), false),
        ("TCP SYN to an open port", to(6, &tcp(7000, SYN)), true),
        ("TCP SYN to an open port, IP options", with_options, true),
        ("TCP SYN to a closed port", to(6, &tcp(22, SYN)), false),
        ("TCP SYN to a UDP-only port", to(6, &tcp(5000, SYN)), false),
        (
            "TCP SYN-ACK (a connection we opened)",
            to(6, &tcp(40001, SYN | ACK)),
            true,
        ),
        (
            "TCP ACK (a connection we opened)",
            to(6, &tcp(40001, ACK)),
            true,
        ),
        ("TCP RST to a closed port", to(6, &tcp(22, RST)), true),
        ("TCP header cut short", short_tcp, false),
        ("UDP to an open port", to(17, &udp(5000)), true),
        ("UDP to a closed port", to(17, &udp(53)), false),
        ("UDP to a TCP-only port", to(17, &udp(7000)), false),
        ("later fragment", later_fragment, true),
        ("GRE", to(47, &[0; 8]), false),
        ("IPv6", ipv6, false),
        (
            "ICMP echo for another address",
            ipv4(from, Ipv4Addr::new(198, 19, 0, 9), 1, &icmp(8)),
            false,
        ),
        ("VXLAN for another tunnel address", transit, false),
    ];
    let mut dropped = 0;
    for (what, packet, passes) in cases {
        let (ret, out) = bed.tunnel_rx(&tunnel, &packet);
        if passes {
            assert_eq!(
                (ret, &out),
                (TC_ACT_OK, &packet),
                "{what}: must pass unmodified"
            );
        } else {
            dropped += 1;
            assert_eq!(ret, TC_ACT_SHOT, "{what}: must be dropped");
        }
        assert_eq!(
            bed.drops("tunnel_filtered"),
            dropped,
            "{what}: counted once if dropped"
        );
    }
    assert_eq!(bed.total_drops(), dropped, "{:?}", bed.maps.drops());
    assert!(bed.maps.fdb().is_empty());
}

/// A broadcast or multicast frame leaving a local VM records its source as
/// local (once: the first time stays); a unicast frame records nothing.
#[test]
fn overlay_tx_records_a_broadcasts_source_as_local() {
    let mut bed = Bed::new("locals");
    bed.encap(&frames::inner_udp(VM_B_MAC, 0, 10));
    assert!(bed.maps.locals().is_empty(), "unicast records nothing");
    bed.encap(&frames::inner_arp_request());
    let locals = bed.maps.locals();
    assert_eq!(locals.len(), 1, "{locals:?}");
    let (key, first) = locals[0];
    assert_eq!(key, fdb_key(100, VM_A_MAC));
    assert!(first > 0, "recorded with the time");
    bed.encap(&frames::inner_arp_request());
    assert_eq!(
        bed.maps.locals(),
        [(key, first)],
        "an existing record keeps its time"
    );

    let mut multicast = frames::inner_udp([0x01, 0, 0x5e, 0, 0, 0xfb], 0, 10);
    multicast[6..12].copy_from_slice(&VM_B_MAC);
    bed.encap(&multicast);
    let mut keys: Vec<_> = bed.maps.locals().into_iter().map(|(k, _)| k.mac).collect();
    keys.sort_unstable();
    assert_eq!(keys, [VM_A_MAC, VM_B_MAC]);
}
