//! The real binary as a process: start-up failures, the dev key, and what reaches the log.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

pub fn command(env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wopigate"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Runs to completion (start-up failure) and returns exit code and stderr.
fn run_failing(env: &[(String, String)]) -> (i32, String) {
    let output = command(env).output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

pub async fn wait_healthy(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = reqwest::Client::new();
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("wopigate exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("wopigate did not become healthy");
}

/// Stops the server as Kubernetes would (SIGTERM), so it flushes its log before exiting.
pub fn stop(mut child: Child) -> String {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    stderr
}

/// Opens `cloudreve://my/<path>` of `user` for editing on the process at `port`: (token, file id).
async fn edit_session(port: u16, user: &str, path: &str) -> (String, String) {
    edit_session_as(port, &caller_jwt(user, "U"), path).await
}

/// The same, for the caller whose JWT is `jwt`.
pub async fn edit_session_as(port: u16, jwt: &str, path: &str) -> (String, String) {
    let ok: Value = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{port}/api/v4/file/viewerSession"))
        .bearer_auth(jwt)
        .body(json!({"uri": format!("cloudreve://my/{path}"), "viewer_id": COLLABORA, "preferred_action": "edit"}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = ok["data"]["session"]["access_token"].as_str().unwrap_or_else(|| panic!("no session: {ok}")).to_string();
    let fid = claims_of(&token)["fid"].as_str().unwrap().to_string();
    (token, fid)
}

/// The binary on `port` with `env`, once healthy, serving `u1/a.docx` holding `content` in `data`.
pub async fn serve_document(port: u16, data: &std::path::Path, env: &[(String, String)], content: &[u8]) -> Child {
    std::fs::create_dir_all(data.join("u1")).unwrap();
    std::fs::write(data.join("u1/a.docx"), content).unwrap();
    let mut child = command(env).spawn().unwrap();
    wait_healthy(port, &mut child).await;
    child
}

/// The binary serving an empty `u1/a.docx` (writable without a lock), and an edit session on it.
async fn serve_empty_document(port: u16, data: &std::path::Path, env: &[(String, String)]) -> (Child, String, String) {
    let child = serve_document(port, data, env, b"").await;
    let (token, fid) = edit_session(port, "u1", "a.docx").await;
    (child, token, fid)
}

#[test]
fn bad_settings_stop_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("WOPIGATE_BIND", "not-an-address"),
        ("WOPIGATE_PUBLIC_URL", "not a url"),
        ("WOPIGATE_TOKEN_TTL_SECS", "ten hours"),
        ("WOPIGATE_TOKEN_SECRET", "too-short"),
        ("WOPIGATE_VIEWERS", "[{\"id\": \"x\"}]"),
        ("WOPIGATE_CALLER_JWT_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"),
        ("WOPIGATE_TOKEN_OLD_KEYS", "[{\"kid\": \"a\"}]"),
    ];
    for (var, value) in cases {
        let env = base_env(free_port(), dir.path(), &[(var, value)]);
        let (code, stderr) = run_failing(&env);
        assert_eq!(code, 2, "{var}: {stderr}");
        let line = stderr.trim();
        assert_eq!(line.lines().count(), 1, "one line: {line}");
        assert!(line.contains(var), "{var} is named: {line}");
        assert!(!line.contains(TOKEN_SECRET));
    }
}

#[test]
fn production_refuses_to_start_without_a_token_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(free_port(), dir.path(), &[("WOPIGATE_ENV", "production")]);
    env.retain(|(k, _)| k != "WOPIGATE_TOKEN_SECRET");
    let (code, stderr) = run_failing(&env);
    assert_eq!(code, 2);
    assert!(stderr.contains("WOPIGATE_TOKEN_SECRET"), "{stderr}");
}

#[tokio::test]
async fn dev_key_is_generated_persisted_and_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut env = base_env(port, dir.path(), &[]);
    env.retain(|(k, _)| k != "WOPIGATE_TOKEN_SECRET");
    let mut child = command(&env).spawn().unwrap();
    wait_healthy(port, &mut child).await;
    let stderr = stop(child);
    assert!(stderr.contains("WARN") && stderr.contains("WOPIGATE_TOKEN_SECRET is not set"), "{stderr}");
    let key = dir.path().join(".wopigate/dev-token-secret");
    let secret = std::fs::read_to_string(&key).unwrap();
    assert!(secret.len() >= 32);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!stderr.contains(secret.trim()), "the key itself is never logged");
}

