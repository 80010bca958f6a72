//! `/v1/executions`: start, list, read one, and page through its events.
//!
//! Owns the request shapes of these endpoints, page sizes and cursors. It
//! must never change an execution except by starting one; commands live in
//! `commands`.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use retrace_engine::ExecutionId;
use retrace_engine::machine::{ExecutionState, PRIORITY_MAX, Status};
use retrace_engine::runtime::{Engine, ListFilter, StartRequest, Started};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::Error;
use crate::extract::{Json, Path, Query, execution_id};
use crate::schemas::ExecutionStatus;
use crate::state::{ApiConfig, AppState};
use crate::time::parse_rfc3339;
use crate::views::{EventView, ExecutionSummaryView, ExecutionView};

/// The longest idempotency key, in characters (Unicode scalar values, as
/// JSON Schema's `maxLength` counts them).
pub const IDEMPOTENCY_KEY_CHARS_MAX: usize = 256;

/// The longest a start may wait for its execution to end, in milliseconds.
pub const START_WAIT_MS_MAX: u64 = 60_000;

/// What to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = StartExecution)]
pub struct StartBody {
    /// The workflow's name. It is looked up, not checked: a name no workflow
    /// has (workflow names are 1 to 128 characters, `A-Z a-z 0-9` first,
    /// then also `_ . -`) is `404 unknown_workflow`, unless the idempotency
    /// key names an execution started before.
    workflow: String,
    /// A version (64 lowercase hex digits); without it, the workflow's
    /// newest. Looked up as `workflow` is.
    version: Option<String>,
    /// The execution's input: free JSON, checked against the workflow's
    /// `input` schema; `null` when left out.
    #[serde(default)]
    input: Value,
    /// 1 to 256 characters, none of them a control character (Unicode `Cc`)
    /// or a bidirectional control (U+061C, U+200E, U+200F, U+202A to
    /// U+202E, U+2066 to U+2069). The same key again answers with the
    /// execution it started first and starts nothing, whatever the rest of
    /// the body says.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u061C\\u200E\\u200F\\u202A-\\u202E\\u2066-\\u2069]*$"
    )]
    idempotency_key: Option<String>,
    /// Start and wait: answer once the execution has ended (with the
    /// execution as `GET /v1/executions/{id}` shows it), or when this many
    /// milliseconds have passed (`202`, the execution still running). At
    /// most 60000. Without it, the answer comes as soon as the start is
    /// recorded.
    #[serde(default, deserialize_with = "crate::integer::optional")]
    #[schema(minimum = 0, maximum = 60000, format = "uint64")]
    wait_ms: Option<u64>,
    /// How urgent its tasks are: 0 (the default) to 9. Agents are served
    /// by priority, aged by waiting: each 10 s a task waits counts as one
    /// level more, so a task of priority `p` is served before any task
    /// scheduled more than `(9 - p) × 10 s` after it. Children inherit it.
    #[serde(default, deserialize_with = "crate::integer::optional")]
    #[schema(minimum = 0, maximum = 9, format = "uint64")]
    priority: Option<u64>,
    /// Tags to find it by (`GET /v1/executions?tag=key:value`): at most
    /// 32; keys `A-Z a-z 0-9` first, then also `_ . : / -`, at most 64
    /// bytes; values at most 256 characters, no control characters. Steps may
    /// add more (their `tags` mapping).
    #[serde(default)]
    #[schema(schema_with = crate::schemas::tags_schema)]
    tags: Option<std::collections::BTreeMap<String, String>>,
}

/// An idempotency key, checked: it is journaled with the start, so 1 to
/// 256 characters and no control or bidirectional characters.
pub fn check_idempotency_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.chars().count() > IDEMPOTENCY_KEY_CHARS_MAX {
        return Err(Error::InvalidBody(format!(
            "idempotencyKey must be 1 to {IDEMPOTENCY_KEY_CHARS_MAX} characters, not {}",
            key.chars().count()
        )));
    }
    retrace_engine::model::check_name_chars("idempotencyKey", key).map_err(Error::InvalidBody)
}

/// A start's priority, checked.
pub fn priority(given: Option<u64>) -> Result<Option<u8>, Error> {
    match given {
        None => Ok(None),
        Some(p) => u8::try_from(p)
            .ok()
            .filter(|p| *p <= PRIORITY_MAX)
            .map(Some)
            .ok_or_else(|| {
                Error::InvalidBody(format!("priority must be 0 to {PRIORITY_MAX}, not {p}"))
            }),
    }
}

