//! Access tokens from the command line, against real processes (issue 12):
//! made on the data folder before the server runs, and while it runs
//! (through it); every client command and the bundled agent carrying one;
//! a server that refuses to listen beyond loopback with none; the token
//! changes in the journal that `retrace verify` checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use cli_support::{Agent, Server, hello_json, retrace, run};

/// `retrace <args>` with `RETRACE_TOKEN` set to `token`.
async fn run_as(token: &str, args: &[&str]) -> cli_support::Output {
    let mut command = retrace();
    command.args(args).env("RETRACE_TOKEN", token);
    cli_support::output(command).await
}

/// The server at `base` refuses a client command without a token, and
/// serves it with `token`.
async fn refuses_then_serves(base: &str, token: &str) {
    let file = hello_json();
    let file = file.to_str().unwrap();
    let refused = run(&["workflow", "apply", file, "--server", base]).await;
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("unauthenticated"),
        "{}",
        refused.stderr
    );
    run_as(token, &["workflow", "apply", file, "--server", base])
        .await
        .expect_code(0);
}

#[tokio::test]
async fn tokens_made_on_the_folder_guard_the_server_its_clients_and_its_agents() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();

    // Before any server: the folder is made, the secret alone on stdout.
    let made = run(&[
        "token", "create", "--data", data_arg, "--name", "root", "--role", "admin",
    ])
    .await
    .expect_code(0);
    let root = made.stdout.trim().to_owned();
    assert!(root.starts_with("rtk_") && root.len() == 68, "{root}");
    assert!(
        made.stderr.contains("shown only this once"),
        "{}",
        made.stderr
    );
    let bad = run(&[
        "token", "create", "--data", data_arg, "--name", "x", "--role", "king",
    ])
    .await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);

    let server = Server::start(&data).await;
    let base = server.base.as_str();
    assert!(
        server.log().contains("access tokens required"),
        "{}",
        server.log()
    );

    // Without a token the server refuses; with one it serves.
    refuses_then_serves(base, &root).await;

    // While the server runs, `--data` goes through it (as the admin).
    let worker = run_as(
        &root,
        &[
            "token",
            "create",
            "--data",
            data_arg,
            "--name",
            "worker",
            "--role",
            "agent",
            "--capabilities",
            "greet",
        ],
    )
    .await
    .expect_code(0);
    assert!(worker.stderr.contains("asking it at"), "{}", worker.stderr);
    let worker = worker.stdout.trim().to_owned();
    let app = run_as(
        &root,
        &[
            "token", "create", "--server", base, "--name", "app", "--role", "client",
        ],
    )
    .await
    .expect_code(0)
    .stdout
    .trim()
    .to_owned();
    let listed = run_as(&root, &["token", "list", "--data", data_arg])
        .await
        .expect_code(0);
    for name in ["root", "worker", "app"] {
        assert!(listed.stdout.contains(name), "{}", listed.stdout);
    }
    assert!(
        !listed.stdout.contains("rtk_"),
        "a listing never shows a secret"
    );
    let anonymous = run(&["token", "list", "--server", base]).await;
    assert!(
        anonymous.stderr.contains("unauthenticated"),
        "{}",
        anonymous.stderr
    );

    // The agent (its own token) runs the tasks the client starts.
    let mut agent = Agent::start(base, &["--capability", "greet", "--token", &worker]);
    agent.said("registered").await;
    let started = run_as(
        &app,
        &[
            "start",
            "hello",
            "--input",
            r#"{"name":"Ada"}"#,
            "--wait",
            "--server",
            base,
        ],
    )
    .await
    .expect_code(0);
    assert!(
        started.stdout.trim().ends_with(" completed"),
        "{}",
        started.stdout
    );
    let (code, log) = agent.stop().await;
    assert_eq!(code, 0, "{log}");
    // An agent token limited to `greet` cannot offer anything else.
    let other = run(&[
        "agent",
        "--server",
        base,
        "--capability",
        "billing",
        "--token",
        &worker,
    ])
    .await;
    assert_eq!(other.code, 1, "{}", other.stderr);
    assert!(
        other.stderr.contains("forbidden") && other.stderr.contains("billing"),
        "{}",
        other.stderr
    );

    // Revoked through the server: refused at once.
    run_as(&root, &["token", "revoke", "--server", base, "app"])
        .await
        .expect_code(0);
    let after = run_as(&app, &["ls", "--server", base]).await;
    assert!(after.stderr.contains("unauthenticated"), "{}", after.stderr);
    server.stop().await;

    // The token changes are in the journal, and its chains verify.
    run(&["verify", data_arg]).await.expect_code(0);
    let offline = run(&["token", "list", "--data", data_arg, "--json"])
        .await
        .expect_code(0);
    let listed: serde_json::Value = serde_json::from_str(&offline.stdout).unwrap();
    let app = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "app")
        .unwrap();
    assert_eq!(app["status"], "revoked");
    assert_eq!(app["revokedBy"], "root");
}

