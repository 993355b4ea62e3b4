//! The gateway between an EVPN zone and members joined by token: the vlnet
//! controller has `[evpn]` and peers with an FRR 8.4 route reflector (a
//! kernel VXLAN device without learning on its bridge, as Proxmox's EVPN
//! zone writes it) on the cloud LAN; a client across the WAN joins by
//! token. Checks that the client's VM and the FRR node's VM ping each other
//! both ways (relayed by the controller: VXLAN on the LAN, WireGuard on the
//! WAN); that FRR lists the client VM's MAC behind the controller's VTEP
//! (advertised as the gateway's), and holds its address as a MAC/IP route;
//! that the FRR VM's MAC/IP route reaches the client as a binding, which
//! its vlnet answers its VM's ARP from; that the controller places the FRR VM's
//! MAC behind FRR's VTEP. Then the client claims the FRR VM's MAC (a VM of
//! its own with that MAC speaks): the controller refuses it (`not_owner`),
//! keeps the MAC behind FRR, FRR keeps it local, and the real VM is still
//! reached. Last the FRR VM migrates to the client (it leaves the FRR node,
//! which withdraws its MAC, and comes up on the client with the same MAC
//! and address): FRR places it behind the gateway and the FRR node's other
//! VM reaches it at the same IP. FRR's daemons are stopped and every namespace removed even when
//! a check fails. Needs root, `/usr/lib/frr/{zebra,bgpd}` + `vtysh`.
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
use vlnet_lab::beds::bed::ControllerEvpn;
use vlnet_lab::beds::cluster::{Cluster, ClusterOptions, Place};
use vlnet_lab::beds::scenario::{vm_ip, vm_mac, BRIDGE, VNI};
use vlnet_lab::primitives::probe;
use vlnet_lab::primitives::topology::VM_IF;
use vlnet_lab::{Host, Vm};

const ASN: u32 = 65000;
/// The controller's VTEP (the cloud LAN's first host).
const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The FRR node's cloud LAN index and VTEP.
const FRR_INDEX: u8 = 30;
const FRR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, FRR_INDEX);
/// The client (node 1 of the cluster).
const CLIENT: usize = 1;

fn fdb(c: &Cluster, n: usize) -> serde_json::Value {
    serde_json::from_str(&c.nodes[n].daemon.ctl(&["fdb", "--json"]).unwrap()).unwrap()
}

fn placed_behind(c: &Cluster, n: usize, mac: &str, vtep: Ipv4Addr) -> bool {
    fdb(c, n)
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["mac"] == mac && r["vtep"] == vtep.to_string() && r["vni"] == VNI)
}

