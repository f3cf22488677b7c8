//! The admin listener: metrics with bounded labels, probes, and none of it via the proxy port.

use std::time::Duration;

use crate::support::*;

#[test]
fn metrics_count_outcomes_and_reasons() {
    let s = Setup::start();
    let t = s.token("read");
    assert_eq!(s.gw.get_with("/api/x", &t).status, 200);
    assert_eq!(get(s.gw.addr, "/api/x", &[]).status, 401);
    assert_eq!(get(s.gw.addr, "/nope/123", &[]).status, 404);
    assert!(eventually(std::time::Duration::from_secs(5), || s
        .gw
        .metrics()
        .contains("route=\"-\"")));
    let m = s.gw.metrics();
    for line in [
        "authgate_requests_total{outcome=\"allowed\",route=\"api\"} 1",
        "authgate_requests_total{outcome=\"rejected\",route=\"api\"} 1",
        "authgate_rejections_total{reason=\"missing_token\",route=\"api\"} 1",
        "authgate_rejections_total{reason=\"no_route\",route=\"-\"} 1",
        "authgate_jwks_fetches_total{provider=\"corp\",result=\"success\"} 1",
        "authgate_request_duration_seconds_count{route=\"api\"} 2",
        "authgate_config_reloads_total{result=\"success\"} 0",
        "authgate_jwks_keys{provider=\"corp\"} 4",
        "authgate_build_info{version=\"",
    ] {
        assert!(m.contains(line), "missing {line} in\n{m}");
    }
    assert!(!m.contains("/nope/123"), "paths are never labels");
    assert!(!m.contains("alice"), "subjects are never labels");
}

#[test]
fn probes_and_no_admin_via_proxy() {
    let s = Setup::start();
    assert_eq!(get(s.gw.admin, "/healthz", &[]).status, 200);
    assert!(eventually(std::time::Duration::from_secs(5), || get(
        s.gw.admin,
        "/readyz",
        &[]
    )
    .status
        == 200));
    for p in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(
            get(s.gw.addr, p, &[]).status,
            404,
            "{p} must not be served on the proxy port"
        );
    }
}

#[test]
fn not_ready_until_keys_load() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    jwks.set_status(500);
    let up = Upstream::start();
    let gw = Gateway::start(&standard_config(&jwks.url(), &up.url()));
    let r = get(gw.admin, "/readyz", &[]);
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("corp"), "{r:?}");
    let t = keys.rs256().claims(good_claims("alice", "read")).sign();
    let r = gw.get_with("/api/x", &t);
    assert_eq!(r.status, 503, "keys not loaded: {r:?}");
    assert_eq!(r.reason(), "keys_unavailable");
    // auth = "none" routes do not depend on keys.
    assert_eq!(get(gw.addr, "/public/x", &[]).status, 200);
    jwks.set_status(200);
    assert!(eventually(std::time::Duration::from_secs(10), || get(
        gw.admin,
        "/readyz",
        &[]
    )
    .status
        == 200));
    assert_eq!(gw.get_with("/api/x", &t).status, 200);
}

#[test]
fn sigterm_turns_readiness_off_keeps_serving_then_exits() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let up = Upstream::start();
    let config = standard_config(&jwks.url(), &up.url())
        .replace("shutdown_delay = \"0s\"", "shutdown_delay = \"3s\"");
    let mut gw = Gateway::start(&config);
    gw.wait_ready();
    let start = std::time::Instant::now();
    gw.signal("TERM");
    assert!(eventually(std::time::Duration::from_secs(2), || get(
        gw.admin,
        "/readyz",
        &[]
    )
    .status
        == 503));
    // Still serving while endpoints are removed.
    assert_eq!(get(gw.addr, "/public/x", &[]).status, 200);
    let status = gw
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("exits after delay + grace");
    assert!(status.success(), "{status:?}");
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(2900),
        "waited the shutdown delay"
    );
    assert!(
        gw.wait_log(
            "drained: no request in flight",
            std::time::Duration::from_secs(1)
        ),
        "{}",
        gw.logs()
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "idle: exits without waiting the 1s grace out... and never pingora's 300s"
    );
}

