//! The search benchmark: finding executions among 1,000,000 by tag, status,
//! workflow and start time, as `GET /v1/executions` and `retrace ls` ask.
//!
//! An in-process engine on a durable folder starts 1,000,000 executions
//! (100,000 with `--quick`) of a one-step inline workflow, each tagged
//! `customer=c<i % 1000>` and `tier=<gold|silver|bronze by i % 3>`; every
//! 100th one is of a second workflow that fails at once (a `decision` with
//! no branch for its value). Then pages of 50, newest first, each timed:
//!
//! - `search_tag`: `tag=customer:c<k>` for random `k` (1,000 matches each);
//! - `search_tag_status`: the same and `status=failed` (about 10 matches);
//! - `search_status`: `status=failed` (10,000 matches);
//! - `search_workflow`: `workflow=<the failing one>` (no index: a scan that
//!   stops at 50 matches, one in 100 executions);
//! - `search_start_range`: a start-time range over the middle tenth (no
//!   index: a scan).
//!
//! Each prints `scenario=<name> ops_per_s=<n> p50_us=<n> p99_us=<n>
//! p999_us=<n>`; `search_load` prints how long the starts took and the
//! process's resident memory after them.
//!
//! Run: `cargo run --release -p retrace-benches --bin search -- --quick`

use std::time::Instant;

use anyhow::ensure;
use futures::StreamExt;
use retrace_benches::{Args, Picker, histogram, mb, record, report, rss_bytes};
use retrace_engine::machine::Status;
use retrace_engine::runtime::{Engine, EngineConfig, ListFilter, StartRequest};
use serde_json::json;

const IN_FLIGHT: usize = 256;

/// A scenario's filter, drawn for each page.
type FilterOf = Box<dyn Fn(&mut Picker) -> ListFilter>;
const PAGES: u64 = 1_000;
const CUSTOMERS: u64 = 1_000;

fn tags(i: u64) -> std::collections::BTreeMap<String, String> {
    let tier = ["gold", "silver", "bronze"][(i % 3) as usize];
    [
        ("customer".to_owned(), format!("c{}", i % CUSTOMERS)),
        ("tier".to_owned(), tier.to_owned()),
    ]
    .into_iter()
    .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let executions: u64 = if args.quick { 100_000 } else { 1_000_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = args.scratch()?;
        let engine = Engine::open(EngineConfig::folder(dir.path())).await?;
        for workflow in [
            json!({"name": "ok", "steps": [{"id": "s", "type": "task", "capability": "noop"}]}),
            json!({"name": "bad", "steps": [
                {"id": "d", "type": "decision", "decision": {"expression": "1", "branches": {"2": "e"}}},
                {"id": "e", "type": "task", "capability": "noop"}]}),
        ] {
            engine.define_json(workflow.to_string().as_bytes()).await?;
        }
        let rss_before = rss_bytes(None);
        let t0 = Instant::now();
        let mut starts = futures::stream::iter(0..executions)
            .map(|i| {
                let engine = engine.clone();
                async move {
                    let workflow = if i % 100 == 99 { "bad" } else { "ok" };
                    let started = engine
                        .start(StartRequest {
                            workflow: workflow.into(),
                            input: json!({}),
                            tags: tags(i),
                            ..StartRequest::default()
                        })
                        .await?;
                    anyhow::Ok(started.id)
                }
            })
            .buffered(IN_FLIGHT);
        let mut ids = Vec::with_capacity(executions as usize);
        while let Some(id) = starts.next().await {
            ids.push(id?);
        }
        drop(starts);
        let loading = t0.elapsed();
        let rss = match (rss_before, rss_bytes(None)) {
            (Some(b), Some(a)) => mb(a.saturating_sub(b)),
            _ => "unknown".to_owned(),
        };
        println!(
            "scenario=search_load executions={executions} seconds={:.1} rss_mb={rss}",
            loading.as_secs_f64()
        );
        let counts = engine.status_counts();
        ensure!(
            counts.get(&Status::Failed).copied().unwrap_or(0) == executions / 100,
            "expected {} failed executions, found {counts:?}",
            executions / 100
        );

        let mut picker = Picker::new(0x5eed);
        let customer = |picker: &mut Picker| {
            vec![(
                "customer".to_owned(),
                format!("c{}", picker.below(CUSTOMERS)),
            )]
        };
        let mid = ids[ids.len() / 2];
        let mid_ms = engine
            .executions_where(
                &ListFilter {
                    id_prefix: Some(mid.to_string().replace('-', "")),
                    ..ListFilter::default()
                },
                None,
                1,
            )
            .first()
            .map_or(0, |s| s.started_at_ms);
        let scenarios: Vec<(&str, FilterOf)> = vec![
            (
                "search_tag",
                Box::new(move |p| ListFilter {
                    tags: customer(p),
                    ..ListFilter::default()
                }),
            ),
            (
                "search_tag_status",
                Box::new(move |p| ListFilter {
                    tags: customer(p),
                    statuses: vec![Status::Failed],
                    ..ListFilter::default()
                }),
            ),
            (
                "search_status",
                Box::new(|_| ListFilter {
                    statuses: vec![Status::Failed],
                    ..ListFilter::default()
                }),
            ),
            (
                "search_workflow",
                Box::new(|_| ListFilter {
                    workflow: Some("bad".to_owned()),
                    ..ListFilter::default()
                }),
            ),
            (
                "search_start_range",
                Box::new(move |_| ListFilter {
                    started_from_ms: Some(mid_ms),
                    started_to_ms: Some(mid_ms.saturating_add(1_000)),
                    ..ListFilter::default()
                }),
            ),
        ];
        for (name, filter) in scenarios {
            if !args.wants(name) {
                continue;
            }
            let mut h = histogram();
            let t0 = Instant::now();
            for _ in 0..PAGES {
                let filter = ListFilter {
                    newest_first: true,
                    ..filter(&mut picker)
                };
                let t = Instant::now();
                let page = engine.executions_where(&filter, None, 50);
                record(&mut h, t.elapsed());
                ensure!(
                    page.iter().all(|s| filter.tags.iter().all(|(k, v)| s.tags.get(k) == Some(v))),
                    "{name}: a page with an execution the filter does not keep"
                );
            }
            report(name, PAGES, t0.elapsed(), &h);
        }
        anyhow::Ok(())
    })
}
