//! The vendored boringtun's TUN offloads (vlnet patches, see
//! `dataplane/vendor/boringtun/VLNET.md`): GSO segmentation
//! (`boringtun::device::gso`) and joining (`boringtun::device::gro`) against
//! packets built by hand, checked with a naive checksum written apart from
//! the one under test.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails by panicking with the reason"
)]
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    reason = "test packets are far shorter than 64 KiB"
)]

use boringtun::device::gro::{Gro, PAD};
use boringtun::device::gso::{segment, GsoError};
use boringtun::device::vnet::{
    VnetHdr, F_NEEDS_CSUM, F_UDP_TUNNEL_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_TUNNEL_IPV4,
};

/// The naive one's-complement sum, 16 bits at a time.
fn naive(parts: &[&[u8]]) -> u16 {
    let mut acc: u32 = 0;
    for part in parts {
        for w in part.chunks(2) {
            let hi = u32::from(w[0]) << 8;
            acc += hi | w.get(1).map_or(0, |&b| u32::from(b));
        }
    }
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A TCP/IPv4 header with timestamps (32 bytes), `seq`, `flags`.
fn tcp(seq: u32, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 32];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&77u32.to_be_bytes());
    t[12] = 8 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&512u16.to_be_bytes());
    t[20..24].copy_from_slice(&[1, 1, 8, 10]);
    // A stale value, as the kernel leaves a partial sum there.
    t[16..18].copy_from_slice(&0x1234u16.to_be_bytes());
    t
}

fn ipv4(proto: u8, id: u16, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0] = 0x45;
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6] = 0x40;
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    h
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

const FLAGS: u8 = 0x80 | 0x10 | 0x08 | 0x01; // CWR ACK PSH FIN

/// Outer IPv4 + UDP + VXLAN + Ethernet + inner IPv4 + TCP + `len` bytes.
fn vxlan_super(len: usize, seq: u32, udp_csum: bool) -> (VnetHdr, Vec<u8>) {
    vxlan_super_flags(len, seq, udp_csum, FLAGS)
}

fn vxlan_super_flags(len: usize, seq: u32, udp_csum: bool, flags: u8) -> (VnetHdr, Vec<u8>) {
    let mut p = ipv4(17, 0x1000, [198, 18, 0, 1], [198, 18, 0, 2]);
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&5555u16.to_be_bytes());
    udp[2..4].copy_from_slice(&4789u16.to_be_bytes());
    if udp_csum {
        udp[6] = 0x55; // stale
    }
    p.extend(udp);
    p.extend([8, 0, 0, 0, 0, 0, 42, 0]);
    p.extend([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0]);
    p.extend(ipv4(6, 0xfffe, [192, 0, 2, 1], [192, 0, 2, 2]));
    p.extend(tcp(seq, flags));
    p.extend(payload(len));
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM | if udp_csum { F_UDP_TUNNEL_CSUM } else { 0 },
        gso_type: GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4,
        gso_size: 1000,
        csum_start: 70,
        csum_offset: 16,
        outer_th_offset: 20,
        inner_nh_offset: 50,
    };
    (hdr, p)
}

fn cut(hdr: &VnetHdr, pkt: &mut [u8]) -> Vec<Vec<u8>> {
    let mut scratch = vec![0u8; 65536];
    let mut out = Vec::new();
    let n = segment(hdr, pkt, &mut scratch, |s| out.push(s.to_vec())).unwrap();
    assert_eq!(n, out.len());
    out
}

/// Checks a TCP/IPv4 segment whose inner IP header is at `ip`.
fn check_tcp4(seg: &[u8], ip: usize) {
    let l4 = ip + 20;
    assert_eq!(
        usize::from(be16(seg, ip + 2)),
        seg.len() - ip,
        "inner length"
    );
    assert_eq!(naive(&[&seg[ip..l4]]), 0xffff, "inner IPv4 checksum");
    let len = ((seg.len() - l4) as u16).to_be_bytes();
    let pseudo = [&seg[ip + 12..ip + 20], &[0, 6], &len[..], &seg[l4..]];
    assert_eq!(naive(&pseudo), 0xffff, "TCP checksum");
}

#[test]
fn vxlan_super_packet_is_cut_like_the_kernel_would() {
    let data = payload(4500);
    let seq0 = 0xffff_f000; // wraps within the packet
    let (hdr, mut pkt) = vxlan_super(4500, seq0, false);
    let segs = cut(&hdr, &mut pkt);
    assert_eq!(segs.len(), 5);
    let mut joined = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        assert_eq!(usize::from(be16(seg, 2)), seg.len(), "outer length");
        assert_eq!(be16(seg, 4), 0x1000 + i as u16, "outer ID");
        assert_eq!(naive(&[&seg[..20]]), 0xffff, "outer IPv4 checksum");
        assert_eq!(usize::from(be16(seg, 24)), seg.len() - 20, "UDP length");
        assert_eq!(be16(seg, 26), 0, "UDP checksum stays zero");
        assert_eq!(be16(seg, 54), 0xfffe_u16.wrapping_add(i as u16), "inner ID");
        check_tcp4(seg, 50);
        assert_eq!(be32(seg, 74), seq0.wrapping_add(1000 * i as u32), "seq");
        let flags = seg[83];
        assert_eq!(flags & 0x80 != 0, i == 0, "CWR on the first only");
        assert_eq!(flags & 0x09 != 0, i == 4, "FIN, PSH on the last only");
        assert_eq!(flags & 0x10, 0x10, "ACK on all");
        joined.extend_from_slice(&seg[102..]);
    }
    assert_eq!(segs[4].len(), 102 + 500);
    assert_eq!(joined, data);
}

