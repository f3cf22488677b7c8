//! The upstream request's headers: spoofable and hop-by-hop headers out, claims in.

use http::header::{HeaderName, AUTHORIZATION, CONNECTION, COOKIE, UPGRADE};
use http::{HeaderMap, HeaderValue};

use crate::auth::extract::same_cookie_key;
use crate::config::routes::{Route, TokenSource};
use crate::config::HeaderPolicy;
use crate::formats::header_names::{
    is_gateway_set, is_hop_by_hop, is_identity, is_rewrite, is_sender_proof,
};
use crate::formats::{canonical_header, canonical_name};

/// Names of the client's headers that must not reach the upstream, given the policy.
/// Compared case-insensitively and with `_` folded to `-`, so `X_User_Id` cannot slip past
/// a rule for `X-User-Id` into a server that reads both as one name.
/// `carriers` says which token carriers go: `Authorization` is forwarded (with
/// `forward_token`) only when it held the token that was verified, never an unchecked
/// credential (nor one sent beside a token the route read from elsewhere).
pub fn headers_to_remove(
    headers: &HeaderMap,
    policy: &HeaderPolicy,
    carriers: &TokenCarriers<'_>,
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
        let canonical = canonical_name(n);
        let canonical: &str = &canonical;
        // A websocket `Upgrade` stays (the upstream decides); `h2c` never passes.
        let in_connection =
            listed.iter().any(|l| l == canonical) && (canonical != "upgrade" || h2c);
        let strip = policy.strip_exact.iter().any(|e| e == canonical)
            || policy
                .strip_prefixes
                .iter()
                .any(|p| canonical.starts_with(p.as_str()))
            || is_hop_by_hop(canonical)
            || in_connection
            || is_rewrite(canonical)
            || is_identity(canonical)
            || is_gateway_set(canonical)
            || is_sender_proof(canonical)
            || (*name == AUTHORIZATION && !carriers.keeps(&TokenSource::Authorization))
            || carriers.strips_header(name, canonical)
            || (*name == UPGRADE && h2c)
            || (*name == CONNECTION && h2c);
        if strip && !remove.contains(name) {
            remove.push(name.clone());
        }
    }
    remove
}

/// The upstream's hop-by-hop response headers, which are about its connection to the gateway,
/// not the client's: `Connection` (the gateway writes its own), every header it names except
/// the framing ones (pingora frames the body by them), `Keep-Alive` and `Proxy-Connection`.
pub fn strip_response_hop_by_hop(resp: &mut pingora::http::ResponseHeader) {
    if resp.headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = resp
            .headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
            .filter(|n| *n != http::header::CONTENT_LENGTH && *n != http::header::TRANSFER_ENCODING)
            .collect();
        for name in named {
            resp.remove_header(&name);
        }
        resp.remove_header(&CONNECTION);
    }
    resp.remove_header("keep-alive");
    resp.remove_header("proxy-connection");
}

/// A route's token carriers, which the upstream does not get: a token is a credential,
/// forwarded only with `forward_token`, and then only the one carrier whose token was
/// verified (`kept`). Look-alike names go always, in every spelling an upstream may read as
/// the same name (`X_Token` for `X-Token`; `ACCESS_TOKEN`, `access.token` or `access%5Ftoken`
/// for the cookie `access_token`, as PHP and case-folding parsers read them): a second,
/// unchecked token never rides along.
#[derive(Debug, Default)]
pub struct TokenCarriers<'r> {
    /// The exact name of each token header (compared in canonical form).
    headers: Vec<&'r HeaderName>,
    /// The exact name of each token cookie (compared by `same_cookie_key`).
    cookies: Vec<&'r str>,
    /// The carrier that stays: the verified token's, with `forward_token`.
    kept: Option<&'r TokenSource>,
}

impl<'r> TokenCarriers<'r> {
    /// For a request on `route` whose token, if one was verified, came from
    /// `route.token_sources[verified]`.
    pub fn of(route: &'r Route, policy: &HeaderPolicy, verified: Option<usize>) -> Self {
        let mut c = Self {
            kept: verified
                .filter(|_| policy.forward_token)
                .and_then(|i| route.token_sources.get(i)),
            ..Self::default()
        };
        for source in &route.token_sources {
            match source {
                TokenSource::Header(h) => c.headers.push(h),
                TokenSource::Cookie(n) => c.cookies.push(n.as_str()),
                TokenSource::Authorization => {}
            }
        }
        c
    }

    /// Whether `source` is the carrier that stays.
    fn keeps(&self, source: &TokenSource) -> bool {
        self.kept == Some(source)
    }

