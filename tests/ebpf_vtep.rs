//! The VTEP programs driven through `BPF_PROG_TEST_RUN` on crafted frames:
//! decap (TC and XDP entry points), encap byte-for-byte against the kernel's
//! own vxlan device, ECN/DSCP rules (`ecn`: every cell of RFC 6040's decap
//! table, against the kernel too), one malformed input per drop reason, and
//! the trust rules (`trust`: paths, MAC ownership, paused learning, the
//! tunnel's host filter, local MACs; `capacity`: each VNI's FDB share),
//! the gateway's relay (`relay`), a flood to 1,024 VTEPs (`flood`) and
//! ARP/ND suppression (`neigh`).
//! Needs root (loads BPF, creates `vlt-` namespaces).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::net::Ipv4Addr;

use support::frames::{self, off, VM_A_MAC, VM_B_MAC};
use support::packet_socket::PacketSocket;
use support::vtep_bed::{
    both_modes, verdicts, Bed, Mode, LOCAL, PEER, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP,
};
use vlnet_dataplane::bpf;
use vlnet_dataplane::maps::fdb_key;
use vlnet_dataplane::sync::OuterHeader;
use vlnet_dataplane::trust::{VtepBinding, VtepPath};
use vlnet_ebpf::abi::{
    __sk_buff, vlnet_fdb_entry, vlnet_nexthop, vlnet_vni_config, VLNET_FDB_CONTROL,
    VLNET_FDB_LEARNED, VLNET_FDB_STATIC, VLNET_MARK_HAIRPIN, VLNET_NH_L3,
};

const PEER2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);

#[path = "ebpf_vtep/capacity.rs"]
mod capacity;
#[path = "ebpf_vtep/ecn.rs"]
mod ecn;
#[path = "ebpf_vtep/evpn_vni.rs"]
mod evpn_vni;
#[path = "ebpf_vtep/flood.rs"]
mod flood;
#[path = "ebpf_vtep/neigh.rs"]
mod neigh;
#[path = "ebpf_vtep/relay.rs"]
mod relay;
#[path = "ebpf_vtep/trust.rs"]
mod trust;

fn decap_yields_exactly_the_inner_frame(mode: Mode) {
    let mut bed = Bed::new("decap");
    let inner = frames::inner_udp(VM_B_MAC, 0, 100);
    let (_, _, redirect) = verdicts(mode);
    let (ret, out) = bed.decap(mode, &frames::vxlan(PEER, LOCAL, 100, 0, &inner));
    assert_eq!(
        ret, redirect,
        "valid VXLAN must be redirected to the overlay port"
    );
    assert_eq!(out, inner, "decap must yield exactly the inner frame");

    let learned: vlnet_fdb_entry = bed
        .maps
        .fdb()
        .into_iter()
        .find(|(k, _)| *k == fdb_key(100, VM_A_MAC))
        .map(|(_, e)| e)
        .expect("inner source MAC learned");
    assert_eq!(learned.vtep_be, u32::from(PEER).to_be());
    assert_eq!(learned.flags, VLNET_FDB_LEARNED);
    let peer = bed
        .maps
        .peers()
        .into_iter()
        .find(|p| p.vni == 100 && p.vtep == PEER)
        .unwrap();
    assert_eq!((peer.rx_packets, peer.rx_bytes), (1, inner.len() as u64));
    assert_eq!(bed.total_drops(), 0);
}

both_modes!(decap_yields_exactly_the_inner_frame);

/// An outer IPv4 header with options (IHL 6) is parsed past, not misread.
fn decap_handles_outer_ip_options(mode: Mode) {
    let mut bed = Bed::new("ipopt");
    let inner = frames::inner_udp(VM_B_MAC, 0, 30);
    let plain = frames::vxlan(PEER, LOCAL, 100, 0, &inner);
    let mut frame = plain[..off::IP + 20].to_vec();
    frame.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    frame.extend_from_slice(&plain[off::IP + 20..]);
    frame[off::IP] = 0x46;
    let total = u16::from_be_bytes([frame[off::TOT_LEN], frame[off::TOT_LEN + 1]]) + 4;
    frame[off::TOT_LEN..off::TOT_LEN + 2].copy_from_slice(&total.to_be_bytes());
    frames::fix_ipv4_checksum(&mut frame, off::IP);
    let (_, _, redirect) = verdicts(mode);
    let (ret, out) = bed.decap(mode, &frame);
    assert_eq!(
        (ret, out),
        (redirect, inner),
        "drops: {:?}",
        bed.maps.drops()
    );
}

