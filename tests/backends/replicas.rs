//! Three replicas behind no load balancer at all: every request may land anywhere.

use std::io::Write;
use std::time::Duration;

use crate::cluster::Cluster;

#[tokio::test]
async fn three_replicas_share_sessions_locks_and_content() {
    let Some(mut cluster) = Cluster::start(3, &[]).await else { return };
    cluster.seed("u1", "Team/plan.docx", b"version one").await;
    let (token, fid) = cluster.session(0, "u1", "cloudreve://my/Team/plan.docx").await;
    let client = cluster.client.clone();

    // A session minted on replica 1 works on 2 and 3.
    for replica in 1..3 {
        let r = client.get(cluster.file_url(replica, &fid, "", &token)).send().await.unwrap();
        assert_eq!(r.status(), 200, "replica {replica}");
    }

    // 150 concurrent Lock calls with distinct ids over the three replicas: one winner.
    let tries = (0..150).map(|i| {
        let url = cluster.file_url(i % 3, &fid, "", &token);
        let client = client.clone();
        async move {
            let r = client.post(url).header("X-WOPI-Override", "LOCK").header("X-WOPI-Lock", format!("lock-{i}")).send().await.unwrap();
            let held = r.headers().get("X-WOPI-Lock").map(|v| v.to_str().unwrap().to_string());
            (format!("lock-{i}"), r.status().as_u16(), held)
        }
    });
    let results = futures_util::future::join_all(tries).await;
    let winners: Vec<_> = results.iter().filter(|(_, s, _)| *s == 200).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = winners[0].0.clone();
    for (_, status, held) in &results {
        if *status != 200 {
            assert_eq!((*status, held.as_deref()), (409, Some(winner.as_str())));
        }
    }

    // PutFile through replica 2, read back byte-identical through replica 3 at once.
    let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i * 7 % 256) as u8).collect();
    let r = client
        .post(cluster.file_url(1, &fid, "/contents", &token))
        .header("X-WOPI-Override", "PUT")
        .header("X-WOPI-Lock", &winner)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let version = r.headers()["X-WOPI-ItemVersion"].to_str().unwrap().to_string();
    let r = client.get(cluster.file_url(2, &fid, "/contents", &token)).send().await.unwrap();
    assert_eq!(r.headers()["X-WOPI-ItemVersion"].to_str().unwrap(), version);
    assert!(r.bytes().await.unwrap().as_ref() == body.as_slice(), "byte-identical on another replica");

    // Replica 1 is SIGKILLed in the middle of an upload: the previous version stays, the
    // others keep serving.
    let port = cluster.replicas[0].port;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /wopi/files/{fid}/contents?access_token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-WOPI-Override: PUT\r\nX-WOPI-Lock: {winner}\r\nContent-Length: {}\r\n\r\n",
        20 * 1024 * 1024
    )
    .unwrap();
    for _ in 0..12 {
        stream.write_all(&vec![b'k'; 1024 * 1024]).unwrap();
    }
    stream.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.replicas[0].kill();
    drop(stream);
    for replica in 1..3 {
        let r = client.get(cluster.file_url(replica, &fid, "/contents", &token)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["X-WOPI-ItemVersion"].to_str().unwrap(), version);
        assert!(r.bytes().await.unwrap().as_ref() == body.as_slice(), "the interrupted upload changed nothing");
    }
    // And the file is still writable through the survivors.
    let r = client
        .post(cluster.file_url(2, &fid, "/contents", &token))
        .header("X-WOPI-Override", "PUT")
        .header("X-WOPI-Lock", &winner)
        .body("after the crash")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
