//! Access tokens across replicas, rotation, and every way of forging one, checked on a real
//! WOPI call (CheckFileInfo).

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::*;

fn sign_hs(claims: &Value, kid: &str, secret: &str) -> String {
    legacy_token(claims, kid, secret)
}

fn b64(s: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

async fn status(app: &TestApp, fid: &str, token: &str) -> u16 {
    app.client.get(app.file_url(fid, "", token)).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_token_works_on_every_replica_with_the_same_key_ring() {
    let first = spawn_app().await;
    first.put_file("u1", "a.docx", b"x");
    let s = first.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    let second = spawn_on(&first.data, &[]).await;
    assert_eq!(status(&second, &s.fid, &s.token).await, 200, "a second replica verifies from the token alone");
    let other_key = spawn_on(&first.data, &[("WOPIGATE_TOKEN_SECRET", "another-secret-another-secret-another-secret")]).await;
    assert_eq!(status(&other_key, &s.fid, &s.token).await, 401);
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_until_they_expire() {
    let old = spawn_app().await;
    old.put_file("u1", "a.docx", b"x");
    let s = old.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    let old_kid = wopigate::config::derived_kid(TOKEN_SECRET);
    let ring = json!([{"kid": old_kid, "secret": TOKEN_SECRET}]).to_string();
    let rotated = spawn_on(
        &old.data,
        &[("WOPIGATE_TOKEN_SECRET", "the-new-current-key-the-new-current-key-0001"), ("WOPIGATE_TOKEN_OLD_KEYS", &ring)],
    )
    .await;
    assert_eq!(status(&rotated, &s.fid, &s.token).await, 200, "old key verifies");
    let fresh = rotated.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    assert_eq!(status(&old, &fresh.fid, &fresh.token).await, 401, "new tokens are signed with the new key");
    assert_eq!(status(&rotated, &fresh.fid, &fresh.token).await, 200);
    // An old-key token that has expired is refused like any other.
    let mut expired = claims_of(&s.token);
    expired["exp"] = json!(now() - 120);
    expired["iat"] = json!(now() - 3600);
    expired["nbf"] = json!(now() - 3600);
    assert_eq!(status(&rotated, &s.fid, &sign_hs(&expired, &old_kid, TOKEN_SECRET)).await, 401);
}

fn claims_kid(_token: &str) -> String {
    wopigate::config::derived_kid(TOKEN_SECRET)
}

#[tokio::test]
async fn forged_and_misused_tokens_are_rejected() {
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", b"x");
    app.put_file("u1", "b.docx", b"y");
    let a = app.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    let b = app.session_for("u1", "cloudreve://my/b.docx", "edit").await;
    let kid = claims_kid(&a.token);
    let claims = claims_of(&a.token);
    assert_eq!(status(&app, &a.fid, &a.token).await, 200);

    // A token for file A on file B.
    assert_eq!(status(&app, &b.fid, &a.token).await, 401);
    // Re-signed claims with our own key are fine (sanity of the forging helper)...
    assert_eq!(status(&app, &a.fid, &sign_hs(&claims, &kid, TOKEN_SECRET)).await, 200);
    // ...but another token's claims under this one's signature are not.
    let (_, a_signature) = a.token.split_once('.').unwrap();
    let (b_claims, _) = b.token.split_once('.').unwrap();
    assert_eq!(status(&app, &b.fid, &format!("{b_claims}.{a_signature}")).await, 401);
    // Nor is a legacy-format (JWT) token whose payload was changed.
    let legacy = sign_hs(&claims, &kid, TOKEN_SECRET);
    let parts: Vec<&str> = legacy.split('.').collect();
    let mut changed = claims.clone();
    changed["fid"] = json!(b.fid);
    changed["nbf"] = changed["iat"].clone();
    changed["aud"] = json!("wopigate");
    let tampered = format!("{}.{}.{}", parts[0], b64(changed.to_string().as_bytes()), parts[2]);
    assert_eq!(status(&app, &b.fid, &tampered).await, 401);

    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        edit(&mut c);
        sign_hs(&c, &kid, TOKEN_SECRET)
    };
    let expired = with(&|c| c["exp"] = json!(now() - 300));
    let not_yet = with(&|c| c["nbf"] = json!(now() + 3600));
    let wrong_audience = with(&|c| c["aud"] = json!("somebody-else"));
    for (name, token) in [("expired", expired), ("not yet valid", not_yet), ("wrong audience", wrong_audience)] {
        assert_eq!(status(&app, &a.fid, &token).await, 401, "{name}");
    }
    // Signed with a key outside the ring, under our kid.
    assert_eq!(status(&app, &a.fid, &sign_hs(&claims, &kid, "not-the-key-not-the-key-not-the-key-00")).await, 401);
    // No kid.
    let mut legacy_claims = claims.clone();
    legacy_claims["nbf"] = claims["iat"].clone();
    legacy_claims["aud"] = json!("wopigate");
    let no_kid = encode(&Header::new(Algorithm::HS256), &legacy_claims, &EncodingKey::from_secret(TOKEN_SECRET.as_bytes())).unwrap();
    assert_eq!(status(&app, &a.fid, &no_kid).await, 401);
    // alg: none.
    let none = format!("{}.{}.", b64(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string().as_bytes()), b64(legacy_claims.to_string().as_bytes()));
    assert_eq!(status(&app, &a.fid, &none).await, 401);
    // RS256 under our kid (the server's key is HS256): the token header does not choose.
    let rsa = std::fs::read(fixture("keys/rsa-jwt.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.clone());
    let rs = encode(&header, &legacy_claims, &EncodingKey::from_rsa_pem(&rsa).unwrap()).unwrap();
    assert_eq!(status(&app, &a.fid, &rs).await, 401);
    // Missing token; garbage.
    let r = app.client.get(format!("{}/wopi/files/{}", app.address, a.fid)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(status(&app, &a.fid, "garbage").await, 401);
    // The Authorization header is a fallback when the query has no token.
    let r = app.client.get(format!("{}/wopi/files/{}", app.address, a.fid)).bearer_auth(&a.token).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn eddsa_ring_rejects_hmac_signed_with_the_public_key() {
    let private = std::fs::read_to_string(fixture("keys/ed25519.pem")).unwrap();
    let public = std::fs::read_to_string(fixture("keys/ed25519.pub.pem")).unwrap();
    let app = spawn_with(&[
        ("WOPIGATE_TOKEN_ALG", "EdDSA"),
        ("WOPIGATE_TOKEN_PRIVATE_KEY", &private),
        ("WOPIGATE_TOKEN_PUBLIC_KEY", &public),
    ])
    .await;
    app.put_file("u1", "a.docx", b"x");
    let s = app.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    let (claims_part, signature) = s.token.split_once('.').unwrap();
    assert_eq!(signature.len(), 86, "an Ed25519 signature");
    assert_eq!(status(&app, &s.fid, &s.token).await, 200);
    // The classic confusion, HS256 keyed with the (public) verification key, in both formats.
    let message = format!("wopigate/1\nwopigate\n{claims_part}");
    let hmac = jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(public.as_bytes()), Algorithm::HS256).unwrap();
    assert_eq!(status(&app, &s.fid, &format!("{claims_part}.{hmac}")).await, 401);
    let kid = wopigate::config::derived_kid(&public);
    let forged = sign_hs(&claims_of(&s.token), &kid, &public);
    assert_eq!(status(&app, &s.fid, &forged).await, 401);
}

#[tokio::test]
async fn get_file_wopi_src_mints_for_the_same_user_only() {
    let app = spawn_with(&[("WOPIGATE_HOST_PAGE_URL", "https://drive.example.test/open/{file_id}?action={action}")]).await;
    app.put_file("u1", "a.docx", b"x");
    app.put_file("u1", "other.xlsx", b"y");
    app.put_file("u2", "theirs.docx", b"z");
    let s = app.session_for("u1", "cloudreve://my/a.docx", "view").await;
    let other = app.session_for("u1", "cloudreve://my/other.xlsx", "view").await;
    let ask = |native: String, token: String| {
        let app = &app;
        async move { app.wopi_src(&token, &native).await }
    };

    // A cloudreve:// URI of the caller's own file.
    let r = ask("cloudreve://my/other.xlsx".into(), s.token.clone()).await;
    assert_eq!(r.status(), 200);
    let url = r.json::<Value>().await.unwrap()["Url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{}/wopi/files/{}?access_token=", app.address, other.fid)), "{url}");
    let parsed = url::Url::parse(&url).unwrap();
    let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
    let minted = claims_of(&q["access_token"]);
    assert_eq!(minted["sub"], "u1");
    assert!(minted["exp"].as_i64().unwrap() * 1000 <= s.expires, "never outlives the presented token");
    assert_eq!(q["access_token_ttl"].parse::<i64>().unwrap(), minted["exp"].as_i64().unwrap() * 1000);
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200, "the returned URL is a working WOPISrc");

    // A WOPISrc of ours, and the host page URLs of CheckFileInfo.
    let wopi_src = format!("{}/wopi/files/{}", app.address, other.fid);
    assert_eq!(ask(wopi_src, s.token.clone()).await.status(), 200);
    let info = app.info(&other).await;
    for key in ["HostViewUrl", "HostEditUrl"] {
        let host_url = info[key].as_str().unwrap().to_string();
        assert_eq!(ask(host_url, s.token.clone()).await.status(), 200, "{key}");
    }

    // The same file through a view token stays view: no more rights than presented.
    let r = ask(format!("{}/wopi/files/{}", app.address, s.fid), s.token.clone()).await;
    let url = r.json::<Value>().await.unwrap()["Url"].as_str().unwrap().to_string();
    let token = url::Url::parse(&url).unwrap().query_pairs().find(|(k, _)| k == "access_token").unwrap().1.into_owned();
    assert_eq!(claims_of(&token)["act"], "view");

    // Another user's file: refused, by URI or by WOPISrc.
    let theirs = app.session_for("u2", "cloudreve://my/theirs.docx", "edit").await;
    let r = ask("cloudreve://u2@my/theirs.docx".into(), s.token.clone()).await;
    assert!(matches!(r.status().as_u16(), 401 | 403 | 404), "{}", r.status());
    let r = ask(format!("{}/wopi/files/{}", app.address, theirs.fid), s.token.clone()).await;
    assert_eq!(r.status(), 404);
    // Nonsense and missing names; a bad token.
    assert_eq!(ask("https://elsewhere.example/x".into(), s.token.clone()).await.status(), 404);
    assert_eq!(ask("cloudreve://my/../x".into(), s.token.clone()).await.status(), 400);
    assert_eq!(ask("cloudreve://my/a.docx".into(), "forged".into()).await.status(), 401);
    let r = app.client.get(format!("{}/wopi/ecosystem?access_token={}", app.address, s.token)).send().await.unwrap();
    assert_eq!(r.status(), 200, "CheckEcosystem");
}

/// Office for the web takes tokens of at most 1,500 characters; every wopigate token is at most
/// 512, here at its worst: a 64-character user id, a 60 KB display name and a long avatar URL,
/// a 250-character file name 50 folders deep, a share with the longest id, a parent folder, a
/// past version, and the tokens derived from those sessions.
#[tokio::test]
async fn every_token_fits_in_512_characters() {
    const BUDGET: usize = 512;
    let app = spawn_app().await;
    let user = "u".repeat(64);
    let deep: String = (0..50).map(|i| format!("folder-{i:02}-{}/", "d".repeat(30))).collect();
    let name = format!("{}.docx", "n".repeat(245));
    app.put_file(&user, &format!("{deep}{name}"), b"first");
    let share = "s".repeat(32);
    app.put_share(&share, json!({"owner": user, "path": deep.trim_end_matches('/'), "editable": true}));
    let long_name = format!("Ada {}", "Ж".repeat(30_000));
    let avatar = format!("https://avatars.example.test/{}.png", "a".repeat(400));
    let jwt = caller_jwt_claims(json!({"sub": user, "name": long_name, "picture": avatar, "exp": now() + 600}));
    let visitor_jwt = caller_jwt_claims(json!({"sub": "v".repeat(64), "name": long_name, "exp": now() + 600}));
    let enc = |s: &str| s.split('/').map(|p| url::form_urlencoded::byte_serialize(p.as_bytes()).collect::<String>()).collect::<Vec<_>>().join("/");

    // The owner's session; a save makes the first content a past version.
    let own_uri = format!("cloudreve://my/{}{}", enc(&deep), enc(&name));
    let parent = format!("cloudreve://my/{}", enc(deep.trim_end_matches('/')));
    let body = json!({"uri": own_uri, "viewer_id": COLLABORA, "preferred_action": "edit", "parent_uri": parent});
    let owner = Session::from_envelope(&app.session(body, Some(&jwt)).await);
    let past = app.info(&owner).await["Version"].as_str().unwrap().to_string();
    assert_eq!(app.lock(&owner, "L1").await.status(), 200);
    assert_eq!(app.put(&owner, "second").header("X-WOPI-Lock", "L1").send().await.unwrap().status(), 200);
    let body = json!({"uri": own_uri, "viewer_id": COLLABORA, "preferred_action": "view", "version": past});
    let old = Session::from_envelope(&app.session(body, Some(&jwt)).await);
    // A signed-in visitor through the share, with the share folder as parent.
    let shared_uri = format!("cloudreve://{share}@share/{}", enc(&name));
    let body = json!({"uri": shared_uri, "viewer_id": COLLABORA, "preferred_action": "edit", "parent_uri": format!("cloudreve://{share}@share/")});
    let visitor = Session::from_envelope(&app.session(body, Some(&visitor_jwt)).await);

    let mut tokens = vec![("owner", owner.token.clone()), ("past version", old.token.clone()), ("share visitor", visitor.token.clone())];
    // Tokens derived from them: Save As and GetFileWopiSrc.
    for (what, s) in [("owner", &owner), ("share visitor", &visitor)] {
        let r = app.op(s, "PUT_RELATIVE").header("X-WOPI-SuggestedTarget", ".docx").body("copy").send().await.unwrap();
        assert_eq!(r.status(), 200, "{what}");
        let url = r.json::<Value>().await.unwrap()["Url"].as_str().unwrap().to_string();
        tokens.push(("Save As", TestApp::session_from_url(&url).token));
        let r = app.wopi_src(&s.token, &format!("{}/wopi/files/{}", app.address, s.fid)).await;
        assert_eq!(r.status(), 200, "{what}");
        let url = r.json::<Value>().await.unwrap()["Url"].as_str().unwrap().to_string();
        tokens.push(("GetFileWopiSrc", TestApp::session_from_url(&url).token));
    }
    for (what, token) in &tokens {
        let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
        assert!(encoded.len() <= BUDGET, "{what}: {} characters", encoded.len());
        println!("{what}: {} characters", encoded.len());
    }

    // What the token cannot carry is shown in full from the user's stored profile.
    let info = app.info(&owner).await;
    let shown = info["UserFriendlyName"].as_str().unwrap();
    assert!(shown.starts_with("Ada ЖЖ") && shown.chars().count() == 256, "{} characters", shown.chars().count());
    assert_eq!(info["UserExtraInfo"]["avatar"], avatar);
    assert!(claims_of(&owner.token)["name"].as_str().unwrap().len() <= 48);
    assert_eq!(app.info(&visitor).await["UserFriendlyName"].as_str().unwrap().chars().count(), 256);
    // A short name needs no profile: nothing is stored for it.
    app.put_file("u2", "a.docx", b"x");
    let plain = app.session_for("u2", "cloudreve://my/a.docx", "edit").await;
    assert_eq!(claims_of(&plain.token)["profile"], false);
    assert!(!app.data.join(".wopigate/objects/users/u2.json").exists());
    // A user id over 64 characters is refused with a clear message.
    let e = app.session(json!({"uri": "cloudreve://my/a.docx", "viewer_id": COLLABORA, "preferred_action": "edit"}), Some(&caller_jwt(&"u".repeat(65), "x"))).await;
    assert!(e["msg"].as_str().unwrap().contains("1-64 characters"), "{e}");
}