#[tokio::test]
async fn a_server_with_no_token_listens_beyond_loopback_only_when_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = retrace();
    command
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(dir.path());
    let refused = cli_support::output(command).await;
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("retrace token create"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("--insecure-no-auth"),
        "{}",
        refused.stderr
    );

    let mut command = retrace();
    command
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--insecure-no-auth",
            "--data",
        ])
        .arg(dir.path());
    let server = Server::spawn(command, dir.path()).await;
    assert!(
        server.log().contains("insecure-no-auth"),
        "{}",
        server.log()
    );
    server.stop().await;
}

/// `method path` as the holder of `token`, with a JSON body for a POST.
async fn call(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let client = reqwest::Client::new();
    let mut request = client
        .request(method.clone(), format!("{base}{path}"))
        .bearer_auth(token);
    if method == reqwest::Method::POST {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{method} {path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// (action, by, target) of each line of `retrace audit --json`.
fn audited(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let target = ["execution", "workflow", "token"]
                .iter()
                .find_map(|k| v[*k].as_str())
                .unwrap()
                .to_owned();
            let by = v["by"].as_str().unwrap_or("-").to_owned();
            (v["action"].as_str().unwrap().to_owned(), by, target)
        })
        .collect()
}

#[tokio::test]
async fn the_audit_lists_who_did_what_and_a_forged_actor_fails_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let mut secrets = Vec::new();
    for (name, role) in [("root", "admin"), ("ops", "operator"), ("app", "client")] {
        let made = run(&[
            "token", "create", "--data", data_arg, "--name", name, "--role", role,
        ])
        .await
        .expect_code(0);
        secrets.push(made.stdout.trim().to_owned());
    }
    let [root, ops, app] = [&secrets[0], &secrets[1], &secrets[2]];

    let server = Server::start(&data).await;
    let base = server.base.as_str();
    use reqwest::Method;
    let hold = serde_json::json!({"name": "hold", "steps": [
        {"id": "a", "type": "event", "event": {"name": "go"}, "next": "b"},
        {"id": "b", "type": "event", "event": {"name": "done"}}]});
    let defined = call(base, ops, Method::POST, "/v1/workflows", hold).await;
    let version = defined["version"].as_str().unwrap().to_owned();
    let started = call(
        base,
        app,
        Method::POST,
        "/v1/executions",
        serde_json::json!({"workflow": "hold"}),
    )
    .await;
    let id = started["id"].as_str().unwrap().to_owned();
    let on = |command: &str| format!("/v1/executions/{id}/{command}");
    call(
        base,
        ops,
        Method::POST,
        &on("pause"),
        serde_json::json!({"reason": "look"}),
    )
    .await;
    // Why, for a command with no reason of its own: `--reason`, sent as
    // the `Retrace-Reason` header.
    run_as(
        ops,
        &[
            "resume",
            &id,
            "--reason",
            "checked the logs",
            "--server",
            base,
        ],
    )
    .await
    .expect_code(0);
    call(
        base,
        app,
        Method::POST,
        &on("signals/go"),
        serde_json::json!({}),
    )
    .await;
    call(
        base,
        ops,
        Method::POST,
        &on("cancel"),
        serde_json::json!({"reason": "enough"}),
    )
    .await;
    call(
        base,
        root,
        Method::DELETE,
        "/v1/tokens/app",
        serde_json::json!({}),
    )
    .await;
    server.stop().await;

    let all = run(&["audit", data_arg, "--json"]).await.expect_code(0);
    let s = |x: &str| x.to_owned();
    let expected = vec![
        (s("token_created"), s("-"), s("root")),
        (s("token_created"), s("-"), s("ops")),
        (s("token_created"), s("-"), s("app")),
        (s("define"), s("ops"), version.clone()),
        (s("start"), s("app"), id.clone()),
        (s("pause"), s("ops"), id.clone()),
        (s("resume"), s("ops"), id.clone()),
        (s("signal"), s("app"), id.clone()),
        (s("cancel"), s("ops"), id.clone()),
        (s("token_revoked"), s("root"), s("app")),
    ];
    assert_eq!(audited(&all.stdout), expected, "{}", all.stdout);
    let by_ops = run(&["audit", data_arg, "--json", "--actor", "ops"])
        .await
        .expect_code(0);
    let actions: Vec<String> = audited(&by_ops.stdout).into_iter().map(|a| a.0).collect();
    assert_eq!(actions, ["define", "pause", "resume", "cancel"]);
    let one = run(&["audit", data_arg, "--json", "--execution", &id])
        .await
        .expect_code(0);
    assert_eq!(audited(&one.stdout).len(), 5, "{}", one.stdout);
    let text = run(&["audit", data_arg]).await.expect_code(0);
    assert!(text.stdout.contains("(look)"), "{}", text.stdout);
    assert!(
        text.stdout.contains("(checked the logs)"),
        "{}",
        text.stdout
    );

    // Someone with the folder rewrites who paused it: the chain says so.
    forge_actor(
        &data,
        b"\"reason\":\"look\"",
        b"\"by\":\"ops\"",
        b"\"by\":\"opz\"",
    );
    let verify = run(&["verify", data_arg]).await;
    assert_eq!(verify.code, 1, "{}{}", verify.stdout, verify.stderr);
    let audit = run(&["audit", data_arg]).await;
    assert_eq!(audit.code, 1, "{}", audit.stderr);
    assert!(audit.stderr.contains("does not verify"), "{}", audit.stderr);
}

