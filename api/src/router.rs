//! The router: every endpoint with who may call it, and the layers around
//! them (body limit, request logs and timings, CORS when configured, where
//! a request is served when servers share a journal, the cross-site guard,
//! tokens and roles, panics as `500`, and
//! JSON bodies for the framework's own error responses).
//!
//! Owns the URL space (`endpoints`: every method and path, and the
//! handler that answers it) and the layer order. Handlers live in
//! [`crate::routes`], one module per resource; this file must never hold
//! endpoint logic.

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tracing::Instrument;

use crate::auth::{self, Access};
use crate::error::Error;
use crate::extract::is_json;
use crate::http_metrics::{HttpMetrics, UNMATCHED};
use crate::routes::{
    agents, breakers, commands, dashboard, executions, health, history, limits, metrics, schedules,
    signal_with_start, streams, tasks, tokens, webhooks, workflows,
};
use crate::state::AppState;
use crate::{front, guard, openapi};

/// One endpoint: a method and a path, and the handler that answers them.
struct Endpoint {
    method: Method,
    path: &'static str,
    /// Who may call it (see [`crate::auth`]).
    access: Access,
    route: MethodRouter<AppState>,
}

impl Endpoint {
    fn get<H: Handler<T, AppState>, T: 'static>(
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self {
        Endpoint {
            method: Method::GET,
            path,
            access,
            route: get(handler),
        }
    }

    fn post<H: Handler<T, AppState>, T: 'static>(
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self {
        Endpoint {
            method: Method::POST,
            path,
            access,
            route: post(handler),
        }
    }

    fn put<H: Handler<T, AppState>, T: 'static>(
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self {
        Endpoint {
            method: Method::PUT,
            path,
            access,
            route: put(handler),
        }
    }

    fn patch<H: Handler<T, AppState>, T: 'static>(
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self {
        Endpoint {
            method: Method::PATCH,
            path,
            access,
            route: patch(handler),
        }
    }

    fn delete<H: Handler<T, AppState>, T: 'static>(
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self {
        Endpoint {
            method: Method::DELETE,
            path,
            access,
            route: delete(handler),
        }
    }
}

/// Every endpoint [`app`] serves, and only those. Each handler describes
/// itself for the OpenAPI document (`#[utoipa::path]`, listed in
/// [`crate::openapi`]); a test fails when the document and [`routes`]
/// differ.
fn endpoints() -> Vec<Endpoint> {
    type E = Endpoint;
    type A = Access;
    vec![
        E::get("/healthz", A::Open, health::live),
        E::get("/readyz", A::Open, health::ready),
        E::get("/metrics", A::Read, metrics::prometheus),
        E::get("/v1/metrics", A::Read, metrics::json),
        E::get("/openapi.json", A::Open, openapi::serve),
        E::get("/", A::Open, dashboard::page),
        E::get("/ui/{file}", A::Open, dashboard::file),
        E::post("/v1/workflows", A::Operate, workflows::define),
        E::get("/v1/workflows", A::Read, workflows::list),
        E::post("/v1/workflows/validate", A::Read, workflows::validate),
        E::get("/v1/workflows/{name}", A::Read, workflows::by_name),
        E::get(
            "/v1/workflows/{name}/versions/{version}",
            A::Read,
            workflows::version,
        ),
        E::get(
            "/v1/workflows/{name}/versions/{version}/graph",
            A::Read,
            workflows::graph,
        ),
        E::post("/v1/executions", A::Client, executions::start),
        E::post(
            "/v1/executions/signal-with-start",
            A::Client,
            signal_with_start::signal_with_start,
        ),
        E::get("/v1/executions", A::Read, executions::list),
        E::get("/v1/executions/{id}", A::Read, executions::get),
        E::get("/v1/executions/{id}/events", A::Read, executions::events),
        E::get("/v1/executions/{id}/replay", A::Read, history::replay),
        E::get("/v1/executions/{id}/verify", A::Read, history::verify),
        E::get(
            "/v1/executions/{id}/events/stream",
            A::Read,
            streams::execution,
        ),
        E::post("/v1/executions/{id}/pause", A::Operate, commands::pause),
        E::post("/v1/executions/{id}/resume", A::Operate, commands::resume),
        E::post("/v1/executions/{id}/cancel", A::Operate, commands::cancel),
        E::post(
            "/v1/executions/{id}/terminate",
            A::Operate,
            commands::terminate,
        ),
        E::post("/v1/executions/{id}/retry", A::Operate, commands::retry),
        E::post("/v1/executions/{id}/skip", A::Operate, commands::skip),
        E::post("/v1/executions/{id}/redrive", A::Operate, commands::redrive),
        E::post(
            "/v1/executions/{id}/signals/{name}",
            A::Client,
            commands::signal,
        ),
        E::get("/v1/events/stream", A::Read, streams::all),
        E::post("/v1/events/{name}", A::Client, commands::publish),
        E::post("/v1/schedules", A::Operate, schedules::create),
        E::get("/v1/schedules", A::Read, schedules::list),
        E::get("/v1/schedules/{id}", A::Read, schedules::get),
        E::patch("/v1/schedules/{id}", A::Operate, schedules::update),
        E::delete("/v1/schedules/{id}", A::Operate, schedules::delete),
        E::post("/v1/schedules/{id}/trigger", A::Operate, schedules::trigger),
        E::get("/v1/breakers", A::Read, breakers::list),
        E::get(
            "/v1/capabilities/{capability}/breaker",
            A::Read,
            breakers::get,
        ),
        E::put(
            "/v1/capabilities/{capability}/breaker",
            A::Operate,
            breakers::set,
        ),
        E::delete(
            "/v1/capabilities/{capability}/breaker",
            A::Operate,
            breakers::delete,
        ),
        E::get("/v1/limits", A::Read, limits::list),
        E::get("/v1/capabilities/{capability}/limits", A::Read, limits::get),
        E::put(
            "/v1/capabilities/{capability}/limits",
            A::Operate,
            limits::set,
        ),
        E::delete(
            "/v1/capabilities/{capability}/limits",
            A::Operate,
            limits::delete,
        ),
        E::post("/v1/agents", A::Agent, agents::register),
        E::get("/v1/agents", A::Read, agents::list),
        E::get("/v1/agents/{id}", A::Read, agents::get),
        E::delete("/v1/agents/{id}", A::Agent, agents::unregister),
        E::post("/v1/agents/{id}/heartbeat", A::Agent, agents::heartbeat),
        E::post("/v1/tasks/poll", A::Agent, tasks::poll),
        E::post("/v1/tasks/report", A::Agent, tasks::report),
        E::post("/v1/tasks/{id}/complete", A::Agent, tasks::complete),
        E::post("/v1/tasks/{id}/fail", A::Agent, tasks::fail),
        E::post("/v1/tasks/{id}/heartbeat", A::Agent, tasks::heartbeat),
        E::post("/v1/tokens", A::Admin, tokens::create),
        E::get("/v1/tokens", A::Admin, tokens::list),
        E::get("/v1/tokens/{name}", A::Admin, tokens::get),
        E::delete("/v1/tokens/{name}", A::Admin, tokens::revoke),
        E::post("/v1/webhooks", A::Admin, webhooks::create),
        E::get("/v1/webhooks", A::Admin, webhooks::list),
        E::get("/v1/webhooks/{id}", A::Admin, webhooks::get),
        E::delete("/v1/webhooks/{id}", A::Admin, webhooks::delete),
    ]
}

