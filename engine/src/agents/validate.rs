//! The rules a registration must follow.
//!
//! Owns the limits and their messages. It must never look at the registry:
//! a registration is judged on its own.

use std::collections::BTreeSet;

use super::error::AgentError;

/// The longest agent name, in characters.
pub const NAME_CHARS_MAX: usize = 128;
/// The most capabilities one agent may offer.
pub const CAPABILITIES_MAX: usize = 100;
/// The most tasks one agent may hold at once.
pub const MAX_CONCURRENCY_MAX: u32 = 10_000;

/// The longest capability, in bytes (the workflow model's limit for names).
const CAPABILITY_LEN_MAX: usize = 128;

/// A registration that passed every rule.
#[derive(Debug)]
pub(super) struct Registration {
    pub(super) name: String,
    pub(super) capabilities: BTreeSet<String>,
    pub(super) max_concurrency: u32,
}

/// Checks a registration; `max_concurrency` falls back to `default`.
pub(super) fn check(
    name: &str,
    capabilities: &[String],
    max_concurrency: Option<u32>,
    default: u32,
) -> Result<Registration, AgentError> {
    let invalid = |message: String| Err(AgentError::InvalidRegistration(message));
    let chars = name.chars().count();
    if chars == 0 || chars > NAME_CHARS_MAX {
        return invalid(format!(
            "name must be 1 to {NAME_CHARS_MAX} characters, not {chars}"
        ));
    }
    if name.chars().any(char::is_control) {
        return invalid("name must not contain control characters".to_owned());
    }
    if capabilities.is_empty() || capabilities.len() > CAPABILITIES_MAX {
        return invalid(format!(
            "an agent offers 1 to {CAPABILITIES_MAX} capabilities, not {}",
            capabilities.len()
        ));
    }
    for capability in capabilities {
        check_capability(capability).map_err(AgentError::InvalidRegistration)?;
    }
    let max_concurrency = max_concurrency.unwrap_or(default);
    if !(1..=MAX_CONCURRENCY_MAX).contains(&max_concurrency) {
        return invalid(format!(
            "maxConcurrency must be 1 to {MAX_CONCURRENCY_MAX}, not {max_concurrency}"
        ));
    }
    Ok(Registration {
        name: name.to_owned(),
        capabilities: capabilities.iter().cloned().collect(),
        max_concurrency,
    })
}

/// The workflow model's capability rule, repeated here because the model keeps
/// its name rules private: 1 to 128 bytes, `a-z 0-9` first, then
/// `a-z 0-9 _ . : -`. Keep the two in step.
fn check_capability(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > CAPABILITY_LEN_MAX {
        return Err(format!(
            "capability must be 1 to {CAPABILITY_LEN_MAX} bytes, not {}",
            name.len()
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | ':' | '-')
    });
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "capability `{name}` is not well-formed: use lowercase letters, digits, \
             `_`, `.`, `:` and `-`, starting with a letter or digit"
        ))
    }
}
