//! Compiling one decoded step into a [`Step`]: its kind, mappings,
//! expressions, targets and failure policies.
//!
//! Owns the defaults the engine sees (a step's name is its id, `onFailure` is
//! `fail`, a retry waits 1000 ms and doubles) and the checks that need one
//! step plus the table of declared ids. It must never look at another step's
//! fields; cross-step rules are in `compile` and `declared`.

use std::collections::BTreeMap;

use chrono::DateTime;
use serde_json::Value;

use super::declared::{Declared, Located};
use super::definition::{RetryDefinition, StepType, TimeoutDefinition};
use super::expr::Expr;
use super::http::{HTTP_CAPABILITY, check_http_input};
use super::language::Language;
use super::mapping::Mapping;
use super::problem::{Problems, field};
use super::step::{
    Branch, Compensation, MapSpec, RetryPolicy, Step, StepKind, Timeouts, Tolerance, WaitSpec,
};

/// Compiles `located`; `None` if its kind cannot be built (problems pushed,
/// or already pushed by the decoder).
pub(crate) fn compile_step(
    located: &Located<'_>,
    workflow_name: &str,
    declared: &Declared,
    language: Language,
    problems: &mut Problems,
) -> Option<Step> {
    let step = located.definition;
    let path = located.path.as_str();
    let target = |key: &str, target: &str, problems: &mut Problems| {
        declared.check_target(&located.scope, target, &field(path, key), problems);
    };
    if let Some(next) = &step.next {
        target("next", next, problems);
    }
    if let Some(on_error) = &step.on_error {
        target("onError", on_error, problems);
    }
    let input = step
        .input
        .as_ref()
        .and_then(|value| mapping(language, value, &field(path, "input"), problems));
    let output = step.output.as_ref().map(|outputs| {
        let output_path = field(path, "output");
        outputs
            .iter()
            .filter_map(|(name, value)| {
                let mapping = mapping(language, value, &field(&output_path, name), problems)?;
                Some((name.clone(), mapping))
            })
            .collect::<BTreeMap<_, _>>()
    });
    let tags_path = field(path, "tags");
    let tags = step
        .tags
        .iter()
        .flatten()
        .filter_map(|(key, value)| {
            let mapping = mapping(language, value, &field(&tags_path, key), problems)?;
            Some((key.clone(), mapping))
        })
        .collect::<BTreeMap<_, _>>();
    let compensate = step.compensate.as_ref().map(|compensate| Compensation {
        capability: compensate.capability.clone(),
        input: compensate.input.as_ref().and_then(|value| {
            mapping(
                language,
                value,
                &field(&field(path, "compensate"), "input"),
                problems,
            )
        }),
        retry: compensate.retry.as_ref().map(retry_policy),
    });
    let kind = kind(located, workflow_name, declared, language, problems)?;
    // The built-in `http` capability's input, as far as it is literal.
    if let (StepKind::Task { capability }, Some(input)) = (&kind, &step.input)
        && capability == HTTP_CAPABILITY
    {
        check_http_input(input, &field(path, "input"), problems);
    }
    if let Some(compensate) = &step.compensate
        && let Some(input) = &compensate.input
        && compensate.capability == HTTP_CAPABILITY
    {
        check_http_input(input, &field(&field(path, "compensate"), "input"), problems);
    }
    Some(Step {
        id: step.id.clone(),
        name: step.name.clone().unwrap_or_else(|| step.id.clone()),
        kind,
        input,
        output,
        next: step.next.clone(),
        retry: step.retry.as_ref().map(retry_policy),
        timeout: timeouts(step.timeout.as_ref()),
        on_error: step.on_error.clone(),
        compensate,
        on_failure: step.on_failure.unwrap_or_default(),
        scope: located.scope.clone(),
        priority: step
            .priority
            .as_ref()
            .and_then(|value| mapping(language, value, &field(path, "priority"), problems)),
        deadline_ms: step.deadline_ms,
        agent_version: step.agent_version.clone(),
        tags,
        fairness_key: step.fairness_key.as_ref().and_then(|key| {
            mapping(
                language,
                &Value::String(key.clone()),
                &field(path, "fairnessKey"),
                problems,
            )
        }),
    })
}

