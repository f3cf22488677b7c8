//! The validated, immutable configuration and the errors that explain a bad one.
//!
//! A config goes `load` (read + TOML parse) → `build` (every cross-check, every matcher
//! precompiled, every file it names read and parsed once) → a plain `Config` value. It is
//! data: nothing here starts a task, holds a metric or touches the network, and it imports
//! nothing of ours but `formats`. `runtime` assembles the running state from it and owns
//! reload. See `schema` for the file format.

pub mod build;
mod ids;
mod load;
pub mod routes;
pub mod schema;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::Algorithm;

use rustls::pki_types::CertificateDer;

use crate::formats::claim_path::ClaimPath;
use crate::formats::pem::Pair;
use crate::formats::revocation::RevocationSet;

pub use build::build;
pub use ids::{ProviderId, RouteId, UpstreamId};
pub use load::{load_file, load_str};
pub use routes::RouteTable;

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
    /// `[store]`, where configured.
    pub store: Option<StoreConfig>,
}

/// `[store]`: the fleet store, read at load (bound at start: a change is a restart).
#[derive(Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub redis_url: String,
    pub password: Option<String>,
    /// PEM bytes of `ca_file`.
    pub ca: Option<Vec<u8>>,
    pub timeout: Duration,
    /// A DPoP proof the store cannot vouch for passes on this replica's own check.
    pub dpop_local_on_outage: bool,
    /// First segment of every key and channel (`key_prefix`).
    pub key_prefix: String,
    /// `/readyz` fails when a revocation copy is older than this.
    pub revocation_max_age: Duration,
    /// Before a provider's first copy is read, its tokens pass unchecked against the store
    /// (`revocation_without_copy = "fail_open"`).
    pub revocation_fail_open: bool,
}

impl fmt::Debug for StoreConfig {
    // The password stays out of every log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("redis_url", &self.redis_url)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("ca", &self.ca.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .field("dpop_local_on_outage", &self.dpop_local_on_outage)
            .field("key_prefix", &self.key_prefix)
            .field("revocation_max_age", &self.revocation_max_age)
            .field("revocation_fail_open", &self.revocation_fail_open)
            .finish()
    }
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
    /// Requests per HTTP/1.1 connection; 0: no limit.
    pub keepalive_requests: u32,
    pub body_read_timeout: Duration,
    /// Each write of an answer to the client.
    pub send_timeout: Duration,
    pub read_buffer_bytes: usize,
    pub work_stealing: bool,
    /// Bodyless HTTP/1.1 requests on the lean path (`proxy::fast`).
    pub fast_path: bool,
    pub upstream_pool_size: usize,
    pub log_format: Option<LogFormat>,
    pub log_subject: bool,
    /// `public_url` in `normalize_htu` form without a trailing `/`: the start of every
    /// DPoP `htu` (a route's own wins).
    pub public_url: Option<String>,
    /// Peers whose `Client-Cert` header is believed.
    pub trusted_client_cert_peers: Vec<ipnet::IpNet>,
    pub dpop_replay_max_entries: usize,
}

/// `[server.tls]`, paths resolved against the config file.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub http2: bool,
    /// The pair as read and checked at load: the listener starts with it (no second read).
    pub pair: Pair,
    /// `client_ca`: the listener asks for client certificates that chain to these.
    pub client_ca: Option<ClientCa>,
    /// `client_auth = "required"`: no handshake without a client certificate.
    pub client_cert_required: bool,
}

/// `[server.tls] client_ca`, read at load.
#[derive(Debug, Clone)]
pub struct ClientCa {
    pub path: PathBuf,
    pub certs: Arc<[CertificateDer<'static>]>,
    /// SHA-256 of the file: a changed CA is a changed setting (bound at start).
    pub hash: [u8; 32],
}

impl PartialEq for ServerTls {
    /// The settings, not the pair's content (a rotated pair is picked up by the listener's
    /// own poll and is no config change). The client CA is read once, at start: a new
    /// one is a change to restart for.
    fn eq(&self, other: &Self) -> bool {
        let ca = |t: &Self| t.client_ca.as_ref().map(|c| (c.path.clone(), c.hash));
        (
            &self.cert,
            &self.key,
            self.http2,
            self.client_cert_required,
            ca(self),
        ) == (
            &other.cert,
            &other.key,
            other.http2,
            other.client_cert_required,
            ca(other),
        )
    }
}

impl Eq for ServerTls {}

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

/// `[token_cache]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    pub enabled: bool,
    pub max_entries: u64,
    pub max_bytes: u64,
    pub ttl: Duration,
}