/// Every method and path [`app`] routes, in `endpoints`' order.
pub fn routes() -> Vec<(Method, &'static str)> {
    endpoints()
        .into_iter()
        .map(|e| (e.method, e.path))
        .collect()
}

/// Every method and path [`app`] routes with who may call it, in
/// `endpoints`' order: the role table of `docs/api.md`.
pub fn access_table() -> Vec<(Method, &'static str, Access)> {
    endpoints()
        .into_iter()
        .map(|e| (e.method, e.path, e.access))
        .collect()
}

/// The HTTP API over `state`'s engine.
pub fn app(state: AppState) -> Router {
    build(state, None)
}

/// The HTTP API of a server sharing its journal with others: each request
/// served here or sent where `front` says it is served.
pub fn shared_app(state: AppState, front: front::Front) -> Router {
    build(state, Some(front))
}

fn build(state: AppState, front: Option<front::Front>) -> Router {
    let max_body_bytes = state.config.max_body_bytes;
    let cors = cors(&state.config.cors_origins);
    // Endpoints on one path merge into one method router (which answers
    // other methods with `405` and an `Allow` header).
    let router = endpoints()
        .into_iter()
        .fold(Router::new(), |router, e| router.route(e.path, e.route));
    let gate = auth::Gate {
        engine: state.engine.clone(),
        routes: Arc::new(
            access_table()
                .into_iter()
                .map(|(method, path, access)| ((method, path), access))
                .collect(),
        ),
        secrets: state.config.event_secrets.clone(),
        limits: state.config.token_limits.clone(),
    };
    let router = router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        // Extractors enforce the limit on bodies of any framing; the tower
        // layer refuses a declared Content-Length over it before reading.
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        // Route layers run outermost last: the cross-site guard, then who
        // is calling. On routes only: a path no route has is a 404 whatever
        // its Host or token, and both need the route.
        .route_layer(middleware::from_fn_with_state(gate, auth::authenticate))
        .route_layer(middleware::from_fn_with_state(
            guard::Allowed {
                hosts: state.config.allowed_hosts.clone(),
                origins: state.config.cors_origins.clone(),
                posts: Arc::new(
                    routes()
                        .into_iter()
                        .filter(|(method, _)| *method == Method::POST)
                        .map(|(_, path)| path)
                        .collect(),
                ),
            },
            guard::cross_site,
        ));
    // Sharing a journal: before anything else on a route, the request goes
    // where it is served, which checks it.
    let router = match front {
        Some(front) => router.route_layer(middleware::from_fn_with_state(front, front::place)),
        None => router,
    };
    let router = router
        .layer(middleware::from_fn_with_state(max_body_bytes, json_errors))
        .layer(CatchPanicLayer::custom(on_panic))
        .layer(middleware::from_fn_with_state(
            state.http_metrics.clone(),
            requests,
        ));
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    // Outermost: a change runs to its end even if its client leaves.
    let router = router.layer(middleware::from_fn(run_to_completion));
    let state = AppState {
        routes: access_table().into(),
        ..state
    };
    router.with_state(state)
}

