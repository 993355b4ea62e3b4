//! ECN at decapsulation, every cell of RFC 6040 section 4.2 (Figure 4) for
//! an inner IPv4 and IPv6 packet, through vlnet's TC and XDP entry points
//! and through the kernel's own vxlan device in the same run.

use super::support::frames::{self, VM_B_MAC};
use super::support::packet_socket::PacketSocket;
use super::support::vtep_bed::{both_modes, verdicts, Bed, Mode, LOCAL, PEER};

const NOT_ECT: u8 = 0;
const ECT_1: u8 = 1;
const ECT_0: u8 = 2;
const CE: u8 = 3;
const NAMES: [&str; 4] = ["Not-ECT", "ECT(1)", "ECT(0)", "CE"];

/// RFC 6040 Figure 4, indexed `[inner][outer]` by codepoint (0 Not-ECT,
/// 1 ECT(1), 2 ECT(0), 3 CE): the inner field after decapsulation, or
/// `None` for a drop. The Not-ECT row under ECT(0)/ECT(1) is the RFC's
/// "(!!!)" cell: forwarded unchanged, as the kernel does.
const EXPECTED: [[Option<u8>; 4]; 4] = [
    [Some(NOT_ECT), Some(NOT_ECT), Some(NOT_ECT), None],
    [Some(ECT_1), Some(ECT_1), Some(ECT_1), Some(CE)],
    [Some(ECT_0), Some(ECT_1), Some(ECT_0), Some(CE)],
    [Some(CE), Some(CE), Some(CE), Some(CE)],
];

/// DSCP of the inner and of the outer packet (they must not leak).
const INNER_DSCP: u8 = 46;
const OUTER_DSCP: u8 = 10;

/// The inner frame of one cell: IPv4 or IPv6 with `ecn`, marked with `cell`
/// (in the IPv4 ID or the IPv6 flow label) so the kernel's output can be
/// matched to its input.
fn inner_frame(v6: bool, ecn: u8, cell: u8) -> Vec<u8> {
    let tos = (INNER_DSCP << 2) | ecn;
    if v6 {
        let mut f = frames::inner_ipv6(VM_B_MAC, tos);
        f[14 + 3] = cell;
        f
    } else {
        let mut f = frames::inner_udp(VM_B_MAC, tos, 10);
        f[14 + 5] = cell;
        frames::fix_ipv4_checksum(&mut f, 14);
        f
    }
}

/// The ECN field and DSCP of an inner frame.
fn ecn_and_dscp(frame: &[u8]) -> (u8, u8) {
    let tos = if frame[12..14] == [0x86, 0xdd] {
        (frame[14] << 4) | (frame[15] >> 4)
    } else {
        frame[15]
    };
    (tos & 3, tos >> 2)
}

/// Every (family, inner, outer) cell with its input frame.
fn cells() -> Vec<(bool, u8, u8, Vec<u8>)> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        for inner in 0..4u8 {
            for outer in 0..4u8 {
                let cell = u8::from(v6) * 16 + inner * 4 + outer;
                let tos = (OUTER_DSCP << 2) | outer;
                let frame = frames::vxlan(PEER, LOCAL, 100, tos, &inner_frame(v6, inner, cell));
                out.push((v6, inner, outer, frame));
            }
        }
    }
    out
}

/// What a decapsulated frame must be for its cell: the input's inner frame
/// with only the ECN field changed (and the IPv4 checksum still valid).
fn check_output(v6: bool, inner: u8, outer: u8, input: &[u8], out: &[u8], who: &str) {
    let cell = format!(
        "{who}, IPv{}, inner {} outer {}",
        if v6 { 6 } else { 4 },
        NAMES[inner as usize],
        NAMES[outer as usize]
    );
    let expected = EXPECTED[inner as usize][outer as usize].unwrap();
    assert_eq!(ecn_and_dscp(out), (expected, INNER_DSCP), "{cell}");
    let sent = &input[frames::off::INNER..];
    assert_eq!(out.len(), sent.len(), "{cell}");
    let differ: Vec<usize> = (0..out.len()).filter(|&i| out[i] != sent[i]).collect();
    let allowed: &[usize] = if v6 { &[14, 15] } else { &[15, 24, 25] };
    assert!(
        differ.iter().all(|i| allowed.contains(i)),
        "{cell}: bytes {differ:?} changed"
    );
    if !v6 {
        assert_eq!(frames::checksum(&out[14..34]), 0, "{cell}: IPv4 checksum");
    }
}

fn every_cell_of_rfc6040s_decap_table(mode: Mode) {
    let mut bed = Bed::new("ecn");
    let (_, drop, redirect) = verdicts(mode);
    let mut drops = 0;
    for (v6, inner, outer, frame) in cells() {
        let (ret, out) = bed.decap(mode, &frame);
        if EXPECTED[inner as usize][outer as usize].is_none() {
            drops += 1;
            assert_eq!(ret, drop, "IPv6 {v6}, inner {inner} outer {outer}: dropped");
            assert_eq!(bed.drops("ecn_not_ect"), drops);
        } else {
            assert_eq!(ret, redirect, "IPv6 {v6}, inner {inner} outer {outer}");
            check_output(v6, inner, outer, &frame, &out, &format!("{mode:?}"));
        }
    }
    assert_eq!(drops, 2, "one cell per family drops");
    assert_eq!(bed.total_drops(), drops);
}

both_modes!(every_cell_of_rfc6040s_decap_table);

/// The kernel's vxlan device (what Proxmox runs) decapsulates the same 32
/// cells: received on `ul0`, its output read on the device. Its table must
/// be [`EXPECTED`], the one vlnet is held to above.
#[test]
fn the_kernels_vxlan_applies_the_same_table() {
    let bed = Bed::new("ecnk");
    bed.ns.sh(
        "ip link add vx100 type vxlan id 100 local 198.18.0.1 remote 198.18.0.2 dstport 4789 \
         dev ul0 && ip link set vx100 up",
    );
    let capture = PacketSocket::bind(bed.ns.ifindex("vx100"));
    let inject = PacketSocket::bind(bed.ns.ifindex("ul1"));
    let ul0_mac = bed.ns.mac("ul0");
    let cells = cells();
    for (_, _, _, frame) in &cells {
        let mut frame = frame.clone();
        frame[..6].copy_from_slice(&ul0_mac);
        inject.send(&frame);
    }
    let mut seen = std::collections::BTreeMap::new();
    while let Some(out) = capture.try_recv() {
        // IPv4 ID low byte, or the IPv6 flow label's last byte.
        let (is_v6, at) = if out[12..14] == [0x86, 0xdd] {
            (true, 14 + 3)
        } else if out[12..14] == [0x08, 0x00] {
            (false, 14 + 5)
        } else {
            continue;
        };
        if out.len() > at && out[..6] == VM_B_MAC {
            seen.insert((is_v6, out[at]), out);
        }
    }
    for (v6, inner, outer, frame) in &cells {
        let cell = u8::from(*v6) * 16 + inner * 4 + outer;
        match (
            EXPECTED[*inner as usize][*outer as usize],
            seen.get(&(*v6, cell)),
        ) {
            (None, None) => {}
            (None, Some(_)) => panic!("kernel forwarded IPv6 {v6} inner {inner} outer {outer}"),
            (Some(_), None) => panic!("kernel dropped IPv6 {v6} inner {inner} outer {outer}"),
            (Some(_), Some(out)) => check_output(*v6, *inner, *outer, frame, out, "kernel"),
        }
    }
}
