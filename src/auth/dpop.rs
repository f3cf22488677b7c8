//! A DPoP proof (RFC 9449 §4.3), checked as a pure function: the proof's form, its key (a
//! public JWK of an allowed asymmetric algorithm, which signed it), and its claims against
//! the request (`htm`, `htu`, `iat` within the window, `ath` for the access token). What it
//! returns, the key's thumbprint and the `jti`, is what the caller compares with the token's
//! `cnf.jkt` and records against replay (`auth::binding` does both).

use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::Method;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::formats::dpop::{check_public, normalize_htu, thumbprint};
use crate::formats::jwks::verify_key_from_jwk;
use crate::formats::media_type;

/// Longest `jti` accepted (it is kept for replay detection).
const MAX_JTI: usize = 256;

/// What the proof must match.
pub struct Expected<'a> {
    pub method: &'a Method,
    /// The request's URI in `normalize_htu` form (the public URL, or scheme and validated
    /// authority, plus the normalized path).
    pub htu: &'a str,
    /// The access token the proof goes with (`ath`); `None` where there is none.
    pub access_token: Option<&'a str>,
    /// The allow-list: asymmetric algorithms only.
    pub algorithms: &'a [Algorithm],
    /// Seconds since the epoch.
    pub now: f64,
    /// How old an `iat` may be, and how far ahead of the clock.
    pub max_age: f64,
    pub leeway: f64,
}

/// A proof that checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Proof {
    /// RFC 7638 thumbprint of the proof's key: what `cnf.jkt` must say.
    pub jkt: String,
    pub jti: String,
    pub iat: f64,
    /// The server nonce the proof carries, if any (checked by the caller when required).
    pub nonce: Option<String>,
}

/// Why a proof is refused (RFC 9449 `invalid_dpop_proof`, each for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadProof {
    #[error("not a compact JWS with a JSON header and claims")]
    Malformed,
    #[error("typ is not dpop+jwt")]
    Type,
    #[error("crit names extensions the gateway does not implement")]
    Critical,
    #[error("alg is not an allowed asymmetric algorithm")]
    Algorithm,
    #[error("jwk is missing, private, or not a usable public key for alg")]
    Key,
    #[error("signature does not verify with the proof's jwk")]
    Signature,
    #[error("htm is not the request method")]
    Method,
    #[error("htu is not the request URI")]
    Uri,
    #[error("iat is missing, not a number, too old or in the future")]
    Time,
    #[error("ath is missing or not the access token's hash")]
    TokenHash,
    #[error("jti is missing, empty or too long")]
    Id,
}

#[derive(Deserialize)]
struct ProofHeader {
    typ: Option<String>,
    alg: String,
    jwk: Option<Value>,
    /// RFC 7515 §4.1.11: an extension the recipient does not implement makes the JWS
    /// invalid; none is implemented, so any `crit` (even `[]` or `null`).
    #[serde(default, deserialize_with = "crate::formats::json::present")]
    crit: bool,
}

#[derive(Deserialize)]
struct ProofClaims {
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<Value>,
    jti: Option<String>,
    ath: Option<String>,
    nonce: Option<String>,
}

/// Checks `proof` against what the request is. The order follows RFC 9449 §4.3: form, `typ`,
/// `alg`, key, signature, then the claims.
pub fn check_proof(proof: &str, e: &Expected<'_>) -> Result<Proof, BadProof> {
    let mut parts = proof.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadProof::Malformed);
    };
    let header: ProofHeader = decode(h64)?;
    if header.typ.as_deref().map(media_type).as_deref() != Some("dpop+jwt") {
        return Err(BadProof::Type);
    }
    if header.crit {
        return Err(BadProof::Critical);
    }
    // Never `none`, never HMAC (a proof proves a private key), never outside the list.
    let alg = Algorithm::from_str(&header.alg).map_err(|_| BadProof::Algorithm)?;
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
        || !e.algorithms.contains(&alg)
    {
        return Err(BadProof::Algorithm);
    }
    let jwk = header.jwk.ok_or(BadProof::Key)?;
    check_public(&jwk).map_err(|_| BadProof::Key)?;
    let key = verify_key_from_jwk(&jwk, &[alg]).map_err(|_| BadProof::Key)?;
    let jkt = thumbprint(&jwk).map_err(|_| BadProof::Key)?;
    let message = &proof.as_bytes()[..h64.len() + 1 + p64.len()];
    if !key.verify(s64, message, alg) {
        return Err(BadProof::Signature);
    }
    let claims: ProofClaims = decode(p64)?;
    if claims.htm.as_deref() != Some(e.method.as_str()) {
        return Err(BadProof::Method);
    }
    if claims.htu.as_deref().and_then(normalize_htu).as_deref() != Some(e.htu) {
        return Err(BadProof::Uri);
    }
    let iat = match claims.iat {
        Some(Value::Number(n)) => n.as_f64().filter(|v| v.is_finite()),
        _ => None,
    }
    .ok_or(BadProof::Time)?;
    if iat > e.now + e.leeway || iat < e.now - e.max_age - e.leeway {
        return Err(BadProof::Time);
    }
    if let Some(token) = e.access_token {
        let want = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
        if claims.ath.as_deref() != Some(want.as_str()) {
            return Err(BadProof::TokenHash);
        }
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI)
        .ok_or(BadProof::Id)?;
    Ok(Proof {
        jkt,
        jti,
        iat,
        nonce: claims.nonce,
    })
}

