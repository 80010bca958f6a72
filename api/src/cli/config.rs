//! `retrace serve`'s settings: the configuration file, and how every source
//! is merged into the values the server runs with.
//!
//! Capability limits (`[capability_limits."<capability>"]`) are the file's
//! only: no flag or variable gives them, and each is checked whole here
//! (the engine's own check) so a bad one stops the server at once. The
//! built-in `http` capability's settings are the `[http]` table, whose keys
//! are the `--http-*` flags' names without the prefix. Its secrets are the
//! `[secrets]` table and the `RETRACE_SECRET_<NAME>` variables (which win),
//! never a flag: a command line is visible to every user of the machine.
//!
//! Owns the precedence — a flag on the command line, then its environment
//! variable (clap folds those two into [`ServeArgs`], leaving `None` when
//! neither is given), then the `--config` file, then the built-in default —
//! the file's format (TOML, unknown keys refused), and checking the merged
//! values. It reads the one file it is given (and the secrets' environment
//! variables) and nothing else: it must never create, open or bind
//! anything, so a configuration it refuses changes nothing. There is no
//! implicit file: without `--config` (or `RETRACE_CONFIG`) none is read.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use axum::http::HeaderValue;
use clap::{Args, ValueEnum};
use retrace_engine::http::{
    AddressPolicy, HttpOptions, MAX_CONCURRENCY_DEFAULT, MAX_RESPONSE_BYTES_DEFAULT, PolicyError,
    Secrets, SecretsError,
};
use retrace_engine::limits::{CapabilityLimits, CapabilityRate};
use retrace_engine::machine::{HISTORY_EVENTS_MAX_DEFAULT, Limits};
use retrace_engine::model::check_capability;
use retrace_engine::runtime::{EngineConfig, Pacing};
use retrace_engine::store::{CACHE_BYTES_DEFAULT, JournalOptions, MIN_FREE_BYTES_DEFAULT, Storage};
use retrace_engine::webhooks::WebhookOptions;
use retrace_engine::webhooks::retry::{MAX_DELAY_MS_DEFAULT, RETRY_FOR_MS_DEFAULT};
use retrace_journal_nats::NatsCredentials;

use serde::{Deserialize, Deserializer, de::Error as _};

use super::logging::LogFormat;
use crate::state::{
    ApiConfig, MAX_BODY_BYTES_DEFAULT, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX_DEFAULT,
    POLL_WAIT_MS_DEFAULT, SSE_KEEP_ALIVE_DEFAULT,
};

/// The data folder when no source names one.
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
    /// A host name requests may be addressed to, besides IP addresses and
    /// localhost (repeat the flag, or separate with commas in the
    /// variable; `*` allows any). Others are refused with 403, against DNS
    /// rebinding. The name in --listen is always allowed.
    #[arg(
        long = "allowed-host",
        env = "RETRACE_ALLOWED_HOSTS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub allowed_hosts: Option<Vec<String>>,
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
    /// The most events one execution's history may hold (at least 100): an
    /// execution that would record more fails with `history_limit`, its
    /// failure the last event. Default: 50000
    #[arg(long, env = "RETRACE_MAX_HISTORY_EVENTS", value_name = "N")]
    pub max_history_events: Option<u64>,
    /// Each execution's budget of events per second: what an execution does
    /// by itself (a loop of inline steps, its due timers) waits while it is
    /// over it, for at most 5 seconds' worth at once (0 turns pacing off).
    /// Default: 1000
    #[arg(long, env = "RETRACE_EXECUTION_EVENTS_PER_S", value_name = "N")]
    pub execution_events_per_s: Option<u64>,
    /// The free space the journal keeps on the data folder's disk, in MiB:
    /// while less is free every write answers 503 `storage_unavailable`,
    /// and writes resume once it is free again (0 turns the reserve off).
    /// Default: 64
    #[arg(long, env = "RETRACE_MIN_FREE_DISK_MB", value_name = "MIB")]
    pub min_free_disk_mb: Option<u64>,
    /// The journal's page cache (sled's), in MiB: once the journal is
    /// larger, most of the server's memory. At least 1. Default: 1024
    #[arg(long, env = "RETRACE_CACHE_MB", value_name = "MIB")]
    pub cache_mb: Option<NonZeroU64>,
    /// Serve a data folder that holds no access token on an address other
    /// than loopback, open to anyone who reaches it. Without this, such a
    /// server refuses to start (create a token with `retrace token
    /// create`). Default: false
    #[arg(
        long,
        env = "RETRACE_INSECURE_NO_AUTH",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub insecure_no_auth: Option<bool>,
    /// A secret for signed events: `<event name>=whsec_<base64>`, or
    /// `*=whsec_…` for every name without its own (repeat the flag, or
    /// separate with commas in the variable). Events of such a name are
    /// taken only with a valid Standard Webhooks signature, and then need
    /// no token.
    #[arg(
        long = "event-secret",
        env = "RETRACE_EVENT_SECRETS",
        value_name = "NAME=SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub event_secrets: Option<Vec<String>>,
    /// Serve HTTPS: the certificate chain (PEM, leaf first). Needs
    /// --tls-key. Without it the server speaks plain HTTP.
    #[arg(
        long,
        env = "RETRACE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(
        long,
        env = "RETRACE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Require every client to present a certificate this CA (PEM) signed:
    /// mutual TLS, for agents that authenticate that way. Needs --tls-cert.
    #[arg(long, env = "RETRACE_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// The requests per second each access token may make (a burst of one
    /// second's worth); past it, 429 with Retry-After. 0 turns it off.
    /// Default: 0
    #[arg(long, env = "RETRACE_TOKEN_REQUESTS_PER_S", value_name = "N")]
    pub token_requests_per_s: Option<u32>,
    /// The most SSE streams one access token holds open; past it, 429.
    /// 0 turns it off. Default: 256
    #[arg(long, env = "RETRACE_TOKEN_STREAMS_MAX", value_name = "N")]
    pub token_streams_max: Option<usize>,
    /// The built-in `http` capability: the most requests under way at once
    /// (the rest wait their turn). At least 1. File: `[http]
    /// max_concurrency`. Default: 64
    #[arg(long, env = "RETRACE_HTTP_MAX_CONCURRENCY", value_name = "N")]
    pub http_max_concurrency: Option<NonZeroUsize>,
    /// The built-in `http` capability: the largest response body it reads;
    /// a larger one fails the task (`http_response_too_large`). File:
    /// `[http] max_response_bytes`. Default: 1048576
    #[arg(long, env = "RETRACE_HTTP_MAX_RESPONSE_BYTES", value_name = "BYTES")]
    pub http_max_response_bytes: Option<NonZeroU64>,
    /// An address or CIDR block the built-in `http` capability may reach
    /// although it is refused by default (loopback, private, link-local…),
    /// such as 10.1.0.0/16 (repeat the flag, or separate with commas in
    /// the variable). File: `[http] allow`.
    #[arg(
        long = "http-allow",
        env = "RETRACE_HTTP_ALLOW",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub http_allow: Option<Vec<String>>,
    /// An address or CIDR block the built-in `http` capability may not
    /// reach (repeat the flag, or separate with commas in the variable);
    /// the most specific block of allow and deny decides. File: `[http]
    /// deny`.
    #[arg(
        long = "http-deny",
        env = "RETRACE_HTTP_DENY",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub http_deny: Option<Vec<String>>,
    /// Outbound webhooks: how long after its first attempt a delivery is
    /// still tried, in ms; then it is given up (counted, its error shown)
    /// and delivery moves on. At least 1. File: `[webhooks] retry_for_ms`.
    /// Default: 3600000 (an hour)
    #[arg(long, env = "RETRACE_WEBHOOK_RETRY_FOR_MS", value_name = "MS")]
    pub webhook_retry_for_ms: Option<NonZeroU64>,
    /// Outbound webhooks: the longest delay between two attempts of a
    /// delivery, in ms (delays double from 1 s up to it). At least 1.
    /// File: `[webhooks] max_delay_ms`. Default: 300000 (5 minutes)
    #[arg(long, env = "RETRACE_WEBHOOK_MAX_DELAY_MS", value_name = "MS")]
    pub webhook_max_delay_ms: Option<NonZeroU64>,
    /// Keep the journal on NATS JetStream instead of the data folder: the
    /// servers' addresses (repeat the flag, or separate with commas in the
    /// variable), e.g. nats://127.0.0.1:4222. The servers need JetStream
    /// and NATS 2.11 or later. File: `[nats] servers`. Default: none (the
    /// data folder)
    #[arg(
        long = "nats",
        env = "RETRACE_NATS",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub nats: Option<Vec<String>>,
    /// The subject prefix of the journal on NATS; its stream and bucket are
    /// named after it (`retrace` → RETRACE_EVENTS, RETRACE_SNAPSHOTS).
    /// File: `[nats] prefix`. Default: retrace
    #[arg(long, env = "RETRACE_NATS_PREFIX", value_name = "PREFIX")]
    pub nats_prefix: Option<String>,
    /// Replicas of the journal's stream and bucket when this server creates
    /// them (1 for one NATS server, 3 for a cluster of three). File: `[nats]
    /// replicas`. Default: 1
    #[arg(long, env = "RETRACE_NATS_REPLICAS", value_name = "N")]
    pub nats_replicas: Option<NonZeroUsize>,
    /// The URL other retrace servers on the same journal reach this one at
    /// (they forward it the requests for what it drives), e.g.
    /// http://10.0.0.5:7700. File: `[nats] advertise`. Default: this
    /// server's own listen address (a loopback one when it listens on every
    /// address)
    #[arg(long, env = "RETRACE_NATS_ADVERTISE", value_name = "URL")]
    pub nats_advertise: Option<String>,
    #[command(flatten)]
    pub nats_access: NatsAccessArgs,
}

