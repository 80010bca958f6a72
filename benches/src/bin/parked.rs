//! The parked-executions benchmark: what many executions waiting on an
//! external event cost in memory, and how fast a published event reaches
//! one of them.
//!
//! An in-process engine on a durable folder starts 100,000 executions
//! (10,000 with `--quick`) of a one-step workflow
//! `{"id":"wait","type":"event","event":{"name":"ping","correlation":"input.k"}}`,
//! each with its own `input.k` (`"k<i>"`), so each stays parked on `ping`.
//!
//! - `parked`: `scenario=parked executions=<n> rss_mb=<n>
//!   rss_per_execution_bytes=<n> starts_per_s=<n>`: this process's resident
//!   memory (`VmRSS`) once all are parked minus before the first start
//!   (everything the process holds for them: the engine's live states and
//!   indexes, and sled's cache of what was just written), per execution;
//!   `folder_mb` is the data folder's size on disk then.
//! - `parked_publish`: `engine.publish("ping", payload, Some(k))` for 1,000
//!   random distinct `k`, one after the other, each timed from the call until
//!   `engine.wait_until_ended` of the execution it reached returns (the
//!   execution completes with the event). ops are publishes.
//! - `parked_publish_nomatch`: 100 publishes of `ping` with a `k` nobody
//!   waits for, each timed until the call returns (it reaches nobody).
//! - `parked_list`: what the execution list (`GET /v1/executions`, the
//!   dashboard's first page) costs with all of them in the engine: 1,000
//!   pages of 50, newest first, cycling through no filter, an id prefix, a
//!   start-time range, and a status nobody has (`completed`, before the
//!   publishes: the whole index scanned for nothing), each timed. ops are
//!   pages.
//!
//! `--cache-mb <n>` sets the journal's page cache (sled's `cache_capacity`,
//! 1,024 MiB by default, `retrace serve --cache-mb`), to tell the engine's
//! own memory from the pages sled keeps.
//!
//! Run: `cargo run --release -p retrace-benches --bin parked -- --quick`

use std::collections::HashSet;
use std::time::Instant;

use anyhow::ensure;
use futures::StreamExt;
use retrace_benches::{Args, Picker, folder_bytes, histogram, mb, record, report, rss_bytes};
use retrace_engine::machine::Status;
use retrace_engine::runtime::{Engine, EngineConfig, ListFilter, StartRequest};
use retrace_engine::store::Storage;
use serde_json::json;

const WORKFLOW: &str = "parked";
/// Executions being started at once.
const IN_FLIGHT: usize = 256;
const PUBLISHES: u64 = 1_000;
const NO_MATCH: u64 = 100;
const LIST_PAGES: u64 = 1_000;

