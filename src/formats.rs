//! What the gateway reads from outside, parsed without any of its own state: request
//! targets and hosts, JWKS documents, revocation lists, claim paths, PEM files, and a few
//! names shared by the config (which validates them at load) and the runtime (which reads
//! them again at request time or on refresh).
//!
//! Nothing here imports another module of ours: `config` and `auth` both build on it.

pub mod claim_path;
pub mod client_cert;
pub mod dpop;
pub mod header_names;
pub mod introspection;
pub mod json;
pub mod jwks;
pub mod normalize;
pub mod pem;
pub mod revocation;

use sha2::{Digest, Sha256};

/// RFC 7515 §4.1.9: `typ` is a media type, compared case-insensitively, `application/` optional.
pub fn media_type(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    lower
        .strip_prefix("application/")
        .map_or(lower.clone(), str::to_owned)
}

/// `canonical_header` without building a string when `name` is canonical already (a
/// `HeaderName` is lowercase; only a `_` needs folding): the per-request form.
pub fn canonical_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().any(|b| b == b'_' || b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(canonical_header(name))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// Lowercase, `_` folded to `-`: the spellings that CGI-style servers treat as one name.
pub fn canonical_header(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                b.to_ascii_lowercase() as char
            }
        })
        .collect()
}

/// A secret as read from its file: the bytes without trailing newlines (an editor's or
/// `echo`'s), which are never part of a secret.
pub fn secret_bytes(file: &[u8]) -> &[u8] {
    let end = file
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    &file[..end]
}

/// Where OIDC discovery reads an issuer's metadata (OpenID Connect Discovery 1.0 §4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// The URL named `field` in an issuer's OIDC metadata document, after the checks every
/// such URL needs: the document is JSON naming this very issuer (a mismatch means it is not
/// the issuer's: OpenID Connect Discovery 1.0 §4.3), the URL may carry what it carries
/// (`check_fetch_url`), and it is https when the issuer is.
pub fn metadata_url(document: &[u8], issuer: &str, field: &str) -> Result<String, String> {
    let meta: serde_json::Value = serde_json::from_slice(document)
        .map_err(|e| format!("discovery document is not JSON: {e}"))?;
    let named = meta.get("issuer").and_then(serde_json::Value::as_str);
    if named != Some(issuer) {
        return Err(format!(
            "discovery document names issuer {named:?}, not {issuer:?}"
        ));
    }
    let url = meta
        .get(field)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("discovery document has no {field}"))?;
    check_fetch_url(url).map_err(|e| format!("{field}: {e}"))?;
    if issuer.starts_with("https://") && !url.starts_with("https://") {
        return Err(format!(
            "{field} {url:?} is not https although the issuer is"
        ));
    }
    Ok(url.to_owned())
}

/// Key material is fetched over https, or plain http to loopback only: keys fetched in clear
/// could be swapped on the way and any token forged.
pub fn check_fetch_url(url: &str) -> Result<(), String> {
    match url.parse::<http::Uri>() {
        Ok(u) if u.scheme_str() == Some("https") && u.host().is_some() => Ok(()),
        Ok(u) if u.scheme_str() == Some("http") && u.host().is_some_and(is_loopback) => Ok(()),
        Ok(u) if u.scheme_str() == Some("http") => Err(format!(
            "{url:?} uses plain http: anyone on the path could swap the keys and forge tokens; use https (http is accepted for loopback only)"
        )),
        _ => Err(format!("{url:?} is not an http(s) URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`, lowercase hex: how config and revocation files are told apart.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}
