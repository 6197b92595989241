//! wopigate's access tokens: self-contained and signed, so any replica can verify any WOPI call
//! without shared session state.
//!
//! A token is `base64url(claims) "." base64url(signature)`: the claims in postcard's compact
//! binary form, signed (by `jsonwebtoken`'s HS256 or EdDSA) together with the configured audience.
//! Office for the web takes tokens of at most 1,500 characters; these stay under 512 for any file
//! and user (see `MAX_TOKEN_CHARS`), where a JSON JWT of the same claims took up to 700. The
//! algorithm is fixed by configuration (a token names its key by a 4-byte tag, never an
//! algorithm), so there is no `alg: none` or HS/RS swap to reject.
//!
//! JWTs minted by releases before this format (three dot-separated parts) are still accepted
//! until they expire: a rolling upgrade does not end open sessions.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, EncodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::{derived_kid, ConfigError, KeyMaterial, Secret, TokenAlgorithm, TokenConfig, TokenKeyConfig};

/// What a session may do with its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    View,
    Edit,
}

/// What a token opens: `fid` names a file, a container (folder), or, for the ecosystem, the
/// user's root container. Carried in the token's format byte (so it is signed and costs nothing):
/// a token of one kind never opens another (`/wopi/files/{id}` takes file tokens only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    #[default]
    File,
    Container,
    Ecosystem,
}

impl Resource {
    fn format(self) -> u8 {
        match self {
            Resource::File => 1,
            Resource::Container => 2,
            Resource::Ecosystem => 3,
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Resource::File => "file",
            Resource::Container => "container",
            Resource::Ecosystem => "ecosystem",
        }
    }

    fn of_format(byte: u8) -> Option<Resource> {
        match byte {
            1 => Some(Resource::File),
            2 => Some(Resource::Container),
            3 => Some(Resource::Ecosystem),
            _ => None,
        }
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::View => "view",
            Action::Edit => "edit",
        }
    }
}

/// Every token is at most this long, for any file, user and display name (with the longest
/// ids below and an EdDSA signature; HS256 tokens are 43 characters shorter).
pub const MAX_TOKEN_CHARS: usize = 512;
/// Longest user id a token carries (caller JWTs with a longer `sub` are refused).
pub const MAX_USER_ID: usize = 64;
/// Longest share id (share URIs with a longer one are refused).
pub const MAX_SHARE_ID: usize = 32;
/// Longest file or folder id (wopigate's are all 22 characters: `store::ids`).
const MAX_FILE_ID: usize = 22;
/// Longest version id (the longest a store makes is an S3 ETag with a size: 58).
const MAX_VERSION: usize = 64;
/// The display name inside a token is cut to this many bytes (whole characters); the full name
/// is kept in the user's profile (`users::Profile`) and the token says so (`profile`).
pub const NAME_BYTES: usize = 48;
/// Longer input is not a token of ours: refused before any decoding.
const MAX_INPUT_CHARS: usize = 8192;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Session id (uuid v4).
    pub sid: Uuid,
    /// User id; for anonymous visitors a per-session pseudonym.
    pub sub: String,
    /// Display name, at most `NAME_BYTES` bytes.
    pub name: String,
    pub anon: bool,
    /// The user's profile (full name, avatar, mail) is stored: CheckFileInfo reads it.
    pub profile: bool,
    /// What `fid` names (a file unless said otherwise).
    #[serde(default)]
    pub res: Resource,
    /// File or container id: the `{id}` of `/wopi/files/{id}` or `/wopi/containers/{id}`; a
    /// token is valid for this one only.
    pub fid: String,
    /// Version the session was opened on; empty = current.
    pub ver: String,
    pub act: Action,
    /// Viewer (WOPI client) id.
    pub vid: Uuid,
    /// The share the session came through: every call re-checks it (it may have changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shr: Option<String>,
    /// Id of the folder where files created from this session go (`parent_uri`), when given;
    /// else the file's own folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    /// Issued at (unix seconds); the token is not valid before.
    pub iat: i64,
    pub exp: i64,
}

