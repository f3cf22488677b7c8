//! `RawConfig` → `Config`: every cross-check, every matcher precompiled, every problem
//! collected (not just the first), each naming file, line, key and reason.

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use jsonwebtoken::Algorithm;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::load::line_col;
use super::schema::{RawAuthMode, RawConfig, RawHeaders, RawProvider, RawRoute, RawUpstream};
use super::{
    AdminSettings, ClaimHeader, Config, ConfigError, HeaderPolicy, KeySource, LogFormat,
    ProviderSettings, ServerSettings, ServerTls, Upstream, UpstreamTls,
};
use crate::auth::cache::CacheSettings;
use crate::auth::claims::ClaimPath;
use crate::auth::jwks::KeySet;
use crate::auth::normalize::{normalize_host, normalize_path};
use crate::auth::policy::{AuthMode, ClaimRequirement, HostMatch, PathMatch, Route, RouteTable};
use crate::auth::revocation::RevocationSet;

/// Headers a claim may never be forwarded in: they carry framing, routing or credentials.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "proxy-authorization",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
];

/// Smallest HMAC secret: RFC 7518 §3.2 wants a key at least as long as the hash output.
const MIN_HMAC_SECRET_BYTES: usize = 32;

struct Ctx<'a> {
    text: &'a str,
    origin: &'a Path,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl Ctx<'_> {
    /// Records a problem at byte offset `at` (`None`: no place in the file, e.g. a default).
    fn err(&mut self, at: Option<usize>, key: impl Into<String>, message: impl Into<String>) {
        let (line, column) = match at {
            Some(offset) => line_col(self.text, offset),
            None => (0, 0),
        };
        self.errors.push(ConfigError {
            file: self.origin.to_path_buf(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        });
    }

    fn relative(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.origin.parent().unwrap_or(Path::new(".")).join(path)
        }
    }
}

