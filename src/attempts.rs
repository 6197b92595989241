//! Counters of share-password attempts, so a password cannot be guessed faster than the limit.
//!
//! Fixed windows: the first attempt counted on a key opens a one-minute window, at most `limit`
//! attempts are counted in it, and the window closes a minute after it opened. An attempt is
//! counted before its password is checked (so concurrent guesses cannot overshoot the limit) and
//! given back when the password was right, so only failures use up the limit. The backend is
//! picked once at start-up: process memory, or Redis when `WOPIGATE_LOCKS=redis` (one count for
//! every replica).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::locks::redis::{redis_error, timed_out};
use crate::store::StoreError;

/// The window of every counter (the limit is per minute).
pub const WINDOW: Duration = Duration::from_secs(60);

/// What `take` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Counted,
    /// A key is at its limit: nothing was counted; its window closes after this long.
    Refused { retry_after: Duration },
}

#[async_trait]
pub trait AttemptLimiter: Send + Sync {
    /// Counts one attempt on every key, unless one of them is already at the limit.
    async fn take(&self, keys: &[String]) -> Result<Verdict, StoreError>;
    /// Gives back an attempt that `take` counted (the password was right).
    async fn give_back(&self, keys: &[String]) -> Result<(), StoreError>;
}

struct Window {
    count: u32,
    ends: Instant,
}

/// Counters in process memory (one replica). At most `max_keys` windows are kept: closed ones
/// are dropped first, then those closest to closing.
pub struct MemoryAttempts {
    limit: u32,
    max_keys: usize,
    windows: Mutex<HashMap<String, Window>>,
}

impl MemoryAttempts {
    /// About 100 bytes a window: 100 000 windows stay around 10 MB.
    pub const MAX_KEYS: usize = 100_000;

