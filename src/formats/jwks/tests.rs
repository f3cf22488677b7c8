use serde_json::json;

use super::*;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");

fn fixture() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(format!("{FIX}/jwks.json")).unwrap()).unwrap()
}

fn key(kid: &str) -> serde_json::Value {
    fixture()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap()
        .clone()
}

const ALL: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

fn parse(
    keys: Vec<serde_json::Value>,
    allowed: &[Algorithm],
) -> Result<(KeySet, Vec<SkippedKey>), JwksError> {
    KeySet::from_jwks(json!({ "keys": keys }).to_string().as_bytes(), allowed)
}

#[test]
fn fixture_parses_with_pinned_algorithms() {
    let (set, skipped) = parse(fixture()["keys"].as_array().unwrap().clone(), ALL).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(set.len(), 4);
    assert!(matches!(
        set.candidates(Some("rsa"), Algorithm::RS256),
        Candidates::One(_)
    ));
    assert!(matches!(
        set.candidates(Some("rsa"), Algorithm::PS256),
        Candidates::WrongAlgorithm
    ));
    assert!(matches!(
        set.candidates(Some("ec"), Algorithm::RS256),
        Candidates::WrongAlgorithm
    ));
    assert!(matches!(
        set.candidates(Some("zz"), Algorithm::RS256),
        Candidates::UnknownKid
    ));
    match set.candidates(None, Algorithm::ES256) {
        Candidates::Several(k) => assert_eq!(k.len(), 1),
        _ => panic!("kidless ES256 should find the EC key"),
    }
}

#[test]
fn bad_keys_are_skipped_with_a_reason() {
    let mut no_alg = key("rsa");
    no_alg.as_object_mut().unwrap().remove("alg");
    no_alg["kid"] = json!("rsa-any");
    let mut enc = key("ec");
    enc["use"] = json!("enc");
    enc["kid"] = json!("enc");
    let mut ops = key("ed");
    ops["key_ops"] = json!(["encrypt"]);
    ops["kid"] = json!("ops");
    let mut mismatch = key("ec");
    mismatch["alg"] = json!("RS256");
    mismatch["kid"] = json!("mismatch");
    let mut short = key("ec");
    short["x"] = json!("AAAA");
    short["kid"] = json!("short");
    let mut p384 = key("ec");
    p384["crv"] = json!("P-521");
    p384["kid"] = json!("p521");
    let keys = vec![
        no_alg,
        enc,
        ops,
        mismatch,
        short,
        p384,
        json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
        json!({"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"}),
        json!("not an object"),
        json!({"kty": "RSA", "kid": 7, "n": "x", "e": "AQAB"}),
    ];
    let (set, skipped) = parse(keys, ALL).unwrap();
    assert_eq!(set.len(), 1, "only rsa-any survives");
    let reasons: Vec<&str> = skipped.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(
        reasons,
        vec![
            "use is not \"sig\"",
            "key_ops does not include \"verify\"",
            "alg does not match the key type",
            "EC coordinates have the wrong length or encoding",
            "unsupported EC curve",
            "symmetric keys are never taken from a JWKS",
            "RSA modulus shorter than 2048 bits",
            "not a JSON object",
            "kid is not a string",
        ]
    );
    // Without its own alg, an RSA key verifies the allow-listed RSA algorithms.
    assert!(matches!(
        set.candidates(Some("rsa-any"), Algorithm::PS256),
        Candidates::One(_)
    ));
    // An `alg` outside the allow-list leaves no usable key: the document is refused.
    let only_pinned_elsewhere = parse(vec![key("rsa")], &[Algorithm::PS256, Algorithm::ES256]);
    assert!(matches!(
        only_pinned_elsewhere,
        Err(JwksError::NoUsableKeys(1))
    ));
}