/// Builds a runnable config, or returns every problem found.
pub fn build(
    raw: RawConfig,
    text: &str,
    origin: &Path,
    content_hash: String,
) -> Result<Config, Vec<ConfigError>> {
    let mut cx = Ctx {
        text,
        origin,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let server = build_server(&mut cx, &raw);
    let admin = AdminSettings {
        listen: raw.admin.listen.get_ref().clone(),
    };
    check_listen(&mut cx, &raw.admin.listen, "admin.listen");
    if admin.listen == server.listen && !admin.listen.ends_with(":0") {
        cx.err(at(&raw.admin.listen), "admin.listen", "must differ from server.listen: the admin endpoints are never reachable through the proxy port");
    }

    let mut upstream_names = Vec::new();
    let mut upstreams = Vec::new();
    // Routes resolve names against everything configured, so one bad upstream or provider
    // is reported once, not again as "unknown" on every route that uses it. (Indexes are
    // only used when every table built, and then the two lists agree.)
    for (name, up) in &raw.upstreams {
        upstream_names.push(name.clone());
        if let Some(u) = build_upstream(&mut cx, name, up) {
            upstreams.push(u);
        }
    }
    let mut provider_names = Vec::new();
    let mut providers = Vec::new();
    for (name, p) in &raw.providers {
        provider_names.push(name.clone());
        if let Some(p) = build_provider(&mut cx, name, p) {
            providers.push(p);
        }
    }
    let headers = build_headers(&mut cx, &raw.headers);
    let tc = &raw.token_cache;
    if !(1..=10_000_000).contains(&tc.max_entries) {
        cx.err(
            None,
            "token_cache.max_entries",
            "must be between 1 and 10000000",
        );
    }
    if !(1 << 16..=1 << 34).contains(&tc.max_bytes) {
        cx.err(
            None,
            "token_cache.max_bytes",
            "must be between 65536 (64 KiB) and 17179869184 (16 GiB)",
        );
    }
    if tc.ttl < Duration::from_secs(1) || tc.ttl > Duration::from_secs(86400) {
        cx.err(None, "token_cache.ttl", "must be between 1s and 24h");
    }
    let token_cache = CacheSettings {
        enabled: tc.enabled,
        max_entries: tc.max_entries,
        max_bytes: tc.max_bytes,
        ttl: tc.ttl,
    };
    let routes = build_routes(&mut cx, &raw, &upstream_names, &provider_names, &providers);

    if cx.errors.is_empty() {
        if let Some(routes) = routes {
            let fingerprint = fingerprint(&content_hash, &providers, &upstreams);
            return Ok(Config {
                origin: origin.to_path_buf(),
                content_hash,
                fingerprint,
                warnings: cx.warnings,
                server,
                admin,
                upstreams,
                providers,
                headers,
                routes,
                token_cache,
            });
        }
    }
    Err(cx.errors)
}

fn build_server(cx: &mut Ctx<'_>, raw: &RawConfig) -> ServerSettings {
    let s = &raw.server;
    check_listen(cx, &s.listen, "server.listen");
    if s.threads == 0 || s.threads > 256 {
        cx.err(None, "server.threads", "must be between 1 and 256");
    }
    if !(256..=65536).contains(&s.max_token_bytes) {
        cx.err(
            None,
            "server.max_token_bytes",
            "must be between 256 and 65536",
        );
    }
    if !(1024..=1_048_575).contains(&s.max_header_bytes) {
        cx.err(
            None,
            "server.max_header_bytes",
            "must be between 1024 and 1048575",
        );
    }
    for (key, d) in [
        ("server.header_read_timeout", s.header_read_timeout),
        ("server.keepalive_timeout", s.keepalive_timeout),
        ("server.body_read_timeout", s.body_read_timeout),
    ] {
        // pingora counts keep-alive in whole seconds.
        if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
            cx.err(None, key, "must be between 1s and 1h");
        }
    }
    // Added saturating: two durations near `u64::MAX` seconds would overflow the sum.
    if s.shutdown_delay.saturating_add(s.shutdown_grace) > Duration::from_secs(600) {
        cx.err(
            None,
            "server.shutdown_grace",
            "shutdown_delay + shutdown_grace must be at most 10m",
        );
    }
    if s.read_buffer_bytes > 1 << 20 {
        cx.err(
            None,
            "server.read_buffer_bytes",
            "must be at most 1048576 (0: unbuffered)",
        );
    }
    if !(1..=65536).contains(&s.upstream_pool_size) {
        cx.err(
            None,
            "server.upstream_pool_size",
            "must be between 1 and 65536",
        );
    }
    let log_format = s
        .log_format
        .as_ref()
        .and_then(|f| match f.get_ref().as_str() {
            "json" => Some(LogFormat::Json),
            "text" => Some(LogFormat::Text),
            other => {
                cx.err(
                    at(f),
                    "server.log_format",
                    format!("{other:?} is not a log format: use \"json\" or \"text\""),
                );
                None
            }
        });
    let tls = s.tls.as_ref().and_then(|t| {
        let raw = t.get_ref();
        let tls = ServerTls {
            cert: cx.relative(&raw.cert),
            key: cx.relative(&raw.key),
            http2: raw.http2,
        };
        match crate::tls::load_pair(&tls.cert, &tls.key) {
            Ok(_) => Some(tls),
            Err(e) => {
                cx.err(at(t), format!("server.tls.{}", e.key), e.message);
                None
            }
        }
    });
    ServerSettings {
        listen: s.listen.get_ref().clone(),
        threads: s.threads,
        max_token_bytes: s.max_token_bytes,
        max_header_bytes: s.max_header_bytes,
        shutdown_delay: s.shutdown_delay,
        shutdown_grace: s.shutdown_grace,
        tls,
        header_read_timeout: s.header_read_timeout,
        keepalive_timeout: s.keepalive_timeout,
        body_read_timeout: s.body_read_timeout,
        read_buffer_bytes: s.read_buffer_bytes,
        work_stealing: s.work_stealing,
        upstream_pool_size: s.upstream_pool_size,
        log_format,
        log_subject: s.log_subject,
    }
}

fn check_listen(cx: &mut Ctx<'_>, listen: &Spanned<String>, key: &str) {
    if SocketAddr::from_str(listen.get_ref()).is_err() {
        cx.err(
            at(listen),
            key,
            format!("{:?} is not an IP:port address", listen.get_ref()),
        );
    }
}