both_modes!(decap_handles_outer_ip_options);

/// XDP mode: an overlay port missing from the redirect map is a counted drop.
#[test]
fn xdp_decap_without_a_redirect_target_is_counted() {
    let mut bed = Bed::new("nodev");
    let port = bed.vlx100;
    bed.maps.remove_xdp_port(port).unwrap();
    let inner = frames::inner_udp(VM_B_MAC, 0, 10);
    let (ret, _) = bed.decap(Mode::Xdp, &frames::vxlan(PEER, LOCAL, 100, 0, &inner));
    assert_eq!(ret, XDP_DROP);
    assert_eq!(bed.drops("not_configured"), 1);
    assert_eq!(bed.total_drops(), 1);
}

fn learning_never_overrides_static_entries(mode: Mode) {
    let mut bed = Bed::new("static");
    let key = fdb_key(100, VM_A_MAC);
    let pinned = vlnet_fdb_entry {
        vtep_be: u32::from(PEER2).to_be(),
        flags: VLNET_FDB_STATIC,
        updated_ns: 1,
    };
    bed.maps.set_fdb(&key, &pinned).unwrap();
    let inner = frames::inner_udp(VM_B_MAC, 0, 10);
    bed.decap(mode, &frames::vxlan(PEER, LOCAL, 100, 0, &inner));
    let entry = bed
        .maps
        .fdb()
        .into_iter()
        .find(|(k, _)| *k == key)
        .unwrap()
        .1;
    assert_eq!(entry, pinned);
}

both_modes!(learning_never_overrides_static_entries);

/// A control-plane entry stays while frames confirm it and moves (becoming
/// learned) when the MAC shows up behind another VTEP.
fn learning_moves_control_entries(mode: Mode) {
    let mut bed = Bed::new("control");
    let key = fdb_key(100, VM_A_MAC);
    let entry_of = |bed: &Bed| {
        bed.maps
            .fdb()
            .into_iter()
            .find(|(k, _)| *k == key)
            .unwrap()
            .1
    };
    let here = vlnet_fdb_entry {
        vtep_be: u32::from(PEER).to_be(),
        flags: VLNET_FDB_CONTROL,
        updated_ns: 1,
    };
    bed.maps.set_fdb(&key, &here).unwrap();
    let inner = frames::inner_udp(VM_B_MAC, 0, 10);
    bed.decap(mode, &frames::vxlan(PEER, LOCAL, 100, 0, &inner));
    assert_eq!(entry_of(&bed), here, "confirmed, left as it is");

    let elsewhere = vlnet_fdb_entry {
        vtep_be: u32::from(PEER2).to_be(),
        ..here
    };
    bed.maps.set_fdb(&key, &elsewhere).unwrap();
    bed.decap(mode, &frames::vxlan(PEER, LOCAL, 100, 0, &inner));
    let moved = entry_of(&bed);
    assert_eq!(
        moved.vtep_be,
        u32::from(PEER).to_be(),
        "moved to the frame's VTEP"
    );
    assert_eq!(moved.flags, VLNET_FDB_LEARNED);
}

both_modes!(learning_moves_control_entries);

/// Frames that are not VXLAN for this node pass untouched and count nothing.
fn foreign_traffic_passes_untouched(mode: Mode) {
    let mut bed = Bed::new("pass");
    let (pass, _, _) = verdicts(mode);
    let inner = frames::inner_udp(VM_B_MAC, 0, 10);
    let other_host = frames::vxlan(PEER, Ipv4Addr::new(198, 18, 0, 77), 100, 0, &inner);
    let mut other_port = frames::vxlan(PEER, LOCAL, 100, 0, &inner);
    other_port[36..38].copy_from_slice(&53u16.to_be_bytes());
    let mut tcp = frames::vxlan(PEER, LOCAL, 100, 0, &inner);
    tcp[23] = 6;
    frames::fix_ipv4_checksum(&mut tcp, off::IP);
    let mut later_fragment = frames::vxlan(PEER, LOCAL, 100, 0, &inner);
    later_fragment[off::FRAG..off::FRAG + 2].copy_from_slice(&0x0010u16.to_be_bytes());
    frames::fix_ipv4_checksum(&mut later_fragment, off::IP);
    let arp = frames::inner_arp_request();
    for (what, frame) in [
        ("VXLAN to another host", other_host),
        ("UDP to another port", other_port),
        ("TCP to our VTEP", tcp),
        ("later IPv4 fragment", later_fragment),
        ("ARP", arp),
    ] {
        let (ret, out) = bed.decap(mode, &frame);
        assert_eq!(ret, pass, "{what}: must pass to the kernel");
        assert_eq!(out, frame, "{what}: must pass unmodified");
    }
    assert_eq!(bed.total_drops(), 0);
}

