//! `PUT /api/v4/file/viewerSession` and `GET /api/v4/site/config/explorer`.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

fn session(envelope: &Value) -> (&str, &str, i64, &str, &str) {
    let s = &envelope["data"]["session"];
    (
        s["id"].as_str().unwrap(),
        s["access_token"].as_str().unwrap(),
        s["expires"].as_i64().unwrap(),
        s["action"].as_str().unwrap(),
        envelope["data"]["wopi_src"].as_str().unwrap(),
    )
}

/// The `WOPISrc` parameter of an action URL, decoded.
fn wopisrc_param(action_url: &str) -> String {
    let url = url::Url::parse(action_url).unwrap();
    url.query_pairs()
        .find(|(k, _)| k.eq_ignore_ascii_case("wopisrc"))
        .map(|(_, v)| v.into_owned())
        .expect("action URL carries WOPISrc")
}

#[tokio::test]
async fn owner_opens_own_file_for_editing() {
    let app = spawn_app().await;
    app.put_file("u1", "Docs/Report 1.docx", b"hello");
    let before = now();
    let envelope = app.open("u1", "cloudreve://my/Docs/Report%201.docx", "edit").await;
    assert_code(&envelope, 0);
    assert_eq!(envelope["msg"], "");
    let (id, token, expires, action, wopi_src) = session(&envelope);

    let id = Uuid::parse_str(id).unwrap();
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(action, "edit");
    // Default lifetime is 10 hours; `expires` is in milliseconds.
    let lifetime_ms = expires - before * 1000;
    assert!((36_000_000 - 5_000..=36_000_000 + 5_000).contains(&lifetime_ms), "lifetime {lifetime_ms} ms");
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "token is URL-safe");

    // Collabora: no placeholders, so WOPISrc (and lang) are appended; the token is not there.
    assert!(wopi_src.starts_with("http://cool.test:9980/browser/1a2b3c/cool.html?WOPISrc=http%3A%2F%2F127.0.0.1%3A"));
    assert!(wopi_src.ends_with("&lang=de-DE"));
    assert!(!wopi_src.contains(token));
    let src = wopisrc_param(wopi_src);
    let file_id = src.strip_prefix(&format!("{}/wopi/files/", app.address)).expect("WOPISrc under the public URL");
    assert!(file_id.len() >= 16 && file_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert!(!file_id.contains("Report"));

    let claims = claims_of(token);
    assert_eq!(claims["sid"], id.to_string());
    assert_eq!(claims["sub"], "u1");
    assert_eq!(claims["name"], "Test User");
    // Nothing a replica can derive rides in the token: no path, no URI.
    assert!(claims.get("uri").is_none() && !claims.to_string().contains("Report"), "{claims}");
    assert!(claims.get("shr").is_none());
    assert_eq!(claims["fid"], file_id);
    assert_eq!(claims["act"], "edit");
    assert_eq!(claims["vid"], COLLABORA.to_string());
    assert_eq!(claims["exp"].as_i64().unwrap() * 1000, expires);
}

#[tokio::test]
async fn file_id_is_stable_and_shared_between_users() {
    let app = spawn_app().await;
    app.put_file("owner", "Team/plan.xlsx", b"x");
    app.put_share("plans", json!({"owner": "owner", "path": "Team", "editable": true}));
    let first = app.open("owner", "cloudreve://my/Team/plan.xlsx", "edit").await;
    let second = app.open("owner", "cloudreve://owner@my/Team/plan.xlsx", "view").await;
    let visitor = app.open("guest", "cloudreve://plans@share/plan.xlsx", "edit").await;
    let ids: Vec<Value> =
        [&first, &second, &visitor].iter().map(|e| claims_of(session(e).1)["fid"].clone()).collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[0], ids[2], "co-editing needs one WOPISrc for every user of a file");
    // Editing the file keeps its id.
    app.put_file("owner", "Team/plan.xlsx", b"changed content");
    let later = app.open("owner", "cloudreve://my/Team/plan.xlsx", "edit").await;
    assert_eq!(claims_of(session(&later).1)["fid"], ids[0]);
    // Different files, different ids.
    app.put_file("owner", "Team/other.xlsx", b"x");
    let other = app.open("owner", "cloudreve://my/Team/other.xlsx", "edit").await;
    assert_ne!(claims_of(session(&other).1)["fid"], ids[0]);
}

#[tokio::test]
async fn view_is_granted_when_asked_or_when_edit_is_not_allowed() {
    let app = spawn_with(&[("WOPIGATE_EDIT_MAX_SIZE", "10")]).await;
    app.put_file("u1", "small.docx", b"12345");
    app.put_file("u1", "big.docx", b"this file is over ten bytes");
    let viewed = app.open("u1", "cloudreve://my/small.docx", "view").await;
    assert_eq!(session(&viewed).3, "view");
    assert_eq!(claims_of(session(&viewed).1)["act"], "view");
    let big = app.open("u1", "cloudreve://my/big.docx", "edit").await;
    assert_code(&big, 0);
    assert_eq!(session(&big).3, "view", "over the edit size limit a session is view-only");
}

