//! Which saves become past versions, and who made each.
//!
//! Clients autosave every few minutes; keeping each would bury the versions people made. So:
//! - a save by a person (`IsAutosave` false or absent) keeps the content it replaces;
//! - consecutive autosaves by one user within the autosave window replace that window's
//!   autosave version instead of adding one (the replaced content is dropped);
//! - an exit save, a save by someone else, or the window's end closes the window;
//! - a save the client says changed nothing (`IsModifiedByUser: false`) adds no version when
//!   what it replaces is the same user's own save; anyone else's content is kept.
//!
//! Who made each version is kept in one record per file (`history/<file id>.json`), read and
//! written under the file's guard around the commit. The record never decides whether a save
//! succeeds: unreadable, it is treated as empty (the replaced content is kept); a failed write
//! after a commit is logged and the save stands.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{Entry, FileGuard, FileKey, FileMeta, Precondition, Replaced, Staged, Store, StoreError};

/// Why a client saves (Collabora's and ONLYOFFICE's `X-COOL-WOPI-*`/`X-LOOL-WOPI-*` headers);
/// `None` when not sent or not `true`/`false`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SaveFlags {
    pub modified_by_user: Option<bool>,
    pub autosave: Option<bool>,
    pub exit_save: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaveKind {
    /// Saved by a person (or a client that does not say).
    Person,
    Autosave,
    ExitSave,
    /// Written by `wopigate put`.
    Operator,
}

impl SaveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SaveKind::Person => "save",
            SaveKind::Autosave => "autosave",
            SaveKind::ExitSave => "exit save",
            SaveKind::Operator => "wopigate put",
        }
    }
}

/// Who wrote one version of a file, when and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedBy {
    pub user: String,
    pub name: String,
    pub at: DateTime<Utc>,
    pub kind: SaveKind,
    /// For autosaves: when the run of autosaves this one belongs to began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<DateTime<Utc>>,
}

/// A save about to be committed.
#[derive(Debug, Clone)]
pub struct Save<'a> {
    pub user: &'a str,
    pub name: &'a str,
    pub flags: SaveFlags,
    pub at: DateTime<Utc>,
    /// `wopigate put` rather than a WOPI client.
    pub operator: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Recorded {
    version: String,
    by: SavedBy,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct History {
    #[serde(default)]
    current: Option<Recorded>,
    /// Oldest first.
    #[serde(default)]
    past: Vec<Recorded>,
}

fn history_object(file_id: &str) -> String {
    format!("history/{file_id}.json")
}

/// What to do with the content a save replaces, and who the new content is by. Pure: the
/// whole policy of this module.
fn decide(current: Option<&SavedBy>, save: &Save, window: Duration) -> (Replaced, Option<SavedBy>) {
    let by = |kind, window| SavedBy { user: save.user.to_string(), name: save.name.to_string(), at: save.at, kind, window };
    if save.operator {
        return (Replaced::Keep, Some(by(SaveKind::Operator, None)));
    }
    if save.flags.modified_by_user == Some(false) {
        // The client says nothing changed. Taken at its word only for content this same user
        // wrote (their own last save, written again): then no version is added. Anyone else's
        // content, or content of unknown origin, is kept, as for any save (a client's word
        // must not erase another person's work).
        if let Some(own) = current.filter(|c| c.user == save.user && c.kind != SaveKind::Operator) {
            return (Replaced::Drop, Some(SavedBy { at: save.at, name: save.name.to_string(), ..own.clone() }));
        }
        return (Replaced::Keep, Some(by(SaveKind::Person, None)));
    }
    if save.flags.exit_save == Some(true) {
        return (Replaced::Keep, Some(by(SaveKind::ExitSave, None)));
    }
    if save.flags.autosave == Some(true) {
        let open_window = current
            .filter(|c| c.kind == SaveKind::Autosave && c.user == save.user)
            .and_then(|c| c.window)
            .filter(|start| save.at < *start + window);
        return match open_window {
            Some(start) => (Replaced::Drop, Some(by(SaveKind::Autosave, Some(start)))),
            None => (Replaced::Keep, Some(by(SaveKind::Autosave, Some(save.at)))),
        };
    }
    (Replaced::Keep, Some(by(SaveKind::Person, None)))
}

/// How many past versions are kept, and the autosave window (from configuration).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub keep: usize,
    pub autosave_window: Duration,
}

