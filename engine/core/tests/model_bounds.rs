//! The bounds on a definition's text: at most `DOCUMENT_BYTES_MAX` bytes and
//! `DOCUMENT_DEPTH_MAX` levels of nesting, in JSON and YAML alike (flow or
//! block style), refused as one problem that names the limit. A document just
//! within them is read as usual.

use retrace_core::model::{DOCUMENT_BYTES_MAX, DOCUMENT_DEPTH_MAX, Workflow};

/// Levels around a step's `input`: the document, `steps`, the step.
const AROUND_INPUT: usize = 3;

fn nested_arrays(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

fn json_with_input(levels: usize) -> String {
    format!(
        r#"{{"name": "w", "steps": [{{"id": "s", "type": "task", "capability": "c", "input": {}}}]}}"#,
        nested_arrays(levels)
    )
}

fn yaml_flow_with_input(levels: usize) -> String {
    format!(
        "name: w\nsteps:\n  - id: s\n    type: task\n    capability: c\n    input: {}\n",
        nested_arrays(levels)
    )
}

/// `input` as `levels` block mappings, each indented under the one before.
fn yaml_block_with_input(levels: usize) -> String {
    let mut text =
        "name: w\nsteps:\n  - id: s\n    type: task\n    capability: c\n    input:\n".to_owned();
    for level in 0..levels {
        let pad = " ".repeat(6 + 2 * level);
        let value = if level + 1 == levels { " 1" } else { "" };
        text.push_str(&format!("{pad}k:{value}\n"));
    }
    text
}

/// `input` as nested block sequences written at their key's indentation,
/// which open no indentation level of their own.
fn yaml_indentless_with_input(pairs: usize) -> String {
    let mut text =
        "name: w\nsteps:\n  - id: s\n    type: task\n    capability: c\n    input:\n".to_owned();
    text.push_str("      k:\n");
    for level in 0..pairs {
        let pad = " ".repeat(6 + 2 * level);
        text.push_str(&format!("{pad}- k:\n"));
    }
    text.push_str(&format!("{}- 1\n", " ".repeat(6 + 2 * pairs)));
    text
}

/// The one problem a refused document has.
fn only_problem(result: Result<Workflow, retrace_core::model::DefinitionError>) -> String {
    let error = result.expect_err("refused");
    assert_eq!(error.problems.len(), 1, "{error}");
    assert_eq!(error.problems[0].path, "", "{error}");
    error.problems[0].message.clone()
}

fn assert_names_the_depth_limit(message: &str) {
    assert!(
        message.starts_with(&format!(
            "the document nests deeper than {DOCUMENT_DEPTH_MAX} levels (a definition may nest \
             at most {DOCUMENT_DEPTH_MAX} levels of objects and arrays) at line "
        )),
        "{message}"
    );
}

#[test]
fn the_depth_limit_is_100_levels() {
    assert_eq!(DOCUMENT_DEPTH_MAX, 100);
}

#[test]
fn json_nested_past_the_limit_is_refused_naming_it() {
    let levels = DOCUMENT_DEPTH_MAX - AROUND_INPUT;
    let workflow = Workflow::from_json(json_with_input(levels).as_bytes()).expect("within");
    assert_eq!(workflow.name(), "w");
    let message = only_problem(Workflow::from_json(json_with_input(levels + 1).as_bytes()));
    assert_names_the_depth_limit(&message);
    // Far past the limit: refused at the same point.
    let message = only_problem(Workflow::from_json(json_with_input(100_000).as_bytes()));
    assert_names_the_depth_limit(&message);
}

#[test]
fn yaml_flow_nested_past_the_limit_is_refused_naming_it() {
    let levels = DOCUMENT_DEPTH_MAX - AROUND_INPUT;
    let within = Workflow::from_yaml(&yaml_flow_with_input(levels)).expect("within");
    let from_json = Workflow::from_json(json_with_input(levels).as_bytes()).expect("within");
    assert_eq!(within.version(), from_json.version());
    let message = only_problem(Workflow::from_yaml(&yaml_flow_with_input(levels + 1)));
    assert_names_the_depth_limit(&message);
    assert!(message.ends_with("at line 6 column 109"), "{message}");
    for text in [
        "[".repeat(100_000),
        "{a: ".repeat(50_000),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
    ] {
        assert_names_the_depth_limit(&only_problem(Workflow::from_yaml(&text)));
    }
}

#[test]
fn yaml_block_nested_past_the_limit_is_refused_naming_it() {
    let levels = DOCUMENT_DEPTH_MAX - AROUND_INPUT;
    Workflow::from_yaml(&yaml_block_with_input(levels)).expect("within");
    let message = only_problem(Workflow::from_yaml(&yaml_block_with_input(levels + 1)));
    assert_names_the_depth_limit(&message);
    let message = only_problem(Workflow::from_yaml(&"- ".repeat(100_000)));
    assert_names_the_depth_limit(&message);
}

#[test]
fn yaml_sequences_at_their_keys_indentation_count_too() {
    // `k:` then `- k:` per pair: two levels each, on top of `input`'s own.
    let pairs = (DOCUMENT_DEPTH_MAX - AROUND_INPUT - 2) / 2;
    Workflow::from_yaml(&yaml_indentless_with_input(pairs)).expect("within");
    let message = only_problem(Workflow::from_yaml(&yaml_indentless_with_input(pairs + 1)));
    assert_names_the_depth_limit(&message);
}

#[test]
fn a_document_past_the_size_limit_is_refused_naming_it() {
    // Within the limit: a long description is fine.
    let padding = DOCUMENT_BYTES_MAX - 200;
    let json = format!(
        r#"{{"name": "w", "description": "{}", "steps": [{{"id": "s", "type": "task", "capability": "c"}}]}}"#,
        "x".repeat(padding)
    );
    assert!(json.len() <= DOCUMENT_BYTES_MAX);
    Workflow::from_json(json.as_bytes()).expect("within");
    let over = format!("{json}{}", " ".repeat(DOCUMENT_BYTES_MAX));
    let expected = format!(
        "the document is {} bytes; a definition may be at most 1048576 bytes (1 MiB)",
        over.len()
    );
    assert_eq!(only_problem(Workflow::from_json(over.as_bytes())), expected);
    assert_eq!(only_problem(Workflow::from_yaml(&over)), expected);
}

/// Free text in a definition (its description, version and tags, a step's
/// name, a branch's name, a subworkflow's version) refuses control and
/// bidirectional characters as names do, naming each at its path; a
/// description keeps its line breaks and tabs.
#[test]
fn free_text_refuses_control_and_bidi_characters_at_its_path() {
    let rlo = "\u{202E}";
    let doc = serde_json::json!({
        "name": "w",
        "description": format!("line one\n\tline two {rlo}"),
        "version": format!("v1{rlo}"),
        "tags": ["fine", "bell\u{7}"],
        "steps": [
            {"id": "a", "type": "parallel", "name": format!("A{rlo}"), "next": "b", "parallel": {"branches": [
                {"name": format!("left{rlo}"), "steps": [{"id": "l", "type": "wait", "wait": {"seconds": 0}}]},
                {"name": "right", "steps": [{"id": "r", "type": "wait", "wait": {"seconds": 0}}]}
            ]}},
            {"id": "b", "type": "subworkflow", "subworkflow": {"workflow": "child", "version": "line\nbreak"}}
        ]
    });
    let error = Workflow::from_json(doc.to_string().as_bytes()).expect_err("refused");
    let mut found: Vec<(String, String)> = error
        .problems
        .iter()
        .filter(|p| p.message.contains("must not contain U+"))
        .map(|p| (p.path.clone(), p.message.clone()))
        .collect();
    found.sort();
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "description",
            "steps[0].name",
            "steps[0].parallel.branches[0].name",
            "steps[1].subworkflow.version",
            "tags[1]",
            "version",
        ],
        "{error}"
    );
    assert!(
        found
            .iter()
            .any(|(_, m)| m.contains("U+202E (RIGHT-TO-LEFT OVERRIDE)"))
    );
    assert!(found.iter().any(|(_, m)| m.contains("U+0007")));
    assert!(
        found.iter().any(|(_, m)| m.contains("U+000A")),
        "a label has no line break"
    );

    // Without those characters it is accepted, line breaks in the
    // description included.
    let clean = serde_json::json!({
        "name": "w",
        "description": "line one\n\tline two",
        "version": "v1",
        "tags": ["fine"],
        "steps": [{"id": "a", "type": "wait", "name": "Pause", "wait": {"seconds": 0}}]
    });
    Workflow::from_json(clean.to_string().as_bytes()).expect("accepted");
}
