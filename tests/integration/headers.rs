//! What the upstream sees: spoofable headers gone in every spelling, claims present exactly
//! once, Authorization removed, hop-by-hop headers dropped, X-Forwarded-* set.

use serde_json::json;

use crate::support::*;

#[test]
fn spoofed_identity_headers_never_reach_the_upstream() {
    let s = Setup::start();
    let spoof: &[(&str, &str)] = &[
        ("X-User-Id", "root"),
        ("x_user_id", "root"),
        ("X-USER-ID", "root"),
        ("X_Scopes", "admin"),
        ("X-Org-Id", "other-org"),
        ("X-Internal-Role", "admin"),
        ("x_internal_debug", "1"),
        ("X-Forwarded-For", "10.0.0.1"),
    ];
    // On a route without auth...
    assert_eq!(get(s.gw.addr, "/public/x", spoof).status, 200);
    let seen = s.upstream.last();
    for (name, _) in spoof
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("x-forwarded-for"))
    {
        assert!(
            !seen.has(name),
            "{name} reached the upstream: {:?}",
            seen.headers
        );
    }
    assert!(
        !seen.headers.iter().any(|(n, _)| n.contains('_')),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.one("x-forwarded-for"), "127.0.0.1");
    assert_eq!(seen.one("x-forwarded-proto"), "http");
    // ...and with a token: the claim values replace the spoofed ones, exactly once each.
    let t = s.token("read write");
    let mut headers = spoof.to_vec();
    let auth = format!("Bearer {t}");
    headers.push(("Authorization", &auth));
    assert_eq!(get(s.gw.addr, "/api/x", &headers).status, 200);
    let seen = s.upstream.last();
    assert_eq!(seen.one("x-user-id"), "alice");
    assert_eq!(seen.one("x-scopes"), "read write");
    assert_eq!(seen.one("x-org-id"), "org-7");
    assert!(
        !seen.has("x_user_id") && !seen.has("x-internal-role") && !seen.has("x_internal_debug")
    );
    assert!(
        !seen.has("authorization"),
        "the token is removed by default"
    );
}

#[test]
fn claim_values_render_as_strings() {
    let s = Setup::start();
    let mut c = good_claims("alice", "read");
    c["roles"] = json!(["reader", "auditor"]);
    c["n"] = json!(42);
    c["obj"] = json!({"a": [1, 2], "b": "c"});
    let t = s.keys.rs256().claims(c).sign();
    assert_eq!(s.gw.get_with("/api/x", &t).status, 200);
    let seen = s.upstream.last();
    assert_eq!(seen.one("x-roles"), "reader,auditor");
    assert_eq!(seen.one("x-number"), "42");
    assert_eq!(seen.one("x-obj"), r#"{"a":[1,2],"b":"c"}"#);
}

#[test]
fn control_characters_in_claims_refuse_the_request() {
    let s = Setup::start();
    let before = s.upstream.count();
    for evil in ["alice\r\nX-Admin: true", "alice\nx", "a\u{0}b", "tab\there"] {
        let mut c = good_claims(evil, "read");
        c["sub"] = json!(evil);
        let t = s.keys.rs256().claims(c).sign();
        let r = s.gw.get_with("/api/x", &t);
        assert_eq!(r.status, 401, "{evil:?}: {r:?}");
        assert_eq!(r.reason(), "unsafe_claim_value");
    }
    let mut c = good_claims("alice", "read");
    c["roles"] = json!(["ok", "bad\r\nX-Admin: 1"]);
    let r = s.gw.get_with("/api/x", &s.keys.rs256().claims(c).sign());
    assert_eq!(r.reason(), "unsafe_claim_value");
    assert_eq!(s.upstream.count(), before, "nothing reached the upstream");
}

#[test]
fn hop_by_hop_and_h2c_are_not_forwarded() {
    let s = Setup::start();
    let r = get(
        s.gw.addr,
        "/public/x",
        &[
            ("Keep-Alive", "timeout=5"),
            ("X-Secret", "1"),
            ("Proxy-Authorization", "Basic eA=="),
            ("TE", "trailers"),
        ],
    );
    assert_eq!(r.status, 200);
    let seen = s.upstream.last();
    for h in ["keep-alive", "proxy-authorization", "te"] {
        assert!(!seen.has(h), "{h}: {:?}", seen.headers);
    }
    // An h2c upgrade (RFC 7540 §3.2) is a plain HTTP/1.1 request to the gateway: neither
    // `check_message` nor `decide` refuses it, so it is answered 200 and forwarded without
    // `Upgrade`, `HTTP2-Settings`, `Connection` and what `Connection` names (removed by
    // `headers_to_remove`, and by pingora's upstream request policy as well): the upstream
    // answers HTTP/1.1 and never switches protocols behind the gateway. HTTP/2 has no such
    // request: these fields are connection-specific there (RFC 9113 §8.2.2) and the `h2`
    // client refuses to send them. `close` only ends the exchange (`send` reads until close).
    let before = s.upstream.count();
    let r = send(
        s.gw.addr,
        b"GET /public/y HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings, X-Secret, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nX-Secret: 1\r\n\r\n",
    );
    assert_eq!((r.status, r.body.as_str()), (200, "upstream ok"), "{r:?}");
    assert_eq!(r.header("upgrade"), None, "{r:?}");
    assert_eq!(s.upstream.count(), before + 1);
    let seen = s.upstream.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/public/y")
    );
    for h in ["upgrade", "http2-settings", "x-secret", "connection"] {
        assert!(!seen.has(h), "{h} was forwarded: {:?}", seen.headers);
    }
    assert_eq!(seen.one("host"), "localhost");
}

