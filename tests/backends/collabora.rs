//! Collabora's document-changed check on S3 + Redis, where the object's own `Last-Modified` has
//! one-second resolution: a change right after a save must still conflict.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wopigate::config::Config;
use wopigate::store::FileKey;
use wopigate::uri::RelPath;

use crate::cluster::{Cluster, TOKEN_SECRET};

const LOCK: &str = "cool-lock58eba050";

/// Collabora's echo of a `LastModifiedTime`: read as a time, written with six digits.
fn echo(last_modified: &str) -> String {
    let time = chrono::DateTime::parse_from_rfc3339(last_modified).unwrap_or_else(|e| panic!("{last_modified}: {e}"));
    time.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Sleeps until just after a second starts, so what follows happens within one second.
async fn start_of_a_second() {
    let into = chrono::Utc::now().timestamp_subsec_millis() as u64;
    tokio::time::sleep(Duration::from_millis(1000 - into + 5)).await;
}

#[tokio::test]
async fn on_s3_a_put_right_after_a_save_still_conflicts() {
    let Some(cluster) = Cluster::start(1, &[]).await else { return };
    cluster.seed("u1", "Report.docx", b"seeded").await;
    let (token, fid) = cluster.session(0, "u1", "cloudreve://my/Report.docx").await;
    let client = &cluster.client;
    let info = || async {
        let r = client.get(cluster.file_url(0, &fid, "", &token)).send().await.unwrap();
        r.json::<Value>().await.unwrap()["LastModifiedTime"].as_str().unwrap().to_string()
    };
    let save = |family: &'static str, time: Option<String>, body: &'static str| {
        let mut request = client
            .post(cluster.file_url(0, &fid, "/contents", &token))
            .header("X-WOPI-Override", "PUT")
            .header("X-WOPI-Lock", LOCK)
            .header(format!("X-{family}-WOPI-IsAutosave"), "false")
            .body(body);
        if let Some(time) = time {
            request = request.header(format!("X-{family}-WOPI-Timestamp"), echo(&time));
        }
        async move { request.send().await.unwrap() }
    };
    let lock = client.post(cluster.file_url(0, &fid, "", &token)).header("X-WOPI-Override", "LOCK").header("X-WOPI-Lock", LOCK);
    let r = lock.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut time = info().await;

    // Saves in quick succession, both header families: each answer is the next echo.
    start_of_a_second().await;
    for (i, family) in ["COOL", "LOOL", "COOL"].into_iter().enumerate() {
        let r = save(family, Some(time.clone()), ["one", "two", "three"][i]).await;
        assert_eq!(r.status(), 200, "save {i} ({family})");
        let next = r.json::<Value>().await.unwrap()["LastModifiedTime"].as_str().unwrap().to_string();
        assert!(next > time, "{next} after {time}");
        time = next;
    }
    assert_eq!(info().await, time);

    // `wopigate put` within a few milliseconds of the save, in the same second of Last-Modified.
    let mut vars = vec![
        ("WOPIGATE_DATA_DIR".to_string(), tempfile::tempdir().unwrap().path().display().to_string()),
        ("WOPIGATE_TOKEN_SECRET".to_string(), TOKEN_SECRET.to_string()),
        ("WOPIGATE_LOCKS".to_string(), "redis".to_string()),
        ("WOPIGATE_REDIS_URL".to_string(), cluster.redis.url()),
    ];
    vars.extend(cluster.garage.env(&cluster.prefix));
    let config = Config::from_vars(vars).unwrap();
    let key = FileKey { owner: "u1".into(), path: RelPath::parse_plain("Report.docx").unwrap() };
    start_of_a_second().await;
    let r = save("COOL", Some(time.clone()), "saved").await;
    assert_eq!(r.status(), 200);
    let saved_at = Instant::now();
    let time = r.json::<Value>().await.unwrap()["LastModifiedTime"].as_str().unwrap().to_string();
    wopigate::admin::put(&config, &key, &b"put by the operator"[..]).await.unwrap();
    let gap = saved_at.elapsed();
    eprintln!("wopigate put committed {gap:?} after the save's answer");
    assert!(gap < Duration::from_millis(900), "the put must land within the second of the save: {gap:?}");
    assert_ne!(info().await, time, "the put has its own LastModifiedTime");

    for family in ["COOL", "LOOL"] {
        let r = save(family, Some(time.clone()), "stale").await;
        assert_eq!(r.status(), 409, "{family}");
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"COOLStatusCode": 1010}));
    }
    let r = client.get(cluster.file_url(0, &fid, "/contents", &token)).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"put by the operator", "the stale saves wrote nothing");
    let r = save("LOOL", Some(info().await), "after reload").await;
    assert_eq!(r.status(), 200);
}
