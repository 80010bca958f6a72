//! Whatever text a user sends, reading it as a workflow, a path or an
//! expression returns a value or an error; it never panics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use retrace_core::model::{ContextPath, Expr, Workflow};
use serde_json::json;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn expressions_never_panic(source in r#"(\$\.?|\$\{|\}|input|variables|[a-z]{1,3}|[ .,()\[\]{}:?!+*/%<>=&|'"\\rb]|[0-9]{1,3}|é|\n){0,24}"#) {
        if let Ok(expr) = Expr::compile(&source) {
            let _ = expr.evaluate(&json!({"input": {"a": [1, "x"]}, "variables": {}}));
        }
    }

    #[test]
    fn any_text_never_panics(source in any::<String>()) {
        let _ = Expr::compile(&source);
        let _ = ContextPath::parse(&format!("$.{source}"));
        let _ = Workflow::from_json(source.as_bytes());
        let _ = Workflow::from_yaml(&source);
    }

    #[test]
    fn paths_never_panic(source in r#"\$\.(input|variables|x)?([.\[\]'"0-9a-zé_-]){0,16}"#) {
        if let Ok(path) = ContextPath::parse(&source) {
            let _ = path.lookup(&json!({"input": {"a": [1]}}));
        }
    }

    #[test]
    fn mangled_workflows_never_panic(cut in 0usize..2000, junk in "[\\[\\]{}\",:a-z0-9 ]{0,8}") {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workflows/data_processing.yaml"),
        ).unwrap();
        let cut = text.char_indices().map(|(i, _)| i).find(|&i| i >= cut % text.len()).unwrap_or(0);
        let mangled = format!("{}{junk}{}", &text[..cut], &text[cut..]);
        let _ = Workflow::from_yaml(&mangled);
        let json = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workflows/data_processing.json"),
        ).unwrap();
        let cut = json.char_indices().map(|(i, _)| i).find(|&i| i >= cut % json.len()).unwrap_or(0);
        let mangled = format!("{}{junk}{}", &json[..cut], &json[cut..]);
        let _ = Workflow::from_json(mangled.as_bytes());
    }
}
