//! Server-Sent Events: one execution's history then its live events
//! (`id:` = seq, ends after the terminal event), and every execution's
//! events (`id:` = journal position, never ends by itself), with the
//! circuit breakers' changes among them when asked (`?include=breakers`).
//! Both resume after `Last-Event-ID` (or `?after=`) and send keep-alive
//! comments.
//!
//! Owns turning the engine's event streams (its read side) into SSE frames,
//! and ending streams at shutdown. It must never buffer on the engine's
//! side: a stream is pulled only as fast as its client reads, and the
//! journal's subscription catches up from storage when a reader falls
//! behind, so a slow client neither blocks the engine nor misses an event.
//! What a client that stops reading costs is bounded: its share of the
//! journal's live buffer (bounded in bytes), one read of stored events, the
//! one frame in hand, and hyper's queue (at most 16 frames) in front of its
//! socket.

use std::collections::BTreeSet;
use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as Frame, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use retrace_engine::read::{BreakerChange, GlobalFilter, Include, JournalEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::Error;
use crate::extract::{Path, Query, execution_id};
use crate::limits::OpenStream;
use crate::schemas::{ExecutionEventFrame, GlobalEventFrame};
use crate::state::AppState;
use crate::time::rfc3339;
use crate::views::{EventView, GlobalEventView};

/// The header a reconnecting SSE client sends with the last `id:` it saw.
const LAST_EVENT_ID: &str = "last-event-id";

/// Where a stream resumes: `Last-Event-ID` wins over `?after=` (a browser
/// reconnects to the same URL, adding the header), and either means "the
/// events after this id".
fn resume_after(headers: &HeaderMap, after: Option<u64>) -> Result<u64, Error> {
    let Some(value) = headers.get(LAST_EVENT_ID) else {
        return Ok(after.unwrap_or(0));
    };
    let text = value
        .to_str()
        .map_err(|_| Error::InvalidHeader("Last-Event-ID must be ASCII".into()))?
        .trim();
    if text.is_empty() {
        return Ok(after.unwrap_or(0));
    }
    text.parse().map_err(|_| {
        Error::InvalidHeader(format!(
            "Last-Event-ID `{text}` is not an id this stream sent (a non-negative integer)"
        ))
    })
}

/// The resume header, as the OpenAPI document shows it (read by
/// [`resume_after`]; nothing builds this).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct ResumeHeader {
    /// The last `id:` received: the stream starts with the event after it.
    /// Wins over `?after=`. An empty value is as if there were none.
    #[param(
        rename = "Last-Event-ID",
        nullable = false,
        schema_with = crate::schemas::last_event_id
    )]
    last_event_id: Option<u64>,
}

/// The frame that reports a failure and ends a stream.
/// The caller's token's count of open streams, one more (refused past its
/// most).
fn stream_of(state: &AppState, caller: &Caller) -> Result<Option<OpenStream>, Error> {
    caller
        .name()
        .map(|name| state.config.token_limits.stream(name))
        .transpose()
}

fn error_frame(e: &Error) -> Frame {
    Frame::default().event("error").data(e.to_json_string())
}

fn frame<T: serde::Serialize>(id: u64, kind: &str, view: &T) -> Frame {
    let frame = Frame::default().id(id.to_string()).event(kind);
    match serde_json::to_string(view) {
        Ok(json) => frame.data(json),
        Err(e) => error_frame(&Error::Internal(format!("cannot encode event {id}: {e}"))),
    }
}

/// Wraps frames as the SSE response: keep-alives, and an end at shutdown.
fn respond(
    state: &AppState,
    open: Option<OpenStream>,
    frames: impl Stream<Item = Frame> + Send + 'static,
) -> Response {
    let shutdown = state.shutdown.clone();
    // Counted while the stream lives (the guards drop with it), also
    // against its token's open streams.
    let client = state.sse_clients.connect();
    let frames = frames
        .take_until(async move { shutdown.triggered().await })
        .map(move |frame| {
            let _still_connected = (&client, &open);
            Ok::<_, Infallible>(frame)
        });
    Sse::new(frames)
        .keep_alive(KeepAlive::new().interval(state.config.sse_keep_alive))
        .into_response()
}

/// Where an execution's stream resumes (unknown parameters are refused).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExecutionStreamQuery {
    /// Start after this `seq` (default 0: from the start); a
    /// `Last-Event-ID` header wins over it.
    #[param(minimum = 0, maximum = 18446744073709551615u64, format = "uint64")]
    after: Option<u64>,
}

