//! Access tokens across replicas, rotation, and every way of forging one, checked on a real
//! WOPI call (CheckFileInfo).

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::*;

fn sign_hs(claims: &Value, kid: &str, secret: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_string());
    encode(&header, claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
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
    assert_ne!(claims_kid(&fresh.token), old_kid, "new tokens are signed with the new key");
    assert_eq!(status(&rotated, &fresh.fid, &fresh.token).await, 200);
    // An old-key token that has expired is refused like any other.
    let mut expired = claims_of(&s.token);
    expired["exp"] = json!(now() - 120);
    expired["iat"] = json!(now() - 3600);
    expired["nbf"] = json!(now() - 3600);
    assert_eq!(status(&rotated, &s.fid, &sign_hs(&expired, &old_kid, TOKEN_SECRET)).await, 401);
}

fn claims_kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
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
    // ...but a changed payload with the original signature is not.
    let parts: Vec<&str> = a.token.split('.').collect();
    let mut changed = claims.clone();
    changed["fid"] = json!(b.fid);
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
    let no_kid = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(TOKEN_SECRET.as_bytes())).unwrap();
    assert_eq!(status(&app, &a.fid, &no_kid).await, 401);
    // alg: none.
    let none = format!("{}.{}.", b64(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    assert_eq!(status(&app, &a.fid, &none).await, 401);
    // RS256 under our kid (the server's key is HS256): the token header does not choose.
    let rsa = std::fs::read(fixture("keys/rsa-jwt.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.clone());
    let rs = encode(&header, &claims, &EncodingKey::from_rsa_pem(&rsa).unwrap()).unwrap();
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
    assert_eq!(jsonwebtoken::decode_header(&s.token).unwrap().alg, Algorithm::EdDSA);
    assert_eq!(status(&app, &s.fid, &s.token).await, 200);
    // The classic confusion: HS256 keyed with the (public) verification key.
    let forged = sign_hs(&claims_of(&s.token), &claims_kid(&s.token), &public);
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