/// An execution started (or found by its idempotency key). Exactly these
/// fields (`deny_unknown_fields` closes its schema), so that a start's
/// answer matches one of `StartAnswer`'s two shapes, never both.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = StartedExecution)]
pub(crate) struct StartedView {
    #[schema(value_type = String, format = "uuid")]
    id: ExecutionId,
    #[schema(value_type = ExecutionStatus)]
    status: &'static str,
    /// `false` when the idempotency key named an execution started before.
    created: bool,
}

impl From<&Started> for StartedView {
    fn from(started: &Started) -> Self {
        StartedView {
            id: started.id,
            status: started.status.as_str(),
            created: started.created,
        }
    }
}

/// An execution a start waited for (`waitMs`): as `GET` shows it, and
/// whether this request started it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WaitedExecution)]
struct WaitedView {
    /// `false` when the idempotency key named an execution started before.
    created: bool,
    #[serde(flatten)]
    execution: ExecutionView,
}

/// What a start answers: the execution started, or (with `waitMs`) the
/// execution as it stands after the wait.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = StartAnswer)]
enum StartAnswer {
    Started(StartedView),
    Waited(Box<WaitedView>),
}

/// `POST /v1/executions`: `201` when started, `200` when the idempotency key
/// names an execution started before (same id). With `waitMs`, answers
/// once the execution has ended (the same codes), or `202` when the wait
/// ran out first.
#[utoipa::path(
    post,
    path = "/v1/executions",
    operation_id = "startExecution",
    tag = "executions",
    summary = "Start an execution",
    description = "Starts the workflow's newest version, or the given one, with the \
        input checked against the workflow's `input` schema (`422 invalid_input`, \
        with every mismatch in `details`). With `waitMs` (start and wait), the answer \
        comes when the execution has ended, with the execution as \
        `GET /v1/executions/{id}` shows it plus `created` (schema `WaitedExecution`); \
        if it has not ended when `waitMs` has passed (or the server shuts down), `202` \
        with the running execution.",
    request_body = StartBody,
    responses(
        (status = 201, description = "Started (with `waitMs`: started, and ended \
            within the wait).", body = StartAnswer),
        (status = 200, description = "The idempotency key names an execution started \
            before: that one (`created: false`); nothing was started. With `waitMs`: \
            that one, ended.", body = StartAnswer),
        (status = 202, description = "With `waitMs`: the execution has not ended \
            within the wait; it runs on.", body = WaitedView),
    ),
)]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<StartBody>,
) -> Result<impl IntoResponse, Error> {
    if let Some(key) = &body.idempotency_key {
        check_idempotency_key(key)?;
    }
    if let Some(wait_ms) = body.wait_ms
        && wait_ms > START_WAIT_MS_MAX
    {
        return Err(Error::InvalidBody(format!(
            "waitMs must be at most {START_WAIT_MS_MAX}, not {wait_ms}"
        )));
    }
    let priority = priority(body.priority)?;
    let started = state
        .engine
        .acting_as(caller.name())
        .because(caller.reason())
        .start(StartRequest {
            workflow: body.workflow,
            version: body.version,
            input: body.input,
            idempotency_key: body.idempotency_key,
            priority,
            tags: body.tags.unwrap_or_default(),
        })
        .await?;
    let status = if started.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let Some(wait_ms) = body.wait_ms else {
        let view = StartedView::from(&started);
        return Ok((status, axum::Json(StartAnswer::Started(view))));
    };
    let wait = std::time::Duration::from_millis(wait_ms);
    let ended = tokio::select! {
        ended = state.engine.wait_for_end(started.id, wait) => ended?,
        () = state.shutdown.triggered() => None,
    };
    let (status, execution) = match ended {
        Some(execution) => (status, execution),
        None => (StatusCode::ACCEPTED, state.engine.state(started.id).await?),
    };
    let view = WaitedView {
        created: started.created,
        execution: shown(&state.engine, &execution),
    };
    Ok((status, axum::Json(StartAnswer::Waited(Box::new(view)))))
}

