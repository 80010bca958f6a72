//! The recovery benchmark: how long a restart takes when the data folder
//! holds many unfinished executions.
//!
//! It builds a data folder with an in-process engine: 10,000 executions
//! (1,000 with `--quick`) of a workflow of 100 inline `noop` steps followed
//! by an `event` step nothing ever publishes, so each execution journals
//! about 100 events and stays unfinished (about 1,000,000 events in all;
//! 100,000 with `--quick`). The engine is shut down and dropped, then:
//!
//! - `recovery_open`: `Engine::open` on the folder, timed until it returns
//!   (it rebuilds every execution from its newest snapshot and the events
//!   after it, and re-arms what the unfinished wait on). ops are events in
//!   the folder, so `ops_per_s` is events recovered per second; the
//!   percentiles are the one open's duration. A second line
//!   `scenario=recovery_open seconds=<s> events=<n> executions=<n>
//!   unfinished=<n> journal_records=<n> snapshot_every=<n> rss_mb=<n>
//!   folder_mb=<n>` gives the counts, read back from the journal after the
//!   open, the folder's size on disk, and the growth of the process's
//!   resident memory over the open. After a build, this runs in a fresh
//!   process (this binary again, with `--reuse`), so the heap the build
//!   grew is not reused.
//! - `recovery_ready`: the real `retrace serve --data <folder>`, timed from
//!   its spawn until `GET /readyz` answers 200:
//!   `scenario=recovery_ready seconds=<s> listening_s=<s> rss_mb=<n>`
//!   (`listening_s`: until its `listening` line; `rss_mb`: the server's
//!   resident memory once ready).
//!
//! Both opens read a folder that was just written, so it is in the OS page
//! cache: these are warm restarts, not cold ones after a reboot. The
//! snapshot interval is `--snapshot-every` (500 by default, the engine's
//! default and what `retrace serve` uses): with about 100 events an
//! execution, no unfinished execution then has a snapshot, and each is
//! rebuilt from its first event.
//!
//! With `--nats`, the same executions are built on a journal on a
//! `nats-server` this starts (one server; `RETRACE_NATS_SYNC_INTERVAL` as
//! for the tests), the building server gives its partitions up, and a new
//! engine opens the journal: `scenario=recovery_open_nats seconds=<s>
//! journal_open_seconds=<s> events=<n> executions=<n>` (the journal's open
//! takes the partitions' leases; the rest is the engine rebuilding every
//! execution from NATS). That is the handover of a dead server's work,
//! less the lease's end.
//!
//! Run: `cargo build --release -p retrace-api -p retrace-benches &&
//! target/release/recovery --quick`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures::StreamExt;
use retrace_benches::serve::{Server, binary, wait_for_200};
use retrace_benches::{Args, folder_bytes, histogram, mb, record, report, rss_bytes};
use retrace_engine::machine::Status;
use retrace_engine::runtime::{Engine, EngineConfig, StartRequest};
use retrace_engine::store::Storage;
use retrace_engine::store::rebuild::Rebuild;
use retrace_journal_nats::server::NatsServer;
use retrace_journal_nats::{NatsJournal, NatsOptions, Ownership};
use serde_json::{Value, json};

/// The command line: the common flags, where `retrace` is, and the folder.
#[derive(Debug, clap::Parser)]
#[command(
    about = "The recovery benchmark: prints one line of figures per scenario, asserts nothing"
)]
struct BenchArgs {
    #[command(flatten)]
    common: Args,
    /// The `retrace` binary (default: `retrace` next to this executable).
    #[arg(long, value_name = "PATH")]
    retrace: Option<PathBuf>,
    /// The engine's `snapshot_every` while building the folder (and when
    /// opening it): a snapshot every this many events of an execution.
    #[arg(long, default_value_t = 500)]
    snapshot_every: u64,
    /// Measure this data folder (built by an earlier `--keep` run) instead
    /// of building one.
    #[arg(long, value_name = "FOLDER", conflicts_with = "keep")]
    reuse: Option<PathBuf>,
    /// Keep the folder built and print its path, for `--reuse`.
    #[arg(long)]
    keep: bool,
    /// How `recovery_open` rebuilds the executions: `auto` (the engine's
    /// default), `scan` (one pass over the journal) or `reads` (each
    /// execution from its own events).
    #[arg(long, default_value = "auto", value_parser = ["auto", "scan", "reads"])]
    rebuild: String,
    /// End the build with a graceful shutdown, which snapshots every
    /// unfinished execution (a planned restart). By default the build's
    /// engine is dropped without one, as a crash leaves the folder, so the
    /// open replays every history.
    #[arg(long)]
    graceful: bool,
    /// Build and open on a journal on a nats-server this starts (one
    /// server, NATS's own sync) instead of a data folder: the build's
    /// server gives its partitions up (as a stopped server's end), and a
    /// new one opens the journal; prints `recovery_open_nats`.
    #[arg(long, conflicts_with_all = ["reuse", "keep"])]
    nats: bool,
}

