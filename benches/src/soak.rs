//! The soak benchmark: a real `retrace serve` under a mixed load for a
//! long time, its resident memory sampled all along. It talks to the
//! server only over HTTP, from this one process, and prints figures.
//!
//! The load, for `--duration` (5 minutes by default, one minute with
//! `--quick`; `--duration 3600s` is the one-hour soak):
//!
//! - **Executions**, started at a steady `--rate` a second (`POST
//!   /v1/executions`, at most `IN_FLIGHT` starts waiting for an answer;
//!   starts beyond that are counted as `behind`, not queued). Two in three
//!   run `soak_inline` (three built-in `transform` steps, done in the start's
//!   own append); one in three runs `soak_tasks` (a task step, a
//!   `transform`, a task step), whose tasks an agent over HTTP claims with
//!   long polls and completes. Every input carries a `--payload-bytes`
//!   string that each step passes on, so events have a realistic size.
//! - **Followers**: every tenth execution is followed on its own stream
//!   (`GET /v1/executions/{id}/events/stream`) to its terminal event, which
//!   must be `execution_completed`.
//! - **Readers** (`--readers`): clients of the engine-wide stream (`GET
//!   /v1/events/stream`, unfiltered, or filtered by type or by workflow)
//!   that read everything at once, and come and go: each stays for about
//!   `--reader-life`, leaves, and comes back with `Last-Event-ID` (or, one
//!   time in five, as a new client from the newest position seen). Ids must
//!   rise strictly, or the run fails.
//! - **Slow readers** (`--slow-readers`): clients of the unfiltered
//!   engine-wide stream, over plain TCP with a small receive buffer, that
//!   read its first few KiB and then stop reading for about `--stall` while
//!   the connection stays open, then close and come back. Half start from
//!   the first event (the server catches them up from the journal), half
//!   from the newest position seen (they fall behind the live events).
//!
//! **The control server.** A journal that grows costs memory by design:
//! sled keeps the pages it writes in its page cache (up to its
//! `cache_capacity`, 1 GiB by default), and the engine indexes every
//! execution. To tell that from what the clients cost, a second `retrace
//! serve` (unless `--no-control`) gets the same executions at the same rate,
//! with its own agent, and no stream client at all. Its growth after the
//! warm-up is the journal's; the server's growth less the control's is the
//! clients'.
//!
//! Both servers' resident memory (`VmRSS` of `/proc/<pid>/status`) is
//! sampled every `--sample-every` (5 s) and printed to stderr with the
//! counters. After the load, every client leaves and the memory is sampled
//! for `--settle` (15 s) more. Two lines on stdout:
//!
//! - `scenario=soak ops_per_s=<n> p50_us=<n> p99_us=<n> p999_us=<n>`:
//!   executions started per second and the start requests' latency.
//! - `scenario=soak duration_s=<n> warmup_s=<n> rss_idle_mb=<n>
//!   rss_warm_mb=<n> rss_max_mb=<n> rss_final_mb=<n> drift_pct=<n>
//!   max_over_warm_pct=<n> rss_after_mb=<n> control_rss_warm_mb=<n>
//!   control_rss_final_mb=<n> journal_growth_mb=<n> clients_drift_pct=<n>
//!   clients_max_over_warm_pct=<n> executions=<n> completed=<n>
//!   executions_per_s=<n> behind=<n> frames=<n> frames_per_s=<n>
//!   reconnects=<n> stalls=<n> followed=<n> tasks=<n> folder_mb=<n>
//!   server_cpu_s=<n>`. `rss_idle` is before any load; `rss_warm` the first
//!   sample at or after `--warmup` (a third of the duration, at most 5
//!   minutes); `rss_max` the largest sample from there on, and
//!   `max_over_warm_pct` how far it is above `rss_warm`; `rss_final` the
//!   last sample under load, and `drift_pct` how far it is from `rss_warm`;
//!   `rss_after` the last sample once every client has left. The `control_`
//!   figures are the control server's, `journal_growth` its growth after the
//!   warm-up; `clients_drift_pct` and `clients_max_over_warm_pct` are
//!   `drift_pct` and `max_over_warm_pct` of the server's memory less the
//!   control's growth at each sample (absent with `--no-control`).
//!   `folder_mb` is the server's data folder on disk at the end.
//!
//! It fails (exit code 1) if an execution fails, a frame comes out of
//! order, a follower's stream ends without `execution_completed`, a server
//! exits, or a server's stop does not exit 0. It asserts nothing about time
//! or memory: `api/tests/soak.rs` runs it for two minutes and checks the
//! memory.
//!
//! Run: `cargo build --release -p retrace-api -p retrace-benches &&
//! target/release/soak --duration 3600s` (the `soak` binary is [`run`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::serve::{Server, binary, wait_for_200};
use crate::{Args, Picker, cpu_seconds, histogram, mb, parse_duration, report, rss_bytes};
use anyhow::{Context, bail, ensure};
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// The command line: the common flags, where `retrace` is, and the load.
#[derive(Debug, clap::Parser)]
#[command(about = "The soak benchmark: prints figures, asserts nothing about time or memory")]
pub struct SoakArgs {
    #[command(flatten)]
    common: Args,
    /// The `retrace` binary (default: `retrace` next to this executable).
    #[arg(long, value_name = "PATH")]
    retrace: Option<PathBuf>,
    /// How long the load runs: `90s`, `30m`, `1h` (a bare number is
    /// seconds). Default 300s, 60s with `--quick`; `3600s` is the one-hour
    /// soak.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// How much of the run is warm-up, whose memory is not compared
    /// (default: a third of the duration, at most 5 minutes).
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// How often the server's memory is sampled.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    sample_every: Duration,
    /// How long memory is sampled after every client has left.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    settle: Duration,
    /// Executions started per second.
    #[arg(long, default_value_t = 40)]
    rate: u64,
    /// Readers of the engine-wide stream that read at once (they come and go).
    #[arg(long, default_value_t = 200)]
    readers: usize,
    /// Readers of the engine-wide stream that stop reading for a while.
    #[arg(long, default_value_t = 50)]
    slow_readers: usize,
    /// About how long a reader stays before it leaves and comes back.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    reader_life: Duration,
    /// About how long a slow reader stops reading before it closes.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    stall: Duration,
    /// The size of the string every execution's input carries.
    #[arg(long, default_value_t = 1024)]
    payload_bytes: usize,
    /// Concurrent long-poll loops of the agent that runs the tasks.
    #[arg(long, default_value_t = 4)]
    agent_loops: usize,
    /// No control server (see the module's documentation): the figures
    /// then do not tell the journal's growth from the clients' cost.
    #[arg(long)]
    no_control: bool,
    /// How many executions `stream_clients` starts before its clients come,
    /// for its slow readers to catch up on.
    #[arg(long, default_value_t = 10_000)]
    fill: u64,
}

