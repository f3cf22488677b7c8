//! Upstream failures: 502 when it is down, 504 when it is slow; never a hang or a 500.

use std::time::Duration;

use crate::support::*;

#[test]
fn upstream_down_is_502() {
    let (_jwks, gw) = gateway_with_dead_upstream(|c| c);
    let r = get(gw.addr, "/public/x", &[]);
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.reason(), "upstream_unavailable");
    assert_eq!(
        metric_value(
            &gw.metrics(),
            "authgate_upstream_errors_total{kind=\"connect_refused\",upstream=\"legacy\"}"
        ),
        1.0
    );
}

#[test]
fn upstream_timeout_is_504() {
    let s = Setup::start();
    s.upstream.set_delay(Duration::from_secs(3));
    let r = get(s.gw.addr, "/public/slow", &[]);
    assert_eq!(r.status, 504, "read_timeout is 1s: {r:?}");
    assert_eq!(r.reason(), "upstream_timeout");
    // An upstream failure is no refusal (issue 12): outcome `error`, never a rejection.
    let metrics = s.gw.metrics();
    assert_eq!(
        metric_value(
            &metrics,
            "authgate_requests_total{outcome=\"error\",route=\"public\"}"
        ),
        1.0
    );
    assert!(
        !metrics.contains("reason=\"upstream_timeout\""),
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &s.gw.metrics(),
            "authgate_upstream_errors_total{kind=\"read_timeout\",upstream=\"legacy\"}"
        ),
        1.0
    );
}

/// An upstream that fails a granted request is not a refusal: the access line says
/// `decision=error` with the failure's reason and kind, and it counts as
/// `outcome="error"` and an upstream error, never as a rejection.
#[test]
fn an_upstream_failure_is_an_error_not_a_refusal() {
    let (_jwks, gw) = gateway_with_dead_upstream(|c| c);
    let r = get(gw.addr, "/public/x", &[("x-request-id", "up-fail-1")]);
    assert_eq!(
        (r.status, r.reason().as_str()),
        (502, "upstream_unavailable")
    );
    let line = gw.access_line("up-fail-1");
    assert_eq!(line["decision"], "error", "{line}");
    assert_eq!(line["reason"], "upstream_unavailable", "{line}");
    assert_eq!(line["upstream_error"], "connect_refused", "{line}");
    assert_eq!(line["route"], "public", "{line}");
    let metrics = gw.metrics();
    assert_eq!(
        metric_value(
            &metrics,
            "authgate_requests_total{outcome=\"error\",route=\"public\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            "authgate_requests_total{outcome=\"rejected\",route=\"public\"}"
        ),
        0.0
    );
    assert!(
        !metrics.contains("reason=\"upstream_unavailable\""),
        "{metrics}"
    );
}

/// A request body still arriving when the upstream (which waits for it) reaches its
/// `read_timeout`, or slower than `server.body_read_timeout`, is the client's delay: 408
/// `body_timeout`, a refusal on the route, never an upstream error.
#[test]
fn a_slow_request_body_is_the_clients_timeout_not_the_upstreams() {
    let half_a_body =
        b"POST /public/slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n12345";
    let check = |s: &Setup, case: &str| {
        let r = send(s.gw.addr, half_a_body);
        assert_eq!(
            (r.status, r.reason().as_str()),
            (408, "body_timeout"),
            "{case}: {r:?}"
        );
        let metrics = s.gw.metrics();
        assert_eq!(
            metric_value(
                &metrics,
                "authgate_rejections_total{reason=\"body_timeout\",route=\"public\"}"
            ),
            1.0,
            "{case}: {metrics}"
        );
        assert!(
            !metrics.contains("kind=\"read_timeout\",upstream=\"legacy\"} 1"),
            "{case}: {metrics}"
        );
        assert_eq!(
            metric_value(
                &metrics,
                "authgate_requests_total{outcome=\"error\",route=\"public\"}"
            ),
            0.0,
            "{case}"
        );
    };
    // The upstream's read_timeout (1 s) ends first.
    check(&Setup::start(), "upstream read_timeout");
    // body_read_timeout (1 s) ends first: the upstream would wait 30 s.
    let s = Setup::start_with(|c| {
        c.replace("read_timeout = \"1s\"", "read_timeout = \"30s\"")
            .replace(
                "shutdown_delay",
                "body_read_timeout = \"1s\"\nshutdown_delay",
            )
    });
    check(&s, "body_read_timeout");
}