fn build_upstream(cx: &mut Ctx<'_>, name: &str, up: &Spanned<RawUpstream>) -> Option<Upstream> {
    let span = at(up);
    let key = format!("upstreams.{name}.url");
    let raw = up.get_ref();
    let uri: http::Uri = match raw.url.parse() {
        Ok(u) => u,
        Err(e) => {
            cx.err(span, key, format!("not a URL: {e}"));
            return None;
        }
    };
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            cx.err(span, key, "must be an http:// or https:// URL");
            return None;
        }
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        cx.err(span, key, "must not have a path or query: the upstream receives the request's own normalized path");
        return None;
    }
    let Some(host) = uri.host() else {
        cx.err(span, key, "has no host");
        return None;
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tls_key = |k: &str| format!("upstreams.{name}.{k}");
    if !https {
        for (k, set) in [
            ("sni", raw.sni.is_some()),
            ("ca_file", raw.ca_file.is_some()),
            ("tls_verify", !raw.tls_verify),
        ] {
            if set {
                cx.err(span, tls_key(k), "applies to https:// upstreams only");
            }
        }
    }
    let tls = if https {
        let sni = raw.sni.clone().unwrap_or_else(|| host.to_owned());
        if sni.is_empty() {
            // pingora skips every certificate check when the SNI is empty.
            cx.err(span, tls_key("sni"), "must not be empty");
            return None;
        }
        let (ca, ca_hash) = match raw.ca_file.as_deref().map(|f| cx.relative(f)) {
            None => (None, None),
            Some(path) => match crate::tls::load_ca(&path) {
                Ok((certs, hash)) => (Some(certs), Some(hash)),
                Err(e) => {
                    cx.err(span, tls_key("ca_file"), e);
                    return None;
                }
            },
        };
        if !raw.tls_verify {
            cx.warnings.push(format!("upstreams.{name}.tls_verify = false: the upstream's certificate is not checked; anyone on the path can read and change its traffic"));
        }
        let mut h = Sha256::new();
        h.update(name.as_bytes());
        h.update(ca_hash.unwrap_or_default());
        let digest = h.finalize();
        let pool_key = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
        Some(UpstreamTls {
            sni,
            ca,
            ca_hash,
            verify: raw.tls_verify,
            pool_key,
        })
    } else {
        None
    };
    // Resolved once here: pingora's `HttpPeer::new` resolves with a blocking lookup and
    // panics when it fails.
    let addr = match (host, port).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        Ok(None) | Err(_) => {
            cx.err(span, key, format!("host {host:?} does not resolve"));
            return None;
        }
    };
    let timeout_key = |k: &str| format!("upstreams.{name}.{k}");
    for (k, d, min) in [
        (
            "connect_timeout",
            raw.connect_timeout,
            Duration::from_millis(1),
        ),
        ("read_timeout", raw.read_timeout, Duration::from_millis(1)),
        ("write_timeout", raw.write_timeout, Duration::from_millis(1)),
        ("idle_timeout", raw.idle_timeout, Duration::from_secs(1)),
    ] {
        check_duration(cx, span, timeout_key(k), d, min, HOUR);
    }
    Some(Upstream {
        name: name.to_owned(),
        addr,
        connect_timeout: raw.connect_timeout,
        read_timeout: raw.read_timeout,
        write_timeout: raw.write_timeout,
        idle_timeout: raw.idle_timeout,
        tls,
    })
}