const INLINE: &str = "soak_inline";
const TASKS: &str = "soak_tasks";
const CAPABILITY: &str = "soak";
/// Starts waiting for an answer at once, at most.
const IN_FLIGHT: usize = 256;
/// How long a server may take to start.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long the clients may take to leave once told to.
const LEAVE_PATIENCE: Duration = Duration::from_secs(60);
/// A request may take this long (a long poll waits `POLL_WAIT_MS` of it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one of the agent's long polls waits for a task.
const POLL_WAIT_MS: u64 = 1_000;
/// What a slow reader reads before it stops reading.
const SLOW_READ_BYTES: usize = 4 * 1024;
/// A slow reader's socket receive buffer (the kernel may round it up).
const SLOW_RECV_BUFFER: u32 = 4 * 1024;

/// What a `soak` scenario measured (absent when only `stream_clients` ran).
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// The `scenario=soak duration_s=…` line, as printed.
    pub line: String,
    /// Executions that completed.
    pub completed: u64,
    /// The most the server's memory, less the control server's growth, rose
    /// above its figure after the warm-up, in %; `None` without a control.
    pub clients_max_over_warm_pct: Option<f64>,
}

/// Runs the scenarios `args` selects and prints their figures.
pub fn run(args: SoakArgs) -> anyhow::Result<Option<Figures>> {
    args.common.create_dir()?;
    let retrace = binary(args.retrace.as_deref(), "retrace", "--retrace")?;
    let duration = args.duration.unwrap_or(if args.common.quick {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(300)
    });
    let warmup = args
        .warmup
        .unwrap_or_else(|| (duration / 3).min(Duration::from_secs(300)));
    ensure!(args.rate > 0, "--rate must be > 0");
    ensure!(
        warmup < duration,
        "--warmup must be shorter than --duration"
    );
    ensure!(
        !args.sample_every.is_zero() && args.sample_every <= warmup.max(Duration::from_secs(1)),
        "--sample-every must be > 0 and at most the warm-up"
    );
    ensure!(args.agent_loops > 0, "--agent-loops must be > 0");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        if args.common.wants("stream_clients") {
            stream_clients(&args, &retrace).await?;
        }
        match args.common.wants("soak") {
            true => soak(&args, &retrace, duration, warmup).await.map(Some),
            false => Ok(None),
        }
    })
}

/// Counters every part of the load bumps.
#[derive(Debug, Default)]
struct Counters {
    started: AtomicU64,
    behind: AtomicU64,
    completed: AtomicU64,
    tasks: AtomicU64,
    frames: AtomicU64,
    reconnects: AtomicU64,
    stalls: AtomicU64,
    followed: AtomicU64,
    /// The newest engine-wide position any reader has seen.
    newest: AtomicU64,
}

impl Counters {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the load shares: the HTTP client, the server, the counters and the
/// stop signal.
#[derive(Debug, Clone)]
struct Load {
    http: reqwest::Client,
    base: String,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
    payload: Arc<str>,
}

impl Load {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once the load is told to stop.
    async fn stopping(&self) {
        let mut stop = self.stop.clone();
        // An error means the sender is gone: stopping too.
        let _ = stop.wait_for(|s| *s).await;
    }

