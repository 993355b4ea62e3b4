//! The trust boundary of the control plane, tried as an attacker would on
//! the WAN test-bed: a member that claims a cloud VM's MAC (any sequence
//! number, adverts, a full sync, and frames from it through the tunnel), a
//! member that advertises 100,000 MACs, an expired invite's key, a member
//! that stops reading its session, and one that floods the control port
//! with connections. Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use support::control::{
    connect_from_tunnel, hello, raise_fd_limit, raw_session, try_connect_from_tunnel, wg_ifname,
    CONTROLLER_TUNNEL,
};
use support::node::{sample, scrape, vlnet_binary};

use std::io::Write;
use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant};

use vlnet_dataplane::control::token::Token;
use vlnet_dataplane::control::wire::{self, FullSync, MacAdvert, MacWithdraw, Message};
use vlnet_dataplane::mac::MacAddr;
use vlnet_dataplane::wg::{AllowedIp, PeerConfig, SetRequest, WgDevice};
use vlnet_lab::beds::cluster::{Cluster, ClusterOptions, Place, KERNEL_VM};
use vlnet_lab::beds::scenario::{vm_ip, vm_mac};
use vlnet_lab::primitives::probe::{self, Capture};
use vlnet_lab::primitives::topology::VM_IF;
use vlnet_lab::unique_ifname;

/// The controller's default quota of MACs per member and VNI.
const QUOTA: usize = 1024;

/// The value of `name` (labels included) on node `n`'s `/metrics`.
fn metric(c: &Cluster, n: usize, name: &str) -> f64 {
    let daemon = &c.nodes[n].daemon;
    sample(&scrape(daemon.ns(), daemon.spec().metrics_port), name)
}

/// Node `n`'s FDB as `ctl fdb --json` lists it: (MAC, VTEP) pairs.
fn fdb(c: &Cluster, n: usize) -> Vec<(String, String)> {
    fdb_kinds(c, n)
        .into_iter()
        .map(|(m, v, _)| (m, v))
        .collect()
}

