//! The OpenAPI document is an exact contract: schemathesis, a property-based
//! API tester, generates requests from `GET /openapi.json` — valid ones,
//! and ones that break exactly one rule the document states — sends them to
//! a real `retrace serve` (loopback, temporary data folder), and checks
//! every answer with all its checks: no `5xx`, every status and body as
//! documented, every request the document allows accepted and every one it
//! refuses refused. Its stateful phase chains requests through the
//! document's links (define → start → command, register → poll →
//! complete). The seed is fixed, so a run is repeatable; any failure fails
//! the test, with schemathesis' report.
//!
//! Schemathesis is installed by `scripts/test` (a pinned version, in a
//! virtualenv under the target folder), which also sets
//! `RETRACE_SCHEMATHESIS` to its `st` command. Without it, this test fails
//! and says how to install it: it never passes without running.
//!
//! Settings that only make sense per operation (which answers a
//! definition may get, how long a stream is read) are in
//! `tests/schemathesis/schemathesis.toml`; `tests/schemathesis/hooks.py`
//! shortens long waits so the run stays bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod cli_support;

use cli_support::{PATIENCE, Server, repo, retrace};

/// The variable that names schemathesis' `st` command.
const ST: &str = "RETRACE_SCHEMATHESIS";

/// The name of the admin token the run sends (`hooks.py` keeps it).
const ADMIN: &str = "schemathesis-admin";

/// The run's seed: the same requests every time.
const SEED: &str = "20261121";

/// Generated cases per operation and phase (streams take fewer: see the
/// configuration file). About a minute and a half on a 2-core machine.
const MAX_EXAMPLES: &str = "100";

/// The longest the whole run may take before it counts as hung.
const RUN_LIMIT: Duration = Duration::from_secs(600);

fn schemathesis_dir() -> PathBuf {
    repo().join("api/tests/schemathesis")
}

/// Where `scripts/test` installs schemathesis when `CARGO_TARGET_DIR` is
/// the one this test was built in: `<target>/tools/venv/bin/st`.
fn default_st() -> Option<PathBuf> {
    let target = Path::new(env!("CARGO_BIN_EXE_retrace"))
        .parent()?
        .parent()?;
    Some(target.join("tools/venv/bin/st"))
}

/// The version `scripts/test` pins.
fn pinned_version() -> String {
    let script = std::fs::read_to_string(repo().join("scripts/test")).unwrap();
    script
        .lines()
        .find_map(|line| line.strip_prefix("SCHEMATHESIS_VERSION="))
        .expect("scripts/test pins SCHEMATHESIS_VERSION")
        .trim()
        .to_owned()
}

/// The `st` command to run, or a failure that says how to get one.
fn st() -> PathBuf {
    let how = "Install it with `scripts/test` (it installs the pinned version into \
               target/tools/venv and runs every test), or point RETRACE_SCHEMATHESIS at a \
               schemathesis `st` command of that version.";
    let st = match std::env::var_os(ST) {
        Some(path) => PathBuf::from(path),
        None => match default_st().filter(|st| st.is_file()) {
            Some(st) => st,
            None => panic!(
                "schemathesis is not installed, and {ST} is not set: this test cannot run \
                 (and never passes without running). {how}"
            ),
        },
    };
    let output = std::process::Command::new(&st)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({ST}): {e}. {how}", st.display()));
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let pinned = pinned_version();
    assert!(
        output.status.success() && version.ends_with(&format!("version {pinned}")),
        "{} says {version:?}; this test runs schemathesis {pinned}, so that a seed means \
         the same cases. {how}",
        st.display()
    );
    st
}

