//! Who did what: the changes people and services asked for, from the
//! journal alone, in its order. Token changes (the access stream),
//! definitions (the catalog), schedule changes and manual triggers (the
//! schedules stream; a schedule's own fires are nobody's command), circuit
//! breakers set and removed (their own opening and closing is not),
//! capabilities' limits set and removed (claims are not), webhook
//! subscriptions made and deleted (deliveries are not), and the command
//! events of executions: starts,
//! signals, pause, resume, retry, skip, redrive, cancel, terminate; with
//! `tasks`, agents' task results too.
//!
//! Owns which records are changes someone asked for and how each is shown.
//! It must never leave one out: a change made without a token (a server
//! with none, or the command line on the data folder) is listed with no
//! actor.

use crate::ExecutionId;
use crate::breakers::BreakerEvent;
use crate::error::Error;
use crate::limits::LimitsEvent;
use crate::machine::{CompensationReason, Event};
use crate::schedules::ScheduleEvent;
use crate::store::catalog::{self, CatalogRecord};
use crate::store::{
    ACCESS, BREAKERS, CATALOG, LIMITS, SCHEDULES, WEBHOOKS, codec, execution_of, reserved, tokens,
};
use crate::webhooks::WebhookEvent;

use super::History;

/// One change someone asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its place in the whole journal.
    pub position: u64,
    pub at_ms: u64,
    /// The access token's name; `None` when none was needed.
    pub by: Option<String>,
    /// `start`, `signal`, `pause`, `resume`, `retry`, `skip`, `redrive`,
    /// `cancel`, `terminate`, `define`, `token_created`, `token_revoked`,
    /// `schedule_created`, `schedule_updated`, `schedule_deleted`,
    /// `schedule_triggered`, `breaker_set`, `breaker_removed`, `limits_set`,
    /// `limits_removed`, `webhook_created`, `webhook_deleted`, and with tasks
    /// `task_completed`, `task_failed`.
    pub action: &'static str,
    /// What it changed.
    pub target: AuditTarget,
    /// A reason, a signal's name, a workflow's name, a role, an agent.
    pub detail: Option<String>,
}

/// What a change was made to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    Execution(ExecutionId),
    /// A workflow version (its hash).
    Workflow(String),
    Token(String),
    Schedule(String),
    /// A capability's circuit breaker.
    Breaker(String),
    /// A capability's limits.
    Limits(String),
    /// A webhook subscription (its id).
    Webhook(String),
}

