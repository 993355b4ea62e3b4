//! Tests of the WAN test-bed (`vlnet_lab::beds::wan`): public and natted clients
//! reach the cloud, only the public one is reachable from it, the home router
//! masquerades, a cut link passes nothing until restored, a client added with
//! a delay sees the RTT it asked for, and everything goes away on drop.
//!
//! Needs root, `/dev/net/tun`, iproute2, iputils-ping, nftables, tshark and bash (its
//! `/dev/udp` redirection sends single datagrams); see `tests/install-deps.sh`.
//! Tests run in parallel: every name embeds the pid and a counter.
#![allow(
    clippy::expect_used,
    reason = "test helpers outside #[test] fns panic with a message, like the test bodies"
)]

use std::net::Ipv4Addr;
use std::time::Duration;

use vlnet_lab::primitives::probe::{self, Capture, PingReport};
use vlnet_lab::{Host, NetNs, Wan, WanClient, WanLink};

const CLOUD_INDEX: u8 = 1;
const PROBE_PORT: u16 = 40000;
const VM_MAC: &str = "02:00:00:00:0a:01";
const VM_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// A cloud host and one client of each kind.
struct Bed {
    public: WanClient,
    natted: WanClient,
    cloud: Host,
    wan: Wan,
}

impl Bed {
    fn new(tag: &str) -> Self {
        let wan = Wan::new(tag).expect("wan");
        let cloud = wan
            .add_cloud_host("cloud", CLOUD_INDEX)
            .expect("cloud host");
        let public = wan.add_public_client("pub").expect("public client");
        let natted = wan.add_natted_client("nat").expect("natted client");
        Self {
            public,
            natted,
            cloud,
            wan,
        }
    }
}

fn ping(from: &NetNs, to: Ipv4Addr, count: u32) -> PingReport {
    probe::ping(from, to, count, Duration::from_millis(100)).expect("ping")
}

fn assert_all_received(report: &PingReport, what: &str) {
    assert!(
        report.sent > 0 && report.received == report.sent,
        "{what}: {report:?}"
    );
}

fn assert_none_received(report: &PingReport, what: &str) {
    assert!(
        report.sent > 0 && report.received == 0,
        "{what}: {report:?}"
    );
}

/// Sends one UDP datagram from `ns` to `to:port` (bash's `/dev/udp`).
fn send_udp(ns: &NetNs, to: Ipv4Addr, port: u16) {
    ns.run(&[
        "bash",
        "-c",
        &format!("echo vlnet-wan-probe > /dev/udp/{to}/{port}"),
    ])
    .expect("send a UDP datagram");
}

#[test]
fn clients_reach_the_cloud_and_only_the_public_one_is_reachable() {
    let bed = Bed::new("wanr");
    let cloud_ip = bed.cloud.ip();
    assert_eq!(cloud_ip, Ipv4Addr::new(198, 18, 0, CLOUD_INDEX));

    assert_all_received(
        &ping(bed.public.host().ns(), cloud_ip, 5),
        "public client → cloud",
    );
    assert_all_received(
        &ping(bed.natted.host().ns(), cloud_ip, 5),
        "NATed client → cloud",
    );
    assert_all_received(
        &ping(bed.cloud.ns(), bed.public.host().ip(), 5),
        "cloud → public client",
    );
    assert_eq!(bed.public.public_ip(), bed.public.host().ip());
    assert_none_received(
        &ping(bed.cloud.ns(), bed.natted.host().ip(), 3),
        "cloud → NATed client's private address",
    );

    // Without a mapping, a datagram to the home router's WAN address stays
    // there: the NATed client sees nothing.
    let capture = Capture::start(
        bed.natted.host().ns(),
        bed.natted.host().underlay_if(),
        &format!("udp port {PROBE_PORT}"),
        &["ip.src"],
        None,
        Duration::from_secs(2),
    )
    .expect("tshark on the NATed client");
    for _ in 0..3 {
        send_udp(bed.cloud.ns(), bed.natted.public_ip(), PROBE_PORT);
    }
    let seen = capture.finish().expect("tshark");
    assert!(seen.rows.is_empty(), "inbound reached the client: {seen:?}");
}

