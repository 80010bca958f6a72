//! A deterministic world for recovery tests: every task is answered from
//! (seed, step, attempt) alone, a time skipper moves the simulated clock to
//! every timer the engine records, and a publisher answers every event wait
//! (by a broadcast or a signal to the execution, again from the seed). Run
//! it once without a crash and once with one, and the two must end the same.
//!
//! Tasks are answered either by in-process handlers ([`Generation::open`])
//! or by a scripted agent that polls the engine like a remote one
//! ([`Generation::open_with`]). The agent also misbehaves and plays
//! operator, as [`agent_act`] decides: it lets tasks time out, answers after
//! the timeout, answers twice, and pauses, resumes or cancels the execution
//! while a task is out. What it must never see — a late or second answer
//! accepted — is written to [`Violations`].
//!
//! The world must stay deterministic under races, so the acts that depend
//! on *when* something happens are kept where nothing else runs: only steps
//! outside parallel branches time out, answer late, or pause or cancel.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::{FutureExt, StreamExt};
use retrace_engine::ExecutionId;
use retrace_engine::agents::ClaimedTask;
use retrace_engine::clock::SimClock;
use retrace_engine::machine::{ErrorInfo, Event, Status};
use retrace_engine::read::History;
use retrace_engine::runtime::{Engine, EngineConfig, HandlerTask, StartRequest, TaskHandler};
use retrace_journal::store::memory::MemoryStore;
use retrace_journal::{EventLog, Journal, Options};
use serde_json::{Value, json};

use crate::faulty::{CrashPoint, FaultyJournal};

pub const T0: u64 = 1_700_000_000_000;
pub const CAPABILITIES: [&str; 2] = ["work", "undo"];
/// The event name every `event` step waits for.
pub const EVENT: &str = "go";

/// What a handler did: (generation, task id).
pub type Calls = Arc<Mutex<Vec<(u32, String)>>>;

/// What the scripted agent saw the engine do that it must never do.
pub type Violations = Arc<Mutex<Vec<String>>>;

/// Whether `step` is a step of a parallel branch (named `s<n>a`, `s<n>b`)
/// or a map's item step (`s<n>m`): steps that run beside others.
fn in_branch(step: &str) -> bool {
    step.ends_with(['a', 'b', 'm']) && step.starts_with('s')
}

fn roll(seed: u64, step: &str, attempt: u32) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(step.as_bytes());
    h.update(&attempt.to_le_bytes());
    *h.finalize().as_bytes()
}

/// How attempt `attempt` of step `step` turns out, from the seed alone.
///
/// Branch and map item steps always succeed by their second attempt: when one branch
/// fails for good while another runs, which finishes first is a race in
/// any real system, and this world must end the same on every run. (The
/// machine's property test covers failing branches; it has no races.)
pub fn behaviour(seed: u64, step: &str, attempt: u32) -> Result<Value, ErrorInfo> {
    let roll = roll(seed, step, attempt)[0];
    let branch = in_branch(step);
    if roll < 64 && !(branch && attempt >= 2) {
        let mut e = ErrorInfo::new("broke", format!("{step} attempt {attempt}"));
        if roll < 16 && !branch {
            e.retryable = Some(false);
        }
        Err(e)
    } else {
        Ok(json!({"step": step, "attempt": attempt}))
    }
}

/// What the scripted agent does with attempt `attempt` of step `step`.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    /// Complete or fail the task, as [`behaviour`] says.
    Answer(Result<Value, ErrorInfo>),
    /// Complete it, then complete it again (the second must be refused).
    Twice(Value),
    /// Never answer; move the clock to the claim's deadline.
    TimeOut,
    /// Let it time out, then answer (the answer must be refused).
    Late(Value),
    /// Pause the execution, complete the task, resume.
    Pause(Value),
    /// Cancel the execution instead of answering.
    Cancel { compensate: bool },
}

/// The scripted agent's act for attempt `attempt` of step `step`, from the
/// seed alone. The first quarter of rolls are [`behaviour`]'s failures;
/// steps in parallel branches only ever answer (once or twice), since when
/// a timeout or an operator command lands there is a race with the other
/// branch in any real system.
pub fn agent_act(seed: u64, step: &str, attempt: u32) -> Act {
    let bytes = roll(seed, step, attempt);
    let answer = behaviour(seed, step, attempt);
    let ok = json!({"step": step, "attempt": attempt});
    if in_branch(step) {
        return match bytes[0] {
            64..96 => Act::Twice(ok),
            _ => Act::Answer(answer),
        };
    }
    match bytes[0] {
        0..64 => Act::Answer(answer),
        64..80 => Act::TimeOut,
        80..92 => Act::Late(ok),
        92..104 => Act::Twice(ok),
        104..114 => Act::Pause(ok),
        114..120 => Act::Cancel {
            compensate: bytes[1] & 1 == 0,
        },
        _ => Act::Answer(answer),
    }
}

