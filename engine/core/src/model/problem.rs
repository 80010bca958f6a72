//! Definition problems: what is wrong with a workflow document, and where.
//!
//! Owns [`Problem`], [`DefinitionError`] and the one path notation every
//! problem uses. It must never decide *whether* something is a problem; the
//! decoder and the compiler do that and only report here.
//!
//! A problem's path names the document field it is about, written the way one
//! would reach it in JavaScript: `steps[3].next`,
//! `steps[2].parallel.branches[0].steps[1].capability`, `errorHandlers[0].handler`.
//! Object keys that are not plain identifiers are quoted: `output["my var"]`.
//! The empty path means the document as a whole (for example a syntax error).

use std::fmt;

/// One thing wrong with a workflow definition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Problem {
    /// Where in the document: `steps[3].next`; empty for the whole document.
    pub path: String,
    /// What is wrong, as a sentence fragment a user can act on.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A workflow definition was refused; `problems` lists every reason found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DefinitionError {
    /// Every problem found, in document order of discovery; never empty.
    pub problems: Vec<Problem>,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        let noun = if count == 1 { "problem" } else { "problems" };
        write!(f, "invalid workflow definition ({count} {noun})")?;
        for problem in &self.problems {
            write!(f, "\n- {problem}")?;
        }
        Ok(())
    }
}

/// Appends a field to a problem path: `steps[0]` + `next` = `steps[0].next`.
pub(crate) fn field(path: &str, name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    match (path.is_empty(), plain) {
        (true, true) => name.to_owned(),
        (false, true) => format!("{path}.{name}"),
        // serde_json renders a string with JSON escapes, so any key is unambiguous.
        (_, false) => format!("{path}[{}]", serde_json::Value::from(name)),
    }
}

/// Appends an array index to a problem path: `steps` + 3 = `steps[3]`.
pub(crate) fn index(path: &str, at: usize) -> String {
    format!("{path}[{at}]")
}

/// Collects problems while a document is decoded and compiled.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.list.push(Problem::new(path, message));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn into_error(self) -> DefinitionError {
        DefinitionError {
            problems: self.list,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_keys_that_are_not_identifiers() {
        assert_eq!(field("", "steps"), "steps");
        assert_eq!(field(&index("steps", 3), "next"), "steps[3].next");
        assert_eq!(field("output", "my var"), r#"output["my var"]"#);
        assert_eq!(field("branches", "2"), r#"branches["2"]"#);
        assert_eq!(field("branches", "say \"hi\""), r#"branches["say \"hi\""]"#);
    }

    #[test]
    fn display_lists_every_problem() {
        let error = DefinitionError {
            problems: vec![Problem::new("", "bad"), Problem::new("steps", "empty")],
        };
        assert_eq!(
            error.to_string(),
            "invalid workflow definition (2 problems)\n- bad\n- steps: empty"
        );
    }
}