/// `GET /v1/executions/{id}/events/stream`.
#[utoipa::path(
    get,
    path = "/v1/executions/{id}/events/stream",
    operation_id = "streamExecutionEvents",
    tag = "streams",
    summary = "Stream one execution's events (SSE)",
    description = "The execution's history from the start (or after the given id), then \
        its events live as they are recorded. The stream ends after the execution's \
        terminal event (`execution_completed`, `execution_failed`, \
        `execution_compensated`, `execution_cancelled`, `execution_terminated`) has \
        been sent; a client that has already seen the end gets `204 No Content`, which \
        tells a browser's `EventSource` to stop reconnecting. (A failed execution that \
        is redriven continues: reconnect with `Last-Event-ID` to follow it.) Errors \
        found before the stream starts are JSON error responses. Every frame is named \
        by its event type (`event:`), so an `EventSource` gets them through \
        `addEventListener(type, …)`, not `onmessage`.",
    params(
        ("id" = String, Path, format = "uuid", description = "The execution's id."),
        ExecutionStreamQuery,
        ResumeHeader,
    ),
    responses(
        (status = 200, description = "A Server-Sent Events stream (`text/event-stream`). \
            Each frame has `id:` (the event's `seq`), `event:` (the event's type) and one \
            `data:` line: the event as JSON, exactly as the events page shows it (schema \
            `EventView`); the schema below is one frame's, read as an object of its \
            fields. Idle streams get a keep-alive comment line (`:`) every 15 s (the \
            server's `sse_keep_alive_ms`). A journal error ends the stream with a frame \
            `event: error` whose data is an error body (schema `ErrorBody`). The stream \
            also ends when the server shuts down. On the wire:\n\n\
            ```text\n\
            id: 4\n\
            event: task_completed\n\
            data: {\"seq\":4,\"type\":\"task_completed\",\"at\":\"2026-11-21T00:51:25.248Z\",…}\n\
            ```",
            content_type = "text/event-stream", body = ExecutionEventFrame,
            example = json!({"id": "4", "event": "task_completed", "data": "{\"seq\":4,\"type\":\"task_completed\",\"at\":\"2026-11-21T00:51:25.248Z\",\"data\":{\"act\":1,\"attempt\":1,\"output\":{\"name\":\"Ann\"},\"task\":\"01a1fb96-2826-7012-96b6-9bd448d552cf.1.1\"},\"hash\":\"d24d6bd17e46ea46e47a21ec673ed7a90c22912085b6d064838af000e5bbf92e\"}"})),
        (status = 204, description = "The execution has ended and the client has \
            seen its terminal event already (the resume point is at or after it): \
            nothing more will come."),
    ),
)]
pub async fn execution(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ExecutionStreamQuery>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let id = execution_id(&id)?;
    let after = resume_after(&headers, query.after)?;
    let summary = state
        .engine
        .summary(id)
        .ok_or_else(|| Error::UnknownExecution(id.to_string()))?;
    let last_seq = state.engine.read().last_seq(id).await?.unwrap_or(0);
    // A client that has seen the end already gets `204 No Content`: that is
    // what tells a browser's EventSource to stop reconnecting (an empty
    // `200` stream makes it reconnect every few seconds, forever).
    if summary.status.is_terminal() && after >= last_seq {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let open = stream_of(&state, &caller)?;
    let mut events = state.engine.read().subscribe(id, after.saturating_add(1));
    let frames = async_stream::stream! {
        while let Some(item) = events.next().await {
            match item {
                Ok(event) => {
                    let view = EventView::from_history(&event);
                    yield frame(event.seq, view.kind, &view);
                    if event.event.is_terminal() {
                        break;
                    }
                }
                Err(e) => {
                    yield error_frame(&Error::from(e));
                    break;
                }
            }
        }
    };
    Ok(respond(&state, open, frames))
}

/// Filters of the engine-wide stream, and where it resumes (unknown
/// parameters are refused).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AllStreamQuery {
    /// Only events of executions of this workflow (any text: a name no
    /// workflow has matches nothing).
    workflow: Option<String>,
    /// Only events of these types (comma-separated; a type no event has
    /// matches nothing).
    #[serde(rename = "type")]
    #[param(example = "execution_completed,execution_failed")]
    types: Option<String>,
    /// Start after this journal position (default 0: from the start); a
    /// `Last-Event-ID` header wins over it.
    #[param(minimum = 0, maximum = 18446744073709551615u64, format = "uint64")]
    after: Option<u64>,
    /// `breakers`: the circuit breakers' changes too (settings set and
    /// removed, opened, half-opened, closed), in the same order, as frames
    /// whose `event:` is their type (`breaker_opened`, …) and whose data is
    /// a `BreakerChangeView`. Left out, only executions' events are sent.
    /// `type` applies to them; `workflow` does not (a breaker belongs to no
    /// execution).
    #[param(inline)]
    include: Option<Included>,
}

/// What the engine-wide stream sends besides executions' events.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Included {
    /// The circuit breakers' changes.
    Breakers,
}

