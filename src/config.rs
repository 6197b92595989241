//! All settings, read once from `WOPIGATE_*` environment variables.
//!
//! `RawConfig` is what envy reads (strings and numbers, defaults in one place); `Config::from_env`
//! validates it into typed values. Every failure names the variable, so a bad deployment stops
//! at start-up with one line that says what to fix.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

/// A setting was missing or malformed. The message starts with the variable's name.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: &str, message: impl Into<String>) -> Self {
        ConfigError { var: var.to_string(), message: message.into() }
    }
}

/// A secret value: never printed by `Debug`, so a logged config cannot leak it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Only ever shown as a placeholder (`--help` lists defaults from `RawConfig`).
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

fn default_bind() -> String {
    "127.0.0.1:8080".into()
}
fn default_public_url() -> String {
    "http://127.0.0.1:8080".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_env() -> String {
    "development".into()
}
fn default_token_alg() -> String {
    "HS256".into()
}
fn default_token_ttl() -> u64 {
    10 * 3600
}
fn default_audience() -> String {
    "wopigate".into()
}
fn default_leeway() -> u64 {
    60
}
fn default_viewers() -> String {
    "[]".into()
}
fn default_edit_max_size() -> u64 {
    100 * 1024 * 1024
}
fn default_discovery_refresh() -> u64 {
    12 * 3600
}
fn default_discovery_timeout() -> u64 {
    10
}
fn default_discovery_retry() -> u64 {
    2
}
fn default_lang() -> String {
    "en-US".into()
}
fn default_keep_versions() -> usize {
    10
}
fn default_autosave_window() -> u64 {
    600
}
fn default_max_upload() -> u64 {
    1024 * 1024 * 1024
}
fn default_backend() -> String {
    "local".into()
}
fn default_locks() -> String {
    "store".into()
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_part_size() -> usize {
    8 * 1024 * 1024
}
fn default_backend_timeout() -> u64 {
    5
}
fn default_shutdown_grace() -> u64 {
    30
}
fn default_stale_upload() -> u64 {
    3600
}
fn default_log_format() -> String {
    "auto".into()
}
fn default_share_cache() -> u64 {
    5
}
fn default_share_password_attempts() -> u32 {
    10
}
fn default_file_url_ttl() -> u64 {
    300
}
fn default_share_url_template() -> String {
    "cloudreve://{share_id}@share/".into()
}

/// The variables exactly as envy reads them (names are `WOPIGATE_` + upper-cased field). It is
/// also what `--help` lists and what unknown variables are checked against (`variables`).
#[derive(Deserialize, Serialize)]
struct RawConfig {
    #[serde(default = "default_bind")]
    bind: String,
    /// Unset or empty: `/metrics` is served on `bind` with everything else.
    #[serde(default)]
    metrics_bind: Option<String>,
    #[serde(default = "default_public_url")]
    public_url: String,
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default = "default_env")]
    env: String,
    token_secret: Option<Secret>,
    token_kid: Option<String>,
    #[serde(default = "default_token_alg")]
    token_alg: String,
    token_private_key: Option<Secret>,
    token_public_key: Option<String>,
    token_old_keys: Option<Secret>,
    #[serde(default = "default_token_ttl")]
    token_ttl_secs: u64,
    #[serde(default = "default_audience")]
    token_audience: String,
    #[serde(default = "default_leeway")]
    clock_skew_secs: u64,
    caller_jwt_secret: Option<Secret>,
    caller_jwt_public_key: Option<String>,
    caller_jwt_issuer: Option<String>,
    caller_jwt_audience: Option<String>,
    #[serde(default = "default_viewers")]
    viewers: String,
    #[serde(default = "default_edit_max_size")]
    edit_max_size: u64,
    #[serde(default = "default_discovery_refresh")]
    discovery_refresh_secs: u64,
    #[serde(default = "default_discovery_timeout")]
    discovery_timeout_secs: u64,
    #[serde(default = "default_discovery_retry")]
    discovery_retry_secs: u64,
    #[serde(default = "default_lang")]
    lang: String,
    #[serde(default = "default_log_format")]
    log_format: String,
    #[serde(default = "default_keep_versions")]
    keep_versions: usize,
    #[serde(default = "default_autosave_window")]
    autosave_window_secs: u64,
    #[serde(default = "default_max_upload")]
    max_upload_size: u64,
    #[serde(default = "yes")]
    containers: bool,
    bootstrap_authorization_url: Option<String>,
    bootstrap_token_url: Option<String>,
    bootstrap_provider_id: Option<String>,
    host_page_url: Option<String>,
    close_url: Option<String>,
    platform_url: Option<String>,
    versions_url: Option<String>,
    sharing_url: Option<String>,
    #[serde(default = "default_backend")]
    store: String,
    #[serde(default = "default_locks")]
    locks: String,
    s3_endpoint: Option<String>,
    #[serde(default = "default_region")]
    s3_region: String,
    s3_bucket: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<Secret>,
    s3_path_style: Option<bool>,
    s3_prefix: Option<String>,
    #[serde(default = "default_part_size")]
    s3_part_size: usize,
    redis_url: Option<Secret>,
    #[serde(default = "default_backend_timeout")]
    backend_timeout_secs: u64,
    #[serde(default = "default_shutdown_grace")]
    shutdown_grace_secs: u64,
    #[serde(default = "default_share_cache")]
    share_cache_secs: u64,
    #[serde(default = "default_share_password_attempts")]
    share_password_attempts: u32,
    share_password_checks: Option<usize>,
    #[serde(default)]
    trusted_proxies: String,
    #[serde(default = "default_stale_upload")]
    stale_upload_secs: u64,
    #[serde(default = "default_file_url_ttl")]
    file_url_ttl_secs: u64,
    #[serde(default = "default_share_url_template")]
    share_url_template: String,
    /// Where accepted AddActivities batches are POSTed (http(s); may carry credentials).
    activity_webhook: Option<Secret>,
    activity_webhook_secret: Option<Secret>,
}

/// Where files live (`WOPIGATE_STORE`).
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Local,
    S3(S3Config),
}

#[derive(Debug, Clone)]
pub struct S3Config {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub path_style: bool,
    /// Key prefix, empty or ending in `/`.
    pub prefix: String,
    pub part_size: usize,
}

/// Where WOPI locks live (`WOPIGATE_LOCKS`).
#[derive(Debug, Clone)]
pub enum LockConfig {
    Store,
    Redis { url: Secret },
}

/// How wopigate signs its own access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAlgorithm {
    Hs256,
    EdDsa,
}

/// One key of the token key ring. Only the current key needs the signing half.
#[derive(Debug, Clone)]
pub struct TokenKeyConfig {
    pub kid: String,
    pub material: KeyMaterial,
}

#[derive(Debug, Clone)]
pub enum KeyMaterial {
    /// HS256 shared secret (signs and verifies).
    Secret(Secret),
    /// EdDSA key pair, PEM: the private key signs, the public key verifies.
    Ed25519Pair { private: Secret, public: String },
    /// EdDSA public key, PEM (verifies only: an older key of the ring).
    Ed25519Public(String),
}

