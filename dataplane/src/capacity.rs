//! FDB capacity per VNI, as pure rules. The FDB is one kernel map shared by
//! every VNI, so each VNI may hold at most its capacity of MAC addresses
//! (`node.fdb_max_per_vni`, or its `[[vni]] fdb_max`): a member flooding
//! one VNI with MACs cannot starve the others.
//!
//! - Learned entries give way first, oldest first; static and control
//!   entries are never evicted to make room.
//! - A VNI at capacity has its learning paused in the kernel
//!   (`VLNET_VNI_LEARN_PAUSED`: no new learned keys; frames are still
//!   delivered) until it has room again.
//! - A control-plane entry for a new MAC in a full VNI evicts the VNI's
//!   oldest learned entry, or is refused when there is none ([`Budget`]).
//! - A VNI crossing [`WARN_PERCENT`] of its capacity is reported once, again
//!   only after it fell below [`REARM_PERCENT`].
//!
//! [`Watch::plan`] is what the daemon's capacity task does every tick;
//! [`Budget`] is the count control-plane installs consult between ticks.

use std::collections::{BTreeMap, BTreeSet};

use vlnet_ebpf::abi::{vlnet_fdb_entry, vlnet_fdb_key};

use crate::config::DEFAULT_FDB_MAX_PER_VNI;
use crate::fdb::kind;
use crate::model::FdbKind;

/// Fill (percent of capacity) from which a VNI is reported nearly full.
pub const WARN_PERCENT: u64 = 90;
/// Fill below which a VNI that was reported may be reported again.
pub const REARM_PERCENT: u64 = 80;
/// Nanoseconds between two warnings about refused entries of one VNI.
pub const REFUSAL_WARN_EVERY_NS: u64 = 60_000_000_000;

/// Each VNI's FDB capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacities {
    default: u32,
    per_vni: BTreeMap<u32, u32>,
}

impl Default for Capacities {
    /// [`DEFAULT_FDB_MAX_PER_VNI`] for every VNI, until the config is known.
    fn default() -> Self {
        Self::new(DEFAULT_FDB_MAX_PER_VNI, BTreeMap::new())
    }
}

impl Capacities {
    /// `per_vni` for the VNIs served, `default` for any other.
    #[must_use]
    pub fn new(default: u32, per_vni: BTreeMap<u32, u32>) -> Self {
        Self { default, per_vni }
    }

    /// The capacity of `vni`.
    #[must_use]
    pub fn of(&self, vni: u32) -> u32 {
        self.per_vni.get(&vni).copied().unwrap_or(self.default)
    }

    /// `(vni, capacity)` of every VNI served.
    pub fn served(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.per_vni.iter().map(|(v, c)| (*v, *c))
    }
}

/// One VNI's share of the FDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// The VNI.
    pub vni: u32,
    /// Entries it holds (every kind).
    pub entries: u32,
    /// Its capacity.
    pub capacity: u32,
}

impl Fill {
    /// Entries in percent of the capacity (rounded down).
    #[must_use]
    pub fn percent(&self) -> u64 {
        u64::from(self.entries) * 100 / u64::from(self.capacity.max(1))
    }
}

/// What one tick of the capacity task does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Learned entries to remove so that every VNI fits its capacity.
    pub evict: Vec<vlnet_fdb_key>,
    /// VNIs whose learning must be paused (no room for a new key); learning
    /// runs in every other VNI.
    pub paused: BTreeSet<u32>,
    /// VNIs that just crossed [`WARN_PERCENT`] (to report once).
    pub nearly_full: Vec<Fill>,
    /// Every VNI's fill once `evict` is done.
    pub fills: Vec<Fill>,
}

/// Entries per VNI, and each VNI's learned entries oldest first.
fn by_vni(
    entries: &[(vlnet_fdb_key, vlnet_fdb_entry)],
) -> BTreeMap<u32, (u32, Vec<vlnet_fdb_key>)> {
    let mut out: BTreeMap<u32, (u32, Vec<(u64, vlnet_fdb_key)>)> = BTreeMap::new();
    for (key, entry) in entries {
        let slot = out.entry(key.vni).or_default();
        slot.0 += 1;
        if kind(entry) == FdbKind::Learned {
            slot.1.push((entry.updated_ns, *key));
        }
    }
    out.into_iter()
        .map(|(vni, (n, mut learned))| {
            learned.sort_by_key(|(at, key)| (*at, key.mac));
            (vni, (n, learned.into_iter().map(|(_, k)| k).collect()))
        })
        .collect()
}

/// The capacity task's memory: which VNIs were reported nearly full.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    warned: BTreeSet<u32>,
}

