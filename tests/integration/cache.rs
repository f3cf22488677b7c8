//! The verified-token cache: a returning token skips the signature check, and never outlives
//! what made it valid: a revoked token, a token whose key was rotated out, an expired token
//! and a token a reloaded config no longer accepts are refused even while cached.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::support::tokens::{jwk, jwks_of};
use crate::support::*;

fn lookups(gw: &Gateway, result: &str) -> f64 {
    metric_value(
        &gw.metrics(),
        &format!("authgate_token_cache_lookups_total{{result=\"{result}\"}}"),
    )
}

/// A gateway whose provider refreshes keys every second and reads a revocation file.
fn start(jwks: &JwksServer, up: &Upstream, extra: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("revoked.toml"), "jti = []\n").unwrap();
    let config = standard_config(&jwks.url(), &up.url()).replace(
        "jwks_refresh = \"5m\"",
        "jwks_refresh = \"1s\"\njwks_min_refresh = \"1s\"\nrevocation_file = \"revoked.toml\"",
    ) + extra;
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, config).unwrap();
    let gw = Gateway::start_at(dir, &path, "info");
    gw.wait_ready();
    gw
}

#[test]
fn a_returning_token_is_served_from_the_cache_with_the_same_result() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let up = Upstream::start();
    let gw = start(&jwks, &up, "");
    let token = keys.es256().claims(good_claims("alice", "read")).sign();
    for _ in 0..3 {
        let r = gw.get_with("/api/x", &token);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(up.last().one("x-user-id"), "alice");
    }
    assert_eq!(lookups(&gw, "miss"), 1.0);
    assert_eq!(lookups(&gw, "hit"), 2.0);
    // Route rules are applied to cached claims on every request: no `write` scope, 403.
    let r = request_with(&gw, "DELETE", "/api/x", &token);
    assert_eq!(r.status, 403);
    assert_eq!(r.reason(), "insufficient_scope");
    assert_eq!(lookups(&gw, "hit"), 3.0);
    // A tampered copy is another token: a miss, and a bad signature.
    let mut bad = token.clone();
    bad.pop();
    bad.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(gw.get_with("/api/x", &bad).reason(), "bad_signature");
    assert!(gw.metrics().contains("authgate_token_cache_entries 1"));
    assert!(!gw.logs().contains(&token));

    // With the cache off every request is verified.
    let off = start(&jwks, &up, "\n[token_cache]\nenabled = false\n");
    for _ in 0..2 {
        assert_eq!(off.get_with("/api/x", &token).status, 200);
    }
    assert_eq!(lookups(&off, "hit") + lookups(&off, "miss"), 0.0);
}

fn request_with(gw: &Gateway, method: &str, path: &str, token: &str) -> Resp {
    crate::support::http::request(
        gw.addr,
        method,
        path,
        &[("authorization", &format!("Bearer {token}"))],
    )
}

#[test]
fn a_cached_token_is_refused_once_revoked() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let up = Upstream::start();
    let gw = start(&jwks, &up, "");
    let mut claims = good_claims("bob", "read");
    claims["jti"] = json!("j-1");
    let token = keys.rs256().claims(claims).sign();
    assert_eq!(gw.get_with("/api/x", &token).status, 200);
    assert_eq!(gw.get_with("/api/x", &token).status, 200);
    assert_eq!(lookups(&gw, "hit"), 1.0, "cached");
    let list = gw.dir().join("revoked.toml");
    std::fs::write(list.with_extension("tmp"), "jti = [\"j-1\"]\n").unwrap();
    std::fs::rename(list.with_extension("tmp"), &list).unwrap();
    assert!(eventually(Duration::from_secs(8), || gw
        .get_with("/api/x", &token)
        .reason()
        == "revoked"));
    assert!(lookups(&gw, "hit") >= 2.0, "refused on a cache hit");
}

#[test]
fn a_cached_token_is_refused_once_its_key_is_rotated_out() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let up = Upstream::start();
    let gw = start(&jwks, &up, "");
    let token = keys.rs256().claims(good_claims("carol", "read")).sign();
    assert_eq!(gw.get_with("/api/x", &token).status, 200);
    assert_eq!(gw.get_with("/api/x", &token).status, 200);
    assert_eq!(lookups(&gw, "hit"), 1.0);
    // Refetches of an unchanged JWKS keep the cache warm.
    let fetches = jwks.fetches();
    assert!(eventually(Duration::from_secs(5), || jwks.fetches() >= fetches + 2));
    assert_eq!(gw.get_with("/api/x", &token).status, 200);
    assert_eq!(lookups(&gw, "hit"), 2.0, "same keys, still cached");
    // The issuer drops kid "rsa": the cached verification no longer counts.
    jwks.set(jwks_of(&[jwk(&keys.ec, Algorithm::ES256, "ec", true)]));
    assert!(eventually(Duration::from_secs(8), || gw
        .get_with("/api/x", &token)
        .status
        == 401));
    assert_eq!(gw.get_with("/api/x", &token).reason(), "unknown_kid");
}

#[test]
fn a_cached_token_is_refused_once_expired_or_no_longer_accepted() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let up = Upstream::start();
    let gw = start(&jwks, &up, "");
    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    // Expiry: exp in 2 s, with the provider's 30 s leeway turned down to 0 by a reload.
    let strict = config.replace("leeway = \"30s\"", "leeway = \"0s\"");
    std::fs::write(gw.config_path(), &strict).unwrap();
    assert!(gw.wait_log("config reloaded", Duration::from_secs(8)));
    let mut claims = good_claims("dave", "read");
    claims["exp"] = json!(now() + 2);
    let short = keys.rs256().claims(claims).sign();
    assert_eq!(gw.get_with("/api/x", &short).status, 200);
    assert_eq!(gw.get_with("/api/x", &short).status, 200);
    std::thread::sleep(Duration::from_millis(2600));
    assert_eq!(gw.get_with("/api/x", &short).reason(), "expired");

    // A reload that stops accepting the token's audience empties the cache.
    let token = keys.rs256().claims(good_claims("erin", "read")).sign();
    assert_eq!(gw.get_with("/api/x", &token).status, 200);
    assert_eq!(gw.get_with("/api/x", &token).status, 200);
    std::fs::write(
        gw.config_path(),
        strict.replace(
            "audiences = [\"orders-api\"]",
            "audiences = [\"other-api\"]",
        ),
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(8), || gw
        .log_count("config reloaded")
        == 2));
    let hits = lookups(&gw, "hit");
    assert_eq!(gw.get_with("/api/x", &token).reason(), "bad_audience");
    assert_eq!(lookups(&gw, "hit"), hits, "never served from the old cache");
}
