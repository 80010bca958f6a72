//! Context paths: the `$.input.user.name` / `$.variables.items[0]` strings of
//! a mapping.
//!
//! Owns the path grammar, the context roots, and looking a path up in an
//! evaluation context. It must never evaluate anything richer than a lookup;
//! a string that needs an operator is an expression (`${ … }`, see `expr`).
//!
//! ```text
//! path    = "$." root *( "." name / "[" index "]" / "[" quoted "]" )
//! root    = "input" / "variables" / "output" / "error" / "execution"
//!         / "item" / "index"
//! name    = 1*( ALPHA / DIGIT / "_" / "-" )
//! index   = 1*DIGIT
//! quoted  = "'" *( any but "'" ) "'"  /  DQUOTE *( any but DQUOTE ) DQUOTE
//! ```
//!
//! A path that leads nowhere (a missing field, an index past the end, a field
//! of a non-object) yields `null`.

use std::fmt;

use serde_json::Value;

use super::language::Language;

/// The top-level names of the evaluation context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Root {
    /// The execution's input.
    Input,
    /// Values written by earlier steps' `output` mappings.
    Variables,
    /// The result of the step whose `output` (or compensation) is evaluated.
    Output,
    /// The error being handled, in `onError` targets and error handlers.
    Error,
    /// Facts about the execution the engine provides (its id, the workflow, ...).
    Execution,
    /// In a map step's item flow: the item (`null` elsewhere).
    Item,
    /// In a map step's item flow: the item's position, from 0 (`null`
    /// elsewhere).
    Index,
    /// Language 2: the failed workflow's name, in a handler workflow (its
    /// input's `workflow`).
    WorkflowName,
    /// Language 2: the failed execution's id, in a handler workflow (its
    /// input's `executionId`).
    ExecutionId,
    /// Language 2: the failed step's id, in a handler workflow (its input's
    /// `stepId`).
    StepId,
}

impl Root {
    /// Every root of language 1, in the order the documentation lists them.
    pub const ALL: [Root; 7] = [
        Root::Input,
        Root::Variables,
        Root::Output,
        Root::Error,
        Root::Execution,
        Root::Item,
        Root::Index,
    ];

    /// The flat context of a handler workflow, as the orchestrator
    /// specification writes it: roots in language 2 only.
    pub const FLAT: [Root; 3] = [Root::WorkflowName, Root::ExecutionId, Root::StepId];

    /// Every root of `language`, in the order the documentation lists them.
    pub fn of(language: Language) -> &'static [Root] {
        const WITH_FLAT: [Root; 10] = [
            Root::Input,
            Root::Variables,
            Root::Output,
            Root::Error,
            Root::Execution,
            Root::Item,
            Root::Index,
            Root::WorkflowName,
            Root::ExecutionId,
            Root::StepId,
        ];
        if language.has_dialect() {
            &WITH_FLAT
        } else {
            &Root::ALL
        }
    }

    /// The root's name, as written in paths and expressions.
    pub fn as_str(self) -> &'static str {
        match self {
            Root::Input => "input",
            Root::Variables => "variables",
            Root::Output => "output",
            Root::Error => "error",
            Root::Execution => "execution",
            Root::Item => "item",
            Root::Index => "index",
            Root::WorkflowName => "workflowName",
            Root::ExecutionId => "executionId",
            Root::StepId => "stepId",
        }
    }

    /// The root named `name` in language 1, if there is one.
    pub fn parse(name: &str) -> Option<Root> {
        Root::parse_in(name, Language::V1)
    }

    /// The root named `name` in `language`, if there is one.
    pub fn parse_in(name: &str, language: Language) -> Option<Root> {
        Root::of(language)
            .iter()
            .copied()
            .find(|root| root.as_str() == name)
    }

    /// The roots of `language` as a list for messages.
    pub(crate) fn listed_in(language: Language) -> String {
        let names: Vec<String> = Root::of(language)
            .iter()
            .map(|root| format!("`{}`", root.as_str()))
            .collect();
        names.join(", ")
    }
}

/// One step of a path below its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// `.name` or `["name"]`: a field of an object.
    Field(String),
    /// `[n]`: an element of an array.
    Index(usize),
}

/// A parsed `$.` path.
#[derive(Clone, PartialEq, Eq)]
pub struct ContextPath {
    source: String,
    root: Root,
    segments: Vec<Segment>,
    /// Language 2: `.length` of an array or a string is its size.
    dialect: bool,
}

impl fmt::Debug for ContextPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContextPath({})", self.source)
    }
}

impl ContextPath {
    /// Parses `text`, which starts with `$.`, as language 1 reads it; the
    /// error says how to fix it.
    pub fn parse(text: &str) -> Result<ContextPath, String> {
        ContextPath::parse_in(text, Language::V1)
    }

    /// Parses `text`, which starts with `$.`, as `language` reads it.
    pub fn parse_in(text: &str, language: Language) -> Result<ContextPath, String> {
        let rest = text.strip_prefix("$.").ok_or_else(|| not_a_path(text))?;
        let root_len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        let (root_name, mut rest) = rest.split_at(root_len);
        let root = match Root::parse_in(root_name, language) {
            Some(root) => root,
            None if root_name.is_empty() => return Err(not_a_path(text)),
            None => {
                return Err(format!(
                    "`{text}` starts with the unknown root `{root_name}`; a path starts with \
                     `$.` and one of {}",
                    Root::listed_in(language)
                ));
            }
        };
        let mut segments = Vec::new();
        while !rest.is_empty() {
            let (segment, after) = parse_segment(rest).ok_or_else(|| not_a_path(text))?;
            segments.push(segment);
            rest = after;
        }
        Ok(ContextPath {
            source: text.to_owned(),
            root,
            segments,
            dialect: language.has_dialect(),
        })
    }

