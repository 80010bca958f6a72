//! The front of a server on a journal on NATS: while another server holds
//! the journal, this one stands by and answers every request by forwarding
//! it to the holder (whose lease names its URL), streaming the answer back
//! (event streams and long polls included); once it holds the journal
//! itself, it serves every request with its own API.
//!
//! Owns the switch from forwarding to serving and the forwarding itself.
//! It must never answer a request from its own engine while standing by
//! (it has none), never forward to itself, and never hold a stream open
//! past shutdown.

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use retrace_journal_nats::Holder;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::error::Error;
use crate::state::Shutdown;

/// The front: forwards until [`Front::serve`] gives it an API.
#[derive(Clone)]
pub struct Front {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front")
            .field("own_url", &self.inner.own_url)
            .field("holder", &*self.inner.holder.borrow())
            .field("serving", &self.app().is_some())
            .finish()
    }
}

struct Inner {
    /// This server's own API, once it holds the journal.
    app: RwLock<Option<Router>>,
    /// Who holds the journal, as the leases say.
    holder: watch::Receiver<Option<Holder>>,
    /// This server's own URL, never forwarded to.
    own_url: String,
    client: reqwest::Client,
    shutdown: Shutdown,
}

impl Front {
    /// A front that forwards to whoever `holder` names.
    pub fn standing_by(
        holder: watch::Receiver<Option<Holder>>,
        own_url: String,
        shutdown: Shutdown,
    ) -> Front {
        Front {
            inner: Arc::new(Inner {
                app: RwLock::new(None),
                holder,
                own_url,
                // No overall timeout: streams and long polls last. A holder
                // that cannot be reached fails fast.
                client: reqwest::Client::builder()
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .build()
                    .unwrap_or_default(),
                shutdown,
            }),
        }
    }

    /// From now on, requests are served by `app`.
    pub fn serve(&self, app: Router) {
        *self.inner.app.write().unwrap_or_else(|p| p.into_inner()) = Some(app);
    }

    /// The router to listen with.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", axum::routing::get(healthz))
            .fallback(front)
            .with_state(self.clone())
    }

    /// From now on, requests are forwarded again (this server lost the
    /// journal).
    pub fn stand_by(&self) {
        *self.inner.app.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn app(&self) -> Option<Router> {
        self.inner
            .app
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Liveness is this process's own, whoever holds the journal.
async fn healthz(State(front): State<Front>, request: Request) -> Response {
    match front.app() {
        Some(app) => app.oneshot(request).await.into_response(),
        None => axum::Json(serde_json::json!({"status": "ok"})).into_response(),
    }
}

async fn front(State(front): State<Front>, request: Request) -> Response {
    match front.app() {
        Some(app) => app.oneshot(request).await.into_response(),
        None => match forward(&front.inner, request).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        },
    }
}

/// Headers that describe one connection, not the request: never passed on.
/// `Host` is passed on: the holder checks it (and a browser's `Origin`
/// against it) as the client sent it, so a name allowed on every server
/// (`--allowed-host`) works through any of them.
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

async fn forward(inner: &Inner, request: Request) -> Result<Response, Error> {
    let holder = inner.holder.borrow().clone();
    let url = match holder.as_ref().and_then(|h| h.url.as_deref()) {
        Some(url) if url != inner.own_url => url.to_owned(),
        _ => {
            return Err(Error::Unavailable(
                "this server stands by, and which server has the journal is not known yet; \
                 retry shortly"
                    .into(),
            ));
        }
    };
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let answer = inner
        .client
        .request(parts.method, format!("{url}{path}"))
        .headers(end_to_end(&parts.headers))
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await
        .map_err(|e| {
            Error::Unavailable(format!(
                "this server stands by; the server holding the journal ({}) did not answer: {e}",
                holder.map_or_else(String::new, |h| h.to_string())
            ))
        })?;
    let mut response = Response::builder().status(answer.status());
    if let Some(headers) = response.headers_mut() {
        *headers = end_to_end(answer.headers());
    }
    // A stream forwarded ends when this server shuts down, as its own would.
    let shutdown = inner.shutdown.clone();
    let body = answer
        .bytes_stream()
        .take_until(async move { shutdown.triggered().await });
    response
        .body(Body::from_stream(body))
        .map_err(|e| Error::Internal(format!("cannot build the forwarded answer: {e}")))
}
