//! `GET /metrics` (Prometheus text format, through `prometheus-client`) and
//! `GET /v1/metrics` (the same figures as JSON, in the shape of the
//! orchestrator's system and workflow metrics).
//!
//! Owns turning the engine's, the journal's and the agents' figures into
//! these two views. It must never count anything itself (the engine keeps
//! the counters; this only reads a snapshot per request).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use retrace_engine::agents::AgentStatus;
use retrace_engine::machine::Status;
use serde_json::{Value, json};

use crate::error::Error;
use crate::state::AppState;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabel {
    capability: String,
    quantile: String,
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

fn plain_counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn plain_gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g = Gauge::<i64>::default();
    g.set(value);
    registry.register(name, help, g);
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "getPrometheusMetrics",
    tag = "metrics",
    summary = "Metrics in the Prometheus / OpenMetrics text format",
    description = "Read from the engine's counters at each scrape; counters restart \
        from zero with the process. The series are listed in `docs/api.md`.",
    responses(
        (status = 200, description = "The OpenMetrics text exposition \
            (`application/openmetrics-text; version=1.0.0; charset=utf-8`).",
            content_type = "application/openmetrics-text", body = String),
    ),
)]
pub async fn prometheus(State(state): State<AppState>) -> Result<Response, Error> {
    let engine = &state.engine;
    let figures = engine.metrics();
    let mut r = Registry::with_prefix("retrace");

    let executions = gauge::<StatusLabel>(
        &mut r,
        "executions",
        "Executions the engine knows, by status",
    );
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
        &mut r,
        "workflow_executions_started",
        "Executions started, by workflow",
    );
    let ended = counter::<WorkflowStatusLabel>(
        &mut r,
        "workflow_executions_ended",
        "Executions ended, by workflow and final status",
    );
    let steps = counter::<StepLabel>(&mut r, "steps", "Steps completed, by workflow and step");
    let step_errors =
        counter::<StepLabel>(&mut r, "step_errors", "Steps failed, by workflow and step");
    let step_retries = counter::<StepLabel>(
        &mut r,
        "step_retries",
        "Retries scheduled, by workflow and step",
    );
    for (workflow, w) in &figures.workflows {
        started
            .get_or_create(&WorkflowLabel {
                workflow: workflow.clone(),
            })
            .inc_by(w.started);
        for (status, n) in &w.ended {
            ended
                .get_or_create(&WorkflowStatusLabel {
                    workflow: workflow.clone(),
                    status: status.clone(),
                })
                .inc_by(*n);
        }
        for (step, s) in &w.steps {
            let label = StepLabel {
                workflow: workflow.clone(),
                step: step.clone(),
            };
            steps.get_or_create(&label).inc_by(s.count);
            step_errors.get_or_create(&label).inc_by(s.errors);
            step_retries.get_or_create(&label).inc_by(s.retries);
        }
    }
    let tasks = counter::<CapabilityLabel>(&mut r, "tasks", "Task results recorded, by capability");
    let task_errors = counter::<CapabilityLabel>(
        &mut r,
        "task_errors",
        "Task failures recorded, by capability",
    );
    let task_retries = counter::<CapabilityLabel>(
        &mut r,
        "task_retries",
        "Task retries scheduled, by capability",
    );
    let latency = gauge::<QuantileLabel>(
        &mut r,
        "task_latency_ms",
        "Task round trip (scheduled to result) in ms, by capability and quantile",
    );
    for (capability, c) in &figures.capabilities {
        let label = CapabilityLabel {
            capability: capability.clone(),
        };
        tasks.get_or_create(&label).inc_by(c.count);
        task_errors.get_or_create(&label).inc_by(c.errors);
        task_retries.get_or_create(&label).inc_by(c.retries);
        for (q, v) in [("0.5", c.p50_ms), ("0.99", c.p99_ms)] {
            latency
                .get_or_create(&QuantileLabel {
                    capability: capability.clone(),
                    quantile: q.into(),
                })
                .set(v as i64);
        }
    }
    let queued = gauge::<CapabilityLabel>(
        &mut r,
        "task_queue_depth",
        "Tasks waiting for an agent, by capability",
    );
    for (capability, n) in engine.agents().queue_sizes() {
        queued
            .get_or_create(&CapabilityLabel { capability })
            .set(n as i64);
    }
    let agents = gauge::<StatusLabel>(&mut r, "agents", "Registered agents, by status");
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
    plain_counter(&mut r, "journal_appends", "Appends committed", j.appends);
    plain_counter(&mut r, "journal_events", "Events committed", j.events);
    plain_counter(&mut r, "journal_groups", "Group commits", j.groups);
    plain_counter(&mut r, "journal_flushes", "Flushes to disk", j.flushes);
    plain_counter(
        &mut r,
        "journal_flush_microseconds",
        "Time spent flushing, in microseconds",
        j.flush_nanos / 1000,
    );
    plain_counter(
        &mut r,
        "journal_conflicts",
        "Appends refused for a sequence conflict",
        j.conflicts,
    );
    plain_gauge(
        &mut r,
        "sse_clients",
        "Open Server-Sent Events streams",
        state.sse_clients.count() as i64,
    );

    let mut body = String::new();
    encode(&mut body, &r).map_err(|e| Error::Internal(format!("cannot encode metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// `GET /v1/metrics`.
#[utoipa::path(
    get,
    path = "/v1/metrics",
    operation_id = "getMetrics",
    tag = "metrics",
    summary = "The same figures as JSON",
    responses(
        (status = 200, description = "System, per-workflow and per-capability figures.",
            body = crate::schemas::EngineMetrics),
    ),
)]
pub async fn json(State(state): State<AppState>) -> Result<Response, Error> {
    let engine = &state.engine;
    let figures = engine.metrics();
    let counts = engine.status_counts();
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
    let system = json!({
        "activeWorkflows": active,
        "executionsByStatus": counts.iter().map(|(s, n)| (s.as_str().to_string(), Value::from(*n))).collect::<serde_json::Map<_, _>>(),
        "totalTasksProcessed": tasks,
        "errorRate": if tasks == 0 { 0.0 } else { task_errors as f64 / tasks as f64 },
        "avgTaskLatency": if tasks == 0 { 0.0 } else { latency_sum / tasks as f64 },
        "activeAgents": active_agents,
        "queueSizes": engine.agents().queue_sizes(),
        "sseClients": state.sse_clients.count(),
        "journal": {"appends": journal.appends, "events": journal.events, "flushes": journal.flushes},
        "healthStatus": if state.shutdown.is_triggered() { "degraded" } else { "healthy" },
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
        json!({"system": system, "workflows": workflows, "capabilities": figures.capabilities}),
    )
    .into_response())
}