    /// The path as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The root the path starts from.
    pub fn root(&self) -> Root {
        self.root
    }

    /// The steps below the root.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The value at this path in `context`, or `None` if it leads nowhere.
    pub fn find<'a>(&self, context: &'a Value) -> Option<&'a Value> {
        let mut value = context.get(self.root.as_str())?;
        for segment in &self.segments {
            value = match segment {
                Segment::Field(name) => value.as_object()?.get(name)?,
                Segment::Index(at) => value.as_array()?.get(*at)?,
            };
        }
        Some(value)
    }

    /// The value at this path in `context`; `null` if it leads nowhere.
    /// In language 2, `.length` of an array or a string is its size (in
    /// code points), as in the specification's dialect.
    pub fn lookup(&self, context: &Value) -> Value {
        if !self.dialect {
            return self.find(context).cloned().unwrap_or(Value::Null);
        }
        let Some(mut value) = context.get(self.root.as_str()) else {
            return Value::Null;
        };
        for (at, segment) in self.segments.iter().enumerate() {
            let next = match (segment, value) {
                (Segment::Field(name), Value::Array(items)) if name == "length" => {
                    Some(Value::from(items.len()))
                }
                (Segment::Field(name), Value::String(text)) if name == "length" => {
                    Some(Value::from(text.chars().count()))
                }
                (Segment::Field(name), Value::Object(map)) => match map.get(name) {
                    Some(found) => {
                        value = found;
                        None
                    }
                    None => return Value::Null,
                },
                (Segment::Index(i), Value::Array(items)) => match items.get(*i) {
                    Some(found) => {
                        value = found;
                        None
                    }
                    None => return Value::Null,
                },
                _ => return Value::Null,
            };
            if let Some(size) = next {
                // Nothing is below a size.
                return if at + 1 == self.segments.len() {
                    size
                } else {
                    Value::Null
                };
            }
        }
        value.clone()
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Parses one segment at the start of `text`; `None` if it is not one.
fn parse_segment(text: &str) -> Option<(Segment, &str)> {
    if let Some(rest) = text.strip_prefix('.') {
        let len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        if len == 0 {
            return None;
        }
        let (name, rest) = rest.split_at(len);
        return Some((Segment::Field(name.to_owned()), rest));
    }
    let rest = text.strip_prefix('[')?;
    let quote = rest.chars().next()?;
    if quote == '\'' || quote == '"' {
        let body = &rest[1..];
        let end = body.find(quote)?;
        let after = body[end + 1..].strip_prefix(']')?;
        return Some((Segment::Field(body[..end].to_owned()), after));
    }
    let end = rest.find(']')?;
    let digits = &rest[..end];
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let at = digits.parse().ok()?;
    Some((Segment::Index(at), &rest[end + 1..]))
}

fn not_a_path(text: &str) -> String {
    format!(
        "`{text}` is not a well-formed path (`$.` then a root, then `.field` or `[index]` \
         parts); to compute a value write an expression instead: `${{ {text} }}`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup(path: &str, context: &Value) -> Value {
        ContextPath::parse(path).unwrap().lookup(context)
    }

    #[test]
    fn follows_fields_and_indexes() {
        let context = json!({
            "input": {"user": {"name": "ada", "tags": ["a", "b"]}, "odd key": 1},
            "variables": {"items": [{"id": 7}]},
        });
        assert_eq!(lookup("$.input.user.name", &context), json!("ada"));
        assert_eq!(lookup("$.input.user.tags[1]", &context), json!("b"));
        assert_eq!(lookup("$.variables.items[0].id", &context), json!(7));
        assert_eq!(lookup("$.input['odd key']", &context), json!(1));
        assert_eq!(lookup(r#"$.input["odd key"]"#, &context), json!(1));
        assert_eq!(lookup("$.input", &context), context["input"]);
    }

    #[test]
    fn a_path_that_leads_nowhere_is_null() {
        let context = json!({"input": {"list": [1], "text": "x"}});
        for path in [
            "$.input.missing",
            "$.input.list[5]",
            "$.input.text.length",
            "$.input.list.first",
            "$.input.text[0]",
            "$.output",
            "$.error.message",
        ] {
            assert_eq!(lookup(path, &context), Value::Null, "{path}");
        }
    }

    #[test]
    fn malformed_paths_point_to_expressions() {
        let error = ContextPath::parse("$.variables.projectPath || $.input.projectPath");
        assert_eq!(
            error,
            Err(
                "`$.variables.projectPath || $.input.projectPath` is not a well-formed path \
                 (`$.` then a root, then `.field` or `[index]` parts); to compute a value \
                 write an expression instead: `${ $.variables.projectPath || \
                 $.input.projectPath }`"
                    .to_owned()
            )
        );
        for bad in [
            "$.",
            "$.input.",
            "$.input[x]",
            "$.input[1",
            "$.input..a",
            "$.input['a",
        ] {
            assert!(ContextPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_roots_are_named() {
        let error = ContextPath::parse("$.workflowName").unwrap_err();
        assert!(error.contains("unknown root `workflowName`"), "{error}");
    }
}
