//! Reading a JSON body strictly: where the API expects an object (a Rust
//! struct), only a JSON object is accepted, at every depth.
//!
//! serde's derived `Deserialize` for a struct also accepts a sequence and
//! reads its elements as the fields in declaration order, so without this
//! `["greet", null, {}]` would start an execution. [`deserialize`] wraps the
//! format's deserializer in `Strict`, which refuses a sequence wherever a
//! struct (or an enum's struct variant) is asked for, and wraps every nested
//! deserializer it hands out (sequence elements, map keys and values,
//! options, newtypes, enum variants) so that the rule holds however deep the
//! struct sits. A value that is neither (a string, a number) was already
//! refused by the format; the wrapper only makes the message say "expected
//! an object". It also notes where the first error happened, as a path like
//! `poll.agentId` or `items[2]`, so a message names the field at fault.
//!
//! Owns that rule and that path. It must never change what a well-shaped
//! document means: for every input the plain deserializer accepts without
//! reading a sequence as a struct, the strict one gives the same value. It
//! cannot see through types that buffer their input first (`#[serde(flatten)]`,
//! untagged or internally tagged enums): those read the buffered copy without
//! the wrapper, so request types must not use them.

use std::cell::RefCell;
use std::fmt;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};

/// What a strict read refused: the format's error, and where it happened.
#[derive(Debug)]
pub struct Rejected<E> {
    /// Where in the document: `poll.agentId`, `items[2]`; empty for the
    /// document itself.
    pub path: String,
    pub error: E,
}

impl<E: fmt::Display> fmt::Display for Rejected<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.error)
        } else {
            write!(f, "at `{}`: {}", self.path, self.error)
        }
    }
}

/// Reads a `T` from `deserializer` under the strict rule.
pub fn deserialize<'de, D, T>(deserializer: D) -> Result<T, Rejected<D::Error>>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let track = Track::default();
    let root = Segment::Root;
    let strict = Strict {
        inner: deserializer,
        ctx: Ctx {
            at: &root,
            track: &track,
            key: None,
        },
    };
    T::deserialize(strict).map_err(|error| Rejected {
        path: track.take(),
        error,
    })
}

/// A place in the document, as a chain up to the root; built on the stack
/// as the reading descends, turned into text only when an error passes.
enum Segment<'p> {
    Root,
    Index {
        parent: &'p Segment<'p>,
        index: usize,
    },
    Key {
        parent: &'p Segment<'p>,
        key: String,
    },
}

impl fmt::Display for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Root => Ok(()),
            Segment::Index { parent, index } => write!(f, "{parent}[{index}]"),
            Segment::Key { parent, key } => match parent {
                Segment::Root => write!(f, "{key}"),
                _ => write!(f, "{parent}.{key}"),
            },
        }
    }
}

/// The path of the first error, which is the deepest: an error is noted by
/// every wrapper it passes on its way out, innermost first.
#[derive(Default)]
struct Track(RefCell<Option<String>>);

impl Track {
    fn note(&self, at: &Segment<'_>) {
        let mut path = self.0.borrow_mut();
        if path.is_none() {
            *path = Some(at.to_string());
        }
    }

    fn take(&self) -> String {
        self.0.borrow_mut().take().unwrap_or_default()
    }
}

/// What every wrapper carries: where it reads, the error track, and, for a
/// map key, where to keep the key's text for the value's path.
#[derive(Clone, Copy)]
struct Ctx<'p> {
    at: &'p Segment<'p>,
    track: &'p Track,
    key: Option<&'p RefCell<Option<String>>>,
}

impl<'p> Ctx<'p> {
    /// The same place, for a deserializer handed on whole (an option's
    /// content, a newtype's): not a key any more.
    fn within(self) -> Ctx<'p> {
        Ctx { key: None, ..self }
    }

    fn fail<E>(self, error: E) -> E {
        self.track.note(self.at);
        error
    }
}

/// A deserializer that refuses a sequence where a struct is expected, and
/// wraps everything it hands out.
struct Strict<'p, D> {
    inner: D,
    ctx: Ctx<'p>,
}

