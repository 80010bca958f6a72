//! The API's one error type, and how it renders: every error response, the
//! framework's own rejections included, is
//! `{"error":{"code","message","details"?}}` with the status the code implies.
//!
//! Owns the mapping from engine, agent and journal errors to HTTP statuses and
//! stable codes (listed in `docs/api.md`). It must never decide *whether*
//! something is an error — handlers and the engine do — and never invent a
//! code for a case the table here does not name.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use retrace_engine::agents::AgentError;
use retrace_engine::machine::Rejection;
use retrace_engine::model::Problem;
use retrace_engine::runtime::Error as EngineError;
use serde::Serialize;

/// Everything the API can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No route has this path.
    #[error("no route for {method} {path}")]
    NoRoute { method: String, path: String },
    /// The path exists, but not for this method.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("no workflow {0}")]
    UnknownWorkflow(String),
    #[error("no execution {0}")]
    UnknownExecution(String),
    /// Registrations live in memory only, so this is also what an agent sees
    /// after a restart: it must register again.
    #[error("no agent {0} is registered (registrations do not survive a restart: register again)")]
    UnknownAgent(String),
    #[error("no task {0}")]
    UnknownTask(String),
    /// The body is not JSON at all.
    #[error("{0}")]
    MalformedJson(String),
    /// The body is JSON, but not of the expected shape or types.
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    InvalidHeader(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body is larger than the limit of {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    /// A workflow definition with problems: every one of them, in `details`.
    #[error(
        "invalid workflow definition ({} problem{})",
        .0.len(),
        if .0.len() == 1 { "" } else { "s" }
    )]
    InvalidWorkflow(Vec<Problem>),
    /// An execution's input that does not match its workflow's input schema.
    #[error("the input does not match the workflow's input schema")]
    InvalidInput(Vec<String>),
    #[error("{0}")]
    InvalidRegistration(String),
    /// The command makes no sense in the execution's status.
    #[error("{0}")]
    WrongState(String),
    /// A task that is not (or no longer) outstanding.
    #[error("{0}")]
    NotOutstanding(String),
    /// A task claimed by another agent.
    #[error("{0}")]
    NotYours(String),
    #[error("{0}")]
    Conflict(String),
    /// The server is shutting down, or the journal stopped accepting writes.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    /// An error response made by a layer below the handlers (its status is
    /// kept, its body replaced by this format).
    #[error("{message}")]
    Status { status: StatusCode, message: String },
}

/// One entry of `details`.
#[derive(Debug, Serialize)]
struct Detail<'a> {
    path: &'a str,
    message: &'a str,
}

#[derive(Debug, Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Debug, Serialize)]
struct Inner<'a> {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Vec<Detail<'a>>>,
}

impl Error {
    /// The HTTP status and the stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::NoRoute { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Error::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            Error::UnknownWorkflow(_) => (StatusCode::NOT_FOUND, "unknown_workflow"),
            Error::UnknownExecution(_) => (StatusCode::NOT_FOUND, "unknown_execution"),
            Error::UnknownAgent(_) => (StatusCode::NOT_FOUND, "unknown_agent"),
            Error::UnknownTask(_) => (StatusCode::NOT_FOUND, "unknown_task"),
            Error::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            Error::InvalidBody(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            Error::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            Error::InvalidHeader(_) => (StatusCode::BAD_REQUEST, "invalid_header"),
            Error::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Error::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Error::InvalidWorkflow(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_workflow"),
            Error::InvalidInput(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            Error::InvalidRegistration(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_registration")
            }
            Error::WrongState(_) => (StatusCode::CONFLICT, "wrong_state"),
            Error::NotOutstanding(_) => (StatusCode::CONFLICT, "not_outstanding"),
            Error::NotYours(_) => (StatusCode::CONFLICT, "not_yours"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Error::Status { status, .. } => (*status, code_of_status(*status)),
        }
    }

    fn details(&self) -> Option<Vec<Detail<'_>>> {
        match self {
            Error::InvalidWorkflow(problems) => Some(
                problems
                    .iter()
                    .map(|p| Detail {
                        path: &p.path,
                        message: &p.message,
                    })
                    .collect(),
            ),
            // The engine writes each as "<JSON pointer>: <message>".
            Error::InvalidInput(problems) => Some(
                problems
                    .iter()
                    .map(|p| match p.split_once(": ") {
                        Some((path, message)) => Detail { path, message },
                        None => Detail {
                            path: "",
                            message: p,
                        },
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The response body: `{"error":{"code","message","details"?}}`.
    fn body(&self) -> Body<'_> {
        let (_, code) = self.status_and_code();
        Body {
            error: Inner {
                code,
                message: self.to_string(),
                details: self.details(),
            },
        }
    }

    /// The response body as JSON text (what an SSE `error` event carries).
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(&self.body()).unwrap_or_default()
    }
}

/// The code for a status when all that is known is the status.
fn code_of_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(code, error = %self, "request failed");
        }
        (status, Json(self.body())).into_response()
    }
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::InvalidWorkflow(d) => Error::InvalidWorkflow(d.problems),
            EngineError::UnknownWorkflow { .. } => Error::UnknownWorkflow(without_prefix(&e)),
            EngineError::UnknownExecution(id) => Error::UnknownExecution(id.to_string()),
            EngineError::UnknownTask(task) => Error::UnknownTask(task),
            EngineError::InvalidInput(problems) => Error::InvalidInput(problems),
            EngineError::Rejected(r) => r.into(),
            EngineError::Conflict(message) => Error::Conflict(message),
            EngineError::Agent(a) => a.into(),
            EngineError::Journal(j) => j.into(),
            EngineError::Replay(_) | EngineError::Codec(_) | EngineError::Poisoned => {
                Error::Internal(e.to_string())
            }
        }
    }
}

/// `UnknownWorkflow` renders as "no workflow x at version y"; the API's own
/// message adds the "no workflow" back.
fn without_prefix(e: &EngineError) -> String {
    let text = e.to_string();
    text.strip_prefix("no workflow ")
        .map_or(text.clone(), str::to_owned)
}

impl From<Rejection> for Error {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::WrongState { .. } => Error::WrongState(r.to_string()),
            Rejection::NotOutstanding(_) => Error::NotOutstanding(r.to_string()),
            Rejection::Stale(_) | Rejection::NotDue { .. } => Error::Conflict(r.to_string()),
            Rejection::Internal(_) | Rejection::UnknownStep(_) => Error::Internal(r.to_string()),
        }
    }
}

impl From<AgentError> for Error {
    fn from(a: AgentError) -> Self {
        match a {
            AgentError::UnknownAgent(id) => Error::UnknownAgent(id.to_string()),
            AgentError::InvalidRegistration(message) => Error::InvalidRegistration(message),
            AgentError::NotOutstanding(_) => Error::NotOutstanding(a.to_string()),
            AgentError::NotYours { .. } => Error::NotYours(a.to_string()),
        }
    }
}

impl From<retrace_journal::Error> for Error {
    fn from(j: retrace_journal::Error) -> Self {
        use retrace_journal::Error as J;
        match j {
            J::SeqConflict { .. } => Error::Conflict(j.to_string()),
            // A request can only reach this with an event the journal
            // refuses (too large for a record).
            J::InvalidAppend(_) => Error::InvalidBody(j.to_string()),
            J::Locked { .. } | J::Poisoned(_) | J::Closed => Error::Unavailable(j.to_string()),
            J::Corrupt { .. }
            | J::CorruptIndex(_)
            | J::UnsupportedFormat { .. }
            | J::Storage(_) => Error::Internal(j.to_string()),
        }
    }
}
