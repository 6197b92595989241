//! Viewer sessions: `PUT /api/v4/file/viewerSession` as one domain function.
//!
//! Who is calling → which file → which version and action → file id → action URL → token.

use std::net::IpAddr;

use serde::Deserialize;
use uuid::Uuid;

use crate::auth::{AuthError, Caller};
use crate::discovery::action_url::encode_component;
use crate::discovery::DiscoveryError;
use crate::passwords::PasswordCheck;
use crate::policy::{Level, PolicyError};
use crate::state::AppState;
use crate::store::{ids, Entry, FileMeta, StoreError};
use crate::token::{Action, Grant, TokenError};
use crate::uri::{FileUri, UriError};

/// The request body, exactly as Cloudreve's API names it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    pub uri: String,
    #[serde(default)]
    pub version: Option<String>,
    pub viewer_id: Uuid,
    pub preferred_action: Action,
    #[serde(default)]
    pub parent_uri: Option<String>,
}

#[derive(Debug)]
pub struct ViewerSession {
    pub id: Uuid,
    pub access_token: String,
    pub expires_ms: i64,
    pub action: Action,
    pub wopi_src: String,
    /// wopigate's own host page for this session, the session in its fragment (never sent to
    /// a server): `<public url>/host#wopi_src=…&access_token=…&access_token_ttl=…`.
    pub host_url: String,
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
    #[error(transparent)]
    Discovery(DiscoveryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Creates a viewer session. `authorization` and `ticket` are the raw header values; `client`
/// is the caller's address (share password attempts are limited per address).
pub async fn create(
    app: &AppState,
    authorization: Option<&str>,
    ticket: Option<&str>,
    client: Option<IpAddr>,
    request: SessionRequest,
) -> Result<ViewerSession, SessionError> {
    let caller = app.callers.verify(authorization)?;
    let uri = FileUri::parse(&request.uri).map_err(|source| SessionError::Uri { field: "uri", source })?;
    let viewer = app.viewers.config(request.viewer_id).ok_or(SessionError::UnknownViewer(request.viewer_id))?;
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

    let may_edit = access.rights.level == Level::Edit && version.is_empty() && opened.size <= app.config.edit_max_size;
    let wanted = if request.preferred_action == Action::Edit && may_edit { Action::Edit } else { Action::View };

    let session_id = Uuid::new_v4();
    let base = viewer.public_url.as_deref().unwrap_or(&app.config.public_url);
    let wopi_src = format!("{base}/wopi/files/{file_id}");
    let chosen = app
        .viewers
        .action_url(viewer, &ext, wanted, opened.size == 0, &wopi_src, &session_id.to_string())
        .await
        .map_err(SessionError::Discovery)?;

    let (sub, name, anon, ext) = match &caller {
        Caller::User { id, name, extra } => (id.clone(), name.clone(), false, extra.clone()),
        // Anonymous visitors still need a stable id within the session (co-author lists).
        Caller::Anonymous => (format!("anon{}", &session_id.simple().to_string()[..12]), "Guest".to_string(), true, None),
    };
    let grant = Grant {
        sid: session_id,
        sub,
        name,
        anon,
        fid: file_id,
        ver: version,
        act: chosen.action,
        vid: viewer.id,
        ext,
        shr: access.share,
        pid: parent,
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
/// same share); it is where files created from the session go. Returns its id: whether the
/// session may create files there is decided when it does, from the store's state then.
async fn parent_folder(
    app: &AppState,
    caller: &Caller,
    raw: &str,
    ticket: Option<&str>,
    file_share: Option<&str>,
    passwords: &PasswordCheck<'_>,
) -> Result<String, SessionError> {
    let uri = FileUri::parse(raw).map_err(|source| SessionError::Uri { field: "parent_uri", source })?;
    let access = app.policy.open(caller, &uri, ticket, file_share, app.clock.now(), passwords).await?;
    if access.share.as_deref() != file_share {
        return Err(SessionError::BadParent("must be in the same file system as uri".into()));
    }
    match app.store.stat(&access.key).await? {
        Some(Entry::Folder) if access.rights.level != Level::None => Ok(ids::file_id(app.store.as_ref(), &access.key).await?),
        Some(Entry::Folder) | None => Err(SessionError::BadParent("folder not found".into())),
        Some(Entry::File(_)) => Err(SessionError::BadParent("names a file, not a folder".into())),
    }
}