/// Who answers the world's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answers {
    /// In-process handlers, from [`behaviour`].
    InProcess,
    /// The scripted agent, from [`agent_act`].
    Agent,
}

/// One engine over `store`, with handlers, time skipper and publisher.
#[derive(Debug)]
pub struct Generation {
    pub engine: Engine,
    pub faulty: Option<Arc<FaultyJournal>>,
    helpers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Generation {
    fn drop(&mut self) {
        for h in &self.helpers {
            h.abort();
        }
    }
}

impl Generation {
    /// A generation whose tasks are all answered by in-process handlers.
    pub async fn open(
        number: u32,
        store: &MemoryStore,
        clock: &SimClock,
        crash: Option<(u64, CrashPoint)>,
        seed: u64,
        calls: &Calls,
    ) -> anyhow::Result<Generation> {
        Self::start(number, store, clock, crash, seed, calls, None).await
    }

    /// A generation whose tasks are answered as `answers` says: with
    /// [`Answers::Agent`], `work` tasks go to the scripted agent (see
    /// [`agent_act`]), which reports what it must never see to
    /// `violations`; compensations stay in-process.
    #[allow(clippy::too_many_arguments)]
    pub async fn open_with(
        answers: Answers,
        number: u32,
        store: &MemoryStore,
        clock: &SimClock,
        crash: Option<(u64, CrashPoint)>,
        seed: u64,
        calls: &Calls,
        violations: &Violations,
    ) -> anyhow::Result<Generation> {
        let agent = matches!(answers, Answers::Agent).then_some(violations);
        Self::start(number, store, clock, crash, seed, calls, agent).await
    }

    async fn start(
        number: u32,
        store: &MemoryStore,
        clock: &SimClock,
        crash: Option<(u64, CrashPoint)>,
        seed: u64,
        calls: &Calls,
        agent: Option<&Violations>,
    ) -> anyhow::Result<Generation> {
        let log: Arc<dyn Journal> =
            Arc::new(EventLog::in_memory(store.clone(), Options::default())?);
        let (journal, faulty): (Arc<dyn Journal>, _) = match crash {
            Some((at, point)) => {
                let f = FaultyJournal::new(log, at, point);
                (f.clone(), Some(f))
            }
            None => (log, None),
        };
        let mut config = EngineConfig::journal(journal, Arc::new(clock.clone()));
        for capability in CAPABILITIES {
            if capability == "work" && agent.is_some() {
                continue;
            }
            let calls = calls.clone();
            let handler: Arc<dyn TaskHandler> = Arc::new(move |t: HandlerTask| {
                if let Ok(mut c) = calls.lock() {
                    c.push((number, t.task.clone()));
                }
                let result = behaviour(seed, &t.step, t.attempt);
                async move { result }.boxed()
            });
            config.handlers.push((capability.to_string(), handler));
        }
        let engine = Engine::open(config).await?;
        let mut helpers = Vec::new();
        // Time skipper: every recorded timer comes due.
        let (e, c) = (engine.clone(), clock.clone());
        helpers.push(tokio::spawn(async move {
            let mut tail = e.read().subscribe_all(1, Default::default());
            while let Some(Ok(g)) = tail.next().await {
                if let Event::RetryScheduled { due_at_ms, .. }
                | Event::TimerStarted { due_at_ms, .. } = g.event.event
                {
                    c.set(due_at_ms);
                }
            }
        }));
        // Publisher: every event wait gets its event, broadcast or signalled.
        let e = engine.clone();
        helpers.push(tokio::spawn(async move {
            let _ = e.publish(EVENT, json!("went"), None).await;
            let mut tail = e.read().subscribe_all(1, Default::default());
            while let Some(Ok(g)) = tail.next().await {
                if let Event::EventAwaited { act, .. } = g.event.event {
                    if roll(seed, EVENT, act as u32)[0] & 1 == 0 {
                        let _ = e.publish(EVENT, json!("went"), None).await;
                    } else {
                        let _ = e.signal(g.execution, EVENT, json!("went"), None).await;
                    }
                }
            }
        }));
        if let Some(violations) = agent {
            // The operator of a restarted server resumes what was left paused
            // (the scripted agent pauses and resumes around one answer).
            for s in engine.executions(None, Some(Status::Paused), None, usize::MAX) {
                let _ = engine.resume(s.id).await;
            }
            let agent = ScriptedAgent {
                engine: engine.clone(),
                clock: clock.clone(),
                seed,
                generation: number,
                calls: calls.clone(),
                violations: violations.clone(),
            };
            helpers.push(tokio::spawn(agent.run()));
        }
        Ok(Generation {
            engine,
            faulty,
            helpers,
        })
    }
}

/// An agent that polls for `work` tasks and does what [`agent_act`] says.
struct ScriptedAgent {
    engine: Engine,
    clock: SimClock,
    seed: u64,
    generation: u32,
    calls: Calls,
    violations: Violations,
}

impl ScriptedAgent {
    async fn run(self) {
        let Ok(agent) = self
            .engine
            .agents()
            .register("scripted", &["work".to_string()], None)
        else {
            return;
        };
        loop {
            let Ok(tasks) = self.engine.poll_tasks(&agent, 250, 8).await else {
                return;
            };
            for claimed in tasks {
                self.act(&claimed).await;
            }
        }
    }

