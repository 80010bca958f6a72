//! `retrace serve --nats` with real processes: servers on one journal share
//! it. Each drives the executions of its share of the partitions, and any
//! of them serves any request — reads, commands and event streams of an
//! execution the other drives, lists and published events gathered from
//! both, starts placed by their idempotency key, agents' tasks from every
//! partition. A server stopping gives its partitions to the other, which
//! finishes their executions; a server paused past its leases records
//! nothing when resumed, and takes its share again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cli_support::signal;
use retrace_journal_nats::PARTITIONS_DEFAULT;
use retrace_journal_nats::server::NatsServer;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A watchdog for waits that must end (not a synchronisation).
const PATIENCE: Duration = Duration::from_secs(60);

/// A client's pause before asking again (a backoff, not a synchronisation).
const AGAIN: Duration = Duration::from_millis(20);

/// One `retrace serve --nats` process.
struct Server {
    child: Child,
    base: String,
}

/// `retrace serve --nats <nats>` on a free loopback port, not started.
fn serve(nats: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_retrace"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--nats", nats])
        .env_remove("RETRACE_DATA")
        .env_remove("RETRACE_NATS")
        .env_remove("RETRACE_NATS_USER")
        .env_remove("RETRACE_NATS_PASSWORD")
        .env_remove("RETRACE_NATS_TOKEN")
        .env_remove("RETRACE_NATS_CA")
        .env("RUST_LOG", "info");
    command
}

impl Server {
    async fn start(nats: &str) -> Server {
        Server::start_with(nats, &[]).await
    }

    /// The same, with these variables set.
    async fn start_with(nats: &str, vars: &[(&str, &str)]) -> Server {
        let mut child = serve(nats)
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let listening = tokio::time::timeout(PATIENCE, async {
            let mut said = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening") {
                    return line;
                }
                said.push(line);
            }
            panic!("the server exited before listening:\n{}", said.join("\n"));
        })
        .await
        .expect("the server listens");
        // Shown when the test fails: what it said of note.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("WARN") || line.contains("ERROR") || line.contains("partitions") {
                    eprintln!("server {pid}: {line}");
                }
            }
        });
        let addr = listening.split("addr=").nth(1).unwrap();
        Server {
            child,
            base: format!("http://{}", addr.split_whitespace().next().unwrap()),
        }
    }

    /// SIGTERM, and the server exits 0.
    async fn stop(mut self) {
        signal(&self.child, "TERM");
        assert!(self.child.wait().await.unwrap().success());
    }
}

/// How many partitions the server at `base` drives, by its metrics.
async fn driven(http: &reqwest::Client, base: &str) -> Option<usize> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("retrace_partitions_driven "))
        .and_then(|n| n.trim().parse().ok())
}

/// Waits until the servers at `bases` together drive every partition,
/// each some (only one: all); how long that took.
async fn spread(http: &reqwest::Client, bases: &[&str]) -> Duration {
    let since = Instant::now();
    tokio::time::timeout(PATIENCE, async {
        loop {
            let mut counts = Vec::new();
            for base in bases {
                counts.push(driven(http, base).await.unwrap_or(0));
            }
            if counts.iter().sum::<usize>() == PARTITIONS_DEFAULT as usize
                && counts.iter().all(|n| *n > 0)
            {
                return since.elapsed();
            }
            tokio::time::sleep(AGAIN).await;
        }
    })
    .await
    .expect("the servers share the partitions")
}

/// The partition of the execution with id `id`.
fn partition(id: &str) -> u32 {
    let id: retrace_engine::ExecutionId = id.parse().unwrap();
    retrace_journal::partition_of(
        retrace_journal::StreamId::from_bytes(*id.as_bytes()),
        retrace_journal_nats::PARTITIONS_DEFAULT,
    )
}

/// Sends until the answer is not `503` (a partition moving); the answer.
async fn send(request: impl Fn() -> reqwest::RequestBuilder) -> (u16, Value) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let r = request().send().await.unwrap();
            let status = r.status().as_u16();
            if status != 503 {
                return (status, r.json().await.unwrap_or(Value::Null));
            }
            tokio::time::sleep(AGAIN).await;
        }
    })
    .await
    .expect("a server answers")
}

