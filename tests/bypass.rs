//! The bridge bypass (`bypass = true` on a VNI): known unicast IP skips the
//! bridge and the overlay port in both directions, everything else takes
//! them, and what arrives is the same either way. Two vlnet nodes (TC
//! decap), a VM behind each; the same traffic mix with the bypass off and
//! on: IPv4 pings both ways (ARP first), IPv6 pings over link-local
//! addresses (neighbour discovery first), a TCP transfer compared byte for
//! byte, UDP datagrams of many sizes and UDP broadcasts. Then a VM moved to
//! a third node mid-stream keeps being reached. Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use aya::maps::{HashMap, Map, MapData};
use support::node::{drop_counts, sample, scrape, vlnet_binary};
use support::pings::Background;
use vlnet_ebpf::abi::{vlnet_bypass_port, vlnet_fdb_key};
use vlnet_lab::beds::scenario::{vm_ip, Scenario, ScenarioOptions, Vtep};
use vlnet_lab::jobs::migrate::move_vm;
use vlnet_lab::primitives::probe;
use vlnet_lab::{Daemon, Datapath, NetNs};

/// Pings per direction and family.
const PINGS: u32 = 20;
/// Bytes of the TCP transfer (GSO super-packets on the veths).
const TCP_BYTES: usize = 4 << 20;
/// UDP datagrams sent, sizes cycling through [`UDP_SIZES`].
const DATAGRAMS: usize = 200;
const UDP_SIZES: [usize; 5] = [18, 100, 512, 1000, 1400];
/// UDP broadcasts sent to 192.0.2.255.
const BROADCASTS: usize = 20;
const TCP_PORT: u16 = 5000;
const UDP_PORT: u16 = 5001;

/// What one run of the traffic mix delivered.
#[derive(Debug, PartialEq, Eq)]
struct Delivered {
    ping4: (u32, u32),
    ping6: u32,
    tcp_intact: bool,
    udp: usize,
    broadcasts: usize,
}

/// Inner bytes each node sent to and received from its peer: `(tx, rx)`.
fn peer_bytes(daemon: &Daemon) -> (u64, u64) {
    let peers: serde_json::Value =
        serde_json::from_str(&daemon.ctl(&["peers", "--json"]).unwrap()).unwrap();
    peers
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0), |(tx, rx), p| {
            (
                tx + p["tx_bytes"].as_u64().unwrap(),
                rx + p["rx_bytes"].as_u64().unwrap(),
            )
        })
}

/// Frames that took the bypass on `daemon`: `(rx, tx)`.
fn bypassed(daemon: &Daemon) -> (f64, f64) {
    let metrics = scrape(daemon.ns(), daemon.spec().metrics_port);
    (
        sample(&metrics, "vlnet_bypass_packets_total{direction=\"rx\"}"),
        sample(&metrics, "vlnet_bypass_packets_total{direction=\"tx\"}"),
    )
}

