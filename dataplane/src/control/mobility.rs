//! Where each MAC lives: the MAC-location table under the EVPN MAC Mobility
//! rules of RFC 7432 §15.
//!
//! Every node advertises its local MACs as `(vni, mac, vtep, seq)`. The table
//! keeps, per `(vni, mac)`, the one location that wins:
//! - a higher sequence number wins, compared in serial-number arithmetic
//!   (RFC 1982, as TCP compares sequence numbers): a move after `u32::MAX` is
//!   0, so no sequence number is a dead end (see [`seq_cmp`]);
//! - at an equal sequence number the lower VTEP address wins (§15.1);
//! - a withdrawal removes the location only when it names the installed VTEP
//!   with a sequence number at least the installed one, so a late withdrawal
//!   from the old owner after a move leaves the new location alone (the race of
//!   FRR issue 21472).
//!
//! Removed locations leave a small tombstone holding the withdrawn
//! `(vtep, seq)`, so a late advert that the withdrawal already superseded does
//! not bring the MAC back. Together the rules make the table order
//! independent: every node that receives the same adverts and withdrawals ends
//! in the same state whatever order they arrive in (as long as a withdrawal
//! names a route its owner advertised, and duplicate detection does not fire).
//! [`MobilityTable::purge_withdrawn`] drops old tombstones.
//!
//! # Duplicate MACs (§15.1)
//! A MAC that moves `max_moves` times within `window` (5 moves in 180 s by
//! default, as in FRR) is frozen at the location it reached on the last move:
//! adverts and withdrawals that would move it are [`Reason::Frozen`] until
//! [`MobilityTable::unfreeze`] or until `freeze_for` has passed since it froze
//! (180 s by default; `None` freezes until `unfreeze`). Moves that were refused
//! while frozen are not remembered: after a thaw the current owner must
//! advertise again. The window is fixed, as in FRR: it opens at the first move
//! and closes `window` later, when the count starts again.
//!
//! The table does no I/O and reads no clock: every call that needs the time
//! takes `now`, a monotonic [`Duration`] since an epoch the caller picks (for
//! example the daemon's start), kept to whole seconds.
//!
//! # Memory
//! An entry is 20 bytes plus a 12-byte key (see the size test), so a hash map
//! bucket is 32 bytes: well under 200 bytes per MAC at 10,000 MACs and 1000
//! members. Origins are interned once per node, not stored per MAC.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use crate::mac::MacAddr;

/// The name of a node (or client) that originates adverts. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// A node id from its name.
    #[must_use]
    pub fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }

    /// The node's name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for NodeId {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An advert: `mac` in `vni` lives behind `vtep`, at sequence number `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacRoute {
    /// The VXLAN network the MAC belongs to.
    pub vni: u32,
    /// The MAC address.
    pub mac: MacAddr,
    /// The VTEP the MAC is reached through.
    pub vtep: Ipv4Addr,
    /// The MAC Mobility sequence number; a move advertises one more.
    pub seq: u32,
    /// The node that sent the advert.
    pub origin: NodeId,
}

/// A withdrawal: `vtep` no longer has `mac` in `vni`, as of `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacWithdraw {
    /// The VXLAN network the MAC belongs to.
    pub vni: u32,
    /// The MAC address.
    pub mac: MacAddr,
    /// The VTEP withdrawing the MAC.
    pub vtep: Ipv4Addr,
    /// The sequence number of the route being withdrawn.
    pub seq: u32,
}

/// What an advert or withdrawal changed, for the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The MAC was unknown (or withdrawn) and now lives behind `vtep`.
    Installed {
        /// The new location.
        vtep: Ipv4Addr,
    },
    /// The MAC moved.
    Moved {
        /// The old location.
        from: Ipv4Addr,
        /// The new location.
        to: Ipv4Addr,
    },
    /// Same location, newer sequence number: nothing to do in the data plane.
    Refreshed {
        /// The (unchanged) location.
        vtep: Ipv4Addr,
    },
    /// The MAC no longer has a location.
    Removed {
        /// The location it had.
        vtep: Ipv4Addr,
    },
    /// Nothing changed.
    Ignored(Reason),
}

/// Why an advert or withdrawal changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Older than what the table holds.
    Stale,
    /// Exactly what the table holds already.
    Duplicate,
    /// The MAC is frozen as a duplicate (§15.1) and may not move.
    Frozen,
    /// A withdrawal from a VTEP that is not the MAC's current location.
    NotOwner,
    /// A withdrawal for a MAC with no location (remembered as a tombstone).
    Unknown,
}

/// Duplicate-MAC detection (RFC 7432 §15.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DupDetection {
    /// Moves within `window` that freeze the MAC (FRR: 5).
    pub max_moves: u8,
    /// The detection window (FRR: 180 s).
    pub window: Duration,
    /// How long a MAC stays frozen; `None` until [`MobilityTable::unfreeze`].
    pub freeze_for: Option<Duration>,
}

impl Default for DupDetection {
    fn default() -> Self {
        Self {
            max_moves: 5,
            window: Duration::from_mins(3),
            freeze_for: Some(Duration::from_mins(3)),
        }
    }
}