/// A request in flight on a keep-alive connection when SIGTERM arrives is finished (the
/// listener closes meanwhile); an idle keep-alive connection does not hold the exit back;
/// the process exits as soon as the last request is done, well before `shutdown_grace`.
#[test]
fn in_flight_requests_finish_across_sigterm_then_exit_early() {
    use std::io::{Read, Write};
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let up = Upstream::start();
    let config = standard_config(&jwks.url(), &up.url())
        .replace("shutdown_delay = \"0s\"", "shutdown_delay = \"1s\"")
        .replace("shutdown_grace = \"1s\"", "shutdown_grace = \"20s\"")
        .replace("read_timeout = \"1s\"", "read_timeout = \"10s\"");
    let mut gw = Gateway::start(&config);
    gw.wait_ready();
    let req = b"GET /public/slow HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let read_response = |s: &mut std::net::TcpStream| {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&buf).contains("upstream ok") {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        crate::support::http::parse(&buf)
    };
    let connect = || {
        let s = std::net::TcpStream::connect(gw.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(15)))
            .unwrap();
        s
    };
    // Two keep-alive connections, each with one request done.
    let (mut busy, mut idle) = (connect(), connect());
    for s in [&mut busy, &mut idle] {
        s.write_all(req).unwrap();
        assert_eq!(read_response(s).status, 200);
    }
    // The busy one starts a 3 s request; SIGTERM arrives while it is upstream.
    up.set_delay(std::time::Duration::from_secs(3));
    busy.write_all(req).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let start = std::time::Instant::now();
    gw.signal("TERM");
    let r = read_response(&mut busy);
    assert_eq!(r.status, 200, "the in-flight request finished: {r:?}");
    assert_eq!(r.body, "upstream ok");
    let status = gw
        .wait_exit(std::time::Duration::from_secs(15))
        .expect("exits");
    assert!(status.success(), "{status:?}");
    let took = start.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(2500),
        "waited for the request: {took:?}"
    );
    assert!(
        took < std::time::Duration::from_secs(6),
        "exited once drained, not after the 20s grace: {took:?}"
    );
    // The idle connection was closed, not answered.
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(gw.logs().contains("drained: no request in flight"));
}

/// Traffic that keeps arriving while Kubernetes removes the endpoint (readiness already
/// failing, within `shutdown_delay`) is all served: zero failed requests across SIGTERM.
#[test]
fn no_request_fails_during_the_shutdown_delay() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let up = Upstream::start();
    let config = standard_config(&jwks.url(), &up.url())
        .replace("shutdown_delay = \"0s\"", "shutdown_delay = \"3s\"");
    let mut gw = Gateway::start(&config);
    gw.wait_ready();
    let token = keys.rs256().claims(good_claims("alice", "read")).sign();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = gw.addr;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, token) = (stop.clone(), token.clone());
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = get(
                        addr,
                        "/api/x",
                        &[("Authorization", &format!("Bearer {token}"))],
                    );
                    if r.status == 200 {
                        ok += 1;
                    } else {
                        failed.push(r.status);
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let term = std::time::Instant::now();
    gw.signal("TERM");
    assert!(eventually(std::time::Duration::from_secs(2), || get(
        gw.admin,
        "/readyz",
        &[]
    )
    .status
        == 503));
    // The load balancer would stop sending about now; keep going until 2 s after SIGTERM
    // (1 s inside the 3 s delay).
    std::thread::sleep(std::time::Duration::from_secs(2).saturating_sub(term.elapsed()));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let (ok, failed) = w.join().unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during the shutdown delay: {failed:?}"
        );
        total += ok;
    }
    assert!(total > 20, "only {total} requests were made");
    assert!(gw
        .wait_exit(std::time::Duration::from_secs(30))
        .is_some_and(|s| s.success()));
}

