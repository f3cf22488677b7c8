//! Key sets: a provider's verification keys, parsed from a JWKS document (RFC 7517) or built
//! from an HMAC secret, each key pinned to the algorithms it may verify.
//!
//! Parsing is robust: one malformed or unsupported key is skipped with a reason and never
//! poisons the rest; duplicate `kid`s make the whole document unusable (which key would a
//! token mean?), so the last good set stays in force.

use std::collections::HashMap;
use std::fmt;

use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// RSA moduli below this many bits are refused: 1024-bit RSA is within reach of a
/// well-funded attacker, and RFC 7518 §3.3 requires 2048.
pub const MIN_RSA_BITS: usize = 2048;

/// With no `kid` in the token, at most this many keys are tried: a JWKS of many keys must not
/// turn one bad token into many signature checks.
pub const MAX_KIDLESS_CANDIDATES: usize = 4;

/// One usable verification key.
pub struct VerifyKey {
    pub kid: Option<String>,
    /// The algorithms this key may verify: the JWK's own `alg` if it has one, otherwise
    /// the provider allow-list restricted to the key's type and curve.
    pub algorithms: Vec<Algorithm>,
    verifier: Verifier,
}

/// What checks a key's signatures.
enum Verifier {
    /// An HMAC secret: jsonwebtoken verifies those.
    Hmac(DecodingKey),
    /// A public key parsed once, per algorithm: jsonwebtoken's `crypto::verify` rebuilds the
    /// aws-lc key on every call, and for RSA that means recomputing its Montgomery constants,
    /// which costs more than the signature check itself (see docs/PERFORMANCE.md).
    Public(Vec<(Algorithm, ParsedPublicKey)>),
}

/// Every asymmetric algorithm (what a DPoP proof may use by default), the RSA ones
/// together.
pub const ASYMMETRIC_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

/// Every algorithm an RSA key can verify (before the allow-list and the JWK's `alg`).
pub const RSA_ALGORITHMS: &[Algorithm] = ASYMMETRIC_ALGORITHMS.split_at(2).1.split_at(6).0;

// === impl VerifyKey ===

impl VerifyKey {
    /// Whether `sig` (base64url) is a valid `alg` signature of `message` by this key. `alg`
    /// must be one of `algorithms` (the caller picked the key for it).
    pub fn verify(&self, sig: &str, message: &[u8], alg: Algorithm) -> bool {
        if !self.algorithms.contains(&alg) {
            return false;
        }
        match &self.verifier {
            Verifier::Hmac(secret) => {
                jsonwebtoken::crypto::verify(sig, message, secret, alg).unwrap_or(false)
            }
            Verifier::Public(parsed) => {
                parsed
                    .iter()
                    .find(|(a, _)| *a == alg)
                    .is_some_and(|(_, key)| {
                        URL_SAFE_NO_PAD
                            .decode(sig)
                            .is_ok_and(|sig| key.verify_sig(message, &sig).is_ok())
                    })
            }
        }
    }
}

/// The aws-lc verification algorithm jsonwebtoken uses for `alg` (none for HMAC).
fn aws_algorithm(alg: Algorithm) -> Option<&'static dyn signature::VerificationAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &signature::ED25519,
        // HMAC, and anything a later jsonwebtoken adds: no parsed key, so never verified
        // through this path.
        _ => return None,
    })
}

/// DER `RSAPublicKey` (RFC 8017 A.1.1) from the modulus and exponent bytes.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn len(out: &mut Vec<u8>, n: usize) {
        match n {
            0..=127 => out.push(n as u8),
            128..=255 => out.extend([0x81, n as u8]),
            _ => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
    }
    fn integer(out: &mut Vec<u8>, bytes: &[u8]) {
        let bytes = &bytes[bytes.iter().take_while(|&&b| b == 0).count()..];
        let pad = bytes.first().is_none_or(|&b| b >= 0x80);
        out.push(0x02);
        len(out, bytes.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(bytes);
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    integer(&mut body, n);
    integer(&mut body, e);
    let mut out = vec![0x30];
    len(&mut out, body.len());
    out.extend(body);
    out
}

/// All usable keys of one provider.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
    by_kid: HashMap<String, usize>,
}

