//! VXLAN between two vlnet nodes whose peers are "secure": each names the
//! other's WireGuard tunnel address as its VTEP, so encap and decap run over
//! the boringtun TUN (an L3 device) instead of the Ethernet underlay. VMs
//! behind the two bridges ping each other (ARP included: non-IP frames take
//! the hairpin), iperf3 runs through, a 1 GiB TCP stream arrives byte for
//! byte, and the underlay carries only WireGuard, never VXLAN in clear. Needs root, `iperf3` and `tshark`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use support::node::vlnet_binary;

use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant};

use vlnet_dataplane::wg::{AllowedIp, KeyPair, PeerConfig, SetRequest, WgDevice};
use vlnet_ebpf::abi::VLNET_ENCAP_LEN;
use vlnet_lab::primitives::probe::{self, Capture};
use vlnet_lab::{Daemon, Host, NetNs, NodeSpec, Underlay, Vm};

const VNI: u32 = 100;
const BRIDGE: &str = "vnet100";
const UNDERLAY: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)];
const TUNNEL: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 19, 0, 1), Ipv4Addr::new(198, 19, 0, 2)];
const WG_PORT: [u16; 2] = [51820, 51821];
const VM_IP: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)];
const VM_MAC: [&str; 2] = ["02:00:00:00:0a:01", "02:00:00:00:0b:01"];
/// WireGuard over IPv4 adds 60 bytes; 80 leaves room for an IPv6 underlay,
/// as `wg-quick` does.
const WG_OVERHEAD: u32 = 80;
const IPERF_PORT: u16 = 5201;

/// One side: a host on the underlay with its WireGuard device up.
struct Side {
    host: Host,
    wg: WgDevice,
}

/// WireGuard interface names are machine-wide (UAPI socket paths).
fn wg_ifname(i: usize) -> String {
    format!("vltw{}{}", std::process::id() % 1_000_000, i)
}

fn side(underlay: &Underlay, i: usize, keys: &[KeyPair; 2]) -> Side {
    let host = underlay
        .add_host(["a", "b"][i], UNDERLAY[i])
        .expect("host on the underlay");
    let ifname = wg_ifname(i);
    let wg = host
        .ns()
        .within(|| WgDevice::create(&ifname).expect("boringtun device"))
        .unwrap();
    let other = 1 - i;
    wg.configure(
        &SetRequest::new()
            .private_key(keys[i].private)
            .listen_port(WG_PORT[i])
            .replace_peers()
            .peer(
                PeerConfig::new(keys[other].public)
                    .endpoint((UNDERLAY[other], WG_PORT[other]).into())
                    .replace_allowed_ips()
                    .allowed_ip(AllowedIp::new(TUNNEL[other].into(), 32).unwrap()),
            ),
    )
    .unwrap();
    let mtu = (underlay.mtu() - WG_OVERHEAD).to_string();
    let ns = host.ns();
    ns.run(&[
        "ip",
        "addr",
        "add",
        &format!("{}/24", TUNNEL[i]),
        "dev",
        &ifname,
    ])
    .unwrap();
    ns.run(&["ip", "link", "set", &ifname, "mtu", &mtu, "up"])
        .unwrap();
    host.add_bridge(BRIDGE).unwrap();
    Side { host, wg }
}

/// A vlnet node on `side` whose only peer is the other side's tunnel address.
fn node(side: &Side, i: usize) -> Daemon {
    let spec = NodeSpec::new(&format!("tun{i}"), UNDERLAY[i])
        .with_vni(VNI, BRIDGE, &[TUNNEL[1 - i]])
        .with_wireguard(side.wg.ifname());
    Daemon::start(side.host.ns(), spec, vlnet_binary()).expect("vlnet daemon")
}

/// A VM behind `side`'s bridge whose MTU leaves room for VXLAN in WireGuard.
fn vm(side: &Side, i: usize, underlay_mtu: u32) -> Vm {
    let vm = side
        .host
        .add_vm(&format!("vm{i}"), BRIDGE, VM_MAC[i], VM_IP[i], 24)
        .unwrap();
    let mtu = (underlay_mtu - WG_OVERHEAD - VLNET_ENCAP_LEN).to_string();
    vm.ns()
        .run(&["ip", "link", "set", vm.ifname(), "mtu", &mtu])
        .unwrap();
    side.host
        .ns()
        .run(&["ip", "link", "set", vm.host_port(), "mtu", &mtu])
        .unwrap();
    vm
}