    /// `POST` a JSON body; the status and the JSON answer (`null` if none).
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(StatusCode, Value)> {
        let url = self.url(path);
        let response = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("POST {url}: reading the answer"))?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

/// One server under load: the server, its load and the load's tasks.
struct Side {
    server: Server,
    pid: u32,
    load: Load,
    stop: watch::Sender<bool>,
    agent: String,
    parts: JoinSet<anyhow::Result<Option<Histogram<u64>>>>,
    rss_idle: u64,
    cpu_before: Option<f64>,
}

impl Side {
    /// A fresh server in `data` with both workflows defined and the agent
    /// registered; nothing runs yet.
    async fn start(args: &SoakArgs, retrace: &Path, data: &Path) -> anyhow::Result<Side> {
        let server = Server::start(retrace, data, PATIENCE).await?;
        let pid = server.pid().context("the server has no process id")?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(usize::MAX)
            .build()?;
        wait_for_200(&http, &server.base, "/healthz", PATIENCE).await?;
        let (stop, stopped) = watch::channel(false);
        let load = Load {
            http,
            base: server.base.clone(),
            counters: Arc::new(Counters::default()),
            stop: stopped,
            payload: "x".repeat(args.payload_bytes).into(),
        };
        define(&load).await?;
        let agent = register(&load, args.agent_loops).await?;
        let rss_idle = rss_bytes(Some(pid)).context("cannot read the server's VmRSS")?;
        Ok(Side {
            cpu_before: cpu_seconds(Some(pid)),
            server,
            pid,
            load,
            stop,
            agent,
            parts: JoinSet::new(),
            rss_idle,
        })
    }

    /// Executions: the starts and the agent that runs their tasks.
    fn run_executions(&mut self, args: &SoakArgs, follow: bool) {
        for _ in 0..args.agent_loops {
            let (load, agent) = (self.load.clone(), self.agent.clone());
            self.parts
                .spawn(async move { poll_loop(&load, &agent).await.map(|()| None) });
        }
        let (load, rate) = (self.load.clone(), args.rate);
        self.parts
            .spawn(async move { start_loop(&load, rate, follow).await.map(Some) });
    }

    /// The stream clients: the completions' counter, the readers and the
    /// slow readers.
    fn run_clients(&mut self, args: &SoakArgs) {
        let load = self.load.clone();
        self.parts
            .spawn(async move { count_completions(&load).await.map(|()| None) });
        for i in 0..args.readers {
            let (load, life) = (self.load.clone(), args.reader_life);
            self.parts
                .spawn(async move { reader(&load, i, life).await.map(|()| None) });
        }
        for i in 0..args.slow_readers {
            let (load, stall) = (self.load.clone(), args.stall);
            self.parts
                .spawn(async move { slow_reader(&load, i, stall).await.map(|()| None) });
        }
    }

    fn rss(&self) -> anyhow::Result<u64> {
        rss_bytes(Some(self.pid))
            .with_context(|| format!("the server has exited:\n{}", self.server.tail()))
    }

    /// Tells the load to stop and waits for every part; the starts' latency.
    async fn leave(&mut self) -> anyhow::Result<Histogram<u64>> {
        let _ = self.stop.send(true);
        let mut starts = None;
        let left = tokio::time::timeout(LEAVE_PATIENCE, async {
            while let Some(joined) = self.parts.join_next().await {
                match joined {
                    Ok(Ok(Some(h))) => starts = Some(h),
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(e) => {
                        return Err(anyhow::Error::new(e).context("a part of the load panicked"));
                    }
                }
            }
            anyhow::Ok(())
        })
        .await;
        match left {
            Ok(done) => done?,
            Err(_) => bail!("the clients did not leave within {LEAVE_PATIENCE:?}"),
        }
        if let Err(e) = unregister(&self.load, &self.agent).await {
            eprintln!("soak: {e:#}");
        }
        starts.context("the starts' figures are missing")
    }

    fn cpu(&self) -> String {
        match (self.cpu_before, cpu_seconds(Some(self.pid))) {
            (Some(b), Some(a)) => format!("{:.1}", a - b),
            _ => "unknown".to_owned(),
        }
    }
}

/// The first failure of a part of the load (waits for one).
async fn failed(parts: &mut JoinSet<anyhow::Result<Option<Histogram<u64>>>>) -> anyhow::Error {
    match parts.join_next().await {
        Some(Ok(Err(e))) => e,
        Some(Ok(Ok(_))) => anyhow::anyhow!("a part of the load ended early"),
        Some(Err(e)) => anyhow::Error::new(e).context("a part of the load panicked"),
        None => std::future::pending().await,
    }
}

/// Memory samples after the warm-up, and what they say.
#[derive(Debug)]
struct Memory {
    warm: u64,
    max: u64,
    last: u64,
}

impl Memory {
    fn of(samples: &[(Duration, u64)], warmup: Duration) -> anyhow::Result<Memory> {
        let judged: Vec<u64> = samples
            .iter()
            .filter(|(at, _)| *at >= warmup)
            .map(|&(_, rss)| rss)
            .collect();
        let (Some(&warm), Some(&last)) = (judged.first(), judged.last()) else {
            bail!("no memory sample after the warm-up");
        };
        let max = judged.iter().copied().max().unwrap_or(warm);
        Ok(Memory { warm, max, last })
    }

