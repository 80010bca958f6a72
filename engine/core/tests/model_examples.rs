//! Every workflow in `examples/workflows` is valid, and the examples mean
//! what they say: the error routes, branches and fallbacks of the documents
//! the language was designed from.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use retrace_core::model::{HandlerTarget, Scope, StepKind, Workflow};
use serde_json::{Value, json};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workflows")
}

fn load(file: &str) -> Workflow {
    let path = examples_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let result = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => Workflow::from_json(text.as_bytes()),
        Some("yaml" | "yml") => Workflow::from_yaml(&text),
        other => panic!("{path:?}: unexpected extension {other:?}"),
    };
    result.unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

#[test]
fn every_example_validates() {
    let mut files: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    for expected in [
        "data_processing.json",
        "data_processing.yaml",
        "feature_implementation.json",
        "global_error_handler.json",
        "project_setup.json",
    ] {
        assert!(files.iter().any(|f| f == expected), "missing {expected}");
    }
    for file in &files {
        let workflow = load(file);
        assert_eq!(workflow.version().len(), 64, "{file}");
    }
}

#[test]
fn the_yaml_example_is_the_json_example() {
    let json = load("data_processing.json");
    let yaml = load("data_processing.yaml");
    assert_eq!(yaml.version(), json.version());
    assert_eq!(yaml.canonical_json(), json.canonical_json());
}

#[test]
fn data_processing_routes_its_errors() {
    let workflow = load("data_processing.json");
    assert_eq!(workflow.start(), "fetch_data");
    let fetch = workflow.step("fetch_data").unwrap();
    let retry = fetch.retry.as_ref().unwrap();
    assert_eq!(
        (retry.max_attempts, retry.interval_ms, retry.backoff_rate),
        (5, 1000, 2.0)
    );
    assert_eq!(fetch.timeout.start_to_close_ms, Some(60_000));
    let route = |id: &str| {
        let step = workflow.step(id).unwrap();
        (step.next.as_deref(), step.on_error.as_deref())
    };
    assert_eq!(
        route("fetch_data"),
        (Some("transform_data"), Some("handle_fetch_error"))
    );
    assert_eq!(route("handle_fetch_error"), (Some("use_backup_data"), None));
    assert_eq!(route("use_backup_data"), (Some("transform_data"), None));
    assert_eq!(
        route("transform_data"),
        (Some("save_results"), Some("log_transform_error"))
    );
    assert_eq!(
        route("log_transform_error"),
        (Some("use_simple_transform"), None)
    );
    assert_eq!(route("use_simple_transform"), (Some("save_results"), None));
    assert_eq!(
        route("save_results"),
        (Some("send_notification"), Some("handle_save_error"))
    );
    assert_eq!(
        route("handle_save_error"),
        (Some("send_error_notification"), None)
    );
    assert_eq!(route("send_error_notification"), (None, None));
    let handlers = workflow.error_handlers();
    assert_eq!(handlers.len(), 1);
    assert_eq!(
        handlers[0].handler,
        HandlerTarget::Workflow("global_error_handler".into())
    );
    assert!(workflow.error_handler_for("AnyError").is_some());
}

#[test]
fn data_processing_builds_its_commands() {
    let workflow = load("data_processing.json");
    let context =
        json!({"input": {"outputPath": "/data/out.json", "notificationEmail": "ops@example.com"}});
    let command = |id: &str| {
        let input = workflow.step(id).unwrap().input.as_ref().unwrap();
        input.evaluate(&context).unwrap()["command"].clone()
    };
    assert_eq!(
        command("handle_save_error"),
        json!(
            "mkdir -p $(dirname /data/out.json) && echo \"Error saving data\" > /data/out.json.error.log"
        )
    );
    assert_eq!(
        command("send_notification"),
        json!(
            "echo \"Data processing completed successfully\" | mail -s \"Success\" ops@example.com"
        )
    );
    let save = workflow.step("save_results").unwrap();
    let undo = save.compensate.as_ref().unwrap();
    let undo_input = undo.input.as_ref().unwrap();
    assert_eq!(
        undo_input.evaluate(&json!({"output": {"path": "/data/out.json"}})),
        Ok(json!({"action": "delete", "path": "/data/out.json"}))
    );
}

