//! Per-flow latency tracking (`ebpf/c/lib/flows.h`) driven through
//! `BPF_PROG_TEST_RUN`: inner frames leave the local VM A through
//! `tc_overlay_tx`, come back from the remote VM B through a decap entry point
//! (TC or XDP), and the flow, stamp and histogram maps must say exactly what
//! happened. Needs root (loads BPF, creates `vlt-` namespaces).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::net::Ipv6Addr;
use std::thread::sleep;
use std::time::Duration;

use aya::maps::HashMap;
use etherparse::{PacketBuilder, TcpOptionElement};
use support::frames::{self, VM_A_IP, VM_A_MAC, VM_B_IP, VM_B_MAC};
use support::vtep_bed::{both_modes, verdicts, Bed, Mode, LOCAL, PEER, TC_ACT_REDIRECT};
use vlnet_dataplane::fdb::monotonic_ns;
use vlnet_dataplane::maps::{fdb_key, peer_key};
use vlnet_ebpf::abi::{
    __sk_buff, vlnet_fdb_entry, vlnet_flow, vlnet_flow_key, vlnet_rtt_hist, vlnet_rtt_ident,
    VLNET_FAMILY_IPV4, VLNET_FAMILY_IPV6, VLNET_FDB_STATIC, VLNET_FLOW_HAVE_TSVAL,
    VLNET_IDENT_ICMP_ECHO, VLNET_IDENT_TCP_SYN, VLNET_IDENT_TCP_TSVAL, VLNET_RTT_BUCKETS,
    VLNET_RTT_MAX_AGE_NS, VLNET_RTT_STAMP_GAP_NS,
};

const VNI: u32 = 100;
/// VM A's and VM B's IPv6 addresses (documentation prefix, RFC 3849).
const VM_A_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa);
const VM_B_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xb);
/// VM B's TCP port every test flow talks to; VM A's port tells the flows apart.
const SERVICE_PORT: u16 = 80;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const MS: u64 = 1_000_000;
/// `VLNET_RTT_STAMP_GAP_NS`, which bindgen types as the `u32` it fits.
const GAP_NS: u64 = VLNET_RTT_STAMP_GAP_NS as u64;

/// Which way an inner frame goes.
#[derive(Clone, Copy, Debug)]
enum Dir {
    /// From VM A (behind this VTEP) into the tunnel.
    Tx,
    /// From VM B (behind `PEER`) out of the tunnel.
    Rx,
}

/// Ethernet and IPv4 source and destination of a frame going `dir`.
fn v4_ends(dir: Dir) -> ([u8; 6], [u8; 6], [u8; 4], [u8; 4]) {
    match dir {
        Dir::Tx => (VM_A_MAC, VM_B_MAC, VM_A_IP.octets(), VM_B_IP.octets()),
        Dir::Rx => (VM_B_MAC, VM_A_MAC, VM_B_IP.octets(), VM_A_IP.octets()),
    }
}

/// What a TCP segment of a test flow carries.
#[derive(Clone, Copy, Default)]
struct Segment {
    syn: bool,
    ack: Option<u32>,
    seq: u32,
    /// `(TSval, TSecr)`.
    ts: Option<(u32, u32)>,
    payload: usize,
}

impl Segment {
    /// 100 bytes of data with TSval `tsval`.
    fn data(tsval: u32) -> Self {
        Self {
            ack: Some(1),
            ts: Some((tsval, 1)),
            payload: 100,
            ..Self::default()
        }
    }

    /// A pure ACK echoing `tsecr`.
    fn echo(tsecr: u32) -> Self {
        Self {
            ack: Some(1),
            ts: Some((7, tsecr)),
            ..Self::default()
        }
    }
}

