//! Decoding the failure-semantics fields: `retry`, `timeout`, `compensate`,
//! `onFailure` on steps, and the workflow's `errorHandlers`.
//!
//! Owns their shapes and the ranges that make them sane (at least one
//! attempt, a backoff rate of at least 1, jitter between 0 and 1). It must
//! never give them run-time meaning; the engine does that.

use serde_json::Value;

use super::definition::{
    CompensateDefinition, DetailedTimeout, ErrorHandlerDefinition, OnFailure, RetryDefinition,
    StepDefinition, TimeoutDefinition,
};
use super::fields::{Fields, must_be};
use super::names;
use super::problem::{Problems, index};

/// The most attempts a retry policy may allow, so one step cannot retry forever.
pub const MAX_ATTEMPTS_MAX: u32 = 1_000;

/// Decodes `retry`, `timeout`, `compensate` and `onFailure` of a step.
pub(crate) fn decode_failure_fields(
    step: &mut StepDefinition,
    fields: &mut Fields<'_>,
    problems: &mut Problems,
) {
    step.retry = decode_retry_field(fields, problems);
    step.timeout = decode_timeout(fields, problems);
    step.compensate = decode_compensate(fields, problems);
    step.on_failure = match fields.raw("onFailure") {
        None => None,
        Some(Value::String(text)) if text == "fail" => Some(OnFailure::Fail),
        Some(Value::String(text)) if text == "pause" => Some(OnFailure::Pause),
        Some(other) => {
            problems.push(
                fields.path_of("onFailure"),
                must_be("\"fail\" or \"pause\"", other),
            );
            None
        }
    };
}

/// Decodes the `retry` field of the object being read, if present.
fn decode_retry_field(fields: &mut Fields<'_>, problems: &mut Problems) -> Option<RetryDefinition> {
    let path = fields.path_of("retry");
    let value = fields.raw("retry")?;
    decode_retry(value, &path, problems)
}

/// Decodes a retry policy found at `path`.
fn decode_retry(value: &Value, path: &str, problems: &mut Problems) -> Option<RetryDefinition> {
    let mut block = Fields::open(value, path, problems)?;
    let max_attempts = match block.whole("maxAttempts", 1, problems) {
        None if !block.has("maxAttempts") => {
            problems.push(
                block.path_of("maxAttempts"),
                "is required (the number of attempts, the first included)",
            );
            None
        }
        None => None,
        Some(n) => match u32::try_from(n) {
            Ok(n) if n <= MAX_ATTEMPTS_MAX => Some(n),
            _ => {
                problems.push(
                    block.path_of("maxAttempts"),
                    format!("must be at most {MAX_ATTEMPTS_MAX}"),
                );
                None
            }
        },
    };
    let interval = block.u64("interval", problems);
    let backoff_rate = block.f64("backoffRate", problems);
    if let Some(rate) = backoff_rate
        && rate < 1.0
    {
        problems.push(
            block.path_of("backoffRate"),
            "must be at least 1.0 (1.0 keeps the interval constant)",
        );
    }
    let max_interval = block.u64("maxInterval", problems);
    if let (Some(interval), Some(max)) = (interval, max_interval)
        && max < interval
    {
        problems.push(
            block.path_of("maxInterval"),
            format!("must not be less than `interval` ({interval} ms)"),
        );
    }
    let jitter = block.f64("jitter", problems);
    if let Some(jitter) = jitter
        && !(0.0..=1.0).contains(&jitter)
    {
        problems.push(
            block.path_of("jitter"),
            "must be a fraction between 0.0 and 1.0",
        );
    }
    let non_retryable = block.strings("nonRetryable", problems);
    for (at, error) in non_retryable.iter().enumerate() {
        if let Err(message) = names::check_error_type(error) {
            problems.push(index(&block.path_of("nonRetryable"), at), message);
        }
    }
    block.finish(problems);
    Some(RetryDefinition {
        max_attempts: max_attempts?,
        interval,
        backoff_rate,
        max_interval,
        jitter,
        non_retryable,
    })
}

/// Decodes `timeout`: milliseconds, or `{ startToCloseMs, scheduleToStartMs, heartbeatMs }`.
fn decode_timeout(fields: &mut Fields<'_>, problems: &mut Problems) -> Option<TimeoutDefinition> {
    let path = fields.path_of("timeout");
    match fields.raw("timeout")? {
        Value::Number(number) => match number.as_u64() {
            Some(ms) if ms > 0 => Some(TimeoutDefinition::StartToCloseMs(ms)),
            _ => {
                problems.push(
                    path,
                    "must be a whole number of milliseconds of at least 1, or an object",
                );
                None
            }
        },
        value @ Value::Object(_) => {
            let mut block = Fields::open(value, &path, problems)?;
            let detailed = DetailedTimeout {
                start_to_close_ms: block.positive_u64("startToCloseMs", problems),
                schedule_to_start_ms: block.positive_u64("scheduleToStartMs", problems),
                heartbeat_ms: block.positive_u64("heartbeatMs", problems),
            };
            let any = ["startToCloseMs", "scheduleToStartMs", "heartbeatMs"]
                .iter()
                .any(|key| block.has(key));
            if !any {
                problems.push(
                    block.path(),
                    "needs at least one of `startToCloseMs`, `scheduleToStartMs`, `heartbeatMs`",
                );
            }
            block.finish(problems);
            Some(TimeoutDefinition::Detailed(detailed))
        }
        other => {
            problems.push(
                path,
                must_be("a number of milliseconds or an object", other),
            );
            None
        }
    }
}

/// Decodes `compensate`: `{ capability, input?, retry? }`.
fn decode_compensate(
    fields: &mut Fields<'_>,
    problems: &mut Problems,
) -> Option<CompensateDefinition> {
    let path = fields.path_of("compensate");
    let value = fields.raw("compensate")?;
    let mut block = Fields::open(value, &path, problems)?;
    let capability = block.required_string("capability", problems);
    if let Some(capability) = &capability
        && let Err(message) = names::check_capability(capability)
    {
        problems.push(block.path_of("capability"), message);
    }
    let input = block.raw("input").cloned();
    let retry = decode_retry_field(&mut block, problems);
    block.finish(problems);
    Some(CompensateDefinition {
        capability: capability?,
        input,
        retry,
    })
}

/// Decodes one entry of `errorHandlers` found at `path`.
pub(crate) fn decode_error_handler(
    value: &Value,
    path: &str,
    problems: &mut Problems,
) -> Option<ErrorHandlerDefinition> {
    let mut block = Fields::open(value, path, problems)?;
    let error = block.required_string("error", problems);
    if let Some(error) = &error
        && error != "*"
        && let Err(message) = names::check_error_type(error)
    {
        problems.push(block.path_of("error"), format!("{message}, or `*`"));
    }
    let handler = block.required_string("handler", problems);
    if handler.as_deref() == Some("") {
        problems.push(block.path_of("handler"), "must not be empty");
    }
    let retry = decode_retry_field(&mut block, problems);
    block.finish(problems);
    Some(ErrorHandlerDefinition {
        error: error?,
        handler: handler?,
        retry,
    })
}
