//! The S3-compatible store, for many replicas. Same key layout as the local store:
//! `<prefix><owner>/<path>` for user files, `<prefix>.wopigate/…` for everything internal.
//!
//! Uploads stream as a multipart upload into `.wopigate/tmp/` (memory bounded by the part
//! size); a commit copies the staged object into place server-side. object_store cannot list a
//! bucket's multipart uploads, so each one started is on record in `.wopigate/uploads/` until it
//! completes or aborts: `sweep_stale_uploads` aborts those a crash left, and deletes staged
//! objects left in `.wopigate/tmp/`. S3 has no atomic rename or compare-and-swap on content, so
//! every check-then-write runs under a `CommitMutex` (Redis, or conditional-create marker objects
//! when the server honours `If-None-Match`).
//! Versions: each upload gets a version id in object metadata; the replaced content is copied
//! to `.wopigate/versions/<file id>/<version>` (works whether or not the bucket versions).
//! The id starts with a time in microseconds, which is the file's modification time: the
//! object's `Last-Modified` has whole seconds only, too coarse for Collabora's check that
//! nothing changed since it loaded the file.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, ClientOptions, GetOptions, GetRange, MultipartId, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutMode, PutOptions, PutPayload, RetryConfig,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::mutex::CommitMutex;
use super::{
    check_object_name, Download, Entry, FileGuard, FileKey, FileMeta, HeldGuard, Precondition, Replaced, Staged, Store, StoreError, Upload,
};
use crate::config::S3Config;

const VERSION_ATTR: &str = "wopigate-version";
/// The object that makes an empty folder exist (S3 knows only names below a prefix). Its name
/// starts with a dot, which no file created through wopigate has (`wopi::names`).
const FOLDER_MARKER: &str = ".folder";

/// An object_store error as ours. Messages name the bucket and key, never credentials.
pub fn store_error(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => StoreError::Conflict,
        other => StoreError::Io(std::io::Error::other(other.to_string())),
    }
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    /// The same client, for the part-by-part multipart calls.
    multipart: Arc<dyn MultipartStore>,
    prefix: String,
    mutex: Arc<dyn CommitMutex>,
    part_size: usize,
    keep_versions: usize,
    timeout: Duration,
}

/// The object_store client for the configured bucket: bounded timeouts and few retries, so a
/// server that is down makes requests fail fast instead of hanging.
pub fn client(config: &S3Config, timeout: Duration) -> Result<Arc<AmazonS3>, object_store::Error> {
    let options = ClientOptions::new()
        .with_timeout(timeout)
        .with_connect_timeout(timeout.min(Duration::from_secs(5)))
        .with_allow_http(config.endpoint.starts_with("http://"));
    let retry = RetryConfig { max_retries: 1, retry_timeout: timeout, ..Default::default() };
    let store = AmazonS3Builder::new()
        .with_endpoint(&config.endpoint)
        .with_region(&config.region)
        .with_bucket_name(&config.bucket)
        .with_access_key_id(&config.access_key_id)
        .with_secret_access_key(config.secret_access_key.expose())
        .with_virtual_hosted_style_request(!config.path_style)
        .with_disable_tagging(true)
        .with_client_options(options)
        .with_retry(retry)
        .build()?;
    Ok(Arc::new(store))
}

impl S3Store {
    pub fn new(
        client: Arc<AmazonS3>,
        config: &S3Config,
        mutex: Arc<dyn CommitMutex>,
        keep_versions: usize,
        timeout: Duration,
    ) -> Self {
        S3Store {
            store: client.clone(),
            multipart: client,
            prefix: config.prefix.clone(),
            mutex,
            part_size: config.part_size,
            keep_versions,
            timeout,
        }
    }

    fn file_path(&self, key: &FileKey) -> Path {
        let mut s = format!("{}{}", self.prefix, key.owner);
        for segment in key.path.segments() {
            s.push('/');
            s.push_str(segment);
        }
        Path::from(s)
    }

    fn internal(&self, rest: &str) -> Path {
        Path::from(format!("{}.wopigate/{rest}", self.prefix))
    }

    fn object(&self, name: &str) -> Path {
        self.internal(&format!("objects/{name}"))
    }

    fn version_path(&self, history: &str, version: &str) -> Path {
        self.internal(&format!("versions/{history}/{version}"))
    }

