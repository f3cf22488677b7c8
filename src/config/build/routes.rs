//! `[[routes]]`: matchers normalized and indexed, names resolved to ids, ambiguity refused.

use std::collections::{BTreeMap, HashSet};

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderName, HeaderValue, Method};
use jsonwebtoken::Algorithm;

use super::providers::DPOP_ALGORITHMS;
use super::{at, is_label, Ctx};
use crate::config::routes::{
    AuthMode, ClaimRequirement, Csrf, HostMatch, Mode, PathMatch, Route, RouteTable, TokenSource,
};
use crate::config::schema::{RawAuthMode, RawConfig, RawMode, RawRoute};
use crate::config::{DpopMode, ProviderId, ProviderSettings, UpstreamId};
use crate::formats::canonical_header;
use crate::formats::claim_path::ClaimPath;
use crate::formats::dpop::{algorithm_names, public_url_base};
use crate::formats::header_names::is_managed;
use crate::formats::normalize::{normalize_host, normalize_path};

pub(super) fn build_routes(
    cx: &mut Ctx<'_>,
    raw: &RawConfig,
    upstreams: &[String],
    providers: &[String],
    provider_settings: &[ProviderSettings],
) -> Option<RouteTable> {
    let mut routes = Vec::new();
    let mut spans = Vec::new();
    let mut names = BTreeMap::new();
    let server_public_url = raw
        .server
        .public_url
        .as_ref()
        .and_then(|u| public_url_base(u.get_ref()).ok());
    if raw.routes.is_empty() {
        cx.err(
            None,
            "routes",
            "no routes: every request would be refused (404)",
        );
    }
    let claim_headers: Vec<String> = raw
        .headers
        .forward_claims
        .values()
        .map(|h| canonical_header(h.get_ref()))
        .collect();
    for (i, r) in raw.routes.iter().enumerate() {
        let span = at(r);
        if let Some(route) = build_route(
            cx,
            i,
            r.get_ref(),
            span,
            &Known {
                upstreams,
                providers,
                provider_settings,
                default_mode: raw.defaults.mode,
                claim_headers: &claim_headers,
                public_url: server_public_url.as_deref(),
            },
        ) {
            if let Some(prev) = names.insert(route.name.clone(), i) {
                cx.err(
                    span,
                    format!("routes[{i}].name"),
                    format!("{:?} is already the name of routes[{prev}]", route.name),
                );
            }
            routes.push(route);
            spans.push((i, span));
        }
    }
    if routes.len() != raw.routes.len() {
        return None;
    }
    match RouteTable::new(routes) {
        Ok(t) => Some(t),
        Err(ambiguities) => {
            for a in ambiguities {
                let (i, span) = spans[a.route];
                let (j, _) = spans[a.other];
                cx.err(
                    span,
                    format!("routes[{i}]"),
                    format!("matches the same requests as routes[{j}] with the same specificity (same host; same path, where an exact path ignores one trailing slash; overlapping methods): which one applies would be a guess"),
                );
            }
            None
        }
    }
}

/// What a route may refer to, and what it says when it says nothing.
pub(super) struct Known<'a> {
    pub upstreams: &'a [String],
    pub providers: &'a [String],
    pub provider_settings: &'a [ProviderSettings],
    pub default_mode: RawMode,
    /// `[headers] forward_claims`' header names, canonical: never a token source.
    pub claim_headers: &'a [String],
    /// `server.public_url` as an `htu` base (a bad one was reported with `[server]`).
    pub public_url: Option<&'a str>,
}

