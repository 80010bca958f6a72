//! The canonical form and the version hash: spelling does not matter,
//! content does, and the canonical form reads back as itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use retrace_core::model::Workflow;
use serde_json::{Map, Value, json};

fn sample() -> Value {
    json!({
        "name": "orders",
        "version": "1.2.0",
        "description": "Takes an order: \"charge\", then ship — or refund.",
        "tags": ["billing", "shipping"],
        "input": {"type": "object", "required": ["orderId"]},
        "timeoutMs": 3_600_000,
        "steps": [
            {"id": "charge", "type": "task", "capability": "billing.charge",
             "input": {"order": "$.input.orderId", "amount": "${ input.total * 100 }", "currency": "EUR"},
             "output": {"chargeId": "$.output.id"},
             "retry": {"maxAttempts": 3, "interval": 500, "backoffRate": 1.5, "jitter": 0.25},
             "timeout": {"startToCloseMs": 10000, "heartbeatMs": 2000},
             "compensate": {"capability": "billing.refund", "input": {"charge": "$.output.id"}},
             "next": "ship"},
            {"id": "ship", "type": "parallel", "parallel": {"branches": [
                {"name": "label", "steps": [{"id": "label", "type": "task", "capability": "labels"}]},
                {"name": "notify", "steps": [{"id": "mail", "type": "wait", "wait": {"seconds": 5}}]}
            ]}, "next": "done"},
            {"id": "done", "type": "decision", "decision": {
                "expression": "size(variables.chargeId) > 0", "branches": {"true": "charge"}}, "onFailure": "pause"}
        ],
        "errorHandlers": [{"error": "*", "handler": "global_error_handler"}]
    })
}

fn version_of_json(text: &str) -> String {
    Workflow::from_json(text.as_bytes())
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .version()
        .to_owned()
}

