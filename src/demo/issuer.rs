//! A development token issuer: fresh keys at start, a JWKS over HTTP, tokens minted on demand.
//! For the demo only; it has no login, no clients and no persistence.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use authgate::httpd::{respond, Handler};

pub struct DevIssuer {
    issuer: String,
    keys: Vec<(String, Algorithm, EncodingKey)>,
    jwks: String,
}

impl DevIssuer {
    /// Generates an RSA-2048 (`rsa`, RS256), a P-256 (`ec`, ES256) and an Ed25519 (`ed`,
    /// EdDSA) key.
    pub fn generate(issuer: &str) -> Result<Self, String> {
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|_| "RSA key generation failed")?;
        let rsa_der = rsa.as_der().map_err(|_| "RSA key encoding failed")?;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "EC key generation failed")?;
        let ed =
            Ed25519KeyPair::generate_pkcs8v1(&rng).map_err(|_| "Ed25519 key generation failed")?;
        let keys = vec![
            (
                "rsa".to_owned(),
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(pem(rsa_der.as_ref()).as_bytes()),
            ),
            (
                "ec".to_owned(),
                Algorithm::ES256,
                EncodingKey::from_ec_pem(pem(ec.as_ref()).as_bytes()),
            ),
            (
                "ed".to_owned(),
                Algorithm::EdDSA,
                EncodingKey::from_ed_pem(pem(ed.as_ref()).as_bytes()),
            ),
        ];
        let mut built = Vec::new();
        let mut jwks = Vec::new();
        for (kid, alg, key) in keys {
            let key = key.map_err(|e| format!("{kid}: {e}"))?;
            let mut jwk = Jwk::from_encoding_key(&key, alg).map_err(|e| format!("{kid}: {e}"))?;
            jwk.common.key_id = Some(kid.clone());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            jwks.push(jwk);
            built.push((kid, alg, key));
        }
        let jwks = serde_json::json!({ "keys": jwks }).to_string();
        Ok(Self {
            issuer: issuer.to_owned(),
            keys: built,
            jwks,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs `claims` with the key `kid` (`rsa`, `ec` or `ed`).
    pub fn mint(&self, kid: &str, claims: &Value) -> String {
        let Some((kid, alg, key)) = self.keys.iter().find(|(k, _, _)| k == kid) else {
            return String::new();
        };
        let mut header = Header::new(*alg);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, key).unwrap_or_default()
    }

    /// Serves `/jwks.json`.
    pub fn handler(self: &Arc<Self>) -> Handler {
        let me = self.clone();
        Arc::new(move |parts, _| {
            let me = me.clone();
            Box::pin(async move {
                match parts.uri.path() {
                    "/jwks.json" => respond(200, "application/json", me.jwks.clone()),
                    _ => respond(404, "text/plain", "not found\n"),
                }
            })
        })
    }
}

fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
