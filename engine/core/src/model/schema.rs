//! The JSON Schemas a workflow declares for its `input` (and `output`).
//!
//! Owns compiling a schema when the workflow is defined (an invalid schema is
//! a definition problem) and checking an execution's input against it. It
//! must never fetch anything: the `jsonschema` crate is built without its
//! file and HTTP resolvers, so a remote `$ref` is a definition problem, not a
//! request.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// How many input problems [`InputSchema::check`] reports at most.
pub const INPUT_PROBLEMS_MAX: usize = 20;

/// A compiled JSON Schema.
#[derive(Clone)]
pub struct InputSchema {
    validator: Arc<jsonschema::Validator>,
}

impl fmt::Debug for InputSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InputSchema")
    }
}

impl InputSchema {
    /// Compiles `schema`; the error is a problem message.
    pub(crate) fn compile(schema: &Value) -> Result<InputSchema, String> {
        let validator = jsonschema::validator_for(schema)
            .map_err(|error| format!("is not a valid JSON Schema: {error}"))?;
        Ok(InputSchema {
            validator: Arc::new(validator),
        })
    }

    /// Checks `input`; the error lists what is wrong, each as
    /// `"<JSON pointer into the input>: <message>"` (at most
    /// [`INPUT_PROBLEMS_MAX`]).
    pub fn check(&self, input: &Value) -> Result<(), Vec<String>> {
        let problems: Vec<String> = self
            .validator
            .iter_errors(input)
            .take(INPUT_PROBLEMS_MAX)
            .map(|error| {
                let at = error.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                format!("{at}: {error}")
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