both_modes!(foreign_traffic_passes_untouched);

fn every_decap_drop_reason_is_counted(mode: Mode) {
    let mut bed = Bed::new("drops");
    // VNI 200 exists with a member peer but no overlay port.
    bed.maps.set_vni(200, &vlnet_vni_config::default()).unwrap();
    bed.maps.ensure_peer(200, PEER).unwrap();
    let (_, drop, _) = verdicts(mode);
    let inner = frames::inner_udp(VM_B_MAC, 0, 20);
    for (reason, frame) in frames::hostile(LOCAL, PEER, &inner) {
        let before = bed.drops(reason);
        let total = bed.total_drops();
        let (ret, _) = bed.decap(mode, &frame);
        assert_eq!(ret, drop, "{reason}: must be dropped");
        assert_eq!(
            bed.drops(reason),
            before + 1,
            "{reason}: counted under its reason"
        );
        assert_eq!(bed.total_drops(), total + 1, "{reason}: counted once");
    }
    assert!(
        bed.maps.fdb().is_empty(),
        "nothing learned from hostile frames"
    );
}

both_modes!(every_decap_drop_reason_is_counted);

/// The frame the kernel's vxlan driver (what Proxmox runs) sends for `inner`,
/// configured as vlnet encapsulates: DF set, TTL 64, zero UDP checksum.
fn kernel_vxlan_encap(bed: &Bed, inner: &[u8]) -> Vec<u8> {
    bed.ns.sh(
        "ip link add vx100 type vxlan id 100 local 198.18.0.1 remote 198.18.0.2 dstport 4789 \
         ttl 64 df set noudpcsum dev ul0 && echo 1 > /proc/sys/net/ipv6/conf/vx100/disable_ipv6 || true; \
         ip link set vx100 up",
    );
    let capture = PacketSocket::bind(bed.ns.ifindex("ul1"));
    let inject = PacketSocket::bind(bed.ns.ifindex("vx100"));
    inject.send(inner);
    capture.recv_ending_with(inner)
}

#[test]
fn encap_matches_the_kernel_vxlan_driver_byte_for_byte() {
    let mut bed = Bed::new("encap");
    for inner in [
        frames::inner_udp(VM_B_MAC, 0, 64),
        frames::inner_arp_request(),
    ] {
        let reference = kernel_vxlan_encap(&bed, &inner);
        bed.ns.sh("ip link del vx100");
        let (ret, ours) = bed.encap(&inner);
        assert_eq!(
            ret,
            TC_ACT_REDIRECT,
            "encap must redirect to the underlay: {:?}",
            bed.maps.drops()
        );
        assert_eq!(ours.len(), reference.len());
        // RFC 7348 leaves the UDP source port to the sender; IP ID and checksum follow.
        let masked = |f: &[u8]| {
            let mut f = f.to_vec();
            for at in [off::IP_ID, off::IP_CSUM, off::UDP_SPORT] {
                f[at..at + 2].fill(0);
            }
            f
        };
        assert_eq!(
            masked(&ours),
            masked(&reference),
            "outer headers differ from the kernel's"
        );
        assert_eq!(
            frames::checksum(&ours[off::IP..off::IP + 20]),
            0,
            "outer IPv4 checksum valid"
        );
        assert_eq!(
            ours[40..42],
            [0, 0],
            "UDP checksum zero over IPv4 (RFC 7348 section 5)"
        );
        let sport = u16::from_be_bytes([ours[off::UDP_SPORT], ours[off::UDP_SPORT + 1]]);
        assert!(
            (32768..=60999).contains(&sport),
            "source port {sport} in the local range"
        );
    }
    let peer = bed
        .maps
        .peers()
        .into_iter()
        .find(|p| p.vni == 100 && p.vtep == PEER)
        .unwrap();
    assert_eq!(peer.tx_packets, 2);
}

