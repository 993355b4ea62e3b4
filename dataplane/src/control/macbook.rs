//! One node's view of where MACs live: its own (local) MACs, turned into
//! adverts and withdrawals, and everyone's routes under the mobility rules,
//! turned into changes for the data plane's FDB.
//!
//! The controller applies adverts under the mobility rules
//! ([`advert`](MacBook::advert), [`withdraw`](MacBook::withdraw)) once its
//! ownership policy accepted them (`core::controller`); a member mirrors the
//! controller's decisions as they come ([`MacBook::follow_advert`],
//! [`MacBook::follow_withdraw`], [`MacBook::follow_full_sync`]).
//!
//! Pure: the caller observes the bridges, sends the messages and programs
//! the FDB; `now` is passed in.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use super::mobility::{self, FrozenMac, MacRoute, MobilityConfig, MobilityTable, NodeId, Outcome};
use super::wire::{MacAdvert, MacWithdraw};
use crate::mac::MacAddr;

/// A change the data plane must make in its FDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdbChange {
    /// `mac` on `vni` is reached through `vtep` (a control-plane entry).
    Install {
        /// The VNI.
        vni: u32,
        /// The MAC.
        mac: MacAddr,
        /// The remote VTEP.
        vtep: Ipv4Addr,
    },
    /// `mac` on `vni` has no remote location any more (or is local now).
    Remove {
        /// The VNI.
        vni: u32,
        /// The MAC.
        mac: MacAddr,
    },
}

/// A change to pass on to other nodes (the controller relays these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// A new or moved location.
    Advert(MacAdvert),
    /// A location that is gone.
    Withdraw(MacWithdraw),
}

impl Relay {
    /// The VNI it concerns.
    #[must_use]
    pub fn vni(&self) -> u32 {
        match self {
            Self::Advert(a) => a.vni,
            Self::Withdraw(w) => w.vni,
        }
    }
}

/// What applying a received advert or withdrawal changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// What to relay to other nodes, if anything changed.
    pub relay: Vec<Relay>,
    /// What to change in the FDB.
    pub fdb: Vec<FdbChange>,
    /// MACs this node held (seen on its bridges, its route here) that now
    /// live elsewhere: a stale bridge entry of theirs can go.
    pub left: Vec<(u32, MacAddr)>,
}

impl Applied {
    /// Appends `other`.
    pub fn extend(&mut self, other: Applied) {
        self.relay.extend(other.relay);
        self.fdb.extend(other.fdb);
        self.left.extend(other.left);
    }
}

/// Messages to send after observing the local MACs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LocalDelta {
    /// MACs that appeared (or moved here).
    pub adverts: Vec<MacAdvert>,
    /// MACs that left.
    pub withdraws: Vec<MacWithdraw>,
    /// FDB changes (a MAC that is local now has no remote entry).
    pub fdb: Vec<FdbChange>,
}

/// A node's MAC locations.
#[derive(Debug, Clone)]
pub struct MacBook {
    me: NodeId,
    my_vtep: Ipv4Addr,
    table: MobilityTable,
    local: BTreeSet<(u32, MacAddr)>,
    /// MACs declared local by an operator (`vlnet ctl vm moved`) until the
    /// given time, or until the bridge learns them.
    claims: BTreeMap<(u32, MacAddr), Duration>,
}

/// Turns a wire advert into a table route from `origin`.
#[must_use]
pub fn route_of(a: &MacAdvert, origin: &NodeId) -> MacRoute {
    MacRoute {
        vni: a.vni,
        mac: a.mac,
        vtep: a.vtep,
        seq: a.seq,
        origin: origin.clone(),
    }
}

/// The wire advert of a table route.
#[must_use]
pub fn advert_of(r: &MacRoute) -> MacAdvert {
    MacAdvert {
        vni: r.vni,
        mac: r.mac,
        vtep: r.vtep,
        seq: r.seq,
    }
}

