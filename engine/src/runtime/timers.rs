//! Durable timers, in memory: the journal holds each timer (in the events of
//! the step that waits, or the deadline its step or execution started
//! with), this service only wakes the execution when it is due. After a
//! restart the runtime re-arms every timer from the recovered states.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::ExecutionId;
use tokio::sync::Notify;

use crate::clock::Clock;

/// What a due timer means for its activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Due {
    /// `TimerFired`: a wait, a retry's delay, an event's or the workflow's
    /// time limit.
    Timer,
    /// `DeadlinePassed`: a deadline that warns.
    Deadline,
}

/// One armed timer: when, whose, which activation, what it means.
type Armed = (u64, ExecutionId, u64, Due);

/// The set of armed timers, ordered by due time.
#[derive(Debug, Clone, Default)]
pub struct Timers {
    due: Arc<Mutex<BTreeSet<Armed>>>,
    changed: Arc<Notify>,
}

impl Timers {
    /// Arms a timer (`what`) for activation `act` of `execution` at `due_at_ms`.
    pub fn arm(&self, execution: ExecutionId, act: u64, due_at_ms: u64, what: Due) {
        if let Ok(mut due) = self.due.lock() {
            due.insert((due_at_ms, execution, act, what));
        }
        self.changed.notify_one();
    }

    /// Disarms every timer of the executions `theirs` picks (their
    /// partitions moved to another server, which arms them there).
    pub fn forget_where(&self, theirs: impl Fn(ExecutionId) -> bool) {
        if let Ok(mut due) = self.due.lock() {
            due.retain(|(_, e, _, _)| !theirs(*e));
        }
    }

    pub fn len(&self) -> usize {
        self.due.lock().map_or(0, |d| d.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes every timer due at `now_ms`.
    fn take_due(&self, now_ms: u64) -> Vec<(ExecutionId, u64, Due)> {
        let Ok(mut due) = self.due.lock() else {
            return Vec::new();
        };
        let later = due.split_off(&(now_ms + 1, ExecutionId::NIL, 0, Due::Timer));
        let fired = std::mem::replace(&mut *due, later);
        fired.into_iter().map(|(_, e, a, w)| (e, a, w)).collect()
    }

    fn next_due(&self) -> Option<u64> {
        self.due.lock().ok()?.first().map(|t| t.0)
    }

    /// Runs forever: calls `fire` for each timer once it is due.
    pub async fn run(
        self,
        clock: Arc<dyn Clock>,
        fire: impl Fn(ExecutionId, u64, Due) + Send + Sync,
    ) {
        loop {
            for (execution, act, what) in self.take_due(clock.now_ms()) {
                fire(execution, act, what);
            }
            let changed = self.changed.notified();
            match self.next_due() {
                Some(at) => {
                    tokio::select! {
                        _ = clock.sleep_until(at) => {}
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}