    fn tmp(&self, handle: &str) -> Path {
        self.internal(&format!("tmp/{handle}"))
    }

    fn upload_record(&self, handle: &str) -> Path {
        self.internal(&format!("uploads/{handle}.json"))
    }

    /// Aborts the multipart upload a record names and deletes the record.
    async fn abort_recorded(&self, record: &Path) -> Result<(), StoreError> {
        let bytes = match self.store.get(record).await {
            Ok(result) => result.bytes().await.map_err(store_error)?,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(store_error(e)),
        };
        // Only uploads into our own staging area: a record is never a way to reach elsewhere.
        let staging = format!("{}.wopigate/tmp/", self.prefix);
        if let Ok(upload) = serde_json::from_slice::<UploadRecord>(&bytes) {
            if upload.path.starts_with(&staging) {
                match self.multipart.abort_multipart(&Path::from(upload.path), &upload.upload_id).await {
                    Ok(()) => {}
                    // Completed or aborted meanwhile.
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(store_error(e)),
                }
            }
        }
        match self.store.delete(record).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Metadata of an object, with its version id (ours, or derived for foreign objects).
    async fn head(&self, path: &Path) -> Result<Option<FileMeta>, StoreError> {
        match self.store.get_opts(path, GetOptions { head: true, ..Default::default() }).await {
            Ok(result) => Ok(Some(meta_of(&result.meta, &result.attributes))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Runs `f` while holding the named mutex.
    async fn exclusive<T, F>(&self, name: &str, f: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, StoreError>>,
    {
        let name = mutex_name(name);
        let token = self.mutex.acquire(&name, self.timeout).await?;
        let result = f.await;
        self.mutex.release(&name, &token).await;
        result
    }

    /// Writes the staged object to `target` under a version stamped after `after`. A server-side
    /// copy keeps the source's metadata, so the bytes stream through here (rarely needed).
    async fn restamp(&self, tmp: &Path, target: &Path, after: DateTime<Utc>) -> Result<(), StoreError> {
        let micros = Utc::now().timestamp_micros().max(after.timestamp_micros() + 1);
        let mut upload = Box::new(S3Upload::new(self, target.clone(), version_at(micros), u64::MAX));
        let mut source = self.store.get(tmp).await.map_err(store_error)?.into_stream();
        while let Some(chunk) = source.next().await {
            if let Err(e) = async { upload.write(chunk.map_err(store_error)?).await }.await {
                upload.abort().await;
                return Err(e);
            }
        }
        upload.finish().await.map(|_| ())
    }

    async fn keep_version(&self, history: &str, path: &Path, version: &str) -> Result<(), StoreError> {
        check_object_name(history)?;
        check_object_name(version)?;
        self.store.copy(path, &self.version_path(history, version)).await.map_err(store_error)?;
        let prefix = self.internal(&format!("versions/{history}"));
        let mut kept: Vec<_> = self.store.list(Some(&prefix)).try_collect().await.map_err(store_error)?;
        if kept.len() > self.keep_versions {
            kept.sort_by_key(|m| m.last_modified);
            for old in &kept[..kept.len() - self.keep_versions] {
                let _ = self.store.delete(&old.location).await;
            }
        }
        Ok(())
    }
}

/// A file's guard on S3: its mutex.
struct HeldMutex {
    mutex: Arc<dyn CommitMutex>,
    name: String,
    token: String,
}

#[async_trait]
impl HeldGuard for HeldMutex {
    async fn release(self: Box<Self>) {
        self.mutex.release(&self.name, &self.token).await;
    }
}

/// Mutex names are object names: hash whatever they protect.
fn mutex_name(name: &str) -> String {
    Sha256::digest(name.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn meta_of(meta: &object_store::ObjectMeta, attributes: &Attributes) -> FileMeta {
    let ours = attributes
        .get(&Attribute::Metadata(VERSION_ATTR.into()))
        .map(|v| v.as_ref().to_string())
        .filter(|v| check_object_name(v).is_ok());
    match ours {
        Some(version) => FileMeta { size: meta.size, modified: version_time(&version).unwrap_or(meta.last_modified), version },
        None => {
            // An object written by something else: its ETag and size name the content. Not its
            // time: a rename (a server-side copy) changes that, and a save racing the rename
            // would be refused as a conflict.
            let etag: String = meta.e_tag.as_deref().unwrap_or("").chars().filter(char::is_ascii_alphanumeric).take(40).collect();
            let version = format!("e{etag}-{:x}", meta.size);
            FileMeta { size: meta.size, modified: meta.last_modified, version }
        }
    }
}

/// A version id stamped `micros` (µs since the epoch, hex), unique by its random part.
fn version_at(micros: i64) -> String {
    format!("{micros:x}-{}", &Uuid::new_v4().simple().to_string()[..8])
}

/// The time a version id of ours carries.
fn version_time(version: &str) -> Option<DateTime<Utc>> {
    let (micros, _) = version.split_once('-')?;
    DateTime::from_timestamp_micros(i64::from_str_radix(micros, 16).ok()?)
}

/// What `.wopigate/uploads/<handle>.json` says of a multipart upload in progress. Rewritten
/// after every part, so its modification time tells how long the upload has been idle.
#[derive(Serialize, Deserialize)]
struct UploadRecord {
    path: String,
    upload_id: String,
    started: chrono::DateTime<Utc>,
}

/// Parts being sent at once: memory stays at most this many parts plus the one being filled.
const PARTS_IN_FLIGHT: usize = 2;

/// A multipart upload, driven part by part through `MultipartStore` (its id is on record).
struct Multipart {
    id: MultipartId,
    /// The record's content, rewritten after each part.
    record: Bytes,
    in_flight: JoinSet<Result<(usize, PartId), StoreError>>,
    sent: Vec<(usize, PartId)>,
    next: usize,
}

impl Multipart {
    /// Waits for one part in flight; its error is the upload's.
    async fn join_one(&mut self) -> Result<(), StoreError> {
        match self.in_flight.join_next().await {
            Some(Ok(Ok(part))) => {
                self.sent.push(part);
                Ok(())
            }
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(StoreError::Io(std::io::Error::other(e.to_string()))),
            None => Ok(()),
        }
    }
}

/// An upload that stays one PUT while it fits in a part, and becomes a multipart upload
/// (at most two parts in flight) once it outgrows one: memory is bounded by the part size, and
/// small or empty files cost a single request (S3 rejects empty parts).
struct S3Upload {
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    path: Path,
    record: Path,
    attributes: Attributes,
    part_size: usize,
    buffer: VecDeque<Bytes>,
    buffered: usize,
    upload: Option<Multipart>,
    handle: String,
    written: u64,
    limit: u64,
}

impl S3Upload {
    /// An upload to `path` whose object will carry `version`; `handle` names its record.
    fn new(store: &S3Store, path: Path, version: String, limit: u64) -> S3Upload {
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::Metadata(VERSION_ATTR.into()), AttributeValue::from(version.clone()));
        S3Upload {
            store: store.store.clone(),
            multipart: store.multipart.clone(),
            path,
            record: store.upload_record(&version),
            attributes,
            part_size: store.part_size,
            buffer: VecDeque::new(),
            buffered: 0,
            upload: None,
            handle: version,
            written: 0,
            limit,
        }
    }

    /// Starts the multipart upload and puts it on record. A crash between the two leaves an
    /// upload nobody knows of: the window is one request long.
    async fn start_multipart(&self) -> Result<Multipart, StoreError> {
        let options = PutMultipartOptions { attributes: self.attributes.clone(), ..Default::default() };
        let id = self.multipart.create_multipart_opts(&self.path, options).await.map_err(store_error)?;
        let record = UploadRecord { path: self.path.to_string(), upload_id: id.clone(), started: Utc::now() };
        let record = Bytes::from(serde_json::to_vec(&record).map_err(|e| StoreError::Io(std::io::Error::other(e)))?);
        if let Err(e) = self.store.put(&self.record, PutPayload::from(record.clone())).await {
            let _ = self.multipart.abort_multipart(&self.path, &id).await;
            return Err(store_error(e));
        }
        Ok(Multipart { id, record, in_flight: JoinSet::new(), sent: Vec::new(), next: 0 })
    }

    /// The first `len` buffered bytes (all of them when fewer), as one payload.
    fn take(&mut self, len: usize) -> PutPayload {
        let mut taken = Vec::new();
        let mut missing = len;
        while missing > 0 {
            let Some(mut chunk) = self.buffer.pop_front() else { break };
            if chunk.len() > missing {
                self.buffer.push_front(chunk.split_off(missing));
            }
            missing -= chunk.len();
            taken.push(chunk);
        }
        self.buffered -= len - missing;
        taken.into_iter().collect()
    }

    /// Sends the next part, once fewer than `PARTS_IN_FLIGHT` are on their way.
    async fn send_part(&mut self, part: PutPayload) -> Result<(), StoreError> {
        if self.upload.is_none() {
            self.upload = Some(self.start_multipart().await?);
        }
        let Some(upload) = self.upload.as_mut() else { return Err(StoreError::NotFound) };
        while upload.in_flight.len() >= PARTS_IN_FLIGHT {
            upload.join_one().await?;
        }
        let (store, multipart) = (self.store.clone(), self.multipart.clone());
        let (path, record_path) = (self.path.clone(), self.record.clone());
        let (id, record, index) = (upload.id.clone(), upload.record.clone(), upload.next);
        upload.next += 1;
        upload.in_flight.spawn(async move {
            let part = multipart.put_part(&path, &id, index, part).await.map_err(store_error)?;
            // Still alive: the sweep leaves alone what was touched within its age. A failed
            // touch only makes an idle hour count from the part before.
            let _ = store.put(&record_path, PutPayload::from(record)).await;
            Ok((index, part))
        });
        Ok(())
    }

    /// Sends the rest, waits for every part and completes the upload.
    async fn complete_multipart(&mut self) -> Result<(), StoreError> {
        if self.buffered > 0 {
            let last = self.take(self.buffered);
            self.send_part(last).await?;
        }
        let Some(upload) = self.upload.as_mut() else { return Err(StoreError::NotFound) };
        while !upload.in_flight.is_empty() {
            upload.join_one().await?;
        }
        let mut sent = std::mem::take(&mut upload.sent);
        sent.sort_by_key(|(index, _)| *index);
        let parts = sent.into_iter().map(|(_, part)| part).collect();
        self.multipart.complete_multipart(&self.path, &upload.id, parts).await.map_err(store_error)?;
        Ok(())
    }

    /// Stops the parts in flight, aborts the multipart upload and drops its record.
    async fn abort_multipart(&mut self) {
        if let Some(mut upload) = self.upload.take() {
            upload.in_flight.abort_all();
            while upload.in_flight.join_next().await.is_some() {}
            let _ = self.multipart.abort_multipart(&self.path, &upload.id).await;
            let _ = self.store.delete(&self.record).await;
        }
    }
}

#[async_trait]
impl Upload for S3Upload {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.written += chunk.len() as u64;
        if self.written > self.limit {
            return Err(StoreError::TooLarge(self.limit));
        }
        self.buffered += chunk.len();
        self.buffer.push_back(chunk);
        // A part is cut only when more bytes follow it: one part's worth stays a single PUT,
        // and the last part is never empty.
        while self.buffered > self.part_size {
            let part = self.take(self.part_size);
            self.send_part(part).await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<Staged, StoreError> {
        if self.upload.is_some() {
            if let Err(e) = self.complete_multipart().await {
                self.abort_multipart().await;
                return Err(e);
            }
            let _ = self.store.delete(&self.record).await;
        } else {
            let payload = self.take(self.buffered);
            let options = PutOptions { attributes: self.attributes.clone(), ..Default::default() };
            self.store.put_opts(&self.path, payload, options).await.map_err(store_error)?;
        }
        Ok(Staged { handle: self.handle.clone(), size: self.written })
    }

    async fn abort(mut self: Box<Self>) {
        self.abort_multipart().await;
    }
}

#[async_trait]
impl Store for S3Store {
    async fn stat(&self, key: &FileKey) -> Result<Option<Entry>, StoreError> {
        let path = self.file_path(key);
        if !key.path.is_root() {
            if let Some(meta) = self.head(&path).await? {
                return Ok(Some(Entry::File(meta)));
            }
        }
        // No object: a folder if anything lives below it.
        let below = self.store.list_with_delimiter(Some(&path)).await.map_err(store_error)?;
        let any = !below.objects.is_empty() || !below.common_prefixes.is_empty();
        Ok(any.then_some(Entry::Folder))
    }

    async fn past_versions(&self, history: &str) -> Result<Vec<FileMeta>, StoreError> {
        check_object_name(history)?;
        let prefix = self.internal(&format!("versions/{history}"));
        let listed: Vec<_> = self.store.list(Some(&prefix)).try_collect().await.map_err(store_error)?;
        // A past version is a copy made when it was replaced: the copies' times give the order
        // (to the second; within one, the content's own time when the id is one of ours).
        let mut kept: Vec<(DateTime<Utc>, Option<DateTime<Utc>>, FileMeta)> = listed
            .into_iter()
            .filter_map(|m| {
                let version = m.location.filename()?.to_string();
                let own = version_time(&version);
                Some((m.last_modified, own, FileMeta { size: m.size, modified: own.unwrap_or(m.last_modified), version }))
            })
            .collect();
        kept.sort_by_key(|(copied, own, _)| (copied.timestamp(), *own));
        Ok(kept.into_iter().map(|(_, _, meta)| meta).collect())
    }

    async fn stat_past_version(&self, history: &str, version: &str) -> Result<Option<FileMeta>, StoreError> {
        check_object_name(history)?;
        check_object_name(version)?;
        Ok(self.head(&self.version_path(history, version)).await?.map(|m| FileMeta { version: version.to_string(), ..m }))
    }

    async fn read(
        &self,
        key: &FileKey,
        history: &str,
        version: Option<&str>,
        range: Option<(u64, u64)>,
    ) -> Result<Option<Download>, StoreError> {
        let path = match version {
            Some(v) => {
                check_object_name(history)?;
                check_object_name(v)?;
                self.version_path(history, v)
            }
            None => self.file_path(key),
        };
        let options = GetOptions { range: range.map(|(s, e)| GetRange::Bounded(s..e + 1)), ..Default::default() };
        let result = match self.store.get_opts(&path, options).await {
            Ok(result) => result,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(store_error(e)),
        };
        let mut meta = meta_of(&result.meta, &result.attributes);
        if let Some(v) = version {
            meta.version = v.to_string();
        }
        let stream = result.into_stream().map_err(|e| std::io::Error::other(e.to_string())).boxed();
        Ok(Some(Download { meta, stream }))
    }

    /// The staged object is named by its version id (the commit reads the time from it).
    async fn begin_upload(&self, limit: u64) -> Result<Box<dyn Upload>, StoreError> {
        // The staged object is named by its version id, whose time a commit checks.
        let version = version_at(Utc::now().timestamp_micros());
        Ok(Box::new(S3Upload::new(self, self.tmp(&version), version, limit)))
    }

    async fn lock_file(&self, history: &str) -> Result<FileGuard, StoreError> {
        check_object_name(history)?;
        let name = mutex_name(&format!("content/{history}"));
        let token = self.mutex.acquire(&name, self.timeout).await?;
        Ok(FileGuard::new(history, Box::new(HeldMutex { mutex: self.mutex.clone(), name, token })))
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
        let target = self.file_path(key);
        let tmp = self.tmp(&staged.handle);
        let write = async {
            let current = self.head(&target).await?;
            let holds = match (&precondition, &current) {
                (Precondition::Version(v), Some(m)) => &m.version == v,
                (Precondition::Version(_), None) => return Err(StoreError::NotFound),
                (Precondition::Absent, existing) => existing.is_none(),
                (Precondition::Any, _) => true,
            };
            if !holds {
                return Err(StoreError::Conflict);
            }
            if let Some(old) = current.as_ref().filter(|_| replaced == Replaced::Keep) {
                self.keep_version(guard.history(), &target, &old.version).await?;
            }
            // Each version's time must come after the one it replaces (so no two are the
            // same): not so when uploads commit out of order or two processes stamped the
            // same microsecond; then the content is written again under a later stamp.
            match current.filter(|old| version_time(&staged.handle).is_none_or(|t| t <= old.modified)) {
                Some(old) => self.restamp(&tmp, &target, old.modified).await?,
                None => self.store.copy(&tmp, &target).await.map_err(store_error)?,
            }
            self.head(&target).await?.ok_or(StoreError::NotFound)
        };
        // A create also takes the name's mutex, which renames onto that name hold: a name is
        // created once, whichever file gets it.
        let result = match precondition {
            Precondition::Absent => self.exclusive(&format!("name/{target}"), write).await,
            _ => write.await,
        };
        if result.is_ok() {
            let _ = self.store.delete(&tmp).await;
        }
        result
    }

    async fn discard(&self, staged: Staged) {
        if check_object_name(&staged.handle).is_ok() {
            let _ = self.store.delete(&self.tmp(&staged.handle)).await;
        }
    }

    async fn rename(&self, _guard: &FileGuard, from: &FileKey, to: &FileKey) -> Result<(), StoreError> {
        let (source, target) = (self.file_path(from), self.file_path(to));
        self.exclusive(&format!("name/{target}"), async {
            if self.head(&target).await?.is_some() {
                return Err(StoreError::Conflict);
            }
            self.store.copy(&source, &target).await.map_err(store_error)?;
            self.store.delete(&source).await.map_err(store_error)
        })
        .await
    }

    async fn delete(&self, guard: &FileGuard, key: &FileKey) -> Result<(), StoreError> {
        let path = self.file_path(key);
        let meta = self.head(&path).await?.ok_or(StoreError::NotFound)?;
        self.keep_version(guard.history(), &path, &meta.version).await?;
        self.store.delete(&path).await.map_err(store_error)
    }

    async fn list(&self, key: &FileKey) -> Result<Option<Vec<(String, Entry)>>, StoreError> {
        let path = self.file_path(key);
        let below = self.store.list_with_delimiter(Some(&path)).await.map_err(store_error)?;
        if below.objects.is_empty() && below.common_prefixes.is_empty() {
            return Ok(key.path.is_root().then(Vec::new));
        }
        let folders = below.common_prefixes.iter().filter_map(|p| p.filename()).map(|name| (name.to_string(), Entry::Folder));
        // Versions are object metadata, which a listing does not carry: one HEAD per file.
        let files: Vec<Path> = below.objects.into_iter().map(|o| o.location).filter(|p| p.filename() != Some(FOLDER_MARKER)).collect();
        let heads = futures_util::stream::iter(files.into_iter().map(|location: Path| async move {
            let name = location.filename().unwrap_or_default().to_string();
            Ok::<_, StoreError>(self.head(&location).await?.map(|meta| (name, Entry::File(meta))))
        }))
        .buffered(16)
        .try_collect::<Vec<_>>()
        .await?;
        Ok(Some(folders.chain(heads.into_iter().flatten()).collect()))
    }

    async fn create_folder(&self, key: &FileKey) -> Result<(), StoreError> {
        if key.path.is_root() {
            return Err(StoreError::Conflict);
        }
        let path = self.file_path(key);
        self.exclusive(&format!("name/{path}"), async {
            let parent = FileKey { owner: key.owner.clone(), path: key.path.parent() };
            if !parent.path.is_root() && self.stat(&parent).await? != Some(Entry::Folder) {
                return Err(StoreError::NotFound);
            }
            if self.stat(key).await?.is_some() {
                return Err(StoreError::Conflict);
            }
            // S3 has no folders, only names below a prefix: an empty one is a marker object.
            self.store.put(&path.clone().join(FOLDER_MARKER), PutPayload::new()).await.map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn delete_folder(&self, key: &FileKey) -> Result<(), StoreError> {
        if key.path.is_root() {
            return Err(StoreError::Conflict);
        }
        let path = self.file_path(key);
        self.exclusive(&format!("name/{path}"), async {
            let below: Vec<_> = self.store.list(Some(&path)).take(2).try_collect().await.map_err(store_error)?;
            match below.as_slice() {
                [] => Err(StoreError::NotFound),
                [only] if only.location == path.clone().join(FOLDER_MARKER) => {
                    self.store.delete(&only.location).await.map_err(store_error)
                }
                _ => Err(StoreError::Conflict),
            }
        })
        .await
    }

    async fn rename_folder(&self, from: &FileKey, to: &FileKey) -> Result<(), StoreError> {
        let (source, target) = (self.file_path(from), self.file_path(to));
        if from.path.is_root() || to.path.segments().starts_with(from.path.segments()) {
            return Err(StoreError::Conflict);
        }
        self.exclusive(&format!("name/{target}"), async {
            let parent = FileKey { owner: to.owner.clone(), path: to.path.parent() };
            if !parent.path.is_root() && self.stat(&parent).await? != Some(Entry::Folder) {
                return Err(StoreError::NotFound);
            }
            if self.stat(to).await?.is_some() {
                return Err(StoreError::Conflict);
            }
            let objects: Vec<_> = self.store.list(Some(&source)).try_collect().await.map_err(store_error)?;
            if objects.is_empty() {
                return Err(StoreError::NotFound);
            }
            // No rename on S3: copy everything, then delete the originals. A failed copy undoes
            // the copies made, so the folder is either whole at its old name or at its new one.
            let moved = |o: &object_store::ObjectMeta| {
                let rest: Vec<_> = o.location.prefix_match(&source).map(|parts| parts.collect()).unwrap_or_default();
                rest.into_iter().fold(target.clone(), |p, part| p.join(part))
            };
            let mut copied = Vec::new();
            for object in &objects {
                let to = moved(object);
                if let Err(e) = self.store.copy(&object.location, &to).await {
                    for done in copied {
                        let _ = self.store.delete(&done).await;
                    }
                    return Err(store_error(e));
                }
                copied.push(to);
            }
            for object in &objects {
                self.store.delete(&object.location).await.map_err(store_error)?;
            }
            Ok(())
        })
        .await
    }

    fn max_path_bytes(&self, owner: &str) -> usize {
        // S3 keys are at most 1024 bytes: the prefix, the owner and a slash come first (and a
        // folder's marker after the path).
        1024usize.saturating_sub(self.prefix.len() + owner.len() + 1 + 1 + FOLDER_MARKER.len())
    }

    async fn get_object(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_object_name(name)?;
        match self.store.get(&self.object(name)).await {
            Ok(result) => Ok(Some(result.bytes().await.map_err(store_error)?.to_vec())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn put_object(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        check_object_name(name)?;
        self.store.put(&self.object(name), PutPayload::from(data.to_vec())).await.map_err(store_error)?;
        Ok(())
    }

    async fn create_object(&self, name: &str, data: &[u8]) -> Result<bool, StoreError> {
        self.swap_object(name, None, Some(data)).await
    }

    async fn delete_object(&self, name: &str) -> Result<(), StoreError> {
        check_object_name(name)?;
        match self.store.delete(&self.object(name)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn swap_object(&self, name: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool, StoreError> {
        check_object_name(name)?;
        self.exclusive(&format!("object/{name}"), async {
            if self.get_object(name).await?.as_deref() != expected {
                return Ok(false);
            }
            match new {
                Some(data) => self.put_object(name, data).await?,
                None => self.delete_object(name).await?,
            }
            Ok(true)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self.store.head(&self.internal("ping")).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Ages are the server's modification times, so replicas' clocks do not matter beyond the
    /// skew to the server. One failure does not stop the sweep; the first is returned after it.
    async fn sweep_stale_uploads(&self, older_than: Duration) -> Result<usize, StoreError> {
        let cutoff = chrono::Duration::from_std(older_than).ok().and_then(|age| Utc::now().checked_sub_signed(age));
        let Some(cutoff) = cutoff else { return Ok(0) };
        let mut removed = 0;
        let mut failed = None;
        let records: Vec<_> = self.store.list(Some(&self.internal("uploads"))).try_collect().await.map_err(store_error)?;
        for record in records.iter().filter(|m| m.last_modified < cutoff) {
            match self.abort_recorded(&record.location).await {
                Ok(()) => removed += 1,
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        let staged: Vec<_> = self.store.list(Some(&self.internal("tmp"))).try_collect().await.map_err(store_error)?;
        for object in staged.iter().filter(|m| m.last_modified < cutoff) {
            match self.store.delete(&object.location).await {
                Ok(()) => removed += 1,
                Err(e) if is_not_found(&e) => {}
                Err(e) => failed = failed.or(Some(store_error(e))),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }
}

/// Whether the server honours `If-None-Match: *` (create-if-absent): without it, marker
/// objects cannot serve as a mutex and the store lock backend would not be safe.
pub async fn honours_conditional_create(store: &dyn ObjectStore, prefix: &str) -> Result<bool, StoreError> {
    let path = Path::from(format!("{prefix}.wopigate/probe/{}", Uuid::new_v4().simple()));
    let create = || PutOptions { mode: PutMode::Create, ..Default::default() };
    store.put_opts(&path, PutPayload::from_static(b"1"), create()).await.map_err(store_error)?;
    let second = store.put_opts(&path, PutPayload::from_static(b"2"), create()).await;
    let _ = store.delete(&path).await;
    match second {
        Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => Ok(true),
        Ok(_) => Ok(false),
        // NotImplemented and friends: not honoured either.
        Err(object_store::Error::NotImplemented { .. }) | Err(object_store::Error::NotSupported { .. }) => Ok(false),
        Err(e) => Err(store_error(e)),
    }
}
