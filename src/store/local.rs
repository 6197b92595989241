//! The embedded default store: a local directory.
//!
//! `cloudreve://my/<path>` of user `U` is the plain file `<root>/<U>/<path>`, so a person can drop
//! files in. Everything internal lives under `<root>/.wopigate/`: metadata objects in `objects/`,
//! past versions in `versions/<file id>/`, temporary files in `tmp/` (same file system, so a
//! rename into place is atomic), and advisory lock files in `locks/`, which make commits and
//! compare-and-set atomic even when several processes share the directory.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use crate::uri::RelPath;

use super::{
    check_object_name, Download, Entry, FileGuard, FileKey, HeldGuard, FileMeta, Precondition, Replaced, Staged, Store, StoreError, Upload,
};

const READ_CHUNK: usize = 256 * 1024;

pub struct LocalStore {
    paths: Arc<Paths>,
}

impl LocalStore {
    /// Opens (creating if needed) the store at `root`, keeping `keep_versions` past versions
    /// of each file.
    pub fn open(root: &Path, keep_versions: usize) -> std::io::Result<LocalStore> {
        std::fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        let internal = root.join(".wopigate");
        for dir in ["objects", "versions", "tmp", "locks"] {
            std::fs::create_dir_all(internal.join(dir))?;
        }
        let root_dir = rustix::fs::open(&root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        // Asked once: without openat2 (Linux before 5.6, a seccomp profile refusing it, valgrind)
        // every path takes the slow way.
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        let probe = rustix::fs::openat2(&root_dir, ".", OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), resolve);
        let beneath = AtomicBool::new(probe.is_ok());
        Ok(LocalStore { paths: Arc::new(Paths { root, internal, keep_versions, root_dir, beneath }) })
    }

    pub fn root(&self) -> &Path {
        &self.paths.root
    }

    /// For closures run on the blocking pool (owned, so they can move there).
    fn paths(&self) -> Arc<Paths> {
        self.paths.clone()
    }
}

/// Where everything is.
struct Paths {
    root: PathBuf,
    internal: PathBuf,
    keep_versions: usize,
    /// `root`, for resolving user paths beneath it in one system call (`Paths::beneath`).
    root_dir: OwnedFd,
    /// Whether the kernel has openat2 (Linux 5.6; a seccomp profile may also refuse it).
    beneath: AtomicBool,
}

/// What `read` serves: small content read already, or an open file to read `length` bytes of
/// from `start`.
enum Content {
    Whole(Bytes),
    Stream(File, u64, u64),
}

/// What `Paths::beneath` found.
enum Beneath {
    Opened(File),
    Missing,
    /// A symlink on the way, or no openat2: resolve the slow way.
    Unsure,
}

impl Paths {
    fn tmp(&self) -> PathBuf {
        self.internal.join("tmp")
    }

    fn object(&self, name: &str) -> PathBuf {
        self.internal.join("objects").join(name)
    }

    fn versions(&self, history: &str) -> PathBuf {
        self.internal.join("versions").join(history)
    }

    fn lock_file(&self, name: &str) -> PathBuf {
        self.internal.join("locks").join(format!("{name}.lck"))
    }

    /// Whether a real (symlink-free) path is a location of `owner`'s files: a symlink may not
    /// lead out of the store, into wopigate's own data, or into another user's files.
    fn is_user_path(&self, real: &Path, owner: &str) -> bool {
        real.starts_with(self.root.join(owner)) && !real.starts_with(&self.internal)
    }

    /// Where `key` is, symlinks not resolved.
    fn unresolved(&self, key: &FileKey) -> PathBuf {
        let mut path = self.root.join(&key.owner);
        for segment in key.path.segments() {
            path.push(segment);
        }
        path
    }

    /// A folder to move or delete must be one, not a symlink to one: acting on the link's
    /// target would move or delete a folder somewhere else.
    fn not_a_link(&self, key: &FileKey) -> Result<(), StoreError> {
        match std::fs::symlink_metadata(self.unresolved(key)) {
            Ok(meta) if meta.file_type().is_symlink() => Err(StoreError::Escape),
            _ => Ok(()),
        }
    }

    /// Opens `key` when no symlink is on its way: one openat2 confined to the root by the
    /// kernel (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), where resolving the slow way
    /// (`existing`) reads every component of the path as a link first. Paths through symlinks,
    /// which may stay within their owner's files, are left to `existing`, which checks where
    /// they lead.
    fn beneath(&self, key: &FileKey, flags: OFlags) -> Result<Beneath, StoreError> {
        if !self.beneath.load(Ordering::Relaxed) {
            return Ok(Beneath::Unsure);
        }
        let unresolved = self.unresolved(key);
        if !self.is_user_path(&unresolved, &key.owner) {
            return Err(StoreError::Escape);
        }
        match self.open_symlink_free(&unresolved, flags) {
            Ok(file) => Ok(Beneath::Opened(file)),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Ok(Beneath::Missing),
            // ELOOP: a symlink on the way; EXDEV: it would leave the root; anything else (a
            // refusal of this one file, ENAMETOOLONG…): as the slow way says.
            Err(_) => Ok(Beneath::Unsure),
        }
    }

