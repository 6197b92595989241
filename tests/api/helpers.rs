//! Starting the real app on a random port with a real store in a temporary directory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use tempfile::TempDir;
use uuid::Uuid;
use wopigate::config::Config;
use wopigate::Application;

pub const TOKEN_SECRET: &str = "test-token-secret-0123456789abcdef-0123456789";
pub const CALLER_SECRET: &str = "test-caller-secret-0123456789abcdef-012345678";
pub const COLLABORA: Uuid = Uuid::from_u128(0x11111111_1111_4111_8111_111111111111);
pub const ONLYOFFICE: Uuid = Uuid::from_u128(0x22222222_2222_4222_8222_222222222222);
pub const OFFICE: Uuid = Uuid::from_u128(0x33333333_3333_4333_8333_333333333333);

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn viewers_json() -> String {
    json!([
        {"id": COLLABORA, "name": "Collabora", "discovery": fixture("discovery/collabora.xml"), "lang": "de-DE"},
        {"id": ONLYOFFICE, "name": "ONLYOFFICE", "discovery": fixture("discovery/onlyoffice.xml"),
         "extensions": ["docx", "xlsx", "pdf"]},
        {"id": OFFICE, "name": "Office", "discovery": fixture("discovery/office.xml"), "net_zone": "external-https",
         "public_url": "https://wopi.front.test/gw"},
    ])
    .to_string()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub data: PathBuf,
    pub client: reqwest::Client,
    _dir: Option<TempDir>,
}

/// The environment every test app starts from; `extra` overrides or adds variables.
pub fn base_env(port: u16, data: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("WOPIGATE_BIND".into(), format!("127.0.0.1:{port}")),
        ("WOPIGATE_PUBLIC_URL".into(), format!("http://127.0.0.1:{port}")),
        ("WOPIGATE_DATA_DIR".into(), data.display().to_string()),
        ("WOPIGATE_TOKEN_SECRET".into(), TOKEN_SECRET.into()),
        ("WOPIGATE_CALLER_JWT_SECRET".into(), CALLER_SECRET.into()),
        ("WOPIGATE_VIEWERS".into(), viewers_json()),
        ("WOPIGATE_DISCOVERY_RETRY_SECS".into(), "0".into()),
    ];
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

pub async fn spawn_app() -> TestApp {
    spawn_with(&[]).await
}

pub async fn spawn_with(extra: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let mut app = spawn_on(&data, extra).await;
    app._dir = Some(dir);
    app
}

/// Starts an app on an existing data directory (several replicas on one store).
pub async fn spawn_on(data: &Path, extra: &[(&str, &str)]) -> TestApp {
    let port = free_port();
    let config = Config::from_vars(base_env(port, data, extra)).expect("test config is valid");
    let app = Application::build(config).await.expect("app builds");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        data: data.to_path_buf(),
        client: reqwest::Client::new(),
        _dir: None,
    }
}

/// A caller JWT as the platform would sign it.
pub fn caller_jwt(sub: &str, name: &str) -> String {
    caller_jwt_claims(json!({"sub": sub, "name": name, "exp": now() + 600}))
}

pub fn caller_jwt_claims(claims: Value) -> String {
    encode(&Header::default(), &claims, &EncodingKey::from_secret(CALLER_SECRET.as_bytes())).unwrap()
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl TestApp {
    /// Puts a user file where a person would drop it: `<data>/<owner>/<path>`.
    pub fn put_file(&self, owner: &str, path: &str, content: &[u8]) -> PathBuf {
        let full = self.data.join(owner).join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, content).unwrap();
        full
    }

    pub fn put_share(&self, id: &str, manifest: Value) {
        let dir = self.data.join(".wopigate/objects/shares");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{id}.json")), manifest.to_string()).unwrap();
    }

    /// `PUT /api/v4/file/viewerSession` with a raw body; returns the envelope.
    pub async fn session_raw(&self, body: &str, jwt: Option<&str>, ticket: Option<&str>) -> Value {
        let mut req = self
            .client
            .put(format!("{}/api/v4/file/viewerSession", self.address))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(jwt) = jwt {
            req = req.bearer_auth(jwt);
        }
        if let Some(ticket) = ticket {
            req = req.header("X-Cr-Purchase-Ticket", ticket);
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "the API always answers HTTP 200");
        response.json().await.unwrap()
    }

    pub async fn session(&self, body: Value, jwt: Option<&str>) -> Value {
        self.session_raw(&body.to_string(), jwt, None).await
    }

    /// Opens `uri` for `user` with Collabora and the given action.
    pub async fn open(&self, user: &str, uri: &str, action: &str) -> Value {
        let jwt = caller_jwt(user, "Test User");
        self.session(json!({"uri": uri, "viewer_id": COLLABORA, "preferred_action": action}), Some(&jwt)).await
    }
}

/// Asserts a failure envelope and returns its message.
pub fn assert_code(envelope: &Value, code: u64) -> String {
    assert_eq!(envelope["code"], json!(code), "unexpected envelope: {envelope}");
    if code != 0 {
        let msg = envelope["msg"].as_str().unwrap_or_default().to_string();
        assert!(!msg.is_empty(), "a failure needs a message: {envelope}");
        let cid = envelope["correlation_id"].as_str().unwrap_or_default();
        assert!(Uuid::parse_str(cid).is_ok(), "correlation_id must be a uuid: {envelope}");
        msg
    } else {
        String::new()
    }
}

/// Every file below `dir`, relative, sorted: to prove a refused request changed nothing.
pub fn snapshot(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Decodes a JWT's claims without verifying it (to look inside our own tokens).
pub fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}
