//! The WireGuard control plane end to end on the WAN test-bed: join by
//! token, VM-to-VM traffic across every pair (one client behind NAT) with
//! only WireGuard on the WAN, refused tokens, `client remove`, forged and
//! misdirected control messages, restarts, and a 30 s WAN cut. Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use support::control::{raw_frames, reach};
use support::node::{sample, scrape, vlnet_binary};

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use vlnet_dataplane::config::DEFAULT_CONTROL_PORT;
use vlnet_dataplane::control::wire::{self, Hello, MacAdvert, Message};
use vlnet_dataplane::mac::MacAddr;
use vlnet_lab::beds::cluster::{Cluster, ClusterOptions, Place, Site};
use vlnet_lab::beds::scenario::vm_ip;
use vlnet_lab::primitives::probe;

/// The value of the sample `name` (with its labels) on node `n`'s
/// `/metrics`; 0 when absent.
fn metric(c: &Cluster, n: usize, name: &str) -> f64 {
    let daemon = &c.nodes[n].daemon;
    sample(&scrape(daemon.ns(), daemon.spec().metrics_port), name)
}

#[test]
fn four_nodes_across_the_wan_only_wireguard_on_the_wire() {
    let c = Cluster::build_with(
        "cpw",
        &[Place::Cloud, Place::PublicClient, Place::NattedClient],
        &ClusterOptions {
            kernel_peers: 1,
            ..ClusterOptions::default()
        },
        vlnet_binary(),
    )
    .unwrap();
    c.wait_connected().unwrap();
    // The controller's static kernel-vxlan peer keeps working beside the
    // members (plain VXLAN on the cloud LAN).
    let kernel = &c.kernels[0];
    let r = probe::ping(kernel.vm.ns(), vm_ip(0), 5, Duration::from_millis(50)).unwrap();
    assert!(r.received >= 4, "kernel peer -> controller: {r:?}");
    for from in 0..4 {
        for to in (0..4).filter(|t| *t != from) {
            assert!(
                reach(&c, from, to, Duration::from_secs(15)),
                "{from} -> {to} unreachable"
            );
        }
    }
    // Every ordered pair, strict, while both client WAN links are captured.
    let captures: Vec<_> = [2, 3]
        .iter()
        .map(|&n| {
            let Site::Client(client) = &c.nodes[n].site else {
                unreachable!()
            };
            client
                .capture_wan(
                    "udp",
                    &["udp.srcport", "udp.dstport"],
                    None,
                    Duration::from_secs(6),
                )
                .unwrap()
        })
        .collect();
    for from in 0..4 {
        for to in (0..4).filter(|t| *t != from) {
            let r = probe::ping(
                c.nodes[from].vm.ns(),
                vm_ip(to),
                3,
                Duration::from_millis(20),
            )
            .unwrap();
            assert_eq!(r.received, 3, "{from} -> {to}: {r:?}");
        }
    }
    for (capture, n) in captures.into_iter().zip([2, 3]) {
        let report = capture.finish().unwrap();
        assert!(
            !report.rows.is_empty(),
            "node {n}: nothing captured on its WAN link"
        );
        for row in &report.rows {
            assert!(
                !row.iter().any(|p| p == "4789"),
                "node {n}: cleartext VXLAN on the WAN: {row:?}"
            );
            assert!(
                row.iter().any(|p| p == "51820"),
                "node {n}: UDP that is not WireGuard on the WAN: {row:?}"
            );
        }
    }
    // TCP across every pair.
    for (a, b) in [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)] {
        let _server = probe::iperf3_server(c.nodes[b].vm.ns(), vm_ip(b), 5201).unwrap();
        let r = probe::iperf3_client(c.nodes[a].vm.ns(), vm_ip(b), 2, 1, 5201).unwrap();
        assert!(r.bits_per_second > 10e6, "iperf3 {a} -> {b}: {r:?}");
    }
    // Operators' tools work on the tunnel: `wg show` lists every member with
    // a recent handshake.
    let ifname = &c
        .controller()
        .daemon
        .spec()
        .wireguard
        .as_ref()
        .unwrap()
        .ifname;
    let wg = c
        .controller()
        .daemon
        .ns()
        .run(&["wg", "show", ifname])
        .unwrap();
    assert_eq!(wg.matches("peer: ").count(), 3, "{wg}");
    assert_eq!(wg.matches("latest handshake").count(), 3, "{wg}");
    // Every node knows every VM's MAC from the control plane.
    for n in 0..4 {
        let fdb = c.nodes[n].daemon.ctl(&["fdb"]).unwrap();
        for other in (0..4).filter(|o| *o != n) {
            assert!(
                fdb.contains(c.nodes[other].vm.mac()),
                "node {n} lacks vm{other}: {fdb}"
            );
        }
    }
}

