//! A WAN test-bed for the WireGuard control plane: a cloud LAN behind a WAN
//! router, and clients reaching it either with a public address or from
//! behind a home router that masquerades them.
//!
//! ```text
//!  cloud switch (bridge) 198.18.0.0/24
//!    ├─ cloud hosts: ul0 198.18.0.<index>, default via .254
//!    └─ WAN router (forwarding): ul0 198.18.0.254
//!         ├─ c<k> 198.18.<k>.1/30 ── public client: ul0 198.18.<k>.2, default via .1
//!         └─ c<k> 198.18.<k>.1/30 ── home router: ul0 198.18.<k>.2 (forwarding, masquerade)
//!                                      └─ lan0 198.19.<k>.1/24 ── natted client: ul0 198.19.<k>.2
//! ```
//!
//! # Addressing
//! All in the underlay range 198.18.0.0/15:
//! - 198.18.0.0/24: the cloud LAN; host `index` has 198.18.0.`index`
//!   (1–253), the router [`ROUTER_IP`].
//! - 198.18.`k`.0/30: the WAN link of client `k` (1–255, in the order the
//!   clients are added): router `.1`, client (or its home router) `.2`, the
//!   address the cloud sees.
//! - 198.19.`k`.0/24: the LAN behind natted client `k`'s home router:
//!   home router `.1`, client `.2`. The WAN router has no route to it, so
//!   only the home router's masquerade connects it to the cloud.
//! - 198.19.0.0/24 stays free for the WireGuard tunnel pool (the example in
//!   vlnet's `[wireguard]` config).
//!
//! Client and cloud hosts are ordinary [`Host`]s (bridges, VMs, vlnet
//! daemons); a [`Site`] is either. A client's WAN link is a veth pair, or,
//! when it is added with a [`WanLink`] delay, a [`DelayLine`] (two TAPs
//! named as the veth ends would be), which gives it a WAN's round-trip
//! time. A home router runs the nftables table [`NAT_TABLE`] (masquerade
//! out of its WAN side; a stateful forward filter that drops new inbound
//! flows), and [`WanClient::cut`] adds a netdev table to the WAN router; both
//! die with their namespace.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::primitives::delay::DelayLine;
use crate::primitives::netns::{LabError, NetNs};
use crate::primitives::probe::Capture;
use crate::primitives::topology::{Host, Underlay, Uplink, DEFAULT_UNDERLAY_MTU, UNDERLAY_IF};

/// The WAN router's address on the cloud LAN, every cloud host's gateway.
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
/// The nftables table (family `ip`) of a home router.
pub const NAT_TABLE: &str = "vlnet-lab";
/// A home router's LAN-side interface.
pub const LAN_IF: &str = "lan0";
/// Prefix length of a client's WAN link.
const WAN_LINK_PREFIX: u8 = 30;
/// Prefix length of a home LAN.
const HOME_LAN_PREFIX: u8 = 24;
/// At most this many clients (the third octet of their WAN link).
const MAX_CLIENTS: u32 = 255;

/// Address of cloud host `index` (1–253).
fn cloud_ip(index: u8) -> Result<Ipv4Addr, LabError> {
    if (1..=253).contains(&index) {
        Ok(Ipv4Addr::new(198, 18, 0, index))
    } else {
        Err(LabError::Invalid(format!(
            "cloud host index {index}: use 1–253 (254 is the WAN router)"
        )))
    }
}

/// Client `k`'s WAN link: (router side, client or home router side).
fn wan_link_ips(k: u8) -> (Ipv4Addr, Ipv4Addr) {
    (Ipv4Addr::new(198, 18, k, 1), Ipv4Addr::new(198, 18, k, 2))
}

/// Natted client `k`'s home LAN: (home router, client).
fn home_lan_ips(k: u8) -> (Ipv4Addr, Ipv4Addr) {
    (Ipv4Addr::new(198, 19, k, 1), Ipv4Addr::new(198, 19, k, 2))
}

