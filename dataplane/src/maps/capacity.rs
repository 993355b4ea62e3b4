//! The FDB's capacity per VNI in the kernel (rules in [`crate::capacity`]):
//! control-plane installs that respect it, and the capacity task's tick.

use vlnet_ebpf::abi::{vlnet_fdb_entry, VLNET_FDB_CONTROL, VLNET_VNI_LEARN_PAUSED};

use super::{fdb_key, op, Maps, MapsError};
use crate::capacity::{Capacities, Plan, Watch};
use crate::control::macbook::FdbChange;
use crate::fdb::{is_static, kind, monotonic_ns};
use crate::model::FdbKind;

/// What [`Maps::apply_control_fdb`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlFdb {
    /// Written or removed as asked (or left alone: a static entry).
    Applied,
    /// A new MAC for a VNI at capacity with nothing learned to evict: not
    /// installed. `warn`: the first refusal of the VNI in a minute.
    Refused {
        /// The VNI.
        vni: u32,
        /// Whether to log it.
        warn: bool,
    },
}

impl Maps {
    /// Sets each VNI's FDB capacity.
    pub fn set_fdb_capacities(&mut self, caps: Capacities) {
        self.budget.set_capacities(caps);
    }

    /// Each VNI's FDB capacity.
    #[must_use]
    pub fn fdb_capacities(&self) -> &Capacities {
        self.budget.capacities()
    }

    /// `(vni, control-plane entries refused)` for VNIs with refusals.
    #[must_use]
    pub fn fdb_refused(&self) -> Vec<(u32, u64)> {
        self.budget.refused()
    }

    /// Installs or removes a control-plane FDB entry. Entries pinned in the
    /// config (static) are never touched; a removal only takes out an entry
    /// the control plane installed (a learned one stays until it ages). A
    /// new MAC in a VNI at capacity takes the place of the VNI's oldest
    /// learned entry, or is refused when there is none.
    pub fn apply_control_fdb(&mut self, change: &FdbChange) -> Result<ControlFdb, MapsError> {
        let (vni, mac) = match *change {
            FdbChange::Install { vni, mac, .. } | FdbChange::Remove { vni, mac } => (vni, mac),
        };
        let key = fdb_key(vni, mac.0);
        let current = self.fdb.get(&key, 0).ok();
        if current.is_some_and(|e| is_static(&e)) {
            return Ok(ControlFdb::Applied);
        }
        match *change {
            FdbChange::Install { vtep, .. } => {
                if current.is_none() && !self.make_room(vni)? {
                    let warn = self.budget.refuse(vni, monotonic_ns());
                    return Ok(ControlFdb::Refused { vni, warn });
                }
                self.set_fdb(
                    &key,
                    &vlnet_fdb_entry {
                        vtep_be: u32::from(vtep).to_be(),
                        flags: VLNET_FDB_CONTROL,
                        updated_ns: monotonic_ns(),
                    },
                )?;
                if current.is_none() {
                    self.budget.added(vni);
                }
            }
            FdbChange::Remove { .. }
                if current.is_some_and(|e| e.flags & VLNET_FDB_CONTROL != 0) =>
            {
                self.remove_fdb(&key)?;
            }
            FdbChange::Remove { .. } => {}
        }
        Ok(ControlFdb::Applied)
    }

    /// Room for one new key in `vni`: there is some, or the VNI's oldest
    /// learned entry is evicted. Whether there is room now.
    fn make_room(&mut self, vni: u32) -> Result<bool, MapsError> {
        while !self.budget.has_room(vni) {
            if self.budget.needs_victims(vni) {
                let entries = self.fdb();
                self.budget.load_victims(vni, &entries);
            }
            let Some(victim) = self.budget.next_victim(vni) else {
                return Ok(false);
            };
            match self.fdb.get(&victim, 0) {
                // Still learned: it goes (remove_fdb counts it out).
                Ok(e) if kind(&e) == FdbKind::Learned => self.remove_fdb(&victim)?,
                // Since made static or control: not a victim.
                Ok(_) => {}
                // Already gone (aged out): one entry fewer than counted.
                Err(_) => self.budget.removed(vni),
            }
        }
        Ok(true)
    }

    /// One tick of the capacity task: evicts what `watch` plans for the FDB
    /// under the capacities set, pauses or resumes learning per VNI, and
    /// recounts. Returns the plan (for its warnings and fills).
    pub fn enforce_fdb_capacity(&mut self, watch: &mut Watch) -> Result<Plan, MapsError> {
        let entries = self.fdb();
        let plan = watch.plan(&entries, self.budget.capacities());
        for key in &plan.evict {
            self.remove_fdb(key)?;
        }
        for vni in self.vnis() {
            let Some(mut cfg) = self.vni(vni) else {
                continue;
            };
            let flags = if plan.paused.contains(&vni) {
                cfg.flags | VLNET_VNI_LEARN_PAUSED
            } else {
                cfg.flags & !VLNET_VNI_LEARN_PAUSED
            };
            if flags != cfg.flags {
                cfg.flags = flags;
                self.vnis.insert(vni, cfg, 0).map_err(op("vlnet_vnis"))?;
            }
        }
        let left: Vec<_> = if plan.evict.is_empty() {
            entries
        } else {
            self.fdb()
        };
        self.budget.recount(&left);
        Ok(plan)
    }
}
