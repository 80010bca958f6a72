//! What the command-line tests share: `retrace serve` on an ephemeral
//! loopback port over a temporary data folder, the other subcommands run as
//! real processes, and one execution of `examples/workflows/hello.json`
//! driven to completion by `retrace agent`.
//!
//! Every wait is bounded by [`PATIENCE`], so a bug fails a test instead of
//! hanging it; nothing sleeps to synchronise.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A watchdog for waits that must end (not a synchronisation).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The repository's root (the example workflows are there).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

pub fn hello_json() -> PathBuf {
    repo().join("examples/workflows/hello.json")
}

/// The binary, with no setting inherited from the environment.
pub fn retrace() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_retrace"));
    for name in [
        "RETRACE_CONFIG",
        "RETRACE_DATA",
        "RETRACE_LISTEN",
        "RETRACE_MAX_BODY_BYTES",
        "RETRACE_CORS_ORIGINS",
        "RETRACE_LOG_FORMAT",
        "RETRACE_PAGE_LIMIT_DEFAULT",
        "RETRACE_PAGE_LIMIT_MAX",
        "RETRACE_POLL_WAIT_MS_DEFAULT",
        "RETRACE_SSE_KEEP_ALIVE_MS",
        "RETRACE_SERVER",
        "RETRACE_TOKEN",
        "RETRACE_INSECURE_NO_AUTH",
        "RETRACE_HTTP_MAX_CONCURRENCY",
        "RETRACE_HTTP_MAX_RESPONSE_BYTES",
        "RETRACE_HTTP_ALLOW",
        "RETRACE_HTTP_DENY",
        "RETRACE_WEBHOOK_RETRY_FOR_MS",
        "RETRACE_WEBHOOK_MAX_DELAY_MS",
    ] {
        command.env_remove(name);
    }
    // Secrets too: a test gives those it means to.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RETRACE_SECRET_") {
            command.env_remove(name);
        }
    }
    command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// What a finished command did.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics with everything the command said unless it exited with `code`.
    pub fn expect_code(self, code: i32) -> Output {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `retrace <args>` to its end.
pub async fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    let mut command = retrace();
    command.args(args);
    output(command).await
}

pub async fn output(mut command: Command) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("the command ends")
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A running `retrace serve`.
pub struct Server {
    child: Child,
    pub base: String,
    pub data: PathBuf,
    stderr: Arc<Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts a server on `data` and an ephemeral port, and waits for its
    /// "listening" line.
    pub async fn start(data: &Path) -> Server {
        Server::start_on(data, "127.0.0.1:0").await
    }

    /// Starts a server on `data` and `listen`.
    pub async fn start_on(data: &Path, listen: &str) -> Server {
        let mut command = retrace();
        command
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", listen]);
        Server::spawn(command, data).await
    }

    /// Runs `command` (a `serve` with whatever flags and environment the
    /// caller set) and waits for its "listening" line; `data` is its folder.
    pub async fn spawn(mut command: Command, data: &Path) -> Server {
        command.stdout(Stdio::null()).stderr(Stdio::piped());
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
        Server {
            child,
            base: format!("http://{addr}"),
            data: data.to_owned(),
            stderr,
            reader,
        }
    }

    /// What the server has written to stderr so far.
    #[allow(dead_code)] // not every test binary reads the log while it runs
    pub fn log(&self) -> String {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGTERM; waits for the exit and checks it was clean.
    pub async fn stop(self) {
        let (code, log) = self.stop_with("TERM").await;
        assert_eq!(code, 0, "the server stops cleanly: {log}");
    }

    /// Sends signal `name`, waits for the exit; its code and the server's log.
    pub async fn stop_with(mut self, name: &str) -> (i32, String) {
        signal(&self.child, name);
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

pub fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("the process runs").to_string();
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A running `retrace agent`, and what it says on stderr line by line.
pub struct Agent {
    child: Child,
    log: Arc<Mutex<String>>,
    lines: mpsc::UnboundedReceiver<String>,
    reader: tokio::task::JoinHandle<()>,
}

impl Agent {
    pub fn start(base: &str, extra: &[&str]) -> Agent {
        let mut command = retrace();
        command
            .args(["agent", "--server", base])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::unbounded_channel();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = log.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                {
                    let mut kept = kept.lock().unwrap();
                    kept.push_str(&line);
                    kept.push('\n');
                }
                let _ = tx.send(line);
            }
        });
        Agent {
            child,
            log,
            lines,
            reader,
        }
    }

