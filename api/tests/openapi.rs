//! The OpenAPI document (`retrace_api::openapi::document_text`): the committed
//! copy in `docs/openapi.json` is the one the code generates, it describes
//! exactly the routes the router serves, the server answers it at
//! `GET /openapi.json`, and real answers match the schemas it gives them.
//!
//! `RETRACE_UPDATE_OPENAPI=1 cargo test -p retrace-api --test openapi`
//! rewrites `docs/openapi.json`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "http/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use reqwest::StatusCode;
use retrace_api::openapi;
use retrace_api::router::routes;
use serde_json::{Value, json};

use support::{PATIENCE, Server};

/// The variable that makes the first test rewrite the committed copy.
const UPDATE: &str = "RETRACE_UPDATE_OPENAPI";
const REGENERATE: &str = "RETRACE_UPDATE_OPENAPI=1 cargo test -p retrace-api --test openapi";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

/// The document as `docs/openapi.json` holds it: pretty, with a trailing
/// newline.
fn generated() -> String {
    let mut text = openapi::document_text(&retrace_api::router::access_table()).unwrap();
    text.push('\n');
    text
}

/// The document as JSON.
fn doc() -> Value {
    serde_json::from_str(&openapi::document_text(&retrace_api::router::access_table()).unwrap())
        .unwrap()
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every (METHOD, path) the document describes.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    found
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let path = committed_path();
    let fresh = generated();
    if std::env::var(UPDATE).is_ok_and(|v| v == "1") {
        std::fs::write(&path, &fresh).unwrap();
        eprintln!("rewrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let line = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()));
        panic!(
            "docs/openapi.json is not the document the code generates (they differ from \
             line {}: committed {:?}, generated {:?}).\nRegenerate it with\n\n    {REGENERATE}\n\n\
             and commit it with the change.",
            line + 1,
            committed.lines().nth(line).unwrap_or("<end of file>"),
            fresh.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
}

#[test]
fn the_document_describes_exactly_the_routes_the_router_serves() {
    let served: BTreeSet<(String, String)> = routes()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_owned()))
        .collect();
    let documented = documented(&doc());
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "served but not in the OpenAPI document (give the handler a #[utoipa::path] and \
         list it in api/src/openapi.rs): {undocumented:?}\n\
         in the document but not served: {unserved:?}"
    );
}

/// A documented path with every `{parameter}` filled in.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').unwrap() + open;
        out.push_str(&rest[..open]);
        out.push('p');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn the_server_routes_every_documented_path_with_exactly_its_methods() {
    let s = Server::start().await;
    let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (method, path) in documented(&doc()) {
        by_path.entry(path).or_default().insert(method);
    }
    assert!(
        by_path.values().flatten().all(|m| m != "TRACE"),
        "the probe below needs a method no endpoint takes"
    );
    for (path, methods) in &by_path {
        // A method the path does not take: the router answers 405 and says
        // which methods it takes (GET brings HEAD with it).
        let url = s.url(&concrete(path));
        let response = s
            .client
            .request(reqwest::Method::TRACE, &url)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "TRACE {url}: the router does not serve {path}"
        );
        let allow: BTreeSet<String> = response.headers()["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| m != "HEAD")
            .collect();
        assert_eq!(&allow, methods, "the methods the router takes on {path}");
    }
    // The probe tells a path no route has apart.
    let response = s
        .client
        .request(reqwest::Method::TRACE, s.url("/v1/undocumented"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_server_answers_the_document() {
    let s = Server::start().await;
    let response = s.client.get(s.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let served: Value = response.json().await.unwrap();
    assert_eq!(served, doc());
    assert_eq!(served["info"]["title"], "retrace");
    assert_eq!(served["info"]["version"], env!("CARGO_PKG_VERSION"));
}

/// Every integer schema reachable from `schema` (through `$ref`,
/// properties, items and combinators), with where it is.
fn integers<'a>(doc: &'a Value, schema: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    if let Some(reference) = schema["$ref"].as_str() {
        // Request schemas do not recurse, so this ends.
        integers(doc, resolve(doc, reference), at.clone(), out);
    }
    let is_integer = match &schema["type"] {
        Value::String(kind) => kind == "integer",
        Value::Array(kinds) => kinds.iter().any(|k| k == "integer"),
        _ => false,
    };
    if is_integer {
        out.push((at.clone(), schema));
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        integers(doc, property, format!("{at}.{name}"), out);
    }
    if schema.get("items").is_some() {
        integers(doc, &schema["items"], format!("{at}[]"), out);
    }
    for combinator in ["anyOf", "oneOf", "allOf"] {
        for member in schema[combinator].as_array().into_iter().flatten() {
            integers(doc, member, at.clone(), out);
        }
    }
}

/// The server refuses every integer outside its type's range or the
/// field's own, so the document states both ends of every integer a
/// request can carry (parameters and JSON bodies).
/// Every `$ref` string anywhere in `value`.
fn references(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        out.insert(r.clone());
                    }
                    _ => references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_names_a_schema_the_document_has() {
    let doc = doc();
    let mut found = BTreeSet::new();
    references(&doc, &mut found);
    assert!(!found.is_empty());
    let dangling: Vec<&String> = found
        .iter()
        .filter(|r| {
            r.strip_prefix("#/components/schemas/")
                .is_none_or(|name| doc["components"]["schemas"].get(name).is_none())
        })
        .collect();
    assert!(dangling.is_empty(), "references to nothing: {dangling:?}");
}

#[test]
fn every_integer_a_request_carries_has_its_range() {
    let doc = doc();
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let operation = &item[method];
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let at = format!("{method} {path} {}", parameter["name"]);
                integers(&doc, &parameter["schema"], at, &mut found);
            }
            let body = &operation["requestBody"]["content"]["application/json"]["schema"];
            integers(&doc, body, format!("{method} {path} body"), &mut found);
        }
    }
    assert!(found.len() > 10, "{found:?}");
    for (at, schema) in found {
        assert!(
            schema["minimum"].is_u64() && schema["maximum"].is_u64(),
            "{at}: an integer without its range: {schema}"
        );
    }
}

