//! Sender-constrained tokens, checked once the token itself is verified: DPoP (RFC 9449)
//! and certificate binding (RFC 8705). A bound token is worth nothing without the key or
//! certificate it names; a binding the gateway cannot check is refused, never treated as a
//! bearer token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::HeaderName;
use serde_json::Value;

use super::claims::Claims;
use super::dpop::replay::{proof_key, ProofKey};
use super::dpop::{check_proof, Expected};
use super::trace::{Step, Trace};
use super::{Context, Reject, RequestHead};
use crate::config::routes::Route;
use crate::config::{DpopMode, ProviderSettings};
use crate::formats::dpop::expected_htu;
use crate::formats::normalize::Authority;

/// The `DPoP` request header (RFC 9449 §4.1).
pub static DPOP: HeaderName = HeaderName::from_static("dpop");

/// How the verified token was held to its sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bound {
    /// A DPoP proof by the token's key came with it, and passed this replica's replay
    /// check: its replay key and how long (ms) the fleet store should hold it.
    pub proof: Option<(ProofKey, u64)>,
    /// The client certificate on the connection is the token's.
    pub cert: bool,
}

impl Bound {
    /// A DPoP proof came with the token.
    pub const fn dpop(self) -> bool {
        self.proof.is_some()
    }

    /// The access log's `binding`: `dpop`, `mtls`, `dpop+mtls`, or none (a bearer token).
    pub const fn label(self) -> Option<&'static str> {
        match (self.dpop(), self.cert) {
            (true, true) => Some("dpop+mtls"),
            (true, false) => Some("dpop"),
            (false, true) => Some("mtls"),
            (false, false) => None,
        }
    }
}

/// The request as the binding checks see it.
pub struct Presented<'a> {
    pub head: &'a RequestHead<'a>,
    pub route: &'a Route,
    /// The authority and normalized path that were routed on (the `htu` to expect).
    pub authority: &'a Authority,
    pub path: &'a str,
    pub token: &'a str,
    /// The token came as `Authorization: DPoP`.
    pub dpop_scheme: bool,
}

/// Checks the token's `cnf` against what the request presents: a DPoP proof by the key of
/// `cnf.jkt`, the client certificate of `cnf["x5t#S256"]`; and the provider's `dpop` mode
/// against how the token came.
pub fn check<C: Context + ?Sized, T: Trace>(
    cx: &C,
    p: &Presented<'_>,
    provider: &ProviderSettings,
    claims: &Claims,
    now: f64,
    trace: &mut T,
) -> Result<Bound, Reject> {
    let mut jkt = None;
    let mut x5t = None;
    match claims.get("cnf") {
        None => {}
        Some(Value::Object(cnf)) => {
            for (member, value) in cnf {
                let slot = match member.as_str() {
                    "jkt" => &mut jkt,
                    "x5t#S256" => &mut x5t,
                    // `jwk`, `jku`, `kid`, ...: a key this gateway cannot hold the client to.
                    _ => return Err(Reject::BindingUnsupported),
                };
                let Value::String(v) = value else {
                    return Err(Reject::BadClaims);
                };
                *slot = Some(v.as_str());
            }
        }
        Some(_) => return Err(Reject::BadClaims),
    }
    let mut bound = Bound::default();
    if let Some(x5t) = x5t {
        let presented = p.head.client_cert.map(|c| URL_SAFE_NO_PAD.encode(c));
        if presented.as_deref() != Some(x5t) {
            return Err(Reject::CertBindingMismatch);
        }
        bound.cert = true;
    }
    let mode = provider.dpop.mode;
    let mut proofs = p.head.headers.get_all(&DPOP).iter();
    let proof = proofs.next();
    let repeated = proofs.next().is_some();
    if mode == DpopMode::Off {
        // Neither the scheme nor a bound token: the proof header alone is ignored (and
        // never reaches the upstream).
        if p.dpop_scheme || jkt.is_some() {
            return Err(Reject::BindingUnsupported);
        }
        return Ok(bound);
    }
    if !p.dpop_scheme {
        return match (jkt, mode, proof) {
            // A DPoP-bound token without its proof's scheme: a downgrade.
            (Some(_), _, _) | (None, DpopMode::Required, _) => Err(Reject::TokenBindingRequired),
            // A proof with a token bound to no key proves nothing about the token.
            (None, _, Some(_)) => Err(Reject::DpopBindingMismatch),
            (None, _, None) => Ok(bound),
        };
    }
    // The DPoP scheme needs exactly one proof, whatever the token is bound to.
    let proof = match (proof, repeated) {
        (Some(v), false) => v.to_str().map_err(|_| Reject::DpopProofInvalid)?,
        _ => return Err(Reject::DpopProofInvalid),
    };
    let Some(jkt) = jkt else {
        return Err(Reject::DpopBindingMismatch);
    };
    if proof.len() > cx.config().server.max_token_bytes {
        return Err(Reject::DpopProofInvalid);
    }
    let htu = expected_htu(p.route.htu_base.as_deref(), p.head.tls, p.authority, p.path);
    let leeway = provider.leeway.as_secs_f64();
    let max_age = provider.dpop.max_age.as_secs_f64();
    let checked = check_proof(
        proof,
        &Expected {
            method: p.head.method,
            htu: &htu,
            access_token: Some(p.token),
            algorithms: &provider.dpop.algorithms,
            now,
            max_age,
            leeway,
        },
    )
    .map_err(|bad| {
        // Which check failed is for `explain` (the answer and the log say only the reason).
        trace.step(Step::ProofRefused { bad, htu: &htu });
        Reject::DpopProofInvalid
    })?;
    if checked.jkt != jkt {
        return Err(Reject::DpopBindingMismatch);
    }
    let state = cx.dpop().ok_or(Reject::DpopReplayUnavailable)?;
    if provider.dpop.nonce
        && !checked
            .nonce
            .as_deref()
            .is_some_and(|n| state.nonce_is_fresh(n, now))
    {
        return Err(Reject::UseDpopNonce);
    }
    // Remembered for as long as any provider would accept its `iat`, and a second more:
    // the store counts whole milliseconds, the window check does not.
    let ms = |t: f64| (t.max(0.0) * 1000.0) as u64;
    let window = state.window_ms(ms(max_age + leeway)).saturating_add(1000);
    let key = proof_key(jkt, &checked.jti);
    match state
        .replay
        .first_use(&key, ms(checked.iat), ms(now), window)
    {
        Ok(true) => {}
        Ok(false) => return Err(Reject::DpopReplay),
        Err(_) => return Err(Reject::DpopReplayUnavailable),
    }
    // The fleet holds it until its window ends: `iat` + window, from now.
    let hold = (ms(checked.iat).saturating_add(window)).saturating_sub(ms(now));
    bound.proof = Some((key, hold));
    Ok(bound)
}
