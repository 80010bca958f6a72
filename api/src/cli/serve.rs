//! `retrace serve`: opens the engine on a data folder and serves the HTTP
//! API until SIGINT or SIGTERM.
//!
//! Owns the server's life: its options (merged with the configuration file
//! by [`super::config`]: flag, then environment variable, then file, then
//! default), start-up failures (a bad configuration or listen address is
//! refused before the data folder is touched; a folder another process holds
//! is refused at once), and graceful shutdown — stop accepting, end streams
//! and long polls, let in-flight requests (and so their appends) finish,
//! flush the journal, exit 0. It must never serve on a half-opened engine.

use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use axum::http::HeaderValue;
use clap::Args;
use retrace_engine::runtime::{Engine, EngineConfig};
use tokio::net::TcpListener;

use super::config::{self, Settings};
use super::logging::{self, LogFormat};
use super::signals::Stop;
use crate::state::AppState;

/// Options of `retrace serve`. Each may also come from its environment
/// variable or the configuration file: a flag on the command line wins over
/// the variable, the variable over the file, the file over the default.
/// None has a clap default (`None` means "not given"), so the help states
/// each default in words; a unit test keeps them true.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// A TOML configuration file; its keys are these options' names in
    /// snake case (`max_body_bytes`). Flags and environment variables win
    /// over it. No file is read unless one is named.
    #[arg(long, env = "RETRACE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data folder (created if missing). Only one server may use it.
    /// Default: ./retrace-data
    #[arg(long, env = "RETRACE_DATA", value_name = "FOLDER")]
    pub data: Option<PathBuf>,
    /// The address to listen on (`host:port`; port 0 picks a free one).
    /// Default: 127.0.0.1:7700
    #[arg(long, env = "RETRACE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Requests with a larger body are refused with 413. Default: 1048576
    #[arg(long, env = "RETRACE_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// An origin allowed by CORS (repeat the flag, or separate with commas in
    /// the variable). Without any, CORS is off.
    #[arg(long = "cors-origin", env = "RETRACE_CORS_ORIGINS", value_name = "ORIGIN", value_delimiter = ',', value_parser = origin)]
    pub cors_origins: Option<Vec<HeaderValue>>,
    /// How log lines are written. Default: human
    #[arg(long, env = "RETRACE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// The page size of a list that names no `limit`. Default: 100
    #[arg(long, env = "RETRACE_PAGE_LIMIT_DEFAULT", value_name = "N")]
    pub page_limit_default: Option<NonZeroUsize>,
    /// The most a page holds, whatever `limit` a request names. Default: 1000
    #[arg(long, env = "RETRACE_PAGE_LIMIT_MAX", value_name = "N")]
    pub page_limit_max: Option<NonZeroUsize>,
    /// How long a task poll that names no `waitMs` waits, in milliseconds
    /// (the engine caps every wait at 60000). Default: 30000
    #[arg(long, env = "RETRACE_POLL_WAIT_MS_DEFAULT", value_name = "MS")]
    pub poll_wait_ms_default: Option<u64>,
    /// How often an idle SSE stream gets a keep-alive comment, in
    /// milliseconds. Default: 15000
    #[arg(long, env = "RETRACE_SSE_KEEP_ALIVE_MS", value_name = "MS")]
    pub sse_keep_alive_ms: Option<NonZeroU64>,
}

fn origin(text: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(text.trim()).map_err(|e| format!("not a valid origin: {e}"))
}

/// Runs the server; the exit code: 0 after a signal-initiated shutdown,
/// 1 when it cannot start or fails.
pub fn run(args: ServeArgs) -> ExitCode {
    // Before anything else, so a configuration that cannot be used changes
    // nothing (and is reported in plain text, whatever the log format).
    let settings = match config::resolve(args) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("retrace: {e}");
            return ExitCode::FAILURE;
        }
    };
    logging::init(settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("retrace: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(serve(settings));
    // Background work (timers, lease checks) is aborted, not awaited.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("retrace: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let stop = Stop::install()?;
    // Resolved first, so an address that cannot be used leaves the data
    // folder untouched; bound after the engine opens, so a folder another
    // server holds is reported as such even when the port is its too.
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?
        .collect();
    if addrs.is_empty() {
        anyhow::bail!("cannot listen on {}: it names no address", settings.listen);
    }
    let engine = Engine::open(EngineConfig::folder(&settings.data))
        .await
        .with_context(|| format!("cannot open the data folder {}", settings.data.display()))?;
    let listener = TcpListener::bind(addrs.as_slice())
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener
        .local_addr()
        .context("the listener has no address")?;
    let config = settings.api;
    let state = AppState::new(engine.clone(), config);
    let shutdown = state.shutdown.clone();
    let data = settings.data.display();
    match &settings.config {
        Some(file) => tracing::info!(%addr, %data, config = %file.display(), "listening"),
        None => tracing::info!(%addr, %data, "listening"),
    }
    axum::serve(listener, crate::app(state))
        .with_graceful_shutdown(async move {
            stop.received().await;
            tracing::info!("shutting down: finishing requests in flight");
            shutdown.trigger();
        })
        .await
        .context("the server failed")?;
    engine
        .journal()
        .flush()
        .await
        .context("cannot flush the journal")?;
    tracing::info!("stopped");
    Ok(())
}
