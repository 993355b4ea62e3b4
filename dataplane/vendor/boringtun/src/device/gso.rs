// Copyright (c) 2019 Cloudflare, Inc. All rights reserved.
// SPDX-License-Identifier: BSD-3-Clause

//! vlnet patch: turns what a TUN with offloads hands over (a packet after its
//! [`VnetHdr`]) into the packets the wire would have carried, the way the
//! kernel's GSO would have cut them: a partial checksum completed; a TCP
//! super-packet, bare or inside a UDP tunnel (vlnet's VXLAN), cut into
//! `gso_size` segments with their own lengths, IPv4 IDs, sequence numbers,
//! flags and checksums at every level. Pure: no I/O, no allocation. Public
//! so that vlnet tests it (`dataplane/src/wg/offload_tests.rs`).

use super::vnet::{
    VnetHdr, F_NEEDS_CSUM, F_UDP_TUNNEL_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6,
    GSO_UDP_TUNNEL_IPV4, GSO_UDP_TUNNEL_IPV6,
};

/// Why a packet from the TUN could not be segmented (it is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoError {
    /// A header or checksum field lies past the end of the packet.
    Truncated,
    /// A GSO type we did not ask the TUN for.
    Unsupported(u8),
    /// Offsets or sizes that do not describe a valid packet.
    BadHeader,
}

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
/// Offset of the checksum in a UDP header.
const UDP_CHECK: usize = 6;
/// Offset of the checksum in a TCP header.
const TCP_CHECK: usize = 16;

/// Passes each wire packet of `pkt` (described by `hdr`) to `emit`, built in
/// `scratch` (at least a segment long) or, when nothing is cut, in `pkt`
/// itself. Returns how many packets were emitted.
pub fn segment(
    hdr: &VnetHdr,
    pkt: &mut [u8],
    scratch: &mut [u8],
    mut emit: impl FnMut(&mut [u8]),
) -> Result<usize, GsoError> {
    let tunnel = hdr.gso_type & (GSO_UDP_TUNNEL_IPV4 | GSO_UDP_TUNNEL_IPV6);
    match hdr.gso_type & !(tunnel | GSO_ECN) {
        GSO_NONE => {
            if hdr.flags & F_NEEDS_CSUM != 0 {
                complete_csum(pkt, hdr.csum_start.into(), hdr.csum_offset.into())?;
            }
            emit(pkt);
            Ok(1)
        }
        GSO_TCPV4 | GSO_TCPV6 => {
            let outer_udp = if tunnel != 0 {
                Some(OuterUdp {
                    at: hdr.outer_th_offset.into(),
                    csum: hdr.flags & F_UDP_TUNNEL_CSUM != 0,
                })
            } else {
                None
            };
            let inner_ip = if tunnel != 0 {
                hdr.inner_nh_offset.into()
            } else {
                0
            };
            let layout = TcpLayout::new(
                pkt,
                inner_ip,
                hdr.csum_start.into(),
                outer_udp,
                hdr.gso_size.into(),
            )?;
            layout.cut(pkt, scratch, emit)
        }
        other => Err(GsoError::Unsupported(other)),
    }
}

/// The outer UDP header of a tunnelled super-packet.
#[derive(Clone, Copy)]
struct OuterUdp {
    /// Its offset (after the outer IP header at 0).
    at: usize,
    /// Whether its checksum is to be computed (else it stays zero).
    csum: bool,
}

/// Where the headers of a TCP super-packet are.
struct TcpLayout {
    inner_ip: usize,
    tcp: usize,
    headers: usize,
    mss: usize,
    outer_udp: Option<OuterUdp>,
}

impl TcpLayout {
    fn new(
        pkt: &[u8],
        inner_ip: usize,
        tcp: usize,
        outer_udp: Option<OuterUdp>,
        mss: usize,
    ) -> Result<TcpLayout, GsoError> {
        if pkt.len() < tcp + 20 || pkt.len() <= inner_ip {
            return Err(GsoError::Truncated);
        }
        let min_ip = match pkt[inner_ip] >> 4 {
            4 => 20,
            6 => 40,
            _ => return Err(GsoError::BadHeader),
        };
        let headers = tcp + usize::from(pkt[tcp + 12] >> 4) * 4;
        if mss == 0 || inner_ip + min_ip > tcp || headers < tcp + 20 || headers > pkt.len() {
            return Err(GsoError::BadHeader);
        }
        if let Some(udp) = outer_udp {
            let outer_min = match pkt[0] >> 4 {
                4 => 20,
                6 => 40,
                _ => return Err(GsoError::BadHeader),
            };
            if udp.at < outer_min || udp.at + 8 > inner_ip {
                return Err(GsoError::BadHeader);
            }
        }
        Ok(TcpLayout {
            inner_ip,
            tcp,
            headers,
            mss,
            outer_udp,
        })
    }