impl Watch {
    /// The tick for `entries` (the whole FDB) under `caps`.
    pub fn plan(
        &mut self,
        entries: &[(vlnet_fdb_key, vlnet_fdb_entry)],
        caps: &Capacities,
    ) -> Plan {
        let mut loads = by_vni(entries);
        for (vni, _) in caps.served() {
            loads.entry(vni).or_default();
        }
        let mut plan = Plan::default();
        for (vni, (mut n, learned)) in loads {
            let capacity = caps.of(vni);
            let over = n.saturating_sub(capacity) as usize;
            let evicted = over.min(learned.len());
            plan.evict.extend_from_slice(&learned[..evicted]);
            n -= evicted as u32;
            if n >= capacity {
                plan.paused.insert(vni);
            }
            let fill = Fill {
                vni,
                entries: n,
                capacity,
            };
            if fill.percent() >= WARN_PERCENT {
                if self.warned.insert(vni) {
                    plan.nearly_full.push(fill);
                }
            } else if fill.percent() < REARM_PERCENT {
                self.warned.remove(&vni);
            }
            plan.fills.push(fill);
        }
        plan
    }
}

/// What control-plane installs of new keys consult between two ticks: each
/// VNI's count of entries, the learned entries that may give way, and the
/// refusals so far.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    caps: Capacities,
    used: BTreeMap<u32, u32>,
    /// Per VNI, once needed: its learned entries, newest first (the oldest
    /// is popped first).
    victims: BTreeMap<u32, Vec<vlnet_fdb_key>>,
    refused: BTreeMap<u32, u64>,
    warned_at: BTreeMap<u32, u64>,
}

impl Budget {
    /// Sets each VNI's capacity.
    pub fn set_capacities(&mut self, caps: Capacities) {
        self.caps = caps;
    }

    /// Each VNI's capacity.
    #[must_use]
    pub fn capacities(&self) -> &Capacities {
        &self.caps
    }

    /// Counts `entries` (the whole FDB, read now) afresh.
    pub fn recount(&mut self, entries: &[(vlnet_fdb_key, vlnet_fdb_entry)]) {
        self.used.clear();
        for (key, _) in entries {
            *self.used.entry(key.vni).or_default() += 1;
        }
        self.victims.clear();
    }

    /// Whether `vni` has room for one more key.
    #[must_use]
    pub fn has_room(&self, vni: u32) -> bool {
        self.used.get(&vni).copied().unwrap_or(0) < self.caps.of(vni)
    }

    /// Whether [`Self::next_victim`] needs [`Self::load_victims`] first.
    #[must_use]
    pub fn needs_victims(&self, vni: u32) -> bool {
        !self.victims.contains_key(&vni)
    }

    /// Remembers `vni`'s learned entries among `entries` (the whole FDB).
    pub fn load_victims(&mut self, vni: u32, entries: &[(vlnet_fdb_key, vlnet_fdb_entry)]) {
        let mut learned: Vec<vlnet_fdb_key> = by_vni(entries)
            .remove(&vni)
            .map(|(_, l)| l)
            .unwrap_or_default();
        learned.reverse();
        self.victims.insert(vni, learned);
    }

    /// The oldest learned entry of `vni` not handed out yet.
    pub fn next_victim(&mut self, vni: u32) -> Option<vlnet_fdb_key> {
        self.victims.get_mut(&vni).and_then(Vec::pop)
    }

    /// A key was added to `vni`.
    pub fn added(&mut self, vni: u32) {
        *self.used.entry(vni).or_default() += 1;
    }

    /// A key left `vni`.
    pub fn removed(&mut self, vni: u32) {
        if let Some(n) = self.used.get_mut(&vni) {
            *n = n.saturating_sub(1);
        }
    }

    /// Counts a refused entry of `vni` at `now_ns`; whether to warn (the
    /// first refusal of the VNI, or the first one
    /// [`REFUSAL_WARN_EVERY_NS`] after the last warning).
    pub fn refuse(&mut self, vni: u32, now_ns: u64) -> bool {
        *self.refused.entry(vni).or_default() += 1;
        let due = self
            .warned_at
            .get(&vni)
            .is_none_or(|at| now_ns.saturating_sub(*at) >= REFUSAL_WARN_EVERY_NS);
        if due {
            self.warned_at.insert(vni, now_ns);
        }
        due
    }

