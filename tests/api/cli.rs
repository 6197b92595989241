//! The binary's commands as a newcomer and an operator use them: help, version, caller-jwt,
//! open, and what start-up says about the configuration.

use serde_json::{json, Value};

use crate::helpers::*;
use crate::process::{command, edit_session_as, stop, wait_healthy};

pub fn run(env: &[(String, String)], args: &[&str]) -> (i32, String, String) {
    let out = command(env).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn help_lists_every_command_and_every_variable_and_readme_documents_each() {
    let (code, help, _) = run(&[], &["--help"]);
    assert_eq!(code, 0);
    for command in ["serve", "put", "versions", "caller-jwt", "open", "share", "hash-password", "hash-ticket", "version"] {
        assert!(help.contains(&format!("  {command} ")), "{command} in --help:\n{help}");
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let variables = wopigate::config::variables();
    assert!(variables.len() > 40, "{variables:?}");
    for (name, default) in &variables {
        assert!(help.contains(&format!("  {name} [{default}]")), "{name} [{default}] in --help");
        let documented = readme.lines().any(|l| l.starts_with("| `") && l.split(" | ").next().is_some_and(|c| c.contains(&format!("`{name}`"))));
        assert!(documented, "{name} is in a README configuration table");
    }
    assert!(!help.contains("***"), "no secret value is shown");
    // `serve --help` helps; it does not start a server.
    let (code, serve_help, _) = run(&[], &["serve", "--help"]);
    assert_eq!(code, 0);
    assert!(serve_help.contains("Usage: wopigate serve"), "{serve_help}");
    for flag in [&["--version"][..], &["-V"], &["version"]] {
        let (code, out, _) = run(&[], flag);
        assert_eq!((code, out.trim()), (0, concat!("wopigate ", env!("CARGO_PKG_VERSION"))), "{flag:?}");
    }
    let (code, _, err) = run(&[], &["frobnicate"]);
    assert_eq!(code, 2, "{err}");
}

#[tokio::test]
async fn caller_jwt_and_open_give_a_newcomer_a_working_session() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = base_env(port, dir.path(), &[]);
    std::fs::create_dir_all(dir.path().join("alice/Docs")).unwrap();
    std::fs::write(dir.path().join("alice/Docs/report.docx"), b"hello").unwrap();
    let mut child = command(&env).spawn().unwrap();
    wait_healthy(port, &mut child).await;
    let client = reqwest::Client::new();

    // A caller JWT signed with the configured secret, as raw bytes: the API takes it.
    let (code, jwt, err) = run(&env, &["caller-jwt", "alice", "--name", "Alice", "--ttl", "10m"]);
    assert_eq!(code, 0, "{err}");
    let (token, _) = edit_session_as(port, jwt.trim(), "Docs/report.docx").await;
    let claims = claims_of(&token);
    assert_eq!((claims["sub"].as_str(), claims["name"].as_str()), (Some("alice"), Some("Alice")));
    assert_eq!(run(&env, &["caller-jwt", "alice", "--ttl", "soon"]).0, 2);

    // `open` runs the same domain function: its token works against the running server.
    let (code, out, err) = run(&env, &["open", "cloudreve://my/Docs/report.docx", "--user", "alice", "--view"]);
    assert_eq!(code, 0, "{err}");
    let json_end = out.find("\n\n").unwrap();
    let answer: Value = serde_json::from_str(&out[..json_end]).unwrap();
    assert_eq!(answer["session"]["action"], "view");
    assert!(out.contains(&format!("http://127.0.0.1:{port}/host#wopi_src=")), "{out}");
    let token = answer["session"]["access_token"].as_str().unwrap();
    let fid = claims_of(token)["fid"].as_str().unwrap().to_string();
    let r = client.get(format!("http://127.0.0.1:{port}/wopi/files/{fid}?access_token={token}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (code, _, err) = run(&env, &["open", "cloudreve://my/Docs/nope.docx", "--user", "alice"]);
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
    stop(child);

    // The README's no-Docker path: the example discovery file in examples/ as the viewer.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/discovery/collabora.xml");
    let viewers = json!([{"id": "5c2e4e0a-8f0e-4c5e-9b8a-3f1b2c3d4e5f", "name": "Collabora", "discovery": example}]).to_string();
    let readme_env = base_env(port, dir.path(), &[("WOPIGATE_VIEWERS", &viewers)]);
    let (code, out, err) = run(&readme_env, &["open", "cloudreve://my/Docs/report.docx", "--user", "alice"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("localhost%3A9980%2Fbrowser%2Fdist%2Fcool.html") && out.contains("\"action\": \"edit\""), "{out}");

    // Only a public key: wopigate cannot sign, and says why.
    let public = std::fs::read_to_string(fixture("keys/rsa-jwt.pub.pem")).unwrap();
    let mut only_public = base_env(port, dir.path(), &[("WOPIGATE_CALLER_JWT_PUBLIC_KEY", &public)]);
    only_public.retain(|(k, _)| k != "WOPIGATE_CALLER_JWT_SECRET");
    let (code, _, err) = run(&only_public, &["caller-jwt", "alice"]);
    assert_eq!(code, 1);
    assert!(err.contains("WOPIGATE_CALLER_JWT_PUBLIC_KEY") && err.contains("private key"), "{err}");
}

#[tokio::test]
async fn start_up_says_what_it_runs_and_warns_about_what_will_not_work() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut env = base_env(port, dir.path(), &[("WOPIGATE_VIEWERS", "[]"), ("WOPIGATE_VIEWER", "oops"), ("WOPIGATE_LOG_FORMAT", "text")]);
    env.retain(|(k, _)| k != "WOPIGATE_CALLER_JWT_SECRET");
    let mut child = command(&env).spawn().unwrap();
    wait_healthy(port, &mut child).await;
    let log = stop(child);
    let started = log.lines().find(|l| l.contains("wopigate started")).unwrap_or_else(|| panic!("{log}"));
    for part in [concat!("version=\"", env!("CARGO_PKG_VERSION"), "\""), "local directory", "caller_key=\"none\"", "public_url="] {
        assert!(started.contains(part), "{part} in: {started}");
    }
    assert!(log.contains("no viewer is configured"), "{log}");
    assert!(log.contains("no caller JWT key is configured"), "{log}");
    assert!(log.contains("WOPIGATE_VIEWER is not a wopigate setting (did you mean WOPIGATE_VIEWERS?)"), "{log}");
    assert!(!log.contains('\u{1b}'), "no colour codes when stderr is not a terminal");

    // Kubernetes' service links for Services named wopigate… are no mistake: production starts.
    let port = free_port();
    let links = [
        ("WOPIGATE_ENV", "production"),
        ("WOPIGATE_SERVICE_HOST", "10.0.0.7"),
        ("WOPIGATE_SERVICE_PORT_HTTP", "80"),
        ("WOPIGATE_PORT", "tcp://10.0.0.7:80"),
        ("WOPIGATE_PORT_80_TCP_ADDR", "10.0.0.7"),
        ("WOPIGATE_METRICS_SERVICE_PORT", "9090"),
    ];
    let mut child = command(&base_env(port, dir.path(), &links)).spawn().unwrap();
    wait_healthy(port, &mut child).await;
    let log = stop(child);
    assert!(!log.contains("is not a wopigate setting"), "{log}");

    // In production an unknown variable stops start-up, naming it.
    let prod = base_env(free_port(), dir.path(), &[("WOPIGATE_ENV", "production"), ("WOPIGATE_TOKN_TTL_SECS", "60")]);
    let (code, _, err) = run(&prod, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("WOPIGATE_TOKN_TTL_SECS") && err.contains("did you mean WOPIGATE_TOKEN_TTL_SECS"), "{err}");
}
