//! Background tasks with an owner: a [`TaskSet`] runs each task in a
//! `task` span named after it, reports a task that ends before it was
//! asked to (returned or panicked), and stops them all on one path
//! ([`TaskSet::shutdown`]): abort, then wait for each, logging any that
//! panicked. The daemon and the control plane each own one.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinError, JoinSet};
use tracing::{info_span, warn, Instrument};

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It returned.
    Returned,
    /// It panicked; the panic's message.
    Panicked(String),
    /// It was aborted (shutdown).
    Aborted,
}

/// Owned background tasks, each named.
#[derive(Debug, Default)]
pub struct TaskSet {
    set: JoinSet<()>,
    names: HashMap<Id, &'static str>,
}

impl TaskSet {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` in the set, inside the span `task{name=...}` (a child of
    /// the caller's span). Tasks that ended meanwhile are reaped (and
    /// reported) first, so that a long-lived set does not grow. Must run
    /// inside a tokio runtime.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.reap();
        let span = info_span!("task", name);
        let handle = self.set.spawn(task.instrument(span));
        self.names.insert(handle.id(), name);
    }

    /// Tasks in the set (running, or ended and not reaped yet).
    #[must_use]
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether the set holds no task.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Waits for the next task to end on its own and reports it; never
    /// resolves while the set is empty (for a `select!` beside a stop
    /// signal).
    pub async fn ended(&mut self) -> (&'static str, Ended) {
        match self.set.join_next_with_id().await {
            Some(joined) => self.report(joined, false),
            None => std::future::pending().await,
        }
    }

    /// Aborts every task and waits for each to end; returns how each ended
    /// (a task that panicked is logged too).
    pub async fn shutdown(mut self) -> Vec<(&'static str, Ended)> {
        self.set.abort_all();
        let mut out = Vec::new();
        while let Some(joined) = self.set.join_next_with_id().await {
            out.push(self.report(joined, true));
        }
        out
    }

    /// Reports the tasks that ended without blocking.
    fn reap(&mut self) {
        while let Some(joined) = self.set.try_join_next_with_id() {
            self.report(joined, false);
        }
    }

    fn report(
        &mut self,
        joined: Result<(Id, ()), JoinError>,
        stopping: bool,
    ) -> (&'static str, Ended) {
        let (id, ended) = match joined {
            Ok((id, ())) => (id, Ended::Returned),
            Err(e) if e.is_cancelled() => (e.id(), Ended::Aborted),
            Err(e) => {
                let id = e.id();
                let message = panic_message(e);
                (id, Ended::Panicked(message))
            }
        };
        let name = self.names.remove(&id).unwrap_or("?");
        match &ended {
            Ended::Panicked(message) => warn!(task = name, panic = %message, "task panicked"),
            Ended::Returned if !stopping => tracing::debug!(task = name, "task ended"),
            Ended::Returned | Ended::Aborted => {}
        }
        (name, ended)
    }
}

/// The message of a panicked task's payload.
fn panic_message(e: JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(not a string)".to_owned()),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_aborts_the_running_and_reports_the_panicked() {
        let mut set = TaskSet::new();
        set.spawn("forever", std::future::pending());
        set.spawn("short", async {});
        set.spawn("broken", async { panic!("boom") });
        tokio::task::yield_now().await;
        let mut ended = set.shutdown().await;
        ended.sort_by_key(|(name, _)| *name);
        assert_eq!(
            ended,
            [
                ("broken", Ended::Panicked("boom".to_owned())),
                ("forever", Ended::Aborted),
                ("short", Ended::Returned),
            ]
        );
    }

    #[tokio::test]
    async fn a_task_that_ends_on_its_own_is_told_and_reaped() {
        let mut set = TaskSet::new();
        set.spawn("forever", std::future::pending());
        set.spawn("short", async {});
        assert_eq!(set.ended().await, ("short", Ended::Returned));
        assert_eq!(set.len(), 1);
        for _ in 0..3 {
            set.spawn("again", async {});
            tokio::task::yield_now().await;
        }
        // Each spawn reaped the tasks that had ended before it.
        let left = set.len();
        assert_eq!(left, 2, "the running task and the last spawned");
        let ended = set.shutdown().await;
        assert_eq!(ended.len(), left);
        assert!(ended.contains(&("forever", Ended::Aborted)), "{ended:?}");
    }
}
