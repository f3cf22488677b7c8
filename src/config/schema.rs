//! `Raw*` types: the TOML file exactly as written, before any cross-checking.
//!
//! Every struct denies unknown fields, so a misspelled key is an error that names the key
//! instead of a silent default. Defaults documented here are the defaults of the gateway;
//! `config/authgate.toml` is the commented reference of every key.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<RawUpstream>>,
    #[serde(default)]
    pub providers: BTreeMap<String, Spanned<RawProvider>>,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub token_cache: RawTokenCache,
    #[serde(default)]
    pub defaults: RawDefaults,
    /// `[store]`: the fleet store (Redis). Default: none, everything in-process.
    pub store: Option<Spanned<RawStore>>,
}

/// `[store]`: state shared by every replica, on Redis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `redis://host:port[/db]` or `rediss://...` (TLS); an ACL user may be in it
    /// (`redis://user@host`), never a password.
    pub redis_url: String,
    /// File holding the password (ACL user's, or `requirepass`). Default: none.
    pub password_file: Option<String>,
    /// PEM CA certificates trusted for `rediss://` besides the system roots.
    pub ca_file: Option<String>,
    /// The whole of one store call on the request path. Default 250ms.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// When the store cannot say whether a DPoP proof was used elsewhere: `fail_closed`
    /// (default: 503) or `local` (this replica's own check stands).
    pub dpop_replay_on_outage: Option<String>,
    /// First segment of every key and channel, so fleets can share one Redis. Default
    /// `authgate`.
    pub key_prefix: Option<String>,
    /// `/readyz` fails while a provider's revocation copy has not been confirmed current
    /// for this long. Default 5m.
    #[serde(default, with = "humantime_serde")]
    pub revocation_max_age: Option<Duration>,
    /// Before the first copy of a provider's revocations is read: `fail_closed` (default:
    /// its tokens get 503) or `fail_open` (they pass unchecked against the store).
    pub revocation_without_copy: Option<String>,
}

/// `[defaults]`: what a route says when it does not say it itself.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// `enforce` (default) or `report`.
    #[serde(default)]
    pub mode: RawMode,
}

/// `mode = ...` on a route or in `[defaults]`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawMode {
    #[default]
    Enforce,
    Report,
}

/// `[token_cache]`: verified tokens kept so a returning token skips the signature check.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenCache {
    /// Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Most tokens kept. Default 10000.
    #[serde(default = "default_cache_entries")]
    pub max_entries: u64,
    /// Most bytes their entries may take (estimated). Default 33554432 (32 MiB).
    #[serde(default = "default_cache_bytes")]
    pub max_bytes: u64,
    /// Longest an entry is used, even for a token whose `exp` is later. Default 5m.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub ttl: Duration,
}

impl Default for RawTokenCache {
    fn default() -> Self {
        Self {
            enabled: true,
            max_entries: default_cache_entries(),
            max_bytes: default_cache_bytes(),
            ttl: default_cache_ttl(),
        }
    }
}

pub(crate) fn default_cache_entries() -> u64 {
    10_000
}
fn default_cache_bytes() -> u64 {
    32 << 20
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(300)
}

