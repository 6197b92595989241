//! Who may do what with which file or folder: one answer, from the store's current state.
//!
//! Every token wopigate mints (viewerSession, GetFileWopiSrc, PutRelativeFile) and every folder it
//! writes into is checked here, and rights are never copied from a presented token: a derived
//! token gets at most what both this policy and the presented token allow.
//!
//! `my` files belong to the caller; `share` files are reached through a share manifest kept in
//! the store as `shares/<share id>.json` (format in the README), which names its file or folder
//! by id, so renames keep shares working. Passwords are stored as Argon2 hashes, purchase tickets
//! as SHA-256 hashes, both compared without timing leaks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::Caller;
use crate::passwords::{PasswordCheck, PasswordError};
use crate::store::{ids, Entry, FileKey, Store, StoreError};
use crate::uri::{is_valid_id, CanonicalUri, FileSystem, FileUri, RelPath};

fn yes() -> bool {
    true
}

/// A share link, as kept in the store at `shares/<share id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareManifest {
    /// User id of the owner of the shared file or folder.
    pub owner: String,
    /// Id of the shared file or folder (a file id); survives renames made through wopigate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Shared file or folder relative to the owner's root (`Docs/report.docx`, `Team`): read only
    /// while `target` is absent; wopigate then fills `target` in on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Argon2 PHC string of the share password; absent = no password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Visitors may edit (current versions only).
    #[serde(default)]
    pub editable: bool,
    /// After this instant the share is gone (404).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Visitors without a caller JWT may open it.
    #[serde(default = "yes")]
    pub allow_anonymous: bool,
    /// Opening needs a purchase ticket (`X-Cr-Purchase-Ticket`) whose SHA-256 is listed below.
    #[serde(default)]
    pub paid: bool,
    /// Lower-case hex SHA-256 of each accepted purchase ticket.
    #[serde(default)]
    pub purchase_ticket_sha256: Vec<String>,
    /// Secure view: a watermark the client draws over the document for visitors, with `{user}`
    /// (display name) and `{date}` (today, YYYY-MM-DD) filled in; at most 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// Visitors may download or export (Save As, "Download as"); false also refuses
    /// PutRelativeFile. GetFile keeps working: the client needs the bytes to render.
    #[serde(default = "yes")]
    pub download: bool,
    /// Visitors may print.
    #[serde(default = "yes")]
    pub print: bool,
    /// Visitors may copy content out of the document.
    #[serde(default = "yes")]
    pub copy: bool,
}

/// The longest watermark a manifest may set, in characters.
pub const MAX_WATERMARK_CHARS: usize = 200;

/// What the client's UI lets a share visitor do (secure view): told to the client in
/// CheckFileInfo and enforced by it, except that wopigate refuses PutRelativeFile itself when
/// downloads are off. Owners are never restricted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientControls {
    /// The manifest's watermark template (`{user}`, `{date}` not yet filled in).
    pub watermark: Option<String>,
    pub download: bool,
    pub print: bool,
    pub copy: bool,
}

impl ClientControls {
    pub const UNRESTRICTED: ClientControls = ClientControls { watermark: None, download: true, print: true, copy: true };

    fn of(manifest: &ShareManifest) -> ClientControls {
        ClientControls {
            watermark: manifest.watermark.clone().filter(|w| !w.trim().is_empty()),
            download: manifest.download,
            print: manifest.print,
            copy: manifest.copy,
        }
    }

    /// The watermark for `user` (display name) on `today`.
    pub fn watermark_text(&self, user: &str, today: chrono::NaiveDate) -> Option<String> {
        let template = self.watermark.as_deref()?;
        Some(template.replace("{user}", user).replace("{date}", &today.format("%Y-%m-%d").to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("login required: opening your own files needs a caller token")]
    LoginRequired,
    #[error("only the owner may open files under cloudreve://<user id>@my/")]
    OwnerOnly(String),
    #[error("share not found or expired")]
    ShareNotFound,
    #[error("wrong or missing share password")]
    WrongPassword,
    #[error("this share cannot be opened anonymously; log in first")]
    AnonymousDenied,
    #[error("this share must be purchased: send a valid X-Cr-Purchase-Ticket")]
    PurchaseRequired,
    #[error("a share manifest is invalid: {1}")]
    BadManifest(String, String),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How much a principal may do with one file or folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    None,
    /// Read a file; list a folder.
    View,
    /// Change a file's content and name; create files in a folder.
    Edit,
}

/// The grant for one file or folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rights {
    pub level: Level,
    /// The principal owns it (deleting is the owner's alone).
    pub owner: bool,
    /// What the client lets them do with it (a share's secure-view settings).
    pub controls: ClientControls,
}

impl Rights {
    pub const NONE: Rights = Rights { level: Level::None, owner: false, controls: ClientControls::UNRESTRICTED };
    const OWNER: Rights = Rights { level: Level::Edit, owner: true, controls: ClientControls::UNRESTRICTED };