#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub algorithm: TokenAlgorithm,
    /// `None`: no key configured; start-up generates (development) or refuses (production).
    pub current: Option<TokenKeyConfig>,
    pub previous: Vec<TokenKeyConfig>,
    pub ttl_secs: u64,
    pub audience: String,
}

/// How the platform signs caller JWTs; the algorithm follows from the key, never the token.
#[derive(Debug, Clone)]
pub enum CallerKey {
    Hs256(Secret),
    PublicPem(String),
}

#[derive(Debug, Clone)]
pub struct CallerJwtConfig {
    pub key: Option<CallerKey>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// A WOPI client (Collabora, ONLYOFFICE, Office for the web) the platform may open files in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewerConfig {
    pub id: Uuid,
    pub name: String,
    /// `http(s)://…/hosting/discovery`, `file://…` or a plain file path.
    pub discovery: String,
    /// Lower-case extensions this viewer may open; absent = whatever its discovery lists.
    #[serde(default)]
    pub extensions: Option<Vec<String>>,
    /// Base of WOPISrc for this viewer when it reaches wopigate through another front domain.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Discovery net-zone to use (`external-https`, …); absent = the document's first zone.
    #[serde(default)]
    pub net_zone: Option<String>,
    /// UI language for the action URL; absent = `WOPIGATE_LANG`.
    #[serde(default)]
    pub lang: Option<String>,
    /// Origin of the host page, sent to the client as `PostMessageOrigin`.
    #[serde(default)]
    pub post_message_origin: Option<String>,
    /// Icon shown by the platform; absent = the discovery's favicon.
    #[serde(default)]
    pub icon: Option<String>,
    /// Check `X-WOPI-Proof` when the discovery publishes a proof key (default true).
    #[serde(default = "yes")]
    pub verify_proof: bool,
    /// Sessions use the client's mobile layout (`mobileView`/`mobileEdit`) unless the request's
    /// `X-Wopigate-Device` says otherwise (default false).
    #[serde(default)]
    pub mobile: bool,
}

fn yes() -> bool {
    true
}

/// What `/wopibootstrapper` tells a native client that is not signed in (its
/// `WWW-Authenticate` header): where the platform's OAuth 2.0 sign-in is.
#[derive(Debug, Clone)]
pub struct BootstrapConfig {
    pub authorization_url: String,
    pub token_url: String,
    pub provider_id: Option<String>,
}

