//! Two operations on one file, many rounds, random delays: they must behave as if one ran after
//! the other, on every backend. Each backend runs as two wopigate processes (the local store:
//! both on one data directory; S3 + Redis: one bucket), the two requests of a round going to
//! different replicas.
//!
//! After every round: no 5xx; every acknowledged save is the current content or a past version;
//! every acknowledged rename or delete has happened; exactly the files that should exist do
//! (no stray file under an old name).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rand::Rng;
use serde_json::Value;

use crate::cluster::{open_session, spawn_replica, Cluster, Replica, TOKEN_SECRET};

const ROUNDS: usize = 200;

enum Files {
    Local(tempfile::TempDir),
    S3 { bucket: object_store::aws::AmazonS3, prefix: String, _cluster: Box<Cluster> },
}

/// Two replicas on one backend, and a way to look at the store behind them.
pub struct Rig {
    replicas: Vec<Replica>,
    files: Files,
    /// What `wopigate put` needs to reach the same store.
    pub admin_env: Vec<(String, String)>,
    pub client: reqwest::Client,
}

impl Rig {
    async fn local() -> Rig {
        Self::local_with(&[]).await
    }

    /// Two replicas on one data directory, `env` on top of the defaults.
    pub async fn local_with(env: &[(String, String)]) -> Rig {
        let client = test_client();
        let data = tempfile::tempdir().unwrap();
        let mut replicas = Vec::new();
        for _ in 0..2 {
            replicas.push(spawn_replica(&client, env, Some(data.path())).await);
        }
        let mut admin_env = vec![("WOPIGATE_DATA_DIR".to_string(), data.path().display().to_string())];
        admin_env.extend(env.iter().cloned());
        Rig { replicas, files: Files::Local(data), admin_env, client }
    }

    async fn s3() -> Option<Rig> {
        Self::s3_with(&[]).await
    }

    /// Two replicas on one bucket and Redis, `env` on top; `None` when the servers are missing.
    pub async fn s3_with(env: &[(String, String)]) -> Option<Rig> {
        let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut cluster = Cluster::start(2, &extra).await?;
        let replicas = std::mem::take(&mut cluster.replicas);
        let mut admin_env = cluster.garage.env(&cluster.prefix);
        admin_env.push(("WOPIGATE_LOCKS".into(), "redis".into()));
        admin_env.push(("WOPIGATE_REDIS_URL".into(), cluster.redis.url()));
        admin_env.extend(env.iter().cloned());
        let (bucket, prefix) = (cluster.bucket(), cluster.prefix.clone());
        Some(Rig { replicas, files: Files::S3 { bucket, prefix, _cluster: Box::new(cluster) }, admin_env, client: test_client() })
    }

    pub fn replica(&self, i: usize) -> &Replica {
        &self.replicas[i % 2]
    }

    fn local_path(dir: &Path, rel: &str) -> PathBuf {
        dir.join(rel)
    }

    pub async fn seed(&self, rel: &str, content: &[u8]) {
        match &self.files {
            Files::Local(dir) => {
                let path = Self::local_path(dir.path(), rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, content).unwrap();
            }
            Files::S3 { bucket, prefix, .. } => {
                bucket.put(&ObjectPath::from(format!("{prefix}/{rel}")), PutPayload::from(content.to_vec())).await.unwrap();
            }
        }
    }

    /// Names of the files directly in the folder `rel`.
    async fn names(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = match &self.files {
            Files::Local(dir) => match std::fs::read_dir(Self::local_path(dir.path(), rel)) {
                Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
                Err(_) => vec![],
            },
            Files::S3 { bucket, prefix, .. } => {
                let base = ObjectPath::from(format!("{prefix}/{rel}"));
                let listed = bucket.list_with_delimiter(Some(&base)).await.unwrap();
                // `.folder` is how the S3 store keeps an empty folder: not a file.
                listed.objects.iter().filter_map(|o| o.location.filename().map(str::to_string)).filter(|n| n != ".folder").collect()
            }
        };
        names.sort();
        names
    }