    /// How far `x` is above the warm figure, in % of it.
    fn pct(&self, x: i64) -> f64 {
        (x - self.warm as i64) as f64 / self.warm as f64 * 100.0
    }
}

async fn soak(
    args: &SoakArgs,
    retrace: &Path,
    duration: Duration,
    warmup: Duration,
) -> anyhow::Result<Figures> {
    // Declared before the servers, so they are removed after the servers stop.
    let data = args.common.scratch()?;
    let control_data = args.common.scratch()?;
    let mut main = Side::start(args, retrace, data.path()).await?;
    let mut control = match args.no_control {
        true => None,
        false => Some(Side::start(args, retrace, control_data.path()).await?),
    };
    eprintln!(
        "soak: server pid {} (idle rss_mb={}), control server pid {}",
        main.pid,
        mb(main.rss_idle),
        control
            .as_ref()
            .map_or("none".to_owned(), |c| c.pid.to_string())
    );
    main.run_clients(args);
    main.run_executions(args, true);
    if let Some(control) = control.as_mut() {
        control.run_executions(args, false);
    }

    // Sample until the end, or until a part of the load fails.
    let began = Instant::now();
    // (since the start, the server's RSS, the control server's RSS)
    let mut samples: Vec<(Duration, u64, Option<u64>)> = Vec::new();
    let mut ticks = tokio::time::interval(args.sample_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            e = failed(&mut main.parts) => return Err(e),
            e = async {
                match control.as_mut() {
                    Some(c) => failed(&mut c.parts).await,
                    None => std::future::pending().await,
                }
            } => return Err(e.context("the control server's load")),
        }
        let at = began.elapsed();
        let rss = main.rss()?;
        let control_rss = control.as_ref().map(Side::rss).transpose()?;
        samples.push((at, rss, control_rss));
        let c = &main.load.counters;
        eprintln!(
            "soak: t={:>5.0}s rss_mb={} control_rss_mb={} started={} completed={} tasks={} frames={} reconnects={} stalls={} followed={} behind={}",
            at.as_secs_f64(),
            mb(rss),
            control_rss.map_or("-".to_owned(), mb),
            Counters::get(&c.started),
            Counters::get(&c.completed),
            Counters::get(&c.tasks),
            Counters::get(&c.frames),
            Counters::get(&c.reconnects),
            Counters::get(&c.stalls),
            Counters::get(&c.followed),
            Counters::get(&c.behind),
        );
        if at >= duration {
            break;
        }
    }
    let elapsed = began.elapsed();

    // Every client leaves; the memory is watched a while longer.
    let starts = main.leave().await?;
    if let Some(control) = control.as_mut() {
        control.leave().await?;
    }
    let mut after = main.rss()?;
    let settled = Instant::now();
    while settled.elapsed() < args.settle {
        tokio::time::sleep(Duration::from_secs(1).min(args.settle)).await;
        after = main.rss()?;
        eprintln!(
            "soak: clients gone for {:>3.0}s rss_mb={}",
            settled.elapsed().as_secs_f64(),
            mb(after)
        );
    }
    let server_cpu = main.cpu();
    let folder = crate::folder_bytes(data.path());
    let c = main.load.counters.clone();
    let rss_idle = main.rss_idle;
    main.server.stop().await?;
    if let Some(control) = control {
        control.server.stop().await?;
    }

