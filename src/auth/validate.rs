//! Token verification: compact JWS parsing, key choice, signature, and registered claims.
//!
//! jsonwebtoken does the signature math (`crypto::verify`); everything around it is ours,
//! because its `Validation` defaults differ from what a gateway must enforce (see README,
//! "Security"): leeway 60 s, `nbf` unchecked, missing `iss`/`aud` accepted, `crit` ignored,
//! the key's algorithm not pinned.

use std::str::FromStr;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;

use super::cache::{TokenCache, TokenKey};
use super::claims::Claims;
use super::introspection::Lookup;
use super::keystore::ProviderKeys;
use super::trace::{NoTrace, Step, Trace};
use super::{Context, Reject};
use crate::config::routes::Route;
use crate::config::{ProviderId, ProviderSettings};
use crate::formats::jwks::{Candidates, KeySet};
use crate::formats::media_type;
use crate::formats::revocation::{self, Verdict};

/// A token whose signature and registered claims checked out.
#[derive(Debug)]
pub struct Verified {
    pub provider: ProviderId,
    pub claims: Arc<Claims>,
    /// `exp - now`, seconds, when the token has `exp`.
    pub remaining_lifetime: Option<f64>,
}

/// The JOSE header fields we read. `jwk`, `jku`, `x5u` and `x5c` are deliberately not
/// fields: the key never comes from the token (key injection, RFC 8725 §3.5).
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Present at all (`null` included): no extension is implemented (RFC 7515 §4.1.11).
    #[serde(default, deserialize_with = "crate::formats::json::present")]
    crit: bool,
    #[serde(default)]
    typ: Option<String>,
}

/// Verifies `token` for `route`. A JWT (three base64url parts, the first a JOSE header) is
/// verified against the first of the route's providers whose issuer it names, or taken
/// from a cached verification that still holds (see `cache`), or introspected when that
/// provider introspects JWTs. Any other token is opaque: it goes to the route's
/// introspecting provider, or is malformed where there is none.
/// On failure, returns the reason and, for `UnknownKid`, the provider to refetch; for
/// `IntrospectionUnavailable`, the provider to ask (its answer is not known yet).
pub fn verify<C: Context + ?Sized, T: Trace>(
    token: &str,
    route: &Route,
    cx: &C,
    now: f64,
    trace: &mut T,
) -> Result<Verified, (Reject, Option<ProviderId>)> {
    let plain = |r| (r, None);
    let providers = &route.providers[..];
    // Not a JWT: opaque, for the route's introspecting provider if it has one.
    let opaque = |trace: &mut T, reason: Reject| match route.introspection {
        Some(p) => introspected(token, p, cx, now, trace),
        None => Err(plain(reason)),
    };
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        // A JOSE object of another shape (a JWE's five parts, a JWS with a stray dot) is
        // some issuer's token, not an opaque one: never handed to an introspection
        // endpoint, whose IdP it may not be for.
        if token.split('.').next().is_some_and(looks_jose) {
            return Err(plain(Reject::MalformedToken));
        }
        return opaque(trace, Reject::MalformedToken);
    };
    let cache = cx.token_cache().map(|c| (c, TokenCache::key(token)));
    if let Some((cache, key)) = &cache {
        match cached(cache, key, providers, cx, now) {
            Some(result) => {
                cache.hit();
                if let Ok(v) = &result {
                    trace.step(Step::Cached {
                        provider: v.provider,
                    });
                }
                return result.map_err(plain);
            }
            None => cache.miss(),
        }
    }
    let header: JoseHeader = match decode_json(h64) {
        Ok(h) => h,
        // A JOSE header this gateway refuses to read (a member named twice) is still a
        // JOSE header: some issuer's token, never handed to an introspection endpoint.
        Err(reason) if looks_jose(h64) => return Err(plain(reason)),
        Err(reason) => return opaque(trace, reason),
    };
    trace.step(Step::Jose {
        alg: &header.alg,
        kid: header.kid.as_deref(),
        typ: header.typ.as_deref(),
        crit: header.crit,
    });
    // `none` (any spelling) and unknown names fail before any key is considered.
    let alg = Algorithm::from_str(&header.alg).map_err(|_| plain(Reject::AlgNotAllowed))?;
    if header.crit {
        return Err(plain(Reject::CritUnsupported));
    }
    // A member named twice (`"cnf"` bound, then `"cnf": {}`) reads as either: no claims.
    let claims: Claims = decode_strict(p64).map_err(plain)?;

    let provider_idx = pick_provider(&claims, providers, cx.config()).map_err(plain)?;
    let provider = &cx.config().providers[provider_idx.index()];
    if provider.introspect_jwts {
        // The token goes to this provider's endpoint only if it says it is this provider's:
        // a JWT of another issuer is never handed to an IdP it is not for (with one
        // provider on the route, nothing else has checked its `iss` yet).
        if claims.get("iss").and_then(Value::as_str) != Some(provider.issuer.as_str()) {
            return Err(plain(Reject::BadIssuer));
        }
        return introspected(token, provider_idx, cx, now, trace);
    }
    trace.step(Step::Provider(provider_idx));
    // Allow-list from config, never from the header: stops RS/HS key confusion.
    if !provider.algorithms.contains(&alg) {
        return Err(plain(Reject::AlgNotAllowed));
    }
    let store = cx.keys(provider_idx);
    let generation = store.generation();
    let keys = store.current();
    // No keys yet, or keys the provider has not confirmed for `jwks_max_stale`: fail closed.
    let Some(keys) = keys.as_ref().filter(|_| !store.is_stale()) else {
        return Err(plain(Reject::KeysUnavailable));
    };
    let message_len = h64.len() + 1 + p64.len();
    let message = &token.as_bytes()[..message_len];
    let (candidates, verified) =
        match check_signature(keys, header.kid.as_deref(), alg, message, s64) {
            Ok(checked) => checked,
            Err(Reject::UnknownKid) => return Err((Reject::UnknownKid, Some(provider_idx))),
            Err(r) => return Err(plain(r)),
        };
    trace.step(Step::Signature {
        candidates,
        valid: verified,
    });
    if !verified {
        return Err(plain(Reject::BadSignature));
    }
    if let Some(want) = &provider.required_typ {
        if header.typ.as_deref().map(media_type).as_deref() != Some(want.as_str()) {
            return Err(plain(Reject::BadType));
        }
    }
    trace.step(Step::Registered {
        claims: &claims,
        now,
        leeway: provider.leeway.as_secs_f64(),
    });
    let exp = check_registered_claims(&claims, provider, now).map_err(plain)?;
    not_revoked(cx, provider_idx, &claims, trace).map_err(plain)?;
    let remaining_lifetime = exp.map(|exp| exp - now);
    let claims = Arc::new(claims);
    if let Some((cache, key)) = cache {
        let valid_for = exp.map(|exp| exp + provider.leeway.as_secs_f64() - now);
        cache.insert(
            key,
            provider_idx,
            generation,
            claims.clone(),
            p64.len(),
            valid_for,
        );
    }
    Ok(Verified {
        provider: provider_idx,
        claims,
        remaining_lifetime,
    })
}

