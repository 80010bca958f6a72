//! `retrace replay` and `retrace export` as a user runs them: on the data
//! folder of a server that drove `hello` to completion and was stopped, on a
//! folder a running server holds (refused, exit 2), on an export (the same
//! replay as from the folder), and against the running server itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use cli_support::{Server, hello_to_completion, run};
use serde_json::Value;

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn replay_of_a_data_folder_shows_every_event_and_the_state_after_it() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path()).await;
    let (id, tail) = hello_to_completion(&server.base, "Ann").await;
    assert!(tail.contains("execution_completed"), "{tail}");
    let live = run(&["status", &id, "--server", &server.base, "--json"])
        .await
        .expect_code(0);
    let live: Value = serde_json::from_str(&live.stdout).unwrap();
    server.stop().await;
    let folder = data.path().to_str().unwrap();

    // Without an id: the executions in the folder.
    let listed = run(&["replay", folder]).await.expect_code(0);
    let row = listed.stdout.lines().find(|l| l.starts_with(&id)).unwrap();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns, [id.as_str(), "hello", "completed", "10"]);
    let listed = json_lines(&run(&["replay", folder, "--json"]).await.stdout);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["events"], 10);

    // Each event with what it changed.
    let text = run(&["replay", folder, &id]).await.expect_code(0).stdout;
    for expected in [
        "    1  ",
        "execution_started",
        "input {\"name\":\"Ann\"}",
        "+ step compose [act 1]: in progress",
        "~ step compose [act 1]: waits for task",
        "set message = \"Hello, Ann\"",
        "- step deliver [act 2]",
        "status running → completed",
        "output {\"message\":\"Hello, Ann\",\"to\":\"Ann\"}",
        "after seq 10: completed",
    ] {
        assert!(text.contains(expected), "`{expected}` in:\n{text}");
    }

    // With --json: the whole state after each event, folded from the start.
    let steps = json_lines(
        &run(&["replay", folder, &id, "--json"])
            .await
            .expect_code(0)
            .stdout,
    );
    assert_eq!(steps.len(), 10);
    for (n, step) in steps.iter().enumerate() {
        let seq = n as u64 + 1;
        assert_eq!(step["seq"], seq);
        assert_eq!(step["state"]["seq"], seq);
        assert_eq!(step["type"], step["event"]["type"]);
        assert_eq!(step["hash"].as_str().unwrap().len(), 64);
    }
    assert_eq!(steps[0]["state"]["workflow"], "hello");
    assert_eq!(steps[0]["state"]["status"], "running");
    let scheduled = &steps[2];
    assert_eq!(scheduled["type"], "task_scheduled");
    assert_eq!(
        scheduled["state"]["activations"]["1"]["waiting"]["for"],
        "task"
    );
    let last = &steps[9]["state"];
    assert_eq!(last["status"], "completed");
    // The fold ends where the live engine was.
    assert_eq!(last["output"], live["output"]);
    assert_eq!(last["variables"], live["variables"]);
    assert_eq!(last["input"], live["input"]);

    // --until stops after that seq.
    let until = json_lines(
        &run(&["replay", folder, &id, "--json", "--until", "5"])
            .await
            .stdout,
    );
    assert_eq!(until.len(), 5);
    assert_eq!(until[4]["type"], "step_completed");
    assert_eq!(until[4]["state"]["status"], "running");
    assert_eq!(until[4]["state"]["variables"]["message"], "Hello, Ann");
    assert_eq!(until[4], steps[4]);
    let text = run(&["replay", folder, &id, "--until", "5"]).await.stdout;
    assert!(text.ends_with("after seq 5: running\n"), "{text}");

    // An id that is not there.
    let missing = run(&["replay", folder, "01a1fb96-2826-7012-96b6-9bd448d552cf"])
        .await
        .expect_code(1);
    assert!(
        missing
            .stderr
            .contains("no execution 01a1fb96-2826-7012-96b6-9bd448d552cf"),
        "{}",
        missing.stderr
    );
}

