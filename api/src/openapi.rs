//! The OpenAPI 3 document of the HTTP API, generated from the code: served
//! at `GET /openapi.json` and kept in `docs/openapi.json` (a test fails when
//! the two differ).
//!
//! Owns the document: its info and tags, which operations it lists (every
//! endpoint [`crate::router::app`] routes; each handler carries its own
//! `#[utoipa::path]`), the error responses of every operation (which codes
//! it can answer, with the status [`Code::status`] gives each), and the
//! schemas of what the API shows without defining it (engine types, free
//! JSON, the metrics JSON). It must never change what the API does: nothing
//! here parses, checks or answers a request, `/openapi.json` aside.

use std::collections::BTreeMap;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::link::Link;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::{Content, Ref, RefOr, Required, Response};
use utoipa::{Modify, OpenApi};

use crate::auth::{Access, AccessTable};
use crate::error::Code::{self, *};
use crate::routes::{
    agents, breakers, commands, dashboard, executions, health, history, limits, metrics, schedules,
    signal_with_start, streams, tasks, tokens, webhooks, workflows,
};

/// The whole API's description.
const DESCRIPTION: &str = "\
The HTTP API of retrace, an event-sourced durable execution engine: define \
workflows, start and command executions (now or on a schedule), read their \
histories as pages or Server-Sent Events, and hand tasks to agents.

- **Bodies** are JSON with `Content-Type: application/json` (or any \
`application/*+json`); workflow definitions may also be YAML. Unknown fields \
and unknown query parameters are refused.
- **Times** are RFC 3339 in UTC with milliseconds; **durations** are integers \
in milliseconds.
- **Access**: once the server holds an access token, every request but \
`/healthz`, `/readyz` and this document carries `Authorization: Bearer <token>`, \
and the token's role must be one the operation names (`401 unauthenticated` \
without a valid token, `403 forbidden` for another role). A server with no token \
serves anyone, on loopback only.
- **Errors** all have the body `ErrorBody` and the status their `code` implies; \
each operation lists the codes it can answer. Any request may also be answered \
`404 not_found` (no route has the path), `405 method_not_allowed` (the path \
exists, not for this method; the `Allow` header lists the methods) or `413 \
payload_too_large` (a body over the server's limit, 1 MiB by default).

The guide, with examples, is `docs/api.md`.";

#[derive(OpenApi)]
#[openapi(
    info(title = "retrace", version = env!("CARGO_PKG_VERSION"), description = DESCRIPTION),
    paths(
        health::live,
        health::ready,
        metrics::prometheus,
        metrics::json,
        serve,
        dashboard::page,
        dashboard::file,
        workflows::define,
        workflows::list,
        workflows::validate,
        workflows::by_name,
        workflows::version,
        workflows::graph,
        executions::start,
        signal_with_start::signal_with_start,
        executions::list,
        executions::get,
        executions::events,
        history::replay,
        history::verify,
        streams::execution,
        commands::pause,
        commands::resume,
        commands::cancel,
        commands::terminate,
        commands::retry,
        commands::skip,
        commands::redrive,
        commands::signal,
        streams::all,
        commands::publish,
        schedules::create,
        schedules::list,
        schedules::get,
        schedules::update,
        schedules::delete,
        schedules::trigger,
        breakers::list,
        breakers::get,
        breakers::set,
        breakers::delete,
        limits::list,
        limits::get,
        limits::set,
        limits::delete,
        agents::register,
        agents::list,
        agents::get,
        agents::unregister,
        agents::heartbeat,
        tasks::poll,
        tasks::report,
        tasks::complete,
        tasks::fail,
        tasks::heartbeat,
        tokens::create,
        tokens::list,
        tokens::get,
        tokens::revoke,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::delete,
    ),
    components(schemas(
        crate::error::Body,
        crate::views::GlobalEventView,
        streams::BreakerChangeView,
        executions::ListOrder,
        executions::TagFilter,
    )),
    tags(
        (name = "workflows", description = "Define, validate and read workflow definitions."),
        (name = "executions", description = "Start, list and read executions, page through \
            their histories, and command them (pause, resume, cancel, terminate, retry, \
            skip, redrive)."),
        (name = "events", description = "External events for `event` steps: to one \
            execution (signals) or to every waiting one (publish)."),
        (name = "streams", description = "Server-Sent Events: one execution's events, or \
            every execution's. Both resume after `Last-Event-ID` (or `?after=`)."),
        (name = "schedules", description = "Workflows started on a timetable: a cron \
            expression in a time zone, or every so many milliseconds, with an overlap \
            policy and a catch-up window."),
        (name = "breakers", description = "Circuit breakers per capability: after so many \
            task failures within a window, the capability's tasks fail fast (`circuit_open`) \
            until a probe after the cool-down succeeds. Or, with `perAgent`, one per agent \
            serving it: an agent whose breaker is open is given none of its tasks until its \
            probe succeeds."),
        (name = "limits", description = "Limits on a capability's tasks across all agents: \
            how many are claimed at once (`concurrency`) and how many per period \
            (`rateLimit`), set through the API or by the server's configuration. A task \
            over a limit stays queued until there is room."),
        (name = "agents", description = "Workers in any language that offer capabilities. \
            Registrations live in memory and do not survive a restart."),
        (name = "tasks", description = "Agents long-poll for tasks and report each one's \
            result, failure or liveness."),
        (name = "tokens", description = "Access tokens and their roles (admins only). \
            Once one exists, every request but the probes and this document needs one."),
        (name = "webhooks", description = "Outbound webhooks (admins only): URLs \
            subscribed to executions' events, each delivery signed per Standard Webhooks, \
            at least once, in the journal's order, retried for a bounded time."),
        (name = "health", description = "Liveness and readiness probes."),
        (name = "metrics", description = "The engine's figures, as Prometheus text or JSON."),
        (name = "openapi", description = "This document."),
        (name = "dashboard", description = "The dashboard in the browser: a page and its \
            files, embedded in the binary. It reads everything from this API."),
    ),
    modifiers(&OptionalBodies, &Links, &AtLeastOne, &UniqueItems),
)]
struct ApiDoc;

