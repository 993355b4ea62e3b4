//! Tests of the lab test-bed itself (`vlnet_lab`): namespaces, the kernel
//! vxlan reference topology, the probes, and the daemon harness's contract
//! (driven by a stand-in script, since it must not depend on the daemon).
//!
//! Needs root, iproute2, iperf3, tshark and ethtool (`tests/install-deps.sh`).
//! Tests run in parallel: every name embeds the pid and a counter.
#![allow(
    clippy::expect_used,
    reason = "test helpers outside #[test] fns panic with a message, like the test bodies"
)]

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use vlnet_ebpf::abi::VLNET_VXLAN_PORT;
use vlnet_lab::primitives::probe::{self, Capture};
use vlnet_lab::{Daemon, Datapath, Host, LabError, NodeSpec, TempDir, Underlay, Vm};

const VNI: u32 = 100;
const BRIDGE: &str = "vmbr100";
const H1: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const H2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const VM1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const VM2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const VM1_MAC: &str = "02:00:00:00:01:01";
const VM2_MAC: &str = "02:00:00:00:02:01";
const IPERF_PORT: u16 = 5201;

fn netns_list() -> String {
    vlnet_lab::primitives::netns::run_host(&["ip", "netns", "list"]).expect("ip netns list")
}

fn assert_gone(names: &[String]) {
    let list = netns_list();
    let present: HashSet<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for name in names {
        assert!(
            !present.contains(name.as_str()),
            "namespace {name} survived its guard:\n{list}"
        );
    }
}

/// Two hosts, each running the Proxmox-style kernel vxlan for VNI 100 on a
/// bridge with one VM; the hosts list each other as flood peers.
struct KernelPair {
    vm1: Vm,
    vm2: Vm,
    h1: Host,
    h2: Host,
    underlay: Underlay,
}

impl KernelPair {
    fn new(tag: &str) -> Self {
        let underlay = Underlay::new(tag).expect("underlay");
        let h1 = underlay.add_host("h1", H1).expect("host 1");
        let h2 = underlay.add_host("h2", H2).expect("host 2");
        for (host, peer) in [(&h1, H2), (&h2, H1)] {
            host.add_bridge(BRIDGE).expect("bridge");
            let dev = host.add_kernel_vxlan(VNI, BRIDGE, &[peer]).expect("vxlan");
            assert_eq!(dev, "vxlan100");
        }
        let vm1 = h1.add_vm("vm1", BRIDGE, VM1_MAC, VM1, 24).expect("vm 1");
        let vm2 = h2.add_vm("vm2", BRIDGE, VM2_MAC, VM2, 24).expect("vm 2");
        Self {
            vm1,
            vm2,
            h1,
            h2,
            underlay,
        }
    }

    fn names(&self) -> Vec<String> {
        [
            self.vm1.ns(),
            self.vm2.ns(),
            self.h1.ns(),
            self.h2.ns(),
            self.underlay.switch(),
        ]
        .iter()
        .map(|ns| ns.name().to_owned())
        .collect()
    }
}

