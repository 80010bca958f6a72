//! The `retrace` command line: its subcommands and how each runs.
//!
//! Owns argument parsing (flags, then environment variables, then defaults)
//! and exit codes. Each subcommand lives in its own module; this file must
//! never hold a subcommand's logic.

mod logging;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use logging::LogFormat;
pub use serve::ServeArgs;

/// retrace: an event-sourced durable execution engine.
#[derive(Debug, Parser)]
#[command(name = "retrace", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serves the HTTP API over an embedded journal in a data folder.
    Serve(ServeArgs),
}

/// Runs a parsed command line; the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve::run(args),
    }
}
