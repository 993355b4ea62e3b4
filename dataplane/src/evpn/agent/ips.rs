//! The agent's IP addresses: MAC/IP routes (type 2 with an IP, RFC 7432
//! §7.2). A neighbor's bind an address to a remote MAC for ARP/ND
//! suppression (counted over neighbors and routes, as the MACs are); this
//! node's VMs' addresses, as the data plane snooped them, go out as MAC/IP
//! routes with their MAC's sequence number, and are withdrawn with the
//! address or the MAC. The Router flag of IPv6 hosts (the ND extended
//! community, RFC 9047) is read and sent per MAC, as `NeighSet::router`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use netgauze_bgp_pkt::update::BgpUpdateMessage;

use super::{not_evpn, Agent, Effect};
use crate::control::neighbook::NeighSet;
use crate::evpn::advertise::{self, BuildError};
use crate::evpn::rib::IpBinding;
use crate::mac::MacAddr;

impl Agent {
    /// Neighbor `peer` bound (`bound`) or unbound an address of a remote
    /// MAC; the MAC's bindings, when they changed.
    pub(super) fn remote_ip(&mut self, peer: usize, b: IpBinding, bound: bool) -> Option<Effect> {
        let key = (b.vni, b.mac);
        if bound {
            if !self.peers[peer].ips.insert(b) {
                return None;
            }
            let n = self
                .remote_ips
                .entry(key)
                .or_default()
                .entry(b.ip)
                .or_default();
            *n += 1;
            if *n > 1 {
                return None;
            }
        } else {
            if !self.peers[peer].ips.remove(&b) {
                return None;
            }
            let ips = self.remote_ips.get_mut(&key)?;
            let n = ips.get_mut(&b.ip)?;
            *n -= 1;
            if *n > 0 {
                return None;
            }
            ips.remove(&b.ip);
        }
        let ips: BTreeSet<IpAddr> = self
            .remote_ips
            .get(&key)
            .map(|ips| ips.keys().copied().collect())
            .unwrap_or_default();
        if ips.is_empty() {
            self.remote_ips.remove(&key);
            self.remote_routers.remove(&key);
        }
        let router = self.remote_routers.contains(&key);
        Some(Effect::Neigh {
            key,
            set: NeighSet { ips, router },
        })
    }

    /// A neighbor's IPv6 MAC/IP route says remote MAC `key`'s host is a
    /// router: its bindings, when that is news (it lasts while the MAC has
    /// bindings).
    pub(super) fn remote_router(&mut self, key: (u32, MacAddr)) -> Option<Effect> {
        let ips: BTreeSet<IpAddr> = self.remote_ips.get(&key)?.keys().copied().collect();
        if !self.remote_routers.insert(key) {
            return None;
        }
        Some(Effect::Neigh {
            key,
            set: NeighSet { ips, router: true },
        })
    }

    /// Takes the IP bindings the data plane snooped from this node's VMs:
    /// the addresses of this node's own MACs on EVPN VNIs go out as MAC/IP
    /// routes; those no longer snooped, or whose MAC is no longer here, are
    /// withdrawn.
    pub fn local_neighs(&mut self, snooped: &BTreeMap<(u32, MacAddr), NeighSet>) -> Vec<Effect> {
        let seqs = self.local_seqs();
        let mut out = Vec::new();
        let gone: Vec<(u32, MacAddr)> = self
            .local_ips
            .keys()
            .filter(|k| !seqs.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            self.withdraw_local_ips(key, &mut out);
        }
        for (key, seq) in seqs {
            let want = snooped.get(&key).map(|s| s.ips.clone()).unwrap_or_default();
            let have = self.local_ips.get(&key).cloned().unwrap_or_default();
            let router = snooped.get(&key).is_some_and(|s| s.router);
            if router != self.local_routers.contains(&key) {
                if router {
                    self.local_routers.insert(key);
                } else {
                    self.local_routers.remove(&key);
                }
                // The Router flag is on the IPv6 routes: those held go again.
                for ip in have.intersection(&want).filter(|ip| ip.is_ipv6()) {
                    self.to_all(&self.ip_update(key, *ip, seq), &mut out);
                }
            }
            for ip in want.difference(&have) {
                self.to_all(&self.ip_update(key, *ip, seq), &mut out);
            }
            for ip in have.difference(&want) {
                self.to_all(&self.ip_withdrawal(key, *ip), &mut out);
            }
            if want.is_empty() {
                self.local_ips.remove(&key);
            } else {
                self.local_ips.insert(key, want);
            }
        }
        out
    }

    /// This node's MAC `key` went or moved away: its MAC/IP routes are
    /// withdrawn.
    pub(super) fn withdraw_local_ips(&mut self, key: (u32, MacAddr), out: &mut Vec<Effect>) {
        self.local_routers.remove(&key);
        for ip in self.local_ips.remove(&key).unwrap_or_default() {
            self.to_all(&self.ip_withdrawal(key, ip), out);
        }
    }

    /// This node's MAC `key` was advertised again with `seq`: its MAC/IP
    /// routes follow.
    pub(super) fn readvertise_local_ips(
        &self,
        key: (u32, MacAddr),
        seq: u32,
        out: &mut Vec<Effect>,
    ) {
        for ip in self.local_ips.get(&key).into_iter().flatten() {
            self.to_all(&self.ip_update(key, *ip, seq), out);
        }
    }

    /// Every MAC/IP route of this node, for a neighbor's full table.
    pub(super) fn local_ip_updates(&self) -> Vec<Result<BgpUpdateMessage, BuildError>> {
        let seqs = self.local_seqs();
        self.local_ips
            .iter()
            .filter_map(|(key, ips)| Some((key, ips, *seqs.get(key)?)))
            .flat_map(|(key, ips, seq)| ips.iter().map(move |ip| self.ip_update(*key, *ip, seq)))
            .collect()
    }

    /// This node's MACs (the book only holds those of EVPN VNIs) and their
    /// sequence numbers.
    fn local_seqs(&self) -> BTreeMap<(u32, MacAddr), u32> {
        self.book
            .local_routes()
            .iter()
            .map(|a| ((a.vni, a.mac), a.seq))
            .collect()
    }

    fn ip_update(
        &self,
        (vni, mac): (u32, MacAddr),
        ip: IpAddr,
        seq: u32,
    ) -> Result<BgpUpdateMessage, BuildError> {
        let routing = self.vnis.get(vni).ok_or_else(|| not_evpn(vni))?;
        let router = self.local_routers.contains(&(vni, mac));
        let hop = self.next_hop((vni, mac));
        advertise::mac_ip_route(routing, hop, mac, Some(ip), seq, router)
    }

    fn ip_withdrawal(
        &self,
        (vni, mac): (u32, MacAddr),
        ip: IpAddr,
    ) -> Result<BgpUpdateMessage, BuildError> {
        let routing = self.vnis.get(vni).ok_or_else(|| not_evpn(vni))?;
        advertise::withdraw(vec![advertise::mac_nlri(routing, mac, Some(ip))])
    }
}