async fn define(http: &reqwest::Client, base: &str, workflow: Value) {
    let (status, body) = send(|| http.post(format!("{base}/v1/workflows")).json(&workflow)).await;
    assert_eq!(status, 201, "{body}");
}

/// Starts `workflow` through `base`; its id, and whether it was created.
async fn start(
    http: &reqwest::Client,
    base: &str,
    workflow: &str,
    input: Value,
    key: Option<&str>,
) -> (String, bool) {
    let mut body = json!({"workflow": workflow, "input": input});
    if let Some(key) = key {
        body["idempotencyKey"] = json!(key);
    }
    let (status, started) = send(|| http.post(format!("{base}/v1/executions")).json(&body)).await;
    assert!(status == 201 || status == 200, "{status} {started}");
    (
        started["id"].as_str().unwrap().to_owned(),
        started["created"].as_bool().unwrap(),
    )
}

/// Every execution the list through `base` shows, page by page.
async fn list_all(http: &reqwest::Client, base: &str, order: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/executions?limit=7&order={order}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = send(|| http.get(&url)).await;
        assert_eq!(status, 200, "{page}");
        let executions = page["executions"].as_array().unwrap();
        assert!(executions.len() <= 7, "{page}");
        ids.extend(
            executions
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

/// An agent through `base` that takes `capability`'s tasks until it was
/// given a task of each of `executions`, completing each through `complete_at`
/// (registering again when the home does not know it: the home moved).
/// The executions whose tasks it completed, with how many times.
async fn work(
    http: &reqwest::Client,
    (base, complete_at): (&str, &str),
    capability: &str,
    executions: &BTreeSet<String>,
) -> BTreeMap<String, usize> {
    let mut done: BTreeMap<String, usize> = BTreeMap::new();
    let mut agent: Option<String> = None;
    tokio::time::timeout(PATIENCE, async {
        while !executions.iter().all(|id| done.contains_key(id)) {
            let Some(id) = agent.clone() else {
                let (status, body) = send(|| {
                    http.post(format!("{base}/v1/agents")).json(
                        &json!({"name": "a", "capabilities": [capability], "maxConcurrency": 50}),
                    )
                })
                .await;
                assert_eq!(status, 201, "{body}");
                agent = Some(body["id"].as_str().unwrap().to_owned());
                continue;
            };
            let (status, polled) = send(|| {
                http.post(format!("{base}/v1/tasks/poll"))
                    .json(&json!({"agentId": id, "waitMs": 1000, "max": 50}))
            })
            .await;
            if status == 404 {
                agent = None;
                continue;
            }
            assert_eq!(status, 200, "{polled}");
            for task in polled["tasks"].as_array().unwrap() {
                let path = format!("/v1/tasks/{}/complete", task["id"].as_str().unwrap());
                let (status, body) = send(|| {
                    http.post(format!("{complete_at}{path}"))
                        .json(&json!({"output": {"done": true}}))
                })
                .await;
                assert_eq!(status, 200, "{body}");
                let execution = task["executionId"].as_str().unwrap().to_owned();
                *done.entry(execution).or_default() += 1;
            }
        }
    })
    .await
    .expect("the agent is given every execution's task");
    done
}

/// A task step of `capability` nobody takes until the test's agent does.
fn waits(name: &str, capability: &str) -> Value {
    json!({"name": name, "steps": [{"id": "w", "type": "task", "capability": capability}]})
}

/// An execution waiting for event `ping` correlated by its input's `k`.
fn hears() -> Value {
    json!({"name": "hears", "steps": [
        {"id": "e", "type": "event", "event": {"name": "ping", "correlation": "input.k"}}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_the_journal_and_either_serves_every_request() {
    let nats = NatsServer::start();
    let http = reqwest::Client::new();
    let a = Server::start(&nats.url()).await;
    spread(&http, &[&a.base]).await;
    define(&http, &a.base, waits("waits", "later")).await;
    define(&http, &a.base, waits("early", "early")).await;
    let mut ids = BTreeSet::new();
    for i in 0..6 {
        ids.insert(
            start(&http, &a.base, "waits", json!({"first": i}), None)
                .await
                .0,
        );
    }
    // While b joins (partitions moving to it mid-list), a list through a is
    // whole or refused, never missing what is moving.
    let (stop_listing, listing) = tokio::sync::watch::channel(false);
    let lister = tokio::spawn({
        let (http, base, ids) = (http.clone(), a.base.clone(), ids.clone());
        async move {
            let (mut whole, mut refused) = (0, 0);
            while !*listing.borrow() {
                let r = http
                    .get(format!("{base}/v1/executions"))
                    .send()
                    .await
                    .unwrap();
                if r.status() == 503 {
                    refused += 1;
                    continue;
                }
                let page: Value = r.json().await.unwrap();
                let listed: BTreeSet<String> = page["executions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_str().unwrap().to_owned())
                    .collect();
                assert_eq!(listed, ids, "a list while partitions move");
                whole += 1;
            }
            (whole, refused)
        }
    });
    let b = Server::start(&nats.url()).await;
    let joined = spread(&http, &[&a.base, &b.base]).await;
    eprintln!("a second server drives its share {joined:?} after it listens");
    stop_listing.send_replace(true);
    let (whole, refused) = lister.await.unwrap();
    eprintln!(
        "while it joined, a list through the first was whole {whole} times, refused {refused}"
    );
    // A definition made through either is every server's.
    define(&http, &b.base, hears()).await;

    // Started without a key through each server, in partitions of its own.
    let mut early = BTreeSet::new();
    for i in 0..20 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let workflow = if i < 10 { "early" } else { "waits" };
        let (id, _) = start(&http, base, workflow, json!({"i": i}), None).await;
        if i < 10 {
            early.insert(id.clone());
        }
        ids.insert(id);
    }
    // Read through either server, whichever drives it.
    for id in &ids {
        for base in [&a.base, &b.base] {
            let (status, body) = send(|| http.get(format!("{base}/v1/executions/{id}"))).await;
            assert_eq!(
                (status, body["status"].as_str()),
                (200, Some("running")),
                "{body}"
            );
        }
    }
    // Listed through either, page by page, each once, in order.
    let oldest: Vec<String> = ids.iter().cloned().collect();
    let newest: Vec<String> = ids.iter().rev().cloned().collect();
    for base in [&a.base, &b.base] {
        assert_eq!(list_all(&http, base, "oldest").await, oldest);
        assert_eq!(list_all(&http, base, "newest").await, newest);
    }
    // A key names one execution whichever server is asked.
    let (keyed, created) = start(&http, &a.base, "waits", json!({}), Some("k-1")).await;
    assert!(created);
    let (again, created) = start(&http, &b.base, "waits", json!({}), Some("k-1")).await;
    assert_eq!((&again, created), (&keyed, false));
    ids.insert(keyed);

    // A workflow with limits starts in its own partition through either
    // server (the front sends it there), so one server counts all its
    // executions; one at a time, they complete below with the rest.
    let limited = json!({"name": "limited", "concurrency": {"limit": 1},
        "steps": [{"id": "w", "type": "task", "capability": "later"}]});
    define(&http, &a.base, limited).await;
    let mut places = BTreeSet::new();
    for base in [&a.base, &b.base, &a.base, &b.base] {
        let (id, created) = start(&http, base, "limited", json!({}), None).await;
        assert!(created);
        places.insert(partition(&id));
        ids.insert(id);
    }
    assert_eq!(
        places.len(),
        1,
        "limited's executions in one partition: {places:?}"
    );

    // An event published through one server reaches the executions waiting
    // for it on both.
    let mut hearing = BTreeSet::new();
    for i in 0..8 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        hearing.insert(start(&http, base, "hears", json!({"k": 7}), None).await.0);
    }
    let (status, published) = send(|| {
        http.post(format!("{}/v1/events/ping", a.base))
            .json(&json!({"correlation": 7, "payload": {"pong": true}}))
    })
    .await;
    assert_eq!(status, 200, "{published}");
    let delivered: BTreeSet<String> = published["delivered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(delivered, hearing);
    for id in &hearing {
        let (_, done) =
            send(|| http.get(format!("{}/v1/executions/{id}?waitMs=10000", b.base))).await;
        assert_eq!(done["status"], "completed", "{done}");
    }

    // An execution's stream through the server that does not drive it.
    let id = ids.iter().next().unwrap();
    for base in [&a.base, &b.base] {
        let mut stream = http
            .get(format!("{base}/v1/executions/{id}/events/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        let shown = tokio::time::timeout(PATIENCE, async {
            let mut shown = String::new();
            while !shown.contains("event: execution_started") {
                let chunk = stream.chunk().await.unwrap().expect("the stream goes on");
                shown.push_str(&String::from_utf8_lossy(&chunk));
            }
            shown
        })
        .await;
        assert!(shown.is_ok(), "the stream through {base} shows the start");
    }

    // An agent through b is given the tasks of every partition (the home
    // dispatches them all); their results, sent through a, reach the
    // servers driving the executions.
    let done = work(&http, (&b.base, &a.base), "early", &early).await;
    assert!(done.values().all(|n| *n == 1), "{done:?}");
    assert_eq!(done.keys().cloned().collect::<BTreeSet<_>>(), early);

    // b stops: its partitions are a's at once, and a finishes their
    // executions (an agent through a takes what is left).
    let stopped = Instant::now();
    b.stop().await;
    let took = spread(&http, &[&a.base]).await;
    eprintln!(
        "after a graceful stop the other server drives every partition {:?} later",
        stopped.elapsed().max(took)
    );
    let rest: BTreeSet<String> = ids
        .iter()
        .filter(|id| !done.contains_key(*id))
        .cloned()
        .collect();
    let more = work(&http, (&a.base, &a.base), "later", &rest).await;
    assert_eq!(more.keys().cloned().collect::<BTreeSet<_>>(), rest);
    for id in &ids {
        let (_, ended) =
            send(|| http.get(format!("{}/v1/executions/{id}?waitMs=10000", a.base))).await;
        assert_eq!(ended["status"], "completed", "{ended}");
        let (_, page) = send(|| http.get(format!("{}/v1/executions/{id}/events", a.base))).await;
        let completed = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "task_completed")
            .count();
        assert_eq!(
            completed,
            1,
            "{id}: its task completed once ({:?} {:?})",
            done.get(id),
            more.get(id)
        );
    }
    a.stop().await;
}

/// The fencing test with real processes: a server paused (SIGSTOP) past its
/// leases, whose partitions another server took meanwhile, is resumed; its
/// engine records nothing (a start it was sent while paused is refused, or
/// forwarded once it knows it drives nothing), and it takes its share
/// again. The executions it started before the pause are finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_whose_partitions_were_taken_records_nothing_when_resumed() {
    let nats = NatsServer::start();
    let http = reqwest::Client::new();
    let old = Server::start(&nats.url()).await;
    spread(&http, &[&old.base]).await;
    define(&http, &old.base, waits("waits", "later")).await;
    let (before, _) = start(&http, &old.base, "waits", json!({}), None).await;

    signal(&old.child, "STOP");
    // The new server takes every partition once the paused one's leases end.
    let new = Server::start(&nats.url()).await;
    spread(&http, &[&new.base]).await;
    // A start sent to the paused server waits in its socket; it is handled
    // when the server resumes, by then without its partitions.
    let late = tokio::spawn({
        let (http, old_base) = (http.clone(), old.base.clone());
        async move {
            http.post(format!("{old_base}/v1/executions"))
                .json(
                    &json!({"workflow": "waits", "input": {}, "idempotencyKey": "after-the-pause"}),
                )
                .send()
                .await
                .unwrap()
        }
    });
    signal(&old.child, "CONT");
    let late = late.await.unwrap();
    let status = late.status();
    let body: Value = late.json().await.unwrap();
    eprintln!("the start sent while paused answered {status}");
    let mut expected = vec![before.clone()];
    match status.as_u16() {
        503 => {}
        201 => expected.push(body["id"].as_str().unwrap().to_owned()),
        other => panic!("the late start answered {other}: {body}"),
    }
    // It takes its share again.
    spread(&http, &[&old.base, &new.base]).await;
    // Its engine recorded nothing while it had lost its partitions: what
    // is listed (through either) is what was acknowledged.
    expected.sort();
    for base in [&old.base, &new.base] {
        assert_eq!(list_all(&http, base, "oldest").await, expected);
    }
    // The key names one execution through either server now.
    let (first, _) = start(
        &http,
        &old.base,
        "waits",
        json!({}),
        Some("after-the-pause"),
    )
    .await;
    let (second, created) = start(
        &http,
        &new.base,
        "waits",
        json!({}),
        Some("after-the-pause"),
    )
    .await;
    assert_eq!((&first, created), (&second, false));
    expected.push(first);
    let expected: BTreeSet<String> = expected.into_iter().collect();
    let done = work(&http, (&new.base, &old.base), "later", &expected).await;
    assert!(done.values().all(|n| *n == 1), "{done:?}");
    new.stop().await;
    old.stop().await;
}

/// A NATS server that asks for credentials: `retrace serve --nats`
/// without them stops at once, saying NATS refused it; given them in
/// `RETRACE_NATS_USER` and `RETRACE_NATS_PASSWORD`, it serves; and
/// `retrace token --nats` likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_gives_nats_the_credentials_it_asks_for() {
    let nats = NatsServer::start_with("authorization { user: \"retrace\", password: \"s3cret\" }");
    let refused = tokio::time::timeout(PATIENCE, serve(&nats.url()).output())
        .await
        .expect("the server stops")
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(said.to_lowercase().contains("authoriz"), "{said}");

    let server = Server::start_with(
        &nats.url(),
        &[
            ("RETRACE_NATS_USER", "retrace"),
            ("RETRACE_NATS_PASSWORD", "s3cret"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    define(&http, &server.base, hears()).await;
    let (id, created) = start(&http, &server.base, "hears", json!({"k": 1}), None).await;
    assert!(created, "{id}");
    server.stop().await;

    // `retrace token --nats` takes the same credentials.
    let token = |vars: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_retrace"));
        command
            .args(["token", "create", "--nats", &nats.url()])
            .args(["--name", "root", "--role", "admin"])
            .env_remove("RETRACE_NATS_USER")
            .env_remove("RETRACE_NATS_PASSWORD")
            .env_remove("RETRACE_NATS_TOKEN")
            .env_remove("RETRACE_TOKEN")
            .envs(vars.iter().copied());
        command
    };
    let refused = token(&[]).output().await.unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("credentials"), "{said}");
    let made = token(&[
        ("RETRACE_NATS_USER", "retrace"),
        ("RETRACE_NATS_PASSWORD", "s3cret"),
    ])
    .output()
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&made.stderr);
    assert!(made.status.success(), "{said}");
}

/// NATS serving TLS with a certificate a private CA signed: `retrace
/// serve --nats` trusting that CA (`RETRACE_NATS_CA`) serves; without it,
/// it stops, the certificate not trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_speaks_tls_to_nats_trusting_the_ca_it_is_given() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (ca_file, cert_file, key_file) = (
        write("ca.pem", ca.pem()),
        write("nats.pem", cert.pem()),
        write("nats.key", key.serialize_pem()),
    );
    let nats = NatsServer::start_with(&format!(
        "tls {{ cert_file: \"{cert_file}\", key_file: \"{key_file}\" }}"
    ));
    let refused = tokio::time::timeout(PATIENCE, serve(&nats.url()).output())
        .await
        .expect("the server stops")
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("certificate"), "{said}");
    let server = Server::start_with(&nats.url(), &[("RETRACE_NATS_CA", &ca_file)]).await;
    let http = reqwest::Client::new();
    define(&http, &server.base, hears()).await;
    let (id, created) = start(&http, &server.base, "hears", json!({"k": 2}), None).await;
    assert!(created, "{id}");
    server.stop().await;
}
