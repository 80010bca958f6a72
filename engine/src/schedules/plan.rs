//! What a schedule does next: the one pure decision of the scheduler.
//!
//! Given a schedule as its events leave it, its timing, the time, and
//! whether the execution it started last is still running, `next_step`
//! says the one thing to record next (or when to look again). The runtime
//! performs it, records it, folds it, and asks again until the answer is
//! `Idle`; so a schedule catches up one fire time at a time, each recorded
//! before the next is decided, and a crash anywhere resumes from the
//! cursor the journal holds.
//!
//! A fire time `T` is in the catch-up window at `now` when
//! `now - catchupWindowMs <= T <= now`; older ones are missed (recorded
//! once, as one range).
//!
//! Owns that decision. It must never read a clock, start anything, or
//! record anything.

use super::spec::{Overlap, Timing};
use super::state::Schedule;
use crate::ExecutionId;

/// The next thing a schedule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing is due. Look again at `wake_at_ms`, or when `watch` (the
    /// execution a buffered fire waits for) ends.
    Idle {
        wake_at_ms: Option<u64>,
        watch: Option<ExecutionId>,
    },
    /// Start the execution of fire time `at_ms`.
    Fire { at_ms: u64 },
    /// Cancel `previous`, then start the execution of fire time `at_ms`.
    CancelThenFire { at_ms: u64, previous: ExecutionId },
    /// Record fire time `at_ms` as skipped (overlap).
    Skip { at_ms: u64 },
    /// Record fire time `at_ms` as buffered until the running one ends.
    Buffer { at_ms: u64 },
    /// Record fire times `first_ms` to `last_ms` as missed.
    Miss { first_ms: u64, last_ms: u64 },
}

/// What `schedule` does next at `now_ms`; `previous_running` says whether
/// its last execution has not ended.
pub fn next_step(
    schedule: &Schedule,
    timing: &Timing,
    now_ms: u64,
    previous_running: bool,
) -> Step {
    let spec = &schedule.spec;
    if spec.paused {
        return Step::Idle {
            wake_at_ms: None,
            watch: None,
        };
    }
    if let Some(buffered) = schedule.buffered_ms
        && !previous_running
    {
        return Step::Fire { at_ms: buffered };
    }
    let watch = schedule
        .buffered_ms
        .and(schedule.last_execution)
        .filter(|_| previous_running);
    let next = timing.next_after(schedule.cursor_ms, schedule.anchor_ms);
    let Some(at_ms) = next.filter(|n| *n <= now_ms) else {
        return Step::Idle {
            wake_at_ms: next,
            watch,
        };
    };
    let window_start = now_ms.saturating_sub(spec.catchup_window_ms);
    if at_ms < window_start {
        let last_ms = timing
            .last_between(schedule.cursor_ms, window_start, schedule.anchor_ms)
            .unwrap_or(at_ms);
        return Step::Miss {
            first_ms: at_ms,
            last_ms,
        };
    }
    match (previous_running, schedule.last_execution) {
        (true, Some(previous)) => match spec.overlap {
            Overlap::Allow => Step::Fire { at_ms },
            Overlap::Skip => Step::Skip { at_ms },
            Overlap::BufferOne if schedule.buffered_ms.is_none() => Step::Buffer { at_ms },
            Overlap::BufferOne => Step::Skip { at_ms },
            Overlap::CancelPrevious => Step::CancelThenFire { at_ms, previous },
        },
        _ => Step::Fire { at_ms },
    }
}
