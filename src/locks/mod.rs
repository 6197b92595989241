//! WOPI locks: one opaque lock id per file, expiring 30 minutes after the last lock or refresh,
//! compared byte for byte, and never tied to a user.
//!
//! The rules live once, in `transition`; a backend only has to apply a transition atomically.
//! The `store` backend does that with compare-and-set on a small object per file.

pub mod redis;
pub mod store;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::store::StoreError;

/// How long a lock lives without a refresh.
pub const LOCK_TTL: Duration = Duration::minutes(30);
/// Longest lock id accepted (`SupportsExtendedLockLength`).
pub const MAX_LOCK_ID: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOp<'a> {
    Get,
    Lock(&'a str),
    Refresh(&'a str),
    Unlock(&'a str),
    UnlockAndRelock { old: &'a str, new: &'a str },
}

impl LockOp<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            LockOp::Get => "GetLock",
            LockOp::Lock(_) => "Lock",
            LockOp::Refresh(_) => "RefreshLock",
            LockOp::Unlock(_) => "Unlock",
            LockOp::UnlockAndRelock { .. } => "UnlockAndRelock",
        }
    }
}

/// What an operation found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    /// Done; carries the lock now on the file (empty: none).
    Granted(String),
    /// Refused; carries the current lock (empty: the file is not locked).
    Conflict(String),
}

/// What to write back after a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Keep,
    /// Set this lock id with a fresh expiry.
    Set(String),
    Clear,
}

/// The WOPI lock rules, on the current (unexpired) lock id.
pub fn transition(current: Option<&str>, op: LockOp) -> (Change, LockOutcome) {
    let held = current.unwrap_or_default().to_string();
    match (op, current) {
        (LockOp::Get, _) => (Change::Keep, LockOutcome::Granted(held)),
        // Locking a free file, or re-locking with the same id (= refresh).
        (LockOp::Lock(id), None) => (Change::Set(id.into()), LockOutcome::Granted(id.into())),
        (LockOp::Lock(id) | LockOp::Refresh(id), Some(cur)) if cur.as_bytes() == id.as_bytes() => {
            (Change::Set(id.into()), LockOutcome::Granted(id.into()))
        }
        (LockOp::Unlock(id), Some(cur)) if cur.as_bytes() == id.as_bytes() => (Change::Clear, LockOutcome::Granted(String::new())),
        (LockOp::UnlockAndRelock { old, new }, Some(cur)) if cur.as_bytes() == old.as_bytes() => {
            (Change::Set(new.into()), LockOutcome::Granted(new.into()))
        }
        _ => (Change::Keep, LockOutcome::Conflict(held)),
    }
}

#[async_trait]
pub trait LockStore: Send + Sync + 'static {
    /// Applies `op` to the lock of `file` atomically, as of `now`.
    async fn apply(&self, file: &str, op: LockOp<'_>, now: DateTime<Utc>) -> Result<LockOutcome, StoreError>;

    /// The current lock id of `file` (empty: none).
    async fn current(&self, file: &str, now: DateTime<Utc>) -> Result<String, StoreError> {
        match self.apply(file, LockOp::Get, now).await? {
            LockOutcome::Granted(id) | LockOutcome::Conflict(id) => Ok(id),
        }
    }

    /// Forgets the lock of a deleted file.
    async fn remove(&self, file: &str) -> Result<(), StoreError>;

    /// Whether the backend answers (readiness). The store backend is as ready as the store.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        use LockOutcome::*;
        assert_eq!(transition(None, LockOp::Lock("a")).1, Granted("a".into()));
        assert_eq!(transition(Some("a"), LockOp::Lock("a")), (Change::Set("a".into()), Granted("a".into())));
        assert_eq!(transition(Some("a"), LockOp::Lock("b")), (Change::Keep, Conflict("a".into())));
        assert_eq!(transition(None, LockOp::Refresh("a")).1, Conflict(String::new()));
        assert_eq!(transition(None, LockOp::Unlock("a")).1, Conflict(String::new()));
        assert_eq!(transition(Some("a"), LockOp::Unlock("a")), (Change::Clear, Granted(String::new())));
        assert_eq!(transition(Some("a"), LockOp::Unlock("A")).1, Conflict("a".into()));
        assert_eq!(transition(Some("a"), LockOp::UnlockAndRelock { old: "a", new: "b" }).0, Change::Set("b".into()));
        assert_eq!(transition(None, LockOp::UnlockAndRelock { old: "a", new: "b" }).1, Conflict(String::new()));
        assert_eq!(transition(Some("a"), LockOp::Get), (Change::Keep, Granted("a".into())));
    }
}
