//! The bridge bypass at XDP (`bypass = true` on a node that decapsulates
//! at XDP): a decapsulated known unicast IP frame for a VM whose port takes
//! XDP frames is redirected from the underlay's XDP program straight into
//! that port, with no skb before the VM's side. A tap always takes them
//! (QEMU reads them from it); a veth only while its peer runs a native XDP
//! program (a veth drops XDP frames for a peer without one). Two vlnet
//! nodes at XDP with the bypass on, a VM behind each; for the tap, a tap
//! with a reader in this test on node 1's bridge. Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use aya::maps::{HashMap, Map, MapData};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;
use serde_json::Value;
use support::node::{drop_counts, sample, scrape, status_until, vlnet_binary, PORTS_SETTLE};
use vlnet_dataplane::mac::MacAddr;
use vlnet_ebpf::abi::{vlnet_bypass_port, vlnet_fdb_key, VLNET_BYPASS_XDP};
use vlnet_lab::beds::scenario::{vm_ip, Scenario, ScenarioOptions, Vtep};
use vlnet_lab::primitives::probe;
use vlnet_lab::primitives::trafficgen::TRAFFICGEN_OBJECT;
use vlnet_lab::{Daemon, Datapath, NetNs};

const PINGS: u32 = 20;

/// Two vlnet nodes decapsulating at XDP, bypass on.
fn scenario(tag: &str) -> Scenario {
    let xdp = Vtep::Vlnet(Datapath::Xdp);
    Scenario::build_with(
        tag,
        &[xdp, xdp],
        vlnet_binary(),
        ScenarioOptions {
            bypass: true,
            ..ScenarioOptions::default()
        },
    )
    .unwrap()
}

/// Whether VNI 100's bypass lists `port` under `list` (`ports`,
/// `xdp_ports`).
fn listed(status: &Value, list: &str, port: &str) -> bool {
    status["vnis"][0]["bypass"][list]
        .as_array()
        .is_some_and(|p| p.iter().any(|p| p == port))
}

/// `daemon`'s `vlnet_bypass` entry for `mac` on VNI 100.
fn entry(daemon: &Daemon, mac: [u8; 6]) -> Option<vlnet_bypass_port> {
    let data = MapData::from_pin(daemon.pin_dir().join("maps").join("vlnet_bypass")).unwrap();
    let map: HashMap<MapData, vlnet_fdb_key, vlnet_bypass_port> =
        HashMap::try_from(Map::HashMap(data)).unwrap();
    map.iter()
        .map(Result::unwrap)
        .find(|(k, _)| k.vni == 100 && k.mac == mac)
        .map(|(_, e)| e)
}