    /// A metadata object of the store behind the replicas (`activities/<file id>.json`, …).
    pub async fn object(&self, name: &str) -> Option<Vec<u8>> {
        match &self.files {
            Files::Local(dir) => std::fs::read(dir.path().join(".wopigate/objects").join(name)).ok(),
            Files::S3 { bucket, prefix, .. } => {
                let got = bucket.get(&ObjectPath::from(format!("{prefix}/.wopigate/objects/{name}"))).await.ok()?;
                Some(got.bytes().await.unwrap().to_vec())
            }
        }
    }

    /// The contents of every past version kept for a file id.
    pub async fn past(&self, fid: &str) -> Vec<Vec<u8>> {
        match &self.files {
            Files::Local(dir) => match std::fs::read_dir(dir.path().join(".wopigate/versions").join(fid)) {
                Ok(entries) => entries.map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect(),
                Err(_) => vec![],
            },
            Files::S3 { bucket, prefix, .. } => {
                let base = ObjectPath::from(format!("{prefix}/.wopigate/versions/{fid}"));
                let listed: Vec<_> = bucket.list(Some(&base)).try_collect().await.unwrap();
                let mut out = Vec::new();
                for meta in listed {
                    out.push(bucket.get(&meta.location).await.unwrap().bytes().await.unwrap().to_vec());
                }
                out
            }
        }
    }

    pub fn url(&self, replica: usize, fid: &str, suffix: &str, token: &str) -> String {
        self.replicas[replica % 2].url(&format!("/wopi/files/{fid}{suffix}?access_token={token}"))
    }

    pub async fn session(&self, replica: usize, uri: &str) -> (String, String) {
        open_session(&self.client, &self.replicas[replica % 2], "racer", uri).await
    }

    pub async fn post(&self, replica: usize, fid: &str, suffix: &str, token: &str, headers: &[(&str, &str)], body: Vec<u8>) -> u16 {
        let mut req = self.client.post(self.url(replica, fid, suffix, token)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap().status().as_u16()
    }

    pub async fn put_file(&self, replica: usize, fid: &str, token: &str, lock: Option<&str>, body: &[u8]) -> u16 {
        let mut headers = vec![("X-WOPI-Override", "PUT")];
        if let Some(lock) = lock {
            headers.push(("X-WOPI-Lock", lock));
        }
        self.post(replica, fid, "/contents", token, &headers, body.to_vec()).await
    }

    async fn rename(&self, replica: usize, fid: &str, token: &str, lock: Option<&str>, name: &str) -> u16 {
        let mut headers = vec![("X-WOPI-Override", "RENAME_FILE"), ("X-WOPI-RequestedName", name)];
        if let Some(lock) = lock {
            headers.push(("X-WOPI-Lock", lock));
        }
        self.post(replica, fid, "", token, &headers, vec![]).await
    }

    async fn delete(&self, replica: usize, fid: &str, token: &str) -> u16 {
        self.post(replica, fid, "", token, &[("X-WOPI-Override", "DELETE")], vec![]).await
    }

    pub async fn lock(&self, fid: &str, token: &str, id: &str) {
        assert_eq!(self.post(0, fid, "", token, &[("X-WOPI-Override", "LOCK"), ("X-WOPI-Lock", id)], vec![]).await, 200);
    }

    /// (status, bytes) of GetFile, through the id (so it follows renames).
    pub async fn get(&self, fid: &str, token: &str) -> (u16, Vec<u8>) {
        let r = self.client.get(self.url(1, fid, "/contents", token)).send().await.unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }

    async fn base_name(&self, fid: &str, token: &str) -> Option<String> {
        let r = self.client.get(self.url(0, fid, "", token)).send().await.unwrap();
        if r.status() != 200 {
            return None;
        }
        r.json::<Value>().await.unwrap()["BaseFileName"].as_str().map(str::to_string)
    }

    /// `wopigate put` of `rel` (owner/path), as an operator would run it.
    pub async fn admin_put(&self, rel: &str, content: &[u8]) -> bool {
        let mut vars = self.admin_env.clone();
        vars.push(("WOPIGATE_TOKEN_SECRET".into(), TOKEN_SECRET.into()));
        let config = wopigate::config::Config::from_vars(vars).unwrap();
        let (owner, path) = rel.split_once('/').unwrap();
        let key = wopigate::store::FileKey { owner: owner.into(), path: wopigate::uri::RelPath::parse_plain(path).unwrap() };
        wopigate::admin::put(&config, &key, content).await.is_ok()
    }
}

/// Idle connections are dropped before the server's keep-alive (5 s) would close them: a request
/// sent on a connection the server is closing fails on the client side, not in wopigate.
fn test_client() -> reqwest::Client {
    reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(2)).build().unwrap()
}

