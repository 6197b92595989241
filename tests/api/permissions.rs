//! One permission function for every token and folder: derived tokens never grant more than
//! policy (over the store's current state) and the presented token allow.

use serde_json::{json, Value};

use crate::helpers::*;

fn url_of(body: &Value) -> String {
    body["Url"].as_str().expect("a Url").to_string()
}

/// PutRelativeFile with `headers`, body `content`.
async fn put_relative(app: &TestApp, s: &Session, headers: &[(&str, &str)], content: &'static [u8]) -> reqwest::Response {
    let mut req = app.op(s, "PUT_RELATIVE").body(content);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_read_only_share_visitor_cannot_write_through_a_derived_token() {
    // F1: Bob opens a read-only share with the share folder as parent_uri, then asks for a token
    // for his own file; nothing of the share's folder may ride along into it.
    let app = spawn_app().await;
    app.put_file("owner", "Team/plan.docx", b"owner's plan");
    app.put_file("bob", "own.docx", b"bob's");
    app.put_share("ROteam", json!({"owner": "owner", "path": "Team"}));
    let bob = caller_jwt("bob", "Bob");
    let e = app
        .session(
            json!({"uri": "cloudreve://ROteam@share/plan.docx", "viewer_id": COLLABORA, "preferred_action": "edit",
                   "parent_uri": "cloudreve://ROteam@share/"}),
            Some(&bob),
        )
        .await;
    let shared = Session::from_envelope(&e);
    assert_eq!(shared.action, "view", "a read-only share opens for viewing");
    let before = snapshot(&app.data);

    // The share session itself may not create anything in the share.
    let info = app.info(&shared).await;
    assert_eq!(info["UserCanNotWriteRelative"], true);
    for headers in [
        vec![("X-WOPI-RelativeTarget", "plan.docx"), ("X-WOPI-OverwriteRelativeTarget", "true")],
        vec![("X-WOPI-SuggestedTarget", "planted.docx")],
    ] {
        assert_eq!(put_relative(&app, &shared, &headers, b"bob's bytes").await.status(), 501);
    }

    // A token derived for his own file carries no share folder and no more than view.
    let r = app.wopi_src(&shared.token, "cloudreve://my/own.docx").await;
    assert_eq!(r.status(), 200);
    let own = TestApp::session_from_url(&url_of(&r.json().await.unwrap()));
    let claims = claims_of(&own.token);
    assert!(claims.get("pid").is_none() && claims.get("shr").is_none() && claims.get("par").is_none(), "{claims}");
    assert_eq!(own.action, "view", "derived from a view token: view");
    let r = put_relative(&app, &own, &[("X-WOPI-RelativeTarget", "plan.docx"), ("X-WOPI-OverwriteRelativeTarget", "true")], b"x").await;
    assert_eq!(r.status(), 501);

    // Even from his own edit session, Save As lands in his own folder only.
    let mine = app.session_for("bob", "cloudreve://my/own.docx", "edit").await;
    let r = put_relative(&app, &mine, &[("X-WOPI-RelativeTarget", "plan.docx"), ("X-WOPI-OverwriteRelativeTarget", "true")], b"x").await;
    assert_eq!(r.status(), 200);
    assert_eq!(std::fs::read(app.data.join("owner/Team/plan.docx")).unwrap(), b"owner's plan");
    assert_eq!(std::fs::read(app.data.join("bob/plan.docx")).unwrap(), b"x");
    let after: Vec<_> = snapshot(&app.data).into_iter().filter(|p| p.starts_with("owner")).collect();
    assert_eq!(after, before.into_iter().filter(|p| p.starts_with("owner")).collect::<Vec<_>>(), "nothing planted in the share");
}

#[tokio::test]
async fn a_single_file_share_grants_no_folder_and_reveals_no_names() {
    // F2: an editable share of one file: its siblings are the owner's, private.
    let app = spawn_app().await;
    app.put_file("owner", "Docs/shared.docx", b"shared");
    app.put_file("owner", "Docs/secret.docx", b"secret");
    app.put_share("one", json!({"owner": "owner", "path": "Docs/shared.docx", "editable": true}));
    let s = Session::from_envelope(&app.open_anonymous("cloudreve://one@share/", "edit").await);
    assert_eq!(s.action, "edit");
    let info = app.info(&s).await;
    assert_eq!(info["UserCanWrite"], true);
    assert_eq!(info["UserCanNotWriteRelative"], true);
    let before = snapshot(&app.data);
    let mut answers = Vec::new();
    for headers in [
        vec![("X-WOPI-RelativeTarget", "secret.docx"), ("X-WOPI-OverwriteRelativeTarget", "true")],
        vec![("X-WOPI-RelativeTarget", "secret.docx")],
        vec![("X-WOPI-RelativeTarget", "nothing-here.docx")],
        vec![("X-WOPI-SuggestedTarget", "new.docx")],
    ] {
        let r = put_relative(&app, &s, &headers, b"stranger's bytes").await;
        answers.push((r.status().as_u16(), r.headers().get("X-WOPI-ValidRelativeTarget").is_some(), r.text().await.unwrap()));
    }
    assert!(answers.iter().all(|a| a.0 == 501 && !a.1), "{answers:?}");
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "the same answer whether a name exists or not: {answers:?}");
    assert_eq!(snapshot(&app.data), before);
    assert_eq!(std::fs::read(app.data.join("owner/Docs/secret.docx")).unwrap(), b"secret");
    // Nor can it reach a sibling by GetFileWopiSrc.
    let secret = app.session_for("owner", "cloudreve://my/Docs/secret.docx", "view").await;
    let r = app.wopi_src(&s.token, &format!("{}/wopi/files/{}", app.address, secret.fid)).await;
    assert_eq!(r.status(), 404);
    // Deleting is the owner's alone.
    assert_eq!(app.op(&s, "DELETE").send().await.unwrap().status(), 401);
    assert!(app.data.join("owner/Docs/shared.docx").exists());
}