/// `[server]`: the client-facing listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address of the client listener. Default `0.0.0.0:8080`. Port 0 picks a free port,
    /// which the gateway logs once bound (used by the tests).
    #[serde(default = "default_listen")]
    pub listen: Spanned<String>,
    /// Worker threads of the proxy. Default 2.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Largest bearer token accepted, in bytes. Default 8192; larger tokens get a 401.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Largest request head (request line plus headers), in bytes. Default 32768; larger
    /// requests get a 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// After SIGTERM, keep serving this long (readiness already failing) before closing the
    /// listener. Default 5s.
    #[serde(default = "default_shutdown_delay", with = "humantime_serde")]
    pub shutdown_delay: Duration,
    /// After the listener closes, how long in-flight requests may take to finish. Default 15s.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// TLS on the client listener. Default: none (plain HTTP/1.1).
    pub tls: Option<Spanned<RawServerTls>>,
    /// Longest wait for each read of a new connection's first request head. Default 10s.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long an idle keep-alive connection is kept open between requests. Default 60s.
    #[serde(default = "default_keepalive_timeout", with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Most requests one HTTP/1.1 connection carries; the last is answered with
    /// `Connection: close` (clients reconnect, and spread over new replicas). 0: no limit.
    /// Default 1000, as nginx.
    #[serde(default = "default_keepalive_requests")]
    pub keepalive_requests: u32,
    /// Longest wait for each read of a request body. Default 60s.
    #[serde(default = "default_body_read_timeout", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Longest wait for each write of an answer to the client (a client that stops reading,
    /// or leaves an HTTP/2 window at 0). Default 60s, as nginx's `send_timeout`.
    #[serde(default = "default_send_timeout", with = "humantime_serde")]
    pub send_timeout: Duration,
    /// Read buffer of each client connection, in bytes; 0 reads straight into the HTTP
    /// parser's own buffers (pingora's default is 64 KiB, held for the connection's whole
    /// life, idle keep-alive included, and copied through on every read). Default 0.
    #[serde(default = "default_read_buffer_bytes")]
    pub read_buffer_bytes: usize,
    /// Let worker threads steal each other's tasks (one multi-threaded runtime) instead of
    /// one single-threaded runtime per thread. Default false.
    #[serde(default)]
    pub work_stealing: bool,
    /// Serve bodyless HTTP/1.1 requests without upgrade on the lean path (pingora-core, one
    /// task per request); every other request goes through pingora-proxy. Default true.
    /// `AUTHGATE_FAST_PATH=false` overrides it (the test suite runs once per path).
    #[serde(default = "default_true")]
    pub fast_path: bool,
    /// Idle upstream connections kept for reuse (all upstreams together, per worker
    /// thread). Default 128.
    #[serde(default = "default_upstream_pool_size")]
    pub upstream_pool_size: usize,
    /// `json` or `text`. Default: JSON unless stdout is a terminal. The `--log-format` flag
    /// and `AUTHGATE_LOG_FORMAT` win over it.
    pub log_format: Option<Spanned<String>>,
    /// Put the token's `sub` in the access log. Default false.
    #[serde(default)]
    pub log_subject: bool,
    /// The URL clients use to reach the gateway (`https://api.example.com`, optionally with
    /// a path prefix): what a DPoP proof's `htu` is compared with. Default: the listener's
    /// scheme and the request's `Host` (never `X-Forwarded-*`).
    pub public_url: Option<Spanned<String>>,
    /// Peers (CIDRs) whose RFC 9440 `Client-Cert` header is believed: a TLS-terminating
    /// proxy in front. From anyone else the header is removed and ignored. Default: none.
    #[serde(default)]
    pub trusted_client_cert_peers: Vec<Spanned<String>>,
    /// Most DPoP proofs remembered against replay at once; when full of proofs still in
    /// their window, new proofs are refused (503). Default 1000000.
    #[serde(default = "default_dpop_replay_max_entries")]
    pub dpop_replay_max_entries: usize,
}

/// `[server.tls]`: certificate and key for the client listener, re-read when they change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTls {
    /// PEM certificate chain, leaf first.
    pub cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// Offer HTTP/2 by ALPN (clients choose; HTTP/1.1 is always offered). Default true.
    #[serde(default = "default_true")]
    pub http2: bool,
    /// PEM file of the CAs client certificates must chain to: the listener asks for one
    /// (certificate-bound tokens, RFC 8705). Default: no client certificates.
    pub client_ca: Option<String>,
    /// `optional` (default with `client_ca`): a client without a certificate may still
    /// connect; `required`: the handshake fails without one.
    pub client_auth: Option<String>,
}