/// Forwards `deserialize_*` methods to the inner deserializer with the
/// visitor wrapped (arguments before the visitor are passed through).
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*) => $wrap:ident;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                let ctx = self.ctx;
                self.inner
                    .$method($($arg,)* Wrap::$wrap(visitor, ctx))
                    .map_err(|e| ctx.fail(e))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<'_, D> {
    type Error = D::Error;

    forward! {
        deserialize_any() => value;
        deserialize_bool() => value;
        deserialize_i8() => value;
        deserialize_i16() => value;
        deserialize_i32() => value;
        deserialize_i64() => value;
        deserialize_i128() => value;
        deserialize_u8() => value;
        deserialize_u16() => value;
        deserialize_u32() => value;
        deserialize_u64() => value;
        deserialize_u128() => value;
        deserialize_f32() => value;
        deserialize_f64() => value;
        deserialize_char() => value;
        deserialize_str() => value;
        deserialize_string() => value;
        deserialize_bytes() => value;
        deserialize_byte_buf() => value;
        deserialize_option() => value;
        deserialize_unit() => value;
        deserialize_unit_struct(name: &'static str) => value;
        deserialize_newtype_struct(name: &'static str) => value;
        deserialize_seq() => value;
        deserialize_tuple(len: usize) => value;
        deserialize_tuple_struct(name: &'static str, len: usize) => value;
        deserialize_map() => value;
        deserialize_struct(name: &'static str, fields: &'static [&'static str]) => object;
        deserialize_enum(name: &'static str, variants: &'static [&'static str]) => value;
        deserialize_identifier() => value;
        deserialize_ignored_any() => value;
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A visitor wrapped: every deserializer or access it is given is wrapped
/// in turn; a struct's visitor refuses a sequence.
struct Wrap<'p, V> {
    inner: V,
    ctx: Ctx<'p>,
    object: bool,
}

impl<'p, V> Wrap<'p, V> {
    fn value(inner: V, ctx: Ctx<'p>) -> Self {
        Wrap {
            inner,
            ctx,
            object: false,
        }
    }

    fn object(inner: V, ctx: Ctx<'p>) -> Self {
        Wrap {
            inner,
            ctx,
            object: true,
        }
    }

    fn keep(&self, key: impl FnOnce() -> String) {
        if let Some(slot) = self.ctx.key {
            *slot.borrow_mut() = Some(key());
        }
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.object {
            f.write_str("an object")
        } else {
            self.inner.expecting(f)
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<V::Value, E> {
        self.inner.visit_bool(v)
    }

    fn visit_i8<E: de::Error>(self, v: i8) -> Result<V::Value, E> {
        self.inner.visit_i8(v)
    }

    fn visit_i16<E: de::Error>(self, v: i16) -> Result<V::Value, E> {
        self.inner.visit_i16(v)
    }

    fn visit_i32<E: de::Error>(self, v: i32) -> Result<V::Value, E> {
        self.inner.visit_i32(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<V::Value, E> {
        self.inner.visit_i64(v)
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<V::Value, E> {
        self.inner.visit_i128(v)
    }

    fn visit_u8<E: de::Error>(self, v: u8) -> Result<V::Value, E> {
        self.inner.visit_u8(v)
    }

    fn visit_u16<E: de::Error>(self, v: u16) -> Result<V::Value, E> {
        self.inner.visit_u16(v)
    }

    fn visit_u32<E: de::Error>(self, v: u32) -> Result<V::Value, E> {
        self.inner.visit_u32(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<V::Value, E> {
        self.keep(|| v.to_string());
        self.inner.visit_u64(v)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<V::Value, E> {
        self.inner.visit_u128(v)
    }

    fn visit_f32<E: de::Error>(self, v: f32) -> Result<V::Value, E> {
        self.inner.visit_f32(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<V::Value, E> {
        self.inner.visit_f64(v)
    }

    fn visit_char<E: de::Error>(self, v: char) -> Result<V::Value, E> {
        self.inner.visit_char(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.keep(|| v.to_owned());
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.keep(|| v.to_owned());
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.keep(|| v.clone());
        self.inner.visit_string(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.inner.visit_bytes(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        self.inner.visit_borrowed_bytes(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.inner.visit_byte_buf(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Strict {
            inner: deserializer,
            ctx: self.ctx.within(),
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Strict {
            inner: deserializer,
            ctx: self.ctx.within(),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        if self.object {
            return Err(de::Error::invalid_type(Unexpected::Seq, &self));
        }
        self.inner.visit_seq(Seq {
            inner: seq,
            ctx: self.ctx.within(),
            index: 0,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Map {
            inner: map,
            ctx: self.ctx.within(),
            key: None,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Enum {
            inner: data,
            ctx: self.ctx.within(),
        })
    }
}

/// A seed whose deserializer is wrapped.
struct Seed<'p, S> {
    inner: S,
    ctx: Ctx<'p>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Strict {
            inner: deserializer,
            ctx: self.ctx,
        })
    }
}

/// A sequence's elements, each read strictly at its index.
struct Seq<'p, A> {
    inner: A,
    ctx: Ctx<'p>,
    index: usize,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let at = Segment::Index {
            parent: self.ctx.at,
            index: self.index,
        };
        self.index = self.index.saturating_add(1);
        let ctx = Ctx {
            at: &at,
            ..self.ctx
        };
        self.inner
            .next_element_seed(Seed { inner: seed, ctx })
            .map_err(|e| ctx.fail(e))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// A map's entries: keys read strictly at the map's place (and kept as
/// text), values at the key's.
struct Map<'p, A> {
    inner: A,
    ctx: Ctx<'p>,
    key: Option<String>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let kept = RefCell::new(None);
        let ctx = Ctx {
            key: Some(&kept),
            ..self.ctx
        };
        let key = self
            .inner
            .next_key_seed(Seed { inner: seed, ctx })
            .map_err(|e| self.ctx.fail(e));
        self.key = kept.into_inner();
        key
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let at = Segment::Key {
            parent: self.ctx.at,
            key: self.key.take().unwrap_or_else(|| "?".to_owned()),
        };
        let ctx = Ctx {
            at: &at,
            ..self.ctx
        };
        self.inner
            .next_value_seed(Seed { inner: seed, ctx })
            .map_err(|e| ctx.fail(e))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// An enum: its variant's name and content read strictly.
struct Enum<'p, A> {
    inner: A,
    ctx: Ctx<'p>,
}

impl<'de, 'p, A: EnumAccess<'de>> EnumAccess<'de> for Enum<'p, A> {
    type Error = A::Error;
    type Variant = Variant<'p, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let ctx = self.ctx;
        let (value, variant) = self
            .inner
            .variant_seed(Seed { inner: seed, ctx })
            .map_err(|e| ctx.fail(e))?;
        Ok((
            value,
            Variant {
                inner: variant,
                ctx,
            },
        ))
    }
}

/// A variant's content; a struct variant refuses a sequence, as a struct does.
struct Variant<'p, A> {
    inner: A,
    ctx: Ctx<'p>,
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let ctx = self.ctx;
        self.inner
            .newtype_variant_seed(Seed { inner: seed, ctx })
            .map_err(|e| ctx.fail(e))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let ctx = self.ctx;
        self.inner
            .tuple_variant(len, Wrap::value(visitor, ctx))
            .map_err(|e| ctx.fail(e))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let ctx = self.ctx;
        self.inner
            .struct_variant(fields, Wrap::object(visitor, ctx))
            .map_err(|e| ctx.fail(e))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::{Value, json};

    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: u32,
        b: Option<String>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Unit,
        Newtype(Inner),
        Tuple(u32, u32),
        Struct { a: u32 },
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        inner: Option<Inner>,
        list: Vec<Inner>,
        #[serde(default)]
        free: Value,
        kind: Option<Kind>,
        map: Option<BTreeMap<String, Inner>>,
    }

    fn strict<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
        let mut json = serde_json::Deserializer::from_str(text);
        deserialize(&mut json).map_err(|e| e.to_string())
    }

    fn plain<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn arrays_where_objects_are_expected_are_refused_at_every_depth() {
        let inner = r#"{"a": 1, "b": null}"#;
        let cases = [
            (r#"[null, [], null, null, null]"#.to_owned(), ""),
            (r#"{"inner": [1, null], "list": []}"#.to_owned(), "inner"),
            (
                format!(r#"{{"inner": null, "list": [{inner}, [1, "x"]]}}"#),
                "list[1]",
            ),
            (
                r#"{"list": [], "kind": {"newtype": [1, null]}}"#.to_owned(),
                "kind",
            ),
            (
                r#"{"list": [], "kind": {"struct": [1]}}"#.to_owned(),
                "kind",
            ),
            (
                r#"{"list": [], "map": {"k": [1, null]}}"#.to_owned(),
                "map.k",
            ),
        ];
        for (text, path) in cases {
            assert!(plain::<Outer>(&text).is_ok(), "serde alone takes {text}");
            let error = strict::<Outer>(&text).unwrap_err();
            assert!(
                error.contains("invalid type: sequence, expected an object"),
                "{error}"
            );
            let at = if path.is_empty() {
                String::new()
            } else {
                format!("at `{path}`: ")
            };
            assert!(error.starts_with(&at), "{text}: {error}");
        }
    }

    #[test]
    fn other_values_where_objects_are_expected_say_an_object_was() {
        for text in [r#""x""#, "3", "true", "null"] {
            let error = strict::<Outer>(text).unwrap_err();
            assert!(error.contains("expected an object"), "{text}: {error}");
        }
        let error = strict::<Outer>(r#"{"list": [], "inner": 5}"#).unwrap_err();
        assert!(
            error.starts_with("at `inner`: invalid type: integer `5`, expected an object"),
            "{error}"
        );
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        let error = strict::<Outer>(r#"{"list": [{"a": 1}, {"a": true}]}"#).unwrap_err();
        assert!(error.starts_with("at `list[1].a`: invalid type"), "{error}");
        let error = strict::<Outer>(r#"{"list": [], "inner": {"a": 1, "c": 2}}"#).unwrap_err();
        assert!(
            error.starts_with("at `inner`: unknown field `c`"),
            "{error}"
        );
        let error = strict::<Outer>(r#"{"inner": null}"#).unwrap_err();
        assert!(error.starts_with("missing field `list`"), "{error}");
    }

    #[test]
    fn free_json_keeps_its_arrays() {
        let text = r#"{"list": [], "free": [[1, {"x": [true]}], [], "s"]}"#;
        let outer: Outer = strict(text).unwrap();
        assert_eq!(outer.free, json!([[1, {"x": [true]}], [], "s"]));
        // Nested as deep as the parser allows.
        let deep = format!("{}{}", "[".repeat(120), "]".repeat(120));
        assert_eq!(strict::<Value>(&deep), plain::<Value>(&deep));
    }

    /// A small deterministic generator (xorshift), so the property below
    /// runs the same cases every time.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Free JSON up to `depth` levels.
    fn free(rng: &mut Rng, depth: u32) -> Value {
        match rng.below(if depth == 0 { 4 } else { 6 }) {
            0 => Value::Null,
            1 => json!(rng.below(2) == 0),
            2 => json!(rng.below(1000)),
            3 => json!(format!("s{}", rng.below(10))),
            4 => (0..rng.below(4)).map(|_| free(rng, depth - 1)).collect(),
            _ => (0..rng.below(4))
                .map(|i| (format!("k{i}"), free(rng, depth - 1)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// A struct written as an object or, with `arrays`' say, as the array
    /// serde would read as its fields in order; `used` records whether any
    /// array form was used.
    struct Writer<'r> {
        rng: &'r mut Rng,
        used: bool,
    }

    impl Writer<'_> {
        fn record(&mut self, fields: Vec<(&str, Value)>) -> Value {
            if self.rng.below(5) == 0 {
                self.used = true;
                fields.into_iter().map(|(_, v)| v).collect()
            } else {
                fields
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            }
        }

        fn inner(&mut self) -> Value {
            let a = json!(self.rng.below(100));
            let b = if self.rng.below(2) == 0 {
                Value::Null
            } else {
                json!("b")
            };
            self.record(vec![("a", a), ("b", b)])
        }

        fn kind(&mut self) -> Value {
            match self.rng.below(5) {
                0 => Value::Null,
                1 => json!("unit"),
                2 => json!({"newtype": self.inner()}),
                3 => json!({"tuple": [1, 2]}),
                _ => {
                    let a = json!(self.rng.below(9));
                    json!({"struct": self.record(vec![("a", a)])})
                }
            }
        }

        fn outer(&mut self) -> Value {
            let inner = if self.rng.below(2) == 0 {
                Value::Null
            } else {
                self.inner()
            };
            let list = (0..self.rng.below(3)).map(|_| self.inner()).collect();
            let free = free(self.rng, 3);
            let kind = self.kind();
            let map = if self.rng.below(2) == 0 {
                Value::Null
            } else {
                (0..self.rng.below(3))
                    .map(|i| (format!("m{i}"), self.inner()))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            };
            self.record(vec![
                ("inner", inner),
                ("list", list),
                ("free", free),
                ("kind", kind),
                ("map", map),
            ])
        }
    }

    /// The wrapper's property: a document that spells every struct as an
    /// object reads exactly as serde alone reads it, and one that spells
    /// any struct as an array is refused; free JSON reads as itself.
    #[test]
    fn strict_reads_objects_as_serde_does_and_refuses_every_array_struct() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut refused = 0;
        for _ in 0..3000 {
            let mut writer = Writer {
                rng: &mut rng,
                used: false,
            };
            let document = writer.outer();
            let used = writer.used;
            let text = document.to_string();
            let expected = plain::<Outer>(&text);
            assert!(expected.is_ok(), "serde alone reads {text}");
            match strict::<Outer>(&text) {
                Ok(outer) => {
                    assert!(!used, "an array was read as a struct: {text}");
                    assert_eq!(Ok(outer), expected);
                }
                Err(error) => {
                    assert!(used, "{text}: {error}");
                    assert!(error.contains("expected an object"), "{error}");
                    refused += 1;
                }
            }
            assert_eq!(strict::<Value>(&text), Ok(document));
        }
        assert!(refused > 100, "the generator spells structs as arrays");
    }
}
