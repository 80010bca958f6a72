//! The API's one error type, and how it renders: every error response, the
//! framework's own rejections included, is
//! `{"error":{"code","message","details"?}}` with the status the code implies.
//!
//! Owns the mapping from engine, agent and journal errors to HTTP statuses and
//! stable codes ([`Code`], listed in `docs/api.md` and, per endpoint, in the
//! OpenAPI document). It must never decide *whether*
//! something is an error — handlers and the engine do — and never invent a
//! code for a case the table here does not name.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use retrace_engine::Error as EngineError;
use retrace_engine::agents::AgentError;
use retrace_engine::breakers::BreakerError;
use retrace_engine::limits::LimitsError;
use retrace_engine::machine::Rejection;
use retrace_engine::model::Problem;
use retrace_engine::schedules::ScheduleError;
use retrace_engine::store::tokens::TokenError;
use retrace_engine::store::{JournalError, StorageError};
use retrace_engine::webhooks::WebhookError;
use serde::Serialize;
use utoipa::ToSchema;

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
    /// A request a browser could have been made to send from another site
    /// (a foreign `Host` or `Origin`): see [`crate::guard`].
    #[error("{0}")]
    CrossSite(String),
    /// No token, or one that is not valid (unknown, revoked or expired),
    /// where tokens are required.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token whose role may not make this request.
    #[error("{0}")]
    Forbidden(String),
    #[error("no token named `{0}`")]
    UnknownToken(String),
    #[error("no schedule `{0}`")]
    UnknownSchedule(String),
    #[error("capability `{0}` has no circuit breaker")]
    UnknownBreaker(String),
    /// A capability with no limits in force (to read), or none set through
    /// the API (to remove); the message says which.
    #[error("{0}")]
    UnknownLimits(String),
    #[error("no webhook `{0}`")]
    UnknownWebhook(String),
    /// A token over its requests per second or its open streams.
    #[error("{message}")]
    RateLimited { message: String, retry_after_s: u64 },
    /// An event whose name has a secret, without a valid Standard Webhooks
    /// signature (missing, wrong, stale, or a replay).
    #[error("{0}")]
    InvalidSignature(String),
    /// A token to create that is not well-formed (name, role, capabilities,
    /// expiry).
    #[error("{0}")]
    InvalidToken(String),
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
    /// A schedule (or a patch's result) with problems, its shape
    /// included: every one of them, in `details`.
    #[error(
        "invalid schedule ({} problem{})",
        .0.len(),
        if .0.len() == 1 { "" } else { "s" }
    )]
    InvalidSchedule(Vec<Problem>),
    /// A circuit breaker's settings (or its capability) with problems, its
    /// body's shape included: every one of them, in `details`.
    #[error(
        "invalid breaker ({} problem{})",
        .0.len(),
        if .0.len() == 1 { "" } else { "s" }
    )]
    InvalidBreaker(Vec<Problem>),
    /// A capability's limits (or the capability) with problems, the body's
    /// shape included: every one of them, in `details`.
    #[error(
        "invalid limits ({} problem{})",
        .0.len(),
        if .0.len() == 1 { "" } else { "s" }
    )]
    InvalidLimits(Vec<Problem>),
    /// A webhook subscription with problems, its body's shape included:
    /// every one of them, in `details`.
    #[error(
        "invalid webhook ({} problem{})",
        .0.len(),
        if .0.len() == 1 { "" } else { "s" }
    )]
    InvalidWebhook(Vec<Problem>),
    /// The command makes no sense in the execution's status.
    #[error("{0}")]
    WrongState(String),
    /// A task that is not (or no longer) outstanding.
    #[error("{0}")]
    NotOutstanding(String),
    /// A task claimed by another agent, or an agent registered under
    /// another token.
    #[error("{0}")]
    NotYours(String),
    #[error("{0}")]
    Conflict(String),
    /// The server is shutting down, or (servers sharing a journal on NATS)
    /// the server holding what the request names cannot be reached or is
    /// not known yet (its partition is moving between servers), or one
    /// asked for its part of a merged answer did not give it.
    #[error("{0}")]
    Unavailable(String),
    /// The journal's storage refuses writes (a full disk, say); the server
    /// resumes on its own when it takes them again. Nothing was recorded.
    #[error("{0}")]
    StorageUnavailable(String),
    #[error("{0}")]
    Internal(String),
    /// An error response made by a layer below the handlers (its status is
    /// kept, its body replaced by this format).
    #[error("{message}")]
    Status { status: StatusCode, message: String },
}