/// What a command on a journal on NATS (`serve --nats`, `token --nats`)
/// gives NATS: credentials when NATS asks for them (an `authorization`
/// block in its configuration), and the CA its TLS certificate is checked
/// against. Each is for `--nats` only: without it, they are not used.
#[derive(Debug, Clone, Default, Args)]
pub struct NatsAccessArgs {
    /// The user given to NATS when it asks for credentials, with
    /// --nats-password. `serve`'s file: `[nats] user`. Default: none
    #[arg(long, env = "RETRACE_NATS_USER", value_name = "USER")]
    pub nats_user: Option<String>,
    /// That user's password; prefer the variable (a flag shows in `ps`).
    /// `serve`'s file: `[nats] password`. Default: none
    #[arg(
        long,
        env = "RETRACE_NATS_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub nats_password: Option<String>,
    /// A token given to NATS instead of a user and password; prefer the
    /// variable. `serve`'s file: `[nats] token`. Default: none
    #[arg(
        long,
        env = "RETRACE_NATS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub nats_token: Option<String>,
    /// Speak TLS to NATS, trusting only this CA's certificates (PEM; NATS
    /// serves a certificate it signed, its `tls` block). `serve`'s file:
    /// `[nats] ca`. Default: none (plain, unless NATS requires TLS)
    #[arg(long, env = "RETRACE_NATS_CA", value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,
}

fn origin(text: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(text.trim()).map_err(|e| format!("not a valid origin: {e}"))
}

pub const DATA_DEFAULT: &str = "./retrace-data";
/// The listen address when no source names one.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7700";

/// The smallest `max_history_events` taken: below it, ordinary workflows
/// would fail for want of room.
pub const MAX_HISTORY_EVENTS_MIN: u64 = 100;

/// What the server runs with, every source merged.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data: PathBuf,
    pub listen: String,
    pub log_format: LogFormat,
    pub api: ApiConfig,
    /// The engine's limits on executions (`max_history_events`).
    pub limits: Limits,
    /// Each execution's event budget (`execution_events_per_s`).
    pub pacing: Pacing,
    /// The journal's free-space reserve, in bytes (`min_free_disk_mb`).
    pub min_free_bytes: u64,
    /// The journal's page cache, in bytes (`cache_mb`).
    pub cache_bytes: u64,
    /// Serve a folder without tokens beyond loopback (`insecure_no_auth`).
    pub insecure_no_auth: bool,
    /// HTTPS, when configured (`tls_cert`, `tls_key`, `tls_client_ca`).
    pub tls: Option<crate::tls::TlsFiles>,
    /// The limits on capabilities' tasks (`capability_limits`, the file's
    /// only), each checked.
    pub capability_limits: BTreeMap<String, CapabilityLimits>,
    /// The built-in `http` capability (`[http]`, `http_*` flags) and the
    /// secrets it substitutes (`[secrets]`, `RETRACE_SECRET_<NAME>`).
    pub http: HttpOptions,
    /// Outbound webhooks' retries (`[webhooks]`, `webhook_*` flags).
    pub webhooks: WebhookOptions,
    /// The configuration file read, if any (for the log).
    pub config: Option<PathBuf>,
    /// The journal on NATS, when configured (`nats`, `nats_*`, `[nats]`).
    pub nats: Option<NatsSettings>,
}

