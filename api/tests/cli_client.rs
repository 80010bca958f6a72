//! The client conveniences against a live server — `workflow apply` and
//! `validate`, `start`, `status`, `tail`, `agents` — and `retrace agent`:
//! echoing, running a command, failing a task when the command fails,
//! registering again after a server restart, and stopping on SIGINT/SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use cli_support::{Agent, Server, hello_json, retrace, run};
use serde_json::{Value, json};

fn apply(file: &std::path::Path, base: &str) -> Vec<std::ffi::OsString> {
    vec![
        "workflow".into(),
        "apply".into(),
        file.into(),
        "--server".into(),
        base.into(),
    ]
}

#[tokio::test]
async fn workflows_are_applied_and_problems_are_shown_with_a_non_zero_exit() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path()).await;
    let base = server.base.clone();
    let base = base.as_str();

    let first = run(&apply(&hello_json(), base)).await.expect_code(0);
    assert!(first.stdout.ends_with(": created\n"), "{}", first.stdout);
    let again = run(&apply(&hello_json(), base)).await.expect_code(0);
    assert!(
        again.stdout.ends_with(": unchanged (already defined)\n"),
        "{}",
        again.stdout
    );
    let json_answer = run(&[
        "workflow".as_ref(),
        "apply".as_ref(),
        hello_json().as_os_str(),
        "--server".as_ref(),
        base.as_ref(),
        "--json".as_ref(),
    ])
    .await
    .expect_code(0);
    let answer: Value = serde_json::from_str(&json_answer.stdout).unwrap();
    assert_eq!(answer["name"], "hello");
    assert_eq!(answer["created"], false);

    // YAML by extension.
    let yaml = data.path().join("shout.yaml");
    std::fs::write(
        &yaml,
        "name: shout\nsteps:\n  - id: say\n    type: task\n    capability: greet\n",
    )
    .unwrap();
    let out = run(&apply(&yaml, base)).await.expect_code(0);
    assert!(
        out.stdout.starts_with("workflow shout version "),
        "{}",
        out.stdout
    );

    // Every problem, with its path.
    let bad = data.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"name":"bad","steps":[{"id":"a","type":"task","capabilty":"x"}]}"#,
    )
    .unwrap();
    let out = run(&apply(&bad, base)).await.expect_code(1);
    assert!(
        out.stderr.starts_with("retrace: invalid_workflow: "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("  - steps[0].capabilty: unknown field"),
        "{}",
        out.stderr
    );
    let mut validate = apply(&bad, base);
    validate[1] = "validate".into();
    run(&validate).await.expect_code(1);
    let mut validate = apply(&hello_json(), base);
    validate[1] = "validate".into();
    let out = run(&validate).await.expect_code(0);
    assert!(out.stdout.ends_with(": valid\n"), "{}", out.stdout);

    let missing = data.path().join("missing.json");
    let out = run(&apply(&missing, base)).await.expect_code(1);
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
    server.stop().await;

    // No server there: a clear message.
    let out = run(&apply(&hello_json(), base)).await.expect_code(1);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
}

