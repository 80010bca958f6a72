//! A schedule's recorded life: the events of the reserved `SCHEDULES`
//! stream (`ScheduleEvent`) and the table they fold into (`Schedules`).
//!
//! Every decision is in an event as data: an update carries the new anchor
//! and cursor, a fire the fire time and the execution it started. So the
//! fold needs no clock and no definition, and replaying the stream gives
//! back exactly the table the server had.
//!
//! Owns the events' shapes and the fold. It must never decide what a
//! schedule does next (`plan` does) nor do IO.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::spec::ScheduleSpec;
use crate::ExecutionId;

/// How many recent actions a schedule keeps for people to see.
pub const RECENT_MAX: usize = 20;

/// One event of the schedules stream. The record's kind is the tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleEvent {
    #[serde(rename_all = "camelCase")]
    ScheduleCreated {
        spec: ScheduleSpec,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The whole new spec, and where fire times count from now.
    #[serde(rename_all = "camelCase")]
    ScheduleUpdated {
        spec: ScheduleSpec,
        anchor_ms: u64,
        cursor_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    ScheduleDeleted {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An execution started for fire time `at_ms` (or, `manual`, asked for
    /// at `at_ms` by someone, which moves no fire time).
    #[serde(rename_all = "camelCase")]
    ScheduleFired {
        id: String,
        at_ms: u64,
        execution: ExecutionId,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        manual: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Fire time `at_ms` started nothing: the last execution still ran.
    #[serde(rename_all = "camelCase")]
    ScheduleSkipped { id: String, at_ms: u64 },
    /// Fire time `at_ms` waits for the running execution to end.
    #[serde(rename_all = "camelCase")]
    ScheduleBuffered { id: String, at_ms: u64 },
    /// Fire times from `first_ms` to `last_ms` passed outside the catch-up
    /// window (the server was down) and were not fired.
    #[serde(rename_all = "camelCase")]
    ScheduleMissed {
        id: String,
        first_ms: u64,
        last_ms: u64,
    },
    /// Fire time `at_ms` could not start its execution (its workflow or
    /// input is no longer accepted).
    #[serde(rename_all = "camelCase")]
    ScheduleFailed {
        id: String,
        at_ms: u64,
        error: String,
    },
}

impl ScheduleEvent {
    pub const KINDS: [&'static str; 8] = [
        "schedule_created",
        "schedule_updated",
        "schedule_deleted",
        "schedule_fired",
        "schedule_skipped",
        "schedule_buffered",
        "schedule_missed",
        "schedule_failed",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            ScheduleEvent::ScheduleCreated { .. } => "schedule_created",
            ScheduleEvent::ScheduleUpdated { .. } => "schedule_updated",
            ScheduleEvent::ScheduleDeleted { .. } => "schedule_deleted",
            ScheduleEvent::ScheduleFired { .. } => "schedule_fired",
            ScheduleEvent::ScheduleSkipped { .. } => "schedule_skipped",
            ScheduleEvent::ScheduleBuffered { .. } => "schedule_buffered",
            ScheduleEvent::ScheduleMissed { .. } => "schedule_missed",
            ScheduleEvent::ScheduleFailed { .. } => "schedule_failed",
        }
    }

    /// Which schedule it is about.
    pub fn id(&self) -> &str {
        match self {
            ScheduleEvent::ScheduleCreated { spec, .. }
            | ScheduleEvent::ScheduleUpdated { spec, .. } => &spec.id,
            ScheduleEvent::ScheduleDeleted { id, .. }
            | ScheduleEvent::ScheduleFired { id, .. }
            | ScheduleEvent::ScheduleSkipped { id, .. }
            | ScheduleEvent::ScheduleBuffered { id, .. }
            | ScheduleEvent::ScheduleMissed { id, .. }
            | ScheduleEvent::ScheduleFailed { id, .. } => id,
        }
    }

    /// Who asked for it, for a change a person made.
    pub fn by(&self) -> Option<&str> {
        match self {
            ScheduleEvent::ScheduleCreated { by, .. }
            | ScheduleEvent::ScheduleUpdated { by, .. }
            | ScheduleEvent::ScheduleDeleted { by, .. }
            | ScheduleEvent::ScheduleFired { by, .. } => by.as_deref(),
            _ => None,
        }
    }
}

/// What happened at one fire time, newest kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recent {
    /// The fire time (for a manual trigger, when it was asked for).
    pub at_ms: u64,
    pub recorded_at_ms: u64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Started {
        execution: ExecutionId,
        manual: bool,
    },
    Skipped,
    Buffered,
    /// Fire times up to `last_ms` were missed (from `at_ms`).
    Missed {
        last_ms: u64,
    },
    Failed {
        error: String,
    },
}

/// One schedule as its events leave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub spec: ScheduleSpec,
    /// The seq of its `schedule_created`: part of every fire's idempotency
    /// key, so a schedule deleted and created again under the same id
    /// never meets the old one's executions.
    pub generation: u64,
    pub created_at_ms: u64,
    pub created_by: Option<String>,
    pub updated_at_ms: u64,
    pub updated_by: Option<String>,
    /// When its timing was last set (an `everyMs` schedule counts from it).
    pub anchor_ms: u64,
    /// Every fire time up to here was dealt with (fired, skipped, buffered,
    /// missed or failed); the next one is the first after it.
    pub cursor_ms: u64,
    /// The execution it started last.
    pub last_execution: Option<ExecutionId>,
    /// A fire time waiting for `last_execution` to end (`bufferOne`).
    pub buffered_ms: Option<u64>,
    pub recent: VecDeque<Recent>,
    pub fired: u64,
    pub skipped: u64,
    pub missed: u64,
    pub failed: u64,
}

impl Schedule {
    /// The idempotency key of the execution fire time `at_ms` starts.
    pub fn fire_key(&self, at_ms: u64) -> String {
        format!("schedule:{}:{}:{at_ms}", self.spec.id, self.generation)
    }

    /// The idempotency key of a manual trigger asked for at `at_ms`.
    pub fn trigger_key(&self, at_ms: u64) -> String {
        format!(
            "schedule:{}:{}:manual:{at_ms}",
            self.spec.id, self.generation
        )
    }

    fn note(&mut self, at_ms: u64, recorded_at_ms: u64, outcome: Outcome) {
        if self.recent.len() == RECENT_MAX {
            self.recent.pop_back();
        }
        self.recent.push_front(Recent {
            at_ms,
            recorded_at_ms,
            outcome,
        });
    }

    fn pass(&mut self, at_ms: u64) {
        self.cursor_ms = self.cursor_ms.max(at_ms);
    }
}

/// Every schedule, folded from the schedules stream (and, being derived,
/// kept as a snapshot of that stream now and then: see `store::schedules`).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedules {
    by_id: BTreeMap<String, Schedule>,
    /// The stream's last seq.
    pub seq: u64,
}