    let memory = Memory::of(
        &samples
            .iter()
            .map(|&(at, rss, _)| (at, rss))
            .collect::<Vec<_>>(),
        warmup,
    )?;
    let started = Counters::get(&c.started);
    report("soak", started, elapsed, &starts);
    let secs = elapsed.as_secs_f64();
    let mut line = format!(
        "scenario=soak duration_s={:.0} warmup_s={:.0} rss_idle_mb={} rss_warm_mb={} rss_max_mb={} rss_final_mb={} drift_pct={:.1} max_over_warm_pct={:.1} rss_after_mb={}",
        secs,
        warmup.as_secs_f64(),
        mb(rss_idle),
        mb(memory.warm),
        mb(memory.max),
        mb(memory.last),
        memory.pct(memory.last as i64),
        memory.pct(memory.max as i64),
        mb(after),
    );
    // The control server's growth is what the journal's growth costs
    // (sled's page cache, the engine's index of executions): taken off the
    // server's, what is left is what its clients cost.
    let control_samples: Vec<(Duration, u64)> = samples
        .iter()
        .filter_map(|&(at, _, control)| Some((at, control?)))
        .collect();
    let mut clients_max_over_warm_pct = None;
    if control_samples.len() == samples.len() && !samples.is_empty() {
        let control_memory = Memory::of(&control_samples, warmup)?;
        let clients =
            |rss: u64, control: u64| rss as i64 - (control as i64 - control_memory.warm as i64);
        let clients_max = samples
            .iter()
            .filter(|(at, _, _)| *at >= warmup)
            .filter_map(|&(_, rss, control)| Some(clients(rss, control?)))
            .max()
            .unwrap_or(memory.warm as i64);
        line.push_str(&format!(
            " control_rss_warm_mb={} control_rss_final_mb={} journal_growth_mb={} clients_drift_pct={:.1} clients_max_over_warm_pct={:.1}",
            mb(control_memory.warm),
            mb(control_memory.last),
            mb(control_memory.last.saturating_sub(control_memory.warm)),
            memory.pct(clients(memory.last, control_memory.last)),
            memory.pct(clients_max),
        ));
        clients_max_over_warm_pct = Some(memory.pct(clients_max));
    }
    line.push_str(&format!(
        " executions={started} completed={} executions_per_s={:.1} behind={} frames={} frames_per_s={:.0} reconnects={} stalls={} followed={} tasks={} folder_mb={} server_cpu_s={server_cpu}",
        Counters::get(&c.completed),
        Counters::get(&c.completed) as f64 / secs,
        Counters::get(&c.behind),
        Counters::get(&c.frames),
        Counters::get(&c.frames) as f64 / secs,
        Counters::get(&c.reconnects),
        Counters::get(&c.stalls),
        Counters::get(&c.followed),
        Counters::get(&c.tasks),
        folder.map_or("unknown".to_owned(), mb),
    ));
    println!("{line}");
    Ok(Figures {
        line,
        completed: Counters::get(&c.completed),
        clients_max_over_warm_pct,
    })
}

/// The `stream_clients` scenario: the server's memory before, during and
/// after stream clients, one kind at a time, under a steady load.
async fn stream_clients(args: &SoakArgs, retrace: &Path) -> anyhow::Result<()> {
    let data = args.common.scratch()?;
    let mut side = Side::start(args, retrace, data.path()).await?;
    let filled = fill(&side.load, args.fill).await?;
    side.run_executions(args, false);
    let (_, base) = watch_memory(&mut side, args.settle, "load only").await?;

    // Slow readers from the first event: the journal to catch up on.
    let (release, released) = watch::channel(false);
    let mut clients: JoinSet<anyhow::Result<u64>> = JoinSet::new();
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel::<()>(1);
    for _ in 0..args.slow_readers {
        let (load, mut released, ready) = (side.load.clone(), released.clone(), ready_tx.clone());
        clients.spawn(async move {
            let stream = open_stalled(&load, 0).await?;
            let _ = ready.send(()).await;
            let _ = released.wait_for(|r| *r).await;
            drop(stream);
            Ok(0)
        });
    }
    for _ in 0..args.slow_readers {
        tokio::select! {
            _ = ready.recv() => {}
            e = failed(&mut side.parts) => return Err(e),
            Some(joined) = clients.join_next() => {
                joined.context("a slow reader panicked")??;
                bail!("a slow reader ended before it stalled");
            }
        }
    }
    let (slow, _) = watch_memory(&mut side, PHASE, "slow readers stalled").await?;
    let _ = release.send(true);
    while let Some(joined) = clients.join_next().await {
        joined.context("a slow reader panicked")??;
    }
    let (_, slow_closed) = watch_memory(&mut side, args.settle, "slow readers gone").await?;

    // Readers that read everything as it comes, from the newest event.
    let head = head_position(&side.load).await?;
    let (release, released) = watch::channel(false);
    for _ in 0..args.readers {
        let (load, released) = (side.load.clone(), released.clone());
        clients.spawn(async move { read_live(&load, head, released).await });
    }
    let (readers, _) = watch_memory(&mut side, PHASE, "readers reading").await?;
    let _ = release.send(true);
    let mut frames = 0;
    while let Some(joined) = clients.join_next().await {
        frames += joined.context("a reader panicked")??;
    }
    let (_, readers_closed) = watch_memory(&mut side, args.settle, "readers gone").await?;
    side.leave().await?;
    side.server.stop().await?;
    println!(
        "scenario=stream_clients journal_events={filled} rss_idle_mb={} rss_base_mb={} rss_slow_mb={} rss_slow_closed_mb={} rss_readers_mb={} rss_readers_closed_mb={} slow_readers={} readers={} frames={frames}",
        mb(side.rss_idle),
        mb(base),
        mb(slow),
        mb(slow_closed),
        mb(readers),
        mb(readers_closed),
        args.slow_readers,
        args.readers,
    );
    Ok(())
}

/// How long each kind of client of `stream_clients` stays.
const PHASE: Duration = Duration::from_secs(30);

/// Samples the server's memory every second for `window` while its load
/// runs: the largest sample and the last.
async fn watch_memory(
    side: &mut Side,
    window: Duration,
    phase: &str,
) -> anyhow::Result<(u64, u64)> {
    let began = Instant::now();
    let (mut max, mut last) = (0, 0);
    while began.elapsed() < window {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            e = failed(&mut side.parts) => return Err(e),
        }
        last = side.rss()?;
        max = max.max(last);
    }
    eprintln!(
        "stream_clients: {phase}: rss_mb={} (max {})",
        mb(last),
        mb(max)
    );
    Ok((max, last))
}

