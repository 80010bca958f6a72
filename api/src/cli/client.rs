//! The command line's HTTP client for a running server: JSON requests,
//! error answers turned into [`Error::Server`], and Server-Sent Events read
//! frame by frame.
//!
//! Owns how the command line talks HTTP (timeouts, the error shape of
//! `docs/api.md`, SSE framing). It must never interpret what an endpoint
//! answers beyond that: subcommands decide what a body means.

use std::time::Duration;

use clap::Args;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{Error, Result};

/// The server every client subcommand talks to when none is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7700";

/// How long a plain request may take (long polls and streams set their own).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `--server` and `--token` for the client subcommands.
#[derive(Debug, Clone, Args)]
pub struct ServerArg {
    /// The server's base URL (`http://` or `https://`).
    #[arg(long, value_name = "URL", env = "RETRACE_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    #[command(flatten)]
    pub token: TokenArg,
}

impl ServerArg {
    /// A client of the server named, with the token and TLS files given.
    pub fn client(&self) -> Result<Client> {
        Client::connect(&self.server, &self.token)
    }
}

/// How to reach a server beyond its URL: the access token, and for HTTPS
/// the CA to trust and a client certificate (also for commands whose
/// server is optional).
#[derive(Debug, Clone, Default, Args)]
pub struct TokenArg {
    /// The access token sent as `Authorization: Bearer` (needed once the
    /// server holds tokens). Prefer the variable: a flag shows in `ps`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "RETRACE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// For an `https://` server: trust only this CA (PEM) instead of the
    /// system's roots (a private or test certificate).
    #[arg(long, value_name = "FILE", env = "RETRACE_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// For an `https://` server that asks for one: the client certificate
    /// and its private key, both in this PEM file (mutual TLS).
    #[arg(long, value_name = "FILE", env = "RETRACE_CLIENT_CERT")]
    pub client_cert: Option<std::path::PathBuf>,
}

