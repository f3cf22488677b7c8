//! Bearer token extraction (RFC 6750 §2.1): the `Authorization` header only.
//!
//! Tokens in the query string (`access_token=`) or a form body are not accepted: they end
//! up in access logs, browser history and `Referer` headers.

use http::header::AUTHORIZATION;
use http::HeaderMap;

use super::Reject;

/// What the request carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No `Authorization` header, or one with another scheme (`Basic ...`).
    None,
    Bearer(&'a str),
}

/// Finds the single bearer token. `max_bytes` caps its size.
pub fn extract_bearer(headers: &HeaderMap, max_bytes: usize) -> Result<Credential<'_>, Reject> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Credential::None);
    };
    if values.next().is_some() {
        // Two credentials: which one would the upstream or a later hop read?
        return Err(Reject::MultipleAuthorization);
    }
    let value = value.as_bytes();
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        // A lone word: another scheme, or `Bearer` with no token at all.
        return Ok(Credential::None);
    };
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Ok(Credential::None);
    }
    let token = trim_spaces(rest);
    if token.is_empty() {
        return Err(Reject::MalformedToken);
    }
    if token.len() > max_bytes {
        return Err(Reject::TokenTooLarge);
    }
    if !token.iter().all(|&b| B64TOKEN[usize::from(b)]) {
        return Err(Reject::MalformedToken);
    }
    // All bytes are ASCII, checked above.
    std::str::from_utf8(token)
        .map(Credential::Bearer)
        .map_err(|_| Reject::MalformedToken)
}

/// The bytes of RFC 6750's `b64token` = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
/// (the `=` padding is accepted anywhere; a misplaced one fails base64 decoding later). A
/// table: this runs over every byte of every token, cache hits included.
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
    use http::HeaderValue;

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
        assert_eq!(
            extract_bearer(&h(&["Bearer  "]), 100),
            Err(Reject::MalformedToken)
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
