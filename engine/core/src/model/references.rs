//! Which other workflows a definition names, and where: subworkflow steps
//! (at any depth of parallel branches) and error handlers that are not
//! steps of the workflow itself.
//!
//! A definition may name a workflow that is not defined yet (workflows are
//! defined in any order), so this is not a problem of the definition; the
//! engine turns a reference to nothing into a warning. Owns the paths, in
//! the form problems use (`steps[2].parallel.branches[0].steps[1]...`). It
//! must never decide whether a reference is valid: it only lists them.

use super::definition::{StepDefinition, StepType, WorkflowDefinition};

/// How a workflow names another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceKind {
    /// A `subworkflow` step starts it.
    Subworkflow,
    /// An entry of `errorHandlers` runs it.
    ErrorHandler,
}

/// One reference to another workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowReference {
    /// Where in the document, e.g. `steps[3].subworkflow.workflow`.
    pub path: String,
    pub kind: ReferenceKind,
    pub workflow: String,
    /// A pinned version, if the step names one.
    pub version: Option<String>,
}

/// Every reference `definition` makes to another workflow, in document order.
pub(crate) fn references(definition: &WorkflowDefinition) -> Vec<WorkflowReference> {
    let mut out = Vec::new();
    in_steps(&definition.steps, "steps", &mut out);
    let top_level = |id: &str| definition.steps.iter().any(|s| s.id == id);
    for (i, handler) in definition.error_handlers.iter().enumerate() {
        if !top_level(&handler.handler) {
            out.push(WorkflowReference {
                path: format!("errorHandlers[{i}].handler"),
                kind: ReferenceKind::ErrorHandler,
                workflow: handler.handler.clone(),
                version: None,
            });
        }
    }
    out
}

fn in_steps(steps: &[StepDefinition], at: &str, out: &mut Vec<WorkflowReference>) {
    for (i, step) in steps.iter().enumerate() {
        let here = format!("{at}[{i}]");
        if let (StepType::Subworkflow, Some(sub)) = (step.step_type, &step.subworkflow) {
            out.push(WorkflowReference {
                path: format!("{here}.subworkflow.workflow"),
                kind: ReferenceKind::Subworkflow,
                workflow: sub.workflow.clone(),
                version: sub.version.clone(),
            });
        }
        if let Some(map) = &step.map {
            in_steps(&map.steps, &format!("{here}.map.steps"), out);
        }
        if let Some(parallel) = &step.parallel {
            for (b, branch) in parallel.branches.iter().enumerate() {
                in_steps(
                    &branch.steps,
                    &format!("{here}.parallel.branches[{b}].steps"),
                    out,
                );
            }
        }
    }
}
