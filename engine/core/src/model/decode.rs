//! Decoding a document (already read into JSON) into [`WorkflowDefinition`],
//! reporting every shape problem: wrong JSON types, missing required fields,
//! unknown fields, fields that belong to another step type, values out of
//! range, and names that break the spelling rules.
//!
//! Owns what can be judged from one field or one step alone. It must never
//! follow a reference between steps or compile an expression; that is
//! `compile`'s job, which runs on whatever this produced.
//!
//! Decoding never stops at the first problem. A step whose `id` or `type`
//! cannot be read is still kept (with an empty id or as a task) so indexes in
//! problem paths stay true, and its path is returned in `broken` so later
//! stages neither compile it nor report problems that only follow from it.

use super::expr::unwrap_braces;
use crate::machine::PRIORITY_MAX;
use crate::machine::tags::{TAGS_MAX, check_tag_key};
use std::collections::BTreeSet;

use serde_json::Value;

use super::decode_failure::{decode_error_handler, decode_failure_fields};
use super::definition::{
    BranchDefinition, DecisionDefinition, ErrorHandlerDefinition, EventDefinition, MapDefinition,
    ParallelDefinition, StepDefinition, StepType, SubworkflowDefinition, WaitDefinition,
    WorkflowDefinition,
};
use super::fields::{Fields, must_be};
use super::language::Language;
use super::limits::decode_limits;
use super::names;
use super::problem::{Problems, field, index};

/// A decoded document, and the paths of the steps that could not be decoded.
pub(crate) struct Decoded {
    pub(crate) definition: WorkflowDefinition,
    pub(crate) broken: BTreeSet<String>,
}

/// Whom a document comes from, which decides whether the bounds added to
/// the language after it may have been accepted apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A definition being defined now: every rule applies.
    New,
    /// A definition the engine accepted and stored earlier (its catalog):
    /// read as it was accepted then, so a data folder written by an earlier
    /// build still opens and keeps its versions. Bounds on a value added
    /// since (`maxTransitions` at most
    /// [`WorkflowDefinition::MAX_TRANSITIONS_MAX`]) do not apply; the
    /// engine's own limits (the history limit) bound its executions.
    Stored,
}

/// Decodes the document `value`, pushing every shape problem found.
pub(crate) fn decode(value: &Value, admission: Admission, problems: &mut Problems) -> Decoded {
    let mut broken = BTreeSet::new();
    let mut definition = WorkflowDefinition {
        name: String::new(),
        description: None,
        version: None,
        language: None,
        input: None,
        output: None,
        steps: Vec::new(),
        error_handlers: Vec::new(),
        timeout_ms: None,
        deadline_ms: None,
        fairness_key: None,
        concurrency: None,
        rate_limit: None,
        tags: Vec::new(),
        start: None,
        max_transitions: None,
    };
    let Some(mut doc) = Fields::open(value, "", problems) else {
        return Decoded { definition, broken };
    };
    if let Some(name) = doc.required_string("name", problems) {
        if let Err(message) = names::check_workflow_name(&name) {
            problems.push("name", message);
        }
        definition.name = name;
    }
    definition.description = doc.string("description", problems);
    if let Some(text) = &definition.description {
        free_text(doc.path_of("description"), text, Text::Lines, problems);
    }
    definition.version = doc.string("version", problems);
    if let Some(text) = &definition.version {
        free_text(doc.path_of("version"), text, Text::Label, problems);
    }
    definition.language = language(&mut doc, admission, problems);
    definition.input = schema(&mut doc, "input", problems);
    definition.output = schema(&mut doc, "output", problems);
    if let Some(steps) = doc.required_array("steps", problems) {
        if steps.is_empty() {
            problems.push("steps", "must contain at least one step");
        }
        definition.steps = decode_steps(steps, "steps", problems, &mut broken);
    }
    if let Some(handlers) = doc.array("errorHandlers", problems) {
        for (at, handler) in handlers.iter().enumerate() {
            let path = index("errorHandlers", at);
            let handler = decode_error_handler(handler, &path, problems).unwrap_or_else(|| {
                // A placeholder keeps later handlers at their true index.
                broken.insert(path.clone());
                ErrorHandlerDefinition {
                    error: String::new(),
                    handler: String::new(),
                    retry: None,
                }
            });
            definition.error_handlers.push(handler);
        }
    }
    definition.timeout_ms = doc.positive_u64("timeoutMs", problems);
    definition.deadline_ms = doc.positive_u64("deadlineMs", problems);
    definition.fairness_key = doc.string("fairnessKey", problems);
    (definition.concurrency, definition.rate_limit) = decode_limits(&mut doc, problems);
    definition.tags = doc.strings("tags", problems);
    for (at, tag) in definition.tags.iter().enumerate() {
        free_text(index(&doc.path_of("tags"), at), tag, Text::Label, problems);
    }
    definition.start = doc.string("start", problems);
    definition.max_transitions = max_transitions(&mut doc, admission, problems);
    doc.finish(problems);
    Decoded { definition, broken }
}

