//! The front of a server sharing a journal on NATS with others (`serve
//! --nats`): each server drives the executions of its partitions, one of
//! them (the holder of partition 0) is the home, and a request may reach
//! any of them. The front sends each request where [`crate::placement`]
//! says it is served — this server's own API, or the server holding the
//! partition it names (whose lease gives its URL), the answer streamed
//! back (event streams and long polls included) — and, for what every
//! server holds a part of (lists of executions, published events), asks
//! them all and merges the answers.
//!
//! Owns where a request goes and the forwarding itself. It must never
//! answer for a partition this server's engine does not drive, never
//! forward a request that was forwarded to it (one hop: a partition moving
//! meanwhile is `503`, and the client tries again), and never hold a
//! stream open past shutdown. It decides nothing else: tokens, the
//! cross-site guard and every check run where the request is served.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use retrace_engine::ExecutionId;
use retrace_engine::runtime::Engine;
use retrace_journal_nats::Holder;
use serde::Deserialize;
use tokio::sync::watch;

use crate::covered::{COVERED, covered};
use crate::error::Error;
use crate::placement::{Placement, placement};
use crate::state::{ApiConfig, Shutdown};

/// The header a forwarded request carries (the forwarding server's URL):
/// its receiver serves it itself, never sending it on.
pub const FORWARDED: &str = "retrace-forwarded";

/// What the front needs to place requests: this server's engine and URL,
/// and who holds each partition.
#[derive(Clone)]
pub struct Front {
    engine: Engine,
    holders: watch::Receiver<BTreeMap<u32, Holder>>,
    /// This server's own URL (as its leases give it), never forwarded to.
    own_url: String,
    client: reqwest::Client,
    shutdown: Shutdown,
    config: ApiConfig,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front")
            .field("own_url", &self.own_url)
            .finish_non_exhaustive()
    }
}

impl Front {
    /// The front of `engine`'s server, at `own_url`, routing by `holders`;
    /// what it forwards ends when `shutdown` triggers.
    pub fn new(
        engine: Engine,
        holders: watch::Receiver<BTreeMap<u32, Holder>>,
        own_url: String,
        shutdown: Shutdown,
        config: ApiConfig,
    ) -> Front {
        Front {
            engine,
            holders,
            own_url,
            // No overall timeout: streams and long polls last. A server
            // that cannot be reached fails fast.
            client: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            shutdown,
            config,
        }
    }

    /// The URL of another server holding `partition`, if the leases name
    /// one.
    fn holder_of(&self, partition: u32) -> Option<String> {
        let holders = self.holders.borrow();
        let url = holders.get(&partition)?.url.as_deref()?;
        (url != self.own_url).then(|| url.to_owned())
    }

    /// The URLs of the other servers holding partitions.
    fn others(&self) -> BTreeSet<String> {
        let holders = self.holders.borrow();
        holders
            .values()
            .filter_map(|h| h.url.clone())
            .filter(|url| *url != self.own_url)
            .collect()
    }

    /// Serves `request` here if this engine drives `partition`, else
    /// forwards it to the server holding it.
    async fn at(&self, partition: u32, request: Request, next: Next) -> Response {
        if self.engine.drives_partition(partition) {
            return next.run(request).await;
        }
        match self.holder_of(partition) {
            Some(url) if !forwarded(&request) => self.forward(&url, request).await,
            _ => moving(partition).into_response(),
        }
    }

    /// The request's head and its whole body (read to look into, or to
    /// send to several servers), or the answer to a body over the limit.
    async fn buffered(
        &self,
        request: Request,
    ) -> Result<(axum::http::request::Parts, axum::body::Bytes), Response> {
        let (parts, body) = request.into_parts();
        match axum::body::to_bytes(body, self.config.max_body_bytes).await {
            Ok(body) => Ok((parts, body)),
            Err(_) => Err(Error::PayloadTooLarge {
                limit_bytes: self.config.max_body_bytes,
            }
            .into_response()),
        }
    }

