//! A storm of malformed and hostile VXLAN frames (bad flags, unknown VNI,
//! unknown VTEP, truncated headers, lying length fields, fragments, …) from
//! an attacker on the underlay: the vlnet nodes stay up, their VMs keep
//! talking with no loss, and every frame is dropped under its reason. Once
//! per decap mode. Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use support::node::{drop_counts, vlnet_binary};

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use support::frames::{self, VM_B_MAC};
use support::packet_socket::PacketSocket;
use vlnet_dataplane::mac::MacAddr;
use vlnet_lab::beds::scenario::{host_ip, vm_ip, Scenario, Vtep};
use vlnet_lab::primitives::probe;
use vlnet_lab::{Datapath, NetNs};

/// Copies of each hostile frame sent (16 kinds × 640 ≥ 10,000).
const COPIES: usize = 640;

fn link_info(ns: &NetNs, ifname: &str) -> (u32, [u8; 6]) {
    let out = ns.run(&["ip", "-o", "link", "show", ifname]).unwrap();
    let index = out.split(':').next().unwrap().trim().parse().unwrap();
    let mac_text = out
        .split("link/ether ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let mac: MacAddr = mac_text.parse().unwrap();
    (index, mac.0)
}

fn hostile_storm_is_dropped_and_counted(datapath: Datapath) {
    let s = Scenario::build(
        "storm",
        &[Vtep::Vlnet(datapath), Vtep::Vlnet(datapath)],
        vlnet_binary(),
    )
    .unwrap();
    let attacker = s
        .underlay
        .add_host("atk", Ipv4Addr::new(198, 18, 0, 66))
        .unwrap();
    let (_, target_mac) = link_info(s.sites[0].host.ns(), "ul0");
    let (attacker_if, attacker_mac) = link_info(attacker.ns(), "ul0");

    // VNI 200 is not configured here, so its frames count as unknown_vni.
    let inner = frames::inner_udp(VM_B_MAC, 0, 20);
    let storm: Vec<(&str, Vec<u8>)> = frames::hostile(host_ip(0), host_ip(1), &inner)
        .into_iter()
        .map(|(reason, mut frame)| {
            frame[0..6].copy_from_slice(&target_mac);
            frame[6..12].copy_from_slice(&attacker_mac);
            (
                if reason == "not_configured" {
                    "unknown_vni"
                } else {
                    reason
                },
                frame,
            )
        })
        .collect();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (reason, _) in &storm {
        *expected.entry((*reason).to_string()).or_default() += COPIES as u64;
    }
    let target = s.sites[0].daemon.as_ref().unwrap();
    let before = drop_counts(target);

    let pinger = s.sites[1].vm.ns().clone();
    let pings =
        std::thread::spawn(move || probe::ping(&pinger, vm_ip(0), 200, Duration::from_millis(10)));
    attacker
        .ns()
        .within(|| {
            let socket = PacketSocket::bind(attacker_if);
            for copy in 0..COPIES {
                for (_, frame) in &storm {
                    socket.send(frame);
                }
                if copy % 16 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
        .unwrap();
    let report = pings.join().unwrap().unwrap();
    assert_eq!(
        report.received, report.sent,
        "forwarding disturbed by the storm: {report:?}"
    );

    std::thread::sleep(Duration::from_millis(200));
    let after = drop_counts(target);
    let sent: u64 = expected.values().sum();
    assert!(sent >= 10_000, "storm too small: {sent}");
    for (reason, count) in &after {
        let delta = count - before[reason];
        assert_eq!(
            delta,
            expected.get(reason).copied().unwrap_or(0),
            "drops of {reason} ({datapath:?})"
        );
    }
    for site in &s.sites {
        assert!(
            site.daemon.as_ref().unwrap().status_json().is_ok(),
            "daemon still answers"
        );
    }
    let fdb = target.ctl(&["fdb", "--json"]).unwrap();
    assert!(
        !fdb.contains("02:00:00:00:0a:01"),
        "nothing learned from hostile frames: {fdb}"
    );
}

#[test]
fn tc_hostile_storm_is_dropped_and_counted() {
    hostile_storm_is_dropped_and_counted(Datapath::Tc);
}

#[test]
fn xdp_hostile_storm_is_dropped_and_counted() {
    hostile_storm_is_dropped_and_counted(Datapath::Xdp);
}
