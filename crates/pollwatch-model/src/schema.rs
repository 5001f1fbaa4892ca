//! The JSON Schema of the report wire format, generated from the Rust types.

use serde_json::Value;

use crate::report::Report;

/// The JSON Schema (draft 2020-12) for report wire format v1, as committed in
/// `schema/report-v1.schema.json`.
pub fn report_schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Report)).expect("a schema is JSON");
    if let Value::Object(root) = &mut schema {
        root.insert("$id".into(), "https://pollwatch.invalid/schema/report-v1.schema.json".into());
        // The body is flattened into the envelope, so `additionalProperties` cannot close the
        // object; `unevaluatedProperties` does, across the kind/body alternatives.
        root.insert("unevaluatedProperties".into(), false.into());
    }
    schema
}
