//! Proofs made here with the fixture keys, each check failing on its own.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");
const NOW: f64 = 1_800_000_000.0;
const TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
/// RFC 9449 §7.1's `ath` for `TOKEN` (also `hashlib.sha256` in Python).
const ATH: &str = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo";
const HTU: &str = "https://api.example.com/orders/7";

fn ec() -> (EncodingKey, Value) {
    let key = EncodingKey::from_ec_pem(&std::fs::read(format!("{FIX}/ec.pem")).unwrap()).unwrap();
    let jwk =
        serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap()).unwrap();
    (key, jwk)
}

fn claims() -> Value {
    json!({"htm": "GET", "htu": HTU, "iat": NOW, "jti": "j-1", "ath": ATH})
}

fn sign(header: Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{sig}")
}

fn proof(claims: &Value) -> String {
    let (key, jwk) = ec();
    sign(
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}),
        claims,
        &key,
        Algorithm::ES256,
    )
}

fn expected() -> Expected<'static> {
    Expected {
        method: &Method::GET,
        htu: HTU,
        access_token: Some(TOKEN),
        algorithms: &[Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA],
        now: NOW,
        max_age: 300.0,
        leeway: 5.0,
    }
}

#[test]
fn a_good_proof_names_its_key() {
    let p = check_proof(&proof(&claims()), &expected()).unwrap();
    let (_, jwk) = ec();
    assert_eq!(p.jkt, thumbprint(&jwk).unwrap());
    assert_eq!((p.jti.as_str(), p.iat), ("j-1", NOW));
    // The request URI is compared in normal form.
    let mut c = claims();
    c["htu"] = json!("HTTPS://API.example.com:443/orders/./7?page=2#x");
    assert!(check_proof(&proof(&c), &expected()).is_ok());
    // jsonwebtoken's own header type makes the same proof (a second writer).
    let (key, jwk) = ec();
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("dpop+jwt".into());
    h.jwk = Some(serde_json::from_value(jwk).unwrap());
    let t = jsonwebtoken::encode(&h, &claims(), &key).unwrap();
    assert!(check_proof(&t, &expected()).is_ok());
}