#[test]
fn encap_uses_the_fdb_and_floods_unknown_destinations() {
    let mut bed = Bed::new("fdb");
    let ul0 = bed.ul0;
    let nexthop = vlnet_nexthop {
        ifindex: ul0,
        smac: bed.ns.mac("ul0"),
        dmac: [2, 0, 0, 0, 0, 0x33],
        ..Default::default()
    };
    bed.maps.set_nexthop(PEER2, &nexthop).unwrap();
    let port = bed.vlx100;
    bed.set_flood(100, port, &[PEER, PEER2], &[]);
    bed.maps.ensure_peer(100, PEER2).unwrap();

    // Unknown unicast: one copy per peer; the last is the program's own redirect.
    let (ret, out) = bed.encap(&frames::inner_udp(VM_B_MAC, 0, 10));
    assert_eq!(ret, TC_ACT_REDIRECT);
    assert_eq!(out[30..34], PEER2.octets());
    assert_eq!(bed.tx_packets(100), [1, 1], "one copy to each peer");

    // Known unicast: only the FDB's VTEP.
    let entry = vlnet_fdb_entry {
        vtep_be: u32::from(PEER).to_be(),
        flags: VLNET_FDB_STATIC,
        updated_ns: 0,
    };
    bed.maps.set_fdb(&fdb_key(100, VM_B_MAC), &entry).unwrap();
    let (ret, out) = bed.encap(&frames::inner_udp(VM_B_MAC, 0, 10));
    assert_eq!(ret, TC_ACT_REDIRECT);
    assert_eq!(out[30..34], PEER.octets());
    assert_eq!(bed.tx_packets(100), [2, 1]);
    assert_eq!(
        out[0..6],
        [2, 0, 0, 0, 0x0b, 0x01][..0]
            .iter()
            .chain(bed.ns.mac("ul1").iter())
            .copied()
            .collect::<Vec<_>>()[..]
    );
}

#[test]
fn encap_sets_ecn_and_dscp_as_the_kernel_does() {
    let ce_ef = (46 << 2) | 0b11;
    let mut fixed = Bed::with_outer(
        "dscp",
        OuterHeader {
            ttl: 17,
            dscp: Some(10),
            sport_range: (5000, 5000),
        },
    );
    let (_, out) = fixed.encap(&frames::inner_udp(VM_B_MAC, ce_ef, 10));
    assert_eq!(
        out[off::TOS],
        (10 << 2) | 0b10,
        "fixed DSCP, inner CE becomes ECT(0)"
    );
    assert_eq!(out[22], 17, "configured TTL");
    assert_eq!(
        u16::from_be_bytes([out[off::UDP_SPORT], out[off::UDP_SPORT + 1]]),
        5000
    );
    drop(fixed);
    let mut inherit = Bed::with_outer(
        "dscpi",
        OuterHeader {
            ttl: 64,
            dscp: None,
            sport_range: (32768, 60999),
        },
    );
    let (_, out) = inherit.encap(&frames::inner_udp(VM_B_MAC, ce_ef, 10));
    assert_eq!(
        out[off::TOS],
        (46 << 2) | 0b10,
        "inherited DSCP, CE becomes ECT(0)"
    );
    let (_, out) = inherit.encap(&frames::inner_ipv6(VM_B_MAC, (46 << 2) | 0b01));
    assert_eq!(
        out[off::TOS],
        (46 << 2) | 0b01,
        "IPv6 traffic class inherited, ECT(1) copied"
    );
}

