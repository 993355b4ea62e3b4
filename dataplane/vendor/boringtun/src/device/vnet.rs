// Copyright (c) 2019 Cloudflare, Inc. All rights reserved.
// SPDX-License-Identifier: BSD-3-Clause

//! vlnet patch: the virtio-net header a TUN opened with `IFF_VNET_HDR` puts
//! before every packet it hands over (and expects before every packet it is
//! given), in its longest form (`struct virtio_net_hdr_v1_hash_tunnel`, Linux
//! 6.17+, needed for UDP-tunnel GSO), and the offloads asked of the TUN.

/// `TUN_F_CSUM`: we complete partial checksums.
pub const TUN_F_CSUM: u32 = 0x01;
/// `TUN_F_TSO4`: we take TCP/IPv4 super-packets.
pub const TUN_F_TSO4: u32 = 0x02;
/// `TUN_F_TSO6`: we take TCP/IPv6 super-packets.
pub const TUN_F_TSO6: u32 = 0x04;
/// `TUN_F_UDP_TUNNEL_GSO` (Linux 6.17+): we take super-packets inside a UDP
/// tunnel (vlnet's VXLAN).
pub const TUN_F_UDP_TUNNEL_GSO: u32 = 0x80;
/// `TUN_F_UDP_TUNNEL_GSO_CSUM`: ... whose outer UDP checksum is set.
pub const TUN_F_UDP_TUNNEL_GSO_CSUM: u32 = 0x100;

/// The offloads asked for, best first: each is tried until the kernel takes
/// one (an older kernel refuses the UDP-tunnel flags with `EINVAL`).
pub const OFFLOADS: [u32; 3] = [
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UDP_TUNNEL_GSO | TUN_F_UDP_TUNNEL_GSO_CSUM,
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
    0,
];

/// `sizeof(struct virtio_net_hdr_v1_hash_tunnel)`.
pub const VNET_HDR_LEN: usize = 24;

/// `flags`: the checksum from `csum_start` on is to be completed.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the outer UDP checksum of a UDP-tunnel super-packet is set.
pub const F_UDP_TUNNEL_CSUM: u8 = 8;

/// `gso_type`: not a super-packet.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: TCP over IPv6.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type` bit: inside a UDP tunnel over IPv4.
pub const GSO_UDP_TUNNEL_IPV4: u8 = 0x20;
/// `gso_type` bit: inside a UDP tunnel over IPv6.
pub const GSO_UDP_TUNNEL_IPV6: u8 = 0x40;
/// `gso_type` bit: the TCP super-packet has CWR set (ECN).
pub const GSO_ECN: u8 = 0x80;

/// The header's fields (little endian on the wire: TUN's default on x86 and
/// arm64, `virtio_net_hdr_v1`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    pub outer_th_offset: u16,
    pub inner_nh_offset: u16,
}

impl VnetHdr {
    /// Reads the header at the start of `buf`, `None` if it is shorter.
    pub fn parse(buf: &[u8]) -> Option<VnetHdr> {
        if buf.len() < VNET_HDR_LEN {
            return None;
        }
        let u16_at = |at: usize| u16::from_le_bytes([buf[at], buf[at + 1]]);
        Some(VnetHdr {
            flags: buf[0],
            gso_type: buf[1],
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
            outer_th_offset: u16_at(20),
            inner_nh_offset: u16_at(22),
        })
    }
}
