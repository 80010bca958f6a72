//! One circuit breaker: closed, open since some instant, or half-open with
//! one probe out. A pure state machine: every call is told the time, and
//! says which transition (if any) it made, for the caller to record.
//!
//! Failures are counted in a sliding window kept in memory (derived: after
//! a restart the count starts again, while the state, being recorded,
//! carries on). The same machine serves a capability's breaker and each
//! agent's breaker of a capability (`per_agent`): what a refusal means
//! (fail fast, or not this agent) is the runtime's. Owns the rules of the
//! states; never records anything.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How a breaker trips and recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerSettings {
    /// Failures within `window_ms` that open it (1 to 1000).
    pub failures: u32,
    pub window_ms: u64,
    /// How long it stays open before a probe goes through.
    pub cool_down_ms: u64,
    /// One breaker per agent (by name) serving the capability, each with
    /// these settings, instead of one for the capability: an open one
    /// keeps its agent from the capability's tasks, which other agents
    /// take (nothing fails fast).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_agent: bool,
}

impl BreakerSettings {
    pub const FAILURES_MAX: u32 = 1_000;
    pub const MS_MIN: u64 = 1_000;
    pub const MS_MAX: u64 = 86_400_000;

    /// Every rule the settings break.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if !(1..=Self::FAILURES_MAX).contains(&self.failures) {
            problems.push(format!(
                "failures must be 1 to {}, not {}",
                Self::FAILURES_MAX,
                self.failures
            ));
        }
        for (name, ms) in [
            ("windowMs", self.window_ms),
            ("coolDownMs", self.cool_down_ms),
        ] {
            if !(Self::MS_MIN..=Self::MS_MAX).contains(&ms) {
                problems.push(format!(
                    "{name} must be {} to {}, not {ms}",
                    Self::MS_MIN,
                    Self::MS_MAX
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum BreakerState {
    Closed,
    /// Failing fast since `since_ms`.
    Open {
        since_ms: u64,
    },
    /// One probe task may go through.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A change of state, to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `failures` failures within the window (or a failed probe).
    Opened {
        failures: u32,
    },
    HalfOpened,
    Closed,
}

/// What to do with a task about to be handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Pass,
    /// Hand it out: it is the probe of a breaker that just went half-open.
    Probe(Transition),
    /// Fail it fast (`circuit_open`).
    Refuse,
}

/// One capability's breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    pub settings: BreakerSettings,
    pub state: BreakerState,
    /// Failure instants within the window, oldest first.
    failures: VecDeque<u64>,
    /// The half-open probe's task id, while it is out.
    probe: Option<String>,
}

impl Breaker {
    pub fn new(settings: BreakerSettings, state: BreakerState) -> Breaker {
        Breaker {
            settings,
            state,
            failures: VecDeque::new(),
            probe: None,
        }
    }

    /// Takes `state` as recorded (a fold): an opening's instant is when it
    /// was recorded, which is when the live breaker opened, give or take
    /// the append.
    pub fn restore(&mut self, state: BreakerState) {
        match (self.state, state) {
            // Already there (the live breaker changed first): keep its own
            // instant and probe.
            (BreakerState::Open { .. }, BreakerState::Open { .. })
            | (BreakerState::HalfOpen, BreakerState::HalfOpen)
            | (BreakerState::Closed, BreakerState::Closed) => {}
            _ => {
                self.state = state;
                self.probe = None;
            }
        }
    }

    /// Whether a task could be handed out at `now_ms` (as [`Self::gate`]
    /// would say, without changing anything): closed, open past its
    /// cool-down, or half-open with no probe out.
    pub fn admits(&self, now_ms: u64) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open { since_ms } => {
                now_ms >= since_ms.saturating_add(self.settings.cool_down_ms)
            }
            BreakerState::HalfOpen => self.probe.is_none(),
        }
    }

    /// When an open breaker lets a probe through; `None` if it is not open.
    pub fn cool_down_ends_ms(&self) -> Option<u64> {
        match self.state {
            BreakerState::Open { since_ms } => {
                Some(since_ms.saturating_add(self.settings.cool_down_ms))
            }
            BreakerState::Closed | BreakerState::HalfOpen => None,
        }
    }

    /// Task `task` was handed out but will have no result (withdrawn, or
    /// put back for another agent): if it was the probe, the next task is.
    pub fn released(&mut self, task: &str) {
        if self.state == BreakerState::HalfOpen && self.probe.as_deref() == Some(task) {
            self.probe = None;
        }
    }

    /// Failures counted in the window ending at `now_ms`.
    pub fn recent_failures(&self, now_ms: u64) -> usize {
        let window = self.settings.window_ms;
        self.failures
            .iter()
            .filter(|at| at.saturating_add(window) > now_ms)
            .count()
    }

    /// Task `task` is about to be handed out at `now_ms`.
    pub fn gate(&mut self, task: &str, now_ms: u64) -> Gate {
        match self.state {
            BreakerState::Closed => Gate::Pass,
            BreakerState::Open { since_ms }
                if now_ms >= since_ms.saturating_add(self.settings.cool_down_ms) =>
            {
                self.state = BreakerState::HalfOpen;
                self.probe = Some(task.to_owned());
                Gate::Probe(Transition::HalfOpened)
            }
            BreakerState::Open { .. } => Gate::Refuse,
            // Half-open with no probe out (recovered in that state, or the
            // probe was withdrawn): this task is the probe.
            BreakerState::HalfOpen if self.probe.is_none() => {
                self.probe = Some(task.to_owned());
                Gate::Pass
            }
            BreakerState::HalfOpen if self.probe.as_deref() == Some(task) => Gate::Pass,
            BreakerState::HalfOpen => Gate::Refuse,
        }
    }

    /// Task `task` succeeded at `now_ms`.
    pub fn succeeded(&mut self, task: &str) -> Option<Transition> {
        if self.state == BreakerState::HalfOpen && self.probe.as_deref() == Some(task) {
            self.state = BreakerState::Closed;
            self.probe = None;
            self.failures.clear();
            return Some(Transition::Closed);
        }
        None
    }

    /// Task `task` failed at `now_ms` (not by failing fast).
    pub fn failed(&mut self, task: &str, now_ms: u64) -> Option<Transition> {
        match self.state {
            BreakerState::HalfOpen if self.probe.as_deref() == Some(task) => {
                self.probe = None;
                self.state = BreakerState::Open { since_ms: now_ms };
                Some(Transition::Opened { failures: 1 })
            }
            BreakerState::Closed => {
                // A failure counts for `window_ms` after it.
                let window = self.settings.window_ms;
                while self
                    .failures
                    .front()
                    .is_some_and(|at| at.saturating_add(window) <= now_ms)
                {
                    self.failures.pop_front();
                }
                self.failures.push_back(now_ms);
                let n = self.failures.len();
                if n >= self.settings.failures as usize {
                    self.failures.clear();
                    self.state = BreakerState::Open { since_ms: now_ms };
                    return Some(Transition::Opened {
                        failures: u32::try_from(n).unwrap_or(u32::MAX),
                    });
                }
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            BreakerSettings {
                failures: 3,
                window_ms: 10_000,
                cool_down_ms: 5_000,
                per_agent: false,
            },
            BreakerState::Closed,
        )
    }

    #[test]
    fn it_opens_on_enough_failures_within_the_window_only() {
        let mut b = breaker();
        assert_eq!(b.failed("a", 0), None);
        assert_eq!(b.failed("b", 5_000), None);
        // The first has left the window.
        assert_eq!(b.failed("c", 10_001), None);
        assert_eq!(b.recent_failures(10_001), 2);
        assert_eq!(
            b.failed("d", 12_000),
            Some(Transition::Opened { failures: 3 })
        );
        assert_eq!(b.state, BreakerState::Open { since_ms: 12_000 });
        assert_eq!(b.gate("e", 16_999), Gate::Refuse);
    }

    #[test]
    fn after_the_cool_down_one_probe_goes_and_decides() {
        let mut b = breaker();
        for t in ["a", "b", "c"] {
            b.failed(t, 0);
        }
        assert_eq!(b.gate("p", 5_000), Gate::Probe(Transition::HalfOpened));
        assert_eq!(b.gate("q", 5_001), Gate::Refuse, "one probe at a time");
        assert_eq!(b.gate("p", 5_002), Gate::Pass, "the probe itself again");
        assert_eq!(b.succeeded("q"), None);
        assert_eq!(b.succeeded("p"), Some(Transition::Closed));
        assert_eq!(b.gate("r", 5_003), Gate::Pass);
        // A failed probe opens it again, from then.
        for t in ["a", "b", "c"] {
            b.failed(t, 6_000);
        }
        assert_eq!(b.gate("p2", 11_000), Gate::Probe(Transition::HalfOpened));
        assert_eq!(
            b.failed("p2", 11_500),
            Some(Transition::Opened { failures: 1 })
        );
        assert_eq!(b.state, BreakerState::Open { since_ms: 11_500 });
        assert_eq!(b.gate("s", 16_499), Gate::Refuse);
    }

    #[test]
    fn admits_says_what_gate_would_and_a_released_probe_frees_the_way() {
        let mut b = breaker();
        assert!(b.admits(0));
        for t in ["a", "b", "c"] {
            b.failed(t, 1_000);
        }
        assert_eq!(b.cool_down_ends_ms(), Some(6_000));
        assert!(!b.admits(5_999));
        assert_eq!(b.gate("x", 5_999), Gate::Refuse);
        assert!(b.admits(6_000));
        assert_eq!(b.gate("p", 6_000), Gate::Probe(Transition::HalfOpened));
        assert!(!b.admits(6_001), "the probe is out");
        assert_eq!(b.cool_down_ends_ms(), None);
        // A task that was not the probe changes nothing.
        b.released("x");
        assert!(!b.admits(6_001));
        b.released("p");
        assert!(b.admits(6_001));
        assert_eq!(b.gate("q", 6_002), Gate::Pass, "the next task is the probe");
        assert_eq!(b.succeeded("q"), Some(Transition::Closed));
    }

    #[test]
    fn per_agent_is_left_out_of_the_json_unless_set() {
        let mut s = breaker().settings;
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::json!({"failures": 3, "windowMs": 10000, "coolDownMs": 5000})
        );
        s.per_agent = true;
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(json["perAgent"], true);
        let back: BreakerSettings = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn settings_out_of_range_are_named() {
        let bad = BreakerSettings {
            failures: 0,
            window_ms: 5,
            cool_down_ms: 86_400_001,
            per_agent: true,
        };
        let problems = bad.check().unwrap_err().join("\n");
        for expected in [
            "failures must be 1 to 1000",
            "windowMs must be",
            "coolDownMs must be",
        ] {
            assert!(problems.contains(expected), "{problems}");
        }
    }
}
