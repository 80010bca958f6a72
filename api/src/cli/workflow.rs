//! `retrace workflow apply` and `retrace workflow validate`: a definition
//! file sent to a server, or — `validate` without `--server` — checked on
//! this machine with the engine's own compiler, which is what the server
//! runs too, so every problem is listed with the path the server would give.
//!
//! Owns reading a definition file and choosing its format by its name
//! (YAML for `.yaml`/`.yml`, JSON otherwise). It must never check a
//! definition itself: the engine's model does, here or on the server.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use retrace_engine::model::{DOCUMENT_BYTES_MAX, Problem, Workflow};
use serde_json::{Value, json};

use super::client::{Client, ServerArg, TokenArg};
use super::error::{Error, Result};
use super::write_line as write;

/// `retrace workflow …`.
#[derive(Debug, Clone, Subcommand)]
pub enum WorkflowCommand {
    /// Defines a workflow on a server from a file (JSON, or YAML for
    /// `.yaml`/`.yml`).
    Apply(ApplyArgs),
    /// Checks a workflow file without storing it: on this machine, or on a
    /// server with --server. Exit 1 when it has problems (each is listed).
    Validate(ValidateArgs),
}

/// Options of `retrace workflow apply`.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// The definition: JSON, or YAML when the name ends in `.yaml` or `.yml`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub server: ServerArg,
    /// Print the server's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `retrace workflow validate`.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// The definition: JSON, or YAML when the name ends in `.yaml` or `.yml`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Ask this server instead of checking on this machine (its build
    /// decides). `RETRACE_SERVER` is not read here: a check never needs a
    /// running server unless asked.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    #[command(flatten)]
    pub token: TokenArg,
    /// Print the answer as JSON (`{"valid", "name", "version"}`, as the
    /// server answers).
    #[arg(long)]
    pub json: bool,
}

/// The two spellings of a definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Yaml,
}

impl Format {
    /// YAML when the file's name ends in `.yaml` or `.yml`, JSON otherwise.
    fn of(file: &Path) -> Format {
        match file.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => {
                Format::Yaml
            }
            _ => Format::Json,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Yaml => "application/yaml",
        }
    }
}

pub async fn run(command: WorkflowCommand, out: &mut impl Write) -> Result<()> {
    match command {
        WorkflowCommand::Apply(args) => {
            let client = args.server.client()?;
            let answer = send(&client, "/v1/workflows", &args.file).await?;
            report(&answer, args.json, out)
        }
        WorkflowCommand::Validate(args) => {
            let answer = match &args.server {
                Some(server) => {
                    let client = Client::connect(server, &args.token)?;
                    send(&client, "/v1/workflows/validate", &args.file).await?
                }
                None => validate_here(&args.file)?,
            };
            report(&answer, args.json, out)
        }
    }
}

/// Reads a definition: at most one byte past the largest a definition may
/// be, so a huge file (or an endless pipe) is never read whole, and one
/// past the limit is refused here, as the server would.
fn read(file: &Path) -> Result<Vec<u8>> {
    let cannot = |e| Error::io(format!("cannot read {}", file.display()), e);
    let mut body = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(DOCUMENT_BYTES_MAX as u64 + 1).read_to_end(&mut body))
        .map_err(cannot)?;
    if body.len() > DOCUMENT_BYTES_MAX {
        return Err(Error::InvalidWorkflow {
            file: file.to_owned(),
            problems: vec![Problem::new(
                "",
                format!(
                    "the document is more than {DOCUMENT_BYTES_MAX} bytes; a definition may be \
                     at most {DOCUMENT_BYTES_MAX} bytes (1 MiB)"
                ),
            )],
        });
    }
    Ok(body)
}

async fn send(client: &Client, path: &str, file: &Path) -> Result<Value> {
    let body = read(file)?;
    client
        .post_bytes(path, Format::of(file).content_type(), body)
        .await
}

/// Checks the file with the engine's compiler; the answer the server's
/// validate would give, or every problem it would list.
fn validate_here(file: &Path) -> Result<Value> {
    let body = read(file)?;
    let checked = match Format::of(file) {
        Format::Json => Workflow::from_json(&body),
        Format::Yaml => match std::str::from_utf8(&body) {
            Ok(text) => Workflow::from_yaml(text),
            Err(e) => {
                return Err(Error::InvalidWorkflow {
                    file: file.to_owned(),
                    problems: vec![Problem::new(
                        "",
                        format!("a YAML definition must be UTF-8: {e}"),
                    )],
                });
            }
        },
    };
    match checked {
        Ok(workflow) => Ok(json!({
            "valid": true,
            "name": workflow.name(),
            "version": workflow.version(),
        })),
        Err(e) => Err(Error::InvalidWorkflow {
            file: file.to_owned(),
            problems: e.problems,
        }),
    }
}

/// `workflow <name> version <hash>: created | unchanged | valid`, or the
/// answer as JSON; a server's warnings (workflows the definition names that
/// it does not know) go to stderr either way.
fn report(answer: &Value, json: bool, out: &mut impl Write) -> Result<()> {
    for warning in answer
        .get("warnings")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        let field = |name: &str| warning.get(name).and_then(Value::as_str).unwrap_or("");
        let path = match field("path") {
            "" => String::new(),
            path => format!("{path}: "),
        };
        // Nothing useful can be done when stderr is closed.
        let _ = writeln!(
            std::io::stderr().lock(),
            "retrace: warning: {path}{}",
            field("message")
        );
    }
    if json {
        return write(out, answer.to_string());
    }
    let text = |field: &str| answer.get(field).and_then(Value::as_str).unwrap_or("?");
    let outcome = match answer.get("created").and_then(Value::as_bool) {
        Some(true) => "created",
        Some(false) => "unchanged (already defined)",
        None => "valid",
    };
    write(
        out,
        format!(
            "workflow {} version {}: {outcome}",
            text("name"),
            text("version")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_by_extension_json_otherwise() {
        assert_eq!(Format::of(Path::new("a.yaml")), Format::Yaml);
        assert_eq!(Format::of(Path::new("a.YML")), Format::Yaml);
        assert_eq!(Format::of(Path::new("a.json")), Format::Json);
        assert_eq!(Format::of(Path::new("workflow")), Format::Json);
    }
}