#[test]
fn a_controller_is_the_gateway_between_an_evpn_zone_and_its_clients() {
    let options = ClusterOptions {
        evpn: Some(ControllerEvpn {
            asn: ASN,
            neighbors: vec![FRR],
            direct: Vec::new(),
        }),
        ..ClusterOptions::default()
    };
    let c = Cluster::build_with("evg", &[Place::PublicClient], &options, vlnet_binary()).unwrap();
    c.wait_connected().unwrap();
    let (frr_host, frr_vm, frr_vm_stays) = frr_node(&c, FRR_INDEX, FRR);
    let frr = Frr::start(frr_host.ns().name(), ASN, FRR, Role::Reflector(&[GATEWAY]));
    let context = |what: &str| {
        format!(
            "{what}\n--- FRR summary:\n{}\n--- FRR MACs:\n{}\n--- FRR log:\n{}\n\
             --- controller log:\n{}",
            frr.vtysh("show bgp l2vpn evpn summary"),
            frr.vtysh(&format!("show evpn mac vni {VNI}")),
            frr.log(),
            c.controller().daemon.log_tail(60)
        )
    };
    let client_vm = &c.nodes[CLIENT].vm;
    // The first pings make the MACs known (ARP floods through the relay).
    assert!(
        wait_for(Duration::from_mins(1), || {
            probe::ping(client_vm.ns(), vm_ip(FRR_VM), 1, Duration::from_millis(300))
                .is_ok_and(|p| p.received == 1)
        }),
        "{}",
        context("the client's VM never reached the FRR node's VM")
    );
    for (from, to, what) in [
        (client_vm, vm_ip(FRR_VM), "client -> FRR VM"),
        (&frr_vm, vm_ip(CLIENT), "FRR VM -> client"),
        (&frr_vm, vm_ip(0), "FRR VM -> the controller's VM"),
    ] {
        let p = pings(from, to);
        assert_eq!(p.received, p.sent, "{}", context(&format!("{what}: {p:?}")));
    }

    let client_mac = vm_mac(CLIENT);
    assert!(
        wait_for(Duration::from_secs(10), || {
            frr.vtysh(&format!("show evpn mac vni {VNI}"))
                .lines()
                .any(|l| {
                    l.contains(&client_mac)
                        && l.contains("remote")
                        && l.contains(&GATEWAY.to_string())
                })
        }),
        "{}",
        context("FRR does not list the client's VM behind the gateway")
    );
    // The client VM's address, snooped at the client and sent to the
    // controller, goes out as a MAC/IP route behind the gateway too.
    let mac_ip = format!("[2]:[0]:[48]:[{client_mac}]:[32]:[{}]", vm_ip(CLIENT));
    assert!(
        wait_for(Duration::from_secs(10), || frr
            .vtysh("show bgp l2vpn evpn route type macip")
            .contains(&mac_ip)),
        "{}",
        context(&format!(
            "FRR has no MAC/IP route {mac_ip} from the gateway:\n{}",
            frr.vtysh("show bgp l2vpn evpn route type macip")
        ))
    );
    zone_addresses_reach_the_client(&c, &frr, &frr_host, &context);
    let frr_mac = vm_mac(FRR_VM);
    assert!(
        wait_for(Duration::from_secs(10), || placed_behind(
            &c, 0, &frr_mac, FRR
        )),
        "{}",
        context(&format!(
            "the controller does not place the FRR VM behind FRR: {}",
            fdb(&c, 0)
        ))
    );

    a_client_cannot_take_the_zones_mac(&c, &frr);
    a_vm_migrates_from_the_zone_to_the_client(&c, &frr, frr_vm, &frr_vm_stays);
}

/// The client's `suppression` counter or gauge `field`.
fn client_suppression(c: &Cluster, field: &str) -> u64 {
    c.nodes[CLIENT].daemon.status_json().unwrap()["suppression"][field]
        .as_u64()
        .unwrap()
}

/// The FRR node's bridge gets a gateway address, as a Proxmox vnet with a
/// gateway has: zebra learns its VM's address there and sends a MAC/IP
/// route, which the gateway hands to its client as a binding of the zone's;
/// the client's vlnet then answers its VM's ARP for the FRR VM itself.
fn zone_addresses_reach_the_client(
    c: &Cluster,
    frr: &Frr,
    frr_host: &Host,
    context: &dyn Fn(&str) -> String,
) {
    frr_host
        .ns()
        .run(&["ip", "addr", "add", "192.0.2.250/24", "dev", BRIDGE])
        .unwrap();
    frr_host
        .ns()
        .run(&["ping", "-c", "1", "-W", "2", &vm_ip(FRR_VM).to_string()])
        .unwrap();
    let route = format!("[2]:[0]:[48]:[{}]:[32]:[{}]", vm_mac(FRR_VM), vm_ip(FRR_VM));
    assert!(
        wait_for(Duration::from_secs(10), || frr
            .vtysh("show bgp l2vpn evpn route type macip")
            .contains(&route)),
        "{}",
        context("zebra did not advertise the FRR VM's address")
    );
    // The binding travels zebra → FRR → gateway → client: ask until the
    // client's vlnet answers (a fresh ARP request each time).
    let before = client_suppression(c, "arp_replied");
    let client_vm = &c.nodes[CLIENT].vm;
    let answered = wait_for(Duration::from_secs(15), || {
        client_vm
            .ns()
            .run(&["ip", "neigh", "flush", "dev", VM_IF])
            .unwrap();
        let p = pings(client_vm, vm_ip(FRR_VM));
        p.received == p.sent && client_suppression(c, "arp_replied") > before
    });
    assert!(
        answered,
        "{}\n--- client suppression: {}",
        context("the client's vlnet did not answer its VM's ARP for the FRR VM"),
        c.nodes[CLIENT].daemon.status_json().unwrap()["suppression"]
    );
}

