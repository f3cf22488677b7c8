//! Key sets over HTTP: unknown-kid refetch (single flight, rate limited), failed fetches keep
//! the last good keys, bad keys in a JWKS are skipped without poisoning the rest.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::support::tokens::{jwk, jwks_of};
use crate::support::*;

#[test]
fn unknown_kid_triggers_one_refetch_that_finds_a_new_key() {
    let keys = Keys::load();
    let jwks = JwksServer::start(jwks_of(&[jwk(&keys.rsa, Algorithm::RS256, "rsa", true)]));
    let up = Upstream::start();
    let gw = Gateway::start(&standard_config(&jwks.url(), &up.url()));
    gw.wait_ready();
    let ec = keys.es256().claims(good_claims("alice", "read")).sign();
    let r = gw.get_with("/api/x", &ec);
    assert_eq!(r.reason(), "unknown_kid", "{r:?}");
    // The provider rotates in a new key: tokens with that kid trigger a refetch, within the
    // 1s cooldown (a refetch asked for inside it happens when it ends).
    jwks.set(keys.standard_jwks());
    let start = std::time::Instant::now();
    assert!(eventually(Duration::from_secs(5), || gw
        .get_with("/api/x", &ec)
        .status
        == 200));
    assert!(
        start.elapsed() < Duration::from_millis(4000),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_flood_of_unknown_kids_is_rate_limited() {
    let s = Setup::start();
    assert!(eventually(Duration::from_secs(5), || s.jwks.fetches() >= 1));
    let before = s.jwks.fetches();
    let start = std::time::Instant::now();
    let handles: Vec<_> = (0..40)
        .map(|i| {
            let t = s
                .keys
                .rs256()
                .kid(&format!("invented-{i}"))
                .claims(good_claims("x", "read"))
                .sign();
            let addr = s.gw.addr;
            std::thread::spawn(move || {
                get(addr, "/api/x", &[("Authorization", &format!("Bearer {t}"))])
            })
        })
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 401, "{r:?}");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let fetched = s.jwks.fetches() - before;
    // Cooldown 1s: at most one fetch per started second, plus the first.
    assert!(
        fetched as f64 <= elapsed.ceil() + 1.0,
        "{fetched} fetches in {elapsed:.1}s for 40 unknown kids"
    );
    // The good keys still work.
    assert_eq!(s.gw.get_with("/api/x", &s.token("read")).status, 200);
}

#[test]
fn failed_fetches_keep_the_last_good_keys() {
    let s = Setup::start();
    let t = s.token("read");
    assert_eq!(s.gw.get_with("/api/x", &t).status, 200);
    for broken in ["500", "garbage", "empty", "duplicate"] {
        let before = s.jwks.fetches();
        match broken {
            "500" => s.jwks.set_status(500),
            "garbage" => {
                s.jwks.set_status(200);
                s.jwks.set("<html>not json".to_owned());
            }
            "empty" => s.jwks.set(r#"{"keys":[]}"#.to_owned()),
            _ => s.jwks.set(jwks_of(&[
                jwk(&s.keys.rsa2, Algorithm::RS256, "rsa", true),
                jwk(&s.keys.rsa, Algorithm::RS256, "rsa", true),
            ])),
        }
        // Unknown kids force refetches (one per cooldown); wait until the gateway has
        // processed a failed one (its error counter moved), not just until the server saw it.
        let series = "authgate_jwks_fetches_total{provider=\"corp\",result=\"error\"}";
        let errors_before = metric_value(&s.gw.metrics(), series);
        let unknown = s
            .keys
            .rs256()
            .kid("new")
            .claims(good_claims("x", "read"))
            .sign();
        let refetched = eventually(Duration::from_secs(6), || {
            assert_eq!(s.gw.get_with("/api/x", &unknown).reason(), "unknown_kid");
            s.jwks.fetches() > before && metric_value(&s.gw.metrics(), series) > errors_before
        });
        assert!(refetched, "{broken}: no failed refetch was recorded");
        assert_eq!(
            s.gw.get_with("/api/x", &t).status,
            200,
            "{broken}: the last good keys must stay"
        );
    }
    assert!(s
        .gw
        .metrics()
        .contains("authgate_jwks_fetches_total{provider=\"corp\",result=\"error\"}"));
}

#[test]
fn bad_keys_are_skipped_not_fatal() {
    let keys = Keys::load();
    let mut enc = jwk(&keys.ec, Algorithm::ES256, "enc", true);
    enc["use"] = json!("enc");
    let mut bad_n = jwk(&keys.rsa, Algorithm::RS256, "bad-n", true);
    bad_n["n"] = json!("!!!");
    let doc = jwks_of(&[
        json!({"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}),
        json!({"kty": "WAT", "kid": "wat"}),
        enc,
        bad_n,
        serde_json::from_slice(&std::fs::read(fixtures().join("keys/rsa1024.jwk.json")).unwrap())
            .unwrap(),
        jwk(&keys.rsa, Algorithm::RS256, "rsa", true),
    ]);
    let jwks = JwksServer::start(doc);
    let up = Upstream::start();
    let gw = Gateway::start(&standard_config(&jwks.url(), &up.url()));
    let t = keys.rs256().claims(good_claims("alice", "read")).sign();
    assert!(eventually(Duration::from_secs(5), || gw
        .get_with("/api/x", &t)
        .status
        == 200));
    // A key marked `use: enc` never verifies, even with a valid signature.
    let t = keys
        .es256()
        .kid("enc")
        .claims(good_claims("alice", "read"))
        .sign();
    assert_eq!(gw.get_with("/api/x", &t).status, 401);
    // The 1024-bit RSA key was left out of the set: its kid is unknown.
    let t = keys
        .rs256()
        .kid("weak")
        .claims(good_claims("alice", "read"))
        .sign();
    assert_eq!(gw.get_with("/api/x", &t).reason(), "unknown_kid");
    assert!(
        gw.wait_log("RSA modulus shorter than 2048 bits", Duration::from_secs(2)),
        "{}",
        gw.logs()
    );
    assert!(gw.wait_log(
        "symmetric keys are never taken from a JWKS",
        Duration::from_secs(2)
    ));
}

#[test]
fn hmac_provider_uses_only_its_configured_secret() {
    let keys = Keys::load();
    let up = Upstream::start();
    let secret = fixtures().join("keys/hmac.secret");
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[upstreams.legacy]
url = "{}"
[providers.internal]
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
hmac_secret_file = "{}"
algorithms = ["HS256"]
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "legacy"
"#,
        up.url(),
        secret.display()
    );
    let gw = Gateway::start(&config);
    let key = jsonwebtoken::EncodingKey::from_secret(&keys.hmac);
    let t = crate::support::tokens::TokenBuilder::new(&key, Algorithm::HS256)
        .claims(good_claims("svc", ""))
        .sign();
    assert_eq!(gw.get_with("/api/x", &t).status, 200);
    let wrong = jsonwebtoken::EncodingKey::from_secret(b"another secret that is long enough!!");
    let t = crate::support::tokens::TokenBuilder::new(&wrong, Algorithm::HS256)
        .claims(good_claims("svc", ""))
        .sign();
    assert_eq!(gw.get_with("/api/x", &t).reason(), "bad_signature");
    // An RS256 token never reaches the HMAC key.
    let t = keys.rs256().claims(good_claims("svc", "")).sign();
    assert_eq!(gw.get_with("/api/x", &t).reason(), "alg_not_allowed");
}

#[test]
fn a_refetch_asked_for_inside_the_cooldown_happens_when_it_ends() {
    let keys = Keys::load();
    let jwks = JwksServer::start(jwks_of(&[jwk(&keys.rsa, Algorithm::RS256, "rsa", true)]));
    let up = Upstream::start();
    let config = standard_config(&jwks.url(), &up.url()).replace(
        "jwks_refetch_cooldown = \"1s\"",
        "jwks_refetch_cooldown = \"3s\"",
    );
    let gw = Gateway::start(&config);
    gw.wait_ready();
    let unknown = keys
        .rs256()
        .kid("later")
        .claims(good_claims("x", "read"))
        .sign();
    // Right after the start-up fetch: inside the cooldown, so the request is answered at once.
    let before = jwks.fetches();
    let t = std::time::Instant::now();
    assert_eq!(gw.get_with("/api/x", &unknown).reason(), "unknown_kid");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "waited {:?} inside the cooldown",
        t.elapsed()
    );
    assert_eq!(jwks.fetches(), before, "no fetch inside the cooldown");
    // With no further traffic, the deferred fetch happens when the cooldown ends.
    assert!(
        eventually(Duration::from_secs(6), || jwks.fetches() > before),
        "the deferred refetch never came"
    );
    let m = gw.metrics();
    let limited = metric_value(
        &m,
        "authgate_jwks_fetches_total{provider=\"corp\",result=\"rate_limited\"}",
    );
    assert!(limited >= 1.0, "{m}");
    // Sequential unknown kids inside one cooldown: few fetches.
    let before = jwks.fetches();
    for _ in 0..10 {
        assert_eq!(gw.get_with("/api/x", &unknown).reason(), "unknown_kid");
    }
    let fetched = jwks.fetches() - before;
    assert!(
        fetched <= 2,
        "{fetched} fetches for 10 sequential unknown kids"
    );
}

fn refresh_config(jwks: &JwksServer, up: &Upstream, extra: &str) -> String {
    standard_config(&jwks.url(), &up.url()).replace(
        "jwks_refresh = \"5m\"",
        &format!("jwks_refresh = \"5m\"\n{extra}"),
    )
}

#[test]
fn cache_control_shortens_the_refresh_within_bounds_and_etag_saves_the_body() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    jwks.set_header("Cache-Control", "public, max-age=0");
    jwks.set_header("ETag", "\"v1\"");
    let up = Upstream::start();
    let gw = Gateway::start(&refresh_config(&jwks, &up, "jwks_min_refresh = \"1s\""));
    gw.wait_ready();
    // max-age=0 asks for constant refetching; jwks_min_refresh holds it to one per second.
    let start = jwks.fetches();
    std::thread::sleep(Duration::from_millis(3500));
    let n = jwks.fetches() - start;
    assert!(
        (2..=5).contains(&n),
        "{n} fetches in 3.5 s with max-age=0 and a 1 s floor"
    );
    // Every refetch carried If-None-Match and got a 304, which the gateway counts.
    assert!(jwks.not_modified() >= 2, "{} 304s", jwks.not_modified());
    let m = gw.metrics();
    assert!(
        metric_value(
            &m,
            "authgate_jwks_fetches_total{provider=\"corp\",result=\"not_modified\"}"
        ) >= 2.0,
        "{m}"
    );
    assert_eq!(
        gw.get_with(
            "/api/x",
            &keys.rs256().claims(good_claims("a", "read")).sign()
        )
        .status,
        200
    );
    // A new document under a new ETag is picked up by the next refresh.
    jwks.set(jwks_of(&[jwk(&keys.ec, Algorithm::ES256, "ec-only", true)]));
    jwks.set_header("ETag", "\"v2\"");
    let t = keys
        .es256()
        .kid("ec-only")
        .claims(good_claims("a", "read"))
        .sign();
    assert!(eventually(Duration::from_secs(4), || gw
        .get_with("/api/x", &t)
        .status
        == 200));
}

#[test]
fn keys_past_max_stale_fail_closed_until_the_provider_answers() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let up = Upstream::start();
    let config = refresh_config(
        &jwks,
        &up,
        "jwks_min_refresh = \"1s\"\njwks_max_stale = \"6m\"",
    )
    .replace("jwks_refresh = \"5m\"", "jwks_refresh = \"1s\"")
    .replace("jwks_max_stale = \"6m\"", "jwks_max_stale = \"3s\"");
    let gw = Gateway::start(&config);
    gw.wait_ready();
    let t = keys.rs256().claims(good_claims("a", "read")).sign();
    assert_eq!(gw.get_with("/api/x", &t).status, 200);
    jwks.set_status(500);
    // Within max_stale the last good keys serve; past it, 503 and /readyz fails.
    assert_eq!(gw.get_with("/api/x", &t).status, 200);
    assert!(
        eventually(Duration::from_secs(6), || gw.get_with("/api/x", &t).status
            == 503),
        "keys never went stale"
    );
    assert_eq!(gw.get_with("/api/x", &t).reason(), "keys_unavailable");
    let r = get(gw.admin, "/readyz", &[]);
    assert_eq!(r.status, 503);
    assert!(r.body.contains("stale"), "{r:?}");
    assert!(
        gw.wait_log("keys older than jwks_max_stale", Duration::from_secs(3)),
        "{}",
        gw.logs()
    );
    assert!(
        metric_value(
            &gw.metrics(),
            "authgate_jwks_age_seconds{provider=\"corp\"}"
        ) >= 2.0
    );
    // The provider comes back: keys are confirmed and used again.
    jwks.set_status(200);
    assert!(eventually(Duration::from_secs(10), || gw
        .get_with("/api/x", &t)
        .status
        == 200));
    assert_eq!(get(gw.admin, "/readyz", &[]).status, 200);
}

