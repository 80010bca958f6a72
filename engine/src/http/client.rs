//! One attempt of an `http` task, start to end.
//!
//! Owns the reqwest client (no proxy, no automatic redirects, no
//! decompression, names resolved by [`PolicyResolver`], which drops every
//! address the policy refuses, so a name cannot be made to point at a
//! refused address between a check and the connection: DNS rebinding),
//! building the request from the input (secrets substituted here and only
//! here), following redirects itself (each hop's scheme and IP literal
//! checked, the address of a name checked by the resolver when it
//! connects, and on a hop to another origin every header that held a
//! secret dropped along with `Authorization` and cookies), reading the
//! response within its size limit, and turning what happened into a result
//! or a [`Failure`] with its error type and whether a retry can help.
//!
//! It must never let a secret's value out: the result and every message
//! pass through the request's [`Redactor`], messages name the URL as the
//! input wrote it (references, not values), and reqwest's errors are
//! rendered without their URL. It never retries: the machine does.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};

use super::policy::{AddressPolicy, Refusal};
use super::secrets::{Redactor, Secrets};
use super::{HTTP_AGENT, HttpOptions, MAX_REDIRECTS, RETRY_AFTER_MAX_MS, error_types};
use crate::clock::Clock;
use crate::machine::ErrorInfo;
use crate::model::{HttpBody, HttpRequest, SecretRefError, secret_refs, substitute_secrets};

/// How much of a failed response's body its error message quotes.
const EXCERPT_CHARS: usize = 200;

/// One attempt to make.
#[derive(Debug, Clone)]
pub(crate) struct HttpCall {
    /// The task's input, as recorded (secret references unsubstituted).
    pub(crate) input: Value,
    /// Sent as `Idempotency-Key` unless the input gives one.
    pub(crate) idempotency_key: String,
    /// The task's start-to-close timeout: `timeoutMs` is bounded by it.
    pub(crate) start_to_close_ms: u64,
}

/// An attempt that failed: the error to record, and the least wait before
/// a retry when the server said one (`Retry-After`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) error: ErrorInfo,
    pub(crate) retry_after_ms: Option<u64>,
}

/// A refused address: the error the resolver and the hop check give.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the address {addr} of {host} is refused: {why}")]
struct Refused {
    host: String,
    addr: IpAddr,
    why: Refusal,
}

/// Why an attempt failed, before it is redacted and recorded.
#[derive(Debug, thiserror::Error)]
enum HttpFailure {
    #[error("the input is not a request the http capability can make: {0}")]
    InvalidRequest(String),
    #[error(
        "the secret {0} is not configured on the server (its configuration's [secrets] table, \
         or the environment variable RETRACE_SECRET_{upper})", upper = .0.to_ascii_uppercase()
    )]
    UnknownSecret(String),
    #[error("{target}: {refused}")]
    AddressRefused { target: String, refused: Refused },
    #[error("{target}: no complete answer within {ms} ms")]
    Timeout { target: String, ms: u64 },
    #[error("{target}: cannot connect: {reason}")]
    Connect { target: String, reason: String },
    #[error("{target}: the exchange failed: {reason}")]
    Io { target: String, reason: String },
    #[error("{target}: {reason}")]
    Redirect { target: String, reason: String },
    #[error(
        "{target}: the response's body is larger than the server's limit of {max} bytes \
         (max_response_bytes)"
    )]
    TooLarge { target: String, max: u64 },
    #[error("{target} answered {status}{excerpt}")]
    Status {
        target: String,
        status: StatusCode,
        excerpt: String,
        retry_after_ms: Option<u64>,
    },
}

impl HttpFailure {
    fn kind(&self) -> String {
        match self {
            HttpFailure::InvalidRequest(_) => error_types::INVALID_REQUEST.into(),
            HttpFailure::UnknownSecret(_) => error_types::UNKNOWN_SECRET.into(),
            HttpFailure::AddressRefused { .. } => error_types::ADDRESS_REFUSED.into(),
            HttpFailure::Timeout { .. } => error_types::TIMEOUT.into(),
            HttpFailure::Connect { .. } => error_types::CONNECT.into(),
            HttpFailure::Io { .. } => error_types::IO.into(),
            HttpFailure::Redirect { .. } => error_types::REDIRECT.into(),
            HttpFailure::TooLarge { .. } => error_types::RESPONSE_TOO_LARGE.into(),
            HttpFailure::Status { status, .. } => error_types::status(status.as_u16()),
        }
    }

