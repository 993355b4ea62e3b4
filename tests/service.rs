//! vlnet as a host service: readiness told to systemd (`Type=notify`) only
//! once a VM behind the node reaches its peer; reload (API and SIGHUP)
//! applies a new config's difference without losing a ping on an untouched
//! VNI, and refuses a bad config with nothing changed; an upgrade swaps the
//! programs in place (keeping maps, counters and learned MACs) without
//! losing a ping, and refuses pins of another map layout with what to do;
//! a node following a Proxmox SDN zone (`[proxmox]`) serves a peer the zone
//! gains without a restart, and keeps its state when the zone's file breaks.
//! Needs root and clang-19 (to build "another release" of the
//! programs).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use support::node::{tcx_programs, vlnet_binary};
use support::pings::Background;
use vlnet_dataplane::bpf::{self, Programs};
use vlnet_dataplane::model::LinkAction;
use vlnet_lab::beds::scenario::{vm_ip, Scenario, Vtep};
use vlnet_lab::primitives::probe;
use vlnet_lab::{Datapath, NetNs, TempDir};

/// One echo request, answered within 300 ms (an ARP that failed is not
/// retried that soon: a path that was not there when it left fails).
fn answers_at_once(vm: &NetNs, ip: std::net::Ipv4Addr) -> bool {
    vm.output_within(
        &["ping", "-n", "-c", "1", "-W", "0.3", &ip.to_string()],
        Duration::from_secs(5),
    )
    .is_ok_and(|out| out.status.success())
}

#[test]
fn ready_only_once_a_vm_behind_the_node_reaches_its_peer() {
    let mut s = Scenario::build(
        "rdy",
        &[Vtep::Vlnet(Datapath::Tc), Vtep::Kernel],
        vlnet_binary(),
    )
    .unwrap();
    // A first start: nothing pinned, nothing forwarding before the daemon.
    let vm = s.sites[0].vm.ns().clone();
    let daemon = s.sites[0].daemon.as_mut().unwrap();
    daemon.ctl(&["teardown"]).unwrap();
    vm.run(&["ip", "neigh", "flush", "all"]).unwrap();
    assert!(
        !answers_at_once(&vm, vm_ip(1)),
        "forwarding without a daemon"
    );

    let dir = TempDir::new("notify").unwrap();
    let socket = dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&socket).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    daemon.set_env("NOTIFY_SOCKET", socket.to_str().unwrap());
    let watcher = thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = listener.recv(&mut buf).expect("no READY=1 within 20 s");
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(message.clone());
            if message.lines().any(|l| l == "READY=1") {
                // A neighbour entry left half-resolved by the check above
                // would hold the first packet until its next retry.
                vm.run(&["ip", "neigh", "flush", "all"]).unwrap();
                let ok = answers_at_once(&vm, vm_ip(1));
                return (seen, ok);
            }
        }
    });
    daemon.restart().unwrap();
    let (seen, reached) = watcher.join().unwrap();
    assert!(
        reached,
        "READY=1 before a VM behind the node could reach its peer: {seen:?}"
    );
    assert!(
        seen.len() >= 2 && seen[0].starts_with("STATUS="),
        "STATUS= lines while starting: {seen:?}"
    );
    let ready = seen.last().unwrap();
    assert!(
        ready.contains("STATUS=forwarding 1 VNIs"),
        "status once ready: {ready}"
    );
}

