//! `/v1/webhooks`: subscribe a URL to executions' events, list and read
//! the subscriptions with where their delivery stands, delete one.
//!
//! Owns the subscription body, the views, and the one answer that shows a
//! subscription's signing secret (the creation's `201`). Every problem of
//! a body (its shape, a URL that is not `http(s)` or whose literal address
//! the server's outbound policy refuses, an unknown event kind, a workflow
//! name that is not well-formed) is `422 invalid_webhook` with each problem
//! in `details`, and nothing is recorded. It must never show a secret
//! anywhere else, nor deliver (the engine does).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use retrace_engine::model::Problem;
use retrace_engine::runtime::{Retrying, WebhookInfo};
use retrace_engine::webhooks::{Webhook, WebhookSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::Error;
use crate::extract::{Json, Path};
use crate::state::AppState;
use crate::strict;
use crate::time::rfc3339;

/// A subscription: where to send which events.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = WebhookSpec)]
pub struct WebhookBody {
    /// Where deliveries are posted: an `http` or `https` URL (at most 2,048
    /// characters, no user or password). An IP-literal host must be one
    /// the server's outbound address policy allows (the built-in `http`
    /// capability's); a name's addresses are checked at each delivery.
    #[schema(example = "https://hooks.example.com/retrace", max_length = 2048)]
    url: String,
    /// The event kinds to send, as the history names them
    /// (`execution_completed`, `step_failed`, …): at least one, each once.
    #[schema(
        value_type = Vec<crate::schemas::EventKind>,
        min_items = 1,
        example = json!(["execution_completed", "execution_failed"])
    )]
    events: Vec<String>,
    /// Only events of executions of this workflow.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        nullable = false,
        example = "billing.invoice",
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    )]
    workflow: Option<String>,
}

/// An optional field that may be left out but is never `null`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// The spec from a JSON object: every shape problem is an
/// `invalid_webhook` naming its field (the engine checks the rest).
fn spec_of(body: Map<String, Value>) -> Result<WebhookSpec, Error> {
    strict::deserialize::<_, WebhookBody>(Value::Object(body))
        .map(|b| WebhookSpec {
            url: b.url,
            events: b.events,
            workflow: b.workflow,
        })
        .map_err(|rejected| {
            Error::InvalidWebhook(vec![Problem {
                path: rejected.path,
                message: rejected.error.to_string(),
            }])
        })
}

/// The last event a subscription gave up on.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WebhookFailure)]
pub struct FailureView {
    /// The event's journal position.
    #[schema(format = "uint64")]
    position: u64,
    /// Attempts made.
    #[schema(format = "uint32")]
    attempts: u32,
    /// The last attempt's error.
    error: String,
    /// When it was given up.
    #[schema(format = DateTime)]
    at: String,
}

/// The event a subscription is retrying now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WebhookRetrying)]
pub struct RetryingView {
    /// The event's journal position.
    #[schema(format = "uint64")]
    position: u64,
    /// Attempts failed so far.
    #[schema(format = "uint32")]
    attempts: u32,
    /// The last attempt's error.
    error: String,
    /// When the next attempt is due.
    #[schema(format = DateTime)]
    next_attempt_at: String,
}

impl From<&Retrying> for RetryingView {
    fn from(r: &Retrying) -> Self {
        RetryingView {
            position: r.position,
            attempts: r.attempts,
            error: r.error.clone(),
            next_attempt_at: rfc3339(r.next_attempt_ms),
        }
    }
}

/// A subscription and where its delivery stands (never its secret).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Webhook)]
pub struct WebhookView {
    /// Its id (a UUID).
    #[schema(format = "uuid")]
    id: String,
    url: String,
    /// The event kinds it is sent.
    events: Vec<String>,
    /// Only events of this workflow's executions (absent: every
    /// workflow's).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    workflow: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    /// The token that made it (absent without tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    created_by: Option<String>,
    /// The journal position up to which its events are settled (delivered
    /// or given up): delivery goes on after it, also after a restart.
    #[schema(format = "uint64")]
    cursor: u64,
    /// Events delivered.
    #[schema(format = "uint64")]
    delivered: u64,
    /// Events given up after the retry bound.
    #[schema(format = "uint64")]
    failed: u64,
    /// When an event was last delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    last_delivered_at: Option<String>,
    /// The last event given up, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    last_failure: Option<FailureView>,
    /// The event being retried now, and why (in memory: absent after a
    /// restart until an attempt fails again).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    retrying: Option<RetryingView>,
}

impl WebhookView {
    fn new(webhook: &Webhook, retrying: Option<&Retrying>) -> WebhookView {
        WebhookView {
            id: webhook.id.clone(),
            url: webhook.spec.url.clone(),
            events: webhook.spec.events.clone(),
            workflow: webhook.spec.workflow.clone(),
            created_at: rfc3339(webhook.created_at_ms),
            created_by: webhook.created_by.clone(),
            cursor: webhook.cursor,
            delivered: webhook.delivered,
            failed: webhook.failed,
            last_delivered_at: webhook.last_delivered_at_ms.map(rfc3339),
            last_failure: webhook.last_failure.as_ref().map(|f| FailureView {
                position: f.position,
                attempts: f.attempts,
                error: f.error.clone(),
                at: rfc3339(f.at_ms),
            }),
            retrying: retrying.map(RetryingView::from),
        }
    }

