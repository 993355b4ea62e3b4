//! Rate-limited logging of a repeating condition: at most one line per
//! period per key, saying how many lines were left out since the last one.
//!
//! A condition an outsider can trigger at will (a failing `accept`, a refused
//! claim per member and MAC) must not turn into a log flood. The caller asks
//! [`LogLimiter::check`] before logging and logs only on
//! [`Verdict::Log`], quoting its `suppressed` count:
//!
//! ```
//! # use std::time::{Duration, Instant};
//! # use vlnet_dataplane::log_limit::{LogLimiter, Verdict};
//! let mut limiter = LogLimiter::new(Duration::from_secs(10), 1024);
//! if let Verdict::Log { suppressed } = limiter.check("EMFILE", Instant::now()) {
//!     tracing::warn!(suppressed, "accept failed: too many open files");
//! }
//! ```
//!
//! Memory is bounded: the limiter tracks at most `capacity` keys. A new key
//! takes the place of the least recently seen one whose period is over; when
//! every tracked key is still inside its period, the new key is not tracked
//! but shares one overflow slot, rate-limited like a key of its own. So
//! whatever keys arrive, at most `capacity + 1` lines are logged per period.
//!
//! The limiter does no I/O and reads no clock: every call takes `now`.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// What the caller should do with one occurrence of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it, saying that `suppressed` lines about the same key (or, for an
    /// untracked key, about keys the limiter had no room for) were left out
    /// since the last line.
    Log {
        /// Occurrences not logged since the previous line.
        suppressed: u64,
    },
    /// Stay quiet: a line about this key was logged less than a period ago.
    Quiet,
}

/// One key's (or the overflow slot's) state.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// When its last line was logged.
    logged_at: Instant,
    /// When it last occurred (for choosing whom to evict).
    seen_at: Instant,
    /// Occurrences not logged since `logged_at`.
    suppressed: u64,
}

impl Slot {
    fn new(now: Instant) -> Self {
        Self {
            logged_at: now,
            seen_at: now,
            suppressed: 0,
        }
    }

    /// Records an occurrence at `now` and decides whether to log it.
    fn occur(&mut self, now: Instant, period: Duration) -> Verdict {
        self.seen_at = now;
        if now.saturating_duration_since(self.logged_at) >= period {
            let suppressed = std::mem::take(&mut self.suppressed);
            self.logged_at = now;
            Verdict::Log { suppressed }
        } else {
            self.suppressed += 1;
            Verdict::Quiet
        }
    }

    fn period_over(&self, now: Instant, period: Duration) -> bool {
        now.saturating_duration_since(self.logged_at) >= period
    }
}

/// Decides which occurrences of repeating conditions get logged (see the
/// module documentation). Wrap it in a mutex to share it between tasks.
#[derive(Debug)]
pub struct LogLimiter<K> {
    period: Duration,
    capacity: usize,
    slots: HashMap<K, Slot>,
    overflow: Option<Slot>,
}