/// The two streams answer `text/event-stream`, described frame by frame.
#[test]
fn the_streams_are_described_as_event_streams() {
    let doc = doc();
    for (path, frame, view) in [
        (
            "/v1/executions/{id}/events/stream",
            "ExecutionEventFrame",
            "EventView",
        ),
        ("/v1/events/stream", "GlobalEventFrame", "GlobalEventView"),
    ] {
        let content = doc["paths"][path]["get"]["responses"]["200"]["content"]
            .as_object()
            .unwrap();
        assert_eq!(
            content.keys().collect::<Vec<_>>(),
            ["text/event-stream"],
            "{path}"
        );
        assert_eq!(
            content["text/event-stream"]["schema"]["$ref"],
            format!("#/components/schemas/{frame}"),
            "{path}"
        );
        let frames = doc["components"]["schemas"][frame]["anyOf"]
            .as_array()
            .unwrap();
        assert_eq!(
            frames[0]["properties"]["data"]["contentSchema"]["$ref"],
            format!("#/components/schemas/{view}")
        );
        assert_eq!(
            frames.last().unwrap()["properties"]["data"]["contentSchema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
    }
    // The engine-wide stream also carries breaker changes when asked.
    assert_eq!(
        doc["components"]["schemas"]["GlobalEventFrame"]["anyOf"][1]["properties"]["data"]["contentSchema"]
            ["$ref"],
        "#/components/schemas/BreakerChangeView"
    );
}

// ----- real answers against the documented schemas -----

/// Checks answers against the document: each must be a documented status
/// of its operation, its body must match that response's schema (objects
/// are taken as closed: a field the document does not name is a mismatch),
/// and an error's code must be one the response lists.
struct Conformance {
    doc: Value,
    /// (METHOD, path template) of every operation exercised.
    exercised: BTreeSet<(String, String)>,
    /// Sent as `Authorization: Bearer` when set.
    token: Option<String>,
}

impl Conformance {
    fn new() -> Self {
        Conformance {
            doc: doc(),
            exercised: BTreeSet::new(),
            token: None,
        }
    }

    /// Sends a request to `path`, an instance of the documented `template`,
    /// checks the answer, and returns it.
    async fn call(
        &mut self,
        s: &Server,
        method: &str,
        template: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method_lower = method.to_lowercase();
        let mut request = s
            .client
            .request(method.parse().unwrap(), s.url(path))
            .timeout(PATIENCE);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        match body {
            Some(body) => request = request.json(&body),
            // A POST says it is JSON even with no body (see `guard`).
            None if method == "POST" => {
                request = request.header("content-type", "application/json")
            }
            None => {}
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        if status == StatusCode::NO_CONTENT {
            let documented = &self.doc["paths"][template][&method_lower]["responses"]["204"];
            assert!(
                documented.is_object() && documented.get("content").is_none(),
                "{method} {path} answered 204, which the document does not list without a body"
            );
            assert!(
                text.is_empty(),
                "{method} {path}: a 204 with a body: {text}"
            );
            self.exercised
                .insert((method.to_owned(), template.to_owned()));
            return (status, Value::Null);
        }
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        let operation = &self.doc["paths"][template][&method_lower];
        assert!(
            operation.is_object(),
            "{method} {template} is not in the document"
        );
        let documented = &operation["responses"][status.as_str()];
        assert!(
            documented.is_object(),
            "{method} {path} answered {status}, which the document does not list: {body}"
        );
        let schema = &documented["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template} {status} has no JSON schema"
        );
        let mut mismatches = Vec::new();
        check(&self.doc, schema, &body, "$", true, &mut mismatches);
        assert!(
            mismatches.is_empty(),
            "{method} {path} {status}: the body does not match the document:\n{}\n{body:#}",
            mismatches.join("\n")
        );
        if !status.is_success() {
            let code = body["error"]["code"].as_str().unwrap();
            let description = documented["description"].as_str().unwrap();
            assert!(
                description.contains(&format!("`{code}`")),
                "{method} {template} answered {status} {code}, which its {status} response \
                 does not list: {description}"
            );
        }
        self.exercised
            .insert((method.to_owned(), template.to_owned()));
        (status, body)
    }

    /// Checks `value` against the named component schema.
    fn check_schema(&self, name: &str, value: &Value) {
        let schema = json!({"$ref": format!("#/components/schemas/{name}")});
        let mut mismatches = Vec::new();
        check(&self.doc, &schema, value, "$", true, &mut mismatches);
        assert!(
            mismatches.is_empty(),
            "does not match {name}:\n{}\n{value:#}",
            mismatches.join("\n")
        );
    }
}

/// The component a `$ref` names.
fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let name = reference
        .strip_prefix("#/components/schemas/")
        .unwrap_or_else(|| panic!("a $ref outside the components: {reference}"));
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "dangling $ref {reference}");
    schema
}

/// The property names an object schema allows, through `$ref` and
/// `allOf`; `None` when it allows any (no `properties`, or
/// `additionalProperties` other than `false`).
fn allowed_keys(doc: &Value, schema: &Value) -> Option<BTreeSet<String>> {
    if let Some(reference) = schema["$ref"].as_str() {
        return allowed_keys(doc, resolve(doc, reference));
    }
    if let Some(all) = schema["allOf"].as_array() {
        let mut keys = BTreeSet::new();
        for member in all {
            keys.extend(allowed_keys(doc, member)?);
        }
        return Some(keys);
    }
    let properties = schema["properties"].as_object()?;
    match schema.get("additionalProperties") {
        None | Some(Value::Bool(false)) => Some(properties.keys().cloned().collect()),
        Some(_) => None,
    }
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("a type this check does not know: {other}"),
    }
}