#[test]
fn tokens_expired_reused_or_tampered_are_refused() {
    let c = Cluster::build("cpt", &[], vlnet_binary()).unwrap();
    let wan = &c.wan;
    let host = wan.add_public_client("t1").unwrap();
    host.host().add_bridge("br100").unwrap();
    let spec = vlnet_lab::NodeSpec::new("tk", host.host().ip())
        .with_vni(100, "br100", &[])
        .as_member();
    let member = vlnet_lab::Daemon::start(host.host().ns(), spec, vlnet_binary()).unwrap();

    // Altered: one character in the middle of the payload changed. The
    // client sees it at once (the token's checksum), without a word to the
    // controller.
    let token = c.invite("t1", "1h").unwrap();
    let mut bytes = token.clone().into_bytes();
    let i = bytes.len() / 3;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let asked = Instant::now();
    let err = member
        .ctl(&["join", &String::from_utf8(bytes).unwrap()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("altered"), "{err}");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "refused after {:?}",
        asked.elapsed()
    );

    // Tampered where only the controller can tell: the same token in the
    // first format (no checksum), whose tag covered the other version.
    let body = token.rsplit_once('.').unwrap().0;
    let v1 = body.replacen("vlnet2.", "vlnet1.", 1);
    let err = member.ctl(&["join", &v1]).unwrap_err().to_string();
    assert!(err.contains("not from this controller"), "{err}");

    // Expired: a 1 s token used 2 s later.
    let short = c.invite("t2", "1s").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let err = member.ctl(&["join", &short]).unwrap_err().to_string();
    assert!(err.contains("expired"), "{err}");

    // Reused: the good token works once; a second node cannot reuse it.
    member.ctl(&["join", &token]).unwrap();
    let other = wan.add_public_client("t3").unwrap();
    other.host().add_bridge("br100").unwrap();
    let spec = vlnet_lab::NodeSpec::new("tk2", other.host().ip())
        .with_vni(100, "br100", &[])
        .as_member();
    let second = vlnet_lab::Daemon::start(other.host().ns(), spec, vlnet_binary()).unwrap();
    let err = second.ctl(&["join", &token]).unwrap_err().to_string();
    assert!(err.contains("already used"), "{err}");
    // The tampered token reached the controller and was counted there.
    assert!(metric(&c, 0, "vlnet_control_rejected_total{reason=\"bad_token\"}") >= 1.0);
}

#[test]
fn client_remove_cuts_the_client_off_within_a_second() {
    let c = Cluster::build("cpr", &[Place::PublicClient, Place::Cloud], vlnet_binary()).unwrap();
    c.wait_connected().unwrap();
    assert!(reach(&c, 1, 0, Duration::from_secs(10)));
    assert!(reach(&c, 1, 2, Duration::from_secs(10)));
    c.controller()
        .daemon
        .ctl(&["client", "remove", "member1"])
        .unwrap();
    let removed = Instant::now();
    std::thread::sleep(Duration::from_secs(1).saturating_sub(removed.elapsed()));
    for to in [0, 2] {
        let r = probe::ping(c.nodes[1].vm.ns(), vm_ip(to), 5, Duration::from_millis(100)).unwrap();
        assert_eq!(
            r.received, 0,
            "removed client still reaches node {to}: {r:?}"
        );
    }
    // The others keep talking, and no longer list the client's MAC.
    assert!(reach(&c, 2, 0, Duration::from_secs(5)));
    let fdb = c.nodes[2].daemon.ctl(&["fdb"]).unwrap();
    assert!(
        !fdb.contains(c.nodes[1].vm.mac()) || fdb.contains("learned"),
        "{fdb}"
    );
    let list = c.clients().unwrap();
    assert!(!list.to_string().contains("member1"), "{list}");
}

