//! A full disk, for real: `retrace serve` on a small tmpfs of its own is
//! filled under load until less than the journal's free-space reserve is
//! left (so sled never sees ENOSPC, which it cannot recover from without a
//! restart). Then:
//! every write answers `503 storage_unavailable` with `Retry-After` and
//! records nothing, reads still answer, `/readyz` says why, `/metrics` shows
//! it. Space is freed, and the server resumes without a restart: executions
//! whose timers fired during the outage complete, new ones start. A graceful
//! stop exits 0, and a restart from the same folder holds every execution
//! that was acknowledged, its hash chains intact.
//!
//! The tmpfs is mounted in a private mount namespace (`unshare`): as root,
//! or as any user where unprivileged user namespaces are allowed (the
//! Debian and Ubuntu default). Where neither works the test fails and says
//! so; it never passes without having filled a disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cli_support::{PATIENCE, Server, retrace};
use serde_json::{Value, json};
use tokio::process::Command;

/// The file system the server gets, and what is kept aside on it to be
/// freed later. The journal fills what is left (64 MiB less the reserve);
/// freeing the ballast gives it four times that back. The wake-ups kept
/// during the outage are written at once when it ends, and sled, being
/// log-structured, takes several times their size in new segments before
/// it reclaims old ones: with only as much freed as was filled, that burst
/// can fill the disk again, and nothing in the test would free it.
const TMPFS_BYTES: u64 = 320 << 20;
const BALLAST_BYTES: u64 = 256 << 20;
/// The journal's reserve (`--min-free-disk-mb`): freeing the ballast leaves
/// well above it (sled's log-structured writes need room to finish what
/// was acknowledged), so the outage ends.
const RESERVE_MB: u64 = 8;
/// Each execution's input: large, so the disk fills in seconds.
const INPUT_BYTES: usize = 24 * 1024;
const CLIENTS: usize = 4;

/// Mounts a tmpfs in a new mount namespace, fills part of it with a
/// ballast file, and runs the server on it in the background; on SIGTERM
/// it forwards the signal, waits for the server's own exit, copies the data
/// folder out to the real disk (the tmpfs ends with the namespace) and
/// exits with the server's code.
const SCRIPT: &str = r#"
set -eu
mount -t tmpfs -o size="$TMPFS_BYTES" tmpfs "$MNT"
head -c "$BALLAST_BYTES" /dev/zero > "$MNT/ballast"
"$RETRACE" serve --data "$MNT/data" --listen 127.0.0.1:0 --min-free-disk-mb "$RESERVE_MB" &
pid=$!
echo "$pid" > "$OUT/pid"
trap 'kill -TERM "$pid"' TERM
set +e
wait "$pid"; code=$?
# A trapped signal interrupts `wait`: wait again for the server's own exit.
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; code=$?; done
echo "serve exited with $code" >&2
cp -r "$MNT/data" "$OUT/data"
exit "$code"
"#;

