//! Cloudreve-style API (`/api/v4/...`): every answer carries the envelope `{"code", "data",
//! "msg"}`, with HTTP 200 except 429 for too many wrong share passwords (so proxies and clients
//! that honour `Retry-After` back off); failures carry a non-zero code and a `correlation_id`
//! that is also the `request_id` of the request's log line.

use std::collections::BTreeMap;
use std::fmt;

use actix_web::http::{header, StatusCode};
use actix_web::web;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use tracing_actix_web::RequestId;

use crate::auth::AuthError;
use crate::http::client::client_address;
use crate::http::{note, read_limited, BodyError};
use crate::discovery::DiscoveryError;
use crate::passwords::{retry_after_secs, PasswordError};
use crate::policy::PolicyError;
use crate::session::{self, SessionError, SessionRequest};
use crate::state::AppState;

/// Cloudreve's error codes used by this surface.
pub mod code {
    pub const LOGIN_REQUIRED: u32 = 401;
    pub const NOT_FOUND: u32 = 404;
    pub const INVALID_PARAMETERS: u32 = 40001;
    pub const PATH_NOT_FOUND: u32 = 40016;
    pub const WRONG_SHARE_PASSWORD: u32 = 40069;
    pub const VERSION_NOT_FOUND: u32 = 40077;
    pub const OWNER_ONLY: u32 = 40082;
    pub const PURCHASE_REQUIRED: u32 = 40083;
    pub const ANONYMOUS_DENIED: u32 = 40088;
    /// Not in Cloudreve's list: its short codes mirror HTTP statuses (401, 403, 404), so 429.
    pub const TOO_MANY_ATTEMPTS: u32 = 429;
    pub const STORE_FAILURE: u32 = 50004;
    pub const VIEWER_FAILURE: u32 = 50005;
}

/// A failed API call, rendered as Cloudreve's envelope.
#[derive(Debug)]
pub struct ApiError {
    code: u32,
    msg: String,
    correlation_id: String,
    /// Seconds for `Retry-After`: set only on 429.
    retry_after: Option<u64>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.msg)
    }
}

impl ApiError {
    fn new(code: u32, msg: impl Into<String>, req: &HttpRequest) -> Self {
        let request_id = req.extensions().get::<RequestId>().map(|id| id.to_string()).unwrap_or_default();
        let error = ApiError { code, msg: msg.into(), correlation_id: request_id, retry_after: None };
        note(req, |log| log.code = Some(code));
        if code >= 50000 {
            tracing::error!(code, msg = %error.msg, "request failed");
        } else {
            tracing::info!(code, msg = %error.msg, "request refused");
        }
        error
    }

    /// The one mapping from session failures to Cloudreve codes and messages.
    fn from_session(error: SessionError, req: &HttpRequest) -> Self {
        use SessionError as E;
        let code = match &error {
            E::Auth(AuthError::Malformed | AuthError::NotConfigured | AuthError::Expired | AuthError::Invalid(_)) => {
                code::LOGIN_REQUIRED
            }
            E::Uri { .. } | E::UnknownViewer(_) | E::NoExtension | E::BadParent(_) | E::BadDevice => {
                code::INVALID_PARAMETERS
            }
            E::Policy(p) => match p {
                PolicyError::LoginRequired => code::LOGIN_REQUIRED,
                PolicyError::OwnerOnly(_) => code::OWNER_ONLY,
                PolicyError::ShareNotFound => code::NOT_FOUND,
                PolicyError::WrongPassword => code::WRONG_SHARE_PASSWORD,
                PolicyError::AnonymousDenied => code::ANONYMOUS_DENIED,
                PolicyError::PurchaseRequired => code::PURCHASE_REQUIRED,
                PolicyError::Password(PasswordError::TooManyAttempts(_)) => code::TOO_MANY_ATTEMPTS,
                PolicyError::BadManifest(..) | PolicyError::Store(_) | PolicyError::Password(_) => code::STORE_FAILURE,
            },
            E::NotFound | E::IsFolder => code::PATH_NOT_FOUND,
            E::NoSuchVersion(_) => code::VERSION_NOT_FOUND,
            E::Discovery(DiscoveryError::UnknownViewer(_)) => code::INVALID_PARAMETERS,
            E::Discovery(DiscoveryError::NoAction { .. }) => code::INVALID_PARAMETERS,
            E::Discovery(DiscoveryError::Unavailable { .. }) => code::VIEWER_FAILURE,
            E::Store(_) | E::Token(_) => code::STORE_FAILURE,
        };
        // Internal failures keep their detail in the log, not in the answer.
        let msg = match &error {
            E::Store(_) | E::Policy(PolicyError::Store(_) | PolicyError::BadManifest(..)) => {
                "the file store failed; try again later".to_string()
            }
            E::Policy(PolicyError::Password(PasswordError::Counters(_) | PasswordError::Aborted)) => {
                "the share password could not be checked; try again later".to_string()
            }
            E::Token(_) => "could not issue an access token".to_string(),
            other => other.to_string(),
        };
        if msg != error.to_string() {
            tracing::error!(detail = %error, "internal failure");
        }
        let retry_after = match &error {
            E::Policy(PolicyError::Password(PasswordError::TooManyAttempts(wait))) => Some(retry_after_secs(*wait)),
            _ => None,
        };
        ApiError { retry_after, ..ApiError::new(code, msg, req) }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        if self.retry_after.is_some() {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::OK
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, secs));
        }
        response.json(json!({
            "code": self.code,
            "data": null,
            "msg": self.msg,
            "correlation_id": self.correlation_id,
        }))
    }
}