/// Filters and paging of the execution list (unknown parameters are
/// refused).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct ListQuery {
    /// Only executions of this workflow (by name; any text, a name no
    /// workflow has lists nothing).
    workflow: Option<String>,
    /// Only executions in this status, or in any of several separated by
    /// commas (`running,paused`).
    #[param(
        value_type = Option<String>,
        pattern = "^(running|paused|compensating|compensation_failed|completed|failed|compensated|cancelled|terminated)(,(running|paused|compensating|compensation_failed|completed|failed|compensated|cancelled|terminated))*$"
    )]
    status: Option<String>,
    /// The page size: 100 when left out (the server's
    /// `page_limit_default`); more than the server's `page_limit_max` (1000
    /// by default) is taken as that; `0` is refused.
    #[param(minimum = 1, maximum = 18446744073709551615u64, format = "uint64")]
    limit: Option<usize>,
    /// The previous page's `nextCursor` (an execution id, as the API writes
    /// ids), with the same filters.
    #[param(
        format = "uuid",
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    cursor: Option<String>,
    /// Only executions whose id starts with these hex digits (dashes are
    /// ignored, case is not; more than an id's 32 match nothing).
    #[param(pattern = "^[0-9a-fA-F-]{1,36}$")]
    id_prefix: Option<String>,
    /// Only executions started at or after this instant (RFC 3339).
    #[param(format = DateTime)]
    started_from: Option<String>,
    /// Only executions started at or before this instant (RFC 3339).
    #[param(format = DateTime)]
    started_to: Option<String>,
    /// Only executions that ended at or after this instant (RFC 3339).
    #[param(format = DateTime)]
    ended_from: Option<String>,
    /// Only executions that ended at or before this instant (RFC 3339).
    #[param(format = DateTime)]
    ended_to: Option<String>,
    /// Only executions with this tag: `key:value` (the first `:` ends the
    /// key). Given more than once, only executions with every one of them.
    #[serde(default)]
    #[param(value_type = Option<Vec<TagFilter>>)]
    tag: Vec<String>,
    /// `oldest` (the default: id order) or `newest` (newest first).
    #[param(value_type = Option<ListOrder>)]
    order: Option<String>,
}

/// A tag to filter by: `key:value`.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, pattern = "^[A-Za-z0-9][A-Za-z0-9_./-]{0,63}:")]
#[allow(dead_code)] // Only its schema is used: the query is read as text.
pub struct TagFilter(String);

/// The order of the execution list.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // Only its schema is used: the query is read as text.
pub enum ListOrder {
    Oldest,
    Newest,
}