/// The OpenAPI document of the API `app` serves, whose routes `access`
/// lists.
pub fn document(access: &AccessTable) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    Security { access }.modify(&mut doc);
    ErrorResponses { access }.modify(&mut doc);
    doc
}

/// The document as JSON text, pretty-printed: what `GET /openapi.json`
/// answers and `docs/openapi.json` holds. utoipa 5 writes a link's fields
/// in snake case (`operation_id`, `request_body`), which no reader knows;
/// they are spelled as OpenAPI spells them here. Only a link has such keys
/// (everything else utoipa writes in camel case), and a string holding one
/// escapes its quotes, so the replacement touches nothing else.
pub fn document_text(access: &AccessTable) -> Result<String, serde_json::Error> {
    let text = serde_json::to_string_pretty(&document(access))?;
    Ok(text
        .replace("\"operation_ref\": ", "\"operationRef\": ")
        .replace("\"operation_id\": ", "\"operationId\": ")
        .replace("\"request_body\": ", "\"requestBody\": "))
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "getOpenApi",
    tag = "openapi",
    summary = "This document",
    responses(
        (status = 200, description = "The OpenAPI document of this API (the same as \
            `docs/openapi.json` in the source tree of this version).", body = Object),
    ),
)]
pub async fn serve(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
) -> Result<impl IntoResponse, crate::Error> {
    document_text(&state.routes)
        .map(|text| ([(header::CONTENT_TYPE, "application/json")], text))
        .map_err(|e| crate::Error::Internal(format!("the OpenAPI document: {e}")))
}

// ----- error responses -----

/// What a JSON body (required or optional) can be refused with.
const JSON_BODY: &[Code] = &[
    BadRequest,
    MalformedJson,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidBody,
];
/// What a path parameter can be refused with (not UTF-8 once decoded).
const PATH: &[Code] = &[BadRequest];
/// What a journal append can fail with: a concurrent change got there
/// first, or the journal stopped accepting writes.
const APPEND: &[Code] = &[Conflict, Unavailable, StorageUnavailable];
/// What reading the journal can fail with (besides `internal`).
const READ: &[Code] = &[Unavailable];
/// What a command on one execution can be refused with.
const COMMAND: &[Code] = &[UnknownExecution, WrongState];
/// What a task's result or failure can be refused with.
const TASK_RESULT: &[Code] = &[UnknownTask, NotOutstanding];

