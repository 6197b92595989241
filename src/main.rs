//! Starts wopigate. Everything else lives in the library.

use std::io::Read;
use std::process::ExitCode;

use wopigate::config::Config;
use wopigate::{policy, telemetry, Application};

const USAGE: &str = "usage: wopigate [serve | put <owner>/<path> | versions <owner>/<path> | hash-password | hash-ticket]
  serve          run the service (default), configured by WOPIGATE_* variables (see README)
  put            store stdin as the file <owner>/<path> in the configured store (local or S3)
  versions       list the versions kept of the file <owner>/<path>: when, by whom, how saved
  hash-password  read a share password on stdin, print its Argon2 hash for a share manifest
  hash-ticket    read a purchase ticket on stdin, print its SHA-256 for a share manifest";

#[tokio::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1);
    match command.as_deref() {
        None | Some("serve") => serve().await,
        Some("put") => put(std::env::args().nth(2)).await,
        Some("versions") => versions(std::env::args().nth(2)).await,
        Some("hash-password") => print_hash(policy::hash_password),
        Some("hash-ticket") => print_hash(policy::sha256_hex),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("wopigate: unknown command '{other}'\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn print_hash(hash: fn(&str) -> String) -> ExitCode {
    let mut input = String::new();
    if std::io::stdin().read_to_string(&mut input).is_err() {
        eprintln!("wopigate: cannot read stdin");
        return ExitCode::from(2);
    }
    let value = input.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        eprintln!("wopigate: nothing on stdin to hash");
        return ExitCode::from(2);
    }
    println!("{}", hash(value));
    ExitCode::SUCCESS
}

/// `<owner>/<path>` as a file key, and the configuration; or the exit code of a usage error.
fn file_and_config(target: Option<String>, usage: &str) -> Result<(wopigate::store::FileKey, Config), ExitCode> {
    let Some((owner, path)) = target.as_deref().and_then(|t| t.split_once('/')) else {
        eprintln!("wopigate: usage: {usage}");
        return Err(ExitCode::from(2));
    };
    let key = match (wopigate::uri::is_valid_id(owner), wopigate::uri::RelPath::parse_plain(path)) {
        (true, Ok(path)) if !path.is_root() => wopigate::store::FileKey { owner: owner.to_string(), path },
        _ => {
            eprintln!("wopigate: '{}' is not <owner>/<path> with a valid user id and path", target.unwrap_or_default());
            return Err(ExitCode::from(2));
        }
    };
    match Config::from_env() {
        Ok(config) => Ok((key, config)),
        Err(e) => {
            eprintln!("wopigate: configuration error: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// `wopigate put alice/Docs/report.docx < report.docx`: the same atomic write as a WOPI save.
async fn put(target: Option<String>) -> ExitCode {
    let (key, config) = match file_and_config(target, "wopigate put <owner>/<path> < file") {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    match wopigate::admin::put(&config, &key, tokio::io::stdin()).await {
        Ok(meta) => {
            println!("stored {}/{}: {} bytes, version {}", key.owner, key.path.as_plain(), meta.size, meta.version);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wopigate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `wopigate versions alice/Docs/report.docx`: one line per version, oldest first.
async fn versions(target: Option<String>) -> ExitCode {
    let (key, config) = match file_and_config(target, "wopigate versions <owner>/<path>") {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    match wopigate::admin::versions(&config, &key).await {
        Ok(listed) => {
            println!("{:<34} {:<27} {:>12}  {:<13} BY", "VERSION", "SAVED (UTC)", "BYTES", "HOW");
            for v in &listed {
                let time = v.meta.modified.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
                let (how, by) = match &v.by {
                    // Names come from callers: never let one print a line or an escape.
                    Some(by) => (by.kind.as_str(), format!("{} ({})", by.user, by.name.escape_default())),
                    None => ("-", "unknown".to_string()),
                };
                let current = if v.current { "  [current]" } else { "" };
                println!("{:<34} {:<27} {:>12}  {:<13} {by}{current}", v.meta.version, time, v.meta.size, how);
            }
            println!("\nOpen a past version read-only: viewerSession with \"version\": \"<VERSION>\".");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wopigate: {}/{}: {e}", key.owner, key.path.as_plain());
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("wopigate: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let _log = telemetry::init(config.log_format);
    let bind = config.bind;
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("wopigate: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(%bind, port = app.port(), "wopigate listening");
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wopigate: server failed: {e}");
            ExitCode::FAILURE
        }
    }
}
