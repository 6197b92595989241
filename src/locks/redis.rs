//! WOPI locks in Redis, for many replicas: `lock` is `SET NX PX`, and refresh, unlock and
//! unlock-and-relock are compare-and-set scripts, each atomic on the server. The connection
//! manager reconnects by itself after Redis goes away.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{LockOp, LockOutcome, LockStore, LOCK_TTL};
use crate::store::StoreError;

/// Every script answers `{granted (1|0), current lock ("" when none)}`.
const LOCK: &str = r#"
local cur = redis.call('GET', KEYS[1])
if not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return {1, ARGV[1]} end
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return {1, cur} end
return {0, cur}"#;
const REFRESH: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return {1, cur} end
return {0, cur or ''}"#;
const UNLOCK: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and cur == ARGV[1] then redis.call('DEL', KEYS[1]) return {1, ''} end
return {0, cur or ''}"#;
const RELOCK: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and cur == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return {1, ARGV[2]} end
return {0, cur or ''}"#;

pub fn redis_error(e: redis::RedisError) -> StoreError {
    StoreError::Io(std::io::Error::other(format!("redis: {}", e.category())))
}

pub struct RedisLocks {
    redis: redis::aio::ConnectionManager,
    timeout: Duration,
    lock: redis::Script,
    refresh: redis::Script,
    unlock: redis::Script,
    relock: redis::Script,
}

/// A connection manager that reconnects on its own, with every call bounded by `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1);
    redis::aio::ConnectionManager::new_with_config(client, config).await
}

impl RedisLocks {
    pub fn new(redis: redis::aio::ConnectionManager, timeout: Duration) -> Self {
        RedisLocks {
            redis,
            timeout,
            lock: redis::Script::new(LOCK),
            refresh: redis::Script::new(REFRESH),
            unlock: redis::Script::new(UNLOCK),
            relock: redis::Script::new(RELOCK),
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.redis.clone();
        let ping = redis::cmd("PING");
        let call = ping.query_async::<String>(&mut conn);
        tokio::time::timeout(self.timeout, call).await.map_err(|_| timed_out())?.map_err(redis_error)?;
        Ok(())
    }
}

pub fn timed_out() -> StoreError {
    StoreError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "redis did not answer in time"))
}

fn key(file: &str) -> String {
    format!("wopigate:lock:{file}")
}

#[async_trait]
impl LockStore for RedisLocks {
    /// Expiry is Redis's own (real time): `now` only matters to the store backend.
    async fn apply(&self, file: &str, op: LockOp<'_>, _now: DateTime<Utc>) -> Result<LockOutcome, StoreError> {
        let mut conn = self.redis.clone();
        let ttl = LOCK_TTL.num_milliseconds();
        let k = key(file);
        let call = async {
            let (granted, current): (i64, String) = match op {
                LockOp::Get => {
                    let current: Option<String> = redis::cmd("GET").arg(&k).query_async(&mut conn).await?;
                    (1, current.unwrap_or_default())
                }
                LockOp::Lock(id) => self.lock.key(&k).arg(id).arg(ttl).invoke_async(&mut conn).await?,
                LockOp::Refresh(id) => self.refresh.key(&k).arg(id).arg(ttl).invoke_async(&mut conn).await?,
                LockOp::Unlock(id) => self.unlock.key(&k).arg(id).invoke_async(&mut conn).await?,
                LockOp::UnlockAndRelock { old, new } => self.relock.key(&k).arg(old).arg(new).arg(ttl).invoke_async(&mut conn).await?,
            };
            Ok::<_, redis::RedisError>(if granted == 1 { LockOutcome::Granted(current) } else { LockOutcome::Conflict(current) })
        };
        tokio::time::timeout(self.timeout, call).await.map_err(|_| timed_out())?.map_err(redis_error)
    }

    async fn remove(&self, file: &str) -> Result<(), StoreError> {
        let mut conn = self.redis.clone();
        let mut del = redis::cmd("DEL");
        del.arg(key(file));
        let call = del.query_async::<i64>(&mut conn);
        tokio::time::timeout(self.timeout, call).await.map_err(|_| timed_out())?.map_err(redis_error)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        RedisLocks::ping(self).await
    }
}
