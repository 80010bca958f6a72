//! The orchestrator specification's four workflows, as written
//! (`examples/workflows/spec_*.json`: its object literals as JSON, in its
//! dialect), run to completion with scripted agents, error paths included:
//! `||` between paths, `.length`, `${ … }` inside strings, and the global
//! error handler reading `$.workflowName`, `$.executionId` and `$.stepId`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use std::sync::{Arc, Mutex};

use retrace_engine::machine::{ErrorInfo, Status};
use serde_json::{Value, json};
use support::*;

async fn define_spec(w: &World) {
    for name in [
        "project_setup",
        "implement_feature",
        "data_processing",
        "global_error_handler",
    ] {
        let path = format!(
            "{}/../examples/workflows/spec_{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let doc = std::fs::read(&path).unwrap();
        w.engine.define_json(&doc).await.unwrap();
    }
}

const CAPABILITIES: &[&str] = &[
    "project_analysis",
    "task_planning",
    "page_operations",
    "project_scaffolding",
    "git_operations",
    "component_generation",
    "code_linting",
    "code_transformation",
    "test_execution",
    "performance_optimization",
    "documentation_review",
    "deployment",
    "command_execution",
    "file_operations",
    "data_transformation",
];

/// The input of every task an agent was given, by step, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, Value)>>>);

impl Seen {
    fn record(&self, step: &str, input: &Value) {
        self.0
            .lock()
            .unwrap()
            .push((step.to_owned(), input.clone()));
    }

    /// The input of the last task of `step`.
    fn input(&self, step: &str) -> Value {
        let seen = self.0.lock().unwrap();
        let found = seen.iter().rev().find(|(s, _)| s == step);
        found
            .map(|(_, input)| input.clone())
            .unwrap_or_else(|| panic!("no task of {step} in {:?}", *seen))
    }
}

/// An agent for project setup that scaffolds, finds `issues` and whose
/// tests pass when told.
fn project_agent(seen: &Seen, issues: Value, passed: bool) -> Responder {
    let seen = seen.clone();
    Arc::new(move |t| {
        seen.record(&t.spec.step, &t.spec.input);
        Ok(match t.spec.step.as_str() {
            "create_plan" => json!({"requiresScaffolding": true, "projectType": "web",
                                    "coreComponents": ["app"], "utilityComponents": ["log"]}),
            "scaffold_project" => json!({"path": "/work/scaffolded"}),
            "review_code" => json!({"issues": issues}),
            "run_tests" => json!({"passed": passed}),
            "document_plan" | "setup_repository" | "deploy_project" => {
                json!({"url": format!("https://example.test/{}", t.spec.step)})
            }
            other => json!({"done": other}),
        })
    })
}

#[tokio::test]
async fn project_setup_as_written_reads_or_length_and_takes_each_branch() {
    let w = World::new().await;
    define_spec(&w).await;
    let input = json!({"requirements": "a dashboard", "constraints": "React 18",
                       "priority": "high", "projectName": "dashboard-app",
                       "projectPath": "/work/given"});

    // Issues found, tests fail: both "fix" branches.
    let seen = Seen::default();
    let agent = spawn_agent(
        &w.engine,
        CAPABILITIES,
        project_agent(&seen, json!(["unused import"]), false),
    );
    let id = w.start("project_setup", input.clone()).await;
    let s = w.ended(id).await;
    assert_completed(&s);
    let taken = path(&w.engine, id).await;
    for expected in [
        "setup_decisions->scaffold_project",
        "handle_review_results->fix_issues",
        "check_test_results->fix_test_failures",
    ] {
        assert!(
            taken.contains(&expected.to_owned()),
            "{expected} in {taken:?}"
        );
    }
    // `$.variables.projectPath || $.input.projectPath`: the scaffolded path.
    assert_eq!(
        seen.input("setup_repository")["path"],
        json!("/work/scaffolded")
    );
    assert_eq!(
        seen.input("generate_core")["path"],
        json!("/work/scaffolded")
    );
    assert_eq!(
        seen.input("deploy_project")["path"],
        json!("/work/scaffolded")
    );
    // `$.variables.projectPath + "/**/*.{js,ts,jsx,tsx}"`: an expression.
    assert_eq!(
        seen.input("review_code")["files"],
        json!("/work/scaffolded/**/*.{js,ts,jsx,tsx}")
    );
    assert_eq!(
        s.variables["deploymentUrl"],
        json!("https://example.test/deploy_project")
    );
    agent.abort();

    // No issues (`.length` is 0), tests pass: both decisions the other way.
    let seen = Seen::default();
    let agent = spawn_agent(
        &w.engine,
        CAPABILITIES,
        project_agent(&seen, json!([]), true),
    );
    let id = w.start("project_setup", input).await;
    assert_completed(&w.ended(id).await);
    let taken = path(&w.engine, id).await;
    for expected in [
        "handle_review_results->run_tests",
        "check_test_results->optimize_performance",
    ] {
        assert!(
            taken.contains(&expected.to_owned()),
            "{expected} in {taken:?}"
        );
    }
    agent.abort();
}

#[tokio::test]
async fn project_setup_without_a_projects_path_variable_falls_back_to_the_input() {
    // The plan asks for no scaffolding, so `variables.projectPath` is never
    // written: `||` takes the input's path. The specification's review step
    // then adds a string to the missing variable, which JavaScript would
    // make "undefined/**/*..."; here it is an expression error at that step,
    // and the workflow's error handler (`log_error_to_notion`, a workflow
    // the specification never defines) is recorded as unavailable.
    let w = World::new().await;
    define_spec(&w).await;
    let seen = Seen::default();
    let recorded = seen.clone();
    let _skipper = spawn_time_skipper(&w.engine, &w.clock);
    let _agent = spawn_agent(
        &w.engine,
        CAPABILITIES,
        Arc::new(move |t| {
            recorded.record(&t.spec.step, &t.spec.input);
            Ok(match t.spec.step.as_str() {
                "create_plan" => json!({"requiresScaffolding": false}),
                _ => json!({"url": "https://example.test"}),
            })
        }),
    );
    let input = json!({"requirements": "r", "projectName": "p", "projectPath": "/work/given"});
    let id = w.start("project_setup", input).await;
    let s = w.ended(id).await;
    assert_eq!(seen.input("setup_repository")["path"], json!("/work/given"));
    assert_eq!(seen.input("generate_utils")["path"], json!("/work/given"));
    assert_eq!(s.status, Status::Failed);
    let error = s.error.unwrap();
    assert_eq!(error.kind, "expression_error", "{error:?}");
    assert_eq!(error.step.as_deref(), Some("review_code"));
    assert!(
        w.kinds(id)
            .await
            .contains(&"handler_unavailable".to_owned()),
        "the missing handler workflow is recorded"
    );
}

#[tokio::test]
async fn implement_feature_as_written_interpolates_and_adds_paths() {
    let w = World::new().await;
    define_spec(&w).await;
    let seen = Seen::default();
    let recorded = seen.clone();
    let _agent = spawn_agent(
        &w.engine,
        CAPABILITIES,
        Arc::new(move |t| {
            recorded.record(&t.spec.step, &t.spec.input);
            Ok(match t.spec.step.as_str() {
                "plan_feature" => json!({"tasks": ["a"], "specifications": {
                    "uiComponents": ["Login"], "dataServices": ["auth"]}}),
                "review_implementation" => json!({"issues": []}),
                "commit_changes" => json!({"hash": "abc123"}),
                other => json!({"done": other, "url": "https://example.test"}),
            })
        }),
    );
    let input = json!({"feature": "login form", "constraints": "none",
                       "projectPath": "/work/app"});
    let id = w.start("implement_feature", input).await;
    let s = w.ended(id).await;
    assert_completed(&s);
    // `Feature: ${$.input.feature}` is interpolated.
    assert_eq!(
        seen.input("commit_changes")["commitMessage"],
        json!("Feature: login form")
    );
    assert_eq!(
        seen.input("create_ui_components")["path"],
        json!("/work/app/src/components")
    );
    assert_eq!(
        seen.input("review_implementation")["files"],
        json!(["/work/app/src/components", "/work/app/src/services"])
    );
    assert_eq!(s.variables["commitHash"], json!("abc123"));
}

/// Data processing as written, with the named steps failing.
async fn data_processing(
    failing: &'static [&'static str],
) -> (World, Seen, retrace_engine::ExecutionId) {
    let w = World::new().await;
    define_spec(&w).await;
    let seen = Seen::default();
    let recorded = seen.clone();
    let _skipper = spawn_time_skipper(&w.engine, &w.clock);
    let _agent = spawn_agent(
        &w.engine,
        CAPABILITIES,
        Arc::new(move |t| {
            recorded.record(&t.spec.step, &t.spec.input);
            if failing.contains(&t.spec.step.as_str()) {
                return Err(ErrorInfo::new(
                    "command_failed",
                    format!("{} broke", t.spec.step),
                ));
            }
            Ok(json!({"result": format!("from {}", t.spec.step), "path": "/out/data.json"}))
        }),
    );
    let input = json!({
        "fetchCommand": "curl src", "backupFetchCommand": "curl backup",
        "transformations": ["clean"], "fallbackTransformations": ["copy"],
        "outputPath": "/out/data.json", "notificationEmail": "ops@example.com"
    });
    let id = w.start("data_processing", input).await;
    (w, seen, id)
}

