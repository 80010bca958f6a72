//! Callers waiting for an execution to end (start-and-wait): told the moment
//! its terminal event is stored, without reading its history.
//!
//! How no end is missed: a caller registers first and then looks at the
//! execution's summary, while `drive` records the terminal status in the
//! index first and then tells the waiters. Either the caller's look sees the
//! end, or the caller was registered before it was told.
//!
//! It must never hold a waiter past the end it waits for, nor decide
//! anything.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::ExecutionId;
use crate::machine::ExecutionState;

/// Waiters for executions' ends.
#[derive(Debug, Default)]
pub(super) struct Waiters {
    waiting: Mutex<HashMap<ExecutionId, Vec<oneshot::Sender<ExecutionState>>>>,
}

impl Waiters {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ExecutionId, Vec<oneshot::Sender<ExecutionState>>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver that gets `id`'s final state when it ends.
    pub(super) fn register(&self, id: ExecutionId) -> oneshot::Receiver<ExecutionState> {
        let (tx, rx) = oneshot::channel();
        self.lock().entry(id).or_default().push(tx);
        rx
    }

    /// `state`'s execution has ended: gives every waiter the final state,
    /// and forgets them.
    pub(super) fn ended(&self, state: &ExecutionState) {
        let told = self.lock().remove(&state.id);
        for tx in told.into_iter().flatten() {
            let _ = tx.send(state.clone());
        }
    }

    /// Forgets the waiters of `id` that gave up (their wait ran out).
    pub(super) fn forget_gone(&self, id: ExecutionId) {
        let mut waiting = self.lock();
        if let Some(list) = waiting.get_mut(&id) {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                waiting.remove(&id);
            }
        }
    }
}