fn discovery_config(jwks: &JwksServer, up: &Upstream) -> String {
    standard_config(&jwks.url(), &up.url())
        .replace(
            &format!("issuer = \"{ISSUER}\""),
            &format!("issuer = \"{}\"", jwks.base()),
        )
        .replace(
            &format!("jwks_url = \"{}\"", jwks.url()),
            "discovery = true",
        )
}

#[test]
fn oidc_discovery_finds_the_jwks_and_checks_the_issuer() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    jwks.set_discovery(&json!({"issuer": jwks.base(), "jwks_uri": jwks.url()}).to_string());
    let up = Upstream::start();
    let gw = Gateway::start(&discovery_config(&jwks, &up));
    gw.wait_ready();
    let mut c = good_claims("alice", "read");
    c["iss"] = json!(jwks.base());
    assert_eq!(
        gw.get_with("/api/x", &keys.es256().claims(c).sign()).status,
        200
    );
}

#[test]
fn discovery_naming_another_issuer_is_refused() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    jwks.set_discovery(
        &json!({"issuer": "https://evil.example.com", "jwks_uri": jwks.url()}).to_string(),
    );
    let up = Upstream::start();
    let gw = Gateway::start(&discovery_config(&jwks, &up));
    assert!(
        gw.wait_log("names issuer", Duration::from_secs(5)),
        "{}",
        gw.logs()
    );
    assert_eq!(get(gw.admin, "/readyz", &[]).status, 503);
    let mut c = good_claims("alice", "read");
    c["iss"] = json!(jwks.base());
    let t = keys.rs256().claims(c).sign();
    assert_eq!(gw.get_with("/api/x", &t).reason(), "keys_unavailable");
    // The metadata is fixed: keys load.
    jwks.set_discovery(&json!({"issuer": jwks.base(), "jwks_uri": jwks.url()}).to_string());
    assert!(eventually(Duration::from_secs(8), || gw
        .get_with("/api/x", &t)
        .status
        == 200));
    // Then it points the jwks_uri at plain http on another host: refused, the keys stay.
    jwks.set_discovery(
        &json!({"issuer": jwks.base(), "jwks_uri": "http://keys.example.com/jwks"}).to_string(),
    );
    let unknown = keys
        .rs256()
        .kid("other")
        .claims(good_claims("x", "read"))
        .sign();
    let _ = gw.get_with("/api/x", &unknown); // wakes a refresh
    assert!(
        gw.wait_log("uses plain http", Duration::from_secs(8)),
        "{}",
        gw.logs()
    );
    assert_eq!(gw.get_with("/api/x", &t).status, 200);
}

