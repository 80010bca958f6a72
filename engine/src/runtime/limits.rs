//! Workflow limits on a running engine: the limiter fed with every limited
//! execution's state after each commit and at recovery, and the loop that
//! lets waiting executions go.
//!
//! A grant counts in the limiter before `limit_acquired` is appended, so a
//! slot is never handed out twice; a grant the execution refuses (it ended
//! first) is taken back, and one the journal refuses is kept and delivered
//! again like any wake-up. After a crash the limiter is rebuilt from what
//! was stored alone.
//!
//! Owns those feeds and the loop's wake-ups (a change, or the moment a
//! rate window has room). It must never decide who goes next
//! (`limits::Limiter` does).

use std::sync::{Arc, MutexGuard, PoisonError};

use super::Engine;
use super::drive::Asked;
use super::outage;
use super::recover::{sleep_or_woken, upgrade};
use crate::ExecutionId;
use crate::limits::{HeldBy, Limiter};
use crate::machine::{ExecutionState, Trigger};

impl Engine {
    pub(super) fn limiter(&self) -> MutexGuard<'_, Limiter> {
        self.inner
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A stored state of a limited execution: where it stands now.
    pub(super) fn limits_saw(&self, state: &ExecutionState) {
        if state.limits.is_none() {
            return;
        }
        let now_ms = self.inner.clock.now_ms();
        let wake = {
            let mut limiter = self.limiter();
            limiter.observe(state);
            limiter.has_work(now_ms)
        };
        if wake {
            self.inner.limits_changed.notify_one();
        }
    }

    /// A stored state read at recovery, ended or not.
    pub(super) fn limits_recovered(&self, state: &ExecutionState) {
        if state.limits.is_none() {
            return;
        }
        let now_ms = self.inner.clock.now_ms();
        let mut limiter = self.limiter();
        limiter.recovered(state, now_ms);
        limiter.observe(state);
    }

    /// What holds a waiting execution (`None` if it waits for no limit).
    pub fn limit_holding(&self, state: &ExecutionState) -> Option<HeldBy> {
        let now_ms = self.inner.clock.now_ms();
        self.limiter().held_by(state, now_ms)
    }

    /// Executions waiting for their workflow's limits.
    pub fn limit_waiting(&self) -> usize {
        self.limiter().waiting()
    }

    /// The loop that lets waiting executions go: grants what has room, then
    /// sleeps until a change or until a rate window has room.
    pub(super) fn run_limits(&self) {
        let weak = Arc::downgrade(&self.inner);
        let notify = self.inner.limits_changed.clone();
        let clock = self.inner.clock.clone();
        self.inner.tasks.spawn(async move {
            loop {
                let Some(engine) = upgrade(&weak) else { return };
                let now_ms = clock.now_ms();
                let (granted, wake_at) = {
                    let mut limiter = engine.limiter();
                    (limiter.grant(now_ms), limiter.next_due_ms())
                };
                for id in granted {
                    let acquiring = engine.clone();
                    engine
                        .inner
                        .tasks
                        .spawn(async move { acquiring.acquire(id).await });
                }
                drop(engine);
                sleep_or_woken(&clock, wake_at, &notify).await;
            }
        });
    }

    /// Records a grant: `limit_acquired`. One the execution refuses is
    /// taken back; one the journal refuses is kept for when it writes.
    async fn acquire(&self, id: ExecutionId) {
        match self
            .drive_unseen(id, Trigger::LimitAcquired, Asked::ENGINE)
            .await
        {
            Ok(()) => {}
            Err(e) if outage::is_storage_outage(&e) => {
                self.keep_for_later(outage::Wake::Trigger(id, Trigger::LimitAcquired));
            }
            Err(e) => {
                tracing::debug!(execution = %id, error = %e, "limit grant not recorded");
                self.limiter().refused(id);
                if let Ok(state) = self.state(id).await {
                    self.limits_saw(&state);
                }
                self.inner.limits_changed.notify_one();
            }
        }
    }
}
