//! Engines sharing one journal on a real `nats-server`, each driving the
//! executions of the partitions its journal holds: each starts executions
//! only in its own partitions; a server joining takes its share with their
//! unfinished executions (the other drops them: it records nothing more for
//! them); a server dying has its executions taken by the others once its
//! leases end. Every execution completes, and completes its task once.
//!
//! Steps are handled in-process and held at a gate until the test lets them
//! go, so executions are mid-flight when their partitions move.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};
use retrace_engine::ExecutionId;
use retrace_engine::clock::SystemClock;
use retrace_engine::machine::{ErrorInfo, Status};
use retrace_engine::runtime::{Engine, EngineConfig, HandlerTask, StartRequest, TaskHandler};
use retrace_journal::StreamId;
use retrace_journal_nats::server::NatsServer;
use retrace_journal_nats::{NatsJournal, NatsOptions, Ownership, PARTITIONS_DEFAULT};
use serde_json::{Value, json};
use tokio::sync::watch;

/// Whether every server's in-process `flaky` handler fails, and how often
/// it was called (one test uses it).
static FLAKY_FAILS: AtomicBool = AtomicBool::new(true);
static FLAKY_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Short leases, so a dead server's partitions move in a few seconds.
const TTL: Duration = Duration::from_secs(2);

/// How long anything here may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// Which engines were handed each execution's task, in order.
type Calls = Arc<watch::Sender<HashMap<ExecutionId, Vec<&'static str>>>>;

/// An engine on its own sharing journal, with the gate's handler.
struct Node {
    engine: Engine,
    journal: NatsJournal,
}

async fn node(
    server: &NatsServer,
    name: &'static str,
    open: &watch::Receiver<bool>,
    calls: &Calls,
) -> Node {
    let journal = NatsJournal::open(NatsOptions {
        ownership: Some(Ownership {
            ttl: TTL,
            share: true,
            ..Ownership::new(name)
        }),
        ..NatsOptions::new(server.url())
    })
    .await
    .expect("a sharing server opens the journal");
    let (open, calls) = (open.clone(), calls.clone());
    let gate = move |task: HandlerTask| -> BoxFuture<'static, Result<Value, ErrorInfo>> {
        calls.send_modify(|calls| calls.entry(task.execution).or_default().push(name));
        let mut open = open.clone();
        async move {
            let _ = open.wait_for(|open| *open).await;
            Ok(json!({"by": name}))
        }
        .boxed()
    };
    let flaky = move |_: HandlerTask| -> BoxFuture<'static, Result<Value, ErrorInfo>> {
        FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
        let fails = FLAKY_FAILS.load(Ordering::SeqCst);
        async move {
            if fails {
                Err(ErrorInfo::new("down", "the service is down"))
            } else {
                Ok(json!({"up": true}))
            }
        }
        .boxed()
    };
    let config = EngineConfig {
        handlers: vec![
            ("gate".into(), Arc::new(gate) as Arc<dyn TaskHandler>),
            ("flaky".into(), Arc::new(flaky) as Arc<dyn TaskHandler>),
        ],
        ..EngineConfig::journal(Arc::new(journal.clone()), Arc::new(SystemClock))
    };
    let engine = Engine::open(config).await.expect("the engine opens");
    Node { engine, journal }
}

impl Node {
    /// A graceful stop: the engine shuts down, then its partitions are
    /// given up at once.
    async fn stop(&self) {
        self.engine.shutdown().await.unwrap();
        self.journal.release().await;
    }

    fn holds(&self, partition: u32) -> bool {
        self.engine
            .partitions()
            .unwrap()
            .borrow()
            .contains(&partition)
    }
}

/// `a` and `b`, the home (the holder of partition 0) first.
fn home_first<'n>(a: &'n Node, b: &'n Node) -> (&'n Node, &'n Node) {
    if a.holds(0) { (a, b) } else { (b, a) }
}

