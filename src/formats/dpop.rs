//! DPoP (RFC 9449) parsing rules that need no keys or clock: the RFC 7638 thumbprint of a
//! public JWK, the private members a proof's JWK must not carry, and the normal form of an
//! `htu` to compare with the request's URI.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::normalize::{normalize_path, split_http_url, Authority, Scheme};

/// Why a JWK has no thumbprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadJwk {
    #[error("the jwk is not a JSON object")]
    NotAnObject,
    #[error("the jwk's kty is not RSA, EC or OKP")]
    KeyType,
    #[error("the jwk lacks a member its kty requires")]
    MissingMember,
    #[error("the jwk carries private key members")]
    Private,
}

/// RFC 7638: SHA-256 over the key's required members only, in lexicographic order, without
/// whitespace; base64url. A DPoP-bound token names its key by this (`cnf.jkt`).
pub fn thumbprint(jwk: &Value) -> Result<String, BadJwk> {
    let obj = jwk.as_object().ok_or(BadJwk::NotAnObject)?;
    let members: &[&str] = match obj.get("kty").and_then(Value::as_str) {
        Some("RSA") => &["e", "kty", "n"],
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        _ => return Err(BadJwk::KeyType),
    };
    let mut canonical = Map::new();
    for m in members {
        match obj.get(*m) {
            Some(Value::String(v)) => canonical.insert((*m).to_owned(), Value::String(v.clone())),
            _ => return Err(BadJwk::MissingMember),
        };
    }
    // serde_json's map is ordered by key: this is the RFC's lexicographic order, and
    // `to_string` writes no whitespace.
    let text = Value::Object(canonical).to_string();
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes())))
}

/// A JWK meant to be public must carry none of the private members of RFC 7518 §6 (a key
/// sent with its private half would be anybody's).
pub fn check_public(jwk: &Value) -> Result<(), BadJwk> {
    const PRIVATE: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
    let obj = jwk.as_object().ok_or(BadJwk::NotAnObject)?;
    if PRIVATE.iter().any(|m| obj.contains_key(*m)) {
        return Err(BadJwk::Private);
    }
    Ok(())
}

/// `scheme://host[:port]/path`, lowercase scheme and host, the scheme's default port left
/// out, the path normalized as requests are; no query and no fragment (RFC 9449 §4.3: they
/// are not compared). `None` for anything else.
pub fn normalize_htu(htu: &str) -> Option<String> {
    let (scheme, a, rest) = split_http_url(htu)?;
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    let path = normalize_path(if path.is_empty() { "/" } else { path }).ok()?;
    Some(url_of(scheme, &a, &path))
}

/// `scheme://host[:port]path`, the scheme's default port left out: the one spelling of a
/// URI both sides of the `htu` compare are written in.
fn url_of(scheme: Scheme, a: &Authority, path: &str) -> String {
    match a.port.filter(|&p| p != scheme.default_port()) {
        Some(p) => format!("{}://{}:{p}{path}", scheme.as_str(), a.host),
        None => format!("{}://{}{path}", scheme.as_str(), a.host),
    }
}

/// The JOSE name of `alg` (for `algs="..."` in a `DPoP` challenge).
pub const fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // jsonwebtoken's enum is non-exhaustive: a name it adds later is not offered.
        _ => "unknown",
    }
}

/// `algs="..."` of a `DPoP` challenge: the JOSE names, space-separated.
pub fn algorithm_names<'a>(algs: impl IntoIterator<Item = &'a Algorithm>) -> String {
    algs.into_iter()
        .map(|a| algorithm_name(*a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A configured `public_url` as the start of every `htu`: `normalize_htu` form without a
/// trailing `/` (so the request's normalized path appends to it). An `http(s)` URL, no
/// userinfo, query or fragment.
pub fn public_url_base(url: &str) -> Result<String, &'static str> {
    if url.contains(['?', '#']) {
        return Err("must not have a query or a fragment");
    }
    // What a client writes in `htu` is URI characters: a space or a quote here would have
    // to be matched raw, and `%20` (the right spelling) would never pass.
    if !url
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b))
    {
        return Err("must be written in URI characters (percent-encode spaces and the like)");
    }
    let normal = normalize_htu(url)
        .ok_or("must be an absolute http:// or https:// URL (scheme://host[:port][/prefix])")?;
    Ok(normal.trim_end_matches('/').to_owned())
}

