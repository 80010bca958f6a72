//! The canonical form of a definition and its content hash (the version).
//!
//! Owns the one byte string a definition is identified by: the decoded
//! document re-serialized as JSON with every object's keys sorted (by byte
//! order, which is Unicode code point order) and no whitespace. The version is
//! the lowercase hex blake3 hash of those bytes. It must never depend on how
//! the document was spelled (JSON or YAML, key order, spacing) or on a cargo
//! feature of `serde_json`: the keys are sorted here, not by the map type.

use serde_json::Value;

use super::definition::WorkflowDefinition;

/// The canonical JSON text of a decoded definition.
pub(crate) fn canonical_json(definition: &WorkflowDefinition) -> Result<String, String> {
    let value = serde_json::to_value(definition)
        .map_err(|error| format!("the definition cannot be serialized: {error}"))?;
    Ok(canonical_string(&value))
}

/// The version of a definition: lowercase hex blake3 of its canonical JSON.
pub(crate) fn version_hash(canonical: &str) -> String {
    blake3::hash(canonical.as_bytes()).to_hex().to_string()
}

/// `value` as JSON with sorted object keys and no whitespace.
pub fn canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (at, item) in items.iter().enumerate() {
                if at > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (at, (key, item)) in entries.into_iter().enumerate() {
                if at > 0 {
                    out.push(',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut String) {
    // Displaying a serde_json scalar is its compact JSON text.
    out.push_str(&value.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth_without_whitespace() {
        let value = json!({"b": [{"z": 1, "a": "x y"}], "a": null, "é": 1.5, "B": true});
        assert_eq!(
            canonical_string(&value),
            r#"{"B":true,"a":null,"b":[{"a":"x y","z":1}],"é":1.5}"#
        );
    }

    #[test]
    fn strings_are_escaped_as_json() {
        assert_eq!(canonical_string(&json!("a\"b\n")), r#""a\"b\n""#);
    }

    #[test]
    fn the_version_is_lowercase_hex_blake3() {
        let version = version_hash("{}");
        assert_eq!(version.len(), 64);
        assert!(version.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_eq!(version, blake3::hash(b"{}").to_hex().to_string());
    }
}