impl Retention {
    pub fn of(config: &crate::config::Config) -> Retention {
        Retention { keep: config.keep_versions, autosave_window: Duration::seconds(config.autosave_window_secs as i64) }
    }
}

/// Commits `staged` at `key` as `save` (the store's compare-and-set `precondition` as always),
/// keeping or dropping the content it replaces as this module's rules say, and records who
/// saved the new version. Call it holding the file's guard: the record is read and written
/// under it.
pub async fn commit(
    store: &dyn Store,
    guard: &FileGuard,
    staged: &Staged,
    key: &FileKey,
    precondition: Precondition,
    save: &Save<'_>,
    retention: Retention,
) -> Result<FileMeta, StoreError> {
    let file_id = guard.history();
    let replacing = match &precondition {
        Precondition::Version(v) => Some(v.clone()),
        Precondition::Absent => None,
        // A failed read here only means the replaced content's author goes unrecorded.
        Precondition::Any => match store.stat(key).await {
            Ok(Some(Entry::File(meta))) => Some(meta.version),
            _ => None,
        },
    };
    let mut history = read(store, file_id).await;
    let current = history.current.take().filter(|c| Some(&c.version) == replacing.as_ref());
    // A new file (nothing replaced) has no current record, and `decide` keeps whatever it has
    // no record of: so `replaced` is `Keep` there, and it means nothing.
    let (replaced, by) = decide(current.as_ref().map(|c| &c.by), save, retention.autosave_window);
    let new = store.commit(guard, staged, key, precondition, replaced).await?;

    if let (Replaced::Keep, Some(previous)) = (replaced, current) {
        history.past.push(previous);
    }
    let excess = history.past.len().saturating_sub(retention.keep);
    history.past.drain(..excess);
    history.current = by.map(|by| Recorded { version: new.version.clone(), by });
    // Logged, never failed: the save has happened.
    let written = match serde_json::to_vec(&history) {
        Ok(text) => store.put_object(&history_object(file_id), &text).await,
        Err(e) => Err(StoreError::Io(std::io::Error::other(e))),
    };
    if let Err(e) = written {
        tracing::warn!(file_id, error = %e, "could not record who saved this version");
    }
    Ok(new)
}

async fn read(store: &dyn Store, file_id: &str) -> History {
    match store.get_object(&history_object(file_id)).await {
        Ok(Some(raw)) => serde_json::from_slice(&raw).unwrap_or_default(),
        Ok(None) => History::default(),
        Err(e) => {
            tracing::warn!(file_id, error = %e, "could not read the version history; keeping the replaced content");
            History::default()
        }
    }
}

/// One version of a file as `wopigate versions` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub meta: FileMeta,
    pub by: Option<SavedBy>,
    pub current: bool,
}

