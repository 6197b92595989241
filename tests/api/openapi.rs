//! The platform API's OpenAPI document: generated from the handlers' types, served, committed.

use std::path::Path;

use serde_json::Value;

use crate::helpers::*;

/// `docs/openapi.json` is what the code generates. To regenerate it after changing the API:
/// `WOPIGATE_WRITE_OPENAPI=1 cargo test --test api openapi`.
#[test]
fn openapi_committed_document_is_current() {
    let generated = wopigate::http::api::openapi_json();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    if std::env::var_os("WOPIGATE_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the document the code generates; regenerate it with \
         `WOPIGATE_WRITE_OPENAPI=1 cargo test --test api openapi` and commit it"
    );
}

#[tokio::test]
async fn openapi_document_is_served() {
    let app = spawn_app().await;
    let response = app.client.get(format!("{}/api/v4/openapi.json", app.address)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let document: Value = response.json().await.unwrap();
    assert_eq!(document, serde_json::from_str::<Value>(wopigate::http::api::openapi_json()).unwrap());
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"), "{}", document["openapi"]);
    for path in ["/api/v4/file/viewerSession", "/api/v4/site/config/explorer", "/api/v4/openapi.json"] {
        assert!(document["paths"][path].is_object(), "{path} is described");
    }
    let request = &document["components"]["schemas"]["SessionRequest"];
    assert_eq!(request["properties"]["preferred_action"]["$ref"], "#/components/schemas/Action");
    assert_eq!(document["components"]["schemas"]["Action"]["enum"], serde_json::json!(["view", "edit"]));
}