/// `language`: a version of the workflow language; a new definition that
/// gives none is recorded with the newest (a stored one without it is
/// version 1, the language before versions, and stays without it, so its
/// version hash is unchanged).
fn language(doc: &mut Fields<'_>, admission: Admission, problems: &mut Problems) -> Option<u64> {
    if !doc.has("language") {
        return (admission == Admission::New).then_some(Language::NEWEST.number());
    }
    let number = doc.positive_u64("language", problems)?;
    if Language::from_number(number).is_none() {
        let known: Vec<String> = Language::ALL.iter().map(|l| l.to_string()).collect();
        problems.push(
            doc.path_of("language"),
            format!(
                "{number} is not a version of the workflow language; the versions are {}",
                known.join(", ")
            ),
        );
        return None;
    }
    Some(number)
}

/// `maxTransitions`: a whole number from 1 to
/// [`WorkflowDefinition::MAX_TRANSITIONS_MAX`] (any, for a stored one).
fn max_transitions(
    doc: &mut Fields<'_>,
    admission: Admission,
    problems: &mut Problems,
) -> Option<u64> {
    let max = WorkflowDefinition::MAX_TRANSITIONS_MAX;
    match doc.positive_u64("maxTransitions", problems) {
        Some(n) if n > max && admission == Admission::New => {
            problems.push(
                doc.path_of("maxTransitions"),
                format!("must be at most {max} (the engine's limit on transitions)"),
            );
            None
        }
        n => n,
    }
}

/// A JSON Schema field: an object or a boolean (checked as a schema later).
fn schema(doc: &mut Fields<'_>, key: &'static str, problems: &mut Problems) -> Option<Value> {
    let value = doc.raw(key)?;
    if value.is_object() || value.is_boolean() {
        Some(value.clone())
    } else {
        problems.push(
            doc.path_of(key),
            must_be("a JSON Schema (an object or a boolean)", value),
        );
        None
    }
}

/// Decodes an array of steps found at `path`.
fn decode_steps(
    steps: &[Value],
    path: &str,
    problems: &mut Problems,
    broken: &mut BTreeSet<String>,
) -> Vec<StepDefinition> {
    steps
        .iter()
        .enumerate()
        .map(|(at, step)| decode_step(step, &index(path, at), problems, broken))
        .collect()
}