    fn of(info: &WebhookInfo) -> WebhookView {
        WebhookView::new(&info.webhook, info.retrying.as_ref())
    }
}

/// A subscription just made, with its signing secret: the only answer that
/// shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CreatedWebhook)]
pub struct CreatedView {
    #[serde(flatten)]
    webhook: WebhookView,
    /// The key deliveries are signed with (Standard Webhooks): `whsec_` and
    /// the base64 of 32 random bytes. Shown once: keep it now.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=")]
    secret: String,
}

/// Every subscription.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookList)]
struct ListView {
    /// In the order they were made.
    webhooks: Vec<WebhookView>,
}

/// `POST /v1/webhooks`.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    operation_id = "createWebhook",
    tag = "webhooks",
    summary = "Subscribe a URL to executions' events",
    description = "From now on, every event of the kinds named (of the workflow's \
        executions, when `workflow` is given) is posted to `url`, signed per Standard \
        Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`), at least once, \
        in the journal's order. A failed delivery is tried again with a delay that doubles \
        up to a cap, for a bounded time (an hour by default), then given up (counted in \
        `failed`, with its error in `lastFailure`) and delivery moves on. The answer holds \
        the signing secret: the only time it is shown. Any problem of the body is `422 \
        invalid_webhook` with every problem in `details`, and nothing is recorded. \
        Journaled with the token that asked and the `Retrace-Reason` header.",
    request_body = WebhookBody,
    responses(
        (status = 201, description = "Subscribed: the subscription and its secret.",
            body = CreatedView),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<Map<String, Value>>,
) -> Result<impl IntoResponse, Error> {
    let spec = spec_of(body)?;
    let webhook = state
        .engine
        .create_webhook(spec, caller.name(), caller.reason())
        .await?;
    tracing::info!(webhook = %webhook.id, by = ?caller.name(), "webhook created");
    let view = CreatedView {
        secret: webhook.secret.expose().to_owned(),
        webhook: WebhookView::new(&webhook, None),
    };
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// `GET /v1/webhooks`.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    operation_id = "listWebhooks",
    tag = "webhooks",
    summary = "List the webhook subscriptions",
    responses(
        (status = 200, description = "Every subscription and where its delivery stands \
            (never a secret).", body = ListView),
    ),
)]
pub async fn list(State(state): State<AppState>) -> Result<impl IntoResponse, Error> {
    let webhooks = state
        .engine
        .webhooks()
        .iter()
        .map(WebhookView::of)
        .collect();
    Ok(axum::Json(ListView { webhooks }))
}

/// `GET /v1/webhooks/{id}`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    operation_id = "getWebhook",
    tag = "webhooks",
    summary = "Read a webhook subscription and its delivery state",
    params(("id" = String, Path, description = "The subscription's id.")),
    responses(
        (status = 200, description = "The subscription: its cursor, what was delivered \
            and given up, the last failure, the retry under way (never its secret).",
            body = WebhookView),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let info = state.engine.webhook(&id)?;
    Ok(axum::Json(WebhookView::of(&info)))
}

/// `DELETE /v1/webhooks/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    operation_id = "deleteWebhook",
    tag = "webhooks",
    summary = "Delete a webhook subscription",
    description = "Nothing more is delivered to it; a delivery under way is dropped. \
        Journaled with the token that asked and the `Retrace-Reason` header.",
    params(("id" = String, Path, description = "The subscription's id.")),
    responses(
        (status = 204, description = "Deleted."),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    state
        .engine
        .delete_webhook(&id, caller.name(), caller.reason())
        .await?;
    tracing::info!(webhook = %id, by = ?caller.name(), "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn a_body_reads_as_a_spec_and_shape_problems_name_their_field() {
        let read = |v: Value| spec_of(v.as_object().unwrap().clone());
        let spec = read(json!({"url": "https://e.com/h", "events": ["step_failed"],
            "workflow": "billing"}))
        .unwrap();
        assert_eq!(spec.workflow.as_deref(), Some("billing"));
        for (bad, path) in [
            (json!({"url": "https://e.com", "events": [], "x": 1}), ""),
            (json!({"events": ["step_failed"]}), ""),
            (json!({"url": 5, "events": ["step_failed"]}), "url"),
            (
                json!({"url": "https://e.com", "events": "step_failed"}),
                "events",
            ),
            (
                json!({"url": "https://e.com", "events": [], "workflow": null}),
                "workflow",
            ),
        ] {
            match read(bad.clone()) {
                Err(Error::InvalidWebhook(problems)) => {
                    assert_eq!(problems.len(), 1, "{bad}");
                    assert_eq!(problems[0].path, path, "{bad}: {problems:?}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
