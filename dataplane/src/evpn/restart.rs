//! The restarting side of graceful restart (RFC 4724 §4.1). The daemon's
//! programs and maps outlive it, so after a restart the data plane still
//! forwards with what the previous daemon learned from EVPN: the remote
//! VTEPs of the EVPN VNIs and the MACs behind them. The agent keeps those
//! ([`Kept`]) as its own until every neighbor has sent its routes again and
//! its End-of-RIB, or until the restart time has passed; then what no route
//! placed again is swept. Meanwhile the neighbors (the helpers) keep this
//! node's routes, stale, until this node's End-of-RIB.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::agent::RemoteVteps;
use crate::mac::MacAddr;

/// What the data plane held for the EVPN VNIs when the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kept {
    /// Their flood lists and the VTEPs their MACs are behind.
    pub vteps: RemoteVteps,
    /// Their MACs placed behind a remote VTEP by the control plane.
    pub macs: BTreeSet<(u32, MacAddr)>,
}

/// One FDB entry of the data plane, as [`Kept::read`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldEntry {
    /// The VNI.
    pub vni: u32,
    /// The MAC.
    pub mac: MacAddr,
    /// The VTEP it is behind.
    pub vtep: Ipv4Addr,
    /// It came from a control plane (not learned, not from the config) and
    /// its VTEP is on the underlay (not a member in the tunnel).
    pub from_evpn: bool,
}

impl Kept {
    /// What the data plane holds for the VNIs `evpn`: from its flood list
    /// slots (`(vni, slot, vtep)`) and FDB entries, leaving out each VNI's
    /// static peers (`is_static_peer`) and `me`.
    #[must_use]
    pub fn read(
        evpn: &BTreeSet<u32>,
        me: Ipv4Addr,
        flood_slots: &[(u32, u32, Ipv4Addr)],
        fdb: &[HeldEntry],
        is_static_peer: impl Fn(u32, Ipv4Addr) -> bool,
    ) -> Self {
        let ours = |vni: u32, vtep: Ipv4Addr| {
            evpn.contains(&vni) && vtep != me && !is_static_peer(vni, vtep)
        };
        let mut kept = Self::default();
        for &(vni, _, vtep) in flood_slots.iter().filter(|s| ours(s.0, s.2)) {
            kept.vteps.flood.entry(vni).or_default().insert(vtep);
        }
        for e in fdb.iter().filter(|e| e.from_evpn && ours(e.vni, e.vtep)) {
            kept.vteps.located.entry(e.vni).or_default().insert(e.vtep);
            kept.macs.insert((e.vni, e.mac));
        }
        kept
    }

    /// Whether nothing was held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.macs.is_empty() && self.vteps.flood.values().all(BTreeSet::is_empty)
    }

    /// `learned` with the kept VTEPs added.
    #[must_use]
    pub fn merged(&self, mut learned: RemoteVteps) -> RemoteVteps {
        for (vni, vteps) in &self.vteps.flood {
            learned.flood.entry(*vni).or_default().extend(vteps);
        }
        for (vni, vteps) in &self.vteps.located {
            learned.located.entry(*vni).or_default().extend(vteps);
        }
        learned
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const ME: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const LEAF: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
    const STATIC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 9);

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, last])
    }

    fn entry(vni: u32, last: u8, vtep: Ipv4Addr, from_evpn: bool) -> HeldEntry {
        HeldEntry {
            vni,
            mac: mac(last),
            vtep,
            from_evpn,
        }
    }

    #[test]
    fn only_the_evpn_vnis_control_entries_behind_remote_vteps_are_kept() {
        let evpn = BTreeSet::from([100]);
        let slots = [(100, 0, STATIC), (100, 1, LEAF), (200, 0, LEAF)];
        let fdb = [
            entry(100, 1, LEAF, true),
            entry(100, 2, LEAF, false), // learned or from the config
            entry(100, 3, STATIC, true),
            entry(200, 4, LEAF, true), // not an EVPN VNI
            entry(100, 5, ME, true),
        ];
        let kept = Kept::read(&evpn, ME, &slots, &fdb, |vni, vtep| {
            vni == 100 && vtep == STATIC
        });
        assert_eq!(
            kept.vteps.flood,
            BTreeMap::from([(100, BTreeSet::from([LEAF]))])
        );
        assert_eq!(
            kept.vteps.located,
            BTreeMap::from([(100, BTreeSet::from([LEAF]))])
        );
        assert_eq!(kept.macs, BTreeSet::from([(100, mac(1))]));
        assert!(!kept.is_empty());
        assert!(Kept::read(&evpn, ME, &[], &[], |_, _| false).is_empty());
    }

    #[test]
    fn merging_adds_the_kept_vteps_to_the_learned_ones() {
        let other = Ipv4Addr::new(198, 18, 0, 4);
        let kept = Kept::read(
            &BTreeSet::from([100]),
            ME,
            &[(100, 0, LEAF)],
            &[entry(100, 1, LEAF, true)],
            |_, _| false,
        );
        let mut learned = RemoteVteps::default();
        learned.flood.insert(100, BTreeSet::from([other]));
        let merged = kept.merged(learned);
        assert_eq!(merged.flood[&100], BTreeSet::from([LEAF, other]));
        assert_eq!(merged.located[&100], BTreeSet::from([LEAF]));
    }
}
