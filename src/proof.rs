//! Proof keys: checking `X-WOPI-Proof` / `X-WOPI-ProofOld` against the keys a WOPI client
//! publishes in its discovery, as Microsoft specifies (three key/signature combinations,
//! 20-minute timestamp window, RSASSA-PKCS1-v1_5 with SHA-256).

use base64::Engine;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::{BigUint, RsaPublicKey};
use sha2::Sha256;

use crate::discovery::{ProofKeys, RsaPublicKey as PublishedKey};

/// .NET ticks (100 ns since 0001-01-01) at the Unix epoch.
const EPOCH_TICKS: i64 = 621_355_968_000_000_000;
const TICKS_PER_SECOND: i64 = 10_000_000;
/// A signature older than this is refused.
const MAX_AGE_TICKS: i64 = 20 * 60 * TICKS_PER_SECOND;
/// Clocks differ: allow a signature this far in the future.
const MAX_SKEW_TICKS: i64 = 5 * 60 * TICKS_PER_SECOND;

pub fn ticks_from_unix_millis(ms: i64) -> i64 {
    EPOCH_TICKS + ms * 10_000
}

/// The signed headers of one request.
pub struct ProofHeaders<'a> {
    pub timestamp: Option<&'a str>,
    pub proof: Option<&'a str>,
    pub proof_old: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofCheck {
    /// `X-WOPI-Proof` verifies with the current key.
    Valid,
    /// Verifies only through the old key or the old signature: keys are rotating, so the
    /// discovery should be refreshed.
    ValidRotating,
    Invalid(&'static str),
}

/// `token` is the access token as issued; `url` the absolute URL the client called (public
/// base + raw path and query); `now_ticks` the current time in .NET ticks.
pub fn verify(keys: &ProofKeys, token: &str, url: &str, headers: &ProofHeaders, now_ticks: i64) -> ProofCheck {
    let Some(timestamp) = headers.timestamp else {
        return ProofCheck::Invalid("X-WOPI-TimeStamp is missing");
    };
    let Ok(ticks) = timestamp.trim().parse::<i64>() else {
        return ProofCheck::Invalid("X-WOPI-TimeStamp is not a number");
    };
    if now_ticks - ticks > MAX_AGE_TICKS {
        return ProofCheck::Invalid("X-WOPI-TimeStamp is older than 20 minutes");
    }
    if ticks - now_ticks > MAX_SKEW_TICKS {
        return ProofCheck::Invalid("X-WOPI-TimeStamp is in the future");
    }
    let expected = expected_proof(token, url, ticks);
    let current = public_key(&keys.current);
    let old = keys.old.as_ref().and_then(public_key);
    let proof = headers.proof.and_then(decode);
    let proof_old = headers.proof_old.and_then(decode);
    if proof.is_none() {
        return ProofCheck::Invalid("X-WOPI-Proof is missing or not base64");
    }
    let check = |key: &Option<VerifyingKey<Sha256>>, sig: &Option<Vec<u8>>| match (key, sig) {
        (Some(key), Some(sig)) => Signature::try_from(sig.as_slice()).is_ok_and(|s| key.verify(&expected, &s).is_ok()),
        _ => false,
    };
    if check(&current, &proof) {
        ProofCheck::Valid
    } else if check(&current, &proof_old) || check(&old, &proof) {
        ProofCheck::ValidRotating
    } else {
        ProofCheck::Invalid("signature does not verify with the published proof keys")
    }
}

/// `len(T) T len(U) U 8 ticks`, lengths as 4-byte big-endian, the URL upper-cased.
pub fn expected_proof(token: &str, url: &str, ticks: i64) -> Vec<u8> {
    let url = url.to_ascii_uppercase();
    let mut out = Vec::with_capacity(token.len() + url.len() + 20);
    out.extend_from_slice(&(token.len() as u32).to_be_bytes());
    out.extend_from_slice(token.as_bytes());
    out.extend_from_slice(&(url.len() as u32).to_be_bytes());
    out.extend_from_slice(url.as_bytes());
    out.extend_from_slice(&8u32.to_be_bytes());
    out.extend_from_slice(&ticks.to_be_bytes());
    out
}

fn decode(value: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()
}

fn public_key(key: &PublishedKey) -> Option<VerifyingKey<Sha256>> {
    let key = RsaPublicKey::new(BigUint::from_bytes_be(&key.modulus), BigUint::from_bytes_be(&key.exponent)).ok()?;
    Some(VerifyingKey::<Sha256>::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft's published proof-key test vectors (samples/python/proof_keys/tests.py).
    const VECTORS: &str = include_str!("../tests/fixtures/proof-vectors.txt");

    fn keys() -> ProofKeys {
        let get = |name: &str| {
            VECTORS.lines().find(|l| l.starts_with(&format!("{name}="))).map(|l| decode(field_opt(l).1).unwrap()).unwrap()
        };
        ProofKeys {
            current: PublishedKey { modulus: get("modulus"), exponent: get("exponent") },
            old: Some(PublishedKey { modulus: get("oldmodulus"), exponent: get("oldexponent") }),
        }
    }

    #[test]
    fn published_vectors() {
        let keys = keys();
        let mut cases = 0;
        for block in VECTORS.split("Case ").skip(1) {
            let value = |name: &str| block.lines().map(field_opt).find(|(k, _)| *k == name).map(|(_, v)| v).unwrap();
            let ticks: i64 = value("X-WOPI-TimeStamp").parse().unwrap();
            let headers = ProofHeaders {
                timestamp: Some(value("X-WOPI-TimeStamp")),
                proof: Some(value("X-WOPI-Proof")),
                proof_old: Some(value("X-WOPI-ProofOld")),
            };
            let result = verify(&keys, value("access_token"), value("url"), &headers, ticks + 1000);
            let name = block.split('`').nth(1).unwrap();
            let expected = match name {
                "test_proof_current_key1" => ProofCheck::Valid,
                "test_old_proof_current_key1" | "test_proof_old_key1" => ProofCheck::ValidRotating,
                _ => ProofCheck::Invalid("signature does not verify with the published proof keys"),
            };
            assert_eq!(result, expected, "{name}");
            cases += 1;
        }
        assert_eq!(cases, 4);
    }

    fn field_opt(line: &str) -> (&str, &str) {
        line.split_once('=').map(|(k, v)| (k.trim(), v.trim())).unwrap_or(("", ""))
    }

    #[test]
    fn intermediate_values_match_the_reference() {
        let block = VECTORS.split("Case ").nth(1).unwrap();
        let value = |name: &str| block.lines().map(field_opt).find(|(k, _)| *k == name).map(|(_, v)| v).unwrap();
        let expected = expected_proof(value("access_token"), value("url"), value("X-WOPI-TimeStamp").parse().unwrap());
        assert_eq!(expected.len(), 507);
        assert_eq!(&expected[..4], &[0, 0, 0, 0xC8]);
        use sha2::Digest;
        let digest: String = Sha256::digest(&expected).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest, "5ba5ba7a205e58d1de521c6f290b484787901e4104409cc9fb28d5803fc48079");
    }

    #[test]
    fn old_timestamps_and_old_signature_with_old_key_are_refused() {
        let keys = keys();
        let block = VECTORS.split("Case ").nth(1).unwrap();
        let value = |name: &str| block.lines().map(field_opt).find(|(k, _)| *k == name).map(|(_, v)| v).unwrap();
        let ticks: i64 = value("X-WOPI-TimeStamp").parse().unwrap();
        let headers = ProofHeaders { timestamp: Some(value("X-WOPI-TimeStamp")), proof: Some(value("X-WOPI-Proof")), proof_old: None };
        let late = verify(&keys, value("access_token"), value("url"), &headers, ticks + MAX_AGE_TICKS + 1);
        assert_eq!(late, ProofCheck::Invalid("X-WOPI-TimeStamp is older than 20 minutes"));
        // ProofOld signed by the old key only, with a bogus Proof: combination 4 is not accepted.
        let block = VECTORS.split("Case ").nth(3).unwrap();
        let value = |name: &str| block.lines().map(field_opt).find(|(k, _)| *k == name).map(|(_, v)| v).unwrap();
        let headers = ProofHeaders {
            timestamp: Some(value("X-WOPI-TimeStamp")),
            proof: Some("AAAA"),
            proof_old: Some(value("X-WOPI-ProofOld")),
        };
        let ticks: i64 = value("X-WOPI-TimeStamp").parse().unwrap();
        assert!(matches!(verify(&keys, value("access_token"), value("url"), &headers, ticks), ProofCheck::Invalid(_)));
    }
}
