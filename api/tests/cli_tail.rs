//! `retrace tail` as a process: its exit code says how the execution ended
//! (0 completed, 1 failed, cancelled, terminated or compensated), and it
//! follows an execution across server restarts — a clean stop and a
//! SIGKILL — printing every event exactly once, until the end; it gives up
//! after `--reconnect-for` without an answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::process::Stdio;

use cli_support::{PATIENCE, Server, Worker, define, retrace, run, start, wait_for};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout};

/// The seq and type of each line `tail` printed.
fn events(stdout: &str) -> Vec<(u64, String)> {
    stdout
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            let seq = words.next().unwrap().parse().unwrap();
            (seq, words.nth(1).unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn tail_exits_0_only_when_the_execution_completed() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path()).await;
    let base = server.base.clone();
    let base = base.as_str();
    define(
        base,
        data.path(),
        json!({"name": "saga", "steps": [
            {"id": "book", "type": "task", "capability": "work", "next": "pay",
             "compensate": {"capability": "undo"}},
            {"id": "pay", "type": "task", "capability": "work"}]}),
    )
    .await;
    let worker = Worker::register(base, &["work", "undo"]).await;
    let tail = |id: String| {
        let base = base.to_owned();
        tokio::spawn(async move { run(&["tail", &id, "--server", &base]).await })
    };

    // completed: 0.
    let completed = start(base, "saga", json!(null)).await;
    let following = tail(completed.clone());
    worker.complete(&worker.take().await, json!(1)).await;
    worker.complete(&worker.take().await, json!(2)).await;
    let out = following.await.unwrap().expect_code(0);
    assert_eq!(
        events(&out.stdout).last().unwrap().1,
        "execution_completed",
        "{}",
        out.stdout
    );
    assert!(out.stderr.is_empty(), "{}", out.stderr);

    // failed (nothing to undo), then compensated: 1, and it says so.
    let failed = start(base, "saga", json!(null)).await;
    let following = tail(failed.clone());
    worker.fail(&worker.take().await, "no room").await;
    let out = following.await.unwrap().expect_code(1);
    assert_eq!(events(&out.stdout).last().unwrap().1, "execution_failed");
    assert_eq!(
        out.stderr,
        format!("retrace: execution {failed} ended failed\n")
    );
    let compensated = start(base, "saga", json!(null)).await;
    let following = tail(compensated.clone());
    worker.complete(&worker.take().await, json!(1)).await;
    worker.fail(&worker.take().await, "card declined").await;
    let undo = worker.take().await;
    assert_eq!(undo["capability"], "undo");
    worker.complete(&undo, json!(null)).await;
    let out = following.await.unwrap().expect_code(1);
    assert_eq!(
        events(&out.stdout).last().unwrap().1,
        "execution_compensated"
    );
    assert!(out.stderr.contains("ended compensated"), "{}", out.stderr);

    // cancelled and terminated: 1.
    for (command, kind) in [
        ("cancel", "execution_cancelled"),
        ("terminate", "execution_terminated"),
    ] {
        let id = start(base, "saga", json!(null)).await;
        let following = tail(id.clone());
        run(&[command, &id, "--server", base]).await.expect_code(0);
        let out = following.await.unwrap().expect_code(1);
        assert_eq!(events(&out.stdout).last().unwrap().1, kind);
    }

    // After the end was seen (nothing more to print), the same exit code.
    let last = events(
        &run(&["tail", &failed, "--server", base])
            .await
            .expect_code(1)
            .stdout,
    )
    .last()
    .unwrap()
    .0;
    let out = run(&[
        "tail",
        &failed,
        "--after",
        &last.to_string(),
        "--server",
        base,
    ])
    .await
    .expect_code(1);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("ended failed"), "{}", out.stderr);
    server.stop().await;

    // No server at the start: said at once, no retrying.
    let out = run(&["tail", &completed, "--server", base])
        .await
        .expect_code(1);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
    assert!(!out.stderr.contains("reconnecting"), "{}", out.stderr);
}

/// A `retrace tail` running in the background, read line by line.
struct Following {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Lines<BufReader<ChildStderr>>,
    printed: Vec<String>,
}

impl Following {
    fn start(base: &str, id: &str, extra: &[&str]) -> Following {
        let mut command = retrace();
        command
            .args(["tail", id, "--server", base])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        Following {
            child,
            stdout,
            stderr,
            printed: Vec::new(),
        }
    }