    /// Whether trying again can succeed: the network's failures, a server
    /// error, and 429; never a refusal of the request itself.
    fn retryable(&self) -> bool {
        match self {
            HttpFailure::Timeout { .. } | HttpFailure::Connect { .. } | HttpFailure::Io { .. } => {
                true
            }
            HttpFailure::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }

    fn retry_after_ms(&self) -> Option<u64> {
        match self {
            HttpFailure::Status { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
        }
    }
}

/// Resolves names with the system's resolver and keeps only the addresses
/// the policy allows; none allowed is the [`Refused`] of the first.
#[derive(Debug)]
struct PolicyResolver {
    policy: Arc<AddressPolicy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match policy.check(addr.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert_with(|| Refused {
                            host: host.clone(),
                            addr: addr.ip(),
                            why,
                        });
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                return Err(match refused {
                    Some(refused) => refused.into(),
                    None => format!("{host} resolves to no address").into(),
                });
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// A client that connects only where `policy` allows: no proxy, no
/// automatic redirects, no `Referer`, names resolved by [`PolicyResolver`]
/// (an IP-literal URL is not resolved: its caller checks it). Outbound
/// webhooks are delivered with one too.
pub(crate) fn policy_client(policy: Arc<AddressPolicy>) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .dns_resolver(Arc::new(PolicyResolver { policy }))
        .build()
}

/// Why a request failed, in words that hold no URL: the refused address
/// when the resolver refused one, else the error and its causes.
pub(crate) fn failure_reason(error: reqwest::Error) -> String {
    let mut source: Option<&(dyn StdError + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return refused.to_string();
        }
        source = e.source();
    }
    let what = if error.is_timeout() {
        "timed out: "
    } else if error.is_connect() {
        "cannot connect: "
    } else {
        ""
    };
    format!("{what}{}", causes(&error.without_url()))
}

/// What the input asked for, secrets in place.
#[derive(Debug)]
struct Prepared {
    method: Method,
    url: Url,
    headers: HeaderMap,
    /// Headers whose value holds a secret: dropped on a hop to another
    /// origin.
    secret_headers: Vec<HeaderName>,
    body: Option<Vec<u8>>,
    timeout_ms: u64,
    /// `METHOD url` as the input wrote it, for messages.
    target: String,
}

/// Makes `http` tasks' requests.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    secrets: Arc<Secrets>,
    max_response_bytes: u64,
    clock: Arc<dyn Clock>,
}

impl HttpClient {
    pub(crate) fn new(
        options: &HttpOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(options.policy.clone());
        let client = policy_client(Arc::clone(&policy))?;
        Ok(HttpClient {
            client,
            policy,
            secrets: Arc::new(options.secrets.clone()),
            max_response_bytes: options.max_response_bytes,
            clock,
        })
    }

    /// Makes the attempt: its result `{status, headers, body}`, or its
    /// failure. Every secret the request used is redacted from both.
    pub(crate) async fn perform(&self, call: HttpCall) -> Result<Value, Failure> {
        let mut redactor = Redactor::default();
        let outcome = match self.prepare(&call, &mut redactor) {
            Ok(prepared) => {
                let (target, ms) = (prepared.target.clone(), prepared.timeout_ms);
                let deadline = Duration::from_millis(ms);
                tokio::time::timeout(deadline, self.exchange(prepared))
                    .await
                    .unwrap_or(Err(HttpFailure::Timeout { target, ms }))
            }
            Err(failure) => Err(failure),
        };
        match outcome {
            Ok(result) => Ok(redactor.json(result)),
            Err(failure) => Err(Failure {
                retry_after_ms: failure.retry_after_ms(),
                error: ErrorInfo {
                    agent: Some(HTTP_AGENT.to_owned()),
                    retryable: Some(failure.retryable()),
                    ..ErrorInfo::new(failure.kind(), redactor.text(&failure.to_string()))
                },
            }),
        }
    }

    /// `text` with its secret references replaced by their values (each
    /// remembered for redaction).
    fn substitute(&self, text: &str, redactor: &mut Redactor) -> Result<String, HttpFailure> {
        substitute_secrets(text, |name| {
            let value = self.secrets.get(name)?;
            redactor.used(value);
            Some(value)
        })
        .map_err(|e| match e {
            SecretRefError::Unknown(name) => HttpFailure::UnknownSecret(name),
            SecretRefError::Malformed(message) => HttpFailure::InvalidRequest(message),
        })
    }