/// A token the provider's introspection endpoint vouches for: its answer's claims, checked
/// now as a JWT's would be (issuer, audience, time claims with leeway, lifetime, revocation
/// list). An answer not known yet is `IntrospectionUnavailable` naming the provider.
fn introspected<C: Context + ?Sized, T: Trace>(
    token: &str,
    provider_idx: ProviderId,
    cx: &C,
    now: f64,
    trace: &mut T,
) -> Result<Verified, (Reject, Option<ProviderId>)> {
    let provider = &cx.config().providers[provider_idx.index()];
    trace.step(Step::Provider(provider_idx));
    let answer = cx.introspection(provider_idx, &TokenCache::key(token));
    trace.step(Step::Introspection {
        provider: provider_idx,
        active: answer.as_ref().map(|a| matches!(a, Lookup::Active(_))),
    });
    let claims = match answer {
        None => return Err((Reject::IntrospectionUnavailable, Some(provider_idx))),
        Some(Lookup::Inactive) => return Err((Reject::InactiveToken, None)),
        Some(Lookup::Active(claims)) => claims,
    };
    if !is_access_token(&claims) {
        return Err((Reject::BadType, None));
    }
    let claims = with_token_binding(token, claims).map_err(|r| (r, None))?;
    trace.step(Step::Registered {
        claims: &claims,
        now,
        leeway: provider.leeway.as_secs_f64(),
    });
    let exp = check_registered_claims(&claims, provider, now).map_err(|r| (r, None))?;
    not_revoked(cx, provider_idx, &claims, trace).map_err(|r| (r, None))?;
    Ok(Verified {
        provider: provider_idx,
        claims,
        remaining_lifetime: exp.map(|exp| exp - now),
    })
}