/// Two engines, `a` and `b`, sharing the journal, their shares settled.
async fn two_settled(
    server: &NatsServer,
    opened: &watch::Receiver<bool>,
    calls: &Calls,
) -> (Node, Node) {
    let a = node(server, "a", opened, calls).await;
    let b = node(server, "b", opened, calls).await;
    settled(&[&a, &b]).await;
    (a, b)
}

fn no_calls() -> Calls {
    Arc::new(watch::Sender::new(HashMap::new()))
}

fn partition(id: ExecutionId) -> u32 {
    retrace_journal::partition_of(StreamId::from_bytes(*id.as_bytes()), PARTITIONS_DEFAULT)
}

/// Waits until the engines' partitions are disjoint, non-empty and cover
/// every partition (each engine's trails its journal's: it has recovered
/// what it drives).
async fn settled(nodes: &[&Node]) {
    let mut watches: Vec<_> = nodes
        .iter()
        .map(|n| {
            n.engine
                .partitions()
                .expect("the engine shares its journal")
        })
        .collect();
    let every: BTreeSet<u32> = (0..PARTITIONS_DEFAULT).collect();
    let done = tokio::time::timeout(PATIENCE, async {
        loop {
            let shares: Vec<BTreeSet<u32>> = watches
                .iter_mut()
                .map(|w| w.borrow_and_update().clone())
                .collect();
            let total: usize = shares.iter().map(BTreeSet::len).sum();
            let union: BTreeSet<u32> = shares.iter().flatten().copied().collect();
            if union == every && total == union.len() && shares.iter().all(|s| !s.is_empty()) {
                return;
            }
            let changes = watches.iter_mut().map(|w| Box::pin(w.changed()));
            let _ = futures::future::select_all(changes).await;
        }
    })
    .await;
    let shares: Vec<usize> = watches.iter().map(|w| w.borrow().len()).collect();
    assert!(
        done.is_ok(),
        "the engines' shares did not settle: {shares:?}"
    );
}

async fn start(node: &Node, n: usize) -> Vec<ExecutionId> {
    start_of(node, "moving", n).await
}

async fn start_of(node: &Node, workflow: &str, n: usize) -> Vec<ExecutionId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let started = node
            .engine
            .start(StartRequest {
                workflow: workflow.into(),
                input: json!({"i": i}),
                ..StartRequest::default()
            })
            .await
            .expect("a start on a server holding partitions");
        ids.push(started.id);
    }
    ids
}

const WORKFLOW: &str = r#"{
    "name": "moving",
    "steps": [
        {"id": "gate", "type": "task", "capability": "gate", "next": "nap"},
        {"id": "nap", "type": "wait", "wait": {"seconds": 1}}
    ]
}"#;

/// A step for agents (no in-process handler): its task waits in the
/// queue of the engine driving the execution.
const FOR_AGENTS: &str = r#"{
    "name": "for_agents",
    "steps": [{"id": "work", "type": "task", "capability": "queued"}]
}"#;

/// Claims and completes, through an agent of `node`, the `n` tasks its
/// queue holds.
async fn work_off(node: &Node, n: usize) {
    let agent = node
        .engine
        .agents()
        .register("worker", &["queued".to_owned()], Some(100))
        .unwrap();
    let mut done = 0;
    while done < n {
        let tasks = node
            .engine
            .poll_tasks(&agent, 5_000, n - done)
            .await
            .unwrap();
        for task in tasks {
            node.engine
                .complete_task(&task.spec.id, json!({}))
                .await
                .unwrap();
            done += 1;
        }
    }
}

