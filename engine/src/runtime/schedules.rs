//! Schedules on a running engine: creating, changing, deleting and
//! triggering them, and the loop that fires them.
//!
//! A change is refused whole before anything is recorded (the spec, its
//! workflow and its input are checked), then appended, then folded into
//! the table. A fire is two writes in this order: the execution is started
//! with an idempotency key derived from the schedule and the fire time,
//! then `schedule_fired` is appended. A crash between the two leaves the
//! cursor before the fire time, so the next pass fires it again, and the
//! key gives back the execution already started: each fire time starts
//! exactly one execution, whatever crashes. `plan::next_step` decides;
//! this module only performs and records, one step at a time.
//!
//! Owns the order of those writes and the loop's wake-ups (the earliest
//! next fire time, a change, or the end of an execution a buffered fire
//! waits for). It must never decide what a schedule does next.

use std::collections::HashSet;
use std::sync::Arc;

use super::recover::sleep_or_woken;
use super::{Engine, StartRequest, Started, upgrade};
use crate::ExecutionId;
use crate::error::{Error, ScheduleError};
use crate::machine::{Status, Versions, limits_partition};
use crate::schedules::{Schedule, ScheduleEvent, ScheduleSpec, Schedules, Step, Timing, next_step};
use crate::store::reserved::SNAPSHOT_EVERY;

/// How long the loop waits before trying again after a write was refused
/// (the journal's storage is out, say).
const RETRY_MS: u64 = 1_000;