/// The answer's claims, bound as the token says: an answer without `cnf` for a token that
/// states one (a JWT with `cnf.jkt` or `cnf["x5t#S256"]`) takes the token's, which can only
/// ask more of the request (a binding is never dropped because an IdP left it out of its
/// answer); an answer that says `token_type` DPoP without naming the key cannot be checked.
fn with_token_binding(token: &str, claims: Arc<Claims>) -> Result<Arc<Claims>, Reject> {
    let claims = if claims.contains_key("cnf") {
        claims
    } else {
        // The payload read strictly, as a JWT's claims are: a `cnf` named twice is no claim.
        use crate::formats::json::{is_duplicate, Strict};
        let own = match token.split('.').nth(1).map(|p| URL_SAFE_NO_PAD.decode(p)) {
            Some(Ok(bytes)) => match serde_json::from_slice::<Strict>(&bytes) {
                Ok(Strict(Value::Object(mut payload))) => payload.remove("cnf"),
                Err(e) if is_duplicate(&e) => return Err(Reject::MalformedToken),
                _ => None,
            },
            _ => None,
        };
        match own {
            None => claims,
            Some(cnf) => {
                let mut bound = (*claims).clone();
                bound.insert("cnf".to_owned(), cnf);
                Arc::new(bound)
            }
        }
    };
    // The IdP says DPoP but names no key: nothing to hold the client to.
    let dpop_typed = claims
        .get("token_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop"));
    if dpop_typed && claims.get("cnf").and_then(|c| c.get("jkt")).is_none() {
        return Err(Reject::BindingUnsupported);
    }
    Ok(claims)
}

/// Whether `h64` is a JOSE header by its looks (base64url of a JSON object with `alg`),
/// read leniently: even one this gateway refuses to parse is some issuer's token.
fn looks_jose(h64: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(h64)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some_and(|v| v.get("alg").is_some())
}

/// Whether an active answer is for an access token. Many endpoints answer active for refresh
/// tokens too, in their own words: RFC 7662's `token_type` (any spelling with `refresh`, or
/// not a string at all), Hydra's `token_use` (anything but `access_token`), Keycloak's `typ`
/// (`Refresh`, `Offline`, `ID`). Only an access token is a bearer credential for an API.
fn is_access_token(claims: &Claims) -> bool {
    let token_type = match claims.get("token_type") {
        None => true,
        Some(Value::String(t)) => !t.to_ascii_lowercase().contains("refresh"),
        Some(_) => false,
    };
    let token_use = match claims.get("token_use") {
        None => true,
        Some(v) => v.as_str() == Some("access_token"),
    };
    let typ = match claims.get("typ").and_then(Value::as_str) {
        Some(t) => !matches!(
            t.to_ascii_lowercase().as_str(),
            "refresh" | "offline" | "id"
        ),
        None => true,
    };
    token_type && token_use && typ
}

/// The provider's revocation lists on a token's claims: `Revoked`, or
/// `RevocationUnavailable` while a list it must ask has no copy yet (fail closed).
fn not_revoked<C: Context + ?Sized, T: Trace>(
    cx: &C,
    provider: ProviderId,
    claims: &Claims,
    trace: &mut T,
) -> Result<(), Reject> {
    let Some(list) = cx.revocations(provider) else {
        return Ok(());
    };
    let verdict = revocation::check(list, claims);
    trace.step(Step::Revocation { verdict });
    match verdict {
        Verdict::Clear => Ok(()),
        Verdict::Revoked => Err(Reject::Revoked),
        Verdict::NoCopy => Err(Reject::RevocationUnavailable),
    }
}

/// A cached verification of this token, if one holds for this route now: `None` sends the
/// token through the full check. The time-dependent claims and the revocation list are
/// checked again on every use.
fn cached<C: Context + ?Sized>(
    cache: &TokenCache,
    key: &TokenKey,
    providers: &[ProviderId],
    cx: &C,
    now: f64,
) -> Option<Result<Verified, Reject>> {
    let entry = cache.get(key)?;
    if !providers.contains(&entry.provider) {
        return None;
    }
    let store = cx.keys(entry.provider);
    if store.generation() != entry.generation || !store.is_usable() {
        return None;
    }
    let provider = &cx.config().providers[entry.provider.index()];
    Some(
        check_registered_claims(&entry.claims, provider, now).and_then(|exp| {
            not_revoked(cx, entry.provider, &entry.claims, &mut NoTrace)?;
            Ok(Verified {
                provider: entry.provider,
                claims: entry.claims.clone(),
                remaining_lifetime: exp.map(|exp| exp - now),
            })
        }),
    )
}

