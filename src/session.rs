//! Viewer sessions: `PUT /api/v4/file/viewerSession` as one domain function.
//!
//! Who is calling → which file → which version and action → file id → action URL → token.

use std::net::IpAddr;

use serde::Deserialize;
use uuid::Uuid;

use crate::auth::{AuthError, Caller};
use crate::discovery::action_url::encode_component;
use crate::discovery::{DiscoveryError, Wanted};
use crate::passwords::PasswordCheck;
use crate::policy::{Level, PolicyError};
use crate::state::AppState;
use crate::store::{ids, Entry, FileKey, FileMeta, StoreError};
use crate::token::{Action, Grant, TokenError};
use crate::uri::{FileUri, UriError};
use crate::users;

/// The request body, exactly as Cloudreve's API names it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The file: `cloudreve://my/<path>`, `cloudreve://<user>@my/<path>` (the caller) or
    /// `cloudreve://<share id>[:<password>]@share/<path>`.
    #[schema(example = "cloudreve://my/Docs/report.docx")]
    pub uri: String,
    /// A past version (the WOPI `Version` it had); null or empty = the current one.
    #[serde(default)]
    pub version: Option<String>,
    /// A configured viewer (`WOPIGATE_VIEWERS`; listed by `GET /api/v4/site/config/explorer`).
    #[schema(example = "af01b85b-f57d-46d2-8ad6-1d9b96548e78")]
    pub viewer_id: Uuid,
    /// What the caller would like; the answer's `session.action` is what it got.
    pub preferred_action: Action,
    /// The folder where files created from the session go (Save As); same file system as `uri`.
    #[serde(default)]
    #[schema(example = "cloudreve://my/Docs")]
    pub parent_uri: Option<String>,
}

#[derive(Debug)]
pub struct ViewerSession {
    pub id: Uuid,
    pub access_token: String,
    pub expires_ms: i64,
    pub action: Action,
    /// The discovery action `wopi_src` opens (`view`, `view_comment`, `editnew`, `convert`, …).
    pub viewer_action: String,
    pub wopi_src: String,
    /// wopigate's own host page for this session, the session in its fragment (never sent to
    /// a server): `<public url>/host#wopi_src=…&access_token=…&access_token_ttl=…`.
    pub host_url: String,
}

/// The layout the platform asks for (`X-Wopigate-Device`, else the viewer's `mobile` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Device {
    Desktop,
    Mobile,
}

