//! `/v1/capabilities/{capability}/breaker` and `/v1/breakers`: set, read,
//! list and remove the circuit breakers the engine keeps per capability
//! (or, with `perAgent`, per agent serving it).
//!
//! Owns the settings body and the breaker view (with its agents' breakers).
//! Every problem of the
//! settings as given (the body's shape, a value out of range, a capability
//! that is not well-formed) is `422 invalid_breaker`, with each problem in
//! `details`, and nothing is recorded. It must never decide when a breaker
//! trips or whether settings are sound beyond their shape: the engine does.

use axum::extract::State;
use axum::response::IntoResponse;
use retrace_engine::breakers::{BreakerSettings, BreakerState};
use retrace_engine::model::Problem;
use retrace_engine::runtime::{AgentBreakerInfo, BreakerInfo};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::Error;
use crate::extract::{Json, Path};
use crate::schemas::CapabilityPath;
use crate::state::AppState;
use crate::strict;
use crate::time::rfc3339;

/// How a capability's breaker trips and recovers: what `PUT` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = BreakerSettings)]
pub struct SettingsBody {
    /// Task failures within `windowMs` that open the breaker: 1 to 1000.
    #[serde(deserialize_with = "crate::integer::required")]
    #[schema(minimum = 1, maximum = 1000, format = "uint32")]
    failures: u32,
    /// The window failures are counted in, in milliseconds: 1000 to
    /// 86400000 (a day).
    #[serde(deserialize_with = "crate::integer::required")]
    #[schema(minimum = 1000, maximum = 86400000, format = "uint64")]
    window_ms: u64,
    /// How long an open breaker fails tasks fast before one goes through
    /// as a probe, in milliseconds: 1000 to 86400000 (a day).
    #[serde(deserialize_with = "crate::integer::required")]
    #[schema(minimum = 1000, maximum = 86400000, format = "uint64")]
    cool_down_ms: u64,
    /// One breaker per agent (by name) serving the capability, each with
    /// these settings, instead of one for the capability: an agent whose
    /// breaker is open is given none of the capability's tasks (other
    /// agents take them; nothing fails fast), and after `coolDownMs` it may
    /// take one probe task. Default `false`.
    #[serde(default)]
    #[schema(default = false)]
    per_agent: bool,
}

/// The settings from a JSON object: every shape problem is an
/// `invalid_breaker` naming its field (the engine checks the rest).
fn settings_of(body: Map<String, Value>) -> Result<BreakerSettings, Error> {
    strict::deserialize::<_, SettingsBody>(Value::Object(body))
        .map(|b| BreakerSettings {
            failures: b.failures,
            window_ms: b.window_ms,
            cool_down_ms: b.cool_down_ms,
            per_agent: b.per_agent,
        })
        .map_err(|rejected| {
            Error::InvalidBreaker(vec![Problem {
                path: rejected.path,
                message: rejected.error.to_string(),
            }])
        })
}

/// Where a breaker stands: `closed` (tasks go to agents), `open` (tasks
/// fail fast with `circuit_open`; an agent's: the agent is given none) or
/// `half_open` (one probe task went through; the others fail fast, or go
/// to other agents, until it ends).
/// A capability's circuit breaker: its settings and where it stands.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Breaker)]
pub struct BreakerView {
    #[schema(value_type = crate::schemas::Capability)]
    capability: String,
    #[schema(minimum = 1, maximum = 1000, format = "uint32")]
    failures: u32,
    #[schema(minimum = 1000, maximum = 86400000, format = "uint64")]
    window_ms: u64,
    #[schema(minimum = 1000, maximum = 86400000, format = "uint64")]
    cool_down_ms: u64,
    /// One breaker per agent instead of one for the capability.
    per_agent: bool,
    /// The capability's own breaker (with `perAgent`, it stays `closed`).
    #[schema(value_type = crate::schemas::BreakerStateSchema)]
    state: &'static str,
    /// While `open`: since when.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    opened_at: Option<String>,
    /// When its state last changed (when it was first set, at first).
    #[schema(format = DateTime)]
    changed_at: String,
    /// When its settings were last set.
    #[schema(format = DateTime)]
    set_at: String,
    /// The token that last set them (absent without tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    set_by: Option<String>,
    /// Task failures within the window now, counted in memory since the
    /// server started.
    #[schema(format = "uint64")]
    recent_failures: u64,
    /// How many times it has opened, as recorded (a failed probe included).
    #[schema(format = "uint64")]
    opened: u64,
    /// With `perAgent`: each agent's breaker, by agent name (an agent has
    /// one from its first failure of the capability on). Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    agents: Option<Vec<AgentBreakerView>>,
}

