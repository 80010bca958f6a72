//! Performing the built-in `http` capability's tasks.
//!
//! An outstanding task of capability `http` (scheduled and journaled like
//! any task: `task_scheduled`) is not queued for agents: `effects` hands it
//! here, and it is performed on a task of its own (`runtime::tasks`), at
//! most `max_concurrency` at once; the rest wait for a turn, within their
//! `scheduleToStartMs` if the step gives one. Its outcome is delivered as
//! an agent's report would be (`task_completed` with the agent
//! `http (built-in)`, or `task_failed` with a `retryAfterMs` when the
//! server sent `Retry-After`), so retries, timeouts, `onError`,
//! compensation, breakers, history and streams treat it as any task. A
//! task its execution stops waiting for (cancelled, terminated, timed out)
//! is withdrawn: its request is dropped mid-flight. After a restart,
//! recovery re-arms every outstanding task, so one whose result was not
//! recorded is performed again (at least once; the `Idempotency-Key`
//! header, the same for every attempt of one activation, lets the server
//! see a repeat).
//!
//! It must never block its caller (it only spawns), never hold a lock
//! across an `.await`, and never decide what an outcome means.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Engine;
use super::drive::Asked;
use super::outage::{self, Wake};
use crate::ExecutionId;
use crate::error::Error;
use crate::http::{HTTP_AGENT, HttpCall, HttpClient, HttpOptions};
use crate::machine::{Effect, Trigger};

/// The capability's client, its turns, and the requests under way.
#[derive(Debug)]
pub(super) struct HttpTasks {
    client: HttpClient,
    turns: Arc<Semaphore>,
    /// Each task under way, by id: which performance of it (a task is
    /// performed again after a withdrawal and a re-arm) and the switch
    /// that drops it. Locked for one insert or removal at a time.
    running: Mutex<HashMap<String, (u64, CancellationToken)>>,
    /// Numbers the performances.
    performed: AtomicU64,
}

impl HttpTasks {
    pub(super) fn new(
        options: &HttpOptions,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<HttpTasks, Error> {
        Ok(HttpTasks {
            client: HttpClient::new(options, clock).map_err(Error::HttpClient)?,
            turns: Arc::new(Semaphore::new(options.max_concurrency.max(1))),
            running: Mutex::new(HashMap::new()),
            performed: AtomicU64::new(0),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, CancellationToken)>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `Idempotency-Key` of every attempt of activation `act`: the same
/// across retries and restarts, new for a new activation (a loop entering
/// the step again, an operator's retry of a held step, a redrive).
pub(super) fn idempotency_key(execution: ExecutionId, act: u64) -> String {
    format!("{execution}.{act}")
}

impl Engine {
    /// Performs an outstanding `http` task (an [`Effect::Task`]) on a task
    /// of its own, and delivers its outcome.
    pub(super) fn perform_http(&self, id: ExecutionId, effect: &Effect) {
        let Effect::Task {
            task,
            act,
            input,
            timeouts,
            ..
        } = effect
        else {
            return;
        };
        let stop = CancellationToken::new();
        let performance = self.inner.http.performed.fetch_add(1, Ordering::Relaxed);
        let before = self
            .inner
            .http
            .running()
            .insert(task.clone(), (performance, stop.clone()));
        if let Some((_, before)) = before {
            before.cancel();
        }
        let call = HttpCall {
            input: input.clone(),
            idempotency_key: idempotency_key(id, *act),
            start_to_close_ms: timeouts.start_to_close_ms,
        };
        let wait_until_ms = timeouts
            .schedule_to_start_ms
            .map(|ms| self.inner.clock.now_ms().saturating_add(ms));
        let (engine, task) = (self.clone(), task.clone());
        self.inner.tasks.spawn(async move {
            let outcome = tokio::select! {
                biased;
                () = stop.cancelled() => None,
                outcome = engine.http_attempt(&task, call, wait_until_ms) => Some(outcome),
            };
            engine.http_done(&task, performance);
            if let Some(trigger) = outcome {
                engine.deliver_report(id, trigger).await;
            }
        });
    }

    /// One attempt, once it has a turn: the trigger that reports it.
    async fn http_attempt(
        &self,
        task: &str,
        call: HttpCall,
        wait_until_ms: Option<u64>,
    ) -> Trigger {
        let turns = Arc::clone(&self.inner.http.turns);
        let turn = match wait_until_ms {
            None => turns.acquire_owned().await,
            Some(at) => tokio::select! {
                turn = turns.acquire_owned() => turn,
                () = self.inner.clock.sleep_until(at) => {
                    return Trigger::TaskTimedOut {
                        task: task.to_owned(),
                        kind: "schedule_to_start".to_owned(),
                    };
                }
            },
        };
        // The semaphore is never closed; without a turn, the request waits
        // for none rather than failing.
        let started = std::time::Instant::now();
        let outcome = self.inner.http.client.perform(call).await;
        drop(turn);
        let ms = started.elapsed().as_millis() as u64;
        match outcome {
            Ok(output) => {
                tracing::debug!(task, ms, status = %output["status"], "http task performed");
                Trigger::TaskCompleted {
                    task: task.to_owned(),
                    output,
                }
            }
            Err(failure) => {
                tracing::debug!(task, ms, error_type = %failure.error.kind,
                    error = %failure.error.message, "http task failed");
                Trigger::TaskFailed {
                    task: task.to_owned(),
                    error: failure.error,
                    retry_after_ms: failure.retry_after_ms,
                }
            }
        }
    }

    /// Forgets a task that ended (unless it was performed again meanwhile).
    fn http_done(&self, task: &str, performance: u64) {
        let mut running = self.inner.http.running();
        if running.get(task).is_some_and(|(p, _)| *p == performance) {
            running.remove(task);
        }
    }

    /// Its execution no longer waits for `task`: drop its request.
    pub(super) fn withdraw_http(&self, task: &str) {
        let running = self.inner.http.running().remove(task);
        if let Some((_, stop)) = running {
            stop.cancel();
        }
    }

    /// Delivers an `http` task's outcome with its performer recorded (the
    /// agent `http (built-in)`); kept through a storage outage, like a
    /// timer.
    pub(super) async fn deliver_report(&self, id: ExecutionId, trigger: Trigger) {
        let asked = Asked {
            agent: Some(HTTP_AGENT),
            ..Asked::ENGINE
        };
        match self.drive_unseen(id, trigger.clone(), asked).await {
            Ok(()) => {}
            Err(Error::Rejected(r)) => {
                tracing::debug!(execution = %id, reason = %r, "http task outcome refused")
            }
            Err(e) if outage::is_storage_outage(&e) => {
                self.keep_for_later(Wake::Report(id, trigger))
            }
            Err(e) => tracing::warn!(execution = %id, error = %e, "http task outcome not recorded"),
        }
    }
}