/// Runs `a` and `b` concurrently, each after its own random delay of 0–5 ms.
async fn race<A, B>(a: A, b: B) -> (A::Output, B::Output)
where
    A: std::future::Future,
    B: std::future::Future,
{
    race_within(a, b, Duration::from_millis(5), Duration::from_millis(5)).await
}

/// As `race`, with a random delay of up to `max_a` before `a` and `max_b` before `b`.
async fn race_within<A, B>(a: A, b: B, max_a: Duration, max_b: Duration) -> (A::Output, B::Output)
where
    A: std::future::Future,
    B: std::future::Future,
{
    let (da, db) = {
        let mut rng = rand::thread_rng();
        let mut upto = |max: Duration| Duration::from_micros(rng.gen_range(0..max.as_micros().max(1) as u64));
        (upto(max_a), upto(max_b))
    };
    tokio::join!(
        async {
            tokio::time::sleep(da).await;
            a.await
        },
        async {
            tokio::time::sleep(db).await;
            b.await
        }
    )
}

fn no_server_error(round: usize, what: &str, statuses: &[u16]) {
    assert!(statuses.iter().all(|s| *s < 500), "round {round}, {what}: a server error in {statuses:?}");
}

/// PutFile vs RenameFile under the same lock: both land; the saved bytes are at the new name.
async fn save_vs_rename(rig: &Rig) {
    for round in 0..ROUNDS {
        let folder = format!("racer/sr{round}");
        rig.seed(&format!("{folder}/doc.docx"), b"old").await;
        let (token, fid) = rig.session(round, &format!("cloudreve://my/sr{round}/doc.docx")).await;
        rig.lock(&fid, &token, "L").await;
        let saved = format!("saved {round}").into_bytes();
        let (put, renamed) = race(rig.put_file(round, &fid, &token, Some("L"), &saved), rig.rename(round + 1, &fid, &token, Some("L"), "moved")).await;
        no_server_error(round, "save vs rename", &[put, renamed]);
        assert_eq!((put, renamed), (200, 200), "round {round}: both are allowed and must both happen");
        assert_eq!(rig.get(&fid, &token).await, (200, saved), "round {round}: the save is the current content");
        assert_eq!(rig.names(&folder).await, ["moved.docx"], "round {round}: the file is at its new name only");
    }
}

/// PutFile vs DeleteFile on an unlocked empty file (both allowed): a save acknowledged before the
/// delete is kept as a past version; after an acknowledged delete nothing is left.
async fn save_vs_delete(rig: &Rig) {
    for round in 0..ROUNDS {
        let folder = format!("racer/sd{round}");
        rig.seed(&format!("{folder}/doc.docx"), b"").await;
        let (token, fid) = rig.session(round, &format!("cloudreve://my/sd{round}/doc.docx")).await;
        let saved = format!("saved {round}").into_bytes();
        let (put, deleted) = race(rig.put_file(round, &fid, &token, None, &saved), rig.delete(round + 1, &fid, &token)).await;
        no_server_error(round, "save vs delete", &[put, deleted]);
        assert_eq!(deleted, 200, "round {round}");
        assert!(matches!(put, 200 | 404), "round {round}: put {put}");
        assert!(rig.names(&folder).await.is_empty(), "round {round}: deleted means gone");
        assert_eq!(rig.get(&fid, &token).await.0, 404);
        if put == 200 {
            assert!(rig.past(&fid).await.contains(&saved), "round {round}: an acknowledged save is a past version");
        }
    }
}

