//! The gateway (issue 14): one vlnet node extends an unmodified Proxmox SDN
//! VXLAN zone to clients. In namespaces: three kernel-vxlan nodes (learning
//! on, each listing the other zone nodes as static peers, as Proxmox writes
//! them), the vlnet gateway (the controller, the zone's fourth node) on the
//! cloud LAN, and two clients across the WAN (one public, one behind NAT)
//! joined by token; a VM on each. Every kernel VM and every client VM
//! ping each other and run iperf3 both ways; the kernel nodes learn the
//! clients' MACs behind the gateway's VTEP; the clients' WAN links carry
//! only WireGuard while the cloud LAN carries standard VXLAN that tshark
//! dissects; a broadcast from a kernel VM, a client VM and the gateway's VM
//! reaches every VM exactly once (no loops); the gateway counts what it
//! relayed each way. A client VM that binds a kernel VM's address before
//! that VM speaks loses it to the zone (the other client's vlnet answers
//! for the kernel VM with that VM's MAC), and a member that claims it
//! anyway is refused `duplicate_ip`.
//! Needs root, iperf3 and tshark (`tests/install-deps.sh`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use support::node::{sample, scrape, vlnet_binary};
use vlnet_lab::beds::cluster::{kernel_vm, Cluster, ClusterOptions, Place, Site};
use vlnet_lab::beds::scenario::{vm_ip, vm_mac, VNI};
use vlnet_lab::primitives::probe::{self, Capture, CaptureReport};
use vlnet_lab::primitives::topology::VM_IF;
use vlnet_lab::{NetNs, Vm};

/// Kernel-vxlan nodes in the zone, and clients.
const ZONE: usize = 3;
const CLIENTS: [usize; 2] = [1, 2];
/// iperf3's port on every VM.
const IPERF_PORT: u16 = 5201;

/// The gateway with its zone and two clients, every member connected and
/// every client VM's MAC placed behind its member on the gateway.
fn gateway_bed() -> Cluster {
    let options = ClusterOptions {
        kernel_peers: ZONE,
        ..ClusterOptions::default()
    };
    let c = Cluster::build_with(
        "gw",
        &[Place::PublicClient, Place::NattedClient],
        &options,
        vlnet_binary(),
    )
    .unwrap();
    c.wait_connected().unwrap();
    for n in CLIENTS {
        assert!(
            reach(c.nodes[n].vm.ns(), vm_ip(0)),
            "client {n} -> gateway VM"
        );
        // Only then does the gateway relay that member's frames to the zone.
        c.wait_placed(0, &vm_mac(n), c.tunnel_addr(n).unwrap())
            .unwrap();
    }
    c
}

/// Pings `to` from `from` once at a time until it answers (ARP and
/// WireGuard handshakes first), for at most 15 s.
fn reach(from: &NetNs, to: Ipv4Addr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let r = probe::ping(from, to, 1, Duration::from_millis(200));
        if r.is_ok_and(|r| r.received == 1) {
            return true;
        }
    }
    false
}

/// Every kernel VM with every client VM: `(kernel VM, its index, client node)`.
fn pairs(c: &Cluster) -> Vec<(&Vm, usize, usize)> {
    c.kernels
        .iter()
        .enumerate()
        .flat_map(|(i, k)| CLIENTS.map(|n| (&k.vm, kernel_vm(i), n)))
        .collect()
}

/// The relay counters on the gateway: `(to_members, to_zone)` packets.
fn relayed(c: &Cluster) -> (u64, u64) {
    let status = c.controller().daemon.status_json().unwrap();
    assert_eq!(
        status["relay"], true,
        "the controller is a gateway: {status}"
    );
    let of = |dir: &str| {
        status["relayed"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["direction"] == dir)
            .and_then(|r| r["packets"].as_u64())
            .unwrap()
    };
    (of("to_members"), of("to_zone"))
}

