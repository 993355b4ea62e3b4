//! Hand-built frames for data-path tests: every byte is visible here or in
//! the lab's frame builder ([`vlnet_lab::jobs::bench::frame`]) they share.

use std::net::Ipv4Addr;

use vlnet_lab::jobs::bench::frame::{vxlan_frame, Endpoints};

/// MAC of the test "VM" that sends inner frames.
pub const VM_A_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0a, 0x01];
/// MAC of the remote "VM".
pub const VM_B_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0b, 0x01];
/// Overlay address of VM A.
pub const VM_A_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Overlay address of VM B.
pub const VM_B_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// One's-complement checksum (RFC 1071).
pub use vlnet_lab::jobs::bench::frame::internet_checksum as checksum;

/// A 20-byte IPv4 header with a valid checksum.
pub fn ipv4_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    tos: u8,
    payload_len: usize,
) -> Vec<u8> {
    let total = (20 + payload_len) as u16;
    let mut h = vec![0x45, tos];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// Recomputes the checksum of the IPv4 header at `offset`.
pub fn fix_ipv4_checksum(frame: &mut [u8], offset: usize) {
    let ihl = usize::from(frame[offset] & 0x0f) * 4;
    frame[offset + 10..offset + 12].fill(0);
    let c = checksum(&frame[offset..offset + ihl]);
    frame[offset + 10..offset + 12].copy_from_slice(&c.to_be_bytes());
}

/// Ethernet header.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut e = dst.to_vec();
    e.extend_from_slice(&src);
    e.extend_from_slice(&ethertype.to_be_bytes());
    e
}

/// Inner frame: VM A → `dst_mac`, IPv4/UDP with `payload_len` bytes of payload.
pub fn inner_udp(dst_mac: [u8; 6], tos: u8, payload_len: usize) -> Vec<u8> {
    let mut f = ethernet(dst_mac, VM_A_MAC, 0x0800);
    f.extend(ipv4_header(VM_A_IP, VM_B_IP, 17, tos, 8 + payload_len));
    f.extend_from_slice(&1234u16.to_be_bytes());
    f.extend_from_slice(&5678u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend((0..payload_len).map(|i| i as u8));
    f
}

/// Inner IPv6 frame (UDP, no payload) with traffic class `tclass`.
pub fn inner_ipv6(dst_mac: [u8; 6], tclass: u8) -> Vec<u8> {
    let mut f = ethernet(dst_mac, VM_A_MAC, 0x86dd);
    f.push(0x60 | (tclass >> 4));
    f.push(tclass << 4);
    f.extend_from_slice(&[0, 0, 0, 8, 17, 64]);
    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    f.extend_from_slice(&[0; 12]);
    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    f.extend_from_slice(&[0; 11]);
    f.push(2);
    f.extend_from_slice(&[0x04, 0xd2, 0x16, 0x2e, 0, 8, 0, 0]);
    f
}

/// Inner ARP request from VM A for VM B's address (broadcast).
pub fn inner_arp_request() -> Vec<u8> {
    arp_request(VM_A_MAC, VM_A_IP, VM_B_IP)
}

/// A broadcast ARP request from `mac` (Ethernet source and sender) at
/// `sender` for `target`.
pub fn arp_request(mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = ethernet([0xff; 6], mac, 0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// A VXLAN packet as a remote VTEP sends it: outer Ethernet/IPv4/UDP 4789
/// (checksum 0)/VXLAN carrying `inner`.
pub fn vxlan(src: Ipv4Addr, dst: Ipv4Addr, vni: u32, tos: u8, inner: &[u8]) -> Vec<u8> {
    let outer = Endpoints {
        src_mac: [0x02, 0, 0, 0, 0, 0x02],
        dst_mac: [0x02, 0, 0, 0, 0, 0x01],
        src_ip: src,
        dst_ip: dst,
        src_port: 50000,
        dst_port: 4789,
    };
    let mut f = vxlan_frame(&outer, vni, inner);
    f[off::TOS] = tos;
    fix_ipv4_checksum(&mut f, off::IP);
    f
}

/// Offsets of fields in a frame built by [`vxlan`].
pub mod off {
    /// Outer IPv4 header.
    pub const IP: usize = 14;
    /// Outer TOS.
    pub const TOS: usize = 15;
    /// Outer total length.
    pub const TOT_LEN: usize = 16;
    /// Outer IP ID.
    pub const IP_ID: usize = 18;
    /// Outer flags/fragment offset.
    pub const FRAG: usize = 20;
    /// Outer IP checksum.
    pub const IP_CSUM: usize = 24;
    /// Outer source address.
    pub const IP_SRC: usize = 26;
    /// Outer UDP source port.
    pub const UDP_SPORT: usize = 34;
    /// Outer UDP length.
    pub const UDP_LEN: usize = 38;
    /// VXLAN flags.
    pub const VXLAN: usize = 42;
    /// Inner frame.
    pub const INNER: usize = 50;
}

/// Each malformed or hostile input, with the one drop reason it must count.
/// VNI 100 must be configured with `peer` as its only remote VTEP; VNI 200
/// must exist without an overlay port (`not_configured`) or not at all
/// (then those frames count as `unknown_vni`).
pub fn hostile(local: Ipv4Addr, peer: Ipv4Addr, inner: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let good = vxlan(peer, local, 100, 0, inner);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut frame = good.clone();
        f(&mut frame);
        frame
    };
    let refix = |frame: &mut Vec<u8>| fix_ipv4_checksum(frame, off::IP);
    vec![
        ("truncated", good[..off::INNER + 10].to_vec()),
        (
            "bad_length",
            with(&|f| {
                f[off::TOT_LEN..off::TOT_LEN + 2].copy_from_slice(&2000u16.to_be_bytes());
                refix(f);
            }),
        ),
        (
            "bad_length",
            with(&|f| f[off::UDP_LEN..off::UDP_LEN + 2].copy_from_slice(&9u16.to_be_bytes())),
        ),
        ("bad_ip_header", with(&|f| f[off::IP_CSUM] ^= 0xff)),
        (
            "bad_ip_header",
            with(&|f| {
                f[off::IP] = 0x44;
                refix(f);
            }),
        ),
        (
            "fragment",
            with(&|f| {
                f[off::FRAG..off::FRAG + 2].copy_from_slice(&0x2000u16.to_be_bytes());
                refix(f);
            }),
        ),
        ("bad_vxlan_flags", with(&|f| f[off::VXLAN] = 0)),
        ("bad_vxlan_flags", with(&|f| f[off::VXLAN] = 0x0c)),
        ("bad_vxlan_flags", with(&|f| f[off::VXLAN + 7] = 1)),
        ("unknown_vni", vxlan(peer, local, 999, 0, inner)),
        (
            "unknown_vtep",
            vxlan(Ipv4Addr::new(198, 18, 0, 9), local, 100, 0, inner),
        ),
        ("looped", vxlan(local, local, 100, 0, inner)),
        ("bad_inner_source", with(&|f| f[off::INNER + 6] = 0x01)),
        (
            "bad_inner_source",
            with(&|f| f[off::INNER + 6..off::INNER + 12].fill(0)),
        ),
        ("ecn_not_ect", vxlan(peer, local, 100, 3, inner)),
        ("not_configured", vxlan(peer, local, 200, 0, inner)),
    ]
}
