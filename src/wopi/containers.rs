//! Containers (folders): `/wopi/containers/{id}`. A container id is the file id of a folder
//! (`store::ids`): opaque, the same for every user, stable across renames made through wopigate.
//! A user's root (`cloudreve://my/`) and a shared folder are containers.
//!
//! What a token may do with a container is decided like for files: `policy` over the store's
//! current state (ownership, the share's manifest as it is now), capped by the presented token.
//! Every token handed out here (child files, child containers, ancestors, the ecosystem) is
//! minted the same way and expires no later than the presented one.

use serde::Serialize;

use super::new_files::{child, fits, free_name, new_file, save_relative, target_in, NameRequest, NewFile};
use super::{header_name, hold, mint_for, names, policy_error, token_level, token_rights, wopi_base, wopi_time, WopiError};
use crate::discovery::action_url::encode_component;
use crate::policy::{Freshness, Level, Rights, Scope};
use crate::state::AppState;
use crate::store::{ids, Entry, FileGuard, FileKey, StoreError};
use crate::token::{AccessClaims, Resource};

/// What a root container is called (Cloudreve's name for a user's own files).
pub const ROOT_NAME: &str = "My files";
/// RenameContainer moves everything inside and re-points the ids of what has one, under their
/// guards: a folder with more than this many entries below it is refused rather than held long.
pub const MAX_RENAME_ENTRIES: usize = 1000;

/// An authorised request on a container.
pub struct ContainerSession {
    pub claims: AccessClaims,
    pub key: FileKey,
    scope: Scope,
    rights: Rights,
}

impl ContainerSession {
    fn require(&self, level: Level, what: &str) -> Result<(), WopiError> {
        if self.rights.level >= level {
            Ok(())
        } else {
            Err(WopiError::Unauthorized(format!("this access token does not allow {what} in the container")))
        }
    }
}

/// Resolves the container a token names and what its session may do there now.
pub async fn open(app: &AppState, claims: AccessClaims) -> Result<ContainerSession, WopiError> {
    let mut key = ids::resolve(app.store.as_ref(), &claims.fid).await?.ok_or(WopiError::NotFound)?;
    if !is_folder(app, &key).await? {
        // A rename of a folder above may be moving it (its id not yet re-pointed): wait for
        // its guard, which that rename holds, and look again.
        let (guard, now) = hold(app, &claims.fid).await?;
        let there = is_folder(app, &now).await;
        guard.release().await;
        if !there? {
            return Err(WopiError::NotFound);
        }
        key = now;
    }
    let (scope, rights) = token_rights(app, &claims, &key, Freshness::Fresh).await?;
    if rights.level == Level::None {
        return Err(WopiError::Unauthorized("this session no longer has access to the container".into()));
    }
    Ok(ContainerSession { claims, key, scope, rights })
}

async fn is_folder(app: &AppState, key: &FileKey) -> Result<bool, WopiError> {
    // A user's root is there before anything is put in it.
    Ok(key.path.is_root() || app.store.stat(key).await? == Some(Entry::Folder))
}

/// `{Name, Url}`: a container and a token for it.
#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerPointer {
    pub name: String,
    pub url: String,
}

/// CheckContainerInfo's answer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInfo {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_url: Option<String>,
    supported_share_url_types: Vec<&'static str>,
    user_can_create_child_container: bool,
    user_can_create_child_file: bool,
    user_can_delete: bool,
    user_can_rename: bool,
    /// These three must match the same user's CheckFileInfo (the validator compares them).
    is_anonymous_user: bool,
    is_edu_user: bool,
    license_check_for_edit_is_enabled: bool,
}

/// What a container is called: its folder's name, or `ROOT_NAME` for a user's root.
fn name_of(key: &FileKey) -> String {
    key.path.file_name().map_or_else(|| ROOT_NAME.to_string(), str::to_string)
}

fn parent_of(key: &FileKey) -> FileKey {
    FileKey { owner: key.owner.clone(), path: key.path.parent() }
}

fn info_of(claims: &AccessClaims, scope: &Scope, key: &FileKey) -> ContainerInfo {
    let rights = scope.rights(key).capped(token_level(claims));
    let editable = rights.level == Level::Edit;
    // Renaming writes a name into the parent: it needs edit rights there (as for files).
    let may_rename = editable
        && !key.path.is_root()
        && scope.rights(&parent_of(key)).capped(token_level(claims)).level == Level::Edit;
    ContainerInfo {
        name: name_of(key),
        host_url: None,
        supported_share_url_types: super::share_url::supported_types(scope, claims, key),
        user_can_create_child_container: editable,
        user_can_create_child_file: editable,
        user_can_delete: rights.owner && !key.path.is_root(),
        user_can_rename: may_rename,
        is_anonymous_user: claims.anon,
        is_edu_user: false,
        license_check_for_edit_is_enabled: false,
    }
}