/// The inner frame of `seg` on the TCP flow between VM A's `port` and VM
/// B's [`SERVICE_PORT`], going `dir`. A SYN carries Linux's options (the
/// timestamp after MSS and SACK-permitted); others NOP, NOP, timestamp.
fn tcp_frame(dir: Dir, port: u16, seg: Segment) -> Vec<u8> {
    let (smac, dmac, src, dst) = v4_ends(dir);
    let (sport, dport) = match dir {
        Dir::Tx => (port, SERVICE_PORT),
        Dir::Rx => (SERVICE_PORT, port),
    };
    let mut b = PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seg.seq, 65535);
    if seg.syn {
        b = b.syn();
    }
    if let Some(n) = seg.ack {
        b = b.ack(n);
    }
    let mut options = Vec::new();
    if seg.syn {
        options.extend([
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
        ]);
    } else if seg.ts.is_some() {
        options.extend([TcpOptionElement::Noop, TcpOptionElement::Noop]);
    }
    if let Some((tsval, tsecr)) = seg.ts {
        options.push(TcpOptionElement::Timestamp(tsval, tsecr));
    }
    if seg.syn {
        options.extend([TcpOptionElement::Noop, TcpOptionElement::WindowScale(7)]);
    }
    b = b.options(&options).unwrap();
    let mut frame = Vec::new();
    b.write(&mut frame, &vec![0x5a; seg.payload]).unwrap();
    frame
}

/// An ICMP echo request (tx) or reply (rx) between the VMs.
fn icmp_echo(dir: Dir, id: u16, seq: u16) -> Vec<u8> {
    let (smac, dmac, src, dst) = v4_ends(dir);
    let ip = PacketBuilder::ethernet2(smac, dmac).ipv4(src, dst, 64);
    let b = match dir {
        Dir::Tx => ip.icmpv4_echo_request(id, seq),
        Dir::Rx => ip.icmpv4_echo_reply(id, seq),
    };
    let mut frame = Vec::new();
    b.write(&mut frame, &[0x5a; 56]).unwrap();
    frame
}

/// An ICMPv6 echo request (tx) or reply (rx) between the VMs.
fn icmpv6_echo(dir: Dir, id: u16, seq: u16) -> Vec<u8> {
    let (smac, dmac, src, dst) = match dir {
        Dir::Tx => (VM_A_MAC, VM_B_MAC, VM_A_IP6, VM_B_IP6),
        Dir::Rx => (VM_B_MAC, VM_A_MAC, VM_B_IP6, VM_A_IP6),
    };
    let ip = PacketBuilder::ethernet2(smac, dmac).ipv6(src.octets(), dst.octets(), 64);
    let b = match dir {
        Dir::Tx => ip.icmpv6_echo_request(id, seq),
        Dir::Rx => ip.icmpv6_echo_reply(id, seq),
    };
    let mut frame = Vec::new();
    b.write(&mut frame, &[0x5a; 56]).unwrap();
    frame
}

/// A bed whose FDB places VM B behind `PEER`, so tx knows the remote VTEP.
fn flow_bed(tag: &str) -> Bed {
    let mut bed = Bed::new(tag);
    let entry = vlnet_fdb_entry {
        vtep_be: u32::from(PEER).to_be(),
        flags: VLNET_FDB_STATIC,
        updated_ns: 0,
    };
    bed.maps.set_fdb(&fdb_key(VNI, VM_B_MAC), &entry).unwrap();
    bed
}

/// Sends `frame` `dir`: tx into VNI 100's overlay port, rx as VXLAN from
/// `PEER` through `mode`'s decap. It must be forwarded; returns the result.
fn pass(bed: &mut Bed, mode: Mode, dir: Dir, frame: &[u8]) -> Vec<u8> {
    let (want, (ret, out)) = match dir {
        Dir::Tx => (TC_ACT_REDIRECT, bed.encap(frame)),
        Dir::Rx => (
            verdicts(mode).2,
            bed.decap(mode, &frames::vxlan(PEER, LOCAL, VNI, 0, frame)),
        ),
    };
    assert_eq!(ret, want, "{dir:?} not forwarded: {:?}", bed.maps.drops());
    out
}

/// Sends segment `seg` of the TCP flow with VM A's `port` from VM A.
fn tx(bed: &mut Bed, port: u16, seg: Segment) {
    pass(bed, Mode::Tc, Dir::Tx, &tcp_frame(Dir::Tx, port, seg));
}

/// Sends segment `seg` of the TCP flow with VM A's `port` from VM B,
/// decapsulated by `mode`'s entry point.
fn rx(bed: &mut Bed, mode: Mode, port: u16, seg: Segment) {
    pass(bed, mode, Dir::Rx, &tcp_frame(Dir::Rx, port, seg));
}