#[test]
fn every_encap_drop_reason_is_counted() {
    let mut bed = Bed::new("encdrop");
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        (
            "mtu_exceeded",
            frames::inner_udp(VM_B_MAC, 0, 1500 - 28),
            bed.vlx100,
        ),
        (
            "no_peers",
            frames::inner_udp(VM_B_MAC, 0, 10),
            bed.ns.ifindex("vlx300"),
        ),
        (
            "not_configured",
            frames::inner_udp(VM_B_MAC, 0, 10),
            bed.ns.ifindex("ul1"),
        ),
    ];
    for (reason, frame, ifindex) in cases {
        let before = bed.drops(reason);
        let (ret, _) = bed.run(Mode::Tc, "tc_overlay_tx", &frame, ifindex);
        assert_eq!(ret, TC_ACT_SHOT, "{reason}: must be dropped");
        assert_eq!(bed.drops(reason), before + 1, "{reason}: counted");
    }
    // The largest frame that fits passes.
    let (ret, _) = bed.encap(&frames::inner_udp(VM_B_MAC, 0, 1450 - 28));
    assert_eq!(
        ret, TC_ACT_REDIRECT,
        "a 1450-byte inner packet fits a 1500 underlay"
    );

    // A VTEP without a route, and one on-link whose MAC is unknown (non-IP frame).
    let unroutable = Ipv4Addr::new(198, 19, 5, 5);
    bed.maps
        .set_nexthop(unroutable, &vlnet_nexthop::default())
        .unwrap();
    let no_route = vlnet_fdb_entry {
        vtep_be: u32::from(unroutable).to_be(),
        flags: VLNET_FDB_STATIC,
        updated_ns: 0,
    };
    bed.maps
        .set_fdb(&fdb_key(100, VM_B_MAC), &no_route)
        .unwrap();
    let (ret, _) = bed.encap(&frames::inner_udp(VM_B_MAC, 0, 10));
    assert_eq!((ret, bed.drops("no_route")), (TC_ACT_SHOT, 1));
    let port = bed.vlx100;
    bed.set_flood(100, port, &[Ipv4Addr::new(198, 18, 0, 99)], &[]);
    let (ret, _) = bed.encap(&frames::inner_arp_request());
    assert_eq!((ret, bed.drops("no_neighbour")), (TC_ACT_SHOT, 1));
}

/// Our address on the test bed's WireGuard-like tunnel.
const TUN_LOCAL: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// A secure peer: its VTEP is its tunnel address, routed through the tunnel.
const SECURE: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 5);

/// What [`Bed::add_tunnel`] made.
struct Tunnel {
    /// The TUN device `vltun0` (an L3 device, like boringtun's).
    ifindex: u32,
    /// vlnet's end of VNI 400's overlay port, whose only peer is [`SECURE`].
    vlx400: u32,
}

impl Bed {
    /// Adds a TUN `vltun0` with [`TUN_LOCAL`]/24 declared as a tunnel, and
    /// VNI 400 (overlay port `vlx400`/`vlp400`) whose only peer is
    /// [`SECURE`], reached through the tunnel from [`TUN_LOCAL`]. IPv6 stays
    /// off on them: a link's MLD report would be flooded to the tunnel ahead
    /// of a test's own frames.
    fn add_tunnel(&mut self) -> Tunnel {
        self.ns.sh(
            "ip tuntap add dev vltun0 mode tun && ip addr add 198.19.0.1/24 dev vltun0 && \
             echo 1 > /proc/sys/net/ipv6/conf/vltun0/disable_ipv6 && ip link set vltun0 up && \
             ip link add vlx400 type veth peer name vlp400 && \
             echo 1 > /proc/sys/net/ipv6/conf/vlx400/disable_ipv6 && \
             echo 1 > /proc/sys/net/ipv6/conf/vlp400/disable_ipv6 && \
             ip link set vlx400 up && ip link set vlp400 up",
        );
        let t = Tunnel {
            ifindex: self.ns.ifindex("vltun0"),
            vlx400: self.ns.ifindex("vlx400"),
        };
        self.set_flood(400, t.vlx400, &[SECURE], &[]);
        self.maps.set_port(t.vlx400, 400).unwrap();
        // A secure static peer: reached at its tunnel address, learning.
        self.add_peer(
            400,
            SECURE,
            VtepBinding {
                path: VtepPath::Tunnel,
                learn: true,
                direct: false,
            },
        );
        self.maps.set_tunnel(t.ifindex, TUN_LOCAL).unwrap();
        let nexthop = vlnet_nexthop {
            ifindex: t.ifindex,
            saddr_be: u32::from(TUN_LOCAL).to_be(),
            flags: VLNET_NH_L3,
            ..Default::default()
        };
        self.maps.set_nexthop(SECURE, &nexthop).unwrap();
        t
    }

    fn tunnel_rx(&mut self, tunnel: &Tunnel, packet: &[u8]) -> (u32, Vec<u8>) {
        self.run(Mode::Tc, "tc_tunnel_rx", packet, tunnel.ifindex)
    }
}

/// The bare IPv4 packet (no Ethernet header) a TUN delivers for `frame`.
fn bare(frame: &[u8]) -> Vec<u8> {
    frame[off::IP..].to_vec()
}

