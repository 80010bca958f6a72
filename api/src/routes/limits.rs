//! `/v1/capabilities/{capability}/limits` and `/v1/limits`: set, read,
//! list and remove the limits on a capability's tasks across all agents
//! (`concurrency`: claimed at once; `rateLimit`: claimed per period), as
//! set through the API or, where none is, by the server's configuration.
//!
//! Owns the limits body and the limits view. Every problem of the limits
//! as given (the body's shape, a value out of range, neither limit, a
//! capability that is not well-formed) is `422 invalid_limits`, with each
//! problem in `details`, and nothing is recorded. It must never decide
//! whether a task may be claimed, nor whether limits are sound beyond
//! their shape: the engine does.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use retrace_engine::Error as EngineError;
use retrace_engine::limits::{CapabilityLimits, CapabilityRate, LimitsError};
use retrace_engine::model::Problem;
use retrace_engine::runtime::{CapabilityLimitsInfo, LimitsSource};
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

/// The limits on a capability's tasks: what `PUT` takes (at least one of
/// the two; neither may be `null`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// `minProperties: 1` is set by `crate::openapi` (utoipa 5.5 writes its
// `min_properties` as `maxProperties`).
#[schema(as = CapabilityLimits)]
pub struct LimitsBody {
    /// The most tasks of the capability claimed at once, across all
    /// agents: 1 to 100000.
    #[serde(default, deserialize_with = "crate::integer::present")]
    #[schema(minimum = 1, maximum = 100000, format = "uint32", nullable = false)]
    concurrency: Option<u32>,
    /// The most tasks of the capability claimed within any `periodMs`,
    /// across all agents.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    rate_limit: Option<RateBody>,
}

/// An optional field that may be left out but is never `null`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// A rate limit: at most `limit` claims within any `periodMs` (a sliding
/// window).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = CapabilityRate)]
pub struct RateBody {
    /// Claims within the window: 1 to 100000.
    #[serde(deserialize_with = "crate::integer::required")]
    #[schema(minimum = 1, maximum = 100000, format = "uint32")]
    limit: u32,
    /// The window, in milliseconds: 1 to 31622400000 (366 days).
    #[serde(deserialize_with = "crate::integer::required")]
    #[schema(minimum = 1, maximum = 31622400000u64, format = "uint64")]
    period_ms: u64,
}

impl From<CapabilityRate> for RateBody {
    fn from(r: CapabilityRate) -> Self {
        RateBody {
            limit: r.limit,
            period_ms: r.period_ms,
        }
    }
}

/// The limits from a JSON object: every shape problem is an
/// `invalid_limits` naming its field (the engine checks the rest).
fn limits_of(body: Map<String, Value>) -> Result<CapabilityLimits, Error> {
    strict::deserialize::<_, LimitsBody>(Value::Object(body))
        .map(|b| CapabilityLimits {
            concurrency: b.concurrency,
            rate_limit: b.rate_limit.map(|r| CapabilityRate {
                limit: r.limit,
                period_ms: r.period_ms,
            }),
        })
        .map_err(|rejected| {
            Error::InvalidLimits(vec![Problem {
                path: rejected.path,
                message: rejected.error.to_string(),
            }])
        })
}

/// Where the limits in force come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = LimitsSource)]
pub enum SourceView {
    /// Set through the API (`PUT`): they win over the configuration's.
    Api,
    /// The server's configuration (`[capability_limits]`).
    Config,
}

