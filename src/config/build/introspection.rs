//! A provider's introspection settings (RFC 7662): endpoint, client authentication (the
//! secret or key file read here, once), cache and concurrency bounds.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::{check_duration, Ctx, HOUR};
use crate::config::schema::{self, RawProvider};
use crate::config::{ClientAuth, IntrospectionEndpoint, IntrospectionSettings};
use crate::formats::check_fetch_url;

/// Largest bound accepted for either introspection cache (entries).
const MAX_ENTRIES: u64 = 10_000_000;

/// `None` when the provider does not introspect. Errors are recorded in `cx`.
pub(super) fn build_introspection(
    cx: &mut Ctx<'_>,
    name: &str,
    raw: &RawProvider,
    span: Option<usize>,
) -> Option<Arc<IntrospectionSettings>> {
    let key = |k: &str| format!("providers.{name}.{k}");
    let endpoint = match (&raw.introspection_url, raw.discovery, &raw.client_id) {
        (Some(url), _, _) => {
            if let Err(e) = check_fetch_url(url) {
                cx.err(span, key("introspection_url"), e);
            }
            IntrospectionEndpoint::Url(url.clone())
        }
        // The metadata URL is checked once, under `discovery`, with the key source.
        (None, true, Some(_)) => IntrospectionEndpoint::Discovery(raw.issuer.clone()),
        (None, _, _) => {
            let stray = [
                (raw.client_id.is_some(), "client_id"),
                (raw.client_auth.is_some(), "client_auth"),
                (raw.client_secret_file.is_some(), "client_secret_file"),
                (raw.client_key_file.is_some(), "client_key_file"),
                (raw.client_key_id.is_some(), "client_key_id"),
                (raw.token_type_hint.is_some(), "token_type_hint"),
                (raw.introspection_ca_file.is_some(), "introspection_ca_file"),
                (
                    raw.introspection_signed_response,
                    "introspection_signed_response",
                ),
                (raw.introspect_jwts, "introspect_jwts"),
                (raw.introspection_timeout.is_some(), "introspection_timeout"),
                (
                    raw.introspection_cache_ttl.is_some(),
                    "introspection_cache_ttl",
                ),
                (
                    raw.introspection_negative_ttl.is_some(),
                    "introspection_negative_ttl",
                ),
                (
                    raw.introspection_cache_max_entries.is_some(),
                    "introspection_cache_max_entries",
                ),
                (
                    raw.introspection_cache_max_bytes.is_some(),
                    "introspection_cache_max_bytes",
                ),
                (
                    raw.introspection_max_in_flight.is_some(),
                    "introspection_max_in_flight",
                ),
            ];
            for (_, k) in stray.iter().filter(|(set, _)| *set) {
                cx.err(
                    span,
                    key(k),
                    "only applies with introspection_url (or discovery = true and client_id)",
                );
            }
            return None;
        }
    };
    let Some(client_id) = raw.client_id.clone().filter(|c| !c.is_empty()) else {
        cx.err(
            span,
            key("client_id"),
            "introspection needs the gateway's client_id (RFC 7662 §2.1: the endpoint must authenticate its callers)",
        );
        return None;
    };
    let method = raw.client_auth.as_deref().unwrap_or("client_secret_basic");
    let client_auth = match method {
        "client_secret_basic" | "client_secret_post" => {
            if raw.client_key_file.is_some() || raw.client_key_id.is_some() {
                cx.err(
                    span,
                    key("client_key_file"),
                    format!("{method} uses client_secret_file, not a key"),
                );
            }
            let secret = read_secret(cx, raw, span, &key)?;
            // A form field is text: a secret that is not UTF-8 could only be sent altered.
            if method == "client_secret_post" && std::str::from_utf8(&secret).is_err() {
                cx.err(
                    span,
                    key("client_secret_file"),
                    "client_secret_post sends the secret as form text: it must be UTF-8",
                );
                return None;
            }
            if method == "client_secret_basic" {
                ClientAuth::SecretBasic(secret)
            } else {
                ClientAuth::SecretPost(secret)
            }
        }
        "private_key_jwt" => {
            if raw.client_secret_file.is_some() {
                cx.err(
                    span,
                    key("client_secret_file"),
                    "private_key_jwt signs with client_key_file; it sends no secret",
                );
            }
            let Some(file) = &raw.client_key_file else {
                cx.err(
                    span,
                    key("client_key_file"),
                    "private_key_jwt needs client_key_file (a PEM private key)",
                );
                return None;
            };
            let (path, pem) = cx.read(span, &key("client_key_file"), file)?;
            let Some(alg) = signing_algorithm(&pem) else {
                cx.err(
                    span,
                    key("client_key_file"),
                    format!(
                        "{} holds no RSA, EC P-256/P-384 or Ed25519 private key in PEM",
                        path.display()
                    ),
                );
                return None;
            };
            ClientAuth::PrivateKeyJwt {
                pem,
                alg,
                kid: raw.client_key_id.clone(),
            }
        }
        other => {
            cx.err(
                span,
                key("client_auth"),
                format!(
                    "{other:?} is not client_secret_basic, client_secret_post or private_key_jwt"
                ),
            );
            return None;
        }
    };
    let token_type_hint = match raw.token_type_hint.as_deref() {
        None => Some("access_token".to_owned()),
        Some("") => None,
        Some(h) if h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => Some(h.to_owned()),
        Some(h) => {
            cx.err(
                span,
                key("token_type_hint"),
                format!("{h:?} is not a token type name"),
            );
            None
        }
    };
    let ca = raw
        .introspection_ca_file
        .as_deref()
        .and_then(|f| cx.read_ca(span, &key("introspection_ca_file"), f));
    let timeout = raw
        .introspection_timeout
        .unwrap_or_else(schema::default_introspection_timeout);
    let cache_ttl = raw
        .introspection_cache_ttl
        .unwrap_or_else(schema::default_introspection_cache_ttl);
    let negative_ttl = raw
        .introspection_negative_ttl
        .unwrap_or_else(schema::default_introspection_negative_ttl);
    let max_entries = raw
        .introspection_cache_max_entries
        .unwrap_or_else(schema::default_cache_entries);
    let max_bytes = raw
        .introspection_cache_max_bytes
        .unwrap_or_else(schema::default_introspection_cache_bytes);
    let max_in_flight = raw
        .introspection_max_in_flight
        .unwrap_or_else(schema::default_introspection_in_flight);
    check_duration(
        cx,
        span,
        key("introspection_timeout"),
        timeout,
        Duration::from_millis(100),
        Duration::from_secs(60),
    );
    check_duration(
        cx,
        span,
        key("introspection_cache_ttl"),
        cache_ttl,
        Duration::ZERO,
        HOUR,
    );
    check_duration(
        cx,
        span,
        key("introspection_negative_ttl"),
        negative_ttl,
        Duration::ZERO,
        HOUR,
    );
    if !(1..=MAX_ENTRIES).contains(&max_entries) {
        cx.err(
            span,
            key("introspection_cache_max_entries"),
            format!("must be between 1 and {MAX_ENTRIES}"),
        );
    }
    if !(1 << 16..=1 << 40).contains(&max_bytes) {
        cx.err(
            span,
            key("introspection_cache_max_bytes"),
            "must be between 65536 and 1099511627776",
        );
    }
    if !(1..=4096).contains(&max_in_flight) {
        cx.err(
            span,
            key("introspection_max_in_flight"),
            "must be between 1 and 4096",
        );
    }
    if raw.introspection_signed_response
        && !(raw.jwks_url.is_some() || raw.jwks_file.is_some() || raw.discovery)
    {
        cx.err(
            span,
            key("introspection_signed_response"),
            "signed answers are verified with the provider's keys: set jwks_url, jwks_file or discovery",
        );
    }
    Some(Arc::new(IntrospectionSettings {
        endpoint,
        client_id,
        client_auth,
        token_type_hint,
        timeout,
        ca,
        signed_response: raw.introspection_signed_response,
        cache_ttl,
        negative_ttl,
        cache_max_entries: max_entries,
        cache_max_bytes: max_bytes,
        max_in_flight,
    }))
}