#[test]
fn reload_applies_the_difference_without_losing_a_ping() {
    let mut s = Scenario::build(
        "rld",
        &[Vtep::Vlnet(Datapath::Tc), Vtep::Kernel],
        vlnet_binary(),
    )
    .unwrap();
    let host = s.sites[0].host.ns().clone();
    let pinger = s.sites[0].vm.ns().clone();
    assert!(answers_at_once(&pinger, vm_ip(1)));
    let pings = Background::start(&pinger, vm_ip(1), 500, Duration::from_millis(10));
    thread::sleep(Duration::from_millis(300));

    let daemon = s.sites[0].daemon.as_mut().unwrap();
    let before = daemon.spec().clone();
    // A peer on the pinged VNI and a new VNI.
    let mut grown = before
        .clone()
        .with_vni(200, "br200", &[vlnet_lab::beds::scenario::host_ip(1)]);
    grown.vnis[0].peers.push("198.18.0.9".parse().unwrap());
    daemon.rewrite_config(grown.clone()).unwrap();
    let out = daemon.ctl(&["reload", "--json"]).unwrap();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let changes = report["changes"].to_string();
    assert!(changes.contains("VNI 200 added"), "{out}");
    assert!(changes.contains("VNI 100: peer 198.18.0.9 added"), "{out}");
    let took_ms = report["took_ms"].as_u64().unwrap();
    assert!(
        host.run(&["ip", "-o", "link", "show", "vlp200"])
            .unwrap()
            .contains("master br200"),
        "VNI 200's overlay port in its bridge"
    );
    assert_eq!(tcx_programs(&host, "vlx200"), ["tc_overlay_tx"]);
    let peers = daemon.ctl(&["peers", "--json"]).unwrap();
    assert!(peers.contains("198.18.0.9"), "{peers}");

    // VNI 200 removed again, by SIGHUP (what systemctl reload's kill
    // would send): the daemon stays up.
    let mut shrunk = grown.clone();
    shrunk.vnis.retain(|v| v.id != 200);
    daemon.rewrite_config(shrunk).unwrap();
    let pid = daemon.pid().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let sent = Instant::now();
    while host.run(&["ip", "link", "show", "vlp200"]).is_ok() {
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "VNI 200's port still there after SIGHUP"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let status = daemon.status_json().unwrap();
    assert_eq!(status["vnis"].as_array().unwrap().len(), 1, "{status}");

    // Bad configs are refused, with the message the daemon would start
    // with, and nothing changes.
    let good = std::fs::read_to_string(daemon.config_path()).unwrap();
    let refusals = [
        (
            good.replace("flow_tracking = true", "ttl = 0\nflow_tracking = true"),
            "node.ttl",
        ),
        (
            good.replace("127.0.0.1:", "127.0.0.2:"),
            "node.metrics_listen",
        ),
        ("[node\nname = 1".to_owned(), "line"),
    ];
    for (text, key) in refusals {
        std::fs::write(daemon.config_path(), &text).unwrap();
        let err = daemon.ctl(&["reload"]).unwrap_err().to_string();
        assert!(err.contains(key), "refusal does not name {key}: {err}");
    }
    std::fs::write(daemon.config_path(), good).unwrap();
    assert_eq!(daemon.status_json().unwrap()["vnis"], status["vnis"]);
    let peers = daemon.ctl(&["peers", "--json"]).unwrap();
    assert!(peers.contains("198.18.0.9"), "running config kept: {peers}");

    let report = pings.finish();
    eprintln!(
        "reload: {} of {} pings lost on the untouched VNI; adding a VNI and a peer took {took_ms} ms",
        report.sent - report.received,
        report.sent
    );
    assert_eq!(
        report.received, report.sent,
        "pings lost on the untouched VNI during reloads: {report:?}"
    );
    assert!(daemon.log().contains("config reloaded"));
}

/// A Proxmox running config (what "Apply" writes) with one VXLAN zone
/// `lab` of `peers` and the scenario's VNI as vnet `br100`.
fn running_config(peers: &[std::net::Ipv4Addr]) -> String {
    let peers: Vec<String> = peers.iter().map(ToString::to_string).collect();
    serde_json::json!({
        "version": 7,
        "zones": {"ids": {"lab": {"type": "vxlan", "peers": peers.join(","), "ipam": "pve"}}},
        "vnets": {"ids": {"br100": {"type": "vnet", "zone": "lab", "tag": 100}}},
    })
    .to_string()
}

/// Waits up to `within` for `vm` to reach `ip`.
fn reaches_within(vm: &NetNs, ip: std::net::Ipv4Addr, within: Duration) -> bool {
    let began = Instant::now();
    while began.elapsed() < within {
        if answers_at_once(vm, ip) {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn a_proxmox_zone_change_is_served_without_losing_a_ping() {
    use vlnet_lab::beds::scenario::host_ip;
    // Declared first, dropped last: the node's teardown reads the zone.
    let sdn = TempDir::new("sdn").unwrap();
    let mut s = Scenario::build(
        "sdn",
        &[Vtep::Vlnet(Datapath::Tc), Vtep::Kernel, Vtep::Kernel],
        vlnet_binary(),
    )
    .unwrap();
    let running = sdn.path().join(".running-config");
    std::fs::write(&running, running_config(&[host_ip(0), host_ip(1)])).unwrap();
    let pinger = s.sites[0].vm.ns().clone();
    assert!(
        answers_at_once(&pinger, vm_ip(2)),
        "both kernel nodes are static peers at first"
    );

    // The node's VNI now comes from the zone, which has only the first kernel node.
    let daemon = s.sites[0].daemon.as_mut().unwrap();
    let text = std::fs::read_to_string(daemon.config_path()).unwrap();
    let start = text.find("peers = [").unwrap();
    let end = start + text[start..].find(']').unwrap() + 1;
    let zoned = format!(
        "{}peers = []{}\n[proxmox]\nsdn = \"{}\"\nzone = \"lab\"\n",
        &text[..start],
        &text[end..],
        sdn.path().display()
    );
    std::fs::write(daemon.config_path(), zoned).unwrap();
    let out = daemon.ctl(&["reload", "--json"]).unwrap();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["changes"],
        serde_json::json!(["VNI 100: peer 198.18.0.3 removed"]),
        "{out}"
    );

    let pings = Background::start(&pinger, vm_ip(1), 600, Duration::from_millis(10));
    thread::sleep(Duration::from_millis(300));
    assert!(
        !answers_at_once(&pinger, vm_ip(2)),
        "a node the zone does not have"
    );

    // "Apply" adds the second kernel node: served within the poll period.
    let applied = Instant::now();
    std::fs::write(
        &running,
        running_config(&[host_ip(0), host_ip(1), host_ip(2)]),
    )
    .unwrap();
    assert!(
        reaches_within(&pinger, vm_ip(2), Duration::from_secs(6)),
        "the zone's new peer is not served: {}",
        daemon.log_tail(20)
    );
    let picked_up = applied.elapsed();
    assert!(daemon.log().contains("the Proxmox SDN zone changed"));

    // A zone that no longer reads is refused: the running state stays.
    std::fs::write(&running, "{\"zones\": ").unwrap();
    let began = Instant::now();
    while !daemon.log().contains("reload refused") {
        assert!(
            began.elapsed() < Duration::from_secs(6),
            "{}",
            daemon.log_tail(20)
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        daemon.log().contains(".running-config"),
        "the refusal names the file"
    );
    let peers = daemon.ctl(&["peers", "--json"]).unwrap();
    assert!(peers.contains("198.18.0.3"), "running config kept: {peers}");
    assert!(answers_at_once(&pinger, vm_ip(2)));

    let report = pings.finish();
    eprintln!(
        "proxmox zone: a new peer served {} ms after Apply; {} of {} pings lost on the untouched path",
        picked_up.as_millis(),
        report.sent - report.received,
        report.sent
    );
    assert_eq!(report.received, report.sent, "pings lost: {report:?}");
}

/// The VTEP programs built another way (for another BPF instruction set
/// version): other code, the same maps and behaviour — what the next vlnet
/// release looks like to the kernel.
fn other_build(dir: &Path) -> Vec<u8> {
    let ebpf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ebpf");
    let object = dir.join("vtep.bpf.o");
    let built = Command::new("clang-19")
        .args(["-target", "bpf", "-O2", "-g", "-mcpu=v2", "-I"])
        .arg(ebpf.join("include"))
        .arg("-idirafter")
        .arg(format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH))
        .arg("-c")
        .arg(ebpf.join("c/vtep.bpf.c"))
        .arg("-o")
        .arg(&object)
        .status()
        .expect("clang-19");
    assert!(built.success());
    std::fs::read(object).unwrap()
}

fn ifindex(name: &str) -> u32 {
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: `name` is NUL-terminated and outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "no interface {name:?}");
    index
}

#[test]
fn an_upgrade_swaps_the_programs_in_place_without_losing_a_ping() {
    let dir = TempDir::new("upg").unwrap();
    let other = other_build(dir.path());
    let mut s = Scenario::build(
        "upg",
        &[Vtep::Vlnet(Datapath::Tc), Vtep::Kernel],
        vlnet_binary(),
    )
    .unwrap();
    let pinger = s.sites[1].vm.ns().clone();
    assert_eq!(
        probe::ping(&pinger, vm_ip(0), 5, Duration::from_millis(10))
            .unwrap()
            .received,
        5
    );
    let peers = |d: &vlnet_lab::Daemon| -> serde_json::Value {
        serde_json::from_str(&d.ctl(&["peers", "--json"]).unwrap()).unwrap()
    };
    let rx_before = peers(s.sites[0].daemon.as_ref().unwrap())[0]["rx_packets"]
        .as_u64()
        .unwrap();
    let pings = Background::start(&pinger, vm_ip(0), 400, Duration::from_millis(10));
    thread::sleep(Duration::from_millis(500));

    let host = s.sites[0].host.ns().clone();
    let daemon = s.sites[0].daemon.as_mut().unwrap();
    let node = daemon.name().to_owned();
    daemon.kill9();
    // The other release takes over the running links, as its daemon would.
    let began = Instant::now();
    let links = host
        .within(|| {
            let mut programs = Programs::load_object(&node, &other).unwrap();
            programs
                .attach_tc(bpf::PROG_TC_UNDERLAY_RX, "ul0", ifindex("ul0"))
                .unwrap();
            programs
                .attach_tc(bpf::PROG_TC_OVERLAY_TX, "vlx100", ifindex("vlx100"))
                .unwrap();
            programs.links()
        })
        .unwrap();
    let swap = began.elapsed();
    assert!(
        links.len() == 2 && links.iter().all(|l| l.action == LinkAction::Upgraded),
        "the other build's programs replaced the running ones: {links:?}"
    );
    // And back: this release's daemon starts and switches them again.
    daemon.restart().unwrap();
    let status = daemon.status_json().unwrap();
    let actions: Vec<&str> = status["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["upgraded", "upgraded"], "{status}");
    assert_eq!(status["adopted"], true);

    let report = pings.finish();
    eprintln!(
        "upgrade: {} of {} pings lost across two program swaps; loading and switching took {swap:?}",
        report.sent - report.received,
        report.sent
    );
    assert_eq!(report.received, report.sent, "pings lost: {report:?}");
    let daemon = s.sites[0].daemon.as_ref().unwrap();
    let rx_after = peers(daemon)[0]["rx_packets"].as_u64().unwrap();
    assert!(
        rx_after >= rx_before + u64::from(report.received),
        "counters kept across the upgrade: {rx_before} then {rx_after}"
    );
    let fdb = daemon.ctl(&["fdb", "--json"]).unwrap();
    assert!(
        fdb.contains(s.sites[1].vm.mac()),
        "learned MACs kept: {fdb}"
    );
}

/// Removes a test node's pins on drop.
struct Pins(String);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = bpf::remove_pins(&self.0);
    }
}

#[test]
fn pins_of_another_map_layout_are_refused_with_what_to_do() {
    let pins = Pins(format!("layout-{}", std::process::id()));
    drop(Programs::load(&pins.0).unwrap());
    let dir = bpf::pin_dir(&pins.0).unwrap();
    let ours = format!("layout-{}", vlnet_ebpf::abi::VLNET_MAP_LAYOUT);
    assert!(dir.join(&ours).is_dir(), "the layout is recorded");
    assert!(Programs::load(&pins.0).is_ok(), "its own pins are adopted");

    // Pins an older release made, before a layout change.
    std::fs::rename(dir.join(&ours), dir.join("layout-0")).unwrap();
    let err = Programs::load(&pins.0).err().unwrap().to_string();
    assert!(
        err.contains("layout 0") && err.contains("vlnet ctl teardown"),
        "{err}"
    );
    std::fs::rename(dir.join("layout-0"), dir.join(&ours)).unwrap();

    // A map changed without a version bump: another shape under its name.
    let mut bench = aya::EbpfLoader::new()
        .load(vlnet_lab::primitives::trafficgen::TRAFFICGEN_OBJECT)
        .unwrap();
    let map = dir.join("maps/vlnet_arrivals_pending");
    std::fs::remove_file(&map).unwrap();
    bench.map_mut("bench_drops").unwrap().pin(&map).unwrap();
    let err = Programs::load(&pins.0).err().unwrap().to_string();
    assert!(
        err.contains("vlnet_arrivals_pending") && err.contains("vlnet ctl teardown"),
        "{err}"
    );
}
