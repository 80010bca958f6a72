//! One trigger of one execution: decide, append, then perform what the new
//! state needs. The core loop of the runtime.
//!
//! Owns the live executions' states and the order of the three steps: the
//! machine decides (pure), the events are appended (and acknowledged
//! durable), and only then are effects performed and indexes updated. If
//! the append fails, the live state goes back to what the journal holds.
//! It must never perform an effect of an event that is not stored, nor let
//! two triggers of one execution run at once (each holds the execution's
//! owner lock from deciding to reconciling).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};
use tracing::Instrument;

use super::pace::Bucket;
use super::{Engine, metrics, outage};
use crate::ExecutionId;
use crate::error::Error;
use crate::machine::{
    self, Ctx, Effect, EffectKey, Event, ExecutionState, Rejection, StartParams, Status, Trigger,
};
use crate::model::Workflow;
use crate::store::JournalError;
use crate::store::catalog::WorkflowCatalog;

/// A live execution and what the runtime has armed for it.
#[derive(Debug)]
pub(super) struct Live {
    pub(super) state: ExecutionState,
    pub(super) workflow: Arc<Workflow>,
    /// Keys of the effects performed and still wanted.
    pub(super) armed: HashMap<EffectKey<'static>, Effect>,
    /// Events since the last snapshot, and their payloads' bytes.
    pub(super) unsnapshotted: u64,
    pub(super) unsnapshotted_bytes: u64,
    /// The size of the last snapshot written here (0: none yet).
    pub(super) snapshot_bytes: u64,
    /// Its budget of events per second (`pace`); `None` until its first
    /// commit here, which is a full bucket.
    pub(super) pace: Option<Bucket>,
    /// Whether the log said yet that it is paced (once per execution).
    pub(super) paced_logged: bool,
    /// The state holds events the journal refused, and reading it back
    /// failed too (a storage outage): it is read again before any use
    /// (`lock_fresh`), so an outage delays the execution but never strands
    /// it and never shows what was not stored.
    pub(super) stale: bool,
}

impl Live {
    pub(super) fn new(state: ExecutionState, workflow: Arc<Workflow>) -> Live {
        Live {
            state,
            workflow,
            armed: HashMap::new(),
            unsnapshotted: 0,
            unsnapshotted_bytes: 0,
            snapshot_bytes: 0,
            pace: None,
            paced_logged: false,
            stale: false,
        }
    }
}

/// Who asked for a trigger, as the machine records it (see [`Ctx::by`]).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Asked<'a> {
    /// The access token's name.
    pub by: Option<&'a str>,
    /// The agent reporting a task (`name (id)`).
    pub agent: Option<&'a str>,
    /// Why, as whoever asked said.
    pub reason: Option<&'a str>,
}

impl Asked<'_> {
    /// Nobody: what the engine does by itself (timers, leases, children).
    pub const ENGINE: Asked<'static> = Asked {
        by: None,
        agent: None,
        reason: None,
    };
}

impl Engine {
    /// Starts execution `id` (also used for children, whose id is derived).
    pub(super) async fn start_execution(
        &self,
        id: ExecutionId,
        workflow: Arc<Workflow>,
        params: StartParams,
        asked: Asked<'_>,
    ) -> Result<Status, Error> {
        let key = params.idempotency_key.clone();
        let now = self.inner.clock.now_ms();
        let (state, events) = {
            let catalog = self.read_catalog()?;
            machine::start(id, &workflow, &self.ctx(&catalog, now, asked), params)?
        };
        let live = Arc::new(Mutex::new(Live::new(state, workflow)));
        let mut guard = live.lock().await;
        if let Some(key) = &key
            && !self.inner.index.claim_key(key, id)
        {
            return Err(Error::Conflict(format!(
                "idempotency key {key} is being used by a concurrent start"
            )));
        }
        self.lock_live().insert(id, live.clone());
        if let Err(e) = self.commit(&mut guard, &events, now, &HashMap::new()).await {
            self.lock_live().remove(&id);
            if let Some(key) = &key {
                self.inner.index.release_key(key);
            }
            return Err(e);
        }
        Ok(guard.state.status)
    }