#[tokio::test]
async fn versions_current_past_and_unknown() {
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", b"current");
    let opened = app.open("u1", "cloudreve://my/a.docx", "edit").await;
    let file_id = claims_of(session(&opened).1)["fid"].as_str().unwrap().to_string();
    let jwt = caller_jwt("u1", "U");
    let with_version = |v: Value| json!({"uri": "cloudreve://my/a.docx", "viewer_id": COLLABORA, "preferred_action": "edit", "version": v});

    for v in [Value::Null, json!("")] {
        let e = app.session(with_version(v), Some(&jwt)).await;
        assert_eq!(session(&e).3, "edit");
    }

    // A past version kept by the store (as a write through wopigate leaves it).
    let versions = app.data.join(".wopigate/versions").join(&file_id);
    std::fs::create_dir_all(&versions).unwrap();
    std::fs::write(versions.join("17f0000000-3"), b"old").unwrap();
    let past = app.session(with_version(json!("17f0000000-3")), Some(&jwt)).await;
    assert_code(&past, 0);
    assert_eq!(session(&past).3, "view", "a past version opens read-only");
    assert_eq!(claims_of(session(&past).1)["ver"], "17f0000000-3");

    for bad in ["nope-1", "../../etc/passwd", "a/b"] {
        let e = app.session(with_version(json!(bad)), Some(&jwt)).await;
        let msg = assert_code(&e, 40077);
        assert!(msg.contains("version"), "{msg}");
    }
}

#[tokio::test]
async fn caller_jwt_rules() {
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", b"x");
    let body = json!({"uri": "cloudreve://my/a.docx", "viewer_id": COLLABORA, "preferred_action": "edit"});

    // Anonymous cannot open `my` files.
    assert_code(&app.session(body.clone(), None).await, 401);

    let expired = caller_jwt_claims(json!({"sub": "u1", "exp": now() - 3600}));
    let msg = assert_code(&app.session(body.clone(), Some(&expired)).await, 401);
    assert!(msg.contains("expired"), "{msg}");

    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "u1", "exp": now() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-some-other-secret-xx"),
    )
    .unwrap();
    assert_code(&app.session(body.clone(), Some(&wrong_key)).await, 401);

    let not_yet = caller_jwt_claims(json!({"sub": "u1", "exp": now() + 7200, "nbf": now() + 3600}));
    assert_code(&app.session(body.clone(), Some(&not_yet)).await, 401);

    let unsigned = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&json!({"sub": "u1", "exp": now() + 600}).to_string()));
    assert_code(&app.session(body.clone(), Some(&unsigned)).await, 401);

    let bad_sub = caller_jwt_claims(json!({"sub": "../u2", "exp": now() + 600}));
    assert_code(&app.session(body.clone(), Some(&bad_sub)).await, 401);

    let response = app
        .client
        .put(format!("{}/api/v4/file/viewerSession", app.address))
        .header("Authorization", "Basic dTE6cHc=")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_code(&response.json::<Value>().await.unwrap(), 401);

    // Display name: name, else nick, else preferred_username, else the id.
    for (claims, expected) in [
        (json!({"sub": "u1", "nick": "Nicky", "exp": now() + 60}), "Nicky"),
        (json!({"sub": "u1", "preferred_username": "pu", "exp": now() + 60}), "pu"),
        (json!({"sub": "u1", "exp": now() + 60}), "u1"),
        // Control characters are taken out (a name must not forge lines or terminal escapes).
        (json!({"sub": "u1", "name": "Ada\n1970 forged row\u{1b}[2J", "exp": now() + 60}), "Ada1970 forged row[2J"),
        (json!({"sub": "u1", "name": "\n\t", "exp": now() + 60}), "u1"),
    ] {
        let e = app.session(body.clone(), Some(&caller_jwt_claims(claims))).await;
        assert_eq!(claims_of(session(&e).1)["name"], expected);
    }
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn caller_issuer_and_audience_are_enforced_when_configured() {
    let app = spawn_with(&[("WOPIGATE_CALLER_JWT_ISSUER", "cloudreve"), ("WOPIGATE_CALLER_JWT_AUDIENCE", "wopigate-api")]).await;
    app.put_file("u1", "a.docx", b"x");
    let body = json!({"uri": "cloudreve://my/a.docx", "viewer_id": COLLABORA, "preferred_action": "view"});
    let good = caller_jwt_claims(json!({"sub": "u1", "iss": "cloudreve", "aud": "wopigate-api", "exp": now() + 60}));
    assert_code(&app.session(body.clone(), Some(&good)).await, 0);
    let wrong_iss = caller_jwt_claims(json!({"sub": "u1", "iss": "other", "aud": "wopigate-api", "exp": now() + 60}));
    assert_code(&app.session(body.clone(), Some(&wrong_iss)).await, 401);
    let wrong_aud = caller_jwt_claims(json!({"sub": "u1", "iss": "cloudreve", "aud": "x", "exp": now() + 60}));
    assert_code(&app.session(body, Some(&wrong_aud)).await, 401);
}

