//! Collabora Online as it really talks to wopigate: the sequences recorded in
//! `../shared/clients/collabora` replayed against the real app, and the timestamp echo its saves
//! depend on (second saves, RefreshLock, Save As, rename), while real changes still conflict.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use wopigate::store::FileKey;
use wopigate::uri::RelPath;

use crate::helpers::*;
use crate::process;
use crate::proof::{key, proof_element, sign};

/// Gives `path` a modification time with digits below the microsecond, as most real files have
/// (the files that could not be saved while `LastModifiedTime` had seven digits).
fn set_mtime_below_micros(path: &Path) {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - 3600;
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(UNIX_EPOCH + Duration::new(secs, 123_456_789)).unwrap();
}

/// What Collabora sends back as `X-COOL-WOPI-Timestamp` for a `LastModifiedTime` it was given:
/// the time read (fraction scaled by its digits, as newer releases do; `src/wopi/time.rs` tests
/// the older parser) and written with six digits.
fn echo(last_modified: &str) -> String {
    let time = chrono::DateTime::parse_from_rfc3339(last_modified).unwrap_or_else(|e| panic!("{last_modified}: {e}"));
    time.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `LastModifiedTime` as wopigate writes it: UTC, exactly six fractional digits.
fn assert_six_digits(time: &str) {
    let digits = time.get(20..26).unwrap_or_default();
    assert!(time.len() == 27 && &time[19..20] == "." && time.ends_with('Z'), "{time}");
    assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{time}");
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
}

fn recordings() -> Vec<(String, Vec<Value>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/clients/collabora");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "the recordings are missing: {files:?}");
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let lines = text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
            (path.file_name().unwrap().to_string_lossy().into_owned(), lines)
        })
        .collect()
}

/// A document as Collabora holds it: its file id, token, and the `LastModifiedTime` it was last
/// told (it echoes that on the document's next PutFile).
struct Document {
    fid: String,
    token: String,
    last_modified: Option<String>,
}

