//! Tasks for agents: queued in one registry, the home's.
//!
//! On one server (or a journal nobody shares) the home is this engine, and
//! everything here happens in place: a task passes its capability's
//! breaker and joins the registry's queue, a withdrawn one leaves it, a
//! recorded result settles its claim and counts for the breaker. On a
//! journal several servers share, the registry that agents poll is the
//! home's (the holder of partition 0, see `home`), so its priorities,
//! fairness, capability limits and breakers count every task of every
//! server, as on one: an engine that is not the home sends each of those
//! to it through the journal's inbox instead, in the order it made them
//! (one sender, one at a time). The home handles them as its own.
//!
//! When a partition moves, its old holder sends nothing about the tasks it
//! drops (the new holder queues the same task ids again, and a queued
//! task is queued once). When the home moves, the new home asks every
//! server to send its outstanding tasks again, and the old one forgets
//! the tasks of executions it does not drive.
//!
//! Owns where a task's queueing, withdrawal and settlement happen. It must
//! never decide anything about a task (the registry and the breakers do).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use tokio::sync::mpsc;

use super::inbox::{Message, ToHome};
use super::metrics::Before;
use super::{Engine, Inner, upgrade};
use crate::ExecutionId;
use crate::agents::{Outcome, TaskSpec};
use crate::machine::{Effect, Event, error_types};
use crate::model::HTTP_CAPABILITY;
use crate::store::stream_of;

/// The address of the home: the nil id is a home stream's (partition 0).
const HOME: ExecutionId = ExecutionId::from_bytes([0; 16]);

/// An engine's messages to the home, in order.
pub(super) type Outbox = mpsc::UnboundedSender<(ExecutionId, ToHome)>;

impl Engine {
    /// Whether this engine is the home: holds partition 0 (always, on a
    /// journal nobody shares).
    pub(super) fn is_home(&self) -> bool {
        self.drives_partition(0)
    }

    /// Queues a task for agents, here or at the home.
    pub(super) fn queue_task(&self, spec: TaskSpec, recovered: bool) {
        if self.is_home() {
            self.enqueue_here(spec, recovered);
        } else {
            self.to_home(spec.execution, ToHome::Enqueue { spec, recovered });
        }
    }

    /// Whether what the home does for `capability`'s tasks (queueing,
    /// withdrawing, settling, asking and feeding the breaker) is done
    /// here: this engine is the home, or it performs the capability's
    /// tasks itself and the home keeps no breaker for it (see `breakers`).
    pub(super) fn home_work_here(&self, capability: &str) -> bool {
        self.is_home() || (self.handled_here(capability) && !self.has_breaker(capability))
    }

    /// Takes a task back from the agents, here or at the home (one this
    /// engine performs itself was never queued there: the home hears of
    /// it only to free its breaker's probe).
    pub(super) fn unqueue_task(&self, execution: ExecutionId, task: &str, capability: &str) {
        if self.home_work_here(capability) {
            self.withdraw_here(task, capability);
        } else {
            self.to_home(
                execution,
                ToHome::Withdraw {
                    task: task.to_owned(),
                    capability: capability.to_owned(),
                },
            );
        }
    }

    /// Results just recorded: their claims settle and their breakers
    /// count, here or at the home.
    pub(super) fn tasks_settled(
        &self,
        execution: ExecutionId,
        events: &[Event],
        before: &HashMap<u64, Before>,
        now: u64,
    ) {
        for event in events {
            let (act, task, outcome, counts) = match event {
                Event::TaskCompleted { act, task, .. } => (act, task, Outcome::Succeeded, true),
                Event::TaskFailed {
                    act, task, error, ..
                } => (
                    act,
                    task,
                    Outcome::Failed,
                    error.kind != error_types::CIRCUIT_OPEN,
                ),
                _ => continue,
            };
            let capability = before
                .get(act)
                .and_then(|b| b.task.as_ref())
                .map(|(capability, _)| capability.clone());
            if capability.as_deref().is_none_or(|c| self.home_work_here(c)) {
                self.settled_here(task, capability.as_deref(), outcome, counts, now);
            } else {
                self.to_home(
                    execution,
                    ToHome::Settled {
                        task: task.clone(),
                        capability,
                        outcome,
                        counts,
                    },
                );
            }
        }
    }

