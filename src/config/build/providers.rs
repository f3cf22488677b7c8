//! `[providers.*]`: issuer, audiences, algorithms, the key source (files read here, once), refresh timing, revocation.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use toml::Spanned;

use super::introspection::build_introspection;
use super::{
    at, check_duration, is_label, short, Ctx, DAY, DEFAULT_MIN_REFRESH, HOUR, SECOND, YEAR,
};
use crate::config::schema::RawProvider;
use crate::config::{
    DpopMode, DpopSettings, JwksFile, KeySource, ProviderSettings, RevocationFile,
};
use crate::formats::jwks::KeySet;
use crate::formats::revocation::RevocationSet;
use crate::formats::{check_fetch_url, discovery_url, media_type, sha256_hex};

/// Smallest HMAC secret: RFC 7518 §3.2 wants a key at least as long as the hash output.
const MIN_HMAC_SECRET_BYTES: usize = 32;

pub(super) fn build_provider(
    cx: &mut Ctx<'_>,
    name: &str,
    p: &Spanned<RawProvider>,
) -> Option<ProviderSettings> {
    let span = at(p);
    let raw = p.get_ref();
    let before = cx.errors.len();
    let key = |k: &str| format!("providers.{name}.{k}");
    if !is_label(name) {
        cx.err(
            span,
            format!("providers.{name}"),
            "name must be 1-64 characters of [A-Za-z0-9_.-]",
        );
    }
    if raw.issuer.is_empty() {
        cx.err(span, key("issuer"), "must not be empty");
    }
    if raw.audiences.is_empty() || raw.audiences.iter().any(String::is_empty) {
        cx.err(
            span,
            key("audiences"),
            "must list at least one non-empty audience: a token for another API must not pass",
        );
    }
    let mut algorithms = Vec::new();
    for a in &raw.algorithms {
        match Algorithm::from_str(a.get_ref()) {
            Ok(alg) if !algorithms.contains(&alg) => algorithms.push(alg),
            Ok(_) => {}
            Err(_) => cx.err(
                at(a),
                key("algorithms"),
                format!("{:?} is not a supported algorithm (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512; never none)", a.get_ref()),
            ),
        }
    }
    if algorithms.is_empty() && raw.algorithms.is_empty() {
        cx.err(span, key("algorithms"), "must list at least one algorithm");
    }
    let hmac = |a: &Algorithm| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    let sources = [
        raw.jwks_url.is_some(),
        raw.jwks_file.is_some(),
        raw.hmac_secret_file.is_some(),
        raw.discovery,
    ];
    let introspection = build_introspection(cx, name, raw, span);
    match sources.iter().filter(|s| **s).count() {
        0 if introspection.is_some() => {}
        1 => {}
        _ => {
            cx.err(
                span,
                key("jwks_url"),
                "set exactly one of jwks_url, jwks_file, hmac_secret_file, discovery = true (or none with introspection_url: every token is then introspected)",
            );
            return None;
        }
    }
    let no_hmac = |cx: &mut Ctx<'_>| {
        if algorithms.iter().any(hmac) {
            cx.err(span, key("algorithms"), "HS* algorithms need hmac_secret_file; they are never mixed with keys from a JWKS (key confusion)");
        }
    };
    let key_source = if let Some(url) = &raw.jwks_url {
        if let Err(e) = check_fetch_url(url) {
            cx.err(span, key("jwks_url"), e);
        }
        no_hmac(cx);
        KeySource::JwksUrl(url.clone())
    } else if raw.discovery {
        if let Err(e) = check_fetch_url(&discovery_url(&raw.issuer)) {
            cx.err(
                span,
                key("discovery"),
                format!("the issuer is where discovery reads from: {e}"),
            );
        }
        no_hmac(cx);
        KeySource::Discovery(raw.issuer.clone())
    } else if let Some(file) = &raw.jwks_file {
        let path = cx.relative(file);
        let document = match cx.read(span, &key("jwks_file"), file) {
            Some((_, doc)) => {
                if let Err(e) = KeySet::from_jwks(&doc, &algorithms) {
                    cx.err(span, key("jwks_file"), format!("{}: {e}", path.display()));
                }
                doc
            }
            None => Vec::new(),
        };
        no_hmac(cx);
        KeySource::JwksFile(JwksFile {
            path,
            document: Arc::new(document),
        })
    } else if raw.hmac_secret_file.is_none() {
        // Introspection only (checked above).
        KeySource::None
    } else {
        let file = raw.hmac_secret_file.as_deref().unwrap_or_default();
        if !algorithms.iter().all(hmac) {
            cx.err(span, key("algorithms"), "a provider with hmac_secret_file may only allow HS256/HS384/HS512: one provider never mixes HMAC with asymmetric keys");
        }
        let (_, secret) = cx.read_secret(span, &key("hmac_secret_file"), file)?;
        // RFC 7518 §3.2: a key at least as long as the hash output.
        let min = algorithms
            .iter()
            .map(|a| match a {
                Algorithm::HS384 => 48,
                Algorithm::HS512 => 64,
                _ => MIN_HMAC_SECRET_BYTES,
            })
            .max()
            .unwrap_or(MIN_HMAC_SECRET_BYTES);
        if secret.len() < min {
            cx.err(
                span,
                key("hmac_secret_file"),
                format!("secret is shorter than {min} bytes (the hash output of the strongest allowed HS algorithm)"),
            );
        }
        KeySource::HmacSecret(secret)
    };
    if raw.leeway.as_secs() > 600 {
        cx.err(span, key("leeway"), "must be at most 10m");
    }
    if let Some(d) = raw.max_token_lifetime {
        check_duration(cx, span, key("max_token_lifetime"), d, SECOND, YEAR);
    }
    if raw
        .required_typ
        .as_deref()
        .is_some_and(|t| t.is_empty() || t.contains(char::is_whitespace))
    {
        cx.err(
            span,
            key("required_typ"),
            "must be a media type such as \"at+jwt\"",
        );
    }
    let jwks_ca = raw
        .jwks_ca_file
        .as_deref()
        .and_then(|f| cx.read_ca(span, &key("jwks_ca_file"), f));
    if jwks_ca.is_some() && !matches!(key_source, KeySource::JwksUrl(_) | KeySource::Discovery(_)) {
        cx.err(
            span,
            key("jwks_ca_file"),
            "only applies to jwks_url or discovery",
        );
    }
    let revocation_file = raw.revocation_file.as_deref().and_then(|f| {
        let path = cx.relative(f);
        let read = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| {
                let list =
                    RevocationSet::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                Ok((list, sha256_hex(text.as_bytes())))
            });
        match read {
            Ok((list, hash)) => Some(RevocationFile {
                path,
                list: Arc::new(list),
                hash,
            }),
            Err(e) => {
                cx.err(span, key("revocation_file"), e);
                None
            }
        }
    });
    // Unset, the floor follows a short `jwks_refresh` down: setting one key must not
    // produce an error about another.
    let jwks_min_refresh = raw
        .jwks_min_refresh
        .unwrap_or_else(|| DEFAULT_MIN_REFRESH.min(raw.jwks_refresh));
    if jwks_min_refresh.as_secs() < 1 || jwks_min_refresh > raw.jwks_refresh {
        cx.err(
            span,
            key("jwks_min_refresh"),
            format!(
                "must be at least 1s and at most jwks_refresh ({}): lower it, or leave it unset to follow jwks_refresh",
                short(raw.jwks_refresh)
            ),
        );
    }
    if raw.jwks_max_stale <= raw.jwks_refresh {
        cx.err(
            span,
            key("jwks_max_stale"),
            "must be longer than jwks_refresh, or keys would go stale between two refreshes",
        );
    }
    check_duration(
        cx,
        span,
        key("jwks_refresh"),
        raw.jwks_refresh,
        SECOND,
        30 * DAY,
    );
    check_duration(
        cx,
        span,
        key("jwks_max_stale"),
        raw.jwks_max_stale,
        SECOND,
        YEAR,
    );
    check_duration(
        cx,
        span,
        key("jwks_refetch_cooldown"),
        raw.jwks_refetch_cooldown,
        Duration::from_millis(100),
        HOUR,
    );
    let dpop = build_dpop(cx, span, &key, raw);
    let revocation_store = match &raw.revocation {
        None => false,
        Some(r) if r.get_ref() == "store" => true,
        Some(r) => {
            cx.err(
                at(r),
                key("revocation"),
                format!(
                    "{:?} is not a source: use \"store\" (the fleet store), or revocation_file",
                    r.get_ref()
                ),
            );
            false
        }
    };
    if cx.errors.len() > before {
        return None;
    }
    Some(ProviderSettings {
        name: name.to_owned(),
        issuer: raw.issuer.clone(),
        audiences: raw.audiences.clone(),
        algorithms,
        leeway: raw.leeway,
        jwks_refresh: raw.jwks_refresh,
        jwks_min_refresh,
        jwks_ca,
        jwks_max_stale: raw.jwks_max_stale,
        jwks_refetch_cooldown: raw.jwks_refetch_cooldown,
        require_exp: raw.require_exp,
        max_token_lifetime: raw.max_token_lifetime,
        revocation_file,
        revocation_store,
        required_typ: raw.required_typ.as_deref().map(media_type),
        require_aud: raw.require_aud,
        introspect_jwts: raw.introspect_jwts || matches!(key_source, KeySource::None),
        key_source,
        introspection,
        dpop,
    })
}