/// How a [`MobilityTable`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MobilityConfig {
    /// Duplicate-MAC detection; `None` turns it off.
    pub dup_detection: Option<DupDetection>,
}

impl Default for MobilityConfig {
    fn default() -> Self {
        Self {
            dup_detection: Some(DupDetection::default()),
        }
    }
}

/// A MAC frozen by duplicate detection, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrozenMac {
    /// The VXLAN network.
    pub vni: u32,
    /// The MAC address.
    pub mac: MacAddr,
    /// Where it is frozen.
    pub vtep: Ipv4Addr,
    /// When it froze (the caller's `now` at the time).
    pub since: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Live,
    Frozen,
    Withdrawn,
}

/// One MAC's state; kept small (see the size test).
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The location, or for a tombstone the withdrawn one.
    vtep: Ipv4Addr,
    seq: u32,
    /// Index into `MobilityTable::origins`.
    origin: u32,
    /// Live: start of the detection window; frozen: when it froze;
    /// withdrawn: when it was withdrawn. Whole seconds.
    since: u32,
    /// Moves in the current detection window.
    moves: u8,
    state: State,
}

/// Origin index of a tombstone created by a withdrawal for an unknown MAC.
const NO_ORIGIN: u32 = u32::MAX;

type Key = (u32, MacAddr);

/// Compares two sequence numbers in serial-number arithmetic (RFC 1982):
/// `a` is newer than `b` when it is at most 2^31 - 1 steps ahead of it,
/// wrapping. Two numbers exactly 2^31 apart are incomparable and count as
/// `Less` both ways, so neither replaces the other.
#[must_use]
pub fn seq_cmp(a: u32, b: u32) -> Ordering {
    match a.wrapping_sub(b) {
        0 => Ordering::Equal,
        d if d < 1 << 31 => Ordering::Greater,
        _ => Ordering::Less,
    }
}

/// A route's standing: its seq, its VTEP, and whether it is a withdrawal.
#[derive(Debug, Clone, Copy)]
struct Rank {
    seq: u32,
    vtep: Ipv4Addr,
    withdrawn: bool,
}

impl Rank {
    /// The order in which routes win: newer seq, then lower VTEP, and a
    /// withdrawal above the advert it withdraws.
    fn cmp(&self, other: &Rank) -> Ordering {
        seq_cmp(self.seq, other.seq)
            .then_with(|| other.vtep.cmp(&self.vtep))
            .then_with(|| self.withdrawn.cmp(&other.withdrawn))
    }
}