#[tokio::test]
async fn log_lines_carry_the_correlation_id_and_never_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = serve_document(port, dir.path(), &base_env(port, dir.path(), &[]), b"x").await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/v4/file/viewerSession");
    let jwt = caller_jwt("u1", "U");
    let open = |uri: &'static str| {
        let request = client
            .put(&url)
            .bearer_auth(&jwt)
            .body(json!({"uri": uri, "viewer_id": COLLABORA, "preferred_action": "edit"}).to_string());
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let ok = open("cloudreve://my/a.docx").await;
    let token = ok["data"]["session"]["access_token"].as_str().unwrap().to_string();
    let failed = open("cloudreve://my/missing.docx").await;
    assert_eq!(failed["code"], 40016);
    let correlation = failed["correlation_id"].as_str().unwrap().to_string();
    let fid = claims_of(&token)["fid"].as_str().unwrap().to_string();
    let wopi = client
        .get(format!("http://127.0.0.1:{port}/wopi/files/{fid}?access_token={token}"))
        .header("X-WOPI-CorrelationID", "client-corr-42")
        .send()
        .await
        .unwrap();
    assert_eq!(wopi.status(), 200);
    let refused = client.get(format!("http://127.0.0.1:{port}/wopi/files/{fid}/contents?access_token=forged.{token}")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let stderr = stop(child);

    let request_lines: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "request")
        .map(|v| v["fields"].clone())
        .collect();
    let line = request_lines
        .iter()
        .find(|v| v["request_id"] == correlation.as_str())
        .unwrap_or_else(|| panic!("no request line with {correlation}:\n{stderr}"));
    assert_eq!(line["status"], 200);
    assert_eq!(line["code"], 40016);
    assert_eq!(line["route"], "/api/v4/file/viewerSession");
    assert!(line["duration_ms"].as_f64().is_some(), "duration is logged: {line}");
    let wopi_line = request_lines
        .iter()
        .find(|v| v["client_correlation_id"] == "client-corr-42")
        .unwrap_or_else(|| panic!("no WOPI request line:\n{stderr}"));
    assert_eq!(wopi_line["wopi_op"], "CheckFileInfo");
    assert_eq!(wopi_line["file_id"], fid.as_str());
    assert_eq!(wopi_line["session_id"], ok["data"]["session"]["id"]);
    assert_eq!(wopi_line["status"], 200);
    assert_eq!(wopi_line["path"], format!("/wopi/files/{fid}"));
    assert!(request_lines.iter().any(|v| v["wopi_op"] == "GetFile" && v["status"] == 401));
    assert!(!stderr.contains(&token), "access tokens never reach the log");
    assert!(!stderr.contains(&jwt), "caller JWTs never reach the log");
    assert!(!stderr.contains(TOKEN_SECRET) && !stderr.contains(CALLER_SECRET));
}

#[tokio::test]
async fn sigterm_lets_uploads_finish_then_exits_zero() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = base_env(port, dir.path(), &[("WOPIGATE_SHUTDOWN_GRACE_SECS", "10")]);
    let (mut child, token, fid) = serve_empty_document(port, dir.path(), &env).await;

    // An upload (of an empty file: no lock needed) is half sent when SIGTERM arrives.
    let body = vec![b'z'; 2 * 1024 * 1024];
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "POST /wopi/files/{fid}/contents?access_token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-WOPI-Override: PUT\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    stream.flush().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // New connections are refused while the in-flight upload may finish.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "stopped accepting");
    stream.write_all(&body[body.len() / 2..]).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "the in-flight upload completed: {response}");

    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "exit 0 after a graceful stop");
    assert_eq!(std::fs::read(dir.path().join("u1/a.docx")).unwrap(), body, "the upload was written whole");
}

#[tokio::test]
async fn the_metrics_listener_serves_until_sigterm_then_both_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let metrics_bind = format!("127.0.0.1:{metrics_port}");
    let env = base_env(port, dir.path(), &[("WOPIGATE_METRICS_BIND", &metrics_bind)]);
    let mut child = command(&env).spawn().unwrap();
    wait_healthy(port, &mut child).await;
    let scrape = reqwest::get(format!("http://{metrics_bind}/metrics")).await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert_eq!(reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().status(), 404);

    let started = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "exit 0 after a graceful stop");
    assert!(started.elapsed() < Duration::from_secs(10), "the metrics listener does not hold the exit up");
    assert!(std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_err(), "the metrics listener is closed");
}