/// The past versions the store keeps for `file_id` (oldest first) and then the current one,
/// each with who saved it when that is known.
pub async fn list(store: &dyn Store, file_id: &str, current: Option<FileMeta>) -> Result<Vec<Listed>, StoreError> {
    let history = read(store, file_id).await;
    let by = |version: &str| {
        history.past.iter().chain(history.current.iter()).rev().find(|r| r.version == version).map(|r| r.by.clone())
    };
    let mut listed: Vec<Listed> =
        store.past_versions(file_id).await?.into_iter().map(|meta| Listed { by: by(&meta.version), meta, current: false }).collect();
    if let Some(meta) = current {
        listed.push(Listed { by: by(&meta.version), meta, current: true });
    }
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: i64 = 600;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn save(user: &str, secs: i64, autosave: Option<bool>, exit: Option<bool>, modified: Option<bool>) -> Save<'_> {
        Save {
            user,
            name: user,
            flags: SaveFlags { modified_by_user: modified, autosave, exit_save: exit },
            at: at(secs),
            operator: false,
        }
    }

    /// Runs saves one after the other; returns which replaced contents were kept.
    fn run(saves: &[Save]) -> Vec<Replaced> {
        let mut current: Option<SavedBy> = None;
        let mut decisions = Vec::new();
        for (i, s) in saves.iter().enumerate() {
            let (replaced, by) = decide(current.as_ref(), s, Duration::seconds(WINDOW));
            if i > 0 {
                decisions.push(replaced);
            }
            current = by;
        }
        decisions
    }

    use Replaced::{Drop, Keep};

    #[test]
    fn person_saves_always_keep_a_version() {
        let saves = [save("a", 0, None, None, None), save("a", 1, Some(false), None, Some(true)), save("a", 2, None, None, None)];
        assert_eq!(run(&saves), [Keep, Keep]);
    }

    #[test]
    fn autosaves_by_one_user_within_the_window_make_one_version() {
        let saves = [
            save("a", 0, None, None, None),
            save("a", 60, Some(true), None, Some(true)),  // replaces the person save: kept
            save("a", 120, Some(true), None, Some(true)), // same window: the previous autosave goes
            save("a", 599, Some(true), None, Some(true)), // still within 10 minutes of its start
            save("a", 660, Some(true), None, Some(true)), // the window has ended: kept, new window
            save("a", 700, Some(true), None, Some(true)),
        ];
        assert_eq!(run(&saves), [Keep, Drop, Drop, Keep, Drop]);
    }

    #[test]
    fn exit_saves_other_users_and_person_saves_close_the_window() {
        let exit = [save("a", 0, Some(true), None, Some(true)), save("a", 10, Some(true), Some(true), Some(true)), save("a", 20, Some(true), None, Some(true))];
        assert_eq!(run(&exit), [Keep, Keep], "the exit save keeps the autosave; the next autosave keeps the exit save");
        let other = [save("a", 0, Some(true), None, Some(true)), save("b", 10, Some(true), None, Some(true)), save("a", 20, Some(true), None, Some(true))];
        assert_eq!(run(&other), [Keep, Keep]);
        let person = [save("a", 0, Some(true), None, Some(true)), save("a", 10, None, None, None), save("a", 20, Some(true), None, Some(true))];
        assert_eq!(run(&person), [Keep, Keep]);
    }

    #[test]
    fn unmodified_saves_add_no_version_over_the_same_users_content_only() {
        let window = Duration::seconds(WINDOW);
        let (_, by_a) = decide(None, &save("a", 0, Some(true), None, Some(true)), window);
        // a's own content written again: no version, and a run of autosaves goes on.
        let (replaced, after) = decide(by_a.as_ref(), &save("a", 5, Some(false), Some(false), Some(false)), window);
        assert_eq!(replaced, Drop);
        let after = after.unwrap();
        assert_eq!((after.user.as_str(), after.kind, after.window), ("a", SaveKind::Autosave, by_a.unwrap().window));
        // Someone else's content, or content of unknown origin: kept, and the new content is
        // the saver's, whatever the client claims.
        let (_, by_a) = decide(None, &save("a", 0, None, None, None), window);
        let (replaced, after) = decide(by_a.as_ref(), &save("b", 5, Some(false), None, Some(false)), window);
        assert_eq!((replaced, after.unwrap().user.as_str()), (Keep, "b"));
        let (replaced, after) = decide(None, &save("b", 5, Some(false), None, Some(false)), window);
        assert_eq!((replaced, after.unwrap().user.as_str()), (Keep, "b"));
    }

    #[test]
    fn a_zero_window_keeps_every_autosave() {
        let mut current = None;
        for i in 0..4 {
            let (replaced, by) = decide(current.as_ref(), &save("a", i, Some(true), None, Some(true)), Duration::zero());
            assert_eq!(replaced, Keep);
            current = by;
        }
    }
}
