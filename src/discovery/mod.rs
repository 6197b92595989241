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
pub use parse::{Discovery, DiscoveryAction, ProofKeys, RsaPublicKey};

/// Action names that open a file for reading, most preferred first. Collabora offers PDF only as
/// `view_comment`, and lists most formats under `edit` only: a view session then uses that URL,
/// and CheckFileInfo's permissions make it read-only.
const VIEW_ACTIONS: &[&str] = &["view", "view_comment", "embedview", "mobileView", "edit"];
const MOBILE_VIEW_ACTIONS: &[&str] = &["mobileView", "view", "view_comment", "embedview", "edit"];
const EDIT_ACTIONS: &[&str] = &["edit"];
const MOBILE_EDIT_ACTIONS: &[&str] = &["mobileEdit", "edit"];
/// Office wants `editnew` (blank template written by the client) for zero-byte files.
const EDIT_NEW_ACTIONS: &[&str] = &["editnew", "edit"];
const MOBILE_EDIT_NEW_ACTIONS: &[&str] = &["editnew", "mobileEdit", "edit"];
/// Binary formats (doc, xls, ppt, odt) that Office for the web and ONLYOFFICE edit only after
/// converting them: the client then creates the converted file with PutRelativeFile.
const CONVERT: &str = "convert";

/// What a session asks of the client's discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// `Edit` only when the session may edit the file.
    pub action: Action,
    /// The file has no bytes yet: `editnew` where the client offers it.
    pub empty: bool,
    /// The platform asked for the mobile layout: `mobileView`/`mobileEdit` first.
    pub mobile: bool,
    /// The session may create the converted file (what PutRelativeFile needs): a format the
    /// client edits only by converting it opens with the `convert` action.
    pub may_convert: bool,
}

impl Wanted {
    /// Desktop, non-empty, no conversion.
    pub fn plain(action: Action) -> Wanted {
        Wanted { action, empty: false, mobile: false, may_convert: false }
    }
}

/// The discovery action for a file of extension `ext`, and the session action it gives: edit
/// (`editnew` for empty files, `mobileEdit` on mobile), else the `convert` action (edit: the
/// client writes the converted file with PutRelativeFile), else view (`mobileView` first on
/// mobile, then `view`, `view_comment`, `embedview`, `mobileView`, and `edit` used read-only).
pub fn choose<'a>(doc: &'a Discovery, zone: Option<&str>, ext: &str, wanted: Wanted) -> Option<(Action, &'a DiscoveryAction)> {
    let find = |names: &[&str]| doc.find_action(zone, ext, names).map(|(_, a)| a);
    let view_names = if wanted.mobile { MOBILE_VIEW_ACTIONS } else { VIEW_ACTIONS };
    let view = || find(view_names).map(|a| (Action::View, a));
    if wanted.action == Action::View {
        return view();
    }
    let edit_names = match (wanted.empty, wanted.mobile) {
        (false, false) => EDIT_ACTIONS,
        (false, true) => MOBILE_EDIT_ACTIONS,
        (true, false) => EDIT_NEW_ACTIONS,
        (true, true) => MOBILE_EDIT_NEW_ACTIONS,
    };
    find(edit_names)
        .or_else(|| find(&[CONVERT]).filter(|a| wanted.may_convert && !a.target_ext.is_empty()))
        .map(|a| (Action::Edit, a))
        .or_else(view)
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    #[error("unknown viewer_id {0}")]
    UnknownViewer(Uuid),
    #[error("discovery of viewer '{viewer}' ({url}) is unavailable: {reason}")]
    Unavailable { viewer: String, url: String, reason: String },
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
    /// The discovery action the URL opens (`view`, `view_comment`, `editnew`, `convert`, …).
    pub name: String,
    /// For `convert`: the extension of the file the conversion creates.
    pub target_ext: Option<String>,
    pub url: String,
}