/// Key of an IPv4 flow of VM A's `local_port` with VM B's `remote_port`.
fn key_v4(proto: u8, local_port: u16, remote_port: u16) -> vlnet_flow_key {
    let mut key = vlnet_flow_key {
        vni: VNI,
        local_port_be: local_port.to_be(),
        remote_port_be: remote_port.to_be(),
        proto,
        family: VLNET_FAMILY_IPV4 as u8,
        ..Default::default()
    };
    key.local_ip[..4].copy_from_slice(&VM_A_IP.octets());
    key.remote_ip[..4].copy_from_slice(&VM_B_IP.octets());
    key
}

/// Key of the TCP flow of [`tcp_frame`] with VM A's `port`.
fn tcp_key(port: u16) -> vlnet_flow_key {
    key_v4(IPPROTO_TCP, port, SERVICE_PORT)
}

/// The entry of flow `key`.
fn flow(bed: &Bed, key: &vlnet_flow_key) -> vlnet_flow {
    let flows = bed.maps.flows();
    match flows.iter().find(|(k, _)| k == key) {
        Some((_, f)) => *f,
        None => panic!("no flow {key:?} among {flows:?}"),
    }
}

/// The RTT histogram of (VNI 100, `PEER`); empty when there is none.
fn histogram(bed: &Bed) -> vlnet_rtt_hist {
    bed.maps
        .rtt_histograms()
        .into_iter()
        .find(|(k, _)| *k == peer_key(VNI, PEER))
        .map(|(_, h)| h)
        .unwrap_or_default()
}

/// The histogram bucket of an RTT, as `vlnet_abi.h` defines them.
fn bucket(rtt_ns: u64) -> usize {
    let us = rtt_ns / 1000;
    let log2 = if us < 2 { 0 } else { us.ilog2() as usize };
    log2.min(VLNET_RTT_BUCKETS as usize - 1)
}

/// The bed's `vlnet_flow_stamps` (the daemon has no use for it, so `Maps`
/// does not hold it).
fn stamp_map(bed: &mut Bed) -> HashMap<&mut aya::maps::MapData, vlnet_rtt_ident, u64> {
    let map = bed
        .programs
        .ebpf_mut()
        .map_mut("vlnet_flow_stamps")
        .unwrap();
    HashMap::try_from(map).unwrap()
}

/// The stamps of flow `key` awaiting their echo, as `(ident, kind)`, sorted.
fn open_stamps(bed: &mut Bed, key: &vlnet_flow_key) -> Vec<(u32, u8)> {
    let mut open: Vec<(u32, u8)> = stamp_map(bed)
        .keys()
        .map(Result::unwrap)
        .filter(|id| id.flow == *key)
        .map(|id| (id.ident, id.kind))
        .collect();
    open.sort_unstable();
    open
}

/// Key of a stamp of flow `key`.
fn ident(key: &vlnet_flow_key, ident: u32, kind: u32) -> vlnet_rtt_ident {
    vlnet_rtt_ident {
        flow: *key,
        ident,
        kind: kind as u8,
        ..Default::default()
    }
}

const TSVAL: u8 = VLNET_IDENT_TCP_TSVAL as u8;

fn timestamp_echo_closes_one_sample(mode: Mode) {
    let mut bed = flow_bed("flecho");
    let key = tcp_key(40001);
    let out = tcp_frame(Dir::Tx, 40001, Segment::data(1000));
    let back = tcp_frame(Dir::Rx, 40001, Segment::echo(1000));
    pass(&mut bed, mode, Dir::Tx, &out);
    assert_eq!(open_stamps(&mut bed, &key), [(1000, TSVAL)]);
    sleep(Duration::from_millis(5));
    pass(&mut bed, mode, Dir::Rx, &back);

    assert_eq!(bed.maps.flows().len(), 1, "both directions are one flow");
    let f = flow(&bed, &key);
    assert_eq!(f.rtt_samples, 1);
    let rtt = f.rtt_last_ns;
    assert!((4 * MS..1000 * MS).contains(&rtt), "RTT {rtt} ns");
    assert_eq!(
        (f.rtt_min_ns, f.srtt_ns),
        (rtt, rtt),
        "first sample sets all"
    );
    assert_eq!(f.local_mac, VM_A_MAC);
    assert_eq!(f.remote_vtep_be, u32::from(PEER).to_be());
    assert_eq!(
        (f.tx_packets, f.tx_bytes, f.rx_packets, f.rx_bytes),
        (1, out.len() as u64, 1, back.len() as u64)
    );
    assert!(0 < f.first_seen_ns && f.first_seen_ns < f.last_seen_ns);
    assert_eq!((f.last_tsval, f.flags), (1000, VLNET_FLOW_HAVE_TSVAL as u8));
    assert_eq!(f.open_stamp_ns, 0, "the echo closed the open stamp");
    let h = histogram(&bed);
    assert_eq!(h.count.iter().sum::<u64>(), 1);
    assert_eq!(h.count[bucket(rtt)], 1, "bucket of {rtt} ns: {:?}", h.count);
    assert_eq!(h.sum_ns, rtt);

    assert!(
        open_stamps(&mut bed, &key).is_empty(),
        "the echo took the stamp"
    );
    pass(&mut bed, mode, Dir::Rx, &back);
    let f = flow(&bed, &key);
    assert_eq!(
        (f.rtt_samples, f.rx_packets),
        (1, 2),
        "a second echo closes nothing"
    );
    assert_eq!(histogram(&bed).sum_ns, rtt);
}