/// Two renames of one file: both happen, one after the other; one name remains.
async fn rename_vs_rename(rig: &Rig) {
    for round in 0..ROUNDS {
        let folder = format!("racer/rr{round}");
        rig.seed(&format!("{folder}/doc.docx"), b"content").await;
        let (token, fid) = rig.session(round, &format!("cloudreve://my/rr{round}/doc.docx")).await;
        let (a, b) = race(rig.rename(round, &fid, &token, None, "first"), rig.rename(round + 1, &fid, &token, None, "second")).await;
        no_server_error(round, "rename vs rename", &[a, b]);
        assert_eq!((a, b), (200, 200), "round {round}");
        let names = rig.names(&folder).await;
        assert!(names == ["first.docx"] || names == ["second.docx"], "round {round}: {names:?}");
        assert_eq!(rig.base_name(&fid, &token).await.as_deref(), Some(names[0].as_str()));
        assert_eq!(rig.get(&fid, &token).await, (200, b"content".to_vec()));
    }
}

/// RenameFile vs DeleteFile: whichever order, an acknowledged delete leaves nothing, and a
/// rename that ran first is what the delete removed.
async fn rename_vs_delete(rig: &Rig) {
    for round in 0..ROUNDS {
        let folder = format!("racer/rd{round}");
        rig.seed(&format!("{folder}/doc.docx"), b"content").await;
        let (token, fid) = rig.session(round, &format!("cloudreve://my/rd{round}/doc.docx")).await;
        let (renamed, deleted) = race(rig.rename(round, &fid, &token, None, "moved"), rig.delete(round + 1, &fid, &token)).await;
        no_server_error(round, "rename vs delete", &[renamed, deleted]);
        assert_eq!(deleted, 200, "round {round}");
        assert!(matches!(renamed, 200 | 404), "round {round}: rename {renamed}");
        assert!(rig.names(&folder).await.is_empty(), "round {round}: nothing survives an acknowledged delete");
        assert!(rig.past(&fid).await.contains(&b"content".to_vec()), "round {round}: the deleted content is kept");
    }
}

/// PutRelativeFile overwriting a file vs a PutFile of that file: each acknowledged save is the
/// current content or a past version.
async fn save_as_overwrite_vs_save(rig: &Rig) {
    for round in 0..ROUNDS {
        let folder = format!("racer/ro{round}");
        rig.seed(&format!("{folder}/target.docx"), b"").await;
        rig.seed(&format!("{folder}/source.docx"), b"source").await;
        let (target_token, target) = rig.session(round, &format!("cloudreve://my/ro{round}/target.docx")).await;
        let (source_token, source) = rig.session(round, &format!("cloudreve://my/ro{round}/source.docx")).await;
        let saved = format!("saved {round}").into_bytes();
        let copied = format!("save as {round}").into_bytes();
        let overwrite = rig.post(
            round + 1,
            &source,
            "",
            &source_token,
            &[("X-WOPI-Override", "PUT_RELATIVE"), ("X-WOPI-RelativeTarget", "target.docx"), ("X-WOPI-OverwriteRelativeTarget", "true")],
            copied.clone(),
        );
        let (put, relative) = race(rig.put_file(round, &target, &target_token, None, &saved), overwrite).await;
        no_server_error(round, "save as vs save", &[put, relative]);
        assert_eq!(relative, 200, "round {round}");
        assert!(matches!(put, 200 | 409), "round {round}: put {put}");
        let (status, current) = rig.get(&target, &target_token).await;
        assert_eq!(status, 200);
        let past = rig.past(&target).await;
        assert!(current == copied || past.contains(&copied), "round {round}: the Save As is kept");
        if put == 200 {
            assert!(current == saved || past.contains(&saved), "round {round}: the save is kept");
        }
        assert_eq!(rig.names(&folder).await, ["source.docx", "target.docx"], "round {round}");
    }
}