fn rebuild_of(name: &str) -> Rebuild {
    match name {
        "scan" => Rebuild::Scan,
        "reads" => Rebuild::Reads,
        _ => Rebuild::Auto,
    }
}

const WORKFLOW: &str = "recovery100";
/// Inline steps before the step that waits forever.
const STEPS: usize = 100;
/// Executions being started at once while building.
const IN_FLIGHT: usize = 256;
/// How long `retrace serve` may take to open the folder and answer.
const READY_PATIENCE: Duration = Duration::from_secs(600);

fn main() -> anyhow::Result<()> {
    let args = <BenchArgs as clap::Parser>::parse();
    args.common.create_dir()?;
    let executions: u64 = if args.common.quick { 1_000 } else { 10_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.nats {
        return rt.block_on(on_nats(executions, &args));
    }
    rt.block_on(async {
        // Declared first, so the folder is removed after everything using it.
        let scratch;
        let dir: PathBuf = match &args.reuse {
            Some(folder) => folder.clone(),
            None => {
                scratch = args.common.scratch()?;
                let dir = scratch.path().to_owned();
                build(&dir, executions, args.snapshot_every, args.graceful).await?;
                if args.keep {
                    let kept = scratch.keep();
                    eprintln!("  kept the folder: {}", kept.display());
                    kept
                } else {
                    dir
                }
            }
        };
        if args.common.wants("recovery_open") {
            if args.reuse.is_some() {
                open(&dir, args.snapshot_every, rebuild_of(&args.rebuild)).await?;
            } else {
                // Not in this process, whose heap the build has grown.
                open_in_fresh_process(&args, &dir).await?;
            }
        }
        if args.common.wants("recovery_ready") {
            let retrace = binary(args.retrace.as_deref(), "retrace", "--retrace")?;
            ready(&retrace, &dir).await?;
        }
        anyhow::Ok(())
    })
}

/// `recovery_open_nats`: the same executions built on a journal on NATS,
/// then a new engine (and journal) opened on it, timed.
async fn on_nats(executions: u64, args: &BenchArgs) -> anyhow::Result<()> {
    let server = NatsServer::start();
    let journal_options = NatsOptions {
        ownership: Some(Ownership::new("recovery-bench")),
        ..NatsOptions::new(server.url())
    };
    let nats_config = |journal: &NatsJournal| EngineConfig {
        storage: Storage::Journal(Arc::new(journal.clone())),
        snapshot_every: args.snapshot_every,
        rebuild: rebuild_of(&args.rebuild),
        ..EngineConfig::folder("unused")
    };
    {
        let journal = NatsJournal::open(journal_options.clone()).await?;
        let started = Instant::now();
        let engine = Engine::open(nats_config(&journal)).await?;
        engine
            .define_json(workflow().to_string().as_bytes())
            .await?;
        let mut starts = futures::stream::iter(0..executions)
            .map(|i| {
                let engine = engine.clone();
                async move {
                    engine
                        .start(StartRequest {
                            workflow: WORKFLOW.into(),
                            input: json!({"i": i}),
                            ..StartRequest::default()
                        })
                        .await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(IN_FLIGHT);
        while let Some(done) = starts.next().await {
            done?;
        }
        drop(starts);
        if args.graceful {
            engine.shutdown().await?;
        }
        drop(engine);
        journal.release().await;
        eprintln!(
            "  built {executions} executions on NATS in {:.1} s ({})",
            started.elapsed().as_secs_f64(),
            if args.graceful {
                "ended with a graceful shutdown"
            } else {
                "ended as a crash would, leases released"
            },
        );
    }
    let t = Instant::now();
    let journal = NatsJournal::open(journal_options).await?;
    let leases = t.elapsed();
    let engine = Engine::open(nats_config(&journal)).await?;
    let took = t.elapsed();
    let stored = engine.read().all_executions().await?;
    let events: u64 = stored.iter().map(|e| e.last_seq).sum();
    engine.shutdown().await?;
    let mut h = histogram();
    record(&mut h, took);
    report("recovery_open_nats", events, took, &h);
    println!(
        "scenario=recovery_open_nats seconds={:.2} journal_open_seconds={:.2} events={events} executions={} snapshot_every={} rebuild={}",
        took.as_secs_f64(),
        leases.as_secs_f64(),
        stored.len(),
        args.snapshot_every,
        args.rebuild,
    );
    Ok(())
}

/// 100 inline steps, then an event step nothing publishes.
fn workflow() -> Value {
    let mut steps: Vec<Value> = (0..STEPS)
        .map(|i| {
            let next = if i + 1 < STEPS {
                format!("s{}", i + 1)
            } else {
                "wait".to_owned()
            };
            json!({"id": format!("s{i}"), "type": "task", "capability": "noop", "next": next})
        })
        .collect();
    steps.push(json!({"id": "wait", "type": "event", "event": {"name": "never"}}));
    json!({"name": WORKFLOW, "steps": steps})
}

fn config(dir: &Path, snapshot_every: u64) -> EngineConfig {
    EngineConfig {
        snapshot_every,
        ..EngineConfig::folder(dir)
    }
}

/// Builds the folder: `executions` executions, each left waiting.
async fn build(
    dir: &Path,
    executions: u64,
    snapshot_every: u64,
    graceful: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let engine = Engine::open(config(dir, snapshot_every)).await?;
    engine
        .define_json(workflow().to_string().as_bytes())
        .await?;
    let mut starts = futures::stream::iter(0..executions)
        .map(|i| {
            let engine = engine.clone();
            async move {
                let started = engine
                    .start(StartRequest {
                        workflow: WORKFLOW.into(),
                        input: json!({"i": i}),
                        ..StartRequest::default()
                    })
                    .await?;
                ensure!(
                    started.status == Status::Running,
                    "execution {} is {:?}, not waiting",
                    started.id,
                    started.status
                );
                anyhow::Ok(())
            }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some(done) = starts.next().await {
        done?;
    }
    drop(starts);
    let stats = engine.journal_stats().unwrap_or_default();
    if graceful {
        engine.shutdown().await?;
    }
    // Every start was acknowledged, so its events are on disk either way;
    // dropping the last handle stops the journal's writer.
    drop(engine);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "  built {executions} executions, {} events, in {secs:.1} s ({:.0} events/s, snapshot_every {snapshot_every}, {})",
        stats.events,
        stats.events as f64 / secs.max(1e-9),
        if graceful {
            "ended with a graceful shutdown"
        } else {
            "ended as a crash would"
        },
    );
    Ok(())
}

/// `recovery_open`: the in-process engine opened on the folder.
async fn open(dir: &Path, snapshot_every: u64, rebuild: Rebuild) -> anyhow::Result<()> {
    let rss_before = rss_bytes(None);
    let t = Instant::now();
    let engine = Engine::open(EngineConfig {
        rebuild,
        ..config(dir, snapshot_every)
    })
    .await?;
    let took = t.elapsed();
    let rss_after = rss_bytes(None);

    // What the folder holds, read back from the journal.
    let stored = engine.read().all_executions().await?;
    let events: u64 = stored.iter().map(|e| e.last_seq).sum();
    let records = engine.read().last_position().await?;
    let unfinished = engine
        .status_counts()
        .iter()
        .filter(|(status, _)| !status.is_terminal())
        .map(|(_, n)| n)
        .sum::<u64>();
    engine.shutdown().await?;
    drop(engine);

    let mut h = histogram();
    record(&mut h, took);
    report("recovery_open", events, took, &h);
    let rss = match (rss_before, rss_after) {
        (Some(b), Some(a)) => mb(a.saturating_sub(b)),
        _ => "unknown".to_owned(),
    };
    println!(
        "scenario=recovery_open seconds={:.2} events={events} executions={} unfinished={unfinished} journal_records={records} snapshot_every={snapshot_every} rebuild={rebuild:?} rss_mb={rss} folder_mb={}",
        took.as_secs_f64(),
        stored.len(),
        folder_bytes(dir).map_or_else(|| "unknown".to_owned(), mb),
    );
    Ok(())
}

/// `recovery_open` in a fresh process: this binary again, with `--reuse`.
async fn open_in_fresh_process(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    let status = tokio::process::Command::new(exe)
        .arg("--dir")
        .arg(&args.common.dir)
        .arg("--reuse")
        .arg(dir)
        .args(["--only", "recovery_open"])
        .args(["--snapshot-every", &args.snapshot_every.to_string()])
        .args(["--rebuild", &args.rebuild])
        .kill_on_drop(true)
        .status()
        .await
        .context("cannot run this benchmark again for recovery_open")?;
    ensure!(
        status.success(),
        "recovery_open (in a fresh process) exited with {status}"
    );
    Ok(())
}

/// `recovery_ready`: `retrace serve` on the folder, until `/readyz` is 200.
async fn ready(retrace: &Path, dir: &Path) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let t = Instant::now();
    let server = Server::start(retrace, dir, READY_PATIENCE).await?;
    wait_for_200(&http, &server.base, "/readyz", READY_PATIENCE)
        .await
        .context("waiting for /readyz")?;
    let took = t.elapsed();
    let rss = rss_bytes(server.pid()).map_or_else(|| "unknown".to_owned(), mb);
    let listening = server.listening_after;
    server.stop().await?;
    println!(
        "scenario=recovery_ready seconds={:.2} listening_s={:.2} rss_mb={rss}",
        took.as_secs_f64(),
        listening.as_secs_f64(),
    );
    Ok(())
}
