//! `/v1/agents`: register, list, read, unregister and heartbeat agents.
//!
//! Owns the registration body, and whose agent is whose: with tokens, an
//! agent belongs to the token it registered with, and only that token
//! polls for it, heartbeats it and reports its tasks (an agent token also
//! registers only the capabilities it allows). It must never judge a
//! registration otherwise (the engine's registry does) nor persist one: registrations live in the
//! engine's memory, so after a restart agents get `404 unknown_agent` and
//! register again.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use retrace_engine::agents::{AgentId, AgentTraits};
use retrace_engine::store::tokens::Role;

use crate::auth::Caller;
use crate::error::Error;
use crate::extract::{Json, OptionalJson, Path, agent_id};
use crate::routes::commands::NoBody;
use crate::state::AppState;
use crate::views::AgentView;

/// An agent's registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = RegisterAgent)]
pub struct RegisterBody {
    /// 1 to 128 characters, none of them a control character (Unicode
    /// `Cc`) or a bidirectional formatting character (U+061C, U+200E,
    /// U+200F, U+202A to U+202E, U+2066 to U+2069).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u061C\\u200E\\u200F\\u202A-\\u202E\\u2066-\\u2069]*$"
    )]
    name: String,
    /// The capabilities it offers: 1 to 100 (duplicates are dropped), each
    /// 1 to 128 characters, `a-z 0-9` first, then also `_ . : -`.
    #[schema(min_items = 1, max_items = 100, value_type = Vec<crate::schemas::Capability>)]
    capabilities: Vec<String>,
    /// How many tasks it holds at once: 1 to 10000, default 10.
    #[serde(default, deserialize_with = "crate::integer::optional")]
    #[schema(minimum = 1, maximum = 10000, format = "uint32")]
    max_concurrency: Option<u32>,
    /// Its version, a semantic version (`2.1.0`, `3.0.0-rc.1`): a task step
    /// with an `agentVersion` range goes only to agents inside it.
    #[serde(default)]
    #[schema(
        max_length = 256,
        pattern = "^(0|[1-9][0-9]{0,17})\\.(0|[1-9][0-9]{0,17})\\.(0|[1-9][0-9]{0,17})(-((0|[1-9][0-9]{0,17}|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(\\.(0|[1-9][0-9]{0,17}|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?(\\+[0-9a-zA-Z-]+(\\.[0-9a-zA-Z-]+)*)?$"
    )]
    version: Option<String>,
    /// How long it may stay silent (no poll, no heartbeat) before it is
    /// shown `offline`: 1000 to 3600000 ms; the server's default (30000)
    /// when left out.
    #[serde(default, deserialize_with = "crate::integer::optional")]
    #[schema(minimum = 1000, maximum = 3600000, format = "uint64")]
    heartbeat_timeout_ms: Option<u64>,
}

/// A registration's id.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RegisteredAgent)]
struct Registered {
    /// The agent's id: name it in polls and heartbeats.
    #[schema(format = "uuid")]
    id: String,
}

/// `POST /v1/agents` → `201 {"id"}`.
#[utoipa::path(
    post,
    path = "/v1/agents",
    operation_id = "registerAgent",
    tag = "agents",
    summary = "Register an agent",
    description = "Registrations live in the server's memory and do not survive a \
        restart: after one, every agent id is unknown (`404 unknown_agent`) and the \
        agent registers again.",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "Registered.", body = Registered),
    ),
)]
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<RegisterBody>,
) -> Result<impl IntoResponse, Error> {
    if let Some(token) = &caller.token
        && let Some(allowed) = &token.capabilities
        && let Some(other) = body.capabilities.iter().find(|c| !allowed.contains(c))
    {
        return Err(Error::Forbidden(format!(
            "the token `{}` allows the capabilities {}, not `{other}`",
            token.name,
            allowed.join(", ")
        )));
    }
    let traits = AgentTraits {
        version: body.version,
        heartbeat_timeout_ms: body.heartbeat_timeout_ms,
    };
    let id = state.engine.agents().register_as(
        &body.name,
        &body.capabilities,
        body.max_concurrency,
        caller.name(),
        &traits,
    )?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Registered { id: id.to_string() }),
    ))
}

