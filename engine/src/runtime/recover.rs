//! Opening: every execution rebuilt from the journal, the unfinished made
//! live again with their effects re-armed; then the loops that wake
//! executions on their own (due timers, expired task leases).
//!
//! Recovery is reconcile from an empty set of armed effects, so a restarted
//! engine re-arms exactly what a running one had. It must never perform an
//! effect a state does not ask for.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use futures::FutureExt;

use tokio::sync::Mutex;

use super::drive::Live;
use super::timers::Due;
use super::{Engine, Inner};
use crate::agents::AgentStatus;
use crate::error::Error;
use crate::machine::Trigger;
use crate::store::rebuild::{Rebuild, rebuild_all};

impl Engine {
    /// Rebuilds every execution from the journal (those this engine drives,
    /// when it shares the journal) and re-arms the unfinished.
    pub(super) async fn recover(&self, how: Rebuild) -> Result<(), Error> {
        self.own_what_is_held();
        // Sharing, of the partitions just taken as owned only.
        let stored = match &self.inner.owned.share {
            Some(_) => {
                let owned = self.inner.owned.all();
                self.read().all_executions_in(&owned).await?
            }
            None => self.read().all_executions().await?,
        };
        let heads: Vec<_> = stored
            .into_iter()
            .map(|stored| (stored.id, stored.last_seq))
            .collect();
        let states = rebuild_all(self.inner.store.journal(), &heads, how).await?;
        let unfinished = self.make_live(states)?;
        self.reconcile_recovered(unfinished).await;
        Ok(())
    }

    /// Takes rebuilt states in: each is indexed, and each unfinished one
    /// made live (its effects not armed yet); those.
    pub(super) fn make_live(
        &self,
        states: Vec<crate::machine::ExecutionState>,
    ) -> Result<Vec<Arc<Mutex<Live>>>, Error> {
        let mut unfinished = Vec::new();
        for state in states {
            self.inner.index.record(&state);
            self.limits_recovered(&state);
            if !state.status.is_terminal() {
                let id = state.id;
                let workflow = self.workflow_of(&state)?;
                let live = Arc::new(Mutex::new(Live::new(state, workflow)));
                self.lock_live().insert(id, live.clone());
                unfinished.push(live);
            }
        }
        Ok(unfinished)
    }

    /// Arms what recovered executions wait on, from nothing.
    pub(super) async fn reconcile_recovered(&self, unfinished: Vec<Arc<Mutex<Live>>>) {
        self.inner.recovering.store(true, Ordering::SeqCst);
        for live in unfinished {
            let mut live = live.lock().await;
            self.reconcile(&mut live);
        }
        self.inner.recovering.store(false, Ordering::SeqCst);
    }

    /// Starts the loops that wake executions: due timers and expired task
    /// leases. Each holds the engine only weakly between rounds, so the
    /// last handle dropped ends them.
    pub(super) fn start_background(&self) {
        let weak = Arc::downgrade(&self.inner);
        let timers = self.inner.timers.clone();
        let clock = self.inner.clock.clone();
        self.inner
            .tasks
            .spawn(timers.run(clock.clone(), move |execution, act, what| {
                if let Some(engine) = upgrade(&weak) {
                    let fired = engine.clone();
                    let trigger = match what {
                        Due::Timer => Trigger::TimerFired { act },
                        Due::Deadline => Trigger::DeadlinePassed { act },
                    };
                    engine.inner.tasks.spawn(async move {
                        fired.deliver(execution, trigger).await;
                    });
                }
            }));
        let weak = Arc::downgrade(&self.inner);
        self.inner.tasks.spawn(async move {
            loop {
                let Some(engine) = upgrade(&weak) else { return };
                for expired in engine.inner.agents.expired() {
                    let trigger = Trigger::TaskTimedOut {
                        task: expired.task.id.clone(),
                        kind: expired.kind.to_string(),
                    };
                    let timed_out = engine.clone();
                    engine.inner.tasks.spawn(async move {
                        timed_out.deliver(expired.task.execution, trigger).await;
                    });
                }
                let next = engine.inner.agents.next_deadline_ms();
                let now = clock.now_ms();
                drop(engine);
                // Check at the next deadline, and at least every 100 ms of
                // clock time for deadlines that appear in between.
                let at = next.map_or(now + 100, |n| n.min(now + 100));
                clock.sleep_until(at).await;
            }
        });
    }
}

/// How often (in clock time) agents' liveness is looked at for the log.
const AGENT_WATCH_MS: u64 = 1_000;

/// How long an agent may go unseen (no poll, no heartbeat) before it is
/// unregistered: agents that crash never unregister, and without this the
/// registry would keep every one a restart loop ever made. One that comes
/// back after is told `unknown_agent` and registers again.
pub const AGENT_FORGET_MS: u64 = 60 * 60 * 1_000;

impl Engine {
    /// Logs each agent that goes offline (stops polling and heartbeating for
    /// longer than the registry allows) and each that comes back: what an
    /// operator needs to see to know workers were lost. Unregisters those
    /// unseen for [`AGENT_FORGET_MS`].
    pub(super) fn watch_agents(&self) {
        let weak = Arc::downgrade(&self.inner);
        let clock = self.inner.clock.clone();
        self.inner.tasks.spawn(async move {
            let mut offline = std::collections::HashSet::new();
            loop {
                let Some(engine) = upgrade(&weak) else { return };
                for (id, requeued) in engine.inner.agents.forget_idle(AGENT_FORGET_MS) {
                    tracing::warn!(agent = %id, requeued = requeued.len(),
                        "agent forgotten: unseen for an hour (it must register again)");
                }
                let agents = engine.inner.agents.list();
                // Forget the agents that unregistered.
                offline.retain(|id| agents.iter().any(|a| a.id == *id));
                for agent in agents {
                    let lost = matches!(agent.status, AgentStatus::Offline);
                    if lost && offline.insert(agent.id) {
                        tracing::warn!(agent = %agent.id, name = %agent.name,
                            last_seen_ms = agent.last_seen_ms, "agent lost: offline");
                    } else if !lost && offline.remove(&agent.id) {
                        tracing::info!(agent = %agent.id, name = %agent.name, "agent back online");
                    }
                }
                let next = clock.now_ms() + AGENT_WATCH_MS;
                drop(engine);
                clock.sleep_until(next).await;
            }
        });
    }
}

pub(super) fn upgrade(weak: &Weak<Inner>) -> Option<Engine> {
    weak.upgrade().map(|inner| Engine { inner })
}

/// A loop's wait between rounds: until the clock reaches `at` (none: no
/// time to wait for), or until `woken` is notified, whichever is first.
pub(super) async fn sleep_or_woken(
    clock: &Arc<dyn crate::clock::Clock>,
    at: Option<u64>,
    woken: &tokio::sync::Notify,
) {
    let sleep = match at {
        Some(at) => clock.sleep_until(at),
        None => futures::future::pending().boxed(),
    };
    tokio::select! {
        () = sleep => {}
        () = woken.notified() => {}
    }
}