both_modes!(timestamp_echo_closes_one_sample);

fn retransmission_is_timed_from_the_first_send(mode: Mode) {
    let mut bed = flow_bed("flretx");
    let out = tcp_frame(Dir::Tx, 40002, Segment::data(5000));
    pass(&mut bed, mode, Dir::Tx, &out);
    sleep(Duration::from_millis(20));
    pass(&mut bed, mode, Dir::Tx, &out);
    rx(&mut bed, mode, 40002, Segment::echo(5000));
    let f = flow(&bed, &tcp_key(40002));
    assert_eq!((f.tx_packets, f.rtt_samples), (2, 1));
    assert!(f.rtt_last_ns >= 20 * MS, "RTT {} ns", f.rtt_last_ns);
}

both_modes!(retransmission_is_timed_from_the_first_send);

fn reordered_older_tsval_is_not_stamped(mode: Mode) {
    let mut bed = flow_bed("flreord");
    let key = tcp_key(40003);
    tx(&mut bed, 40003, Segment::data(2010));
    rx(&mut bed, mode, 40003, Segment::echo(2010));
    assert_eq!(flow(&bed, &key).rtt_samples, 1);
    // Nothing is open now, so only the order can keep 2000 from a stamp.
    tx(&mut bed, 40003, Segment::data(2000));
    assert!(open_stamps(&mut bed, &key).is_empty());
    rx(&mut bed, mode, 40003, Segment::echo(2000));
    let f = flow(&bed, &key);
    assert_eq!((f.rtt_samples, f.last_tsval), (1, 2010));
}

both_modes!(reordered_older_tsval_is_not_stamped);

/// A TSval that wrapped is newer; the second sample smooths the first.
fn wrapped_tsval_is_newer(mode: Mode) {
    let mut bed = flow_bed("flwrap");
    let key = tcp_key(40004);
    let mut first = 0;
    for (tsval, samples) in [(0xffff_fff0, 1), (0x0000_0010, 2)] {
        tx(&mut bed, 40004, Segment::data(tsval));
        assert_eq!(open_stamps(&mut bed, &key), [(tsval, TSVAL)]);
        rx(&mut bed, mode, 40004, Segment::echo(tsval));
        let f = flow(&bed, &key);
        assert_eq!((f.rtt_samples, f.last_tsval), (samples, tsval));
        if samples == 1 {
            first = f.rtt_last_ns;
            continue;
        }
        let second = f.rtt_last_ns;
        // srtt += (sample - srtt) / 8, the division rounding towards zero.
        let delta = (i128::from(second) - i128::from(first)) / 8;
        let srtt = u64::try_from(i128::from(first) + delta).unwrap();
        assert_eq!((f.srtt_ns, f.rtt_min_ns), (srtt, first.min(second)));
    }
}

both_modes!(wrapped_tsval_is_newer);

