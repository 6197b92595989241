//! The WOPI host operations, one function each, on a request already authorised by its token.
//! HTTP details (headers in, status codes out) stay in `http::wopi`.

pub mod activities;
pub mod containers;
pub mod ecosystem;
pub mod file_url;
pub mod names;
pub mod share_url;
pub mod time;

use bytes::Bytes;
use chrono::Utc;
use futures_util::{Stream, StreamExt};
use serde::Serialize;

use crate::auth::UserExtra;
use crate::config::HostPageConfig;
use crate::discovery::action_url::encode_component;
use crate::locks::{LockOp, LockOutcome, MAX_LOCK_ID};
use crate::policy::{ClientControls, Freshness, Level, PolicyError, Principal, Rights, Scope};
use crate::proof::{self, ProofCheck, ProofHeaders};
use crate::state::AppState;
use crate::store::{ids, ByteStream, Entry, FileGuard, FileKey, FileMeta, Precondition, Staged, StoreError};
use crate::token::{AccessClaims, Action, Grant, Resource, TokenError};
use crate::uri::RelPath;
use crate::users;
use crate::versions;

pub use time::wopi_time;

#[derive(Debug, thiserror::Error)]
pub enum WopiError {
    #[error("access token rejected: {0}")]
    Unauthorized(String),
    #[error("file not found")]
    NotFound,
    #[error("lock mismatch")]
    LockConflict { current: String, reason: &'static str },
    #[error("{0}")]
    Conflict(&'static str),
    /// The bootstrapper's 401: `challenge` is its `WWW-Authenticate` value.
    #[error("sign in first: {reason}")]
    SignInRequired { reason: String, challenge: String },
    #[error("invalid container name: {0}")]
    InvalidContainerName(String),
    #[error("a file with that name exists")]
    TargetExists { valid: Option<String> },
    #[error("the document changed since the client loaded it: it sent {sent}, the store has {stored}")]
    DocumentChanged { sent: String, stored: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("invalid file name: {0}")]
    InvalidFileName(String),
    #[error("invalid relative target: {reason}")]
    InvalidTarget { reason: String, valid: Option<String> },
    #[error("file is larger than X-WOPI-MaxExpectedSize")]
    LargerThanExpected,
    #[error("upload exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("not implemented: {0}")]
    NotImplemented(String),
    #[error("proof check failed: {0}")]
    Proof(String),
    #[error("the upload did not arrive whole")]
    Interrupted,
    #[error("store failure: {0}")]
    Store(StoreError),
    #[error("could not issue an access token")]
    Token,
}

impl From<StoreError> for WopiError {
    fn from(e: StoreError) -> Self {
        match e {
            // Outside the user's files (a symlink leading elsewhere) or a symlink loop: as
            // good as not there, and said no differently.
            StoreError::NotFound | StoreError::Escape => WopiError::NotFound,
            StoreError::Io(e) if e.raw_os_error() == Some(libc::ELOOP) => WopiError::NotFound,
            StoreError::Io(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
                WopiError::InvalidFileName("the path is too long for the store".into())
            }
            StoreError::TooLarge(limit) => WopiError::TooLarge(limit),
            other => WopiError::Store(other),
        }
    }
}

/// An authorised request: the token's claims, the file they name, and what the session may do
/// with it now.
pub struct FileSession {
    pub token: String,
    pub claims: AccessClaims,
    pub key: FileKey,
    /// What the presenting user may reach now (ownership, the share's current manifest).
    scope: Scope,
    /// The token's action capped by policy over the store's current state.
    pub rights: Rights,
}

impl FileSession {
    fn can_write(&self) -> bool {
        self.rights.level == Level::Edit
    }

    fn require_write(&self) -> Result<(), WopiError> {
        if self.can_write() {
            Ok(())
        } else {
            Err(WopiError::Unauthorized("this access token does not allow changes".into()))
        }
    }
}

/// The user a token speaks for, and the share it came through.
fn principal(claims: &AccessClaims) -> Principal<'_> {
    Principal { user: (!claims.anon).then_some(claims.sub.as_str()), share: claims.shr.as_deref() }
}

/// The most a token allows by itself: a past version or a view token only reads.
fn token_level(claims: &AccessClaims) -> Level {
    if claims.act == Action::Edit && claims.ver.is_empty() {
        Level::Edit
    } else {
        Level::View
    }
}

/// What a token's user may do with `target` now (policy over the store's state), capped by
/// what the token itself allows; and the scope it was decided in.
async fn token_rights(app: &AppState, claims: &AccessClaims, target: &FileKey, fresh: Freshness) -> Result<(Scope, Rights), WopiError> {
    let scope = app.policy.scope(principal(claims), fresh, app.clock.now()).await.map_err(policy_error)?;
    let rights = scope.rights(target).capped(token_level(claims));
    Ok((scope, rights))
}

/// The URL a client called, as it signed it: public base + the raw path and query.
pub struct CalledUrl<'a> {
    pub path_and_query: &'a str,
}

/// What a request's path names: a file or a container by id, or (`None`) the ecosystem, which
/// takes a token of any kind (it speaks for the token's user; what they reach is re-derived).
pub type Addressed<'a> = Option<(Resource, &'a str)>;

