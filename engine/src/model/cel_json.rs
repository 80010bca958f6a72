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
//! value or `null`, and `bytes`, types and functions are errors.

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

/// The JSON value for a CEL value; the error names what has no JSON form.
pub(crate) fn to_json(cel: &Cel) -> Result<Json, String> {
    Ok(match cel {
        Cel::Null => Json::Null,
        Cel::Bool(b) => Json::Bool(*b),
        Cel::Int(int) => Json::from(*int),
        Cel::UInt(uint) => Json::from(*uint),
        Cel::Float(float) => Number::from_f64(*float)
            .map(Json::Number)
            .ok_or_else(|| format!("the result {float} is not a number JSON can hold"))?,
        Cel::String(text) => Json::String(text.as_str().to_owned()),
        Cel::List(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Cel::Map(map) => {
            let mut object = serde_json::Map::new();
            for (key, value) in map.map.iter() {
                object.insert(key.to_string(), to_json(value)?);
            }
            Json::Object(object)
        }
        Cel::Opaque(_) => match <&OptionalValue>::try_from(cel) {
            Ok(optional) => match optional.value() {
                Some(value) => to_json(value)?,
                None => Json::Null,
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
        assert_eq!(to_json(&to_cel(&value)), Ok(value));
    }

    #[test]
    fn numbers_map_to_the_narrowest_cel_type() {
        assert_eq!(to_cel(&json!(5)), Cel::Int(5));
        assert_eq!(to_cel(&json!(u64::MAX)), Cel::UInt(u64::MAX));
        assert_eq!(to_cel(&json!(5.0)), Cel::Float(5.0));
    }

    #[test]
    fn values_without_json_form_are_errors() {
        assert!(to_json(&Cel::Float(f64::INFINITY)).is_err());
        assert!(to_json(&Cel::Bytes(Arc::new(vec![1]))).is_err());
    }
}