/// Flows whose frames carry nothing to time are counted, never sampled:
/// TCP without timestamps, UDP, and a pure ACK's TSval (not stamped, as in
/// ePPing: its echo may wait for the peer's next data).
fn untimed_frames_are_counted_not_sampled(mode: Mode) {
    let mut bed = flow_bed("flnots");
    let plain = Segment {
        ack: Some(1),
        payload: 100,
        ..Segment::default()
    };
    tx(&mut bed, 40005, plain);
    rx(&mut bed, mode, 40005, plain);
    let pure_ack = Segment {
        ack: Some(1),
        ts: Some((3000, 1)),
        ..Segment::default()
    };
    tx(&mut bed, 40006, pure_ack);
    rx(&mut bed, mode, 40006, Segment::echo(3000));
    let udp = frames::inner_udp(VM_B_MAC, 0, 20);
    pass(&mut bed, mode, Dir::Tx, &udp);

    for (key, tx, rx) in [
        (tcp_key(40005), 1, 1),
        (tcp_key(40006), 1, 1),
        (key_v4(IPPROTO_UDP, 1234, 5678), 1, 0),
    ] {
        let f = flow(&bed, &key);
        assert_eq!(
            (f.tx_packets, f.rx_packets, f.rtt_samples),
            (tx, rx, 0),
            "{key:?}"
        );
        assert!(open_stamps(&mut bed, &key).is_empty(), "{key:?}");
    }
    assert!(bed.maps.rtt_histograms().is_empty());
}

both_modes!(untimed_frames_are_counted_not_sampled);

/// The SYN-ACK acknowledges the SYN and echoes its TSval: one sample.
fn syn_to_syn_ack_is_one_sample(mode: Mode) {
    let mut bed = flow_bed("flsyn");
    let key = tcp_key(40007);
    let syn = Segment {
        syn: true,
        seq: 77_000,
        ts: Some((9000, 0)),
        ..Segment::default()
    };
    tx(&mut bed, 40007, syn);
    assert_eq!(
        open_stamps(&mut bed, &key),
        [(77_001, VLNET_IDENT_TCP_SYN as u8)]
    );
    sleep(Duration::from_millis(2));
    let syn_ack = |ack| Segment {
        syn: true,
        ack: Some(ack),
        seq: 5,
        ts: Some((123, 9000)),
        ..Segment::default()
    };
    rx(&mut bed, mode, 40007, syn_ack(99));
    assert_eq!(flow(&bed, &key).rtt_samples, 0, "acknowledges another SYN");
    rx(&mut bed, mode, 40007, syn_ack(77_001));
    let f = flow(&bed, &key);
    assert_eq!(f.rtt_samples, 1);
    assert!(f.rtt_last_ns >= 2 * MS, "RTT {} ns", f.rtt_last_ns);
}

both_modes!(syn_to_syn_ack_is_one_sample);

/// An echo request and its reply (ICMP or ICMPv6, by `echo`) make one sample
/// on the flow `key`; a reply with another sequence number none.
fn echo_reply_is_one_sample(
    mode: Mode,
    tag: &str,
    echo: fn(Dir, u16, u16) -> Vec<u8>,
    key: &vlnet_flow_key,
) {
    let mut bed = flow_bed(tag);
    pass(&mut bed, mode, Dir::Tx, &echo(Dir::Tx, 0x4242, 1));
    assert_eq!(
        open_stamps(&mut bed, key),
        [(0x4242_0001, VLNET_IDENT_ICMP_ECHO as u8)]
    );
    sleep(Duration::from_millis(2));
    pass(&mut bed, mode, Dir::Rx, &echo(Dir::Rx, 0x4242, 2));
    assert_eq!(flow(&bed, key).rtt_samples, 0, "reply to another request");
    pass(&mut bed, mode, Dir::Rx, &echo(Dir::Rx, 0x4242, 1));
    let f = flow(&bed, key);
    assert_eq!((f.tx_packets, f.rx_packets, f.rtt_samples), (1, 2, 1));
    assert!(f.rtt_last_ns >= 2 * MS, "RTT {} ns", f.rtt_last_ns);
    assert_eq!(f.local_mac, VM_A_MAC);
}

fn icmp_echo_reply_is_one_sample(mode: Mode) {
    let key = key_v4(IPPROTO_ICMP, 0x4242, 0x4242);
    echo_reply_is_one_sample(mode, "flicmp", icmp_echo, &key);
}

both_modes!(icmp_echo_reply_is_one_sample);