    /// `(vni, refused entries)` so far, for VNIs with refusals.
    #[must_use]
    pub fn refused(&self) -> Vec<(u32, u64)> {
        self.refused.iter().map(|(v, n)| (*v, *n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vlnet_ebpf::abi::{VLNET_FDB_CONTROL, VLNET_FDB_LEARNED, VLNET_FDB_STATIC};

    fn key(vni: u32, n: u8) -> vlnet_fdb_key {
        vlnet_fdb_key {
            vni,
            mac: [2, 0, 0, 0, 0, n],
            pad: [0; 2],
        }
    }

    fn entry(flags: u32, updated_ns: u64) -> vlnet_fdb_entry {
        vlnet_fdb_entry {
            vtep_be: 1,
            flags,
            updated_ns,
        }
    }

    fn caps(per_vni: &[(u32, u32)]) -> Capacities {
        Capacities::new(10, per_vni.iter().copied().collect())
    }

    /// `n` learned entries of `vni` updated at 1..=n, then `fixed` static
    /// and control entries.
    fn vni_entries(vni: u32, learned: u8, fixed: u8) -> Vec<(vlnet_fdb_key, vlnet_fdb_entry)> {
        let mut out: Vec<_> = (1..=learned)
            .map(|i| (key(vni, i), entry(VLNET_FDB_LEARNED, u64::from(i))))
            .collect();
        for i in 0..fixed {
            let flags = if i % 2 == 0 {
                VLNET_FDB_STATIC
            } else {
                VLNET_FDB_CONTROL
            };
            out.push((key(vni, 200 + i), entry(flags, 0)));
        }
        out
    }

    #[test]
    fn a_vni_over_capacity_loses_its_oldest_learned_entries() {
        let mut entries = vni_entries(100, 6, 2);
        // Out of order in the map: the oldest go whatever their position.
        entries.swap(0, 5);
        let plan = Watch::default().plan(&entries, &caps(&[(100, 5)]));
        assert_eq!(plan.evict, [key(100, 1), key(100, 2), key(100, 3)]);
        assert_eq!(plan.paused, [100].into(), "at capacity after eviction");
        assert_eq!(
            plan.fills,
            [Fill {
                vni: 100,
                entries: 5,
                capacity: 5
            }]
        );
    }

    #[test]
    fn static_and_control_entries_are_never_evicted() {
        let entries = vni_entries(100, 1, 6);
        let plan = Watch::default().plan(&entries, &caps(&[(100, 4)]));
        assert_eq!(plan.evict, [key(100, 1)], "only the learned one goes");
        assert_eq!(plan.fills[0].entries, 6, "still over: nothing else may go");
        assert!(plan.paused.contains(&100));
    }

    #[test]
    fn vnis_are_counted_apart_and_learning_runs_below_capacity() {
        let mut entries = vni_entries(100, 3, 0);
        entries.extend(vni_entries(200, 9, 0));
        let plan = Watch::default().plan(&entries, &caps(&[(100, 4), (200, 9), (300, 2)]));
        assert!(plan.evict.is_empty());
        assert_eq!(plan.paused, [200].into());
        let fills: Vec<(u32, u32)> = plan.fills.iter().map(|f| (f.vni, f.entries)).collect();
        assert_eq!(
            fills,
            [(100, 3), (200, 9), (300, 0)],
            "served VNIs without entries too"
        );
    }

    #[test]
    fn nearly_full_is_reported_once_until_it_drains() {
        let mut watch = Watch::default();
        let caps = caps(&[(100, 10)]);
        let plan = watch.plan(&vni_entries(100, 8, 0), &caps);
        assert!(plan.nearly_full.is_empty(), "80 %");
        let plan = watch.plan(&vni_entries(100, 9, 0), &caps);
        assert_eq!(plan.nearly_full.len(), 1, "90 %: reported");
        assert_eq!(plan.nearly_full[0].percent(), 90);
        for learned in [10, 9, 8] {
            let plan = watch.plan(&vni_entries(100, learned, 0), &caps);
            assert!(plan.nearly_full.is_empty(), "{learned}: already reported");
        }
        watch.plan(&vni_entries(100, 7, 0), &caps);
        let plan = watch.plan(&vni_entries(100, 9, 0), &caps);
        assert_eq!(plan.nearly_full.len(), 1, "below 80 % re-arms");
    }

    #[test]
    fn the_budget_admits_until_full_then_hands_out_the_oldest_learned() {
        let entries = vni_entries(100, 3, 2);
        let mut budget = Budget::default();
        budget.set_capacities(caps(&[(100, 6)]));
        budget.recount(&entries);
        assert!(budget.has_room(100));
        budget.added(100);
        assert!(!budget.has_room(100), "6 of 6");
        assert!(budget.needs_victims(100));
        budget.load_victims(100, &entries);
        assert!(!budget.needs_victims(100));
        assert_eq!(budget.next_victim(100), Some(key(100, 1)));
        budget.removed(100);
        assert!(budget.has_room(100));
        budget.added(100);
        assert_eq!(budget.next_victim(100), Some(key(100, 2)));
        assert_eq!(budget.next_victim(100), Some(key(100, 3)));
        assert_eq!(budget.next_victim(100), None, "static and control stay");
        // A recount forgets the handed-out list.
        budget.recount(&entries);
        assert!(budget.needs_victims(100));
        assert!(budget.has_room(200), "another VNI has the default");
    }

    #[test]
    fn before_the_config_every_vni_has_the_default_capacity() {
        let budget = Budget::default();
        assert_eq!(budget.capacities().of(100), DEFAULT_FDB_MAX_PER_VNI);
        assert!(budget.has_room(100));
    }

    #[test]
    fn refusals_are_counted_and_warned_once_a_minute() {
        let mut budget = Budget::default();
        assert!(budget.refuse(100, 1_000));
        assert!(!budget.refuse(100, 2_000));
        assert!(budget.refuse(200, 2_000), "per VNI");
        assert!(!budget.refuse(100, 1_000 + REFUSAL_WARN_EVERY_NS - 1));
        assert!(budget.refuse(100, 1_000 + REFUSAL_WARN_EVERY_NS));
        assert_eq!(budget.refused(), [(100, 4), (200, 1)]);
    }
}
