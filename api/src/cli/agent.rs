//! `retrace agent`: a small agent, so trying retrace needs no code. It
//! registers its capabilities, long-polls for tasks, and completes each one
//! with its input echoed back, or with what a user-given command printed
//! when fed the input on stdin. A command that exits non-zero fails the task
//! (retryable, so the step's retry policy decides).
//!
//! Owns the agent's loop: registering (again after a server restart, which
//! forgets agents), backing off while the server is away, heartbeating a
//! task while its command runs, and stopping on SIGINT/SIGTERM by
//! unregistering, which hands a task it still holds back to the queue. It
//! must never run two tasks at once (it registers with one slot) and never
//! report a task it was not given.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::client::{Client, ServerArg};
use super::error::{Error, Result};

/// Options of `retrace agent`.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// A capability this agent offers (repeat the flag, or separate with
    /// commas).
    #[arg(
        long = "capability",
        value_name = "NAME",
        required = true,
        value_delimiter = ','
    )]
    pub capabilities: Vec<String>,
    /// The name it registers with.
    #[arg(long, value_name = "NAME", default_value = "retrace-agent")]
    pub name: String,
    /// A shell command (`sh -c`) run for each task: the task's input is its
    /// stdin as JSON, and its stdout is the output (parsed as JSON, else
    /// taken as a string). A non-zero exit fails the task with the exit code
    /// and the end of its stderr as the message (never the command line).
    /// Without it, the agent echoes each task's input.
    #[arg(long, value_name = "COMMAND")]
    pub exec: Option<String>,
    /// How long one poll waits for a task, in milliseconds (the server caps
    /// it at 60000).
    #[arg(long, value_name = "MS", default_value_t = 20_000)]
    pub poll_wait_ms: u64,
    /// The semantic version it registers with (`2.1.0`): task steps with an
    /// `agentVersion` range take only agents inside it.
    #[arg(long, value_name = "VERSION")]
    pub agent_version: Option<String>,
    #[command(flatten)]
    pub server: ServerArg,
}

/// The longest pause between attempts while the server cannot be reached.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// How much of a failed command's stderr (its end, in bytes) goes into the
/// failure message.
const STDERR_TAIL_BYTES: usize = 2048;

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(args: AgentArgs) -> Result<()> {
    let stop = super::signals::Stop::install()?;
    let client = args.server.client()?;
    let mut agent = Agent {
        client,
        args,
        id: None,
    };
    // A stop while registering, polling or running a command ends that at
    // once; the child process is killed when its future is dropped.
    let outcome = tokio::select! {
        outcome = agent.work() => outcome,
        () = stop.received() => Ok(()),
    };
    agent.unregister().await;
    outcome
}

