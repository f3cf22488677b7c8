//! Report-only routes (issue 13): what a route in `mode = "report"` would refuse for a token
//! or authorization reason goes through anyway, without anything the token said, and is
//! counted and logged as `would_reject`; request-safety refusals stay enforced.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::support::tokens::{jwk, jwks_of};
use crate::support::*;

const API_ROUTE: &str = "name = \"api\"\npath_prefix = \"/api\"\nupstream = \"legacy\"";

/// The standard TLS setup with the `api` route report-only and `forward_token` on.
fn report_setup() -> Setup {
    Setup::start_tls_with(|c| {
        assert!(c.contains(API_ROUTE));
        c.replace(API_ROUTE, &format!("{API_ROUTE}\nmode = \"report\""))
            .replace("forward_token = false", "forward_token = true")
    })
}

#[test]
fn a_report_only_route_forwards_what_it_would_refuse_and_counts_why() {
    let s = report_setup();
    let mut expired = good_claims("alice", "read");
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 7200);
    let expired = format!("Bearer {}", s.keys.rs256().claims(expired).sign());
    let good = format!(
        "Bearer {}",
        s.keys.rs256().claims(good_claims("alice", "read")).sign()
    );
    let cases: [(&str, Option<&str>, &str); 3] = [
        ("missing", None, "missing_token"),
        ("expired", Some(&expired), "expired"),
        ("garbage", Some("Bearer abc.def.ghi"), "malformed_token"),
    ];
    for proto in Proto::BOTH {
        for (what, auth, reason) in cases {
            let id = format!("report-{proto:?}-{what}");
            let mut headers = vec![("x-request-id", id.as_str()), ("x-user-id", "root")];
            if let Some(a) = auth {
                headers.push(("authorization", a));
            }
            let before = s.upstream.count();
            let r = proto.request(&s.gw, "GET", "localhost", "/api/orders", &headers);
            assert_eq!(r.status, 200, "{proto:?} {what}: {r:?}");
            assert_eq!(
                s.upstream.count(),
                before + 1,
                "{proto:?} {what}: forwarded"
            );
            let seen = s.upstream.last();
            assert_eq!(seen.path, "/api/orders");
            for name in ["x-user-id", "x-scopes", "x-org-id", "authorization"] {
                assert!(
                    seen.all(name).is_empty(),
                    "{proto:?} {what}: {name} reached the upstream: {:?}",
                    seen.headers
                );
            }
            let line = s.gw.access_line(&id);
            assert_eq!(line["decision"], "would_reject", "{line}");
            assert_eq!(line["reason"], reason, "{line}");
            assert_eq!(line["route"], "api", "{line}");
        }
        // A token that passes is forwarded with its claims (and, with forward_token, itself).
        let good_id = format!("report-{proto:?}-good");
        let r = proto.request(
            &s.gw,
            "GET",
            "localhost",
            "/api/orders",
            &[("authorization", &good), ("x-request-id", &good_id)],
        );
        assert_eq!(r.status, 200, "{proto:?}: {r:?}");
        let seen = s.upstream.last();
        assert_eq!(seen.all("x-user-id"), ["alice"], "{proto:?}");
        assert_eq!(seen.all("authorization"), [good.as_str()], "{proto:?}");
        // Counted once its access line is written (pingora's logging phase, after the answer).
        assert_eq!(s.gw.access_line(&good_id)["decision"], "allowed");
    }
    let metrics = s.gw.metrics();
    for (_, _, reason) in cases {
        assert_eq!(
            metric_value(
                &metrics,
                &format!(
                    "authgate_report_only_rejections_total{{reason=\"{reason}\",route=\"api\"}}"
                )
            ),
            2.0,
            "{reason} over h1 and h2: {metrics}"
        );
    }
    assert!(
        !metrics.contains("authgate_rejections_total{reason=\"missing_token\",route=\"api\"}"),
        "not a refusal"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "authgate_requests_total{outcome=\"allowed\",route=\"api\"}"
        ),
        8.0,
        "counted as allowed: {metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "authgate_route_info{mode=\"report\",route=\"api\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            "authgate_route_info{mode=\"enforce\",route=\"public\"}"
        ),
        1.0
    );
}

