//! What uploads cut short by a crash leave on S3 is swept: staged objects in `.wopigate/tmp/`
//! and the multipart uploads on record in `.wopigate/uploads/`, once older than the given age;
//! fresh ones stay.

use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::Value;
use wopigate::startup::open_backends;
use wopigate::store::{Staged, Store};

use crate::contract::config;
use crate::servers::{Garage, Redis};

const PART: usize = 5 * 1024 * 1024;

/// A finished upload nobody commits (the replica died right after).
async fn staged(store: &dyn Store) -> Staged {
    let mut upload = store.begin_upload(1 << 30).await.unwrap();
    upload.write(Bytes::from_static(b"staged, never committed")).await.unwrap();
    upload.finish().await.unwrap()
}

/// More than a part written, then the replica dies: neither finished nor aborted.
async fn abandoned_multipart(store: &dyn Store) {
    let mut upload = store.begin_upload(1 << 30).await.unwrap();
    for _ in 0..6 {
        upload.write(Bytes::from(vec![b'm'; 1024 * 1024])).await.unwrap();
    }
    drop(upload);
}

async fn list(client: &dyn ObjectStore, prefix: &str) -> Vec<object_store::ObjectMeta> {
    client.list(Some(&Path::from(prefix))).try_collect().await.unwrap()
}

/// (path, upload id) of each multipart upload on record.
async fn records(client: &dyn ObjectStore) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for record in list(client, "sweep/.wopigate/uploads").await {
        let bytes = client.get(&record.location).await.unwrap().bytes().await.unwrap();
        let record: Value = serde_json::from_slice(&bytes).unwrap();
        out.push((record["path"].as_str().unwrap().to_string(), record["upload_id"].as_str().unwrap().to_string()));
    }
    out
}

/// Whether the multipart upload still takes parts (an aborted one is gone).
async fn alive(client: &object_store::aws::AmazonS3, (path, id): &(String, String)) -> bool {
    client.put_part(&Path::from(path.as_str()), id, 1, PutPayload::from_static(b"probe")).await.is_ok()
}

#[tokio::test]
async fn s3_sweep_removes_stale_uploads_only() {
    let (Some(garage), Some(redis)) = (Garage::start(), Redis::start()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut vars = garage.env_with_redis("sweep", &redis);
    vars.push(("WOPIGATE_S3_PART_SIZE".into(), PART.to_string()));
    let (store, _) = open_backends(&config(vars, dir.path())).await.unwrap();
    let store = store.as_ref();
    let client = garage.client();

    // Finished and aborted multipart uploads keep no record.
    let mut done = store.begin_upload(1 << 30).await.unwrap();
    done.write(Bytes::from(vec![b'd'; PART + 1])).await.unwrap();
    let done = done.finish().await.unwrap();
    store.discard(done).await;
    let mut aborted = store.begin_upload(1 << 30).await.unwrap();
    aborted.write(Bytes::from(vec![b'a'; PART + 1])).await.unwrap();
    aborted.abort().await;
    assert!(records(&client).await.is_empty(), "finished uploads leave no record");
    assert!(list(&client, "sweep/.wopigate/tmp").await.is_empty());

    // Left by a crash, then aged past the limit; then fresh ones of uploads in progress.
    let old_staged = staged(store).await;
    abandoned_multipart(store).await;
    let old_upload = records(&client).await.pop().expect("the multipart upload is on record");
    assert!(alive(&client, &old_upload).await);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fresh_staged = staged(store).await;
    abandoned_multipart(store).await;
    let removed = store.sweep_stale_uploads(Duration::from_secs(3)).await.unwrap();

    assert_eq!(removed, 2, "the old staged object and the old multipart upload");
    let tmp: Vec<String> = list(&client, "sweep/.wopigate/tmp").await.into_iter().map(|m| m.location.to_string()).collect();
    assert_eq!(tmp, [format!("sweep/.wopigate/tmp/{}", fresh_staged.handle)], "old staged {} is gone", old_staged.handle);
    assert!(!alive(&client, &old_upload).await, "the abandoned multipart upload is aborted");
    let left = records(&client).await;
    assert_eq!(left.len(), 1, "the fresh multipart upload stays on record");
    assert_ne!(left[0], old_upload);
    assert!(alive(&client, &left[0]).await, "the fresh multipart upload is untouched");

    // A second sweep finds nothing more; then the fresh ones age too.
    assert_eq!(store.sweep_stale_uploads(Duration::from_secs(3)).await.unwrap(), 0);
    assert_eq!(store.sweep_stale_uploads(Duration::ZERO).await.unwrap(), 2);
    assert!(records(&client).await.is_empty() && list(&client, "sweep/.wopigate/tmp").await.is_empty());
    assert!(!alive(&client, &left[0]).await);
}