/// Verifies the token (signature, expiry, audience), that it is for `target`, and the proof
/// headers when the token's viewer publishes proof keys.
pub async fn authorize(
    app: &AppState,
    target: Addressed<'_>,
    token: Option<&str>,
    called: &CalledUrl<'_>,
    proof: &ProofHeaders<'_>,
) -> Result<(String, AccessClaims), WopiError> {
    let rejected = |reason: &str, message: String| {
        app.metrics.token_rejected(reason);
        WopiError::Unauthorized(message)
    };
    let token = token.filter(|t| !t.is_empty()).ok_or_else(|| rejected("missing", "no access_token".into()))?;
    let claims = app.tokens.verify(token).map_err(|e| match e {
        TokenError::Expired => rejected("expired", e.to_string()),
        _ => rejected("invalid", e.to_string()),
    })?;
    if let Some((res, id)) = target {
        if claims.res != res || claims.fid != id {
            return Err(rejected("wrong_file", format!("the access token belongs to another {}", res.noun())));
        }
    }
    if let Err(e) = check_proof(app, &claims, token, called, proof).await {
        app.metrics.proof_failed();
        return Err(e);
    }
    Ok((token.to_string(), claims))
}

/// Resolves the file a token names (by id, so renames keep working) and what its session may
/// do now. `fresh`: whether a share manifest must be re-read (see `policy::Freshness`).
pub async fn open(app: &AppState, token: String, claims: AccessClaims, fresh: Freshness) -> Result<FileSession, WopiError> {
    let key = ids::resolve(app.store.as_ref(), &claims.fid).await?.ok_or(WopiError::NotFound)?;
    let (scope, rights) = token_rights(app, &claims, &key, fresh).await?;
    if rights.level == Level::None {
        return Err(WopiError::Unauthorized("this session no longer has access to the file (its share changed or is gone)".into()));
    }
    Ok(FileSession { token, claims, key, scope, rights })
}

async fn check_proof(
    app: &AppState,
    claims: &AccessClaims,
    token: &str,
    called: &CalledUrl<'_>,
    headers: &ProofHeaders<'_>,
) -> Result<(), WopiError> {
    let viewer = app
        .viewers
        .config(claims.vid)
        .ok_or_else(|| WopiError::Unauthorized("the token's viewer is no longer configured".into()))?;
    if !viewer.verify_proof {
        return Ok(());
    }
    let doc = app
        .viewers
        .discovery(viewer.id)
        .await
        .map_err(|e| WopiError::Proof(format!("cannot load proof keys: {e}")))?;
    let Some(keys) = doc.proof_key.clone() else {
        return Ok(());
    };
    let base = viewer.public_url.as_deref().unwrap_or(&app.config.public_url);
    let url = format!("{base}{}", called.path_and_query);
    let now = proof::ticks_from_unix_millis(app.clock.now().timestamp_millis());
    match proof::verify(&keys, token, &url, headers, now) {
        ProofCheck::Valid => Ok(()),
        ProofCheck::ValidRotating => {
            // Keys are rotating: pick up the new ones in the background.
            let viewers = app.viewers.clone();
            let id = viewer.id;
            tokio::spawn(async move {
                let _ = viewers.refresh(id).await;
            });
            Ok(())
        }
        ProofCheck::Invalid(reason) => {
            // The client may have rotated keys since we fetched discovery: refetch once.
            let fresh = app.viewers.refresh(viewer.id).await.ok().and_then(|d| d.proof_key.clone());
            match fresh {
                Some(fresh) if fresh != keys => match proof::verify(&fresh, token, &url, headers, now) {
                    ProofCheck::Valid | ProofCheck::ValidRotating => Ok(()),
                    ProofCheck::Invalid(reason) => Err(WopiError::Proof(reason.into())),
                },
                _ => Err(WopiError::Proof(reason.into())),
            }
        }
    }
}

/// The file at `key` (under the file's guard, where nothing can move it).
async fn stat_file(app: &AppState, key: &FileKey) -> Result<FileMeta, WopiError> {
    match app.store.stat(key).await? {
        Some(Entry::File(meta)) => Ok(meta),
        _ => Err(WopiError::NotFound),
    }
}

/// Where a session's file is now and its metadata. Reads take no guard, so a rename may be
/// under way (moved, its id not yet updated): then the read waits for the file's guard and looks
/// again, so it runs wholly before or after the rename and never fails because of one.
async fn current_meta(app: &AppState, s: &FileSession) -> Result<(FileKey, FileMeta), WopiError> {
    if let Some(Entry::File(meta)) = app.store.stat(&s.key).await? {
        return Ok((s.key.clone(), meta));
    }
    let (guard, key) = hold(app, &s.claims.fid).await?;
    let meta = stat_file(app, &key).await;
    guard.release().await;
    Ok((key, meta?))
}

/// The version the session reads (current, or the past one it was opened on), and where the
/// file is now.
async fn session_meta(app: &AppState, s: &FileSession) -> Result<(FileKey, FileMeta), WopiError> {
    let (key, meta) = current_meta(app, s).await?;
    if s.claims.ver.is_empty() {
        Ok((key, meta))
    } else {
        let past = app.store.stat_past_version(&s.claims.fid, &s.claims.ver).await?.ok_or(WopiError::NotFound)?;
        Ok((key, past))
    }
}

fn wopi_base<'a>(app: &'a AppState, claims: &AccessClaims) -> &'a str {
    app.viewers
        .config(claims.vid)
        .and_then(|v| v.public_url.as_deref())
        .unwrap_or(&app.config.public_url)
}

fn host_page(app: &AppState, file_id: &str, action: &str) -> String {
    app.config.host_page.url(file_id, action)
}

/// A platform page of the file (`WOPIGATE_VERSIONS_URL`, `WOPIGATE_SHARING_URL`).
fn platform_page(template: &Option<String>, file_id: &str) -> Option<String> {
    template.as_deref().map(|t| HostPageConfig::fill(t, file_id, ""))
}

