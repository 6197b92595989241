//! A new file in a folder, named as WOPI asks (PutRelativeFile, CreateChildFile): a suggested
//! name adjusted until legal and free, or an exact one refused when illegal or taken.

use super::*;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NewFile {
    pub name: String,
    pub url: String,
    /// The *source* file's time: Collabora takes it as the time of the document it saved from
    /// and echoes it on that document's next PutFile (Save As leaves the source as it was).
    pub last_modified_time: String,
    pub host_view_url: String,
    pub host_edit_url: String,
}

/// How a new file's name is asked for (PutRelativeFile, CreateChildFile): exactly one of the
/// two targets, UTF-7 encoded.
pub struct NameRequest<'a> {
    pub suggested: Option<&'a str>,
    pub relative: Option<&'a str>,
    pub overwrite: Option<&'a str>,
}

/// Where a new file goes in `folder`, under WOPI's rules: a suggested name is adjusted until it
/// is legal and free (never 400 or 409; a bare extension is appended to `stem`); a relative one
/// is taken exactly, or refused (400 illegal, 409 taken or locked). `both`: the error when both
/// targets are sent (PutRelativeFile and CreateChildFile answer it differently).
pub(crate) async fn target_in(
    app: &AppState,
    scope: &Scope,
    folder: &FileKey,
    request: &NameRequest<'_>,
    stem: &str,
    both: impl FnOnce() -> WopiError,
) -> Result<Target, WopiError> {
    let overwrite = request.overwrite.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    match (request.suggested, request.relative) {
        (Some(_), Some(_)) => Err(both()),
        (None, None) => Err(WopiError::BadRequest("X-WOPI-SuggestedTarget or X-WOPI-RelativeTarget is required".into())),
        (Some(suggested), None) => {
            let suggested = header_name(suggested, "X-WOPI-SuggestedTarget")?;
            let wanted = if suggested.starts_with('.') { format!("{stem}{suggested}") } else { suggested };
            let legal = names::legalize(&wanted)
                .or_else(|| names::legalize(&format!("Untitled{}", names::split(&wanted).1)))
                .unwrap_or_else(|| "Untitled".into());
            Ok(Target::Suggested(legal))
        }
        (None, Some(relative)) => {
            let relative = header_name(relative, "X-WOPI-RelativeTarget")?;
            if let Err(e) = names::check(&relative) {
                let valid = match names::legalize(&relative) {
                    Some(legal) => Some(free_name(app, folder, &legal).await?),
                    None => None,
                };
                return Err(WopiError::InvalidTarget { reason: e.to_string(), valid });
            }
            let key = child(folder, &relative)?;
            fits(app, &key)?;
            match app.store.stat(&key).await? {
                Some(Entry::Folder) => Err(WopiError::TargetExists { valid: Some(free_name(app, folder, &relative).await?) }),
                Some(Entry::File(_)) if !overwrite => {
                    Err(WopiError::TargetExists { valid: Some(free_name(app, folder, &relative).await?) })
                }
                Some(Entry::File(_)) => {
                    if scope.rights(&key).level != Level::Edit {
                        return Err(WopiError::NotImplemented("this session may not overwrite that file".into()));
                    }
                    let held = app.locks.current(&ids::file_id(app.store.as_ref(), &key).await?, app.clock.now()).await?;
                    if !held.is_empty() {
                        return Err(WopiError::LockConflict { current: held, reason: "the target file is locked" });
                    }
                    Ok(Target::Replace(relative))
                }
                None => Ok(Target::Create(relative)),
            }
        }
    }
}

/// The answer for a file just created in `folder`: its URL with a token for it (what policy
/// grants there, capped by the presented token) and its host pages.
pub(crate) fn new_file(
    app: &AppState,
    claims: &AccessClaims,
    scope: &Scope,
    folder: &FileKey,
    name: String,
    id: String,
    source_time: String,
) -> Result<NewFile, WopiError> {
    let rights = scope.rights(&child(folder, &name)?).capped(token_level(claims));
    let (token, _) = mint_for(app, claims, Resource::File, id.clone(), rights.level)?;
    Ok(NewFile {
        url: format!("{}/wopi/files/{id}?access_token={}", wopi_base(app, claims), encode_component(&token)),
        host_view_url: host_page(app, &id, "view"),
        host_edit_url: host_page(app, &id, "edit"),
        last_modified_time: source_time,
        name,
    })
}

/// Where PutRelativeFile writes, once its checks passed.
pub(crate) enum Target {
    /// This name or the first free one after it.
    Suggested(String),
    /// Exactly this name, which must still be free.
    Create(String),
    /// Exactly this name, replacing the file there (kept as a past version).
    Replace(String),
}

/// Commits a staged upload into `folder` under the target's rules, each candidate name under
/// its file's guard; returns the name used and the new file's id.
pub(crate) async fn save_relative(
    app: &AppState,
    claims: &AccessClaims,
    folder: &FileKey,
    staged: &Staged,
    target: Target,
) -> Result<(String, String), WopiError> {
    let store = app.store.as_ref();
    let (names, precondition): (Vec<String>, Precondition) = match target {
        Target::Suggested(name) => (names::candidates(&name).collect(), Precondition::Absent),
        Target::Create(name) => (vec![name], Precondition::Absent),
        Target::Replace(name) => (vec![name], Precondition::Any),
    };
    let suggested = names.len() > 1;
    for name in names {
        let key = child(folder, &name)?;
        fits(app, &key)?;
        // Taken already: the next name (a create would be refused anyway).
        if suggested && store.stat(&key).await?.is_some() {
            continue;
        }
        let (guard, id) = ids::lock_path(store, &key).await?;
        if precondition == Precondition::Any {
            // Locked since the check above: the lock wins.
            let held = app.locks.current(&id, app.clock.now()).await?;
            if !held.is_empty() {
                return Err(WopiError::LockConflict { current: held, reason: "the target file is locked" });
            }
        }
        let committed = commit_save(app, claims, &guard, staged, &key, precondition.clone(), SaveFlags::default()).await;
        guard.release().await;
        match committed {
            Ok(_) => return Ok((name, id)),
            // Another request took the name first: suggested mode moves on to the next one.
            Err(StoreError::Conflict) if suggested => continue,
            Err(StoreError::Conflict) => {
                return Err(WopiError::TargetExists { valid: Some(free_name(app, folder, &name).await?) })
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(WopiError::TargetExists { valid: None })
}

pub(crate) fn child(folder: &FileKey, name: &str) -> Result<FileKey, WopiError> {
    let segment = RelPath::from_segments([name]).map_err(|e| WopiError::InvalidFileName(e.to_string()))?;
    let path = folder.path.join(&segment).map_err(|e| WopiError::InvalidFileName(e.to_string()))?;
    Ok(FileKey { owner: folder.owner.clone(), path })
}

/// `key` as a place to create or move something to: its path must fit the store (`Store::max_path_bytes`).
pub(crate) fn fits(app: &AppState, key: &FileKey) -> Result<(), WopiError> {
    if key.path.as_plain().len() <= app.store.max_path_bytes(&key.owner) {
        Ok(())
    } else {
        Err(WopiError::InvalidFileName("the path would be too long for the store".into()))
    }
}

/// The first of `name`, `name (1)`, … that is free in `folder`.
pub(crate) async fn free_name(app: &AppState, folder: &FileKey, name: &str) -> Result<String, WopiError> {
    for candidate in names::candidates(name) {
        if app.store.stat(&child(folder, &candidate)?).await?.is_none() {
            return Ok(candidate);
        }
    }
    Err(WopiError::TargetExists { valid: None })
}
