//! The rules a registration must follow.
//!
//! Owns the limits and their messages. It must never look at the registry:
//! a registration is judged on its own. The spelling rules come from the
//! workflow model (`check_capability`, and `check_name_chars`, the one rule
//! for every name that reaches the journal or the logs), so an agent's
//! capabilities are spelled as a workflow's, and its name can hold neither a
//! control character nor a bidirectional override.

use super::agent::Registration;
use super::error::AgentError;
use crate::model::{check_capability, check_name_chars};

/// The longest agent name, in characters.
pub const NAME_CHARS_MAX: usize = 128;
/// The most capabilities one agent may offer.
pub const CAPABILITIES_MAX: usize = 100;
/// The most tasks one agent may hold at once.
pub const MAX_CONCURRENCY_MAX: u32 = 10_000;

/// A registration that passed every rule.
/// The shortest and longest silence an agent may declare before it is shown
/// offline.
pub const HEARTBEAT_TIMEOUT_MS_MIN: u64 = 1_000;
pub const HEARTBEAT_TIMEOUT_MS_MAX: u64 = 3_600_000;

/// What an agent may declare about itself besides its name, capabilities
/// and slots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentTraits {
    /// Its version (semver), which task steps may require a range of.
    pub version: Option<String>,
    /// Shown offline after this long without a poll or heartbeat (`None`:
    /// the registry's default).
    pub heartbeat_timeout_ms: Option<u64>,
}

/// Checks what an agent declares about itself.
pub(super) fn check_traits(
    traits: &AgentTraits,
) -> Result<(Option<semver::Version>, Option<u64>), AgentError> {
    let version = match &traits.version {
        None => None,
        Some(text) => Some(semver::Version::parse(text).map_err(|e| {
            AgentError::InvalidRegistration(format!(
                "version `{}` is not a semantic version (such as `2.1.0`): {e}",
                text.escape_debug()
            ))
        })?),
    };
    if let Some(ms) = traits.heartbeat_timeout_ms
        && !(HEARTBEAT_TIMEOUT_MS_MIN..=HEARTBEAT_TIMEOUT_MS_MAX).contains(&ms)
    {
        return Err(AgentError::InvalidRegistration(format!(
            "heartbeatTimeoutMs must be {HEARTBEAT_TIMEOUT_MS_MIN} to \
             {HEARTBEAT_TIMEOUT_MS_MAX}, not {ms}"
        )));
    }
    Ok((version, traits.heartbeat_timeout_ms))
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
    check_name_chars("name", name).map_err(AgentError::InvalidRegistration)?;
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
        version: None,
        heartbeat_timeout_ms: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(name: &str) -> String {
        match check(name, &["work".to_owned()], None, 1) {
            Err(AgentError::InvalidRegistration(message)) => message,
            other => panic!("{name:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn a_name_holds_no_control_or_bidirectional_character() {
        for (name, named) in [
            ("evil\u{202E}gnp.exe", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
            ("a\u{2066}b", "U+2066 (LEFT-TO-RIGHT ISOLATE)"),
            ("a\u{200F}", "U+200F (RIGHT-TO-LEFT MARK)"),
            ("line\nforged", "U+000A (a control character)"),
            ("\u{1B}[31mred", "U+001B (a control character)"),
        ] {
            let message = refused(name);
            assert!(
                message.starts_with(&format!("name must not contain {named}")),
                "{message}"
            );
        }
        for name in ["builder-1", "Zoë's agent", "агент", "عامل"] {
            assert!(check(name, &["work".to_owned()], None, 1).is_ok(), "{name}");
        }
    }

    #[test]
    fn capabilities_are_spelled_as_in_workflows() {
        let refused = |capability: &str| check("a", &[capability.to_owned()], None, 1).is_err();
        assert!(refused("Git Ops"));
        assert!(refused("a\u{202E}b"));
        assert!(refused(&"a".repeat(129)));
        assert!(!refused("billing:charge"));
    }
}
