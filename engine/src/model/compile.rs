//! Compiling a decoded definition into engine-facing steps, and every check
//! that spans more than one field: unique step ids, targets that exist and
//! stay in their scope, the entry step, error handlers, and the workflow's
//! JSON Schemas.
//!
//! Owns the scope rules. A top-level step may only lead (`next`, decision
//! branches and default, `onError`) to a top-level step; a step in a parallel
//! branch only to a step of the same branch. A branch ends at a step without
//! `next`, and the parallel step continues at its own `next` when all of its
//! branches have ended. Step ids are unique across the whole workflow.
//!
//! It must never report a problem that only follows from one the decoder
//! already reported: steps the decoder could not read are not compiled, but
//! their ids still count as declared.

use std::collections::{BTreeMap, BTreeSet};

use super::compile_step::{compile_step, retry_policy};
use super::definition::{StepDefinition, WorkflowDefinition};
use super::names;
use super::problem::{Problems, field, index};
use super::schema::InputSchema;
use super::step::{ErrorHandler, HandlerTarget, Scope, Step, StepKind};

/// The most steps a workflow may have, nested ones included.
pub const STEPS_MAX: usize = 1_000;

/// A step of the document with where it was found.
pub(crate) struct Located<'a> {
    pub(crate) path: String,
    pub(crate) scope: Scope,
    pub(crate) definition: &'a StepDefinition,
}

/// The compiled parts of a workflow (meaningful only without problems).
pub(crate) struct Compiled {
    pub(crate) steps: Vec<Step>,
    pub(crate) start: String,
    pub(crate) error_handlers: Vec<ErrorHandler>,
    pub(crate) input_schema: Option<InputSchema>,
}

/// Every declared step id, with the scope and path of its first declaration.
pub(crate) struct Declared {
    ids: BTreeMap<String, (Scope, String)>,
}

impl Declared {
    /// Checks that `target` (written at `path` by a step in `scope`) names a
    /// step of the same scope.
    pub(crate) fn check_target(
        &self,
        scope: &Scope,
        target: &str,
        path: &str,
        problems: &mut Problems,
    ) {
        match self.ids.get(target) {
            None => problems.push(path, format!("no step has the id `{target}`")),
            Some((found, _)) if found == scope => {}
            Some((Scope::Branch { parallel, .. }, _)) if *scope == Scope::Top => problems.push(
                path,
                format!(
                    "step `{target}` is inside a branch of parallel step `{parallel}`; a \
                     top-level step can only lead to a top-level step"
                ),
            ),
            Some(_) => problems.push(
                path,
                format!(
                    "step `{target}` is outside this branch; a step in a parallel branch can \
                     only lead to a step of the same branch"
                ),
            ),
        }
    }
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
    let steps: Vec<Step> = located
        .iter()
        .filter(|step| !broken.contains(&step.path))
        .filter_map(|step| compile_step(step, &definition.name, &declared, problems))
        .collect();
    Compiled {
        steps,
        start: start(definition, &declared, problems),
        error_handlers: error_handlers(definition, broken, &declared, problems),
        input_schema: schemas(definition, problems),
    }
}

/// Lists `steps` (found at `path`, in `scope`) and their nested steps in
/// declaration order: a parallel step comes before its branches' steps.
fn locate<'a>(steps: &'a [StepDefinition], path: &str, scope: &Scope, out: &mut Vec<Located<'a>>) {
    for (at, step) in steps.iter().enumerate() {
        let step_path = index(path, at);
        out.push(Located {
            path: step_path.clone(),
            scope: scope.clone(),
            definition: step,
        });
        let Some(parallel) = &step.parallel else {
            continue;
        };
        for (branch_at, branch) in parallel.branches.iter().enumerate() {
            let branch_path = index(
                &field(&field(&step_path, "parallel"), "branches"),
                branch_at,
            );
            let branch_scope = Scope::Branch {
                parallel: step.id.clone(),
                branch: branch_at,
            };
            locate(
                &branch.steps,
                &field(&branch_path, "steps"),
                &branch_scope,
                out,
            );
        }
    }
}

/// Declares every step id, reporting duplicates where they are redeclared.
fn declare(located: &[Located<'_>], problems: &mut Problems) -> Declared {
    let mut ids: BTreeMap<String, (Scope, String)> = BTreeMap::new();
    for step in located {
        let id = &step.definition.id;
        if id.is_empty() {
            continue;
        }
        match ids.get(id) {
            Some((_, first)) => problems.push(
                field(&step.path, "id"),
                format!("duplicate step id `{id}`; it is first declared at {first}"),
            ),
            None => {
                ids.insert(id.clone(), (step.scope.clone(), step.path.clone()));
            }
        }
    }
    Declared { ids }
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
        let target = match declared.ids.get(name) {
            Some((Scope::Top, _)) => HandlerTarget::Step(name.clone()),
            Some((Scope::Branch { parallel, .. }, _)) => {
                problems.push(
                    handler_path,
                    format!(
                        "step `{name}` is inside a branch of parallel step `{parallel}`; an \
                         error handler must be a top-level step or a workflow name"
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