    /// Handles a trigger for one execution: decide, append, perform.
    pub(super) async fn drive(
        &self,
        id: ExecutionId,
        trigger: Trigger,
        asked: Asked<'_>,
    ) -> Result<ExecutionState, Error> {
        self.drive_then(id, trigger, asked, |state| state.clone())
            .await
    }

    /// Like `drive`, without a copy of the state after it (which costs in
    /// proportion to the state: a map step's items, every completed step).
    pub(super) async fn drive_unseen(
        &self,
        id: ExecutionId,
        trigger: Trigger,
        asked: Asked<'_>,
    ) -> Result<(), Error> {
        self.drive_then(id, trigger, asked, |_| ()).await
    }

    /// Drives a trigger under the execution's lock, then reads what
    /// `then` takes from the state before the lock is let go.
    async fn drive_then<T>(
        &self,
        id: ExecutionId,
        trigger: Trigger,
        asked: Asked<'_>,
        then: impl FnOnce(&ExecutionState) -> T,
    ) -> Result<T, Error> {
        let live = self.live_for(id, trigger.command())?;
        let mut live = self.lock_fresh(&live).await?;
        let span = tracing::debug_span!("execution", %id, workflow = %live.state.workflow);
        self.drive_locked(&mut live, trigger, asked)
            .instrument(span)
            .await?;
        Ok(then(&live.state))
    }

    /// The live execution `id`, or why a `command` cannot reach it: it has
    /// ended (its status says so) or does not exist.
    pub(super) fn live_for(
        &self,
        id: ExecutionId,
        command: &'static str,
    ) -> Result<Arc<Mutex<Live>>, Error> {
        self.live_of(id).ok_or_else(|| match self.summary(id) {
            Some(summary) => Error::Rejected(Rejection::WrongState {
                command,
                status: summary.status.as_str(),
                hint: None,
            }),
            None => Error::UnknownExecution(id),
        })
    }

    /// Like `drive`, for triggers nobody waits on (timers, leases, children).
    pub(super) async fn deliver(&self, id: ExecutionId, trigger: Trigger) {
        // Another server drives it (see `share`).
        if !self.owns(id) {
            return self.deliver_elsewhere(id, trigger).await;
        }
        match self.drive_unseen(id, trigger.clone(), Asked::ENGINE).await {
            Ok(()) => {}
            Err(Error::Rejected(r)) => {
                tracing::debug!(execution = %id, reason = %r, "trigger refused")
            }
            // Nobody else would deliver it again: keep it for when the
            // journal takes writes (see `outage`).
            // Its partition moved to another server meanwhile.
            Err(_) if !self.owns(id) => Box::pin(self.deliver_elsewhere(id, trigger)).await,
            Err(e) if outage::is_storage_outage(&e) => {
                self.keep_for_later(outage::Wake::Trigger(id, trigger))
            }
            Err(e) => tracing::warn!(execution = %id, error = %e, "trigger failed"),
        }
    }