/// The ruleset of the home router at `gateway` on its LAN: masquerade the
/// LAN out of the WAN side; forward replies and outbound flows, drop new
/// inbound ones.
fn nat_ruleset(gateway: Ipv4Addr) -> String {
    let lan = Ipv4Addr::from(u32::from(gateway) & (u32::MAX << (32 - HOME_LAN_PREFIX)));
    let t = format!("ip {NAT_TABLE}");
    format!(
        "add table {t}; \
         add chain {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}; \
         add rule {t} postrouting oifname \"{UNDERLAY_IF}\" ip saddr {lan}/{HOME_LAN_PREFIX} masquerade; \
         add chain {t} forward {{ type filter hook forward priority filter; policy accept; }}; \
         add rule {t} forward ct state established,related accept; \
         add rule {t} forward iifname \"{UNDERLAY_IF}\" drop"
    )
}

/// The netdev table that cuts the WAN router's port `port`.
fn cut_table(port: &str) -> String {
    format!("netdev vlnet-lab-cut-{port}")
}

/// How a client's WAN link (router port `c<k>` ↔ the client or its home
/// router) is built. The default is a plain veth pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WanLink {
    /// One-way delay of each direction (the RTT is twice it), emulated by a
    /// [`DelayLine`]; `None` for a veth pair without delay.
    pub delay: Option<Duration>,
}

/// A cloud LAN, a WAN router, and the clients added to it. Dropping it (and
/// every [`Host`] and [`WanClient`] taken from it) removes all namespaces.
#[derive(Debug)]
pub struct Wan {
    router: Host,
    cloud: Underlay,
    tag: String,
    clients: AtomicU32,
}

impl Wan {
    /// The cloud switch `vlt-<tag>-sw-…` and the router `vlt-<tag>-router-…`
    /// on it at [`ROUTER_IP`], forwarding.
    pub fn new(tag: &str) -> Result<Self, LabError> {
        let cloud = Underlay::new(tag)?;
        let router = cloud.add_host("router", ROUTER_IP)?;
        router.ns().sysctl("net.ipv4.ip_forward", "1")?;
        Ok(Self {
            router,
            cloud,
            tag: tag.to_owned(),
            clients: AtomicU32::new(0),
        })
    }

    /// The cloud LAN's switch (capture on its bridge to see cloud traffic).
    #[must_use]
    pub fn cloud(&self) -> &Underlay {
        &self.cloud
    }

    /// The WAN router's namespace.
    #[must_use]
    pub fn router(&self) -> &NetNs {
        self.router.ns()
    }

    /// A host `vlt-<tag>-<label>-…` on the cloud LAN at 198.18.0.`index`
    /// (1–253), routed through the WAN router.
    pub fn add_cloud_host(&self, label: &str, index: u8) -> Result<Host, LabError> {
        let host = self.cloud.add_host(label, cloud_ip(index)?)?;
        default_route(&host, ROUTER_IP)?;
        Ok(host)
    }

    /// A client `vlt-<tag>-<label>-…` with a public address on its own WAN
    /// link (198.18.`k`.2/30): reachable from the cloud.
    pub fn add_public_client(&self, label: &str) -> Result<WanClient, LabError> {
        self.add_public_client_with(label, WanLink::default())
    }

    /// [`add_public_client`](Self::add_public_client) over a WAN link built
    /// as `link` says.
    pub fn add_public_client_with(
        &self,
        label: &str,
        link: WanLink,
    ) -> Result<WanClient, LabError> {
        let k = self.next_client()?;
        Ok(WanClient {
            host: self.link_to_router(label, k, link)?,
            home: None,
            router: self.router.ns().clone(),
        })
    }

