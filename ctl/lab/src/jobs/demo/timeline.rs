//! The demo's progress display and timeline: steps are announced as they
//! start, events are printed as they are seen, and the whole timeline is
//! printed again at the end in time order (events read from the nodes' move
//! records carry the kernel's monotonic clock and are placed by it).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use vlnet_dataplane::fdb::monotonic_ns;

/// Events in the order they happened, timed from the demo's start.
#[derive(Debug)]
pub struct Timeline {
    started: Instant,
    started_mono_ns: u64,
    steps: u32,
    events: Vec<(Duration, String)>,
}

impl Timeline {
    /// A timeline starting now, for a demo of `steps` steps.
    #[must_use]
    pub fn new(steps: u32) -> Self {
        Self {
            started: Instant::now(),
            started_mono_ns: monotonic_ns(),
            steps,
            events: Vec::new(),
        }
    }

    /// Time since the start.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Announces step `n` (progress display; not part of the timeline).
    pub fn step(&self, n: u32, what: &str) {
        println!(
            "[{n}/{}] {what}  ({:.1} s)",
            self.steps,
            self.elapsed().as_secs_f64()
        );
    }

    /// Records `what` as happening now and prints it.
    pub fn event(&mut self, what: impl Into<String>) {
        let at = self.elapsed();
        self.push(at, what.into());
    }

    /// Records `what` as happening at `mono_ns` on `CLOCK_MONOTONIC` (as
    /// the kernel stamps moves) and prints it.
    pub fn event_at_monotonic(&mut self, mono_ns: u64, what: impl Into<String>) {
        let at = Duration::from_nanos(mono_ns.saturating_sub(self.started_mono_ns));
        self.push(at, what.into());
    }

    fn push(&mut self, at: Duration, what: String) {
        println!("      {}  {what}", stamp(at));
        self.events.push((at, what));
    }

    /// The whole timeline in time order.
    #[must_use]
    pub fn render(&self) -> String {
        let mut events: Vec<&(Duration, String)> = self.events.iter().collect();
        events.sort_by_key(|(at, _)| *at);
        let mut out = String::from("== timeline ==\n");
        for (at, what) in events {
            let _ = writeln!(out, "{}  {what}", stamp(*at));
        }
        out
    }
}

/// `  12.345 s`: seconds with millisecond resolution, aligned.
fn stamp(at: Duration) -> String {
    format!("{:8.3} s", at.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_events_in_time_order_whatever_the_order_recorded() {
        let mut t = Timeline::new(3);
        t.event("second");
        t.event_at_monotonic(t.started_mono_ns + 1, "first (kernel clock)");
        t.event_at_monotonic(t.started_mono_ns + 60_000_000_000, "last");
        let text = t.render();
        let first = text.find("first").unwrap();
        let second = text.find("second").unwrap();
        let last = text.find("last").unwrap();
        assert!(first < second && second < last, "{text}");
        assert!(text.contains("   0.000 s  first (kernel clock)"), "{text}");
        assert!(text.contains("  60.000 s  last"), "{text}");
    }

    #[test]
    fn a_kernel_stamp_before_the_start_is_placed_at_zero() {
        let mut t = Timeline::new(1);
        t.event_at_monotonic(0, "early");
        assert!(t.render().contains("   0.000 s  early"));
    }
}
