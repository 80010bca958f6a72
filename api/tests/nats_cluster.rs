//! Chaos with real processes: three `retrace serve` nodes sharing one
//! journal, replicated on a cluster of three NATS servers (R=3). Each node
//! drives the executions of its share of the partitions; any node takes
//! any request. Clients start executions of a 10-step workflow through
//! every node (with idempotency keys, retrying after errors; every tenth of
//! a workflow with a concurrency limit), an agent on
//! every node completes tasks, and a client tails the engine-wide stream
//! through one. In each round a node chosen at random is SIGKILLed and
//! started again, and in every third round a NATS server is SIGKILLed too.
//! At the end: every acknowledged start completed with its expected output,
//! no step's task was completed twice in any history, every event a client
//! was shown is stored with the same hash, every stream's chain reads
//! back from NATS, and the limit was never exceeded at any position. For each round, the handover (from the kill until the
//! live nodes drive every partition again) is printed.
//!
//! `RETRACE_CHAOS_EXECUTIONS` (default 1,000), `RETRACE_CHAOS_ROUNDS`
//! (default 10), `RETRACE_CHAOS_SEED` repeats a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kill_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kill_support::{Rng, every_stream_reads_back, follow_all_events};
use retrace_engine::read::History;
use retrace_engine::store::{Storage, Store};
use retrace_journal_nats::server::NatsCluster;
use retrace_journal_nats::{NatsOptions, PARTITIONS_DEFAULT};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A watchdog for waits that must end (not a synchronisation).
const PATIENCE: Duration = Duration::from_secs(60);

/// The pause before a client tries a refused request again (a client's
/// backoff, not a synchronisation).
const RETRY: Duration = Duration::from_millis(20);

const NODES: usize = 3;
const STEPS: i64 = 10;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// One `retrace serve` process.
struct Node {
    child: Child,
    base: String,
}

impl Node {
    async fn start(nats: &[String]) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_retrace"))
            .args(["serve", "--listen", "127.0.0.1:0", "--nats-replicas", "3"])
            .arg("--nats")
            .arg(nats.join(","))
            .env_remove("RETRACE_DATA")
            .env_remove("RETRACE_NATS")
            .env("RUST_LOG", "info,retrace_journal_nats=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = tokio::time::timeout(PATIENCE, async {
            let mut said = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening")
                    && let Some(rest) = line.split("addr=").nth(1)
                {
                    return rest.split_whitespace().next().unwrap().to_string();
                }
                said.push(line);
            }
            panic!("a node exited before listening: {}", said.join("\n"));
        })
        .await
        .expect("a node says where it listens");
        let pid = child.id().unwrap_or(0);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                // Shown when the test fails: what each node said of note.
                if (line.contains("WARN") || line.contains("ERROR") || line.contains("home"))
                    && !line.contains("request failed")
                    && !line.contains("retrace_api::requests")
                    && !line.contains("not renewed for its whole lease")
                {
                    eprintln!("node {pid}: {line}");
                }
            }
        });
        Node {
            child,
            base: format!("http://{addr}"),
        }
    }
}

