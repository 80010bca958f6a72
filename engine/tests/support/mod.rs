//! Shared harness for the runtime tests: an engine over a journal (in
//! memory, or on a real NATS server: the module that includes this one says
//! which, as `super::BACKEND`) and a simulated clock, scripted agents, and a
//! "crash" that drops the engine and opens a new one over the same store.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use futures::StreamExt;
use retrace_engine::ExecutionId;
use retrace_engine::agents::{AgentId, ClaimedTask};
use retrace_engine::clock::SimClock;
use retrace_engine::machine::{ErrorInfo, ExecutionState, Status};
use retrace_engine::runtime::{Engine, EngineConfig, StartRequest};
use retrace_journal::store::memory::MemoryStore;
use retrace_journal::{EventLog, Options};
use retrace_journal_nats::server::NatsServer;
use retrace_journal_nats::{NatsJournal, NatsOptions, Ownership};
use serde_json::{Value, json};

pub const T0: u64 = 1_700_000_000_000;

/// The journal the tests' engines run on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// The sled journal's code over an in-memory store.
    Memory,
    /// The journal on a real `nats-server` (one per test, on loopback),
    /// holding its partitions by lease as `retrace serve --nats` does.
    Nats,
}

/// How many cases a property test runs: `n` in memory, a quarter on NATS
/// (where each case starts a server and every crash takes the partitions
/// again).
pub fn cases(n: u32) -> u32 {
    match super::BACKEND {
        Backend::Memory => n,
        Backend::Nats => n.div_ceil(4),
    }
}

pub struct World {
    /// The in-memory store (unused on NATS).
    pub store: MemoryStore,
    pub clock: SimClock,
    pub engine: Engine,
    /// The journal `engine` is on (`None` when the test opened it).
    journal: Option<Arc<dyn retrace_journal::Journal>>,
    /// On NATS: the journal the engine is on, then its server (stopped
    /// when the world is dropped, after the engine).
    nats: Option<(NatsJournal, NatsServer)>,
}

impl World {
    pub async fn new() -> World {
        let store = MemoryStore::new();
        let clock = SimClock::new(T0);
        let (journal, nats): (Arc<dyn retrace_journal::Journal>, _) = match super::BACKEND {
            Backend::Memory => (in_memory(&store), None),
            Backend::Nats => {
                let server = NatsServer::start();
                let on_nats = open_nats(&server).await;
                (Arc::new(on_nats.clone()), Some((on_nats, server)))
            }
        };
        let engine = open_on(journal.clone(), &clock).await;
        World {
            store,
            clock,
            engine,
            journal: Some(journal),
            nats,
        }
    }

    /// A world around an engine the test opened over `store` itself.
    pub fn in_memory(store: MemoryStore, clock: SimClock, engine: Engine) -> World {
        World {
            store,
            clock,
            engine,
            journal: None,
            nats: None,
        }
    }

    /// The journal the engine is on.
    pub fn journal(&self) -> &dyn retrace_journal::Journal {
        self.journal
            .as_deref()
            .expect("a world whose engine its test opened has no journal here")
    }

    /// A crash: the disk is frozen as it is now, everything in memory is
    /// lost, and a new engine recovers from the frozen disk. (The old engine
    /// may linger in tasks it spawned; it writes to the old store, which the
    /// new engine never sees, as nothing a dead process does reaches disk.)
    ///
    /// On NATS the old engine's journal gives its partitions up and a new
    /// journal takes them, fencing the old one: whatever the lingering
    /// engine still sends is refused by the NATS server.
    pub async fn crash_and_recover(&mut self) {
        self.crash_and_recover_after(|_| ()).await
    }

    /// A crash, then `down` (time passing, say) while no engine runs: the
    /// old one may still do things meanwhile, and none of it is kept.
    pub async fn crash_and_recover_after(&mut self, down: impl FnOnce(&SimClock)) {
        let journal: Arc<dyn retrace_journal::Journal> = match &mut self.nats {
            None => {
                let disk = self.store.duplicate();
                self.store = disk.clone();
                in_memory(&disk)
            }
            Some((journal, server)) => {
                journal.release().await;
                *journal = open_nats(server).await;
                Arc::new(journal.clone())
            }
        };
        down(&self.clock);
        let new = open_on(journal.clone(), &self.clock).await;
        self.journal = Some(journal);
        drop(std::mem::replace(&mut self.engine, new));
    }

    pub async fn define(&self, doc: Value) {
        self.engine
            .define_json(doc.to_string().as_bytes())
            .await
            .unwrap();
    }

    pub async fn start(&self, workflow: &str, input: Value) -> ExecutionId {
        self.engine
            .start(StartRequest {
                workflow: workflow.into(),
                input,
                ..StartRequest::default()
            })
            .await
            .unwrap()
            .id
    }

    pub fn agent(&self, capabilities: &[&str]) -> AgentId {
        let caps: Vec<String> = capabilities.iter().map(|c| c.to_string()).collect();
        self.engine
            .agents()
            .register("test-agent", &caps, Some(100))
            .unwrap()
    }

    /// Claims the next task (waiting for one to be queued).
    pub async fn claim(&self, agent: &AgentId) -> ClaimedTask {
        loop {
            let mut tasks = self.engine.poll_tasks(agent, 5_000, 1).await.unwrap();
            if let Some(t) = tasks.pop() {
                return t;
            }
        }
    }

