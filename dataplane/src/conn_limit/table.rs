//! The pure part of the connection cap: which connections are live, what
//! each is doing, whom to close to make room, and when each times out.
//!
//! No I/O and no clock: every call that needs the time takes `now`.

use std::collections::BTreeMap;
use std::time::Instant;

use super::Limits;

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the first byte of a request (just accepted, or between
    /// keep-alive requests). Closed after [`Limits::idle_timeout`].
    Idle,
    /// Part of a request has arrived. Closed unless the request is complete
    /// within [`Limits::read_timeout`] of its first byte.
    Reading,
    /// Serving a complete request (or a session that began with one). Never
    /// closed by the table.
    Busy,
}

/// What [`Table::status`] says about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No longer in the table (evicted, timed out or removed).
    Gone,
    /// Serving: no deadline.
    Busy,
    /// Idle or reading: to be closed at this instant.
    Until(Instant),
}

/// The answer to a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission<T> {
    /// It has a slot, `id`; to make room, the connection whose payload is
    /// `evicted` was removed and must be closed.
    Admitted {
        /// The new connection's id.
        id: u64,
        /// The payload of the connection evicted to make room, if any.
        evicted: Option<T>,
    },
    /// Every slot is busy serving: close the new connection at once.
    Refused,
}

#[derive(Debug)]
struct Entry<T> {
    phase: Phase,
    /// When the current phase began (its timeout counts from here).
    phase_since: Instant,
    /// Since when the connection has been without a complete request: its
    /// accept, or the end of its last request. The eviction order.
    waiting_since: Instant,
    payload: T,
}

/// Live connections under a cap, each with a payload of the caller's (the
/// means of telling it to close).
#[derive(Debug)]
pub struct Table<T> {
    limits: Limits,
    next_id: u64,
    entries: BTreeMap<u64, Entry<T>>,
}