    async fn act(&self, claimed: &ClaimedTask) {
        let spec = &claimed.spec;
        let (engine, task, execution) = (&self.engine, spec.id.as_str(), spec.execution);
        if let Ok(mut c) = self.calls.lock() {
            c.push((self.generation, task.to_string()));
        }
        match agent_act(self.seed, &spec.step, spec.attempt) {
            Act::Answer(Ok(output)) => {
                let _ = engine.complete_task(task, output).await;
            }
            Act::Answer(Err(error)) => {
                let _ = engine.fail_task(task, error).await;
            }
            Act::Twice(output) => {
                if engine.complete_task(task, output.clone()).await.is_ok()
                    && engine.complete_task(task, output).await.is_ok()
                {
                    self.violation(format!("a second answer to {task} was accepted"));
                }
            }
            Act::TimeOut => self.clock.set(claimed.lease_deadline_ms),
            Act::Late(output) => {
                self.clock.set(claimed.lease_deadline_ms);
                if self.timed_out(execution, task).await
                    && engine.complete_task(task, output).await.is_ok()
                {
                    self.violation(format!(
                        "an answer to {task} after its timeout was accepted"
                    ));
                }
            }
            Act::Pause(output) => {
                let _ = engine.pause(execution, "the operator looks").await;
                let _ = engine.complete_task(task, output).await;
                let _ = engine.resume(execution).await;
            }
            Act::Cancel { compensate } => {
                let _ = engine
                    .cancel(execution, "the operator cancels", compensate)
                    .await;
            }
        }
    }

    /// Waits until `task`'s failure (its timeout) is recorded; false if the
    /// history ends first (the engine crashed).
    async fn timed_out(&self, execution: ExecutionId, task: &str) -> bool {
        let mut events = self.engine.read().subscribe(execution, 1);
        while let Some(Ok(e)) = events.next().await {
            if let Event::TaskFailed { task: t, .. } = e.event
                && t == task
            {
                return true;
            }
        }
        false
    }

    fn violation(&self, what: String) {
        if let Ok(mut v) = self.violations.lock() {
            v.push(what);
        }
    }
}

/// How a run ended, in terms that do not depend on ids or interleavings.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: String,
    pub output: Option<Value>,
    pub variables: BTreeMap<String, Value>,
    pub error_type: Option<String>,
    /// Steps undone, sorted (their order depends on how parallel branches
    /// interleaved, which differs between runs; the machine's property test
    /// checks the order).
    pub undone: Vec<String>,
}

/// Every task id with a recorded result, in the journal as it is.
pub async fn finished_tasks(history: &History) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut names = history.names();
    let mut from = 1;
    loop {
        let (events, next) = history.global_events(from, 1024, &mut names).await?;
        for g in events {
            if let Event::TaskCompleted { task, .. } | Event::TaskFailed { task, .. } =
                g.event.event
            {
                out.push(task);
            }
        }
        match next {
            Some(next) => from = next,
            None => return Ok(out),
        }
    }
}

pub fn start_request(workflow: &str) -> StartRequest {
    StartRequest {
        workflow: workflow.into(),
        input: json!({"flag": true}),
        idempotency_key: Some("the-one".into()),
        ..StartRequest::default()
    }
}