/// One entry of `details`: where in the document, and what is wrong there.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ErrorDetail)]
pub(crate) struct Detail<'a> {
    /// For `invalid_workflow`, a path into the definition as the workflow
    /// language writes it (`steps[0].capability`; empty for the whole
    /// document); for `invalid_input`, a JSON pointer into the input; for
    /// `invalid_schedule`, `invalid_breaker` and `invalid_limits`, the field
    /// of a body of the wrong shape (`everyMs`), else empty; for
    /// `invalid_webhook`, the field at fault (`url`, `events`, `workflow`),
    /// empty for the body as a whole.
    path: &'a str,
    message: &'a str,
}

/// The body of every error response: `{"error":{"code","message","details"?}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ErrorBody)]
pub(crate) struct Body<'a> {
    error: Inner<'a>,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ErrorObject)]
pub(crate) struct Inner<'a> {
    /// The stable code; the response's status goes with it.
    #[schema(value_type = Code)]
    code: &'static str,
    /// A readable explanation, for people: match on `code`, not on this.
    message: String,
    /// Only for `invalid_workflow`, `invalid_schedule`, `invalid_breaker`,
    /// `invalid_limits` and `invalid_webhook` (one entry per problem) and
    /// `invalid_input` (one entry per mismatch); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    details: Option<Vec<Detail<'a>>>,
}

/// The stable codes of error bodies. Each implies a status
/// ([`Code::status`]), except that a layer's own error response keeps its
/// status (`Error::Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    BadRequest,
    MalformedJson,
    InvalidQuery,
    InvalidHeader,
    NotFound,
    UnknownWorkflow,
    UnknownExecution,
    UnknownAgent,
    UnknownTask,
    MethodNotAllowed,
    Timeout,
    WrongState,
    NotOutstanding,
    NotYours,
    CrossSite,
    Unauthenticated,
    InvalidSignature,
    Forbidden,
    UnknownToken,
    InvalidToken,
    InvalidSchedule,
    UnknownSchedule,
    InvalidBreaker,
    UnknownBreaker,
    InvalidLimits,
    UnknownLimits,
    InvalidWebhook,
    UnknownWebhook,
    RateLimited,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidBody,
    InvalidWorkflow,
    InvalidInput,
    InvalidRegistration,
    Internal,
    Unavailable,
    StorageUnavailable,
}

impl Code {
    /// Every code, by status.
    pub const ALL: [Code; 39] = [
        Code::BadRequest,
        Code::MalformedJson,
        Code::InvalidQuery,
        Code::InvalidHeader,
        Code::InvalidSchedule,
        Code::InvalidBreaker,
        Code::InvalidLimits,
        Code::InvalidWebhook,
        Code::Unauthenticated,
        Code::InvalidSignature,
        Code::Forbidden,
        Code::NotYours,
        Code::CrossSite,
        Code::NotFound,
        Code::UnknownWorkflow,
        Code::UnknownExecution,
        Code::UnknownAgent,
        Code::UnknownTask,
        Code::UnknownToken,
        Code::UnknownSchedule,
        Code::UnknownBreaker,
        Code::UnknownLimits,
        Code::UnknownWebhook,
        Code::MethodNotAllowed,
        Code::Timeout,
        Code::WrongState,
        Code::NotOutstanding,
        Code::Conflict,
        Code::PayloadTooLarge,
        Code::UnsupportedMediaType,
        Code::RateLimited,
        Code::InvalidBody,
        Code::InvalidWorkflow,
        Code::InvalidInput,
        Code::InvalidRegistration,
        Code::InvalidToken,
        Code::Internal,
        Code::Unavailable,
        Code::StorageUnavailable,
    ];

