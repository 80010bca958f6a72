//! The `retrace` binary: parses the command line and runs the subcommand.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    retrace_api::cli::run(retrace_api::cli::Cli::parse())
}