/// Where the journal is on NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    pub servers: Vec<String>,
    pub prefix: String,
    pub replicas: usize,
    /// Where other servers reach this one; `None`: its listen address.
    pub advertise: Option<String>,
    /// What this server gives NATS when NATS asks (shown without the
    /// secret).
    pub credentials: Option<NatsCredentials>,
    /// The CA NATS's TLS certificate is checked against; `None`: plain.
    pub tls_ca: Option<PathBuf>,
}

/// The subject prefix on NATS when no source names one.
pub const NATS_PREFIX_DEFAULT: &str = "retrace";

/// Why the settings cannot be used. Each names the file, and where in it,
/// when the file is the cause.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type or range.
    #[error("the config file {} is invalid{}: {message}{}", .path.display(), at(*.line, *.column), excerpt(*.line, .text))]
    Invalid {
        path: PathBuf,
        message: String,
        /// 1-based; 0 when the parser could not say where.
        line: usize,
        column: usize,
        /// The offending line, as written.
        text: String,
    },
    #[error(
        "page_limit_default ({default}) is larger than page_limit_max ({max}); lower the default or raise the maximum"
    )]
    PageLimits { default: usize, max: usize },
    #[error(
        "max_history_events ({value}) is below {MAX_HISTORY_EVENTS_MIN}: ordinary workflows would fail for want of room"
    )]
    HistoryLimit { value: u64 },
    #[error("event_secrets: {0}")]
    EventSecrets(String),
    /// NATS settings that cannot be used.
    #[error("nats: {0}")]
    Nats(String),
    #[error(
        "TLS needs both a certificate and its key (tls_cert and tls_key); tls_client_ca needs them too"
    )]
    TlsIncomplete,
    /// Address blocks of the `http` capability's policy that do not parse.
    #[error("http: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    HttpPolicy(Vec<PolicyError>),
    /// Secrets that cannot be used (never shows a value).
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// Capability limits that cannot be used: every problem of every
    /// capability, each as `capability_limits."<capability>": <problem>`.
    #[error(
        "the config file {} is invalid: {}",
        .path.display(),
        .problems.join("; ")
    )]
    CapabilityLimits {
        path: PathBuf,
        problems: Vec<String>,
    },
}

fn at(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" at line {line}, column {column}")
    }
}

fn excerpt(line: usize, text: &str) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("\n  {line} | {text}")
    }
}

/// The configuration file's keys: the flags' names in snake case. Every key
/// is optional; an unknown key is an error, so a typo never silently does
/// nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data: Option<PathBuf>,
    listen: Option<String>,
    max_body_bytes: Option<usize>,
    #[serde(default, deserialize_with = "origins")]
    cors_origins: Option<Vec<HeaderValue>>,
    allowed_hosts: Option<Vec<String>>,
    #[serde(default, deserialize_with = "log_format")]
    log_format: Option<LogFormat>,
    page_limit_default: Option<NonZeroUsize>,
    page_limit_max: Option<NonZeroUsize>,
    poll_wait_ms_default: Option<u64>,
    sse_keep_alive_ms: Option<NonZeroU64>,
    max_history_events: Option<u64>,
    execution_events_per_s: Option<u64>,
    min_free_disk_mb: Option<u64>,
    cache_mb: Option<NonZeroU64>,
    insecure_no_auth: Option<bool>,
    /// Event name (or `*`) to its secret.
    event_secrets: Option<std::collections::BTreeMap<String, String>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    token_requests_per_s: Option<u32>,
    token_streams_max: Option<usize>,
    /// Capability to its limits: `[capability_limits."images.resize"]`.
    capability_limits: Option<BTreeMap<String, FileCapabilityLimits>>,
    /// The built-in `http` capability: `[http]`.
    http: Option<FileHttp>,
    /// Outbound webhooks: `[webhooks]`.
    webhooks: Option<FileWebhooks>,
    /// Secret name to value: `[secrets]`.
    secrets: Option<BTreeMap<String, String>>,
    /// The journal on NATS: `[nats]`.
    nats: Option<FileNats>,
}

/// The `[nats]` table: the `nats*` flags without their prefix.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNats {
    servers: Option<Vec<String>>,
    prefix: Option<String>,
    replicas: Option<NonZeroUsize>,
    advertise: Option<String>,
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
    ca: Option<PathBuf>,
}

/// The `[http]` table: the `http_*` flags without their prefix.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    max_concurrency: Option<NonZeroUsize>,
    max_response_bytes: Option<NonZeroU64>,
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
}

/// The `[webhooks]` table: the `webhook_*` flags without their prefix.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhooks {
    retry_for_ms: Option<NonZeroU64>,
    max_delay_ms: Option<NonZeroU64>,
}

/// One capability's limits in the file: `concurrency = 4`,
/// `rate_limit = { limit = 100, period_ms = 60000 }`, or both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCapabilityLimits {
    concurrency: Option<u32>,
    rate_limit: Option<FileRate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRate {
    limit: u32,
    period_ms: u64,
}

/// The file's capability limits as the engine takes them, each checked
/// whole: the capability's name, and the engine's own check of the limits.
fn capability_limits(
    path: Option<&Path>,
    file: Option<BTreeMap<String, FileCapabilityLimits>>,
) -> Result<BTreeMap<String, CapabilityLimits>, ConfigError> {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for (capability, given) in file.unwrap_or_default() {
        let limits = CapabilityLimits {
            concurrency: given.concurrency,
            rate_limit: given.rate_limit.map(|r| CapabilityRate {
                limit: r.limit,
                period_ms: r.period_ms,
            }),
        };
        let found = check_capability(&capability)
            .err()
            .into_iter()
            .chain(limits.check().err().unwrap_or_default());
        problems.extend(found.map(|p| format!("capability_limits.\"{capability}\": {p}")));
        out.insert(capability, limits);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ConfigError::CapabilityLimits {
            path: path.map(Path::to_owned).unwrap_or_default(),
            problems,
        })
    }
}