    /// The code as error bodies spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "bad_request",
            Code::MalformedJson => "malformed_json",
            Code::InvalidQuery => "invalid_query",
            Code::InvalidHeader => "invalid_header",
            Code::NotFound => "not_found",
            Code::UnknownWorkflow => "unknown_workflow",
            Code::UnknownExecution => "unknown_execution",
            Code::UnknownAgent => "unknown_agent",
            Code::UnknownTask => "unknown_task",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::Timeout => "timeout",
            Code::WrongState => "wrong_state",
            Code::NotOutstanding => "not_outstanding",
            Code::NotYours => "not_yours",
            Code::CrossSite => "cross_site",
            Code::Unauthenticated => "unauthenticated",
            Code::InvalidSignature => "invalid_signature",
            Code::Forbidden => "forbidden",
            Code::UnknownToken => "unknown_token",
            Code::InvalidToken => "invalid_token",
            Code::InvalidSchedule => "invalid_schedule",
            Code::UnknownSchedule => "unknown_schedule",
            Code::InvalidBreaker => "invalid_breaker",
            Code::UnknownBreaker => "unknown_breaker",
            Code::InvalidLimits => "invalid_limits",
            Code::UnknownLimits => "unknown_limits",
            Code::InvalidWebhook => "invalid_webhook",
            Code::UnknownWebhook => "unknown_webhook",
            Code::RateLimited => "rate_limited",
            Code::Conflict => "conflict",
            Code::PayloadTooLarge => "payload_too_large",
            Code::UnsupportedMediaType => "unsupported_media_type",
            Code::InvalidBody => "invalid_body",
            Code::InvalidWorkflow => "invalid_workflow",
            Code::InvalidInput => "invalid_input",
            Code::InvalidRegistration => "invalid_registration",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::StorageUnavailable => "storage_unavailable",
        }
    }

    /// The status an error with this code is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Code::BadRequest | Code::MalformedJson | Code::InvalidQuery | Code::InvalidHeader => {
                StatusCode::BAD_REQUEST
            }
            Code::NotFound
            | Code::UnknownWorkflow
            | Code::UnknownExecution
            | Code::UnknownAgent
            | Code::UnknownTask
            | Code::UnknownToken
            | Code::UnknownSchedule
            | Code::UnknownBreaker
            | Code::UnknownLimits
            | Code::UnknownWebhook => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::Unauthenticated | Code::InvalidSignature => StatusCode::UNAUTHORIZED,
            Code::CrossSite | Code::Forbidden | Code::NotYours => StatusCode::FORBIDDEN,
            Code::Timeout => StatusCode::REQUEST_TIMEOUT,
            Code::WrongState | Code::NotOutstanding | Code::Conflict => StatusCode::CONFLICT,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::InvalidBody
            | Code::InvalidWorkflow
            | Code::InvalidInput
            | Code::InvalidRegistration
            | Code::InvalidToken
            | Code::InvalidSchedule
            | Code::InvalidBreaker
            | Code::InvalidLimits
            | Code::InvalidWebhook => StatusCode::UNPROCESSABLE_ENTITY,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unavailable | Code::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl Error {
    /// The stable code.
    pub fn code(&self) -> Code {
        match self {
            Error::NoRoute { .. } => Code::NotFound,
            Error::MethodNotAllowed { .. } => Code::MethodNotAllowed,
            Error::UnknownWorkflow(_) => Code::UnknownWorkflow,
            Error::UnknownExecution(_) => Code::UnknownExecution,
            Error::UnknownAgent(_) => Code::UnknownAgent,
            Error::UnknownTask(_) => Code::UnknownTask,
            Error::MalformedJson(_) => Code::MalformedJson,
            Error::InvalidBody(_) => Code::InvalidBody,
            Error::InvalidQuery(_) => Code::InvalidQuery,
            Error::InvalidHeader(_) => Code::InvalidHeader,
            Error::UnsupportedMediaType(_) => Code::UnsupportedMediaType,
            Error::CrossSite(_) => Code::CrossSite,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::InvalidSignature(_) => Code::InvalidSignature,
            Error::Forbidden(_) => Code::Forbidden,
            Error::UnknownToken(_) => Code::UnknownToken,
            Error::UnknownSchedule(_) => Code::UnknownSchedule,
            Error::InvalidSchedule(_) => Code::InvalidSchedule,
            Error::UnknownBreaker(_) => Code::UnknownBreaker,
            Error::InvalidBreaker(_) => Code::InvalidBreaker,
            Error::UnknownLimits(_) => Code::UnknownLimits,
            Error::InvalidLimits(_) => Code::InvalidLimits,
            Error::UnknownWebhook(_) => Code::UnknownWebhook,
            Error::InvalidWebhook(_) => Code::InvalidWebhook,
            Error::InvalidToken(_) => Code::InvalidToken,
            Error::RateLimited { .. } => Code::RateLimited,
            Error::PayloadTooLarge { .. } => Code::PayloadTooLarge,
            Error::InvalidWorkflow(_) => Code::InvalidWorkflow,
            Error::InvalidInput(_) => Code::InvalidInput,
            Error::InvalidRegistration(_) => Code::InvalidRegistration,
            Error::WrongState(_) => Code::WrongState,
            Error::NotOutstanding(_) => Code::NotOutstanding,
            Error::NotYours(_) => Code::NotYours,
            Error::Conflict(_) => Code::Conflict,
            Error::Unavailable(_) => Code::Unavailable,
            Error::StorageUnavailable(_) => Code::StorageUnavailable,
            Error::Internal(_) => Code::Internal,
            Error::Status { status, .. } => code_of_status(*status),
        }
    }

    /// The HTTP status and the stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        let code = self.code();
        let status = match self {
            Error::Status { status, .. } => *status,
            _ => code.status(),
        };
        (status, code.as_str())
    }

    fn details(&self) -> Option<Vec<Detail<'_>>> {
        match self {
            Error::InvalidWorkflow(problems)
            | Error::InvalidSchedule(problems)
            | Error::InvalidBreaker(problems)
            | Error::InvalidLimits(problems)
            | Error::InvalidWebhook(problems) => Some(
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
fn code_of_status(status: StatusCode) -> Code {
    match status {
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => Code::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Code::UnsupportedMediaType,
        StatusCode::REQUEST_TIMEOUT => Code::Timeout,
        StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        s if s.is_server_error() => Code::Internal,
        _ => Code::BadRequest,
    }
}

/// How long a client is told to wait before retrying a write the journal's
/// storage refused (the journal itself retries every second).
pub const STORAGE_RETRY_AFTER_SECS: u64 = 5;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            // Expected while the disk is full: the writer logged the cause
            // once; a line per refused request would flood the log.
            Error::StorageUnavailable(_) => {
                tracing::debug!(code, error = %self, "request refused")
            }
            _ if status.is_server_error() => {
                tracing::error!(code, error = %self, "request failed")
            }
            _ => {}
        }
        let mut response = (status, Json(self.body())).into_response();
        if let Error::Unauthenticated(_) = self {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"retrace\""),
            );
        }
        if let Error::RateLimited { retry_after_s, .. } = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_s),
            );
        }
        if let Error::StorageUnavailable(_) = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(STORAGE_RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// Problems the engine found in a thing as a whole (no field to point at).
fn whole(problems: Vec<String>) -> Vec<Problem> {
    problems
        .into_iter()
        .map(|message| Problem {
            path: String::new(),
            message,
        })
        .collect()
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::InvalidWorkflow(d) => Error::InvalidWorkflow(d.problems),
            EngineError::UnknownWorkflow { .. } => Error::UnknownWorkflow(without_prefix(&e)),
            EngineError::UnknownExecution(id) => Error::UnknownExecution(id.to_string()),
            EngineError::UnknownTask(task) => Error::UnknownTask(task),
            EngineError::InvalidInput(problems) => Error::InvalidInput(problems),
            EngineError::InvalidTags(problems) => {
                Error::InvalidBody(format!("tags: {}", problems.join("; ")))
            }
            EngineError::Rejected(r) => r.into(),
            EngineError::Conflict(message) => Error::Conflict(message),
            EngineError::Agent(a) => a.into(),
            EngineError::Token(t) => match t {
                TokenError::Invalid(message) => Error::InvalidToken(message),
                TokenError::Exists(_) | TokenError::Revoked(_) => Error::Conflict(t.to_string()),
                TokenError::Unknown(name) => Error::UnknownToken(name),
            },
            EngineError::Schedule(s) => match s {
                ScheduleError::Invalid(problems) => Error::InvalidSchedule(whole(problems)),
                ScheduleError::Exists(_) => Error::Conflict(s.to_string()),
                ScheduleError::Unknown(id) => Error::UnknownSchedule(id),
            },
            EngineError::Breaker(b) => match b {
                BreakerError::Invalid(problems) => Error::InvalidBreaker(whole(problems)),
                BreakerError::Unknown(capability) => Error::UnknownBreaker(capability),
            },
            EngineError::Limits(l) => match l {
                LimitsError::Invalid(problems) => Error::InvalidLimits(whole(problems)),
                LimitsError::Unknown(capability) => Error::UnknownLimits(no_limits(&capability)),
            },
            EngineError::Webhook(w) => match w {
                WebhookError::Invalid(problems) => Error::InvalidWebhook(fields(problems)),
                WebhookError::Unknown(id) => Error::UnknownWebhook(id),
            },
            EngineError::Journal(j) => j.into(),
            EngineError::ShuttingDown => Error::Unavailable(e.to_string()),
            EngineError::Replay(_)
            | EngineError::Codec { .. }
            | EngineError::Undecodable { .. }
            | EngineError::Inconsistent(_)
            | EngineError::NotADataFolder { .. }
            | EngineError::Locked { .. }
            | EngineError::HttpClient(_)
            | EngineError::Poisoned => Error::Internal(e.to_string()),
        }
    }
}