    /// Waits for the next stderr line that contains `text`.
    pub async fn said(&mut self, text: &str) -> String {
        let found = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(text) {
                    return Some(line);
                }
            }
            None
        })
        .await
        .unwrap_or_else(|_| panic!("the agent says `{text}`: {}", self.log.lock().unwrap()));
        found.unwrap_or_else(|| panic!("the agent exited: {}", self.log.lock().unwrap()))
    }

    /// Sends `signal` (`TERM`, `INT`); the exit code and everything it said.
    pub async fn stop_with(mut self, name: &str) -> (i32, String) {
        signal(&self.child, name);
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the agent stops")
            .unwrap();
        let _ = tokio::time::timeout(PATIENCE, self.reader).await;
        let log = self.log.lock().unwrap().clone();
        (status.code().unwrap_or(-1), log)
    }

    pub async fn stop(self) -> (i32, String) {
        self.stop_with("TERM").await
    }
}

/// Defines `hello`, starts it for `name`, and lets `retrace agent` run it to
/// completion (followed with `retrace tail`, which ends with the execution).
/// Returns the execution id and what `tail` printed.
pub async fn hello_to_completion(base: &str, name: &str) -> (String, String) {
    let applied = run(&[
        "workflow".as_ref(),
        "apply".as_ref(),
        hello_json().as_os_str(),
        "--server".as_ref(),
        base.as_ref(),
    ])
    .await
    .expect_code(0);
    assert!(
        applied.stdout.starts_with("workflow hello version "),
        "{}",
        applied.stdout
    );
    let input = format!(r#"{{"name":"{name}"}}"#);
    let started = run(&["start", "hello", "--input", &input, "--server", base])
        .await
        .expect_code(0);
    let id = started.stdout.trim().to_owned();
    let agent = Agent::start(base, &["--capability", "greet"]);
    let tail = run(&["tail", &id, "--server", base]).await.expect_code(0);
    let (code, log) = agent.stop().await;
    assert_eq!(code, 0, "{log}");
    (id, tail.stdout)
}

/// Writes `definition` to `dir/<name>.json` and defines it with
/// `retrace workflow apply`.
pub async fn define(base: &str, dir: &Path, definition: serde_json::Value) {
    let name = definition["name"].as_str().expect("a workflow has a name");
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, definition.to_string()).unwrap();
    run(&[
        "workflow".as_ref(),
        "apply".as_ref(),
        file.as_os_str(),
        "--server".as_ref(),
        base.as_ref(),
    ])
    .await
    .expect_code(0);
}

/// `retrace start <workflow> --input <input>`; the new execution's id.
pub async fn start(base: &str, workflow: &str, input: serde_json::Value) -> String {
    let input = input.to_string();
    let started = run(&["start", workflow, "--input", &input, "--server", base])
        .await
        .expect_code(0);
    started.stdout.trim().to_owned()
}

/// The execution as `GET /v1/executions/{id}` shows it.
pub async fn execution(base: &str, id: &str) -> serde_json::Value {
    reqwest::get(format!("{base}/v1/executions/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the execution (bounded by [`PATIENCE`]) until `until` holds for it;
/// returns it then.
pub async fn wait_for(
    base: &str,
    id: &str,
    until: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = execution(base, id).await;
        if until(&now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the execution never got there: {now}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An agent played over HTTP by the test itself, one task at a time, so a
/// test decides exactly what each task's outcome is.
pub struct Worker {
    http: reqwest::Client,
    base: String,
    id: String,
}

impl Worker {
    /// Registers an agent for `capabilities`.
    pub async fn register(base: &str, capabilities: &[&str]) -> Worker {
        let http = reqwest::Client::new();
        let registered: serde_json::Value = http
            .post(format!("{base}/v1/agents"))
            .json(&serde_json::json!({"name": "test-worker", "capabilities": capabilities}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Worker {
            http,
            base: base.to_owned(),
            id: registered["id"].as_str().unwrap().to_owned(),
        }
    }

    /// The next task (waits for one, within [`PATIENCE`]).
    pub async fn take(&self) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let polled: serde_json::Value = self
                .http
                .post(format!("{}/v1/tasks/poll", self.base))
                .json(&serde_json::json!({"agentId": self.id, "waitMs": 5000}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(task) = polled["tasks"].get(0) {
                return task.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "no task came");
        }
    }

    /// Completes `task` with `output`.
    pub async fn complete(&self, task: &serde_json::Value, output: serde_json::Value) {
        self.report(task, "complete", serde_json::json!({"output": output}))
            .await;
    }

    /// Fails `task` for good (not retryable).
    pub async fn fail(&self, task: &serde_json::Value, message: &str) {
        let error = serde_json::json!({"type": "boom", "message": message, "retryable": false});
        self.report(task, "fail", serde_json::json!({"error": error}))
            .await;
    }

    async fn report(&self, task: &serde_json::Value, what: &str, body: serde_json::Value) {
        let id = task["id"].as_str().unwrap();
        let answer = self
            .http
            .post(format!("{}/v1/tasks/{id}/{what}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{what} {id}: {answer:?}");
    }
}
