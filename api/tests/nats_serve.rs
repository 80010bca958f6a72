//! `retrace serve --nats` with real processes: a second server on the same
//! journal stands by while the first holds it, forwarding requests to it,
//! and takes it over as soon as the first stops gracefully (its leases
//! released, not left to end); the executions the first started are the
//! second's to finish.

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
    until(&mut first_log, "this server holds the journal").await;
    let http = reqwest::Client::new();
    let id = define_and_start(&http, &first_base).await;

    // The second server finds the journal held, stands by, and forwards
    // what it is asked to the first (named, with its URL, in the leases).
    let (mut second, mut second_log) = serve(&nats.url());
    let second_base = base(&until(&mut second_log, "listening").await);
    let waiting = until(&mut second_log, "held by another server").await;
    let first_pid = first.id().unwrap();
    assert!(
        waiting.contains(&format!(":{first_pid} ({first_base})")),
        "it names the holder (host:pid and URL): {waiting}"
    );
    let forwarded: Value = http
        .get(format!("{second_base}/v1/executions/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(forwarded["status"], "running", "{forwarded}");
    // A browser's write through it (its Origin is the standing-by
    // server's) passes the holder's cross-site check: the Host it checks
    // against is the one the browser sent.
    let r = http
        .post(format!("{second_base}/v1/workflows"))
        .header("origin", &second_base)
        .json(&json!({"name": "waits", "steps": [
            {"id": "w", "type": "task", "capability": "later"}
        ]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    // An event stream through it is the first's, forwarded as it goes.
    let mut stream = http
        .get(format!("{second_base}/v1/executions/{id}/events/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let shown = tokio::time::timeout(PATIENCE, async {
        let mut shown = String::new();
        while !shown.contains("execution_started") {
            let chunk = stream.chunk().await.unwrap().expect("the stream goes on");
            shown.push_str(&String::from_utf8_lossy(&chunk));
        }
        shown
    })
    .await
    .expect("the forwarded stream shows the execution's start");
    assert!(shown.contains("event: execution_started"), "{shown}");
    drop(stream);
    stop(&mut first).await;
    let stopped = Instant::now();
    until(&mut second_log, "this server holds the journal").await;
    eprintln!(
        "handover after a graceful stop: the second server serves {:?} after the first exited",
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
/// leases, whose journal another server took meanwhile, is resumed; its
/// engine records nothing (a start it was sent while paused is refused,
/// or forwarded once it stands by again), and it stands by, forwarding to
/// the new holder. The executions it started before the pause are the new
/// server's to finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_whose_journal_was_taken_records_nothing_when_resumed() {
    let nats = NatsServer::start();
    let (mut old, mut old_log) = serve(&nats.url());
    let old_base = base(&until(&mut old_log, "listening").await);
    until(&mut old_log, "this server holds the journal").await;
    let http = reqwest::Client::new();
    let before = define_and_start(&http, &old_base).await;

    signal(&old, "STOP");
    // The new server takes the journal once the paused one's leases end.
    let (mut new, mut new_log) = serve(&nats.url());
    let new_base = base(&until(&mut new_log, "listening").await);
    until(&mut new_log, "this server holds the journal").await;
    tokio::spawn(async move { while let Ok(Some(_)) = new_log.next_line().await {} });
    // A start sent to the paused server waits in its socket; it is
    // handled when the server resumes, by then without its journal.
    let late = tokio::spawn({
        let (http, old_base) = (http.clone(), old_base.clone());
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
    signal(&old, "CONT");
    // It notices, gives everything up and stands by again.
    until(&mut old_log, "standing by again").await;
    tokio::spawn(async move { while let Ok(Some(_)) = old_log.next_line().await {} });
    // Its own engine recorded nothing: the start was refused (`503`,
    // NATS refusing the append on the fence) or, handled after it stood
    // by, forwarded to the new server, which started it.
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
    let listed: Value = http
        .get(format!("{new_base}/v1/executions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids: Vec<String> = listed["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected, "{listed}");
    // Through the old server, requests reach the new one now (once it has
    // read who holds the journal: `503` until then, as a client retries).
    tokio::time::timeout(PATIENCE, async {
        loop {
            let again = http
                .post(format!("{old_base}/v1/executions"))
                .json(
                    &json!({"workflow": "waits", "input": {}, "idempotencyKey": "after-the-pause"}),
                )
                .send()
                .await
                .unwrap();
            if again.status().is_success() {
                break;
            }
            assert_eq!(again.status(), 503);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the old server forwards to the new one");
    let ready = http.get(format!("{old_base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "the holder's readiness, forwarded");
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
