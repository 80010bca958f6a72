//! The `http_request` fuzz target's body: one HTTP request, decoded from
//! the fuzzer's bytes ([`HttpInput`]), sent through the API's real router to
//! a process-wide engine seeded with workflows, executions and an agent.
//!
//! Owns the input format, the seeded world and the properties every answer
//! must have. It must never touch a real socket or a real clock, and never
//! wait without a bound.

use super::{T0_MS, capped};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use futures::StreamExt;
use retrace_api::error::Code;
use retrace_api::{ApiConfig, AppState};
use retrace_engine::ExecutionId;
use retrace_engine::agents::AgentId;
use retrace_engine::breakers::BreakerState;
use retrace_engine::clock::SimClock;
use retrace_engine::machine;
use retrace_engine::runtime::{Engine, EngineConfig, StartRequest};
use retrace_engine::store::tokens::{NewToken, Role};
use retrace_journal::store::memory::MemoryStore;
use retrace_journal::{EventLog, Options};
use serde_json::{Value, json};
use tower::ServiceExt;

/// One endpoint of the API's router as `http_request` calls it. The `{…}`
/// segments of `path` are its parameters, in order: `{execution}`,
/// `{agent}`, `{task}`, `{workflow}`, `{version}`, `{event}`, `{token}`,
/// `{schedule}`, `{capability}` and `{webhook}` take an id, a name or a
/// version; `{raw}`
/// is a whole path, under the method `*` (see [`RAW_METHODS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
}

const fn endpoint(method: &'static str, path: &'static str) -> Endpoint {
    Endpoint { method, path }
}

/// The router's table (`retrace_api::router::routes()`), by index, and a
/// last one for any path. The seeds name endpoints by index: add new ones
/// before `{raw}`, and rewrite the seeds (`fuzz/README.md`).
pub const ENDPOINTS: [Endpoint; 64] = [
    endpoint("POST", "/v1/workflows"),
    endpoint("POST", "/v1/workflows/validate"),
    endpoint("GET", "/v1/workflows"),
    endpoint("GET", "/v1/workflows/{workflow}"),
    endpoint("GET", "/v1/workflows/{workflow}/versions/{version}"),
    endpoint("POST", "/v1/executions"),
    endpoint("GET", "/v1/executions"),
    endpoint("GET", "/v1/executions/{execution}"),
    endpoint("GET", "/v1/executions/{execution}/events"),
    endpoint("GET", "/v1/executions/{execution}/events/stream"),
    endpoint("POST", "/v1/executions/{execution}/pause"),
    endpoint("POST", "/v1/executions/{execution}/resume"),
    endpoint("POST", "/v1/executions/{execution}/cancel"),
    endpoint("POST", "/v1/executions/{execution}/terminate"),
    endpoint("POST", "/v1/executions/{execution}/retry"),
    endpoint("POST", "/v1/executions/{execution}/skip"),
    endpoint("POST", "/v1/executions/{execution}/redrive"),
    endpoint("POST", "/v1/executions/{execution}/signals/{event}"),
    endpoint("POST", "/v1/events/{event}"),
    endpoint("GET", "/v1/events/stream"),
    endpoint("POST", "/v1/agents"),
    endpoint("GET", "/v1/agents"),
    endpoint("GET", "/v1/agents/{agent}"),
    endpoint("DELETE", "/v1/agents/{agent}"),
    endpoint("POST", "/v1/agents/{agent}/heartbeat"),
    endpoint("POST", "/v1/tasks/poll"),
    endpoint("POST", "/v1/tasks/{task}/complete"),
    endpoint("POST", "/v1/tasks/{task}/fail"),
    endpoint("POST", "/v1/tasks/{task}/heartbeat"),
    endpoint("GET", "/healthz"),
    endpoint("GET", "/readyz"),
    endpoint("GET", "/metrics"),
    endpoint("GET", "/v1/metrics"),
    endpoint("GET", "/openapi.json"),
    endpoint("POST", "/v1/tokens"),
    endpoint("GET", "/v1/tokens"),
    endpoint("GET", "/v1/tokens/{token}"),
    endpoint("DELETE", "/v1/tokens/{token}"),
    endpoint("POST", "/v1/tasks/report"),
    endpoint("GET", "/v1/executions/{execution}/replay"),
    endpoint("GET", "/v1/executions/{execution}/verify"),
    endpoint("GET", "/v1/workflows/{workflow}/versions/{version}/graph"),
    endpoint("POST", "/v1/executions/signal-with-start"),
    endpoint("GET", "/"),
    endpoint("GET", "/ui/{file}"),
    endpoint("POST", "/v1/schedules"),
    endpoint("GET", "/v1/schedules"),
    endpoint("GET", "/v1/schedules/{schedule}"),
    endpoint("PATCH", "/v1/schedules/{schedule}"),
    endpoint("DELETE", "/v1/schedules/{schedule}"),
    endpoint("POST", "/v1/schedules/{schedule}/trigger"),
    endpoint("GET", "/v1/breakers"),
    endpoint("GET", "/v1/capabilities/{capability}/breaker"),
    endpoint("PUT", "/v1/capabilities/{capability}/breaker"),
    endpoint("DELETE", "/v1/capabilities/{capability}/breaker"),
    endpoint("GET", "/v1/limits"),
    endpoint("GET", "/v1/capabilities/{capability}/limits"),
    endpoint("PUT", "/v1/capabilities/{capability}/limits"),
    endpoint("DELETE", "/v1/capabilities/{capability}/limits"),
    endpoint("POST", "/v1/webhooks"),
    endpoint("GET", "/v1/webhooks"),
    endpoint("GET", "/v1/webhooks/{webhook}"),
    endpoint("DELETE", "/v1/webhooks/{webhook}"),
    endpoint("*", "{raw}"),
];