    /// A client `vlt-<tag>-<label>-…` at 198.19.`k`.2 on the LAN of its own
    /// home router `vlt-<tag>-<label>-home-…` (198.18.`k`.2 on the WAN), which
    /// masquerades it: it reaches the cloud, the cloud cannot open a flow to
    /// it.
    pub fn add_natted_client(&self, label: &str) -> Result<WanClient, LabError> {
        self.add_natted_client_with(label, WanLink::default())
    }

    /// [`add_natted_client`](Self::add_natted_client) with the home router's
    /// WAN link built as `link` says (the home LAN stays a veth).
    pub fn add_natted_client_with(
        &self,
        label: &str,
        link: WanLink,
    ) -> Result<WanClient, LabError> {
        let k = self.next_client()?;
        let home = self.link_to_router(&format!("{label}-home"), k, link)?;
        let (gateway, ip) = home_lan_ips(k);
        home.ns().sysctl("net.ipv4.ip_forward", "1")?;
        home.ns().run(&["nft", &nat_ruleset(gateway)])?;
        let host = attach(
            &self.tag,
            label,
            Uplink {
                ns: home.ns(),
                port: LAN_IF.to_owned(),
                mtu: DEFAULT_UNDERLAY_MTU,
                delay: None,
            },
            (gateway, ip),
            HOME_LAN_PREFIX,
        )?;
        Ok(WanClient {
            host,
            home: Some(home),
            router: self.router.ns().clone(),
        })
    }

    fn next_client(&self) -> Result<u8, LabError> {
        let k = self.clients.fetch_add(1, Ordering::Relaxed) + 1;
        u8::try_from(k)
            .ok()
            .filter(|_| k <= MAX_CLIENTS)
            .ok_or_else(|| LabError::Invalid(format!("at most {MAX_CLIENTS} WAN clients")))
    }

    /// A host on client `k`'s WAN link, behind router port `c<k>`.
    fn link_to_router(&self, label: &str, k: u8, link: WanLink) -> Result<Host, LabError> {
        attach(
            &self.tag,
            label,
            Uplink {
                ns: self.router.ns(),
                port: format!("c{k}"),
                mtu: DEFAULT_UNDERLAY_MTU,
                delay: link.delay,
            },
            wan_link_ips(k),
            WAN_LINK_PREFIX,
        )
    }
}

/// Plugs a host at `ip`/`prefix` into `uplink`, gives the uplink's port
/// `gateway`/`prefix`, and routes the host through it.
fn attach(
    tag: &str,
    label: &str,
    uplink: Uplink<'_>,
    (gateway, ip): (Ipv4Addr, Ipv4Addr),
    prefix: u8,
) -> Result<Host, LabError> {
    let upstream = uplink.ns.clone();
    let host = Host::plug(tag, label, uplink, ip, prefix)?;
    let port = host.switch_port();
    upstream.run(&[
        "ip",
        "addr",
        "add",
        &format!("{gateway}/{prefix}"),
        "dev",
        port,
    ])?;
    upstream.run(&["ip", "link", "set", port, "up"])?;
    default_route(&host, gateway)?;
    Ok(host)
}

fn default_route(host: &Host, gateway: Ipv4Addr) -> Result<(), LabError> {
    host.ns()
        .run(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &gateway.to_string(),
            "dev",
            host.underlay_if(),
        ])
        .map(drop)
}

/// A host on a [`Wan`]: on the cloud LAN or across the WAN.
#[derive(Debug)]
pub enum Site {
    /// A cloud host.
    Cloud(Host),
    /// A client across the WAN.
    Client(WanClient),
}

impl Site {
    /// The host.
    #[must_use]
    pub fn host(&self) -> &Host {
        match self {
            Self::Cloud(h) => h,
            Self::Client(c) => c.host(),
        }
    }
}

impl AsRef<Host> for Site {
    fn as_ref(&self) -> &Host {
        self.host()
    }
}

/// A client on the WAN: its [`Host`] and, if it is behind NAT, its home router.
#[derive(Debug)]
pub struct WanClient {
    host: Host,
    home: Option<Host>,
    router: NetNs,
}