#[tokio::test]
async fn a_view_token_never_derives_an_edit_token() {
    // F3: the same file, named by its cloudreve:// URI.
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", b"x");
    let view = app.session_for("u1", "cloudreve://my/a.docx", "view").await;
    for native in ["cloudreve://my/a.docx".to_string(), format!("{}/wopi/files/{}", app.address, view.fid)] {
        let r = app.wopi_src(&view.token, &native).await;
        assert_eq!(r.status(), 200, "{native}");
        let derived = TestApp::session_from_url(&url_of(&r.json().await.unwrap()));
        assert_eq!(derived.action, "view", "{native}");
        assert_eq!(app.lock(&derived, "L").await.status(), 401);
        assert_eq!(app.put(&derived, "new").send().await.unwrap().status(), 401);
        assert_eq!(app.info(&derived).await["UserCanWrite"], false);
    }
    assert_eq!(std::fs::read(app.data.join("u1/a.docx")).unwrap(), b"x");
}

#[tokio::test]
async fn renames_keep_shares_working() {
    // F7: manifests name their target by id.
    let app = spawn_app().await;
    app.put_file("owner", "Docs/shared.docx", b"x");
    app.put_file("owner", "Team/inside.docx", b"y");
    app.put_share("edit1", json!({"owner": "owner", "path": "Docs/shared.docx", "editable": true}));
    app.put_share("team", json!({"owner": "owner", "path": "Team", "editable": true}));

    // The owner renames the shared file; the share follows it.
    let s = Session::from_envelope(&app.open_anonymous("cloudreve://edit1@share/", "edit").await);
    let manifest: Value = serde_json::from_slice(&std::fs::read(app.data.join(".wopigate/objects/shares/edit1.json")).unwrap()).unwrap();
    assert_eq!(manifest["target"], s.fid.as_str(), "the manifest now names the file by id");
    let own = app.session_for("owner", "cloudreve://my/Docs/shared.docx", "edit").await;
    assert_eq!(app.op(&own, "RENAME_FILE").header("X-WOPI-RequestedName", "final").send().await.unwrap().status(), 200);
    assert!(app.data.join("owner/Docs/final.docx").exists());
    assert_eq!(app.info(&s).await["BaseFileName"], "final.docx", "open sessions keep working");
    let again = Session::from_envelope(&app.open_anonymous("cloudreve://edit1@share/", "edit").await);
    assert_eq!(again.fid, s.fid);
    // Its visitor may not rename it: that would tell which names its folder holds.
    assert_eq!(app.info(&s).await["UserCanRename"], false);
    app.put_file("owner", "Docs/secret.docx", b"s");
    for name in ["secret", "nothing-there"] {
        let r = app.op(&s, "RENAME_FILE").header("X-WOPI-RequestedName", name).send().await.unwrap();
        assert_eq!(r.status(), 401, "{name}");
    }
    assert!(app.data.join("owner/Docs/final.docx").exists());

    // Inside a shared folder a visitor may rename: the share and the file stay reachable.
    let inside = Session::from_envelope(&app.open_anonymous("cloudreve://team@share/inside.docx", "edit").await);
    assert_eq!(app.info(&inside).await["UserCanRename"], true);
    assert_eq!(app.op(&inside, "RENAME_FILE").header("X-WOPI-RequestedName", "moved").send().await.unwrap().status(), 200);
    assert_code(&app.open_anonymous("cloudreve://team@share/moved.docx", "edit").await, 0);
    assert_eq!(app.info(&inside).await["BaseFileName"], "moved.docx");
}

