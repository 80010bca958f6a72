//! The codec benchmark: what encoding and decoding events as JSON costs,
//! to judge what a binary event encoding could save.
//!
//! It records real histories with an in-process engine on a durable folder
//! (200 executions, 50 with `--quick`, of 10 task steps run by an in-process
//! handler that answers `{"acc": acc + i}`, the `agent_http` workflow; each
//! step records `step_started`, `task_scheduled`, `task_completed` and
//! `step_completed`), reads every execution event back from the journal,
//! and times, over all of them, 20 rounds each (5 with `--quick`):
//!
//! - `codec_json_decode`: `store::codec::decode` (JSON to `Event`), what
//!   recovery and every read of history pay per event;
//! - `codec_json_encode`: `store::codec::encode` (`Event` to JSON), what
//!   every recorded event pays once;
//! - `codec_json_scan`: reading the same bytes as JSON without building
//!   anything (`serde::de::IgnoredAny`): what any JSON reader pays at the
//!   least, so `decode` less this is what building the values costs;
//! - `codec_copy`: copying the payload bytes, the floor of a binary
//!   encoding that keeps free JSON values as bytes.
//!
//! `ops_per_s` is events per second; the percentiles are per round (all
//! events once), in µs. A last line gives the events and mean payload bytes.
//!
//! Run: `cargo run --release -p retrace-benches --bin codec -- --quick`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use retrace_benches::{Args, histogram, record, report};
use retrace_engine::machine::{Event, Status};
use retrace_engine::runtime::{Engine, EngineConfig, HandlerTask, StartRequest};
use retrace_engine::store::codec;
use retrace_journal::{EventLog, EventRecord, Journal, Options};
use serde_json::{Value, json};

/// The `agent_http` workflow: 10 steps, each adding its index to `acc`.
fn workflow() -> Value {
    let steps: Vec<Value> = (0..10)
        .map(|i| {
            let from = if i == 0 {
                "$.input.acc"
            } else {
                "$.variables.acc"
            };
            let mut step = json!({
                "id": format!("s{i}"), "type": "task", "capability": "step",
                "input": {"acc": from, "i": i},
                "output": {"acc": "$.output.acc"}
            });
            if i < 9 {
                step["next"] = json!(format!("s{}", i + 1));
            }
            step
        })
        .collect();
    json!({"name": "codec10", "steps": steps})
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let (executions, rounds) = if args.quick { (50, 5) } else { (200, 20) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = args.scratch()?;
        let engine = Engine::open(EngineConfig::folder(dir.path())).await?;
        engine
            .define_json(workflow().to_string().as_bytes())
            .await?;
        engine.register_handler(
            "step",
            Arc::new(|t: HandlerTask| {
                async move {
                    let acc = t.input["acc"].as_i64().unwrap_or(0);
                    let i = t.input["i"].as_i64().unwrap_or(0);
                    Ok(json!({"acc": acc + i}))
                }
                .boxed()
            }),
        );
        for _ in 0..executions {
            let started = engine
                .start(StartRequest {
                    workflow: "codec10".into(),
                    input: json!({"acc": 0}),
                    ..StartRequest::default()
                })
                .await?;
            let end = engine.wait_until_ended(started.id).await?;
            anyhow::ensure!(end.status == Status::Completed, "ended {:?}", end.status);
        }
        engine.shutdown().await?;
        drop(engine);

        // Every execution event, as stored.
        let journal = EventLog::open(dir.path(), Options::default())?;
        let mut records: Vec<EventRecord> = Vec::new();
        let mut from = 1;
        loop {
            let chunk = journal.read_global(from, 4096).await?;
            let Some(last) = chunk.last() else { break };
            from = last.position + 1;
            records.extend(chunk.into_iter().filter(|r| codec::decode(r).is_ok()));
        }
        let events: Vec<(Event, u64)> = records
            .iter()
            .map(|r| Ok((codec::decode(r)?, r.recorded_at_ms)))
            .collect::<Result<_, retrace_engine::Error>>()?;
        let n = records.len() as u64;
        anyhow::ensure!(n > 0, "no events were recorded");
        let bytes: usize = records.iter().map(|r| r.payload.len()).sum();

        let time = |name: &str, f: &mut dyn FnMut() -> anyhow::Result<()>| {
            if !args.wants(name) {
                return anyhow::Ok(());
            }
            let mut h = histogram();
            let started = Instant::now();
            for _ in 0..rounds {
                let t = Instant::now();
                f()?;
                record(&mut h, t.elapsed());
            }
            report(name, n * rounds, started.elapsed(), &h);
            Ok(())
        };
        time("codec_json_decode", &mut || {
            for r in &records {
                black_box(codec::decode(black_box(r))?);
            }
            Ok(())
        })?;
        time("codec_json_encode", &mut || {
            for (e, at) in &events {
                black_box(codec::encode(black_box(e), *at)?);
            }
            Ok(())
        })?;
        time("codec_json_scan", &mut || {
            for r in &records {
                black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(
                    &r.payload,
                ))?);
            }
            Ok(())
        })?;
        time("codec_copy", &mut || {
            for r in &records {
                black_box(black_box(&r.payload).clone());
            }
            Ok(())
        })?;
        println!(
            "scenario=codec events={n} executions={executions} payload_bytes_mean={:.0}",
            bytes as f64 / n as f64
        );
        anyhow::Ok(())
    })
}
