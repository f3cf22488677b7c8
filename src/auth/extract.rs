//! Token extraction: `Authorization: Bearer` (RFC 6750 §2.1) and, where a route lists
//! them in `token_sources`, a named cookie or header.
//!
//! Tokens in the query string (`access_token=`) or a form body are not accepted: they end
//! up in access logs, browser history and `Referer` headers.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use super::Reject;
use crate::config::routes::TokenSource;

/// The token of a request and the source (an index into the route's `token_sources`) it
/// was first found in.
#[derive(Debug, PartialEq, Eq)]
pub struct Found<'a> {
    pub token: &'a str,
    pub source: usize,
    /// It came as `Authorization: DPoP` (RFC 9449 §7.1): a proof must go with it.
    pub dpop: bool,
}

/// Reads every source of the route. Two different tokens are a `MultipleTokens` (which
/// would the upstream, or a later hop, act on?); the same token twice is one token.
pub fn extract_token<'a>(
    headers: &'a HeaderMap,
    sources: &[TokenSource],
    max_bytes: usize,
) -> Result<Option<Found<'a>>, Reject> {
    // The default, and nearly every route: `Authorization` alone.
    if let [TokenSource::Authorization] = sources {
        return Ok(match extract_bearer(headers, max_bytes)? {
            Credential::Bearer(token) => Some(Found {
                token,
                source: 0,
                dpop: false,
            }),
            Credential::Dpop(token) => Some(Found {
                token,
                source: 0,
                dpop: true,
            }),
            Credential::None => None,
        });
    }
    let mut found: Option<Found<'a>> = None;
    for (i, source) in sources.iter().enumerate() {
        let mut dpop = false;
        let token = match source {
            TokenSource::Authorization => match extract_bearer(headers, max_bytes)? {
                Credential::Bearer(t) => Some(t),
                Credential::Dpop(t) => {
                    dpop = true;
                    Some(t)
                }
                Credential::None => None,
            },
            TokenSource::Cookie(name) => cookie_token(headers, name, max_bytes)?,
            TokenSource::Header(name) => {
                // The same value repeated is one token, as for cookies; two values are two.
                let mut token = None;
                for v in headers.get_all(name) {
                    match (token, checked(trim_spaces(v.as_bytes()), max_bytes)?) {
                        (_, None) => {}
                        (None, t) => token = t,
                        (Some(a), Some(b)) if a == b => {}
                        (Some(_), Some(_)) => return Err(Reject::MultipleTokens),
                    }
                }
                token
            }
        };
        match (&found, token) {
            (_, None) => {}
            (None, Some(t)) => {
                found = Some(Found {
                    token: t,
                    source: i,
                    dpop,
                })
            }
            // The same token twice is one; as `DPoP` once, it goes with a proof.
            (Some(f), Some(t)) if f.token == t => {
                if let Some(f) = &mut found {
                    f.dpop |= dpop;
                }
            }
            (Some(_), Some(_)) => return Err(Reject::MultipleTokens),
        }
    }
    Ok(found)
}

/// The value of cookie `name` over every `Cookie` field (HTTP/2 sends one per cookie).
/// An empty value (a cleared cookie) is no token; the same name twice with two values is
/// `MultipleTokens` (a browser sends both when they were set for different paths).
fn cookie_token<'a>(
    headers: &'a HeaderMap,
    name: &str,
    max_bytes: usize,
) -> Result<Option<&'a str>, Reject> {
    if hidden_cookie(headers, name) {
        return Err(Reject::MultipleTokens);
    }
    let mut found: Option<&'a str> = None;
    for field in headers.get_all(COOKIE) {
        // `;` separates pairs (RFC 6265); `,` too, as lenient parsers read it (the gateway
        // must see every cookie an upstream might).
        for pair in field.as_bytes().split(|&b| b == b';' || b == b',') {
            let pair = trim_ows(pair);
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            if trim_ows(&pair[..eq]) != name.as_bytes() {
                continue;
            }
            let mut value = trim_ows(&pair[eq + 1..]);
            // RFC 6265 §4.1.1: a value may be wrapped in double quotes.
            if let [b'"', inner @ .., b'"'] = value {
                value = inner;
            }
            let Some(token) = checked(value, max_bytes)? else {
                continue;
            };
            match found {
                Some(f) if f != token => return Err(Reject::MultipleTokens),
                _ => found = Some(token),
            }
        }
    }
    Ok(found)
}

