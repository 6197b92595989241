//! The ecosystem (`/wopi/ecosystem`) and the bootstrapper (`/wopibootstrapper`): where a client
//! finds a user's root container, and how a file or folder named some other way (a
//! `cloudreve://` URI, a host page URL, a WOPISrc) becomes a WOPISrc with a token.
//!
//! Every token minted here goes through policy over the store's current state for the
//! presenting user (never copied from the presented token), capped by the presented token and
//! expiring no later than it; the bootstrapper's tokens start from the platform's caller JWT
//! instead, with the default lifetime (the user signed in just now).

use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::containers::{self, PointerAndInfo};
use super::{mint_for, policy_error, token_level, token_rights, wopi_base, WopiError};
use crate::auth::Caller;
use crate::discovery::action_url::encode_component;
use crate::policy::{Freshness, Level};
use crate::state::AppState;
use crate::store::{ids, Entry};
use crate::token::{AccessClaims, Action, Resource};
use crate::uri::{FileSystem, FileUri};

/// CheckEcosystem.
pub fn check_ecosystem(app: &AppState) -> Value {
    json!({"SupportsContainers": app.config.containers})
}

/// GetEcosystem (files and containers): the ecosystem's URL with a token of its own.
pub fn ecosystem_pointer(app: &AppState, claims: &AccessClaims) -> Result<Value, WopiError> {
    let (token, _) = mint_for(app, claims, Resource::Ecosystem, String::new(), token_level(claims))?;
    Ok(json!({"Url": format!("{}/wopi/ecosystem?access_token={}", wopi_base(app, claims), encode_component(&token))}))
}

/// GetRootContainer.
pub async fn root_container(app: &AppState, claims: &AccessClaims) -> Result<PointerAndInfo, WopiError> {
    containers::root_container(app, claims).await
}

/// What a native name resolved to: its id, where it is, and the share it is reached through.
struct Resolved {
    res: Resource,
    id: String,
    share: Option<String>,
    level: Level,
}

/// GetFileWopiSrc: `native` names a file or folder by its `cloudreve://` URI, its WOPISrc (or
/// container URL), or the host page URLs of CheckFileInfo. The answer is a file's or a
/// container's URL with a token for the presenting user only.
pub async fn get_file_wopi_src(app: &AppState, claims: &AccessClaims, native: Option<&str>) -> Result<String, WopiError> {
    let native = native
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| WopiError::BadRequest("X-WOPI-HostNativeFileName is required".into()))?;
    let resolved = resolve(app, claims, native).await?;
    let derived = AccessClaims { shr: resolved.share, ..claims.clone() };
    let (token, minted) = mint_for(app, &derived, resolved.res, resolved.id.clone(), resolved.level)?;
    let kind = match resolved.res {
        Resource::Container => "containers",
        _ => "files",
    };
    Ok(format!(
        "{}/wopi/{kind}/{}?access_token={}&access_token_ttl={}",
        wopi_base(app, claims),
        resolved.id,
        encode_component(&token),
        minted.expires_ms()
    ))
}

async fn resolve(app: &AppState, claims: &AccessClaims, native: &str) -> Result<Resolved, WopiError> {
    let store = app.store.as_ref();
    let (key, share, rights, known_id) = if native.len() > 12 && native[..12].eq_ignore_ascii_case("cloudreve://") {
        let uri = FileUri::parse(native).map_err(|e| WopiError::BadRequest(format!("X-WOPI-HostNativeFileName: {e}")))?;
        let caller = match claims.anon {
            true => Caller::Anonymous,
            false => Caller::User { id: claims.sub.clone(), name: claims.name.clone(), extra: None },
        };
        // Passwords are not taken here: only the token's own share, or shares without one.
        let uri = FileUri { fs: without_password(uri.fs), path: uri.path };
        let passwords = app.passwords.for_client(None);
        let access =
            app.policy.open(&caller, &uri, None, claims.shr.as_deref(), app.clock.now(), &passwords).await.map_err(policy_error)?;
        (access.key, access.share, access.rights, None)
    } else {
        let (res, id) = id_from_url(app, claims, native).ok_or(WopiError::NotFound)?;
        let key = ids::resolve(store, &id).await?.ok_or(WopiError::NotFound)?;
        let (_, rights) = token_rights(app, claims, &key, Freshness::Fresh).await?;
        (key, claims.shr.clone(), rights, Some((res, id)))
    };
    let res = match store.stat(&key).await? {
        Some(Entry::File(_)) => Resource::File,
        Some(Entry::Folder) if app.config.containers => Resource::Container,
        None if key.path.is_root() && app.config.containers => Resource::Container,
        _ => return Err(WopiError::NotFound),
    };
    // Only what the caller may reach gets an id (ids are store records: a visitor must not be
    // able to make them for names that do not exist or are not theirs).
    let level = rights.capped(token_level(claims)).level;
    if level == Level::None || known_id.as_ref().is_some_and(|(r, _)| *r != res) {
        return Err(WopiError::NotFound);
    }
    let id = match known_id {
        Some((_, id)) => id,
        None => ids::file_id(store, &key).await?,
    };
    Ok(Resolved { res, id, share, level })
}

fn without_password(fs: FileSystem) -> FileSystem {
    match fs {
        FileSystem::Share { id, .. } => FileSystem::Share { id, password: None },
        other => other,
    }
}

