//! actix-web wiring: routes of every surface, and the one log line per request.

pub mod api;
pub mod client;
pub mod health;
pub mod host;
pub mod wopi;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{web, HttpMessage};
use futures_util::StreamExt;
use std::time::Instant;

use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};

/// Every route; `/metrics` too unless it has its own listener (`WOPIGATE_METRICS_BIND`).
pub fn routes(cfg: &mut web::ServiceConfig, with_metrics: bool) {
    cfg.service(
        web::scope("/api/v4")
            .service(api_endpoint("/file/viewerSession", "PUT", web::put().to(api::viewer_session)))
            .service(api_endpoint("/site/config/explorer", "GET", web::get().to(api::explorer_config)))
            .service(api_endpoint("/openapi.json", "GET", web::get().to(api::openapi_endpoint)))
            .default_service(web::to(api::unknown_endpoint)),
    )
    .configure(wopi::routes)
    .configure(host::routes)
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz));
    if with_metrics {
        metrics_route(cfg);
    }
}

/// `GET /metrics`.
pub fn metrics_route(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(crate::metrics::endpoint));
}

/// An endpoint of the platform API (`/api/v4` + `path`) taking `method` alone: any other
/// method answers 405 in the envelope.
fn api_endpoint(path: &'static str, method: &'static str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path).route(route).default_service(web::to(api::wrong_method(method)))
}

/// What a handler learnt about its request, for the request's log line: written into the
/// request's extensions (cheap), read once when the response is known.
#[derive(Default, Clone)]
pub struct RequestLog {
    pub wopi_op: &'static str,
    pub file_id: Option<String>,
    pub session_id: Option<String>,
    pub code: Option<u32>,
    /// PutFile: Collabora's flags and the timestamp it sent; on a 1010 also the stored one.
    pub save: crate::wopi::SaveFlags,
    pub cool_timestamp: Option<String>,
    pub stored_timestamp: Option<String>,
}

/// Adds to the request's log line.
pub fn note(req: &actix_web::HttpRequest, f: impl FnOnce(&mut RequestLog)) {
    let mut extensions = req.extensions_mut();
    if extensions.get::<RequestLog>().is_none() {
        extensions.insert(RequestLog::default());
    }
    if let Some(log) = extensions.get_mut::<RequestLog>() {
        f(log);
    }
}

/// Why a small request body could not be read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge(usize),
    Interrupted,
}

/// Reads a small body into memory, refusing more than `limit` bytes (at once when the
/// `Content-Length` says so, before anything is read).
pub async fn read_limited(req: &actix_web::HttpRequest, mut body: web::Payload, limit: usize) -> Result<Vec<u8>, BodyError> {
    let declared = req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| BodyError::Interrupted)?;
        if out.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[derive(Clone, Copy)]
struct Started(Instant);

/// The request's log line: one event when the response is known, with method, route, path
/// (never the query string, which carries access tokens), status, duration, request id, the
/// client's correlation id and what the handler noted. The span holds only the request id, so
/// lines logged inside the request carry it too.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request.extensions().get::<RequestId>().map(|id| id.to_string()).unwrap_or_default();
        request.extensions_mut().insert(Started(Instant::now()));
        tracing::info_span!("request", request_id = request_id.as_str())
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, actix_web::Error>) {
        let response = match outcome {
            Ok(response) => response,
            Err(error) => {
                let status = error.as_response_error().status_code().as_u16();
                tracing::info!(parent: &span, status, "request");
                return;
            }
        };
        let request = response.request();
        let extensions = request.extensions();
        let log = extensions.get::<RequestLog>().cloned().unwrap_or_default();
        let millis = extensions.get::<Started>().map(|s| s.0.elapsed().as_secs_f64() * 1000.0).unwrap_or_default();
        let request_id = extensions.get::<RequestId>().map(|id| id.to_string()).unwrap_or_default();
        let correlation = request
            .headers()
            .get("x-wopi-correlationid")
            .or_else(|| request.headers().get("x-request-id"))
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(128).collect::<String>())
            .unwrap_or_default();
        tracing::info!(
            parent: &span,
            // As strings, not `%Display`: each Display field would be formatted into a String
            // of its own first.
            method = request.method().as_str(),
            route = extensions.get::<crate::metrics::Route>().map(|r| r.0.as_str()).unwrap_or_default(),
            path = request.path(),
            status = response.status().as_u16(),
            duration_ms = millis,
            request_id = request_id.as_str(),
            client_correlation_id = correlation.as_str(),
            wopi_op = log.wopi_op,
            file_id = log.file_id.as_deref().unwrap_or_default(),
            session_id = log.session_id.as_deref().unwrap_or_default(),
            code = log.code.unwrap_or_default(),
            // Left out of the line when absent.
            is_modified_by_user = log.save.modified_by_user,
            is_autosave = log.save.autosave,
            is_exit_save = log.save.exit_save,
            cool_timestamp = log.cool_timestamp.as_deref(),
            stored_timestamp = log.stored_timestamp.as_deref(),
            "request"
        );
    }
}
