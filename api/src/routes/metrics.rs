//! `GET /metrics` (the Prometheus text format 0.0.4, or OpenMetrics 1.0 when
//! the client asks for it, through `prometheus-client`) and `GET
//! /v1/metrics` (the same figures as JSON, in the shape of the
//! orchestrator's system and workflow metrics).
//!
//! Owns turning the engine's, the journal's, the agents' and the process's
//! figures into these two views, with the HTTP request histograms that
//! [`crate::http_metrics`] keeps. It must never count engine figures itself (the engine keeps the counters; this only reads a
//! snapshot per request). Every duration is in seconds, as Prometheus
//! expects; the series are listed in `docs/api.md`.

use std::collections::HashSet;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Registry, Unit};
use retrace_engine::agents::AgentStatus;
use retrace_engine::breakers::BreakerState;
use retrace_engine::machine::Status;
use retrace_engine::runtime::metrics::{BUCKET_BOUNDS_MS, Buckets};
use retrace_engine::store::StorageHealth;
use serde_json::{Value, json};

use crate::error::Error;
use crate::state::AppState;

/// The OpenMetrics 1.0 text format, for clients that ask for it.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format 0.0.4: the answer to every other client.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkflowLabel {
    workflow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkflowStatusLabel {
    workflow: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    workflow: String,
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapabilityLabel {
    capability: String,
}

/// A breaker's series: its capability, and the agent's name for an
/// agent's breaker (the label is left out for the capability's own).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct BreakerLabel {
    capability: String,
    agent: Option<String>,
}

impl EncodeLabelSet for BreakerLabel {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        ("capability", self.capability.as_str()).encode(encoder.encode_label())?;
        if let Some(agent) = &self.agent {
            ("agent", agent.as_str()).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabel {
    priority: String,
}

fn counter<
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
>(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> Family<L, Counter> {
    let family = Family::<L, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

fn gauge<
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
>(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> Family<L, Gauge> {
    let family = Family::<L, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

fn float_gauge<
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
>(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> Family<L, Gauge<f64, std::sync::atomic::AtomicU64>> {
    let family = Family::<L, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    registry.register(name, help, family.clone());
    family
}

fn plain_counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    registry.register(name, help, ConstCounter::new(value));
}

fn plain_gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    registry.register(name, help, ConstGauge::new(value));
}

/// A histogram family whose buckets the engine counted (in milliseconds,
/// on [`BUCKET_BOUNDS_MS`]), exposed in seconds.
#[derive(Debug)]
struct EngineHistograms<L> {
    /// Without the unit: `_seconds` is appended.
    name: &'static str,
    help: &'static str,
    series: Vec<(L, Buckets)>,
}

impl<L> EngineHistograms<L> {
    fn new(name: &'static str, help: &'static str) -> Self {
        EngineHistograms {
            name,
            help,
            series: Vec::new(),
        }
    }
}

impl<L: EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static> Collector
    for EngineHistograms<L>
{
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // As the registry does for an empty family: no series, no
        // descriptor.
        if self.series.is_empty() {
            return Ok(());
        }
        let unit = Unit::Seconds;
        let mut family =
            encoder.encode_descriptor(self.name, self.help, Some(&unit), MetricType::Histogram)?;
        for (labels, buckets) in &self.series {
            let bounds = BUCKET_BOUNDS_MS
                .iter()
                .map(|&ms| seconds(ms))
                .chain([f64::INFINITY]);
            let counts: Vec<(f64, u64)> = bounds.zip(buckets.counts.iter().copied()).collect();
            family
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(
                    seconds(buckets.sum_ms),
                    buckets.count(),
                    &counts,
                    None,
                )?;
        }
        Ok(())
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Which text format the client asked for: OpenMetrics when its `Accept`
/// names `application/openmetrics-text` at least as willingly as any other
/// type it accepts, else the Prometheus text format (also with no
/// `Accept` at all).
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    let (mut openmetrics, mut other) = (0f32, 0f32);
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if media == "application/openmetrics-text" {
                openmetrics = openmetrics.max(q);
            } else if media == "text/plain" || media == "*/*" || media == "text/*" {
                other = other.max(q);
            }
        }
    }
    openmetrics > 0.0 && openmetrics >= other
}

/// The Prometheus text format 0.0.4 of an OpenMetrics exposition as
/// `prometheus-client` writes it (counters, gauges and histograms only):
/// without `# UNIT` lines and the `# EOF` marker, and with each counter's
/// `# HELP` and `# TYPE` naming its samples (`…_total`), as 0.0.4 wants.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let (name, rest) = line.strip_prefix(prefix)?.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {rest}"))
        });
        match descriptor {
            Some(renamed) => text.push_str(&renamed),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "getPrometheusMetrics",
    tag = "metrics",
    summary = "Metrics in the Prometheus or OpenMetrics text format",
    description = "Read from the engine's counters at each scrape; counters restart \
        from zero with the process. Durations are in seconds. The Prometheus text \
        format 0.0.4 unless `Accept` asks for `application/openmetrics-text`. The \
        series are listed in `docs/api.md`.",
    params(("Accept" = Option<String>, Header,
        description = "`application/openmetrics-text` for OpenMetrics 1.0; anything \
            else (or nothing) for the Prometheus text format 0.0.4.")),
    responses(
        (status = 200, description = "The text exposition: \
            `text/plain; version=0.0.4; charset=utf-8`, or \
            `application/openmetrics-text; version=1.0.0; charset=utf-8` when asked for.",
            content(
                (String = "text/plain"),
                (String = "application/openmetrics-text"),
            )),
    ),
)]
pub async fn prometheus(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let mut root = Registry::default();
    process::register(&mut root);
    engine_metrics(&state, root.sub_registry_with_prefix("retrace"))?;

    let mut body = String::new();
    encode(&mut body, &root).map_err(|e| Error::Internal(format!("cannot encode metrics: {e}")))?;
    let (content_type, body) = if wants_openmetrics(&headers) {
        (OPENMETRICS, body)
    } else {
        (PROMETHEUS_TEXT, prometheus_text(&body))
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::VARY, "accept"),
        ],
        body,
    )
        .into_response())
}