fn build_provider(
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
    if sources.iter().filter(|s| **s).count() != 1 {
        cx.err(
            span,
            key("jwks_url"),
            "set exactly one of jwks_url, jwks_file, hmac_secret_file, discovery = true",
        );
        return None;
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
        match std::fs::read(&path) {
            Ok(doc) => {
                if let Err(e) = KeySet::from_jwks(&doc, &algorithms) {
                    cx.err(span, key("jwks_file"), format!("{}: {e}", path.display()));
                }
            }
            Err(e) => cx.err(
                span,
                key("jwks_file"),
                format!("cannot read {}: {e}", path.display()),
            ),
        }
        if algorithms.iter().any(hmac) {
            cx.err(span, key("algorithms"), "HS* algorithms need hmac_secret_file; they are never mixed with keys from a JWKS (key confusion)");
        }
        KeySource::JwksFile(path)
    } else {
        let file = raw.hmac_secret_file.as_deref().unwrap_or_default();
        let path = cx.relative(file);
        if !algorithms.iter().all(hmac) {
            cx.err(span, key("algorithms"), "a provider with hmac_secret_file may only allow HS256/HS384/HS512: one provider never mixes HMAC with asymmetric keys");
        }
        match std::fs::read(&path) {
            Ok(mut secret) => {
                while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    secret.pop();
                }
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
            }
            Err(e) => {
                cx.err(
                    span,
                    key("hmac_secret_file"),
                    format!("cannot read {}: {e}", path.display()),
                );
                return None;
            }
        }
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
    let jwks_ca = match raw.jwks_ca_file.as_deref().map(|f| cx.relative(f)) {
        None => None,
        Some(path) => match std::fs::read(&path) {
            Ok(pem) if reqwest::Certificate::from_pem_bundle(&pem).is_ok_and(|c| !c.is_empty()) => {
                Some(pem)
            }
            Ok(_) => {
                cx.err(
                    span,
                    key("jwks_ca_file"),
                    format!("{} holds no PEM certificate", path.display()),
                );
                None
            }
            Err(e) => {
                cx.err(
                    span,
                    key("jwks_ca_file"),
                    format!("cannot read {}: {e}", path.display()),
                );
                None
            }
        },
    };
    if jwks_ca.is_some() && !matches!(key_source, KeySource::JwksUrl(_) | KeySource::Discovery(_)) {
        cx.err(
            span,
            key("jwks_ca_file"),
            "only applies to jwks_url or discovery",
        );
    }
    let revocation_file = raw.revocation_file.as_deref().map(|f| cx.relative(f));
    if let Some(path) = &revocation_file {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                if let Err(e) = RevocationSet::parse(&text) {
                    cx.err(
                        span,
                        key("revocation_file"),
                        format!("{}: {e}", path.display()),
                    );
                }
            }
            Err(e) => cx.err(
                span,
                key("revocation_file"),
                format!("cannot read {}: {e}", path.display()),
            ),
        }
    }
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
    if cx.errors.len() > before {
        return None;
    }
    Some(ProviderSettings {
        name: name.to_owned(),
        issuer: raw.issuer.clone(),
        audiences: raw.audiences.clone(),
        key_source,
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
        required_typ: raw.required_typ.as_deref().map(media_type),
    })
}

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
const YEAR: Duration = Duration::from_secs(365 * 86_400);
/// `jwks_min_refresh` when unset (or `jwks_refresh`, when that is shorter).
const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(30);

/// A duration within `min..=max`. Every duration of the config is bounded: the runtime adds
/// them to clocks (`Instant + jwks_refresh`), and a value near `u64::MAX` seconds would
/// overflow there instead of here, with a message.
fn check_duration(
    cx: &mut Ctx<'_>,
    span: Option<usize>,
    key: String,
    d: Duration,
    min: Duration,
    max: Duration,
) {
    if d < min || d > max {
        cx.err(
            span,
            key,
            format!("must be between {} and {}", short(min), short(max)),
        );
    }
}

/// `30d`, `1h`, `100ms`: a bound in the largest whole unit (humantime writes 365 days as
/// `11months 30days 3h 50m 24s`).
fn short(d: Duration) -> String {
    let (s, ms) = (d.as_secs(), d.subsec_millis());
    match (s, ms) {
        (0, ms) => format!("{ms}ms"),
        (s, 0) if s % 86_400 == 0 => format!("{}d", s / 86_400),
        (s, 0) if s % 3600 == 0 => format!("{}h", s / 3600),
        (s, 0) if s % 60 == 0 => format!("{}m", s / 60),
        (s, 0) => format!("{s}s"),
        (s, ms) => format!("{}ms", s * 1000 + u64::from(ms)),
    }
}

/// RFC 7515 §4.1.9: `typ` is a media type, compared case-insensitively, `application/` optional.
pub fn media_type(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    lower
        .strip_prefix("application/")
        .map_or(lower.clone(), str::to_owned)
}