#[tokio::test]
async fn other_users_files_are_owner_only() {
    let app = spawn_app().await;
    app.put_file("u2", "secret.docx", b"x");
    let e = app.open("u1", "cloudreve://u2@my/secret.docx", "view").await;
    let msg = assert_code(&e, 40082);
    assert!(msg.contains("owner"), "{msg}");
    // `cloudreve://my/…` always means the caller's own files.
    assert_code(&app.open("u1", "cloudreve://my/secret.docx", "view").await, 40016);
    assert_code(&app.open("u2", "cloudreve://u2@my/secret.docx", "view").await, 0);
}

#[tokio::test]
async fn shares() {
    let app = spawn_app().await;
    app.put_file("owner", "Docs/shared.docx", b"x");
    app.put_file("owner", "Team/inside/plan.xlsx", b"x");
    let hash = wopigate::policy::hash_password("pa:ss word");
    let ticket_hash = wopigate::policy::sha256_hex("ticket-123");
    app.put_share("file1", json!({"owner": "owner", "path": "Docs/shared.docx"}));
    app.put_share("folder1", json!({"owner": "owner", "path": "Team", "editable": true}));
    app.put_share("locked", json!({"owner": "owner", "path": "Docs/shared.docx", "password_hash": hash}));
    app.put_share("members", json!({"owner": "owner", "path": "Docs/shared.docx", "allow_anonymous": false}));
    app.put_share("paid", json!({"owner": "owner", "path": "Docs/shared.docx", "paid": true, "purchase_ticket_sha256": [ticket_hash]}));
    app.put_share("old", json!({"owner": "owner", "path": "Docs/shared.docx", "expires_at": "2020-01-01T00:00:00Z"}));
    let open = |uri: &str, jwt: Option<String>, ticket: Option<&'static str>| {
        let body = json!({"uri": uri, "viewer_id": COLLABORA, "preferred_action": "edit"}).to_string();
        let app = &app;
        async move { app.session_raw(&body, jwt.as_deref(), ticket).await }
    };

    // A shared file: anonymous visitors may open it, read-only (not editable).
    for uri in ["cloudreve://file1@share/", "cloudreve://file1@share", "cloudreve://file1@share/"] {
        let e = open(uri, None, None).await;
        assert_code(&e, 0);
        assert_eq!(session(&e).3, "view");
        let claims = claims_of(session(&e).1);
        assert_eq!(claims["anon"], true);
        assert_eq!(claims["shr"], "file1", "the share is carried, so every call re-checks it");
    }
    // A shared folder, editable: a file inside opens for editing.
    let e = open("cloudreve://folder1@share/inside/plan.xlsx", Some(caller_jwt("guest", "G")), None).await;
    assert_code(&e, 0);
    assert_eq!(session(&e).3, "edit");
    // The folder itself is not a file; a missing file inside is 40016.
    assert_code(&open("cloudreve://folder1@share/", None, None).await, 40016);
    assert_code(&open("cloudreve://folder1@share/inside/nope.xlsx", None, None).await, 40016);

    // Passwords.
    assert_code(&open("cloudreve://locked@share/", None, None).await, 40069);
    assert_code(&open("cloudreve://locked:wrong@share/", None, None).await, 40069);
    let e = open("cloudreve://locked:pa%3Ass%20word@share/", None, None).await;
    assert_code(&e, 0);
    let claims = claims_of(session(&e).1).to_string();
    assert!(!claims.contains("pa:ss") && !claims.contains("pa%3Ass"), "the password never enters the token");
    assert_eq!(claims_of(session(&e).1)["shr"], "locked");
    // The owner needs no password.
    assert_code(&open("cloudreve://locked@share/", Some(caller_jwt("owner", "O")), None).await, 0);

    // Members only.
    assert_code(&open("cloudreve://members@share/", None, None).await, 40088);
    assert_code(&open("cloudreve://members@share/", Some(caller_jwt("guest", "G")), None).await, 0);

    // Paid.
    assert_code(&open("cloudreve://paid@share/", None, None).await, 40083);
    assert_code(&open("cloudreve://paid@share/", None, Some("ticket-999")).await, 40083);
    assert_code(&open("cloudreve://paid@share/", None, Some("ticket-123")).await, 0);

    // Unknown or expired.
    assert_code(&open("cloudreve://nosuch@share/", None, None).await, 404);
    assert_code(&open("cloudreve://old@share/", None, None).await, 404);
}