impl MacBook {
    /// A book for node `me` whose VTEP (as members see it) is `my_vtep`.
    #[must_use]
    pub fn new(me: &str, my_vtep: Ipv4Addr) -> Self {
        let me = NodeId::new(me);
        Self {
            table: MobilityTable::new(me.clone(), MobilityConfig::default()),
            me,
            my_vtep,
            local: BTreeSet::new(),
            claims: BTreeMap::new(),
        }
    }

    /// Declares `mac` local on `vni` until `until` even if no bridge has
    /// learned it (a VM that moved here but has not sent a frame yet).
    pub fn claim(&mut self, vni: u32, mac: MacAddr, until: Duration) {
        self.claims.insert((vni, mac), until);
    }

    /// This node's id.
    #[must_use]
    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// This node's VTEP.
    #[must_use]
    pub fn my_vtep(&self) -> Ipv4Addr {
        self.my_vtep
    }

    /// Takes the full set of MACs local to this node now: new ones are
    /// advertised (one sequence number above the location they move from),
    /// vanished ones withdrawn.
    pub fn observe_local(
        &mut self,
        observed: &BTreeSet<(u32, MacAddr)>,
        now: Duration,
    ) -> LocalDelta {
        self.claims
            .retain(|key, until| *until > now && !observed.contains(key));
        let mut now_local = observed.clone();
        now_local.extend(self.claims.keys().copied());
        let now_local = &now_local;
        let mut delta = LocalDelta::default();
        let arrived: Vec<(u32, MacAddr)> = now_local.difference(&self.local).copied().collect();
        for (vni, mac) in arrived {
            let before = self.table.get(vni, mac);
            match self.table.local_move(vni, mac, self.my_vtep, now) {
                Ok(route) => {
                    delta.adverts.push(advert_of(&route));
                    if before.is_some_and(|b| b.vtep != self.my_vtep) {
                        delta.fdb.push(FdbChange::Remove { vni, mac });
                    }
                    self.local.insert((vni, mac));
                }
                Err(reason) => {
                    tracing::warn!(vni, %mac, ?reason, "local MAC not advertised");
                }
            }
        }
        let gone: Vec<(u32, MacAddr)> = self.local.difference(now_local).copied().collect();
        for (vni, mac) in gone {
            self.local.remove(&(vni, mac));
            let Some(route) = self.table.get(vni, mac) else {
                continue;
            };
            if route.vtep != self.my_vtep {
                continue; // it moved away already: nothing of ours to withdraw
            }
            let w = MacWithdraw {
                vni,
                mac,
                vtep: self.my_vtep,
                seq: route.seq,
            };
            self.table.apply_withdraw(&to_table_withdraw(&w), now);
            delta.withdraws.push(w);
        }
        delta
    }

    /// Applies an advert received from `origin`. An advert of our own VTEP
    /// (our routes echoed back after a restart) is kept as ours.
    pub fn advert(&mut self, a: &MacAdvert, origin: &NodeId, now: Duration) -> Applied {
        let route = route_of(a, self.origin_of(a, origin));
        let outcome = self.table.apply_advert(&route, now);
        self.applied_advert(a, outcome)
    }

    /// Who an advert received from `origin` speaks for: this node when it
    /// names our own VTEP (our routes echoed back after a restart).
    fn origin_of<'a>(&'a self, a: &MacAdvert, origin: &'a NodeId) -> &'a NodeId {
        if a.vtep == self.my_vtep {
            &self.me
        } else {
            origin
        }
    }

    /// Applies a withdrawal received from a peer.
    pub fn withdraw(&mut self, w: &MacWithdraw, now: Duration) -> Applied {
        let outcome = self.table.apply_withdraw(&to_table_withdraw(w), now);
        self.applied_withdraw(w, outcome)
    }

    /// Forgets the tombstone a withdrawal left for `mac` on `vni` (see
    /// [`MobilityTable::forget_withdrawn`]).
    pub fn forget_withdrawn(&mut self, vni: u32, mac: MacAddr) {
        self.table.forget_withdrawn(vni, mac);
    }

