//! wopigate's access tokens: self-contained signed JWTs, so any replica can verify any WOPI call
//! without shared session state.
//!
//! Tokens are signed with the current key of a key ring and verified with whichever key their
//! `kid` names; every key's algorithm comes from configuration, so `alg: none` or an HS/RS swap
//! in the token header is rejected.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use jsonwebtoken::{decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::UserExtra;
use crate::config::{derived_kid, ConfigError, KeyMaterial, Secret, TokenAlgorithm, TokenConfig, TokenKeyConfig};

/// What a session may do with its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    View,
    Edit,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::View => "view",
            Action::Edit => "edit",
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The claims of an access token. Short names keep the token (and so the URL) short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Session id (uuid v4).
    pub sid: Uuid,
    /// User id; for anonymous visitors a per-session pseudonym.
    pub sub: String,
    /// Display name.
    pub name: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub anon: bool,
    /// File id: the `{id}` of `/wopi/files/{id}`; a token is valid for this file only.
    pub fid: String,
    /// Version the session was opened on; empty = current.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ver: String,
    pub act: Action,
    /// Viewer (WOPI client) id.
    pub vid: Uuid,
    /// Avatar and mail of the user, when the caller's JWT had them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<UserExtra>,
    /// The share the session came through: every call re-checks it (it may have changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shr: Option<String>,
    /// Id of the folder where files created from this session go (`parent_uri`), when given;
    /// else the file's own folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub aud: String,
}

impl AccessClaims {
    /// Expiry in milliseconds since the epoch (WOPI's `access_token_ttl`).
    pub fn expires_ms(&self) -> i64 {
        self.exp * 1000
    }
}

/// Everything of a token except its timing, which `TokenKeys::mint` fills in.
#[derive(Debug, Clone)]
pub struct Grant {
    pub sid: Uuid,
    pub sub: String,
    pub name: String,
    pub anon: bool,
    pub fid: String,
    pub ver: String,
    pub act: Action,
    pub vid: Uuid,
    pub ext: Option<UserExtra>,
    pub shr: Option<String>,
    pub pid: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("access token has expired")]
    Expired,
    #[error("access token is invalid: {0}")]
    Invalid(String),
    #[error("could not sign the access token")]
    Signing,
}

struct VerifyingKey {
    key: DecodingKey,
    validation: Validation,
}

/// Verified tokens kept before their claims are checked again from scratch: clients present
/// the same token on every call of a session.
const VERIFIED_CACHE: usize = 4096;

pub struct TokenKeys {
    /// Tokens whose signature already verified, by their exact text; expiry is re-checked on
    /// every hit. Bounded: cleared when full.
    verified: std::sync::Mutex<HashMap<String, AccessClaims>>,
    leeway: i64,
    algorithm: Algorithm,
    current_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, VerifyingKey>,
    audience: String,
    ttl_secs: i64,
}

impl TokenKeys {
    /// Builds the key ring. `current` must be set (see `dev_key` for the unset case).
    pub fn new(config: &TokenConfig, current: &TokenKeyConfig, leeway_secs: u64) -> Result<Self, ConfigError> {
        let algorithm = match config.algorithm {
            TokenAlgorithm::Hs256 => Algorithm::HS256,
            TokenAlgorithm::EdDsa => Algorithm::EdDSA,
        };
        let signing = match &current.material {
            KeyMaterial::Secret(secret) => EncodingKey::from_secret(secret.expose().as_bytes()),
            KeyMaterial::Ed25519Pair { private, .. } => EncodingKey::from_ed_pem(private.expose().as_bytes())
                .map_err(|_| ConfigError::new("WOPIGATE_TOKEN_PRIVATE_KEY", "is not an Ed25519 private key in PEM"))?,
            KeyMaterial::Ed25519Public(_) => {
                return Err(ConfigError::new("WOPIGATE_TOKEN_PRIVATE_KEY", "the current key must be able to sign"))
            }
        };
        let mut verifying = HashMap::new();
        for key in std::iter::once(current).chain(config.previous.iter()) {
            let decoding = match &key.material {
                KeyMaterial::Secret(secret) => DecodingKey::from_secret(secret.expose().as_bytes()),
                KeyMaterial::Ed25519Pair { public, .. } | KeyMaterial::Ed25519Public(public) => {
                    DecodingKey::from_ed_pem(public.as_bytes()).map_err(|_| {
                        ConfigError::new("WOPIGATE_TOKEN_PUBLIC_KEY", format!("key '{}' is not an Ed25519 public key in PEM", key.kid))
                    })?
                }
            };
            let mut validation = Validation::new(algorithm);
            validation.leeway = leeway_secs;
            validation.validate_nbf = true;
            validation.set_audience(&[&config.audience]);
            validation.set_required_spec_claims(&["exp", "nbf", "aud", "sub"]);
            verifying.insert(key.kid.clone(), VerifyingKey { key: decoding, validation });
        }
        let keys = TokenKeys {
            verified: std::sync::Mutex::new(HashMap::new()),
            leeway: leeway_secs as i64,
            algorithm,
            current_kid: current.kid.clone(),
            signing,
            verifying,
            audience: config.audience.clone(),
            ttl_secs: config.ttl_secs as i64,
        };
        keys.self_check()?;
        Ok(keys)
    }

