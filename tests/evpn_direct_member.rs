//! A gateway's direct members (`[evpn] direct`): the vlnet controller has
//! `[evpn]` with `direct = ["198.18.0.0/24"]` (the cloud LAN) and peers with
//! an FRR 8.4 route reflector that runs kernel VXLAN without learning, as
//! Proxmox's EVPN zone writes it. One member sits on the cloud LAN, one
//! across the WAN; both joined by token. Checks that FRR places the LAN
//! member's VM behind the member's own address and the WAN client's behind
//! the gateway; that the FRR VM and the LAN member's VM ping each other with
//! plain VXLAN between FRR and the member on the wire, both ways, and the
//! gateway relays none of it; that FRR floods the FRR VM's broadcasts to the
//! member itself and each reaches both members' VMs exactly once; that the
//! WAN client still reaches the FRR VM
//! through the gateway; that a LAN host which is no VTEP of the zone gets
//! nothing into the member (`unknown_vtep`); and that the FRR VM, migrated to
//! the LAN member, is placed behind the member by FRR and reached at its old
//! IP. FRR's daemons are stopped and every namespace removed even when a
//! check fails. Needs root, `/usr/lib/frr/{zebra,bgpd}`, `vtysh`, `tshark`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use support::frr::{wait_for, Frr, Role};
use support::gateway_zone::{frr_node, pings, secure_vm, FRR_VM, FRR_VM_STAYS};
use support::node::{sample, scrape, vlnet_binary};
use support::pcap::PcapCapture;
use vlnet_lab::beds::bed::ControllerEvpn;
use vlnet_lab::beds::cluster::{Cluster, ClusterOptions, Place};
use vlnet_lab::beds::scenario::{vm_ip, vm_mac, VNI};
use vlnet_lab::primitives::probe;
use vlnet_lab::primitives::topology::{UNDERLAY_IF, VM_IF};
use vlnet_lab::{Host, Vm};

const ASN: u32 = 65000;
/// The controller's VTEP (the cloud LAN's first host).
const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The member on the cloud LAN (node 1, the cluster's first cloud member).
const LAN_MEMBER: usize = 1;
const LAN_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The member across the WAN (node 2).
const CLIENT: usize = 2;
/// The FRR node's cloud LAN index and VTEP.
const FRR_INDEX: u8 = 30;
const FRR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, FRR_INDEX);
/// A host on the cloud LAN that is no VTEP of the zone.
const ROGUE_INDEX: u8 = 40;

fn reaches(from: &Vm, to: Ipv4Addr) -> bool {
    wait_for(Duration::from_mins(1), || {
        probe::ping(from.ns(), to, 1, Duration::from_millis(300)).is_ok_and(|p| p.received == 1)
    })
}

/// Whether FRR places `mac` behind `vtep`.
fn frr_places(frr: &Frr, mac: &str, vtep: Ipv4Addr) -> bool {
    frr.vtysh(&format!("show evpn mac vni {VNI}"))
        .lines()
        .any(|l| l.contains(mac) && l.contains("remote") && l.contains(&vtep.to_string()))
}

fn metric(c: &Cluster, n: usize, name: &str) -> f64 {
    let d = &c.nodes[n].daemon;
    sample(&scrape(d.ns(), d.spec().metrics_port), name)
}

fn relayed(c: &Cluster) -> f64 {
    ["to_members", "to_zone"]
        .iter()
        .map(|dir| {
            metric(
                c,
                0,
                &format!("vlnet_relay_packets_total{{direction=\"{dir}\"}}"),
            )
        })
        .sum()
}

