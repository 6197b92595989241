//! Fleet benchmark: how many open documents one replica carries. `bench/fleet.sh` runs it.
//!
//! Simulated WOPI clients with Collabora's cadence, time compressed by `--compression`: each one
//! is one open document of one user. It opens (viewerSession on the platform API, then
//! CheckFileInfo + GetFile + Lock), then while open: an autosave PutFile every 5 minutes,
//! RefreshLock every 15 minutes, CheckFileInfo on a reconnect every 30 minutes; after an editing
//! session (an hour on average) Unlock, and the user opens the document again. Each request goes
//! to the next replica (round-robin, like a load balancer in front of stateless replicas).
//!
//! For each N of `--steps` the fleet grows to N open documents (the new ones open over
//! `--ramp` seconds), then runs `--steady` seconds, over which it measures latency per
//! operation, errors, CPU/RSS of every process, the machine's busy and stolen CPU, and the disk's
//! and S3's own floors. A topology stops growing at the first step with an error response, or
//! with a p99 of `--p99-ms` or more (of an operation with at least 100 samples) in two windows in
//! a row (this machine is shared: one window can fail on another job's burst). Topologies: three
//! replicas on S3 (Garage) + Redis locks, and one replica on the local store.
//!
//!     cargo run --release --example fleet -- --wopigate target/release/wopigate --out target/fleet-results.md

#[allow(dead_code)]
#[path = "../tests/backends/servers.rs"]
mod servers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_util::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::sleep;

use servers::{free_port, Garage, Redis};

const TOKEN_SECRET: &str = "fleet-token-secret-fleet-token-secret-000001";
const CALLER_SECRET: &str = "fleet-caller-secret-fleet-caller-secret-0001";
const VIEWER: &str = "11111111-1111-4111-8111-111111111111";
/// The lock string Collabora sends (one per document; the same for every call of a session).
const LOCK_PREFIX: &str = "cool-lock";

#[derive(Parser, Debug, Clone)]
#[command(about = "Fleet benchmark: simulated Collabora clients against wopigate replicas", args_override_self = true)]
struct Args {
    /// The wopigate binary to run.
    #[arg(long)]
    wopigate: PathBuf,
    /// Open documents at each step (the fleet grows step by step).
    #[arg(long, value_delimiter = ',', default_value = "100,200,400,600,800,1200,1600,2400,3200")]
    steps: Vec<usize>,
    /// Real time / benchmark time: at 60, a 5-minute autosave happens every 5 seconds.
    #[arg(long, default_value_t = 60.0)]
    compression: f64,
    /// Seconds (benchmark time) over which a step's new documents open.
    #[arg(long, default_value_t = 10.0)]
    ramp: f64,
    /// Seconds (benchmark time) measured at each step.
    #[arg(long, default_value_t = 30.0)]
    steady: f64,
    /// Document size in bytes (GetFile at open, every PutFile).
    #[arg(long, default_value_t = 200 * 1024)]
    size: usize,
    /// Documents per user (document i belongs to user i / this).
    #[arg(long, default_value_t = 3)]
    files_per_user: usize,
    /// Replicas on S3 + Redis.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Which topologies: s3, local, or both.
    #[arg(long, default_value = "both")]
    topology: String,
    /// A step passes when every operation's p99 is under this and nothing failed.
    #[arg(long, default_value_t = 50.0)]
    p99_ms: f64,
    /// Exit non-zero on any error response (the CI smoke run).
    #[arg(long)]
    fail_on_error: bool,
    /// Where the Markdown results go.
    #[arg(long, default_value = "target/fleet-results.md")]
    out: PathBuf,
}

/// The fewest samples whose p99 is judged.
const MIN_SAMPLES: usize = 100;

/// Collabora's intervals in real seconds.
const AUTOSAVE: f64 = 5.0 * 60.0;
const REFRESH_LOCK: f64 = 15.0 * 60.0;
const RECONNECT: f64 = 30.0 * 60.0;
const SESSION: f64 = 60.0 * 60.0;
/// wopigate's autosave window (`WOPIGATE_AUTOSAVE_WINDOW_SECS`' default), compressed too.
const AUTOSAVE_WINDOW: f64 = 600.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    ViewerSession,
    OpenCheckFileInfo,
    GetFile,
    Lock,
    PutFile,
    RefreshLock,
    ReconnectCheckFileInfo,
    Unlock,
}