/// CheckContainerInfo.
pub fn check_container_info(c: &ContainerSession) -> ContainerInfo {
    info_of(&c.claims, &c.scope, &c.key)
}

/// GetShareUrl on a container: the folder's share link (`share_url::share_url`).
pub async fn share_url(app: &AppState, c: &ContainerSession, url_type: Option<&str>) -> Result<String, WopiError> {
    super::share_url::share_url(app, &c.scope, &c.claims, &c.key, &c.claims.fid, url_type).await
}

/// A pointer to the container at `key` with a token for it: what policy grants there, capped by
/// the presented token, expiring no later than it.
pub(super) async fn pointer(app: &AppState, claims: &AccessClaims, scope: &Scope, key: &FileKey) -> Result<ContainerPointer, WopiError> {
    let level = scope.rights(key).capped(token_level(claims)).level;
    let id = ids::file_id(app.store.as_ref(), key).await?;
    let (token, _) = mint_for(app, claims, Resource::Container, id.clone(), level)?;
    Ok(ContainerPointer { name: name_of(key), url: container_url(app, claims, &id, &token) })
}

pub(super) fn container_url(app: &AppState, claims: &AccessClaims, id: &str, token: &str) -> String {
    format!("{}/wopi/containers/{id}?access_token={}", wopi_base(app, claims), encode_component(token))
}