fn icmpv6_echo_reply_is_one_sample(mode: Mode) {
    let key = vlnet_flow_key {
        vni: VNI,
        local_ip: VM_A_IP6.octets(),
        remote_ip: VM_B_IP6.octets(),
        local_port_be: 0x4242u16.to_be(),
        remote_port_be: 0x4242u16.to_be(),
        proto: IPPROTO_ICMPV6,
        family: VLNET_FAMILY_IPV6 as u8,
        ..Default::default()
    };
    echo_reply_is_one_sample(mode, "flicmp6", icmpv6_echo, &key);
}

both_modes!(icmpv6_echo_reply_is_one_sample);

/// A stamp older than `VLNET_RTT_MAX_AGE_NS` is taken by its echo but closes
/// no sample; a young one written the same way does (so the test's key is
/// the one the program looks up). The flow sends TSval 222 first, so that it
/// has a stamp open, as it would when an old stamp is still in the map.
fn stale_stamp_closes_no_sample(mode: Mode) {
    let mut bed = flow_bed("flstale");
    let key = tcp_key(40008);
    tx(&mut bed, 40008, Segment::data(222));
    let now = monotonic_ns();
    let mut stamps = stamp_map(&mut bed);
    stamps
        .insert(
            ident(&key, 111, VLNET_IDENT_TCP_TSVAL),
            now - VLNET_RTT_MAX_AGE_NS - 1000 * MS,
            0,
        )
        .unwrap();
    stamps
        .insert(ident(&key, 222, VLNET_IDENT_TCP_TSVAL), now - 3 * MS, 0)
        .unwrap();
    rx(&mut bed, mode, 40008, Segment::echo(111));
    assert_eq!(flow(&bed, &key).rtt_samples, 0);
    assert_eq!(
        open_stamps(&mut bed, &key),
        [(222, TSVAL)],
        "the stale one is gone"
    );
    rx(&mut bed, mode, 40008, Segment::echo(222));
    let f = flow(&bed, &key);
    assert_eq!(f.rtt_samples, 1);
    assert!(f.rtt_last_ns >= 3 * MS, "RTT {} ns", f.rtt_last_ns);
}

both_modes!(stale_stamp_closes_no_sample);

/// A flow with no stamp open skips the stamp lookup: an echo then takes
/// nothing, even a stamp of its own left in the map (only one older than
/// every echo so far can be; TCP echoes only newer ones).
fn no_open_stamp_no_lookup(mode: Mode) {
    let mut bed = flow_bed("flnoopen");
    let key = tcp_key(40009);
    stamp_map(&mut bed)
        .insert(
            ident(&key, 333, VLNET_IDENT_TCP_TSVAL),
            monotonic_ns() - 3 * MS,
            0,
        )
        .unwrap();
    rx(&mut bed, mode, 40009, Segment::echo(333));
    assert_eq!(flow(&bed, &key).rtt_samples, 0);
    assert_eq!(open_stamps(&mut bed, &key), [(333, TSVAL)], "not looked up");
}

both_modes!(no_open_stamp_no_lookup);

/// Rate limit: while a stamp is open the flow stamps no newer TSval (unless
/// `VLNET_RTT_STAMP_GAP_NS` passed); its echo reopens stamping.
fn one_stamp_open_per_flow(mode: Mode) {
    let mut bed = flow_bed("flgate");
    // Two sends within the gap: a loaded machine may stall between them, so
    // an attempt that took longer proves nothing and is made again.
    for port in 40100..40110 {
        let key = tcp_key(port);
        let start = monotonic_ns();
        tx(&mut bed, port, Segment::data(100));
        tx(&mut bed, port, Segment::data(101));
        if monotonic_ns() - start >= GAP_NS {
            continue;
        }
        assert_eq!(open_stamps(&mut bed, &key), [(100, TSVAL)], "101 waits");
        rx(&mut bed, mode, port, Segment::echo(101));
        assert_eq!(flow(&bed, &key).rtt_samples, 0);
        rx(&mut bed, mode, port, Segment::echo(100));
        assert_eq!(flow(&bed, &key).rtt_samples, 1);

        tx(&mut bed, port, Segment::data(102));
        assert_eq!(
            open_stamps(&mut bed, &key),
            [(102, TSVAL)],
            "the echo reopened"
        );
        sleep(Duration::from_nanos(GAP_NS + MS));
        tx(&mut bed, port, Segment::data(103));
        assert_eq!(
            open_stamps(&mut bed, &key),
            [(102, TSVAL), (103, TSVAL)],
            "an echo lost for longer than the gap no longer holds stamps back"
        );
        return;
    }
    panic!("no two sends within {GAP_NS} ns in ten attempts");
}