#[test]
fn forward_token_keeps_authorization() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let up = Upstream::start();
    let config = standard_config(&jwks.url(), &up.url())
        .replace("forward_token = false", "forward_token = true");
    let gw = Gateway::start(&config);
    gw.wait_ready();
    let t = keys.rs256().claims(good_claims("alice", "read")).sign();
    assert_eq!(gw.get_with("/api/x", &t).status, 200);
    assert_eq!(up.last().one("authorization"), format!("Bearer {t}"));
}

#[test]
fn rewrite_and_forwarding_headers_are_replaced_or_removed() {
    let s = Setup::start();
    let r = get(
        s.gw.addr,
        "/public/x",
        &[
            ("X-Original-URL", "/admin/users"),
            ("X-Rewrite-URL", "/admin/users"),
            ("X-Forwarded-Host", "admin.example.com"),
            ("X-Forwarded-Prefix", "/admin"),
            ("Forwarded", "for=10.0.0.1;host=admin.example.com"),
            ("X-Real-IP", "10.0.0.1"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("X_Original_URL", "/admin"),
            // Identity and TLS state a front proxy would vouch for (and httpoxy's `Proxy`).
            ("Remote-User", "admin"),
            ("X-Remote-User", "admin"),
            ("X-Auth-Request-Email", "admin@example.com"),
            ("X-SSL-Client-Verify", "SUCCESS"),
            ("SSL-Client-Cert", "-----BEGIN CERTIFICATE-----"),
            ("X-Envoy-Original-Path", "/admin"),
            ("Front-End-Https", "on"),
            ("Proxy", "http://evil.example:8080"),
            ("x_remote_user", "admin"),
        ],
    );
    assert_eq!(r.status, 200);
    let seen = s.upstream.last();
    for h in [
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-prefix",
        "forwarded",
        "x-real-ip",
        "x-http-method-override",
        "x_original_url",
        "remote-user",
        "x-remote-user",
        "x-auth-request-email",
        "x-ssl-client-verify",
        "ssl-client-cert",
        "x-envoy-original-path",
        "front-end-https",
        "proxy",
        "x_remote_user",
    ] {
        assert!(!seen.has(h), "{h} reached the upstream: {:?}", seen.headers);
    }
    assert_eq!(
        seen.one("x-forwarded-host"),
        "localhost",
        "the routed host, not the client's claim"
    );
}

#[test]
fn forward_token_never_forwards_an_unverified_credential() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let up = Upstream::start();
    let config = standard_config(&jwks.url(), &up.url())
        .replace("forward_token = false", "forward_token = true");
    let gw = Gateway::start(&config);
    gw.wait_ready();
    // auth = "none": the token was not looked at, so it is not passed on.
    assert_eq!(
        get(
            gw.addr,
            "/public/x",
            &[("Authorization", "Bearer forged.token.here")]
        )
        .status,
        200
    );
    assert!(!up.last().has("authorization"));
    // auth = "optional" with another scheme: anonymous, and the header does not pass.
    assert_eq!(
        get(gw.addr, "/opt/x", &[("Authorization", "JWT forged")]).status,
        200
    );
    assert!(!up.last().has("authorization"));
}