    /// A private and public key that do not belong together would mint tokens nobody accepts.
    fn self_check(&self) -> Result<(), ConfigError> {
        let probe = Grant {
            sid: Uuid::nil(),
            sub: "probe".into(),
            name: String::new(),
            anon: false,
            fid: String::new(),
            ver: String::new(),
            act: Action::View,
            vid: Uuid::nil(),
            ext: None,
            shr: None,
            pid: None,
        };
        let (token, _) = self
            .mint(probe, chrono::Utc::now().timestamp(), None)
            .map_err(|_| ConfigError::new("WOPIGATE_TOKEN_PRIVATE_KEY", "cannot sign with the configured key"))?;
        self.verify_signature(&token).map(|_| ()).map_err(|_| {
            ConfigError::new("WOPIGATE_TOKEN_PUBLIC_KEY", "does not verify what the current private key signs")
        })
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// Signs a token valid from `now` for the configured lifetime, or until `cap` (a unix time)
    /// when that is earlier: tokens minted from another token never outlive it.
    pub fn mint(&self, grant: Grant, now: i64, cap: Option<i64>) -> Result<(String, AccessClaims), TokenError> {
        let mut exp = now + self.ttl_secs;
        if let Some(cap) = cap {
            exp = exp.min(cap);
        }
        let claims = AccessClaims {
            sid: grant.sid,
            sub: grant.sub,
            name: grant.name,
            anon: grant.anon,
            fid: grant.fid,
            ver: grant.ver,
            act: grant.act,
            vid: grant.vid,
            ext: grant.ext,
            shr: grant.shr,
            pid: grant.pid,
            iat: now,
            nbf: now,
            exp,
            aud: self.audience.clone(),
        };
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.current_kid.clone());
        let token = encode(&header, &claims, &self.signing).map_err(|_| TokenError::Signing)?;
        Ok((token, claims))
    }

    /// Verifies a token: from the cache of verified tokens when it is there and still within
    /// its validity, else in full (signature, expiry, audience) and then cached.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let now = chrono::Utc::now().timestamp();
        let cached = self.verified.lock().ok().and_then(|cache| cache.get(token).cloned());
        if let Some(claims) = cached {
            if claims.exp + self.leeway > now && claims.nbf - self.leeway <= now {
                return Ok(claims);
            }
        }
        let claims = self.verify_signature(token)?;
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= VERIFIED_CACHE {
                cache.clear();
            }
            cache.insert(token.to_string(), claims.clone());
        }
        Ok(claims)
    }

    /// The full check, without the cache.
    pub fn verify_signature(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let only_key = (self.verifying.len() == 1).then(|| self.verifying.values().next()).flatten();
        let key = match only_key {
            // One key: its signature decides; reading the header first would only repeat work.
            Some(key) => key,
            None => {
                let header = decode_header(token).map_err(|e| TokenError::Invalid(crate::auth::describe(&e)))?;
                let kid = header.kid.ok_or_else(|| TokenError::Invalid("no key id (kid)".into()))?;
                self.verifying
                    .get(&kid)
                    .ok_or_else(|| TokenError::Invalid("signed with a key that is not in the key ring".into()))?
            }
        };
        let data = decode::<AccessClaims>(token, &key.key, &key.validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid(crate::auth::describe(&e)),
        })?;
        // Every token we mint names its key; one that does not is not ours.
        if only_key.is_some() && data.header.kid.as_deref() != Some(self.current_kid.as_str()) {
            return Err(TokenError::Invalid("no or unknown key id (kid)".into()));
        }
        Ok(data.claims)
    }
}