/// A change of a circuit breaker, as the engine-wide stream sends it with
/// `include=breakers`: where it is in the journal, whose breaker, what
/// changed, and where the breaker stands after it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakerChangeView {
    /// The journal-wide position (the stream's `id:`).
    #[schema(format = "uint64")]
    position: u64,
    /// The capability whose breaker changed.
    #[schema(value_type = crate::schemas::Capability)]
    capability: String,
    /// The agent (by name) whose breaker of the capability changed state,
    /// for a breaker per agent; absent for the capability's own breaker
    /// and for its settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    agent: Option<String>,
    /// The change (the frame's `event:`): `breaker_set`, `breaker_removed`,
    /// `breaker_opened`, `breaker_half_opened` or `breaker_closed`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "breaker_opened", pattern = "^breaker_[a-z_]+$")]
    kind: &'static str,
    /// Where the breaker stands after an opening (`open`), a probe
    /// (`half_open`) or a closing (`closed`); absent when its settings were
    /// set (they keep the state it is in) or it was removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schemas::BreakerStateSchema>, nullable = false)]
    state: Option<&'static str>,
    /// When it was recorded (RFC 3339, UTC, milliseconds).
    #[schema(format = DateTime)]
    at: String,
    /// The change's fields as the journal stores them (its JSON without
    /// the type): `capability`; `failures` for an opening (the failures
    /// within the window; 1 for a failed probe); `settings`, `by` and
    /// `reason` for settings set; `by` and `reason` for a removal.
    data: Value,
}

impl BreakerChangeView {
    fn new(change: &BreakerChange) -> BreakerChangeView {
        let data = match serde_json::to_value(&change.event) {
            Ok(Value::Object(mut fields)) => {
                fields.remove("kind");
                Value::Object(fields)
            }
            Ok(other) => other,
            Err(_) => Value::Object(serde_json::Map::new()),
        };
        // As recorded: a state change of one agent's breaker names it.
        let agent = data.get("agent").and_then(Value::as_str).map(str::to_owned);
        BreakerChangeView {
            position: change.position,
            capability: change.event.capability().to_owned(),
            agent,
            kind: change.event.kind(),
            state: change.state().map(|s| s.as_str()),
            at: rfc3339(change.at_ms),
            data,
        }
    }
}

/// `GET /v1/events/stream?workflow=&type=&include=`.
#[utoipa::path(
    get,
    path = "/v1/events/stream",
    operation_id = "streamEvents",
    tag = "streams",
    summary = "Stream every execution's events (SSE)",
    description = "Every execution's events in the journal's global order, from the \
        start (or after the given id), then live; it never ends by itself. With \
        `include=breakers`, the circuit breakers' changes too, in the same order. With \
        filters, ids jump over the events left out, and resuming from the last one \
        seen is still exact.",
    params(
        AllStreamQuery,
        ResumeHeader,
    ),
    responses(
        (status = 200, description = "A Server-Sent Events stream (`text/event-stream`). \
            Each frame has `id:` (the event's position in the whole journal), `event:` \
            (the event's type) and one `data:` line: the events-page JSON plus \
            `position`, `executionId` and `workflow` (schema `GlobalEventView`). With \
            `include=breakers`, a breaker's change is a frame whose `event:` is its \
            type (`breaker_set`, `breaker_removed`, `breaker_opened`, \
            `breaker_half_opened`, `breaker_closed`) and whose data is schema \
            `BreakerChangeView` (`position`, `capability`, `agent`, `type`, `state`, \
            `at`, `data`). The schema below is one frame's, read as an object of its fields. \
            Idle streams get a keep-alive comment line (`:`) every 15 s (the server's \
            `sse_keep_alive_ms`). A journal error ends the stream with a frame \
            `event: error` whose data is an error body (schema `ErrorBody`). The stream \
            ends when the server shuts down. On the wire:\n\n\
            ```text\n\
            id: 11\n\
            event: execution_completed\n\
            data: {\"position\":11,\"executionId\":\"01a1fb96-2826-7012-96b6-9bd448d552cf\",…}\n\
            ```",
            content_type = "text/event-stream", body = GlobalEventFrame,
            example = json!({"id": "11", "event": "execution_completed", "data": "{\"position\":11,\"executionId\":\"01a1fb96-2826-7012-96b6-9bd448d552cf\",\"workflow\":\"greet\",\"seq\":10,\"type\":\"execution_completed\",\"at\":\"2026-11-21T00:51:26.335Z\",\"data\":{\"output\":{\"by\":\"bob\"}},\"hash\":\"b08e51f212c44ece18bd5093b83b670a996be00e218a870d849e3d2e9e68a63e\"}"})),
    ),
)]
pub async fn all(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AllStreamQuery>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let after = resume_after(&headers, query.after)?;
    let types: Option<BTreeSet<String>> = query.types.map(|t| {
        t.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    });
    let filter = GlobalFilter {
        workflow: query.workflow,
        types,
    };
    let include = Include {
        breakers: matches!(query.include, Some(Included::Breakers)),
    };
    let open = stream_of(&state, &caller)?;
    let mut events =
        state
            .engine
            .read()
            .subscribe_journal(after.saturating_add(1), filter, include);
    let frames = async_stream::stream! {
        while let Some(item) = events.next().await {
            match item {
                Ok(JournalEvent::Execution(global)) => {
                    let view = GlobalEventView::from_global(&global);
                    yield frame(global.event.position, view.event.kind, &view);
                }
                Ok(JournalEvent::Breaker(change)) => {
                    let view = BreakerChangeView::new(&change);
                    yield frame(change.position, view.kind, &view);
                }
                Err(e) => {
                    yield error_frame(&Error::from(e));
                    break;
                }
            }
        }
    };
    Ok(respond(&state, open, frames))
}
