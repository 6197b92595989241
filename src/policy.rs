//! Who may open what, and whether they may edit it.
//!
//! `my` files belong to the caller; `share` files are reached through a share manifest kept in
//! the store as `shares/<share id>.json` (format in the README). Passwords are stored as Argon2
//! hashes, purchase tickets as SHA-256 hashes, both compared without timing leaks.

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::Caller;
use crate::store::{FileKey, Store, StoreError};
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
    /// Shared file or folder, relative to the owner's root (`Docs/report.docx`, `Team`).
    pub path: String,
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
    Store(#[from] StoreError),
}

/// The resolved file and what the caller may do with it.
#[derive(Debug, Clone)]
pub struct Access {
    pub key: FileKey,
    pub canonical: CanonicalUri,
    pub may_edit: bool,
}

/// Resolves `uri` for `caller`. `ticket` is the raw `X-Cr-Purchase-Ticket`, if sent.
pub async fn resolve(
    store: &dyn Store,
    caller: &Caller,
    uri: &FileUri,
    ticket: Option<&str>,
    now: DateTime<Utc>,
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
                canonical: CanonicalUri::My { owner: id.clone(), path: uri.path.clone() },
                may_edit: true,
            })
        }
        FileSystem::Share { id, password } => {
            let manifest = load_share(store, id).await?.ok_or(PolicyError::ShareNotFound)?;
            if manifest.expires_at.is_some_and(|at| at <= now) {
                return Err(PolicyError::ShareNotFound);
            }
            let target = RelPath::parse_plain(&manifest.path)
                .map_err(|e| PolicyError::BadManifest(id.clone(), format!("path: {e}")))?;
            let is_owner = caller.user_id() == Some(manifest.owner.as_str());
            if !is_owner {
                if matches!(caller, Caller::Anonymous) && !manifest.allow_anonymous {
                    return Err(PolicyError::AnonymousDenied);
                }
                if let Some(hash) = &manifest.password_hash {
                    if !password_matches(hash, password.as_deref(), id)? {
                        return Err(PolicyError::WrongPassword);
                    }
                }
                if manifest.paid && !ticket_matches(&manifest.purchase_ticket_sha256, ticket) {
                    return Err(PolicyError::PurchaseRequired);
                }
            }
            let path = target.join(&uri.path).map_err(|_| PolicyError::ShareNotFound)?;
            Ok(Access {
                key: FileKey { owner: manifest.owner.clone(), path },
                canonical: CanonicalUri::Share { id: id.clone(), path: uri.path.clone() },
                may_edit: manifest.editable || is_owner,
            })
        }
    }
}

/// The store location of a canonical URI minted earlier (no permission check: the token that
/// carries the URI was granted it).
pub async fn locate(store: &dyn Store, uri: &FileUri) -> Result<FileKey, PolicyError> {
    match &uri.fs {
        FileSystem::My { owner: Some(owner) } => Ok(FileKey { owner: owner.clone(), path: uri.path.clone() }),
        FileSystem::My { owner: None } => Err(PolicyError::LoginRequired),
        FileSystem::Share { id, .. } => {
            let manifest = load_share(store, id).await?.ok_or(PolicyError::ShareNotFound)?;
            let target = RelPath::parse_plain(&manifest.path)
                .map_err(|e| PolicyError::BadManifest(id.clone(), format!("path: {e}")))?;
            let path = target.join(&uri.path).map_err(|_| PolicyError::ShareNotFound)?;
            Ok(FileKey { owner: manifest.owner, path })
        }
    }
}

pub async fn load_share(store: &dyn Store, id: &str) -> Result<Option<ShareManifest>, PolicyError> {
    if !is_valid_id(id) {
        return Ok(None);
    }
    let Some(raw) = store.get_object(&format!("shares/{id}.json")).await? else {
        return Ok(None);
    };
    let manifest: ShareManifest =
        serde_json::from_slice(&raw).map_err(|e| PolicyError::BadManifest(id.to_string(), e.to_string()))?;
    if !is_valid_id(&manifest.owner) {
        return Err(PolicyError::BadManifest(id.to_string(), "owner is not a valid user id".into()));
    }
    Ok(Some(manifest))
}

fn password_matches(hash: &str, given: Option<&str>, share: &str) -> Result<bool, PolicyError> {
    let parsed = PasswordHash::new(hash)
        .map_err(|_| PolicyError::BadManifest(share.to_string(), "password_hash is not an Argon2 PHC string".into()))?;
    Ok(given.is_some_and(|pw| Argon2::default().verify_password(pw.as_bytes(), &parsed).is_ok()))
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
    fn tickets_and_passwords() {
        let accepted = vec![sha256_hex("ticket-1")];
        assert!(ticket_matches(&accepted, Some("ticket-1")));
        assert!(!ticket_matches(&accepted, Some("ticket-2")));
        assert!(!ticket_matches(&accepted, None));
        let hash = hash_password("s3cret");
        assert!(password_matches(&hash, Some("s3cret"), "x").unwrap());
        assert!(!password_matches(&hash, Some("nope"), "x").unwrap());
        assert!(!password_matches(&hash, None, "x").unwrap());
    }
}