#[tokio::test]
async fn unsupported_uris_are_invalid_parameters_and_touch_nothing() {
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", b"x");
    std::fs::write(app.data.join("outside.docx"), b"x").unwrap();
    let before = snapshot(&app.data);
    let cases = [
        ("cloudreve://trash/a.docx", "trash"),
        ("cloudreve://shared_with_me/a.docx", "shared_with_me"),
        ("cloudreve://mystery/a.docx", "unknown file system"),
        ("https://example.com/a.docx", "cloudreve://"),
        ("cloudreve://my/../outside.docx", ".."),
        ("cloudreve://my/%2e%2e/outside.docx", ".."),
        ("cloudreve://my/x%2f..%2f..%2foutside.docx", "backslash"),
        ("cloudreve://my/a%00.docx", "NUL"),
        ("cloudreve://my/..%5coutside.docx", "backslash"),
        ("cloudreve://my/a%zz.docx", "percent"),
        ("cloudreve://my//a.docx", "empty"),
        ("cloudreve://my/a.docx?x=1", "query"),
    ];
    for (uri, needle) in cases {
        let e = app.open("u1", uri, "view").await;
        let msg = assert_code(&e, 40001);
        assert!(msg.starts_with("uri:"), "{uri}: the message names the field: {msg}");
        assert!(msg.contains(needle), "{uri}: {msg}");
    }
    let long = format!("cloudreve://my/{}.docx", "a".repeat(300));
    assert_code(&app.open("u1", &long, "view").await, 40001);
    let deep = format!("cloudreve://my/{}/a.docx", vec!["d"; 100].join("/"));
    assert_code(&app.open("u1", &deep, "view").await, 40001);
    assert_eq!(snapshot(&app.data), before, "refused requests change nothing in the store");
}

#[tokio::test]
async fn symlinks_out_of_the_store_are_refused() {
    let app = spawn_app().await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("passwd.docx"), b"x").unwrap();
    std::fs::create_dir_all(app.data.join("u1")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("passwd.docx"), app.data.join("u1/link.docx")).unwrap();
    std::os::unix::fs::symlink(app.data.join(".wopigate"), app.data.join("u1/internal")).unwrap();
    let e = app.open("u1", "cloudreve://my/link.docx", "view").await;
    assert_ne!(e["code"], 0);
    let e = app.open("u1", "cloudreve://my/internal/dev-token-secret", "view").await;
    assert_ne!(e["code"], 0);
}

#[tokio::test]
async fn missing_files_and_folders() {
    let app = spawn_app().await;
    app.put_file("u1", "Folder.docx/inner.txt", b"x");
    assert_code(&app.open("u1", "cloudreve://my/nope.docx", "view").await, 40016);
    assert_code(&app.open("u1", "cloudreve://my/Folder.docx", "view").await, 40016);
    assert_code(&app.open("u1", "cloudreve://my/no/such/dir/a.docx", "view").await, 40016);
}

#[tokio::test]
async fn malformed_requests_name_the_problem() {
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", b"x");
    let jwt = caller_jwt("u1", "U");
    let viewer = COLLABORA.to_string();
    let cases = [
        ("{not json".to_string(), "invalid request body"),
        (json!({"viewer_id": viewer, "preferred_action": "edit"}).to_string(), "uri"),
        (json!({"uri": "cloudreve://my/a.docx", "preferred_action": "edit"}).to_string(), "viewer_id"),
        (json!({"uri": "cloudreve://my/a.docx", "viewer_id": viewer}).to_string(), "preferred_action"),
        (json!({"uri": "cloudreve://my/a.docx", "viewer_id": viewer, "preferred_action": "print"}).to_string(), "`view` or `edit`"),
        (json!({"uri": "cloudreve://my/a.docx", "viewer_id": "not-a-uuid", "preferred_action": "edit"}).to_string(), "UUID"),
        (json!({"uri": 5, "viewer_id": viewer, "preferred_action": "edit"}).to_string(), "invalid type"),
        (json!({"uri": "cloudreve://my/a.docx", "viewer_id": Uuid::new_v4(), "preferred_action": "edit"}).to_string(), "viewer_id"),
        (json!({"uri": "cloudreve://my/a.docx", "viewer_id": viewer, "preferred_action": "edit", "extra": 1}).to_string(), "unknown field"),
    ];
    for (body, needle) in cases {
        let e = app.session_raw(&body, Some(&jwt), None).await;
        let msg = assert_code(&e, 40001);
        assert!(msg.contains(needle), "{body}: {msg}");
    }
}

/// The caller's own values are not repeated (they may be anything, a share password included).
#[tokio::test]
async fn body_errors_do_not_repeat_the_callers_values() {
    let app = spawn_app().await;
    let jwt = caller_jwt("u1", "U");
    let value = "cloudreve://sh:pw-8c2f1b@share/";
    let bodies = [
        json!({"uri": "cloudreve://my/a.docx", "viewer_id": COLLABORA, "preferred_action": value}),
        json!({"uri": "cloudreve://my/a.docx", "viewer_id": value, "preferred_action": "edit"}),
        json!({"uri": "cloudreve://my/a.docx", "viewer_id": COLLABORA, "preferred_action": "edit", value: 1}),
        json!({"uri": {"x": value}, "viewer_id": COLLABORA, "preferred_action": "edit"}),
        json!({"uri": "cloudreve://my/a.docx", "version": 5, "viewer_id": COLLABORA, "preferred_action": "edit"}),
    ];
    for body in bodies {
        let msg = assert_code(&app.session(body.clone(), Some(&jwt)).await, 40001);
        assert!(msg.starts_with("invalid request body: "), "{body}: {msg}");
        assert!(!msg.contains("pw-8c2f1b") && !msg.contains("sh:"), "{body}: {msg}");
    }
}