#[tokio::test]
async fn share_changes_reach_open_sessions() {
    let app = spawn_with(&[("WOPIGATE_SHARE_CACHE_SECS", "1")]).await;
    app.put_file("owner", "Team/doc.docx", b"v1");
    let editable = json!({"owner": "owner", "path": "Team", "editable": true});
    app.put_share("live", editable.clone());
    let s = Session::from_envelope(&app.open("guest", "cloudreve://live@share/doc.docx", "edit").await);
    assert_eq!(app.lock(&s, "L1").await.status(), 200);
    let manifest_path = app.data.join(".wopigate/objects/shares/live.json");
    let migrated: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();

    // Made read-only: writes stop at once, CheckFileInfo says so, reads go on.
    let mut read_only = migrated.clone();
    read_only["editable"] = json!(false);
    std::fs::write(&manifest_path, read_only.to_string()).unwrap();
    let r = app.put(&s, "v2").header("X-WOPI-Lock", "L1").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.op(&s, "REFRESH_LOCK").header("X-WOPI-Lock", "L1").send().await.unwrap().status(), 401);
    assert_eq!(app.info(&s).await["UserCanWrite"], false);
    assert_eq!(app.contents(&s).await, (200, b"v1".to_vec()));

    // Editable again: the same session may write (rights follow the manifest, not the past).
    std::fs::write(&manifest_path, migrated.to_string()).unwrap();
    assert_eq!(app.put(&s, "v2").header("X-WOPI-Lock", "L1").send().await.unwrap().status(), 200);

    // Expired: nothing at all, at once for CheckFileInfo and writes.
    let mut expired = migrated.clone();
    expired["expires_at"] = json!("2020-01-01T00:00:00Z");
    std::fs::write(&manifest_path, expired.to_string()).unwrap();
    assert_eq!(app.check_file_info(&s).await.status(), 401);
    assert_eq!(app.put(&s, "v3").header("X-WOPI-Lock", "L1").send().await.unwrap().status(), 401);

    // Deleted: GetFile stops within the cache time (1 s here, 5 s by default).
    std::fs::write(&manifest_path, migrated.to_string()).unwrap();
    assert_eq!(app.check_file_info(&s).await.status(), 200, "a fresh read also refreshes what GetFile uses");
    assert_eq!(app.contents(&s).await.0, 200);
    std::fs::remove_file(&manifest_path).unwrap();
    assert_eq!(app.check_file_info(&s).await.status(), 401);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(app.contents(&s).await.0, 401);
    assert_eq!(std::fs::read(app.data.join("owner/Team/doc.docx")).unwrap(), b"v2");
}