/// Decap through the kernel for real rather than `BPF_PROG_TEST_RUN`, which
/// takes every TC input for an Ethernet frame (its `skb->protocol` comes from
/// bytes 12–13), so the decap of a bare IPv4 packet fails there in
/// `bpf_skb_adjust_room`. A packet written to the TUN reaches its TC ingress
/// as a real TUN skb (`skb->protocol` IPv4, no MAC header); the inner frame
/// must come out of the overlay port.
#[test]
fn tunnel_rx_decaps_vxlan_from_a_secure_peer() {
    let mut bed = Bed::new("tunrx");
    let tunnel = bed.add_tunnel();
    let tun = Tun::open("vltun0");
    bed.programs
        .attach_tc(bpf::PROG_TC_TUNNEL_RX, "vltun0", tunnel.ifindex)
        .unwrap();
    let capture = PacketSocket::bind(bed.ns.ifindex("vlp400"));
    let inner = frames::inner_udp(VM_B_MAC, 0, 100);
    tun.send(&bare(&frames::vxlan(SECURE, TUN_LOCAL, 400, 0, &inner)));
    let out = capture.recv_ending_with(&inner);
    assert_eq!(out, inner, "decap must yield exactly the inner frame");
    let learned = bed
        .maps
        .fdb()
        .into_iter()
        .find(|(k, _)| *k == fdb_key(400, VM_A_MAC))
        .map(|(_, e)| e)
        .expect("inner source MAC learned");
    assert_eq!(
        learned.vtep_be,
        u32::from(SECURE).to_be(),
        "learned behind the tunnel address"
    );
    assert_eq!(learned.flags, VLNET_FDB_LEARNED);
    let peer = bed
        .maps
        .peers()
        .into_iter()
        .find(|p| p.vni == 400 && p.vtep == SECURE)
        .unwrap();
    assert_eq!((peer.rx_packets, peer.rx_bytes), (1, inner.len() as u64));
    assert_eq!(bed.total_drops(), 0);
}

/// On an interface that is not a declared tunnel even VXLAN passes
/// untouched (the tunnel's filter is for tunnels only).
#[test]
fn tunnel_rx_leaves_other_interfaces_alone() {
    let mut bed = Bed::new("tunpass");
    bed.add_tunnel();
    let inner = frames::inner_udp(VM_B_MAC, 0, 10);
    let vxlan = bare(&frames::vxlan(SECURE, TUN_LOCAL, 400, 0, &inner));
    let ul1 = bed.ns.ifindex("ul1");
    let (ret, out) = bed.run(Mode::Tc, "tc_tunnel_rx", &vxlan, ul1);
    assert_eq!((ret, out), (TC_ACT_OK, vxlan));
    assert_eq!(bed.total_drops(), 0);
    assert!(bed.maps.fdb().is_empty());
}

#[test]
fn tunnel_rx_drops_unknown_vteps_and_malformed_vxlan() {
    let mut bed = Bed::new("tundrop");
    let tunnel = bed.add_tunnel();
    let inner = frames::inner_udp(VM_B_MAC, 0, 10);
    let stranger = bare(&frames::vxlan(
        Ipv4Addr::new(198, 19, 0, 77),
        TUN_LOCAL,
        400,
        0,
        &inner,
    ));
    let (ret, _) = bed.tunnel_rx(&tunnel, &stranger);
    assert_eq!((ret, bed.drops("unknown_vtep")), (TC_ACT_SHOT, 1));
    // An underlay peer of VNI 100 is no member of VNI 400.
    let wrong_vni = bare(&frames::vxlan(SECURE, TUN_LOCAL, 100, 0, &inner));
    let (ret, _) = bed.tunnel_rx(&tunnel, &wrong_vni);
    assert_eq!((ret, bed.drops("unknown_vtep")), (TC_ACT_SHOT, 2));
    let mut short = bare(&frames::vxlan(SECURE, TUN_LOCAL, 400, 0, &inner));
    short.truncate(20 + 8 + 8 + 10);
    let (ret, _) = bed.tunnel_rx(&tunnel, &short);
    assert_eq!((ret, bed.drops("truncated")), (TC_ACT_SHOT, 1));
    assert_eq!(bed.total_drops(), 3);
    assert!(bed.maps.fdb().is_empty(), "nothing learned");
}