#[tokio::test]
async fn a_folder_a_running_server_holds_is_refused_with_exit_code_2() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path()).await;
    let folder = data.path().to_str().unwrap();
    for args in [
        vec!["replay", folder],
        vec!["export", folder],
        vec!["verify", folder],
    ] {
        let out = run(&args).await.expect_code(2);
        assert!(
            out.stderr
                .contains("is in use by a running server: stop the server first"),
            "{args:?}: {}",
            out.stderr
        );
        // Only the commands that take --server suggest it.
        assert_eq!(
            out.stderr.contains("--server"),
            args[0] != "verify",
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
    // Still serving.
    run(&["agents", "--server", &server.base])
        .await
        .expect_code(0);
    server.stop().await;

    let missing = data.path().join("nothing-here");
    let out = run(&["replay".as_ref(), missing.as_os_str()])
        .await
        .expect_code(1);
    assert!(
        out.stderr.contains("is not a retrace data folder"),
        "{}",
        out.stderr
    );
    assert!(!missing.exists(), "a mistyped folder is not created");
}

#[tokio::test]
async fn an_export_replays_exactly_as_the_folder_and_the_server_do() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path()).await;
    let (ann, _) = hello_to_completion(&server.base, "Ann").await;
    let (bob, _) = hello_to_completion(&server.base, "Bob").await;
    let from_server = run(&["export", "--server", &server.base])
        .await
        .expect_code(0)
        .stdout;
    let one_from_server = run(&["export", "--server", &server.base, &bob])
        .await
        .expect_code(0)
        .stdout;
    let replay_from_server = run(&["replay", "--server", &server.base, &ann, "--json"])
        .await
        .expect_code(0)
        .stdout;
    let listed_from_server = run(&["replay", "--server", &server.base])
        .await
        .expect_code(0)
        .stdout;
    server.stop().await;
    let folder = data.path().to_str().unwrap();

    let export = run(&["export", folder]).await.expect_code(0).stdout;
    let lines = json_lines(&export);
    assert_eq!(lines.len(), 20);
    let positions: Vec<u64> = lines
        .iter()
        .map(|l| l["position"].as_u64().unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|p| p[0] < p[1]),
        "global order: {positions:?}"
    );
    for line in &lines {
        let fields: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            [
                "at",
                "data",
                "executionId",
                "hash",
                "position",
                "seq",
                "type",
                "workflow"
            ]
        );
        assert_eq!(line["workflow"], "hello");
    }
    // The server's engine-wide stream shows the same events.
    assert_eq!(from_server, export);
    let bobs: Vec<&str> = export.lines().filter(|l| l.contains(&bob)).collect();
    assert_eq!(one_from_server.lines().collect::<Vec<_>>(), bobs);
    let one = run(&["export", folder, &bob]).await.expect_code(0).stdout;
    assert_eq!(one.lines().collect::<Vec<_>>(), bobs);

    let file = data.path().join("export.jsonl");
    std::fs::write(&file, &export).unwrap();
    let file = file.to_str().unwrap();
    assert_eq!(
        run(&["replay", file]).await.expect_code(0).stdout,
        run(&["replay", folder]).await.expect_code(0).stdout
    );
    assert_eq!(
        run(&["replay", folder]).await.stdout,
        listed_from_server,
        "a server lists the same"
    );
    for id in [&ann, &bob] {
        for extra in [&[][..], &["--json"][..], &["--json", "--until", "7"][..]] {
            let mut from_file = vec!["replay", file, id];
            from_file.extend_from_slice(extra);
            let mut from_folder = vec!["replay", folder, id];
            from_folder.extend_from_slice(extra);
            let from_file = run(&from_file).await.expect_code(0).stdout;
            let from_folder = run(&from_folder).await.expect_code(0).stdout;
            if extra.is_empty() {
                // The header names the source; the rest is the same.
                let body = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n");
                assert_eq!(body(&from_file), body(&from_folder));
            } else {
                assert_eq!(from_file, from_folder);
            }
        }
    }
    assert_eq!(
        run(&["replay", folder, &ann, "--json"]).await.stdout,
        replay_from_server
    );

    // A damaged export names the line.
    std::fs::write(
        data.path().join("bad.jsonl"),
        format!("{}\nnot json\n", export.lines().next().unwrap()),
    )
    .unwrap();
    let bad = data.path().join("bad.jsonl");
    let out = run(&["replay".as_ref(), bad.as_os_str()])
        .await
        .expect_code(1);
    assert!(
        out.stderr.contains("bad.jsonl:2: not an exported event"),
        "{}",
        out.stderr
    );
}
