//! Prometheus metrics (`GET /metrics`): requests by route, WOPI operation and status, latency,
//! bytes streamed, lock conflicts, token rejections, proof-key failures, discovery fetches and
//! whether each viewer's discovery is up,
//! share-password checks (Argon2 runs) and attempts refused by the rate limit, activity webhook
//! deliveries.

use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::state::AppState;

/// The WOPI operation a request turned out to be, set by the handler for the middleware.
#[derive(Clone, Copy)]
pub struct WopiOp(pub &'static str);

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
    lock_conflicts: IntCounterVec,
    token_rejections: IntCounterVec,
    proof_failures: IntCounter,
    discovery_fetches: IntCounterVec,
    discovery_up: IntGaugeVec,
    password_checks: IntCounterVec,
    password_refusals: IntCounter,
    activity_deliveries: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("wopigate_http_requests_total", "HTTP requests by route, WOPI operation and status"),
            &["route", "op", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("wopigate_http_request_duration_seconds", "Request latency by route and WOPI operation")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["route", "op"],
        )
        .expect("valid metric");
        let bytes_in = IntCounter::new("wopigate_bytes_in_total", "Bytes received in PutFile and PutRelativeFile bodies").expect("valid metric");
        let bytes_out = IntCounter::new("wopigate_bytes_out_total", "Bytes sent in GetFile bodies").expect("valid metric");
        let lock_conflicts = IntCounterVec::new(
            Opts::new("wopigate_lock_conflicts_total", "409 answers carrying X-WOPI-Lock, by WOPI operation"),
            &["op"],
        )
        .expect("valid metric");
        let token_rejections = IntCounterVec::new(
            Opts::new("wopigate_token_rejections_total", "Access tokens refused, by reason"),
            &["reason"],
        )
        .expect("valid metric");
        let proof_failures = IntCounter::new("wopigate_proof_failures_total", "Requests refused for a bad X-WOPI-Proof").expect("valid metric");
        let discovery_fetches = IntCounterVec::new(
            Opts::new("wopigate_discovery_fetches_total", "Discovery fetches by viewer and result"),
            &["viewer", "result"],
        )
        .expect("valid metric");
        let discovery_up = IntGaugeVec::new(
            Opts::new("wopigate_discovery_up", "1 when the viewer's last discovery fetch succeeded, 0 before or after a failure"),
            &["viewer"],
        )
        .expect("valid metric");
        let password_checks = IntCounterVec::new(
            Opts::new("wopigate_share_password_checks_total", "Share passwords checked with Argon2, by result"),
            &["result"],
        )
        .expect("valid metric");
        let password_refusals = IntCounter::new(
            "wopigate_share_password_refusals_total",
            "Share password attempts refused by the rate limit, without running Argon2",
        )
        .expect("valid metric");
        let activity_deliveries = IntCounterVec::new(
            Opts::new(
                "wopigate_activity_webhook_deliveries_total",
                "AddActivities webhook deliveries by result: delivered, retried (an attempt failed), failed (gave up), dropped (queue full)",
            ),
            &["result"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(bytes_in.clone()),
            Box::new(bytes_out.clone()),
            Box::new(lock_conflicts.clone()),
            Box::new(token_rejections.clone()),
            Box::new(proof_failures.clone()),
            Box::new(discovery_fetches.clone()),
            Box::new(discovery_up.clone()),
            Box::new(password_checks.clone()),
            Box::new(password_refusals.clone()),
            Box::new(activity_deliveries.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            lock_conflicts,
            token_rejections,
            proof_failures,
            discovery_fetches,
            discovery_up,
            password_checks,
            password_refusals,
            activity_deliveries,
        }
    }

    pub fn token_rejected(&self, reason: &str) {
        self.token_rejections.with_label_values(&[reason]).inc();
    }

    pub fn proof_failed(&self) {
        self.proof_failures.inc();
    }

    pub fn discovery_fetched(&self, viewer: &str, ok: bool) {
        self.discovery_fetches.with_label_values(&[viewer, if ok { "ok" } else { "error" }]).inc();
        self.discovery_up.with_label_values(&[viewer]).set(i64::from(ok));
    }

    /// A configured viewer whose discovery has not been fetched yet: down until it is.
    pub fn discovery_pending(&self, viewer: &str) {
        self.discovery_up.with_label_values(&[viewer]).set(0);
    }

    pub fn password_checked(&self, right: bool) {
        self.password_checks.with_label_values(&[if right { "right" } else { "wrong" }]).inc();
    }

    pub fn password_refused(&self) {
        self.password_refusals.inc();
    }

    /// `result`: `delivered`, `retried`, `failed` or `dropped`.
    pub fn activity_delivery(&self, result: &'static str) {
        self.activity_deliveries.with_label_values(&[result]).inc();
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding our own registry into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The route pattern a request matched (`"unmatched"` for none), as `track` found it.
#[derive(Clone)]
pub struct Route(pub String);

/// Middleware: counts and times every request once the response is known.
pub async fn track(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    // For the request's log line too: finding the pattern walks every route again.
    req.extensions_mut().insert(Route(route.clone()));
    let declared_in = req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let started = Instant::now();
    let response = next.call(req).await?;
    if let Some(state) = state {
        let m = &state.metrics;
        let op = response.request().extensions().get::<WopiOp>().map(|o| o.0).unwrap_or("");
        let status = response.status();
        m.requests.with_label_values(&[route.as_str(), op, status.as_str()]).inc();
        m.latency.with_label_values(&[route.as_str(), op]).observe(started.elapsed().as_secs_f64());
        if status.is_success() {
            if matches!(op, "PutFile" | "PutRelativeFile") {
                m.bytes_in.inc_by(declared_in.unwrap_or(0));
            }
            if op == "GetFile" {
                if let BodySize::Sized(n) = response.response().body().size() {
                    m.bytes_out.inc_by(n);
                }
            }
        }
        if status == actix_web::http::StatusCode::CONFLICT && response.headers().contains_key("x-wopi-lock") {
            m.lock_conflicts.with_label_values(&[op]).inc();
        }
    }
    Ok(response)
}

/// `GET /metrics`
pub async fn endpoint(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}
