//! What each step of an execution has come to after some of its events: a
//! projection for people (the dashboard's graph colours, `GET
//! /v1/executions/{id}/replay`), folded beside the state from the same
//! events.
//!
//! [`Progress::observe`] takes each event with the state as it stood just
//! before it (a skipped held step is named only there); [`Progress::steps`]
//! then lays what the state says now over what the events said: a step
//! with a live activation is running or waiting for what its activation
//! waits for, and a held failed step waits for an operator while the
//! execution is paused. So the running and waiting steps are exactly the
//! state's, by construction.
//!
//! Owns that projection and nothing else: `apply` and `decide` never read
//! it, and it must never change a state or decide anything.

use std::collections::BTreeMap;

use serde::Serialize;

use super::event::Event;
use super::state::{ExecutionState, Role, Status, Waiting};

/// Where one step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Started, and not waiting for anything outside the machine yet.
    Running,
    WaitingTask,
    WaitingTimer,
    WaitingEvent,
    WaitingRetry,
    WaitingChild,
    WaitingBranches,
    /// Failed and held for an operator's retry or skip (`onFailure: pause`).
    WaitingOperator,
    /// Not entered yet: the execution waits for its workflow's limits.
    WaitingLimit,
    Completed,
    Failed,
    /// Its compensation runs.
    Compensating,
    /// Its compensation completed: undone.
    Compensated,
    /// Held after failing, then skipped by an operator.
    Skipped,
}

impl StepState {
    /// Every standing, in declaration order.
    pub const ALL: [StepState; 14] = [
        StepState::Running,
        StepState::WaitingTask,
        StepState::WaitingTimer,
        StepState::WaitingEvent,
        StepState::WaitingRetry,
        StepState::WaitingChild,
        StepState::WaitingBranches,
        StepState::WaitingOperator,
        StepState::WaitingLimit,
        StepState::Completed,
        StepState::Failed,
        StepState::Compensating,
        StepState::Compensated,
        StepState::Skipped,
    ];

    /// Its name, as it serializes.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Running => "running",
            StepState::WaitingTask => "waiting_task",
            StepState::WaitingTimer => "waiting_timer",
            StepState::WaitingEvent => "waiting_event",
            StepState::WaitingRetry => "waiting_retry",
            StepState::WaitingChild => "waiting_child",
            StepState::WaitingBranches => "waiting_branches",
            StepState::WaitingOperator => "waiting_operator",
            StepState::WaitingLimit => "waiting_limit",
            StepState::Completed => "completed",
            StepState::Failed => "failed",
            StepState::Compensating => "compensating",
            StepState::Compensated => "compensated",
            StepState::Skipped => "skipped",
        }
    }

    /// What a live activation's wait makes its step.
    fn of_waiting(waiting: &Waiting) -> StepState {
        match waiting {
            Waiting::Starting => StepState::Running,
            Waiting::Task { .. } => StepState::WaitingTask,
            Waiting::Retry { .. } => StepState::WaitingRetry,
            Waiting::Timer { .. } => StepState::WaitingTimer,
            Waiting::Event { .. } => StepState::WaitingEvent,
            Waiting::Child { .. } => StepState::WaitingChild,
            Waiting::Branches { .. } | Waiting::Items(_) => StepState::WaitingBranches,
        }
    }
}

/// One step's standing, and how many times it was entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StepProgress {
    pub state: StepState,
    pub runs: u64,
}

/// The projection, folded one event at a time. A step never entered has
/// no entry.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// What the events last said of each step.
    said: BTreeMap<String, StepProgress>,
    /// The step of each activation seen (steps and compensations).
    acts: BTreeMap<u64, String>,
    /// The held step being skipped: the skip completes it next, inline.
    skipping: Option<String>,
}

impl Progress {
    /// Takes `event`, with `before` the state it is applied to.
    pub fn observe(&mut self, before: &ExecutionState, event: &Event) {
        match event {
            Event::StepStarted { act, step, .. } => self.entered(*act, step, StepState::Running),
            Event::StepCompleted { step, .. } if self.skipping.as_ref() == Some(step) => {
                self.skipping = None;
                self.set(step, StepState::Skipped);
            }
            Event::DecisionMade { act, step, .. } | Event::StepCompleted { act, step, .. } => {
                self.ended(*act, step, StepState::Completed);
            }
            Event::StepFailed { act, step, .. } => self.ended(*act, step, StepState::Failed),
            Event::ErrorRouted { step, .. } => self.set(step, StepState::Failed),
            Event::FailureHeld { failed } => self.set(&failed.step, StepState::Failed),
            // The oldest held step is the one skipped (as `apply` takes it).
            Event::HeldStepSkipped { .. } => {
                self.skipping = before.failed_steps.first().map(|held| held.step.clone());
            }
            Event::CompensationStarted { act, step, .. } => {
                self.acts.insert(*act, step.clone());
                self.set(step, StepState::Compensating);
            }
            Event::CompensationCompleted { of, .. } => self.set_act(*of, StepState::Compensated),
            // An undo that failed or was skipped leaves the step done.
            Event::CompensationFailed { of, .. } | Event::CompensationSkipped { of, .. } => {
                self.set_act(*of, StepState::Completed);
            }
            _ => {}
        }
    }

    /// Each step entered so far, as it stands in `now` (the state after
    /// the last event observed).
    pub fn steps(&self, now: &ExecutionState) -> BTreeMap<String, StepProgress> {
        let mut steps = self.said.clone();
        for held in &now.failed_steps {
            if let Some(p) = steps.get_mut(&held.step) {
                p.state = if now.status == Status::Paused {
                    StepState::WaitingOperator
                } else {
                    StepState::Failed
                };
            }
        }
        for a in now.activations.values() {
            let state = match a.role {
                Role::Step => StepState::of_waiting(&a.waiting),
                Role::Compensation { .. } => StepState::Compensating,
                Role::Handler { .. } => continue,
            };
            if let Some(p) = steps.get_mut(&a.step) {
                p.state = state;
            }
        }
        if now.waiting_for_limit() {
            for d in &now.deferred {
                steps
                    .entry(d.step.clone())
                    .or_insert(StepProgress {
                        state: StepState::WaitingLimit,
                        runs: 0,
                    })
                    .state = StepState::WaitingLimit;
            }
        }
        steps
    }

    /// A started step: one more run.
    fn entered(&mut self, act: u64, step: &str, state: StepState) {
        self.acts.insert(act, step.to_owned());
        let p = self
            .said
            .entry(step.to_owned())
            .or_insert(StepProgress { state, runs: 0 });
        p.state = state;
        p.runs = p.runs.saturating_add(1);
    }

    /// A step that ended; one run more if it ran inline (never started).
    fn ended(&mut self, act: u64, step: &str, state: StepState) {
        if self.acts.contains_key(&act) {
            self.set(step, state);
        } else {
            self.entered(act, step, state);
        }
    }

    fn set(&mut self, step: &str, state: StepState) {
        self.said
            .entry(step.to_owned())
            .or_insert(StepProgress { state, runs: 0 })
            .state = state;
    }

    fn set_act(&mut self, act: u64, state: StepState) {
        if let Some(step) = self.acts.get(&act).cloned() {
            self.set(&step, state);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The names the API documents (from `as_str`) are the names answers
    /// carry (from serde).
    #[test]
    fn every_state_serializes_as_its_name() {
        for state in StepState::ALL {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }
}