impl AccessClaims {
    /// Expiry in milliseconds since the epoch (WOPI's `access_token_ttl`).
    pub fn expires_ms(&self) -> i64 {
        self.exp * 1000
    }
}

/// The claims as they travel (postcard: fields in this order, lengths as varints).
#[derive(Serialize, Deserialize)]
struct Wire {
    key: [u8; 4],
    sid: Uuid,
    vid: Uuid,
    sub: String,
    name: String,
    anon: bool,
    profile: bool,
    fid: String,
    ver: String,
    act: Action,
    shr: Option<String>,
    pid: Option<String>,
    iat: i64,
    ttl: u32,
}

impl Wire {
    fn new(key: [u8; 4], c: &AccessClaims) -> Result<Wire, TokenError> {
        Ok(Wire {
            key,
            sid: c.sid,
            vid: c.vid,
            sub: c.sub.clone(),
            name: c.name.clone(),
            anon: c.anon,
            profile: c.profile,
            fid: c.fid.clone(),
            ver: c.ver.clone(),
            act: c.act,
            shr: c.shr.clone(),
            pid: c.pid.clone(),
            iat: c.iat,
            ttl: u32::try_from(c.exp - c.iat).map_err(|_| TokenError::Signing)?,
        })
    }

    /// The claims of a token's first part and what they open (`None`: not one of ours).
    fn decode(payload: &str) -> Option<(Resource, Wire)> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
        let (format, body) = bytes.split_first()?;
        Some((Resource::of_format(*format)?, postcard::from_bytes(body).ok()?))
    }

    fn claims(self, res: Resource) -> AccessClaims {
        AccessClaims {
            res,
            sid: self.sid,
            sub: self.sub,
            name: self.name,
            anon: self.anon,
            profile: self.profile,
            fid: self.fid,
            ver: self.ver,
            act: self.act,
            vid: self.vid,
            shr: self.shr,
            pid: self.pid,
            iat: self.iat,
            exp: self.iat + i64::from(self.ttl),
        }
    }
}

/// Everything of a token except its timing, which `TokenKeys::mint` fills in.
#[derive(Debug, Clone)]
pub struct Grant {
    pub sid: Uuid,
    pub sub: String,
    /// Any length: `mint` cuts it to `NAME_BYTES`.
    pub name: String,
    pub anon: bool,
    pub profile: bool,
    pub res: Resource,
    pub fid: String,
    pub ver: String,
    pub act: Action,
    pub vid: Uuid,
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
    #[error("cannot put a {0} that long into an access token")]
    TooLong(&'static str),
}

/// The first `max` bytes of `s`, cut at a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Names a key inside tokens: 4 bytes of the SHA-256 of its kid.
fn key_tag(kid: &str) -> [u8; 4] {
    let digest = Sha256::digest(kid.as_bytes());
    [digest[0], digest[1], digest[2], digest[3]]
}

struct VerifyingKey {
    kid: String,
    key: DecodingKey,
    /// HS256: the HMAC keyed once (see `Mac`).
    mac: Option<Mac>,
    /// For tokens of the earlier (JWT) format.
    legacy: Validation,
}

/// The claims of tokens minted before the compact format; read only to accept them until they
/// expire.
#[derive(Deserialize)]
struct LegacyClaims {
    sid: Uuid,
    sub: String,
    name: String,
    #[serde(default)]
    anon: bool,
    fid: String,
    #[serde(default)]
    ver: String,
    act: Action,
    vid: Uuid,
    #[serde(default)]
    shr: Option<String>,
    #[serde(default)]
    pid: Option<String>,
    nbf: i64,
    exp: i64,
}

/// What access tokens sign before their audience (other purposes have labels of their own).
const TOKEN_LABEL: &[u8] = b"wopigate/1\n";

/// An HS256 key as an HMAC-SHA256 keyed once and cloned per use: jsonwebtoken keys the HMAC
/// again on every call, which cost as much as the signature itself on tokens this small. The
/// signature's encoding (base64url, no padding) is jsonwebtoken's, so tokens are the same.
#[derive(Clone)]
struct Mac(hmac::Hmac<Sha256>);

impl Mac {
    /// Only for HS256 (configuration never pairs a secret with another algorithm; this does not
    /// rely on it).
    fn of(algorithm: Algorithm, material: &KeyMaterial) -> Option<Mac> {
        match material {
            KeyMaterial::Secret(secret) if algorithm == Algorithm::HS256 => {
                <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(secret.expose().as_bytes()).ok().map(Mac)
            }
            _ => None,
        }
    }

