//! The pause after a failed `accept`: doubling from a first delay up to a
//! ceiling, back to the first delay after a success. The EVPN session
//! (`crate::evpn::session`) paces its reconnects with the same sequence.
//!
//! `accept` fails with `EMFILE`, `ENFILE`, `ENOBUFS` or `ENOMEM` while the
//! connection that caused it stays queued, so the listener stays readable:
//! retrying at once spins a core and floods the log. Waiting gives the
//! process time to close descriptors (idle connections time out).

use std::time::Duration;

/// First pause after a failed `accept`.
pub const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// Longest pause: a listener out of descriptors retries once a second, so
/// it serves again within a second of descriptors coming back.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The back-off sequence of one accept loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Default for Backoff {
    /// [`ACCEPT_BACKOFF_FIRST`] doubling to [`ACCEPT_BACKOFF_MAX`].
    fn default() -> Self {
        Self::new(ACCEPT_BACKOFF_FIRST, ACCEPT_BACKOFF_MAX)
    }
}

impl Backoff {
    /// Pauses of `first`, doubling up to `max`.
    #[must_use]
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// A failure: how long to pause before the next attempt.
    pub fn failed(&mut self) -> Duration {
        let pause = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        pause
    }

    /// A success: the next failure pauses for the first delay again.
    pub fn succeeded(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_ceiling_and_resets_on_success() {
        let mut backoff = Backoff::default();
        let ms: Vec<u128> = (0..10).map(|_| backoff.failed().as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        backoff.succeeded();
        assert_eq!(backoff.failed(), Duration::from_millis(10));
        assert_eq!(backoff.failed(), Duration::from_millis(20));
    }
}
