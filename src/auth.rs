//! The decision: route, extract, validate, authorize, and the headers to send upstream.
//!
//! `decide` is a pure function of the request head, one `Context` (config and keys) and the
//! clock. It does no I/O and takes no lock, so it is unit-tested and benchmarked without a
//! network. Every refusal is a `Reject`, which alone decides status, `WWW-Authenticate`,
//! metric label and log field. (An upstream that fails a granted request is not a refusal:
//! see `runtime::UpstreamFailure`.)

pub mod binding;
pub mod cache;
pub mod claims;
mod csrf;
pub mod dpop;
pub mod extract;
pub mod introspection;
pub mod keystore;
mod message;
pub mod policy;
mod reject;
pub mod trace;
pub mod validate;

use http::header::HOST;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};

use crate::config::routes::{AuthMode, Mode, Route, TokenSource};
use crate::config::{Config, ProviderId, RouteId, UpstreamId};
use crate::formats::normalize::{normalize_authority, normalize_target, Authority};
use crate::formats::revocation::Revocations;
use binding::Bound;
use cache::{TokenCache, TokenKey};
use claims::render_header_value;
use dpop::DpopState;
use extract::extract_token;
use introspection::Lookup;
use keystore::ProviderKeys;
use trace::{NoTrace, Step, Trace};

pub use message::{has_line_starting, has_line_starting_any};
pub use reject::Reject;

/// What `decide` reads besides the request: one config and what verifies tokens against
/// it. The runtime's snapshot implements it; unit tests build their own.
pub trait Context {
    fn config(&self) -> &Config;
    fn keys(&self, provider: ProviderId) -> &ProviderKeys;
    fn revocations(&self, provider: ProviderId) -> Option<&dyn Revocations>;
    fn token_cache(&self) -> Option<&TokenCache>;
    /// What `provider`'s introspection endpoint said about the token with this SHA-256, if
    /// that is known now. `None` makes `decide` refuse with `IntrospectionUnavailable`
    /// naming the provider: the thin layer asks the endpoint and decides again.
    fn introspection(&self, _provider: ProviderId, _token: &TokenKey) -> Option<Lookup> {
        None
    }
    /// The replay store and nonce key of DPoP proofs; `None` refuses every DPoP request
    /// (`DpopReplayUnavailable`): a proof is never accepted unchecked for replay.
    fn dpop(&self) -> Option<&DpopState>;
}

/// What a granted request carries to the upstream.
#[derive(Debug)]
pub struct Grant {
    pub route: RouteId,
    pub upstream: UpstreamId,
    /// Normalized path plus the query as sent: exactly what was authorized.
    pub path_and_query: String,
    /// Claim headers to add (the client's copies are stripped first).
    pub claim_headers: Vec<(HeaderName, HeaderValue)>,
    /// The provider that verified the token (none for anonymous requests).
    pub provider: Option<ProviderId>,
    /// Where the verified token was read: an index into the route's `token_sources` (set
    /// with `provider`). Only that carrier may be forwarded (`forward_token`); every other
    /// place a token could ride in is removed.
    pub token_source: Option<usize>,
    /// The authority the request was routed on (normalized): the upstream's `Host` and
    /// `X-Forwarded-Host`, whichever field the client carried it in.
    pub authority: Authority,
    /// Seconds the verified token has left (`exp - now`).
    pub remaining_lifetime: Option<f64>,
    /// The token's `sub` (at most 256 bytes), only when `server.log_subject` is on.
    pub subject: Option<String>,
    /// On a report-only route: the refusal this request would have had. The request goes
    /// through without claim headers, and without `Authorization` even with `forward_token`.
    pub would_reject: Option<Denial>,
    /// How the token was held to its sender: a DPoP proof (with its key and hold time for
    /// the fleet store, `settle_fleet`), a client certificate.
    pub bound: Bound,
    /// The answer carries a fresh `DPoP-Nonce` (the provider wants nonces in proofs).
    pub dpop_nonce: bool,
}

/// A refusal, with what the thin layer needs to answer it and to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reject,
    pub route: Option<RouteId>,
    /// For `UnknownKid`: the provider whose keys should be refetched once.
    pub provider: Option<ProviderId>,
}

