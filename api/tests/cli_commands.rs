//! The client commands that stand for the API's commands, run as processes
//! against a live server: `signal` and `publish`, the commands on one
//! execution (`pause`, `resume`, `cancel`, `terminate`, `retry`, `skip`,
//! `redrive`), and `ls` — each one's answer, its `--json`, and a refusal
//! (the server's error on stderr, exit code 1). Also what needs no server:
//! `workflow validate` offline, and `completions`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use cli_support::{Output, Server, Worker, define, hello_json, retrace, run, start, wait_for};
use serde_json::{Value, json};

/// Every event of an execution so far (the events page).
async fn history(base: &str, id: &str) -> Vec<Value> {
    let page: Value = reqwest::get(format!("{base}/v1/executions/{id}/events?limit=1000"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["events"].as_array().unwrap().clone()
}

fn refused(out: Output, code: &str) -> Output {
    let out = out.expect_code(1);
    assert!(
        out.stderr.starts_with(&format!("retrace: {code}: ")),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    out
}

fn waits_for_event(e: &Value) -> bool {
    e["currentSteps"][0]["waiting"]["for"] == "event"
}

#[tokio::test]
async fn signal_and_publish_deliver_events_and_say_where_they_went() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path()).await;
    let base = server.base.as_str();
    define(
        base,
        data.path(),
        json!({"name": "expense", "steps": [{"id": "approval", "type": "event",
            "event": {"name": "expense.approved", "correlation": "input.expenseId"}}]}),
    )
    .await;
    define(
        base,
        data.path(),
        json!({"name": "later", "steps": [
            {"id": "lookup", "type": "task", "capability": "users.lookup", "next": "approval"},
            {"id": "approval", "type": "event", "event": {"name": "orders/paid:eu"}}]}),
    )
    .await;
    let first = start(base, "expense", json!({"expenseId": 1})).await;
    let second = start(base, "expense", json!({"expenseId": 2})).await;
    wait_for(base, &first, waits_for_event).await;
    wait_for(base, &second, waits_for_event).await;

    // To every execution waiting with that correlation: how many, and which.
    let out = run(&[
        "publish",
        "expense.approved",
        "--payload",
        r#"{"by": "ann"}"#,
        "--correlation",
        "1",
        "--server",
        base,
    ])
    .await
    .expect_code(0);
    assert_eq!(out.stdout, format!("delivered to 1 execution:\n{first}\n"));
    let done = wait_for(base, &first, |e| e["status"] == "completed").await;
    assert_eq!(done["output"], json!({"by": "ann"}));
    let out = run(&[
        "publish",
        "expense.approved",
        "--correlation",
        "3",
        "--server",
        base,
        "--json",
    ])
    .await
    .expect_code(0);
    let answer: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer, json!({"delivered": []}));
    let out = run(&["publish", "expense.approved", "--server", base])
        .await
        .expect_code(0);
    assert_eq!(
        out.stdout, "delivered to no execution (none waits for it)\n",
        "the second waits for correlation 2"
    );
    refused(
        run(&["publish", "not a name", "--server", base]).await,
        "invalid_body",
    );

    // To one execution, with the payload read from a file.
    let payload = data.path().join("payload.json");
    std::fs::write(&payload, r#"{"by": "bob"}"#).unwrap();
    let at_payload = format!("@{}", payload.display());
    let out = run(&[
        "signal",
        &second,
        "expense.approved",
        "--payload",
        &at_payload,
        "--correlation",
        "2",
        "--server",
        base,
    ])
    .await
    .expect_code(0);
    assert_eq!(out.stdout, "delivered to step approval\n");
    let done = wait_for(base, &second, |e| e["status"] == "completed").await;
    assert_eq!(done["output"], json!({"by": "bob"}));

    // Before any step waits for it, a signal is kept; a `/` in its name is
    // sent within its path segment.
    let waiting = start(base, "later", json!(null)).await;
    let out = run(&["signal", &waiting, "orders/paid:eu", "--server", base])
        .await
        .expect_code(0);
    assert_eq!(out.stdout, "kept: no step waits for it yet\n");
    let out = run(&[
        "signal",
        &waiting,
        "orders/paid:eu",
        "--server",
        base,
        "--json",
    ])
    .await
    .expect_code(0);
    let answer: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer["id"], waiting.as_str());
    assert_eq!(answer["status"], "running");
    assert_eq!(answer["outcome"], "kept");
    let events = history(base, &waiting).await;
    let names: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "signal_received")
        .map(|e| &e["data"]["name"])
        .collect();
    assert_eq!(names, [&json!("orders/paid:eu"), &json!("orders/paid:eu")]);

    // Refusals: an ended execution, a name the server does not take, an
    // unknown execution; and what the command line itself refuses.
    refused(
        run(&["signal", &first, "expense.approved", "--server", base]).await,
        "wrong_state",
    );
    refused(
        run(&["signal", &waiting, "_bad", "--server", base]).await,
        "invalid_body",
    );
    refused(
        run(&[
            "signal",
            "01a1fb96-2826-7012-96b6-9bd448d552cf",
            "x",
            "--server",
            base,
        ])
        .await,
        "unknown_execution",
    );
    let out = run(&[
        "signal",
        &waiting,
        "x",
        "--payload",
        "{oops",
        "--server",
        base,
    ])
    .await
    .expect_code(2);
    assert!(
        out.stderr.contains("--payload is not JSON"),
        "{}",
        out.stderr
    );
    let out = run(&["signal", "not-an-id", "x", "--server", base])
        .await
        .expect_code(2);
    assert!(
        out.stderr.contains("is not an execution id"),
        "{}",
        out.stderr
    );
    server.stop().await;
}

