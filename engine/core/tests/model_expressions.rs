//! Expressions: the three ways of writing them, the `$.` shorthand, compile
//! errors, evaluation errors, and decision branch keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use retrace_core::model::{Expr, Workflow, branch_key};
use serde_json::{Value, json};

fn context() -> Value {
    json!({
        "input": {"projectPath": "/work/app", "priority": "high", "count": 3, "ratio": 0.5},
        "variables": {"issues": [{"line": 1}, {"line": 9}], "empty": []},
        "output": {"passed": true},
        "execution": {"id": "e-1"},
    })
}

fn eval(source: &str) -> Result<Value, String> {
    let expr = Expr::compile(source).map_err(|m| format!("compile: {m}"))?;
    expr.evaluate(&context()).map_err(|e| format!("eval: {e}"))
}

#[test]
fn the_three_forms_agree() {
    let expected = Ok(json!("/work/app/src"));
    assert_eq!(eval(r#"${ $.input.projectPath + "/src" }"#), expected);
    assert_eq!(eval(r#"${ input.projectPath + "/src" }"#), expected);
    assert_eq!(eval(r#"input.projectPath + "/src""#), expected);
    assert_eq!(eval(r#"$.input.projectPath + "/src""#), expected);
}

#[test]
fn decision_expressions_need_no_wrapper() {
    assert_eq!(eval("size($.variables.issues) > 0"), Ok(json!(true)));
    assert_eq!(eval("size($.variables.empty) > 0"), Ok(json!(false)));
    assert_eq!(eval("${ size(variables.issues) > 0 }"), Ok(json!(true)));
    assert_eq!(eval("$.output.passed"), Ok(json!(true)));
}

#[test]
fn every_root_is_readable_and_absent_roots_are_null() {
    assert_eq!(eval("execution.id"), Ok(json!("e-1")));
    assert_eq!(eval("error == null"), Ok(json!(true)));
    let expr = Expr::compile("input == null && variables == null").unwrap();
    assert_eq!(expr.evaluate(&json!({})), Ok(json!(true)));
}

#[test]
fn dollar_inside_string_literals_is_left_alone() {
    assert_eq!(
        eval(r#"${ "$.input.projectPath" }"#),
        Ok(json!("$.input.projectPath"))
    );
    assert_eq!(
        eval(r#"${ '$.input' + "-" + input.priority }"#),
        Ok(json!("$.input-high"))
    );
    assert_eq!(
        eval(r#"${ "cost: $.5 \" $.variables" + '$(dirname x)' }"#),
        Ok(json!("cost: $.5 \" $.variables$(dirname x)"))
    );
    assert_eq!(eval(r#"${ r"\$.output" }"#), Ok(json!("\\$.output")));
    assert_eq!(eval(r#"${ """a "$.b" c""" }"#), Ok(json!("a \"$.b\" c")));
}

#[test]
fn values_keep_their_json_types() {
    assert_eq!(eval("input.count * 2"), Ok(json!(6)));
    assert_eq!(eval("input.ratio * 2.0"), Ok(json!(1.0)));
    assert_eq!(
        eval("${ {'path': input.projectPath, 'n': [1, 2u, null]} }"),
        Ok(json!({"path": "/work/app", "n": [1, 2, null]}))
    );
    assert_eq!(eval("variables.issues.map(i, i.line)"), Ok(json!([1, 9])));
}

#[test]
fn a_js_style_fallback_is_written_with_has() {
    let fallback = "${ has(variables.projectPath) && variables.projectPath != null \
                    ? variables.projectPath : input.projectPath }";
    let expr = Expr::compile(fallback).unwrap();
    let input = json!({"projectPath": "/from/input"});
    let with = json!({"input": input, "variables": {"projectPath": "/scaffolded"}});
    let without = json!({"input": input, "variables": {}});
    let null = json!({"input": input, "variables": {"projectPath": null}});
    assert_eq!(expr.evaluate(&with), Ok(json!("/scaffolded")));
    assert_eq!(expr.evaluate(&without), Ok(json!("/from/input")));
    assert_eq!(expr.evaluate(&null), Ok(json!("/from/input")));
}

#[test]
fn syntax_errors_are_compile_errors() {
    for source in ["${ input.a + }", "size(", "${ 'unclosed }", "a b", "${}"] {
        assert!(Expr::compile(source).is_err(), "{source} compiled");
    }
    let error = Expr::compile("input.count >").unwrap_err();
    assert!(
        error.starts_with("`input.count >` is not a valid expression"),
        "{error}"
    );
    assert!(error.contains("line 1 column 14"), "{error}");
}

#[test]
fn unknown_names_are_compile_errors() {
    let error = Expr::compile("${ inputs.x + HOME }").unwrap_err();
    assert!(
        error.contains("reads `HOME`, `inputs`, which is not defined"),
        "{error}"
    );
    assert!(Expr::compile("variables.issues.exists(issue, issue.line > 5)").is_ok());
}

#[test]
fn evaluation_failures_are_eval_errors() {
    let missing = eval("input.nothing").unwrap_err();
    assert!(missing.contains("evaluating `input.nothing`"), "{missing}");
    assert!(missing.contains("nothing"), "{missing}");
    assert!(eval("input.priority + 1").is_err());
    assert!(eval("input.count / 0").is_err());
    assert!(eval("b'bytes'").unwrap_err().contains("no JSON form"));
    assert!(eval("1.0 / 0.0").unwrap_err().contains("JSON"));
}

#[test]
fn branch_keys_render_values_as_strings() {
    assert_eq!(branch_key(&json!(true)), "true");
    assert_eq!(branch_key(&json!(false)), "false");
    assert_eq!(branch_key(&json!("high")), "high");
    assert_eq!(branch_key(&json!(3)), "3");
    assert_eq!(branch_key(&json!(-3)), "-3");
    assert_eq!(branch_key(&json!(2.5)), "2.5");
    assert_eq!(branch_key(&json!(null)), "null");
    assert_eq!(
        branch_key(&json!({"b": 1, "a": [true]})),
        r#"{"a":[true],"b":1}"#
    );
}

#[test]
fn decisions_pick_their_branch_then_the_default() {
    let workflow = Workflow::from_json(
        br#"{"name": "w", "steps": [
            {"id": "route", "type": "decision", "decision": {
                "expression": "input.priority",
                "branches": {"high": "fast", "low": "slow"},
                "default": "slow"}},
            {"id": "count", "type": "decision", "decision": {
                "expression": "size(input.items)", "branches": {"0": "slow", "1": "fast"}}},
            {"id": "fast", "type": "task", "capability": "noop"},
            {"id": "slow", "type": "task", "capability": "noop"}
        ]}"#,
    )
    .unwrap();
    let target = |step: &str, input: Value| {
        let step = workflow.step(step).unwrap();
        let retrace_core::model::StepKind::Decision { expression, .. } = &step.kind else {
            panic!("not a decision");
        };
        let value = expression.evaluate(&json!({ "input": input })).unwrap();
        step.decision_target(&value).map(str::to_owned)
    };
    assert_eq!(
        target("route", json!({"priority": "high"})),
        Some("fast".into())
    );
    assert_eq!(
        target("route", json!({"priority": "low"})),
        Some("slow".into())
    );
    assert_eq!(
        target("route", json!({"priority": "medium"})),
        Some("slow".into())
    );
    assert_eq!(target("count", json!({"items": []})), Some("slow".into()));
    assert_eq!(target("count", json!({"items": [1]})), Some("fast".into()));
    assert_eq!(target("count", json!({"items": [1, 2]})), None);
}

#[test]
fn the_standard_library_named_in_the_docs_is_there() {
    assert_eq!(
        eval(r#"input.projectPath.startsWith("/work")"#),
        Ok(json!(true))
    );
    assert_eq!(eval(r#"input.priority.matches("^h.*h$")"#), Ok(json!(true)));
    assert_eq!(
        eval("variables.issues.filter(i, i.line > 5).size()"),
        Ok(json!(1))
    );
    assert_eq!(
        eval("variables.issues.exists(i, i.line == 1)"),
        Ok(json!(true))
    );
    assert_eq!(eval("string(input.count) + 'x'"), Ok(json!("3x")));
    assert_eq!(
        eval("variables.?missing.orValue('none')"),
        Ok(json!("none"))
    );
    assert_eq!(eval(r#"${ "costs $.50" }"#), Ok(json!("costs $.50")));
}

#[test]
fn deep_nesting_is_refused_not_a_crash() {
    let deep =
        |open: &str, close: &str, n: usize| format!("{}1{}", open.repeat(n), close.repeat(n));
    for (source, why) in [
        (deep("(", ")", 2000), "Recursion limit"),
        (deep("[", "]", 40), "nests more than 32 levels deep"),
        (deep("{'a': ", "}", 40), "nests more than 32 levels deep"),
        (deep("size(", ")", 40), "nests more than 32 levels deep"),
        (
            format!("1{}", " + 1".repeat(3000)),
            "nests more than 32 levels deep",
        ),
    ] {
        let error = Expr::compile(&source).unwrap_err();
        assert!(error.contains(why), "{error}");
    }
}

#[test]
fn accepted_expressions_evaluate_on_a_small_stack() {
    let sources = [
        format!("{}1{}", "size(".repeat(30), ")".repeat(30)),
        format!("{}1{}", "[".repeat(31), "]".repeat(31)),
        format!("{}1{}", "(".repeat(90), ")".repeat(90)),
        format!("1{}", " + 1".repeat(30)),
    ];
    let compiled: Vec<Expr> = sources.iter().map(|s| Expr::compile(s).unwrap()).collect();
    // The stack of a tokio worker thread.
    let small = std::thread::Builder::new().stack_size(2 * 1024 * 1024);
    let results = small
        .spawn(move || {
            compiled
                .iter()
                .map(|expr| expr.evaluate(&json!({})).is_ok())
                .collect::<Vec<bool>>()
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(results, [false, true, true, true]);
}

#[test]
fn an_evaluation_error_reads_the_same_every_time() {
    // CEL prints the values of a failed operation, and a map in hash order;
    // the engine records errors in events, so their text must not vary.
    let expr = retrace_core::model::Expr::compile("variables - 1").unwrap();
    let context =
        serde_json::json!({"variables": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6}});
    let first = expr.evaluate(&context).unwrap_err().message;
    assert!(first.contains("map"), "{first}");
    for _ in 0..50 {
        assert_eq!(expr.evaluate(&context).unwrap_err().message, first);
    }
}