/// The error codes each operation can answer, by operation id; every
/// operation can also answer `500 internal`.
const ERRORS: &[(&str, &[&[Code]])] = &[
    ("getLiveness", &[]),
    ("getReadiness", &[&[Unavailable]]),
    ("getPrometheusMetrics", &[]),
    ("getMetrics", &[]),
    ("getOpenApi", &[]),
    ("getDashboard", &[]),
    ("getDashboardFile", &[PATH, &[NotFound]]),
    (
        "defineWorkflow",
        &[
            &[
                BadRequest,
                PayloadTooLarge,
                UnsupportedMediaType,
                MalformedJson,
                InvalidWorkflow,
                InvalidBody,
            ],
            APPEND,
        ],
    ),
    ("listWorkflows", &[]),
    (
        "validateWorkflow",
        &[&[
            BadRequest,
            PayloadTooLarge,
            UnsupportedMediaType,
            MalformedJson,
            InvalidWorkflow,
        ]],
    ),
    ("getWorkflow", &[PATH, &[UnknownWorkflow]]),
    ("getWorkflowVersion", &[PATH, &[UnknownWorkflow]]),
    ("getWorkflowGraph", &[PATH, &[UnknownWorkflow]]),
    (
        "startExecution",
        &[JSON_BODY, &[UnknownWorkflow, InvalidInput], APPEND, READ],
    ),
    (
        "signalWithStart",
        &[
            JSON_BODY,
            &[UnknownWorkflow, InvalidInput, WrongState, InvalidSignature],
            APPEND,
            READ,
        ],
    ),
    ("listExecutions", &[&[InvalidQuery]]),
    ("getExecution", &[PATH, &[UnknownExecution], READ]),
    (
        "replayExecution",
        &[PATH, &[InvalidQuery, UnknownExecution], READ],
    ),
    ("verifyExecution", &[PATH, &[UnknownExecution], READ]),
    (
        "listExecutionEvents",
        &[PATH, &[InvalidQuery, UnknownExecution], READ],
    ),
    (
        "streamExecutionEvents",
        &[PATH, &[InvalidQuery, InvalidHeader, UnknownExecution], READ],
    ),
    ("pauseExecution", &[PATH, JSON_BODY, COMMAND, APPEND]),
    ("resumeExecution", &[PATH, JSON_BODY, COMMAND, APPEND]),
    ("cancelExecution", &[PATH, JSON_BODY, COMMAND, APPEND]),
    ("terminateExecution", &[PATH, JSON_BODY, COMMAND, APPEND]),
    ("retryExecution", &[PATH, JSON_BODY, COMMAND, APPEND]),
    ("skipExecution", &[PATH, JSON_BODY, COMMAND, APPEND]),
    ("redriveExecution", &[PATH, JSON_BODY, COMMAND, APPEND]),
    (
        "signalExecution",
        &[PATH, JSON_BODY, COMMAND, APPEND, &[InvalidSignature]],
    ),
    ("streamEvents", &[&[InvalidQuery, InvalidHeader]]),
    (
        "publishEvent",
        &[PATH, JSON_BODY, APPEND, &[InvalidSignature]],
    ),
    (
        "createSchedule",
        &[JSON_BODY, &[InvalidSchedule, Conflict], APPEND],
    ),
    ("listSchedules", &[]),
    ("getSchedule", &[PATH, &[UnknownSchedule]]),
    (
        "updateSchedule",
        &[PATH, JSON_BODY, &[InvalidSchedule, UnknownSchedule], APPEND],
    ),
    ("deleteSchedule", &[PATH, &[UnknownSchedule], APPEND]),
    (
        "triggerSchedule",
        &[
            PATH,
            JSON_BODY,
            &[UnknownSchedule, UnknownWorkflow, InvalidInput],
            APPEND,
            READ,
        ],
    ),
    ("listBreakers", &[]),
    ("getBreaker", &[PATH, &[UnknownBreaker]]),
    ("setBreaker", &[PATH, JSON_BODY, &[InvalidBreaker], APPEND]),
    ("deleteBreaker", &[PATH, &[UnknownBreaker], APPEND]),
    ("listCapabilityLimits", &[]),
    ("getCapabilityLimits", &[PATH, &[UnknownLimits]]),
    (
        "setCapabilityLimits",
        &[PATH, JSON_BODY, &[InvalidLimits], APPEND],
    ),
    ("deleteCapabilityLimits", &[PATH, &[UnknownLimits], APPEND]),
    (
        "registerAgent",
        &[JSON_BODY, &[InvalidRegistration, Forbidden]],
    ),
    ("listAgents", &[]),
    ("getAgent", &[PATH, &[UnknownAgent]]),
    ("unregisterAgent", &[PATH, &[UnknownAgent, NotYours]]),
    (
        "heartbeatAgent",
        &[PATH, JSON_BODY, &[UnknownAgent, NotYours]],
    ),
    ("pollTasks", &[JSON_BODY, &[UnknownAgent, NotYours]]),
    (
        "completeTask",
        &[
            PATH,
            JSON_BODY,
            TASK_RESULT,
            &[UnknownAgent, NotYours],
            APPEND,
        ],
    ),
    (
        "failTask",
        &[PATH, JSON_BODY, TASK_RESULT, &[NotYours], APPEND],
    ),
    ("reportTasks", &[JSON_BODY, &[UnknownAgent, NotYours]]),
    (
        "heartbeatTask",
        &[
            PATH,
            JSON_BODY,
            &[UnknownTask, UnknownAgent, NotOutstanding, NotYours],
        ],
    ),
    (
        "createToken",
        &[JSON_BODY, &[InvalidToken, Conflict], APPEND],
    ),
    ("listTokens", &[]),
    ("getToken", &[PATH, &[UnknownToken]]),
    ("revokeToken", &[PATH, &[UnknownToken], APPEND]),
    (
        "createWebhook",
        &[JSON_BODY, &[InvalidWebhook], APPEND, READ],
    ),
    ("listWebhooks", &[]),
    ("getWebhook", &[PATH, &[UnknownWebhook]]),
    ("deleteWebhook", &[PATH, &[UnknownWebhook], APPEND]),
];