/// One viewer's discovery as `/readyz` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DiscoveryStatus {
    #[serde(skip)]
    pub viewer: String,
    pub loaded: bool,
    pub error: Option<String>,
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
        for viewer in &config.viewers {
            metrics.discovery_pending(&viewer.name);
        }
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
                url: shown_source(&entry.config.discovery),
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
                let url = shown_source(&entry.config.discovery);
                tracing::warn!(viewer = %entry.config.name, %url, %reason, "discovery fetch failed");
                state.failed = Some((Instant::now(), reason.clone()));
                // A stale document beats none: keep serving it while the client is away.
                match &state.document {
                    Some(doc) => Ok(doc.clone()),
                    None => Err(DiscoveryError::Unavailable { viewer: entry.config.name.clone(), url, reason }),
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

    /// Each viewer's discovery, for `/readyz`'s body: by name, whether a document is loaded
    /// (sessions can open), and why the last fetch failed, if it did.
    pub fn status(&self) -> Vec<DiscoveryStatus> {
        self.entries
            .iter()
            .map(|entry| {
                let state = entry.state.read().unwrap_or_else(|p| p.into_inner());
                DiscoveryStatus {
                    viewer: entry.config.name.clone(),
                    loaded: state.document.is_some(),
                    error: state.failed.as_ref().map(|(_, reason)| reason.clone()),
                }
            })
            .collect()
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

    /// Chooses the action (see `choose`) and builds the iframe URL for a file of extension `ext`.
    pub async fn action_url(
        &self,
        viewer: &ViewerConfig,
        ext: &str,
        wanted: Wanted,
        wopi_src: &str,
        session_id: &str,
    ) -> Result<ChosenAction, DiscoveryError> {
        let no_action = || DiscoveryError::NoAction { viewer: viewer.name.clone(), ext: ext.to_string() };
        if viewer.extensions.as_ref().is_some_and(|allowed| !allowed.iter().any(|a| a == ext)) {
            return Err(no_action());
        }
        let doc = self.discovery(viewer.id).await?;
        let (action, chosen) = choose(&doc, viewer.net_zone.as_deref(), ext, wanted).ok_or_else(no_action)?;
        let params = action_url::ActionParams {
            wopi_src,
            lang: viewer.lang.as_deref().unwrap_or(&self.lang),
            host_session_id: session_id,
        };
        Ok(ChosenAction {
            action,
            name: chosen.name.clone(),
            target_ext: (!chosen.target_ext.is_empty()).then(|| chosen.target_ext.clone()),
            url: action_url::build(&chosen.urlsrc, &params),
        })
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
        offer.exts = doc.extensions(zone, VIEW_ACTIONS);
        if let Some(allowed) = &viewer.extensions {
            offer.exts.retain(|e| allowed.contains(e));
        }
        offer.actions = offer
            .exts
            .iter()
            .map(|ext| {
                // What a session asking for view or edit would open (edit: maybe by converting).
                let template = |wanted: Wanted| {
                    choose(doc, zone, ext, wanted).filter(|(a, _)| *a == wanted.action).map(|(_, a)| a.urlsrc.clone())
                };
                let edit = Wanted { may_convert: true, ..Wanted::plain(Action::Edit) };
                (ext.clone(), template(Wanted::plain(Action::View)), template(edit))
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
pub fn without_url(e: &reqwest::Error) -> String {
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

/// A discovery source as errors and logs may show it: a URL without user, password or query
/// (where credentials would be), or the file path.
pub fn shown_source(source: &str) -> String {
    match url::Url::parse(source) {
        Ok(mut url) if url.has_host() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        _ => source.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_shown_without_credentials() {
        assert_eq!(shown_source("https://u:secret@cool.test:9980/hosting/discovery?key=k#x"), "https://cool.test:9980/hosting/discovery");
        assert_eq!(shown_source("/etc/wopigate/discovery.xml"), "/etc/wopigate/discovery.xml");
    }

    fn doc(name: &str) -> Discovery {
        let path = format!("{}/tests/fixtures/discovery/{name}.xml", env!("CARGO_MANIFEST_DIR"));
        Discovery::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// A discovery with one app holding `actions`.
    fn word_app(actions: &str) -> Discovery {
        let xml = format!(r#"<wopi-discovery><net-zone name="external-http"><app name="Word">{actions}</app></net-zone></wopi-discovery>"#);
        Discovery::parse(&xml).unwrap()
    }

    const VIEW: Wanted = Wanted { action: Action::View, empty: false, mobile: false, may_convert: false };
    const EDIT: Wanted = Wanted { action: Action::Edit, empty: false, mobile: false, may_convert: true };

    /// (session action, discovery action name, target extension) chosen for `ext`.
    fn pick(doc: &Discovery, zone: Option<&str>, ext: &str, wanted: Wanted) -> Option<(Action, String, String)> {
        choose(doc, zone, ext, wanted).map(|(action, a)| (action, a.name.clone(), a.target_ext.clone()))
    }

    fn named(action: Action, name: &str) -> Option<(Action, String, String)> {
        Some((action, name.to_string(), String::new()))
    }

    #[test]
    fn collabora_view_falls_back_to_view_comment_then_edit() {
        let cool = doc("collabora");
        // PDF is offered only as view_comment (by extension and by MIME type).
        assert_eq!(pick(&cool, None, "pdf", VIEW), named(Action::View, "view_comment"));
        // Editing a PDF: no edit action, nothing to convert: a read-only view_comment session.
        assert_eq!(pick(&cool, None, "pdf", EDIT), named(Action::View, "view_comment"));
        // A real view action wins over edit.
        assert_eq!(pick(&cool, None, "sxw", VIEW), named(Action::View, "view"));
        // Most formats are only under edit: used read-only for viewing.
        assert_eq!(pick(&cool, None, "docx", VIEW), named(Action::View, "edit"));
        assert_eq!(pick(&cool, None, "docx", EDIT), named(Action::Edit, "edit"));
        // Collabora edits binary formats itself: no conversion.
        assert_eq!(pick(&cool, None, "doc", EDIT), named(Action::Edit, "edit"));
        // No editnew or mobile actions: the plain ones.
        let empty_mobile = Wanted { empty: true, mobile: true, ..EDIT };
        assert_eq!(pick(&cool, None, "docx", empty_mobile), named(Action::Edit, "edit"));
        assert_eq!(pick(&cool, None, "pdf", Wanted { mobile: true, ..VIEW }), named(Action::View, "view_comment"));
        assert_eq!(pick(&cool, None, "zip", VIEW), None);
    }

    #[test]
    fn office_editnew_mobile_and_convert() {
        let office = doc("office");
        let zone = Some("external-https");
        assert_eq!(pick(&office, zone, "docx", VIEW), named(Action::View, "view"));
        assert_eq!(pick(&office, zone, "docx", Wanted { mobile: true, ..VIEW }), named(Action::View, "mobileView"));
        assert_eq!(pick(&office, zone, "docx", EDIT), named(Action::Edit, "edit"));
        assert_eq!(pick(&office, zone, "docx", Wanted { empty: true, ..EDIT }), named(Action::Edit, "editnew"));
        // Office has no mobileEdit: mobile editing uses edit (editnew for empty files).
        assert_eq!(pick(&office, zone, "docx", Wanted { mobile: true, ..EDIT }), named(Action::Edit, "edit"));
        assert_eq!(pick(&office, zone, "docx", Wanted { mobile: true, empty: true, ..EDIT }), named(Action::Edit, "editnew"));
        // Binary formats: edit means convert, when the session may create the converted file.
        assert_eq!(pick(&office, zone, "doc", EDIT), Some((Action::Edit, "convert".into(), "docx".into())));
        assert_eq!(pick(&office, zone, "xls", EDIT), Some((Action::Edit, "convert".into(), "xlsx".into())));
        assert_eq!(pick(&office, zone, "doc", Wanted { may_convert: false, ..EDIT }), named(Action::View, "view"));
        assert_eq!(pick(&office, zone, "doc", VIEW), named(Action::View, "view"));
        // The internal zone has only view for docx, and nothing for doc.
        assert_eq!(pick(&office, None, "docx", EDIT), named(Action::View, "view"));
        assert_eq!(pick(&office, None, "doc", EDIT), None);
    }

    #[test]
    fn onlyoffice_mobile_embed_and_convert() {
        let oo = doc("onlyoffice");
        assert_eq!(pick(&oo, None, "docx", VIEW), named(Action::View, "view"));
        assert_eq!(pick(&oo, None, "docx", Wanted { mobile: true, ..VIEW }), named(Action::View, "mobileView"));
        assert_eq!(pick(&oo, None, "docx", Wanted { mobile: true, ..EDIT }), named(Action::Edit, "mobileEdit"));
        assert_eq!(pick(&oo, None, "docx", Wanted { empty: true, mobile: true, ..EDIT }), named(Action::Edit, "editnew"));
        assert_eq!(pick(&oo, None, "docx", Wanted { empty: true, ..EDIT }), named(Action::Edit, "editnew"));
        for (ext, target) in [("doc", "docx"), ("odt", "docx"), ("xls", "xlsx"), ("ppt", "pptx")] {
            assert_eq!(pick(&oo, None, ext, EDIT), Some((Action::Edit, "convert".into(), target.into())), "{ext}");
            assert_eq!(pick(&oo, None, ext, VIEW), named(Action::View, "view"), "{ext}");
        }
        // Without view and mobileView, embedview is the view (a discovery with only that).
        let embed_only = word_app(
            r#"<action name="embedview" ext="docx" urlsrc="http://ds.test/embed?"/>
               <action name="mobileView" ext="docx" urlsrc="http://ds.test/mobile?"/>"#,
        );
        assert_eq!(pick(&embed_only, None, "docx", VIEW), named(Action::View, "embedview"));
        assert_eq!(pick(&embed_only, None, "docx", Wanted { mobile: true, ..VIEW }), named(Action::View, "mobileView"));
        // A convert action that does not say what it produces is not used.
        let no_target = word_app(
            r#"<action name="view" ext="doc" urlsrc="http://ds.test/view?"/>
               <action name="convert" ext="doc" urlsrc="http://ds.test/convert?"/>"#,
        );
        assert_eq!(pick(&no_target, None, "doc", EDIT), named(Action::View, "view"));
    }
}