#[test]
fn encap_through_a_tunnel_uses_the_tunnel_address() {
    let mut bed = Bed::new("tunenc");
    let tunnel = bed.add_tunnel();
    let entry = vlnet_fdb_entry {
        vtep_be: u32::from(SECURE).to_be(),
        flags: VLNET_FDB_STATIC,
        updated_ns: 0,
    };
    bed.maps.set_fdb(&fdb_key(400, VM_B_MAC), &entry).unwrap();
    let inner = frames::inner_udp(VM_B_MAC, 0, 64);
    let ctx = __sk_buff {
        ifindex: tunnel.vlx400,
        ..Default::default()
    };
    let (ret, out, ctx) = bed.run_tc("tc_overlay_tx", &inner, ctx);
    assert_eq!(ret, TC_ACT_REDIRECT, "drops: {:?}", bed.maps.drops());
    assert_eq!(
        out[off::IP_SRC..off::IP_SRC + 4],
        TUN_LOCAL.octets(),
        "outer source"
    );
    assert_eq!(
        out[off::IP_SRC + 4..off::IP_SRC + 8],
        SECURE.octets(),
        "outer destination"
    );
    assert_eq!(
        frames::checksum(&out[off::IP..off::IP + 20]),
        0,
        "outer IPv4 checksum valid"
    );
    assert_eq!(out[off::INNER..], inner[..]);
    assert_eq!(
        ctx.mark, 0,
        "IP frames go straight to the tunnel: no hairpin"
    );

    // Underlay peers keep the node's VTEP address.
    let (ret, out) = bed.encap(&frames::inner_udp(VM_B_MAC, 0, 64));
    assert_eq!(ret, TC_ACT_REDIRECT);
    assert_eq!(out[off::IP_SRC..off::IP_SRC + 4], LOCAL.octets());
}

#[test]
fn non_ip_frames_for_a_tunnel_take_the_hairpin() {
    let mut bed = Bed::new("tunarp");
    let tunnel = bed.add_tunnel();
    let arp = frames::inner_arp_request();
    let ctx = __sk_buff {
        ifindex: tunnel.vlx400,
        ..Default::default()
    };
    let (ret, first, out_ctx) = bed.run_tc("tc_overlay_tx", &arp, ctx);
    assert_eq!(ret, TC_ACT_REDIRECT, "drops: {:?}", bed.maps.drops());
    assert_eq!(
        out_ctx.mark, VLNET_MARK_HAIRPIN,
        "marked for the second pass"
    );
    assert_eq!(first[off::IP_SRC..off::IP_SRC + 4], TUN_LOCAL.octets());
    assert_eq!(frames::checksum(&first[off::IP..off::IP + 20]), 0);
    assert_eq!(first[off::INNER..], arp[..]);
    assert_eq!(bed.tx_packets(400), [1], "counted once, on the first pass");

    // Second pass: the packet came back into the port's ingress, marked.
    let marked = __sk_buff {
        ifindex: tunnel.vlx400,
        mark: VLNET_MARK_HAIRPIN,
        ..Default::default()
    };
    let (ret, second, out_ctx) = bed.run_tc("tc_overlay_tx", &first, marked);
    assert_eq!(ret, TC_ACT_REDIRECT, "sent on to the tunnel");
    assert_eq!(out_ctx.mark, 0, "mark cleared");
    assert_eq!(second, first, "not encapsulated twice");
    assert_eq!(bed.tx_packets(400), [1]);

    // A marked packet whose next hop stopped being a tunnel is dropped.
    bed.maps.remove_nexthop(SECURE).unwrap();
    let (ret, _, _) = bed.run_tc("tc_overlay_tx", &first, marked);
    assert_eq!((ret, bed.drops("no_route")), (TC_ACT_SHOT, 1));
    // A frame that only carries the mark is encapsulated as usual.
    let (ret, out, out_ctx) = bed.run_tc(
        "tc_overlay_tx",
        &frames::inner_udp(VM_B_MAC, 0, 10),
        __sk_buff {
            ifindex: bed.vlx100,
            mark: VLNET_MARK_HAIRPIN,
            ..Default::default()
        },
    );
    assert_eq!((ret, out_ctx.mark), (TC_ACT_REDIRECT, 0));
    assert_eq!(out[off::IP_SRC + 4..off::IP_SRC + 8], PEER.octets());
}