/// The command line: the common flags and the journal's cache.
#[derive(Debug, clap::Parser)]
#[command(
    about = "The parked-executions benchmark: prints one line of figures per scenario, asserts nothing"
)]
struct BenchArgs {
    #[command(flatten)]
    common: Args,
    /// The journal's page cache, in MiB (sled's default: 1,024).
    #[arg(long, value_name = "MIB")]
    cache_mb: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let bench = <BenchArgs as clap::Parser>::parse();
    bench.common.create_dir()?;
    let args = bench.common;
    let executions: u64 = if args.quick { 10_000 } else { 100_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = args.scratch()?;
        let mut config = EngineConfig::folder(dir.path());
        if let (Some(mb), Storage::Folder { options, .. }) = (bench.cache_mb, &mut config.storage) {
            options.cache_bytes = mb << 20;
        }
        let engine = Engine::open(config).await?;
        let workflow = json!({"name": WORKFLOW, "steps": [
            {"id": "wait", "type": "event", "event": {"name": "ping", "correlation": "input.k"}}
        ]});
        engine.define_json(workflow.to_string().as_bytes()).await?;

        // Park them all.
        let rss_before = rss_bytes(None);
        let started = Instant::now();
        let mut ids = Vec::with_capacity(executions as usize);
        let mut starts = futures::stream::iter(0..executions)
            .map(|i| {
                let engine = engine.clone();
                async move {
                    let started = engine
                        .start(StartRequest {
                            workflow: WORKFLOW.into(),
                            input: json!({"k": key(i)}),
                            ..StartRequest::default()
                        })
                        .await?;
                    ensure!(
                        started.status == Status::Running,
                        "execution {} is {:?}, not parked",
                        started.id,
                        started.status
                    );
                    anyhow::Ok(started.id)
                }
            })
            .buffered(IN_FLIGHT);
        while let Some(id) = starts.next().await {
            ids.push(id?);
        }
        drop(starts);
        let parking = started.elapsed();
        let rss_after = rss_bytes(None);
        if args.wants("parked") {
            let (rss_mb, per_execution) = match (rss_before, rss_after) {
                (Some(b), Some(a)) => {
                    let grown = a.saturating_sub(b);
                    (mb(grown), (grown / executions).to_string())
                }
                _ => ("unknown".to_owned(), "unknown".to_owned()),
            };
            let folder = folder_bytes(dir.path()).map_or_else(|| "unknown".to_owned(), mb);
            println!(
                "scenario=parked executions={executions} rss_mb={rss_mb} rss_per_execution_bytes={per_execution} starts_per_s={:.0} folder_mb={folder}",
                executions as f64 / parking.as_secs_f64().max(1e-9),
            );
        }

        // The list, as the dashboard asks for it.
        if args.wants("parked_list") {
            let mid = &ids[ids.len() / 2];
            let prefix: String = mid.to_string().replace('-', "").chars().take(6).collect();
            let filters = [
                ListFilter::default(),
                ListFilter {
                    id_prefix: Some(prefix),
                    ..ListFilter::default()
                },
                ListFilter {
                    started_from_ms: Some(0),
                    started_to_ms: Some(u64::MAX),
                    ..ListFilter::default()
                },
                ListFilter {
                    statuses: vec![Status::Completed],
                    ..ListFilter::default()
                },
            ];
            let mut h = histogram();
            let t0 = Instant::now();
            for page in 0..LIST_PAGES {
                let filter = ListFilter {
                    newest_first: true,
                    ..filters[page as usize % filters.len()].clone()
                };
                let t = Instant::now();
                let listed = engine.executions_where(&filter, None, 50);
                record(&mut h, t.elapsed());
                ensure!(
                    !filter.statuses.is_empty() || !listed.is_empty(),
                    "an empty page for {filter:?}"
                );
            }
            report("parked_list", LIST_PAGES, t0.elapsed(), &h);
        }

        // Publishes nobody waits for: the cost of looking.
        if args.wants("parked_publish_nomatch") {
            let mut h = histogram();
            let t0 = Instant::now();
            for i in 0..NO_MATCH {
                let t = Instant::now();
                let reached = engine
                    .publish("ping", json!({"n": i}), Some(json!(format!("nobody{i}"))))
                    .await?;
                record(&mut h, t.elapsed());
                ensure!(reached.is_empty(), "a publish to nobody reached {reached:?}");
            }
            report("parked_publish_nomatch", NO_MATCH, t0.elapsed(), &h);
        }

        // Publishes that reach one parked execution each.
        if args.wants("parked_publish") {
            let mut picker = Picker::new(0x5eed);
            let mut picked = HashSet::new();
            while (picked.len() as u64) < PUBLISHES.min(executions) {
                picked.insert(picker.below(executions));
            }
            let mut h = histogram();
            let t0 = Instant::now();
            for &i in &picked {
                let t = Instant::now();
                let reached = engine
                    .publish("ping", json!({"n": i}), Some(json!(key(i))))
                    .await?;
                ensure!(
                    reached.as_slice() == [ids[i as usize]],
                    "publishing to {} reached {reached:?}",
                    key(i)
                );
                let state = engine.wait_until_ended(reached[0]).await?;
                record(&mut h, t.elapsed());
                ensure!(
                    state.status == Status::Completed,
                    "execution {} ended {:?}",
                    reached[0],
                    state.status
                );
            }
            report("parked_publish", picked.len() as u64, t0.elapsed(), &h);
        }
        engine.shutdown().await?;
        anyhow::Ok(())
    })
}

/// The correlation value execution `i` waits for.
fn key(i: u64) -> String {
    format!("k{i}")
}
