//! Language versions and the orchestrator specification's dialect
//! (language 2): what each reads a mapping or an expression as, and the
//! rule that keeps a stored definition's meaning (and version hash)
//! forever.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use retrace_core::model::{Expr, Language, Mapping, Workflow};
use serde_json::{Value, json};

fn context() -> Value {
    json!({
        "input": {"projectPath": "/given", "feature": "login", "n": 3, "empty": "",
                  "zero": 0, "items": ["a", "b", "c"], "word": "héllo",
                  "shape": {"length": 7}, "plain": {"a": 1}},
        "variables": {"issues": [], "flag": true},
        "output": null,
        "error": null,
        "execution": {"id": "e1", "workflow": "w"},
    })
}

/// The value a mapping written as `written` takes in `context()`, read as
/// `language` reads it.
fn mapped(written: Value, language: Language) -> Value {
    Mapping::compile_in(&written, "input", language)
        .unwrap_or_else(|problems| panic!("{written}: {problems:?}"))
        .evaluate(&context())
        .unwrap_or_else(|error| panic!("{written}: {error}"))
}

fn v2(written: &str) -> Value {
    mapped(Value::String(written.to_owned()), Language::V2)
}

fn problems(written: &str, language: Language) -> Vec<(String, String)> {
    Mapping::compile_in(&json!(written), "input", language).unwrap_err()
}

#[test]
fn or_and_and_pick_an_operand_as_javascript_does() {
    // A missing variable reads as null, which is falsy: the input is taken.
    assert_eq!(
        v2("$.variables.projectPath || $.input.projectPath"),
        json!("/given")
    );
    assert_eq!(v2("$.input.feature || $.input.projectPath"), json!("login"));
    assert_eq!(v2("$.input.empty || $.input.zero || 'last'"), json!("last"));
    assert_eq!(v2("$.input.feature && $.input.n"), json!(3));
    assert_eq!(v2("$.input.zero && $.input.n"), json!(0));
    // Lists and maps are truthy even when empty, as in JavaScript.
    assert_eq!(v2("$.variables.issues || 'none'"), json!([]));
    // On booleans nothing changes.
    for (written, value) in [
        ("${ true || false }", true),
        ("${ false || true }", true),
        ("${ false || false }", false),
        ("${ true && false }", false),
        ("${ $.variables.flag && $.input.n > 2 }", true),
        ("${ $.input.n > 5 || $.input.n < 1 }", false),
    ] {
        assert_eq!(v2(written), json!(value), "{written}");
    }
    // A false left operand never evaluates the right one.
    assert_eq!(v2("${ false && 1 / 0 == 1 }"), json!(false));
    assert_eq!(v2("${ 'x' || 1 / 0 == 1 }"), json!("x"));
}

#[test]
fn length_is_the_size_of_a_list_or_a_string() {
    assert_eq!(v2("$.input.items.length"), json!(3));
    assert_eq!(v2("${ $.input.word.length }"), json!(5), "code points");
    assert_eq!(v2("$.input.shape.length"), json!(7), "a map's own field");
    assert_eq!(v2("${ $.input.plain.length }"), json!(null));
    let decision = Expr::compile_in("$.variables.issues.length > 0", Language::V2).unwrap();
    assert_eq!(decision.evaluate(&context()).unwrap(), json!(false));
}

#[test]
fn inside_or_and_and_what_leads_nowhere_is_null_as_in_a_path() {
    assert_eq!(v2("${ $.input.missing || 'd' }"), json!("d"));
    assert_eq!(v2("${ $.input.missing.deeper.still || 1 }"), json!(1));
    assert_eq!(v2("${ $.input.items[7] || 'none' }"), json!("none"));
    assert_eq!(v2("${ $.input.items[1] || 'none' }"), json!("b"));
    assert_eq!(v2("${ $.input.n.field || 0 }"), json!(0));
    assert_eq!(v2("${ 'x' && input.missing }"), json!(null));
    // Elsewhere a missing field is an error that names it, as in CEL.
    for language in [Language::V1, Language::V2] {
        let mapping =
            Mapping::compile_in(&json!("${ $.input.missing }"), "input", language).unwrap();
        let error = mapping.evaluate(&context()).unwrap_err();
        assert!(error.message.contains("missing"), "{language}: {error}");
    }
    // `has` keeps its meaning, and so do the macros.
    assert_eq!(v2("${ has(input.missing) }"), json!(false));
    assert_eq!(v2("${ has(input.plain.a) }"), json!(true));
    assert_eq!(v2("${ input.items.exists(i, i == 'b') }"), json!(true));
    assert_eq!(v2("${ input.items.all(i, size(i) == 1) }"), json!(true));
    assert_eq!(
        v2("${ input.items.map(i, i + '!') }"),
        json!(["a!", "b!", "c!"])
    );
    assert_eq!(
        v2("${ input.items.filter(i, i == 'c' || i == 'a') }"),
        json!(["a", "c"])
    );
}

#[test]
fn strings_with_expressions_inside_are_interpolated() {
    assert_eq!(v2("Feature: ${$.input.feature}"), json!("Feature: login"));
    assert_eq!(
        v2("${ input.feature } at ${ input.projectPath }/src"),
        json!("login at /given/src")
    );
    // Any other value as compact JSON.
    assert_eq!(v2("n=${ input.n }"), json!("n=3"));
    assert_eq!(
        v2("plain=${ input.plain } none=${ input.missing || null }"),
        json!("plain={\"a\":1} none=null")
    );
    // Wholly one expression: the value keeps its type.
    assert_eq!(v2("${ input.n }"), json!(3));
    // Braces and quotes inside an expression do not end it.
    assert_eq!(v2("x${ {'k': '}'}.k }y"), json!("x}y"));
    // `$(` and a lone `$` are text; `\${` is a literal `${`.
    assert_eq!(
        v2("$(dirname ${ input.projectPath })"),
        json!("$(dirname /given)")
    );
    assert_eq!(
        v2("cost: $5, \\${ input.n }"),
        json!("cost: $5, ${ input.n }")
    );
    // Whole documents interpolate item by item.
    assert_eq!(
        mapped(
            json!({"m": ["Feature: ${ input.feature }", 1]}),
            Language::V2
        ),
        json!({"m": ["Feature: login", 1]})
    );
}