/// The methods of the `{raw}` endpoint, by [`HttpInput::extras`]' low 3 bits.
pub const RAW_METHODS: [&str; 8] = [
    "GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "FUZZ",
];

/// A request's `Content-Type`, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// No `Content-Type` header.
    None,
    Fixed(&'static str),
    /// The input's header line, as it is (left out if it is not a valid
    /// header value): any garbage.
    HeaderLine,
}

/// The content types a request can carry, by [`HttpInput::content_type`].
pub const CONTENT_TYPES: [ContentType; 12] = [
    ContentType::None,
    ContentType::Fixed("application/json"),
    ContentType::Fixed("application/json; charset=utf-8"),
    ContentType::Fixed("application/yaml"),
    ContentType::Fixed("text/yaml"),
    ContentType::Fixed("application/x-yaml"),
    ContentType::Fixed("application/cloudevents+json"),
    ContentType::Fixed("APPLICATION/JSON"),
    ContentType::Fixed("text/plain"),
    ContentType::Fixed("application/x-www-form-urlencoded"),
    ContentType::Fixed("application/jsonl"),
    ContentType::HeaderLine,
];

/// A path parameter taken from the input's line ([`HttpInput::sources`]);
/// `1..=3` pick one of the seeded engine's objects instead (see
/// [`SEEDED_WORKFLOWS`] and [`SEEDED_EVENTS`]; ids are the live ones).
pub const SOURCE_INPUT: u8 = 0;
/// [`HttpInput::extras`]: send the header line as `Last-Event-ID`.
pub const EXTRA_LAST_EVENT_ID: u8 = 1 << 3;
/// [`HttpInput::extras`]: send the body's length as `Content-Length`.
pub const EXTRA_CONTENT_LENGTH: u8 = 1 << 4;
/// [`HttpInput::extras`]: send no access token. Without it every request
/// carries the seeded admin's, so tokens are on from the start and an input
/// that makes a token of its own changes nothing for the inputs after it.
pub const EXTRA_NO_TOKEN: u8 = 1 << 5;
/// The seeded admin token's name (one no `{token}` source names).
pub const FUZZ_ADMIN: &str = "fuzz-admin-5e1b";

/// The workflow names `{workflow}` takes with sources 1, 2 and 3 (the third
/// is not seeded: unknown unless an input defined it).
pub const SEEDED_WORKFLOWS: [&str; 3] = ["greet", "gated", "hello"];
/// The event names `{event}` takes with sources 1, 2 and 3: what the first
/// and second seeded executions wait on, and one nothing waits on.
pub const SEEDED_EVENTS: [&str; 3] = ["greeting.approved", "go", "expense.approved"];

/// The token names `{token}` takes with sources 1, 2 and 3 (none exists
/// unless an input made it).
pub const SEEDED_TOKENS: [&str; 3] = ["root", "ops", "nobody"];

/// The schedule ids `{schedule}` takes with sources 1, 2 and 3 (none exists
/// unless an input made it; `docs/api.md`'s is the first).
pub const SEEDED_SCHEDULES: [&str; 3] = ["greet-hourly", "nightly", "nobody"];

/// The capabilities `{capability}` takes with sources 1, 2 and 3: the
/// seeded workflows' (`docs/api.md`'s is the first) and one nothing uses.
/// None has a circuit breaker or limits unless an input set them.
pub const SEEDED_CAPABILITIES: [&str; 3] = ["users.lookup", "work", "nobody"];

/// The webhook ids `{webhook}` takes with sources 1, 2 and 3: none exists
/// (ids are made by the server, and every subscription an input made is
/// deleted before the next input).
pub const SEEDED_WEBHOOKS: [&str; 3] = [
    "01a1fbb0-7c4e-7d11-8b8e-2f4d5c6a7b8c",
    "00000000-0000-0000-0000-000000000000",
    "nobody",
];

/// The dashboard files `{file}` takes with sources 1, 2 and 3 (the third
/// is none).
pub const SEEDED_FILES: [&str; 3] = ["main.js", "style.css", "nothing.js"];

/// The largest request body the router takes in this target (larger is
/// `413`); the largest example workflow fits.
pub const HTTP_BODY_BYTES_MAX: usize = 8 * 1024;

