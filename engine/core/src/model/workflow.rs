//! [`Workflow`]: a definition that has been read, checked and compiled.
//!
//! Owns the pipeline text → JSON → decoded definition → compiled steps →
//! canonical form and version hash, and the read-only view the engine uses.
//! A `Workflow` only exists if its definition had no problem at all, and it
//! never changes afterwards, so it can be shared (`Arc<Workflow>`) across
//! threads and an execution pinned to its version replays the same steps.

use std::collections::BTreeMap;

use serde_json::Value;

use super::compile::{compile, subworkflow_refs};
use super::decode::{Admission, decode};
use super::definition::WorkflowDefinition;
use super::document::{parse_json, parse_yaml};
use super::hash::{canonical_json, version_hash};
use super::language::Language;
use super::limits::{Limit, start_context};
use super::problem::{DefinitionError, Problems};
use super::references::{WorkflowReference, references};
use super::schema::InputSchema;
use super::stack::on_large_stack;
use super::step::{ErrorHandler, HandlerTarget, Step};

/// A valid, compiled, immutable workflow definition.
#[derive(Debug, Clone)]
pub struct Workflow {
    definition: WorkflowDefinition,
    canonical: String,
    version: String,
    steps: Vec<Step>,
    by_id: BTreeMap<String, usize>,
    start: String,
    error_handlers: Vec<ErrorHandler>,
    input_schema: Option<InputSchema>,
    limits: Vec<Limit>,
}

