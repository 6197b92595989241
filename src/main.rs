//! Starts wopigate, or runs one of its operator commands. Everything else lives in the library.

use std::io::Read;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use wopigate::config::Config;
use wopigate::store::FileKey;
use wopigate::token::Action;
use wopigate::{admin, policy, telemetry, Application};

/// wopigate: a stateless WOPI host gateway.
///
/// Configured by WOPIGATE_* environment variables (listed below with their defaults; the
/// README's Configuration table says what each does). Without a command, `serve`.
#[derive(Parser)]
#[command(name = "wopigate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default)
    Serve,
    /// Store stdin as the file <owner>/<path> in the configured store (local or S3)
    Put {
        /// <owner>/<path>, e.g. alice/Docs/report.docx
        file: String,
    },
    /// List the versions kept of the file <owner>/<path>: when, by whom, how saved
    Versions {
        /// <owner>/<path>
        file: String,
    },
    /// Print a caller JWT for <user>, signed with WOPIGATE_CALLER_JWT_SECRET (as the platform signs them)
    CallerJwt {
        /// The user id (the JWT's `sub`)
        user: String,
        /// Display name
        #[arg(long)]
        name: Option<String>,
        /// Lifetime, e.g. 30m, 1h, 2h30m
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Open a document as viewerSession does: print the answer and the host page link
    Open {
        /// A cloudreve:// URI, e.g. cloudreve://my/Docs/report.docx
        uri: String,
        /// Ask for an edit session (the default)
        #[arg(long, conflicts_with = "view")]
        edit: bool,
        /// Ask for a view session
        #[arg(long)]
        view: bool,
        /// Open as this signed-in user (else anonymously: shares only)
        #[arg(long)]
        user: Option<String>,
        /// The viewer's id (default: the first in WOPIGATE_VIEWERS)
        #[arg(long)]
        viewer: Option<uuid::Uuid>,
    },
    /// Create (or show) the share link of the file or folder <owner>/<path>, as GetShareUrl does
    Share {
        /// <owner>/<path>, e.g. alice/Docs/report.docx or alice/Team
        file: String,
        /// Visitors may edit (a ReadWrite link; else ReadOnly)
        #[arg(long)]
        editable: bool,
    },
    /// Read a share password on stdin, print its Argon2 hash for a share manifest
    HashPassword,
    /// Read a purchase ticket on stdin, print its SHA-256 for a share manifest
    HashTicket,
    /// Print the version
    Version,
}

/// Every variable with its default, from the configuration code itself.
fn variables_help() -> String {
    let mut text = String::from("Environment (default in brackets; empty = unset):\n");
    for (name, default) in wopigate::config::variables() {
        text.push_str(&format!("  {name} [{default}]\n"));
    }
    text
}

#[tokio::main]
async fn main() -> ExitCode {
    let command = Cli::command().after_help(variables_help());
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Put { file } => put(&file).await,
        Command::Versions { file } => versions(&file).await,
        Command::CallerJwt { user, name, ttl } => caller_jwt(&user, name.as_deref(), &ttl),
        Command::Open { uri, view, user, viewer, .. } => {
            open(&uri, if view { Action::View } else { Action::Edit }, user.as_deref(), viewer).await
        }
        Command::Share { file, editable } => share(&file, editable).await,
        Command::HashPassword => print_hash(policy::hash_password),
        Command::HashTicket => print_hash(policy::sha256_hex),
        Command::Version => {
            println!("wopigate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

fn config() -> Result<Config, ExitCode> {
    Config::from_env().map_err(|e| {
        eprintln!("wopigate: configuration error: {e}");
        ExitCode::from(2)
    })
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("wopigate: {e}");
    ExitCode::FAILURE
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

/// `<owner>/<path>` as a file key.
fn file_key(target: &str) -> Result<FileKey, ExitCode> {
    let parsed = target.split_once('/').and_then(|(owner, path)| {
        let path = wopigate::uri::RelPath::parse_plain(path).ok().filter(|p| !p.is_root())?;
        wopigate::uri::is_valid_id(owner).then(|| FileKey { owner: owner.to_string(), path })
    });
    parsed.ok_or_else(|| {
        eprintln!("wopigate: '{target}' is not <owner>/<path> with a valid user id and path");
        ExitCode::from(2)
    })
}

/// `wopigate put alice/Docs/report.docx < report.docx`: the same atomic write as a WOPI save.
async fn put(target: &str) -> ExitCode {
    let (key, config) = match (file_key(target), config()) {
        (Ok(key), Ok(config)) => (key, config),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    match admin::put(&config, &key, tokio::io::stdin()).await {
        Ok(meta) => {
            println!("stored {target}: {} bytes, version {}", meta.size, meta.version);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `wopigate versions alice/Docs/report.docx`: one line per version, oldest first.
async fn versions(target: &str) -> ExitCode {
    let (key, config) = match (file_key(target), config()) {
        (Ok(key), Ok(config)) => (key, config),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let listed = match admin::versions(&config, &key).await {
        Ok(listed) => listed,
        Err(e) => return fail(format!("{target}: {e}")),
    };
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

/// `wopigate share alice/Docs/report.docx [--editable]`: prints the link, then the manifest's name.
async fn share(target: &str, editable: bool) -> ExitCode {
    let (key, config) = match (file_key(target), config()) {
        (Ok(key), Ok(config)) => (key, config),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    match admin::share(&config, &key, editable).await {
        Ok((link, id)) => {
            println!("{link}");
            eprintln!("share manifest: shares/{id}.json ({})", if editable { "visitors may edit" } else { "read-only" });
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("{target}: {e}")),
    }
}

/// `wopigate caller-jwt alice --name Alice`: for trying the API by hand.
fn caller_jwt(user: &str, name: Option<&str>, ttl: &str) -> ExitCode {
    let ttl = match humantime::parse_duration(ttl) {
        Ok(ttl) if ttl.as_secs() >= 1 => ttl,
        _ => {
            eprintln!("wopigate: --ttl '{ttl}' is not a duration such as 30m, 1h or 2h30m");
            return ExitCode::from(2);
        }
    };
    let config = match config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    match admin::caller_jwt(&config, user, name, ttl) {
        Ok(jwt) => {
            println!("{jwt}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `wopigate open cloudreve://my/Docs/report.docx --user alice`.
async fn open(uri: &str, action: Action, user: Option<&str>, viewer: Option<uuid::Uuid>) -> ExitCode {
    let config = match config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    // Where a "not found" was looked for: the usual cause is the wrong data directory.
    let store = match &config.store {
        wopigate::config::StoreConfig::Local => format!("the local directory {} (WOPIGATE_DATA_DIR)", config.data_dir.display()),
        wopigate::config::StoreConfig::S3(s3) => format!("the S3 bucket '{}'", s3.bucket),
    };
    match admin::open(config, uri, action, user, viewer).await {
        Ok(session) => {
            let host_url = session.host_url.clone();
            let answer = wopigate::http::api::ViewerSessionData::from(session);
            println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
            println!("\nOpen in a browser (wopigate must be running at its public URL):\n{host_url}");
            ExitCode::SUCCESS
        }
        Err(e @ admin::AdminError::Session(wopigate::session::SessionError::NotFound)) => fail(format!("{e}, in {store}")),
        Err(e) => fail(e),
    }
}

async fn serve() -> ExitCode {
    let config = match config() {
        Ok(config) => config,
        Err(code) => return code,
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
    tracing::debug!(%bind, port = app.port(), "listening");
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wopigate: server failed: {e}");
            ExitCode::FAILURE
        }
    }
}
