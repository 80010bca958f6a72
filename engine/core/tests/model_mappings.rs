//! Mappings: paths, expressions and literals, applied through objects and arrays.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use retrace_core::model::Mapping;
use serde_json::{Value, json};

fn apply(mapping: Value, context: &Value) -> Value {
    Mapping::compile(&mapping, "input")
        .unwrap()
        .evaluate(context)
        .unwrap()
}

fn context() -> Value {
    json!({
        "input": {"user": {"name": "ada", "langs": ["rust", "ml"]}, "path": "/p"},
        "variables": {"count": 2},
        "output": {"url": "https://x.invalid", "items": [{"id": 1}]},
        "error": {"type": "Timeout", "message": "too slow"},
    })
}

#[test]
fn mappings_apply_inside_objects_and_arrays() {
    let mapping = json!({
        "name": "$.input.user.name",
        "first": "$.input.user.langs[0]",
        "nested": {"deeper": ["$.variables.count", "${ variables.count + 1 }", 7]},
        "url": "$.output.url",
        "id": "$.output.items[0].id",
        "why": "$.error.message",
    });
    assert_eq!(
        apply(mapping, &context()),
        json!({
            "name": "ada",
            "first": "rust",
            "nested": {"deeper": [2, 3, 7]},
            "url": "https://x.invalid",
            "id": 1,
            "why": "too slow",
        })
    );
}

#[test]
fn everything_else_is_literal() {
    let mapping = json!({
        "text": "project_plan_template",
        "glob": "tests/**/*.test.{js,ts}",
        "shell": "echo $HOME ${HOME",
        "not_whole": "x ${ input.path }",
        "dollar": "$",
        "numbers": [1, 2.5, -3],
        "flags": {"on": true, "off": false, "none": null},
    });
    assert_eq!(apply(mapping.clone(), &context()), mapping);
    assert!(Mapping::compile(&mapping, "input").unwrap().is_literal());
}

#[test]
fn a_secret_reference_is_kept_as_written_not_evaluated() {
    // The runtime substitutes it when it makes a request; what a mapping
    // yields, and so what is recorded, is the reference.
    let mapping = json!({
        "whole": "${ secret('API_TOKEN') }",
        "tight": "${secret(\"API_TOKEN\")}",
        "inside": "Bearer ${ secret('API_TOKEN') }",
        "computed": "$.input.path",
    });
    let applied = apply(mapping, &context());
    assert_eq!(applied["whole"], "${ secret('API_TOKEN') }");
    assert_eq!(applied["tight"], "${secret(\"API_TOKEN\")}");
    assert_eq!(applied["inside"], "Bearer ${ secret('API_TOKEN') }");
    assert!(
        Mapping::compile(&json!("${ secret('X') }"), "input")
            .unwrap()
            .is_literal()
    );
    // Meant as one but malformed: the problem says how to write it.
    let problems = Mapping::compile(&json!({"h": "${ secret(X) }"}), "input").unwrap_err();
    assert_eq!(problems[0].0, "input.h");
    assert!(
        problems[0]
            .1
            .contains("does not complete a secret reference"),
        "{problems:?}"
    );
}

#[test]
fn a_missing_path_is_null() {
    let mapping = json!({
        "a": "$.input.nope",
        "b": "$.input.user.langs[9]",
        "c": "$.variables.count.deeper",
        "d": ["$.error.stack"],
    });
    assert_eq!(
        apply(mapping, &context()),
        json!({"a": null, "b": null, "c": null, "d": [null]})
    );
    assert_eq!(apply(json!("$.execution.id"), &json!({})), Value::Null);
}

#[test]
fn a_whole_root_can_be_mapped() {
    assert_eq!(apply(json!("$.output"), &context()), context()["output"]);
}

#[test]
fn a_failing_expression_fails_the_mapping() {
    let mapping = Mapping::compile(&json!({"a": ["${ input.nope }"]}), "input").unwrap();
    let error = mapping.evaluate(&context()).unwrap_err();
    assert!(error.message.contains("`${ input.nope }`"), "{error}");
}

#[test]
fn compile_problems_name_their_place_inside_the_mapping() {
    let problems = Mapping::compile(
        &json!({"a": {"b": ["ok", "$.input.x + 1"]}, "c": "${ ) }"}),
        "steps[0].input",
    )
    .unwrap_err();
    let paths: Vec<&str> = problems.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(paths, ["steps[0].input.a.b[1]", "steps[0].input.c"]);
}
