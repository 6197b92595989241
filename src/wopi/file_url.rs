//! `FileUrl`: a direct download link for the content a session reads (CheckFileInfo's
//! `FileUrl`). Clients fetch it verbatim, with no access token and no proof headers.
//!
//! `<WOPI base>/wopi/files/<id>/download?grant=<sealed>`. The sealed part names the file, the
//! version the session reads (empty: the current one, exactly as GetFile serves it — the
//! validator checks that a FileUrl handed out before a PutFile serves what that PutFile wrote),
//! the user the session is for and the share it came through, and an expiry:
//! `WOPIGATE_FILE_URL_TTL_SECS` after it was handed out, never later than the session's token.
//! It is signed by the token key ring for its own purpose (`token::Purpose::FileUrl`), so it is
//! no access token and no access token is a grant; old keys of the ring still verify it.
//!
//! Serving re-checks what GetFile checks: the id still names the file, and policy over the
//! store's current state still lets that user read it (a revoked share ends its links too).
//! The grant travels in the query string, which the request log never writes.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{open, wopi_base, FileSession, WopiError};
use crate::policy::Freshness;
use crate::state::AppState;
use crate::token::{AccessClaims, Action, Purpose, Resource};

/// The query parameter that carries the grant.
pub const PARAMETER: &str = "grant";

/// What a link grants (postcard, inside the seal).
#[derive(Serialize, Deserialize)]
struct Grant {
    sid: Uuid,
    sub: String,
    anon: bool,
    shr: Option<String>,
    fid: String,
    ver: String,
    exp: i64,
}

/// The `FileUrl` of a session, or `None` when links are turned off (`WOPIGATE_FILE_URL_TTL_SECS=0`).
pub fn mint(app: &AppState, claims: &AccessClaims) -> Result<Option<String>, WopiError> {
    let ttl = app.config.file_url_ttl_secs as i64;
    if ttl == 0 {
        return Ok(None);
    }
    // System time, as for tokens (whose expiry caps this one).
    let exp = (Utc::now().timestamp() + ttl).min(claims.exp);
    let grant = Grant {
        sid: claims.sid,
        sub: claims.sub.clone(),
        anon: claims.anon,
        shr: claims.shr.clone(),
        fid: claims.fid.clone(),
        ver: claims.ver.clone(),
        exp,
    };
    let body = postcard::to_allocvec(&grant).map_err(|_| WopiError::Token)?;
    let sealed = app.tokens.seal(Purpose::FileUrl, &body).map_err(|_| WopiError::Token)?;
    Ok(Some(format!("{}/wopi/files/{}/download?{PARAMETER}={sealed}", wopi_base(app, claims), claims.fid)))
}

/// The read-only session a link opens on `file_id`, after every check GetFile makes. The
/// reasons given never repeat the grant.
pub async fn open_link(app: &AppState, file_id: &str, grant: Option<&str>) -> Result<FileSession, WopiError> {
    let refused = |reason: &str, message: &str| {
        app.metrics.token_rejected(reason);
        WopiError::Unauthorized(message.to_string())
    };
    if app.config.file_url_ttl_secs == 0 {
        return Err(refused("file_url_off", "FileUrl download links are turned off here (WOPIGATE_FILE_URL_TTL_SECS=0)"));
    }
    let grant = grant.filter(|g| !g.is_empty()).ok_or_else(|| refused("missing", "this download link has no grant"))?;
    let invalid = || refused("invalid", "this download link is not valid (altered, or signed with a key no longer configured)");
    let body = app.tokens.unseal(Purpose::FileUrl, grant).map_err(|_| invalid())?;
    let grant: Grant = postcard::from_bytes(&body).map_err(|_| invalid())?;
    if grant.fid != file_id {
        return Err(refused("wrong_file", "this download link belongs to another file"));
    }
    let now = Utc::now().timestamp();
    if grant.exp + app.tokens.leeway_secs() <= now {
        return Err(refused("expired", "this download link has expired: CheckFileInfo hands out a fresh FileUrl"));
    }
    let claims = AccessClaims {
        sid: grant.sid,
        sub: grant.sub,
        name: String::new(),
        anon: grant.anon,
        profile: false,
        res: Resource::File,
        fid: grant.fid,
        ver: grant.ver,
        // A link only reads.
        act: Action::View,
        vid: Uuid::nil(),
        shr: grant.shr,
        pid: None,
        iat: now,
        exp: grant.exp,
    };
    open(app, String::new(), claims, Freshness::Cached).await
}
