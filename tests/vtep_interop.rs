//! Two vlnet nodes and one kernel-vxlan node (what an unmodified Proxmox node
//! runs) on one underlay, a VM behind each: ARP, ping and iperf3 between every
//! pair in both directions, and the underlay frames dissected by tshark as
//! VXLAN. Once per decap mode. Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use support::node::vlnet_binary;

use std::time::Duration;

use vlnet_lab::beds::scenario::{vm_ip, Scenario, Vtep, VNI};
use vlnet_lab::primitives::probe::{self, Capture};
use vlnet_lab::Datapath;

fn total_drops(daemon: &vlnet_lab::Daemon) -> u64 {
    let status = daemon.status_json().unwrap();
    status["drops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["packets"].as_u64().unwrap())
        .sum()
}

fn every_pair_talks(datapath: Datapath) {
    let vteps = [Vtep::Vlnet(datapath), Vtep::Vlnet(datapath), Vtep::Kernel];
    let s = Scenario::build("iop", &vteps, vlnet_binary()).expect("build the test-bed");
    // Frames sent while the hosts came up (before peers existed) may have been
    // dropped as no_neighbour; from here on nothing may be.
    let drops_before: Vec<u64> = s
        .sites
        .iter()
        .filter_map(|x| x.daemon.as_ref())
        .map(total_drops)
        .collect();
    let port0 = s.sites[0].host.switch_port().to_string();
    let capture = Capture::start(
        s.underlay.switch(),
        &port0,
        "udp",
        &[
            "ip.src",
            "ip.dst",
            "udp.dstport",
            "vxlan.vni",
            "vxlan.flags",
        ],
        None,
        Duration::from_secs(6),
    )
    .unwrap();

    for (i, from) in s.sites.iter().enumerate() {
        for j in (0..s.sites.len()).filter(|j| *j != i) {
            let ping = probe::ping(from.vm.ns(), vm_ip(j), 10, Duration::from_millis(20)).unwrap();
            assert_eq!(
                ping.received, 10,
                "ping {:?} -> {:?} ({datapath:?}): {ping:?}",
                from.vtep, s.sites[j].vtep
            );
        }
    }
    let neigh = s.sites[0]
        .vm
        .ns()
        .run(&["ip", "neigh", "show", &vm_ip(2).to_string()])
        .unwrap();
    assert!(
        neigh.contains(s.sites[2].vm.mac()),
        "ARP resolved the kernel node's VM: {neigh}"
    );

    let frames = capture.finish().unwrap();
    let vnis = frames.column("vxlan.vni");
    assert!(!vnis.is_empty(), "no VXLAN seen on the underlay");
    assert!(
        vnis.iter().all(|v| *v == VNI.to_string()),
        "VNIs on the wire: {vnis:?}"
    );
    assert!(frames.column("udp.dstport").iter().all(|p| *p == "4789"));

    for (i, from) in s.sites.iter().enumerate() {
        for (j, to) in s.sites.iter().enumerate().filter(|(j, _)| *j != i) {
            let port = 5201 + u16::try_from(i * 3 + j).unwrap();
            let _server = probe::iperf3_server(to.vm.ns(), vm_ip(j), port).unwrap();
            let run = probe::iperf3_client(from.vm.ns(), vm_ip(j), 5, 1, port).unwrap();
            eprintln!(
                "iperf3 {:?} -> {:?} ({datapath:?}): {:.2} Gbit/s",
                from.vtep,
                to.vtep,
                run.bits_per_second / 1e9
            );
            assert!(
                run.bits_per_second > 50e6,
                "{:?} -> {:?}: {run:?}",
                from.vtep,
                to.vtep
            );
        }
    }

    for (daemon, before) in s
        .sites
        .iter()
        .filter_map(|x| x.daemon.as_ref())
        .zip(drops_before)
    {
        {
            assert_eq!(
                total_drops(daemon),
                before,
                "no drops on clean traffic: {}",
                daemon.status_json().unwrap()["drops"]
            );
            let peers = daemon.ctl(&["peers", "--json"]).unwrap();
            let peers: serde_json::Value = serde_json::from_str(&peers).unwrap();
            for p in peers.as_array().unwrap() {
                assert!(
                    p["rx_packets"].as_u64().unwrap() > 0,
                    "traffic from every peer counted: {p}"
                );
                assert!(
                    p["tx_packets"].as_u64().unwrap() > 0,
                    "traffic to every peer counted: {p}"
                );
            }
        }
    }
}

#[test]
fn tc_mode_interoperates_with_kernel_vxlan() {
    every_pair_talks(Datapath::Tc);
}

#[test]
fn xdp_mode_interoperates_with_kernel_vxlan() {
    every_pair_talks(Datapath::Xdp);
}