/// `[admin]`: metrics and probes, on a listener of their own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Address of the admin listener. Default `127.0.0.1:9090`. Port 0 picks a free port.
    #[serde(default = "default_admin_listen")]
    pub listen: Spanned<String>,
}

/// `[upstreams.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// `http://host:port`; the host must be an IP address or a name that resolves at load.
    pub url: String,
    /// TCP connect timeout. Default 2s; a timeout answers 504.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for the upstream to answer / send more of its response. Default 30s.
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Longest wait to write the request to the upstream. Default 30s.
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    pub write_timeout: Duration,
    /// An idle pooled connection to this upstream is closed after this long. Default 60s.
    #[serde(default = "default_keepalive_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// https only: the name sent as SNI and checked against the certificate. Default: the
    /// URL's host.
    pub sni: Option<String>,
    /// https only: PEM file of the CA certificates trusted for this upstream, instead of
    /// the system roots. Default: the system roots.
    pub ca_file: Option<String>,
    /// https only: verify the upstream's certificate chain and name. Default true.
    #[serde(default = "default_true")]
    pub tls_verify: bool,
}

/// `[providers.NAME]`: one token issuer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Exact value of `iss`.
    pub issuer: String,
    /// Accepted `aud` values: the token's `aud` (a string, or an array) must contain one.
    pub audiences: Vec<String>,
    /// Where the keys come from: exactly one of these three.
    pub jwks_url: Option<String>,
    pub jwks_file: Option<String>,
    /// Shared secret for HS256/384/512, read from this file (never inline in the config).
    pub hmac_secret_file: Option<String>,
    /// PEM file of CA certificates trusted (besides the system roots) for https key
    /// fetches: a private PKI's issuer. Default: system roots only.
    pub jwks_ca_file: Option<String>,
    /// Read `<issuer>/.well-known/openid-configuration`, check its `issuer`, and fetch keys
    /// from its `jwks_uri` (both refreshed like the keys). Default false.
    #[serde(default)]
    pub discovery: bool,
    /// Algorithm allow-list. Default `["RS256", "ES256"]`; `none` is never accepted.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Spanned<String>>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`. Default 30s.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Keys are refetched at least this often. Default 5m.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// Lower bound on the refresh interval when the provider's `Cache-Control` asks for
    /// shorter (or `no-store`). Default 30s, or `jwks_refresh` when that is shorter.
    #[serde(default, with = "humantime_serde")]
    pub jwks_min_refresh: Option<Duration>,
    /// Keys the provider has not confirmed for this long are not used (503) until it
    /// answers again. Default 24h.
    #[serde(default = "default_max_stale", with = "humantime_serde")]
    pub jwks_max_stale: Duration,
    /// A token with an unknown `kid` triggers at most one refetch per this interval.
    /// Default 5s.
    #[serde(default = "default_refetch_cooldown", with = "humantime_serde")]
    pub jwks_refetch_cooldown: Duration,
    /// Reject tokens without `exp`. Default true.
    #[serde(default = "default_true")]
    pub require_exp: bool,
    /// Reject tokens whose `exp - iat` is longer than this (and tokens without `iat`).
    /// Default: no limit.
    #[serde(default, with = "humantime_serde")]
    pub max_token_lifetime: Option<Duration>,
    /// Revoked `jti`s and per-`sub` cutoffs (TOML, see README "Revocation"); re-read when it
    /// changes. Relative to the config file. Default: none.
    pub revocation_file: Option<String>,
    /// `"store"`: revocations also come from the fleet store (`[store]`), written by
    /// `authgate revoke`. Default: none.
    pub revocation: Option<Spanned<String>>,
    /// Required JOSE `typ` header, e.g. `at+jwt` (RFC 9068); compared case-insensitively,
    /// with or without the `application/` prefix. Default: not checked.
    pub required_typ: Option<String>,
    /// Refuse tokens (and introspection answers) without `aud`. Default true.
    #[serde(default = "default_true")]
    pub require_aud: bool,
    /// RFC 7662 endpoint: opaque tokens of routes that accept this provider are sent here.
    /// With `discovery = true` and `client_id`, read from the metadata instead. Default: none.
    pub introspection_url: Option<String>,
    /// The gateway's client id at the introspection endpoint.
    pub client_id: Option<String>,
    /// `client_secret_basic` (default), `client_secret_post` or `private_key_jwt`.
    pub client_auth: Option<String>,
    /// File holding the client secret (never inline), relative to the config file.
    pub client_secret_file: Option<String>,
    /// `private_key_jwt`: PEM private key (RSA, EC P-256/P-384 or Ed25519) signing the
    /// client assertion.
    pub client_key_file: Option<String>,
    /// `private_key_jwt`: the `kid` put in the assertion's header. Default: none.
    pub client_key_id: Option<String>,
    /// Sent with each introspection call. Default `access_token`; `""` sends none.
    pub token_type_hint: Option<String>,
    /// Limit of one introspection call, waiting for a free slot included. Default 3s.
    #[serde(default, with = "humantime_serde")]
    pub introspection_timeout: Option<Duration>,
    /// PEM file of CA certificates trusted for the introspection endpoint. Default: system
    /// roots.
    pub introspection_ca_file: Option<String>,
    /// Ask for RFC 9701 JWT-signed answers (verified with this provider's keys). Default false.
    #[serde(default)]
    pub introspection_signed_response: bool,
    /// Introspect this provider's JWTs too, instead of verifying them locally. Default false
    /// (always true for a provider without keys).
    #[serde(default)]
    pub introspect_jwts: bool,
    /// Longest an active answer is used; never past the token's `exp`. Default 30s.
    #[serde(default, with = "humantime_serde")]
    pub introspection_cache_ttl: Option<Duration>,
    /// How long an inactive answer is remembered. Default 5s.
    #[serde(default, with = "humantime_serde")]
    pub introspection_negative_ttl: Option<Duration>,
    /// Most answers kept (active and inactive, each). Default 10000.
    pub introspection_cache_max_entries: Option<u64>,
    /// Most bytes the kept active answers may take (estimated, parsed). Default 16777216
    /// (16 MiB).
    pub introspection_cache_max_bytes: Option<u64>,
    /// Calls to the endpoint at once; more wait for a slot within `introspection_timeout`.
    /// Default 64.
    pub introspection_max_in_flight: Option<usize>,
    /// DPoP (RFC 9449): `off`, `allowed` (default: a DPoP-bound token needs its proof, a
    /// plain bearer token passes) or `required` (bearer tokens are refused).
    pub dpop: Option<Spanned<String>>,
    /// Algorithms a DPoP proof may use (asymmetric only). Default: ES256, ES384, RS256,
    /// RS384, RS512, PS256, PS384, PS512, EdDSA.
    pub dpop_algorithms: Option<Vec<Spanned<String>>>,
    /// How old a proof's `iat` may be (the provider's `leeway` is added for clock skew).
    /// Default 60s.
    #[serde(default, with = "humantime_serde")]
    pub dpop_max_age: Option<Duration>,
    /// Require a server nonce in proofs (`DPoP-Nonce`, RFC 9449 §8). Default false.
    #[serde(default)]
    pub dpop_nonce: bool,
}