/// TLS to an upstream: the SNI / verified name, and the CAs trusted for it.
#[derive(Clone)]
pub struct UpstreamTls {
    pub sni: String,
    /// `ca_file`'s certificates (DER), parsed once at load; `None`: the system roots.
    pub ca: Option<Arc<[CertificateDer<'static>]>>,
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
    /// A JWKS file; `JwksFile::document` is its content as read at load.
    JwksFile(JwksFile),
    /// HMAC secret bytes, read from `hmac_secret_file` at load.
    HmacSecret(Vec<u8>),
    /// No keys: an introspection-only provider (every token of it is introspected).
    None,
}

/// A `jwks_file`: its path, and the JSON document read and checked at load.
#[derive(Clone)]
pub struct JwksFile {
    pub path: PathBuf,
    pub document: Arc<Vec<u8>>,
}

impl PartialEq for JwksFile {
    /// A key store follows its file (it re-reads it on refresh): the path is its identity.
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl Eq for JwksFile {}

/// A `revocation_file`: its path, and the list as read at load with its content's hash.
#[derive(Clone)]
pub struct RevocationFile {
    pub path: PathBuf,
    pub list: Arc<RevocationSet>,
    /// SHA-256 hex of the bytes `list` was parsed from.
    pub hash: String,
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
    pub revocation_file: Option<RevocationFile>,
    /// `revocation = "store"`: the fleet store's list applies too.
    pub revocation_store: bool,
    /// Lowercase, without `application/`.
    pub required_typ: Option<String>,
    /// Refuse tokens without `aud` (JWTs and introspection responses alike). Default true.
    pub require_aud: bool,
    /// RFC 7662 introspection, where configured.
    pub introspection: Option<Arc<IntrospectionSettings>>,
    /// JWTs of this provider are introspected too (always so without keys).
    pub introspect_jwts: bool,
    pub dpop: DpopSettings,
}

/// DPoP (RFC 9449) for one provider's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopSettings {
    pub mode: DpopMode,
    /// Asymmetric algorithms a proof may use.
    pub algorithms: Vec<Algorithm>,
    /// How old a proof's `iat` may be (plus the provider's `leeway`).
    pub max_age: Duration,
    /// Proofs must carry a nonce the gateway issued (`DPoP-Nonce`).
    pub nonce: bool,
}

/// `dpop = "off" | "allowed" | "required"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopMode {
    /// No DPoP: the `DPoP` scheme and DPoP-bound tokens are refused (a binding the gateway
    /// does not check must not pass as a bearer token).
    Off,
    /// A DPoP-bound token must come with its proof; a plain bearer token passes.
    Allowed,
    /// Only DPoP-bound tokens with their proofs.
    Required,
}

/// How a provider's tokens are introspected (RFC 7662).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionSettings {
    pub endpoint: IntrospectionEndpoint,
    pub client_id: String,
    pub client_auth: ClientAuth,
    /// `token_type_hint` sent with each call (`None`: not sent).
    pub token_type_hint: Option<String>,
    /// Whole-call limit: connect, send, answer, body.
    pub timeout: Duration,
    /// PEM bytes of extra CA certificates trusted for the endpoint.
    pub ca: Option<Vec<u8>>,
    /// Ask for an RFC 9701 JWT-signed response and accept only that.
    pub signed_response: bool,
    /// Longest an active answer is used (never past the token's `exp`).
    pub cache_ttl: Duration,
    /// How long an inactive answer is remembered.
    pub negative_ttl: Duration,
    /// Bounds of the answer cache (each of the active and the inactive one).
    pub cache_max_entries: u64,
    pub cache_max_bytes: u64,
    /// Calls to the endpoint at once; more wait (within `timeout`).
    pub max_in_flight: usize,
}