/// The client secret: the file's bytes without trailing newlines; never inline.
fn read_secret(
    cx: &mut Ctx<'_>,
    raw: &RawProvider,
    span: Option<usize>,
    key: &dyn Fn(&str) -> String,
) -> Option<Vec<u8>> {
    let Some(file) = &raw.client_secret_file else {
        cx.err(span, key("client_secret_file"), "client_secret_basic and client_secret_post need client_secret_file (secrets are never inline)");
        return None;
    };
    let (path, secret) = cx.read_secret(span, &key("client_secret_file"), file)?;
    if secret.is_empty() {
        cx.err(
            span,
            key("client_secret_file"),
            format!("{} is empty", path.display()),
        );
        return None;
    }
    Some(secret)
}

/// The algorithm a PEM private key signs with, found by signing a test assertion: RSA →
/// RS256, EC P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA.
fn signing_algorithm(pem: &[u8]) -> Option<Algorithm> {
    let claims = serde_json::json!({ "probe": true });
    type Parse = fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>;
    let tries: [(Algorithm, Parse); 4] = [
        (Algorithm::RS256, EncodingKey::from_rsa_pem),
        (Algorithm::ES256, EncodingKey::from_ec_pem),
        (Algorithm::ES384, EncodingKey::from_ec_pem),
        (Algorithm::EdDSA, EncodingKey::from_ed_pem),
    ];
    tries.into_iter().find_map(|(alg, parse)| {
        let key = parse(pem).ok()?;
        jsonwebtoken::encode(&Header::new(alg), &claims, &key)
            .ok()
            .map(|_| alg)
    })
}
