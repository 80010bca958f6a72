//! Messages between the engines of servers sharing a journal: what an
//! execution driven here asks of one another server drives (see `share`),
//! sent through the journal to whichever server holds that execution's
//! partition ([`Journal::send`]), and what arrives here for the executions
//! this engine drives ([`Journal::inbox`]).
//!
//! What crosses: a child to start (its id derives from its parent's, so it
//! falls in any partition), a child's end to its parent, a cancellation or
//! termination to a child, and a task's result reported here for an
//! execution that moved. Each is handled as it would be locally (a trigger
//! through `drive`, a child through `ensure_child`), so one arriving twice
//! changes nothing the second time: the machine refuses a trigger that no
//! longer applies, and a child that exists is not started again.
//!
//! Owns the messages' shape and their routing. It must never handle a
//! message for an execution it does not drive (it is handed back, to
//! arrive again at the partition's holder), nor decide anything itself.
//!
//! [`Journal::send`]: crate::store::Journal::send
//! [`Journal::inbox`]: crate::store::Journal::inbox

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::drive::Asked;
use super::outage::{self, Wake};
use super::{Engine, upgrade};
use crate::ExecutionId;
use crate::agents::{Outcome, TaskSpec};
use crate::error::Error;
use crate::machine::{ErrorInfo, ParentRef, Trigger};
use crate::store::{Delivery, stream_of};

/// What one engine asks of the execution a message is sent to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "snake_case")]
pub(super) enum Message {
    ChildCompleted {
        child: ExecutionId,
        output: Value,
    },
    ChildFailed {
        child: ExecutionId,
        error: ErrorInfo,
    },
    TaskCompleted {
        task: String,
        output: Value,
        /// The agent that reported it, as the event records it.
        #[serde(default)]
        agent: Option<String>,
    },
    TaskFailed {
        task: String,
        error: ErrorInfo,
        retry_after_ms: Option<u64>,
    },
    Cancel {
        reason: String,
        compensate: bool,
    },
    Terminate {
        reason: String,
    },
    TaskTimedOut {
        task: String,
        kind: String,
    },
    /// About tasks for agents, in the order they were sent: for the home
    /// (all an engine had ready, in one message through NATS), or a lone
    /// `Resend` for the holder of the partition it is sent to (see
    /// `dispatch`).
    Tasks {
        tasks: Vec<ToHome>,
    },
    /// Start the execution it is sent to, as asked (a schedule's fire).
    Start {
        workflow: String,
        version: Option<String>,
        input: Value,
        idempotency_key: Option<String>,
        priority: Option<u8>,
        by: Option<String>,
    },
    /// The home's breaker lets task `task` (which the receiver performs
    /// itself) go.
    Admitted {
        task: String,
    },
    /// Start the execution it is sent to, as `parent`'s child.
    StartChild {
        parent: ParentRef,
        workflow: String,
        version: String,
        input: Value,
        priority: u8,
    },
}

/// What an engine tells the home about its tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum ToHome {
    /// Queue it (`recovered`: queued again by a recovery, so one recorded
    /// as claimed may still run on an agent).
    Enqueue { spec: TaskSpec, recovered: bool },
    /// Its execution no longer wants it.
    Withdraw { task: String, capability: String },
    /// Its result was recorded.
    Settled {
        task: String,
        capability: Option<String>,
        outcome: Outcome,
        /// A failure that counts for its capability's breaker (not one it
        /// failed fast itself).
        counts: bool,
    },
    /// Send the outstanding tasks of the partition of the stream this is
    /// sent to again (a new home asks).
    Resend,
    /// Ask the breaker of a task the sender performs itself (`http`, an
    /// in-process handler): the home answers `Admitted` when it may go.
    Admit {
        execution: ExecutionId,
        task: String,
        capability: String,
    },
}

impl Message {
    /// The message carrying `trigger`, for the triggers one execution
    /// gives another (the rest each engine gives its own executions).
    fn of(trigger: &Trigger) -> Option<Message> {
        Some(match trigger.clone() {
            Trigger::ChildCompleted { child, output } => Message::ChildCompleted { child, output },
            Trigger::ChildFailed { child, error } => Message::ChildFailed { child, error },
            Trigger::TaskCompleted { task, output } => Message::TaskCompleted {
                task,
                output,
                agent: None,
            },
            Trigger::TaskFailed {
                task,
                error,
                retry_after_ms,
            } => Message::TaskFailed {
                task,
                error,
                retry_after_ms,
            },
            Trigger::Cancel { reason, compensate } => Message::Cancel { reason, compensate },
            Trigger::Terminate { reason } => Message::Terminate { reason },
            Trigger::TaskTimedOut { task, kind } => Message::TaskTimedOut { task, kind },
            _ => return None,
        })
    }

