//! One contract for every store and lock backend: local + store locks, S3 + Redis, and
//! S3 + store locks where the S3 server honours conditional writes.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;
use wopigate::config::Config;
use wopigate::locks::{LockOp, LockOutcome, LockStore};
use wopigate::startup::open_backends;
use wopigate::store::{Entry, FileKey, FileMeta, Precondition, Replaced, Staged, Store, StoreError};
use wopigate::uri::RelPath;

use crate::servers::{Garage, Redis};

fn key(owner: &str, path: &str) -> FileKey {
    FileKey { owner: owner.into(), path: RelPath::parse_plain(path).unwrap() }
}

async fn upload(store: &dyn Store, data: &[u8]) -> Staged {
    let mut up = store.begin_upload(64 << 20).await.unwrap();
    // Several chunks, so multipart uploads really have parts.
    for chunk in data.chunks(1 << 20) {
        up.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    up.finish().await.unwrap()
}

async fn read_all(store: &dyn Store, key: &FileKey, history: &str, version: Option<&str>, range: Option<(u64, u64)>) -> Vec<u8> {
    let download = store.read(key, history, version, range).await.unwrap().expect("exists");
    let mut out = Vec::new();
    let mut stream = download.stream;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// One commit as the WOPI layer makes it: staged, then committed under the file's guard.
async fn commit(store: &dyn Store, data: &[u8], key: &FileKey, history: &str, precondition: Precondition) -> Result<FileMeta, StoreError> {
    commit_replacing(store, data, key, history, precondition, Replaced::Keep).await
}

async fn commit_replacing(
    store: &dyn Store,
    data: &[u8],
    key: &FileKey,
    history: &str,
    precondition: Precondition,
    replaced: Replaced,
) -> Result<FileMeta, StoreError> {
    let staged = upload(store, data).await;
    let guard = store.lock_file(history).await?;
    let result = store.commit(&guard, &staged, key, precondition, replaced).await;
    guard.release().await;
    if result.is_err() {
        store.discard(staged).await;
    }
    result
}

async fn rename(store: &dyn Store, history: &str, from: &FileKey, to: &FileKey) -> Result<(), StoreError> {
    let guard = store.lock_file(history).await?;
    let result = store.rename(&guard, from, to).await;
    guard.release().await;
    result
}

async fn delete(store: &dyn Store, history: &str, key: &FileKey) -> Result<(), StoreError> {
    let guard = store.lock_file(history).await?;
    let result = store.delete(&guard, key).await;
    guard.release().await;
    result
}

/// A file's guard excludes every other holder until released; other files' guards are free.
async fn guard_contract(store: Arc<dyn Store>) {
    let held = store.lock_file("g1").await.unwrap();
    let other = tokio::time::timeout(std::time::Duration::from_secs(5), store.lock_file("g2")).await;
    assert!(other.is_ok_and(|g| g.is_ok()), "another file's guard is independent");
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move { store.lock_file("g1").await.is_ok() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a second holder waits while the guard is held");
    held.release().await;
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
    assert!(matches!(got, Ok(Ok(true))), "and gets it once released");

    // A refused commit leaves the upload staged: it can go to another name.
    let a = key("u9", "taken.docx");
    commit(store.as_ref(), b"first", &a, "g3", Precondition::Absent).await.unwrap();
    let staged = upload(store.as_ref(), b"second").await;
    let guard = store.lock_file("g3").await.unwrap();
    assert!(matches!(store.commit(&guard, &staged, &a, Precondition::Absent, Replaced::Keep).await, Err(StoreError::Conflict)));
    let b = key("u9", "taken (1).docx");
    store.commit(&guard, &staged, &b, Precondition::Absent, Replaced::Keep).await.unwrap();
    guard.release().await;
    assert_eq!(read_all(store.as_ref(), &b, "g3", None, None).await, b"second");
    assert_eq!(read_all(store.as_ref(), &a, "g3", None, None).await, b"first");
}

async fn store_contract(store: &dyn Store) {
    let a = key("u1", "Docs/a.docx");
    assert!(store.stat(&a).await.unwrap().is_none());

    // Create, then compare-and-set on the version.
    let first = commit(store, b"one", &a, "h1", Precondition::Absent).await.unwrap();
    assert_eq!(first.size, 3);
    assert!(matches!(commit(store, b"x", &a, "h1", Precondition::Absent).await, Err(StoreError::Conflict)));
    let second = commit(store, b"two", &a, "h1", Precondition::Version(first.version.clone())).await.unwrap();
    assert_ne!(second.version, first.version, "same size, new version");
    let stale = commit(store, b"three", &a, "h1", Precondition::Version(first.version.clone())).await;
    assert!(matches!(stale, Err(StoreError::Conflict)));
    assert_eq!(store.stat(&a).await.unwrap(), Some(Entry::File(second.clone())));
    assert_eq!(store.stat(&key("u1", "Docs")).await.unwrap(), Some(Entry::Folder));

    // Every version has its own time to the microsecond (Collabora compares them), later than
    // the one it replaces, even when uploads commit out of order.
    let early = upload(store, b"early").await;
    let late = upload(store, b"late").await;
    let guard = store.lock_file("h1").await.unwrap();
    let third = store.commit(&guard, &late, &a, Precondition::Any, Replaced::Keep).await.unwrap();
    let fourth = store.commit(&guard, &early, &a, Precondition::Any, Replaced::Keep).await.unwrap();
    guard.release().await;
    assert!(second.modified < third.modified && third.modified < fourth.modified, "{second:?} {third:?} {fourth:?}");
    assert!(third.modified.timestamp_micros() < fourth.modified.timestamp_micros());
    assert_eq!(read_all(store, &a, "h1", None, None).await, b"early");
    // Back to "two" for what follows.
    commit(store, b"two", &a, "h1", Precondition::Version(fourth.version)).await.unwrap();

    // Reads: whole, ranged, and the past version.
    assert_eq!(read_all(store, &a, "h1", None, None).await, b"two");
    assert_eq!(read_all(store, &a, "h1", None, Some((1, 2))).await, b"wo");
    let past = store.stat_past_version("h1", &first.version).await.unwrap().expect("past version kept");
    assert_eq!(past.size, 3);
    assert_eq!(read_all(store, &a, "h1", Some(&first.version), None).await, b"one");
    assert!(store.stat_past_version("h1", "nope-1").await.unwrap().is_none());

    // Past versions are listed oldest first; a commit may drop what it replaces instead.
    let listed: Vec<String> = store.past_versions("h1").await.unwrap().into_iter().map(|m| m.version).collect();
    assert_eq!(listed.first(), Some(&first.version), "{listed:?}");
    assert_eq!(listed.len(), 4, "one, two, late and early were each replaced once: {listed:?}");
    let current = match store.stat(&a).await.unwrap() {
        Some(Entry::File(meta)) => meta,
        other => panic!("{other:?}"),
    };
    let dropped = commit_replacing(store, b"two!", &a, "h1", Precondition::Version(current.version.clone()), Replaced::Drop).await.unwrap();
    assert_eq!(store.past_versions("h1").await.unwrap().len(), 4, "the replaced content was not kept");
    assert!(store.stat_past_version("h1", &current.version).await.unwrap().is_none());
    assert_ne!(dropped.version, current.version);
    assert_eq!(read_all(store, &a, "h1", None, None).await, b"two!");
    commit(store, b"two", &a, "h1", Precondition::Version(dropped.version)).await.unwrap();
    assert!(store.past_versions("never-saved").await.unwrap().is_empty());

    // An empty file (a new document) is a file too: S3 rejects empty multipart parts.
    let empty = key("u1", "Docs/new.docx");
    let meta = commit(store, b"", &empty, "h4", Precondition::Absent).await.unwrap();
    assert_eq!(meta.size, 0);
    assert!(read_all(store, &empty, "h4", None, None).await.is_empty());

    // A big streamed upload (several parts) round-trips byte for byte.
    let big: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let b = key("u1", "big.bin");
    commit(store, &big, &b, "h2", Precondition::Any).await.unwrap();
    assert!(read_all(store, &b, "h2", None, None).await == big);

    // Aborted and too-large uploads leave nothing behind.
    let mut up = store.begin_upload(4).await.unwrap();
    assert!(matches!(up.write(Bytes::from_static(b"12345")).await, Err(StoreError::TooLarge(4))));
    up.abort().await;
    let mut up = store.begin_upload(1 << 20).await.unwrap();
    up.write(Bytes::from_static(b"partial")).await.unwrap();
    up.abort().await;
    assert_eq!(read_all(store, &a, "h1", None, None).await, b"two");

    // Rename never overwrites; delete keeps the content as a past version.
    let c = key("u1", "Docs/c.docx");
    rename(store, "h1", &a, &c).await.unwrap();
    assert!(store.stat(&a).await.unwrap().is_none());
    commit(store, b"new a", &a, "h3", Precondition::Absent).await.unwrap();
    assert!(matches!(rename(store, "h1", &a, &c).await, Err(StoreError::Conflict)));
    let c_meta = match store.stat(&c).await.unwrap() {
        Some(Entry::File(m)) => m,
        other => panic!("{other:?}"),
    };
    delete(store, "h1", &c).await.unwrap();
    assert!(store.stat(&c).await.unwrap().is_none());
    assert!(store.stat_past_version("h1", &c_meta.version).await.unwrap().is_some());

    // Small objects: create is exclusive, swap compares, even under contention.
    assert!(store.create_object("ids/x.json", b"1").await.unwrap());
    assert!(!store.create_object("ids/x.json", b"2").await.unwrap());
    assert_eq!(store.get_object("ids/x.json").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert!(!store.swap_object("ids/x.json", Some(b"2"), Some(b"3")).await.unwrap());
    assert!(store.swap_object("ids/x.json", Some(b"1"), None).await.unwrap());
    assert!(store.get_object("ids/x.json").await.unwrap().is_none());
    let racers = (0..12).map(|i| async move { store.create_object("ids/race.json", format!("{i}").as_bytes()).await.unwrap() });
    let won = futures_util::future::join_all(racers).await.into_iter().filter(|w| *w).count();
    assert_eq!(won, 1, "exactly one creator wins");
    assert!(store.get_object("../escape").await.is_err());
    store.ping().await.unwrap();
}

async fn lock_contract(locks: &dyn LockStore) {
    let now = Utc::now();
    let file = format!("f{}", uuid::Uuid::new_v4().simple());
    use LockOutcome::*;
    assert_eq!(locks.apply(&file, LockOp::Get, now).await.unwrap(), Granted(String::new()));
    assert_eq!(locks.apply(&file, LockOp::Lock("A"), now).await.unwrap(), Granted("A".into()));
    assert_eq!(locks.apply(&file, LockOp::Lock("A"), now).await.unwrap(), Granted("A".into()));
    assert_eq!(locks.apply(&file, LockOp::Lock("B"), now).await.unwrap(), Conflict("A".into()));
    assert_eq!(locks.apply(&file, LockOp::Refresh("B"), now).await.unwrap(), Conflict("A".into()));
    assert_eq!(locks.apply(&file, LockOp::Refresh("A"), now).await.unwrap(), Granted("A".into()));
    assert_eq!(locks.apply(&file, LockOp::UnlockAndRelock { old: "B", new: "C" }, now).await.unwrap(), Conflict("A".into()));
    assert_eq!(locks.apply(&file, LockOp::UnlockAndRelock { old: "A", new: "C" }, now).await.unwrap(), Granted("C".into()));
    assert_eq!(locks.apply(&file, LockOp::Unlock("A"), now).await.unwrap(), Conflict("C".into()));
    assert_eq!(locks.apply(&file, LockOp::Unlock("C"), now).await.unwrap(), Granted(String::new()));
    assert_eq!(locks.apply(&file, LockOp::Unlock("C"), now).await.unwrap(), Conflict(String::new()));
    let long = "x".repeat(1024);
    assert_eq!(locks.apply(&file, LockOp::Lock(&long), now).await.unwrap(), Granted(long.clone()));
    assert_eq!(locks.current(&file, now).await.unwrap(), long);
    locks.remove(&file).await.unwrap();
    assert_eq!(locks.current(&file, now).await.unwrap(), "");

    // Fifty contenders, one winner, everyone else told who won.
    let contested = format!("g{}", uuid::Uuid::new_v4().simple());
    let tries = (0..50).map(|i| {
        let contested = contested.clone();
        async move {
            let id = format!("lock-{i}");
            (id.clone(), locks.apply(&contested, LockOp::Lock(&id), now).await.unwrap())
        }
    });
    let results = futures_util::future::join_all(tries).await;
    let winners: Vec<_> = results.iter().filter(|(_, o)| matches!(o, Granted(_))).collect();
    assert_eq!(winners.len(), 1);
    let winner = winners[0].0.clone();
    assert!(results.iter().all(|(id, o)| id == &winner || o == &Conflict(winner.clone())));
    locks.ping().await.unwrap();
}

pub fn config(extra: Vec<(String, String)>, data: &std::path::Path) -> Config {
    let mut vars = vec![
        ("WOPIGATE_DATA_DIR".to_string(), data.display().to_string()),
        ("WOPIGATE_TOKEN_SECRET".to_string(), "contract-secret-contract-secret-contract".to_string()),
    ];
    vars.extend(extra);
    Config::from_vars(vars).unwrap()
}

/// Folders: listed with what is directly in them, created empty, deleted only when empty,
/// renamed with everything inside and never onto an existing name.
async fn folder_contract(store: &dyn Store) {
    let names = |listed: Option<Vec<(String, Entry)>>| {
        let mut names: Vec<_> = listed.expect("a folder").into_iter().map(|(n, e)| (n, matches!(e, Entry::Folder))).collect();
        names.sort();
        names
    };
    // A user's root exists before anything is in it; other folders do not.
    assert_eq!(store.list(&key("fresh", "")).await.unwrap().map(|l| l.len()), Some(0));
    assert!(store.list(&key("fresh", "nope")).await.unwrap().is_none());

    let folder = key("fu", "Projects");
    store.create_folder(&folder).await.unwrap();
    assert_eq!(store.stat(&folder).await.unwrap(), Some(Entry::Folder), "an empty folder exists");
    assert!(matches!(store.create_folder(&folder).await, Err(StoreError::Conflict)));
    assert!(matches!(store.create_folder(&key("fu", "Missing/Child")).await, Err(StoreError::NotFound)), "no parent");
    assert_eq!(store.list(&folder).await.unwrap().map(|l| l.len()), Some(0), "the marker of an empty folder is not listed");

    commit(store, b"plan", &key("fu", "Projects/plan.docx"), "f-plan", Precondition::Absent).await.unwrap();
    store.create_folder(&key("fu", "Projects/Sub")).await.unwrap();
    commit(store, b"deep", &key("fu", "Projects/Sub/deep.docx"), "f-deep", Precondition::Absent).await.unwrap();
    assert_eq!(names(store.list(&folder).await.unwrap()), [("Sub".to_string(), true), ("plan.docx".to_string(), false)]);
    let listed = store.list(&folder).await.unwrap().unwrap();
    let plan = listed.iter().find(|(n, _)| n == "plan.docx").unwrap();
    assert!(matches!(&plan.1, Entry::File(meta) if meta.size == 4), "{plan:?}");
    assert!(store.list(&key("fu", "Projects/plan.docx")).await.unwrap().is_none(), "a file is not a folder");

    // Deleting: refused while anything is inside; nothing is lost.
    assert!(matches!(store.delete_folder(&folder).await, Err(StoreError::Conflict)));
    assert_eq!(read_all(store, &key("fu", "Projects/plan.docx"), "f-plan", None, None).await, b"plan");

    // Renaming: everything moves; an existing target is never replaced.
    store.create_folder(&key("fu", "Taken")).await.unwrap();
    assert!(matches!(store.rename_folder(&folder, &key("fu", "Taken")).await, Err(StoreError::Conflict)), "onto an empty folder");
    assert!(matches!(store.rename_folder(&folder, &key("fu", "Projects/Sub/Inside")).await, Err(StoreError::Conflict)), "into itself");
    store.rename_folder(&folder, &key("fu", "Archive")).await.unwrap();
    assert!(store.stat(&folder).await.unwrap().is_none());
    assert_eq!(read_all(store, &key("fu", "Archive/Sub/deep.docx"), "f-deep", None, None).await, b"deep");
    assert_eq!(names(store.list(&key("fu", "Archive")).await.unwrap()).len(), 2);

    // Emptied, it can go.
    delete(store, "f-deep", &key("fu", "Archive/Sub/deep.docx")).await.unwrap();
    store.delete_folder(&key("fu", "Archive/Sub")).await.unwrap();
    assert!(store.stat(&key("fu", "Archive/Sub")).await.unwrap().is_none());
    store.delete_folder(&key("fu", "Taken")).await.unwrap();
    assert!(matches!(store.delete_folder(&key("fu", "Taken")).await, Err(StoreError::NotFound)));
}

async fn run(store: Arc<dyn Store>, locks: Arc<dyn LockStore>) {
    store_contract(store.as_ref()).await;
    folder_contract(store.as_ref()).await;
    guard_contract(store.clone()).await;
    lock_contract(locks.as_ref()).await;
}

#[tokio::test]
async fn local_store_with_store_locks() {
    let dir = tempfile::tempdir().unwrap();
    let (store, locks) = open_backends(&config(vec![], dir.path())).await.unwrap();
    run(store, locks).await;
}

#[tokio::test]
async fn s3_store_with_redis_locks() {
    let (Some(garage), Some(redis)) = (Garage::start(), Redis::start()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let env = garage.env_with_redis("contract-redis", &redis);
    let (store, locks) = open_backends(&config(env, dir.path())).await.unwrap();
    run(store, locks).await;
}

#[tokio::test]
async fn s3_store_with_store_locks_where_supported() {
    let Some(garage) = Garage::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    match open_backends(&config(garage.env("contract-store"), dir.path())).await {
        Ok((store, locks)) => run(store, locks).await,
        // Refused at start-up, by name, when the server ignores conditional writes.
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("WOPIGATE_LOCKS") && text.contains("conditional"), "{text}");
            eprintln!("S3 + store locks refused, as designed: {text}");
        }
    }
}
