//! The daemon's life: `kill -9` and restart while traffic flows (nothing
//! lost, state adopted), one daemon per node, teardown removes everything,
//! bad configs refused before the kernel is touched, `/metrics` valid for
//! promtool. Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use support::node::{scrape, vlnet_binary};

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use aya::programs::{tc::TcAttachType, SchedClassifier};
use vlnet::lab::probe;
use vlnet::lab::scenario::{vm_ip, Scenario, Vtep};
use vlnet::lab::{Datapath, NetNs};

fn kill9_and_restart_lose_nothing(datapath: Datapath) {
    let mut s =
        Scenario::build("k9", &[Vtep::Vlnet(datapath), Vtep::Kernel], vlnet_binary()).unwrap();
    let warmup = probe::ping(s.sites[1].vm.ns(), vm_ip(0), 5, Duration::from_millis(10)).unwrap();
    assert_eq!(warmup.received, 5);
    let before = s.sites[0]
        .daemon
        .as_ref()
        .unwrap()
        .ctl(&["peers", "--json"])
        .unwrap();
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    let rx_before = before[0]["rx_packets"].as_u64().unwrap();

    let pinger = s.sites[1].vm.ns().clone();
    let pings =
        std::thread::spawn(move || probe::ping(&pinger, vm_ip(0), 300, Duration::from_millis(10)));
    std::thread::sleep(Duration::from_millis(700));
    let daemon = s.sites[0].daemon.as_mut().unwrap();
    daemon.kill9();
    std::thread::sleep(Duration::from_millis(800));
    daemon.restart().unwrap();
    let report = pings.join().unwrap().unwrap();
    assert_eq!(
        report.received, report.sent,
        "pings lost across kill -9 and restart: {report:?}"
    );

    let status = daemon.status_json().unwrap();
    assert_eq!(
        status["adopted"], true,
        "restarted daemon adopts the pinned programs"
    );
    let after: serde_json::Value =
        serde_json::from_str(&daemon.ctl(&["peers", "--json"]).unwrap()).unwrap();
    // ping may stop short of 300 requests at its deadline on a loaded
    // machine: every request it sent was decapsulated and counted.
    assert!(
        after[0]["rx_packets"].as_u64().unwrap() >= rx_before + u64::from(report.sent),
        "counters kept across the restart: before {before}, after {after}, {} pings sent",
        report.sent
    );
    let fdb = daemon.ctl(&["fdb", "--json"]).unwrap();
    assert!(
        fdb.contains(s.sites[1].vm.mac()),
        "learned entries kept: {fdb}"
    );
}

#[test]
fn tc_kill9_and_restart_lose_nothing() {
    kill9_and_restart_lose_nothing(Datapath::Tc);
}

#[test]
fn xdp_kill9_and_restart_lose_nothing() {
    kill9_and_restart_lose_nothing(Datapath::Xdp);
}

