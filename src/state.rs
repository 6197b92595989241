//! What every request reads: built once at start-up by `startup`, shared by all workers.

use std::sync::Arc;

use crate::auth::CallerVerifier;
use crate::clock::Clock;
use crate::config::Config;
use crate::discovery::Viewers;
use crate::locks::LockStore;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::passwords::PasswordChecker;
use crate::store::Store;
use crate::token::TokenKeys;
use crate::webhook::Webhook;

/// Shared state of the running app: built once at start-up, read by every request.
pub struct AppState {
    pub config: Config,
    pub store: Arc<dyn Store>,
    /// Who may do what: every grant and every minted token goes through it.
    pub policy: Policy,
    pub locks: Arc<dyn LockStore>,
    pub clock: Arc<dyn Clock>,
    pub tokens: TokenKeys,
    pub callers: CallerVerifier,
    pub viewers: Arc<Viewers>,
    pub metrics: Arc<Metrics>,
    pub passwords: PasswordChecker,
    /// `WOPIGATE_ACTIVITY_WEBHOOK`: where AddActivities batches are queued for delivery.
    pub activity_webhook: Option<Webhook>,
}

