//! A VM migrates between two vlnet nodes (its link moves to the other
//! node's bridge, as a live migration does) with a kernel-vxlan node and a
//! third vlnet node as bystanders: the hypervisor's RARP announce — or
//! `vlnet ctl vm moved` when the hypervisor sends none — switches every
//! VTEP's path at once, and the vlnet nodes record the move. Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::time::Duration;

use support::node::{sample, scrape, vlnet_binary};
use vlnet_lab::beds::scenario::{host_ip, vm_ip, Scenario, Vtep, BRIDGE};
use vlnet_lab::jobs::migrate::{move_time_ns, move_vm};
use vlnet_lab::primitives::probe;
use vlnet_lab::Datapath;

/// Sites: 0, 1 and 3 run vlnet, 2 the kernel's vxlan; the VM of site 0 is
/// the one that moves to site 1. Returns the scenario after a warm-up in
/// which every other node learned VM 0 at site 0.
fn scenario(tag: &str) -> Scenario {
    let vlnet = Vtep::Vlnet(Datapath::Tc);
    let s = Scenario::build(tag, &[vlnet, vlnet, Vtep::Kernel, vlnet], vlnet_binary()).unwrap();
    for from in [1, 2, 3] {
        let r = probe::ping(
            s.sites[from].vm.ns(),
            vm_ip(0),
            3,
            Duration::from_millis(20),
        )
        .unwrap();
        assert!(r.received >= 2, "warm-up {from} -> vm0: {r:?}");
    }
    s
}

/// After the move: every node reaches VM 0 at once (no ageing wait), the new
/// host recorded a local move, the bystander a remote one (within a
/// millisecond or so of the announce entering the new host: one trip
/// through the tunnel), and the old host has VM 0 behind the new one.
fn assert_switched(s: &Scenario) {
    for from in [2, 1, 3] {
        let r = probe::ping(
            s.sites[from].vm.ns(),
            vm_ip(0),
            20,
            Duration::from_millis(10),
        )
        .unwrap();
        assert_eq!(r.received, 20, "{from} -> vm0 after the move: {r:?}");
    }
    let mac = s.sites[0].vm.mac();
    let new = s.sites[1].daemon.as_ref().unwrap();
    let old = s.sites[0].daemon.as_ref().unwrap();
    let bystander = s.sites[3].daemon.as_ref().unwrap();
    let moves: serde_json::Value =
        serde_json::from_str(&new.ctl(&["moves", "--json"]).unwrap()).unwrap();
    assert!(
        moves
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mac"] == mac && m["kind"] == "local"),
        "new host recorded no local move: {moves}"
    );
    let moves: serde_json::Value =
        serde_json::from_str(&bystander.ctl(&["moves", "--json"]).unwrap()).unwrap();
    assert!(
        moves.as_array().unwrap().iter().any(|m| m["mac"] == mac
            && m["kind"] == "remote"
            && m["from"] == host_ip(0).to_string()
            && m["to"] == host_ip(1).to_string()),
        "bystander recorded no move from the old host to the new one: {moves}"
    );
    let local_ns = move_time_ns(new, mac, "local").unwrap().unwrap();
    let remote_ns = move_time_ns(bystander, mac, "remote").unwrap().unwrap();
    let switch = Duration::from_nanos(remote_ns.saturating_sub(local_ns));
    eprintln!(
        "path switch at the bystander: {:.3} ms after the announce entered the new host",
        switch.as_secs_f64() * 1e3
    );
    assert!(
        remote_ns >= local_ns && switch < Duration::from_millis(5),
        "switch took {switch:?}"
    );
    let fdb: serde_json::Value =
        serde_json::from_str(&old.ctl(&["fdb", "--json"]).unwrap()).unwrap();
    assert!(
        fdb.as_array()
            .unwrap()
            .iter()
            .any(|e| e["mac"] == mac && e["vtep"] == host_ip(1).to_string()),
        "old host does not send to the new one: {fdb}"
    );
    // The new host timed the first frame that reached the VM from afar.
    let moves: serde_json::Value =
        serde_json::from_str(&new.ctl(&["moves", "--json"]).unwrap()).unwrap();
    let delivered = moves
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mac"] == mac && m["kind"] == "delivered")
        .and_then(|m| m["path_switch_us"].as_u64());
    eprintln!("first frame from afar {delivered:?} µs after the move");
    assert!(delivered.is_some(), "no delivery timed: {moves}");
    // Each kind is logged as what it is: the delivery names its frame's
    // sender, not a VTEP the MAC moved from.
    for (daemon, message) in [
        (new, "MAC moved here"),
        (new, "first frame for a MAC that moved here"),
        (bystander, "MAC moved to another VTEP"),
    ] {
        let log = daemon.log();
        assert!(
            log.lines()
                .any(|l| l.contains(message) && l.contains(&format!("mac={mac}"))),
            "{} did not log \"{message}\" for {mac}:\n{}",
            daemon.name(),
            daemon.log_tail(30)
        );
    }
    let metrics = scrape(new.ns(), new.spec().metrics_port);
    assert!(
        sample(&metrics, "vlnet_mac_moves_total{kind=\"local\"}") >= 1.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, "vlnet_path_switch_seconds_count") >= 1.0,
        "{metrics}"
    );
}