impl Device {
    /// The header's value; the caller's value is not repeated in the error.
    pub fn parse(header: Option<&str>) -> Result<Option<Device>, SessionError> {
        match header.map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("mobile") => Ok(Some(Device::Mobile)),
            Some(v) if v.eq_ignore_ascii_case("desktop") => Ok(Some(Device::Desktop)),
            Some(_) => Err(SessionError::BadDevice),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{field}: {source}")]
    Uri { field: &'static str, source: UriError },
    #[error("viewer_id: unknown viewer {0}")]
    UnknownViewer(Uuid),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("uri: file not found")]
    NotFound,
    #[error("uri: names a folder, not a file")]
    IsFolder,
    #[error("uri: the file name has no extension, so no viewer action can be chosen")]
    NoExtension,
    #[error("version: no such version of this file")]
    NoSuchVersion(String),
    #[error("parent_uri: {0}")]
    BadParent(String),
    #[error("X-Wopigate-Device: must be mobile or desktop")]
    BadDevice,
    #[error(transparent)]
    Discovery(DiscoveryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Creates a viewer session. `authorization`, `ticket` and `device` are the raw header values;
/// `client` is the caller's address (share password attempts are limited per address).
pub async fn create(
    app: &AppState,
    authorization: Option<&str>,
    ticket: Option<&str>,
    device: Option<&str>,
    client: Option<IpAddr>,
    request: SessionRequest,
) -> Result<ViewerSession, SessionError> {
    let caller = app.callers.verify(authorization)?;
    let uri = FileUri::parse(&request.uri).map_err(|source| SessionError::Uri { field: "uri", source })?;
    let viewer = app.viewers.config(request.viewer_id).ok_or(SessionError::UnknownViewer(request.viewer_id))?;
    let mobile = match Device::parse(device)? {
        Some(device) => device == Device::Mobile,
        None => viewer.mobile,
    };
    let now = app.clock.now();
    let store = app.store.as_ref();
    let passwords = app.passwords.for_client(client);

    let access = app.policy.open(&caller, &uri, ticket, None, now, &passwords).await?;
    if access.rights.level == Level::None {
        return Err(SessionError::NotFound);
    }
    let current = match store.stat(&access.key).await? {
        Some(Entry::File(meta)) => meta,
        Some(Entry::Folder) => return Err(SessionError::IsFolder),
        None => return Err(SessionError::NotFound),
    };
    let ext = access.key.path.extension().ok_or(SessionError::NoExtension)?;
    let file_id = ids::file_id(store, &access.key).await?;

    let requested = request.version.as_deref().map(str::trim).filter(|v| !v.is_empty());
    let (version, opened): (String, FileMeta) = match requested {
        None => (String::new(), current.clone()),
        Some(v) if v == current.version => (String::new(), current.clone()),
        Some(v) => match store.stat_past_version(&file_id, v).await {
            Ok(Some(meta)) => (v.to_string(), meta),
            Ok(None) | Err(StoreError::BadObjectName(_)) => return Err(SessionError::NoSuchVersion(v.to_string())),
            Err(e) => return Err(e.into()),
        },
    };

    let parent = match &request.parent_uri {
        Some(raw) if !raw.trim().is_empty() => Some(parent_folder(app, &caller, raw, ticket, access.share.as_deref(), &passwords).await?),
        _ => None,
    };
    // Where files created from the session go (PutRelativeFile decides the same way).
    let folder = match &parent {
        Some((_, key)) => key.clone(),
        None => FileKey { owner: access.key.owner.clone(), path: access.key.path.parent() },
    };

    let may_edit = access.rights.level == Level::Edit && version.is_empty() && opened.size <= app.config.edit_max_size;
    let action = if request.preferred_action == Action::Edit && may_edit { Action::Edit } else { Action::View };
    let wanted = Wanted {
        action,
        empty: opened.size == 0,
        mobile,
        // A conversion ends in PutRelativeFile: offered only where it can succeed.
        may_convert: access.scope.rights(&folder).may_create_copies(),
    };

    let session_id = Uuid::new_v4();
    let base = viewer.public_url.as_deref().unwrap_or(&app.config.public_url);
    let wopi_src = format!("{base}/wopi/files/{file_id}");
    let chosen = app
        .viewers
        .action_url(viewer, &ext, wanted, &wopi_src, &session_id.to_string())
        .await
        .map_err(SessionError::Discovery)?;
    if let Some(target) = &chosen.target_ext {
        tracing::info!(file_id = %file_id, target_ext = %target, "viewer session opens a conversion");
    }

    let (sub, name, anon, profile) = match &caller {
        Caller::User { id, name, extra } => {
            // What a token cannot carry is kept in the user's profile (see `users`).
            let profile = users::Profile { name: name.clone(), extra: extra.clone().unwrap_or_default() };
            let stored = profile.needs_storing();
            if stored {
                users::save_profile(store, id, &profile).await?;
            }
            (id.clone(), name.clone(), false, stored)
        }
        // Anonymous visitors still need a stable id within the session (co-author lists).
        Caller::Anonymous => (format!("anon{}", &session_id.simple().to_string()[..12]), "Guest".to_string(), true, false),
    };
    let grant = Grant {
        res: crate::token::Resource::File,
        sid: session_id,
        sub,
        name,
        anon,
        fid: file_id,
        ver: version,
        act: chosen.action,
        vid: viewer.id,
        profile,
        shr: access.share,
        pid: parent.map(|(id, _)| id),
    };
    // Tokens live on system time: that is the time their verification (jsonwebtoken) uses.
    let (access_token, claims) = app.tokens.mint(grant, chrono::Utc::now().timestamp(), None)?;
    let expires_ms = claims.expires_ms();
    Ok(ViewerSession {
        id: session_id,
        host_url: host_url(&app.config.public_url, &chosen.url, &access_token, expires_ms),
        access_token,
        expires_ms,
        action: chosen.action,
        viewer_action: chosen.name,
        wopi_src: chosen.url,
    })
}

/// The link to `/host` that opens `wopi_src` with the token: all of it in the fragment.
fn host_url(public_url: &str, wopi_src: &str, token: &str, expires_ms: i64) -> String {
    format!(
        "{public_url}/host#wopi_src={}&access_token={}&access_token_ttl={expires_ms}",
        encode_component(wopi_src),
        encode_component(token)
    )
}

/// `parent_uri` must be a folder the caller reaches the same way as the file (own files, or the
/// same share); it is where files created from the session go. Returns its id and where it is:
/// whether the session may create files there is decided when it does, from the store's state
/// then.
async fn parent_folder(
    app: &AppState,
    caller: &Caller,
    raw: &str,
    ticket: Option<&str>,
    file_share: Option<&str>,
    passwords: &PasswordCheck<'_>,
) -> Result<(String, FileKey), SessionError> {
    let uri = FileUri::parse(raw).map_err(|source| SessionError::Uri { field: "parent_uri", source })?;
    let access = app.policy.open(caller, &uri, ticket, file_share, app.clock.now(), passwords).await?;
    if access.share.as_deref() != file_share {
        return Err(SessionError::BadParent("must be in the same file system as uri".into()));
    }
    match app.store.stat(&access.key).await? {
        Some(Entry::Folder) if access.rights.level != Level::None => Ok((ids::file_id(app.store.as_ref(), &access.key).await?, access.key)),
        Some(Entry::Folder) | None => Err(SessionError::BadParent("folder not found".into())),
        Some(Entry::File(_)) => Err(SessionError::BadParent("names a file, not a folder".into())),
    }
}
