//! Starting the real app on a random port with a real store in a temporary directory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use tempfile::TempDir;
use uuid::Uuid;
use std::sync::Arc;
use wopigate::clock::{Clock, SystemClock};
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
        {"id": COLLABORA, "name": "Collabora", "discovery": fixture("discovery/collabora.xml"), "lang": "de-DE",
         "post_message_origin": "https://drive.example.test"},
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
    /// `WOPIGATE_METRICS_BIND`'s port, when the test set it.
    pub metrics_port: Option<u16>,
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
    spawn_on_with_clock(data, extra, Arc::new(SystemClock)).await
}

/// An app whose clock the test moves (lock expiry).
pub async fn spawn_with_clock(extra: &[(&str, &str)], clock: Arc<dyn Clock>) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let mut app = spawn_on_with_clock(&data, extra, clock).await;
    app._dir = Some(dir);
    app
}

pub async fn spawn_on_with_clock(data: &Path, extra: &[(&str, &str)], clock: Arc<dyn Clock>) -> TestApp {
    let port = free_port();
    let config = Config::from_vars(base_env(port, data, extra)).expect("test config is valid");
    let app = Application::build_with_clock(config, clock).await.expect("app builds");
    let port = app.port();
    let metrics_port = app.metrics_port();
    tokio::spawn(app.run_until_stopped());
    TestApp { metrics_port, ..TestApp::on_port(port, data) }
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
    /// Talks to a server already listening on `port` with its store in `data` (the binary).
    pub fn on_port(port: u16, data: &Path) -> TestApp {
        let address = format!("http://127.0.0.1:{port}");
        TestApp { address, port, metrics_port: None, data: data.to_path_buf(), client: reqwest::Client::new(), _dir: None }
    }

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
        // Cloudreve omits `data` when there is none (its schema has no null there).
        assert!(envelope.get("data").is_none(), "a failure has no data, not even null: {envelope}");
        msg
    } else {
        assert!(envelope["data"].is_object(), "a success has data: {envelope}");
        assert!(envelope.get("correlation_id").is_none(), "only failures have a correlation_id: {envelope}");
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

/// The claims of one of our tokens, without verifying it (to look inside).
pub fn claims_of(token: &str) -> Value {
    serde_json::to_value(wopigate::token::inspect(token).expect("a wopigate access token")).unwrap()
}

/// `claims` (as `claims_of` gives them, perhaps changed) as a JWT of the format tokens had
/// before the compact one, signed with `secret` under `kid`: servers still accept those.
pub fn legacy_token(claims: &Value, kid: &str, secret: &str) -> String {
    let mut claims = claims.clone();
    let iat = claims["iat"].clone();
    let object = claims.as_object_mut().unwrap();
    object.entry("nbf").or_insert(iat);
    object.entry("aud").or_insert(json!("wopigate"));
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_string());
    encode(&header, &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// A viewer session as the WOPI side sees it.
#[derive(Clone, Debug)]
pub struct Session {
    pub token: String,
    pub fid: String,
    pub expires: i64,
    pub action: String,
}

impl Session {
    pub fn from_envelope(envelope: &Value) -> Session {
        assert_eq!(envelope["code"], 0, "session failed: {envelope}");
        let token = envelope["data"]["session"]["access_token"].as_str().unwrap().to_string();
        Session {
            fid: claims_of(&token)["fid"].as_str().unwrap().to_string(),
            expires: envelope["data"]["session"]["expires"].as_i64().unwrap(),
            action: envelope["data"]["session"]["action"].as_str().unwrap().to_string(),
            token,
        }
    }
}

impl TestApp {
    /// Opens `uri` with Collabora for `user`, asking for `action`.
    pub async fn session_for(&self, user: &str, uri: &str, action: &str) -> Session {
        Session::from_envelope(&self.open(user, uri, action).await)
    }

    pub fn file_url(&self, fid: &str, suffix: &str, token: &str) -> String {
        format!("{}/wopi/files/{fid}{suffix}?access_token={token}", self.address)
    }

    pub async fn check_file_info(&self, s: &Session) -> reqwest::Response {
        self.client.get(self.file_url(&s.fid, "", &s.token)).send().await.unwrap()
    }

    pub async fn info(&self, s: &Session) -> Value {
        let r = self.check_file_info(s).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// `POST /wopi/files/{id}` with an override.
    pub fn op(&self, s: &Session, override_: &str) -> reqwest::RequestBuilder {
        self.client.post(self.file_url(&s.fid, "", &s.token)).header("X-WOPI-Override", override_)
    }

    pub fn put(&self, s: &Session, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        self.client.post(self.file_url(&s.fid, "/contents", &s.token)).header("X-WOPI-Override", "PUT").body(body)
    }

    pub async fn contents(&self, s: &Session) -> (u16, Vec<u8>) {
        let r = self.client.get(self.file_url(&s.fid, "/contents", &s.token)).send().await.unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }

    pub async fn lock(&self, s: &Session, id: &str) -> reqwest::Response {
        self.op(s, "LOCK").header("X-WOPI-Lock", id).send().await.unwrap()
    }
}

pub fn lock_header(r: &reqwest::Response) -> Option<String> {
    r.headers().get("X-WOPI-Lock").map(|v| v.to_str().unwrap().to_string())
}

impl TestApp {
    /// GetFileWopiSrc (`POST /wopi/ecosystem`) with `token`, naming `native`.
    pub async fn wopi_src(&self, token: &str, native: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/wopi/ecosystem?access_token={token}", self.address))
            .header("X-WOPI-Override", "GET_WOPI_SRC_WITH_ACCESS_TOKEN")
            .header("X-WOPI-HostNativeFileName", native)
            .send()
            .await
            .unwrap()
    }

    /// The session a GetFileWopiSrc answer (or a PutRelativeFile `Url`) opens.
    pub fn session_from_url(url: &str) -> Session {
        let parsed = url::Url::parse(url).unwrap();
        let token = parsed.query_pairs().find(|(k, _)| k == "access_token").unwrap().1.into_owned();
        let claims = claims_of(&token);
        Session {
            fid: claims["fid"].as_str().unwrap().to_string(),
            expires: claims["exp"].as_i64().unwrap() * 1000,
            action: claims["act"].as_str().unwrap().to_string(),
            token,
        }
    }

    /// Opens `uri` anonymously with Collabora.
    pub async fn open_anonymous(&self, uri: &str, action: &str) -> Value {
        self.session(json!({"uri": uri, "viewer_id": COLLABORA, "preferred_action": action}), None).await
    }
}
