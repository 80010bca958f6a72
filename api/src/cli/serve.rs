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
//!
//! On NATS, several servers may run on one journal: each drives the
//! executions of its share of the partitions, and any of them takes any
//! request ([`crate::front`] sends it where it is served).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use retrace_engine::runtime::{Engine, EngineConfig};
use retrace_engine::store::Storage;
use retrace_journal_nats::{NatsJournal, NatsOptions, Ownership};
use tokio::net::TcpListener;

use super::config::{self, NatsSettings, ServeArgs, Settings};
use super::logging;
use super::signals::Stop;
use crate::front::Front;
use crate::state::{AppState, Shutdown};

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
            eprintln!("retrace: {}", said(&e));
            ExitCode::FAILURE
        }
    }
}

/// `e` and its causes, as `{e:#}` joins them, but without a cause whose
/// message is already in what was said (an error whose message carries
/// its cause's would have it said twice).
fn said(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
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
    match settings.nats.clone() {
        None => serve_folder(settings, stop, addrs, tls).await,
        Some(nats) => serve_nats(settings, nats, stop, addrs, tls).await,
    }
}

/// Serves the engine on its data folder.
async fn serve_folder(
    settings: Settings,
    stop: Stop,
    addrs: Vec<SocketAddr>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    let engine = Engine::open(settings.engine_config())
        .await
        .with_context(|| format!("cannot open the data folder {}", settings.data.display()))?;
    log_http(&settings);
    if let Err(e) = check_access(&engine, &addrs, &settings) {
        engine.shutdown().await.ok();
        return Err(e);
    }
    let (listener, addr) = bind(&addrs, &settings.listen).await?;
    let url_file = settings.data.join(SERVER_URL_FILE);
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Err(e) = std::fs::write(&url_file, format!("{}\n", local_url(scheme, addr))) {
        tracing::warn!(file = %url_file.display(), error = %e, "cannot write the server's URL");
    }
    let state = AppState::new(engine.clone(), settings.api);
    let shutdown = state.shutdown.clone();
    let data = settings.data.display();
    match &settings.config {
        Some(file) => tracing::info!(%addr, %data, scheme, config = %file.display(), "listening"),
        None => tracing::info!(%addr, %data, scheme, "listening"),
    }
    let app = crate::app(state);
    listen(listener, tls, app, stop, shutdown).await?;
    engine
        .shutdown()
        .await
        .context("cannot flush the journal")?;
    let _ = std::fs::remove_file(&url_file);
    tracing::info!("stopped");
    Ok(())
}

/// Serves on a journal on NATS, sharing it with every other server on it:
/// the journal's leases give this server its share of the partitions (all
/// of them while it is alone), its engine drives their executions, and
/// the front ([`crate::front`]) serves each request here or forwards it to
/// the server holding what it names. Partitions move as servers come and
/// go (the engine follows); stopping gives this server's up at once.
async fn serve_nats(
    settings: Settings,
    nats: NatsSettings,
    stop: Stop,
    addrs: Vec<SocketAddr>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    let (listener, addr) = bind(&addrs, &settings.listen).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = nats
        .advertise
        .clone()
        .unwrap_or_else(|| local_url(scheme, addr));
    let servers = nats.servers.join(",");
    let node = node_name();
    let ownership = Ownership {
        url: Some(url.clone()),
        share: true,
        ..Ownership::new(node.clone())
    };
    let journal = NatsJournal::open(NatsOptions {
        servers: nats.servers.clone(),
        prefix: nats.prefix.clone(),
        replicas: nats.replicas,
        ownership: Some(ownership),
        credentials: nats.credentials.clone(),
        tls_ca: nats.tls_ca.clone(),
        ..NatsOptions::new(servers.clone())
    })
    .await
    .with_context(|| format!("cannot open the journal on NATS at {servers}"))?;
    let config = EngineConfig {
        storage: Storage::Journal(Arc::new(journal.clone())),
        snapshot_every: NATS_SNAPSHOT_EVERY,
        ..settings.engine_config()
    };
    let engine = match Engine::open(config).await {
        Ok(engine) => engine,
        Err(e) => {
            journal.release().await;
            return Err(anyhow::Error::new(e)
                .context(format!("cannot open the journal on NATS at {servers}")));
        }
    };
    log_http(&settings);
    if let Err(e) = check_access(&engine, &addrs, &settings) {
        engine.shutdown().await.ok();
        journal.release().await;
        return Err(e);
    }
    let state = AppState::new(engine.clone(), settings.api.clone());
    let front = Front::new(
        engine.clone(),
        journal.holders(),
        url.clone(),
        state.shutdown.clone(),
        settings.api.clone(),
    );
    let shutdown = state.shutdown.clone();
    let held = engine.partitions().map_or(0, |p| p.borrow().len());
    tracing::info!(%addr, scheme, %url, servers, prefix = %nats.prefix, node, partitions = held,
        "listening; the journal is on NATS JetStream, shared with every server on it");
    let served = listen(
        listener,
        tls,
        crate::router::shared_app(state, front),
        stop,
        shutdown,
    )
    .await;
    let flushed = engine.shutdown().await;
    journal.release().await;
    served?;
    flushed.context("cannot flush the journal")?;
    tracing::info!("stopped");
    Ok(())
}

/// How many events apart a server on NATS snapshots an execution. Taking
/// over a dead server's work reads every unfinished history from NATS: with
/// 10,000 executions of ~100 events, 5.9-6.1 s at the engine's default
/// (500, so none has a snapshot) and 2.5-2.6 s at 50 (`recovery --nats
/// --snapshot-every`), for at most 14 % more time building them (inline
/// steps: many events per append, so the most snapshots per append).
const NATS_SNAPSHOT_EVERY: u64 = 50;

/// Listens on `addrs` (resolved from `listen`); the listener and its
/// address.
async fn bind(addrs: &[SocketAddr], listen: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addrs)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener
        .local_addr()
        .context("the listener has no address")?;
    Ok((listener, addr))
}

/// Logs what the `http` capability may do.
fn log_http(settings: &Settings) {
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
}

/// Refuses to serve an engine with no access token beyond loopback,
/// unless told to; logs what access is required.
fn check_access(engine: &Engine, addrs: &[SocketAddr], settings: &Settings) -> anyhow::Result<()> {
    let loopback = addrs.iter().all(|a| a.ip().is_loopback());
    if engine.tokens_required() {
        tracing::info!("access tokens required on every route but the probes");
        return Ok(());
    }
    if !loopback && !settings.insecure_no_auth {
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
    Ok(())
}

/// Serves `app` on `listener` until a stop signal, then flips `shutdown`
/// (ending streams and long polls) and lets requests in flight finish.
async fn listen(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: axum::Router,
    stop: Stop,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    // Made into a service once: served as a bare router, axum would build
    // every route again for each connection (about 47 KB each).
    let app = app.into_make_service();
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
    .context("the server failed")
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

#[cfg(test)]
mod tests {
    use super::said;

    #[derive(Debug, thiserror::Error)]
    #[error("storage error: {0}")]
    struct Wrapping(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("NATS refused the credentials")]
    struct Inner;

    /// A cause the message above it already carries is said once; one it
    /// does not is said after it.
    #[test]
    fn each_cause_is_said_once() {
        let e = anyhow::Error::new(Wrapping(Inner)).context("cannot open the journal");
        assert_eq!(
            said(&e),
            "cannot open the journal: storage error: NATS refused the credentials"
        );
        let plain = anyhow::Error::new(Inner).context("cannot open the journal");
        assert_eq!(
            said(&plain),
            "cannot open the journal: NATS refused the credentials"
        );
    }
}
