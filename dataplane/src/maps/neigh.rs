//! The ARP/ND suppression table (`vlnet_neigh`: IP → MAC per VNI) and its
//! counters (`vlnet_suppress`): what the programs snooped from local VMs
//! (`VLNET_NEIGH_LOCAL`) and from the zone's VMs, decapsulated from static
//! peers (`VLNET_NEIGH_ZONE`), and what the control plane installed
//! (`VLNET_NEIGH_CONTROL`), see `ebpf/c/lib/neigh.h`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vlnet_ebpf::abi::{
    vlnet_neigh, vlnet_neigh_key, VLNET_FAMILY_IPV4, VLNET_FAMILY_IPV6, VLNET_NEIGH_CONTROL,
    VLNET_NEIGH_LOCAL, VLNET_NEIGH_ROUTER, VLNET_NEIGH_ZONE, VLNET_PATH_UNDERLAY,
    VLNET_SUPPRESS_ARP_LOCAL, VLNET_SUPPRESS_ARP_REPLIED, VLNET_SUPPRESS_ND_LOCAL,
    VLNET_SUPPRESS_ND_REPLIED, VLNET_SUPPRESS_SNOOP_FULL, VLNET_VTEP_LEARN,
};

use super::{fdb_key, is_absent, op, Maps, MapsError};
use crate::control::neighbook::{MacKey, NeighSet};
use crate::mac::MacAddr;
use crate::model::Suppression;

/// One binding as the kernel holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighEntry {
    /// The VNI.
    pub vni: u32,
    /// The address.
    pub ip: IpAddr,
    /// The MAC it is bound to.
    pub mac: MacAddr,
    /// `VLNET_NEIGH_*`.
    pub flags: u8,
}

/// The table as [`Maps::apply_neighs`] read it, by address and by MAC.
#[derive(Debug, Default)]
struct HeldNeighs {
    by_ip: HashMap<(u32, IpAddr), NeighEntry>,
    by_mac: HashMap<MacKey, BTreeSet<IpAddr>>,
}

impl HeldNeighs {
    fn get(&self, vni: u32, ip: IpAddr) -> Option<&NeighEntry> {
        self.by_ip.get(&(vni, ip))
    }

    /// The addresses bound to `mac` on `vni`.
    fn of(&self, vni: u32, mac: MacAddr) -> BTreeSet<IpAddr> {
        self.by_mac.get(&(vni, mac)).cloned().unwrap_or_default()
    }

    fn put(&mut self, e: NeighEntry) {
        self.remove(e.vni, e.ip);
        self.by_mac.entry((e.vni, e.mac)).or_default().insert(e.ip);
        self.by_ip.insert((e.vni, e.ip), e);
    }

    fn remove(&mut self, vni: u32, ip: IpAddr) {
        if let Some(old) = self.by_ip.remove(&(vni, ip)) {
            if let Some(ips) = self.by_mac.get_mut(&(vni, old.mac)) {
                ips.remove(&ip);
            }
        }
    }
}

/// Key of `vlnet_neigh` for `ip` on `vni`.
#[must_use]
pub fn neigh_key(vni: u32, ip: IpAddr) -> vlnet_neigh_key {
    let mut key = vlnet_neigh_key {
        vni,
        ..Default::default()
    };
    match ip {
        IpAddr::V4(v4) => {
            key.family = VLNET_FAMILY_IPV4 as u8;
            key.ip[..4].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            key.family = VLNET_FAMILY_IPV6 as u8;
            key.ip = v6.octets();
        }
    }
    key
}

fn key_ip(key: &vlnet_neigh_key) -> Option<IpAddr> {
    match u32::from(key.family) {
        VLNET_FAMILY_IPV4 => {
            let mut v4 = [0u8; 4];
            v4.copy_from_slice(&key.ip[..4]);
            Some(IpAddr::V4(Ipv4Addr::from(v4)))
        }
        VLNET_FAMILY_IPV6 => Some(IpAddr::V6(Ipv6Addr::from(key.ip))),
        _ => None,
    }
}