/// A capability's limits in force, and how much of them is in use.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CapabilityLimitsView)]
pub struct LimitsView {
    #[schema(value_type = crate::schemas::Capability)]
    capability: String,
    /// The most tasks claimed at once (absent: no concurrency limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100000, format = "uint32", nullable = false)]
    concurrency: Option<u32>,
    /// The most tasks claimed within any `periodMs` (absent: no rate
    /// limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    rate_limit: Option<RateBody>,
    /// `api` (set with `PUT`) or `config` (the server's configuration, with
    /// none set through the API).
    source: SourceView,
    /// When they were set through the API (absent for `config`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    set_at: Option<String>,
    /// The token that set them (absent for `config`, and without tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    set_by: Option<String>,
    /// Tasks of the capability claimed now, across all agents (after a
    /// restart, also tasks outstanding at the restart that may still run).
    #[schema(format = "uint64")]
    running: u64,
    /// Claims within the rate limit's window now (`0` without one).
    #[schema(format = "uint64")]
    in_window: u64,
    /// Tasks of the capability waiting to be claimed now.
    #[schema(format = "uint64")]
    queued: u64,
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl LimitsView {
    pub fn new(info: &CapabilityLimitsInfo) -> LimitsView {
        let (source, set_at, set_by) = match &info.source {
            LimitsSource::Api { set_at_ms, set_by } => {
                (SourceView::Api, Some(rfc3339(*set_at_ms)), set_by.clone())
            }
            LimitsSource::Config => (SourceView::Config, None, None),
        };
        LimitsView {
            capability: info.capability.clone(),
            concurrency: info.limits.concurrency,
            rate_limit: info.limits.rate_limit.map(RateBody::from),
            source,
            set_at,
            set_by,
            running: count(info.running),
            in_window: count(info.in_window),
            queued: count(info.queued),
        }
    }
}

/// Every capability's limits in force.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CapabilityLimitsList)]
struct ListView {
    /// By capability.
    capabilities: Vec<LimitsView>,
}

/// `PUT /v1/capabilities/{capability}/limits`.
#[utoipa::path(
    put,
    path = "/v1/capabilities/{capability}/limits",
    operation_id = "setCapabilityLimits",
    tag = "limits",
    summary = "Set (or change) the limits on a capability's tasks",
    description = "`concurrency`: the most tasks of the capability claimed at once, \
        across all agents. `rateLimit`: the most claimed within any `periodMs` (a \
        sliding window). At least one of the two. A task over a limit stays queued (it \
        is not failed) until there is room, and its step shows `waiting: {\"for\": \
        \"limit\", \"name\", \"key\", \"limit\", \"inUse\", …}` with the task's own \
        fields. These win over the server's configuration for the capability. Any \
        problem (a field the schema does not name or of the wrong type, a value out of \
        range, neither limit, a capability that is not well-formed) is `422 \
        invalid_limits` with every problem in `details`, and nothing is recorded. \
        Journaled with the token that asked and the `Retrace-Reason` header.",
    params(
        ("capability" = String, Path, min_length = 1, max_length = 128,
            pattern = "^[a-z0-9][a-z0-9_.:-]*$",
            description = "The capability: 1 to 128 characters, `a-z 0-9` first, then \
                also `_ . : -` (another is `422 invalid_limits`)."),
    ),
    request_body = LimitsBody,
    responses(
        (status = 200, description = "The capability's limits as they are now.",
            body = LimitsView),
    ),
)]
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Path(capability): Path<String>,
    Json(body): Json<Map<String, Value>>,
) -> Result<impl IntoResponse, Error> {
    let limits = limits_of(body)?;
    let info = state
        .engine
        .set_capability_limits(&capability, limits, caller.name(), caller.reason())
        .await?;
    tracing::info!(capability = %capability, by = ?caller.name(), "capability limits set");
    Ok(axum::Json(LimitsView::new(&info)))
}

/// `GET /v1/limits`.
#[utoipa::path(
    get,
    path = "/v1/limits",
    operation_id = "listCapabilityLimits",
    tag = "limits",
    summary = "List the limits on capabilities",
    responses(
        (status = 200, description = "Every capability with limits in force (set through \
            the API or by the server's configuration), by capability.", body = ListView),
    ),
)]
pub async fn list(State(state): State<AppState>) -> Result<impl IntoResponse, Error> {
    let capabilities = state
        .engine
        .capability_limits()
        .iter()
        .map(LimitsView::new)
        .collect();
    Ok(axum::Json(ListView { capabilities }))
}

/// `GET /v1/capabilities/{capability}/limits`.
#[utoipa::path(
    get,
    path = "/v1/capabilities/{capability}/limits",
    operation_id = "getCapabilityLimits",
    tag = "limits",
    summary = "Read the limits on a capability's tasks",
    params(
        CapabilityPath,
    ),
    responses(
        (status = 200, description = "The limits in force and how much of them is in use.",
            body = LimitsView),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Path(capability): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let info = state.engine.capability_limit(&capability)?;
    Ok(axum::Json(LimitsView::new(&info)))
}

