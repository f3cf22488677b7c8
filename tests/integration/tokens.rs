//! Token extraction and validation: every algorithm, every registered claim, every header
//! trick, and the RFC 6750 answers.

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

use crate::support::tokens::TokenBuilder;
use crate::support::*;

fn assert_invalid(r: &Resp, reason: &str) {
    assert_eq!(r.status, 401, "{reason}: {r:?}");
    assert_eq!(r.reason(), reason, "{r:?}");
    let h = r.header("www-authenticate").expect("WWW-Authenticate");
    assert!(
        h.starts_with("Bearer realm=\"authgate\", error=\"invalid_token\", error_description=\""),
        "{h}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["error"], "invalid_token");
    assert!(
        h.contains(&format!(
            "error_description=\"{}\"",
            body["error_description"].as_str().unwrap()
        )),
        "header and body say the same: {h} / {body}"
    );
}

#[test]
fn every_asymmetric_algorithm_verifies() {
    let s = Setup::start();
    let k = &s.keys;
    for (name, b) in [
        ("RS256", k.rs256()),
        ("PS256", k.ps256()),
        ("ES256", k.es256()),
        ("EdDSA", k.eddsa()),
    ] {
        let t = b
            .claims(good_claims(&format!("user-{name}"), "read"))
            .sign();
        let r = s.gw.get_with("/api/orders", &t);
        assert_eq!(r.status, 200, "{name}: {r:?}");
        assert_eq!(s.upstream.last().one("x-user-id"), format!("user-{name}"));
    }
}

#[test]
fn missing_token_is_401_without_error_code() {
    let s = Setup::start();
    let r = get(s.gw.addr, "/api/orders", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"authgate\"")
    );
    assert_eq!(r.reason(), "missing_token");
    // Another scheme is not a bearer token.
    let r = get(
        s.gw.addr,
        "/api/orders",
        &[("Authorization", "Basic dXNlcjpwdw==")],
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"authgate\"")
    );
    // Tokens in the query string are not accepted.
    let t = s.token("read");
    let r = get(s.gw.addr, &format!("/api/orders?access_token={t}"), &[]);
    assert_eq!(r.reason(), "missing_token", "{r:?}");
}

#[test]
fn scheme_is_case_insensitive_and_two_headers_are_refused() {
    let s = Setup::start();
    let t = s.token("read");
    assert_eq!(
        get(
            s.gw.addr,
            "/api/x",
            &[("Authorization", &format!("bEARER {t}"))]
        )
        .status,
        200
    );
    let before = s.upstream.count();
    let r = get(
        s.gw.addr,
        "/api/x",
        &[
            ("Authorization", &format!("Bearer {t}")),
            ("Authorization", &format!("Bearer {t}")),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.reason(), "multiple_authorization");
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_request\""));
    assert_eq!(s.upstream.count(), before);
}

#[test]
fn registered_claims_are_enforced() {
    let s = Setup::start();
    let k = &s.keys;
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = good_claims("alice", "read");
        f(&mut c);
        k.rs256().claims(c).sign()
    };
    let now = now();
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", with(&|c| c["exp"] = json!(now - 120)), "expired"),
        (
            "nbf in the future",
            with(&|c| c["nbf"] = json!(now + 300)),
            "not_yet_valid",
        ),
        (
            "iat in the future",
            with(&|c| c["iat"] = json!(now + 300)),
            "not_yet_valid",
        ),
        (
            "wrong aud",
            with(&|c| c["aud"] = json!("billing-api")),
            "bad_audience",
        ),
        (
            "aud array without ours",
            with(&|c| c["aud"] = json!(["a", "b"])),
            "bad_audience",
        ),
        (
            "no aud",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            "bad_audience",
        ),
        (
            "wrong iss",
            with(&|c| c["iss"] = json!("https://evil.example.com")),
            "bad_issuer",
        ),
        (
            "no iss",
            with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
            "bad_issuer",
        ),
        (
            "iss differs by a slash",
            with(&|c| c["iss"] = json!(format!("{ISSUER}/"))),
            "bad_issuer",
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "bad_claims",
        ),
        (
            "exp as string",
            with(&|c| c["exp"] = json!((now + 600).to_string())),
            "bad_claims",
        ),
        (
            "nbf as string",
            with(&|c| c["nbf"] = json!("0")),
            "bad_claims",
        ),
        ("exp null", with(&|c| c["exp"] = json!(null)), "bad_claims"),
    ];
    for (what, token, reason) in cases {
        let r = s.gw.get_with("/api/orders", &token);
        assert_eq!(r.status, 401, "{what}: {r:?}");
        assert_eq!(r.reason(), reason, "{what}");
    }
    let ok: Vec<(&str, String)> = vec![
        (
            "exp inside the leeway",
            with(&|c| c["exp"] = json!(now - 10)),
        ),
        (
            "fractional NumericDate",
            with(&|c| c["exp"] = json!(now as f64 + 600.5)),
        ),
        (
            "aud array with ours",
            with(&|c| c["aud"] = json!(["billing-api", AUDIENCE])),
        ),
        ("nbf in the past", with(&|c| c["nbf"] = json!(now - 5))),
        (
            "nbf inside the leeway",
            with(&|c| c["nbf"] = json!(now + 10)),
        ),
        (
            "iat inside the leeway",
            with(&|c| c["iat"] = json!(now + 10)),
        ),
        (
            "fractional nbf and iat",
            with(&|c| {
                c["nbf"] = json!(now as f64 - 0.5);
                c["iat"] = json!(now as f64 - 0.25);
            }),
        ),
    ];
    for (what, token) in ok {
        let r = s.gw.get_with("/api/orders", &token);
        assert_eq!(r.status, 200, "{what}: {r:?}");
    }
}

