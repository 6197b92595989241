//! File operations (`/wopi/files/{id}`): CheckFileInfo, GetFile, PutFile, the lock family,
//! PutRelativeFile, RenameFile, DeleteFile, PutUserInfo.

use super::new_files::*;
use super::*;

/// The file at `key` (under the file's guard, where nothing can move it).
pub(crate) async fn stat_file(app: &AppState, key: &FileKey) -> Result<FileMeta, WopiError> {
    match app.store.stat(key).await? {
        Some(Entry::File(meta)) => Ok(meta),
        _ => Err(WopiError::NotFound),
    }
}

/// Where a session's file is now and its metadata. Reads take no guard, so a rename may be
/// under way (moved, its id not yet updated): then the read waits for the file's guard and looks
/// again, so it runs wholly before or after the rename and never fails because of one.
pub(crate) async fn current_meta(app: &AppState, s: &FileSession) -> Result<(FileKey, FileMeta), WopiError> {
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
pub(crate) async fn session_meta(app: &AppState, s: &FileSession) -> Result<(FileKey, FileMeta), WopiError> {
    let (key, meta) = current_meta(app, s).await?;
    if s.claims.ver.is_empty() {
        Ok((key, meta))
    } else {
        let past = app.store.stat_past_version(&s.claims.fid, &s.claims.ver).await?.ok_or(WopiError::NotFound)?;
        Ok((key, past))
    }
}

/// A platform page of the file (`WOPIGATE_VERSIONS_URL`, `WOPIGATE_SHARING_URL`).
pub(crate) fn platform_page(template: &Option<String>, file_id: &str) -> Option<String> {
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
pub(crate) struct ControlProperties {
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
    // Sized for the answer (about 1.3 KB) so it is not grown five times on the way.
    let mut out = Vec::with_capacity(2048);
    serde_json::to_writer(&mut out, &info).map_err(|e| WopiError::Store(StoreError::Io(std::io::Error::other(e))))?;
    Ok(out)
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

/// The WOPI rule for writing a file's content: locked → the lock must match; unlocked → only a
/// zero-byte file may be written.
pub(crate) async fn check_write_lock(app: &AppState, file_id: &str, lock: Option<&str>, size: u64) -> Result<(), WopiError> {
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
pub(crate) async fn stage<S, E>(app: &AppState, body: S) -> Result<crate::store::Staged, WopiError>
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
pub(crate) const DELETING: &str = "wopigate-delete-";

pub(crate) fn is_being_deleted(lock: &str) -> bool {
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

/// The folder files created from a session go to (its `parent_uri`, else the file's own folder)
/// when the session's user may create files there now (edit rights, downloads allowed: a copy is
/// an export); `None` when not.
pub(crate) async fn relative_folder(app: &AppState, s: &FileSession) -> Result<Option<FileKey>, WopiError> {
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
pub(crate) async fn still_editable(app: &AppState, s: &FileSession, target: &FileKey) -> Result<(), WopiError> {
    still_allowed(app, s, target, |r| r.level == Level::Edit).await
}

/// `still_editable` for a folder to create a copy in (see `Rights::may_create_copies`).
pub(crate) async fn still_may_create(app: &AppState, s: &FileSession, folder: &FileKey) -> Result<(), WopiError> {
    still_allowed(app, s, folder, Rights::may_create_copies).await
}

pub(crate) async fn still_allowed(app: &AppState, s: &FileSession, target: &FileKey, allowed: fn(&Rights) -> bool) -> Result<(), WopiError> {
    if allowed(&token_rights(app, &s.claims, target, Freshness::Fresh).await?.1) {
        Ok(())
    } else {
        Err(WopiError::Unauthorized("this session may no longer change the file (its share changed or is gone)".into()))
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
pub(crate) async fn save_into(
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

pub(crate) fn may_rename(s: &FileSession, key: &FileKey) -> bool {
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

pub(crate) async fn rename_held(app: &AppState, s: &FileSession, guard: &FileGuard, key: &FileKey, lock: Option<&str>, stem: &str) -> Result<Renamed, WopiError> {
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