/// One request as `http_request` reads it from its input:
///
/// - byte 0: the endpoint, `ENDPOINTS[b % len]`;
/// - byte 1: the content type, `CONTENT_TYPES[b % len]`;
/// - byte 2: where the path parameters come from, 2 bits each (bits 0-1 the
///   first, 2-3 the second): [`SOURCE_INPUT`] or an existing object `1..=3`;
/// - byte 3: extras: bits 0-2 the method of `{raw}` ([`RAW_METHODS`]),
///   [`EXTRA_LAST_EVENT_ID`], [`EXTRA_CONTENT_LENGTH`], [`EXTRA_NO_TOKEN`];
/// - four lines, each ended by `\n`: the first and second parameter, the
///   query string (without `?`), and a header value;
/// - the body: every byte after the fourth line, where `$ID`, `$AGENT` and
///   `$TASK` stand for the first seeded execution, the agent and the task
///   the first execution waits for (so a poll or a heartbeat can name them).
///
/// A short input leaves the rest zero or empty. Parameters and the query are
/// percent-encoded where they must be (a parameter is always one segment;
/// `%` is kept as it is, so broken escapes get through).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpInput {
    pub endpoint: u8,
    pub content_type: u8,
    pub sources: u8,
    pub extras: u8,
    pub params: [Vec<u8>; 2],
    pub query: Vec<u8>,
    pub header: Vec<u8>,
    pub body: Vec<u8>,
}

impl HttpInput {
    /// Reads an input; every byte string is one.
    pub fn decode(data: &[u8]) -> HttpInput {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let mut rest = data.get(4..).unwrap_or(&[]);
        let mut line = || {
            let (line, tail) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &[][..]),
            };
            rest = tail;
            line.to_vec()
        };
        let params = [line(), line()];
        let query = line();
        let header = line();
        HttpInput {
            endpoint: byte(0),
            content_type: byte(1),
            sources: byte(2),
            extras: byte(3),
            params,
            query,
            header,
            body: rest.to_vec(),
        }
    }

    /// The input that [`HttpInput::decode`] reads back as `self` (newlines
    /// in the lines are left out).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.endpoint, self.content_type, self.sources, self.extras];
        for line in [&self.params[0], &self.params[1], &self.query, &self.header] {
            out.extend(line.iter().filter(|&&b| b != b'\n'));
            out.push(b'\n');
        }
        out.extend_from_slice(&self.body);
        out
    }

    pub fn endpoint(&self) -> Endpoint {
        ENDPOINTS[self.endpoint as usize % ENDPOINTS.len()]
    }

    fn source(&self, param: usize) -> u8 {
        (self.sources >> (2 * param)) & 0b11
    }
}

/// The index of the endpoint `method path` in [`ENDPOINTS`].
pub fn endpoint_index(method: &str, path: &str) -> Option<u8> {
    ENDPOINTS
        .iter()
        .position(|e| e.method == method && e.path == path)
        .and_then(|i| u8::try_from(i).ok())
}

/// The index of a fixed content type in [`CONTENT_TYPES`].
pub fn content_type_index(content_type: Option<&str>) -> Option<u8> {
    let wanted = content_type.map_or(ContentType::None, |c| {
        CONTENT_TYPES
            .iter()
            .copied()
            .find(|t| matches!(t, ContentType::Fixed(f) if *f == c))
            .unwrap_or(ContentType::HeaderLine)
    });
    CONTENT_TYPES
        .iter()
        .position(|t| *t == wanted)
        .and_then(|i| u8::try_from(i).ok())
}

fn percent_encode(bytes: &[u8], keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The characters RFC 3986 allows in a path besides unreserved ones, and `%`.
fn path_char(b: u8) -> bool {
    unreserved(b) || b"!$&'()*+,;=:@/%".contains(&b)
}

/// The ids, names and versions the seeded engine has now, by kind of
/// parameter: what sources 1, 2 and 3 stand for.
#[derive(Debug, Clone)]
struct Existing {
    /// The seeded admin's bearer token.
    bearer: String,
    executions: [String; 3],
    tasks: [String; 3],
    agents: [String; 3],
    versions: [String; 3],
}

impl Existing {
    fn get(&self, kind: &str, choice: usize) -> Option<&str> {
        let choice = choice.min(2);
        Some(match kind {
            "execution" => &self.executions[choice],
            "task" => &self.tasks[choice],
            "agent" => &self.agents[choice],
            "workflow" => SEEDED_WORKFLOWS[choice],
            "version" => &self.versions[choice],
            "event" => SEEDED_EVENTS[choice],
            "token" => SEEDED_TOKENS[choice],
            "file" => SEEDED_FILES[choice],
            "schedule" => SEEDED_SCHEDULES[choice],
            "capability" => SEEDED_CAPABILITIES[choice],
            "webhook" => SEEDED_WEBHOOKS[choice],
            _ => return None,
        })
    }
}

/// What was sent, for failure messages.
#[derive(Debug, Clone)]
struct Sent {
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.uri)?;
        for (name, value) in &self.headers {
            write!(f, "\n{name}: {value}")?;
        }
        write!(f, "\n\n{}", shown(&self.body))
    }
}