#[tokio::test]
async fn secrets_never_reach_logs_or_error_messages() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let redis_url = "redis://:redis-password-never-logged@127.0.0.1:1/0";
    let env = base_env(port, dir.path(), &[]);
    std::fs::create_dir_all(dir.path().join("owner")).unwrap();
    std::fs::write(dir.path().join("owner/s.docx"), b"x").unwrap();
    let password = "share-password-never-logged";
    let share = json!({"owner": "owner", "path": "s.docx", "password_hash": wopigate::policy::hash_password(password)});
    std::fs::create_dir_all(dir.path().join(".wopigate/objects/shares")).unwrap();
    std::fs::write(dir.path().join(".wopigate/objects/shares/sh.json"), share.to_string()).unwrap();
    let mut child = command(&env).spawn().unwrap();
    wait_healthy(port, &mut child).await;
    let client = reqwest::Client::new();
    let jwt = caller_jwt("guest", "G");
    let open = |uri: String| {
        let request = client
            .put(format!("http://127.0.0.1:{port}/api/v4/file/viewerSession"))
            .bearer_auth(&jwt)
            .body(json!({"uri": uri, "viewer_id": COLLABORA, "preferred_action": "view"}).to_string());
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let ok: Value = serde_json::from_str(&open(format!("cloudreve://sh:{password}@share/")).await).unwrap();
    let token = ok["data"]["session"]["access_token"].as_str().unwrap_or_default().to_string();
    assert!(!token.is_empty(), "{ok}");
    // Only failures from here on: none may echo a secret back.
    let mut bodies = String::new();
    for uri in [format!("cloudreve://sh:{password}x@share/"), format!("cloudreve://sh:{password}@share/../x"), format!("cloudreve://sh:{password}@share/missing.docx")] {
        bodies.push_str(&open(uri).await);
    }
    let fid = claims_of(&token)["fid"].as_str().unwrap().to_string();
    // WOPI errors with the token in the URL, a tampered token, and a bad one in the header.
    for url in [
        format!("http://127.0.0.1:{port}/wopi/files/{fid}/contents?access_token={token}x"),
        format!("http://127.0.0.1:{port}/wopi/files/AAAAAAAAAAAAAAAAAAAAAA?access_token={token}"),
    ] {
        bodies.push_str(&client.get(url).send().await.unwrap().text().await.unwrap());
    }
    let r = client.get(format!("http://127.0.0.1:{port}/wopi/files/{fid}")).bearer_auth(format!("{token}y")).send().await.unwrap();
    bodies.push_str(&format!("{:?}", r.headers()));
    bodies.push_str(&r.text().await.unwrap());
    let stderr = stop(child);
    // A start-up failure with a secret in a bad setting: the message names the variable only.
    let (_, startup) = run_failing(&base_env(free_port(), dir.path(), &[("WOPIGATE_LOCKS", "redis"), ("WOPIGATE_REDIS_URL", redis_url)]));
    for secret in [token.as_str(), jwt.as_str(), password, TOKEN_SECRET, CALLER_SECRET, "redis-password-never-logged"] {
        assert!(!stderr.contains(secret), "log leaks a secret");
        assert!(!bodies.contains(secret), "an answer leaks a secret");
        assert!(!startup.contains(secret), "a start-up error leaks a secret: {startup}");
    }
    assert!(startup.contains("WOPIGATE_REDIS_URL"), "{startup}");
}

/// URIs of many malformed shapes carrying a share id and password: the `@share` forgotten, a
/// typo in the file system, bad escapes, traversal, a query, over-long parts, another scheme.
fn uris_with_a_password(password: &str) -> Vec<String> {
    let long = "a".repeat(300);
    vec![
        format!("cloudreve://PWsec:{password}"),
        format!("cloudreve://PWsec:{password}/"),
        format!("cloudreve://PWsec:{password}/a.docx"),
        // A password with an unencoded slash: the authority ends early.
        format!("cloudreve://PWsec:{password}/more@share/a.docx"),
        format!("cloudreve://PWsec:{password}@shar/a.docx"),
        format!("cloudreve://PWsec:{password}@trash/a.docx"),
        format!("cloudreve://PWsec:{password}@my/a.docx"),
        format!("cloudreve://PWsec:{password}@/a.docx"),
        format!("cloudreve://PWsec:{password}%zz@share/a.docx"),
        format!("cloudreve://PWsec:{password}%ff@share/a.docx"),
        format!("cloudreve://PWsec:{password}@share/../a.docx"),
        format!("cloudreve://PWsec:{password}@share/a%00.docx"),
        format!("cloudreve://PWsec:{password}@share/a//b.docx"),
        format!("cloudreve://PWsec:{password}@share/a.docx?x=1"),
        format!("cloudreve://PWsec:{password}@share/a.docx#x"),
        format!("cloudreve://PWsec:{password}@share/a.docx"),
        format!("cloudreve://PWsec:{password}@share/{long}.docx"),
        format!("cloudreve://my/PWsec:{password}{long}@share/a.docx"),
        format!("cloudreve://PWsec:{password}{}@share/a.docx", "b".repeat(9000)),
        format!("https://PWsec:{password}@share/a.docx"),
        format!("cloudreve:/PWsec:{password}@share/a.docx"),
        // Someone else's files; a share whose manifest is broken.
        "cloudreve://PWsec@my/a.docx".to_string(),
        format!("cloudreve://PWsecBroken:{password}@share/a.docx"),
    ]
}