    /// A start: in its workflow's own partition if the workflow declares
    /// limits (whose holder counts every execution of it), else in the
    /// partition of its idempotency key (whose holder decides every start
    /// with that key), or, without one, here (in a partition of this
    /// server's own) unless this server drives none.
    async fn start(&self, request: Request, next: Next) -> Response {
        let (parts, body) = match self.buffered(request).await {
            Ok(read) => read,
            Err(refused) => return refused,
        };
        // A body that does not read is the handler's to refuse.
        let partition = serde_json::from_slice::<Placed>(&body).ok().and_then(|p| {
            self.engine
                .start_partition(&p.workflow, p.idempotency_key.as_deref())
        });
        let request = Request::from_parts(parts, Body::from(body));
        match partition {
            Some(partition) => self.at(partition, request, next).await,
            None if self.engine.drives_any() || forwarded(&request) => next.run(request).await,
            None => match self.others().into_iter().next() {
                Some(url) => self.forward(&url, request).await,
                None => moving(0).into_response(),
            },
        }
    }

    /// Asks this server and every other holding partitions, and merges
    /// their answers (a failure of this server's is the answer; another
    /// server's makes the answer `503`: it would be incomplete).
    async fn everywhere(&self, route: &str, request: Request, next: Next) -> Response {
        if forwarded(&request) {
            return next.run(request).await;
        }
        let query = request.uri().query().unwrap_or_default().to_owned();
        let others = self.others();
        // Alone (or the others not known yet), this answer is the whole.
        let (here, theirs) = if others.is_empty() {
            (next.run(request).await, Vec::new())
        } else {
            let (parts, body) = match self.buffered(request).await {
                Ok(read) => read,
                Err(refused) => return refused,
            };
            let asked = others.iter().map(|url| {
                let request = Request::from_parts(parts.clone(), Body::from(body.clone()));
                async move {
                    let answer = self.forward(url, request).await;
                    let status = answer.status();
                    let (head, body) = answer.into_parts();
                    let read = axum::body::to_bytes(body, usize::MAX).await;
                    (url, status, head.headers, read)
                }
            });
            let here = next.run(Request::from_parts(parts.clone(), Body::from(body.clone())));
            futures::join!(here, futures::future::join_all(asked))
        };
        if !here.status().is_success() {
            return here;
        }
        let mut seen: BTreeSet<u32> = covered(here.headers()).collect();
        let mut answers = Vec::with_capacity(theirs.len() + 1);
        for (url, status, headers, read) in theirs {
            match read {
                Ok(bytes) if status.is_success() => {
                    seen.extend(covered(&headers));
                    answers.push(bytes);
                }
                _ => {
                    return Error::Unavailable(format!(
                        "the server at {url} holding some of the executions answered {status}; \
                         the answer would be incomplete, retry shortly"
                    ))
                    .into_response();
                }
            }
        }
        // A partition moving between servers while they answered (or with
        // no holder yet) is in no answer: the merged one would miss its
        // executions.
        if let Some(missing) = self.missing(&seen) {
            return incomplete(missing, route).into_response();
        }
        let (mut head, here) = here.into_parts();
        head.headers.remove(COVERED);
        if answers.is_empty() {
            return Response::from_parts(head, here);
        }
        match axum::body::to_bytes(here, usize::MAX).await {
            Ok(bytes) => answers.push(bytes),
            Err(e) => {
                return Error::Internal(format!("cannot read this server's answer: {e}"))
                    .into_response();
            }
        }
        let merged = match route {
            "/v1/executions" => {
                crate::routes::executions::merge_pages(&query, &self.config, &answers)
            }
            _ => crate::routes::commands::merge_delivered(&answers),
        };
        match merged {
            Ok(body) => {
                head.headers.remove(header::CONTENT_LENGTH);
                Response::from_parts(head, Body::from(body))
            }
            Err(e) => e.into_response(),
        }
    }