/// Polls until `daemon`'s entry for `mac` exists and `holds`.
fn entry_until(daemon: &Daemon, mac: [u8; 6], holds: impl Fn(u32) -> bool) -> vlnet_bypass_port {
    let deadline = Instant::now() + PORTS_SETTLE;
    loop {
        let e = entry(daemon, mac);
        if let Some(e) = e.filter(|e| holds(e.flags)) {
            return e;
        }
        assert!(Instant::now() < deadline, "bypass entry: {e:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Frames `ifname` in `ns` (a veth) handed to its peer as XDP frames
/// (`ethtool -S`: `tx_queue_<n>_xdp_xmit`, summed).
fn xdp_xmit(ns: &NetNs, ifname: &str) -> u64 {
    let out = ns.run(&["ethtool", "-S", ifname]).unwrap();
    out.lines()
        .filter_map(|l| l.trim().split_once(": "))
        .filter(|(k, _)| k.starts_with("tx_queue_") && k.ends_with("_xdp_xmit"))
        .map(|(_, v)| v.trim().parse::<u64>().unwrap())
        .sum()
}

/// Decapsulated frames node `daemon` delivered past the bridge.
fn bypassed_rx(daemon: &Daemon) -> f64 {
    let metrics = scrape(daemon.ns(), daemon.spec().metrics_port);
    sample(&metrics, "vlnet_bypass_packets_total{direction=\"rx\"}")
}

/// `PINGS` pings of `size` bytes from `from` to `to`, every one answered.
fn all_answered(from: &NetNs, to: std::net::Ipv4Addr, size: &str) {
    let out = from
        .run(&[
            "ping",
            "-n",
            "-c",
            &PINGS.to_string(),
            "-i",
            "0.01",
            "-W",
            "1",
            "-s",
            size,
            &to.to_string(),
        ])
        .unwrap();
    let report = probe::parse_ping(&out).unwrap();
    assert_eq!(report.received, PINGS, "{size}-byte pings: {out}");
}

/// `xdp_bench_pass` attached in driver mode to `ifname` in `ns`; detached
/// when the object drops.
fn native_xdp_pass(ns: &NetNs, ifname: &str) -> Ebpf {
    let mut ebpf = Ebpf::load(TRAFFICGEN_OBJECT).unwrap();
    let prog: &mut Xdp = ebpf
        .program_mut("xdp_bench_pass")
        .unwrap()
        .try_into()
        .unwrap();
    prog.load().unwrap();
    ns.within(|| {
        let index = nix_ifindex(ifname);
        prog.attach_to_if_index(index, XdpMode::Driver).unwrap();
    })
    .unwrap();
    ebpf
}

/// Index of `ifname` in the calling thread's namespace.
fn nix_ifindex(ifname: &str) -> u32 {
    let c = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: `c` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(index, 0, "no interface {ifname}");
    index
}

#[test]
fn a_veth_port_gets_xdp_frames_while_its_peer_runs_xdp() {
    let s = scenario("xbv");
    let (vm0, vm1) = (&s.sites[0].vm, &s.sites[1].vm);
    let host1 = s.sites[1].host.ns();
    let daemon1 = s.sites[1].daemon.as_ref().unwrap();
    let port = vm1.host_port().to_owned();
    let vm1_mac = vm1.mac().parse::<MacAddr>().unwrap().0;
    let warm = probe::ping(vm0.ns(), vm_ip(1), 3, Duration::from_millis(20)).unwrap();
    assert!(warm.received >= 2, "warm-up: {warm:?}");

    // The VM's side runs no XDP: bypassed at TC only, decap takes the bridge.
    let status = status_until(daemon1, "port bypassed", |st| listed(st, "ports", &port));
    assert!(!listed(&status, "xdp_ports", &port), "{status:#}");
    let e = entry_until(daemon1, vm1_mac, |_| true);
    assert_eq!(e.flags & VLNET_BYPASS_XDP, 0, "{e:?}");
    let (xmit, rx) = (xdp_xmit(host1, &port), bypassed_rx(daemon1));
    all_answered(vm0.ns(), vm_ip(1), "56");
    assert_eq!(xdp_xmit(host1, &port), xmit, "no XDP frame into the port");
    assert!(bypassed_rx(daemon1) - rx < 1.0, "no XDP delivery counted");

    // A native XDP program on the VM's side: the port takes XDP frames.
    let pass = native_xdp_pass(vm1.ns(), vm1.ifname());
    status_until(daemon1, "port takes XDP frames", |st| {
        listed(st, "xdp_ports", &port)
    });
    entry_until(daemon1, vm1_mac, |f| f & VLNET_BYPASS_XDP != 0);
    let text = daemon1.ctl(&["status"]).unwrap();
    assert!(text.contains(&format!("{port} (XDP)")), "{text}");
    let drops = drop_counts(daemon1);
    let (xmit, rx) = (xdp_xmit(host1, &port), bypassed_rx(daemon1));
    all_answered(vm0.ns(), vm_ip(1), "56");
    all_answered(vm0.ns(), vm_ip(1), "1400");
    let (xmit_delta, rx_delta) = (xdp_xmit(host1, &port) - xmit, bypassed_rx(daemon1) - rx);
    assert!(
        xmit_delta >= u64::from(2 * PINGS),
        "the echo requests reached the VM as XDP frames: {xmit_delta}"
    );
    assert!(
        rx_delta >= f64::from(2 * PINGS),
        "counted as bypassed: {rx_delta}"
    );
    assert_eq!(drop_counts(daemon1), drops, "nothing dropped");

    // Its program gone, the port takes skbs again: back through the bridge.
    drop(pass);
    status_until(daemon1, "port no longer takes XDP frames", |st| {
        listed(st, "ports", &port) && !listed(st, "xdp_ports", &port)
    });
    entry_until(daemon1, vm1_mac, |f| f & VLNET_BYPASS_XDP == 0);
    let xmit = xdp_xmit(host1, &port);
    all_answered(vm0.ns(), vm_ip(1), "56");
    assert_eq!(xdp_xmit(host1, &port), xmit);
}

/// A tap opened by this test (`IFF_TAP | IFF_NO_PI`), as QEMU opens a VM's.
struct Tap(File);

impl Tap {
    /// Creates tap `name` in the calling thread's namespace.
    fn open(name: &str) -> Self {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .unwrap();
        // SAFETY: an all-zero ifreq is valid.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src.cast_signed();
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads an ifreq, which `req` is.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut req) };
        assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
        Self(file)
    }

    /// The next frame, or `None` after 1 s without one.
    fn recv(&mut self) -> Option<Vec<u8>> {
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&raw mut pfd, 1, 1000) } != 1 {
            return None;
        }
        let mut buf = vec![0u8; 65536];
        let n = self.0.read(&mut buf).unwrap();
        buf.truncate(n);
        Some(buf)
    }
}

