//! Members a gateway advertises into EVPN with their own address as next
//! hop (`[evpn] direct`), instead of behind itself.
//!
//! A member is direct while all of these hold:
//! - its session is up and its Hello named its underlay VTEP address;
//! - its WireGuard packets come from that very address (the endpoint the
//!   device sees: no NAT between it and the cloud, and an address its
//!   authenticated packets came from, not one it merely claims);
//! - the address lies in one of the operator's `direct` networks (the cloud
//!   LAN, trusted as the zone's own nodes are: they send it plain VXLAN);
//! - it is no VTEP of the zone, not the gateway's, and no other member's.
//!
//! A direct member is sent the zone's VTEPs on its VNIs ([`ZoneVteps`]), from
//! which it then takes plain VXLAN on its underlay; an empty list when it
//! stops being direct. The gateway advertises a type-3 route for its
//! address too, so the zone floods to it directly, and relays the zone's
//! floods to it no more (`VLNET_VTEP_DIRECT`); the member's own floods still
//! go through the gateway, which relays them to the zone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::ControllerCore;
use crate::control::core::Effect;
use crate::control::wire::{Message, ZoneVni, ZoneVteps, MAX_ZONE_VTEPS};

impl ControllerCore {
    /// The address member `name`'s MACs go into EVPN with, if it is direct
    /// (see the module doc); `None`: behind the gateway.
    #[must_use]
    pub fn direct_address(&self, name: &str) -> Option<Ipv4Addr> {
        self.direct().remove(name)
    }

    /// Each direct member's tunnel address, with its own address.
    #[must_use]
    pub fn direct_members(&self) -> BTreeMap<Ipv4Addr, Ipv4Addr> {
        self.direct()
            .into_iter()
            .filter_map(|(name, addr)| Some((self.registry.members.get(name)?.tunnel_addr, addr)))
            .collect()
    }

    /// Per VNI, the own addresses of the direct members that serve it (the
    /// zone floods to them: the gateway advertises their type-3 routes).
    #[must_use]
    pub fn direct_by_vni(&self) -> BTreeMap<u32, BTreeSet<Ipv4Addr>> {
        let mut out: BTreeMap<u32, BTreeSet<Ipv4Addr>> = BTreeMap::new();
        for (name, addr) in self.direct() {
            for vni in self.sessions.get(name).into_iter().flat_map(|s| &s.vnis) {
                out.entry(*vni).or_default().insert(addr);
            }
        }
        out
    }

    /// Every direct member's own address, by name: those that qualify
    /// alone ([`direct_candidate`](Self::direct_candidate)) at an address
    /// no other one names (one pass over the sessions).
    fn direct(&self) -> BTreeMap<&str, Ipv4Addr> {
        let candidates: Vec<(&str, Ipv4Addr)> = self
            .sessions
            .keys()
            .filter_map(|name| Some((name.as_str(), self.direct_candidate(name)?)))
            .collect();
        let mut named: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
        for (_, addr) in &candidates {
            *named.entry(*addr).or_default() += 1;
        }
        candidates
            .into_iter()
            .filter(|(_, addr)| named[addr] == 1)
            .collect()
    }

    /// Member `name`'s address if it alone qualified (not yet checked
    /// against the other members').
    fn direct_candidate(&self, name: &str) -> Option<Ipv4Addr> {
        let addr = self.sessions.get(name)?.underlay?;
        let seen = self.registry.members.get(name)?.endpoint?.ip();
        let ours = addr == self.me.tunnel_addr || self.me.endpoint.ip() == addr;
        let zone = self.zone.values().any(|vteps| vteps.contains(&addr));
        let allowed = self.policy.direct.iter().any(|net| net.contains(addr));
        (seen == addr && allowed && !ours && !zone).then_some(addr)
    }

    /// The EVPN zone's VTEPs per VNI now (the agent's flood lists and
    /// located VTEPs): direct members whose view changed are told.
    pub fn set_zone(&mut self, zone: BTreeMap<u32, BTreeSet<Ipv4Addr>>) -> Vec<Effect> {
        if self.zone == zone {
            return Vec::new();
        }
        self.zone = zone;
        self.zone_updates()
    }

    /// A [`ZoneVteps`] for every session whose view of the zone changed
    /// since it was last told (a member that stopped being direct gets an
    /// empty one): after a session opened or closed, an endpoint moved, or
    /// the zone changed.
    pub fn zone_updates(&mut self) -> Vec<Effect> {
        let direct: BTreeSet<String> = self.direct().into_keys().map(str::to_owned).collect();
        let views: Vec<(String, ZoneVteps)> = self
            .sessions
            .iter()
            .map(|(name, session)| {
                let view = if direct.contains(name) {
                    self.zone_view(&session.vnis)
                } else {
                    ZoneVteps::default()
                };
                (name.clone(), view)
            })
            .collect();
        let mut out = Vec::new();
        for (name, view) in views {
            let Some(session) = self.sessions.get_mut(&name) else {
                continue;
            };
            if session.zone_sent != view {
                session.zone_sent = view.clone();
                out.push(Effect::Send {
                    to: name,
                    message: Message::ZoneVteps(view),
                });
            }
        }
        out
    }

    /// The zone's VTEPs on `vnis` (what a direct member serving them holds).
    fn zone_view(&self, vnis: &BTreeSet<u32>) -> ZoneVteps {
        ZoneVteps {
            vnis: self
                .zone
                .iter()
                .filter(|(vni, vteps)| vnis.contains(vni) && !vteps.is_empty())
                .map(|(vni, vteps)| ZoneVni {
                    vni: *vni,
                    vteps: vteps.iter().copied().take(MAX_ZONE_VTEPS).collect(),
                })
                .collect(),
        }
    }
}
