//! Locks kept in the store itself, one small object per file (`locks/<file id>.json`), changed
//! only by compare-and-set: atomic across threads, processes and replicas sharing the store.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{transition, Change, LockOp, LockOutcome, LockStore, LOCK_TTL};
use crate::store::{Store, StoreError};

#[derive(Serialize, Deserialize)]
struct LockRecord {
    id: String,
    expires: DateTime<Utc>,
}

pub struct StoreLocks {
    store: Arc<dyn Store>,
}

impl StoreLocks {
    pub fn new(store: Arc<dyn Store>) -> Self {
        StoreLocks { store }
    }
}

fn object(file: &str) -> String {
    format!("locks/{file}.json")
}

#[async_trait]
impl LockStore for StoreLocks {
    async fn apply(&self, file: &str, op: LockOp<'_>, now: DateTime<Utc>) -> Result<LockOutcome, StoreError> {
        let name = object(file);
        // Compare-and-set loop: a concurrent change makes the swap fail and we re-read.
        for _ in 0..1000 {
            let raw = self.store.get_object(&name).await?;
            let current = raw
                .as_deref()
                .and_then(|r| serde_json::from_slice::<LockRecord>(r).ok())
                .filter(|r| r.expires > now)
                .map(|r| r.id);
            let (change, outcome) = transition(current.as_deref(), op);
            let new = match change {
                Change::Keep => return Ok(outcome),
                Change::Set(id) => Some(
                    serde_json::to_vec(&LockRecord { id, expires: now + LOCK_TTL })
                        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?,
                ),
                Change::Clear => None,
            };
            if self.store.swap_object(&name, raw.as_deref(), new.as_deref()).await? {
                return Ok(outcome);
            }
            tokio::task::yield_now().await;
        }
        Err(StoreError::Io(std::io::Error::other("lock contention did not settle")))
    }

    async fn remove(&self, file: &str) -> Result<(), StoreError> {
        self.store.delete_object(&object(file)).await
    }
}