/// Every registered agent.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AgentList)]
struct AgentsView {
    /// In registration order.
    agents: Vec<AgentView>,
}

/// `GET /v1/agents`, in registration order.
#[utoipa::path(
    get,
    path = "/v1/agents",
    operation_id = "listAgents",
    tag = "agents",
    summary = "List registered agents",
    responses(
        (status = 200, description = "Every registered agent, in registration order.", body = AgentsView),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/v1/agents/{id}",
    operation_id = "getAgent",
    tag = "agents",
    summary = "Read one agent",
    params(("id" = String, Path, format = "uuid", description = "The agent's id, as registering answered it.")),
    responses(
        (status = 200, description = "The agent as the registry shows it.", body = AgentView),
    ),
)]
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

/// An agent unregistered.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UnregisteredAgent)]
struct Unregistered {
    #[schema(format = "uuid")]
    id: String,
    /// Tasks it held, back in their queues for another agent.
    requeued: Vec<String>,
}

/// `DELETE /v1/agents/{id}`: the tasks it held go back to their queues.
#[utoipa::path(
    delete,
    path = "/v1/agents/{id}",
    operation_id = "unregisterAgent",
    tag = "agents",
    summary = "Unregister an agent",
    description = "The tasks it held go back to the front of their queues.",
    params(("id" = String, Path, format = "uuid", description = "The agent's id, as registering answered it.")),
    responses(
        (status = 200, description = "Unregistered; the ids of the tasks it held.", body = Unregistered),
    ),
)]
pub async fn unregister(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let agent = agent_id(&id)?;
    // An admin may remove any agent; an agent token only its own.
    if caller.role() != Some(Role::Admin) {
        own_agent(&state, &caller, &agent)?;
    }
    let requeued = state.engine.agents().unregister(&agent)?;
    Ok(axum::Json(Unregistered { id, requeued }))
}

/// `POST /v1/agents/{id}/heartbeat`: the agent is alive; answers with what
/// the registry now shows about it.
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/heartbeat",
    operation_id = "heartbeatAgent",
    tag = "agents",
    summary = "Mark an agent alive",
    params(("id" = String, Path, format = "uuid", description = "The agent's id, as registering answered it.")),
    request_body(
        content = Option<NoBody>,
        description = "Every field is optional: `{}` will do. The body may also be empty, still with `Content-Type: application/json`.",
    ),
    responses(
        (status = 200, description = "The agent as `GET /v1/agents/{id}` shows it now.", body = AgentView),
    ),
)]
pub async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Result<impl IntoResponse, Error> {
    let agent = agent_id(&id)?;
    own_agent(&state, &caller, &agent)?;
    state.engine.agents().heartbeat(&agent)?;
    let info = state
        .engine
        .agents()
        .get(&agent)
        .ok_or(Error::UnknownAgent(id))?;
    Ok(axum::Json(AgentView::from(info)))
}

/// Refuses `agent` to a caller whose token did not register it
/// (`403 not_yours`); anyone may act for any agent when the server has no
/// tokens.
pub(crate) fn own_agent(state: &AppState, caller: &Caller, agent: &AgentId) -> Result<(), Error> {
    let Some(name) = caller.name() else {
        return Ok(());
    };
    let info = state
        .engine
        .agents()
        .get(agent)
        .ok_or_else(|| Error::UnknownAgent(agent.to_string()))?;
    if info.token.as_deref() == Some(name) {
        Ok(())
    } else {
        Err(Error::NotYours(format!(
            "agent {agent} was not registered with the token `{name}`"
        )))
    }
}
