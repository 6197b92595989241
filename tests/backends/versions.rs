//! Which saves become past versions, on every store: people's saves each keep one, a run of
//! autosaves keeps one, unmodified saves none; who saved each is listed by `wopigate versions`.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::TOKEN_SECRET;
use crate::races::Rig;

const WINDOW_SECS: u64 = 2;

fn env() -> Vec<(String, String)> {
    vec![("WOPIGATE_AUTOSAVE_WINDOW_SECS".to_string(), WINDOW_SECS.to_string())]
}

/// The flags a save is sent with, in either header family.
fn flags(family: &str, autosave: bool, exit: bool, modified: bool) -> Vec<(String, String)> {
    vec![
        (format!("X-{family}-WOPI-IsAutosave"), autosave.to_string()),
        (format!("X-{family}-WOPI-IsExitSave"), exit.to_string()),
        (format!("X-{family}-WOPI-IsModifiedByUser"), modified.to_string()),
    ]
}

async fn version_of(rig: &Rig, fid: &str, token: &str) -> String {
    let r = rig.client.get(rig.url(0, fid, "", token)).send().await.unwrap();
    r.json::<Value>().await.unwrap()["Version"].as_str().unwrap().to_string()
}

async fn saves_make_the_versions_people_use(rig: Rig) {
    rig.seed("racer/v/doc.docx", b"v0").await;
    let (token, fid) = rig.session(0, "cloudreve://my/v/doc.docx").await;
    rig.lock(&fid, &token, "L").await;
    let mut versions = vec![version_of(&rig, &fid, &token).await];
    let save = |content: &'static str, headers: Vec<(String, String)>, replica: usize| {
        let (rig, fid, token) = (&rig, fid.clone(), token.clone());
        async move {
            let mut all: Vec<(&str, &str)> = vec![("X-WOPI-Override", "PUT"), ("X-WOPI-Lock", "L")];
            all.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let status = rig.post(replica, &fid, "/contents", &token, &all, content.as_bytes().to_vec()).await;
            assert_eq!(status, 200, "saving {content}");
            version_of(rig, &fid, &token).await
        }
    };
    // A person's save (no flags: Office for the web), then one with Collabora's flags.
    versions.push(save("v1", vec![], 0).await);
    versions.push(save("v2", flags("COOL", false, false, true), 1).await);
    // Three autosaves within the window, alternating replicas: one version for the run.
    versions.push(save("v3", flags("COOL", true, false, true), 0).await);
    versions.push(save("v4", flags("LOOL", true, false, true), 1).await);
    versions.push(save("v5", flags("COOL", true, false, true), 0).await);
    // The exit save closes the window; the next autosave starts a new one.
    versions.push(save("v6", flags("LOOL", false, true, true), 1).await);
    versions.push(save("v7", flags("LOOL", true, false, true), 0).await);
    // The window ends: the next autosave keeps the last one of the old window.
    tokio::time::sleep(Duration::from_millis(WINDOW_SECS * 1000 + 300)).await;
    versions.push(save("v8", flags("COOL", true, false, true), 1).await);
    // Saved without a change: no version added.
    versions.push(save("v8", flags("COOL", false, false, false), 0).await);
    assert!(rig.admin_put("racer/v/doc.docx", b"v9").await);

    let past: HashSet<Vec<u8>> = rig.past(&fid).await.into_iter().collect();
    let expected: HashSet<Vec<u8>> = ["v0", "v1", "v2", "v5", "v6", "v7", "v8"].iter().map(|v| v.as_bytes().to_vec()).collect();
    assert_eq!(past, expected, "past versions: {:?}", past.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>());
    // WOPI's Version changes on every save regardless.
    versions.push(version_of(&rig, &fid, &token).await);
    assert_eq!(versions.iter().collect::<HashSet<_>>().len(), versions.len(), "{versions:?}");

    // Who saved each, as `wopigate versions` lists them.
    let mut vars = rig.admin_env.clone();
    vars.push(("WOPIGATE_TOKEN_SECRET".into(), TOKEN_SECRET.into()));
    let config = wopigate::config::Config::from_vars(vars.clone()).unwrap();
    let key = wopigate::store::FileKey { owner: "racer".into(), path: wopigate::uri::RelPath::parse_plain("v/doc.docx").unwrap() };
    let listed = wopigate::admin::versions(&config, &key).await.unwrap();
    let how: Vec<Option<&str>> = listed.iter().map(|l| l.by.as_ref().map(|b| b.kind.as_str())).collect();
    assert_eq!(
        how,
        [None, Some("save"), Some("save"), Some("autosave"), Some("exit save"), Some("autosave"), Some("autosave"), Some("wopigate put")],
        "v0 (seeded: unknown), v1, v2, v5, v6, v7, v8, then the current v9"
    );
    assert!(listed.last().unwrap().current && listed[..listed.len() - 1].iter().all(|l| !l.current));
    assert!(listed[1].by.as_ref().is_some_and(|b| b.user == "racer"));
    // Oldest first (the seeded file's time is not known on S3: a copy has its own).
    let known: Vec<_> = listed.iter().filter(|l| l.by.is_some()).collect();
    assert!(known.windows(2).all(|w| w[0].meta.modified <= w[1].meta.modified), "oldest first");

    // The command itself, as an operator runs it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wopigate"))
        .args(["versions", "racer/v/doc.docx"])
        .env_clear()
        .envs(vars)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().filter(|l| l.contains("racer (")).count(), 6, "{text}");
    assert!(text.contains("wopigate put") && text.contains("[current]") && text.contains("\"version\""), "{text}");

    // A past version opens read-only through viewerSession's `version`.
    let v5 = listed.iter().find(|l| l.by.as_ref().is_some_and(|b| b.kind.as_str() == "exit save")).unwrap();
    let (old_token, old_fid) = crate::cluster::open_session_at(&rig.client, rig.replica(0), "racer", "cloudreve://my/v/doc.docx", &v5.meta.version).await;
    assert_eq!(old_fid, fid);
    let (status, body) = rig.get(&fid, &old_token).await;
    assert_eq!((status, body.as_slice()), (200, b"v6".as_slice()), "the exit save's version holds what it saved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_make_the_versions_people_use_on_the_local_store() {
    saves_make_the_versions_people_use(Rig::local_with(&env()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_make_the_versions_people_use_on_s3_and_redis() {
    let Some(rig) = Rig::s3_with(&env()).await else { return };
    saves_make_the_versions_people_use(rig).await;
}