#[tokio::test]
async fn start_status_tail_and_agents_drive_an_execution() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path()).await;
    let base = server.base.as_str();
    run(&apply(&hello_json(), base)).await.expect_code(0);

    let started = run(&[
        "start",
        "hello",
        "--input",
        r#"{"name":"Cy"}"#,
        "--idempotency-key",
        "cy-1",
        "--server",
        base,
    ])
    .await
    .expect_code(0);
    let id = started.stdout.trim().to_owned();
    // A priority, and one out of range refused before anything is sent.
    let urgent = run(&[
        "start",
        "hello",
        "--input",
        r#"{"name":"Di"}"#,
        "--priority",
        "7",
        "--server",
        base,
    ])
    .await
    .expect_code(0);
    let urgent = urgent.stdout.trim().to_owned();
    let shown = run(&["status", &urgent, "--json", "--server", base])
        .await
        .expect_code(0);
    let shown: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["priority"], 7);
    let refused = run(&["start", "hello", "--priority", "10", "--server", base]).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("--priority"), "{}", refused.stderr);
    // Signal-with-start: the first call starts, the second signals.
    let first = run(&[
        "signal-with-start",
        "hello",
        "greeted",
        "--idempotency-key",
        "sws-1",
        "--input",
        r#"{"name":"Eve"}"#,
        "--payload",
        r#"{"ok":true}"#,
        "--server",
        base,
    ])
    .await
    .expect_code(0);
    let line = first.stdout.trim();
    assert!(
        line.ends_with("started, then kept: no step waits for it yet"),
        "{line}"
    );
    let sws = line.split(' ').next().unwrap().to_owned();
    let second = run(&[
        "signal-with-start",
        "hello",
        "greeted",
        "--idempotency-key",
        "sws-1",
        "--server",
        base,
        "--json",
    ])
    .await
    .expect_code(0);
    let second: Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(second["id"], sws.as_str());
    assert_eq!(second["created"], false);
    assert_eq!(second["outcome"], "kept");
    let again = run(&[
        "start",
        "hello",
        "--input",
        r#"{"name":"Someone else"}"#,
        "--idempotency-key",
        "cy-1",
        "--server",
        base,
        "--json",
    ])
    .await
    .expect_code(0);
    let again: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["created"], false);

    // The variable instead of the flag.
    let mut status = retrace();
    status
        .args(["status", &id, "--json"])
        .env("RETRACE_SERVER", base);
    let status = cli_support::output(status).await.expect_code(0);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["status"], "running");
    assert_eq!(status["input"], json!({"name": "Cy"}));
    assert_eq!(status["currentSteps"][0]["waiting"]["for"], "task");
    // The view: status first, then what it is and what it waits for.
    let view = run(&["status", &id, "--server", base]).await.expect_code(0);
    let lines: Vec<&str> = view.stdout.lines().collect();
    assert_eq!(lines[0], "status    running", "{}", view.stdout);
    assert_eq!(lines[1], format!("execution {id}"), "{}", view.stdout);
    assert_eq!(lines[2], "workflow  hello", "{}", view.stdout);
    let version = status["version"].as_str().unwrap();
    assert_eq!(lines[3], format!("version   {}", &version[..12]));
    assert!(lines[4].starts_with("started   20"), "{}", view.stdout);
    assert_eq!(
        lines[5],
        format!(
            "step      compose [act 1]: waits for task {id}.1.1 on `greet` (attempt 1), input {{\"greeting\":\"Hello, Cy\"}}"
        ),
        "{}",
        view.stdout
    );
    assert_eq!(lines.len(), 6, "nothing ended, no output: {}", view.stdout);

    let listed = run(&["agents", "--server", base]).await.expect_code(0);
    assert_eq!(
        listed.stdout.lines().count(),
        1,
        "only the header: {}",
        listed.stdout
    );

    let mut agent = Agent::start(
        base,
        &[
            "--capability",
            "greet",
            "--name",
            "greeter",
            "--agent-version",
            "2.1.0",
        ],
    );
    let registered = agent.said("registered").await;
    let agent_id = registered.split_whitespace().nth(3).unwrap().to_owned();
    let listed = run(&["agents", "--server", base]).await.expect_code(0);
    let row = listed.stdout.lines().nth(1).unwrap();
    assert!(row.starts_with(&agent_id), "{}", listed.stdout);
    assert!(row.contains("greeter") && row.ends_with("greet"), "{row}");
    let listed = run(&["agents", "--server", base, "--json"])
        .await
        .expect_code(0);
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed["agents"][0]["capabilities"], json!(["greet"]));
    assert_eq!(listed["agents"][0]["version"], "2.1.0");

    let tail = run(&["tail", &id, "--server", base]).await.expect_code(0);
    let kinds: Vec<&str> = tail
        .stdout
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"execution_started"));
    assert_eq!(kinds.last(), Some(&"execution_completed"));
    assert_eq!(kinds.len(), 10, "{}", tail.stdout);
    // After the end: --json lines, resumed after a seq.
    let rest = run(&["tail", &id, "--server", base, "--json", "--after", "8"])
        .await
        .expect_code(0);
    let rest: Vec<Value> = rest
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[1]["type"], "execution_completed");
    assert_eq!(
        rest[1]["data"]["output"],
        json!({"to": "Cy", "message": "Hello, Cy"})
    );
    let seen_the_end = run(&["tail", &id, "--server", base, "--after", "10"])
        .await
        .expect_code(0);
    assert!(seen_the_end.stdout.is_empty());

    let (code, log) = agent.stop_with("INT").await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("unregistered; stopped"), "{log}");

    // Errors as the server sends them.
    let out = run(&["start", "nope", "--server", base])
        .await
        .expect_code(1);
    assert!(
        out.stderr.starts_with("retrace: unknown_workflow: "),
        "{}",
        out.stderr
    );
    let out = run(&[
        "status",
        "01a1fb96-2826-7012-96b6-9bd448d552cf",
        "--server",
        base,
    ])
    .await
    .expect_code(1);
    assert!(
        out.stderr.starts_with("retrace: unknown_execution: "),
        "{}",
        out.stderr
    );
    let out = run(&["start", "hello", "--input", "{oops", "--server", base])
        .await
        .expect_code(2);
    assert!(out.stderr.contains("--input is not JSON"), "{}", out.stderr);
    server.stop().await;
}

