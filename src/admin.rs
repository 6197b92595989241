//! Operator commands of the binary that touch the store (`wopigate put`).

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::startup::{open_backends, StartError};
use crate::config::Config;
use crate::store::{ids, FileKey, FileMeta, Precondition, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the input failed: {0}")]
    Input(std::io::Error),
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
            let result = store.commit(&guard, &staged, key, Precondition::Any).await;
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
