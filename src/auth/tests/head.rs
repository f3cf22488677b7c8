//! The request head before any token: the authority from every field, and the order of the
//! message checks.

use http::header::HOST;
use http::{HeaderMap, HeaderValue, Method};

use super::{now, snapshot};
use crate::auth::{decide, request_authority, Reject, RequestHead};
use crate::formats::normalize::{normalize_authority, Authority};

/// Issue 11 (HTTP/2 host-route bypass): the authority is taken from `Host`, HTTP/2's
/// `:authority` and an absolute-form target alike, and any two that disagree are refused.
#[test]
fn authority_from_every_field_and_agreeing() {
    let hosts = |values: &[&str]| {
        let mut m = HeaderMap::new();
        for v in values {
            m.append(HOST, HeaderValue::from_str(v).unwrap());
        }
        m
    };
    let abs = |s: &str| normalize_authority(s);
    let shown = |r: Result<Authority, Reject>| r.map(|a| a.to_string());
    // `:authority` alone (HTTP/2 without `Host`) is the host.
    assert_eq!(
        shown(request_authority(
            &hosts(&[]),
            Some("Admin.Example.com:8443"),
            None
        )),
        Ok("admin.example.com:8443".into())
    );
    assert_eq!(
        shown(request_authority(
            &hosts(&["a.example"]),
            Some("a.example"),
            None
        )),
        Ok("a.example".into())
    );
    assert_eq!(
        shown(request_authority(
            &hosts(&["A.example."]),
            None,
            abs("a.example")
        )),
        Ok("a.example".into())
    );
    assert_eq!(
        request_authority(&hosts(&[]), None, None),
        Err(Reject::BadHost),
        "no authority anywhere (HTTP/1.0 without Host)"
    );
    for (h, h2, target) in [
        (vec!["public.example"], Some("admin.example"), None),
        (vec![], Some("admin.example"), abs("public.example")),
        (vec!["a.example"], None, abs("b.example")),
        (vec!["a.example:1"], Some("a.example:2"), None),
        (vec!["a.example:80"], None, abs("a.example")),
        (vec![], Some("bad host"), None),
        (vec![], Some("user@a.example"), None),
        (vec!["a.example", "a.example"], None, None),
    ] {
        assert_eq!(
            request_authority(&hosts(&h), h2, target.clone()),
            Err(Reject::BadHost),
            "{h:?} {h2:?} {target:?}"
        );
    }
}

/// The message checks come first, in a fixed order: size, the HTTP/1.1 `Host` rule,
/// framing (HTTP/1 only), then the method and the target. A request with several faults
/// always gets the same reason.
#[test]
fn message_checks_run_in_order() {
    let snap = snapshot();
    let head = |method: &'static str,
                target: &'static str,
                headers: &[(&str, &str)],
                raw: Option<&'static [u8]>,
                version| {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        decide(
            &snap,
            &RequestHead {
                method: &method,
                version,
                target: target.as_bytes(),
                authority: None,
                headers: &map,
                raw_head: raw,
                tls: false,
                client_cert: None,
            },
            now(),
        )
        .map(|g| g.route)
        .map_err(|d| d.reason)
    };
    let h11 = http::Version::HTTP_11;
    let two_lengths = [("content-length", "5"), ("content-length", "5")];
    let big = "x".repeat(40_000);
    let big: &'static str = Box::leak(big.into_boxed_str());
    let raw: &[u8] = b"GET / HTTP/1.1\r\n";
    // Over the size limit wins over everything.
    assert_eq!(
        head("get", big, &two_lengths, Some(raw), h11),
        Err(Reject::HeadersTooLarge)
    );
    // No `Host` on HTTP/1.1 before framing, method and path; even with an absolute-form target.
    assert_eq!(
        head("get", "/%zz", &two_lengths, Some(raw), h11),
        Err(Reject::BadHost)
    );
    assert_eq!(
        head("GET", "http://localhost/api/x", &[], Some(raw), h11),
        Err(Reject::BadHost)
    );
    // Framing before the method and the path.
    let host = ("host", "localhost");
    assert_eq!(
        head(
            "get",
            "/%zz",
            &[host, two_lengths[0], two_lengths[1]],
            Some(raw),
            h11
        ),
        Err(Reject::BadFraming)
    );
    assert_eq!(
        head(
            "GET",
            "/api/x",
            &[host, ("content-length", "5, 5")],
            Some(raw),
            h11
        ),
        Err(Reject::BadFraming)
    );
    let te_cl: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n";
    assert_eq!(
        head(
            "POST",
            "/api/x",
            &[host, ("transfer-encoding", "chunked")],
            Some(te_cl),
            h11
        ),
        Err(Reject::BadFraming)
    );
    assert_eq!(
        head(
            "POST",
            "/api/x",
            &[host, ("transfer-encoding", "gzip, chunked")],
            Some(raw),
            h11
        ),
        Err(Reject::BadFraming)
    );
    // Then the method, then the path.
    assert_eq!(
        head("get", "/%zz", &[host], Some(raw), h11),
        Err(Reject::BadMethod)
    );
    assert_eq!(
        head("GET", "/%zz", &[host], Some(raw), h11),
        Err(Reject::BadPath)
    );
    // HTTP/2 has no `Host` rule (`:authority` stands in) and no HTTP/1 framing to check.
    let h2 = http::Version::HTTP_2;
    assert_eq!(
        head("GET", "/open/x", &[], None, h2),
        Err(Reject::BadHost),
        "no authority at all"
    );
    assert!(head(
        "POST",
        "/open/x",
        &[host, ("transfer-encoding", "chunked")],
        None,
        h2
    )
    .is_ok());
    assert!(head(
        "POST",
        "/open/x",
        &[host, ("transfer-encoding", "chunked")],
        Some(raw),
        h11
    )
    .is_ok());
}