    /// A member takes the controller's advert as it is (the controller
    /// decided who holds the MAC and with which seq); adverts of our own VTEP
    /// stay ours.
    pub fn follow_advert(&mut self, a: &MacAdvert, origin: &NodeId, now: Duration) -> Applied {
        let route = route_of(a, self.origin_of(a, origin));
        let outcome = self.table.force_advert(&route, now);
        self.applied_advert(a, outcome)
    }

    /// A member takes the controller's withdrawal as it is.
    pub fn follow_withdraw(&mut self, w: &MacWithdraw, now: Duration) -> Applied {
        let outcome = self.table.force_withdraw(&to_table_withdraw(w), now);
        self.applied_withdraw(w, outcome)
    }

    /// A member takes the controller's whole table (on every connect): routes
    /// of other VTEPs it no longer lists are withdrawn, the listed ones
    /// installed as they are. Our own routes it does not list stay (claims
    /// the controller has not confirmed yet).
    pub fn follow_full_sync(
        &mut self,
        origin: &NodeId,
        entries: &[MacAdvert],
        now: Duration,
    ) -> Applied {
        let keep: BTreeSet<(u32, MacAddr)> = entries.iter().map(|e| (e.vni, e.mac)).collect();
        let mut applied = Applied::default();
        let stale: Vec<MacRoute> = self
            .table
            .full_table()
            .into_iter()
            .filter(|r| r.vtep != self.my_vtep && !keep.contains(&(r.vni, r.mac)))
            .collect();
        for r in stale {
            applied.extend(self.follow_withdraw(&advert_of(&r).withdrawal(), now));
        }
        for e in entries {
            applied.extend(self.follow_advert(e, origin, now));
        }
        applied
    }

    fn applied_advert(&self, a: &MacAdvert, outcome: Outcome) -> Applied {
        let relay = match outcome {
            Outcome::Installed { .. } | Outcome::Moved { .. } | Outcome::Refreshed { .. } => {
                vec![Relay::Advert(*a)]
            }
            Outcome::Removed { .. } | Outcome::Ignored(_) => Vec::new(),
        };
        let left = match outcome {
            Outcome::Moved { from, to }
                if from == self.my_vtep
                    && to != self.my_vtep
                    && self.local.contains(&(a.vni, a.mac)) =>
            {
                vec![(a.vni, a.mac)]
            }
            _ => Vec::new(),
        };
        Applied {
            relay,
            fdb: self.fdb_change(a.vni, a.mac, outcome),
            left,
        }
    }

    fn applied_withdraw(&self, w: &MacWithdraw, outcome: Outcome) -> Applied {
        let relay = match outcome {
            Outcome::Removed { .. } => vec![Relay::Withdraw(*w)],
            _ => Vec::new(),
        };
        Applied {
            relay,
            fdb: self.fdb_change(w.vni, w.mac, outcome),
            left: Vec::new(),
        }
    }

    /// The installed route of `mac` on `vni`, if any.
    #[must_use]
    pub fn get(&self, vni: u32, mac: MacAddr) -> Option<MacAdvert> {
        self.table.get(vni, mac).as_ref().map(advert_of)
    }

    /// The withdrawn `(vtep, seq)` remembered for `mac` on `vni`.
    #[must_use]
    pub fn tombstone(&self, vni: u32, mac: MacAddr) -> Option<(Ipv4Addr, u32)> {
        self.table.tombstone(vni, mac)
    }

    /// Live routes behind `vtep` on `vni`.
    #[must_use]
    pub fn live_count(&self, vtep: Ipv4Addr, vni: u32) -> u32 {
        self.table.live_count(vtep, vni)
    }

    /// Forgets tombstones older than `keep`; returns how many went.
    pub fn purge_withdrawn(&mut self, now: Duration, keep: Duration) -> usize {
        self.table.purge_withdrawn(now, keep)
    }