/// Bytes for a message: escaped, and cut if long.
fn shown(bytes: &[u8]) -> String {
    const SHOWN_MAX: usize = 2048;
    let cut = &bytes[..bytes.len().min(SHOWN_MAX)];
    let mut text = cut.escape_ascii().to_string();
    if cut.len() < bytes.len() {
        text.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    text
}

/// `body` with `$ID`, `$AGENT` and `$TASK` replaced by the first seeded
/// execution, the agent, and the task of the first execution.
fn substitute(body: &[u8], existing: &Existing) -> Vec<u8> {
    let names: [(&[u8], &str); 3] = [
        (b"$ID", &existing.executions[0]),
        (b"$AGENT", &existing.agents[0]),
        (b"$TASK", &existing.tasks[0]),
    ];
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    'bytes: while let Some(&first) = rest.first() {
        for (name, value) in names {
            if let Some(tail) = rest.strip_prefix(name) {
                out.extend_from_slice(value.as_bytes());
                rest = tail;
                continue 'bytes;
            }
        }
        out.push(first);
        rest = &rest[1..];
    }
    out
}

/// The request `input` stands for, with the seeded objects in `existing`;
/// `None` when no request can carry it (a method that is not a token).
fn build_request(input: &HttpInput, existing: &Existing) -> Option<(Request<Body>, Sent)> {
    let endpoint = input.endpoint();
    let mut uri = String::new();
    let mut rest = endpoint.path;
    let mut param = 0;
    while let (Some(open), Some(close)) = (rest.find('{'), rest.find('}')) {
        uri.push_str(&rest[..open]);
        let kind = &rest[open + 1..close];
        let source = input.source(param);
        let given = input.params.get(param).map_or(&[][..], Vec::as_slice);
        let value = match existing.get(kind, usize::from(source.max(1) - 1)) {
            Some(value) if source != SOURCE_INPUT => value.as_bytes(),
            _ => given,
        };
        if kind == "raw" {
            if value.first() != Some(&b'/') {
                uri.push('/');
            }
            uri.push_str(&percent_encode(value, path_char));
        } else {
            uri.push_str(&percent_encode(value, unreserved));
        }
        rest = &rest[close + 1..];
        param += 1;
    }
    uri.push_str(rest);
    if !input.query.is_empty() {
        uri.push('?');
        uri.push_str(&percent_encode(&input.query, |b| path_char(b) || b == b'?'));
    }
    let method = match endpoint.method {
        "*" => RAW_METHODS[usize::from(input.extras & 0b111)],
        method => method,
    };
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let body = substitute(&input.body, existing);
    let mut headers = Vec::new();
    let header_line = HeaderValue::from_bytes(&input.header).ok();
    match CONTENT_TYPES[usize::from(input.content_type) % CONTENT_TYPES.len()] {
        ContentType::None => {}
        ContentType::Fixed(c) => headers.push((header::CONTENT_TYPE, HeaderValue::from_static(c))),
        ContentType::HeaderLine => {
            if let Some(value) = &header_line {
                headers.push((header::CONTENT_TYPE, value.clone()));
            }
        }
    }
    if input.extras & EXTRA_LAST_EVENT_ID != 0
        && let Some(value) = header_line
    {
        headers.push((HeaderName::from_static("last-event-id"), value));
    }
    if input.extras & EXTRA_CONTENT_LENGTH != 0 {
        headers.push((header::CONTENT_LENGTH, HeaderValue::from(body.len())));
    }
    if input.extras & EXTRA_NO_TOKEN == 0
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {}", existing.bearer))
    {
        headers.push((header::AUTHORIZATION, value));
    }
    let mut builder = Request::builder().method(method.clone()).uri(&uri);
    for (name, value) in &headers {
        builder = builder.header(name, value);
    }
    let request = builder.body(Body::from(body.clone())).ok()?;
    let sent = Sent {
        method,
        uri,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), shown(v.as_bytes())))
            .collect(),
        body,
    };
    Some((request, sent))
}

/// The seeded workflows: `greet` is `docs/api.md`'s example; `gated` waits
/// for an event, then runs a task that pauses the execution when it fails
/// and has a compensation.
const GREET: &str = r#"{
  "name": "greet", "version": "1.0.0",
  "steps": [
    {"id": "lookup", "type": "task", "capability": "users.lookup",
     "input": {"userId": "$.input.userId"}, "output": {"user": "$.output"}, "next": "approval"},
    {"id": "approval", "type": "event", "event": {"name": "greeting.approved"}}
  ]}"#;
const GATED: &str = r#"{
  "name": "gated",
  "steps": [
    {"id": "gate", "type": "event", "event": {"name": "go"}, "next": "work"},
    {"id": "work", "type": "task", "capability": "work", "onFailure": "pause",
     "compensate": {"capability": "undo"}}
  ]}"#;