both_modes!(one_stamp_open_per_flow);

/// A flooded frame does not know the remote VTEP: the flow keeps the one it
/// learned from the decap.
#[test]
fn flooded_frames_keep_the_remote_vtep() {
    let mut bed = Bed::new("flflood");
    let key = tcp_key(40009);
    let out = tcp_frame(Dir::Tx, 40009, Segment::data(1));
    pass(&mut bed, Mode::Tc, Dir::Tx, &out);
    assert_eq!(flow(&bed, &key).remote_vtep_be, 0, "flooded: not known yet");
    rx(&mut bed, Mode::Tc, 40009, Segment::echo(1));
    assert_eq!(flow(&bed, &key).remote_vtep_be, u32::from(PEER).to_be());
    bed.maps.remove_fdb(&fdb_key(VNI, VM_B_MAC)).unwrap();
    pass(&mut bed, Mode::Tc, Dir::Tx, &out);
    let f = flow(&bed, &key);
    assert_eq!(
        (f.tx_packets, f.remote_vtep_be),
        (2, u32::from(PEER).to_be())
    );
}

/// A GSO super-packet counts as its segments, its bytes once.
#[test]
fn gso_packets_count_their_segments() {
    let mut bed = flow_bed("flgso");
    let out = tcp_frame(
        Dir::Tx,
        40010,
        Segment {
            payload: 3000,
            ..Segment::data(1)
        },
    );
    let ctx = __sk_buff {
        ifindex: bed.vlx100,
        gso_size: 1000,
        gso_segs: 3,
        ..Default::default()
    };
    // BPF_PROG_TEST_RUN sets gso_size and gso_segs but not gso_type, so the
    // kernel refuses to grow this made-up super-packet (encap_failed); the
    // flow has counted it by then.
    bed.run_tc("tc_overlay_tx", &out, ctx);
    let f = flow(&bed, &tcp_key(40010));
    assert_eq!((f.tx_packets, f.tx_bytes), (3, out.len() as u64));
}

/// With tracking off nothing is recorded, and forwarding is byte for byte
/// what it is with tracking on.
fn tracking_off_records_nothing(mode: Mode) {
    let mut bed = flow_bed("floff");
    let out = tcp_frame(Dir::Tx, 40011, Segment::data(1));
    let back = tcp_frame(Dir::Rx, 40011, Segment::echo(1));
    bed.set_flow_tracking(false);
    let off = (
        pass(&mut bed, mode, Dir::Tx, &out),
        pass(&mut bed, mode, Dir::Rx, &back),
    );
    assert!(bed.maps.flows().is_empty());
    assert!(bed.maps.rtt_histograms().is_empty());
    assert!(stamp_map(&mut bed).keys().next().is_none());
    bed.set_flow_tracking(true);
    let on = (
        pass(&mut bed, mode, Dir::Tx, &out),
        pass(&mut bed, mode, Dir::Rx, &back),
    );
    assert_eq!(off, on);
    assert_eq!(flow(&bed, &tcp_key(40011)).rtt_samples, 1);
}

both_modes!(tracking_off_records_nothing);

/// Instructions the verifier walked for each entry program, printed for the
/// record and held under a budget, far below the kernel's limit of one
/// million, so growing complexity shows up here first.
#[test]
fn programs_verify_within_budget() {
    const BUDGET: u32 = 200_000;
    let mut bed = Bed::new("flverif");
    let tc = [
        "tc_underlay_rx",
        "tc_tunnel_rx",
        "tc_overlay_tx",
        "tc_vm_tx",
    ];
    for name in tc.into_iter().chain(["xdp_underlay_rx"]) {
        let info = if tc.contains(&name) {
            bed.programs.tc(name).unwrap().info()
        } else {
            bed.programs.xdp(name).unwrap().info()
        }
        .unwrap();
        let insns = info.verified_instruction_count().unwrap();
        eprintln!("{name}: {insns} instructions verified");
        assert!(insns < BUDGET, "{name}: {insns} verified instructions");
    }
}
