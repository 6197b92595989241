//! The upstream store: user files, their past versions, and small metadata objects (share
//! manifests, file-id records, locks, user info). One trait, a backend picked once at start-up.

pub mod ids;
pub mod local;
pub mod mutex;
pub mod s3;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::Stream;

use crate::uri::RelPath;

/// A user-visible file or folder: `<owner>/<path>` in the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub owner: String,
    pub path: RelPath,
}

impl FileKey {
    pub fn sibling(&self, name: &str) -> Result<FileKey, crate::uri::UriError> {
        let path = self.path.parent().join(&RelPath::from_segments([name])?)?;
        Ok(FileKey { owner: self.owner.clone(), path })
    }
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

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// An open read: the version read, and its bytes (the requested range of them).
pub struct Download {
    pub meta: FileMeta,
    pub stream: ByteStream,
}

/// What must hold for a staged upload to be committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// The current version is still this one (compare-and-set).
    Version(String),
    /// No file exists at the key (create).
    Absent,
    /// Whatever is there is replaced (its content still becomes a past version).
    Any,
}

/// What a commit does with the content it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaced {
    /// Kept as a past version.
    Keep,
    /// Dropped: it was only a step between two versions people keep.
    Drop,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("path resolves outside the store root")]
    Escape,
    #[error("metadata object name '{0}' is not allowed")]
    BadObjectName(String),
    #[error("upload exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("the file changed or exists: precondition failed")]
    Conflict,
    #[error("no such file")]
    NotFound,
    #[error("store I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// An upload being written. Bytes go to a temporary place; nothing is visible until `commit`.
#[async_trait]
pub trait Upload: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError>;
    /// Makes the upload durable (flushed); after this it can be committed.
    async fn finish(self: Box<Self>) -> Result<Staged, StoreError>;
    /// Throws the upload away (the client went away, a check failed).
    async fn abort(self: Box<Self>);
}

/// What a backend holds for a `FileGuard` (an flock'd file, a mutex token).
#[async_trait]
pub trait HeldGuard: Send + Sync + 'static {
    async fn release(self: Box<Self>);
}

/// Exclusive right to change one file (see `Store::lock_file`). `release` gives it back at
/// once; a guard merely dropped (an early return) is released in the background.
pub struct FileGuard {
    history: String,
    held: Option<Box<dyn HeldGuard>>,
}

impl FileGuard {
    pub(crate) fn new(history: &str, held: Box<dyn HeldGuard>) -> FileGuard {
        FileGuard { history: history.to_string(), held: Some(held) }
    }

    /// The file id whose history (past versions) the guarded file keeps.
    pub fn history(&self) -> &str {
        &self.history
    }

    pub async fn release(mut self) {
        if let Some(held) = self.held.take() {
            held.release().await;
        }
    }
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(held.release());
                }
                // No runtime (a test's teardown): backends still let go (an flock closes; a
                // mutex expires).
                Err(_) => drop(held),
            }
        }
    }
}

impl std::fmt::Debug for FileGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileGuard").field("history", &self.history).finish()
    }
}

/// A finished upload waiting to be committed (or discarded).
#[derive(Debug)]
pub struct Staged {
    /// Backend-specific handle (the temporary file's name on the local store).
    pub handle: String,
    pub size: u64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The file or folder at `key`, if any.
    async fn stat(&self, key: &FileKey) -> Result<Option<Entry>, StoreError>;

    /// A past version kept for the file whose history is `history` (its file id).
    async fn stat_past_version(&self, history: &str, version: &str) -> Result<Option<FileMeta>, StoreError>;

    /// Every past version kept for `history`, oldest first.
    async fn past_versions(&self, history: &str) -> Result<Vec<FileMeta>, StoreError>;

    /// Opens the current version (`version` = None) or a past one, optionally a byte range
    /// `[start, end]` (inclusive, already checked against the size by the caller's `stat`).
    async fn read(
        &self,
        key: &FileKey,
        history: &str,
        version: Option<&str>,
        range: Option<(u64, u64)>,
    ) -> Result<Option<Download>, StoreError>;