    /// At most `cap`: a derived token never grants more than the token it came from.
    pub fn capped(self, cap: Level) -> Rights {
        Rights { level: self.level.min(cap), owner: self.owner && cap == Level::Edit, controls: self.controls }
    }

    /// For a folder: whether a session may create a file there from its document (Save As,
    /// a conversion): that needs edit rights, and is an export, refused where downloads are off.
    pub fn may_create_copies(&self) -> bool {
        self.level == Level::Edit && self.controls.download
    }
}

/// Who is asking: a signed-in user (or an anonymous visitor), and the share they came through.
#[derive(Debug, Clone, Copy)]
pub struct Principal<'a> {
    pub user: Option<&'a str>,
    pub share: Option<&'a str>,
}

/// Whether a share manifest must be read now, or may come from the short-lived cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Writes, CheckFileInfo and every token minted: the manifest as it is now.
    Fresh,
    /// Reads of content (GetFile): a manifest read at most the cache TTL ago.
    Cached,
}

/// A share as it stands: its manifest and where its file or folder is now.
#[derive(Debug)]
pub struct Share {
    pub id: String,
    pub manifest: ShareManifest,
    /// The shared file or folder; `None` when it no longer exists.
    pub root: Option<FileKey>,
}

/// What one principal may reach, loaded once (the share manifest, if any); `rights` is then
/// pure, so several targets cost one read.
#[derive(Debug, Clone)]
pub struct Scope {
    user: Option<String>,
    share: Option<Arc<Share>>,
}

impl Scope {
    /// The grant for `target` (a file, or a folder to list or create in).
    pub fn rights(&self, target: &FileKey) -> Rights {
        if self.user.as_deref() == Some(target.owner.as_str()) {
            return Rights::OWNER;
        }
        let Some(share) = &self.share else {
            return Rights::NONE;
        };
        let Some(root) = &share.root else {
            return Rights::NONE;
        };
        // The shared file itself, or anything inside the shared folder (a file has no inside).
        let inside = root.owner == target.owner && target.path.segments().starts_with(root.path.segments());
        if !inside {
            return Rights::NONE;
        }
        let level = if share.manifest.editable { Level::Edit } else { Level::View };
        Rights { level, owner: false, controls: ClientControls::of(&share.manifest) }
    }

    pub fn share(&self) -> Option<&Share> {
        self.share.as_deref()
    }
}

/// The file a URI names for a caller who passed every check of its share, and their grant.
#[derive(Debug, Clone)]
pub struct Access {
    pub key: FileKey,
    /// The share the caller came through (carried in tokens so later calls re-check it).
    pub share: Option<String>,
    pub canonical: CanonicalUri,
    pub rights: Rights,
    /// What the caller may reach besides (the folder files created from the session go to).
    pub scope: Scope,
}

/// Manifests read within the TTL, by share id; bounded (cleared when full).
const SHARE_CACHE_ENTRIES: usize = 4096;

pub struct Policy {
    store: Arc<dyn Store>,
    cache_ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Option<Arc<Share>>)>>,
}

impl Policy {
    pub fn new(store: Arc<dyn Store>, cache_ttl: Duration) -> Policy {
        Policy { store, cache_ttl, cache: Mutex::new(HashMap::new()) }
    }

    /// What `who` may reach now.
    pub async fn scope(&self, who: Principal<'_>, fresh: Freshness, now: DateTime<Utc>) -> Result<Scope, PolicyError> {
        let share = match who.share {
            // An owner needs no share; a share that is gone or expired grants nothing.
            Some(id) => self.share(id, fresh).await?.filter(|s| {
                !s.manifest.expires_at.is_some_and(|at| at <= now) && (who.user.is_some() || s.manifest.allow_anonymous)
            }),
            None => None,
        };
        Ok(Scope { user: who.user.map(str::to_string), share })
    }