pub(super) fn build_route(
    cx: &mut Ctx<'_>,
    i: usize,
    r: &RawRoute,
    span: Option<usize>,
    known: &Known<'_>,
) -> Option<Route> {
    let Known {
        upstreams,
        providers,
        provider_settings,
        default_mode,
        claim_headers,
        public_url,
    } = *known;
    let before = cx.errors.len();
    let key = |k: &str| format!("routes[{i}].{k}");
    if !is_label(&r.name) {
        cx.err(
            span,
            key("name"),
            "must be 1-64 characters of [A-Za-z0-9_.-] (it is a metric label)",
        );
    }
    let host = match r.host.as_deref() {
        None => HostMatch::Any,
        Some(h) => match h.strip_prefix("*.") {
            Some(suffix) => match normalize_host(suffix) {
                Some(s) if s == suffix => HostMatch::Suffix(format!(".{s}")),
                _ => {
                    cx.err(
                        span,
                        key("host"),
                        format!("{h:?} is not a lowercase host or *.domain"),
                    );
                    HostMatch::Any
                }
            },
            None => match normalize_host(h) {
                Some(n) if n == h => HostMatch::Exact(n),
                _ => {
                    cx.err(
                        span,
                        key("host"),
                        format!("{h:?} is not a lowercase host name without port, or *.domain"),
                    );
                    HostMatch::Any
                }
            },
        },
    };
    let path = match (&r.path, &r.path_prefix) {
        (Some(p), None) => check_path(cx, span, key("path"), p).map(PathMatch::Exact),
        (None, Some(p)) => check_path(cx, span, key("path_prefix"), p).map(|p| {
            let trimmed = p.strip_suffix('/').filter(|t| !t.is_empty()).unwrap_or(&p);
            PathMatch::Prefix(trimmed.to_owned())
        }),
        _ => {
            cx.err(
                span,
                key("path_prefix"),
                "set exactly one of path and path_prefix",
            );
            None
        }
    };
    let methods = r.methods.as_ref().map(|ms| {
        let mut out = Vec::new();
        for m in ms {
            match Method::from_bytes(m.as_bytes()) {
                Ok(method) if !m.bytes().any(|b| b.is_ascii_lowercase()) => out.push(method),
                _ => cx.err(
                    span,
                    key("methods"),
                    format!("{m:?} is not an uppercase HTTP method"),
                ),
            }
        }
        if out.is_empty() {
            cx.err(
                span,
                key("methods"),
                "must not be empty (leave it out to match every method)",
            );
        }
        out
    });
    let auth = match r.auth {
        RawAuthMode::Required => AuthMode::Required,
        RawAuthMode::Optional => AuthMode::Optional,
        RawAuthMode::None => AuthMode::None,
    };
    // An `auth = "none"` route refuses nothing to report: `[defaults] mode = "report"` leaves
    // it alone, and saying it on the route itself is a mistake worth a message.
    let mode = match (r.mode, auth) {
        (Some(RawMode::Report), AuthMode::None) => {
            cx.err(
                span,
                key("mode"),
                "auth = \"none\" refuses nothing for report mode to report",
            );
            Mode::Enforce
        }
        (_, AuthMode::None) => Mode::Enforce,
        (Some(RawMode::Report), _) => Mode::Report,
        (Some(RawMode::Enforce), _) => Mode::Enforce,
        (None, _) => match default_mode {
            RawMode::Report => Mode::Report,
            RawMode::Enforce => Mode::Enforce,
        },
    };
    if mode == Mode::Report {
        cx.warnings.push(format!(
            "routes[{i}] ({}) is report-only: its token and authorization refusals are logged and counted (decision=would_reject, authgate_report_only_rejections_total), not enforced",
            r.name
        ));
    }
    if auth == AuthMode::None
        && (r.providers.is_some() || !r.require_scopes.is_empty() || !r.require_claims.is_empty())
    {
        cx.err(span, key("auth"), "auth = \"none\" never looks at tokens: providers, require_scopes and require_claims would be ignored");
    }
    let route_providers: Vec<usize> = match &r.providers {
        None => (0..providers.len()).collect(),
        Some(list) => list
            .iter()
            .filter_map(|p| {
                let found = providers.iter().position(|n| n == p);
                if found.is_none() {
                    cx.err(span, key("providers"), format!("unknown provider {p:?}"));
                }
                found
            })
            .collect(),
    };
    if auth != AuthMode::None && route_providers.is_empty() && r.providers.is_none() {
        cx.err(
            span,
            key("auth"),
            "needs tokens but no [providers] are configured",
        );
    }
    let issuers: HashSet<&str> = route_providers
        .iter()
        .filter_map(|&p| provider_settings.get(p).map(|s| s.issuer.as_str()))
        .collect();
    let all_built = provider_settings.len() == providers.len();
    if all_built && issuers.len() < route_providers.len() && auth != AuthMode::None {
        cx.err(span, key("providers"), "two providers of this route share an issuer: the token's iss could not choose between them");
    }
    for s in &r.require_scopes {
        if s.is_empty()
            || s.contains(' ')
            || s.contains('"')
            || s.contains('\\')
            || s.chars().any(char::is_control)
        {
            cx.err(
                span,
                key("require_scopes"),
                format!("{s:?} is not a single scope token"),
            );
        }
    }
    let mut require_claims = Vec::new();
    for (claim, values) in &r.require_claims {
        match ClaimPath::parse(claim) {
            Ok(c) => {
                let accepted = values.to_vec();
                if accepted.is_empty() {
                    cx.err(
                        span,
                        key(&format!("require_claims.{claim}")),
                        "must list at least one accepted value",
                    );
                }
                require_claims.push(ClaimRequirement { claim: c, accepted });
            }
            Err(e) => cx.err(span, key(&format!("require_claims.{claim}")), e),
        }
    }
    let upstream = upstreams.iter().position(|u| *u == r.upstream);
    if upstream.is_none() {
        cx.err(
            span,
            key("upstream"),
            format!("unknown upstream {:?}", r.upstream),
        );
    }
    let token_sources = build_token_sources(cx, span, &key, r, auth, claim_headers);
    let csrf = build_csrf(cx, span, &key, r, &token_sources, i, claim_headers);
    // An opaque token goes to the route's one introspecting provider: with two, it could
    // not choose (and trying both would hand the token to an issuer it is not for).
    let introspecting: Vec<usize> = route_providers
        .iter()
        .copied()
        .filter(|&p| {
            provider_settings
                .get(p)
                .is_some_and(|s| s.introspection.is_some())
        })
        .collect();
    if all_built && introspecting.len() > 1 && auth != AuthMode::None {
        let names: Vec<&str> = introspecting
            .iter()
            .map(|&p| providers[p].as_str())
            .collect();
        cx.err(
            span,
            key("providers"),
            format!("providers {names:?} both introspect: an opaque token could not choose between them (list one in providers)"),
        );
    }
    let challenge = format!(
        "Bearer realm=\"authgate\", error=\"insufficient_scope\", error_description=\"token lacks a required scope or claim\", scope=\"{}\"",
        r.require_scopes.join(" ")
    );
    let challenge = HeaderValue::from_str(&challenge).ok();
    let htu_base = match &r.public_url {
        Some(u) => match public_url_base(u) {
            Ok(base) => Some(base),
            Err(e) => {
                cx.err(span, key("public_url"), e);
                None
            }
        },
        None => public_url.map(str::to_owned),
    };
    // What `WWW-Authenticate: DPoP algs="..."` offers: every algorithm a provider of the
    // route that takes DPoP accepts in a proof.
    let dpop_algs: Vec<&Algorithm> = DPOP_ALGORITHMS
        .iter()
        .filter(|alg| {
            route_providers.iter().any(|&p| {
                provider_settings.get(p).is_some_and(|s| {
                    s.dpop.mode != DpopMode::Off && s.dpop.algorithms.contains(alg)
                })
            })
        })
        .collect();
    // One `server.public_url` for routes of another host: a proof for the public URL's
    // host would be what these routes accept (or, more likely, every proof fails).
    if let (None, Some(base), false, HostMatch::Exact(h) | HostMatch::Suffix(h)) =
        (&r.public_url, &htu_base, dpop_algs.is_empty(), &host)
    {
        let public_host = crate::formats::normalize::split_http_url(base).map(|(_, a, _)| a.host);
        let same = public_host.as_deref().is_some_and(|p| match &host {
            HostMatch::Suffix(sfx) => p.ends_with(sfx.as_str()),
            _ => p == h,
        });
        if !same {
            cx.warnings.push(format!(
                "routes[{i}] ({}) is for host {h:?} but DPoP proofs are checked against server.public_url ({base}): set routes[{i}].public_url",
                r.name
            ));
        }
    }
    let dpop_only = !route_providers.is_empty()
        && route_providers.iter().all(|&p| {
            provider_settings
                .get(p)
                .is_some_and(|s| s.dpop.mode == DpopMode::Required)
        });
    if cx.errors.len() > before {
        return None;
    }
    Some(Route {
        name: r.name.clone(),
        host,
        path: path?,
        methods,
        auth,
        mode,
        providers: route_providers.into_iter().map(ProviderId::new).collect(),
        require_scopes: r.require_scopes.clone(),
        require_claims,
        upstream: UpstreamId::new(upstream?),
        token_sources,
        csrf,
        introspection: introspecting.first().copied().map(ProviderId::new),
        insufficient_scope_challenge: challenge?,
        htu_base,
        dpop_algs: (!dpop_algs.is_empty()).then(|| algorithm_names(dpop_algs)),
        dpop_only,
    })
}