/// `DELETE /v1/capabilities/{capability}/limits`.
#[utoipa::path(
    delete,
    path = "/v1/capabilities/{capability}/limits",
    operation_id = "deleteCapabilityLimits",
    tag = "limits",
    summary = "Remove the limits set on a capability through the API",
    description = "The server's configuration's limits for the capability, if it has \
        some, are in force again; otherwise the capability has none. `404 \
        unknown_limits` when none were set through the API (the configuration's cannot \
        be removed this way). Journaled with the token that asked and the \
        `Retrace-Reason` header.",
    params(
        CapabilityPath,
    ),
    responses(
        (status = 204, description = "Removed."),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(capability): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let removed = state
        .engine
        .remove_capability_limits(&capability, caller.name(), caller.reason())
        .await;
    if let Err(EngineError::Limits(LimitsError::Unknown(c))) = &removed {
        // Say so when the configuration's are what the caller sees.
        let configured = state
            .engine
            .capability_limit(c)
            .is_ok_and(|info| matches!(info.source, LimitsSource::Config));
        if configured {
            return Err(Error::UnknownLimits(format!(
                "capability `{c}` has no limits set through the API (those of the server's \
                 configuration are not removed this way)"
            )));
        }
    }
    removed?;
    tracing::info!(capability = %capability, by = ?caller.name(), "capability limits removed");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use retrace_engine::model::{LIMIT_MAX, LIMIT_PERIOD_MS_MAX};
    use serde_json::json;

    use super::*;

    #[test]
    fn the_documented_ranges_are_the_engines() {
        // The schema attributes above must be literals.
        assert_eq!(LIMIT_MAX, 100_000);
        assert_eq!(LIMIT_PERIOD_MS_MAX, 31_622_400_000);
    }

    #[test]
    fn a_body_reads_as_the_engines_limits_and_shape_problems_name_their_field() {
        let read = |v: Value| limits_of(v.as_object().unwrap().clone());
        let l = read(json!({"concurrency": 4.0, "rateLimit": {"limit": 100, "periodMs": 6e4}}))
            .unwrap();
        assert_eq!(
            l,
            CapabilityLimits {
                concurrency: Some(4),
                rate_limit: Some(CapabilityRate {
                    limit: 100,
                    period_ms: 60_000,
                }),
            }
        );
        assert_eq!(read(json!({"concurrency": 2})).unwrap().rate_limit, None);
        // Neither, or a limit of 0, is the engine's to refuse.
        assert_eq!(read(json!({})).unwrap(), CapabilityLimits::default());
        assert_eq!(
            read(json!({"concurrency": 0})).unwrap().concurrency,
            Some(0)
        );
        for (bad, path) in [
            (json!({"concurrency": 4, "x": 1}), ""),
            (json!({"concurrency": "4"}), "concurrency"),
            (json!({"concurrency": -1}), "concurrency"),
            (json!({"concurrency": 1.5}), "concurrency"),
            (json!({"concurrency": 4294967296u64}), "concurrency"),
            (json!({"rateLimit": 5}), "rateLimit"),
            (json!({"concurrency": null}), "concurrency"),
            (json!({"concurrency": 1, "rateLimit": null}), "rateLimit"),
            (json!({"rateLimit": [5, 1000]}), "rateLimit"),
            (json!({"rateLimit": {"limit": 5}}), "rateLimit"),
            (
                json!({"rateLimit": {"limit": 5, "periodMs": 1000, "burst": 1}}),
                "rateLimit",
            ),
            (
                json!({"rateLimit": {"limit": null, "periodMs": 1000}}),
                "rateLimit.limit",
            ),
        ] {
            match read(bad.clone()) {
                Err(Error::InvalidLimits(problems)) => {
                    assert_eq!(problems.len(), 1, "{bad}");
                    assert_eq!(problems[0].path, path, "{bad}: {problems:?}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_view_shows_the_source_and_when_set() {
        let info = CapabilityLimitsInfo {
            capability: "images.resize".into(),
            limits: CapabilityLimits {
                concurrency: Some(4),
                rate_limit: None,
            },
            source: LimitsSource::Api {
                set_at_ms: 0,
                set_by: Some("ops".into()),
            },
            running: 1,
            in_window: 0,
            queued: 2,
        };
        let view = serde_json::to_value(LimitsView::new(&info)).unwrap();
        assert_eq!(
            view,
            json!({"capability": "images.resize", "concurrency": 4, "source": "api",
                "setAt": "1970-01-01T00:00:00.000Z", "setBy": "ops",
                "running": 1, "inWindow": 0, "queued": 2})
        );
        let info = CapabilityLimitsInfo {
            source: LimitsSource::Config,
            limits: CapabilityLimits {
                concurrency: None,
                rate_limit: Some(CapabilityRate {
                    limit: 100,
                    period_ms: 60_000,
                }),
            },
            ..info
        };
        let view = serde_json::to_value(LimitsView::new(&info)).unwrap();
        assert_eq!(
            view,
            json!({"capability": "images.resize",
                "rateLimit": {"limit": 100, "periodMs": 60000}, "source": "config",
                "running": 1, "inWindow": 0, "queued": 2})
        );
    }
}
