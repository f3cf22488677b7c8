//! Routes: the validated route list, indexed for lookup (which route a request matches).
//! What a matched route requires of verified claims is checked in `auth::policy`.
//!
//! Matching follows nginx locations: exact host over wildcard over none; within a host,
//! exact `path` over the longest `path_prefix` (whole segments only); at one path, a route
//! that lists `methods` over one that does not. The first host group with a matching route
//! wins. Lookup is a handful of hash probes (one per path segment), so 1,000 routes cost
//! about what 10 do.

use std::collections::HashMap;

use http::{HeaderValue, Method};

use super::{Config, ProviderId, RouteId, UpstreamId};
use crate::formats::claim_path::ClaimPath;

/// How a route treats bearer tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A valid token is needed.
    Required,
    /// No token: anonymous. A token: it must be valid, and its claims are forwarded.
    Optional,
    /// Tokens are never looked at (spoofable headers are still stripped).
    None,
}

impl AuthMode {
    /// As written in the config: `required`, `optional`, `none`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::Optional => "optional",
            Self::None => "none",
        }
    }
}

/// Whether a route's authentication and authorization refusals are enforced, or only
/// reported (the request goes through; see `auth::Reject::is_reportable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Report,
}

impl Mode {
    /// The `mode` label of `authgate_route_info` and the word in `authgate check`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Report => "report",
        }
    }
}

/// Where a route reads the token from (`token_sources`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer ...` (RFC 6750 §2.1).
    Authorization,
    /// The value of this cookie (RFC 6265 name, case-sensitive).
    Cookie(String),
    /// The whole value of this header: a bare token (`Bearer x` is malformed there).
    Header(http::HeaderName),
}

impl TokenSource {
    /// As written in the config, and the `token_source` of the access log.
    pub fn describe(&self) -> String {
        match self {
            Self::Authorization => "authorization".to_owned(),
            Self::Cookie(n) => format!("cookie:{n}"),
            Self::Header(h) => format!("header:{h}"),
        }
    }
}

impl Csrf {
    /// As written in the config.
    pub fn describe(&self) -> String {
        match self {
            Self::SameOrigin => "same-origin".to_owned(),
            Self::Header(h) => format!("header:{h}"),
            Self::Off => "off".to_owned(),
        }
    }
}