/// A key left out of a set, and why (logged as a warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    pub index: usize,
    pub kid: Option<String>,
    pub reason: String,
}

/// Why a whole JWKS document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("not a JSON object with a \"keys\" array: {0}")]
    Shape(String),
    #[error("duplicate kid {0:?}")]
    DuplicateKid(String),
    #[error("no usable signing key ({0} skipped)")]
    NoUsableKeys(usize),
}

// === impl KeySet ===

impl KeySet {
    /// A set holding one HMAC secret, for the `HS*` algorithms of the allow-list.
    pub fn from_hmac_secret(secret: &[u8], allowed: &[Algorithm]) -> Self {
        let algorithms: Vec<Algorithm> = allowed
            .iter()
            .copied()
            .filter(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
            .collect();
        Self {
            keys: vec![VerifyKey {
                kid: None,
                algorithms,
                verifier: Verifier::Hmac(DecodingKey::from_secret(secret)),
            }],
            by_kid: HashMap::new(),
        }
    }

    /// Parses a JWKS document, keeping the keys usable with `allowed`.
    pub fn from_jwks(
        doc: &[u8],
        allowed: &[Algorithm],
    ) -> Result<(Self, Vec<SkippedKey>), JwksError> {
        let value: Value =
            serde_json::from_slice(doc).map_err(|e| JwksError::Shape(e.to_string()))?;
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwksError::Shape("missing \"keys\" array".to_owned()))?;
        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for (index, jwk) in keys.iter().enumerate() {
            let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
            match parse_jwk(jwk, allowed) {
                Ok(key) => {
                    if let Some(kid) = &key.kid {
                        if set.by_kid.insert(kid.clone(), set.keys.len()).is_some() {
                            return Err(JwksError::DuplicateKid(kid.clone()));
                        }
                    }
                    set.keys.push(key);
                }
                Err(reason) => skipped.push(SkippedKey {
                    index,
                    kid,
                    reason: reason.to_owned(),
                }),
            }
        }
        if set.keys.is_empty() {
            return Err(JwksError::NoUsableKeys(skipped.len()));
        }
        Ok((set, skipped))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys to try for a token, by `kid` or, without one, by algorithm.
    pub fn candidates<'k>(&'k self, kid: Option<&str>, alg: Algorithm) -> Candidates<'k> {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                Some(&i) if self.keys[i].algorithms.contains(&alg) => {
                    Candidates::One(&self.keys[i])
                }
                Some(_) => Candidates::WrongAlgorithm,
                // An HMAC set has no kids: its one key answers any kid.
                None if self.by_kid.is_empty() && self.keys.iter().all(|k| k.kid.is_none()) => {
                    self.kidless(alg)
                }
                None => Candidates::UnknownKid,
            },
            None => self.kidless(alg),
        }
    }

    fn kidless(&self, alg: Algorithm) -> Candidates<'_> {
        let keys: Vec<&VerifyKey> = self
            .keys
            .iter()
            .filter(|k| k.algorithms.contains(&alg))
            .take(MAX_KIDLESS_CANDIDATES)
            .collect();
        if keys.is_empty() {
            Candidates::UnknownKid
        } else {
            Candidates::Several(keys)
        }
    }
}

/// Result of a key lookup.
pub enum Candidates<'k> {
    One(&'k VerifyKey),
    Several(Vec<&'k VerifyKey>),
    /// The `kid` names a key that is pinned to another algorithm (or another key type).
    WrongAlgorithm,
    UnknownKid,
}

impl fmt::Debug for KeySet {
    // Key material stays out of logs; kids and algorithms are enough to debug.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (k.kid.as_deref(), &k.algorithms)))
            .finish()
    }
}

/// One JWK as a verifying key, under the same rules as a key of a JWKS (the key's type,
/// curve and size, `use`, `key_ops`, its own `alg`), for the algorithms in `allowed`. A
/// DPoP proof carries its key this way (RFC 9449 §4.2).
pub fn verify_key_from_jwk(jwk: &Value, allowed: &[Algorithm]) -> Result<VerifyKey, &'static str> {
    parse_jwk(jwk, allowed)
}