/// Starts `n` executions of `soak_inline` as fast as the server takes them
/// (64 at once): a journal for readers to catch up on. Its last position.
async fn fill(load: &Load, n: u64) -> anyhow::Result<u64> {
    let mut starts = futures::stream::iter(0..n)
        .map(|_| start(load, INLINE))
        .buffer_unordered(64);
    while let Some(started) = starts.next().await {
        started?;
    }
    head_position(load).await
}

/// The journal's last position: the events the server committed since it
/// opened (its journal was empty then), from `GET /v1/metrics`.
async fn head_position(load: &Load) -> anyhow::Result<u64> {
    let url = load.url("/v1/metrics");
    let metrics: Value = load
        .http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .json()
        .await
        .with_context(|| format!("GET {url}: reading the answer"))?;
    metrics["system"]["journal"]["events"]
        .as_u64()
        .context("no system.journal.events in /v1/metrics")
}

/// Reads the unfiltered engine-wide stream from after `after` as it comes,
/// until released; the frames it got.
async fn read_live(
    load: &Load,
    after: u64,
    mut released: watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let url = load.url(&format!("/v1/events/stream?after={after}"));
    let mut response = load
        .http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    ensure!(
        response.status() == StatusCode::OK,
        "GET {url} answered {}",
        response.status()
    );
    let (mut buffer, mut frames, mut last) = (Vec::new(), 0, after);
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk.with_context(|| format!("reading {url}"))?,
            _ = released.wait_for(|r| *r) => return Ok(frames),
        };
        let Some(bytes) = chunk else {
            bail!("the engine-wide stream ended");
        };
        buffer.extend_from_slice(&bytes);
        while let Some(frame) = take_frame(&mut buffer) {
            let Some(id) = frame.id else { continue };
            ensure!(id > last, "id {id} after {last}");
            last = id;
            frames += 1;
        }
    }
}

/// Defines both workflows.
async fn define(load: &Load) -> anyhow::Result<()> {
    let carry = |id: &str, next: Option<&str>| {
        let mut step = json!({"id": id, "type": "task", "capability": "transform",
            "input": {"doc": "$.input.doc"}});
        if let Some(next) = next {
            step["next"] = json!(next);
        }
        step
    };
    let inline = json!({"name": INLINE, "steps": [
        carry("a", Some("b")), carry("b", Some("c")), carry("c", None),
    ]});
    let tasks = json!({"name": TASKS, "steps": [
        {"id": "a", "type": "task", "capability": CAPABILITY,
         "input": {"doc": "$.input.doc"}, "next": "b"},
        carry("b", Some("c")),
        {"id": "c", "type": "task", "capability": CAPABILITY, "input": {"doc": "$.input.doc"}},
    ]});
    for definition in [inline, tasks] {
        let (status, answer) = load.post("/v1/workflows", &definition).await?;
        ensure!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "defining a workflow answered {status}: {answer}"
        );
    }
    Ok(())
}

/// Starts executions at `rate` a second until told to stop; the start
/// requests' latency.
async fn start_loop(load: &Load, rate: u64, follow: bool) -> anyhow::Result<Histogram<u64>> {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut running: JoinSet<anyhow::Result<Duration>> = JoinSet::new();
    let mut latency = histogram();
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = load.stopping() => break,
            Some(joined) = running.join_next() => {
                let took = joined.context("a start panicked")??;
                crate::record(&mut latency, took);
                continue;
            }
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            Counters::bump(&load.counters.behind);
            continue;
        };
        n += 1;
        let workflow = if n.is_multiple_of(3) { TASKS } else { INLINE };
        let follow = follow && n.is_multiple_of(10);
        let load = load.clone();
        running.spawn(async move {
            let _permit = permit;
            let (id, took) = start(&load, workflow).await?;
            Counters::bump(&load.counters.started);
            if follow {
                follow_to_end(&load, &id).await?;
            }
            Ok(took)
        });
    }
    while let Some(joined) = running.join_next().await {
        let took = joined.context("a start panicked")??;
        crate::record(&mut latency, took);
    }
    Ok(latency)
}

/// Starts one execution: its id and how long the answer took.
async fn start(load: &Load, workflow: &str) -> anyhow::Result<(String, Duration)> {
    let body = json!({"workflow": workflow, "input": {"doc": &*load.payload}});
    let t = Instant::now();
    let (status, answer) = load.post("/v1/executions", &body).await?;
    let took = t.elapsed();
    ensure!(
        status == StatusCode::CREATED,
        "starting {workflow} answered {status}: {answer}"
    );
    let id = answer["id"]
        .as_str()
        .context("the start's answer has no id")?;
    Ok((id.to_owned(), took))
}