#[tokio::test]
async fn the_commands_on_an_execution_change_it_or_show_the_refusal() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path()).await;
    let base = server.base.as_str();
    define(
        base,
        data.path(),
        json!({"name": "gate", "steps": [
            {"id": "ship", "type": "task", "capability": "ship", "onFailure": "pause", "next": "wait"},
            {"id": "wait", "type": "event", "event": {"name": "go.on"}}]}),
    )
    .await;
    let worker = Worker::register(base, &["ship", "fragile"]).await;
    let id = start(base, "gate", json!({"parcel": 7})).await;
    let line = |status: &str| format!("{id} {status}\n");

    // pause and resume; each refused when it does not fit.
    let out = run(&["pause", &id, "--reason", "maintenance", "--server", base])
        .await
        .expect_code(0);
    assert_eq!(out.stdout, line("paused"));
    let out = refused(run(&["pause", &id, "--server", base]).await, "wrong_state");
    assert!(out.stderr.contains("paused"), "{}", out.stderr);
    let out = run(&["resume", &id, "--server", base, "--json"])
        .await
        .expect_code(0);
    let answer: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer, json!({"id": id, "status": "running"}));
    refused(run(&["resume", &id, "--server", base]).await, "wrong_state");
    // Nothing failed yet: nothing to retry, skip or redrive.
    for command in ["retry", "skip", "redrive"] {
        refused(run(&[command, &id, "--server", base]).await, "wrong_state");
    }

    // The task fails: the execution holds it for an operator.
    let task = worker.take().await;
    worker.fail(&task, "no courier").await;
    wait_for(base, &id, |e| e["status"] == "paused").await;
    let view = run(&["status", &id, "--server", base]).await.expect_code(0);
    assert!(
        view.stdout.starts_with("status    paused\n"),
        "{}",
        view.stdout
    );
    assert!(
        view.stdout
            .contains("\nheld      ship: boom: no courier (attempt 1)\n"),
        "{}",
        view.stdout
    );
    refused(run(&["resume", &id, "--server", base]).await, "wrong_state");
    let out = run(&["retry", &id, "--server", base]).await.expect_code(0);
    assert_eq!(out.stdout, line("running"));
    worker.fail(&worker.take().await, "still no courier").await;
    wait_for(base, &id, |e| e["status"] == "paused").await;
    let out = run(&[
        "skip",
        &id,
        "--output",
        r#"{"shipped": false}"#,
        "--server",
        base,
    ])
    .await
    .expect_code(0);
    assert_eq!(out.stdout, line("running"));
    wait_for(base, &id, waits_for_event).await;

    // terminate ends it; then every command is refused.
    let out = run(&["terminate", &id, "--reason", "enough", "--server", base])
        .await
        .expect_code(0);
    assert_eq!(out.stdout, line("terminated"));
    for command in ["terminate", "cancel", "pause"] {
        refused(run(&[command, &id, "--server", base]).await, "wrong_state");
    }
    // What each body said is in the history.
    let events = history(base, &id).await;
    let data_of = |kind: &str| {
        events
            .iter()
            .find(|e| e["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {events:?}"))["data"]
            .clone()
    };
    assert_eq!(data_of("execution_paused")["reason"], "maintenance");
    assert_eq!(data_of("execution_terminated")["reason"], "enough");
    let skipped = events
        .iter()
        .find(|e| e["data"]["output"] == json!({"shipped": false}));
    assert!(skipped.is_some(), "the skip's output: {events:?}");

    // cancel, with compensation asked for (nothing to undo here).
    let other = start(base, "gate", json!({"parcel": 8})).await;
    let out = run(&[
        "cancel",
        &other,
        "--reason",
        "wrong parcel",
        "--compensate",
        "--server",
        base,
    ])
    .await
    .expect_code(0);
    assert_eq!(out.stdout, format!("{other} cancelled\n"));
    let events = history(base, &other).await;
    let cancelled = events.last().unwrap();
    assert_eq!(cancelled["type"], "execution_cancelled");
    assert_eq!(cancelled["data"]["reason"], "wrong parcel");

    // redrive reopens a failed execution.
    define(
        base,
        data.path(),
        json!({"name": "fragile", "steps": [{"id": "only", "type": "task", "capability": "fragile"}]}),
    )
    .await;
    let failing = start(base, "fragile", json!(null)).await;
    refused(
        run(&["redrive", &failing, "--server", base]).await,
        "wrong_state",
    );
    let task = worker.take().await;
    worker.fail(&task, "flaky").await;
    wait_for(base, &failing, |e| e["status"] == "failed").await;
    let out = run(&["redrive", &failing, "--server", base])
        .await
        .expect_code(0);
    assert_eq!(out.stdout, format!("{failing} running\n"));
    let task = worker.take().await;
    worker.complete(&task, json!("fine")).await;
    wait_for(base, &failing, |e| e["status"] == "completed").await;

    // What the command line refuses itself, and an execution that is not.
    let out = run(&["pause", "nope", "--server", base])
        .await
        .expect_code(2);
    assert!(
        out.stderr.contains("is not an execution id"),
        "{}",
        out.stderr
    );
    let out = run(&["skip", &id, "--output", "{oops", "--server", base])
        .await
        .expect_code(2);
    assert!(
        out.stderr.contains("--output is not JSON"),
        "{}",
        out.stderr
    );
    refused(
        run(&[
            "resume",
            "01a1fb96-2826-7012-96b6-9bd448d552cf",
            "--server",
            base,
        ])
        .await,
        "unknown_execution",
    );
    server.stop().await;
}