    /// Opens `path` (inside the root) only if none of its components is a symlink, in one
    /// openat2 from the root; never blocking on a FIFO or becoming a controlling terminal.
    fn open_symlink_free(&self, path: &Path, flags: OFlags) -> Result<File, rustix::io::Errno> {
        let relative = path.strip_prefix(&self.root).map_err(|_| rustix::io::Errno::XDEV)?;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        rustix::fs::openat2(&self.root_dir, relative, open_flags(flags), Mode::empty(), resolve).map(File::from)
    }

    /// Opens what the slow way resolved (`existing`, symlink-free) refusing symlinks, so a
    /// folder swapped for a symlink after the path was checked is not followed (`Escape`).
    fn open_resolved(&self, real: &Path, flags: OFlags) -> Result<Option<File>, StoreError> {
        match self.open_symlink_free(real, flags) {
            Ok(file) => Ok(Some(file)),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Ok(None),
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::XDEV) => Err(StoreError::Escape),
            Err(e) => Err(std::io::Error::from(e).into()),
        }
    }

    /// The metadata of an existing user file or folder (symlinks followed and checked).
    fn existing_meta(&self, key: &FileKey) -> Result<Option<std::fs::Metadata>, StoreError> {
        let opened = self.open_user_path(key, OFlags::PATH)?;
        opened.map(|file| file.metadata()).transpose().map_err(Into::into)
    }

    /// An existing user file or folder opened for reading (symlinks followed and checked).
    fn open_existing(&self, key: &FileKey) -> Result<Option<File>, StoreError> {
        self.open_user_path(key, OFlags::RDONLY)
    }

    /// `key` opened with `flags` (`O_PATH` or `O_RDONLY`): the fast way when no symlink is on
    /// its way, else the checked slow way.
    fn open_user_path(&self, key: &FileKey, flags: OFlags) -> Result<Option<File>, StoreError> {
        match self.beneath(key, flags)? {
            Beneath::Opened(file) => Ok(Some(file)),
            Beneath::Missing => Ok(None),
            Beneath::Unsure => match self.existing(key)? {
                None => Ok(None),
                Some(real) if self.beneath.load(Ordering::Relaxed) => self.open_resolved(&real, flags),
                // No openat2: a plain open of the checked path, with the same flags.
                Some(real) => {
                    let extra = open_flags(flags) - OFlags::RDONLY - OFlags::CLOEXEC;
                    not_found_is_none(OpenOptions::new().read(true).custom_flags(extra.bits() as i32).open(real))
                }
            },
        }
    }

    /// The path of an existing user file or folder, symlinks resolved and checked; `None` if
    /// nothing is there.
    fn existing(&self, key: &FileKey) -> Result<Option<PathBuf>, StoreError> {
        let path = self.unresolved(key);
        let Some(real) = not_found_is_none(path.canonicalize())? else {
            return Ok(None);
        };
        if !self.is_user_path(&real, &key.owner) {
            return Err(StoreError::Escape);
        }
        Ok(Some(real))
    }

    /// Where a file at `key` is (or would be) written. Missing folders are created (as on S3,
    /// where folders are implicit), but only below an existing ancestor that is itself a user
    /// folder, so a symlink cannot redirect the creation; the name itself must not be a
    /// symlink out of the root either.
    fn writable(&self, key: &FileKey) -> Result<PathBuf, StoreError> {
        let name = key.path.file_name().ok_or(StoreError::NotFound)?;
        let segments = key.path.parent();
        let mut folder = self.root.join(&key.owner);
        for segment in segments.segments() {
            folder.push(segment);
        }
        let mut ancestor = folder.clone();
        let existing = loop {
            match ancestor.canonicalize() {
                Ok(real) => break real,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    if !ancestor.pop() {
                        return Err(StoreError::NotFound);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        if existing != self.root && !self.is_user_path(&existing, &key.owner) {
            return Err(StoreError::Escape);
        }
        if !existing.is_dir() {
            return Err(StoreError::NotFound);
        }
        std::fs::create_dir_all(&folder)?;
        let folder = folder.canonicalize()?;
        if !self.is_user_path(&folder, &key.owner) {
            return Err(StoreError::Escape);
        }
        let path = folder.join(name);
        if let Ok(real) = path.canonicalize() {
            if !self.is_user_path(&real, &key.owner) {
                return Err(StoreError::Escape);
            }
        }
        Ok(path)
    }
}

/// A version id derived from the file itself: modification time (ns) and size. Writes through
/// wopigate move the modification time strictly forward, so ids never repeat.
pub fn version_of(meta: &std::fs::Metadata) -> String {
    format!("{:x}-{:x}", nanos(meta.modified().unwrap_or(UNIX_EPOCH)), meta.len())
}

fn nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
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

/// The flags a user path is opened with: `flags` (`O_PATH` or `O_RDONLY`), close-on-exec, and
/// for reading never blocking on a FIFO nor becoming a controlling terminal (`O_PATH` takes no
/// other flags: openat2 refuses them).
fn open_flags(flags: OFlags) -> OFlags {
    if flags.contains(OFlags::PATH) {
        flags | OFlags::CLOEXEC
    } else {
        flags | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY
    }
}

/// Exactly `length` bytes at `start` if the page cache holds them all, without waiting for the
/// disk: preadv2 with `RWF_NOWAIT` (Linux 4.14) answers `EAGAIN` rather than read from it.
/// `None`: not all there (or no such call here); read them on the blocking pool instead.
fn read_cached(file: &File, start: u64, length: usize) -> Option<Bytes> {
    let mut data = vec![0; length];
    if length > 0 {
        let read = rustix::io::preadv2(file, &mut [std::io::IoSliceMut::new(&mut data)], start, rustix::io::ReadWriteFlags::NOWAIT);
        if read.ok()? != length {
            return None;
        }
    }
    Some(Bytes::from(data))
}

/// Up to `length` bytes from where `file` is, fewer if it ends first (a range judged on an
/// earlier size: the caller compares with the opened file's metadata). One read when the bytes
/// are there (`read_to_end` reads in growing steps: four calls for 64 KiB).
fn read_up_to(file: &mut File, length: usize) -> std::io::Result<Bytes> {
    let mut data = vec![0; length];
    let filled = fill(file, &mut data)?;
    data.truncate(filled);
    Ok(Bytes::from(data))
}

/// A small file whole: open and read until the end, nothing else (`std::fs::read` and
/// `read_to_end` also ask for the size and position first: two calls more, on every request that
/// resolves a file id, for objects of a few hundred bytes).
fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let mut data = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        let n = fill(&mut file, &mut chunk)?;
        data.extend_from_slice(&chunk[..n]);
        if n < chunk.len() {
            return Ok(data);
        }
    }
}

