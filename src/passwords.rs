//! Share-password checks that neither stall the service nor let a password be guessed fast.
//!
//! Argon2 costs tens of milliseconds of CPU and 19 MiB of memory by design. It runs on tokio's
//! blocking pool, never on the async workers, and at most `WOPIGATE_SHARE_PASSWORD_CHECKS` at
//! once. Each guess is first counted per share and per client address (`crate::attempts`);
//! past the limit the answer is "too many attempts" without running Argon2 at all.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use tokio::sync::Semaphore;

use crate::attempts::{AttemptLimiter, Verdict};
use crate::metrics::Metrics;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("too many wrong passwords for this share or from this address; try again in {} s", retry_after_secs(*.0))]
    TooManyAttempts(Duration),
    #[error("share manifest '{0}' is invalid: password_hash is not an Argon2 PHC string")]
    BadHash(String),
    #[error("attempt counters: {0}")]
    Counters(StoreError),
    #[error("the password check did not finish")]
    Aborted,
}

/// Whole seconds to wait, rounded up, at least 1 (`Retry-After`).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

/// Checks share passwords for the whole app (held in `AppState`).
pub struct PasswordChecker {
    permits: Arc<Semaphore>,
    limiter: Arc<dyn AttemptLimiter>,
    metrics: Arc<Metrics>,
}

impl PasswordChecker {
    pub fn new(concurrent_checks: usize, limiter: Arc<dyn AttemptLimiter>, metrics: Arc<Metrics>) -> Self {
        PasswordChecker { permits: Arc::new(Semaphore::new(concurrent_checks.max(1))), limiter, metrics }
    }

    /// Checks on behalf of `client`; `None` (address unknown) counts per share only.
    pub fn for_client(&self, client: Option<IpAddr>) -> PasswordCheck<'_> {
        PasswordCheck { checker: self, client }
    }

    /// Argon2 on the blocking pool, holding a permit until it is done: a request dropped
    /// meanwhile (client gone) does not free the permit early, so memory stays bounded.
    async fn verify(&self, hash: &str, given: &str) -> Result<bool, PasswordError> {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| PasswordError::Aborted)?;
        let (hash, given) = (hash.to_string(), given.to_string());
        let right = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            PasswordHash::new(&hash).is_ok_and(|parsed| Argon2::default().verify_password(given.as_bytes(), &parsed).is_ok())
        })
        .await
        .map_err(|_| PasswordError::Aborted)?;
        self.metrics.password_checked(right);
        Ok(right)
    }
}

/// One request's password checks: the checker and who is asking.
pub struct PasswordCheck<'a> {
    checker: &'a PasswordChecker,
    client: Option<IpAddr>,
}

impl PasswordCheck<'_> {
    /// Whether `given` is the password of `share`, whose manifest holds `hash`. No password
    /// given is no guess: nothing is counted or hashed.
    pub async fn matches(&self, share: &str, hash: &str, given: Option<&str>) -> Result<bool, PasswordError> {
        if PasswordHash::new(hash).is_err() {
            return Err(PasswordError::BadHash(share.to_string()));
        }
        let Some(given) = given else { return Ok(false) };
        let mut keys = vec![format!("share:{share}")];
        keys.extend(self.client.map(|ip| format!("client:{}", client_key(ip))));
        let limiter = &self.checker.limiter;
        if let Verdict::Refused { retry_after } = limiter.take(&keys).await.map_err(PasswordError::Counters)? {
            self.checker.metrics.password_refused();
            return Err(PasswordError::TooManyAttempts(retry_after));
        }
        let right = self.checker.verify(hash, given).await?;
        if right {
            if let Err(e) = limiter.give_back(&keys).await {
                // The password was right: let the visitor in; the count expires with its window.
                tracing::warn!(error = %e, "could not give back a share password attempt");
            }
        }
        Ok(right)
    }
}

/// Whom a counter is for: an IPv4 address, or an IPv6 /64 (one host usually holds a whole
/// /64, so counting single IPv6 addresses would be no limit at all).
pub fn client_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempts::MemoryAttempts;

    fn checker(limit: u32) -> PasswordChecker {
        PasswordChecker::new(2, Arc::new(MemoryAttempts::new(limit, 100)), Arc::new(Metrics::new()))
    }

    #[tokio::test]
    async fn right_wrong_missing_and_bad_hashes() {
        let checker = checker(10);
        let check = checker.for_client(None);
        let hash = crate::policy::hash_password("s3cret");
        assert!(check.matches("x", &hash, Some("s3cret")).await.unwrap());
        assert!(!check.matches("x", &hash, Some("nope")).await.unwrap());
        assert!(!check.matches("x", &hash, None).await.unwrap());
        assert!(matches!(check.matches("x", "plain", Some("s3cret")).await, Err(PasswordError::BadHash(s)) if s == "x"));
    }

    #[tokio::test]
    async fn past_the_limit_even_the_right_password_waits() {
        let checker = checker(2);
        let hash = crate::policy::hash_password("s3cret");
        let check = checker.for_client("192.0.2.7".parse().ok());
        assert!(check.matches("x", &hash, Some("s3cret")).await.unwrap(), "successes are given back");
        assert!(!check.matches("x", &hash, Some("a")).await.unwrap());
        assert!(!check.matches("x", &hash, Some("b")).await.unwrap());
        let refused = check.matches("x", &hash, Some("s3cret")).await;
        assert!(matches!(refused, Err(PasswordError::TooManyAttempts(wait)) if wait <= crate::attempts::WINDOW));
        // The same address on another share: refused by the address counter.
        assert!(matches!(check.matches("y", &hash, Some("c")).await, Err(PasswordError::TooManyAttempts(_))));
        // Another address on another share: counted anew.
        assert!(!checker.for_client("192.0.2.8".parse().ok()).matches("y", &hash, Some("c")).await.unwrap());
    }

    #[test]
    fn clients_are_ipv4_addresses_or_ipv6_slash_64s() {
        let key = |s: &str| client_key(s.parse().unwrap());
        assert_eq!(key("192.0.2.1"), "192.0.2.1");
        assert_eq!(key("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2::9"), key("2001:db8:1:2:ffff::1"));
        assert_ne!(key("2001:db8:1:2::9"), key("2001:db8:1:3::9"));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(59_001)), 60);
        assert_eq!(retry_after_secs(Duration::from_secs(60)), 60);
    }
}