/// The capabilities of the seeded agent.
const AGENT_CAPABILITIES: [&str; 3] = ["users.lookup", "work", "undo"];

/// How long a task poll waits at most (the engine's cap, so a fuzzed
/// `waitMs` cannot stall an input).
const POLL_WAIT_MAX_MS: u64 = 2;
/// A request that has not answered by then hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the engine may take to finish the work a request left behind.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an SSE stream is given for its first frame.
const SSE_FIRST_FRAME_WAIT: Duration = Duration::from_millis(10);
/// Larger answers are not read.
const RESPONSE_BYTES_MAX: usize = 64 << 20;
/// A fresh engine is seeded after this many inputs or this many events, so
/// what inputs define, start and register does not pile up without end.
const INPUTS_PER_ENGINE: u64 = 2_000;
const EVENTS_PER_ENGINE: u64 = 20_000;

/// The engine every `http_request` input runs against, built on first use.
static HTTP_FIXTURE: Mutex<Option<HttpFixture>> = Mutex::new(None);

/// An engine over an in-memory journal on a frozen simulated clock (no
/// timer or lease ever fires by itself), the router over it, and the
/// objects seeded into it, on a current-thread runtime of its own: nothing
/// of the engine runs between inputs.
#[derive(Debug)]
struct HttpFixture {
    /// Dropped before the runtime that its tasks run on.
    world: HttpWorld,
    runtime: tokio::runtime::Runtime,
}

#[derive(Debug)]
struct HttpWorld {
    router: axum::Router,
    engine: Engine,
    /// The three executions sources 1, 2 and 3 name: waiting for its task
    /// (`greet`), waiting for the event `go` (`gated`), and paused holding
    /// its failed step for `retry` or `skip` (`gated`). An ended one is
    /// replaced before the next input.
    executions: [ExecutionId; 3],
    agent: AgentId,
    versions: [String; 2],
    /// The seeded admin token's secret.
    bearer: String,
    /// How many tasks the runtime has when the engine is idle (its timer and
    /// lease loops).
    idle_tasks: usize,
    inputs: u64,
    /// Set when the engine cannot be trusted to be idle or whole any more:
    /// rebuilt before the next input.
    stale: bool,
}

/// What one input did.
#[derive(Debug)]
enum Outcome {
    /// The input stands for no request.
    NotARequest,
    /// No answer within [`REQUEST_TIMEOUT`].
    Hung(Sent),
    Answered(Exchange),
}

#[derive(Debug)]
struct Exchange {
    sent: Sent,
    status: StatusCode,
    content_type: Option<String>,
    /// The whole body, or an SSE stream's first frame (if any came).
    body: Result<Vec<u8>, String>,
    sse: bool,
    /// The journal's last position before the request and once the engine
    /// was idle again after it.
    before: u64,
    after: u64,
    /// Whether the engine went idle again within [`SETTLE_TIMEOUT`].
    settled: bool,
}

/// Target `http_request`: the bytes are one request ([`HttpInput`]), sent
/// through the API's real router in-process to an engine seeded with two
/// workflows, three executions and an agent (one engine per process, shared
/// by all inputs). The router must answer, and never with a `5xx` (a
/// panicking handler is a `500`); every error answer has the JSON error
/// shape with a code its status allows (`docs/api.md`); a `4xx` records
/// nothing in the journal and leaves no work running; a JSON answer is JSON.
pub fn http_request(data: &[u8]) {
    let input = HttpInput::decode(capped(data));
    let outcome = {
        let mut fixture = HTTP_FIXTURE.lock().unwrap_or_else(|poisoned| {
            // A failed check panicked after the exchange; the engine is
            // whole, but start again anyway.
            let mut fixture = poisoned.into_inner();
            if let Some(f) = fixture.as_mut() {
                f.world.stale = true;
            }
            fixture
        });
        HTTP_FIXTURE.clear_poison();
        let fixture = ready_fixture(&mut fixture);
        let HttpFixture { world, runtime } = fixture;
        runtime.block_on(world.exchange(&input))
    };
    match outcome {
        Outcome::NotARequest => {}
        Outcome::Hung(sent) => panic!("no answer within {REQUEST_TIMEOUT:?} to\n{sent}"),
        Outcome::Answered(exchange) => check_exchange(&exchange),
    }
}

/// The fixture, (re)built if there is none or it is stale or worn, with its
/// seeded objects topped up for the next input.
fn ready_fixture(slot: &mut Option<HttpFixture>) -> &mut HttpFixture {
    let mut fixture = match slot.take() {
        Some(fixture) if !fixture.runtime.block_on(fixture.world.worn()) => fixture,
        old => {
            // The old engine goes before the new one opens.
            drop(old);
            HttpFixture::build()
        }
    };
    let HttpFixture { world, runtime } = &mut fixture;
    if let Err(error) = runtime.block_on(world.top_up()) {
        panic!("the seeded executions and agent cannot be replaced: {error:#}");
    }
    slot.insert(fixture)
}