    /// The MACs seen on this node's bridges (or claimed) at the last look.
    #[must_use]
    pub fn local_macs(&self) -> &BTreeSet<(u32, MacAddr)> {
        &self.local
    }

    /// Withdraws everything behind `vtep` (a removed member).
    pub fn withdraw_vtep(&mut self, vtep: Ipv4Addr, now: Duration) -> Applied {
        let seqs: BTreeMap<(u32, MacAddr), u32> = self
            .table
            .full_table()
            .into_iter()
            .filter(|r| r.vtep == vtep)
            .map(|r| ((r.vni, r.mac), r.seq))
            .collect();
        let removed = self.table.withdraw_all_from(vtep, now);
        let mut applied = Applied::default();
        for (vni, mac, _) in removed {
            applied.relay.push(Relay::Withdraw(MacWithdraw {
                vni,
                mac,
                vtep,
                seq: seqs.get(&(vni, mac)).copied().unwrap_or(0),
            }));
            applied.fdb.push(FdbChange::Remove { vni, mac });
        }
        applied
    }

    /// Every live route, for a full sync, limited to `vnis` (all if `None`).
    #[must_use]
    pub fn routes(&self, vnis: Option<&BTreeSet<u32>>) -> Vec<MacAdvert> {
        self.table
            .full_table()
            .iter()
            .filter(|r| vnis.is_none_or(|v| v.contains(&r.vni)))
            .map(advert_of)
            .collect()
    }

    /// The routes this node originated (its local MACs).
    #[must_use]
    pub fn local_routes(&self) -> Vec<MacAdvert> {
        self.table
            .full_table()
            .iter()
            .filter(|r| r.vtep == self.my_vtep)
            .map(advert_of)
            .collect()
    }

    /// The FDB entries the data plane should hold: every route to another
    /// VTEP.
    #[must_use]
    pub fn fdb_entries(&self) -> Vec<FdbChange> {
        self.table
            .full_table()
            .into_iter()
            .filter(|r| r.vtep != self.my_vtep)
            .map(|r| FdbChange::Install {
                vni: r.vni,
                mac: r.mac,
                vtep: r.vtep,
            })
            .collect()
    }

    /// MACs frozen as duplicates (RFC 7432 §15.1: too many moves in the
    /// window, e.g. two live copies of one VM): they stay where they are
    /// until the freeze ends.
    #[must_use]
    pub fn frozen(&self, now: Duration) -> Vec<FrozenMac> {
        self.table.frozen(now)
    }

    /// Number of live routes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.full_table().len()
    }

    /// Whether no route is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn fdb_change(&self, vni: u32, mac: MacAddr, outcome: Outcome) -> Vec<FdbChange> {
        match outcome {
            Outcome::Installed { vtep } | Outcome::Moved { to: vtep, .. }
                if vtep != self.my_vtep =>
            {
                vec![FdbChange::Install { vni, mac, vtep }]
            }
            Outcome::Installed { .. } | Outcome::Moved { .. } | Outcome::Removed { .. } => {
                vec![FdbChange::Remove { vni, mac }]
            }
            Outcome::Refreshed { .. } | Outcome::Ignored(_) => Vec::new(),
        }
    }
}

