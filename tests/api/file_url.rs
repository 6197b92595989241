//! CheckFileInfo's `FileUrl`: a signed, short-lived download link for the content a session
//! reads, served as GetFile is (ranges, version header), refused once expired, altered, moved
//! to another file, or when the session's access is gone; never written to the log.

use serde_json::{json, Value};

use crate::helpers::*;
use crate::process::{command, stop, wait_healthy};

/// The session's `FileUrl` (CheckFileInfo must offer one).
async fn file_url(app: &TestApp, s: &Session) -> String {
    let info = app.info(s).await;
    info["FileUrl"].as_str().unwrap_or_else(|| panic!("no FileUrl: {info}")).to_string()
}

/// The grant of a `FileUrl`, and the link with `grant` in its place.
fn grant_of(url: &str) -> String {
    url::Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == "grant").unwrap().1.into_owned()
}

fn with_grant(url: &str, grant: &str) -> String {
    format!("{}?grant={grant}", url.split('?').next().unwrap())
}

/// GET without any token or header: as a client fetches a `FileUrl`.
async fn fetch(app: &TestApp, url: &str) -> (u16, String) {
    let r = app.client.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn file_url_serves_the_session_content_whole_and_in_ranges_and_follows_saves() {
    let app = spawn_app().await;
    app.put_file("alice", "Docs/report.docx", b"0123456789");
    let s = app.session_for("alice", "cloudreve://my/Docs/report.docx", "edit").await;
    let info = app.info(&s).await;
    let url = info["FileUrl"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{}/wopi/files/{}/download?grant=", app.address, s.fid)), "{url}");
    assert!(!url.contains("access_token") && !url.contains(&s.token), "a FileUrl carries no access token: {url}");

    let r = app.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.headers()["content-length"], "10");
    assert_eq!(r.headers()["x-wopi-itemversion"].to_str().unwrap(), info["Version"].as_str().unwrap());
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"0123456789");

    let r = app.client.get(&url).header("Range", "bytes=2-5").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 2-5/10");
    assert_eq!(r.headers()["content-length"], "4");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"2345");
    let r = app.client.get(&url).header("Range", "bytes=-3").send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.bytes().await.unwrap().as_ref()), (206, &b"789"[..]));
    let r = app.client.get(&url).header("Range", "bytes=20-").send().await.unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */10");
    let r = app.client.get(&url).header("X-WOPI-MaxExpectedSize", "5").send().await.unwrap();
    assert_eq!(r.status(), 412, "the same checks as GetFile");

    // A session on the current version reads the current version: after a save, the link
    // handed out before it serves what was saved (the validator's GetFromFileUrlAfterPutFile).
    assert_eq!(app.lock(&s, "L").await.status(), 200);
    let saved = app.put(&s, "saved later").header("X-WOPI-Lock", "L").send().await.unwrap();
    assert_eq!(saved.status(), 200);
    let new_version = saved.headers()["x-wopi-itemversion"].to_str().unwrap().to_string();
    assert_ne!(new_version, info["Version"].as_str().unwrap());
    let r = app.client.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-wopi-itemversion"].to_str().unwrap(), new_version);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"saved later");
}

#[tokio::test]
async fn view_only_and_past_version_sessions_get_a_file_url_bound_to_their_version() {
    let app = spawn_app().await;
    app.put_file("alice", "a.docx", b"first");
    app.put_share("ro", json!({"owner": "alice", "path": "a.docx"}));
    let owner = app.session_for("alice", "cloudreve://my/a.docx", "edit").await;
    let info = app.info(&owner).await;
    let first = info["Version"].as_str().unwrap().to_string();
    assert_eq!(app.lock(&owner, "L").await.status(), 200);
    assert_eq!(app.put(&owner, "second").header("X-WOPI-Lock", "L").send().await.unwrap().status(), 200);

    // A visitor of a read-only share: a view session, with a FileUrl that works.
    let visitor = Session::from_envelope(&app.open_anonymous("cloudreve://ro@share/", "edit").await);
    assert_eq!(visitor.action, "view");
    assert_eq!(app.info(&visitor).await["UserCanWrite"], false);
    assert_eq!(fetch(&app, &file_url(&app, &visitor).await).await, (200, "second".into()));

    // A session on the past version: its link serves that version, while it is kept.
    let jwt = caller_jwt("alice", "Alice");
    let body = json!({"uri": "cloudreve://my/a.docx", "viewer_id": COLLABORA, "preferred_action": "view", "version": first});
    let past = Session::from_envelope(&app.session(body, Some(&jwt)).await);
    let url = file_url(&app, &past).await;
    let r = app.client.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-wopi-itemversion"].to_str().unwrap(), first);
    assert_eq!(r.text().await.unwrap(), "first");
    std::fs::remove_dir_all(app.data.join(".wopigate/versions").join(&past.fid)).unwrap();
    assert_eq!(fetch(&app, &url).await.0, 404, "a past version no longer kept is gone");
    assert_eq!(fetch(&app, &file_url(&app, &owner).await).await, (200, "second".into()));
}

