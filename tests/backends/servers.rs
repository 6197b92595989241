//! Real servers for the tests, on 127.0.0.1, each in its own temporary directory: Redis
//! (`redis-server`) and Garage (an S3-compatible store). Binaries come from `PATH`, or from
//! `WOPIGATE_TEST_REDIS_SERVER` / `WOPIGATE_TEST_GARAGE` (the test script installs them).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn binary(var: &str, name: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(var) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.exists())
}

/// The servers are required (the test script sets this): a missing one fails instead of
/// skipping.
pub fn required() -> bool {
    std::env::var("WOPIGATE_TEST_REQUIRE_BACKENDS").is_ok_and(|v| v == "1")
}

/// Returns `None` (after saying so) when a binary is missing and the servers are optional.
pub fn available(var: &str, name: &str) -> Option<PathBuf> {
    match binary(var, name) {
        Some(path) => Some(path),
        None if required() => panic!("{name} is required (set {var} or put it on PATH)"),
        None => {
            eprintln!("SKIPPED: {name} not found; ./scripts/test.sh installs it");
            None
        }
    }
}

fn wait_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {port}");
}

/// A server process that can be killed (a crash) and started again with the same command;
/// killed when dropped.
pub struct ServerProcess {
    command: Box<dyn Fn() -> Command + Send>,
    port: u16,
    name: &'static str,
    child: Option<Child>,
}

impl ServerProcess {
    fn start(name: &'static str, port: u16, command: impl Fn() -> Command + Send + 'static) -> ServerProcess {
        let mut server = ServerProcess { command: Box::new(command), port, name, child: None };
        server.resume();
        server
    }

    /// Kills the server (a crash, for fault tests).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn resume(&mut self) {
        let mut cmd = (self.command)();
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("server starts");
        wait_port(self.port, &mut child, self.name);
        self.child = Some(child);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Redis {
    pub port: u16,
    pub process: ServerProcess,
    _dir: TempDir,
}

impl Redis {
    pub fn start() -> Option<Redis> {
        let binary = available("WOPIGATE_TEST_REDIS_SERVER", "redis-server")?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let path = dir.path().to_path_buf();
        let process = ServerProcess::start("redis-server", port, move || {
            let mut cmd = Command::new(&binary);
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&path);
            cmd
        });
        Some(Redis { port, process, _dir: dir })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

pub struct Garage {
    pub s3_port: u16,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    config: PathBuf,
    binary: PathBuf,
    pub process: ServerProcess,
    _dir: TempDir,
}

impl Garage {
    /// A one-node Garage with a bucket and a key allowed on it.
    pub fn start() -> Option<Garage> {
        let binary = available("WOPIGATE_TEST_GARAGE", "garage")?;
        let dir = tempfile::tempdir().unwrap();
        let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
        let secret: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3_port}"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
"#,
                meta = dir.path().join("meta").display(),
                data = dir.path().join("data").display(),
            ),
        )
        .unwrap();
        let (server_binary, server_config) = (binary.clone(), config.clone());
        let process = ServerProcess::start("garage", s3_port, move || {
            let mut cmd = Command::new(&server_binary);
            cmd.arg("-c").arg(&server_config).arg("server").env("RUST_LOG", "warn");
            cmd
        });
        let mut garage = Garage {
            s3_port,
            bucket: "wopigate".into(),
            key_id: String::new(),
            secret: String::new(),
            config,
            binary,
            process,
            _dir: dir,
        };
        let node = garage.cli(&["node", "id", "-q"]);
        let node = node.trim().split('@').next().unwrap().to_string();
        garage.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        garage.cli(&["layout", "apply", "--version", "1"]);
        garage.cli(&["bucket", "create", "wopigate"]);
        let key = garage.cli(&["key", "create", "wopigate-test"]);
        garage.key_id = field(&key, "Key ID");
        garage.secret = field(&key, "Secret key");
        garage.cli(&["bucket", "allow", "--read", "--write", "--owner", "wopigate", "--key", "wopigate-test"]);
        Some(garage)
    }

    fn cli(&self, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(&self.binary).arg("-c").arg(&self.config).args(args).output().unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            // The node needs a moment after start before it answers its CLI.
            if Instant::now() > deadline {
                panic!("garage {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// A client of the bucket of its own, to look at (or plant) objects behind wopigate's back.
    pub fn client(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_region("garage")
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.key_id)
            .with_secret_access_key(&self.secret)
            .with_allow_http(true)
            .with_disable_tagging(true)
            .build()
            .unwrap()
    }

    /// This bucket with Redis' locks (Garage ignores conditional writes: commits need Redis).
    pub fn env_with_redis(&self, prefix: &str, redis: &Redis) -> Vec<(String, String)> {
        let mut env = self.env(prefix);
        env.push(("WOPIGATE_LOCKS".into(), "redis".into()));
        env.push(("WOPIGATE_REDIS_URL".into(), redis.url()));
        env
    }

    /// The environment that points wopigate at this bucket.
    pub fn env(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            ("WOPIGATE_STORE".into(), "s3".into()),
            ("WOPIGATE_S3_ENDPOINT".into(), self.endpoint()),
            ("WOPIGATE_S3_REGION".into(), "garage".into()),
            ("WOPIGATE_S3_BUCKET".into(), self.bucket.clone()),
            ("WOPIGATE_S3_ACCESS_KEY_ID".into(), self.key_id.clone()),
            ("WOPIGATE_S3_SECRET_ACCESS_KEY".into(), self.secret.clone()),
            ("WOPIGATE_S3_PREFIX".into(), prefix.into()),
        ]
    }
}

/// `Key ID: GK…` style lines of Garage's CLI output.
fn field(output: &str, name: &str) -> String {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(name).map(|rest| rest.trim_start_matches([':', ' ', '\t']).trim().to_string()))
        .unwrap_or_else(|| panic!("no '{name}' in garage output:\n{output}"))
}
