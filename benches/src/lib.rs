//! Shared pieces of retrace's benchmark binaries: argument handling, the
//! report line and latency histograms, process figures from `/proc`
//! (resident memory, CPU time), a seeded picker, and running the real
//! `retrace serve` ([`serve`]), durations on the command line, and the soak
//! scenario ([`soak`], a library so a test can run it). Benchmarks print
//! figures; they never assert timings.

use std::path::PathBuf;
use std::time::Duration;

pub mod soak;

use hdrhistogram::Histogram;

/// What every benchmark binary accepts (`--help` lists it).
#[derive(Debug, Clone, clap::Parser)]
#[command(about = "A retrace benchmark: prints one line of figures per scenario, asserts nothing")]
pub struct Args {
    /// Fewer operations: finishes in well under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Where data folders are made (the default is on the same disk as the
    /// build, never a tmpfs).
    #[arg(long, default_value = "target/bench-data")]
    pub dir: PathBuf,
    /// Run only the scenarios whose name starts with this.
    #[arg(long, value_name = "SCENARIO")]
    pub only: Option<String>,
}

impl Args {
    /// The command line's arguments (exits with usage on bad ones), with
    /// the data folder created.
    pub fn parse() -> anyhow::Result<Args> {
        let args = <Args as clap::Parser>::parse();
        args.create_dir()?;
        Ok(args)
    }

    /// Creates the folder data folders are made in (for binaries that
    /// parse a command line of their own around these flags).
    pub fn create_dir(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", self.dir.display()))
    }

    /// Whether scenario `name` is to run.
    pub fn wants(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| name.starts_with(o.as_str()))
    }

    /// A fresh, empty folder for one scenario, removed when dropped.
    pub fn scratch(&self) -> anyhow::Result<tempfile::TempDir> {
        Ok(tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&self.dir)?)
    }
}

/// A latency histogram in microseconds (1 µs to 60 s, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros() as u64).max(1));
}

/// Prints the one line every scenario reports, in exactly this form:
/// `scenario=<name> ops_per_s=<n> p50_us=<n> p99_us=<n> p999_us=<n>`.
pub fn report(name: &str, ops: u64, elapsed: Duration, h: &Histogram<u64>) {
    let ops_per_s = ops as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "scenario={name} ops_per_s={:.0} p50_us={} p99_us={} p999_us={}",
        ops_per_s,
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
    );
}

/// The resident memory (`VmRSS` of `/proc/<pid>/status`) of process `pid`,
/// or of this process with `None`, in bytes; `None` where `/proc` cannot say.
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    // `VmRSS:     123456 kB`
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The most resident memory this process has had (`VmHWM` of
/// `/proc/self/status`), in bytes; `None` where `/proc` cannot say.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU seconds (user + system) process `pid`, or this process with `None`,
/// has used so far (`/proc/<pid>/stat`); `None` where `/proc` cannot say.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces;
    // after it, field 3 (state) comes first: utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let sys: f64 = fields.get(12)?.parse().ok()?;
    Some((user + sys) / clock_ticks())
}

/// Clock ticks per second, as `/proc/<pid>/stat` counts them.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|&t| t > 0.0)
            .unwrap_or(100.0)
    })
}