/// Problems the engine names the field of, as `<field>: <message>`.
fn fields(problems: Vec<String>) -> Vec<Problem> {
    problems
        .into_iter()
        .map(|p| match p.split_once(": ") {
            Some((path, message)) if !path.contains(' ') => Problem {
                path: path.to_owned(),
                message: message.to_owned(),
            },
            _ => Problem {
                path: String::new(),
                message: p,
            },
        })
        .collect()
}

/// The message of `unknown_limits` for a capability with no limits in
/// force.
fn no_limits(capability: &str) -> String {
    format!(
        "capability `{capability}` has no limits (none set through the API, none in the \
         server's configuration)"
    )
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

impl From<JournalError> for Error {
    fn from(j: JournalError) -> Self {
        use JournalError as J;
        match j {
            J::SeqConflict { .. } => Error::Conflict(j.to_string()),
            // A request can only reach this with an event the journal
            // refuses (too large for a record).
            J::InvalidAppend(_) => Error::InvalidBody(j.to_string()),
            // The write of this request's group failed, or an earlier one did
            // and the storage does not take writes yet: nothing was recorded,
            // and the same request will succeed once the storage recovers.
            J::Unavailable(_) | J::Storage(StorageError::Write(_)) => {
                Error::StorageUnavailable(j.to_string())
            }
            J::Locked { .. } | J::Closed => Error::Unavailable(j.to_string()),
            J::Corrupt { .. }
            | J::CorruptIndex(_)
            | J::UnsupportedFormat { .. }
            | J::Storage(_) => Error::Internal(j.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_implies_its_status_and_a_layers_status_is_kept() {
        let unknown = Error::UnknownExecution("x".into());
        assert_eq!(
            unknown.status_and_code(),
            (StatusCode::NOT_FOUND, "unknown_execution")
        );
        let teapot = Error::Status {
            status: StatusCode::IM_A_TEAPOT,
            message: "short and stout".into(),
        };
        assert_eq!(
            teapot.status_and_code(),
            (StatusCode::IM_A_TEAPOT, "bad_request")
        );
        let gateway = Error::Status {
            status: StatusCode::BAD_GATEWAY,
            message: "upstream".into(),
        };
        assert_eq!(
            gateway.status_and_code(),
            (StatusCode::BAD_GATEWAY, "internal")
        );
    }

    #[test]
    fn every_code_is_listed_once_with_a_client_or_server_error_status() {
        let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
        for code in Code::ALL {
            let status = code.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code:?}"
            );
        }
    }
}
