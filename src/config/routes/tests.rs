use http::{HeaderValue, Method};

use super::*;

fn route(name: &str, host: HostMatch, path: PathMatch, methods: Option<Vec<Method>>) -> Route {
    Route {
        name: name.to_owned(),
        host,
        path,
        methods,
        auth: AuthMode::None,
        mode: Mode::Enforce,
        providers: Vec::new(),
        require_scopes: Vec::new(),
        require_claims: Vec::new(),
        upstream: UpstreamId::new(0),
        token_sources: vec![TokenSource::Authorization],
        csrf: Csrf::SameOrigin,
        introspection: None,
        insufficient_scope_challenge: HeaderValue::from_static("Bearer"),
        htu_base: None,
        dpop_algs: None,
        dpop_only: false,
    }
}

fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(p.to_owned())
}

fn table() -> RouteTable {
    RouteTable::new(vec![
        route("root", HostMatch::Any, prefix("/"), None),
        route("api", HostMatch::Any, prefix("/api"), None),
        route(
            "api-del",
            HostMatch::Any,
            prefix("/api"),
            Some(vec![Method::DELETE, Method::PUT]),
        ),
        route("api-v2", HostMatch::Any, prefix("/api/v2"), None),
        route(
            "exact",
            HostMatch::Any,
            PathMatch::Exact("/api/v2/health".into()),
            None,
        ),
        route(
            "admin-host",
            HostMatch::Exact("admin.example.com".into()),
            prefix("/admin"),
            None,
        ),
        route(
            "wild",
            HostMatch::Suffix(".example.com".into()),
            prefix("/admin"),
            None,
        ),
        route(
            "deep-wild",
            HostMatch::Suffix(".eu.example.com".into()),
            prefix("/admin"),
            None,
        ),
        route(
            "get-only",
            HostMatch::Any,
            prefix("/ro"),
            Some(vec![Method::GET]),
        ),
    ])
    .expect("no ambiguity")
}

fn m(t: &RouteTable, host: Option<&str>, path: &str, method: Method) -> Option<String> {
    t.match_route(host, path, &method)
        .map(|i| t.get(i).name.clone())
}

#[test]
fn most_specific_route_wins() {
    let t = table();
    let get = |p: &str| m(&t, None, p, Method::GET);
    assert_eq!(get("/api").as_deref(), Some("api"));
    assert_eq!(get("/api/").as_deref(), Some("api"));
    assert_eq!(get("/api/x").as_deref(), Some("api"));
    assert_eq!(get("/apix").as_deref(), Some("root"), "whole segments only");
    assert_eq!(get("/api/v2/x").as_deref(), Some("api-v2"));
    assert_eq!(get("/api/v2/health").as_deref(), Some("exact"));
    assert_eq!(get("/api/v2/health/x").as_deref(), Some("api-v2"));
    assert_eq!(
        get("/api/v2/health/").as_deref(),
        Some("exact"),
        "a trailing slash does not escape an exact route"
    );
    assert_eq!(get("/").as_deref(), Some("root"));
    assert_eq!(
        m(&t, None, "/api/x", Method::DELETE).as_deref(),
        Some("api-del")
    );
    assert_eq!(
        m(&t, None, "/api/v2/x", Method::DELETE).as_deref(),
        Some("api-v2"),
        "longer path beats methods"
    );
    // A method-restricted route that does not list the method falls through to a shorter one.
    assert_eq!(m(&t, None, "/ro/x", Method::POST).as_deref(), Some("root"));
    assert_eq!(
        m(&t, None, "/ro/x", Method::GET).as_deref(),
        Some("get-only")
    );
}