#[tokio::test]
async fn data_processing_as_written_interpolates_its_error_command() {
    let (w, seen, id) = data_processing(&["save_results"]).await;
    assert_completed(&w.ended(id).await);
    assert_eq!(
        seen.input("handle_save_error")["command"],
        json!(
            "mkdir -p $(dirname /out/data.json) && echo \"Error saving data\" > \
             /out/data.json.error.log"
        )
    );
    // A `$.` in the middle of a string is text, as in the specification.
    assert_eq!(
        seen.input("send_error_notification")["command"],
        json!(
            "echo \"Data processing completed with errors. Check error logs.\" | mail -s \
             \"Error in data processing\" $.input.notificationEmail"
        )
    );
}

#[tokio::test]
async fn the_global_error_handler_as_written_reads_the_flat_context() {
    let (w, seen, id) = data_processing(&["transform_data", "use_simple_transform"]).await;
    let s = w.ended(id).await;
    assert_eq!(s.status, Status::Failed);
    let handler = retrace_engine::machine::child_id(id, s.next_act - 1);
    let h = w.ended(handler).await;
    assert_eq!(h.workflow, "global_error_handler");
    assert_completed(&h);
    let logged = seen.input("log_error");
    assert_eq!(logged["workflow"], json!("data_processing"));
    assert_eq!(logged["execution"], json!(id.to_string()));
    assert_eq!(logged["step"], json!("use_simple_transform"));
    assert_eq!(
        logged["error"]["message"],
        json!("use_simple_transform broke")
    );
    assert_eq!(logged["severity"], json!("high"));
    assert_eq!(
        seen.input("notify_admin")["command"],
        json!(
            "echo \"Critical error in workflow data_processing at step use_simple_transform: \
             use_simple_transform broke\" | mail -s \"Critical Workflow Error\" admin@example.com"
        )
    );
}

#[tokio::test]
async fn data_processing_as_written_takes_its_fetch_and_transform_fallbacks() {
    let (w, seen, id) = data_processing(&["fetch_data", "transform_data"]).await;
    let s = w.ended(id).await;
    assert_completed(&s);
    let taken = path(&w.engine, id).await;
    for expected in [
        "fetch_data!->handle_fetch_error",
        "use_backup_data",
        "transform_data!->log_transform_error",
        "use_simple_transform",
        "send_notification",
    ] {
        assert!(
            taken.contains(&expected.to_owned()),
            "{expected} in {taken:?}"
        );
    }
    // `$.error` in an onError target is the error being routed.
    assert_eq!(
        seen.input("handle_fetch_error")["error"]["message"],
        json!("fetch_data broke")
    );
    assert_eq!(
        seen.input("use_backup_data")["command"],
        json!("curl backup")
    );
    assert_eq!(
        s.variables["transformedData"],
        json!("from use_simple_transform")
    );
}