const OPS: [Op; 8] = [
    Op::ViewerSession,
    Op::OpenCheckFileInfo,
    Op::GetFile,
    Op::Lock,
    Op::PutFile,
    Op::RefreshLock,
    Op::ReconnectCheckFileInfo,
    Op::Unlock,
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::ViewerSession => "viewerSession",
            Op::OpenCheckFileInfo => "CheckFileInfo (open)",
            Op::GetFile => "GetFile",
            Op::Lock => "Lock",
            Op::PutFile => "PutFile",
            Op::RefreshLock => "RefreshLock",
            Op::ReconnectCheckFileInfo => "CheckFileInfo (reconnect)",
            Op::Unlock => "Unlock",
        }
    }
}

/// What the clients measured; `measuring` is false between steps' windows (those samples are
/// dropped, their errors still counted).
#[derive(Default)]
struct Recorder {
    measuring: bool,
    latencies: BTreeMap<Op, Vec<u32>>,
    errors: BTreeMap<Op, usize>,
    unmeasured_errors: usize,
    total_errors: usize,
    /// Microseconds a timer fired late (the driver's own saturation).
    lag: Vec<u32>,
    first_errors: Vec<String>,
}

impl Recorder {
    fn take(&mut self) -> (BTreeMap<Op, Vec<u32>>, BTreeMap<Op, usize>, Vec<u32>, usize) {
        let unmeasured = std::mem::take(&mut self.unmeasured_errors);
        (std::mem::take(&mut self.latencies), std::mem::take(&mut self.errors), std::mem::take(&mut self.lag), unmeasured)
    }
}

struct Ctx {
    http: reqwest::Client,
    ports: Vec<u16>,
    next: AtomicUsize,
    doc: Bytes,
    args: Args,
    recorder: Mutex<Recorder>,
    stop: watch::Receiver<bool>,
    /// The bucket, for S3's floor (S3 topology only).
    bucket: Option<object_store::aws::AmazonS3>,
}

impl Ctx {
    /// The next replica's base URL (round-robin).
    fn base(&self) -> String {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.ports.len();
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    fn interval(&self, real_secs: f64) -> Duration {
        Duration::from_secs_f64(real_secs / self.args.compression)
    }

    fn record(&self, op: Op, took: Duration, outcome: Result<(), String>) {
        let mut r = self.recorder.lock().unwrap();
        match outcome {
            Ok(()) if r.measuring => r.latencies.entry(op).or_default().push(took.as_micros().min(u32::MAX as u128) as u32),
            Ok(()) => {}
            Err(e) => {
                r.total_errors += 1;
                if r.measuring {
                    *r.errors.entry(op).or_default() += 1;
                } else {
                    r.unmeasured_errors += 1;
                }
                if r.first_errors.len() < 10 {
                    eprintln!("fleet: {} failed: {e}", op.name());
                    r.first_errors.push(format!("{}: {e}", op.name()));
                }
            }
        }
    }

    fn record_lag(&self, late: Duration) {
        let mut r = self.recorder.lock().unwrap();
        if r.measuring {
            r.lag.push(late.as_micros().min(u32::MAX as u128) as u32);
        }
    }

    /// Sends one request, times it to the end of its body, records it; the body when 2xx.
    async fn call(&self, op: Op, request: reqwest::RequestBuilder) -> Option<Bytes> {
        let started = Instant::now();
        let result = async {
            let response = request.send().await.map_err(|e| format!("{e}"))?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| format!("{e}"))?;
            if !status.is_success() {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])));
            }
            Ok(body)
        }
        .await;
        let took = started.elapsed();
        match result {
            Ok(body) => {
                self.record(op, took, Ok(()));
                Some(body)
            }
            Err(e) => {
                self.record(op, took, Err(e));
                None
            }
        }
    }
}

fn owner(doc: usize, files_per_user: usize) -> String {
    format!("user{}", doc / files_per_user)
}

fn file_name(doc: usize) -> String {
    format!("document-{doc}.docx")
}

