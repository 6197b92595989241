//! Operator commands of the binary: `put` and `versions` touch the store; `caller-jwt` signs a
//! caller JWT as the platform would; `open` creates a viewer session as the API does; `share`
//! creates a share link as GetShareUrl does.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::startup::{open_backends, StartError};
use crate::config::Config;
use crate::store::{ids, Entry, FileKey, FileMeta, Precondition, StoreError};
use crate::versions;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the input failed: {0}")]
    Input(std::io::Error),
    #[error("no such file")]
    NotFound,
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
}

/// A caller JWT for `user`, signed with the configured `WOPIGATE_CALLER_JWT_SECRET` (its bytes
/// as they are, HS256), with the configured issuer and audience, valid for `ttl`.
pub fn caller_jwt(config: &Config, user: &str, name: Option<&str>, ttl: std::time::Duration) -> Result<String, AdminError> {
    use crate::config::CallerKey;
    let secret = match &config.caller_jwt.key {
        Some(CallerKey::Hs256(secret)) => secret,
        Some(CallerKey::PublicPem(_)) => {
            return Err(AdminError::Usage(
                "WOPIGATE_CALLER_JWT_PUBLIC_KEY is configured: wopigate can verify caller JWTs but not sign them \
                 (sign with the platform's private key instead)"
                    .into(),
            ))
        }
        None => {
            return Err(AdminError::Usage(
                "no caller key is configured: set WOPIGATE_CALLER_JWT_SECRET (at least 32 bytes, shared with the platform)".into(),
            ))
        }
    };
    if !crate::uri::is_valid_id(user) || user.len() > crate::token::MAX_USER_ID {
        return Err(AdminError::Usage(format!("user id must be 1-{} characters of A-Z a-z 0-9 - _", crate::token::MAX_USER_ID)));
    }
    let now = chrono::Utc::now().timestamp();
    let mut claims = serde_json::json!({"sub": user, "iat": now, "exp": now + ttl.as_secs() as i64});
    if let Some(name) = name {
        claims["name"] = name.into();
    }
    if let Some(iss) = &config.caller_jwt.issuer {
        claims["iss"] = iss.clone().into();
    }
    if let Some(aud) = &config.caller_jwt.audience {
        claims["aud"] = aud.clone().into();
    }
    let key = jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).map_err(|e| AdminError::Usage(format!("cannot sign: {e}")))
}

/// Opens `uri` as `PUT /api/v4/file/viewerSession` would, for `user` (a caller JWT signed here)
/// or anonymously, with `viewer` (default: the first configured).
pub async fn open(
    config: Config,
    uri: &str,
    action: crate::token::Action,
    user: Option<&str>,
    viewer: Option<uuid::Uuid>,
) -> Result<crate::session::ViewerSession, AdminError> {
    let viewer = match viewer.or_else(|| config.viewers.first().map(|v| v.id)) {
        Some(id) => id,
        None => return Err(AdminError::Usage("no viewer is configured (WOPIGATE_VIEWERS)".into())),
    };
    let authorization = match user {
        Some(user) => Some(format!("Bearer {}", caller_jwt(&config, user, None, std::time::Duration::from_secs(300))?)),
        None => None,
    };
    let state = crate::startup::app_state(config, std::sync::Arc::new(crate::clock::SystemClock)).await?;
    let request = crate::session::SessionRequest {
        uri: uri.to_string(),
        version: None,
        viewer_id: viewer,
        preferred_action: action,
        parent_uri: None,
    };
    Ok(crate::session::create(&state, authorization.as_deref(), None, None, None, request).await?)
}

/// The versions of the file at `key`: past ones oldest first, then the current one.
pub async fn versions(config: &Config, key: &FileKey) -> Result<Vec<versions::Listed>, AdminError> {
    let (store, _) = open_backends(config).await?;
    let current = match store.stat(key).await? {
        Some(Entry::File(meta)) => Some(meta),
        _ => None,
    };
    // A file never opened through wopigate has no id, and so no past versions.
    let Some(id) = ids::existing_id(store.as_ref(), key).await? else {
        return match current {
            Some(meta) => Ok(vec![versions::Listed { meta, by: None, current: true }]),
            None => Err(AdminError::NotFound),
        };
    };
    Ok(versions::list(store.as_ref(), &id, current).await?)
}

/// Streams `input` into the store as `key`, replacing what is there (kept as a past version).
pub async fn put(config: &Config, key: &FileKey, mut input: impl AsyncRead + Unpin) -> Result<FileMeta, AdminError> {
    let (store, _) = open_backends(config).await?;
    let mut upload = store.begin_upload(u64::MAX).await?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = match input.read(&mut buffer).await {
            Ok(n) => n,
            Err(e) => {
                upload.abort().await;
                return Err(AdminError::Input(e));
            }
        };
        if n == 0 {
            break;
        }
        if let Err(e) = upload.write(bytes::Bytes::copy_from_slice(&buffer[..n])).await {
            upload.abort().await;
            return Err(e.into());
        }
    }
    let staged = upload.finish().await?;
    // Under the file's guard, as every WOPI write: a concurrent save or rename of the same file
    // runs wholly before or after this one.
    let result = match ids::lock_path(store.as_ref(), key).await {
        Ok((guard, _)) => {
            let save = versions::Save { user: "operator", name: "wopigate put", flags: Default::default(), at: chrono::Utc::now(), operator: true };
            let result = versions::commit(store.as_ref(), &guard, &staged, key, Precondition::Any, &save, versions::Retention::of(config)).await;
            guard.release().await;
            result
        }
        Err(e) => Err(e),
    };
    if result.is_err() {
        store.discard(staged).await;
    }
    Ok(result?)
}

/// The share link of the file or folder at `key` (`editable`: a `ReadWrite` link), made by the
/// same function as GetShareUrl's, so asking again answers the same link. Returns the link and
/// the share id.
pub async fn share(config: &Config, key: &FileKey, editable: bool) -> Result<(String, String), AdminError> {
    let (store, _) = open_backends(config).await?;
    if store.stat(key).await?.is_none() {
        return Err(AdminError::NotFound);
    }
    let id = ids::file_id(store.as_ref(), key).await?;
    let kind = if editable { crate::shares::ShareKind::ReadWrite } else { crate::shares::ShareKind::ReadOnly };
    let share_id = crate::shares::create(store.as_ref(), key, &id, kind, chrono::Utc::now()).await.map_err(|e| match e {
        crate::shares::ShareError::NotFound => AdminError::NotFound,
        crate::shares::ShareError::Store(e) => AdminError::Store(e),
    })?;
    Ok((crate::shares::link(&config.share_url_template, &share_id), share_id))
}
