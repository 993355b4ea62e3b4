//! The data plane's trust boundary end to end, on the WAN test-bed with a
//! controller, its kernel-vxlan static peer and two members joined by token:
//!
//! - A host on the cloud LAN with no WireGuard key forges VXLAN from a
//!   member's and from the controller's tunnel address, to the controller's
//!   VTEP and to a member's underlay address: nothing reaches any VM (each
//!   VM's interface is captured), no FDB entry moves, every forged packet is
//!   counted as `wrong_path`, and the real traffic goes on — with TC and
//!   with XDP decap (the XDP cluster's hosts send with tx checksum offload
//!   off, as a real wire delivers frames).
//! - A member sending frames from other VMs' MACs through the tunnel is
//!   dropped as `source_not_owned` where those VMs live and where they are
//!   placed behind another VTEP.
//! - Through the tunnel a member opens TCP connections only to the ports the
//!   nodes opened, on the controller's and on another member's tunnel
//!   address (`tunnel_filtered` counts the rest), and member-to-member VM
//!   pings still pass.
//!
//! Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use support::control::reach;
use support::frames;
use support::node::vlnet_binary;
use support::packet_socket::PacketSocket;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use vlnet_dataplane::mac::MacAddr;
use vlnet_lab::beds::cluster::{Cluster, ClusterOptions, Place, KERNEL_VM};
use vlnet_lab::beds::scenario::{vm_ip, vm_mac, VNI};
use vlnet_lab::primitives::probe;
use vlnet_lab::primitives::topology::VM_IF;
use vlnet_lab::{Daemon, Datapath, NetNs};

/// The controller's tunnel address (the cluster's pool starts there).
const CONTROLLER_TUNNEL: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// Bytes every forged inner frame carries, looked for on the VMs' links.
const MARKER: &[u8] = b"vlt-forged-by-a-host-with-no-key";
/// Forged packets of each kind.
const COPIES: u64 = 5;
/// How long a VM is given to reach another (see `support::control::reach`).
const REACH: Duration = Duration::from_secs(15);

/// How long the VMs' links are watched for forged frames.
const WATCH: Duration = Duration::from_secs(3);