    /// Drives a trigger for an execution whose owner lock the caller holds.
    pub(super) async fn drive_locked(
        &self,
        live: &mut Live,
        trigger: Trigger,
        asked: Asked<'_>,
    ) -> Result<(), Error> {
        if live.state.status.is_terminal() && trigger != Trigger::Redrive {
            return Err(Error::Rejected(Rejection::WrongState {
                command: trigger.command(),
                status: live.state.status.as_str(),
                hint: None,
            }));
        }
        let now = self.inner.clock.now_ms();
        let before = metrics::before(&live.state);
        let decided = {
            let catalog = self.read_catalog()?;
            let ctx = self.ctx(&catalog, now, asked);
            machine::handle(&mut live.state, &live.workflow, &ctx, trigger)
        };
        let events = match decided {
            Ok(events) => events,
            Err(e @ Rejection::Internal(_)) => {
                // The machine may have applied part of a trigger it then
                // refused: go back to what is stored.
                self.reload(live).await?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        self.commit(live, &events, now, &before).await
    }

    /// Appends what the machine decided, then performs its effects.
    pub(super) async fn commit(
        &self,
        live: &mut Live,
        events: &[Event],
        now: u64,
        before: &HashMap<u64, metrics::Before>,
    ) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let id = live.state.id;
        let first_seq = live.state.seq + 1 - events.len() as u64;
        // Listen for awaited events before the append is requested: a
        // subscriber sees `event_awaited` as soon as it is stored and may
        // publish the event at once; `publish` then finds this execution and
        // takes its lock, which waits for this commit. (After a failed
        // append the entry is stale, and `publish` checks the state.)
        for a in live.state.activations.values() {
            if let machine::Waiting::Event {
                name, correlation, ..
            } = &a.waiting
            {
                self.inner
                    .index
                    .awaits(name, correlation.as_ref(), id, a.act);
            }
        }
        let (appended, bytes) = match self.inner.store.append(id, first_seq, events, now) {
            Ok((appended, bytes)) => (appended.await.map_err(Error::from), bytes),
            Err(e) => (Err(e), 0),
        };
        if let Err(e) = appended {
            self.undo(live).await;
            return Err(e);
        }
        for event in events {
            tracing::debug!(kind = event.kind(), "recorded");
        }
        if first_seq == 1 {
            tracing::info!(execution = %id, workflow = %live.state.workflow,
                parent = ?live.state.parent.map(|p| p.execution), "execution started");
        }
        self.inner.metrics.observe(
            &live.state.workflow,
            live.state.started_at_ms,
            now,
            before,
            events,
        );
        self.inner.index.record(&live.state);
        self.limits_saw(&live.state);
        live.unsnapshotted += events.len() as u64;
        live.unsnapshotted_bytes += bytes;
        let pacing = self.inner.pacing;
        let instant = tokio::time::Instant::now();
        live.pace
            .get_or_insert_with(|| Bucket::full(pacing, instant))
            .charge(pacing, events.len() as u64, instant);
        // Results settle before reconcile withdraws what is no longer
        // outstanding (see `dispatch`).
        self.tasks_settled(id, events, before, now);
        self.reconcile(live);
        let ended = live.state.status.is_terminal();
        // Every `snapshot_every` events, unless the events since the last
        // snapshot take fewer bytes than it did: a big state (a map with
        // thousands of items) is then not written again after every
        // thousand small events. Replaying from a snapshot so taken reads
        // at most about its own size in events.
        let due = live.unsnapshotted >= self.inner.snapshot_every
            && live.unsnapshotted_bytes >= live.snapshot_bytes;
        if ended || due {
            live.unsnapshotted = 0;
            live.unsnapshotted_bytes = 0;
            // A snapshot is derived data: nothing waits for it (the journal
            // takes the request when called, after the events it covers).
            let (written, bytes) = self.inner.store.put_snapshot(&live.state)?;
            live.snapshot_bytes = bytes;
            self.inner.tasks.spawn(async move {
                if let Err(e) = written.await {
                    tracing::warn!(execution = %id, error = %e, "snapshot not written");
                }
            });
        }
        if ended {
            let state = &live.state;
            let duration_ms = now.saturating_sub(state.started_at_ms);
            if let Some(error) = state
                .error
                .as_ref()
                .filter(|e| e.kind == machine::error_types::HISTORY_LIMIT)
            {
                tracing::warn!(execution = %id, workflow = %state.workflow,
                    events = state.seq, limit = self.inner.limits.history_events_max,
                    error = %error.message,
                    "execution failed: its history is full; if it is no runaway loop, \
                     raise max_history_events (retrace serve --max-history-events)");
            }
            match &state.error {
                Some(error) => tracing::info!(execution = %id, workflow = %state.workflow,
                    status = state.status.as_str(), duration_ms, error_type = %error.kind,
                    error = %error.message, "execution ended"),
                None => tracing::info!(execution = %id, workflow = %state.workflow,
                    status = state.status.as_str(), duration_ms, "execution ended"),
            }
            self.lock_live().remove(&id);
            // After the index holds the end (see `waiters`).
            self.inner.waiters.ended(&live.state);
            if let Some(parent) = live.state.parent {
                self.notify_parent(parent, &live.state);
            }
        }
        Ok(())
    }

    /// After a failed append, what the live state holds is ahead of the
    /// journal: go back to what is stored. The append's error is what the
    /// caller reports, whatever happens here: an execution whose start was
    /// never stored has nothing to go back to (its starter forgets it), and
    /// one that cannot be read back is dropped from memory, so its next
    /// trigger finds it gone rather than deciding on unstored events.
    async fn undo(&self, live: &mut Live) {
        let id = live.state.id;
        match self.inner.store.load_state(id).await {
            Ok(Some(stored)) => live.state = stored,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(execution = %id, error = %e,
                    "cannot read back after a failed append; will before its next use");
                live.stale = true;
            }
        }
    }

