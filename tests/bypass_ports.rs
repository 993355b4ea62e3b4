//! The daemon's side of the bridge bypass (`[[vni]] bypass = true`): which
//! ports of a VNI's bridge take it and which are left alone. A vlnet site
//! and a kernel-vxlan site; bypass turned on by a reload. The VM's veth port
//! gets `tc_vm_tx` and its MAC a `vlnet_bypass` entry (into its peer's
//! namespace), and unicast pings then cross the bypass both ways; a port
//! behind a Proxmox firewall bridge (`fwbr…` with its `fwpr…`/`fwln…` veth
//! pair) and a port carrying someone else's tc filter are refused, untouched,
//! with the reason in `vlnet ctl status`; a restarted daemon adopts the
//! port's pinned link; turning bypass off detaches and forgets everything,
//! and so does deleting the port. A VM sending from 1,000 forged source MACs
//! gets none of those frames bypassed (they take the bridge), keeps its own
//! entry, and its port's share of `vlnet_bypass` is capped, with the surplus
//! shown in `ctl status`. Needs root (namespaces, BPF).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use support::frames::{ethernet, ipv4_header};
use support::node::{sample, scrape, status_until, tcx_programs, vlnet_binary, PORTS_SETTLE};
use support::packet_socket::PacketSocket;

use std::time::{Duration, Instant};

use aya::maps::{HashMap, Map, MapData};
use serde_json::Value;
use vlnet_dataplane::bypass::plan::MACS_PER_PORT;
use vlnet_ebpf::abi::{vlnet_bypass_port, vlnet_fdb_key, VLNET_BYPASS_PEER};
use vlnet_lab::beds::scenario::{vm_ip, Scenario, Vtep};
use vlnet_lab::primitives::daemon::{Daemon, DEFAULT_METRICS_PORT};
use vlnet_lab::primitives::probe;
use vlnet_lab::{Datapath, NetNs};

/// VNI 100's bypass in `status` (null when off).
fn bypass(status: &Value) -> &Value {
    &status["vnis"][0]["bypass"]
}

fn bypassed(status: &Value, port: &str) -> bool {
    bypass(status)["ports"]
        .as_array()
        .is_some_and(|p| p.iter().any(|p| p == port))
}

fn refusal(status: &Value, port: &str) -> Option<String> {
    bypass(status)["refused"]
        .as_array()?
        .iter()
        .find(|r| r["port"] == port)
        .map(|r| r["reason"].as_str().unwrap().to_owned())
}

/// The node's `vlnet_bypass` entries, read from its pin.
fn bypass_entries(daemon: &Daemon) -> Vec<(vlnet_fdb_key, vlnet_bypass_port)> {
    let data = MapData::from_pin(daemon.pin_dir().join("maps").join("vlnet_bypass")).unwrap();
    let map: HashMap<_, vlnet_fdb_key, vlnet_bypass_port> =
        HashMap::try_from(Map::HashMap(data)).unwrap();
    map.iter().map(Result::unwrap).collect()
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    let mut out = [0; 6];
    for (b, part) in out.iter_mut().zip(mac.split(':')) {
        *b = u8::from_str_radix(part, 16).unwrap();
    }
    out
}

fn reload(daemon: &mut Daemon, on: bool) {
    let spec = daemon.spec().clone().with_bypass(on);
    daemon.rewrite_config(spec).unwrap();
    let out = daemon.ctl(&["reload"]).unwrap();
    assert!(
        out.contains("bypass"),
        "the reload says what changed: {out}"
    );
}

/// Commands (in the host namespace) that put two ports on br100 that must
/// get no bypass.
const REFUSED_PORTS: [&str; 10] = [
    // A Proxmox firewall bridge between a VM tap and the VNI bridge: the
    // bridge side of its veth pair on br100, the other side on fwbr100i0.
    "ip link add fwbr100i0 type bridge",
    "ip link add fwpr100p0 type veth peer name fwln100i0",
    "ip link set fwpr100p0 master br100 up",
    "ip link set fwln100i0 master fwbr100i0 up",
    "ip link set fwbr100i0 up",
    // A VM port with someone else's tc filter on it.
    "ip link add vmtc0 type veth peer name vmtc1",
    "ip link set vmtc0 master br100 up",
    "ip link set vmtc1 up",
    "tc qdisc add dev vmtc0 clsact",
    "tc filter add dev vmtc0 ingress protocol all u32 match u32 0 0 classid 1:1",
];