    /// Resolves `uri` for `caller` through every check of its file system (ownership; a share's
    /// expiry, password, anonymous rule and purchase ticket). `admitted` names a share the caller
    /// already passed (the share of a presented token), whose password is not asked again.
    /// Passwords are checked by `passwords` (off the async workers, rate limited).
    pub async fn open(
        &self,
        caller: &Caller,
        uri: &FileUri,
        ticket: Option<&str>,
        admitted: Option<&str>,
        now: DateTime<Utc>,
        passwords: &PasswordCheck<'_>,
    ) -> Result<Access, PolicyError> {
        match &uri.fs {
            FileSystem::My { owner } => {
                let Caller::User { id, .. } = caller else {
                    return Err(PolicyError::LoginRequired);
                };
                if let Some(owner) = owner {
                    if owner != id {
                        return Err(PolicyError::OwnerOnly(owner.clone()));
                    }
                }
                Ok(Access {
                    key: FileKey { owner: id.clone(), path: uri.path.clone() },
                    share: None,
                    canonical: CanonicalUri::My { owner: id.clone(), path: uri.path.clone() },
                    rights: Rights::OWNER,
                    scope: Scope { user: Some(id.clone()), share: None },
                })
            }
            FileSystem::Share { id, password } => {
                let share = self.share(id, Freshness::Fresh).await?.ok_or(PolicyError::ShareNotFound)?;
                let manifest = &share.manifest;
                if manifest.expires_at.is_some_and(|at| at <= now) {
                    return Err(PolicyError::ShareNotFound);
                }
                let root = share.root.clone().ok_or(PolicyError::ShareNotFound)?;
                let is_owner = caller.user_id() == Some(manifest.owner.as_str());
                if !is_owner {
                    if matches!(caller, Caller::Anonymous) && !manifest.allow_anonymous {
                        return Err(PolicyError::AnonymousDenied);
                    }
                    if admitted != Some(id.as_str()) {
                        if let Some(hash) = &manifest.password_hash {
                            if !passwords.matches(id, hash, password.as_deref()).await? {
                                return Err(PolicyError::WrongPassword);
                            }
                        }
                        if manifest.paid && !ticket_matches(&manifest.purchase_ticket_sha256, ticket) {
                            return Err(PolicyError::PurchaseRequired);
                        }
                    }
                }
                let path = root.path.join(&uri.path).map_err(|_| PolicyError::ShareNotFound)?;
                let key = FileKey { owner: root.owner.clone(), path };
                let scope = Scope { user: caller.user_id().map(str::to_string), share: Some(share.clone()) };
                Ok(Access {
                    rights: scope.rights(&key),
                    key,
                    share: Some(id.clone()),
                    canonical: CanonicalUri::Share { id: id.clone(), path: uri.path.clone() },
                    scope,
                })
            }
        }
    }

    /// A share by id: from the cache when allowed and young enough, else read (and cached).
    async fn share(&self, id: &str, fresh: Freshness) -> Result<Option<Arc<Share>>, PolicyError> {
        if fresh == Freshness::Cached {
            let cached = self.cache.lock().ok().and_then(|c| c.get(id).cloned());
            if let Some((at, share)) = cached {
                if at.elapsed() < self.cache_ttl {
                    return Ok(share);
                }
            }
        }
        let share = load_share(self.store.as_ref(), id).await?.map(Arc::new);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= SHARE_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(id.to_string(), (Instant::now(), share.clone()));
        }
        Ok(share)
    }
}

/// The store object of share `id`'s manifest.
pub fn share_object(id: &str) -> String {
    format!("shares/{id}.json")
}

/// Reads a share manifest and finds its file or folder. A manifest that names a path (as a
/// platform may write it) gets the id of what is there written into it, compare-and-set, so
/// from then on renames keep the share working.
pub async fn load_share(store: &dyn Store, id: &str) -> Result<Option<Share>, PolicyError> {
    if !is_valid_id(id) {
        return Ok(None);
    }
    let Some(raw) = store.get_object(&share_object(id)).await? else {
        return Ok(None);
    };
    let bad = |why: String| PolicyError::BadManifest(id.to_string(), why);
    let mut manifest: ShareManifest = serde_json::from_slice(&raw).map_err(|e| bad(e.to_string()))?;
    if !is_valid_id(&manifest.owner) {
        return Err(bad("owner is not a valid user id".into()));
    }
    if manifest.watermark.as_ref().is_some_and(|w| w.chars().count() > MAX_WATERMARK_CHARS) {
        return Err(bad(format!("watermark is longer than {MAX_WATERMARK_CHARS} characters")));
    }
    let root = match (&manifest.target, &manifest.path) {
        (Some(target), _) => match ids::resolve(store, target).await? {
            Some(key) if key.owner == manifest.owner && store.stat(&key).await?.is_some() => Some(key),
            _ => None,
        },
        (None, Some(path)) => {
            let path = RelPath::parse_plain(path).map_err(|e| bad(format!("path: {e}")))?;
            let key = FileKey { owner: manifest.owner.clone(), path };
            match store.stat(&key).await? {
                Some(Entry::File(_)) | Some(Entry::Folder) => {
                    manifest.target = Some(ids::file_id(store, &key).await?);
                    let updated = serde_json::to_vec_pretty(&manifest).map_err(|e| bad(e.to_string()))?;
                    // Another replica may have done the same meanwhile: then its write stands.
                    store.swap_object(&share_object(id), Some(&raw), Some(&updated)).await?;
                    Some(key)
                }
                None => None,
            }
        }
        (None, None) => return Err(bad("names neither a target id nor a path".into())),
    };
    Ok(Some(Share { id: id.to_string(), manifest, root }))
}