/// A client of one server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// Sent as `Authorization: Bearer` with every request.
    token: Option<String>,
    /// Sent as `Retrace-Reason` with every change.
    reason: Option<reqwest::header::HeaderValue>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the server at `base` (`http://host:port`, with or without
    /// a trailing slash).
    pub fn new(base: &str) -> Result<Client> {
        let base = base.trim().trim_end_matches('/').to_owned();
        Client::build(base, &TokenArg::default())
    }

    /// A client of the server at `base` with `how`'s token and TLS files.
    pub fn connect(base: &str, how: &TokenArg) -> Result<Client> {
        Client::build(base.trim().trim_end_matches('/').to_owned(), how)
    }

    fn build(base: String, how: &TokenArg) -> Result<Client> {
        match reqwest::Url::parse(&base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            Ok(_) | Err(_) => {
                return Err(Error::Usage(format!(
                    "{base} is not a server URL (expected http://host:port or https://host:port)"
                )));
            }
        }
        crate::tls::install_crypto();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // Small requests and SSE frames go out at once (reqwest's
            // default too; said here because the latency depends on it).
            .tcp_nodelay(true);
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read(path)
                .map_err(|e| Error::io(format!("cannot read {what} {}", path.display()), e))
        };
        if let Some(ca) = &how.ca_cert {
            let pem = read(ca, "the CA certificate")?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Usage(format!(
                    "--ca-cert {}: not PEM certificates: {e}",
                    ca.display()
                ))
            })?;
            builder = builder.tls_certs_only(certs);
        }
        if let Some(file) = &how.client_cert {
            let pem = read(file, "the client certificate")?;
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                Error::Usage(format!(
                    "--client-cert {}: needs a certificate and its private key in PEM: {e}",
                    file.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        let http = builder
            .build()
            .map_err(|e| Error::setup("cannot build the HTTP client", e))?;
        let token = how
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok(Client {
            http,
            base,
            token,
            reason: None,
        })
    }

    /// The same client, saying why with every change (`Retrace-Reason`:
    /// visible ASCII only, as a header must be).
    pub fn with_reason(mut self, reason: &str) -> Result<Client> {
        let value = reason
            .parse::<reqwest::header::HeaderValue>()
            .ok()
            .filter(|v| v.to_str().is_ok() && !reason.is_empty())
            .ok_or_else(|| {
                Error::Usage(
                    "--reason for this command is sent as a header: visible ASCII only".into(),
                )
            })?;
        self.reason = Some(value);
        Ok(self)
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let changes = method != Method::GET;
        let request = self.authorized(
            self.http
                .request(method, self.url(path))
                .header(ACCEPT, "application/json")
                .timeout(REQUEST_TIMEOUT),
        );
        match (&self.reason, changes) {
            (Some(reason), true) => request.header("retrace-reason", reason.clone()),
            _ => request,
        }
    }

    /// `GET path`, decoded.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(path, self.request(Method::GET, path)).await
    }

    /// `POST path` with a JSON body, decoded.
    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        self.send(path, self.request(Method::POST, path).json(body))
            .await
    }

    /// `POST path` with a JSON body and a timeout of its own (a long poll).
    pub async fn post_waiting<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<T> {
        let request = self.request(Method::POST, path).json(body).timeout(timeout);
        self.send(path, request).await
    }

    /// `POST path` with a body of the given content type, decoded.
    pub async fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<T> {
        let request = self
            .request(Method::POST, path)
            .header(CONTENT_TYPE, content_type)
            .body(body);
        self.send(path, request).await
    }

    /// `PATCH path` with a JSON merge patch (RFC 7396), decoded.
    pub async fn patch<T: DeserializeOwned>(&self, path: &str, patch: &Value) -> Result<T> {
        let request = self
            .request(Method::PATCH, path)
            .header(CONTENT_TYPE, "application/merge-patch+json")
            .body(patch.to_string());
        self.send(path, request).await
    }

    /// `DELETE path`, decoded.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(path, self.request(Method::DELETE, path)).await
    }

    async fn send<T: DeserializeOwned>(&self, path: &str, request: RequestBuilder) -> Result<T> {
        let response = self.respond(path, request).await?;
        let url = self.url(path);
        let bytes = response.bytes().await.map_err(|e| http(&url, &e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Http {
            url,
            why: format!("the answer is not what the API sends: {e}"),
        })
    }

    /// Sends the request; an error status becomes [`Error::Server`].
    async fn respond(&self, path: &str, request: RequestBuilder) -> Result<Response> {
        let url = self.url(path);
        let response = request.send().await.map_err(|e| http(&url, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(server_error(&url, status.as_u16(), &body))
    }

    /// Opens the Server-Sent Events stream at `path`.
    pub async fn stream(&self, path: &str) -> Result<EventStream> {
        self.stream_after(path, None).await
    }

    /// Opens the Server-Sent Events stream at `path`, resuming after the
    /// event whose `id:` was `last_event_id` (sent as `Last-Event-ID`).
    pub async fn stream_after(
        &self,
        path: &str,
        last_event_id: Option<u64>,
    ) -> Result<EventStream> {
        let mut request = self.authorized(
            self.http
                .get(self.url(path))
                .header(ACCEPT, "text/event-stream"),
        );
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = self.respond(path, request).await?;
        Ok(EventStream {
            url: self.url(path),
            response,
            buffer: Vec::new(),
        })
    }
}

/// `text` percent-encoded for one path segment or one query value: every
/// byte but `A-Z a-z 0-9 - . _ ~` (so an event name's `/` stays in its
/// segment).
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn http(url: &str, e: &reqwest::Error) -> Error {
    let why = if e.is_connect() {
        "cannot connect (is `retrace serve` running there?)".to_owned()
    } else if e.is_timeout() {
        "no answer in time".to_owned()
    } else {
        // reqwest's own message omits the cause ("error sending request").
        let mut why = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            why.push_str(": ");
            why.push_str(&s.to_string());
            source = s.source();
        }
        why
    };
    Error::Http {
        url: url.to_owned(),
        why,
    }
}

/// The error a non-success answer stands for: the API's JSON error when the
/// body is one, else the status and the start of the body.
pub(super) fn server_error(url: &str, status: u16, body: &[u8]) -> Error {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    match error.and_then(|e| Some((e, e.get("code")?.as_str()?))) {
        Some((e, code)) => Error::Server {
            status,
            code: code.to_owned(),
            message: e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            details: e
                .get("details")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        },
        None => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().take(200).collect();
            Error::Http {
                url: url.to_owned(),
                why: format!("status {status}: {text}"),
            }
        }
    }
}