/// The error codes operation `id` can answer, `internal` included; `None`
/// for an operation [`ERRORS`] does not name. An operation that needs a
/// token (`access` is not [`Access::Open`]) can also answer `401` and `403`.
fn error_codes(operation_id: &str, access: Access, changes: bool) -> Option<Vec<Code>> {
    let (_, groups) = ERRORS.iter().find(|(id, _)| *id == operation_id)?;
    let mut codes: Vec<Code> = groups.iter().flat_map(|g| g.iter().copied()).collect();
    codes.push(Internal);
    if access != Access::Open {
        codes.extend([Unauthenticated, Forbidden, RateLimited]);
    }
    // A change may say why (`Retrace-Reason`).
    if changes {
        codes.push(InvalidHeader);
    }
    // Probes answer whatever the `Host`; everything else checks it.
    if !matches!(operation_id, "getLiveness" | "getReadiness") {
        codes.push(CrossSite);
    }
    codes.sort();
    codes.dedup();
    Some(codes)
}

/// When a code is answered, in general terms.
fn meaning(code: Code) -> &'static str {
    match code {
        BadRequest => {
            "A request the server cannot read otherwise (a path segment that is not \
             UTF-8 once percent-decoded, a body that cannot be read)."
        }
        MalformedJson => "The body is not JSON at all (or a YAML definition is not UTF-8).",
        InvalidQuery => {
            "A query parameter is unknown, of the wrong type, or out of range \
             (`status=sleeping`, `limit=0`, a `cursor` this API did not issue)."
        }
        InvalidHeader => {
            "A `Last-Event-ID` that is not a non-negative integer, or a `Retrace-Reason` that \
             is empty, longer than 1,024 characters, or holds a control character."
        }
        NotFound => "No route has this path.",
        UnknownWorkflow => "No workflow of that name (or version).",
        UnknownExecution => "No execution with that id (or the id is not one).",
        UnknownAgent => {
            "No agent registered with that id (or the id is not one): also after a \
             server restart, since registrations live in memory; register again."
        }
        UnknownTask => "The task id names no task.",
        MethodNotAllowed => {
            "The path exists, not for this method (the `Allow` header lists the methods)."
        }
        Timeout => "The request took too long.",
        WrongState => {
            "The command does not fit the execution's status (resume a running \
             execution, pause a completed one, signal an ended one); nothing is recorded."
        }
        NotOutstanding => {
            "The task is no longer outstanding: already settled, timed out, withdrawn, \
             or its execution ended; nothing changes."
        }
        NotYours => {
            "The task is held by another agent than the one named or than the caller's \
             (with tokens, a task is reported only by an agent of the token that \
             registered the agent holding it), or the agent was registered with another \
             token. Nothing changes."
        }
        Unauthenticated => {
            "The server holds access tokens and the request has none, or one that is \
             unknown, revoked or expired (`WWW-Authenticate: Bearer` says so). Nothing \
             is recorded."
        }
        InvalidSignature => {
            "The event's name has a secret (`--event-secret`) and the request's Standard \
             Webhooks signature is missing, does not match the body, is more than 5 minutes \
             from the server's clock, or reuses a `webhook-id`. Nothing is recorded."
        }
        Forbidden => {
            "The token's role may not make this request (the operation's description \
             lists the roles that may), or an agent token registers a capability it \
             does not allow. Nothing is recorded."
        }
        UnknownToken => "No token of that name.",
        UnknownSchedule => "No schedule with that id.",
        UnknownBreaker => "The capability has no circuit breaker.",
        InvalidBreaker => {
            "Circuit breaker settings with problems, every one of them in `details`: a \
             field the schema does not name, missing or of the wrong type, a value out of \
             range, a capability that is not well-formed. Nothing is recorded."
        }
        UnknownLimits => {
            "The capability has no limits in force (to read), or none set through the API \
             (to remove: the server's configuration's are not removed this way)."
        }
        UnknownWebhook => "No webhook subscription with that id.",
        InvalidWebhook => {
            "A webhook subscription with problems, every one of them in `details` (its \
             `path` the field): a field the schema does not name or of the wrong type, a URL \
             that is not `http(s)`, holds a user or password, or whose IP-literal address \
             the server's outbound policy refuses, no event kind or one the history does \
             not have, a workflow name that is not well-formed. Nothing is recorded."
        }
        InvalidLimits => {
            "Capability limits with problems, every one of them in `details`: a field the \
             schema does not name or of the wrong type, neither `concurrency` nor \
             `rateLimit`, a value out of range (a limit of 0, say), a capability that is \
             not well-formed. Nothing is recorded."
        }
        InvalidSchedule => {
            "A schedule (or what a patch makes of it) with problems, every one of them in \
             `details`: a field the schema does not name or of the wrong type, a cron \
             expression that is not five fields or an alias (or never fires), a time zone \
             that is not an IANA one, both `cron` and `everyMs` (or neither), a value out \
             of range, a workflow (or version) not defined, an input its `input` schema \
             refuses, an `id` a patch changes. Nothing is recorded."
        }
        RateLimited => {
            "The token is over its requests per second (`--token-requests-per-s`) or holds \
             as many open streams as it may (`--token-streams-max`). The answer carries \
             `Retry-After`; nothing was done."
        }
        InvalidToken => {
            "A token to create breaks a rule (its name, capabilities on a role other \
             than `agent`, an expiry of 0)."
        }
        CrossSite => {
            "A request a browser could have been made to send from another site: a `Host` \
             that is not an IP address, `localhost` or a name allowed with `--allowed-host` \
             (DNS rebinding), or a change (not `GET`) from an `Origin` that is neither the \
             server's own nor allowed with `--cors-origin`. Nothing is recorded."
        }
        Conflict => {
            "A concurrent change got there first (two starts racing with one \
             idempotency key, a trigger that became stale; retrying is safe), or what \
             the request creates exists already (a schedule's id, a token's name)."
        }
        PayloadTooLarge => "The body is larger than the server's limit (`--max-body-bytes`).",
        UnsupportedMediaType => {
            "A body without `Content-Type: application/json` (or a YAML type, for \
             workflow definitions); also a `POST` with no body that does not say \
             `Content-Type: application/json` (a browser sends such a request to any site \
             unasked)."
        }
        InvalidBody => {
            "JSON of the wrong shape: a missing or unknown field, a wrong type, a value \
             out of range, an ill-formed event name; or an event too large for the journal."
        }
        InvalidWorkflow => {
            "A definition with problems: every one of them in `details`. A definition \
             that does not even parse is one problem with the empty path."
        }
        InvalidInput => {
            "The input does not match the workflow's `input` schema: every mismatch in \
             `details` (`path` is a JSON pointer into the input)."
        }
        InvalidRegistration => {
            "An agent registration breaks a rule (name, capabilities, `maxConcurrency`)."
        }
        Internal => {
            "A bug or a damaged journal (the message carries the journal's stable code, \
             such as `[JOURNAL-CORRUPT]`)."
        }
        Unavailable => {
            "The server is shutting down, or, on a journal servers share on NATS, the server \
             holding what the request names cannot be reached or is not known yet (its \
             partition is moving between servers), or a server asked for its part of a list \
             or a publish did not answer: retry. Nothing was done, unless the server serving \
             it failed before answering (retry a start with its idempotency key), or a \
             publish reached the executions of the servers that answered."
        }
        StorageUnavailable => {
            "The journal's storage refuses writes (a full disk, say): nothing was recorded. \
             The answer carries `Retry-After`; the server resumes on its own once the \
             storage takes writes again."
        }
    }
}

