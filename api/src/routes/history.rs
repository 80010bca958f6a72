//! `/v1/executions/{id}/replay` and `/v1/executions/{id}/verify`: one
//! execution's history replayed to any of its events (time travel), and its
//! hash chain checked.
//!
//! Owns the shapes of these two answers. It must never fold or check
//! anything itself: the engine's read side does both, from the journal.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::Error;
use crate::extract::{Path, Query, execution_id};
use crate::schemas;
use crate::state::AppState;
use crate::views::ExecutionView;
use retrace_engine::machine::StepProgress;

/// Where to stop replaying (unknown parameters are refused).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReplayQuery {
    /// The last event to fold (its `seq`, from 1); past the last event, or
    /// left out, the last event.
    #[param(minimum = 1, maximum = 18446744073709551615u64, format = "uint64")]
    until: Option<u64>,
}

/// An execution as it stood after one of its events.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Replay)]
struct ReplayView {
    /// The last event folded.
    #[schema(format = "uint64")]
    until: u64,
    /// The execution as `GET /v1/executions/{id}` would have shown it
    /// then (`metrics.duration` up to that event's time).
    execution: ExecutionView,
    /// Each step entered by then, by id; a step not listed was not reached.
    #[schema(value_type = BTreeMap<String, schemas::StepProgress>)]
    steps: BTreeMap<String, StepProgress>,
}

/// `GET /v1/executions/{id}/replay?until=<seq>`.
#[utoipa::path(
    get,
    path = "/v1/executions/{id}/replay",
    operation_id = "replayExecution",
    tag = "executions",
    summary = "Replay an execution to one of its events",
    description = "Folds the execution's events from the first through `until` (no \
        snapshot is used), exactly as `retrace replay --until` does, and answers the \
        execution as it stood then with where each step stood: time travel.",
    params(
        ("id" = String, Path, format = "uuid", description = "The execution's id."),
        ReplayQuery,
    ),
    responses(
        (status = 200, description = "The execution after event `until`.", body = ReplayView),
    ),
)]
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ReplayQuery>,
) -> Result<impl IntoResponse, Error> {
    let id = execution_id(&id)?;
    if query.until == Some(0) {
        return Err(Error::InvalidQuery(
            "until must be at least 1 (the first event's seq)".into(),
        ));
    }
    let replayed = state
        .engine
        .read()
        .replay(id, query.until.unwrap_or(u64::MAX))
        .await?
        .ok_or_else(|| Error::UnknownExecution(id.to_string()))?;
    let at_ms = replayed
        .state
        .ended_at_ms
        .unwrap_or(replayed.at_ms)
        .max(replayed.state.started_at_ms);
    Ok(axum::Json(ReplayView {
        until: replayed.state.seq,
        execution: ExecutionView::new(&replayed.state, at_ms),
        steps: replayed.steps,
    }))
}

/// What checking an execution's chain found.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ChainCheck)]
struct ChainView {
    /// Every event read back, linked to the one before by its hash, and
    /// decoded.
    verified: bool,
    /// How many events the execution has.
    #[schema(format = "uint64")]
    events: u64,
    /// How many of them, from the first, were read back intact.
    #[schema(format = "uint64")]
    intact: u64,
    /// The first defect, and where it is; `null` when verified.
    #[schema(required = true)]
    problem: Option<String>,
}

/// `GET /v1/executions/{id}/verify`.
#[utoipa::path(
    get,
    path = "/v1/executions/{id}/verify",
    operation_id = "verifyExecution",
    tag = "executions",
    summary = "Check an execution's hash chain",
    description = "Reads every event of the execution back, checks each against the \
        hash of the one before (the chain), and decodes it. A broken chain is an \
        answer (`verified: false`, with where), not an error. `retrace verify` checks \
        a whole stopped data folder, indexes included.",
    params(("id" = String, Path, format = "uuid", description = "The execution's id.")),
    responses(
        (status = 200, description = "What the check found.", body = ChainView),
    ),
)]
pub async fn verify(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let id = execution_id(&id)?;
    let check = state.engine.read().check_chain(id).await?;
    Ok(axum::Json(ChainView {
        verified: check.problem.is_none(),
        events: check.events,
        intact: check.intact,
        problem: check.problem,
    }))
}
