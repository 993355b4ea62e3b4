//! ARP and IPv6 ND suppression in `tc_overlay_tx` (`lib/neigh.h`): a
//! request from a local VM for a binding whose MAC is behind a remote VTEP
//! is answered with the bytes the owner would send (the NA's checksum and
//! layout checked against etherparse's builder), counted, and nothing is
//! encapsulated; unknown bindings flood; snooping records only frames from
//! MACs living here whose link-layer address is their own. Zone snooping in
//! the decap (TC and XDP): a static peer's ARP/ND is recorded as a zone
//! binding, over a member's control-plane binding and never overwritten by
//! the control plane; a member's, or a frame through the tunnel, is not.

use std::net::{IpAddr, Ipv6Addr};

use etherparse::{Icmpv6Type, PacketBuilder};
use vlnet_dataplane::control::neighbook::NeighSet;
use vlnet_ebpf::abi::{
    VLNET_NEIGH_CONTROL, VLNET_NEIGH_LOCAL, VLNET_NEIGH_ROUTER, VLNET_NEIGH_ZONE,
    VLNET_VNI_ARP_SUPPRESS,
};

use super::*;
use crate::frames::{VM_A_IP, VM_B_IP};

const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xb);
const CONTROL: u8 = VLNET_NEIGH_CONTROL as u8;
const LOCAL_FLAG: u8 = VLNET_NEIGH_LOCAL as u8;
const ZONE: u8 = VLNET_NEIGH_ZONE as u8;
/// A member's VM.
const VM_M_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0d, 1];

/// VM B's MAC placed behind the static peer, and its addresses bound to it.
fn remote_b(bed: &mut Bed, flags: u8) {
    let entry = vlnet_fdb_entry {
        vtep_be: u32::from(PEER).to_be(),
        flags: VLNET_FDB_CONTROL,
        updated_ns: 0,
    };
    bed.maps.set_fdb(&fdb_key(100, VM_B_MAC), &entry).unwrap();
    let mac = vlnet_dataplane::mac::MacAddr(VM_B_MAC);
    bed.maps
        .set_neigh(100, IpAddr::V4(VM_B_IP), mac, flags)
        .unwrap();
    bed.maps.set_neigh(100, IpAddr::V6(B6), mac, flags).unwrap();
}

