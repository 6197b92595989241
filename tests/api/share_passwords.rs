//! Share passwords: the attempt limit (per share, per client address, 429 past it) and Argon2
//! kept off the request workers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde_json::{json, Value};

use crate::helpers::*;

/// A cheap Argon2id hash (8 KiB, one pass): the limit tests need many checks, not strong ones.
pub fn cheap_hash(password: &str) -> String {
    let params = Params::new(8, 1, 1, None).unwrap();
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password(password.as_bytes(), &salt).unwrap().to_string()
}

/// The share `id` of `owner/Docs/shared.docx` behind the password hashed in `hash`.
fn locked_share(app: &TestApp, id: &str, hash: &str) {
    app.put_file("owner", "Docs/shared.docx", b"x");
    app.put_share(id, json!({"owner": "owner", "path": "Docs/shared.docx", "password_hash": hash}));
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    envelope: Value,
}

/// viewerSession for share `id` with `password` (none: no password in the URI), optionally
/// through a proxy that says the client is `forwarded_for`.
async fn attempt(app: &TestApp, id: &str, password: Option<&str>, forwarded_for: Option<&str>) -> Answer {
    let uri = match password {
        Some(pw) => format!("cloudreve://{id}:{pw}@share/"),
        None => format!("cloudreve://{id}@share/"),
    };
    let mut req = app
        .client
        .put(format!("{}/api/v4/file/viewerSession", app.address))
        .header("Content-Type", "application/json")
        .body(json!({"uri": uri, "viewer_id": COLLABORA, "preferred_action": "view"}).to_string());
    if let Some(addr) = forwarded_for {
        req = req.header("X-Forwarded-For", addr);
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    Answer { status, retry_after, envelope: response.json().await.unwrap() }
}

/// Asserts a plain wrong-password answer (HTTP 200, 40069).
async fn wrong(app: &TestApp, id: &str, forwarded_for: Option<&str>) {
    let a = attempt(app, id, Some("wrong"), forwarded_for).await;
    assert_eq!(a.status, 200, "{}", a.envelope);
    assert_code(&a.envelope, 40069);
}

/// Asserts a refusal by the limit: HTTP 429, `Retry-After` within the window, envelope 429.
fn assert_refused(a: &Answer) {
    assert_eq!(a.status, 429, "{}", a.envelope);
    let secs: u64 = a.retry_after.as_deref().expect("Retry-After is set").parse().unwrap();
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    let msg = assert_code(&a.envelope, 429);
    assert!(msg.contains("too many") && msg.contains(&format!("{secs} s")), "{msg}");
    assert!(a.envelope.get("data").is_none(), "no data, not even null: {}", a.envelope);
}

/// Sum of a counter over its labels, from `/metrics`.
async fn counter(app: &TestApp, name: &str) -> u64 {
    let text = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

const CHECKS: &str = "wopigate_share_password_checks_total";
const REFUSALS: &str = "wopigate_share_password_refusals_total";

#[tokio::test]
async fn eleventh_wrong_password_is_refused_with_429_without_running_argon2() {
    let app = spawn_app().await;
    locked_share(&app, "locked", &cheap_hash("right"));
    // Successes do not count: 5 wrong, the right one, 5 wrong are all answered as usual.
    for _ in 0..5 {
        wrong(&app, "locked", None).await;
    }
    assert_code(&attempt(&app, "locked", Some("right"), None).await.envelope, 0);
    for _ in 0..5 {
        wrong(&app, "locked", None).await;
    }
    assert_eq!(counter(&app, CHECKS).await, 11);
    assert_eq!(counter(&app, REFUSALS).await, 0);

    let refused = attempt(&app, "locked", Some("wrong"), None).await;
    assert_refused(&refused);
    assert_eq!(counter(&app, CHECKS).await, 11, "refused without running Argon2");
    assert_eq!(counter(&app, REFUSALS).await, 1);
    // Past the limit even the right password waits; no password at all is no guess (40069).
    assert_refused(&attempt(&app, "locked", Some("right"), None).await);
    assert_code(&attempt(&app, "locked", None, None).await.envelope, 40069);
    assert_eq!(counter(&app, CHECKS).await, 11);
}

#[tokio::test]
async fn the_limit_per_address_spans_shares() {
    let app = spawn_with(&[("WOPIGATE_TRUSTED_PROXIES", "127.0.0.1")]).await;
    for id in ["a", "b", "c"] {
        locked_share(&app, id, &cheap_hash("right"));
    }
    let attacker = Some("203.0.113.1");
    for _ in 0..5 {
        wrong(&app, "a", attacker).await;
        wrong(&app, "b", attacker).await;
    }
    // Share c has no failures, but this address has used up its ten.
    assert_refused(&attempt(&app, "c", Some("wrong"), attacker).await);
    assert_refused(&attempt(&app, "c", Some("right"), attacker).await);
    // Naming another address in front of the one the proxy appended changes nothing.
    assert_refused(&attempt(&app, "c", Some("wrong"), Some("192.0.2.50, 203.0.113.1")).await);
    // Another address is not held back, on any of the shares.
    let visitor = Some("203.0.113.2");
    wrong(&app, "c", visitor).await;
    assert_code(&attempt(&app, "a", Some("right"), visitor).await.envelope, 0);
}

#[tokio::test]
async fn the_limit_per_share_spans_addresses() {
    let app = spawn_with(&[("WOPIGATE_TRUSTED_PROXIES", "127.0.0.1")]).await;
    locked_share(&app, "target", &cheap_hash("right"));
    locked_share(&app, "other", &cheap_hash("right"));
    for i in 1..=10 {
        wrong(&app, "target", Some(&format!("198.51.100.{i}"))).await;
    }
    // A new address on the same share: refused; on another share: counted as usual.
    let fresh = Some("198.51.100.11");
    assert_refused(&attempt(&app, "target", Some("wrong"), fresh).await);
    assert_refused(&attempt(&app, "target", Some("right"), fresh).await);
    wrong(&app, "other", fresh).await;
    assert_code(&attempt(&app, "other", Some("right"), fresh).await.envelope, 0);
}

#[tokio::test]
async fn an_untrusted_peers_forwarded_for_is_ignored() {
    // The test client (127.0.0.1) is not in the trusted block.
    let app = spawn_with(&[("WOPIGATE_TRUSTED_PROXIES", "10.0.0.0/8")]).await;
    let hash = cheap_hash("right");
    for i in 0..=10 {
        locked_share(&app, &format!("s{i}"), &hash);
    }
    // Ten shares, ten claimed addresses: all are one address, 127.0.0.1.
    for i in 0..10 {
        wrong(&app, &format!("s{i}"), Some(&format!("198.51.100.{i}"))).await;
    }
    assert_refused(&attempt(&app, "s10", Some("wrong"), Some("198.51.100.200")).await);
}

/// The attack that stalled the service: 32 clients sending wrong passwords as fast as they
/// can (limit set high, so Argon2 really runs, with its real cost) while a WOPI client calls
/// CheckFileInfo on an unrelated file.
#[tokio::test]
async fn wrong_passwords_do_not_stall_other_requests() {
    let app = spawn_with(&[("WOPIGATE_SHARE_PASSWORD_ATTEMPTS", "1000000")]).await;
    locked_share(&app, "locked", &wopigate::policy::hash_password("the right one"));
    app.put_file("u1", "Docs/unrelated.docx", b"unrelated");
    let session = app.session_for("u1", "cloudreve://my/Docs/unrelated.docx", "edit").await;
    assert_eq!(app.check_file_info(&session).await.status(), 200);

    let app = Arc::new(app);
    let (answered, unexpected) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let attackers: Vec<_> = (0..32)
        .map(|_| {
            let (app, answered, unexpected) = (app.clone(), answered.clone(), unexpected.clone());
            tokio::spawn(async move {
                loop {
                    let a = attempt(&app, "locked", Some("wrong"), None).await;
                    let counter = if a.status == 200 && a.envelope["code"] == 40069 { &answered } else { &unexpected };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // Let the attack fill the queue, then time CheckFileInfo calls for a few seconds.
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let timer = reqwest::Client::new();
    let url = app.file_url(&session.fid, "", &session.token);
    let mut times = Vec::new();
    while started.elapsed() < Duration::from_secs(4) {
        let t = Instant::now();
        let r = timer.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        times.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let checked = counter(&app, CHECKS).await;
    // Disconnecting drops the queued requests: the server finishes only the checks running now.
    for attacker in attackers {
        attacker.abort();
    }
    assert!(!times.is_empty(), "no CheckFileInfo call finished during the attack");
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "CheckFileInfo during the attack: median {:.1} ms, max {:.1} ms over {} calls; 32 clients got {} wrong-password \
         answers, {checked} Argon2 checks ({:.1}/s) in {:.1} s",
        median.as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0,
        times.len(),
        answered.load(Ordering::Relaxed),
        checked as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
    );
    assert_eq!(unexpected.load(Ordering::Relaxed), 0, "every guess is answered 40069");
    assert!(checked > 0, "Argon2 ran");
    assert!(median < Duration::from_millis(200), "median CheckFileInfo {median:?} during the attack");
    assert!(times.len() >= 5, "too few CheckFileInfo calls finished: {}", times.len());
}
