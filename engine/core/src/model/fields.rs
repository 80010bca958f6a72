//! Reading one JSON object field by field, reporting every problem.
//!
//! Owns the generic part of decoding: "is this an object", "is this field a
//! string", "which fields were never asked for" (unknown fields, with a
//! spelling suggestion). It must never know what any field means; `decode`
//! asks for fields by name and decides what is required.
//!
//! An explicit `null` is read as an absent field, so `"next": null` and no
//! `next` are the same document.

use serde_json::{Map, Value};

use super::problem::{Problems, field};

/// An object being read; every field asked for is marked as known.
pub(crate) struct Fields<'a> {
    path: String,
    map: &'a Map<String, Value>,
    known: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    /// Opens `value` (found at `path`) as an object, or reports that it is not one.
    pub(crate) fn open(
        value: &'a Value,
        path: &str,
        problems: &mut Problems,
    ) -> Option<Fields<'a>> {
        match value {
            Value::Object(map) => Some(Fields {
                path: path.to_owned(),
                map,
                known: Vec::new(),
            }),
            other => {
                problems.push(path, format!("must be an object, not {}", kind(other)));
                None
            }
        }
    }

    /// The path of field `key` of this object.
    pub(crate) fn path_of(&self, key: &str) -> String {
        field(&self.path, key)
    }

    /// The path of this object.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Field `key` as written, `None` when absent or `null`; marks it known.
    pub(crate) fn raw(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        self.map.get(key).filter(|value| !value.is_null())
    }

    /// Reports that field `key` is missing, if it is.
    fn require<T>(&self, key: &str, value: Option<T>, problems: &mut Problems) -> Option<T> {
        if value.is_none() && self.map.get(key).is_none_or(Value::is_null) {
            problems.push(self.path_of(key), "is required");
        }
        value
    }

    /// An optional string field.
    pub(crate) fn string(&mut self, key: &'static str, problems: &mut Problems) -> Option<String> {
        match self.raw(key)? {
            Value::String(text) => Some(text.clone()),
            other => {
                problems.push(self.path_of(key), must_be("a string", other));
                None
            }
        }
    }

    /// A required string field.
    pub(crate) fn required_string(
        &mut self,
        key: &'static str,
        problems: &mut Problems,
    ) -> Option<String> {
        let value = self.string(key, problems);
        self.require(key, value, problems)
    }

    /// An optional non-negative whole number.
    pub(crate) fn u64(&mut self, key: &'static str, problems: &mut Problems) -> Option<u64> {
        self.whole(key, 0, problems)
    }

    /// An optional whole number of at least 1 (durations, caps).
    pub(crate) fn positive_u64(
        &mut self,
        key: &'static str,
        problems: &mut Problems,
    ) -> Option<u64> {
        self.whole(key, 1, problems)
    }

    /// An optional whole number of at least `min`.
    pub(crate) fn whole(
        &mut self,
        key: &'static str,
        min: u64,
        problems: &mut Problems,
    ) -> Option<u64> {
        let value = self.raw(key)?;
        match value.as_u64() {
            Some(number) if number >= min => Some(number),
            _ => {
                problems.push(
                    self.path_of(key),
                    must_be(&format!("a whole number of at least {min}"), value),
                );
                None
            }
        }
    }

    /// An optional finite number.
    pub(crate) fn f64(&mut self, key: &'static str, problems: &mut Problems) -> Option<f64> {
        let value = self.raw(key)?;
        match value.as_f64() {
            Some(number) => Some(number),
            None => {
                problems.push(self.path_of(key), must_be("a number", value));
                None
            }
        }
    }

    /// An optional array of strings; absent is empty.
    pub(crate) fn strings(&mut self, key: &'static str, problems: &mut Problems) -> Vec<String> {
        let Some(value) = self.raw(key) else {
            return Vec::new();
        };
        let Value::Array(items) = value else {
            problems.push(self.path_of(key), must_be("an array of strings", value));
            return Vec::new();
        };
        let mut strings = Vec::with_capacity(items.len());
        for (at, item) in items.iter().enumerate() {
            match item {
                Value::String(text) => strings.push(text.clone()),
                other => problems.push(
                    format!("{}[{at}]", self.path_of(key)),
                    must_be("a string", other),
                ),
            }
        }
        strings
    }

    /// An optional array; its items are left to the caller.
    pub(crate) fn array(
        &mut self,
        key: &'static str,
        problems: &mut Problems,
    ) -> Option<&'a Vec<Value>> {
        match self.raw(key)? {
            Value::Array(items) => Some(items),
            other => {
                problems.push(self.path_of(key), must_be("an array", other));
                None
            }
        }
    }

    /// A required array.
    pub(crate) fn required_array(
        &mut self,
        key: &'static str,
        problems: &mut Problems,
    ) -> Option<&'a Vec<Value>> {
        let value = self.array(key, problems);
        self.require(key, value, problems)
    }

    /// An optional object; its fields are left to the caller.
    pub(crate) fn object(
        &mut self,
        key: &'static str,
        problems: &mut Problems,
    ) -> Option<&'a Map<String, Value>> {
        match self.raw(key)? {
            Value::Object(map) => Some(map),
            other => {
                problems.push(self.path_of(key), must_be("an object", other));
                None
            }
        }
    }

    /// Whether field `key` is written (and not `null`), without marking it known.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|value| !value.is_null())
    }

    /// Reports every field that was never asked for.
    pub(crate) fn finish(self, problems: &mut Problems) {
        let mut unknown: Vec<&String> = self
            .map
            .keys()
            .filter(|key| !self.known.contains(&key.as_str()))
            .collect();
        unknown.sort();
        for key in unknown {
            let message = match suggest(key, &self.known) {
                Some(near) => format!("unknown field; did you mean `{near}`?"),
                None => {
                    let mut known = self.known.clone();
                    known.sort_unstable();
                    known.dedup();
                    let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
                    format!("unknown field; expected one of {}", list.join(", "))
                }
            };
            problems.push(field(&self.path, key), message);
        }
    }
}

/// "must be X, not Y".
pub(crate) fn must_be(expected: &str, found: &Value) -> String {
    format!("must be {expected}, not {}", kind(found))
}

/// How a JSON value is named in messages.
pub(crate) fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() <= 40 => format!("the string {value}"),
        Value::String(_) => "a string".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// The known field closest to `key`, if it is close enough to be a typo.
pub(crate) fn suggest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let key_lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|candidate| {
            (
                distance(&key_lower, &candidate.to_ascii_lowercase()),
                *candidate,
            )
        })
        .filter(|(d, candidate)| *d <= 2 && *d < candidate.len())
        .min()
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance between two short strings.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("capabilty", "capability"), 1);
        assert_eq!(distance("onerror", "onerror"), 0);
        assert_eq!(distance("abc", "xyz"), 3);
    }

    #[test]
    fn suggestions_ignore_case_and_far_names() {
        let known = ["capability", "onError", "next"];
        assert_eq!(suggest("capabilty", &known), Some("capability"));
        assert_eq!(suggest("on_error", &known), Some("onError"));
        assert_eq!(suggest("banana", &known), None);
    }
}