#[test]
fn kernel_vxlan_pair_carries_ping_vxlan_and_tcp() {
    let pair = KernelPair::new("kvx");
    let names = pair.names();
    let listed = netns_list();
    for name in &names {
        assert!(name.starts_with("vlt-"), "{name}");
        assert!(listed.contains(name.as_str()), "{name} not in:\n{listed}");
    }

    // The kernel vxlan is set up as a Proxmox node has it.
    let details = pair
        .h1
        .ns()
        .run(&["ip", "-d", "link", "show", "vxlan100"])
        .expect("ip -d link");
    for want in [
        "id 100",
        "local 198.18.0.1",
        "dstport 4789",
        "ttl 64",
        "df set",
        "mtu 1450",
    ] {
        assert!(details.contains(want), "missing {want:?} in:\n{details}");
    }
    let fdb = pair
        .h1
        .ns()
        .run(&["bridge", "fdb", "show", "dev", "vxlan100"])
        .expect("bridge fdb");
    assert!(fdb.contains("00:00:00:00:00:00 dst 198.18.0.2"), "{fdb}");

    // VM to VM through both kernel vxlans.
    let ping = probe::ping(pair.vm1.ns(), VM2, 20, Duration::from_millis(10)).expect("ping");
    assert_eq!((ping.sent, ping.received), (20, 20), "{ping:?}");
    assert!(ping.loss.abs() < f64::EPSILON, "{ping:?}");
    assert!(ping.rtt_avg_ms.is_some_and(|r| r > 0.0), "{ping:?}");

    // The wire (the switch) sees VXLAN with VNI 100 on UDP 4789, both ways.
    let fields = ["vxlan.vni", "udp.dstport", "ip.src", "ip.dst"];
    let capture = Capture::start(
        pair.underlay.switch(),
        pair.underlay.bridge(),
        "udp dst port 4789",
        &fields,
        Some(16),
        Duration::from_secs(5),
    )
    .expect("tshark start");
    // 8 echo requests and 8 replies; IPv6 and ARP chatter of the fresh VMs may
    // interleave (tunnelled too), so rows are judged by content, not count.
    let ping = probe::ping(pair.vm1.ns(), VM2, 8, Duration::from_millis(20)).expect("ping");
    assert_eq!(ping.received, 8, "{ping:?}");
    let report = capture.finish().expect("tshark");
    assert!(!report.rows.is_empty(), "{report:?}");
    assert!(
        report.column("vxlan.vni").iter().all(|v| *v == "100"),
        "{report:?}"
    );
    let port = VLNET_VXLAN_PORT.to_string();
    assert!(
        report.column("udp.dstport").iter().all(|p| *p == port),
        "{report:?}"
    );
    // Rows whose inner IPv4 source (second occurrence of ip.src) is a VM —
    // the pings; the bridges' IGMP reports also ride the tunnel — must go
    // between the hosts in both directions.
    let ipv4: Vec<(&str, &str)> = report
        .rows
        .iter()
        .filter_map(|r| r[2].split_once(','))
        .filter(|(_, inner)| *inner == "192.0.2.1" || *inner == "192.0.2.2")
        .collect();
    assert!(ipv4.len() >= 6, "{report:?}");
    let outer: HashSet<&str> = ipv4.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        outer,
        HashSet::from(["198.18.0.1", "198.18.0.2"]),
        "{report:?}"
    );
    let inner: HashSet<&str> = ipv4.iter().map(|(_, i)| *i).collect();
    assert_eq!(
        inner,
        HashSet::from(["192.0.2.1", "192.0.2.2"]),
        "{report:?}"
    );

    // TCP through it.
    let server = probe::iperf3_server(pair.vm2.ns(), VM2, IPERF_PORT).expect("iperf3 -s");
    let iperf = probe::iperf3_client(pair.vm1.ns(), VM2, 2, 1, IPERF_PORT).expect("iperf3 -c");
    assert!(iperf.bits_per_second > 0.0, "{iperf:?}");
    eprintln!("kernel vxlan pair: {ping:?}\n{iperf:?}");

    drop(server);
    drop(pair);
    assert_gone(&names);
}

#[test]
fn namespaces_are_removed_when_a_test_panics() {
    let (tx, rx) = mpsc::channel();
    let result = std::thread::spawn(move || {
        let underlay = Underlay::with_mtu("pnc", 9000).expect("underlay");
        let host = underlay.add_host("h", H1).expect("host");
        host.add_bridge("br0").expect("bridge");
        let vm = host.add_vm("vm", "br0", VM1_MAC, VM1, 24).expect("vm");
        // A process left running inside a namespace must not keep it alive.
        let sleeper = vm.ns().spawn(&["sleep", "600"]).expect("sleep");
        std::mem::forget(sleeper);
        tx.send([underlay.switch(), host.ns(), vm.ns()].map(|ns| ns.name().to_owned()))
            .expect("send");
        panic!("deliberate panic with a topology alive");
    })
    .join();
    assert!(result.is_err(), "the thread should have panicked");
    let names = rx.recv().expect("names");
    assert_gone(&names);
}

#[test]
fn underlay_mtu_and_checksum_offload_are_applied() {
    let underlay = Underlay::with_mtu("mtu", 9000).expect("underlay");
    let host = underlay.add_host("h", H2).expect("host");
    let link = host
        .ns()
        .run(&["ip", "-o", "link", "show", "ul0"])
        .expect("ip link");
    assert!(link.contains("mtu 9000"), "{link}");
    host.add_bridge("br0").expect("bridge");
    let dev = host.add_kernel_vxlan(200, "br0", &[]).expect("vxlan");
    let link = host
        .ns()
        .run(&["ip", "-o", "link", "show", &dev])
        .expect("ip link");
    assert!(link.contains("mtu 8950"), "{link}");
    let vm = host.add_vm("vm", "br0", VM2_MAC, VM2, 24).expect("vm");
    let link = vm
        .ns()
        .run(&["ip", "-o", "link", "show", "eth0"])
        .expect("ip link");
    assert!(
        link.contains("mtu 1450") && link.contains(VM2_MAC),
        "{link}"
    );
    host.tx_checksum_off("ul0").expect("ethtool");
    let features = host
        .ns()
        .run(&["ethtool", "-k", "ul0"])
        .expect("ethtool -k");
    assert!(features.contains("tx-checksumming: off"), "{features}");
    vm.tx_checksum_off().expect("ethtool in vm");
    // Addresses outside the allowed ranges are refused before anything is made.
    assert!(matches!(
        underlay.add_host("bad", Ipv4Addr::new(10, 0, 0, 1)),
        Err(LabError::Invalid(_))
    ));
    assert!(matches!(
        host.add_vm("bad", "br0", VM1_MAC, Ipv4Addr::new(10, 0, 0, 1), 24),
        Err(LabError::Invalid(_))
    ));
}