    /// Reads what it prints until a line of event type `kind`.
    async fn printed_up_to(&mut self, kind: &str) {
        tokio::time::timeout(PATIENCE, async {
            while let Some(line) = self.stdout.next_line().await.unwrap() {
                let done = line.split_whitespace().nth(2) == Some(kind);
                self.printed.push(line);
                if done {
                    return;
                }
            }
            panic!("tail ended before {kind}: {:?}", self.printed);
        })
        .await
        .unwrap_or_else(|_| panic!("tail prints {kind}: {:?}", self.printed));
    }

    /// Waits for a stderr line containing `text`.
    async fn said(&mut self, text: &str) -> String {
        tokio::time::timeout(PATIENCE, async {
            while let Some(line) = self.stderr.next_line().await.unwrap() {
                if line.contains(text) {
                    return line;
                }
            }
            panic!("tail ended without saying `{text}`");
        })
        .await
        .unwrap_or_else(|_| panic!("tail says `{text}`"))
    }

    /// Reads to the end; the exit code and every line printed.
    async fn finish(mut self) -> (i32, Vec<String>) {
        tokio::time::timeout(PATIENCE, async {
            while let Some(line) = self.stdout.next_line().await.unwrap() {
                self.printed.push(line);
            }
        })
        .await
        .expect("tail ends");
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("tail exits")
            .unwrap();
        (status.code().unwrap_or(-1), self.printed)
    }
}

#[tokio::test]
async fn tail_follows_an_execution_across_server_restarts() {
    let data = tempfile::tempdir().unwrap();
    // A fixed port, so the restarted server is where the tail looks.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start_on(data.path(), &listen).await;
    let base = server.base.clone();
    define(
        &base,
        data.path(),
        json!({"name": "three", "steps": [
            {"id": "one", "type": "task", "capability": "work", "next": "two"},
            {"id": "two", "type": "task", "capability": "work", "next": "three"},
            {"id": "three", "type": "task", "capability": "work"}]}),
    )
    .await;
    let id = start(&base, "three", json!({"n": 1})).await;
    let mut tail = Following::start(&base, &id, &[]);
    let worker = Worker::register(&base, &["work"]).await;
    worker.complete(&worker.take().await, json!(1)).await;
    tail.printed_up_to("step_completed").await;

    // A clean stop ends the stream; the tail waits for the server to return.
    server.stop().await;
    tail.said("reconnecting").await;
    let server = Server::start_on(data.path(), &listen).await;
    tail.said("reconnected").await;
    // Agents are forgotten by a restart; the task is queued again.
    let worker = Worker::register(&base, &["work"]).await;
    worker.complete(&worker.take().await, json!(2)).await;
    wait_for(&base, &id, |e| e["currentSteps"][0]["stepId"] == "three").await;

    // A SIGKILL breaks the connection.
    let (code, log) = server.stop_with("KILL").await;
    assert_ne!(code, 0, "{log}");
    tail.said("reconnecting").await;
    let server = Server::start_on(data.path(), &listen).await;
    let worker = Worker::register(&base, &["work"]).await;
    worker.complete(&worker.take().await, json!(3)).await;

    let (code, printed) = tail.finish().await;
    assert_eq!(code, 0, "{printed:?}");
    let seqs: Vec<u64> = printed
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    let now: Value = wait_for(&base, &id, |e| e["status"] == "completed").await;
    let last = now["lastSeq"].as_u64().unwrap();
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<_>>(),
        "every event once, in order: {printed:#?}"
    );
    assert!(printed.last().unwrap().contains("execution_completed"));
    server.stop().await;
}

#[tokio::test]
async fn tail_gives_up_after_reconnect_for_without_an_answer() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path()).await;
    let base = server.base.clone();
    define(
        &base,
        data.path(),
        json!({"name": "one", "steps": [{"id": "only", "type": "task", "capability": "work"}]}),
    )
    .await;
    let id = start(&base, "one", json!(null)).await;
    let mut tail = Following::start(&base, &id, &["--reconnect-for", "1"]);
    tail.printed_up_to("task_scheduled").await;
    server.stop().await;
    let started = std::time::Instant::now();
    let mut stderr = Vec::new();
    while let Some(line) = tail.stderr.next_line().await.unwrap() {
        stderr.push(line);
    }
    let (code, _) = tail.finish().await;
    assert_eq!(code, 1, "{stderr:#?}");
    assert!(started.elapsed() < PATIENCE);
    let last = stderr.last().unwrap();
    assert!(
        last.starts_with("retrace: ") && last.contains("gave up after 1 s without an answer"),
        "{stderr:#?}"
    );
    assert!(
        stderr.iter().any(|l| l.contains("reconnecting in 100 ms")),
        "{stderr:#?}"
    );
}
