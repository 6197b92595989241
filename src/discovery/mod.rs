//! The configured WOPI clients and their discovery documents: fetched, parsed, cached, refreshed
//! on a timer and retried after a failure. Also picks the action URL for a file.

pub mod action_url;
pub mod parse;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::config::{origin_of, Config, ViewerConfig};
use crate::metrics::Metrics;
use crate::token::Action;
pub use parse::{Discovery, ProofKeys, RsaPublicKey};

/// Action names that open a file for reading / writing, most preferred first. Collabora lists
/// most formats under `edit` only: a view session then uses that URL, and CheckFileInfo's
/// permissions make it read-only.
const VIEW_ACTIONS: &[&str] = &["view", "embedview", "mobileView", "edit"];
const EDIT_ACTIONS: &[&str] = &["edit"];
/// Office wants `editnew` (blank template written by the client) for zero-byte files.
const EDIT_NEW_ACTIONS: &[&str] = &["editnew", "edit"];

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    #[error("unknown viewer_id {0}")]
    UnknownViewer(Uuid),
    #[error("discovery of viewer '{viewer}' is unavailable: {reason}")]
    Unavailable { viewer: String, reason: String },
    #[error("viewer '{viewer}' cannot open .{ext} files")]
    NoAction { viewer: String, ext: String },
}

#[derive(Default)]
struct CacheState {
    document: Option<Arc<Discovery>>,
    fetched_at: Option<Instant>,
    failed: Option<(Instant, String)>,
}

struct ViewerEntry {
    config: ViewerConfig,
    state: RwLock<CacheState>,
    /// One fetch at a time per viewer: concurrent requests wait for it instead of piling on.
    fetching: tokio::sync::Mutex<()>,
}

/// The result of choosing what to open a file with.
#[derive(Debug, Clone)]
pub struct ChosenAction {
    /// The action the session gets (edit falls back to view when the client cannot edit).
    pub action: Action,
    pub url: String,
}

pub struct Viewers {
    entries: Vec<ViewerEntry>,
    http: reqwest::Client,
    refresh: Duration,
    retry: Duration,
    lang: String,
    metrics: Arc<Metrics>,
}

