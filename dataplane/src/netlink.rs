//! Link work over rtnetlink: bridges, overlay ports (veth pairs), addresses
//! and the managed neighbour entries that keep underlay next hops resolved;
//! GRO on a link through the ethtool ioctl ([`enable_gro`]).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnetwork::Ipv4Network;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{LinkAttribute, LinkInfo, LinkLayerType, LinkMessage, State};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourExtFlags, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use thiserror::Error;

mod control;
mod gro;
mod ports;

pub use gro::enable_gro;
pub use ports::{BridgeFacts, DEFAULT_AGEING_NS};

/// A netlink request failed.
#[derive(Debug, Error)]
pub enum NetlinkError {
    /// The netlink socket could not be opened.
    #[error("opening a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    /// The kernel refused a request.
    #[error("{what}: {source}")]
    Request {
        /// What was being done.
        what: String,
        /// Kernel's answer.
        source: rtnetlink::Error,
    },
    /// A link the config names does not exist.
    #[error("interface {0} does not exist")]
    NoSuchLink(String),
}

/// What vlnet needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSummary {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// L3 MTU.
    pub mtu: u32,
    /// `IFLA_INFO_KIND` (`veth`, `bridge`, …); `None` for physical NICs.
    pub kind: Option<String>,
    /// Index of the bridge it is enslaved to.
    pub controller: Option<u32>,
    /// Hardware address, when it has one.
    pub mac: Option<[u8; 6]>,
    /// Operationally up (`IF_OPER_UP`): the kernel passes its traffic. A
    /// link just brought up gets there from the kernel's link watch, up to
    /// a second later; until then it drops what it is given.
    pub oper_up: bool,
}

/// How the kernel would reach a remote VTEP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// Resolved: egress interface, its MAC, the next hop's MAC.
    Resolved {
        /// Egress interface index.
        ifindex: u32,
        /// Egress interface MAC.
        smac: [u8; 6],
        /// Next hop's MAC.
        dmac: [u8; 6],
    },
    /// Routed through an L3 device (a WireGuard TUN: no link-layer header,
    /// no neighbours): packets leave as bare IPv4 from `saddr`.
    Direct {
        /// Egress interface index.
        ifindex: u32,
        /// Outer source address: the route's preferred source, else the
        /// device's first IPv4 (the remote end checks it).
        saddr: Ipv4Addr,
    },
    /// A route exists but the next hop's MAC is not known yet.
    Unresolved {
        /// Egress interface index.
        ifindex: u32,
        /// Next-hop address (the VTEP itself or a gateway).
        via: Ipv4Addr,
    },
    /// No route to the VTEP.
    NoRoute,
}

/// Names of the two ends of VNI `vni`'s overlay port.
#[must_use]
pub fn overlay_port_names(vni: u32) -> (String, String) {
    (format!("vlp{vni}"), format!("vlx{vni}"))
}

/// A netlink session (the connection task runs on the current tokio runtime).
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

fn request(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError::Request { what, source }
}

