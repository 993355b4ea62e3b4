//! ARP and IPv6 ND suppression in `tc_overlay_tx` (`lib/neigh.h`): a
//! request from a local VM for a binding whose MAC is behind a remote VTEP
//! is answered with the bytes the owner would send (the NA's checksum and
//! layout checked against etherparse's builder), counted, and nothing is
//! encapsulated; unknown bindings flood; snooping records only frames from
//! MACs living here whose link-layer address is their own.

use std::net::{IpAddr, Ipv6Addr};

use etherparse::{Icmpv6Type, PacketBuilder};
use vlnet_ebpf::abi::{VLNET_NEIGH_CONTROL, VLNET_NEIGH_LOCAL, VLNET_NEIGH_ROUTER};

use super::*;
use crate::frames::{VM_A_IP, VM_B_IP};

const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xb);
const CONTROL: u8 = VLNET_NEIGH_CONTROL as u8;
const LOCAL_FLAG: u8 = VLNET_NEIGH_LOCAL as u8;

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
