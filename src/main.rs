//! Starts wopigate. Everything else lives in the library.

use std::io::Read;
use std::process::ExitCode;

use wopigate::config::Config;
use wopigate::{policy, telemetry, Application};

const USAGE: &str = "usage: wopigate [serve | hash-password | hash-ticket]
  serve          run the service (default), configured by WOPIGATE_* variables (see README)
  hash-password  read a share password on stdin, print its Argon2 hash for a share manifest
  hash-ticket    read a purchase ticket on stdin, print its SHA-256 for a share manifest";

#[tokio::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1);
    match command.as_deref() {
        None | Some("serve") => serve().await,
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

async fn serve() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("wopigate: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
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
