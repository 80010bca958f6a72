//! `retrace serve`: opens the engine on a data folder and serves the HTTP
//! API until SIGINT or SIGTERM.
//!
//! Owns the server's life: configuration (flag, then environment variable,
//! then default), start-up failures (a data folder another process holds is
//! refused at once), and graceful shutdown — stop accepting, end streams and
//! long polls, let in-flight requests (and so their appends) finish, flush
//! the journal, exit 0. It must never serve on a half-opened engine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use axum::http::HeaderValue;
use clap::Args;
use retrace_engine::runtime::{Engine, EngineConfig};
use tokio::net::TcpListener;

use super::logging::{self, LogFormat};
use super::signals::Stop;
use crate::state::{ApiConfig, AppState, MAX_BODY_BYTES_DEFAULT};

/// Options of `retrace serve`. Each flag may also come from its environment
/// variable; a flag on the command line wins over the variable, and the
/// variable over the default.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The data folder (created if missing). Only one server may use it.
    #[arg(long, env = "RETRACE_DATA", default_value = "./retrace-data")]
    pub data: PathBuf,
    /// The address to listen on (`host:port`; port 0 picks a free one).
    #[arg(long, env = "RETRACE_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: String,
    /// Requests with a larger body are refused with 413.
    #[arg(long, env = "RETRACE_MAX_BODY_BYTES", default_value_t = MAX_BODY_BYTES_DEFAULT)]
    pub max_body_bytes: usize,
    /// An origin allowed by CORS (repeat the flag, or separate with commas in
    /// the variable). Without any, CORS is off.
    #[arg(long = "cors-origin", env = "RETRACE_CORS_ORIGINS", value_delimiter = ',', value_parser = origin)]
    pub cors_origins: Vec<HeaderValue>,
    /// How log lines are written.
    #[arg(long, env = "RETRACE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

fn origin(text: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(text.trim()).map_err(|e| format!("not a valid origin: {e}"))
}

/// Runs the server; the exit code: 0 after a signal-initiated shutdown,
/// 1 when it cannot start or fails.
pub fn run(args: ServeArgs) -> ExitCode {
    logging::init(args.log_format);
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
    let outcome = runtime.block_on(serve(args));
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let stop = Stop::install()?;
    let engine = Engine::open(EngineConfig::folder(&args.data))
        .await
        .with_context(|| format!("cannot open the data folder {}", args.data.display()))?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("the listener has no address")?;
    let config = ApiConfig {
        max_body_bytes: args.max_body_bytes,
        cors_origins: args.cors_origins,
        ..ApiConfig::default()
    };
    let state = AppState::new(engine.clone(), config);
    let shutdown = state.shutdown.clone();
    tracing::info!(%addr, data = %args.data.display(), "listening");
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
