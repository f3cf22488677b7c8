//! The upstream request's headers: spoofable and hop-by-hop headers out, claims in.

use http::header::{HeaderName, AUTHORIZATION, CONNECTION, COOKIE, UPGRADE};
use http::{HeaderMap, HeaderValue};

use crate::config::routes::{Route, TokenSource};
use crate::config::HeaderPolicy;
use crate::formats::canonical_header;

/// Headers a client could use to make the upstream act on another path, host, method or
/// client address than the one authorized (`X-Original-URL: /admin` on Symfony or IIS,
/// `X-Forwarded-Host` on host-based routing, method overrides): never forwarded. The
/// gateway sets `X-Forwarded-For`, `-Proto` and `-Host` itself.
const REWRITE_EXACT: &[&str] = &[
    "forwarded",
    "x-forwarded",
    "x-host",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
const REWRITE_PREFIXES: &[&str] = &["x-forwarded-", "x-original-"];

/// Headers the gateway sets itself: the client's copies go in every spelling (its
/// `X-Request-Id` is taken over when it is a short token; an `x_request_id` would reach a
/// CGI-style server as a second one).
const GATEWAY_SET: &[&str] = &["x-request-id"];

/// Hop-by-hop headers (RFC 9110 §7.6.1) and proxy credentials: never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "http2-settings",
];

/// Names of the client's headers that must not reach the upstream, given the policy.
/// Compared case-insensitively and with `_` folded to `-`, so `X_User_Id` cannot slip past
/// a rule for `X-User-Id` into a server that reads both as one name.
/// `token_verified`: `Authorization` is forwarded (with `forward_token`) only when this
/// request's bearer token was the one verified, never an unchecked credential.
pub fn headers_to_remove(
    headers: &HeaderMap,
    policy: &HeaderPolicy,
    token_verified: bool,
) -> Vec<HeaderName> {
    let mut remove = Vec::new();
    // Headers named in Connection are hop-by-hop too.
    let listed: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| canonical_header(t.trim()))
        .filter(|t| !t.is_empty())
        .collect();
    let h2c = headers.get_all(UPGRADE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|p| p.trim().eq_ignore_ascii_case("h2c")))
    });
    for name in headers.keys() {
        let n = name.as_str();
        let canonical = canonical_header(n);
        // A websocket `Upgrade` stays (the upstream decides); `h2c` never passes.
        let in_connection = listed.contains(&canonical) && (canonical != "upgrade" || h2c);
        let strip = policy.strip_exact.contains(&canonical)
            || policy
                .strip_prefixes
                .iter()
                .any(|p| canonical.starts_with(p.as_str()))
            || HOP_BY_HOP.contains(&canonical.as_str())
            || in_connection
            || REWRITE_EXACT.contains(&canonical.as_str())
            || GATEWAY_SET.contains(&canonical.as_str())
            || REWRITE_PREFIXES.iter().any(|p| canonical.starts_with(p))
            || (*name == AUTHORIZATION && !(policy.forward_token && token_verified))
            || (*name == UPGRADE && h2c)
            || (*name == CONNECTION && h2c);
        if strip && !remove.contains(name) {
            remove.push(name.clone());
        }
    }
    remove
}

/// A route's token headers and token cookies, which the upstream does not get: a token read
/// from them is a credential like `Authorization`, forwarded only with `forward_token` and
/// only when it was the one verified.
pub fn token_carriers<'r>(
    route: &'r Route,
    policy: &HeaderPolicy,
    token_verified: bool,
) -> (Vec<&'r HeaderName>, Vec<&'r str>) {
    let (mut headers, mut cookies) = (Vec::new(), Vec::new());
    if policy.forward_token && token_verified {
        return (headers, cookies);
    }
    for source in &route.token_sources {
        match source {
            TokenSource::Header(h) => headers.push(h),
            TokenSource::Cookie(c) => cookies.push(c.as_str()),
            TokenSource::Authorization => {}
        }
    }
    (headers, cookies)
}

/// What becomes of the request's `Cookie` fields upstream.
#[derive(Debug, PartialEq, Eq)]
pub enum CookieEdit {
    /// As they are: one field, nothing to remove (the common case, no copy).
    Keep,
    /// One field with this value: several joined with `; ` (HTTP/2 splits them, an
    /// HTTP/1.1 upstream expects one), the token cookies left out.
    Set(HeaderValue),
    /// None left.
    Remove,
}

