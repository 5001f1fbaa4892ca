//! The OpenAPI 3.1 description of the API, generated from the endpoint table and the answer
//! types' JSON Schemas (draft 2020-12, OpenAPI 3.1's dialect). `schema/openapi.json` is a
//! committed copy that a test keeps equal.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::problem::{PROBLEM_JSON, ProblemDetails};
use crate::routes::{Answer, ENDPOINTS, In, Method};

/// The API's version, as carried in `info.version`: it changes when the contract changes.
pub const API_VERSION: &str = "1.0.0";

/// The OpenAPI document.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12().for_serialize();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut generator = settings.into_generator();
    let problem = generator.subschema_for::<ProblemDetails>().to_value();
    let mut paths = Map::new();
    for endpoint in ENDPOINTS {
        let parameters: Vec<Value> = endpoint
            .params
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "in": match p.location {
                        In::Path => "path",
                        In::Query => "query",
                        In::Header => "header",
                    },
                    "required": p.required,
                    "description": p.description,
                    "schema": (p.schema)(),
                })
            })
            .collect();
        let ok = match &endpoint.answer {
            Answer::Json(schema) => json!({
                "description": "The answer",
                "content": {"application/json": {"schema": schema(&mut generator).to_value()}},
            }),
            Answer::Csv => json!({
                "description": "CSV with a header row, streamed",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }),
            Answer::Jsonl => json!({
                "description": "One JSON object per line, streamed",
                "content": {"application/jsonl": {"schema": {"type": "string"}}},
            }),
            Answer::Events(schema) => json!({
                "description": "An endless event stream; each event's `data:` is one JSON object of \
                                this schema, its `id:` the `seq` in it",
                "content": {"text/event-stream": {
                    "schema": {"type": "string"},
                    "x-event-data": schema(&mut generator).to_value(),
                }},
            }),
        };
        let problem_response = |description: &str| json!({"description": description, "content": {PROBLEM_JSON: {"schema": problem.clone()}}});
        let mut responses = Map::new();
        responses.insert("200".into(), ok);
        responses.insert("400".into(), problem_response("A parameter is unknown, repeated or malformed"));
        responses.insert("401".into(), problem_response("No token, or one that is not known"));
        if endpoint.may_be_missing || endpoint.params.iter().any(|p| p.name == "region") {
            responses.insert(
                "404".into(),
                problem_response("The mission has no such contest, region, station or report"),
            );
        }
        if endpoint.method == Method::Post {
            responses.insert(
                "400".into(),
                problem_response("A parameter or the body is unknown, repeated or malformed"),
            );
            responses.insert("403".into(), problem_response("The token may read but not review"));
            responses.insert("413".into(), problem_response("The body is larger than the endpoint takes"));
            responses.insert("415".into(), problem_response("The body is not application/json"));
        }
        if matches!(endpoint.operation_id, "review" | "version") {
            responses.insert(
                "409".into(),
                problem_response(
                    "The report is no longer in the state, at the revision or with the version in force the \
                     decision names",
                ),
            );
        }
        if endpoint.operation_id == "protocol" {
            responses.insert(
                "422".into(),
                problem_response("The report named cannot be counted at this station for this contest"),
            );
        }
        if endpoint.operation_id == "version" {
            responses.insert(
                "422".into(),
                problem_response(
                    "The version named is not one of the revision's, or cannot count for the report (another \
                     observer or kind, or turned away by the mission as it stands)",
                ),
            );
        }
        responses.insert("500".into(), problem_response("The store holds something it cannot read"));
        responses.insert("503".into(), problem_response("The store does not answer"));
        let mut operation = json!({
            "operationId": endpoint.operation_id,
            "summary": endpoint.summary,
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(body) = endpoint.body {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": body(&mut generator).to_value()}},
            });
        }
        let method = match endpoint.method {
            Method::Get => "get",
            Method::Post => "post",
        };
        paths.insert(endpoint.path.into(), json!({ method: operation }));
    }
    paths.insert(
        "/api/v1/openapi.json".into(),
        json!({"get": {
            "operationId": "openapi",
            "summary": "This document (no token needed)",
            "security": [],
            "parameters": [],
            "responses": {"200": {
                "description": "The OpenAPI 3.1 description of the API",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }},
        }}),
    );
    let schemas = generator.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "pollwatch API",
            "version": API_VERSION,
            "description": "What an election observation mission's core team reads: coverage, observers, \
    findings, incidents, results, reports and what is held for review; and what its reviewers decide about \
    held reports and disputed stations, on a tamper-evident audit chain. Every timestamp is RFC 3339 in UTC; \
    every error is application/problem+json (RFC 9457).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "A token from `pollwatch token add NAME --role viewer` (reads) or `--role reviewer` (reads and decides)"}},
        },
    })
}