impl WanClient {
    /// The client host (a vlnet node's namespace, underlay interface and
    /// address).
    #[must_use]
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The home router, if the client is behind NAT.
    #[must_use]
    pub fn home_router(&self) -> Option<&Host> {
        self.home.as_ref()
    }

    /// The host on the WAN link: the home router if any, else the client.
    fn edge(&self) -> &Host {
        self.home.as_ref().unwrap_or(&self.host)
    }

    /// The delay line that is this client's WAN link, if it was added with a
    /// [`WanLink`] delay (change its delay, read its counters).
    #[must_use]
    pub fn delay_line(&self) -> Option<&DelayLine> {
        self.edge().delay_line()
    }

    /// The address the cloud sees the client's traffic come from: its own,
    /// or its home router's WAN address.
    #[must_use]
    pub fn public_ip(&self) -> Ipv4Addr {
        self.edge().ip()
    }

    /// Captures (see [`Capture::start`]) on the WAN router's end of this
    /// client's WAN link, where traffic is already masqueraded. A cut drops
    /// packets from the client after this tap, so they still show.
    pub fn capture_wan(
        &self,
        filter: &str,
        fields: &[&str],
        count: Option<u32>,
        duration: Duration,
    ) -> Result<Capture, LabError> {
        Capture::start(
            &self.router,
            self.edge().switch_port(),
            filter,
            fields,
            count,
            duration,
        )
    }

    /// Takes the WAN link down: the WAN router drops every frame from and
    /// to it (netdev ingress and egress hooks) until [`restore`](Self::restore).
    /// Interfaces stay up and keep their addresses, as in an upstream outage.
    pub fn cut(&self) -> Result<(), LabError> {
        let port = self.edge().switch_port();
        let table = cut_table(port);
        let chain = |name: &str, hook: &str| {
            format!(
                "add chain {table} {name} {{ type filter hook {hook} device \"{port}\" \
                 priority filter; policy drop; }}"
            )
        };
        let script = format!(
            "add table {table}; {}; {}",
            chain("in", "ingress"),
            chain("out", "egress")
        );
        self.router.run(&["nft", &script]).map(drop)
    }

    /// Brings the WAN link back (a no-op if it is not cut). Addresses are
    /// unchanged; a home router's NAT mappings may be new.
    pub fn restore(&self) -> Result<(), LabError> {
        let table = cut_table(self.edge().switch_port());
        // Adding first makes the delete succeed whether or not it was cut.
        self.router
            .run(&["nft", &format!("add table {table}; delete table {table}")])
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitives::topology::is_underlay_addr;

    #[test]
    fn addresses_stay_in_the_underlay_range_and_apart() {
        assert_eq!(cloud_ip(1).unwrap(), Ipv4Addr::new(198, 18, 0, 1));
        assert!(cloud_ip(0).is_err());
        assert!(cloud_ip(254).is_err());
        let mut seen = std::collections::HashSet::new();
        for k in 1..=u8::MAX {
            let (router, edge) = wan_link_ips(k);
            let (home, client) = home_lan_ips(k);
            for ip in [router, edge, home, client] {
                assert!(is_underlay_addr(ip), "{ip}");
                assert!(seen.insert(ip), "{ip} twice");
            }
            assert_ne!(router.octets()[..3], ROUTER_IP.octets()[..3]);
            assert_ne!(home.octets()[..3], [198, 19, 0], "the tunnel pool");
        }
    }

    #[test]
    fn nat_ruleset_masquerades_the_home_lan_out_of_the_wan_side() {
        let rules = nat_ruleset(Ipv4Addr::new(198, 19, 3, 1));
        assert!(rules.contains(
            "add rule ip vlnet-lab postrouting oifname \"ul0\" ip saddr 198.19.3.0/24 masquerade"
        ));
        assert!(rules.contains("forward iifname \"ul0\" drop"));
    }
}
