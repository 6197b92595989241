//! The WOPI host operations over HTTP on the local store.

use std::io::Write;
use std::sync::Arc;

use chrono::Duration;
use serde_json::{json, Value};
use wopigate::clock::ManualClock;

use crate::helpers::*;

#[tokio::test]
async fn check_file_info_describes_file_user_and_capabilities() {
    let app = spawn_app().await;
    app.put_file("u1", "Docs/Report.docx", b"hello");
    let s = app.session_for("u1", "cloudreve://my/Docs/Report.docx", "edit").await;
    let r = app.check_file_info(&s).await;
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.headers().contains_key("X-WOPI-ServerVersion"));
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["BaseFileName"], "Report.docx");
    assert_eq!(info["FileExtension"], ".docx");
    assert_eq!(info["Size"], 5);
    assert_eq!(info["OwnerId"], "u1");
    assert_eq!(info["UserId"], "u1");
    assert_eq!(info["UserFriendlyName"], "Test User");
    assert_eq!(info["IsAnonymousUser"], false);
    assert_eq!(info["UserCanWrite"], true);
    assert_eq!(info["ReadOnly"], false);
    assert_eq!(info["UserCanNotWriteRelative"], false);
    assert_eq!(info["PostMessageOrigin"], "https://drive.example.test");
    for flag in ["SupportsUpdate", "SupportsLocks", "SupportsGetLock", "SupportsExtendedLockLength", "SupportsRename", "SupportsDeleteFile", "SupportsUserInfo", "SupportsGetFileWopiSrc", "SupportsContainers", "SupportsEcosystem"] {
        assert_eq!(info[flag], true, "{flag}");
    }
    assert!(info.get("SupportsCoauth").is_none() && info.get("SupportsCobalt").is_none(), "only what is implemented");
    let time = info["LastModifiedTime"].as_str().unwrap();
    // Six fractional digits: what Collabora echoes (see tests/api/collabora.rs).
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with('Z') && time.len() == 27, "{time}");
    assert!(info["Version"].is_string());
    assert!(!info.as_object().unwrap().values().any(Value::is_null), "never null");

    let view = app.session_for("u1", "cloudreve://my/Docs/Report.docx", "view").await;
    let info = app.info(&view).await;
    assert_eq!(info["UserCanWrite"], false);
    assert_eq!(info["ReadOnly"], true);
    assert_eq!(info["UserCanRename"], false);
    assert_eq!(info["UserCanNotWriteRelative"], true);
}

#[tokio::test]
async fn anonymous_share_visitors() {
    let app = spawn_app().await;
    app.put_file("owner", "pub.docx", b"x");
    app.put_share("s1", json!({"owner": "owner", "path": "pub.docx"}));
    let e = app.session_raw(&json!({"uri": "cloudreve://s1@share/", "viewer_id": COLLABORA, "preferred_action": "view"}).to_string(), None, None).await;
    let s = Session::from_envelope(&e);
    let info = app.info(&s).await;
    assert_eq!(info["IsAnonymousUser"], true);
    assert_eq!(info["OwnerId"], "owner");
    assert_eq!(info["UserFriendlyName"], "Guest");
    assert_eq!(info["UserCanWrite"], false);
}

#[tokio::test]
async fn get_file_versions_ranges_and_size_limits() {
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", b"0123456789");
    let s = app.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    let version = app.info(&s).await["Version"].as_str().unwrap().to_string();
    let r = app.client.get(app.file_url(&s.fid, "/contents", &s.token)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["X-WOPI-ItemVersion"], version.as_str());
    assert_eq!(r.headers()["content-length"], "10");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"0123456789");

    let ranged = |range: &'static str| app.client.get(app.file_url(&s.fid, "/contents", &s.token)).header("Range", range).send();
    let r = ranged("bytes=2-5").await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 2-5/10");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"2345");
    assert_eq!(ranged("bytes=-3").await.unwrap().bytes().await.unwrap().as_ref(), b"789");
    assert_eq!(ranged("bytes=8-").await.unwrap().bytes().await.unwrap().as_ref(), b"89");
    assert_eq!(ranged("bytes=10-20").await.unwrap().status(), 416);

    let max = |v: &'static str| app.client.get(app.file_url(&s.fid, "/contents", &s.token)).header("X-WOPI-MaxExpectedSize", v).send();
    assert_eq!(max("9").await.unwrap().status(), 412);
    assert_eq!(max("10").await.unwrap().status(), 200);

    // After a save, the old content is a past version a session can open read-only.
    let r = app.lock(&s, "L").await;
    assert_eq!(r.status(), 200);
    let r = app.put(&s, "new content").header("X-WOPI-Lock", "L").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let jwt = caller_jwt("u1", "U");
    let e = app.session(json!({"uri": "cloudreve://my/a.docx", "viewer_id": COLLABORA, "preferred_action": "edit", "version": version}), Some(&jwt)).await;
    let past = Session::from_envelope(&e);
    assert_eq!(past.action, "view");
    assert_eq!(app.contents(&past).await, (200, b"0123456789".to_vec()));
    let info = app.info(&past).await;
    assert_eq!(info["Version"], version.as_str());
    assert_eq!(info["UserCanWrite"], false);
    assert_eq!(app.contents(&s).await.1, b"new content");
}

