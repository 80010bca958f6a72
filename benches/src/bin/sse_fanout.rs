//! The SSE fan-out benchmark: how fast the engine-wide event stream brings
//! an event to many subscribers at once. It runs the real `retrace serve`
//! (a fresh server and data folder per scenario) and talks to it only over
//! HTTP, from this one process.
//!
//! Each scenario opens its subscribers on the filtered engine-wide stream,
//! `GET /v1/events/stream?type=execution_completed` (one HTTP/1 connection
//! each, read as a byte stream), waits until every one has its `200`, then
//! starts executions of a 3-step inline workflow (`noop` steps) at a steady
//! rate (`--rate`, 20 a second; for `--seconds`, 15, or 5 with `--quick`)
//! with `POST /v1/executions`, and waits until every subscriber has seen
//! every execution's `execution_completed`.
//!
//! - `sse_fanout_<n>`: `n` subscribers (1,000; 100 with `--quick`).
//! - `sse_fanout_1`: one subscriber.
//!
//! The report line's latency is append-to-receipt: the client's wall clock
//! when a frame arrives minus the event's `at` (from the frame's data;
//! RFC 3339 with milliseconds, the time the engine stamped on the event
//! before appending it). `at` is cut to the millisecond, so each sample is
//! overstated by 0 to 1 ms (0.5 ms on average); server and client share one
//! clock. ops are frames received (every subscriber's), over the time from
//! the first start to the last frame. A second line per scenario:
//! `scenario=<name> subscribers=<n> executions=<n> receipts=<n>
//! rate_per_s=<n> from_request_p50_us=<n> from_request_p99_us=<n>
//! start_p50_us=<n> start_p99_us=<n> server_cpu_s=<n> client_cpu_s=<n>`:
//! `from_request` is receipt minus the moment the client sent that
//! execution's start request (one clock, microseconds; it includes the start
//! request's own handling), `start` is the start request's round trip, and
//! the CPU figures are the server's and this process's over the scenario.
//!
//! Run: `cargo build --release -p retrace-api -p retrace-benches &&
//! target/release/sse_fanout --quick`

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use hdrhistogram::Histogram;
use reqwest::StatusCode;
use retrace_benches::serve::{Server, binary, wait_for_200};
use retrace_benches::{Args, cpu_seconds, histogram, report};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

/// The command line: the common flags, where `retrace` is, and the load.
#[derive(Debug, clap::Parser)]
#[command(
    about = "The sse_fanout benchmark: prints one line of figures per scenario, asserts nothing"
)]
struct BenchArgs {
    #[command(flatten)]
    common: Args,
    /// The `retrace` binary (default: `retrace` next to this executable).
    #[arg(long, value_name = "PATH")]
    retrace: Option<PathBuf>,
    /// Executions started per second.
    #[arg(long, default_value_t = 20)]
    rate: u64,
    /// For how long executions are started (default 15, 5 with `--quick`).
    #[arg(long)]
    seconds: Option<u64>,
}

const WORKFLOW: &str = "sse_fanout3";
/// Subscribers connecting at once (the server's accept queue stays short).
const CONNECTING: usize = 64;
/// How long a server may take to start, and subscribers to connect.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long after the last start every frame must have arrived.
const DRAIN_PATIENCE: Duration = Duration::from_secs(120);