/// Plays one recording against a fresh app; returns every line whose status is not the one
/// Collabora needs.
async fn replay(name: &str, lines: &[Value]) -> Vec<String> {
    let signed = lines.iter().any(|l| l["headers"].get("X-WOPI-Proof").is_some());
    let proof_key = key("proof-a");
    let dir = tempfile::tempdir().unwrap();
    let discovery = dir.path().join("discovery.xml");
    let mut xml = std::fs::read_to_string(fixture("discovery/collabora.xml")).unwrap();
    if signed {
        // As Collabora publishes it: old* repeats the current key.
        xml = xml.replace("</wopi-discovery>", &format!("{}</wopi-discovery>", proof_element(&proof_key, Some(&proof_key))));
    }
    std::fs::write(&discovery, xml).unwrap();
    let viewers = json!([{"id": COLLABORA, "name": "Collabora", "discovery": discovery}]).to_string();
    let app = spawn_with(&[("WOPIGATE_VIEWERS", &viewers)]).await;
    let file = app.put_file("u1", "Report.docx", b"PK the document as it was opened");
    set_mtime_below_micros(&file);
    let session = app.session_for("u1", "cloudreve://my/Report.docx", "edit").await;
    let ttl = session.expires.to_string();
    let mut documents = HashMap::from([("file_id", Document { fid: session.fid, token: session.token, last_modified: None })]);
    let mut failures = Vec::new();

    for (n, line) in lines.iter().enumerate() {
        let template = line["path"].as_str().unwrap();
        let method = line["method"].as_str().unwrap();
        let override_ = line["headers"]["X-WOPI-Override"].as_str().unwrap_or_default().to_string();
        let which = if template.contains("{new_file_id}") { "new_file_id" } else { "file_id" };
        let doc = documents.get(which).unwrap_or_else(|| panic!("{name} line {}: no {which} yet", n + 1));
        let path = template
            .replace(&format!("{{{which}}}"), &doc.fid)
            .replace("{access_token_ttl}", &ttl)
            .replace("{access_token}", &doc.token);
        let url = format!("{}{path}", app.address);
        let ticks = wopigate::proof::ticks_from_unix_millis(chrono::Utc::now().timestamp_millis());
        let mut request = app.client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), &url);
        for (header, value) in line["headers"].as_object().unwrap() {
            // reqwest sets it from the body.
            if header.eq_ignore_ascii_case("content-length") {
                continue;
            }
            let value = value.as_str().unwrap();
            let value = if value.starts_with("{ticks") {
                ticks.to_string()
            } else if value.starts_with("{proof signature") {
                sign(&proof_key, &doc.token, &url, ticks)
            } else if value.contains("LastModifiedTime") {
                echo(doc.last_modified.as_deref().unwrap_or_else(|| panic!("{name} line {}: nothing to echo", n + 1)))
            } else if value.starts_with('{') {
                panic!("{name} line {}: unknown placeholder {value}", n + 1)
            } else {
                value.replace("{access_token}", &doc.token)
            };
            request = request.header(header.as_str(), value);
        }
        let body = line["body"].as_str().unwrap();
        let body: Vec<u8> = match body.strip_prefix("{document bytes, ") {
            Some(rest) => {
                let size: usize = rest.split(' ').next().unwrap().parse().unwrap();
                (0..size).map(|i| (i * 7 + n) as u8).collect()
            }
            None => {
                assert!(body.is_empty(), "{name} line {}: unknown body {body}", n + 1);
                Vec::new()
            }
        };
        let response = request.body(body).send().await.unwrap();
        let status = response.status().as_u16();
        let json = response.headers().get("content-type").is_some_and(|v| v == "application/json");
        let text = response.text().await.unwrap();
        let required = line["status_required"].as_u64().unwrap() as u16;
        if status != required {
            failures.push(format!("{name} line {}: {method} {template} {override_}: {status} (needs {required}) {text}", n + 1));
        }
        let check_file_info = method == "GET" && !template.contains("/contents");
        let upload = ["PUT", "PUT_RELATIVE", "RENAME_FILE"].contains(&override_.as_str());
        if status != 200 || !(check_file_info || upload) {
            continue;
        }
        let answer: Value = if json { serde_json::from_str(&text).unwrap() } else { Value::Null };
        // Collabora takes the answer's LastModifiedTime as its document's (the one it called
        // on, Save As included); a missing one becomes 1970-01-01.
        let time = answer["LastModifiedTime"].as_str().unwrap_or("1970-01-01T00:00:00Z").to_string();
        documents.get_mut(which).unwrap().last_modified = Some(time);
        if override_ == "PUT_RELATIVE" {
            let url = url::Url::parse(answer["Url"].as_str().unwrap()).unwrap();
            let fid = url.path_segments().unwrap().next_back().unwrap().to_string();
            let token = url.query_pairs().find(|(k, _)| k == "access_token").unwrap().1.into_owned();
            documents.insert("new_file_id", Document { fid, token, last_modified: None });
        }
    }
    failures
}

#[tokio::test]
async fn recorded_collabora_sessions_get_the_statuses_they_need() {
    let mut failures = Vec::new();
    for (name, lines) in recordings() {
        failures.extend(replay(&name, &lines).await);
    }
    assert!(failures.is_empty(), "lines answered otherwise than Collabora needs:\n{}", failures.join("\n"));
}

const LOCK: &str = "cool-lock4fd8f0af";

/// A file whose mtime has digits below the microsecond, opened for edit and locked as Collabora
/// does; returns the session and CheckFileInfo's `LastModifiedTime`.
async fn opened(app: &TestApp) -> (Session, String) {
    let file = app.put_file("u1", "Report.docx", b"as opened");
    set_mtime_below_micros(&file);
    let s = app.session_for("u1", "cloudreve://my/Report.docx", "edit").await;
    let time = app.info(&s).await["LastModifiedTime"].as_str().unwrap().to_string();
    assert_six_digits(&time);
    assert_eq!(app.lock(&s, LOCK).await.status(), 200);
    (s, time)
}

