//! Reading a document's text (JSON or YAML) into a strict JSON value.
//!
//! Owns the text-level rules shared by both syntaxes: a key may appear once
//! per object, numbers must be finite, and YAML's scalar keys (`true:`, `3:`)
//! become the strings JSON would have used. Everything after this point sees
//! only `serde_json::Value`, which is why JSON and YAML spellings of one
//! workflow are the same workflow. It must never interpret the workflow
//! language; that is the decoder's job.
//!
//! Also owns the bounds on a document, checked before parsing can cost much:
//! at most [`DOCUMENT_BYTES_MAX`] bytes, nested at most
//! [`DOCUMENT_DEPTH_MAX`] levels of objects and arrays. JSON is parsed as a
//! stream, so its depth is checked as it is read; a YAML text is measured
//! first (`nesting`), because the YAML parser reads a whole document before
//! anything can look at it and its cost grows with the square of the depth.
//! The value is checked again as it is built, so both syntaxes refuse the
//! same depth with the same message.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::nesting;

/// The largest document accepted, in bytes: 1 MiB, the HTTP server's
/// default body limit, whatever that limit is set to.
pub const DOCUMENT_BYTES_MAX: usize = 1024 * 1024;

/// The deepest nesting of objects and arrays accepted. Generous for real
/// definitions (each level of nested `parallel` takes four), and below the
/// parsers' own recursion limits (127 for JSON, 128 for YAML), so this limit
/// is the one a deep document meets, with this module's message.
pub const DOCUMENT_DEPTH_MAX: usize = 100;

/// Parses JSON text; the error is a message with the position of the fault.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    check_size(bytes.len())?;
    let too_deep = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = Nested::top(&too_deep)
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|error| match too_deep.get() {
        true => too_deep_at(error.line(), error.column()),
        false => format!("the document is not valid JSON: {error}"),
    })
}

/// Parses YAML text; the error is a message with the position of the fault.
pub(crate) fn parse_yaml(text: &str) -> Result<Value, String> {
    check_size(text.len())?;
    nesting::check_yaml(text, DOCUMENT_DEPTH_MAX).map_err(|at| too_deep_at(at.line, at.column))?;
    let too_deep = Cell::new(false);
    let deserializer = serde_norway::Deserializer::from_str(text);
    Nested::top(&too_deep)
        .deserialize(deserializer)
        .map_err(|error| match (too_deep.get(), error.location()) {
            (true, Some(at)) => too_deep_at(at.line(), at.column()),
            (true, None) => too_deep_message(),
            (false, _) => format!("the document is not valid YAML: {error}"),
        })
}

fn check_size(len_bytes: usize) -> Result<(), String> {
    if len_bytes > DOCUMENT_BYTES_MAX {
        return Err(format!(
            "the document is {len_bytes} bytes; a definition may be at most \
             {DOCUMENT_BYTES_MAX} bytes (1 MiB)"
        ));
    }
    Ok(())
}

fn too_deep_message() -> String {
    format!(
        "the document nests deeper than {DOCUMENT_DEPTH_MAX} levels (a definition may nest \
         at most {DOCUMENT_DEPTH_MAX} levels of objects and arrays)"
    )
}

fn too_deep_at(line: usize, column: usize) -> String {
    format!("{} at line {line} column {column}", too_deep_message())
}

/// A JSON value at `depth` (the number of objects and arrays around it),
/// decoded with the strict rules above; `too_deep` notes that the depth
/// limit, not the syntax, refused the document.
#[derive(Clone, Copy)]
struct Nested<'f> {
    depth: usize,
    too_deep: &'f Cell<bool>,
}

impl<'f> Nested<'f> {
    fn top(too_deep: &'f Cell<bool>) -> Self {
        Nested { depth: 0, too_deep }
    }

    /// One level further in; an error past the limit.
    fn inner<E: de::Error>(self) -> Result<Self, E> {
        let depth = self.depth.saturating_add(1);
        if depth > DOCUMENT_DEPTH_MAX {
            self.too_deep.set(true);
            return Err(E::custom(too_deep_message()));
        }
        Ok(Nested { depth, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for Nested<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor(self))
    }
}

struct StrictVisitor<'f>(Nested<'f>);

impl<'de> Visitor<'de> for StrictVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        finite(v).map(Value::Number)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.0.inner()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let inner = self.0.inner()?;
        let mut map = Map::new();
        while let Some(Key(key)) = access.next_key::<Key>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let value = access.next_value_seed(inner)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// A finite number; JSON has no other.
fn finite<E: de::Error>(v: f64) -> Result<Number, E> {
    Number::from_f64(v)
        .ok_or_else(|| E::custom(format!("the number {v} cannot be represented in JSON")))
}

/// An object key: a string, or a YAML scalar spelled as the string JSON would use.
struct Key(String);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_any(KeyVisitor).map(Key)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, boolean or number as an object key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        finite(v).map(|number| number.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_yaml_read_to_the_same_value() {
        let from_json = parse_json(br#"{"a": [1, 2.5, "x", true, null], "b": {"c": -3}}"#);
        let from_yaml = parse_yaml("a: [1, 2.5, x, true, ~]\nb:\n  c: -3\n");
        assert_eq!(from_json, from_yaml);
        assert_eq!(
            from_json,
            Ok(json!({"a": [1, 2.5, "x", true, null], "b": {"c": -3}}))
        );
    }

    #[test]
    fn yaml_scalar_keys_become_strings() {
        let value = parse_yaml("true: a\nfalse: b\n3: c\n");
        assert_eq!(value, Ok(json!({"true": "a", "false": "b", "3": "c"})));
    }

    #[test]
    fn duplicate_keys_are_refused_in_both_syntaxes() {
        let json = parse_json(b"{\"a\": 1,\n \"a\": 2}").unwrap_err();
        assert!(json.contains("duplicate key `a`"), "{json}");
        assert!(json.contains("line 2"), "{json}");
        let yaml = parse_yaml("a: 1\na: 2\n").unwrap_err();
        assert!(yaml.contains("duplicate"), "{yaml}");
    }

    #[test]
    fn non_finite_yaml_numbers_are_refused() {
        let error = parse_yaml("a: .inf\n").unwrap_err();
        assert!(error.contains("cannot be represented in JSON"), "{error}");
    }
}