    /// A partition no answer covered, if one was not.
    fn missing(&self, seen: &BTreeSet<u32>) -> Option<u32> {
        let count = self.engine.partition_count().unwrap_or(0);
        (0..count).find(|p| !seen.contains(p))
    }

    /// Sends `request` to the server at `url`; its answer, streamed.
    async fn forward(&self, url: &str, request: Request) -> Response {
        match self.send(url, request).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        }
    }

    async fn send(&self, url: &str, request: Request) -> Result<Response, Error> {
        let (parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut headers = end_to_end(&parts.headers);
        if let Ok(own) = HeaderValue::from_str(&self.own_url) {
            headers.insert(HeaderName::from_static(FORWARDED), own);
        }
        let answer = self
            .client
            .request(parts.method, format!("{url}{path}"))
            .headers(headers)
            .body(reqwest::Body::wrap_stream(body.into_data_stream()))
            .send()
            .await
            .map_err(|e| {
                Error::Unavailable(format!(
                    "the server at {url}, which holds what this request names, did not \
                     answer: {e}; retry shortly"
                ))
            })?;
        let mut response = Response::builder().status(answer.status());
        if let Some(headers) = response.headers_mut() {
            *headers = end_to_end(answer.headers());
        }
        // A stream forwarded ends when this server shuts down, as its own would.
        let shutdown = self.shutdown.clone();
        let body = answer
            .bytes_stream()
            .take_until(async move { shutdown.triggered().await });
        response
            .body(Body::from_stream(body))
            .map_err(|e| Error::Internal(format!("cannot build the forwarded answer: {e}")))
    }
}

/// The route layer: serves each request here or sends it where it is
/// served (see the module's doc).
pub async fn place(State(front): State<Front>, request: Request, next: Next) -> Response {
    let Some(route) = request.extensions().get::<MatchedPath>().cloned() else {
        return next.run(request).await;
    };
    let route = route.as_str();
    match placement(request.method(), route) {
        None | Some(Placement::Here) => next.run(request).await,
        Some(Placement::Home) => front.at(0, request, next).await,
        Some(Placement::Execution) => {
            // `/v1/executions/{id}/...`: an id that is not one is the
            // handler's to refuse.
            let id = request
                .uri()
                .path()
                .split('/')
                .nth(3)
                .and_then(|id| id.parse::<ExecutionId>().ok());
            match id.and_then(|id| front.engine.execution_partition(id)) {
                Some(partition) => front.at(partition, request, next).await,
                None => next.run(request).await,
            }
        }
        Some(Placement::Start) => front.start(request, next).await,
        Some(Placement::Every) => front.everywhere(route, request, next).await,
    }
}

/// The fields of a start's body that place it.
#[derive(Deserialize)]
struct Placed {
    #[serde(default)]
    workflow: String,
    #[serde(rename = "idempotencyKey")]
    idempotency_key: Option<String>,
}

/// The answer when the answers gathered miss `partition`: it was moving
/// between servers (or had no holder yet) while they answered.
fn incomplete(partition: u32, route: &str) -> Error {
    let delivered = match route {
        "/v1/executions" => "",
        _ => " (the event was delivered to the executions of the others)",
    };
    Error::Unavailable(format!(
        "partition {partition} is moving between servers, so the answer would be \
         incomplete{delivered}; retry shortly"
    ))
}

fn forwarded(request: &Request) -> bool {
    request.headers().contains_key(FORWARDED)
}

/// The answer while no server can serve `partition`: its holder has not
/// recovered it yet, or it is moving between servers.
fn moving(partition: u32) -> Error {
    Error::Unavailable(format!(
        "the server holding partition {partition} is not known yet, or it is moving between \
         servers; retry shortly"
    ))
}

/// Headers that describe one connection, not the request: never passed on.
/// `Host` is passed on: the server serving it checks it (and a browser's
/// `Origin` against it) as the client sent it, so a name allowed on every
/// server (`--allowed-host`) works through any of them.
const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for name in &HOP_BY_HOP {
        out.remove(name);
    }
    out.remove("keep-alive");
    out.remove("proxy-connection");
    out
}