/// Every `retrace_…` series.
fn engine_metrics(state: &AppState, r: &mut Registry) -> Result<(), Error> {
    let engine = &state.engine;
    let figures = engine.metrics();
    let breakers = engine.breakers()?;

    let executions =
        gauge::<StatusLabel>(r, "executions", "Executions the engine knows, by status");
    let counts = engine.status_counts();
    for status in Status::ALL {
        let n = counts.get(&status).copied().unwrap_or(0);
        executions
            .get_or_create(&StatusLabel {
                status: status.as_str().into(),
            })
            .set(n as i64);
    }
    let started = counter::<WorkflowLabel>(
        r,
        "workflow_executions_started",
        "Executions started, by workflow",
    );
    let ended = counter::<WorkflowStatusLabel>(
        r,
        "workflow_executions_ended",
        "Executions ended, by workflow and final status",
    );
    let mut durations = EngineHistograms::new(
        "execution_duration",
        "Executions from start to end, by workflow and final status.",
    );
    let steps = counter::<StepLabel>(r, "steps", "Steps completed, by workflow and step");
    let step_errors = counter::<StepLabel>(r, "step_errors", "Steps failed, by workflow and step");
    let step_retries =
        counter::<StepLabel>(r, "step_retries", "Retries scheduled, by workflow and step");
    let paced = counter::<WorkflowLabel>(
        r,
        "execution_pacing_waits",
        "Times an execution waited for its event budget, by workflow",
    );
    let history_limit_failures = counter::<WorkflowLabel>(
        r,
        "history_limit_failures",
        "Executions failed for reaching the history limit, by workflow",
    );
    let deadlines_missed = counter::<StepLabel>(
        r,
        "deadlines_missed",
        "Deadlines (deadlineMs) passed before what they cover ended, by workflow and step \
         (step empty: the workflow's own)",
    );
    let mut step_durations = EngineHistograms::new(
        "step_duration",
        "Steps completed, from start to completion (0 for a step that does not wait), \
         by workflow and step.",
    );
    for (workflow, w) in &figures.workflows {
        started
            .get_or_create(&WorkflowLabel {
                workflow: workflow.clone(),
            })
            .inc_by(w.started);
        let label = WorkflowLabel {
            workflow: workflow.clone(),
        };
        if w.paced > 0 {
            paced.get_or_create(&label).inc_by(w.paced);
        }
        if w.history_limit_failures > 0 {
            history_limit_failures
                .get_or_create(&label)
                .inc_by(w.history_limit_failures);
        }
        let own = (w.deadlines_missed > 0).then(|| (String::new(), w.deadlines_missed));
        for (step, n) in own.into_iter().chain(w.step_deadlines_missed.clone()) {
            deadlines_missed
                .get_or_create(&StepLabel {
                    workflow: workflow.clone(),
                    step,
                })
                .inc_by(n);
        }
        for (status, n) in &w.ended {
            ended
                .get_or_create(&WorkflowStatusLabel {
                    workflow: workflow.clone(),
                    status: status.clone(),
                })
                .inc_by(*n);
        }
        for (status, buckets) in &w.durations {
            let label = WorkflowStatusLabel {
                workflow: workflow.clone(),
                status: status.clone(),
            };
            durations.series.push((label, buckets.clone()));
        }
        for (step, s) in &w.steps {
            let label = StepLabel {
                workflow: workflow.clone(),
                step: step.clone(),
            };
            steps.get_or_create(&label).inc_by(s.count);
            step_errors.get_or_create(&label).inc_by(s.errors);
            step_retries.get_or_create(&label).inc_by(s.retries);
            step_durations.series.push((label, s.buckets.clone()));
        }
    }
    r.register_collector(Box::new(durations));
    r.register_collector(Box::new(step_durations));

    let tasks = counter::<CapabilityLabel>(r, "tasks", "Task results recorded, by capability");
    let task_errors =
        counter::<CapabilityLabel>(r, "task_errors", "Task failures recorded, by capability");
    let task_retries =
        counter::<CapabilityLabel>(r, "task_retries", "Task retries scheduled, by capability");
    let mut latency = EngineHistograms::new(
        "task_latency",
        "Task attempts from scheduled to result (queue wait and run time), by capability.",
    );
    for (capability, c) in &figures.capabilities {
        let label = CapabilityLabel {
            capability: capability.clone(),
        };
        tasks.get_or_create(&label).inc_by(c.count);
        task_errors.get_or_create(&label).inc_by(c.errors);
        task_retries.get_or_create(&label).inc_by(c.retries);
        latency.series.push((label, c.buckets.clone()));
    }
    r.register_collector(Box::new(latency));
    let by_capability = |name, help, figures: &std::collections::BTreeMap<String, Buckets>| {
        let mut histograms = EngineHistograms::new(name, help);
        histograms.series = figures
            .iter()
            .map(|(capability, buckets)| {
                let label = CapabilityLabel {
                    capability: capability.clone(),
                };
                (label, buckets.clone())
            })
            .collect();
        Box::new(histograms)
    };
    r.register_collector(by_capability(
        "task_queue_wait",
        "Tasks claimed by agents, from scheduled to claimed, by capability.",
        &figures.queue_wait,
    ));
    let mut by_priority = EngineHistograms::new(
        "task_queue_wait_by_priority",
        "Tasks claimed by agents, from scheduled to claimed, by priority (0 to 9).",
    );
    by_priority.series = figures
        .queue_wait_by_priority
        .iter()
        .map(|(priority, buckets)| {
            let label = PriorityLabel {
                priority: priority.to_string(),
            };
            (label, buckets.clone())
        })
        .collect();
    r.register_collector(Box::new(by_priority));
    r.register_collector(by_capability(
        "task_run",
        "Task results of agents, from claimed to result, by capability.",
        &figures.run_time,
    ));
    let queued = gauge::<CapabilityLabel>(
        r,
        "task_queue_depth",
        "Tasks waiting for an agent, by capability",
    );
    for (capability, n) in engine.agents().queue_sizes() {
        queued
            .get_or_create(&CapabilityLabel { capability })
            .set(n as i64);
    }
    let oldest = float_gauge::<CapabilityLabel>(
        r,
        "task_queue_oldest_age_seconds",
        "How long the longest-waiting queued task has waited, by capability (none queued: absent)",
    );
    let now_ms = engine.clock().now_ms();
    for (capability, at_ms) in engine.agents().oldest_queued() {
        oldest
            .get_or_create(&CapabilityLabel { capability })
            .set(now_ms.saturating_sub(at_ms) as f64 / 1000.0);
    }
    let breaker_state = gauge::<BreakerLabel>(
        r,
        "breaker_state",
        "Where each capability's circuit breaker (with agent: each agent's breaker of it) stands: 0 closed, 1 open, 2 half-open",
    );
    let breaker_opened = counter::<BreakerLabel>(
        r,
        "breaker_opened",
        "Times each capability's circuit breaker (with agent: each agent's breaker of it) has opened, as recorded",
    );
    for b in &breakers {
        let label = BreakerLabel {
            capability: b.capability.clone(),
            agent: None,
        };
        breaker_state
            .get_or_create(&label)
            .set(breaker_state_number(b.state));
        breaker_opened.get_or_create(&label).inc_by(b.opened);
        for a in &b.agents {
            let label = BreakerLabel {
                capability: b.capability.clone(),
                agent: Some(a.agent.clone()),
            };
            breaker_state
                .get_or_create(&label)
                .set(breaker_state_number(a.state));
            breaker_opened.get_or_create(&label).inc_by(a.opened);
        }
    }
    let limits_running = gauge::<CapabilityLabel>(
        r,
        "capability_tasks_running",
        "Tasks claimed now of each capability with limits, across all agents (after a restart, \
         with the tasks outstanding at the restart that may still run)",
    );
    let limits_in_window = gauge::<CapabilityLabel>(
        r,
        "capability_claims_in_window",
        "Claims within the rate limit's window now, of each capability with a rate limit",
    );
    for l in engine.capability_limits() {
        let label = CapabilityLabel {
            capability: l.capability,
        };
        limits_running
            .get_or_create(&label)
            .set(i64::try_from(l.running).unwrap_or(i64::MAX));
        if l.limits.rate_limit.is_some() {
            limits_in_window
                .get_or_create(&label)
                .set(i64::try_from(l.in_window).unwrap_or(i64::MAX));
        }
    }
    let agents = gauge::<StatusLabel>(r, "agents", "Registered agents, by status");
    for info in engine.agents().list() {
        let status = match info.status {
            AgentStatus::Online => "online",
            AgentStatus::Busy => "busy",
            AgentStatus::Offline => "offline",
        };
        agents
            .get_or_create(&StatusLabel {
                status: status.into(),
            })
            .inc();
    }
    // A journal that keeps no group-commit counters (not the sled one)
    // reports zeros.
    let j = engine.journal_stats().unwrap_or_default();
    plain_counter(r, "journal_appends", "Appends committed", j.appends);
    plain_counter(r, "journal_events", "Events committed", j.events);
    plain_counter(r, "journal_groups", "Group commits", j.groups);
    plain_counter(r, "journal_flushes", "Flushes to disk", j.flushes);
    r.register_with_unit(
        "journal_flush",
        "Time spent flushing to disk",
        Unit::Seconds,
        ConstCounter::new(j.flush_nanos as f64 / 1e9),
    );
    plain_counter(
        r,
        "journal_conflicts",
        "Appends refused for a sequence conflict",
        j.conflicts,
    );
    plain_gauge(
        r,
        "journal_writable",
        "1 while the journal takes writes; 0 while its storage refuses them (a full disk, say)",
        i64::from(engine.storage_health() == StorageHealth::Writable),
    );
    plain_gauge(
        r,
        "executions_waiting_for_limit",
        "Executions started and waiting for their workflow's concurrency or rate limit",
        i64::try_from(engine.limit_waiting()).unwrap_or(i64::MAX),
    );
    // Sharing a journal on NATS with other servers only.
    if let Some(partitions) = engine.partitions() {
        let driven = partitions.borrow().len();
        plain_gauge(
            r,
            "partitions_driven",
            "The partitions of the shared journal whose executions this server drives",
            i64::try_from(driven).unwrap_or(i64::MAX),
        );
        plain_gauge(
            r,
            "home",
            "1 while this server is the home (holds partition 0: engine-wide records, agents' tasks)",
            i64::from(engine.drives_partition(0)),
        );
    }
    plain_gauge(
        r,
        "sse_clients",
        "Open Server-Sent Events streams",
        state.sse_clients.count() as i64,
    );
    r.register_with_unit(
        "http_request_duration",
        "HTTP requests, from received to response head, by method, route and status",
        Unit::Seconds,
        state.http_metrics.family(),
    );
    Ok(())
}