#[test]
fn forged_and_misdirected_control_messages_are_refused_and_counted() {
    let c = Cluster::build("cpf", &[Place::PublicClient, Place::Cloud], vlnet_binary()).unwrap();
    c.wait_connected().unwrap();
    let victim_vtep = c.tunnel_addr(2).unwrap();
    let me = c.tunnel_addr(1).unwrap();
    let hello = Message::Hello(Hello {
        node: "member1".into(),
        version: "test".into(),
        vtep: me,
        vnis: vec![100],
        underlay: None,
    });
    // member1 claims a MAC behind member2's VTEP.
    let stolen = MacAddr([0x02, 0xee, 0, 0, 0, 1]);
    let forged = Message::MacAdvert(MacAdvert {
        vni: 100,
        mac: stolen,
        vtep: victim_vtep,
        seq: 1000,
    });
    raw_frames(
        &c,
        1,
        vec![
            wire::encode(&hello).unwrap(),
            wire::encode(&forged).unwrap(),
        ],
    );
    assert!(metric(&c, 0, "vlnet_control_rejected_total{reason=\"forged\"}") >= 1.0);
    let fdb = c.controller().daemon.ctl(&["fdb"]).unwrap();
    assert!(
        !fdb.contains("02:ee:00:00:00:01"),
        "forged route installed: {fdb}"
    );

    // A frame of another protocol version.
    let mut bad = wire::encode(&hello).unwrap();
    bad[0] = 9;
    let answer = raw_frames(&c, 1, vec![bad]);
    let mut decoder = wire::Decoder::new();
    decoder.feed(&answer);
    match decoder.next_message() {
        Ok(Some(Message::Error(e))) => assert!(e.message.contains("version"), "{e:?}"),
        other => panic!("expected an Error about the version, got {other:?}"),
    }
    assert!(
        metric(
            &c,
            0,
            "vlnet_control_rejected_total{reason=\"bad_version\"}"
        ) >= 1.0
    );

    // The control port is not reachable outside the tunnel: a cloud host
    // that routes the controller's tunnel address over the LAN is refused.
    let cloud = c.nodes[2].site.host();
    cloud
        .ns()
        .run(&[
            "ip",
            "route",
            "add",
            "198.19.0.1/32",
            "via",
            "198.18.0.1",
            "dev",
            "ul0",
        ])
        .unwrap();
    let refused = cloud
        .ns()
        .within(|| {
            TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::new(198, 19, 0, 1), DEFAULT_CONTROL_PORT)),
                Duration::from_secs(2),
            )
            .is_err()
        })
        .unwrap();
    assert!(refused, "control port answered over the underlay");
    // The members are still connected and the cluster still forwards.
    c.wait_connected().unwrap();
    assert!(reach(&c, 1, 2, Duration::from_secs(10)));
}

#[test]
fn restarts_keep_state_and_a_30s_wan_cut_loses_nothing() {
    let mut c =
        Cluster::build("cps", &[Place::NattedClient, Place::Cloud], vlnet_binary()).unwrap();
    c.wait_connected().unwrap();
    assert!(reach(&c, 1, 0, Duration::from_secs(15)));

    // Controller restart: members reconnect without a new token.
    c.nodes[0].daemon.restart().unwrap();
    c.wait_connected().unwrap();
    assert!(reach(&c, 1, 0, Duration::from_secs(15)));
    // Client crash and restart: it resumes from its membership file, and
    // encrypted traffic keeps flowing while its daemon is down (the
    // WireGuard device runs in a process of its own and is adopted).
    let pinger = c.nodes[1].vm.ns().clone();
    let pings =
        std::thread::spawn(move || probe::ping(&pinger, vm_ip(0), 100, Duration::from_millis(20)));
    std::thread::sleep(Duration::from_millis(300));
    c.nodes[1].daemon.kill9();
    std::thread::sleep(Duration::from_millis(800));
    c.nodes[1].daemon.restart().unwrap();
    let r = pings.join().unwrap().unwrap();
    assert_eq!(
        r.received, r.sent,
        "encrypted pings lost across kill -9: {r:?}"
    );
    c.wait_connected().unwrap();
    assert!(reach(&c, 1, 2, Duration::from_secs(15)));

    // A second VM on the client, for client-local traffic during the cut.
    let Site::Client(client) = &c.nodes[1].site else {
        unreachable!()
    };
    let local = client
        .host()
        .add_vm(
            "vmx",
            "br100",
            "02:00:00:00:01:aa",
            Ipv4Addr::new(192, 0, 2, 100),
            24,
        )
        .unwrap();
    local
        .set_mtu(vlnet_lab::beds::cluster::SECURE_VM_MTU)
        .unwrap();
    client.cut().unwrap();
    let cut_at = Instant::now();
    // Client-local traffic goes on for the whole cut.
    let r = probe::ping(local.ns(), vm_ip(1), 60, Duration::from_millis(500)).unwrap();
    assert_eq!(
        r.received, r.sent,
        "client-local traffic lost during the cut: {r:?}"
    );
    assert!(cut_at.elapsed() >= Duration::from_secs(29));
    let offline = c.clients().unwrap();
    assert!(offline.to_string().contains("offline"), "{offline}");
    client.restore().unwrap();
    let restored = Instant::now();
    c.wait_connected().unwrap();
    let resync = restored.elapsed();
    eprintln!("control session back {resync:?} after the WAN returned");
    // Within a second, plus the 100 ms polling of `client list`.
    assert!(
        resync < Duration::from_millis(1500),
        "resync took {resync:?}"
    );
    // What changed during the cut (the new local VM) reached the cluster.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let fdb = c.nodes[2].daemon.ctl(&["fdb"]).unwrap();
        if fdb.contains("02:00:00:00:01:aa") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new MAC not distributed after the cut: {fdb}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(reach(&c, 2, 1, Duration::from_secs(10)));
    drop(local);
}