    fn cut(
        &self,
        pkt: &[u8],
        scratch: &mut [u8],
        mut emit: impl FnMut(&mut [u8]),
    ) -> Result<usize, GsoError> {
        if scratch.len() < self.headers + self.mss {
            return Err(GsoError::BadHeader);
        }
        let (head, payload) = pkt.split_at(self.headers);
        let count = payload.len().div_ceil(self.mss).max(1);
        let seq0 = u32::from_be_bytes([
            pkt[self.tcp + 4],
            pkt[self.tcp + 5],
            pkt[self.tcp + 6],
            pkt[self.tcp + 7],
        ]);
        for i in 0..count {
            let from = i * self.mss;
            let chunk = &payload[from..payload.len().min(from + self.mss)];
            let len = self.headers + chunk.len();
            let seg = &mut scratch[..len];
            seg[..self.headers].copy_from_slice(head);
            seg[self.headers..].copy_from_slice(chunk);
            // `from` < 64 KiB: the sequence number and the ID wrap as the
            // kernel's do.
            let index = i as u16;
            fix_ip(seg, self.inner_ip, index);
            let tcp = self.tcp;
            seg[tcp + 4..tcp + 8].copy_from_slice(&seq0.wrapping_add(from as u32).to_be_bytes());
            if i + 1 < count {
                seg[tcp + 13] &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                seg[tcp + 13] &= !TCP_CWR;
            }
            l4_csum(seg, self.inner_ip, tcp, PROTO_TCP, TCP_CHECK);
            if let Some(udp) = self.outer_udp {
                fix_ip(seg, 0, index);
                let udp_len = (len - udp.at) as u16;
                seg[udp.at + 4..udp.at + 6].copy_from_slice(&udp_len.to_be_bytes());
                if udp.csum {
                    l4_csum(seg, 0, udp.at, PROTO_UDP, UDP_CHECK);
                } else {
                    seg[udp.at + UDP_CHECK..udp.at + UDP_CHECK + 2].fill(0);
                }
            }
            emit(seg);
        }
        Ok(count)
    }
}

/// Sets the lengths of the IP header at `at` (to the end of `seg`); for
/// IPv4 also its ID (`+ index`) and header checksum.
fn fix_ip(seg: &mut [u8], at: usize, index: u16) {
    let len = seg.len() - at;
    if seg[at] >> 4 == 4 {
        let ihl = usize::from(seg[at] & 0x0f) * 4;
        seg[at + 2..at + 4].copy_from_slice(&(len as u16).to_be_bytes());
        let id = u16::from_be_bytes([seg[at + 4], seg[at + 5]]).wrapping_add(index);
        seg[at + 4..at + 6].copy_from_slice(&id.to_be_bytes());
        seg[at + 10..at + 12].fill(0);
        let csum = !fold(sum(&seg[at..at + ihl.max(20)], 0));
        seg[at + 10..at + 12].copy_from_slice(&csum.to_be_bytes());
    } else {
        seg[at + 4..at + 6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    }
}

/// Computes the TCP or UDP checksum (field at `l4 + check`) of the segment
/// from `l4` to the end, with the pseudo-header of the IP header at `ip`.
fn l4_csum(seg: &mut [u8], ip: usize, l4: usize, proto: u8, check: usize) {
    seg[l4 + check..l4 + check + 2].fill(0);
    let l4_len = (seg.len() - l4) as u64;
    let addrs = if seg[ip] >> 4 == 4 {
        &seg[ip + 12..ip + 20]
    } else {
        &seg[ip + 8..ip + 40]
    };
    let pseudo = sum(addrs, u64::from(proto) + l4_len);
    let mut csum = !fold(sum(&seg[l4..], pseudo));
    if proto == PROTO_UDP && csum == 0 {
        csum = 0xffff;
    }
    seg[l4 + check..l4 + check + 2].copy_from_slice(&csum.to_be_bytes());
}

/// Completes a partial checksum as the kernel's `skb_checksum_help` does:
/// the field at `start + offset` holds the pseudo-header's sum; the
/// checksum covers everything from `start`.
fn complete_csum(pkt: &mut [u8], start: usize, offset: usize) -> Result<(), GsoError> {
    let field = start + offset;
    if field + 2 > pkt.len() {
        return Err(GsoError::Truncated);
    }
    let mut csum = !fold(sum(&pkt[start..], 0));
    if offset == UDP_CHECK && csum == 0 {
        csum = 0xffff;
    }
    pkt[field..field + 2].copy_from_slice(&csum.to_be_bytes());
    Ok(())
}

/// Adds `data` (as big-endian 16-bit words, an odd last byte padded) to the
/// one's-complement accumulator `acc`, 64 bits at a time.
pub(super) fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_be_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        let (s, carry) = acc.overflowing_add(v);
        acc = s + u64::from(carry);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        let (s, carry) = acc.overflowing_add(u64::from_be_bytes(last));
        acc = s + u64::from(carry);
    }
    acc
}

/// Folds a one's-complement accumulator to 16 bits.
pub(super) fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}
