//! `retrace serve --config`: the file's settings take effect, an environment
//! variable wins over the file and a flag over the variable, a file that
//! cannot be used stops the server before anything is created, and
//! `examples/retrace.toml` is a file the server accepts.
//!
//! Every server here is the real binary; readiness is its "listening" log
//! line (see `cli_support`), never a sleep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::Command;

mod cli_support;

use cli_support::{Server, define, execution, hello_json, output, repo, retrace, run, start};

/// Writes `text` as `retrace.toml` in `folder`; its path.
fn config_file(folder: &Path, text: &str) -> PathBuf {
    let path = folder.join("retrace.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `retrace serve` with only the given arguments (no `--data`/`--listen`).
fn serve(args: &[&str]) -> Command {
    let mut command = retrace();
    command.arg("serve").args(args);
    command
}

/// TOML's basic string for a path.
fn toml_path(path: &Path) -> String {
    json!(path.to_str().unwrap()).to_string()
}

/// The server's "listening" line from its log.
fn listening_line(log: &str) -> &str {
    log.lines()
        .find(|line| line.contains("listening"))
        .unwrap_or_else(|| panic!("no listening line in:\n{log}"))
}

/// Stops `server` with SIGTERM, checks it exited 0 having used the data
/// folder `data`, and returns its "listening" line.
async fn stopped_using(server: Server, data: &Path) -> String {
    let (code, log) = server.stop_with("TERM").await;
    assert_eq!(code, 0, "{log}");
    let line = listening_line(&log).to_owned();
    assert!(line.contains(&format!("data={}", data.display())), "{line}");
    assert!(data.join("retrace.lock").exists());
    line
}

#[tokio::test]
async fn the_file_alone_sets_the_data_folder_and_the_listen_address() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-file");
    let config = config_file(
        dir.path(),
        &format!("data = {}\nlisten = \"127.0.0.1:0\"\n", toml_path(&data)),
    );
    let server = Server::spawn(serve(&["--config", config.to_str().unwrap()]), &data).await;
    // Not the default port: the listen address came from the file.
    assert!(
        server.base.starts_with("http://127.0.0.1:"),
        "{}",
        server.base
    );
    assert!(!server.base.ends_with(":7700"), "{}", server.base);
    let line = stopped_using(server, &data).await;
    assert!(
        line.contains(&format!("config={}", config.display())),
        "{line}"
    );
}

#[tokio::test]
async fn every_limit_in_the_file_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config_file(
        dir.path(),
        // A relative data folder is relative to the file's folder.
        "data = \"data\"\n\
         listen = \"127.0.0.1:0\"\n\
         max_body_bytes = 4096\n\
         cors_origins = [\"https://console.example\"]\n\
         page_limit_default = 1\n\
         page_limit_max = 2\n\
         poll_wait_ms_default = 0\n\
         sse_keep_alive_ms = 50\n",
    );
    // Started from another folder: the data folder does not follow it.
    let elsewhere = tempfile::tempdir().unwrap();
    let mut command = serve(&["--config", config.to_str().unwrap()]);
    command.current_dir(elsewhere.path());
    let server = Server::spawn(command, &data).await;
    assert!(data.join("retrace.lock").exists());
    let base = server.base.clone();
    let client = reqwest::Client::new();

    // max_body_bytes: hello.json fits, 5000 bytes do not.
    let defined = client
        .post(format!("{base}/v1/workflows"))
        .header("content-type", "application/json")
        .body(std::fs::read(hello_json()).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(defined.status(), StatusCode::CREATED);
    let too_large = client
        .post(format!("{base}/v1/workflows"))
        .header("content-type", "application/json")
        .body(vec![b' '; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // cors_origins.
    let cors = client
        .get(format!("{base}/healthz"))
        .header("origin", "https://console.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        cors.headers()["access-control-allow-origin"],
        "https://console.example"
    );

    // page_limit_default and page_limit_max.
    for n in 0..3 {
        let started = client
            .post(format!("{base}/v1/executions"))
            .json(&json!({"workflow": "hello", "input": {"name": format!("n{n}")}}))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), StatusCode::CREATED);
    }
    let count = |query: &'static str| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let page: Value = client
                .get(format!("{base}/v1/executions{query}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            page["executions"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("").await, 1, "page_limit_default");
    assert_eq!(count("?limit=100").await, 2, "page_limit_max");

    // poll_wait_ms_default = 0: a poll naming no waitMs answers at once
    // (the built-in default would hold it for 30 s).
    let agent: Value = client
        .post(format!("{base}/v1/agents"))
        .json(&json!({"name": "idle", "capabilities": ["nothing.queued"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let poll = tokio::time::timeout(
        Duration::from_secs(10),
        client
            .post(format!("{base}/v1/tasks/poll"))
            .json(&json!({"agentId": agent["id"]}))
            .send(),
    )
    .await
    .expect("the poll does not wait")
    .unwrap();
    assert_eq!(poll.json::<Value>().await.unwrap(), json!({"tasks": []}));

    // sse_keep_alive_ms = 50: an idle stream gets a keep-alive comment long
    // before the built-in 15 s.
    let mut stream = client
        .get(format!("{base}/v1/events/stream?type=nothing_ever"))
        .send()
        .await
        .unwrap();
    let keep_alive = tokio::time::timeout(Duration::from_secs(10), async {
        let mut seen = String::new();
        while let Some(chunk) = stream.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.lines().any(|line| line.starts_with(':')) {
                return seen;
            }
        }
        panic!("the stream ended: {seen}");
    })
    .await;
    assert!(keep_alive.is_ok(), "a keep-alive comment within 10 s");
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn an_environment_variable_beats_the_file_and_a_flag_beats_both() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = dir.path().join("from-file");
    let from_env = dir.path().join("from-env");
    let from_flag = dir.path().join("from-flag");
    let config = config_file(
        dir.path(),
        &format!(
            // Neither of these two could be used: the server only starts
            // if the environment overrides them.
            "data = {}\nlisten = \"256.0.0.1:1\"\nlog_format = \"json\"\n",
            toml_path(&from_file)
        ),
    );

    // The file named by RETRACE_CONFIG; RETRACE_DATA, RETRACE_LISTEN and
    // RETRACE_LOG_FORMAT over its keys (a JSON log would not be read as
    // the human "listening" line the launcher waits for).
    let environment = |command: &mut Command| {
        command
            .env("RETRACE_CONFIG", &config)
            .env("RETRACE_DATA", &from_env)
            .env("RETRACE_LISTEN", "127.0.0.1:0")
            .env("RETRACE_LOG_FORMAT", "human");
    };
    let mut command = serve(&[]);
    environment(&mut command);
    let server = Server::spawn(command, &from_env).await;
    stopped_using(server, &from_env).await;

    // A flag over its variable (and so over the file).
    let mut command = serve(&["--data", from_flag.to_str().unwrap()]);
    environment(&mut command);
    let server = Server::spawn(command, &from_flag).await;
    stopped_using(server, &from_flag).await;

    // The file's data folder was never used.
    assert!(!from_file.exists());
}

/// Runs `serve` in a fresh folder with a config file of `text` naming a data
/// folder in that folder; checks it fails with exit code 1 having created
/// nothing, and returns what it said on stderr and the file's path.
async fn refused(text: &str, extra: &[&str]) -> (String, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), text);
    let mut command = serve(&["--config", config.to_str().unwrap()]);
    command.args(extra).current_dir(dir.path());
    let out = output(command).await.expect_code(1);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(left, ["retrace.toml"], "nothing created: {}", out.stderr);
    (out.stderr, config)
}

#[tokio::test]
async fn an_unknown_key_is_refused_with_its_name_and_line() {
    let (stderr, config) = refused(
        "data = \"data\"\nlisten = \"127.0.0.1:0\"\nmax_body_byte = 10\n",
        &[],
    )
    .await;
    assert!(stderr.contains(&config.display().to_string()), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("unknown field `max_body_byte`"), "{stderr}");
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_refused_with_its_line() {
    let (stderr, config) = refused(
        "data = \"data\"\n\npage_limit_max = \"lots\"\n",
        &["--listen", "127.0.0.1:0"],
    )
    .await;
    assert!(stderr.contains(&config.display().to_string()), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("page_limit_max = \"lots\""), "{stderr}");
    assert!(stderr.contains("invalid type"), "{stderr}");

    // Not TOML at all.
    let (stderr, _) = refused("data = data\n", &[]).await;
    assert!(stderr.contains("line 1"), "{stderr}");

    // Values that do not fit together, one from the file.
    let (stderr, _) = refused(
        "data = \"data\"\npage_limit_default = 500\n",
        &["--page-limit-max", "100"],
    )
    .await;
    assert!(
        stderr.contains("page_limit_default (500) is larger than page_limit_max (100)"),
        "{stderr}"
    );

    // A listen address that names nothing is refused before the data
    // folder is created.
    let (stderr, _) = refused("data = \"data\"\nlisten = \"256.0.0.1:1\"\n", &[]).await;
    assert!(stderr.contains("cannot listen on 256.0.0.1:1"), "{stderr}");
}

#[tokio::test]
async fn capability_limits_in_the_file_are_in_force_and_bad_ones_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config_file(
        dir.path(),
        "data = \"data\"\nlisten = \"127.0.0.1:0\"\n\n\
         [capability_limits.\"images.resize\"]\nconcurrency = 4\n\
         rate_limit = { limit = 100, period_ms = 60000 }\n",
    );
    let server = Server::spawn(serve(&["--config", config.to_str().unwrap()]), &data).await;
    let limits: Value = reqwest::get(format!("{}/v1/limits", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        limits,
        json!({"capabilities": [{"capability": "images.resize", "concurrency": 4,
            "rateLimit": {"limit": 100, "periodMs": 60000}, "source": "config",
            "running": 0, "inWindow": 0, "queued": 0}]})
    );
    server.stop().await;

    // Checked whole at start: every problem named, nothing created.
    let (stderr, config) = refused(
        "data = \"data\"\nlisten = \"127.0.0.1:0\"\n\
         [capability_limits.work]\nconcurrency = 0\nrate_limit = { limit = 5, period_ms = 0 }\n",
        &[],
    )
    .await;
    assert!(stderr.contains(&config.display().to_string()), "{stderr}");
    assert!(
        stderr.contains(
            "capability_limits.\"work\": concurrency: must be from 1 to 100000, not 0; \
             capability_limits.\"work\": rateLimit.periodMs: must be from 1"
        ),
        "{stderr}"
    );
    let (stderr, _) = refused(
        "data = \"data\"\n[capability_limits.\"Images\"]\nconcurrency = 1\n",
        &["--listen", "127.0.0.1:0"],
    )
    .await;
    assert!(
        stderr.contains("capability `Images` is not well-formed"),
        "{stderr}"
    );
    // A key the table does not have, with its line.
    let (stderr, _) = refused(
        "data = \"data\"\n[capability_limits.work]\nconcurrency = 1\nburst = 2\n",
        &["--listen", "127.0.0.1:0"],
    )
    .await;
    assert!(stderr.contains("line 4"), "{stderr}");
    assert!(stderr.contains("unknown field `burst`"), "{stderr}");
}

#[tokio::test]
async fn a_missing_file_is_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serve(&["--config", "missing.toml", "--listen", "127.0.0.1:0"]);
    command.current_dir(dir.path());
    let out = output(command).await.expect_code(1);
    assert!(
        out.stderr
            .contains("cannot read the config file missing.toml"),
        "{}",
        out.stderr
    );
    // Not even the default ./retrace-data.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // The same through RETRACE_CONFIG; a folder is not a file either.
    let mut command = serve(&["--listen", "127.0.0.1:0"]);
    command
        .env("RETRACE_CONFIG", dir.path())
        .current_dir(dir.path());
    let out = output(command).await.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "cannot read the config file {}",
            dir.path().display()
        )),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Starts a server with the configuration file `text` written in `dir`,
/// `extra` flags on top; checks it answers and uses `data`, stops it, and
/// returns the headers of its `/healthz` answer.
async fn serves_with(
    dir: &Path,
    text: &str,
    extra: &[&str],
    data: &Path,
) -> reqwest::header::HeaderMap {
    let config = config_file(dir, text);
    let mut command = serve(&["--config", config.to_str().unwrap()]);
    command.args(extra);
    let server = Server::spawn(command, data).await;
    let health = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let line = stopped_using(server, data).await;
    assert!(
        line.contains(&format!("config={}", config.display())),
        "{line}"
    );
    health.headers().clone()
}

#[tokio::test]
async fn the_example_config_file_is_accepted_and_documented() {
    let text = std::fs::read_to_string(repo().join("examples/retrace.toml")).unwrap();
    // Every key it sets is described in the API reference.
    let doc = std::fs::read_to_string(repo().join("docs/api.md")).unwrap();
    let keys: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(" = ").map(|(key, _)| key))
        .collect();
    // Every key but the TLS files, which have no default and are shown
    // commented out.
    assert_eq!(keys.len(), 24, "the example sets every key: {keys:?}");
    for key in ["tls_cert", "tls_key", "tls_client_ca"] {
        assert!(
            text.contains(&format!("# {key} = ")),
            "the example shows `{key}`"
        );
        assert!(
            doc.contains(&format!("`{key}`")),
            "docs/api.md describes `{key}`"
        );
    }
    for key in &keys {
        assert!(
            doc.contains(&format!("`{key}`")),
            "docs/api.md describes `{key}`"
        );
    }
    // Capability limits have no default: shown commented out, and described.
    assert!(
        text.contains("# [capability_limits.\""),
        "the example shows `capability_limits`"
    );
    assert!(doc.contains("`capability_limits`"));
    // So have secrets; the http capability's keys are a table's.
    assert!(
        text.contains("# [secrets]"),
        "the example shows `[secrets]`"
    );
    assert!(text.contains("\n[http]\n"), "the example sets `[http]`");
    assert!(
        text.contains("\n[webhooks]\n"),
        "the example sets `[webhooks]`"
    );
    for table in ["`[http]`", "`[secrets]`", "`[webhooks]`"] {
        assert!(doc.contains(table), "docs/api.md describes {table}");
    }
    // Used as it is, from a temporary folder, so its relative data folder
    // lands there; only the port is overridden (7700 may be taken).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("retrace-data");
    let headers = serves_with(dir.path(), &text, &["--listen", "127.0.0.1:0"], &data).await;
    // CORS is off in the example: no CORS headers.
    assert!(!headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn the_api_references_sample_file_is_accepted() {
    let doc = std::fs::read_to_string(repo().join("docs/api.md")).unwrap();
    let start = doc
        .find("```toml\n")
        .expect("a ```toml block in docs/api.md")
        + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let sample = &doc[start..end];
    assert!(sample.contains("cors_origins"), "{sample}");
    // Its folder and address are a deployment's, so flags override them, and
    // its JSON log format (the launcher reads the human one).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flags = [
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "human",
    ];
    serves_with(dir.path(), sample, &flags, &data).await;
}

#[tokio::test]
async fn the_http_capability_takes_its_policy_and_secrets_from_the_file_and_the_environment() {
    const FROM_FILE: &str = "file-s3cr3t-Qm4R8";
    const LOSES: &str = "file-loses-Wn7T3";
    const FROM_ENV: &str = "env-s3cr3t-Kp2V6";
    // The service the workflow calls: it logs what it got and echoes it.
    type Seen =
        std::sync::Arc<std::sync::Mutex<Vec<(String, std::collections::BTreeMap<String, String>)>>>;
    let seen: Seen = Seen::default();
    let log = seen.clone();
    let router = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
            let log = log.clone();
            async move {
                let headers: std::collections::BTreeMap<String, String> = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                log.lock().unwrap().push((uri.to_string(), headers.clone()));
                axum::Json(json!({"got": headers, "uri": uri.to_string()}))
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let called = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config_file(
        dir.path(),
        &format!(
            "[http]\nallow = [\"127.0.0.1/32\"]\nmax_concurrency = 2\n\n\
             [secrets]\nfrom_file = \"{FROM_FILE}\"\nOVERRIDDEN = \"{LOSES}\"\n"
        ),
    );
    let mut command = serve(&[
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--data",
        data.to_str().unwrap(),
    ]);
    command
        .env("RETRACE_SECRET_OVERRIDDEN", FROM_ENV)
        .env("RUST_LOG", "debug");
    let server = Server::spawn(command, &data).await;
    define(
        &server.base,
        dir.path(),
        json!({"name": "call_home", "steps": [
            {"id": "call", "type": "task", "capability": "http",
             "input": {"method": "POST", "url": format!("{called}/hook"),
                       "headers": {"Authorization": "Bearer ${ secret('FROM_FILE') }",
                                   "X-Other": "${ secret('overridden') }"},
                       "query": {"sig": "${ secret('FROM_FILE') }"},
                       "body": {"n": 1}}}
        ]}),
    )
    .await;
    let id = start(&server.base, "call_home", json!({})).await;
    // `retrace tail` ends when the execution does.
    let tail = run(&["tail", &id, "--server", &server.base])
        .await
        .expect_code(0);
    let shown = execution(&server.base, &id).await;
    assert_eq!(shown["status"], "completed", "{shown}");
    assert_eq!(
        shown["output"]["body"]["got"]["authorization"],
        "Bearer [redacted]"
    );

    // The values went out: the file's, and the environment's over the file's.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (uri, headers) = &seen[0];
    assert_eq!(uri, &format!("/hook?sig={FROM_FILE}"));
    assert_eq!(headers["authorization"], format!("Bearer {FROM_FILE}"));
    assert_eq!(headers["x-other"], FROM_ENV);

    let (code, log) = server.stop_with("TERM").await;
    assert_eq!(code, 0, "{log}");
    let settings = log
        .lines()
        .find(|line| line.contains("the http capability"))
        .unwrap_or_else(|| panic!("no line about the http capability in:\n{log}"));
    assert!(settings.contains("127.0.0.1/32"), "{settings}");
    assert!(
        settings.contains("FROM_FILE") && settings.contains("OVERRIDDEN"),
        "{settings}"
    );
    // Nothing the server said, showed or stored holds a value.
    let mut stored = Vec::new();
    let mut folders = vec![data.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                stored.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    assert!(
        stored
            .iter()
            .any(|(_, bytes)| bytes.windows(6).any(|w| w == b"secret")),
        "the journal holds the references"
    );
    for value in [FROM_FILE, LOSES, FROM_ENV] {
        assert!(!log.contains(value), "the log holds {value}:\n{log}");
        assert!(!tail.stdout.contains(value), "{}", tail.stdout);
        assert!(!shown.to_string().contains(value), "{shown}");
        for (path, bytes) in &stored {
            assert!(
                !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                "{} holds {value}",
                path.display()
            );
        }
    }
}
