//! Limits on what a request may carry: definitions bounded in size and
//! nesting (refused as `422 invalid_workflow` naming the limit, over HTTP and
//! by the offline `retrace workflow validate`), and names that reach the
//! journal or the logs refusing control and bidirectional characters. Each
//! refusal records nothing.

use reqwest::StatusCode;
use retrace_api::ApiConfig;
use serde_json::{Value, json};

use crate::support::*;

const YAML: &str = "application/yaml";
const JSON: &str = "application/json";

/// The one problem of a refused definition.
fn problem(answer: &(StatusCode, Value)) -> String {
    assert_error(answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_workflow");
    let details = answer.1["error"]["details"].as_array().expect("details");
    assert_eq!(details.len(), 1, "{}", answer.1);
    assert_eq!(details[0]["path"], "", "{}", answer.1);
    details[0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn names_the_depth_limit(message: &str) -> bool {
    message.starts_with(
        "the document nests deeper than 100 levels (a definition may nest at most 100 \
         levels of objects and arrays) at line ",
    )
}

/// A one-step definition whose step `input` is `levels` nested arrays:
/// three levels more in all (the document, `steps`, the step).
fn with_input(levels: usize) -> String {
    format!(
        "name: deep\nsteps:\n  - id: s\n    type: task\n    capability: c\n    input: {}1{}\n",
        "[".repeat(levels),
        "]".repeat(levels)
    )
}

/// `levels` block mappings, each indented under the one before.
fn block(levels: usize) -> String {
    (0..levels)
        .map(|level| format!("{}k:\n", " ".repeat(level)))
        .collect()
}

#[tokio::test]
async fn definitions_nested_past_the_limit_are_refused_naming_it() {
    let s = Server::start().await;
    let position = s.position().await;
    let json_deep = format!(
        r#"{{"name": "deep", "steps": [{{"id": "s", "type": "task", "capability": "c", "input": {}1{}}}]}}"#,
        "[".repeat(98),
        "]".repeat(98)
    );
    let cases = [
        // The finding: `[` 100,000 times, as YAML.
        (YAML, "[".repeat(100_000)),
        (YAML, "{a: ".repeat(50_000)),
        (YAML, with_input(98)),
        (YAML, block(1_000)),
        (YAML, block(101)),
        (JSON, "[".repeat(100_000)),
        (JSON, json_deep),
    ];
    for (content_type, body) in cases {
        for path in ["/v1/workflows/validate", "/v1/workflows"] {
            let answer = s.post_raw(path, content_type, body.clone()).await;
            let message = problem(&answer);
            assert!(names_the_depth_limit(&message), "{path}: {message}");
        }
    }
    assert_eq!(s.position().await, position, "nothing was defined");
    let (_, list) = s.get("/v1/workflows").await;
    assert_eq!(list["workflows"], json!([]));
}

#[tokio::test]
async fn definitions_just_within_the_limit_are_read() {
    let s = Server::start().await;
    let (status, body) = s
        .post_raw("/v1/workflows/validate", YAML, with_input(97))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["valid"], true);
    let (status, body) = s.post_raw("/v1/workflows", YAML, with_input(97)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A block document 100 mappings deep passes the depth check (and then
    // fails as a workflow: it has no `name`).
    let answer = s.post_raw("/v1/workflows/validate", YAML, block(100)).await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_workflow",
    );
    assert!(!answer.1.to_string().contains("levels"), "{}", answer.1);
}

#[tokio::test]
async fn a_definition_past_the_size_limit_is_refused_whatever_the_body_limit() {
    let s = Server::with_config(ApiConfig {
        max_body_bytes: 4 * 1024 * 1024,
        ..ApiConfig::default()
    })
    .await;
    let position = s.position().await;
    let body = format!(
        "name: big\ndescription: {}\nsteps:\n  - id: s\n    type: task\n    capability: c\n",
        "x".repeat(2 * 1024 * 1024)
    );
    let message = problem(&s.post_raw("/v1/workflows", YAML, body.clone()).await);
    assert_eq!(
        message,
        format!(
            "the document is {} bytes; a definition may be at most 1048576 bytes (1 MiB)",
            body.len()
        )
    );
    assert_eq!(s.position().await, position);
}

#[tokio::test]
async fn the_offline_validate_has_the_same_limits() {
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("deep.yaml");
    std::fs::write(&file, "[".repeat(100_000)).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_retrace"))
        .args(["workflow", "validate"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("nests deeper than 100 levels"), "{said}");
}

const RLO: &str = "\u{202E}";

/// The error's message names the character as an escape, never prints it.
fn names_the_character(answer: &(StatusCode, Value)) {
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("U+202E"), "{message}");
    assert!(!answer.1.to_string().contains(RLO), "{}", answer.1);
}

/// A file past the size limit is refused without being read whole, by
/// the offline check and before anything is sent to a server.
#[tokio::test]
async fn a_definition_file_past_the_size_limit_is_refused_unread() {
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("huge.yaml");
    // Sparse: 4 GiB on paper, nothing on disk; reading it whole would take
    // 4 GiB of memory.
    std::fs::File::create(&file)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    for args in [
        vec!["workflow", "validate"],
        vec!["workflow", "apply", "--server", "http://127.0.0.1:9"],
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_retrace"))
            .args(&args)
            .arg(&file)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("the document is more than 1048576 bytes"),
            "{args:?}: {said}"
        );
    }
}

#[tokio::test]
async fn an_agent_name_with_a_bidi_override_is_refused_and_nothing_is_registered() {
    let s = Server::start().await;
    for name in [format!("evil{RLO}gnp.exe"), "bell\u{7}".to_owned()] {
        let answer = s
            .post(
                "/v1/agents",
                json!({"name": name, "capabilities": ["work"]}),
            )
            .await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_registration",
        );
    }
    let answer = s
        .post(
            "/v1/agents",
            json!({"name": format!("a{RLO}b"), "capabilities": ["work"]}),
        )
        .await;
    names_the_character(&answer);
    let (_, agents) = s.get("/v1/agents").await;
    assert_eq!(agents["agents"], json!([]));
    // Names in other scripts are welcome.
    let (status, _) = s
        .post(
            "/v1/agents",
            json!({"name": "عامل-1", "capabilities": ["work"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn names_in_a_definition_refuse_control_and_bidi_characters() {
    let s = Server::start().await;
    let position = s.position().await;
    for doc in [
        json!({"name": format!("w{RLO}"), "steps": [{"id": "s", "type": "task", "capability": "c"}]}),
        json!({"name": "w", "steps": [{"id": format!("s{RLO}"), "type": "task", "capability": "c"}]}),
        json!({"name": "w", "steps": [{"id": "s", "type": "task", "capability": format!("c{RLO}")}]}),
        json!({"name": "w", "steps": [{"id": "s", "type": "event", "event": {"name": format!("go{RLO}")}}]}),
    ] {
        let answer = s.post("/v1/workflows", doc).await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_workflow",
        );
        let problems = answer.1["error"]["details"].to_string();
        assert!(problems.contains("U+202E"), "{problems}");
        assert!(!problems.contains(RLO), "{problems}");
    }
    assert_eq!(s.position().await, position);
    // A workflow looked up by such a name is not there, and the answer
    // does not print the character.
    let answer = s.get(&format!("/v1/workflows/w{RLO}")).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "unknown_workflow");
    names_the_character(&answer);
}

#[tokio::test]
async fn keys_reasons_and_event_names_refuse_bidi_characters_and_record_nothing() {
    let s = Server::start().await;
    s.define(gated_chain("gated", 1)).await;
    let id = s.start_execution("gated", json!({})).await;
    let position = s.position().await;
    let cases = [
        (
            "/v1/executions".to_owned(),
            json!({"workflow": "gated", "idempotencyKey": format!("k{RLO}")}),
        ),
        (
            format!("/v1/executions/{id}/pause"),
            json!({"reason": format!("because{RLO}")}),
        ),
        (
            format!("/v1/executions/{id}/cancel"),
            json!({"reason": "\u{1B}[2Jcleared"}),
        ),
        (
            format!("/v1/executions/{id}/terminate"),
            json!({"reason": format!("x{RLO}")}),
        ),
        (format!("/v1/executions/{id}/signals/go{RLO}"), json!({})),
        (format!("/v1/events/go{RLO}"), json!({})),
    ];
    for (path, body) in cases {
        let answer = s.post(&path, body).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
        assert!(!answer.1.to_string().contains(RLO), "{}", answer.1);
        let message = answer.1["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("U+"), "{path}: {message}");
    }
    assert_eq!(s.position().await, position);
    let (_, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(execution["status"], "running");
    // A reason keeps its line breaks.
    let (status, body) = s
        .post(
            &format!("/v1/executions/{id}/pause"),
            json!({"reason": "first line\n\tsecond line"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_task_failure_names_its_type_cleanly_and_its_message_shows_escapes() {
    let s = Server::start().await;
    s.define(json!({"name": "one", "steps": [
        {"id": "call", "type": "task", "capability": "work"}]}))
        .await;
    let agent = s.register(&["work"]).await;
    let id = s.start_execution("one", json!({})).await;
    let task = s.claim(&agent).await;
    let fail = format!("/v1/tasks/{}/fail", task["id"].as_str().unwrap());
    let position = s.position().await;
    let answer = s
        .post(
            &fail,
            json!({"error": {"type": format!("io{RLO}"), "message": "m", "retryable": false}}),
        )
        .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    names_the_character(&answer);
    assert_eq!(s.position().await, position, "nothing was recorded");
    // A message quoting a program's coloured output is kept, with what a
    // log must not show written out.
    let (status, body) = s
        .post(
            &fail,
            json!({"error": {"type": "io", "message": format!("\u{1B}[31mboom{RLO}\nat line 2"),
                   "retryable": false}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(execution["status"], "failed");
    assert_eq!(
        execution["error"]["message"],
        "\\u{1B}[31mboom\\u{202E}\nat line 2"
    );
}
