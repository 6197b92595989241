//! GetShareUrl (`X-WOPI-Override: GET_SHARE_URL`, `X-WOPI-UrlType`) and the
//! `SupportedShareUrlTypes` of CheckFileInfo: for files here, and for containers through the
//! same two functions (`supported_types`, `share_url`) given the folder.
//!
//! Only a target's owner may create links (policy over the store's current state, never the
//! token), and a link never grants more than the session asking: `ReadWrite` needs a session
//! that may edit. Everyone else is told `SupportedShareUrlTypes: []` and answered 501 (the WOPI
//! answer for a type that is not supported, which for them is every type). The link is a share
//! manifest made by `shares::create`, as `wopigate share` makes them; the answer is
//! `WOPIGATE_SHARE_URL_TEMPLATE` with its id.

use super::{token_level, FileSession, WopiError};
use crate::policy::{Level, Scope};
use crate::shares::{self, ShareError, ShareKind};
use crate::state::AppState;
use crate::store::FileKey;
use crate::token::AccessClaims;

/// Why `claims`' user may not create a `kind` link of `target` now; `None`: they may.
fn refusal(scope: &Scope, claims: &AccessClaims, target: &FileKey, kind: ShareKind) -> Option<&'static str> {
    // A link to a user's root would open every file they have, to anyone, for good: a client
    // holding a token for one document must not be able to make one.
    if target.path.is_root() {
        return Some("a user's root folder is not shared by link; share a folder inside it");
    }
    if !scope.rights(target).owner {
        return Some("only the owner may create share links");
    }
    if kind == ShareKind::ReadWrite && token_level(claims) != Level::Edit {
        return Some("a session that may not edit cannot create an editable share link");
    }
    None
}

/// CheckFileInfo's (and CheckContainerInfo's) `SupportedShareUrlTypes` for `target`.
pub fn supported_types(scope: &Scope, claims: &AccessClaims, target: &FileKey) -> Vec<&'static str> {
    ShareKind::ALL
        .into_iter()
        .filter(|kind| refusal(scope, claims, target, *kind).is_none())
        .map(ShareKind::as_str)
        .collect()
}

/// GetShareUrl on `target` (a file or folder, whose id is `target_id`) with the request's
/// `X-WOPI-UrlType`: the share link, the same on every call for the same target and type.
/// `scope` is what the token's user may reach now (`policy::Policy::scope`, fresh).
pub async fn share_url(
    app: &AppState,
    scope: &Scope,
    claims: &AccessClaims,
    target: &FileKey,
    target_id: &str,
    url_type: Option<&str>,
) -> Result<String, WopiError> {
    // The caller's value is not repeated: headers are theirs and may hold anything.
    let kind = match url_type.map(str::trim).filter(|t| !t.is_empty()) {
        None => return Err(WopiError::NotImplemented("GetShareUrl needs X-WOPI-UrlType (ReadOnly or ReadWrite)".into())),
        Some(t) => ShareKind::parse(t)
            .ok_or_else(|| WopiError::NotImplemented("this X-WOPI-UrlType (supported: ReadOnly, ReadWrite)".into()))?,
    };
    if let Some(reason) = refusal(scope, claims, target, kind) {
        return Err(WopiError::NotImplemented(format!("{} share link: {reason}", kind.as_str())));
    }
    let id = shares::create(app.store.as_ref(), target, target_id, kind, app.clock.now()).await.map_err(|e| match e {
        ShareError::NotFound => WopiError::NotFound,
        ShareError::Store(e) => e.into(),
    })?;
    // The share id is not logged: for a share open to anonymous visitors it is the key.
    tracing::info!(target_id, url_type = kind.as_str(), "share link handed out");
    Ok(shares::link(&app.config.share_url_template, &id))
}

/// GetShareUrl for a file session.
pub async fn file_share_url(app: &AppState, s: &FileSession, url_type: Option<&str>) -> Result<String, WopiError> {
    share_url(app, &s.scope, &s.claims, &s.key, &s.claims.fid, url_type).await
}