/// Decodes one step; a step that cannot be read is returned as a broken placeholder.
fn decode_step(
    value: &Value,
    path: &str,
    problems: &mut Problems,
    broken: &mut BTreeSet<String>,
) -> StepDefinition {
    let mut step = StepDefinition {
        id: String::new(),
        name: None,
        step_type: StepType::Task,
        capability: None,
        decision: None,
        parallel: None,
        map: None,
        wait: None,
        event: None,
        subworkflow: None,
        input: None,
        output: None,
        next: None,
        retry: None,
        timeout: None,
        on_error: None,
        compensate: None,
        on_failure: None,
        priority: None,
        deadline_ms: None,
        fairness_key: None,
        agent_version: None,
        tags: None,
    };
    let Some(mut fields) = Fields::open(value, path, problems) else {
        broken.insert(path.to_owned());
        return step;
    };
    match fields.required_string("id", problems) {
        Some(id) => {
            if let Err(message) = names::check_step_id(&id) {
                problems.push(fields.path_of("id"), message);
            }
            step.id = id;
        }
        None => {
            broken.insert(path.to_owned());
        }
    }
    step.name = fields.string("name", problems);
    if let Some(text) = &step.name {
        free_text(fields.path_of("name"), text, Text::Label, problems);
    }
    let step_type =
        fields
            .required_string("type", problems)
            .and_then(|name| match StepType::parse(&name) {
                Some(step_type) => Some(step_type),
                None => {
                    let all: Vec<&str> = StepType::ALL.iter().map(|t| t.as_str()).collect();
                    problems.push(
                        fields.path_of("type"),
                        format!(
                            "unknown step type `{name}`; expected one of {}",
                            all.join(", ")
                        ),
                    );
                    None
                }
            });
    match step_type {
        Some(step_type) => {
            step.step_type = step_type;
            decode_type_fields(&mut step, &mut fields, problems, broken);
        }
        None => {
            broken.insert(path.to_owned());
            // The type is unknown, so its own fields cannot be judged; accept
            // them silently rather than report them as unknown.
            for step_type in StepType::ALL {
                fields.raw(step_type.own_field());
            }
        }
    }
    step.input = fields.raw("input").cloned();
    step.output = decode_output(&mut fields, problems);
    step.tags = decode_step_tags(&mut fields, problems);
    step.next = fields.string("next", problems);
    if step.step_type == StepType::Decision && step.next.is_some() {
        problems.push(
            fields.path_of("next"),
            "does not belong to a `decision` step, which goes where its branches say",
        );
    }
    step.on_error = fields.string("onError", problems);
    step.priority = decode_priority(&step, &mut fields, problems);
    step.deadline_ms = fields.positive_u64("deadlineMs", problems);
    step.fairness_key = fields.string("fairnessKey", problems);
    if step.fairness_key.is_some() && step.step_type != StepType::Task {
        problems.push(
            fields.path_of("fairnessKey"),
            "only a `task` step has a fairness key",
        );
    }
    step.agent_version = fields.string("agentVersion", problems);
    if let Some(requirement) = &step.agent_version {
        let at = fields.path_of("agentVersion");
        if step.step_type != StepType::Task {
            problems.push(at, "only a `task` step has an agent version requirement");
        } else if let Err(e) = semver::VersionReq::parse(requirement) {
            problems.push(
                at,
                format!(
                    "`{}` is not a version requirement (such as `>=2.1`, `^3`, `=1.4.2` or \
                     `>=2, <4`): {e}",
                    requirement.escape_debug()
                ),
            );
        }
    }
    decode_failure_fields(&mut step, &mut fields, problems);
    fields.finish(problems);
    step
}

/// A task step's `priority`: an integer 0 to 9, or a path or expression
/// (checked when the step starts).
fn decode_priority(
    step: &StepDefinition,
    fields: &mut Fields<'_>,
    problems: &mut Problems,
) -> Option<Value> {
    let value = fields.raw("priority")?.clone();
    let at = fields.path_of("priority");
    if step.step_type != StepType::Task {
        problems.push(at, "only a `task` step has a priority");
        return None;
    }
    let fits = match &value {
        Value::Number(n) => n.as_u64().is_some_and(|p| p <= u64::from(PRIORITY_MAX)),
        Value::String(text) => text.starts_with("$.") || unwrap_braces(text).is_some(),
        _ => false,
    };
    if !fits {
        problems.push(
            at,
            format!(
                "must be an integer from 0 to {PRIORITY_MAX}, or a `$.` path or `${{ … }}` \
                 expression that gives one when the step starts"
            ),
        );
        return None;
    }
    Some(value)
}

/// Decodes the step type's own field, and refuses the other types' fields.
fn decode_type_fields(
    step: &mut StepDefinition,
    fields: &mut Fields<'_>,
    problems: &mut Problems,
    broken: &mut BTreeSet<String>,
) {
    let own = step.step_type.own_field();
    for other in StepType::ALL {
        let key = other.own_field();
        if key != own && fields.raw(key).is_some() {
            problems.push(
                fields.path_of(key),
                format!(
                    "does not belong to a `{}` step (it is for `{}` steps)",
                    step.step_type.as_str(),
                    other.as_str()
                ),
            );
        }
    }
    if !fields.has(own) {
        fields.raw(own);
        problems.push(
            fields.path_of(own),
            format!("is required for a `{}` step", step.step_type.as_str()),
        );
        return;
    }
    match step.step_type {
        StepType::Task => {
            step.capability = fields.string("capability", problems);
            if let Some(capability) = &step.capability
                && let Err(message) = names::check_capability(capability)
            {
                problems.push(fields.path_of("capability"), message);
            }
        }
        StepType::Decision => step.decision = decode_decision(fields, problems),
        StepType::Parallel => step.parallel = decode_parallel(fields, problems, broken),
        StepType::Map => step.map = decode_map(fields, problems, broken),
        StepType::Wait => step.wait = decode_wait(fields, problems),
        StepType::Event => step.event = decode_event(fields, problems),
        StepType::Subworkflow => step.subworkflow = decode_subworkflow(fields, problems),
    }
}