/// Waits until `id` has completed (following its history, from any
/// server), then checks its history: its task completed once.
async fn completed_once(reader: &Engine, id: ExecutionId) {
    let mut tail = reader.read().subscribe(id, 1);
    let mut completed_tasks = 0;
    let ended = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = tail.next().await {
            match event.expect("a readable history").event.kind() {
                "task_completed" => completed_tasks += 1,
                "execution_completed" => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "{id} did not complete");
    assert_eq!(
        completed_tasks, 1,
        "{id} completed its task {completed_tasks} times"
    );
    let state = reader.read().state(id).await.unwrap().unwrap();
    assert_eq!(state.status, Status::Completed);
}

/// A name for a server joining `a` that takes partition 0 (the home) from
/// it, or leaves it to `a`, by the journal's rendezvous rule.
fn joiner(takes_home: bool) -> &'static str {
    ["b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]
        .into_iter()
        .find(|name| {
            let nodes = ["a".to_owned(), (*name).to_owned()];
            (retrace_journal_nats::preferred(&nodes, 0) == Some(*name)) == takes_home
        })
        .expect("one of ten names ranks either way")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_joining_takes_its_share_of_the_executions_mid_flight() {
    joining(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_joining_as_the_home_takes_the_tasks_for_agents_too() {
    joining(true).await
}

/// `a` runs alone, then another server joins (taking the home, or not).
async fn joining(takes_home: bool) {
    let server = NatsServer::start();
    let (open, opened) = watch::channel(false);
    let calls = no_calls();
    let a = node(&server, "a", &opened, &calls).await;
    a.engine.define_json(WORKFLOW.as_bytes()).await.unwrap();
    a.engine.define_json(FOR_AGENTS.as_bytes()).await.unwrap();
    assert_eq!(
        a.engine.partitions().unwrap().borrow().len() as u32,
        PARTITIONS_DEFAULT,
        "alone, a server drives every partition"
    );
    let from_a = start(&a, 24).await;
    let for_agents = start_of(&a, "for_agents", 24).await;

    let joined = joiner(takes_home);
    let b = node(&server, joined, &opened, &calls).await;
    settled(&[&a, &b]).await;
    assert_eq!(b.holds(0), takes_home);
    let (held_a, held_b) = (
        a.engine.partitions().unwrap().borrow().clone(),
        b.engine.partitions().unwrap().borrow().clone(),
    );
    let from_b = start(&b, 24).await;
    for id in &from_b {
        assert!(
            held_b.contains(&partition(*id)),
            "b started {id} outside its share"
        );
    }
    let moved: Vec<ExecutionId> = from_a
        .iter()
        .copied()
        .filter(|id| held_b.contains(&partition(*id)))
        .collect();
    assert!(
        !moved.is_empty(),
        "some of a's executions fall in b's share"
    );

    // What moved has its task queued again by b; a let go of it.
    let mut seen = calls.subscribe();
    let queued_by_b = tokio::time::timeout(
        PATIENCE,
        seen.wait_for(|seen| {
            moved
                .iter()
                .all(|id| seen.get(id).is_some_and(|by| by.contains(&joined)))
        }),
    )
    .await;
    let queued_by_b = queued_by_b.is_ok_and(|r| r.is_ok());
    assert!(queued_by_b, "b did not take up the executions it gained");
    // Each engine lists only what it drives; the tasks for agents of
    // both wait in one queue, the home's (the holder of partition 0).
    let (on_a, on_b): (Vec<ExecutionId>, Vec<ExecutionId>) = for_agents
        .iter()
        .partition(|id| held_a.contains(&partition(**id)));
    assert!(!on_a.is_empty() && !on_b.is_empty(), "both hold some");
    let (home, away) = if held_a.contains(&0) {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let queued = |node: &Node| node.engine.agents().queue_sizes().get("queued").copied();
    until("the home queues every task for agents", || {
        queued(home) == Some(for_agents.len())
    })
    .await;
    assert_eq!(queued(away), None, "only the home queues tasks for agents");
    let listed = |node: &Node| node.engine.status_counts().values().sum::<u64>() as usize;
    let a_holds = from_a
        .iter()
        .chain(&for_agents)
        .filter(|id| held_a.contains(&partition(**id)))
        .count();
    assert_eq!(listed(&a), a_holds, "a lists only what it drives");
    // An agent of the home's does them all; each result reaches the
    // server driving its execution.
    tokio::time::timeout(PATIENCE, work_off(home, for_agents.len()))
        .await
        .expect("the home's agent does every task");

    open.send_replace(true);
    for id in from_a.iter().chain(&from_b).chain(&for_agents) {
        completed_once(&a.engine, *id).await;
    }
    for id in &from_a {
        if held_a.contains(&partition(*id)) {
            assert_eq!(calls.borrow()[id], vec!["a"], "{id} stayed on a");
        }
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_servers_executions_are_taken_by_the_others_and_complete() {
    let server = NatsServer::start();
    let (open, opened) = watch::channel(false);
    let calls = no_calls();
    let a = node(&server, "a", &opened, &calls).await;
    a.engine.define_json(WORKFLOW.as_bytes()).await.unwrap();
    a.engine.define_json(FOR_AGENTS.as_bytes()).await.unwrap();
    let b = node(&server, "b", &opened, &calls).await;
    settled(&[&a, &b]).await;
    let from_a = start(&a, 16).await;
    let from_b = start(&b, 16).await;
    let for_agents = [
        start_of(&a, "for_agents", 8).await,
        start_of(&b, "for_agents", 8).await,
    ]
    .concat();

    // The home dies (its tasks stop, its leases are not given up but run
    // out): the other takes its partitions, becomes the home, reads the
    // home's tables again (a breaker set since it opened: followed too, so
    // the survivor may know it already) and queues every task for agents
    // again.
    let (home, survivor) = if a.holds(0) { (a, b) } else { (b, a) };
    let settings = retrace_engine::breakers::BreakerSettings {
        failures: 5,
        window_ms: 60_000,
        cool_down_ms: 60_000,
        per_agent: false,
    };
    home.engine
        .set_breaker("queued", settings, None, None)
        .await
        .unwrap();
    home.engine.shutdown().await.unwrap();
    drop(home);
    let every: BTreeSet<u32> = (0..PARTITIONS_DEFAULT).collect();
    let mut held = survivor.engine.partitions().unwrap();
    // (The watch's guard let go at once: it holds off the engine's next change.)
    let taken = tokio::time::timeout(PATIENCE, held.wait_for(|held| *held == every))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(
        taken,
        "the survivor did not take the dead server's partitions"
    );
    until("the new home knows the breaker", || {
        survivor.engine.breaker("queued").is_ok()
    })
    .await;
    tokio::time::timeout(PATIENCE, work_off(&survivor, for_agents.len()))
        .await
        .expect("the new home's agent does every task for agents");

    open.send_replace(true);
    for id in from_a.iter().chain(&from_b).chain(&for_agents) {
        completed_once(&survivor.engine, *id).await;
    }
    let calls = calls.borrow().clone();
    let name = |id| calls[&id].last().copied();
    let last = name(from_a[0]).expect("handed out");
    for id in from_a.iter().chain(&from_b) {
        assert_eq!(name(*id), Some(last), "{id} finished on the survivor");
    }
    survivor.stop().await;
}

/// A parent whose step is a child execution of `moving`.
const FAMILY: &str = r#"{
    "name": "family",
    "steps": [{"id": "call", "type": "subworkflow", "subworkflow": {"workflow": "moving"}}]
}"#;

/// Waits until `id` has ended (following its history, from any server);
/// the kind of its last event.
async fn ended(reader: &Engine, id: ExecutionId) -> String {
    let mut tail = reader.read().subscribe(id, 1);
    let end = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = tail.next().await {
            let kind = event.expect("a readable history").event.kind();
            if matches!(
                kind,
                "execution_completed"
                    | "execution_failed"
                    | "execution_cancelled"
                    | "execution_terminated"
            ) {
                return kind.to_owned();
            }
        }
        "the history ended".to_owned()
    })
    .await;
    end.unwrap_or_else(|_| panic!("{id} did not end"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_in_another_servers_partitions_start_report_and_are_cancelled_through_the_journal()
{
    let server = NatsServer::start();
    let (open, opened) = watch::channel(false);
    let calls = no_calls();
    let a = node(&server, "a", &opened, &calls).await;
    a.engine.define_json(WORKFLOW.as_bytes()).await.unwrap();
    a.engine.define_json(FAMILY.as_bytes()).await.unwrap();
    let b = node(&server, "b", &opened, &calls).await;
    settled(&[&a, &b]).await;
    let held_a = a.engine.partitions().unwrap().borrow().clone();
    let parents: Vec<ExecutionId> = [
        start_of(&a, "family", 12).await,
        start_of(&b, "family", 12).await,
    ]
    .concat();

    // Every child is started, by whichever server holds its partition.
    let mut seen = calls.subscribe();
    let started = tokio::time::timeout(PATIENCE, seen.wait_for(|c| c.len() == parents.len()))
        .await
        .is_ok_and(|s| s.is_ok());
    assert!(started, "not every child started");
    let children: HashMap<ExecutionId, ExecutionId> = {
        let mut children = HashMap::new();
        for child in calls.borrow().keys() {
            let state = a.engine.read().state(*child).await.unwrap().unwrap();
            children.insert(
                state.parent.expect("a child has a parent").execution,
                *child,
            );
        }
        children
    };
    let owner = |id: ExecutionId| {
        if held_a.contains(&partition(id)) {
            "a"
        } else {
            "b"
        }
    };
    let crossing = parents
        .iter()
        .filter(|p| owner(**p) != owner(children[*p]))
        .count();
    assert!(
        crossing > 0,
        "some children fall in the other server's partitions"
    );
    for (parent, child) in &children {
        assert_eq!(
            calls.borrow()[child],
            vec![owner(*child)],
            "{child} (of {parent}) ran where its partition is"
        );
    }

    // Cancelling a parent cancels its child, wherever it runs.
    let (cancelled, rest) = parents.split_at(4);
    for parent in cancelled {
        let engine = if owner(*parent) == "a" {
            &a.engine
        } else {
            &b.engine
        };
        engine
            .cancel(*parent, "no longer needed", false)
            .await
            .unwrap();
    }
    for parent in cancelled {
        assert_eq!(
            ended(&a.engine, children[parent]).await,
            "execution_cancelled"
        );
    }

    // The others' children end, and their ends reach their parents.
    open.send_replace(true);
    for parent in rest {
        assert_eq!(
            ended(&b.engine, children[parent]).await,
            "execution_completed"
        );
        assert_eq!(ended(&b.engine, *parent).await, "execution_completed");
    }
    a.stop().await;
    b.stop().await;
}

/// Waits until `holds` says yes (what the engines take in from the journal
/// gives no signal of its own); fails after `PATIENCE`.
async fn until(what: &str, mut holds: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !holds() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_home_server_records_reaches_every_server_and_only_it_records_it() {
    use retrace_engine::store::tokens::{NewToken, Role};
    let server = NatsServer::start();
    let (_open, opened) = watch::channel(false);
    let calls = no_calls();
    let (a, b) = two_settled(&server, &opened, &calls).await;
    let (home, other) = home_first(&a, &b);

    // A definition and a token made at the home are taken in elsewhere.
    home.engine.define_json(WORKFLOW.as_bytes()).await.unwrap();
    until("the other server knows the definition", || {
        other.engine.workflow("moving", None).is_some()
    })
    .await;
    let (_, secret) = home
        .engine
        .create_token(
            NewToken {
                name: "ops".into(),
                role: Role::Operator,
                capabilities: None,
                expires_at_ms: None,
            },
            None,
            None,
        )
        .await
        .unwrap();
    until("the other server checks the token", || {
        other.engine.authenticate(&secret).is_ok()
    })
    .await;
    assert!(other.engine.tokens_required());
    // The other started what the home defined.
    let started = start(other, 1).await;
    assert!(
        other
            .engine
            .partitions()
            .unwrap()
            .borrow()
            .contains(&partition(started[0]))
    );

    // Elsewhere a definition is refused, and nothing is recorded.
    let refused = other.engine.define_json(FAMILY.as_bytes()).await;
    assert!(refused.is_err(), "only the home server records definitions");
    assert!(home.engine.workflow("family", None).is_none());
    assert!(other.engine.workflow("family", None).is_none());

    // The home leaves; the other becomes it, and defines on what the
    // stream holds.
    home.stop().await;
    let mut held = other.engine.partitions().unwrap();
    let took = tokio::time::timeout(PATIENCE, held.wait_for(|h| h.contains(&0)))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(took, "the other took partition 0");
    other.engine.define_json(FAMILY.as_bytes()).await.unwrap();
    assert!(other.engine.workflow("family", None).is_some());
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_an_idempotency_key_is_decided_by_the_holder_of_the_keys_partition() {
    let server = NatsServer::start();
    let (_open, opened) = watch::channel(false);
    let calls = no_calls();
    let a = node(&server, "a", &opened, &calls).await;
    a.engine.define_json(WORKFLOW.as_bytes()).await.unwrap();
    let b = node(&server, "b", &opened, &calls).await;
    settled(&[&a, &b]).await;
    let keyed = |key: &str| StartRequest {
        workflow: "moving".into(),
        idempotency_key: Some(key.into()),
        ..StartRequest::default()
    };
    for i in 0..16 {
        let key = format!("order-{i}");
        let home_of_key = a.engine.key_partition(&key).unwrap();
        assert_eq!(
            b.engine.key_partition(&key),
            Some(home_of_key),
            "every server agrees"
        );
        let (holder, other) = if a.holds(home_of_key) {
            (&a, &b)
        } else {
            (&b, &a)
        };
        let refused = other.engine.start(keyed(&key)).await;
        assert!(refused.is_err(), "{key}: started away from its partition");
        let first = holder.engine.start(keyed(&key)).await.unwrap();
        assert!(first.created);
        assert_eq!(partition(first.id), home_of_key);
        let again = holder.engine.start(keyed(&key)).await.unwrap();
        assert_eq!((again.id, again.created), (first.id, false));
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_fires_schedules_whose_executions_start_wherever_their_partition_is() {
    let server = NatsServer::start();
    let (_open, opened) = watch::channel(false);
    let calls = no_calls();
    let (a, b) = two_settled(&server, &opened, &calls).await;
    let (home, other) = home_first(&a, &b);
    let tick =
        r#"{"name": "tick", "steps": [{"id": "z", "type": "wait", "wait": {"seconds": 0}}]}"#;
    home.engine.define_json(tick.as_bytes()).await.unwrap();
    until("the other knows tick", || {
        other.engine.workflow("tick", None).is_some()
    })
    .await;
    let spec: retrace_engine::schedules::ScheduleSpec =
        serde_json::from_value(json!({"id": "s", "workflow": "tick", "everyMs": 1000})).unwrap();
    home.engine.create_schedule(spec, None, None).await.unwrap();

    // Manual triggers and timed fires alike: each execution starts on
    // the server holding its partition, and ends.
    let mut fired = Vec::new();
    for _ in 0..12 {
        let (_, started) = home.engine.trigger_schedule("s", None, None).await.unwrap();
        fired.push(started.id);
    }
    until("three timed fires", || {
        home.engine.schedule("s").is_ok_and(|s| {
            s.recent
                .iter()
                .filter(|r| {
                    matches!(
                        r.outcome,
                        retrace_engine::schedules::Outcome::Started { manual: false, .. }
                    )
                })
                .count()
                >= 3
        })
    })
    .await;
    fired.extend(home.engine.schedule("s").unwrap().recent.iter().filter_map(
        |r| match &r.outcome {
            retrace_engine::schedules::Outcome::Started { execution, .. } => Some(*execution),
            _ => None,
        },
    ));
    fired.sort();
    fired.dedup();
    let held_by_other = other.engine.partitions().unwrap().borrow().clone();
    assert!(
        fired
            .iter()
            .any(|id| held_by_other.contains(&partition(*id))),
        "some fired executions fall in the other server's partitions"
    );
    for id in &fired {
        assert_eq!(ended(&home.engine, *id).await, "execution_completed");
    }
    a.stop().await;
    b.stop().await;
}

/// At most two executions per customer at once.
const LIMITED: &str = r#"{
    "name": "limited",
    "concurrency": {"key": "$.input.customer", "limit": 2},
    "steps": [{"id": "gate", "type": "task", "capability": "gate"}]
}"#;

/// Starts a `limited` child (its id derives from this execution's).
const LIMITED_PARENT: &str = r#"{
    "name": "limited_parent",
    "steps": [{
        "id": "call",
        "type": "subworkflow",
        "subworkflow": {"workflow": "limited"},
        "input": {"customer": "acme"}
    }]
}"#;

/// Where each of `ids`' slots were taken and given back, in the journal's
/// one order: the most any position saw held at once.
async fn most_held_at_once(reader: &Engine, ids: &[ExecutionId]) -> usize {
    let mut changes = Vec::new();
    for id in ids {
        for event in reader.read().events(*id, 1, 1_000).await.unwrap() {
            match event.event.kind() {
                "limit_acquired" => changes.push((event.position, 1i64)),
                "execution_completed"
                | "execution_failed"
                | "execution_cancelled"
                | "execution_terminated" => changes.push((event.position, -1)),
                _ => {}
            }
        }
    }
    changes.sort();
    let (mut held, mut most) = (0i64, 0i64);
    for (_, change) in changes {
        held += change;
        most = most.max(held);
    }
    usize::try_from(most).unwrap()
}

/// A workflow's limits count every execution of it, wherever it was asked
/// for: started directly, as a child of an execution another server
/// drives, or by a schedule at the home. All live in the workflow's own
/// partition, so the one server holding it counts them, as one server
/// would (before: each server counted its own, and two let four run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_workflows_executions_all_live_in_its_partition_and_are_counted_together() {
    let server = NatsServer::start();
    let (open, opened) = watch::channel(false);
    let calls = no_calls();
    let (a, b) = two_settled(&server, &opened, &calls).await;
    let (home, other) = home_first(&a, &b);
    for definition in [LIMITED, LIMITED_PARENT] {
        home.engine
            .define_json(definition.as_bytes())
            .await
            .unwrap();
    }
    until("the other knows both", || {
        other.engine.workflow("limited_parent", None).is_some()
    })
    .await;
    let place = a.engine.start_partition("limited", None).unwrap();
    assert_eq!(b.engine.start_partition("limited", Some("k")), Some(place));
    assert_eq!(
        a.engine.start_partition("limited_parent", None),
        None,
        "a workflow without limits starts anywhere"
    );
    let (holder, away) = if a.holds(place) { (&a, &b) } else { (&b, &a) };
    let acme = || StartRequest {
        workflow: "limited".into(),
        input: json!({"customer": "acme"}),
        ..StartRequest::default()
    };
    let refused = away.engine.start(acme()).await;
    assert!(
        refused.is_err(),
        "started away from its workflow's partition"
    );

    let mut limited = Vec::new();
    for _ in 0..3 {
        limited.push(holder.engine.start(acme()).await.unwrap().id);
    }
    let parents = [
        start_of(&a, "limited_parent", 4).await,
        start_of(&b, "limited_parent", 4).await,
    ]
    .concat();
    let spec: retrace_engine::schedules::ScheduleSpec = serde_json::from_value(
        json!({"id": "s", "workflow": "limited", "input": {"customer": "acme"}, "everyMs": 3_600_000}),
    )
    .unwrap();
    home.engine.create_schedule(spec, None, None).await.unwrap();
    for _ in 0..2 {
        let (_, started) = home.engine.trigger_schedule("s", None, None).await.unwrap();
        limited.push(started.id);
    }
    // The parents' children, as they start.
    let total = limited.len() + parents.len();
    until("every limited execution started and is counted", || {
        calls.borrow().len() + holder.engine.limit_waiting() == total
    })
    .await;
    assert_eq!(calls.borrow().len(), 2, "two of acme's run, the rest wait");
    assert_eq!(away.engine.limit_waiting(), 0);
    for parent in &parents {
        let events = a.engine.read().events(*parent, 1, 100).await.unwrap();
        let child = events
            .iter()
            .find_map(|e| match &e.event {
                retrace_engine::machine::Event::ChildStarted { child, .. } => Some(*child),
                _ => None,
            })
            .expect("a parent started its child");
        limited.push(child);
    }
    assert_eq!(limited.len(), total);
    for id in &limited {
        assert_eq!(partition(*id), place, "{id} lives in limited's partition");
    }

    open.send_replace(true);
    for id in &limited {
        assert_eq!(ended(&a.engine, *id).await, "execution_completed");
    }
    for parent in &parents {
        assert_eq!(ended(&b.engine, *parent).await, "execution_completed");
    }
    assert_eq!(most_held_at_once(&a.engine, &limited).await, 2);
    a.stop().await;
    b.stop().await;
}

/// A breaker of a capability a server performs itself (an in-process
/// handler) counts and gates that server's tasks at the home, as one
/// server's would: the third failure on the other server opens it, the
/// next task there fails fast without a call, and after the cool-down one
/// probe goes and closes it (before: the other server neither knew the
/// breaker nor told the home its results).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_of_tasks_a_server_performs_itself_is_the_homes() {
    use retrace_engine::breakers::{BreakerSettings, BreakerState};
    let server = NatsServer::start();
    let (_open, opened) = watch::channel(false);
    let calls = no_calls();
    let (a, b) = two_settled(&server, &opened, &calls).await;
    let (home, other) = home_first(&a, &b);
    let flaky = r#"{"name": "flaky_call", "steps": [{"id": "call", "type": "task", "capability": "flaky"}]}"#;
    home.engine.define_json(flaky.as_bytes()).await.unwrap();
    let settings = BreakerSettings {
        failures: 3,
        window_ms: 60_000,
        cool_down_ms: BreakerSettings::MS_MIN,
        per_agent: false,
    };
    home.engine
        .set_breaker("flaky", settings, None, None)
        .await
        .unwrap();
    until("the other knows the breaker", || {
        other.engine.breaker("flaky").is_ok() && other.engine.workflow("flaky_call", None).is_some()
    })
    .await;
    let run = || async {
        let id = start_of(other, "flaky_call", 1).await[0];
        assert_eq!(ended(&home.engine, id).await, "execution_failed");
        let state = home.engine.read().state(id).await.unwrap().unwrap();
        state.error.expect("a failed execution has its error").kind
    };
    for _ in 0..3 {
        assert_eq!(run().await, "down");
    }
    until("the home's breaker opens", || {
        home.engine
            .breaker("flaky")
            .is_ok_and(|b| matches!(b.state, BreakerState::Open { .. }))
    })
    .await;
    assert_eq!(run().await, "circuit_open");
    assert_eq!(
        FLAKY_CALLS.load(Ordering::SeqCst),
        3,
        "failed fast, no call"
    );

    // The service is back: once the cool-down is over, one probe goes and
    // closes the breaker.
    FLAKY_FAILS.store(false, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let id = start_of(other, "flaky_call", 1).await[0];
        if ended(&home.engine, id).await == "execution_completed" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no probe went");
    }
    // Its result reaches the home after the execution recorded it.
    until("the probe's success closes the breaker", || {
        home.engine
            .breaker("flaky")
            .is_ok_and(|b| b.state == BreakerState::Closed)
    })
    .await;
    assert_eq!(home.engine.breaker("flaky").unwrap().opened, 1);
    assert_eq!(FLAKY_CALLS.load(Ordering::SeqCst), 4);
    a.stop().await;
    b.stop().await;
}
