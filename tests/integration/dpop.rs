//! Sender-constrained tokens through the real binary (issue 15): DPoP proofs (RFC 9449) made
//! with the test's own keys, over HTTP/1.1 and HTTP/2, and certificate-bound tokens (RFC
//! 8705) over mutual TLS and from a trusted proxy's `Client-Cert` header (RFC 9440).

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

use crate::support::dpop::{ath, x5t_s256, DpopKey};
use crate::support::tokens::TokenBuilder;
use crate::support::*;

/// The standard TLS setup with `dpop = "<mode>"` and `extra` on provider `corp`, and
/// `server` lines added to `[server]`.
fn setup(mode: &str, extra: &str, server: &str) -> Setup {
    Setup::start_tls_with(|c| {
        c.replace(
            "jwks_refetch_cooldown = \"1s\"",
            &format!("jwks_refetch_cooldown = \"1s\"\ndpop = \"{mode}\"\n{extra}"),
        )
        .replace(
            "shutdown_grace = \"1s\"",
            &format!("shutdown_grace = \"1s\"\n{server}"),
        )
    })
}

/// `setup("allowed", extra, "")` with one more route (TOML) at the end of the config.
fn setup_with_route(extra: &str, route: &str) -> Setup {
    Setup::start_tls_with(|c| {
        c.replace(
            "jwks_refetch_cooldown = \"1s\"",
            &format!("jwks_refetch_cooldown = \"1s\"\n{extra}"),
        ) + route
    })
}

/// `GET /api/x` for `localhost` over `proto`.
fn api(proto: Proto, gw: &Gateway, headers: &[(&str, &str)]) -> Resp {
    proto.request(gw, "GET", "localhost", "/api/x", headers)
}

fn assert_refused(r: &Resp, reason: &str, proto: Proto) {
    assert_eq!(
        (r.status, r.reason().as_str()),
        (401, reason),
        "{proto:?}: {}",
        r.body
    );
}

/// A token of `keys.es256()` bound to `jkt` (`cnf.jkt`), or a plain one.
fn token(s: &Setup, cnf: Option<serde_json::Value>) -> String {
    let mut claims = good_claims("alice", "read");
    if let Some(cnf) = cnf {
        claims["cnf"] = cnf;
    }
    s.keys.es256().claims(claims).sign()
}

fn dpop_auth(token: &str) -> String {
    format!("DPoP {token}")
}

