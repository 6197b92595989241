//! The upstream store: user files, their past versions, and small metadata objects (share
//! manifests, file-id records). One trait, a backend picked once at start-up.

pub mod ids;
pub mod local;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::uri::RelPath;

/// A user-visible file or folder: `<owner>/<path>` in the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub owner: String,
    pub path: RelPath,
}

/// What the store knows of one version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub size: u64,
    pub modified: DateTime<Utc>,
    /// Changes on every content change and never repeats for the file.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File(FileMeta),
    Folder,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("path resolves outside the store root")]
    Escape,
    #[error("metadata object name '{0}' is not allowed")]
    BadObjectName(String),
    #[error("store I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The file or folder at `key`, if any.
    async fn stat(&self, key: &FileKey) -> Result<Option<Entry>, StoreError>;

    /// A past version kept for the file whose history is `history` (its file id).
    async fn stat_past_version(&self, history: &str, version: &str) -> Result<Option<FileMeta>, StoreError>;

    /// A small metadata object (`shares/<id>.json`, `ids/<id>.json`, …).
    async fn get_object(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes a metadata object, replacing any previous content atomically.
    async fn put_object(&self, name: &str, data: &[u8]) -> Result<(), StoreError>;

    /// Creates a metadata object only if absent; `false` when another writer got there first.
    async fn create_object(&self, name: &str, data: &[u8]) -> Result<bool, StoreError>;

    async fn delete_object(&self, name: &str) -> Result<(), StoreError>;

    /// Whether the backend answers at all (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Metadata object names are relative paths we build ourselves; refuse anything else.
pub fn check_object_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name.split('/').all(|s| {
            !s.is_empty() && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadObjectName(name.chars().take(64).collect()))
    }
}
