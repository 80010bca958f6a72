//! Reading a document's text (JSON or YAML) into a strict JSON value.
//!
//! Owns the text-level rules shared by both syntaxes: a key may appear once
//! per object, numbers must be finite, and YAML's scalar keys (`true:`, `3:`)
//! become the strings JSON would have used. Everything after this point sees
//! only `serde_json::Value`, which is why JSON and YAML spellings of one
//! workflow are the same workflow. It must never interpret the workflow
//! language; that is the decoder's job.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses JSON text; the error is a message with the position of the fault.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<Strict>(bytes)
        .map(|strict| strict.0)
        .map_err(|error| format!("the document is not valid JSON: {error}"))
}

/// Parses YAML text; the error is a message with the position of the fault.
pub(crate) fn parse_yaml(text: &str) -> Result<Value, String> {
    serde_norway::from_str::<Strict>(text)
        .map(|strict| strict.0)
        .map_err(|error| format!("the document is not valid YAML: {error}"))
}

/// A JSON value decoded with the strict rules above.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
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
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("the number {v} cannot be represented in JSON")))
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
        deserializer.deserialize_any(StrictVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element::<Strict>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(Key(key)) = access.next_key::<Key>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let Strict(value) = access.next_value::<Strict>()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// An object key: a string, or a YAML scalar spelled as the string JSON would use.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
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
        StrictVisitor.visit_f64(v).map(|number| number.to_string())
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
