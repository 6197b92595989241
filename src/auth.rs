//! Who is calling: the platform's JWT in `Authorization: Bearer …`, or nobody (anonymous).
//!
//! The verification algorithm is decided by the configured key (an HS256 secret, or an RSA,
//! EC P-256 or Ed25519 public key), never by the token's own header.

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{CallerJwtConfig, CallerKey, ConfigError};
use crate::token::{VerifiedCache, MAX_USER_ID};
use crate::uri::is_valid_id;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User { id: String, name: String, extra: Option<UserExtra> },
}

/// Public profile bits a WOPI client may show to co-authors (Collabora's `UserExtraInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct UserExtra {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
}

/// Longest avatar URL or address kept (longer ones are left out).
const MAX_EXTRA_LEN: usize = 512;
/// Display names are kept to this many characters (tokens carry a shorter cut; see
/// `token::NAME_BYTES`).
pub const MAX_NAME_CHARS: usize = 256;

impl Caller {
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::User { id, .. } => Some(id),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("Authorization header must be 'Bearer <token>'")]
    Malformed,
    #[error("caller tokens are not accepted: no caller JWT key is configured")]
    NotConfigured,
    #[error("caller token has expired")]
    Expired,
    #[error("caller token is invalid: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct CallerClaims {
    sub: String,
    name: Option<String>,
    nick: Option<String>,
    preferred_username: Option<String>,
    picture: Option<String>,
    avatar: Option<String>,
    email: Option<String>,
    /// Numbers, as JWTs have them (required by the validation; kept for cache hits).
    exp: Option<f64>,
    nbf: Option<f64>,
}

/// A caller token whose signature and claims were checked: a platform sends one JWT per user for
/// its lifetime, and decoding and checking it (an RSA signature takes tens of microseconds) was
/// the largest part of a viewerSession. Expiry and not-before are checked again on every hit.
#[derive(Clone)]
struct Verified {
    caller: Caller,
    exp: Option<f64>,
    nbf: Option<f64>,
}

pub struct CallerVerifier {
    key: Option<(DecodingKey, Validation)>,
    verified: VerifiedCache<Verified>,
}

impl CallerVerifier {
    pub fn new(config: &CallerJwtConfig, leeway_secs: u64) -> Result<Self, ConfigError> {
        let Some(key) = &config.key else {
            return Ok(CallerVerifier { key: None, verified: VerifiedCache::new() });
        };
        let (decoding, algorithm) = match key {
            CallerKey::Hs256(secret) => (DecodingKey::from_secret(secret.expose().as_bytes()), Algorithm::HS256),
            CallerKey::PublicPem(pem) => public_key(pem.as_bytes())?,
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = leeway_secs;
        validation.validate_nbf = true;
        match &config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
        }
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(CallerVerifier { key: Some((decoding, validation)), verified: VerifiedCache::new() })
    }

    /// `header` is the raw `Authorization` value, if any.
    pub fn verify(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        self.verify_at(header, chrono::Utc::now().timestamp())
    }

    /// `verify`, with cache hits judged at unix time `now`.
    fn verify_at(&self, header: Option<&str>, now: i64) -> Result<Caller, AuthError> {
        let Some(header) = header else {
            return Ok(Caller::Anonymous);
        };
        let token = bearer(header).ok_or(AuthError::Malformed)?;
        let (key, validation) = self.key.as_ref().ok_or(AuthError::NotConfigured)?;
        if let Some(hit) = self.verified.get(token) {
            // jsonwebtoken's rules: expired when exp < now - leeway, early when nbf > now + leeway.
            let (now, leeway) = (now as f64, validation.leeway as f64);
            if hit.exp.is_some_and(|exp| exp < now - leeway) {
                return Err(AuthError::Expired);
            }
            if hit.nbf.is_some_and(|nbf| nbf > now + leeway) {
                return Err(AuthError::Invalid("not valid yet (nbf)".into()));
            }
            return Ok(hit.caller);
        }
        let checked = self.check(token, key, validation)?;
        self.verified.insert(token, checked.clone());
        Ok(checked.caller)
    }