impl BootstrapConfig {
    fn from_raw(raw: &RawConfig) -> Result<Option<BootstrapConfig>, ConfigError> {
        let url = |name: &'static str, value: &Option<String>| -> Result<Option<String>, ConfigError> {
            let Some(value) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
            match url::Url::parse(value) {
                Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() && !value.contains('"') => Ok(Some(value.to_string())),
                _ => Err(ConfigError::new(name, "must be an absolute http(s) URL")),
            }
        };
        let authorization = url("WOPIGATE_BOOTSTRAP_AUTHORIZATION_URL", &raw.bootstrap_authorization_url)?;
        let token = url("WOPIGATE_BOOTSTRAP_TOKEN_URL", &raw.bootstrap_token_url)?;
        let provider_id = raw.bootstrap_provider_id.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        if provider_id.as_deref().is_some_and(|p| !p.bytes().all(|b| b.is_ascii_alphanumeric())) {
            return Err(ConfigError::new("WOPIGATE_BOOTSTRAP_PROVIDER_ID", "may hold only letters and digits (as registered with Microsoft)"));
        }
        match (authorization, token) {
            (Some(authorization_url), Some(token_url)) => Ok(Some(BootstrapConfig { authorization_url, token_url, provider_id })),
            (None, None) if provider_id.is_none() => Ok(None),
            (None, _) => Err(ConfigError::new("WOPIGATE_BOOTSTRAP_AUTHORIZATION_URL", "is needed for the bootstrapper (with WOPIGATE_BOOTSTRAP_TOKEN_URL)")),
            (_, None) => Err(ConfigError::new("WOPIGATE_BOOTSTRAP_TOKEN_URL", "is needed for the bootstrapper (with WOPIGATE_BOOTSTRAP_AUTHORIZATION_URL)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    /// `/metrics` alone on this address (and 404 on `bind`); `None`: on `bind`.
    pub metrics_bind: Option<SocketAddr>,
    /// Base URL of every WOPISrc, without a trailing slash.
    pub public_url: String,
    pub data_dir: PathBuf,
    pub production: bool,
    pub token: TokenConfig,
    pub clock_skew_secs: u64,
    pub caller_jwt: CallerJwtConfig,
    pub viewers: Vec<ViewerConfig>,
    pub edit_max_size: u64,
    pub discovery_refresh_secs: u64,
    pub discovery_timeout_secs: u64,
    pub discovery_retry_secs: u64,
    pub lang: String,
    pub log_format: LogFormat,
    /// `WOPIGATE_*` variables in the environment that are no setting (warned about at start).
    pub unknown_variables: Vec<UnknownVariable>,
    /// Past versions kept per file.
    pub keep_versions: usize,
    /// Consecutive autosaves by one user within this many seconds make one past version.
    pub autosave_window_secs: u64,
    /// Largest PutFile / PutRelativeFile body accepted (413 above).
    pub max_upload_size: u64,
    /// Folders as WOPI containers (`/wopi/containers`, `SupportsContainers`).
    pub containers: bool,
    /// The OAuth endpoints native Office clients sign in with before calling the bootstrapper;
    /// `None`: no bootstrapper (404).
    pub bootstrapper: Option<BootstrapConfig>,
    /// The page that opens a file in a client's iframe, and what wopigate's own page links to.
    pub host_page: HostPageConfig,
    pub store: StoreConfig,
    pub locks: LockConfig,
    /// Every call to S3 or Redis gives up after this long.
    pub backend_timeout_secs: u64,
    /// On SIGTERM: stop accepting, give in-flight requests this long to finish, exit 0.
    pub shutdown_grace_secs: u64,
    /// Staged uploads untouched for this long are left over from a crash: swept at start-up
    /// and hourly.
    pub stale_upload_secs: u64,
    /// How long a share manifest read for GetFile may be reused (writes, CheckFileInfo and new
    /// tokens always read it afresh).
    pub share_cache_secs: u64,
    pub share_passwords: SharePasswordConfig,
    /// Peers whose `X-Forwarded-For` names the client (reverse proxies, load balancers).
    pub trusted_proxies: Vec<IpNet>,
    /// Lifetime of CheckFileInfo's `FileUrl` links (capped by the session token); 0 = no FileUrl.
    pub file_url_ttl_secs: u64,
    /// GetShareUrl's answer, with `{share_id}` (`WOPIGATE_SHARE_URL_TEMPLATE`).
    pub share_url_template: String,
    /// `WOPIGATE_ACTIVITY_WEBHOOK`: where AddActivities batches are delivered, signed.
    pub activity_webhook: Option<WebhookConfig>,
}

/// A webhook and the key its deliveries are signed with (HMAC-SHA256). The URL is a secret
/// too: it may carry credentials (`discovery::shown_source` shows it without them).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: Secret,
    pub secret: Secret,
}

/// The host page: the page that posts the token into the WOPI client's iframe.
#[derive(Debug, Clone)]
pub struct HostPageConfig {
    /// CheckFileInfo's `HostViewUrl`/`HostEditUrl`, with `{file_id}` and `{action}`, accepted
    /// back by GetFileWopiSrc: `WOPIGATE_HOST_PAGE_URL`, else wopigate's own
    /// `<public url>/host/{file_id}?action={action}`.
    pub url_template: String,
    /// Whether that is wopigate's own page (`/host`), which answers `UI_Close`,
    /// `UI_FileVersions` and `UI_Sharing`.
    pub own: bool,
    /// Origin of that page (`https://host[:port]`): the default `PostMessageOrigin`.
    pub origin: String,
    /// Where `UI_Close` goes (`WOPIGATE_CLOSE_URL`); none = back in the browser's history.
    pub close_url: Option<String>,
    /// The platform's home (`WOPIGATE_PLATFORM_URL`), linked from `/host` opened without a session.
    pub platform_url: Option<String>,
    /// The platform's version history page (`WOPIGATE_VERSIONS_URL`), may contain `{file_id}`.
    pub versions_url: Option<String>,
    /// The platform's sharing page (`WOPIGATE_SHARING_URL`), may contain `{file_id}`.
    pub sharing_url: Option<String>,
}

impl HostPageConfig {
    /// `template` with `{file_id}` (and `{action}`, when it has one) filled in.
    pub fn fill(template: &str, file_id: &str, action: &str) -> String {
        // One pass (CheckFileInfo fills four of these per call).
        let mut out = String::with_capacity(template.len() + file_id.len() + action.len());
        let mut rest = template;
        while let Some(at) = rest.find('{') {
            out.push_str(&rest[..at]);
            let tail = &rest[at..];
            rest = if let Some(after) = tail.strip_prefix("{file_id}") {
                out.push_str(file_id);
                after
            } else if let Some(after) = tail.strip_prefix("{action}") {
                out.push_str(action);
                after
            } else {
                out.push('{');
                &tail[1..]
            };
        }
        out.push_str(rest);
        out
    }

    /// The host page URL (`HostViewUrl`/`HostEditUrl`) of a file for an action.
    pub fn url(&self, file_id: &str, action: &str) -> String {
        Self::fill(&self.url_template, file_id, action)
    }
}

/// How share passwords are checked (`WOPIGATE_SHARE_PASSWORD_*`).
#[derive(Debug, Clone)]
pub struct SharePasswordConfig {
    /// Wrong passwords accepted per minute, per share and per client address.
    pub attempts_per_minute: u32,
    /// Argon2 checks running at once (each needs its memory and a core).
    pub concurrent_checks: usize,
}

impl Config {
    /// Reads and validates the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads and validates the given variables (tests pass their own). A `WOPIGATE_*` name
    /// that is no setting is a warning (`unknown_variables`), and stops start-up in production.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let raw: RawConfig = envy::prefixed("WOPIGATE_")
            .from_iter(vars.iter().cloned())
            .map_err(|e| envy_error(&e.to_string()))?;
        let unknown = unknown_variables(vars.iter().map(|(k, _)| k.as_str()));
        let mut config = Self::validate(raw)?;
        if config.production {
            if let Some(first) = unknown.first() {
                return Err(ConfigError::new(&first.name, format!("is not a wopigate setting{}", first.hint())));
            }
        }
        config.unknown_variables = unknown;
        Ok(config)
    }

    fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        let bind = socket_addr("WOPIGATE_BIND", &raw.bind)?;
        let metrics_bind = match raw.metrics_bind.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
            None => None,
            Some(addr) => Some(socket_addr("WOPIGATE_METRICS_BIND", addr)?),
        };
        if metrics_bind.is_some_and(|m| m == bind && m.port() != 0) {
            return Err(ConfigError::new("WOPIGATE_METRICS_BIND", "must differ from WOPIGATE_BIND"));
        }
        let public_url = http_base_url("WOPIGATE_PUBLIC_URL", &raw.public_url)?;
        let production = match raw.env.as_str() {
            "production" => true,
            "development" | "test" => false,
            other => {
                return Err(ConfigError::new(
                    "WOPIGATE_ENV",
                    format!("'{other}' is not one of production, development, test"),
                ))
            }
        };
        let token = token_config(&raw)?;
        if raw.token_ttl_secs < 60 || raw.token_ttl_secs > 7 * 24 * 3600 {
            return Err(ConfigError::new("WOPIGATE_TOKEN_TTL_SECS", "must be between 60 and 604800 seconds"));
        }
        if raw.token_audience.trim().is_empty() {
            return Err(ConfigError::new("WOPIGATE_TOKEN_AUDIENCE", "must not be empty"));
        }
        let caller_jwt = caller_config(&raw)?;
        let viewers = viewers_config(&raw.viewers)?;
        if raw.discovery_timeout_secs == 0 {
            return Err(ConfigError::new("WOPIGATE_DISCOVERY_TIMEOUT_SECS", "must be at least 1"));
        }
        if raw.discovery_refresh_secs < 60 {
            return Err(ConfigError::new("WOPIGATE_DISCOVERY_REFRESH_SECS", "must be at least 60"));
        }
        check_lang("WOPIGATE_LANG", &raw.lang)?;
        let log_format = match raw.log_format.as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            // People read a terminal; log collectors read everything else.
            "auto" if std::io::IsTerminal::is_terminal(&std::io::stderr()) => LogFormat::Text,
            "auto" => LogFormat::Json,
            other => return Err(ConfigError::new("WOPIGATE_LOG_FORMAT", format!("'{other}' is not auto, json or text"))),
        };
        if raw.keep_versions == 0 {
            return Err(ConfigError::new("WOPIGATE_KEEP_VERSIONS", "must be at least 1"));
        }
        let bootstrapper = BootstrapConfig::from_raw(&raw)?;
        if raw.autosave_window_secs > 24 * 3600 {
            return Err(ConfigError::new("WOPIGATE_AUTOSAVE_WINDOW_SECS", "must be at most 86400 (a day)"));
        }
        if raw.share_cache_secs > 60 {
            return Err(ConfigError::new("WOPIGATE_SHARE_CACHE_SECS", "must be at most 60 (share changes must reach open sessions soon)"));
        }
        if raw.max_upload_size == 0 {
            return Err(ConfigError::new("WOPIGATE_MAX_UPLOAD_SIZE", "must be at least 1 byte"));
        }
        let host_page = host_page_config(&raw, &public_url)?;
        let store = store_config(&raw)?;
        let locks = match raw.locks.as_str() {
            "store" => LockConfig::Store,
            "redis" => {
                let url = raw.redis_url.clone().filter(|u| !u.expose().is_empty()).ok_or_else(|| {
                    ConfigError::new("WOPIGATE_REDIS_URL", "is required when WOPIGATE_LOCKS=redis (redis://host:6379/0)")
                })?;
                if !(url.expose().starts_with("redis://") || url.expose().starts_with("rediss://")) {
                    return Err(ConfigError::new("WOPIGATE_REDIS_URL", "must start with redis:// or rediss://"));
                }
                LockConfig::Redis { url }
            }
            other => return Err(ConfigError::new("WOPIGATE_LOCKS", format!("'{other}' is not store or redis"))),
        };
        if raw.backend_timeout_secs == 0 || raw.backend_timeout_secs > 300 {
            return Err(ConfigError::new("WOPIGATE_BACKEND_TIMEOUT_SECS", "must be between 1 and 300"));
        }
        if raw.share_password_attempts == 0 {
            return Err(ConfigError::new("WOPIGATE_SHARE_PASSWORD_ATTEMPTS", "must be at least 1 (wrong passwords per minute)"));
        }
        let concurrent_checks = match raw.share_password_checks {
            Some(0) => return Err(ConfigError::new("WOPIGATE_SHARE_PASSWORD_CHECKS", "must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        };
        let trusted_proxies = trusted_proxies(&raw.trusted_proxies)?;
        if raw.file_url_ttl_secs > 3600 {
            return Err(ConfigError::new("WOPIGATE_FILE_URL_TTL_SECS", "must be at most 3600 (FileUrl links are short-lived; 0 turns them off)"));
        }
        let share_url_template = share_url_template(&raw.share_url_template)?;
        if raw.stale_upload_secs == 0 {
            return Err(ConfigError::new("WOPIGATE_STALE_UPLOAD_SECS", "must be at least 1"));
        }
        let activity_webhook = webhook_config(&raw)?;
        let config = Config {
            bind,
            metrics_bind,
            public_url,
            data_dir: raw.data_dir,
            production,
            token,
            clock_skew_secs: raw.clock_skew_secs,
            caller_jwt,
            viewers,
            edit_max_size: raw.edit_max_size,
            discovery_refresh_secs: raw.discovery_refresh_secs,
            discovery_timeout_secs: raw.discovery_timeout_secs,
            discovery_retry_secs: raw.discovery_retry_secs,
            lang: raw.lang,
            log_format,
            unknown_variables: Vec::new(),
            keep_versions: raw.keep_versions,
            autosave_window_secs: raw.autosave_window_secs,
            max_upload_size: raw.max_upload_size,
            containers: raw.containers,
            bootstrapper,
            host_page,
            store,
            locks,
            backend_timeout_secs: raw.backend_timeout_secs,
            shutdown_grace_secs: raw.shutdown_grace_secs,
            share_cache_secs: raw.share_cache_secs,
            share_passwords: SharePasswordConfig { attempts_per_minute: raw.share_password_attempts, concurrent_checks },
            trusted_proxies,
            stale_upload_secs: raw.stale_upload_secs,
            file_url_ttl_secs: raw.file_url_ttl_secs,
            share_url_template,
            activity_webhook,
        };
        if config.production {
            production_secrets(&config)?;
        }
        Ok(config)
    }
}

fn socket_addr(var: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| ConfigError::new(var, format!("'{value}' is not a host:port address")))
}