#[test]
fn hosts_exact_then_wildcard_then_any() {
    let t = table();
    assert_eq!(
        m(&t, Some("admin.example.com"), "/admin/x", Method::GET).as_deref(),
        Some("admin-host")
    );
    assert_eq!(
        m(&t, Some("ops.example.com"), "/admin/x", Method::GET).as_deref(),
        Some("wild")
    );
    assert_eq!(
        m(&t, Some("a.b.example.com"), "/admin/x", Method::GET).as_deref(),
        Some("wild")
    );
    assert_eq!(
        m(&t, Some("x.eu.example.com"), "/admin/x", Method::GET).as_deref(),
        Some("deep-wild")
    );
    assert_eq!(
        m(&t, Some("example.com"), "/admin/x", Method::GET).as_deref(),
        Some("root"),
        "apex is not *.example.com"
    );
    assert_eq!(
        m(&t, Some("admin.example.com"), "/api/x", Method::GET).as_deref(),
        Some("api"),
        "falls back to host-less routes"
    );
    assert_eq!(
        m(&t, None, "/admin/x", Method::GET).as_deref(),
        Some("root")
    );
}

#[test]
fn default_deny_without_a_catch_all() {
    let t = RouteTable::new(vec![route("api", HostMatch::Any, prefix("/api"), None)]).unwrap();
    assert_eq!(m(&t, None, "/", Method::GET), None);
    assert_eq!(m(&t, None, "/other", Method::GET), None);
    assert_eq!(m(&t, None, "/ap", Method::GET), None);
}

#[test]
fn ambiguous_routes_are_refused() {
    let err = RouteTable::new(vec![
        route("a", HostMatch::Any, prefix("/api"), None),
        route("b", HostMatch::Any, prefix("/api"), None),
    ])
    .unwrap_err();
    assert_eq!(err, vec![Ambiguity { route: 1, other: 0 }]);
    let err = RouteTable::new(vec![
        route(
            "a",
            HostMatch::Any,
            prefix("/api"),
            Some(vec![Method::GET, Method::POST]),
        ),
        route(
            "b",
            HostMatch::Any,
            prefix("/api"),
            Some(vec![Method::POST]),
        ),
    ])
    .unwrap_err();
    assert_eq!(err.len(), 1);
    // Disjoint methods, different hosts or different path kinds are fine.
    RouteTable::new(vec![
        route("a", HostMatch::Any, prefix("/api"), Some(vec![Method::GET])),
        route(
            "b",
            HostMatch::Any,
            prefix("/api"),
            Some(vec![Method::POST]),
        ),
        route("c", HostMatch::Exact("h".into()), prefix("/api"), None),
        route("d", HostMatch::Any, PathMatch::Exact("/api".into()), None),
        route("e", HostMatch::Any, prefix("/api"), None),
    ])
    .unwrap();
}

#[test]
fn a_thousand_routes_still_match() {
    let routes = (0..1000)
        .map(|i| {
            route(
                &format!("r{i}"),
                HostMatch::Any,
                prefix(&format!("/svc{i}/v1")),
                None,
            )
        })
        .collect();
    let t = RouteTable::new(routes).unwrap();
    assert_eq!(
        m(&t, None, "/svc999/v1/x", Method::GET).as_deref(),
        Some("r999")
    );
    assert_eq!(m(&t, None, "/svc1000/v1/x", Method::GET), None);
}

/// `matching` (the linear scan `authgate explain` lists) puts first exactly the route the
/// index picks, for every host, path and method of the table above and then some.
#[test]
fn the_scan_agrees_with_the_index() {
    let t = table();
    let hosts = [
        None,
        Some("api.example.com"),
        Some("admin.example.com"),
        Some("a.b.example.com"),
        Some("example.com"),
        Some("x.eu.example.com"),
        Some("eu.example.com"),
        Some("other.test"),
    ];
    let paths = [
        "/",
        "/api",
        "/api/",
        "/api/x",
        "/apix",
        "/admin",
        "/admin/",
        "/admin/users",
        "/static/a.css",
        "/health",
        "/health/",
        "/x/y/z",
    ];
    for host in hosts {
        for path in paths {
            for method in [Method::GET, Method::POST, Method::DELETE, Method::PUT] {
                let indexed = t.match_route(host, path, &method);
                let scanned = t.matching(host, path, &method);
                assert_eq!(
                    indexed,
                    scanned.first().copied(),
                    "{host:?} {method} {path}: index {indexed:?}, scan {scanned:?}"
                );
                if let Some(winner) = indexed {
                    assert!(scanned.iter().skip(1).all(|&r| r != winner));
                }
            }
        }
    }
}