/// Whether two cookie names are one name as lenient parsers read them: percent-decoded,
/// lowercase, with `.`, `+`, space and `[` as `_` (PHP's `$_COOKIE`), without tabs and
/// bytes outside ASCII (which `str.strip()` and JavaScript's `trim()` drop around a name).
/// Allocates nothing: it runs over every cookie of every request on a cookie-source route.
pub fn same_cookie_key(a: &[u8], b: &[u8]) -> bool {
    cookie_key_bytes(a).eq(cookie_key_bytes(b))
}

fn cookie_key_bytes(name: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || loop {
        let mut b = *name.get(i)?;
        if b == b'%' && i + 2 < name.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(name[i + 1]), hex(name[i + 2])) {
                b = (h * 16 + l) as u8;
                i += 2;
            }
        }
        i += 1;
        match b.to_ascii_lowercase() {
            b'.' | b'+' | b' ' | b'[' => return Some(b'_'),
            b'\t' | 0x80..=0xff => {}
            other => return Some(other),
        }
    })
}

/// Whether the `Cookie` fields carry the cookie `name` where a lenient parser would find it
/// and the gateway's own reading (pairs at `;` and `,`) does not: a pair after a space in a
/// value (`a=1 access_token=x`, as Python's `SimpleCookie` reads it), or behind a byte
/// outside ASCII. Such a header is refused: the upstream could read a token nobody checked.
fn hidden_cookie(headers: &HeaderMap, name: &str) -> bool {
    let read = count_cookies(headers, name, |b| b == b';' || b == b',');
    let lenient = count_cookies(headers, name, |b| {
        matches!(b, b';' | b',' | b' ' | b'\t') || b >= 0x80
    });
    lenient > read
}

/// How many of the `Cookie` fields' pieces, split where `split` says, are pairs named like
/// `name` (`same_cookie_key`).
fn count_cookies(headers: &HeaderMap, name: &str, split: impl Fn(u8) -> bool + Copy) -> usize {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|f| f.as_bytes().split(move |&b| split(b)))
        .filter(|chunk| {
            chunk
                .iter()
                .position(|&b| b == b'=')
                .is_some_and(|eq| same_cookie_key(chunk[..eq].trim_ascii(), name.as_bytes()))
        })
        .count()
}

/// A token value from a cookie or named header: empty is none; otherwise RFC 6750's
/// `b64token` within `max_bytes`.
fn checked(value: &[u8], max_bytes: usize) -> Result<Option<&str>, Reject> {
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > max_bytes {
        return Err(Reject::TokenTooLarge);
    }
    if !is_b64token(value) {
        return Err(Reject::MalformedToken);
    }
    std::str::from_utf8(value)
        .map(Some)
        .map_err(|_| Reject::MalformedToken)
}

fn trim_ows(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// What the request carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No `Authorization` header, or one with another scheme (`Basic ...`).
    None,
    Bearer(&'a str),
    /// `DPoP <token>` (RFC 9449 §7.1): the same token syntax, with a proof.
    Dpop(&'a str),
}

/// Finds the single bearer (or DPoP) token. `max_bytes` caps its size.
pub fn extract_bearer(headers: &HeaderMap, max_bytes: usize) -> Result<Credential<'_>, Reject> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Credential::None);
    };
    if values.next().is_some() {
        // Two credentials: which one would the upstream or a later hop read?
        return Err(Reject::MultipleAuthorization);
    }
    // A field value has no leading or trailing whitespace (RFC 9110 §5.5): HTTP/1 parsers
    // drop it, HTTP/2 may deliver it; read both the same (`Bearer ` is `Bearer`).
    let value = value.as_bytes().trim_ascii();
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        // A lone word: another scheme, or `Bearer` with no token at all.
        return Ok(Credential::None);
    };
    let (scheme, rest) = value.split_at(space);
    let dpop = scheme.eq_ignore_ascii_case(b"dpop");
    if !dpop && !scheme.eq_ignore_ascii_case(b"bearer") {
        return Ok(Credential::None);
    }
    let token = trim_spaces(rest);
    if token.is_empty() {
        return Err(Reject::MalformedToken);
    }
    if token.len() > max_bytes {
        return Err(Reject::TokenTooLarge);
    }
    if !is_b64token(token) {
        return Err(Reject::MalformedToken);
    }
    // All bytes are ASCII, checked above.
    let token = std::str::from_utf8(token).map_err(|_| Reject::MalformedToken)?;
    Ok(if dpop {
        Credential::Dpop(token)
    } else {
        Credential::Bearer(token)
    })
}