    /// Starts an upload of at most `limit` bytes.
    async fn begin_upload(&self, limit: u64) -> Result<Box<dyn Upload>, StoreError>;

    /// Takes the guard of the file whose history is `history` (its file id), waiting while
    /// another request or replica holds it. Every change of a file's content, name or existence
    /// runs under its guard, after re-reading where the file is: so any two operations on one
    /// file behave as if one ran after the other.
    async fn lock_file(&self, history: &str) -> Result<FileGuard, StoreError>;

    /// Puts a staged upload in place at `key` if `precondition` holds, atomically: readers see
    /// the old content or the new, never a part. The replaced content stays as a past version of
    /// the guard's file unless `replaced` says to drop it (an autosave superseding the previous
    /// autosave: see `versions`). On success the staged upload is used up; on failure it stays
    /// staged (to retry elsewhere, or `discard`).
    async fn commit(
        &self,
        guard: &FileGuard,
        staged: &Staged,
        key: &FileKey,
        precondition: Precondition,
        replaced: Replaced,
    ) -> Result<FileMeta, StoreError>;

    async fn discard(&self, staged: Staged);

    /// Renames the guard's file; `Conflict` when the target exists (never overwrites).
    async fn rename(&self, guard: &FileGuard, from: &FileKey, to: &FileKey) -> Result<(), StoreError>;

    /// Deletes the guard's file; its content is kept as a past version.
    async fn delete(&self, guard: &FileGuard, key: &FileKey) -> Result<(), StoreError>;

    /// The files and folders directly in the folder at `key`, by name, in no particular order;
    /// `None` when no folder is there. A user's root folder always exists (empty at first).
    async fn list(&self, key: &FileKey) -> Result<Option<Vec<(String, Entry)>>, StoreError>;

    /// Creates an empty folder at `key` in an existing folder; `Conflict` when a file or folder
    /// is there already, `NotFound` when the parent folder is not.
    async fn create_folder(&self, key: &FileKey) -> Result<(), StoreError>;

    /// Deletes the folder at `key` if it is empty; `Conflict` when anything is in it.
    async fn delete_folder(&self, key: &FileKey) -> Result<(), StoreError>;

    /// Moves the folder at `from`, with everything in it, to `to` (never replacing: `Conflict`
    /// when `to` exists). The caller holds the guards of what is inside (see
    /// `wopi::containers::rename_container`).
    async fn rename_folder(&self, from: &FileKey, to: &FileKey) -> Result<(), StoreError>;

    /// A small metadata object (`shares/<id>.json`, `ids/<id>.json`, …).
    async fn get_object(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes a metadata object, replacing any previous content atomically.
    async fn put_object(&self, name: &str, data: &[u8]) -> Result<(), StoreError>;

    /// Creates a metadata object only if absent; `false` when another writer got there first.
    async fn create_object(&self, name: &str, data: &[u8]) -> Result<bool, StoreError>;

    async fn delete_object(&self, name: &str) -> Result<(), StoreError>;

    /// Compare-and-set on a metadata object: `expected` is the content it must still have
    /// (`None`: must be absent); `new` replaces it (`None`: delete). `false` when it changed.
    async fn swap_object(&self, name: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool, StoreError>;

    /// The longest `path` (`as_plain`, in bytes) a key of `owner` may have here: the local
    /// store's paths must fit the system's PATH_MAX, S3 keys 1024 bytes.
    fn max_path_bytes(&self, owner: &str) -> usize;

    /// Whether the backend answers at all (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Removes what uploads cut short by a crash left behind (staged uploads; on S3 also the
    /// multipart uploads they had started) untouched for `older_than`. Returns how many.
    async fn sweep_stale_uploads(&self, older_than: Duration) -> Result<usize, StoreError>;
}

/// How often the running app sweeps stale uploads (and once at start-up).
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Sweeps stale uploads now, then every `SWEEP_EVERY`, for as long as the runtime lives.
pub async fn sweep_stale_uploads_forever(store: Arc<dyn Store>, older_than: Duration) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match store.sweep_stale_uploads(older_than).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed stale uploads left by a crash"),
            Err(e) => tracing::warn!(error = %e, "sweeping stale uploads failed; trying again in an hour"),
        }
    }
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
