//! Share links wopigate creates itself, for GetShareUrl (files and containers) and the
//! `wopigate share` command alike: one function, `create`.
//!
//! A link is an ordinary share manifest, `shares/<share id>.json` (`policy::ShareManifest`, the
//! format the README documents), naming its file or folder by id, so policy treats it like any
//! share a platform wrote. Each target has at most one link per kind, found again through a
//! small index object `share-links/<target id>/<read-only|read-write>` holding the share id:
//! asking again answers the same link, and concurrent first requests agree on one (the index is
//! created only if absent). A link whose manifest was deleted (revoked), has expired, or was
//! changed to grant something else is replaced by a new one.
//!
//! Who may create links is decided by the callers, through policy (only owners).

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::policy::{load_share, share_object, PolicyError, ShareManifest};
use crate::store::{FileKey, Store, StoreError};

/// Length of the share ids made here (alphanumeric: about 119 bits).
const SHARE_ID_CHARS: usize = 20;

/// What a link lets its visitors do: WOPI's `X-WOPI-UrlType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareKind {
    ReadOnly,
    ReadWrite,
}

impl ShareKind {
    pub const ALL: [ShareKind; 2] = [ShareKind::ReadOnly, ShareKind::ReadWrite];

    /// `ReadOnly` or `ReadWrite` (any case); anything else is no kind.
    pub fn parse(value: &str) -> Option<ShareKind> {
        ShareKind::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(value.trim()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ShareKind::ReadOnly => "ReadOnly",
            ShareKind::ReadWrite => "ReadWrite",
        }
    }

    fn editable(self) -> bool {
        self == ShareKind::ReadWrite
    }

    fn index(self, target_id: &str) -> String {
        let kind = match self {
            ShareKind::ReadOnly => "read-only",
            ShareKind::ReadWrite => "read-write",
        };
        format!("share-links/{target_id}/{kind}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("no such file or folder")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The link for a share id: `template` (`WOPIGATE_SHARE_URL_TEMPLATE`) with `{share_id}` filled in.
pub fn link(template: &str, share_id: &str) -> String {
    template.replace("{share_id}", share_id)
}

/// The share id of the `kind` link of `target` (a file or folder of `target.owner`, whose id is
/// `target_id`), created when there is none that still serves. The caller has checked that the
/// asking user may share it.
pub async fn create(store: &dyn Store, target: &FileKey, target_id: &str, kind: ShareKind, now: DateTime<Utc>) -> Result<String, ShareError> {
    if store.stat(target).await?.is_none() {
        return Err(ShareError::NotFound);
    }
    let index = kind.index(target_id);
    for _ in 0..5 {
        let indexed = store.get_object(&index).await?;
        if let Some(raw) = &indexed {
            let id = String::from_utf8_lossy(raw).trim().to_string();
            if serves(store, &id, target, target_id, kind, now).await? {
                return Ok(id);
            }
        }
        let id: String = rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(SHARE_ID_CHARS).map(char::from).collect();
        let manifest = ShareManifest {
            owner: target.owner.clone(),
            target: Some(target_id.to_string()),
            path: None,
            password_hash: None,
            editable: kind.editable(),
            expires_at: None,
            allow_anonymous: true,
            paid: false,
            purchase_ticket_sha256: Vec::new(),
            watermark: None,
            download: true,
            print: true,
            copy: true,
        };
        let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        if !store.create_object(&share_object(&id), &bytes).await? {
            // That id is taken (by chance): draw another.
            continue;
        }
        let won = match &indexed {
            None => store.create_object(&index, id.as_bytes()).await?,
            Some(old) => store.swap_object(&index, Some(old), Some(id.as_bytes())).await?,
        };
        if won {
            return Ok(id);
        }
        // Another request indexed its link first: drop ours (nobody has seen it) and take theirs.
        store.delete_object(&share_object(&id)).await?;
    }
    Err(StoreError::Io(std::io::Error::other("the share link index kept changing while creating a link")).into())
}

/// Whether share `id` is still a `kind` link of `target`: its manifest exists, names the target
/// and its owner, grants exactly `kind` and has not expired.
async fn serves(store: &dyn Store, id: &str, target: &FileKey, target_id: &str, kind: ShareKind, now: DateTime<Utc>) -> Result<bool, ShareError> {
    let share = match load_share(store, id).await {
        Ok(Some(share)) => share,
        Ok(None) | Err(PolicyError::BadManifest(..)) => return Ok(false),
        Err(PolicyError::Store(e)) => return Err(e.into()),
        Err(_) => return Ok(false),
    };
    let m = &share.manifest;
    Ok(m.owner == target.owner
        && m.target.as_deref() == Some(target_id)
        && m.editable == kind.editable()
        && !m.expires_at.is_some_and(|at| at <= now)
        && share.root.as_ref() == Some(target))
}