#[test]
fn a_secret_reference_stays_as_written() {
    for written in [
        "Bearer ${ secret('crm_token') }",
        "${secret(\"crm_token\")}",
        "${ secret('a') }:${ input.feature }",
    ] {
        let value = v2(written);
        let text = value.as_str().unwrap();
        assert!(text.contains("secret("), "{written} -> {text}");
    }
    assert_eq!(
        v2("${ secret('a') }:${ input.feature }"),
        json!("${ secret('a') }:login")
    );
}

#[test]
fn bad_templates_are_definition_problems() {
    let found = problems("open ${ input.n", Language::V2);
    assert!(found[0].1.contains("no `}` closes"), "{found:?}");
    let found = problems("x ${ input.n + }", Language::V2);
    assert!(found[0].1.contains("not a valid expression"), "{found:?}");
    let found = problems("${ nope } and more", Language::V2);
    assert!(found[0].1.contains("`nope`"), "{found:?}");
}

#[test]
fn language_1_keeps_its_meaning() {
    // Interpolation is language 2's: in language 1 the string is text.
    assert_eq!(
        mapped(json!("Feature: ${$.input.feature}"), Language::V1),
        json!("Feature: ${$.input.feature}")
    );
    let found = problems(
        "$.variables.projectPath || $.input.projectPath",
        Language::V1,
    );
    assert!(found[0].1.contains("not a well-formed path"), "{found:?}");
    let found = problems("$.workflowName", Language::V1);
    assert!(
        found[0].1.contains("unknown root `workflowName`"),
        "{found:?}"
    );
    let found = problems("${ workflowName }", Language::V1);
    assert!(found[0].1.contains("`workflowName`"), "{found:?}");
    // The flat roots are language 2's.
    assert!(Mapping::compile_in(&json!("$.workflowName"), "input", Language::V2).is_ok());
    assert!(Expr::compile_in("stepId == 'x'", Language::V2).is_ok());
}

fn spec(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/workflows")
        .join(format!("spec_{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn the_specifications_workflows_are_accepted_as_written_and_recorded_as_language_2() {
    for (name, problems_in_language_1) in [
        ("project_setup", 10),
        ("implement_feature", 5),
        ("data_processing", 0),
        ("global_error_handler", 3),
    ] {
        let document = spec(name);
        let workflow = Workflow::from_value(&document).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(workflow.language(), Language::V2, "{name}");
        assert!(
            workflow.canonical_json().contains("\"language\":2"),
            "{name}: the version is recorded"
        );
        let mut pinned = document.clone();
        pinned["language"] = json!(1);
        match Workflow::from_value(&pinned) {
            Ok(_) => assert_eq!(problems_in_language_1, 0, "{name}"),
            Err(error) => assert_eq!(
                error.problems.len(),
                problems_in_language_1,
                "{name}: {error}"
            ),
        }
    }
}

/// A definition an earlier build stored: its canonical JSON has no
/// `language`, and a string in it with `${ … }` inside.
const STORED_BEFORE_VERSIONS: &str = r#"{"name":"greet","steps":[{"capability":"noop","id":"say","input":{"text":"Hello ${ input.name }"},"type":"task"}]}"#;

/// Its version hash, as the build that stored it computed it.
const STORED_VERSION: &str = "c08e2a865e785cb11305ab15cbecbb2d7b593cb5725344555c46637ac2cf93bf";

#[test]
fn a_stored_definition_without_a_language_keeps_its_meaning_and_its_version() {
    let stored = Workflow::from_stored_json(STORED_BEFORE_VERSIONS.as_bytes()).unwrap();
    assert_eq!(stored.language(), Language::V1);
    assert_eq!(stored.canonical_json(), STORED_BEFORE_VERSIONS);
    assert_eq!(stored.version(), STORED_VERSION);
    let input = stored.step("say").unwrap().input.as_ref().unwrap();
    let context = json!({"input": {"name": "Ann"}});
    assert_eq!(
        input.evaluate(&context).unwrap(),
        json!({"text": "Hello ${ input.name }"}),
        "language 1: text"
    );

    // The same document defined now is recorded as language 2: another
    // version, which interpolates.
    let defined = Workflow::from_json(STORED_BEFORE_VERSIONS.as_bytes()).unwrap();
    assert_eq!(defined.language(), Language::NEWEST);
    assert_ne!(defined.version(), STORED_VERSION);
    let input = defined.step("say").unwrap().input.as_ref().unwrap();
    assert_eq!(
        input.evaluate(&context).unwrap(),
        json!({"text": "Hello Ann"})
    );
    // Read back from its canonical form, it stays language 2.
    let reloaded = Workflow::from_stored_json(defined.canonical_json().as_bytes()).unwrap();
    assert_eq!(reloaded.version(), defined.version());
    assert_eq!(reloaded.language(), Language::V2);
}

#[test]
fn a_language_the_engine_does_not_know_is_refused() {
    let mut document = spec("global_error_handler");
    document["language"] = json!(3);
    let error = Workflow::from_value(&document).unwrap_err();
    assert_eq!(error.problems[0].path, "language");
    assert!(
        error.problems[0].message.contains("versions are 1, 2"),
        "{error}"
    );
}
