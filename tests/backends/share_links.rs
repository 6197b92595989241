//! FileUrl and GetShareUrl on S3 + Redis with two replicas: a link handed out by one replica is
//! served by the other, and concurrent first GetShareUrl calls on both agree on one share.

use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use serde_json::Value;

use crate::cluster::{open_session, Cluster};

#[tokio::test]
async fn links_made_on_one_replica_work_on_the_other_and_concurrent_calls_agree() {
    let Some(cluster) = Cluster::start(2, &[]).await else { return };
    cluster.seed("alice", "Docs/report.docx", b"0123456789").await;
    let (token, fid) = cluster.session(0, "alice", "cloudreve://my/Docs/report.docx").await;
    let client = cluster.client.clone();

    // FileUrl from replica 1's CheckFileInfo, fetched (a range of it) from replica 2.
    let info: Value = client.get(cluster.file_url(0, &fid, "", &token)).send().await.unwrap().json().await.unwrap();
    let url = info["FileUrl"].as_str().unwrap();
    let other = url.replace(&format!(":{}/", cluster.replicas[0].port), &format!(":{}/", cluster.replicas[1].port));
    assert_ne!(other, url);
    let r = client.get(&other).header("Range", "bytes=3-4").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"34");

    // Twenty GetShareUrl calls at once over both replicas: one link, one manifest.
    let calls = (0..20).map(|i| {
        let (client, url) = (client.clone(), cluster.file_url(i % 2, &fid, "", &token));
        async move {
            let r = client.post(url).header("X-WOPI-Override", "GET_SHARE_URL").header("X-WOPI-UrlType", "ReadWrite").send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["ShareUrl"].as_str().unwrap().to_string()
        }
    });
    let links = futures_util::future::join_all(calls).await;
    assert!(links.iter().all(|l| *l == links[0]), "{links:?}");
    let shares = ObjectPath::from(format!("{}/.wopigate/objects/shares", cluster.prefix));
    let listed: Vec<_> = cluster.bucket().list(Some(&shares)).try_collect().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");

    // The link opens for another user, for editing, on either replica.
    for replica in 0..2 {
        let (bob, bob_fid) = open_session(&client, &cluster.replicas[replica], "bob", &links[0]).await;
        assert_eq!(bob_fid, fid);
        assert_eq!(wopigate::token::inspect(&bob).unwrap().act, wopigate::token::Action::Edit);
    }
}