/// The `Cookie` fields joined into one, without the cookies named in `strip` (a route's
/// token cookies: the upstream does not get the credential unless `forward_token`).
pub fn edit_cookies(headers: &HeaderMap, strip: &[&str]) -> CookieEdit {
    let fields = headers.get_all(COOKIE);
    let name_of = |pair: &[u8]| -> Vec<u8> {
        let pair = pair.trim_ascii();
        let end = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
        pair[..end].trim_ascii().to_vec()
    };
    let stripped = |pair: &[u8]| strip.iter().any(|s| name_of(pair) == s.as_bytes());
    let several = fields.iter().nth(1).is_some();
    let any_stripped = !strip.is_empty()
        && fields
            .iter()
            .any(|f| f.as_bytes().split(|&b| b == b';').any(stripped));
    if !several && !any_stripped {
        return CookieEdit::Keep;
    }
    let mut joined = Vec::new();
    for field in fields {
        for pair in field.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if pair.is_empty() || stripped(pair) {
                continue;
            }
            if !joined.is_empty() {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(pair);
        }
    }
    if joined.is_empty() {
        return CookieEdit::Remove;
    }
    HeaderValue::from_bytes(&joined).map_or(CookieEdit::Remove, CookieEdit::Set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HeaderPolicy {
        HeaderPolicy {
            forward_claims: Vec::new(),
            strip_exact: vec!["x-user-id".into()],
            strip_prefixes: vec!["x-internal-".into()],
            forward_token: false,
        }
    }

    fn names(h: &[(&str, &str)]) -> Vec<String> {
        let mut m = HeaderMap::new();
        for (k, v) in h {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let mut out: Vec<String> = headers_to_remove(&m, &policy(), false)
            .iter()
            .map(|n| n.to_string())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn strips_spoofable_and_hop_by_hop() {
        assert_eq!(
            names(&[
                ("x-user-id", "evil"),
                ("x_user_id", "evil"),
                ("X-INTERNAL-role", "admin"),
                ("x_internal_x", "1"),
                ("authorization", "Bearer x"),
                ("keep-alive", "5"),
                ("connection", "keep-alive, x-secret"),
                ("x-secret", "1"),
                ("accept", "*/*"),
                ("x-forwarded-for", "1.2.3.4"),
                ("x_request_id", "spoofed"),
            ]),
            vec![
                "authorization",
                "keep-alive",
                "x-forwarded-for",
                "x-internal-role",
                "x-secret",
                "x-user-id",
                "x_internal_x",
                "x_request_id",
                "x_user_id"
            ]
        );
    }

    #[test]
    fn cookies_are_joined_and_token_cookies_removed() {
        let mut m = HeaderMap::new();
        assert_eq!(edit_cookies(&m, &[]), CookieEdit::Keep);
        m.append(COOKIE, HeaderValue::from_static("a=1; at=x"));
        assert_eq!(
            edit_cookies(&m, &[]),
            CookieEdit::Keep,
            "one field stays as it is"
        );
        assert_eq!(edit_cookies(&m, &["b"]), CookieEdit::Keep);
        assert_eq!(
            edit_cookies(&m, &["at"]),
            CookieEdit::Set(HeaderValue::from_static("a=1"))
        );
        m.append(COOKIE, HeaderValue::from_static("b=2"));
        m.append(COOKIE, HeaderValue::from_static(" at = y ;c=3"));
        assert_eq!(
            edit_cookies(&m, &[]),
            CookieEdit::Set(HeaderValue::from_static("a=1; at=x; b=2; at = y; c=3"))
        );
        assert_eq!(
            edit_cookies(&m, &["at"]),
            CookieEdit::Set(HeaderValue::from_static("a=1; b=2; c=3"))
        );
        // Names are exact (case-sensitive, whole).
        assert_eq!(
            edit_cookies(&m, &["AT", "a"]),
            CookieEdit::Set(HeaderValue::from_static("at=x; b=2; at = y; c=3"))
        );
        let mut only = HeaderMap::new();
        only.append(COOKIE, HeaderValue::from_static("at=x"));
        assert_eq!(edit_cookies(&only, &["at"]), CookieEdit::Remove);
    }

    #[test]
    fn h2c_upgrade_never_passes() {
        assert_eq!(
            names(&[
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", "h2c"),
                ("http2-settings", "AAA")
            ]),
            vec!["connection", "http2-settings", "upgrade"]
        );
        // A websocket upgrade is left to the upstream.
        assert_eq!(
            names(&[("connection", "Upgrade"), ("upgrade", "websocket")]),
            Vec::<String>::new()
        );
    }
}