#[test]
fn project_setup_falls_back_to_the_input_path() {
    let workflow = load("project_setup.json");
    let step = workflow.step("setup_repository").unwrap();
    let input = step.input.as_ref().unwrap();
    let with_input = |variables: Value| json!({"input": {"projectPath": "/given", "projectName": "app"}, "variables": variables});
    assert_eq!(
        input.evaluate(&with_input(json!({"projectPath": "/scaffolded"}))),
        Ok(json!({"path": "/scaffolded", "initialize": true}))
    );
    assert_eq!(
        input.evaluate(&with_input(json!({}))),
        Ok(json!({"path": "/given", "initialize": true}))
    );
    assert_eq!(
        input.evaluate(&with_input(json!({"projectPath": null}))),
        Ok(json!({"path": "/given", "initialize": true}))
    );
}

#[test]
fn project_setup_decides_on_review_issues_and_tests() {
    let workflow = load("project_setup.json");
    let decide = |id: &str, variables: Value| {
        let step = workflow.step(id).unwrap();
        let StepKind::Decision { expression, .. } = &step.kind else {
            panic!("{id} is not a decision");
        };
        let value = expression
            .evaluate(&json!({ "variables": variables }))
            .unwrap();
        step.decision_target(&value).map(str::to_owned)
    };
    assert_eq!(
        decide("handle_review_results", json!({"issues": []})).as_deref(),
        Some("run_tests")
    );
    assert_eq!(
        decide(
            "handle_review_results",
            json!({"issues": [{"rule": "no-unused"}]})
        )
        .as_deref(),
        Some("fix_issues")
    );
    assert_eq!(
        decide(
            "check_test_results",
            json!({"testResults": {"passed": false}})
        )
        .as_deref(),
        Some("fix_test_failures")
    );
    assert_eq!(
        decide(
            "setup_decisions",
            json!({"plan": {"requiresScaffolding": true}})
        )
        .as_deref(),
        Some("scaffold_project")
    );
    assert_eq!(workflow.label(), Some("1.0.0"));
    assert!(
        workflow
            .check_input(&json!({"requirements": "r", "projectName": "p"}))
            .is_ok()
    );
    assert!(workflow.check_input(&json!({"requirements": "r"})).is_err());
}

#[test]
fn feature_implementation_runs_three_branches() {
    let workflow = load("feature_implementation.json");
    let parallel = workflow.step("implement_components").unwrap();
    let StepKind::Parallel { branches } = &parallel.kind else {
        panic!("not a parallel step");
    };
    let starts: Vec<(&str, &str)> = branches
        .iter()
        .map(|b| (b.name.as_str(), b.start.as_str()))
        .collect();
    assert_eq!(
        starts,
        [
            ("UI Components", "create_ui_components"),
            ("Data Services", "create_data_services"),
            ("Unit Tests", "create_tests")
        ]
    );
    assert_eq!(parallel.next.as_deref(), Some("review_implementation"));
    assert_eq!(
        workflow.step("create_data_services").unwrap().scope,
        Scope::Branch {
            parallel: "implement_components".into(),
            branch: 1
        }
    );
    let context = json!({"input": {"projectPath": "/p", "feature": "Login"}});
    let files = workflow
        .step("review_implementation")
        .unwrap()
        .input
        .as_ref()
        .unwrap();
    assert_eq!(
        files.evaluate(&context),
        Ok(json!({"files": ["/p/src/components", "/p/src/services"]}))
    );
    let commit = workflow
        .step("commit_changes")
        .unwrap()
        .input
        .as_ref()
        .unwrap();
    assert_eq!(
        commit.evaluate(&context).unwrap()["commitMessage"],
        json!("Feature: Login")
    );
}

#[test]
fn the_global_error_handler_reads_its_input() {
    let workflow = load("global_error_handler.json");
    let notify = workflow
        .step("notify_admin")
        .unwrap()
        .input
        .as_ref()
        .unwrap();
    let input = json!({
        "error": {"type": "Timeout", "message": "fetch took too long"},
        "workflow": "data_processing", "executionId": "e-7", "stepId": "fetch_data",
    });
    assert!(workflow.check_input(&input).is_ok());
    assert_eq!(
        notify.evaluate(&json!({ "input": input })).unwrap()["command"],
        json!(
            "echo \"Critical error in workflow data_processing at step fetch_data: fetch took too long\" | mail -s \"Critical Workflow Error\" admin@example.com"
        )
    );
}