/// Every asymmetric algorithm a DPoP proof may be signed with: the default list.
pub use crate::formats::jwks::ASYMMETRIC_ALGORITHMS as DPOP_ALGORITHMS;

fn build_dpop(
    cx: &mut Ctx<'_>,
    span: Option<usize>,
    key: &dyn Fn(&str) -> String,
    raw: &RawProvider,
) -> DpopSettings {
    let mode = match raw.dpop.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "allowed")) => DpopMode::Allowed,
        Some((_, "off")) => DpopMode::Off,
        Some((_, "required")) => DpopMode::Required,
        Some((m, other)) => {
            cx.err(
                at(m),
                key("dpop"),
                format!("{other:?} is not a mode: use \"off\", \"allowed\" or \"required\""),
            );
            DpopMode::Allowed
        }
    };
    let mut algorithms = Vec::new();
    match &raw.dpop_algorithms {
        None => algorithms.extend(DPOP_ALGORITHMS),
        Some(list) => {
            for a in list {
                match Algorithm::from_str(a.get_ref()) {
                    Ok(alg) if DPOP_ALGORITHMS.contains(&alg) => {
                        if !algorithms.contains(&alg) {
                            algorithms.push(alg);
                        }
                    }
                    _ => cx.err(
                        at(a),
                        key("dpop_algorithms"),
                        format!("{:?} is not an asymmetric algorithm a proof may use (ES256/384, RS256/384/512, PS256/384/512, EdDSA)", a.get_ref()),
                    ),
                }
            }
            if list.is_empty() {
                cx.err(
                    span,
                    key("dpop_algorithms"),
                    "must list at least one algorithm",
                );
            }
        }
    }
    let max_age = raw.dpop_max_age.unwrap_or(DEFAULT_DPOP_MAX_AGE);
    check_duration(
        cx,
        span,
        key("dpop_max_age"),
        max_age,
        SECOND,
        Duration::from_secs(600),
    );
    if mode == DpopMode::Off
        && (raw.dpop_algorithms.is_some() || raw.dpop_max_age.is_some() || raw.dpop_nonce)
    {
        cx.err(
            span,
            key("dpop"),
            "is \"off\": dpop_algorithms, dpop_max_age and dpop_nonce have nothing to tune",
        );
    }
    DpopSettings {
        mode,
        algorithms,
        max_age,
        nonce: raw.dpop_nonce,
    }
}

const DEFAULT_DPOP_MAX_AGE: Duration = Duration::from_secs(60);
