//! The example workflows of single features (`examples/workflows/`) run on
//! the engine: tags set at the start and by a step, found by several tags
//! at once (`order_tags.json`), and signal-with-start starting an execution
//! once and then reaching it (`approval_signal.json`). The map step's
//! example runs in `map_steps.rs`, the `http` capability's in
//! `http_capability.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use std::collections::BTreeMap;
use std::sync::Arc;

use retrace_engine::machine::StartSignal;
use retrace_engine::runtime::{ListFilter, StartRequest};
use serde_json::json;
use support::*;

async fn define_example(w: &World, file: &str) {
    let path = format!(
        "{}/../examples/workflows/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    w.engine
        .define_json(&std::fs::read(path).unwrap())
        .await
        .unwrap();
}

fn tagged(tags: &[(&str, &str)]) -> ListFilter {
    ListFilter {
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..ListFilter::default()
    }
}

#[tokio::test]
async fn an_order_is_found_by_its_start_tag_and_the_tag_its_step_set() {
    let w = World::new().await;
    define_example(&w, "order_tags.json").await;
    let agent = spawn_agent(
        &w.engine,
        &["shipping"],
        Arc::new(|t| {
            Ok(
                json!({"carrier": if t.spec.input["order"] == json!("o-1") { "ups" } else { "dhl" }}),
            )
        }),
    );
    let mut ids = Vec::new();
    for (order, customer) in [("o-1", "acme"), ("o-2", "acme"), ("o-3", "globex")] {
        let started = w
            .engine
            .start(StartRequest {
                workflow: "ship_order".into(),
                input: json!({"order": order}),
                tags: BTreeMap::from([("customer".to_owned(), customer.to_owned())]),
                ..StartRequest::default()
            })
            .await
            .unwrap();
        let s = w.ended(started.id).await;
        assert_completed(&s);
        ids.push(started.id);
    }
    let s = w.state(ids[0]).await;
    assert_eq!(s.output, Some(json!("Order o-1 left with ups")));
    assert_eq!(s.tags["stage"], "shipped");
    let found = |tags: &[(&str, &str)]| -> Vec<_> {
        w.engine
            .executions_where(&tagged(tags), None, 100)
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(found(&[("customer", "acme")]), vec![ids[0], ids[1]]);
    assert_eq!(
        found(&[("customer", "acme"), ("carrier", "ups")]),
        vec![ids[0]]
    );
    assert_eq!(found(&[("carrier", "dhl")]), vec![ids[1], ids[2]]);
    assert!(found(&[("customer", "globex"), ("carrier", "ups")]).is_empty());
    agent.abort();
}

#[tokio::test]
async fn two_approvals_by_signal_with_start_make_one_execution() {
    let w = World::new().await;
    define_example(&w, "approval_signal.json").await;
    let approve = |by: &str| {
        let request = StartRequest {
            workflow: "collect_approvals".into(),
            input: json!({"request": "r-7"}),
            idempotency_key: Some("approvals-r-7".into()),
            ..StartRequest::default()
        };
        let signal = StartSignal {
            name: "approval".into(),
            payload: json!({"by": by}),
            correlation: None,
        };
        (request, signal)
    };
    let (request, signal) = approve("ann");
    let (first, _) = w
        .engine
        .acting_as(None)
        .signal_with_start(request, signal)
        .await
        .unwrap();
    assert!(first.created);
    let (request, signal) = approve("bob");
    let (second, _) = w
        .engine
        .acting_as(None)
        .signal_with_start(request, signal)
        .await
        .unwrap();
    assert!(!second.created);
    assert_eq!(second.id, first.id);
    let s = w.ended(first.id).await;
    assert_completed(&s);
    assert_eq!(
        s.output,
        Some(json!({"request": "r-7", "approvers": ["ann", "bob"]}))
    );
}
