//! The CSRF defence for tokens a browser attaches by itself (cookies): on an unsafe method,
//! the request must show it comes from the site it is for.

use http::header::ORIGIN;
use http::{HeaderMap, Method};

use super::Reject;
use crate::config::routes::Csrf;
use crate::formats::normalize::{normalize_authority, Authority};

/// RFC 9110 §9.2.1 safe methods need no proof; every other method does (`POST`, `PUT`,
/// `PATCH`, `DELETE`, and any extension method).
pub fn check(
    method: &Method,
    headers: &HeaderMap,
    csrf: &Csrf,
    authority: &Authority,
) -> Result<(), Reject> {
    if matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return Ok(());
    }
    let ok = match csrf {
        Csrf::Off => true,
        Csrf::Header(name) => {
            let mut values = headers.get_all(name).iter();
            matches!((values.next(), values.next()), (Some(v), None) if !v.is_empty())
        }
        Csrf::SameOrigin => same_origin(headers, authority),
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
fn same_origin(headers: &HeaderMap, authority: &Authority) -> bool {
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
    origin.is_none_or(|o| origin_matches(o, authority))
}

/// `scheme://host[:port]` naming `authority`; a port left out on either side is the
/// scheme's default. `null` and anything else never match.
fn origin_matches(origin: &str, authority: &Authority) -> bool {
    let (default_port, rest) = if let Some(r) = origin.strip_prefix("https://") {
        (443, r)
    } else if let Some(r) = origin.strip_prefix("http://") {
        (80, r)
    } else {
        return false;
    };
    let Some(o) = normalize_authority(rest).filter(|_| !rest.contains('/')) else {
        return false;
    };
    o.host == authority.host
        && o.port.unwrap_or(default_port) == authority.port.unwrap_or(default_port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn same_origin_rule() {
        let here = normalize_authority("app.example.com").unwrap();
        let post =
            |pairs: &[(&str, &str)]| check(&Method::POST, &h(pairs), &Csrf::SameOrigin, &here);
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
            check(&Method::GET, &h(&[]), &Csrf::SameOrigin, &here),
            Ok(())
        );
        for m in ["PUT", "PATCH", "DELETE", "PROPFIND"] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(
                check(&m, &h(&[]), &Csrf::SameOrigin, &here),
                Err(Reject::CsrfFailed)
            );
        }
    }

    #[test]
    fn header_rule() {
        let here = normalize_authority("app.example.com").unwrap();
        let csrf = Csrf::Header(HeaderName::from_static("x-csrf"));
        let post = |pairs: &[(&str, &str)]| check(&Method::POST, &h(pairs), &csrf, &here);
        assert_eq!(post(&[("x-csrf", "1")]), Ok(()));
        assert_eq!(post(&[]), Err(Reject::CsrfFailed));
        assert_eq!(post(&[("x-csrf", "")]), Err(Reject::CsrfFailed));
        // The header rule alone decides: a same-origin Origin is not enough.
        assert_eq!(
            post(&[("origin", "https://app.example.com")]),
            Err(Reject::CsrfFailed)
        );
        assert_eq!(check(&Method::POST, &h(&[]), &Csrf::Off, &here), Ok(()));
    }
}
