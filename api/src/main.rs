//! The `retrace` binary: parses the command line and runs the subcommand.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc, whose background thread returns freed memory to the system (a
/// server's memory comes back after its clients leave; see
/// docs/performance.md).
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    retrace_api::cli::run(retrace_api::cli::Cli::parse())
}
