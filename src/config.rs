//! The validated, immutable configuration and the errors that explain a bad one.
//!
//! A config goes `load` (read + TOML parse) → `build` (every cross-check, every matcher
//! precompiled) → one `Arc<Config>` that requests read and never mutate. See `schema` for
//! the file format and `watch` for live reload.

pub mod build;
mod load;
pub mod schema;
pub mod watch;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::Algorithm;

use crate::auth::cache::{CacheSettings, TokenCache};
use crate::auth::claims::ClaimPath;
use crate::auth::keystore::ProviderKeys;
use crate::auth::policy::RouteTable;
use crate::auth::revocation::FileRevocations;
use crate::metrics::{Metrics, RouteMetrics, UpstreamErrorKind, NO_ROUTE};
use prometheus::{Histogram, IntCounter};

pub use build::build;
pub use load::sha256_hex;
pub use load::{load_file, load_str};

/// A runnable configuration: everything checked, everything precompiled.
#[derive(Debug)]
pub struct Config {
    /// The file it came from (or `<embedded demo>`).
    pub origin: PathBuf,
    /// SHA-256 of the file's bytes, hex: shows fleet drift and skips no-op reloads.
    pub content_hash: String,
    /// `content_hash` plus the HMAC secrets and CA files the config reads: what a reload compares.
    pub fingerprint: String,
    /// Allowed but risky settings, logged at start and on reload (and printed by `check`).
    pub warnings: Vec<String>,
    pub server: ServerSettings,
    pub admin: AdminSettings,
    pub upstreams: Vec<Upstream>,
    pub providers: Vec<ProviderSettings>,
    pub headers: HeaderPolicy,
    pub routes: RouteTable,
    pub token_cache: CacheSettings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub listen: String,
    pub threads: usize,
    pub max_token_bytes: usize,
    pub max_header_bytes: usize,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    pub tls: Option<ServerTls>,
    pub header_read_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub body_read_timeout: Duration,
    pub read_buffer_bytes: usize,
    pub work_stealing: bool,
    pub upstream_pool_size: usize,
    pub log_format: Option<LogFormat>,
    pub log_subject: bool,
}

/// `[server.tls]`, paths resolved against the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub http2: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub listen: String,
}

/// An upstream, resolved at load time: `HttpPeer::new` would otherwise do a blocking DNS
/// lookup per request and panic when it fails.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    /// `https://` upstreams.
    pub tls: Option<UpstreamTls>,
}

/// TLS to an upstream: the SNI / verified name, and the CAs trusted for it.
#[derive(Clone)]
pub struct UpstreamTls {
    pub sni: String,
    /// `ca_file`'s certificates, parsed once at load; `None`: the system roots.
    pub ca: Option<Arc<pingora::protocols::tls::CaType>>,
    /// SHA-256 of `ca_file`'s bytes (part of the config fingerprint: a rotated CA reloads).
    pub ca_hash: Option<[u8; 32]>,
    pub verify: bool,
    /// Separates this upstream's pooled connections from any other's: pingora's pool key
    /// does not include the CA a connection was verified against.
    pub pool_key: u64,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("sni", &self.sni)
            .field("ca_certs", &self.ca.as_ref().map(|c| c.len()))
            .field("verify", &self.verify)
            .finish()
    }
}

/// Where a provider's verification keys come from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    JwksUrl(String),
    /// OIDC discovery from this issuer: `jwks_uri` is read from its metadata.
    Discovery(String),
    JwksFile(PathBuf),
    /// HMAC secret bytes, read from `hmac_secret_file` at load.
    HmacSecret(Vec<u8>),
}

/// One token issuer, as the validator needs it.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub key_source: KeySource,
    /// Allow-list from config; a token's `alg` outside it fails before any key is looked at.
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub jwks_refresh: Duration,
    pub jwks_min_refresh: Duration,
    pub jwks_max_stale: Duration,
    /// PEM bytes of extra CA certificates for https key fetches.
    pub jwks_ca: Option<Vec<u8>>,
    pub jwks_refetch_cooldown: Duration,
    pub require_exp: bool,
    pub max_token_lifetime: Option<Duration>,
    pub revocation_file: Option<PathBuf>,
    /// Lowercase, without `application/`.
    pub required_typ: Option<String>,
}

/// What one request reads: a config and the key stores of its providers, indexed like
/// `config.providers`. Swapped whole on reload; a request keeps the one it started with.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub keys: Vec<Arc<ProviderKeys>>,
    /// Metric handles per route (indexed like routes), and for requests that matched none.
    pub route_metrics: Vec<RouteMetrics>,
    pub no_route_metrics: RouteMetrics,
    /// `authgate_token_remaining_lifetime_seconds` per provider (indexed like providers).
    pub token_lifetime: Vec<Histogram>,
    /// Revocation list per provider (indexed like providers), where one is configured.
    pub revocations: Vec<Option<Arc<FileRevocations>>>,
    /// `authgate_upstream_errors_total` per upstream (indexed like upstreams) and kind.
    pub upstream_errors: Vec<Vec<IntCounter>>,
    /// Verified tokens of this snapshot (`None`: the cache is off). A reload starts empty.
    pub token_cache: Option<TokenCache>,
}