    pub fn new(limit: u32, max_keys: usize) -> Self {
        MemoryAttempts { limit, max_keys: max_keys.max(1), windows: Mutex::new(HashMap::new()) }
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        // A panic elsewhere cannot leave a counter half-written: keep using the map.
        self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn take_at(&self, keys: &[String], now: Instant) -> Verdict {
        let mut windows = self.windows();
        let refused = keys
            .iter()
            .filter_map(|k| windows.get(k))
            .filter(|w| w.ends > now && w.count >= self.limit)
            .map(|w| w.ends - now)
            .max();
        if let Some(retry_after) = refused {
            return Verdict::Refused { retry_after };
        }
        if windows.len() + keys.len() > self.max_keys {
            make_room(&mut windows, self.max_keys.saturating_sub(keys.len()), now);
        }
        for key in keys {
            let window = windows.entry(key.clone()).or_insert(Window { count: 0, ends: now });
            if window.ends <= now {
                *window = Window { count: 0, ends: now + WINDOW };
            }
            window.count += 1;
        }
        Verdict::Counted
    }

    pub fn give_back_at(&self, keys: &[String], now: Instant) {
        let mut windows = self.windows();
        for key in keys {
            if let Some(window) = windows.get_mut(key).filter(|w| w.ends > now) {
                window.count = window.count.saturating_sub(1);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.windows().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops closed windows; if more than `keep` remain, drops those closing soonest, down to 90 %
/// of `keep` (so a flood of new keys sorts the map once per many inserts, not on each one).
fn make_room(windows: &mut HashMap<String, Window>, keep: usize, now: Instant) {
    windows.retain(|_, w| w.ends > now);
    if windows.len() <= keep {
        return;
    }
    let target = keep - keep / 10;
    let mut ends: Vec<Instant> = windows.values().map(|w| w.ends).collect();
    let cut = ends.len() - target;
    let (_, threshold, _) = ends.select_nth_unstable(cut.saturating_sub(1));
    let threshold = *threshold;
    let mut dropped = 0;
    windows.retain(|_, w| {
        if dropped < cut && w.ends <= threshold {
            dropped += 1;
            false
        } else {
            true
        }
    });
}

#[async_trait]
impl AttemptLimiter for MemoryAttempts {
    async fn take(&self, keys: &[String]) -> Result<Verdict, StoreError> {
        Ok(self.take_at(keys, Instant::now()))
    }

    async fn give_back(&self, keys: &[String]) -> Result<(), StoreError> {
        self.give_back_at(keys, Instant::now());
        Ok(())
    }
}

/// `KEYS`: the counters; `ARGV`: limit, window (ms). Answers 0 (counted) or the milliseconds
/// until the fullest counter's window closes (refused, nothing counted).
const TAKE: &str = r#"
local wait = 0
for _, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[1]) then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then redis.call('PEXPIRE', key, ARGV[2]) ttl = tonumber(ARGV[2]) end
    if ttl > wait then wait = ttl end
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ARGV[2]) end
end
return 0"#;
const GIVE_BACK: &str = r#"
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0"#;

/// Counters in Redis, shared by every replica; each call is one atomic script, and the
/// windows expire on the server (`PEXPIRE`).
pub struct RedisAttempts {
    redis: redis::aio::ConnectionManager,
    limit: u32,
    timeout: Duration,
    take: redis::Script,
    give_back: redis::Script,
}

impl RedisAttempts {
    pub fn new(redis: redis::aio::ConnectionManager, limit: u32, timeout: Duration) -> Self {
        RedisAttempts { redis, limit, timeout, take: redis::Script::new(TAKE), give_back: redis::Script::new(GIVE_BACK) }
    }
}

fn redis_key(key: &str) -> String {
    format!("wopigate:pw-attempts:{key}")
}

#[async_trait]
impl AttemptLimiter for RedisAttempts {
    async fn take(&self, keys: &[String]) -> Result<Verdict, StoreError> {
        let mut conn = self.redis.clone();
        let mut invocation = self.take.prepare_invoke();
        for key in keys {
            invocation.key(redis_key(key));
        }
        invocation.arg(self.limit).arg(WINDOW.as_millis() as u64);
        let call = invocation.invoke_async::<u64>(&mut conn);
        let wait = tokio::time::timeout(self.timeout, call).await.map_err(|_| timed_out())?.map_err(redis_error)?;
        Ok(if wait == 0 { Verdict::Counted } else { Verdict::Refused { retry_after: Duration::from_millis(wait) } })
    }

    async fn give_back(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut conn = self.redis.clone();
        let mut invocation = self.give_back.prepare_invoke();
        for key in keys {
            invocation.key(redis_key(key));
        }
        let call = invocation.invoke_async::<u64>(&mut conn);
        tokio::time::timeout(self.timeout, call).await.map_err(|_| timed_out())?.map_err(redis_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn counts_up_to_the_limit_then_refuses_until_the_window_closes() {
        let limiter = MemoryAttempts::new(3, 100);
        let start = Instant::now();
        let both = keys(&["share:a", "client:1"]);
        for _ in 0..3 {
            assert_eq!(limiter.take_at(&both, start), Verdict::Counted);
        }
        let later = start + Duration::from_secs(20);
        let refused = Verdict::Refused { retry_after: Duration::from_secs(40) };
        assert_eq!(limiter.take_at(&both, later), refused);
        // Either key at its limit refuses; a refusal counts nothing on the other.
        assert_eq!(limiter.take_at(&keys(&["share:b", "client:1"]), later), refused);
        assert_eq!(limiter.take_at(&keys(&["share:b", "client:2"]), later), Verdict::Counted);
        assert_eq!(limiter.take_at(&both, start + WINDOW), Verdict::Counted, "a new window");
    }

    #[test]
    fn given_back_attempts_do_not_count() {
        let limiter = MemoryAttempts::new(2, 100);
        let now = Instant::now();
        let k = keys(&["share:a"]);
        for _ in 0..5 {
            assert_eq!(limiter.take_at(&k, now), Verdict::Counted);
            limiter.give_back_at(&k, now);
        }
        assert_eq!(limiter.take_at(&k, now), Verdict::Counted);
        assert_eq!(limiter.take_at(&k, now), Verdict::Counted);
        assert!(matches!(limiter.take_at(&k, now), Verdict::Refused { .. }));
        // Giving back more than was taken does not go below zero.
        for _ in 0..5 {
            limiter.give_back_at(&k, now);
        }
        assert_eq!(limiter.take_at(&k, now), Verdict::Counted);
        assert_eq!(limiter.take_at(&k, now), Verdict::Counted);
        assert!(matches!(limiter.take_at(&k, now), Verdict::Refused { .. }));
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = MemoryAttempts::new(1, 1000);
        let start = Instant::now();
        for i in 0..10_000u32 {
            let at = start + Duration::from_millis(u64::from(i));
            assert_eq!(limiter.take_at(&keys(&[&format!("client:{i}")]), at), Verdict::Counted);
            assert!(limiter.len() <= 1000);
        }
        // The windows closing soonest were dropped, the newest kept.
        let at = start + Duration::from_millis(10_000);
        assert_eq!(limiter.take_at(&keys(&["client:0"]), at), Verdict::Counted);
        assert!(matches!(limiter.take_at(&keys(&["client:9999"]), at), Verdict::Refused { .. }));
    }
}