/// Runs a request that changes something in a task of its own, so it
/// finishes even if its client leaves (a connection dropped mid-request,
/// or the server forwarding it killed): dropped half-way, a command whose
/// events were already sent to the journal would not perform their
/// effects (a task recorded as scheduled but never offered to an agent).
/// Reads, and polls (whose claims are only worth making for a client
/// still there), stop with their client as before.
async fn run_to_completion(req: Request, next: Next) -> Response {
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || req.uri().path() == "/v1/tasks/poll";
    if reads {
        return next.run(req).await;
    }
    match tokio::spawn(next.run(req)).await {
        Ok(response) => response,
        Err(e) => Error::Internal(format!("the request stopped: {e}")).into_response(),
    }
}

async fn no_route(method: Method, uri: Uri) -> Error {
    Error::NoRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> Error {
    Error::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// Gives an error response made below the handlers (a layer's `413`, say)
/// the API's JSON body, keeping its status and its `Allow` header.
async fn json_errors(State(max_body_bytes): State<usize>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers()) {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => Error::NoRoute { method, path },
        StatusCode::METHOD_NOT_ALLOWED => Error::MethodNotAllowed { method, path },
        StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge {
            limit_bytes: max_body_bytes,
        },
        status => Error::Status {
            status,
            message: status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_owned(),
        },
    };
    let mut replaced = error.into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        replaced.headers_mut().insert(header::ALLOW, allow.clone());
    }
    replaced
}

/// The target of the request log lines, for `RUST_LOG`
/// (`RUST_LOG=info,retrace_api::requests=debug` logs every request).
pub const REQUESTS_TARGET: &str = "retrace_api::requests";

/// The largest error body read for its code (the API's are far smaller).
const ERROR_BODY_MAX: u64 = 64 * 1024;

/// Logs each request once its response head is ready — method, route
/// template, path, status, the error code of a `4xx`/`5xx`, and how long it
/// took — and counts it in `retrace_http_request_duration_seconds`.
/// Successes are logged at `debug`, `4xx` at `info`, `5xx` at `warn`.
/// Whatever the handler logs is inside a `request` span (at `debug`).
async fn requests(State(metrics): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let span = tracing::debug_span!("request", %method, %route);
    let response = next.run(req).instrument(span).await;
    let took = started.elapsed();
    let status = response.status();
    metrics.observe(&method, &route, status, took);
    let (response, code) = if status.is_client_error() || status.is_server_error() {
        error_code(response).await
    } else {
        (response, None)
    };
    // Milliseconds, to the microsecond.
    let duration_ms = took.as_micros() as f64 / 1000.0;
    macro_rules! log {
        ($level:ident) => {
            tracing::$level!(
                target: REQUESTS_TARGET,
                %method,
                %route,
                %path,
                status = status.as_u16(),
                code = code.as_ref().map(tracing::field::display),
                duration_ms,
                "request"
            )
        };
    }
    if status.is_server_error() {
        log!(warn);
    } else if status.is_client_error() {
        log!(info);
    } else {
        log!(debug);
    }
    response
}

/// The `code` of the API's JSON error body, and the response, unchanged.
async fn error_code(response: Response) -> (Response, Option<String>) {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: Code,
    }
    #[derive(serde::Deserialize)]
    struct Code {
        code: String,
    }
    let small = response
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n <= ERROR_BODY_MAX);
    if !small || !is_json(response.headers()) {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    // A body of known, small size is in memory: reading it cannot fail
    // (if it did, the client would get an empty body, never a panic).
    let bytes = axum::body::to_bytes(body, ERROR_BODY_MAX as usize)
        .await
        .unwrap_or_default();
    let code = serde_json::from_slice::<ErrorBody>(&bytes)
        .ok()
        .map(|b| b.error.code);
    (Response::from_parts(parts, Body::from(bytes)), code)
}

fn on_panic(panic: Box<dyn Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a handler panicked");
    Error::Internal(format!("internal error: {what}")).into_response()
}

/// CORS for the configured origins; `None` (no CORS headers at all) when
/// none is configured.
fn cors(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("last-event-id"),
                HeaderName::from_static(crate::auth::REASON_HEADER),
            ]),
    )
}