/// One agent's breaker of a capability with `perAgent` breakers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AgentBreaker)]
pub struct AgentBreakerView {
    /// The agent's name (every registration under that name shares it).
    name: String,
    #[schema(value_type = crate::schemas::BreakerStateSchema)]
    state: &'static str,
    /// While `open`: since when.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    opened_at: Option<String>,
    /// When its state last changed (when it was made, at first).
    #[schema(format = DateTime)]
    changed_at: String,
    /// Failures of this agent's tasks within the window now, counted in
    /// memory since the server started.
    #[schema(format = "uint64")]
    recent_failures: u64,
    /// How many times it has opened, as recorded (a failed probe included).
    #[schema(format = "uint64")]
    opened: u64,
}

/// `Some(since)` while `state` is open.
fn opened_at(state: BreakerState) -> Option<String> {
    match state {
        BreakerState::Open { since_ms } => Some(rfc3339(since_ms)),
        BreakerState::Closed | BreakerState::HalfOpen => None,
    }
}

impl AgentBreakerView {
    fn new(a: &AgentBreakerInfo) -> AgentBreakerView {
        AgentBreakerView {
            name: a.agent.clone(),
            state: a.state.as_str(),
            opened_at: opened_at(a.state),
            changed_at: rfc3339(a.changed_at_ms),
            recent_failures: u64::try_from(a.recent_failures).unwrap_or(u64::MAX),
            opened: a.opened,
        }
    }
}

impl BreakerView {
    pub fn new(b: &BreakerInfo) -> BreakerView {
        BreakerView {
            capability: b.capability.clone(),
            failures: b.settings.failures,
            window_ms: b.settings.window_ms,
            cool_down_ms: b.settings.cool_down_ms,
            per_agent: b.settings.per_agent,
            state: b.state.as_str(),
            opened_at: opened_at(b.state),
            changed_at: rfc3339(b.changed_at_ms),
            set_at: rfc3339(b.set_at_ms),
            set_by: b.set_by.clone(),
            recent_failures: u64::try_from(b.recent_failures).unwrap_or(u64::MAX),
            opened: b.opened,
            agents: b
                .settings
                .per_agent
                .then(|| b.agents.iter().map(AgentBreakerView::new).collect()),
        }
    }
}

/// Every breaker.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = BreakerList)]
struct ListView {
    /// By capability.
    breakers: Vec<BreakerView>,
}

/// `PUT /v1/capabilities/{capability}/breaker`.
#[utoipa::path(
    put,
    path = "/v1/capabilities/{capability}/breaker",
    operation_id = "setBreaker",
    tag = "breakers",
    summary = "Set (or change) a capability's circuit breaker",
    description = "After `failures` task failures of the capability within `windowMs` \
        (any error type but `circuit_open`, timeouts included), the breaker opens: every \
        task of the capability handed out then fails at once with a recorded \
        `task_failed` of error type `circuit_open`, retryable (retry policies, `onError` \
        and error handlers treat it as any error; no agent is asked). After \
        `coolDownMs` the next task goes through as the one probe (`half_open`; the \
        others still fail fast): its success closes the breaker, its failure opens it \
        again. New settings keep the state the breaker is in. With `perAgent: true`, \
        each agent (by name) serving the capability has its own breaker with these \
        settings instead: its failures open it, and while it is open the agent is given \
        none of the capability's tasks (other agents take them; nothing fails fast); \
        after `coolDownMs` the agent may take one probe task, whose success closes its \
        breaker and whose failure opens it again. Switching `perAgent` starts over from \
        closed, with no agent's breaker. Any problem (a field the \
        schema does not name or of the wrong type, a value out of range, a capability \
        that is not well-formed) is `422 invalid_breaker` with every problem in \
        `details`, and nothing is recorded. Journaled with the token that asked and the \
        `Retrace-Reason` header.",
    params(
        ("capability" = String, Path, min_length = 1, max_length = 128,
            pattern = "^[a-z0-9][a-z0-9_.:-]*$",
            description = "The capability: 1 to 128 characters, `a-z 0-9` first, then \
                also `_ . : -` (another is `422 invalid_breaker`)."),
    ),
    request_body = SettingsBody,
    responses(
        (status = 200, description = "The breaker as it is now.", body = BreakerView),
    ),
)]
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Path(capability): Path<String>,
    Json(body): Json<Map<String, Value>>,
) -> Result<impl IntoResponse, Error> {
    let settings = settings_of(body)?;
    let breaker = state
        .engine
        .set_breaker(&capability, settings, caller.name(), caller.reason())
        .await?;
    tracing::info!(capability = %capability, by = ?caller.name(), "circuit breaker set");
    Ok(axum::Json(BreakerView::new(&breaker)))
}