#[test]
fn whole_document_errors() {
    assert!(matches!(
        KeySet::from_jwks(b"[]", ALL),
        Err(JwksError::Shape(_))
    ));
    assert!(matches!(
        KeySet::from_jwks(b"{\"keys\": {}}", ALL),
        Err(JwksError::Shape(_))
    ));
    assert!(matches!(
        KeySet::from_jwks(b"<html>", ALL),
        Err(JwksError::Shape(_))
    ));
    assert!(matches!(
        parse(vec![], ALL),
        Err(JwksError::NoUsableKeys(0))
    ));
    let dup = parse(vec![key("rsa"), key("rsa")], ALL);
    assert_eq!(dup.err(), Some(JwksError::DuplicateKid("rsa".into())));
}

#[test]
fn kidless_candidates_are_capped() {
    let keys: Vec<_> = (0..10)
        .map(|i| {
            let mut k = key("rsa");
            k["kid"] = json!(format!("k{i}"));
            k
        })
        .collect();
    let (set, _) = parse(keys, ALL).unwrap();
    match set.candidates(None, Algorithm::RS256) {
        Candidates::Several(k) => assert_eq!(k.len(), MAX_KIDLESS_CANDIDATES),
        _ => panic!(),
    }
}

/// Every asymmetric algorithm goes through the keys parsed once with aws-lc: each verifies its
/// own signatures, refuses a changed message, and never one of a sibling algorithm.
#[test]
fn parsed_keys_verify_every_rsa_algorithm_and_nothing_else() {
    let pem = std::fs::read(format!("{FIX}/rsa.pem")).unwrap();
    let signer = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut jwk = key("rsa");
    jwk.as_object_mut().unwrap().remove("alg");
    let rsa_algs = RSA_ALGORITHMS;
    let (set, skipped) = parse(vec![jwk], rsa_algs).unwrap();
    assert!(skipped.is_empty());
    let message = b"header.payload";
    for &alg in rsa_algs {
        let sig = jsonwebtoken::crypto::sign(message, &signer, alg).unwrap();
        let Candidates::One(k) = set.candidates(Some("rsa"), alg) else {
            panic!("{alg:?}: key not found");
        };
        assert!(k.verify(&sig, message, alg), "{alg:?}");
        assert!(
            !k.verify(&sig, b"header.payloaD", alg),
            "{alg:?}: changed message"
        );
        for other in rsa_algs.iter().filter(|&&o| o != alg) {
            assert!(!k.verify(&sig, message, *other), "{alg:?} as {other:?}");
        }
        assert!(!k.verify("not base64!", message, alg));
    }
    // The key pinned to RS256 refuses a PS256 signature even though it is the same key pair.
    let (pinned, _) = parse(vec![key("rsa")], rsa_algs).unwrap();
    let ps = jsonwebtoken::crypto::sign(message, &signer, Algorithm::PS256).unwrap();
    let Candidates::One(k) = pinned.candidates(Some("rsa"), Algorithm::RS256) else {
        panic!("rsa key");
    };
    assert!(!k.verify(&ps, message, Algorithm::PS256));
}

#[test]
fn rsa_public_key_der_is_canonical() {
    // A modulus whose top bit is set gets a leading zero; leading zeros of the input go.
    let der = rsa_public_key_der(&[0x00, 0x80, 0x01], &[0x01, 0x00, 0x01]);
    assert_eq!(
        der,
        [0x30, 0x0a, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x03, 0x01, 0x00, 0x01]
    );
    // Long-form lengths for a 2048-bit modulus.
    let der = rsa_public_key_der(&[0xff; 256], &[0x01, 0x00, 0x01]);
    assert_eq!(&der[..4], &[0x30, 0x82, 0x01, 0x0a]);
    assert_eq!(&der[4..8], &[0x02, 0x82, 0x01, 0x01]);
}

/// The RSA algorithms are a slice of the asymmetric list: a reordering must not change them.
#[test]
fn rsa_algorithms_are_exactly_rs_and_ps() {
    use jsonwebtoken::Algorithm as A;
    assert_eq!(
        RSA_ALGORITHMS,
        &[A::RS256, A::RS384, A::RS512, A::PS256, A::PS384, A::PS512]
    );
}