    fn enqueue_here(&self, spec: TaskSpec, recovered: bool) {
        if !self.breaker_lets(spec.execution, &spec.capability, &spec.id) {
            return;
        }
        // Claimed before a restart: an agent may still run it, so it
        // holds its capability's slot a while.
        if recovered && self.was_claimed(&spec.capability, &spec.id) {
            let until_ms = self.inner.clock.now_ms().saturating_add(spec.lease_ms);
            self.inner.agents.enqueue_recovered(spec, until_ms);
        } else {
            self.inner.agents.enqueue(spec);
        }
    }

    fn withdraw_here(&self, task: &str, capability: &str) {
        self.inner.agents.withdraw(task);
        self.breaker_released(capability, task);
    }

    fn settled_here(
        &self,
        task: &str,
        capability: Option<&str>,
        outcome: Outcome,
        counts: bool,
        now: u64,
    ) {
        let _ = self.inner.agents.settle(task, outcome);
        if let Some(capability) = capability.filter(|_| counts) {
            self.breaker_counts(capability, task, outcome == Outcome::Failed, now);
        }
    }

    /// Sends `message` to the home, after every message sent before.
    pub(super) fn to_home(&self, execution: ExecutionId, message: ToHome) {
        if self.inner.outbox.send((execution, message)).is_err() {
            tracing::warn!(%execution, "the engine is stopping: a task message for the home is not sent");
        }
    }

    /// The task that sends the messages to the home, in order, each until
    /// it is taken: all those ready at once in one message (up to
    /// `OUTBOX_BATCH`), a `Resend` on its own (it goes to a partition's
    /// holder, not to the home).
    pub(super) fn run_outbox(&self, mut outbox: mpsc::UnboundedReceiver<(ExecutionId, ToHome)>) {
        let weak = Arc::downgrade(&self.inner);
        self.inner.tasks.spawn(async move {
            let mut ready = std::collections::VecDeque::new();
            while let Some(first) = outbox.recv().await {
                ready.push_back(first);
                while ready.len() < OUTBOX_BATCH {
                    match outbox.try_recv() {
                        Ok(next) => ready.push_back(next),
                        Err(_) => break,
                    }
                }
                while let Some((execution, message)) = ready.pop_front() {
                    let mut batch = vec![message];
                    let resend = |m: &ToHome| matches!(m, ToHome::Resend);
                    while !resend(&batch[0])
                        && ready.front().is_some_and(|(_, next)| !resend(next))
                        && let Some((_, next)) = ready.pop_front()
                    {
                        batch.push(next);
                    }
                    if !send_to_home(&weak, execution, batch).await {
                        return;
                    }
                }
            }
        });
    }

    /// Handles a message about tasks: at the home, or (`Resend`) at the
    /// holder of the partition it was sent to.
    pub(super) fn at_home(&self, execution: ExecutionId, message: ToHome) {
        let now = self.inner.clock.now_ms();
        tracing::debug!(?message, "a message about tasks for agents, at the home");
        match message {
            ToHome::Enqueue { spec, recovered } => self.enqueue_here(spec, recovered),
            ToHome::Withdraw { task, capability } => self.withdraw_here(&task, &capability),
            ToHome::Settled {
                task,
                capability,
                outcome,
                counts,
            } => self.settled_here(&task, capability.as_deref(), outcome, counts, now),
            ToHome::Resend => {
                let partition = self.partition_of(execution);
                self.resend_tasks(&BTreeSet::from([partition]));
            }
            ToHome::Admit {
                execution,
                task,
                capability,
            } => self.admit(execution, task, &capability),
        }
    }

    /// Queues again, wherever the home is now, the outstanding agent tasks
    /// of the executions this engine drives in `partitions`.
    pub(super) fn resend_tasks(&self, partitions: &BTreeSet<u32>) {
        let lives: Vec<_> = self
            .lock_live()
            .iter()
            .filter(|(id, _)| partitions.contains(&self.partition_of(**id)))
            .map(|(_, live)| live.clone())
            .collect();
        let engine = self.clone();
        self.inner.tasks.spawn(async move {
            for live in lives {
                let live = live.lock().await;
                for effect in live.armed.values() {
                    let Effect::Task { capability, .. } = effect else {
                        continue;
                    };
                    if engine.handled_here(capability) {
                        continue;
                    }
                    let now_ms = engine.inner.clock.now_ms();
                    if let Some(spec) = task_spec(live.state.id, effect.clone(), now_ms) {
                        engine.queue_task(spec, true);
                    }
                }
            }
        });
    }

