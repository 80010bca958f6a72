//! The router: every endpoint, and the layers around them (body limit,
//! request tracing, CORS when configured, panics as `500`, and JSON bodies
//! for the framework's own error responses).
//!
//! Owns the URL space and the layer order. Handlers live one module per
//! resource; this file must never hold endpoint logic.

pub mod agents;
pub mod commands;
pub mod executions;
pub mod health;
pub mod metrics;
pub mod streams;
pub mod tasks;
pub mod workflows;

use std::any::Any;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::error::Error;
use crate::extract::is_json;
use crate::state::AppState;

/// The HTTP API over `state`'s engine.
pub fn app(state: AppState) -> Router {
    let max_body_bytes = state.config.max_body_bytes;
    let cors = cors(&state.config.cors_origins);
    let router = Router::new()
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(metrics::prometheus))
        .route("/v1/metrics", get(metrics::json))
        .route(
            "/v1/workflows",
            post(workflows::define).get(workflows::list),
        )
        .route("/v1/workflows/validate", post(workflows::validate))
        .route("/v1/workflows/{name}", get(workflows::by_name))
        .route(
            "/v1/workflows/{name}/versions/{version}",
            get(workflows::version),
        )
        .route(
            "/v1/executions",
            post(executions::start).get(executions::list),
        )
        .route("/v1/executions/{id}", get(executions::get))
        .route("/v1/executions/{id}/events", get(executions::events))
        .route("/v1/executions/{id}/events/stream", get(streams::execution))
        .route("/v1/executions/{id}/pause", post(commands::pause))
        .route("/v1/executions/{id}/resume", post(commands::resume))
        .route("/v1/executions/{id}/cancel", post(commands::cancel))
        .route("/v1/executions/{id}/terminate", post(commands::terminate))
        .route("/v1/executions/{id}/retry", post(commands::retry))
        .route("/v1/executions/{id}/skip", post(commands::skip))
        .route("/v1/executions/{id}/redrive", post(commands::redrive))
        .route("/v1/executions/{id}/signals/{name}", post(commands::signal))
        .route("/v1/events/stream", get(streams::all))
        .route("/v1/events/{name}", post(commands::publish))
        .route("/v1/agents", post(agents::register).get(agents::list))
        .route(
            "/v1/agents/{id}",
            get(agents::get).delete(agents::unregister),
        )
        .route("/v1/agents/{id}/heartbeat", post(agents::heartbeat))
        .route("/v1/tasks/poll", post(tasks::poll))
        .route("/v1/tasks/{id}/complete", post(tasks::complete))
        .route("/v1/tasks/{id}/fail", post(tasks::fail))
        .route("/v1/tasks/{id}/heartbeat", post(tasks::heartbeat))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        // Extractors enforce the limit on bodies of any framing; the tower
        // layer refuses a declared Content-Length over it before reading.
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(middleware::from_fn_with_state(max_body_bytes, json_errors))
        .layer(CatchPanicLayer::custom(on_panic))
        .layer(TraceLayer::new_for_http());
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.with_state(state)
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
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
            ]),
    )
}
