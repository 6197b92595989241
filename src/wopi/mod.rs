//! The WOPI host operations, one function each, on a request already authorised by its token,
//! split by resource as the spec is: `files`, `containers`, `ecosystem` (and the bootstrapper),
//! with `new_files` for what PutRelativeFile and CreateChildFile share. Here: authorising a
//! request (token, file binding, proof keys), what a session may do now, and the tokens minted
//! from it. HTTP details (headers in, status codes out) stay in `http::wopi`.

pub mod activities;
pub mod containers;
pub mod ecosystem;
pub mod file_url;
pub mod files;
pub mod names;
mod new_files;
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

pub use files::*;
pub use new_files::{NameRequest, NewFile};
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

fn wopi_base<'a>(app: &'a AppState, claims: &AccessClaims) -> &'a str {
    app.viewers
        .config(claims.vid)
        .and_then(|v| v.public_url.as_deref())
        .unwrap_or(&app.config.public_url)
}

fn host_page(app: &AppState, file_id: &str, action: &str) -> String {
    app.config.host_page.url(file_id, action)
}

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

/// The guard of a session's file and where the file is now: every change runs under it.
async fn hold(app: &AppState, file_id: &str) -> Result<(FileGuard, FileKey), WopiError> {
    ids::lock_id(app.store.as_ref(), file_id).await?.ok_or(WopiError::NotFound)
}

fn header_name(value: &str, header: &str) -> Result<String, WopiError> {
    crate::utf7::decode(value.trim()).ok_or_else(|| WopiError::BadRequest(format!("{header} is not valid UTF-7")))
}

fn policy_error(e: PolicyError) -> WopiError {
    match e {
        PolicyError::Store(e) => e.into(),
        _ => WopiError::NotFound,
    }
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
