//! WOPI endpoints (`/wopi/...`): read the token and WOPI headers, call one operation of
//! `crate::wopi`, and map its error to WOPI's status codes and headers in one place.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web::{self, Payload};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};
use serde_json::json;

use crate::locks::{LockOp, LockOutcome};
use crate::http::{note, read_limited, BodyError};
use crate::metrics::WopiOp;
use crate::policy::Freshness;
use crate::proof::ProofHeaders;
use crate::state::AppState;
use crate::store::StoreError;
use crate::token::AccessClaims;
use crate::wopi::{self, CalledUrl, FileSession, PutFileRequest, RelativeRequest, SaveFlags, WopiError};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/wopi")
            .wrap(actix_web::middleware::DefaultHeaders::new().add(("X-WOPI-ServerVersion", env!("CARGO_PKG_VERSION"))))
            .route("/files/{id}", web::get().to(check_file_info))
            .route("/files/{id}", web::post().to(file_operation))
            .route("/files/{id}/contents", web::get().to(get_file))
            .route("/files/{id}/contents", web::post().to(put_file))
            .route("/ecosystem", web::get().to(check_ecosystem))
            .route("/ecosystem", web::post().to(ecosystem_operation)),
    );
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Collabora sends `X-COOL-WOPI-*`, its older releases and ONLYOFFICE the legacy `X-LOOL-WOPI-*`.
fn cool_header<'a>(req: &'a HttpRequest, suffix: &str) -> Option<&'a str> {
    header(req, &format!("x-cool-wopi-{suffix}")).or_else(|| header(req, &format!("x-lool-wopi-{suffix}")))
}

/// Collabora's PutFile headers, from either family (`X-COOL-` wins where both are sent).
struct CoolHeaders<'a> {
    timestamp: Option<&'a str>,
    flags: SaveFlags,
    extended_data: Option<&'a str>,
}

impl<'a> CoolHeaders<'a> {
    fn parse(req: &'a HttpRequest) -> CoolHeaders<'a> {
        let flag = |suffix: &str| match cool_header(req, suffix).map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("true") => Some(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        };
        CoolHeaders {
            timestamp: cool_header(req, "timestamp"),
            flags: SaveFlags {
                modified_by_user: flag("ismodifiedbyuser"),
                autosave: flag("isautosave"),
                exit_save: flag("isexitsave"),
            },
            extended_data: cool_header(req, "extendeddata"),
        }
    }
}

/// The token: the `access_token` query parameter, else `Authorization: Bearer` (fallback).
fn access_token(req: &HttpRequest) -> Option<String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
        .or_else(|| {
            header(req, "authorization")
                .and_then(|h| h.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim().to_string())
        })
}

/// Names the operation and file in the request's log line and metrics (the session follows
/// once the token is verified).
fn record(req: &HttpRequest, op: &'static str, file_id: Option<&str>) {
    req.extensions_mut().insert(WopiOp(op));
    note(req, |log| {
        log.wopi_op = op;
        log.file_id = file_id.map(str::to_string);
    });
}

