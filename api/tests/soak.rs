//! The soak benchmark's scenario (`retrace_benches::soak`) for two minutes
//! against this debug `retrace` binary: the server's memory, less what the
//! journal's growth costs (the control server's growth: sled's page cache,
//! the engine's index of executions), stays within 10% of its figure after
//! the warm-up. A memory bound, not a timing: how fast the load goes does
//! not change what is checked.
//!
//! It is the suite's one long test (about two and a half minutes). Both
//! servers listen on loopback ports and the scenario stops them (SIGTERM,
//! exit 0 checked); it also fails on a wrong answer, a frame out of order
//! or an execution that does not complete.

use retrace_benches::soak::{SoakArgs, run};

#[test]
fn two_minutes_of_mixed_load_keep_the_servers_memory_flat() {
    let dir = tempfile::tempdir().expect("a scratch folder");
    let dir = dir.path().to_str().expect("a UTF-8 temporary path");
    // A load the debug build on two cores keeps up with, client included.
    let args = <SoakArgs as clap::Parser>::try_parse_from([
        "soak",
        "--retrace",
        env!("CARGO_BIN_EXE_retrace"),
        "--dir",
        dir,
        "--only",
        "soak",
        "--duration",
        "120s",
        "--warmup",
        "40s",
        "--settle",
        "5s",
        "--rate",
        "10",
        "--readers",
        "40",
        "--slow-readers",
        "20",
        "--reader-life",
        "15s",
        "--stall",
        "15s",
    ])
    .expect("valid soak arguments");
    let figures = run(args)
        .expect("the soak runs")
        .expect("the soak scenario ran");
    assert!(figures.completed > 0, "nothing completed: {}", figures.line);
    let growth = figures
        .clients_max_over_warm_pct
        .expect("the control server's figures");
    assert!(
        growth <= 10.0,
        "the server's memory (less the journal's growth) rose {growth:.1}% above its \
         figure after the warm-up: {}",
        figures.line
    );
}

/// A reader of the engine-wide stream that stops reading while far more is
/// recorded than the server buffers for it (the live buffer holds 8 MiB,
/// the sockets a few more; about 20 MB is recorded here), then reads on:
/// it gets every event exactly once, in order, with no gap, caught up from
/// the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_caught_up_from_the_journal_exactly_once() {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use futures::StreamExt;
    use retrace_benches::serve::{Server, wait_for_200};
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const EXECUTIONS: usize = 600;
    let data = tempfile::tempdir().expect("a scratch folder");
    let server = Server::start(
        env!("CARGO_BIN_EXE_retrace").as_ref(),
        data.path(),
        Duration::from_secs(60),
    )
    .await
    .expect("retrace serve starts");
    let http = reqwest::Client::new();
    wait_for_200(&http, &server.base, "/healthz", Duration::from_secs(60))
        .await
        .expect("the server is healthy");
    let carry = |id: &str, next: Option<&str>| {
        let mut step = json!({"id": id, "type": "task", "capability": "transform",
            "input": {"doc": "$.input.doc"}});
        if let Some(next) = next {
            step["next"] = json!(next);
        }
        step
    };
    let definition = json!({"name": "carry",
        "steps": [carry("a", Some("b")), carry("b", Some("c")), carry("c", None)]});
    let defined = http
        .post(format!("{}/v1/workflows", server.base))
        .json(&definition)
        .send()
        .await
        .expect("POST /v1/workflows");
    assert_eq!(defined.status(), reqwest::StatusCode::CREATED);

    // The reader: a socket with a small receive buffer, stream open, then
    // not read at all.
    let addr: std::net::SocketAddr = server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("a socket address");
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a receive buffer");
    let mut reader = socket.connect(addr).await.expect("connected");
    reader
        .write_all(
            // HTTP/1.0: the body is the stream itself, not in chunks.
            format!("GET /v1/events/stream HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes(),
        )
        .await
        .expect("the request is sent");
    let mut received = vec![0u8; 12];
    reader
        .read_exact(&mut received)
        .await
        .expect("the answer begins");
    assert!(
        received.starts_with(b"HTTP/1.") && received.ends_with(b" 200"),
        "{:?}",
        String::from_utf8_lossy(&received)
    );

    let doc = "x".repeat(8 * 1024);
    let mut starts = futures::stream::iter(0..EXECUTIONS)
        .map(|_| {
            http.post(format!("{}/v1/executions", server.base))
                .json(&json!({"workflow": "carry", "input": {"doc": doc}}))
                .send()
        })
        .buffer_unordered(32);
    while let Some(started) = starts.next().await {
        assert_eq!(
            started.expect("POST /v1/executions").status(),
            reqwest::StatusCode::CREATED
        );
    }
    drop(starts);
    let metrics: Value = http
        .get(format!("{}/v1/metrics", server.base))
        .send()
        .await
        .expect("GET /v1/metrics")
        .json()
        .await
        .expect("metrics as JSON");
    let last = metrics["system"]["journal"]["events"]
        .as_u64()
        .expect("the journal's event count");

    // Now it reads everything, up to the last event recorded.
    let (mut text, mut ids, mut seqs) = (Vec::new(), Vec::new(), BTreeMap::new());
    let mut in_body = false;
    let mut chunk = vec![0u8; 64 * 1024];
    while ids.last() != Some(&last) {
        let n = tokio::time::timeout(Duration::from_secs(60), reader.read(&mut chunk))
            .await
            .expect("the stream goes on")
            .expect("the stream is readable");
        assert!(n > 0, "the stream ended after {} events", ids.len());
        text.extend_from_slice(&chunk[..n]);
        if !in_body {
            let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            text.drain(..end + 4);
            in_body = true;
        }
        while let Some(end) = text.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = text.drain(..end + 2).collect();
            let frame = String::from_utf8_lossy(&frame);
            let (Some(id), Some(data)) = (
                frame.lines().find_map(|l| l.strip_prefix("id: ")),
                frame.lines().find_map(|l| l.strip_prefix("data: ")),
            ) else {
                continue;
            };
            let id: u64 = id.trim().parse().expect("a numeric id");
            let event: Value = serde_json::from_str(data).expect("JSON data");
            assert_eq!(event["position"], id);
            ids.push(id);
            let execution = event["executionId"]
                .as_str()
                .expect("an execution")
                .to_owned();
            seqs.entry(execution)
                .or_insert_with(Vec::new)
                .push(event["seq"].as_u64().expect("a seq"));
        }
    }
    // Position 1 is the workflow's definition, which the stream never shows.
    assert_eq!(
        ids,
        (2..=last).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert_eq!(seqs.len(), EXECUTIONS);
    for (execution, seqs) in seqs {
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{execution}"
        );
    }
    drop(reader);
    server
        .stop()
        .await
        .expect("the server stops with exit code 0");
}
