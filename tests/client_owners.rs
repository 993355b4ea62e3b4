//! What a client owner does on its own node, and what the controller's
//! operator sees of it, end to end on the WAN test-bed: a class joins with
//! one reusable token (each join its own member `NAME-k`, the uses left
//! listed, the token spent after the last), a member's `vlnet ctl status`
//! shows its membership, the controller's `/metrics` shows each member's
//! WireGuard numbers and the build, and `vlnet ctl leave` removes a member
//! as `client remove` would while its node keeps serving its config.
//! Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use support::control::{reach, wg_ifname};
use support::node::{sample, scrape, vlnet_binary};
use vlnet_dataplane::control::token::Token;
use vlnet_lab::beds::cluster::{Cluster, Place};
use vlnet_lab::beds::scenario::{vm_ip, VNI};
use vlnet_lab::primitives::probe;

/// The controller's `client list --json` row named `name`.
fn client(c: &Cluster, name: &str) -> Option<serde_json::Value> {
    c.clients()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
}

/// `wg show IFNAME peers`, one base64 key a line.
fn wg_peers(ifname: &str) -> String {
    let out = std::process::Command::new("wg")
        .args(["show", ifname, "peers"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Member nodes 1 and 2 (`FIRST`, `SECOND`) join with one class token
/// of two uses; a third node cannot use it. Returns the members' tunnel
/// addresses.
fn join_a_class(c: &mut Cluster) -> (Ipv4Addr, Ipv4Addr) {
    let token = c
        .controller()
        .daemon
        .ctl(&[
            "client",
            "add",
            "class",
            "--vni",
            &VNI.to_string(),
            "--uses",
            "2",
            "--ttl",
            "1d",
        ])
        .unwrap()
        .trim()
        .to_owned();
    let join_addr = Token::parse(&token).unwrap().invite.tunnel_addr;
    assert_eq!(client(c, "class").unwrap()["uses_left"], 2);
    let list = c.controller().daemon.ctl(&["client", "list"]).unwrap();
    assert!(list.contains("USES LEFT"), "{list}");

    // Two nodes, one token: two members with names and addresses of their
    // own (not the token's join address).
    let joined = c.nodes[FIRST].daemon.join(&token).unwrap();
    assert!(joined.contains("as class-1"), "{joined}");
    assert_eq!(client(c, "class").unwrap()["uses_left"], 1);
    let joined = c.nodes[SECOND].daemon.join(&token).unwrap();
    assert!(joined.contains("as class-2"), "{joined}");
    let spent = client(c, "class").unwrap();
    assert_eq!(
        (spent["state"].as_str(), spent["uses_left"].as_u64()),
        (Some("spent"), Some(0)),
        "kept, spent, for a seat to come back: {spent}"
    );
    c.wait_connected().unwrap();
    let addr = |name: &str| -> Ipv4Addr {
        client(c, name).unwrap()["tunnel_addr"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (first, second) = (addr("class-1"), addr("class-2"));
    assert!(first != join_addr && second != join_addr && first != second);
    // Spent: the one-time key is no WireGuard peer of the controller, and
    // the token makes no third member.
    let ctl_if = wg_ifname(c, 0);
    let peers = wg_peers(&ctl_if);
    assert_eq!(peers.lines().count(), 2, "{peers}");
    let third = c.add_member(Place::PublicClient).unwrap();
    let err = c.nodes[third].daemon.join(&token).unwrap_err().to_string();
    // (The one-time key no longer opens a tunnel: the client cannot even
    // ask, and says why that may be.)
    assert!(err.contains("already used"), "{err}");
    assert!(client(c, "class-3").is_none());
    (first, second)
}

/// The first member's `vlnet ctl status` shows its membership.
fn member_view(c: &Cluster, tunnel_addr: Ipv4Addr) {
    let status = c.nodes[FIRST].daemon.status_json().unwrap();
    let member = &status["member"];
    assert_eq!(member["name"], "class-1", "{status}");
    let ctl_name = c.controller().daemon.status_json().unwrap()["node"].clone();
    assert_eq!(member["controller"], ctl_name);
    assert_eq!(member["tunnel_addr"], tunnel_addr.to_string());
    assert_eq!(member["session"], true);
    assert_eq!(member["vnis"], serde_json::json!([VNI]));
    assert_eq!(member["macs"], 1, "its VM's MAC: {status}");
    assert!(
        member["handshake_age_secs"].as_u64().unwrap() < 30,
        "{status}"
    );
    let text = c.nodes[FIRST].daemon.ctl(&["status"]).unwrap();
    let line = format!(
        "member    class-1 of controller {}",
        ctl_name.as_str().unwrap()
    );
    assert!(text.contains(&line), "{text}");
    assert!(text.contains("session   up"), "{text}");
    assert!(
        c.controller().daemon.status_json().unwrap()["member"].is_null(),
        "a controller is nobody's member"
    );
}

/// The controller's `/metrics`: each member's WireGuard numbers, the build
/// and the process.
fn operator_view(c: &Cluster) {
    let ctl = &c.controller().daemon;
    let metrics = scrape(ctl.ns(), ctl.spec().metrics_port);
    for member in ["class-1", "class-2"] {
        let with = |name: &str| format!("{name}{{member=\"{member}\"}}");
        let connected = sample(&metrics, &with("vlnet_member_connected"));
        assert!(
            (connected - 1.0).abs() < f64::EPSILON,
            "{member}: {connected}"
        );
        assert!(sample(&metrics, &with("vlnet_member_rx_bytes_total")) > 0.0);
        assert!(sample(&metrics, &with("vlnet_member_tx_bytes_total")) > 0.0);
        let age = sample(&metrics, &with("vlnet_member_handshake_age_seconds"));
        assert!((0.0..30.0).contains(&age), "{member}: {age}");
    }
    let build = metrics
        .lines()
        .find(|l| l.starts_with("vlnet_build_info{"))
        .unwrap_or_else(|| panic!("no vlnet_build_info in\n{metrics}"));
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert!(!build.contains("commit=\"unknown\""), "{build}");
    assert!(sample(&metrics, "process_resident_memory_bytes") > 1e6);
    assert!(sample(&metrics, "process_open_fds") > 0.0);
}

/// The second member leaves on its own: removed at the controller at once,
/// its key revoked, cut off from the others; its node keeps its static
/// config.
fn second_leaves(c: &Cluster) {
    let left = c.nodes[SECOND].daemon.ctl(&["leave"]).unwrap();
    assert!(left.contains("left controller"), "{left}");
    let asked = Instant::now();
    assert!(client(c, "class-2").is_none(), "{}", c.clients().unwrap());
    let peers = wg_peers(&wg_ifname(c, 0));
    assert_eq!(peers.lines().count(), 1, "{peers}");
    std::thread::sleep(Duration::from_secs(1).saturating_sub(asked.elapsed()));
    for (from, to) in [(SECOND, FIRST), (SECOND, 0), (FIRST, SECOND)] {
        let r = probe::ping(
            c.nodes[from].vm.ns(),
            vm_ip(to),
            3,
            Duration::from_millis(100),
        )
        .unwrap();
        assert_eq!(r.received, 0, "{from} -> {to} after the leave: {r:?}");
    }
    assert!(
        reach(c, FIRST, 0, Duration::from_secs(5)),
        "class-1 still served"
    );
    let status = c.nodes[SECOND].daemon.status_json().unwrap();
    assert!(status["member"].is_null(), "{status}");
    assert_eq!(
        status["vnis"][0]["vni"], VNI,
        "the config's VNI stays: {status}"
    );
    let wg = wg_ifname(c, SECOND);
    assert!(
        c.nodes[SECOND]
            .daemon
            .ns()
            .run(&["ip", "link", "show", &wg])
            .is_err(),
        "the tunnel is down"
    );
    let fdb = c.nodes[FIRST].daemon.ctl(&["fdb", "--json"]).unwrap();
    assert!(
        !fdb.contains(c.nodes[SECOND].vm.mac()),
        "its MAC withdrawn at the others: {fdb}"
    );
    // Leaving twice is refused, saying why.
    let err = c.nodes[SECOND]
        .daemon
        .ctl(&["leave"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("has not joined"), "{err}");

    // Joining again takes a new token, and makes one session.
    let token = c.invite("again", "1h").unwrap();
    let joined = c.nodes[SECOND].daemon.join(&token).unwrap();
    assert!(joined.contains("as again"), "{joined}");
    assert!(
        reach(c, SECOND, FIRST, Duration::from_secs(15)),
        "back after a new join"
    );
    std::thread::sleep(Duration::from_secs(3));
    let sessions = c
        .controller()
        .daemon
        .log()
        .matches("member connected member=\"again\"")
        .count();
    assert_eq!(sessions, 1, "the old membership's tasks ended");
}

/// The first member leaves with `--force`: here only, the controller keeps
/// it (offline) until `client remove`.
fn first_leaves_by_force(c: &Cluster) {
    let left = c.nodes[FIRST].daemon.ctl(&["leave", "--force"]).unwrap();
    assert!(left.contains("here only"), "{left}");
    assert!(c.nodes[FIRST].daemon.status_json().unwrap()["member"].is_null());
    let row = client(c, "class-1").expect("still a member at the controller");
    assert!(
        row["state"] == "connected" || row["state"] == "offline",
        "{row}"
    );
    c.controller()
        .daemon
        .ctl(&["client", "remove", "class-1"])
        .unwrap();
    assert!(client(c, "class-1").is_none());
}

/// The first member node (class-1).
const FIRST: usize = 1;
/// The second member node (class-2), behind NAT.
const SECOND: usize = 2;

#[test]
fn a_class_joins_with_one_token_and_a_member_leaves_on_its_own() {
    let mut c = Cluster::build("cow", &[], vlnet_binary()).unwrap();
    assert_eq!(c.add_member(Place::PublicClient).unwrap(), FIRST);
    assert_eq!(c.add_member(Place::NattedClient).unwrap(), SECOND);
    let (first, _) = join_a_class(&mut c);
    for (from, to) in [(FIRST, SECOND), (SECOND, FIRST), (FIRST, 0), (SECOND, 0)] {
        assert!(
            reach(&c, from, to, Duration::from_secs(15)),
            "{from} -> {to}"
        );
    }
    member_view(&c, first);
    operator_view(&c);
    second_leaves(&c);
    first_leaves_by_force(&c);
}
