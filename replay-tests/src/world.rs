//! A deterministic world for recovery tests: in-process handlers answer
//! every task from (seed, step, attempt) alone, a time skipper moves the
//! simulated clock to every timer the engine records, and a publisher
//! answers every event wait. Run it once without a crash and once with
//! one, and the two must end the same.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use retrace_engine::clock::SimClock;
use retrace_engine::machine::{ErrorInfo, Event};
use retrace_engine::runtime::{
    Engine, EngineConfig, HandlerTask, StartRequest, TaskHandler, codec,
};
use retrace_journal::store::memory::MemoryStore;
use retrace_journal::{EventLog, Journal, Options, Tail};
use serde_json::{Value, json};

use crate::faulty::{CrashPoint, FaultyJournal};

pub const T0: u64 = 1_700_000_000_000;
pub const CAPABILITIES: [&str; 2] = ["work", "undo"];
/// The event name every `event` step waits for.
pub const EVENT: &str = "go";

/// What a handler did: (generation, task id).
pub type Calls = Arc<Mutex<Vec<(u32, String)>>>;

/// Whether `step` is a step of a parallel branch (named `s<n>a`, `s<n>b`).
fn in_branch(step: &str) -> bool {
    step.ends_with(['a', 'b']) && step.starts_with('s')
}

/// How attempt `attempt` of step `step` turns out, from the seed alone.
///
/// Branch steps always succeed by their second attempt: when one branch
/// fails for good while another runs, which finishes first is a race in
/// any real system, and this world must end the same on every run. (The
/// machine's property test covers failing branches; it has no races.)
pub fn behaviour(seed: u64, step: &str, attempt: u32) -> Result<Value, ErrorInfo> {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(step.as_bytes());
    h.update(&attempt.to_le_bytes());
    let roll = h.finalize().as_bytes()[0];
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
    pub async fn open(
        number: u32,
        store: &MemoryStore,
        clock: &SimClock,
        crash: Option<(u64, CrashPoint)>,
        seed: u64,
        calls: &Calls,
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
            let mut tail = e.journal().subscribe(Tail::All { from_position: 1 });
            while let Some(Ok(r)) = tail.next().await {
                if let Ok(
                    Event::RetryScheduled { due_at_ms, .. } | Event::TimerStarted { due_at_ms, .. },
                ) = codec::decode(&r)
                {
                    c.set(due_at_ms);
                }
            }
        }));
        // Publisher: every event wait gets its event.
        let e = engine.clone();
        helpers.push(tokio::spawn(async move {
            let _ = e.publish(EVENT, json!("went"), None).await;
            let mut tail = e.journal().subscribe(Tail::All { from_position: 1 });
            while let Some(Ok(r)) = tail.next().await {
                if r.kind == "event_awaited" {
                    let _ = e.publish(EVENT, json!("went"), None).await;
                }
            }
        }));
        Ok(Generation {
            engine,
            faulty,
            helpers,
        })
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
pub fn finished_tasks(journal: &dyn Journal) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        let records = journal.read_global(from, 1024)?;
        let Some(last) = records.last() else {
            return Ok(out);
        };
        from = last.position + 1;
        for r in &records {
            if let Ok(Event::TaskCompleted { task, .. } | Event::TaskFailed { task, .. }) =
                codec::decode(r)
            {
                out.push(task);
            }
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
