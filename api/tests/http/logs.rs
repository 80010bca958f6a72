//! Request logs, as the real `retrace serve` writes them on stderr: one line
//! per request with its method, route template, path, status, error code
//! and duration; `4xx` at `info`, successes at `debug`.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::support::PATIENCE;

/// A `retrace serve` and its stderr, line by line.
struct Serve {
    child: Child,
    base: String,
    lines: mpsc::UnboundedReceiver<String>,
    _data: tempfile::TempDir,
}

impl Serve {
    /// Starts the server with `--log-format format` and `RUST_LOG=filter`,
    /// and waits for its `listening` line.
    async fn start(format: &str, filter: &str) -> Serve {
        let data = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_retrace"));
        for (name, _) in std::env::vars() {
            if name.starts_with("RETRACE_") {
                command.env_remove(name);
            }
        }
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", format])
            .arg("--data")
            .arg(data.path())
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                let _ = tx.send(line);
            }
        });
        let mut serve = Serve {
            child,
            base: String::new(),
            lines,
            _data: data,
        };
        let listening = serve.line_with("listening").await;
        let addr = match serde_json::from_str::<Value>(&listening) {
            Ok(record) => record["fields"]["addr"].as_str().unwrap().to_owned(),
            Err(_) => listening
                .split_whitespace()
                .find_map(|word| word.strip_prefix("addr="))
                .unwrap()
                .to_owned(),
        };
        serve.base = format!("http://{addr}");
        serve
    }

    /// The next line of stderr that contains `text`.
    async fn line_with(&mut self, text: &str) -> String {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let line = self.lines.recv().await.expect("the server is running");
                if line.contains(text) {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no line with {text:?}"))
    }

    async fn send(&self, method: reqwest::Method, path: &str) -> u16 {
        let client = reqwest::Client::new();
        let url = format!("{}{path}", self.base);
        client
            .request(method, url)
            // Every POST says it is JSON, even with no body.
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}

#[tokio::test]
async fn json_lines_carry_each_failed_request_as_fields() {
    let mut server = Serve::start("json", "info").await;
    assert_eq!(server.send(reqwest::Method::GET, "/healthz").await, 200);
    let path = "/v1/executions/not-an-id";
    assert_eq!(server.send(reqwest::Method::GET, path).await, 404);
    assert_eq!(
        server.send(reqwest::Method::DELETE, "/v1/workflows").await,
        405
    );
    assert_eq!(server.send(reqwest::Method::GET, "/nowhere").await, 404);

    let mut requests = Vec::new();
    for _ in 0..3 {
        let line = server.line_with("retrace_api::requests").await;
        let record: Value = serde_json::from_str(&line).unwrap();
        requests.push(record);
    }
    let first = &requests[0];
    assert_eq!(first["level"], "INFO", "{first}");
    let fields = &first["fields"];
    assert_eq!(fields["message"], "request", "{first}");
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["route"], "/v1/executions/{id}", "the template");
    assert_eq!(
        fields["path"], path,
        "the healthz success is not logged at info"
    );
    assert_eq!(fields["status"], 404);
    assert_eq!(fields["code"], "unknown_execution");
    assert!(fields["duration_ms"].as_f64().unwrap() >= 0.0, "{first}");

    let fields = &requests[1]["fields"];
    assert_eq!(
        (
            &fields["method"],
            &fields["route"],
            &fields["status"],
            &fields["code"]
        ),
        (
            &"DELETE".into(),
            &"/v1/workflows".into(),
            &405.into(),
            &"method_not_allowed".into()
        ),
        "{fields}"
    );
    let fields = &requests[2]["fields"];
    assert_eq!(
        (&fields["route"], &fields["path"], &fields["code"]),
        (&"unmatched".into(), &"/nowhere".into(), &"not_found".into()),
        "{fields}"
    );
    server.stop().await;
}

#[tokio::test]
async fn successes_are_logged_at_debug_when_asked() {
    let mut server = Serve::start("human", "info,retrace_api::requests=debug").await;
    assert_eq!(server.send(reqwest::Method::GET, "/healthz").await, 200);
    let line = server.line_with("path=/healthz").await;
    assert!(
        line.contains("DEBUG retrace_api::requests: request method=GET route=/healthz path=/healthz status=200 duration_ms="),
        "{line}"
    );
    assert!(!line.contains("code="), "{line}");
    let path = "/v1/executions/00000000-0000-0000-0000-000000000000/pause";
    assert_eq!(server.send(reqwest::Method::POST, path).await, 404);
    let line = server.line_with("route=/v1/executions/{id}/pause").await;
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        line.contains(&format!("method=POST route=/v1/executions/{{id}}/pause path={path} status=404 code=unknown_execution duration_ms=")),
        "{line}"
    );
    server.stop().await;
}