#[tokio::test]
async fn ls_lists_executions_page_after_page() {
    let data = tempfile::tempdir().unwrap();
    // Pages of two at most, so listing five takes three pages.
    let mut command = retrace();
    command
        .arg("serve")
        .arg("--data")
        .arg(data.path())
        .args(["--listen", "127.0.0.1:0"])
        .args(["--page-limit-default", "2", "--page-limit-max", "2"]);
    let server = Server::spawn(command, data.path()).await;
    let base = server.base.as_str();
    run(&[
        "workflow".as_ref(),
        "apply".as_ref(),
        hello_json().as_os_str(),
        "--server".as_ref(),
        base.as_ref(),
    ])
    .await
    .expect_code(0);
    let out = run(&["ls", "--server", base]).await.expect_code(0);
    let header = format!("{:<36}  WORKFLOW  STATUS  STARTED\n", "EXECUTION");
    assert_eq!(out.stdout, header, "no execution yet");
    let mut ids = Vec::new();
    for name in ["A", "B", "C", "D", "E"] {
        ids.push(start(base, "hello", json!({"name": name})).await);
    }

    let out = run(&["ls", "--server", base]).await.expect_code(0);
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 5, "{}", out.stdout);
    for (row, id) in rows.iter().zip(&ids) {
        assert_eq!(&row[..3], [id.as_str(), "hello", "running"]);
        assert!(row[3].ends_with('Z'), "{row:?}");
    }
    assert!(out.stderr.is_empty(), "{}", out.stderr);

    let out = run(&["ls", "--limit", "3", "--server", base])
        .await
        .expect_code(0);
    assert_eq!(out.stdout.lines().count(), 4, "{}", out.stdout);
    assert!(
        out.stderr.contains("more executions follow"),
        "{}",
        out.stderr
    );
    let out = run(&["ls", "--limit", "3", "--server", base, "--json"])
        .await
        .expect_code(0);
    let page: Value = serde_json::from_str(&out.stdout).unwrap();
    let listed: Vec<&str> = page["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids[..3]);
    assert_eq!(page["nextCursor"], ids[2].as_str());
    let out = run(&["ls", "--all", "--server", base, "--json"])
        .await
        .expect_code(0);
    let all: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(all["executions"].as_array().unwrap().len(), 5);
    assert_eq!(all["nextCursor"], Value::Null);

    // Filters are the server's.
    run(&["terminate", &ids[1], "--server", base])
        .await
        .expect_code(0);
    let out = run(&["ls", "--status", "terminated", "--server", base])
        .await
        .expect_code(0);
    let rows: Vec<&str> = out.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{}", out.stdout);
    assert!(rows[0].starts_with(&ids[1]), "{}", out.stdout);
    let out = run(&["ls", "--workflow", "other", "--all", "--server", base])
        .await
        .expect_code(0);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    // Several statuses, newest first; tags given at the start.
    let out = run(&[
        "ls",
        "--status",
        "terminated,running",
        "--newest",
        "--all",
        "--json",
        "--server",
        base,
    ])
    .await
    .expect_code(0);
    let page: Value = serde_json::from_str(&out.stdout).unwrap();
    let newest: Vec<&str> = page["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(newest, expected);
    let tagged = run(&[
        "start",
        "hello",
        "--input",
        r#"{"name": "T"}"#,
        "--tag",
        "customer=acme",
        "--tag",
        "tier=gold",
        "--server",
        base,
    ])
    .await
    .expect_code(0);
    let tagged = tagged.stdout.trim().to_owned();
    let out = run(&["ls", "--tag", "customer=acme", "--json", "--server", base])
        .await
        .expect_code(0);
    let page: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        page["executions"].as_array().unwrap().len(),
        1,
        "{}",
        out.stdout
    );
    assert_eq!(page["executions"][0]["id"], tagged.as_str());
    let out = run(&["ls", "--tag", "customer", "--server", base])
        .await
        .expect_code(2);
    assert!(out.stderr.contains("KEY=VALUE"), "{}", out.stderr);
    refused(
        run(&["ls", "--status", "sleeping", "--server", base]).await,
        "invalid_query",
    );
    run(&["ls", "--limit", "0", "--server", base])
        .await
        .expect_code(2);
    run(&["ls", "--all", "--limit", "3", "--server", base])
        .await
        .expect_code(2);
    server.stop().await;
}