    /// Claims every task until `n` are claimed.
    pub async fn claim_n(&self, agent: &AgentId, n: usize) -> Vec<ClaimedTask> {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(self.claim(agent).await);
        }
        out
    }

    pub async fn complete(&self, task: &ClaimedTask, output: Value) {
        self.engine
            .complete_task(&task.spec.id, output)
            .await
            .unwrap();
    }

    pub async fn fail(&self, task: &ClaimedTask, kind: &str, message: &str) {
        self.engine
            .fail_task(&task.spec.id, ErrorInfo::new(kind, message))
            .await
            .unwrap();
    }

    pub async fn ended(&self, id: ExecutionId) -> ExecutionState {
        self.engine.wait_until_ended(id).await.unwrap()
    }

    pub async fn state(&self, id: ExecutionId) -> ExecutionState {
        self.engine.state(id).await.unwrap()
    }

    /// Waits until the execution's history has an event of `kind`
    /// (subscribing to the journal, no sleeping).
    pub async fn wait_for(&self, id: ExecutionId, kind: &str) {
        self.wait_for_count(id, kind, 1).await
    }

    /// Waits until the execution's history has `n` events of `kind`.
    pub async fn wait_for_count(&self, id: ExecutionId, kind: &str, n: usize) {
        let mut tail = self.engine.read().subscribe(id, 1);
        let mut seen = 0;
        while let Some(e) = tail.next().await {
            if e.unwrap().event.kind() == kind {
                seen += 1;
                if seen == n {
                    return;
                }
            }
        }
        panic!("the journal closed before {n} {kind}");
    }

    /// The event kinds of the execution's history.
    pub async fn kinds(&self, id: ExecutionId) -> Vec<String> {
        self.engine
            .read()
            .events_until(id, u64::MAX)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event.kind().to_owned())
            .collect()
    }
}

pub async fn open(store: &MemoryStore, clock: &SimClock) -> Engine {
    open_on(in_memory(store), clock).await
}

fn in_memory(store: &MemoryStore) -> Arc<dyn retrace_journal::Journal> {
    Arc::new(EventLog::in_memory(store.clone(), Options::default()).unwrap())
}

async fn open_on(journal: Arc<dyn retrace_journal::Journal>, clock: &SimClock) -> Engine {
    let config = EngineConfig::journal(journal, Arc::new(clock.clone()));
    Engine::open(config).await.unwrap()
}

/// The journal on `server`, its partitions held as a serving node holds them.
async fn open_nats(server: &NatsServer) -> NatsJournal {
    let mut options = NatsOptions::new(server.url());
    options.ownership = Some(Ownership::new("engine-tests"));
    NatsJournal::open(options).await.unwrap()
}

pub fn assert_completed(state: &ExecutionState) {
    assert_eq!(state.status, Status::Completed, "error: {:?}", state.error);
}

/// A one-step task workflow.
pub fn task_step(id: &str, capability: &str, next: Option<&str>) -> Value {
    let mut step = json!({"id": id, "type": "task", "capability": capability});
    if let Some(n) = next {
        step["next"] = json!(n);
    }
    step
}

/// How a scripted agent answers a task.
pub type Responder = Arc<dyn Fn(&ClaimedTask) -> Result<Value, ErrorInfo> + Send + Sync + 'static>;

/// Runs an agent in the background that answers every task it can claim.
pub fn spawn_agent(
    engine: &Engine,
    capabilities: &[&str],
    respond: Responder,
) -> tokio::task::JoinHandle<()> {
    let engine = engine.clone();
    let caps: Vec<String> = capabilities.iter().map(|c| c.to_string()).collect();
    tokio::spawn(async move {
        let agent = engine
            .agents()
            .register("scripted", &caps, Some(100))
            .unwrap();
        loop {
            let Ok(tasks) = engine.poll_tasks(&agent, 60_000, 10).await else {
                return;
            };
            for t in tasks {
                let result = match respond(&t) {
                    Ok(output) => engine.complete_task(&t.spec.id, output).await,
                    Err(error) => engine.fail_task(&t.spec.id, error).await,
                };
                result.unwrap();
            }
        }
    })
}

/// Follows the whole journal and moves the simulated clock to every retry
/// or timer the engine records, so time-based waits pass without sleeping.
pub fn spawn_time_skipper(engine: &Engine, clock: &SimClock) -> tokio::task::JoinHandle<()> {
    use retrace_engine::machine::Event;
    let engine = engine.clone();
    let clock = clock.clone();
    tokio::spawn(async move {
        let mut tail = engine.read().subscribe_all(1, Default::default());
        while let Some(Ok(global)) = tail.next().await {
            if let Event::RetryScheduled { due_at_ms, .. } | Event::TimerStarted { due_at_ms, .. } =
                global.event.event
            {
                clock.set(due_at_ms);
            }
        }
    })
}

/// The steps an execution's decisions and error routes took, in order.
pub async fn path(engine: &Engine, id: ExecutionId) -> Vec<String> {
    use retrace_engine::machine::Event;
    engine
        .read()
        .events_until(id, u64::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|h| match h.event {
            Event::StepCompleted { step, .. } => Some(step),
            Event::DecisionMade { step, target, .. } => Some(format!("{step}->{target}")),
            Event::ErrorRouted { step, to, .. } => Some(format!("{step}!->{to}")),
            _ => None,
        })
        .collect()
}

/// The ```json block of docs/dsl.md whose workflow is named `name`.
pub fn from_docs(name: &str) -> Value {
    let doc =
        std::fs::read_to_string(format!("{}/../docs/dsl.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```json\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").unwrap();
        if let Ok(v) = serde_json::from_str::<Value>(&body[..end])
            && v["name"] == json!(name)
        {
            return v;
        }
        rest = &body[end..];
    }
    panic!("docs/dsl.md has no example named {name}");
}
