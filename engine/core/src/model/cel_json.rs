//! Converting between JSON values and CEL values.
//!
//! Owns the correspondence, in both directions, so that an expression sees
//! exactly the JSON the engine holds and returns JSON the engine can store.
//! It must never evaluate anything.
//!
//! | JSON                         | CEL                                  |
//! |------------------------------|--------------------------------------|
//! | `null`, `true`, `"text"`     | `null`, `bool`, `string`             |
//! | integer that fits `i64`      | `int`                                |
//! | larger positive integer      | `uint`                               |
//! | any other number             | `double`                             |
//! | array / object               | `list` / `map` with `string` keys    |
//!
//! Back to JSON, `int`/`uint`/`double` become numbers (a non-finite double is
//! an error), map keys of any type become strings, an `optional` becomes its
//! value or `null`, and `bytes`, types and functions are errors. So is a
//! result larger than the limit the caller gives, counted as it is converted,
//! so that a huge result is refused before its JSON is built.

use std::collections::HashMap;
use std::sync::Arc;

use cel::Value as Cel;
use cel::objects::{Key, Map, OptionalValue};
use serde_json::{Number, Value as Json};

/// The CEL value for a JSON value.
pub(crate) fn to_cel(json: &Json) -> Cel {
    match json {
        Json::Null => Cel::Null,
        Json::Bool(b) => Cel::Bool(*b),
        Json::Number(number) => {
            if let Some(int) = number.as_i64() {
                Cel::Int(int)
            } else if let Some(uint) = number.as_u64() {
                Cel::UInt(uint)
            } else {
                // Without serde_json's arbitrary precision every number is one
                // of the three, so this is a float.
                Cel::Float(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(text) => Cel::String(Arc::new(text.clone())),
        Json::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Json::Object(map) => {
            let map: HashMap<Key, Cel> = map
                .iter()
                .map(|(key, value)| (Key::String(Arc::new(key.clone())), to_cel(value)))
                .collect();
            Cel::Map(Map { map: Arc::new(map) })
        }
    }
}

/// The JSON value for a CEL value; the error names what has no JSON form,
/// or says the value is larger than `max_bytes` of compact JSON text.
pub(crate) fn to_json(cel: &Cel, max_bytes: usize) -> Result<Json, String> {
    let mut size = Size {
        left: max_bytes,
        max_bytes,
    };
    convert(cel, &mut size)
}

/// What is left of the size a result may have, in bytes of compact JSON
/// (escapes in strings are not counted).
struct Size {
    left: usize,
    max_bytes: usize,
}

impl Size {
    fn take(&mut self, bytes: usize) -> Result<(), String> {
        self.left = self.left.checked_sub(bytes).ok_or_else(|| {
            format!(
                "the result is larger than its result budget ({} bytes of JSON)",
                self.max_bytes
            )
        })?;
        Ok(())
    }
}

/// The number of characters of `n` written in decimal.
fn digits(mut n: u64) -> usize {
    let mut count = 1;
    while n >= 10 {
        n /= 10;
        count += 1;
    }
    count
}

fn convert(cel: &Cel, size: &mut Size) -> Result<Json, String> {
    Ok(match cel {
        Cel::Null => {
            size.take(4)?;
            Json::Null
        }
        Cel::Bool(b) => {
            size.take(if *b { 4 } else { 5 })?;
            Json::Bool(*b)
        }
        Cel::Int(int) => {
            size.take(digits(int.unsigned_abs()) + usize::from(*int < 0))?;
            Json::from(*int)
        }
        Cel::UInt(uint) => {
            size.take(digits(*uint))?;
            Json::from(*uint)
        }
        Cel::Float(float) => {
            // Most doubles print shorter; the longest take 24 characters.
            size.take(8)?;
            Number::from_f64(*float)
                .map(Json::Number)
                .ok_or_else(|| format!("the result {float} is not a number JSON can hold"))?
        }
        Cel::String(text) => {
            size.take(text.len().saturating_add(2))?;
            Json::String(text.as_str().to_owned())
        }
        Cel::List(items) => {
            size.take(items.len().saturating_add(1))?;
            Json::Array(
                items
                    .iter()
                    .map(|item| convert(item, size))
                    .collect::<Result<_, _>>()?,
            )
        }
        Cel::Map(map) => {
            size.take(map.map.len().saturating_add(1))?;
            let mut object = serde_json::Map::new();
            for (key, value) in map.map.iter() {
                let key = key.to_string();
                size.take(key.len().saturating_add(3))?;
                object.insert(key, convert(value, size)?);
            }
            Json::Object(object)
        }
        Cel::Opaque(_) => match <&OptionalValue>::try_from(cel) {
            Ok(optional) => match optional.value() {
                Some(value) => convert(value, size)?,
                None => {
                    size.take(4)?;
                    Json::Null
                }
            },
            Err(_) => {
                return Err(format!(
                    "a result of type {} has no JSON form",
                    cel.type_of()
                ));
            }
        },
        other => {
            return Err(format!(
                "a result of type {} has no JSON form",
                other.type_of()
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_survives_the_round_trip() {
        let value = json!({
            "null": null, "bool": true, "int": -3, "big": u64::MAX, "float": 2.5,
            "text": "x", "list": [1, "a", [2]], "map": {"k": {"j": false}},
        });
        assert_eq!(to_json(&to_cel(&value), usize::MAX), Ok(value));
    }

    #[test]
    fn numbers_map_to_the_narrowest_cel_type() {
        assert_eq!(to_cel(&json!(5)), Cel::Int(5));
        assert_eq!(to_cel(&json!(u64::MAX)), Cel::UInt(u64::MAX));
        assert_eq!(to_cel(&json!(5.0)), Cel::Float(5.0));
    }

    #[test]
    fn values_without_json_form_are_errors() {
        assert!(to_json(&Cel::Float(f64::INFINITY), usize::MAX).is_err());
        assert!(to_json(&Cel::Bytes(Arc::new(vec![1])), usize::MAX).is_err());
    }

    #[test]
    fn the_size_counted_is_about_the_compact_json_size() {
        for value in [
            json!(null),
            json!([true, -12, 345, "abc"]),
            json!({"a": [1, 2], "bc": {"d": "e"}}),
        ] {
            let exact = serde_json::to_string(&value).map_or(0, |text| text.len());
            assert_eq!(to_json(&to_cel(&value), exact), Ok(value.clone()));
            assert!(to_json(&to_cel(&value), exact - 2).is_err(), "{value}");
        }
    }

    #[test]
    fn a_result_over_the_limit_is_refused() {
        let big = json!(vec!["0123456789"; 1000]);
        assert_eq!(
            to_json(&to_cel(&big), 1000),
            Err("the result is larger than its result budget (1000 bytes of JSON)".to_owned())
        );
    }
}