impl<K: Hash + Eq + Clone> LogLimiter<K> {
    /// A limiter logging each key at most once per `period`, tracking at
    /// most `capacity` keys (at least 1).
    #[must_use]
    pub fn new(period: Duration, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            period,
            capacity,
            slots: HashMap::with_capacity(capacity),
            overflow: None,
        }
    }

    /// Records one occurrence of the condition `key` at `now`; says whether
    /// to log it.
    pub fn check(&mut self, key: K, now: Instant) -> Verdict {
        if let Some(slot) = self.slots.get_mut(&key) {
            return slot.occur(now, self.period);
        }
        if self.slots.len() >= self.capacity && !self.evict_one(now) {
            if let Some(slot) = &mut self.overflow {
                return slot.occur(now, self.period);
            }
            self.overflow = Some(Slot::new(now));
            return Verdict::Log { suppressed: 0 };
        }
        self.slots.insert(key, Slot::new(now));
        Verdict::Log { suppressed: 0 }
    }

    /// Keys tracked now (at most the capacity).
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.slots.len()
    }

    /// Forgets the least recently seen key whose period is over; false if
    /// every key is still inside its period. Lines it had suppressed are
    /// not reported: they were older than a period.
    fn evict_one(&mut self, now: Instant) -> bool {
        let victim = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.period_over(now, self.period))
            .min_by_key(|(_, slot)| slot.seen_at)
            .map(|(key, _)| key.clone());
        match victim {
            Some(key) => {
                self.slots.remove(&key);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(10);

    fn at(base: Instant, secs: u64) -> Instant {
        base + Duration::from_secs(secs)
    }

    #[test]
    fn once_per_period_with_the_count_of_what_was_left_out() {
        let t0 = Instant::now();
        let mut limiter = LogLimiter::new(PERIOD, 8);
        assert_eq!(limiter.check("a", t0), Verdict::Log { suppressed: 0 });
        for s in 1..10 {
            assert_eq!(limiter.check("a", at(t0, s)), Verdict::Quiet, "at {s} s");
        }
        assert_eq!(
            limiter.check("a", at(t0, 10)),
            Verdict::Log { suppressed: 9 }
        );
        assert_eq!(limiter.check("a", at(t0, 11)), Verdict::Quiet);
        // A quiet spell: the next line reports only what happened since.
        assert_eq!(
            limiter.check("a", at(t0, 100)),
            Verdict::Log { suppressed: 1 }
        );
        assert_eq!(
            limiter.check("a", at(t0, 200)),
            Verdict::Log { suppressed: 0 }
        );
    }

    #[test]
    fn keys_are_limited_independently() {
        let t0 = Instant::now();
        let mut limiter = LogLimiter::new(PERIOD, 8);
        assert_eq!(limiter.check(1, t0), Verdict::Log { suppressed: 0 });
        assert_eq!(limiter.check(2, t0), Verdict::Log { suppressed: 0 });
        assert_eq!(limiter.check(1, at(t0, 1)), Verdict::Quiet);
        assert_eq!(limiter.check(3, at(t0, 1)), Verdict::Log { suppressed: 0 });
        assert_eq!(limiter.check(2, at(t0, 2)), Verdict::Quiet);
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_seen_expired_key() {
        let t0 = Instant::now();
        let mut limiter = LogLimiter::new(PERIOD, 2);
        limiter.check("old", t0);
        limiter.check("recent", at(t0, 1));
        assert_eq!(limiter.check("old", at(t0, 5)), Verdict::Quiet);
        // At 12 s both periods are over; "recent" was seen last at 1 s,
        // "old" at 5 s: "recent" goes.
        assert_eq!(
            limiter.check("new", at(t0, 12)),
            Verdict::Log { suppressed: 0 }
        );
        assert_eq!(limiter.tracked(), 2);
        // "old" kept its count of one suppressed line.
        assert_eq!(
            limiter.check("old", at(t0, 13)),
            Verdict::Log { suppressed: 1 }
        );
        // "recent" was forgotten, so it starts afresh.
        assert_eq!(
            limiter.check("recent", at(t0, 24)),
            Verdict::Log { suppressed: 0 }
        );
        assert_eq!(limiter.tracked(), 2);
    }

    #[test]
    fn keys_beyond_a_table_of_live_keys_share_one_rate_limited_slot() {
        let t0 = Instant::now();
        let capacity = 16;
        let mut limiter = LogLimiter::new(PERIOD, capacity);
        // An attacker cycling through 100,000 keys within one period.
        let logged = (0..100_000u32)
            .filter(|k| limiter.check(*k, t0) != Verdict::Quiet)
            .count();
        assert_eq!(logged, capacity + 1, "tracked keys and the overflow slot");
        assert_eq!(limiter.tracked(), capacity);
        // One period later the overflow slot reports everything it held back.
        assert_eq!(
            limiter.check(200_000, at(t0, 10)),
            Verdict::Log { suppressed: 0 },
            "a tracked key's period is over, so the new key takes its place"
        );
        let mut limiter = LogLimiter::new(PERIOD, 1);
        limiter.check(0, t0);
        assert_eq!(limiter.check(1, t0), Verdict::Log { suppressed: 0 });
        for k in 2..50 {
            assert_eq!(limiter.check(k, at(t0, 1)), Verdict::Quiet);
        }
        assert_eq!(limiter.check(0, at(t0, 2)), Verdict::Quiet);
        // Key 0's period is over at 10 s, so key 99 replaces it.
        assert_eq!(
            limiter.check(99, at(t0, 10)),
            Verdict::Log { suppressed: 0 }
        );
        assert_eq!(
            limiter.check(98, at(t0, 11)),
            Verdict::Log { suppressed: 48 },
            "the overflow slot's period is over: it reports the 48 keys it held back"
        );
        assert_eq!(limiter.check(97, at(t0, 12)), Verdict::Quiet);
    }

    #[test]
    fn a_clock_that_goes_backwards_does_not_panic() {
        let earlier = Instant::now();
        let later = earlier + Duration::from_secs(50);
        let mut limiter = LogLimiter::new(PERIOD, 1);
        limiter.check("a", later);
        assert_eq!(limiter.check("a", earlier), Verdict::Quiet);
        assert_eq!(limiter.check("b", earlier), Verdict::Log { suppressed: 0 });
    }
}