#[tokio::test]
async fn anonymous_sessions_cannot_store_user_info() {
    let app = spawn_app().await;
    app.put_file("owner", "pub.docx", b"x");
    app.put_share("pub", json!({"owner": "owner", "path": "pub.docx", "editable": true}));
    let anon = Session::from_envelope(&app.open_anonymous("cloudreve://pub@share/", "edit").await);
    assert_eq!(app.info(&anon).await["SupportsUserInfo"], false);
    let r = app.op(&anon, "PUT_USER_INFO").body("grow the store").send().await.unwrap();
    assert_eq!(r.status(), 501);
    assert!(!app.data.join(".wopigate/objects/userinfo").exists());
    // Signed-in users keep theirs.
    let user = app.session_for("u1", "cloudreve://pub@share/", "edit").await;
    assert_eq!(app.info(&user).await["SupportsUserInfo"], true);
    assert_eq!(app.op(&user, "PUT_USER_INFO").body("{\"theme\":1}").send().await.unwrap().status(), 200);
    assert_eq!(app.info(&user).await["UserInfo"], "{\"theme\":1}");
}

#[tokio::test]
async fn tokens_of_the_old_shape_are_refused_cleanly_for_shares() {
    // Tokens minted before share ids were carried named the file by URI: a share session of
    // that shape cannot be re-checked, so it is refused (401), while an owner's still works.
    let app = spawn_app().await;
    app.put_file("owner", "pub.docx", b"x");
    app.put_share("pub", json!({"owner": "owner", "path": "pub.docx", "editable": true}));
    let fresh = Session::from_envelope(&app.open_anonymous("cloudreve://pub@share/", "edit").await);
    let owner = app.session_for("owner", "cloudreve://my/pub.docx", "edit").await;
    let old_shape = |session: &Session, uri: &str| {
        let mut claims = claims_of(&session.token);
        claims.as_object_mut().unwrap().remove("shr");
        claims["uri"] = json!(uri);
        legacy_token(&claims, &wopigate::config::derived_kid(TOKEN_SECRET), TOKEN_SECRET)
    };
    let old_share = Session { token: old_shape(&fresh, "cloudreve://pub@share/"), ..fresh.clone() };
    assert_eq!(app.check_file_info(&old_share).await.status(), 401);
    assert_eq!(app.put(&old_share, "x").send().await.unwrap().status(), 401);
    let old_owner = Session { token: old_shape(&owner, "cloudreve://owner@my/pub.docx"), ..owner.clone() };
    assert_eq!(app.check_file_info(&old_owner).await.status(), 200);
}

#[tokio::test]
async fn save_as_in_the_parent_folder_needs_a_create_grant_there_now() {
    let app = spawn_app().await;
    app.put_file("owner", "Team/a.docx", b"x");
    app.put_file("owner", "Team/Out/keep.txt", b"k");
    app.put_share("team", json!({"owner": "owner", "path": "Team", "editable": true}));
    let e = app
        .session(
            json!({"uri": "cloudreve://team@share/a.docx", "viewer_id": COLLABORA, "preferred_action": "edit",
                   "parent_uri": "cloudreve://team@share/Out"}),
            None,
        )
        .await;
    let s = Session::from_envelope(&e);
    let r = put_relative(&app, &s, &[("X-WOPI-SuggestedTarget", "copy.docx")], b"copy").await;
    assert_eq!(r.status(), 200);
    assert_eq!(std::fs::read(app.data.join("owner/Team/Out/copy.docx")).unwrap(), b"copy");
    let copy = TestApp::session_from_url(&url_of(&r.json().await.unwrap()));
    assert_eq!(copy.action, "edit");
    assert_eq!(claims_of(&copy.token)["shr"], "team");
    // The share made read-only: no more creating, for either session.
    let path = app.data.join(".wopigate/objects/shares/team.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["editable"] = json!(false);
    std::fs::write(&path, manifest.to_string()).unwrap();
    assert_eq!(put_relative(&app, &s, &[("X-WOPI-SuggestedTarget", "copy.docx")], b"c").await.status(), 501);
    assert_eq!(app.info(&copy).await["UserCanNotWriteRelative"], true);
    // A parent outside the file's share is refused when the session is made.
    app.put_file("owner", "Private/x.docx", b"p");
    let e = app
        .session(
            json!({"uri": "cloudreve://team@share/a.docx", "viewer_id": COLLABORA, "preferred_action": "edit",
                   "parent_uri": "cloudreve://my/Private"}),
            Some(&caller_jwt("guest", "G")),
        )
        .await;
    assert_code(&e, 40001);
}

/// A request body sent in two parts, the second only when `go` fires.
fn held_body(first: &'static [u8], rest: &'static [u8]) -> (reqwest::Body, tokio::sync::oneshot::Sender<()>) {
    use futures_util::StreamExt;
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from_static(first)) }).chain(
        futures_util::stream::once(async move {
            let _ = wait.await;
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(rest))
        }),
    );
    (reqwest::Body::wrap_stream(stream), go)
}

