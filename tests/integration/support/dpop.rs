//! DPoP proofs (RFC 9449 §4.2) made by the test, with the committed key fixtures, and the
//! RFC 7638 thumbprint a bound token's `cnf.jkt` carries. Written apart from the gateway's
//! code (no `authgate::` import): a bug there cannot hide in a shared helper.

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::tokens::{b64, jwk, TokenBuilder};

/// A client's DPoP key: the private half that signs, the public JWK that rides in proofs.
pub struct DpopKey<'k> {
    pub key: &'k EncodingKey,
    pub alg: Algorithm,
    pub jwk: Value,
}

impl<'k> DpopKey<'k> {
    pub fn new(key: &'k EncodingKey, alg: Algorithm) -> Self {
        let mut jwk = jwk(key, alg, "unused", false);
        let o = jwk.as_object_mut().unwrap();
        for member in ["kid", "use", "alg"] {
            o.remove(member);
        }
        Self { key, alg, jwk }
    }

    /// RFC 7638: SHA-256 over the required members, sorted, no whitespace.
    pub fn thumbprint(&self) -> String {
        let j = &self.jwk;
        let required: &[&str] = match j["kty"].as_str().unwrap() {
            "EC" => &["crv", "kty", "x", "y"],
            "RSA" => &["e", "kty", "n"],
            "OKP" => &["crv", "kty", "x"],
            other => panic!("kty {other}"),
        };
        let members: Vec<String> = required
            .iter()
            .map(|m| format!("\"{m}\":\"{}\"", j[*m].as_str().unwrap()))
            .collect();
        b64(&Sha256::digest(
            format!("{{{}}}", members.join(",")).as_bytes(),
        ))
    }

    /// A proof for `method` `htu` with a fresh `jti`, `iat` now, and `ath` of `token`.
    pub fn proof(&self, method: &str, htu: &str, token: Option<&str>) -> String {
        self.builder(method, htu, token).sign()
    }

    /// The parts of a proof, for tests that change one before signing.
    pub fn builder(&self, method: &str, htu: &str, token: Option<&str>) -> TokenBuilder<'k> {
        let mut claims = json!({
            "jti": fresh_jti(),
            "htm": method,
            "htu": htu,
            "iat": super::now(),
        });
        if let Some(t) = token {
            claims["ath"] = json!(ath(t));
        }
        TokenBuilder::new(self.key, self.alg)
            .no_kid()
            .header("typ", json!("dpop+jwt"))
            .header("jwk", self.jwk.clone())
            .claims(claims)
    }
}

/// base64url(SHA-256(token)).
pub fn ath(token: &str) -> String {
    b64(&Sha256::digest(token.as_bytes()))
}

/// A `jti` no other proof of this process has.
pub fn fresh_jti() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "jti-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The RFC 8705 `x5t#S256` of a PEM certificate file in the TLS fixtures.
pub fn x5t_s256(fixture: &str) -> String {
    b64(&Sha256::digest(super::cert_der(fixture)))
}
