//! Recovery with real processes: `retrace serve` on an ephemeral port with a
//! data folder; clients start executions (with idempotency keys, retrying
//! after errors) while an agent completes tasks over HTTP and a client tails
//! the engine-wide event stream. The server is SIGKILLed at random moments,
//! several times, and restarted on the same folder. At the end: every
//! execution whose start was acknowledged exists and completed with its
//! expected output, every event a client was shown is stored with the same
//! hash, and the journal verifies. Access tokens are on throughout: the
//! clients hold an operator's token and the agent its own (made on the data
//! folder before the first start), so recovery is proved with auth on.
//!
//! The same run is made with the journal on a real `nats-server`
//! (`serve --nats`): there the server starts with no tokens (they would be
//! made over the API, not on a folder), and at the end every stream's
//! chain is read back and checked from NATS. (Several servers on a NATS
//! cluster, with NATS servers killed too: `nats_cluster.rs`.)
//!
//! `RETRACE_KILL_ROUNDS` (default 4) sets the number of kills,
//! `RETRACE_KILL_SEED` repeats a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kill_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kill_support::{Rng, every_stream_reads_back, follow_all_events};
use retrace_journal_nats::NatsOptions;
use retrace_journal_nats::server::NatsServer;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A watchdog for waits that must end (not a synchronisation).
const PATIENCE: Duration = Duration::from_secs(60);

struct Server {
    child: Child,
    base: String,
}

/// Where the server keeps its journal.
enum Backend {
    Folder(std::path::PathBuf),
    /// The URL of a NATS server.
    Nats(String),
}