/// A workflow whose one step runs on `capability`.
async fn one_step(base: &str, dir: &std::path::Path, capability: &str) -> String {
    let file = dir.join(format!("{capability}.json"));
    std::fs::write(
        &file,
        json!({"name": capability, "steps": [
            {"id": "only", "type": "task", "capability": capability,
             "input": {"who": "$.input.who"}}
        ]})
        .to_string(),
    )
    .unwrap();
    run(&apply(&file, base)).await.expect_code(0);
    let started = run(&[
        "start",
        capability,
        "--input",
        r#"{"who":"Di"}"#,
        "--server",
        base,
    ])
    .await
    .expect_code(0);
    started.stdout.trim().to_owned()
}

/// Follows the execution to its end (`tail` exits 0 only if it completed).
async fn finished(base: &str, id: &str) -> Value {
    let tail = run(&["tail", id, "--server", base]).await;
    assert!(matches!(tail.code, 0 | 1), "{tail:?}");
    let status = run(&["status", id, "--server", base, "--json"])
        .await
        .expect_code(0);
    serde_json::from_str(&status.stdout).unwrap()
}

#[tokio::test]
async fn the_agent_runs_a_command_and_fails_the_task_when_it_fails() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path()).await;
    let base = server.base.as_str();

    // stdout that is JSON is the output; the task's input is on stdin.
    let id = one_step(base, data.path(), "wrap").await;
    let agent = Agent::start(
        base,
        &[
            "--capability",
            "wrap",
            "--exec",
            r#"read input; printf '{"got": %s, "step": "%s"}' "$input" "$RETRACE_STEP_ID""#,
        ],
    );
    let done = finished(base, &id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(
        done["output"],
        json!({"got": {"who": "Di"}, "step": "only"})
    );
    assert_eq!(agent.stop().await.0, 0);

    // stdout that is not JSON is a string.
    let id = one_step(base, data.path(), "say").await;
    let agent = Agent::start(base, &["--capability", "say", "--exec", "echo hello there"]);
    let done = finished(base, &id).await;
    assert_eq!(done["output"], json!("hello there"));
    assert_eq!(agent.stop().await.0, 0);

    // A non-zero exit fails the task with the exit code and the end of
    // stderr — never the command line, which may hold secrets.
    let id = one_step(base, data.path(), "break").await;
    let mut agent = Agent::start(
        base,
        &[
            "--capability",
            "break",
            "--exec",
            "TOKEN=s3cr3t-token; echo boom >&2; exit 3",
        ],
    );
    agent.said("failed").await;
    let done = finished(base, &id).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["type"], "command_failed");
    assert_eq!(done["error"]["retryable"], true);
    assert_eq!(done["error"]["message"], "exit code 3: boom");
    let history = run(&["tail", &id, "--server", base, "--json"])
        .await
        .expect_code(1);
    assert!(
        history.stdout.contains("exit code 3: boom"),
        "{}",
        history.stdout
    );
    assert!(
        !history.stdout.contains("s3cr3t") && !history.stdout.contains("TOKEN"),
        "the journal holds no part of the command line: {}",
        history.stdout
    );
    let (code, log) = agent.stop().await;
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("s3cr3t"), "{log}");

    // Only the end of a long stderr, and a command without any says how it
    // ended alone.
    let id = one_step(base, data.path(), "noisy").await;
    let agent = Agent::start(
        base,
        &[
            "--capability",
            "noisy",
            "--exec",
            "i=0; while [ $i -lt 1000 ]; do echo line-$i >&2; i=$((i+1)); done; exit 4",
        ],
    );
    let done = finished(base, &id).await;
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("exit code 4: "), "{message}");
    assert!(message.ends_with("line-998\nline-999"), "{message}");
    assert!(!message.contains("line-0\n"), "{message}");
    assert!(
        message.len() <= "exit code 4: ".len() + 2048,
        "{}",
        message.len()
    );
    assert_eq!(agent.stop().await.0, 0);
    let id = one_step(base, data.path(), "quiet").await;
    let agent = Agent::start(base, &["--capability", "quiet", "--exec", "exit 5"]);
    let done = finished(base, &id).await;
    assert_eq!(done["error"]["message"], "exit code 5");
    assert_eq!(agent.stop().await.0, 0);
    server.stop().await;
}