/// The whole bed is built once (it takes most of the test's time): pings,
/// what the zone learned, the captures, TCP, then the broadcasts.
#[test]
fn a_gateway_joins_a_kernel_vxlan_zone_and_its_clients() {
    let c = gateway_bed();
    claim_a_kernel_vms_address(&c);
    let wan_captures: Vec<Capture> = CLIENTS
        .iter()
        .map(|&n| {
            let Site::Client(client) = &c.nodes[n].site else {
                unreachable!("clients are across the WAN")
            };
            client
                .capture_wan(
                    "udp",
                    &["udp.srcport", "udp.dstport"],
                    None,
                    Duration::from_secs(8),
                )
                .unwrap()
        })
        .collect();
    let lan = Capture::start(
        c.wan.cloud().switch(),
        c.wan.cloud().bridge(),
        "udp port 4789",
        &["ip.src", "ip.dst", "vxlan.vni", "eth.src", "eth.dst"],
        None,
        Duration::from_secs(8),
    )
    .unwrap();

    // Every kernel VM ↔ every client VM, both ways.
    for (kvm, k, n) in pairs(&c) {
        let client = &c.nodes[n].vm;
        assert!(reach(kvm.ns(), vm_ip(n)), "kernel VM {k} -> client {n}");
        let r = probe::ping(kvm.ns(), vm_ip(n), 5, Duration::from_millis(20)).unwrap();
        assert_eq!(r.received, 5, "kernel VM {k} -> client {n}: {r:?}");
        let r = probe::ping(client.ns(), vm_ip(k), 5, Duration::from_millis(20)).unwrap();
        assert_eq!(r.received, 5, "client {n} -> kernel VM {k}: {r:?}");
    }
    zone_learned_the_clients_behind_the_gateway(&c);
    cloud_lan_carries_the_relayed_vxlan(&c, &lan.finish().unwrap());
    wan_carries_only_wireguard(wan_captures);

    // TCP both ways across the gateway.
    for (kvm, k, n) in pairs(&c) {
        let _server = probe::iperf3_server(c.nodes[n].vm.ns(), vm_ip(n), IPERF_PORT).unwrap();
        let up = probe::iperf3_client(kvm.ns(), vm_ip(n), 1, 1, IPERF_PORT).unwrap();
        assert!(
            up.bits_per_second > 10e6,
            "kernel VM {k} -> client {n}: {up:?}"
        );
        let _server = probe::iperf3_server(kvm.ns(), vm_ip(k), IPERF_PORT).unwrap();
        let down = probe::iperf3_client(c.nodes[n].vm.ns(), vm_ip(k), 1, 1, IPERF_PORT).unwrap();
        assert!(
            down.bits_per_second > 10e6,
            "client {n} -> kernel VM {k}: {down:?}"
        );
    }
    let (to_members, to_zone) = relayed(&c);
    assert!(
        to_members > 1000 && to_zone > 1000,
        "relayed {to_members} / {to_zone}"
    );
    broadcasts_reach_every_vm_exactly_once(&c);
    the_zone_keeps_its_address(&c);
}

/// The kernel VM whose address client 1's VM claims.
const CLAIMED: usize = ZONE - 1;

/// Client 1's VM sends an ARP request from kernel VM [`CLAIMED`]'s
/// address (which it holds for that moment): its member snoops the binding
/// to its own MAC and reports it, unless the controller's binding of the
/// address to another MAC is in its kernel already.
fn claim_a_kernel_vms_address(c: &Cluster) {
    let vm = c.nodes[CLIENTS[0]].vm.ns();
    let stolen = format!("{}/32", vm_ip(kernel_vm(CLAIMED)));
    vm.run(&["ip", "addr", "add", &stolen, "dev", VM_IF])
        .unwrap();
    let src = vm_ip(kernel_vm(CLAIMED)).to_string();
    // Nobody has .200: the ping only makes the ARP request.
    vm.run(&["ping", "-c", "1", "-W", "1", "-I", &src, "192.0.2.200"])
        .ok();
    vm.run(&["ip", "addr", "del", &stolen, "dev", VM_IF])
        .unwrap();
}