impl Schedules {
    pub fn get(&self, id: &str) -> Option<&Schedule> {
        self.by_id.get(id)
    }

    /// Every schedule, by id.
    pub fn list(&self) -> impl Iterator<Item = &Schedule> {
        self.by_id.values()
    }

    /// Folds the event stored at `seq`, recorded at `recorded_at_ms`.
    pub fn apply(&mut self, seq: u64, recorded_at_ms: u64, event: &ScheduleEvent) {
        self.seq = seq;
        match event {
            ScheduleEvent::ScheduleCreated { spec, by, .. } => {
                self.by_id.insert(
                    spec.id.clone(),
                    Schedule {
                        spec: spec.clone(),
                        generation: seq,
                        created_at_ms: recorded_at_ms,
                        created_by: by.clone(),
                        updated_at_ms: recorded_at_ms,
                        updated_by: by.clone(),
                        anchor_ms: recorded_at_ms,
                        cursor_ms: recorded_at_ms,
                        last_execution: None,
                        buffered_ms: None,
                        recent: VecDeque::new(),
                        fired: 0,
                        skipped: 0,
                        missed: 0,
                        failed: 0,
                    },
                );
                return;
            }
            ScheduleEvent::ScheduleDeleted { id, .. } => {
                self.by_id.remove(id);
                return;
            }
            _ => {}
        }
        // Any other event is about a schedule that exists (a fold of a
        // stream the engine wrote); one that does not is ignored.
        let Some(s) = self.by_id.get_mut(event.id()) else {
            return;
        };
        match event {
            ScheduleEvent::ScheduleCreated { .. } | ScheduleEvent::ScheduleDeleted { .. } => {}
            ScheduleEvent::ScheduleUpdated {
                spec,
                anchor_ms,
                cursor_ms,
                by,
                ..
            } => {
                s.spec = spec.clone();
                s.anchor_ms = *anchor_ms;
                s.cursor_ms = *cursor_ms;
                s.updated_at_ms = recorded_at_ms;
                s.updated_by = by.clone();
            }
            ScheduleEvent::ScheduleFired {
                at_ms,
                execution,
                manual,
                ..
            } => {
                if !manual {
                    s.pass(*at_ms);
                    if s.buffered_ms == Some(*at_ms) {
                        s.buffered_ms = None;
                    }
                }
                s.last_execution = Some(*execution);
                s.fired += 1;
                s.note(
                    *at_ms,
                    recorded_at_ms,
                    Outcome::Started {
                        execution: *execution,
                        manual: *manual,
                    },
                );
            }
            ScheduleEvent::ScheduleSkipped { at_ms, .. } => {
                s.pass(*at_ms);
                s.skipped += 1;
                s.note(*at_ms, recorded_at_ms, Outcome::Skipped);
            }
            ScheduleEvent::ScheduleBuffered { at_ms, .. } => {
                s.pass(*at_ms);
                s.buffered_ms = Some(*at_ms);
                s.note(*at_ms, recorded_at_ms, Outcome::Buffered);
            }
            ScheduleEvent::ScheduleMissed {
                first_ms, last_ms, ..
            } => {
                s.pass(*last_ms);
                s.missed += 1;
                s.note(
                    *first_ms,
                    recorded_at_ms,
                    Outcome::Missed { last_ms: *last_ms },
                );
            }
            ScheduleEvent::ScheduleFailed { at_ms, error, .. } => {
                s.pass(*at_ms);
                if s.buffered_ms == Some(*at_ms) {
                    s.buffered_ms = None;
                }
                s.failed += 1;
                s.note(
                    *at_ms,
                    recorded_at_ms,
                    Outcome::Failed {
                        error: error.clone(),
                    },
                );
            }
        }
    }
}
