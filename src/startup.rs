//! Building and running the app: what `main` and the tests share.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::attempts::{AttemptLimiter, MemoryAttempts, RedisAttempts};
use crate::auth::CallerVerifier;
use crate::clock::{Clock, SystemClock};
use crate::locks::store::StoreLocks;
use crate::locks::LockStore;
use crate::config::{Config, ConfigError, LockConfig, StoreConfig};
use crate::locks::redis::{self, RedisLocks};
use crate::store::mutex::{CommitMutex, ObjectMutex, RedisMutex};
use crate::store::s3::{self, S3Store};
use crate::discovery::Viewers;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::passwords::PasswordChecker;
use crate::http::{self, RequestSpan};
use crate::state::AppState;
use crate::store::local::LocalStore;
use crate::store::Store;
use crate::token::{dev_key, TokenKeys};
use crate::webhook::Webhook;

/// Opens the configured store and lock backends (the tests run their contract suites on what
/// this returns).
pub async fn open_backends(config: &Config) -> Result<(Arc<dyn Store>, Arc<dyn LockStore>), StartError> {
    let backends = open_all_backends(config).await?;
    Ok((backends.store, backends.locks))
}

/// Everything the app keeps outside its own process (or in it, on one replica).
pub struct Backends {
    pub store: Arc<dyn Store>,
    pub locks: Arc<dyn LockStore>,
    /// Share-password attempt counters: in Redis with the locks, else in memory.
    pub attempts: Arc<dyn AttemptLimiter>,
}

/// The store, the locks and the attempt counters, sharing one Redis connection when there is one.
/// The data directory is touched only by the local store (and a development key): on S3 with a
/// configured key the container's root file system can be read-only.
pub async fn open_all_backends(config: &Config) -> Result<Backends, StartError> {
    let timeout = Duration::from_secs(config.backend_timeout_secs);
    let redis = match &config.locks {
        LockConfig::Redis { url } => Some(redis::connect(url.expose(), timeout).await.map_err(|e| {
            ConfigError::new("WOPIGATE_REDIS_URL", format!("cannot connect to Redis ({})", e.category()))
        })?),
        LockConfig::Store => None,
    };
    let store: Arc<dyn Store> = match &config.store {
        StoreConfig::Local => Arc::new(LocalStore::open(&config.data_dir, config.keep_versions).map_err(|e| data_dir_error(config, e))?),
        StoreConfig::S3(s3) => {
            let client = s3::client(s3, timeout)
                .map_err(|e| ConfigError::new("WOPIGATE_S3_ENDPOINT", format!("cannot configure the S3 client: {e}")))?;
            let mutex: Arc<dyn CommitMutex> = match &redis {
                Some(conn) => Arc::new(RedisMutex::new(conn.clone())),
                None => {
                    let honoured = s3::honours_conditional_create(client.as_ref(), &s3.prefix).await.map_err(|e| {
                        ConfigError::new("WOPIGATE_S3_ENDPOINT", format!("cannot write to bucket '{}': {e}", s3.bucket))
                    })?;
                    if !honoured {
                        return Err(ConfigError::new(
                            "WOPIGATE_LOCKS",
                            "the S3 server does not honour conditional writes (If-None-Match), so locks and commits \
                             cannot be made safe in the store: set WOPIGATE_LOCKS=redis",
                        )
                        .into());
                    }
                    Arc::new(ObjectMutex::new(client.clone(), &s3.prefix))
                }
            };
            Arc::new(S3Store::new(client, s3, mutex, config.keep_versions, timeout))
        }
    };
    let limit = config.share_passwords.attempts_per_minute;
    let attempts: Arc<dyn AttemptLimiter> = match &redis {
        Some(conn) => Arc::new(RedisAttempts::new(conn.clone(), limit, timeout)),
        None => Arc::new(MemoryAttempts::new(limit, MemoryAttempts::MAX_KEYS)),
    };
    let locks: Arc<dyn LockStore> = match redis {
        Some(conn) => Arc::new(RedisLocks::new(conn, timeout)),
        None => Arc::new(StoreLocks::new(store.clone())),
    };
    Ok(Backends { store, locks, attempts })
}

/// One line saying what this process is and talks to, then a warning for each setting that
/// leaves it unable to do what people will try first.
fn log_start(config: &Config, port: u16) {
    use crate::config::CallerKey;
    let store = match &config.store {
        StoreConfig::Local => format!("local directory {}", config.data_dir.display()),
        StoreConfig::S3(s3) => format!("S3 bucket '{}' at {}", s3.bucket, crate::discovery::shown_source(&s3.endpoint)),
    };
    let locks = match &config.locks {
        LockConfig::Store => "in the store",
        LockConfig::Redis { .. } => "Redis",
    };
    let viewers: Vec<String> =
        config.viewers.iter().map(|v| format!("{} ({})", v.name, crate::discovery::shown_source(&v.discovery))).collect();
    let caller_key = match &config.caller_jwt.key {
        Some(CallerKey::Hs256(_)) => "HS256 secret",
        Some(CallerKey::PublicPem(_)) => "public key (PEM)",
        None => "none",
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        %store,
        locks,
        viewers = %viewers.join(", "),
        public_url = %config.public_url,
        caller_key,
        port,
        "wopigate started"
    );
    if config.viewers.is_empty() {
        tracing::warn!("no viewer is configured (WOPIGATE_VIEWERS): no document can be opened");
    }
    if config.caller_jwt.key.is_none() {
        tracing::warn!(
            "no caller JWT key is configured (WOPIGATE_CALLER_JWT_SECRET or WOPIGATE_CALLER_JWT_PUBLIC_KEY): \
             only anonymous visitors of shares can open documents"
        );
    }
    for unknown in &config.unknown_variables {
        tracing::warn!("{} is not a wopigate setting{}; it is ignored", unknown.name, unknown.hint());
    }
}