/// What a first decision leaves to do before it can stand: the thin layer does it (I/O)
/// and decides again, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// An unknown `kid`: refetch this provider's keys once.
    Refetch(ProviderId),
    /// A token whose introspection answer is not known: ask this provider, for the token
    /// this route reads.
    Introspect(ProviderId, RouteId),
}

/// The `Pending` step of a decision, if any (on a report-only route too, where the refusal
/// rides on the grant).
pub fn pending(result: &Result<Grant, Denial>) -> Option<Pending> {
    let d = match result {
        Err(d) => *d,
        Ok(g) => g.would_reject?,
    };
    match d {
        Denial {
            reason: Reject::UnknownKid,
            provider: Some(p),
            ..
        } => Some(Pending::Refetch(p)),
        Denial {
            reason: Reject::IntrospectionUnavailable,
            provider: Some(p),
            route: Some(route),
        } => Some(Pending::Introspect(p, route)),
        _ => None,
    }
}

/// The request head, borrowed from whatever server parsed it.
pub struct RequestHead<'a> {
    pub method: &'a Method,
    pub version: Version,
    /// Request target as it was on the request line (HTTP/2: `:path`).
    pub target: &'a [u8],
    /// HTTP/2 `:authority`, which stands in for `Host` there (RFC 9113 §8.3.1).
    pub authority: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// HTTP/1 only: the head's bytes as received (framing checks need the header lines a
    /// parser may have merged or dropped). `None` over HTTP/2.
    pub raw_head: Option<&'a [u8]>,
    /// The client connection is TLS: a same-origin `Origin` must then be `https`, and a
    /// DPoP `htu` (without a `public_url`) starts with `https://`.
    pub tls: bool,
    /// SHA-256 of the client certificate (DER): the one of this TLS connection, or the
    /// `Client-Cert` header of a trusted peer. What `cnf["x5t#S256"]` must name.
    pub client_cert: Option<[u8; 32]>,
}

// === impl Denial ===

impl Denial {
    pub fn new(reason: Reject, route: Option<RouteId>) -> Self {
        Self {
            reason,
            route,
            provider: None,
        }
    }
}

/// Checks the message, then routes, authenticates and authorizes one request. `now` is
/// seconds since the Unix epoch.
pub fn decide<C: Context + ?Sized>(
    cx: &C,
    head: &RequestHead<'_>,
    now: f64,
) -> Result<Grant, Denial> {
    decide_traced(cx, head, now, &mut NoTrace)
}

/// `decide`, reporting each step to `trace` (`authgate explain`), the refusal included.
pub fn decide_traced<C: Context + ?Sized, T: Trace>(
    cx: &C,
    head: &RequestHead<'_>,
    now: f64,
    trace: &mut T,
) -> Result<Grant, Denial> {
    let result = decide_steps(cx, head, now, trace);
    match &result {
        Err(d) => trace.step(Step::Refused(d.reason)),
        Ok(Grant {
            would_reject: Some(d),
            ..
        }) => trace.step(Step::WouldReject(d.reason)),
        Ok(_) => {}
    }
    result
}

fn decide_steps<C: Context + ?Sized, T: Trace>(
    cx: &C,
    head: &RequestHead<'_>,
    now: f64,
    trace: &mut T,
) -> Result<Grant, Denial> {
    let config = cx.config();
    let refuse = |reason| Denial::new(reason, None);
    message::size(head, config.server.max_header_bytes).map_err(refuse)?;
    // RFC 9112 §3.2: an HTTP/1.1 request without `Host` is a 400, even with an
    // absolute-form target (the upstream would pick its default virtual host). HTTP/2
    // carries `:authority` instead (its version is never 1.1).
    if head.version == Version::HTTP_11 && !head.headers.contains_key(HOST) {
        return Err(refuse(Reject::BadHost));
    }
    message::framing(head).map_err(refuse)?;
    trace.step(Step::Message {
        max_header_bytes: config.server.max_header_bytes,
    });
    if head.method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(Denial::new(Reject::BadMethod, None));
    }
    let mut target = normalize_target(head.target).map_err(|e| Denial::new(e.into(), None))?;
    trace.step(Step::Target {
        path: &target.path,
        query: target.query.as_deref(),
    });
    let authority = request_authority(head.headers, head.authority, target.authority.take())
        .map_err(|r| Denial::new(r, None))?;
    trace.step(Step::Authority(&authority));
    let route_idx = config
        .routes
        .match_route(Some(&authority.host), &target.path, head.method)
        .ok_or(Denial::new(Reject::NoRoute, None))?;
    let route = config.routes.get(route_idx);
    trace.step(Step::Route {
        id: route_idx,
        route,
        host: &authority.host,
        path: &target.path,
        method: head.method,
    });

    let mut grant = Grant {
        route: route_idx,
        upstream: route.upstream,
        path_and_query: target.path_and_query(),
        claim_headers: Vec::new(),
        provider: None,
        authority,
        token_source: None,
        remaining_lifetime: None,
        subject: None,
        would_reject: None,
        bound: Bound::default(),
        dpop_nonce: false,
    };
    match authenticate(cx, head, route, &target.path, &mut grant, now, trace) {
        Ok(()) => Ok(grant),
        Err(denial) => refuse_or_report(route, grant, denial),
    }
}

