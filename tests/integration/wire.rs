//! On the wire, to the letter (issue 17): every answer authgate writes itself, for GET and
//! HEAD, over HTTP/1.1 and through a strict HTTP/2 client (the `h2` crate: a body longer or
//! shorter than `content-length`, a body on a HEAD answer or a connection-specific header is
//! a stream error there, reported as status 0); and what the upstream receives for the same
//! request over both protocols.

use std::time::Duration;

use crate::support::http::Resp;
use crate::support::{Proto, Setup};

/// Headers that HTTP/2 forbids (RFC 9113 §8.2.2) and that an answer should not carry over
/// HTTP/1.1 either, `connection: close` aside.
const CONNECTION_SPECIFIC: [&str; 5] = [
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// One refusal, asked for by GET and by HEAD over both protocols: the same status and
/// challenge everywhere, a JSON body of exactly `content-length` bytes on GET, none on HEAD
/// (whose `content-length` is the GET's), no connection-specific header.
fn well_formed(what: &str, ask: impl Fn(Proto, &str) -> Resp, status: u16) {
    let mut challenges = Vec::new();
    for proto in Proto::BOTH {
        let get = ask(proto, "GET");
        let head = ask(proto, "HEAD");
        for (method, r) in [("GET", &get), ("HEAD", &head)] {
            assert_eq!(r.status, status, "{what}: {proto:?} {method}: {r:?}");
            for name in CONNECTION_SPECIFIC {
                assert!(
                    r.header(name).is_none(),
                    "{what}: {proto:?} {method}: {r:?}"
                );
            }
            if proto == Proto::H2 {
                assert!(r.header("connection").is_none(), "{what}: {r:?}");
            }
            assert_eq!(
                r.header("content-type"),
                Some("application/json"),
                "{what}: {proto:?} {method}: {r:?}"
            );
            assert!(r.header("x-request-id").is_some(), "{what}: {r:?}");
        }
        let length: usize = get
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{what}: {proto:?} GET without content-length: {get:?}"));
        assert_eq!(get.body.len(), length, "{what}: {proto:?}: {get:?}");
        let body: serde_json::Value = serde_json::from_str(&get.body)
            .unwrap_or_else(|e| panic!("{what}: {proto:?}: not JSON ({e}): {get:?}"));
        assert!(body["error"].is_string(), "{what}: {body}");
        assert!(head.body.is_empty(), "{what}: {proto:?} HEAD: {head:?}");
        assert_eq!(
            head.header("content-length"),
            get.header("content-length"),
            "{what}: {proto:?}: HEAD tells what GET gets"
        );
        assert_eq!(
            get.header("www-authenticate"),
            head.header("www-authenticate"),
            "{what}: {proto:?}"
        );
        challenges.push(get.header("www-authenticate").map(str::to_owned));
    }
    assert_eq!(
        challenges[0], challenges[1],
        "{what}: the same challenge over HTTP/1.1 and HTTP/2"
    );
    if matches!(status, 401 | 403) {
        let c = challenges[0].as_deref().unwrap_or_default();
        assert!(c.starts_with("Bearer "), "{what}: {c:?}");
    }
}

#[test]
fn every_refusal_is_well_formed_on_both_protocols() {
    let s = Setup::start_tls();
    let port = s.gw.addr.port();
    let host = format!("localhost:{port}");
    let admin_host = format!("admin.example.com:{port}");
    let read = format!("Bearer {}", s.token("read"));
    let forged = format!("Bearer {}.x", s.token("read"));
    let big = "a".repeat(40 << 10);
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        (
            "a path that cannot be routed",
            &host,
            "/public/%2f",
            vec![],
            400,
        ),
        ("no token", &host, "/api/x", vec![], 401),
        (
            "a forged token",
            &host,
            "/api/x",
            vec![("authorization", &forged)],
            401,
        ),
        (
            "a token without the scope",
            &admin_host,
            "/admin/x",
            vec![("authorization", &read)],
            403,
        ),
        ("no route", &host, "/nowhere", vec![], 404),
        (
            "headers too large",
            &host,
            "/public/x",
            vec![("x-big", &big)],
            431,
        ),
    ];
    for (what, authority, path, headers, status) in &cases {
        well_formed(
            what,
            |proto, method| proto.request(&s.gw, method, authority, path, headers),
            *status,
        );
    }
    assert_eq!(s.upstream.count(), 0, "no refusal reached the upstream");

    // 504: the upstream answers after the route's read timeout (1 s).
    s.upstream.set_delay(Duration::from_millis(1500));
    well_formed(
        "a slow upstream",
        |proto, method| proto.request(&s.gw, method, &host, "/public/slow", &[]),
        504,
    );
    s.upstream.set_delay(Duration::ZERO);
}

