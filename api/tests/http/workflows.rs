//! `/v1/workflows`: define (JSON and YAML), validate, list, read.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

fn greet() -> serde_json::Value {
    json!({"name": "greet", "version": "1.0.0", "steps": [
        {"id": "hello", "type": "task", "capability": "mail.send"}]})
}

const GREET_YAML: &str = "
name: greet
version: 1.0.0
steps:
  - id: hello
    type: task
    capability: mail.send
";

#[tokio::test]
async fn defining_is_created_once_then_ok_with_the_same_version() {
    let s = Server::start().await;
    let (status, first) = s.post("/v1/workflows", greet()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["name"], "greet");
    assert_eq!(first["label"], "1.0.0");
    assert_eq!(first["created"], true);
    assert_eq!(
        first["version"].as_str().unwrap().len(),
        64,
        "a blake3 hex hash"
    );
    let position = s.position().await;
    let (status, again) = s.post("/v1/workflows", greet()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["created"], false);
    assert_eq!(again["version"], first["version"]);
    assert_eq!(
        s.position().await,
        position,
        "nothing recorded the second time"
    );
}

#[tokio::test]
async fn a_yaml_definition_is_the_same_workflow_as_its_json_spelling() {
    let s = Server::start().await;
    let (status, yaml) = s
        .post_raw("/v1/workflows", "application/yaml", GREET_YAML)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{yaml}");
    let (status, json) = s.post("/v1/workflows", greet()).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["created"], false);
    assert_eq!(json["version"], yaml["version"]);
}

#[tokio::test]
async fn an_invalid_definition_gets_every_problem_and_records_nothing() {
    let s = Server::start().await;
    let position = s.position().await;
    let broken = json!({
      "name": "broken",
      "steps": [
        { "id": "first", "type": "task", "capabilty": "noop", "next": "second" },
        { "id": "first", "type": "wait", "wait": { "seconds": 5, "until": "2030-01-01T00:00:00Z" } }
      ]
    });
    let answer = s.post("/v1/workflows", broken.clone()).await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_workflow",
    );
    let mut paths: Vec<&str> = answer.1["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()));
            d["path"].as_str().unwrap()
        })
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "steps[0].capability",
            "steps[0].capabilty",
            "steps[0].next",
            "steps[1].id",
            "steps[1].wait"
        ]
    );
    // YAML problems have paths too; a document that does not parse is one
    // problem about the whole document.
    let answer = s
        .post_raw("/v1/workflows", "application/yaml", "name: x\nsteps: [")
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_workflow",
    );
    assert_eq!(answer.1["error"]["details"][0]["path"], "");
    let answer = s.post_raw("/v1/workflows", "application/json", "{").await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_workflow",
    );
    assert_eq!(s.position().await, position);
    assert_eq!(s.get("/v1/workflows").await.1["workflows"], json!([]));
}

#[tokio::test]
async fn a_definition_in_another_format_is_refused() {
    let s = Server::start().await;
    let answer = s
        .post_raw("/v1/workflows", "text/plain", greet().to_string())
        .await;
    assert_error(
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
}

#[tokio::test]
async fn validate_checks_the_same_and_stores_nothing() {
    let s = Server::start().await;
    let position = s.position().await;
    let (status, body) = s.post("/v1/workflows/validate", greet()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["valid"], true);
    assert_eq!(body["name"], "greet");
    let (_, yaml) = s
        .post_raw("/v1/workflows/validate", "application/yaml", GREET_YAML)
        .await;
    assert_eq!(yaml["version"], body["version"]);
    let answer = s
        .post("/v1/workflows/validate", json!({"name": "x", "steps": []}))
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_workflow",
    );
    assert_eq!(answer.1["error"]["details"][0]["path"], "steps");
    assert_eq!(s.position().await, position);
    assert_eq!(s.get("/v1/workflows").await.1["workflows"], json!([]));
}