/// The zone's VMs' bindings are the gateway's (kind zone); client 2's vlnet
/// answers its VM's ARP request for kernel VM [`CLAIMED`] with that VM's
/// MAC (the ping goes through: the first-come claim of client 1 lost); and
/// client 1's member, made to forget the controller's binding (as a member
/// that ignores it would), claims the address again and is refused
/// `duplicate_ip`.
fn the_zone_keeps_its_address(c: &Cluster) {
    let gw = &c.controller().daemon;
    let zone = gw.status_json().unwrap()["suppression"]["bindings_zone"]
        .as_u64()
        .unwrap();
    assert!(zone >= ZONE as u64, "the kernel VMs' bindings: {zone}");
    let n = CLIENTS[1];
    let before = arp_replied(c, n);
    let vm = c.nodes[n].vm.ns();
    vm.run(&["ip", "neigh", "flush", "all"]).unwrap();
    let k = vm_ip(kernel_vm(CLAIMED));
    let r = probe::ping(vm, k, 1, Duration::from_millis(20)).unwrap();
    assert_eq!(r.received, 1, "client {n} -> kernel VM {CLAIMED}: {r:?}");
    assert!(
        arp_replied(c, n) > before,
        "client {n}'s vlnet answered for the kernel VM"
    );

    let refused = || {
        sample(
            &scrape(gw.ns(), gw.spec().metrics_port),
            "vlnet_control_rejected_total{reason=\"duplicate_ip\"}",
        )
    };
    let already = refused();
    forget_binding(c, CLIENTS[0], k);
    claim_a_kernel_vms_address(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while refused() <= already {
        assert!(
            Instant::now() < deadline,
            "client 1's claim of a kernel VM's address was not refused"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Deletes node `n`'s binding of `ip` from its pinned `vlnet_neigh`.
fn forget_binding(c: &Cluster, n: usize, ip: Ipv4Addr) {
    let map = c.nodes[n].daemon.pin_dir().join("maps/vlnet_neigh");
    let mut key = VNI.to_le_bytes().to_vec();
    key.extend_from_slice(&[4, 0, 0, 0]); // VLNET_FAMILY_IPV4, padding
    key.extend_from_slice(&ip.octets());
    key.extend_from_slice(&[0; 12]);
    let mut args = vec!["map".to_owned(), "delete".to_owned(), "pinned".to_owned()];
    args.push(map.display().to_string());
    args.push("key".to_owned());
    args.extend(key.iter().map(u8::to_string));
    let out = std::process::Command::new("bpftool")
        .args(&args)
        .output()
        .unwrap();
    assert!(out.status.success(), "bpftool {args:?}: {out:?}");
}

/// The zone's nodes learned every client VM behind the gateway's VTEP.
fn zone_learned_the_clients_behind_the_gateway(c: &Cluster) {
    let gateway = c.controller().site.host().ip().to_string();
    for (i, k) in c.kernels.iter().enumerate() {
        let fdb = k
            .host
            .ns()
            .run(&["bridge", "fdb", "show", "dev", &format!("vxlan{VNI}")])
            .unwrap();
        for n in CLIENTS {
            let learned = fdb
                .lines()
                .any(|l| l.starts_with(&vm_mac(n)) && l.contains(&format!("dst {gateway} ")));
            assert!(
                learned,
                "kernel node {i} lacks client {n} behind {gateway}:\n{fdb}"
            );
        }
    }
}

/// The cloud LAN carried VXLAN of VNI 100 that tshark dissects, among it
/// the clients' frames from the gateway's VTEP to every zone node.
fn cloud_lan_carries_the_relayed_vxlan(c: &Cluster, lan: &CaptureReport) {
    let gateway = c.controller().site.host().ip().to_string();
    assert!(!lan.rows.is_empty(), "no VXLAN on the cloud LAN");
    let client_macs: Vec<String> = CLIENTS.map(vm_mac).into();
    let mut relayed_out = 0;
    for row in &lan.rows {
        assert_eq!(
            row[2],
            VNI.to_string(),
            "tshark dissects VNI {VNI}: {row:?}"
        );
        // Fields present twice (outer and inner) are comma-joined, outer first.
        let outer_src = row[0].split(',').next().unwrap_or_default();
        let inner_src = row[3].split(',').nth(1).unwrap_or_default();
        if outer_src == gateway && client_macs.iter().any(|m| m == inner_src) {
            relayed_out += 1;
        }
    }
    assert!(
        relayed_out >= ZONE * CLIENTS.len() * 5,
        "{relayed_out} client frames from the gateway to the zone among {} VXLAN packets",
        lan.rows.len()
    );
}

/// The clients' WAN links carried WireGuard and nothing else.
fn wan_carries_only_wireguard(captures: Vec<Capture>) {
    for (capture, n) in captures.into_iter().zip(CLIENTS) {
        let report = capture.finish().unwrap();
        assert!(
            !report.rows.is_empty(),
            "client {n}: nothing on its WAN link"
        );
        for row in &report.rows {
            assert!(
                !row.iter().any(|p| p == "4789"),
                "client {n}: cleartext VXLAN on the WAN: {row:?}"
            );
            assert!(
                row.iter().any(|p| p == "51820"),
                "client {n}: UDP that is not WireGuard on the WAN: {row:?}"
            );
        }
    }
}

/// One broadcast each from a kernel VM, a client VM and the gateway's VM
/// (pings of three sizes to 192.0.2.255): every VM, the senders included
/// (tshark sees their own transmission), sees each exactly once (its first
/// three broadcasts are the three sizes: a copy or a loop shows as a size
/// seen twice).
fn broadcasts_reach_every_vm_exactly_once(c: &Cluster) {
    let vms: Vec<(String, &Vm)> = c
        .nodes
        .iter()
        .enumerate()
        .map(|(n, node)| (format!("node {n}'s VM"), &node.vm))
        .chain(
            c.kernels
                .iter()
                .enumerate()
                .map(|(i, k)| (format!("kernel VM {i}"), &k.vm)),
        )
        .collect();
    let captures: Vec<Capture> = vms
        .iter()
        .map(|(_, vm)| {
            Capture::start(
                vm.ns(),
                vm.ifname(),
                "icmp and dst host 192.0.2.255",
                &["ip.len"],
                // Three (a copy too many shows among them); the window is
                // long because captures start one after another and a
                // loaded machine takes seconds for each.
                Some(3),
                Duration::from_secs(20),
            )
            .unwrap()
        })
        .collect();
    let senders = [
        (&c.kernels[0].vm, 101),
        (&c.nodes[1].vm, 102),
        (&c.nodes[0].vm, 103),
    ];
    for (vm, payload) in senders {
        vm.ns()
            .run(&[
                "ping",
                "-b",
                "-c",
                "1",
                "-W",
                "1",
                "-s",
                &payload.to_string(),
                "192.0.2.255",
            ])
            .ok(); // nobody answers a broadcast ping: the exit status is 1
    }
    for ((who, _), capture) in vms.iter().zip(captures) {
        let seen = capture.finish().unwrap();
        let mut sizes: Vec<&str> = seen.column("ip.len");
        sizes.sort_unstable();
        assert_eq!(
            sizes,
            ["129", "130", "131"],
            "{who} saw each broadcast once: {:?}",
            seen.rows
        );
    }
}

/// A class: 40 members across the WAN, joined by token on one VNI, each
/// resolving and pinging the gateway's VM; then, with the gateway VM's IP
/// binding distributed to every member, each member VM resolves it afresh
/// and its own vlnet answers (`suppression.arp_replied` grows) while a
/// capture inside the gateway's WireGuard interface sees no ARP request for
/// it; the controller's limit (40 here) refuses a 41st invite with a
/// message naming the VNI and the limit. The suite's heaviest test: 40
/// vlnet daemons and WireGuard devices, about two and a half minutes here.
#[test]
fn a_class_of_40_members_reaches_the_gateways_vm() {
    const CLASS: usize = 40;
    let options = ClusterOptions {
        member_limit: Some(CLASS as u32),
        ..ClusterOptions::default()
    };
    let started = Instant::now();
    let c = Cluster::build_with(
        "gwc",
        &[Place::PublicClient; CLASS],
        &options,
        vlnet_binary(),
    )
    .unwrap();
    c.wait_connected().unwrap();
    eprintln!(
        "{CLASS} members joined in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for n in 1..=CLASS {
        assert!(
            reach(c.nodes[n].vm.ns(), vm_ip(0)),
            "member {n} -> the gateway's VM"
        );
        let r = probe::ping(c.nodes[n].vm.ns(), vm_ip(0), 3, Duration::from_millis(20)).unwrap();
        assert_eq!(r.received, 3, "member {n} -> the gateway's VM: {r:?}");
    }
    eprintln!("all pinged after {:.1} s", started.elapsed().as_secs_f64());
    class_resolves_the_gateways_vm_locally(&c, CLASS);
    eprintln!(
        "all resolved locally after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let refused = c.invite("late", "1h").unwrap_err().to_string();
    assert!(
        refused.contains("VNI 100") && refused.contains("max_members_per_vni is 40"),
        "{refused}"
    );
}

/// The `arp_replied` suppression counter of node `n`.
fn arp_replied(c: &Cluster, n: usize) -> u64 {
    c.nodes[n].daemon.status_json().unwrap()["suppression"]["arp_replied"]
        .as_u64()
        .unwrap()
}

/// Every member of the class holds the gateway VM's binding and answers its
/// VM's fresh ARP request for it: no request crosses a tunnel.
fn class_resolves_the_gateways_vm_locally(c: &Cluster, class: usize) {
    const WINDOW: Duration = Duration::from_secs(20);
    for n in 1..=class {
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.nodes[n].daemon.status_json().unwrap()["suppression"]["bindings_control"]
            .as_u64()
            .unwrap()
            == 0
        {
            assert!(Instant::now() < deadline, "member {n} has no binding");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let gw = &c.nodes[0];
    let wg = &gw.daemon.spec().wireguard.as_ref().unwrap().ifname;
    let capture = Capture::start(
        gw.daemon.ns(),
        wg,
        "udp port 4789",
        &["arp.opcode", "arp.dst.proto_ipv4", "ip.src"],
        None,
        WINDOW,
    )
    .unwrap();
    let began = Instant::now();
    for n in 1..=class {
        let before = arp_replied(c, n);
        let vm = c.nodes[n].vm.ns();
        vm.run(&["ip", "neigh", "flush", "all"]).unwrap();
        let r = probe::ping(vm, vm_ip(0), 1, Duration::from_millis(20)).unwrap();
        assert_eq!(r.received, 1, "member {n} -> the gateway's VM: {r:?}");
        assert!(
            arp_replied(c, n) > before,
            "member {n}'s vlnet answered its VM's ARP request"
        );
    }
    assert!(
        began.elapsed() < WINDOW,
        "the capture covered every resolution"
    );
    let report = capture.finish().unwrap();
    assert!(
        report.rows.len() >= class,
        "the capture saw the pings' VXLAN: {} packets",
        report.rows.len()
    );
    let gateway_vm = vm_ip(0).to_string();
    let crossed: Vec<&Vec<String>> = report
        .rows
        .iter()
        .filter(|r| r[0] == "1" && r[1] == gateway_vm)
        .collect();
    assert!(
        crossed.is_empty(),
        "ARP requests for a known binding crossed the WAN: {crossed:?}"
    );
}