#[derive(Debug)]
struct Agent {
    client: Client,
    args: AgentArgs,
    /// The id the server knows this agent by, once registered.
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Registered {
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Task {
    id: String,
    execution_id: String,
    step_id: String,
    capability: String,
    attempt: u32,
    input: Value,
    lease_ms: u64,
    #[serde(default)]
    heartbeat_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Polled {
    tasks: Vec<Task>,
}

impl Agent {
    async fn work(&mut self) -> Result<()> {
        // The first registration fails outright: a wrong URL or a server
        // that is not running should be said at once, not retried for ever.
        let mut agent = self.register().await?;
        let mut backoff = BACKOFF_MIN;
        loop {
            let body = json!({"agentId": agent, "waitMs": self.args.poll_wait_ms, "max": 1});
            let wait = Duration::from_millis(self.args.poll_wait_ms) + Duration::from_secs(30);
            let polled: Result<Polled> = self
                .client
                .post_waiting("/v1/tasks/poll", &body, wait)
                .await;
            match polled {
                Ok(polled) => {
                    backoff = BACKOFF_MIN;
                    for task in polled.tasks {
                        self.handle(&agent, task).await;
                    }
                }
                Err(Error::Server { code, .. }) if code == "unknown_agent" => {
                    note("the server does not know this agent (it restarted?): registering again");
                    agent = self.register_again(&mut backoff).await;
                }
                Err(e) if passing(&e) => {
                    note(&format!("{e}; trying again in {} ms", backoff.as_millis()));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn register(&mut self) -> Result<String> {
        let mut body = json!({
            "name": self.args.name,
            "capabilities": self.args.capabilities,
            "maxConcurrency": 1,
        });
        if let Some(version) = &self.args.agent_version {
            body["version"] = json!(version);
        }
        let registered: Registered = self.client.post("/v1/agents", &body).await?;
        note(&format!(
            "agent {} registered at {} for {}",
            registered.id,
            self.client.base(),
            self.args.capabilities.join(", ")
        ));
        self.id = Some(registered.id.clone());
        Ok(registered.id)
    }

    /// Registers again, waiting for the server as long as it is away.
    async fn register_again(&mut self, backoff: &mut Duration) -> String {
        loop {
            match self.register().await {
                Ok(id) => {
                    *backoff = BACKOFF_MIN;
                    return id;
                }
                Err(e) => {
                    note(&format!(
                        "cannot register: {e}; trying again in {} ms",
                        backoff.as_millis()
                    ));
                    tokio::time::sleep(*backoff).await;
                    *backoff = (*backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Unregisters (best effort), so a task still held goes back to the queue.
    async fn unregister(&mut self) {
        if let Some(id) = self.id.take() {
            let done: Result<Value> = self.client.delete(&format!("/v1/agents/{id}")).await;
            match done {
                Ok(_) => note(&format!("agent {id} unregistered; stopped")),
                Err(e) => note(&format!("stopped (could not unregister: {e})")),
            }
        }
    }

    async fn handle(&self, agent: &str, task: Task) {
        let outcome = match &self.args.exec {
            None => Ok(task.input.clone()),
            Some(command) => {
                tokio::select! {
                    outcome = run_command(command, &task) => outcome,
                    () = self.heartbeat(agent, &task) => Err("the heartbeats stopped".into()),
                }
            }
        };
        let (path, body, done) = match outcome {
            Ok(output) => (
                format!("/v1/tasks/{}/complete", task.id),
                json!({"output": output}),
                "completed".to_owned(),
            ),
            Err(message) => (
                format!("/v1/tasks/{}/fail", task.id),
                json!({"error": {"type": "command_failed", "message": message, "retryable": true}}),
                format!("failed: {message}"),
            ),
        };
        // A report the server could not take for now (it is away, or its
        // journal refuses writes for a moment) is sent again until it is
        // taken, refused, or the task's claim has ended (the task is then
        // someone else's).
        let claimed_until = tokio::time::Instant::now() + Duration::from_millis(task.lease_ms);
        let mut pause = Duration::from_millis(100);
        let reported: Result<Value> = loop {
            match self.client.post(&path, &body).await {
                Err(e) if passing(&e) && tokio::time::Instant::now() + pause < claimed_until => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                reported => break reported,
            }
        };
        let what = format!(
            "task {} (step {} on {}, attempt {})",
            task.id, task.step_id, task.capability, task.attempt
        );
        match reported {
            Ok(_) => note(&format!("{what} {done}")),
            Err(e) => note(&format!("{what}: the report was not taken: {e}")),
        }
    }

    /// Keeps the task's claim while its command runs; never ends by itself.
    async fn heartbeat(&self, agent: &str, task: &Task) {
        let lease_ms = task
            .heartbeat_ms
            .unwrap_or(task.lease_ms)
            .min(task.lease_ms);
        let every = Duration::from_millis((lease_ms / 3).max(1000));
        let path = format!("/v1/tasks/{}/heartbeat", task.id);
        let body = json!({"agentId": agent});
        loop {
            tokio::time::sleep(every).await;
            let beat: Result<Value> = self.client.post(&path, &body).await;
            if let Err(e) = beat {
                note(&format!("task {}: heartbeat not taken: {e}", task.id));
            }
        }
    }
}

/// Errors worth waiting out: the server is away or shutting down.
fn passing(e: &Error) -> bool {
    match e {
        Error::Http { .. } => true,
        Error::Server { status, .. } => *status == 503,
        _ => false,
    }
}

/// Runs `command` with the task's input on stdin; its stdout is the output.
/// A failure's message never holds the command line itself (it may carry
/// secrets, and the message is journaled): only how it ended and the end of
/// its stderr.
async fn run_command(command: &str, task: &Task) -> std::result::Result<Value, String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("RETRACE_TASK_ID", &task.id)
        .env("RETRACE_EXECUTION_ID", &task.execution_id)
        .env("RETRACE_STEP_ID", &task.step_id)
        .env("RETRACE_CAPABILITY", &task.capability)
        .env("RETRACE_ATTEMPT", task.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("the command could not be started: {e}"))?;
    let input = task.input.to_string().into_bytes();
    let stdin = child.stdin.take();
    // Fed from its own task, so a command that prints before it has read
    // all of its input cannot deadlock against us.
    let feeding = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            // A command that never reads its input is not an error.
            let _ = stdin.write_all(&input).await;
        }
    });
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| format!("the command did not finish: {e}"))?;
    feeding.abort();
    if !output.status.success() {
        return Err(failure_message(output.status, &output.stderr));
    }
    Ok(output_value(&output.stdout))
}

/// How a command ended, and the end of its stderr: `exit code 3: boom`.
fn failure_message(status: std::process::ExitStatus, stderr: &[u8]) -> String {
    let ended = match status.code() {
        Some(code) => format!("exit code {code}"),
        None => killed_by(status),
    };
    let tail = stderr_tail(stderr);
    if tail.is_empty() {
        ended
    } else {
        format!("{ended}: {tail}")
    }
}

#[cfg(unix)]
fn killed_by(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(signal) => format!("killed by signal {signal}"),
        None => "ended without an exit code".to_owned(),
    }
}

#[cfg(not(unix))]
fn killed_by(_status: std::process::ExitStatus) -> String {
    "ended without an exit code".to_owned()
}

/// The last [`STDERR_TAIL_BYTES`] of `stderr`, trimmed, as text (invalid
/// UTF-8 replaced); a character cut by the limit is left out whole.
fn stderr_tail(stderr: &[u8]) -> String {
    let trimmed = stderr.trim_ascii();
    let mut start = trimmed.len().saturating_sub(STDERR_TAIL_BYTES);
    // Not in the middle of a character: skip continuation bytes (at most 3).
    while start < trimmed.len() && start > 0 && (trimmed[start] & 0b1100_0000) == 0b1000_0000 {
        start += 1;
    }
    String::from_utf8_lossy(&trimmed[start..]).into_owned()
}

/// A command's stdout as a task output: JSON when it parses, else the text
/// without its final line break.
fn output_value(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(_) => Value::String(text.trim_end_matches(['\n', '\r']).to_owned()),
    }
}

/// A status line on stderr (stdout is left to the commands' own output).
fn note(line: &str) {
    let mut err = std::io::stderr().lock();
    // Nothing useful can be done when stderr is closed.
    let _ = writeln!(err, "retrace agent: {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stderr_tail_is_bounded_and_cut_between_characters() {
        assert_eq!(stderr_tail(b"  boom\n"), "boom");
        assert_eq!(stderr_tail(b""), "");
        let long = format!("{}{}", "x".repeat(5000), "end");
        let tail = stderr_tail(long.as_bytes());
        assert_eq!(tail.len(), STDERR_TAIL_BYTES);
        assert!(tail.ends_with("xend"));
        // A two-byte character straddling the cut is dropped, not mangled.
        let accented = format!("é{}", "a".repeat(STDERR_TAIL_BYTES - 1));
        let tail = stderr_tail(accented.as_bytes());
        assert_eq!(tail, "a".repeat(STDERR_TAIL_BYTES - 1));
        assert_eq!(stderr_tail(b"bad \xff byte"), "bad \u{fffd} byte");
    }

    #[test]
    fn stdout_is_json_when_it_parses_and_text_otherwise() {
        assert_eq!(output_value(b"{\"a\": 1}\n"), json!({"a": 1}));
        assert_eq!(output_value(b"42"), json!(42));
        assert_eq!(output_value(b"hello world\n"), json!("hello world"));
        assert_eq!(output_value(b""), json!(""));
    }
}