fn data_dir_error(config: &Config, e: std::io::Error) -> ConfigError {
    ConfigError::new("WOPIGATE_DATA_DIR", format!("cannot use {}: {e}", config.data_dir.display()))
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot start: {0}")]
    Io(#[from] std::io::Error),
}

/// Everything a request needs, built from the configuration (the server and the `open` command
/// share it): keys, callers, viewers, backends, policy.
pub async fn app_state(config: Config, clock: Arc<dyn Clock>) -> Result<AppState, StartError> {
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
            let key = dev_key(&config.data_dir).map_err(|e| data_dir_error(&config, e))?;
            let root = std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
            tracing::warn!(
                "WOPIGATE_TOKEN_SECRET is not set: signing access tokens with a generated development key \
                 kept in {}/.wopigate/dev-token-secret. Set WOPIGATE_TOKEN_SECRET before exposing this service.",
                root.display()
            );
            key
        }
    };
    let tokens = TokenKeys::new(&config.token, &current, config.clock_skew_secs)?;
    let callers = CallerVerifier::new(&config.caller_jwt, config.clock_skew_secs)?;
    let metrics = Arc::new(Metrics::new());
    let viewers = Arc::new(Viewers::new(&config, metrics.clone()));
    let Backends { store, locks, attempts } = open_all_backends(&config).await?;
    let passwords = PasswordChecker::new(config.share_passwords.concurrent_checks, attempts, metrics.clone());

    let policy = Policy::new(store.clone(), Duration::from_secs(config.share_cache_secs));
    let activity_webhook = config.activity_webhook.as_ref().map(|w| Webhook::new(w, metrics.clone()));
    Ok(AppState { config, store, policy, locks, clock, tokens, callers, viewers, metrics, passwords, activity_webhook })
}

pub struct Application {
    port: u16,
    server: Server,
    /// `/metrics` on `WOPIGATE_METRICS_BIND`: its port and server.
    metrics: Option<(u16, Server)>,
}

impl Application {
    /// Validates everything that can be checked before serving, binds the listener, and
    /// returns the app ready to run. Port 0 in `WOPIGATE_BIND` picks a free port (tests).
    pub async fn build(config: Config) -> Result<Application, StartError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// As `build`, with another clock (tests move time to expire locks).
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Application, StartError> {
        let listener = TcpListener::bind(config.bind)
            .map_err(|e| ConfigError::new("WOPIGATE_BIND", format!("cannot listen on {}: {e}", config.bind)))?;
        let port = listener.local_addr()?.port();
        let metrics_listener = match config.metrics_bind {
            Some(addr) => Some(TcpListener::bind(addr).map_err(|e| {
                ConfigError::new("WOPIGATE_METRICS_BIND", format!("cannot listen on {addr}: {e}"))
            })?),
            None => None,
        };
        let state = web::Data::new(app_state(config, clock).await?);
        // The server's own background work (not the `open` command's, which shares the state):
        // discovery kept fresh, and what crashed uploads left behind swept now and hourly
        // (idempotent across replicas); activity webhook deliveries sent.
        state.viewers.spawn_refresher();
        if let Some(webhook) = &state.activity_webhook {
            webhook.spawn_sender();
        }
        let stale = Duration::from_secs(state.config.stale_upload_secs);
        tokio::spawn(crate::store::sweep_stale_uploads_forever(state.store.clone(), stale));
        // Once everything it names has opened.
        log_start(&state.config, port);
        let grace = state.config.shutdown_grace_secs;
        let metrics = match metrics_listener {
            Some(listener) => Some((listener.local_addr()?.port(), metrics_server(listener, state.clone())?)),
            None => None,
        };
        let metrics_on_main = metrics.is_none();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(crate::metrics::track))
                .wrap(TracingLogger::<RequestSpan>::new())
                .app_data(state.clone())
                .configure(|cfg| http::routes(cfg, metrics_on_main))
        })
        // Headers and a small body leave in separate writes: with Nagle's algorithm on, the body
        // waits for the client's delayed ACK of the headers (40 ms on Linux) on every small file.
        .on_connect(|connection, _| {
            if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
                let _ = tcp.set_nodelay(true);
            }
        })
        // SIGTERM/SIGINT: stop accepting, let in-flight requests finish within the grace period.
        .shutdown_timeout(grace)
        .listen(listener)?
        .run();
        Ok(Application { port, server, metrics })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of `WOPIGATE_METRICS_BIND`, when `/metrics` has its own listener.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(port, _)| *port)
    }

    /// Runs until SIGTERM/SIGINT stops the main server (after its grace period); the metrics
    /// listener stops with it, so Prometheus can scrape a draining replica to the end.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Some((_, metrics)) = self.metrics else {
            return self.server.await;
        };
        let handle = metrics.handle();
        let main = async {
            let result = self.server.await;
            handle.stop(true).await;
            result
        };
        let (main, metrics) = futures_util::join!(main, metrics);
        main.and(metrics)
    }
}

/// `/metrics` alone (everything else 404), on its own listener: not behind the Service the
/// Ingress uses. Signals are left to the main server, which stops this one when it is done.
fn metrics_server(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<Server> {
    Ok(HttpServer::new(move || App::new().app_data(state.clone()).configure(http::metrics_route))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run())
}