#[test]
fn rotation_add_switch_remove() {
    let keys = Keys::load();
    let old = jwk(&keys.rsa, Algorithm::RS256, "2026-old", true);
    let new = jwk(&keys.rsa2, Algorithm::RS256, "2026-new", true);
    let jwks = JwksServer::start(jwks_of(std::slice::from_ref(&old)));
    let up = Upstream::start();
    let config = refresh_config(&jwks, &up, "jwks_min_refresh = \"1s\"")
        .replace("jwks_refresh = \"5m\"", "jwks_refresh = \"1s\"");
    let gw = Gateway::start(&config);
    gw.wait_ready();
    let sign = |key: &jsonwebtoken::EncodingKey, kid: &str| {
        crate::support::tokens::TokenBuilder::new(key, Algorithm::RS256)
            .kid(kid)
            .claims(good_claims("alice", "read"))
            .sign()
    };
    let (t_old, t_new) = (sign(&keys.rsa, "2026-old"), sign(&keys.rsa2, "2026-new"));
    assert_eq!(gw.get_with("/api/x", &t_old).status, 200);
    // Add: the provider publishes the next key before using it.
    jwks.set(jwks_of(&[old.clone(), new.clone()]));
    assert!(eventually(Duration::from_secs(5), || gw
        .get_with("/api/x", &t_new)
        .status
        == 200));
    assert_eq!(
        gw.get_with("/api/x", &t_old).status,
        200,
        "both keys valid during the overlap"
    );
    // Remove: the old key stops validating at the next refresh.
    jwks.set(jwks_of(std::slice::from_ref(&new)));
    assert!(eventually(Duration::from_secs(5), || gw
        .get_with("/api/x", &t_old)
        .reason()
        == "unknown_kid"));
    assert_eq!(gw.get_with("/api/x", &t_new).status, 200);
}

#[test]
fn a_slow_provider_never_hangs_requests() {
    let s = Setup::start();
    let t = s.token("read");
    s.jwks.set_delay(Duration::from_secs(8));
    std::thread::sleep(Duration::from_millis(1100)); // past the cooldown
    let unknown = s
        .keys
        .rs256()
        .kid("slow")
        .claims(good_claims("x", "read"))
        .sign();
    let start = std::time::Instant::now();
    assert_eq!(s.gw.get_with("/api/x", &unknown).reason(), "unknown_kid");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        start.elapsed()
    );
    // Meanwhile known tokens are served from the current keys without waiting.
    let start = std::time::Instant::now();
    assert_eq!(s.gw.get_with("/api/x", &t).status, 200);
    assert!(start.elapsed() < Duration::from_secs(1));
    // The fetch times out (5 s) and counts as an error; the keys stay.
    assert!(eventually(Duration::from_secs(10), || metric_value(
        &s.gw.metrics(),
        "authgate_jwks_fetches_total{provider=\"corp\",result=\"error\"}"
    ) >= 1.0));
    assert_eq!(s.gw.get_with("/api/x", &t).status, 200);
}