/// Token, file binding and proof for a request on `/wopi/files/{id}` (or the ecosystem).
async fn authorize(req: &HttpRequest, app: &AppState, file_id: Option<&str>) -> Result<(String, AccessClaims), WopiError> {
    let token = access_token(req);
    let called = CalledUrl { path_and_query: req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/") };
    let proof = ProofHeaders {
        timestamp: header(req, "x-wopi-timestamp"),
        proof: header(req, "x-wopi-proof"),
        proof_old: header(req, "x-wopi-proofold"),
    };
    let result = wopi::authorize(app, file_id, token.as_deref(), &called, &proof).await;
    if let Ok((_, claims)) = &result {
        note(req, |log| log.session_id = Some(claims.sid.to_string()));
    }
    result
}

/// `fresh`: GetFile may use a share manifest read a few seconds ago; every other call re-reads.
async fn file_session(req: &HttpRequest, app: &AppState, file_id: &str, fresh: Freshness) -> Result<FileSession, WopiError> {
    let (token, claims) = authorize(req, app, Some(file_id)).await?;
    wopi::open(app, token, claims, fresh).await
}

fn json_ok(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(body.to_string())
}

/// `GET /wopi/files/{id}`
async fn check_file_info(req: HttpRequest, app: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, WopiError> {
    record(&req, "CheckFileInfo", Some(&id));
    let session = file_session(&req, &app, &id, Freshness::Fresh).await?;
    let body = wopi::check_file_info(&app, &session).await?;
    Ok(HttpResponse::Ok().content_type("application/json").body(body))
}

/// `GET /wopi/files/{id}/contents`
async fn get_file(req: HttpRequest, app: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, WopiError> {
    record(&req, "GetFile", Some(&id));
    let session = file_session(&req, &app, &id, Freshness::Cached).await?;
    let content = wopi::get_file(&app, &session, header(&req, "x-wopi-maxexpectedsize"), header(&req, "range")).await?;
    let mut response = match content.range {
        Some((start, end)) => {
            let mut r = HttpResponse::PartialContent();
            r.insert_header((header::CONTENT_RANGE, format!("bytes {start}-{end}/{}", content.meta.size)));
            r
        }
        None => HttpResponse::Ok(),
    };
    let length = content.range.map(|(s, e)| e - s + 1).unwrap_or(content.meta.size);
    Ok(response
        .content_type("application/octet-stream")
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header(("X-WOPI-ItemVersion", content.meta.version))
        .no_chunking(length)
        .streaming(content.stream))
}

/// `POST /wopi/files/{id}/contents` with `X-WOPI-Override: PUT`
async fn put_file(req: HttpRequest, app: web::Data<AppState>, id: web::Path<String>, body: Payload) -> Result<HttpResponse, WopiError> {
    let override_ = header(&req, "x-wopi-override").unwrap_or_default();
    if !override_.eq_ignore_ascii_case("PUT") {
        record(&req, "Unknown", Some(&id));
        // The caller's value is not repeated: headers are theirs and may hold anything.
        return Err(WopiError::NotImplemented("an X-WOPI-Override other than PUT on /contents".into()));
    }
    record(&req, "PutFile", Some(&id));
    let cool = CoolHeaders::parse(&req);
    note(&req, |log| {
        log.save = cool.flags;
        log.cool_timestamp = cool.timestamp.map(|t| t.chars().take(64).collect());
    });
    let session = file_session(&req, &app, &id, Freshness::Fresh).await?;
    let request = PutFileRequest {
        lock: header(&req, "x-wopi-lock"),
        cool_timestamp: cool.timestamp,
        save: cool.flags,
        extended_data: cool.extended_data,
        content_length: header(&req, "content-length").and_then(|v| v.parse().ok()),
    };
    let meta = wopi::put_file(&app, &session, request, body).await.inspect_err(|e| {
        if let WopiError::DocumentChanged { stored, .. } = e {
            note(&req, |log| log.stored_timestamp = Some(stored.clone()));
        }
    })?;
    Ok(HttpResponse::Ok()
        .insert_header(("X-WOPI-ItemVersion", meta.version))
        .content_type("application/json")
        .body(json!({"LastModifiedTime": wopi::wopi_time(meta.modified)}).to_string()))
}

/// `POST /wopi/files/{id}`: the operation is chosen by `X-WOPI-Override`.
async fn file_operation(req: HttpRequest, app: web::Data<AppState>, id: web::Path<String>, body: Payload) -> Result<HttpResponse, WopiError> {
    let override_ = header(&req, "x-wopi-override").unwrap_or_default().trim().to_ascii_uppercase();
    let lock = header(&req, "x-wopi-lock").unwrap_or_default();
    let lock_op = match override_.as_str() {
        // Lock and UnlockAndRelock share an override; X-WOPI-OldLock tells them apart.
        "LOCK" => Some(match header(&req, "x-wopi-oldlock") {
            Some(old) => LockOp::UnlockAndRelock { old, new: lock },
            None => LockOp::Lock(lock),
        }),
        "GET_LOCK" => Some(LockOp::Get),
        "REFRESH_LOCK" => Some(LockOp::Refresh(lock)),
        "UNLOCK" => Some(LockOp::Unlock(lock)),
        _ => None,
    };
    if let Some(op) = lock_op {
        record(&req, op.name(), Some(&id));
        let session = file_session(&req, &app, &id, Freshness::Fresh).await?;
        let (outcome, version) = wopi::lock(&app, &session, op).await?;
        return match outcome {
            LockOutcome::Granted(current) => {
                let mut response = HttpResponse::Ok();
                if op == LockOp::Get {
                    response.insert_header(("X-WOPI-Lock", current));
                } else {
                    response.insert_header(("X-WOPI-ItemVersion", version));
                }
                Ok(response.finish())
            }
            LockOutcome::Conflict(current) => {
                Err(WopiError::LockConflict { current, reason: "the lock id does not match the file's lock" })
            }
        };
    }
    match override_.as_str() {
        "PUT_RELATIVE" => {
            record(&req, "PutRelativeFile", Some(&id));
            let session = file_session(&req, &app, &id, Freshness::Fresh).await?;
            let request = RelativeRequest {
                suggested: header(&req, "x-wopi-suggestedtarget"),
                relative: header(&req, "x-wopi-relativetarget"),
                overwrite: header(&req, "x-wopi-overwriterelativetarget"),
                size: header(&req, "x-wopi-size"),
                // Sent without a value by some clients: present and not "false" means a conversion.
                conversion: header(&req, "x-wopi-fileconversion").is_some_and(|v| !v.trim().eq_ignore_ascii_case("false")),
            };
            let created = wopi::put_relative(&app, &session, request, body).await?;
            Ok(json_ok(serde_json::to_value(created).unwrap_or_default()))
        }
        "RENAME_FILE" => {
            record(&req, "RenameFile", Some(&id));
            let session = file_session(&req, &app, &id, Freshness::Fresh).await?;
            let renamed = wopi::rename(&app, &session, header(&req, "x-wopi-lock"), header(&req, "x-wopi-requestedname")).await?;
            Ok(json_ok(serde_json::to_value(renamed).unwrap_or_default()))
        }
        "DELETE" => {
            record(&req, "DeleteFile", Some(&id));
            let session = file_session(&req, &app, &id, Freshness::Fresh).await?;
            wopi::delete(&app, &session).await?;
            Ok(HttpResponse::Ok().finish())
        }
        "PUT_USER_INFO" => {
            record(&req, "PutUserInfo", Some(&id));
            let session = file_session(&req, &app, &id, Freshness::Fresh).await?;
            let text = read_limited(&req, body, 4096).await.map_err(|e| match e {
                BodyError::TooLarge(limit) => WopiError::BadRequest(format!("body is larger than {limit} bytes")),
                BodyError::Interrupted => WopiError::Interrupted,
            })?;
            wopi::put_user_info(&app, &session, &text).await?;
            Ok(HttpResponse::Ok().finish())
        }
        _ => {
            record(&req, "Unknown", Some(&id));
            // Still authenticate: an unknown operation must not reveal more to a stranger.
            file_session(&req, &app, &id, Freshness::Fresh).await?;
            Err(WopiError::NotImplemented("this X-WOPI-Override on /wopi/files/{id}".into()))
        }
    }
}

/// `GET /wopi/ecosystem`: CheckEcosystem.
async fn check_ecosystem(req: HttpRequest, app: web::Data<AppState>) -> Result<HttpResponse, WopiError> {
    record(&req, "CheckEcosystem", None);
    authorize(&req, &app, None).await?;
    Ok(json_ok(wopi::check_ecosystem()))
}

/// `POST /wopi/ecosystem`: GetFileWopiSrc.
async fn ecosystem_operation(req: HttpRequest, app: web::Data<AppState>) -> Result<HttpResponse, WopiError> {
    let override_ = header(&req, "x-wopi-override").unwrap_or_default();
    if !override_.eq_ignore_ascii_case("GET_WOPI_SRC_WITH_ACCESS_TOKEN") {
        record(&req, "Unknown", None);
        authorize(&req, &app, None).await?;
        return Err(WopiError::NotImplemented("this X-WOPI-Override on /wopi/ecosystem".into()));
    }
    record(&req, "GetFileWopiSrc", None);
    let (_, claims) = authorize(&req, &app, None).await?;
    let url = wopi::get_file_wopi_src(&app, &claims, header(&req, "x-wopi-hostnativefilename")).await?;
    Ok(json_ok(json!({"Url": url})))
}

impl ResponseError for WopiError {
    fn status_code(&self) -> StatusCode {
        match self {
            WopiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WopiError::NotFound => StatusCode::NOT_FOUND,
            WopiError::LockConflict { .. } | WopiError::TargetExists { .. } | WopiError::DocumentChanged { .. } => StatusCode::CONFLICT,
            WopiError::BadRequest(_) | WopiError::InvalidFileName(_) | WopiError::InvalidTarget { .. } => StatusCode::BAD_REQUEST,
            WopiError::LargerThanExpected => StatusCode::PRECONDITION_FAILED,
            WopiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WopiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            WopiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            WopiError::Interrupted => StatusCode::BAD_REQUEST,
            WopiError::Store(StoreError::Escape) => StatusCode::NOT_FOUND,
            WopiError::Proof(_) | WopiError::Store(_) | WopiError::Token => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "WOPI request failed");
        } else {
            tracing::info!(status = status.as_u16(), error = %self, "WOPI request refused");
        }
        let mut response = HttpResponseBuilder::new(status);
        match self {
            WopiError::LockConflict { current, reason } => {
                // X-WOPI-Lock on every 409 for a lock, empty when there is none.
                response.insert_header(("X-WOPI-Lock", header_value(current)));
                response.insert_header(("X-WOPI-LockFailureReason", *reason));
            }
            WopiError::TargetExists { valid: Some(valid) } | WopiError::InvalidTarget { valid: Some(valid), .. } => {
                response.insert_header(("X-WOPI-ValidRelativeTarget", crate::utf7::encode(valid)));
            }
            WopiError::InvalidFileName(reason) => {
                response.insert_header(("X-WOPI-InvalidFileNameError", reason.as_str()));
            }
            WopiError::RangeNotSatisfiable { size } => {
                response.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
            }
            WopiError::DocumentChanged { .. } => {
                return response.content_type("application/json").body(r#"{"COOLStatusCode":1010}"#);
            }
            _ => {}
        }
        if status.is_server_error() {
            let detail = match self {
                WopiError::Proof(reason) => format!("proof check failed: {reason}"),
                _ => "internal error".to_string(),
            };
            response.insert_header(("X-WOPI-ServerError", detail));
        }
        response.content_type("text/plain; charset=utf-8").body(self.to_string())
    }
}

/// Lock ids are opaque; one that cannot travel in a header is reported as empty.
fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static(""))
}
