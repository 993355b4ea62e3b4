//! The daemon's life: `kill -9` and restart while traffic flows (nothing
//! lost, state adopted; also when started with `ip netns exec`, in a private
//! mount namespace), pinned links checked before they are adopted (a host
//! rebuilt under the same names gets its programs re-attached; a bridge
//! recreated under a running daemon gets its overlay port back), one daemon
//! per node, teardown removes everything, bad configs refused before the
//! kernel is touched, `/metrics` valid for promtool. Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use support::node::{scrape, tcx_programs, vlnet_binary};
use support::pings::Background;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vlnet_lab::beds::scenario::{vm_ip, Scenario, ScenarioOptions, Vtep};
use vlnet_lab::primitives::probe;
use vlnet_lab::{Datapath, Launch, NetNs};

fn kill9_and_restart_lose_nothing(datapath: Datapath, launch: Launch) {
    let mut s = Scenario::build_with(
        "k9",
        &[Vtep::Vlnet(datapath), Vtep::Kernel],
        vlnet_binary(),
        ScenarioOptions {
            launch,
            ..ScenarioOptions::default()
        },
    )
    .unwrap();
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
    let pings = Background::start(&pinger, vm_ip(0), 300, Duration::from_millis(10));
    std::thread::sleep(Duration::from_millis(700));
    let daemon = s.sites[0].daemon.as_mut().unwrap();
    daemon.kill9();
    std::thread::sleep(Duration::from_millis(800));
    daemon.restart().unwrap();
    let report = pings.finish();
    assert_eq!(
        report.received, report.sent,
        "pings lost across kill -9 and restart: {report:?}"
    );

    let status = daemon.status_json().unwrap();
    assert_eq!(
        status["adopted"], true,
        "restarted daemon adopts the pinned programs"
    );
    let links = status["links"].as_array().unwrap();
    assert!(
        !links.is_empty() && links.iter().all(|l| l["action"] == "adopted"),
        "every link adopted as it was: {links:?}"
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
    kill9_and_restart_lose_nothing(Datapath::Tc, Launch::Nsenter);
}

#[test]
fn xdp_kill9_and_restart_lose_nothing() {
    kill9_and_restart_lose_nothing(Datapath::Xdp, Launch::Nsenter);
}

/// `ip netns exec` gives the daemon a mount namespace without the host's
/// BPF filesystem: it must still pin in the host's, or its successor has
/// nothing to adopt and traffic stops.
#[test]
fn ip_netns_exec_kill9_and_restart_lose_nothing() {
    kill9_and_restart_lose_nothing(Datapath::Tc, Launch::IpNetnsExec);
}

/// The interface indexes of `names` in `ns`.
fn ifindexes(ns: &NetNs, names: &[&str]) -> Vec<u32> {
    names
        .iter()
        .map(|name| {
            let out = ns.run(&["ip", "-o", "link", "show", name]).unwrap();
            out.split(':').next().unwrap().trim().parse().unwrap()
        })
        .collect()
}

/// Waits for `ifname` to leave `ns`: the kernel destroys a deleted
/// namespace's devices in the background, so a veth's other end goes a
/// moment later (seconds on a busy machine) — and its name may be needed
/// again.
fn await_gone(ns: &NetNs, ifname: &str) {
    let gone_by = std::time::Instant::now() + Duration::from_secs(10);
    while ns.run(&["ip", "link", "show", ifname]).is_ok() {
        assert!(
            std::time::Instant::now() < gone_by,
            "{ifname} outlives its namespace"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two daemons' worth of pins outlive their host: the daemon is killed, its
/// host namespace (and its VM's) deleted and rebuilt under the same names
/// with the same interfaces — the same names *and* indexes, so the pins'
/// names match. The pinned links of the dead interfaces must not be
/// adopted: the restarted daemon re-attaches them, says so, and traffic
/// flows.
#[test]
fn stale_pins_of_a_rebuilt_host_are_reattached() {
    let mut s = Scenario::build(
        "stale",
        &[Vtep::Vlnet(Datapath::Tc), Vtep::Kernel],
        vlnet_binary(),
    )
    .unwrap();
    let ping = || probe::ping(s.sites[1].vm.ns(), vm_ip(0), 5, Duration::from_millis(20)).unwrap();
    assert_eq!(ping().received, 5);
    let host = s.sites[0].host.ns().clone();
    let vm = s.sites[0].vm.ns().clone();
    let names = ["ul0", "br100", "vp0", "vlp100", "vlx100"];
    let before = ifindexes(&host, &names);

    s.sites[0].daemon.as_mut().unwrap().kill9();
    host.recreate().unwrap();
    vm.recreate().unwrap();
    // As the lab built it: uplink, bridge, VM port (the daemon adds the
    // overlay port).
    let switch = s.underlay.switch();
    let port = s.sites[0].host.switch_port().to_owned();
    await_gone(switch, &port);
    for cmd in [
        format!(
            "ip link add ul0 type veth peer name {port} netns {}",
            switch.name()
        ),
        "ip addr add 198.18.0.1/24 dev ul0".to_owned(),
        "ip link set ul0 up".to_owned(),
        "ip link add br100 type bridge".to_owned(),
        "ip link set br100 up".to_owned(),
        format!(
            "ip link add vp0 type veth peer name eth0 netns {}",
            vm.name()
        ),
        "ip link set vp0 master br100 up".to_owned(),
    ] {
        host.run(&cmd.split(' ').collect::<Vec<_>>()).unwrap();
    }
    switch
        .run(&[
            "ip",
            "link",
            "set",
            &port,
            "master",
            s.underlay.bridge(),
            "up",
        ])
        .unwrap();
    for cmd in [
        format!("ip link set eth0 address {}", s.sites[0].vm.mac()),
        "ip addr add 192.0.2.1/24 dev eth0".to_owned(),
        "ip link set eth0 up".to_owned(),
    ] {
        vm.run(&cmd.split(' ').collect::<Vec<_>>()).unwrap();
    }

    let daemon = s.sites[0].daemon.as_mut().unwrap();
    daemon.restart().unwrap();
    assert_eq!(
        ifindexes(&host, &names),
        before,
        "the rebuilt host has the same interface indexes: the pins' names match"
    );
    let after = probe::ping(s.sites[1].vm.ns(), vm_ip(0), 5, Duration::from_millis(20)).unwrap();
    assert_eq!(after.received, 5, "traffic flows through the rebuilt host");
    let daemon = s.sites[0].daemon.as_ref().unwrap();
    let status = daemon.status_json().unwrap();
    assert_eq!(status["adopted"], true, "the maps are adopted");
    let reattached: Vec<(String, String)> = status["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["action"] == "reattached")
        .map(|l| {
            (
                l["program"].as_str().unwrap().to_owned(),
                l["interface"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        reattached.contains(&("tc_underlay_rx".into(), "ul0".into()))
            && reattached.contains(&("tc_overlay_tx".into(), "vlx100".into())),
        "status reports the re-attach: {status}"
    );
    assert_eq!(
        tcx_programs(&host, "ul0"),
        ["tc_underlay_rx"],
        "decap attached"
    );
    let text = s.sites[0]
        .daemon
        .as_ref()
        .unwrap()
        .ctl(&["status"])
        .unwrap();
    assert!(text.contains("re-attached tc_underlay_rx on ul0"), "{text}");
}

/// A VNI's bridge deleted and recreated under a running daemon (an SDN
/// apply, `ifreload -a`): the overlay port rejoins it within a second,
/// logged, and traffic resumes.
#[test]
fn a_bridge_recreated_under_the_daemon_gets_its_port_back_within_a_second() {
    let s = Scenario::build(
        "rebr",
        &[Vtep::Vlnet(Datapath::Tc), Vtep::Kernel],
        vlnet_binary(),
    )
    .unwrap();
    let peer_vm = s.sites[1].vm.ns();
    assert_eq!(
        probe::ping(peer_vm, vm_ip(0), 3, Duration::from_millis(20))
            .unwrap()
            .received,
        3
    );
    let host = s.sites[0].host.ns();
    host.run(&["ip", "link", "del", "br100"]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let master = || {
        host.run(&["ip", "-o", "link", "show", "vlp100"])
            .unwrap()
            .contains("master br100")
    };
    assert!(!master(), "the port left with its bridge");
    // The host's network config brings the bridge and the VM's port back.
    for cmd in [
        "ip link add br100 type bridge",
        "ip link set br100 up",
        "ip link set vp0 master br100",
    ] {
        host.run(&cmd.split(' ').collect::<Vec<_>>()).unwrap();
    }
    let recreated = Instant::now();
    while !master() {
        assert!(
            recreated.elapsed() < Duration::from_secs(1),
            "vlp100 not back in br100 after a second"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let rejoined = recreated.elapsed();
    // Until the bridge learns again, the first pings may find it empty.
    let report = probe::ping(peer_vm, vm_ip(0), 50, Duration::from_millis(10)).unwrap();
    assert!(
        report.received >= 45,
        "traffic resumes after the port rejoined ({rejoined:?}): {report:?}"
    );
    let log = s.sites[0].daemon.as_ref().unwrap().log();
    assert!(log.contains("interfaces converged again"), "{log}");
    eprintln!("overlay port back in the recreated bridge after {rejoined:?}");
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
    let spec = vlnet_lab::NodeSpec::new("td", "198.18.0.1".parse().unwrap()).with_vni(
        4242,
        "vnet4242",
        &["198.18.0.2".parse().unwrap()],
    );
    let daemon = vlnet_lab::Daemon::start(&ns, spec, vlnet_binary()).unwrap();
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

    let log = daemon.log();
    assert!(log.contains("vlnet node ready"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that is not a terminal: {log:?}"
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
    let spec = vlnet_lab::NodeSpec::new("age", "198.18.0.1".parse().unwrap())
        .with_vni(100, "br100", &["198.18.0.2".parse().unwrap()])
        .with_datapath(Datapath::Auto)
        .with_fdb_ageing(2);
    let daemon = vlnet_lab::Daemon::start(&ns, spec, vlnet_binary()).unwrap();
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