/// Rewrites `from` (the same length as `to`) in the log record that also
/// holds `marker`, in place, as someone with the data folder could.
fn forge_actor(data: &std::path::Path, marker: &[u8], from: &[u8], to: &[u8]) {
    use retrace_journal::store::sled::SledStore;
    use retrace_journal::store::{Op, Store};
    assert_eq!(from.len(), to.len());
    let store = SledStore::open(data).unwrap();
    let records = store.scan(b"l", b"m", usize::MAX).unwrap();
    let (key, mut value) = records
        .into_iter()
        .find(|(_, v)| {
            v.windows(marker.len()).any(|w| w == marker) && v.windows(from.len()).any(|w| w == from)
        })
        .expect("a record names the actor");
    let at = value.windows(from.len()).position(|w| w == from).unwrap();
    value[at..at + to.len()].copy_from_slice(to);
    store.apply(vec![Op::Put(key, value)]).unwrap();
    store.flush().unwrap();
}

/// On a journal on NATS (which has no data folder to write to): the first
/// token is made with `--nats` before any server runs; every server on the
/// journal then requires it; while one holds the journal's partitions,
/// `--nats` goes through that server; once it stopped, straight to NATS
/// again.
#[tokio::test]
async fn tokens_made_on_a_journal_on_nats_guard_the_servers_on_it() {
    let nats = retrace_journal_nats::server::NatsServer::start();
    let url = nats.url();
    let made = run(&[
        "token", "create", "--nats", &url, "--name", "root", "--role", "admin",
    ])
    .await
    .expect_code(0);
    let root = made.stdout.trim().to_owned();
    assert!(root.starts_with("rtk_"), "{root}");

    let dir = tempfile::tempdir().unwrap();
    let mut command = retrace();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--nats", &url])
        .env_remove("RETRACE_DATA");
    let server = Server::spawn(command, dir.path()).await;
    let base = server.base.clone();
    // Alone on the journal, it holds every partition from the start.
    assert!(server.log().contains("partitions=64"), "{}", server.log());
    assert!(
        server.log().contains("access tokens required"),
        "{}",
        server.log()
    );
    refuses_then_serves(&base, &root).await;

    // A server runs on the journal: `--nats` asks it, as the admin.
    let through = run_as(
        &root,
        &[
            "token", "create", "--nats", &url, "--name", "worker", "--role", "agent",
        ],
    )
    .await
    .expect_code(0);
    assert!(
        through.stderr.contains("runs on the journal: asking it at"),
        "{}",
        through.stderr
    );
    server.stop().await;

    // Stopped (its leases released): straight to NATS.
    run(&["token", "revoke", "worker", "--nats", &url])
        .await
        .expect_code(0);
    let listed = run(&["token", "list", "--nats", &url, "--json"])
        .await
        .expect_code(0);
    let tokens: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let status = |name: &str| {
        tokens["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["status"].clone())
    };
    assert_eq!(status("root"), Some(serde_json::json!("active")));
    assert_eq!(status("worker"), Some(serde_json::json!("revoked")));
}

/// The variables that give NATS credentials (set for `serve --nats`, say)
/// do not get in the way of `token --data`: they are for `--nats` only.
#[tokio::test]
async fn nats_variables_in_the_environment_leave_token_on_a_folder_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut command = retrace();
    command
        .args(["token", "create", "--data", data.to_str().unwrap()])
        .args(["--name", "root", "--role", "admin"])
        .env("RETRACE_NATS_USER", "retrace")
        .env("RETRACE_NATS_PASSWORD", "s3cret")
        .env("RETRACE_NATS_CA", "/nowhere/ca.pem");
    let made = cli_support::output(command).await.expect_code(0);
    assert!(made.stdout.trim().starts_with("rtk_"), "{}", made.stdout);
}
