//! actix-web wiring: routes of every surface, and the one log line per request.

pub mod api;
pub mod health;
pub mod wopi;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{web, HttpMessage};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v4")
            .route("/file/viewerSession", web::put().to(api::viewer_session))
            .route("/site/config/explorer", web::get().to(api::explorer_config)),
    )
    .configure(wopi::routes)
    .route("/metrics", web::get().to(crate::metrics::endpoint))
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz));
}

/// The request's log line: method, route, path (never the query string, which carries access
/// tokens), status, request id, the client's correlation id, and fields handlers fill in.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request.extensions().get::<RequestId>().map(|id| id.to_string()).unwrap_or_default();
        let correlation = request
            .headers()
            .get("x-wopi-correlationid")
            .or_else(|| request.headers().get("x-request-id"))
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(128).collect::<String>())
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            method = %request.method(),
            route = %request.match_pattern().unwrap_or_default(),
            path = %request.path(),
            request_id = %request_id,
            client_correlation_id = %correlation,
            status = tracing::field::Empty,
            code = tracing::field::Empty,
            wopi_op = tracing::field::Empty,
            file_id = tracing::field::Empty,
            session_id = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, actix_web::Error>) {
        let status = match outcome {
            Ok(response) => response.status().as_u16(),
            Err(error) => error.as_response_error().status_code().as_u16(),
        };
        span.record("status", status);
    }
}