/// The bearer scheme, and on each operation that needs a token, that it
/// does and which roles may call it.
struct Security<'a> {
    access: &'a AccessTable,
}

/// The name of the bearer scheme in `components.securitySchemes`.
const BEARER: &str = "bearer";

impl Modify for Security<'_> {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An access token (`rtk_…`), from `retrace token create` or \
                         `POST /v1/tokens`. Required once the server holds any token.",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in methods_mut(item) {
                let access = access_of(self.access, &method, path);
                if access == Access::Open {
                    // Explicitly none: open even when tokens are on.
                    operation.security = Some(vec![SecurityRequirement::default()]);
                    continue;
                }
                operation.security =
                    Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                let roles: Vec<&str> = access.roles().iter().map(|r| r.as_str()).collect();
                let note = format!("Roles: {}.", roles.join(", "));
                operation.description = Some(match operation.description.take() {
                    Some(d) => format!("{d}\n\n{note}"),
                    None => note,
                });
            }
        }
    }
}

/// Adds to every operation its error responses, one per status, each
/// listing the codes it stands for.
struct ErrorResponses<'a> {
    access: &'a AccessTable,
}

impl Modify for ErrorResponses<'_> {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in methods_mut(item) {
                let access = access_of(self.access, &method, path);
                let Some(codes) = operation
                    .operation_id
                    .as_deref()
                    .and_then(|id| error_codes(id, access, method != axum::http::Method::GET))
                else {
                    continue;
                };
                let mut by_status: BTreeMap<u16, Vec<Code>> = BTreeMap::new();
                for code in codes {
                    by_status
                        .entry(code.status().as_u16())
                        .or_default()
                        .push(code);
                }
                for (status, codes) in by_status {
                    let description = codes
                        .iter()
                        .map(|c| format!("- `{}`: {}", c.as_str(), meaning(*c)))
                        .collect::<Vec<_>>()
                        .join("\n");
                    let response = Response::builder()
                        .description(description)
                        .content(
                            "application/json",
                            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                        )
                        .build();
                    operation
                        .responses
                        .responses
                        .insert(status.to_string(), RefOr::T(response));
                }
            }
        }
    }
}