/// One Server-Sent Event (comments and keep-alives are skipped).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// An open SSE response, read one frame at a time.
#[derive(Debug)]
pub struct EventStream {
    url: String,
    response: Response,
    buffer: Vec<u8>,
}

impl EventStream {
    /// The next frame, or `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Frame>> {
        loop {
            if let Some(frame) = take_frame(&mut self.buffer) {
                if frame.data.is_empty() && frame.event.is_none() && frame.id.is_none() {
                    continue;
                }
                return Ok(Some(frame));
            }
            match self
                .response
                .chunk()
                .await
                .map_err(|e| http(&self.url, &e))?
            {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}

/// Removes the first complete frame (ended by a blank line) from `buffer`.
fn take_frame(buffer: &mut Vec<u8>) -> Option<Frame> {
    let (end, gap) = frame_end(buffer)?;
    let block: Vec<u8> = buffer.drain(..end + gap).take(end).collect();
    let text = String::from_utf8_lossy(&block);
    let mut frame = Frame::default();
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => frame.id = Some(value.to_owned()),
            "event" => frame.event = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    frame.data = data.join("\n");
    Some(frame)
}

/// Where the first blank line is: the frame's length and the separator's.
fn frame_end(buffer: &[u8]) -> Option<(usize, usize)> {
    (0..buffer.len()).find_map(|i| {
        let rest = &buffer[i..];
        if rest.starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else if rest.starts_with(b"\n\n") || rest.starts_with(b"\r\r") {
            Some((i, 2))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &str) -> Vec<Frame> {
        let mut buffer = input.as_bytes().to_vec();
        std::iter::from_fn(|| take_frame(&mut buffer)).collect()
    }

    #[test]
    fn frames_are_split_on_blank_lines_and_comments_are_skipped() {
        let got = frames(
            ": keep-alive\n\nid: 4\nevent: task_completed\ndata: {\"seq\":4}\n\nid: 5\r\ndata: a\r\ndata: b\r\n\r\npartial",
        );
        assert_eq!(
            got,
            vec![
                Frame::default(),
                Frame {
                    id: Some("4".into()),
                    event: Some("task_completed".into()),
                    data: "{\"seq\":4}".into()
                },
                Frame {
                    id: Some("5".into()),
                    event: None,
                    data: "a\nb".into()
                },
            ]
        );
    }

    #[test]
    fn error_answers_keep_code_message_and_details() {
        let body = br#"{"error":{"code":"invalid_workflow","message":"2 problems","details":[{"path":"steps[0]","message":"bad"}]}}"#;
        let e = server_error("http://x/v1/workflows", 422, body);
        assert_eq!(
            e.to_string(),
            "invalid_workflow: 2 problems\n  - steps[0]: bad"
        );
        let e = server_error("http://x/", 502, b"Bad gateway");
        assert_eq!(e.to_string(), "http://x/: status 502: Bad gateway");
    }

    #[test]
    fn segments_and_query_values_are_percent_encoded() {
        assert_eq!(encode("order.paid"), "order.paid");
        assert_eq!(encode("a/b:c d"), "a%2Fb%3Ac%20d");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn only_http_and_https_urls_are_servers() {
        assert!(Client::new("http://127.0.0.1:7700/").is_ok());
        assert!(Client::new("https://retrace.example").is_ok());
        assert!(matches!(
            Client::new("ftp://example.com"),
            Err(Error::Usage(_))
        ));
        assert!(matches!(Client::new("localhost"), Err(Error::Usage(_))));
    }
}