/// Reads one execution's stream until its terminal event, which must be
/// `execution_completed` (or until the load stops).
async fn follow_to_end(load: &Load, id: &str) -> anyhow::Result<()> {
    let url = load.url(&format!("/v1/executions/{id}/events/stream"));
    let ended = format!("the stream of {id} ended without its terminal event");
    each_frame(load, &url, &ended, |frame| match frame.event.as_deref() {
        Some("execution_completed") => {
            Counters::bump(&load.counters.followed);
            Ok(false)
        }
        Some(
            kind @ ("execution_failed"
            | "execution_compensated"
            | "execution_cancelled"
            | "execution_terminated"
            | "error"),
        ) => bail!("execution {id} ended with {kind}: {}", frame.data),
        _ => Ok(true),
    })
    .await
}

/// Counts `execution_completed` frames of the engine-wide stream; an
/// `execution_failed` fails the run.
async fn count_completions(load: &Load) -> anyhow::Result<()> {
    let url = load.url("/v1/events/stream?type=execution_completed,execution_failed");
    each_frame(load, &url, "the completions' stream ended", |frame| {
        match frame.event.as_deref() {
            Some("execution_completed") => Counters::bump(&load.counters.completed),
            Some(kind @ ("execution_failed" | "error")) => {
                bail!("{kind} on the engine-wide stream: {}", frame.data)
            }
            _ => {}
        }
        Ok(true)
    })
    .await
}

/// Opens the SSE stream at `url` and hands each frame to `on_frame` while
/// it answers `Ok(true)`; returns when it answers `Ok(false)` or the load
/// stops, and fails with `ended` if the stream ends first.
async fn each_frame(
    load: &Load,
    url: &str,
    ended: &str,
    mut on_frame: impl FnMut(Frame) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let mut response = load
        .http
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    ensure!(
        response.status() == StatusCode::OK,
        "GET {url} answered {}",
        response.status()
    );
    let mut buffer = Vec::new();
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk.with_context(|| format!("reading {url}"))?,
            _ = load.stopping() => return Ok(()),
        };
        let Some(bytes) = chunk else {
            bail!("{ended}");
        };
        buffer.extend_from_slice(&bytes);
        while let Some(frame) = take_frame(&mut buffer) {
            if !on_frame(frame)? {
                return Ok(());
            }
        }
    }
}

/// One reader of the engine-wide stream that reads at once, and comes and
/// goes.
async fn reader(load: &Load, i: usize, life: Duration) -> anyhow::Result<()> {
    let mut picker = Picker::new(0x5eed_0000 + i as u64);
    let query = match i % 4 {
        0 | 1 => String::new(),
        2 => "type=execution_started,execution_completed".to_owned(),
        _ => format!("workflow={TASKS}"),
    };
    let mut last: Option<u64> = None;
    while !load.stopped() {
        // One time in five a new client from the newest position seen;
        // otherwise the same client resuming where it left off.
        if picker.below(5) == 0 {
            last = Some(Counters::get(&load.counters.newest));
        }
        let mut request = load
            .http
            .get(load.url(&format!("/v1/events/stream?{query}")));
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        let mut response = request.send().await.context("GET /v1/events/stream")?;
        ensure!(
            response.status() == StatusCode::OK,
            "GET /v1/events/stream?{query} answered {}",
            response.status()
        );
        let stay = life.mul_f64(0.5 + picker.below(1000) as f64 / 1000.0);
        let leave = tokio::time::sleep(stay);
        tokio::pin!(leave);
        let mut buffer = Vec::new();
        loop {
            let chunk = tokio::select! {
                chunk = response.chunk() => chunk.context("reading /v1/events/stream")?,
                _ = &mut leave => break,
                _ = load.stopping() => return Ok(()),
            };
            let Some(bytes) = chunk else {
                bail!("the engine-wide stream ended");
            };
            buffer.extend_from_slice(&bytes);
            while let Some(frame) = take_frame(&mut buffer) {
                if frame.event.as_deref() == Some("error") {
                    bail!("an error frame on the engine-wide stream: {}", frame.data);
                }
                let Some(id) = frame.id else { continue };
                ensure!(
                    last.is_none_or(|l| id > l),
                    "reader {i} ({query}): id {id} after {last:?}"
                );
                last = Some(id);
                load.counters.newest.fetch_max(id, Ordering::Relaxed);
                Counters::bump(&load.counters.frames);
            }
        }
        drop(response);
        Counters::bump(&load.counters.reconnects);
        tokio::time::sleep(Duration::from_millis(picker.below(500))).await;
    }
    Ok(())
}

/// One reader of the engine-wide stream that reads a little, then stops
/// reading with the connection open, then closes; again and again.
async fn slow_reader(load: &Load, i: usize, stall: Duration) -> anyhow::Result<()> {
    let mut picker = Picker::new(0x510_0000 + i as u64);
    while !load.stopped() {
        let after = if i.is_multiple_of(2) {
            0
        } else {
            Counters::get(&load.counters.newest)
        };
        let Some(stream) = open_stalled(load, after).await? else {
            return Ok(());
        };
        // Stop reading, with the connection open.
        Counters::bump(&load.counters.stalls);
        let pause = stall.mul_f64(0.5 + picker.below(1000) as f64 / 1000.0);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = load.stopping() => return Ok(()),
        }
        drop(stream);
        tokio::time::sleep(Duration::from_millis(picker.below(500))).await;
    }
    Ok(())
}