/// A refusal where the route enforces; on a report-only route, for the refusals it reports,
/// the request goes through as an anonymous one, carrying the refusal it would have had
/// (and nothing the token said).
fn refuse_or_report(route: &Route, mut grant: Grant, denial: Denial) -> Result<Grant, Denial> {
    if route.mode != Mode::Report || !denial.reason.is_reportable() {
        return Err(denial);
    }
    grant.claim_headers.clear();
    grant.provider = None;
    grant.remaining_lifetime = None;
    grant.subject = None;
    grant.token_source = None;
    grant.bound = Bound::default();
    grant.dpop_nonce = false;
    grant.would_reject = Some(denial);
    Ok(grant)
}

/// What the fleet store said of a granted request's DPoP proof (`Bound::proof`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetAnswer {
    /// The first use anywhere in the fleet.
    First,
    /// Used before, at this replica or another.
    Seen,
    /// The store could not say (down, slow, an error).
    Unavailable,
}

/// What to do with a proof the fleet store cannot vouch for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreOutage {
    /// 503 `dpop_replay_unavailable` (the default).
    FailClosed,
    /// This replica's own replay check stands (it already passed).
    Local,
}

/// The decision once the fleet store has answered for the grant's proof: a replay at another
/// replica is refused (or reported, on a report-only route) as one here would be; an outage
/// follows `on_outage`. Pure: the thin layer does the asking.
pub fn settle_fleet(
    config: &Config,
    grant: Grant,
    answer: FleetAnswer,
    on_outage: OnStoreOutage,
) -> Result<Grant, Denial> {
    let reason = match (answer, on_outage) {
        (FleetAnswer::First, _) | (FleetAnswer::Unavailable, OnStoreOutage::Local) => {
            return Ok(grant)
        }
        (FleetAnswer::Seen, _) => Reject::DpopReplay,
        (FleetAnswer::Unavailable, OnStoreOutage::FailClosed) => Reject::DpopReplayUnavailable,
    };
    let route = config.routes.get(grant.route);
    let denial = Denial {
        reason,
        route: Some(grant.route),
        provider: grant.provider,
    };
    refuse_or_report(route, grant, denial)
}