/// `wopigate put` vs PutFile: both write the same file; neither acknowledged write is lost.
async fn admin_put_vs_save(rig: &Rig) {
    // `wopigate put` first opens the store (tens of ms on S3): the save is delayed by up to
    // that long, so that its commit lands anywhere within the operator's.
    rig.seed("racer/ap-warm/doc.docx", b"warm").await;
    let started = std::time::Instant::now();
    assert!(rig.admin_put("racer/ap-warm/doc.docx", b"warm again").await);
    let admin_takes = started.elapsed();
    for round in 0..ROUNDS {
        let folder = format!("racer/ap{round}");
        let rel = format!("{folder}/doc.docx");
        rig.seed(&rel, b"old").await;
        let (token, fid) = rig.session(round, &format!("cloudreve://my/ap{round}/doc.docx")).await;
        rig.lock(&fid, &token, "L").await;
        let saved = format!("saved {round}").into_bytes();
        let put_by_operator = format!("operator {round}").into_bytes();
        let (put, admin) = race_within(
            rig.put_file(round, &fid, &token, Some("L"), &saved),
            rig.admin_put(&rel, &put_by_operator),
            admin_takes + Duration::from_millis(5),
            Duration::from_millis(1),
        )
        .await;
        no_server_error(round, "wopigate put vs save", &[put]);
        assert!(admin, "round {round}: wopigate put failed");
        assert!(matches!(put, 200 | 409), "round {round}: put {put}");
        let (_, current) = rig.get(&fid, &token).await;
        let past = rig.past(&fid).await;
        assert!(current == put_by_operator || past.contains(&put_by_operator), "round {round}: the operator's write is kept");
        if put == 200 {
            assert!(current == saved || past.contains(&saved), "round {round}: the save is kept");
        }
        assert_eq!(rig.names(&folder).await, ["doc.docx"]);
    }
}

/// F8: ten Save As with one suggested name at once all succeed, each under its own name.
async fn concurrent_save_as_all_get_names(rig: &Rig) {
    for round in 0..5 {
        let folder = format!("racer/sa{round}");
        rig.seed(&format!("{folder}/doc.docx"), b"x").await;
        let (token, fid) = rig.session(round, &format!("cloudreve://my/sa{round}/doc.docx")).await;
        let tries = (0..10).map(|i| {
            let (token, fid) = (token.clone(), fid.clone());
            async move {
                let r = rig
                    .client
                    .post(rig.url(i, &fid, "", &token))
                    .header("X-WOPI-Override", "PUT_RELATIVE")
                    .header("X-WOPI-SuggestedTarget", "copy.docx")
                    .body(format!("copy {i}"))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let name = r.json::<Value>().await.ok().and_then(|v| v["Name"].as_str().map(str::to_string));
                (status, name, i)
            }
        });
        let answers = futures_util::future::join_all(tries).await;
        assert!(answers.iter().all(|a| a.0 == 200), "round {round}: suggested mode is never refused: {answers:?}");
        let mut names: Vec<_> = answers.iter().map(|a| a.1.clone().unwrap()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 10, "round {round}: every Save As got its own name: {answers:?}");
        assert_eq!(rig.names(&folder).await.len(), 11);
    }
}