#[tokio::test]
async fn put_file_follows_the_lock_rules() {
    let app = spawn_with(&[("WOPIGATE_MAX_UPLOAD_SIZE", "64")]).await;
    app.put_file("u1", "a.docx", b"old");
    app.put_file("u1", "empty.docx", b"");
    let s = app.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    let v0 = app.info(&s).await["Version"].as_str().unwrap().to_string();

    // Unlocked and not empty: 409 with an empty X-WOPI-Lock.
    let r = app.put(&s, "x").send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(lock_header(&r).as_deref(), Some(""));
    // Unlocked and empty: allowed (new documents).
    let e = app.session_for("u1", "cloudreve://my/empty.docx", "edit").await;
    assert_eq!(app.put(&e, "template").send().await.unwrap().status(), 200);

    assert_eq!(app.lock(&s, "L1").await.status(), 200);
    let r = app.put(&s, "y").header("X-WOPI-Lock", "other").send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(lock_header(&r).as_deref(), Some("L1"));
    let r = app.put(&s, "y").send().await.unwrap();
    assert_eq!(lock_header(&r).as_deref(), Some("L1"), "a missing lock header is a mismatch too");

    let r = app.put(&s, "new").header("X-WOPI-Lock", "L1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v1 = r.headers()["X-WOPI-ItemVersion"].to_str().unwrap().to_string();
    assert_ne!(v1, v0);
    let body: Value = r.json().await.unwrap();
    let modified = body["LastModifiedTime"].as_str().unwrap().to_string();
    assert_eq!(app.info(&s).await["LastModifiedTime"], modified.as_str());
    assert_eq!(app.contents(&s).await.1, b"new");

    // Too large: 413, nothing written.
    let r = app.put(&s, vec![b'z'; 65]).header("X-WOPI-Lock", "L1").send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(app.contents(&s).await.1, b"new");

    // Collabora's document-changed check.
    let r = app.put(&s, "stale").header("X-WOPI-Lock", "L1").header("X-COOL-WOPI-Timestamp", "2020-01-01T00:00:00.0000000Z").send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"COOLStatusCode": 1010}));
    assert_eq!(app.contents(&s).await.1, b"new", "a conflicting save writes nothing");
    let r = app.put(&s, "fresh").header("X-WOPI-Lock", "L1").header("X-LOOL-WOPI-Timestamp", &modified).send().await.unwrap();
    assert_eq!(r.status(), 200, "the matching timestamp saves (ONLYOFFICE's X-LOOL- spelling)");
    let r = app.put(&s, "forced").header("X-WOPI-Lock", "L1").send().await.unwrap();
    assert_eq!(r.status(), 200, "without the timestamp: save regardless");
    assert_eq!(app.contents(&s).await.1, b"forced");
}

#[tokio::test]
async fn view_tokens_cannot_change_anything() {
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", b"keep");
    app.put_file("u1", "empty.docx", b"");
    let s = app.session_for("u1", "cloudreve://my/a.docx", "view").await;
    let e = app.session_for("u1", "cloudreve://my/empty.docx", "view").await;
    let before = snapshot(&app.data);
    assert_eq!(app.put(&e, "x").send().await.unwrap().status(), 401);
    assert_eq!(app.lock(&s, "L").await.status(), 401);
    assert_eq!(app.op(&s, "REFRESH_LOCK").header("X-WOPI-Lock", "L").send().await.unwrap().status(), 401);
    assert_eq!(app.op(&s, "UNLOCK").header("X-WOPI-Lock", "L").send().await.unwrap().status(), 401);
    assert_eq!(app.op(&s, "RENAME_FILE").header("X-WOPI-RequestedName", "b").send().await.unwrap().status(), 401);
    assert_eq!(app.op(&s, "DELETE").send().await.unwrap().status(), 401);
    assert_eq!(app.op(&s, "PUT_RELATIVE").header("X-WOPI-SuggestedTarget", ".pdf").body("x").send().await.unwrap().status(), 501);
    // Reading is fine.
    assert_eq!(app.op(&s, "GET_LOCK").send().await.unwrap().status(), 200);
    assert_eq!(app.contents(&s).await, (200, b"keep".to_vec()));
    assert_eq!(snapshot(&app.data), before);
}