fn parse_jwk(jwk: &Value, allowed: &[Algorithm]) -> Result<VerifyKey, &'static str> {
    let obj = jwk.as_object().ok_or("not a JSON object")?;
    let field = |name: &str| obj.get(name).and_then(Value::as_str);
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("kid is not a string"),
    };
    if let Some(u) = obj.get("use") {
        if u.as_str() != Some("sig") {
            return Err("use is not \"sig\"");
        }
    }
    if let Some(ops) = obj.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
        if !verify {
            return Err("key_ops does not include \"verify\"");
        }
    }
    // The key's public bytes in the form aws-lc parses: DER RSAPublicKey, an uncompressed EC
    // point, or the raw Ed25519 key.
    let (family, public): (&[Algorithm], Vec<u8>) = match field("kty") {
        Some("RSA") => {
            let n = field("n").ok_or("RSA key without n")?;
            let e = field("e").ok_or("RSA key without e")?;
            let n_bytes = URL_SAFE_NO_PAD
                .decode(n)
                .map_err(|_| "RSA n is not base64url")?;
            let e_bytes = URL_SAFE_NO_PAD
                .decode(e)
                .map_err(|_| "RSA e is not base64url")?;
            let significant = n_bytes.iter().skip_while(|&&b| b == 0).count();
            if significant * 8 < MIN_RSA_BITS {
                return Err("RSA modulus shorter than 2048 bits");
            }
            (RSA_ALGORITHMS, rsa_public_key_der(&n_bytes, &e_bytes))
        }
        Some("EC") => {
            let (alg, len): (&[Algorithm], usize) = match field("crv") {
                Some("P-256") => (&[Algorithm::ES256], 32),
                Some("P-384") => (&[Algorithm::ES384], 48),
                _ => return Err("unsupported EC curve"),
            };
            let x = field("x").ok_or("EC key without x")?;
            let y = field("y").ok_or("EC key without y")?;
            let coordinate = |s: &str| URL_SAFE_NO_PAD.decode(s).ok().filter(|b| b.len() == len);
            let (Some(xb), Some(yb)) = (coordinate(x), coordinate(y)) else {
                return Err("EC coordinates have the wrong length or encoding");
            };
            (alg, [&[0x04][..], &xb, &yb].concat())
        }
        Some("OKP") => {
            if field("crv") != Some("Ed25519") {
                return Err("unsupported OKP curve");
            }
            let x = field("x").ok_or("OKP key without x")?;
            let Some(xb) = URL_SAFE_NO_PAD.decode(x).ok().filter(|b| b.len() == 32) else {
                return Err("Ed25519 x has the wrong length or encoding");
            };
            (&[Algorithm::EdDSA], xb)
        }
        Some("oct") => return Err("symmetric keys are never taken from a JWKS"),
        _ => return Err("unsupported kty"),
    };
    let algorithms: Vec<Algorithm> = match obj.get("alg") {
        None => family
            .iter()
            .copied()
            .filter(|a| allowed.contains(a))
            .collect(),
        Some(Value::String(name)) => {
            let alg: Algorithm = name.parse().map_err(|_| "unknown alg")?;
            if !family.contains(&alg) {
                return Err("alg does not match the key type");
            }
            if !allowed.contains(&alg) {
                return Err("alg is not in the provider's allow-list");
            }
            vec![alg]
        }
        Some(_) => return Err("alg is not a string"),
    };
    if algorithms.is_empty() {
        return Err("no allowed algorithm for this key type");
    }
    // aws-lc validates the key here (RSA_check_key, point on the curve): a key it refuses is
    // skipped like any other malformed key.
    let parsed = algorithms
        .iter()
        .filter_map(|&a| aws_algorithm(a).map(|v| (a, v)))
        .map(|(a, v)| {
            ParsedPublicKey::new(v, &public)
                .map(|p| (a, p))
                .map_err(|_| "key rejected by the crypto library")
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VerifyKey {
        kid,
        algorithms,
        verifier: Verifier::Public(parsed),
    })
}

#[cfg(test)]
mod tests;