#[test]
fn home_router_masquerades_the_natted_client() {
    let bed = Bed::new("wanm");
    let home = bed
        .natted
        .home_router()
        .expect("a NATed client has a home router");
    assert_eq!(bed.natted.public_ip(), home.ip());
    assert_ne!(bed.natted.public_ip(), bed.natted.host().ip());

    // The NAT table lives in the home router only.
    let tables = |ns: &NetNs| ns.run(&["nft", "list", "tables"]).expect("nft list");
    assert!(tables(home.ns()).contains("table ip vlnet-lab"));
    for ns in [bed.natted.host().ns(), bed.wan.router(), bed.cloud.ns()] {
        assert!(!tables(ns).contains("vlnet-lab"), "{}", ns.name());
    }

    let filter = format!("udp dst port {PROBE_PORT}");
    let fields = ["ip.src", "ip.dst"];
    let timeout = Duration::from_secs(5);
    let at_cloud = Capture::start(
        bed.cloud.ns(),
        bed.cloud.underlay_if(),
        &filter,
        &fields,
        Some(1),
        timeout,
    )
    .expect("tshark on the cloud host");
    let on_wan = bed
        .natted
        .capture_wan(&filter, &fields, Some(1), timeout)
        .expect("tshark on the WAN link");
    send_udp(bed.natted.host().ns(), bed.cloud.ip(), PROBE_PORT);

    let want = vec![home.ip().to_string(), bed.cloud.ip().to_string()];
    for (place, capture) in [("cloud host", at_cloud), ("WAN link", on_wan)] {
        let report = capture.finish().expect("tshark");
        assert_eq!(
            report.rows,
            std::slice::from_ref(&want),
            "at the {place}: {report:?}"
        );
    }
}

#[test]
fn cut_passes_nothing_until_restored() {
    let bed = Bed::new("wanc");
    let cloud_ip = bed.cloud.ip();
    for (name, client, other) in [
        ("public", &bed.public, &bed.natted),
        ("NATed", &bed.natted, &bed.public),
    ] {
        let addresses = || {
            client
                .host()
                .ns()
                .run(&["ip", "-4", "-o", "addr", "show", "dev", "ul0"])
                .expect("ip addr")
        };
        let before = addresses();

        client.cut().expect("cut");
        assert_none_received(&ping(client.host().ns(), cloud_ip, 10), name);
        assert_none_received(
            &ping(bed.cloud.ns(), client.public_ip(), 3),
            &format!("cloud → cut {name} client"),
        );
        assert_all_received(
            &ping(other.host().ns(), cloud_ip, 3),
            &format!("the other client while {name} is cut"),
        );

        client.restore().expect("restore");
        client.restore().expect("a second restore is a no-op");
        assert_all_received(&ping(client.host().ns(), cloud_ip, 5), name);
        assert_eq!(addresses(), before, "{name} client's addresses changed");
    }
}

#[test]
fn a_client_behind_a_delay_sees_its_rtt_to_the_cloud() {
    let one_way = Duration::from_millis(10);
    let wan = Wan::new("wanl").expect("wan");
    let cloud = wan
        .add_cloud_host("cloud", CLOUD_INDEX)
        .expect("cloud host");
    let client = wan
        .add_public_client_with(
            "slow",
            WanLink {
                delay: Some(one_way),
            },
        )
        .expect("delayed public client");
    let line = client.delay_line().expect("a delayed client has a line");
    assert_eq!(line.delay(), one_way);

    probe::ping(client.host().ns(), cloud.ip(), 1, Duration::from_millis(50)).expect("warm-up");
    let report = probe::ping(
        client.host().ns(),
        cloud.ip(),
        10,
        Duration::from_millis(50),
    )
    .expect("ping");
    assert_all_received(&report, "delayed client → cloud");
    let median = report.rtt_p50_ms().expect("replies");
    assert!((20.0..=22.0).contains(&median), "median RTT {median} ms");
    let stats = line.stats();
    assert!(
        stats.a_to_b.frames >= 11 && stats.b_to_a.frames >= 11,
        "the pings did not cross the line: {stats:?}"
    );
}

#[test]
fn clients_take_vms_and_everything_goes_on_drop() {
    let bed = Bed::new("wand");
    let host = bed.natted.host();
    host.add_bridge("br100").expect("bridge");
    let vm = host
        .add_vm("vm", "br100", VM_MAC, VM_IP, 24)
        .expect("vm on a NATed client");
    bed.public.cut().expect("cut");

    let home = bed.natted.home_router().expect("home router");
    let names: Vec<String> = [
        vm.ns(),
        host.ns(),
        home.ns(),
        bed.public.host().ns(),
        bed.cloud.ns(),
        bed.wan.router(),
        bed.wan.cloud().switch(),
    ]
    .iter()
    .map(|ns| {
        assert!(ns.name().starts_with("vlt-wand-"), "{}", ns.name());
        ns.name().to_owned()
    })
    .collect();
    drop(vm);
    drop(bed);

    let list =
        vlnet_lab::primitives::netns::run_host(&["ip", "netns", "list"]).expect("ip netns list");
    for name in &names {
        assert!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "namespace {name} survived:\n{list}"
        );
    }
}