async fn serve(backend: &Backend) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_retrace"));
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    match backend {
        Backend::Folder(data) => command.arg("--data").arg(data),
        Backend::Nats(url) => command.args(["--nats", url]),
    };
    let mut child = command
        .env_remove("RETRACE_DATA")
        .env_remove("RETRACE_NATS")
        .env_remove("RETRACE_LISTEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(PATIENCE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("listening")
                && let Some(rest) = line.split("addr=").nth(1)
            {
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("the server says where it listens");
    // Keep draining stderr so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // On NATS it serves every execution once it drives every partition:
    // after a SIGKILL, once the killed server's leases ended.
    if !matches!(backend, Backend::Folder(_)) {
        let metrics = format!("http://{addr}/metrics");
        tokio::time::timeout(PATIENCE, async {
            loop {
                let text = match reqwest::get(&metrics).await {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                if text.lines().any(|l| l == "retrace_partitions_driven 64") {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the server drives every partition");
    }
    Server {
        child,
        base: format!("http://{addr}"),
    }
}

const WORKFLOW: &str = r#"{
  "name": "counter",
  "steps": [
    { "id": "a", "type": "task", "capability": "count", "input": { "n": "$.input.n" }, "next": "b" },
    { "id": "b", "type": "task", "capability": "count", "next": "c" },
    { "id": "c", "type": "task", "capability": "count" }
  ]
}"#;

/// Makes a token on the (stopped) data folder with `retrace token create`;
/// its secret.
async fn token(data: &std::path::Path, name: &str, role: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_retrace"))
        .args(["token", "create", "--name", name, "--role", role, "--data"])
        .arg(data)
        .env_remove("RETRACE_DATA")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A client that sends `secret` as its bearer token with every request.
fn client_as(secret: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {secret}").parse().unwrap();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// The base URL of the server currently up (changes at every restart).
type Base = Arc<Mutex<String>>;

fn base(b: &Base) -> String {
    b.lock().unwrap().clone()
}

/// An agent that adds one to `n`, re-registering whenever the server forgot it.
async fn agent(http: reqwest::Client, b: Base) {
    let mut agent: Option<String> = None;
    loop {
        let url = base(&b);
        let Some(id) = agent.clone() else {
            let r = http
                .post(format!("{url}/v1/agents"))
                .json(&json!({"name": "counter", "capabilities": ["count"], "maxConcurrency": 50}))
                .send()
                .await;
            if let Ok(r) = r
                && r.status() == 201
            {
                agent = Some(
                    r.json::<Value>().await.unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
            tokio::task::yield_now().await;
            continue;
        };
        let r = http
            .post(format!("{url}/v1/tasks/poll"))
            .json(&json!({"agentId": id, "waitMs": 500, "max": 20}))
            .send()
            .await;
        let Ok(r) = r else {
            agent = None;
            continue;
        };
        if r.status() == 404 {
            agent = None;
            continue;
        }
        let Ok(body) = r.json::<Value>().await else {
            continue;
        };
        for t in body["tasks"].as_array().cloned().unwrap_or_default() {
            let n = t["input"]["n"].as_i64().unwrap();
            // A result for a server that died is simply not recorded; the
            // task comes back after the restart.
            let _ = http
                .post(format!(
                    "{url}/v1/tasks/{}/complete",
                    t["id"].as_str().unwrap()
                ))
                .json(&json!({"output": {"n": n + 1}}))
                .send()
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_work_survives_sigkill_of_the_server() {
    let data = tempfile::tempdir().unwrap();
    let backend = Backend::Folder(data.path().to_owned());
    let http = client_as(&token(data.path(), "ops", "operator").await);
    let agent_http = client_as(&token(data.path(), "counter", "agent").await);
    let server = survives_sigkills(&backend, http, agent_http).await;
    // A clean stop, then every chain verifies.
    stop(server).await;
    let store = retrace_journal::store::sled::SledStore::open(data.path()).unwrap();
    let report = retrace_journal::verify_store(&store).unwrap();
    assert!(report.is_sound(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_work_survives_sigkill_of_the_server_on_nats() {
    let nats = NatsServer::start();
    let backend = Backend::Nats(nats.url());
    let server = survives_sigkills(&backend, reqwest::Client::new(), reqwest::Client::new()).await;
    stop(server).await;
    let streams = every_stream_reads_back(NatsOptions::new(nats.url())).await;
    assert!(streams > 5, "the executions and the catalog are streams");
}

/// SIGTERM, and the server exits 0.
async fn stop(mut server: Server) {
    let pid = server.child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(server.child.wait().await.unwrap().success());
}

/// Starts, kills and restarts the server on `backend` while clients start
/// executions and an agent completes them; checks every acknowledged
/// execution completed and every event shown is stored. Returns the server
/// still running.
async fn survives_sigkills(
    backend: &Backend,
    http: reqwest::Client,
    agent_http: reqwest::Client,
) -> Server {
    let seed = std::env::var("RETRACE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let rounds: u64 = std::env::var("RETRACE_KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    eprintln!("server kill test: seed {seed} (RETRACE_KILL_SEED), {rounds} kills");
    let mut rng = Rng(seed);
    let mut server = serve(backend).await;
    let b: Base = Arc::new(Mutex::new(server.base.clone()));
    let r = http
        .post(format!("{}/v1/workflows", server.base))
        .header("content-type", "application/json")
        .body(WORKFLOW)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let agent_task = tokio::spawn(agent(agent_http, b.clone()));
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let tail_task = tokio::spawn(follow_all_events(
        http.clone(),
        {
            let b = b.clone();
            move || base(&b)
        },
        seen.clone(),
    ));

    // Acknowledged starts: id -> n.
    let mut acknowledged: BTreeMap<String, i64> = BTreeMap::new();
    let mut next = 0i64;
    for round in 0..=rounds {
        let kill_after = 5 + rng.next() % 20;
        let mut started = 0;
        while started < kill_after {
            let n = next;
            let key = format!("exec-{n}");
            let r = http
                .post(format!("{}/v1/executions", base(&b)))
                .json(
                    &json!({"workflow": "counter", "input": {"n": n * 10}, "idempotencyKey": key}),
                )
                .send()
                .await;
            // An unanswered start is retried with the same key next time.
            let Ok(r) = r else { continue };
            if r.status() == 201 || r.status() == 200 {
                let id = r.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                acknowledged.insert(id, n * 10);
                next += 1;
                started += 1;
            }
        }
        if round == rounds {
            break;
        }
        server.child.start_kill().unwrap(); // SIGKILL
        server.child.wait().await.unwrap();
        let killed = std::time::Instant::now();
        server = serve(backend).await;
        // On NATS this includes waiting for the killed server's leases.
        eprintln!(
            "restarted after a SIGKILL: serving {:?} after the kill",
            killed.elapsed()
        );
        *b.lock().unwrap() = server.base.clone();
    }

    // Every acknowledged execution completes with its expected output.
    for (id, n) in &acknowledged {
        let done = tokio::time::timeout(PATIENCE, async {
            loop {
                let r = http
                    .get(format!("{}/v1/executions/{id}/events/stream", base(&b)))
                    .send()
                    .await;
                let Ok(mut r) = r else { continue };
                // The stream ends after the terminal event.
                while let Ok(Some(_)) = r.chunk().await {}
                let s: Value = http
                    .get(format!("{}/v1/executions/{id}", base(&b)))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if s["status"] != "running" {
                    return s;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("seed {seed}: execution {id} never ended"));
        assert_eq!(done["status"], "completed", "seed {seed}: {done}");
        assert_eq!(done["output"], json!({"n": n + 3}), "seed {seed}: {id}");
    }
    agent_task.abort();
    tail_task.abort();

    // Every event a client was shown is stored, with the same hash.
    let shown = seen.lock().unwrap().clone();
    assert!(!shown.is_empty());
    let mut executions: BTreeSet<String> = BTreeSet::new();
    for (id, _) in shown.keys() {
        executions.insert(id.clone());
    }
    for id in executions {
        let page: Value = http
            .get(format!("{}/v1/executions/{id}/events?limit=1000", base(&b)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let stored: BTreeMap<u64, String> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["seq"].as_u64().unwrap(),
                    e["hash"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for ((eid, seq), hash) in &shown {
            if *eid == id {
                assert_eq!(
                    stored.get(seq),
                    Some(hash),
                    "seed {seed}: event {seq} of {id} shown, then lost"
                );
            }
        }
    }

    assert!(acknowledged.len() as u64 >= 5 * (rounds + 1));
    server
}
