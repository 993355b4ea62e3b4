//! vlnet's in-process WireGuard device (boringtun) against wireguard-go
//! configured only with `wg`: two namespaces on a veth underlay, a tunnel
//! across it, ping through the tunnel, both sides report the handshake, and
//! the underlay carries only WireGuard UDP, never the cleartext ICMP; the
//! real `wg show` reads the handshake's time and the public key. Needs
//! root, `wireguard-go`, `wg` and `tshark`.
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

use std::net::SocketAddrV4;
use std::thread;
use std::time::Duration;

use vlnet_dataplane::wg::{AllowedIp, KeyPair, PeerConfig, SetRequest, WgDevice};
use vlnet_lab::primitives::probe::{self, Capture, CaptureReport};
use vlnet_lab::primitives::wggo::WG_MTU;
use vlnet_lab::{WgPeer, WireguardGo};

/// The capture on the underlay holds the handshake and at least 10 transport
/// packets between the two ports, and no ICMP at all.
fn assert_only_wireguard(frames: &CaptureReport) {
    assert!(
        !frames.column("ip.proto").contains(&"1"),
        "cleartext ICMP on the underlay: {frames:?}"
    );
    let (a, b) = (A_PORT.to_string(), B_PORT.to_string());
    let wg_frames = frames
        .rows
        .iter()
        .filter(|r| r[0] == "17" && ((r[1] == a && r[2] == b) || (r[1] == b && r[2] == a)))
        .count();
    // Handshake initiation and response, then 5 echo requests and 5 replies.
    assert!(wg_frames >= 12, "{wg_frames} WireGuard frames: {frames:?}");
    let types = frames.column("wg.type");
    for (t, what) in [
        ("1", "initiation"),
        ("2", "response"),
        ("4", "transport data"),
    ] {
        assert!(types.contains(&t), "no WireGuard {what} seen: {frames:?}");
    }
}

#[test]
fn boringtun_device_talks_to_wireguard_go() {
    let pid = std::process::id();
    // UAPI socket paths are machine-wide: interface names must be unique.
    let if_a = format!("vlwg{pid}");
    let if_b = format!("vlgo{pid}");
    let (a, b) = underlay("wg");

    // B: wireguard-go, configured with wg only, its own keys from wg.
    let go = WireguardGo::start(&b, &if_b).unwrap();
    let b_public: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(go.public_key())
        .unwrap()
        .try_into()
        .unwrap();

    // A: vlnet's device, created from a thread inside A.
    let a_keys = KeyPair::generate();
    let device = a.within(|| WgDevice::create(&if_a).unwrap()).unwrap();
    assert!(device.socket().exists(), "{:?}", device.socket());
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
    a.run(&["ip", "addr", "add", &format!("{A_TUNNEL}/24"), "dev", &if_a])
        .unwrap();
    a.run(&["ip", "link", "set", &if_a, "up"]).unwrap();

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

    // Everything on B's underlay port while A pings B through the tunnel.
    let capture = Capture::start(
        &b,
        "ub",
        "udp or icmp",
        &["ip.proto", "udp.srcport", "udp.dstport", "wg.type"],
        None,
        Duration::from_secs(4),
    )
    .unwrap();
    // tshark reports "Capturing on" a moment before it really captures.
    thread::sleep(Duration::from_millis(500));
    let ping = probe::ping(&a, B_TUNNEL, 5, Duration::from_millis(200)).unwrap();
    assert_eq!(ping.received, 5, "ping {B_TUNNEL} from A: {ping:?}");
    let frames = capture.finish().unwrap();

    assert_only_wireguard(&frames);

    // wireguard-go saw a handshake with A's key.
    let handshake = go.latest_handshake(&b64(&a_keys.public)).unwrap();
    assert!(handshake.is_some(), "no handshake on B");

    // vlnet's device reports B with a handshake and traffic both ways.
    let peers = device.status().unwrap();
    eprintln!("A's peers: {peers:?}");
    let peer = peers
        .iter()
        .find(|p| p.public_key == b_public)
        .unwrap_or_else(|| panic!("B not among A's peers: {peers:?}"));
    assert!(peer.last_handshake.is_some(), "{peer:?}");
    let age = peer.handshake_age(std::time::SystemTime::now()).unwrap();
    assert!(
        age < Duration::from_secs(10),
        "handshake {age:?} ago: {peer:?}"
    );

    // The real `wg` reads vlnet's device right: the handshake as a time
    // (seconds since the epoch, within a few seconds of now), the public
    // key derived from the private key the device reports.
    let handshakes = a.run(&["wg", "show", &if_a, "latest-handshakes"]).unwrap();
    let (key, when) = handshakes.trim().split_once('\t').unwrap();
    assert_eq!(key, b64(&b_public), "{handshakes}");
    let when: u64 = when.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(when) <= 5,
        "wg show latest-handshakes: {when}, date +%s: {now}"
    );
    let public = a.run(&["wg", "show", &if_a, "public-key"]).unwrap();
    assert_eq!(public.trim(), b64(&a_keys.public), "wg show public-key");
    assert!(peer.rx_bytes > 0 && peer.tx_bytes > 0, "{peer:?}");
    assert_eq!(
        peer.endpoint,
        Some(format!("{B_UNDERLAY}:{B_PORT}").parse().unwrap())
    );

    // Teardown: the device removes its UAPI socket.
    let socket = device.socket().to_owned();
    drop(device);
    assert!(!socket.exists(), "{} left behind", socket.display());
    let go_socket = WgDevice::socket_path(go.ifname());
    drop(go);
    assert!(!go_socket.exists(), "{} left behind", go_socket.display());
}