/// Checks `value` against `schema`, for the part of JSON Schema the
/// document uses; `closed` makes fields the schema does not name a
/// mismatch.
fn check(
    doc: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    closed: bool,
    out: &mut Vec<String>,
) {
    if let Some(reference) = schema["$ref"].as_str() {
        check(doc, resolve(doc, reference), value, at, closed, out);
    }
    if let Some(all) = schema["allOf"].as_array() {
        for member in all {
            check(doc, member, value, at, false, out);
        }
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let matching = one
            .iter()
            .filter(|member| {
                let mut mismatches = Vec::new();
                check(doc, member, value, at, closed, &mut mismatches);
                mismatches.is_empty()
            })
            .count();
        if matching != 1 {
            out.push(format!("{at}: matches {matching} of the oneOf schemas"));
        }
    }
    let kinds: Vec<&str> = match &schema["type"] {
        Value::String(kind) => vec![kind.as_str()],
        Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !kinds.is_empty() && !kinds.iter().any(|kind| type_matches(kind, value)) {
        out.push(format!("{at}: {value} is not of type {kinds:?}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        out.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(text) = value.as_str() {
        let well_formed = match schema["format"].as_str() {
            Some("uuid") => text.len() == 36 && text.split('-').count() == 5,
            Some("date-time") => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            _ => true,
        };
        if !well_formed {
            out.push(format!("{at}: {text:?} is not a {}", schema["format"]));
        }
    }
    if let Value::Object(fields) = value {
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                if let Some(field) = fields.get(name) {
                    check(doc, property, field, &format!("{at}.{name}"), true, out);
                }
            }
            if let Some(required) = schema["required"].as_array() {
                for name in required.iter().filter_map(Value::as_str) {
                    if !fields.contains_key(name) {
                        out.push(format!("{at}: the required field `{name}` is missing"));
                    }
                }
            }
        }
        if let Some(extra) = schema.get("additionalProperties").filter(|s| s.is_object()) {
            let named = schema["properties"].as_object();
            for (name, field) in fields {
                if !named.is_some_and(|n| n.contains_key(name)) {
                    check(doc, extra, field, &format!("{at}.{name}"), true, out);
                }
            }
        }
        if closed
            && schema.get("$ref").is_none()
            && let Some(allowed) = allowed_keys(doc, schema)
        {
            for name in fields.keys().filter(|name| !allowed.contains(*name)) {
                out.push(format!("{at}: the field `{name}` is not in the document"));
            }
        }
    }
    if let (Value::Array(items), Some(item)) = (value, schema.get("items")) {
        for (i, element) in items.iter().enumerate() {
            check(doc, item, element, &format!("{at}[{i}]"), true, out);
        }
    }
}

#[test]
fn the_schema_check_finds_mismatches() {
    let doc = doc();
    let schema = json!({"$ref": "#/components/schemas/ErrorBody"});
    let mut out = Vec::new();
    check(
        &doc,
        &schema,
        &json!({"error": {"code": "unknown_execution", "message": "no execution x"}}),
        "$",
        true,
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    for wrong in [
        json!({"error": {"code": "no_such_code", "message": "m"}}),
        json!({"error": {"code": "internal"}}),
        json!({"error": {"code": "internal", "message": "m", "extra": 1}}),
        json!({"error": {"code": "internal", "message": 7}}),
        json!({"error": {"code": "internal", "message": "m", "details": [{"path": ""}]}}),
    ] {
        let mut out = Vec::new();
        check(&doc, &schema, &wrong, "$", true, &mut out);
        assert!(!out.is_empty(), "{wrong} passed");
    }
    // Fields of either half of an allOf are allowed; others are not.
    let global = json!({"$ref": "#/components/schemas/GlobalEventView"});
    let event = json!({"position": 3, "executionId": "01a1fb96-2826-7012-96b6-9bd448d552cf",
        "workflow": "w", "seq": 1, "type": "execution_started",
        "at": "2026-11-21T00:51:24.326Z", "data": {}, "hash": "ab"});
    let mut out = Vec::new();
    check(&doc, &global, &event, "$", true, &mut out);
    assert!(out.is_empty(), "{out:?}");
    let mut extra = event.clone();
    extra["surprise"] = json!(true);
    let mut out = Vec::new();
    check(&doc, &global, &extra, "$", true, &mut out);
    assert!(!out.is_empty());
}

/// A task step that holds the execution on failure, then an event step.
fn gated() -> Value {
    json!({"name": "shapes", "version": "1.0.0", "steps": [
        {"id": "work", "type": "task", "capability": "shape.work",
         "input": {"n": "$.input.n"}, "onFailure": "pause", "next": "wait"},
        {"id": "wait", "type": "event", "event": {"name": "shape.go"}}]})
}

/// A task step whose failure fails the execution.
fn doomed() -> Value {
    json!({"name": "doomed", "steps": [
        {"id": "work", "type": "task", "capability": "shape.work"}]})
}

/// Claims the next task and reports it failed.
async fn fail_next_task(c: &mut Conformance, s: &Server, poll: &Value, fail: &Value) {
    let (_, tasks) = c
        .call(
            s,
            "POST",
            "/v1/tasks/poll",
            "/v1/tasks/poll",
            Some(poll.clone()),
        )
        .await;
    let task = tasks["tasks"][0]["id"].as_str().unwrap().to_owned();
    c.call(
        s,
        "POST",
        "/v1/tasks/{id}/fail",
        &format!("/v1/tasks/{task}/fail"),
        Some(fail.clone()),
    )
    .await;
}

/// Asserts the execution is paused, holding a failed step.
async fn assert_held(c: &mut Conformance, s: &Server, id: &str) {
    let (_, held) = c
        .call(
            s,
            "GET",
            "/v1/executions/{id}",
            &format!("/v1/executions/{id}"),
            None,
        )
        .await;
    assert_eq!(held["status"], "paused", "{held}");
    assert!(
        !held["failedSteps"].as_array().unwrap().is_empty(),
        "{held}"
    );
}

#[tokio::test]
async fn real_answers_match_the_documented_schemas() {
    let s = Server::start().await;
    let mut c = Conformance::new();

    // Health, metrics, the document itself.
    c.call(&s, "GET", "/healthz", "/healthz", None).await;
    c.call(&s, "GET", "/readyz", "/readyz", None).await;
    c.call(&s, "GET", "/openapi.json", "/openapi.json", None)
        .await;

    // Workflows.
    let (status, defined) = c
        .call(&s, "POST", "/v1/workflows", "/v1/workflows", Some(gated()))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let version = defined["version"].as_str().unwrap().to_owned();
    let (status, _) = c
        .call(&s, "POST", "/v1/workflows", "/v1/workflows", Some(gated()))
        .await;
    assert_eq!(status, StatusCode::OK);
    c.call(&s, "POST", "/v1/workflows", "/v1/workflows", Some(doomed()))
        .await;
    let (status, _) = c
        .call(
            &s,
            "POST",
            "/v1/workflows",
            "/v1/workflows",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    c.call(
        &s,
        "POST",
        "/v1/workflows/validate",
        "/v1/workflows/validate",
        Some(gated()),
    )
    .await;
    c.call(&s, "GET", "/v1/workflows", "/v1/workflows", None)
        .await;
    c.call(
        &s,
        "GET",
        "/v1/workflows/{name}",
        "/v1/workflows/shapes",
        None,
    )
    .await;
    c.call(
        &s,
        "GET",
        "/v1/workflows/{name}",
        "/v1/workflows/none",
        None,
    )
    .await;
    c.call(
        &s,
        "GET",
        "/v1/workflows/{name}/versions/{version}",
        &format!("/v1/workflows/shapes/versions/{version}"),
        None,
    )
    .await;
    let (status, graph) = c
        .call(
            &s,
            "GET",
            "/v1/workflows/{name}/versions/{version}/graph",
            &format!("/v1/workflows/shapes/versions/{version}/graph"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{graph}");
    assert!(!graph["nodes"].as_array().unwrap().is_empty());

    // An agent.
    let (_, registered) = c
        .call(
            &s,
            "POST",
            "/v1/agents",
            "/v1/agents",
            Some(json!({"name": "shaper", "capabilities": ["shape.work"], "maxConcurrency": 2})),
        )
        .await;
    let agent = registered["id"].as_str().unwrap().to_owned();
    c.call(&s, "GET", "/v1/agents", "/v1/agents", None).await;
    c.call(
        &s,
        "GET",
        "/v1/agents/{id}",
        &format!("/v1/agents/{agent}"),
        None,
    )
    .await;
    c.call(
        &s,
        "POST",
        "/v1/agents/{id}/heartbeat",
        &format!("/v1/agents/{agent}/heartbeat"),
        None,
    )
    .await;
    let poll = json!({"agentId": agent, "waitMs": PATIENCE.as_millis() as u64});

    // One execution through a task, its result and a published event.
    let (status, started) = c
        .call(
            &s,
            "POST",
            "/v1/executions",
            "/v1/executions",
            Some(json!({"workflow": "shapes", "input": {"n": 1}, "idempotencyKey": "one"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let one = started["id"].as_str().unwrap().to_owned();
    // Signal-with-start on the same key: the signal goes to that one.
    let (status, signalled) = c
        .call(
            &s,
            "POST",
            "/v1/executions/signal-with-start",
            "/v1/executions/signal-with-start",
            Some(json!({"workflow": "shapes", "idempotencyKey": "one",
                        "signal": {"name": "nothing.waits", "payload": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{signalled}");
    assert_eq!(signalled["id"], one.as_str());
    let (_, tasks) = c
        .call(
            &s,
            "POST",
            "/v1/tasks/poll",
            "/v1/tasks/poll",
            Some(poll.clone()),
        )
        .await;
    let task = tasks["tasks"][0]["id"].as_str().unwrap().to_owned();
    c.call(
        &s,
        "POST",
        "/v1/tasks/{id}/heartbeat",
        &format!("/v1/tasks/{task}/heartbeat"),
        Some(json!({"agentId": agent})),
    )
    .await;
    c.call(
        &s,
        "POST",
        "/v1/tasks/{id}/complete",
        &format!("/v1/tasks/{task}/complete"),
        Some(json!({"output": {"done": true}})),
    )
    .await;
    let (status, _) = c
        .call(
            &s,
            "POST",
            "/v1/tasks/{id}/complete",
            &format!("/v1/tasks/{task}/complete"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    c.call(
        &s,
        "GET",
        "/v1/executions/{id}",
        &format!("/v1/executions/{one}"),
        None,
    )
    .await;
    c.call(
        &s,
        "POST",
        "/v1/events/{name}",
        "/v1/events/shape.go",
        Some(json!({"payload": {"by": "test"}})),
    )
    .await;

    // One held on a failure: retried, held again, skipped, signalled.
    let (_, started) = c
        .call(
            &s,
            "POST",
            "/v1/executions",
            "/v1/executions",
            Some(json!({"workflow": "shapes", "input": {"n": 2}})),
        )
        .await;
    let two = started["id"].as_str().unwrap().to_owned();
    let fail = json!({"error": {"type": "shape_error", "message": "no", "retryable": false}});
    fail_next_task(&mut c, &s, &poll, &fail).await;
    assert_held(&mut c, &s, &two).await;
    c.call(
        &s,
        "POST",
        "/v1/executions/{id}/retry",
        &format!("/v1/executions/{two}/retry"),
        None,
    )
    .await;
    fail_next_task(&mut c, &s, &poll, &fail).await;
    assert_held(&mut c, &s, &two).await;
    c.call(
        &s,
        "POST",
        "/v1/executions/{id}/skip",
        &format!("/v1/executions/{two}/skip"),
        Some(json!({"output": {"skipped": true}})),
    )
    .await;
    let (_, signalled) = c
        .call(
            &s,
            "POST",
            "/v1/executions/{id}/signals/{name}",
            &format!("/v1/executions/{two}/signals/shape.go"),
            None,
        )
        .await;
    assert_eq!(signalled["status"], "completed", "{signalled}");
    let (status, _) = c
        .call(
            &s,
            "POST",
            "/v1/executions/{id}/resume",
            &format!("/v1/executions/{two}/resume"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // One that fails, is redriven, and terminated.
    let (_, started) = c
        .call(
            &s,
            "POST",
            "/v1/executions",
            "/v1/executions",
            Some(json!({"workflow": "doomed"})),
        )
        .await;
    let three = started["id"].as_str().unwrap().to_owned();
    fail_next_task(&mut c, &s, &poll, &fail).await;
    let (_, failed) = c
        .call(
            &s,
            "GET",
            "/v1/executions/{id}",
            &format!("/v1/executions/{three}"),
            None,
        )
        .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["error"].is_object(), "{failed}");
    c.call(
        &s,
        "POST",
        "/v1/executions/{id}/redrive",
        &format!("/v1/executions/{three}/redrive"),
        None,
    )
    .await;
    c.call(
        &s,
        "POST",
        "/v1/executions/{id}/terminate",
        &format!("/v1/executions/{three}/terminate"),
        Some(json!({"reason": "enough"})),
    )
    .await;

    // One paused, resumed and cancelled while its task waits.
    let (_, started) = c
        .call(
            &s,
            "POST",
            "/v1/executions",
            "/v1/executions",
            Some(json!({"workflow": "shapes", "input": {"n": 4}})),
        )
        .await;
    let four = started["id"].as_str().unwrap().to_owned();
    for command in ["pause", "resume", "cancel"] {
        let (status, _) = c
            .call(
                &s,
                "POST",
                &format!("/v1/executions/{{id}}/{command}"),
                &format!("/v1/executions/{four}/{command}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{command}");
    }

    // Lists, pages, streams, errors.
    c.call(&s, "GET", "/v1/executions", "/v1/executions?limit=2", None)
        .await;
    c.call(
        &s,
        "GET",
        "/v1/executions",
        "/v1/executions?status=sleeping",
        None,
    )
    .await;
    let (_, page) = c
        .call(
            &s,
            "GET",
            "/v1/executions/{id}/events",
            &format!("/v1/executions/{two}/events"),
            None,
        )
        .await;
    assert!(!page["events"].as_array().unwrap().is_empty());
    let (status, replayed) = c
        .call(
            &s,
            "GET",
            "/v1/executions/{id}/replay",
            &format!("/v1/executions/{two}/replay?until=1"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    assert_eq!(replayed["until"], 1);
    let (status, _) = c
        .call(
            &s,
            "GET",
            "/v1/executions/{id}/replay",
            &format!("/v1/executions/{two}/replay?until=0"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, chain) = c
        .call(
            &s,
            "GET",
            "/v1/executions/{id}/verify",
            &format!("/v1/executions/{two}/verify"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{chain}");
    assert_eq!(chain["verified"], true);
    c.call(
        &s,
        "GET",
        "/v1/executions/{id}",
        "/v1/executions/01a1fb96-2826-7012-96b6-9bd448d552cf",
        None,
    )
    .await;
    c.call(
        &s,
        "POST",
        "/v1/tasks/poll",
        "/v1/tasks/poll",
        Some(json!({"agentId": "01a1fb96-2826-7012-96b6-9bd448d552cf", "waitMs": 0})),
    )
    .await;
    for frame in s.stream_to_end(&two).await {
        c.check_schema("EventView", &frame.json());
    }
    let mut all = s.stream("/v1/events/stream", None).await;
    for _ in 0..5 {
        let frame = all.next().await.unwrap();
        c.check_schema("GlobalEventView", &frame.json());
    }
    drop(all);
    c.call(&s, "GET", "/v1/metrics", "/v1/metrics", None).await;
    c.call(
        &s,
        "DELETE",
        "/v1/agents/{id}",
        &format!("/v1/agents/{agent}"),
        None,
    )
    .await;

    let (status, reported) = c
        .call(
            &s,
            "POST",
            "/v1/tasks/report",
            "/v1/tasks/report",
            Some(json!({"reports": [
                {"id": "01a1fb96-2826-7012-96b6-9bd448d552cf.1.1", "output": 1},
                {"id": "01a1fb96-2826-7012-96b6-9bd448d552cf.2.1",
                 "error": {"type": "x", "message": "m"}},
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reported}");
    assert_eq!(reported["reports"][1]["accepted"], false);

    // Schedules: created, refused, read, changed, triggered, deleted.
    let hourly = json!({"id": "shapes-hourly", "workflow": "shapes", "input": {"n": 5},
                        "everyMs": 3_600_000, "priority": 2});
    let (status, created) = c
        .call(
            &s,
            "POST",
            "/v1/schedules",
            "/v1/schedules",
            Some(hourly.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _) = c
        .call(&s, "POST", "/v1/schedules", "/v1/schedules", Some(hourly))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let bad = json!({"id": "bad", "workflow": "shapes", "cron": "61 * * * *"});
    let (status, refused) = c
        .call(&s, "POST", "/v1/schedules", "/v1/schedules", Some(bad))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    c.call(&s, "GET", "/v1/schedules", "/v1/schedules", None)
        .await;
    c.call(
        &s,
        "GET",
        "/v1/schedules/{id}",
        "/v1/schedules/shapes-hourly",
        None,
    )
    .await;
    let (status, _) = c
        .call(
            &s,
            "GET",
            "/v1/schedules/{id}",
            "/v1/schedules/nobody",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, paused) = c
        .call(
            &s,
            "PATCH",
            "/v1/schedules/{id}",
            "/v1/schedules/shapes-hourly",
            Some(json!({"paused": true, "cron": "0 3 * * *", "timezone": "Europe/Berlin"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    let (status, _) = c
        .call(
            &s,
            "PATCH",
            "/v1/schedules/{id}",
            "/v1/schedules/shapes-hourly",
            Some(json!({"id": "renamed"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = c
        .call(
            &s,
            "PATCH",
            "/v1/schedules/{id}",
            "/v1/schedules/nobody",
            Some(json!({"paused": true})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, triggered) = c
        .call(
            &s,
            "POST",
            "/v1/schedules/{id}/trigger",
            "/v1/schedules/shapes-hourly/trigger",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{triggered}");
    assert_eq!(triggered["schedule"]["recent"][0]["outcome"], "triggered");
    let (status, _) = c
        .call(
            &s,
            "POST",
            "/v1/schedules/{id}/trigger",
            "/v1/schedules/nobody/trigger",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, deleted) = c
        .call(
            &s,
            "DELETE",
            "/v1/schedules/{id}",
            "/v1/schedules/shapes-hourly",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["counts"]["fired"], 1);
    let (status, _) = c
        .call(
            &s,
            "DELETE",
            "/v1/schedules/{id}",
            "/v1/schedules/shapes-hourly",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Circuit breakers: set, refused, read, listed (and in the metrics),
    // removed.
    let breaker = "/v1/capabilities/{capability}/breaker";
    let settings = json!({"failures": 5, "windowMs": 60_000, "coolDownMs": 30_000});
    let (status, set) = c
        .call(
            &s,
            "PUT",
            breaker,
            "/v1/capabilities/shapes.work/breaker",
            Some(settings.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    let (status, _) = c
        .call(
            &s,
            "PUT",
            breaker,
            "/v1/capabilities/shapes.work/breaker",
            Some(json!({"failures": 0, "windowMs": 60_000, "coolDownMs": 30_000})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = c
        .call(
            &s,
            "PUT",
            breaker,
            "/v1/capabilities/shapes.work/breaker",
            Some(json!({"failures": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    c.call(
        &s,
        "GET",
        breaker,
        "/v1/capabilities/shapes.work/breaker",
        None,
    )
    .await;
    let (status, _) = c
        .call(&s, "GET", breaker, "/v1/capabilities/nobody/breaker", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, listed) = c
        .call(&s, "GET", "/v1/breakers", "/v1/breakers", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["breakers"][0], set);
    let (_, metrics) = c.call(&s, "GET", "/v1/metrics", "/v1/metrics", None).await;
    assert_eq!(metrics["breakers"]["shapes.work"]["state"], "closed");
    let (status, _) = c
        .call(
            &s,
            "DELETE",
            breaker,
            "/v1/capabilities/shapes.work/breaker",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = c
        .call(
            &s,
            "DELETE",
            breaker,
            "/v1/capabilities/shapes.work/breaker",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Capability limits: set, refused, read, listed, removed (and then
    // unknown).
    let limits = "/v1/capabilities/{capability}/limits";
    let (status, set) = c
        .call(
            &s,
            "PUT",
            limits,
            "/v1/capabilities/shape.work/limits",
            Some(json!({"concurrency": 4, "rateLimit": {"limit": 100, "periodMs": 60_000}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    for bad in [
        json!({"concurrency": 0}),
        json!({}),
        json!({"concurrency": 1, "burst": 2}),
    ] {
        let (status, _) = c
            .call(
                &s,
                "PUT",
                limits,
                "/v1/capabilities/shape.work/limits",
                Some(bad),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (status, shown) = c
        .call(
            &s,
            "GET",
            limits,
            "/v1/capabilities/shape.work/limits",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["capability"], set["capability"]);
    let (status, listed) = c.call(&s, "GET", "/v1/limits", "/v1/limits", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["capabilities"][0]["capability"], "shape.work");
    let (status, _) = c
        .call(
            &s,
            "DELETE",
            limits,
            "/v1/capabilities/shape.work/limits",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for method in ["GET", "DELETE"] {
        let (status, _) = c
            .call(
                &s,
                method,
                limits,
                "/v1/capabilities/shape.work/limits",
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    // Webhooks: created (with its secret), refused, read, listed, deleted
    // (and then unknown).
    let hook = json!({"url": "https://hooks.example.com/retrace",
        "events": ["execution_completed"], "workflow": "shape"});
    let (status, created) = c
        .call(&s, "POST", "/v1/webhooks", "/v1/webhooks", Some(hook))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let hook_id = created["id"].as_str().unwrap().to_owned();
    for bad in [
        json!({"url": "http://10.0.0.1/", "events": ["execution_completed"]}),
        json!({"url": "https://e.com/", "events": ["nope"]}),
        json!({"url": "https://e.com/", "events": [], "extra": 1}),
    ] {
        let (status, _) = c
            .call(&s, "POST", "/v1/webhooks", "/v1/webhooks", Some(bad))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let one = format!("/v1/webhooks/{hook_id}");
    let (status, shown) = c.call(&s, "GET", "/v1/webhooks/{id}", &one, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["id"], created["id"]);
    let (status, _) = c
        .call(&s, "GET", "/v1/webhooks", "/v1/webhooks", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = c.call(&s, "DELETE", "/v1/webhooks/{id}", &one, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for method in ["GET", "DELETE"] {
        let (status, _) = c.call(&s, method, "/v1/webhooks/{id}", &one, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    // Tokens, last: the first one switches tokens on.
    let create = json!({"name": "root", "role": "admin"});
    let (status, root) = c
        .call(&s, "POST", "/v1/tokens", "/v1/tokens", Some(create))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = c.call(&s, "GET", "/v1/tokens", "/v1/tokens", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    c.token = root["secret"].as_str().map(str::to_owned);
    let viewer = json!({"name": "eyes", "role": "viewer", "expiresInMs": 60_000});
    let (_, eyes) = c
        .call(&s, "POST", "/v1/tokens", "/v1/tokens", Some(viewer))
        .await;
    let bad = json!({"name": "-", "role": "viewer"});
    let (status, _) = c
        .call(&s, "POST", "/v1/tokens", "/v1/tokens", Some(bad))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    c.call(&s, "GET", "/v1/tokens", "/v1/tokens", None).await;
    c.call(&s, "GET", "/v1/tokens/{name}", "/v1/tokens/eyes", None)
        .await;
    let (status, _) = c
        .call(&s, "GET", "/v1/tokens/{name}", "/v1/tokens/nobody", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let admin = c.token.replace(eyes["secret"].as_str().unwrap().to_owned());
    let (status, _) = c
        .call(
            &s,
            "POST",
            "/v1/executions/{id}/pause",
            &format!("/v1/executions/{two}/pause"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    c.token = admin;
    let (status, _) = c
        .call(&s, "DELETE", "/v1/tokens/{name}", "/v1/tokens/eyes", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = c
        .call(&s, "DELETE", "/v1/tokens/{name}", "/v1/tokens/eyes", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Every operation that answers JSON was exercised above.
    let doc = doc();
    let json_operations: BTreeSet<(String, String)> = documented(&doc)
        .into_iter()
        .filter(|(method, path)| {
            let responses = &doc["paths"][path][method.to_lowercase()]["responses"];
            responses.as_object().unwrap().iter().any(|(status, r)| {
                status.starts_with('2') && r["content"]["application/json"].is_object()
            })
        })
        .collect();
    let missed: Vec<_> = json_operations.difference(&c.exercised).collect();
    assert!(missed.is_empty(), "not exercised here: {missed:?}");
}
