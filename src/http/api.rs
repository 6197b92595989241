//! Cloudreve-style API (`/api/v4/...`): every answer carries Cloudreve's envelope, `{"code": 0,
//! "data", "msg": ""}` on success and `{"code", "msg", "correlation_id"}` on failure (no `data`:
//! Cloudreve omits it when there is none). Failures are HTTP 200 except 429 for too many wrong
//! share passwords (so proxies and clients that honour `Retry-After` back off), 405 for a wrong
//! method on an endpoint (with `Allow`) and 404 for no endpoint at all; `correlation_id` is also
//! the `request_id` of the request's log line. [`ApiDoc`] is the OpenAPI document of this
//! surface, generated from the types below, so it says what the handlers do. The answers' types
//! deny unknown fields only for the document: it says an answer has these fields and no others
//! (`additionalProperties: false`).

use std::collections::BTreeMap;
use std::fmt;

use actix_web::http::{header, StatusCode};
use actix_web::web;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing_actix_web::RequestId;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::auth::AuthError;
use crate::http::client::client_address;
use crate::http::{note, read_limited, BodyError};
use crate::discovery::DiscoveryError;
use crate::passwords::{retry_after_secs, PasswordError};
use crate::policy::PolicyError;
use crate::session::{self, Device, SessionError, SessionRequest};
use crate::state::AppState;
use crate::token::Action;

/// Cloudreve's error codes used by this surface.
pub mod code {
    pub const LOGIN_REQUIRED: u32 = 401;
    pub const NOT_FOUND: u32 = 404;
    /// Not in Cloudreve's list either, by the same rule as 429.
    pub const METHOD_NOT_ALLOWED: u32 = 405;
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
    status: StatusCode,
    /// Seconds for `Retry-After`: set only on 429.
    retry_after: Option<u64>,
    /// The endpoint's methods, for `Allow`: set only on 405.
    allow: Option<&'static str>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.msg)
    }
}

impl ApiError {
    fn new(code: u32, msg: impl Into<String>, req: &HttpRequest) -> Self {
        let request_id = req.extensions().get::<RequestId>().map(|id| id.to_string()).unwrap_or_default();
        let error = ApiError {
            code,
            msg: msg.into(),
            correlation_id: request_id,
            status: StatusCode::OK,
            retry_after: None,
            allow: None,
        };
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
        match &error {
            E::Policy(PolicyError::Password(PasswordError::TooManyAttempts(wait))) => ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                retry_after: Some(retry_after_secs(*wait)),
                ..ApiError::new(code, msg, req)
            },
            _ => ApiError::new(code, msg, req),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, secs));
        }
        if let Some(methods) = self.allow {
            response.insert_header((header::ALLOW, methods));
        }
        response.json(Failure { code: self.code, msg: &self.msg, correlation_id: &self.correlation_id })
    }
}

/// Cloudreve's envelope of a successful answer.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Answer<T> {
    /// 0: success.
    #[schema(minimum = 0, maximum = 0)]
    code: u32,
    data: T,
    /// Empty on success.
    #[schema(max_length = 0)]
    msg: &'static str,
}

/// Cloudreve's envelope of a failure: no `data` (Cloudreve omits it when there is none).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Failure<'a> {
    /// Cloudreve's error code: 401, 404, 405, 429, 40001, 40016, 40069, 40077, 40082, 40083,
    /// 40088, 50004 or 50005 (see the README's table).
    #[schema(minimum = 1)]
    code: u32,
    /// What went wrong, naming the bad field; never repeats what the caller sent.
    #[schema(min_length = 1)]
    msg: &'a str,
    /// The `request_id` of the request's log line.
    #[schema(format = Uuid)]
    correlation_id: &'a str,
}

/// What `PUT /api/v4/file/viewerSession` answers with HTTP 200: a session, or a failure.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes the two answers; they are written as `Answer` and `Failure`
enum ViewerSessionReply<'a> {
    Session(Answer<ViewerSessionData>),
    Failure(Failure<'a>),
}

fn ok<T: Serialize>(data: T) -> HttpResponse {
    HttpResponse::Ok().json(Answer { code: 0, data, msg: "" })
}