/// Bodies whose fields are each optional but that need at least one of
/// them: `minProperties: 1` (their unknown fields are refused, so one of
/// theirs). utoipa 5.5 writes a struct's `min_properties` as
/// `maxProperties`, so it is set here.
struct AtLeastOne;

impl Modify for AtLeastOne {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for name in ["CapabilityLimits"] {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
                object.min_properties = Some(1);
            }
        }
    }
}

/// Lists whose items must each be different (utoipa 5.5 has no field
/// attribute for `uniqueItems`): a webhook's event kinds.
struct UniqueItems;

impl Modify for UniqueItems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for (name, field) in [("WebhookSpec", "events")] {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name)
                && let Some(RefOr::T(Schema::Array(array))) = object.properties.get_mut(field)
            {
                array.unique_items = true;
            }
        }
    }
}

/// A body whose fields are all optional (`request_body(content =
/// Option<T>)`) is not one that may be `null` (a `null` body is refused):
/// its schema is `T`'s. It is also `required`: a `POST` must say
/// `Content-Type: application/json` even with no body (see
/// [`crate::guard`]), and a client made from this document then sends
/// `{}`. The server takes an empty body with that type as `{}`.
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                let Some(body) = operation.request_body.as_mut() else {
                    continue;
                };
                if matches!(body.required, Some(Required::True)) {
                    continue;
                }
                body.required = Some(Required::True);
                for content in body.content.values_mut() {
                    if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema
                        && let [a, b] = one_of.items.as_slice()
                    {
                        content.schema = match (is_null(a), is_null(b)) {
                            (true, false) => Some(b.clone()),
                            (false, true) => Some(a.clone()),
                            _ => continue,
                        };
                    }
                }
            }
        }
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null))
}

// ----- links -----

/// Where a value an answer carries can be used next: (source operation,
/// its statuses, link name, target operation, parameters as (name, runtime
/// expression), the request body's fields as (name, runtime expression)).
/// Clients (and the stateful tests) follow them from an answer to the
/// requests it makes possible.
type LinkSpec = (
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [(&'static str, &'static str)],
);

const DEFINED_NAME: &[(&str, &str)] = &[("name", "$response.body#/name")];
const STARTED_ID: &[(&str, &str)] = &[("id", "$response.body#/id")];
const REGISTERED_ID: &[(&str, &str)] = &[("id", "$response.body#/id")];
const SCHEDULE_ID: &[(&str, &str)] = &[("id", "$response.body#/id")];
/// A breaker's or a capability's limits' capability.
const CAPABILITY: &[(&str, &str)] = &[("capability", "$response.body#/capability")];
const STARTED: &[&str] = &["200", "201", "202"];