/// Collabora's echo of a `LastModifiedTime` (`X-COOL-WOPI-Timestamp`): six fractional digits.
fn echo(last_modified: &str) -> Option<String> {
    let time = chrono::DateTime::parse_from_rfc3339(last_modified).ok()?;
    Some(time.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

fn last_modified(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v["LastModifiedTime"].as_str().map(str::to_string)
}

/// One open document: the session's token and file id, Collabora's lock and timestamp.
struct Open {
    token: String,
    fid: String,
    lock: String,
    timestamp: Option<String>,
}

impl Open {
    fn url(&self, ctx: &Ctx, suffix: &str) -> String {
        format!("{}/wopi/files/{}{suffix}?access_token={}", ctx.base(), self.fid, self.token)
    }
}

/// viewerSession, CheckFileInfo, GetFile, Lock; `None` when one of them failed (recorded).
async fn open(ctx: &Ctx, doc: usize) -> Option<Open> {
    let user = owner(doc, ctx.args.files_per_user);
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": user, "name": user, "exp": chrono::Utc::now().timestamp() + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(CALLER_SECRET.as_bytes()),
    )
    .ok()?;
    let uri = format!("cloudreve://my/{}", file_name(doc));
    let request = ctx
        .http
        .put(format!("{}/api/v4/file/viewerSession", ctx.base()))
        .bearer_auth(jwt)
        .header("Content-Type", "application/json")
        .body(json!({"uri": uri, "viewer_id": VIEWER, "preferred_action": "edit"}).to_string());
    let body = ctx.call(Op::ViewerSession, request).await?;
    let envelope: Value = serde_json::from_slice(&body).ok()?;
    let Some(token) = envelope["data"]["session"]["access_token"].as_str() else {
        ctx.record(Op::ViewerSession, Duration::ZERO, Err(format!("no session in {envelope}")));
        return None;
    };
    let fid = wopigate::token::inspect(token)?.fid;
    let mut open = Open { token: token.to_string(), fid, lock: format!("{LOCK_PREFIX}{doc:08x}"), timestamp: None };
    let info = ctx.call(Op::OpenCheckFileInfo, ctx.http.get(open.url(ctx, ""))).await?;
    open.timestamp = last_modified(&info);
    ctx.call(Op::GetFile, ctx.http.get(open.url(ctx, "/contents"))).await?;
    let lock = ctx.http.post(open.url(ctx, "")).header("X-WOPI-Override", "LOCK").header("X-WOPI-Lock", &open.lock);
    ctx.call(Op::Lock, lock).await?;
    Some(open)
}

/// An autosave of the whole document, as Collabora sends it; a few bytes differ each time so
/// that no store can deduplicate it.
async fn autosave(ctx: &Ctx, open: &mut Open, doc: usize, n: u64) {
    let mut body = ctx.doc.to_vec();
    body[..8].copy_from_slice(&(doc as u64).to_le_bytes());
    body[8..16].copy_from_slice(&n.to_le_bytes());
    let mut request = ctx
        .http
        .post(open.url(ctx, "/contents"))
        .header("X-WOPI-Override", "PUT")
        .header("X-WOPI-Lock", &open.lock)
        .header("X-COOL-WOPI-IsAutosave", "true")
        .header("X-COOL-WOPI-IsExitSave", "false")
        .header("X-COOL-WOPI-IsModifiedByUser", "true")
        .header("Content-Type", "application/octet-stream")
        .body(body);
    if let Some(stamp) = open.timestamp.as_deref().and_then(echo) {
        request = request.header("X-COOL-WOPI-Timestamp", stamp);
    }
    if let Some(answer) = ctx.call(Op::PutFile, request).await {
        open.timestamp = last_modified(&answer).or(open.timestamp.take());
    }
}

async fn lock_op(ctx: &Ctx, open: &Open, op: Op, name: &str) {
    let request = ctx.http.post(open.url(ctx, "")).header("X-WOPI-Override", name).header("X-WOPI-Lock", &open.lock);
    ctx.call(op, request).await;
}

/// One simulated client: opens document `doc` after `delay`, follows the cadence, closes and
/// reopens at the end of each editing session, until told to stop (then closes).
async fn client(ctx: Arc<Ctx>, doc: usize, delay: Duration) {
    let mut stop = ctx.stop.clone();
    let uniform = |lo: f64, hi: f64| rand::thread_rng().gen_range(lo..hi);
    tokio::select! { _ = sleep(delay) => {}, _ = stop.changed() => return }
    let mut first = true;
    let mut saves = 0u64;
    while !*stop.borrow() {
        let Some(mut open) = open(&ctx, doc).await else {
            tokio::select! { _ = sleep(Duration::from_secs(1)) => continue, _ = stop.changed() => return }
        };
        let start = tokio::time::Instant::now();
        // The first session is already under way (the fleet is in steady state from the start);
        // later ones last half to one and a half of the mean.
        let session = ctx.interval(SESSION).mul_f64(if first { uniform(0.0, 1.0) } else { uniform(0.5, 1.5) });
        first = false;
        let end = start + session;
        let mut next_save = start + ctx.interval(AUTOSAVE).mul_f64(uniform(0.0, 1.0));
        let mut next_refresh = start + ctx.interval(REFRESH_LOCK).mul_f64(uniform(0.0, 1.0));
        let mut next_reconnect = start + ctx.interval(RECONNECT).mul_f64(uniform(0.0, 1.0));
        loop {
            let due = end.min(next_save).min(next_refresh).min(next_reconnect);
            let stopping = tokio::select! { _ = tokio::time::sleep_until(due) => false, _ = stop.changed() => true };
            if stopping {
                // Closing spread over a second, not all at once.
                sleep(Duration::from_secs_f64(uniform(0.0, 1.0))).await;
                lock_op(&ctx, &open, Op::Unlock, "UNLOCK").await;
                return;
            }
            ctx.record_lag(tokio::time::Instant::now() - due);
            if due == end {
                lock_op(&ctx, &open, Op::Unlock, "UNLOCK").await;
                break;
            } else if due == next_save {
                saves += 1;
                autosave(&ctx, &mut open, doc, saves).await;
                next_save += ctx.interval(AUTOSAVE);
            } else if due == next_refresh {
                lock_op(&ctx, &open, Op::RefreshLock, "REFRESH_LOCK").await;
                next_refresh += ctx.interval(REFRESH_LOCK);
            } else {
                ctx.call(Op::ReconnectCheckFileInfo, ctx.http.get(open.url(&ctx, ""))).await;
                next_reconnect += ctx.interval(RECONNECT);
            }
        }
    }
}

/// The disk's floor: what storing one document durably costs on the file system the stores use
/// (the temporary directory, where Garage and the local store keep their data). Writes a
/// document, syncs it and its directory, every 100 ms until `stop`; the latencies in µs.
async fn disk_floor(doc: Bytes, mut stop: watch::Receiver<bool>) -> Vec<u32> {
    let dir = tempfile::tempdir().unwrap();
    let mut samples = Vec::new();
    loop {
        let (path, parent, doc) = (dir.path().join("probe"), dir.path().to_path_buf(), doc.clone());
        let started = Instant::now();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&path)?;
            file.write_all(&doc)?;
            file.sync_all()?;
            std::fs::File::open(&parent)?.sync_all()
        })
        .await;
        if matches!(written, Ok(Ok(()))) {
            samples.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
        tokio::select! { _ = sleep(Duration::from_millis(100)) => {}, _ = stop.changed() => return samples }
    }
}