#[tokio::test]
async fn lock_family_and_expiry() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let app = spawn_with_clock(&[], clock.clone()).await;
    app.put_file("u1", "a.docx", b"x");
    let s = app.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    let get = || async { lock_header(&app.op(&s, "GET_LOCK").send().await.unwrap()).unwrap() };

    assert_eq!(get().await, "", "GetLock on an unlocked file: empty header");
    let r = app.lock(&s, "A").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("X-WOPI-ItemVersion"));
    assert!(lock_header(&r).is_none(), "no X-WOPI-Lock on a 200 Lock");
    assert_eq!(get().await, "A");
    assert_eq!(app.op(&s, "LOCK").send().await.unwrap().status(), 400, "missing lock id");
    assert_eq!(app.lock(&s, &"x".repeat(1025)).await.status(), 400, "longer than 1024");
    let long = "L".repeat(1024);
    let r = app.lock(&s, "B").await;
    assert_eq!((r.status().as_u16(), lock_header(&r)), (409, Some("A".into())));

    // 29 minutes later it still holds; a refresh restarts the 30 minutes.
    clock.advance(Duration::minutes(29));
    assert_eq!(app.lock(&s, "B").await.status(), 409);
    assert_eq!(app.op(&s, "REFRESH_LOCK").header("X-WOPI-Lock", "A").send().await.unwrap().status(), 200);
    clock.advance(Duration::minutes(29));
    assert_eq!(get().await, "A");
    clock.advance(Duration::minutes(2));
    assert_eq!(get().await, "", "expired 30 minutes after the last refresh");
    assert_eq!(app.op(&s, "REFRESH_LOCK").header("X-WOPI-Lock", "A").send().await.unwrap().status(), 409);

    // Re-locking with the same id refreshes (Collabora never sends REFRESH_LOCK).
    assert_eq!(app.lock(&s, &long).await.status(), 200);
    clock.advance(Duration::minutes(20));
    assert_eq!(app.lock(&s, &long).await.status(), 200);
    clock.advance(Duration::minutes(20));
    assert_eq!(get().await, long, "byte-for-byte, 1024 bytes kept");

    // UnlockAndRelock is atomic; the old id is gone afterwards.
    let r = app.op(&s, "LOCK").header("X-WOPI-OldLock", &long).header("X-WOPI-Lock", "C").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.op(&s, "UNLOCK").header("X-WOPI-Lock", &long).send().await.unwrap();
    assert_eq!((r.status().as_u16(), lock_header(&r)), (409, Some("C".into())));
    let r = app.op(&s, "LOCK").header("X-WOPI-OldLock", "nope").header("X-WOPI-Lock", "D").send().await.unwrap();
    assert_eq!((r.status().as_u16(), lock_header(&r)), (409, Some("C".into())));
    let r = app.op(&s, "UNLOCK").header("X-WOPI-Lock", "C").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.op(&s, "UNLOCK").header("X-WOPI-Lock", "C").send().await.unwrap();
    assert_eq!((r.status().as_u16(), lock_header(&r)), (409, Some(String::new())), "unlocking an unlocked file");
    // Locks are not tied to users: another user's session with edit rights can unlock.
    assert_eq!(app.lock(&s, "E").await.status(), 200);
    app.put_share("team", json!({"owner": "u1", "path": "a.docx", "editable": true}));
    let other = Session::from_envelope(&app.session(json!({"uri": "cloudreve://team@share/", "viewer_id": COLLABORA, "preferred_action": "edit"}), Some(&caller_jwt("u2", "Two"))).await);
    assert_eq!(other.fid, s.fid);
    assert_eq!(app.op(&other, "UNLOCK").header("X-WOPI-Lock", "E").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn concurrent_locks_have_exactly_one_winner() {
    let app = spawn_app().await;
    // A second instance on the same data directory: the rule holds across store handles.
    let twin = spawn_on(&app.data, &[]).await;
    app.put_file("u1", "a.docx", b"x");
    let s = app.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    let attempts = (0..50).map(|i| {
        let (app, s) = (if i % 2 == 0 { &app } else { &twin }, &s);
        async move {
            let r = app.lock(s, &format!("lock-{i}")).await;
            (i, r.status().as_u16(), lock_header(&r))
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    let winners: Vec<_> = results.iter().filter(|(_, status, _)| *status == 200).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = format!("lock-{}", winners[0].0);
    for (_, status, held) in &results {
        if *status != 200 {
            assert_eq!(*status, 409);
            assert_eq!(held.as_deref(), Some(winner.as_str()));
        }
    }
}

#[tokio::test]
async fn a_dropped_upload_leaves_the_old_content() {
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", b"original");
    let s = app.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    let version = app.info(&s).await["Version"].clone();
    assert_eq!(app.lock(&s, "L").await.status(), 200);
    // Announce 1 MiB, send 100 KiB, hang up.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", app.port)).unwrap();
    write!(
        stream,
        "POST /wopi/files/{}/contents?access_token={} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-WOPI-Override: PUT\r\nX-WOPI-Lock: L\r\nContent-Length: 1048576\r\n\r\n",
        s.fid, s.token
    )
    .unwrap();
    stream.write_all(&vec![b'p'; 100 * 1024]).unwrap();
    stream.flush().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(stream);
    // Give the server a moment to notice and clean up.
    let tmp = app.data.join(".wopigate/tmp");
    for _ in 0..50 {
        if std::fs::read_dir(&tmp).unwrap().count() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(app.contents(&s).await.1, b"original");
    assert_eq!(app.info(&s).await["Version"], version);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "the partial upload is thrown away");
    // The file is still writable afterwards.
    assert_eq!(app.put(&s, "saved").header("X-WOPI-Lock", "L").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn put_relative_file_creates_in_the_parent_folder() {
    let app = spawn_app().await;
    app.put_file("u1", "Docs/report.docx", b"x");
    std::fs::create_dir_all(app.data.join("u1/Exports")).unwrap();
    let jwt = caller_jwt("u1", "U");
    let e = app
        .session(json!({"uri": "cloudreve://my/Docs/report.docx", "viewer_id": COLLABORA, "preferred_action": "edit", "parent_uri": "cloudreve://my/Exports"}), Some(&jwt))
        .await;
    let s = Session::from_envelope(&e);
    let relative = |h: &'static str, v: &'static str, body: &'static str| app.op(&s, "PUT_RELATIVE").header(h, v).body(body).send();

    let r = relative("X-WOPI-SuggestedTarget", ".pdf", "pdf bytes").await.unwrap();
    assert_eq!(r.status(), 200);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["Name"], "report.pdf");
    assert_eq!(std::fs::read(app.data.join("u1/Exports/report.pdf")).unwrap(), b"pdf bytes");
    let url = created["Url"].as_str().unwrap();
    let info: Value = app.client.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["BaseFileName"], "report.pdf");
    let token = url::Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == "access_token").unwrap().1.into_owned();
    assert!(claims_of(&token)["exp"].as_i64().unwrap() * 1000 <= s.expires, "derived tokens never outlive the session");

    // Suggested: a taken name is adjusted, never refused; UTF-7 decoded.
    let r = relative("X-WOPI-SuggestedTarget", ".pdf", "again").await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["Name"], "report (1).pdf");
    let r = relative("X-WOPI-SuggestedTarget", "R+AOk-sum+AOk-.docx", "r").await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["Name"], "Résumé.docx");
    assert!(app.data.join("u1/Exports/Résumé.docx").exists());

    // Relative: exact, 409 when taken (with a valid alternative), overwrite on request.
    let r = relative("X-WOPI-RelativeTarget", "report.pdf", "no").await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["X-WOPI-ValidRelativeTarget"], "report (2).pdf");
    let r = app.op(&s, "PUT_RELATIVE").header("X-WOPI-RelativeTarget", "report.pdf").header("X-WOPI-OverwriteRelativeTarget", "true").body("over").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(std::fs::read(app.data.join("u1/Exports/report.pdf")).unwrap(), b"over");
    let r = relative("X-WOPI-RelativeTarget", "bad|name.pdf", "x").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["X-WOPI-ValidRelativeTarget"], "bad+AF8-name.pdf");
    let r = app.op(&s, "PUT_RELATIVE").header("X-WOPI-RelativeTarget", "a.pdf").header("X-WOPI-SuggestedTarget", ".pdf").body("x").send().await.unwrap();
    assert!(matches!(r.status().as_u16(), 400 | 501));
    // Nothing escapes the folder.
    let r = relative("X-WOPI-SuggestedTarget", "../../escape.docx", "x").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(!app.data.join("escape.docx").exists() && !app.data.join("u1/escape.docx").exists());
}