impl<T> Table<T> {
    /// An empty table enforcing `limits`.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            next_id: 0,
            entries: BTreeMap::new(),
        }
    }

    /// Live connections.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no connection is live.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A new connection at `now`. Below the cap it is admitted. At the cap
    /// the connection that has waited longest without a complete request
    /// (ties: the older id) is evicted to make room; if every connection is
    /// busy the new one is refused.
    pub fn admit(&mut self, payload: T, now: Instant) -> Admission<T> {
        let mut evicted = None;
        if self.entries.len() >= self.limits.max_conns {
            let victim = self
                .entries
                .iter()
                .filter(|(_, e)| e.phase != Phase::Busy)
                .min_by_key(|(id, e)| (e.waiting_since, **id))
                .map(|(id, _)| *id);
            let Some(victim) = victim else {
                return Admission::Refused;
            };
            evicted = self.entries.remove(&victim).map(|e| e.payload);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(
            id,
            Entry {
                phase: Phase::Idle,
                phase_since: now,
                waiting_since: now,
                payload,
            },
        );
        Admission::Admitted { id, evicted }
    }

    /// Connection `id` enters `phase` at `now` (no-op if it is gone or
    /// already there). Leaving [`Phase::Busy`] starts a new wait for a
    /// request, so the connection goes to the back of the eviction order.
    pub fn set_phase(&mut self, id: u64, phase: Phase, now: Instant) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.phase == phase {
            return;
        }
        if entry.phase == Phase::Busy {
            entry.waiting_since = now;
        }
        entry.phase = phase;
        entry.phase_since = now;
    }

    /// Whether connection `id` is live and in `phase`.
    #[must_use]
    pub fn is_in(&self, id: u64, phase: Phase) -> bool {
        self.entries.get(&id).is_some_and(|e| e.phase == phase)
    }

    /// Connection `id`'s status: gone, busy, or the instant it times out.
    #[must_use]
    pub fn status(&self, id: u64) -> Status {
        match self.entries.get(&id) {
            None => Status::Gone,
            Some(e) => match e.phase {
                Phase::Busy => Status::Busy,
                Phase::Idle => Status::Until(e.phase_since + self.limits.idle_timeout),
                Phase::Reading => Status::Until(e.phase_since + self.limits.read_timeout),
            },
        }
    }

    /// Removes connection `id`, returning its payload if it was live.
    pub fn remove(&mut self, id: u64) -> Option<T> {
        self.entries.remove(&id).map(|e| e.payload)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LIMITS: Limits = Limits {
        max_conns: 3,
        idle_timeout: Duration::from_secs(30),
        read_timeout: Duration::from_secs(5),
    };

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn admitted(admission: Admission<&'static str>) -> (u64, Option<&'static str>) {
        match admission {
            Admission::Admitted { id, evicted } => (id, evicted),
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn below_the_cap_everyone_is_admitted() {
        let t0 = Instant::now();
        let mut table = Table::new(LIMITS);
        assert!(table.is_empty());
        for (n, name) in ["a", "b", "c"].into_iter().enumerate() {
            assert_eq!(admitted(table.admit(name, t0)), (n as u64, None));
        }
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_is_evicted() {
        let t0 = Instant::now();
        let mut table = Table::new(LIMITS);
        let a = admitted(table.admit("a", at(t0, 0))).0;
        let b = admitted(table.admit("b", at(t0, 1))).0;
        let _c = admitted(table.admit("c", at(t0, 2))).0;
        // "a" is serving; "b" started a request (still the older waiter).
        table.set_phase(a, Phase::Busy, at(t0, 3));
        table.set_phase(b, Phase::Reading, at(t0, 4));
        let (d, evicted) = admitted(table.admit("d", at(t0, 5)));
        assert_eq!(evicted, Some("b"), "the oldest without a complete request");
        assert_eq!(table.status(b), Status::Gone);
        assert_eq!(table.len(), 3);
        // Next in line: "c" (waiting since 2), then "d" (since 5).
        assert_eq!(admitted(table.admit("e", at(t0, 6))).1, Some("c"));
        assert_eq!(admitted(table.admit("f", at(t0, 7))).1, Some("d"));
        assert!(table.is_in(a, Phase::Busy), "the busy one is never evicted");
        assert_eq!(table.status(d), Status::Gone);
    }

    #[test]
    fn a_connection_back_from_busy_waits_at_the_end_of_the_line() {
        let t0 = Instant::now();
        let mut table = Table::new(LIMITS);
        let a = admitted(table.admit("a", at(t0, 0))).0;
        admitted(table.admit("b", at(t0, 1)));
        admitted(table.admit("c", at(t0, 2)));
        // "a" served a request that ended at 10: it now waits since 10.
        table.set_phase(a, Phase::Busy, at(t0, 3));
        table.set_phase(a, Phase::Idle, at(t0, 10));
        assert_eq!(admitted(table.admit("d", at(t0, 11))).1, Some("b"));
        assert_eq!(admitted(table.admit("e", at(t0, 12))).1, Some("c"));
        assert_eq!(admitted(table.admit("f", at(t0, 13))).1, Some("a"));
    }

    #[test]
    fn with_every_slot_busy_the_new_connection_is_refused() {
        let t0 = Instant::now();
        let mut table = Table::new(LIMITS);
        let ids: Vec<u64> = ["a", "b", "c"]
            .into_iter()
            .map(|n| admitted(table.admit(n, t0)).0)
            .collect();
        for &id in &ids {
            table.set_phase(id, Phase::Busy, t0);
        }
        assert_eq!(table.admit("d", at(t0, 1)), Admission::Refused);
        assert_eq!(table.len(), 3);
        // One finishes: it can be evicted again.
        table.set_phase(ids[1], Phase::Idle, at(t0, 2));
        assert_eq!(admitted(table.admit("d", at(t0, 3))).1, Some("b"));
        // Removing frees a slot without evicting anyone.
        assert_eq!(table.remove(ids[0]), Some("a"));
        assert_eq!(table.remove(ids[0]), None);
        assert_eq!(admitted(table.admit("e", at(t0, 4))).1, None);
    }

    #[test]
    fn deadlines_follow_the_phase() {
        let t0 = Instant::now();
        let mut table = Table::new(LIMITS);
        let a = admitted(table.admit("a", t0)).0;
        assert_eq!(table.status(a), Status::Until(t0 + LIMITS.idle_timeout));
        table.set_phase(a, Phase::Reading, at(t0, 1000));
        assert_eq!(
            table.status(a),
            Status::Until(at(t0, 1000) + LIMITS.read_timeout)
        );
        // More bytes of the same request do not extend the deadline.
        table.set_phase(a, Phase::Reading, at(t0, 2000));
        assert_eq!(
            table.status(a),
            Status::Until(at(t0, 1000) + LIMITS.read_timeout)
        );
        table.set_phase(a, Phase::Busy, at(t0, 3000));
        assert_eq!(table.status(a), Status::Busy);
        table.set_phase(a, Phase::Idle, at(t0, 9000));
        assert_eq!(
            table.status(a),
            Status::Until(at(t0, 9000) + LIMITS.idle_timeout)
        );
        table.remove(a);
        assert_eq!(table.status(a), Status::Gone);
        // Changing a connection that is gone does nothing.
        table.set_phase(a, Phase::Busy, at(t0, 9001));
        assert!(table.is_empty());
    }
}