fn main() -> anyhow::Result<()> {
    let args = <BenchArgs as clap::Parser>::parse();
    args.common.create_dir()?;
    let retrace = binary(args.retrace.as_deref(), "retrace", "--retrace")?;
    let many = if args.common.quick { 100 } else { 1_000 };
    let seconds = args
        .seconds
        .unwrap_or(if args.common.quick { 5 } else { 15 });
    ensure!(
        args.rate > 0 && seconds > 0,
        "--rate and --seconds must be > 0"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for subscribers in [many, 1] {
        let name = format!("sse_fanout_{subscribers}");
        if !args.common.wants(&name) {
            continue;
        }
        let load = Load {
            subscribers,
            rate: args.rate,
            executions: args.rate * seconds,
        };
        rt.block_on(scenario(&args.common, &retrace, &name, load))?;
    }
    Ok(())
}

/// How many listen, and how many executions start how fast.
#[derive(Debug, Clone, Copy)]
struct Load {
    subscribers: usize,
    rate: u64,
    executions: u64,
}

/// One scenario on a fresh server.
async fn scenario(args: &Args, retrace: &Path, name: &str, load: Load) -> anyhow::Result<()> {
    // Declared before the server, so it is removed after the server stops.
    let data = args.scratch()?;
    let server = Server::start(retrace, data.path(), PATIENCE).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .build()?;
    wait_for_200(&http, &server.base, "/healthz", PATIENCE).await?;
    define(&http, &server.base).await?;

    // Subscribers, each on its own connection; each says when it has its 200.
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(load.subscribers);
    let connecting = Arc::new(Semaphore::new(CONNECTING));
    let mut subscribers = JoinSet::new();
    for _ in 0..load.subscribers {
        let sub = Subscriber {
            http: http.clone(),
            url: format!("{}/v1/events/stream?type=execution_completed", server.base),
            expected: load.executions,
        };
        let ready = ready_tx.clone();
        let connecting = connecting.clone();
        subscribers.spawn(async move { sub.run(ready, connecting).await });
    }
    drop(ready_tx);
    let connected = tokio::time::timeout(PATIENCE, async {
        let mut n = 0;
        while n < load.subscribers && ready_rx.recv().await.is_some() {
            n += 1;
        }
        n
    })
    .await
    .unwrap_or(0);
    if connected < load.subscribers {
        // A subscriber that failed says why.
        while let Some(joined) = subscribers.try_join_next() {
            joined.context("a subscriber panicked")??;
        }
        bail!(
            "only {connected} of {} subscribers connected within {PATIENCE:?}",
            load.subscribers
        );
    }

    // Starts at a steady rate; each start is its own task, so a slow answer
    // never delays the next one.
    let cpu_before = (cpu_seconds(server.pid()), cpu_seconds(None));
    let first_start = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / load.rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut starts = JoinSet::new();
    for _ in 0..load.executions {
        ticks.tick().await;
        let http = http.clone();
        let base = server.base.clone();
        starts.spawn(async move { start(&http, &base).await });
    }
    let mut sent_at: HashMap<String, u64> = HashMap::new();
    let mut start_h = histogram();
    while let Some(joined) = starts.join_next().await {
        let (id, sent_us, took) = joined.context("a start panicked")??;
        retrace_benches::record(&mut start_h, took);
        sent_at.insert(id, sent_us);
    }

    // Every frame, with a deadline.
    let mut at_h = histogram();
    let mut request_h = histogram();
    let mut receipts = 0u64;
    let drained = tokio::time::timeout(DRAIN_PATIENCE, async {
        while let Some(joined) = subscribers.join_next().await {
            let got = joined.context("a subscriber panicked")??;
            at_h.add(&got.from_at)
                .map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?;
            for (id, receipt_us) in got.receipts {
                let sent = sent_at.get(&id).with_context(|| {
                    format!("a frame for execution {id}, which was not started")
                })?;
                request_h.saturating_record(receipt_us.saturating_sub(*sent).max(1));
                receipts += 1;
            }
        }
        anyhow::Ok(())
    })
    .await;
    let elapsed = first_start.elapsed();
    match drained {
        Ok(done) => done?,
        Err(_) => bail!(
            "the subscribers did not receive every frame within {DRAIN_PATIENCE:?} of the last start"
        ),
    }
    let cpu = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(b), Some(a)) => format!("{:.2}", a - b),
        _ => "unknown".to_owned(),
    };
    let server_cpu = cpu(cpu_before.0, cpu_seconds(server.pid()));
    let client_cpu = cpu(cpu_before.1, cpu_seconds(None));
    server.stop().await?;

    report(name, receipts, elapsed, &at_h);
    println!(
        "scenario={name} subscribers={} executions={} receipts={receipts} rate_per_s={} from_request_p50_us={} from_request_p99_us={} start_p50_us={} start_p99_us={} server_cpu_s={server_cpu} client_cpu_s={client_cpu}",
        load.subscribers,
        load.executions,
        load.rate,
        request_h.value_at_quantile(0.50),
        request_h.value_at_quantile(0.99),
        start_h.value_at_quantile(0.50),
        start_h.value_at_quantile(0.99),
    );
    Ok(())
}