/// CheckFileInfo's answer: exact WOPI property names; absent values are left out, never null.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FileInfo<'a> {
    base_file_name: &'a str,
    owner_id: &'a str,
    size: u64,
    version: &'a str,
    last_modified_time: String,
    file_extension: &'a str,
    file_name_max_length: usize,
    breadcrumb_doc_name: &'a str,
    user_id: &'a str,
    user_friendly_name: &'a str,
    is_anonymous_user: bool,
    /// No licensing by wopigate: said explicitly, as containers say it (clients compare).
    is_edu_user: bool,
    license_check_for_edit_is_enabled: bool,
    user_can_write: bool,
    read_only: bool,
    user_can_rename: bool,
    user_can_not_write_relative: bool,
    supports_update: bool,
    supports_locks: bool,
    supports_get_lock: bool,
    supports_extended_lock_length: bool,
    supports_rename: bool,
    supports_delete_file: bool,
    supports_user_info: bool,
    supports_get_file_wopi_src: bool,
    supports_containers: bool,
    supports_ecosystem: bool,
    supports_add_activities: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_extra_info: Option<&'a UserExtra>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_info: Option<String>,
    post_message_origin: &'a str,
    host_view_url: String,
    host_edit_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    close_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_version_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_sharing_url: Option<String>,
    /// Signed, short-lived download link (`file_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    file_url: Option<String>,
    supported_share_url_types: Vec<&'static str>,
    /// wopigate's own host page answers these messages; a platform's page may not.
    close_post_message: bool,
    file_version_post_message: bool,
    file_sharing_post_message: bool,
    #[serde(flatten)]
    controls: ControlProperties,
}

/// A share's secure-view settings as the clients read them (Collabora's names, and the WOPI
/// ones Office and ONLYOFFICE honour); left out when not restricted.
#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ControlProperties {
    #[serde(skip_serializing_if = "Option::is_none")]
    watermark_text: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_export: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    hide_export_option: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_print: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    hide_print_option: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_copy: bool,
    /// WOPI's (Excel, ONLYOFFICE): copying stays inside the document.
    #[serde(skip_serializing_if = "Option::is_none")]
    copy_paste_restrictions: Option<&'static str>,
}

impl ControlProperties {
    fn of(controls: &ClientControls, user: &str, today: chrono::NaiveDate) -> ControlProperties {
        ControlProperties {
            watermark_text: controls.watermark_text(user, today),
            disable_export: !controls.download,
            hide_export_option: !controls.download,
            disable_print: !controls.print,
            hide_print_option: !controls.print,
            disable_copy: !controls.copy,
            copy_paste_restrictions: (!controls.copy).then_some("CurrentDocumentOnly"),
        }
    }
}

/// CheckFileInfo (serialized to JSON bytes).
pub async fn check_file_info(app: &AppState, s: &FileSession) -> Result<Vec<u8>, WopiError> {
    let (key, meta) = session_meta(app, s).await?;
    let name = key.path.file_name().unwrap_or_default();
    let writable = s.can_write();
    let may_create = writable && relative_folder(app, s).await?.is_some();
    // Kept for signed-in users only; the profile only when the token says there is one.
    let (user_info, profile) = match (s.claims.anon, s.claims.profile) {
        (true, _) => (None, None),
        (false, false) => (users::user_info(app.store.as_ref(), &s.claims.sub).await?, None),
        (false, true) => {
            let (info, profile) = futures_util::future::join(
                users::user_info(app.store.as_ref(), &s.claims.sub),
                users::profile(app.store.as_ref(), &s.claims.sub),
            )
            .await;
            (info?, profile?)
        }
    };
    let page = &app.config.host_page;
    let info = FileInfo {
        base_file_name: name,
        owner_id: &key.owner,
        size: meta.size,
        version: &meta.version,
        last_modified_time: wopi_time(meta.modified),
        file_extension: names::split(name).1,
        file_name_max_length: names::MAX_STEM_CHARS,
        breadcrumb_doc_name: name,
        user_id: &s.claims.sub,
        user_friendly_name: profile.as_ref().map_or(&s.claims.name, |p| &p.name),
        is_anonymous_user: s.claims.anon,
        is_edu_user: false,
        license_check_for_edit_is_enabled: false,
        user_can_write: writable,
        read_only: !writable,
        user_can_rename: may_rename(s, &key),
        user_can_not_write_relative: !may_create,
        supports_update: true,
        supports_locks: true,
        supports_get_lock: true,
        supports_extended_lock_length: true,
        supports_rename: true,
        supports_delete_file: true,
        supports_user_info: !s.claims.anon,
        supports_get_file_wopi_src: true,
        supports_containers: app.config.containers,
        supports_ecosystem: true,
        // Kept for signed-in users only (see `activities`).
        supports_add_activities: !s.claims.anon,
        user_extra_info: profile.as_ref().map(|p| &p.extra).filter(|e| **e != UserExtra::default()),
        user_info,
        post_message_origin: app
            .viewers
            .config(s.claims.vid)
            .and_then(|v| v.post_message_origin.as_deref())
            .unwrap_or(&page.origin),
        host_view_url: host_page(app, &s.claims.fid, "view"),
        host_edit_url: host_page(app, &s.claims.fid, "edit"),
        close_url: page.close_url.as_deref(),
        file_version_url: platform_page(&page.versions_url, &s.claims.fid),
        file_sharing_url: platform_page(&page.sharing_url, &s.claims.fid),
        file_url: file_url::mint(app, &s.claims)?,
        supported_share_url_types: share_url::supported_types(&s.scope, &s.claims, &key),
        close_post_message: page.own,
        file_version_post_message: page.own && page.versions_url.is_some(),
        file_sharing_post_message: page.own && page.sharing_url.is_some(),
        controls: ControlProperties::of(&s.rights.controls, &s.claims.name, app.clock.now().date_naive()),
    };
    serde_json::to_vec(&info).map_err(|e| WopiError::Store(StoreError::Io(std::io::Error::other(e))))
}