    fn keyed(&self, message: [&[u8]; 4]) -> hmac::Hmac<Sha256> {
        let mut mac = self.0.clone();
        for part in message {
            hmac::Mac::update(&mut mac, part);
        }
        mac
    }

    fn sign(&self, message: [&[u8]; 4]) -> String {
        let tag = hmac::Mac::finalize(self.keyed(message)).into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
    }

    /// `verify_slice` compares in constant time.
    fn verifies(&self, signature: &str, message: [&[u8]; 4]) -> bool {
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature) {
            Ok(tag) => hmac::Mac::verify_slice(self.keyed(message), &tag).is_ok(),
            Err(_) => false,
        }
    }
}

/// What a verified token said, by the token's exact text, so it is decoded and its signature
/// checked once: clients present the same token on every call of a session (access tokens here,
/// the platform's caller JWTs in `auth`). Whoever reads an entry still checks its expiry.
/// Bounded: cleared when full.
pub(crate) struct VerifiedCache<V> {
    entries: std::sync::Mutex<HashMap<String, V>>,
}

impl<V: Clone> VerifiedCache<V> {
    /// Entries kept before the cache starts again from empty.
    const CAPACITY: usize = 4096;

    pub(crate) fn new() -> Self {
        VerifiedCache { entries: std::sync::Mutex::new(HashMap::new()) }
    }

    pub(crate) fn get(&self, token: &str) -> Option<V> {
        self.entries.lock().ok().and_then(|entries| entries.get(token).cloned())
    }

    pub(crate) fn insert(&self, token: &str, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= Self::CAPACITY {
                entries.clear();
            }
            entries.insert(token.to_string(), value);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or_default()
    }
}