/// A header's value. One that is there but not text (bytes past ASCII) is a wrong value, never
/// an absent one: an unreadable `Authorization` is refused (401), not taken for no caller at all.
fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

/// The largest request body of this API: a viewer session request with two URIs of the
/// longest kind fits many times over.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The `data` of a viewer session answer.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewerSessionData {
    session: SessionData,
    /// The action URL for the client's iframe (`WOPISrc` in it); the token is posted, never in it.
    wopi_src: String,
    /// An extension of Cloudreve's answer (its clients ignore it): wopigate's own host page,
    /// `<public url>/host#wopi_src=…&access_token=…&access_token_ttl=…`.
    host_url: String,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionData {
    id: Uuid,
    /// Posted to `wopi_src` as `access_token`.
    access_token: String,
    /// When the token expires, in milliseconds since the epoch (`access_token_ttl`).
    #[schema(example = 1749576616773_i64)]
    expires: i64,
    /// What the session got: `edit` only when everything allows it, else `view`.
    action: Action,
    /// The discovery action `wopi_src` opens (an extension of Cloudreve's answer).
    #[schema(example = "edit")]
    viewer_action: String,
}

/// Create a viewer session: an access token and the URL a WOPI client opens the file at.
///
/// Failures are HTTP 200 with a non-zero `code` (Cloudreve's convention), except too many
/// wrong share passwords (HTTP 429 with `Retry-After`). The body is read as JSON whatever its
/// `Content-Type` says, as Cloudreve does; at most 65536 bytes.
#[utoipa::path(
    put,
    path = "/api/v4/file/viewerSession",
    tag = "file",
    operation_id = "createViewerSession",
    request_body(content = SessionRequest, content_type = "application/json"),
    params(
        ("X-Cr-Purchase-Ticket" = Option<String>, Header, nullable = false, description = "A purchase ticket for a paid share."),
        ("X-Wopigate-Device" = Option<Device>, Header, nullable = false,
         description = "wopigate's own: the client's layout (default: the viewer's `mobile` setting)."),
    ),
    responses(
        (status = 200, description = "A session (`code` 0), or a failure with a non-zero `code`.", body = ViewerSessionReply),
        (status = 405, description = "Not with this method (code 405).", body = Failure,
         headers(("Allow" = String, description = "PUT"))),
        (status = 429, description = "Too many wrong share passwords (code 429).", body = Failure,
         headers(("Retry-After" = u64, description = "Seconds until the next attempt is counted."))),
    ),
    security((), ("caller_jwt" = [])),
)]
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
    Ok(ok(ViewerSessionData::from(session)))
}

/// The answer's `data` for a session (the `open` command prints the same).
impl From<session::ViewerSession> for ViewerSessionData {
    fn from(session: session::ViewerSession) -> Self {
        ViewerSessionData {
            session: SessionData {
                id: session.id,
                access_token: session.access_token,
                expires: session.expires_ms,
                action: session.action,
                viewer_action: session.viewer_action,
            },
            wopi_src: session.wopi_src,
            host_url: session.host_url,
        }
    }
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

/// Any other path under `/api/v4`: still the envelope (HTTP 404), never a bare status. The
/// path is not repeated (it is the caller's).
pub async fn unknown_endpoint(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let msg = format!("no such API endpoint under /api/v4/ (for {} or any method)", method_name(&req));
    Err(ApiError { status: StatusCode::NOT_FOUND, ..ApiError::new(code::NOT_FOUND, msg, &req) })
}

/// A wrong method on an endpoint of this API, whose methods are `allow`: HTTP 405 with `Allow`
/// and the envelope naming the method, the endpoint and what it takes.
pub fn wrong_method(
    allow: &'static str,
) -> impl Fn(HttpRequest) -> std::future::Ready<Result<HttpResponse, ApiError>> + Clone + 'static {
    move |req: HttpRequest| {
        let endpoint = req.match_pattern().unwrap_or_default();
        let msg = format!("{endpoint} does not take {}; use {allow}", method_name(&req));
        let error = ApiError::new(code::METHOD_NOT_ALLOWED, msg, &req);
        std::future::ready(Err(ApiError { status: StatusCode::METHOD_NOT_ALLOWED, allow: Some(allow), ..error }))
    }
}

