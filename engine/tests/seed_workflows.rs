//! The three example workflows (`examples/workflows/`: project setup,
//! feature implementation, data processing) run to completion with scripted
//! agents: decision branches both ways, parallel joins, and each of the data
//! processing workflow's failure paths.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use std::sync::Arc;

use retrace_engine::machine::{ErrorInfo, Status};
use serde_json::json;
use support::*;

async fn define_examples(w: &World) {
    for name in [
        "project_setup",
        "feature_implementation",
        "data_processing",
        "global_error_handler",
    ] {
        let path = format!(
            "{}/../examples/workflows/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let doc = std::fs::read(&path).unwrap();
        w.engine.define_json(&doc).await.unwrap();
    }
}

const ALL_CAPABILITIES: &[&str] = &[
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
];

/// Answers for project setup; `yes` picks the first branch of every decision.
fn project_answers(yes: bool) -> Responder {
    Arc::new(move |t| {
        Ok(match t.spec.step.as_str() {
            "create_plan" => json!({"requiresScaffolding": yes, "projectType": "web",
                                    "coreComponents": ["app"], "utilityComponents": ["log"]}),
            "scaffold_project" => json!({"path": "/work/new"}),
            "review_code" => json!({"issues": if yes { json!(["lint"]) } else { json!([]) }}),
            "run_tests" => json!({"passed": yes}),
            "deploy_project" => json!({"url": "https://dev.example/app"}),
            "document_plan" | "setup_repository" => {
                json!({"url": format!("https://x/{}", t.spec.step)})
            }
            other => json!({"done": other}),
        })
    })
}

#[tokio::test]
async fn project_setup_takes_every_decision_both_ways() {
    let w = World::new().await;
    define_examples(&w).await;
    let input =
        json!({"requirements": "a todo app", "projectName": "todo", "projectPath": "/work/todo"});

    let agent = spawn_agent(&w.engine, ALL_CAPABILITIES, project_answers(true));
    let yes = w.start("project_setup", input.clone()).await;
    let s = w.ended(yes).await;
    assert_completed(&s);
    let taken = path(&w.engine, yes).await;
    for expected in [
        "setup_decisions->scaffold_project",
        "handle_review_results->fix_issues",
        "check_test_results->optimize_performance",
    ] {
        assert!(
            taken.contains(&expected.to_string()),
            "{expected} not in {taken:?}"
        );
    }
    assert!(
        taken.contains(&"generate_components".to_string()),
        "the parallel joined"
    );
    assert_eq!(
        s.variables["deploymentUrl"],
        json!("https://dev.example/app")
    );
    agent.abort();

    let agent = spawn_agent(&w.engine, ALL_CAPABILITIES, project_answers(false));
    let no = w.start("project_setup", input).await;
    assert_completed(&w.ended(no).await);
    let taken = path(&w.engine, no).await;
    for expected in [
        "setup_decisions->setup_repository",
        "handle_review_results->run_tests",
        "check_test_results->fix_test_failures",
    ] {
        assert!(
            taken.contains(&expected.to_string()),
            "{expected} not in {taken:?}"
        );
    }
    assert!(!taken.contains(&"scaffold_project".to_string()));
    agent.abort();
}

#[tokio::test]
async fn feature_implementation_joins_three_branches() {
    let w = World::new().await;
    define_examples(&w).await;
    let _agent = spawn_agent(
        &w.engine,
        ALL_CAPABILITIES,
        Arc::new(|t| Ok(json!({"step": t.spec.step}))),
    );
    let id = w
        .start(
            "implement_feature",
            json!({"feature": "login", "projectPath": "/work/app"}),
        )
        .await;
    let s = w.ended(id).await;
    assert_completed(&s);
    let history = w.engine.read().events_until(id, u64::MAX).await.unwrap();
    let joined = history
        .into_iter()
        .find_map(|h| match h.event {
            retrace_engine::machine::Event::StepCompleted { step, output, .. }
                if step == "implement_components" =>
            {
                Some(output)
            }
            _ => None,
        })
        .unwrap();
    let branches: Vec<&String> = joined.as_object().unwrap().keys().collect();
    assert_eq!(branches, ["Data Services", "UI Components", "Unit Tests"]);
}

/// Data processing with the named steps failing (the rest succeed).
async fn data_processing(failing: &'static [&'static str]) -> (World, retrace_engine::ExecutionId) {
    let w = World::new().await;
    define_examples(&w).await;
    let _skipper = spawn_time_skipper(&w.engine, &w.clock);
    let _agent = spawn_agent(
        &w.engine,
        ALL_CAPABILITIES,
        Arc::new(move |t| {
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
    (w, id)
}

#[tokio::test]
async fn data_processing_happy_path() {
    let (w, id) = data_processing(&[]).await;
    let s = w.ended(id).await;
    assert_completed(&s);
    assert_eq!(
        path(&w.engine, id).await,
        [
            "fetch_data",
            "transform_data",
            "save_results",
            "send_notification"
        ]
    );
    assert_eq!(s.variables["savedPath"], json!("/out/data.json"));
}

#[tokio::test]
async fn data_processing_fetch_retries_then_uses_the_backup_source() {
    let (w, id) = data_processing(&["fetch_data"]).await;
    let s = w.ended(id).await;
    assert_completed(&s);
    assert_eq!(s.metrics.retry_count, 4, "maxAttempts 5: four retries");
    let delays: Vec<u64> = w
        .engine
        .read()
        .events(id, 1, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|h| match h.event {
            retrace_engine::machine::Event::RetryScheduled { delay_ms, .. } => Some(delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(
        delays,
        [1000, 2000, 4000, 8000],
        "interval 1000, backoffRate 2"
    );
    assert_eq!(
        path(&w.engine, id).await,
        [
            "fetch_data!->handle_fetch_error",
            "handle_fetch_error",
            "use_backup_data",
            "transform_data",
            "save_results",
            "send_notification"
        ]
    );
    assert_eq!(s.variables["data"], json!("from use_backup_data"));
}

#[tokio::test]
async fn data_processing_transform_falls_back_to_the_simple_transform() {
    let (w, id) = data_processing(&["transform_data"]).await;
    let s = w.ended(id).await;
    assert_completed(&s);
    assert_eq!(
        path(&w.engine, id).await,
        [
            "fetch_data",
            "transform_data!->log_transform_error",
            "log_transform_error",
            "use_simple_transform",
            "save_results",
            "send_notification"
        ]
    );
    assert_eq!(
        s.variables["transformedData"],
        json!("from use_simple_transform")
    );
}

#[tokio::test]
async fn data_processing_save_failure_sends_the_error_notification() {
    let (w, id) = data_processing(&["save_results"]).await;
    let s = w.ended(id).await;
    assert_completed(&s);
    assert_eq!(
        path(&w.engine, id).await,
        [
            "fetch_data",
            "transform_data",
            "save_results!->handle_save_error",
            "handle_save_error",
            "send_error_notification"
        ]
    );
}

#[tokio::test]
async fn data_processing_fails_when_even_the_fallback_fails() {
    // The fallback step fails too and no onError routes it: the workflow's
    // `*` handler names the global_error_handler workflow, which runs as a
    // child with the error; then the execution fails with that error.
    let (w, id) = data_processing(&["transform_data", "use_simple_transform"]).await;
    let s = w.ended(id).await;
    assert_eq!(s.status, Status::Failed);
    let e = s.error.unwrap();
    assert_eq!(
        (e.kind.as_str(), e.step.as_deref()),
        ("command_failed", Some("use_simple_transform"))
    );
    let handler = retrace_engine::machine::child_id(id, s.next_act - 1);
    let h = w.ended(handler).await;
    assert_eq!(h.workflow, "global_error_handler");
    assert_eq!(h.status, Status::Completed);
    assert_eq!(h.input["error"]["step"], json!("use_simple_transform"));
    assert_eq!(h.input["workflow"], json!("data_processing"));
}
