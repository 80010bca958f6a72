//! How well an agent has done lately ([`Recent`]), and what routing makes
//! of it: its effective slots and its score ([`Score`]).
//!
//! Owns the window of recent results and the two formulas (written out in
//! the module doc of `agents`). Every comparison is exact integer
//! arithmetic, so two calls with the same counts always decide the same
//! way; the floating-point figures are only for people. It must never
//! read a clock or look at a queue: the window moves only when a task the
//! agent held ends.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How many of an agent's most recent ended tasks (settled or timed out)
/// its health is figured from.
pub const HEALTH_WINDOW_TASKS: usize = 20;

/// A task held this long halves the speed factor of the score (one taking
/// `k` times as long divides it by `1 + k`).
pub const HEALTH_LATENCY_UNIT_MS: u64 = 1_000;

/// Another agent's score must exceed the claimer's by this ratio
/// (numerator, denominator: 3/2, so one and a half times) before a task
/// waits for it.
pub const CLEARLY_BETTER: (u128, u128) = (3, 2);

/// What `GET /v1/agents` shows of an agent's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// The ended tasks the figures below are over: the last
    /// [`HEALTH_WINDOW_TASKS`] (fewer at first).
    pub recent_tasks: u32,
    /// How many of them failed (timeouts included).
    pub recent_failures: u32,
    /// Mean time from claim to settle or timeout over them; 0.0 when none.
    pub recent_average_task_ms: f64,
    /// How many tasks it may hold at once now: `max(1, ceil(maxConcurrency
    /// × (1 - recent_failures / 20)))`.
    pub slots: u32,
    /// Routing's score, in `0..=1`: `(1 - recent_failures / 20) / (1 +
    /// recent_average_task_ms / 1000) × free slots / slots`.
    pub score: f64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            recent_tasks: 0,
            recent_failures: 0,
            recent_average_task_ms: 0.0,
            slots: 1,
            score: 1.0,
        }
    }
}

/// The window's size, as a number.
const WINDOW: u64 = HEALTH_WINDOW_TASKS as u64;

/// The outcomes of an agent's last [`HEALTH_WINDOW_TASKS`] ended tasks.
#[derive(Debug, Clone, Default)]
pub(super) struct Recent {
    /// (succeeded, held ms), oldest first.
    results: VecDeque<(bool, u64)>,
    failed: u64,
    held_ms: u128,
}

impl Recent {
    pub(super) fn record(&mut self, succeeded: bool, held_ms: u64) {
        if self.results.len() == HEALTH_WINDOW_TASKS
            && let Some((old_succeeded, old_ms)) = self.results.pop_front()
        {
            self.failed -= u64::from(!old_succeeded);
            self.held_ms -= u128::from(old_ms);
        }
        self.results.push_back((succeeded, held_ms));
        self.failed += u64::from(!succeeded);
        self.held_ms += u128::from(held_ms);
    }

    fn tasks(&self) -> u64 {
        self.results.len() as u64
    }

    /// `max(1, ceil(max_concurrency × (WINDOW - failed) / WINDOW))`: each
    /// failure among the last [`HEALTH_WINDOW_TASKS`] takes a twentieth
    /// off (a task it has not had yet counts as a success).
    pub(super) fn slots(&self, max_concurrency: u32) -> u32 {
        let good = WINDOW.saturating_sub(self.failed);
        let slots = (u64::from(max_concurrency) * good).div_ceil(WINDOW);
        u32::try_from(slots.max(1)).unwrap_or(max_concurrency)
    }

    /// The score of an agent with `max_concurrency` slots holding `held`
    /// tasks: `rate × speed × free / slots`, with `rate = (WINDOW -
    /// failed) / WINDOW` and `speed = 1 / (1 + mean held ms / 1000)`,
    /// which is `(WINDOW - failed) × 1000 n × free / (WINDOW × (1000 n +
    /// held ms) × slots)` over `n` recent tasks; `free / slots` with none.
    pub(super) fn score(&self, max_concurrency: u32, held: usize) -> Score {
        let slots = u128::from(self.slots(max_concurrency));
        let free = slots.saturating_sub(held as u128);
        let n = u128::from(self.tasks());
        if n == 0 {
            return Score {
                num: free,
                den: slots,
            };
        }
        let unit = u128::from(HEALTH_LATENCY_UNIT_MS);
        let window = u128::from(WINDOW);
        let good = window.saturating_sub(u128::from(self.failed));
        Score {
            num: good * unit * n * free,
            den: window * (unit * n + self.held_ms) * slots,
        }
    }

