//! Two namespaces A and B on one underlay link, with the addresses and
//! ports the WireGuard tests give their tunnel's ends.

use std::net::Ipv4Addr;

use base64::Engine as _;
use vlnet_lab::NetNs;

/// A's underlay address.
pub const A_UNDERLAY: &str = "198.18.0.1";
/// B's underlay address.
pub const B_UNDERLAY: &str = "198.18.0.2";
/// A's WireGuard listen port.
pub const A_PORT: u16 = 51820;
/// B's WireGuard listen port.
pub const B_PORT: u16 = 51821;
/// A's address inside the tunnel.
pub const A_TUNNEL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// B's address inside the tunnel.
pub const B_TUNNEL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// A key as `wg` writes it.
pub fn b64(key: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Namespaces `<tag>a` and `<tag>b` joined by a veth `ua`–`ub` on the
/// underlay.
pub fn underlay(tag: &str) -> (NetNs, NetNs) {
    let a = NetNs::new(&format!("{tag}a")).unwrap();
    let b = NetNs::new(&format!("{tag}b")).unwrap();
    a.run(&[
        "ip",
        "link",
        "add",
        "ua",
        "type",
        "veth",
        "peer",
        "name",
        "ub",
        "netns",
        b.name(),
    ])
    .unwrap();
    for (ns, dev, ip) in [(&a, "ua", A_UNDERLAY), (&b, "ub", B_UNDERLAY)] {
        ns.run(&["ip", "addr", "add", &format!("{ip}/24"), "dev", dev])
            .unwrap();
        ns.run(&["ip", "link", "set", dev, "up"]).unwrap();
    }
    (a, b)
}
