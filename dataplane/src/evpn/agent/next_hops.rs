//! The next hop of each MAC this node advertises: its own VTEP, or on a
//! gateway, a direct member's own address (`[evpn] direct`; see
//! `control/core/controller/direct.rs`). A MAC whose next hop changes is
//! advertised again, with its MAC/IP routes, at the same sequence number:
//! the same route (same RD and MAC) with a new next hop, which replaces the
//! old one at every neighbor.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{Agent, Effect};
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
}
