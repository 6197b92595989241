//! AddActivities (`POST /wopi/files/{id}`, `X-WOPI-Override: ADD_ACTIVITIES`): the client
//! reports comment activity (created, updated, deleted; people mentioned or in the thread) so
//! the host can notify people. Shape from the WOPI validator (see wopi-reference.md §3.14).
//!
//! Each activity is answered in order with its `Id` and a status: 0 (kept) for a comment, 3
//! (not supported) for any other `Type`, which is neither kept nor delivered. A batch that is
//! not what the protocol describes is refused whole (400) and changes nothing. Comments are
//! kept per file in the store (`activities/<file id>.json`, the newest `KEEP` and at most
//! `KEEP_BYTES`), written by compare-and-set so concurrent batches lose nothing, and each
//! accepted batch is queued for `WOPIGATE_ACTIVITY_WEBHOOK` without waiting for it.
//!
//! Who may add activities: any signed-in user the session still lets read the file (comments
//! are made in view mode too). Anonymous visitors may not (501, and CheckFileInfo does not
//! advertise it to them): nobody could be notified about who commented, and strangers could
//! grow the store, as with PutUserInfo.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{wopi_time, FileSession, WopiError};
use crate::state::AppState;
use crate::store::{Store, StoreError};
use crate::webhook::Delivery;

/// The largest request body read (a bigger one is refused with 413 before it is read).
pub const MAX_BODY: usize = 256 * 1024;
/// Activities in one batch.
pub const MAX_BATCH: usize = 100;
/// Activities kept per file: the newest.
pub const KEEP: usize = 500;
/// The most a file's stored activities take (JSON bytes): the oldest go first.
pub const KEEP_BYTES: usize = 512 * 1024;
/// `ContentId`, `NavigationId` (the validator sends 1024 characters as "max length").
const MAX_REFERENCE: usize = 4096;
const MAX_COMMENT: usize = 16 * 1024;
const MAX_PEOPLE: usize = 100;
/// A person's name, id and provider; an activity's `Id` and `Type`.
const MAX_NAME: usize = 512;
/// Compare-and-set rounds before giving up on a contended file.
const SWAP_ROUNDS: usize = 200;

/// Status of an activity that was kept.
pub const KEPT: u8 = 0;
/// Status of an activity of a type we do not handle (the validator expects 3 for these).
pub const UNSUPPORTED: u8 = 3;

/// A comment activity as stored and delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// The client's GUID, as it sent it.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// When the client says it happened (UTC, ISO 8601).
    pub created: String,
    /// When wopigate accepted it.
    pub received: String,
    /// The user whose session reported it (the token's), and their display name.
    pub user_id: String,
    pub user_name: String,
    pub content_id: String,
    /// `created`, `updated` or `deleted`.
    pub content_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub navigation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_reply: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub people: Vec<Person>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default)]
    pub mentioned: bool,
    #[serde(default)]
    pub in_thread: bool,
    #[serde(default)]
    pub replied_to: bool,
}

/// What is stored per file: oldest first.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Stored {
    pub activities: Vec<Activity>,
}

/// The answer: one entry per activity, in the request's order.
#[derive(Debug, Serialize)]
pub struct Answer {
    #[serde(rename = "ActivityResponses")]
    pub responses: Vec<Response>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    pub id: String,
    pub status: u8,
}

/// The webhook's body (see README, "Activities and the webhook").
#[derive(Serialize)]
struct Payload<'a> {
    delivery_id: &'a str,
    timestamp: String,
    file_id: &'a str,
    user: User<'a>,
    activities: &'a [Activity],
}

#[derive(Serialize)]
struct User<'a> {
    id: &'a str,
    name: &'a str,
}

/// The metadata object holding a file's activities.
pub fn object_name(file_id: &str) -> String {
    format!("activities/{file_id}.json")
}

/// AddActivities: validates the whole batch, keeps its comments, queues them for the webhook.
pub async fn add(app: &AppState, s: &FileSession, body: &[u8]) -> Result<Answer, WopiError> {
    if s.claims.anon {
        return Err(WopiError::NotImplemented("activities are kept for signed-in users only".into()));
    }
    let now = app.clock.now();
    let parsed = parse(body, &s.claims.sub, &s.claims.name, now)?;
    let kept: Vec<Activity> = parsed.iter().filter_map(|(_, a)| a.clone()).collect();
    if !kept.is_empty() {
        keep(app.store.as_ref(), &s.claims.fid, &kept).await?;
        if let Some(webhook) = &app.activity_webhook {
            let id = uuid::Uuid::new_v4().to_string();
            let payload = Payload {
                delivery_id: &id,
                timestamp: wopi_time(now),
                file_id: &s.claims.fid,
                user: User { id: &s.claims.sub, name: &s.claims.name },
                activities: &kept,
            };
            let body = serde_json::to_vec(&payload).map_err(|e| WopiError::Store(StoreError::Io(std::io::Error::other(e))))?;
            webhook.enqueue(Delivery { id, body });
        }
    }
    let responses = parsed
        .into_iter()
        .map(|(id, activity)| Response { id, status: if activity.is_some() { KEPT } else { UNSUPPORTED } })
        .collect();
    Ok(Answer { responses })
}