/// A gratuitous ARP from `mac` for `ip`: the bridge learns `mac` on the
/// port it enters.
fn gratuitous_arp(mac: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip);
    f
}

/// Whether `frame` is an ICMP echo request to `ip` for `mac`.
fn echo_request_to(frame: &[u8], mac: [u8; 6], ip: [u8; 4]) -> bool {
    frame.len() >= 35
        && frame[..6] == mac
        && frame[12..14] == [0x08, 0x00]
        && frame[23] == 1
        && frame[30..34] == ip
        && frame[34] == 8
}

#[test]
fn a_tap_port_gets_xdp_frames() {
    const TAP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x07, 0x01];
    const TAP_IP: [u8; 4] = [192, 0, 2, 77];
    let s = scenario("xbt");
    let host1 = s.sites[1].host.ns();
    let daemon1 = s.sites[1].daemon.as_ref().unwrap();
    let vm0 = &s.sites[0].vm;
    let mut tap = host1.within(|| Tap::open("vltap0")).unwrap();
    host1
        .run(&["ip", "link", "set", "vltap0", "master", "br100", "up"])
        .unwrap();
    tap.0.write_all(&gratuitous_arp(TAP_MAC, TAP_IP)).unwrap();
    status_until(daemon1, "tap takes XDP frames", |st| {
        listed(st, "xdp_ports", "vltap0")
    });
    entry_until(daemon1, TAP_MAC, |f| f & VLNET_BYPASS_XDP != 0);

    // VM 0 pings the tap's address; nobody answers, the tap's reader counts.
    let mac = TAP_MAC.map(|b| format!("{b:02x}")).join(":");
    let ip = std::net::Ipv4Addr::from(TAP_IP).to_string();
    vm0.ns()
        .run(&[
            "ip",
            "neigh",
            "replace",
            &ip,
            "lladdr",
            &mac,
            "dev",
            vm0.ifname(),
        ])
        .unwrap();
    let rx = bypassed_rx(daemon1);
    let _ = vm0
        .ns()
        .run(&["ping", "-n", "-c", "5", "-i", "0.05", "-W", "1", &ip]);
    let mut requests = 0;
    while let Some(frame) = tap.recv() {
        if echo_request_to(&frame, TAP_MAC, TAP_IP) {
            requests += 1;
        }
    }
    assert_eq!(requests, 5, "echo requests read from the tap");
    let rx_delta = bypassed_rx(daemon1) - rx;
    assert!(
        rx_delta >= 5.0,
        "delivered into the tap by the XDP decap: {rx_delta}"
    );
}