/// `GET /v1/breakers`.
#[utoipa::path(
    get,
    path = "/v1/breakers",
    operation_id = "listBreakers",
    tag = "breakers",
    summary = "List circuit breakers",
    responses(
        (status = 200, description = "Every breaker, by capability.", body = ListView),
    ),
)]
pub async fn list(State(state): State<AppState>) -> Result<impl IntoResponse, Error> {
    let breakers = state
        .engine
        .breakers()?
        .iter()
        .map(BreakerView::new)
        .collect();
    Ok(axum::Json(ListView { breakers }))
}

/// `GET /v1/capabilities/{capability}/breaker`.
#[utoipa::path(
    get,
    path = "/v1/capabilities/{capability}/breaker",
    operation_id = "getBreaker",
    tag = "breakers",
    summary = "Read a capability's circuit breaker",
    params(
        CapabilityPath,
    ),
    responses(
        (status = 200, description = "The breaker: its settings and where it stands.",
            body = BreakerView),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Path(capability): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let breaker = state.engine.breaker(&capability)?;
    Ok(axum::Json(BreakerView::new(&breaker)))
}

/// `DELETE /v1/capabilities/{capability}/breaker`.
#[utoipa::path(
    delete,
    path = "/v1/capabilities/{capability}/breaker",
    operation_id = "deleteBreaker",
    tag = "breakers",
    summary = "Remove a capability's circuit breaker",
    description = "The capability's tasks go to agents again, whatever the breaker said. \
        Journaled with the token that asked and the `Retrace-Reason` header.",
    params(
        CapabilityPath,
    ),
    responses(
        (status = 200, description = "Removed: the breaker as it was.", body = BreakerView),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(capability): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let breaker = state
        .engine
        .remove_breaker(&capability, caller.name(), caller.reason())
        .await?;
    tracing::info!(capability = %capability, by = ?caller.name(), "circuit breaker removed");
    Ok(axum::Json(BreakerView::new(&breaker)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn the_documented_ranges_are_the_engines() {
        // The schema attributes above must be literals.
        assert_eq!(BreakerSettings::FAILURES_MAX, 1000);
        assert_eq!(BreakerSettings::MS_MIN, 1000);
        assert_eq!(BreakerSettings::MS_MAX, 86_400_000);
    }

    #[test]
    fn a_body_reads_as_the_engines_settings_and_shape_problems_name_their_field() {
        let read = |v: Value| settings_of(v.as_object().unwrap().clone());
        let s = read(json!({"failures": 5.0, "windowMs": 60000, "coolDownMs": 3e4})).unwrap();
        assert_eq!(
            s,
            BreakerSettings {
                failures: 5,
                window_ms: 60_000,
                cool_down_ms: 30_000,
                per_agent: false,
            }
        );
        let s =
            read(json!({"failures": 5, "windowMs": 60000, "coolDownMs": 3e4, "perAgent": true}))
                .unwrap();
        assert!(s.per_agent);
        for (bad, path) in [
            (json!({"failures": 5, "windowMs": 60000}), ""),
            (
                json!({"failures": 5, "windowMs": 60000, "coolDownMs": 1, "x": 1}),
                "",
            ),
            (
                json!({"failures": "5", "windowMs": 60000, "coolDownMs": 1000}),
                "failures",
            ),
            (
                json!({"failures": 5, "windowMs": -1, "coolDownMs": 1000}),
                "windowMs",
            ),
            (
                json!({"failures": 4294967296u64, "windowMs": 1000, "coolDownMs": 1000}),
                "failures",
            ),
            (
                json!({"failures": 5, "windowMs": 1000, "coolDownMs": null}),
                "coolDownMs",
            ),
            (
                json!({"failures": 5, "windowMs": 1000, "coolDownMs": 1000, "perAgent": 1}),
                "perAgent",
            ),
            (
                json!({"failures": 5, "windowMs": 1000, "coolDownMs": 1000, "perAgent": null}),
                "perAgent",
            ),
        ] {
            match read(bad.clone()) {
                Err(Error::InvalidBreaker(problems)) => {
                    assert_eq!(problems.len(), 1, "{bad}");
                    assert_eq!(problems[0].path, path, "{bad}: {problems:?}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