/// The CSRF defence a cookie-borne token needs on an unsafe method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Csrf {
    /// `Sec-Fetch-Site: same-origin`, or an `Origin` naming the request's own authority.
    SameOrigin,
    /// This header, non-empty (a browser sends a custom header cross-site only after a CORS
    /// preflight the API answers).
    Header(http::HeaderName),
    /// No check (a warning at load).
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com` is stored as `.example.com`: any depth of subdomain, not the apex.
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    Exact(String),
    /// Stored without a trailing slash (`/` itself excepted).
    Prefix(String),
}

#[derive(Debug, Clone)]
pub struct ClaimRequirement {
    pub claim: ClaimPath,
    pub accepted: Vec<String>,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub host: HostMatch,
    pub path: PathMatch,
    pub methods: Option<Vec<Method>>,
    pub auth: AuthMode,
    pub mode: Mode,
    pub providers: Vec<ProviderId>,
    pub require_scopes: Vec<String>,
    pub require_claims: Vec<ClaimRequirement>,
    pub upstream: UpstreamId,
    /// Where the token is read from, in order (at least one).
    pub token_sources: Vec<TokenSource>,
    pub csrf: Csrf,
    /// The one provider of this route that introspects: where an opaque token goes.
    pub introspection: Option<ProviderId>,
    /// Prebuilt `WWW-Authenticate` for a 403 on this route (carries `scope="..."`).
    pub insufficient_scope_challenge: HeaderValue,
    /// `public_url` (the route's, else the server's) as the start of a DPoP `htu`.
    pub htu_base: Option<String>,
    /// Proof algorithms of the route's providers that take DPoP, space-separated (`algs`
    /// of a `DPoP` challenge); `None` when none does.
    pub dpop_algs: Option<String>,
    /// Every provider of the route requires DPoP: its 401s answer with the `DPoP` scheme
    /// alone (a `Bearer` challenge would invite a token that cannot pass).
    pub dpop_only: bool,
}

/// All routes, indexed for lookup.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    exact_hosts: HashMap<String, PathIndex>,
    /// Keyed by suffix with its leading dot.
    wildcard_hosts: HashMap<String, PathIndex>,
    any_host: PathIndex,
}

#[derive(Debug, Default)]
struct PathIndex {
    exact: HashMap<String, Bucket>,
    prefix: HashMap<String, Bucket>,
}

/// Routes sharing one host and one path matcher.
#[derive(Debug, Default)]
struct Bucket {
    with_methods: Vec<usize>,
    without_methods: Option<usize>,
}

/// Two routes that could match the same request with the same specificity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ambiguity {
    pub route: usize,
    pub other: usize,
}

// === impl RouteTable ===

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Result<Self, Vec<Ambiguity>> {
        let mut table = RouteTable::default();
        let mut problems = Vec::new();
        for (idx, route) in routes.iter().enumerate() {
            let index = match &route.host {
                HostMatch::Any => &mut table.any_host,
                HostMatch::Exact(h) => table.exact_hosts.entry(h.clone()).or_default(),
                HostMatch::Suffix(s) => table.wildcard_hosts.entry(s.clone()).or_default(),
            };
            let bucket = match &route.path {
                PathMatch::Exact(p) => index.exact.entry(exact_key(p).to_owned()).or_default(),
                PathMatch::Prefix(p) => index.prefix.entry(p.clone()).or_default(),
            };
            match &route.methods {
                None => match bucket.without_methods {
                    Some(other) => problems.push(Ambiguity { route: idx, other }),
                    None => bucket.without_methods = Some(idx),
                },
                Some(methods) => {
                    for &other in &bucket.with_methods {
                        let theirs = routes[other].methods.as_deref().unwrap_or_default();
                        if methods.iter().any(|m| theirs.contains(m)) {
                            problems.push(Ambiguity { route: idx, other });
                        }
                    }
                    bucket.with_methods.push(idx);
                }
            }
        }
        table.routes = routes;
        if problems.is_empty() {
            Ok(table)
        } else {
            Err(problems)
        }
    }

    pub fn get(&self, id: RouteId) -> &Route {
        &self.routes[id.index()]
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// The most specific route for a normalized path, or `None` (default deny).
    /// `host` is lowercase without port.
    pub fn match_route(&self, host: Option<&str>, path: &str, method: &Method) -> Option<RouteId> {
        self.lookup(host, path, method).map(RouteId::new)
    }

    fn lookup(&self, host: Option<&str>, path: &str, method: &Method) -> Option<usize> {
        if let Some(host) = host {
            if let Some(found) = self
                .exact_hosts
                .get(host)
                .and_then(|ix| ix.lookup(path, method, &self.routes))
            {
                return Some(found);
            }
            if !self.wildcard_hosts.is_empty() {
                // Longest suffix first: `.a.example.com` before `.example.com`.
                for (dot, _) in host.match_indices('.') {
                    let suffix = &host[dot..];
                    if let Some(found) = self
                        .wildcard_hosts
                        .get(suffix)
                        .and_then(|ix| ix.lookup(path, method, &self.routes))
                    {
                        return Some(found);
                    }
                }
            }
        }
        self.any_host.lookup(path, method, &self.routes)
    }

    /// Every route that matches `host`, `path` and `method`, most specific first: the first
    /// is the one `match_route` picks. A linear scan, for `authgate explain` (requests use the
    /// index).
    pub fn matching(&self, host: Option<&str>, path: &str, method: &Method) -> Vec<RouteId> {
        let host_ok = |m: &HostMatch| match (m, host) {
            (HostMatch::Any, _) => true,
            (HostMatch::Exact(h), Some(host)) => h == host,
            (HostMatch::Suffix(s), Some(host)) => host.ends_with(s.as_str()),
            (_, None) => false,
        };
        let path_ok = |m: &PathMatch| match m {
            PathMatch::Exact(p) => exact_key(p) == exact_key(path),
            PathMatch::Prefix(p) => {
                p == "/"
                    || path == p
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            }
        };
        let mut found: Vec<usize> = (0..self.routes.len())
            .filter(|&i| {
                let r = &self.routes[i];
                host_ok(&r.host)
                    && path_ok(&r.path)
                    && r.methods.as_ref().is_none_or(|m| m.contains(method))
            })
            .collect();
        found.sort_by_key(|&i| std::cmp::Reverse(self.routes[i].specificity()));
        found.into_iter().map(RouteId::new).collect()
    }

    /// One line per route, most specific first.
    pub fn describe(&self, config: &Config) -> String {
        let mut order: Vec<usize> = (0..self.routes.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.routes[i].specificity()));
        let mut out = String::new();
        for i in order {
            let r = &self.routes[i];
            let host = match &r.host {
                HostMatch::Any => "*".to_owned(),
                HostMatch::Exact(h) => h.clone(),
                HostMatch::Suffix(s) => format!("*{s}"),
            };
            let path = match &r.path {
                PathMatch::Exact(p) => format!("= {p}"),
                PathMatch::Prefix(p) => format!("{p}/**"),
            };
            let methods = r.methods.as_ref().map_or_else(
                || "ANY".to_owned(),
                |m| m.iter().map(Method::as_str).collect::<Vec<_>>().join(","),
            );
            let auth = r.auth.label();
            let providers: Vec<&str> = match r.auth {
                AuthMode::None => Vec::new(),
                AuthMode::Required | AuthMode::Optional => r
                    .providers
                    .iter()
                    .map(|p| config.providers[p.index()].name.as_str())
                    .collect(),
            };
            let claims: Vec<String> = r
                .require_claims
                .iter()
                .map(|c| format!("{}={}", c.claim.as_str(), c.accepted.join("|")))
                .collect();
            // Token sources and CSRF only where they differ from the default.
            let sources = if r.token_sources == [TokenSource::Authorization] {
                String::new()
            } else {
                let list: Vec<String> = r.token_sources.iter().map(TokenSource::describe).collect();
                let cookies = list.iter().any(|s| s.starts_with("cookie:"));
                let csrf = match &r.csrf {
                    _ if !cookies => String::new(),
                    Csrf::Off => " csrf=OFF".to_owned(),
                    other => format!(" csrf={}", other.describe()),
                };
                format!(" tokens=[{}]{csrf}", list.join(","))
            };
            // DPoP only where it differs from the default (allowed), and the URL proofs name.
            let mut dpop = match (r.auth, r.dpop_only, &r.dpop_algs) {
                (AuthMode::None, _, _) => String::new(),
                (_, true, _) => " dpop=required".to_owned(),
                (_, false, None) => " dpop=off".to_owned(),
                _ => String::new(),
            };
            if let (Some(base), false) = (&r.htu_base, r.auth == AuthMode::None) {
                dpop.push_str(&format!(" public_url={base}"));
            }
            out.push_str(&format!(
                "  {:<16} host={host} path={path} methods={methods} auth={auth}{}{sources}{dpop} providers=[{}] scopes=[{}] claims=[{}] -> {}\n",
                r.name,
                match r.mode {
                    Mode::Enforce => "",
                    Mode::Report => " mode=REPORT-ONLY",
                },
                providers.join(","),
                r.require_scopes.join(" "),
                claims.join(" "),
                config.upstreams[r.upstream.index()].name,
            ));
        }
        out
    }
}

// === impl PathIndex ===

impl PathIndex {
    fn lookup(&self, path: &str, method: &Method, routes: &[Route]) -> Option<usize> {
        if let Some(found) = self
            .exact
            .get(exact_key(path))
            .and_then(|b| b.pick(method, routes))
        {
            return Some(found);
        }
        if self.prefix.is_empty() {
            return None;
        }
        // Whole segments: "/api/x/" tries "/api/x", "/api", "/"; "/apix" never hits "/api".
        let mut candidate = path
            .strip_suffix('/')
            .filter(|p| !p.is_empty())
            .unwrap_or(path);
        loop {
            if let Some(found) = self
                .prefix
                .get(candidate)
                .and_then(|b| b.pick(method, routes))
            {
                return Some(found);
            }
            match candidate.rfind('/') {
                Some(0) if candidate != "/" => candidate = "/",
                Some(i) if i > 0 => candidate = &candidate[..i],
                _ => return None,
            }
        }
    }
}

/// Exact paths match with or without one trailing slash: `path = "/admin"` must not be
/// escaped by `/admin/` falling through to a weaker prefix route (Spring and Express serve
/// both spellings as one).
fn exact_key(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    }
}

impl Bucket {
    fn pick(&self, method: &Method, routes: &[Route]) -> Option<usize> {
        self.with_methods
            .iter()
            .copied()
            .find(|&i| {
                routes[i]
                    .methods
                    .as_deref()
                    .is_some_and(|m| m.contains(method))
            })
            .or(self.without_methods)
    }
}

// === impl Route ===

impl Route {
    /// Orders routes for display: host kind, then path kind and length, then methods.
    fn specificity(&self) -> (u8, usize, u8, usize, u8) {
        let (host_rank, host_len) = match &self.host {
            HostMatch::Exact(h) => (2, h.len()),
            HostMatch::Suffix(s) => (1, s.len()),
            HostMatch::Any => (0, 0),
        };
        let (path_rank, path_len) = match &self.path {
            PathMatch::Exact(p) => (1, p.len()),
            PathMatch::Prefix(p) => (0, p.len()),
        };
        (
            host_rank,
            host_len,
            path_rank,
            path_len,
            u8::from(self.methods.is_some()),
        )
    }
}

#[cfg(test)]
mod tests;