/// How many partitions the node at `base` drives, by its metrics (none
/// while it does not answer).
async fn driven(http: &reqwest::Client, base: &str) -> usize {
    let Ok(r) = http.get(format!("{base}/metrics")).send().await else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("retrace_partitions_driven "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the nodes at `bases` together drive every partition; when.
async fn every_partition_driven(http: &reqwest::Client, bases: &Bases) -> Instant {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let now: Vec<String> = bases.lock().unwrap().clone();
            let mut sum = 0;
            for base in &now {
                sum += driven(http, base).await;
            }
            if sum == PARTITIONS_DEFAULT as usize {
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the live nodes drive every partition")
}

/// The nodes' current URLs (a node restarted listens elsewhere).
type Bases = Arc<Mutex<Vec<String>>>;

fn base_of(bases: &Bases, i: usize) -> String {
    bases.lock().unwrap()[i % NODES].clone()
}

/// An agent on node `i` that adds one to `n`, registering again whenever
/// the journal's holder does not know it (a new holder, or a restart).
async fn agent(http: reqwest::Client, bases: Bases, i: usize) {
    let mut agent: Option<String> = None;
    loop {
        let url = base_of(&bases, i);
        let Some(id) = agent.clone() else {
            let r = http
                .post(format!("{url}/v1/agents"))
                .json(&json!({"name": format!("counter-{i}"), "capabilities": ["count"], "maxConcurrency": 50}))
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 201 => {
                    let body: Value = r.json().await.unwrap();
                    agent = Some(body["id"].as_str().unwrap().to_string());
                }
                _ => tokio::time::sleep(RETRY).await,
            }
            continue;
        };
        let r = http
            .post(format!("{url}/v1/tasks/poll"))
            .json(&json!({"agentId": id, "waitMs": 500, "max": 20}))
            .send()
            .await;
        let Ok(r) = r else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        if r.status() == 404 {
            agent = None;
            continue;
        }
        if !r.status().is_success() {
            tokio::time::sleep(RETRY).await;
            continue;
        }
        let Ok(body) = r.json::<Value>().await else {
            continue;
        };
        for t in body["tasks"].as_array().cloned().unwrap_or_default() {
            let n = t["input"]["n"].as_i64().unwrap();
            // A result not taken for now (`503`, or no answer) is sent
            // again, through whichever node is this agent's now, as an
            // agent does until its claim ends; a new holder that does not
            // know the claim refuses it, and the task comes back to it.
            // Each on its own, as an agent with many slots reports: one
            // result waiting never holds up polling for the next tasks.
            let path = format!("/v1/tasks/{}/complete", t["id"].as_str().unwrap());
            let (http, bases) = (http.clone(), bases.clone());
            tokio::spawn(tokio::time::timeout(PATIENCE, async move {
                loop {
                    let r = http
                        .post(format!("{}{path}", base_of(&bases, i)))
                        .json(&json!({"output": {"n": n + 1}}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() != 503 => break,
                        _ => tokio::time::sleep(RETRY).await,
                    }
                }
            }));
        }
    }
}

/// The executions of `limited10` (every tenth) running at once per group
/// (`n / 10 % 2`): one server, the holder of its partition, counts them all.
const LIMIT: u32 = 2;

/// A 10-step workflow: each step's task adds one to `n`, its claim lasting
/// 10 s; `limited10` is the same with a concurrency limit per group.
fn workflow(name: &str) -> Value {
    let steps: Vec<Value> = (0..STEPS)
        .map(|i| {
            // A poll whose answer was lost with the node forwarding it
            // leaves its task claimed until the claim ends: 10 s here, then
            // the next attempt (the default would be 5 minutes).
            let mut step = json!({
                "id": format!("s{i}"), "type": "task", "capability": "count",
                "timeout": {"startToCloseMs": 10000},
                "retry": {"maxAttempts": 10, "interval": 100}
            });
            if i == 0 {
                step["input"] = json!({"n": "$.input.n"});
            }
            if i + 1 < STEPS {
                step["next"] = json!(format!("s{}", i + 1));
            }
            step
        })
        .collect();
    let mut workflow = json!({"name": name, "steps": steps});
    if name == "limited10" {
        workflow["concurrency"] = json!({"key": "$.input.group", "limit": LIMIT});
    }
    workflow
}

/// Sends until a node answers with a success; the answer's body.
async fn until_done(
    http: &reqwest::Client,
    bases: &Bases,
    first: usize,
    send: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
) -> Value {
    tokio::time::timeout(PATIENCE, async {
        let mut i = first;
        loop {
            if let Ok(r) = send(http, &base_of(bases, i)).send().await
                && r.status().is_success()
                && let Ok(body) = r.json::<Value>().await
            {
                return body;
            }
            i += 1;
            tokio::time::sleep(RETRY).await;
        }
    })
    .await
    .expect("some node answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_sigkills_of_nodes_and_of_nats_servers() {
    let executions = env_or("RETRACE_CHAOS_EXECUTIONS", 1_000);
    let rounds = env_or("RETRACE_CHAOS_ROUNDS", 10);
    let seed = env_or(
        "RETRACE_CHAOS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    eprintln!("chaos: seed {seed} (RETRACE_CHAOS_SEED), {executions} executions, {rounds} rounds");
    let mut rng = Rng(seed);
    let mut cluster = NatsCluster::start(3);
    let nats = cluster.urls();
    let started = Instant::now();
    let mut first = Vec::new();
    for _ in 0..NODES {
        first.push(Node::start(&nats).await);
    }
    let bases: Bases = Arc::new(Mutex::new(first.iter().map(|n| n.base.clone()).collect()));
    let mut nodes = first;
    let http = reqwest::Client::new();
    every_partition_driven(&http, &bases).await;
    eprintln!(
        "three nodes share the partitions {:?} after the first started",
        started.elapsed()
    );
    for name in ["counter10", "limited10"] {
        let definition = workflow(name);
        until_done(&http, &bases, 0, |c, b| {
            c.post(format!("{b}/v1/workflows")).json(&definition)
        })
        .await;
    }
    let agents: Vec<_> = (0..NODES)
        .map(|i| tokio::spawn(agent(http.clone(), bases.clone(), i)))
        .collect();
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    // Through node 0, whichever process it is now.
    let tailer = tokio::spawn(follow_all_events(
        http.clone(),
        {
            let bases = bases.clone();
            move || base_of(&bases, 0)
        },
        seen.clone(),
    ));

    // Acknowledged starts: id -> n.
    let mut acknowledged: BTreeMap<String, i64> = BTreeMap::new();
    let per_round = executions.div_ceil(rounds + 1);
    let mut next = 0i64;
    // Handovers after a node was SIGKILLed: in rounds with every NATS
    // server up, and in rounds with one down (where a stream whose leader
    // it was has none until NATS elects one, 4-9 s later by nats-server's
    // Raft timeouts, and a node may lose leases without a kill).
    let mut handovers: Vec<Duration> = Vec::new();
    let mut handovers_nats_down: Vec<Duration> = Vec::new();
    for round in 0..=rounds {
        let nats_down = (round % 3 == 2).then(|| {
            let k = (rng.next() % 3) as usize;
            cluster.node(k).kill();
            k
        });
        for _ in 0..per_round {
            if next as u64 >= executions {
                break;
            }
            let n = next;
            let workflow = if n % 10 == 9 {
                "limited10"
            } else {
                "counter10"
            };
            let body = json!({"workflow": workflow, "input": {"n": n * 100, "group": (n / 10) % 2},
                "idempotencyKey": format!("exec-{n}")});
            let r = until_done(&http, &bases, n as usize, |c, b| {
                c.post(format!("{b}/v1/executions")).json(&body)
            })
            .await;
            acknowledged.insert(r["id"].as_str().unwrap().to_string(), n * 100);
            next += 1;
        }
        if round == rounds {
            break;
        }
        let k = (rng.next() % NODES as u64) as usize;
        nodes[k].child.start_kill().unwrap(); // SIGKILL
        let killed = Instant::now();
        // Reaped before it is replaced (kill_on_drop would do it too).
        let _ = nodes[k].child.wait().await;
        // Its partitions are taken once its leases end: by the others, or
        // by its replacement if it is preferred for them.
        let replacement = Node::start(&nats).await;
        bases.lock().unwrap()[k] = replacement.base.clone();
        nodes[k] = replacement;
        let handover = every_partition_driven(&http, &bases).await - killed;
        eprintln!(
            "round {round}: node {k} SIGKILLed{}; every partition driven again {handover:?} later",
            nats_down.map_or(String::new(), |j| format!(", NATS server {j} down"))
        );
        if nats_down.is_some() {
            handovers_nats_down.push(handover);
        } else {
            handovers.push(handover);
        }
        if let Some(j) = nats_down {
            cluster.node(j).restart();
        }
    }

    // Every acknowledged execution completes with its expected output.
    for (i, (id, n)) in acknowledged.iter().enumerate() {
        let done = tokio::time::timeout(PATIENCE, async {
            loop {
                let s = until_done(&http, &bases, i, |c, b| {
                    c.get(format!("{b}/v1/executions/{id}?waitMs=2000"))
                })
                .await;
                if s["status"] != "running" {
                    return s;
                }
            }
        })
        .await;
        let Ok(done) = done else {
            let page = until_done(&http, &bases, i, |c, b| {
                c.get(format!("{b}/v1/executions/{id}/events?limit=1000"))
            })
            .await;
            let events: Vec<String> = page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| format!("{} {} {}", e["seq"], e["type"], e["data"]))
                .collect();
            panic!("seed {seed}: execution {id} never ended: {events:#?}");
        };
        assert_eq!(done["status"], "completed", "seed {seed}: {done}");
        assert_eq!(done["output"], json!({"n": n + STEPS}), "seed {seed}: {id}");
    }
    for a in agents {
        a.abort();
    }
    tailer.abort();

    // No step's task completed twice in any history, and every event a
    // client was shown is stored with the same hash.
    let shown = seen.lock().unwrap().clone();
    assert!(!shown.is_empty());
    for (i, id) in acknowledged.keys().enumerate() {
        let page = until_done(&http, &bases, i, |c, b| {
            c.get(format!("{b}/v1/executions/{id}/events?limit=1000"))
        })
        .await;
        let events = page["events"].as_array().unwrap();
        let completed: Vec<u64> = events
            .iter()
            .filter(|e| e["type"] == "task_completed")
            .map(|e| e["data"]["act"].as_u64().unwrap())
            .collect();
        let distinct: BTreeSet<u64> = completed.iter().copied().collect();
        assert_eq!(
            (completed.len(), distinct.len()),
            (STEPS as usize, STEPS as usize),
            "seed {seed}: {id}: each step's task completed once: {completed:?}"
        );
        let stored: BTreeMap<u64, &str> = events
            .iter()
            .map(|e| (e["seq"].as_u64().unwrap(), e["hash"].as_str().unwrap()))
            .collect();
        for ((eid, seq), hash) in shown.range((id.clone(), 0)..=(id.clone(), u64::MAX)) {
            assert_eq!(eid, id);
            assert_eq!(
                stored.get(seq).copied(),
                Some(hash.as_str()),
                "seed {seed}: event {seq} of {id} shown, then lost"
            );
        }
    }
    for (mut times, when) in [
        (handovers, "every NATS server up"),
        (handovers_nats_down, "a NATS server down"),
    ] {
        if !times.is_empty() {
            times.sort();
            eprintln!(
                "handover after a SIGKILL of a node, {when}: {} times, median {:?}, max {:?}",
                times.len(),
                times[times.len() / 2],
                times[times.len() - 1]
            );
        }
    }

    // Stopped gracefully, one after another; then every chain reads back.
    for node in nodes {
        let mut child = node.child;
        let pid = child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(child.wait().await.unwrap().success());
    }
    let options = NatsOptions {
        servers: nats,
        replicas: 3,
        ..NatsOptions::new("")
    };
    let streams = every_stream_reads_back(options.clone()).await;
    assert!(streams as u64 > executions, "every execution is a stream");

    // limited10's limit held over the whole journal, in its one order,
    // whichever servers were killed (invariant 33).
    let journal = retrace_journal_nats::NatsJournal::open(options)
        .await
        .unwrap();
    let store = Store::open(Storage::Journal(Arc::new(journal))).unwrap();
    let peaks = History::new(store, None).limit_peaks().await.unwrap();
    eprintln!("limited10's peaks: {peaks:?}");
    assert_eq!(peaks.len(), 2, "seed {seed}: {peaks:?}");
    for peak in &peaks {
        assert_eq!(peak.limit, LIMIT);
        assert!(peak.peak <= LIMIT as usize, "seed {seed}: {peak:?}");
    }
}