/// Words that mark a value copied from an example rather than generated.
const PLACEHOLDER_WORDS: [&str; 3] = ["REPLACE", "CHANGE", "EXAMPLE"];

/// `WOPIGATE_ENV=production`: no configured secret may be a placeholder (`REPLACE`, `CHANGE`,
/// `EXAMPLE`, any case), and the signing secrets are at least 32 bytes (checked for every
/// environment by `check_secret`). The error names the variable, never the value.
fn production_secrets(config: &Config) -> Result<(), ConfigError> {
    let placeholder = |var: &str, value: &str| {
        let upper = value.to_ascii_uppercase();
        match PLACEHOLDER_WORDS.iter().find(|w| upper.contains(*w)) {
            Some(word) => Err(ConfigError::new(
                var,
                format!("looks like a placeholder (contains {word}): WOPIGATE_ENV=production needs a real secret"),
            )),
            None => Ok(()),
        }
    };
    let key = |var: &str, material: &KeyMaterial| match material {
        KeyMaterial::Secret(secret) => placeholder(var, secret.expose()),
        KeyMaterial::Ed25519Pair { private, .. } => placeholder("WOPIGATE_TOKEN_PRIVATE_KEY", private.expose()),
        KeyMaterial::Ed25519Public(_) => Ok(()),
    };
    if let Some(current) = &config.token.current {
        key("WOPIGATE_TOKEN_SECRET", &current.material)?;
    }
    for old in &config.token.previous {
        key("WOPIGATE_TOKEN_OLD_KEYS", &old.material)?;
    }
    if let Some(CallerKey::Hs256(secret)) = &config.caller_jwt.key {
        placeholder("WOPIGATE_CALLER_JWT_SECRET", secret.expose())?;
    }
    if let StoreConfig::S3(s3) = &config.store {
        placeholder("WOPIGATE_S3_ACCESS_KEY_ID", &s3.access_key_id)?;
        placeholder("WOPIGATE_S3_SECRET_ACCESS_KEY", s3.secret_access_key.expose())?;
    }
    if let Some(webhook) = &config.activity_webhook {
        placeholder("WOPIGATE_ACTIVITY_WEBHOOK_SECRET", webhook.secret.expose())?;
    }
    if let LockConfig::Redis { url } = &config.locks {
        let password = Url::parse(url.expose()).ok().and_then(|u| u.password().map(str::to_string));
        placeholder("WOPIGATE_REDIS_URL", &password.unwrap_or_default())?;
    }
    Ok(())
}

/// envy says "… provided by TOKEN_TTL_SECS"; put the prefix back so the name is the real one.
fn envy_error(message: &str) -> ConfigError {
    match message.rsplit_once("provided by ") {
        Some((what, var)) => ConfigError::new(&format!("WOPIGATE_{}", var.trim()), what.trim().to_string()),
        None => ConfigError::new("WOPIGATE_*", message.to_string()),
    }
}

fn store_config(raw: &RawConfig) -> Result<StoreConfig, ConfigError> {
    match raw.store.as_str() {
        "local" => Ok(StoreConfig::Local),
        "s3" => {
            let required = |var: &str, value: &Option<String>| {
                value.clone().filter(|v| !v.trim().is_empty()).ok_or_else(|| ConfigError::new(var, "is required when WOPIGATE_STORE=s3"))
            };
            let endpoint = required("WOPIGATE_S3_ENDPOINT", &raw.s3_endpoint)?;
            http_base_url("WOPIGATE_S3_ENDPOINT", &endpoint)?;
            let bucket = required("WOPIGATE_S3_BUCKET", &raw.s3_bucket)?;
            let access_key_id = required("WOPIGATE_S3_ACCESS_KEY_ID", &raw.s3_access_key_id)?;
            let secret_access_key = raw
                .s3_secret_access_key
                .clone()
                .filter(|s| !s.expose().is_empty())
                .ok_or_else(|| ConfigError::new("WOPIGATE_S3_SECRET_ACCESS_KEY", "is required when WOPIGATE_STORE=s3"))?;
            let prefix = raw.s3_prefix.clone().unwrap_or_default().trim_matches('/').to_string();
            if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
                return Err(ConfigError::new("WOPIGATE_S3_PREFIX", "must be a plain key prefix like wopigate/prod"));
            }
            if raw.s3_part_size < 5 * 1024 * 1024 {
                return Err(ConfigError::new("WOPIGATE_S3_PART_SIZE", "must be at least 5 MiB (5242880), S3's smallest part"));
            }
            Ok(StoreConfig::S3(S3Config {
                endpoint: endpoint.trim_end_matches('/').to_string(),
                region: raw.s3_region.clone(),
                bucket,
                access_key_id,
                secret_access_key,
                path_style: raw.s3_path_style.unwrap_or(true),
                prefix: if prefix.is_empty() { prefix } else { format!("{prefix}/") },
                part_size: raw.s3_part_size,
            }))
        }
        other => Err(ConfigError::new("WOPIGATE_STORE", format!("'{other}' is not local or s3"))),
    }
}