#[tokio::test]
async fn the_agent_registers_again_after_the_server_restarts() {
    let data = tempfile::tempdir().unwrap();
    // A fixed port, so the agent finds the restarted server where it was.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start_on(data.path(), &listen).await;
    let base = server.base.clone();
    let mut agent = Agent::start(&base, &["--capability", "greet", "--poll-wait-ms", "1000"]);
    agent.said("registered").await;
    server.stop().await;

    let server = Server::start_on(data.path(), &listen).await;
    agent.said("registering again").await;
    agent.said("registered").await;
    run(&apply(&hello_json(), &base)).await.expect_code(0);
    let started = run(&[
        "start",
        "hello",
        "--input",
        r#"{"name":"Ed"}"#,
        "--server",
        &base,
    ])
    .await
    .expect_code(0);
    let done = finished(&base, started.stdout.trim()).await;
    assert_eq!(done["status"], "completed");
    let (code, log) = agent.stop().await;
    assert_eq!(code, 0, "{log}");
    server.stop().await;

    // An agent pointed at no server says so and stops.
    let out = run(&["agent", "--capability", "greet", "--server", &base])
        .await
        .expect_code(1);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
}

#[tokio::test]
async fn start_wait_prints_the_end_and_exits_by_the_outcome() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path()).await;
    let base = server.base.as_str();
    run(&apply(&hello_json(), base)).await.expect_code(0);
    let mut agent = Agent::start(base, &["--capability", "greet"]);
    agent.said("registered").await;
    let done = run(&[
        "start",
        "hello",
        "--input",
        r#"{"name":"Di"}"#,
        "--wait",
        "--server",
        base,
    ])
    .await
    .expect_code(0);
    let line = done.stdout.trim();
    assert!(line.ends_with(" completed"), "{line}");
    let json = run(&[
        "start",
        "hello",
        "--input",
        r#"{"name":"Ed"}"#,
        "--wait",
        "--json",
        "--server",
        base,
    ])
    .await
    .expect_code(0);
    let shown: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["output"], json!({"to": "Ed", "message": "Hello, Ed"}));

    // A workflow that fails at once: the end is printed, the exit code is 1.
    let broken = data.path().join("broken.json");
    std::fs::write(
        &broken,
        json!({"name": "broken", "steps": [{"id": "d", "type": "decision",
            "decision": {"expression": "input.missing", "branches": {"a": "d"}}}]})
        .to_string(),
    )
    .unwrap();
    run(&apply(&broken, base)).await.expect_code(0);
    let failed = run(&["start", "broken", "--wait", "--server", base])
        .await
        .expect_code(1);
    assert!(
        failed.stdout.trim().ends_with(" failed"),
        "{}",
        failed.stdout
    );
    assert!(failed.stderr.contains("ended failed"), "{}", failed.stderr);
    let (code, log) = agent.stop_with("TERM").await;
    assert_eq!(code, 0, "{log}");
}
