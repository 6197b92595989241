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
use crate::token::{AccessClaims, Resource};
use crate::auth::Caller;
use crate::wopi::containers::{self, ContainerSession};
use crate::wopi::ecosystem::{self, EcosystemOperation};
use crate::wopi::{self, CalledUrl, FileSession, NameRequest, PutFileRequest, RelativeRequest, SaveFlags, WopiError};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/wopi")
            .wrap(actix_web::middleware::DefaultHeaders::new().add(("X-WOPI-ServerVersion", env!("CARGO_PKG_VERSION"))))
            .route("/files/{id}", web::get().to(check_file_info))
            .route("/files/{id}", web::post().to(file_operation))
            .route("/files/{id}/contents", web::get().to(get_file))
            .route("/files/{id}/contents", web::post().to(put_file))
            .route("/files/{id}/ancestry", web::get().to(enumerate_file_ancestors))
            .route("/files/{id}/ecosystem_pointer", web::get().to(file_ecosystem_pointer))
            .route("/containers/{id}", web::get().to(check_container_info))
            .route("/containers/{id}", web::post().to(container_operation))
            .route("/containers/{id}/ancestry", web::get().to(enumerate_container_ancestors))
            .route("/containers/{id}/children", web::get().to(enumerate_children))
            .route("/containers/{id}/ecosystem_pointer", web::get().to(container_ecosystem_pointer))
            .route("/files/{id}/download", web::get().to(file_url_download))
            .route("/ecosystem", web::get().to(check_ecosystem))
            .route("/ecosystem", web::post().to(ecosystem_operation))
            .route("/ecosystem/root_container_pointer", web::get().to(root_container_pointer)),
    );
    cfg.service(
        web::resource("/wopibootstrapper")
            .wrap(actix_web::middleware::DefaultHeaders::new().add(("X-WOPI-ServerVersion", env!("CARGO_PKG_VERSION"))))
            .route(web::get().to(bootstrap))
            .route(web::post().to(bootstrap_operation)),
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
    query_parameter(req.query_string(), "access_token")
        .or_else(|| {
            header(req, "authorization")
                .and_then(|h| h.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim().to_string())
        })
}