/// The token part of `decide` for a matched route: extract, verify, authorize, and the
/// claim headers into `grant`.
fn authenticate<C: Context + ?Sized, T: Trace>(
    cx: &C,
    head: &RequestHead<'_>,
    route: &Route,
    path: &str,
    grant: &mut Grant,
    now: f64,
    trace: &mut T,
) -> Result<(), Denial> {
    let config = cx.config();
    let route_idx = grant.route;
    let deny = |reason| Denial::new(reason, Some(route_idx));
    if route.auth == AuthMode::None {
        trace.step(Step::Anonymous);
        return Ok(());
    }
    let found = extract_token(
        head.headers,
        &route.token_sources,
        config.server.max_token_bytes,
    )
    .map_err(deny)?;
    let (token, source, found_source, dpop_scheme) = match found {
        Some(f) => (f.token, &route.token_sources[f.source], f.source, f.dpop),
        None if route.auth == AuthMode::Optional => {
            trace.step(Step::Anonymous);
            return Ok(());
        }
        None => return Err(deny(Reject::MissingToken)),
    };
    trace.step(Step::Bearer {
        bytes: token.len(),
        source,
    });
    // A cookie rides along on any request the browser makes, cross-site ones included.
    if matches!(source, TokenSource::Cookie(_)) {
        csrf::check(head, &route.csrf, &grant.authority).map_err(deny)?;
        trace.step(Step::Csrf(&route.csrf));
    }
    let verified =
        validate::verify(token, route, cx, now, trace).map_err(|(reason, provider)| Denial {
            reason,
            route: Some(route_idx),
            provider,
        })?;
    let provider = &config.providers[verified.provider.index()];
    let presented = binding::Presented {
        head,
        route,
        authority: &grant.authority,
        path,
        token,
        dpop_scheme,
    };
    let bound =
        binding::check(cx, &presented, provider, &verified.claims, now, trace).map_err(|r| {
            // `use_dpop_nonce` is answered with a nonce: the thin layer adds it.
            Denial {
                reason: r,
                route: Some(route_idx),
                provider: Some(verified.provider),
            }
        })?;
    trace.step(Step::Binding(bound));
    trace.step(Step::Authorize {
        route,
        claims: &verified.claims,
    });
    policy::authorize(route, &verified.claims).map_err(deny)?;
    for fc in &config.headers.forward_claims {
        if let Some(value) = fc.claim.lookup(&verified.claims) {
            match render_header_value(value) {
                Ok(Some(v)) => {
                    trace.step(Step::ClaimHeader { header: &fc.header });
                    grant.claim_headers.push((fc.header.clone(), v));
                }
                Ok(None) => {}
                Err(_) => return Err(deny(Reject::UnsafeClaimValue)),
            }
        }
    }
    grant.provider = Some(verified.provider);
    grant.token_source = Some(found_source);
    grant.bound = bound;
    grant.dpop_nonce = bound.dpop() && provider.dpop.nonce;
    grant.remaining_lifetime = verified.remaining_lifetime;
    if config.server.log_subject {
        grant.subject = verified
            .claims
            .get("sub")
            .and_then(|s| s.as_str())
            .filter(|s| s.len() <= 256)
            .map(str::to_owned);
    }
    Ok(())
}

/// The token `decide` read for route `route` of this request, for the introspection call
/// the thin layer makes when `decide` asked for one (the same extraction, run again).
pub fn token_of<'h>(config: &Config, headers: &'h HeaderMap, route: RouteId) -> Option<&'h str> {
    let route = config.routes.get(route);
    extract_token(headers, &route.token_sources, config.server.max_token_bytes)
        .ok()
        .flatten()
        .map(|f| f.token)
}

/// The authority the request is for, from every place a client can put it: exactly one
/// `Host` header, HTTP/2's `:authority`, an absolute-form target. Each must be a plausible
/// `host[:port]`, and all that are present must agree after normalization: routing on one
/// while the upstream reads another is a host-route bypass. A request that carries no
/// authority at all (HTTP/1.0 without `Host`) is refused too: the upstream would pick a host
/// itself (its default virtual host), which nobody authorized.
fn request_authority(
    headers: &HeaderMap,
    h2_authority: Option<&str>,
    target: Option<Authority>,
) -> Result<Authority, Reject> {
    let mut hosts = headers.get_all(HOST).iter();
    let header = match (hosts.next(), hosts.next()) {
        (None, _) => None,
        (Some(h), None) => {
            let h = h.to_str().map_err(|_| Reject::BadHost)?;
            Some(normalize_authority(h).ok_or(Reject::BadHost)?)
        }
        (Some(_), Some(_)) => return Err(Reject::BadHost),
    };
    let h2 = h2_authority
        .map(|a| normalize_authority(a).ok_or(Reject::BadHost))
        .transpose()?;
    let mut found: Option<Authority> = None;
    for a in [header, h2, target].into_iter().flatten() {
        match &found {
            Some(f) if *f != a => return Err(Reject::BadHost),
            Some(_) => {}
            None => found = Some(a),
        }
    }
    found.ok_or(Reject::BadHost)
}

#[cfg(test)]
mod tests;