fn origins<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<HeaderValue>>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| {
            HeaderValue::from_str(text.trim())
                .map_err(|e| D::Error::custom(format!("{text:?} is not a valid origin: {e}")))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

fn log_format<'de, D: Deserializer<'de>>(d: D) -> Result<Option<LogFormat>, D::Error> {
    let text = String::deserialize(d)?;
    LogFormat::from_str(&text, false).map(Some).map_err(|_| {
        D::Error::custom(format!(
            "unknown log format `{text}`, expected `human` or `json`"
        ))
    })
}

/// Merges the command line (flags over environment variables, as clap
/// parsed them), the configuration file it names, and the defaults; the
/// secrets also come from the process's `RETRACE_SECRET_<NAME>` variables.
pub fn resolve(args: ServeArgs) -> Result<Settings, ConfigError> {
    resolve_with(args, std::env::vars_os())
}

/// [`resolve`], with the environment's variables given (`vars`: only the
/// secrets' are read from it; clap has read the flags' already).
pub fn resolve_with(
    args: ServeArgs,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Settings, ConfigError> {
    let file = match &args.config {
        Some(path) => read(path)?,
        None => FileSettings::default(),
    };
    // A relative data folder in the file is relative to the file's folder,
    // so the file means the same whatever the working directory.
    let file_data = match (&args.config, file.data) {
        (Some(path), Some(data)) => Some(relative_to(path, &data)),
        (_, data) => data,
    };
    let page_limit_default = args
        .page_limit_default
        .or(file.page_limit_default)
        .map_or(PAGE_LIMIT_DEFAULT, NonZeroUsize::get);
    let page_limit_max = args
        .page_limit_max
        .or(file.page_limit_max)
        .map_or(PAGE_LIMIT_MAX_DEFAULT, NonZeroUsize::get);
    if page_limit_default > page_limit_max {
        return Err(ConfigError::PageLimits {
            default: page_limit_default,
            max: page_limit_max,
        });
    }
    let history_events_max = args
        .max_history_events
        .or(file.max_history_events)
        .unwrap_or(HISTORY_EVENTS_MAX_DEFAULT);
    if history_events_max < MAX_HISTORY_EVENTS_MIN {
        return Err(ConfigError::HistoryLimit {
            value: history_events_max,
        });
    }
    let pacing = Pacing {
        events_per_s: args
            .execution_events_per_s
            .or(file.execution_events_per_s)
            .unwrap_or(Pacing::EVENTS_PER_S_DEFAULT),
    };
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| LISTEN_DEFAULT.to_owned());
    let mut allowed_hosts: Vec<String> = args
        .allowed_hosts
        .or(file.allowed_hosts)
        .unwrap_or_default()
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    // The name the server listens on is one it answers to.
    if let Some((name, _port)) = listen.rsplit_once(':') {
        let name = name.trim_matches(['[', ']']).to_ascii_lowercase();
        if !name.is_empty() && !allowed_hosts.contains(&name) {
            allowed_hosts.push(name);
        }
    }
    // Paths in the file are relative to the file's folder.
    let in_file = |path: Option<PathBuf>| match (&args.config, path) {
        (Some(config), Some(path)) => Some(relative_to(config, &path)),
        (_, path) => path,
    };
    let tls_cert = args.tls_cert.or(in_file(file.tls_cert));
    let tls_key = args.tls_key.or(in_file(file.tls_key));
    let tls_client_ca = args.tls_client_ca.or(in_file(file.tls_client_ca));
    let tls = match (tls_cert, tls_key, tls_client_ca) {
        (Some(cert), Some(key), client_ca) => Some(crate::tls::TlsFiles {
            cert,
            key,
            client_ca,
        }),
        (None, None, None) => None,
        _ => return Err(ConfigError::TlsIncomplete),
    };
    let event_secrets = args.event_secrets.unwrap_or_else(|| {
        file.event_secrets
            .unwrap_or_default()
            .into_iter()
            .map(|(name, secret)| format!("{name}={secret}"))
            .collect()
    });
    let event_secrets =
        crate::webhook::Secrets::parse(&event_secrets).map_err(ConfigError::EventSecrets)?;
    let capability_limits = capability_limits(args.config.as_deref(), file.capability_limits)?;
    let file_http = file.http.unwrap_or_default();
    let policy = AddressPolicy::parse(
        &args.http_allow.or(file_http.allow).unwrap_or_default(),
        &args.http_deny.or(file_http.deny).unwrap_or_default(),
    )
    .map_err(ConfigError::HttpPolicy)?;
    let http = HttpOptions {
        max_concurrency: args
            .http_max_concurrency
            .or(file_http.max_concurrency)
            .map_or(MAX_CONCURRENCY_DEFAULT, NonZeroUsize::get),
        max_response_bytes: args
            .http_max_response_bytes
            .or(file_http.max_response_bytes)
            .map_or(MAX_RESPONSE_BYTES_DEFAULT, NonZeroU64::get),
        policy,
        secrets: Secrets::from_sources(file.secrets.unwrap_or_default(), vars)?,
    };
    let file_webhooks = file.webhooks.unwrap_or_default();
    let webhooks = WebhookOptions {
        retry_for_ms: args
            .webhook_retry_for_ms
            .or(file_webhooks.retry_for_ms)
            .map_or(RETRY_FOR_MS_DEFAULT, NonZeroU64::get),
        max_delay_ms: args
            .webhook_max_delay_ms
            .or(file_webhooks.max_delay_ms)
            .map_or(MAX_DELAY_MS_DEFAULT, NonZeroU64::get),
        ..WebhookOptions::default()
    };
    let file_nats = file.nats.unwrap_or_default();
    let access = args.nats_access;
    let credentials = nats_credentials(
        access.nats_user.or(file_nats.user),
        access.nats_password.or(file_nats.password),
        access.nats_token.or(file_nats.token),
    )
    .map_err(ConfigError::Nats)?;
    let nats_ca = access.nats_ca.or(in_file(file_nats.ca));
    let nats = nats_settings(
        args.nats.or(file_nats.servers),
        args.nats_prefix.or(file_nats.prefix),
        args.nats_replicas.or(file_nats.replicas),
        args.nats_advertise.or(file_nats.advertise),
        credentials,
        nats_ca,
    )?;
    let api = ApiConfig {
        max_body_bytes: args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(MAX_BODY_BYTES_DEFAULT),
        cors_origins: args.cors_origins.or(file.cors_origins).unwrap_or_default(),
        sse_keep_alive: args
            .sse_keep_alive_ms
            .or(file.sse_keep_alive_ms)
            .map_or(SSE_KEEP_ALIVE_DEFAULT, |ms| Duration::from_millis(ms.get())),
        page_limit_default,
        page_limit_max,
        poll_wait_ms_default: args
            .poll_wait_ms_default
            .or(file.poll_wait_ms_default)
            .unwrap_or(POLL_WAIT_MS_DEFAULT),
        allowed_hosts,
        event_secrets,
        token_limits: crate::limits::TokenLimits::new(
            args.token_requests_per_s
                .or(file.token_requests_per_s)
                .unwrap_or(0),
            args.token_streams_max
                .or(file.token_streams_max)
                .unwrap_or(crate::state::TOKEN_STREAMS_MAX_DEFAULT),
        ),
    };
    Ok(Settings {
        data: args
            .data
            .or(file_data)
            .unwrap_or_else(|| PathBuf::from(DATA_DEFAULT)),
        listen,
        log_format: args
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Human),
        api,
        limits: Limits { history_events_max },
        pacing,
        min_free_bytes: args
            .min_free_disk_mb
            .or(file.min_free_disk_mb)
            .map_or(MIN_FREE_BYTES_DEFAULT, |mib| mib.saturating_mul(1 << 20)),
        cache_bytes: args
            .cache_mb
            .or(file.cache_mb)
            .map_or(CACHE_BYTES_DEFAULT, |mib| mib.get().saturating_mul(1 << 20)),
        insecure_no_auth: args
            .insecure_no_auth
            .or(file.insecure_no_auth)
            .unwrap_or(false),
        tls,
        capability_limits,
        http,
        webhooks,
        config: args.config,
        nats,
    })
}