impl HttpFixture {
    fn build() -> HttpFixture {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => panic!("no tokio runtime for the http_request target: {error}"),
        };
        let world = match runtime.block_on(HttpWorld::open()) {
            Ok(world) => world,
            Err(error) => panic!("the http_request target's engine does not open: {error:#}"),
        };
        HttpFixture { world, runtime }
    }
}

/// Waits (up to [`SETTLE_TIMEOUT`]) until the runtime runs no more than
/// `idle_tasks` tasks: the engine has finished the work a request left
/// behind (continuations, children, snapshots). Whether it did.
async fn settle(idle_tasks: usize) -> bool {
    let metrics = tokio::runtime::Handle::current().metrics();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        for _ in 0..32 {
            if metrics.num_alive_tasks() <= idle_tasks {
                return true;
            }
            tokio::task::yield_now().await;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // Work waiting for the journal's writer thread.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

impl HttpWorld {
    async fn open() -> anyhow::Result<HttpWorld> {
        let journal = EventLog::in_memory(MemoryStore::new(), Options::default())?;
        let mut config = EngineConfig::journal(Arc::new(journal), Arc::new(SimClock::new(T0_MS)));
        config.agents.poll_wait_max_ms = POLL_WAIT_MAX_MS;
        let engine = Engine::open(config).await?;
        for _ in 0..32 {
            tokio::task::yield_now().await;
        }
        let idle_tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        let api = ApiConfig {
            max_body_bytes: HTTP_BODY_BYTES_MAX,
            sse_keep_alive: Duration::from_secs(3600),
            poll_wait_ms_default: POLL_WAIT_MAX_MS,
            ..ApiConfig::default()
        };
        let router = retrace_api::app(AppState::new(engine.clone(), api));
        let greet = engine.define_json(GREET.as_bytes()).await?;
        let gated = engine.define_json(GATED.as_bytes()).await?;
        let versions = [
            greet.workflow.version().to_owned(),
            gated.workflow.version().to_owned(),
        ];
        let admin = NewToken {
            name: FUZZ_ADMIN.to_owned(),
            role: Role::Admin,
            capabilities: None,
            expires_at_ms: None,
        };
        let (_, bearer) = engine.create_token(admin, None, None).await?;
        let agent = register_agent(&engine)?;
        let placeholder = ExecutionId::from_bytes([0; 16]);
        let mut world = HttpWorld {
            router,
            engine,
            executions: [placeholder; 3],
            agent,
            versions,
            bearer,
            idle_tasks,
            inputs: 0,
            stale: false,
        };
        for slot in 0..3 {
            world.executions[slot] = world.start_slot(slot).await?;
        }
        if !settle(world.idle_tasks).await {
            anyhow::bail!("the seeded engine does not go idle");
        }
        Ok(world)
    }

    /// Starts the execution of `slot` (see [`HttpWorld::executions`]).
    async fn start_slot(&self, slot: usize) -> anyhow::Result<ExecutionId> {
        let (workflow, version, input) = match slot {
            0 => ("greet", &self.versions[0], json!({"userId": 7})),
            _ => ("gated", &self.versions[1], json!({})),
        };
        let started = self
            .engine
            .start(StartRequest {
                workflow: workflow.to_owned(),
                // Inputs may define newer versions.
                version: Some(version.clone()),
                input,
                idempotency_key: None,
                priority: None,
                tags: Default::default(),
            })
            .await?;
        if slot == 2 {
            // Past the gate, its task fails for good: `onFailure: pause`.
            // It must be handed out for that, so a breaker an input opened
            // on its capability goes first.
            if let Ok(b) = self.engine.breaker("work")
                && b.state != BreakerState::Closed
            {
                self.engine.remove_breaker("work", None, None).await?;
            }
            self.engine
                .signal(started.id, "go", Value::Null, None)
                .await?;
            let state = self.engine.state(started.id).await?;
            let task = machine::pending_effects(&state)
                .into_iter()
                .find_map(|e| match e {
                    machine::Effect::Task { task, .. } => Some(task),
                    _ => None,
                })
                .ok_or_else(|| anyhow::anyhow!("the gated execution has no task past its gate"))?;
            let mut error = machine::ErrorInfo::new("seeded", "failed for the fuzz target");
            error.retryable = Some(false);
            self.engine.fail_task(&task, error).await?;
            let status = self.engine.state(started.id).await?.status;
            anyhow::ensure!(
                status == machine::Status::Paused,
                "the gated execution is {}, not paused, after its task failed",
                status.as_str()
            );
        }
        Ok(started.id)
    }

    /// Replaces what inputs ended or removed: an ended execution, the agent.
    async fn top_up(&mut self) -> anyhow::Result<()> {
        // A subscription an input made keeps a delivery loop alive (so the
        // engine would never look idle) and would post the next inputs'
        // events to whatever address it names: it goes first.
        for webhook in self.engine.webhooks() {
            self.engine
                .delete_webhook(&webhook.webhook.id, None, None)
                .await?;
        }
        if self.engine.agents().get(&self.agent).is_none() {
            self.agent = register_agent(&self.engine)?;
        }
        for slot in 0..3 {
            let ended = self
                .engine
                .summary(self.executions[slot])
                .is_none_or(|s| s.status.is_terminal());
            if ended {
                self.executions[slot] = self.start_slot(slot).await?;
            }
        }
        if !self.quiesce().await {
            anyhow::bail!("the engine does not go idle after a top-up");
        }
        Ok(())
    }

    /// Waits (up to [`SETTLE_TIMEOUT`] each) until the engine has finished
    /// the work a request left behind ([`settle`]) and, while any circuit
    /// breaker or capability limit exists, until the journal stops moving:
    /// the engine records a breaker's change of state after the request
    /// that caused it, from a task that is always alive (so `settle` cannot
    /// see it), and a limit may let a held task go after it. Whether it
    /// did.
    async fn quiesce(&self) -> bool {
        if !settle(self.idle_tasks).await {
            return false;
        }
        if self.engine.breakers().is_ok_and(|b| b.is_empty())
            && self.engine.capability_limits().is_empty()
        {
            return true;
        }
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut last = self.last_position().await;
        let mut unchanged = 0;
        while unchanged < 2 {
            if Instant::now() >= deadline {
                return false;
            }
            for _ in 0..32 {
                tokio::task::yield_now().await;
            }
            // The journal's writer thread.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let now = self.last_position().await;
            if now == last {
                unchanged += 1;
            } else {
                (last, unchanged) = (now, 0);
            }
        }
        true
    }

    /// Whether the next input needs a fresh engine.
    async fn worn(&self) -> bool {
        self.stale
            || self.inputs >= INPUTS_PER_ENGINE
            || self.last_position().await >= EVENTS_PER_ENGINE
    }

    /// The journal's newest position (a failed read counts as "moved on").
    async fn last_position(&self) -> u64 {
        self.engine.read().last_position().await.unwrap_or(u64::MAX)
    }

    /// The task the execution of `slot` waits for, or the id its first task
    /// had.
    async fn task_of(&self, slot: usize) -> String {
        let id = self.executions[slot];
        let outstanding = match self.engine.state(id).await {
            Ok(state) => machine::pending_effects(&state)
                .into_iter()
                .find_map(|e| match e {
                    machine::Effect::Task { task, .. } => Some(task),
                    _ => None,
                }),
            Err(_) => None,
        };
        outstanding.unwrap_or_else(|| format!("{id}.1.1"))
    }

    async fn existing(&self) -> Existing {
        // Well-formed ids of nothing.
        let no_execution = "0190a1fb-9628-7012-96b6-9bd448d552cf";
        let no_agent = "6f1c3a52-8f0e-4c55-9d2a-4a3b5c6d7e8f";
        Existing {
            bearer: self.bearer.clone(),
            executions: self.executions.map(|id| id.to_string()),
            tasks: [
                self.task_of(0).await,
                self.task_of(2).await,
                format!("{no_execution}.1.1"),
            ],
            agents: [
                self.agent.to_string(),
                self.agent.to_string(),
                no_agent.to_owned(),
            ],
            versions: [
                self.versions[0].clone(),
                self.versions[1].clone(),
                "0".repeat(64),
            ],
        }
    }

    /// Sends the request `input` stands for and reads the answer.
    async fn exchange(&mut self, input: &HttpInput) -> Outcome {
        self.inputs += 1;
        let existing = self.existing().await;
        let Some((request, sent)) = build_request(input, &existing) else {
            return Outcome::NotARequest;
        };
        let before = self.last_position().await;
        let answered = tokio::time::timeout(REQUEST_TIMEOUT, self.router.clone().oneshot(request));
        let response = match answered.await {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(_) => {
                self.stale = true;
                return Outcome::Hung(sent);
            }
        };
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let sse = content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("text/event-stream"));
        let body = if sse {
            // A stream may never end: its first frame, if one comes soon.
            let mut frames = response.into_body().into_data_stream();
            match tokio::time::timeout(SSE_FIRST_FRAME_WAIT, frames.next()).await {
                Ok(Some(Ok(frame))) => Ok(frame.to_vec()),
                Ok(Some(Err(error))) => Err(error.to_string()),
                Ok(None) | Err(_) => Ok(Vec::new()),
            }
        } else {
            let read = axum::body::to_bytes(response.into_body(), RESPONSE_BYTES_MAX);
            match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
                Ok(Ok(bytes)) => Ok(bytes.to_vec()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => {
                    self.stale = true;
                    return Outcome::Hung(sent);
                }
            }
        };
        let settled = self.quiesce().await;
        if !settled {
            // Work that does not end (a workflow that loops for ever, say):
            // the next input gets a fresh engine.
            self.stale = true;
        }
        Outcome::Answered(Exchange {
            sent,
            status,
            content_type,
            body,
            sse,
            before,
            after: self.last_position().await,
            settled,
        })
    }
}

fn register_agent(engine: &Engine) -> anyhow::Result<AgentId> {
    let capabilities: Vec<String> = AGENT_CAPABILITIES.map(str::to_owned).to_vec();
    Ok(engine
        .agents()
        .register_with("fuzz-agent", &capabilities, None, Some(FUZZ_ADMIN))?)
}

/// Checks an error body: `{"error":{"code","message","details"?}}`, nothing
/// else, with one of the API's codes ([`Code::ALL`], the list `docs/api.md`
/// and the OpenAPI document show) answered with the status that code
/// implies (any code, without a status), and `details` only where
/// `docs/api.md` says (each `{"path","message"}`). Returns the code.
fn check_error_body(status: Option<StatusCode>, body: &[u8]) -> Result<String, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let top = value.as_object().ok_or("the body is not an object")?;
    if top.len() != 1 {
        return Err("the body has members besides `error`".into());
    }
    let error = top
        .get("error")
        .and_then(Value::as_object)
        .ok_or("`error` is missing or not an object")?;
    if let Some(other) = error
        .keys()
        .find(|k| !matches!(k.as_str(), "code" | "message" | "details"))
    {
        return Err(format!("`error` has a member `{other}`"));
    }
    let code = error
        .get("code")
        .and_then(Value::as_str)
        .ok_or("`error.code` is missing or not a string")?;
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .ok_or("`error.message` is missing or not a string")?;
    if message.is_empty() {
        return Err("`error.message` is empty".into());
    }
    if let Some(details) = error.get("details") {
        if !matches!(
            code,
            "invalid_workflow"
                | "invalid_schedule"
                | "invalid_breaker"
                | "invalid_limits"
                | "invalid_webhook"
                | "invalid_input"
        ) {
            return Err(format!("`details` on a `{code}` error"));
        }
        let details = details.as_array().ok_or("`details` is not an array")?;
        for detail in details {
            let fields = detail.as_object().ok_or("a detail is not an object")?;
            let well_formed = fields.len() == 2
                && fields.get("path").is_some_and(Value::is_string)
                && fields.get("message").is_some_and(Value::is_string);
            if !well_formed {
                return Err(format!(
                    "a detail is not {{\"path\",\"message\"}}: {detail}"
                ));
            }
        }
    }
    let known = Code::ALL.into_iter().find(|c| c.as_str() == code);
    match (known, status) {
        (None, _) => Err(format!("the code `{code}` is not documented")),
        (Some(known), Some(status)) if known.status() != status => Err(format!(
            "the code `{code}` does not go with the status {status}"
        )),
        _ => Ok(code.to_owned()),
    }
}