/// `[headers]`: what the upstream sees.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    /// Claim path (dotted) → header name the claim's value is sent in.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, Spanned<String>>,
    /// Client headers always removed; a trailing `*` matches a prefix.
    #[serde(default)]
    pub strip: Vec<Spanned<String>>,
    /// Keep `Authorization` for the upstream. Default false: it is removed.
    #[serde(default)]
    pub forward_token: bool,
}

/// `[[routes]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    /// Exact host or `*.example.com`; absent matches any host.
    pub host: Option<String>,
    /// Exactly one of `path` (exact) and `path_prefix` (whole segments).
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    /// Restrict to these methods; absent matches every method.
    pub methods: Option<Vec<String>>,
    /// `required` (default), `optional` or `none`.
    #[serde(default)]
    pub auth: RawAuthMode,
    /// Providers whose tokens this route accepts. Default: all providers.
    pub providers: Option<Vec<String>>,
    #[serde(default)]
    pub require_scopes: Vec<String>,
    /// Claim path → accepted values (any one of them).
    #[serde(default)]
    pub require_claims: BTreeMap<String, ClaimValues>,
    pub upstream: String,
    /// `enforce` or `report`; default: `[defaults] mode`.
    pub mode: Option<RawMode>,
    /// Where the token is read from, in order: `authorization`, `cookie:NAME`,
    /// `header:NAME`. Default `["authorization"]`.
    pub token_sources: Option<Vec<String>>,
    /// CSRF defence for cookie-borne tokens on unsafe methods: `same-origin` (default),
    /// `header:NAME`, or `off`.
    pub csrf: Option<String>,
    /// The URL clients use for this route's requests, for DPoP's `htu`. Default
    /// `server.public_url`.
    pub public_url: Option<String>,
}