/// `retrace_breaker_state`'s value for `state`.
fn breaker_state_number(state: BreakerState) -> i64 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::Open { .. } => 1,
        BreakerState::HalfOpen => 2,
    }
}

/// The `process_*` series of the Prometheus client libraries, read from
/// `/proc/self` at each scrape (Linux only: elsewhere, and for any figure
/// that cannot be read, the series is left out).
mod process {
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;
    use prometheus_client::registry::{Registry, Unit};

    /// The unit of `/proc`'s CPU times and start time: USER_HZ, 100 on
    /// every architecture Linux runs on today (as Prometheus' own procfs
    /// library assumes).
    const TICKS_PER_SECOND: f64 = 100.0;

    pub(super) fn register(r: &mut Registry) {
        let stat = read("/proc/self/stat");
        // The fields after the command name, which is in parentheses and
        // may hold anything, spaces and parentheses included.
        let fields: Vec<&str> = stat
            .as_deref()
            .and_then(|s| s.rsplit_once(')'))
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // `fields[0]` is field 3 of proc(5), `state`.
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            r.register_with_unit(
                "process_cpu",
                "Total user and system CPU time spent",
                Unit::Seconds,
                ConstCounter::new((utime + stime) as f64 / TICKS_PER_SECOND),
            );
        }
        if let Some(kib) = status_kib("VmRSS:") {
            r.register_with_unit(
                "process_resident_memory",
                "Resident memory size",
                Unit::Bytes,
                ConstGauge::new(kib.saturating_mul(1024) as i64),
            );
        }
        if let Some(bytes) = field(23) {
            r.register_with_unit(
                "process_virtual_memory",
                "Virtual memory size",
                Unit::Bytes,
                ConstGauge::new(bytes as i64),
            );
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            r.register(
                "process_open_fds",
                "Open file descriptors",
                ConstGauge::new(entries.count() as i64),
            );
        }
        if let Some(max) = max_open_files() {
            r.register(
                "process_max_fds",
                "The most file descriptors the process may open",
                ConstGauge::new(max as i64),
            );
        }
        if let (Some(started), Some(boot)) = (field(22), boot_time()) {
            r.register_with_unit(
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Unit::Seconds,
                ConstGauge::new(boot as f64 + started as f64 / TICKS_PER_SECOND),
            );
        }
    }

    fn read(path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    /// A `kB` figure of `/proc/self/status`.
    fn status_kib(key: &str) -> Option<u64> {
        read("/proc/self/status")?
            .lines()
            .find_map(|line| line.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The soft limit of open files (`None` when unlimited).
    fn max_open_files() -> Option<u64> {
        read("/proc/self/limits")?
            .lines()
            .find_map(|line| line.strip_prefix("Max open files"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// When the machine booted, in seconds since the Unix epoch.
    fn boot_time() -> Option<u64> {
        read("/proc/stat")?
            .lines()
            .find_map(|line| line.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()
    }
}

/// `GET /v1/metrics`.
#[utoipa::path(
    get,
    path = "/v1/metrics",
    operation_id = "getMetrics",
    tag = "metrics",
    summary = "The same figures as JSON",
    responses(
        (status = 200, description = "System, per-workflow and per-capability figures, \
            and the circuit breakers.",
            body = crate::schemas::EngineMetrics),
    ),
)]
pub async fn json(State(state): State<AppState>) -> Result<Response, Error> {
    let engine = &state.engine;
    let figures = engine.metrics();
    let counts = engine.status_counts();
    let now_ms = engine.clock().now_ms();
    let active = counts
        .iter()
        .filter(|(s, _)| !s.is_terminal())
        .map(|(_, n)| *n)
        .sum::<u64>();
    let (mut tasks, mut task_errors, mut latency_sum) = (0u64, 0u64, 0f64);
    for c in figures.capabilities.values() {
        tasks += c.count;
        task_errors += c.errors;
        latency_sum += c.mean_ms * c.count as f64;
    }
    let agents = engine.agents().list();
    let active_agents = agents
        .iter()
        .filter(|a| !matches!(a.status, AgentStatus::Offline))
        .count();
    let journal = engine.journal_stats().unwrap_or_default();
    let breakers: serde_json::Map<String, Value> = engine
        .breakers()?
        .into_iter()
        .map(|b| {
            let mut figures = json!({
                "state": b.state.as_str(),
                "opened": b.opened,
                "recentFailures": b.recent_failures,
            });
            if b.settings.per_agent {
                let agents: serde_json::Map<String, Value> = b
                    .agents
                    .iter()
                    .map(|a| {
                        let agent = json!({
                            "state": a.state.as_str(),
                            "opened": a.opened,
                            "recentFailures": a.recent_failures,
                        });
                        (a.agent.clone(), agent)
                    })
                    .collect();
                figures["agents"] = Value::Object(agents);
            }
            (b.capability, figures)
        })
        .collect();
    let system = json!({
        "activeWorkflows": active,
        "executionsByStatus": counts.iter().map(|(s, n)| (s.as_str().to_string(), Value::from(*n))).collect::<serde_json::Map<_, _>>(),
        "totalTasksProcessed": tasks,
        "errorRate": if tasks == 0 { 0.0 } else { task_errors as f64 / tasks as f64 },
        "avgTaskLatency": if tasks == 0 { 0.0 } else { latency_sum / tasks as f64 },
        "activeAgents": active_agents,
        "queueSizes": engine.agents().queue_sizes(),
        "queueOldestAgeMs": engine
            .agents()
            .oldest_queued()
            .into_iter()
            .map(|(capability, at_ms)| (capability, now_ms.saturating_sub(at_ms)))
            .collect::<std::collections::BTreeMap<_, _>>(),
        "sseClients": state.sse_clients.count(),
        "journal": {"appends": journal.appends, "events": journal.events, "flushes": journal.flushes},
        "healthStatus": if state.shutdown.is_triggered() || engine.storage_health() != StorageHealth::Writable { "degraded" } else { "healthy" },
    });
    let workflows: serde_json::Map<String, Value> = figures
        .workflows
        .iter()
        .map(|(name, w)| {
            let ended: u64 = w.ended.values().sum();
            let completed = w.ended.get("completed").copied().unwrap_or(0);
            (
                name.clone(),
                json!({
                    "workflowName": name,
                    "totalExecutions": w.started,
                    "activeExecutions": w.started.saturating_sub(ended),
                    "successRate": if ended == 0 { 0.0 } else { completed as f64 / ended as f64 },
                    "errorRate": if ended == 0 { 0.0 } else { (ended - completed) as f64 / ended as f64 },
                    "averageDuration": w.duration.mean_ms,
                    "paced": w.paced,
                    "historyLimitFailures": w.history_limit_failures,
                    "deadlinesMissed": w.deadlines_missed,
                    "stepDeadlinesMissed": w.step_deadlines_missed,
                    "stepMetrics": w.steps.iter().map(|(step, s)| (step.clone(), json!({
                        "count": s.count,
                        "averageDuration": s.mean_ms,
                        "errorRate": if s.count + s.errors == 0 { 0.0 } else { s.errors as f64 / (s.count + s.errors) as f64 },
                        "retryRate": if s.count == 0 { 0.0 } else { s.retries as f64 / s.count as f64 },
                    }))).collect::<serde_json::Map<_, _>>(),
                }),
            )
        })
        .collect();
    Ok(axum::Json(
        json!({"system": system, "workflows": workflows, "capabilities": figures.capabilities,
               "breakers": breakers}),
    )
    .into_response())
}