impl Viewers {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Viewers {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.discovery_timeout_secs))
            .connect_timeout(Duration::from_secs(config.discovery_timeout_secs))
            .build()
            .unwrap_or_default();
        Viewers {
            entries: config
                .viewers
                .iter()
                .map(|c| ViewerEntry { config: c.clone(), state: RwLock::default(), fetching: tokio::sync::Mutex::new(()) })
                .collect(),
            http,
            refresh: Duration::from_secs(config.discovery_refresh_secs),
            retry: Duration::from_secs(config.discovery_retry_secs),
            lang: config.lang.clone(),
            metrics,
        }
    }

    pub fn configs(&self) -> impl Iterator<Item = &ViewerConfig> {
        self.entries.iter().map(|e| &e.config)
    }

    pub fn config(&self, id: Uuid) -> Option<&ViewerConfig> {
        self.entry(id).map(|e| &e.config)
    }

    fn entry(&self, id: Uuid) -> Option<&ViewerEntry> {
        self.entries.iter().find(|e| e.config.id == id)
    }

    /// The cached document; fetched now when there is none (unless the last attempt failed less
    /// than the retry interval ago, which answers at once with that failure).
    pub async fn discovery(&self, id: Uuid) -> Result<Arc<Discovery>, DiscoveryError> {
        let entry = self.entry(id).ok_or(DiscoveryError::UnknownViewer(id))?;
        if let Some(doc) = self.cached(entry)? {
            return Ok(doc);
        }
        let _guard = entry.fetching.lock().await;
        if let Some(doc) = self.cached(entry)? {
            return Ok(doc);
        }
        self.fetch(entry).await
    }

    /// Fetches again even if a document is cached (proof keys rotate) — at most once per
    /// retry interval, so requests with bad proofs cannot turn into a flood of fetches.
    pub async fn refresh(&self, id: Uuid) -> Result<Arc<Discovery>, DiscoveryError> {
        let entry = self.entry(id).ok_or(DiscoveryError::UnknownViewer(id))?;
        let _guard = entry.fetching.lock().await;
        {
            let state = entry.state.read().unwrap_or_else(|p| p.into_inner());
            let recent = state.fetched_at.is_some_and(|at| at.elapsed() < self.retry);
            if let (true, Some(doc)) = (recent, &state.document) {
                return Ok(doc.clone());
            }
        }
        self.fetch(entry).await
    }

    /// `Ok(Some)` cached document, `Ok(None)` go fetch, `Err` failed too recently to retry.
    fn cached(&self, entry: &ViewerEntry) -> Result<Option<Arc<Discovery>>, DiscoveryError> {
        let state = entry.state.read().unwrap_or_else(|p| p.into_inner());
        if let Some(doc) = &state.document {
            return Ok(Some(doc.clone()));
        }
        match &state.failed {
            Some((at, reason)) if at.elapsed() < self.retry => Err(DiscoveryError::Unavailable {
                viewer: entry.config.name.clone(),
                reason: reason.clone(),
            }),
            _ => Ok(None),
        }
    }

    async fn fetch(&self, entry: &ViewerEntry) -> Result<Arc<Discovery>, DiscoveryError> {
        let result = self.load(&entry.config.discovery).await;
        self.metrics.discovery_fetched(&entry.config.name, result.is_ok());
        let mut state = entry.state.write().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(doc) => {
                let doc = Arc::new(doc);
                state.document = Some(doc.clone());
                state.fetched_at = Some(Instant::now());
                state.failed = None;
                tracing::info!(viewer = %entry.config.name, "discovery loaded");
                Ok(doc)
            }
            Err(reason) => {
                tracing::warn!(viewer = %entry.config.name, %reason, "discovery fetch failed");
                state.failed = Some((Instant::now(), reason.clone()));
                // A stale document beats none: keep serving it while the client is away.
                match &state.document {
                    Some(doc) => Ok(doc.clone()),
                    None => Err(DiscoveryError::Unavailable { viewer: entry.config.name.clone(), reason }),
                }
            }
        }
    }

    async fn load(&self, source: &str) -> Result<Discovery, String> {
        let xml = if source.starts_with("http://") || source.starts_with("https://") {
            let response = self.http.get(source).send().await.map_err(|e| format!("fetch failed: {}", without_url(&e)))?;
            if !response.status().is_success() {
                return Err(format!("fetch answered HTTP {}", response.status().as_u16()));
            }
            response.text().await.map_err(|e| format!("fetch failed: {}", without_url(&e)))?
        } else {
            let path = source.strip_prefix("file://").unwrap_or(source);
            tokio::fs::read_to_string(path).await.map_err(|e| format!("cannot read {path}: {e}"))?
        };
        Discovery::parse(&xml).map_err(|e| format!("invalid discovery XML: {e}"))
    }

    /// Whether a viewer's document is due for a refresh (timer) or a retry (after a failure).
    fn due(&self, entry: &ViewerEntry) -> bool {
        let state = entry.state.read().unwrap_or_else(|p| p.into_inner());
        if let Some((at, _)) = &state.failed {
            return at.elapsed() >= self.retry.max(Duration::from_secs(1));
        }
        match state.fetched_at {
            Some(at) => at.elapsed() >= self.refresh,
            None => true,
        }
    }

    /// Background task: loads every discovery at start, refreshes on the interval, retries
    /// failures every retry interval.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let viewers = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(this) = viewers.upgrade() else { return };
                for entry in &this.entries {
                    if this.due(entry) {
                        let _guard = entry.fetching.lock().await;
                        if this.due(entry) {
                            let _ = this.fetch(entry).await;
                        }
                    }
                }
                drop(this);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// Whether every viewer has a document (readiness).
    pub fn all_loaded(&self) -> bool {
        self.entries.iter().all(|e| e.state.read().map(|s| s.document.is_some()).unwrap_or(false))
    }

    /// The origins of the clients' iframes (the host page's `frame-src` and `form-action`):
    /// those of every action URL in each viewer's loaded discovery, else of its discovery URL.
    pub fn client_origins(&self) -> Vec<String> {
        let mut origins = std::collections::BTreeSet::new();
        for entry in &self.entries {
            let state = entry.state.read().unwrap_or_else(|p| p.into_inner());
            match &state.document {
                Some(doc) => origins.extend(doc.url_templates(entry.config.net_zone.as_deref()).filter_map(origin_of)),
                None => origins.extend(origin_of(&entry.config.discovery)),
            }
        }
        origins.into_iter().collect()
    }

    /// Chooses the action and builds the iframe URL for a file of extension `ext`.
    pub async fn action_url(
        &self,
        viewer: &ViewerConfig,
        ext: &str,
        wanted: Action,
        empty_file: bool,
        wopi_src: &str,
        session_id: &str,
    ) -> Result<ChosenAction, DiscoveryError> {
        let no_action = || DiscoveryError::NoAction { viewer: viewer.name.clone(), ext: ext.to_string() };
        if viewer.extensions.as_ref().is_some_and(|allowed| !allowed.iter().any(|a| a == ext)) {
            return Err(no_action());
        }
        let doc = self.discovery(viewer.id).await?;
        let zone = viewer.net_zone.as_deref();
        let edit_names = if empty_file { EDIT_NEW_ACTIONS } else { EDIT_ACTIONS };
        let found = match wanted {
            Action::Edit => doc
                .find_action(zone, ext, edit_names)
                .map(|(_, a)| (Action::Edit, a))
                .or_else(|| doc.find_action(zone, ext, VIEW_ACTIONS).map(|(_, a)| (Action::View, a))),
            Action::View => doc.find_action(zone, ext, VIEW_ACTIONS).map(|(_, a)| (Action::View, a)),
        };
        let (action, discovery_action) = found.ok_or_else(no_action)?;
        let params = action_url::ActionParams {
            wopi_src,
            lang: viewer.lang.as_deref().unwrap_or(&self.lang),
            host_session_id: session_id,
        };
        Ok(ChosenAction { action, url: action_url::build(&discovery_action.urlsrc, &params) })
    }

    /// What a viewer offers, for the platform's file menu: extensions it can view or edit
    /// (after its allow-list) with their URL templates. Empty while discovery never loaded.
    pub fn offer(&self, viewer: &ViewerConfig) -> Offer {
        let mut offer = Offer::default();
        let Some(entry) = self.entry(viewer.id) else {
            return offer;
        };
        let state = entry.state.read().unwrap_or_else(|p| p.into_inner());
        let Some(doc) = &state.document else {
            return offer;
        };
        let zone = viewer.net_zone.as_deref();
        offer.exts = doc.extensions(zone, &["view", "embedview", "mobileView", "edit"]);
        if let Some(allowed) = &viewer.extensions {
            offer.exts.retain(|e| allowed.contains(e));
        }
        offer.actions = offer
            .exts
            .iter()
            .map(|ext| {
                let view = doc.find_action(zone, ext, VIEW_ACTIONS).map(|(_, a)| a.urlsrc.clone());
                let edit = doc.find_action(zone, ext, EDIT_ACTIONS).map(|(_, a)| a.urlsrc.clone());
                (ext.clone(), view, edit)
            })
            .collect();
        offer.icon = doc.fav_icon(zone).map(str::to_string);
        offer
    }
}

/// See `Viewers::offer`.
#[derive(Debug, Default)]
pub struct Offer {
    pub exts: Vec<String>,
    /// (extension, view template, edit template)
    pub actions: Vec<(String, Option<String>, Option<String>)>,
    pub icon: Option<String>,
}

/// reqwest errors print the URL; a discovery URL may carry credentials, so keep only the kind.
fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_decode() || e.is_body() {
        "could not read the response body".into()
    } else {
        "request failed".into()
    }
}