#[tokio::test]
async fn workflow_validate_checks_a_file_here_as_the_server_would() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"name":"bad","steps":[{"id":"a","type":"task","capabilty":"x"}]}"#,
    )
    .unwrap();
    let yaml = dir.path().join("shout.yml");
    std::fs::write(
        &yaml,
        "name: shout\nsteps:\n  - id: say\n    type: task\n    capability: greet\n",
    )
    .unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{oops").unwrap();
    let validate = |file: &std::path::Path, extra: &[&str]| {
        let mut args: Vec<std::ffi::OsString> =
            vec!["workflow".into(), "validate".into(), file.into()];
        args.extend(extra.iter().map(Into::into));
        args
    };

    // No server anywhere — and RETRACE_SERVER, naming none, is not read.
    let mut command = retrace();
    command
        .args(validate(&hello_json(), &[]))
        .env("RETRACE_SERVER", "http://127.0.0.1:9");
    let here = cli_support::output(command).await.expect_code(0);
    assert!(
        here.stdout.starts_with("workflow hello version ") && here.stdout.ends_with(": valid\n"),
        "{}",
        here.stdout
    );
    let out = run(&validate(&yaml, &["--json"])).await.expect_code(0);
    let answer: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer["valid"], true);
    assert_eq!(answer["name"], "shout");
    let bad_here = run(&validate(&bad, &[])).await.expect_code(1);
    assert_eq!(
        bad_here.stderr,
        format!(
            "retrace: {}: invalid workflow definition (2 problems)\n  - steps[0].capability: is required for a `task` step\n  - steps[0].capabilty: unknown field; did you mean `capability`?\n",
            bad.display()
        )
    );
    assert!(bad_here.stdout.is_empty());
    let out = run(&validate(&broken, &[])).await.expect_code(1);
    assert!(
        out.stderr
            .contains("invalid workflow definition (1 problem)\n  - "),
        "one problem, at the document: {}",
        out.stderr
    );
    let out = run(&validate(&dir.path().join("missing.json"), &[]))
        .await
        .expect_code(1);
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);

    // The server says the same: the same version, the same problems.
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path()).await;
    let base = server.base.as_str();
    let there = run(&validate(&hello_json(), &["--server", base]))
        .await
        .expect_code(0);
    assert_eq!(there.stdout, here.stdout);
    for file in [&bad, &broken] {
        let here = run(&validate(file, &[])).await.expect_code(1);
        let there = run(&validate(file, &["--server", base]))
            .await
            .expect_code(1);
        let problems = |stderr: &str| {
            stderr
                .lines()
                .skip(1)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            problems(&here.stderr),
            problems(&there.stderr),
            "{}",
            there.stderr
        );
        assert!(!problems(&here.stderr).is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn completions_are_printed_for_each_shell() {
    let bash = run(&["completions", "bash"]).await.expect_code(0);
    assert!(bash.stdout.contains("retrace"), "{}", bash.stdout);
    for command in ["signal", "publish", "redrive", "ls", "completions"] {
        assert!(
            bash.stdout.contains(command),
            "{command} in the bash script"
        );
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = run(&["completions", shell]).await.expect_code(0);
        assert!(!out.stdout.is_empty(), "{shell}");
    }
    let out = run(&["completions", "tcsh"]).await.expect_code(2);
    assert!(out.stderr.contains("possible values"), "{}", out.stderr);
}
