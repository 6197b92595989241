//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when the store and the lock backend answer. Each viewer's discovery is reported in
/// the body (and as `wopigate_discovery_up`) but does not decide: one WOPI client being away
/// must not take every replica out of service, since documents already open must still save.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (store, locks) = futures_util::join!(state.store.ping(), state.locks.ping());
    let (store, locks) = (store.is_ok(), locks.is_ok());
    let discovery: serde_json::Map<String, serde_json::Value> =
        state.viewers.status().into_iter().map(|s| (s.viewer.clone(), json!(s))).collect();
    let body = json!({"store": store, "locks": locks, "discovery": discovery});
    if store && locks {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