/// A VM on the client with the FRR VM's MAC speaks: the client advertises
/// the MAC, and the controller must refuse it.
fn a_client_cannot_take_the_zones_mac(c: &Cluster, frr: &Frr) {
    let controller = &c.controller().daemon;
    let refused = || {
        sample(
            &scrape(controller.ns(), controller.spec().metrics_port),
            "vlnet_control_rejected_total{reason=\"not_owner\"}",
        )
    };
    let before = refused();
    let frr_mac = vm_mac(FRR_VM);
    let thief = c.nodes[CLIENT]
        .site
        .host()
        .add_vm("thief", BRIDGE, &frr_mac, Ipv4Addr::new(192, 0, 2, 200), 24)
        .unwrap();
    // Its frames make the client's bridge learn the MAC; the client's
    // daemon then claims it.
    let _ = probe::ping(thief.ns(), vm_ip(0), 3, Duration::from_millis(200));
    assert!(
        wait_for(Duration::from_secs(15), || refused() > before),
        "the controller did not refuse the client's claim of the FRR VM's MAC: \
         not_owner {before} -> {}\n{}",
        refused(),
        controller.log_tail(40)
    );
    assert!(
        placed_behind(c, 0, &frr_mac, FRR),
        "the claim moved the FRR VM's MAC: {}",
        fdb(c, 0)
    );
    let macs = frr.vtysh(&format!("show evpn mac vni {VNI}"));
    assert!(
        macs.lines()
            .any(|l| l.contains(&frr_mac) && l.contains("local")),
        "FRR no longer holds its VM's MAC:\n{macs}"
    );
    let p = pings(&c.controller().vm, vm_ip(FRR_VM));
    assert_eq!(
        p.received, p.sent,
        "the real VM is no longer reached: {p:?}"
    );
}

/// The FRR VM leaves the FRR node and comes up on the client with the same
/// MAC and address: once FRR withdrew it, the controller grants the
/// client's claim and advertises it behind itself.
fn a_vm_migrates_from_the_zone_to_the_client(c: &Cluster, frr: &Frr, frr_vm: Vm, stays: &Vm) {
    let frr_mac = vm_mac(FRR_VM);
    drop(frr_vm);
    assert!(
        wait_for(Duration::from_secs(15), || !frr
            .vtysh(&format!("show evpn mac vni {VNI}"))
            .contains(&frr_mac)),
        "FRR did not withdraw the MAC of the VM that left"
    );
    let moved = secure_vm(c.nodes[CLIENT].site.host(), "moved", FRR_VM);
    assert!(
        wait_for(Duration::from_secs(30), || {
            probe::ping(
                moved.ns(),
                vm_ip(FRR_VM_STAYS),
                1,
                Duration::from_millis(300),
            )
            .is_ok_and(|p| p.received == 1)
        }),
        "the migrated VM does not reach the FRR node's VM:\n{}",
        c.controller().daemon.log_tail(30)
    );
    assert!(
        wait_for(Duration::from_secs(10), || {
            frr.vtysh(&format!("show evpn mac vni {VNI}"))
                .lines()
                .any(|l| l.contains(&frr_mac) && l.contains(&GATEWAY.to_string()))
        }),
        "FRR does not place the migrated VM behind the gateway:\n{}",
        frr.vtysh(&format!("show evpn mac vni {VNI}"))
    );
    for from in [stays, &c.controller().vm] {
        let p = pings(from, vm_ip(FRR_VM));
        assert_eq!(p.received, p.sent, "the migrated VM at its old IP: {p:?}");
    }
}
