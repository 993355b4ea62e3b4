//! The bench's `kernel-wggo` topology ([`WggoPair`]): two hosts joined by
//! kernel vxlan inside a wireguard-go tunnel. VMs ping each other (full-size
//! packets included), both wireguard-go interfaces report a handshake, the
//! underlay carries WireGuard and never VXLAN in clear, and dropping the pair
//! removes the UAPI sockets. Needs root, `wireguard-go`, `wg` and `tshark`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

use std::thread;
use std::time::{Duration, Instant};

use vlnet_dataplane::wg::WgDevice;
use vlnet_lab::beds::scenario::vm_ip;
use vlnet_lab::beds::wggo_pair::{WggoPair, WG_PORT};
use vlnet_lab::primitives::probe::{self, Capture};
use vlnet_lab::primitives::wggo::WG_MTU;

/// Pings VM 1 from VM 0 until one answer comes back (the first packets wait
/// for ARP and the handshake).
fn reach(pair: &WggoPair, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let r = probe::ping(
            pair.sites[0].vm.ns(),
            vm_ip(1),
            1,
            Duration::from_millis(200),
        );
        if r.is_ok_and(|r| r.received == 1) {
            return true;
        }
    }
    false
}

#[test]
fn vxlan_inside_wireguard_go_carries_vm_traffic() {
    let pair = WggoPair::build("wgp").unwrap();
    let sockets: Vec<_> = pair
        .sites
        .iter()
        .map(|s| WgDevice::socket_path(s.wg.ifname()))
        .collect();
    assert!(reach(&pair, Duration::from_secs(10)), "VM 1 unreachable");

    let h0 = &pair.sites[0].host;
    let capture = Capture::start(
        h0.ns(),
        h0.underlay_if(),
        "udp",
        &["udp.srcport", "udp.dstport"],
        None,
        Duration::from_secs(3),
    )
    .unwrap();
    // tshark reports "Capturing on" a moment before it really captures.
    thread::sleep(Duration::from_millis(500));
    let ping = probe::ping(
        pair.sites[1].vm.ns(),
        vm_ip(0),
        5,
        Duration::from_millis(100),
    )
    .unwrap();
    assert_eq!(ping.received, ping.sent, "VM 1 -> VM 0: {ping:?}");
    // The largest packet the VMs' MTU allows, unfragmented.
    let size = WG_MTU - 50 - 28;
    probe::ping_whole(pair.sites[0].vm.ns(), vm_ip(1), size)
        .expect("full-size ping through the tunnel");
    let frames = capture.finish().unwrap();
    let (src, dst) = (frames.column("udp.srcport"), frames.column("udp.dstport"));
    assert!(
        !src.contains(&"4789") && !dst.contains(&"4789"),
        "VXLAN in clear on the underlay: {frames:?}"
    );
    let wireguard = WG_PORT.to_string();
    let tunnelled = src.iter().filter(|p| **p == wireguard).count();
    // 5 + 3 echo requests and their replies.
    assert!(
        tunnelled >= 16,
        "{tunnelled} WireGuard packets for 8 round trips: {frames:?}"
    );

    for (i, site) in pair.sites.iter().enumerate() {
        let peer = pair.sites[1 - i].wg.public_key();
        let handshake = site.wg.latest_handshake(peer).unwrap();
        assert!(handshake.is_some(), "host {i}: no handshake with {peer}");
    }

    drop(pair);
    for socket in sockets {
        assert!(!socket.exists(), "{} left behind", socket.display());
    }
}