fn decode<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, BadProof> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| BadProof::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| BadProof::Malformed)
}

/// What DPoP keeps across requests (and reloads): the replay store, and the key of the
/// server nonces.
pub struct DpopState {
    pub replay: Box<dyn replay::ReplayGuard>,
    nonce_key: aws_lc_rs::hmac::Key,
    /// The widest proof window (`dpop_max_age` + `leeway`) of the config in force, ms: how
    /// long the replay store keeps a proof after its `iat`.
    window_ms: std::sync::atomic::AtomicU64,
}

/// A nonce is good in the step it was issued in and the next one: 30 to 60 seconds.
const NONCE_STEP: f64 = 30.0;

impl DpopState {
    /// An in-memory replay store of `max_entries`, and a fresh random nonce key (nonces
    /// are this process's own: a fleet behind one name gets them from the fleet store).
    pub fn new(max_entries: usize) -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let nonce_key = aws_lc_rs::hmac::Key::generate(aws_lc_rs::hmac::HMAC_SHA256, &rng)
            .expect("the system's random generator");
        Self {
            replay: Box::new(replay::MemoryReplay::new(max_entries)),
            nonce_key,
            window_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Sets the widest window of `config`'s providers (each snapshot does, a reload too).
    pub fn set_window(&self, config: &crate::config::Config) {
        let widest = config
            .providers
            .iter()
            .filter(|p| p.dpop.mode != crate::config::DpopMode::Off)
            .map(|p| p.dpop.max_age.saturating_add(p.leeway))
            .max()
            .unwrap_or_default();
        let ms = u64::try_from(widest.as_millis()).unwrap_or(u64::MAX);
        self.window_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long after its `iat` a proof is remembered: the config's widest window, and at
    /// least `own_ms` (the window of the provider asking, should a snapshot built before
    /// the last reload ask).
    pub fn window_ms(&self, own_ms: u64) -> u64 {
        self.window_ms
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(own_ms)
    }

    /// The nonce to hand out now: the time step and a MAC of it, base64url (no state).
    pub fn nonce(&self, now: f64) -> String {
        let step = nonce_step(now);
        let tag = aws_lc_rs::hmac::sign(&self.nonce_key, &step.to_be_bytes());
        let mut raw = step.to_be_bytes().to_vec();
        raw.extend_from_slice(&tag.as_ref()[..16]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `nonce` is one this process issued in this step or the one before.
    pub fn nonce_is_fresh(&self, nonce: &str, now: f64) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let Some((step, tag)) = raw.split_first_chunk::<8>() else {
            return false;
        };
        if tag.len() != 16 {
            return false;
        }
        let step_n = u64::from_be_bytes(*step);
        let current = nonce_step(now);
        if step_n != current && step_n.checked_add(1) != Some(current) {
            return false;
        }
        let want = aws_lc_rs::hmac::sign(&self.nonce_key, step);
        aws_lc_rs::constant_time::verify_slices_are_equal(&want.as_ref()[..16], tag).is_ok()
    }
}

fn nonce_step(now: f64) -> u64 {
    // A clock before 1970 or beyond u64 saturates; `as` from f64 does.
    (now / NONCE_STEP) as u64
}

pub mod replay;

#[cfg(test)]
mod tests;
