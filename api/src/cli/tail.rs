//! `retrace tail`: follows an execution's event stream, one line per event,
//! until its terminal event; the exit code says how it ended (0 completed,
//! 1 otherwise). A stream that drops — the server restarted, the connection
//! broke — is opened again with `Last-Event-ID` set to the last seq printed,
//! so every event is printed once, with a bounded backoff, for as long as
//! `--reconnect-for` allows without an answer.
//!
//! Owns the reconnecting and the line format. It must never print an event
//! twice or skip one, and never retry what the server refused (an unknown
//! execution, an error event): only a server that is away is waited for.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Args;
use retrace_engine::ExecutionId;
use serde::Deserialize;

use super::client::{Client, EventStream, ServerArg, server_error};
use super::diff::compact;
use super::error::{Error, Result};
use super::history::EventLine;
use super::remote::{TERMINAL, ended, execution_id, is_final};
use super::write_line as write;

/// Options of `retrace tail`.
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// The execution id.
    #[arg(value_name = "EXECUTION")]
    pub execution: String,
    /// Start after this seq instead of at the first event.
    #[arg(long, value_name = "SEQ")]
    pub after: Option<u64>,
    /// When the stream drops (the server restarted, the connection broke),
    /// keep trying to reconnect for this many seconds without an answer
    /// before giving up; 0 gives up at once.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub reconnect_for: u64,
    #[command(flatten)]
    pub server: ServerArg,
    /// One event per line as the server sends it (the events page's JSON).
    #[arg(long)]
    pub json: bool,
}

/// The first pause before reconnecting, doubled up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Follows the execution to its end: `Ok` when it completed,
/// [`Error::Ended`] when it ended otherwise.
pub async fn run(args: TailArgs, out: &mut impl Write) -> Result<()> {
    let client = args.server.client()?;
    let id = execution_id(&args.execution)?;
    let mut tail = Tail {
        client,
        id,
        path: format!("/v1/executions/{id}/events/stream"),
        last: args.after,
        json: args.json,
    };
    let patience = Duration::from_secs(args.reconnect_for);
    // The first connection fails outright: a wrong URL or id is said at once.
    let mut stream = tail.connect().await?;
    loop {
        let before = tail.last;
        let why = match tail.follow(&mut stream, out).await? {
            End::Terminal(status) => return ended(id, status),
            End::Dropped(e) => format!("the connection dropped: {}", reason(&e)),
            End::Closed => match tail.closed().await {
                Ok(Some(Now { status, last_seq })) => {
                    // Ended, and nothing is left to print — or the server
                    // just said there is nothing more for us.
                    if tail.last.unwrap_or(0) >= last_seq || tail.last == before {
                        return ended(id, status);
                    }
                    "the stream ended before the last event".into()
                }
                Ok(None) => "the stream ended before the execution did".into(),
                Err(e) if away(&e) => {
                    format!(
                        "the stream ended, and the server does not answer: {}",
                        reason(&e)
                    )
                }
                Err(e) => return Err(e),
            },
        };
        stream = tail.reconnect(why, patience).await?;
    }
}

/// How a stream ended.
#[derive(Debug)]
enum End {
    /// After the execution's terminal event: its final status.
    Terminal(String),
    /// The server ended it before the terminal event.
    Closed,
    /// The connection broke.
    Dropped(Error),
}

#[derive(Debug)]
struct Tail {
    client: Client,
    id: ExecutionId,
    path: String,
    /// The seq of the last event printed (or `--after`).
    last: Option<u64>,
    json: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Now {
    status: String,
    last_seq: u64,
}

impl Tail {
    fn url(&self) -> String {
        format!("{}{}", self.client.base(), self.path)
    }

    async fn connect(&self) -> Result<EventStream> {
        self.client.stream_after(&self.path, self.last).await
    }

    /// Prints each event of `stream` not printed before, until it ends.
    async fn follow(&mut self, stream: &mut EventStream, out: &mut impl Write) -> Result<End> {
        loop {
            let frame = match stream.next().await {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(End::Closed),
                Err(e) => return Ok(End::Dropped(e)),
            };
            if frame.event.as_deref() == Some("error") {
                return Err(server_error(&self.url(), 500, frame.data.as_bytes()));
            }
            let event: EventLine = serde_json::from_str(&frame.data).map_err(|e| Error::Http {
                url: self.url(),
                why: format!("an event that is not what the API sends: {e}"),
            })?;
            if self.last.is_some_and(|last| event.seq <= last) {
                continue;
            }
            let line = if self.json {
                frame.data
            } else {
                format!(
                    "{:>5}  {}  {}  {}",
                    event.seq,
                    event.at,
                    event.kind,
                    compact(&event.data)
                )
            };
            write(out, line)?;
            out.flush()
                .map_err(|e| Error::io("cannot write to standard output", e))?;
            self.last = Some(event.seq);
            if TERMINAL.contains(&event.kind.as_str()) {
                let status = event.kind.trim_start_matches("execution_").to_owned();
                return Ok(End::Terminal(status));
            }
        }
    }

    /// After a stream the server ended: the execution when it has ended
    /// (the server sends nothing to a client that has seen the end, as with
    /// `--after` past it), `None` while it runs on.
    async fn closed(&self) -> Result<Option<Now>> {
        let now: Now = self
            .client
            .get(&format!("/v1/executions/{}", self.id))
            .await?;
        Ok(is_final(&now.status).then_some(now))
    }

    /// Opens the stream again after the last event printed, backing off
    /// while the server does not answer, for at most `patience`.
    async fn reconnect(&self, mut why: String, patience: Duration) -> Result<EventStream> {
        let since = Instant::now();
        let mut backoff = BACKOFF_MIN;
        loop {
            let left = patience.saturating_sub(since.elapsed());
            if left.is_zero() {
                return Err(Error::Http {
                    url: self.url(),
                    why: format!(
                        "{why}; gave up after {} s without an answer (--reconnect-for)",
                        patience.as_secs()
                    ),
                });
            }
            let pause = backoff.min(left);
            note(&format!(
                "{why}; reconnecting in {} ms{}",
                pause.as_millis(),
                match self.last {
                    Some(seq) => format!(", to resume after seq {seq}"),
                    None => String::new(),
                }
            ));
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            match self.connect().await {
                Ok(stream) => {
                    note("reconnected");
                    return Ok(stream);
                }
                Err(e) if away(&e) => why = reason(&e),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Errors worth waiting out: the server is away or shutting down.
fn away(e: &Error) -> bool {
    match e {
        Error::Http { .. } => true,
        Error::Server { status, .. } => *status == 503,
        _ => false,
    }
}

/// Why a request failed, without the URL (the same one each time).
fn reason(e: &Error) -> String {
    match e {
        Error::Http { why, .. } => why.clone(),
        e => e.to_string(),
    }
}

/// A status line on stderr (stdout is the events).
fn note(line: &str) {
    // Nothing useful can be done when stderr is closed.
    let _ = writeln!(std::io::stderr().lock(), "retrace tail: {line}");
}