#[test]
fn a_second_daemon_for_the_same_node_is_refused() {
    let s = Scenario::build(
        "dup",
        &[Vtep::Vlnet(Datapath::Tc), Vtep::Kernel],
        vlnet_binary(),
    )
    .unwrap();
    let daemon = s.sites[0].daemon.as_ref().unwrap();
    let out = daemon
        .ns()
        .cmd(vlnet_binary())
        .arg("daemon")
        .arg("--config")
        .arg(daemon.config_path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already running for node"), "{err}");
    assert!(
        daemon.status_json().is_ok(),
        "the first daemon is unaffected"
    );
}

/// A node whose bridge does not exist yet: vlnet creates it and its overlay
/// port; teardown removes both, the pins, and stops the daemon.
#[test]
fn teardown_removes_everything_vlnet_created() {
    let ns = NetNs::new("td").unwrap();
    ns.run(&[
        "ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul1",
    ])
    .unwrap();
    ns.run(&["ip", "addr", "add", "198.18.0.1/24", "dev", "ul0"])
        .unwrap();
    ns.run(&["ip", "link", "set", "ul0", "up"]).unwrap();
    let spec = vlnet::lab::NodeSpec::new("td", "198.18.0.1".parse().unwrap()).with_vni(
        4242,
        "vnet4242",
        &["198.18.0.2".parse().unwrap()],
    );
    let daemon = vlnet::lab::Daemon::start(&ns, spec, vlnet_binary()).unwrap();
    assert!(
        ns.run(&["ip", "link", "show", "vnet4242"]).is_ok(),
        "bridge created"
    );
    assert!(
        ns.run(&["ip", "link", "show", "vlp4242"]).is_ok(),
        "overlay port created"
    );
    assert!(daemon.pin_dir().join("maps/vlnet_fdb").exists());
    assert_eq!(
        tcx_programs(&ns, "ul0"),
        ["tc_underlay_rx"],
        "decap attached"
    );
    assert_eq!(
        tcx_programs(&ns, "vlx4242"),
        ["tc_overlay_tx"],
        "encap attached"
    );

    let out = daemon.ctl(&["teardown"]).unwrap();
    assert!(out.contains("stopped the daemon"), "{out}");
    for link in ["vnet4242", "vlp4242", "vlx4242"] {
        assert!(
            ns.run(&["ip", "link", "show", link]).is_err(),
            "{link} left behind"
        );
    }
    assert!(!daemon.pin_dir().exists(), "pins left behind");
    assert!(
        tcx_programs(&ns, "ul0").is_empty(),
        "decap still attached after teardown"
    );
}

/// Names of the programs attached at tcx ingress of `ifname` in `ns`.
fn tcx_programs(ns: &NetNs, ifname: &str) -> Vec<String> {
    let (_, programs) = ns
        .within(|| SchedClassifier::query_tcx(ifname, TcAttachType::Ingress).unwrap())
        .unwrap();
    programs
        .iter()
        .map(|p| p.name_as_str().unwrap_or_default().to_string())
        .collect()
}

fn daemon_with_config(text: &str) -> (bool, String) {
    let dir =
        std::env::temp_dir().join(format!("vlt-badcfg-{}-{}", std::process::id(), text.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vlnet.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(vlnet_binary())
        .args(["daemon", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configs_are_refused_before_the_kernel_is_touched() {
    let base = |node: &str, vni: &str| {
        format!(
            "[node]\nname = \"badcfg-{}\"\nunderlay = \"ul0\"\n{node}\nstate_dir = \"/tmp/vlt-badcfg-state\"\napi_socket = \"/tmp/vlt-badcfg.sock\"\n{vni}",
            std::process::id()
        )
    };
    let cases = [
        (
            base("", "[[vni]]\nid = 16777216\nbridge = \"br0\"\n"),
            "vni[0].id",
        ),
        (
            base(
                "",
                "[[vni]]\nid = 100\nbridge = \"br0\"\npeers = [\"224.0.0.1\"]\n",
            ),
            "vni[0].peers",
        ),
        (
            base(
                "datapath = \"fast\"",
                "[[vni]]\nid = 100\nbridge = \"br0\"\n",
            ),
            "datapath",
        ),
        (
            base("ttl = 0", "[[vni]]\nid = 100\nbridge = \"br0\"\n"),
            "node.ttl",
        ),
        (
            base("colour = \"blue\"", "[[vni]]\nid = 100\nbridge = \"br0\"\n"),
            "colour",
        ),
        (
            base(
                "",
                "[[vni]]\nid = 100\nbridge = \"this-name-is-far-too-long\"\n",
            ),
            "vni[0].bridge",
        ),
        ("[node\nname = 1".to_string(), "line"),
    ];
    for (text, key) in cases {
        let (ok, err) = daemon_with_config(&text);
        assert!(!ok, "config accepted:\n{text}");
        assert!(err.contains(key), "message does not name {key}: {err}");
    }
    let pins = Path::new("/sys/fs/bpf/vlnet").join(format!("badcfg-{}", std::process::id()));
    assert!(!pins.exists(), "a refused config must not load anything");
    assert!(
        !Path::new("/tmp/vlt-badcfg-state").exists(),
        "a refused config must not create state"
    );
}

#[test]
fn metrics_count_traffic_and_pass_promtool() {
    let s = Scenario::build(
        "met",
        &[Vtep::Vlnet(Datapath::Tc), Vtep::Kernel],
        vlnet_binary(),
    )
    .unwrap();
    let ping = probe::ping(s.sites[0].vm.ns(), vm_ip(1), 10, Duration::from_millis(10)).unwrap();
    assert_eq!(ping.received, 10);
    let daemon = s.sites[0].daemon.as_ref().unwrap();
    let body = scrape(daemon.ns(), daemon.spec().metrics_port);

    let value = |series: &str| -> f64 {
        body.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .map(|v| v.trim().parse::<f64>().unwrap())
            })
            .unwrap_or_else(|| panic!("{series} missing from:\n{body}"))
    };
    assert!(value("vlnet_tunnel_rx_packets_total{peer=\"198.18.0.2\",vni=\"100\"}") >= 10.0);
    assert!(value("vlnet_tunnel_tx_packets_total{peer=\"198.18.0.2\",vni=\"100\"}") >= 10.0);
    assert!(value("vlnet_tunnel_rx_bytes_total{peer=\"198.18.0.2\",vni=\"100\"}") > 1000.0);
    assert!(value("vlnet_drops_total{reason=\"unknown_vni\"}").abs() < f64::EPSILON);
    assert!(value("vlnet_fdb_entries{kind=\"learned\",vni=\"100\"}") >= 1.0);
    assert!((value("vlnet_up") - 1.0).abs() < f64::EPSILON);

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Learned MACs age out after `fdb_ageing_secs` without traffic, and come
/// back with the next frame; `datapath = "auto"` picks TC on a veth underlay.
#[test]
fn learned_entries_age_out_and_auto_picks_tc_on_veth() {
    let ns = NetNs::new("age").unwrap();
    for cmd in [
        "ip link add ul0 type veth peer name ul1",
        "ip addr add 198.18.0.1/24 dev ul0",
        "ip link set ul0 up",
        "ip link set ul1 up",
    ] {
        ns.run(&cmd.split(' ').collect::<Vec<_>>()).unwrap();
    }
    let spec = vlnet::lab::NodeSpec::new("age", "198.18.0.1".parse().unwrap())
        .with_vni(100, "br100", &["198.18.0.2".parse().unwrap()])
        .with_datapath(Datapath::Auto)
        .with_fdb_ageing(2);
    let daemon = vlnet::lab::Daemon::start(&ns, spec, vlnet_binary()).unwrap();
    assert_eq!(daemon.status_json().unwrap()["datapath"], "tc");

    // A frame from the peer VTEP arrives on ul0 (sent into ul1).
    let out = ns.run(&["ip", "-o", "link", "show", "ul1"]).unwrap();
    let ul1: u32 = out.split(':').next().unwrap().trim().parse().unwrap();
    let mut frame = support::frames::vxlan(
        "198.18.0.2".parse().unwrap(),
        "198.18.0.1".parse().unwrap(),
        100,
        0,
        &support::frames::inner_udp(support::frames::VM_B_MAC, 0, 10),
    );
    frame[0..6].fill(0xff);
    let send = || {
        ns.within(|| support::packet_socket::PacketSocket::bind(ul1).send(&frame))
            .unwrap();
    };
    let learned = || {
        daemon
            .ctl(&["fdb", "--json"])
            .unwrap()
            .contains("02:00:00:00:0a:01")
    };
    send();
    std::thread::sleep(Duration::from_millis(300));
    assert!(learned(), "source MAC learned");
    std::thread::sleep(Duration::from_secs(4));
    assert!(!learned(), "learned MAC aged out after 2 s without traffic");
    send();
    std::thread::sleep(Duration::from_millis(300));
    assert!(learned(), "learned again on the next frame");
}