/// A rejection's `WWW-Authenticate` fields, joined.
fn challenge(r: &Resp) -> String {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Every check of RFC 9449 §4.3 and §7.1, each tried against the gateway over both
/// protocols: a proof passes once; a copy, a proof for another method or URI, an old or
/// future one, one for another token, one with a private or symmetric key, or by another
/// key than the token's, is refused, and so is a DPoP-bound token sent as a bearer token.
#[test]
fn dpop_proofs_over_h1_and_h2() {
    let s = setup("allowed", "", "");
    let client = DpopKey::new(&s.keys.ec, Algorithm::ES256);
    let thief = DpopKey::new(&s.keys.ed, Algorithm::EdDSA);
    let bound = token(&s, Some(json!({ "jkt": client.thumbprint() })));
    let plain = token(&s, None);
    let host = "localhost";
    let htu = |path: &str| format!("https://localhost{path}");
    for proto in Proto::BOTH {
        let send = |method: &str, path: &str, headers: &[(&str, &str)]| {
            proto.request(&s.gw, method, host, path, headers)
        };
        let with = |auth: &str, proof: &str| {
            send("GET", "/api/x", &[("authorization", auth), ("dpop", proof)])
        };
        let refused = |r: &Resp, reason: &str, what: &str| {
            assert_eq!(r.status, 401, "{proto:?} {what}: {}", r.body);
            assert_eq!(r.reason(), reason, "{proto:?} {what}");
        };
        let auth = dpop_auth(&bound);

        // A fresh proof: through, without the proof, with the token's claims.
        let proof = client.proof("GET", &htu("/api/x"), Some(&bound));
        let r = with(&auth, &proof);
        assert_eq!(r.status, 200, "{proto:?}: {}", r.body);
        let seen = s.upstream.last();
        assert_eq!(seen.one("x-user-id"), "alice", "{proto:?}");
        assert!(!seen.has("dpop"), "{proto:?}: the proof is not forwarded");
        assert!(
            !seen.has("authorization"),
            "{proto:?}: forward_token is off"
        );
        // The same proof again, on another connection: a replay.
        let r = with(&auth, &proof);
        refused(&r, "dpop_replay", "replayed proof");
        let c = challenge(&r);
        assert!(
            c.starts_with("DPoP error=\"invalid_dpop_proof\"")
                && c.contains("algs=\"ES256 ES384 RS256"),
            "{proto:?}: {c}"
        );

        // The URI, normalized on both sides: `/api/./x` is `/api/x`, `/api/x/..` is not.
        let r = send(
            "GET",
            "/api/./x",
            &[
                ("authorization", &auth),
                (
                    "dpop",
                    &client.proof("GET", "HTTPS://LOCALHOST:443/api/x?q=1", Some(&bound)),
                ),
            ],
        );
        assert_eq!(r.status, 200, "{proto:?} normalized htu: {}", r.body);
        for (what, proof) in [
            ("htm", client.proof("POST", &htu("/api/x"), Some(&bound))),
            ("htu path", client.proof("GET", &htu("/api/y"), Some(&bound))),
            ("htu normalizing elsewhere", client.proof("GET", &htu("/api/x/.."), Some(&bound))),
            ("htu scheme", client.proof("GET", "http://localhost/api/x", Some(&bound))),
            ("htu host", client.proof("GET", "https://evil.example/api/x", Some(&bound))),
            ("ath", client.proof("GET", &htu("/api/x"), Some(&plain))),
            ("no ath", client.proof("GET", &htu("/api/x"), None)),
            (
                "stale iat",
                client
                    .builder("GET", &htu("/api/x"), Some(&bound))
                    .claims(json!({"jti": "old", "htm": "GET", "htu": htu("/api/x"), "iat": now() - 120, "ath": ath(&bound)}))
                    .sign(),
            ),
            (
                "future iat",
                client
                    .builder("GET", &htu("/api/x"), Some(&bound))
                    .claims(json!({"jti": "new", "htm": "GET", "htu": htu("/api/x"), "iat": now() + 120, "ath": ath(&bound)}))
                    .sign(),
            ),
            (
                "typ",
                client.builder("GET", &htu("/api/x"), Some(&bound)).header("typ", json!("JWT")).sign(),
            ),
            (
                "private jwk",
                {
                    let mut jwk = client.jwk.clone();
                    jwk["d"] = json!("c2VjcmV0");
                    client.builder("GET", &htu("/api/x"), Some(&bound)).header("jwk", jwk).sign()
                },
            ),
            ("symmetric alg", {
                let secret = EncodingKey::from_secret(b"a-shared-secret-that-is-long-enough!");
                TokenBuilder::new(&secret, Algorithm::HS256)
                    .no_kid()
                    .header("typ", json!("dpop+jwt"))
                    .header("jwk", json!({"kty": "oct", "k": "c2VjcmV0"}))
                    .claims(proof_claims(&htu("/api/x"), &bound))
                    .sign()
            }),
            ("signature", {
                let p = client.proof("GET", &htu("/api/x"), Some(&bound));
                let (head, _) = p.rsplit_once('.').unwrap();
                let other = client.proof("GET", &htu("/api/x"), Some(&bound));
                format!("{head}.{}", other.rsplit_once('.').unwrap().1)
            }),
            ("not a JWS", "not-a-proof".to_owned()),
        ] {
            refused(&with(&auth, &proof), "dpop_proof_invalid", what);
        }
        // Two proofs, or none with the DPoP scheme.
        let r = send(
            "GET",
            "/api/x",
            &[
                ("authorization", &auth),
                ("dpop", &client.proof("GET", &htu("/api/x"), Some(&bound))),
                ("dpop", &client.proof("GET", &htu("/api/x"), Some(&bound))),
            ],
        );
        refused(&r, "dpop_proof_invalid", "two proofs");
        refused(
            &send("GET", "/api/x", &[("authorization", &auth)]),
            "dpop_proof_invalid",
            "no proof",
        );
        // A valid proof by another key than the token's.
        let r = with(&auth, &thief.proof("GET", &htu("/api/x"), Some(&bound)));
        refused(&r, "dpop_binding_mismatch", "thief's key");
        assert!(
            challenge(&r).starts_with("DPoP error=\"invalid_token\""),
            "{}",
            challenge(&r)
        );
        // Downgrade: the bound token as a bearer token, with or without a proof.
        let r = send(
            "GET",
            "/api/x",
            &[("authorization", &format!("Bearer {bound}"))],
        );
        refused(&r, "token_binding_required", "bound token as Bearer");
        // A proof with the bound token as Bearer; with a token bound to no key, under
        // either scheme.
        for (auth, token, reason, what) in [
            (
                format!("Bearer {bound}"),
                &bound,
                "token_binding_required",
                "bound token as Bearer with a proof",
            ),
            (
                format!("Bearer {plain}"),
                &plain,
                "dpop_binding_mismatch",
                "proof with a plain bearer token",
            ),
            (
                dpop_auth(&plain),
                &plain,
                "dpop_binding_mismatch",
                "plain token under the DPoP scheme",
            ),
        ] {
            let r = with(&auth, &client.proof("GET", &htu("/api/x"), Some(token)));
            refused(&r, reason, what);
        }
        // `allowed`: a plain bearer token still passes, its 401s offer DPoP beside Bearer.
        let r = send(
            "GET",
            "/api/x",
            &[("authorization", &format!("Bearer {plain}"))],
        );
        assert_eq!(r.status, 200, "{proto:?}: {}", r.body);
        let r = send("GET", "/api/x", &[]);
        assert_eq!(r.status, 401, "{proto:?}");
        let c = challenge(&r);
        assert!(
            c.starts_with("Bearer realm=\"authgate\" | DPoP algs=\""),
            "{proto:?}: {c}"
        );
    }
    let m = s.gw.metrics();
    for (reason, at_least) in [
        ("dpop_replay", 2.0),
        ("dpop_proof_invalid", 30.0),
        ("dpop_binding_mismatch", 6.0),
        ("token_binding_required", 4.0),
    ] {
        let v = metric_value(
            &m,
            &format!("authgate_rejections_total{{reason=\"{reason}\",route=\"api\"}}"),
        );
        assert!(v >= at_least, "{reason}: {v}");
    }
    // Neither a token nor a proof in any log line: no signature of either, no proof's
    // claims (its jti included).
    let logs = s.gw.logs();
    let sig = |jws: &str| jws.rsplit('.').next().unwrap().to_owned();
    assert!(!logs.contains(&sig(&bound)), "a token was logged");
    assert!(!logs.contains(&sig(&plain)), "a token was logged");
    let last = client.proof("GET", &htu("/api/x"), Some(&bound));
    let r = Proto::H1.request(
        &s.gw,
        "GET",
        host,
        "/api/x",
        &[("authorization", &dpop_auth(&bound)), ("dpop", &last)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let replayed = Proto::H1.request(
        &s.gw,
        "GET",
        host,
        "/api/x",
        &[("authorization", &dpop_auth(&bound)), ("dpop", &last)],
    );
    assert_eq!(replayed.reason(), "dpop_replay");
    assert!(s.gw.wait_log(
        replayed.header("x-request-id").unwrap_or("-"),
        std::time::Duration::from_secs(5)
    ));
    let logs = s.gw.logs();
    let parts: Vec<&str> = last.split('.').collect();
    for part in &parts[1..] {
        assert!(!logs.contains(part), "a proof was logged");
    }
    assert!(!logs.contains("jti-"), "a proof's jti was logged");
}

fn proof_claims(htu: &str, token: &str) -> serde_json::Value {
    json!({"jti": crate::support::dpop::fresh_jti(), "htm": "GET", "htu": htu, "iat": now(), "ath": ath(token)})
}

/// `required` refuses bearer tokens (and says DPoP in its challenge); `off` refuses the
/// DPoP scheme and DPoP-bound tokens (a binding it does not check is no bearer token),
/// and lets plain bearer tokens through with any stray `DPoP` header removed.
#[test]
fn dpop_modes_required_and_off() {
    let keys = Keys::load();
    let client = DpopKey::new(&keys.ec, Algorithm::ES256);
    let s = setup("required", "", "");
    let bound = token(&s, Some(json!({ "jkt": client.thumbprint() })));
    let plain = token(&s, None);
    for proto in Proto::BOTH {
        let r = api(
            proto,
            &s.gw,
            &[("authorization", &format!("Bearer {plain}"))],
        );
        assert_refused(&r, "token_binding_required", proto);
        assert!(
            challenge(&r).starts_with("DPoP error=\"invalid_token\""),
            "{}",
            challenge(&r)
        );
        let proof = client.proof("GET", "https://localhost/api/x", Some(&bound));
        let r = api(
            proto,
            &s.gw,
            &[("authorization", &dpop_auth(&bound)), ("dpop", &proof)],
        );
        assert_eq!(r.status, 200, "{proto:?}: {}", r.body);
        // Its 403s speak DPoP too (`api-delete` wants scope write; the token has read).
        let proof = client.proof("DELETE", "https://localhost/api/x", Some(&bound));
        let r = proto.request(
            &s.gw,
            "DELETE",
            "localhost",
            "/api/x",
            &[("authorization", &dpop_auth(&bound)), ("dpop", &proof)],
        );
        assert_eq!(r.status, 403, "{proto:?}: {}", r.body);
        let c = challenge(&r);
        assert!(
            c.starts_with("DPoP error=\"insufficient_scope\"") && c.contains("scope=\"write\""),
            "{proto:?}: {c}"
        );
        // Every provider of the route requires DPoP: no `Bearer` challenge is offered.
        let r = api(proto, &s.gw, &[]);
        assert_eq!(r.reason(), "missing_token", "{proto:?}");
        assert!(
            challenge(&r).starts_with("DPoP algs=\"ES256 "),
            "{proto:?}: {}",
            challenge(&r)
        );
    }
    drop(s);
    let s = setup("off", "", "");
    let bound = token(&s, Some(json!({ "jkt": client.thumbprint() })));
    let plain = token(&s, None);
    for proto in Proto::BOTH {
        let proof = client.proof("GET", "https://localhost/api/x", Some(&bound));
        let r = api(
            proto,
            &s.gw,
            &[("authorization", &dpop_auth(&bound)), ("dpop", &proof)],
        );
        assert_refused(&r, "binding_unsupported", proto);
        let r = api(
            proto,
            &s.gw,
            &[("authorization", &format!("Bearer {bound}"))],
        );
        assert_refused(&r, "binding_unsupported", proto);
        let r = api(
            proto,
            &s.gw,
            &[
                ("authorization", &format!("Bearer {plain}")),
                ("dpop", "stray"),
            ],
        );
        assert_eq!(r.status, 200, "{proto:?}: {}", r.body);
        assert!(!s.upstream.last().has("dpop"), "{proto:?}");
        // No DPoP offered where no provider takes it.
        let r = proto.request(&s.gw, "GET", "localhost", "/api/x", &[]);
        assert_eq!(challenge(&r), "Bearer realm=\"authgate\"", "{proto:?}");
    }
}

/// `dpop_nonce = true`: a proof without the gateway's nonce is answered `use_dpop_nonce`
/// with a `DPoP-Nonce`; the retry with it passes, and its answer carries the next nonce.
/// A made-up nonce does not pass.
#[test]
fn dpop_server_nonces() {
    let s = setup("allowed", "dpop_nonce = true", "");
    let report = setup_with_route("dpop_nonce = true", "[[routes]]\nname = \"rep\"\npath_prefix = \"/rep\"\nmode = \"report\"\nupstream = \"legacy\"\n");
    let client = DpopKey::new(&s.keys.ec, Algorithm::ES256);
    let bound = token(&s, Some(json!({ "jkt": client.thumbprint() })));
    let htu = "https://localhost/api/x";
    for proto in Proto::BOTH {
        let send = |proof: &str| {
            proto.request(
                &s.gw,
                "GET",
                "localhost",
                "/api/x",
                &[("authorization", &dpop_auth(&bound)), ("dpop", proof)],
            )
        };
        let r = send(&client.proof("GET", htu, Some(&bound)));
        assert_eq!(
            (r.status, r.reason()),
            (401, "use_dpop_nonce".into()),
            "{proto:?}"
        );
        assert!(
            challenge(&r).starts_with("DPoP error=\"use_dpop_nonce\""),
            "{}",
            challenge(&r)
        );
        let nonce = r.header("dpop-nonce").expect("a nonce").to_owned();
        let with_nonce = |n: &str| {
            let mut c = proof_claims(htu, &bound);
            c["nonce"] = json!(n);
            client.builder("GET", htu, Some(&bound)).claims(c).sign()
        };
        let r = send(&with_nonce(&nonce));
        assert_eq!(r.status, 200, "{proto:?}: {}", r.body);
        assert!(
            r.header("dpop-nonce").is_some(),
            "{proto:?}: the next nonce"
        );
        let r = send(&with_nonce("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
        assert_eq!(r.reason(), "use_dpop_nonce", "{proto:?}: a made-up nonce");
    }
    // A report-only route lets the proof without a nonce through, and hands out a nonce
    // for the next one all the same.
    let proof = client.proof("GET", "https://localhost/rep/x", Some(&bound));
    let r = Proto::H1.request(
        &report.gw,
        "GET",
        "localhost",
        "/rep/x",
        &[("authorization", &dpop_auth(&bound)), ("dpop", &proof)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("dpop-nonce").is_some(),
        "report-only: a nonce all the same"
    );
}

/// Behind a load balancer the URI clients use is `public_url`'s (a route's own wins), never
/// what `X-Forwarded-*` says; without one, the listener's scheme and the routed host.
#[test]
fn dpop_htu_from_public_url_never_forwarded_headers() {
    let s = setup(
        "allowed",
        "",
        "public_url = \"https://API.example.com:443/v1/\"",
    );
    let keys = Keys::load();
    let client = DpopKey::new(&keys.ec, Algorithm::ES256);
    let bound = token(&s, Some(json!({ "jkt": client.thumbprint() })));
    for proto in Proto::BOTH {
        let send = |htu: &str, extra: &[(&str, &str)]| {
            let proof = client.proof("GET", htu, Some(&bound));
            let auth = dpop_auth(&bound);
            let mut h = vec![("authorization", auth.as_str()), ("dpop", proof.as_str())];
            h.extend_from_slice(extra);
            proto
                .request(&s.gw, "GET", "localhost", "/api/x", &h)
                .status
        };
        assert_eq!(
            send("https://api.example.com/v1/api/x", &[]),
            200,
            "{proto:?}"
        );
        assert_eq!(send("https://localhost/api/x", &[]), 401, "{proto:?}");
        assert_eq!(
            send(
                "https://evil.example/api/x",
                &[
                    ("x-forwarded-host", "evil.example"),
                    ("x-forwarded-proto", "https")
                ]
            ),
            401,
            "{proto:?}"
        );
    }
    drop(s);
    let s = setup("allowed", "", "");
    let bound = token(&s, Some(json!({ "jkt": client.thumbprint() })));
    let proof = client.proof("GET", "http://localhost/api/x", Some(&bound));
    let r = Proto::H1.request(
        &s.gw,
        "GET",
        "localhost",
        "/api/x",
        &[
            ("authorization", &dpop_auth(&bound)),
            ("dpop", &proof),
            ("x-forwarded-proto", "http"),
        ],
    );
    assert_eq!(
        r.reason(),
        "dpop_proof_invalid",
        "the listener is https whatever the client says"
    );
}

/// A flood of fresh proofs from one key: each passes once, and the replay store stays
/// within `server.dpop_replay_max_entries` by refusing (503), never by forgetting a proof
/// whose window is open. Plain HTTP/1.1 (the store does not care how proofs arrive).
#[test]
fn dpop_replay_store_is_bounded_and_fails_closed() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let config = standard_config(&jwks.url(), &upstream.url()).replace(
        "shutdown_grace = \"1s\"",
        "shutdown_grace = \"1s\"\ndpop_replay_max_entries = 1000",
    );
    let gw = Gateway::start(&config);
    gw.wait_ready();
    let client = DpopKey::new(&keys.ec, Algorithm::ES256);
    let mut claims = good_claims("alice", "read");
    claims["cnf"] = json!({ "jkt": client.thumbprint() });
    let bound = keys.es256().claims(claims).sign();
    let htu = "http://localhost/api/x";
    let auth = dpop_auth(&bound);
    let mut passed = Vec::new();
    let mut full = 0;
    for _ in 0..1300 {
        let proof = client.proof("GET", htu, Some(&bound));
        let r = get(
            gw.addr,
            "/api/x",
            &[("authorization", &auth), ("dpop", &proof)],
        );
        match (r.status, r.reason().as_str()) {
            (200, _) => passed.push(proof),
            (503, "dpop_replay_unavailable") => full += 1,
            other => panic!("{other:?}: {}", r.body),
        }
    }
    assert!(full >= 300, "the store refused only {full} of 1300");
    assert!(passed.len() <= 1000, "{} passed", passed.len());
    // Every proof that passed is still remembered.
    for proof in passed.iter().step_by(97) {
        let r = get(
            gw.addr,
            "/api/x",
            &[("authorization", &auth), ("dpop", proof)],
        );
        assert_eq!(r.reason(), "dpop_replay");
    }
}

/// The standard setup behind a TLS listener that asks for client certificates of
/// `tls/client-ca.pem` (`client_auth`), with `server` lines added to `[server]`.
fn mtls_setup(client_auth: &str) -> Setup {
    let tls = fixtures().join("tls");
    let file = |f: &str| format!("{:?}", tls.join(f).display().to_string());
    Setup::start_with(|c| {
        c.replace(
            "[admin]",
            &format!(
                "[server.tls]\ncert = {}\nkey = {}\nclient_ca = {}\nclient_auth = \"{client_auth}\"\n\n[admin]",
                file("server.pem"),
                file("server.key"),
                file("client-ca.pem")
            ),
        )
    })
}

/// RFC 8705: a token bound to a certificate (`cnf["x5t#S256"]`) passes only over a
/// connection that presented that certificate, over HTTP/1.1 and HTTP/2; another
/// certificate of the same CA, or none, is a 401; a certificate of a CA the listener does
/// not trust fails the handshake. `optional` still lets clients without a certificate
/// in with unbound tokens; `required` does not.
#[test]
fn certificate_bound_tokens_over_mtls() {
    let s = mtls_setup("optional");
    let mut claims = good_claims("alice", "read");
    claims["cnf"] = json!({ "x5t#S256": x5t_s256("client.pem") });
    let bound = s.keys.es256().claims(claims).sign();
    let plain = token(&s, None);
    let url = format!("https://localhost:{}/api/x", s.gw.addr.port());
    for http1_only in [true, false] {
        let get = |identity: Option<&str>, token: &str| {
            https_get(
                &mtls_client(identity, http1_only),
                &url,
                &[("authorization", &format!("Bearer {token}"))],
            )
        };
        let r = get(Some("client"), &bound).expect("handshake");
        assert_eq!(r.status, 200, "h1 only {http1_only}: {}", r.body);
        let want = if http1_only {
            ::http::Version::HTTP_11
        } else {
            ::http::Version::HTTP_2
        };
        assert_eq!(r.version, want);
        assert!(!s.upstream.last().has("client-cert"));
        for (identity, what) in [
            (Some("client2"), "another certificate"),
            (None, "no certificate"),
        ] {
            let r = get(identity, &bound).expect("handshake");
            assert_eq!(r.status, 401, "{what}: {}", r.body);
            assert!(
                r.body.contains("cert_binding_mismatch"),
                "{what}: {}",
                r.body
            );
        }
        let r = get(None, &plain).expect("handshake");
        assert_eq!(
            r.status, 200,
            "an unbound token needs no certificate: {}",
            r.body
        );
        let e = get(Some("rogue"), &bound).expect_err("an untrusted CA's certificate");
        assert!(!e.is_empty());
    }
    drop(s);
    let s = mtls_setup("required");
    let mut claims = good_claims("alice", "read");
    claims["cnf"] = json!({ "x5t#S256": x5t_s256("client.pem") });
    let bound = s.keys.es256().claims(claims).sign();
    let url = format!("https://localhost:{}/api/x", s.gw.addr.port());
    let r = https_get(
        &mtls_client(Some("client"), false),
        &url,
        &[("authorization", &format!("Bearer {bound}"))],
    );
    assert_eq!(r.expect("handshake").status, 200);
    let r = https_get(
        &mtls_client(None, false),
        &url,
        &[("authorization", &format!("Bearer {bound}"))],
    );
    assert!(
        r.is_err(),
        "required: no handshake without a certificate: {r:?}"
    );
}

/// A TLS-terminating proxy in front passes the certificate in RFC 9440's `Client-Cert`:
/// believed from `trusted_client_cert_peers`, ignored (and removed) from anyone else, and
/// never forwarded.
#[test]
fn client_cert_header_only_from_trusted_peers() {
    use base64::Engine as _;
    let field = |name: &str| {
        format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(cert_der(name))
        )
    };
    for (peers, trusted) in [
        ("[\"127.0.0.1\"]", true),
        ("[\"10.0.0.0/8\", \"::1/128\"]", false),
    ] {
        let s = Setup::start_with(|c| {
            c.replace(
                "shutdown_grace = \"1s\"",
                &format!("shutdown_grace = \"1s\"\ntrusted_client_cert_peers = {peers}"),
            )
        });
        let mut claims = good_claims("alice", "read");
        claims["cnf"] = json!({ "x5t#S256": x5t_s256("client.pem") });
        let bound = s.keys.es256().claims(claims).sign();
        let plain = token(&s, None);
        let send = |token: &str, cert: Option<&str>| {
            let auth = format!("Bearer {token}");
            let mut h = vec![("authorization", auth.clone())];
            if let Some(c) = cert {
                h.push(("client-cert", field(c)));
            }
            let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
            get(s.gw.addr, "/api/x", &h)
        };
        let r = send(&bound, Some("client.pem"));
        if trusted {
            assert_eq!(r.status, 200, "{}", r.body);
        } else {
            assert_eq!(
                r.reason(),
                "cert_binding_mismatch",
                "an untrusted peer's header"
            );
        }
        assert_eq!(
            send(&bound, Some("client2.pem")).reason(),
            "cert_binding_mismatch"
        );
        assert_eq!(send(&bound, None).reason(), "cert_binding_mismatch");
        let r = send(&plain, Some("client.pem"));
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(!s.upstream.last().has("client-cert"), "never forwarded");
    }
}

/// A reload that widens the proof window (`dpop_max_age`) must not reopen a proof used
/// under the narrower one: the replay store keeps proofs for the window in force, not the
/// one they were first seen under. (Waits for the narrow window to pass: about 3 s.)
#[test]
fn a_reload_widening_the_window_never_reopens_a_used_proof() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let narrow = standard_config(&jwks.url(), &upstream.url())
        .replace("leeway = \"30s\"", "leeway = \"0s\"\ndpop_max_age = \"2s\"");
    let gw = Gateway::start(&narrow);
    gw.wait_ready();
    let client = DpopKey::new(&keys.ec, Algorithm::ES256);
    let mut claims = good_claims("alice", "read");
    claims["cnf"] = json!({ "jkt": client.thumbprint() });
    let bound = keys.es256().claims(claims).sign();
    let iat = now();
    let proof = client.proof("GET", "http://localhost/api/x", Some(&bound));
    let auth = dpop_auth(&bound);
    let send = || {
        get(
            gw.addr,
            "/api/x",
            &[("authorization", &auth), ("dpop", &proof)],
        )
    };
    assert_eq!(send().status, 200);
    std::fs::write(
        gw.config_path(),
        narrow.replace("dpop_max_age = \"2s\"", "dpop_max_age = \"60s\""),
    )
    .unwrap();
    assert!(gw.wait_log("config reloaded", std::time::Duration::from_secs(8)));
    // Past the narrow window (iat + 2 s), well inside the wide one.
    while now() < iat + 3 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(send().reason(), "dpop_replay");
}
