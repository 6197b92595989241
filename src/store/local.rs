//! The embedded default store: a local directory.
//!
//! `cloudreve://my/<path>` of user `U` is the plain file `<root>/<U>/<path>`, so a person can drop
//! files in. Everything internal lives under `<root>/.wopigate/`: metadata objects in `objects/`,
//! past versions in `versions/<file id>/`, temporary files in `tmp/` (same file system, so a
//! rename into place is atomic).

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{check_object_name, Entry, FileKey, FileMeta, Store, StoreError};

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> std::io::Result<LocalStore> {
        std::fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        for dir in ["objects", "versions", "tmp"] {
            std::fs::create_dir_all(root.join(".wopigate").join(dir))?;
        }
        Ok(LocalStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn internal(&self) -> PathBuf {
        self.root.join(".wopigate")
    }

    /// The on-disk path of a user file. The path is validated segment by segment already;
    /// symlinks are resolved and checked where the file is touched.
    fn file_path(&self, key: &FileKey) -> PathBuf {
        let mut path = self.root.join(&key.owner);
        for segment in key.path.segments() {
            path.push(segment);
        }
        path
    }
}

/// A version id derived from the file itself: modification time (ns) and size. Writes through
/// wopigate move the modification time strictly forward, so ids never repeat.
pub fn version_of(meta: &std::fs::Metadata) -> String {
    let nanos = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}-{:x}", nanos, meta.len())
}

fn file_meta(meta: &std::fs::Metadata) -> FileMeta {
    let modified: DateTime<Utc> = meta.modified().map(DateTime::<Utc>::from).unwrap_or_default();
    FileMeta { size: meta.len(), modified, version: version_of(meta) }
}

fn not_found_is_none<T>(result: std::io::Result<T>) -> Result<Option<T>, StoreError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
}

/// Writes `data` to a fresh temporary file in `tmp_dir`, flushed to disk.
fn write_temp(tmp_dir: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    let tmp = tmp_dir.join(Uuid::new_v4().simple().to_string());
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    let result = file.write_all(data).and_then(|_| file.sync_all());
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

#[async_trait]
impl Store for LocalStore {
    async fn stat(&self, key: &FileKey) -> Result<Option<Entry>, StoreError> {
        let path = self.file_path(key);
        let root = self.root.clone();
        let internal = self.internal();
        blocking(move || {
            // Symlinks are followed, then the real location must still be a user file.
            let Some(real) = not_found_is_none(path.canonicalize())? else {
                return Ok(None);
            };
            if !real.starts_with(&root) || real.starts_with(&internal) {
                return Err(StoreError::Escape);
            }
            let Some(meta) = not_found_is_none(std::fs::metadata(&real))? else {
                return Ok(None);
            };
            Ok(Some(if meta.is_dir() { Entry::Folder } else { Entry::File(file_meta(&meta)) }))
        })
        .await
    }

    async fn stat_past_version(&self, history: &str, version: &str) -> Result<Option<FileMeta>, StoreError> {
        check_object_name(history)?;
        check_object_name(version)?;
        let path = self.internal().join("versions").join(history).join(version);
        blocking(move || {
            let Some(meta) = not_found_is_none(std::fs::metadata(&path))? else {
                return Ok(None);
            };
            // Past versions are named by the version they were; their own mtime is when the
            // copy was made, so only size and modification time come from the file.
            let mut fm = file_meta(&meta);
            fm.version = version_from_name(&path).unwrap_or(fm.version);
            Ok(Some(fm))
        })
        .await
    }

    async fn get_object(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_object_name(name)?;
        let path = self.internal().join("objects").join(name);
        blocking(move || not_found_is_none(std::fs::read(path))).await
    }

    async fn put_object(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        check_object_name(name)?;
        let path = self.internal().join("objects").join(name);
        let tmp_dir = self.internal().join("tmp");
        let data = data.to_vec();
        blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = write_temp(&tmp_dir, &data)?;
            std::fs::rename(&tmp, &path).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })?;
            Ok(())
        })
        .await
    }

    async fn create_object(&self, name: &str, data: &[u8]) -> Result<bool, StoreError> {
        check_object_name(name)?;
        let path = self.internal().join("objects").join(name);
        let tmp_dir = self.internal().join("tmp");
        let data = data.to_vec();
        blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            // Written whole to a temp file, then hard-linked: the name appears complete or not
            // at all, and link() fails if it exists, across processes too.
            let tmp = write_temp(&tmp_dir, &data)?;
            let linked = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn delete_object(&self, name: &str) -> Result<(), StoreError> {
        check_object_name(name)?;
        let path = self.internal().join("objects").join(name);
        blocking(move || not_found_is_none(std::fs::remove_file(path)).map(|_| ())).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let dir = self.internal();
        blocking(move || std::fs::metadata(dir).map(|_| ()).map_err(Into::into)).await
    }
}

fn version_from_name(path: &Path) -> Option<String> {
    path.file_name()?.to_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::RelPath;

    #[tokio::test]
    async fn symlink_out_of_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.docx"), b"x").unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("u1")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.docx"), dir.path().join("u1/link.docx")).unwrap();
        let key = FileKey { owner: "u1".into(), path: RelPath::parse_plain("link.docx").unwrap() };
        assert!(matches!(store.stat(&key).await, Err(StoreError::Escape)));
    }

    #[tokio::test]
    async fn create_object_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        assert!(store.create_object("ids/a.json", b"1").await.unwrap());
        assert!(!store.create_object("ids/a.json", b"2").await.unwrap());
        assert_eq!(store.get_object("ids/a.json").await.unwrap().unwrap(), b"1");
        assert!(store.get_object("../x").await.is_err());
    }
}
