//! Upstream failures: 502 when it is down, 504 when it is slow; never a hang or a 500.

use std::time::Duration;

use crate::support::*;

#[test]
fn upstream_down_is_502() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    // A port that nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = Gateway::start(&standard_config(&jwks.url(), &format!("http://{dead}")));
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
    assert!(s
        .gw
        .metrics()
        .contains("authgate_rejections_total{reason=\"upstream_timeout\",route=\"public\"} 1"));
    assert_eq!(
        metric_value(
            &s.gw.metrics(),
            "authgate_upstream_errors_total{kind=\"read_timeout\",upstream=\"legacy\"}"
        ),
        1.0
    );
}
