//! Mappings: the `input`, `output` and `compensate.input` values of a step,
//! which build JSON out of the evaluation context.
//!
//! Owns how a mapping's JSON is read: a string starting with `$.` is a path,
//! a string that is wholly `${ … }` is an expression, every other string and
//! every non-string is a literal; objects and arrays are read item by item.
//! In language 2 (see `language`) a `$.` string that is not a plain path is
//! an expression, and a string with `${ … }` inside it is a template: each
//! `${ … }` is evaluated and spliced in (a string as it is, any other value
//! as compact JSON), and `\${` stands for a literal `${`. In both, a secret
//! reference, `${ secret('NAME') }` (see `secret_ref`), is never evaluated:
//! it stays in the mapped value as written, for the runtime to fill in where
//! the value is used, so a secret never reaches the journal. It must never
//! evaluate anything at compile time, and never turn a missing path into an
//! error (it is `null`); an expression's failure is an error.

use std::collections::BTreeMap;

use serde_json::Value;

use super::expr::{EvalError, Expr, string_literal_end, unwrap_braces};
use super::hash::canonical_string;
use super::language::Language;
use super::path::ContextPath;
use super::problem::{field, index};
use super::secret_ref::{SecretRefError, is_secret_ref, secret_refs};

/// A compiled mapping.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapping {
    /// A constant: written without paths or expressions anywhere inside.
    Literal(Value),
    /// `$.root.field[0]`: the value there, or `null`.
    Path(ContextPath),
    /// `${ … }`: the expression's value.
    Expr(Expr),
    /// An object with at least one path or expression inside.
    Object(BTreeMap<String, Mapping>),
    /// An array with at least one path or expression inside.
    Array(Vec<Mapping>),
    /// Language 2: a string with `${ … }` inside it, in parts.
    Template(Vec<Part>),
}

/// A piece of a template string.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Text as written (with `\${` read as `${`).
    Text(String),
    /// `${ … }`: its value, spliced in.
    Expr(Expr),
}

impl Mapping {
    /// Compiles `value` (found at problem path `path`) as language 1 reads
    /// it; the error lists every bad path or expression inside as
    /// `(path, message)`.
    pub fn compile(value: &Value, path: &str) -> Result<Mapping, Vec<(String, String)>> {
        Mapping::compile_in(value, path, Language::V1)
    }

    /// Compiles `value` as `language` reads it.
    pub fn compile_in(
        value: &Value,
        path: &str,
        language: Language,
    ) -> Result<Mapping, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mapping = compile_into(value, path, language, &mut problems);
        if problems.is_empty() {
            Ok(mapping)
        } else {
            Err(problems)
        }
    }

    /// Builds the mapped value from `context` (an object keyed by root).
    pub fn evaluate(&self, context: &Value) -> Result<Value, EvalError> {
        match self {
            Mapping::Literal(value) => Ok(value.clone()),
            Mapping::Path(path) => Ok(path.lookup(context)),
            Mapping::Expr(expr) => expr.evaluate(context),
            Mapping::Object(fields) => {
                let mut object = serde_json::Map::new();
                for (key, mapping) in fields {
                    object.insert(key.clone(), mapping.evaluate(context)?);
                }
                Ok(Value::Object(object))
            }
            Mapping::Array(items) => items
                .iter()
                .map(|item| item.evaluate(context))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Mapping::Template(parts) => {
                let mut text = String::new();
                for part in parts {
                    match part {
                        Part::Text(written) => text.push_str(written),
                        Part::Expr(expr) => match expr.evaluate(context)? {
                            Value::String(value) => text.push_str(&value),
                            other => text.push_str(&canonical_string(&other)),
                        },
                    }
                }
                Ok(Value::String(text))
            }
        }
    }

    /// Whether the mapping is a constant.
    pub fn is_literal(&self) -> bool {
        matches!(self, Mapping::Literal(_))
    }
}

/// Whether `value`, read as a mapping, is a literal: no path and no
/// expression anywhere inside. It answers for every language at once, so a
/// string with `${` in it that is not wholly a secret reference (an
/// expression in language 1, a template in language 2) is not one.
pub(crate) fn is_literal_value(value: &Value) -> bool {
    match value {
        Value::String(text) if text.starts_with("$.") => false,
        Value::String(text) => is_secret_ref(text) || !text.contains("${"),
        Value::Object(map) => map.values().all(is_literal_value),
        Value::Array(items) => items.iter().all(is_literal_value),
        _ => true,
    }
}

