//! Random workflows for the recovery tests: every step type (task,
//! decision, parallel, map, wait, event, subworkflow) with retries, error
//! routes and compensations, in the names the world expects (`s<n>`, branch
//! steps `s<n>a`/`s<n>b`, a map's item step `s<n>m`, capabilities `work`
//! and `undo`, the event
//! [`crate::world::EVENT`]).
//!
//! Owns the generators only; it must never run anything.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::world::EVENT;

/// One step of the main workflow, before it is written out.
#[derive(Debug, Clone)]
pub enum Shape {
    Task {
        retries: u32,
        compensate: bool,
        route: bool,
    },
    Wait,
    Event,
    Parallel,
    Map,
    Decision,
    Child,
}

/// A step shape; tasks are the most common.
pub fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        4 => (0u32..3, any::<bool>(), prop::bool::weighted(0.3))
            .prop_map(|(retries, compensate, route)| Shape::Task { retries, compensate, route }),
        1 => Just(Shape::Wait),
        1 => Just(Shape::Event),
        1 => Just(Shape::Parallel),
        1 => Just(Shape::Map),
        1 => Just(Shape::Decision),
        1 => Just(Shape::Child),
    ]
}

/// A `work` task that writes its output to the variable named after it.
pub fn task(id: &str, retries: u32, compensate: bool) -> Value {
    let mut t = json!({"id": id, "type": "task", "capability": "work", "output": {id: "$.output"}});
    if retries > 0 {
        t["retry"] = json!({"maxAttempts": retries + 1, "interval": 250, "backoffRate": 2});
    }
    if compensate {
        t["compensate"] = json!({"capability": "undo", "retry": {"maxAttempts": 5}});
    }
    t
}

/// The documents to define: the child workflow `helper`, then `main` with
/// one step per shape (and a `recover` step error routes go to).
pub fn workflows(shapes: &[Shape]) -> Vec<Value> {
    let child = json!({"name": "helper", "steps": [task("h1", 2, false)]});
    let mut steps = Vec::new();
    for (i, s) in shapes.iter().enumerate() {
        let id = format!("s{i}");
        let mut step = match s {
            Shape::Task {
                retries,
                compensate,
                route,
            } => {
                let mut t = task(&id, *retries, *compensate);
                if *route {
                    t["onError"] = json!("recover");
                }
                t
            }
            Shape::Wait => json!({"id": id, "type": "wait", "wait": {"seconds": 30}}),
            Shape::Event => json!({"id": id, "type": "event", "event": {"name": EVENT}}),
            Shape::Parallel => json!({"id": id, "type": "parallel", "parallel": {"branches": [
                {"name": "a", "steps": [task(&format!("{id}a"), 1, true)]},
                {"name": "b", "steps": [task(&format!("{id}b"), 2, false)]}]}}),
            // Three items, two at a time; an item's task writes no variable
            // (the items would race for it), the step writes their results.
            Shape::Map => {
                let mut item = task(&format!("{id}m"), 1, true);
                item.as_object_mut().map(|t| t.remove("output"));
                json!({"id": id, "type": "map", "output": {id.clone(): "$.output"},
                    "map": {"items": "${ [1, 2, 3] }", "maxConcurrency": 2, "steps": [item]}})
            }
            Shape::Decision => json!({"id": id, "type": "decision", "decision": {
                "expression": "input.flag", "branches": {"true": format!("{id}t")},
                "default": "recover"}}),
            Shape::Child => {
                json!({"id": id, "type": "subworkflow", "subworkflow": {"workflow": "helper"}})
            }
        };
        let next = (i + 1 < shapes.len()).then(|| format!("s{}", i + 1));
        if let Shape::Decision = s {
            // The decision's branch step carries on.
            let mut t = task(&format!("{id}t"), 1, false);
            if let Some(n) = &next {
                t["next"] = json!(n);
            }
            steps.push(step);
            steps.push(t);
            continue;
        }
        if let Some(n) = next {
            step["next"] = json!(n);
        }
        steps.push(step);
    }
    steps.push(
        json!({"id": "recover", "type": "task", "capability": "transform", "input": "recovered"}),
    );
    vec![child, json!({"name": "main", "steps": steps})]
}
