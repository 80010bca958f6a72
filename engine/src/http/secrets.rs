//! The secrets the built-in `http` capability substitutes for the
//! references a task's input names (`${ secret('NAME') }`), and the
//! redaction that keeps their values out of everything recorded.
//!
//! Owns the table (from the server's configuration: its `[secrets]` table
//! and `RETRACE_SECRET_<NAME>` environment variables, which win), how a
//! name is looked up (ignoring case: `api_token` and `API_TOKEN` are one
//! secret, as its environment variable is upper case), and [`Redactor`],
//! which replaces every value a request used wherever it shows up again (a
//! response that echoes a header, an error that quotes a URL).
//!
//! It must never let a value out but into the request it was looked up
//! for: `Debug` shows names only, and no error here holds a value.

use std::collections::BTreeMap;
use std::ffi::OsString;

use serde_json::Value;

use crate::model::check_secret_name;

/// The prefix of the environment variables that give secrets.
pub const SECRET_ENV_PREFIX: &str = "RETRACE_SECRET_";

/// What a secret's value is replaced with wherever it would show.
pub const REDACTED: &str = "[redacted]";

/// Secret values by name (upper case).
#[derive(Clone, Default)]
pub struct Secrets {
    by_name: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PartialEq for Secrets {
    fn eq(&self, other: &Secrets) -> bool {
        self.by_name == other.by_name
    }
}

/// Why the configured secrets cannot be used. Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets: {0}")]
    BadName(String),
    #[error("secrets: `{0}` and `{1}` name one secret (names ignore case)")]
    Twice(String, String),
    #[error("secrets: the value of {0} is not valid UTF-8")]
    NotUtf8(String),
    #[error("secrets: the value of {0} is empty")]
    Empty(String),
}

impl Secrets {
    /// The table from the configuration file's `[secrets]` and from the
    /// environment's `RETRACE_SECRET_<NAME>` variables (`vars`, as
    /// `std::env::vars_os` gives them), which win over the file.
    pub fn from_sources(
        file: impl IntoIterator<Item = (String, String)>,
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Secrets, SecretsError> {
        let mut by_name: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (name, value) in file {
            check_secret_name(&name).map_err(SecretsError::BadName)?;
            if value.is_empty() {
                return Err(SecretsError::Empty(name));
            }
            if let Some((first, _)) = by_name.get(&name.to_ascii_uppercase()) {
                return Err(SecretsError::Twice(first.clone(), name));
            }
            by_name.insert(name.to_ascii_uppercase(), (name, value));
        }
        for (var, value) in vars {
            let Some(name) = var
                .to_str()
                .and_then(|var| var.strip_prefix(SECRET_ENV_PREFIX))
            else {
                continue;
            };
            let var = format!("{SECRET_ENV_PREFIX}{name}");
            check_secret_name(name).map_err(|e| SecretsError::BadName(format!("{var}: {e}")))?;
            let value = value
                .into_string()
                .map_err(|_| SecretsError::NotUtf8(var.clone()))?;
            if value.is_empty() {
                return Err(SecretsError::Empty(var));
            }
            by_name.insert(name.to_ascii_uppercase(), (var, value));
        }
        Ok(Secrets {
            by_name: by_name
                .into_iter()
                .map(|(name, (_, value))| (name, value))
                .collect(),
        })
    }

    /// The value of secret `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.by_name
            .get(&name.to_ascii_uppercase())
            .map(String::as_str)
    }

    /// The names configured (upper case), for the log.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Replaces the values one request used wherever they show again.
#[derive(Default)]
pub(crate) struct Redactor {
    /// Longest first, so a value inside another is never left half shown.
    values: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} values)", self.values.len())
    }
}

impl Redactor {
    /// Remembers a value the request uses.
    pub(crate) fn used(&mut self, value: &str) {
        if !value.is_empty() && !self.values.iter().any(|v| v == value) {
            self.values.push(value.to_owned());
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// `text` with every used value replaced by [`REDACTED`].
    pub(crate) fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), REDACTED);
            }
        }
        out
    }

    /// `value` with every used value replaced in its strings and keys.
    pub(crate) fn json(&self, value: Value) -> Value {
        if self.values.is_empty() {
            return value;
        }
        match value {
            Value::String(text) => Value::String(self.text(&text)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.text(&k), self.json(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn names_ignore_case_and_the_environment_wins() {
        let secrets = Secrets::from_sources(
            [
                ("api_token".to_owned(), "from-file".to_owned()),
                ("Other".to_owned(), "o".to_owned()),
            ],
            vars(&[
                ("RETRACE_SECRET_API_TOKEN", "from-env"),
                ("RETRACE_SECRET_ENV_ONLY", "e"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(secrets.get("API_TOKEN"), Some("from-env"));
        assert_eq!(secrets.get("api_token"), Some("from-env"));
        assert_eq!(secrets.get("other"), Some("o"));
        assert_eq!(secrets.get("env_only"), Some("e"));
        assert_eq!(secrets.get("PATH"), None);
        assert_eq!(
            secrets.names().collect::<Vec<_>>(),
            ["API_TOKEN", "ENV_ONLY", "OTHER"]
        );
        let shown = format!("{secrets:?}");
        assert!(
            !shown.contains("from-env") && !shown.contains("\"o\""),
            "{shown}"
        );
    }

    #[test]
    fn bad_names_twice_named_and_empty_values_are_refused_without_the_value() {
        for (file, env, says) in [
            (
                vec![("my-key", "v")],
                vec![],
                "secret name `my-key` is not well-formed",
            ),
            (
                vec![("a", "v"), ("A", "w")],
                vec![],
                "`a` and `A` name one secret",
            ),
            (vec![("a", "")], vec![], "the value of a is empty"),
            (
                vec![],
                vec![("RETRACE_SECRET_X-Y", "v")],
                "RETRACE_SECRET_X-Y: secret name",
            ),
            (
                vec![],
                vec![("RETRACE_SECRET_", "v")],
                "secret name `` is not well-formed",
            ),
        ] {
            let file = file.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned()));
            let e = Secrets::from_sources(file, vars(&env))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_redactor_hides_every_used_value_wherever_it_shows() {
        let mut redactor = Redactor::default();
        redactor.used("s3cret");
        redactor.used("s3cret-longer");
        redactor.used("");
        assert_eq!(
            redactor.text("a s3cret-longer b s3cret c"),
            "a [redacted] b [redacted] c"
        );
        assert_eq!(
            redactor.json(json!({"h": ["x s3cret"], "s3cret": 1, "n": 2})),
            json!({"h": ["x [redacted]"], "[redacted]": 1, "n": 2})
        );
    }
}
