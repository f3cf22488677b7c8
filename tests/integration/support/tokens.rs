//! Tokens signed with the committed fixtures (`tests/fixtures/keys`), and JWKS documents of
//! their public halves. Headers are written by hand so tests can send what no honest issuer
//! would (`alg: none`, `crit`, an embedded `jwk`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use super::fixtures;

pub struct Keys {
    pub rsa: EncodingKey,
    pub rsa2: EncodingKey,
    pub ec: EncodingKey,
    pub ed: EncodingKey,
    pub hmac: Vec<u8>,
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("keys").join(name)).expect("fixture")
}

impl Keys {
    pub fn load() -> Keys {
        Keys {
            rsa: EncodingKey::from_rsa_pem(&read("rsa.pem")).expect("rsa"),
            rsa2: EncodingKey::from_rsa_pem(&read("rsa2.pem")).expect("rsa2"),
            ec: EncodingKey::from_ec_pem(&read("ec.pem")).expect("ec"),
            ed: EncodingKey::from_ed_pem(&read("ed.pem")).expect("ed"),
            hmac: read("hmac.secret"),
        }
    }

    /// JWKS with `rsa` (kid rsa, alg RS256), `rsa-ps` (the same RSA key, alg PS256), `ec`
    /// (ES256) and `ed` (EdDSA).
    pub fn standard_jwks(&self) -> String {
        jwks_of(&[
            jwk(&self.rsa, Algorithm::RS256, "rsa", true),
            jwk(&self.rsa, Algorithm::PS256, "rsa-ps", true),
            jwk(&self.ec, Algorithm::ES256, "ec", true),
            jwk(&self.ed, Algorithm::EdDSA, "ed", true),
        ])
    }

    pub fn rs256(&self) -> TokenBuilder<'_> {
        TokenBuilder::new(&self.rsa, Algorithm::RS256).kid("rsa")
    }
    pub fn ps256(&self) -> TokenBuilder<'_> {
        TokenBuilder::new(&self.rsa, Algorithm::PS256).kid("rsa-ps")
    }
    pub fn es256(&self) -> TokenBuilder<'_> {
        TokenBuilder::new(&self.ec, Algorithm::ES256).kid("ec")
    }
    pub fn eddsa(&self) -> TokenBuilder<'_> {
        TokenBuilder::new(&self.ed, Algorithm::EdDSA).kid("ed")
    }
}

/// The public JWK of `key`, with `kid`, `use: sig` and (if `with_alg`) `alg`.
pub fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str, with_alg: bool) -> Value {
    let j = Jwk::from_encoding_key(key, alg).expect("jwk");
    let mut v = serde_json::to_value(j).expect("jwk json");
    v["kid"] = json!(kid);
    v["use"] = json!("sig");
    if !with_alg {
        v.as_object_mut().unwrap().remove("alg");
    }
    v
}

pub fn jwks_of(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

pub fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// Builds and signs a compact JWS.
pub struct TokenBuilder<'k> {
    key: &'k EncodingKey,
    alg: Algorithm,
    header: Value,
    claims: Value,
}

impl<'k> TokenBuilder<'k> {
    pub fn new(key: &'k EncodingKey, alg: Algorithm) -> Self {
        let name = serde_json::to_value(alg).unwrap();
        Self {
            key,
            alg,
            header: json!({"typ": "JWT", "alg": name}),
            claims: json!({}),
        }
    }
    pub fn kid(mut self, kid: &str) -> Self {
        self.header["kid"] = json!(kid);
        self
    }
    pub fn no_kid(mut self) -> Self {
        self.header.as_object_mut().unwrap().remove("kid");
        self
    }
    /// Sets a header field (the signature still uses the builder's key and algorithm).
    pub fn header(mut self, name: &str, value: Value) -> Self {
        self.header[name] = value;
        self
    }
    pub fn claims(mut self, claims: Value) -> Self {
        self.claims = claims;
        self
    }
    pub fn sign(&self) -> String {
        let message = format!(
            "{}.{}",
            b64(self.header.to_string().as_bytes()),
            b64(self.claims.to_string().as_bytes())
        );
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), self.key, self.alg).expect("sign");
        format!("{message}.{sig}")
    }
    /// Header and claims with an empty signature, as `alg: none` tokens are.
    pub fn unsigned(&self) -> String {
        format!(
            "{}.{}.",
            b64(self.header.to_string().as_bytes()),
            b64(self.claims.to_string().as_bytes())
        )
    }
}