/// `auth = ...` on a route.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAuthMode {
    #[default]
    Required,
    Optional,
    None,
}

/// One accepted value or a list of them; a lone string is a list of one.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ClaimValues {
    One(String),
    Many(Vec<String>),
}

impl ClaimValues {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(v) => vec![v.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

// === defaults ===

fn default_listen() -> Spanned<String> {
    Spanned::new(0..0, "0.0.0.0:8080".to_owned())
}
fn default_admin_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:9090".to_owned())
}
fn default_dpop_replay_max_entries() -> usize {
    1_000_000
}
fn default_threads() -> usize {
    2
}
fn default_max_token_bytes() -> usize {
    8192
}
fn default_max_header_bytes() -> usize {
    32 * 1024
}
fn default_shutdown_delay() -> Duration {
    Duration::from_secs(5)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(15)
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_keepalive_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_body_read_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_send_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_read_buffer_bytes() -> usize {
    0
}
fn default_keepalive_requests() -> u32 {
    1000
}
fn default_upstream_pool_size() -> usize {
    128
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_algorithms() -> Vec<Spanned<String>> {
    ["RS256", "ES256"]
        .into_iter()
        .map(|a| Spanned::new(0..0, a.to_owned()))
        .collect()
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}
fn default_max_stale() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_refetch_cooldown() -> Duration {
    Duration::from_secs(5)
}
pub(crate) fn default_introspection_timeout() -> Duration {
    Duration::from_secs(3)
}
pub(crate) fn default_introspection_cache_ttl() -> Duration {
    Duration::from_secs(30)
}
pub(crate) fn default_introspection_negative_ttl() -> Duration {
    Duration::from_secs(5)
}
pub(crate) fn default_introspection_cache_bytes() -> u64 {
    16 << 20
}
pub(crate) fn default_introspection_in_flight() -> usize {
    64
}
fn default_true() -> bool {
    true
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            threads: default_threads(),
            max_token_bytes: default_max_token_bytes(),
            max_header_bytes: default_max_header_bytes(),
            shutdown_delay: default_shutdown_delay(),
            shutdown_grace: default_shutdown_grace(),
            tls: None,
            header_read_timeout: default_header_read_timeout(),
            keepalive_timeout: default_keepalive_timeout(),
            body_read_timeout: default_body_read_timeout(),
            send_timeout: default_send_timeout(),
            read_buffer_bytes: default_read_buffer_bytes(),
            work_stealing: false,
            fast_path: true,
            upstream_pool_size: default_upstream_pool_size(),
            keepalive_requests: default_keepalive_requests(),
            log_format: None,
            log_subject: false,
            public_url: None,
            trusted_client_cert_peers: Vec::new(),
            dpop_replay_max_entries: default_dpop_replay_max_entries(),
        }
    }
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
        }
    }
}