/// The development key used when `WOPIGATE_TOKEN_SECRET` is unset: generated once and kept
/// under `<data dir>/.wopigate/` so restarts (and other processes on the same directory) agree.
pub fn dev_key(data_dir: &Path) -> std::io::Result<TokenKeyConfig> {
    let dir = data_dir.join(".wopigate");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("dev-token-secret");
    let secret = match std::fs::read_to_string(&path) {
        Ok(existing) if existing.trim().len() >= 32 => existing.trim().to_string(),
        _ => {
            let mut bytes = [0u8; 48];
            rand::Rng::fill(&mut rand::thread_rng(), &mut bytes[..]);
            let fresh = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            let tmp = dir.join(format!("dev-token-secret.{}", Uuid::new_v4().simple()));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(fresh.as_bytes())?;
            file.sync_all()?;
            // hard_link fails if another process won the race; then its key is the key.
            match std::fs::hard_link(&tmp, &path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            }
            let _ = std::fs::remove_file(&tmp);
            std::fs::read_to_string(&path)?.trim().to_string()
        }
    };
    Ok(TokenKeyConfig { kid: derived_kid(&secret), material: KeyMaterial::Secret(Secret::new(secret)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secret: &str, previous: Vec<TokenKeyConfig>) -> (TokenConfig, TokenKeyConfig) {
        let current = TokenKeyConfig { kid: derived_kid(secret), material: KeyMaterial::Secret(Secret::new(secret)) };
        (
            TokenConfig {
                algorithm: TokenAlgorithm::Hs256,
                current: Some(current.clone()),
                previous,
                ttl_secs: 3600,
                audience: "wopigate".into(),
            },
            current,
        )
    }

    fn grant() -> Grant {
        Grant {
            sid: Uuid::new_v4(),
            sub: "u1".into(),
            name: "Ada".into(),
            anon: false,
            fid: "abc".into(),
            ver: String::new(),
            act: Action::Edit,
            vid: Uuid::new_v4(),
            ext: None,
            shr: None,
            pid: None,
        }
    }

    #[test]
    fn mint_verify_and_cap() {
        let (cfg, current) = config("0123456789abcdef0123456789abcdef", vec![]);
        let keys = TokenKeys::new(&cfg, &current, 0).unwrap();
        let now = chrono::Utc::now().timestamp();
        let (token, claims) = keys.mint(grant(), now, None).unwrap();
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'));
        assert_eq!(keys.verify(&token).unwrap(), claims);
        let (_, capped) = keys.mint(grant(), now, Some(now + 5)).unwrap();
        assert_eq!(capped.exp, now + 5);
    }

    #[test]
    fn rotation_keeps_old_tokens() {
        let old_secret = "old-old-old-old-old-old-old-old-old-old";
        let (old_cfg, old_current) = config(old_secret, vec![]);
        let old_keys = TokenKeys::new(&old_cfg, &old_current, 0).unwrap();
        let (token, _) = old_keys.mint(grant(), chrono::Utc::now().timestamp(), None).unwrap();

        let (new_cfg, new_current) = config("new-new-new-new-new-new-new-new-new-new", vec![old_current]);
        let new_keys = TokenKeys::new(&new_cfg, &new_current, 0).unwrap();
        assert!(new_keys.verify(&token).is_ok());

        let (bare_cfg, bare_current) = config("new-new-new-new-new-new-new-new-new-new", vec![]);
        let bare = TokenKeys::new(&bare_cfg, &bare_current, 0).unwrap();
        assert!(matches!(bare.verify(&token), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn dev_key_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = dev_key(dir.path()).unwrap();
        let b = dev_key(dir.path()).unwrap();
        assert_eq!(a.kid, b.kid);
    }
}