/// Where the introspection endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntrospectionEndpoint {
    Url(String),
    /// `introspection_endpoint` of this issuer's OIDC metadata.
    Discovery(String),
}

/// How the gateway authenticates to the introspection endpoint (RFC 7662 §2.1).
#[derive(Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-encoded id and secret.
    SecretBasic(Vec<u8>),
    /// `client_secret_post`: `client_id` and `client_secret` in the form.
    SecretPost(Vec<u8>),
    /// `private_key_jwt` (RFC 7523): a short-lived assertion signed with this PEM key.
    PrivateKeyJwt {
        pem: Vec<u8>,
        alg: Algorithm,
        kid: Option<String>,
    },
}

impl fmt::Debug for ClientAuth {
    // Secrets and keys never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SecretBasic(_) => f.write_str("client_secret_basic(<redacted>)"),
            Self::SecretPost(_) => f.write_str("client_secret_post(<redacted>)"),
            Self::PrivateKeyJwt { alg, kid, .. } => f
                .debug_struct("private_key_jwt")
                .field("alg", alg)
                .field("kid", kid)
                .finish_non_exhaustive(),
        }
    }
}

impl ClientAuth {
    /// As written in `client_auth`.
    pub const fn method(&self) -> &'static str {
        match self {
            Self::SecretBasic(_) => "client_secret_basic",
            Self::SecretPost(_) => "client_secret_post",
            Self::PrivateKeyJwt { .. } => "private_key_jwt",
        }
    }

    /// The secret or key bytes, for the config fingerprint.
    pub fn material(&self) -> &[u8] {
        match self {
            Self::SecretBasic(s) | Self::SecretPost(s) => s,
            Self::PrivateKeyJwt { pem, .. } => pem,
        }
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

impl fmt::Debug for RevocationFile {
    // The list names subjects: their count is enough for a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationFile")
            .field("path", &self.path)
            .field("entries", &self.list.len())
            .field("hash", &self.hash)
            .finish()
    }
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
            Self::JwksFile(j) => f.debug_tuple("JwksFile").field(&j.path).finish(),
            Self::HmacSecret(_) => f.write_str("HmacSecret(<redacted>)"),
            Self::None => f.write_str("None"),
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
                    KeySource::JwksFile(f) => f.path.display().to_string(),
                    KeySource::HmacSecret(_) => "hmac secret".to_owned(),
                    KeySource::None => "none".to_owned(),
                }
            ));
            if let Some(i) = &p.introspection {
                out.push_str(&format!(
                    "  introspection {} as {} ({})\n",
                    match &i.endpoint {
                        IntrospectionEndpoint::Url(u) => u.clone(),
                        IntrospectionEndpoint::Discovery(iss) => format!("discovery from {iss}"),
                    },
                    i.client_id,
                    i.client_auth.method()
                ));
            }
            let file = p
                .revocation_file
                .as_ref()
                .map(|f| f.path.display().to_string());
            let sources: Vec<String> = file
                .into_iter()
                .chain(p.revocation_store.then(|| "the fleet store".to_owned()))
                .collect();
            if !sources.is_empty() {
                out.push_str(&format!("  revocations from {}\n", sources.join(" and ")));
            }
        }
        if let Some(s) = &self.store {
            out.push_str(&format!(
                "store {} (timeout {:?}, keys {}:*; dpop on outage: {}; revocations: stale after {:?}, {} before the first copy)\n",
                s.redis_url,
                s.timeout,
                s.key_prefix,
                if s.dpop_local_on_outage { "local" } else { "fail_closed" },
                s.revocation_max_age,
                if s.revocation_fail_open { "fail_open" } else { "fail_closed" },
            ));
        }
        out.push_str("routes (most specific first):\n");
        out.push_str(&self.routes.describe(self));
        out
    }
}
