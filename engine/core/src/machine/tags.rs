//! Execution tags: string keys to string values, given at the start and
//! added by steps (their `tags` mapping), by which executions are searched.
//!
//! Owns the rules a tag set must keep ([`check_tags`]) and how a mapped
//! value becomes a tag's value ([`tag_value`]). It must never decide where
//! tags come from; the start and the step completion do, and record them in
//! `execution_started` and `step_completed`.

use std::collections::BTreeMap;

use serde_json::Value;

/// The most tags one execution holds, the start's and its steps' together.
pub const TAGS_MAX: usize = 32;

/// The longest tag key, in bytes.
pub const TAG_KEY_LEN_MAX: usize = 64;

/// The longest tag value, in characters (as JSON Schema's `maxLength`
/// counts them).
pub const TAG_VALUE_LEN_MAX: usize = 256;

/// Whether `key` may name a tag: `A-Z a-z 0-9` first, then also
/// `_ . : / -`, at most [`TAG_KEY_LEN_MAX`] bytes. The error says why not.
pub fn check_tag_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.:/-".contains(c));
    if !first_ok || !rest_ok || key.len() > TAG_KEY_LEN_MAX {
        return Err(format!(
            "`{}` is not a tag key: `A-Z a-z 0-9` first, then also `_ . : / -`, at most \
             {TAG_KEY_LEN_MAX} bytes",
            key.escape_default()
        ));
    }
    Ok(())
}

/// Whether `value` may be a tag's value: at most [`TAG_VALUE_LEN_MAX`]
/// characters, no control or bidirectional control character.
pub fn check_tag_value(value: &str) -> Result<(), String> {
    let chars = value.chars().count();
    if chars > TAG_VALUE_LEN_MAX {
        return Err(format!(
            "a tag value is at most {TAG_VALUE_LEN_MAX} characters, not {chars}"
        ));
    }
    crate::model::check_name_chars("a tag value", value)
}

/// Checks a whole tag set (a start's, or an execution's once a step adds
/// its own): every problem, each naming its key.
pub fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if tags.len() > TAGS_MAX {
        problems.push(format!(
            "an execution has at most {TAGS_MAX} tags, not {}",
            tags.len()
        ));
    }
    for (key, value) in tags {
        if let Err(message) = check_tag_key(key) {
            problems.push(message);
        }
        if let Err(message) = check_tag_value(value) {
            problems.push(format!("tag {key}: {message}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The tag value a mapping gave: a string as it is, a number or a boolean
/// as its JSON text; `null`, an object or an array is an error.
pub fn tag_value(value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(_) | Value::Bool(_) => Ok(value.to_string()),
        other => Err(format!(
            "a tag's value must be a string, a number or a boolean, not {}",
            match other {
                Value::Null => "null",
                Value::Array(_) => "an array",
                _ => "an object",
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_values_and_counts_are_bounded() {
        assert!(check_tag_key("customer").is_ok());
        assert!(check_tag_key("team/region:eu-1").is_ok());
        assert!(check_tag_key("").is_err());
        assert!(check_tag_key("-x").is_err());
        assert!(check_tag_key("a b").is_err());
        assert!(check_tag_key(&"k".repeat(TAG_KEY_LEN_MAX + 1)).is_err());
        assert!(check_tag_value("Acme Ltd.").is_ok());
        assert!(check_tag_value("a\u{202E}b").is_err());
        assert!(check_tag_value(&"v".repeat(TAG_VALUE_LEN_MAX + 1)).is_err());
        let many: BTreeMap<String, String> = (0..=TAGS_MAX)
            .map(|n| (format!("k{n}"), "v".to_owned()))
            .collect();
        assert_eq!(check_tags(&many).unwrap_err().len(), 1);
        assert_eq!(tag_value(&json!(3)).unwrap(), "3");
        assert_eq!(tag_value(&json!(true)).unwrap(), "true");
        assert!(tag_value(&json!(null)).is_err());
        assert!(tag_value(&json!({"a": 1})).is_err());
    }
}