/// JSON text with every object's keys in reverse order and generous whitespace.
fn respelled(value: &Value) -> String {
    fn write(value: &Value, depth: usize, out: &mut String) {
        let pad = "  ".repeat(depth + 1);
        match value {
            Value::Object(map) => {
                out.push_str("{\n");
                let mut keys: Vec<&String> = map.keys().collect();
                keys.reverse();
                for (at, key) in keys.iter().enumerate() {
                    if at > 0 {
                        out.push_str(" ,\n");
                    }
                    out.push_str(&format!("{pad}{} :\t", Value::from(key.as_str())));
                    write(&map[*key], depth + 1, out);
                }
                out.push_str("\n}");
            }
            Value::Array(items) => {
                out.push_str("[ ");
                for (at, item) in items.iter().enumerate() {
                    if at > 0 {
                        out.push_str(" , ");
                    }
                    write(item, depth + 1, out);
                }
                out.push_str(" ]");
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, 0, &mut out);
    out
}

#[test]
fn json_and_yaml_of_one_document_have_one_version() {
    let doc = sample();
    let yaml = serde_norway::to_string(&doc).unwrap();
    let from_yaml = Workflow::from_yaml(&yaml).unwrap();
    assert_eq!(from_yaml.version(), version_of_json(&doc.to_string()));
}

#[test]
fn key_order_and_whitespace_do_not_change_the_version() {
    let doc = sample();
    assert_eq!(
        version_of_json(&respelled(&doc)),
        version_of_json(&doc.to_string())
    );
}

#[test]
fn explicit_nulls_and_empty_lists_are_spelling_too() {
    let mut doc = sample();
    let base = version_of_json(&doc.to_string());
    doc["start"] = Value::Null;
    doc["steps"][0]["name"] = Value::Null;
    doc["errorHandlers"].as_array_mut().unwrap().clear();
    let mut without = sample();
    without.as_object_mut().unwrap().remove("errorHandlers");
    assert_eq!(
        version_of_json(&doc.to_string()),
        version_of_json(&without.to_string())
    );
    assert_ne!(base, version_of_json(&without.to_string()));
}

#[test]
fn the_canonical_form_is_sorted_compact_json() {
    let workflow = Workflow::from_json(sample().to_string().as_bytes()).unwrap();
    let canonical = workflow.canonical_json();
    assert!(
        canonical.starts_with(r#"{"description":"Takes an order"#),
        "{canonical}"
    );
    // serde_json's own map is sorted and its compact writer adds no space,
    // so reading and re-writing the canonical form must not change it.
    let reread: Value = serde_json::from_str(canonical).unwrap();
    assert_eq!(serde_json::to_string(&reread).unwrap(), canonical);
    assert_eq!(
        workflow.version(),
        blake3::hash(canonical.as_bytes()).to_hex().as_str()
    );
}

/// One edit of a document, for `every_change_of_content_changes_the_version`.
type Change = fn(&mut Value);

#[test]
fn every_change_of_content_changes_the_version() {
    let base = version_of_json(&sample().to_string());
    let changes: Vec<(&str, Change)> = vec![
        ("label", |d| d["version"] = json!("1.2.1")),
        ("description", |d| {
            d["description"] = json!("Takes an order.")
        }),
        ("tag order", |d| d["tags"] = json!(["shipping", "billing"])),
        ("literal in a mapping", |d| {
            d["steps"][0]["input"]["currency"] = json!("USD")
        }),
        ("number type in a mapping", |d| {
            d["steps"][0]["input"]["currency"] = json!(1.0)
        }),
        ("retry interval", |d| {
            d["steps"][0]["retry"]["interval"] = json!(501)
        }),
        ("step order in a branch", |d| {
            let branches = d["steps"][1]["parallel"]["branches"]
                .as_array_mut()
                .unwrap();
            branches.swap(0, 1);
        }),
        ("an added default", |d| {
            d["steps"][2]["decision"]["default"] = json!("done")
        }),
        ("onFailure written out", |d| {
            d["steps"][0]["onFailure"] = json!("fail")
        }),
        ("input schema", |d| d["input"]["required"] = json!([])),
    ];
    for (what, change) in changes {
        let mut doc = sample();
        change(&mut doc);
        assert_ne!(version_of_json(&doc.to_string()), base, "{what}");
    }
}

/// Any JSON value that a mapping reads as a literal: no string starts with
/// `$` (a path or an expression) or holds `${` (a template).
fn literal() -> impl Strategy<Value = Value> {
    let text = any::<String>().prop_map(|s| {
        let s = s.replace("${", "$ {");
        if s.starts_with('$') {
            Value::String(format!("x{s}"))
        } else {
            Value::String(s)
        }
    });
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text,
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A valid workflow of `n` steps with random content.
fn workflow() -> impl Strategy<Value = Value> {
    (1usize..6).prop_flat_map(|n| {
        let step = (
            0u8..4,
            literal(),
            prop::option::of(0..n),
            prop::option::of((1u32..10, 0u64..5000, 1.0f64..4.0, 0.0f64..=1.0)),
            prop::option::of(1u64..100_000),
            0..n,
        );
        (
            any::<String>(),
            prop::option::of("[a-z0-9.]{1,8}"),
            prop::collection::vec(any::<String>(), 0..3),
            prop::collection::vec(step, n),
        )
            .prop_map(move |(description, label, tags, steps)| {
                let steps: Vec<Value> = steps
                    .into_iter()
                    .enumerate()
                    .map(|(at, (kind, input, next, retry, timeout, other))| {
                        let mut step = json!({"id": format!("s{at}")});
                        match kind {
                            0 => {
                                step["type"] = json!("task");
                                step["capability"] = json!("noop");
                                step["input"] = json!({"literal": input, "path": "$.input.x[0]"});
                            }
                            1 => {
                                step["type"] = json!("wait");
                                step["wait"] = json!({"seconds": other});
                            }
                            2 => {
                                step["type"] = json!("decision");
                                step["decision"] = json!({
                                    "expression": "${ input.x > 1 }",
                                    "branches": {"true": format!("s{other}")},
                                    "default": "s0",
                                });
                            }
                            _ => {
                                step["type"] = json!("event");
                                step["event"] =
                                    json!({"name": "go", "timeoutMs": 1 + other as u64});
                                step["output"] = json!({"got": input});
                            }
                        }
                        if kind != 2
                            && let Some(next) = next
                        {
                            step["next"] = json!(format!("s{next}"));
                        }
                        if let Some((attempts, interval, rate, jitter)) = retry {
                            step["retry"] = json!({
                                "maxAttempts": attempts, "interval": interval,
                                "backoffRate": rate, "jitter": jitter,
                            });
                        }
                        if let Some(ms) = timeout {
                            step["timeout"] = json!(ms);
                        }
                        step
                    })
                    .collect();
                let mut doc = json!({
                    "name": "generated",
                    "description": description,
                    "tags": tags,
                    "steps": steps,
                });
                if let Some(label) = label {
                    doc["version"] = json!(label);
                }
                doc
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_canonical_form_is_a_fixed_point(doc in workflow()) {
        let first = Workflow::from_json(doc.to_string().as_bytes())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = Workflow::from_json(first.canonical_json().as_bytes())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again.canonical_json(), first.canonical_json());
        prop_assert_eq!(again.version(), first.version());
        prop_assert_eq!(again.definition(), first.definition());
    }

    #[test]
    fn spelling_never_changes_the_version(doc in workflow()) {
        let version = version_of_json(&doc.to_string());
        prop_assert_eq!(version_of_json(&respelled(&doc)), version.clone());
        let yaml = serde_norway::to_string(&doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let from_yaml = Workflow::from_yaml(&yaml)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{yaml}")))?;
        prop_assert_eq!(from_yaml.version(), version);
    }

    #[test]
    fn a_different_description_is_a_different_version(doc in workflow(), other in any::<String>()) {
        prop_assume!(doc["description"] != json!(other));
        let mut changed = doc.clone();
        changed["description"] = json!(other);
        prop_assert_ne!(version_of_json(&changed.to_string()), version_of_json(&doc.to_string()));
    }
}