#[tokio::test]
async fn an_upload_started_before_a_share_is_revoked_does_not_land() {
    let app = spawn_app().await;
    app.put_file("owner", "Team/doc.docx", b"v1");
    app.put_share("late", json!({"owner": "owner", "path": "Team", "editable": true}));
    let s = Session::from_envelope(&app.open_anonymous("cloudreve://late@share/doc.docx", "edit").await);
    assert_eq!(app.lock(&s, "L").await.status(), 200);
    let manifest = app.data.join(".wopigate/objects/shares/late.json");
    let editable = std::fs::read(&manifest).unwrap();

    for revoke in ["read-only", "deleted"] {
        std::fs::write(&manifest, &editable).unwrap();
        let before = snapshot(&app.data.join("owner"));
        let (put_body, put_go) = held_body(b"start ", b"after the revoke");
        let put = app.put(&s, put_body).header("X-WOPI-Lock", "L").send();
        let (rel_body, rel_go) = held_body(b"start ", b"after the revoke");
        let relative = app.op(&s, "PUT_RELATIVE").header("X-WOPI-RelativeTarget", "planted.docx").body(rel_body).send();
        let (put, relative, ()) = tokio::join!(put, relative, async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if revoke == "deleted" {
                std::fs::remove_file(&manifest).unwrap();
            } else {
                let mut m: Value = serde_json::from_slice(&editable).unwrap();
                m["editable"] = json!(false);
                std::fs::write(&manifest, m.to_string()).unwrap();
            }
            let _ = put_go.send(());
            let _ = rel_go.send(());
        });
        assert_eq!(put.unwrap().status(), 401, "{revoke}: PutFile");
        assert_eq!(relative.unwrap().status(), 401, "{revoke}: PutRelativeFile");
        assert_eq!(std::fs::read(app.data.join("owner/Team/doc.docx")).unwrap(), b"v1", "{revoke}");
        assert_eq!(snapshot(&app.data.join("owner")), before, "{revoke}: nothing planted");
    }
}

#[tokio::test]
async fn get_file_wopi_src_makes_no_ids_for_names_that_do_not_exist() {
    let app = spawn_app().await;
    app.put_file("owner", "Team/a.docx", b"x");
    app.put_share("view", json!({"owner": "owner", "path": "Team"}));
    let s = Session::from_envelope(&app.open_anonymous("cloudreve://view@share/a.docx", "view").await);
    let ids = app.data.join(".wopigate/objects/ids");
    let before = std::fs::read_dir(&ids).unwrap().count();
    for i in 0..20 {
        let r = app.wopi_src(&s.token, &format!("cloudreve://view@share/nothing-{i}.docx")).await;
        assert_eq!(r.status(), 404);
    }
    assert_eq!(std::fs::read_dir(&ids).unwrap().count(), before, "a visitor cannot grow the store with id records");
}
