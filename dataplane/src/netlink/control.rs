//! Netlink work for the control plane and placement advice: addressing the
//! WireGuard interface, reading which MACs a bridge has learned on its local
//! ports (the node's local MACs), and how much traffic a port carried.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::neighbour::{NeighbourAttribute, NeighbourMessage, NeighbourState};
use netlink_packet_route::AddressFamily;
use rtnetlink::LinkUnspec;

use super::{request, Netlink, NetlinkError};
use crate::mac::MacAddr;

/// One read of the bridges of the VNIs served ([`Netlink::read_bridges`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeReads {
    /// By VNI: the MACs its bridge learned on ports other than the overlay
    /// port, each with the port (ifindex) it was learned on.
    pub learned: BTreeMap<u32, BTreeMap<MacAddr, u32>>,
    /// Each of those bridges' own address, by VNI.
    pub addresses: BTreeSet<(u32, MacAddr)>,
}

impl Netlink {
    /// Gives link `index` the address `addr/prefix` (replacing nothing else),
    /// sets its MTU and brings it up.
    pub async fn configure_tunnel(
        &self,
        index: u32,
        addr: Ipv4Addr,
        prefix: u8,
        mtu: u32,
    ) -> Result<(), NetlinkError> {
        self.handle
            .address()
            .add(index, IpAddr::V4(addr), prefix)
            .replace()
            .execute()
            .await
            .map_err(request(format!("adding {addr}/{prefix} to the tunnel")))?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).up().build())
            .execute()
            .await
            .map_err(request("bringing the tunnel up"))
    }

    /// MACs the bridge `bridge_index` learned on its ports other than
    /// `except_port` (the overlay port: MACs behind it are remote). Entries
    /// the bridge owns (its own and its ports' addresses) are left out.
    pub async fn bridge_learned_macs(
        &self,
        bridge_index: u32,
        except_port: u32,
    ) -> Result<BTreeSet<MacAddr>, NetlinkError> {
        Ok(self
            .bridge_learned_ports(bridge_index, except_port)
            .await?
            .into_keys()
            .collect())
    }

    /// The MACs local to this node: for each `(vni, bridge, overlay port)`
    /// served, what the bridge learned on its other ports. A bridge or port
    /// that does not exist (yet) contributes nothing.
    pub async fn local_macs(
        &self,
        ports: &[(u32, String, String)],
    ) -> Result<BTreeSet<(u32, MacAddr)>, NetlinkError> {
        Ok(self
            .read_bridges(ports)
            .await?
            .learned
            .into_iter()
            .flat_map(|(vni, learned)| learned.into_keys().map(move |mac| (vni, mac)))
            .collect())
    }

    /// [`Self::local_macs`] by VNI, with the port (ifindex) each MAC was
    /// learned on, and each of those bridges' own address.
    pub async fn read_bridges(
        &self,
        ports: &[(u32, String, String)],
    ) -> Result<BridgeReads, NetlinkError> {
        let mut out = BridgeReads::default();
        for (vni, bridge, port) in ports {
            let (Some(bridge), Some(port)) = (self.link(bridge).await?, self.link(port).await?)
            else {
                continue;
            };
            if let Some(mac) = bridge.mac {
                out.addresses.insert((*vni, MacAddr(mac)));
            }
            out.learned.insert(
                *vni,
                self.bridge_learned_ports(bridge.index, port.index).await?,
            );
        }
        Ok(out)
    }

    /// [`Self::bridge_learned_macs`] with the port (ifindex) each MAC was
    /// learned on.
    pub async fn bridge_learned_ports(
        &self,
        bridge_index: u32,
        except_port: u32,
    ) -> Result<BTreeMap<MacAddr, u32>, NetlinkError> {
        Ok(self
            .bridge_learned(bridge_index, except_port)
            .await?
            .into_iter()
            .map(|(msg, mac)| (mac, msg.header.ifindex))
            .collect())
    }

    /// Removes the entries bridge `bridge_index` learned for `mac` on its
    /// ports other than `except_port`: the MAC lives elsewhere now, so
    /// frames for it should flood (to the overlay port) rather than go to a
    /// port where it no longer is. Returns how many went.
    pub async fn forget_bridge_mac(
        &self,
        bridge_index: u32,
        except_port: u32,
        mac: MacAddr,
    ) -> Result<usize, NetlinkError> {
        let stale: Vec<NeighbourMessage> = self
            .bridge_learned(bridge_index, except_port)
            .await?
            .into_iter()
            .filter(|(_, m)| *m == mac)
            .map(|(msg, _)| msg)
            .collect();
        let n = stale.len();
        for msg in stale {
            self.handle
                .neighbours()
                .del(msg)
                .execute()
                .await
                .map_err(request(format!("removing {mac} from the bridge")))?;
        }
        Ok(n)
    }

    /// The unicast MACs bridge `bridge_index` learned on its ports other than
    /// `except_port`, with their FDB messages (entries the bridge owns, its
    /// own and its ports' addresses, left out).
    async fn bridge_learned(
        &self,
        bridge_index: u32,
        except_port: u32,
    ) -> Result<Vec<(NeighbourMessage, MacAddr)>, NetlinkError> {
        let mut stream = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute();
        let mut learned = Vec::new();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(request("listing bridge FDB entries"))?
        {
            let header = &msg.header;
            if header.ifindex == except_port
                || header.ifindex == bridge_index
                || header.state == NeighbourState::Permanent
                || header.state == NeighbourState::Noarp
            {
                continue;
            }
            let mut on_bridge = false;
            let mut mac = None;
            for attr in &msg.attributes {
                match attr {
                    NeighbourAttribute::Controller(c) => on_bridge = *c == bridge_index,
                    NeighbourAttribute::LinkLayerAddress(a) => {
                        mac = <[u8; 6]>::try_from(a.as_slice()).ok().map(MacAddr);
                    }
                    _ => {}
                }
            }
            if let Some(mac) = mac.filter(|m| on_bridge && m.is_unicast() && !m.is_zero()) {
                learned.push((msg, mac));
            }
        }
        Ok(learned)
    }

    /// Bytes link `index` received plus sent, or `None` if it is gone.
    pub async fn link_bytes(&self, index: u32) -> Result<Option<u64>, NetlinkError> {
        let mut stream = self.handle.link().get().match_index(index).execute();
        let msg = match stream.try_next().await {
            Ok(Some(msg)) => msg,
            Ok(None) => return Ok(None),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                return Ok(None)
            }
            Err(e) => return Err(request(format!("reading counters of link #{index}"))(e)),
        };
        Ok(msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::Stats64(s) => Some(s.rx_bytes + s.tx_bytes),
            _ => None,
        }))
    }
}
