//! The API's contract: the committed OpenAPI document is what the code generates, and every
//! path it documents is served (and needs a token).

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt as _;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let generated = serde_json::to_string_pretty(&pollwatch_api::openapi::document()).expect("JSON") + "\n";
    let path = repo("schema/openapi.json");
    if std::env::var("POLLWATCH_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("writing schema/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).expect("schema/openapi.json");
    assert!(
        committed == generated,
        "schema/openapi.json differs from what the code generates; if the change is intended, run \
         `POLLWATCH_BLESS=1 cargo test -p pollwatch-api --test contract` and commit the result"
    );
}

#[tokio::test]
async fn every_documented_path_is_served_and_needs_a_token() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = pollwatch_store::Store::open(&format!("sqlite://{}", dir.path().join("store.db").display()))
        .await
        .expect("a store");
    let mission = pollwatch_model::sample::kg_2021();
    store.import_mission(&mission).await.expect("the mission imports");
    let router = pollwatch_api::router(pollwatch_api::Api::new(store, Arc::new(mission)));
    let document = pollwatch_api::openapi::document();
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 14, "{}", paths.len());
    for (path, operations) in paths {
        let concrete = path
            .replace("{contest}", "president")
            .replace("{report_id}", &uuid::Uuid::nil().to_string())
            .replace("{code}", &pollwatch_model::sample::kg_2021().stations[0].code);
        let method = operations.as_object().and_then(|o| o.keys().next()).expect("one method").to_uppercase();
        let request =
            Request::builder().method(method.as_str()).uri(&concrete).body(Body::empty()).expect("a request");
        let response = router.clone().oneshot(request).await.expect("an answer");
        let expected = if path == "/api/v1/openapi.json" { 200 } else { 401 };
        assert_eq!(response.status().as_u16(), expected, "{path}");
    }
    let request = Request::get("/api/v1/not-documented").body(Body::empty()).expect("a request");
    assert_eq!(router.oneshot(request).await.expect("an answer").status().as_u16(), 404);
}