fn ok<T: Serialize>(data: T) -> HttpResponse {
    HttpResponse::Ok().json(json!({"code": 0, "data": data, "msg": ""}))
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The largest request body of this API: a viewer session request with two URIs of the
/// longest kind fits many times over.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// `PUT /api/v4/file/viewerSession`
pub async fn viewer_session(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let request: SessionRequest = json_body(&req, body).await?;
    let authorization = header(&req, "authorization");
    let ticket = header(&req, "x-cr-purchase-ticket");
    let device = header(&req, "x-wopigate-device");
    let client = client_address(&req, &state.config.trusted_proxies);
    let session = session::create(&state, authorization, ticket, device, client, request)
        .await
        .map_err(|e| ApiError::from_session(e, &req))?;
    note(&req, |log| log.session_id = Some(session.id.to_string()));
    Ok(ok(json!({
        "session": {
            "id": session.id,
            "access_token": session.access_token,
            "expires": session.expires_ms,
            "action": session.action,
            "viewer_action": session.viewer_action,
        },
        "wopi_src": session.wopi_src,
        // An extension of Cloudreve's answer (its clients ignore it): wopigate's own host page.
        "host_url": session.host_url,
    })))
}

/// Reads and parses a JSON request body; every way it can fail answers in the envelope. The
/// body is read as JSON whatever its `Content-Type` says, as Cloudreve's own API does (`curl -d`
/// labels JSON as a form).
async fn json_body<T: DeserializeOwned>(req: &HttpRequest, body: web::Payload) -> Result<T, ApiError> {
    let invalid = |msg: String| ApiError::new(code::INVALID_PARAMETERS, msg, req);
    let bytes = read_limited(req, body, MAX_BODY_BYTES).await.map_err(|e| match e {
        BodyError::TooLarge(limit) => invalid(format!("request body is larger than the limit of {limit} bytes")),
        BodyError::Interrupted => invalid("the request body did not arrive whole".into()),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("invalid request body: {}", body_error(&e))))
}

/// serde's message without the line/column noise of a one-line body. Its syntax errors are
/// fixed texts; its data errors also quote the caller's own values (``unknown variant `…` ``,
/// `invalid type: string "…"`), which may be anything, a share password included: those keep
/// only what they say about the schema (the kind of error and what was expected).
fn body_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let text = text.rfind(" at line ").map_or(text.as_str(), |i| &text[..i]);
    // Missing and duplicate fields are reported for the schema's own field names only.
    let names_a_field = text.starts_with("missing field") || text.starts_with("duplicate field");
    if e.classify() != serde_json::error::Category::Data || names_a_field {
        return text.to_string();
    }
    let kind = text.split([':', '`', '"', ',']).next().unwrap_or_default().trim();
    // The schema's part comes last: a caller's value containing ", expected " comes before it.
    let expected = text.rfind(", expected ").map_or("", |i| &text[i..]);
    format!("{kind}{expected}")
}

/// Any other path or method under `/api/v4`: still the envelope, never a bare status.
pub async fn unknown_endpoint(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(code::NOT_FOUND, "no such API endpoint (or not with this method)", &req))
}

/// `GET /api/v4/site/config/explorer`: the configured viewers in Cloudreve's `file_viewers` shape.
pub async fn explorer_config(state: web::Data<AppState>) -> HttpResponse {
    let viewers: Vec<_> = state
        .viewers
        .configs()
        .map(|viewer| {
            let offer = state.viewers.offer(viewer);
            let actions: BTreeMap<_, _> = offer
                .actions
                .into_iter()
                .map(|(ext, view, edit)| {
                    let mut map = BTreeMap::new();
                    if let Some(v) = view {
                        map.insert("view", v);
                    }
                    if let Some(e) = edit {
                        map.insert("edit", e);
                    }
                    (ext, map)
                })
                .collect();
            json!({
                "id": viewer.id,
                "type": "wopi",
                "display_name": viewer.name,
                "exts": offer.exts,
                "icon": viewer.icon.clone().or(offer.icon),
                "wopi_actions": actions,
            })
        })
        .collect();
    ok(json!({"file_viewers": [{"viewers": viewers}]}))
}