impl Workflow {
    /// Reads a definition written in JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Workflow, DefinitionError> {
        let value = parse_json(bytes).map_err(document_problem)?;
        Workflow::from_value(&value)
    }

    /// Reads a definition written in YAML.
    pub fn from_yaml(text: &str) -> Result<Workflow, DefinitionError> {
        let value = parse_yaml(text).map_err(document_problem)?;
        Workflow::from_value(&value)
    }

    /// Reads a definition already parsed as JSON.
    pub fn from_value(value: &Value) -> Result<Workflow, DefinitionError> {
        // One compile thread for the whole definition, not one per expression.
        on_large_stack(|| Workflow::build(value, Admission::New)).map_err(document_problem)?
    }

    /// Reads a definition the engine stored when it was defined (its
    /// canonical JSON, from the catalog), as it was accepted then: bounds
    /// on a value added to the language since (`maxTransitions`' maximum)
    /// do not apply, so a data folder written by an earlier build still
    /// opens, with the same versions. Everything else is checked as ever.
    pub fn from_stored_json(bytes: &[u8]) -> Result<Workflow, DefinitionError> {
        let value = parse_json(bytes).map_err(document_problem)?;
        on_large_stack(|| Workflow::build(&value, Admission::Stored)).map_err(document_problem)?
    }

    fn build(value: &Value, admission: Admission) -> Result<Workflow, DefinitionError> {
        let mut problems = Problems::default();
        let decoded = decode(value, admission, &mut problems);
        let compiled = compile(&decoded.definition, &decoded.broken, &mut problems);
        if !problems.is_empty() {
            return Err(problems.into_error());
        }
        let canonical = canonical_json(&decoded.definition).map_err(document_problem)?;
        let by_id = compiled
            .steps
            .iter()
            .enumerate()
            .map(|(at, step)| (step.id.clone(), at))
            .collect();
        Ok(Workflow {
            version: version_hash(&canonical),
            canonical,
            definition: decoded.definition,
            steps: compiled.steps,
            by_id,
            start: compiled.start,
            error_handlers: compiled.error_handlers,
            input_schema: compiled.input_schema,
            limits: compiled.limits,
        })
    }

    /// The workflow's name, by which executions start it and others refer to it.
    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// The version: lowercase hex blake3 of [`canonical_json`](Self::canonical_json).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The version of the workflow language the definition is read with.
    pub fn language(&self) -> Language {
        Language::of(self.definition.language)
    }

    /// The document's own `version` label, if it has one.
    pub fn label(&self) -> Option<&str> {
        self.definition.version.as_deref()
    }

    /// The canonical form: the definition as JSON, keys sorted, no whitespace.
    /// Reading it back gives the same workflow with the same version.
    pub fn canonical_json(&self) -> &str {
        &self.canonical
    }

    /// The decoded document.
    pub fn definition(&self) -> &WorkflowDefinition {
        &self.definition
    }

    /// The entry step's id: `start`, or the first step.
    pub fn start(&self) -> &str {
        &self.start
    }

    /// The step with id `id`, wherever it is declared.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.by_id.get(id).and_then(|&at| self.steps.get(at))
    }

    /// Every step in declaration order; a parallel step is followed by the
    /// steps of its branches, in branch order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter()
    }

    /// The workflow's error handlers, in document order.
    pub fn error_handlers(&self) -> &[ErrorHandler] {
        &self.error_handlers
    }

    /// The first error handler matching `error_type`, if any.
    pub fn error_handler_for(&self, error_type: &str) -> Option<&ErrorHandler> {
        self.error_handlers
            .iter()
            .find(|handler| handler.matches(error_type))
    }

    /// The whole execution's time limit, in milliseconds.
    pub fn timeout_ms(&self) -> Option<u64> {
        self.definition.timeout_ms
    }

    /// The whole execution's deadline (it warns, never fails), in milliseconds.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.definition.deadline_ms
    }

    /// Its limits on its own executions (`concurrency`, then `rateLimit`):
    /// an execution of a workflow with any waits for them before its first
    /// step.
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// The document's cap on step transitions; the engine applies its own
    /// default when this is `None`.
    pub fn max_transitions(&self) -> Option<u64> {
        self.definition.max_transitions
    }

    /// The names of the workflows this one starts as subworkflows (sorted,
    /// without repeats), so the engine can look for longer cycles through
    /// stored definitions. A workflow naming itself is already refused.
    pub fn subworkflow_refs(&self) -> Vec<&str> {
        subworkflow_refs(&self.steps)
    }

    /// The names of the workflows this one's error handlers start (sorted,
    /// without repeats); handlers that are steps of this workflow are not
    /// listed. A handler naming this workflow itself is already refused.
    pub fn handler_workflow_refs(&self) -> Vec<&str> {
        let names: std::collections::BTreeSet<&str> = self
            .error_handlers
            .iter()
            .filter_map(|handler| match &handler.handler {
                HandlerTarget::Workflow(name) => Some(name.as_str()),
                HandlerTarget::Step(_) => None,
            })
            .collect();
        names.into_iter().collect()
    }

    /// Every other workflow this one names, with where it names it:
    /// subworkflow steps and error handlers that are not its own steps.
    pub fn references(&self) -> Vec<WorkflowReference> {
        references(&self.definition)
    }

    /// The JSON Schema an execution's input must satisfy, as written.
    pub fn input_schema(&self) -> Option<&Value> {
        self.definition.input.as_ref()
    }

    /// Checks an execution's input against the input schema (always `Ok`
    /// without one); the error lists each violation with its JSON pointer.
    /// The keys of its limits are evaluated over the input too: an input
    /// they cannot be taken from is refused here, before anything starts.
    pub fn check_input(&self, input: &Value) -> Result<(), Vec<String>> {
        if let Some(schema) = &self.input_schema {
            schema.check(input)?;
        }
        if self.limits.is_empty() {
            return Ok(());
        }
        let context = start_context(&self.definition, input);
        let problems: Vec<String> = self
            .limits
            .iter()
            .filter_map(|limit| limit.key_of(&context).err())
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// A problem with the document as a whole.
fn document_problem(message: String) -> DefinitionError {
    let mut problems = Problems::default();
    problems.push("", message);
    problems.into_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workflow_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Workflow>();
        assert_send_sync::<std::sync::Arc<Workflow>>();
    }
}
