//! Mappings: the `input`, `output` and `compensate.input` values of a step,
//! which build JSON out of the evaluation context.
//!
//! Owns how a mapping's JSON is read: a string starting with `$.` is a path,
//! a string that is wholly `${ … }` is an expression (but for a secret
//! reference, `${ secret('NAME') }`, which is kept as written), every other
//! string and every non-string is a literal; objects and arrays are read
//! item by item.
//! It must never evaluate anything at compile time, and never turn a missing
//! path into an error (it is `null`); an expression's failure is an error.

use std::collections::BTreeMap;

use serde_json::Value;

use super::expr::{EvalError, Expr, unwrap_braces};
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
}

impl Mapping {
    /// Compiles `value` (found at problem path `path`); the error lists every
    /// bad path or expression inside as `(path, message)`.
    pub fn compile(value: &Value, path: &str) -> Result<Mapping, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mapping = compile_into(value, path, &mut problems);
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
        }
    }

    /// Whether the mapping is a constant.
    pub fn is_literal(&self) -> bool {
        matches!(self, Mapping::Literal(_))
    }
}

/// Whether `value`, read as a mapping, is a literal: no path and no
/// expression anywhere inside (the rules of [`Mapping::compile`], without
/// compiling anything).
pub(crate) fn is_literal_value(value: &Value) -> bool {
    match value {
        Value::String(text) if text.starts_with("$.") => false,
        Value::String(text) => is_secret_ref(text) || unwrap_braces(text).is_none(),
        Value::Object(map) => map.values().all(is_literal_value),
        Value::Array(items) => items.iter().all(is_literal_value),
        _ => true,
    }
}

fn compile_into(value: &Value, path: &str, problems: &mut Vec<(String, String)>) -> Mapping {
    match value {
        Value::String(text) if text.starts_with("$.") => match ContextPath::parse(text) {
            Ok(parsed) => Mapping::Path(parsed),
            Err(message) => {
                problems.push((path.to_owned(), message));
                Mapping::Literal(Value::Null)
            }
        },
        // A secret reference is text the runtime substitutes when it makes
        // a request (`secret_ref`): kept as written, never evaluated, so
        // only the reference is ever recorded.
        Value::String(text) if is_secret_ref(text) => Mapping::Literal(value.clone()),
        Value::String(text) if unwrap_braces(text).is_some() => {
            // Meant as a secret reference, but malformed: say so, rather
            // than what CEL makes of it.
            let compiled = match secret_refs(text) {
                Err(SecretRefError::Malformed(message)) => Err(message),
                _ => Expr::compile(text),
            };
            match compiled {
                Ok(expr) => Mapping::Expr(expr),
                Err(message) => {
                    problems.push((path.to_owned(), message));
                    Mapping::Literal(Value::Null)
                }
            }
        }
        Value::Object(map) => {
            let fields: BTreeMap<String, Mapping> = map
                .iter()
                .map(|(key, item)| (key.clone(), compile_into(item, &field(path, key), problems)))
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
                .map(|(at, item)| compile_into(item, &index(path, at), problems))
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
