//! Access control (issue 12): every route against every role and against no
//! or a bad token, refusals that record nothing, the first token switching
//! tokens on, revocation at once, and agents that can only act for
//! themselves.

use reqwest::{Method, StatusCode};
use retrace_api::auth::Access;
use retrace_api::router::access_table;
use retrace_engine::store::tokens::{NewToken, Role};
use serde_json::{Value, json};

use crate::support::*;

/// Creates a token on the server's engine; its secret.
async fn token(s: &Server, name: &str, role: Role, capabilities: Option<&[&str]>) -> String {
    let new = NewToken {
        name: name.into(),
        role,
        capabilities: capabilities.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
        expires_at_ms: None,
    };
    s.engine.create_token(new, None, None).await.unwrap().1
}

/// Sends `method path` with `body` (for a POST) as the holder of `secret`.
async fn call(
    s: &Server,
    method: &Method,
    path: &str,
    body: Option<Value>,
    secret: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = s.client.request(method.clone(), s.url(path));
    if let Some(secret) = secret {
        request = request.bearer_auth(secret);
    }
    if *method == Method::POST {
        request = request.json(&body.unwrap_or_else(|| json!({})));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    // A stream an allowed caller opened never ends: its head is enough
    // (and `/metrics` is text).
    let json = response
        .headers()
        .get("content-type")
        .is_some_and(|t| t.to_str().unwrap_or("").starts_with("application/json"));
    if !json {
        return (status, Value::Null);
    }
    answer(response).await
}

/// A concrete path for a route template: ids that name nothing, so an
/// allowed call is answered by its handler (often `404`) and changes
/// nothing of what the test set up.
fn concrete(template: &str) -> String {
    template
        .replace(
            "{id}/events/stream",
            "00000000-0000-7000-8000-000000000001/events/stream",
        )
        .replace("{id}", "00000000-0000-7000-8000-000000000001")
        .replace("{name}", "nobody")
        .replace("{version}", "0")
        .replace("{file}", "main.js")
        .replace("{capability}", "nobody")
}

fn code(answer: &(StatusCode, Value)) -> &str {
    answer.1["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn every_route_answers_every_role_as_the_table_says_and_refusals_record_nothing() {
    let s = Server::start().await;
    let mut callers: Vec<(String, Option<String>, Option<Role>)> = Vec::new();
    for role in Role::ALL {
        let secret = token(&s, role.as_str(), role, None).await;
        callers.push((role.to_string(), Some(secret), Some(role)));
    }
    callers.push(("no token".into(), None, None));
    let unknown = format!("rtk_{}", "0".repeat(64));
    callers.push(("an unknown token".into(), Some(unknown), None));
    callers.push(("a malformed header".into(), Some(String::new()), None));
    let mut checked = 0;
    for (method, template, access) in access_table() {
        let path = concrete(template);
        for (who, secret, role) in &callers {
            let before = s.position().await;
            let answer = call(&s, &method, &path, None, secret.as_deref()).await;
            let what = format!("{method} {path} as {who}: {} {}", answer.0, answer.1);
            match (access, role) {
                (Access::Open, _) => {
                    assert!(answer.0 != StatusCode::UNAUTHORIZED, "{what}");
                    assert!(code(&answer) != "forbidden", "{what}");
                }
                (_, None) => {
                    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
                    assert_eq!(s.position().await, before, "{what} recorded something");
                }
                (_, Some(role)) if access.allows(*role) => {
                    assert!(answer.0 != StatusCode::UNAUTHORIZED, "{what}");
                    assert!(code(&answer) != "forbidden", "{what}");
                }
                (_, Some(_)) => {
                    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
                    assert_eq!(s.position().await, before, "{what} recorded something");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, access_table().len() * callers.len());
}

#[tokio::test]
async fn a_401_says_how_to_authenticate() {
    let s = Server::start().await;
    token(&s, "root", Role::Admin, None).await;
    let response = s.client.get(s.url("/v1/workflows")).send().await.unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"retrace\""
    );
    let answer = answer(response).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
    let message = answer.1["error"]["message"].as_str().unwrap();
    assert!(message.contains("Authorization: Bearer"), "{message}");
    // The probes, the API's description and the dashboard's files (which
    // hold no data: the page asks for a token) stay open.
    for open in ["/healthz", "/readyz", "/openapi.json", "/", "/ui/main.js"] {
        let status = s.client.get(s.url(open)).send().await.unwrap().status();
        assert_eq!(status, StatusCode::OK, "{open}");
    }
}

#[tokio::test]
async fn the_first_token_switches_tokens_on_and_revocation_is_at_once() {
    let s = Server::start().await;
    assert_eq!(s.get("/v1/workflows").await.0, StatusCode::OK);
    let (status, created) = s
        .post("/v1/tokens", json!({"name": "root", "role": "admin"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let root = created["secret"].as_str().unwrap().to_owned();
    assert!(root.starts_with("rtk_") && root.len() == 68, "{root}");
    assert_eq!(created["token"]["status"], "active");
    assert!(created["token"].get("createdBy").is_none());
    // From now on, every call needs one.
    assert_error(
        &s.get("/v1/workflows").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    let admin = Some(root.as_str());
    let (status, ops) = call(
        &s,
        &Method::POST,
        "/v1/tokens",
        Some(json!({"name": "ops", "role": "operator", "expiresInMs": 3_600_000})),
        admin,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ops}");
    assert_eq!(ops["token"]["createdBy"], "root");
    assert!(ops["token"]["expiresAt"].is_string());
    let ops_secret = ops["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&s, &Method::GET, "/v1/workflows", None, Some(&ops_secret))
            .await
            .0,
        StatusCode::OK
    );
    // A name is never given twice; bad tokens are refused whole.
    let again = call(
        &s,
        &Method::POST,
        "/v1/tokens",
        Some(json!({"name": "ops", "role": "viewer"})),
        admin,
    )
    .await;
    assert_error(&again, StatusCode::CONFLICT, "conflict");
    let bad = call(
        &s,
        &Method::POST,
        "/v1/tokens",
        Some(json!({"name": "v", "role": "viewer", "capabilities": ["x"]})),
        admin,
    )
    .await;
    assert_error(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid_token");
    let unknown_role = call(
        &s,
        &Method::POST,
        "/v1/tokens",
        Some(json!({"name": "v", "role": "superuser"})),
        admin,
    )
    .await;
    assert_error(
        &unknown_role,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    // Revoked: refused from the answer on, and still listed.
    let (status, revoked) = call(&s, &Method::DELETE, "/v1/tokens/ops", None, admin).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revokedBy"], "root");
    assert_error(
        &call(&s, &Method::GET, "/v1/workflows", None, Some(&ops_secret)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    let (_, list) = call(&s, &Method::GET, "/v1/tokens", None, admin).await;
    let names: Vec<&str> = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ops", "root"]);
    assert!(
        !list.to_string().contains("rtk_"),
        "a listing never shows a secret"
    );
    let twice = call(&s, &Method::DELETE, "/v1/tokens/ops", None, admin).await;
    assert_error(&twice, StatusCode::CONFLICT, "conflict");
    // Revoking the last admin locks everyone out; it never opens the server.
    call(&s, &Method::DELETE, "/v1/tokens/root", None, admin).await;
    assert_error(
        &s.get("/v1/workflows").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
}

/// A workflow with one task on capability `work`.
async fn one_task(s: &Server, operator: &str, client: &str) -> String {
    let doc = json!({"name": "job", "steps": [
        {"id": "t", "type": "task", "capability": "work"}]});
    let (status, body) = call(s, &Method::POST, "/v1/workflows", Some(doc), Some(operator)).await;
    assert!(status.is_success(), "{body}");
    let (status, body) = call(
        s,
        &Method::POST,
        "/v1/executions",
        Some(json!({"workflow": "job", "input": {}})),
        Some(client),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn register(s: &Server, secret: &str, capabilities: &[&str]) -> (StatusCode, Value) {
    call(
        s,
        &Method::POST,
        "/v1/agents",
        Some(json!({"name": "w", "capabilities": capabilities})),
        Some(secret),
    )
    .await
}

#[tokio::test]
async fn only_the_agent_holding_a_task_reports_it() {
    let s = Server::start().await;
    let operator = token(&s, "ops", Role::Operator, None).await;
    let client = token(&s, "app", Role::Client, None).await;
    let viewer = token(&s, "eyes", Role::Viewer, None).await;
    let a = token(&s, "agent-a", Role::Agent, Some(&["work"])).await;
    let b = token(&s, "agent-b", Role::Agent, None).await;
    let id = one_task(&s, &operator, &client).await;

    // An agent token registers only the capabilities it allows.
    let refused = register(&s, &a, &["other"]).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = register(&s, &a, &["work"]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let agent_a = body["id"].as_str().unwrap().to_owned();
    let (_, body) = register(&s, &b, &["work"]).await;
    let agent_b = body["id"].as_str().unwrap().to_owned();
    let (_, shown) = call(
        &s,
        &Method::GET,
        &format!("/v1/agents/{agent_a}"),
        None,
        Some(&viewer),
    )
    .await;
    assert_eq!(shown["token"], "agent-a");

    // B can neither poll as A nor heartbeat A.
    let poll = json!({"agentId": agent_a, "waitMs": 0});
    let as_a = call(&s, &Method::POST, "/v1/tasks/poll", Some(poll), Some(&b)).await;
    assert_error(&as_a, StatusCode::FORBIDDEN, "not_yours");
    let beat = call(
        &s,
        &Method::POST,
        &format!("/v1/agents/{agent_a}/heartbeat"),
        None,
        Some(&b),
    )
    .await;
    assert_error(&beat, StatusCode::FORBIDDEN, "not_yours");

    // A claims the task.
    let poll = json!({"agentId": agent_a, "waitMs": PATIENCE.as_millis() as u64});
    let (status, claimed) = call(&s, &Method::POST, "/v1/tasks/poll", Some(poll), Some(&a)).await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    let task = claimed["tasks"][0]["id"].as_str().unwrap().to_owned();

    let before = s.position().await;
    let complete = format!("/v1/tasks/{task}/complete");
    let forged = Some(json!({"output": {"by": "someone else"}}));
    let by_b = call(&s, &Method::POST, &complete, forged.clone(), Some(&b)).await;
    assert_error(&by_b, StatusCode::FORBIDDEN, "not_yours");
    let by_viewer = call(&s, &Method::POST, &complete, forged.clone(), Some(&viewer)).await;
    assert_error(&by_viewer, StatusCode::FORBIDDEN, "forbidden");
    let anonymous = call(&s, &Method::POST, &complete, forged.clone(), None).await;
    assert_error(&anonymous, StatusCode::UNAUTHORIZED, "unauthenticated");
    let fail = json!({"error": {"type": "x", "message": "forged"}});
    let fail_by_b = call(
        &s,
        &Method::POST,
        &format!("/v1/tasks/{task}/fail"),
        Some(fail),
        Some(&b),
    )
    .await;
    assert_error(&fail_by_b, StatusCode::FORBIDDEN, "not_yours");
    let beat_by_b = call(
        &s,
        &Method::POST,
        &format!("/v1/tasks/{task}/heartbeat"),
        None,
        Some(&b),
    )
    .await;
    assert_error(&beat_by_b, StatusCode::FORBIDDEN, "not_yours");
    // B's own agent gains nothing by naming itself in a piggybacked poll.
    let piggyback = Some(json!({"output": 1, "poll": {"agentId": agent_b, "waitMs": 0}}));
    let with_poll = call(&s, &Method::POST, &complete, piggyback, Some(&b)).await;
    assert_error(&with_poll, StatusCode::FORBIDDEN, "not_yours");
    assert_eq!(
        s.position().await,
        before,
        "a refused report recorded something"
    );

    // A's result is the one recorded.
    let (status, body) = call(
        &s,
        &Method::POST,
        &complete,
        Some(json!({"output": {"by": "a"}})),
        Some(&a),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, execution) = call(
        &s,
        &Method::GET,
        &format!("/v1/executions/{id}"),
        None,
        Some(&viewer),
    )
    .await;
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(execution["output"]["by"], "a", "{execution}");
    // The history says which agent, and whose token, answered.
    let (_, events) = call(
        &s,
        &Method::GET,
        &format!("/v1/executions/{id}/events"),
        None,
        Some(&viewer),
    )
    .await;
    let done = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "task_completed")
        .unwrap();
    assert_eq!(done["data"]["by"], "agent-a", "{done}");
    assert!(
        done["data"]["agent"].as_str().unwrap().contains(&agent_a),
        "{done}"
    );
    let started = &events["events"][0];
    assert_eq!(started["data"]["by"], "app", "{started}");
    // Nor can B remove A's agent; A can.
    let gone = call(
        &s,
        &Method::DELETE,
        &format!("/v1/agents/{agent_a}"),
        None,
        Some(&b),
    )
    .await;
    assert_error(&gone, StatusCode::FORBIDDEN, "not_yours");
    let (status, _) = call(
        &s,
        &Method::DELETE,
        &format!("/v1/agents/{agent_a}"),
        None,
        Some(&a),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// The role table in `docs/api.md` is the router's.
#[test]
fn the_documented_role_table_is_the_routers() {
    let mut table = String::from(
        "| method | path | admin | operator | client | viewer | agent |\n\
         |--------|------|:-----:|:--------:|:------:|:------:|:-----:|\n",
    );
    for (method, path, access) in access_table() {
        let cells: Vec<&str> = Role::ALL
            .iter()
            .map(|r| match access {
                Access::Open => "any",
                _ if access.allows(*r) => "✓",
                _ => "",
            })
            .collect();
        table.push_str(&format!(
            "| `{method}` | `{path}` | {} |\n",
            cells.join(" | ")
        ));
    }
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api.md"),
    )
    .unwrap();
    assert!(
        doc.contains(&table),
        "docs/api.md must hold the role table as the router has it:\n\n{table}"
    );
}

/// `(webhook-id, webhook-timestamp, webhook-signature)` for `body`.
fn signed(key: &[u8], id: &str, ts: u64, body: &str) -> [(&'static str, String); 3] {
    use base64::Engine as _;
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", format!("v1,{signature}")),
    ]
}

#[tokio::test]
async fn signed_events_need_no_token_and_forged_stale_or_replayed_ones_are_refused() {
    use base64::Engine as _;
    let key = b"a secret the integration and retrace share";
    let secret = format!(
        "order.paid=whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let config = retrace_api::ApiConfig {
        event_secrets: retrace_api::webhook::Secrets::parse(&[secret]).unwrap(),
        ..Default::default()
    };
    let s = Server::with_config(config).await;
    let ops = token(&s, "ops", Role::Operator, None).await;
    let doc = json!({"name": "shop", "steps": [
        {"id": "paid", "type": "event", "event": {"name": "order.paid"}}]});
    call(&s, &Method::POST, "/v1/workflows", Some(doc), Some(&ops)).await;
    let (_, started) = call(
        &s,
        &Method::POST,
        "/v1/executions",
        Some(json!({"workflow": "shop", "input": {}})),
        Some(&ops),
    )
    .await;
    let id = started["id"].as_str().unwrap().to_owned();
    let now = s.engine.clock().now_ms() / 1000;
    let body = r#"{"payload":{"order":7}}"#;
    let send = |headers: Vec<(&'static str, String)>, token: Option<String>| {
        let mut request = s
            .client
            .post(s.url("/v1/events/order.paid"))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { answer(request.send().await.unwrap()).await }
    };

    let before = s.position().await;
    // Neither a token nor a signature; a token but no signature; a forged
    // signature; a stale one.
    assert_error(
        &send(vec![], None).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    let unsigned = send(vec![], Some(ops.clone())).await;
    assert_error(&unsigned, StatusCode::UNAUTHORIZED, "invalid_signature");
    let forged = signed(b"not the secret", "msg_1", now, body).to_vec();
    assert_error(
        &send(forged, None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
    );
    let stale = signed(key, "msg_1", now - 301, body).to_vec();
    assert_error(
        &send(stale, None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
    );
    let other_body = signed(key, "msg_1", now, r#"{"payload":{"order":8}}"#).to_vec();
    assert_error(
        &send(other_body, None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
    );
    assert_eq!(
        s.position().await,
        before,
        "a refused event recorded something"
    );

    // The good one, with no token at all, and its replay.
    let good = signed(key, "msg_1", now, body).to_vec();
    let (status, delivered) = send(good.clone(), None).await;
    assert_eq!(status, StatusCode::OK, "{delivered}");
    assert_eq!(delivered["delivered"], json!([id]));
    let after = s.position().await;
    assert_error(
        &send(good, None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
    );
    assert_eq!(s.position().await, after, "a replay recorded something");
    let (_, events) = call(
        &s,
        &Method::GET,
        &format!("/v1/executions/{id}/events"),
        None,
        Some(&ops),
    )
    .await;
    let signal = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "signal_received")
        .unwrap();
    assert_eq!(signal["data"]["by"], "webhook:msg_1", "{signal}");
}

#[tokio::test]
async fn a_token_past_its_rate_or_its_streams_gets_429_with_retry_after() {
    let config = retrace_api::ApiConfig {
        token_limits: retrace_api::limits::TokenLimits::new(3, 1),
        ..Default::default()
    };
    let s = Server::with_config(config).await;
    let eyes = token(&s, "eyes", Role::Viewer, None).await;
    let other = token(&s, "other", Role::Viewer, None).await;
    for _ in 0..3 {
        let (status, _) = call(&s, &Method::GET, "/v1/workflows", None, Some(&eyes)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let response = s
        .client
        .get(s.url("/v1/workflows"))
        .bearer_auth(&eyes)
        .send()
        .await
        .unwrap();
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_error(
        &answer(response).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    );
    // Another token has its own budget.
    let (status, _) = call(&s, &Method::GET, "/v1/workflows", None, Some(&other)).await;
    assert_eq!(status, StatusCode::OK);

    // One open stream per token: a second is refused until the first ends.
    let stream = |secret: String| {
        let request = s
            .client
            .get(s.url("/v1/events/stream"))
            .bearer_auth(secret)
            .header("accept", "text/event-stream");
        async move { request.send().await.unwrap() }
    };
    let first = stream(other.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = stream(other.clone()).await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    drop(first);
    // Counted out once the server sees the connection close (polled, with
    // a bound).
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let third = stream(other.clone()).await;
        if third.status() == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the closed stream is never counted out"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
