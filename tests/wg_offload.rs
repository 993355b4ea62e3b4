//! vlnet's WireGuard device with TUN offloads (GSO super-packets read
//! whole, cut in user space, encrypted and sent as UDP GSO batches; UDP GSO
//! batches received whole) against wireguard-go configured only with `wg`:
//! the offloads are on on the interface, a 256 MiB TCP stream each way
//! arrives byte for byte (a segment cut wrong — length, sequence number,
//! checksum — stalls or corrupts it), and pings of several sizes, up to one
//! fragmented into several packets, cross both ways; a UDP flood that fills
//! the TUN's queue (the kernel drops there) leaves the device serving
//! (pings pass, the UAPI answers); a data packet replayed from the
//! underlay, and one with its ciphertext authenticated under a forged
//! counter, are dropped and counted by reason (`replay`, `auth`) while
//! the tunnel keeps working. Needs root, `wireguard-go`, `wg` and
//! `ethtool`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use base64::Engine as _;
use support::wg_underlay::{
    b64, underlay, A_PORT, A_TUNNEL, A_UNDERLAY, B_PORT, B_TUNNEL, B_UNDERLAY,
};

use std::net::{SocketAddrV4, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use support::packet_socket::PacketSocket;
use support::stream;
use vlnet_dataplane::wg::{AllowedIp, KeyPair, PeerConfig, SetRequest, WgDevice};
use vlnet_lab::primitives::probe;
use vlnet_lab::primitives::wggo::WG_MTU;
use vlnet_lab::{NetNs, WgPeer, WireguardGo};

/// MiB sent each way: enough for thousands of super-packets and UDP GSO
/// batches, few enough to take seconds on a loaded 2-core VM.
const STREAM_MIB: u32 = 256;
/// ICMP payload sizes: small, mid, the largest unfragmented (MTU 1420 less
/// IPv4 and ICMP headers), and one cut into fragments.
const PING_SIZES: [u32; 4] = [16, 1000, 1392, 6000];

/// A (vlnet's device, offloads on) and B (wireguard-go) joined by a tunnel;
/// dropping it removes both devices, then the namespaces (fields drop in
/// order).
struct Pair {
    device: WgDevice,
    _go: WireguardGo,
    a: NetNs,
    b: NetNs,
    if_a: String,
    b_public: [u8; 32],
}

/// Builds a [`Pair`]; `tag` (a few lowercase letters) keeps its
/// namespaces and machine-wide interface names apart from other tests'.
fn pair(tag: &str) -> Pair {
    let pid = std::process::id();
    let if_a = format!("vl{tag}a{pid}");
    let if_b = format!("vl{tag}b{pid}");
    let (a, b) = underlay(tag);
    let go = WireguardGo::start(&b, &if_b).unwrap();
    let b_public: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(go.public_key())
        .unwrap()
        .try_into()
        .unwrap();
    let a_keys = KeyPair::generate();
    let device = a.within(|| WgDevice::create(&if_a).unwrap()).unwrap();
    device
        .configure(
            &SetRequest::new()
                .private_key(a_keys.private)
                .listen_port(A_PORT)
                .replace_peers()
                .peer(
                    PeerConfig::new(b_public)
                        .endpoint(format!("{B_UNDERLAY}:{B_PORT}").parse().unwrap())
                        .replace_allowed_ips()
                        .allowed_ip(AllowedIp::new(B_TUNNEL.into(), 32).unwrap()),
                ),
        )
        .unwrap();
    for cmd in [
        vec!["ip", "addr", "add", "192.0.2.1/24", "dev", &if_a],
        vec!["ip", "link", "set", &if_a, "mtu", "1420", "up"],
    ] {
        a.run(&cmd).unwrap();
    }
    go.set(
        B_PORT,
        &WgPeer {
            public_key: b64(&a_keys.public),
            endpoint: SocketAddrV4::new(A_UNDERLAY.parse().unwrap(), A_PORT),
            tunnel_addr: A_TUNNEL,
        },
    )
    .unwrap();
    go.address(B_TUNNEL, 24, WG_MTU).unwrap();
    let warm = probe::ping(&a, B_TUNNEL, 3, Duration::from_millis(200)).unwrap();
    assert!(warm.received > 0, "no reply through the tunnel: {warm:?}");
    Pair {
        device,
        _go: go,
        a,
        b,
        if_a,
        b_public,
    }
}

#[test]
fn offloading_device_carries_streams_and_pings_to_wireguard_go() {
    let Pair {
        a,
        b,
        if_a,
        device,
        b_public,
        ..
    } = &pair("oa");

    // The TUN took the offloads: the kernel hands it super-packets.
    let features = a.run(&["ethtool", "-k", if_a]).unwrap();
    for feature in [
        "tcp-segmentation-offload: on",
        "tx-udp_tnl-segmentation: on",
    ] {
        assert!(features.contains(feature), "{feature} missing: {features}");
    }

    for size in PING_SIZES {
        for (from, to, name) in [(a, B_TUNNEL, "A → B"), (b, A_TUNNEL, "B → A")] {
            let out = from
                .run(&[
                    "ping",
                    "-c",
                    "3",
                    "-i",
                    "0.05",
                    "-W",
                    "2",
                    "-s",
                    &size.to_string(),
                    &to.to_string(),
                ])
                .unwrap_or_else(|e| panic!("ping -s {size} {name}: {e}"));
            assert!(
                out.contains(" 0% packet loss"),
                "ping -s {size} {name}: {out}"
            );
        }
    }

    let a_to_b = stream::checked(a, b, B_TUNNEL, 5301, STREAM_MIB);
    let b_to_a = stream::checked(b, a, A_TUNNEL, 5302, STREAM_MIB);
    eprintln!("256 MiB A → B at {a_to_b:.2} Gbit/s, B → A at {b_to_a:.2} Gbit/s");

    let peers = device.status().unwrap();
    let peer = peers.iter().find(|p| p.public_key == *b_public).unwrap();
    let bytes = u64::from(STREAM_MIB) << 20;
    assert!(peer.tx_bytes >= bytes && peer.rx_bytes >= bytes, "{peer:?}");
}

/// Packets sent to the TUN's `tx_dropped` from `ns`'s `ip -s` JSON.
fn tx_dropped(ns: &NetNs, ifname: &str) -> u64 {
    let text = ns
        .run(&["ip", "-j", "-s", "link", "show", "dev", ifname])
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json[0]["stats64"]["tx"]["dropped"].as_u64().unwrap()
}

#[test]
fn a_full_tun_queue_leaves_the_device_serving() {
    let Pair {
        a, if_a, device, ..
    } = &pair("oq");
    let before = tx_dropped(a, if_a);
    // Two senders write 1400-byte datagrams into the TUN faster than the
    // device encrypts them: its queue (500 packets) fills and overflows.
    let flood = |_| {
        let sock = a
            .within(|| UdpSocket::bind((A_TUNNEL, 0)).unwrap())
            .unwrap();
        let datagram = [0x5au8; 1400];
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let _ = sock.send_to(&datagram, (B_TUNNEL, 9));
        }
    };
    thread::scope(|s| {
        let senders: Vec<_> = (0..2).map(|i| s.spawn(move || flood(i))).collect();
        for sender in senders {
            sender.join().unwrap();
        }
    });
    let dropped = tx_dropped(a, if_a) - before;
    assert!(dropped > 0, "the flood never filled the TUN's queue");
    let ping = probe::ping(a, B_TUNNEL, 5, Duration::from_millis(100)).unwrap();
    assert_eq!(
        ping.received, 5,
        "after the flood ({dropped} dropped): {ping:?}"
    );
    assert!(device.status().is_ok(), "the UAPI stopped answering");
    eprintln!("{dropped} packets dropped at the full TUN queue");
}