fn summarize(msg: &LinkMessage) -> LinkSummary {
    let mut s = LinkSummary {
        index: msg.header.index,
        name: String::new(),
        mtu: 0,
        kind: None,
        controller: None,
        mac: None,
        oper_up: false,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => s.name.clone_from(n),
            LinkAttribute::Mtu(m) => s.mtu = *m,
            LinkAttribute::Controller(c) => s.controller = Some(*c),
            LinkAttribute::Address(a) => s.mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            LinkAttribute::OperState(state) => s.oper_up = *state == State::Up,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        s.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    s
}

impl Netlink {
    /// Opens a netlink session in the calling thread's network namespace.
    pub fn connect() -> Result<Self, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// The link called `name`, if it exists.
    pub async fn link(&self, name: &str) -> Result<Option<LinkSummary>, NetlinkError> {
        let mut stream = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match stream.try_next().await {
            Ok(Some(msg)) => Ok(Some(summarize(&msg))),
            Ok(None) => Ok(None),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(request(format!("looking up {name}"))(e)),
        }
    }

    /// The link called `name`, or an error naming it.
    pub async fn require_link(&self, name: &str) -> Result<LinkSummary, NetlinkError> {
        self.link(name)
            .await?
            .ok_or_else(|| NetlinkError::NoSuchLink(name.to_string()))
    }

    /// First IPv4 address of link `index`.
    pub async fn first_ipv4(&self, index: u32) -> Result<Option<Ipv4Addr>, NetlinkError> {
        Ok(self.first_ipv4_network(index).await?.map(Ipv4Network::ip))
    }

    /// First IPv4 address of link `index`, with its prefix length.
    pub async fn first_ipv4_network(
        &self,
        index: u32,
    ) -> Result<Option<Ipv4Network>, NetlinkError> {
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(request("listing addresses"))?
        {
            for attr in msg.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = attr {
                    return Ok(Ipv4Network::new(ip, msg.header.prefix_len).ok());
                }
            }
        }
        Ok(None)
    }

    /// Creates bridge `name` (up) unless it exists. Returns whether it was created.
    pub async fn ensure_bridge(&self, name: &str) -> Result<bool, NetlinkError> {
        if self.link(name).await?.is_some() {
            return Ok(false);
        }
        self.handle
            .link()
            .add(LinkBridge::new(name).up().build())
            .execute()
            .await
            .map_err(request(format!("creating bridge {name}")))?;
        Ok(true)
    }

    /// Creates VNI `vni`'s overlay port unless it exists: a veth pair whose
    /// bridge end joins `bridge` (when there is one: a bridge that went away
    /// is waited for); both ends get `mtu` and are brought up. Returns
    /// (bridge end, vlnet end).
    pub async fn ensure_overlay_port(
        &self,
        vni: u32,
        bridge: Option<&LinkSummary>,
        mtu: u32,
    ) -> Result<(LinkSummary, LinkSummary), NetlinkError> {
        let (port, inner) = overlay_port_names(vni);
        if self.link(&port).await?.is_none() {
            self.handle
                .link()
                .add(LinkVeth::new(&port, &inner).build())
                .execute()
                .await
                .map_err(request(format!("creating overlay port {port}/{inner}")))?;
        }
        for name in [&inner, &port] {
            disable_ipv6(name);
        }
        let port_link = self.require_link(&port).await?;
        let inner_link = self.require_link(&inner).await?;
        self.set(
            LinkUnspec::new_with_index(inner_link.index)
                .mtu(mtu)
                .up()
                .build(),
            &inner,
        )
        .await?;
        let mut bridge_end = LinkUnspec::new_with_index(port_link.index).mtu(mtu);
        if let Some(bridge) = bridge {
            bridge_end = bridge_end.controller(bridge.index);
        }
        self.set(bridge_end.up().build(), &port).await?;
        Ok((port_link, inner_link))
    }

    async fn set(&self, msg: LinkMessage, name: &str) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(request(format!("configuring {name}")))
    }

    /// Deletes link `name` if it exists (a veth takes its peer with it).
    pub async fn delete_link(&self, name: &str) -> Result<(), NetlinkError> {
        if let Some(link) = self.link(name).await? {
            self.handle
                .link()
                .del(link.index)
                .execute()
                .await
                .map_err(request(format!("deleting {name}")))?;
        }
        Ok(())
    }

    /// Adds a managed neighbour entry for `ip` on link `index`: the kernel
    /// resolves it and keeps it resolved, so the encap program's FIB lookup
    /// always finds the next hop's MAC (also for non-IP frames such as ARP).
    pub async fn ensure_managed_neighbour(
        &self,
        index: u32,
        ip: Ipv4Addr,
    ) -> Result<(), NetlinkError> {
        let mut req = self
            .handle
            .neighbours()
            .add(index, IpAddr::V4(ip))
            .state(NeighbourState::None)
            .replace();
        req.message_mut()
            .attributes
            .push(NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed));
        req.execute()
            .await
            .map_err(request(format!("adding managed neighbour {ip}")))
    }
}

