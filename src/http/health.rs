//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when the store and the lock backend answer and every viewer's discovery has loaded.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (store, locks) = futures_util::join!(state.store.ping(), state.locks.ping());
    let (store, locks) = (store.is_ok(), locks.is_ok());
    let discovery = state.viewers.all_loaded();
    let body = json!({"store": store, "locks": locks, "discovery": discovery});
    if store && locks && discovery {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