/// Adds `new` to the file's stored activities (replacing any with the same id: a client's retry
/// repeats them), dropping the oldest beyond the bounds; compare-and-set, so concurrent batches
/// on one file all land.
pub async fn keep(store: &dyn Store, file_id: &str, new: &[Activity]) -> Result<(), StoreError> {
    let name = object_name(file_id);
    // Batches for one file in this process take turns, so only other replicas' writes make a
    // swap fail (on S3 every failed round costs a trip through the commit mutex).
    let _turn = stripe(file_id).lock().await;
    for _ in 0..SWAP_ROUNDS {
        let raw = store.get_object(&name).await?;
        let mut stored = match raw.as_deref().map(serde_json::from_slice::<Stored>) {
            None => Stored::default(),
            Some(Ok(stored)) => stored,
            Some(Err(e)) => {
                tracing::warn!(file_id, error = %e, "stored activities are unreadable; starting them afresh");
                Stored::default()
            }
        };
        stored.add(new);
        let text = serde_json::to_vec(&stored).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        if store.swap_object(&name, raw.as_deref(), Some(&text)).await? {
            return Ok(());
        }
        // Another batch landed first: read it and try again, out of step with the others.
        let pause = rand::thread_rng().gen_range(1..=10);
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
    }
    Err(StoreError::Io(std::io::Error::other("concurrent activity writes did not settle")))
}

/// Whether two GUIDs are the same in whatever spelling (case, braces, `urn:uuid:`, no hyphens).
fn same_id(a: &str, b: &str) -> bool {
    match (uuid::Uuid::try_parse(a), uuid::Uuid::try_parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// One of a fixed set of in-process locks, chosen by the file id (bounded: no map to grow).
fn stripe(file_id: &str) -> &'static tokio::sync::Mutex<()> {
    static STRIPES: [tokio::sync::Mutex<()>; 64] = [const { tokio::sync::Mutex::const_new(()) }; 64];
    let hash = file_id.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    &STRIPES[hash % STRIPES.len()]
}

impl Stored {
    fn add(&mut self, new: &[Activity]) {
        // A retry replaces the user's own activity; the same id from someone else replaces
        // nothing of theirs (ids are the client's: anyone can send any).
        self.activities.retain(|old| !new.iter().any(|n| same_id(&n.id, &old.id) && n.user_id == old.user_id));
        self.activities.extend_from_slice(new);
        let excess = self.activities.len().saturating_sub(KEEP);
        self.activities.drain(..excess);
        let sizes: Vec<usize> = self.activities.iter().map(|a| serde_json::to_vec(a).map_or(0, |v| v.len() + 1)).collect();
        let mut total: usize = sizes.iter().sum();
        let mut drop = 0;
        while total > KEEP_BYTES && drop < sizes.len() {
            total -= sizes[drop];
            drop += 1;
        }
        self.activities.drain(..drop);
    }
}

/// Each activity's id and, for a comment, what is kept of it (`None`: an unsupported type).
fn parse(body: &[u8], user_id: &str, user_name: &str, now: DateTime<Utc>) -> Result<Vec<(String, Option<Activity>)>, WopiError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let list = root
        .get("Activities")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the body must be an object with an \"Activities\" array".into()))?;
    if list.is_empty() {
        return Err(bad("\"Activities\" is empty".into()));
    }
    if list.len() > MAX_BATCH {
        return Err(bad(format!("at most {MAX_BATCH} activities per request")));
    }
    let mut out: Vec<(String, Option<Activity>)> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let fields = item.as_object().ok_or_else(|| bad(format!("Activities[{i}] is not an object")))?;
        let at = format!("Activities[{i}]");
        let id = text(fields, "Id", MAX_NAME, &at)?.ok_or_else(|| bad(format!("{at}.Id is required")))?;
        if uuid::Uuid::try_parse(id).is_err() {
            return Err(bad(format!("{at}.Id must be a GUID")));
        }
        if out.iter().any(|(seen, _)| same_id(seen, id)) {
            return Err(bad(format!("{at}.Id repeats an earlier activity's")));
        }
        let kind = text(fields, "Type", MAX_NAME, &at)?.ok_or_else(|| bad(format!("{at}.Type is required")))?;
        let activity = match kind {
            "comment" => Some(comment(fields, &at, id, user_id, user_name, now)?),
            _ => None,
        };
        out.push((id.to_string(), activity));
    }
    Ok(out)
}

