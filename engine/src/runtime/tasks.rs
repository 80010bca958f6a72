//! Every task the runtime runs in the background, owned in one place.
//!
//! Deliveries nobody waits on (a fired timer, an expired lease, a child's
//! end told to its parent, a cancelled child, an in-process handler's call,
//! a snapshot write, a paced execution's continuation or timer waiting for
//! its event budget) and the two long-running loops (timers, leases) are
//! spawned here and nowhere else. [`Tasks::shutdown`] cancels them all and
//! waits until every one has stopped, so an engine that has shut down runs
//! nothing. A task cancelled half-way is safe to drop: the journal is the
//! truth, and recovery re-derives whatever the task was doing.
//!
//! It must never decide what a task means; it only runs and stops them.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The runtime's background tasks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Tasks {
    /// Runs `task` until it ends or the engine shuts down. After shutdown
    /// began, nothing new is started.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        if self.stop.is_cancelled() {
            return;
        }
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            stop.run_until_cancelled(task).await;
        });
    }

    /// Stops every task and waits until all have stopped.
    pub(crate) async fn shutdown(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Stops every task without waiting (the engine's last handle is gone).
    pub(crate) fn cancel(&self) {
        self.stop.cancel();
        self.tracker.close();
    }
}
