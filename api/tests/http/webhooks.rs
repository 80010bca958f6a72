//! Outbound webhooks through the API: subscriptions created, listed, read
//! and deleted (and bad ones refused with nothing recorded); deliveries to
//! a receiver of the test's own (axum on `127.0.0.1:0`, stopped when the
//! test ends) signed per Standard Webhooks (checked here with an
//! independent HMAC), carrying the event as the history shows it,
//! redelivered with the same `webhook-id` after a failure, given up after
//! the retry bound with the error shown, and never sent to an address the
//! policy refuses.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use retrace_api::ApiConfig;
use retrace_engine::http::{AddressPolicy, HttpOptions};
use retrace_engine::read::AuditTarget;
use retrace_engine::runtime::EngineConfig;
use retrace_engine::webhooks::WebhookOptions;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::*;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

type Answer = Arc<dyn Fn(&Got, usize) -> StatusCode + Send + Sync>;

/// A server that records every request and answers as `answer` says
/// (given the request and how many came before it); stopped when dropped.
struct Receiver {
    url: String,
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    count: tokio::sync::watch::Receiver<usize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    async fn start(answer: impl Fn(&Got, usize) -> StatusCode + Send + Sync + 'static) -> Self {
        let answer: Answer = Arc::new(answer);
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let (counted, count) = tokio::sync::watch::channel(0usize);
        let log = got.clone();
        let router = axum::Router::new().fallback(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (log, answer, counted) = (log.clone(), answer.clone(), counted.clone());
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let request = Got {
                        id: header("webhook-id"),
                        timestamp: header("webhook-timestamp"),
                        signature: header("webhook-signature"),
                        body: body.to_vec(),
                    };
                    let mut log = log.lock().unwrap();
                    let status = answer(&request, log.len());
                    log.push(request);
                    counted.send_replace(log.len());
                    status
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hooks"),
            port,
            got,
            count,
            stop: Some(stop),
        }
    }

    /// Every request so far, once there are at least `n`.
    async fn wait_for(&self, n: usize) -> Vec<Got> {
        let mut count = self.count.clone();
        tokio::time::timeout(PATIENCE, count.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} deliveries: {:?}", self.all()))
            .unwrap();
        self.all()
    }

    fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Whether `got` carries a Standard Webhooks signature of its id,
/// timestamp and body with `secret`, computed here without the engine.
fn signed_with(secret: &str, got: &Got) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", got.id, got.timestamp).as_bytes());
    mac.update(&got.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    got.signature.split(' ').any(|s| s == expected)
}

/// A server whose outbound policy allows loopback (or not), with
/// deliveries retried for `retry_for_ms` at short delays.
async fn server(loopback: bool, retry_for_ms: u64) -> Server {
    let allow = if loopback {
        vec!["127.0.0.1/32".to_owned()]
    } else {
        vec![]
    };
    Server::with_configs(ApiConfig::default(), move |engine| EngineConfig {
        http: HttpOptions {
            policy: AddressPolicy::parse(&allow, &[]).unwrap(),
            ..HttpOptions::default()
        },
        webhooks: WebhookOptions {
            retry_for_ms,
            first_delay_ms: 10,
            max_delay_ms: 50,
            ..WebhookOptions::default()
        },
        ..engine
    })
    .await
}

/// Polls `GET /v1/webhooks/{id}` until `done` holds; the subscription.
async fn webhook_when(s: &Server, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, webhook) = s.get(&format!("/v1/webhooks/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{webhook}");
        if done(&webhook) {
            return webhook;
        }
        assert!(Instant::now() < deadline, "never: {webhook}");
        // The interval between polls, not a wait standing in for one.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn subscribe(s: &Server, body: Value) -> (String, String) {
    let (status, created) = s.post("/v1/webhooks", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn subscriptions_are_created_listed_read_and_deleted_and_bad_ones_change_nothing() {
    let s = server(false, 1_000).await;
    let (status, created) = s
        .post(
            "/v1/webhooks",
            json!({"url": "https://hooks.example.com/retrace",
                   "events": ["execution_completed", "step_failed"], "workflow": "billing"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap();
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    assert!(key.len() >= 24, "{secret}");
    assert_eq!(
        created["events"],
        json!(["execution_completed", "step_failed"])
    );
    assert_eq!(created["workflow"], "billing");
    assert_eq!(
        (created["delivered"].as_u64(), created["failed"].as_u64()),
        (Some(0), Some(0))
    );

    let (status, list) = s.get("/v1/webhooks").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
    let (status, one) = s.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["url"], "https://hooks.example.com/retrace");
    assert_eq!(one["cursor"], created["cursor"]);
    for shown in [&list, &one] {
        assert!(
            !shown.to_string().contains(secret),
            "GET never shows it: {shown}"
        );
        assert!(!shown.to_string().contains("secret"), "{shown}");
    }

    // Refused whole, with every problem named, and nothing recorded.
    let before = s.position().await;
    for (body, path, says) in [
        (
            json!({"url": "https://e.com/h", "events": ["execution_completed", "nope"]}),
            "events",
            "`nope` is not an event kind",
        ),
        (
            json!({"url": "ftp://e.com/h", "events": ["step_failed"]}),
            "url",
            "only http and https",
        ),
        (
            json!({"url": "http://10.0.0.1/h", "events": ["step_failed"]}),
            "url",
            "private (10.0.0.0/8)",
        ),
        (
            json!({"url": "http://127.0.0.1:9/h", "events": ["step_failed"]}),
            "url",
            "loopback",
        ),
        (
            json!({"url": "https://e.com/h", "events": []}),
            "events",
            "at least one",
        ),
        (
            json!({"url": "https://e.com/h", "events": ["step_failed"], "workflow": "-x"}),
            "workflow",
            "",
        ),
        (
            json!({"url": "https://e.com/h", "events": ["step_failed"], "secret": "mine"}),
            "",
            "",
        ),
        (json!({"events": ["step_failed"]}), "", "url"),
    ] {
        let answer = s.post("/v1/webhooks", body.clone()).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_webhook");
        let details = answer.1["error"]["details"].as_array().unwrap();
        assert!(
            details
                .iter()
                .any(|d| d["path"] == path && d["message"].as_str().unwrap().contains(says)),
            "{body}: {}",
            answer.1
        );
    }
    let unknown = json!({"url": "https://e.com/h", "events": ["nope", "also_not"]});
    let answer = s.post("/v1/webhooks", unknown).await;
    let message = answer.1["error"]["details"][0]["message"].as_str().unwrap();
    assert!(message.contains("`nope`, `also_not` are not"), "{message}");
    assert!(
        message.contains("execution_completed"),
        "the kinds listed: {message}"
    );
    assert_eq!(s.position().await, before, "nothing recorded");

    let (status, _) = s.delete(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &s.get(&format!("/v1/webhooks/{id}")).await,
        StatusCode::NOT_FOUND,
        "unknown_webhook",
    );
    assert_error(
        &s.delete(&format!("/v1/webhooks/{id}")).await,
        StatusCode::NOT_FOUND,
        "unknown_webhook",
    );
    let (_, list) = s.get("/v1/webhooks").await;
    assert_eq!(list["webhooks"], json!([]));
    // Who made and deleted it is in the audit; the secret is not.
    let (audit, _) = s.engine.read().audit(1, 1_000, false).await.unwrap();
    let changes: Vec<&str> = audit
        .iter()
        .filter(|e| e.target == AuditTarget::Webhook(id.clone()))
        .map(|e| e.action)
        .collect();
    assert_eq!(changes, ["webhook_created", "webhook_deleted"]);
    assert!(!format!("{audit:?}").contains(secret));
}

#[tokio::test]
async fn a_delivery_is_signed_and_carries_the_event_as_the_history_shows_it() {
    let s = server(true, 1_000).await;
    let receiver = Receiver::start(|_, _| StatusCode::OK).await;
    s.define(inline_chain("tick", 1)).await;
    s.define(inline_chain("tock", 1)).await;
    let (id, secret) = subscribe(
        &s,
        json!({"url": receiver.url, "events": ["execution_started", "execution_completed"],
               "workflow": "tick"}),
    )
    .await;
    let other = s.start_execution("tock", json!({})).await;
    let execution = s.start_execution("tick", json!({})).await;
    let got = receiver.wait_for(2).await;
    let (_, page) = s.get(&format!("/v1/executions/{execution}/events")).await;
    let events = page["events"].as_array().unwrap();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut positions = Vec::new();
    for (got, kind) in got.iter().zip(["execution_started", "execution_completed"]) {
        assert!(signed_with(&secret, got), "{got:?}");
        let ts: u64 = got.timestamp.parse().unwrap();
        assert!(ts.abs_diff(now_s) < 300, "{ts} vs {now_s}");
        let body = got.json();
        assert_eq!(body["type"], kind, "{body}");
        let data = &body["data"];
        assert_eq!(data["executionId"], execution.as_str());
        assert_eq!(data["workflow"], "tick");
        let position = data["position"].as_u64().unwrap();
        assert_eq!(got.id, format!("{id}_{position}"));
        let shown = events
            .iter()
            .find(|e| e["seq"] == data["seq"])
            .expect("the event is in the history");
        assert_eq!(&data["event"], shown, "as the history shows it");
        assert_eq!(body["timestamp"], shown["at"]);
        positions.push(position);
    }
    assert!(positions[0] < positions[1], "in the journal's order");
    let webhook = webhook_when(&s, &id, |w| w["delivered"] == 2).await;
    assert_eq!(webhook["cursor"].as_u64(), Some(positions[1]));
    assert_eq!(webhook["failed"], 0);
    assert!(webhook["lastDeliveredAt"].is_string());
    // Nothing of the other workflow's execution was sent.
    assert!(
        receiver
            .all()
            .iter()
            .all(|g| !String::from_utf8_lossy(&g.body).contains(&other))
    );
}

#[tokio::test]
async fn a_failed_attempt_is_redelivered_with_the_same_webhook_id() {
    let s = server(true, 60_000).await;
    let receiver = Receiver::start(|_, before| {
        if before == 0 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    })
    .await;
    s.define(inline_chain("tick", 1)).await;
    let (id, secret) = subscribe(
        &s,
        json!({"url": receiver.url, "events": ["execution_completed"]}),
    )
    .await;
    s.start_execution("tick", json!({})).await;
    let got = receiver.wait_for(2).await;
    assert_eq!(got[0].id, got[1].id, "a redelivery carries the same id");
    assert_eq!(got[0].body, got[1].body);
    assert!(got.iter().all(|g| signed_with(&secret, g)));
    let webhook = webhook_when(&s, &id, |w| w["delivered"] == 1).await;
    assert_eq!(webhook["failed"], 0);
    assert!(webhook.get("lastFailure").is_none(), "{webhook}");
}

#[tokio::test]
async fn an_event_given_up_is_marked_failed_and_later_events_are_still_delivered() {
    let s = server(true, 300).await;
    s.define(inline_chain("tick", 1)).await;
    let doomed: Arc<Mutex<Option<String>>> = Arc::default();
    let refuse = doomed.clone();
    let receiver = Receiver::start(move |got, _| {
        let body = String::from_utf8_lossy(&got.body).into_owned();
        match refuse.lock().unwrap().as_deref() {
            Some(doomed) if body.contains(doomed) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::OK,
        }
    })
    .await;
    let (id, _) = subscribe(
        &s,
        json!({"url": receiver.url, "events": ["execution_completed"]}),
    )
    .await;
    // The first execution's end is refused; the second's goes through
    // once the first is given up.
    *doomed.lock().unwrap() = Some(String::new());
    let first = s.start_execution("tick", json!({})).await;
    *doomed.lock().unwrap() = Some(first.clone());
    let second = s.start_execution("tick", json!({})).await;
    let webhook = webhook_when(&s, &id, |w| w["delivered"] == 1 && w["failed"] == 1).await;
    let failure = &webhook["lastFailure"];
    assert!(
        failure["error"].as_str().unwrap().contains("500"),
        "{failure}"
    );
    assert!(failure["attempts"].as_u64().unwrap() >= 2, "{failure}");
    let got = receiver.all();
    let delivered: Vec<&Got> = got
        .iter()
        .filter(|g| g.json()["data"]["executionId"] == second.as_str())
        .collect();
    assert_eq!(delivered.len(), 1);
    let refused: Vec<&Got> = got
        .iter()
        .filter(|g| g.json()["data"]["executionId"] == first.as_str())
        .collect();
    assert!(refused.len() >= 2, "tried again before giving up");
    assert_eq!(
        failure["position"],
        refused[0].json()["data"]["position"],
        "the event given up"
    );
    let last = [
        &failure["position"],
        &delivered[0].json()["data"]["position"],
    ]
    .iter()
    .filter_map(|p| p.as_u64())
    .max();
    assert_eq!(webhook["cursor"].as_u64(), last, "delivery moved on");
}

#[tokio::test]
async fn a_name_that_resolves_to_a_refused_address_is_never_delivered_to() {
    let s = server(false, 200).await;
    let receiver = Receiver::start(|_, _| StatusCode::OK).await;
    s.define(inline_chain("tick", 1)).await;
    // `localhost` is a name: checked when a delivery connects, after DNS.
    let url = format!("http://localhost:{}/hooks", receiver.port);
    let (id, _) = subscribe(&s, json!({"url": url, "events": ["execution_completed"]})).await;
    s.start_execution("tick", json!({})).await;
    let webhook = webhook_when(&s, &id, |w| w["failed"] == 1).await;
    let error = webhook["lastFailure"]["error"].as_str().unwrap();
    assert!(
        error.contains("of localhost is refused: it is loopback"),
        "{error}"
    );
    assert_eq!(webhook["delivered"], 0);
    assert!(receiver.all().is_empty(), "nothing reached it");
}
