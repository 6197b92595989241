//! Building and running the app: what `main` and the tests share.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::auth::CallerVerifier;
use crate::clock::{Clock, SystemClock};
use crate::locks::store::StoreLocks;
use crate::locks::LockStore;
use crate::config::{Config, ConfigError};
use crate::discovery::Viewers;
use crate::http::{self, RequestSpan};
use crate::state::AppState;
use crate::store::local::LocalStore;
use crate::store::Store;
use crate::token::{dev_key, TokenKeys};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot start: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Validates everything that can be checked before serving, binds the listener, and
    /// returns the app ready to run. Port 0 in `WOPIGATE_BIND` picks a free port (tests).
    pub async fn build(config: Config) -> Result<Application, StartError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// As `build`, with another clock (tests move time to expire locks).
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Application, StartError> {
        let store = LocalStore::open(&config.data_dir, config.keep_versions).map_err(|e| {
            ConfigError::new("WOPIGATE_DATA_DIR", format!("cannot use {}: {e}", config.data_dir.display()))
        })?;
        let current = match &config.token.current {
            Some(key) => key.clone(),
            None if config.production => {
                return Err(ConfigError::new(
                    "WOPIGATE_TOKEN_SECRET",
                    "is required when WOPIGATE_ENV=production (at least 32 random bytes)",
                )
                .into())
            }
            None => {
                let key = dev_key(store.root())?;
                tracing::warn!(
                    "WOPIGATE_TOKEN_SECRET is not set: signing access tokens with a generated development key \
                     kept in {}/.wopigate/dev-token-secret. Set WOPIGATE_TOKEN_SECRET before exposing this service.",
                    store.root().display()
                );
                key
            }
        };
        let tokens = TokenKeys::new(&config.token, &current, config.clock_skew_secs)?;
        let callers = CallerVerifier::new(&config.caller_jwt, config.clock_skew_secs)?;
        let viewers = Arc::new(Viewers::new(&config));
        viewers.spawn_refresher();
        let store: Arc<dyn Store> = Arc::new(store);
        let locks: Arc<dyn LockStore> = Arc::new(StoreLocks::new(store.clone()));

        let listener = TcpListener::bind(config.bind)
            .map_err(|e| ConfigError::new("WOPIGATE_BIND", format!("cannot listen on {}: {e}", config.bind)))?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(AppState { config, store, locks, clock, tokens, callers, viewers });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::<RequestSpan>::new())
                .app_data(state.clone())
                .configure(http::routes)
        })
        .listen(listener)?
        .run();
        Ok(Application { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
