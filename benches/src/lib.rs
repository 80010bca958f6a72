//! Shared pieces of retrace's benchmark binaries: argument handling, the
//! report line and latency histograms. Benchmarks print figures; they never
//! assert timings.

use std::path::PathBuf;
use std::time::Duration;

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
