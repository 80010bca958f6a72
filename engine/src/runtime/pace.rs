//! Pacing: each execution's budget of events per second, so that one
//! execution that runs by itself (a loop of inline steps, decisions and
//! short waits, which needs no agent and no caller) cannot take a core or
//! the disk.
//!
//! Every committed event is charged to its execution's [`Bucket`] (a token
//! bucket: [`Pacing::events_per_s`] tokens a second, holding at most
//! [`Pacing::BURST_S`] seconds of them). Only what an execution does by
//! itself waits for the bucket: its continuation (`Trigger::Continue`, after
//! a trigger that entered as many steps as one append carries) and its
//! timers that are due before the bucket is back in credit. Results, signals
//! and commands from outside are never held back: whoever sends them paces
//! them. The wait is a task of its own (`effects`), never a sleep in a loop
//! others share, and no lock is held while it waits: other executions run,
//! and commands (pause, cancel, terminate) reach a paced one at once.
//!
//! Pacing only delays: what an execution does and records is the same
//! however long it waited (the machine never reads this clock). It measures
//! tokio's clock (the machine's real time), not the engine's
//! [`Clock`](crate::clock::Clock), which tests move by hand: the budget is
//! about the machine's resources, not workflow time. Buckets live in
//! memory; after a restart every execution starts with a full one.
//!
//! It must never decide anything about an execution or hold a lock.

use std::time::Duration;

use tokio::time::Instant;

/// How fast one execution may record events, on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Events per second per execution; 0 turns pacing off.
    pub events_per_s: u64,
}

impl Pacing {
    /// The default budget: 1,000 events a second per execution. An ordinary
    /// workflow records tens of events in its whole life (the 10-step
    /// benchmark workflow, 12), far under it; a loop of inline steps that
    /// would record 20,000 a second is held to it: a twentieth of a core
    /// and a few hundred kilobytes of journal a second.
    pub const EVENTS_PER_S_DEFAULT: u64 = 1_000;

    /// How many seconds of budget a bucket holds: an execution that has
    /// been quiet may record this many seconds' worth at once (5,000 events
    /// by default), so a long but finite burst of inline steps is never
    /// slowed.
    pub const BURST_S: u64 = 5;

    /// The longest one wait lasts, however deep the debt (a guard against
    /// absurd settings: at 1 event a second, one append of 1,000 events is
    /// a wait of about 17 minutes).
    pub const WAIT_MAX: Duration = Duration::from_secs(3_600);

    /// No pacing at all.
    pub fn off() -> Pacing {
        Pacing { events_per_s: 0 }
    }

    fn capacity(self) -> f64 {
        self.events_per_s.saturating_mul(Self::BURST_S) as f64
    }
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            events_per_s: Self::EVENTS_PER_S_DEFAULT,
        }
    }
}

/// One execution's token bucket: how many events it may still record now
/// (negative: how far it is ahead of its budget), as of `at`.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub(super) fn full(pacing: Pacing, now: Instant) -> Bucket {
        Bucket {
            tokens: pacing.capacity(),
            at: now,
        }
    }

    /// Refills the bucket for the time since it was last looked at.
    fn refill(&mut self, pacing: Pacing, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * pacing.events_per_s as f64).min(pacing.capacity());
        self.at = self.at.max(now);
    }

    /// Charges `events` recorded at `now`. It may go into debt: the events
    /// are recorded already, and what the execution does by itself next
    /// waits until the debt is paid ([`Bucket::ready_at`]).
    pub(super) fn charge(&mut self, pacing: Pacing, events: u64, now: Instant) {
        if pacing.events_per_s == 0 {
            return;
        }
        self.refill(pacing, now);
        self.tokens -= events as f64;
    }

    /// When the execution may next go on by itself: `None` if now (in
    /// credit, or pacing off), else the moment its debt is paid.
    pub(super) fn ready_at(&mut self, pacing: Pacing, now: Instant) -> Option<Instant> {
        if pacing.events_per_s == 0 {
            return None;
        }
        self.refill(pacing, now);
        if self.tokens >= 0.0 {
            return None;
        }
        let wait_s = -self.tokens / pacing.events_per_s as f64;
        // At least a millisecond, so a debt too small to round to a
        // duration still yields once.
        let wait = Duration::try_from_secs_f64(wait_s)
            .unwrap_or(Pacing::WAIT_MAX)
            .clamp(Duration::from_millis(1), Pacing::WAIT_MAX);
        Some(now.checked_add(wait).unwrap_or(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACING: Pacing = Pacing { events_per_s: 100 };

    #[test]
    fn a_full_bucket_lets_a_burst_through_then_makes_it_wait_its_cost() {
        let t0 = Instant::now();
        let mut bucket = Bucket::full(PACING, t0);
        // Five seconds' worth at once: nothing waits.
        bucket.charge(PACING, 500, t0);
        assert_eq!(bucket.ready_at(PACING, t0), None);
        // 100 more: a second's worth of debt.
        bucket.charge(PACING, 100, t0);
        assert_eq!(
            bucket.ready_at(PACING, t0),
            Some(t0 + Duration::from_secs(1))
        );
        // Half a second later, half of it is paid.
        let half = t0 + Duration::from_millis(500);
        assert_eq!(
            bucket.ready_at(PACING, half),
            Some(half + Duration::from_millis(500))
        );
        // Once paid, nothing waits, and the bucket refills to its capacity
        // and no further.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(bucket.ready_at(PACING, later), None);
        bucket.charge(PACING, 500, later);
        assert_eq!(bucket.ready_at(PACING, later), None);
        bucket.charge(PACING, 1, later);
        assert!(bucket.ready_at(PACING, later).is_some());
    }

    #[test]
    fn a_loop_at_its_budget_waits_about_a_second_per_budget_of_events() {
        let t0 = Instant::now();
        let mut bucket = Bucket::full(PACING, t0);
        let mut now = t0;
        // Charged 100 events at a time, each time going on when allowed:
        // after the burst, one second of waiting per 100 events.
        for _ in 0..15 {
            bucket.charge(PACING, 100, now);
            if let Some(at) = bucket.ready_at(PACING, now) {
                now = at;
            }
        }
        assert_eq!(now.duration_since(t0), Duration::from_secs(10));
    }

    #[test]
    fn no_debt_waits_longer_than_the_longest_wait() {
        let t0 = Instant::now();
        let slow = Pacing { events_per_s: 1 };
        let mut bucket = Bucket::full(slow, t0);
        bucket.charge(slow, u64::MAX, t0);
        assert_eq!(bucket.ready_at(slow, t0), Some(t0 + Pacing::WAIT_MAX));
    }

    #[test]
    fn off_never_waits() {
        let t0 = Instant::now();
        let mut bucket = Bucket::full(Pacing::off(), t0);
        bucket.charge(Pacing::off(), u64::MAX, t0);
        assert_eq!(bucket.ready_at(Pacing::off(), t0), None);
    }
}