pub struct TokenKeys {
    /// Tokens whose signature already verified; expiry is re-checked on every hit.
    verified: VerifiedCache<AccessClaims>,
    leeway: i64,
    algorithm: Algorithm,
    current: [u8; 4],
    current_kid: String,
    signing: EncodingKey,
    /// HS256: the current key's HMAC, keyed once.
    signing_mac: Option<Mac>,
    verifying: HashMap<[u8; 4], VerifyingKey>,
    /// Bound into every signature (not carried): a token minted for another audience with the
    /// same key does not verify here.
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
            let mut legacy = Validation::new(algorithm);
            legacy.leeway = leeway_secs;
            legacy.validate_nbf = true;
            legacy.set_audience(&[&config.audience]);
            legacy.set_required_spec_claims(&["exp", "nbf", "aud", "sub"]);
            let entry = VerifyingKey { kid: key.kid.clone(), key: decoding, mac: Mac::of(algorithm, &key.material), legacy };
            if let Some(other) = verifying.insert(key_tag(&key.kid), entry) {
                if other.kid != key.kid {
                    return Err(ConfigError::new(
                        "WOPIGATE_TOKEN_OLD_KEYS",
                        format!("key ids '{}' and '{}' share a token tag: rename one", other.kid, key.kid),
                    ));
                }
            }
        }
        let keys = TokenKeys {
            verified: VerifiedCache::new(),
            leeway: leeway_secs as i64,
            algorithm,
            current: key_tag(&current.kid),
            current_kid: current.kid.clone(),
            signing,
            signing_mac: Mac::of(algorithm, &current.material),
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
            res: Resource::File,
            sid: Uuid::nil(),
            sub: "probe".into(),
            name: String::new(),
            anon: false,
            profile: false,
            fid: String::new(),
            ver: String::new(),
            act: Action::View,
            vid: Uuid::nil(),
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

    /// The id of the key new tokens are signed with.
    pub fn current_kid(&self) -> &str {
        &self.current_kid
    }

    /// What is signed for `label` (`TOKEN_LABEL` or a `Purpose`'s): the label, the audience,
    /// then the payload.
    fn message<'a>(&'a self, label: &'static [u8], payload: &'a str) -> [&'a [u8]; 4] {
        [label, self.audience.as_bytes(), b"\n", payload.as_bytes()]
    }

    /// The base64url signature of `message` with the current key.
    fn sign(&self, message: [&[u8]; 4]) -> Result<String, TokenError> {
        match &self.signing_mac {
            Some(mac) => Ok(mac.sign(message)),
            None => jsonwebtoken::crypto::sign(&message.concat(), &self.signing, self.algorithm).map_err(|_| TokenError::Signing),
        }
    }

    /// Whether `signature` is `key`'s of `message` (compared in constant time).
    fn verifies(&self, key: &VerifyingKey, signature: &str, message: [&[u8]; 4]) -> Result<bool, TokenError> {
        match &key.mac {
            Some(mac) => Ok(mac.verifies(signature, message)),
            None => jsonwebtoken::crypto::verify(signature, &message.concat(), &key.key, self.algorithm)
                .map_err(|_| TokenError::Invalid("not a well-formed access token".into())),
        }
    }

    /// Signs a token valid from `now` for the configured lifetime, or until `cap` (a unix time)
    /// when that is earlier: tokens minted from another token never outlive it.
    pub fn mint(&self, grant: Grant, now: i64, cap: Option<i64>) -> Result<(String, AccessClaims), TokenError> {
        let mut exp = now + self.ttl_secs;
        if let Some(cap) = cap {
            exp = exp.min(cap).max(now);
        }
        let too_long = |value: Option<&str>, max: usize| value.is_some_and(|v| v.len() > max);
        for (field, value, max) in [
            ("user id", Some(grant.sub.as_str()), MAX_USER_ID),
            ("file id", Some(grant.fid.as_str()), MAX_FILE_ID),
            ("version", Some(grant.ver.as_str()), MAX_VERSION),
            ("share id", grant.shr.as_deref(), MAX_SHARE_ID),
            ("folder id", grant.pid.as_deref(), MAX_FILE_ID),
        ] {
            if too_long(value, max) {
                return Err(TokenError::TooLong(field));
            }
        }
        let claims = AccessClaims {
            sid: grant.sid,
            sub: grant.sub,
            name: cut(&grant.name, NAME_BYTES).to_string(),
            anon: grant.anon,
            profile: grant.profile,
            res: grant.res,
            fid: grant.fid,
            ver: grant.ver,
            act: grant.act,
            vid: grant.vid,
            shr: grant.shr,
            pid: grant.pid,
            iat: now,
            exp,
        };
        let wire = Wire::new(self.current, &claims)?;
        let mut bytes = vec![claims.res.format()];
        bytes.extend(postcard::to_allocvec(&wire).map_err(|_| TokenError::Signing)?);
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let signature = self.sign(self.message(TOKEN_LABEL, &payload))?;
        Ok((format!("{payload}.{signature}"), claims))
    }

    /// Verifies a token: from the cache of verified tokens when it is there and still within
    /// its validity, else in full (signature, expiry, audience) and then cached.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let now = chrono::Utc::now().timestamp();
        if let Some(claims) = self.verified.get(token) {
            if self.within_validity(&claims, now).is_ok() {
                return Ok(claims);
            }
        }
        let claims = self.verify_signature(token)?;
        self.verified.insert(token, claims.clone());
        Ok(claims)
    }

    fn within_validity(&self, claims: &AccessClaims, now: i64) -> Result<(), TokenError> {
        if claims.exp + self.leeway <= now {
            return Err(TokenError::Expired);
        }
        if claims.iat - self.leeway > now {
            return Err(TokenError::Invalid("not valid yet".into()));
        }
        Ok(())
    }

    /// The full check, without the cache.
    pub fn verify_signature(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_INPUT_CHARS {
            return Err(TokenError::Invalid("too long to be an access token".into()));
        }
        match token.bytes().filter(|&b| b == b'.').count() {
            1 => self.verify_compact(token),
            2 => self.verify_legacy(token),
            _ => Err(TokenError::Invalid("not a well-formed access token".into())),
        }
    }

    fn verify_compact(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let malformed = || TokenError::Invalid("not a well-formed access token".into());
        let (payload, signature) = token.split_once('.').ok_or_else(malformed)?;
        let (res, wire) = Wire::decode(payload).ok_or_else(malformed)?;
        let key = self
            .verifying
            .get(&wire.key)
            .ok_or_else(|| TokenError::Invalid("signed with a key that is not in the key ring".into()))?;
        if !self.verifies(key, signature, self.message(TOKEN_LABEL, payload))? {
            return Err(TokenError::Invalid("signature does not verify".into()));
        }
        let claims = wire.claims(res);
        self.within_validity(&claims, chrono::Utc::now().timestamp())?;
        Ok(claims)
    }

    /// A JWT of the earlier format: its header's kid names the key; the algorithm is still
    /// the configured one.
    fn verify_legacy(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = decode_header(token).map_err(|e| TokenError::Invalid(crate::auth::describe(&e)))?;
        let kid = header.kid.ok_or_else(|| TokenError::Invalid("no key id (kid)".into()))?;
        let key = self
            .verifying
            .get(&key_tag(&kid))
            .filter(|k| k.kid == kid)
            .ok_or_else(|| TokenError::Invalid("signed with a key that is not in the key ring".into()))?;
        let data = decode::<LegacyClaims>(token, &key.key, &key.legacy).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid(crate::auth::describe(&e)),
        })?;
        let c = data.claims;
        Ok(AccessClaims {
            sid: c.sid,
            sub: c.sub,
            name: c.name,
            anon: c.anon,
            profile: false,
            res: Resource::File,
            fid: c.fid,
            ver: c.ver,
            act: c.act,
            vid: c.vid,
            shr: c.shr,
            pid: c.pid,
            iat: c.nbf,
            exp: c.exp,
        })
    }
}

