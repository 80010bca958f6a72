//! `retrace schedule …` against a real server: create, list, show, pause,
//! resume, trigger and delete, each as a real process, and a schedule the
//! server refuses shown as it refused it, with exit code 1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use cli_support::{Server, run};
use serde_json::Value;

/// `retrace schedule <args> --server <base>`.
async fn schedule(base: &str, args: &[&str]) -> cli_support::Output {
    let mut all = vec!["schedule"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--server", base]);
    run(&all).await
}

#[tokio::test]
async fn schedules_are_created_listed_shown_paused_resumed_triggered_and_deleted() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path()).await;
    let base = server.base.as_str();
    // One inline step: an execution completes as it starts.
    let tick = data.path().join("tick.json");
    std::fs::write(
        &tick,
        r#"{"name":"tick","steps":[{"id":"s0","type":"task","capability":"noop"}]}"#,
    )
    .unwrap();
    let tick = tick.to_str().unwrap();
    run(&["workflow", "apply", tick, "--server", base])
        .await
        .expect_code(0);

    let created = schedule(
        base,
        &[
            "create",
            "nightly",
            "--workflow",
            "tick",
            "--cron",
            "0 3 * * *",
            "--timezone",
            "Europe/Berlin",
            "--input",
            r#"{"from":"cli"}"#,
            "--overlap",
            "bufferOne",
            "--priority",
            "4",
            "--reason",
            "reports at night",
        ],
    )
    .await
    .expect_code(0);
    let lines: Vec<&str> = created.stdout.lines().collect();
    assert_eq!(lines[0], "schedule   nightly", "{}", created.stdout);
    for expected in [
        "workflow   tick (newest version)",
        "input      {\"from\":\"cli\"}",
        "timing     cron 0 3 * * * (Europe/Berlin)",
        "overlap    bufferOne",
        "catch-up   60000 ms",
        "priority   4",
        "state      active",
        "fired      0 (skipped 0, missed 0, failed 0)",
    ] {
        assert!(lines.contains(&expected), "{expected}:\n{}", created.stdout);
    }
    let next = lines.iter().find(|l| l.starts_with("next ")).unwrap();
    assert_eq!(next.matches("T0").count(), 5, "{next}");

    let every = schedule(
        base,
        &[
            "create",
            "hourly",
            "--workflow",
            "tick",
            "--every-ms",
            "3600000",
            "--paused",
            "--json",
        ],
    )
    .await
    .expect_code(0);
    let answer: Value = serde_json::from_str(&every.stdout).unwrap();
    assert_eq!(answer["everyMs"], 3_600_000);
    assert_eq!(answer["paused"], true);

    // The list: a table by id, or the answer.
    let listed = schedule(base, &["list"]).await.expect_code(0);
    let rows: Vec<&str> = listed.stdout.lines().collect();
    assert_eq!(rows.len(), 3, "{}", listed.stdout);
    assert!(rows[0].starts_with("ID "), "{}", listed.stdout);
    assert!(
        rows[1].starts_with("hourly ") && rows[1].contains("every 3600000 ms"),
        "{}",
        listed.stdout
    );
    assert!(rows[1].contains(" paused "), "{}", listed.stdout);
    assert!(
        rows[2].starts_with("nightly ") && rows[2].contains(" active "),
        "{}",
        listed.stdout
    );
    let listed = schedule(base, &["list", "--json"]).await.expect_code(0);
    let answer: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(answer["schedules"].as_array().unwrap().len(), 2);

    // Pause, show, resume.
    let paused = schedule(base, &["pause", "nightly"]).await.expect_code(0);
    assert!(
        paused.stdout.contains("\nstate      paused\n"),
        "{}",
        paused.stdout
    );
    let shown = schedule(base, &["show", "nightly", "--json"])
        .await
        .expect_code(0);
    let answer: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(answer["paused"], true);
    let resumed = schedule(base, &["resume", "nightly"]).await.expect_code(0);
    assert!(
        resumed.stdout.contains("\nstate      active\n"),
        "{}",
        resumed.stdout
    );

    // Triggered: the execution it started completes.
    let triggered = schedule(base, &["trigger", "nightly"]).await.expect_code(0);
    let words: Vec<&str> = triggered.stdout.split_whitespace().collect();
    assert_eq!(
        words[..3],
        ["nightly", "triggered:", "execution"],
        "{}",
        triggered.stdout
    );
    let execution = words[3].to_owned();
    let status = run(&["status", &execution, "--server", base, "--json"])
        .await
        .expect_code(0);
    let answer: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(answer["status"], "completed", "{answer}");
    assert_eq!(answer["input"]["from"], "cli");
    let shown = schedule(base, &["show", "nightly"]).await.expect_code(0);
    assert!(
        shown.stdout.contains(&format!("last       {execution}")),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains("  triggered  "), "{}", shown.stdout);
    assert!(
        shown
            .stdout
            .contains("fired      1 (skipped 0, missed 0, failed 0)"),
        "{}",
        shown.stdout
    );

    // A bad cron: refused by the server, every problem said, exit 1.
    let bad = schedule(
        base,
        &[
            "create",
            "broken",
            "--workflow",
            "tick",
            "--cron",
            "61 * * * *",
        ],
    )
    .await
    .expect_code(1);
    assert!(
        bad.stderr
            .starts_with("retrace: invalid_schedule: invalid schedule (1 problem)"),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr.contains("\n  - cron `61 * * * *` is not valid"),
        "{}",
        bad.stderr
    );
    assert!(bad.stdout.is_empty(), "{}", bad.stdout);
    // Neither timing: the command line itself refuses (exit 2).
    let usage = schedule(base, &["create", "broken", "--workflow", "tick"])
        .await
        .expect_code(2);
    assert!(usage.stderr.contains("--cron"), "{}", usage.stderr);

    // Deleted; then it is unknown.
    let deleted = schedule(base, &["delete", "nightly"]).await.expect_code(0);
    assert_eq!(deleted.stdout, "nightly deleted\n");
    let gone = schedule(base, &["show", "nightly"]).await.expect_code(1);
    assert_eq!(
        gone.stderr,
        "retrace: unknown_schedule: no schedule `nightly`\n"
    );
    let listed = schedule(base, &["list"]).await.expect_code(0);
    assert_eq!(listed.stdout.lines().count(), 2, "{}", listed.stdout);
    server.stop().await;
}
