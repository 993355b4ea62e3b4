// Copyright (c) 2019 Cloudflare, Inc. All rights reserved.
// SPDX-License-Identifier: BSD-3-Clause

//! vlnet patch: the reverse of [`super::gso`] for what goes into the TUN:
//! consecutive decrypted segments of one TCP flow inside VXLAN over IPv4
//! (what vlnet's VTEP sends through WireGuard) are joined into one
//! UDP-tunnel GSO super-packet with its virtio-net header, so the kernel
//! carries one packet up to the VM instead of dozens; anything else passes
//! alone. Linux (6.17, 6.18) takes a UDP-tunnel GSO write only with the
//! outer transport header at `ETH_HLEN` + 20 bytes or more (it assumes an
//! Ethernet header, which a TUN packet lacks), so a joined packet's outer
//! IPv4 header carries 16 bytes of NOP options ([`PAD`]), which the
//! receiver's decapsulation strips with the rest of the outer headers.
//! Pure: no I/O; one buffer allocated up front.

use super::gso::{fold, sum};
use super::vnet::{F_NEEDS_CSUM, GSO_TCPV4, GSO_UDP_TUNNEL_IPV4, VNET_HDR_LEN};

/// The VXLAN port (RFC 7348).
const VXLAN_PORT: u16 = 4789;
/// Offsets in a VXLAN packet over IPv4 without IP options.
const OUTER_UDP: usize = 20;
const INNER_IP: usize = 50;
const TCP: usize = 70;
/// NOP options added to a joined packet's outer IPv4 header.
pub const PAD: usize = 16;
const IPV4_NOP: u8 = 1;
/// TCP flags a joined segment may carry (ACK; PSH ends a run).
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
/// Longest super-packet (its outer IPv4 total length, options included).
const MAX_LEN: usize = 65_535 - PAD;
/// Most segments in one super-packet.
const MAX_SEGMENTS: usize = 64;
/// Where the packet being built starts in the buffer: room for the
/// virtio-net header and the options before it.
const START: usize = VNET_HDR_LEN + PAD;

/// Gathers packets bound for the TUN; see the module docs.
pub struct Gro {
    buf: Box<[u8]>,
    len: usize,
    count: usize,
    /// Length of the headers (to the end of the TCP header) of the run.
    headers: usize,
    mss: usize,
    next_seq: u32,
    /// A short or PSH segment ended the run.
    closed: bool,
}

impl Default for Gro {
    fn default() -> Self {
        Gro {
            buf: vec![0u8; START + MAX_LEN].into_boxed_slice(),
            len: 0,
            count: 0,
            headers: 0,
            mss: 0,
            next_seq: 0,
            closed: false,
        }
    }
}

impl Gro {
    /// Takes one packet; `emit` gets each finished packet, virtio-net header
    /// first, ready to be written to the TUN.
    pub fn add(&mut self, pkt: &[u8], emit: &mut impl FnMut(&[u8])) {
        let headers = joinable(pkt);
        if self.count > 0 {
            if headers == Some(self.headers) && self.continues(pkt) {
                let payload = &pkt[self.headers..];
                let at = START + self.len;
                self.buf[at..at + payload.len()].copy_from_slice(payload);
                self.len += payload.len();
                self.count += 1;
                self.next_seq = self.next_seq.wrapping_add(payload.len() as u32);
                // PSH carried over, as the kernel's GRO does.
                self.buf[START + TCP + 13] |= pkt[TCP + 13] & TCP_PSH;
                self.closed = payload.len() < self.mss
                    || pkt[TCP + 13] & TCP_PSH != 0
                    || self.count == MAX_SEGMENTS;
                return;
            }
            self.flush(emit);
        }
        let len = pkt.len().min(MAX_LEN);
        self.buf[START..START + len].copy_from_slice(&pkt[..len]);
        self.len = len;
        self.count = 1;
        match headers {
            Some(headers) => {
                self.headers = headers;
                self.mss = len - headers;
                self.next_seq = seq(pkt).wrapping_add(self.mss as u32);
                self.closed = pkt[TCP + 13] & TCP_PSH != 0;
            }
            None => self.flush(emit),
        }
    }

    /// Emits what is gathered.
    pub fn flush(&mut self, emit: &mut impl FnMut(&[u8])) {
        if self.count == 0 {
            return;
        }
        if self.count > 1 {
            self.seal();
            emit(&self.buf[..START + self.len]);
        } else {
            self.buf[PAD..START].fill(0);
            emit(&self.buf[PAD..START + self.len]);
        }
        self.count = 0;
    }