impl Engine {
    /// Creates a schedule on behalf of `by`.
    pub async fn create_schedule(
        &self,
        spec: ScheduleSpec,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<Schedule, Error> {
        let _exclusive = self.inner.changing_schedules.lock().await;
        let now = self.inner.clock.now_ms();
        self.check_schedule(&spec, now)?;
        if self.read_schedules()?.get(&spec.id).is_some() {
            return Err(ScheduleError::Exists(spec.id).into());
        }
        let id = spec.id.clone();
        let event = ScheduleEvent::ScheduleCreated {
            spec,
            by: by.map(str::to_owned),
            reason: reason.map(str::to_owned),
        };
        self.record_schedule(&event, now).await?;
        self.inner.schedules_changed.notify_one();
        self.schedule(&id)
    }

    /// Replaces a schedule's spec (same id) on behalf of `by`. A new timing
    /// counts from now, and resuming a paused schedule does not fire what
    /// came due while it was paused.
    pub async fn update_schedule(
        &self,
        spec: ScheduleSpec,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<Schedule, Error> {
        let _exclusive = self.inner.changing_schedules.lock().await;
        let now = self.inner.clock.now_ms();
        let old = self.schedule(&spec.id)?;
        self.check_schedule(&spec, now)?;
        let retimed = old.spec.cron != spec.cron
            || old.spec.timezone != spec.timezone
            || old.spec.every_ms != spec.every_ms;
        let resumed = old.spec.paused && !spec.paused;
        let anchor_ms = if retimed { now } else { old.anchor_ms };
        let cursor_ms = if retimed || resumed {
            old.cursor_ms.max(now)
        } else {
            old.cursor_ms
        };
        let id = spec.id.clone();
        let event = ScheduleEvent::ScheduleUpdated {
            spec,
            anchor_ms,
            cursor_ms,
            by: by.map(str::to_owned),
            reason: reason.map(str::to_owned),
        };
        self.record_schedule(&event, now).await?;
        self.inner.schedules_changed.notify_one();
        self.schedule(&id)
    }

    /// Deletes a schedule on behalf of `by`; what it started runs on.
    /// Returns it as it was.
    pub async fn delete_schedule(
        &self,
        id: &str,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<Schedule, Error> {
        let _exclusive = self.inner.changing_schedules.lock().await;
        let now = self.inner.clock.now_ms();
        let old = self.schedule(id)?;
        let event = ScheduleEvent::ScheduleDeleted {
            id: id.to_owned(),
            by: by.map(str::to_owned),
            reason: reason.map(str::to_owned),
        };
        self.record_schedule(&event, now).await?;
        self.inner.schedules_changed.notify_one();
        Ok(old)
    }

    /// Starts the schedule's workflow now, on behalf of `by`, whatever its
    /// timing, overlap policy or pause say; no fire time moves.
    pub async fn trigger_schedule(
        &self,
        id: &str,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(Schedule, Started), Error> {
        let _exclusive = self.inner.changing_schedules.lock().await;
        let now = self.inner.clock.now_ms();
        let schedule = self.schedule(id)?;
        let started = self
            .start_fired(
                start_request(&schedule, schedule.trigger_key(now)),
                now,
                by,
                reason,
            )
            .await?;
        let event = ScheduleEvent::ScheduleFired {
            id: id.to_owned(),
            at_ms: now,
            execution: started.id,
            manual: true,
            by: by.map(str::to_owned),
        };
        self.record_schedule(&event, now).await?;
        self.inner.schedules_changed.notify_one();
        Ok((self.schedule(id)?, started))
    }

    /// Every schedule, by id.
    pub fn schedules(&self) -> Result<Vec<Schedule>, Error> {
        Ok(self.read_schedules()?.list().cloned().collect())
    }

    pub fn schedule(&self, id: &str) -> Result<Schedule, Error> {
        self.read_schedules()?
            .get(id)
            .cloned()
            .ok_or_else(|| ScheduleError::Unknown(id.to_owned()).into())
    }

    /// A schedule's next `n` fire times from now (as if it were not paused).
    pub fn upcoming_fires(&self, schedule: &Schedule, n: usize) -> Vec<u64> {
        let now = self.inner.clock.now_ms();
        Timing::of(&schedule.spec, now)
            .map(|t| t.upcoming(schedule.cursor_ms.max(now), schedule.anchor_ms, n))
            .unwrap_or_default()
    }

    /// Every problem of `spec`, its workflow and its input, or its timing.
    fn check_schedule(&self, spec: &ScheduleSpec, now_ms: u64) -> Result<Timing, Error> {
        let checked = spec.check(now_ms);
        let mut problems = checked.as_ref().err().cloned().unwrap_or_default();
        match self.workflow(&spec.workflow, spec.version.as_deref()) {
            None if !spec.workflow.is_empty() => problems.push(match &spec.version {
                Some(v) => format!("workflow `{}` has no version `{v}`", spec.workflow),
                None => format!("no workflow `{}` is defined", spec.workflow),
            }),
            None => {}
            Some(workflow) => {
                if let Err(input) = workflow.check_input(&spec.input) {
                    problems.extend(input.into_iter().map(|p| format!("input: {p}")));
                }
            }
        }
        match checked {
            Ok(timing) if problems.is_empty() => Ok(timing),
            _ => Err(ScheduleError::Invalid(problems).into()),
        }
    }

    /// Appends `event` after the stream's last and folds it. The caller holds
    /// `changing_schedules`.
    async fn record_schedule(&self, event: &ScheduleEvent, now_ms: u64) -> Result<(), Error> {
        let seq = self.read_schedules()?.seq + 1;
        self.inner.store.append_schedule(seq, event, now_ms).await?;
        let snapshot = {
            let mut table = self.write_schedules()?;
            table.apply(seq, now_ms, event);
            seq.is_multiple_of(SNAPSHOT_EVERY)
                .then(|| self.inner.store.put_table_snapshot(&*table))
        };
        // Derived data: nothing waits for it, and a lost one costs only a
        // longer fold at the next open.
        if let Some(written) = snapshot.transpose()? {
            self.inner.tasks.spawn(async move {
                if let Err(e) = written.await {
                    tracing::warn!(error = %e, "schedules snapshot not written");
                }
            });
        }
        Ok(())
    }

    /// The loop that fires schedules: runs every due step, then sleeps until
    /// the earliest next fire time, a change, or the end of an execution a
    /// buffered fire waits for.
    pub(super) fn run_schedules(&self) {
        let weak = Arc::downgrade(&self.inner);
        let notify = self.inner.schedules_changed.clone();
        let clock = self.inner.clock.clone();
        self.inner.tasks.spawn(async move {
            let mut watched = HashSet::new();
            loop {
                let Some(engine) = upgrade(&weak) else { return };
                let (wake_at, watch) = engine.run_due_schedules().await;
                for id in watch {
                    if watched.insert(id) {
                        let (ending, notify) = (engine.clone(), notify.clone());
                        engine.inner.tasks.spawn(async move {
                            let _ = ending.wait_until_ended(id).await;
                            notify.notify_one();
                        });
                    }
                }
                drop(engine);
                sleep_or_woken(&clock, wake_at, &notify).await;
            }
        });
    }

    /// Performs every step now due, schedule by schedule; returns when to
    /// look again and which executions' ends to watch.
    async fn run_due_schedules(&self) -> (Option<u64>, Vec<ExecutionId>) {
        // Firing is the home's work (see `home`); a new home wakes this.
        if !self.is_home() {
            return (None, Vec::new());
        }
        let _exclusive = self.inner.changing_schedules.lock().await;
        let mut wake_at: Option<u64> = None;
        let mut watch = Vec::new();
        let ids: Vec<String> = match self.read_schedules() {
            Ok(t) => t.list().map(|s| s.spec.id.clone()).collect(),
            Err(_) => return (None, watch),
        };
        let mut soonest = |at: u64| wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
        for id in ids {
            let mut timing: Option<Timing> = None;
            loop {
                let now = self.inner.clock.now_ms();
                let Ok(Some(schedule)) = self.read_schedules().map(|t| t.get(&id).cloned()) else {
                    break;
                };
                if timing.is_none() {
                    timing = Timing::of(&schedule.spec, schedule.anchor_ms).ok();
                }
                let Some(timing) = &timing else { break };
                let running = schedule
                    .last_execution
                    .and_then(|e| self.summary(e))
                    .is_some_and(|s| !s.status.is_terminal());
                let step = next_step(&schedule, timing, now, running);
                if let Step::Idle {
                    wake_at_ms,
                    watch: w,
                } = step
                {
                    if let Some(at) = wake_at_ms {
                        soonest(at);
                    }
                    watch.extend(w);
                    break;
                }
                if let Err(e) = self.take_schedule_step(&schedule, step, now).await {
                    tracing::warn!(schedule = %id, error = %e,
                        "schedule step not taken; trying again shortly");
                    soonest(now + RETRY_MS);
                    break;
                }
            }
        }
        (wake_at, watch)
    }

    /// Performs and records one step that is not `Idle`.
    async fn take_schedule_step(
        &self,
        schedule: &Schedule,
        step: Step,
        now: u64,
    ) -> Result<(), Error> {
        let id = schedule.spec.id.clone();
        let event = match step {
            Step::Idle { .. } => return Ok(()),
            Step::Skip { at_ms } => ScheduleEvent::ScheduleSkipped { id, at_ms },
            Step::Buffer { at_ms } => ScheduleEvent::ScheduleBuffered { id, at_ms },
            Step::Miss { first_ms, last_ms } => {
                tracing::warn!(schedule = %id, first_ms, last_ms,
                    "schedule fire times passed outside the catch-up window; not fired");
                ScheduleEvent::ScheduleMissed {
                    id,
                    first_ms,
                    last_ms,
                }
            }
            Step::Fire { at_ms } | Step::CancelThenFire { at_ms, .. } => {
                if let Step::CancelThenFire { previous, .. } = step {
                    let reason = format!("schedule {id}: a new fire time came (cancelPrevious)");
                    match self.cancel(previous, &reason, false).await {
                        Ok(_) | Err(Error::Rejected(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                let request = start_request(schedule, schedule.fire_key(at_ms));
                match self.start_fired(request, at_ms, None, None).await {
                    Ok(started) => ScheduleEvent::ScheduleFired {
                        id,
                        at_ms,
                        execution: started.id,
                        manual: false,
                        by: None,
                    },
                    Err(e @ (Error::UnknownWorkflow { .. } | Error::InvalidInput(_))) => {
                        tracing::warn!(schedule = %id, at_ms, error = %e, "schedule fire failed");
                        ScheduleEvent::ScheduleFailed {
                            id,
                            at_ms,
                            error: e.to_string(),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        self.record_schedule(&event, now).await
    }

    fn read_schedules(&self) -> Result<std::sync::RwLockReadGuard<'_, Schedules>, Error> {
        self.inner.schedules.read().map_err(|_| Error::Poisoned)
    }

    fn write_schedules(&self) -> Result<std::sync::RwLockWriteGuard<'_, Schedules>, Error> {
        self.inner.schedules.write().map_err(|_| Error::Poisoned)
    }
}

impl Engine {
    /// Starts a schedule's execution for the fire (or manual trigger) at
    /// `at_ms`, whose request's idempotency key names it: its id derives
    /// from that key ([`fired_id`]), so a fire made again (after a crash
    /// between the start and `schedule_fired`) starts nothing new, and on
    /// a journal several servers share, the home (which fires) knows the
    /// id before the server holding its partition starts it (sent there
    /// through the journal, started once however often it arrives).
    async fn start_fired(
        &self,
        request: StartRequest,
        at_ms: u64,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<Started, Error> {
        if let Some(started) = self.started_by_key(request.idempotency_key.as_deref()) {
            return Ok(started);
        }
        // Refused here, as on one server, before anything is sent.
        let workflow = self.startable(&request)?;
        let key = request.idempotency_key.as_deref().unwrap_or_default();
        let id = match self.placement() {
            // A workflow with limits starts in its own partition (see
            // `Engine::start_partition`).
            Some(placement) if self.read_catalog()?.limited(&request.workflow) => {
                let partition = limits_partition(&request.workflow, &placement);
                placement
                    .first_in(partition, |n| fired_id(key, n, at_ms))
                    .unwrap_or_else(|| fired_id(key, 0, at_ms))
            }
            _ => fired_id(key, 0, at_ms),
        };
        if !self.owns(id) {
            self.start_elsewhere(id, &request, by).await?;
            return Ok(Started {
                id,
                status: Status::Running,
                created: true,
            });
        }
        let acting = self.acting_as(by).because(reason);
        self.start_with_id(id, workflow, request, None, acting.asked())
            .await
    }
}

/// The id of the execution a schedule starts for the fire whose
/// idempotency key is `key` at `at_ms`: a UUIDv7 whose time is the fire
/// time (so listing by id lists by fire) and whose other bits are the
/// key's hash (draw 0), or the hash of the key and `draw` (the further
/// draws that place a limited workflow's fire in its partition).
fn fired_id(key: &str, draw: u64, at_ms: u64) -> ExecutionId {
    let hash = if draw == 0 {
        blake3::hash(key.as_bytes())
    } else {
        let mut hasher = blake3::Hasher::new();
        hasher.update(key.as_bytes());
        hasher.update(&draw.to_le_bytes());
        hasher.finalize()
    };
    let mut rest = [0u8; 10];
    rest.copy_from_slice(&hash.as_bytes()[..10]);
    let id = uuid::Builder::from_unix_timestamp_millis(at_ms, &rest).into_uuid();
    ExecutionId::from_bytes(*id.as_bytes())
}

fn start_request(schedule: &Schedule, key: String) -> StartRequest {
    StartRequest {
        workflow: schedule.spec.workflow.clone(),
        version: schedule.spec.version.clone(),
        input: schedule.spec.input.clone(),
        idempotency_key: Some(key),
        priority: schedule.spec.priority,
        tags: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fires_id_is_a_uuidv7_of_its_fire_time_and_the_same_for_its_key() {
        let at_ms = 1_700_000_123_456;
        let id = uuid::Uuid::from_bytes(*fired_id("schedule:s:1:1", 0, at_ms).as_bytes());
        assert_eq!(id.get_version_num(), 7);
        let (secs, nanos) = id.get_timestamp().expect("a v7 id has a time").to_unix();
        assert_eq!(secs * 1_000 + u64::from(nanos) / 1_000_000, at_ms);
        assert_eq!(
            fired_id("schedule:s:1:1", 0, at_ms),
            fired_id("schedule:s:1:1", 0, at_ms)
        );
        assert_ne!(
            fired_id("schedule:s:1:1", 0, at_ms),
            fired_id("schedule:s:1:2", 0, at_ms)
        );
        // A further draw (placing a limited workflow's fire) is another
        // id of the same fire time.
        let drawn = uuid::Uuid::from_bytes(*fired_id("schedule:s:1:1", 5, at_ms).as_bytes());
        assert_eq!(drawn.get_version_num(), 7);
        assert_eq!(drawn.get_timestamp(), id.get_timestamp());
        assert_ne!(drawn, id);
    }
}