/// The id in one of our URLs: a WOPISrc or container URL (with or without query), or a host
/// page URL.
fn id_from_url(app: &AppState, claims: &AccessClaims, url: &str) -> Option<(Resource, String)> {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    let valid = |res: Resource, id: &str| ids::is_file_id(id).then(|| (res, id.to_string()));
    for base in [wopi_base(app, claims), app.config.public_url.as_str()] {
        if let Some(id) = without_query.strip_prefix(&format!("{base}/wopi/files/")) {
            return valid(Resource::File, id);
        }
        if let Some(id) = without_query.strip_prefix(&format!("{base}/wopi/containers/")) {
            return valid(Resource::Container, id);
        }
    }
    let template = &app.config.host_page.url_template;
    for action in ["view", "edit"] {
        let filled = template.replace("{action}", action);
        let (prefix, suffix) = filled.split_once("{file_id}")?;
        if let Some(id) = url.strip_prefix(prefix).and_then(|rest| rest.strip_suffix(suffix)) {
            if ids::is_file_id(id) {
                return Some((Resource::File, id.to_string()));
            }
        }
    }
    // A template with the id in its path (wopigate's own `/host/{file_id}?action=…`) matches
    // whatever query and fragment the URL came back with (Office appends `wd…` parameters).
    let (prefix, path_suffix) = template.split(['?', '#']).next()?.split_once("{file_id}")?;
    let id = without_query.strip_prefix(prefix)?.strip_suffix(path_suffix)?;
    valid(Resource::File, id)
}

/// The bootstrapper's `Bootstrap` object.
#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct Bootstrap {
    ecosystem_url: String,
    user_id: String,
    sign_in_name: String,
    user_friendly_name: String,
}

/// What a signed-in caller of the bootstrapper may do, as the claims of a token they do not have
/// yet: their own files, no share, edit, the default lifetime, for the first configured client
/// (native Office apps are not one of our viewers; proof keys are checked as for it).
fn caller_claims(app: &AppState, caller: &Caller) -> Result<AccessClaims, WopiError> {
    let Caller::User { id, name, .. } = caller else {
        return Err(WopiError::Unauthorized("the bootstrapper needs the platform's bearer token".into()));
    };
    let viewer = app.viewers.configs().next().ok_or(WopiError::NotFound)?;
    let now = chrono::Utc::now().timestamp();
    Ok(AccessClaims {
        sid: Uuid::new_v4(),
        sub: id.clone(),
        name: name.clone(),
        anon: false,
        profile: false,
        res: Resource::Ecosystem,
        fid: String::new(),
        ver: String::new(),
        act: Action::Edit,
        vid: viewer.id,
        shr: None,
        pid: None,
        iat: now,
        exp: now + app.tokens.ttl_secs(),
    })
}

/// Bootstrap: who the caller is and their ecosystem URL.
pub fn bootstrap(app: &AppState, caller: &Caller) -> Result<(Bootstrap, AccessClaims), WopiError> {
    let claims = caller_claims(app, caller)?;
    let url = ecosystem_pointer(app, &claims)?;
    let sign_in_name = match caller {
        Caller::User { extra: Some(extra), .. } => extra.mail.clone().filter(|m| !m.is_empty()),
        _ => None,
    };
    Ok((
        Bootstrap {
            ecosystem_url: url["Url"].as_str().unwrap_or_default().to_string(),
            user_id: claims.sub.clone(),
            sign_in_name: sign_in_name.unwrap_or_else(|| claims.sub.clone()),
            user_friendly_name: claims.name.clone(),
        },
        claims,
    ))
}

/// `X-WOPI-EcosystemOperation` on `POST /wopibootstrapper`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcosystemOperation {
    GetRootContainer,
    GetNewAccessToken,
    GetWopiSrcWithAccessToken,
}

impl EcosystemOperation {
    pub fn parse(value: &str) -> Option<EcosystemOperation> {
        match value.trim().to_ascii_uppercase().as_str() {
            "GET_ROOT_CONTAINER" => Some(EcosystemOperation::GetRootContainer),
            "GET_NEW_ACCESS_TOKEN" => Some(EcosystemOperation::GetNewAccessToken),
            "GET_WOPI_SRC_WITH_ACCESS_TOKEN" => Some(EcosystemOperation::GetWopiSrcWithAccessToken),
            _ => None,
        }
    }
}

/// A bootstrapper shortcut: the `Bootstrap` object plus the operation's answer. `wopi_src`:
/// `X-WOPI-WopiSrc` (GET_NEW_ACCESS_TOKEN); `native`: `X-WOPI-HostNativeFileName`.
pub async fn bootstrap_operation(
    app: &AppState,
    caller: &Caller,
    op: EcosystemOperation,
    wopi_src: Option<&str>,
    native: Option<&str>,
) -> Result<Value, WopiError> {
    let (bootstrap, claims) = bootstrap(app, caller)?;
    let mut answer = json!({"Bootstrap": bootstrap});
    match op {
        EcosystemOperation::GetRootContainer => {
            answer["RootContainerInfo"] = serde_json::to_value(root_container(app, &claims).await?).unwrap_or_default();
        }
        EcosystemOperation::GetWopiSrcWithAccessToken => {
            answer["WopiSrcInfo"] = json!({"Url": get_file_wopi_src(app, &claims, native).await?});
        }
        EcosystemOperation::GetNewAccessToken => {
            let src = wopi_src
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| WopiError::BadRequest("X-WOPI-WopiSrc is required".into()))?;
            // Only our own WOPISrc URLs (the same rules as GetFileWopiSrc, for this caller).
            if id_from_url(app, &claims, src).is_none() {
                return Err(WopiError::NotFound);
            }
            let resolved = resolve(app, &claims, src).await?;
            let (token, minted) = mint_for(app, &claims, resolved.res, resolved.id, resolved.level)?;
            answer["AccessTokenInfo"] = json!({"AccessToken": token, "AccessTokenExpiry": minted.expires_ms()});
        }
    }
    Ok(answer)
}