/// Copies of each attack frame sent.
const ATTACK_COPIES: u64 = 10;

/// Where the WireGuard message starts in `frame` if it is a data message
/// (type 4) from B's port to A's, over IPv4 UDP.
fn wg_data_offset(frame: &[u8]) -> Option<usize> {
    if frame.len() < 14 + 20 + 8 + 32 || frame[12..14] != [0x08, 0x00] || frame[23] != 17 {
        return None;
    }
    let udp = 14 + usize::from(frame[14] & 0x0f) * 4;
    let ports = (&frame[udp..udp + 2], &frame[udp + 2..udp + 4]);
    let wg = udp + 8;
    (ports == (&B_PORT.to_be_bytes()[..], &A_PORT.to_be_bytes()[..]) && frame.get(wg) == Some(&4))
        .then_some(wg)
}

/// A's device's drop count for `reason`.
fn dropped(device: &WgDevice, reason: &str) -> u64 {
    let drops = device.rx_drops().unwrap();
    drops
        .iter()
        .find(|(r, _)| r == reason)
        .unwrap_or_else(|| panic!("no {reason} counter in {drops:?}"))
        .1
}

#[test]
fn replayed_and_forged_packets_are_dropped_and_counted() {
    let Pair { a, b, device, .. } = &pair("or");
    // A data message B sent to A, captured on B's side of the underlay.
    let sock = b.within(|| PacketSocket::bind_named("ub")).unwrap();
    let ping = probe::ping(b, A_TUNNEL, 1, Duration::from_millis(100)).unwrap();
    assert_eq!(ping.received, 1, "{ping:?}");
    let (mut frame, wg) = std::iter::from_fn(|| sock.try_recv())
        .find_map(|f| wg_data_offset(&f).map(|wg| (f, wg)))
        .expect("no WireGuard data message from B to A was seen");
    // The frame left B with its UDP checksum for the NIC to fill; 0 (none,
    // as IPv4 allows) lets A's kernel take the copies as they are.
    frame[wg - 2..wg].fill(0);
    // The same message again (its counter already seen), and one under a
    // counter far ahead (inside the window, so the AEAD tag is checked,
    // and fails: the counter is part of the nonce).
    let replayed = frame.clone();
    let mut forged = frame;
    let counter = u64::from_le_bytes(forged[wg + 8..wg + 16].try_into().unwrap());
    forged[wg + 8..wg + 16].copy_from_slice(&(counter + 1000).to_le_bytes());

    let (replay_before, auth_before) = (dropped(device, "replay"), dropped(device, "auth"));
    for _ in 0..ATTACK_COPIES {
        sock.send(&replayed);
        sock.send(&forged);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let counts = loop {
        let counts = (
            dropped(device, "replay") - replay_before,
            dropped(device, "auth") - auth_before,
        );
        if counts == (ATTACK_COPIES, ATTACK_COPIES) || Instant::now() > deadline {
            break counts;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        counts,
        (ATTACK_COPIES, ATTACK_COPIES),
        "(replay, auth) drops counted for {ATTACK_COPIES} copies of each: {:?}",
        device.rx_drops()
    );
    // The session survives: the forged counter did not move the window.
    let after = probe::ping(a, B_TUNNEL, 5, Duration::from_millis(100)).unwrap();
    assert_eq!(after.received, 5, "after the attack: {after:?}");
}
