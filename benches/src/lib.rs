//! Shared pieces of retrace's benchmark binaries: argument handling, the
//! report line and latency histograms. Benchmarks print figures; they never
//! assert timings.

use std::path::PathBuf;
use std::time::Duration;

use hdrhistogram::Histogram;

/// What every benchmark binary accepts.
#[derive(Debug, Clone)]
pub struct Args {
    /// Fewer operations: finishes in well under a minute.
    pub quick: bool,
    /// Where data folders are made (default: `target/bench-data`, which is on
    /// the same disk as the build, never a tmpfs).
    pub dir: PathBuf,
    /// Run only the scenarios whose name starts with this.
    pub only: Option<String>,
}

impl Args {
    pub fn parse() -> anyhow::Result<Args> {
        let mut args = Args {
            quick: false,
            dir: PathBuf::from("target/bench-data"),
            only: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "--quick" => args.quick = true,
                "--dir" => {
                    args.dir = it
                        .next()
                        .ok_or_else(|| anyhow::anyhow!("--dir needs a path"))?
                        .into()
                }
                "--only" => {
                    args.only = Some(
                        it.next()
                            .ok_or_else(|| anyhow::anyhow!("--only needs a scenario name"))?,
                    )
                }
                other => anyhow::bail!(
                    "unknown argument {other} (use --quick, --dir <path>, --only <scenario>)"
                ),
            }
        }
        std::fs::create_dir_all(&args.dir)?;
        Ok(args)
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