fn compile_into(
    value: &Value,
    path: &str,
    language: Language,
    problems: &mut Vec<(String, String)>,
) -> Mapping {
    let mut refuse = |message: String| {
        problems.push((path.to_owned(), message));
        Mapping::Literal(Value::Null)
    };
    match value {
        Value::String(text) if text.starts_with("$.") => {
            match ContextPath::parse_in(text, language) {
                Ok(parsed) => Mapping::Path(parsed),
                Err(_) if language.has_dialect() => match Expr::compile_in(text, language) {
                    Ok(expr) => Mapping::Expr(expr),
                    Err(message) => refuse(message),
                },
                Err(message) => refuse(message),
            }
        }
        // A secret reference is text the runtime substitutes when it makes
        // a request (`secret_ref`): kept as written, never evaluated, so
        // only the reference is ever recorded.
        Value::String(text) if is_secret_ref(text) => Mapping::Literal(value.clone()),
        Value::String(text) if language.has_dialect() && text.contains("${") => {
            template(text, language).unwrap_or_else(refuse)
        }
        Value::String(text) if unwrap_braces(text).is_some() => {
            // Meant as a secret reference, but malformed: say so, rather
            // than what CEL makes of it.
            let compiled = match secret_refs(text) {
                Err(SecretRefError::Malformed(message)) => Err(message),
                _ => Expr::compile(text),
            };
            match compiled {
                Ok(expr) => Mapping::Expr(expr),
                Err(message) => refuse(message),
            }
        }
        Value::Object(map) => {
            let fields: BTreeMap<String, Mapping> = map
                .iter()
                .map(|(key, item)| {
                    let at = field(path, key);
                    (key.clone(), compile_into(item, &at, language, problems))
                })
                .collect();
            if fields.values().all(Mapping::is_literal) {
                Mapping::Literal(value.clone())
            } else {
                Mapping::Object(fields)
            }
        }
        Value::Array(items) => {
            let items: Vec<Mapping> = items
                .iter()
                .enumerate()
                .map(|(at, item)| compile_into(item, &index(path, at), language, problems))
                .collect();
            if items.iter().all(Mapping::is_literal) {
                Mapping::Literal(value.clone())
            } else {
                Mapping::Array(items)
            }
        }
        literal => Mapping::Literal(literal.clone()),
    }
}

/// Reads a language 2 string with `${` in it: one `${ … }` that is the
/// whole string is an expression (its value keeps its type), anything else
/// is a template. A `${ secret('name') }` stays text.
fn template(text: &str, language: Language) -> Result<Mapping, String> {
    // A secret reference that does not complete, said where it is in the
    // whole string.
    if let Err(SecretRefError::Malformed(message)) = secret_refs(text) {
        return Err(message);
    }
    let mut parts: Vec<Part> = Vec::new();
    let mut literal = String::new();
    let mut at = 0;
    while at < text.len() {
        let rest = &text[at..];
        if rest.starts_with("\\${") {
            literal.push_str("${");
            at += 3;
            continue;
        }
        if !rest.starts_with("${") {
            let first = rest.chars().next().map_or(1, char::len_utf8);
            let next = rest[first..]
                .find(['$', '\\'])
                .map_or(text.len(), |n| at + first + n);
            literal.push_str(&text[at..next]);
            at = next;
            continue;
        }
        let end = closing_brace(text, at + 2).ok_or_else(|| {
            format!(
                "`{text}` has a `${{` at byte {at} that no `}}` closes; write `\\${{` for a \
                 literal `${{`"
            )
        })?;
        let written = &text[at..=end];
        if is_secret_ref(written) {
            literal.push_str(written);
        } else {
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Expr(Expr::compile_in(written, language)?));
        }
        at = end + 1;
    }
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(match parts.as_slice() {
        [] => Mapping::Literal(Value::String(String::new())),
        [Part::Text(only)] => Mapping::Literal(Value::String(only.clone())),
        [Part::Expr(only)] if only.source() == text => Mapping::Expr(only.clone()),
        _ => Mapping::Template(parts),
    })
}

/// The byte of the `}` that closes the `${` whose inside starts at `from`:
/// braces inside nest, and string literals are skipped.
fn closing_brace(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut at = from;
    while at < bytes.len() {
        match bytes[at] {
            b'"' | b'\'' => {
                at = string_literal_end(text, at);
                continue;
            }
            b'{' => depth += 1,
            b'}' if depth == 0 => return Some(at),
            b'}' => depth -= 1,
            _ => {}
        }
        at += 1;
    }
    None
}