/// Opens the unfiltered engine-wide stream after position `after` over a
/// socket with a small receive buffer, reads its first `SLOW_READ_BYTES`,
/// and hands it back unread from there on; `None` if the load stopped.
async fn open_stalled(load: &Load, after: u64) -> anyhow::Result<Option<tokio::net::TcpStream>> {
    let addr: std::net::SocketAddr = load
        .base
        .strip_prefix("http://")
        .context("the server's URL is not http://")?
        .parse()
        .context("the server's address")?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(SLOW_RECV_BUFFER)?;
    let mut stream = socket.connect(addr).await.context("connecting")?;
    let request = format!(
        "GET /v1/events/stream?after={after} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = vec![0u8; SLOW_READ_BYTES];
    let mut got = 0;
    while got < head.len() {
        let n = tokio::select! {
            n = stream.read(&mut head[got..]) => n?,
            _ = load.stopping() => return Ok(None),
        };
        ensure!(n > 0, "a slow reader's stream closed");
        got += n;
    }
    ensure!(
        head.starts_with(b"HTTP/1.1 200"),
        "a slow reader's stream answered {:?}",
        String::from_utf8_lossy(&head[..40])
    );
    Ok(Some(stream))
}

/// Registers the agent that runs the `soak` tasks; its id.
async fn register(load: &Load, loops: usize) -> anyhow::Result<String> {
    let body = json!({"name": "soak-agent", "capabilities": [CAPABILITY],
        "maxConcurrency": (loops * 100).min(10_000)});
    let (status, answer) = load.post("/v1/agents", &body).await?;
    ensure!(
        status == StatusCode::CREATED,
        "registering answered {status}: {answer}"
    );
    Ok(answer["id"]
        .as_str()
        .context("the registration answer has no id")?
        .to_owned())
}

async fn unregister(load: &Load, agent: &str) -> anyhow::Result<()> {
    let url = load.url(&format!("/v1/agents/{agent}"));
    let response = load
        .http
        .delete(&url)
        .send()
        .await
        .with_context(|| format!("DELETE {url}"))?;
    ensure!(
        response.status() == StatusCode::OK,
        "unregistering answered {}",
        response.status()
    );
    Ok(())
}

/// Claims tasks with long polls and completes each with its input, until
/// told to stop.
async fn poll_loop(load: &Load, agent: &str) -> anyhow::Result<()> {
    let poll = json!({"agentId": agent, "max": 100, "waitMs": POLL_WAIT_MS});
    while !load.stopped() {
        let polled = tokio::time::timeout(REQUEST_TIMEOUT, load.post("/v1/tasks/poll", &poll));
        let (status, body) = tokio::select! {
            answer = polled => answer.context("a poll took too long")??,
            _ = load.stopping() => return Ok(()),
        };
        ensure!(
            status == StatusCode::OK,
            "polling answered {status}: {body}"
        );
        let tasks = body["tasks"].as_array().cloned().unwrap_or_default();
        let mut completing: FuturesUnordered<_> = tasks
            .iter()
            .map(|task| async move {
                let id = task["id"].as_str().context("a task without an id")?;
                let output = json!({"output": task["input"].clone()});
                let (status, answer) = load
                    .post(&format!("/v1/tasks/{id}/complete"), &output)
                    .await?;
                ensure!(
                    status == StatusCode::OK,
                    "completing task {id} answered {status}: {answer}"
                );
                Counters::bump(&load.counters.tasks);
                anyhow::Ok(())
            })
            .collect();
        while let Some(done) = completing.next().await {
            done?;
        }
    }
    Ok(())
}

/// One SSE frame: its `id:`, `event:` and `data:` (joined).
#[derive(Debug)]
struct Frame {
    id: Option<u64>,
    event: Option<String>,
    data: String,
}

/// Removes the first complete SSE frame (ended by a blank line) from
/// `buffer`. Comments (keep-alives) come out as frames with no event.
fn take_frame(buffer: &mut Vec<u8>) -> Option<Frame> {
    let end = buffer.windows(2).position(|w| w == b"\n\n")?;
    let block: Vec<u8> = buffer.drain(..end + 2).collect();
    let text = String::from_utf8_lossy(&block[..end]);
    let mut frame = Frame {
        id: None,
        event: None,
        data: String::new(),
    };
    for line in text.lines() {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "id" => frame.id = value.parse().ok(),
            "event" => frame.event = Some(value.to_owned()),
            "data" => {
                if !frame.data.is_empty() {
                    frame.data.push('\n');
                }
                frame.data.push_str(value);
            }
            _ => {}
        }
    }
    Some(frame)
}
