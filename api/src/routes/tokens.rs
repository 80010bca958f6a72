//! `/v1/tokens`: create, list, read and revoke access tokens (admins only;
//! on a server with no token yet, creating the first one is what switches
//! tokens on).
//!
//! Owns the token bodies and views. It must never show a secret but in the
//! answer to its creation, nor a stored hash ever.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use retrace_engine::store::tokens::{NewToken, Role, Token};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::Error;
use crate::extract::{Json, Path};
use crate::state::AppState;
use crate::time::rfc3339;

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = CreateToken)]
pub struct CreateBody {
    /// 1 to 128 characters: letters, digits, `_`, `.` and `-`, starting with
    /// a letter or digit. The journal records it as the actor of whatever
    /// the token's holder does, so it is never reused, even once revoked.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    )]
    name: String,
    #[schema(value_type = RoleSchema)]
    role: Role,
    /// Agent tokens only: the capabilities its agents may register with
    /// (any, when left out).
    #[schema(min_items = 1, value_type = Option<Vec<crate::schemas::Capability>>)]
    capabilities: Option<Vec<String>>,
    /// How long it is accepted, in milliseconds from now (forever when left
    /// out).
    #[serde(default, deserialize_with = "crate::integer::optional")]
    #[schema(minimum = 1, maximum = 18446744073709551615u64, format = "uint64")]
    expires_in_ms: Option<u64>,
}

/// A role: what a token's holder may do (the table in `docs/api.md`).
/// (Only describes [`Role`] in the OpenAPI document.)
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = RoleName)]
pub enum RoleSchema {
    Admin,
    Operator,
    Client,
    Viewer,
    Agent,
}

/// A token as listed (never its secret).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = TokenInfo)]
pub struct TokenView {
    name: String,
    #[schema(value_type = RoleSchema)]
    role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    capabilities: Option<Vec<String>>,
    /// `active`, `revoked` or `expired`.
    status: &'static str,
    #[schema(format = DateTime)]
    created_at: String,
    /// The token that created it; absent when none was needed (the
    /// command line on the data folder, or the first token of a server).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    revoked_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    revoked_by: Option<String>,
}

impl TokenView {
    pub fn new(t: Token, now_ms: u64) -> TokenView {
        let status = t.status(now_ms);
        TokenView {
            name: t.name,
            role: t.role,
            capabilities: t.capabilities,
            status,
            created_at: rfc3339(t.created_at_ms),
            created_by: t.created_by,
            expires_at: t.expires_at_ms.map(rfc3339),
            revoked_at: t.revoked_at_ms.map(rfc3339),
            revoked_by: t.revoked_by,
        }
    }
}

/// A token just created, with its secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CreatedToken)]
struct Created {
    /// The bearer token: `rtk_` and 64 hex digits. Shown only here, once;
    /// the server keeps only its hash.
    secret: String,
    token: TokenView,
}

/// Every token.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TokenList)]
struct TokensView {
    /// By name; revoked and expired ones included.
    tokens: Vec<TokenView>,
}

/// `POST /v1/tokens` → `201 {"secret","token"}`.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    operation_id = "createToken",
    tag = "tokens",
    summary = "Create an access token",
    description = "Answers the token's secret, once: only its hash is kept. The \
        change is journaled (with the admin token that made it). On a server with no \
        token yet, anyone who can reach it may create the first one, and from then on \
        every request needs a token.",
    request_body = CreateBody,
    responses(
        (status = 201, description = "Created.", body = Created),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateBody>,
) -> Result<impl IntoResponse, Error> {
    let now = state.engine.clock().now_ms();
    let expires_at_ms = match body.expires_in_ms {
        Some(0) => return Err(Error::InvalidToken("expiresInMs must be at least 1".into())),
        Some(ms) => Some(now.saturating_add(ms)),
        None => None,
    };
    let new = NewToken {
        name: body.name,
        role: body.role,
        capabilities: body.capabilities,
        expires_at_ms,
    };
    let (token, secret) = state
        .engine
        .create_token(new, caller.name(), caller.reason())
        .await?;
    tracing::info!(token = %token.name, role = %token.role, by = ?caller.name(), "token created");
    Ok((
        StatusCode::CREATED,
        axum::Json(Created {
            secret,
            token: TokenView::new(token, now),
        }),
    ))
}

/// `GET /v1/tokens`.
#[utoipa::path(
    get,
    path = "/v1/tokens",
    operation_id = "listTokens",
    tag = "tokens",
    summary = "List access tokens",
    responses(
        (status = 200, description = "Every token, by name (never a secret).", body = TokensView),
    ),
)]
pub async fn list(State(state): State<AppState>) -> Result<impl IntoResponse, Error> {
    let now = state.engine.clock().now_ms();
    let tokens = state
        .engine
        .tokens()?
        .into_iter()
        .map(|t| TokenView::new(t, now))
        .collect();
    Ok(axum::Json(TokensView { tokens }))
}

/// `GET /v1/tokens/{name}`.
#[utoipa::path(
    get,
    path = "/v1/tokens/{name}",
    operation_id = "getToken",
    tag = "tokens",
    summary = "Read one access token",
    params(("name" = String, Path, description = "The token's name.")),
    responses(
        (status = 200, description = "The token (never its secret).", body = TokenView),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let now = state.engine.clock().now_ms();
    let token = state
        .engine
        .tokens()?
        .into_iter()
        .find(|t| t.name == name)
        .ok_or(Error::UnknownToken(name))?;
    Ok(axum::Json(TokenView::new(token, now)))
}

/// `DELETE /v1/tokens/{name}`: revoked at once, kept in the list.
#[utoipa::path(
    delete,
    path = "/v1/tokens/{name}",
    operation_id = "revokeToken",
    tag = "tokens",
    summary = "Revoke an access token",
    description = "Every request with it is refused from the moment this answers. The \
        token stays listed, revoked, and its name is never given to another.",
    params(("name" = String, Path, description = "The token's name.")),
    responses(
        (status = 200, description = "Revoked.", body = TokenView),
    ),
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let token = state
        .engine
        .revoke_token(&name, caller.name(), caller.reason())
        .await?;
    tracing::info!(token = %token.name, by = ?caller.name(), "token revoked");
    let now = state.engine.clock().now_ms();
    Ok(axum::Json(TokenView::new(token, now)))
}