#[test]
fn each_check_refuses() {
    let bad = |c: Value| check_proof(&proof(&c), &expected());
    let with = |k: &str, v: Value| {
        let mut c = claims();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    assert_eq!(bad(with("htm", json!("POST"))), Err(BadProof::Method));
    assert_eq!(bad(with("htm", json!("get"))), Err(BadProof::Method));
    assert_eq!(
        bad(with("htu", json!("https://api.example.com/orders/8"))),
        Err(BadProof::Uri)
    );
    assert_eq!(
        bad(with(
            "htu",
            json!("https://api.example.com/orders/%2e%2e/admin")
        )),
        Err(BadProof::Uri)
    );
    assert_eq!(
        bad(with("htu", json!("http://api.example.com/orders/7"))),
        Err(BadProof::Uri)
    );
    assert_eq!(
        bad(with("iat", json!(NOW - 400.0))),
        Err(BadProof::Time),
        "stale"
    );
    assert_eq!(
        bad(with("iat", json!(NOW + 60.0))),
        Err(BadProof::Time),
        "future"
    );
    assert_eq!(bad(with("iat", json!("1800000000"))), Err(BadProof::Time));
    assert_eq!(bad(without("iat")), Err(BadProof::Time));
    assert_eq!(bad(with("ath", json!("AAAA"))), Err(BadProof::TokenHash));
    assert_eq!(bad(without("ath")), Err(BadProof::TokenHash));
    assert_eq!(bad(without("jti")), Err(BadProof::Id));
    assert_eq!(bad(with("jti", json!("x".repeat(300)))), Err(BadProof::Id));
    // The header.
    let (key, jwk) = ec();
    let signed = |h: Value| check_proof(&sign(h, &claims(), &key, Algorithm::ES256), &expected());
    assert_eq!(
        signed(json!({"typ": "JWT", "alg": "ES256", "jwk": jwk})),
        Err(BadProof::Type)
    );
    assert_eq!(
        signed(json!({"alg": "ES256", "jwk": jwk})),
        Err(BadProof::Type)
    );
    assert_eq!(
        signed(json!({"typ": "dpop+jwt", "alg": "ES256"})),
        Err(BadProof::Key)
    );
    for crit in [json!(["exp"]), json!([]), json!("x"), json!(null)] {
        assert_eq!(
            signed(json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk, "crit": crit})),
            Err(BadProof::Critical),
            "crit {crit}"
        );
    }
    let mut private = jwk.clone();
    private["d"] = json!("c2VjcmV0");
    assert_eq!(
        signed(json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private})),
        Err(BadProof::Key)
    );
    assert_eq!(
        signed(json!({"typ": "dpop+jwt", "alg": "none", "jwk": jwk})),
        Err(BadProof::Algorithm)
    );
    assert_eq!(
        signed(json!({"typ": "dpop+jwt", "alg": "PS256", "jwk": jwk})),
        Err(BadProof::Algorithm),
        "not in the list"
    );
    // A symmetric proof: HS256 with a key in the header is refused before anything else.
    let hmac = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
    let sym = sign(
        json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "MDEy"}}),
        &claims(),
        &hmac,
        Algorithm::HS256,
    );
    let mut e = expected();
    let with_hs = [Algorithm::HS256, Algorithm::ES256];
    e.algorithms = &with_hs;
    assert_eq!(check_proof(&sym, &e), Err(BadProof::Algorithm));
    // Another key's signature over a header naming this key.
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIX}/rsa.pem")).unwrap()).unwrap();
    let rsa_jwk =
        serde_json::to_value(Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap()).unwrap();
    let other =
        EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIX}/rsa2.pem")).unwrap()).unwrap();
    let forged = sign(
        json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": rsa_jwk}),
        &claims(),
        &other,
        Algorithm::RS256,
    );
    assert_eq!(check_proof(&forged, &expected()), Err(BadProof::Signature));
    let good_rsa = sign(
        json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": rsa_jwk}),
        &claims(),
        &rsa,
        Algorithm::RS256,
    );
    assert!(check_proof(&good_rsa, &expected()).is_ok());
    // Not a JWS at all.
    for junk in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
        assert_eq!(
            check_proof(junk, &expected()),
            Err(BadProof::Malformed),
            "{junk}"
        );
    }
}

/// Server nonces: good in their step and the next, and only this state's own.
#[test]
fn nonces_are_this_states_own_and_short_lived() {
    use super::DpopState;
    let s = DpopState::new(1000);
    let t = 1_800_000_015.0; // inside a 30 s step
    let n = s.nonce(t);
    assert!(s.nonce_is_fresh(&n, t));
    assert!(s.nonce_is_fresh(&n, t + 30.0), "the next step");
    assert!(!s.nonce_is_fresh(&n, t + 60.0), "two steps on");
    assert!(!s.nonce_is_fresh(&n, t - 30.0), "from the future");
    // One bit of the tag flipped, or of the step: refused.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let raw = b64.decode(&n).unwrap();
    for i in [0, 7, 8, 23] {
        let mut bad = raw.clone();
        bad[i] ^= 1;
        assert!(!s.nonce_is_fresh(&b64.encode(&bad), t), "byte {i} flipped");
    }
    // Another process's nonce, a short or long one, garbage.
    assert!(!DpopState::new(1000).nonce_is_fresh(&n, t));
    assert!(!s.nonce_is_fresh(&b64.encode(&raw[..23]), t));
    let mut long = raw.clone();
    long.push(0);
    assert!(!s.nonce_is_fresh(&b64.encode(&long), t));
    assert!(!s.nonce_is_fresh("not base64!", t));
    assert!(!s.nonce_is_fresh("", t));
}