/// `WOPIGATE_ACTIVITY_WEBHOOK` (empty: unset) and its signing key, required with it. Errors
/// never repeat the URL: it may carry credentials.
fn webhook_config(raw: &RawConfig) -> Result<Option<WebhookConfig>, ConfigError> {
    const VAR: &str = "WOPIGATE_ACTIVITY_WEBHOOK";
    let Some(url) = raw.activity_webhook.clone().filter(|u| !u.expose().trim().is_empty()) else {
        return Ok(None);
    };
    let parsed = Url::parse(url.expose().trim()).map_err(|e| ConfigError::new(VAR, format!("is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ConfigError::new(VAR, "must be an absolute http(s) URL"));
    }
    let secret = raw.activity_webhook_secret.clone().filter(|s| !s.expose().is_empty()).ok_or_else(|| {
        ConfigError::new("WOPIGATE_ACTIVITY_WEBHOOK_SECRET", "is required when WOPIGATE_ACTIVITY_WEBHOOK is set (deliveries are signed with it)")
    })?;
    check_secret("WOPIGATE_ACTIVITY_WEBHOOK_SECRET", &secret)?;
    Ok(Some(WebhookConfig { url: Secret::new(url.expose().trim()), secret }))
}

/// `10.0.0.1, 10.1.0.0/16, fd00::/8`: addresses or CIDR blocks.
fn trusted_proxies(list: &str) -> Result<Vec<IpNet>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| ConfigError::new("WOPIGATE_TRUSTED_PROXIES", format!("'{item}' is not an IP address or CIDR block")))
        })
        .collect()
}

