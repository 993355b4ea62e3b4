//! The controller's decisions about IP bindings (ARP/ND suppression).
//!
//! A member's [`NeighAdvert`] for `(vni, mac)` is accepted only if:
//! - it names the member's own VTEP and a granted VNI, else
//!   [`RejectReason::Forged`];
//! - the member holds `mac` (its route is behind the member), else
//!   [`RejectReason::NotOwner`] — an empty set from a member that let the
//!   MAC go is ignored (it withdrew the MAC, the bindings follow the MAC);
//! - its bindings on the VNI stay within its MAC quota (one address per MAC
//!   on average; the other MACs' bindings counted), else
//!   [`RejectReason::Quota`];
//! - and, address by address, the address is free, bound to one of the
//!   member's own MACs, or bound to a MAC nobody holds any more: one bound
//!   to a MAC that another member, the controller's bridges or a static
//!   peer of the cloud holds is refused as [`RejectReason::DuplicateIp`]
//!   (EVPN's duplicate IP detection) and the rest is installed.
//!
//! The controller's own bindings always win, as its MACs do: those snooped
//! on its bridges, and those of the zone's VMs, snooped from frames its
//! static peers sent (a member binding such an address is refused
//! `duplicate_ip`; one it bound before the zone's VM spoke up is taken from
//! it, relayed to every member, and refused from then on). Bindings belong to their MAC, not to a VTEP: a MAC that
//! moves keeps them, and they go when the MAC is neither held nor
//! remembered as withdrawn ([`TOMBSTONE_KEEP`](super::TOMBSTONE_KEEP)).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::{reject, ControllerCore};
use crate::control::core::{CloudView, Effect, RejectReason};
use crate::control::neighbook::{MacKey, NeighSet};
use crate::control::wire::{Message, NeighAdvert};

impl ControllerCore {
    /// Who holds `key` now: the VTEP of its route, or the static peer the
    /// data plane places it behind.
    fn holder(&self, key: MacKey, cloud: &dyn CloudView) -> Option<Ipv4Addr> {
        self.book
            .get(key.0, key.1)
            .map(|r| r.vtep)
            .or_else(|| self.cloud_holder(key, cloud))
    }

    /// Member `name` (tunnel address `ip`) binds addresses to a MAC.
    pub(super) fn neigh_advert(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        n: &NeighAdvert,
        cloud: &dyn CloudView,
        out: &mut Vec<Effect>,
    ) {
        let key = (n.vni, n.mac);
        if self.forged(name, ip, key, n.vtep, "binding", out) {
            return;
        }
        if self.book.get(n.vni, n.mac).is_none_or(|r| r.vtep != ip) {
            if !n.ips.is_empty() {
                out.push(Effect::Reject(reject(
                    name,
                    RejectReason::NotOwner,
                    Some(key),
                    "binding of addresses to a MAC the member does not hold".into(),
                )));
            }
            return;
        }
        let others = self.neigh.count(n.vni, |m| {
            m != n.mac && self.book.get(n.vni, m).is_some_and(|r| r.vtep == ip)
        });
        if others + n.ips.len() > self.policy.mac_quota as usize {
            out.push(Effect::Reject(reject(
                name,
                RejectReason::Quota,
                Some(key),
                format!(
                    "quota of {} bindings on VNI {} reached",
                    self.policy.mac_quota, n.vni
                ),
            )));
            return;
        }
        let mut accepted = NeighSet {
            ips: BTreeSet::new(),
            router: n.router,
        };
        for addr in &n.ips {
            let bound = self.neigh.owner(n.vni, *addr).filter(|m| *m != n.mac);
            let taken = bound.and_then(|m| self.holder((n.vni, m), cloud).map(|h| (m, h)));
            match taken {
                Some((m, h)) if h != ip => out.push(Effect::Reject(reject(
                    name,
                    RejectReason::DuplicateIp,
                    Some(key),
                    format!("{addr} is bound to {m}, held by {h}"),
                ))),
                _ => {
                    accepted.ips.insert(*addr);
                }
            }
        }
        let changed = self.neigh.set(key, accepted);
        self.neigh_emit(changed, out);
    }

    /// The bindings snooped on the controller's own bridges and from its
    /// zone (static peers' frames) now, by MAC: they win over any member's.
    pub fn observe_local_neighs(&mut self, local: &BTreeMap<MacKey, NeighSet>) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut changed = Vec::new();
        for (key, set) in local {
            if self.local_neigh.get(key) != Some(set) {
                changed.extend(self.neigh.set(*key, set.clone()));
            }
        }
        let gone: Vec<MacKey> = self
            .local_neigh
            .keys()
            .filter(|k| !local.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            changed.extend(self.neigh.set(key, NeighSet::default()));
        }
        self.local_neigh.clone_from(local);
        self.neigh_emit(changed, &mut out);
        out
    }

    /// Bindings of MACs nobody holds and no tombstone remembers go.
    pub(super) fn purge_neighs(&mut self, out: &mut Vec<Effect>) {
        let stale: Vec<MacKey> = self
            .neigh
            .keys()
            .into_iter()
            .filter(|k| {
                !self.local_neigh.contains_key(k)
                    && self.book.get(k.0, k.1).is_none()
                    && self.book.tombstone(k.0, k.1).is_none()
            })
            .collect();
        let mut changed = Vec::new();
        for key in stale {
            changed.extend(self.neigh.set(key, NeighSet::default()));
        }
        self.neigh_emit(changed, out);
    }

    /// Every binding on `vnis`, for a session that opens.
    pub(super) fn neigh_sync(&self, vnis: &BTreeSet<u32>) -> Vec<Message> {
        self.neigh
            .all(Some(vnis))
            .into_iter()
            .map(|(key, set)| Message::NeighAdvert(self.neigh_message(key, &set)))
            .collect()
    }

    fn neigh_message(&self, key: MacKey, set: &NeighSet) -> NeighAdvert {
        NeighAdvert {
            vni: key.0,
            mac: key.1,
            vtep: self
                .book
                .get(key.0, key.1)
                .map_or(self.me.tunnel_addr, |r| r.vtep),
            ips: set.ips.iter().copied().collect(),
            router: set.router,
        }
    }

    /// Relays `changed` to every session serving its VNI (the sender too:
    /// it learns what was accepted, and re-sends what was not later), and
    /// programs what is not the controller's own (its bridges' bindings are
    /// in the kernel already, snooped).
    fn neigh_emit(&self, changed: Vec<(MacKey, NeighSet)>, out: &mut Vec<Effect>) {
        if changed.is_empty() {
            return;
        }
        for (name, s) in &self.sessions {
            for (key, set) in changed.iter().filter(|(k, _)| s.vnis.contains(&k.0)) {
                out.push(Effect::Send {
                    to: name.clone(),
                    message: Message::NeighAdvert(self.neigh_message(*key, set)),
                });
            }
        }
        let programmed: Vec<(MacKey, NeighSet)> = changed
            .into_iter()
            .filter(|(k, _)| !self.local_neigh.contains_key(k))
            .collect();
        if !programmed.is_empty() {
            out.push(Effect::Neigh(programmed));
        }
    }

    /// The IP bindings the controller knows.
    #[must_use]
    pub fn neighs(&self) -> &crate::control::neighbook::NeighBook {
        &self.neigh
    }
}