/// Bypass on: the VM's port takes it, the two others are refused with
/// their reasons and left untouched.
fn ports_are_judged(daemon: &Daemon, host: &NetNs, vm_port: &str) {
    let status = status_until(daemon, "ports judged", |st| {
        bypassed(st, vm_port)
            && refusal(st, "fwpr100p0").is_some()
            && refusal(st, "vmtc0").is_some()
    });
    assert_eq!(
        refusal(&status, "fwpr100p0").unwrap(),
        "behind a Proxmox firewall bridge (fwbr100i0)"
    );
    assert_eq!(
        refusal(&status, "vmtc0").unwrap(),
        "carries tc filter u32 at ingress"
    );
    assert_eq!(bypass(&status)["ports"].as_array().unwrap().len(), 1);
    let text = daemon.ctl(&["status"]).unwrap();
    assert!(
        text.contains("refused fwpr100p0: behind a Proxmox firewall bridge (fwbr100i0)"),
        "{text}"
    );
    assert_eq!(tcx_programs(host, vm_port), ["tc_vm_tx"]);
    for refused in ["fwpr100p0", "vmtc0"] {
        assert!(
            tcx_programs(host, refused).is_empty(),
            "{refused} is left alone"
        );
    }
    let filters = host
        .run(&["tc", "filter", "show", "dev", "vmtc0", "ingress"])
        .unwrap();
    assert!(filters.contains("u32"), "their filter stays: {filters}");
}