    fn strips_header(&self, name: &HeaderName, canonical: &str) -> bool {
        self.headers.iter().any(|exact| {
            same_canonical(canonical, exact.as_str())
                && !(name == *exact
                    && matches!(self.kept, Some(TokenSource::Header(k)) if k == *exact))
        })
    }

    /// Whether the cookie named `name` (as sent) is cut out.
    pub fn strips_cookie(&self, name: &[u8]) -> bool {
        self.cookies.iter().any(|exact| {
            same_cookie_key(name, exact.as_bytes())
                && !(name == exact.as_bytes()
                    && matches!(self.kept, Some(TokenSource::Cookie(c)) if c == exact))
        })
    }
}

/// Whether `canonical` (a `canonical_header`) is the canonical form of the header name
/// `name` (lowercase already, as every `HeaderName`), without building it per request.
fn same_canonical(canonical: &str, name: &str) -> bool {
    canonical.len() == name.len()
        && canonical
            .bytes()
            .zip(name.bytes())
            .all(|(c, n)| c == if n == b'_' { b'-' } else { n })
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

/// The `Cookie` fields joined into one, without the cookies `strip` says go (a route's
/// token cookies). Pairs are `;`-separated (RFC 6265); inside one, a `,` separates pairs
/// for lenient parsers, so a token pair there (`a=1, access_token=x`) is cut out of it too.
/// Everything else passes as it came, commas in values included.
pub fn edit_cookies(headers: &HeaderMap, strip: &dyn Fn(&[u8]) -> bool) -> CookieEdit {
    fn name_of(pair: &[u8]) -> &[u8] {
        let end = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
        pair[..end].trim_ascii()
    }
    fn segments(f: &HeaderValue) -> impl Iterator<Item = &[u8]> {
        f.as_bytes()
            .split(|&b| b == b';')
            .map(<[u8]>::trim_ascii)
            .filter(|p| !p.is_empty())
    }
    let stripped = |seg: &[u8]| seg.split(|&b| b == b',').any(|p| strip(name_of(p)));
    let fields = headers.get_all(COOKIE);
    let several = fields.iter().nth(1).is_some();
    if !several && !fields.iter().any(|f| segments(f).any(stripped)) {
        return CookieEdit::Keep;
    }
    let mut joined = Vec::new();
    let mut push = |piece: &[u8], sep: &[u8]| {
        if !joined.is_empty() {
            joined.extend_from_slice(sep);
        }
        joined.extend_from_slice(piece);
    };
    for field in fields {
        for seg in segments(field) {
            if !stripped(seg) {
                push(seg, b"; ");
                continue;
            }
            let kept: Vec<&[u8]> = seg
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .filter(|p| !p.is_empty() && !strip(name_of(p)))
                .collect();
            if !kept.is_empty() {
                push(&kept.join(&b", "[..]), b"; ");
            }
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

    #[test]
    fn the_upstreams_hop_by_hop_response_headers_are_dropped() {
        let mut resp = pingora::http::ResponseHeader::build(200, None).unwrap();
        for (n, v) in [
            ("Connection", "close, X-Foo"),
            ("Connection", "Content-Length, transfer-encoding"),
            ("X-Foo", "secret"),
            ("Keep-Alive", "timeout=1"),
            ("Proxy-Connection", "keep-alive"),
            ("Content-Length", "5"),
            ("Transfer-Encoding", "chunked"),
            ("X-Kept", "1"),
        ] {
            resp.append_header(n, v).unwrap();
        }
        strip_response_hop_by_hop(&mut resp);
        let mut left: Vec<_> = resp.headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        // The framing headers stay whatever the upstream named: pingora frames by them.
        assert_eq!(left, ["content-length", "transfer-encoding", "x-kept"]);
    }

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
        let mut out: Vec<String> = headers_to_remove(&m, &policy(), &TokenCarriers::default())
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

    fn strip_named<'a>(names: &'a [&'a str]) -> impl Fn(&[u8]) -> bool + 'a {
        move |n: &[u8]| names.iter().any(|x| x.as_bytes() == n)
    }

    #[test]
    fn cookies_are_joined_and_token_cookies_removed() {
        let mut m = HeaderMap::new();
        assert_eq!(edit_cookies(&m, &strip_named(&[])), CookieEdit::Keep);
        m.append(COOKIE, HeaderValue::from_static("a=1; at=x"));
        assert_eq!(
            edit_cookies(&m, &strip_named(&[])),
            CookieEdit::Keep,
            "one field stays as it is"
        );
        assert_eq!(edit_cookies(&m, &strip_named(&["b"])), CookieEdit::Keep);
        assert_eq!(
            edit_cookies(&m, &strip_named(&["at"])),
            CookieEdit::Set(HeaderValue::from_static("a=1"))
        );
        m.append(COOKIE, HeaderValue::from_static("b=2"));
        m.append(COOKIE, HeaderValue::from_static(" at = y ;c=3"));
        assert_eq!(
            edit_cookies(&m, &strip_named(&[])),
            CookieEdit::Set(HeaderValue::from_static("a=1; at=x; b=2; at = y; c=3"))
        );
        assert_eq!(
            edit_cookies(&m, &strip_named(&["at"])),
            CookieEdit::Set(HeaderValue::from_static("a=1; b=2; c=3"))
        );
        let mut only = HeaderMap::new();
        only.append(COOKIE, HeaderValue::from_static("at=x"));
        assert_eq!(
            edit_cookies(&only, &strip_named(&["at"])),
            CookieEdit::Remove
        );
        // A comma-separated pair is a pair (lenient parsers split there too) ...
        let mut comma = HeaderMap::new();
        comma.append(COOKIE, HeaderValue::from_static("a=1, at=x; prefs=b,c"));
        assert_eq!(
            edit_cookies(&comma, &strip_named(&["at"])),
            CookieEdit::Set(HeaderValue::from_static("a=1; prefs=b,c"))
        );
        // ... but a comma in another cookie's value stays as it came (issue 14's review).
        let mut h2 = HeaderMap::new();
        h2.append(COOKIE, HeaderValue::from_static("prefs=a,b"));
        h2.append(COOKIE, HeaderValue::from_static("list=x, y"));
        assert_eq!(
            edit_cookies(&h2, &strip_named(&["at"])),
            CookieEdit::Set(HeaderValue::from_static("prefs=a,b; list=x, y"))
        );
    }

    /// Every spelling an upstream may read as a token header or cookie goes (issue 14's
    /// attack: `X_Token`, `ACCESS_TOKEN`, `access.token`, `access%5Ftoken`); with
    /// `forward_token`, only the one carrier whose token was verified stays: never an
    /// `Authorization` sent beside a cookie token (issue 14's review).
    #[test]
    fn only_the_verified_carrier_stays() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[upstreams.up]\nurl = \"http://127.0.0.1:9\"\n[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nauth = \"optional\"\ntoken_sources = [\"header:X-Token\", \"cookie:access_token\", \"authorization\"]\nupstream = \"up\"\n[providers.p]\nissuer = \"https://p\"\naudiences = [\"a\"]\njwks_file = \"FIX/jwks.json\"\n".replace("FIX", concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys"));
        let config = crate::config::load_str(&text, &dir.path().join("t.toml")).unwrap();
        let route = config.routes.get(crate::config::RouteId::new(0));
        let mut forwarding = policy();
        forwarding.forward_token = true;
        // (policy, the verified token's source, which exact carrier stays)
        for (policy, verified, stays) in [
            (policy(), Some(0), None),
            (policy(), Some(2), None),
            (forwarding.clone(), None, None),
            (forwarding.clone(), Some(0), Some("x-token")),
            (forwarding.clone(), Some(1), Some("access_token")),
            (forwarding, Some(2), Some("authorization")),
        ] {
            let c = TokenCarriers::of(route, &policy, verified);
            for look_alike in [
                "ACCESS_TOKEN",
                "access.token",
                "access token",
                "access[token",
                "access%5Ftoken",
                "access+token",
                "\u{a0}access_token",
                "Access_Token",
            ] {
                assert!(c.strips_cookie(look_alike.as_bytes()), "{look_alike}");
            }
            assert_eq!(
                c.strips_cookie(b"access_token"),
                stays != Some("access_token"),
                "{verified:?}"
            );
            assert!(!c.strips_cookie(b"access_tokens") && !c.strips_cookie(b"theme"));
            let mut m = HeaderMap::new();
            for n in ["x-token", "x_token", "X_TOKEN", "x-tokens", "authorization"] {
                m.append(
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_static("t"),
                );
            }
            let mut removed: Vec<String> = headers_to_remove(&m, &policy, &c)
                .iter()
                .map(|n| n.to_string())
                .collect();
            removed.sort();
            let mut want: Vec<&str> = vec!["authorization", "x-token", "x_token"];
            want.retain(|n| Some(*n) != stays);
            assert_eq!(
                removed, want,
                "verified {verified:?}, forward {}",
                policy.forward_token
            );
        }
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
