//! Which IP addresses are bound to which MAC on each VNI (ARP/ND
//! suppression; EVPN route type 2 with an IP): a pure table, one set per
//! MAC, each address bound to one MAC at most. Who may change a MAC's set is
//! the decision core's business (`core/controller/neigh.rs`); here a new set
//! simply takes its addresses from whichever MAC held them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::mac::MacAddr;

/// A MAC on a VNI.
pub type MacKey = (u32, MacAddr);

/// The addresses bound to one MAC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NeighSet {
    /// Unicast addresses.
    pub ips: BTreeSet<IpAddr>,
    /// The MAC's host is an IPv6 router (its NA's R flag).
    pub router: bool,
}

impl NeighSet {
    /// Whether no address is bound.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ips.is_empty()
    }
}

/// Every binding, by MAC and by address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NeighBook {
    by_mac: BTreeMap<MacKey, NeighSet>,
    by_ip: BTreeMap<(u32, IpAddr), MacAddr>,
}

impl NeighBook {
    /// The set bound to `mac` on `vni`, if any.
    #[must_use]
    pub fn get(&self, vni: u32, mac: MacAddr) -> Option<&NeighSet> {
        self.by_mac.get(&(vni, mac))
    }

    /// The MAC `ip` is bound to on `vni`, if any.
    #[must_use]
    pub fn owner(&self, vni: u32, ip: IpAddr) -> Option<MacAddr> {
        self.by_ip.get(&(vni, ip)).copied()
    }

    /// Bindings on `vni` whose MAC passes `counted`.
    pub fn count(&self, vni: u32, counted: impl Fn(MacAddr) -> bool) -> usize {
        self.by_mac
            .range((vni, MacAddr::ZERO)..=(vni, MacAddr([0xff; 6])))
            .filter(|((_, mac), _)| counted(*mac))
            .map(|(_, s)| s.ips.len())
            .sum()
    }

    /// Every MAC with bindings, on `vnis` (all when `None`).
    #[must_use]
    pub fn all(&self, vnis: Option<&BTreeSet<u32>>) -> Vec<(MacKey, NeighSet)> {
        self.by_mac
            .iter()
            .filter(|((vni, _), _)| vnis.is_none_or(|v| v.contains(vni)))
            .map(|(k, s)| (*k, s.clone()))
            .collect()
    }

    /// Makes `set` the bindings of `key` (empty: none), taking each address
    /// from the MAC that held it. Returns every MAC whose set changed, `key`
    /// first if it did, with its new set.
    pub fn set(&mut self, key: MacKey, set: NeighSet) -> Vec<(MacKey, NeighSet)> {
        let (vni, mac) = key;
        let mut changed: BTreeSet<MacKey> = BTreeSet::new();
        let old = self.by_mac.remove(&key).unwrap_or_default();
        for ip in old.ips.difference(&set.ips) {
            self.by_ip.remove(&(vni, *ip));
        }
        for ip in &set.ips {
            let previous = self.by_ip.insert((vni, *ip), mac);
            if let Some(other) = previous.filter(|m| *m != mac) {
                if let Some(s) = self.by_mac.get_mut(&(vni, other)) {
                    s.ips.remove(ip);
                    if s.is_empty() {
                        self.by_mac.remove(&(vni, other));
                    }
                }
                changed.insert((vni, other));
            }
        }
        let mut out = Vec::new();
        if old != set {
            out.push((key, set.clone()));
        }
        if !set.is_empty() {
            self.by_mac.insert(key, set);
        }
        for k in changed {
            out.push((k, self.by_mac.get(&k).cloned().unwrap_or_default()));
        }
        out
    }

    /// Forgets every binding of `key`; whether it had any.
    pub fn remove(&mut self, key: MacKey) -> bool {
        !self.set(key, NeighSet::default()).is_empty()
    }

    /// The MACs with bindings.
    #[must_use]
    pub fn keys(&self) -> Vec<MacKey> {
        self.by_mac.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VNI: u32 = 100;

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    fn set(ips: &[&str]) -> NeighSet {
        NeighSet {
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            router: false,
        }
    }

    #[test]
    fn an_address_is_bound_to_one_mac_at_most() {
        let mut b = NeighBook::default();
        let changed = b.set((VNI, mac(1)), set(&["192.0.2.1", "2001:db8::1"]));
        assert_eq!(changed.len(), 1);
        let changed = b.set((VNI, mac(2)), set(&["192.0.2.1"]));
        assert_eq!(
            changed,
            [
                ((VNI, mac(2)), set(&["192.0.2.1"])),
                ((VNI, mac(1)), set(&["2001:db8::1"]))
            ]
        );
        assert_eq!(b.owner(VNI, "192.0.2.1".parse().unwrap()), Some(mac(2)));
        assert_eq!(b.owner(200, "192.0.2.1".parse().unwrap()), None);
        assert_eq!(b.count(VNI, |_| true), 2);
        assert_eq!(b.count(VNI, |m| m == mac(1)), 1);
    }

    #[test]
    fn unchanged_sets_report_nothing_and_empty_ones_vanish() {
        let mut b = NeighBook::default();
        b.set((VNI, mac(1)), set(&["192.0.2.1"]));
        assert!(b.set((VNI, mac(1)), set(&["192.0.2.1"])).is_empty());
        assert!(b.remove((VNI, mac(1))));
        assert!(!b.remove((VNI, mac(1))));
        assert_eq!(b, NeighBook::default());
        b.set((VNI, mac(1)), set(&["192.0.2.1"]));
        b.set((VNI, mac(2)), set(&["192.0.2.1"]));
        assert_eq!(b.keys(), [(VNI, mac(2))], "mac 1 lost its only address");
    }
}