/// The unicast route to a VTEP, as a route lookup answers.
#[derive(Debug, Clone, Copy)]
struct Route {
    /// Egress interface.
    ifindex: u32,
    /// Next-hop address: the VTEP itself or a gateway.
    via: Ipv4Addr,
    /// Source address the kernel would use (`RTA_PREFSRC`).
    prefsrc: Option<Ipv4Addr>,
}

/// What the next-hop resolution needs to know about an egress link.
#[derive(Debug, Clone, Copy)]
struct Egress {
    /// Its hardware address.
    mac: Option<[u8; 6]>,
    /// It sends bare L3 packets (no MAC header, no neighbours).
    l3: bool,
}

/// Whether a link of type `kind` sends packets without a MAC header: the
/// types for which the kernel's `dev_is_mac_header_xmit()` is false, so that
/// `bpf_redirect` strips everything before the network header.
fn is_l3(kind: LinkLayerType) -> bool {
    matches!(
        kind,
        LinkLayerType::Tunnel
            | LinkLayerType::Tunnel6
            | LinkLayerType::Sit
            | LinkLayerType::Ipgre
            | LinkLayerType::Ip6gre
            | LinkLayerType::Void
            | LinkLayerType::None
            | LinkLayerType::Rawip
            | LinkLayerType::Pimreg
            | LinkLayerType::Ppp
    )
}

impl Netlink {
    /// The next hop towards each of `vteps` as the kernel's routing and
    /// neighbour tables have it now: one route lookup per VTEP, one link
    /// lookup per egress interface, and one neighbour dump for all VTEPs
    /// routed over Ethernet. A VTEP routed through an L3 device (a WireGuard
    /// TUN) is [`NextHop::Direct`]: no neighbour is involved.
    pub async fn next_hops(
        &self,
        vteps: &[Ipv4Addr],
    ) -> Result<Vec<(Ipv4Addr, NextHop)>, NetlinkError> {
        let mut routed = Vec::with_capacity(vteps.len());
        let mut links: HashMap<u32, Egress> = HashMap::new();
        for vtep in vteps {
            let route = self.route_to(*vtep).await?;
            if let Some(r) = route {
                if let Entry::Vacant(slot) = links.entry(r.ifindex) {
                    slot.insert(self.egress(r.ifindex).await?);
                }
            }
            routed.push((*vtep, route));
        }
        let needs_neighbours = routed
            .iter()
            .filter_map(|(_, r)| r.as_ref())
            .any(|r| links.get(&r.ifindex).is_some_and(|l| !l.l3));
        let neighbours = if needs_neighbours {
            self.resolved_neighbours().await?
        } else {
            HashMap::new()
        };
        let mut out = Vec::with_capacity(routed.len());
        for (vtep, route) in routed {
            let hop = match route {
                None => NextHop::NoRoute,
                Some(r) => {
                    let link = links.get(&r.ifindex).copied().unwrap_or(Egress {
                        mac: None,
                        l3: false,
                    });
                    if link.l3 {
                        let saddr = match r.prefsrc {
                            Some(ip) => Some(ip),
                            None => self.first_ipv4(r.ifindex).await?,
                        };
                        saddr.map_or(NextHop::NoRoute, |saddr| NextHop::Direct {
                            ifindex: r.ifindex,
                            saddr,
                        })
                    } else {
                        match (neighbours.get(&(r.ifindex, r.via)), link.mac) {
                            (None, _) => NextHop::Unresolved {
                                ifindex: r.ifindex,
                                via: r.via,
                            },
                            (Some(dmac), Some(smac)) => NextHop::Resolved {
                                ifindex: r.ifindex,
                                smac,
                                dmac: *dmac,
                            },
                            (Some(_), None) => NextHop::NoRoute,
                        }
                    }
                }
            };
            out.push((vtep, hop));
        }
        Ok(out)
    }

