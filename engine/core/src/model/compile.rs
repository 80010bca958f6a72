//! Compiling a decoded definition into engine-facing steps, and every check
//! that spans more than one field: unique step ids, targets that exist and
//! stay in their scope, the entry step, error handlers, and the workflow's
//! JSON Schemas.
//!
//! Owns the order of compiling: locate and declare every step (see
//! `declared`, which owns the scope rules targets are checked against),
//! compile each step (`compile_step`), then the workflow-wide parts. A
//! branch ends at a step without `next`, and the parallel step continues at
//! its own `next` when all of its branches have ended.
//!
//! It must never report a problem that only follows from one the decoder
//! already reported: steps the decoder could not read are not compiled, but
//! their ids still count as declared.

use std::collections::BTreeSet;

use serde_json::Value;

use super::compile_step::{compile_step, retry_policy};
use super::declared::{Declared, declare, locate};
use super::definition::WorkflowDefinition;
use super::language::Language;
use super::limits::{Limit, compile_limits};
use super::mapping::Mapping;
use super::names;
use super::problem::{Problems, field, index};
use super::schema::InputSchema;
use super::step::{ErrorHandler, HandlerTarget, Scope, Step, StepKind};

/// The most steps a workflow may have, nested ones included.
pub const STEPS_MAX: usize = 1_000;

/// The compiled parts of a workflow (meaningful only without problems).
pub(crate) struct Compiled {
    pub(crate) steps: Vec<Step>,
    pub(crate) start: String,
    pub(crate) error_handlers: Vec<ErrorHandler>,
    pub(crate) input_schema: Option<InputSchema>,
    pub(crate) limits: Vec<Limit>,
}

/// Compiles `definition`, pushing every problem found.
pub(crate) fn compile(
    definition: &WorkflowDefinition,
    broken: &BTreeSet<String>,
    problems: &mut Problems,
) -> Compiled {
    let mut located = Vec::new();
    locate(&definition.steps, "steps", &Scope::Top, &mut located);
    if located.len() > STEPS_MAX {
        problems.push(
            "steps",
            format!(
                "has {} steps (nested ones included); a workflow may have at most {STEPS_MAX}",
                located.len()
            ),
        );
    }
    let declared = declare(&located, problems);
    let language = Language::of(definition.language);
    let mut steps: Vec<Step> = located
        .iter()
        .filter(|step| !broken.contains(&step.path))
        .filter_map(|step| compile_step(step, &definition.name, &declared, language, problems))
        .collect();
    // The workflow's fairness key is every task step's that has none.
    if let Some(key) = &definition.fairness_key
        && let Ok(default) =
            Mapping::compile_in(&Value::String(key.clone()), "fairnessKey", language).map_err(
                |found| {
                    for (path, message) in found {
                        problems.push(path, message);
                    }
                },
            )
    {
        for step in &mut steps {
            if matches!(step.kind, StepKind::Task { .. }) && step.fairness_key.is_none() {
                step.fairness_key = Some(default.clone());
            }
        }
    }
    Compiled {
        steps,
        start: start(definition, &declared, problems),
        error_handlers: error_handlers(definition, broken, &declared, problems),
        input_schema: schemas(definition, problems),
        limits: compile_limits(definition, problems),
    }
}

/// The entry step: `start`, else the first top-level step.
fn start(definition: &WorkflowDefinition, declared: &Declared, problems: &mut Problems) -> String {
    match &definition.start {
        Some(start) => {
            declared.check_target(&Scope::Top, start, "start", problems);
            start.clone()
        }
        None => definition
            .steps
            .first()
            .map(|step| step.id.clone())
            .unwrap_or_default(),
    }
}

/// Resolves each error handler to a top-level step or a workflow name.
fn error_handlers(
    definition: &WorkflowDefinition,
    broken: &BTreeSet<String>,
    declared: &Declared,
    problems: &mut Problems,
) -> Vec<ErrorHandler> {
    let mut handlers = Vec::new();
    for (at, handler) in definition.error_handlers.iter().enumerate() {
        let path = index("errorHandlers", at);
        if broken.contains(&path) {
            continue;
        }
        let handler_path = field(&path, "handler");
        let name = &handler.handler;
        let target = match declared.scope(name) {
            Some(Scope::Top) => HandlerTarget::Step(name.clone()),
            Some(inner @ (Scope::Branch { .. } | Scope::Items { .. })) => {
                problems.push(
                    handler_path,
                    format!(
                        "step `{name}` is inside {}; an error handler must be a top-level \
                         step or a workflow name",
                        inner.describe()
                    ),
                );
                continue;
            }
            None => {
                if let Err(message) = names::check_workflow_name(name) {
                    problems.push(
                        handler_path,
                        format!("no step has the id `{name}`, and {message}"),
                    );
                } else if *name == definition.name {
                    problems.push(
                        handler_path,
                        "names this workflow itself; a failing handler would start itself again",
                    );
                }
                HandlerTarget::Workflow(name.clone())
            }
        };
        let retry = handler.retry.as_ref().map(retry_policy);
        handlers.push(ErrorHandler {
            error: handler.error.clone(),
            handler: target,
            retry,
        });
    }
    handlers
}

/// Checks the `input` and `output` schemas; keeps the input one for executions.
fn schemas(definition: &WorkflowDefinition, problems: &mut Problems) -> Option<InputSchema> {
    if let Some(output) = &definition.output
        && let Err(message) = InputSchema::compile(output)
    {
        problems.push("output", message);
    }
    let input = definition.input.as_ref()?;
    match InputSchema::compile(input) {
        Ok(schema) => Some(schema),
        Err(message) => {
            problems.push("input", message);
            None
        }
    }
}

/// The ids of the workflows a definition's subworkflow steps start, sorted.
pub(crate) fn subworkflow_refs(steps: &[Step]) -> Vec<&str> {
    let names: BTreeSet<&str> = steps
        .iter()
        .filter_map(|step| match &step.kind {
            StepKind::Subworkflow { workflow, .. } => Some(workflow.as_str()),
            _ => None,
        })
        .collect();
    names.into_iter().collect()
}
