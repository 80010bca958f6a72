//! `retrace serve --nats` with real processes: a second server on the same
//! journal waits while the first holds it, and takes it over as soon as
//! the first stops gracefully (its leases released, not left to end); the
//! executions the first started are the second's to finish.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use cli_support::signal;
use retrace_journal_nats::server::NatsServer;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

/// A watchdog for waits that must end (not a synchronisation).
const PATIENCE: Duration = Duration::from_secs(60);

fn serve(nats: &str) -> (Child, Lines<BufReader<ChildStderr>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_retrace"))
        .args(["serve", "--listen", "127.0.0.1:0", "--nats", nats])
        .env_remove("RETRACE_DATA")
        .env_remove("RETRACE_NATS")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, lines)
}

/// Reads log lines until one contains `what`; returns it.
async fn until(lines: &mut Lines<BufReader<ChildStderr>>, what: &str) -> String {
    tokio::time::timeout(PATIENCE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(what) {
                return line;
            }
        }
        panic!("the server exited before logging {what:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {what:?} in the log within {PATIENCE:?}"))
}

fn base(listening: &str) -> String {
    let addr = listening.split("addr=").nth(1).unwrap();
    format!("http://{}", addr.split_whitespace().next().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_waits_for_the_journal_and_takes_it_over_when_the_first_stops() {
    let nats = NatsServer::start();
    let (mut first, mut first_log) = serve(&nats.url());
    let first_base = base(&until(&mut first_log, "listening").await);
    let http = reqwest::Client::new();
    let id = define_and_start(&http, &first_base).await;

    // The second server finds the journal held, and waits.
    let (mut second, mut second_log) = serve(&nats.url());
    let waiting = until(&mut second_log, "held by another server").await;
    let first_pid = first.id().unwrap();
    assert!(
        waiting.contains(&format!(":{first_pid}")),
        "it names the holder (host:pid): {waiting}"
    );
    stop(&mut first).await;
    let stopped = Instant::now();
    let second_base = base(&until(&mut second_log, "listening").await);
    eprintln!(
        "handover after a graceful stop: the second server listened {:?} after the first exited",
        stopped.elapsed()
    );
    tokio::spawn(async move { while let Ok(Some(_)) = second_log.next_line().await {} });

    // The execution the first started is the second's: its task is there
    // to take, and completing it completes the execution.
    let agent: Value = http
        .post(format!("{second_base}/v1/agents"))
        .json(&json!({"name": "a", "capabilities": ["later"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let polled: Value = http
        .post(format!("{second_base}/v1/tasks/poll"))
        .json(&json!({"agentId": agent["id"], "waitMs": 10000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task = &polled["tasks"][0];
    assert_eq!(task["executionId"], id, "{polled}");
    let r = http
        .post(format!(
            "{second_base}/v1/tasks/{}/complete",
            task["id"].as_str().unwrap()
        ))
        .json(&json!({"output": {"done": true}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let done: Value = http
        .get(format!("{second_base}/v1/executions/{id}?waitMs=10000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    stop(&mut second).await;
}

/// The fencing test with real processes: a server paused (SIGSTOP) past its
/// leases, whose journal another server took meanwhile, is resumed; what it
/// then tries to record is refused (`503`), nothing of it is stored, and its
/// `/readyz` says it no longer takes work. The executions it started before
/// the pause are the new server's to finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_whose_journal_was_taken_records_nothing_when_resumed() {
    let nats = NatsServer::start();
    let (mut old, mut old_log) = serve(&nats.url());
    let old_base = base(&until(&mut old_log, "listening").await);
    tokio::spawn(async move { while let Ok(Some(_)) = old_log.next_line().await {} });
    let http = reqwest::Client::new();
    let before = define_and_start(&http, &old_base).await;

    signal(&old, "STOP");
    // The new server takes the journal once the paused one's leases end.
    let (mut new, mut new_log) = serve(&nats.url());
    let new_base = base(&until(&mut new_log, "listening").await);
    tokio::spawn(async move { while let Ok(Some(_)) = new_log.next_line().await {} });
    signal(&old, "CONT");

    // Whatever the resumed server tries to record is refused.
    let refused = http
        .post(format!("{old_base}/v1/executions"))
        .json(&json!({"workflow": "waits", "input": {}, "idempotencyKey": "after-the-pause"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503, "{}", refused.text().await.unwrap());
    // And it says so (once its renewal has seen the loss).
    let deadline = Instant::now() + PATIENCE;
    loop {
        let ready = http.get(format!("{old_base}/readyz")).send().await.unwrap();
        if ready.status() == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed server never said it lost its journal"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing of it is stored: the new server knows only the first execution.
    let listed: Value = http
        .get(format!("{new_base}/v1/executions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [before.as_str()], "{listed}");
    // The new server starts what the old one could not.
    let started = http
        .post(format!("{new_base}/v1/executions"))
        .json(&json!({"workflow": "waits", "input": {}, "idempotencyKey": "after-the-pause"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201);
    old.start_kill().unwrap();
    old.wait().await.unwrap();
    stop(&mut new).await;
}

/// Defines a workflow of one task step nobody takes and starts it; the
/// execution's id.
async fn define_and_start(http: &reqwest::Client, base: &str) -> String {
    let r = http
        .post(format!("{base}/v1/workflows"))
        .json(&json!({"name": "waits", "steps": [
            {"id": "w", "type": "task", "capability": "later"}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let started: Value = http
        .post(format!("{base}/v1/executions"))
        .json(&json!({"workflow": "waits", "input": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    started["id"].as_str().unwrap().to_owned()
}

/// SIGTERM, and the server exits 0.
async fn stop(child: &mut Child) {
    signal(child, "TERM");
    assert!(child.wait().await.unwrap().success());
}