/// A PutFile as Collabora sends it, headers of the `family` (`COOL` or `LOOL`); `last_modified`
/// is what it echoes (none: Overwrite, save regardless).
async fn save(app: &TestApp, s: &Session, family: &str, last_modified: Option<&str>, body: &str) -> reqwest::Response {
    let mut request = app
        .put(s, body.to_string())
        .header("X-WOPI-Lock", LOCK)
        .header(format!("X-{family}-WOPI-IsModifiedByUser"), "true")
        .header(format!("X-{family}-WOPI-IsAutosave"), "false")
        .header(format!("X-{family}-WOPI-IsExitSave"), "false")
        .header(format!("X-{family}-WOPI-ExtendedData"), "undefined");
    if let Some(time) = last_modified {
        request = request.header(format!("X-{family}-WOPI-Timestamp"), echo(time));
    }
    request.send().await.unwrap()
}

/// The `LastModifiedTime` of a successful PutFile.
async fn saved(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let time = body["LastModifiedTime"].as_str().unwrap().to_string();
    assert_six_digits(&time);
    time
}

async fn assert_document_changed(response: reqwest::Response) {
    assert_eq!(response.status(), 409);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"COOLStatusCode": 1010}));
}

#[tokio::test]
async fn three_saves_in_a_row_each_echo_the_last_put_file_answer() {
    let app = spawn_app().await;
    let (s, mut time) = opened(&app).await;
    for i in 0..3 {
        let next = saved(save(&app, &s, "COOL", Some(&time), &format!("edit {i}")).await).await;
        assert_ne!(next, time, "every save moves the time");
        time = next;
    }
    assert_eq!(app.info(&s).await["LastModifiedTime"], time.as_str());
    assert_eq!(app.contents(&s).await.1, b"edit 2");
}

#[tokio::test]
async fn a_save_after_refresh_lock_still_matches() {
    let app = spawn_app().await;
    let (s, time) = opened(&app).await;
    let refresh = || app.op(&s, "REFRESH_LOCK").header("X-WOPI-Lock", LOCK).send();
    assert_eq!(refresh().await.unwrap().status(), 200);
    let time = saved(save(&app, &s, "COOL", Some(&time), "first").await).await;
    assert_eq!(refresh().await.unwrap().status(), 200);
    saved(save(&app, &s, "COOL", Some(&time), "second").await).await;
    assert_eq!(app.contents(&s).await.1, b"second");
}

#[tokio::test]
async fn both_header_families_are_accepted() {
    let app = spawn_app().await;
    let (s, first) = opened(&app).await;
    let mut time = first.clone();
    for family in ["COOL", "LOOL"] {
        time = saved(save(&app, &s, family, Some(&time), family).await).await;
        assert_document_changed(save(&app, &s, family, Some(&first), "stale").await).await;
        assert_eq!(app.contents(&s).await.1, family.as_bytes(), "{family}: a conflicting save writes nothing");
    }
    // Flags that are not `true`/`false` do not stop a save.
    let r = app
        .put(&s, "odd flags")
        .header("X-WOPI-Lock", LOCK)
        .header("X-COOL-WOPI-IsAutosave", "maybe")
        .header("X-COOL-WOPI-Timestamp", echo(&time))
        .send()
        .await
        .unwrap();
    saved(r).await;
}

#[tokio::test]
async fn save_as_and_rename_answers_carry_last_modified_time() {
    let app = spawn_app().await;
    let (s, time) = opened(&app).await;
    let r = app.op(&s, "PUT_RELATIVE").header("X-WOPI-SuggestedTarget", "copy.docx").header("X-WOPI-Size", "4").body("copy");
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["Name"], "copy.docx");
    // Collabora keeps it as the time of the document it saved from: the source's, unchanged.
    assert_eq!(answer["LastModifiedTime"], time.as_str(), "{answer}");
    let time = saved(save(&app, &s, "LOOL", answer["LastModifiedTime"].as_str(), "exit save").await).await;

    let r = app.op(&s, "RENAME_FILE").header("X-WOPI-Lock", LOCK).header("X-WOPI-RequestedName", "Renamed").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["Name"], "Renamed");
    let renamed = answer["LastModifiedTime"].as_str().unwrap();
    assert_six_digits(renamed);
    assert_eq!(renamed, time, "a rename does not change the content's time");
    assert_eq!(app.info(&s).await["LastModifiedTime"], renamed);
    saved(save(&app, &s, "COOL", Some(renamed), "after rename").await).await;
}

