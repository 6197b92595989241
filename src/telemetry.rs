//! Logging: one JSON (or text) line per event; `http::RequestSpan` adds one line per request.
//! Lines are written by a background thread (tracing-appender), so a request never waits for
//! stderr.
//!
//! JSON lines have the shape of tracing-subscriber's `json()` format (`timestamp`, `level`,
//! `fields`, `target`, `span` with the current span's fields and `name`), written by
//! [`JsonLine`] straight into the line: the library's formatter collects every field into a
//! `String` first and parses the span's fields back from JSON on every event, which made the
//! request line the largest single cost of a CheckFileInfo (see BENCHMARKS.md).

use std::cell::RefCell;
use std::fmt;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
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
        LogFormat::Json => builder.fmt_fields(JsonMembers).event_format(JsonLine).try_init(),
        // Colour only for a person at a terminal: escape codes in a file or a pipe are noise.
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
    guard
}

/// An event as one JSON object on one line.
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        // Events from the `log` crate (actix, reqwest, rustls) with their own target and place.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut write = |line: &mut Vec<u8>| {
            line.clear();
            write_event(line, &now, ctx, event, meta);
            writer.write_str(std::str::from_utf8(line).map_err(|_| fmt::Error)?)
        };
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => write(&mut line),
            // A field's Display logged an event of its own: that one gets a buffer of its own.
            Err(_) => write(&mut Vec::new()),
        })
    }
}

thread_local! {
    /// The line being written, reused from event to event.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn write_event<S, N>(line: &mut Vec<u8>, now: &str, ctx: &FmtContext<'_, S, N>, event: &Event<'_>, meta: &tracing::Metadata<'_>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    line.extend_from_slice(b"{\"timestamp\":\"");
    line.extend_from_slice(now.as_bytes());
    line.extend_from_slice(b"\",\"level\":\"");
    line.extend_from_slice(meta.level().as_str().as_bytes());
    line.extend_from_slice(b"\",\"fields\":{");
    event.record(&mut JsonVisitor { out: line, first: true });
    line.extend_from_slice(b"},\"target\":");
    push_json_str(line, meta.target());
    let span = event.parent().and_then(|id| ctx.span(id)).or_else(|| ctx.lookup_current());
    if let Some(span) = span {
        line.extend_from_slice(b",\"span\":{");
        if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
            if !fields.fields.is_empty() {
                line.extend_from_slice(fields.fields.as_bytes());
                line.push(b',');
            }
        }
        line.extend_from_slice(b"\"name\":");
        push_json_str(line, span.name());
        line.push(b'}');
    }
    line.extend_from_slice(b"}\n");
}

/// A span's fields as JSON object members (`"a":1,"b":"x"`), kept with the span and copied into
/// each line logged inside it.
pub struct JsonMembers;

impl<'w> FormatFields<'w> for JsonMembers {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut members = Vec::new();
        fields.record(&mut JsonVisitor { out: &mut members, first: true });
        writer.write_str(std::str::from_utf8(&members).map_err(|_| fmt::Error)?)
    }

    fn add_fields(&self, current: &'w mut FormattedFields<Self>, fields: &tracing::span::Record<'_>) -> fmt::Result {
        let mut members = Vec::new();
        fields.record(&mut JsonVisitor { out: &mut members, first: current.fields.is_empty() });
        current.fields.push_str(std::str::from_utf8(&members).map_err(|_| fmt::Error)?);
        Ok(())
    }
}

/// Writes each field as a JSON member: numbers and booleans as themselves, everything else as a
/// string (what `Display`/`Debug` print, escaped).
struct JsonVisitor<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl JsonVisitor<'_> {
    /// Writes the member's name; false for the `log.*` fields that carry a `log` record's
    /// metadata (shown normalised instead, as tracing-subscriber's own formatter does).
    fn key(&mut self, field: &Field) -> bool {
        if field.name().starts_with("log.") {
            return false;
        }
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        push_json_str(self.out, field.name());
        self.out.push(b':');
        true
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.key(field) {
            return;
        }
        push_json_str(self.out, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if !self.key(field) {
            return;
        }
        self.out.extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if !self.key(field) {
            return;
        }
        let _ = write!(self.out, "{value}");
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if !self.key(field) {
            return;
        }
        let _ = write!(self.out, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if !self.key(field) {
            return;
        }
        if value.is_finite() {
            let _ = write!(self.out, "{value}");
        } else {
            self.out.extend_from_slice(b"null");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.key(field) {
            return;
        }
        let text = format!("{value:?}");
        push_json_str(self.out, &text);
    }
}

/// `s` as a JSON string literal (serde_json's escaping).
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    fn lines(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .fmt_fields(JsonMembers)
            .event_format(JsonLine)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }

    #[test]
    fn lines_have_the_json_format_shape_and_escape_everything() {
        let got = lines(|| {
            let span = tracing::info_span!("request", request_id = %"r-1", late = tracing::field::Empty);
            span.record("late", 7u64);
            let _inside = span.enter();
            tracing::warn!(
                path = "/a\"b\\c\n\u{1}é",
                status = 404u16,
                ms = 1.5f64,
                nan = f64::NAN,
                neg = -3i64,
                ok = true,
                shown = %"x\ty",
                absent = None::<&str>,
                "a \"quoted\" message"
            );
        });
        assert_eq!(got.len(), 1);
        let line = &got[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], module_path!());
        let fields = &line["fields"];
        assert_eq!(fields["message"], "a \"quoted\" message");
        assert_eq!(fields["path"], "/a\"b\\c\n\u{1}é");
        assert_eq!(fields["status"], 404);
        assert_eq!(fields["ms"], 1.5);
        assert!(fields["nan"].is_null());
        assert_eq!(fields["neg"], -3);
        assert_eq!(fields["ok"], true);
        assert_eq!(fields["shown"], "x\ty");
        assert!(fields.get("absent").is_none());
        assert_eq!(line["span"], serde_json::json!({"request_id": "r-1", "late": 7, "name": "request"}));
        let stamp = line["timestamp"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "{stamp}");
    }

    /// A `log` record (actix and reqwest log that way) shows its own target, without the
    /// `log.*` fields that carry it through tracing.
    #[test]
    fn log_records_show_their_own_target() {
        let _ = tracing_log::LogTracer::init();
        let got = lines(|| log::warn!(target: "some_crate::module", "from log {}", 1));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["target"], "some_crate::module");
        assert_eq!(got[0]["level"], "WARN");
        assert_eq!(got[0]["fields"], serde_json::json!({"message": "from log 1"}));
    }

    #[test]
    fn a_line_outside_any_span_has_no_span_and_a_span_without_fields_only_its_name() {
        let got = lines(|| {
            tracing::info!("alone");
            let span = tracing::info_span!("bare");
            let _inside = span.enter();
            tracing::info!(n = 1u64, "inside");
        });
        assert!(got[0].get("span").is_none());
        assert_eq!(got[0]["fields"], serde_json::json!({"message": "alone"}));
        assert_eq!(got[1]["span"], serde_json::json!({"name": "bare"}));
    }
}