/// Compares against every accepted hash in constant time, so timing reveals nothing.
fn ticket_matches(accepted: &[String], ticket: Option<&str>) -> bool {
    let Some(ticket) = ticket.map(str::trim).filter(|t| !t.is_empty()) else {
        return false;
    };
    let given = sha256_hex(ticket);
    accepted
        .iter()
        .fold(false, |found, hash| found | bool::from(hash.to_ascii_lowercase().as_bytes().ct_eq(given.as_bytes())))
}

pub fn sha256_hex(value: &str) -> String {
    Sha256::digest(value.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// An Argon2id PHC string for a share password (the `hash-password` command).
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets() {
        let accepted = vec![sha256_hex("ticket-1")];
        assert!(ticket_matches(&accepted, Some("ticket-1")));
        assert!(!ticket_matches(&accepted, Some("ticket-2")));
        assert!(!ticket_matches(&accepted, None));
    }

    fn key(owner: &str, path: &str) -> FileKey {
        FileKey { owner: owner.into(), path: RelPath::parse_plain(path).unwrap() }
    }

    fn share(root: &str, editable: bool) -> Arc<Share> {
        let manifest: ShareManifest =
            serde_json::from_value(serde_json::json!({"owner": "o", "target": "x", "editable": editable})).unwrap();
        Arc::new(Share { id: "s".into(), manifest, root: Some(key("o", root)) })
    }

    #[test]
    fn scope_rights() {
        let owner = Scope { user: Some("o".into()), share: None };
        assert_eq!(owner.rights(&key("o", "a/b.docx")), Rights::OWNER);
        assert_eq!(owner.rights(&key("p", "a/b.docx")), Rights::NONE);

        let folder = Scope { user: None, share: Some(share("Team", false)) };
        assert_eq!(folder.rights(&key("o", "Team/x.docx")).level, Level::View);
        assert_eq!(folder.rights(&key("o", "Team")).level, Level::View);
        assert_eq!(folder.rights(&key("o", "Teams/x.docx")).level, Level::None, "a prefix of a name is not inside");
        assert_eq!(folder.rights(&key("o", "x.docx")).level, Level::None);
        assert_eq!(folder.rights(&key("p", "Team/x.docx")).level, Level::None);

        // A single shared file grants its folder nothing.
        let file = Scope { user: Some("bob".into()), share: Some(share("Docs/shared.docx", true)) };
        assert_eq!(file.rights(&key("o", "Docs/shared.docx")).level, Level::Edit);
        assert_eq!(file.rights(&key("o", "Docs")).level, Level::None);
        assert_eq!(file.rights(&key("o", "Docs/secret.docx")).level, Level::None);
        assert!(!file.rights(&key("o", "Docs/shared.docx")).owner);

        assert_eq!(Rights::OWNER.capped(Level::View), Rights { level: Level::View, owner: false, controls: ClientControls::UNRESTRICTED });
    }

    #[test]
    fn share_controls_reach_visitors_only() {
        let manifest: ShareManifest = serde_json::from_value(serde_json::json!({
            "owner": "o", "target": "x", "editable": true,
            "watermark": "{user} · {date} · {user}", "download": false, "print": false, "copy": false
        }))
        .unwrap();
        let share = Arc::new(Share { id: "s".into(), manifest, root: Some(key("o", "Team")) });
        let visitor = Scope { user: Some("bob".into()), share: Some(share.clone()) };
        let rights = visitor.rights(&key("o", "Team/x.docx"));
        assert_eq!((rights.controls.download, rights.controls.print, rights.controls.copy), (false, false, false));
        let today = chrono::NaiveDate::from_ymd_opt(2026, 3, 9).unwrap();
        assert_eq!(rights.controls.watermark_text("Bob", today).as_deref(), Some("Bob · 2026-03-09 · Bob"));
        assert!(!rights.may_create_copies(), "no Save As where downloads are off, even with edit rights");
        assert_eq!(rights.clone().capped(Level::View).controls, rights.controls, "derived tokens keep the controls");
        // The owner, even through the share, is unrestricted.
        let owner = Scope { user: Some("o".into()), share: Some(share) };
        assert_eq!(owner.rights(&key("o", "Team/x.docx")).controls, ClientControls::UNRESTRICTED);
        // Defaults: nothing restricted.
        let plain: ShareManifest = serde_json::from_value(serde_json::json!({"owner": "o", "path": "a"})).unwrap();
        assert_eq!(ClientControls::of(&plain), ClientControls::UNRESTRICTED);
    }
}