/// Over HTTP/1.1 and HTTP/2 alike (issue 11): spoofable headers never reach the upstream,
/// claims arrive rendered once, and claim values an HTTP stack would read differently
/// (surrounding whitespace, commas, integers past 2^53) refuse the request.
#[test]
fn headers_and_claims_hold_over_both_protocols() {
    let s = Setup::start_tls();
    let host = format!("localhost:{}", s.gw.addr.port());
    let spoof: &[(&str, &str)] = &[
        ("x-user-id", "root"),
        ("x_user_id", "root"),
        ("x-internal-role", "admin"),
        ("x-forwarded-host", "admin.example.com"),
        ("x-original-url", "/admin/users"),
        ("forwarded", "for=10.0.0.1;host=admin.example.com"),
    ];
    let mut c = good_claims("alice", "read");
    c["roles"] = json!(["reader", "auditor"]);
    c["n"] = json!(9_007_199_254_740_991_u64);
    let good = format!("Bearer {}", s.keys.rs256().claims(c).sign());
    for proto in Proto::BOTH {
        for path in ["/public/x", "/api/x"] {
            let mut headers = spoof.to_vec();
            headers.push(("authorization", &good));
            let r = proto.request(&s.gw, "GET", &host, path, &headers);
            assert_eq!(r.status, 200, "{proto:?} {path}: {r:?}");
            let seen = s.upstream.last();
            for (name, _) in spoof {
                let name = name.replace('_', "-");
                let values = seen.all(&name);
                assert!(
                    values.iter().all(|v| !v.contains("root")
                        && !v.contains("admin")
                        && !v.contains("10.0.0.1")),
                    "{proto:?} {path}: {name} {values:?}"
                );
            }
            assert!(!seen.has("x_user_id") && !seen.has("x-original-url"));
            assert!(!seen.has("authorization"), "{proto:?}");
            assert_eq!(seen.one("x-forwarded-host"), host, "{proto:?}");
            if path == "/api/x" {
                assert_eq!(seen.one("x-user-id"), "alice", "{proto:?}");
                assert_eq!(seen.one("x-roles"), "reader,auditor", "{proto:?}");
                assert_eq!(seen.one("x-number"), "9007199254740991", "{proto:?}");
            } else {
                assert!(!seen.has("x-user-id"), "{proto:?}");
            }
        }
        let before = s.upstream.count();
        for (claim, value) in [
            ("sub", json!(" admin")),
            ("sub", json!("admin ")),
            ("sub", json!("alice,admin")),
            ("roles", json!(["reader", "admin,auditor"])),
            ("roles", json!(["reader", ""])),
            ("n", json!(9_007_199_254_740_993_u64)),
            ("n", json!(1e20)),
        ] {
            let mut c = good_claims("alice", "read");
            c[claim] = value.clone();
            let bearer = format!("Bearer {}", s.keys.rs256().claims(c).sign());
            let r = proto.request(&s.gw, "GET", &host, "/api/x", &[("authorization", &bearer)]);
            assert_eq!(r.status, 401, "{proto:?} {claim}={value}: {r:?}");
            assert_eq!(
                r.reason(),
                "unsafe_claim_value",
                "{proto:?} {claim}={value}"
            );
        }
        assert_eq!(
            s.upstream.count(),
            before,
            "{proto:?}: reached the upstream"
        );
    }
}

/// An identity header (stripped from clients) may still carry a claim: the gateway sets it.
#[test]
fn an_identity_header_can_carry_a_claim() {
    let s = Setup::start_with(|config| {
        let config = config.replace("sub = \"X-User-Id\"", "sub = \"Remote-User\"");
        assert!(config.contains("sub = \"Remote-User\""), "{config}");
        config
    });
    let t = s.keys.rs256().claims(good_claims("alice", "read")).sign();
    let r = get(
        s.gw.addr,
        "/api/x",
        &[
            ("Authorization", &format!("Bearer {t}")),
            ("Remote-User", "admin"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s.upstream.last().one("remote-user"), "alice");
}