/// The machine's busy and stolen CPU seconds so far, from /proc/stat.
fn machine_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let field = |i: usize| ticks.get(i).copied().unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // user nice system idle iowait irq softirq steal
    ((field(0) + field(1) + field(2) + field(5) + field(6)) / hz, field(7) / hz)
}

/// S3's floor: one PUT of a document straight to the bucket (no wopigate), every 100 ms until
/// `stop`; the latencies in µs.
async fn s3_floor(bucket: object_store::aws::AmazonS3, doc: Bytes, mut stop: watch::Receiver<bool>) -> Vec<u32> {
    let key = object_store::path::Path::from("fleet-floor/probe");
    let mut samples = Vec::new();
    loop {
        let started = Instant::now();
        if bucket.put(&key, PutPayload::from(doc.clone())).await.is_ok() {
            samples.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
        tokio::select! { _ = sleep(Duration::from_millis(100)) => {}, _ = stop.changed() => return samples }
    }
}

/// A process whose CPU and memory are measured.
#[derive(Clone)]
struct Watched {
    name: String,
    pid: u32,
}

/// utime + stime in seconds, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Our child process named `comm` (Garage and Redis are started by servers.rs, which keeps
/// their handles to itself).
fn child_named(comm: &str) -> Option<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1;
        (name == comm && rest.split_whitespace().nth(1) == Some(me.as_str())).then_some(pid)
    })
}