#[tokio::test]
async fn altered_foreign_and_unsigned_links_are_refused_without_repeating_them() {
    let app = spawn_app().await;
    app.put_file("alice", "a.docx", b"secret a");
    app.put_file("alice", "b.docx", b"secret b");
    let a = app.session_for("alice", "cloudreve://my/a.docx", "edit").await;
    let b = app.session_for("alice", "cloudreve://my/b.docx", "edit").await;
    let url = file_url(&app, &a).await;
    let grant = grant_of(&url);
    let (payload, signature) = grant.split_once('.').unwrap();
    assert_eq!(fetch(&app, &url).await, (200, "secret a".into()));

    let flip = |s: &str, i: usize| {
        let mut bytes = s.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let other_file = url.replace(&format!("/files/{}/", a.fid), &format!("/files/{}/", b.fid));
    let cases = [
        ("signature altered", with_grant(&url, &format!("{payload}.{}", flip(signature, 3)))),
        ("payload altered", with_grant(&url, &format!("{}.{signature}", flip(payload, payload.len() - 2)))),
        ("another file's path with a valid grant", other_file),
        ("no grant", url.split('?').next().unwrap().to_string()),
        ("empty grant", with_grant(&url, "")),
        ("an access token as the grant", with_grant(&url, &a.token)),
        ("garbage", with_grant(&url, "not.a-grant")),
    ];
    for (what, bad) in cases {
        let (status, body) = fetch(&app, &bad).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(!body.contains(signature) && !body.contains(payload) && !body.contains("secret"), "{what}: {body}");
    }
    let (_, body) = fetch(&app, &url.replace(&format!("/files/{}/", a.fid), &format!("/files/{}/", b.fid))).await;
    assert!(body.contains("another file"), "{body}");
    // The grant is no access token either.
    let r = app.client.get(app.file_url(&a.fid, "/contents", &grant)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A deleted file: its links are gone.
    assert_eq!(app.op(&a, "DELETE").send().await.unwrap().status(), 200);
    assert_eq!(fetch(&app, &url).await.0, 404);
}

#[tokio::test]
async fn links_expire_with_their_lifetime_and_never_outlive_the_session() {
    let app = spawn_with(&[("WOPIGATE_FILE_URL_TTL_SECS", "1"), ("WOPIGATE_CLOCK_SKEW_SECS", "0")]).await;
    app.put_file("alice", "a.docx", b"x");
    let s = app.session_for("alice", "cloudreve://my/a.docx", "edit").await;
    let url = file_url(&app, &s).await;
    assert_eq!(fetch(&app, &url).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = fetch(&app, &url).await;
    assert_eq!(status, 401);
    assert!(body.contains("expired"), "{body}");
    assert_eq!(app.check_file_info(&s).await.status(), 200, "the session itself lives on");
    assert_eq!(fetch(&app, &file_url(&app, &s).await).await.0, 200, "and hands out fresh links");

    // Five minutes by default, but no longer than the token the link was handed out for.
    let app = spawn_with(&[("WOPIGATE_CLOCK_SKEW_SECS", "0")]).await;
    app.put_file("alice", "a.docx", b"x");
    let s = app.session_for("alice", "cloudreve://my/a.docx", "edit").await;
    let mut claims = claims_of(&s.token);
    claims["exp"] = json!(now() + 2);
    let short = Session { token: legacy_token(&claims, &wopigate::config::derived_kid(TOKEN_SECRET), TOKEN_SECRET), ..s.clone() };
    let url = file_url(&app, &short).await;
    assert_eq!(fetch(&app, &url).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_eq!(fetch(&app, &url).await.0, 401, "capped at the token's expiry");
    assert_eq!(fetch(&app, &file_url(&app, &s).await).await.0, 200);
}

#[tokio::test]
async fn a_revoked_share_ends_its_links_and_zero_turns_them_off() {
    let app = spawn_with(&[("WOPIGATE_SHARE_CACHE_SECS", "0")]).await;
    app.put_file("alice", "a.docx", b"shared");
    app.put_share("s1", json!({"owner": "alice", "path": "a.docx"}));
    let visitor = app.session_for("bob", "cloudreve://s1@share/", "view").await;
    let url = file_url(&app, &visitor).await;
    assert_eq!(fetch(&app, &url).await.0, 200);
    std::fs::remove_file(app.data.join(".wopigate/objects/shares/s1.json")).unwrap();
    let (status, body) = fetch(&app, &url).await;
    assert_eq!(status, 401, "{body}");

    let app = spawn_with(&[("WOPIGATE_FILE_URL_TTL_SECS", "0")]).await;
    app.put_file("alice", "a.docx", b"x");
    let s = app.session_for("alice", "cloudreve://my/a.docx", "edit").await;
    let info = app.info(&s).await;
    assert!(info.get("FileUrl").is_none(), "{info}");
    let r = app.client.get(format!("{}/wopi/files/{}/download?grant=x.y", app.address, s.fid)).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn the_grant_never_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::create_dir_all(dir.path().join("u1")).unwrap();
    std::fs::write(dir.path().join("u1/a.docx"), b"x").unwrap();
    let mut child = command(&base_env(port, dir.path(), &[])).spawn().unwrap();
    wait_healthy(port, &mut child).await;
    let app = TestApp::on_port(port, dir.path());
    let s = app.session_for("u1", "cloudreve://my/a.docx", "view").await;
    let url = file_url(&app, &s).await;
    let grant = grant_of(&url);
    let (_, signature) = grant.split_once('.').unwrap();
    assert_eq!(fetch(&app, &url).await.0, 200);
    assert_eq!(fetch(&app, &with_grant(&url, &format!("{grant}x"))).await.0, 401);
    let stderr = stop(child);
    let lines: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["wopi_op"] == "GetFromFileUrl")
        .collect();
    assert_eq!(lines.len(), 2, "one request line per fetch:\n{stderr}");
    assert_eq!(lines[0]["fields"]["path"], format!("/wopi/files/{}/download", s.fid));
    assert_eq!(lines[0]["fields"]["file_id"], s.fid.as_str());
    assert!(!stderr.contains(signature) && !stderr.contains(&grant), "the grant never reaches the log:\n{stderr}");
}