impl History {
    /// The changes recorded from `from_position` on, up to `limit` records
    /// read, and the position to go on from (`None` at the end).
    pub async fn audit(
        &self,
        from_position: u64,
        limit: usize,
        tasks: bool,
    ) -> Result<(Vec<AuditEntry>, Option<u64>), Error> {
        let records = self
            .store
            .journal()
            .read_global(from_position, limit)
            .await?;
        let next = records.last().map(|r| r.position + 1);
        let mut entries: Vec<AuditEntry> = Vec::new();
        for record in &records {
            let entry = |by, action, target, detail| AuditEntry {
                position: record.position,
                at_ms: record.recorded_at_ms,
                by,
                action,
                target,
                detail,
            };
            if record.stream == ACCESS {
                if let Some(change) = tokens::change_of(record)? {
                    let action = if change.kind == "token_created" {
                        "token_created"
                    } else {
                        "token_revoked"
                    };
                    let detail = match (change.role, change.reason) {
                        (Some(role), Some(reason)) => Some(format!("role {role}: {reason}")),
                        (Some(role), None) => Some(format!("role {role}")),
                        (None, reason) => reason,
                    };
                    entries.push(entry(
                        change.by,
                        action,
                        AuditTarget::Token(change.name),
                        detail,
                    ));
                }
                continue;
            }
            if record.stream == BREAKERS {
                // A breaker's own changes of state are nobody's command.
                let change = match reserved::decode::<BreakerEvent>(record)? {
                    Some(BreakerEvent::BreakerSet {
                        capability,
                        settings,
                        by,
                        reason,
                    }) => {
                        let what = format!(
                            "{} failures in {} ms, cool-down {} ms{}",
                            settings.failures,
                            settings.window_ms,
                            settings.cool_down_ms,
                            if settings.per_agent {
                                ", per agent"
                            } else {
                                ""
                            }
                        );
                        let detail = match reason {
                            Some(reason) => format!("{what}: {reason}"),
                            None => what,
                        };
                        Some((capability, by, "breaker_set", Some(detail)))
                    }
                    Some(BreakerEvent::BreakerRemoved {
                        capability,
                        by,
                        reason,
                    }) => Some((capability, by, "breaker_removed", reason)),
                    _ => None,
                };
                if let Some((capability, by, action, detail)) = change {
                    entries.push(entry(by, action, AuditTarget::Breaker(capability), detail));
                }
                continue;
            }
            if record.stream == LIMITS {
                // Claims are nobody's command.
                let change = match reserved::decode::<LimitsEvent>(record)? {
                    Some(LimitsEvent::CapabilityLimitsSet {
                        capability,
                        limits,
                        by,
                        reason,
                    }) => {
                        let mut what = Vec::new();
                        if let Some(n) = limits.concurrency {
                            what.push(format!("{n} at once"));
                        }
                        if let Some(rate) = limits.rate_limit {
                            what.push(format!("{} per {} ms", rate.limit, rate.period_ms));
                        }
                        let what = what.join(", ");
                        let detail = match reason {
                            Some(reason) => format!("{what}: {reason}"),
                            None => what,
                        };
                        Some((capability, by, "limits_set", Some(detail)))
                    }
                    Some(LimitsEvent::CapabilityLimitsRemoved {
                        capability,
                        by,
                        reason,
                    }) => Some((capability, by, "limits_removed", reason)),
                    _ => None,
                };
                if let Some((capability, by, action, detail)) = change {
                    entries.push(entry(by, action, AuditTarget::Limits(capability), detail));
                }
                continue;
            }
            if record.stream == WEBHOOKS {
                // Deliveries are nobody's command; the secret is never shown.
                let change = match reserved::decode::<WebhookEvent>(record)? {
                    Some(WebhookEvent::WebhookCreated {
                        id,
                        spec,
                        by,
                        reason,
                        ..
                    }) => {
                        let what = format!("{} ({})", spec.url, spec.events.join(", "));
                        let detail = match reason {
                            Some(reason) => format!("{what}: {reason}"),
                            None => what,
                        };
                        Some((id, by, "webhook_created", Some(detail)))
                    }
                    Some(WebhookEvent::WebhookDeleted { id, by, reason }) => {
                        Some((id, by, "webhook_deleted", reason))
                    }
                    _ => None,
                };
                if let Some((id, by, action, detail)) = change {
                    entries.push(entry(by, action, AuditTarget::Webhook(id), detail));
                }
                continue;
            }
            if record.stream == SCHEDULES {
                let change = match reserved::decode::<ScheduleEvent>(record)? {
                    Some(ScheduleEvent::ScheduleCreated {
                        spec, by, reason, ..
                    }) => Some((spec.id, by, "schedule_created", reason)),
                    Some(ScheduleEvent::ScheduleUpdated {
                        spec, by, reason, ..
                    }) => Some((spec.id, by, "schedule_updated", reason)),
                    Some(ScheduleEvent::ScheduleDeleted { id, by, reason }) => {
                        Some((id, by, "schedule_deleted", reason))
                    }
                    Some(ScheduleEvent::ScheduleFired {
                        id,
                        manual: true,
                        by,
                        execution,
                        ..
                    }) => Some((id, by, "schedule_triggered", Some(execution.to_string()))),
                    _ => None,
                };
                if let Some((id, by, action, detail)) = change {
                    entries.push(entry(by, action, AuditTarget::Schedule(id), detail));
                }
                continue;
            }
            if record.stream == CATALOG {
                match catalog::record_of(record)? {
                    Some(CatalogRecord::Defined { name, version }) => entries.push(entry(
                        None,
                        "define",
                        AuditTarget::Workflow(version),
                        Some(name),
                    )),
                    // The same append as its definition, so right after it.
                    Some(CatalogRecord::DefinedBy(who)) => {
                        let target = AuditTarget::Workflow(who.version.clone());
                        match entries.last_mut() {
                            Some(last) if last.target == target => {
                                last.by = who.by;
                                if let Some(reason) = who.reason {
                                    last.detail = Some(match last.detail.take() {
                                        Some(name) => format!("{name}: {reason}"),
                                        None => reason,
                                    });
                                }
                            }
                            _ => entries.push(entry(who.by, "define", target, who.reason)),
                        }
                    }
                    None => {}
                }
                continue;
            }
            let Some(execution) = execution_of(record.stream) else {
                continue;
            };
            let event = codec::decode(record)?;
            if let Some((by, action, detail)) = command(event, tasks) {
                entries.push(entry(by, action, AuditTarget::Execution(execution), detail));
            }
        }
        Ok((entries, next))
    }
}

/// The command an execution's event records, if it records one: who, what,
/// and its detail.
fn command(event: Event, tasks: bool) -> Option<(Option<String>, &'static str, Option<String>)> {
    Some(match event {
        // A child's start is its parent's doing, not anyone's command.
        Event::ExecutionStarted {
            parent: None,
            workflow,
            by,
            reason,
            ..
        } => (by, "start", Some(because(workflow, reason))),
        Event::SignalReceived {
            name, by, reason, ..
        } => (by, "signal", Some(because(name, reason))),
        Event::ExecutionPaused { reason, by } => (by, "pause", Some(reason)),
        Event::ExecutionResumed { by, reason } => (by, "resume", reason),
        Event::HeldStepRetried { by, reason } | Event::CompensationRetried { by, reason } => {
            (by, "retry", reason)
        }
        Event::HeldStepSkipped { by, reason, .. } => (by, "skip", reason),
        // The engine skips what it has nothing to undo for by itself.
        Event::CompensationSkipped {
            by: Some(by),
            reason,
            ..
        } => (Some(by), "skip", reason),
        Event::ExecutionRedriven { by, reason } => (by, "redrive", reason),
        Event::CompensationBegan {
            reason: CompensationReason::Cancelled { reason },
            by,
            ..
        } => (by, "cancel", Some(format!("{reason} (compensating)"))),
        // After compensating, the cancel was `compensation_began`'s.
        Event::ExecutionCancelled { reason, by } => (by, "cancel", Some(reason)),
        Event::ExecutionTerminated { reason, by } => (by, "terminate", Some(reason)),
        Event::TaskCompleted {
            task, agent, by, ..
        } if tasks => (
            by,
            "task_completed",
            Some(format!(
                "{task}{}",
                agent.map(|a| format!(" by {a}")).unwrap_or_default()
            )),
        ),
        Event::TaskFailed {
            task, error, by, ..
        } if tasks => (
            by,
            "task_failed",
            Some(format!(
                "{task}: {}{}",
                error.kind,
                error.agent.map(|a| format!(" by {a}")).unwrap_or_default()
            )),
        ),
        _ => return None,
    })
}

/// A detail with the reason given after it.
fn because(detail: String, reason: Option<String>) -> String {
    match reason {
        Some(reason) => format!("{detail}: {reason}"),
        None => detail,
    }
}