/// What else the key ring signs besides access tokens. Each purpose's label is bound into its
/// signatures (tokens sign `wopigate/1\n…`), so a signature made for one purpose never
/// verifies for another, nor as an access token, nor the other way round; the same keys and
/// rotation (`kid` tags, old keys still verify) apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `FileUrl`'s signed download links (`wopi::file_url`).
    FileUrl,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::FileUrl => b"wopigate/file-url/1\n",
        }
    }
}

impl TokenKeys {
    /// `body` signed for `purpose` with the current key: `base64url(key tag, body) "." signature`,
    /// URL-safe characters only.
    pub fn seal(&self, purpose: Purpose, body: &[u8]) -> Result<String, TokenError> {
        let mut bytes = self.current.to_vec();
        bytes.extend_from_slice(body);
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let signature = self.sign(self.message(purpose.label(), &payload))?;
        Ok(format!("{payload}.{signature}"))
    }

    /// The body of something `seal` made for `purpose`, when its signature verifies with a key
    /// of the ring (the library's comparison is constant-time).
    pub fn unseal(&self, purpose: Purpose, sealed: &str) -> Result<Vec<u8>, TokenError> {
        let malformed = || TokenError::Invalid("not well-formed".into());
        if sealed.len() > MAX_INPUT_CHARS {
            return Err(malformed());
        }
        let (payload, signature) = sealed.split_once('.').ok_or_else(malformed)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed())?;
        if bytes.len() < 4 {
            return Err(malformed());
        }
        let (tag, body) = bytes.split_at(4);
        let key = <[u8; 4]>::try_from(tag)
            .ok()
            .and_then(|tag| self.verifying.get(&tag))
            .ok_or_else(|| TokenError::Invalid("signed with a key that is not in the key ring".into()))?;
        if !self.verifies(key, signature, self.message(purpose.label(), payload)).map_err(|_| malformed())? {
            return Err(TokenError::Invalid("signature does not verify".into()));
        }
        Ok(body.to_vec())
    }

    /// How far clocks may disagree (`WOPIGATE_CLOCK_SKEW_SECS`), in seconds.
    pub fn leeway_secs(&self) -> i64 {
        self.leeway
    }
}

