//! One speaker's command queue. The agent must never wait on a speaker
//! that waits on it, so it sends without waiting; what the queue may hold
//! is bounded all the same: past its budget ([`BUDGET`] commands: a
//! neighbor that stopped reading, say) the rest is discarded and the
//! session is closed with Cease / Out of Resources (RFC 4486 §4), so that
//! it comes back and gets the full table again. A task feeds the speaker's
//! bounded channel.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::notification::Notification;
use super::speaker::Command;

/// Commands one speaker may have waiting.
pub const BUDGET: usize = 200_000;

/// The agent's end of a speaker's command queue.
#[derive(Debug)]
pub struct CommandQueue {
    tx: mpsc::UnboundedSender<Command>,
    budget: usize,
    waiting: Arc<AtomicUsize>,
    overflowed: Arc<AtomicBool>,
}

impl CommandQueue {
    /// A queue that holds at most `budget` commands, fed to `speaker` by a
    /// task in `tasks`.
    pub fn new(budget: usize, speaker: mpsc::Sender<Command>, tasks: &mut JoinSet<()>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let overflowed = Arc::new(AtomicBool::new(false));
        let (count, flag) = (Arc::clone(&waiting), Arc::clone(&overflowed));
        tasks.spawn(async move {
            while let Some(c) = rx.recv().await {
                count.fetch_sub(1, Ordering::AcqRel);
                let c = if flag.load(Ordering::Acquire) {
                    while rx.try_recv().is_ok() {
                        count.fetch_sub(1, Ordering::AcqRel);
                    }
                    flag.store(false, Ordering::Release);
                    Command::Cease(Notification::out_of_resources())
                } else {
                    c
                };
                if speaker.send(c).await.is_err() {
                    return;
                }
            }
        });
        Self {
            tx,
            budget,
            waiting,
            overflowed,
        }
    }

    /// Queues `c`; past the budget, discards it and has the session reset
    /// (see the module doc). Whether it was queued.
    pub fn send(&self, c: Command) -> bool {
        if self.overflowed.load(Ordering::Acquire) {
            return false;
        }
        if self.waiting.load(Ordering::Acquire) >= self.budget {
            // The feeder sees the flag when it takes the next waiting
            // command (there are `budget` of them).
            self.overflowed.store(true, Ordering::Release);
            tracing::warn!(
                budget = self.budget,
                "EVPN neighbor is not taking its UPDATEs: resetting the session"
            );
            return false;
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(c).is_err() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return false; // the speaker ended (it cannot, short of a panic)
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evpn::notification::CEASE;

    fn update() -> Command {
        Command::Send(netgauze_bgp_pkt::BgpMessage::KeepAlive)
    }

    #[tokio::test]
    async fn past_its_budget_the_queue_resets_the_session_and_then_takes_commands_again() {
        let mut tasks = JoinSet::new();
        let (speaker, mut taken) = mpsc::channel(8);
        let queue = CommandQueue::new(3, speaker, &mut tasks);
        // Nothing has run yet: three commands wait, the fourth is over
        // budget and so is everything after it until the reset.
        let queued: Vec<bool> = (0..8).map(|_| queue.send(update())).collect();
        assert_eq!(
            queued,
            [true, true, true, false, false, false, false, false]
        );
        let first = taken.recv().await;
        assert!(
            matches!(&first, Some(Command::Cease(n)) if (n.code, n.subcode) == (CEASE, 8)),
            "the waiting commands are discarded for a Cease / Out of Resources: {first:?}"
        );
        assert!(taken.try_recv().is_err(), "nothing else");
        assert!(queue.send(update()), "taken again after the reset");
        assert!(matches!(taken.recv().await, Some(Command::Send(_))));
    }
}