/// Method, path, headers, and the status and reason they must get.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

/// Request-safety refusals stay enforced on a report-only route, and the other routes keep
/// enforcing everything.
#[test]
fn a_report_only_route_still_enforces_request_safety() {
    let s = report_setup();
    let good = format!(
        "Bearer {}",
        s.keys.rs256().claims(good_claims("alice", "read")).sign()
    );
    let huge = format!("Bearer {}", "a".repeat(20_000));
    for proto in Proto::BOTH {
        let cases: Vec<Case> = vec![
            ("GET", "/api/%00", vec![], 400, "bad_path"),
            ("get", "/api/orders", vec![], 400, "bad_method"),
            (
                "GET",
                "/api/orders",
                vec![("authorization", &good), ("authorization", &good)],
                400,
                "multiple_authorization",
            ),
            (
                "GET",
                "/api/orders",
                vec![("authorization", &huge)],
                401,
                "token_too_large",
            ),
            // `api-delete` is not report-only: a missing scope is refused there.
            (
                "DELETE",
                "/api/orders/7",
                vec![("authorization", &good)],
                403,
                "insufficient_scope",
            ),
        ];
        for (method, path, headers, status, reason) in cases {
            if proto == Proto::H2 && method == "get" {
                continue; // HTTP/2 clients refuse to send a lowercase method.
            }
            let before = s.upstream.count();
            let r = proto.request(&s.gw, method, "localhost", path, &headers);
            assert_eq!(
                (r.status, r.reason().as_str()),
                (status, reason),
                "{proto:?} {method} {path}: {r:?}"
            );
            assert_eq!(
                s.upstream.count(),
                before,
                "{proto:?} {reason}: not forwarded"
            );
        }
    }
}

/// `authgate check` marks a report-only route and warns about it; `[defaults] mode` applies to
/// every route that does not say otherwise (never to `auth = "none"`), and saying `report` on
/// an `auth = "none"` route is an error.
#[test]
fn check_shows_report_only_routes() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.toml");
    let base = standard_config(&jwks.url(), "http://127.0.0.1:9");
    std::fs::write(&path, format!("{base}\n[defaults]\nmode = \"report\"\n")).unwrap();
    let (ok, out, err) = check_config(&path);
    assert!(ok, "{err}");
    let line = |out: &str, name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}: {out}"))
            .to_owned()
    };
    assert!(line(&out, "api").contains("mode=REPORT-ONLY"), "{out}");
    assert!(line(&out, "admin").contains("mode=REPORT-ONLY"), "{out}");
    assert!(
        !line(&out, "public").contains("REPORT"),
        "auth = none: {out}"
    );
    assert!(
        out.contains("warning: routes[2] (api) is report-only"),
        "{out}"
    );

    let enforce_api = base.replace(API_ROUTE, &format!("{API_ROUTE}\nmode = \"enforce\""));
    std::fs::write(
        &path,
        format!("{enforce_api}\n[defaults]\nmode = \"report\"\n"),
    )
    .unwrap();
    let (ok, out, err) = check_config(&path);
    assert!(ok, "{err}");
    assert!(
        !line(&out, "api").contains("REPORT"),
        "the route's own mode wins: {out}"
    );

    let public = "name = \"public\"\npath_prefix = \"/public\"\nauth = \"none\"";
    assert!(base.contains(public));
    std::fs::write(
        &path,
        base.replace(public, &format!("{public}\nmode = \"report\"")),
    )
    .unwrap();
    let (ok, _, err) = check_config(&path);
    assert!(!ok);
    assert!(
        err.contains("routes[0].mode") && err.contains("refuses nothing"),
        "{err}"
    );
    std::fs::write(
        &path,
        base.replace(API_ROUTE, &format!("{API_ROUTE}\nmode = \"reprot\"")),
    )
    .unwrap();
    let (ok, _, err) = check_config(&path);
    assert!(!ok);
    assert!(err.contains("mode"), "{err}");
}