struct Replica {
    port: u16,
    child: Child,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a wopigate replica (production logging: JSON lines at info) and waits until it is
/// ready with its viewer's discovery loaded.
async fn start_replica(args: &Args, http: &reqwest::Client, data: &Path, env: &[(String, String)]) -> Replica {
    let port = free_port();
    let discovery = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/discovery/collabora.xml");
    let window = (AUTOSAVE_WINDOW / args.compression).ceil().max(1.0);
    let mut cmd = Command::new(&args.wopigate);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WOPIGATE_BIND", format!("127.0.0.1:{port}"))
        .env("WOPIGATE_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("WOPIGATE_DATA_DIR", data)
        .env("WOPIGATE_TOKEN_SECRET", TOKEN_SECRET)
        .env("WOPIGATE_CALLER_JWT_SECRET", CALLER_SECRET)
        .env("WOPIGATE_VIEWERS", json!([{"id": VIEWER, "name": "Collabora", "discovery": discovery}]).to_string())
        .env("WOPIGATE_AUTOSAVE_WINDOW_SECS", window.to_string())
        .env("WOPIGATE_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{}: {e}", args.wopigate.display()));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("http://127.0.0.1:{port}/readyz")).send().await {
            let ok = r.status().is_success();
            let body: Value = r.json().await.unwrap_or_default();
            if ok && body["discovery"].as_object().is_some_and(|d| d.values().all(|v| v["loaded"] == true)) {
                break;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("wopigate exited early: {status}");
        }
        assert!(Instant::now() < deadline, "wopigate did not become ready");
        sleep(Duration::from_millis(100)).await;
    }
    Replica { port, child }
}

/// Where the documents live: written as the platform would, before anyone opens them.
enum Seeder {
    Local(PathBuf),
    S3(object_store::aws::AmazonS3, String),
}

impl Seeder {
    async fn seed(&self, docs: std::ops::Range<usize>, content: &Bytes, files_per_user: usize) {
        let tasks = docs.map(|doc| async move {
            let (user, name) = (owner(doc, files_per_user), file_name(doc));
            match self {
                Seeder::Local(dir) => {
                    std::fs::create_dir_all(dir.join(&user)).unwrap();
                    std::fs::write(dir.join(&user).join(&name), content).unwrap();
                }
                Seeder::S3(bucket, prefix) => {
                    let key = object_store::path::Path::from(format!("{prefix}/{user}/{name}"));
                    bucket.put(&key, PutPayload::from(content.clone())).await.unwrap();
                }
            }
        });
        futures_util::stream::iter(tasks).buffer_unordered(16).collect::<Vec<()>>().await;
    }
}