/// Whether every byte is a `b64token` byte: comparisons without a branch per byte, which the
/// compiler turns into SIMD (a token of 800 bytes is checked on every request, cache hits
/// included; the table below, one load per byte, cost 1 % of a cached request).
fn is_b64token(token: &[u8]) -> bool {
    token.iter().fold(true, |ok, &b| {
        ok & (b.is_ascii_alphanumeric()
            | (b == b'-')
            | (b == b'.')
            | (b == b'_')
            | (b == b'~')
            | (b == b'+')
            | (b == b'/')
            | (b == b'='))
    })
}

/// The bytes of RFC 6750's `b64token` = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
/// (the `=` padding is accepted anywhere; a misplaced one fails base64 decoding later), as a
/// table: what `is_b64token` must agree with, byte for byte.
#[cfg(test)]
static B64TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        b += 1;
    }
    t
};

fn trim_spaces(mut b: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' '] = b {
        b = rest;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    use crate::auth::tests::header_map as headers;

    #[test]
    fn the_b64token_check_agrees_with_the_table() {
        for b in 0..=255u8 {
            assert_eq!(is_b64token(&[b]), B64TOKEN[usize::from(b)], "byte {b}");
        }
        assert!(is_b64token(b"abc.DEF-123_~+/=="));
        assert!(!is_b64token(b"abc def"));
    }

    #[test]
    fn sources() {
        let web = [
            TokenSource::Authorization,
            TokenSource::Cookie("access_token".into()),
            TokenSource::Header(HeaderName::from_static("x-token")),
        ];
        let got = |pairs: &[(&str, &str)]| {
            extract_token(&headers(pairs), &web, 100)
                .map(|f| f.map(|f| (f.token.to_owned(), f.source)))
        };
        assert_eq!(got(&[]), Ok(None));
        assert_eq!(
            got(&[("authorization", "Bearer abc")]),
            Ok(Some(("abc".into(), 0)))
        );
        assert_eq!(
            got(&[("cookie", "theme=dark; access_token=abc.def; lang=en")]),
            Ok(Some(("abc.def".into(), 1)))
        );
        // HTTP/2 sends one field per cookie; quotes and spaces around the value go.
        assert_eq!(
            got(&[
                ("cookie", "theme=dark"),
                ("cookie", "access_token=\"abc\" ")
            ]),
            Ok(Some(("abc".into(), 1)))
        );
        assert_eq!(got(&[("x-token", "abc")]), Ok(Some(("abc".into(), 2))));
        // The same token twice is one token, first source wins.
        assert_eq!(
            got(&[
                ("authorization", "Bearer abc"),
                ("cookie", "access_token=abc")
            ]),
            Ok(Some(("abc".into(), 0)))
        );
        // Two different tokens: 400.
        assert_eq!(
            got(&[
                ("authorization", "Bearer abc"),
                ("cookie", "access_token=xyz")
            ]),
            Err(Reject::MultipleTokens)
        );
        assert_eq!(
            got(&[("cookie", "access_token=abc; access_token=xyz")]),
            Err(Reject::MultipleTokens)
        );
        assert_eq!(
            got(&[("x-token", "a"), ("x-token", "b")]),
            Err(Reject::MultipleTokens)
        );
        assert_eq!(
            got(&[("x-token", "a"), ("x-token", "a")]),
            Ok(Some(("a".into(), 2)))
        );
        // A comma separates cookies for lenient parsers: the gateway reads them the same way.
        assert_eq!(
            got(&[("cookie", "a=1, access_token=abc")]),
            Ok(Some(("abc".into(), 1)))
        );
        assert_eq!(
            got(&[
                ("authorization", "Bearer xyz"),
                ("cookie", "a=1, access_token=abc")
            ]),
            Err(Reject::MultipleTokens)
        );
        // Names are exact: a prefix, another case, or a cleared cookie is no token.
        assert_eq!(
            got(&[("cookie", "xaccess_token=abc; Access_Token=abc")]),
            Ok(None)
        );
        assert_eq!(
            got(&[("cookie", "access_token=; access_token=\"\"")]),
            Ok(None)
        );
        // Values outside b64token, and oversized ones (a comma ends the value).
        assert_eq!(
            got(&[("cookie", "access_token=a,b")]),
            Ok(Some(("a".into(), 1)))
        );
        assert_eq!(
            got(&[("cookie", "access_token=a\"b")]),
            Err(Reject::MalformedToken)
        );
        assert_eq!(
            got(&[("x-token", "Bearer abc")]),
            Err(Reject::MalformedToken)
        );
        let big = format!("access_token={}", "a".repeat(101));
        assert_eq!(got(&[("cookie", &big)]), Err(Reject::TokenTooLarge));
        // A cookie only a lenient parser finds (after a space in a value, or behind a byte
        // outside ASCII) is refused: the upstream might read it (issue 14's second attack).
        for hidden in [
            "a=1 access_token=abc",
            "a=1\taccess_token=abc",
            "a=1; b=x access_token=abc",
        ] {
            assert_eq!(
                got(&[("cookie", hidden)]),
                Err(Reject::MultipleTokens),
                "{hidden}"
            );
        }
        let mut m = HeaderMap::new();
        m.append(
            COOKIE,
            HeaderValue::from_bytes(b"a=1; \xa0access_token=abc").unwrap(),
        );
        // Found by both readings (a look-alike the proxy strips): not refused, not read.
        assert_eq!(extract_token(&m, &web, 100), Ok(None));
        let mut m = HeaderMap::new();
        m.append(
            COOKIE,
            HeaderValue::from_bytes(b"a=1\xa0access_token=abc").unwrap(),
        );
        assert_eq!(extract_token(&m, &web, 100), Err(Reject::MultipleTokens));
        // A value that merely mentions the name is no cookie.
        assert_eq!(got(&[("cookie", "next=/cb?access_token=abc")]), Ok(None));
        // A source the route does not list is not read.
        let only_auth = [TokenSource::Authorization];
        assert_eq!(
            extract_token(&headers(&[("cookie", "access_token=abc")]), &only_auth, 100),
            Ok(None)
        );
    }

    fn h(values: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for v in values {
            m.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn extracts() {
        let m = h(&["Bearer abc.def.ghi"]);
        assert_eq!(
            extract_bearer(&m, 100),
            Ok(Credential::Bearer("abc.def.ghi"))
        );
        let m = h(&["bEaReR   abc.def.ghi"]);
        assert_eq!(
            extract_bearer(&m, 100),
            Ok(Credential::Bearer("abc.def.ghi"))
        );
        assert_eq!(extract_bearer(&h(&[]), 100), Ok(Credential::None));
        assert_eq!(
            extract_bearer(&h(&["Basic dXNlcjpwdw=="]), 100),
            Ok(Credential::None)
        );
        assert_eq!(extract_bearer(&h(&["Bearer"]), 100), Ok(Credential::None));
    }

    #[test]
    fn refuses() {
        assert_eq!(
            extract_bearer(&h(&["Bearer a", "Bearer b"]), 100),
            Err(Reject::MultipleAuthorization)
        );
        // Trailing blanks are not part of a field value (HTTP/2 may deliver them).
        assert_eq!(extract_bearer(&h(&["Bearer  "]), 100), Ok(Credential::None));
        assert_eq!(
            extract_bearer(&h(&[" Bearer abc "]), 100),
            Ok(Credential::Bearer("abc"))
        );
        assert_eq!(
            extract_bearer(&h(&["Bearer a b"]), 100),
            Err(Reject::MalformedToken)
        );
        assert_eq!(
            extract_bearer(&h(&["Bearer a,b"]), 100),
            Err(Reject::MalformedToken)
        );
        let big = format!("Bearer {}", "a".repeat(101));
        assert_eq!(extract_bearer(&h(&[&big]), 100), Err(Reject::TokenTooLarge));
    }

    /// Exactly RFC 6750's b64token set passes: the table for every byte value, and the
    /// parser for every byte a header value can carry (224 of them; `http` refuses the rest).
    #[test]
    fn b64token_bytes() {
        let grammar = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=";
        for b in 0..=255u8 {
            assert_eq!(
                B64TOKEN[usize::from(b)],
                grammar.as_bytes().contains(&b),
                "{b:#04x}"
            );
        }
        let mut through_parser = 0;
        for b in 0..=255u8 {
            let Ok(v) = HeaderValue::from_bytes(&[b"Bearer a", &[b][..], b"b"].concat()) else {
                continue; // not a header value at all (controls): never reaches us
            };
            through_parser += 1;
            let mut m = HeaderMap::new();
            m.append(AUTHORIZATION, v);
            let got = extract_bearer(&m, 100);
            if grammar.as_bytes().contains(&b) {
                assert!(matches!(got, Ok(Credential::Bearer(_))), "byte {b:#04x}");
            } else {
                assert_eq!(got, Err(Reject::MalformedToken), "byte {b:#04x}");
            }
        }
        assert_eq!(through_parser, 224);
    }
}