#[test]
fn the_hypervisors_announce_switches_every_vtep() {
    let mut s = scenario("mga");
    let pinger = s.sites[2].vm.ns().clone();
    let pings =
        std::thread::spawn(move || probe::ping(&pinger, vm_ip(0), 200, Duration::from_millis(10)));
    std::thread::sleep(Duration::from_millis(300));
    move_vm(&mut s, 0, 1).unwrap();
    let r = pings.join().unwrap().unwrap();
    eprintln!(
        "pings during the move: {} sent, {} received",
        r.sent, r.received
    );
    assert!(r.received > 0, "{r:?}");
    assert_switched(&s);
}

#[test]
fn vm_moved_announces_for_a_silent_hypervisor() {
    let mut s = scenario("mgs");
    let (vm_host, others) = s.sites.split_at_mut(1);
    vm_host[0].vm.move_to(&others[0].host, BRIDGE).unwrap();
    let mac = s.sites[0].vm.mac().to_owned();
    s.sites[1]
        .daemon
        .as_ref()
        .unwrap()
        .ctl(&["vm", "moved", &mac, "--bridge", BRIDGE])
        .unwrap();
    assert_switched(&s);
}

/// Two vlnet sites, VM 0 having reached VM 1.
fn two_vlnet_sites(tag: &str) -> Scenario {
    let vlnet = Vtep::Vlnet(Datapath::Tc);
    let s = Scenario::build(tag, &[vlnet, vlnet], vlnet_binary()).unwrap();
    let r = probe::ping(s.sites[0].vm.ns(), vm_ip(1), 3, Duration::from_millis(20)).unwrap();
    assert!(r.received >= 2, "warm-up: {r:?}");
    s
}

/// Site 0's count of MACs that arrived (`vlnet_mac_moves_total`).
fn arrivals(s: &Scenario) -> f64 {
    let daemon = s.sites[0].daemon.as_ref().unwrap();
    let metrics = scrape(daemon.ns(), daemon.spec().metrics_port);
    sample(&metrics, "vlnet_mac_moves_total{kind=\"arrived\"}")
}

/// A VM that comes up on a vlnet node (no entry for it anywhere) is counted
/// once, at its first broadcast, and not for the next ones: the data plane
/// reports it the moment it enters the overlay port, and the node reads its
/// bridges then instead of at its next poll (the control planes advertise
/// what that read finds).
#[test]
fn a_new_vms_first_broadcast_is_reported_once() {
    let s = two_vlnet_sites("mgn");
    // The site's own VM may or may not count here: the node's first read
    // of its bridges records a MAC the bridge learned from the VM's first
    // frames without an arrival, when that read comes first.
    let before = arrivals(&s);
    let newcomer = s.sites[0]
        .host
        .add_vm("new", BRIDGE, "02:00:00:00:0a:20", vm_ip(20), 24)
        .unwrap();
    for _ in 0..3 {
        // Each first ping of a flushed cache broadcasts an ARP request.
        newcomer
            .ns()
            .run(&["ip", "neigh", "flush", "dev", "eth0"])
            .unwrap();
        let r = probe::ping(newcomer.ns(), vm_ip(1), 1, Duration::from_millis(20)).unwrap();
        assert_eq!(r.received, 1, "{r:?}");
    }
    let after = arrivals(&s);
    assert!(
        (after - before - 1.0).abs() < f64::EPSILON,
        "one arrival for three broadcasts: {before} then {after}"
    );
}

