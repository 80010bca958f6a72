//! The soak benchmark: a real `retrace serve` under a mixed load (executions,
//! stream readers that come and go, readers that stop reading) for a long
//! time, its memory sampled all along; see `retrace_benches::soak` for what
//! it does and prints, and docs/performance.md for figures.
//!
//! Run: `cargo build --release -p retrace-api -p retrace-benches &&
//! target/release/soak --duration 3600s`

fn main() -> anyhow::Result<()> {
    retrace_benches::soak::run(<retrace_benches::soak::SoakArgs as clap::Parser>::parse())
        .map(|_| ())
}