/// The bytes of the files under `path` (recursively): a data folder's size
/// on disk; `None` if some of it cannot be read.
pub fn folder_bytes(path: &std::path::Path) -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path).ok()? {
        let entry = entry.ok()?;
        let meta = entry.metadata().ok()?;
        total += if meta.is_dir() {
            folder_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Some(total)
}

/// A duration from the command line: a number with a unit, `ms`, `s`, `m`
/// or `h` (`3600s`, `60m`, `1h`, `500ms`), or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 90s, 30m or 1h"))?;
    let seconds = |factor: u64| {
        n.checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("`{text}` is too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => seconds(1),
        "m" | "min" => seconds(60),
        "h" => seconds(3600),
        _ => Err(format!(
            "`{text}`: the unit must be ms, s, m or h (90s, 30m, 1h)"
        )),
    }
}

/// A figure in bytes as MB (10^6 bytes), for a `key=value` report.
pub fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

/// A small, seeded pseudo-random generator (splitmix64): the same picks on
/// every run, no dependency.
#[derive(Debug, Clone)]
pub struct Picker(u64);

impl Picker {
    pub fn new(seed: u64) -> Picker {
        Picker(seed)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// Running the real `retrace serve` from a benchmark: finding the binary,
/// starting it on a data folder and a loopback port, stopping it.
pub mod serve {
    use std::collections::VecDeque;
    use std::path::{Path, PathBuf};
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use anyhow::{Context, bail, ensure};
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::{Child, Command};

    /// How to build the binaries the benchmarks run.
    pub const BUILD: &str = "cargo build --release -p retrace-api -p retrace-benches";

    /// How many of a process's last stderr lines an error message shows.
    const LOG_LINES: usize = 20;

    /// How long a server may take to stop.
    const STOP_PATIENCE: Duration = Duration::from_secs(60);

    /// The binary given with `flag`, or `name` next to this executable.
    pub fn binary(given: Option<&Path>, name: &str, flag: &str) -> anyhow::Result<PathBuf> {
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

    /// A running `retrace serve` on a loopback port. `kill_on_drop` is the
    /// drop guard: a server not stopped with [`Server::stop`] (an error
    /// path) is killed when this is dropped.
    #[derive(Debug)]
    pub struct Server {
        child: Child,
        log: Arc<Mutex<VecDeque<String>>>,
        reader: tokio::task::JoinHandle<()>,
        /// `http://127.0.0.1:<port>`.
        pub base: String,
        /// From the spawn to its `listening` line.
        pub listening_after: Duration,
    }

    impl Server {
        /// Starts `retrace serve` on `data` and an ephemeral loopback port,
        /// and waits (at most `patience`) for its `listening addr=…` line,
        /// which it prints once the engine has opened.
        pub async fn start(
            retrace: &Path,
            data: &Path,
            patience: Duration,
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
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let spawned = Instant::now();
            let mut child = command.spawn().context("cannot start retrace serve")?;
            let stderr = child.stderr.take().context("stderr is piped")?;
            let log = Arc::new(Mutex::new(VecDeque::new()));
            let kept = log.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            let reader = tokio::spawn(async move {
                let mut tx = Some(tx);
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("listening")
                        && let Some(addr) = field(&line, "addr")
                        && let Some(tx) = tx.take()
                    {
                        let _ = tx.send(addr);
                    }
                    if let Ok(mut kept) = kept.lock() {
                        if kept.len() == LOG_LINES {
                            kept.pop_front();
                        }
                        kept.push_back(line);
                    }
                }
            });
            let mut server = Server {
                child,
                log,
                reader,
                base: String::new(),
                listening_after: Duration::ZERO,
            };
            match tokio::time::timeout(patience, rx).await {
                Ok(Ok(addr)) => {
                    server.listening_after = spawned.elapsed();
                    server.base = format!("http://{addr}");
                    Ok(server)
                }
                Ok(Err(_)) => bail!("retrace serve exited before listening:\n{}", server.tail()),
                Err(_) => bail!(
                    "retrace serve did not say where it listens within {patience:?}:\n{}",
                    server.tail()
                ),
            }
        }

        /// Its process id (`None` once it has exited).
        pub fn pid(&self) -> Option<u32> {
            self.child.id()
        }

        /// Its last stderr lines, for an error message.
        pub fn tail(&self) -> String {
            match self.log.lock() {
                Ok(log) => log.iter().cloned().collect::<Vec<_>>().join("\n"),
                Err(_) => String::new(),
            }
        }

        /// SIGTERM, then waits for it to exit, and checks it exited 0.
        pub async fn stop(mut self) -> anyhow::Result<()> {
            if let Some(pid) = self.child.id() {
                let sent = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .context("cannot run `kill`")?;
                ensure!(sent.success(), "`kill -TERM {pid}` failed (retrace serve)");
            }
            let status = tokio::time::timeout(STOP_PATIENCE, self.child.wait())
                .await
                .with_context(|| format!("retrace serve did not stop within {STOP_PATIENCE:?}"))?
                .context("waiting for retrace serve")?;
            // Its stderr closes with it; the last lines are then all there.
            let _ = tokio::time::timeout(STOP_PATIENCE, &mut self.reader).await;
            ensure!(
                status.success(),
                "retrace serve exited with {status}; its last lines:\n{}",
                self.tail()
            );
            Ok(())
        }
    }

    /// The value of `name=` in a human log line.
    fn field(line: &str, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(prefix.as_str()))
            .map(str::to_owned)
    }

    /// Waits (at most `patience`) until `GET <base><path>` answers 200.
    pub async fn wait_for_200(
        http: &reqwest::Client,
        base: &str,
        path: &str,
        patience: Duration,
    ) -> anyhow::Result<()> {
        let url = format!("{base}{path}");
        let deadline = Instant::now() + patience;
        loop {
            match http.get(&url).send().await {
                Ok(r) if r.status() == reqwest::StatusCode::OK => return Ok(()),
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok(r) => bail!("GET {url} answered {}", r.status()),
                Err(e) => return Err(anyhow::Error::new(e).context(format!("GET {url}"))),
            }
        }
    }
}

/// `builder` with `token` sent as `Authorization: Bearer` on every request
/// and, for an `https://` server, only the CA in the PEM file `ca` trusted:
/// how the benchmarks' clients reach a server with access control and TLS.
pub fn secured(
    mut builder: reqwest::ClientBuilder,
    token: Option<&str>,
    ca: Option<&std::path::Path>,
) -> anyhow::Result<reqwest::ClientBuilder> {
    if let Some(token) = token {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse()?,
        );
        builder = builder.default_headers(headers);
    }
    if let Some(ca) = ca {
        let pem =
            std::fs::read(ca).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", ca.display()))?;
        builder = builder.tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem)?);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_or_without_a_unit() {
        let cases = [
            ("3600s", Some(3_600_000)),
            ("60m", Some(3_600_000)),
            ("1h", Some(3_600_000)),
            ("120", Some(120_000)),
            ("250ms", Some(250)),
            ("", None),
            ("s", None),
            ("1d", None),
            ("-1s", None),
            ("99999999999999999999h", None),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_duration(text).ok().map(|d| d.as_millis() as u64),
                millis,
                "{text:?}"
            );
        }
    }
}
