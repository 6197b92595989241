//! Operator commands of the binary that touch the store (`wopigate put`, `wopigate versions`).

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::startup::{open_backends, StartError};
use crate::config::Config;
use crate::store::{ids, Entry, FileKey, FileMeta, Precondition, StoreError};
use crate::versions;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the input failed: {0}")]
    Input(std::io::Error),
    #[error("no such file")]
    NotFound,
}

/// The versions of the file at `key`: past ones oldest first, then the current one.
pub async fn versions(config: &Config, key: &FileKey) -> Result<Vec<versions::Listed>, AdminError> {
    let (store, _) = open_backends(config).await?;
    let current = match store.stat(key).await? {
        Some(Entry::File(meta)) => Some(meta),
        _ => None,
    };
    // A file never opened through wopigate has no id, and so no past versions.
    let Some(id) = ids::existing_id(store.as_ref(), key).await? else {
        return match current {
            Some(meta) => Ok(vec![versions::Listed { meta, by: None, current: true }]),
            None => Err(AdminError::NotFound),
        };
    };
    Ok(versions::list(store.as_ref(), &id, current).await?)
}

/// Streams `input` into the store as `key`, replacing what is there (kept as a past version).
pub async fn put(config: &Config, key: &FileKey, mut input: impl AsyncRead + Unpin) -> Result<FileMeta, AdminError> {
    let (store, _) = open_backends(config).await?;
    let mut upload = store.begin_upload(u64::MAX).await?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = match input.read(&mut buffer).await {
            Ok(n) => n,
            Err(e) => {
                upload.abort().await;
                return Err(AdminError::Input(e));
            }
        };
        if n == 0 {
            break;
        }
        if let Err(e) = upload.write(bytes::Bytes::copy_from_slice(&buffer[..n])).await {
            upload.abort().await;
            return Err(e.into());
        }
    }
    let staged = upload.finish().await?;
    // Under the file's guard, as every WOPI write: a concurrent save or rename of the same file
    // runs wholly before or after this one.
    let result = match ids::lock_path(store.as_ref(), key).await {
        Ok((guard, _)) => {
            let save = versions::Save { user: "operator", name: "wopigate put", flags: Default::default(), at: chrono::Utc::now(), operator: true };
            let result = versions::commit(store.as_ref(), &guard, &staged, key, Precondition::Any, &save, versions::Retention::of(config)).await;
            guard.release().await;
            result
        }
        Err(e) => Err(e),
    };
    if result.is_err() {
        store.discard(staged).await;
    }
    Ok(result?)
}