/// Waits until the server answers `/healthz`.
async fn wait_until_healthy(base: &str) {
    let client = reqwest::Client::new();
    let url = format!("{base}/healthz");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answered = client
            .get(&url)
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if answered {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never answered");
        // The interval between polls, not a wait standing in for one.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `(generated, passed)` from the report's summary line `N generated, N
/// passed` or `N generated, N passed, N skipped` (cases schemathesis chose
/// not to send); a run with failures or errors says more, and no count is
/// read from it.
fn cases(report: &str) -> Option<(u64, u64)> {
    let line = report
        .lines()
        .skip_while(|line| line.trim() != "Test cases:")
        .nth(1)?
        .trim();
    let line = match line.rsplit_once(", ") {
        Some((rest, skipped)) if skipped.ends_with(" skipped") => rest,
        _ => line,
    };
    let (generated, passed) = line.split_once(" generated, ")?;
    let passed = passed.strip_suffix(" passed")?;
    Some((generated.parse().ok()?, passed.parse().ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_difference_between_the_document_and_the_server() {
    let st = st();
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();

    // Polls that name no `waitMs` wait 100 ms, not 30 s (the hooks shorten
    // the waits that are named).
    let mut serve = retrace();
    serve.arg("serve").arg("--data").arg(data.path()).args([
        "--listen",
        "127.0.0.1:0",
        "--poll-wait-ms-default",
        "100",
    ]);
    let server = Server::spawn(serve, data.path()).await;
    wait_until_healthy(&server.base).await;
    // Tokens on, so every operation's security is what it says: the run
    // sends an admin token (whose name nothing generated can hit), and
    // schemathesis' `ignored_auth` check sends requests without it.
    let admin: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/tokens", server.base))
        .json(&serde_json::json!({"name": ADMIN, "role": "admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = admin["secret"].as_str().unwrap().to_owned();

    let config = schemathesis_dir().join("schemathesis.toml");
    let hooks = schemathesis_dir().join("hooks.py");
    let document = format!("{}/openapi.json", server.base);
    let mut command = tokio::process::Command::new(&st);
    command
        .arg("--config-file")
        .arg(&config)
        .args(["run", &document])
        .args(["--checks", "all"])
        // Every check but "a deleted resource answers 404": revoking a token
        // (`DELETE /v1/tokens/{name}`) keeps it, `status: revoked`, for the
        // audit, so reading it back is 200 by design. The check cannot be
        // switched off for that one operation in the stateful phase (its
        // per-operation setting is not read there).
        .args(["--exclude-checks", "use_after_free"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--seed", SEED, "--max-examples", MAX_EXAMPLES])
        // One worker: several share Python's parser, which is not safe
        // across threads in CPython 3.11 (schemathesis reports internal
        // errors then), and one keeps the run repeatable.
        .args(["--workers", "1", "--request-timeout", "10"])
        .args(["--generation-database", "none", "--no-color"])
        .env("RETRACE_ST_TOKEN", &admin)
        .env("RETRACE_ST_TOKEN_NAME", ADMIN)
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let output = tokio::time::timeout(RUN_LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran for more than {RUN_LIMIT:?}"))
        .unwrap();
    let took = started.elapsed();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let (code, log) = server.stop_with("TERM").await;

    assert!(
        output.status.success(),
        "schemathesis found differences between the OpenAPI document and the server \
         (exit {:?}, after {took:?}). Its report:\n\n{report}\n\nThe server's log:\n{log}",
        output.status.code()
    );
    // What a passing run says; a run that tested little or nothing is no pass.
    for phase in ["Examples", "Coverage", "Fuzzing", "Stateful"] {
        assert!(
            report.contains(&format!("✅  {phase} (in ")),
            "the {phase} phase did not run and pass:\n{report}"
        );
    }
    // Every operation but `GET /openapi.json`: schemathesis leaves out the
    // one that serves the document it reads.
    let operations = retrace_api::router::routes().len() - 1;
    assert!(
        report.contains(&format!("Tested: {operations}\n")),
        "schemathesis did not test all {operations} operations:\n{report}"
    );
    let (generated, passed) =
        cases(&report).unwrap_or_else(|| panic!("no count of test cases in the report:\n{report}"));
    assert!(
        generated >= 1000 && passed == generated,
        "{passed} of {generated} cases passed:\n{report}"
    );
    assert_eq!(code, 0, "the server stops cleanly after the run: {log}");
    eprintln!("schemathesis passed in {took:?}:\n{report}");
}