/// Every failure of `/api/v4/...` answers in the envelope, never with a bare HTTP status.
#[tokio::test]
async fn every_api_failure_answers_in_the_envelope() {
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", b"x");
    let jwt = caller_jwt("u1", "U");
    let url = format!("{}/api/v4/file/viewerSession", app.address);
    let envelope = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "the API always answers HTTP 200");
        response.json::<Value>().await.unwrap()
    };
    let good = json!({"uri": "cloudreve://my/a.docx", "viewer_id": COLLABORA, "preferred_action": "edit"}).to_string();

    // Too large, announced by Content-Length (50 MB, refused before it is read) or streamed.
    let huge = vec![b' '; 50 * 1024 * 1024];
    let e = envelope(app.client.put(&url).bearer_auth(&jwt).header("Content-Type", "application/json").body(huge)).await;
    let msg = assert_code(&e, 40001);
    assert!(msg.contains("65536 bytes"), "names the limit: {msg}");
    let chunks = futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 8192])));
    let e = envelope(app.client.put(&url).bearer_auth(&jwt).body(reqwest::Body::wrap_stream(chunks))).await;
    assert!(assert_code(&e, 40001).contains("65536 bytes"), "{e}");

    // Malformed JSON, a form instead of JSON, a missing field.
    let e = envelope(app.client.put(&url).bearer_auth(&jwt).header("Content-Type", "application/json").body("{\"uri\": ")).await;
    assert!(assert_code(&e, 40001).starts_with("invalid request body"), "{e}");
    let form = "uri=cloudreve%3A%2F%2Fmy%2Fa.docx&preferred_action=edit";
    let e = envelope(app.client.put(&url).bearer_auth(&jwt).header("Content-Type", "application/x-www-form-urlencoded").body(form)).await;
    assert!(assert_code(&e, 40001).starts_with("invalid request body"), "{e}");
    let missing = json!({"viewer_id": COLLABORA, "preferred_action": "edit"}).to_string();
    let e = envelope(app.client.put(&url).bearer_auth(&jwt).header("Content-Type", "application/json").body(missing)).await;
    assert!(assert_code(&e, 40001).contains("missing field `uri`"), "{e}");

    // The body is read as JSON whatever the Content-Type says, as Cloudreve does (`curl -d`
    // sends a form type).
    for content_type in [
        Some("application/json; charset=utf-8"),
        Some("application/vnd.api+json"),
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        Some("nonsense"),
        None,
    ] {
        let mut request = app.client.put(&url).bearer_auth(&jwt).body(good.clone());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        assert_code(&envelope(request).await, 0);
    }

}

/// A wrong method on an endpoint: HTTP 405 with `Allow`, in the envelope, naming the method, the
/// endpoint and its method. No endpoint at all: HTTP 404 in the envelope.
#[tokio::test]
async fn wrong_methods_and_unknown_endpoints_answer_in_the_envelope() {
    let app = spawn_app().await;
    let jwt = caller_jwt("u1", "U");
    let cases = [
        ("POST", "/api/v4/file/viewerSession", "PUT"),
        ("GET", "/api/v4/file/viewerSession", "PUT"),
        ("DELETE", "/api/v4/file/viewerSession", "PUT"),
        ("PATCH", "/api/v4/file/viewerSession", "PUT"),
        ("PUT", "/api/v4/site/config/explorer", "GET"),
        ("POST", "/api/v4/site/config/explorer", "GET"),
        ("HEAD", "/api/v4/site/config/explorer", "GET"),
        ("DELETE", "/api/v4/openapi.json", "GET"),
    ];
    for (method, path, allow) in cases {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response =
            app.client.request(method.clone(), format!("{}{path}", app.address)).bearer_auth(&jwt).body("{}").send().await.unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        if method == reqwest::Method::HEAD {
            continue;
        }
        let e: Value = response.json().await.unwrap();
        let msg = assert_code(&e, 405);
        assert_eq!(msg, format!("{path} does not take {method}; use {allow}"));
    }
    for (method, path) in [("GET", "/api/v4/file/nothing"), ("POST", "/api/v4/"), ("PUT", "/api/v4/file/viewerSession/x")] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app.client.request(method.clone(), format!("{}{path}", app.address)).body("{}").send().await.unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
        let e: Value = response.json().await.unwrap();
        let msg = assert_code(&e, 404);
        assert!(msg.contains(method.as_str()) && !msg.contains("nothing"), "names the method, not the path: {msg}");
    }
}

