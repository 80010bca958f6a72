//! A workflow's limits on its own executions: `concurrency` (how many run
//! at once per key) and `rateLimit` (how many start per period per key).
//! The key is a mapping over the execution's start context (usually a
//! field of the input: the customer, the tenant); without one, the limit
//! holds for the whole workflow.
//!
//! Owns the shape of both fields, their ranges, and turning a key mapping
//! into the key string of one execution. It must never count executions or
//! decide who goes next: the engine's limiter does, from what executions
//! record (`limit_waiting`, `limit_acquired`).

use serde::Serialize;
use serde_json::{Value, json};

use super::definition::WorkflowDefinition;
use super::fields::Fields;
use super::language::Language;
use super::mapping::Mapping;
use super::problem::Problems;

/// The largest `limit` of either kind.
pub const LIMIT_MAX: u64 = 100_000;
/// The longest `rateLimit.periodMs`: 366 days.
pub const LIMIT_PERIOD_MS_MAX: u64 = 366 * 24 * 3_600_000;
/// The longest key one execution may have, in bytes.
pub const LIMIT_KEY_LEN_MAX: usize = 256;

/// `concurrency` as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConcurrencyDefinition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub limit: u64,
}

/// `rateLimit` as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitDefinition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub limit: u64,
    pub period_ms: u64,
}

/// Which limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LimitKind {
    /// Executions that started their first step and have not ended.
    Concurrency,
    /// Executions that started their first step within the last period.
    Rate,
}

impl LimitKind {
    /// Its name, as the document and the events write it.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Concurrency => "concurrency",
            LimitKind::Rate => "rateLimit",
        }
    }
}

/// One compiled limit.
#[derive(Debug, Clone)]
pub struct Limit {
    pub kind: LimitKind,
    /// `None`: one key, `""`, for the whole workflow.
    key: Option<Mapping>,
    pub limit: u32,
    /// For [`LimitKind::Rate`].
    pub period_ms: Option<u64>,
}

impl Limit {
    /// The key of an execution whose start context is `context`: a string
    /// as is, a number or a boolean as its JSON text, `null` (or no key
    /// mapping) as `""`, the whole workflow's key.
    pub fn key_of(&self, context: &Value) -> Result<String, String> {
        let Some(mapping) = &self.key else {
            return Ok(String::new());
        };
        let what = self.kind.as_str();
        let key = match mapping.evaluate(context).map_err(|e| e.message)? {
            Value::Null => String::new(),
            Value::String(text) => text,
            value @ (Value::Number(_) | Value::Bool(_)) => value.to_string(),
            other => {
                let found = if other.is_array() {
                    "an array"
                } else {
                    "an object"
                };
                return Err(format!(
                    "the key of `{what}` must be a string, a number or a boolean, not {found}"
                ));
            }
        };
        if key.len() > LIMIT_KEY_LEN_MAX {
            return Err(format!(
                "the key of `{what}` is longer than {LIMIT_KEY_LEN_MAX} bytes"
            ));
        }
        Ok(key)
    }
}

/// The start context an input is checked in before an execution exists:
/// the one [`Run`](crate::machine) builds at the start, with placeholders
/// of the right types for what is not known yet.
pub(crate) fn start_context(definition: &WorkflowDefinition, input: &Value) -> Value {
    json!({
        "input": input,
        "variables": {},
        "output": null,
        "error": null,
        "execution": {
            "id": "00000000-0000-0000-0000-000000000000",
            "workflow": definition.name,
            "version": "",
            "startedAtMs": 0,
        },
    })
}

/// Decodes `concurrency` and `rateLimit` of the workflow document.
pub(crate) fn decode_limits(
    doc: &mut Fields<'_>,
    problems: &mut Problems,
) -> (Option<ConcurrencyDefinition>, Option<RateLimitDefinition>) {
    let concurrency = doc.raw("concurrency").and_then(|value| {
        let mut block = Fields::open(value, &doc.path_of("concurrency"), problems)?;
        let key = block.string("key", problems);
        let limit = limit(&mut block, problems);
        block.finish(problems);
        Some(ConcurrencyDefinition { key, limit: limit? })
    });
    let rate_limit = doc.raw("rateLimit").and_then(|value| {
        let mut block = Fields::open(value, &doc.path_of("rateLimit"), problems)?;
        let key = block.string("key", problems);
        let limit = limit(&mut block, problems);
        let period_ms = match block.positive_u64("periodMs", problems) {
            None if !block.has("periodMs") => {
                problems.push(
                    block.path_of("periodMs"),
                    "is required (the period the limit counts starts in, in milliseconds)",
                );
                None
            }
            Some(ms) if ms > LIMIT_PERIOD_MS_MAX => {
                problems.push(
                    block.path_of("periodMs"),
                    format!("must be at most {LIMIT_PERIOD_MS_MAX} (366 days)"),
                );
                None
            }
            ms => ms,
        };
        block.finish(problems);
        Some(RateLimitDefinition {
            key,
            limit: limit?,
            period_ms: period_ms?,
        })
    });
    (concurrency, rate_limit)
}

/// `limit`: required, from 1 to [`LIMIT_MAX`].
fn limit(block: &mut Fields<'_>, problems: &mut Problems) -> Option<u64> {
    match block.positive_u64("limit", problems) {
        None if !block.has("limit") => {
            problems.push(block.path_of("limit"), "is required (from 1 to 100000)");
            None
        }
        Some(n) if n > LIMIT_MAX => {
            problems.push(
                block.path_of("limit"),
                format!("must be at most {LIMIT_MAX}"),
            );
            None
        }
        n => n,
    }
}

/// Compiles the limits of `definition`, concurrency first.
pub(crate) fn compile_limits(
    definition: &WorkflowDefinition,
    problems: &mut Problems,
) -> Vec<Limit> {
    let mut limits = Vec::new();
    let declared = [
        definition
            .concurrency
            .as_ref()
            .map(|c| (LimitKind::Concurrency, c.key.as_ref(), c.limit, None)),
        definition
            .rate_limit
            .as_ref()
            .map(|r| (LimitKind::Rate, r.key.as_ref(), r.limit, Some(r.period_ms))),
    ];
    for (kind, key, limit, period_ms) in declared.into_iter().flatten() {
        let path = format!("{}.key", kind.as_str());
        let key = match key {
            None => None,
            Some(text) => match Mapping::compile_in(
                &Value::String(text.clone()),
                &path,
                Language::of(definition.language),
            ) {
                Ok(mapping) => Some(mapping),
                Err(found) => {
                    for (path, message) in found {
                        problems.push(path, message);
                    }
                    continue;
                }
            },
        };
        limits.push(Limit {
            kind,
            key,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            period_ms,
        });
    }
    limits
}