/// Defines the workflow: three inline `noop` steps.
async fn define(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let definition = json!({"name": WORKFLOW, "steps": [
        {"id": "a", "type": "task", "capability": "noop", "next": "b"},
        {"id": "b", "type": "task", "capability": "noop", "next": "c"},
        {"id": "c", "type": "task", "capability": "noop"},
    ]});
    let url = format!("{base}/v1/workflows");
    let response = http
        .post(&url)
        .json(&definition)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    ensure!(
        status == StatusCode::CREATED || status == StatusCode::OK,
        "defining the workflow answered {status}"
    );
    Ok(())
}

/// Starts one execution: its id, when the request was sent (wall clock,
/// µs since the epoch) and how long the answer took.
async fn start(http: &reqwest::Client, base: &str) -> anyhow::Result<(String, u64, Duration)> {
    let url = format!("{base}/v1/executions");
    let body = json!({"workflow": WORKFLOW, "input": {}});
    let sent_us = now_us();
    let t = Instant::now();
    let response = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("POST {url}: reading the answer"))?;
    let took = t.elapsed();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    ensure!(
        status == StatusCode::CREATED,
        "starting answered {status}: {answer}"
    );
    let id = answer["id"]
        .as_str()
        .context("the start's answer has no id")?;
    Ok((id.to_owned(), sent_us, took))
}

/// One subscriber of the engine-wide stream.
#[derive(Debug)]
struct Subscriber {
    http: reqwest::Client,
    url: String,
    /// Frames to receive before it stops.
    expected: u64,
}

/// What one subscriber saw.
#[derive(Debug)]
struct Received {
    /// Receipt minus the event's `at`, in µs.
    from_at: Histogram<u64>,
    /// (execution id, receipt in µs since the epoch) per frame.
    receipts: Vec<(String, u64)>,
}

impl Subscriber {
    async fn run(
        self,
        ready: mpsc::Sender<()>,
        connecting: Arc<Semaphore>,
    ) -> anyhow::Result<Received> {
        let permit = connecting.acquire_owned().await?;
        let mut response = self
            .http
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .with_context(|| format!("GET {}", self.url))?;
        ensure!(
            response.status() == StatusCode::OK,
            "GET {} answered {}",
            self.url,
            response.status()
        );
        drop(permit);
        // The scenario waits for every subscriber; one that cannot say so
        // is left behind and fails it.
        let _ = ready.send(()).await;
        let mut got = Received {
            from_at: histogram(),
            receipts: Vec::with_capacity(self.expected as usize),
        };
        let mut buffer: Vec<u8> = Vec::new();
        while (got.receipts.len() as u64) < self.expected {
            let Some(bytes) = response
                .chunk()
                .await
                .with_context(|| format!("reading {}", self.url))?
            else {
                bail!(
                    "the stream ended after {} of {} frames",
                    got.receipts.len(),
                    self.expected
                );
            };
            let receipt_us = now_us();
            buffer.extend_from_slice(&bytes);
            while let Some((event, data)) = take_frame(&mut buffer) {
                if event != "execution_completed" {
                    continue; // keep-alive comments
                }
                let data: Value = serde_json::from_str(&data).context("a frame's data")?;
                let at = data["at"].as_str().context("a frame without `at`")?;
                let at_us = chrono::DateTime::parse_from_rfc3339(at)
                    .map_err(|e| anyhow::anyhow!("a frame's `at` {at:?}: {e}"))?
                    .timestamp_micros();
                let at_us = u64::try_from(at_us).unwrap_or(0);
                got.from_at
                    .saturating_record(receipt_us.saturating_sub(at_us).max(1));
                let id = data["executionId"]
                    .as_str()
                    .context("a frame without `executionId`")?;
                got.receipts.push((id.to_owned(), receipt_us));
            }
        }
        Ok(got)
    }
}

/// The wall clock in µs since the Unix epoch (0 before it).
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Removes the first complete SSE frame (ended by a blank line) from
/// `buffer`: its `event:` and its `data:` joined. Comments (keep-alives) come
/// out as frames with an empty event.
fn take_frame(buffer: &mut Vec<u8>) -> Option<(String, String)> {
    let end = buffer.windows(2).position(|w| w == b"\n\n")?;
    let block: Vec<u8> = buffer.drain(..end + 2).collect();
    let text = String::from_utf8_lossy(&block[..end]);
    let mut event = String::new();
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines() {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "event" => event = value.to_owned(),
            "data" => data.push(value),
            _ => {}
        }
    }
    Some((event, data.join("\n")))
}