fn build_headers(cx: &mut Ctx<'_>, raw: &RawHeaders) -> HeaderPolicy {
    let mut forward_claims = Vec::new();
    let mut seen = HashSet::new();
    for (claim, header) in &raw.forward_claims {
        let key = format!("headers.forward_claims.{claim}");
        let claim_path = match ClaimPath::parse(claim) {
            Ok(c) => c,
            Err(e) => {
                cx.err(at(header), key, e);
                continue;
            }
        };
        let name = match HeaderName::from_str(header.get_ref()) {
            Ok(n) => n,
            Err(_) => {
                cx.err(
                    at(header),
                    key,
                    format!("{:?} is not a valid header name", header.get_ref()),
                );
                continue;
            }
        };
        let canonical = canonical_header(name.as_str());
        if RESERVED_HEADERS.contains(&canonical.as_str()) {
            cx.err(
                at(header),
                key,
                format!("{name} carries framing, routing or credentials and cannot hold a claim"),
            );
            continue;
        }
        if !seen.insert(canonical) {
            cx.err(
                at(header),
                key,
                format!("header {name} is already used by another claim"),
            );
            continue;
        }
        forward_claims.push(ClaimHeader {
            claim: claim_path,
            header: name,
        });
    }
    let mut strip_exact: Vec<String> = forward_claims
        .iter()
        .map(|c| canonical_header(c.header.as_str()))
        .collect();
    let mut strip_prefixes = Vec::new();
    for s in &raw.strip {
        let (name, wildcard) = match s.get_ref().strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (s.get_ref().as_str(), false),
        };
        if name.is_empty() || HeaderName::from_str(name).is_err() {
            cx.err(
                at(s),
                "headers.strip",
                format!(
                    "{:?} is not a header name (a trailing * matches a prefix)",
                    s.get_ref()
                ),
            );
            continue;
        }
        let canonical = canonical_header(name);
        if matches!(
            canonical.as_str(),
            "host" | "content-length" | "transfer-encoding"
        ) {
            cx.err(
                at(s),
                "headers.strip",
                format!("{name} is needed to route and frame the request"),
            );
            continue;
        }
        if wildcard {
            strip_prefixes.push(canonical);
        } else {
            strip_exact.push(canonical);
        }
    }
    HeaderPolicy {
        forward_claims,
        strip_exact,
        strip_prefixes,
        forward_token: raw.forward_token,
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

fn build_routes(
    cx: &mut Ctx<'_>,
    raw: &RawConfig,
    upstreams: &[String],
    providers: &[String],
    provider_settings: &[ProviderSettings],
) -> Option<RouteTable> {
    let mut routes = Vec::new();
    let mut spans = Vec::new();
    let mut names = BTreeMap::new();
    if raw.routes.is_empty() {
        cx.err(
            None,
            "routes",
            "no routes: every request would be refused (404)",
        );
    }
    for (i, r) in raw.routes.iter().enumerate() {
        let span = at(r);
        if let Some(route) = build_route(
            cx,
            i,
            r.get_ref(),
            span,
            upstreams,
            providers,
            provider_settings,
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

fn build_route(
    cx: &mut Ctx<'_>,
    i: usize,
    r: &RawRoute,
    span: Option<usize>,
    upstreams: &[String],
    providers: &[String],
    provider_settings: &[ProviderSettings],
) -> Option<Route> {
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
    let challenge = format!(
        "Bearer realm=\"authgate\", error=\"insufficient_scope\", error_description=\"token lacks a required scope or claim\", scope=\"{}\"",
        r.require_scopes.join(" ")
    );
    let challenge = HeaderValue::from_str(&challenge).ok();
    if cx.errors.len() > before {
        return None;
    }
    Some(Route {
        name: r.name.clone(),
        host,
        path: path?,
        methods,
        auth,
        providers: route_providers,
        require_scopes: r.require_scopes.clone(),
        require_claims,
        upstream: upstream?,
        insufficient_scope_challenge: challenge?,
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

/// Where a spanned value starts; `None` for a default that is not in the file.
fn at<T>(v: &Spanned<T>) -> Option<usize> {
    let span = v.span();
    (span.end > 0).then_some(span.start)
}

/// The config text's hash plus the files it reads that a reload must notice: HMAC secrets
/// (replacing a leaked one) and `jwks_ca_file`s (a rotated CA).
fn fingerprint(
    content_hash: &str,
    providers: &[ProviderSettings],
    upstreams: &[Upstream],
) -> String {
    let reads_files = |p: &ProviderSettings| {
        matches!(p.key_source, KeySource::HmacSecret(_)) || p.jwks_ca.is_some()
    };
    let upstream_ca = |u: &Upstream| u.tls.as_ref().and_then(|t| t.ca_hash);
    if !providers.iter().any(reads_files) && !upstreams.iter().any(|u| upstream_ca(u).is_some()) {
        return content_hash.to_owned();
    }
    let mut h = Sha256::new();
    h.update(content_hash.as_bytes());
    for p in providers {
        h.update(p.name.as_bytes());
        if let KeySource::HmacSecret(s) = &p.key_source {
            h.update(Sha256::digest(s));
        }
        if let Some(ca) = &p.jwks_ca {
            h.update(Sha256::digest(ca));
        }
    }
    for u in upstreams {
        if let Some(ca) = upstream_ca(u) {
            h.update(u.name.as_bytes());
            h.update(ca);
        }
    }
    super::load::hex(&h.finalize())
}

/// Where OIDC discovery reads an issuer's metadata (OpenID Connect Discovery 1.0 §4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
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

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests;