/// Opens the step's own block (`decision`, `wait`, ...) as an object.
fn open_block<'a>(
    fields: &mut Fields<'a>,
    key: &'static str,
    problems: &mut Problems,
) -> Option<Fields<'a>> {
    let path = fields.path_of(key);
    let value = fields.raw(key)?;
    Fields::open(value, &path, problems)
}

fn decode_decision(fields: &mut Fields<'_>, problems: &mut Problems) -> Option<DecisionDefinition> {
    let mut block = open_block(fields, "decision", problems)?;
    let expression = block.required_string("expression", problems);
    let mut branches = std::collections::BTreeMap::new();
    let branches_map = block.object("branches", problems);
    match branches_map {
        None if !block.has("branches") => problems.push(
            block.path_of("branches"),
            "is required: map each value of the expression to a step id",
        ),
        None => {}
        Some(map) if map.is_empty() => problems.push(
            block.path_of("branches"),
            "must map at least one value to a step id",
        ),
        Some(map) => {
            for (key, target) in map {
                match target {
                    Value::String(target) => {
                        branches.insert(key.clone(), target.clone());
                    }
                    other => problems.push(
                        field(&block.path_of("branches"), key),
                        must_be("a step id", other),
                    ),
                }
            }
        }
    }
    let default = block.string("default", problems);
    block.finish(problems);
    Some(DecisionDefinition {
        expression: expression?,
        branches,
        default,
    })
}

fn decode_parallel(
    fields: &mut Fields<'_>,
    problems: &mut Problems,
    broken: &mut BTreeSet<String>,
) -> Option<ParallelDefinition> {
    let mut block = open_block(fields, "parallel", problems)?;
    let mut branches = Vec::new();
    if let Some(items) = block.required_array("branches", problems) {
        if items.is_empty() {
            problems.push(
                block.path_of("branches"),
                "must contain at least one branch",
            );
        }
        for (at, item) in items.iter().enumerate() {
            let path = index(&block.path_of("branches"), at);
            let Some(mut branch) = Fields::open(item, &path, problems) else {
                // A placeholder keeps later branches at their true index.
                broken.insert(path);
                branches.push(BranchDefinition {
                    name: String::new(),
                    steps: Vec::new(),
                });
                continue;
            };
            let name = branch.required_string("name", problems);
            if name.as_deref() == Some("") {
                problems.push(branch.path_of("name"), "must not be empty");
            }
            if let Some(text) = &name {
                free_text(branch.path_of("name"), text, Text::Label, problems);
            }
            let steps = match branch.required_array("steps", problems) {
                Some(steps) => {
                    if steps.is_empty() {
                        problems.push(branch.path_of("steps"), "must contain at least one step");
                    }
                    decode_steps(steps, &branch.path_of("steps"), problems, broken)
                }
                None => Vec::new(),
            };
            branch.finish(problems);
            branches.push(BranchDefinition {
                name: name.unwrap_or_default(),
                steps,
            });
        }
    }
    block.finish(problems);
    Some(ParallelDefinition { branches })
}

/// The most items a `map` step may declare it runs at once.
pub const MAP_CONCURRENCY_MAX: u64 = 10_000;

fn decode_map(
    fields: &mut Fields<'_>,
    problems: &mut Problems,
    broken: &mut BTreeSet<String>,
) -> Option<MapDefinition> {
    let mut block = open_block(fields, "map", problems)?;
    let items = block.raw("items").cloned();
    if items.is_none() {
        problems.push(
            block.path_of("items"),
            "is required: a mapping that gives the array to run the steps for, such as \
             `$.input.files`",
        );
    }
    let steps = match block.required_array("steps", problems) {
        Some(steps) => {
            if steps.is_empty() {
                problems.push(block.path_of("steps"), "must contain at least one step");
            }
            decode_steps(steps, &block.path_of("steps"), problems, broken)
        }
        None => Vec::new(),
    };
    let max_concurrency = block.positive_u64("maxConcurrency", problems);
    if let Some(n) = max_concurrency
        && n > MAP_CONCURRENCY_MAX
    {
        problems.push(
            block.path_of("maxConcurrency"),
            format!("must be at most {MAP_CONCURRENCY_MAX}"),
        );
    }
    let tolerated_failures = block.u64("toleratedFailures", problems);
    let tolerated_failure_percent = block.f64("toleratedFailurePercent", problems);
    if let Some(p) = tolerated_failure_percent
        && !(0.0..=100.0).contains(&p)
    {
        problems.push(
            block.path_of("toleratedFailurePercent"),
            format!("must be a percentage from 0 to 100, not {p}"),
        );
    }
    block.finish(problems);
    Some(MapDefinition {
        items: items?,
        steps,
        max_concurrency,
        tolerated_failures,
        tolerated_failure_percent,
    })
}