/// The claims of a token, without checking its signature: for tools and tests, never for
/// deciding anything.
pub fn inspect(token: &str) -> Option<AccessClaims> {
    let (payload, _) = token.split_once('.')?;
    Wire::decode(payload).map(|(res, wire)| wire.claims(res))
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
            res: Resource::File,
            sid: Uuid::new_v4(),
            sub: "u1".into(),
            name: "Ada".into(),
            anon: false,
            fid: "abc".into(),
            ver: String::new(),
            act: Action::Edit,
            vid: Uuid::new_v4(),
            profile: false,
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

    /// Tokens minted before the HMAC was keyed once (jsonwebtoken signing each message) verify,
    /// and the other way round: the signatures are the same bytes.
    #[test]
    fn hs256_signatures_are_jsonwebtokens() {
        let secret = "0123456789abcdef0123456789abcdef";
        let (cfg, current) = config(secret, vec![]);
        let keys = TokenKeys::new(&cfg, &current, 0).unwrap();
        let (token, claims) = keys.mint(grant(), chrono::Utc::now().timestamp(), None).unwrap();
        let (payload, signature) = token.split_once('.').unwrap();
        let message = [TOKEN_LABEL, b"wopigate", b"\n", payload.as_bytes()].concat();
        let key = EncodingKey::from_secret(secret.as_bytes());
        assert_eq!(jsonwebtoken::crypto::sign(&message, &key, Algorithm::HS256).unwrap(), signature);
        assert_eq!(keys.verify_signature(&token).unwrap(), claims);
        let mut forged = token.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert!(keys.verify_signature(std::str::from_utf8(&forged).unwrap()).is_err());
        assert!(keys.verify_signature(&format!("{payload}.not*base64")).is_err());
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

    fn eddsa_keys() -> TokenKeys {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys");
        let private = std::fs::read_to_string(dir.join("ed25519.pem")).unwrap();
        let public = std::fs::read_to_string(dir.join("ed25519.pub.pem")).unwrap();
        let current = TokenKeyConfig {
            kid: "k".repeat(64),
            material: KeyMaterial::Ed25519Pair { private: Secret::new(private), public },
        };
        let cfg = TokenConfig {
            algorithm: TokenAlgorithm::EdDsa,
            current: Some(current.clone()),
            previous: vec![],
            ttl_secs: 7 * 24 * 3600,
            audience: "a-long-audience-name-that-is-not-carried-in-the-token".into(),
        };
        TokenKeys::new(&cfg, &current, 0).unwrap()
    }

    /// The longest token wopigate can mint: every id at its bound, a past version, a share, a
    /// parent folder, a name of any length, the longest lifetime and an EdDSA signature.
    #[test]
    fn the_largest_token_fits_the_budget() {
        let keys = eddsa_keys();
        for name in ["x".repeat(100_000), "名".repeat(10_000), "👩‍💻".repeat(5_000), "\"\\\u{1}".repeat(1000)] {
            let worst = Grant {
                res: Resource::File,
                sub: "u".repeat(MAX_USER_ID),
                name,
                anon: true,
                profile: true,
                fid: "f".repeat(MAX_FILE_ID),
                ver: "v".repeat(MAX_VERSION),
                shr: Some("s".repeat(MAX_SHARE_ID)),
                pid: Some("p".repeat(MAX_FILE_ID)),
                ..grant()
            };
            let (token, claims) = keys.mint(worst, i64::from(u32::MAX) * 2, None).unwrap();
            assert!(token.len() <= MAX_TOKEN_CHARS, "{} characters", token.len());
            println!("largest token: {} characters", token.len());
            // URL-safe as it is: URL-encoding does not grow it.
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'));
            assert!(claims.name.len() <= NAME_BYTES && !claims.name.is_empty());
            assert_eq!(inspect(&token).unwrap(), claims);
        }
        let over = Grant { sub: "u".repeat(MAX_USER_ID + 1), ..grant() };
        assert_eq!(keys.mint(over, 0, None).unwrap_err(), TokenError::TooLong("user id"));
    }

    #[test]
    fn tampered_early_and_foreign_tokens_are_refused() {
        let (cfg, current) = config("0123456789abcdef0123456789abcdef", vec![]);
        let keys = TokenKeys::new(&cfg, &current, 0).unwrap();
        let now = chrono::Utc::now().timestamp();
        let (token, _) = keys.mint(grant(), now, None).unwrap();
        let (payload, signature) = token.split_once('.').unwrap();
        // Another file id under the same signature.
        let mut changed = inspect(&token).unwrap();
        changed.fid = "abd".into();
        let forged = Wire::new(key_tag(&current.kid), &changed).unwrap();
        let mut bytes = vec![Resource::File.format()];
        bytes.extend(postcard::to_allocvec(&forged).unwrap());
        let forged = format!("{}.{signature}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
        assert!(matches!(keys.verify(&forged), Err(TokenError::Invalid(_))));
        // The same claims relabelled as a container token: the kind is signed too.
        let mut relabelled = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
        relabelled[0] = Resource::Container.format();
        let relabelled = format!("{}.{signature}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(relabelled));
        assert_eq!(inspect(&relabelled).unwrap().res, Resource::Container);
        assert!(matches!(keys.verify(&relabelled), Err(TokenError::Invalid(_))));
        // Truncated, extended, garbage.
        for bad in [&token[..token.len() - 2], &format!("{token}A"), &format!("{payload}."), "a.b", "...", ""] {
            assert!(matches!(keys.verify(bad), Err(TokenError::Invalid(_))), "{bad}");
        }
        assert!(matches!(keys.verify(&"A".repeat(MAX_INPUT_CHARS + 1)), Err(TokenError::Invalid(_))));
        // Not valid yet; expired.
        let (later, _) = keys.mint(grant(), now + 600, None).unwrap();
        assert!(matches!(keys.verify(&later), Err(TokenError::Invalid(_))));
        let (old, _) = keys.mint(grant(), now - 7200, None).unwrap();
        assert_eq!(keys.verify(&old), Err(TokenError::Expired));
        // Same key, another audience.
        let other_cfg = TokenConfig { audience: "another-service".into(), ..cfg.clone() };
        let other = TokenKeys::new(&other_cfg, &current, 0).unwrap();
        let (theirs, _) = other.mint(grant(), now, None).unwrap();
        assert!(matches!(keys.verify(&theirs), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn tokens_of_the_earlier_jwt_format_still_verify() {
        let secret = "0123456789abcdef0123456789abcdef";
        let (cfg, current) = config(secret, vec![]);
        let keys = TokenKeys::new(&cfg, &current, 0).unwrap();
        let now = chrono::Utc::now().timestamp();
        let legacy = serde_json::json!({
            "sid": Uuid::new_v4(), "sub": "u1", "name": "Ada", "fid": "abc", "act": "edit",
            "vid": Uuid::new_v4(), "iat": now, "nbf": now, "exp": now + 60, "aud": "wopigate",
            "ext": {"avatar": "https://a/b.png"},
        });
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some(current.kid.clone());
        let sign = |claims: &serde_json::Value, header: &jsonwebtoken::Header| {
            jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
        };
        let claims = keys.verify(&sign(&legacy, &header)).unwrap();
        assert_eq!((claims.fid.as_str(), claims.act, claims.exp), ("abc", Action::Edit, now + 60));
        let mut wrong_aud = legacy.clone();
        wrong_aud["aud"] = "other".into();
        assert!(keys.verify(&sign(&wrong_aud, &header)).is_err());
        header.kid = Some("unknown".into());
        assert!(keys.verify(&sign(&legacy, &header)).is_err());
    }

    #[test]
    fn sealed_values_are_no_tokens_and_tokens_are_not_sealed() {
        let (cfg, current) = config("0123456789abcdef0123456789abcdef", vec![]);
        let keys = TokenKeys::new(&cfg, &current, 0).unwrap();
        let sealed = keys.seal(Purpose::FileUrl, b"file 1, version 2").unwrap();
        assert!(sealed.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'));
        assert_eq!(keys.unseal(Purpose::FileUrl, &sealed).unwrap(), b"file 1, version 2");
        assert!(matches!(keys.verify(&sealed), Err(TokenError::Invalid(_))), "a sealed value is no access token");
        let (token, _) = keys.mint(grant(), chrono::Utc::now().timestamp(), None).unwrap();
        assert!(keys.unseal(Purpose::FileUrl, &token).is_err(), "an access token is no sealed value");
        // The same body under the token's signature, and a body changed under the seal's.
        let (_, token_signature) = token.split_once('.').unwrap();
        let (payload, signature) = sealed.split_once('.').unwrap();
        assert!(keys.unseal(Purpose::FileUrl, &format!("{payload}.{token_signature}")).is_err());
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        let changed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        assert!(keys.unseal(Purpose::FileUrl, &format!("{changed}.{signature}")).is_err());
        for bad in ["", ".", "AAAA.", "a.b", &sealed[..sealed.len() - 1]] {
            assert!(keys.unseal(Purpose::FileUrl, bad).is_err(), "{bad}");
        }
        // Another audience with the same key does not unseal it.
        let other = TokenKeys::new(&TokenConfig { audience: "another-service".into(), ..cfg.clone() }, &current, 0).unwrap();
        assert!(other.unseal(Purpose::FileUrl, &sealed).is_err());
        // Rotation: sealed with the old key, still opened while it is in the ring.
        let (new_cfg, new_current) = config("new-new-new-new-new-new-new-new-new-new", vec![current]);
        let rotated = TokenKeys::new(&new_cfg, &new_current, 0).unwrap();
        assert_eq!(rotated.unseal(Purpose::FileUrl, &sealed).unwrap(), b"file 1, version 2");
        let (bare_cfg, bare_current) = config("new-new-new-new-new-new-new-new-new-new", vec![]);
        assert!(TokenKeys::new(&bare_cfg, &bare_current, 0).unwrap().unseal(Purpose::FileUrl, &sealed).is_err());
        // EdDSA seals too.
        let ed = eddsa_keys();
        let sealed = ed.seal(Purpose::FileUrl, b"x").unwrap();
        assert_eq!(ed.unseal(Purpose::FileUrl, &sealed).unwrap(), b"x");
    }

    #[test]
    fn names_are_cut_at_character_boundaries() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
    }

    #[test]
    fn dev_key_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = dev_key(dir.path()).unwrap();
        let b = dev_key(dir.path()).unwrap();
        assert_eq!(a.kid, b.kid);
    }
}
