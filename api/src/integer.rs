//! Integer fields of JSON bodies, read as JSON Schema reads them: a number
//! with a zero fractional part (`5.0`, `5e3`) is an integer, so the API
//! takes it wherever the OpenAPI document says `integer` — serde alone
//! refuses `5.0` for a `u64`, which the document cannot say.
//!
//! Owns only that reading (`#[serde(default, deserialize_with =
//! "crate::integer::optional")]` on an `Option` of an unsigned integer;
//! `#[serde(deserialize_with = "crate::integer::required")]` on one that
//! must be given, `null` refused; `#[serde(default, deserialize_with =
//! "crate::integer::present")]` on an `Option` that may be left out but is
//! never `null`). It
//! must never round: `5.5`, a negative number, or one past the field's type
//! is refused with serde's own message, as `invalid_body`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Unexpected, Visitor};

/// An optional unsigned integer field: absent or `null` is `None`.
pub fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    deserializer.deserialize_option(Optional(PhantomData))
}

/// A required unsigned integer field: absent is serde's `missing field`,
/// `null` is refused as any other non-number is.
pub fn required<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    deserializer.deserialize_any(Unsigned(PhantomData))
}

/// An optional unsigned integer field that is never `null`: absent is
/// `None` (with `#[serde(default)]`), `null` is refused as any other
/// non-number is.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    required(deserializer).map(Some)
}

struct Optional<T>(PhantomData<T>);

impl<'de, T: TryFrom<u64>> Visitor<'de> for Optional<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer
            .deserialize_any(Unsigned(PhantomData))
            .map(Some)
    }
}

struct Unsigned<T>(PhantomData<T>);

impl<T: TryFrom<u64>> Unsigned<T> {
    fn fit<E: de::Error>(&self, n: u64) -> Result<T, E> {
        T::try_from(n).map_err(|_| E::invalid_value(Unexpected::Unsigned(n), self))
    }
}

impl<T: TryFrom<u64>> Visitor<'_> for Unsigned<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let bits = 8 * std::mem::size_of::<T>();
        write!(f, "a whole number from 0 to 2^{bits} - 1")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
        self.fit(n)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
        match u64::try_from(n) {
            Ok(n) => self.fit(n),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(n), &self)),
        }
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<T, E> {
        // 2^64, the first float past u64::MAX (u64::MAX itself is not a
        // float); every float below it with no fraction is a u64 exactly.
        const PAST_U64: f64 = 18_446_744_073_709_551_616.0;
        if n.fract() == 0.0 && (0.0..PAST_U64).contains(&n) {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            return self.fit(n as u64);
        }
        Err(E::invalid_type(Unexpected::Float(n), &self))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::optional")]
        n: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    struct Required {
        #[serde(deserialize_with = "super::required")]
        n: u32,
    }

    fn read_required(text: &str) -> Result<u32, String> {
        serde_json::from_str::<Required>(text)
            .map(|b| b.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_required_integer_must_be_there_and_a_number() {
        assert_eq!(read_required(r#"{"n": 7.0}"#), Ok(7));
        assert_eq!(read_required(r#"{"n": 7}"#), Ok(7));
        let missing = read_required("{}").unwrap_err();
        assert!(missing.contains("missing field `n`"), "{missing}");
        for text in [r#"{"n": null}"#, r#"{"n": 7.5}"#, r#"{"n": 4294967296}"#] {
            assert!(read_required(text).is_err(), "{text} was read");
        }
    }

    #[derive(Debug, Deserialize)]
    struct Present {
        #[serde(default, deserialize_with = "super::present")]
        n: Option<u32>,
    }

    #[test]
    fn a_present_integer_may_be_left_out_but_not_null() {
        let read = |text: &str| serde_json::from_str::<Present>(text).map(|b| b.n);
        assert_eq!(read(r#"{"n": 7.0}"#).unwrap(), Some(7));
        assert_eq!(read("{}").unwrap(), None);
        for text in [r#"{"n": null}"#, r#"{"n": 7.5}"#, r#"{"n": -1}"#] {
            assert!(read(text).is_err(), "{text} was read");
        }
    }

    fn read(text: &str) -> Result<Option<u32>, String> {
        serde_json::from_str::<Body>(text)
            .map(|b| b.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_in_any_spelling_are_read() {
        assert_eq!(read("{}"), Ok(None));
        assert_eq!(read(r#"{"n": null}"#), Ok(None));
        assert_eq!(read(r#"{"n": 7}"#), Ok(Some(7)));
        assert_eq!(read(r#"{"n": 7.0}"#), Ok(Some(7)));
        assert_eq!(read(r#"{"n": 7e2}"#), Ok(Some(700)));
        assert_eq!(read(r#"{"n": -0.0}"#), Ok(Some(0)));
        assert_eq!(read(r#"{"n": 4294967295.0}"#), Ok(Some(u32::MAX)));
    }

    #[test]
    fn anything_else_is_refused() {
        for text in [
            r#"{"n": 7.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": -1.0}"#,
            r#"{"n": 4294967296}"#,
            r#"{"n": 4294967296.0}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": "7"}"#,
            r#"{"n": true}"#,
            r#"{"n": [7]}"#,
        ] {
            assert!(read(text).is_err(), "{text} was read");
        }
    }
}