#[tokio::test]
async fn parent_uri_is_checked_and_carried() {
    let app = spawn_app().await;
    app.put_file("u1", "Docs/a.docx", b"x");
    app.put_file("u2", "Theirs/b.docx", b"x");
    let jwt = caller_jwt("u1", "U");
    let body = |parent: &str| json!({"uri": "cloudreve://my/Docs/a.docx", "viewer_id": COLLABORA, "preferred_action": "edit", "parent_uri": parent});
    let e = app.session(body("cloudreve://my/Docs"), Some(&jwt)).await;
    assert_code(&e, 0);
    let claims = claims_of(session(&e).1);
    let folder_id = claims["pid"].as_str().expect("the parent folder travels as its id");
    assert!(folder_id.len() == 22 && folder_id != claims["fid"].as_str().unwrap(), "{claims}");
    assert!(assert_code(&app.session(body("cloudreve://my/Docs/a.docx"), Some(&jwt)).await, 40001).contains("parent_uri"));
    assert!(assert_code(&app.session(body("cloudreve://my/Nope"), Some(&jwt)).await, 40001).contains("parent_uri"));
    assert!(assert_code(&app.session(body("cloudreve://my/../x"), Some(&jwt)).await, 40001).contains("parent_uri"));
    assert_code(&app.session(body("cloudreve://u2@my/Theirs"), Some(&jwt)).await, 40082);
}

#[tokio::test]
async fn action_urls_per_client() {
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", b"x");
    app.put_file("u1", "empty.docx", b"");
    app.put_file("u1", "slides.pptx", b"x");
    app.put_file("u1", "notes.odt", b"x");
    app.put_file("u1", "archive.zip", b"x");
    app.put_file("u1", "README", b"x");
    let jwt = caller_jwt("u1", "U");
    let open = |uri: &str, viewer: Uuid, action: &str| {
        let body = json!({"uri": uri, "viewer_id": viewer, "preferred_action": action});
        let (app, jwt) = (&app, jwt.clone());
        async move { app.session(body, Some(&jwt)).await }
    };

    // ONLYOFFICE: placeholders substituted or removed, WOPISrc substituted once, literal params kept.
    let e = open("cloudreve://my/a.docx", ONLYOFFICE, "edit").await;
    let (sid, _, _, action, url) = session(&e);
    assert_eq!(action, "edit");
    assert!(url.starts_with("http://ds.test/hosting/wopi/word/edit?rs=en-US&hid="), "{url}");
    assert!(url.contains(&format!("hid={sid}")));
    assert!(url.contains("&ui=en-US&wopisrc=http%3A%2F%2F127.0.0.1%3A"), "{url}");
    assert!(!url.contains('<') && !url.contains("DISABLE_CHAT"), "{url}");
    assert_eq!(url.matches("wopisrc=").count(), 1);

    // Office: the configured net-zone and the viewer's own public URL (another front domain).
    let e = open("cloudreve://my/a.docx", OFFICE, "view").await;
    let url = session(&e).4;
    assert!(url.starts_with("https://word-view.office.test/wv/wordviewerframe.aspx?ui=en-US&rs=en-US&hid="), "{url}");
    assert!(wopisrc_param(url).starts_with("https://wopi.front.test/gw/wopi/files/"));
    // A zero-byte file opens with editnew where the client has it.
    let e = open("cloudreve://my/empty.docx", OFFICE, "edit").await;
    assert!(session(&e).4.starts_with("https://word-edit.office.test/we/wordeditorframe.aspx?new=1&"), "{}", session(&e).4);
    // Office has no action at all for .pptx in the fixture.
    let msg = assert_code(&open("cloudreve://my/slides.pptx", OFFICE, "view").await, 40001);
    assert!(msg.contains(".pptx"), "{msg}");

    // Collabora: pptx only under its MIME type; view falls back to the edit URL, read-only.
    let e = open("cloudreve://my/slides.pptx", COLLABORA, "view").await;
    assert_eq!(session(&e).3, "view");
    assert!(session(&e).4.starts_with("http://cool.test:9980/browser/1a2b3c/cool.html?WOPISrc="));

    // ONLYOFFICE's allow-list has no .odt; nobody has .zip; no extension at all.
    assert!(assert_code(&open("cloudreve://my/notes.odt", ONLYOFFICE, "view").await, 40001).contains(".odt"));
    assert!(assert_code(&open("cloudreve://my/archive.zip", COLLABORA, "view").await, 40001).contains(".zip"));
    assert!(assert_code(&open("cloudreve://my/README", COLLABORA, "view").await, 40001).contains("extension"));

    // A client without an edit action for the extension: edit falls back to view.
    app.put_file("u1", "doc.pdf", b"x");
    let e = open("cloudreve://my/doc.pdf", ONLYOFFICE, "edit").await;
    assert_eq!(session(&e).3, "view");
    assert_eq!(claims_of(session(&e).1)["act"], "view");
}

