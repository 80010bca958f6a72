//! The `retrace` command line: its subcommands and how each runs.
//!
//! Owns argument parsing (flags, then environment variables, then — for
//! `serve` only — its configuration file, then defaults),
//! where output goes, and exit codes: 0 success; 1 failure (for `verify`:
//! a problem found); 2 arguments that do not fit together, or a data folder
//! a running server holds. Each subcommand lives in its own module; this
//! file must never hold a subcommand's logic.
//!
//! - `serve`: the server (`serve`); its configuration file and how the
//!   sources of its settings are merged (`config`).
//! - `replay`, `export`, `verify`: histories read offline from a stopped
//!   server's data folder, an export, or a server (`history`); `audit`:
//!   who did what, from a data folder.
//! - The client commands, over `client`: `workflow apply|validate`
//!   (`workflow`; `validate` also offline), `start` and `agents`
//!   (`remote`), `status` (`status`), `tail` (`tail`), `ls`
//!   (`list`), `signal` and `publish` (`events`), and the commands on
//!   one execution — `pause`, `resume`, `cancel`, `terminate`, `retry`,
//!   `skip`, `redrive` (`control`); `schedule create|list|show|pause|
//!   resume|trigger|delete` (`schedule`).
//! - `agent`: a small agent (`agent`); `token`: access tokens, on a data
//!   folder or a server (`token`); `completions`: shell completion
//!   scripts (`completions`).

mod agent;
mod audit;
mod client;
mod completions;
mod config;
mod control;
mod diff;
mod error;
mod events;
mod export;
mod history;
mod list;
mod logging;
mod remote;
mod replay;
mod schedule;
mod serve;
mod signals;
mod status;
mod tail;
mod token;
mod verify;
mod workflow;

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use agent::AgentArgs;
pub use audit::AuditArgs;
pub use client::DEFAULT_SERVER;
pub use completions::CompletionsArgs;
pub use config::ServeArgs;
pub use control::Control;
pub use error::Error;
pub use events::EventCommand;
pub use export::ExportArgs;
pub use list::ListArgs;
pub use logging::LogFormat;
pub use remote::{AgentsArgs, StartArgs};
pub use replay::{ReplayArgs, run as replay};
pub use schedule::ScheduleCommand;
pub use status::StatusArgs;
pub use tail::TailArgs;
pub use token::TokenCommand;
pub use verify::VerifyArgs;
pub use workflow::WorkflowCommand;

/// retrace: an event-sourced durable execution engine.
#[derive(Debug, Parser)]
#[command(name = "retrace", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serves the HTTP API over an embedded journal in a data folder.
    Serve(Box<ServeArgs>),
    /// Shows how an execution got where it is: each event and what it
    /// changed, folded from the start (or lists the executions).
    Replay(ReplayArgs),
    /// Checks a stopped server's data folder: hash chains, indexes, and
    /// every execution replayed against its snapshot. Exit 0 only if sound.
    Verify(VerifyArgs),
    /// Writes histories as JSON lines, in the journal's order.
    Export(ExportArgs),
    /// Lists who did what (token changes, definitions, starts, signals,
    /// operator commands) from a stopped server's data folder, checking
    /// every hash chain. Exit 0 only if they all verify.
    Audit(AuditArgs),
    /// Defines workflows on a server, or checks them (offline by default).
    Workflow {
        #[command(subcommand)]
        command: WorkflowCommand,
    },
    /// Starts an execution and prints its id.
    Start(StartArgs),
    /// Shows an execution as the server sees it.
    Status(StatusArgs),
    /// Follows an execution's events as they happen, until it ends; exit 0
    /// if it completed, 1 if it ended otherwise. Reconnects if the server
    /// restarts.
    Tail(TailArgs),
    /// Lists executions, oldest first.
    Ls(ListArgs),
    #[command(flatten)]
    Event(EventCommand),
    #[command(flatten)]
    Control(Control),
    /// Lists the agents registered with a server.
    Agents(AgentsArgs),
    /// Creates, lists, shows, pauses, resumes, triggers and deletes
    /// schedules on a server: workflows started on a timetable.
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Runs a small agent: echoes each task's input, or runs a command.
    Agent(AgentArgs),
    /// Creates, lists and revokes access tokens, on a data folder or a
    /// server.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Prints a shell completion script (bash, zsh, fish, elvish,
    /// powershell).
    Completions(CompletionsArgs),
}

/// Runs a parsed command line; the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    // One rustls provider for every TLS this process speaks (HTTPS, and
    // TLS to NATS, whose client would otherwise find two and pick none).
    crate::tls::install_crypto();
    let outcome = match cli.command {
        Command::Serve(args) => return serve::run(*args),
        Command::Replay(args) => buffered(|out| block_on(replay::run(args, out))),
        Command::Verify(args) => {
            return match buffered(|out| block_on(verify::run(args, out))) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => failed(&e),
            };
        }
        Command::Export(args) => buffered(|out| block_on(export::run(args, out))),
        Command::Audit(args) => {
            return match buffered(|out| block_on(audit::run(args, out))) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => failed(&e),
            };
        }
        Command::Workflow { command } => buffered(|out| block_on(workflow::run(command, out))),
        Command::Start(args) => buffered(|out| block_on(remote::start(args, out))),
        Command::Status(args) => buffered(|out| block_on(status::run(args, out))),
        Command::Ls(args) => buffered(|out| block_on(list::run(args, out))),
        Command::Event(command) => buffered(|out| block_on(events::run(command, out))),
        Command::Control(command) => buffered(|out| block_on(control::run(command, out))),
        Command::Agents(args) => buffered(|out| block_on(remote::agents(args, out))),
        Command::Schedule { command } => buffered(|out| block_on(schedule::run(command, out))),
        // Each event is written (and flushed) as it arrives.
        Command::Tail(args) => block_on(tail::run(args, &mut std::io::stdout().lock())),
        Command::Agent(args) => block_on(agent::run(args)),
        Command::Token { command } => buffered(|out| block_on(token::run(command, out))),
        Command::Completions(args) => buffered(|out| completions::run(args, out)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(&e),
    }
}

/// Reports `e` on stderr; the exit code it means. A reader that went away
/// (`retrace replay … | head`) is not a failure.
fn failed(e: &Error) -> ExitCode {
    if let Error::Io { source, .. } = e
        && source.kind() == std::io::ErrorKind::BrokenPipe
    {
        return ExitCode::SUCCESS;
    }
    let _ = writeln!(std::io::stderr().lock(), "retrace: {e}");
    ExitCode::from(e.exit_code())
}

/// Writes one line of a subcommand's output.
fn write_line(out: &mut impl Write, line: String) -> Result<(), Error> {
    writeln!(out, "{line}").map_err(|e| Error::io("cannot write to standard output", e))
}

/// Runs `f` with a buffered standard output, flushed at the end.
fn buffered<T>(
    f: impl FnOnce(&mut std::io::BufWriter<std::io::StdoutLock>) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let outcome = f(&mut out);
    let flushed = out
        .flush()
        .map_err(|e| Error::io("cannot write to standard output", e));
    let value = outcome?;
    flushed?;
    Ok(value)
}

/// Runs a future on a single-threaded runtime: the command line has one
/// thing to do at a time.
fn block_on<T>(future: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::setup("cannot start the async runtime", e))?
        .block_on(future)
}