fn http_base_url(var: &str, value: &str) -> Result<String, ConfigError> {
    let url = Url::parse(value).map_err(|e| ConfigError::new(var, format!("'{value}' is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::new(var, format!("'{value}' must be an absolute http(s) URL")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(var, format!("'{value}' must not carry a query or fragment")));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// An absolute http(s) URL of a page (query and fragment allowed), after filling in
/// `placeholders` with a sample value. Empty = unset.
fn page_url(var: &str, value: &Option<String>, placeholders: &[&str]) -> Result<Option<String>, ConfigError> {
    let Some(value) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let probe = placeholders.iter().fold(value.to_string(), |url, p| url.replace(p, "x"));
    let url = Url::parse(&probe).map_err(|e| ConfigError::new(var, format!("'{value}' is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::new(var, format!("'{value}' must be an absolute http(s) URL")));
    }
    Ok(Some(value.to_string()))
}

/// `https://host[:port]` of an http(s) URL.
pub fn origin_of(url: &str) -> Option<String> {
    Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .map(|u| u.origin().ascii_serialization())
}

fn host_page_config(raw: &RawConfig, public_url: &str) -> Result<HostPageConfig, ConfigError> {
    const HOST_PAGE: &str = "WOPIGATE_HOST_PAGE_URL";
    let (url_template, own) = match page_url(HOST_PAGE, &raw.host_page_url, &["{file_id}", "{action}"])? {
        Some(template) if !template.contains("{file_id}") => return Err(ConfigError::new(HOST_PAGE, "must contain {file_id}")),
        Some(template) => (template, false),
        None => (format!("{public_url}/host/{{file_id}}?action={{action}}"), true),
    };
    let origin = origin_of(&HostPageConfig::fill(&url_template, "x", "view"))
        .ok_or_else(|| ConfigError::new(HOST_PAGE, "has no origin (scheme, host and port)"))?;
    Ok(HostPageConfig {
        url_template,
        own,
        origin,
        close_url: page_url("WOPIGATE_CLOSE_URL", &raw.close_url, &[])?,
        platform_url: page_url("WOPIGATE_PLATFORM_URL", &raw.platform_url, &[])?,
        versions_url: page_url("WOPIGATE_VERSIONS_URL", &raw.versions_url, &["{file_id}"])?,
        sharing_url: page_url("WOPIGATE_SHARING_URL", &raw.sharing_url, &["{file_id}"])?,
    })
}

/// A link with `{share_id}` that is an absolute URL once filled in (any scheme: the default is
/// Cloudreve's `cloudreve://`).
fn share_url_template(value: &str) -> Result<String, ConfigError> {
    const VAR: &str = "WOPIGATE_SHARE_URL_TEMPLATE";
    let value = value.trim();
    if !value.contains("{share_id}") {
        return Err(ConfigError::new(VAR, "must contain {share_id}"));
    }
    match Url::parse(&value.replace("{share_id}", "x")) {
        Ok(url) if !url.cannot_be_a_base() => Ok(value.to_string()),
        _ => Err(ConfigError::new(VAR, format!("'{value}' is not an absolute URL once {{share_id}} is filled in"))),
    }
}

fn check_lang(var: &str, lang: &str) -> Result<(), ConfigError> {
    let ok = !lang.is_empty()
        && lang.len() <= 35
        && lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(var, format!("'{lang}' is not a language tag like en-US")))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OldKey {
    kid: String,
    secret: Option<Secret>,
    public_key: Option<String>,
}

fn token_config(raw: &RawConfig) -> Result<TokenConfig, ConfigError> {
    let algorithm = match raw.token_alg.as_str() {
        "HS256" => TokenAlgorithm::Hs256,
        "EdDSA" => TokenAlgorithm::EdDsa,
        other => return Err(ConfigError::new("WOPIGATE_TOKEN_ALG", format!("'{other}' is not HS256 or EdDSA"))),
    };
    let current = match algorithm {
        TokenAlgorithm::Hs256 => match &raw.token_secret {
            Some(secret) => {
                check_secret("WOPIGATE_TOKEN_SECRET", secret)?;
                Some(TokenKeyConfig {
                    kid: raw.token_kid.clone().unwrap_or_else(|| derived_kid(secret.expose())),
                    material: KeyMaterial::Secret(secret.clone()),
                })
            }
            None => None,
        },
        TokenAlgorithm::EdDsa => {
            let pem = raw.token_private_key.clone().ok_or_else(|| {
                ConfigError::new("WOPIGATE_TOKEN_PRIVATE_KEY", "is required when WOPIGATE_TOKEN_ALG=EdDSA (an Ed25519 private key, PEM)")
            })?;
            let public = raw.token_public_key.clone().ok_or_else(|| {
                ConfigError::new("WOPIGATE_TOKEN_PUBLIC_KEY", "is required when WOPIGATE_TOKEN_ALG=EdDSA (the Ed25519 public key, PEM)")
            })?;
            Some(TokenKeyConfig {
                kid: raw.token_kid.clone().unwrap_or_else(|| derived_kid(&public)),
                material: KeyMaterial::Ed25519Pair { private: pem, public },
            })
        }
    };
    if let Some(kid) = &raw.token_kid {
        check_kid("WOPIGATE_TOKEN_KID", kid)?;
    }
    let mut previous = Vec::new();
    if let Some(json) = &raw.token_old_keys {
        let keys: Vec<OldKey> = serde_json::from_str(json.expose()).map_err(|e| {
            ConfigError::new(
                "WOPIGATE_TOKEN_OLD_KEYS",
                format!("must be a JSON list of {{\"kid\", \"secret\"}} or {{\"kid\", \"public_key\"}} objects: {e}"),
            )
        })?;
        for key in keys {
            check_kid("WOPIGATE_TOKEN_OLD_KEYS", &key.kid)?;
            let material = match (algorithm, key.secret, key.public_key) {
                (TokenAlgorithm::Hs256, Some(secret), None) => {
                    check_secret("WOPIGATE_TOKEN_OLD_KEYS", &secret)?;
                    KeyMaterial::Secret(secret)
                }
                (TokenAlgorithm::EdDsa, None, Some(pem)) => KeyMaterial::Ed25519Public(pem),
                _ => {
                    return Err(ConfigError::new(
                        "WOPIGATE_TOKEN_OLD_KEYS",
                        format!("key '{}' needs \"secret\" for HS256 or \"public_key\" for EdDSA, not both", key.kid),
                    ))
                }
            };
            if current.as_ref().is_some_and(|c| c.kid == key.kid) || previous.iter().any(|p: &TokenKeyConfig| p.kid == key.kid) {
                return Err(ConfigError::new("WOPIGATE_TOKEN_OLD_KEYS", format!("kid '{}' appears twice in the key ring", key.kid)));
            }
            previous.push(TokenKeyConfig { kid: key.kid, material });
        }
    }
    Ok(TokenConfig {
        algorithm,
        current,
        previous,
        ttl_secs: raw.token_ttl_secs,
        audience: raw.token_audience.clone(),
    })
}

fn check_secret(var: &str, secret: &Secret) -> Result<(), ConfigError> {
    if secret.expose().len() < 32 {
        return Err(ConfigError::new(var, "an HS256 secret must be at least 32 bytes (e.g. `openssl rand -base64 48`)"));
    }
    Ok(())
}

fn check_kid(var: &str, kid: &str) -> Result<(), ConfigError> {
    if kid.is_empty() || kid.len() > 64 || !kid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
        return Err(ConfigError::new(var, format!("kid '{kid}' must be 1-64 characters of A-Z a-z 0-9 - _ .")));
    }
    Ok(())
}

/// Defaults that `validate` works out rather than serde: what `--help` says for them.
const COMPUTED_DEFAULTS: &[(&str, &str)] = &[
    ("WOPIGATE_S3_PATH_STYLE", "true"),
    ("WOPIGATE_SHARE_PASSWORD_CHECKS", "number of CPUs"),
    ("WOPIGATE_TOKEN_SECRET", "a generated development key (refused in production)"),
    ("WOPIGATE_TOKEN_KID", "derived from the key"),
    ("WOPIGATE_HOST_PAGE_URL", "<public url>/host/{file_id}?action={action}"),
];

/// Every `WOPIGATE_*` variable with its default as `RawConfig` (or, where it is worked out,
/// `COMPUTED_DEFAULTS`) defines it (empty: unset), in name order: what `--help` prints, so the
/// list cannot drift from the code.
pub fn variables() -> Vec<(String, String)> {
    let Ok(raw) = envy::prefixed("WOPIGATE_").from_iter::<_, RawConfig>(std::iter::empty::<(String, String)>()) else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&raw) else {
        return Vec::new();
    };
    fields
        .into_iter()
        .map(|(name, value)| {
            let default = match value {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            let name = format!("WOPIGATE_{}", name.to_uppercase());
            let computed = COMPUTED_DEFAULTS.iter().find(|(n, _)| *n == name).map(|(_, d)| d.to_string());
            (name, computed.unwrap_or(default))
        })
        .collect()
}

/// A `WOPIGATE_*` variable that is no setting, and the setting it most likely meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariable {
    pub name: String,
    pub did_you_mean: Option<String>,
}

impl UnknownVariable {
    pub fn hint(&self) -> String {
        self.did_you_mean.as_ref().map(|m| format!(" (did you mean {m}?)")).unwrap_or_default()
    }
}

/// Variables Kubernetes puts into every pod for each Service of its namespace
/// (`WOPIGATE_SERVICE_HOST`, `WOPIGATE_PORT_80_TCP_ADDR`, `WOPIGATE_METRICS_SERVICE_PORT`, …
/// for Services named `wopigate`, `wopigate-metrics`): not settings, and not mistakes.
fn is_service_link(name: &str) -> bool {
    let rest = name.trim_start_matches("WOPIGATE_");
    let after_port = |s: &str| {
        // `<n>_TCP`, `<n>_TCP_ADDR`, `<n>_UDP_PORT`, …
        let mut parts = s.split('_');
        parts.next().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            && parts.next().is_some_and(|p| matches!(p, "TCP" | "UDP" | "SCTP"))
    };
    rest.split_once("SERVICE_").is_some_and(|(_, tail)| tail.starts_with("HOST") || tail.starts_with("PORT"))
        || rest == "PORT"
        || rest.ends_with("_PORT")
        || rest.split_once("PORT_").is_some_and(|(_, tail)| after_port(tail))
}

/// The `WOPIGATE_*` names among `names` that are no setting. `WOPIGATE_TEST_*` belong to the
/// test suite, and Kubernetes' service links to Services named `wopigate…` are left alone.
pub fn unknown_variables<'a>(names: impl Iterator<Item = &'a str>) -> Vec<UnknownVariable> {
    let known: Vec<String> = variables().into_iter().map(|(name, _)| name).collect();
    let mut unknown: Vec<UnknownVariable> = names
        .filter(|n| n.starts_with("WOPIGATE_") && !n.starts_with("WOPIGATE_TEST_") && !is_service_link(n))
        .filter(|n| !known.iter().any(|k| k == n))
        .map(|name| {
            // Compared without the prefix every name shares, which would make all look alike.
            let bare = |n: &str| n.trim_start_matches("WOPIGATE_").to_string();
            let did_you_mean = known
                .iter()
                .map(|k| (strsim::jaro_winkler(&bare(name), &bare(k)), k))
                .filter(|(score, _)| *score > 0.88)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| k.clone());
            UnknownVariable { name: name.to_string(), did_you_mean }
        })
        .collect();
    unknown.sort_by(|a, b| a.name.cmp(&b.name));
    unknown
}

/// A key id that names the key without revealing it: 8 bytes of its SHA-256.
pub fn derived_kid(material: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(material.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn caller_config(raw: &RawConfig) -> Result<CallerJwtConfig, ConfigError> {
    let key = match (&raw.caller_jwt_secret, &raw.caller_jwt_public_key) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "WOPIGATE_CALLER_JWT_SECRET",
                "set either WOPIGATE_CALLER_JWT_SECRET or WOPIGATE_CALLER_JWT_PUBLIC_KEY, not both",
            ))
        }
        (Some(secret), None) => {
            check_secret("WOPIGATE_CALLER_JWT_SECRET", secret)?;
            Some(CallerKey::Hs256(secret.clone()))
        }
        (None, Some(pem)) => Some(CallerKey::PublicPem(pem.clone())),
        (None, None) => None,
    };
    Ok(CallerJwtConfig {
        key,
        issuer: raw.caller_jwt_issuer.clone().filter(|s| !s.is_empty()),
        audience: raw.caller_jwt_audience.clone().filter(|s| !s.is_empty()),
    })
}

