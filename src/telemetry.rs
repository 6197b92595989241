//! Logging: one JSON (or text) line per event; `http::RequestSpan` adds one line per request.
//! Lines are written by a background thread (tracing-appender), so a request never waits for
//! stderr.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the subscriber. Keep the guard alive until exit: dropping it flushes the log.
pub fn init(format: LogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        // Never drop lines under load: back-pressure instead (the channel is large).
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let result = match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        // Colour only for a person at a terminal: escape codes in a file or a pipe are noise.
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
    guard
}
