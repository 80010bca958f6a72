//! What every handler shares: the engine handle, the server's limits, and
//! the shutdown signal that ends long polls and streams.
//!
//! Owns the API's configuration values and their defaults (where those
//! values come from — flags, environment, a config file — is the command
//! line's business). It must never hold per-request state or anything the
//! engine already keeps.

use std::time::Duration;

use axum::http::HeaderValue;
use retrace_engine::runtime::Engine;
use tokio::sync::watch;

use crate::http_metrics::HttpMetrics;

/// The default request body limit: 1 MiB.
pub const MAX_BODY_BYTES_DEFAULT: usize = 1024 * 1024;
/// The default interval between keep-alive comments on an idle SSE stream.
pub const SSE_KEEP_ALIVE_DEFAULT: Duration = Duration::from_secs(15);
/// The default page size when a request names no `limit`.
pub const PAGE_LIMIT_DEFAULT: usize = 100;
/// The default cap on a page's size, whatever `limit` a request names.
pub const PAGE_LIMIT_MAX_DEFAULT: usize = 1000;
/// The default wait of a task poll that names no `waitMs`, in milliseconds.
pub const POLL_WAIT_MS_DEFAULT: u64 = 30_000;
/// The default cap on the SSE streams one access token holds open.
pub const TOKEN_STREAMS_MAX_DEFAULT: usize = 256;

/// Limits and options of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Larger request bodies are refused with `413 payload_too_large`.
    pub max_body_bytes: usize,
    /// Origins allowed by CORS; empty means CORS is off (no CORS headers).
    pub cors_origins: Vec<HeaderValue>,
    /// How often an idle SSE stream sends a keep-alive comment.
    pub sse_keep_alive: Duration,
    /// Page size when a request names none, and the most one page holds.
    pub page_limit_default: usize,
    pub page_limit_max: usize,
    /// A task poll that names no `waitMs` waits this long (the engine caps
    /// every wait at its own maximum).
    pub poll_wait_ms_default: u64,
    /// Host names served besides IP addresses and `localhost` (lowercase;
    /// `*` serves any): see [`crate::guard`].
    pub allowed_hosts: Vec<String>,
    /// Event names whose events must be signed (see [`crate::webhook`]).
    pub event_secrets: crate::webhook::Secrets,
    /// Requests per second and open streams per access token.
    pub token_limits: crate::limits::TokenLimits,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: MAX_BODY_BYTES_DEFAULT,
            cors_origins: Vec::new(),
            sse_keep_alive: SSE_KEEP_ALIVE_DEFAULT,
            page_limit_default: PAGE_LIMIT_DEFAULT,
            page_limit_max: PAGE_LIMIT_MAX_DEFAULT,
            poll_wait_ms_default: POLL_WAIT_MS_DEFAULT,
            allowed_hosts: Vec::new(),
            event_secrets: crate::webhook::Secrets::default(),
            token_limits: crate::limits::TokenLimits::new(0, TOKEN_STREAMS_MAX_DEFAULT),
        }
    }
}

/// The state behind every handler; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub engine: Engine,
    pub config: ApiConfig,
    pub shutdown: Shutdown,
    pub sse_clients: SseClients,
    /// How long requests took (for `/metrics`).
    pub http_metrics: HttpMetrics,
    /// Who may call each route, as the router's table says (it fills this
    /// in; the OpenAPI document is drawn from it).
    pub routes: std::sync::Arc<crate::auth::AccessTable>,
}

impl AppState {
    pub fn new(engine: Engine, config: ApiConfig) -> Self {
        AppState {
            engine,
            config,
            shutdown: Shutdown::new(),
            sse_clients: SseClients::default(),
            http_metrics: HttpMetrics::default(),
            routes: std::sync::Arc::new([]),
        }
    }
}

/// How many SSE streams are open (for `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct SseClients(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl SseClients {
    /// Counts a client until the returned guard is dropped.
    pub fn connect(&self) -> SseClient {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        SseClient(self.0.clone())
    }

    pub fn count(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// One open SSE stream.
#[derive(Debug)]
pub struct SseClient(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Drop for SseClient {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A one-way switch from "serving" to "shutting down". Clones share it.
///
/// Streams and long polls would otherwise keep a graceful shutdown waiting
/// forever (a stream of all events never ends by itself), so they watch this
/// and end when it flips.
#[derive(Debug, Clone)]
pub struct Shutdown {
    sender: std::sync::Arc<watch::Sender<bool>>,
}

impl Shutdown {
    pub fn new() -> Self {
        let (sender, _) = watch::channel(false);
        Shutdown {
            sender: std::sync::Arc::new(sender),
        }
    }

    /// Flips the switch; every waiter wakes.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.sender.borrow()
    }

    /// Completes once the switch has flipped (at once if it already has).
    pub async fn triggered(&self) {
        let mut receiver = self.sender.subscribe();
        // An error means the sender is gone, which cannot happen while
        // `self` holds it; either way there is nothing left to wait for.
        let _ = receiver.wait_for(|on| *on).await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}