/// A byte range `[start, end]` from a `Range: bytes=…` header; `None` = the whole file.
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, WopiError> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    // Several ranges: serve the whole file (allowed by RFC 9110).
    if spec.contains(',') {
        return Ok(None);
    }
    let unsatisfiable = WopiError::RangeNotSatisfiable { size };
    let (first, last) = spec.split_once('-').ok_or(WopiError::RangeNotSatisfiable { size })?;
    let (start, end) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| WopiError::RangeNotSatisfiable { size })?;
            if n == 0 || size == 0 {
                return Err(unsatisfiable);
            }
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().map_err(|_| WopiError::RangeNotSatisfiable { size })?, size.saturating_sub(1)),
        (a, b) => {
            let a: u64 = a.parse().map_err(|_| WopiError::RangeNotSatisfiable { size })?;
            let b: u64 = b.parse().map_err(|_| WopiError::RangeNotSatisfiable { size })?;
            (a, b.min(size.saturating_sub(1)))
        }
    };
    if start >= size || start > end {
        return Err(unsatisfiable);
    }
    Ok(Some((start, end)))
}

pub struct FileContent {
    pub meta: FileMeta,
    pub range: Option<(u64, u64)>,
    pub stream: ByteStream,
}

/// GetFile.
pub async fn get_file(
    app: &AppState,
    s: &FileSession,
    max_expected: Option<&str>,
    range: Option<&str>,
) -> Result<FileContent, WopiError> {
    let (mut key, meta) = session_meta(app, s).await?;
    // Absent: the largest 32-bit signed integer, as the WOPI docs say.
    let max: u64 = match max_expected {
        Some(v) => v.trim().parse().map_err(|_| WopiError::BadRequest("X-WOPI-MaxExpectedSize is not a number".into()))?,
        None => i32::MAX as u64,
    };
    if meta.size > max {
        return Err(WopiError::LargerThanExpected);
    }
    let range = parse_range(range, meta.size)?;
    let version = (!s.claims.ver.is_empty()).then_some(s.claims.ver.as_str());
    let download = match app.store.read(&key, &s.claims.fid, version, range).await? {
        Some(download) => download,
        None => {
            // Renamed between the stat and the open: read it where it went.
            key = current_meta(app, s).await?.0;
            app.store.read(&key, &s.claims.fid, version, range).await?.ok_or(WopiError::NotFound)?
        }
    };
    // The file may have changed between stat and open: the opened version is what counts.
    let range = match range {
        Some((start, end)) if end < download.meta.size => Some((start, end)),
        Some(_) => return Err(WopiError::RangeNotSatisfiable { size: download.meta.size }),
        None => None,
    };
    Ok(FileContent { meta: download.meta, range, stream: download.stream })
}

/// What PutFile received besides the body.
pub struct PutFileRequest<'a> {
    pub lock: Option<&'a str>,
    /// `X-COOL-WOPI-Timestamp` / `X-LOOL-WOPI-Timestamp`: the `LastModifiedTime` the client
    /// believes the file has; absent = save regardless.
    pub cool_timestamp: Option<&'a str>,
    pub save: SaveFlags,
    /// `X-COOL-WOPI-ExtendedData`: opaque, from the host page (`Action_Save`).
    pub extended_data: Option<&'a str>,
    pub content_length: Option<u64>,
}

pub use crate::versions::SaveFlags;

/// Commits a save by this session's user, now (see `versions` for what becomes a past version).
async fn commit_save(
    app: &AppState,
    claims: &AccessClaims,
    guard: &FileGuard,
    staged: &Staged,
    key: &FileKey,
    precondition: Precondition,
    flags: SaveFlags,
) -> Result<FileMeta, StoreError> {
    let save = versions::Save { user: &claims.sub, name: &claims.name, flags, at: app.clock.now(), operator: false };
    versions::commit(app.store.as_ref(), guard, staged, key, precondition, &save, versions::Retention::of(&app.config)).await
}

/// The WOPI rule for writing a file's content: locked → the lock must match; unlocked → only a
/// zero-byte file may be written.
async fn check_write_lock(app: &AppState, file_id: &str, lock: Option<&str>, size: u64) -> Result<(), WopiError> {
    let current = app.locks.current(file_id, app.clock.now()).await?;
    if is_being_deleted(&current) {
        return Err(WopiError::NotFound);
    }
    if current.is_empty() {
        if size == 0 {
            return Ok(());
        }
        return Err(WopiError::LockConflict { current, reason: "the file is not locked and not empty" });
    }
    if lock.is_some_and(|l| l.as_bytes() == current.as_bytes()) {
        Ok(())
    } else {
        Err(WopiError::LockConflict { current, reason: "the file is locked with another lock id" })
    }
}

/// Streams a request body into a staged upload; nothing is visible until committed.
async fn stage<S, E>(app: &AppState, body: S) -> Result<crate::store::Staged, WopiError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let limit = app.config.max_upload_size;
    let mut upload = app.store.begin_upload(limit).await?;
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let result = match chunk {
            Ok(bytes) => upload.write(bytes).await.map_err(WopiError::from),
            Err(e) => {
                tracing::info!(error = %e, "upload interrupted");
                Err(WopiError::Interrupted)
            }
        };
        if let Err(e) = result {
            upload.abort().await;
            return Err(e);
        }
    }
    Ok(upload.finish().await?)
}

