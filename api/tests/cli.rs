//! The `retrace` binary: `serve` starts on a data folder, refuses a folder
//! another server holds, takes its settings from flags over environment
//! variables, and shuts down cleanly (exit 0) on SIGTERM and SIGINT.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(30);

/// A running `retrace serve` and what it wrote to stderr.
struct Serve {
    child: Child,
    base: String,
    stderr: Arc<Mutex<String>>,
    /// Reads stderr until the process closes it.
    reader: tokio::task::JoinHandle<()>,
}

fn retrace() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_retrace"));
    command
        .env_remove("RETRACE_DATA")
        .env_remove("RETRACE_LISTEN")
        .env_remove("RETRACE_MAX_BODY_BYTES")
        .env_remove("RETRACE_CORS_ORIGINS")
        .env_remove("RETRACE_LOG_FORMAT")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

impl Serve {
    /// Starts the command and waits for its "listening" line.
    async fn start(mut command: Command) -> Serve {
        let mut child = command.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (addr_tx, mut addr_rx) = mpsc::unbounded_channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = stderr.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening")
                    && let Some(addr) = field(&line, "addr")
                {
                    let _ = addr_tx.send(addr);
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = tokio::time::timeout(PATIENCE, addr_rx.recv())
            .await
            .expect("the server says where it listens")
            .unwrap_or_else(|| panic!("the server exited: {}", stderr.lock().unwrap()));
        Serve {
            child,
            base: format!("http://{addr}"),
            stderr,
            reader,
        }
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends the signal and returns the exit code.
    async fn stop(mut self, signal: &str) -> (i32, String) {
        self.signal(signal);
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the server stops")
            .unwrap();
        tokio::time::timeout(PATIENCE, self.reader)
            .await
            .expect("stderr closes with the process")
            .unwrap();
        let log = self.stderr.lock().unwrap().clone();
        (status.code().unwrap_or(-1), log)
    }
}

/// The value of `name=` in a human log line.
fn field(line: &str, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .map(str::to_owned)
}

fn serve_in(data: &Path) -> Command {
    let mut command = retrace();
    command
        .arg("serve")
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0"]);
    command
}

#[tokio::test]
async fn serve_answers_and_stops_with_exit_code_0_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let server = Serve::start(serve_in(data.path())).await;
    let health: Value = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({"status": "ok"}));
    let (code, log) = server.stop("TERM").await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test]
async fn sigint_stops_it_too_even_with_a_stream_open() {
    let data = tempfile::tempdir().unwrap();
    let server = Serve::start(serve_in(data.path())).await;
    // A stream of all events never ends by itself; shutdown ends it.
    let mut stream = reqwest::get(format!("{}/v1/events/stream", server.base))
        .await
        .unwrap();
    let (code, log) = server.stop("INT").await;
    assert_eq!(code, 0, "{log}");
    let rest = tokio::time::timeout(PATIENCE, async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(rest.is_ok(), "the stream ended");
}

#[tokio::test]
async fn a_second_server_on_the_same_folder_fails_at_once() {
    let data = tempfile::tempdir().unwrap();
    let first = Serve::start(serve_in(data.path())).await;
    let second = tokio::time::timeout(PATIENCE, serve_in(data.path()).output())
        .await
        .expect("the second server does not hang")
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("in use by another process"),
        "a clear message: {stderr}"
    );
    let (code, _) = first.stop("TERM").await;
    assert_eq!(code, 0);
}

#[tokio::test]
async fn settings_come_from_flags_over_environment_variables() {
    let data = tempfile::tempdir().unwrap();
    // From the environment alone.
    let mut command = retrace();
    command
        .arg("serve")
        .env("RETRACE_DATA", data.path())
        .env("RETRACE_LISTEN", "127.0.0.1:0");
    let server = Serve::start(command).await;
    assert!(data.path().join("retrace.lock").exists());
    assert_eq!(server.stop("TERM").await.0, 0);
    // A flag wins over its variable: this listen address would not bind.
    let mut command = serve_in(data.path());
    command.env("RETRACE_LISTEN", "256.0.0.1:1");
    let server = Serve::start(command).await;
    assert_eq!(server.stop("TERM").await.0, 0);
    // JSON logs on request.
    let mut command = serve_in(data.path());
    command.env("RETRACE_LOG_FORMAT", "json");
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let record: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if record["fields"]["message"] == "listening" {
                return record;
            }
        }
        panic!("the server exited");
    })
    .await
    .unwrap();
    assert!(
        listening["fields"]["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn agents_register_again_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let server = Serve::start(serve_in(data.path())).await;
    let registered: Value = client
        .post(format!("{}/v1/agents", server.base))
        .json(&json!({"name": "a", "capabilities": ["work"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agent = registered["id"].as_str().unwrap().to_owned();
    assert_eq!(server.stop("TERM").await.0, 0);

    let server = Serve::start(serve_in(data.path())).await;
    let response = client
        .post(format!("{}/v1/tasks/poll", server.base))
        .json(&json!({"agentId": agent, "waitMs": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_agent");
    assert_eq!(server.stop("TERM").await.0, 0);
}