/// The NATS settings, if servers are named; the prefix must be a plain
/// subject token.
fn nats_settings(
    servers: Option<Vec<String>>,
    prefix: Option<String>,
    replicas: Option<NonZeroUsize>,
    advertise: Option<String>,
    credentials: Option<NatsCredentials>,
    tls_ca: Option<PathBuf>,
) -> Result<Option<NatsSettings>, ConfigError> {
    let servers: Vec<String> = servers
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if servers.is_empty() {
        let given = [
            prefix.is_some(),
            replicas.is_some(),
            advertise.is_some(),
            credentials.is_some(),
            tls_ca.is_some(),
        ];
        if given.into_iter().any(|g| g) {
            return Err(ConfigError::Nats(
                "nats_prefix, nats_replicas, nats_advertise, nats_ca and NATS credentials need \
                 NATS servers (--nats URL)"
                    .into(),
            ));
        }
        return Ok(None);
    }
    let prefix = prefix.unwrap_or_else(|| NATS_PREFIX_DEFAULT.to_owned());
    if prefix.is_empty()
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ConfigError::Nats(format!(
            "nats_prefix {prefix:?} must be letters, digits, '-' or '_' (one subject token)"
        )));
    }
    let advertise = match advertise.map(|a| a.trim().trim_end_matches('/').to_owned()) {
        Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
            return Err(ConfigError::Nats(format!(
                "nats_advertise {url:?} must be an http:// or https:// URL"
            )));
        }
        advertise => advertise,
    };
    Ok(Some(NatsSettings {
        servers,
        prefix,
        replicas: replicas.map_or(1, NonZeroUsize::get),
        advertise,
        credentials,
        tls_ca,
    }))
}

/// The credentials for NATS a user, a password and a token make: a user
/// with its password, or a token, or none.
pub fn nats_credentials(
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
) -> Result<Option<NatsCredentials>, String> {
    match (user, password, token) {
        (None, None, None) => Ok(None),
        (Some(user), Some(password), None) => {
            Ok(Some(NatsCredentials::UserPassword { user, password }))
        }
        (None, None, Some(token)) => Ok(Some(NatsCredentials::Token(token))),
        (_, _, Some(_)) => Err("give NATS a token or a user and password, not both".into()),
        (Some(_), None, None) => Err("nats_user needs nats_password".into()),
        (None, Some(_), None) => Err("nats_password needs nats_user".into()),
    }
}

impl Settings {
    /// How the engine is opened: durable in the data folder, with these
    /// limits, this pacing and this free-space reserve.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            storage: Storage::Folder {
                path: self.data.clone(),
                options: JournalOptions {
                    min_free_bytes: self.min_free_bytes,
                    cache_bytes: self.cache_bytes,
                    ..JournalOptions::default()
                },
            },
            limits: self.limits,
            pacing: self.pacing,
            capability_limits: self.capability_limits.clone(),
            http: self.http.clone(),
            webhooks: self.webhooks,
            ..EngineConfig::folder(&self.data)
        }
    }
}

/// Reads and checks the configuration file.
fn read(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| {
        let (line, column, line_text) = match e.span() {
            Some(span) => position(&text, span.start),
            None => (0, 0, String::new()),
        };
        ConfigError::Invalid {
            path: path.to_owned(),
            message: e.message().trim_end().to_owned(),
            line,
            column,
            text: line_text,
        }
    })
}

/// The 1-based line and column of byte `offset` in `text`, and that line.
fn position(text: &str, offset: usize) -> (usize, usize, String) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    let line_text = text
        .get(line_start..)
        .and_then(|rest| rest.lines().next())
        .unwrap_or("")
        .to_owned();
    (line, column, line_text)
}