fn comment(
    fields: &Map<String, Value>,
    at: &str,
    id: &str,
    user_id: &str,
    user_name: &str,
    now: DateTime<Utc>,
) -> Result<Activity, WopiError> {
    // One test of the validator sends `Timestamp` where the others send `Created`.
    let stamp = match text(fields, "Created", MAX_NAME, at)? {
        Some(stamp) => stamp,
        None => text(fields, "Timestamp", MAX_NAME, at)?.ok_or_else(|| bad(format!("{at}: a comment needs Created (or Timestamp)")))?,
    };
    let created = parse_time(stamp).ok_or_else(|| bad(format!("{at}: Created is not a date and time (2017-02-15T13:47:13Z)")))?;
    let data_at = format!("{at}.Data");
    let data = match fields.get("Data") {
        Some(Value::Object(data)) => data,
        Some(Value::Null) | None => return Err(bad(format!("{data_at} is required for a comment"))),
        Some(_) => return Err(bad(format!("{data_at} must be an object"))),
    };
    let content_id = text(data, "ContentId", MAX_REFERENCE, &data_at)?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad(format!("{data_at}.ContentId is required")))?;
    let action = text(data, "ContentAction", MAX_NAME, &data_at)?.ok_or_else(|| bad(format!("{data_at}.ContentAction is required")))?;
    let content_action = ["created", "updated", "deleted"]
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(action))
        .ok_or_else(|| bad(format!("{data_at}.ContentAction must be created, updated or deleted")))?;
    let people_at = format!("{at}.People");
    let people = match fields.get("People") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if list.len() <= MAX_PEOPLE => {
            list.iter().enumerate().map(|(j, p)| person(p, &format!("{people_at}[{j}]"))).collect::<Result<_, _>>()?
        }
        Some(Value::Array(_)) => return Err(bad(format!("{people_at}: at most {MAX_PEOPLE} people"))),
        Some(_) => return Err(bad(format!("{people_at} must be an array"))),
    };
    Ok(Activity {
        id: id.to_string(),
        kind: "comment".into(),
        created: wopi_time(created),
        received: wopi_time(now),
        user_id: user_id.to_string(),
        user_name: user_name.to_string(),
        content_id: content_id.to_string(),
        content_action: content_action.to_string(),
        navigation_id: text(data, "NavigationId", MAX_REFERENCE, &data_at)?.map(str::to_string),
        comment_text: text(data, "CommentText", MAX_COMMENT, &data_at)?.map(str::to_string),
        is_reply: flag(data, "IsReply", &data_at)?,
        people,
    })
}

fn person(value: &Value, at: &str) -> Result<Person, WopiError> {
    let fields = value.as_object().ok_or_else(|| bad(format!("{at} is not an object")))?;
    let id = text(fields, "Id", MAX_NAME, at)?.filter(|i| !i.is_empty()).ok_or_else(|| bad(format!("{at}.Id is required")))?;
    Ok(Person {
        id: id.to_string(),
        name: text(fields, "Name", MAX_NAME, at)?.map(str::to_string),
        provider: text(fields, "Provider", MAX_NAME, at)?.map(str::to_string),
        mentioned: flag(fields, "Mentioned", at)?.unwrap_or(false),
        in_thread: flag(fields, "InThread", at)?.unwrap_or(false),
        replied_to: flag(fields, "RepliedTo", at)?.unwrap_or(false),
    })
}

fn bad(message: String) -> WopiError {
    WopiError::BadRequest(format!("AddActivities: {message}"))
}

/// An optional string property (null = absent) of at most `max` bytes.
fn text<'a>(fields: &'a Map<String, Value>, name: &str, max: usize, at: &str) -> Result<Option<&'a str>, WopiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s)),
        Some(Value::String(_)) => Err(bad(format!("{at}.{name} is longer than {max} bytes"))),
        Some(_) => Err(bad(format!("{at}.{name} must be a string"))),
    }
}

/// An optional boolean property (null = absent).
fn flag(fields: &Map<String, Value>, name: &str, at: &str) -> Result<Option<bool>, WopiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(format!("{at}.{name} must be true or false"))),
    }
}