/// The hairpin in the kernel for real: a flood copy (`bpf_clone_redirect` is
/// carried out even under `BPF_PROG_TEST_RUN`) of an ARP request for a secure
/// peer goes back into `vlx400`'s ingress, where the attached program sends
/// it to the TUN, whose reader gets exactly the outer IPv4 packet.
#[test]
fn hairpinned_flood_copy_reaches_the_tun_as_bare_ipv4() {
    let mut bed = Bed::new("tunhp");
    let tunnel = bed.add_tunnel();
    let reader = Tun::open("vltun0");
    bed.programs
        .attach_tc(bpf::PROG_TC_OVERLAY_TX, "vlx400", tunnel.vlx400)
        .unwrap();
    // Flood to the secure peer (a clone) and then the underlay peer (the redirect).
    bed.set_flood(400, tunnel.vlx400, &[SECURE, PEER], &[]);
    bed.maps.ensure_peer(400, PEER).unwrap();
    let arp = frames::inner_arp_request();
    let (ret, last, ctx) = bed.run_tc(
        "tc_overlay_tx",
        &arp,
        __sk_buff {
            ifindex: tunnel.vlx400,
            ..Default::default()
        },
    );
    assert_eq!(ret, TC_ACT_REDIRECT, "drops: {:?}", bed.maps.drops());
    assert_eq!(ctx.mark, 0, "the underlay copy is not marked");
    assert_eq!(last[off::IP_SRC..off::IP_SRC + 4], LOCAL.octets());
    let packet = reader.recv();
    assert_eq!(packet[0] >> 4, 4, "IPv4 first: {packet:02x?}");
    assert_eq!(packet[12..16], TUN_LOCAL.octets(), "tunnel source");
    assert_eq!(packet[16..20], SECURE.octets());
    assert_eq!(packet[22..24], 4789u16.to_be_bytes());
    assert_eq!(
        packet[36..],
        arp[..],
        "the ARP request follows the VXLAN header"
    );
    assert_eq!(bed.total_drops(), 0);
}

/// The user-space end of an existing TUN device (`IFF_TUN | IFF_NO_PI`), as
/// boringtun holds it.
struct Tun(std::os::fd::OwnedFd);

impl Tun {
    /// Attaches to `ifname` in the calling thread's namespace and waits until
    /// the device can transmit. Attaching turns its carrier on, but the
    /// kernel's link-watch worker activates its queue (until then a `noop`
    /// qdisc drops everything) only later, under load well after a test's
    /// first packet. The worker sets the operational state and activates the
    /// queue in one pass under RTNL: once the state reads UP, any RTNL
    /// operation (a no-op `ip link set up`) returns after that pass.
    fn open(ifname: &str) -> Self {
        let tun = Self::attach(ifname);
        // Child processes start in the calling thread's namespace.
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "ip {args:?} failed");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let link = ip(&["link", "show", ifname]);
            if link.contains(" state UP ") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{ifname} not up 3 s after attaching: {link}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        ip(&["link", "set", ifname, "up"]);
        tun
    }

    fn attach(ifname: &str) -> Self {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: plain open(2) of a device node with a NUL-terminated path.
        let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK) };
        assert!(
            fd >= 0,
            "open /dev/net/tun: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd was just opened and is owned by nobody else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: ifreq is plain data; all-zero is valid.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
            *dst = src.cast_signed();
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads an ifreq, which `req` is.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &raw mut req) };
        assert_eq!(
            rc,
            0,
            "TUNSETIFF {ifname}: {}",
            std::io::Error::last_os_error()
        );
        Self(fd)
    }

    /// Hands `packet` (bare IPv4) to the kernel, as if decrypted.
    fn send(&self, packet: &[u8]) {
        use std::os::fd::AsRawFd;
        // SAFETY: buffer valid for its length.
        let n = unsafe { libc::write(self.0.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        assert_eq!(
            n,
            packet.len().cast_signed(),
            "write to the TUN: {}",
            std::io::Error::last_os_error()
        );
    }

    /// The next packet, waiting up to 3 s.
    fn recv(&self) -> Vec<u8> {
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&raw mut pfd, 1, 3000) };
        assert_eq!(n, 1, "nothing reached the TUN within 3 s");
        let mut buf = vec![0u8; 65536];
        // SAFETY: buffer valid for its length.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        assert!(
            n > 0,
            "read from the TUN: {}",
            std::io::Error::last_os_error()
        );
        buf.truncate(n.cast_unsigned());
        buf
    }
}