/// The first value of `name` in a query string, decoded as `application/x-www-form-urlencoded`
/// says. Only names that may be it and the value found are decoded: every WOPI call carries its
/// token here, and decoding every pair of the query was a tenth of a CheckFileInfo.
fn query_parameter(query: &str, name: &str) -> Option<String> {
    let decode = |raw: &str| -> String {
        if raw.contains(['%', '+']) {
            percent_encoding::percent_decode_str(&raw.replace('+', " ")).decode_utf8_lossy().into_owned()
        } else {
            raw.to_string()
        }
    };
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let matches = if key.contains(['%', '+']) { decode(key) == name } else { key == name };
        matches.then(|| decode(value))
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
async fn authorize(req: &HttpRequest, app: &AppState, target: wopi::Addressed<'_>) -> Result<(String, AccessClaims), WopiError> {
    let token = access_token(req);
    let called = CalledUrl { path_and_query: req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/") };
    let proof = ProofHeaders {
        timestamp: header(req, "x-wopi-timestamp"),
        proof: header(req, "x-wopi-proof"),
        proof_old: header(req, "x-wopi-proofold"),
    };
    let result = wopi::authorize(app, target, token.as_deref(), &called, &proof).await;
    if let Ok((_, claims)) = &result {
        note(req, |log| log.session_id = Some(claims.sid.to_string()));
    }
    result
}

/// `fresh`: GetFile may use a share manifest read a few seconds ago; every other call re-reads.
async fn file_session(req: &HttpRequest, app: &AppState, file_id: &str, fresh: Freshness) -> Result<FileSession, WopiError> {
    let (token, claims) = authorize(req, app, Some((Resource::File, file_id))).await?;
    wopi::open(app, token, claims, fresh).await
}

/// The name headers of PutRelativeFile and CreateChildFile.
fn name_request(req: &HttpRequest) -> NameRequest<'_> {
    NameRequest {
        suggested: header(req, "x-wopi-suggestedtarget"),
        relative: header(req, "x-wopi-relativetarget"),
        overwrite: header(req, "x-wopi-overwriterelativetarget"),
    }
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
    send_file(&req, &app, &session).await
}

/// `GET /wopi/files/{id}/download?grant=…`: a `FileUrl` link, served as GetFile.
async fn file_url_download(req: HttpRequest, app: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, WopiError> {
    record(&req, "GetFromFileUrl", Some(&id));
    let grant = query_parameter(req.query_string(), wopi::file_url::PARAMETER);
    let session = wopi::file_url::open_link(&app, &id, grant.as_deref()).await?;
    note(&req, |log| log.session_id = Some(session.claims.sid.to_string()));
    send_file(&req, &app, &session).await
}

/// The session's content (a `Range` of it), streamed.
async fn send_file(req: &HttpRequest, app: &AppState, session: &FileSession) -> Result<HttpResponse, WopiError> {
    let content = wopi::get_file(app, session, header(req, "x-wopi-maxexpectedsize"), header(req, "range")).await?;
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

/// `X-WOPI-Override` on `POST /wopi/files/{id}` (with `X-WOPI-OldLock` telling Lock and
/// UnlockAndRelock apart, as they share `LOCK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileOverride<'a> {
    Lock(LockOp<'a>),
    PutRelativeFile,
    RenameFile,
    DeleteFile,
    GetShareUrl,
    PutUserInfo,
    AddActivities,
}

impl<'a> FileOverride<'a> {
    fn parse(req: &'a HttpRequest) -> Option<FileOverride<'a>> {
        let lock = header(req, "x-wopi-lock").unwrap_or_default();
        Some(match header(req, "x-wopi-override")?.trim().to_ascii_uppercase().as_str() {
            "LOCK" => FileOverride::Lock(match header(req, "x-wopi-oldlock") {
                Some(old) => LockOp::UnlockAndRelock { old, new: lock },
                None => LockOp::Lock(lock),
            }),
            "GET_LOCK" => FileOverride::Lock(LockOp::Get),
            "REFRESH_LOCK" => FileOverride::Lock(LockOp::Refresh(lock)),
            "UNLOCK" => FileOverride::Lock(LockOp::Unlock(lock)),
            "PUT_RELATIVE" => FileOverride::PutRelativeFile,
            "RENAME_FILE" => FileOverride::RenameFile,
            "DELETE" => FileOverride::DeleteFile,
            "GET_SHARE_URL" => FileOverride::GetShareUrl,
            "PUT_USER_INFO" => FileOverride::PutUserInfo,
            "ADD_ACTIVITIES" => FileOverride::AddActivities,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            FileOverride::Lock(op) => op.name(),
            FileOverride::PutRelativeFile => "PutRelativeFile",
            FileOverride::RenameFile => "RenameFile",
            FileOverride::DeleteFile => "DeleteFile",
            FileOverride::GetShareUrl => "GetShareUrl",
            FileOverride::PutUserInfo => "PutUserInfo",
            FileOverride::AddActivities => "AddActivities",
        }
    }
}

/// A small body read whole, or the WOPI error for one too large (`too_large`) or cut short.
async fn small_body(req: &HttpRequest, body: Payload, limit: usize, too_large: fn(usize) -> WopiError) -> Result<Vec<u8>, WopiError> {
    read_limited(req, body, limit).await.map_err(|e| match e {
        BodyError::TooLarge(limit) => too_large(limit),
        BodyError::Interrupted => WopiError::Interrupted,
    })
}

/// `POST /wopi/files/{id}`: the operation is chosen by `X-WOPI-Override`.
async fn file_operation(req: HttpRequest, app: web::Data<AppState>, id: web::Path<String>, body: Payload) -> Result<HttpResponse, WopiError> {
    let op = FileOverride::parse(&req);
    record(&req, op.map_or("Unknown", FileOverride::name), Some(&id));
    // Authenticated first: an unknown operation must not reveal more to a stranger.
    let session = file_session(&req, &app, &id, Freshness::Fresh).await?;
    let Some(op) = op else {
        return Err(WopiError::NotImplemented("this X-WOPI-Override on /wopi/files/{id}".into()));
    };
    match op {
        FileOverride::Lock(op) => match wopi::lock(&app, &session, op).await? {
            (LockOutcome::Granted(current), _) if op == LockOp::Get => Ok(HttpResponse::Ok().insert_header(("X-WOPI-Lock", current)).finish()),
            (LockOutcome::Granted(_), version) => Ok(HttpResponse::Ok().insert_header(("X-WOPI-ItemVersion", version)).finish()),
            (LockOutcome::Conflict(current), _) => {
                Err(WopiError::LockConflict { current, reason: "the lock id does not match the file's lock" })
            }
        },
        FileOverride::PutRelativeFile => {
            let request = RelativeRequest {
                name: name_request(&req),
                size: header(&req, "x-wopi-size"),
                // Sent without a value by some clients: present and not "false" means a conversion.
                conversion: header(&req, "x-wopi-fileconversion").is_some_and(|v| !v.trim().eq_ignore_ascii_case("false")),
            };
            Ok(to_json(&wopi::put_relative(&app, &session, request, body).await?))
        }
        FileOverride::RenameFile => {
            Ok(to_json(&wopi::rename(&app, &session, header(&req, "x-wopi-lock"), header(&req, "x-wopi-requestedname")).await?))
        }
        FileOverride::DeleteFile => {
            wopi::delete(&app, &session).await?;
            Ok(HttpResponse::Ok().finish())
        }
        FileOverride::GetShareUrl => {
            let url = wopi::share_url::file_share_url(&app, &session, header(&req, "x-wopi-urltype")).await?;
            Ok(json_ok(json!({"ShareUrl": url})))
        }
        FileOverride::PutUserInfo => {
            let text = small_body(&req, body, 4096, |limit| WopiError::BadRequest(format!("body is larger than {limit} bytes"))).await?;
            wopi::put_user_info(&app, &session, &text).await?;
            Ok(HttpResponse::Ok().finish())
        }
        FileOverride::AddActivities => {
            let text = small_body(&req, body, wopi::activities::MAX_BODY, |limit| WopiError::TooLarge(limit as u64)).await?;
            Ok(to_json(&wopi::activities::add(&app, &session, &text).await?))
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(body) => HttpResponse::Ok().content_type("application/json").body(body),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

/// `GET /wopi/files/{id}/ancestry`: EnumerateAncestors.
async fn enumerate_file_ancestors(req: HttpRequest, app: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, WopiError> {
    record(&req, "EnumerateAncestors", Some(&id));
    let session = file_session(&req, &app, &id, Freshness::Fresh).await?;
    containers_enabled(&app)?;
    Ok(to_json(&containers::enumerate_file_ancestors(&app, &session).await?))
}

/// `GET /wopi/files/{id}/ecosystem_pointer`: GetEcosystem.
async fn file_ecosystem_pointer(req: HttpRequest, app: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, WopiError> {
    record(&req, "GetEcosystem", Some(&id));
    let session = file_session(&req, &app, &id, Freshness::Fresh).await?;
    Ok(json_ok(ecosystem::ecosystem_pointer(&app, &session.claims)?))
}

fn containers_enabled(app: &AppState) -> Result<(), WopiError> {
    if app.config.containers {
        Ok(())
    } else {
        Err(WopiError::NotImplemented("containers are turned off (WOPIGATE_CONTAINERS=false)".into()))
    }
}

/// Token, container binding and proof for a request on `/wopi/containers/{id}`.
async fn container_session(req: &HttpRequest, app: &AppState, id: &str) -> Result<ContainerSession, WopiError> {
    let (_, claims) = authorize(req, app, Some((Resource::Container, id))).await?;
    containers_enabled(app)?;
    containers::open(app, claims).await
}

/// `GET /wopi/containers/{id}`: CheckContainerInfo.
async fn check_container_info(req: HttpRequest, app: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, WopiError> {
    record(&req, "CheckContainerInfo", Some(&id));
    let c = container_session(&req, &app, &id).await?;
    Ok(to_json(&containers::check_container_info(&c)))
}

/// `GET /wopi/containers/{id}/ancestry`: EnumerateAncestors.
async fn enumerate_container_ancestors(req: HttpRequest, app: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, WopiError> {
    record(&req, "EnumerateAncestors", Some(&id));
    let c = container_session(&req, &app, &id).await?;
    Ok(to_json(&containers::enumerate_ancestors(&app, &c).await?))
}

/// `GET /wopi/containers/{id}/children`: EnumerateChildren.
async fn enumerate_children(req: HttpRequest, app: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, WopiError> {
    record(&req, "EnumerateChildren", Some(&id));
    let c = container_session(&req, &app, &id).await?;
    Ok(to_json(&containers::enumerate_children(&app, &c, header(&req, "x-wopi-fileextensionfilterlist")).await?))
}

/// `GET /wopi/containers/{id}/ecosystem_pointer`: GetEcosystem.
async fn container_ecosystem_pointer(req: HttpRequest, app: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, WopiError> {
    record(&req, "GetEcosystem", Some(&id));
    let c = container_session(&req, &app, &id).await?;
    Ok(json_ok(ecosystem::ecosystem_pointer(&app, &c.claims)?))
}

/// `X-WOPI-Override` on `POST /wopi/containers/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContainerOverride {
    CreateChildContainer,
    CreateChildFile,
    DeleteContainer,
    RenameContainer,
    GetShareUrl,
}

impl ContainerOverride {
    fn parse(value: &str) -> Option<ContainerOverride> {
        match value.trim().to_ascii_uppercase().as_str() {
            "CREATE_CHILD_CONTAINER" => Some(ContainerOverride::CreateChildContainer),
            "CREATE_CHILD_FILE" => Some(ContainerOverride::CreateChildFile),
            "DELETE_CONTAINER" => Some(ContainerOverride::DeleteContainer),
            "RENAME_CONTAINER" => Some(ContainerOverride::RenameContainer),
            "GET_SHARE_URL" => Some(ContainerOverride::GetShareUrl),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ContainerOverride::CreateChildContainer => "CreateChildContainer",
            ContainerOverride::CreateChildFile => "CreateChildFile",
            ContainerOverride::DeleteContainer => "DeleteContainer",
            ContainerOverride::RenameContainer => "RenameContainer",
            ContainerOverride::GetShareUrl => "GetShareUrl",
        }
    }
}

/// `POST /wopi/containers/{id}`: the operation is chosen by `X-WOPI-Override`.
async fn container_operation(req: HttpRequest, app: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, WopiError> {
    let op = ContainerOverride::parse(header(&req, "x-wopi-override").unwrap_or_default());
    record(&req, op.map_or("Unknown", ContainerOverride::name), Some(&id));
    // Authenticated first: an unknown operation must not reveal more to a stranger.
    let c = container_session(&req, &app, &id).await?;
    let Some(op) = op else {
        return Err(WopiError::NotImplemented("this X-WOPI-Override on /wopi/containers/{id}".into()));
    };
    match op {
        ContainerOverride::CreateChildContainer => Ok(to_json(
            &containers::create_child_container(&app, &c, header(&req, "x-wopi-suggestedtarget"), header(&req, "x-wopi-relativetarget"))
                .await?,
        )),
        ContainerOverride::CreateChildFile => Ok(to_json(&containers::create_child_file(&app, &c, name_request(&req)).await?)),
        ContainerOverride::DeleteContainer => {
            containers::delete_container(&app, &c).await?;
            Ok(HttpResponse::Ok().finish())
        }
        ContainerOverride::RenameContainer => {
            Ok(to_json(&containers::rename_container(&app, &c, header(&req, "x-wopi-requestedname")).await?))
        }
        ContainerOverride::GetShareUrl => {
            Ok(json_ok(json!({"ShareUrl": containers::share_url(&app, &c, header(&req, "x-wopi-urltype")).await?})))
        }
    }
}

/// `GET /wopi/ecosystem`: CheckEcosystem.
async fn check_ecosystem(req: HttpRequest, app: web::Data<AppState>) -> Result<HttpResponse, WopiError> {
    record(&req, "CheckEcosystem", None);
    authorize(&req, &app, None).await?;
    Ok(json_ok(ecosystem::check_ecosystem(&app)))
}

/// `GET /wopi/ecosystem/root_container_pointer`: GetRootContainer.
async fn root_container_pointer(req: HttpRequest, app: web::Data<AppState>) -> Result<HttpResponse, WopiError> {
    record(&req, "GetRootContainer", None);
    let (_, claims) = authorize(&req, &app, None).await?;
    containers_enabled(&app)?;
    Ok(to_json(&ecosystem::root_container(&app, &claims).await?))
}

/// `POST /wopi/ecosystem`: GetFileWopiSrc.
async fn ecosystem_operation(req: HttpRequest, app: web::Data<AppState>) -> Result<HttpResponse, WopiError> {
    let override_ = header(&req, "x-wopi-override").unwrap_or_default();
    if !override_.trim().eq_ignore_ascii_case("GET_WOPI_SRC_WITH_ACCESS_TOKEN") {
        record(&req, "Unknown", None);
        authorize(&req, &app, None).await?;
        return Err(WopiError::NotImplemented("this X-WOPI-Override on /wopi/ecosystem".into()));
    }
    record(&req, "GetFileWopiSrc", None);
    let (_, claims) = authorize(&req, &app, None).await?;
    let url = ecosystem::get_file_wopi_src(&app, &claims, header(&req, "x-wopi-hostnativefilename")).await?;
    Ok(json_ok(json!({"Url": url})))
}

/// The platform's user behind a bootstrapper call: its caller JWT as the bearer token (docs
/// write `Bearer: <token>`, so the colon is allowed). Missing or bad: 401 with the challenge
/// that tells a native client where to sign in.
fn bootstrap_caller(req: &HttpRequest, app: &AppState) -> Result<Caller, WopiError> {
    let Some(config) = &app.config.bootstrapper else {
        return Err(WopiError::NotFound);
    };
    let challenge = || {
        let mut value = format!(
            "Bearer authorization_uri=\"{}\",tokenIssuance_uri=\"{}\"",
            config.authorization_url, config.token_url
        );
        if let Some(provider) = &config.provider_id {
            value.push_str(&format!(",providerId=\"{provider}\""));
        }
        value
    };
    let refuse = |reason: String| WopiError::SignInRequired { reason, challenge: challenge() };
    let header = header(req, "authorization").map(|h| match h.trim().get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer:") => format!("Bearer {}", h.trim()[7..].trim()),
        _ => h.to_string(),
    });
    let Some(header) = header else {
        return Err(refuse("no bearer token".into()));
    };
    match app.callers.verify(Some(&header)) {
        Ok(caller @ Caller::User { .. }) => Ok(caller),
        Ok(Caller::Anonymous) => Err(refuse("no bearer token".into())),
        Err(e) => Err(refuse(e.to_string())),
    }
}

/// `GET /wopibootstrapper`: Bootstrap.
async fn bootstrap(req: HttpRequest, app: web::Data<AppState>) -> Result<HttpResponse, WopiError> {
    record(&req, "Bootstrap", None);
    let caller = bootstrap_caller(&req, &app)?;
    let (bootstrap, _) = ecosystem::bootstrap(&app, &caller)?;
    Ok(to_json(&json!({"Bootstrap": bootstrap})))
}

/// `POST /wopibootstrapper` with `X-WOPI-EcosystemOperation`; without a known one, a plain
/// Bootstrap answer (clients then fall back to the ecosystem, as the spec allows).
async fn bootstrap_operation(req: HttpRequest, app: web::Data<AppState>) -> Result<HttpResponse, WopiError> {
    let op = header(&req, "x-wopi-ecosystemoperation").and_then(EcosystemOperation::parse);
    record(&req, if op.is_some() { "BootstrapOperation" } else { "Bootstrap" }, None);
    let caller = bootstrap_caller(&req, &app)?;
    let Some(op) = op else {
        let (bootstrap, _) = ecosystem::bootstrap(&app, &caller)?;
        return Ok(to_json(&json!({"Bootstrap": bootstrap})));
    };
    if op == EcosystemOperation::GetRootContainer {
        containers_enabled(&app)?;
    }
    let answer = ecosystem::bootstrap_operation(
        &app,
        &caller,
        op,
        header(&req, "x-wopi-wopisrc"),
        header(&req, "x-wopi-hostnativefilename"),
    )
    .await?;
    Ok(json_ok(answer))
}

impl ResponseError for WopiError {
    fn status_code(&self) -> StatusCode {
        match self {
            WopiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WopiError::NotFound => StatusCode::NOT_FOUND,
            WopiError::SignInRequired { .. } => StatusCode::UNAUTHORIZED,
            WopiError::LockConflict { .. } | WopiError::TargetExists { .. } | WopiError::DocumentChanged { .. } | WopiError::Conflict(_) => {
                StatusCode::CONFLICT
            }
            WopiError::BadRequest(_) | WopiError::InvalidFileName(_) | WopiError::InvalidTarget { .. } | WopiError::InvalidContainerName(_) => {
                StatusCode::BAD_REQUEST
            }
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
        // 501 is WOPI's "not supported here" (an override, a URL type): a refusal, not a failure.
        let failed = status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED;
        if failed {
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
            WopiError::InvalidContainerName(reason) => {
                response.insert_header(("X-WOPI-InvalidContainerNameError", reason.as_str()));
            }
            WopiError::SignInRequired { challenge, .. } => {
                response.insert_header((header::WWW_AUTHENTICATE, header_value(challenge)));
            }
            WopiError::RangeNotSatisfiable { size } => {
                response.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
            }
            WopiError::DocumentChanged { .. } => {
                return response.content_type("application/json").body(r#"{"COOLStatusCode":1010}"#);
            }
            _ => {}
        }
        if failed {
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

#[cfg(test)]
mod tests {
    use super::query_parameter;

    /// The same answer as decoding every pair (`form_urlencoded`), on what clients send.
    #[test]
    fn query_parameter_is_form_urlencoded_decoding() {
        for query in [
            "access_token=abc.def",
            "a=1&access_token=abc&access_token=second",
            "access_token=a%2Bb%20c+d&x=1",
            "access%5Ftoken=encoded-name",
            "access+token=spaced&access_token=real",
            "&&access_token=&x",
            "access_token",
            "x=1&y=2",
            "access_token=%E2%82%AC%zz",
            "",
        ] {
            let expected = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "access_token").map(|(_, v)| v.into_owned());
            assert_eq!(query_parameter(query, "access_token"), expected, "{query}");
        }
    }
}
