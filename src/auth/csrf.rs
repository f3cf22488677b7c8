//! The CSRF defence for tokens a browser attaches by itself (cookies): on an unsafe method,
//! the request must show it comes from the site it is for.

use http::header::{ORIGIN, UPGRADE};
use http::{HeaderMap, Method};

use super::{Reject, RequestHead};
use crate::config::routes::Csrf;
use crate::formats::normalize::{split_http_url, Authority, Scheme};

/// RFC 9110 §9.2.1 safe methods need no proof; every other method does (`POST`, `PUT`,
/// `PATCH`, `DELETE`, and any extension method).
pub fn check(head: &RequestHead<'_>, csrf: &Csrf, authority: &Authority) -> Result<(), Reject> {
    let headers = head.headers;
    // A WebSocket handshake is a GET, but what it opens is a two-way channel whose answers
    // the page reads (cross-site WebSocket hijacking): an `Upgrade` needs the proof too.
    // (HTTP/2's extended CONNECT is a CONNECT, unsafe anyway.)
    if matches!(
        *head.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) && !headers.contains_key(UPGRADE)
    {
        return Ok(());
    }
    let ok = match csrf {
        Csrf::Off => true,
        Csrf::Header(name) => {
            let mut values = headers.get_all(name).iter();
            matches!((values.next(), values.next()), (Some(v), None) if !v.as_bytes().trim_ascii().is_empty())
        }
        Csrf::SameOrigin => same_origin(headers, authority, head.tls),
    };
    if ok {
        Ok(())
    } else {
        Err(Reject::CsrfFailed)
    }
}

/// `Sec-Fetch-Site`, when sent, must be `same-origin`; `Origin`, when sent, must name the
/// authority the request was routed on; at least one of them must be there. Each at most
/// once. (Both are forbidden header names: page scripts cannot set them.)
fn same_origin(headers: &HeaderMap, authority: &Authority, tls: bool) -> bool {
    let one = |name: &str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => v.to_str().map(Some).map_err(|_| ()),
            (Some(_), Some(_)) => Err(()),
        }
    };
    let (Ok(site), Ok(origin)) = (one("sec-fetch-site"), one(ORIGIN.as_str())) else {
        return false;
    };
    if site.is_none() && origin.is_none() {
        return false;
    }
    if site.is_some_and(|s| s != "same-origin") {
        return false;
    }
    origin.is_none_or(|o| origin_matches(o, authority, tls))
}

/// `scheme://host[:port]` naming `authority`; a port left out on either side is the
/// scheme's default. On a TLS connection the scheme must be `https` (an `http://` page of the
/// same host is another origin, one a network attacker can write); on a plain one either is
/// accepted, since TLS may end in front of the gateway. `null` and anything else never match.
fn origin_matches(origin: &str, authority: &Authority, tls: bool) -> bool {
    // A browser serializes an origin with a lowercase scheme (RFC 6454 §6.1).
    if !(origin.starts_with("https://") || origin.starts_with("http://")) {
        return false;
    }
    let Some((scheme, o, rest)) = split_http_url(origin) else {
        return false;
    };
    let default_port = scheme.default_port();
    rest.is_empty()
        && !(tls && scheme == Scheme::Http)
        && o.host == authority.host
        && o.port.unwrap_or(default_port) == authority.port.unwrap_or(default_port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn check_on(
        method: &Method,
        headers: &HeaderMap,
        csrf: &Csrf,
        authority: &Authority,
        tls: bool,
    ) -> Result<(), Reject> {
        let head = RequestHead {
            method,
            version: http::Version::HTTP_11,
            target: b"/",
            authority: None,
            headers,
            raw_head: None,
            tls,
            client_cert: None,
        };
        check(&head, csrf, authority)
    }

    use crate::auth::tests::header_map as h;
    use crate::formats::normalize::normalize_authority;

    #[test]
    fn same_origin_rule() {
        let here = normalize_authority("app.example.com").unwrap();
        let post = |pairs: &[(&str, &str)]| {
            check_on(&Method::POST, &h(pairs), &Csrf::SameOrigin, &here, false)
        };
        assert_eq!(post(&[("origin", "https://app.example.com")]), Ok(()));
        assert_eq!(post(&[("origin", "https://app.example.com:443")]), Ok(()));
        assert_eq!(post(&[("sec-fetch-site", "same-origin")]), Ok(()));
        assert_eq!(
            post(&[
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://app.example.com")
            ]),
            Ok(())
        );
        for bad in [
            &[][..],
            &[("origin", "https://evil.example")],
            &[("origin", "https://app.example.com.evil.example")],
            &[("origin", "https://app.example.com:8443")],
            &[("origin", "null")],
            &[("origin", "app.example.com")],
            &[("origin", "https://app.example.com/x")],
            &[("origin", "HTTPS://app.example.com")],
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "same-site")],
            &[("sec-fetch-site", "none")],
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", "https://evil.example"),
            ],
            &[
                ("origin", "https://app.example.com"),
                ("origin", "https://evil.example"),
            ],
        ] {
            assert_eq!(post(bad), Err(Reject::CsrfFailed), "{bad:?}");
        }
        // Safe methods need nothing; every other method does.
        assert_eq!(
            check_on(&Method::GET, &h(&[]), &Csrf::SameOrigin, &here, false),
            Ok(())
        );
        // Over TLS, only an https Origin is this origin.
        let tls = |o: &str| {
            check_on(
                &Method::POST,
                &h(&[("origin", o)]),
                &Csrf::SameOrigin,
                &here,
                true,
            )
        };
        assert_eq!(tls("https://app.example.com"), Ok(()));
        for o in ["http://app.example.com", "http://app.example.com:443"] {
            assert_eq!(tls(o), Err(Reject::CsrfFailed), "{o}");
        }
        // A WebSocket handshake needs it too.
        let ws = h(&[("upgrade", "websocket"), ("connection", "Upgrade")]);
        assert_eq!(
            check_on(&Method::GET, &ws, &Csrf::SameOrigin, &here, false),
            Err(Reject::CsrfFailed)
        );
        let mut ws_same = ws.clone();
        ws_same.insert(
            "origin",
            HeaderValue::from_static("https://app.example.com"),
        );
        assert_eq!(
            check_on(&Method::GET, &ws_same, &Csrf::SameOrigin, &here, false),
            Ok(())
        );
        for m in ["PUT", "PATCH", "DELETE", "PROPFIND", "CONNECT"] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(
                check_on(&m, &h(&[]), &Csrf::SameOrigin, &here, false),
                Err(Reject::CsrfFailed)
            );
        }
    }

    #[test]
    fn header_rule() {
        let here = normalize_authority("app.example.com").unwrap();
        let csrf = Csrf::Header(HeaderName::from_static("x-csrf"));
        let post = |pairs: &[(&str, &str)]| check_on(&Method::POST, &h(pairs), &csrf, &here, false);
        assert_eq!(post(&[("x-csrf", "1")]), Ok(()));
        assert_eq!(post(&[]), Err(Reject::CsrfFailed));
        assert_eq!(post(&[("x-csrf", "")]), Err(Reject::CsrfFailed));
        // HTTP/2 may deliver a value of blanks (RFC 9113 calls it malformed): still empty.
        assert_eq!(post(&[("x-csrf", " ")]), Err(Reject::CsrfFailed));
        // The header rule alone decides: a same-origin Origin is not enough.
        assert_eq!(
            post(&[("origin", "https://app.example.com")]),
            Err(Reject::CsrfFailed)
        );
        assert_eq!(
            check_on(&Method::POST, &h(&[]), &Csrf::Off, &here, false),
            Ok(())
        );
    }
}