    /// The request the input describes, with its secrets in place.
    fn prepare(&self, call: &HttpCall, redactor: &mut Redactor) -> Result<Prepared, HttpFailure> {
        let request = HttpRequest::parse(&call.input).map_err(|problems| {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            HttpFailure::InvalidRequest(problems.join("; "))
        })?;
        let target = format!("{} {}", request.method, request.url);
        let invalid = |what: String| HttpFailure::InvalidRequest(what);
        let method = Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            invalid(format!(
                "input.method: `{}` is not a method",
                request.method
            ))
        })?;
        let mut url = Url::parse(&self.substitute(&request.url, redactor)?).map_err(|e| {
            invalid(format!(
                "input.url: with its secrets in place, it is not a valid URL ({e})"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(
                "input.url: with its secrets in place, it is not an http:// or https:// URL \
                 with a host"
                    .into(),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "input.url: with its secrets in place, it holds credentials; send them in a \
                 header instead"
                    .into(),
            ));
        }
        url.set_fragment(None);
        if !request.query.is_empty() {
            let mut values = Vec::with_capacity(request.query.len());
            for (name, value) in &request.query {
                values.push((name, self.substitute(value, redactor)?));
            }
            url.query_pairs_mut().extend_pairs(values);
        }
        let mut headers = HeaderMap::new();
        let mut secret_headers = Vec::new();
        for (name, value) in &request.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("input.headers: `{name}` is not a header name")))?;
            let substituted = self.substitute(value, redactor)?;
            let mut header_value =
                HeaderValue::from_bytes(substituted.as_bytes()).map_err(|_| {
                    invalid(format!(
                        "input.headers.{name}: with its secrets in place, the value is not a valid \
                     header value"
                    ))
                })?;
            if secret_refs(value).is_ok_and(|refs| !refs.is_empty()) {
                header_value.set_sensitive(true);
                secret_headers.push(header.clone());
            }
            headers.append(header, header_value);
        }
        if !headers.contains_key("idempotency-key") {
            let key = HeaderValue::from_str(&call.idempotency_key)
                .map_err(|_| invalid("the task's idempotency key is not a header value".into()))?;
            headers.insert(HeaderName::from_static("idempotency-key"), key);
        }
        if !headers.contains_key(header::USER_AGENT) {
            headers.insert(
                header::USER_AGENT,
                HeaderValue::from_static(concat!("retrace/", env!("CARGO_PKG_VERSION"))),
            );
        }
        let (body, content_type) = match &request.body {
            None => (None, None),
            Some(HttpBody::Text(text)) => (
                Some(self.substitute(text, redactor)?.into_bytes()),
                Some("text/plain; charset=utf-8"),
            ),
            Some(HttpBody::Json(value)) => (
                Some(value.to_string().into_bytes()),
                Some("application/json"),
            ),
        };
        if let Some(content_type) = content_type
            && !headers.contains_key(header::CONTENT_TYPE)
        {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        let timeout_ms = request
            .timeout_ms
            .unwrap_or(call.start_to_close_ms)
            .min(call.start_to_close_ms)
            .max(1);
        Ok(Prepared {
            method,
            url,
            headers,
            secret_headers,
            body,
            timeout_ms,
            target,
        })
    }

    /// Sends the request and follows its redirects; the last response read.
    async fn exchange(&self, prepared: Prepared) -> Result<Value, HttpFailure> {
        let Prepared {
            mut method,
            mut url,
            mut headers,
            secret_headers,
            mut body,
            target,
            timeout_ms,
        } = prepared;
        let mut hops = 0;
        loop {
            self.check_literal(&url, &target)?;
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            let response = request
                .send()
                .await
                .map_err(|e| transport(e, &target, timeout_ms))?;
            let status = response.status();
            let Some(next) = redirect_to(&response, &url, &target)? else {
                return self.read(response, &method, &target, timeout_ms).await;
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(HttpFailure::Redirect {
                    target,
                    reason: format!("more than {MAX_REDIRECTS} redirects; not followed"),
                });
            }
            // As browsers do: 303 asks for a GET, and so do 301 and 302
            // after a POST; 307 and 308 repeat the request as it was.
            let get = (status == StatusCode::SEE_OTHER && method != Method::HEAD)
                || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                    && method == Method::POST);
            if get {
                method = Method::GET;
                body = None;
                headers.remove(header::CONTENT_TYPE);
            }
            if origin(&next) != origin(&url) {
                for name in [
                    header::AUTHORIZATION,
                    header::COOKIE,
                    header::PROXY_AUTHORIZATION,
                ]
                .iter()
                .chain(&secret_headers)
                {
                    headers.remove(name);
                }
            }
            url = next;
        }
    }

    /// An IP-literal host is checked here; a name is checked by the
    /// resolver when a connection is made.
    fn check_literal(&self, url: &Url, target: &str) -> Result<(), HttpFailure> {
        let addr = match url.host() {
            Some(url::Host::Ipv4(addr)) => IpAddr::V4(addr),
            Some(url::Host::Ipv6(addr)) => IpAddr::V6(addr),
            _ => return Ok(()),
        };
        self.policy
            .check(addr)
            .map_err(|why| HttpFailure::AddressRefused {
                target: target.to_owned(),
                refused: Refused {
                    host: url.host_str().unwrap_or_default().to_owned(),
                    addr,
                    why,
                },
            })
    }

    /// Reads the response within the size limit: the result, or the
    /// failure a status that is not 2xx is.
    async fn read(
        &self,
        mut response: reqwest::Response,
        method: &Method,
        target: &str,
        timeout_ms: u64,
    ) -> Result<Value, HttpFailure> {
        let max = self.max_response_bytes;
        let too_large = || HttpFailure::TooLarge {
            target: target.to_owned(),
            max,
        };
        if response.content_length().is_some_and(|len| len > max) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport(e, target, timeout_ms))?
        {
            if (bytes.len() + chunk.len()) as u64 > max {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        let status = response.status();
        let headers = response.headers();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            let excerpt: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let excerpt: String = excerpt.chars().take(EXCERPT_CHARS).collect();
            return Err(HttpFailure::Status {
                target: target.to_owned(),
                status,
                excerpt: if excerpt.is_empty() {
                    String::new()
                } else {
                    format!(": {excerpt}")
                },
                retry_after_ms: retry_after_ms(headers, self.clock.now_ms()),
            });
        }
        let body = if *method == Method::HEAD {
            Value::Null
        } else {
            body_value(headers, bytes)
        };
        let mut shown = serde_json::Map::new();
        for (name, value) in headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            match shown.get_mut(name.as_str()) {
                Some(Value::String(before)) => {
                    before.push_str(", ");
                    before.push_str(&value);
                }
                _ => {
                    shown.insert(name.as_str().to_owned(), Value::String(value));
                }
            }
        }
        Ok(json!({"status": status.as_u16(), "headers": shown, "body": body}))
    }
}

