//! wopigate replicas as real processes sharing only the key ring, an S3 bucket and Redis.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jsonwebtoken::{encode, EncodingKey, Header};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::{json, Value};

use crate::servers::{free_port, Garage, Redis};

pub const TOKEN_SECRET: &str = "cluster-token-secret-cluster-token-secret-01";
pub const CALLER_SECRET: &str = "cluster-caller-secret-cluster-caller-secret";
pub const VIEWER: &str = "11111111-1111-4111-8111-111111111111";

pub struct Replica {
    pub port: u16,
    child: Option<Child>,
    _data: tempfile::TempDir,
}

impl Replica {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGKILL: no shutdown, no cleanup.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts one wopigate process with the cluster's key ring and viewer, `env` on top; waits until
/// it is ready. `data`: a data directory to share with other replicas (else a fresh one).
pub async fn spawn_replica(client: &reqwest::Client, env: &[(String, String)], data: Option<&Path>) -> Replica {
    let port = free_port();
    let own = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wopigate"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WOPIGATE_BIND", format!("127.0.0.1:{port}"))
        .env("WOPIGATE_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("WOPIGATE_DATA_DIR", data.unwrap_or(own.path()))
        .env("WOPIGATE_TOKEN_SECRET", TOKEN_SECRET)
        .env("WOPIGATE_CALLER_JWT_SECRET", CALLER_SECRET)
        .env("WOPIGATE_VIEWERS", viewers())
        .env("WOPIGATE_BACKEND_TIMEOUT_SECS", "2")
        .env("WOPIGATE_LOG_FORMAT", "text")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Ready (store and locks) with the viewer's discovery loaded, as the tests expect.
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await {
            let ok = r.status().is_success();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            if ok && body["discovery"].as_object().is_some_and(|d| d.values().all(|v| v["loaded"] == true)) {
                break;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("replica exited early: {status}");
        }
        assert!(Instant::now() < deadline, "replica did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Replica { port, child: Some(child), _data: own }
}

pub struct Cluster {
    pub garage: Garage,
    pub redis: Redis,
    pub prefix: String,
    pub replicas: Vec<Replica>,
    pub client: reqwest::Client,
}

fn viewers() -> String {
    let discovery = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/discovery/collabora.xml");
    json!([{"id": VIEWER, "name": "Collabora", "discovery": discovery}]).to_string()
}

impl Cluster {
    /// Garage, Redis and `n` replicas; `None` when the servers are not installed (optional).
    pub async fn start(n: usize, extra: &[(&str, &str)]) -> Option<Cluster> {
        let garage = Garage::start()?;
        let redis = Redis::start()?;
        let prefix = format!("cluster-{}", uuid::Uuid::new_v4().simple());
        let mut cluster = Cluster { garage, redis, prefix, replicas: Vec::new(), client: reqwest::Client::new() };
        for _ in 0..n {
            let replica = cluster.spawn(extra).await;
            cluster.replicas.push(replica);
        }
        Some(cluster)
    }

    pub async fn spawn(&self, extra: &[(&str, &str)]) -> Replica {
        let mut env: Vec<(String, String)> =
            vec![("WOPIGATE_LOCKS".into(), "redis".into()), ("WOPIGATE_REDIS_URL".into(), self.redis.url())];
        env.extend(self.garage.env(&self.prefix));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        spawn_replica(&self.client, &env, None).await
    }

    /// The cluster's bucket, as the platform (or a test) sees it.
    pub fn bucket(&self) -> object_store::aws::AmazonS3 {
        self.garage.client()
    }

    /// Puts a user file straight into the bucket, as the platform would.
    pub async fn seed(&self, owner: &str, path: &str, content: &[u8]) {
        let key = ObjectPath::from(format!("{}/{owner}/{path}", self.prefix));
        self.bucket().put(&key, PutPayload::from(content.to_vec())).await.unwrap();
    }

    /// A viewer session opened on `replica`: (token, file id).
    pub async fn session(&self, replica: usize, user: &str, uri: &str) -> (String, String) {
        open_session(&self.client, &self.replicas[replica], user, uri).await
    }

    pub fn file_url(&self, replica: usize, fid: &str, suffix: &str, token: &str) -> String {
        self.replicas[replica].url(&format!("/wopi/files/{fid}{suffix}?access_token={token}"))
    }
}

/// An edit session for `user` on `uri`, opened on `replica`: (token, file id).
pub async fn open_session(client: &reqwest::Client, replica: &Replica, user: &str, uri: &str) -> (String, String) {
    open_session_at(client, replica, user, uri, "").await
}

/// A session on `version` of the file (empty: the current one); (token, file id).
pub async fn open_session_at(client: &reqwest::Client, replica: &Replica, user: &str, uri: &str, version: &str) -> (String, String) {
    let jwt = encode(
        &Header::default(),
        &json!({"sub": user, "name": user, "exp": chrono::Utc::now().timestamp() + 600}),
        &EncodingKey::from_secret(CALLER_SECRET.as_bytes()),
    )
    .unwrap();
    let envelope: Value = client
        .put(replica.url("/api/v4/file/viewerSession"))
        .bearer_auth(jwt)
        .body(json!({"uri": uri, "viewer_id": VIEWER, "preferred_action": "edit", "version": version}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(envelope["code"], 0, "{envelope}");
    let token = envelope["data"]["session"]["access_token"].as_str().unwrap().to_string();
    let claims = wopigate::token::inspect(&token).expect("a wopigate access token");
    (token, claims.fid)
}