#[tokio::test]
async fn workflows_list_by_name_and_by_version() {
    let s = Server::start().await;
    let v1 = s.define(greet()).await;
    let mut second = greet();
    second["version"] = json!("2.0.0");
    let v2 = s.define(second).await;
    s.define(inline_chain("another", 1)).await;

    let (status, list) = s.get("/v1/workflows").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["another", "greet"]);
    assert_eq!(list["workflows"][1]["latest"]["version"], v2.as_str());
    assert_eq!(list["workflows"][1]["versions"][0]["version"], v1.as_str());

    let (status, named) = s.get("/v1/workflows/greet").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(named["latest"]["version"], v2.as_str());
    assert_eq!(named["latest"]["label"], "2.0.0");
    assert_eq!(named["latest"]["definition"]["steps"][0]["id"], "hello");
    let versions: Vec<&str> = named["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, [v1.as_str(), v2.as_str()]);

    let (status, one) = s.get(&format!("/v1/workflows/greet/versions/{v1}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["label"], "1.0.0");
    assert_eq!(one["definition"]["name"], "greet");

    let answer = s.get("/v1/workflows/nope").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "unknown_workflow");
    let answer = s.get("/v1/workflows/greet/versions/abc").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "unknown_workflow");
    // A version of another workflow is not a version of this one.
    let answer = s.get(&format!("/v1/workflows/another/versions/{v1}")).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "unknown_workflow");
}

#[tokio::test]
async fn names_of_undefined_workflows_are_warnings_and_the_definition_is_stored() {
    let s = Server::start().await;
    let typo = json!({
        "name": "orders",
        "errorHandlers": [{"error": "*", "handler": "tell_custmer"}],
        "steps": [
            {"id": "fan", "type": "parallel", "parallel": {"branches": [
                {"name": "a", "steps": [
                    {"id": "ship", "type": "subworkflow", "subworkflow": {"workflow": "shipping"}}]}]}}
        ]
    });
    let (status, checked) = s.post("/v1/workflows/validate", typo.clone()).await;
    assert_eq!(status, StatusCode::OK, "{checked}");
    let paths: Vec<&str> = checked["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "steps[0].parallel.branches[0].steps[0].subworkflow.workflow",
            "errorHandlers[0].handler"
        ]
    );
    assert!(
        checked["warnings"][1]["message"]
            .as_str()
            .unwrap()
            .contains("no workflow tell_custmer is defined"),
        "{checked}"
    );
    // Defined anyway (workflows may come in any order), with the same warnings.
    let (status, defined) = s.post("/v1/workflows", typo.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{defined}");
    assert_eq!(defined["warnings"], checked["warnings"]);
    // Once both exist, nothing to warn about.
    s.define(
        json!({"name": "shipping", "steps": [{"id": "s", "type": "task", "capability": "noop"}]}),
    )
    .await;
    s.define(json!({"name": "tell_custmer", "steps": [{"id": "t", "type": "task", "capability": "noop"}]}))
        .await;
    let (status, again) = s.post("/v1/workflows/validate", typo).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["warnings"], json!([]));
}

#[tokio::test]
async fn an_error_handler_that_is_not_defined_is_recorded_as_unavailable() {
    let s = Server::start().await;
    s.define(json!({
        "name": "fragile",
        "errorHandlers": [{"error": "*", "handler": "tell_custmer"}],
        "steps": [{"id": "pick", "type": "decision",
            "decision": {"expression": "input.missing", "branches": {"a": "pick"}}}]
    }))
    .await;
    let (status, started) = s
        .post(
            "/v1/executions",
            json!({"workflow": "fragile", "waitMs": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["status"], "failed");
    let kinds = s.kinds(started["id"].as_str().unwrap()).await;
    let at = kinds.iter().position(|k| k == "handler_unavailable");
    assert!(at.is_some(), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("execution_failed"));
}

#[tokio::test]
async fn a_version_reads_as_a_graph_of_its_steps() {
    let s = Server::start().await;
    let version = s.define(gated_chain("drawn", 2)).await;
    let (status, graph) = s
        .get(&format!("/v1/workflows/drawn/versions/{version}/graph"))
        .await;
    assert_eq!(status, StatusCode::OK, "{graph}");
    let nodes: Vec<(&str, &str)> = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(nodes, [("gate", "event"), ("s0", "task"), ("s1", "task")]);
    assert_eq!(
        graph["edges"],
        json!([
            {"from": "gate", "to": "s0", "kind": "next", "label": null},
            {"from": "s0", "to": "s1", "kind": "next", "label": null},
        ])
    );
    let other = "0".repeat(64);
    assert_error(
        &s.get(&format!("/v1/workflows/drawn/versions/{other}/graph"))
            .await,
        StatusCode::NOT_FOUND,
        "unknown_workflow",
    );
}