impl Rig {
    /// The container a file's session is in: its id and token (EnumerateAncestors).
    async fn parent_container(&self, fid: &str, token: &str) -> (String, String) {
        let r = self.client.get(self.url(0, fid, "/ancestry", token)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        let url = body["AncestorsWithRootFirst"].as_array().unwrap().last().unwrap()["Url"].as_str().unwrap().to_string();
        pointer_of(&url)
    }

    async fn container_op(&self, replica: usize, id: &str, token: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self.client.post(self.replicas[replica % 2].url(&format!("/wopi/containers/{id}?access_token={token}")));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// The id and token in a container or file URL.
fn pointer_of(url: &str) -> (String, String) {
    let parsed = url::Url::parse(url).unwrap();
    let token = parsed.query_pairs().find(|(k, _)| k == "access_token").unwrap().1.into_owned();
    (parsed.path().rsplit('/').next().unwrap().to_string(), token)
}

/// PutFile of a file inside a folder vs RenameContainer of that folder: both happen; the save is
/// the file's current content at its new place, under its old id.
async fn save_vs_container_rename(rig: &Rig) {
    for round in 0..ROUNDS / 2 {
        rig.seed(&format!("racer/cr{round}/Folder/doc.docx"), b"old").await;
        let (token, fid) = rig.session(round, &format!("cloudreve://my/cr{round}/Folder/doc.docx")).await;
        let (folder, folder_token) = rig.parent_container(&fid, &token).await;
        rig.lock(&fid, &token, "L").await;
        let saved = format!("saved {round}").into_bytes();
        let rename = rig.container_op(round + 1, &folder, &folder_token, &[("X-WOPI-Override", "RENAME_CONTAINER"), ("X-WOPI-RequestedName", "Moved")]);
        let (put, (renamed, _)) = race(rig.put_file(round, &fid, &token, Some("L"), &saved), rename).await;
        no_server_error(round, "save vs container rename", &[put, renamed]);
        assert_eq!((put, renamed), (200, 200), "round {round}: both are allowed and must both happen");
        assert_eq!(rig.get(&fid, &token).await, (200, saved), "round {round}: the save is the current content");
        assert_eq!(rig.names(&format!("racer/cr{round}/Moved")).await, ["doc.docx"], "round {round}");
        assert!(rig.names(&format!("racer/cr{round}/Folder")).await.is_empty(), "round {round}: nothing left at the old name");
    }
}

/// RenameFile of a file inside a folder vs RenameContainer of that folder: both happen, and the
/// file keeps its id under its new name in the renamed folder.
async fn file_rename_vs_container_rename(rig: &Rig) {
    for round in 0..ROUNDS / 2 {
        rig.seed(&format!("racer/fc{round}/Folder/doc.docx"), b"content").await;
        let (token, fid) = rig.session(round, &format!("cloudreve://my/fc{round}/Folder/doc.docx")).await;
        let (folder, folder_token) = rig.parent_container(&fid, &token).await;
        let rename = rig.container_op(round + 1, &folder, &folder_token, &[("X-WOPI-Override", "RENAME_CONTAINER"), ("X-WOPI-RequestedName", "Moved")]);
        let (file, (container, _)) = race(rig.rename(round, &fid, &token, None, "renamed"), rename).await;
        no_server_error(round, "file rename vs container rename", &[file, container]);
        assert_eq!((file, container), (200, 200), "round {round}");
        assert_eq!(rig.get(&fid, &token).await, (200, b"content".to_vec()), "round {round}: the file keeps its id");
        assert_eq!(rig.base_name(&fid, &token).await.as_deref(), Some("renamed.docx"), "round {round}");
        assert_eq!(rig.names(&format!("racer/fc{round}/Moved")).await, ["renamed.docx"], "round {round}");
    }
}

/// RenameContainer of a folder vs RenameContainer of its parent: both happen; the file inside
/// keeps its id, and so does the inner folder.
async fn nested_container_renames(rig: &Rig) {
    for round in 0..ROUNDS / 4 {
        rig.seed(&format!("racer/nc{round}/Outer/Inner/doc.docx"), b"content").await;
        let (token, fid) = rig.session(round, &format!("cloudreve://my/nc{round}/Outer/Inner/doc.docx")).await;
        let (inner, inner_token) = rig.parent_container(&fid, &token).await;
        let r = rig.client.get(rig.replica(0).url(&format!("/wopi/containers/{inner}/ancestry?access_token={inner_token}"))).send().await.unwrap();
        let ancestry: Value = r.json().await.unwrap();
        let (outer, outer_token) = pointer_of(ancestry["AncestorsWithRootFirst"].as_array().unwrap().last().unwrap()["Url"].as_str().unwrap());
        let a = rig.container_op(round, &inner, &inner_token, &[("X-WOPI-Override", "RENAME_CONTAINER"), ("X-WOPI-RequestedName", "Inner2")]);
        let b = rig.container_op(round + 1, &outer, &outer_token, &[("X-WOPI-Override", "RENAME_CONTAINER"), ("X-WOPI-RequestedName", "Outer2")]);
        let ((a, _), (b, _)) = race(a, b).await;
        no_server_error(round, "nested container renames", &[a, b]);
        assert_eq!((a, b), (200, 200), "round {round}");
        assert_eq!(rig.get(&fid, &token).await, (200, b"content".to_vec()), "round {round}: the file keeps its id");
        assert_eq!(rig.names(&format!("racer/nc{round}/Outer2/Inner2")).await, ["doc.docx"], "round {round}");
        let r = rig.client.get(rig.replica(1).url(&format!("/wopi/containers/{inner}?access_token={inner_token}"))).send().await.unwrap();
        assert_eq!(r.json::<Value>().await.unwrap()["Name"], "Inner2", "round {round}: the inner folder keeps its id");
    }
}

/// CreateChildFile in an empty folder vs DeleteContainer of it: one runs first. Either the file
/// was created and the delete refused (409), or the folder went and the create found nothing.
async fn create_vs_delete_container(rig: &Rig) {
    for round in 0..ROUNDS / 2 {
        rig.seed(&format!("racer/cd{round}/keep.docx"), b"keep").await;
        let (token, fid) = rig.session(round, &format!("cloudreve://my/cd{round}/keep.docx")).await;
        let (parent, parent_token) = rig.parent_container(&fid, &token).await;
        let (status, created) =
            rig.container_op(0, &parent, &parent_token, &[("X-WOPI-Override", "CREATE_CHILD_CONTAINER"), ("X-WOPI-RelativeTarget", "Empty")]).await;
        assert_eq!(status, 200);
        let (folder, folder_token) = pointer_of(created["ContainerPointer"]["Url"].as_str().unwrap());
        let create = rig.container_op(round, &folder, &folder_token, &[("X-WOPI-Override", "CREATE_CHILD_FILE"), ("X-WOPI-RelativeTarget", "new.docx")]);
        let delete = rig.container_op(round + 1, &folder, &folder_token, &[("X-WOPI-Override", "DELETE_CONTAINER")]);
        let ((created, _), (deleted, _)) = race(create, delete).await;
        no_server_error(round, "create vs delete container", &[created, deleted]);
        let names = rig.names(&format!("racer/cd{round}/Empty")).await;
        match (created, deleted) {
            (200, 409) => assert_eq!(names, ["new.docx"], "round {round}"),
            (404, 200) => assert!(names.is_empty(), "round {round}: {names:?}"),
            other => panic!("round {round}: create and delete answered {other:?}: not one after the other"),
        }
    }
}

async fn all_races(rig: Rig) {
    save_vs_container_rename(&rig).await;
    file_rename_vs_container_rename(&rig).await;
    nested_container_renames(&rig).await;
    create_vs_delete_container(&rig).await;
    save_vs_rename(&rig).await;
    save_vs_delete(&rig).await;
    rename_vs_rename(&rig).await;
    rename_vs_delete(&rig).await;
    save_as_overwrite_vs_save(&rig).await;
    admin_put_vs_save(&rig).await;
    concurrent_save_as_all_get_names(&rig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_on_one_file_are_linearizable_on_the_local_store() {
    all_races(Rig::local().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_on_one_file_are_linearizable_on_s3_and_redis() {
    let Some(rig) = Rig::s3().await else { return };
    all_races(rig).await;
}

/// AddActivities batches on one file, all at once, half of them through each replica: the
/// store's compare-and-set keeps every one.
async fn concurrent_activities_all_land(rig: &Rig) {
    rig.seed("racer/comments.docx", b"x").await;
    let (token, fid) = rig.session(0, "cloudreve://my/comments.docx").await;
    let guid = |n: usize| format!("{n:08x}-0000-4000-8000-000000000000");
    let comment = |n: usize| {
        serde_json::json!({"Type": "comment", "Id": guid(n), "Created": "2017-02-15T13:47:13Z",
                           "Data": {"ContentId": "c", "ContentAction": "created"}})
    };
    let posts = (0..30).map(|i| {
        let body = serde_json::json!({"Activities": [comment(2 * i), comment(2 * i + 1)]}).to_string().into_bytes();
        let token = token.clone();
        let fid = fid.clone();
        async move { rig.post(i, &fid, "", &token, &[("X-WOPI-Override", "ADD_ACTIVITIES")], body).await }
    });
    let statuses = futures_util::future::join_all(posts).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let raw = rig.object(&format!("activities/{fid}.json")).await.expect("the activities are stored");
    let stored: Value = serde_json::from_slice(&raw).unwrap();
    let mut ids: Vec<String> = stored["activities"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    assert_eq!(ids, (0..60).map(guid).collect::<Vec<_>>(), "every concurrent batch landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_activities_on_two_replicas_all_land_on_the_local_store() {
    concurrent_activities_all_land(&Rig::local().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_activities_on_two_replicas_all_land_on_s3_and_redis() {
    let Some(rig) = Rig::s3().await else { return };
    concurrent_activities_all_land(&rig).await;
}