fn check_path(cx: &mut Ctx<'_>, span: Option<usize>, key: String, p: &str) -> Option<String> {
    if !p.starts_with('/') || p.contains('?') || p.contains('#') {
        cx.err(
            span,
            key,
            format!("{p:?} must be an absolute path without query"),
        );
        return None;
    }
    match normalize_path(p) {
        Ok(n) if n == p || n.strip_suffix('/') == Some(p) => Some(p.to_owned()),
        Ok(n) => {
            cx.err(
                span,
                key,
                format!(
                    "{p:?} is not normalized; requests are matched on the normalized form {n:?}"
                ),
            );
            None
        }
        Err(e) => {
            cx.err(
                span,
                key,
                format!("{p:?} is not a path a request could have ({e:?})"),
            );
            None
        }
    }
}

/// `token_sources`: `authorization`, `cookie:NAME`, `header:NAME`, each at most once.
fn build_token_sources(
    cx: &mut Ctx<'_>,
    span: Option<usize>,
    key: &dyn Fn(&str) -> String,
    r: &RawRoute,
    auth: AuthMode,
    claim_headers: &[String],
) -> Vec<TokenSource> {
    let Some(list) = &r.token_sources else {
        return vec![TokenSource::Authorization];
    };
    if auth == AuthMode::None {
        cx.err(
            span,
            key("token_sources"),
            "auth = \"none\" never reads a token",
        );
        return Vec::new();
    }
    if list.is_empty() {
        cx.err(
            span,
            key("token_sources"),
            "must list at least one source (leave it out for [\"authorization\"])",
        );
    }
    let mut out = Vec::new();
    for item in list {
        let source = if item == "authorization" {
            Some(TokenSource::Authorization)
        } else if let Some(name) = item.strip_prefix("cookie:") {
            // RFC 6265 §4.1.1: a cookie name is an RFC 9110 token.
            if !name.is_empty() && name.bytes().all(is_tchar) {
                Some(TokenSource::Cookie(name.to_owned()))
            } else {
                cx.err(
                    span,
                    key("token_sources"),
                    format!("{item:?}: {name:?} is not a cookie name"),
                );
                None
            }
        } else if let Some(name) = item.strip_prefix("header:") {
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(h) if h == AUTHORIZATION || h == COOKIE => {
                    cx.err(
                        span,
                        key("token_sources"),
                        format!("{item:?}: write \"authorization\" or \"cookie:NAME\""),
                    );
                    None
                }
                Ok(h) if not_a_token_header(&h, claim_headers) => {
                    cx.err(
                        span,
                        key("token_sources"),
                        format!("{item:?}: {h} carries something else (framing, hop-by-hop, forwarding, or a claim header the gateway sets)"),
                    );
                    None
                }
                Ok(h) => Some(TokenSource::Header(h)),
                Err(_) => {
                    cx.err(
                        span,
                        key("token_sources"),
                        format!("{item:?}: {name:?} is not a header name"),
                    );
                    None
                }
            }
        } else {
            cx.err(
                span,
                key("token_sources"),
                format!("{item:?} is not \"authorization\", \"cookie:NAME\" or \"header:NAME\""),
            );
            None
        };
        if let Some(source) = source {
            if out.contains(&source) {
                cx.err(
                    span,
                    key("token_sources"),
                    format!("{item:?} is listed twice"),
                );
            } else {
                out.push(source);
            }
        }
    }
    out
}