    /// The trigger it carries (`None` for a child's start).
    fn trigger(self) -> Option<Trigger> {
        Some(match self {
            Message::ChildCompleted { child, output } => Trigger::ChildCompleted { child, output },
            Message::ChildFailed { child, error } => Trigger::ChildFailed { child, error },
            Message::TaskCompleted { task, output, .. } => Trigger::TaskCompleted { task, output },
            Message::TaskFailed {
                task,
                error,
                retry_after_ms,
            } => Trigger::TaskFailed {
                task,
                error,
                retry_after_ms,
            },
            Message::Cancel { reason, compensate } => Trigger::Cancel { reason, compensate },
            Message::Terminate { reason } => Trigger::Terminate { reason },
            Message::TaskTimedOut { task, kind } => Trigger::TaskTimedOut { task, kind },
            Message::StartChild { .. }
            | Message::Start { .. }
            | Message::Tasks { .. }
            | Message::Admitted { .. } => {
                return None;
            }
        })
    }
}

impl Engine {
    /// Sends `message` to the server driving `to`; refused (an outage)
    /// while NATS does not take it.
    pub(super) async fn send(&self, to: ExecutionId, message: &Message) -> Result<(), Error> {
        let bytes = serde_json::to_vec(message).map_err(|source| Error::Codec {
            what: "a message to another server".into(),
            source,
        })?;
        Ok(self
            .inner
            .store
            .journal()
            .send(stream_of(to), bytes)
            .await?)
    }

    /// Delivers `trigger` to `to`, which another server drives: through
    /// the journal, kept for later if it cannot be sent now.
    pub(super) async fn deliver_elsewhere(&self, to: ExecutionId, trigger: Trigger) {
        let Some(message) = Message::of(&trigger) else {
            tracing::debug!(execution = %to, "trigger not delivered: another server drives it");
            return;
        };
        match self.send(to, &message).await {
            Ok(()) => {}
            Err(e) if outage::is_storage_outage(&e) => {
                self.keep_for_later(Wake::Trigger(to, trigger))
            }
            Err(e) => tracing::warn!(execution = %to, error = %e, "trigger not sent to its server"),
        }
    }

    /// Reports a task's result for `to`, which another server drives: sent
    /// to it (with the agent that reported, for its record), which records
    /// it as if reported there. Refused while it cannot be sent.
    pub(super) async fn report_elsewhere(
        &self,
        to: ExecutionId,
        trigger: Trigger,
        agent: Option<&str>,
    ) -> Result<(), Error> {
        let mut message = Message::of(&trigger).ok_or_else(|| {
            Error::Inconsistent(format!("a {} is not a task's result", trigger.command()))
        })?;
        if let Message::TaskCompleted { agent: by, .. } = &mut message {
            *by = agent.map(str::to_owned);
        }
        self.send(to, &message).await
    }

    /// Has the server driving `id`'s partition start it as `request` asks.
    pub(super) async fn start_elsewhere(
        &self,
        id: ExecutionId,
        request: &super::StartRequest,
        by: Option<&str>,
    ) -> Result<(), Error> {
        let message = Message::Start {
            workflow: request.workflow.clone(),
            version: request.version.clone(),
            input: request.input.clone(),
            idempotency_key: request.idempotency_key.clone(),
            priority: request.priority,
            by: by.map(str::to_owned),
        };
        self.send(id, &message).await
    }

    /// Has the server driving `child`'s partition start it.
    pub(super) async fn start_child_elsewhere(
        &self,
        parent: ParentRef,
        child: ExecutionId,
        workflow: &str,
        version: &str,
        input: &Value,
        priority: u8,
    ) -> Result<(), Error> {
        let message = Message::StartChild {
            parent,
            workflow: workflow.to_owned(),
            version: version.to_owned(),
            input: input.clone(),
            priority,
        };
        self.send(child, &message).await
    }

