//! Per-flow latency end to end: a client behind a WAN whose delay line adds
//! 20 ms of RTT joins a controller over WireGuard; the RTT the kernel
//! measures for its ping and TCP flows, and the underlay probe's RTT, must
//! match what ping itself sees within 2 ms (the kernel's smoothed ICMP RTT
//! against ping's replies smoothed the same way, so that a late reply on a
//! loaded machine moves both alike); `/metrics` exports the samples;
//! and `vlnet ctl advise` recommends the client's site for a VM whose
//! traffic comes from there, but "stay" when its traffic is mostly local.
//!
//! Needs root (namespaces, BPF, `/dev/net/tun`), iperf3 and iputils-ping.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;
use support::node::{sample, scrape, vlnet_binary};
use vlnet_lab::beds::cluster::{Cluster, Place, SECURE_VM_MTU};
use vlnet_lab::beds::scenario::{vm_ip, vm_mac, BRIDGE};
use vlnet_lab::primitives::probe;

/// One-way delay of the client's WAN link: 20 ms of RTT.
const ONE_WAY: Duration = Duration::from_millis(10);
/// The test bound on |measured − truth|.
const BOUND_MS: f64 = 2.0;
const IPERF_PORT: u16 = 5201;

/// A controller (node 0, cloud) and a public client (node 1) behind the delay.
fn cluster(tag: &str) -> Cluster {
    let c = Cluster::build(tag, &[Place::PublicClientBehind(ONE_WAY)], vlnet_binary()).unwrap();
    c.wait_connected().unwrap();
    c
}

fn ctl_json(c: &Cluster, n: usize, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&c.nodes[n].daemon.ctl(&all).unwrap()).unwrap()
}

/// The flow on node `n` with protocol `proto` whose remote end is `remote`.
fn flow(c: &Cluster, n: usize, proto: u64, remote: Ipv4Addr) -> Value {
    let flows = ctl_json(c, n, &["flows"]);
    flows
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["protocol"] == proto && f["remote_ip"] == remote.to_string())
        .cloned()
        .unwrap_or_else(|| panic!("no protocol {proto} flow to {remote} on node {n}: {flows}"))
}

fn ms(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) / 1e6
}

#[test]
fn kernel_rtt_matches_the_injected_wan_delay() {
    let c = cluster("fla");
    let (client, cloud_vm) = (&c.nodes[1], vm_ip(0));

    let ping = probe::ping(client.vm.ns(), cloud_vm, 40, Duration::from_millis(50)).unwrap();
    assert_eq!(ping.received, ping.sent, "{ping:?}");
    let truth = ping.rtt_p50_ms().unwrap();
    let ping_srtt = ping.smoothed_rtt_ms().unwrap();
    assert!(
        (20.0..20.0 + 2.0 * BOUND_MS).contains(&truth),
        "the delay line should give ~20 ms: {ping:?}"
    );

    let icmp = flow(&c, 1, 1, cloud_vm);
    let srtt = ms(&icmp["srtt_ns"]);
    let icmp_min = ms(&icmp["rtt_min_ns"]);
    assert!(icmp["rtt_samples"].as_u64().unwrap() >= 30, "{icmp}");
    assert!(icmp_min >= 20.0, "below the injected delay: {icmp}");
    // The probes' smoothed RTT, read before the TCP run loads the path.
    let peers = ctl_json(&c, 1, &["peers"]);
    let tunnel = c.tunnel_addr(0).unwrap().to_string();
    let underlay = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["vtep"] == tunnel)
        .map_or_else(
            || panic!("no probe RTT to {tunnel}: {peers}"),
            |p| ms(&p["rtt_ns"]),
        );

    let _server = probe::iperf3_server(c.nodes[0].vm.ns(), cloud_vm, IPERF_PORT).unwrap();
    let tcp_run = probe::iperf3_client(client.vm.ns(), cloud_vm, 3, 1, IPERF_PORT).unwrap();
    let tcp = flow(&c, 1, 6, cloud_vm);
    let tcp_min = ms(&tcp["rtt_min_ns"]);
    assert!(tcp["rtt_samples"].as_u64().unwrap() > 10, "{tcp}");

    eprintln!(
        "ping p50 {truth:.3} ms, smoothed {ping_srtt:.3} | kernel ICMP srtt {srtt:.3} (error \
         {:+.3}) min {icmp_min:.3} | \
         TCP min {tcp_min:.3} (error {:+.3}) at {:.0} Mbit/s | underlay probe {underlay:.3} \
         (error {:+.3})",
        srtt - ping_srtt,
        tcp_min - ping.rtt_min_ms.unwrap(),
        tcp_run.bits_per_second / 1e6,
        underlay - truth
    );
    assert!(
        (srtt - ping_srtt).abs() <= BOUND_MS,
        "ICMP {srtt} vs ping's smoothed {ping_srtt}: {ping:?}"
    );
    assert!(
        (tcp_min - ping.rtt_min_ms.unwrap()).abs() <= BOUND_MS,
        "TCP min {tcp_min} vs ping min {ping:?}"
    );
    assert!(
        (underlay - truth).abs() <= BOUND_MS,
        "probe {underlay} vs ping {truth}"
    );

    // /metrics: every sample in a bucket at or above the injected delay.
    let daemon = &client.daemon;
    let text = scrape(daemon.ns(), daemon.spec().metrics_port);
    let labels = format!("peer=\"{tunnel}\",vni=\"100\"");
    let count = sample(&text, &format!("vlnet_flow_rtt_seconds_count{{{labels}}}"));
    let below = sample(
        &text,
        &format!("vlnet_flow_rtt_seconds_bucket{{{labels},le=\"0.016384\"}}"),
    );
    assert!(count >= 40.0, "{text}");
    assert!(
        below == 0.0,
        "samples below 16 ms with 20 ms injected: {text}"
    );
    assert!(sample(&text, "vlnet_flows{vni=\"100\"}") >= 2.0, "{text}");
}

