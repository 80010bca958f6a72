//! The built-in `http` capability: a `task` step with `"capability":
//! "http"` is an HTTP request the engine makes itself, with no agent.
//!
//! - `policy`: which addresses a request may connect to (SSRF): default
//!   refused ranges, the operator's `allow` and `deny` blocks.
//! - `secrets`: the values of the secrets a request's input names by
//!   reference, and the redaction that keeps them out of what is recorded.
//! - `client`: one attempt, start to end: the input read
//!   ([`HttpRequest`](crate::model::HttpRequest), the core's rules), secrets
//!   substituted, the request made under the policy (names resolved by a
//!   resolver that drops refused addresses, IP literals and every redirect
//!   hop checked), the response bounded in size and read into the result
//!   `{status, headers, body}` or a failure with its error type.
//!
//! The runtime (`runtime::http`) performs each outstanding task of the
//! capability on a task of its own, bounded in number, and delivers the
//! outcome as an agent's report would be: recorded by the machine, retried,
//! timed out and routed as any task.
//!
//! This module must never touch the journal or decide what a result means
//! (retries, routes: the machine does), and never let a secret's value
//! reach a result, an error message or a log line.

mod client;
pub mod policy;
pub mod secrets;

pub(crate) use client::{HttpCall, HttpClient, failure_reason, policy_client};
pub use policy::{AddressPolicy, PolicyError, Refusal};
pub use secrets::{REDACTED, SECRET_ENV_PREFIX, Secrets, SecretsError};

/// How its tasks are recorded as performed: the agent of `task_completed`
/// and of a failure's error.
pub const HTTP_AGENT: &str = "http (built-in)";

/// The default of [`HttpOptions::max_concurrency`].
pub const MAX_CONCURRENCY_DEFAULT: usize = 64;

/// The default of [`HttpOptions::max_response_bytes`]: 1 MiB.
pub const MAX_RESPONSE_BYTES_DEFAULT: u64 = 1 << 20;

/// The longest wait a `Retry-After` is taken for: a day (a longer one is
/// taken as a day, so a server cannot park an execution for a year).
pub const RETRY_AFTER_MAX_MS: u64 = 86_400_000;

/// The most redirects one request follows.
pub const MAX_REDIRECTS: usize = 10;

/// The error types its failures have (besides `http_<status>`).
pub mod error_types {
    /// The input is not a request it can make (not retried).
    pub const INVALID_REQUEST: &str = "http_invalid_request";
    /// The input names a secret the server does not have (not retried).
    pub const UNKNOWN_SECRET: &str = "http_unknown_secret";
    /// The address (or a redirect's) is refused by the policy (not retried).
    pub const ADDRESS_REFUSED: &str = "http_address_refused";
    /// No complete answer within the request's timeout (retried).
    pub const TIMEOUT: &str = "http_timeout";
    /// The name did not resolve, or the connection failed (retried).
    pub const CONNECT: &str = "http_connect";
    /// The connection broke while the request or response was under way
    /// (retried).
    pub const IO: &str = "http_io";
    /// A redirect that is not followed: too many, or to a URL that is not
    /// `http(s)` (not retried).
    pub const REDIRECT: &str = "http_redirect";
    /// The response's body is larger than the server allows (not retried).
    pub const RESPONSE_TOO_LARGE: &str = "http_response_too_large";

    /// The error type of a response with a status that is not 2xx.
    pub fn status(code: u16) -> String {
        format!("http_{code}")
    }
}

/// The capability's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOptions {
    /// The most requests under way at once; the rest wait their turn (a
    /// step's `scheduleToStartMs` still applies).
    pub max_concurrency: usize,
    /// The largest response body read; a larger one fails the task
    /// (`http_response_too_large`).
    pub max_response_bytes: u64,
    pub policy: AddressPolicy,
    pub secrets: Secrets,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_concurrency: MAX_CONCURRENCY_DEFAULT,
            max_response_bytes: MAX_RESPONSE_BYTES_DEFAULT,
            policy: AddressPolicy::default(),
            secrets: Secrets::default(),
        }
    }
}
