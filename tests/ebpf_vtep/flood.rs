//! Head-end replication at a class's scale (`lib/flood.h`, `bpf_loop`):
//! a broadcast from a local VM reaches each of 1,024 remote VTEPs exactly
//! once, and a gateway relays a static peer's broadcast to each of 1,024
//! members exactly once while delivering it here too.
//!
//! The VTEPs are reached through the bed's TUN (as members are through
//! WireGuard), whose reader sees every copy but the program's own last
//! redirect (which `BPF_PROG_TEST_RUN` returns instead of sending). The
//! TUN queues 4,096 packets: a veth would not do, as its peer takes at most
//! `netdev_max_backlog` (1,000) frames before its softirq runs, fewer than
//! one program run's 1,024 copies (a NIC's transmit queue holds them).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::support::frames::{self, off};
use super::support::vtep_bed::{Bed, Mode, LOCAL, PEER, STATIC_PEER, TC_ACT_REDIRECT};
use super::{Tun, TUN_LOCAL};
use vlnet_dataplane::trust::{VtepBinding, VtepPath};
use vlnet_ebpf::abi::{__sk_buff, vlnet_nexthop, VLNET_NH_L3};

/// VTEPs in the flood list.
const FLOOD: u32 = 1024;

/// The `i`th of [`FLOOD`] remote VTEPs, in 198.19.4.0/22.
fn vtep(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 4, 0)) + i)
}

/// A bed whose VNI 400 has [`FLOOD`] VTEPs bound as `binding`, reached
/// through `vltun0` (queue 4,096), and its reader; VNI 400's overlay port.
fn flood_bed(tag: &str, binding: VtepBinding) -> (Bed, Tun, u32, Vec<Ipv4Addr>) {
    let mut bed = Bed::new(tag);
    let tunnel = bed.add_tunnel();
    bed.ns.sh("ip link set vltun0 txqueuelen 4096");
    let tun = Tun::open("vltun0");
    let nexthop = vlnet_nexthop {
        ifindex: tunnel.ifindex,
        saddr_be: u32::from(TUN_LOCAL).to_be(),
        flags: VLNET_NH_L3,
        ..Default::default()
    };
    let all = (0..FLOOD)
        .map(|i| {
            let v = vtep(i);
            bed.add_peer(400, v, binding);
            bed.maps.set_nexthop(v, &nexthop).unwrap();
            v
        })
        .collect();
    (bed, tun, tunnel.vlx400, all)
}

/// The outer destination of `packet` (bare IPv4 from the TUN, or a frame
/// when `eth`), checked to carry `inner`.
fn destination(packet: &[u8], inner: &[u8], eth: bool) -> Ipv4Addr {
    let ip = if eth { off::IP } else { 0 };
    assert_eq!(packet[ip + 36..], inner[..], "a copy carries the frame");
    assert_eq!(packet[ip + 12..ip + 16], TUN_LOCAL.octets(), "outer source");
    let d = &packet[ip + 16..ip + 20];
    Ipv4Addr::new(d[0], d[1], d[2], d[3])
}

/// Reads `n` copies of `inner` from the TUN and returns their destinations.
fn read_copies(tun: &Tun, n: u32, inner: &[u8]) -> Vec<Ipv4Addr> {
    (0..n)
        .map(|_| destination(&tun.recv(), inner, false))
        .collect()
}

/// Asserts that `to` names every VTEP of `all` exactly once, and that the
/// per-peer counters agree.
fn exactly_once(bed: &Bed, to: &[Ipv4Addr], all: &[Ipv4Addr]) {
    let distinct: BTreeSet<Ipv4Addr> = to.iter().copied().collect();
    assert_eq!(to.len(), all.len(), "copies");
    assert_eq!(distinct, all.iter().copied().collect(), "each VTEP once");
    for p in bed.maps.peers() {
        if all.contains(&p.vtep) {
            assert_eq!(p.tx_packets, 1, "copies counted for {}", p.vtep);
        }
    }
    assert_eq!(bed.total_drops(), 0, "drops: {:?}", bed.maps.drops());
}

#[test]
fn a_local_broadcast_reaches_each_of_1024_vteps_once() {
    let secure = VtepBinding {
        path: VtepPath::Tunnel,
        learn: true,
        direct: false,
    };
    let (mut bed, tun, port, all) = flood_bed("flood1k", secure);
    bed.set_flood(400, port, &all, &[]);
    let broadcast = frames::inner_udp([0xff; 6], 0, 20);
    let ctx = __sk_buff {
        ifindex: port,
        ..Default::default()
    };

    let (ret, last, _) = bed.run_tc("tc_overlay_tx", &broadcast, ctx);
    assert_eq!(ret, TC_ACT_REDIRECT, "drops: {:?}", bed.maps.drops());
    let mut to = read_copies(&tun, FLOOD - 1, &broadcast);
    to.push(destination(&last, &broadcast, true));
    exactly_once(&bed, &to, &all);
}

#[test]
fn a_gateway_relays_a_zone_broadcast_to_each_of_1024_members_once() {
    let (mut bed, tun, port, members) = flood_bed("relay1k", VtepBinding::MEMBER);
    bed.set_relay(true);
    bed.add_peer(400, PEER, STATIC_PEER);
    bed.set_flood(400, port, &[PEER], &members);
    let arp = frames::inner_arp_request();

    let (ret, out) = bed.decap(Mode::Tc, &frames::vxlan(PEER, LOCAL, 400, 0, &arp));
    assert_eq!((ret, out), (TC_ACT_REDIRECT, arp.clone()), "delivered here");
    exactly_once(&bed, &read_copies(&tun, FLOOD, &arp), &members);
    let to_members = bed.maps.relay_counts()[0].clone();
    assert_eq!(
        (to_members.direction.as_str(), to_members.packets),
        ("to_members", u64::from(FLOOD))
    );
}