fn rank(seq: u32, vtep: Ipv4Addr, withdrawn: bool) -> Rank {
    Rank {
        seq,
        vtep,
        withdrawn,
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

impl Entry {
    fn rank(&self) -> Rank {
        rank(self.seq, self.vtep, self.state == State::Withdrawn)
    }

    fn withdraw(&mut self, vtep: Ipv4Addr, seq: u32, now: u32) {
        self.vtep = vtep;
        self.seq = seq;
        self.since = now;
        self.moves = 0;
        self.state = State::Withdrawn;
    }

    /// Thaws a frozen entry whose freeze has run out.
    fn thaw_if_due(&mut self, dad: Option<&DupDetection>, now: u32) {
        if self.state != State::Frozen {
            return;
        }
        if let Some(limit) = dad.and_then(|d| d.freeze_for) {
            if now.saturating_sub(self.since) >= secs(limit) {
                self.state = State::Live;
                self.moves = 0;
                self.since = now;
            }
        }
    }

    /// Counts a move and freezes the entry if it moved too often.
    fn note_move(&mut self, dad: Option<&DupDetection>, now: u32) {
        let Some(d) = dad else { return };
        if self.moves == 0 || now.saturating_sub(self.since) > secs(d.window) {
            self.since = now;
            self.moves = 1;
        } else {
            self.moves = self.moves.saturating_add(1);
        }
        if self.moves >= d.max_moves {
            self.state = State::Frozen;
            self.since = now;
        }
    }
}

/// The MAC-location table of one node. Pure: no I/O, no clock.
#[derive(Debug, Clone)]
pub struct MobilityTable {
    local: NodeId,
    config: MobilityConfig,
    entries: HashMap<Key, Entry>,
    origins: Vec<NodeId>,
    origin_ids: HashMap<NodeId, u32>,
    /// Live (installed or frozen) routes per `(vtep, vni)`: what a member
    /// holds, for quotas.
    live: HashMap<(Ipv4Addr, u32), u32>,
}

impl MobilityTable {
    /// An empty table for the node `local` (the origin of its own adverts).
    #[must_use]
    pub fn new(local: NodeId, config: MobilityConfig) -> Self {
        Self {
            local,
            config,
            entries: HashMap::new(),
            origins: Vec::new(),
            origin_ids: HashMap::new(),
            live: HashMap::new(),
        }
    }

    /// Live routes behind `vtep` on `vni`.
    #[must_use]
    pub fn live_count(&self, vtep: Ipv4Addr, vni: u32) -> u32 {
        self.live.get(&(vtep, vni)).copied().unwrap_or(0)
    }

    /// Keeps [`live_count`](Self::live_count) in step with what an outcome
    /// changed on `vni`.
    fn count(&mut self, vni: u32, outcome: Outcome) {
        let mut add = |vtep: Ipv4Addr, up: bool| {
            let n = self.live.entry((vtep, vni)).or_insert(0);
            *n = if up { *n + 1 } else { n.saturating_sub(1) };
            if *n == 0 {
                self.live.remove(&(vtep, vni));
            }
        };
        match outcome {
            Outcome::Installed { vtep } => add(vtep, true),
            Outcome::Moved { from, to } => {
                add(from, false);
                add(to, true);
            }
            Outcome::Removed { vtep } => add(vtep, false),
            Outcome::Refreshed { .. } | Outcome::Ignored(_) => {}
        }
    }

    /// The table's configuration.
    #[must_use]
    pub fn config(&self) -> &MobilityConfig {
        &self.config
    }

    fn intern(&mut self, origin: &NodeId) -> u32 {
        if let Some(&id) = self.origin_ids.get(origin) {
            return id;
        }
        // More than u32::MAX - 1 distinct origins cannot happen in a cluster;
        // should it, they share the last slot rather than fail.
        let id = u32::try_from(self.origins.len())
            .unwrap_or(NO_ORIGIN - 1)
            .min(NO_ORIGIN - 1);
        if id as usize == self.origins.len() {
            self.origins.push(origin.clone());
        }
        self.origin_ids.insert(origin.clone(), id);
        id
    }

    fn route(&self, key: Key, e: &Entry) -> MacRoute {
        let origin = self
            .origins
            .get(e.origin as usize)
            .cloned()
            .unwrap_or_else(|| self.local.clone());
        MacRoute {
            vni: key.0,
            mac: key.1,
            vtep: e.vtep,
            seq: e.seq,
            origin,
        }
    }

    /// Applies an advert received from a peer (or made locally).
    pub fn apply_advert(&mut self, route: &MacRoute, now: Duration) -> Outcome {
        let outcome = self.advert_outcome(route, now);
        self.count(route.vni, outcome);
        outcome
    }

    fn advert_outcome(&mut self, route: &MacRoute, now: Duration) -> Outcome {
        let now = secs(now);
        let origin = self.intern(&route.origin);
        let dad = self.config.dup_detection.as_ref();
        let key = (route.vni, route.mac);
        let fresh = Entry {
            vtep: route.vtep,
            seq: route.seq,
            origin,
            since: now,
            moves: 0,
            state: State::Live,
        };
        let Some(e) = self.entries.get_mut(&key) else {
            self.entries.insert(key, fresh);
            return Outcome::Installed { vtep: route.vtep };
        };
        e.thaw_if_due(dad, now);
        match rank(route.seq, route.vtep, false).cmp(&e.rank()) {
            Ordering::Less => Outcome::Ignored(Reason::Stale),
            Ordering::Equal => Outcome::Ignored(Reason::Duplicate),
            Ordering::Greater => {
                if e.state == State::Withdrawn {
                    *e = fresh;
                    Outcome::Installed { vtep: route.vtep }
                } else if e.vtep == route.vtep {
                    e.seq = route.seq;
                    e.origin = origin;
                    Outcome::Refreshed { vtep: route.vtep }
                } else if e.state == State::Frozen {
                    Outcome::Ignored(Reason::Frozen)
                } else {
                    let from = e.vtep;
                    e.vtep = route.vtep;
                    e.seq = route.seq;
                    e.origin = origin;
                    e.note_move(dad, now);
                    Outcome::Moved {
                        from,
                        to: route.vtep,
                    }
                }
            }
        }
    }

    /// Applies a withdrawal. It removes the MAC only if it names the installed
    /// VTEP with a seq at least the installed one, or if it withdraws a route
    /// newer than the installed one (its advert has not arrived yet; the
    /// installed location is superseded either way).
    pub fn apply_withdraw(&mut self, w: &MacWithdraw, now: Duration) -> Outcome {
        let outcome = self.withdraw_outcome(w, now);
        self.count(w.vni, outcome);
        outcome
    }

    fn withdraw_outcome(&mut self, w: &MacWithdraw, now: Duration) -> Outcome {
        let now = secs(now);
        let dad = self.config.dup_detection.as_ref();
        let key = (w.vni, w.mac);
        let Some(e) = self.entries.get_mut(&key) else {
            self.entries.insert(
                key,
                Entry {
                    vtep: w.vtep,
                    seq: w.seq,
                    origin: NO_ORIGIN,
                    since: now,
                    moves: 0,
                    state: State::Withdrawn,
                },
            );
            return Outcome::Ignored(Reason::Unknown);
        };
        e.thaw_if_due(dad, now);
        let newer = rank(w.seq, w.vtep, true).cmp(&e.rank());
        if e.state == State::Withdrawn {
            return match newer {
                Ordering::Less => Outcome::Ignored(Reason::Stale),
                Ordering::Equal => Outcome::Ignored(Reason::Duplicate),
                Ordering::Greater => {
                    e.withdraw(w.vtep, w.seq, now);
                    Outcome::Ignored(Reason::Unknown)
                }
            };
        }
        let installed = e.vtep;
        if w.vtep == installed {
            if seq_cmp(w.seq, e.seq) == Ordering::Less {
                return Outcome::Ignored(Reason::Stale);
            }
        } else if newer == Ordering::Less {
            return Outcome::Ignored(Reason::NotOwner);
        } else if e.state == State::Frozen {
            return Outcome::Ignored(Reason::Frozen);
        }
        e.withdraw(w.vtep, w.seq, now);
        Outcome::Removed { vtep: installed }
    }

    /// The advert to send when this node sees `mac` locally behind `my_vtep`:
    /// one more than the installed seq (0 if unknown), applied to the table.
    /// If the MAC is already here, the current route (nothing to bump).
    ///
    /// The next seq wraps from `u32::MAX` to 0 (serial arithmetic).
    ///
    /// # Errors
    /// [`Reason::Frozen`] if the MAC is frozen elsewhere.
    pub fn local_move(
        &mut self,
        vni: u32,
        mac: MacAddr,
        my_vtep: Ipv4Addr,
        now: Duration,
    ) -> Result<MacRoute, Reason> {
        let key = (vni, mac);
        let seq = match self.entries.get(&key) {
            None => 0,
            Some(e) if e.state != State::Withdrawn && e.vtep == my_vtep => {
                return Ok(self.route(key, e));
            }
            Some(e) => e.seq.wrapping_add(1),
        };
        let route = MacRoute {
            vni,
            mac,
            vtep: my_vtep,
            seq,
            origin: self.local.clone(),
        };
        match self.apply_advert(&route, now) {
            Outcome::Ignored(reason) => Err(reason),
            _ => Ok(route),
        }
    }

    /// The installed route for `mac` in `vni`, if it has one.
    #[must_use]
    pub fn get(&self, vni: u32, mac: MacAddr) -> Option<MacRoute> {
        let key = (vni, mac);
        self.entries
            .get(&key)
            .filter(|e| e.state != State::Withdrawn)
            .map(|e| self.route(key, e))
    }

    /// The withdrawn `(vtep, seq)` a tombstone remembers for `mac` in `vni`.
    #[must_use]
    pub fn tombstone(&self, vni: u32, mac: MacAddr) -> Option<(Ipv4Addr, u32)> {
        self.entries
            .get(&(vni, mac))
            .filter(|e| e.state == State::Withdrawn)
            .map(|e| (e.vtep, e.seq))
    }

    /// Every installed route, ordered by `(vni, mac)`: what a reconnecting
    /// peer resyncs from.
    #[must_use]
    pub fn full_table(&self) -> Vec<MacRoute> {
        let mut out: Vec<MacRoute> = self
            .entries
            .iter()
            .filter(|(_, e)| e.state != State::Withdrawn)
            .map(|(&k, e)| self.route(k, e))
            .collect();
        out.sort_unstable_by_key(|r| (r.vni, r.mac));
        out
    }

    /// Withdraws every MAC located behind `vtep` (a member was removed), at
    /// its installed seq. Returns what changed, ordered by `(vni, mac)`.
    pub fn withdraw_all_from(
        &mut self,
        vtep: Ipv4Addr,
        now: Duration,
    ) -> Vec<(u32, MacAddr, Outcome)> {
        let now = secs(now);
        let mut out = Vec::new();
        for (&(vni, mac), e) in &mut self.entries {
            if e.state != State::Withdrawn && e.vtep == vtep {
                e.withdraw(vtep, e.seq, now);
                out.push((vni, mac, Outcome::Removed { vtep }));
            }
        }
        out.sort_unstable_by_key(|&(vni, mac, _)| (vni, mac));
        for &(vni, _, outcome) in &out {
            self.count(vni, outcome);
        }
        out
    }

    /// Installs `route` whatever the table holds (a tombstone, an older or a
    /// newer route): a member takes the controller's word, since the
    /// controller alone decides who holds a MAC. Duplicate detection does not
    /// apply (the controller's table does it).
    pub fn force_advert(&mut self, route: &MacRoute, now: Duration) -> Outcome {
        let origin = self.intern(&route.origin);
        let key = (route.vni, route.mac);
        let fresh = Entry {
            vtep: route.vtep,
            seq: route.seq,
            origin,
            since: secs(now),
            moves: 0,
            state: State::Live,
        };
        let outcome = match self.entries.insert(key, fresh) {
            Some(old) if old.state != State::Withdrawn && old.vtep == route.vtep => {
                if old.seq == route.seq {
                    Outcome::Ignored(Reason::Duplicate)
                } else {
                    Outcome::Refreshed { vtep: route.vtep }
                }
            }
            Some(old) if old.state != State::Withdrawn => Outcome::Moved {
                from: old.vtep,
                to: route.vtep,
            },
            _ => Outcome::Installed { vtep: route.vtep },
        };
        self.count(route.vni, outcome);
        outcome
    }

    /// Removes `w`'s MAC if it is installed behind `w.vtep` (whatever the
    /// seq), leaving a tombstone: the controller's word, as for
    /// [`force_advert`](Self::force_advert).
    pub fn force_withdraw(&mut self, w: &MacWithdraw, now: Duration) -> Outcome {
        let outcome = match self.entries.get_mut(&(w.vni, w.mac)) {
            Some(e) if e.state != State::Withdrawn && e.vtep == w.vtep => {
                e.withdraw(w.vtep, w.seq, secs(now));
                Outcome::Removed { vtep: w.vtep }
            }
            Some(e) if e.state != State::Withdrawn => Outcome::Ignored(Reason::NotOwner),
            _ => Outcome::Ignored(Reason::Unknown),
        };
        self.count(w.vni, outcome);
        outcome
    }

    /// MACs frozen by duplicate detection as of `now`, ordered by `(vni, mac)`.
    #[must_use]
    pub fn frozen(&self, now: Duration) -> Vec<FrozenMac> {
        let now = secs(now);
        let limit = self
            .config
            .dup_detection
            .and_then(|d| d.freeze_for)
            .map(secs);
        let mut out: Vec<FrozenMac> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.state == State::Frozen && limit.is_none_or(|l| now.saturating_sub(e.since) < l)
            })
            .map(|(&(vni, mac), e)| FrozenMac {
                vni,
                mac,
                vtep: e.vtep,
                since: Duration::from_secs(u64::from(e.since)),
            })
            .collect();
        out.sort_unstable_by_key(|f| (f.vni, f.mac));
        out
    }

    /// Lets a frozen MAC move again and restarts its move count. Returns
    /// whether it was frozen.
    pub fn unfreeze(&mut self, vni: u32, mac: MacAddr, now: Duration) -> bool {
        match self.entries.get_mut(&(vni, mac)) {
            Some(e) if e.state == State::Frozen => {
                e.state = State::Live;
                e.moves = 0;
                e.since = secs(now);
                true
            }
            _ => false,
        }
    }

    /// Forgets the tombstone of `mac` on `vni`, if it has one (for a source
    /// that delivers in order, e.g. one BGP session: a route withdrawn and
    /// advertised again as it was is a new route, not a late one).
    pub fn forget_withdrawn(&mut self, vni: u32, mac: MacAddr) {
        if self
            .entries
            .get(&(vni, mac))
            .is_some_and(|e| e.state == State::Withdrawn)
        {
            self.entries.remove(&(vni, mac));
        }
    }

    /// Forgets tombstones of MACs withdrawn more than `keep` before `now`.
    /// Returns how many were dropped. Keep them longer than adverts can be
    /// delayed, or a late stale advert can bring a MAC back.
    pub fn purge_withdrawn(&mut self, now: Duration, keep: Duration) -> usize {
        let (now, keep) = (secs(now), secs(keep));
        let before = self.entries.len();
        self.entries
            .retain(|_, e| e.state != State::Withdrawn || now.saturating_sub(e.since) <= keep);
        before - self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Reverse;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const C: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
    const VNI: u32 = 100;

    fn t(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn adv(vtep: Ipv4Addr, seq: u32) -> MacRoute {
        MacRoute {
            vni: VNI,
            mac: MAC,
            vtep,
            seq,
            origin: NodeId::new(&format!("node-{vtep}")),
        }
    }

    fn wd(vtep: Ipv4Addr, seq: u32) -> MacWithdraw {
        MacWithdraw {
            vni: VNI,
            mac: MAC,
            vtep,
            seq,
        }
    }

    fn table() -> MobilityTable {
        MobilityTable::new(NodeId::new("me"), MobilityConfig::default())
    }

    fn no_dad() -> MobilityTable {
        MobilityTable::new(
            NodeId::new("me"),
            MobilityConfig {
                dup_detection: None,
            },
        )
    }

    fn loc(t: &MobilityTable) -> Option<(Ipv4Addr, u32)> {
        t.get(VNI, MAC).map(|r| (r.vtep, r.seq))
    }

    #[test]
    fn a_forgotten_tombstone_lets_the_same_route_back() {
        let mut m = table();
        m.apply_advert(&adv(B, 0), t(0));
        m.apply_withdraw(&wd(B, 0), t(1));
        assert_eq!(
            m.apply_advert(&adv(B, 0), t(2)),
            Outcome::Ignored(Reason::Stale),
            "the tombstone keeps a late advert out"
        );
        m.forget_withdrawn(VNI, MAC);
        assert_eq!(m.tombstone(VNI, MAC), None);
        assert_eq!(
            m.apply_advert(&adv(B, 0), t(3)),
            Outcome::Installed { vtep: B }
        );
        m.forget_withdrawn(VNI, MAC);
        assert_eq!(loc(&m), Some((B, 0)), "a live location is not forgotten");
    }

    #[test]
    fn entry_stays_small() {
        assert!(std::mem::size_of::<Entry>() <= 20);
        assert!(std::mem::size_of::<(Key, Entry)>() <= 32);
    }

    #[test]
    fn install() {
        let mut m = table();
        assert_eq!(
            m.apply_advert(&adv(B, 0), t(0)),
            Outcome::Installed { vtep: B }
        );
        let r = m.get(VNI, MAC).unwrap();
        assert_eq!((r.vtep, r.seq, r.origin.as_str()), (B, 0, "node-10.0.0.2"));
        assert_eq!(
            m.apply_advert(&adv(B, 0), t(1)),
            Outcome::Ignored(Reason::Duplicate)
        );
        assert_eq!(m.full_table(), vec![adv(B, 0)]);
    }

    #[test]
    fn higher_seq_moves_and_refreshes() {
        let mut m = table();
        m.apply_advert(&adv(A, 0), t(0));
        assert_eq!(
            m.apply_advert(&adv(B, 1), t(1)),
            Outcome::Moved { from: A, to: B }
        );
        assert_eq!(
            m.apply_advert(&adv(B, 2), t(2)),
            Outcome::Refreshed { vtep: B }
        );
        assert_eq!(loc(&m), Some((B, 2)));
    }

    #[test]
    fn lower_seq_ignored() {
        let mut m = table();
        m.apply_advert(&adv(B, 3), t(0));
        assert_eq!(
            m.apply_advert(&adv(A, 2), t(1)),
            Outcome::Ignored(Reason::Stale)
        );
        assert_eq!(loc(&m), Some((B, 3)));
    }

    #[test]
    fn tie_goes_to_lower_vtep() {
        let mut m = table();
        m.apply_advert(&adv(C, 4), t(0));
        assert_eq!(
            m.apply_advert(&adv(A, 4), t(1)),
            Outcome::Moved { from: C, to: A }
        );
        assert_eq!(
            m.apply_advert(&adv(B, 4), t(2)),
            Outcome::Ignored(Reason::Stale)
        );
        assert_eq!(loc(&m), Some((A, 4)));
    }

    #[test]
    fn late_withdrawal_of_old_owner_keeps_new_location() {
        let mut m = table();
        m.apply_advert(&adv(A, 0), t(0));
        m.apply_advert(&adv(B, 1), t(1));
        assert_eq!(
            m.apply_withdraw(&wd(A, 0), t(2)),
            Outcome::Ignored(Reason::NotOwner)
        );
        assert_eq!(loc(&m), Some((B, 1)));
    }

    #[test]
    fn withdrawal_of_current_owner_removes() {
        let mut m = table();
        m.apply_advert(&adv(A, 0), t(0));
        m.apply_advert(&adv(B, 1), t(1));
        assert_eq!(
            m.apply_withdraw(&wd(B, 0), t(2)),
            Outcome::Ignored(Reason::Stale)
        );
        assert_eq!(
            m.apply_withdraw(&wd(B, 1), t(2)),
            Outcome::Removed { vtep: B }
        );
        assert_eq!(loc(&m), None);
        assert!(m.full_table().is_empty());
        // The old owner's advert, arriving late, does not bring it back.
        assert_eq!(
            m.apply_advert(&adv(A, 0), t(3)),
            Outcome::Ignored(Reason::Stale)
        );
        // A real new location does.
        assert_eq!(
            m.apply_advert(&adv(C, 2), t(4)),
            Outcome::Installed { vtep: C }
        );
    }

    #[test]
    fn withdrawal_before_its_advert() {
        let mut m = table();
        assert_eq!(
            m.apply_withdraw(&wd(A, 0), t(0)),
            Outcome::Ignored(Reason::Unknown)
        );
        assert_eq!(
            m.apply_advert(&adv(A, 0), t(1)),
            Outcome::Ignored(Reason::Stale)
        );
        assert_eq!(loc(&m), None);
        assert_eq!(m.purge_withdrawn(t(100), t(60)), 1);
        assert_eq!(
            m.apply_advert(&adv(A, 0), t(101)),
            Outcome::Installed { vtep: A }
        );
    }

    #[test]
    fn duplicate_detection_freezes_after_n_moves_in_window() {
        let mut m = table();
        m.apply_advert(&adv(A, 0), t(0));
        let vteps = [B, A, B, A, B];
        for (i, &v) in vteps.iter().enumerate() {
            let seq = u32::try_from(i).unwrap() + 1;
            assert!(matches!(
                m.apply_advert(&adv(v, seq), t(10 * u64::from(seq))),
                Outcome::Moved { .. }
            ));
        }
        let frozen = m.frozen(t(60));
        assert_eq!(frozen.len(), 1);
        assert_eq!((frozen[0].vtep, frozen[0].since), (B, t(50)));
        assert_eq!(
            m.apply_advert(&adv(A, 6), t(60)),
            Outcome::Ignored(Reason::Frozen)
        );
        assert_eq!(m.local_move(VNI, MAC, C, t(61)), Err(Reason::Frozen));
        // The owner may still refresh.
        assert_eq!(
            m.apply_advert(&adv(B, 7), t(62)),
            Outcome::Refreshed { vtep: B }
        );
        assert!(m.unfreeze(VNI, MAC, t(63)));
        assert!(m.frozen(t(63)).is_empty());
        assert_eq!(
            m.apply_advert(&adv(A, 8), t(64)),
            Outcome::Moved { from: B, to: A }
        );
    }

    #[test]
    fn freeze_runs_out() {
        let mut m = table();
        m.apply_advert(&adv(A, 0), t(0));
        for seq in 1..=5 {
            let v = if seq % 2 == 1 { B } else { A };
            m.apply_advert(&adv(v, seq), t(u64::from(seq)));
        }
        assert_eq!(m.frozen(t(100)).len(), 1);
        assert!(m.frozen(t(5 + 180)).is_empty());
        assert_eq!(
            m.apply_advert(&adv(A, 6), t(5 + 180)),
            Outcome::Moved { from: B, to: A }
        );
    }

    #[test]
    fn duplicate_detection_spares_spread_out_moves() {
        let mut m = table();
        m.apply_advert(&adv(A, 0), t(0));
        for seq in 1..=20 {
            let v = if seq % 2 == 1 { B } else { A };
            assert!(matches!(
                m.apply_advert(&adv(v, seq), t(50 * u64::from(seq))),
                Outcome::Moved { .. }
            ));
        }
        assert!(m.frozen(t(1000)).is_empty());
    }

    #[test]
    fn local_move_bumps_seq() {
        let mut m = table();
        m.apply_advert(&adv(A, 7), t(0));
        let r = m.local_move(VNI, MAC, C, t(1)).unwrap();
        assert_eq!((r.vtep, r.seq, r.origin.as_str()), (C, 8, "me"));
        assert_eq!(loc(&m), Some((C, 8)));
        // Already here: same route, no bump.
        assert_eq!(m.local_move(VNI, MAC, C, t(2)).unwrap().seq, 8);
        // Unknown MAC starts at 0.
        let other = m
            .local_move(VNI, MacAddr([2, 0, 0, 0, 0, 9]), C, t(3))
            .unwrap();
        assert_eq!(other.seq, 0);
    }

    #[test]
    fn sequence_numbers_wrap() {
        assert_eq!(seq_cmp(0, u32::MAX), Ordering::Greater);
        assert_eq!(seq_cmp(u32::MAX, 0), Ordering::Less);
        assert_eq!(seq_cmp(5, 5), Ordering::Equal);
        // Exactly half the circle apart: neither is newer.
        assert_eq!(seq_cmp(0, 1 << 31), Ordering::Less);
        assert_eq!(seq_cmp(1 << 31, 0), Ordering::Less);
        let mut m = table();
        m.apply_advert(&adv(A, u32::MAX), t(0));
        let r = m.local_move(VNI, MAC, C, t(1)).unwrap();
        assert_eq!(r.seq, 0, "the move after u32::MAX is 0");
        assert_eq!(loc(&m), Some((C, 0)));
        // The old owner's u32::MAX is now older.
        assert_eq!(
            m.apply_advert(&adv(A, u32::MAX), t(2)),
            Outcome::Ignored(Reason::Stale)
        );
        assert_eq!(
            m.apply_advert(&adv(B, 1), t(3)),
            Outcome::Moved { from: C, to: B }
        );
    }

    #[test]
    fn live_counts_follow_every_change() {
        let mut m = table();
        let mac2 = MacAddr([2, 0, 0, 0, 0, 2]);
        m.apply_advert(&adv(A, 0), t(0));
        m.apply_advert(
            &MacRoute {
                mac: mac2,
                ..adv(A, 0)
            },
            t(0),
        );
        assert_eq!((m.live_count(A, VNI), m.live_count(B, VNI)), (2, 0));
        m.apply_advert(&adv(B, 1), t(1));
        assert_eq!((m.live_count(A, VNI), m.live_count(B, VNI)), (1, 1));
        m.apply_withdraw(&wd(B, 1), t(2));
        assert_eq!(m.live_count(B, VNI), 0);
        assert_eq!(m.tombstone(VNI, MAC), Some((B, 1)));
        m.force_advert(&adv(C, 0), t(3));
        assert_eq!(m.live_count(C, VNI), 1);
        m.force_advert(&adv(A, 0), t(3));
        assert_eq!((m.live_count(A, VNI), m.live_count(C, VNI)), (2, 0));
        m.force_withdraw(&wd(A, 0), t(4));
        assert_eq!(m.live_count(A, VNI), 1);
        m.withdraw_all_from(A, t(5));
        assert_eq!(m.live_count(A, VNI), 0);
        assert!(m.live.is_empty());
    }

    #[test]
    fn forced_routes_replace_whatever_is_held() {
        let mut m = table();
        m.apply_advert(&adv(A, 9), t(0));
        m.apply_withdraw(&wd(A, 9), t(1));
        // A tombstone at 9 does not keep the controller's route at 3 out.
        assert_eq!(
            m.force_advert(&adv(B, 3), t(2)),
            Outcome::Installed { vtep: B }
        );
        assert_eq!(
            m.force_advert(&adv(C, 1), t(3)),
            Outcome::Moved { from: B, to: C }
        );
        assert_eq!(
            m.force_withdraw(&wd(B, 1), t(4)),
            Outcome::Ignored(Reason::NotOwner)
        );
        assert_eq!(
            m.force_withdraw(&wd(C, 0), t(4)),
            Outcome::Removed { vtep: C }
        );
        assert_eq!(loc(&m), None);
    }

    #[test]
    fn withdraw_all_from_removed_member() {
        let mut m = table();
        let mac2 = MacAddr([2, 0, 0, 0, 0, 2]);
        m.apply_advert(&adv(A, 0), t(0));
        m.apply_advert(
            &MacRoute {
                mac: mac2,
                ..adv(A, 3)
            },
            t(0),
        );
        m.apply_advert(
            &MacRoute {
                vni: 7,
                ..adv(B, 0)
            },
            t(0),
        );
        let out = m.withdraw_all_from(A, t(1));
        assert_eq!(
            out,
            vec![
                (VNI, MAC, Outcome::Removed { vtep: A }),
                (VNI, mac2, Outcome::Removed { vtep: A }),
            ]
        );
        assert_eq!(
            m.full_table(),
            vec![MacRoute {
                vni: 7,
                ..adv(B, 0)
            }]
        );
        // The removed member's late adverts stay out.
        assert_eq!(
            m.apply_advert(&adv(A, 0), t(2)),
            Outcome::Ignored(Reason::Stale)
        );
    }

    #[derive(Debug, Clone, Copy)]
    enum Event {
        Advert(Ipv4Addr, u32),
        Withdraw(Ipv4Addr, u32),
    }

    fn vtep(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, i + 1)
    }

    /// Adverts from a few VTEPs, and withdrawals of some of them (a node
    /// withdraws what it advertised).
    fn events() -> impl Strategy<Value = Vec<Event>> {
        prop::collection::vec((0u8..4, 0u32..4, any::<bool>()), 1..10).prop_map(|spec| {
            let mut ev = Vec::new();
            for (v, seq, withdrawn) in spec {
                ev.push(Event::Advert(vtep(v), seq));
                if withdrawn {
                    ev.push(Event::Withdraw(vtep(v), seq));
                }
            }
            ev
        })
    }

    /// The advert with the highest seq, then lowest VTEP, unless its owner
    /// withdrew it with a seq at least its own.
    fn oracle(events: &[Event]) -> Option<(Ipv4Addr, u32)> {
        let best = events
            .iter()
            .filter_map(|e| match *e {
                Event::Advert(v, s) => Some((v, s)),
                Event::Withdraw(..) => None,
            })
            .max_by_key(|&(v, s)| (s, Reverse(v)))?;
        let withdrawn = events
            .iter()
            .any(|e| matches!(*e, Event::Withdraw(v, s) if v == best.0 && s >= best.1));
        (!withdrawn).then_some(best)
    }

    fn replay(events: &[Event]) -> MobilityTable {
        let mut m = no_dad();
        for (i, e) in events.iter().enumerate() {
            let now = t(i as u64);
            match *e {
                Event::Advert(v, s) => m.apply_advert(&adv(v, s), now),
                Event::Withdraw(v, s) => m.apply_withdraw(&wd(v, s), now),
            };
        }
        m
    }

    proptest! {
        #[test]
        fn any_order_gives_the_oracle(
            (ev, a, b) in events().prop_flat_map(|ev| {
                (Just(ev.clone()), Just(ev.clone()).prop_shuffle(), Just(ev).prop_shuffle())
            })
        ) {
            let want = oracle(&ev);
            prop_assert_eq!(loc(&replay(&ev)), want);
            prop_assert_eq!(loc(&replay(&a)), want);
            prop_assert_eq!(loc(&replay(&b)), want);
        }

        /// Several nodes see the MAC arrive at once and each advertise a move;
        /// once every node has every advert, in any order, they all agree on
        /// the lowest moving VTEP.
        #[test]
        fn concurrent_moves_converge(
            start in 0u32..10,
            (movers, orders) in prop::sample::subsequence(vec![0u8, 1, 2, 3, 4], 1..=5)
                .prop_flat_map(|movers| {
                    let order = Just(movers.clone()).prop_shuffle();
                    (Just(movers), prop::collection::vec(order, 5))
                }),
        ) {
            let old = Ipv4Addr::new(10, 0, 1, 1);
            let mut nodes: Vec<MobilityTable> = (0..5)
                .map(|_| {
                    let mut m = no_dad();
                    m.apply_advert(&adv(old, start), t(0));
                    m
                })
                .collect();
            let mut adverts = HashMap::new();
            for &i in &movers {
                let r = nodes[usize::from(i)].local_move(VNI, MAC, vtep(i), t(1)).unwrap();
                prop_assert_eq!(r.seq, start + 1);
                adverts.insert(i, r);
            }
            for (node, order) in nodes.iter_mut().zip(&orders) {
                for i in order {
                    node.apply_advert(&adverts[i], t(2));
                }
                node.apply_withdraw(&wd(old, start), t(3));
            }
            let winner = vtep(*movers.iter().min().unwrap());
            for node in &nodes {
                prop_assert_eq!(loc(node), Some((winner, start + 1)));
            }
        }
    }
}