struct StepResult {
    n: usize,
    /// The second window at this N (the first failed).
    again: bool,
    rps: f64,
    latencies: BTreeMap<Op, (f64, f64, usize)>,
    errors: usize,
    lag_p99_ms: f64,
    /// The disk's floor over the window: p50, p99 in ms.
    disk: (f64, f64),
    /// S3's floor (a PUT straight to Garage): p50, p99 in ms; `None` on the local store.
    s3: Option<(f64, f64)>,
    cpu: Vec<(String, f64, f64)>,
    /// The whole machine: cores busy (every process), cores stolen by the hypervisor.
    machine: (f64, f64),
    passed: bool,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

struct Topology {
    name: String,
    replicas: Vec<Replica>,
    watched: Vec<Watched>,
    seeder: Seeder,
    // Kept alive for the run (dropped after the replicas).
    _servers: (Option<Garage>, Option<Redis>, Vec<tempfile::TempDir>),
}

async fn s3_topology(args: &Args, http: &reqwest::Client) -> Topology {
    let garage = Garage::start().expect("Garage (WOPIGATE_TEST_GARAGE) is required");
    let redis = Redis::start().expect("redis-server (WOPIGATE_TEST_REDIS_SERVER) is required");
    let prefix = "fleet".to_string();
    let env = garage.env_with_redis(&prefix, &redis);
    let mut replicas = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..args.replicas {
        let dir = tempfile::tempdir().unwrap();
        replicas.push(start_replica(args, http, dir.path(), &env).await);
        dirs.push(dir);
    }
    let mut watched: Vec<Watched> =
        replicas.iter().enumerate().map(|(i, r)| Watched { name: format!("wopigate {}", i + 1), pid: r.child.id() }).collect();
    watched.extend(child_named("garage").map(|pid| Watched { name: "Garage".into(), pid }));
    watched.extend(child_named("redis-server").map(|pid| Watched { name: "Redis".into(), pid }));
    let seeder = Seeder::S3(garage.client(), prefix);
    Topology {
        name: format!("{} replicas, S3 (Garage) + Redis locks", args.replicas),
        replicas,
        watched,
        seeder,
        _servers: (Some(garage), Some(redis), dirs),
    }
}

async fn local_topology(args: &Args, http: &reqwest::Client) -> Topology {
    let dir = tempfile::tempdir().unwrap();
    let replica = start_replica(args, http, dir.path(), &[]).await;
    let watched = vec![Watched { name: "wopigate 1".into(), pid: replica.child.id() }];
    Topology {
        name: "1 replica, local store".into(),
        replicas: vec![replica],
        watched,
        seeder: Seeder::Local(dir.path().to_path_buf()),
        _servers: (None, None, vec![dir]),
    }
}

/// One measured window at `n` open documents.
async fn measure(ctx: &Ctx, watched: &[Watched], n: usize, again: bool) -> StepResult {
    let before: Vec<f64> = watched.iter().map(|w| cpu_seconds(w.pid)).collect();
    let (busy0, steal0) = machine_seconds();
    ctx.recorder.lock().unwrap().measuring = true;
    let started = Instant::now();
    let (floor_stop, floor_rx) = watch::channel(false);
    let floor = tokio::spawn(disk_floor(ctx.doc.clone(), floor_rx.clone()));
    let s3 = ctx.bucket.clone().map(|bucket| tokio::spawn(s3_floor(bucket, ctx.doc.clone(), floor_rx)));
    sleep(Duration::from_secs_f64(ctx.args.steady)).await;
    let _ = floor_stop.send(true);
    let mut disk = floor.await.unwrap_or_default();
    disk.sort_unstable();
    let s3 = match s3 {
        Some(task) => {
            let mut v = task.await.unwrap_or_default();
            v.sort_unstable();
            Some((percentile(&v, 0.5), percentile(&v, 0.99)))
        }
        None => None,
    };
    let (latencies, errors, mut lag, unmeasured) = {
        let mut r = ctx.recorder.lock().unwrap();
        r.measuring = false;
        r.take()
    };
    let secs = started.elapsed().as_secs_f64();
    let (busy1, steal1) = machine_seconds();
    let cpu = watched
        .iter()
        .zip(&before)
        .map(|(w, b)| (w.name.clone(), (cpu_seconds(w.pid) - b) / secs, rss_mib(w.pid)))
        .collect();
    let requests: usize = latencies.values().map(Vec::len).sum::<usize>() + errors.values().sum::<usize>();
    let summary: BTreeMap<Op, (f64, f64, usize)> = latencies
        .into_iter()
        .map(|(op, mut v)| {
            v.sort_unstable();
            (op, (percentile(&v, 0.5), percentile(&v, 0.99), v.len()))
        })
        .collect();
    lag.sort_unstable();
    let errors = errors.values().sum::<usize>() + unmeasured;
    // A p99 of fewer than 100 samples is their maximum: shown, not judged.
    let passed = errors == 0 && summary.values().all(|(_, p99, count)| *p99 < ctx.args.p99_ms || *count < MIN_SAMPLES);
    StepResult {
        n,
        again,
        rps: requests as f64 / secs,
        latencies: summary,
        errors,
        lag_p99_ms: percentile(&lag, 0.99),
        disk: (percentile(&disk, 0.5), percentile(&disk, 0.99)),
        s3,
        cpu,
        machine: ((busy1 - busy0) / secs, (steal1 - steal0) / secs),
        passed,
    }
}

fn report_step(topology: &str, step: &StepResult) {
    eprintln!(
        "fleet: {topology}: N={}{}: {:.0} req/s, errors {}, worst p99 {:.1} ms, {}",
        step.n,
        if step.again { " (again)" } else { "" },
        step.rps,
        step.errors,
        step.latencies.values().map(|l| l.1).fold(0.0, f64::max),
        if step.passed { "passed" } else { "FAILED" }
    );
}

/// Grows the fleet step by step on one topology until a step fails.
async fn run_topology(args: &Args, topology: &Topology, http: reqwest::Client) -> (Vec<StepResult>, usize) {
    let mut doc = vec![0u8; args.size];
    rand::thread_rng().fill(&mut doc[..]);
    let doc = Bytes::from(doc);
    let (stop_tx, stop) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        http,
        ports: topology.replicas.iter().map(|r| r.port).collect(),
        next: AtomicUsize::new(0),
        doc: doc.clone(),
        args: args.clone(),
        recorder: Mutex::new(Recorder::default()),
        stop,
        bucket: match &topology.seeder {
            Seeder::S3(bucket, _) => Some(bucket.clone()),
            Seeder::Local(_) => None,
        },
    });
    let mut watched = topology.watched.clone();
    watched.push(Watched { name: "driver (this benchmark)".into(), pid: std::process::id() });
    let mut tasks = Vec::new();
    let mut results = Vec::new();
    for &n in &args.steps {
        let have = tasks.len();
        if n <= have {
            continue;
        }
        eprintln!("fleet: {}: seeding documents {have}..{n}", topology.name);
        topology.seeder.seed(have..n, &doc, args.files_per_user).await;
        eprintln!("fleet: {}: {n} open documents ({} opening over {}s)", topology.name, n - have, args.ramp);
        for d in have..n {
            let delay = Duration::from_secs_f64(rand::thread_rng().gen_range(0.0..args.ramp.max(0.001)));
            tasks.push(tokio::spawn(client(ctx.clone(), d, delay)));
        }
        // One more second so the last opens finish before the window.
        sleep(Duration::from_secs_f64(args.ramp + 1.0)).await;
        let mut step = measure(&ctx, &watched, n, false).await;
        if !step.passed && step.errors == 0 {
            // This machine is shared: one window can fail on another job's burst. A step fails
            // when a second window at the same N fails too; both are reported.
            report_step(&topology.name, &step);
            results.push(step);
            step = measure(&ctx, &watched, n, true).await;
        }
        report_step(&topology.name, &step);
        let passed = step.passed;
        results.push(step);
        if !passed {
            break;
        }
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let total_errors = ctx.recorder.lock().unwrap().total_errors;
    (results, total_errors)
}