    /// Whether `pkt` (joinable, with this run's header length) is the next
    /// segment of the run.
    fn continues(&self, pkt: &[u8]) -> bool {
        let payload = pkt.len() - self.headers;
        let first = &self.buf[START..START + self.headers];
        // Everything but lengths, IDs, checksums, sequence number and PSH.
        let same = |from: usize, to: usize| first[from..to] == pkt[from..to];
        !self.closed
            && payload <= self.mss
            && self.len + payload <= MAX_LEN
            && seq(pkt) == self.next_seq
            && same(0, 2)
            && same(6, 10)
            && same(12, 24)
            && same(26, INNER_IP + 2)
            && same(INNER_IP + 6, INNER_IP + 10)
            && same(INNER_IP + 12, TCP + 4)
            && same(TCP + 8, TCP + 13)
            && same(TCP + 14, TCP + 16)
            && same(TCP + 18, self.headers)
    }

    /// Moves the outer IPv4 header [`PAD`] bytes forward with NOP options
    /// after it, sets lengths and checksums (the inner TCP checksum left
    /// partial, as GSO wants it) and the virtio-net header.
    fn seal(&mut self) {
        let len = self.len;
        self.buf.copy_within(START..START + 20, VNET_HDR_LEN);
        let p = &mut self.buf[VNET_HDR_LEN..START + len];
        p[20..20 + PAD].fill(IPV4_NOP);
        p[0] = 0x40 | ((20 + PAD) / 4) as u8;
        let total = len + PAD;
        let (udp, inner, tcp) = (OUTER_UDP + PAD, INNER_IP + PAD, TCP + PAD);
        set_ipv4_len(p, 0, 20 + PAD, total);
        p[udp + 4..udp + 6].copy_from_slice(&((total - udp) as u16).to_be_bytes());
        set_ipv4_len(p, inner, 20, total - inner);
        let tcp_len = (total - tcp) as u64;
        let pseudo = fold(sum(&p[inner + 12..inner + 20], 6 + tcp_len));
        p[tcp + 16..tcp + 18].copy_from_slice(&pseudo.to_be_bytes());
        let h = &mut self.buf[..VNET_HDR_LEN];
        h.fill(0);
        h[0] = F_NEEDS_CSUM;
        h[1] = GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4;
        h[2..4].copy_from_slice(&((self.headers + PAD) as u16).to_le_bytes());
        h[4..6].copy_from_slice(&(self.mss as u16).to_le_bytes());
        h[6..8].copy_from_slice(&(tcp as u16).to_le_bytes());
        h[8..10].copy_from_slice(&16u16.to_le_bytes());
        h[20..22].copy_from_slice(&(udp as u16).to_le_bytes());
        h[22..24].copy_from_slice(&(inner as u16).to_le_bytes());
    }
}

/// The header length of `pkt` if it can be joined: IPv4 (no options, not
/// a fragment) / UDP to the VXLAN port, zero checksum / VXLAN / Ethernet /
/// IPv4 (no options, not a fragment) / TCP with only ACK (and PSH) set and
/// a payload; lengths consistent.
fn joinable(pkt: &[u8]) -> Option<usize> {
    if pkt.len() < TCP + 20 || pkt.len() > MAX_LEN {
        return None;
    }
    let be16 = |at: usize| u16::from_be_bytes([pkt[at], pkt[at + 1]]);
    let headers = TCP + usize::from(pkt[TCP + 12] >> 4) * 4;
    let ok = pkt[0] == 0x45
        && be16(6) & 0x3fff == 0
        && pkt[9] == 17
        && usize::from(be16(2)) == pkt.len()
        && be16(OUTER_UDP + 2) == VXLAN_PORT
        && be16(OUTER_UDP + 6) == 0
        && be16(INNER_IP - 2) == 0x0800
        && pkt[INNER_IP] == 0x45
        && be16(INNER_IP + 6) & 0x3fff == 0
        && pkt[INNER_IP + 9] == 6
        && usize::from(be16(INNER_IP + 2)) == pkt.len() - INNER_IP
        && pkt[TCP + 13] & !TCP_PSH == TCP_ACK
        && headers >= TCP + 20
        && pkt.len() > headers;
    ok.then_some(headers)
}

fn seq(pkt: &[u8]) -> u32 {
    u32::from_be_bytes([pkt[TCP + 4], pkt[TCP + 5], pkt[TCP + 6], pkt[TCP + 7]])
}

/// Sets the total length and the header checksum of the IPv4 header of
/// `ihl` bytes at `at`.
fn set_ipv4_len(p: &mut [u8], at: usize, ihl: usize, len: usize) {
    p[at + 2..at + 4].copy_from_slice(&(len as u16).to_be_bytes());
    p[at + 10..at + 12].fill(0);
    let csum = !fold(sum(&p[at..at + ihl], 0));
    p[at + 10..at + 12].copy_from_slice(&csum.to_be_bytes());
}
