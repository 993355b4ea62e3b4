//! A gateway's direct members (`[evpn] direct`; see
//! `control/core/controller/direct.rs`):
//! - the next hop of each MAC this node advertises is its own VTEP, or a
//!   direct member's own address. A MAC whose next hop changes is
//!   advertised again, with its MAC/IP routes, at the same sequence number:
//!   the same route (same RD and MAC) with a new next hop, which replaces
//!   the old one at every neighbor;
//! - each direct member's address gets a type-3 route on the VNIs it
//!   serves (this node's RD, the member's address as originator and
//!   ingress replication endpoint), so the zone floods to it directly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use netgauze_bgp_pkt::update::BgpUpdateMessage;

use super::{not_evpn, Agent, Effect};
use crate::evpn::advertise::{self, BuildError};
use crate::mac::MacAddr;

impl Agent {
    /// The next hop of this node's MAC `key`.
    pub(super) fn next_hop(&self, key: (u32, MacAddr)) -> Ipv4Addr {
        self.next_hops.get(&key).copied().unwrap_or(self.my_vtep)
    }

    /// The MACs advertised with another next hop than this node's VTEP, now
    /// (every other MAC: this node's VTEP). The routes of MACs already
    /// advertised whose next hop changed go out again.
    pub fn set_next_hops(&mut self, hops: BTreeMap<(u32, MacAddr), Ipv4Addr>) -> Vec<Effect> {
        let mut changed: Vec<(u32, MacAddr)> = hops
            .iter()
            .filter(|(key, hop)| self.next_hops.get(key) != Some(hop))
            .map(|(key, _)| *key)
            .collect();
        changed.extend(self.next_hops.keys().filter(|k| !hops.contains_key(k)));
        self.next_hops = hops;
        let mut out = Vec::new();
        for (vni, mac) in changed {
            let Some(a) = self.book.get(vni, mac).filter(|a| a.vtep == self.my_vtep) else {
                continue; // not advertised (yet): it goes out with its next hop
            };
            self.to_all(&self.mac_update(&a), &mut out);
            self.readvertise_local_ips((vni, mac), a.seq, &mut out);
        }
        out
    }

    /// The direct members' addresses per VNI now: their type-3 routes go
    /// out, and those of members direct no more are withdrawn (VNIs that
    /// are not EVPN VNIs here are left out).
    pub fn set_direct_floods(&mut self, floods: &BTreeMap<u32, BTreeSet<Ipv4Addr>>) -> Vec<Effect> {
        let wanted: BTreeSet<(u32, Ipv4Addr)> = floods
            .iter()
            .filter(|(vni, _)| self.vnis.get(**vni).is_some())
            .flat_map(|(vni, addrs)| addrs.iter().map(move |a| (*vni, *a)))
            .collect();
        let mut out = Vec::new();
        for &(vni, addr) in wanted.difference(&self.direct_floods) {
            self.to_all(&self.direct_imet(vni, addr), &mut out);
        }
        for &(vni, addr) in self.direct_floods.difference(&wanted) {
            self.to_all(&self.direct_imet_withdrawal(vni, addr), &mut out);
        }
        self.direct_floods = wanted;
        out
    }

    /// Every direct member's type-3 route, for a neighbor's full table.
    pub(super) fn direct_imets(&self) -> Vec<Result<BgpUpdateMessage, BuildError>> {
        self.direct_floods
            .iter()
            .map(|&(vni, addr)| self.direct_imet(vni, addr))
            .collect()
    }

    fn direct_imet(&self, vni: u32, addr: Ipv4Addr) -> Result<BgpUpdateMessage, BuildError> {
        let routing = self.vnis.get(vni).ok_or_else(|| not_evpn(vni))?;
        advertise::imet_route(routing, addr)
    }

    fn direct_imet_withdrawal(
        &self,
        vni: u32,
        addr: Ipv4Addr,
    ) -> Result<BgpUpdateMessage, BuildError> {
        let routing = self.vnis.get(vni).ok_or_else(|| not_evpn(vni))?;
        advertise::withdraw(vec![advertise::imet_nlri(routing, addr)])
    }
}