#[test]
fn algorithm_attacks_fail() {
    let s = Setup::start();
    let k = &s.keys;
    let c = good_claims("mallory", "read write admin");
    let before = s.upstream.count();
    // alg none, in several spellings, with and without a signature.
    for none in ["none", "None", "NONE", "nOnE"] {
        let t = k
            .rs256()
            .header("alg", json!(none))
            .claims(c.clone())
            .unsigned();
        assert_invalid(&s.gw.get_with("/api/x", &t), "alg_not_allowed");
    }
    // HS256 signed with the RSA public key's bytes (the classic key-confusion attack).
    let jwks: serde_json::Value = serde_json::from_str(&k.standard_jwks()).unwrap();
    let n = jwks["keys"][0]["n"].as_str().unwrap().to_owned();
    let confused = EncodingKey::from_secret(n.as_bytes());
    let t = TokenBuilder::new(&confused, Algorithm::HS256)
        .kid("rsa")
        .claims(c.clone())
        .sign();
    assert_invalid(&s.gw.get_with("/api/x", &t), "alg_not_allowed");
    // An algorithm outside the allow-list, with a real signature.
    let t = TokenBuilder::new(&k.rsa, Algorithm::RS512)
        .kid("rsa")
        .claims(c.clone())
        .sign();
    assert_invalid(&s.gw.get_with("/api/x", &t), "alg_not_allowed");
    // The key `rsa` is pinned to RS256 by its JWK: PS256 under that kid fails.
    let t = TokenBuilder::new(&k.rsa, Algorithm::PS256)
        .kid("rsa")
        .claims(c.clone())
        .sign();
    assert_invalid(&s.gw.get_with("/api/x", &t), "alg_not_allowed");
    // An EC kid with an RSA algorithm.
    let t = TokenBuilder::new(&k.rsa, Algorithm::RS256)
        .kid("ec")
        .claims(c.clone())
        .sign();
    assert_invalid(&s.gw.get_with("/api/x", &t), "alg_not_allowed");
    assert_eq!(s.upstream.count(), before);
}