/// What a failure shows: FRR's MACs and kernel FDB, the gateway's and the
/// LAN member's logs, counters and FDB.
fn state(c: &Cluster, frr: &Frr, frr_host: &Host) -> String {
    let counters = |n: usize| {
        let d = &c.nodes[n].daemon;
        scrape(d.ns(), d.spec().metrics_port)
            .lines()
            .filter(|l| {
                !l.starts_with('#')
                    && !l.ends_with(" 0")
                    && ["drops_total", "relay_", "mac_moves"]
                        .iter()
                        .any(|k| l.contains(k))
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let frr_vni = frr.vtysh(&format!("show evpn vni {VNI}"));
    let frr_fdb = frr_host
        .ns()
        .run(&["bridge", "fdb", "show", "dev", &format!("vxlan{VNI}")])
        .map(|o| format!("{o:?}"))
        .unwrap_or_default();
    format!(
        "--- FRR VNI: {frr_vni}\n--- FRR MACs:\n{}\n--- FRR kernel FDB: {frr_fdb}\n--- FRR log:\n{}\n\
         --- gateway log:\n{}\n--- gateway counters:\n{}\n--- LAN member log:\n{}\n\
         --- LAN member counters:\n{}\n--- LAN member FDB:\n{}",
        frr.vtysh(&format!("show evpn mac vni {VNI}")),
        frr.log(),
        c.controller().daemon.log_tail(40),
        counters(0),
        c.nodes[LAN_MEMBER].daemon.log_tail(30),
        counters(LAN_MEMBER),
        c.nodes[LAN_MEMBER].daemon.ctl(&["fdb"]).unwrap_or_default()
    )
}

#[test]
fn a_member_on_the_cloud_lan_takes_the_zones_vxlan_directly() {
    let options = ClusterOptions {
        evpn: Some(ControllerEvpn {
            asn: ASN,
            neighbors: vec![FRR],
            direct: vec!["198.18.0.0/24".into()],
        }),
        ..ClusterOptions::default()
    };
    let c = Cluster::build_with(
        "evd",
        &[Place::Cloud, Place::PublicClient],
        &options,
        vlnet_binary(),
    )
    .unwrap();
    c.wait_connected().unwrap();
    let (frr_host, frr_vm, stays) = frr_node(&c, FRR_INDEX, FRR);
    let frr = Frr::start(frr_host.ns().name(), ASN, FRR, Role::Reflector(&[GATEWAY]));
    let context = |what: &str| format!("{what}\n{}", state(&c, &frr, &frr_host));
    let lan_vm = &c.nodes[LAN_MEMBER].vm;
    let client_vm = &c.nodes[CLIENT].vm;
    for (n, vm) in [(LAN_MEMBER, lan_vm), (CLIENT, client_vm)] {
        assert!(
            reaches(vm, vm_ip(FRR_VM)),
            "{}",
            context(&format!("node {n}'s VM never reached the FRR VM"))
        );
    }
    // FRR: the LAN member's VM behind the member, the client's behind the
    // gateway; the member a VTEP it floods to.
    for (n, vtep) in [(LAN_MEMBER, LAN_ADDR), (CLIENT, GATEWAY)] {
        assert!(
            wait_for(Duration::from_secs(15), || frr_places(
                &frr,
                &vm_mac(n),
                vtep
            )),
            "{}",
            context(&format!("FRR does not place node {n}'s VM behind {vtep}"))
        );
    }

    assert!(
        wait_for(Duration::from_secs(10), || frr
            .vtysh(&format!("show evpn vni {VNI}"))
            .contains(&LAN_ADDR.to_string())),
        "{}",
        context("FRR does not flood to the LAN member")
    );
    operators_see_who_is_direct(&c);
    direct_vxlan_on_the_wire(&c, &frr_host, &frr_vm, &context);
    let p = pings(client_vm, vm_ip(FRR_VM));
    assert_eq!(
        p.received, p.sent,
        "the WAN client through the gateway: {p:?}"
    );
    a_lan_host_that_is_no_vtep_gets_nothing_in(&c);
    the_frr_vm_migrates_to_the_lan_member(&c, &frr, frr_vm, &stays, &context);
}

/// `client list` on the gateway names the LAN member's own address in EVPN
/// DIRECT (the WAN client's is "-"); the LAN member's status lists the
/// zone's VTEP it takes VXLAN from.
fn operators_see_who_is_direct(c: &Cluster) {
    let list = c.controller().daemon.ctl(&["client", "list"]).unwrap();
    let row = |n: usize| {
        list.lines()
            .find(|l| l.starts_with(&c.nodes[n].member_name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row(LAN_MEMBER).ends_with(&LAN_ADDR.to_string()), "{list}");
    assert!(row(CLIENT).ends_with('-'), "{list}");
    let status = c.nodes[LAN_MEMBER].daemon.status_json().unwrap();
    assert_eq!(
        status["member"]["direct_from"][VNI.to_string()],
        serde_json::json!([FRR.to_string()]),
        "{status}"
    );
    let text = c.nodes[LAN_MEMBER].daemon.ctl(&["status"]).unwrap();
    assert!(
        text.contains(&format!(
            "direct    VNI {VNI}: plain VXLAN from the EVPN zone's {FRR}"
        )),
        "{text}"
    );
}

/// Pings both ways between the FRR VM and the LAN member's VM: the capture
/// on FRR's underlay shows VXLAN between FRR and the member's own address,
/// each echo both ways, and the gateway relays none of it.
fn direct_vxlan_on_the_wire(
    c: &Cluster,
    frr_host: &Host,
    frr_vm: &Vm,
    context: &dyn Fn(&str) -> String,
) {
    let lan_vm = &c.nodes[LAN_MEMBER].vm;
    let capture = PcapCapture::start(frr_host.ns(), UNDERLAY_IF, "udp port 4789");
    let relayed_before = relayed(c);
    let there = pings(frr_vm, vm_ip(LAN_MEMBER));
    let back = pings(lan_vm, vm_ip(FRR_VM));
    let relayed_during = relayed(c) - relayed_before;
    let pcap = capture.stop();
    assert_eq!(
        there.received,
        there.sent,
        "{}",
        context(&format!("{there:?}"))
    );
    assert_eq!(
        back.received,
        back.sent,
        "{}",
        context(&format!("{back:?}"))
    );
    let outer = |filter: &str| -> Vec<(String, String)> {
        pcap.fields(filter, &["ip.src", "ip.dst"])
            .into_iter()
            .map(|row| {
                let first = |f: &String| f.split(',').next().unwrap_or("").to_owned();
                (first(&row[0]), first(&row[1]))
            })
            .collect()
    };
    let frr_to_member = (FRR.to_string(), LAN_ADDR.to_string());
    let member_to_frr = (LAN_ADDR.to_string(), FRR.to_string());
    for (icmp_type, way) in [(8, "requests"), (0, "replies")] {
        let seen = outer(&format!("vxlan.vni == {VNI} and icmp.type == {icmp_type}"));
        for dir in [&frr_to_member, &member_to_frr] {
            let n = seen.iter().filter(|s| *s == dir).count();
            assert!(
                n >= 5,
                "{}",
                context(&format!(
                    "{n} echo {way} in VXLAN {} -> {} (at least 5 expected): {seen:?}\n\
                     all VXLAN (time, outer+inner source, destination, ICMP type): {:?}\n{}",
                    dir.0,
                    dir.1,
                    pcap.fields(
                        "vxlan",
                        &["frame.time_relative", "ip.src", "ip.dst", "icmp.type"]
                    ),
                    pcap.log()
                ))
            );
        }
    }
    assert!(
        relayed_during < 5.0,
        "the gateway relayed {relayed_during} packets during the direct pings"
    );
    floods_reach_the_direct_member_once(c, frr_host, frr_vm, context);
}

/// The FRR VM broadcasts three pings (ARP requests would not leave FRR's
/// bridge: its VXLAN port suppresses them): FRR floods each to the LAN
/// member itself (its type-3 route, which the gateway advertises), and each
/// reaches the LAN member's VM and the WAN client's VM exactly once (the
/// gateway relays it to the WAN client only, not again to the LAN member).
fn floods_reach_the_direct_member_once(
    c: &Cluster,
    frr_host: &Host,
    frr_vm: &Vm,
    context: &dyn Fn(&str) -> String,
) {
    const BROADCAST: &str = "192.0.2.255";
    let wire = PcapCapture::start(frr_host.ns(), UNDERLAY_IF, "udp port 4789");
    let filter = format!("icmp and dst host {BROADCAST}");
    let at_vms: Vec<PcapCapture> = [LAN_MEMBER, CLIENT]
        .iter()
        .map(|&n| PcapCapture::start(c.nodes[n].vm.ns(), VM_IF, &filter))
        .collect();
    // ping reports no reply (VMs ignore broadcast pings): its status is
    // not checked.
    let _ = frr_vm.ns().output_within(
        &["ping", "-b", "-c", "3", "-i", "0.2", "-W", "1", BROADCAST],
        Duration::from_secs(5),
    );
    let pcap = wire.stop();
    let direct = pcap
        .fields(
            &format!("ip.dst == {LAN_ADDR} and ip.dst == {BROADCAST} and icmp.type == 8"),
            &["ip.src"],
        )
        .len();
    assert_eq!(
        direct,
        3,
        "{}",
        context(&format!(
            "FRR did not flood each broadcast to the LAN member itself: {:?}",
            pcap.fields("icmp", &["ip.src", "ip.dst", "icmp.type"])
        ))
    );
    for (n, capture) in [LAN_MEMBER, CLIENT].into_iter().zip(at_vms) {
        let seen = capture.stop().fields("icmp.type == 8", &["ip.src"]).len();
        assert_eq!(
            seen,
            3,
            "{}",
            context(&format!(
                "node {n}'s VM saw {seen} of the 3 broadcasts (each once expected)"
            ))
        );
    }
}

/// A host on the cloud LAN that is no VTEP of the zone sends VXLAN to the
/// LAN member (kernel vxlan, an ARP for the member's VM): dropped as
/// `unknown_vtep`.
fn a_lan_host_that_is_no_vtep_gets_nothing_in(c: &Cluster) {
    let drops = || metric(c, LAN_MEMBER, "vlnet_drops_total{reason=\"unknown_vtep\"}");
    let before = drops();
    let rogue = c.wan.add_cloud_host("rogue", ROGUE_INDEX).unwrap();
    let rogue_ip = Ipv4Addr::new(198, 18, 0, ROGUE_INDEX);
    rogue
        .ns()
        .run(&[
            "sh",
            "-c",
            &format!(
                "ip link add vx type vxlan id {VNI} local {rogue_ip} remote {LAN_ADDR} \
                 dstport 4789 && ip addr add 192.0.2.240/24 dev vx && ip link set vx up"
            ),
        ])
        .unwrap();
    let p = probe::ping(rogue.ns(), vm_ip(LAN_MEMBER), 3, Duration::from_millis(100)).unwrap();
    assert_eq!(
        p.received, 0,
        "a LAN host that is no VTEP reached the VM: {p:?}"
    );
    assert!(
        wait_for(Duration::from_secs(5), || drops() >= before + 3.0),
        "the member did not drop the rogue host's VXLAN as unknown_vtep: {before} -> {}",
        drops()
    );
}

/// The FRR VM leaves the FRR node and comes up on the LAN member with the
/// same MAC and address: FRR places it behind the member's own address, and
/// the FRR node's other VM and the WAN client reach it at its old IP.
fn the_frr_vm_migrates_to_the_lan_member(
    c: &Cluster,
    frr: &Frr,
    frr_vm: Vm,
    stays: &Vm,
    context: &dyn Fn(&str) -> String,
) {
    let mac = vm_mac(FRR_VM);
    drop(frr_vm);
    assert!(
        wait_for(Duration::from_secs(15), || !frr
            .vtysh(&format!("show evpn mac vni {VNI}"))
            .contains(&mac)),
        "{}",
        context("FRR did not withdraw the MAC of the VM that left")
    );
    let moved = secure_vm(c.nodes[LAN_MEMBER].site.host(), "moved", FRR_VM);
    assert!(
        reaches(&moved, vm_ip(FRR_VM_STAYS)),
        "{}",
        context("the migrated VM does not reach the FRR node's VM")
    );
    assert!(
        wait_for(Duration::from_secs(10), || frr_places(frr, &mac, LAN_ADDR)),
        "{}",
        context("FRR does not place the migrated VM behind the LAN member")
    );
    for from in [stays, &c.nodes[CLIENT].vm] {
        let p = pings(from, vm_ip(FRR_VM));
        assert_eq!(p.received, p.sent, "the migrated VM at its old IP: {p:?}");
    }
}