// === impl Snapshot ===

impl Snapshot {
    pub fn new(
        config: Arc<Config>,
        keys: Vec<Arc<ProviderKeys>>,
        revocations: Vec<Option<Arc<FileRevocations>>>,
        metrics: &Metrics,
    ) -> Self {
        let route_metrics = config
            .routes
            .iter()
            .map(|r| metrics.for_route(&r.name))
            .collect();
        let token_lifetime = config
            .providers
            .iter()
            .map(|p| {
                metrics
                    .token_remaining_lifetime
                    .with_label_values(&[&p.name])
            })
            .collect();
        let upstream_errors = config
            .upstreams
            .iter()
            .map(|u| {
                UpstreamErrorKind::ALL
                    .iter()
                    .map(|k| {
                        metrics
                            .upstream_errors
                            .with_label_values(&[&u.name, k.label()])
                    })
                    .collect()
            })
            .collect();
        let token_cache = TokenCache::new(&config.token_cache, metrics);
        Self {
            config,
            keys,
            route_metrics,
            no_route_metrics: metrics.for_route(NO_ROUTE),
            token_lifetime,
            revocations,
            upstream_errors,
            token_cache,
        }
    }

    /// The error counter of upstream `idx` for `kind`.
    pub fn upstream_error(&self, idx: usize, kind: UpstreamErrorKind) -> &IntCounter {
        let i = UpstreamErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(UpstreamErrorKind::ALL.len() - 1);
        &self.upstream_errors[idx][i]
    }

    /// The metric handles of route `idx`, or of "no route".
    pub fn metrics_for(&self, idx: Option<usize>) -> &RouteMetrics {
        idx.and_then(|i| self.route_metrics.get(i))
            .unwrap_or(&self.no_route_metrics)
    }
}

/// Claims forwarded as headers, and client headers removed on every route.
#[derive(Debug, Clone)]
pub struct HeaderPolicy {
    pub forward_claims: Vec<ClaimHeader>,
    /// Canonical names (lowercase, `_` folded to `-`) removed from every client request.
    pub strip_exact: Vec<String>,
    /// Canonical prefixes (from `X-Internal-*`) removed likewise.
    pub strip_prefixes: Vec<String>,
    pub forward_token: bool,
}

#[derive(Debug, Clone)]
pub struct ClaimHeader {
    pub claim: ClaimPath,
    pub header: HeaderName,
}

/// One problem in a config file, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no place in the file (e.g. a default value).
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `routes[2].upstream`.
    pub key: String,
    pub message: String,
}

// === impl ConfigError ===

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": `{}`: {}", self.key, self.message)
        }
    }
}

/// All errors of one config, one per line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

// === impl KeySource ===

impl fmt::Debug for KeySource {
    // The HMAC secret must never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::JwksUrl(u) => f.debug_tuple("JwksUrl").field(u).finish(),
            Self::Discovery(i) => f.debug_tuple("Discovery").field(i).finish(),
            Self::JwksFile(p) => f.debug_tuple("JwksFile").field(p).finish(),
            Self::HmacSecret(_) => f.write_str("HmacSecret(<redacted>)"),
        }
    }
}

// === impl Config ===

impl Config {
    /// A human-readable listing of the routes, most specific first, for `authgate check`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "config {} (sha256 {})\n",
            self.origin.display(),
            &self.content_hash[..12.min(self.content_hash.len())]
        ));
        out.push_str(&format!(
            "listen {}  admin {}  threads {}\n",
            self.server.listen, self.admin.listen, self.server.threads
        ));
        for u in &self.upstreams {
            out.push_str(&format!("upstream {:<12} {}\n", u.name, u.addr));
        }
        for p in &self.providers {
            let algs: Vec<_> = p.algorithms.iter().map(|a| format!("{a:?}")).collect();
            out.push_str(&format!(
                "provider {:<12} iss={} aud={:?} algs={} keys={}\n",
                p.name,
                p.issuer,
                p.audiences,
                algs.join(","),
                match &p.key_source {
                    KeySource::JwksUrl(u) => u.clone(),
                    KeySource::Discovery(i) => format!("discovery from {i}"),
                    KeySource::JwksFile(f) => f.display().to_string(),
                    KeySource::HmacSecret(_) => "hmac secret".to_owned(),
                }
            ));
        }
        out.push_str("routes (most specific first):\n");
        out.push_str(&self.routes.describe(self));
        out
    }
}