/// The access-log lines (JSON) of a gateway so far.
fn access_lines(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "authgate::access")
        .collect()
}

#[test]
fn one_access_line_per_request_with_durations_and_sub_only_when_asked() {
    let s = Setup::start();
    let token = s.token("read");
    let r = get(
        s.gw.addr,
        "/api/orders?access_token=secret",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-request-id", "req-42"),
        ],
    );
    assert_eq!(r.status, 200);
    let r = get(s.gw.addr, "/api/orders", &[]);
    assert_eq!(r.status, 401);
    assert!(eventually(Duration::from_secs(5), || access_lines(&s.gw)
        .len()
        == 2));
    let lines = access_lines(&s.gw);
    let ok = &lines[0];
    assert_eq!(ok["request_id"], "req-42");
    assert_eq!(ok["route"], "api");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/api/orders", "no query string in logs");
    assert_eq!(ok["decision"], "allowed");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["upstream_status"], 200);
    for field in ["duration_ms", "auth_ms", "upstream_ms"] {
        assert!(
            ok[field].as_f64().is_some_and(|v| v >= 0.0),
            "{field}: {ok}"
        );
    }
    assert!(
        ok.get("sub").is_none(),
        "sub is logged only with log_subject: {ok}"
    );
    assert_eq!(s.upstream.last().one("x-request-id"), "req-42");
    let refused = &lines[1];
    assert_eq!(refused["decision"], "rejected");
    assert_eq!(refused["reason"], "missing_token");
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["upstream_status"], 0);
    assert!(refused.get("upstream_ms").is_none());
    let generated = refused["request_id"].as_str().unwrap();
    assert_eq!(generated.len(), 32, "generated when absent: {generated}");
    let logs = s.gw.logs();
    assert!(!logs.contains(&token) && !logs.contains("secret"));

    let m = s.gw.metrics();
    assert_eq!(
        metric_value(&m, "authgate_auth_duration_seconds_count{route=\"api\"}"),
        2.0
    );
    assert_eq!(
        metric_value(
            &m,
            "authgate_upstream_duration_seconds_count{route=\"api\"}"
        ),
        1.0,
        "only the request that went upstream"
    );

    // With log_subject = true the token's sub is in the line, and nothing else of the claims.
    let jwks = JwksServer::start(s.keys.standard_jwks());
    let config = standard_config(&jwks.url(), &s.upstream.url())
        .replace("[admin]", "log_subject = true\n\n[admin]");
    let gw = Gateway::start(&config);
    let r = gw.get_with("/api/orders", &token);
    assert_eq!(r.status, 200);
    assert!(eventually(Duration::from_secs(5), || access_lines(&gw)
        .len()
        == 1));
    let line = &access_lines(&gw)[0];
    assert_eq!(line["sub"], "alice", "{line}");
    assert!(!gw.logs().contains("\"org\""), "no other claims");
}

/// SIGINT stops at once (status 130), even with a shutdown delay and after traffic, and
/// the last log lines are written: no spinning accept loop, no lost lines.
#[test]
fn sigint_stops_at_once() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let up = Upstream::start();
    let config = standard_config(&jwks.url(), &up.url())
        .replace("shutdown_delay = \"0s\"", "shutdown_delay = \"30s\"");
    for _ in 0..3 {
        let mut gw = Gateway::start(&config);
        gw.wait_ready();
        assert_eq!(get(gw.addr, "/public/x", &[]).status, 200);
        let start = std::time::Instant::now();
        gw.signal("INT");
        let status = gw
            .wait_exit(std::time::Duration::from_secs(5))
            .expect("exits at once");
        assert_eq!(status.code(), Some(130), "{status:?}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert!(gw.logs().contains("SIGINT: stopping now"), "{}", gw.logs());
        assert!(!gw.logs().contains("Accept() failed"), "{}", gw.logs());
    }
}