#[tokio::test]
async fn a_discovery_failure_names_the_url_without_credentials() {
    let port = free_port();
    let viewer = Uuid::new_v4();
    let url = format!("http://wopi:s3cr3t@127.0.0.1:{port}/hosting/discovery?token=also-secret");
    let viewers = json!([{"id": viewer, "name": "Collabora", "discovery": url}]).to_string();
    let app = spawn_with(&[("WOPIGATE_VIEWERS", &viewers)]).await;
    app.put_file("u1", "a.docx", b"x");
    let body = json!({"uri": "cloudreve://my/a.docx", "viewer_id": viewer, "preferred_action": "edit"});
    let msg = assert_code(&app.session(body, Some(&caller_jwt("u1", "U"))).await, 50005);
    assert!(msg.contains(&format!("http://127.0.0.1:{port}/hosting/discovery")), "{msg}");
    assert!(!msg.contains("s3cr3t") && !msg.contains("also-secret") && !msg.contains("wopi:"), "{msg}");
}

#[tokio::test]
async fn discovery_failure_is_50005_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let discovery = dir.path().join("discovery.xml");
    let viewer = Uuid::new_v4();
    let viewers = json!([{"id": viewer, "name": "Late", "discovery": discovery}]).to_string();
    let app = spawn_with(&[("WOPIGATE_VIEWERS", &viewers)]).await;
    app.put_file("u1", "a.docx", b"x");
    let jwt = caller_jwt("u1", "U");
    let body = json!({"uri": "cloudreve://my/a.docx", "viewer_id": viewer, "preferred_action": "edit"});

    let msg = assert_code(&app.session(body.clone(), Some(&jwt)).await, 50005);
    assert!(msg.contains("Late"), "{msg}");
    // One client's discovery being away does not take the replica out of service (documents
    // already open must still save): /readyz stays 200 and says which discovery is down.
    let ready = app.client.get(format!("{}/readyz", app.address)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["store"], true);
    assert_eq!(ready["locks"], true);
    assert_eq!(ready["discovery"]["Late"]["loaded"], false, "{ready}");
    assert!(ready["discovery"]["Late"]["error"].as_str().is_some_and(|e| e.contains("cannot read")), "{ready}");
    assert_eq!(discovery_up(&app, "Late").await, Some(0.0));

    std::fs::write(&discovery, "<wopi-discovery><oops").unwrap();
    assert_code(&app.session(body.clone(), Some(&jwt)).await, 50005);

    std::fs::copy(fixture("discovery/collabora.xml"), &discovery).unwrap();
    let e = app.session(body, Some(&jwt)).await;
    assert_code(&e, 0);
    assert_eq!(session(&e).3, "edit");
    let ready = app.client.get(format!("{}/readyz", app.address)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["discovery"]["Late"], json!({"loaded": true, "error": null}), "{ready}");
    assert_eq!(discovery_up(&app, "Late").await, Some(1.0));
}

/// `wopigate_discovery_up{viewer="<name>"}` from `/metrics`.
async fn discovery_up(app: &TestApp, viewer: &str) -> Option<f64> {
    let text = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    let prefix = format!("wopigate_discovery_up{{viewer=\"{viewer}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
}

#[tokio::test]
async fn discovery_over_http_is_fetched_and_cached() {
    // A real HTTP server for the discovery document: another wopigate-like actix app would do,
    // but a tiny std listener is enough and counts fetches.
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let body = std::fs::read_to_string(fixture("discovery/onlyoffice.xml")).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}", body.len(), body);
        }
    });
    let viewer = Uuid::new_v4();
    let viewers = json!([{"id": viewer, "name": "DS", "discovery": format!("http://127.0.0.1:{port}/hosting/discovery")}]).to_string();
    let app = spawn_with(&[("WOPIGATE_VIEWERS", &viewers)]).await;
    app.put_file("u1", "a.docx", b"x");
    let jwt = caller_jwt("u1", "U");
    for _ in 0..5 {
        let e = app.session(json!({"uri": "cloudreve://my/a.docx", "viewer_id": viewer, "preferred_action": "view"}), Some(&jwt)).await;
        assert_code(&e, 0);
        assert!(session(&e).4.starts_with("http://ds.test/hosting/wopi/word/view?"));
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "discovery is cached, not fetched per request");
}

#[tokio::test]
async fn explorer_config_lists_viewers() {
    let app = spawn_app().await;
    // Discovery loads in the background at start; the first session forces it for all three.
    app.put_file("u1", "a.docx", b"x");
    for viewer in [COLLABORA, ONLYOFFICE, OFFICE] {
        let jwt = caller_jwt("u1", "U");
        app.session(json!({"uri": "cloudreve://my/a.docx", "viewer_id": viewer, "preferred_action": "view"}), Some(&jwt)).await;
    }
    let e: Value = app.client.get(format!("{}/api/v4/site/config/explorer", app.address)).send().await.unwrap().json().await.unwrap();
    assert_code(&e, 0);
    let viewers = e["data"]["file_viewers"][0]["viewers"].as_array().unwrap();
    assert_eq!(viewers.len(), 3);
    let collabora = &viewers[0];
    assert_eq!(collabora["id"], COLLABORA.to_string());
    assert_eq!(collabora["type"], "wopi");
    assert_eq!(collabora["display_name"], "Collabora");
    assert_eq!(collabora["exts"], json!(["doc", "docx", "ods", "odt", "pdf", "sxw", "xlsx"]), "pdf through view_comment");
    assert!(collabora["wopi_actions"]["pdf"]["view"].is_string() && collabora["wopi_actions"]["pdf"].get("edit").is_none());
    let onlyoffice = &viewers[1];
    assert_eq!(onlyoffice["exts"], json!(["docx", "pdf", "xlsx"]), "allow-list applied");
    assert!(onlyoffice["icon"].as_str().unwrap().ends_with("favicon.ico"));
    assert!(onlyoffice["wopi_actions"]["docx"]["edit"].as_str().unwrap().contains("/word/edit?"));
    assert_eq!(viewers[2]["exts"], json!(["doc", "docx", "xls", "xlsx"]), "Office: only the configured zone");
    // Binary formats are edited by converting them: their edit template is the convert action's.
    assert!(viewers[2]["wopi_actions"]["doc"]["edit"].as_str().unwrap().contains("WordConvertAndEdit.aspx"));
}