    /// The unicast route to `vtep`, if there is one.
    async fn route_to(&self, vtep: Ipv4Addr) -> Result<Option<Route>, NetlinkError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(vtep, 32)
            .build();
        let mut routes = self.handle.route().get(msg).execute();
        let route = match routes.try_next().await {
            Ok(Some(route)) => route,
            Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => return Ok(None),
            Err(e) => return Err(request(format!("route to {vtep}"))(e)),
        };
        if route.header.kind != RouteType::Unicast {
            return Ok(None);
        }
        let mut oif = None;
        let mut via = vtep;
        let mut prefsrc = None;
        for attr in &route.attributes {
            match attr {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(RouteAddress::Inet(gw)) => via = *gw,
                RouteAttribute::PrefSource(RouteAddress::Inet(src)) => prefsrc = Some(*src),
                _ => {}
            }
        }
        Ok(oif.map(|ifindex| Route {
            ifindex,
            via,
            prefsrc,
        }))
    }

    /// Every IPv4 neighbour whose link-layer address is usable, by
    /// (interface, address).
    async fn resolved_neighbours(&self) -> Result<HashMap<(u32, Ipv4Addr), [u8; 6]>, NetlinkError> {
        let mut out = HashMap::new();
        let mut neighbours = self
            .handle
            .neighbours()
            .get()
            .set_address_family(netlink_packet_route::AddressFamily::Inet)
            .execute();
        while let Some(n) = neighbours
            .try_next()
            .await
            .map_err(request("listing neighbours"))?
        {
            if !usable(n.header.state) {
                continue;
            }
            let mut dst = None;
            let mut lladdr = None;
            for attr in &n.attributes {
                match attr {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => dst = Some(*ip),
                    NeighbourAttribute::LinkLayerAddress(a) => {
                        lladdr = <[u8; 6]>::try_from(a.as_slice()).ok();
                    }
                    _ => {}
                }
            }
            if let (Some(ip), Some(mac)) = (dst, lladdr) {
                out.insert((n.header.ifindex, ip), mac);
            }
        }
        Ok(out)
    }

    /// Hardware address and kind of egress link `index`.
    async fn egress(&self, index: u32) -> Result<Egress, NetlinkError> {
        let mut links = self.handle.link().get().match_index(index).execute();
        let link = links
            .try_next()
            .await
            .map_err(request("looking up egress link"))?;
        Ok(link.map_or(
            Egress {
                mac: None,
                l3: false,
            },
            |l| Egress {
                mac: summarize(&l).mac,
                l3: is_l3(l.header.link_layer_type),
            },
        ))
    }
}

/// Neighbour states whose link-layer address can be used.
fn usable(state: NeighbourState) -> bool {
    matches!(
        state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    )
}

/// Whether `kind` names a virtual link type without native XDP worth using.
#[must_use]
pub fn prefers_tc(kind: Option<&str>) -> bool {
    kind.is_some()
}

/// Overlay ports carry only bridged frames: no IPv6 link-local chatter from
/// the host into the overlay. Best effort (IPv6 may be disabled already).
fn disable_ipv6(ifname: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    let _ = std::fs::write(path, "1");
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::InfoKind;

    #[test]
    fn overlay_port_names_fit_ifnamsiz() {
        let (port, inner) = overlay_port_names(16_777_215);
        assert_eq!(port, "vlp16777215");
        assert_eq!(inner, "vlx16777215");
        assert!(port.len() <= 15 && inner.len() <= 15);
    }

    #[test]
    fn virtual_links_prefer_tc() {
        assert!(prefers_tc(Some("veth")));
        assert!(!prefers_tc(None));
    }

    #[test]
    fn tunnels_are_l3_and_ethernet_is_not() {
        assert!(is_l3(LinkLayerType::None), "TUN (boringtun, wireguard-go)");
        assert!(is_l3(LinkLayerType::Ipgre));
        assert!(!is_l3(LinkLayerType::Ether));
        assert!(!is_l3(LinkLayerType::Loopback));
    }

    #[test]
    fn kind_is_read_from_link_info() {
        let mut msg = LinkMessage::default();
        msg.header.index = 7;
        msg.attributes.push(LinkAttribute::IfName("ul0".into()));
        msg.attributes.push(LinkAttribute::Mtu(1500));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Veth,
            )]));
        let s = summarize(&msg);
        assert_eq!(s.kind.as_deref(), Some("veth"));
        assert_eq!((s.index, s.mtu, s.name.as_str()), (7, 1500, "ul0"));
    }
}