#[tokio::test]
async fn rename_keeps_the_wopisrc_and_delete_respects_locks() {
    let app = spawn_app().await;
    app.put_file("u1", "Docs/old.docx", b"x");
    app.put_file("u1", "Docs/taken.docx", b"y");
    let s = app.session_for("u1", "cloudreve://my/Docs/old.docx", "edit").await;

    let rename = |name: &'static str| app.op(&s, "RENAME_FILE").header("X-WOPI-RequestedName", name).send();
    let r = rename("Neu+APw-").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["Name"], "Neuü");
    assert!(app.data.join("u1/Docs/Neuü.docx").exists() && !app.data.join("u1/Docs/old.docx").exists());
    assert_eq!(app.info(&s).await["BaseFileName"], "Neuü.docx", "same token, same WOPISrc after the rename");
    // The platform opening the new path gets the same file id.
    let again = app.session_for("u1", "cloudreve://my/Docs/Neu%C3%BC.docx", "edit").await;
    assert_eq!(again.fid, s.fid);

    let r = rename("taken").await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["Name"], "taken (1)", "a taken name is adjusted");
    let r = rename("   ").await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().contains_key("X-WOPI-InvalidFileNameError"));

    assert_eq!(app.lock(&s, "L").await.status(), 200);
    let r = rename("locked").await.unwrap();
    assert_eq!((r.status().as_u16(), lock_header(&r)), (409, Some("L".into())));
    let r = app.op(&s, "RENAME_FILE").header("X-WOPI-RequestedName", "locked").header("X-WOPI-Lock", "L").send().await.unwrap();
    assert_eq!(r.status(), 200);

    let r = app.op(&s, "DELETE").send().await.unwrap();
    assert_eq!((r.status().as_u16(), lock_header(&r)), (409, Some("L".into())));
    assert_eq!(app.op(&s, "UNLOCK").header("X-WOPI-Lock", "L").send().await.unwrap().status(), 200);
    assert_eq!(app.op(&s, "DELETE").send().await.unwrap().status(), 200);
    assert!(!app.data.join("u1/Docs/locked.docx").exists());
    assert_eq!(app.check_file_info(&s).await.status(), 404);
}