/// Node `n`'s FDB: (MAC, VTEP, kind) triples.
fn fdb_kinds(c: &Cluster, n: usize) -> Vec<(String, String, String)> {
    let text = c.nodes[n].daemon.ctl(&["fdb", "--json"]).unwrap();
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["mac"].as_str().unwrap().to_owned(),
                e["vtep"].as_str().unwrap_or_default().to_owned(),
                e["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until node `n` places `mac` behind `vtep`.
fn wait_fdb(c: &Cluster, n: usize, mac: &str, vtep: Ipv4Addr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entries = fdb(c, n);
        if entries
            .iter()
            .any(|(m, v)| m == mac && *v == vtep.to_string())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {n} does not place {mac} behind {vtep}: {entries:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Pings from node `from`'s VM to `to` until one answer, within 15 s.
fn reach(c: &Cluster, from: usize, to: Ipv4Addr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let r = probe::ping(c.nodes[from].vm.ns(), to, 1, Duration::from_millis(200));
        if r.is_ok_and(|r| r.received == 1) {
            return true;
        }
    }
    false
}

fn advert(vtep: Ipv4Addr, mac: MacAddr, seq: u32) -> Message {
    Message::MacAdvert(MacAdvert {
        vni: 100,
        mac,
        vtep,
        seq,
    })
}

fn log_len(c: &Cluster, n: usize) -> usize {
    c.nodes[n].daemon.log().len()
}

/// Frames from `victim`'s MAC through the tunnel from node `thief`, while
/// node `honest` pings the controller's VM (whose MAC it is): the victim
/// stays reachable, the thief sees none of its traffic, and the controller
/// and the honest node count the spoofed frames.
fn spoof_while_pinging(c: &Cluster, thief: usize, honest: usize, victim: MacAddr) {
    let thief_ns = c.nodes[thief].site.host().ns().clone();
    let capture = Capture::start(
        &thief_ns,
        "vlp100",
        &format!("ether dst {}", vm_mac(0)),
        &["eth.src"],
        None,
        Duration::from_secs(4),
    )
    .unwrap();
    let spoofer_ns = c.nodes[thief].vm.ns().clone();
    let spoofing = thread::spawn(move || {
        for _ in 0..150 {
            spoofer_ns
                .within(move || vlnet_dataplane::announce::announce(VM_IF, victim))
                .unwrap()
                .unwrap();
            thread::sleep(Duration::from_millis(10));
        }
    });
    let r = probe::ping(
        c.nodes[honest].vm.ns(),
        vm_ip(0),
        100,
        Duration::from_millis(20),
    )
    .unwrap();
    spoofing.join().unwrap();
    let seen = capture.finish().unwrap();
    assert!(
        r.received + 2 >= r.sent,
        "victim unreachable while spoofed: {r:?}"
    );
    assert!(
        seen.rows.is_empty(),
        "the thief received {} frames for the victim",
        seen.rows.len()
    );
    for n in [0, honest] {
        assert!(
            metric(c, n, "vlnet_drops_total{reason=\"source_not_owned\"}") > 0.0,
            "node {n} did not count the spoofed frames"
        );
    }
}

#[test]
fn a_member_cannot_take_a_cloud_vms_mac() {
    const THIEF: usize = 1;
    const HONEST: usize = 2;
    let mut c = Cluster::build_with(
        "tco",
        &[Place::PublicClient, Place::Cloud],
        &ClusterOptions {
            kernel_peers: 1,
            ..ClusterOptions::default()
        },
        vlnet_binary(),
    )
    .unwrap();
    c.wait_connected().unwrap();
    let victim: MacAddr = vm_mac(0).parse().unwrap();
    let thief = c.tunnel_addr(THIEF).unwrap();
    assert!(reach(&c, HONEST, vm_ip(0)));
    wait_fdb(&c, HONEST, &vm_mac(0), CONTROLLER_TUNNEL);

    // Adverts at any seq, and a full sync, for the controller's VM and for
    // the kernel-vxlan node's VM.
    let kernel_vm: MacAddr = vm_mac(KERNEL_VM).parse().unwrap();
    assert!(reach(&c, 0, vm_ip(KERNEL_VM)));
    let mut claims: Vec<Message> = [0, 1, 1000, u32::MAX]
        .into_iter()
        .map(|seq| advert(thief, victim, seq))
        .collect();
    claims.push(advert(thief, kernel_vm, u32::MAX));
    claims.push(Message::FullSync(FullSync {
        entries: vec![MacAdvert {
            vni: 100,
            mac: victim,
            vtep: thief,
            seq: 7,
        }],
    }));
    raw_session(&c, THIEF, &claims);
    assert!(
        metric(&c, 0, "vlnet_control_rejected_total{reason=\"not_owner\"}") >= 6.0,
        "refusals not counted"
    );
    assert!(metric(&c, 0, "vlnet_control_rejected_total{reason=\"forged\"}") < 1.0);
    for n in [0, HONEST] {
        let entries = fdb(&c, n);
        assert!(
            !entries
                .iter()
                .any(|(m, v)| (*m == vm_mac(0) || *m == vm_mac(KERNEL_VM))
                    && *v == thief.to_string()),
            "node {n} placed a stolen MAC behind the thief: {entries:?}"
        );
    }
    wait_fdb(&c, HONEST, &vm_mac(0), CONTROLLER_TUNNEL);

    spoof_while_pinging(&c, THIEF, HONEST, victim);
    assert!(reach(&c, HONEST, vm_ip(0)));
    assert!(reach(&c, 0, vm_ip(KERNEL_VM)));

    // The thief goes, the victim's node restarts: everything as before.
    c.controller()
        .daemon
        .ctl(&["client", "remove", &c.nodes[THIEF].member_name])
        .unwrap();
    c.nodes[0].daemon.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c.clients().unwrap().to_string().contains("connected") {
        assert!(
            Instant::now() < deadline,
            "the honest member did not reconnect"
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(reach(&c, HONEST, vm_ip(0)));
    wait_fdb(&c, HONEST, &vm_mac(0), CONTROLLER_TUNNEL);
    assert!(reach(&c, 0, vm_ip(KERNEL_VM)));
}

#[test]
fn a_member_holds_at_most_its_quota_of_macs() {
    const GREEDY: usize = 1;
    const HONEST: usize = 2;
    let mut c =
        Cluster::build("tcq", &[Place::PublicClient, Place::Cloud], vlnet_binary()).unwrap();
    c.wait_connected().unwrap();
    let greedy = c.tunnel_addr(GREEDY).unwrap();
    // Its daemon would reconnect and replace what we claim with its real
    // table; its WireGuard device (a process of its own) stays.
    c.nodes[GREEDY].daemon.kill9();
    let log_before = log_len(&c, 0);
    let adverts: Vec<Message> = (0..100_000u32)
        .map(|i| {
            let b = i.to_be_bytes();
            advert(greedy, MacAddr([0x02, 0xaa, b[0], b[1], b[2], b[3]]), 0)
        })
        .collect();
    raw_session(&c, GREEDY, &adverts);
    // Every MAC the control plane placed behind the member counts: its own
    // VM's and the claimed ones.
    let held = |n: usize| {
        fdb_kinds(&c, n)
            .iter()
            .filter(|(_, v, k)| *v == greedy.to_string() && k == "control")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while held(HONEST) < QUOTA && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(held(0), QUOTA, "controller");
    assert_eq!(held(HONEST), QUOTA, "honest member");
    assert!(
        metric(&c, 0, "vlnet_control_rejected_total{reason=\"quota\"}")
            >= f64::from(100_000 - u32::try_from(QUOTA).unwrap())
    );
    let logged = log_len(&c, 0) - log_before;
    assert!(logged < 1 << 20, "the refusals logged {logged} bytes");
    // A new VM on the honest member is installed everywhere and reached by
    // unicast.
    let host = c.nodes[HONEST].site.host();
    let newcomer = host
        .add_vm(
            "vmn",
            "br100",
            "02:00:00:00:0c:01",
            Ipv4Addr::new(192, 0, 2, 77),
            24,
        )
        .unwrap();
    newcomer
        .set_mtu(vlnet_lab::beds::cluster::SECURE_VM_MTU)
        .unwrap();
    probe::ping(newcomer.ns(), vm_ip(0), 1, Duration::from_millis(100)).unwrap();
    wait_fdb(&c, 0, "02:00:00:00:0c:01", c.tunnel_addr(HONEST).unwrap());
    let r = probe::ping(
        c.nodes[0].vm.ns(),
        Ipv4Addr::new(192, 0, 2, 77),
        5,
        Duration::from_millis(50),
    )
    .unwrap();
    assert_eq!(r.received, 5, "{r:?}");
}

/// `wg show IFNAME peers` as base64 keys.
fn wg_peers(ifname: &str) -> String {
    let out = std::process::Command::new("wg")
        .args(["show", ifname, "peers"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn b64(key: &[u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[test]
fn expired_and_used_invite_keys_open_no_tunnel() {
    let c = Cluster::build("tci", &[Place::PublicClient], vlnet_binary()).unwrap();
    c.wait_connected().unwrap();
    let ctl_if = wg_ifname(&c, 0);

    // The joined member's one-time key is gone from WireGuard.
    let peers = wg_peers(&ctl_if);
    assert_eq!(
        peers.lines().count(),
        1,
        "only the member's own key: {peers}"
    );

    // An invite that expires: its key is a peer until then, not after.
    let text = c.invite("late", "2s").unwrap();
    let token = Token::parse(&text).unwrap();
    let one_time = vlnet_dataplane::wg::public_key(&token.invite.private_key.0);
    assert!(wg_peers(&ctl_if).contains(&b64(&one_time)));
    let deadline = Instant::now() + Duration::from_secs(5);
    while wg_peers(&ctl_if).contains(&b64(&one_time)) {
        assert!(
            Instant::now() < deadline,
            "the expired invite's key is still a WireGuard peer"
        );
        thread::sleep(Duration::from_millis(100));
    }
    // Holding the token, a client brings a tunnel up with its key: no
    // handshake, nothing reaches the controller.
    let host = c.wan.add_public_client("late").unwrap();
    let ifname = unique_ifname("vltl");
    let device = host
        .host()
        .ns()
        .within({
            let ifname = ifname.clone();
            move || WgDevice::create(&ifname)
        })
        .unwrap()
        .unwrap();
    device
        .configure(
            &SetRequest::new()
                .private_key(token.invite.private_key.0)
                .peer(
                    PeerConfig::new(token.invite.controller_public_key)
                        .endpoint(token.invite.controller)
                        .allowed_ip(AllowedIp::new(CONTROLLER_TUNNEL.into(), 32).unwrap()),
                ),
        )
        .unwrap();
    let ns = host.host().ns();
    ns.run(&[
        "ip",
        "addr",
        "add",
        &format!("{}/24", token.invite.tunnel_addr),
        "dev",
        &ifname,
    ])
    .unwrap();
    ns.run(&["ip", "link", "set", &ifname, "up"]).unwrap();
    let r = probe::ping(ns, CONTROLLER_TUNNEL, 6, Duration::from_millis(500)).unwrap();
    assert_eq!(
        r.received, 0,
        "the expired invite's key reached the controller: {r:?}"
    );
    let handshakes = device.status().unwrap();
    assert!(
        handshakes.iter().all(|p| p.rx_bytes == 0),
        "the controller answered the expired key: {handshakes:?}"
    );
    drop(device);
}

/// The controller daemon's resident memory, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn a_member_that_stops_reading_is_dropped_and_memory_stays_bounded() {
    const STUCK: usize = 1;
    const BUSY: usize = 2;
    const BYSTANDER: usize = 3;
    let mut c = Cluster::build(
        "tcs",
        &[Place::PublicClient, Place::Cloud, Place::Cloud],
        vlnet_binary(),
    )
    .unwrap();
    c.wait_connected().unwrap();
    raise_fd_limit();
    let pid = c.nodes[0].daemon.pid().unwrap();
    let rss_before = rss_kib(pid);
    let log_before = log_len(&c, 0);

    // The stuck member: its daemon is gone (its WireGuard device stays), a
    // session opened by hand sends its Hello and never reads again.
    c.nodes[STUCK].daemon.kill9();
    let stuck_addr = c.tunnel_addr(STUCK).unwrap();
    let stuck_if = wg_ifname(&c, STUCK);
    let stuck_hello = wire::encode(&hello(&c, STUCK)).unwrap();
    // Held here, so that it closes with the test whatever happens.
    let stuck = c.nodes[STUCK]
        .daemon
        .ns()
        .within(move || {
            let mut s = connect_from_tunnel(&stuck_if, stuck_addr);
            s.write_all(&stuck_hello).unwrap();
            s
        })
        .unwrap();
    thread::sleep(Duration::from_millis(500));
    // A busy member makes the controller relay ~80,000 messages to it.
    c.nodes[BUSY].daemon.kill9();
    let busy = c.tunnel_addr(BUSY).unwrap();
    let mut churn = Vec::new();
    for round in 0..40u8 {
        for i in 0..QUOTA as u16 {
            let b = i.to_be_bytes();
            churn.push(advert(busy, MacAddr([0x02, 0xbb, round, 0, b[0], b[1]]), 0));
        }
        for i in 0..QUOTA as u16 {
            let b = i.to_be_bytes();
            churn.push(Message::MacWithdraw(MacWithdraw {
                vni: 100,
                mac: MacAddr([0x02, 0xbb, round, 0, b[0], b[1]]),
                vtep: busy,
                seq: 0,
            }));
        }
    }
    raw_session(&c, BUSY, &churn);
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(
        &c,
        0,
        "vlnet_control_rejected_total{reason=\"slow_reader\"}",
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the stuck session was not dropped; log:\n{}",
            c.nodes[0].daemon.log_tail(30)
        );
        thread::sleep(Duration::from_millis(200));
    }
    let grown = rss_kib(pid).saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "controller grew by {grown} KiB");
    let logged = log_len(&c, 0) - log_before;
    assert!(logged < 1 << 20, "the controller logged {logged} bytes");
    // The bystander kept up: it saw the last withdrawals.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fdb(&c, BYSTANDER)
        .iter()
        .any(|(m, _)| m.starts_with("02:bb:"))
    {
        assert!(Instant::now() < deadline, "the bystander lags behind");
        thread::sleep(Duration::from_millis(200));
    }
    drop(stuck);
    assert!(reach(&c, BYSTANDER, vm_ip(0)));
}

#[test]
fn a_connection_flood_from_a_member_is_refused_and_the_controller_keeps_serving() {
    const FLOODER: usize = 1;
    const BYSTANDER: usize = 2;
    let mut c =
        Cluster::build("tcf", &[Place::PublicClient, Place::Cloud], vlnet_binary()).unwrap();
    c.wait_connected().unwrap();
    raise_fd_limit();
    let pid = c.nodes[0].daemon.pid().unwrap();
    let log_before = log_len(&c, 0);
    // The flooder's daemon is gone; its WireGuard device stays.
    c.nodes[FLOODER].daemon.kill9();
    let stuck_addr = c.tunnel_addr(FLOODER).unwrap();
    // 1,100 connections from one member's address, held open without a
    // Hello: refused past a few, and the controller keeps serving.
    let flood_if = wg_ifname(&c, FLOODER);
    let held: Vec<_> = c.nodes[FLOODER]
        .daemon
        .ns()
        .within(move || {
            (0..1100)
                .filter_map(|_| try_connect_from_tunnel(&flood_if, stuck_addr).ok())
                .collect()
        })
        .unwrap();
    let asked = Instant::now();
    c.nodes[0].daemon.ctl(&["status"]).unwrap();
    assert!(asked.elapsed() < Duration::from_secs(5));
    let fds = open_fds(pid);
    assert!(fds < 300, "controller holds {fds} descriptors");
    eprintln!("{} connections held by the flooder", held.len());
    drop(held);
    assert!(
        metric(
            &c,
            0,
            "vlnet_control_rejected_total{reason=\"too_many_connections\"}"
        ) >= 1000.0
    );
    let logged = log_len(&c, 0) - log_before;
    assert!(logged < 10 << 20, "the controller logged {logged} bytes");
    assert!(c.clients().unwrap().to_string().contains("connected"));
    assert!(reach(&c, BYSTANDER, vm_ip(0)));
}