/// `csrf`: only meaningful with a cookie source; `off` is allowed with a warning.
fn build_csrf(
    cx: &mut Ctx<'_>,
    span: Option<usize>,
    key: &dyn Fn(&str) -> String,
    r: &RawRoute,
    sources: &[TokenSource],
    i: usize,
    claim_headers: &[String],
) -> Csrf {
    let cookies = sources.iter().any(|s| matches!(s, TokenSource::Cookie(_)));
    let Some(raw) = r.csrf.as_deref() else {
        return Csrf::SameOrigin;
    };
    if !cookies {
        cx.err(
            span,
            key("csrf"),
            "only applies to a route with a cookie:NAME token source",
        );
        return Csrf::SameOrigin;
    }
    match raw {
        "same-origin" => Csrf::SameOrigin,
        "off" => {
            cx.warnings.push(format!(
                "routes[{i}] ({}) reads a token from a cookie with csrf = \"off\": any site the user visits can send requests carrying it",
                r.name
            ));
            Csrf::Off
        }
        other => match other
            .strip_prefix("header:")
            .and_then(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        {
            Some(h) if browser_may_send(&h, claim_headers) => {
                cx.err(
                    span,
                    key("csrf"),
                    format!("{raw:?}: a browser sends {h} cross-site without a preflight (or sets it itself): its presence proves nothing; name a custom header such as X-Requested-With"),
                );
                Csrf::SameOrigin
            }
            Some(h) => Csrf::Header(h),
            _ => {
                cx.err(
                    span,
                    key("csrf"),
                    format!("{raw:?} is not \"same-origin\", \"header:NAME\" or \"off\""),
                );
                Csrf::SameOrigin
            }
        },
    }
}

/// Headers that carry something other than a token: framing, hop-by-hop, what the gateway
/// sets itself (forwarding, the request id, claim headers). A token source there would be
/// read and then stripped, or would strip what the upstream needs (`Host`).
fn not_a_token_header(h: &HeaderName, claim_headers: &[String]) -> bool {
    let c = canonical_header(h.as_str());
    is_managed(&c)
        || ["content-type", "origin", "referer", "via", "early-data"].contains(&c.as_str())
        || ["proxy-", "sec-"].iter().any(|p| c.starts_with(p))
        || claim_headers.contains(&c)
}

/// Headers a browser sends on a cross-site request without a CORS preflight, or sets
/// itself (the Fetch standard's CORS-safelisted and forbidden request headers, cache and
/// conditional headers, client hints, navigation headers), and headers added on the way or
/// by the gateway: their presence is no proof that the page is the site's own. (A browser
/// sends any other header cross-site only after a preflight the API answers.)
fn browser_may_send(h: &HeaderName, claim_headers: &[String]) -> bool {
    const NAMES: &[&str] = &[
        "accept",
        "accept-language",
        "content-language",
        "content-type",
        "range",
        "accept-charset",
        "accept-encoding",
        "access-control-request-headers",
        "access-control-request-method",
        "authorization",
        "connection",
        "content-length",
        "cookie",
        "cookie2",
        "date",
        "dnt",
        "expect",
        "host",
        "keep-alive",
        "origin",
        "referer",
        "set-cookie",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "cache-control",
        "pragma",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
        "upgrade-insecure-requests",
        "priority",
        "save-data",
        "purpose",
        "last-event-id",
        "service-worker-navigation-preload",
        "attribution-reporting-eligible",
        "device-memory",
        "dpr",
        "ect",
        "rtt",
        "downlink",
        "viewport-width",
        "width",
    ];
    let c = canonical_header(h.as_str());
    NAMES.contains(&c.as_str())
        || ["proxy-", "sec-"].iter().any(|p| c.starts_with(p))
        || is_managed(&c)
        || ["via", "early-data"].contains(&c.as_str())
        || claim_headers.contains(&c)
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
