//! Short critical sections across replicas, for stores that have no atomic rename: a commit
//! (check the version, copy into place) or a compare-and-set of a small object runs while
//! holding a named mutex. Redis provides one (`SET NX PX`), and so does an S3 server that
//! honours conditional writes (create-if-absent of a marker object).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use uuid::Uuid;

use super::StoreError;

/// How long a holder may keep a mutex before others may take it (a crashed replica).
pub const MUTEX_TTL: Duration = Duration::from_secs(30);

#[async_trait]
pub trait CommitMutex: Send + Sync + 'static {
    /// Waits (up to `wait`) for the mutex `name`; returns the holder's token.
    async fn acquire(&self, name: &str, wait: Duration) -> Result<String, StoreError>;
    async fn release(&self, name: &str, token: &str);
}

fn busy(name: &str) -> StoreError {
    StoreError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("mutex '{name}' stayed busy")))
}

/// Backs off a little, with jitter, between attempts.
async fn pause(attempt: u32) {
    let millis = 5u64 << attempt.min(5);
    let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=millis);
    tokio::time::sleep(Duration::from_millis(millis + jitter)).await;
}

/// A marker object created with `If-None-Match: *`; its content is the holder's token and
/// the time it was taken, so a marker left by a crashed holder expires.
pub struct ObjectMutex {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl ObjectMutex {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        ObjectMutex { store, prefix: prefix.to_string() }
    }

    fn path(&self, name: &str) -> Path {
        Path::from(format!("{}.wopigate/mutex/{name}", self.prefix))
    }
}

#[async_trait]
impl CommitMutex for ObjectMutex {
    async fn acquire(&self, name: &str, wait: Duration) -> Result<String, StoreError> {
        let path = self.path(name);
        let token = Uuid::new_v4().to_string();
        let deadline = tokio::time::Instant::now() + wait;
        let mut attempt = 0;
        loop {
            let body = format!("{token} {}", Utc::now().timestamp_millis());
            let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
            match self.store.put_opts(&path, PutPayload::from(Bytes::from(body)), opts).await {
                Ok(_) => return Ok(token),
                Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => {
                    // Held: take it over only if its holder is long gone.
                    if let Ok(held) = self.store.get(&path).await {
                        let text = held.bytes().await.unwrap_or_default();
                        let since = String::from_utf8_lossy(&text)
                            .split_whitespace()
                            .nth(1)
                            .and_then(|t| t.parse::<i64>().ok())
                            .unwrap_or(0);
                        if Utc::now().timestamp_millis() - since > MUTEX_TTL.as_millis() as i64 {
                            let _ = self.store.delete(&path).await;
                            continue;
                        }
                    }
                }
                Err(e) => return Err(super::s3::store_error(e)),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(busy(name));
            }
            pause(attempt).await;
            attempt += 1;
        }
    }

    async fn release(&self, name: &str, token: &str) {
        let path = self.path(name);
        // Only our own marker: one taken over after expiry belongs to someone else now.
        if let Ok(held) = self.store.get(&path).await {
            if let Ok(text) = held.bytes().await {
                if String::from_utf8_lossy(&text).split_whitespace().next() == Some(token) {
                    let _ = self.store.delete(&path).await;
                }
            }
        }
    }
}

/// `SET key token NX PX ttl`, released by a compare-and-delete script.
pub struct RedisMutex {
    redis: redis::aio::ConnectionManager,
    release: redis::Script,
}

impl RedisMutex {
    pub fn new(redis: redis::aio::ConnectionManager) -> Self {
        RedisMutex {
            redis,
            release: redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
            ),
        }
    }
}

#[async_trait]
impl CommitMutex for RedisMutex {
    async fn acquire(&self, name: &str, wait: Duration) -> Result<String, StoreError> {
        let key = format!("wopigate:mutex:{name}");
        let token = Uuid::new_v4().to_string();
        let deadline = tokio::time::Instant::now() + wait;
        let mut attempt = 0;
        loop {
            let mut conn = self.redis.clone();
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(MUTEX_TTL.as_millis() as u64)
                .query_async(&mut conn)
                .await
                .map_err(crate::locks::redis::redis_error)?;
            if set.is_some() {
                return Ok(token);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(busy(name));
            }
            pause(attempt).await;
            attempt += 1;
        }
    }

    async fn release(&self, name: &str, token: &str) {
        let mut conn = self.redis.clone();
        let _: Result<i64, _> =
            self.release.key(format!("wopigate:mutex:{name}")).arg(token).invoke_async(&mut conn).await;
    }
}