fn report(args: &Args, topology: &Topology, results: &[StepResult], total_errors: usize) -> String {
    let mut out = format!("### {}\n\n", topology.name);
    out += &format!(
        "Latency p50 / p99 in ms over each step's measured window (count in brackets; a p99 of fewer than {MIN_SAMPLES} \
         samples is their maximum, in brackets, and not judged).\n\n| operation |"
    );
    for r in results {
        out += &format!(" N={}{} |", r.n, if r.again { " again" } else { "" });
    }
    out += "\n|---|";
    out += &"---|".repeat(results.len());
    out += "\n";
    for op in OPS {
        out += &format!("| {} |", op.name());
        for r in results {
            match r.latencies.get(&op) {
                Some((p50, p99, count)) if *count < MIN_SAMPLES => out += &format!(" {p50:.1} / ({p99:.1}) ({count}) |"),
                Some((p50, p99, count)) => out += &format!(" {p50:.1} / {p99:.1} ({count}) |"),
                None => out += " – |",
            }
        }
        out += "\n";
    }
    let row = |label: &str, f: &dyn Fn(&StepResult) -> String| {
        let mut line = format!("| {label} |");
        for r in results {
            line += &format!(" {} |", f(r));
        }
        line + "\n"
    };
    out += &row("requests/s (all operations)", &|r| format!("{:.0}", r.rps));
    out += &row("errors", &|r| r.errors.to_string());
    out += &row("driver timer lag p99 (ms)", &|r| format!("{:.1}", r.lag_p99_ms));
    let floor = format!("floor: {} KiB write + fsync on the stores' disk, p50 / p99 (ms)", args.size / 1024);
    out += &row(&floor, &|r| format!("{:.1} / {:.1}", r.disk.0, r.disk.1));
    if results.iter().any(|r| r.s3.is_some()) {
        let floor = format!("floor: {} KiB PUT straight to Garage, p50 / p99 (ms)", args.size / 1024);
        out += &row(&floor, &|r| r.s3.map_or("–".into(), |(p50, p99)| format!("{p50:.1} / {p99:.1}")));
    }
    for (i, (name, _, _)) in results.first().map(|r| r.cpu.clone()).unwrap_or_default().iter().enumerate() {
        out += &row(&format!("{name}: CPU cores / RSS MiB"), &|r| format!("{:.2} / {:.0}", r.cpu[i].1, r.cpu[i].2));
    }
    let replicas = topology.replicas.len();
    out += &row("whole machine: cores busy / stolen by the hypervisor", &|r| format!("{:.2} / {:.2}", r.machine.0, r.machine.1));
    out += &row("other processes (not measured above): cores", &|r| {
        format!("{:.2}", (r.machine.0 - r.cpu.iter().map(|c| c.1).sum::<f64>()).max(0.0))
    });
    out += &row("wopigate CPU cores, all replicas", &|r| format!("{:.2}", r.cpu.iter().take(replicas).map(|c| c.1).sum::<f64>()));
    out += &row(&format!("p99 < {} ms and no errors", args.p99_ms), &|r| if r.passed { "yes".into() } else { "**no**".into() });
    // The loop stops at the first N whose every window failed: each passing window is below it.
    let best = results.iter().filter(|r| r.passed).last();
    match best {
        Some(r) => {
            let cores: f64 = r.cpu.iter().take(replicas).map(|c| c.1).sum();
            out += &format!(
                "\nLargest N with every p99 under {} ms and no errors: **{}** open documents ({:.2} wopigate cores in all, {:.0} documents per wopigate core).\n",
                args.p99_ms,
                r.n,
                cores,
                r.n as f64 / cores.max(f64::EPSILON)
            );
            if Some(r.n) == args.steps.iter().max().copied() {
                out += "(The largest step of the run: the limit is higher.)\n";
            }
        }
        None => out += &format!("\nNo step stayed under {} ms with no errors.\n", args.p99_ms),
    }
    out += &format!("Errors over the whole run, warm-up and close included: {total_errors}.\n\n");
    out
}