/// The request's method, short enough to repeat (a method is a token, but of any length).
fn method_name(req: &HttpRequest) -> String {
    req.method().as_str().chars().take(32).collect()
}

/// `data.file_viewers` of the explorer settings: one group holding every configured viewer.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplorerConfig {
    file_viewers: Vec<ViewerGroup>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewerGroup {
    viewers: Vec<FileViewer>,
}

/// A configured viewer in Cloudreve's `file_viewers` shape.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileViewer {
    /// The `viewer_id` of a viewer session.
    id: Uuid,
    #[serde(rename = "type")]
    #[schema(pattern = "^wopi$", example = "wopi")]
    kind: &'static str,
    display_name: String,
    /// The extensions its discovery offers, after the viewer's allow-list.
    exts: Vec<String>,
    /// The configured icon, else the discovery's favicon; absent when neither is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    icon: Option<String>,
    /// Per extension, the templates a desktop view or edit session opens.
    wopi_actions: BTreeMap<String, ActionTemplates>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionTemplates {
    #[serde(skip_serializing_if = "Option::is_none")]
    view: Option<String>,
    /// For formats the client edits only by converting them, the `convert` action's.
    #[serde(skip_serializing_if = "Option::is_none")]
    edit: Option<String>,
}

/// Cloudreve's explorer settings, as far as file viewers go: the configured viewers.
#[utoipa::path(
    get,
    path = "/api/v4/site/config/explorer",
    tag = "site",
    operation_id = "getExplorerConfig",
    responses(
        (status = 200, description = "The configured viewers (`code` 0).", body = Answer<ExplorerConfig>),
        (status = 405, description = "Not with this method (code 405).", body = Failure,
         headers(("Allow" = String, description = "GET"))),
    ),
)]
pub async fn explorer_config(state: web::Data<AppState>) -> HttpResponse {
    let viewers = state
        .viewers
        .configs()
        .map(|viewer| {
            let offer = state.viewers.offer(viewer);
            let wopi_actions =
                offer.actions.into_iter().map(|(ext, view, edit)| (ext, ActionTemplates { view, edit })).collect();
            FileViewer {
                id: viewer.id,
                kind: "wopi",
                display_name: viewer.name.clone(),
                exts: offer.exts,
                icon: viewer.icon.clone().or(offer.icon),
                wopi_actions,
            }
        })
        .collect();
    ok(ExplorerConfig { file_viewers: vec![ViewerGroup { viewers }] })
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v4/openapi.json",
    tag = "meta",
    operation_id = "getOpenApi",
    responses(
        (status = 200, description = "The OpenAPI document of this API.", body = Object, content_type = "application/json"),
        (status = 405, description = "Not with this method (code 405).", body = Failure,
         headers(("Allow" = String, description = "GET"))),
    ),
)]
pub async fn openapi_endpoint() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(openapi_json())
}

/// The OpenAPI document of the platform API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "wopigate platform API",
        description = "Cloudreve's viewer session API as wopigate serves it (see the README, \"API for the platform\")."
    ),
    paths(viewer_session, explorer_config, openapi_endpoint),
    modifiers(&CallerJwt),
    tags(
        (name = "file", description = "Viewer sessions"),
        (name = "site", description = "Site settings"),
        (name = "meta", description = "This document"),
    ),
)]
pub struct ApiDoc;

/// The caller JWT (`Authorization: Bearer`), optional: none = anonymous.
struct CallerJwt;

impl utoipa::Modify for CallerJwt {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        scheme.description = Some(
            "The platform's JWT for the caller (`sub` = user id; `name`, `nick` or `preferred_username`; \
             optional `picture`, `email`). None = anonymous."
                .into(),
        );
        openapi.components.get_or_insert_with(Default::default).add_security_scheme("caller_jwt", SecurityScheme::Http(scheme));
    }
}

/// The document as served at `/api/v4/openapi.json` and committed as `docs/openapi.json`.
pub fn openapi_json() -> &'static str {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut text = ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises");
        text.push('\n');
        text
    })
}