/// Where a redirect leads, if the response is one to follow (301, 302,
/// 303, 307, 308 with a `Location`).
fn redirect_to(
    response: &reqwest::Response,
    from: &Url,
    target: &str,
) -> Result<Option<Url>, HttpFailure> {
    let status = response.status();
    let follows = matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    );
    let Some(location) = response.headers().get(header::LOCATION).filter(|_| follows) else {
        return Ok(None);
    };
    let refused = |reason: String| HttpFailure::Redirect {
        target: target.to_owned(),
        reason,
    };
    let location = location.to_str().map_err(|_| {
        refused(format!(
            "{status} with a Location that is not text; not followed"
        ))
    })?;
    let next = from.join(location).map_err(|e| {
        refused(format!(
            "{status} to `{location}`, not a URL ({e}); not followed"
        ))
    })?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(refused(format!(
            "{status} to a `{}:` URL; only http and https are followed",
            next.scheme()
        )));
    }
    Ok(Some(next))
}

/// Scheme, host and port: what a header may not leave on a redirect.
fn origin(url: &Url) -> (String, Option<String>, Option<u16>) {
    (
        url.scheme().to_owned(),
        url.host_str().map(str::to_owned),
        url.port_or_known_default(),
    )
}

/// The body as the result shows it: parsed when the content type says
/// JSON (`application/json`, or any `+json` type) and it parses; otherwise
/// the text (invalid UTF-8 replaced). An empty JSON body is `null`.
fn body_value(headers: &HeaderMap, bytes: Vec<u8>) -> Value {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase())
        .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"));
    if is_json {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Value::Null;
        }
        if let Ok(value) = serde_json::from_slice(&bytes) {
            return value;
        }
    }
    match String::from_utf8(bytes) {
        Ok(text) => Value::String(text),
        Err(e) => Value::String(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// A `Retry-After`'s wait in milliseconds (seconds, or an HTTP date less
/// `now_ms`), at most [`RETRY_AFTER_MAX_MS`].
fn retry_after_ms(headers: &HeaderMap, now_ms: u64) -> Option<u64> {
    let text = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let ms = match text.parse::<u64>() {
        Ok(seconds) => seconds.saturating_mul(1_000),
        Err(_) => {
            let at = httpdate::parse_http_date(text).ok()?;
            let at_ms = at.duration_since(UNIX_EPOCH).ok()?.as_millis();
            u64::try_from(at_ms).ok()?.saturating_sub(now_ms)
        }
    };
    Some(ms.min(RETRY_AFTER_MAX_MS))
}

/// What a reqwest error means for the attempt, in words that hold no URL.
fn transport(error: reqwest::Error, target: &str, timeout_ms: u64) -> HttpFailure {
    let target = target.to_owned();
    let mut source: Option<&(dyn StdError + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return HttpFailure::AddressRefused {
                target,
                refused: refused.clone(),
            };
        }
        source = e.source();
    }
    let timeout = error.is_timeout();
    let connect = error.is_connect();
    let reason = causes(&error.without_url());
    match (timeout, connect) {
        (true, _) => HttpFailure::Timeout {
            target,
            ms: timeout_ms,
        },
        (false, true) => HttpFailure::Connect { target, reason },
        (false, false) => HttpFailure::Io { target, reason },
    }
}

/// An error and its causes, `a: b: c`, each said once.
fn causes(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(error);
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::SystemTime;

    use super::*;

    fn epoch_ms(at: SystemTime) -> u64 {
        at.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in list {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        assert_eq!(
            retry_after_ms(&headers(&[("retry-after", "120")]), 0),
            Some(120_000)
        );
        let now = epoch_ms(httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap());
        assert_eq!(
            retry_after_ms(
                &headers(&[("retry-after", "Sun, 06 Nov 1994 08:50:07 GMT")]),
                now
            ),
            Some(30_000)
        );
        assert_eq!(
            retry_after_ms(
                &headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:00 GMT")]),
                now
            ),
            Some(0),
            "a date passed already"
        );
        assert_eq!(
            retry_after_ms(&headers(&[("retry-after", "99999999")]), 0),
            Some(RETRY_AFTER_MAX_MS)
        );
        assert_eq!(
            retry_after_ms(&headers(&[("retry-after", "soon")]), 0),
            None
        );
        assert_eq!(retry_after_ms(&headers(&[]), 0), None);
    }

    #[test]
    fn a_body_is_json_when_its_type_says_so_and_it_parses() {
        let json = headers(&[("content-type", "application/json; charset=utf-8")]);
        assert_eq!(body_value(&json, br#"{"a":1}"#.to_vec()), json!({"a": 1}));
        assert_eq!(body_value(&json, b" ".to_vec()), Value::Null);
        assert_eq!(body_value(&json, b"{oops".to_vec()), json!("{oops"));
        let problem = headers(&[("content-type", "application/problem+JSON")]);
        assert_eq!(body_value(&problem, b"[1]".to_vec()), json!([1]));
        let text = headers(&[("content-type", "text/plain")]);
        assert_eq!(
            body_value(&text, br#"{"a":1}"#.to_vec()),
            json!(r#"{"a":1}"#)
        );
        assert_eq!(body_value(&headers(&[]), b"".to_vec()), json!(""));
        assert_eq!(body_value(&text, vec![b'a', 0xff]), json!("a\u{fffd}"));
    }

    #[test]
    fn failures_have_their_types_and_retryability() {
        let status = |code: u16| HttpFailure::Status {
            target: "GET x".into(),
            status: StatusCode::from_u16(code).unwrap(),
            excerpt: String::new(),
            retry_after_ms: None,
        };
        for (code, retryable) in [
            (500, true),
            (503, true),
            (429, true),
            (404, false),
            (400, false),
            (302, false),
        ] {
            assert_eq!(status(code).kind(), format!("http_{code}"));
            assert_eq!(status(code).retryable(), retryable, "{code}");
        }
        let timeout = HttpFailure::Timeout {
            target: "GET x".into(),
            ms: 5,
        };
        assert_eq!(
            (timeout.kind().as_str(), timeout.retryable()),
            ("http_timeout", true)
        );
        let invalid = HttpFailure::InvalidRequest("no".into());
        assert_eq!(
            (invalid.kind().as_str(), invalid.retryable()),
            ("http_invalid_request", false)
        );
    }
}