    /// The full check: signature, claims, and what the claims say.
    fn check(&self, token: &str, key: &DecodingKey, validation: &Validation) -> Result<Verified, AuthError> {
        let claims = decode::<CallerClaims>(token, key, validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(describe(&e)),
            })?
            .claims;
        if !is_valid_id(&claims.sub) || claims.sub.len() > MAX_USER_ID {
            return Err(AuthError::Invalid(format!("sub must be 1-{MAX_USER_ID} characters of A-Z a-z 0-9 - _")));
        }
        let name = [claims.name, claims.nick, claims.preferred_username]
            .into_iter()
            .flatten()
            .find(|n| !n.trim().is_empty())
            // Control characters (newlines, terminal escapes) have no place in a name that
            // clients show and operators read in listings.
            .map(|n| n.trim().chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect::<String>())
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| claims.sub.clone());
        let short = |v: Option<String>| v.filter(|s| !s.trim().is_empty() && s.len() <= MAX_EXTRA_LEN);
        let extra = UserExtra { avatar: short(claims.picture.or(claims.avatar)), mail: short(claims.email) };
        let extra = (extra != UserExtra::default()).then_some(extra);
        Ok(Verified { caller: Caller::User { id: claims.sub, name, extra }, exp: claims.exp, nbf: claims.nbf })
    }
}

fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Which algorithm a PEM public key implies; an unsupported key stops start-up.
fn public_key(pem: &[u8]) -> Result<(DecodingKey, Algorithm), ConfigError> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok((key, Algorithm::ES256));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok((key, Algorithm::EdDSA));
    }
    Err(ConfigError::new(
        "WOPIGATE_CALLER_JWT_PUBLIC_KEY",
        "is not a PEM public key of type RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA)",
    ))
}

/// A short reason safe to show: never the token itself.
pub fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => "signature does not verify".into(),
        K::InvalidAlgorithm | K::InvalidAlgorithmName => "algorithm is not the configured one".into(),
        K::ExpiredSignature => "expired".into(),
        K::ImmatureSignature => "not valid yet (nbf)".into(),
        K::InvalidAudience => "wrong audience".into(),
        K::InvalidIssuer => "wrong issuer".into(),
        K::MissingRequiredClaim(c) => format!("claim '{c}' is missing"),
        K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => "not a well-formed JWT".into(),
        _ => "rejected".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &str = "caller-secret-caller-secret-caller-secret";

    fn verifier() -> CallerVerifier {
        let config = CallerJwtConfig { key: Some(CallerKey::Hs256(Secret::new(SECRET))), issuer: None, audience: None };
        CallerVerifier::new(&config, 0).unwrap()
    }

    fn jwt(claims: serde_json::Value, secret: &str) -> String {
        format!("Bearer {}", encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap())
    }

    /// A verified token is taken from the cache, but its expiry and not-before still count on
    /// every hit; a token that failed is never cached, and one byte more or less is another token.
    #[test]
    fn cached_caller_tokens_still_expire_and_failures_are_not_cached() {
        let v = verifier();
        let now = chrono::Utc::now().timestamp();
        let good = jwt(serde_json::json!({"sub": "u1", "name": "Ada", "exp": now + 60}), SECRET);
        let ada = Caller::User { id: "u1".into(), name: "Ada".into(), extra: None };
        assert_eq!(v.verify_at(Some(&good), now), Ok(ada.clone()));
        assert_eq!(v.verify_at(Some(&good), now + 30), Ok(ada));
        assert_eq!(v.verify_at(Some(&good), now + 61), Err(AuthError::Expired));
        assert_eq!(v.verified.len(), 1);

        let early = jwt(serde_json::json!({"sub": "u1", "exp": now + 600, "nbf": now - 1}), SECRET);
        assert!(v.verify_at(Some(&early), now).is_ok());
        assert!(matches!(v.verify_at(Some(&early), now - 100), Err(AuthError::Invalid(_))));

        let forged = jwt(serde_json::json!({"sub": "u1", "exp": now + 60}), "another-secret-another-secret-another");
        for _ in 0..2 {
            assert!(matches!(v.verify_at(Some(&forged), now), Err(AuthError::Invalid(_))));
        }
        let bad_sub = jwt(serde_json::json!({"sub": "no/slashes", "exp": now + 60}), SECRET);
        assert!(matches!(v.verify_at(Some(&bad_sub), now), Err(AuthError::Invalid(_))));
        let truncated = &good[..good.len() - 1];
        assert!(matches!(v.verify_at(Some(truncated), now), Err(AuthError::Invalid(_))));
        assert_eq!(v.verified.len(), 2, "only the good tokens are kept");
    }
}
