//! The JSON Schema of the report wire format, generated from the Rust types.
//!
//! The schema is the contract: [`crate::decode`] accepts exactly what it accepts, bar duplicate
//! keys, which a schema cannot see (`tests/differential.rs` checks both on the same documents).

use serde_json::{Map, Value};

use crate::report::Report;

/// The JSON Schema (draft 2020-12) for report wire format v1, as committed in
/// `schema/report-v1.schema.json`.
pub fn report_schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Report)).expect("a schema is JSON");
    bound_integer_formats(&mut schema);
    if let Value::Object(root) = &mut schema {
        root.insert("$id".into(), "https://pollwatch.invalid/schema/report-v1.schema.json".into());
        // The body is flattened into the envelope, so `additionalProperties` cannot close the
        // object; `unevaluatedProperties` does, across the kind/body alternatives.
        root.insert("unevaluatedProperties".into(), false.into());
    }
    schema
}

/// schemars writes a Rust integer type as a `format` (`uint32`, `uint64`, `int64`), which JSON
/// Schema validators ignore as unknown: without a range, `"revision": 5000000000` would pass the
/// schema and fail decoding. Each such integer gets the range of its type, where schemars did not
/// already give a narrower bound.
fn bound_integer_formats(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            let range: Option<(Value, Value)> = match object.get("format").and_then(Value::as_str) {
                Some("uint32") => Some((0.into(), u32::MAX.into())),
                Some("uint64") => Some((0.into(), u64::MAX.into())),
                Some("int64") => Some((i64::MIN.into(), i64::MAX.into())),
                _ => None,
            };
            if let Some((minimum, maximum)) = range {
                insert_absent(object, "minimum", minimum);
                insert_absent(object, "maximum", maximum);
            }
            object.values_mut().for_each(bound_integer_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integer_formats),
        _ => {}
    }
}

fn insert_absent(object: &mut Map<String, Value>, key: &str, value: Value) {
    if !object.contains_key(key) {
        object.insert(key.to_owned(), value);
    }
}