/// The VM's bypass entry, once the bridge learned its MAC.
fn await_entry(daemon: &Daemon, vm_mac: [u8; 6]) -> vlnet_bypass_port {
    let deadline = Instant::now() + PORTS_SETTLE;
    loop {
        let entries = bypass_entries(daemon);
        if let Some((_, e)) = entries
            .iter()
            .find(|(k, _)| k.vni == 100 && k.mac == vm_mac)
        {
            return *e;
        }
        assert!(Instant::now() < deadline, "no bypass entry: {entries:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The packets that took the bypass so far: (rx, tx).
fn bypass_packets(host: &NetNs) -> (f64, f64) {
    let metrics = scrape(host, DEFAULT_METRICS_PORT);
    (
        sample(&metrics, "vlnet_bypass_packets_total{direction=\"rx\"}"),
        sample(&metrics, "vlnet_bypass_packets_total{direction=\"tx\"}"),
    )
}

/// Bypass off: the port's link, pin and entries are gone.
fn everything_is_forgotten(daemon: &Daemon, host: &NetNs, vm_port: &str) {
    status_until(daemon, "bypass off", |st| bypass(st).is_null());
    let deadline = Instant::now() + PORTS_SETTLE;
    while !(tcx_programs(host, vm_port).is_empty() && bypass_entries(daemon).is_empty()) {
        assert!(
            Instant::now() < deadline,
            "still bypassed: {:?}, {:?}",
            tcx_programs(host, vm_port),
            bypass_entries(daemon)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!pinned_vm_tx(daemon), "its pin is gone");
}

/// Whether the node has a pinned `tc_vm_tx` link.
fn pinned_vm_tx(daemon: &Daemon) -> bool {
    std::fs::read_dir(daemon.pin_dir().join("links"))
        .unwrap()
        .any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("tc_vm_tx")
        })
}

#[test]
fn bypass_takes_vm_ports_and_leaves_firewalled_and_foreign_ones_alone() {
    let mut s = Scenario::build(
        "bp",
        &[Vtep::Vlnet(Datapath::Tc), Vtep::Kernel],
        vlnet_binary(),
    )
    .unwrap();
    let host = s.sites[0].host.ns().clone();
    let vm_port = s.sites[0].vm.host_port().to_owned();
    let vm_mac = mac_bytes(s.sites[0].vm.mac());
    let pinger = s.sites[1].vm.ns().clone();
    let ping = |count| {
        let report = probe::ping(&pinger, vm_ip(0), count, Duration::from_millis(20)).unwrap();
        assert_eq!(report.received, count, "{report:?}");
    };
    for cmd in REFUSED_PORTS {
        host.run(&cmd.split(' ').collect::<Vec<_>>()).unwrap();
    }
    let daemon = s.sites[0].daemon.as_mut().unwrap();
    assert!(
        bypass(&daemon.status_json().unwrap()).is_null(),
        "off by default"
    );
    reload(daemon, true);
    ports_are_judged(daemon, &host, &vm_port);

    // The VM's MAC gets its entry once the bridge learned it, into the
    // veth's peer in the VM's namespace.
    ping(3);
    let entry = await_entry(daemon, vm_mac);
    assert_eq!(entry.flags, VLNET_BYPASS_PEER);
    let ifindex: u32 = host
        .run(&["ip", "-o", "link", "show", &vm_port])
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(entry.ifindex, ifindex);

    // Unicast IP now crosses the bypass both ways, and still arrives.
    let (rx0, tx0) = bypass_packets(&host);
    ping(20);
    let (rx, tx) = bypass_packets(&host);
    assert!(
        rx >= rx0 + 20.0 && tx >= tx0 + 20.0,
        "rx {rx0} -> {rx}, tx {tx0} -> {tx}"
    );
    let metrics = scrape(&host, DEFAULT_METRICS_PORT);
    for (state, n) in [("bypassed", 1.0), ("refused", 2.0)] {
        let name = format!("vlnet_bypass_ports{{state=\"{state}\",vni=\"100\"}}");
        let got = sample(&metrics, &name);
        assert!((got - n).abs() < 0.5, "{name} {got}:\n{metrics}");
    }

    // A restarted daemon adopts the port's link; traffic keeps the bypass.
    daemon.restart().unwrap();
    status_until(daemon, "tc_vm_tx adopted", |st| {
        st["links"].as_array().unwrap().iter().any(|l| {
            l["program"] == "tc_vm_tx"
                && l["interface"] == vm_port.as_str()
                && l["action"] == "adopted"
        })
    });
    ping(10);
    let (again, _) = bypass_packets(&host);
    assert!(again >= rx + 10.0, "rx {rx} -> {again}");
    assert_eq!(tcx_programs(&host, &vm_port), ["tc_vm_tx"], "attached once");

    // Off again: detached, forgotten; the bridge carries the traffic.
    reload(daemon, false);
    everything_is_forgotten(daemon, &host, &vm_port);
    ping(5);
    let (after, _) = bypass_packets(&host);
    assert!(
        (after - again).abs() < 0.5,
        "no more bypass: {again} -> {after}"
    );

    // On again, then the VM's port is deleted: its entry and pin go too.
    reload(daemon, true);
    ports_are_judged(daemon, &host, &vm_port);
    ping(3);
    await_entry(daemon, vm_mac);
    host.run(&["ip", "link", "del", &vm_port]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while !bypass_entries(daemon).is_empty() || pinned_vm_tx(daemon) {
        assert!(
            Instant::now() < deadline,
            "a deleted port keeps its bypass: {:?}",
            bypass_entries(daemon)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Forged source MACs the flooding VM sends from.
const FORGED: u16 = 1000;

/// The `n`th forged source MAC (locally administered).
fn forged_mac(n: u16) -> [u8; 6] {
    let [hi, lo] = n.to_be_bytes();
    [0x06, 0, 0, 0xf0, hi, lo]
}

#[test]
fn forged_source_macs_take_the_bridge_and_get_only_their_ports_share() {
    let mut s = Scenario::build(
        "bf",
        &[Vtep::Vlnet(Datapath::Tc), Vtep::Kernel],
        vlnet_binary(),
    )
    .unwrap();
    let host = s.sites[0].host.ns().clone();
    let vm = s.sites[0].vm.ns().clone();
    let vm_if = s.sites[0].vm.ifname();
    let vm_port = s.sites[0].vm.host_port().to_owned();
    let vm_mac = mac_bytes(s.sites[0].vm.mac());
    let far_mac = mac_bytes(s.sites[1].vm.mac());
    let pinger = s.sites[1].vm.ns().clone();
    let ping = |count| {
        let report = probe::ping(&pinger, vm_ip(0), count, Duration::from_millis(20)).unwrap();
        assert_eq!(report.received, count, "{report:?}");
    };
    let daemon = s.sites[0].daemon.as_mut().unwrap();
    reload(daemon, true);
    status_until(daemon, "the VM port bypassed", |st| bypassed(st, &vm_port));
    ping(3);
    await_entry(daemon, vm_mac);

    // UDP to the far VM from 1,000 forged source MACs: each frame is the
    // first of its MAC, which has no entry on this port, so tc_vm_tx leaves
    // it to the bridge (which forwards it to the overlay port as before).
    let (_, tx0) = bypass_packets(&host);
    let frames: Vec<Vec<u8>> = (0..FORGED)
        .map(|n| {
            let mut f = ethernet(far_mac, forged_mac(n), 0x0800);
            f.extend(ipv4_header(vm_ip(0), vm_ip(1), 17, 0, 8 + 16));
            f.extend_from_slice(&[0x30, 0x39, 0x30, 0x39, 0, 24, 0, 0]);
            f.extend_from_slice(&[0xab; 16]);
            f
        })
        .collect();
    vm.within(|| {
        let socket = PacketSocket::bind_named(vm_if);
        for f in &frames {
            socket.send(f);
        }
    })
    .unwrap();
    let (_, tx1) = bypass_packets(&host);
    assert!(
        (tx1 - tx0).abs() < 0.5,
        "forged source MACs were bypassed: tx {tx0} -> {tx1}"
    );

    // The next rounds give the port its share, its own MAC first, and say
    // how many MACs were left to the bridge.
    let left = usize::from(FORGED) + 1 - MACS_PER_PORT;
    let st = status_until(daemon, "the port shown crowded", |st| {
        bypass(st)["crowded"][0]["left_to_bridge"].as_u64() == Some(left as u64)
    });
    assert_eq!(bypass(&st)["crowded"][0]["port"], vm_port.as_str());
    let entries = bypass_entries(daemon);
    assert_eq!(entries.len(), MACS_PER_PORT, "{entries:?}");
    assert!(entries.iter().any(|(k, _)| k.mac == vm_mac), "{entries:?}");
    let text = daemon.ctl(&["status"]).unwrap();
    assert!(
        text.contains(&format!(
            "crowded {vm_port}: {left} of its MACs take the bridge"
        )),
        "{text}"
    );

    // The VM itself still crosses the bypass both ways.
    let (rx2, tx2) = bypass_packets(&host);
    ping(10);
    let (rx3, tx3) = bypass_packets(&host);
    assert!(
        rx3 >= rx2 + 10.0 && tx3 >= tx2 + 10.0,
        "rx {rx2} -> {rx3}, tx {tx2} -> {tx3}"
    );
}