    /// Locks a live execution, first reading its state back if a failed
    /// append left it unconfirmed (see `undo`).
    pub(super) async fn lock_fresh<'a>(
        &self,
        live: &'a Mutex<Live>,
    ) -> Result<MutexGuard<'a, Live>, Error> {
        let mut guard = live.lock().await;
        if guard.stale {
            self.reload(&mut guard).await?;
            guard.stale = false;
        }
        Ok(guard)
    }

    /// Replaces a live state with what the journal holds.
    async fn reload(&self, live: &mut Live) -> Result<(), Error> {
        let id = live.state.id;
        live.state = self
            .inner
            .store
            .load_state(id)
            .await?
            .ok_or(Error::UnknownExecution(id))?;
        Ok(())
    }

    /// Makes a failed execution live again, so a redrive can reach it.
    pub(super) async fn revive(&self, id: ExecutionId) -> Result<(), Error> {
        if self.live_of(id).is_some() {
            return Ok(());
        }
        let state = self
            .inner
            .store
            .load_state(id)
            .await?
            .ok_or(Error::UnknownExecution(id))?;
        if state.status == Status::Failed {
            let workflow = self.workflow_of(&state)?;
            let live = Arc::new(Mutex::new(Live::new(state, workflow)));
            self.lock_live().entry(id).or_insert(live);
        }
        Ok(())
    }

    /// Drops a live execution that has ended (a refused redrive).
    pub(super) async fn forget_if_ended(&self, id: ExecutionId) {
        if let Some(live) = self.live_of(id)
            && self
                .lock_fresh(&live)
                .await
                .is_ok_and(|l| l.state.status.is_terminal())
        {
            self.lock_live().remove(&id);
        }
    }

    /// What the machine is given besides the state: the time, fresh
    /// entropy, the workflows it may start as children, and who asked.
    fn ctx<'a>(&'a self, catalog: &'a WorkflowCatalog, now_ms: u64, asked: Asked<'a>) -> Ctx<'a> {
        Ctx {
            now_ms,
            entropy: uuid::Uuid::new_v4().as_u64_pair().0,
            versions: catalog,
            defaults: &self.inner.defaults,
            limits: &self.inner.limits,
            by: asked.by,
            agent: asked.agent,
            reason: asked.reason,
            placement: self.placement(),
        }
    }

    pub(super) fn workflow_of(&self, state: &ExecutionState) -> Result<Arc<Workflow>, Error> {
        self.read_catalog()?
            .by_version(&state.version)
            .ok_or_else(|| Error::UnknownWorkflow {
                name: state.workflow.clone(),
                version: Some(state.version.clone()),
            })
    }
}

/// Whether a start failed only because someone else started the same
/// execution first (a child started twice: fine).
pub(super) fn started_elsewhere(e: &Error) -> bool {
    matches!(e, Error::Journal(JournalError::SeqConflict { .. }))
}