fn ctl_json(daemon: &Daemon, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&daemon.ctl(args).unwrap()).unwrap()
}

/// Waits until `daemon` sends to its peer through the tunnel.
fn wait_for_tunnel_next_hop(daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let peers = ctl_json(daemon, &["peers", "--json"]);
        let hop = peers[0]["next_hop"].as_str().unwrap_or_default().to_owned();
        if hop.starts_with("tunnel") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: peer not routed through the tunnel: {peers}",
            daemon.name()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn vxlan_to_secure_peers_travels_inside_wireguard() {
    let underlay = Underlay::new("tun").unwrap();
    let keys = [KeyPair::generate(), KeyPair::generate()];
    let sides = [side(&underlay, 0, &keys), side(&underlay, 1, &keys)];
    let daemons = [node(&sides[0], 0), node(&sides[1], 1)];
    for d in &daemons {
        wait_for_tunnel_next_hop(d);
    }
    let vms = [
        vm(&sides[0], 0, underlay.mtu()),
        vm(&sides[1], 1, underlay.mtu()),
    ];

    // Everything UDP on A's underlay while the VMs ping each other (the
    // first ping of each direction needs ARP: the hairpin path).
    let a_ns: &NetNs = sides[0].host.ns();
    let capture = Capture::start(
        a_ns,
        sides[0].host.underlay_if(),
        "udp",
        &["udp.srcport", "udp.dstport", "wg.type"],
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    // tshark reports "Capturing on" a moment before it really captures.
    thread::sleep(Duration::from_millis(500));
    for (from, to) in [(0, 1), (1, 0)] {
        let ping = probe::ping(vms[from].ns(), VM_IP[to], 5, Duration::from_millis(100)).unwrap();
        assert_eq!(
            ping.received, ping.sent,
            "ping {} from VM {from}: {ping:?}",
            VM_IP[to]
        );
    }
    let frames = capture.finish().unwrap();
    let vxlan = "4789".to_string();
    assert!(
        !frames.column("udp.srcport").contains(&vxlan.as_str())
            && !frames.column("udp.dstport").contains(&vxlan.as_str()),
        "VXLAN in clear on the underlay: {frames:?}"
    );
    let transport = frames
        .column("wg.type")
        .iter()
        .filter(|t| **t == "4")
        .count();
    assert!(
        transport >= 20,
        "{transport} WireGuard data packets for 10 pings and their ARP: {frames:?}"
    );

    // The largest unfragmented packet the VMs' MTU allows fits end to end.
    let size = underlay.mtu() - WG_OVERHEAD - VLNET_ENCAP_LEN - 28;
    probe::ping_whole(vms[0].ns(), VM_IP[1], size).expect("full-size ping through the tunnel");

    let _server = probe::iperf3_server(vms[1].ns(), VM_IP[1], IPERF_PORT).unwrap();
    let report = probe::iperf3_client(vms[0].ns(), VM_IP[1], 3, 1, IPERF_PORT).unwrap();
    eprintln!("iperf3 through vlnet over WireGuard: {report:?}");
    assert!(
        report.bits_per_second > 10e6,
        "TCP through the tunnel: {report:?}"
    );
    // The same path byte for byte: VXLAN super-packets cut, encrypted and
    // joined again on the way (the boringtun device's offloads), 1 GiB of
    // it (hundreds of thousands of segments, tens of thousands of batches).
    let gbit = support::stream::checked(vms[0].ns(), vms[1].ns(), VM_IP[1], 5302, 1024);
    eprintln!("1 GiB checked through vlnet over WireGuard at {gbit:.2} Gbit/s");

    for (i, d) in daemons.iter().enumerate() {
        let fdb = ctl_json(d, &["fdb", "--json"]);
        let remote = fdb
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["mac"] == VM_MAC[1 - i])
            .unwrap_or_else(|| panic!("node {i} did not learn the remote VM: {fdb}"));
        assert_eq!(
            remote["vtep"],
            TUNNEL[1 - i].to_string(),
            "learned behind the tunnel address"
        );
        let status = ctl_json(d, &["status", "--json"]);
        let dropped: u64 = status["drops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["packets"].as_u64().unwrap())
            .sum();
        assert_eq!(dropped, 0, "node {i} dropped packets: {status}");
    }
}