    /// Handles what arrives for the executions this engine drives, each
    /// message on a task of its own.
    pub(super) fn run_inbox(&self) {
        let Some(mut inbox) = self.inner.store.journal().inbox() else {
            return;
        };
        let weak = std::sync::Arc::downgrade(&self.inner);
        self.inner.tasks.spawn(async move {
            while let Some(delivery) = inbox.recv().await {
                let Some(engine) = upgrade(&weak) else { return };
                let handling = engine.clone();
                engine
                    .inner
                    .tasks
                    .spawn(async move { handling.handle(delivery).await });
            }
        });
    }

    async fn handle(&self, delivery: Delivery) {
        let to = ExecutionId::from_bytes(*delivery.to.as_bytes());
        if !self.owns(to) {
            return delivery.later();
        }
        let message: Message = match serde_json::from_slice(&delivery.message) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(execution = %to, error = %e, "a message from another server not understood: dropped");
                return delivery.done();
            }
        };
        let outcome = match message {
            Message::StartChild {
                parent,
                workflow,
                version,
                input,
                priority,
            } => {
                self.ensure_child(parent, to, &workflow, &version, input, priority)
                    .await
            }
            Message::Start {
                workflow,
                version,
                input,
                idempotency_key,
                priority,
                by,
            } => {
                let request = super::StartRequest {
                    workflow,
                    version,
                    input,
                    idempotency_key,
                    priority,
                    tags: Default::default(),
                };
                match self.startable(&request) {
                    Ok(workflow) => {
                        let acting = self.acting_as(by.as_deref());
                        self.start_with_id(to, workflow, request, None, acting.asked())
                            .await
                            .map(|_| ())
                    }
                    Err(e) => Err(e),
                }
            }
            Message::Tasks { tasks } => {
                // Not the home (any more): it arrives again at the next.
                let for_home = tasks.iter().any(|t| !matches!(t, ToHome::Resend));
                if for_home && !self.is_home() {
                    return delivery.later();
                }
                for task in tasks {
                    self.at_home(to, task);
                }
                Ok(())
            }
            Message::Admitted { task } => {
                self.admitted(to, &task).await;
                Ok(())
            }
            message => {
                let agent = match &message {
                    Message::TaskCompleted { agent, .. } => agent.clone(),
                    _ => None,
                };
                let asked = Asked {
                    agent: agent.as_deref(),
                    ..Asked::ENGINE
                };
                match message.trigger() {
                    Some(trigger) => self.drive_unseen(to, trigger, asked).await,
                    None => Ok(()),
                }
            }
        };
        match outcome {
            Ok(()) => delivery.done(),
            Err(Error::Rejected(r)) => {
                tracing::debug!(execution = %to, reason = %r, "message from another server refused");
                delivery.done()
            }
            // It moved again, or the journal refuses writes: it arrives
            // again, here or at its next holder.
            Err(_) if !self.owns(to) => delivery.later(),
            Err(e) if outage::is_storage_outage(&e) => delivery.later(),
            Err(e) => {
                tracing::warn!(execution = %to, error = %e, "message from another server failed");
                delivery.done()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every trigger one execution gives another goes through as itself.
    #[test]
    fn a_message_carries_its_trigger_unchanged() {
        let child = ExecutionId::from_bytes([3; 16]);
        let error = ErrorInfo::new("boom", "it broke");
        for trigger in [
            Trigger::ChildCompleted {
                child,
                output: serde_json::json!({"a": 1}),
            },
            Trigger::ChildFailed {
                child,
                error: error.clone(),
            },
            Trigger::TaskCompleted {
                task: "t".into(),
                output: Value::Null,
            },
            Trigger::TaskFailed {
                task: "t".into(),
                error,
                retry_after_ms: Some(5),
            },
            Trigger::Cancel {
                reason: "r".into(),
                compensate: true,
            },
            Trigger::Terminate { reason: "r".into() },
            Trigger::TaskTimedOut {
                task: "t".into(),
                kind: "start_to_close".into(),
            },
        ] {
            let message = Message::of(&trigger).expect("it crosses");
            let bytes = serde_json::to_vec(&message).unwrap();
            let read: Message = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(read.trigger(), Some(trigger));
        }
        assert_eq!(Message::of(&Trigger::Continue), None);
        assert_eq!(Message::of(&Trigger::TimerFired { act: 1 }), None);
    }
}
