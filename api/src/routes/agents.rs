//! `/v1/agents`: register, list, read, unregister and heartbeat agents.
//!
//! Owns the registration body. It must never judge a registration (the
//! engine's registry does) nor persist one: registrations live in the
//! engine's memory, so after a restart agents get `404 unknown_agent` and
//! register again.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::extract::{Json, OptionalJson, Path, agent_id};
use crate::routes::commands::NoBody;
use crate::state::AppState;
use crate::views::AgentView;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterBody {
    name: String,
    capabilities: Vec<String>,
    max_concurrency: Option<u32>,
}

#[derive(Debug, Serialize)]
struct Registered {
    id: String,
}

/// `POST /v1/agents` → `201 {"id"}`.
pub async fn register(
    State(state): State<AppState>,
    Json(body): Json<RegisterBody>,
) -> Result<impl IntoResponse, Error> {
    let id =
        state
            .engine
            .agents()
            .register(&body.name, &body.capabilities, body.max_concurrency)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Registered { id: id.to_string() }),
    ))
}

#[derive(Debug, Serialize)]
struct AgentsView {
    agents: Vec<AgentView>,
}

/// `GET /v1/agents`, in registration order.
pub async fn list(State(state): State<AppState>) -> impl IntoResponse {
    let agents = state
        .engine
        .agents()
        .list()
        .into_iter()
        .map(AgentView::from)
        .collect();
    axum::Json(AgentsView { agents })
}

/// `GET /v1/agents/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let agent = agent_id(&id)?;
    let info = state
        .engine
        .agents()
        .get(&agent)
        .ok_or(Error::UnknownAgent(id))?;
    Ok(axum::Json(AgentView::from(info)))
}

#[derive(Debug, Serialize)]
struct Unregistered {
    id: String,
    /// Tasks it held, back in their queues for another agent.
    requeued: Vec<String>,
}

/// `DELETE /v1/agents/{id}`: the tasks it held go back to their queues.
pub async fn unregister(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let agent = agent_id(&id)?;
    let requeued = state.engine.agents().unregister(&agent)?;
    Ok(axum::Json(Unregistered { id, requeued }))
}

/// `POST /v1/agents/{id}/heartbeat`: the agent is alive; answers with what
/// the registry now shows about it.
pub async fn heartbeat(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Result<impl IntoResponse, Error> {
    let agent = agent_id(&id)?;
    state.engine.agents().heartbeat(&agent)?;
    let info = state
        .engine
        .agents()
        .get(&agent)
        .ok_or(Error::UnknownAgent(id))?;
    Ok(axum::Json(AgentView::from(info)))
}