fn to_table_withdraw(w: &MacWithdraw) -> mobility::MacWithdraw {
    mobility::MacWithdraw {
        vni: w.vni,
        mac: w.mac,
        vtep: w.vtep,
        seq: w.seq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const T: Duration = Duration::from_secs(1);

    fn set(items: &[(u32, MacAddr)]) -> BTreeSet<(u32, MacAddr)> {
        items.iter().copied().collect()
    }

    #[test]
    fn local_macs_are_advertised_and_withdrawn() {
        let mut book = MacBook::new("a", A);
        let d = book.observe_local(&set(&[(100, MAC)]), T);
        assert_eq!(
            d.adverts,
            [MacAdvert {
                vni: 100,
                mac: MAC,
                vtep: A,
                seq: 0
            }]
        );
        assert!(d.withdraws.is_empty() && d.fdb.is_empty());
        assert_eq!(
            book.observe_local(&set(&[(100, MAC)]), T),
            LocalDelta::default()
        );
        let d = book.observe_local(&set(&[]), T);
        assert_eq!(
            d.withdraws,
            [MacWithdraw {
                vni: 100,
                mac: MAC,
                vtep: A,
                seq: 0
            }]
        );
        assert!(book.is_empty());
    }

    fn advert(mac: MacAddr, vtep: Ipv4Addr, seq: u32) -> MacAdvert {
        MacAdvert {
            vni: 100,
            mac,
            vtep,
            seq,
        }
    }

    #[test]
    fn a_move_here_advertises_the_next_sequence_and_drops_the_remote_entry() {
        let mut book = MacBook::new("a", A);
        let remote = advert(MAC, B, 3);
        let applied = book.advert(&remote, &NodeId::new("b"), T);
        assert_eq!(
            applied.fdb,
            [FdbChange::Install {
                vni: 100,
                mac: MAC,
                vtep: B
            }]
        );
        assert_eq!(applied.relay, [Relay::Advert(remote)]);
        let d = book.observe_local(&set(&[(100, MAC)]), T);
        assert_eq!(d.adverts[0].seq, 4);
        assert_eq!(d.fdb, [FdbChange::Remove { vni: 100, mac: MAC }]);
        // B's late withdrawal of seq 3 does not undo the move.
        let late = MacWithdraw {
            vni: 100,
            mac: MAC,
            vtep: B,
            seq: 3,
        };
        assert_eq!(book.withdraw(&late, T), Applied::default());
    }

    #[test]
    fn a_claim_is_local_until_it_expires_or_is_observed() {
        let mut book = MacBook::new("a", A);
        book.advert(&advert(MAC, B, 2), &NodeId::new("b"), T);
        book.claim(100, MAC, Duration::from_mins(1));
        let d = book.observe_local(&set(&[]), T);
        assert_eq!(d.adverts, [advert(MAC, A, 3)]);
        // Still claimed a little later; withdrawn once the claim expires.
        assert_eq!(
            book.observe_local(&set(&[]), Duration::from_secs(30)),
            LocalDelta::default()
        );
        let d = book.observe_local(&set(&[]), Duration::from_secs(61));
        assert_eq!(d.withdraws.len(), 1);
        // Observed by the bridge, the claim is dropped and the MAC stays.
        book.claim(100, MAC, Duration::from_mins(2));
        book.observe_local(&set(&[(100, MAC)]), Duration::from_secs(62));
        let d = book.observe_local(&set(&[(100, MAC)]), Duration::from_secs(200));
        assert_eq!(d, LocalDelta::default());
    }

    #[test]
    fn a_flapping_mac_freezes() {
        let mut book = MacBook::new("a", A);
        let c = Ipv4Addr::new(198, 19, 0, 3);
        for seq in 0..8 {
            let vtep = if seq % 2 == 0 { B } else { c };
            book.advert(&advert(MAC, vtep, seq), &NodeId::new("x"), T);
        }
        let frozen = book.frozen(T);
        assert_eq!(frozen.len(), 1, "{frozen:?}");
        assert_eq!(frozen[0].mac, MAC);
        // Frozen: a further move is refused (no FDB change).
        let applied = book.advert(&advert(MAC, B, 100), &NodeId::new("x"), T);
        assert!(applied.fdb.is_empty(), "{applied:?}");
    }

    #[test]
    fn moving_away_withdraws_nothing_of_ours() {
        let mut book = MacBook::new("a", A);
        book.observe_local(&set(&[(100, MAC)]), T);
        let applied = book.advert(&advert(MAC, B, 1), &NodeId::new("b"), T);
        assert_eq!(
            applied.fdb,
            [FdbChange::Install {
                vni: 100,
                mac: MAC,
                vtep: B
            }]
        );
        let d = book.observe_local(&set(&[]), T);
        assert!(d.withdraws.is_empty(), "{d:?}");
    }

    #[test]
    fn our_own_routes_echoed_back_stay_ours() {
        let mut book = MacBook::new("a", A);
        let ctl = NodeId::new("controller");
        book.advert(&advert(MAC, A, 2), &ctl, T);
        // A full sync from the controller without it does not withdraw it.
        let applied = book.follow_full_sync(&ctl, &[], T);
        assert_eq!(applied, Applied::default());
        assert_eq!(book.local_routes(), [advert(MAC, A, 2)]);
    }

    #[test]
    fn full_sync_replaces_what_the_origin_said() {
        let mut book = MacBook::new("a", A);
        let b = NodeId::new("b");
        let m2 = MacAddr([2, 0, 0, 0, 0, 2]);
        book.advert(&advert(MAC, B, 0), &b, T);
        let applied = book.follow_full_sync(&b, &[advert(m2, B, 0)], T);
        assert_eq!(
            applied.relay,
            [
                Relay::Withdraw(MacWithdraw {
                    vni: 100,
                    mac: MAC,
                    vtep: B,
                    seq: 0
                }),
                Relay::Advert(advert(m2, B, 0))
            ]
        );
        assert_eq!(
            applied.fdb,
            [
                FdbChange::Remove { vni: 100, mac: MAC },
                FdbChange::Install {
                    vni: 100,
                    mac: m2,
                    vtep: B
                }
            ]
        );
        assert_eq!(
            book.fdb_entries(),
            [FdbChange::Install {
                vni: 100,
                mac: m2,
                vtep: B
            }]
        );
    }

    #[test]
    fn a_member_follows_the_controller_even_below_its_own_seq() {
        let mut book = MacBook::new("a", A);
        let ctl = NodeId::new("controller");
        book.follow_advert(&advert(MAC, B, 9), &ctl, T);
        // The controller says C holds it at seq 3: taken as it is.
        let applied = book.follow_advert(&advert(MAC, Ipv4Addr::new(198, 19, 0, 3), 3), &ctl, T);
        assert_eq!(applied.fdb.len(), 1);
        assert_eq!(book.get(100, MAC).map(|r| r.seq), Some(3));
        let applied = book.follow_withdraw(
            &MacWithdraw {
                vni: 100,
                mac: MAC,
                vtep: Ipv4Addr::new(198, 19, 0, 3),
                seq: 0,
            },
            T,
        );
        assert_eq!(applied.fdb, [FdbChange::Remove { vni: 100, mac: MAC }]);
        assert!(book.get(100, MAC).is_none());
    }

    #[test]
    fn a_local_mac_taken_elsewhere_has_left() {
        let mut book = MacBook::new("a", A);
        book.observe_local(&set(&[(100, MAC)]), T);
        let applied = book.advert(&advert(MAC, B, 1), &NodeId::new("b"), T);
        assert_eq!(applied.left, [(100, MAC)]);
        // Not ours in the book any more: a second move is not a departure.
        let applied = book.advert(
            &advert(MAC, Ipv4Addr::new(198, 19, 0, 3), 2),
            &NodeId::new("c"),
            T,
        );
        assert!(applied.left.is_empty());
    }

    #[test]
    fn withdraw_vtep_removes_a_members_routes() {
        let mut book = MacBook::new("a", A);
        book.advert(&advert(MAC, B, 7), &NodeId::new("b"), T);
        let applied = book.withdraw_vtep(B, T);
        assert_eq!(
            applied.relay,
            [Relay::Withdraw(MacWithdraw {
                vni: 100,
                mac: MAC,
                vtep: B,
                seq: 7
            })]
        );
        assert_eq!(applied.fdb, [FdbChange::Remove { vni: 100, mac: MAC }]);
        assert!(book.routes(None).is_empty());
    }
}