/// The MACs (`aa:bb:…`) in `daemon`'s pinned `vlnet_bypass` map.
fn bypass_macs(daemon: &Daemon) -> Vec<String> {
    let data = MapData::from_pin(daemon.pin_dir().join("maps").join("vlnet_bypass")).unwrap();
    let map: HashMap<MapData, vlnet_fdb_key, vlnet_bypass_port> =
        HashMap::try_from(Map::HashMap(data)).unwrap();
    map.keys()
        .map(|k| {
            k.unwrap()
                .mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect()
}

/// The link-local IPv6 address of `ifname` in `ns`, once duplicate address
/// detection has finished.
fn link_local(ns: &NetNs, ifname: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ns
            .run(&[
                "ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link",
            ])
            .unwrap();
        if let Some(line) = out.lines().find(|l| !l.contains("tentative")) {
            let addr = line.split_whitespace().nth(3).unwrap();
            return addr.split('/').next().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no link-local address: {out}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// A deterministic byte pattern of `len` bytes.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// `TCP_BYTES` from VM 0 to VM 1; whether they arrived intact.
fn tcp_transfer(vm0: &NetNs, vm1: &NetNs) -> bool {
    let listener = vm1
        .within(|| TcpListener::bind((vm_ip(1), TCP_PORT)))
        .unwrap()
        .unwrap();
    let receiver = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut got = Vec::with_capacity(TCP_BYTES);
        conn.read_to_end(&mut got).unwrap();
        got
    });
    let data = pattern(TCP_BYTES);
    let mut conn = vm0
        .within(|| TcpStream::connect_timeout(&(vm_ip(1), TCP_PORT).into(), Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    conn.write_all(&data).unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    receiver.join().unwrap() == data
}

/// Unicast datagrams of [`UDP_SIZES`] and broadcasts from VM 0; how many of
/// each VM 1 received with the payload sent.
fn udp_exchange(vm0: &NetNs, vm1: &NetNs) -> (usize, usize) {
    let rx = vm1
        .within(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, UDP_PORT)))
        .unwrap()
        .unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let tx = vm0
        .within(|| UdpSocket::bind((vm_ip(0), 0)))
        .unwrap()
        .unwrap();
    tx.set_broadcast(true).unwrap();
    let unicast: Vec<Vec<u8>> = (0..DATAGRAMS)
        .map(|i| {
            let mut d = pattern(UDP_SIZES[i % UDP_SIZES.len()]);
            d[..2].copy_from_slice(&(i as u16).to_be_bytes());
            d
        })
        .collect();
    // Read while they are sent: unread, they would overflow the socket's
    // receive buffer.
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = rx.recv_from(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        got
    });
    let broadcast_addr = (Ipv4Addr::new(192, 0, 2, 255), UDP_PORT);
    let mut expected: Vec<Vec<u8>> = Vec::new();
    for (i, d) in unicast.iter().enumerate() {
        tx.send_to(d, (vm_ip(1), UDP_PORT)).unwrap();
        expected.push(d.clone());
        if i % (DATAGRAMS / BROADCASTS) == 0 {
            let b = format!("broadcast {i}").into_bytes();
            tx.send_to(&b, broadcast_addr).unwrap();
            expected.push(b);
        }
        thread::sleep(Duration::from_millis(1));
    }
    let got = reader.join().unwrap();
    let is_broadcast = |d: &[u8]| d.starts_with(b"broadcast ");
    let arrived = |want_broadcast: bool| {
        expected
            .iter()
            .filter(|e| is_broadcast(e) == want_broadcast && got.contains(e))
            .count()
    };
    (arrived(false), arrived(true))
}

/// The traffic mix between the two VMs of `s`.
fn traffic_mix(s: &Scenario) -> Delivered {
    let (vm0, vm1) = (&s.sites[0].vm, &s.sites[1].vm);
    let interval = Duration::from_millis(10);
    let there = probe::ping(vm0.ns(), vm_ip(1), PINGS, interval).unwrap();
    let back = probe::ping(vm1.ns(), vm_ip(0), PINGS, interval).unwrap();
    let target = format!("{}%{}", link_local(vm1.ns(), vm1.ifname()), vm0.ifname());
    link_local(vm0.ns(), vm0.ifname());
    let out = vm0
        .ns()
        .run(&[
            "ping",
            "-6",
            "-n",
            "-c",
            &PINGS.to_string(),
            "-i",
            "0.01",
            "-W",
            "1",
            &target,
        ])
        .unwrap_or_else(|e| e.to_string());
    let ping6 = probe::parse_ping(&out).map_or(0, |r| r.received);
    let tcp_intact = tcp_transfer(vm0.ns(), vm1.ns());
    let (udp, broadcasts) = udp_exchange(vm0.ns(), vm1.ns());
    Delivered {
        ping4: (there.received, back.received),
        ping6,
        tcp_intact,
        udp,
        broadcasts,
    }
}

/// What one run of [`run`] saw: what arrived, each node's inner bytes to its
/// peer `(tx, rx)` during the mix, and what took the bypass on each node
/// `(rx, tx)`.
type Run = (Delivered, [(u64, u64); 2], [(f64, f64); 2]);

/// The mix on a fresh pair of vlnet nodes with the bypass `on`.
fn run(on: bool) -> Run {
    let vlnet = Vtep::Vlnet(Datapath::Tc);
    let tag = if on { "byon" } else { "byof" };
    let s = Scenario::build_with(
        tag,
        &[vlnet, vlnet],
        vlnet_binary(),
        ScenarioOptions {
            bypass: on,
            ..ScenarioOptions::default()
        },
    )
    .unwrap();
    let daemons = [0, 1].map(|i| s.sites[i].daemon.as_ref().unwrap());
    // One exchange so that both bridges and FDBs know both VMs (and, with
    // the bypass, the daemons have read the bridges: they do every 500 ms).
    let warm = probe::ping(s.sites[0].vm.ns(), vm_ip(1), 3, Duration::from_millis(20)).unwrap();
    assert!(warm.received >= 2, "warm-up: {warm:?}");
    thread::sleep(Duration::from_secs(1));
    let drops_before = daemons.map(drop_counts);
    let bytes_before = daemons.map(peer_bytes);
    let bypass_before = daemons.map(bypassed);
    let delivered = traffic_mix(&s);
    let bytes_after = daemons.map(peer_bytes);
    let bypass_after = daemons.map(bypassed);
    for (i, d) in daemons.iter().enumerate() {
        assert_eq!(
            drop_counts(d),
            drops_before[i],
            "node {i} (bypass {on}) dropped frames of the mix"
        );
    }
    let bytes = [0, 1].map(|i| {
        (
            bytes_after[i].0 - bytes_before[i].0,
            bytes_after[i].1 - bytes_before[i].1,
        )
    });
    let bypass = [0, 1].map(|i| {
        (
            bypass_after[i].0 - bypass_before[i].0,
            bypass_after[i].1 - bypass_before[i].1,
        )
    });
    (delivered, bytes, bypass)
}

#[test]
fn the_same_traffic_arrives_with_the_bypass_on_and_off() {
    let (off, off_bytes, off_bypass) = run(false);
    let (on, on_bytes, on_bypass) = run(true);
    eprintln!("bypass off: {off:?}, bytes {off_bytes:?}, bypassed {off_bypass:?}");
    eprintln!("bypass on:  {on:?}, bytes {on_bytes:?}, bypassed {on_bypass:?}");
    let all = Delivered {
        ping4: (PINGS, PINGS),
        ping6: PINGS,
        tcp_intact: true,
        udp: DATAGRAMS,
        broadcasts: BROADCASTS,
    };
    assert_eq!(off, all, "without the bypass");
    assert_eq!(on, all, "with the bypass");
    // The nodes count every frame either way: the inner bytes each sent and
    // received agree within what the mix itself may vary by (a TCP
    // retransmission, an IPv6 router solicitation).
    for i in 0..2 {
        for (what, a, b) in [
            ("tx", off_bytes[i].0, on_bytes[i].0),
            ("rx", off_bytes[i].1, on_bytes[i].1),
        ] {
            let slack = a / 50 + 4096;
            assert!(
                a.abs_diff(b) <= slack,
                "node {i} {what} bytes: {a} without the bypass, {b} with it"
            );
        }
    }
    // Nothing takes the bypass where it is off; where it is on, every
    // unicast IP frame of the mix does, in both directions on both nodes:
    // the pings, the TCP segments (GSO packets count as their segments), the
    // unicast datagrams to node 1.
    assert_eq!(off_bypass, [(0.0, 0.0); 2], "bypass counted while off");
    let least = f64::from(2 * PINGS);
    for (i, (rx, tx)) in on_bypass.iter().enumerate() {
        assert!(
            *rx >= least && *tx >= least,
            "node {i} bypassed rx {rx}, tx {tx}"
        );
    }
    assert!(
        on_bypass[1].0 >= f64::from(u32::try_from(TCP_BYTES / 1500 + DATAGRAMS).unwrap()),
        "node 1 received the transfer and the datagrams past the bridge: {on_bypass:?}"
    );
}

#[test]
fn a_vm_moved_away_mid_stream_is_reached_at_its_new_node() {
    let vlnet = Vtep::Vlnet(Datapath::Tc);
    let mut s = Scenario::build_with(
        "bymv",
        &[vlnet, vlnet, vlnet],
        vlnet_binary(),
        ScenarioOptions {
            bypass: true,
            ..ScenarioOptions::default()
        },
    )
    .unwrap();
    let warm = probe::ping(s.sites[1].vm.ns(), vm_ip(0), 3, Duration::from_millis(20)).unwrap();
    assert!(warm.received >= 2, "warm-up: {warm:?}");
    thread::sleep(Duration::from_secs(1));
    let mac = s.sites[0].vm.mac().to_owned();
    assert!(
        bypass_macs(s.sites[0].daemon.as_ref().unwrap()).contains(&mac),
        "the VM's MAC takes the bypass at its first node"
    );
    let before = bypassed(s.sites[0].daemon.as_ref().unwrap());
    let pings = Background::start(s.sites[1].vm.ns(), vm_ip(0), 300, Duration::from_millis(10));
    thread::sleep(Duration::from_millis(800));
    let at_old_home = bypassed(s.sites[0].daemon.as_ref().unwrap());
    assert!(
        at_old_home.0 > before.0,
        "the VM was reached past its node's bridge before the move: {before:?} -> {at_old_home:?}"
    );
    // Site 0's VM moves to site 2 and announces itself (a hypervisor's RARP).
    move_vm(&mut s, 0, 2).unwrap();
    let report = pings.finish();
    let lost = report.sent - report.received;
    eprintln!("pings during the move: {lost} of {} lost", report.sent);
    assert!(
        lost <= 20,
        "lost {lost} of {} pings across the move",
        report.sent
    );
    let old = s.sites[0].daemon.as_ref().unwrap();
    let new = s.sites[2].daemon.as_ref().unwrap();
    assert!(
        !bypass_macs(old).contains(&mac),
        "the old node keeps a bypass to the port the VM left: {:?}",
        bypass_macs(old)
    );
    assert!(
        bypass_macs(new).contains(&mac),
        "the new node bypasses for the VM"
    );
    let after_old = bypassed(old);
    let r = probe::ping(s.sites[1].vm.ns(), vm_ip(0), 20, Duration::from_millis(10)).unwrap();
    assert_eq!(r.received, 20, "after the move: {r:?}");
    assert!(
        bypassed(old).0 - after_old.0 < 0.5,
        "the old node still delivers to the port the VM left"
    );
    let (rx, _) = bypassed(new);
    assert!(
        rx >= 10.0,
        "the new node reaches the VM past its bridge: {rx}"
    );
}
