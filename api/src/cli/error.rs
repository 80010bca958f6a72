//! The command line's one error type, and the exit code each error means.
//!
//! Owns the wording a user sees when a subcommand cannot do its work and
//! the mapping to exit codes: `2` for a source that cannot be used as given
//! (a data folder a running server holds, arguments that contradict each
//! other), `1` for everything else. It must never print: `cli::run` does,
//! once, so every subcommand fails the same way.

use std::path::PathBuf;

/// Everything a subcommand other than `serve` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A running server holds the data folder (sled and retrace lock it).
    /// `readable_from_server`: the command can read from the server instead
    /// (`replay`, `export`), so the message says how; `verify` cannot.
    #[error(
        "the data folder {} is in use by a running server: stop the server first{}",
        .path.display(),
        server_hint(.readable_from_server)
    )]
    Locked {
        path: PathBuf,
        readable_from_server: bool,
    },
    /// The path names nothing, or a folder no retrace server has used.
    #[error("{} is not a retrace data folder ({why})", .path.display())]
    NotADataFolder { path: PathBuf, why: String },
    /// Arguments that do not fit together.
    #[error("{0}")]
    Usage(String),
    #[error("no execution {id} in {source_name}")]
    UnknownExecution { id: String, source_name: String },
    #[error("{0}")]
    Engine(#[source] retrace_engine::Error),
    /// An event that does not fit the state folded so far.
    #[error("{0}")]
    Replay(#[from] retrace_engine::machine::ApplyError),
    /// `start --wait`: the execution ended other than completed.
    #[error("execution {id} ended {status}")]
    Ended { id: String, status: String },
    /// A line of a JSON-lines export that is not an exported event.
    #[error("{}:{line}: {why}", .path.display())]
    BadExport {
        path: PathBuf,
        line: u64,
        why: String,
    },
    /// `workflow validate` offline: the problems the engine's own compiler
    /// found, listed as the server lists them.
    #[error(
        "{}: invalid workflow definition ({} problem{}){}",
        .file.display(),
        .problems.len(),
        plural(.problems.len()),
        problems_text(.problems)
    )]
    InvalidWorkflow {
        file: PathBuf,
        problems: Vec<retrace_engine::model::Problem>,
    },
    /// An error answer from the server, as its JSON body says.
    #[error("{code}: {message}{}", details_text(.details))]
    Server {
        status: u16,
        code: String,
        message: String,
        details: Vec<serde_json::Value>,
    },
    /// The server could not be reached, or did not answer as the API does.
    #[error("{url}: {why}")]
    Http { url: String, why: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// Something the command line depends on (the async runtime, a signal
    /// handler, the HTTP client, its own output) failed.
    #[error("{what}: {source}")]
    Setup {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<retrace_engine::Error> for Error {
    fn from(e: retrace_engine::Error) -> Self {
        use retrace_engine::Error as E;
        match e {
            E::Locked { path, .. } => Error::Locked {
                path,
                readable_from_server: true,
            },
            E::NotADataFolder { path, why } => Error::NotADataFolder { path, why },
            e => Error::Engine(e),
        }
    }
}

impl Error {
    /// The process's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Locked { .. } | Error::Usage(_) => 2,
            _ => 1,
        }
    }

    pub fn setup(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Setup {
            what: what.into(),
            source: source.into(),
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// `details` of an error answer, one per line (`invalid_workflow` and
/// `invalid_input` list every problem there).
fn details_text(details: &[serde_json::Value]) -> String {
    details
        .iter()
        .map(|d| {
            let path = d.get("path").and_then(|p| p.as_str()).unwrap_or("");
            let message = d
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| d.to_string());
            detail_line(path, &message)
        })
        .collect()
}

/// What a command refused a locked folder can do instead.
fn server_hint(readable_from_server: &bool) -> &'static str {
    if *readable_from_server {
        ", or read from it with --server <url>"
    } else {
        ""
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// A definition's problems, one per line, as [`details_text`] shows the
/// server's `invalid_workflow` details.
fn problems_text(problems: &[retrace_engine::model::Problem]) -> String {
    problems
        .iter()
        .map(|p| detail_line(&p.path, &p.message))
        .collect()
}

fn detail_line(path: &str, message: &str) -> String {
    if path.is_empty() {
        format!("\n  - {message}")
    } else {
        format!("\n  - {path}: {message}")
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