/// F5: a share id and password sent through any error path of viewerSession, GetFileWopiSrc and
/// PutRelativeFile (malformed URIs of many shapes, odd bodies, headers) reach no answer and no
/// log line.
#[tokio::test]
async fn uri_userinfo_never_reaches_answers_or_logs() {
    let password = "Marker-PW-7d1e0c";
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::create_dir_all(dir.path().join("u1")).unwrap();
    std::fs::write(dir.path().join("u1/a.docx"), b"x").unwrap();
    // The share exists, with another password: the wrong-password path is taken too.
    let share = json!({"owner": "u1", "path": "a.docx", "password_hash": wopigate::policy::hash_password("another-password")});
    std::fs::create_dir_all(dir.path().join(".wopigate/objects/shares")).unwrap();
    std::fs::write(dir.path().join(".wopigate/objects/shares/PWsec.json"), share.to_string()).unwrap();
    std::fs::write(dir.path().join(".wopigate/objects/shares/PWsecBroken.json"), b"{\"owner\": 5}").unwrap();
    let mut child = command(&base_env(port, dir.path(), &[])).spawn().unwrap();
    wait_healthy(port, &mut child).await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let jwt = caller_jwt("u1", "U");
    let uris = uris_with_a_password(password);
    let mut bodies = String::new();

    // viewerSession: the URI, the parent URI, the other fields and the headers.
    let session = |body: String, headers: Vec<(&'static str, String)>| {
        let mut request = client.put(format!("{base}/api/v4/file/viewerSession")).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move {
            let envelope: Value = request.send().await.unwrap().json().await.unwrap();
            assert_ne!(envelope["code"], 0, "an error path: {envelope}");
            envelope.to_string()
        }
    };
    let bearer = || vec![("authorization", format!("Bearer {jwt}"))];
    let request = |uri: &str| json!({"uri": uri, "viewer_id": COLLABORA, "preferred_action": "edit"});
    for uri in &uris {
        bodies.push_str(&session(request(uri).to_string(), bearer()).await);
        bodies.push_str(&session(request(uri).to_string(), vec![]).await);
        for field in ["parent_uri", "version"] {
            let mut body = request("cloudreve://my/a.docx");
            body[field] = json!(uri);
            bodies.push_str(&session(body.to_string(), bearer()).await);
        }
        for odd in [
            json!({"uri": "cloudreve://my/a.docx", "viewer_id": COLLABORA, "preferred_action": uri}),
            json!({"uri": "cloudreve://my/a.docx", "viewer_id": uri, "preferred_action": "edit"}),
            json!({"uri": "cloudreve://my/a.docx", "viewer_id": COLLABORA, "preferred_action": "edit", uri: 1}),
            json!({"uri": [uri], "viewer_id": COLLABORA, "preferred_action": "edit"}),
        ] {
            bodies.push_str(&session(odd.to_string(), bearer()).await);
        }
        bodies.push_str(&session(format!("{{\"uri\": \"{uri}\", "), bearer()).await);
    }
    let good = request("cloudreve://my/a.docx").to_string();
    for headers in [
        vec![("authorization", format!("Bearer {password}"))],
        vec![("authorization", password.to_string())],
        vec![("content-type", format!("text/{password}"))],
    ] {
        bodies.push_str(&session(good.clone(), headers).await);
    }
    let share = request(&format!("cloudreve://PWsec:{password}@share/")).to_string();
    bodies.push_str(&session(share, vec![("x-cr-purchase-ticket", password.to_string())]).await);

    // A token for u1/a.docx, editable: GetFileWopiSrc and PutRelativeFile with bad input.
    let (token, fid) = edit_session(port, "u1", "a.docx").await;
    let ecosystem = format!("{base}/wopi/ecosystem?access_token={token}");
    let file = format!("{base}/wopi/files/{fid}?access_token={token}");
    let answer = |response: reqwest::Response| {
        assert!(!response.status().is_success(), "an error path: {}", response.status());
        async move { response.text().await.unwrap() }
    };
    for uri in &uris {
        let r = client
            .post(&ecosystem)
            .header("X-WOPI-Override", "GET_WOPI_SRC_WITH_ACCESS_TOKEN")
            .header("X-WOPI-HostNativeFileName", uri.as_str())
            .send()
            .await
            .unwrap();
        bodies.push_str(&answer(r).await);
        for (name, value) in [
            ("X-WOPI-RelativeTarget", uri.clone()),
            // Not UTF-7 (a lone surrogate): the only way to refuse a suggested name.
            ("X-WOPI-RelativeTarget", format!("{password}+2D0-.docx")),
            ("X-WOPI-SuggestedTarget", format!("{password}+2D0-.docx")),
        ] {
            let r = client.post(&file).header("X-WOPI-Override", "PUT_RELATIVE").header(name, value).body("x");
            bodies.push_str(&answer(r.send().await.unwrap()).await);
        }
        let both = client
            .post(&file)
            .header("X-WOPI-Override", "PUT_RELATIVE")
            .header("X-WOPI-RelativeTarget", uri.as_str())
            .header("X-WOPI-SuggestedTarget", uri.as_str())
            .body("x");
        bodies.push_str(&answer(both.send().await.unwrap()).await);
    }
    for url in [&ecosystem, &file, &format!("{base}/wopi/files/{fid}/contents?access_token={token}")] {
        let r = client.post(url).header("X-WOPI-Override", format!("PWsec:{password}")).send().await.unwrap();
        bodies.push_str(&answer(r).await);
    }
    let r = client.post(format!("{base}/wopi/ecosystem?access_token={password}")).send().await.unwrap();
    bodies.push_str(&answer(r).await);
    let stderr = stop(child);
    assert!(stderr.contains("request refused"), "the refusals were logged: {stderr}");
    // In any case: some paths upper-case what they repeat.
    let leaks = |text: &str| {
        let text = text.to_lowercase();
        text.contains(&password.to_lowercase()) || text.contains("pwsec")
    };
    assert!(!leaks(&bodies), "an answer repeats the share password or id: {bodies}");
    for line in stderr.lines().filter(|l| leaks(l)) {
        panic!("a log line repeats the share password or id: {line}");
    }
}

