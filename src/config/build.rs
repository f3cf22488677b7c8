//! `RawConfig` → `Config`: every cross-check, every matcher precompiled, every file a
//! setting names read and parsed once, every problem collected (not just the first), each
//! naming file, line, key and reason. One submodule per table: `server` (with `[admin]` and
//! `[token_cache]`), `upstreams`, `providers`, `headers`, `routes`.

mod headers;
mod introspection;
mod providers;
mod routes;
mod server;
mod upstreams;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::load::line_col;
use super::schema::RawConfig;
use super::{AdminSettings, Config, ConfigError, KeySource, ProviderSettings, Upstream};

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

    /// The bytes of a file the config names (relative to the config file); a failure is
    /// recorded under `key` as "cannot read PATH: ERROR".
    fn read(&mut self, at: Option<usize>, key: &str, file: &str) -> Option<(PathBuf, Vec<u8>)> {
        let path = self.relative(file);
        match std::fs::read(&path) {
            Ok(bytes) => Some((path, bytes)),
            Err(e) => {
                self.err(at, key, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }

    /// A secret from a file: its bytes without trailing newlines (an editor's or `echo`'s).
    fn read_secret(
        &mut self,
        at: Option<usize>,
        key: &str,
        file: &str,
    ) -> Option<(PathBuf, Vec<u8>)> {
        let (path, bytes) = self.read(at, key, file)?;
        Some((path, crate::formats::secret_bytes(&bytes).to_vec()))
    }

    /// A PEM file of CA certificates: at least one must be in it.
    fn read_ca(&mut self, at: Option<usize>, key: &str, file: &str) -> Option<Vec<u8>> {
        let (path, pem) = self.read(at, key, file)?;
        if reqwest::Certificate::from_pem_bundle(&pem).is_ok_and(|c| !c.is_empty()) {
            Some(pem)
        } else {
            self.err(
                at,
                key,
                format!("{} holds no PEM certificate", path.display()),
            );
            None
        }
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
    let server = server::build_server(&mut cx, &raw);
    let admin = AdminSettings {
        listen: raw.admin.listen.get_ref().clone(),
    };
    server::check_listen(&mut cx, &raw.admin.listen, "admin.listen");
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
        if let Some(u) = upstreams::build_upstream(&mut cx, name, up) {
            upstreams.push(u);
        }
    }
    let mut provider_names = Vec::new();
    let mut providers = Vec::new();
    for (name, p) in &raw.providers {
        provider_names.push(name.clone());
        if let Some(p) = providers::build_provider(&mut cx, name, p) {
            providers.push(p);
        }
    }
    let headers = headers::build_headers(&mut cx, &raw.headers);
    let token_cache = server::build_token_cache(&mut cx, &raw);
    let store = raw
        .store
        .as_ref()
        .and_then(|s| server::build_store(&mut cx, s));
    let routes = routes::build_routes(&mut cx, &raw, &upstream_names, &provider_names, &providers);
    if raw.store.is_none() {
        for (name, p) in &raw.providers {
            if let Some(r) = p
                .get_ref()
                .revocation
                .as_ref()
                .filter(|r| r.get_ref() == "store")
            {
                cx.err(
                    at(r),
                    format!("providers.{name}.revocation"),
                    "needs a [store] table (redis_url) to read revocations from",
                );
            }
        }
    }

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
                store,
            });
        }
    }
    Err(cx.errors)
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

/// Where a spanned value starts; `None` for a default that is not in the file.
fn at<T>(v: &Spanned<T>) -> Option<usize> {
    let span = v.span();
    (span.end > 0).then_some(span.start)
}

/// The config text's hash plus the files it reads that a reload must notice: HMAC secrets
/// and introspection client secrets or keys (replacing a leaked one), and CA files (a
/// rotated CA).
fn fingerprint(
    content_hash: &str,
    providers: &[ProviderSettings],
    upstreams: &[Upstream],
) -> String {
    let reads_files = |p: &ProviderSettings| {
        matches!(p.key_source, KeySource::HmacSecret(_))
            || p.jwks_ca.is_some()
            || p.introspection.is_some()
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
        if let Some(i) = &p.introspection {
            h.update(Sha256::digest(i.client_auth.material()));
            if let Some(ca) = &i.ca {
                h.update(Sha256::digest(ca));
            }
        }
    }
    for u in upstreams {
        if let Some(ca) = upstream_ca(u) {
            h.update(u.name.as_bytes());
            h.update(ca);
        }
    }
    crate::formats::hex(&h.finalize())
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests;