/// The folders above `key` its principal may reach, root first, ending with its parent. For an
/// owner that reaches their root; through a shared folder it stops at the shared folder.
async fn ancestors(app: &AppState, claims: &AccessClaims, scope: &Scope, key: &FileKey) -> Result<Vec<ContainerPointer>, WopiError> {
    let mut chain = Vec::new();
    let mut at = key.clone();
    while !at.path.is_root() {
        at = parent_of(&at);
        if scope.rights(&at).level == Level::None {
            break;
        }
        chain.push(at.clone());
    }
    let mut pointers = Vec::with_capacity(chain.len());
    for folder in chain.iter().rev() {
        pointers.push(pointer(app, claims, scope, folder).await?);
    }
    Ok(pointers)
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct Ancestors {
    pub ancestors_with_root_first: Vec<ContainerPointer>,
}

/// EnumerateAncestors of a container.
pub async fn enumerate_ancestors(app: &AppState, c: &ContainerSession) -> Result<Ancestors, WopiError> {
    Ok(Ancestors { ancestors_with_root_first: ancestors(app, &c.claims, &c.scope, &c.key).await? })
}

/// EnumerateAncestors of a file (its session's file, where it is now).
pub async fn enumerate_file_ancestors(app: &AppState, s: &super::FileSession) -> Result<Ancestors, WopiError> {
    let (key, _) = super::current_meta(app, s).await?;
    Ok(Ancestors { ancestors_with_root_first: ancestors(app, &s.claims, &s.scope, &key).await? })
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct ChildFile {
    name: String,
    url: String,
    version: String,
    size: u64,
    last_modified_time: String,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct Children {
    child_containers: Vec<ContainerPointer>,
    child_files: Vec<ChildFile>,
}

/// `X-WOPI-FileExtensionFilterList`: `.doc,.docx`; the extensions, lower-cased.
fn extension_filter(list: Option<&str>) -> Result<Option<Vec<String>>, WopiError> {
    let Some(list) = list.map(str::trim).filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    let mut extensions = Vec::new();
    for ext in list.split(',').map(str::trim) {
        if ext.len() < 2 || !ext.starts_with('.') || ext[1..].contains(['.', '*', ' ']) {
            return Err(WopiError::BadRequest(
                "X-WOPI-FileExtensionFilterList is a comma-separated list of extensions with a leading dot, like .docx,.xlsx".into(),
            ));
        }
        extensions.push(ext.to_ascii_lowercase());
    }
    Ok(Some(extensions))
}

/// EnumerateChildren: every file and folder directly inside, each with a token of its own
/// (files filtered by extension when asked; folders never are).
pub async fn enumerate_children(app: &AppState, c: &ContainerSession, filter: Option<&str>) -> Result<Children, WopiError> {
    let filter = extension_filter(filter)?;
    let store = app.store.as_ref();
    let mut listed = store.list(&c.key).await?.ok_or(WopiError::NotFound)?;
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut children = Children { child_containers: Vec::new(), child_files: Vec::new() };
    for (name, entry) in listed {
        // Only names wopigate could have made (a platform may leave others, like dot files).
        if names::check(&name).is_err() {
            continue;
        }
        let key = child(&c.key, &name)?;
        match entry {
            Entry::Folder => children.child_containers.push(pointer(app, &c.claims, &c.scope, &key).await?),
            Entry::File(meta) => {
                let ext = names::split(&name).1.to_ascii_lowercase();
                if filter.as_ref().is_some_and(|f| !f.contains(&ext)) {
                    continue;
                }
                let level = c.scope.rights(&key).capped(token_level(&c.claims)).level;
                let id = ids::file_id(store, &key).await?;
                let (token, _) = mint_for(app, &c.claims, Resource::File, id.clone(), level)?;
                children.child_files.push(ChildFile {
                    url: format!("{}/wopi/files/{id}?access_token={}", wopi_base(app, &c.claims), encode_component(&token)),
                    name,
                    version: meta.version,
                    size: meta.size,
                    last_modified_time: wopi_time(meta.modified),
                });
            }
        }
    }
    Ok(children)
}

/// CreateChildContainer's and GetRootContainer's answer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct PointerAndInfo {
    pub container_pointer: ContainerPointer,
    pub container_info: ContainerInfo,
}

/// The container's guard and where it is now: creating in it, deleting or renaming it runs
/// under this guard, so they behave as if one ran after the other.
async fn hold_container(app: &AppState, c: &ContainerSession) -> Result<(FileGuard, FileKey), WopiError> {
    let (guard, key) = hold(app, &c.claims.fid).await?;
    if !is_folder(app, &key).await? {
        guard.release().await;
        return Err(WopiError::NotFound);
    }
    Ok((guard, key))
}

/// CreateChildContainer: `X-WOPI-SuggestedTarget` (adjusted until legal and free) or
/// `X-WOPI-RelativeTarget` (exactly that name: 400 when illegal, 409 when taken).
pub async fn create_child_container(
    app: &AppState,
    c: &ContainerSession,
    suggested: Option<&str>,
    relative: Option<&str>,
) -> Result<PointerAndInfo, WopiError> {
    c.require(Level::Edit, "creating folders")?;
    let (guard, folder) = hold_container(app, c).await?;
    let created = create_folder_in(app, &folder, suggested, relative).await;
    guard.release().await;
    let key = created?;
    Ok(PointerAndInfo {
        container_pointer: pointer(app, &c.claims, &c.scope, &key).await?,
        container_info: info_of(&c.claims, &c.scope, &key),
    })
}

async fn create_folder_in(app: &AppState, folder: &FileKey, suggested: Option<&str>, relative: Option<&str>) -> Result<FileKey, WopiError> {
    let store = app.store.as_ref();
    match (suggested, relative) {
        (Some(_), Some(_)) => Err(WopiError::NotImplemented("send X-WOPI-SuggestedTarget or X-WOPI-RelativeTarget, not both".into())),
        (None, None) => Err(WopiError::BadRequest("X-WOPI-SuggestedTarget or X-WOPI-RelativeTarget is required".into())),
        (Some(suggested), None) => {
            let wanted = header_name(suggested, "X-WOPI-SuggestedTarget")?;
            let legal = names::legalize(&wanted).unwrap_or_else(|| "New folder".into());
            for candidate in names::candidates(&legal) {
                let key = child(folder, &candidate)?;
                fits(app, &key)?;
                match store.create_folder(&key).await {
                    Ok(()) => return Ok(key),
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(WopiError::TargetExists { valid: None })
        }
        (None, Some(relative)) => {
            let name = header_name(relative, "X-WOPI-RelativeTarget")?;
            names::check(&name).map_err(|e| WopiError::InvalidContainerName(e.to_string()))?;
            let key = child(folder, &name)?;
            fits(app, &key).map_err(|_| WopiError::InvalidContainerName("the path would be too long for the store".into()))?;
            match store.create_folder(&key).await {
                Ok(()) => Ok(key),
                Err(StoreError::Conflict) => Err(WopiError::TargetExists { valid: Some(free_name(app, folder, &name).await?) }),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// CreateChildFile: a new empty file, named as in PutRelativeFile (both targets: 501).
pub async fn create_child_file(app: &AppState, c: &ContainerSession, request: NameRequest<'_>) -> Result<NewFile, WopiError> {
    c.require(Level::Edit, "creating files")?;
    let both = || WopiError::NotImplemented("send X-WOPI-SuggestedTarget or X-WOPI-RelativeTarget, not both".into());
    let (guard, folder) = hold_container(app, c).await?;
    let result = async {
        let target = target_in(app, &c.scope, &folder, &request, "Untitled", both).await?;
        let staged = app.store.begin_upload(0).await?.finish().await?;
        let saved = save_relative(app, &c.claims, &folder, &staged, target).await;
        if saved.is_err() {
            app.store.discard(staged).await;
        }
        saved.map(|saved| (saved, folder))
    }
    .await;
    guard.release().await;
    let ((name, id), folder) = result?;
    new_file(app, &c.claims, &c.scope, &folder, name, id, wopi_time(app.clock.now()))
}

/// DeleteContainer: the owner's alone, and only when empty (409 otherwise: nothing is lost).
pub async fn delete_container(app: &AppState, c: &ContainerSession) -> Result<(), WopiError> {
    if !c.rights.owner || c.rights.level != Level::Edit {
        return Err(WopiError::Unauthorized("only the container's owner may delete it".into()));
    }
    if c.key.path.is_root() {
        return Err(WopiError::Conflict("a user's root container cannot be deleted"));
    }
    let (guard, key) = hold_container(app, c).await?;
    let deleted = match app.store.delete_folder(&key).await {
        Ok(()) => ids::forget(app.store.as_ref(), &c.claims.fid, &key).await.map_err(WopiError::from),
        Err(StoreError::Conflict) => Err(WopiError::Conflict("the container is not empty")),
        Err(e) => Err(e.into()),
    };
    guard.release().await;
    deleted
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct RenamedContainer {
    pub name: String,
}

/// RenameContainer: `requested` (UTF-7) is the new name, exactly (400 illegal, 409 taken).
/// Everything inside moves with it and keeps its id. While it moves, the guards of the container
/// and of everything inside that has an id are held (folders before files, ancestors before
/// descendants: the order every other operation takes guards in), so nothing inside changes
/// halfway; renames of files inside wait their turn (`hold_renames`); every new path is
/// checked before anything moves, and afterwards each id inside is found by its old path and
/// pointed at the new one.
pub async fn rename_container(app: &AppState, c: &ContainerSession, requested: Option<&str>) -> Result<RenamedContainer, WopiError> {
    let requested = requested.ok_or_else(|| WopiError::BadRequest("X-WOPI-RequestedName is required".into()))?;
    let name = header_name(requested, "X-WOPI-RequestedName")?.trim().to_string();
    names::check(&name).map_err(|e| WopiError::InvalidContainerName(e.to_string()))?;
    if c.key.path.is_root() {
        return Err(WopiError::Unauthorized("a user's root container cannot be renamed".into()));
    }
    let renames = super::hold_renames(app, &c.key.owner).await?;
    let result = match hold_container(app, c).await {
        Ok((guard, key)) => {
            let mut held = Held { guards: vec![guard], ids: std::collections::HashSet::from([c.claims.fid.clone()]) };
            let result = rename_held(app, c, &key, &name, &mut held).await;
            for guard in held.guards {
                guard.release().await;
            }
            result
        }
        Err(e) => Err(e),
    };
    renames.release().await;
    result
}

/// The guards a rename holds, and the ids they are for.
struct Held {
    guards: Vec<FileGuard>,
    ids: std::collections::HashSet<String>,
}

/// Everything below `folder`: folders breadth first (ancestors before descendants), then files.
async fn walk(app: &AppState, folder: &FileKey) -> Result<Vec<FileKey>, WopiError> {
    let (mut folders, mut files) = (Vec::new(), Vec::new());
    let mut queue = std::collections::VecDeque::from([folder.clone()]);
    while let Some(at) = queue.pop_front() {
        for (entry_name, entry) in app.store.list(&at).await?.unwrap_or_default() {
            let Ok(inner) = child(&at, &entry_name) else { continue };
            if folders.len() + files.len() >= MAX_RENAME_ENTRIES {
                return Err(WopiError::NotImplemented(format!(
                    "renaming a folder with more than {MAX_RENAME_ENTRIES} entries inside; rename it on the platform"
                )));
            }
            match entry {
                Entry::Folder => {
                    queue.push_back(inner.clone());
                    folders.push(inner);
                }
                Entry::File(_) => files.push(inner),
            }
        }
    }
    folders.extend(files);
    Ok(folders)
}

/// Where `inner` (below `from`) goes when `from` becomes `to`.
fn relocated(inner: &FileKey, from: &FileKey, to: &FileKey) -> Result<FileKey, WopiError> {
    let mut segments = to.path.segments().to_vec();
    segments.extend_from_slice(&inner.path.segments()[from.path.segments().len()..]);
    let path = crate::uri::RelPath::from_segments(segments)
        .map_err(|_| WopiError::InvalidContainerName("with that name a path inside would be too long".into()))?;
    Ok(FileKey { owner: inner.owner.clone(), path })
}

async fn rename_held(app: &AppState, c: &ContainerSession, key: &FileKey, name: &str, held: &mut Held) -> Result<RenamedContainer, WopiError> {
    let store = app.store.as_ref();
    let parent = parent_of(key);
    if c.scope.rights(&parent).capped(token_level(&c.claims)).level != Level::Edit || c.rights.level != Level::Edit {
        return Err(WopiError::Unauthorized("renaming needs edit rights in the parent folder".into()));
    }
    let target = child(&parent, name)?;
    if &target == key {
        return Ok(RenamedContainer { name: name.to_string() });
    }
    // Guards of what is inside, until a listing under them shows nothing new: an operation
    // inside that finished before its guard was taken may have moved or made something. Each
    // round takes them afresh, in order (folders first, ancestors before descendants), so no
    // two operations wait for each other.
    let mut inside = walk(app, key).await?;
    let mut settled = false;
    for _ in 0..8 {
        let mut wanted = Vec::new();
        for inner in &inside {
            if let Some(id) = ids::existing_id(store, inner).await? {
                wanted.push(id);
            }
        }
        if wanted.iter().all(|id| held.ids.contains(id)) {
            settled = true;
            break;
        }
        for guard in held.guards.drain(1..).collect::<Vec<_>>() {
            guard.release().await;
        }
        held.ids.retain(|id| id == &c.claims.fid);
        for id in wanted {
            if held.ids.insert(id.clone()) {
                held.guards.push(store.lock_file(&id).await?);
            }
        }
        inside = walk(app, key).await?;
    }
    if !settled {
        return Err(WopiError::Conflict("what is in the folder kept changing while it was being renamed; try again"));
    }
    // Every new path must fit before anything moves.
    for inner in std::iter::once(key).chain(&inside) {
        let new = relocated(inner, key, &target)?;
        fits(app, &new).map_err(|_| WopiError::InvalidContainerName("with that name a path inside would be too long".into()))?;
    }
    match store.rename_folder(key, &target).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(WopiError::Conflict("a file or folder with that name exists")),
        Err(e) => return Err(e.into()),
    }
    // Ids follow, each found by its old path (whatever got one, even while we listed).
    ids::moved(store, &c.claims.fid, key, &target).await?;
    for new in walk(app, &target).await? {
        let old = relocated(&new, &target, key)?;
        if let Some(id) = ids::existing_id(store, &old).await? {
            ids::moved(store, &id, &old, &new).await?;
        }
    }
    Ok(RenamedContainer { name: name.to_string() })
}

/// The container a token's user starts from: the shared folder for a session opened through a
/// folder share, else the signed-in user's root; `None` for a single shared file's visitor.
pub(super) fn root_of(claims: &AccessClaims, scope: &Scope) -> Option<FileKey> {
    if claims.shr.is_some() {
        let root = scope.share()?.root.clone()?;
        return (scope.rights(&root).level != Level::None).then_some(root);
    }
    (!claims.anon).then(|| FileKey { owner: claims.sub.clone(), path: crate::uri::RelPath::root() })
}

/// GetRootContainer (ecosystem).
pub async fn root_container(app: &AppState, claims: &AccessClaims) -> Result<PointerAndInfo, WopiError> {
    let scope = app.policy.scope(super::principal(claims), Freshness::Fresh, app.clock.now()).await.map_err(policy_error)?;
    let root = root_of(claims, &scope).ok_or(WopiError::NotFound)?;
    if !is_folder(app, &root).await? {
        return Err(WopiError::NotFound);
    }
    Ok(PointerAndInfo {
        container_pointer: pointer(app, claims, &scope, &root).await?,
        container_info: info_of(claims, &scope, &root),
    })
}
