//! Share-password attempt counters: one contract for memory and Redis, and one limit for every
//! replica on the same Redis.

use std::path::Path;
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde_json::{json, Value};
use wopigate::attempts::{AttemptLimiter, MemoryAttempts, RedisAttempts, Verdict, WINDOW};
use wopigate::config::Config;
use wopigate::Application;

use crate::servers::Redis;

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("{n}-{}", uuid::Uuid::new_v4().simple())).collect()
}

/// Limit 3: what every backend must do.
async fn limiter_contract(limiter: &dyn AttemptLimiter) {
    let [share, client, other] = <[String; 3]>::try_from(keys(&["share", "client", "other"])).unwrap();
    let both = [share.clone(), client.clone()];
    // A right password given back does not count.
    assert_eq!(limiter.take(&both).await.unwrap(), Verdict::Counted);
    limiter.give_back(&both).await.unwrap();
    for _ in 0..3 {
        assert_eq!(limiter.take(&both).await.unwrap(), Verdict::Counted);
    }
    let Verdict::Refused { retry_after } = limiter.take(&both).await.unwrap() else { panic!("fourth attempt counted") };
    assert!(retry_after <= WINDOW && retry_after > WINDOW - Duration::from_secs(10), "{retry_after:?}");
    // One key at its limit refuses the pair, and counts nothing on the other key.
    assert!(matches!(limiter.take(&[other.clone(), client.clone()]).await.unwrap(), Verdict::Refused { .. }));
    for _ in 0..3 {
        assert_eq!(limiter.take(std::slice::from_ref(&other)).await.unwrap(), Verdict::Counted);
    }
    assert!(matches!(limiter.take(std::slice::from_ref(&other)).await.unwrap(), Verdict::Refused { .. }));
    // Giving back more than was counted does not go below zero.
    let fresh = keys(&["fresh"]);
    for _ in 0..5 {
        limiter.give_back(&fresh).await.unwrap();
    }
    for _ in 0..3 {
        assert_eq!(limiter.take(&fresh).await.unwrap(), Verdict::Counted);
    }
    assert!(matches!(limiter.take(&fresh).await.unwrap(), Verdict::Refused { .. }));
}

#[tokio::test]
async fn memory_and_redis_counters_keep_one_contract() {
    limiter_contract(&MemoryAttempts::new(3, 1000)).await;
    let Some(redis) = Redis::start() else { return };
    let conn = wopigate::locks::redis::connect(&redis.url(), Duration::from_secs(2)).await.unwrap();
    limiter_contract(&RedisAttempts::new(conn, 3, Duration::from_secs(2))).await;
}

fn cheap_hash(password: &str) -> String {
    let params = Params::new(8, 1, 1, None).unwrap();
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password(password.as_bytes(), &salt).unwrap().to_string()
}

/// An app in this process on the shared `data` directory, counting attempts in `redis`.
async fn replica(data: &Path, redis: &Redis) -> String {
    let discovery = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/discovery/collabora.xml");
    let vars = [
        ("WOPIGATE_BIND", "127.0.0.1:0".to_string()),
        ("WOPIGATE_DATA_DIR", data.display().to_string()),
        ("WOPIGATE_TOKEN_SECRET", "attempts-secret-attempts-secret-attempts".to_string()),
        ("WOPIGATE_VIEWERS", json!([{"id": crate::cluster::VIEWER, "name": "Collabora", "discovery": discovery}]).to_string()),
        ("WOPIGATE_LOCKS", "redis".to_string()),
        ("WOPIGATE_REDIS_URL", redis.url()),
    ];
    let config = Config::from_vars(vars.into_iter().map(|(k, v)| (k.to_string(), v))).unwrap();
    let app = Application::build(config).await.unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    url
}

/// viewerSession on `base` for the share `locked`: (HTTP status, Retry-After, envelope code).
async fn attempt(client: &reqwest::Client, base: &str, password: &str) -> (u16, Option<u64>, Value) {
    let body = json!({"uri": format!("cloudreve://locked:{password}@share/"), "viewer_id": crate::cluster::VIEWER,
                      "preferred_action": "view"});
    let r = client.put(format!("{base}/api/v4/file/viewerSession")).body(body.to_string()).send().await.unwrap();
    let status = r.status().as_u16();
    let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    let envelope: Value = r.json().await.unwrap();
    (status, retry_after, envelope["code"].clone())
}

#[tokio::test]
async fn replicas_on_one_redis_enforce_one_limit() {
    let Some(redis) = Redis::start() else { return };
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("owner/Docs/shared.docx");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"x").unwrap();
    let shares = data.path().join(".wopigate/objects/shares");
    std::fs::create_dir_all(&shares).unwrap();
    let manifest = json!({"owner": "owner", "path": "Docs/shared.docx", "password_hash": cheap_hash("right")});
    std::fs::write(shares.join("locked.json"), manifest.to_string()).unwrap();
    let (a, b) = (replica(data.path(), &redis).await, replica(data.path(), &redis).await);
    let client = reqwest::Client::new();

    assert_eq!(attempt(&client, &b, "right").await, (200, None, json!(0)));
    for _ in 0..5 {
        assert_eq!(attempt(&client, &a, "wrong").await, (200, None, json!(40069)));
        assert_eq!(attempt(&client, &b, "wrong").await, (200, None, json!(40069)));
    }
    // Ten failures over the two replicas: the eleventh is refused on either.
    for base in [&a, &b] {
        let (status, retry_after, code) = attempt(&client, base, "wrong").await;
        assert_eq!((status, code), (429, json!(429)));
        assert!(retry_after.is_some_and(|s| (1..=60).contains(&s)), "{retry_after:?}");
    }
}