/// The step's kind, from its type's own field.
fn kind(
    located: &Located<'_>,
    workflow_name: &str,
    declared: &Declared,
    language: Language,
    problems: &mut Problems,
) -> Option<StepKind> {
    let step = located.definition;
    let path = located.path.as_str();
    match step.step_type {
        StepType::Task => Some(StepKind::Task {
            capability: step.capability.clone()?,
        }),
        StepType::Decision => {
            let decision = step.decision.as_ref()?;
            let decision_path = field(path, "decision");
            let branches_path = field(&decision_path, "branches");
            for (value, target) in &decision.branches {
                declared.check_target(
                    &located.scope,
                    target,
                    &field(&branches_path, value),
                    problems,
                );
            }
            if let Some(default) = &decision.default {
                declared.check_target(
                    &located.scope,
                    default,
                    &field(&decision_path, "default"),
                    problems,
                );
            }
            let expression = expression(
                language,
                &decision.expression,
                &field(&decision_path, "expression"),
                problems,
            )?;
            Some(StepKind::Decision {
                expression,
                branches: decision.branches.clone(),
                default: decision.default.clone(),
            })
        }
        StepType::Parallel => {
            let parallel = step.parallel.as_ref()?;
            let branches_path = field(&field(path, "parallel"), "branches");
            let mut names: BTreeMap<&str, usize> = BTreeMap::new();
            let mut branches = Vec::new();
            for (at, branch) in parallel.branches.iter().enumerate() {
                if let Some(first) = names.insert(&branch.name, at)
                    && !branch.name.is_empty()
                {
                    problems.push(
                        field(&format!("{branches_path}[{at}]"), "name"),
                        format!(
                            "duplicate branch name `{}`; it is first used by branch {first}",
                            branch.name
                        ),
                    );
                }
                branches.push(Branch {
                    name: branch.name.clone(),
                    start: branch.steps.first()?.id.clone(),
                    steps: branch.steps.iter().map(|s| s.id.clone()).collect(),
                });
            }
            Some(StepKind::Parallel { branches })
        }
        StepType::Map => {
            let map = step.map.as_ref()?;
            let map_path = field(path, "map");
            let items = mapping(language, &map.items, &field(&map_path, "items"), problems);
            let max_concurrency = map
                .max_concurrency
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
            Some(StepKind::Map(MapSpec {
                items: items?,
                each: Branch {
                    name: "items".to_owned(),
                    start: map.steps.first()?.id.clone(),
                    steps: map.steps.iter().map(|s| s.id.clone()).collect(),
                },
                max_concurrency,
                tolerated: Tolerance {
                    count: map.tolerated_failures,
                    percent: map.tolerated_failure_percent,
                },
            }))
        }
        StepType::Wait => {
            let wait = step.wait.as_ref()?;
            match (wait.seconds, &wait.until) {
                (Some(seconds), None) => Some(StepKind::Wait(WaitSpec::Seconds(seconds))),
                (None, Some(until)) => {
                    let until_path = field(&field(path, "wait"), "until");
                    let until_ms = instant_ms(until).map_err(|message| {
                        problems.push(until_path, message);
                    });
                    Some(StepKind::Wait(WaitSpec::UntilMs(until_ms.ok()?)))
                }
                // Both or neither: the decoder reported it.
                _ => None,
            }
        }
        StepType::Event => {
            let event = step.event.as_ref()?;
            let correlation = match &event.correlation {
                Some(source) => Some(expression(
                    language,
                    source,
                    &field(&field(path, "event"), "correlation"),
                    problems,
                )?),
                None => None,
            };
            Some(StepKind::Event {
                name: event.name.clone(),
                correlation,
                timeout_ms: event.timeout_ms,
            })
        }
        StepType::Subworkflow => {
            let subworkflow = step.subworkflow.as_ref()?;
            if subworkflow.workflow == workflow_name {
                problems.push(
                    field(&field(path, "subworkflow"), "workflow"),
                    format!(
                        "subworkflow cycle: `{workflow_name}` would start itself; a workflow \
                         cannot be its own subworkflow"
                    ),
                );
            }
            Some(StepKind::Subworkflow {
                workflow: subworkflow.workflow.clone(),
                version: subworkflow.version.clone(),
            })
        }
    }
}

/// Compiles a mapping, pushing each bad path or expression inside it.
fn mapping(
    language: Language,
    value: &Value,
    path: &str,
    problems: &mut Problems,
) -> Option<Mapping> {
    match Mapping::compile_in(value, path, language) {
        Ok(mapping) => Some(mapping),
        Err(found) => {
            for (path, message) in found {
                problems.push(path, message);
            }
            None
        }
    }
}

/// Compiles an expression field (bare or `${ … }`).
fn expression(
    language: Language,
    source: &str,
    path: &str,
    problems: &mut Problems,
) -> Option<Expr> {
    Expr::compile_in(source, language)
        .map_err(|message| problems.push(path, message))
        .ok()
}

/// An RFC 3339 instant in milliseconds since the Unix epoch.
fn instant_ms(text: &str) -> Result<u64, String> {
    let instant = DateTime::parse_from_rfc3339(text).map_err(|error| {
        format!("`{text}` is not an RFC 3339 instant such as `2030-01-31T09:00:00Z`: {error}")
    })?;
    u64::try_from(instant.timestamp_millis())
        .map_err(|_| format!("`{text}` is before 1970-01-01T00:00:00Z"))
}

/// A retry policy with the documented defaults applied.
pub(crate) fn retry_policy(retry: &RetryDefinition) -> RetryPolicy {
    RetryPolicy {
        max_attempts: retry.max_attempts,
        interval_ms: retry.interval.unwrap_or(RetryPolicy::INTERVAL_MS_DEFAULT),
        backoff_rate: retry
            .backoff_rate
            .unwrap_or(RetryPolicy::BACKOFF_RATE_DEFAULT),
        max_interval_ms: retry.max_interval,
        jitter: retry.jitter.unwrap_or(0.0),
        non_retryable: retry.non_retryable.clone(),
    }
}

/// The step's time limits; a bare number is the start-to-close limit.
fn timeouts(timeout: Option<&TimeoutDefinition>) -> Timeouts {
    match timeout {
        None => Timeouts::default(),
        Some(TimeoutDefinition::StartToCloseMs(ms)) => Timeouts {
            start_to_close_ms: Some(*ms),
            ..Timeouts::default()
        },
        Some(TimeoutDefinition::Detailed(detailed)) => Timeouts {
            start_to_close_ms: detailed.start_to_close_ms,
            schedule_to_start_ms: detailed.schedule_to_start_ms,
            heartbeat_ms: detailed.heartbeat_ms,
        },
    }
}