/// The `htu` a proof for this request must carry: `base` (a `public_url_base`) and the
/// normalized path, or else the listener's scheme and the request's authority (host
/// normalized; the scheme's default port left out) and the path.
pub fn expected_htu(base: Option<&str>, tls: bool, authority: &Authority, path: &str) -> String {
    if let Some(base) = base {
        return format!("{base}{path}");
    }
    let scheme = if tls { Scheme::Https } else { Scheme::Http };
    url_of(scheme, authority, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7638 §3.1's example key and thumbprint (checked with Python's hashlib too).
    #[test]
    fn rfc7638_example() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        // Optional members (alg, kid, use) do not change it.
        let mut bare = jwk.clone();
        bare.as_object_mut()
            .unwrap()
            .retain(|k, _| k == "kty" || k == "n" || k == "e");
        assert_eq!(thumbprint(&bare), thumbprint(&jwk));
        assert_eq!(
            thumbprint(&json!({"kty": "oct", "k": "abc"})),
            Err(BadJwk::KeyType)
        );
        assert_eq!(
            thumbprint(&json!({"kty": "EC", "crv": "P-256", "x": "a"})),
            Err(BadJwk::MissingMember)
        );
        assert_eq!(
            thumbprint(&json!({"kty": "RSA", "n": 1, "e": "AQAB"})),
            Err(BadJwk::MissingMember)
        );
    }

    #[test]
    fn private_members_are_refused() {
        assert_eq!(
            check_public(&json!({"kty": "EC", "crv": "P-256", "x": "a", "y": "b"})),
            Ok(())
        );
        for m in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            let mut jwk = json!({"kty": "RSA", "n": "a", "e": "AQAB"});
            jwk[m] = json!("secret");
            assert_eq!(check_public(&jwk), Err(BadJwk::Private), "{m}");
        }
    }

    #[test]
    fn htu_normal_form() {
        let n = |s| normalize_htu(s);
        assert_eq!(
            n("https://API.Example.com/a/b"),
            Some("https://api.example.com/a/b".into())
        );
        assert_eq!(
            n("HTTPS://api.example.com:443/a?x=1#f"),
            Some("https://api.example.com/a".into())
        );
        assert_eq!(
            n("http://api.example.com:80"),
            Some("http://api.example.com/".into())
        );
        assert_eq!(
            n("https://api.example.com:8443/a/./b/../c"),
            Some("https://api.example.com:8443/a/c".into())
        );
        for bad in [
            "ftp://a/b",
            "//a/b",
            "https://user@a/b",
            "https:///b",
            "/a/b",
            "https://a/%2e%2e/%2f",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }

    #[test]
    fn public_url_and_expected_htu() {
        assert_eq!(
            public_url_base("HTTPS://API.example.com:443/"),
            Ok("https://api.example.com".into())
        );
        assert_eq!(
            public_url_base("https://api.example.com/v1/./x/../"),
            Ok("https://api.example.com/v1".into())
        );
        for bad in [
            "https://a/?q",
            "https://a/#f",
            "ftp://a",
            "api.example.com",
            "https://a/b c",
            "https://a/\"x\"",
        ] {
            assert!(public_url_base(bad).is_err(), "{bad}");
        }
        let a = |host: &str, port| Authority {
            host: host.into(),
            port,
        };
        let base = public_url_base("https://api.example.com/v1").unwrap();
        assert_eq!(
            expected_htu(Some(&base), false, &a("internal", Some(8080)), "/orders"),
            "https://api.example.com/v1/orders"
        );
        assert_eq!(
            expected_htu(None, false, &a("127.0.0.1", Some(8080)), "/a"),
            "http://127.0.0.1:8080/a"
        );
        assert_eq!(
            expected_htu(None, true, &a("api", Some(443)), "/a"),
            "https://api/a"
        );
        assert_eq!(
            expected_htu(None, false, &a("api", Some(80)), "/"),
            "http://api/"
        );
        // What a client writes normalizes to what the gateway expects.
        assert_eq!(
            normalize_htu("HTTP://API:80/a/../b").as_deref(),
            Some(expected_htu(None, false, &a("api", None), "/b").as_str())
        );
    }
}
