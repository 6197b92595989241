//! Redis and then S3 go away under load: requests fail fast, /readyz says so, and everything
//! recovers without a restart when they come back; no acknowledged write is lost.

use std::time::{Duration, Instant};

use crate::cluster::Cluster;

async fn status(client: &reqwest::Client, request: reqwest::RequestBuilder) -> (u16, Duration) {
    let _ = client;
    let started = Instant::now();
    let code = match request.timeout(Duration::from_secs(30)).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    };
    (code, started.elapsed())
}

#[tokio::test]
async fn backends_fail_fast_and_recover() {
    let Some(mut cluster) = Cluster::start(2, &[]).await else { return };
    cluster.seed("u1", "a.docx", b"start").await;
    let (token, fid) = cluster.session(0, "u1", "cloudreve://my/a.docx").await;
    let client = cluster.client.clone();
    // URLs first: the closures must not hold on to the cluster, whose servers we stop.
    let files: Vec<String> = (0..2).map(|r| cluster.file_url(r, &fid, "", &token)).collect();
    let contents: Vec<String> = (0..2).map(|r| cluster.file_url(r, &fid, "/contents", &token)).collect();
    let readys: Vec<String> = (0..2).map(|r| cluster.replicas[r].url("/readyz")).collect();
    let lock = |replica: usize, id: &str| {
        client.post(&files[replica]).header("X-WOPI-Override", "LOCK").header("X-WOPI-Lock", id.to_string())
    };
    let put = |replica: usize, body: String| {
        client.post(&contents[replica]).header("X-WOPI-Override", "PUT").header("X-WOPI-Lock", "L").body(body)
    };
    let ready = |replica: usize| client.get(&readys[replica]);
    let info = |replica: usize| client.get(&files[replica]);

    assert_eq!(status(&client, lock(0, "L")).await.0, 200);
    let mut acknowledged = String::from("start");
    let mut writes = 0;
    let mut write = |code: u16, body: &str| {
        if code == 200 {
            acknowledged = body.to_string();
        }
    };
    for i in 0..10 {
        let body = format!("before-{i}");
        let (code, _) = status(&client, put(i % 2, body.clone())).await;
        assert_eq!(code, 200);
        write(code, &body);
        writes += 1;
    }

    // Redis goes away: lock operations fail fast; reads that need no lock still work.
    cluster.redis.process.stop();
    for replica in 0..2 {
        let (code, took) = status(&client, lock(replica, "L")).await;
        assert!(code >= 500, "lock without Redis: {code}");
        assert!(took < Duration::from_secs(6), "fails fast, took {took:?}");
        let (code, _) = status(&client, ready(replica)).await;
        assert_eq!(code, 503, "/readyz reports Redis down");
        assert_eq!(status(&client, info(replica)).await.0, 200);
        let body = format!("no-redis-{replica}");
        let (code, took) = status(&client, put(replica, body.clone())).await;
        assert!(code >= 500 && took < Duration::from_secs(6), "{code} after {took:?}");
        write(code, &body);
    }
    cluster.redis.process.resume();
    // Back without a restart (the connection manager reconnects by itself). The lock lived
    // in the old Redis, which kept nothing: take it again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&client, lock(0, "L")).await.0 != 200 {
        assert!(Instant::now() < deadline, "locks did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for replica in 0..2 {
        assert_eq!(status(&client, ready(replica)).await.0, 200);
    }

    // S3 goes away: requests fail fast, /readyz reports it, nothing hangs.
    cluster.garage.process.stop();
    for replica in 0..2 {
        let (code, took) = status(&client, info(replica)).await;
        assert!(code >= 500, "CheckFileInfo without S3: {code}");
        assert!(took < Duration::from_secs(10), "fails fast, took {took:?}");
        assert_eq!(status(&client, ready(replica)).await.0, 503);
        let body = format!("no-s3-{replica}");
        let (code, took) = status(&client, put(replica, body.clone())).await;
        assert!(code >= 500 && took < Duration::from_secs(10), "{code} after {took:?}");
        write(code, &body);
    }
    cluster.garage.process.resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&client, info(1)).await.0 != 200 {
        assert!(Instant::now() < deadline, "S3 did not recover");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for i in 0..5 {
        let body = format!("after-{i}");
        let (code, _) = status(&client, put(i % 2, body.clone())).await;
        assert_eq!(code, 200);
        write(code, &body);
        writes += 1;
    }
    // The last acknowledged write is what both replicas serve.
    for url in &contents {
        let r = client.get(url).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), acknowledged);
    }
    assert_eq!(acknowledged, "after-4");
    assert!(writes >= 15);
}
