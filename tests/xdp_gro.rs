//! GRO on the XDP decap path: XDP decap redirects each wire segment into
//! the overlay port, and a veth merges what it receives only with its `gro`
//! feature on (off by default). The daemon turns it on at the port's bridge
//! end, so TCP through the XDP path reaches the VM as segments merged beyond
//! the MTU, as the kernel's vxlan device delivers them. Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use support::node::vlnet_binary;

use vlnet_lab::beds::scenario::{Scenario, Vtep, VNI};
use vlnet_lab::primitives::probe;
use vlnet_lab::{Datapath, NetNs};

/// The VMs' MTU (the underlay's 1,500 less VXLAN's 50) with its Ethernet
/// header: the largest frame a wire segment makes.
const SEGMENT_FRAME: u64 = 1450 + 14;
const IPERF_PORT: u16 = 5201;

/// `(rx_packets, rx_bytes)` of `ifname` in `ns` (`ip -s -j link show`).
fn rx_counts(ns: &NetNs, ifname: &str) -> (u64, u64) {
    let out = ns
        .run(&["ip", "-s", "-j", "link", "show", "dev", ifname])
        .unwrap();
    let links: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rx = &links[0]["stats64"]["rx"];
    (
        rx["packets"].as_u64().unwrap(),
        rx["bytes"].as_u64().unwrap(),
    )
}

#[test]
fn xdp_decap_frames_reach_the_vm_merged_by_gro() {
    let s = Scenario::build(
        "xg",
        &[Vtep::Vlnet(Datapath::Xdp), Vtep::Vlnet(Datapath::Xdp)],
        vlnet_binary(),
    )
    .unwrap();
    let (a, b) = (&s.sites[0], &s.sites[1]);
    let port = format!("vlp{VNI}");
    let features = b.host.ns().run(&["ethtool", "-k", &port]).unwrap();
    assert!(
        features.contains("generic-receive-offload: on"),
        "GRO on at {port}: {features}"
    );

    let ping = probe::ping(
        a.vm.ns(),
        b.vm.ip(),
        3,
        std::time::Duration::from_millis(10),
    )
    .unwrap();
    assert!(ping.received > 0, "VM0 reaches VM1: {ping:?}");
    let _server = probe::iperf3_server(b.vm.ns(), b.vm.ip(), IPERF_PORT).unwrap();
    let before = rx_counts(b.vm.ns(), b.vm.ifname());
    let tcp = probe::iperf3_client(a.vm.ns(), b.vm.ip(), 2, 1, IPERF_PORT).unwrap();
    let after = rx_counts(b.vm.ns(), b.vm.ifname());
    let (packets, bytes) = (after.0 - before.0, after.1 - before.1);
    assert!(packets > 0, "TCP reached VM1: {tcp:?}");
    // A veth counts a merged skb once: without GRO every frame is at most
    // one segment, so the mean could not pass it.
    let mean = bytes / packets;
    assert!(
        mean > SEGMENT_FRAME,
        "VM1 received {packets} frames, {bytes} bytes, {mean} bytes each: \
         no more than a wire segment ({SEGMENT_FRAME}), so no GRO ({tcp:?})"
    );
}