#[test]
fn outer_udp_checksum_is_computed_when_asked() {
    let (hdr, mut pkt) = vxlan_super(2500, 1, true);
    for seg in cut(&hdr, &mut pkt) {
        let len = ((seg.len() - 20) as u16).to_be_bytes();
        let pseudo = [&seg[12..20], &[0, 17], &len[..], &seg[20..]];
        assert_eq!(naive(&pseudo), 0xffff, "outer UDP checksum");
        check_tcp4(&seg, 50);
    }
}

#[test]
fn bare_tcp6_super_packet_is_cut() {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[6] = 6;
    p[7] = 64;
    p[8..24].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p[24..40].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend(tcp(100, 0x18));
    p.extend(payload(3001));
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV6,
        gso_size: 1500,
        csum_start: 40,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    let segs = cut(&hdr, &mut p);
    assert_eq!(segs.len(), 3);
    for (i, seg) in segs.iter().enumerate() {
        assert_eq!(usize::from(be16(seg, 4)), seg.len() - 40, "payload length");
        let len = ((seg.len() - 40) as u32).to_be_bytes();
        let pseudo = [&seg[8..40], &len[..], &[0, 0, 0, 6], &seg[40..]];
        assert_eq!(naive(&pseudo), 0xffff, "TCP checksum");
        assert_eq!(be32(seg, 44), 100 + 1500 * i as u32);
    }
    assert_eq!(segs[2].len(), 72 + 1);
}

#[test]
fn a_super_packet_without_payload_is_one_segment() {
    let (hdr, mut pkt) = vxlan_super(0, 9, false);
    let segs = cut(&hdr, &mut pkt);
    assert_eq!(segs.len(), 1);
    check_tcp4(&segs[0], 50);
}

#[test]
fn a_partial_checksum_is_completed() {
    // UDP/IPv4 with the pseudo-header's sum in the checksum field.
    let mut p = ipv4(17, 1, [192, 0, 2, 1], [192, 0, 2, 2]);
    p[2..4].copy_from_slice(&(20u16 + 8 + 333).to_be_bytes());
    let mut udp = vec![0u8; 8];
    udp[4..6].copy_from_slice(&(8u16 + 333).to_be_bytes());
    p.extend(udp);
    p.extend(payload(333));
    let pseudo = naive(&[&p[12..20], &[0, 17], &(8u16 + 333).to_be_bytes()]);
    p[26..28].copy_from_slice(&pseudo.to_be_bytes());
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: 20,
        csum_offset: 6,
        ..VnetHdr::default()
    };
    let segs = cut(&hdr, &mut p);
    assert_eq!(segs.len(), 1);
    let seg = &segs[0];
    let len = (8u16 + 333).to_be_bytes();
    assert_eq!(naive(&[&seg[12..20], &[0, 17], &len, &seg[20..]]), 0xffff);
}

#[test]
fn malformed_packets_are_refused() {
    let (hdr, pkt) = vxlan_super(3000, 1, false);
    let mut scratch = vec![0u8; 65536];
    let mut short = pkt[..60].to_vec();
    assert_eq!(
        segment(&hdr, &mut short, &mut scratch, |_| {}),
        Err(GsoError::Truncated)
    );
    let zero_mss = VnetHdr { gso_size: 0, ..hdr };
    let mut p = pkt.clone();
    assert_eq!(
        segment(&zero_mss, &mut p, &mut scratch, |_| {}),
        Err(GsoError::BadHeader)
    );
    let crossed = VnetHdr {
        inner_nh_offset: 10,
        ..hdr
    };
    assert_eq!(
        segment(&crossed, &mut p, &mut scratch, |_| {}),
        Err(GsoError::BadHeader)
    );
    let udp_l4 = VnetHdr { gso_type: 5, ..hdr };
    assert_eq!(
        segment(&udp_l4, &mut p, &mut scratch, |_| {}),
        Err(GsoError::Unsupported(5))
    );
    let mut tiny = [0u8; 100];
    assert_eq!(
        segment(&hdr, &mut p, &mut tiny, |_| {}),
        Err(GsoError::BadHeader)
    );
}