fn decode_wait(fields: &mut Fields<'_>, problems: &mut Problems) -> Option<WaitDefinition> {
    let mut block = open_block(fields, "wait", problems)?;
    let seconds = block.u64("seconds", problems);
    let until = block.string("until", problems);
    if block.has("seconds") == block.has("until") {
        problems.push(
            block.path(),
            "needs exactly one of `seconds` (a duration) and `until` (an RFC 3339 instant)",
        );
    }
    block.finish(problems);
    Some(WaitDefinition { seconds, until })
}

fn decode_event(fields: &mut Fields<'_>, problems: &mut Problems) -> Option<EventDefinition> {
    let mut block = open_block(fields, "event", problems)?;
    let name = block.required_string("name", problems);
    if let Some(name) = &name
        && let Err(message) = names::check_event_name(name)
    {
        problems.push(block.path_of("name"), message);
    }
    let correlation = block.string("correlation", problems);
    let timeout_ms = block.positive_u64("timeoutMs", problems);
    block.finish(problems);
    Some(EventDefinition {
        name: name?,
        correlation,
        timeout_ms,
    })
}

fn decode_subworkflow(
    fields: &mut Fields<'_>,
    problems: &mut Problems,
) -> Option<SubworkflowDefinition> {
    let mut block = open_block(fields, "subworkflow", problems)?;
    let workflow = block.required_string("workflow", problems);
    if let Some(workflow) = &workflow
        && let Err(message) = names::check_workflow_name(workflow)
    {
        problems.push(block.path_of("workflow"), message);
    }
    let version = block.string("version", problems);
    if version.as_deref() == Some("") {
        problems.push(block.path_of("version"), "must not be empty");
    }
    if let Some(text) = &version {
        free_text(block.path_of("version"), text, Text::Label, problems);
    }
    block.finish(problems);
    Some(SubworkflowDefinition {
        workflow: workflow?,
        version,
    })
}

/// `output`: an object from variable names to mappings.
fn decode_output(
    fields: &mut Fields<'_>,
    problems: &mut Problems,
) -> Option<std::collections::BTreeMap<String, Value>> {
    let map = fields.raw("output")?;
    let Value::Object(map) = map else {
        problems.push(
            fields.path_of("output"),
            must_be("an object from variable names to mappings", map),
        );
        return None;
    };
    for name in map.keys() {
        if let Err(message) = names::check_variable_name(name) {
            problems.push(field(&fields.path_of("output"), name), message);
        }
    }
    Some(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// A step's `tags`: an object from tag keys to mappings.
fn decode_step_tags(
    fields: &mut Fields<'_>,
    problems: &mut Problems,
) -> Option<std::collections::BTreeMap<String, Value>> {
    let map = fields.raw("tags")?;
    let Value::Object(map) = map else {
        problems.push(
            fields.path_of("tags"),
            must_be("an object from tag keys to mappings", map),
        );
        return None;
    };
    if map.len() > TAGS_MAX {
        problems.push(
            fields.path_of("tags"),
            format!("sets at most {TAGS_MAX} tags, not {}", map.len()),
        );
    }
    for key in map.keys() {
        if let Err(message) = check_tag_key(key) {
            problems.push(field(&fields.path_of("tags"), key), message);
        }
    }
    Some(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// What a free-text field may hold besides printable characters.
#[derive(Clone, Copy)]
enum Text {
    /// A label shown on one line (a version, a tag, a step or branch name).
    Label,
    /// Prose (a description): tabs and line breaks too.
    Lines,
}

/// Free text a definition carries reaches the journal, the logs and any
/// screen that shows it, so it refuses what names refuse: control
/// characters and bidirectional controls, named as `U+XXXX` (a description
/// keeps tabs and line breaks).
fn free_text(path: String, text: &str, kind: Text, problems: &mut Problems) {
    let checked = match kind {
        Text::Label => names::check_name_chars("the text", text),
        Text::Lines => names::check_text("the text", text),
    };
    if let Err(message) = checked {
        problems.push(path, message);
    }
}