impl ListQuery {
    /// Reads a query string: `tag` may be given more than once, every
    /// other parameter at most once (a repeated one is refused).
    fn parse(raw: &str) -> Result<ListQuery, Error> {
        let mut tags = Vec::new();
        let mut rest = form_urlencoded::Serializer::new(String::new());
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            if key == "tag" {
                tags.push(value.into_owned());
            } else {
                rest.append_pair(&key, &value);
            }
        }
        let mut query: ListQuery = serde_urlencoded::from_str(&rest.finish())
            .map_err(|e| Error::InvalidQuery(format!("Failed to deserialize query string: {e}")))?;
        query.tag = tags;
        Ok(query)
    }

    /// The engine's filter, with every parameter checked.
    fn filter(&self) -> Result<ListFilter, Error> {
        let statuses = match self.status.as_deref() {
            None => Vec::new(),
            Some(listed) => listed
                .split(',')
                .map(str::parse::<Status>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(Error::InvalidQuery)?,
        };
        let tags = self
            .tag
            .iter()
            .map(|given| match given.split_once(':') {
                Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
                _ => Err(Error::InvalidQuery(format!(
                    "tag `{given}` is not `key:value`"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let id_prefix = match &self.id_prefix {
            None => None,
            Some(given) => {
                let hex: String = given.chars().filter(|c| *c != '-').collect();
                if given.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(Error::InvalidQuery(format!(
                        "idPrefix `{given}` is not hex digits (dashes are ignored)"
                    )));
                }
                // Only dashes: every id starts so.
                (!hex.is_empty()).then(|| hex.to_ascii_lowercase())
            }
        };
        let instant = |name: &str, given: &Option<String>| {
            given
                .as_deref()
                .map(|text| {
                    parse_rfc3339(text).ok_or_else(|| {
                        Error::InvalidQuery(format!(
                            "{name} `{text}` is not an RFC 3339 instant \
                             (like 2026-01-31T09:00:00Z)"
                        ))
                    })
                })
                .transpose()
        };
        // Every execution started after 1970: an earlier start of the range
        // bounds nothing, and an earlier end of it leaves nothing.
        let started_from_ms =
            instant("startedFrom", &self.started_from)?.map(|ms| u64::try_from(ms).unwrap_or(0));
        let started_to_ms = instant("startedTo", &self.started_to)?;
        let (started_from_ms, started_to_ms) = match started_to_ms {
            Some(ms) if ms < 0 => (Some(1), Some(0)),
            to => (started_from_ms, to.map(|ms| u64::try_from(ms).unwrap_or(0))),
        };
        let ended = |name: &str, given: &Option<String>| {
            instant(name, given).map(|ms| ms.map(|ms| u64::try_from(ms).unwrap_or(0)))
        };
        let ended_from_ms = ended("endedFrom", &self.ended_from)?;
        let ended_to_ms = match instant("endedTo", &self.ended_to)? {
            // Before 1970: nothing ended then.
            Some(ms) if ms < 0 => return Ok(ListFilter::nothing()),
            to => to.map(|ms| u64::try_from(ms).unwrap_or(0)),
        };
        let newest_first = match self.order.as_deref() {
            None | Some("oldest") => false,
            Some("newest") => true,
            Some(other) => {
                return Err(Error::InvalidQuery(format!(
                    "order `{other}` is neither `oldest` nor `newest`"
                )));
            }
        };
        Ok(ListFilter {
            workflow: self.workflow.clone(),
            statuses,
            tags,
            id_prefix,
            started_from_ms,
            started_to_ms,
            ended_from_ms,
            ended_to_ms,
            newest_first,
        })
    }
}

/// A page of executions.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ExecutionList)]
struct ListView {
    /// In id order, which is start order.
    executions: Vec<ExecutionSummaryView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(value_type = Option<String>, format = "uuid", required = true)]
    next_cursor: Option<ExecutionId>,
    /// The journal's last position when the page was read: `GET
    /// /v1/events/stream?after=<position>` shows every change since (list,
    /// then watch, with nothing missed).
    #[schema(format = "uint64")]
    position: u64,
}

/// One page merged from the pages several servers sharing a journal
/// answered for the same `raw` query (each lists the executions of its
/// partitions): the first `limit` in the query's order of them all, a next
/// cursor when any server has more, and the earliest position (a stream
/// read from it misses none of the changes made while listing).
pub(crate) fn merge_pages(
    raw: &str,
    config: &ApiConfig,
    pages: &[axum::body::Bytes],
) -> Result<Vec<u8>, Error> {
    /// A page as [`ListView`] writes it, its executions left as JSON.
    #[derive(Default, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Page {
        executions: Vec<serde_json::Value>,
        next_cursor: Option<String>,
        position: u64,
    }
    let query = ListQuery::parse(raw)?;
    let limit = page_limit(query.limit, config)?;
    let newest_first = query.filter()?.newest_first;
    let mut merged = Page {
        position: u64::MAX,
        ..Page::default()
    };
    let mut more = false;
    for page in pages {
        let page: Page = serde_json::from_slice(page)
            .map_err(|e| Error::Internal(format!("a server answered a list unread: {e}")))?;
        more |= page.next_cursor.is_some();
        merged.position = merged.position.min(page.position);
        merged.executions.extend(page.executions);
    }
    let executions = &mut merged.executions;
    // Ids are UUIDs written hyphenated in lower case: as text, in id order.
    let id = |e: &serde_json::Value| e["id"].as_str().unwrap_or_default().to_owned();
    executions.sort_by_key(id);
    // A partition that moved while the servers answered may be in two.
    executions.dedup_by_key(|e| id(e));
    if newest_first {
        executions.reverse();
    }
    more |= executions.len() > limit;
    executions.truncate(limit);
    merged.next_cursor = if more {
        executions.last().map(id)
    } else {
        None
    };
    serde_json::to_vec(&merged)
        .map_err(|e| Error::Internal(format!("cannot write the merged list: {e}")))
}

/// A page size from a query: the default when absent, at most the cap.
pub fn page_limit(limit: Option<usize>, config: &ApiConfig) -> Result<usize, Error> {
    match limit {
        None => Ok(config.page_limit_default),
        Some(0) => Err(Error::InvalidQuery("limit must be at least 1".into())),
        Some(n) => Ok(n.min(config.page_limit_max)),
    }
}

/// `GET /v1/executions?workflow=&status=&idPrefix=&startedFrom=&startedTo=&order=&limit=&cursor=`,
/// in id order (ids are time-ordered, so oldest first), or newest first.
#[utoipa::path(
    get,
    path = "/v1/executions",
    operation_id = "listExecutions",
    tag = "executions",
    summary = "List executions",
    description = "In id order, which is start order (ids are time-ordered UUIDv7), \
        or newest first with `order=newest`, optionally filtered. `nextCursor` is the \
        id of the last execution on the page, so it stays valid for ever (pass it \
        with the same filters and order).",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of executions.", body = ListView),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, Error> {
    let query = ListQuery::parse(raw.as_deref().unwrap_or_default())?;
    let limit = page_limit(query.limit, &state.config)?;
    let filter = query.filter()?;
    let after = query
        .cursor
        .as_deref()
        .map(|c| {
            // Only the spelling the API issues (hyphenated, 36 characters):
            // the id parser also reads braced, URN and unhyphenated forms.
            c.parse::<ExecutionId>()
                .ok()
                .filter(|_| c.len() == 36)
                .ok_or_else(|| {
                    Error::InvalidQuery(format!("cursor `{c}` is not a cursor this API issued"))
                })
        })
        .transpose()?;
    let covered = crate::covered::Covered::begin(&state.engine);
    // Read before the list, so a change made while listing is in the
    // stream after this position (and perhaps in the page too).
    let position = state.engine.read().last_position().await?;
    let mut page = state
        .engine
        .executions_where(&filter, after, limit.saturating_add(1));
    let next_cursor = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|s| s.id)
    } else {
        None
    };
    let view = ListView {
        executions: page.iter().map(ExecutionSummaryView::from).collect(),
        next_cursor,
        position,
    };
    Ok((covered.end(&state.engine), axum::Json(view)))
}