/// Reads into `buf` until it is full or the file ends; how many bytes were read.
fn fill(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Runs `f` right here: for metadata of small files (stat, a few hundred bytes of JSON), which
/// are page-cache hits taking microseconds, less than handing them to the blocking pool.
async fn inline<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    f()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
}

/// Holds an exclusive advisory lock on `path` (created if needed) while `f` runs: mutual
/// exclusion across threads and processes sharing the data directory.
fn with_flock<T>(path: &Path, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    file.lock()?;
    let result = f();
    let _ = file.unlock();
    result
}

/// Writes `data` to a fresh temporary file in `tmp_dir`, flushed to disk.
fn write_temp(tmp_dir: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    let tmp = tmp_dir.join(Uuid::new_v4().simple().to_string());
    let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    let result = file.write_all(data).and_then(|_| file.sync_all());
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Replaces `path` with `data` atomically (temp file, fsync, rename).
fn replace_file(paths: &Paths, path: &Path, data: &[u8]) -> Result<(), StoreError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = write_temp(&paths.tmp(), data)?;
    rename_durable(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(())
}

/// Renames into place and flushes the folder entry, so a crash keeps old or new, whole.
fn rename_durable(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    if let Some(parent) = to.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Moves `from` to `to` only if `to` does not exist (`Conflict` if it does): link() refuses an
/// existing name, then the old name goes; the folder entry is flushed.
fn move_without_replacing(from: &Path, to: &Path) -> Result<(), StoreError> {
    match std::fs::hard_link(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(StoreError::Conflict),
        Err(e) => return Err(e.into()),
    }
    std::fs::remove_file(from)?;
    if let Some(parent) = to.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// rename(2) that never replaces what is at `to` (renameat2's RENAME_NOREPLACE): a folder would
/// otherwise silently replace an empty folder of the target's name.
fn rename_no_replace(from: &Path, to: &Path) -> Result<(), StoreError> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| StoreError::Escape);
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::RENAME_NOREPLACE) };
    if rc == 0 {
        return Ok(());
    }
    match std::io::Error::last_os_error() {
        e if e.kind() == ErrorKind::AlreadyExists => Err(StoreError::Conflict),
        e => Err(e.into()),
    }
}