#[test]
fn keys_never_come_from_the_token() {
    let s = Setup::start();
    let k = &s.keys;
    let c = good_claims("mallory", "read");
    // Signed by rsa2 (not in the JWKS), pointing at itself through jwk / jku / x5u / x5c.
    let attacker_jwk = crate::support::tokens::jwk(&k.rsa2, Algorithm::RS256, "rsa", true);
    let variants = [
        ("jwk", attacker_jwk),
        ("jku", json!("http://127.0.0.1:1/attacker.json")),
        ("x5u", json!("http://127.0.0.1:1/attacker.pem")),
        (
            "x5c",
            json!(["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
        ),
    ];
    for (field, value) in variants {
        let t = TokenBuilder::new(&k.rsa2, Algorithm::RS256)
            .kid("rsa")
            .header(field, value)
            .claims(c.clone())
            .sign();
        assert_invalid(&s.gw.get_with("/api/x", &t), "bad_signature");
        // Without a kid: still only the provider's RSA keys are tried.
        let t = TokenBuilder::new(&k.rsa2, Algorithm::RS256)
            .header(field, json!("x"))
            .claims(c.clone())
            .sign();
        assert_invalid(&s.gw.get_with("/api/x", &t), "bad_signature");
    }
}

#[test]
fn crit_unknown_kid_and_kidless_tokens() {
    let s = Setup::start();
    let k = &s.keys;
    let c = good_claims("alice", "read");
    let t = k
        .rs256()
        .header("crit", json!(["exp"]))
        .header("exp", json!(1))
        .claims(c.clone())
        .sign();
    assert_invalid(&s.gw.get_with("/api/x", &t), "crit_unsupported");
    let t = k
        .rs256()
        .header("b64", json!(false))
        .header("crit", json!(["b64"]))
        .claims(c.clone())
        .sign();
    assert_invalid(&s.gw.get_with("/api/x", &t), "crit_unsupported");
    let t = k.rs256().kid("nope").claims(c.clone()).sign();
    assert_invalid(&s.gw.get_with("/api/x", &t), "unknown_kid");
    // No kid: tried against the provider's keys of the token's algorithm.
    let t = k.es256().no_kid().claims(c.clone()).sign();
    assert_eq!(s.gw.get_with("/api/x", &t).status, 200);
    let t = k.eddsa().no_kid().claims(c.clone()).sign();
    assert_eq!(s.gw.get_with("/api/x", &t).status, 200);
}

#[test]
fn malformed_tokens_are_401_never_5xx() {
    let s = Setup::start();
    let good = s.token("read");
    let parts: Vec<&str> = good.split('.').collect();
    let tampered_claims = format!("{}.{}.{}", parts[0], b64(br#"{"sub":"admin"}"#), parts[2]);
    let bad_sig = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        &parts[2][..parts[2].len() - 4]
    );
    let cases = [
        ("abc".to_owned(), "malformed_token"),
        ("a.b".to_owned(), "malformed_token"),
        ("a.b.c.d".to_owned(), "malformed_token"),
        ("!!!.b.c".to_owned(), "malformed_token"),
        (
            format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
            "malformed_token",
        ),
        (
            format!("{}.{}.{}", b64(b"[1,2]"), parts[1], parts[2]),
            "malformed_token",
        ),
        (
            format!("{}.{}.{}", parts[0], b64(b"[]"), parts[2]),
            "malformed_token",
        ),
        (
            format!("{}.{}.{}", parts[0], b64(b"{\"exp\":1e999}"), parts[2]),
            "malformed_token",
        ),
        (
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            "malformed_token",
        ),
        (tampered_claims, "bad_signature"),
        (bad_sig, "bad_signature"),
        (format!("{}.{}.", parts[0], parts[1]), "bad_signature"),
    ];
    for (token, reason) in cases {
        let r = s.gw.get_with("/api/x", &token);
        assert_eq!(r.status, 401, "{token}: {r:?}");
        assert_eq!(r.reason(), reason, "{token}");
    }
    let big = format!("{}.{}.{}", parts[0], "A".repeat(9000), parts[2]);
    assert_invalid(&s.gw.get_with("/api/x", &big), "token_too_large");
    let r = get(s.gw.addr, "/api/x", &[("Authorization", "Bearer a,b.c")]);
    assert_invalid(&r, "malformed_token");
}

fn b64(v: &[u8]) -> String {
    crate::support::tokens::b64(v)
}

#[test]
fn scopes_and_claim_matchers_give_403() {
    let s = Setup::start();
    let k = &s.keys;
    let mut c = good_claims("bob", "read writer");
    let t = k.rs256().claims(c.clone()).sign();
    let auth = format!("Bearer {t}");
    let r =
        crate::support::http::request(s.gw.addr, "DELETE", "/api/x", &[("Authorization", &auth)]);
    assert_eq!(r.status, 403, "'writer' is not 'write': {r:?}");
    assert_eq!(r.reason(), "insufficient_scope");
    let h = r.header("www-authenticate").unwrap();
    assert!(
        h.contains("error=\"insufficient_scope\"") && h.contains("scope=\"write\""),
        "{h}"
    );
    // scp array works as well as the scope string.
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["read", "write"]);
    let t = k.rs256().claims(c).sign();
    let r = crate::support::http::request(
        s.gw.addr,
        "DELETE",
        "/api/x",
        &[("Authorization", &format!("Bearer {t}"))],
    );
    assert_eq!(r.status, 200, "{r:?}");
    // Claim matcher: org.tier must be gold or platinum.
    let mut c = good_claims("bob", "admin");
    c["org"]["tier"] = json!("silver");
    let t = k.rs256().claims(c.clone()).sign();
    let r = get(
        s.gw.addr,
        "/admin/x",
        &[
            ("Host", "admin.example.com"),
            ("Authorization", &format!("Bearer {t}")),
        ],
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.reason(), "claim_mismatch");
    c["org"]["tier"] = json!("platinum");
    let t = k.rs256().claims(c.clone()).sign();
    let r = get(
        s.gw.addr,
        "/admin/x",
        &[
            ("Host", "admin.example.com"),
            ("Authorization", &format!("Bearer {t}")),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    c.as_object_mut().unwrap().remove("org");
    let t = k.rs256().claims(c).sign();
    let r = get(
        s.gw.addr,
        "/admin/x",
        &[
            ("Host", "admin.example.com"),
            ("Authorization", &format!("Bearer {t}")),
        ],
    );
    assert_eq!(r.reason(), "claim_mismatch");
}

#[test]
fn optional_auth_route() {
    let s = Setup::start();
    let r = get(s.gw.addr, "/opt/x", &[("X-User-Id", "spoofed")]);
    assert_eq!(r.status, 200, "anonymous: {r:?}");
    assert!(
        !s.upstream.last().has("x-user-id"),
        "spoofed header must not pass"
    );
    let t = s.token("read");
    assert_eq!(s.gw.get_with("/opt/x", &t).status, 200);
    assert_eq!(s.upstream.last().one("x-user-id"), "alice");
    let expired = s
        .keys
        .rs256()
        .claims(json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "a", "exp": now() - 3600}))
        .sign();
    assert_invalid(&s.gw.get_with("/opt/x", &expired), "expired");
}

#[test]
fn tokens_never_reach_the_logs() {
    // Even at debug level: pingora's own debug lines would dump request headers.
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let gw = Gateway::start_with_log(&standard_config(&jwks.url(), &upstream.url()), "debug");
    gw.wait_ready();
    let s = Setup {
        keys,
        jwks,
        upstream,
        gw,
    };
    let good = s.token("read");
    let expired = s
        .keys
        .rs256()
        .claims(json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "a", "exp": now() - 3600}))
        .sign();
    let garbage =
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXRoYXQtbXVzdC1ub3QtYmUtbG9nZ2Vk";
    for t in [&good, &expired, &garbage.to_owned()] {
        s.gw.get_with("/api/x", t);
        // Tokens in a query string are not accepted, and not logged either.
        get(s.gw.addr, &format!("/public/x?access_token={t}"), &[]);
        get(s.gw.addr, &format!("/api/x?access_token={t}"), &[]);
        get(s.gw.addr, &format!("/api/x;{t}"), &[]);
    }
    assert!(s
        .gw
        .wait_log("authgate::access", std::time::Duration::from_secs(5)));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let logs = s.gw.logs();
    for t in [&good, &expired, &garbage.to_owned()] {
        let sig = t.rsplit('.').next().unwrap();
        assert!(!logs.contains(sig), "a token reached the logs");
        let payload = t.split('.').nth(1).unwrap();
        assert!(!logs.contains(payload), "a token payload reached the logs");
    }
    assert!(
        logs.contains("\"reason\":\"expired\""),
        "the access log says why: {logs}"
    );
}

