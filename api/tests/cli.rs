//! The `retrace` binary: `serve` starts on a data folder, refuses a folder
//! another server holds, takes its settings from flags over environment
//! variables, and shuts down cleanly (exit 0) on SIGTERM and SIGINT.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

mod cli_support;

use cli_support::{PATIENCE, Server, retrace};

/// `retrace`, its stderr piped (these tests read the server's log).
fn command() -> Command {
    let mut command = retrace();
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

fn serve_in(data: &Path) -> Command {
    let mut command = command();
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
    let server = Server::spawn(serve_in(data.path()), data.path()).await;
    let health: Value = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({"status": "ok"}));
    let (code, log) = server.stop_with("TERM").await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test]
async fn sigint_stops_it_too_even_with_a_stream_open() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(serve_in(data.path()), data.path()).await;
    // A stream of all events never ends by itself; shutdown ends it.
    let mut stream = reqwest::get(format!("{}/v1/events/stream", server.base))
        .await
        .unwrap();
    let (code, log) = server.stop_with("INT").await;
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
    let first = Server::spawn(serve_in(data.path()), data.path()).await;
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
    let (code, _) = first.stop_with("TERM").await;
    assert_eq!(code, 0);
}

#[tokio::test]
async fn settings_come_from_flags_over_environment_variables() {
    let data = tempfile::tempdir().unwrap();
    // From the environment alone.
    let mut command = command();
    command
        .arg("serve")
        .env("RETRACE_DATA", data.path())
        .env("RETRACE_LISTEN", "127.0.0.1:0");
    let server = Server::spawn(command, data.path()).await;
    assert!(data.path().join("retrace.lock").exists());
    assert_eq!(server.stop_with("TERM").await.0, 0);
    // A flag wins over its variable: this listen address would not bind.
    let mut command = serve_in(data.path());
    command.env("RETRACE_LISTEN", "256.0.0.1:1");
    let server = Server::spawn(command, data.path()).await;
    assert_eq!(server.stop_with("TERM").await.0, 0);
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
    let server = Server::spawn(serve_in(data.path()), data.path()).await;
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
    assert_eq!(server.stop_with("TERM").await.0, 0);

    let server = Server::spawn(serve_in(data.path()), data.path()).await;
    let response = client
        .post(format!("{}/v1/tasks/poll", server.base))
        .json(&json!({"agentId": agent, "waitMs": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_agent");
    assert_eq!(server.stop_with("TERM").await.0, 0);
}