/// An unknown `kid` on a report-only route waits for the one JWKS refetch, as on an
/// enforcing route: a key the provider just rotated in verifies (claims forwarded), and only
/// a `kid` still unknown after it is a would-be refusal.
#[test]
fn an_unknown_kid_is_refetched_on_a_report_only_route() {
    let keys = Keys::load();
    let jwks = JwksServer::start(jwks_of(&[jwk(&keys.rsa, Algorithm::RS256, "rsa", true)]));
    let up = Upstream::start();
    let config = standard_config(&jwks.url(), &up.url())
        .replace(API_ROUTE, &format!("{API_ROUTE}\nmode = \"report\""));
    let gw = Gateway::start(&config);
    gw.wait_ready();
    let ec = keys.es256().claims(good_claims("alice", "read")).sign();
    let r = gw.get_with("/api/x", &ec);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        up.last().all("x-user-id").is_empty(),
        "not verified: no claims"
    );
    let fetched = jwks.fetches();
    jwks.set(keys.standard_jwks());
    // Requests with that kid trigger the refetch (the background refresh is 5 minutes away):
    // inside the 1 s cooldown they are released and the fetch follows when it ends. Without
    // the report-mode refetch this never verifies.
    assert!(
        eventually(Duration::from_secs(5), || {
            gw.get_with("/api/x", &ec);
            up.last().all("x-user-id") == ["alice"]
        }),
        "the rotated-in key never verified: {}",
        gw.logs()
    );
    assert!(jwks.fetches() > fetched, "a refetch happened");
    let metrics = gw.metrics();
    assert!(
        metric_value(
            &metrics,
            "authgate_report_only_rejections_total{reason=\"unknown_kid\",route=\"api\"}"
        ) >= 1.0,
        "{metrics}"
    );
}

/// A would-be refusal still counts when the upstream then fails (the access line carries it
/// as `would_reject` next to the failure).
#[test]
fn a_would_be_refusal_counts_when_the_upstream_fails() {
    let (_jwks, gw) = gateway_with_dead_upstream(|c| {
        c.replace(API_ROUTE, &format!("{API_ROUTE}\nmode = \"report\""))
    });
    let r = get(gw.addr, "/api/x", &[("x-request-id", "report-dead")]);
    assert_eq!(
        (r.status, r.reason().as_str()),
        (502, "upstream_unavailable")
    );
    let line = gw.access_line("report-dead");
    assert_eq!(line["decision"], "error", "{line}");
    assert_eq!(line["would_reject"], "missing_token", "{line}");
    let metrics = gw.metrics();
    assert_eq!(
        metric_value(
            &metrics,
            "authgate_report_only_rejections_total{reason=\"missing_token\",route=\"api\"}"
        ),
        1.0,
        "{metrics}"
    );
}

/// A would-be refusal still counts when the client's body then fails the request (408
/// `body_timeout`), once.
#[test]
fn a_would_be_refusal_counts_when_the_body_fails() {
    let s = Setup::start_with(|c| c.replace(API_ROUTE, &format!("{API_ROUTE}\nmode = \"report\"")));
    let half = b"POST /api/x HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: report-body\r\nContent-Length: 10\r\n\r\n12345";
    let r = send(s.gw.addr, half);
    assert_eq!(
        (r.status, r.reason().as_str()),
        (408, "body_timeout"),
        "{r:?}"
    );
    let line = s.gw.access_line("report-body");
    assert_eq!(line["would_reject"], "missing_token", "{line}");
    let metrics = s.gw.metrics();
    assert_eq!(
        metric_value(
            &metrics,
            "authgate_report_only_rejections_total{reason=\"missing_token\",route=\"api\"}"
        ),
        1.0,
        "{metrics}"
    );
}
