//! Every whole workflow shown in `docs/dsl.md` is checked: a ```json (or
//! ```yaml) block with top-level `steps` must be valid; a ```json invalid
//! block must be refused with exactly the problems in the ```text block that
//! follows it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use retrace_core::model::Workflow;
use serde_json::Value;

struct Block {
    info: String,
    text: String,
    line: usize,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (at, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_owned(),
                    text: String::new(),
                    line: at + 1,
                });
            }
            (Some(_), Some("")) => blocks.extend(open.take()),
            (Some(block), _) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "docs/dsl.md has an unclosed code block");
    blocks
}

fn problems(result: Result<Workflow, retrace_core::model::DefinitionError>) -> String {
    match result {
        Ok(_) => String::new(),
        Err(error) => error
            .problems
            .iter()
            .map(|p| format!("{}: {}\n", p.path, p.message))
            .collect(),
    }
}

#[test]
fn every_workflow_in_the_language_reference_is_checked() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dsl.md");
    let markdown = std::fs::read_to_string(&path).unwrap();
    let blocks = blocks(&markdown);
    let mut checked = 0;
    for (at, block) in blocks.iter().enumerate() {
        let whole = |value: &Value| value.get("steps").is_some();
        match block.info.as_str() {
            "json" => {
                let value: Value = serde_json::from_str(&block.text)
                    .unwrap_or_else(|e| panic!("dsl.md line {}: {e}", block.line));
                if whole(&value) {
                    let found = problems(Workflow::from_json(block.text.as_bytes()));
                    assert_eq!(found, "", "dsl.md line {} is not valid", block.line);
                    checked += 1;
                }
            }
            "yaml" => {
                let value: Value = serde_norway::from_str(&block.text)
                    .unwrap_or_else(|e| panic!("dsl.md line {}: {e}", block.line));
                if whole(&value) {
                    let found = problems(Workflow::from_yaml(&block.text));
                    assert_eq!(found, "", "dsl.md line {} is not valid", block.line);
                    checked += 1;
                }
            }
            "json invalid" => {
                let found = problems(Workflow::from_json(block.text.as_bytes()));
                assert_ne!(found, "", "dsl.md line {} is valid", block.line);
                let expected = blocks
                    .get(at + 1)
                    .filter(|next| next.info == "text")
                    .unwrap_or_else(|| {
                        panic!(
                            "dsl.md line {}: no ```text block of problems follows",
                            block.line
                        )
                    });
                assert_eq!(found, expected.text, "dsl.md line {}", block.line);
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked >= 12, "only {checked} workflows found in dsl.md");
}
