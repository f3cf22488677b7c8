//! The admin listener: metrics with bounded labels, probes, and none of it via the proxy port.

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
        gw.wait_log("authgate stopped", std::time::Duration::from_secs(1)),
        "{}",
        gw.logs()
    );
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