fn workflow() -> Value {
    // A timer that fires about when the disk is full: its wake-up must not
    // be lost to the outage.
    json!({
        "name": "fill",
        "steps": [
            { "id": "pause", "type": "wait", "wait": { "seconds": 1 } }
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_is_refused_cleanly_and_survived_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mnt, out) = (dir.path().join("mnt"), dir.path().join("out"));
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let server = start_on_tmpfs(&mnt, &out).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let answer = post(&http, &base, "/v1/workflows", &workflow()).await;
    assert_eq!(answer.0, 201, "{}", answer.1);

    // Fill the disk under load, until the journal refuses writes.
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (http, base) = (http.clone(), base.clone());
        let (acknowledged, refused) = (acknowledged.clone(), refused.clone());
        clients.push(tokio::spawn(async move {
            let blob = "x".repeat(INPUT_BYTES);
            let mut refusals = 0;
            for i in 0..100_000 {
                let start =
                    json!({"workflow": "fill", "input": {"client": c, "i": i, "blob": blob}});
                let (status, body, retry_after) =
                    post_with_headers(&http, &base, "/v1/executions", &start).await;
                match status {
                    201 => {
                        let id = body["id"].as_str().unwrap().to_owned();
                        acknowledged.lock().unwrap().insert(id);
                    }
                    _ => {
                        refused.lock().unwrap().push((status, body, retry_after));
                        refusals += 1;
                        // Keep going a little: every refusal must look alike.
                        if refusals == 5 {
                            return;
                        }
                    }
                }
            }
            panic!("a {TMPFS_BYTES}-byte disk never filled");
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(!acknowledged.is_empty());
    for (status, body, retry_after) in refused.lock().unwrap().iter() {
        assert_eq!(*status, 503, "{body}");
        assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
        assert_eq!(retry_after.as_deref(), Some("5"), "{body}");
    }

    // The outage is visible, and every write is refused with the same code.
    let ready = get(&http, &base, "/readyz").await;
    assert_eq!(ready.0, 503, "{}", ready.1);
    assert_eq!(ready.1["error"]["code"], "storage_unavailable");
    let reason = ready.1["error"]["message"].as_str().unwrap_or_default();
    assert!(reason.contains("free space"), "{reason}");
    assert!(reason.contains("in reserve"), "{reason}");
    let metrics = text(&http, &base, "/metrics").await;
    assert!(metrics.contains("retrace_journal_writable 0"), "{metrics}");
    let some = acknowledged.iter().next_back().unwrap().clone();
    let signal = post(
        &http,
        &base,
        &format!("/v1/executions/{some}/signals/nudge"),
        &json!({}),
    )
    .await;
    assert_eq!(signal.0, 503, "{}", signal.1);
    assert_eq!(signal.1["error"]["code"], "storage_unavailable");
    let define = post(
        &http,
        &base,
        "/v1/workflows",
        &json!({"name": "other", "steps": [{"id": "a", "type": "wait", "wait": {"seconds": 0}}]}),
    )
    .await;
    assert_eq!(define.0, 503, "{}", define.1);
    // Reads answer, or (what sled cannot read back in its failed state)
    // are refused the same way, never as an internal error.
    let one = get(&http, &base, &format!("/v1/executions/{some}")).await;
    assert!(
        one.0 == 200 || (one.0 == 503 && one.1["error"]["code"] == "storage_unavailable"),
        "{}",
        one.1
    );

    // Free space: the server resumes on its own.
    let pid = std::fs::read_to_string(out.join("pid")).unwrap();
    let ballast = format!("/proc/{}/root{}/ballast", pid.trim(), mnt.display());
    std::fs::remove_file(&ballast).unwrap_or_else(|e| panic!("cannot free {ballast}: {e}"));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let ready = get(&http, &base, "/readyz").await;
        if ready.0 == 200 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("the server never resumed: {}\n{}", ready.1, server.log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = text(&http, &base, "/metrics").await;
    assert!(metrics.contains("retrace_journal_writable 1"), "{metrics}");
    // New work is taken, and every acknowledged execution completes: the
    // timers that fired into the outage were delivered again.
    let after = post(
        &http,
        &base,
        "/v1/executions",
        &json!({"workflow": "fill", "input": {}}),
    )
    .await;
    assert_eq!(after.0, 201, "{}", after.1);
    let mut everything = acknowledged.clone();
    everything.insert(after.1["id"].as_str().unwrap().to_owned());
    for id in &everything {
        if let Err(body) = wait_until_completed(&http, &base, id).await {
            panic!("{id} never completed: {body}\n{}", server.log());
        }
    }

    // A graceful stop exits 0 and says nothing was lost.
    let (code, log) = server.stop_with("TERM").await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("journal write failed"), "{log}");
    assert!(log.contains("takes writes again"), "{log}");

    // Restarted from the same folder (copied off the tmpfs): every
    // acknowledged execution is there, completed, and the journal verifies.
    let data = out.join("data");
    let verify = cli_support::output({
        let mut c = retrace();
        c.arg("verify").arg(&data);
        c
    })
    .await
    .expect_code(0);
    assert!(!verify.stdout.is_empty());
    let again = Server::start(&data).await;
    for id in &everything {
        let (status, body) = get(&http, &again.base, &format!("/v1/executions/{id}")).await;
        assert_eq!(status, 200, "{id}: {body}");
        assert_eq!(body["status"], "completed", "{body}");
    }
    again.stop().await;
}

/// Starts the server on a fresh tmpfs in its own mount namespace.
async fn start_on_tmpfs(mnt: &Path, out: &Path) -> Server {
    let mut command = Command::new("unshare");
    // Root may make a mount namespace directly; anyone else needs a user
    // namespace in which they are root.
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        command.args(["--user", "--map-root-user"]);
    }
    command
        .args(["--mount", "--propagation", "private", "sh", "-c", SCRIPT])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("RETRACE", env!("CARGO_BIN_EXE_retrace"))
        .env("MNT", mnt)
        .env("OUT", out)
        .env("TMPFS_BYTES", TMPFS_BYTES.to_string())
        .env("BALLAST_BYTES", BALLAST_BYTES.to_string())
        .env("RESERVE_MB", RESERVE_MB.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let probe = std::process::Command::new("unshare")
        .args(if root {
            vec!["--mount", "true"]
        } else {
            vec!["--user", "--map-root-user", "--mount", "true"]
        })
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "this test needs a private mount namespace for its small tmpfs: run it as root, or \
         allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, or \
         kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu), and have `unshare` \
         (util-linux) installed"
    );
    Server::spawn(command, &out.join("data")).await
}

/// Waits for `id` to complete; its last state if it did not in time.
async fn wait_until_completed(http: &reqwest::Client, base: &str, id: &str) -> Result<(), Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, body) = get(http, base, &format!("/v1/executions/{id}")).await;
        assert_eq!(status, 200, "{body}");
        if body["status"] == "completed" {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(http: &reqwest::Client, base: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, body, _) = post_with_headers(http, base, path, body).await;
    (status, body)
}

async fn post_with_headers(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: &Value,
) -> (u16, Value, Option<String>) {
    let response = http
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, retry_after)
}

async fn get(http: &reqwest::Client, base: &str, path: &str) -> (u16, Value) {
    let response = http.get(format!("{base}{path}")).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn text(http: &reqwest::Client, base: &str, path: &str) -> String {
    http.get(format!("{base}{path}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