fn main() {
    let args = Args::parse();
    if args.size < 16 || args.compression <= 0.0 || args.files_per_user == 0 || args.replicas == 0 {
        eprintln!("fleet: --size must be at least 16 bytes; --compression, --files-per-user and --replicas above 0");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let failed = runtime.block_on(async {
        let http = reqwest::Client::builder().pool_max_idle_per_host(512).timeout(Duration::from_secs(30)).build().unwrap();
        let c = args.compression;
        let mut out = format!(
            "## Fleet results\n\nTime compressed {c}×: autosave PutFile every {:.1} s, RefreshLock every {:.1} s, \
             reconnect CheckFileInfo every {:.1} s, editing sessions of {:.1} s on average (then Unlock and open again), \
             wopigate's autosave window {:.0} s. Document size {} bytes, {} documents per user. New documents open over {} s, \
             then {} s measured per step. Requests spread round-robin over the replicas. Garage's and the local store's \
             data in {}.\n\n",
            AUTOSAVE / c,
            REFRESH_LOCK / c,
            RECONNECT / c,
            SESSION / c,
            (AUTOSAVE_WINDOW / c).ceil().max(1.0),
            args.size,
            args.files_per_user,
            args.ramp,
            args.steady,
            std::env::temp_dir().display()
        );
        let mut failed = false;
        for which in ["s3", "local"] {
            if args.topology != "both" && args.topology != which {
                continue;
            }
            let topology = if which == "s3" { s3_topology(&args, &http).await } else { local_topology(&args, &http).await };
            let (results, total_errors) = run_topology(&args, &topology, http.clone()).await;
            failed |= total_errors > 0;
            out += &report(&args, &topology, &results, total_errors);
        }
        if let Some(dir) = args.out.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(&args.out, &out).unwrap();
        println!("{out}");
        failed
    });
    if failed && args.fail_on_error {
        eprintln!("fleet: error responses (see above)");
        std::process::exit(1);
    }
}
