//! Netlink reads for the bridge bypass: a bridge's VLAN filtering and
//! ageing time, the facts of each of its ports ([`PortFacts`]: kind, veth
//! peer, XDP, whether it takes XDP frames), and the classic tc filters on a
//! port.

use std::collections::HashMap;

use futures::TryStreamExt;
use netlink_packet_route::link::{
    InfoBridge, InfoData, LinkAttribute, LinkInfo, LinkMessage, LinkXdp,
};
use netlink_packet_route::tc::TcAttribute;

use super::{request, Netlink, NetlinkError};
use crate::bypass::{PeerFacts, PortFacts};

/// Nanoseconds in one `clock_t` tick of `IFLA_BR_AGEING_TIME` (`USER_HZ`
/// is 100).
const NS_PER_CLOCK_TICK: u64 = 10_000_000;

/// The bridge's ageing time when it does not say (the kernel's default,
/// 300 s).
pub const DEFAULT_AGEING_NS: u64 = 300 * 1_000_000_000;

/// What the bypass needs to know about a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeFacts {
    /// Its ifindex.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Whether it filters VLANs.
    pub vlan_filtering: bool,
    /// How long it keeps a learned MAC it sees no frame from.
    pub ageing_ns: u64,
}

/// Every link of the namespace, by index.
struct Links(HashMap<u32, LinkMessage>);

impl Links {
    fn name(&self, index: u32) -> Option<&str> {
        self.0.get(&index).and_then(|m| {
            m.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.as_str()),
                _ => None,
            })
        })
    }

    fn controller(&self, index: u32) -> Option<u32> {
        self.0.get(&index).and_then(controller)
    }
}

/// Whether link `msg` runs a native (driver mode) XDP program.
fn runs_native_xdp(msg: &LinkMessage) -> bool {
    msg.attributes.iter().any(|a| match a {
        LinkAttribute::Xdp(xdp) => xdp
            .iter()
            .any(|x| matches!(x, LinkXdp::DrvProgId(id) if *id != 0)),
        _ => false,
    })
}

fn controller(msg: &LinkMessage) -> Option<u32> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(c) => Some(*c),
        _ => None,
    })
}

fn bridge_facts(msg: &LinkMessage, name: &str) -> BridgeFacts {
    let mut facts = BridgeFacts {
        index: msg.header.index,
        name: name.to_owned(),
        vlan_filtering: false,
        ageing_ns: DEFAULT_AGEING_NS,
    };
    for info in msg.attributes.iter().filter_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => Some(infos),
        _ => None,
    }) {
        for i in info {
            if let LinkInfo::Data(InfoData::Bridge(opts)) = i {
                for opt in opts {
                    match opt {
                        InfoBridge::VlanFiltering(on) => facts.vlan_filtering = *on,
                        InfoBridge::AgeingTime(t) => {
                            facts.ageing_ns = u64::from(*t) * NS_PER_CLOCK_TICK;
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    facts
}

/// A veth port's peer in another namespace: its index there, and the id
/// this namespace knows that namespace by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RemotePeer {
    index: u32,
    nsid: i32,
}

/// The facts of port `msg` on `bridge` (its tc programs not read here),
/// and its peer if it is a veth whose peer lives in another namespace.
/// With `xdp` (the node decapsulates at XDP) they say whether the port
/// takes XDP frames, except for such a remote peer, which the caller reads.
fn port_facts(
    msg: &LinkMessage,
    bridge: &BridgeFacts,
    links: &Links,
    xdp: bool,
) -> (PortFacts, Option<RemotePeer>) {
    let mut facts = PortFacts {
        ifindex: msg.header.index,
        bridge: bridge.name.clone(),
        vlan_filtering: bridge.vlan_filtering,
        ..PortFacts::default()
    };
    let mut peer_index = None;
    let mut peer_nsid = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => facts.name.clone_from(n),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        facts.kind = Some(kind.to_string());
                    }
                }
            }
            LinkAttribute::LinkNetNsId(id) => peer_nsid = Some(*id),
            LinkAttribute::Link(peer) => peer_index = Some(*peer),
            LinkAttribute::Xdp(xdp) => {
                facts.xdp = xdp.iter().any(|x| {
                    matches!(
                        x,
                        LinkXdp::ProgId(id) | LinkXdp::DrvProgId(id) | LinkXdp::SkbProgId(id)
                            | LinkXdp::HwProgId(id) if *id != 0
                    )
                });
            }
            _ => {}
        }
    }
    facts.peer_elsewhere = peer_nsid.is_some();
    let veth_peer = peer_index.filter(|_| facts.kind.as_deref() == Some("veth"));
    let local_peer = veth_peer.filter(|_| !facts.peer_elsewhere);
    // A tap always takes XDP frames (tun_xdp_xmit, for QEMU's reader); a
    // veth only when its peer's NAPI runs, which a native XDP program there
    // turns on.
    facts.takes_xdp_frames = xdp
        && (facts.kind.as_deref() == Some("tun")
            || local_peer
                .and_then(|i| links.0.get(&i))
                .is_some_and(runs_native_xdp));
    facts.peer = local_peer.and_then(|i| {
        Some(PeerFacts {
            name: links.name(i)?.to_owned(),
            bridge: links
                .controller(i)
                .and_then(|c| links.name(c))
                .map(str::to_owned),
        })
    });
    let remote = veth_peer
        .zip(peer_nsid)
        .map(|(index, nsid)| RemotePeer { index, nsid });
    (facts, remote)
}