#[tokio::test]
async fn user_info_unknown_overrides_and_logs() {
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", b"x");
    app.put_file("u1", "b.docx", b"x");
    let s = app.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    assert_eq!(app.op(&s, "PUT_USER_INFO").body("{\"theme\":1}").send().await.unwrap().status(), 200);
    let other_file = app.session_for("u1", "cloudreve://my/b.docx", "view").await;
    assert_eq!(app.info(&other_file).await["UserInfo"], "{\"theme\":1}", "kept per user, not per file");
    assert_eq!(app.op(&s, "PUT_USER_INFO").body(vec![b'a'; 1025]).send().await.unwrap().status(), 400);

    for override_ in ["COBALT", "GET_SHARE_URL", "NOT_A_THING", ""] {
        assert_eq!(app.op(&s, override_).send().await.unwrap().status(), 501, "{override_}");
    }
    let r = app.client.post(app.file_url(&s.fid, "/contents", &s.token)).header("X-WOPI-Override", "PUT_CHUNKED").send().await.unwrap();
    assert_eq!(r.status(), 501);
    // An unknown override with a bad token is still a 401.
    let r = app.client.post(app.file_url(&s.fid, "", "bad")).header("X-WOPI-Override", "NOT_A_THING").send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn small_files_do_not_stall_on_a_keep_alive_connection() {
    // Nagle's algorithm meeting delayed ACKs cost 40 ms per small GetFile (about 900 ms for 20).
    let app = spawn_app().await;
    app.put_file("u1", "small.docx", &vec![7u8; 4096]);
    let s = app.session_for("u1", "cloudreve://my/small.docx", "view").await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let url = app.file_url(&s.fid, "/contents", &s.token);
    assert_eq!(client.get(&url).send().await.unwrap().bytes().await.unwrap().len(), 4096);
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let body = client.get(&url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(body.len(), 4096);
    }
    let took = started.elapsed();
    eprintln!("20 sequential 4 KiB GetFiles on one connection: {took:?}");
    assert!(took < std::time::Duration::from_millis(200), "took {took:?}");
}