/// `path` as named in the configuration file `config`: absolute paths as
/// they are, relative ones from the file's folder.
fn relative_to(config: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    let folder = config.parent().unwrap_or(Path::new(""));
    // Drops the `.` components joining leaves inside (`conf/./data`).
    let mut joined: PathBuf = folder
        .join(path)
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect();
    if joined.as_os_str().is_empty() {
        joined = PathBuf::from(".");
    }
    joined
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::CommandFactory;

    use super::*;
    use crate::cli::Cli;

    /// Built by hand rather than parsed, so the tests' own environment
    /// (`RETRACE_DATA`, …) cannot change them.
    fn with_file(path: &Path) -> ServeArgs {
        ServeArgs {
            config: Some(path.to_owned()),
            ..ServeArgs::default()
        }
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("retrace.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn defaults_without_any_source() {
        let settings = resolve(ServeArgs::default()).unwrap();
        assert_eq!(settings.data, PathBuf::from(DATA_DEFAULT));
        assert_eq!(settings.listen, LISTEN_DEFAULT);
        assert_eq!(settings.log_format, LogFormat::Human);
        let api = settings.api;
        let default = ApiConfig::default();
        assert_eq!(api.max_body_bytes, default.max_body_bytes);
        assert_eq!(api.page_limit_default, default.page_limit_default);
        assert_eq!(api.page_limit_max, default.page_limit_max);
        assert_eq!(api.poll_wait_ms_default, default.poll_wait_ms_default);
        assert_eq!(api.sse_keep_alive, default.sse_keep_alive);
        assert!(api.cors_origins.is_empty());
        assert_eq!(settings.limits, Limits::default());
        assert_eq!(settings.pacing, Pacing::default());
        assert_eq!(settings.min_free_bytes, MIN_FREE_BYTES_DEFAULT);
        assert_eq!(settings.cache_bytes, CACHE_BYTES_DEFAULT);
    }

    #[test]
    fn the_file_fills_what_the_command_line_leaves_out() {
        let (dir, path) = file(
            "data = \"state\"\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 10\n\
             cors_origins = [\"https://a.example\"]\nlog_format = \"json\"\n\
             page_limit_default = 5\npage_limit_max = 7\npoll_wait_ms_default = 0\n\
             sse_keep_alive_ms = 250\nmax_history_events = 2000\nexecution_events_per_s = 0\n\
             min_free_disk_mb = 3\ncache_mb = 64\n",
        );
        let settings = resolve(ServeArgs {
            page_limit_max: NonZeroUsize::new(9),
            max_history_events: Some(3000),
            ..with_file(&path)
        })
        .unwrap();
        assert_eq!(settings.limits.history_events_max, 3000, "the flag wins");
        assert_eq!(settings.pacing, Pacing::off());
        let engine = settings.engine_config();
        assert_eq!(engine.limits, settings.limits);
        assert_eq!(engine.pacing, settings.pacing);
        assert_eq!(settings.min_free_bytes, 3 << 20);
        assert_eq!(settings.cache_bytes, 64 << 20);
        assert!(matches!(
            engine.storage,
            Storage::Folder { options, .. }
                if options.durable
                    && options.min_free_bytes == 3 << 20
                    && options.cache_bytes == 64 << 20
        ));
        assert_eq!(settings.data, dir.path().join("state"));
        assert_eq!(settings.listen, "127.0.0.1:0");
        assert_eq!(settings.log_format, LogFormat::Json);
        assert_eq!(settings.api.max_body_bytes, 10);
        assert_eq!(settings.api.cors_origins, ["https://a.example"]);
        assert_eq!(settings.api.page_limit_default, 5);
        assert_eq!(settings.api.page_limit_max, 9, "the flag wins");
        assert_eq!(settings.api.poll_wait_ms_default, 0);
        assert_eq!(settings.api.sse_keep_alive, Duration::from_millis(250));
        assert_eq!(settings.config.as_deref(), Some(path.as_path()));
    }

    #[test]
    fn nats_comes_from_the_file_or_the_flags_and_is_checked() {
        assert_eq!(resolve(ServeArgs::default()).unwrap().nats, None);
        let (_dir, path) = file(
            "[nats]\nservers = [\"nats://127.0.0.1:4222\", \"nats://127.0.0.1:4223\"]\nreplicas = 3\n",
        );
        let from_file = resolve(with_file(&path)).unwrap();
        assert_eq!(
            from_file.nats,
            Some(NatsSettings {
                servers: vec![
                    "nats://127.0.0.1:4222".into(),
                    "nats://127.0.0.1:4223".into()
                ],
                prefix: NATS_PREFIX_DEFAULT.into(),
                replicas: 3,
                advertise: None,
                credentials: None,
                tls_ca: None,
            })
        );
        let flags = resolve(ServeArgs {
            nats: Some(vec!["nats://10.0.0.1:4222".into()]),
            nats_prefix: Some("orders".into()),
            ..with_file(&path)
        })
        .unwrap()
        .nats
        .unwrap();
        assert_eq!(flags.servers, ["nats://10.0.0.1:4222"], "the flag wins");
        assert_eq!((flags.prefix.as_str(), flags.replicas), ("orders", 3));
        // A prefix that is not one subject token, or NATS settings without
        // servers, are refused.
        let bad = resolve(ServeArgs {
            nats: Some(vec!["nats://127.0.0.1:4222".into()]),
            nats_prefix: Some("a.b".into()),
            ..ServeArgs::default()
        });
        assert!(matches!(bad, Err(ConfigError::Nats(m)) if m.contains("a.b")));
        let alone = resolve(ServeArgs {
            nats_replicas: NonZeroUsize::new(3),
            ..ServeArgs::default()
        });
        assert!(matches!(alone, Err(ConfigError::Nats(m)) if m.contains("--nats")));
        let advertised = resolve(ServeArgs {
            nats: Some(vec!["nats://127.0.0.1:4222".into()]),
            nats_advertise: Some("http://10.0.0.5:7700/".into()),
            ..ServeArgs::default()
        })
        .unwrap()
        .nats
        .unwrap();
        assert_eq!(
            advertised.advertise.as_deref(),
            Some("http://10.0.0.5:7700")
        );
        let not_a_url = resolve(ServeArgs {
            nats: Some(vec!["nats://127.0.0.1:4222".into()]),
            nats_advertise: Some("10.0.0.5:7700".into()),
            ..ServeArgs::default()
        });
        assert!(matches!(not_a_url, Err(ConfigError::Nats(m)) if m.contains("http://")));
    }

    #[test]
    fn nats_credentials_are_a_user_with_a_password_or_a_token_never_shown() {
        let (_dir, path) = file(
            "[nats]\nservers = [\"nats://127.0.0.1:4222\"]\nuser = \"retrace\"\npassword = \"s3cret\"\n",
        );
        let from_file = resolve(with_file(&path)).unwrap();
        let nats = from_file.nats.as_ref().unwrap();
        assert_eq!(
            nats.credentials,
            Some(NatsCredentials::UserPassword {
                user: "retrace".into(),
                password: "s3cret".into()
            })
        );
        let shown = format!("{from_file:?}");
        assert!(
            shown.contains("retrace") && !shown.contains("s3cret"),
            "{shown}"
        );
        // A flag wins over the file; a token replaces both.
        let flags = resolve(ServeArgs {
            nats_access: NatsAccessArgs {
                nats_password: Some("other".into()),
                ..NatsAccessArgs::default()
            },
            ..with_file(&path)
        })
        .unwrap();
        assert!(matches!(
            flags.nats.unwrap().credentials,
            Some(NatsCredentials::UserPassword { password, .. }) if password == "other"
        ));
        let token = resolve(ServeArgs {
            nats: Some(vec!["nats://127.0.0.1:4222".into()]),
            nats_access: NatsAccessArgs {
                nats_token: Some("t0ken".into()),
                ..NatsAccessArgs::default()
            },
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(
            token.nats.as_ref().unwrap().credentials,
            Some(NatsCredentials::Token("t0ken".into()))
        );
        assert!(!format!("{token:?}").contains("t0ken"));
        // The CA for TLS to NATS: a path in the file is from its folder.
        let (_ca_dir, with_ca) =
            file("[nats]\nservers = [\"nats://127.0.0.1:4222\"]\nca = \"certs/nats-ca.pem\"\n");
        let ca = resolve(with_file(&with_ca)).unwrap().nats.unwrap().tls_ca;
        assert_eq!(
            ca,
            Some(with_ca.parent().unwrap().join("certs/nats-ca.pem"))
        );
        // What does not fit together is refused, saying what is missing.
        for (args, why) in [
            (
                ServeArgs {
                    nats_access: NatsAccessArgs {
                        nats_token: Some("t".into()),
                        ..NatsAccessArgs::default()
                    },
                    ..with_file(&path)
                },
                "not both",
            ),
            (
                ServeArgs {
                    nats: Some(vec!["nats://127.0.0.1:4222".into()]),
                    nats_access: NatsAccessArgs {
                        nats_user: Some("u".into()),
                        ..NatsAccessArgs::default()
                    },
                    ..ServeArgs::default()
                },
                "needs nats_password",
            ),
            (
                ServeArgs {
                    nats_access: NatsAccessArgs {
                        nats_token: Some("t".into()),
                        ..NatsAccessArgs::default()
                    },
                    ..ServeArgs::default()
                },
                "--nats",
            ),
        ] {
            let refused = resolve(args);
            assert!(
                matches!(&refused, Err(ConfigError::Nats(m)) if m.contains(why)),
                "{why}: {refused:?}"
            );
        }
    }

    #[test]
    fn relative_paths_are_from_the_files_folder() {
        assert_eq!(
            relative_to(Path::new("conf/retrace.toml"), Path::new("./data")),
            PathBuf::from("conf/data")
        );
        assert_eq!(
            relative_to(Path::new("retrace.toml"), Path::new("./data")),
            PathBuf::from("data")
        );
        assert_eq!(
            relative_to(Path::new("retrace.toml"), Path::new(".")),
            PathBuf::from(".")
        );
        assert_eq!(
            relative_to(
                Path::new("conf/retrace.toml"),
                Path::new("/var/lib/retrace")
            ),
            PathBuf::from("/var/lib/retrace")
        );
    }

    #[test]
    fn errors_say_where() {
        let (_dir, path) = file("listen = \"127.0.0.1:0\"\n\nmax_body_bytes = \"big\"\n");
        let e = resolve(with_file(&path)).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("line 3, column 18"), "{e}");
        assert!(e.contains("3 | max_body_bytes = \"big\""), "{e}");

        let (_dir, path) = file("sse_keep_alive_ms = 0\n");
        let e = resolve(with_file(&path)).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");

        let (_dir, path) = file("log_format = \"xml\"\n");
        let e = resolve(with_file(&path)).unwrap_err().to_string();
        assert!(e.contains("unknown log format `xml`"), "{e}");

        let (_dir, path) = file("cors_origins = [\"a\\nb\"]\n");
        let e = resolve(with_file(&path)).unwrap_err().to_string();
        assert!(e.contains(r#""a\nb" is not a valid origin"#), "{e}");

        let e = resolve(ServeArgs {
            page_limit_default: NonZeroUsize::new(2000),
            ..ServeArgs::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("page_limit_default (2000)"), "{e}");

        let (_dir, path) = file("max_history_events = 99\n");
        let e = resolve(with_file(&path)).unwrap_err().to_string();
        assert!(e.contains("max_history_events (99) is below 100"), "{e}");

        let (_dir, path) = file("max_history_events = -1\n");
        let e = resolve(with_file(&path)).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn capability_limits_come_from_the_file_checked_whole() {
        let (_dir, path) = file(
            "[capability_limits.\"images.resize\"]\nconcurrency = 4\n\
             rate_limit = { limit = 100, period_ms = 60000 }\n\n\
             [capability_limits.\"billing:charge\"]\nrate_limit = { limit = 1, period_ms = 1 }\n",
        );
        let settings = resolve(with_file(&path)).unwrap();
        let resize = CapabilityLimits {
            concurrency: Some(4),
            rate_limit: Some(CapabilityRate {
                limit: 100,
                period_ms: 60_000,
            }),
        };
        let charge = CapabilityLimits {
            concurrency: None,
            rate_limit: Some(CapabilityRate {
                limit: 1,
                period_ms: 1,
            }),
        };
        assert_eq!(
            settings.capability_limits,
            BTreeMap::from([
                ("billing:charge".to_owned(), charge),
                ("images.resize".to_owned(), resize),
            ])
        );
        assert_eq!(
            settings.engine_config().capability_limits,
            settings.capability_limits
        );
        assert!(
            resolve(ServeArgs::default())
                .unwrap()
                .capability_limits
                .is_empty()
        );

        for (text, says) in [
            (
                "[capability_limits.work]\nconcurrency = 0\n",
                "capability_limits.\"work\": concurrency: must be from 1 to 100000, not 0",
            ),
            (
                "[capability_limits.work]\n",
                "capability_limits.\"work\": give `concurrency`, `rateLimit` or both",
            ),
            (
                "[capability_limits.work]\nrate_limit = { limit = 100001, period_ms = 0 }\n",
                "rateLimit.limit: must be from 1 to 100000, not 100001; \
                 capability_limits.\"work\": rateLimit.periodMs: must be from 1",
            ),
            (
                "[capability_limits.a]\nconcurrency = 0\n[capability_limits.b]\n",
                "capability_limits.\"a\": concurrency: must be from 1 to 100000, not 0; \
                 capability_limits.\"b\": give `concurrency`",
            ),
            (
                "[capability_limits.\"Work\"]\nconcurrency = 1\n",
                "capability_limits.\"Work\": capability `Work` is not well-formed",
            ),
        ] {
            let (_dir, path) = file(text);
            let e = resolve(with_file(&path)).unwrap_err().to_string();
            assert!(e.contains(&path.display().to_string()), "{e}");
            assert!(e.contains(says), "{text}: {e}");
        }
        // Shape problems are the parser's, with their line.
        for (text, says) in [
            (
                "[capability_limits.work]\nconcurrency = 1\nburst = 2\n",
                "unknown field `burst`",
            ),
            (
                "[capability_limits.work]\nconcurrency = -1\n",
                "invalid value",
            ),
            (
                "[capability_limits.work]\nrateLimit = { limit = 1, period_ms = 1 }\n",
                "unknown field `rateLimit`",
            ),
            (
                "[capability_limits.work]\nrate_limit = { limit = 1 }\n",
                "missing field `period_ms`",
            ),
        ] {
            let (_dir, path) = file(text);
            let e = resolve(with_file(&path)).unwrap_err().to_string();
            assert!(e.contains("line "), "{text}: {e}");
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn the_http_settings_and_secrets_come_from_the_file_the_environment_and_flags() {
        let (_dir, path) = file(
            "[http]\nmax_concurrency = 8\nmax_response_bytes = 4096\n\
             allow = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\ndeny = [\"10.9.0.0/16\"]\n\n\
             [secrets]\napi_token = \"from-the-file\"\nOTHER = \"other-value\"\n",
        );
        let vars = [(
            OsString::from("RETRACE_SECRET_API_TOKEN"),
            OsString::from("from-the-environment"),
        )];
        let settings = resolve_with(
            ServeArgs {
                http_max_concurrency: NonZeroUsize::new(2),
                ..with_file(&path)
            },
            vars,
        )
        .unwrap();
        let http = &settings.http;
        assert_eq!(http.max_concurrency, 2, "the flag wins");
        assert_eq!(http.max_response_bytes, 4096);
        assert_eq!(
            http.policy,
            AddressPolicy::parse(
                &["127.0.0.1/32".into(), "10.0.0.0/8".into()],
                &["10.9.0.0/16".into()]
            )
            .unwrap()
        );
        assert_eq!(http.secrets.get("API_TOKEN"), Some("from-the-environment"));
        assert_eq!(http.secrets.get("other"), Some("other-value"));
        assert_eq!(settings.engine_config().http, *http);
        // Names only, wherever the settings are shown.
        let shown = format!("{settings:?}");
        assert!(shown.contains("API_TOKEN"), "{shown}");
        assert!(
            !shown.contains("from-the-") && !shown.contains("other-value"),
            "{shown}"
        );

        let defaults = resolve_with(ServeArgs::default(), []).unwrap().http;
        assert_eq!(defaults, HttpOptions::default());
        assert_eq!(defaults.max_concurrency, MAX_CONCURRENCY_DEFAULT);
        assert_eq!(defaults.max_response_bytes, MAX_RESPONSE_BYTES_DEFAULT);

        let flags = resolve_with(
            ServeArgs {
                http_allow: Some(vec!["192.168.0.0/16".into()]),
                http_deny: Some(vec!["192.168.9.9".into()]),
                http_max_response_bytes: NonZeroU64::new(10),
                ..with_file(&path)
            },
            [],
        )
        .unwrap()
        .http;
        assert_eq!(flags.policy.allowed(), ["192.168.0.0/16".parse().unwrap()]);
        assert_eq!(flags.policy.denied(), ["192.168.9.9/32".parse().unwrap()]);
        assert_eq!(flags.max_response_bytes, 10);
        assert_eq!(flags.secrets.get("api_token"), Some("from-the-file"));
    }

    #[test]
    fn bad_http_settings_and_secrets_stop_the_server_without_showing_a_value() {
        for (text, says) in [
            (
                "[http]\nallow = [\"10.0.0.0/33\", \"localhost\"]\n",
                "http: `10.0.0.0/33` is not an IP address or a CIDR block",
            ),
            ("[http]\nmax_concurrency = 0\n", "line 2"),
            ("[http]\nproxy = \"x\"\n", "unknown field `proxy`"),
            (
                "[secrets]\n\"api-token\" = \"hunter2\"\n",
                "secrets: secret name `api-token` is not well-formed",
            ),
            (
                "[secrets]\ntoken = \"hunter2\"\nTOKEN = \"hunter3\"\n",
                "name one secret (names ignore case)",
            ),
        ] {
            let (_dir, path) = file(text);
            let e = resolve_with(with_file(&path), []).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
            assert!(!e.contains("hunter"), "{text}: {e}");
        }
        let (_dir, path) = file("");
        let vars = [(
            OsString::from("RETRACE_SECRET_BAD-NAME"),
            OsString::from("hunter2"),
        )];
        let e = resolve_with(with_file(&path), vars)
            .unwrap_err()
            .to_string();
        assert!(e.contains("RETRACE_SECRET_BAD-NAME"), "{e}");
        assert!(!e.contains("hunter"), "{e}");
    }

    #[test]
    fn position_counts_lines_and_characters() {
        assert_eq!(position("a\nbé = 1\n", 6), (2, 4, "bé = 1".to_owned()));
        assert_eq!(position("x", 0), (1, 1, "x".to_owned()));
        assert_eq!(position("x\n", 99), (2, 1, String::new()));
    }

    /// The defaults are written in the flags' help by hand (a default in
    /// clap would hide whether a flag was given); this keeps them true.
    #[test]
    fn the_help_states_the_defaults() {
        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("serve")
            .unwrap()
            .render_long_help()
            .to_string();
        for default in [
            format!("Default: {DATA_DEFAULT}"),
            format!("Default: {LISTEN_DEFAULT}"),
            format!("Default: {MAX_BODY_BYTES_DEFAULT}"),
            format!("Default: {PAGE_LIMIT_DEFAULT}"),
            format!("Default: {PAGE_LIMIT_MAX_DEFAULT}"),
            format!("Default: {POLL_WAIT_MS_DEFAULT}"),
            format!("Default: {}", SSE_KEEP_ALIVE_DEFAULT.as_millis()),
            format!("Default: {HISTORY_EVENTS_MAX_DEFAULT}"),
            format!("Default: {}", Pacing::EVENTS_PER_S_DEFAULT),
            format!("Default: {MAX_CONCURRENCY_DEFAULT}"),
            format!("Default: {MAX_RESPONSE_BYTES_DEFAULT}"),
            "Default: human".to_owned(),
        ] {
            assert!(help.contains(&default), "`{default}` in:\n{help}");
        }
    }
}