impl Netlink {
    async fn all_links(&self) -> Result<Links, NetlinkError> {
        let mut stream = self.handle.link().get().execute();
        let mut out = HashMap::new();
        while let Some(msg) = stream.try_next().await.map_err(request("listing links"))? {
            out.insert(msg.header.index, msg);
        }
        Ok(Links(out))
    }

    /// Whether `peer` runs a native XDP program (`IFLA_TARGET_NETNSID`:
    /// read from here, no entering its namespace). A link that cannot be
    /// read (gone since the dump, say) is taken as not: its VM's frames
    /// then cross the bridge, which loses none, where an XDP frame for a
    /// peer without NAPI would be dropped.
    async fn remote_runs_native_xdp(&self, peer: RemotePeer) -> bool {
        let mut get = self.handle.link().get().match_index(peer.index);
        get.message_mut()
            .attributes
            .push(LinkAttribute::IfNetnsId(peer.nsid));
        let mut stream = get.execute();
        matches!(stream.try_next().await, Ok(Some(m)) if runs_native_xdp(&m))
    }

    /// For each bridge named in `bridges` (with the port to leave out, the
    /// overlay port, by name), the bridge's facts and those of its other
    /// ports, from one dump of the links. A bridge that does not exist is
    /// left out. With `xdp` (the node decapsulates at XDP), a veth port's
    /// peer in another namespace is read too, to tell whether the port
    /// takes XDP frames; else no port is said to.
    pub async fn bypass_ports(
        &self,
        bridges: &[(String, String)],
        xdp: bool,
    ) -> Result<Vec<(BridgeFacts, Vec<PortFacts>)>, NetlinkError> {
        let links = self.all_links().await?;
        let mut out = Vec::new();
        for (name, except) in bridges {
            let Some(msg) = links
                .0
                .values()
                .find(|m| links.name(m.header.index) == Some(name.as_str()))
            else {
                continue;
            };
            let bridge = bridge_facts(msg, name);
            let mut ports = Vec::new();
            for msg in links.0.values().filter(|m| {
                controller(m) == Some(bridge.index)
                    && links.name(m.header.index) != Some(except.as_str())
            }) {
                let (mut port, remote) = port_facts(msg, &bridge, &links, xdp);
                if let Some(peer) = remote.filter(|_| xdp) {
                    port.takes_xdp_frames = self.remote_runs_native_xdp(peer).await;
                }
                ports.push(port);
            }
            ports.sort_by_key(|p| p.ifindex);
            out.push((bridge, ports));
        }
        Ok(out)
    }