    /// This engine became the home: it reads the home's tables again, and
    /// every server sends its outstanding tasks again (this one's, queued
    /// here at once).
    pub(super) fn became_home(&self, partitions: u32) {
        tracing::info!("this server is the home now: tasks for agents are queued here");
        let engine = self.clone();
        self.inner.tasks.spawn(async move {
            if let Err(e) = engine.take_up_home().await {
                tracing::warn!(error = %e, "cannot read the home's tables again");
            }
            engine.resend_tasks(&engine.inner.owned.all());
            for partition in 0..partitions {
                if engine.drives_partition(partition) {
                    continue;
                }
                if let Some(to) = first_in(partition, partitions) {
                    engine.to_home(to, ToHome::Resend);
                }
            }
        });
    }

    /// This engine is no longer the home: its registry's tasks are the new
    /// home's now (which asks for them again), so it forgets them all.
    pub(super) fn left_home(&self) {
        let tasks = self.inner.agents.outstanding_ids();
        for task in &tasks {
            self.inner.agents.withdraw(task);
        }
        self.stop_webhooks();
        tracing::info!(tasks = tasks.len(), "this server is no longer the home");
    }

    /// Whether tasks of `capability` are performed by this engine itself
    /// (in-process handlers, `http`), not by agents.
    pub(super) fn handled_here(&self, capability: &str) -> bool {
        capability == HTTP_CAPABILITY
            || self
                .inner
                .handlers
                .read()
                .is_ok_and(|h| h.contains_key(capability))
    }
}

/// The spec of a task effect, as the agents' registry queues it (`None`
/// for another effect).
pub(super) fn task_spec(execution: ExecutionId, effect: Effect, now_ms: u64) -> Option<TaskSpec> {
    let Effect::Task {
        task,
        step,
        capability,
        attempt,
        input,
        timeouts,
        priority,
        fairness_key,
        agent_version,
        ..
    } = effect
    else {
        return None;
    };
    Some(TaskSpec {
        id: task,
        execution,
        step,
        capability,
        attempt,
        input,
        lease_ms: timeouts.start_to_close_ms,
        schedule_to_start_ms: timeouts.schedule_to_start_ms,
        heartbeat_ms: timeouts.heartbeat_ms,
        scheduled_at_ms: now_ms,
        priority,
        fairness_key,
        agent_version,
    })
}

/// An execution id in `partition` (any: it only addresses the partition).
fn first_in(partition: u32, partitions: u32) -> Option<ExecutionId> {
    (0u32..1_000_000)
        .map(|i| {
            let mut bytes = [0x5a; 16];
            bytes[..4].copy_from_slice(&i.to_le_bytes());
            ExecutionId::from_bytes(bytes)
        })
        .find(|id| retrace_journal::partition_of(stream_of(*id), partitions) == partition)
}

/// How many messages for the home one NATS message carries at most.
const OUTBOX_BATCH: usize = 256;

/// Sends `batch` (messages for the home in order, or one `Resend` for the
/// holder of `execution`'s partition) until it is taken, or handles it here
/// when this engine is the home; `false` once the engine is gone.
async fn send_to_home(weak: &Weak<Inner>, execution: ExecutionId, batch: Vec<ToHome>) -> bool {
    let resend = matches!(batch.as_slice(), [ToHome::Resend]);
    let to = if resend { execution } else { HOME };
    let message = Message::Tasks { tasks: batch };
    loop {
        let Some(engine) = upgrade(weak) else {
            return false;
        };
        // The home may have come here meanwhile.
        if !resend && engine.is_home() {
            if let Message::Tasks { tasks } = message {
                for task in tasks {
                    engine.at_home(execution, task);
                }
            }
            return true;
        }
        match engine.send(to, &message).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot send a task message to the home; trying again");
                let clock = engine.inner.clock.clone();
                drop(engine);
                clock.sleep_until(clock.now_ms() + 1_000).await;
            }
        }
    }
}
