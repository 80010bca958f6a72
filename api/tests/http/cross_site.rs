//! What a web page on another site could make a browser send is refused and
//! records nothing (issue 12, "browser-borne attacks on a local server"):
//! a bodiless or `text/plain`, form or multipart `POST` (CSRF), a foreign
//! `Host` (DNS rebinding), a change from a foreign `Origin`. The same
//! requests from a client that says what it sends, to a name the server
//! answers to, are taken.

use reqwest::StatusCode;
use retrace_api::ApiConfig;
use serde_json::json;

use crate::support::*;

/// Starts a server with a running execution waiting on a signal.
async fn waiting(s: &Server) -> String {
    s.define(json!({"name": "hold", "steps": [
        {"id": "w", "type": "event", "event": {"name": "go"}}]}))
        .await;
    s.start_execution("hold", json!({})).await
}

#[tokio::test]
async fn posts_a_browser_sends_unasked_are_415_and_change_nothing() {
    let s = Server::start().await;
    let id = waiting(&s).await;
    let position = s.position().await;
    let pause = s.url(&format!("/v1/executions/{id}/pause"));
    let cases: [(Option<&str>, &str); 5] = [
        (None, ""),
        (Some("text/plain"), ""),
        (Some("text/plain;charset=UTF-8"), r#"{"reason":"x"}"#),
        (Some("application/x-www-form-urlencoded"), "reason=x"),
        (Some("multipart/form-data; boundary=b"), "--b--"),
    ];
    for (content_type, body) in cases {
        let mut request = s.client.post(&pause).body(body);
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        let answer = answer(request.send().await.unwrap()).await;
        assert_error(
            &answer,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        );
    }
    assert_eq!(s.position().await, position, "nothing was recorded");
    let (_, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(execution["status"], "running");
    // The same command saying it is JSON, with no body, is taken.
    let (status, body) = s.post_empty(&format!("/v1/executions/{id}/pause")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "paused");
}

#[tokio::test]
async fn a_foreign_host_is_403_for_reads_and_writes_but_not_for_probes() {
    let s = Server::start().await;
    let id = waiting(&s).await;
    let position = s.position().await;
    for host in [
        "evil.example",
        "evil.example:7700",
        "localhost.evil.example",
    ] {
        let read = s
            .client
            .get(s.url(&format!("/v1/executions/{id}")))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_error(&answer(read).await, StatusCode::FORBIDDEN, "cross_site");
        let write = s
            .client
            .post(s.url(&format!("/v1/executions/{id}/cancel")))
            .header("host", host)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let write = answer(write).await;
        assert_error(&write, StatusCode::FORBIDDEN, "cross_site");
        assert!(
            write.1["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("DNS rebinding"),
            "{}",
            write.1
        );
    }
    assert_eq!(s.position().await, position, "nothing was recorded");
    for probe in ["/healthz", "/readyz"] {
        let ok = s
            .client
            .get(s.url(probe))
            .header("host", "node-3.cluster")
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK, "{probe}");
    }
    for host in ["localhost:1", "127.0.0.1", "[::1]:7700"] {
        let ok = s
            .client
            .get(s.url("/v1/workflows"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn an_allowed_host_name_is_served() {
    let s = Server::with_config(ApiConfig {
        allowed_hosts: vec!["retrace.internal".into()],
        ..ApiConfig::default()
    })
    .await;
    let ok = s
        .client
        .get(s.url("/v1/workflows"))
        .header("host", "Retrace.Internal:7700")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_change_from_a_foreign_origin_is_403_and_its_own_origin_is_taken() {
    let s = Server::with_config(ApiConfig {
        cors_origins: vec!["https://ops.example".parse().unwrap()],
        ..ApiConfig::default()
    })
    .await;
    let id = waiting(&s).await;
    let position = s.position().await;
    let signal = s.url(&format!("/v1/executions/{id}/signals/go"));
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        let refused = s
            .client
            .post(&signal)
            .header("origin", origin)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_error(&answer(refused).await, StatusCode::FORBIDDEN, "cross_site");
    }
    assert_eq!(s.position().await, position, "nothing was recorded");
    // Reading from another origin is CORS's business: answered.
    let read = s
        .client
        .get(s.url(&format!("/v1/executions/{id}")))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    // The server's own origin (a page it served) and a CORS origin may.
    let own = s.url("").trim_end_matches('/').to_owned();
    for origin in [own.as_str(), "https://ops.example"] {
        let taken = s
            .client
            .post(s.url("/v1/workflows/validate"))
            .header("origin", origin)
            .json(&json!({"name": "v", "steps": [{"id": "a", "type": "wait", "wait": {"seconds": 0}}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(taken.status(), StatusCode::OK, "{origin}");
    }
    let delivered = s
        .client
        .post(&signal)
        .header("origin", own)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), StatusCode::OK);
}