    /// The classic tc filters on link `ifindex` (at the ingress and egress
    /// hooks of a clsact or ingress qdisc), e.g. `tc filter matchall at
    /// ingress`; none when it has no such qdisc.
    pub async fn tc_filters(&self, ifindex: u32) -> Result<Vec<String>, NetlinkError> {
        let index = i32::try_from(ifindex).unwrap_or(i32::MAX);
        let mut out = Vec::new();
        for (hook, get) in [
            ("ingress", self.handle.traffic_filter(index).get().ingress()),
            ("egress", self.handle.traffic_filter(index).get().egress()),
        ] {
            let mut stream = get.execute();
            while let Some(msg) = stream.try_next().await.map_err(request(format!(
                "listing the tc filters of link #{ifindex}"
            )))? {
                let kind = msg.attributes.iter().find_map(|a| match a {
                    TcAttribute::Kind(k) => Some(k.clone()),
                    _ => None,
                });
                if let Some(kind) = kind {
                    let what = format!("tc filter {kind} at {hook}");
                    if !out.contains(&what) {
                        out.push(what);
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::link::InfoKind;

    use super::*;

    fn link(index: u32, name: &str, mut attributes: Vec<LinkAttribute>) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        attributes.push(LinkAttribute::IfName(name.to_owned()));
        msg.attributes = attributes;
        msg
    }

    fn kind(kind: InfoKind) -> LinkAttribute {
        LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)])
    }

    /// br100 (filtering VLANs, ageing 30 s) with a veth into another
    /// namespace (5, its peer 3 there), a Proxmox firewall port (6, its peer 7 on fwbr 8) and
    /// a tap with XDP (9).
    fn links() -> Links {
        let bridge = link(
            2,
            "br100",
            vec![LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(vec![
                    InfoBridge::VlanFiltering(true),
                    InfoBridge::AgeingTime(3000),
                ])),
            ])],
        );
        let on = |c| LinkAttribute::Controller(c);
        Links(
            [
                bridge,
                link(
                    5,
                    "veth5",
                    vec![
                        kind(InfoKind::Veth),
                        on(2),
                        LinkAttribute::Link(3),
                        LinkAttribute::LinkNetNsId(1),
                    ],
                ),
                link(
                    6,
                    "fwpr100p0",
                    vec![kind(InfoKind::Veth), on(2), LinkAttribute::Link(7)],
                ),
                link(
                    7,
                    "fwln100i0",
                    vec![kind(InfoKind::Veth), on(8), LinkAttribute::Link(6)],
                ),
                link(8, "fwbr100i0", vec![kind(InfoKind::Bridge)]),
                link(
                    9,
                    "tap9",
                    vec![
                        kind(InfoKind::Tun),
                        on(2),
                        LinkAttribute::Xdp(vec![LinkXdp::ProgId(42)]),
                    ],
                ),
            ]
            .into_iter()
            .map(|m| (m.header.index, m))
            .collect(),
        )
    }

    #[test]
    fn a_bridge_and_its_ports_are_read_from_their_attributes() {
        let links = links();
        let bridge = bridge_facts(&links.0[&2], "br100");
        assert!(bridge.vlan_filtering);
        assert_eq!(bridge.ageing_ns, 30_000_000_000);
        assert_eq!(
            bridge_facts(&links.0[&8], "fwbr100i0").ageing_ns,
            DEFAULT_AGEING_NS,
            "not said: the kernel's default"
        );

        let (veth, remote) = port_facts(&links.0[&5], &bridge, &links, false);
        assert_eq!(remote, Some(RemotePeer { index: 3, nsid: 1 }));
        assert_eq!(veth.kind.as_deref(), Some("veth"));
        assert!(veth.peer_elsewhere && veth.peer.is_none() && !veth.xdp);
        assert!(veth.vlan_filtering);
        assert_eq!(veth.bridge, "br100");

        let (fw, remote) = port_facts(&links.0[&6], &bridge, &links, false);
        assert_eq!(remote, None, "its peer is in this namespace");
        assert!(!fw.peer_elsewhere);
        assert_eq!(
            fw.peer,
            Some(PeerFacts {
                name: "fwln100i0".into(),
                bridge: Some("fwbr100i0".into()),
            })
        );

        let (tap, remote) = port_facts(&links.0[&9], &bridge, &links, false);
        assert_eq!(remote, None);
        assert_eq!(tap.kind.as_deref(), Some("tun"));
        assert!(tap.xdp);
        assert!(
            !tap.takes_xdp_frames,
            "not asked: the node decapsulates at TC"
        );
    }

    #[test]
    fn a_tap_or_a_veth_whose_peer_runs_native_xdp_takes_xdp_frames() {
        let mut links = links();
        let bridge = bridge_facts(&links.0[&2], "br100");
        let takes = |links: &Links, index| port_facts(&links.0[&index], &bridge, links, true).0;
        assert!(takes(&links, 9).takes_xdp_frames);
        let fw = |links: &Links| takes(links, 6).takes_xdp_frames;
        assert!(!fw(&links), "a peer without XDP");
        let peer = links.0.get_mut(&7).unwrap();
        peer.attributes
            .push(LinkAttribute::Xdp(vec![LinkXdp::SkbProgId(3)]));
        assert!(!fw(&links), "generic XDP leaves the peer's NAPI off");
        let peer = links.0.get_mut(&7).unwrap();
        peer.attributes
            .push(LinkAttribute::Xdp(vec![LinkXdp::DrvProgId(4)]));
        assert!(fw(&links));
        // Its peer elsewhere is read by bypass_ports(), not from the dump.
        assert!(!takes(&links, 5).takes_xdp_frames);
    }
}