/// The advice for node 0's VM `mac`.
fn advice_for(c: &Cluster, mac: &str) -> Value {
    let all = ctl_json(c, 0, &["advise"]);
    all.as_array()
        .unwrap()
        .iter()
        .find(|a| a["traffic"]["mac"] == mac)
        .cloned()
        .unwrap_or_else(|| panic!("no advice for {mac}: {all}"))
}

#[test]
fn advise_moves_a_vm_towards_the_site_its_traffic_comes_from() {
    let c = cluster("flm");
    let cloud_vm = vm_ip(0);
    let _server = probe::iperf3_server(c.nodes[0].vm.ns(), cloud_vm, IPERF_PORT).unwrap();
    probe::iperf3_client(c.nodes[1].vm.ns(), cloud_vm, 3, 1, IPERF_PORT).unwrap();

    let advice = advice_for(&c, &vm_mac(0));
    let client_vtep = c.tunnel_addr(1).unwrap().to_string();
    assert_eq!(
        advice["verdict"],
        serde_json::json!({"action": "move", "vtep": client_vtep}),
        "{advice:#}"
    );
    let here = ms(&advice["here_weighted_rtt_ns"]);
    assert!(here >= 15.0, "most traffic crosses 20 ms: {advice:#}");
    let text = c.nodes[0].daemon.ctl(&["advise"]).unwrap();
    assert!(
        text.contains("MOVE to") && text.contains("member1"),
        "{text}"
    );
    eprintln!("{text}");
}

#[test]
fn advise_says_stay_when_the_traffic_is_mostly_local() {
    let c = cluster("fls");
    let host = c.nodes[0].site.host();
    let neighbour = host
        .add_vm("nb", BRIDGE, &vm_mac(60), vm_ip(60), 24)
        .unwrap();
    neighbour.set_mtu(SECURE_VM_MTU).unwrap();
    let _server = probe::iperf3_server(c.nodes[0].vm.ns(), vm_ip(0), IPERF_PORT).unwrap();
    probe::iperf3_client(neighbour.ns(), vm_ip(0), 2, 1, IPERF_PORT).unwrap();
    let ping = probe::ping(c.nodes[1].vm.ns(), vm_ip(0), 20, Duration::from_millis(50)).unwrap();
    assert_eq!(ping.received, ping.sent, "{ping:?}");

    let advice = advice_for(&c, &vm_mac(0));
    assert_eq!(advice["verdict"]["action"], "stay", "{advice:#}");
    let local = advice["traffic"]["local_bytes"].as_u64().unwrap();
    let remote: u64 = advice["traffic"]["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["bytes"].as_u64().unwrap())
        .sum();
    assert!(
        local > 100 * remote,
        "local {local} vs remote {remote}: {advice:#}"
    );
}
