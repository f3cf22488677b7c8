//! Issue 11's findings as regression tests through the real binary: input that once
//! panicked a worker, and what a panic (a bug) costs when one happens anyway.

use std::time::Duration;

use crate::support::*;

/// `exp` ≥ 2^64 s once panicked the worker after a good signature (the token cache turned
/// it into a `Duration`): the request got no answer, no log line and no metric.
#[test]
fn an_exp_beyond_any_duration_is_answered_and_logged() {
    let s = Setup::start();
    for exp in [
        serde_json::json!(18446744073709551616.0_f64),
        serde_json::json!(1e300),
        serde_json::json!(u64::MAX),
    ] {
        let mut claims = good_claims("alice", "read");
        claims["exp"] = exp.clone();
        let token = s.keys.rs256().claims(claims).sign();
        for round in 0..2 {
            let r = s.gw.get_with("/api/x", &token);
            assert_eq!(r.status, 200, "exp {exp}, round {round}: {r:?}");
        }
    }
    let m = s.gw.metrics();
    assert_eq!(
        metric_value(
            &m,
            "authgate_requests_total{outcome=\"allowed\",route=\"api\"}"
        ),
        6.0
    );
    assert_eq!(metric_value(&m, "authgate_panics_total"), 0.0);
    assert!(!s.gw.logs().contains("panic"), "{}", s.gw.logs());
}

/// A panic inside a request (injected: debug builds read `AUTHGATE_DEBUG_PANIC_PATH`) is
/// answered 500 with the usual JSON body, logged once with its location and as an access
/// line, and counted; the worker goes on serving.
#[test]
fn a_panic_is_a_500_an_access_line_and_a_metric() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let gw = Gateway::start_with_env(
        &standard_config(&jwks.url(), &upstream.url()),
        &[("AUTHGATE_DEBUG_PANIC_PATH", "/public/boom")],
    );
    gw.wait_ready();
    let r = get(gw.addr, "/public/boom", &[]);
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(r.reason(), "internal_error");
    assert!(r.header("x-request-id").is_some());
    assert_eq!(upstream.count(), 0);
    // The same worker threads serve on.
    for _ in 0..4 {
        assert_eq!(get(gw.addr, "/public/ok", &[]).status, 200);
    }
    assert!(gw.wait_log("\"reason\":\"internal_error\"", Duration::from_secs(5)));
    let logs = gw.logs();
    let access = logs
        .lines()
        .find(|l| l.contains("authgate::access") && l.contains("internal_error"))
        .unwrap_or_else(|| panic!("no access line: {logs}"));
    assert!(access.contains("\"decision\":\"error\""), "{access}");
    assert!(access.contains("\"status\":500"), "{access}");
    let panic_lines: Vec<&str> = logs.lines().filter(|l| l.contains("panic")).collect();
    assert_eq!(panic_lines.len(), 1, "one line, no backtrace: {logs}");
    assert!(
        panic_lines[0].contains("src/proxy.rs:"),
        "{}",
        panic_lines[0]
    );
    let m = gw.metrics();
    assert_eq!(metric_value(&m, "authgate_panics_total"), 1.0);
    assert_eq!(
        metric_value(&m, "authgate_requests_total{outcome=\"error\",route=\"-\"}"),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            "authgate_rejections_total{reason=\"internal_error\",route=\"-\"}"
        ),
        1.0
    );
}

/// HTTP/2 heads are bounded like HTTP/1 ones: a header list over `max_header_bytes` never
/// reaches the upstream (the h2 layer refuses to decode it and answers 431 itself).
#[test]
fn an_http2_header_list_over_max_header_bytes_is_refused() {
    let s = Setup::start_tls();
    let host = format!("localhost:{}", s.gw.addr.port());
    let big = "a".repeat(40 << 10);
    let r = Proto::H2.request(&s.gw, "GET", &host, "/public/x", &[("x-big", &big)]);
    assert_eq!(r.status, 431, "{r:?}");
    assert_eq!(s.upstream.count(), 0);
    let r = Proto::H2.request(&s.gw, "GET", &host, "/public/x", &[("x-small", "a")]);
    assert_eq!(r.status, 200, "{r:?}");
}

/// Findings of the black-box attack on this release build, as regression tests:
/// a refusal of a HEAD request carries no body (over HTTP/2 a body is a stream error), and
/// HTTP/2's split `cookie` fields reach the HTTP/1.1 upstream as one `Cookie`.
#[test]
fn head_refusals_have_no_body_and_cookies_are_joined() {
    let s = Setup::start_tls();
    let host = format!("localhost:{}", s.gw.addr.port());
    for proto in Proto::BOTH {
        for (path, status) in [("/api/x", 401), ("/nowhere", 404), ("/public/%2f", 400)] {
            let r = proto.request(&s.gw, "HEAD", &host, path, &[]);
            assert_eq!(r.status, status, "{proto:?} HEAD {path}: {r:?}");
            assert!(r.body.is_empty(), "{proto:?} HEAD {path}: {r:?}");
            assert!(r.header("content-length").is_some(), "{proto:?} {r:?}");
        }
        let r = proto.request(&s.gw, "GET", &host, "/api/x", &[]);
        assert_eq!(
            r.reason(),
            "missing_token",
            "{proto:?}: GET still has its body"
        );
    }
    let r = Proto::H2.request(
        &s.gw,
        "GET",
        &host,
        "/public/c",
        &[
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("x_request_id", "spoofed"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let seen = s.upstream.last();
    assert_eq!(seen.all("cookie"), vec!["a=1; b=2"]);
    assert!(!seen.has("x_request_id"));
    assert_ne!(seen.one("x-request-id"), "spoofed");
}

/// Pipelined requests after a bodyless one are all answered in order and all reach the
/// upstream (pingora alone dropped everything after the first, unanswered).
#[test]
fn pipelined_requests_are_all_answered() {
    let s = Setup::start();
    let raw = b"GET /public/p1 HTTP/1.1\r\nHost: localhost\r\n\r\n\
GET /public/p2 HTTP/1.1\r\nHost: localhost\r\n\r\n\
POST /public/p3 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let got = send(s.gw.addr, raw);
    let text = got.body.clone();
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(
        text.matches("HTTP/1.1 200").count(),
        2,
        "three answers in one stream: {text}"
    );
    let paths: Vec<String> = s.upstream.all().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, vec!["/public/p1", "/public/p2", "/public/p3"]);
    assert_eq!(s.upstream.last().body, b"hello");
}