/// A stand-in for `vlnet` honouring the harness's contract: `daemon --config
/// F` writes `ready.<pid>` next to F after a delay and sleeps; `ctl --config F
/// status` succeeds only while such a daemon is alive; every call is logged to
/// `calls` next to the script.
const FAKE_VLNET: &str = r#"#!/bin/sh
calls="$(dirname "$0")/calls"
echo "$*" >> "$calls"
case "$1" in
daemon)
    dir="$(dirname "$3")"
    echo "fake daemon starting with $3"
    grep -q '^\[node\]' "$3" || exit 9
    if grep -q 'broken' "$3"; then echo boom >&2; exit 3; fi
    sleep 0.3
    touch "$dir/ready.$$"
    exec sleep 600 ;;
ctl)
    dir="$(dirname "$3")"
    case "$4" in
    status)
        for f in "$dir"/ready.*; do
            [ -e "$f" ] && [ -d "/proc/${f##*.}" ] && { echo '{"node":"fake"}'; exit 0; }
        done
        echo "not ready" >&2; exit 1 ;;
    netns) readlink /proc/self/ns/net ;;
    teardown) rm -f "$dir"/ready.*; echo "torn down" ;;
    *) echo "unknown command $4" >&2; exit 2 ;;
    esac ;;
*) exit 2 ;;
esac
"#;

fn fake_vlnet(dir: &Path) -> PathBuf {
    let path = dir.join("vlnet");
    std::fs::write(&path, FAKE_VLNET).expect("write fake");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn daemon_harness_honours_its_contract() {
    let scratch = TempDir::new("fake").expect("scratch");
    let fake = fake_vlnet(scratch.path());
    let underlay = Underlay::new("dmn").expect("underlay");
    let host = underlay.add_host("h", H1).expect("host");
    let spec = NodeSpec::new("fake", H1)
        .with_vni(VNI, BRIDGE, &[H2])
        .with_datapath(Datapath::Xdp);
    let name = spec.name.clone();
    assert!(name.starts_with("fake-"), "{name}");

    let mut daemon = Daemon::start(host.ns(), spec, &fake).expect("start");
    let dir = daemon.dir().to_owned();
    let pid = daemon.pid().expect("pid");
    assert!(
        dir.join(format!("ready.{pid}")).exists(),
        "start returned before ready"
    );
    assert_eq!(daemon.pin_dir(), Path::new("/sys/fs/bpf/vlnet").join(&name));

    // The config is the documented format with everything inside the dir.
    let text = std::fs::read_to_string(daemon.config_path()).expect("config");
    let config: toml::Value = toml::from_str(&text).expect("toml");
    assert_eq!(config["node"]["name"].as_str(), Some(name.as_str()));
    assert_eq!(config["node"]["datapath"].as_str(), Some("xdp"));
    assert_eq!(config["node"]["underlay"].as_str(), Some("ul0"));
    assert_eq!(
        config["node"]["api_socket"].as_str(),
        daemon.api_socket().to_str()
    );
    assert!(dir.join("state").is_dir());
    assert_eq!(config["vni"][0]["peers"][0].as_str(), Some("198.18.0.2"));

    // ctl runs inside the host's network namespace.
    let inside = daemon.ctl(&["netns"]).expect("ctl netns");
    let expected = host
        .ns()
        .run(&["readlink", "/proc/self/ns/net"])
        .expect("readlink");
    assert_eq!(inside.trim(), expected.trim());
    assert_eq!(daemon.status_json().expect("status")["node"], "fake");
    assert!(
        daemon.log().contains("fake daemon starting"),
        "{}",
        daemon.log()
    );

    // kill -9, then restart with a new process.
    daemon.kill9();
    assert!(daemon.pid().is_none());
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert!(daemon.ctl(&["status"]).is_err());
    daemon.restart().expect("restart");
    let pid2 = daemon.pid().expect("pid after restart");
    assert_ne!(pid, pid2);
    let err = daemon
        .ctl(&["bogus"])
        .expect_err("unknown command must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("bogus") && msg.contains("unknown command"),
        "{msg}"
    );

    drop(daemon);
    assert!(
        !Path::new(&format!("/proc/{pid2}")).exists(),
        "daemon survived drop"
    );
    assert!(!dir.exists(), "daemon dir survived drop");
    let calls = std::fs::read_to_string(scratch.path().join("calls")).expect("calls");
    assert!(
        calls
            .lines()
            .last()
            .is_some_and(|l| l.ends_with(" teardown")),
        "{calls}"
    );
}

#[test]
fn daemon_that_dies_at_start_is_reported_with_its_log() {
    let scratch = TempDir::new("fake").expect("scratch");
    let fake = fake_vlnet(scratch.path());
    let underlay = Underlay::new("dmx").expect("underlay");
    let host = underlay.add_host("h", H1).expect("host");
    let spec = NodeSpec::new("broken", H1);
    let dir = std::env::temp_dir().join(format!("vlt-{}", spec.name));
    let err = Daemon::start(host.ns(), spec, &fake).expect_err("must fail");
    let msg = err.to_string();
    assert!(matches!(err, LabError::NotReady { .. }), "{msg}");
    assert!(msg.contains("exited") && msg.contains("boom"), "{msg}");
    assert!(!dir.exists(), "dir of a failed start survived");
}
