//! The steps a workflow declares, where, and in which scope; and the scope
//! rules every reference to a step obeys.
//!
//! Owns [`Located`] (a step of the document with its path and scope),
//! [`Declared`] (every declared id, with its first declaration) and the rule
//! a target must follow: a top-level step may only lead (`next`, decision
//! branches and default, `onError`) to a top-level step; a step in a
//! parallel branch only to a step of the same branch, and a step of a map's
//! item flow only to a step of that flow. Step ids are unique
//! across the whole workflow.
//!
//! Used by `compile` and `compile_step`, and depends on neither. It must
//! never compile a step or report anything but duplicate ids and targets
//! that break the scope rules.

use std::collections::BTreeMap;

use super::definition::StepDefinition;
use super::problem::{Problems, field, index};
use super::step::Scope;

/// A step of the document with where it was found.
pub(crate) struct Located<'a> {
    pub(crate) path: String,
    pub(crate) scope: Scope,
    pub(crate) definition: &'a StepDefinition,
}

/// Every declared step id, with the scope and path of its first declaration.
pub(crate) struct Declared {
    ids: BTreeMap<String, (Scope, String)>,
}

impl Declared {
    /// The scope step `id` is declared in, if it is declared.
    pub(crate) fn scope(&self, id: &str) -> Option<&Scope> {
        self.ids.get(id).map(|(scope, _)| scope)
    }

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
            Some((inner, _)) if *scope == Scope::Top => problems.push(
                path,
                format!(
                    "step `{target}` is inside {}; a top-level step can only lead to a \
                     top-level step",
                    inner.describe()
                ),
            ),
            Some(_) => problems.push(
                path,
                match scope {
                    Scope::Items { map } => format!(
                        "step `{target}` is outside the item steps of map step `{map}`; an \
                         item step can only lead to a step of the same item flow"
                    ),
                    _ => format!(
                        "step `{target}` is outside this branch; a step in a parallel \
                         branch can only lead to a step of the same branch"
                    ),
                },
            ),
        }
    }
}

/// Lists `steps` (found at `path`, in `scope`) and their nested steps in
/// declaration order: a parallel step comes before its branches' steps.
pub(crate) fn locate<'a>(
    steps: &'a [StepDefinition],
    path: &str,
    scope: &Scope,
    out: &mut Vec<Located<'a>>,
) {
    for (at, step) in steps.iter().enumerate() {
        let step_path = index(path, at);
        out.push(Located {
            path: step_path.clone(),
            scope: scope.clone(),
            definition: step,
        });
        if let Some(map) = &step.map {
            let items_scope = Scope::Items {
                map: step.id.clone(),
            };
            let steps_path = field(&field(&step_path, "map"), "steps");
            locate(&map.steps, &steps_path, &items_scope, out);
        }
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
pub(crate) fn declare(located: &[Located<'_>], problems: &mut Problems) -> Declared {
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