/// A JWS signed by one of the provider's keys with an allowed algorithm (an RFC 9701
/// signed introspection answer): its `typ` and claims. Same key rules as for tokens: the
/// algorithm from the allow-list, the key from the provider, never from the JWS.
pub fn verify_signed(
    jws: &str,
    store: &ProviderKeys,
    provider: &ProviderSettings,
) -> Result<(Option<String>, Claims), Reject> {
    let mut parts = jws.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::MalformedToken);
    };
    let header: JoseHeader = decode_json(h64)?;
    let alg = Algorithm::from_str(&header.alg).map_err(|_| Reject::AlgNotAllowed)?;
    if header.crit {
        return Err(Reject::CritUnsupported);
    }
    if !provider.algorithms.contains(&alg) {
        return Err(Reject::AlgNotAllowed);
    }
    let keys = store.current();
    let Some(keys) = keys.as_ref().filter(|_| !store.is_stale()) else {
        return Err(Reject::KeysUnavailable);
    };
    let message = &jws.as_bytes()[..h64.len() + 1 + p64.len()];
    let (_, valid) = check_signature(keys, header.kid.as_deref(), alg, message, s64)?;
    if !valid {
        return Err(Reject::BadSignature);
    }
    Ok((header.typ.map(|t| media_type(&t)), decode_strict(p64)?))
}

/// The keys for `kid` and `alg`, and whether one of them signed `message` with `sig`:
/// (how many were tried, valid). A `kid` pinned to another algorithm is `AlgNotAllowed`;
/// none for it, `UnknownKid`.
fn check_signature(
    keys: &KeySet,
    kid: Option<&str>,
    alg: Algorithm,
    message: &[u8],
    sig: &str,
) -> Result<(usize, bool), Reject> {
    match keys.candidates(kid, alg) {
        Candidates::One(k) => Ok((1, k.verify(sig, message, alg))),
        Candidates::Several(ks) => Ok((ks.len(), ks.iter().any(|k| k.verify(sig, message, alg)))),
        Candidates::WrongAlgorithm => Err(Reject::AlgNotAllowed),
        Candidates::UnknownKid => Err(Reject::UnknownKid),
    }
}

/// A base64url JSON object whose members are each named once (`formats::json`).
fn decode_strict(part: &str) -> Result<Claims, Reject> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Reject::MalformedToken)?;
    crate::formats::json::strict_object(&bytes).ok_or(Reject::MalformedToken)
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, Reject> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Reject::MalformedToken)?;
    serde_json::from_slice(&bytes).map_err(|_| Reject::MalformedToken)
}

/// With one provider, it is the one (its `iss` is checked after the signature). With
/// several, the unverified `iss` only selects which provider's keys to try.
fn pick_provider(
    claims: &Claims,
    providers: &[ProviderId],
    config: &crate::config::Config,
) -> Result<ProviderId, Reject> {
    match providers {
        [only] => Ok(*only),
        many => {
            let iss = claims
                .get("iss")
                .and_then(Value::as_str)
                .ok_or(Reject::BadIssuer)?;
            many.iter()
                .copied()
                .find(|p| config.providers[p.index()].issuer == iss)
                .ok_or(Reject::BadIssuer)
        }
    }
}

/// `iss` exact, `aud` contains an accepted audience, `exp`/`nbf`/`iat` as JSON numbers
/// (RFC 7519 NumericDate, fractions allowed) within `leeway`. Returns `exp`, if present.
pub fn check_registered_claims(
    claims: &Claims,
    provider: &ProviderSettings,
    now: f64,
) -> Result<Option<f64>, Reject> {
    if claims.get("iss").and_then(Value::as_str) != Some(provider.issuer.as_str()) {
        return Err(Reject::BadIssuer);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => provider.audiences.iter().any(|x| x == a),
        // No `aud` at all, or an empty list (Hydra's answer for a token issued for no
        // audience): accepted only where the provider says its tokens carry none.
        None => !provider.require_aud,
        Some(Value::Array(items)) if items.is_empty() => !provider.require_aud,
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|a| provider.audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(Reject::BadAudience);
    }
    let leeway = provider.leeway.as_secs_f64();
    let exp = numeric_date(claims, "exp")?;
    match exp {
        Some(exp) if now > exp + leeway => return Err(Reject::Expired),
        Some(_) => {}
        None if provider.require_exp => return Err(Reject::BadClaims),
        None => {}
    }
    if let Some(nbf) = numeric_date(claims, "nbf")? {
        if nbf > now + leeway {
            return Err(Reject::NotYetValid);
        }
    }
    let iat = numeric_date(claims, "iat")?;
    if let Some(iat) = iat {
        if iat > now + leeway {
            return Err(Reject::NotYetValid);
        }
    }
    if let Some(max) = provider.max_token_lifetime {
        // A limit on lifetime needs both ends: no `iat` (or no `exp`) fails it.
        match (iat, exp) {
            (Some(iat), Some(exp)) if exp - iat <= max.as_secs_f64() => {}
            _ => return Err(Reject::LifetimeTooLong),
        }
    }
    Ok(exp)
}

/// `Ok(None)` when absent; a string, null or non-finite value is malformed.
fn numeric_date(claims: &Claims, name: &str) -> Result<Option<f64>, Reject> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or(Reject::BadClaims),
        Some(_) => Err(Reject::BadClaims),
    }
}