/// The ARP reply VM B itself would send VM A (Linux: 42 bytes).
fn arp_reply_from_b() -> Vec<u8> {
    let mut f = frames::ethernet(VM_A_MAC, VM_B_MAC, 0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    f.extend_from_slice(&VM_B_MAC);
    f.extend_from_slice(&VM_B_IP.octets());
    f.extend_from_slice(&VM_A_MAC);
    f.extend_from_slice(&VM_A_IP.octets());
    f
}

/// A neighbour solicitation from VM A (source `src`) for `target`, to its
/// solicited-node group, with a source link-layer option (none for DAD).
fn ns(src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let g = group.octets();
    let dst_mac = [0x33, 0x33, g[12], g[13], g[14], g[15]];
    let mut payload = t.to_vec();
    if !src.is_unspecified() {
        payload.extend_from_slice(&[1, 1]);
        payload.extend_from_slice(&VM_A_MAC);
    }
    build(
        PacketBuilder::ethernet2(VM_A_MAC, dst_mac)
            .ipv6(src.octets(), g, 255)
            .icmpv6(Icmpv6Type::NeighborSolicitation),
        &payload,
    )
}

/// The NA `from_mac` (owner of `target`) sends to VM A at `to`, as etherparse builds it.
fn na(from_mac: [u8; 6], target: Ipv6Addr, to: Ipv6Addr, router: bool) -> Vec<u8> {
    let mut payload = target.octets().to_vec();
    payload.extend_from_slice(&[2, 1]);
    payload.extend_from_slice(&from_mac);
    let header = etherparse::icmpv6::NeighborAdvertisementHeader {
        router,
        solicited: true,
        r#override: true,
    };
    build(
        PacketBuilder::ethernet2(from_mac, VM_A_MAC)
            .ipv6(target.octets(), to.octets(), 255)
            .icmpv6(Icmpv6Type::NeighborAdvertisement(header)),
        &payload,
    )
}

fn build(b: etherparse::PacketBuilderStep<etherparse::Icmpv6Header>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

fn bindings(bed: &Bed) -> Vec<(IpAddr, [u8; 6], u8)> {
    let mut out: Vec<_> = bed
        .maps
        .neigh_entries()
        .into_iter()
        .map(|e| (e.ip, e.mac.0, e.flags))
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn arp_request_for_a_remote_binding_is_answered_with_the_owners_reply() {
    let mut bed = Bed::new("arpsup");
    remote_b(&mut bed, CONTROL);
    let (ret, out) = bed.encap(&frames::inner_arp_request());
    assert_eq!(ret, TC_ACT_REDIRECT, "sent back out of the overlay port");
    assert_eq!(
        out,
        arp_reply_from_b(),
        "the reply VM B would send, byte for byte"
    );
    assert_eq!(bed.tx_packets(100), [0], "nothing crossed the tunnel");
    let s = bed.maps.suppression();
    assert_eq!((s.arp_replied, s.nd_replied), (1, 0));
    assert_eq!(bed.total_drops(), 0);

    // A padded request (a real NIC's 60 bytes) gets the same 42-byte reply.
    let mut padded = frames::inner_arp_request();
    padded.resize(60, 0);
    let (ret, out) = bed.encap(&padded);
    assert_eq!((ret, out), (TC_ACT_REDIRECT, arp_reply_from_b()));
    assert_eq!(bed.maps.suppression().arp_replied, 2);
}

#[test]
fn unknown_bindings_and_unplaced_macs_flood() {
    let mut bed = Bed::new("arpflood");
    let (ret, out) = bed.encap(&frames::inner_arp_request());
    assert_eq!(ret, TC_ACT_REDIRECT);
    assert_eq!(
        out.len(),
        VLNET_ENCAP_LEN_USIZE + 42,
        "encapsulated: {out:?}"
    );
    assert_eq!(bed.tx_packets(100), [1]);

    // Bound, but VM B's MAC has no known place: flooded too.
    let mac = vlnet_dataplane::mac::MacAddr(VM_B_MAC);
    bed.maps
        .set_neigh(100, IpAddr::V4(VM_B_IP), mac, CONTROL)
        .unwrap();
    let (ret, out) = bed.encap(&frames::inner_arp_request());
    assert_eq!(
        (ret, out.len()),
        (TC_ACT_REDIRECT, VLNET_ENCAP_LEN_USIZE + 42)
    );
    assert_eq!(bed.tx_packets(100), [2]);

    // Gratuitous ARP (sender = target) and probes (sender 0.0.0.0) always flood.
    remote_b(&mut bed, CONTROL);
    let mut garp = frames::inner_arp_request();
    garp[38..42].copy_from_slice(&VM_A_IP.octets());
    assert_eq!(bed.encap(&garp).1.len(), VLNET_ENCAP_LEN_USIZE + 42);
    let mut probe = frames::inner_arp_request();
    probe[28..32].fill(0);
    assert_eq!(bed.encap(&probe).1.len(), VLNET_ENCAP_LEN_USIZE + 42);
    assert_eq!(bed.tx_packets(100), [4]);
    assert_eq!(bed.maps.suppression().arp_replied, 0);
}

#[test]
fn a_request_for_a_vm_on_this_node_crosses_no_tunnel() {
    let mut bed = Bed::new("arplocal");
    let mac = vlnet_dataplane::mac::MacAddr(VM_B_MAC);
    bed.maps.record_local(&fdb_key(100, VM_B_MAC), 1).unwrap();
    bed.maps
        .set_neigh(100, IpAddr::V4(VM_B_IP), mac, LOCAL_FLAG)
        .unwrap();
    let (ret, _) = bed.encap(&frames::inner_arp_request());
    assert_eq!(ret, TC_ACT_SHOT, "the bridge delivered it to VM B already");
    assert_eq!(bed.tx_packets(100), [0]);
    assert_eq!(bed.maps.suppression().arp_local, 1);
    assert_eq!(bed.total_drops(), 0, "not a drop");
}

#[test]
fn neighbour_solicitation_for_a_remote_binding_gets_the_owners_advertisement() {
    let mut bed = Bed::new("ndsup");
    remote_b(&mut bed, CONTROL);
    let (ret, out) = bed.encap(&ns(A6, B6));
    assert_eq!(ret, TC_ACT_REDIRECT);
    assert_eq!(
        out,
        na(VM_B_MAC, B6, A6, false),
        "NA bytes and checksum as etherparse builds them"
    );
    let parsed = etherparse::SlicedPacket::from_ethernet(&out).unwrap();
    let Some(etherparse::TransportSlice::Icmpv6(icmp)) = parsed.transport else {
        panic!("not ICMPv6: {out:?}")
    };
    let (src, dst) = (A6.octets(), B6.octets());
    assert_eq!(
        icmp.icmp_type()
            .calc_checksum(dst, src, icmp.payload())
            .unwrap(),
        icmp.checksum(),
        "the ICMPv6 checksum verifies"
    );
    assert_eq!(bed.tx_packets(100), [0]);
    assert_eq!(bed.maps.suppression().nd_replied, 1);

    // A router's binding answers with R set.
    remote_b(&mut bed, CONTROL | VLNET_NEIGH_ROUTER as u8);
    let (_, out) = bed.encap(&ns(A6, B6));
    assert_eq!(out, na(VM_B_MAC, B6, A6, true));

    // DAD (unspecified source) is neither answered nor snooped.
    let (ret, out) = bed.encap(&ns(Ipv6Addr::UNSPECIFIED, B6));
    assert_eq!((ret, out.len() > 100), (TC_ACT_REDIRECT, true), "flooded");
    assert_eq!(bed.maps.suppression().nd_replied, 2);
    assert!(!bindings(&bed).iter().any(|(ip, _, _)| ip.is_unspecified()));
}

#[test]
fn snooping_records_only_local_sources_and_their_own_addresses() {
    let mut bed = Bed::new("snoop");
    // A broadcast request records VM A as local, then its binding.
    bed.encap(&frames::inner_arp_request());
    // An NS from VM A binds its IPv6 source; an NA from VM A its target.
    bed.encap(&ns(A6, B6));
    let a2 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa2);
    let mut advert = na(VM_A_MAC, a2, B6, false);
    advert[..6].copy_from_slice(&VM_B_MAC); // unicast to VM B, behind the tunnel
    bed.encap(&advert);
    let a = VM_A_MAC;
    assert_eq!(
        bindings(&bed),
        [
            (IpAddr::V4(VM_A_IP), a, LOCAL_FLAG),
            (IpAddr::V6(A6), a, LOCAL_FLAG),
            (IpAddr::V6(a2), a, LOCAL_FLAG),
        ]
    );

    // VM C never sent a broadcast and the bridges do not list it: its
    // unicast reply to a remote VM binds nothing.
    let c = [0x02, 0, 0, 0, 0x0c, 1];
    let mut reply = frames::ethernet(VM_B_MAC, c, 0x0806);
    reply.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    reply.extend_from_slice(&c);
    reply.extend_from_slice(&[192, 0, 2, 3]);
    reply.extend_from_slice(&VM_B_MAC);
    reply.extend_from_slice(&VM_B_IP.octets());
    bed.encap(&reply);
    // VM A claiming VM B's address with VM B's MAC as sender binds nothing.
    let mut forged = frames::inner_arp_request();
    forged[22..28].copy_from_slice(&VM_B_MAC);
    forged[28..32].copy_from_slice(&[192, 0, 2, 9]);
    bed.encap(&forged);
    assert_eq!(bindings(&bed).len(), 3, "{:?}", bindings(&bed));

    // With suppression off the VNI snoops and answers nothing.
    bed.desired.vnis[0].arp_suppress = false;
    vlnet_dataplane::sync::apply(&mut bed.maps, &bed.desired).unwrap();
    remote_b(&mut bed, CONTROL);
    let mut other = frames::inner_arp_request();
    other[28..32].copy_from_slice(&[192, 0, 2, 7]);
    let (_, out) = bed.encap(&other);
    assert_eq!(
        out.len(),
        VLNET_ENCAP_LEN_USIZE + 42,
        "flooded, not answered"
    );
    assert!(!bindings(&bed)
        .iter()
        .any(|(ip, _, _)| *ip == IpAddr::from([192, 0, 2, 7])));
}

const VLNET_ENCAP_LEN_USIZE: usize = vlnet_ebpf::abi::VLNET_ENCAP_LEN as usize;

/// An ARP packet from `sha`/`spa` (Ethernet source `src`) asking for `tpa`, broadcast.
fn arp_from(src: [u8; 6], sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = frames::ethernet([0xff; 6], src, 0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f
}

/// The ARP request VM B (a zone VM behind a static peer) sends for VM A.
fn arp_from_b() -> Vec<u8> {
    arp_from(VM_B_MAC, VM_B_MAC, VM_B_IP.octets(), VM_A_IP.octets())
}

fn zone_snooping(mode: Mode) {
    let mut bed = Bed::new("zonesnoop");
    let (_, _, redirect) = verdicts(mode);
    // A member's VM bound .2 through the control plane first.
    let member = vlnet_dataplane::mac::MacAddr(VM_M_MAC);
    bed.maps
        .set_neigh(100, IpAddr::V4(VM_B_IP), member, CONTROL)
        .unwrap();
    // VM B, behind the static peer, asks for VM A and answers an NS (a router).
    let arp = arp_from_b();
    let (ret, out) = bed.decap(mode, &frames::vxlan(PEER, LOCAL, 100, 0, &arp));
    assert_eq!((ret, out), (redirect, arp), "delivered as it came");
    let advert = na(VM_B_MAC, B6, A6, true);
    let (ret, _) = bed.decap(mode, &frames::vxlan(PEER, LOCAL, 100, 0, &advert));
    assert_eq!(ret, redirect);
    let router = VLNET_NEIGH_ROUTER as u8;
    assert_eq!(
        bindings(&bed),
        [
            (IpAddr::V4(VM_B_IP), VM_B_MAC, ZONE),
            (IpAddr::V6(B6), VM_B_MAC, ZONE | router),
        ],
        "the zone's, over the member's control-plane binding"
    );
    assert_eq!(bed.maps.suppression().bindings_zone, 2);

    // The control plane cannot take a zone VM's address back for a member.
    let set = NeighSet {
        ips: [IpAddr::V4(VM_B_IP)].into(),
        router: false,
    };
    bed.maps.apply_neigh((100, member), &set).unwrap();
    assert_eq!(bindings(&bed)[0], (IpAddr::V4(VM_B_IP), VM_B_MAC, ZONE));

    // A sender MAC other than the frame's own binds nothing; a local VM's
    // address stays its own.
    let forged = arp_from(VM_B_MAC, VM_A_MAC, [192, 0, 2, 3], VM_A_IP.octets());
    bed.decap(mode, &frames::vxlan(PEER, LOCAL, 100, 0, &forged));
    let a = vlnet_dataplane::mac::MacAddr(VM_A_MAC);
    let four = IpAddr::from([192, 0, 2, 4]);
    bed.maps.set_neigh(100, four, a, LOCAL_FLAG).unwrap();
    let claim = arp_from(VM_B_MAC, VM_B_MAC, [192, 0, 2, 4], VM_A_IP.octets());
    bed.decap(mode, &frames::vxlan(PEER, LOCAL, 100, 0, &claim));
    assert_eq!(bindings(&bed).len(), 3, "{:?}", bindings(&bed));
    assert!(bindings(&bed).contains(&(four, VM_A_MAC, LOCAL_FLAG)));

    // With suppression off nothing is snooped.
    bed.desired.vnis[0].arp_suppress = false;
    vlnet_dataplane::sync::apply(&mut bed.maps, &bed.desired).unwrap();
    let seven = arp_from(VM_B_MAC, VM_B_MAC, [192, 0, 2, 7], VM_A_IP.octets());
    let (ret, _) = bed.decap(mode, &frames::vxlan(PEER, LOCAL, 100, 0, &seven));
    assert_eq!(ret, redirect);
    assert_eq!(bindings(&bed).len(), 3);
    assert_eq!(bed.total_drops(), 0);
}
both_modes!(zone_snooping);

fn a_members_arp_is_not_snooped(mode: Mode) {
    let mut bed = Bed::new("membersnoop");
    let (_, _, redirect) = verdicts(mode);
    let member = Ipv4Addr::new(198, 18, 0, 7);
    let on_the_underlay = vlnet_dataplane::trust::VtepBinding {
        path: vlnet_dataplane::trust::VtepPath::Underlay,
        learn: false,
        direct: false,
    };
    bed.add_peer(100, member, on_the_underlay);
    let arp = arp_from(VM_M_MAC, VM_M_MAC, VM_B_IP.octets(), VM_A_IP.octets());
    let (ret, out) = bed.decap(mode, &frames::vxlan(member, LOCAL, 100, 0, &arp));
    assert_eq!((ret, &out), (redirect, &arp), "delivered, not recorded");
    let advert = na(VM_M_MAC, B6, A6, false);
    let (ret, _) = bed.decap(mode, &frames::vxlan(member, LOCAL, 100, 0, &advert));
    assert_eq!(ret, redirect);
    assert_eq!(bindings(&bed), []);
    // The same frame from the static peer is recorded: the VTEP decides.
    bed.decap(mode, &frames::vxlan(PEER, LOCAL, 100, 0, &arp));
    assert_eq!(bindings(&bed), [(IpAddr::V4(VM_B_IP), VM_M_MAC, ZONE)]);
}
both_modes!(a_members_arp_is_not_snooped);

/// For real through a TUN (see `tunnel_rx_decaps_vxlan_from_a_secure_peer`):
/// an ARP request from a learning VTEP reached through the tunnel (as the
/// controller is from a member) is delivered but never snooped.
#[test]
fn a_frame_through_the_tunnel_is_not_snooped() {
    let mut bed = Bed::new("tunsnoop");
    let tunnel = bed.add_tunnel();
    let mut cfg = bed.maps.vni(400).unwrap();
    cfg.flags |= VLNET_VNI_ARP_SUPPRESS;
    bed.maps.set_vni(400, &cfg).unwrap();
    let tun = Tun::open("vltun0");
    bed.programs
        .attach_tc(bpf::PROG_TC_TUNNEL_RX, "vltun0", tunnel.ifindex)
        .unwrap();
    let capture = PacketSocket::bind(bed.ns.ifindex("vlp400"));
    let arp = arp_from_b();
    tun.send(&bare(&frames::vxlan(SECURE, TUN_LOCAL, 400, 0, &arp)));
    assert_eq!(capture.recv_ending_with(&arp), arp, "delivered");
    assert_eq!(bindings(&bed), []);
    assert_eq!(bed.total_drops(), 0);
}

/// A batch of control-plane changes (`apply_neighs`, one read of the table)
/// applies in order: an address that moves from one MAC to another in the
/// same batch ends at the second, whichever comes first.
#[test]
fn a_batch_of_bindings_applies_in_order() {
    let bed = Bed::new("arpbatch");
    let mut maps = bed.maps;
    let (m1, m2) = (
        vlnet_dataplane::mac::MacAddr(VM_A_MAC),
        vlnet_dataplane::mac::MacAddr(VM_B_MAC),
    );
    let ip = IpAddr::V4(VM_B_IP);
    let bound = |ips: &[IpAddr]| NeighSet {
        ips: ips.iter().copied().collect(),
        router: false,
    };
    maps.apply_neigh((100, m1), &bound(&[ip])).unwrap();
    // The new holder first, then the old one let go.
    maps.apply_neighs([((100, m2), &bound(&[ip])), ((100, m1), &bound(&[]))])
        .unwrap();
    let held: Vec<_> = maps.neigh_entries().iter().map(|e| (e.ip, e.mac)).collect();
    assert_eq!(held, [(ip, m2)]);
    // The other order, and several MACs at once.
    let other = IpAddr::V4(VM_A_IP);
    maps.apply_neighs([((100, m2), &bound(&[])), ((100, m1), &bound(&[ip, other]))])
        .unwrap();
    let mut held: Vec<_> = maps
        .neigh_entries()
        .iter()
        .map(|e| (e.ip, e.mac, e.flags))
        .collect();
    held.sort_unstable();
    let mut want = vec![(ip, m1, CONTROL), (other, m1, CONTROL)];
    want.sort_unstable();
    assert_eq!(held, want);
}