/// A kill -9 mid-upload leaves the partial upload in `.wopigate/tmp`; the next start sweeps it
/// once it is older than `WOPIGATE_STALE_UPLOAD_SECS`, and leaves a fresh one alone.
#[tokio::test]
async fn uploads_left_by_a_crash_are_swept_at_start_up() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = base_env(port, dir.path(), &[("WOPIGATE_STALE_UPLOAD_SECS", "600")]);
    let (mut child, token, fid) = serve_empty_document(port, dir.path(), &env).await;

    // Half an upload is in, then the process dies without any clean-up.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = "HTTP/1.1\r\nHost: 127.0.0.1\r\nX-WOPI-Override: PUT\r\nContent-Length: 2097152\r\n\r\n";
    write!(stream, "POST /wopi/files/{fid}/contents?access_token={token} {head}").unwrap();
    stream.write_all(&vec![b'z'; 1024 * 1024]).unwrap();
    stream.flush().unwrap();
    let tmp = dir.path().join(".wopigate/tmp");
    let staged = || -> Vec<std::path::PathBuf> { std::fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().path()).collect() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !staged().iter().any(|p| std::fs::metadata(p).unwrap().len() > 0) {
        assert!(Instant::now() < deadline, "the upload never reached the temp file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stream);
    let left = staged();
    assert_eq!(left.len(), 1, "the partial upload is left behind: {left:?}");

    // As if the crash was half an hour ago (older than the 10 minutes configured, younger than
    // the default hour); and an upload of another replica still in progress.
    let crashed = &left[0];
    let half_hour_ago = std::time::SystemTime::now() - Duration::from_secs(1800);
    std::fs::File::options().write(true).open(crashed).unwrap().set_modified(half_hour_ago).unwrap();
    let fresh = tmp.join("0123456789abcdef0123456789abcdef");
    std::fs::write(&fresh, b"in progress").unwrap();
    let mut child = command(&env).spawn().unwrap();
    wait_healthy(port, &mut child).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while crashed.exists() {
        assert!(Instant::now() < deadline, "the stale upload was not swept at start-up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fresh.exists(), "a fresh upload stays");
    let stderr = stop(child);
    assert!(stderr.contains("removed stale uploads"), "{stderr}");
    assert_eq!(std::fs::read(dir.path().join("u1/a.docx")).unwrap(), b"", "the file never saw the partial upload");
}