const LINKS: &[LinkSpec] = &[
    (
        "defineWorkflow",
        &["200", "201"],
        "GetWorkflow",
        "getWorkflow",
        DEFINED_NAME,
        &[],
    ),
    (
        "defineWorkflow",
        &["200", "201"],
        "GetWorkflowVersion",
        "getWorkflowVersion",
        &[
            ("name", "$response.body#/name"),
            ("version", "$response.body#/version"),
        ],
        &[],
    ),
    (
        "defineWorkflow",
        &["200", "201"],
        "StartExecution",
        "startExecution",
        &[],
        &[
            ("workflow", "$response.body#/name"),
            ("version", "$response.body#/version"),
        ],
    ),
    (
        "startExecution",
        STARTED,
        "GetExecution",
        "getExecution",
        STARTED_ID,
        &[],
    ),
    (
        "startExecution",
        STARTED,
        "ListExecutionEvents",
        "listExecutionEvents",
        STARTED_ID,
        &[],
    ),
    (
        "startExecution",
        STARTED,
        "StreamExecutionEvents",
        "streamExecutionEvents",
        STARTED_ID,
        &[],
    ),
    (
        "startExecution",
        STARTED,
        "PauseExecution",
        "pauseExecution",
        STARTED_ID,
        &[],
    ),
    (
        "startExecution",
        STARTED,
        "ResumeExecution",
        "resumeExecution",
        STARTED_ID,
        &[],
    ),
    (
        "startExecution",
        STARTED,
        "CancelExecution",
        "cancelExecution",
        STARTED_ID,
        &[],
    ),
    (
        "startExecution",
        STARTED,
        "TerminateExecution",
        "terminateExecution",
        STARTED_ID,
        &[],
    ),
    (
        "startExecution",
        STARTED,
        "RetryExecution",
        "retryExecution",
        STARTED_ID,
        &[],
    ),
    (
        "startExecution",
        STARTED,
        "SkipExecution",
        "skipExecution",
        STARTED_ID,
        &[],
    ),
    (
        "startExecution",
        STARTED,
        "RedriveExecution",
        "redriveExecution",
        STARTED_ID,
        &[],
    ),
    (
        "startExecution",
        STARTED,
        "SignalExecution",
        "signalExecution",
        STARTED_ID,
        &[],
    ),
    (
        "listExecutions",
        &["200"],
        "NextPage",
        "listExecutions",
        &[("cursor", "$response.body#/nextCursor")],
        &[],
    ),
    (
        "createSchedule",
        &["201"],
        "GetSchedule",
        "getSchedule",
        SCHEDULE_ID,
        &[],
    ),
    (
        "createSchedule",
        &["201"],
        "UpdateSchedule",
        "updateSchedule",
        SCHEDULE_ID,
        &[],
    ),
    (
        "createSchedule",
        &["201"],
        "TriggerSchedule",
        "triggerSchedule",
        SCHEDULE_ID,
        &[],
    ),
    (
        "createSchedule",
        &["201"],
        "DeleteSchedule",
        "deleteSchedule",
        SCHEDULE_ID,
        &[],
    ),
    (
        "setBreaker",
        &["200"],
        "GetBreaker",
        "getBreaker",
        CAPABILITY,
        &[],
    ),
    (
        "setBreaker",
        &["200"],
        "DeleteBreaker",
        "deleteBreaker",
        CAPABILITY,
        &[],
    ),
    (
        "setCapabilityLimits",
        &["200"],
        "GetCapabilityLimits",
        "getCapabilityLimits",
        CAPABILITY,
        &[],
    ),
    (
        "setCapabilityLimits",
        &["200"],
        "DeleteCapabilityLimits",
        "deleteCapabilityLimits",
        CAPABILITY,
        &[],
    ),
    (
        "registerAgent",
        &["201"],
        "GetAgent",
        "getAgent",
        REGISTERED_ID,
        &[],
    ),
    (
        "registerAgent",
        &["201"],
        "HeartbeatAgent",
        "heartbeatAgent",
        REGISTERED_ID,
        &[],
    ),
    (
        "registerAgent",
        &["201"],
        "UnregisterAgent",
        "unregisterAgent",
        REGISTERED_ID,
        &[],
    ),
    (
        "registerAgent",
        &["201"],
        "PollTasks",
        "pollTasks",
        &[],
        &[("agentId", "$response.body#/id")],
    ),
    (
        "pollTasks",
        &["200"],
        "CompleteTask",
        "completeTask",
        &[("id", "$response.body#/tasks/0/id")],
        &[],
    ),
    (
        "pollTasks",
        &["200"],
        "FailTask",
        "failTask",
        &[("id", "$response.body#/tasks/0/id")],
        &[],
    ),
    (
        "pollTasks",
        &["200"],
        "HeartbeatTask",
        "heartbeatTask",
        &[("id", "$response.body#/tasks/0/id")],
        &[],
    ),
];

/// Adds [`LINKS`] to the responses they start from.
struct Links;

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                let Some(id) = operation.operation_id.clone() else {
                    continue;
                };
                for (_, statuses, name, target, parameters, body) in
                    LINKS.iter().filter(|spec| spec.0 == id)
                {
                    let mut link = Link::builder().operation_id(*target);
                    for (parameter, expression) in *parameters {
                        link = link.parameter(*parameter, *expression);
                    }
                    if !body.is_empty() {
                        let fields: serde_json::Map<String, serde_json::Value> = body
                            .iter()
                            .map(|(field, expression)| ((*field).to_owned(), (*expression).into()))
                            .collect();
                        link = link.request_body(Some(serde_json::Value::Object(fields)));
                    }
                    let link = link.build();
                    for status in *statuses {
                        if let Some(RefOr::T(response)) =
                            operation.responses.responses.get_mut(*status)
                        {
                            response
                                .links
                                .insert((*name).to_owned(), RefOr::T(link.clone()));
                        }
                    }
                }
            }
        }
    }
}

/// Who may call `method` `path`, from the router's table (open for a pair it
/// does not route, which the tests make sure never happens).
fn access_of(table: &AccessTable, method: &axum::http::Method, path: &str) -> Access {
    table
        .iter()
        .find(|(m, p, _)| m == method && *p == path)
        .map_or(Access::Open, |(_, _, access)| *access)
}