/// Removes the files in `dir` not modified for `older_than`: left by a crashed upload (an
/// upload in progress touches its file with every chunk). Returns how many.
fn remove_stale_temp_files(dir: &Path, older_than: Duration) -> std::io::Result<usize> {
    let Some(cutoff) = SystemTime::now().checked_sub(older_than) else { return Ok(0) };
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let stale = entry.metadata().is_ok_and(|m| m.is_file() && m.modified().is_ok_and(|t| t < cutoff));
        // Gone meanwhile (committed, or another process swept it): fine.
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Keeps the current content of `path` as past version `version` of `history` (a hard link:
/// no copy, and the name appears complete), then drops the oldest beyond `keep`.
fn keep_version(paths: &Paths, history: &str, path: &Path, version: &str) -> Result<(), StoreError> {
    check_object_name(history)?;
    let dir = paths.versions(history);
    std::fs::create_dir_all(&dir)?;
    match std::fs::hard_link(path, dir.join(version)) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    let mut kept: Vec<(u128, PathBuf)> = std::fs::read_dir(&dir)?
        .flatten()
        .filter_map(|e| Some((nanos(e.metadata().ok()?.modified().ok()?), e.path())))
        .collect();
    if kept.len() > paths.keep_versions {
        kept.sort();
        for (_, old) in &kept[..kept.len() - paths.keep_versions] {
            let _ = std::fs::remove_file(old);
        }
    }
    Ok(())
}

/// A file's guard on the local store: the flock'd lock file (closing it lets go).
struct HeldFlock(File);

#[async_trait]
impl HeldGuard for HeldFlock {
    async fn release(self: Box<Self>) {
        let _ = self.0.unlock();
    }
}

struct LocalUpload {
    file: tokio::fs::File,
    path: PathBuf,
    written: u64,
    limit: u64,
}

#[async_trait]
impl Upload for LocalUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.written += chunk.len() as u64;
        if self.written > self.limit {
            return Err(StoreError::TooLarge(self.limit));
        }
        self.file.write_all(&chunk).await?;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<Staged, StoreError> {
        let result = async {
            self.file.flush().await?;
            self.file.sync_all().await
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&self.path).await;
            return Err(e.into());
        }
        let handle = self.path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        Ok(Staged { handle, size: self.written })
    }

    async fn abort(self: Box<Self>) {
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}

#[async_trait]
impl Store for LocalStore {
    async fn stat(&self, key: &FileKey) -> Result<Option<Entry>, StoreError> {
        inline(|| {
            let Some(meta) = self.paths.existing_meta(key)? else {
                return Ok(None);
            };
            Ok(Some(if meta.is_dir() { Entry::Folder } else { Entry::File(file_meta(&meta)) }))
        })
        .await
    }

    async fn past_versions(&self, history: &str) -> Result<Vec<FileMeta>, StoreError> {
        check_object_name(history)?;
        let dir = self.paths().versions(history);
        blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut kept: Vec<FileMeta> = entries
                .flatten()
                .filter_map(|e| {
                    let meta = e.metadata().ok()?;
                    Some(FileMeta { version: e.file_name().into_string().ok()?, ..file_meta(&meta) })
                })
                .collect();
            kept.sort_by_key(|m| m.modified);
            Ok(kept)
        })
        .await
    }

    async fn stat_past_version(&self, history: &str, version: &str) -> Result<Option<FileMeta>, StoreError> {
        check_object_name(history)?;
        check_object_name(version)?;
        let path = self.paths().versions(history).join(version);
        let version = version.to_string();
        inline(move || {
            let Some(meta) = not_found_is_none(std::fs::metadata(&path))? else {
                return Ok(None);
            };
            // A past version is a hard link to the content as it was: same size and mtime.
            Ok(Some(FileMeta { version, ..file_meta(&meta) }))
        })
        .await
    }

    async fn read(
        &self,
        key: &FileKey,
        history: &str,
        version: Option<&str>,
        range: Option<(u64, u64)>,
    ) -> Result<Option<Download>, StoreError> {
        let past = match version {
            Some(v) => {
                check_object_name(history)?;
                check_object_name(v)?;
                Some((self.paths.versions(history).join(v), v.to_string()))
            }
            None => None,
        };
        // Opening is metadata, done right here as `stat` is; so is reading a small body the page
        // cache holds whole (preadv2 with RWF_NOWAIT says when it does not). Only reads that
        // would wait for the disk go to the blocking pool.
        let opened = inline(|| {
            let (opened, version) = match past {
                Some((path, version)) => (not_found_is_none(File::open(path))?, Some(version)),
                None => (self.paths.open_existing(key)?, None),
            };
            let Some(file) = opened else {
                return Ok(None);
            };
            // Metadata of the opened file itself: consistent with the bytes we stream even if
            // a commit replaces the name meanwhile. A folder, FIFO or device has no content.
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Ok(None);
            }
            let mut file_meta = file_meta(&meta);
            if let Some(v) = version {
                file_meta.version = v;
            }
            let (start, length) = match range {
                Some((start, end)) => (start, end - start + 1),
                None => (0, meta.len()),
            };
            if length <= READ_CHUNK as u64 {
                if let Some(data) = read_cached(&file, start, length.min(meta.len().saturating_sub(start)) as usize) {
                    return Ok(Some((Content::Whole(data), file_meta)));
                }
            }
            Ok(Some((Content::Stream(file, start, length), file_meta)))
        })
        .await?;
        let Some((content, meta)) = opened else {
            return Ok(None);
        };
        let stream = match content {
            Content::Whole(data) => futures_util::stream::once(async move { Ok(data) }).boxed(),
            // Up to one chunk, read in one trip to the blocking pool (streaming it takes two trips
            // more, and a chunk-sized buffer for a body that may be 4 KiB).
            Content::Stream(mut file, start, length) if length <= READ_CHUNK as u64 => {
                let data = blocking(move || {
                    file.seek(SeekFrom::Start(start))?;
                    Ok(read_up_to(&mut file, length as usize)?)
                })
                .await?;
                futures_util::stream::once(async move { Ok(data) }).boxed()
            }
            Content::Stream(mut file, start, length) => {
                file.seek(SeekFrom::Start(start))?;
                let reader = tokio::fs::File::from_std(file).take(length);
                ReaderStream::with_capacity(reader, READ_CHUNK).boxed()
            }
        };
        Ok(Some(Download { meta, stream }))
    }

    async fn begin_upload(&self, limit: u64) -> Result<Box<dyn Upload>, StoreError> {
        let path = self.paths().tmp().join(Uuid::new_v4().simple().to_string());
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await?;
        Ok(Box::new(LocalUpload { file, path, written: 0, limit }))
    }

    async fn lock_file(&self, history: &str) -> Result<FileGuard, StoreError> {
        check_object_name(history)?;
        let path = self.paths().lock_file(&format!("{history}.content"));
        // flock: exclusive across threads (each guard opens its own descriptor) and processes.
        let held = blocking(move || {
            let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
            file.lock()?;
            Ok(file)
        })
        .await?;
        Ok(FileGuard::new(history, Box::new(HeldFlock(held))))
    }

    async fn commit(
        &self,
        guard: &FileGuard,
        staged: &Staged,
        key: &FileKey,
        precondition: Precondition,
        replaced: Replaced,
    ) -> Result<FileMeta, StoreError> {
        check_object_name(&staged.handle)?;
        let paths = self.paths();
        let key = key.clone();
        let history = guard.history().to_string();
        let temp = paths.tmp().join(&staged.handle);
        blocking(move || {
            let target = paths.writable(&key)?;
            let current = not_found_is_none(std::fs::metadata(&target))?;
            if current.as_ref().is_some_and(|m| m.is_dir()) {
                return Err(StoreError::Conflict);
            }
            let holds = match (&precondition, &current) {
                (Precondition::Version(v), Some(m)) => &version_of(m) == v,
                (Precondition::Version(_), None) => return Err(StoreError::NotFound),
                (Precondition::Absent, existing) => existing.is_none(),
                (Precondition::Any, _) => true,
            };
            if !holds {
                return Err(StoreError::Conflict);
            }
            let mut modified = SystemTime::now();
            if let Some(old) = &current {
                if replaced == Replaced::Keep {
                    keep_version(&paths, &history, &target, &version_of(old))?;
                }
                // Strictly after the old time, even within the clock's granularity.
                let floor = old.modified()? + Duration::from_micros(1);
                modified = modified.max(floor);
            }
            OpenOptions::new().write(true).open(&temp)?.set_modified(modified)?;
            if current.is_none() {
                // Create: a name that appeared meanwhile (another file renamed onto it) is
                // refused, where rename() would replace it.
                move_without_replacing(&temp, &target)?;
            } else {
                rename_durable(&temp, &target)?;
            }
            Ok(file_meta(&std::fs::metadata(&target)?))
        })
        .await
    }

    async fn discard(&self, staged: Staged) {
        if check_object_name(&staged.handle).is_ok() {
            let _ = tokio::fs::remove_file(self.paths().tmp().join(staged.handle)).await;
        }
    }

    async fn rename(&self, _guard: &FileGuard, from: &FileKey, to: &FileKey) -> Result<(), StoreError> {
        let paths = self.paths();
        let (from, to) = (from.clone(), to.clone());
        blocking(move || {
            let source = paths.existing(&from)?.ok_or(StoreError::NotFound)?;
            let target = paths.writable(&to)?;
            move_without_replacing(&source, &target)
        })
        .await
    }

    async fn delete(&self, guard: &FileGuard, key: &FileKey) -> Result<(), StoreError> {
        let paths = self.paths();
        let key = key.clone();
        let history = guard.history().to_string();
        blocking(move || {
            let path = paths.existing(&key)?.ok_or(StoreError::NotFound)?;
            let meta = std::fs::metadata(&path)?;
            if meta.is_dir() {
                return Err(StoreError::NotFound);
            }
            keep_version(&paths, &history, &path, &version_of(&meta))?;
            std::fs::remove_file(&path)?;
            Ok(())
        })
        .await
    }

    async fn list(&self, key: &FileKey) -> Result<Option<Vec<(String, Entry)>>, StoreError> {
        let paths = self.paths();
        let key = key.clone();
        blocking(move || {
            let Some(real) = paths.existing(&key)? else {
                return Ok(key.path.is_root().then(Vec::new));
            };
            if !real.is_dir() {
                return Ok(None);
            }
            let mut children = Vec::new();
            for entry in std::fs::read_dir(&real)? {
                let entry = entry?;
                // Only names a key can hold; each child is resolved like any key, so a symlink
                // out of the store is left out rather than followed.
                let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
                let Ok(child) = RelPath::from_segments([name.as_str()]).and_then(|n| key.path.join(&n)) else { continue };
                let child = FileKey { owner: key.owner.clone(), path: child };
                let Ok(Some(path)) = paths.existing(&child) else { continue };
                let Some(meta) = not_found_is_none(std::fs::metadata(&path))? else { continue };
                children.push((name, if meta.is_dir() { Entry::Folder } else { Entry::File(file_meta(&meta)) }));
            }
            Ok(Some(children))
        })
        .await
    }

    async fn create_folder(&self, key: &FileKey) -> Result<(), StoreError> {
        let paths = self.paths();
        let key = key.clone();
        blocking(move || {
            let name = key.path.file_name().ok_or(StoreError::Conflict)?;
            let parent = FileKey { owner: key.owner.clone(), path: key.path.parent() };
            let folder = match paths.existing(&parent)? {
                Some(real) if real.is_dir() => real,
                Some(_) => return Err(StoreError::NotFound),
                // A user's root is there before anything is put in it.
                None if parent.path.is_root() => {
                    let root = paths.root.join(&key.owner);
                    std::fs::create_dir_all(&root)?;
                    root.canonicalize()?
                }
                None => return Err(StoreError::NotFound),
            };
            match std::fs::create_dir(folder.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(StoreError::Conflict),
                Err(e) => return Err(e.into()),
            }
            File::open(&folder)?.sync_all()?;
            Ok(())
        })
        .await
    }

    async fn delete_folder(&self, key: &FileKey) -> Result<(), StoreError> {
        let paths = self.paths();
        let key = key.clone();
        blocking(move || {
            if key.path.is_root() {
                return Err(StoreError::Conflict);
            }
            paths.not_a_link(&key)?;
            let real = paths.existing(&key)?.ok_or(StoreError::NotFound)?;
            if !real.is_dir() {
                return Err(StoreError::NotFound);
            }
            // rmdir refuses a folder with anything in it, atomically: a file created in it at
            // the same moment either makes this fail or comes after it.
            match std::fs::remove_dir(&real) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => Err(StoreError::Conflict),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn rename_folder(&self, from: &FileKey, to: &FileKey) -> Result<(), StoreError> {
        let paths = self.paths();
        let (from, to) = (from.clone(), to.clone());
        blocking(move || {
            paths.not_a_link(&from)?;
            let source = paths.existing(&from)?.ok_or(StoreError::NotFound)?;
            if !source.is_dir() || from.path.is_root() {
                return Err(StoreError::NotFound);
            }
            let name = to.path.file_name().ok_or(StoreError::Conflict)?;
            let parent = FileKey { owner: to.owner.clone(), path: to.path.parent() };
            let folder = paths.existing(&parent)?.filter(|p| p.is_dir()).ok_or(StoreError::NotFound)?;
            if folder.starts_with(&source) {
                // Into itself.
                return Err(StoreError::Conflict);
            }
            rename_no_replace(&source, &folder.join(name))?;
            File::open(&folder)?.sync_all()?;
            Ok(())
        })
        .await
    }

    fn max_path_bytes(&self, owner: &str) -> usize {
        // PATH_MAX counts the terminating NUL; the root, the owner and two slashes come first.
        (libc::PATH_MAX as usize - 1).saturating_sub(self.paths.root.as_os_str().len() + owner.len() + 2)
    }

    async fn get_object(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_object_name(name)?;
        let path = self.paths.object(name);
        inline(|| not_found_is_none(read_small(&path))).await
    }

    async fn put_object(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        check_object_name(name)?;
        let paths = self.paths();
        let path = paths.object(name);
        let data = data.to_vec();
        blocking(move || replace_file(&paths, &path, &data)).await
    }

    async fn create_object(&self, name: &str, data: &[u8]) -> Result<bool, StoreError> {
        check_object_name(name)?;
        let paths = self.paths();
        let path = paths.object(name);
        let data = data.to_vec();
        blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            // Written whole to a temp file, then hard-linked: the name appears complete or not
            // at all, and link() fails if it exists, across processes too.
            let tmp = write_temp(&paths.tmp(), &data)?;
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
        let path = self.paths().object(name);
        blocking(move || not_found_is_none(std::fs::remove_file(path)).map(|_| ())).await
    }

    async fn swap_object(&self, name: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool, StoreError> {
        check_object_name(name)?;
        let paths = self.paths();
        let path = paths.object(name);
        let lock = paths.lock_file(&name.replace('/', "_"));
        let expected = expected.map(<[u8]>::to_vec);
        let new = new.map(<[u8]>::to_vec);
        blocking(move || {
            with_flock(&lock, || {
                let current = not_found_is_none(std::fs::read(&path))?;
                if current != expected {
                    return Ok(false);
                }
                match new {
                    Some(data) => replace_file(&paths, &path, &data)?,
                    None => {
                        not_found_is_none(std::fs::remove_file(&path))?;
                    }
                }
                Ok(true)
            })
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let dir = self.paths.internal.clone();
        inline(move || std::fs::metadata(dir).map(|_| ()).map_err(Into::into)).await
    }

    async fn sweep_stale_uploads(&self, older_than: Duration) -> Result<usize, StoreError> {
        let tmp = self.paths().tmp();
        blocking(move || Ok(remove_stale_temp_files(&tmp, older_than)?)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::RelPath;

    fn key(path: &str) -> FileKey {
        FileKey { owner: "u1".into(), path: RelPath::parse_plain(path).unwrap() }
    }

    async fn upload(store: &LocalStore, data: &[u8]) -> Staged {
        let mut up = store.begin_upload(1 << 20).await.unwrap();
        up.write(Bytes::copy_from_slice(data)).await.unwrap();
        up.finish().await.unwrap()
    }

    /// What `stat` and `read` find, with openat2 (the fast path) and without it (the slow path a
    /// kernel without openat2 takes, and every path through a symlink): the same, for plain
    /// files and folders, symlinks within the owner's files (followed), and symlinks out of the
    /// root, into another user's files or into wopigate's own data (refused).
    #[tokio::test]
    async fn openat2_and_the_slow_path_agree() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.docx"), b"outside").unwrap();
        let store = LocalStore::open(dir.path(), 5).unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("u1/docs/deep")).unwrap();
        std::fs::create_dir_all(root.join("u2")).unwrap();
        std::fs::write(root.join("u1/docs/deep/a.docx"), b"plain").unwrap();
        std::fs::write(root.join("u2/theirs.docx"), b"theirs").unwrap();
        std::fs::write(root.join(".wopigate/objects/x.json"), b"{}").unwrap();
        let link = |target: &Path, name: &str| std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        link(Path::new("docs/deep/a.docx"), "u1/rel.docx");
        link(&root.join("u1/docs/deep/a.docx"), "u1/abs.docx");
        link(Path::new("docs"), "u1/folder");
        link(&outside.path().join("secret.docx"), "u1/out.docx");
        link(Path::new("../u2/theirs.docx"), "u1/other.docx");
        link(Path::new("../.wopigate/objects/x.json"), "u1/internal.docx");
        let cases: &[(&str, Option<&[u8]>)] = &[
            ("docs/deep/a.docx", Some(b"plain")),
            ("rel.docx", Some(b"plain")),
            ("abs.docx", Some(b"plain")),
            ("folder/deep/a.docx", Some(b"plain")),
            ("docs/missing.docx", None),
            ("docs/deep/a.docx/below.docx", None),
            ("out.docx", None),
            ("other.docx", None),
            ("internal.docx", None),
        ];
        async fn seen(store: &LocalStore, path: &str) -> (String, Option<Vec<u8>>) {
            let stat = format!("{:?}", store.stat(&key(path)).await.map(|e| e.map(|e| matches!(e, Entry::Folder))));
            let content = match store.read(&key(path), "h", None, None).await {
                Ok(Some(download)) => Some(content(download).await),
                _ => None,
            };
            (stat, content)
        }
        for (path, expected) in cases {
            let fast = seen(&store, path).await;
            if !store.paths.beneath.load(Ordering::Relaxed) {
                eprintln!("no openat2 here (kernel or seccomp): only the slow path was tested");
            }
            assert_eq!(fast.1.as_deref(), *expected, "{path}");
            store.paths.beneath.store(false, Ordering::Relaxed);
            let slow = seen(&store, path).await;
            store.paths.beneath.store(true, Ordering::Relaxed);
            assert_eq!(fast, slow, "{path}");
        }
        assert!(matches!(store.stat(&key("out.docx")).await, Err(StoreError::Escape)));
        assert!(matches!(store.stat(&key("folder")).await, Ok(Some(Entry::Folder))));
        let internal = FileKey { owner: ".wopigate".into(), path: RelPath::parse_plain("objects/x.json").unwrap() };
        assert!(matches!(store.stat(&internal).await, Err(StoreError::Escape)));
    }

    async fn content(download: Download) -> Vec<u8> {
        let mut stream = download.stream;
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk.unwrap());
        }
        data
    }

    /// A range judged on an earlier, larger size (the file was replaced by a smaller one
    /// meanwhile) reads what is there, with the opened file's size, for the caller to answer
    /// 416; it is no error (it was a 500 once small bodies were read whole).
    #[tokio::test]
    async fn a_range_past_the_end_reads_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), 5).unwrap();
        std::fs::create_dir_all(dir.path().join("u1")).unwrap();
        std::fs::write(dir.path().join("u1/small.docx"), b"0123456789").unwrap();
        let past = store.read(&key("small.docx"), "h", None, Some((100, 200))).await.unwrap().unwrap();
        assert_eq!(past.meta.size, 10);
        assert_eq!(content(past).await, b"");
        let straddling = store.read(&key("small.docx"), "h", None, Some((5, 200))).await.unwrap().unwrap();
        assert_eq!(content(straddling).await, b"56789");
        let whole = store.read(&key("small.docx"), "h", None, None).await.unwrap().unwrap();
        assert_eq!(content(whole).await, b"0123456789");
    }

    /// A FIFO (or device) in a user's folder has no content to serve, and opening it must not
    /// wait for a writer (it tied up a thread of the blocking pool for good).
    #[tokio::test]
    async fn a_fifo_is_no_file_and_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), 5).unwrap();
        std::fs::create_dir_all(dir.path().join("u1")).unwrap();
        rustix::fs::mknodat(rustix::fs::CWD, dir.path().join("u1/pipe.docx"), rustix::fs::FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).unwrap();
        std::os::unix::fs::symlink("pipe.docx", dir.path().join("u1/link.docx")).unwrap();
        for name in ["pipe.docx", "link.docx"] {
            let read = tokio::time::timeout(Duration::from_secs(5), store.read(&key(name), "h", None, None)).await;
            assert!(matches!(read, Ok(Ok(None))), "{name}");
        }
    }

    #[tokio::test]
    async fn symlink_out_of_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.docx"), b"x").unwrap();
        let store = LocalStore::open(dir.path(), 5).unwrap();
        std::fs::create_dir_all(dir.path().join("u1")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.docx"), dir.path().join("u1/link.docx")).unwrap();
        assert!(matches!(store.stat(&key("link.docx")).await, Err(StoreError::Escape)));
        let staged = upload(&store, b"new").await;
        let guard = store.lock_file("h").await.unwrap();
        assert!(matches!(store.commit(&guard, &staged, &key("link.docx"), Precondition::Any, Replaced::Keep).await, Err(StoreError::Escape)));
        assert_eq!(std::fs::read(outside.path().join("secret.docx")).unwrap(), b"x");
    }

    #[tokio::test]
    async fn commits_are_compare_and_set_and_keep_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), 2).unwrap();
        let g = store.lock_file("h").await.unwrap();
        let first = store.commit(&g, &upload(&store, b"one").await, &key("a.txt"), Precondition::Absent, Replaced::Keep).await.unwrap();
        let refused = upload(&store, b"two").await;
        let again = store.commit(&g, &refused, &key("a.txt"), Precondition::Absent, Replaced::Keep).await;
        assert!(matches!(again, Err(StoreError::Conflict)));
        // A refused commit leaves the upload staged: it can go elsewhere.
        store.commit(&g, &refused, &key("b.txt"), Precondition::Absent, Replaced::Keep).await.unwrap();
        let second =
            store.commit(&g, &upload(&store, b"two").await, &key("a.txt"), Precondition::Version(first.version.clone()), Replaced::Keep).await.unwrap();
        assert_ne!(first.version, second.version);
        let stale = upload(&store, b"3").await;
        assert!(matches!(store.commit(&g, &stale, &key("a.txt"), Precondition::Version(first.version.clone()), Replaced::Keep).await, Err(StoreError::Conflict)));
        store.discard(stale).await;
        let past = store.stat_past_version("h", &first.version).await.unwrap().unwrap();
        assert_eq!(past.size, 3);
        // Same size, back to back: versions still differ.
        let mut last = second;
        for i in 0..5u8 {
            let next = store.commit(&g, &upload(&store, &[i; 3]).await, &key("a.txt"), Precondition::Any, Replaced::Keep).await.unwrap();
            assert_ne!(next.version, last.version);
            last = next;
        }
        let kept = std::fs::read_dir(dir.path().join(".wopigate/versions/h")).unwrap().count();
        assert_eq!(kept, 2, "only the configured number of past versions is kept");
        drop(g);
        assert_eq!(std::fs::read_dir(dir.path().join(".wopigate/tmp")).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn sweep_removes_only_stale_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), 2).unwrap();
        let tmp = dir.path().join(".wopigate/tmp");
        let (stale, fresh) = (tmp.join("stale"), tmp.join("fresh"));
        std::fs::write(&stale, b"left by a crash").unwrap();
        std::fs::write(&fresh, b"in progress").unwrap();
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        File::options().write(true).open(&stale).unwrap().set_modified(two_hours_ago).unwrap();
        let mut writing = store.begin_upload(1 << 20).await.unwrap();
        writing.write(Bytes::from_static(b"chunk")).await.unwrap();
        assert_eq!(store.sweep_stale_uploads(Duration::from_secs(3600)).await.unwrap(), 1);
        assert!(!stale.exists() && fresh.exists());
        let staged = writing.finish().await.unwrap();
        let guard = store.lock_file("h").await.unwrap();
        store.commit(&guard, &staged, &key("a.txt"), Precondition::Absent, Replaced::Keep).await.unwrap();
    }

    #[tokio::test]
    async fn create_object_is_exclusive_and_swap_compares() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), 2).unwrap();
        assert!(store.create_object("ids/a.json", b"1").await.unwrap());
        assert!(!store.create_object("ids/a.json", b"2").await.unwrap());
        assert_eq!(store.get_object("ids/a.json").await.unwrap().unwrap(), b"1");
        assert!(store.get_object("../x").await.is_err());
        assert!(!store.swap_object("ids/a.json", Some(b"2"), Some(b"3")).await.unwrap());
        assert!(store.swap_object("ids/a.json", Some(b"1"), Some(b"3")).await.unwrap());
        assert!(store.swap_object("ids/a.json", Some(b"3"), None).await.unwrap());
        assert!(store.swap_object("ids/a.json", None, Some(b"4")).await.unwrap());
    }
}