/// `GET /v1/executions/{id}`.
#[utoipa::path(
    get,
    path = "/v1/executions/{id}",
    operation_id = "getExecution",
    tag = "executions",
    summary = "Read one execution",
    params(("id" = String, Path, format = "uuid", description = "The execution's id.")),
    responses(
        (status = 200, description = "The execution as it stands.", body = ExecutionView),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let id = execution_id(&id)?;
    let execution = state.engine.state(id).await?;
    Ok(axum::Json(shown(&state.engine, &execution)))
}

/// An execution as it stands now, with the limit that holds each of its
/// waiting steps: its workflow's, or, for a task not claimed yet, its
/// capability's.
fn shown(engine: &Engine, execution: &ExecutionState) -> ExecutionView {
    let now_ms = engine.clock().now_ms();
    ExecutionView::new(execution, now_ms).held_by(
        engine.limit_holding(execution),
        |task, capability| match engine.agents().claimed_by(task) {
            // Claimed: it runs, no limit holds it.
            Some(_) => None,
            None => engine.capability_held(capability),
        },
    )
}

/// Paging of an execution's events (unknown parameters are refused).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events with a greater `seq` (default 0: from the start). To page
    /// on, pass the last `seq` seen.
    #[param(minimum = 0, maximum = 18446744073709551615u64, format = "uint64")]
    after: Option<u64>,
    /// The page size: 100 when left out (the server's
    /// `page_limit_default`); more than the server's `page_limit_max` (1000
    /// by default) is taken as that; `0` is refused.
    #[param(minimum = 1, maximum = 18446744073709551615u64, format = "uint64")]
    limit: Option<usize>,
}

/// A page of an execution's history.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EventPage)]
struct EventsView {
    /// Oldest first; empty when there is nothing more yet.
    events: Vec<EventView>,
}

/// `GET /v1/executions/{id}/events?after=<seq>&limit=`: events with
/// `seq > after`, oldest first.
#[utoipa::path(
    get,
    path = "/v1/executions/{id}/events",
    operation_id = "listExecutionEvents",
    tag = "executions",
    summary = "Page through an execution's history",
    params(
        ("id" = String, Path, format = "uuid", description = "The execution's id."),
        EventsQuery,
    ),
    responses(
        (status = 200, description = "The events with `seq > after`, oldest first.", body = EventsView),
    ),
)]
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<impl IntoResponse, Error> {
    let id = execution_id(&id)?;
    let limit = page_limit(query.limit, &state.config)?;
    if state.engine.summary(id).is_none() {
        return Err(Error::UnknownExecution(id.to_string()));
    }
    let from_seq = query.after.unwrap_or(0).saturating_add(1);
    let events = state
        .engine
        .read()
        .events(id, from_seq, limit)
        .await?
        .iter()
        .map(EventView::from_history)
        .collect();
    Ok(axum::Json(EventsView { events }))
}