#[test]
fn max_token_lifetime_and_required_typ() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let up = Upstream::start();
    let config = standard_config(&jwks.url(), &up.url()).replace(
        "jwks_refetch_cooldown = \"1s\"",
        "jwks_refetch_cooldown = \"1s\"\nmax_token_lifetime = \"1h\"\nrequired_typ = \"at+jwt\"",
    );
    let gw = Gateway::start(&config);
    gw.wait_ready();
    let now = now();
    let mint = |typ: &str, f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = good_claims("alice", "read");
        f(&mut c);
        keys.rs256().header("typ", json!(typ)).claims(c).sign()
    };
    assert_eq!(gw.get_with("/api/x", &mint("at+jwt", &|_| {})).status, 200);
    assert_eq!(
        gw.get_with("/api/x", &mint("application/AT+JWT", &|_| {}))
            .status,
        200
    );
    assert_invalid(&gw.get_with("/api/x", &mint("JWT", &|_| {})), "bad_typ");
    let no_typ = keys.rs256().claims(good_claims("alice", "read"));
    let no_typ = {
        let mut b = no_typ;
        b = b.header("typ", serde_json::Value::Null);
        b.sign()
    };
    assert_invalid(&gw.get_with("/api/x", &no_typ), "bad_typ");
    let long = mint("at+jwt", &|c| {
        c["iat"] = json!(now - 60);
        c["exp"] = json!(now + 2 * 3600);
    });
    assert_invalid(&gw.get_with("/api/x", &long), "lifetime_too_long");
    let no_iat = mint("at+jwt", &|c| {
        c.as_object_mut().unwrap().remove("iat");
    });
    assert_invalid(&gw.get_with("/api/x", &no_iat), "lifetime_too_long");
    let m = gw.metrics();
    assert!(
        metric_value(
            &m,
            "authgate_token_remaining_lifetime_seconds_count{provider=\"corp\"}"
        ) >= 2.0,
        "{m}"
    );
}
