//! File ids: the `{id}` of `/wopi/files/{id}`.
//!
//! Random, URL-safe, the same for every user of a file, stable across edits and across renames
//! made through wopigate, and revealing nothing of the path. Kept as two small objects in the
//! store, so any replica derives them without a shared database:
//! `ids/<id>.json` (id → owner and path) and `paths/<sha256(owner, path)>` (path → id).

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{FileGuard, FileKey, Store, StoreError};
use crate::uri::RelPath;

#[derive(Serialize, Deserialize)]
struct IdRecord {
    owner: String,
    path: String,
}

/// Whether `id` has the shape of a file id (so it can be used in object names safely).
pub fn is_file_id(id: &str) -> bool {
    id.len() == 22 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn path_object(key: &FileKey) -> String {
    let mut hasher = Sha256::new();
    hasher.update(key.owner.as_bytes());
    hasher.update([0]);
    hasher.update(key.path.as_plain().as_bytes());
    let digest = hasher.finalize();
    // Not `format!` per byte: viewerSession looks this name up on every call.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hex: String = digest.iter().flat_map(|b| [HEX[usize::from(b >> 4)] as char, HEX[usize::from(b & 15)] as char]).collect();
    format!("paths/{}/{}", &hex[..2], hex)
}

fn id_object(id: &str) -> String {
    format!("ids/{id}.json")
}

/// The id of the file at `key`, created on first use. Concurrent first uses agree on one id.
pub async fn file_id(store: &dyn Store, key: &FileKey) -> Result<String, StoreError> {
    let index = path_object(key);
    if let Some(id) = lookup(store, &index, key).await? {
        return Ok(id);
    }
    let mut bytes = [0u8; 16];
    rand::Rng::fill(&mut rand::thread_rng(), &mut bytes[..]);
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    store.put_object(&id_object(&id), &record(key)?).await?;
    if store.create_object(&index, id.as_bytes()).await? {
        return Ok(id);
    }
    // Another request indexed this path first: use its id, drop ours.
    store.delete_object(&id_object(&id)).await?;
    match lookup(store, &index, key).await? {
        Some(winner) => Ok(winner),
        None => Err(StoreError::Io(std::io::Error::other("file id index changed while creating it"))),
    }
}

/// The id of the file at `key` if it has one already (never creates one).
pub async fn existing_id(store: &dyn Store, key: &FileKey) -> Result<Option<String>, StoreError> {
    lookup(store, &path_object(key), key).await
}

/// The id recorded for `key`, when its record still points back at `key`.
async fn lookup(store: &dyn Store, index: &str, key: &FileKey) -> Result<Option<String>, StoreError> {
    let Some(raw) = store.get_object(index).await? else {
        return Ok(None);
    };
    let id = String::from_utf8_lossy(&raw).trim().to_string();
    if !is_file_id(&id) {
        return Ok(None);
    }
    match resolve(store, &id).await? {
        Some(found) if &found == key => Ok(Some(id)),
        // A stale index entry (the file was renamed away): drop it so a new id can be made.
        _ => {
            store.delete_object(index).await?;
            Ok(None)
        }
    }
}

/// The file an id names.
pub async fn resolve(store: &dyn Store, id: &str) -> Result<Option<FileKey>, StoreError> {
    if !is_file_id(id) {
        return Ok(None);
    }
    let Some(raw) = store.get_object(&id_object(id)).await? else {
        return Ok(None);
    };
    let Ok(record) = serde_json::from_slice::<IdRecord>(&raw) else {
        return Ok(None);
    };
    let Ok(path) = RelPath::parse_plain(&record.path) else {
        return Ok(None);
    };
    Ok(Some(FileKey { owner: record.owner, path }))
}

fn record(key: &FileKey) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&IdRecord { owner: key.owner.clone(), path: key.path.as_plain() })
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))
}

/// After a rename through wopigate: the id now names the new path (and keeps its history).
pub async fn moved(store: &dyn Store, id: &str, from: &FileKey, to: &FileKey) -> Result<(), StoreError> {
    store.put_object(&id_object(id), &record(to)?).await?;
    store.put_object(&path_object(to), id.as_bytes()).await?;
    store.delete_object(&path_object(from)).await
}

/// After a delete: the id names nothing any more.
pub async fn forget(store: &dyn Store, id: &str, key: &FileKey) -> Result<(), StoreError> {
    store.delete_object(&path_object(key)).await?;
    store.delete_object(&id_object(id)).await
}

/// The guard of the file at `key` (creating its id if it has none), taken so that the id still
/// names `key` once held: a rename that moved the id away meanwhile leaves the path to another
/// id, which is then taken instead.
pub async fn lock_path(store: &dyn Store, key: &FileKey) -> Result<(FileGuard, String), StoreError> {
    for _ in 0..10 {
        let id = file_id(store, key).await?;
        let guard = store.lock_file(&id).await?;
        if resolve(store, &id).await?.as_ref() == Some(key) {
            return Ok((guard, id));
        }
        guard.release().await;
    }
    Err(StoreError::Io(std::io::Error::other("the file id kept moving while taking its guard")))
}

/// The guard of the file `id` names, and where that file is now (under the guard, so a rename
/// or delete that ran before is seen). `None`: the id names nothing any more.
pub async fn lock_id(store: &dyn Store, id: &str) -> Result<Option<(FileGuard, FileKey)>, StoreError> {
    let guard = store.lock_file(id).await?;
    match resolve(store, id).await? {
        Some(key) => Ok(Some((guard, key))),
        None => {
            guard.release().await;
            Ok(None)
        }
    }
}