/// ISO 8601 with an offset (RFC 3339); or without one (UTC), as .NET writes it; or the
/// validator's form, fraction digits straight after the seconds (`2017-02-15T13:47:13000000Z`).
pub fn parse_time(stamp: &str) -> Option<DateTime<Utc>> {
    let stamp = stamp.trim();
    if let Some(t) = super::time::parse(stamp) {
        return Some(t);
    }
    let (base, rest) = (stamp.get(..19)?, stamp.get(19..)?);
    let naive = NaiveDateTime::parse_from_str(base, "%Y-%m-%dT%H:%M:%S").ok()?;
    let rest = rest.strip_suffix(['Z', 'z']).unwrap_or(rest);
    let digits = rest.strip_prefix('.').unwrap_or(rest);
    if digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.is_empty() && !rest.is_empty()) {
        return None;
    }
    let nanos: i64 = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse().ok()? };
    Some(Utc.from_utc_datetime(&naive) + chrono::Duration::nanoseconds(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_the_forms_clients_send() {
        let t = |s: &str| parse_time(s).map(wopi_time);
        assert_eq!(t("2017-02-15T13:47:13000000Z").as_deref(), Some("2017-02-15T13:47:13.000000Z"));
        assert_eq!(t("2017-02-15T13:47:13.25Z").as_deref(), Some("2017-02-15T13:47:13.250000Z"));
        assert_eq!(t("2017-02-15T14:47:13+01:00").as_deref(), Some("2017-02-15T13:47:13.000000Z"));
        assert_eq!(t("2017-02-15T13:47:13").as_deref(), Some("2017-02-15T13:47:13.000000Z"));
        for wrong in ["", "yesterday", "2017-02-30T13:47:13Z", "2017-02-15T13:47:13.Z", "2017-02-15T13:47:13xZ", "2017-02-15T13:47:131234567890Z"] {
            assert_eq!(t(wrong), None, "{wrong}");
        }
    }

    fn activity(id: &str, text_len: usize) -> Activity {
        Activity {
            id: id.into(),
            kind: "comment".into(),
            created: String::new(),
            received: String::new(),
            user_id: "u".into(),
            user_name: "U".into(),
            content_id: "c".into(),
            content_action: "created".into(),
            navigation_id: None,
            comment_text: Some("x".repeat(text_len)),
            is_reply: None,
            people: vec![],
        }
    }

    #[test]
    fn an_id_replaces_only_its_own_users_activity_in_any_spelling() {
        let id = "9c13c833-0000-4000-8000-000000000001";
        let mut stored = Stored::default();
        stored.add(&[activity(id, 0)]);
        // Someone else's activity with the same id: kept beside, not in place of, the first.
        let theirs = Activity { user_id: "mallory".into(), comment_text: Some("replaced".into()), ..activity(id, 0) };
        stored.add(&[theirs]);
        assert_eq!(stored.activities.len(), 2);
        assert!(stored.activities.iter().any(|a| a.user_id == "u" && a.comment_text.as_deref() == Some("")));
        // The user's own retry, spelt with braces and capitals, replaces their copy.
        stored.add(&[activity("{9C13C833-0000-4000-8000-000000000001}", 0)]);
        assert_eq!(stored.activities.iter().filter(|a| a.user_id == "u").count(), 1);
        assert!(same_id(id, "urn:uuid:9c13c833-0000-4000-8000-000000000001"));
        assert!(same_id(id, "9C13C833000040008000000000000001"));
        assert!(!same_id(id, "9c13c833-0000-4000-8000-000000000002"));
    }

    #[test]
    fn the_newest_are_kept_within_both_bounds() {
        let mut stored = Stored::default();
        for i in 0..KEEP + 10 {
            stored.add(&[activity(&i.to_string(), 0)]);
        }
        assert_eq!(stored.activities.len(), KEEP);
        assert_eq!(stored.activities[0].id, "10");
        // A repeated id replaces its earlier copy, whatever its case.
        stored.add(&[activity("AB", 0)]);
        stored.add(&[activity("ab", 0)]);
        assert_eq!(stored.activities.iter().filter(|a| a.id.eq_ignore_ascii_case("ab")).count(), 1);
        let mut big = Stored::default();
        for i in 0..100 {
            big.add(&[activity(&i.to_string(), MAX_COMMENT)]);
        }
        assert!(serde_json::to_vec(&big).unwrap().len() <= KEEP_BYTES + 64);
        assert_eq!(big.activities.last().unwrap().id, "99", "the newest stays");
        assert!(big.activities.len() < 100 && big.activities.len() > 20, "{}", big.activities.len());
    }
}