#[tokio::test]
async fn caller_jwts_signed_with_public_key_algorithms() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let claims = json!({"sub": "u1", "name": "PEM User", "exp": now() + 600});
    let body = json!({"uri": "cloudreve://my/a.docx", "viewer_id": COLLABORA, "preferred_action": "view"});
    type KeyFromPem = fn(&[u8]) -> EncodingKey;
    let cases: [(&str, Algorithm, KeyFromPem); 3] = [
        ("rsa-jwt", Algorithm::RS256, |k| EncodingKey::from_rsa_pem(k).unwrap()),
        ("ec-p256", Algorithm::ES256, |k| EncodingKey::from_ec_pem(k).unwrap()),
        ("ed25519", Algorithm::EdDSA, |k| EncodingKey::from_ed_pem(k).unwrap()),
    ];
    for (name, alg, key) in cases {
        let public = std::fs::read_to_string(fixture(&format!("keys/{name}.pub.pem"))).unwrap();
        let private = std::fs::read(fixture(&format!("keys/{name}.pem"))).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut vars = base_env(free_port(), dir.path(), &[("WOPIGATE_CALLER_JWT_PUBLIC_KEY", &public)]);
        vars.retain(|(k, _)| k != "WOPIGATE_CALLER_JWT_SECRET");
        let config = wopigate::config::Config::from_vars(vars).unwrap();
        let app = wopigate::Application::build(config).await.unwrap();
        let port = app.port();
        tokio::spawn(app.run_until_stopped());
        std::fs::create_dir_all(dir.path().join("u1")).unwrap();
        std::fs::write(dir.path().join("u1/a.docx"), b"x").unwrap();
        let send = |jwt: String| {
            let body = body.to_string();
            async move {
                reqwest::Client::new()
                    .put(format!("http://127.0.0.1:{port}/api/v4/file/viewerSession"))
                    .bearer_auth(jwt)
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        };
        let good = encode(&Header::new(alg), &claims, &key(&private)).unwrap();
        assert_code(&send(good).await, 0);
        // HMAC keyed with the public key: the configured algorithm is not HS256, so no.
        let confused = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(public.as_bytes())).unwrap();
        assert_code(&send(confused).await, 401);
    }
}

#[tokio::test]
async fn user_extra_info_comes_from_the_caller_jwt() {
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", b"x");
    let jwt = caller_jwt_claims(json!({"sub": "u1", "name": "Ada", "picture": "https://drive.example.test/avatar/u1.png", "email": "ada@example.test", "exp": now() + 600}));
    let e = app.session(json!({"uri": "cloudreve://my/a.docx", "viewer_id": COLLABORA, "preferred_action": "edit"}), Some(&jwt)).await;
    let s = Session::from_envelope(&e);
    let info = app.info(&s).await;
    assert_eq!(info["UserExtraInfo"], json!({"avatar": "https://drive.example.test/avatar/u1.png", "mail": "ada@example.test"}));
    let plain = app.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    assert!(app.info(&plain).await.get("UserExtraInfo").is_none());
}

/// A header that is there but not text is a wrong value, not an absent one: an `Authorization`
/// of bytes past ASCII is refused, never taken for an anonymous caller.
#[tokio::test]
async fn unreadable_headers_are_wrong_not_absent() {
    let app = spawn_app().await;
    app.put_file("owner", "Docs/shared.docx", b"x");
    app.put_share("one", json!({"owner": "owner", "path": "Docs/shared.docx"}));
    let body = json!({"uri": "cloudreve://one@share/", "viewer_id": COLLABORA, "preferred_action": "view"}).to_string();
    let send = |name: &'static str, value: &'static [u8]| {
        let request = app
            .client
            .put(format!("{}/api/v4/file/viewerSession", app.address))
            .header(name, reqwest::header::HeaderValue::from_bytes(value).unwrap())
            .body(body.clone());
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_code(&app.session_raw(&body, None, None).await, 0);
    assert_code(&send("authorization", b"Bearer \xff\xfe").await, 401);
    assert!(assert_code(&send("x-wopigate-device", b"mobil\xe9").await, 40001).contains("X-Wopigate-Device"));
}
