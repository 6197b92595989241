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
    let env = base_env(port, dir.path(), &[]);
    std::fs::create_dir_all(dir.path().join("u1")).unwrap();
    std::fs::write(dir.path().join("u1/a.docx"), b"x").unwrap();
    let mut child = command(&env).spawn().unwrap();
    wait_healthy(port, &mut child).await;
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
    std::fs::create_dir_all(dir.path().join("u1")).unwrap();
    std::fs::write(dir.path().join("u1/a.docx"), b"").unwrap();
    let mut child = command(&env).spawn().unwrap();
    wait_healthy(port, &mut child).await;
    let client = reqwest::Client::new();
    let ok: Value = client
        .put(format!("http://127.0.0.1:{port}/api/v4/file/viewerSession"))
        .bearer_auth(caller_jwt("u1", "U"))
        .body(json!({"uri": "cloudreve://my/a.docx", "viewer_id": COLLABORA, "preferred_action": "edit"}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = ok["data"]["session"]["access_token"].as_str().unwrap().to_string();
    let fid = claims_of(&token)["fid"].as_str().unwrap().to_string();

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