fn drops(daemon: &Daemon, reason: &str) -> u64 {
    let status = daemon.status_json().unwrap();
    status["drops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["reason"] == reason)
        .and_then(|d| d["packets"].as_u64())
        .unwrap_or_else(|| panic!("no drop reason {reason} in {status}"))
}

/// `mac → vtep` of VNI [`VNI`] in `daemon`'s FDB.
fn fdb(daemon: &Daemon) -> BTreeMap<String, String> {
    fdb_of(daemon, |_| true)
}

/// Where `daemon` places the cluster's VMs (the MACs the forgeries use;
/// other MACs, such as a bridge's own, may be learned meanwhile).
fn vm_routes(daemon: &Daemon) -> BTreeMap<String, String> {
    let vms: Vec<String> = (0..3).map(vm_mac).collect();
    fdb_of(daemon, |mac| vms.iter().any(|v| v == mac))
}

/// [`fdb`] restricted to the MACs `keep` accepts.
fn fdb_of(daemon: &Daemon, keep: impl Fn(&str) -> bool) -> BTreeMap<String, String> {
    let text = daemon
        .ctl(&["fdb", "--vni", &VNI.to_string(), "--json"])
        .unwrap();
    let rows: serde_json::Value = serde_json::from_str(&text).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["mac"].as_str().unwrap().to_owned(),
                r["vtep"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(mac, _)| keep(mac))
        .collect()
}

/// Waits until `daemon` places `mac` behind `vtep` (the control plane
/// distributes every VM's MAC).
fn wait_for_route(daemon: &Daemon, mac: &str, vtep: Ipv4Addr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let table = fdb(daemon);
        if table.get(mac) == Some(&vtep.to_string()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {mac} not behind {vtep}: {table:?}",
            daemon.name()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An inner broadcast (an ARP request) and an inner unicast to `to` (UDP),
/// both from `source` and carrying [`MARKER`].
fn forged_inner(source: &str, to: &str) -> [Vec<u8>; 2] {
    let source: MacAddr = source.parse().unwrap();
    let to: MacAddr = to.parse().unwrap();
    let mut arp = frames::ethernet([0xff; 6], source.0, 0x0806);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&source.0);
    arp.extend_from_slice(&[192, 0, 2, 250, 0, 0, 0, 0, 0, 0, 192, 0, 2, 251]);
    arp.extend_from_slice(MARKER);
    let mut udp = frames::inner_udp(to.0, 0, 0);
    udp[6..12].copy_from_slice(&source.0);
    udp.extend_from_slice(MARKER);
    // Lengths: IPv4 total and UDP length grow by the marker.
    let extra = u16::try_from(MARKER.len()).unwrap();
    for at in [14 + 2, 14 + 20 + 4] {
        let n = u16::from_be_bytes([udp[at], udp[at + 1]]) + extra;
        udp[at..at + 2].copy_from_slice(&n.to_be_bytes());
    }
    frames::fix_ipv4_checksum(&mut udp, 14);
    [arp, udp]
}

/// Sends `packet` (a whole IPv4 packet, source address included) from
/// inside `ns` through a raw socket: the kernel routes it by its destination
/// and sends it as it is, forged source and all.
fn send_raw(ns: &NetNs, packet: Vec<u8>, copies: u64) {
    ns.within(move || {
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // SAFETY: fd was just opened and is owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        to.sin_family = libc::AF_INET as libc::sa_family_t;
        to.sin_addr.s_addr = u32::from_ne_bytes([packet[16], packet[17], packet[18], packet[19]]);
        for _ in 0..copies {
            // SAFETY: buffer and address valid for their lengths.
            let n = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&raw const to).cast(),
                    size_of::<libc::sockaddr_in>() as u32,
                )
            };
            assert_eq!(
                usize::try_from(n).ok(),
                Some(packet.len()),
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
    })
    .unwrap();
}

/// Watches the VM link in `ns` for [`WATCH`] on a thread; the handle
/// answers whether a frame carrying [`MARKER`] arrived.
fn watch_vm(ns: &NetNs) -> std::thread::JoinHandle<bool> {
    let ns = ns.clone();
    std::thread::spawn(move || {
        ns.within(|| {
            let name = std::ffi::CString::new(VM_IF).unwrap();
            // SAFETY: a NUL-terminated interface name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            let socket = PacketSocket::bind(ifindex);
            let deadline = Instant::now() + WATCH;
            let mut seen = false;
            while Instant::now() < deadline {
                if let Some(frame) = socket.try_recv() {
                    seen |= frame.windows(MARKER.len()).any(|w| w == MARKER);
                }
            }
            seen
        })
        .unwrap()
    })
}

/// The cluster of the forgery tests: controller (node 0, with its kernel
/// peer), members 1 and 2 on the cloud LAN, every VM reaching every other,
/// each node's FDB holding every member's VM behind its tunnel address.
fn cluster(tag: &str, datapath: Datapath) -> Cluster {
    let options = ClusterOptions {
        kernel_peers: 1,
        datapath,
        ..ClusterOptions::default()
    };
    let c =
        Cluster::build_with(tag, &[Place::Cloud, Place::Cloud], &options, vlnet_binary()).unwrap();
    c.wait_connected().unwrap();
    for from in 0..3 {
        for to in (0..3).filter(|t| *t != from) {
            assert!(reach(&c, from, to, REACH), "{from} -> {to} unreachable");
        }
    }
    let kernel = &c.kernels[0];
    let r = probe::ping(kernel.vm.ns(), vm_ip(0), 3, Duration::from_millis(50)).unwrap();
    assert_eq!(r.received, 3, "kernel peer -> controller: {r:?}");
    let tunnel: Vec<Ipv4Addr> = (0..3).map(|n| c.tunnel_addr(n).unwrap()).collect();
    for (n, node) in c.nodes.iter().enumerate() {
        for other in (0..3).filter(|o| *o != n) {
            wait_for_route(&node.daemon, &vm_mac(other), tunnel[other]);
        }
    }
    c
}

/// Forged VXLAN from tunnel addresses on the underlay: dropped as
/// `wrong_path` at the controller's VTEP and at a member's underlay
/// address, nothing delivered, nothing moved.
fn forged_tunnel_addresses_on_the_underlay_are_dropped(tag: &str, datapath: Datapath) {
    let c = cluster(tag, datapath);
    let member2 = c.tunnel_addr(2).unwrap();
    let underlay = |n: usize| c.nodes[n].site.host().ip();
    let forger = c.wan.add_cloud_host("x", 100).unwrap();
    if datapath == Datapath::Xdp {
        forger.tx_checksum_off(forger.underlay_if()).unwrap();
    }
    // (forged source, target node, inner source MAC, inner unicast target):
    // each inner source is one the target places behind another VTEP (or
    // keeps as its own VM), the MAC an attacker would steal.
    let forgeries = [
        (member2, 0, vm_mac(1), vm_mac(0)),
        (member2, 0, vm_mac(0), vm_mac(0)),
        (CONTROLLER_TUNNEL, 1, vm_mac(2), vm_mac(1)),
        (member2, 1, vm_mac(0), vm_mac(1)),
    ];
    let before: Vec<_> = c.nodes.iter().map(|n| vm_routes(&n.daemon)).collect();
    let wrong_before: Vec<u64> = c
        .nodes
        .iter()
        .map(|n| drops(&n.daemon, "wrong_path"))
        .collect();

    let mut watchers: Vec<_> = c.nodes.iter().map(|n| watch_vm(n.vm.ns())).collect();
    watchers.push(watch_vm(c.kernels[0].vm.ns()));
    std::thread::sleep(Duration::from_millis(300));
    let mut sent = [0u64; 3];
    for (source, target, inner_source, inner_target) in &forgeries {
        for inner in forged_inner(inner_source, inner_target) {
            let frame = frames::vxlan(*source, underlay(*target), VNI, 0, &inner);
            send_raw(forger.ns(), frame[14..].to_vec(), COPIES);
            sent[*target] += COPIES;
        }
    }
    for (i, watcher) in watchers.into_iter().enumerate() {
        let who = if i < 3 {
            format!("node {i}'s VM")
        } else {
            format!("the kernel node's VM {KERNEL_VM}")
        };
        assert!(!watcher.join().unwrap(), "a forged frame reached {who}");
    }
    for (n, node) in c.nodes.iter().enumerate() {
        let counted = drops(&node.daemon, "wrong_path") - wrong_before[n];
        assert_eq!(
            counted, sent[n],
            "node {n}: forged packets counted as wrong_path"
        );
        assert_eq!(
            vm_routes(&node.daemon),
            before[n],
            "node {n}: an FDB entry moved"
        );
    }
    // The real traffic goes on: members, the kernel peer.
    for (from, to) in [(1, 0), (2, 1), (0, 2)] {
        assert!(
            reach(&c, from, to, REACH),
            "{from} -> {to} after the forgeries"
        );
    }
    let kernel = &c.kernels[0];
    let r = probe::ping(kernel.vm.ns(), vm_ip(0), 3, Duration::from_millis(50)).unwrap();
    assert_eq!(
        r.received, 3,
        "kernel peer -> controller after the forgeries: {r:?}"
    );
}

#[test]
fn tc_forged_tunnel_addresses_on_the_underlay_are_dropped() {
    forged_tunnel_addresses_on_the_underlay_are_dropped("tdt", Datapath::Tc);
}

#[test]
fn xdp_forged_tunnel_addresses_on_the_underlay_are_dropped() {
    forged_tunnel_addresses_on_the_underlay_are_dropped("tdx", Datapath::Xdp);
}

/// A member sends frames from cloud VMs' MACs into its overlay port (past
/// its own bridge, as a subverted node's data plane would), flooded and
/// unicast through the tunnel: the controller, where VM 0 lives, and
/// member 2, where VM 2 lives, drop every one as `source_not_owned`
/// (a MAC held by another VTEP, or living here); nothing reaches a VM and
/// no route moves.
#[test]
fn a_member_cannot_send_from_a_mac_it_does_not_hold() {
    let c = cluster("tdo", Datapath::Tc);
    let before: Vec<_> = [0, 2].map(|n| vm_routes(&c.nodes[n].daemon)).into();
    let owned_before = [0, 2].map(|n| drops(&c.nodes[n].daemon, "source_not_owned"));
    let mut watchers: Vec<_> = [0, 2].map(|n| watch_vm(c.nodes[n].vm.ns())).into();
    watchers.push(watch_vm(c.kernels[0].vm.ns()));
    std::thread::sleep(Duration::from_millis(300));
    let stolen = [(vm_mac(0), vm_mac(2)), (vm_mac(2), vm_mac(0))];
    c.nodes[1]
        .daemon
        .ns()
        .within(|| {
            let port = PacketSocket::bind_named(&format!("vlp{VNI}"));
            for _ in 0..COPIES {
                for (source, to) in &stolen {
                    for frame in forged_inner(source, to) {
                        port.send(&frame);
                    }
                }
            }
        })
        .unwrap();
    for (i, watcher) in watchers.into_iter().enumerate() {
        assert!(
            !watcher.join().unwrap(),
            "a frame from a stolen MAC reached VM watcher {i}"
        );
    }
    for (i, n) in [0, 2].into_iter().enumerate() {
        let dropped = drops(&c.nodes[n].daemon, "source_not_owned") - owned_before[i];
        // Each node gets at least the two broadcasts of each copy.
        assert!(
            dropped >= 2 * COPIES,
            "node {n}: {dropped} frames from stolen MACs counted as source_not_owned"
        );
        assert_eq!(
            vm_routes(&c.nodes[n].daemon),
            before[i],
            "node {n}: a route moved"
        );
    }
    assert!(reach(&c, 2, 0, REACH), "VM 2 -> VM 0 afterwards");
    assert!(reach(&c, 0, 2, REACH), "VM 0 -> VM 2 afterwards");
}

/// The port every node opens to members, and one it does not.
const OPEN_PORT: u16 = 7000;
const CLOSED_PORT: u16 = 7001;

/// Whether a TCP connection from inside `ns` to `to` completes within 2 s.
fn connects(ns: &NetNs, to: SocketAddr) -> bool {
    ns.within(move || TcpStream::connect_timeout(&to, Duration::from_secs(2)).is_ok())
        .unwrap()
}

#[test]
fn members_reach_only_open_ports_through_the_tunnel() {
    let options = ClusterOptions {
        open_ports: vec![format!("tcp/{OPEN_PORT}")],
        ..ClusterOptions::default()
    };
    let c = Cluster::build_with(
        "tdf",
        &[Place::Cloud, Place::PublicClient],
        &options,
        vlnet_binary(),
    )
    .unwrap();
    c.wait_connected().unwrap();
    // VM traffic first: the WireGuard sessions between the nodes are up.
    for (from, to) in [(1, 0), (1, 2)] {
        assert!(reach(&c, from, to, REACH), "{from} -> {to} unreachable");
    }
    let member2 = c.tunnel_addr(2).unwrap();
    // Services on the controller's and member 2's hosts, on every address:
    // the kernel completes handshakes on them without an accept().
    let mut listeners: Vec<TcpListener> = Vec::new();
    for n in [0, 2] {
        for port in [OPEN_PORT, CLOSED_PORT] {
            let listener = c.nodes[n]
                .daemon
                .ns()
                .within(move || TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap())
                .unwrap();
            listeners.push(listener);
        }
    }
    // The closed port answers on the hosts' own underlay address (only the
    // tunnel is filtered): the refusals below are the filter's.
    let outsider = c.wan.add_cloud_host("out", 100).unwrap();
    for n in [0, 2] {
        let lan = c.nodes[n].site.host().ip();
        assert!(
            connects(outsider.ns(), SocketAddr::from((lan, CLOSED_PORT))),
            "node {n}'s service does not answer on its underlay address {lan}"
        );
    }
    let filtered_before = [0, 2].map(|n| drops(&c.nodes[n].daemon, "tunnel_filtered"));
    let from = c.nodes[1].daemon.ns();
    for (name, addr) in [("controller", CONTROLLER_TUNNEL), ("member 2", member2)] {
        assert!(
            connects(from, SocketAddr::from((addr, OPEN_PORT))),
            "member 1 cannot reach the open port on the {name}'s tunnel address"
        );
        assert!(
            !connects(from, SocketAddr::from((addr, CLOSED_PORT))),
            "member 1 reached a port the {name} did not open"
        );
    }
    for (i, n) in [0, 2].into_iter().enumerate() {
        let filtered = drops(&c.nodes[n].daemon, "tunnel_filtered") - filtered_before[i];
        assert!(
            filtered >= 1,
            "node {n}: the refused SYNs were not counted ({filtered})"
        );
    }
    // Echo to the tunnel addresses and VM traffic between members pass.
    let r = probe::ping(from, member2, 3, Duration::from_millis(50)).unwrap();
    assert_eq!(r.received, 3, "ping member 2's tunnel address: {r:?}");
    assert!(reach(&c, 1, 2, REACH), "member 1's VM -> member 2's");
    assert!(reach(&c, 2, 1, REACH), "member 2's VM -> member 1's");
    assert!(reach(&c, 2, 0, REACH), "member 2's VM -> the controller's");
    drop(listeners);
}