/// PutFile.
pub async fn put_file<S, E>(app: &AppState, s: &FileSession, request: PutFileRequest<'_>, body: S) -> Result<FileMeta, WopiError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    s.require_write()?;
    let (_, meta) = current_meta(app, s).await?;
    check_write_lock(app, &s.claims.fid, request.lock, meta.size).await?;
    if let Some(stamp) = request.cool_timestamp.map(str::trim).filter(|t| !t.is_empty()) {
        let claimed =
            time::parse(stamp).ok_or_else(|| WopiError::BadRequest("X-COOL-WOPI-Timestamp is not an ISO 8601 time".into()))?;
        if !time::same_instant(claimed, meta.modified) {
            return Err(WopiError::DocumentChanged { sent: stamp.to_string(), stored: wopi_time(meta.modified) });
        }
    }
    if request.content_length.is_some_and(|n| n > app.config.max_upload_size) {
        return Err(WopiError::TooLarge(app.config.max_upload_size));
    }
    let staged = stage(app, body).await?;
    let result = async {
        // Under the file's guard, where the file is now (a rename may have moved it while the
        // body streamed in). The lock may have changed too; the content is written only if
        // nobody else wrote meanwhile (compare-and-set on the version read above).
        let (guard, key) = hold(app, &s.claims.fid).await?;
        still_editable(app, s, &key).await?;
        check_write_lock(app, &s.claims.fid, request.lock, meta.size).await?;
        let committed = commit_save(app, &s.claims, &guard, &staged, &key, Precondition::Version(meta.version), request.save).await;
        guard.release().await;
        match committed {
            Ok(meta) => Ok(meta),
            Err(StoreError::Conflict) => {
                let current = app.locks.current(&s.claims.fid, app.clock.now()).await?;
                Err(WopiError::LockConflict { current, reason: "the file changed while uploading" })
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    if result.is_err() {
        app.store.discard(staged).await;
    }
    result
}

/// The guard of a session's file and where the file is now: every change runs under it.
async fn hold(app: &AppState, file_id: &str) -> Result<(FileGuard, FileKey), WopiError> {
    ids::lock_id(app.store.as_ref(), file_id).await?.ok_or(WopiError::NotFound)
}

/// Lock, GetLock, RefreshLock, Unlock, UnlockAndRelock. Returns the outcome and the file's
/// current version (for `X-WOPI-ItemVersion`).
pub async fn lock(app: &AppState, s: &FileSession, op: LockOp<'_>) -> Result<(LockOutcome, String), WopiError> {
    let ids: Vec<&str> = match op {
        LockOp::Get => vec![],
        LockOp::Lock(id) | LockOp::Refresh(id) | LockOp::Unlock(id) => vec![id],
        LockOp::UnlockAndRelock { old, new } => vec![old, new],
    };
    for id in &ids {
        if id.is_empty() {
            return Err(WopiError::BadRequest("X-WOPI-Lock is missing or empty".into()));
        }
        if id.len() > MAX_LOCK_ID {
            return Err(WopiError::BadRequest(format!("lock ids are at most {MAX_LOCK_ID} bytes")));
        }
    }
    if op != LockOp::Get {
        s.require_write()?;
    }
    // Lock calls are atomic in the lock store and need no file guard: against a save or a
    // rename either order is a valid history, and a delete takes the lock itself (see `delete`).
    let (_, meta) = current_meta(app, s).await?;
    let outcome = app.locks.apply(&s.claims.fid, op, app.clock.now()).await?;
    if matches!(&outcome, LockOutcome::Conflict(current) | LockOutcome::Granted(current) if is_being_deleted(current)) {
        return Err(WopiError::NotFound);
    }
    Ok((outcome, meta.version))
}

/// The lock a DeleteFile holds while it deletes: the file is as good as gone.
const DELETING: &str = "wopigate-delete-";

fn is_being_deleted(lock: &str) -> bool {
    lock.starts_with(DELETING)
}

/// What PutRelativeFile received besides the body.
pub struct RelativeRequest<'a> {
    pub name: NameRequest<'a>,
    pub size: Option<&'a str>,
    /// `X-WOPI-FileConversion`: the client converted the file (the `convert` action) and sends
    /// the result. Created like any PutRelativeFile (a new file beside the original, or in the
    /// session's folder); logged as a conversion.
    pub conversion: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NewFile {
    pub name: String,
    pub url: String,
    /// The *source* file's time: Collabora takes it as the time of the document it saved from
    /// and echoes it on that document's next PutFile (Save As leaves the source as it was).
    pub last_modified_time: String,
    pub host_view_url: String,
    pub host_edit_url: String,
}

fn header_name(value: &str, header: &str) -> Result<String, WopiError> {
    crate::utf7::decode(value.trim()).ok_or_else(|| WopiError::BadRequest(format!("{header} is not valid UTF-7")))
}

/// The folder files created from a session go to (its `parent_uri`, else the file's own folder)
/// when the session's user may create files there now (edit rights, downloads allowed: a copy is
/// an export); `None` when not.
async fn relative_folder(app: &AppState, s: &FileSession) -> Result<Option<FileKey>, WopiError> {
    let folder = match &s.claims.pid {
        Some(id) => match ids::resolve(app.store.as_ref(), id).await? {
            Some(key) if app.store.stat(&key).await? == Some(Entry::Folder) => key,
            _ => return Ok(None),
        },
        None => FileKey { owner: s.key.owner.clone(), path: s.key.path.parent() },
    };
    Ok(s.scope.rights(&folder).may_create_copies().then_some(folder))
}

/// Whether the session may still edit `target` (a file to write), from the share as it is now:
/// an upload can take long, and the share may have been revoked or made read-only while its
/// body arrived.
async fn still_editable(app: &AppState, s: &FileSession, target: &FileKey) -> Result<(), WopiError> {
    still_allowed(app, s, target, |r| r.level == Level::Edit).await
}

/// `still_editable` for a folder to create a copy in (see `Rights::may_create_copies`).
async fn still_may_create(app: &AppState, s: &FileSession, folder: &FileKey) -> Result<(), WopiError> {
    still_allowed(app, s, folder, Rights::may_create_copies).await
}

async fn still_allowed(app: &AppState, s: &FileSession, target: &FileKey, allowed: fn(&Rights) -> bool) -> Result<(), WopiError> {
    if allowed(&token_rights(app, &s.claims, target, Freshness::Fresh).await?.1) {
        Ok(())
    } else {
        Err(WopiError::Unauthorized("this session may no longer change the file (its share changed or is gone)".into()))
    }
}

fn policy_error(e: PolicyError) -> WopiError {
    match e {
        PolicyError::Store(e) => e.into(),
        _ => WopiError::NotFound,
    }
}

/// PutRelativeFile.
pub async fn put_relative<S, E>(app: &AppState, s: &FileSession, request: RelativeRequest<'_>, body: S) -> Result<NewFile, WopiError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    // Decided before any name is looked at, so a session that may not create files learns
    // nothing about what exists (a single shared file, a read-only share).
    let folder = match s.can_write() {
        true => relative_folder(app, s).await?,
        false => None,
    };
    let Some(folder) = folder else {
        return Err(WopiError::NotImplemented("this session may not create files here (UserCanNotWriteRelative)".into()));
    };
    if let Some(size) = request.size.and_then(|v| v.trim().parse::<u64>().ok()) {
        if size > app.config.max_upload_size {
            return Err(WopiError::TooLarge(app.config.max_upload_size));
        }
    }
    let current_name = s.key.path.file_name().unwrap_or_default();
    let both = || WopiError::BadRequest("send X-WOPI-SuggestedTarget or X-WOPI-RelativeTarget, not both".into());
    let target = target_in(app, &s.scope, &folder, &request.name, names::split(current_name).0, both).await?;
    let source_time = wopi_time(current_meta(app, s).await?.1.modified);
    // The folder by id: it may be renamed (or deleted) while the body arrives.
    let folder_id = ids::file_id(app.store.as_ref(), &folder).await?;
    let staged = stage(app, body).await?;
    let created = save_into(app, s, &folder_id, &staged, target).await;
    if created.is_err() {
        app.store.discard(staged).await;
    }
    let (name, new_id, folder) = created?;
    if request.conversion {
        // The original stays as it was; the converted file is a new one beside it.
        tracing::info!(file_id = %s.claims.fid, converted_file_id = %new_id, target_ext = %names::split(&name).1, "file converted");
    }
    new_file(app, &s.claims, &s.scope, &folder, name, new_id, source_time)
}

/// Commits a Save As into the folder `folder_id` names now, under the folder's guard (as
/// CreateChildFile, DeleteContainer and RenameContainer take it), so the file lands in the
/// folder where it is, and never brings back one that was deleted or renamed meanwhile.
async fn save_into(
    app: &AppState,
    s: &FileSession,
    folder_id: &str,
    staged: &Staged,
    target: Target,
) -> Result<(String, String, FileKey), WopiError> {
    let (guard, folder) = hold(app, folder_id).await?;
    let saved = async {
        let is_folder = folder.path.is_root() || app.store.stat(&folder).await? == Some(Entry::Folder);
        if !is_folder {
            return Err(WopiError::NotFound);
        }
        still_may_create(app, s, &folder).await?;
        save_relative(app, &s.claims, &folder, staged, target).await
    }
    .await;
    guard.release().await;
    let (name, id) = saved?;
    Ok((name, id, folder))
}

/// How a new file's name is asked for (PutRelativeFile, CreateChildFile): exactly one of the
/// two targets, UTF-7 encoded.
pub struct NameRequest<'a> {
    pub suggested: Option<&'a str>,
    pub relative: Option<&'a str>,
    pub overwrite: Option<&'a str>,
}

/// Where a new file goes in `folder`, under WOPI's rules: a suggested name is adjusted until it
/// is legal and free (never 400 or 409; a bare extension is appended to `stem`); a relative one
/// is taken exactly, or refused (400 illegal, 409 taken or locked). `both`: the error when both
/// targets are sent (PutRelativeFile and CreateChildFile answer it differently).
async fn target_in(
    app: &AppState,
    scope: &Scope,
    folder: &FileKey,
    request: &NameRequest<'_>,
    stem: &str,
    both: impl FnOnce() -> WopiError,
) -> Result<Target, WopiError> {
    let overwrite = request.overwrite.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    match (request.suggested, request.relative) {
        (Some(_), Some(_)) => Err(both()),
        (None, None) => Err(WopiError::BadRequest("X-WOPI-SuggestedTarget or X-WOPI-RelativeTarget is required".into())),
        (Some(suggested), None) => {
            let suggested = header_name(suggested, "X-WOPI-SuggestedTarget")?;
            let wanted = if suggested.starts_with('.') { format!("{stem}{suggested}") } else { suggested };
            let legal = names::legalize(&wanted)
                .or_else(|| names::legalize(&format!("Untitled{}", names::split(&wanted).1)))
                .unwrap_or_else(|| "Untitled".into());
            Ok(Target::Suggested(legal))
        }
        (None, Some(relative)) => {
            let relative = header_name(relative, "X-WOPI-RelativeTarget")?;
            if let Err(e) = names::check(&relative) {
                let valid = match names::legalize(&relative) {
                    Some(legal) => Some(free_name(app, folder, &legal).await?),
                    None => None,
                };
                return Err(WopiError::InvalidTarget { reason: e.to_string(), valid });
            }
            let key = child(folder, &relative)?;
            fits(app, &key)?;
            match app.store.stat(&key).await? {
                Some(Entry::Folder) => Err(WopiError::TargetExists { valid: Some(free_name(app, folder, &relative).await?) }),
                Some(Entry::File(_)) if !overwrite => {
                    Err(WopiError::TargetExists { valid: Some(free_name(app, folder, &relative).await?) })
                }
                Some(Entry::File(_)) => {
                    if scope.rights(&key).level != Level::Edit {
                        return Err(WopiError::NotImplemented("this session may not overwrite that file".into()));
                    }
                    let held = app.locks.current(&ids::file_id(app.store.as_ref(), &key).await?, app.clock.now()).await?;
                    if !held.is_empty() {
                        return Err(WopiError::LockConflict { current: held, reason: "the target file is locked" });
                    }
                    Ok(Target::Replace(relative))
                }
                None => Ok(Target::Create(relative)),
            }
        }
    }
}

/// The answer for a file just created in `folder`: its URL with a token for it (what policy
/// grants there, capped by the presented token) and its host pages.
fn new_file(
    app: &AppState,
    claims: &AccessClaims,
    scope: &Scope,
    folder: &FileKey,
    name: String,
    id: String,
    source_time: String,
) -> Result<NewFile, WopiError> {
    let rights = scope.rights(&child(folder, &name)?).capped(token_level(claims));
    let (token, _) = mint_for(app, claims, Resource::File, id.clone(), rights.level)?;
    Ok(NewFile {
        url: format!("{}/wopi/files/{id}?access_token={}", wopi_base(app, claims), encode_component(&token)),
        host_view_url: host_page(app, &id, "view"),
        host_edit_url: host_page(app, &id, "edit"),
        last_modified_time: source_time,
        name,
    })
}

/// Where PutRelativeFile writes, once its checks passed.
enum Target {
    /// This name or the first free one after it.
    Suggested(String),
    /// Exactly this name, which must still be free.
    Create(String),
    /// Exactly this name, replacing the file there (kept as a past version).
    Replace(String),
}

/// Commits a staged upload into `folder` under the target's rules, each candidate name under
/// its file's guard; returns the name used and the new file's id.
async fn save_relative(
    app: &AppState,
    claims: &AccessClaims,
    folder: &FileKey,
    staged: &Staged,
    target: Target,
) -> Result<(String, String), WopiError> {
    let store = app.store.as_ref();
    let (names, precondition): (Vec<String>, Precondition) = match target {
        Target::Suggested(name) => (names::candidates(&name).collect(), Precondition::Absent),
        Target::Create(name) => (vec![name], Precondition::Absent),
        Target::Replace(name) => (vec![name], Precondition::Any),
    };
    let suggested = names.len() > 1;
    for name in names {
        let key = child(folder, &name)?;
        fits(app, &key)?;
        // Taken already: the next name (a create would be refused anyway).
        if suggested && store.stat(&key).await?.is_some() {
            continue;
        }
        let (guard, id) = ids::lock_path(store, &key).await?;
        if precondition == Precondition::Any {
            // Locked since the check above: the lock wins.
            let held = app.locks.current(&id, app.clock.now()).await?;
            if !held.is_empty() {
                return Err(WopiError::LockConflict { current: held, reason: "the target file is locked" });
            }
        }
        let committed = commit_save(app, claims, &guard, staged, &key, precondition.clone(), SaveFlags::default()).await;
        guard.release().await;
        match committed {
            Ok(_) => return Ok((name, id)),
            // Another request took the name first: suggested mode moves on to the next one.
            Err(StoreError::Conflict) if suggested => continue,
            Err(StoreError::Conflict) => {
                return Err(WopiError::TargetExists { valid: Some(free_name(app, folder, &name).await?) })
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(WopiError::TargetExists { valid: None })
}

fn child(folder: &FileKey, name: &str) -> Result<FileKey, WopiError> {
    let segment = RelPath::from_segments([name]).map_err(|e| WopiError::InvalidFileName(e.to_string()))?;
    let path = folder.path.join(&segment).map_err(|e| WopiError::InvalidFileName(e.to_string()))?;
    Ok(FileKey { owner: folder.owner.clone(), path })
}

/// `key` as a place to create or move something to: its path must fit the store (`Store::max_path_bytes`).
fn fits(app: &AppState, key: &FileKey) -> Result<(), WopiError> {
    if key.path.as_plain().len() <= app.store.max_path_bytes(&key.owner) {
        Ok(())
    } else {
        Err(WopiError::InvalidFileName("the path would be too long for the store".into()))
    }
}

/// The first of `name`, `name (1)`, … that is free in `folder`.
async fn free_name(app: &AppState, folder: &FileKey, name: &str) -> Result<String, WopiError> {
    for candidate in names::candidates(name) {
        if app.store.stat(&child(folder, &candidate)?).await?.is_none() {
            return Ok(candidate);
        }
    }
    Err(WopiError::TargetExists { valid: None })
}

/// A token for another file, minted from a presented one: same user, share and viewer, the
/// `level` policy grants (capped by the presented token), expiring no later than the presented
/// token (no token trading).
fn mint_for(app: &AppState, claims: &AccessClaims, res: Resource, fid: String, level: Level) -> Result<(String, AccessClaims), WopiError> {
    let act = match level {
        Level::Edit => Action::Edit,
        Level::View => Action::View,
        Level::None => return Err(WopiError::NotFound),
    };
    let grant = Grant {
        res,
        sid: claims.sid,
        sub: claims.sub.clone(),
        name: claims.name.clone(),
        anon: claims.anon,
        fid,
        ver: String::new(),
        act,
        vid: claims.vid,
        profile: claims.profile,
        shr: claims.shr.clone(),
        // The folder of a derived token is its own file's folder.
        pid: None,
    };
    // System time, as for every token (see session::create).
    app.tokens.mint(grant, Utc::now().timestamp(), Some(claims.exp)).map_err(|_| WopiError::Token)
}

fn may_rename(s: &FileSession, key: &FileKey) -> bool {
    s.can_write() && s.scope.rights(&FileKey { owner: key.owner.clone(), path: key.path.parent() }).level == Level::Edit
}

/// RenameFile's answer: the name used (without extension) and the file's time (Collabora reads
/// it after a rename).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Renamed {
    pub name: String,
    pub last_modified_time: String,
}

/// RenameFile: `requested` is the new name without extension (UTF-7).
pub async fn rename(app: &AppState, s: &FileSession, lock: Option<&str>, requested: Option<&str>) -> Result<Renamed, WopiError> {
    s.require_write()?;
    let requested = requested.ok_or_else(|| WopiError::BadRequest("X-WOPI-RequestedName is required".into()))?;
    let requested = header_name(requested, "X-WOPI-RequestedName")?;
    let stem = requested.trim();
    if stem.is_empty() {
        return Err(WopiError::InvalidFileName(names::NameError::Empty.to_string()));
    }
    // Renames of one user's files and folders take turns (see `hold_renames`), then the file's
    // guard, from where the file is now (another rename may have moved it).
    let renames = hold_renames(app, &s.key.owner).await?;
    let renamed = match hold(app, &s.claims.fid).await {
        Ok((guard, key)) => {
            let renamed = rename_held(app, s, &guard, &key, lock, stem).await;
            guard.release().await;
            renamed
        }
        Err(e) => Err(e),
    };
    renames.release().await;
    renamed
}

/// The guard that one user's renames (of files and of folders) take first, before any other:
/// a folder rename re-points the id of everything inside by its path, so a file inside must not
/// be halfway through its own rename then. Renames are rare; saves and locks never take it.
pub(crate) async fn hold_renames(app: &AppState, owner: &str) -> Result<FileGuard, WopiError> {
    let root = FileKey { owner: owner.to_string(), path: RelPath::root() };
    let store = app.store.as_ref();
    // The root's id record names a path that never moves; its guard is the user's rename turn.
    let id = ids::file_id(store, &root).await?;
    Ok(store.lock_file(&format!("{id}.renames")).await?)
}

async fn rename_held(app: &AppState, s: &FileSession, guard: &FileGuard, key: &FileKey, lock: Option<&str>, stem: &str) -> Result<Renamed, WopiError> {
    let key = key.clone();
    // A rename writes a name into the folder: it needs the right to create there, else taken
    // names would show (a single shared file's visitor would learn what its folder holds).
    if !may_rename(s, &key) {
        return Err(WopiError::Unauthorized("renaming needs the right to create files in the folder".into()));
    }
    let current = app.locks.current(&s.claims.fid, app.clock.now()).await?;
    if !current.is_empty() && lock.is_none_or(|l| l.as_bytes() != current.as_bytes()) {
        return Err(WopiError::LockConflict { current, reason: "the file is locked with another lock id" });
    }
    let old_name = key.path.file_name().unwrap_or_default();
    let ext = names::split(old_name).1;
    // Illegal characters are replaced rather than refused; only a name with nothing usable
    // left is a 400.
    let legal = names::legalize(&format!("{stem}{ext}"))
        .filter(|n| names::split(n).1 == ext)
        .ok_or_else(|| WopiError::InvalidFileName("the name has no usable characters".into()))?;
    // The time is read under the guard: once it is released another rename may move the file.
    let renamed = |name: &str, meta: FileMeta| Renamed { name: names::split(name).0.to_string(), last_modified_time: wopi_time(meta.modified) };
    if legal == old_name {
        return Ok(renamed(&legal, stat_file(app, &key).await?));
    }
    let folder = FileKey { owner: key.owner.clone(), path: key.path.parent() };
    for candidate in names::candidates(&legal) {
        let target = child(&folder, &candidate)?;
        fits(app, &target)?;
        match app.store.rename(guard, &key, &target).await {
            Ok(()) => {
                ids::moved(app.store.as_ref(), &s.claims.fid, &key, &target).await?;
                let meta = stat_file(app, &target).await?;
                return Ok(renamed(&candidate, meta));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(WopiError::InvalidFileName("no free name".into()))
}

/// DeleteFile: the owner's alone (visitors of an editable share edit, they do not delete).
pub async fn delete(app: &AppState, s: &FileSession) -> Result<(), WopiError> {
    s.require_write()?;
    if !s.rights.owner {
        return Err(WopiError::Unauthorized("only the file's owner may delete it".into()));
    }
    let (guard, key) = hold(app, &s.claims.fid).await?;
    // Taking the WOPI lock ourselves (atomically, only if unlocked) means no client can lock
    // the file between this check and the delete.
    let deleting = format!("{DELETING}{}", uuid::Uuid::new_v4().simple());
    if let LockOutcome::Conflict(current) = app.locks.apply(&s.claims.fid, LockOp::Lock(&deleting), app.clock.now()).await? {
        return Err(WopiError::LockConflict { current, reason: "the file is locked" });
    }
    let deleted = app.store.delete(&guard, &key).await;
    if deleted.is_err() {
        let _ = app.locks.apply(&s.claims.fid, LockOp::Unlock(&deleting), app.clock.now()).await;
    }
    deleted?;
    ids::forget(app.store.as_ref(), &s.claims.fid, &key).await?;
    app.locks.remove(&s.claims.fid).await?;
    guard.release().await;
    Ok(())
}

/// PutUserInfo: kept per signed-in user, returned as `UserInfo` by CheckFileInfo.
pub async fn put_user_info(app: &AppState, s: &FileSession, body: &[u8]) -> Result<(), WopiError> {
    if s.claims.anon {
        return Err(WopiError::NotImplemented("user info is kept for signed-in users only".into()));
    }
    if body.len() > 1024 {
        return Err(WopiError::BadRequest("UserInfo is at most 1024 bytes".into()));
    }
    let text = std::str::from_utf8(body).map_err(|_| WopiError::BadRequest("UserInfo must be text".into()))?;
    users::put_user_info(app.store.as_ref(), &s.claims.sub, text).await?;
    Ok(())
}