/// The properties of one answer (see [`http_request`]).
fn check_exchange(x: &Exchange) {
    let answer = || {
        format!(
            "request:\n{}\nanswer: {} ({})\n{}",
            x.sent,
            x.status,
            x.content_type.as_deref().unwrap_or("no content type"),
            match &x.body {
                Ok(body) => shown(body),
                Err(error) => format!("(unreadable: {error})"),
            }
        )
    };
    assert!(
        !x.status.is_server_error(),
        "the server failed (a panic is a 500)\n{}",
        answer()
    );
    let json = x
        .content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/json"));
    let body = match &x.body {
        Ok(body) => body.as_slice(),
        Err(error) => panic!("the answer cannot be read: {error}\n{}", answer()),
    };
    if x.status.is_client_error() {
        // An answer to HEAD may leave its body out.
        if !(x.sent.method == Method::HEAD && body.is_empty()) {
            assert!(json, "an error answer that is not JSON\n{}", answer());
            if let Err(why) = check_error_body(Some(x.status), body) {
                panic!("an error answer of the wrong shape: {why}\n{}", answer());
            }
        }
        assert_eq!(
            x.before,
            x.after,
            "a refused request changed the journal (last position {} → {})\n{}",
            x.before,
            x.after,
            answer()
        );
        assert!(
            x.settled,
            "a refused request left work running in the engine\n{}",
            answer()
        );
    } else if json
        && !body.is_empty()
        && let Err(error) = serde_json::from_slice::<Value>(body)
    {
        panic!("a JSON answer that is not JSON: {error}\n{}", answer());
    }
    if x.sse {
        check_first_frame(body, &answer);
    }
}

/// An SSE frame that reports an error carries the error body, and the error
/// is not the server's (the journal here is healthy).
fn check_first_frame(frame: &[u8], answer: &dyn Fn() -> String) {
    let text = String::from_utf8_lossy(frame);
    if !text.lines().any(|l| l == "event: error") {
        return;
    }
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    match check_error_body(None, data.join("\n").as_bytes()) {
        Ok(code) => assert!(
            !matches!(code.as_str(), "internal" | "unavailable"),
            "a stream failed with `{code}`\n{}",
            answer()
        ),
        Err(why) => panic!(
            "a stream's error frame of the wrong shape: {why}\n{}",
            answer()
        ),
    }
}