fn viewers_config(json: &str) -> Result<Vec<ViewerConfig>, ConfigError> {
    const VAR: &str = "WOPIGATE_VIEWERS";
    let mut viewers: Vec<ViewerConfig> = serde_json::from_str(json).map_err(|e| {
        ConfigError::new(VAR, format!("must be a JSON list of {{\"id\", \"name\", \"discovery\", …}} objects: {e}"))
    })?;
    for (i, viewer) in viewers.iter_mut().enumerate() {
        if viewer.name.trim().is_empty() {
            return Err(ConfigError::new(VAR, format!("viewer #{i} has an empty name")));
        }
        if viewer.discovery.trim().is_empty() {
            return Err(ConfigError::new(VAR, format!("viewer '{}' has no discovery URL or path", viewer.name)));
        }
        if viewer.discovery.contains("://")
            && !["http://", "https://", "file://"].iter().any(|p| viewer.discovery.starts_with(p))
        {
            return Err(ConfigError::new(
                VAR,
                format!("viewer '{}': discovery must be http(s)://, file:// or a path", viewer.name),
            ));
        }
        if let Some(url) = &viewer.public_url {
            viewer.public_url = Some(http_base_url(VAR, url)?);
        }
        if let Some(lang) = &viewer.lang {
            check_lang(VAR, lang)?;
        }
        if let Some(exts) = &mut viewer.extensions {
            for ext in exts.iter_mut() {
                *ext = ext.trim_start_matches('.').to_ascii_lowercase();
            }
        }
    }
    for (i, a) in viewers.iter().enumerate() {
        if viewers[..i].iter().any(|b| b.id == a.id) {
            return Err(ConfigError::new(VAR, format!("viewer id {} appears twice", a.id)));
        }
    }
    Ok(viewers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_variables_name_the_likely_setting_and_ignore_kubernetes_service_links() {
        let names = [
            "WOPIGATE_VIEWER",
            "WOPIGATE_TOKN_TTL_SECS",
            "WOPIGATE_FOO",
            "WOPIGATE_BIND",
            "WOPIGATE_TEST_GARAGE",
            "WOPIGATE_SERVICE_HOST",
            "WOPIGATE_SERVICE_PORT",
            "WOPIGATE_SERVICE_PORT_HTTP",
            "WOPIGATE_PORT",
            "WOPIGATE_PORT_80_TCP",
            "WOPIGATE_PORT_80_TCP_ADDR",
            "WOPIGATE_METRICS_SERVICE_HOST",
            "WOPIGATE_METRICS_PORT_9090_TCP_PROTO",
            "WOPIGATE_METRICS_PORT",
        ];
        let unknown = unknown_variables(names.into_iter());
        let found: Vec<(&str, Option<&str>)> = unknown.iter().map(|u| (u.name.as_str(), u.did_you_mean.as_deref())).collect();
        assert_eq!(
            found,
            [
                ("WOPIGATE_FOO", None),
                ("WOPIGATE_TOKN_TTL_SECS", Some("WOPIGATE_TOKEN_TTL_SECS")),
                ("WOPIGATE_VIEWER", Some("WOPIGATE_VIEWERS")),
            ]
        );
        let listed = variables();
        assert!(listed.contains(&("WOPIGATE_S3_PATH_STYLE".to_string(), "true".to_string())));
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_apply() {
        let config = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public_url, "http://127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.token.ttl_secs, 36000);
        assert!(config.token.current.is_none());
        assert_eq!(config.file_url_ttl_secs, 300);
        assert_eq!(config.share_url_template, "cloudreve://{share_id}@share/");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            ("WOPIGATE_BIND", "nonsense"),
            ("WOPIGATE_PUBLIC_URL", "ftp://x"),
            ("WOPIGATE_TOKEN_SECRET", "short"),
            ("WOPIGATE_TOKEN_TTL_SECS", "abc"),
            ("WOPIGATE_TOKEN_ALG", "RS256"),
            ("WOPIGATE_VIEWERS", "{"),
            ("WOPIGATE_ENV", "prod"),
            ("WOPIGATE_LOG_FORMAT", "xml"),
            ("WOPIGATE_EDIT_MAX_SIZE", "-1"),
            ("WOPIGATE_STORE", "ftp"),
            ("WOPIGATE_LOCKS", "zookeeper"),
            ("WOPIGATE_SHARE_PASSWORD_ATTEMPTS", "0"),
            ("WOPIGATE_SHARE_PASSWORD_ATTEMPTS", "ten"),
            ("WOPIGATE_SHARE_PASSWORD_CHECKS", "0"),
            ("WOPIGATE_SHARE_PASSWORD_CHECKS", "-2"),
            ("WOPIGATE_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("WOPIGATE_TRUSTED_PROXIES", "127.0.0.1, proxy.local"),
            ("WOPIGATE_SHARE_CACHE_SECS", "61"),
            ("WOPIGATE_SHARE_CACHE_SECS", "soon"),
            ("WOPIGATE_STALE_UPLOAD_SECS", "0"),
            ("WOPIGATE_STALE_UPLOAD_SECS", "an hour"),
            ("WOPIGATE_HOST_PAGE_URL", "https://drive.example/open"),
            ("WOPIGATE_HOST_PAGE_URL", "drive.example/{file_id}"),
            ("WOPIGATE_CLOSE_URL", "ftp://drive.example/"),
            ("WOPIGATE_PLATFORM_URL", "not a url"),
            ("WOPIGATE_VERSIONS_URL", "javascript:alert(1)//{file_id}"),
            ("WOPIGATE_SHARING_URL", "/share/{file_id}"),
            ("WOPIGATE_FILE_URL_TTL_SECS", "3601"),
            ("WOPIGATE_FILE_URL_TTL_SECS", "5m"),
            ("WOPIGATE_SHARE_URL_TEMPLATE", "https://drive.example/s/"),
            ("WOPIGATE_SHARE_URL_TEMPLATE", "/s/{share_id}"),
        ];
        for (var, value) in cases {
            let err = Config::from_vars(vars(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{var}={value} gave {err}");
            assert!(err.to_string().starts_with(var));
        }
    }

    #[test]
    fn host_page_defaults_to_our_own() {
        let config = Config::from_vars(vars(&[("WOPIGATE_PUBLIC_URL", "https://wopi.example:8443/gw/")])).unwrap();
        let page = &config.host_page;
        assert!(page.own);
        assert_eq!(page.url("abc", "edit"), "https://wopi.example:8443/gw/host/abc?action=edit");
        assert_eq!(page.origin, "https://wopi.example:8443");
        assert!(page.close_url.is_none() && page.platform_url.is_none());
        let config = Config::from_vars(vars(&[
            ("WOPIGATE_HOST_PAGE_URL", "https://drive.example/#/open/{file_id}?action={action}"),
            ("WOPIGATE_VERSIONS_URL", "https://drive.example/versions/{file_id}"),
            ("WOPIGATE_CLOSE_URL", " "),
        ]))
        .unwrap();
        let page = &config.host_page;
        assert!(!page.own);
        assert_eq!(page.origin, "https://drive.example");
        assert_eq!(page.versions_url.as_deref(), Some("https://drive.example/versions/{file_id}"));
        assert!(page.close_url.is_none(), "empty = unset");
    }

    #[test]
    fn share_password_settings() {
        let config = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(config.share_passwords.attempts_per_minute, 10);
        assert!(config.share_passwords.concurrent_checks >= 1);
        assert!(config.trusted_proxies.is_empty());
        let config = Config::from_vars(vars(&[
            ("WOPIGATE_SHARE_PASSWORD_CHECKS", "3"),
            ("WOPIGATE_TRUSTED_PROXIES", " 127.0.0.1, 10.1.2.3/16,fd00::/8 ,"),
        ]))
        .unwrap();
        assert_eq!(config.share_passwords.concurrent_checks, 3);
        let nets: Vec<String> = config.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["127.0.0.1/32", "10.1.0.0/16", "fd00::/8"]);
    }

    #[test]
    fn backends_name_what_they_miss() {
        let err = Config::from_vars(vars(&[("WOPIGATE_STORE", "s3")])).unwrap_err();
        assert_eq!(err.var, "WOPIGATE_S3_ENDPOINT");
        let err = Config::from_vars(vars(&[
            ("WOPIGATE_STORE", "s3"),
            ("WOPIGATE_S3_ENDPOINT", "http://127.0.0.1:3900"),
            ("WOPIGATE_S3_BUCKET", "b"),
            ("WOPIGATE_S3_ACCESS_KEY_ID", "k"),
        ]))
        .unwrap_err();
        assert_eq!(err.var, "WOPIGATE_S3_SECRET_ACCESS_KEY");
        let err = Config::from_vars(vars(&[("WOPIGATE_LOCKS", "redis")])).unwrap_err();
        assert_eq!(err.var, "WOPIGATE_REDIS_URL");
        let ok = Config::from_vars(vars(&[
            ("WOPIGATE_STORE", "s3"),
            ("WOPIGATE_S3_ENDPOINT", "http://127.0.0.1:3900"),
            ("WOPIGATE_S3_BUCKET", "b"),
            ("WOPIGATE_S3_ACCESS_KEY_ID", "k"),
            ("WOPIGATE_S3_SECRET_ACCESS_KEY", "very-secret-key"),
            ("WOPIGATE_S3_PREFIX", "/a/b/"),
        ]))
        .unwrap();
        match &ok.store {
            StoreConfig::S3(s3) => assert_eq!(s3.prefix, "a/b/"),
            StoreConfig::Local => panic!("s3 expected"),
        }
        assert!(!format!("{:?}", ok.store).contains("very-secret-key"));
    }

    #[test]
    fn production_refuses_placeholder_secrets_and_names_the_variable() {
        const GOOD: &str = "k3J9x0Qv7mWb2Zr5Tn8Yp1Ls4Hd6Fg0a";
        let base = [
            ("WOPIGATE_ENV", "production"),
            ("WOPIGATE_TOKEN_SECRET", GOOD),
            ("WOPIGATE_CALLER_JWT_SECRET", GOOD),
            ("WOPIGATE_STORE", "s3"),
            ("WOPIGATE_S3_ENDPOINT", "https://s3.example.com"),
            ("WOPIGATE_S3_BUCKET", "b"),
            ("WOPIGATE_S3_ACCESS_KEY_ID", "GK31c2f218a2e44f485b94239e"),
            ("WOPIGATE_S3_SECRET_ACCESS_KEY", "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835"),
            ("WOPIGATE_LOCKS", "redis"),
            ("WOPIGATE_REDIS_URL", "redis://:s3cr3t-pw@redis.example.com:6379/0"),
        ];
        let with = |var: &str, value: &str| {
            let mut pairs: Vec<(&str, &str)> = base.iter().copied().filter(|(k, _)| *k != var).collect();
            pairs.push((var, value));
            Config::from_vars(vars(&pairs))
        };
        assert!(with("WOPIGATE_ENV", "production").is_ok(), "real-looking secrets and an example.com host pass");
        let old = r#"[{"kid": "old", "secret": "replace-me-with-the-previous-key-0000"}]"#;
        let cases = [
            ("WOPIGATE_TOKEN_SECRET", "REPLACE-WITH-48-RANDOM-BYTES-BASE64-REPLACE-ME"),
            ("WOPIGATE_TOKEN_SECRET", "please-change-this-secret-0123456789"),
            ("WOPIGATE_TOKEN_OLD_KEYS", old),
            ("WOPIGATE_CALLER_JWT_SECRET", "an-Example-shared-secret-0123456789abc"),
            ("WOPIGATE_S3_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            ("WOPIGATE_S3_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            ("WOPIGATE_REDIS_URL", "redis://:REPLACE-ME@redis:6379/0"),
        ];
        for (var, value) in cases {
            let err = with(var, value).unwrap_err();
            assert_eq!(err.var, var, "{var}: {err}");
            assert!(err.message.contains("placeholder"), "{err}");
            assert!(!err.to_string().contains(value), "the error must not print the secret: {err}");
        }
        let err = with("WOPIGATE_TOKEN_SECRET", "short-but-real-9f8e7d").unwrap_err();
        assert_eq!(err.var, "WOPIGATE_TOKEN_SECRET");
        assert!(!err.to_string().contains("short-but-real"), "{err}");
        // Outside production the same values start (local development with the example files).
        let dev = Config::from_vars(vars(&[("WOPIGATE_TOKEN_SECRET", "REPLACE-WITH-48-RANDOM-BYTES-BASE64-REPLACE-ME")]));
        assert!(dev.is_ok());
    }

    #[test]
    fn metrics_bind_is_optional_and_separate() {
        assert!(Config::from_vars(vars(&[])).unwrap().metrics_bind.is_none());
        assert!(Config::from_vars(vars(&[("WOPIGATE_METRICS_BIND", " ")])).unwrap().metrics_bind.is_none());
        let config = Config::from_vars(vars(&[("WOPIGATE_METRICS_BIND", "0.0.0.0:9090")])).unwrap();
        assert_eq!(config.metrics_bind.unwrap().to_string(), "0.0.0.0:9090");
        for value in ["9090", "127.0.0.1:8080"] {
            let err = Config::from_vars(vars(&[("WOPIGATE_METRICS_BIND", value)])).unwrap_err();
            assert_eq!(err.var, "WOPIGATE_METRICS_BIND", "{value}: {err}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let config = Config::from_vars(vars(&[("WOPIGATE_TOKEN_SECRET", "0123456789abcdef0123456789abcdef-secret")])).unwrap();
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }
}