#[tokio::test]
async fn a_change_through_another_session_conflicts() {
    let app = spawn_app().await;
    let (s, time) = opened(&app).await;
    // WOPI locks belong to the file, not to a session: another session presenting the lock
    // (Office co-authoring does) may save.
    let other = app.session_for("u1", "cloudreve://my/Report.docx", "edit").await;
    let r = app.put(&other, "from the other session").header("X-WOPI-Lock", LOCK).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_document_changed(save(&app, &s, "COOL", Some(&time), "stale").await).await;
    assert_eq!(app.contents(&s).await.1, b"from the other session");
    // Overwrite in Collabora's dialog: the same save without the timestamp.
    saved(save(&app, &s, "COOL", None, "overwritten").await).await;
    assert_eq!(app.contents(&s).await.1, b"overwritten");
}

#[tokio::test]
async fn a_change_through_wopigate_put_conflicts() {
    let app = spawn_app().await;
    let (s, time) = opened(&app).await;
    let time = saved(save(&app, &s, "COOL", Some(&time), "saved").await).await;
    let config = wopigate::config::Config::from_vars(base_env(app.port, &app.data, &[])).unwrap();
    let key = FileKey { owner: "u1".into(), path: RelPath::parse_plain("Report.docx").unwrap() };
    // `wopigate put` writes whatever WOPI lock is held.
    wopigate::admin::put(&config, &key, &b"put by the operator"[..]).await.unwrap();
    assert_document_changed(save(&app, &s, "COOL", Some(&time), "stale").await).await;
    assert_eq!(app.contents(&s).await.1, b"put by the operator");
    // After a reload the editor has the new time and saves again.
    let reloaded = app.info(&s).await["LastModifiedTime"].as_str().unwrap().to_string();
    assert_ne!(reloaded, time);
    saved(save(&app, &s, "COOL", Some(&reloaded), "edited after reload").await).await;
}

#[tokio::test]
async fn a_document_changed_conflict_is_logged_with_both_times() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::create_dir_all(dir.path().join("u1")).unwrap();
    std::fs::write(dir.path().join("u1/Report.docx"), b"x").unwrap();
    let mut child = process::command(&base_env(port, dir.path(), &[])).spawn().unwrap();
    process::wait_healthy(port, &mut child).await;
    let app = TestApp::on_port(port, dir.path());
    let s = app.session_for("u1", "cloudreve://my/Report.docx", "edit").await;
    let first = app.info(&s).await["LastModifiedTime"].as_str().unwrap().to_string();
    assert_eq!(app.lock(&s, LOCK).await.status(), 200);
    let r = app
        .put(&s, "autosaved")
        .header("X-WOPI-Lock", LOCK)
        .header("X-COOL-WOPI-IsAutosave", "true")
        .header("X-COOL-WOPI-IsExitSave", "false")
        .header("X-COOL-WOPI-IsModifiedByUser", "true")
        .header("X-COOL-WOPI-Timestamp", echo(&first))
        .send()
        .await
        .unwrap();
    let stored = saved(r).await;
    assert_document_changed(save(&app, &s, "LOOL", Some(&first), "stale").await).await;
    let stderr = process::stop(child);

    let puts: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["fields"].clone())
        .filter(|f| f["message"] == "request" && f["wopi_op"] == "PutFile")
        .collect();
    let ok = puts.iter().find(|f| f["status"] == 200).unwrap_or_else(|| panic!("no PutFile line:\n{stderr}"));
    let flags = (&ok["is_autosave"], &ok["is_exit_save"], &ok["is_modified_by_user"]);
    assert_eq!(flags, (&json!(true), &json!(false), &json!(true)), "{ok}");
    let conflict = puts.iter().find(|f| f["status"] == 409).unwrap_or_else(|| panic!("no 409 PutFile line:\n{stderr}"));
    assert_eq!(conflict["cool_timestamp"], echo(&first).as_str(), "{conflict}");
    assert_eq!(conflict["stored_timestamp"], stored.as_str(), "{conflict}");
    assert!(!stderr.contains(&s.token), "tokens never reach the log");
}