#[test]
fn every_length_and_segment_size_adds_up() {
    for len in 0..60 {
        for mss in [1, 2, 7, 8, 13] {
            let (mut hdr, mut pkt) = vxlan_super(len, 5, len % 2 == 0);
            hdr.gso_size = mss;
            let segs = cut(&hdr, &mut pkt);
            assert_eq!(
                segs.len(),
                len.div_ceil(usize::from(mss)).max(1),
                "{len}/{mss}"
            );
            let mut joined = Vec::new();
            for seg in &segs {
                check_tcp4(seg, 50);
                joined.extend_from_slice(&seg[102..]);
            }
            assert_eq!(joined, payload(len), "{len}/{mss}");
        }
    }
}

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// Feeds `packets` through a [`Gro`]; what it emits, virtio-net header
/// parsed.
fn join(packets: &[Vec<u8>]) -> Vec<(VnetHdr, Vec<u8>)> {
    let mut gro = Gro::default();
    let mut out = Vec::new();
    let mut emit = |b: &[u8]| out.push((VnetHdr::parse(b).unwrap(), b[24..].to_vec()));
    for p in packets {
        gro.add(p, &mut emit);
    }
    gro.flush(&mut emit);
    out
}

/// `pkt` without the NOP options a joined packet's outer IPv4 header
/// carries, its offsets moved back, its outer header checked first.
fn unpad(hdr: &VnetHdr, pkt: &[u8]) -> (VnetHdr, Vec<u8>) {
    assert_eq!(usize::from(pkt[0] & 0x0f) * 4, 20 + PAD, "outer IHL");
    assert!(pkt[20..20 + PAD].iter().all(|&b| b == 1), "NOP options");
    assert_eq!(naive(&[&pkt[..20 + PAD]]), 0xffff, "outer IPv4 checksum");
    assert_eq!(usize::from(be16(pkt, 2)), pkt.len(), "outer length");
    let mut out = pkt[..20].to_vec();
    out.extend_from_slice(&pkt[20 + PAD..]);
    out[0] = 0x45;
    out[2..4].copy_from_slice(&((pkt.len() - PAD) as u16).to_be_bytes());
    let pad = PAD as u16;
    let hdr = VnetHdr {
        csum_start: hdr.csum_start - pad,
        outer_th_offset: hdr.outer_th_offset - pad,
        inner_nh_offset: hdr.inner_nh_offset - pad,
        ..*hdr
    };
    (hdr, out)
}

#[test]
fn joined_segments_cut_again_give_the_same_segments() {
    let (hdr, mut pkt) = vxlan_super_flags(9000, 0xffff_ff00, false, ACK | PSH);
    let segs = cut(&hdr, &mut pkt);
    let joined = join(&segs);
    assert_eq!(joined.len(), 1, "one super-packet");
    let (jhdr, jpkt) = &joined[0];
    assert_eq!(jhdr.gso_type, GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4);
    assert_eq!(jhdr.flags, F_NEEDS_CSUM);
    assert_eq!(jhdr.gso_size, 1000);
    let p = PAD as u16;
    assert_eq!((jhdr.csum_start, jhdr.csum_offset), (70 + p, 16));
    assert_eq!(
        (jhdr.outer_th_offset, jhdr.inner_nh_offset),
        (20 + p, 50 + p)
    );
    let (hdr2, mut pkt2) = unpad(jhdr, jpkt);
    assert_eq!(pkt2.len(), pkt.len());
    assert_eq!(naive(&[&pkt2[50..70]]), 0xffff, "inner IPv4 checksum");
    assert_eq!(cut(&hdr2, &mut pkt2), segs);
}

#[test]
fn only_consecutive_segments_of_one_flow_are_joined() {
    let (hdr, mut pkt) = vxlan_super_flags(5000, 1, false, ACK);
    let mut segs = cut(&hdr, &mut pkt);
    // A gap: segment 2 lost.
    let gap: Vec<_> = [0, 1, 3, 4].iter().map(|&i| segs[i].clone()).collect();
    let sizes: Vec<_> = join(&gap)
        .iter()
        .map(|(h, p)| (h.gso_type, p.len()))
        .collect();
    assert_eq!(sizes, [(0x21, PAD + 102 + 2000), (0x21, PAD + 102 + 2000)]);
    // Another flow (inner source port) in the middle.
    segs[2][70] ^= 1;
    let split: Vec<_> = join(&segs).iter().map(|(h, _)| h.gso_type).collect();
    assert_eq!(split, [0x21, 0, 0x21]);
    // PSH ends a run; a short segment too.
    let (hdr, mut pkt) = vxlan_super_flags(2500, 1, false, ACK | PSH);
    let mut segs = cut(&hdr, &mut pkt);
    segs.extend(segs.clone());
    assert_eq!(join(&segs).len(), 2);
}

#[test]
fn other_packets_pass_alone_and_unchanged() {
    // FIN and CWR are never joined; nor is an outer UDP checksum.
    let (hdr, mut pkt) = vxlan_super(3000, 1, false);
    let mut all = cut(&hdr, &mut pkt);
    let (csum_hdr, mut with_csum) = vxlan_super_flags(2000, 1, true, ACK);
    all.extend(cut(&csum_hdr, &mut with_csum));
    let out = join(&all);
    assert_eq!(out.len(), all.len());
    for ((h, p), orig) in out.iter().zip(all.iter()) {
        assert_eq!(*h, VnetHdr::default());
        assert_eq!(p, orig);
    }
}