#[test]
fn gateway_errors_are_well_formed_on_both_protocols() {
    use crate::support::{good_claims, standard_config, Gateway, JwksServer, Keys};
    // 502: nothing listens at the upstream; 503: the JWKS server answers 500 from the start,
    // so the provider has no keys.
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    jwks.set_status(500);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let tls = crate::support::fixtures().join("tls");
    let gw = Gateway::start(
        &standard_config(&jwks.url(), &format!("http://{dead}")).replace(
            "[admin]",
            &format!(
                "[server.tls]\ncert = {:?}\nkey = {:?}\n\n[admin]",
                tls.join("server.pem").display().to_string(),
                tls.join("server.key").display().to_string()
            ),
        ),
    );
    let host = format!("localhost:{}", gw.addr.port());
    well_formed(
        "a dead upstream",
        |proto, method| proto.request(&gw, method, &host, "/public/x", &[]),
        502,
    );
    // Over HTTP/1.1 a client that keeps its connection is told it will be closed.
    let r = crate::support::h2::tls_send(
        gw.addr,
        format!("GET /public/x HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    let auth = format!(
        "Bearer {}",
        keys.rs256().claims(good_claims("alice", "read")).sign()
    );
    well_formed(
        "keys unavailable",
        |proto, method| proto.request(&gw, method, &host, "/api/x", &[("authorization", &auth)]),
        503,
    );
}

/// The same request over HTTP/1.1 and over HTTP/2 reaches the HTTP/1.1 upstream as the same
/// request: the same path, `Host` from the authority that was routed on, the same
/// forwarding headers and claims (only the request id differs, one per request).
#[test]
fn the_upstream_sees_the_same_request_over_both_protocols() {
    let s = Setup::start_tls();
    let host = format!("localhost:{}", s.gw.addr.port());
    let auth = format!("Bearer {}", s.token("read"));
    let headers = [
        ("authorization", auth.as_str()),
        ("x-custom", "v"),
        ("accept", "application/json"),
        ("cookie", "a=1"),
        ("x-user-id", "spoofed"),
    ];
    let mut seen = Vec::new();
    for proto in Proto::BOTH {
        let r = proto.request(&s.gw, "GET", &host, "/api/orders?x=1", &headers);
        assert_eq!(r.status, 200, "{proto:?}: {r:?}");
        let got = s.upstream.last();
        assert_eq!(got.path, "/api/orders?x=1", "{proto:?}");
        assert_eq!(got.one("host"), host, "{proto:?}");
        assert_eq!(got.one("x-forwarded-proto"), "https", "{proto:?}");
        assert_eq!(got.one("x-forwarded-host"), host, "{proto:?}");
        assert_eq!(got.one("x-user-id"), "alice", "{proto:?}");
        assert!(!got.one("x-request-id").is_empty());
        let mut named: Vec<(String, String)> = got
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .filter(|(n, _)| n != "x-request-id")
            .collect();
        named.sort();
        seen.push((got.method.clone(), named));
    }
    assert_eq!(
        seen[0], seen[1],
        "what the upstream received over HTTP/1.1, then over HTTP/2"
    );
}
