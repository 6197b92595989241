//! What a save with the client's flags may do to the versions of another person's work.

use serde_json::json;

use crate::helpers::*;

fn past_contents(app: &TestApp, fid: &str) -> Vec<Vec<u8>> {
    let dir = app.data.join(".wopigate/versions").join(fid);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir).map(|d| d.map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect()).unwrap_or_default();
    out.sort();
    out
}

/// A client's `IsModifiedByUser: false` must not erase content someone else saved (it used
/// to drop the replaced content whoever wrote it), nor content of unknown origin.
#[tokio::test]
async fn an_unmodified_save_never_drops_another_persons_content() {
    let app = spawn_app().await;
    app.put_file("alice", "Docs/report.docx", b"from the platform");
    app.put_share("team", json!({"owner": "alice", "path": "Docs/report.docx", "editable": true}));
    let alice = app.session_for("alice", "cloudreve://my/Docs/report.docx", "edit").await;
    let unmodified = [("X-COOL-WOPI-IsModifiedByUser", "false")];

    // Content of unknown origin (written by the platform), replaced by a save that claims no
    // change: kept.
    assert_eq!(app.lock(&alice, "A").await.status(), 200);
    let put = |s: &Session, lock: &str, body: &'static str, headers: &[(&str, &str)]| {
        let mut req = app.put(s, body).header("X-WOPI-Lock", lock.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    assert_eq!(put(&alice, "A", "alice 1", &unmodified).await.unwrap().status(), 200);
    assert_eq!(put(&alice, "A", "alice 2 important work", &[]).await.unwrap().status(), 200);
    assert_eq!(app.op(&alice, "UNLOCK").header("X-WOPI-Lock", "A").send().await.unwrap().status(), 200);

    // Bob, through the editable share, saves claiming nothing changed: Alice's work is kept.
    let bob = app.session_for("bob", "cloudreve://team@share/", "edit").await;
    assert_eq!(app.lock(&bob, "B").await.status(), 200);
    assert_eq!(put(&bob, "B", "bob's bytes", &unmodified).await.unwrap().status(), 200);
    assert_eq!(past_contents(&app, &alice.fid), [b"alice 1".to_vec(), b"alice 2 important work".to_vec(), b"from the platform".to_vec()]);

    // Bob's own content written again unmodified: no version added.
    assert_eq!(put(&bob, "B", "bob's bytes", &unmodified).await.unwrap().status(), 200);
    assert_eq!(past_contents(&app, &alice.fid).len(), 3);
}
