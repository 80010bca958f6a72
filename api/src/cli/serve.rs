//! `retrace serve`: opens the engine on a data folder (or, with `--nats`, on
//! a journal on NATS JetStream) and serves the HTTP API until SIGINT or
//! SIGTERM.
//!
//! Owns the server's life: its options (merged with the configuration file
//! by [`super::config`]: flag, then environment variable, then file, then
//! default), start-up failures (a bad configuration or listen address is
//! refused before the data folder is touched; a folder another process holds
//! is refused at once), and graceful shutdown — stop accepting, end streams
//! and long polls, let in-flight requests (and so their appends) finish,
//! flush the journal, exit 0. It must never serve on a half-opened engine.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use retrace_engine::runtime::{Engine, EngineConfig};
use retrace_engine::store::Storage;
use retrace_journal_nats::{NatsJournal, NatsOptions, Ownership};
use tokio::net::TcpListener;

use super::config::{self, ServeArgs, Settings};
use super::logging;
use super::signals::Stop;
use crate::state::AppState;

/// The file in the data folder where a running server writes its own URL
/// (a loopback one when it listens on every address), so `retrace token`
/// pointed at the folder can reach it; removed when it stops.
pub const SERVER_URL_FILE: &str = "server.url";

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
    // Read before the data folder is touched, like every other setting.
    let tls = match &settings.tls {
        Some(files) => Some(crate::tls::server_config(files).map_err(anyhow::Error::msg)?),
        None => None,
    };
    // On NATS, this server holds every partition's lease while it runs
    // (so a second server on the same journal is refused), and gives them
    // up when it stops.
    let mut on_nats: Option<NatsJournal> = None;
    let engine = match &settings.nats {
        None => Engine::open(settings.engine_config())
            .await
            .with_context(|| format!("cannot open the data folder {}", settings.data.display()))?,
        Some(nats) => {
            let servers = nats.servers.join(",");
            let node = node_name();
            let journal = NatsJournal::open(NatsOptions {
                servers: nats.servers.clone(),
                prefix: nats.prefix.clone(),
                replicas: nats.replicas,
                ownership: Some(Ownership::new(node.clone())),
                ..NatsOptions::new(servers.clone())
            })
            .await
            .with_context(|| format!("cannot open the journal on NATS at {servers}"))?;
            tracing::info!(servers, prefix = %nats.prefix, replicas = nats.replicas, node,
                "the journal is on NATS JetStream; this server holds it");
            on_nats = Some(journal.clone());
            let config = EngineConfig {
                storage: Storage::Journal(Arc::new(journal)),
                ..settings.engine_config()
            };
            Engine::open(config)
                .await
                .with_context(|| format!("cannot open the journal on NATS at {servers}"))?
        }
    };
    let http = &settings.http;
    tracing::info!(
        max_concurrency = http.max_concurrency,
        max_response_bytes = http.max_response_bytes,
        allow = ?http.policy.allowed().iter().map(ToString::to_string).collect::<Vec<_>>(),
        deny = ?http.policy.denied().iter().map(ToString::to_string).collect::<Vec<_>>(),
        secrets = ?http.secrets.names().collect::<Vec<_>>(),
        "the http capability: its limits, the address blocks allowed and denied besides \
         the default refused ranges, the names of the secrets it can substitute"
    );
    let loopback = addrs.iter().all(|a| a.ip().is_loopback());
    if !engine.tokens_required() {
        if !loopback && !settings.insecure_no_auth {
            engine.shutdown().await.ok();
            if let Some(journal) = &on_nats {
                journal.release().await;
            }
            anyhow::bail!(
                "refusing to serve {} on {} with no access token: anyone who reaches it \
                 could run and change everything. Create an admin token first \
                 (`retrace token create --data {} --name admin --role admin`), listen on \
                 127.0.0.1, or pass --insecure-no-auth",
                settings.data.display(),
                settings.listen,
                settings.data.display()
            );
        }
        if loopback {
            tracing::info!(
                "no access tokens: every caller that reaches this loopback address is \
                 allowed everything (`retrace token create` turns tokens on)"
            );
        } else {
            tracing::warn!(
                listen = %settings.listen,
                "--insecure-no-auth: no access tokens, and anyone who reaches this address \
                 is allowed everything"
            );
        }
    } else {
        tracing::info!("access tokens required on every route but the probes");
    }
    let listener = TcpListener::bind(addrs.as_slice())
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener
        .local_addr()
        .context("the listener has no address")?;
    // With the journal on NATS there is no data folder to write it in.
    let url_file = settings
        .nats
        .is_none()
        .then(|| settings.data.join(SERVER_URL_FILE));
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(url_file) = &url_file
        && let Err(e) = std::fs::write(url_file, format!("{}\n", local_url(scheme, addr)))
    {
        tracing::warn!(file = %url_file.display(), error = %e, "cannot write the server's URL");
    }
    let config = settings.api;
    let state = AppState::new(engine.clone(), config);
    let shutdown = state.shutdown.clone();
    let data = settings.data.display();
    match &settings.config {
        Some(file) => tracing::info!(%addr, %data, scheme, config = %file.display(), "listening"),
        None => tracing::info!(%addr, %data, scheme, "listening"),
    }
    // Made into a service once: served as a bare router, axum would build
    // every route again for each connection (about 47 KB each).
    let app = crate::app(state).into_make_service();
    let stopped = async move {
        stop.received().await;
        tracing::info!("shutting down: finishing requests in flight");
        shutdown.trigger();
    };
    match tls {
        Some(config) => {
            let listener =
                crate::tls::TlsListener::new(listener, config).context("cannot listen with TLS")?;
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
        None => {
            axum::serve(crate::listener::no_delay(listener), app)
                .with_graceful_shutdown(stopped)
                .await
        }
    }
    .context("the server failed")?;
    engine
        .shutdown()
        .await
        .context("cannot flush the journal")?;
    if let Some(journal) = on_nats {
        journal.release().await;
    }
    if let Some(url_file) = &url_file {
        let _ = std::fs::remove_file(url_file);
    }
    tracing::info!("stopped");
    Ok(())
}

/// This server's name in the journal's leases: the host and the process.
fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "retrace".to_owned());
    format!("{host}:{}", std::process::id())
}

/// A URL of this server that a command on the same machine can use.
fn local_url(scheme: &str, addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}
