//! Proof keys over HTTP: a viewer whose discovery publishes keys must sign every WOPI call;
//! keys rotate, and the host re-reads discovery before refusing.

use base64::Engine;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::json;
use sha2::Sha256;
use uuid::Uuid;

use crate::helpers::*;

pub fn key(name: &str) -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(fixture(&format!("keys/{name}.pem"))).unwrap()).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn proof_element(current: &RsaPrivateKey, old: Option<&RsaPrivateKey>) -> String {
    let attrs = |k: &RsaPrivateKey| (b64(&k.n().to_bytes_be()), b64(&k.e().to_bytes_be()));
    let (m, e) = attrs(current);
    let (om, oe) = old.map(attrs).unwrap_or_default();
    format!(r#"<proof-key modulus="{m}" exponent="{e}" oldmodulus="{om}" oldexponent="{oe}"/>"#)
}

fn discovery(proof: &str) -> String {
    format!(
        r#"<wopi-discovery><net-zone name="external-https"><app name="Word"><action name="edit" ext="docx" urlsrc="https://office.test/we?&lt;wopisrc=WOPI_SOURCE&amp;&gt;"/></app></net-zone>{proof}</wopi-discovery>"#
    )
}

pub fn sign(key: &RsaPrivateKey, token: &str, url: &str, ticks: i64) -> String {
    let data = wopigate::proof::expected_proof(token, url, ticks);
    b64(&SigningKey::<Sha256>::new(key.clone()).sign(&data).to_bytes())
}

#[tokio::test]
async fn signed_calls_pass_unsigned_fail_and_rotation_is_followed() {
    let (a, b) = (key("proof-a"), key("proof-b"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("discovery.xml");
    std::fs::write(&file, discovery(&proof_element(&a, None))).unwrap();
    let viewer = Uuid::new_v4();
    let viewers = json!([{"id": viewer, "name": "Office", "discovery": file}]).to_string();
    let app = spawn_with(&[("WOPIGATE_VIEWERS", &viewers)]).await;
    app.put_file("u1", "a.docx", b"x");
    let e = app.session(json!({"uri": "cloudreve://my/a.docx", "viewer_id": viewer, "preferred_action": "edit"}), Some(&caller_jwt("u1", "U"))).await;
    let s = Session::from_envelope(&e);
    let url = app.file_url(&s.fid, "", &s.token);
    let call = |proof: Option<String>, proof_old: Option<String>, ticks: i64| {
        let mut req = app.client.get(&url).header("X-WOPI-TimeStamp", ticks.to_string());
        if let Some(p) = proof {
            req = req.header("X-WOPI-Proof", p);
        }
        if let Some(p) = proof_old {
            req = req.header("X-WOPI-ProofOld", p);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let now = wopigate::proof::ticks_from_unix_millis(chrono::Utc::now().timestamp_millis());

    assert_eq!(call(Some(sign(&a, &s.token, &url, now)), None, now).await, 200);
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 500, "unsigned");
    assert_eq!(call(Some(sign(&b, &s.token, &url, now)), None, now).await, 500, "wrong key");
    let stale = now - 21 * 60 * 10_000_000;
    assert_eq!(call(Some(sign(&a, &s.token, &url, stale)), None, stale).await, 500, "older than 20 minutes");
    // The signature covers the URL: the same signature on another URL fails.
    let other = format!("{url}&x=1");
    let r = app.client.get(&other).header("X-WOPI-TimeStamp", now.to_string()).header("X-WOPI-Proof", sign(&a, &s.token, &url, now)).send().await.unwrap();
    assert_eq!(r.status(), 500);

    // The client rotates to key b (a becomes old) and its discovery says so; ours is stale.
    std::fs::write(&file, discovery(&proof_element(&b, Some(&a)))).unwrap();
    assert_eq!(call(Some(sign(&b, &s.token, &url, now)), Some(sign(&b, &s.token, &url, now)), now).await, 200, "re-read discovery, then verified");
    // Now current = b, old = a: a request still signed by a (a lagging client machine) passes.
    assert_eq!(call(Some(sign(&a, &s.token, &url, now)), None, now).await, 200);
    // ProofOld signed with the old key alone is not enough.
    assert_eq!(call(Some("AAAA".into()), Some(sign(&a, &s.token, &url, now)), now).await, 500);
}
