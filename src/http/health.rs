//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when the store answers and every viewer's discovery has loaded.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.ping().await.is_ok();
    let discovery = state.viewers.all_loaded();
    let body = json!({"store": store, "discovery": discovery});
    if store && discovery {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
