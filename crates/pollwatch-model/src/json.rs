//! From payload bytes to a JSON value, refusing what JSON leaves to the reader: an object with
//! the same key twice (readers disagree on which one wins, so a report could mean one thing to
//! pollwatch and another to the next tool). One leading UTF-8 byte-order mark is ignored, as
//! RFC 8259 (section 8.1) lets a parser do.
//!
//! The value is built by one pass of serde_json's parser with a visitor of our own, which checks
//! each key as it is read; serde_json's own `Value` would keep the last of two keys silently.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::codes::{RejectCode, Rejection};
use crate::detail::echo;

/// The UTF-8 encoding of U+FEFF, the byte-order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The JSON text of a payload: the payload without one leading UTF-8 byte-order mark, if it has
/// one. The worker stores this, so that a stored payload is plain JSON; [`crate::decode`] reads
/// the same text.
pub fn json_text(payload: &[u8]) -> &[u8] {
    payload.strip_prefix(BOM).unwrap_or(payload)
}

/// Where a value sits in the report, as a chain of borrowed segments: nothing is allocated for a
/// path unless a rejection names it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    pub(crate) fn key(&'a self, key: &'a str) -> Self {
        Path::Key(self, key)
    }

    pub(crate) fn index(&'a self, index: usize) -> Self {
        Path::Index(self, index)
    }
}

/// The dotted form used in rejections: `body.protocols[0].votes.japarov`, and `$` for the report
/// itself. A key that is the empty string is a segment too, shown as nothing: `location.` for
/// `{"location": {"": 1}}`; only at the top it would leave the path empty, so it is `$`.
impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn write(path: &Path<'_>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match path {
                Path::Root => Ok(()),
                Path::Key(Path::Root, key) => f.write_str(key),
                Path::Key(parent, key) => {
                    write(parent, f)?;
                    write!(f, ".{key}")
                }
                Path::Index(parent, index) => {
                    write(parent, f)?;
                    write!(f, "[{index}]")
                }
            }
        }
        match self {
            Path::Root | Path::Key(Path::Root, "") => f.write_str("$"),
            path => write(path, f),
        }
    }
}

/// Parses JSON text into a value, rejecting malformed JSON and duplicate keys. serde_json's
/// nesting limit (128) holds, so deep input is malformed, not a stack overflow.
pub(crate) fn parse(text: &str) -> Result<Value, Rejection> {
    let duplicate = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = ValueSeed { at: Path::Root, duplicate: &duplicate }
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|error| {
        duplicate.into_inner().unwrap_or_else(|| {
            Rejection::new(RejectCode::MalformedJson, "$", format!("the payload is not JSON: {error}"))
        })
    })
}

/// Builds one JSON value at `at`. A duplicate key is recorded in `duplicate` and ends the parse
/// with an error, which [`parse`] replaces by the recorded rejection.
#[derive(Clone, Copy)]
struct ValueSeed<'a> {
    at: Path<'a>,
    duplicate: &'a RefCell<Option<Rejection>>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        // JSON text has no NaN or infinity; serde_json refuses numbers too large for an f64.
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let at = self.at.index(items.len());
            match seq.next_element_seed(ValueSeed { at, duplicate: self.duplicate })? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let at = self.at.key(&key);
            if object.contains_key(&key) {
                let rejection = Rejection::new(
                    RejectCode::DuplicateKey,
                    at.to_string(),
                    format!("the key {} appears twice in one object", echo(&key)),
                );
                *self.duplicate.borrow_mut() = Some(rejection);
                return Err(A::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(ValueSeed { at, duplicate: self.duplicate })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_duplicate_key_is_rejected_with_its_path_at_any_depth() {
        for (text, path) in [
            (r#"{"station":"a","station":"b"}"#, "station"),
            (r#"{"body":{"protocols":[{"votes":{"a":1,"a":2}}]}}"#, "body.protocols[0].votes.a"),
            (r#"{"a":[[{"":1,"":2}]]}"#, "a[0][0]."),
            (r#"{"":1,"":2}"#, "$"),
        ] {
            let rejection = parse(text).expect_err(text);
            assert_eq!((rejection.code, rejection.path.as_str()), (RejectCode::DuplicateKey, path), "{text}");
        }
    }

    #[test]
    fn keys_that_differ_only_after_escaping_are_duplicates() {
        let rejection = parse(r#"{"a":1,"\u0061":2}"#).expect_err("a duplicate");
        assert_eq!(rejection.code, RejectCode::DuplicateKey);
    }

    #[test]
    fn the_same_key_in_sibling_objects_is_no_duplicate() {
        let value = parse(r#"{"a":{"k":1},"b":{"k":2},"c":[{"k":3},{"k":4}]}"#).unwrap();
        assert_eq!(value, json!({"a":{"k":1},"b":{"k":2},"c":[{"k":3},{"k":4}]}));
    }

    #[test]
    fn the_value_is_what_serde_json_reads() {
        let text =
            r#"{"n":[1,-1,1.5,18446744073709551615,-9223372036854775808,1e300],"s":"ж\n","t":true,"z":null}"#;
        assert_eq!(parse(text).unwrap(), serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn trailing_text_and_deep_nesting_are_malformed() {
        assert_eq!(parse("{} {}").unwrap_err().code, RejectCode::MalformedJson);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse(&deep).unwrap_err().code, RejectCode::MalformedJson);
    }

    #[test]
    fn one_leading_byte_order_mark_is_stripped() {
        assert_eq!(json_text(b"\xEF\xBB\xBF{}"), b"{}");
        assert_eq!(json_text(b"\xEF\xBB\xBF\xEF\xBB\xBF{}"), b"\xEF\xBB\xBF{}");
        assert_eq!(json_text(b"{}"), b"{}");
        assert_eq!(json_text(b""), b"");
    }
}