/// The bridge broadcasts from its own address too (IPv6 router
/// solicitations, every 4 s, then 8 s, 16 s, …), and its frames reach the
/// overlay port as a VM's do; each read of the bridges (every 500 ms) drops
/// the kernel's record of an address the bridge did not learn. The bridge
/// is no VM: two of its broadcasts, 1.5 s apart, are no arrival.
#[test]
fn the_bridges_own_broadcasts_are_not_arrivals() {
    let s = two_vlnet_sites("mgb");
    let host = s.sites[0].host.ns();
    // `ip -br link`: name, state, address, flags.
    let link = host
        .run(&["ip", "-br", "link", "show", "dev", BRIDGE])
        .unwrap();
    let mac: vlnet_dataplane::mac::MacAddr = link
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {link:?}"));
    let frame = support::frames::arp_request(mac.0, vm_ip(60), vm_ip(61));
    // The node has read its bridges since they came up.
    std::thread::sleep(Duration::from_secs(1));
    let before = arrivals(&s);
    for _ in 0..2 {
        host.within(|| support::packet_socket::PacketSocket::bind_named(BRIDGE).send(&frame))
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
    }
    let after = arrivals(&s);
    assert!(
        (after - before).abs() < f64::EPSILON,
        "the bridge ({mac}) counted as arrived: {before} then {after}"
    );
}

/// Forged source MACs the flooding VM broadcasts from.
const FORGED: u16 = 1000;

/// A VM broadcasting from 1,000 forged source MACs, twice over: each MAC is
/// reported once, not per frame (the second round adds next to nothing),
/// the bridges' reads that the reports start are coalesced, and the node
/// still serves its API and its real VM.
#[test]
fn forged_broadcast_sources_are_reported_once_each_and_the_node_keeps_serving() {
    let s = two_vlnet_sites("mgf");
    let before = arrivals(&s);
    // ARP requests (broadcast) from locally administered forged MACs.
    let frames: Vec<Vec<u8>> = (0..FORGED)
        .map(|n| {
            let [hi, lo] = n.to_be_bytes();
            support::frames::arp_request([0x06, 0, 0, 0xf1, hi, lo], vm_ip(50), vm_ip(51))
        })
        .collect();
    let vm_if = s.sites[0].vm.ifname();
    let send_all = || {
        s.sites[0]
            .vm
            .ns()
            .within(|| {
                let socket = support::packet_socket::PacketSocket::bind_named(vm_if);
                for f in &frames {
                    socket.send(f);
                }
            })
            .unwrap();
    };
    send_all();
    std::thread::sleep(Duration::from_secs(1));
    let first = arrivals(&s) - before;
    assert!(
        first > 0.0 && first <= f64::from(FORGED),
        "{first} arrivals for {FORGED} forged sources"
    );
    send_all();
    std::thread::sleep(Duration::from_secs(1));
    let second = arrivals(&s) - before;
    // Reported per new MAC, not per frame: a MAC whose record a read of
    // the bridges dropped in between may come again, not the thousand.
    assert!(
        second - first < f64::from(FORGED) / 10.0,
        "the same sources were reported again: {first} then {second}"
    );
    let daemon = s.sites[0].daemon.as_ref().unwrap();
    assert!(daemon.status_json().is_ok(), "the node stopped answering");
    let r = probe::ping(s.sites[0].vm.ns(), vm_ip(1), 5, Duration::from_millis(20)).unwrap();
    assert_eq!(r.received, 5, "the real VM after the flood: {r:?}");
}