/// Each operation of `item` with its method.
fn methods_mut(item: &mut PathItem) -> impl Iterator<Item = (axum::http::Method, &mut Operation)> {
    use axum::http::Method;
    [
        (Method::GET, &mut item.get),
        (Method::PUT, &mut item.put),
        (Method::POST, &mut item.post),
        (Method::DELETE, &mut item.delete),
        (Method::OPTIONS, &mut item.options),
        (Method::HEAD, &mut item.head),
        (Method::PATCH, &mut item.patch),
        (Method::TRACE, &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_mut().map(|op| (m, op)))
}

/// Every operation of a path.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_operation_has_its_error_codes_and_no_others_are_named() {
        let doc = document(&crate::router::access_table());
        let mut ids = BTreeSet::new();
        for item in doc.paths.paths.clone().values_mut() {
            for operation in operations_mut(item) {
                let id = operation.operation_id.clone().unwrap_or_default();
                assert!(
                    error_codes(&id, Access::Open, false).is_some(),
                    "ERRORS does not name {id}"
                );
                assert!(ids.insert(id.clone()), "operation id {id} is used twice");
            }
        }
        let named: BTreeSet<String> = ERRORS.iter().map(|(id, _)| (*id).to_owned()).collect();
        assert_eq!(named.len(), ERRORS.len(), "ERRORS names an operation twice");
        assert_eq!(
            named, ids,
            "ERRORS names operations the document does not have"
        );
    }

    #[test]
    fn error_responses_carry_the_status_of_their_codes() {
        let doc = document(&crate::router::access_table());
        let op = doc.paths.paths["/v1/executions/{id}/pause"]
            .post
            .clone()
            .unwrap();
        let statuses: Vec<&str> = op.responses.responses.keys().map(String::as_str).collect();
        assert_eq!(
            statuses,
            [
                "200", "400", "401", "403", "404", "409", "413", "415", "422", "429", "500", "503"
            ]
        );
        let RefOr::T(forbidden) = &op.responses.responses["403"] else {
            panic!("403 is inline")
        };
        assert!(forbidden.description.contains("`forbidden`"));
        assert!(forbidden.description.contains("`cross_site`"));
        assert!(
            op.description
                .as_deref()
                .unwrap_or("")
                .contains("Roles: admin, operator.")
        );
        let probe = doc.paths.paths["/healthz"].get.clone().unwrap();
        assert!(!probe.responses.responses.contains_key("401"));
        let RefOr::T(conflict) = &op.responses.responses["409"] else {
            panic!("409 is inline")
        };
        assert!(conflict.description.contains("`wrong_state`"));
        assert!(conflict.description.contains("`conflict`"));
    }

    #[test]
    fn every_link_leads_to_an_operation_and_fills_what_it_takes() {
        let text = document_text(&crate::router::access_table()).unwrap();
        for snake in ["operation_ref", "operation_id", "request_body"] {
            assert!(!text.contains(snake), "{snake} is left in the document");
        }
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut operations = BTreeMap::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                if let Some(id) = operation["operationId"].as_str() {
                    operations.insert(id.to_owned(), operation.clone());
                }
            }
        }
        let mut links = 0;
        for operation in operations.values() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let Some(found) = response.get("links").and_then(|l| l.as_object()) else {
                    continue;
                };
                for (name, link) in found {
                    links += 1;
                    let what = format!("{} {status} {name}", operation["operationId"]);
                    let target = link["operationId"].as_str().expect(&what);
                    let target = operations.get(target).expect(&what);
                    let parameters: BTreeSet<&str> = target["parameters"]
                        .as_array()
                        .map(|p| p.iter().filter_map(|p| p["name"].as_str()).collect())
                        .unwrap_or_default();
                    for parameter in link["parameters"].as_object().into_iter().flatten() {
                        assert!(parameters.contains(parameter.0.as_str()), "{what}");
                    }
                    if let Some(body) = link.get("requestBody") {
                        let schema =
                            &target["requestBody"]["content"]["application/json"]["schema"]["$ref"];
                        let name = schema.as_str().expect(&what).rsplit('/').next().unwrap();
                        let properties = &doc["components"]["schemas"][name]["properties"];
                        for field in body.as_object().expect(&what).keys() {
                            assert!(properties.get(field).is_some(), "{what}: {field}");
                        }
                    }
                    for expression in link["parameters"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(_, e)| e)
                        .chain(
                            link.get("requestBody")
                                .and_then(|b| b.as_object())
                                .into_iter()
                                .flat_map(|b| b.values()),
                        )
                    {
                        assert!(
                            expression
                                .as_str()
                                .is_some_and(|e| e.starts_with("$response.body#/")),
                            "{what}: {expression}"
                        );
                    }
                }
            }
        }
        assert_eq!(
            links,
            LINKS.iter().map(|spec| spec.1.len()).sum::<usize>(),
            "every link is in the document"
        );
    }

    #[test]
    fn bodies_of_optional_fields_are_required_and_never_null() {
        let doc = document(&crate::router::access_table());
        let op = doc.paths.paths["/v1/executions/{id}/pause"]
            .post
            .clone()
            .unwrap();
        let body = op.request_body.unwrap();
        assert!(matches!(body.required, Some(Required::True)));
        let schema = body.content["application/json"].schema.clone().unwrap();
        assert!(
            matches!(&schema, RefOr::Ref(r) if r.ref_location == "#/components/schemas/ReasonBody"),
            "{:?}",
            serde_json::to_string(&schema)
        );
    }
}