    /// What people see of it.
    pub(super) fn health(&self, max_concurrency: u32, held: usize) -> Health {
        let n = self.tasks();
        Health {
            recent_tasks: u32::try_from(n).unwrap_or(u32::MAX),
            recent_failures: u32::try_from(self.failed).unwrap_or(u32::MAX),
            recent_average_task_ms: if n == 0 {
                0.0
            } else {
                self.held_ms as f64 / n as f64
            },
            slots: self.slots(max_concurrency),
            score: self.score(max_concurrency, held).value(),
        }
    }
}

/// A score as the exact fraction `num / den` (`den > 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Score {
    num: u128,
    den: u128,
}

impl Score {
    /// Whether this score is clearly better than `other`: more than
    /// [`CLEARLY_BETTER`] times it (so a score of 0 is beaten by any
    /// positive one, and two equal scores beat neither).
    pub(super) fn clearly_beats(self, other: Score) -> bool {
        let (times, per) = CLEARLY_BETTER;
        // Both sides stay below u128::MAX: num < 2^32, den < 2^87.
        per.saturating_mul(self.num).saturating_mul(other.den)
            > times.saturating_mul(other.num).saturating_mul(self.den)
    }

    pub(super) fn value(self) -> f64 {
        if self.den == 0 {
            0.0
        } else {
            self.num as f64 / self.den as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_shrink_with_failures_and_recover_with_successes() {
        let mut r = Recent::default();
        assert_eq!(r.slots(10), 10);
        r.record(false, 10);
        assert_eq!(r.slots(10), 10, "ceil(10 × 19/20)");
        for _ in 0..9 {
            r.record(false, 10);
        }
        assert_eq!(r.slots(10), 5, "ten failures of the last twenty");
        assert_eq!(r.slots(3), 2, "rounded up");
        for _ in 0..10 {
            r.record(false, 10);
        }
        assert_eq!(r.slots(10), 1, "never below one");
        for _ in 0..10 {
            r.record(true, 10);
        }
        assert_eq!(r.slots(10), 5);
        for _ in 0..HEALTH_WINDOW_TASKS {
            r.record(true, 10);
        }
        assert_eq!(r.slots(10), 10, "the failures left the window");
    }

    #[test]
    fn the_score_is_rate_times_speed_times_free_share() {
        let mut r = Recent::default();
        assert_eq!(r.score(4, 1).value(), 0.75);
        for _ in 0..5 {
            r.record(true, 1_000);
            r.record(false, 1_000);
        }
        // rate 15/20, speed 1/2, slots 3 (ceil(4 × 3/4)), free 3 of 3.
        assert_eq!(r.score(4, 0).value(), 0.375);
        assert_eq!(r.score(4, 1).value(), 0.25);
        assert_eq!(r.score(4, 3).value(), 0.0);
        let h = r.health(4, 1);
        assert_eq!(
            (
                h.recent_tasks,
                h.recent_failures,
                h.recent_average_task_ms,
                h.slots
            ),
            (10, 5, 1_000.0, 3)
        );
    }

    #[test]
    fn clearly_better_means_more_than_half_as_good_again() {
        let s = |num, den| Score { num, den };
        assert!(!s(3, 4).clearly_beats(s(1, 2)), "exactly 1.5 times");
        assert!(s(76, 100).clearly_beats(s(1, 2)));
        assert!(s(1, 100).clearly_beats(s(0, 1)));
        assert!(!s(0, 1).clearly_beats(s(0, 1)));
        assert!(!s(1, 2).clearly_beats(s(1, 2)));
    }
}
