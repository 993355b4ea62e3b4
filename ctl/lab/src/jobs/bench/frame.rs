//! The frames the small-packet generator sends: a minimal Ethernet/IPv4/UDP
//! frame, and the same frame wrapped in VXLAN as a remote VTEP would send it.
//! Pure byte building, unit-tested without a network.

use std::net::Ipv4Addr;

use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, UdpHeader};
use vlnet_ebpf::abi::{VLNET_ENCAP_LEN, VLNET_VXLAN_PORT};

/// Bytes of a minimum Ethernet frame without its FCS (64 on the wire).
pub const MIN_FRAME_LEN: usize = 60;
/// UDP port the frames go to (discard: nobody listens, the stack counts
/// each one as `Udp NoPorts`).
pub const SINK_PORT: u16 = 9;
/// UDP source port of the test frames (inner and outer).
pub const SOURCE_PORT: u16 = 49_152;

const ETH_HLEN: usize = Ethernet2Header::LEN;
const IPV4_HLEN: usize = Ipv4Header::MIN_LEN;
const UDP_HLEN: usize = UdpHeader::LEN;
/// The VXLAN header: what the encapsulation adds beyond outer Ethernet,
/// IPv4 and UDP.
const VXLAN_HLEN: usize = VLNET_ENCAP_LEN as usize - ETH_HLEN - IPV4_HLEN - UDP_HLEN;
const TTL: u8 = 64;
/// VXLAN flags word with only the I (valid VNI) flag (RFC 7348 §5).
const VXLAN_FLAG_I: u32 = 0x0800_0000;

/// Layer 2–4 addresses of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// IPv4 source.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
}

/// An Ethernet/IPv4/UDP frame of `len` bytes (at least 42), the payload
/// zero-filled; IPv4 header checksum filled in, UDP checksum 0 ("none",
/// allowed over IPv4).
#[must_use]
pub fn udp_frame(ep: &Endpoints, len: usize) -> Vec<u8> {
    let len = len.max(ETH_HLEN + IPV4_HLEN + UDP_HLEN);
    let mut f = Vec::with_capacity(len);
    push_eth(&mut f, ep);
    push_ipv4_udp(&mut f, ep, len - ETH_HLEN);
    f.resize(len, 0);
    f
}

/// `inner` encapsulated as a VTEP sends it: outer Ethernet/IPv4/UDP (to
/// `outer.dst_port`, normally 4789, checksum 0) and a VXLAN header with `vni`.
#[must_use]
pub fn vxlan_frame(outer: &Endpoints, vni: u32, inner: &[u8]) -> Vec<u8> {
    let ip_len = IPV4_HLEN + UDP_HLEN + VXLAN_HLEN + inner.len();
    let mut f = Vec::with_capacity(ETH_HLEN + ip_len);
    push_eth(&mut f, outer);
    push_ipv4_udp(&mut f, outer, ip_len);
    f.extend_from_slice(&VXLAN_FLAG_I.to_be_bytes());
    f.extend_from_slice(&(vni << 8).to_be_bytes());
    f.extend_from_slice(inner);
    f
}

/// [`Endpoints`] of an outer header to the VXLAN port.
#[must_use]
pub fn vxlan_endpoints(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
) -> Endpoints {
    Endpoints {
        src_mac,
        dst_mac,
        src_ip,
        dst_ip,
        src_port: SOURCE_PORT,
        dst_port: VLNET_VXLAN_PORT as u16,
    }
}

fn push_eth(f: &mut Vec<u8>, ep: &Endpoints) {
    f.extend_from_slice(&ep.dst_mac);
    f.extend_from_slice(&ep.src_mac);
    f.extend_from_slice(&EtherType::IPV4.0.to_be_bytes());
}

/// IPv4 header (total length `ip_len`) then a UDP header; the caller appends
/// the UDP payload.
fn push_ipv4_udp(f: &mut Vec<u8>, ep: &Endpoints, ip_len: usize) {
    let ip_start = f.len();
    let total = u16::try_from(ip_len).unwrap_or(u16::MAX);
    f.push(0x45); // version 4, IHL 5
    f.push(0); // DSCP/ECN
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0]); // id 0, DF
    f.push(TTL);
    f.push(IpNumber::UDP.0);
    f.extend_from_slice(&[0, 0]); // checksum, below
    f.extend_from_slice(&ep.src_ip.octets());
    f.extend_from_slice(&ep.dst_ip.octets());
    let csum = internet_checksum(&f[ip_start..]);
    f[ip_start + 10..ip_start + 12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&ep.src_port.to_be_bytes());
    f.extend_from_slice(&ep.dst_port.to_be_bytes());
    f.extend_from_slice(&(total - IPV4_HLEN as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum
}

/// The Internet checksum (RFC 1071) of `bytes`: fill it into an IPv4 header
/// whose checksum field is zero; over a header with a valid checksum it is 0.
#[must_use]
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner() -> Endpoints {
        Endpoints {
            src_mac: [2, 0, 0, 0, 1, 1],
            dst_mac: [2, 0, 0, 0, 1, 2],
            src_ip: Ipv4Addr::new(192, 0, 2, 1),
            dst_ip: Ipv4Addr::new(192, 0, 2, 2),
            src_port: SOURCE_PORT,
            dst_port: SINK_PORT,
        }
    }

    #[test]
    fn udp_frame_is_minimal_and_valid() {
        let f = udp_frame(&inner(), MIN_FRAME_LEN);
        assert_eq!(f.len(), MIN_FRAME_LEN);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        // A valid IPv4 header sums (with its checksum) to 0xffff: complement 0.
        assert_eq!(internet_checksum(&f[14..34]), 0);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 46); // 60 - 14
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), SINK_PORT);
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 26); // 46 - 20
    }

    #[test]
    fn vxlan_frame_wraps_the_inner_frame() {
        let inner_frame = udp_frame(&inner(), MIN_FRAME_LEN);
        let outer = vxlan_endpoints(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv4Addr::new(198, 18, 0, 2),
        );
        let f = vxlan_frame(&outer, 100, &inner_frame);
        assert_eq!(f.len(), 50 + MIN_FRAME_LEN);
        assert_eq!(internet_checksum(&f[14..34]), 0);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 96); // 110 - 14
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 4789);
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 76);
        assert_eq!(&f[42..50], &[0x08, 0, 0, 0, 0, 0, 100, 0]);
        assert_eq!(&f[50..], &inner_frame[..]);
    }
}