const LOCAL: u8 = VLNET_NEIGH_LOCAL as u8;
const CONTROL: u8 = VLNET_NEIGH_CONTROL as u8;
const ROUTER: u8 = VLNET_NEIGH_ROUTER as u8;
const ZONE: u8 = VLNET_NEIGH_ZONE as u8;

/// Adds `e` to its MAC's set in `out`.
fn collect(out: &mut BTreeMap<MacKey, NeighSet>, e: &NeighEntry) {
    let set = out.entry((e.vni, e.mac)).or_default();
    set.ips.insert(e.ip);
    set.router |= e.flags & ROUTER != 0;
}

impl Maps {
    /// Every binding in the kernel.
    #[must_use]
    pub fn neigh_entries(&self) -> Vec<NeighEntry> {
        self.neigh
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, v)| {
                Some(NeighEntry {
                    vni: k.vni,
                    ip: key_ip(&k)?,
                    mac: MacAddr(v.mac),
                    flags: v.flags,
                })
            })
            .collect()
    }

    /// Writes one binding.
    pub fn set_neigh(
        &mut self,
        vni: u32,
        ip: IpAddr,
        mac: MacAddr,
        flags: u8,
    ) -> Result<(), MapsError> {
        let value = vlnet_neigh {
            mac: mac.0,
            flags,
            pad: 0,
        };
        self.neigh
            .insert(neigh_key(vni, ip), value, 0)
            .map_err(op("vlnet_neigh"))
    }

    /// Removes one binding (absent is not an error).
    pub fn remove_neigh(&mut self, vni: u32, ip: IpAddr) -> Result<(), MapsError> {
        match self.neigh.remove(&neigh_key(vni, ip)) {
            Err(e) if is_absent(&e) => Ok(()),
            other => other.map_err(op("vlnet_neigh")),
        }
    }

    /// The bindings the programs snooped from VMs still on this node, by
    /// MAC; snooped bindings of MACs that left it (no longer in
    /// `vlnet_locals`) are removed.
    pub fn local_neighs(&mut self) -> Result<BTreeMap<MacKey, NeighSet>, MapsError> {
        let mut out: BTreeMap<MacKey, NeighSet> = BTreeMap::new();
        for e in self.neigh_entries() {
            if e.flags & LOCAL == 0 {
                continue;
            }
            if self.locals.get(&fdb_key(e.vni, e.mac.0), 0).is_err() {
                self.remove_neigh(e.vni, e.ip)?;
                continue;
            }
            collect(&mut out, &e);
        }
        Ok(out)
    }

    /// Whether `mac` on `vni` is placed behind a static peer: an FDB entry
    /// at a VTEP that learns on the underlay.
    fn behind_static_peer(&self, vni: u32, mac: MacAddr) -> bool {
        let Some(entry) = self.fdb_entry(vni, mac.0) else {
            return false;
        };
        self.vteps
            .get(&entry.vtep_be, 0)
            .is_ok_and(|v| v.path == VLNET_PATH_UNDERLAY && v.flags & VLNET_VTEP_LEARN != 0)
    }

    /// The bindings of the zone's VMs, by MAC: those the programs snooped
    /// (frames decapsulated from static peers) and those the control plane
    /// installed for MACs behind a zone VTEP (an EVPN zone's MAC/IP
    /// routes). Snooped ones of MACs no longer placed behind a zone VTEP
    /// (their learned entry aged out, or the MAC moved) are removed, so a
    /// binding lasts as long as its MAC's entry: at most the FDB's ageing
    /// time after the VM fell silent.
    pub fn zone_neighs(&mut self) -> Result<BTreeMap<MacKey, NeighSet>, MapsError> {
        let mut out: BTreeMap<MacKey, NeighSet> = BTreeMap::new();
        for e in self.neigh_entries() {
            let snooped = e.flags & ZONE != 0;
            if !snooped && e.flags & CONTROL == 0 {
                continue;
            }
            if !self.behind_static_peer(e.vni, e.mac) {
                if snooped {
                    self.remove_neigh(e.vni, e.ip)?;
                }
                continue;
            }
            collect(&mut out, &e);
        }
        Ok(out)
    }

    /// Makes `set` the control-plane bindings of `key`: its other control
    /// entries go, each address of `set` is bound to it (over a local VM's
    /// snooped binding to another MAC: the controller decided), and a
    /// snooped binding to this very MAC stays as it is (it is this node's
    /// own). A zone VM's binding to another MAC is never overwritten: the
    /// zone's addresses are not the members' to take.
    pub fn apply_neigh(&mut self, key: MacKey, set: &NeighSet) -> Result<(), MapsError> {
        self.apply_neighs([(key, set)])
    }

    /// [`apply_neigh`](Self::apply_neigh) for each change in order, reading
    /// the table once (a change sees what the ones before it wrote). A
    /// change that fails does not stop the others; the first error is
    /// returned.
    pub fn apply_neighs<'a>(
        &mut self,
        changes: impl IntoIterator<Item = (MacKey, &'a NeighSet)>,
    ) -> Result<(), MapsError> {
        let mut held = HeldNeighs::default();
        for e in self.neigh_entries() {
            held.put(e);
        }
        let mut first_error = None;
        for (key, set) in changes {
            if let Err(e) = self.apply_one(&mut held, key, set) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One change of [`apply_neighs`](Self::apply_neighs), `held` kept in
    /// step with the table.
    fn apply_one(
        &mut self,
        held: &mut HeldNeighs,
        (vni, mac): MacKey,
        set: &NeighSet,
    ) -> Result<(), MapsError> {
        for ip in held.of(vni, mac) {
            let stale = held
                .get(vni, ip)
                .is_some_and(|e| e.flags & CONTROL != 0 && !set.ips.contains(&ip));
            if stale {
                self.remove_neigh(vni, ip)?;
                held.remove(vni, ip);
            }
        }
        for &ip in &set.ips {
            let kept = held.get(vni, ip).is_some_and(|e| {
                (e.mac == mac && e.flags & LOCAL != 0) || (e.mac != mac && e.flags & ZONE != 0)
            });
            if kept {
                continue;
            }
            let mut flags = CONTROL;
            if set.router && ip.is_ipv6() {
                flags |= ROUTER;
            }
            self.set_neigh(vni, ip, mac, flags)?;
            held.put(NeighEntry {
                vni,
                ip,
                mac,
                flags,
            });
        }
        Ok(())
    }

    /// Removes every control-plane binding (a control plane starting afresh
    /// installs its own).
    pub fn clear_control_neighs(&mut self) -> Result<(), MapsError> {
        for e in self.neigh_entries() {
            if e.flags & CONTROL != 0 {
                self.remove_neigh(e.vni, e.ip)?;
            }
        }
        Ok(())
    }

    /// The suppression counters (summed over CPUs) and bindings held.
    #[must_use]
    pub fn suppression(&self) -> Suppression {
        let sum = |index: u32| {
            self.suppress
                .get(&index, 0)
                .map(|v| v.iter().sum::<u64>())
                .unwrap_or_default()
        };
        let entries = self.neigh_entries();
        let count = |flag: u8| entries.iter().filter(|e| e.flags & flag != 0).count() as u64;
        Suppression {
            arp_replied: sum(VLNET_SUPPRESS_ARP_REPLIED),
            nd_replied: sum(VLNET_SUPPRESS_ND_REPLIED),
            arp_local: sum(VLNET_SUPPRESS_ARP_LOCAL),
            nd_local: sum(VLNET_SUPPRESS_ND_LOCAL),
            snoop_full: sum(VLNET_SUPPRESS_SNOOP_FULL),
            bindings_local: count(LOCAL),
            bindings_control: count(CONTROL),
            bindings_zone: count(ZONE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_both_families() {
        for ip in ["192.0.2.7", "2001:db8::7"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(key_ip(&neigh_key(100, ip)), Some(ip));
        }
        let k = neigh_key(100, "192.0.2.7".parse().unwrap());
        assert_eq!(&k.ip[..4], &[192, 0, 2, 7]);
        assert!(k.ip[4..].iter().all(|b| *b == 0));
    }
}
