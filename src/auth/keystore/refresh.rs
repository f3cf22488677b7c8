//! The refresh task of one provider: when to fetch, how, and what a result means.
//!
//! Schedule: every `jwks_refresh`, shortened by the response's `Cache-Control: max-age` (or
//! `no-store`/`no-cache`) but never below `jwks_min_refresh`; after a failure 1 s, 2 s, 4 s …
//! 60 s; on an unknown-`kid` wake-up at once, unless inside `refetch_cooldown`, in which case
//! the waiters are released and the fetch happens when the cooldown ends. `ETag` is sent
//! back as `If-None-Match`; a 304 confirms the keys without parsing anything.

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use tokio::time::Instant;

use super::{ProviderKeys, StoreIdentity};
use crate::config::KeySource;
use crate::formats::jwks::KeySet;
use crate::formats::{discovery_url, metadata_url};
use crate::metrics::Metrics;

/// Largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// Time limit of one JWKS fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Retry delays after a failed fetch.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// What one fetch produced.
enum Fetched {
    /// A new document, parsed.
    Keys {
        set: KeySet,
        document: Vec<u8>,
        /// The URL the document came from and its `ETag`.
        etag: Option<(String, String)>,
        max_age: Option<Duration>,
    },
    /// 304: the keys in force are still current.
    NotModified { max_age: Option<Duration> },
}

pub(super) async fn run(weak: Weak<ProviderKeys>, client: reqwest::Client, metrics: Arc<Metrics>) {
    let mut backoff = RETRY_MIN;
    // (URL, ETag): an ETag is only ever sent back to the URL that issued it (discovery may
    // move the jwks_uri).
    let mut etag: Option<(String, String)> = None;
    loop {
        let Some(store) = weak.upgrade() else { return };
        let id = store.identity.clone();
        let result = match fetch(&id, &client, etag.as_ref()).await {
            // A 304 can only confirm keys we hold.
            Ok(Fetched::NotModified { .. }) if !store.is_loaded() => {
                Err("304 Not Modified, but no keys are loaded".to_owned())
            }
            other => other,
        };
        let last_fetch = Instant::now();
        let wait = match result {
            Ok(fetched) => {
                backoff = RETRY_MIN;
                let max_age = record_success(&store, &id, fetched, &mut etag, &metrics);
                next_refresh(&id, max_age)
            }
            Err(error) => {
                metrics
                    .jwks_fetches
                    .with_label_values(&[&id.provider, "error"])
                    .inc();
                tracing::warn!(provider = %id.provider, %error, keeping_last_good = store.is_loaded(), "jwks refresh failed");
                if store.is_loaded() && store.is_stale() {
                    tracing::error!(provider = %id.provider, max_stale = ?id.max_stale, "keys older than jwks_max_stale: refusing tokens of this provider (503) until it answers");
                }
                let w = backoff.min(id.refresh);
                backoff = (backoff * 2).min(RETRY_MAX);
                w
            }
        };
        store.attempt_done();
        // Wait for the refresh time or a wake-up, without keeping the store alive.
        let mut deadline = Instant::now() + wait;
        loop {
            let woke = {
                let notified = store.wake.notified();
                tokio::select! {
                    () = notified => true,
                    () = tokio::time::sleep_until(deadline) => false,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {
                        if weak.strong_count() <= 1 { return; }
                        continue;
                    }
                }
            };
            if !woke {
                break;
            }
            let cooled = last_fetch + id.refetch_cooldown;
            if Instant::now() >= cooled {
                break;
            }
            // Inside the cooldown: release the waiting requests now (they answer
            // `unknown_kid`) and fetch as soon as the cooldown ends, so a new key still
            // arrives promptly while invented kids cannot make it fetch more often.
            metrics
                .jwks_fetches
                .with_label_values(&[&id.provider, "rate_limited"])
                .inc();
            store.attempt_done();
            deadline = deadline.min(cooled);
        }
        drop(store);
    }
}

/// `jwks_refresh`, shortened by the provider's caching headers, never below `jwks_min_refresh`.
fn next_refresh(id: &StoreIdentity, max_age: Option<Duration>) -> Duration {
    match max_age {
        Some(age) => age.clamp(id.min_refresh, id.refresh.max(id.min_refresh)),
        None => id.refresh,
    }
}

/// Publishes or confirms keys; returns the caching lifetime the provider announced.
fn record_success(
    store: &ProviderKeys,
    id: &StoreIdentity,
    fetched: Fetched,
    etag: &mut Option<(String, String)>,
    metrics: &Metrics,
) -> Option<Duration> {
    match fetched {
        Fetched::Keys {
            set,
            document,
            etag: new_etag,
            max_age,
        } => {
            metrics
                .jwks_fetches
                .with_label_values(&[&id.provider, "success"])
                .inc();
            metrics
                .jwks_keys
                .with_label_values(&[&id.provider])
                .set(set.len() as i64);
            tracing::debug!(provider = %id.provider, keys = set.len(), "jwks loaded");
            store.publish(set, document);
            *etag = new_etag;
            max_age
        }
        Fetched::NotModified { max_age } => {
            metrics
                .jwks_fetches
                .with_label_values(&[&id.provider, "not_modified"])
                .inc();
            store.confirm();
            max_age
        }
    }
}

async fn fetch(
    id: &StoreIdentity,
    client: &reqwest::Client,
    etag: Option<&(String, String)>,
) -> Result<Fetched, String> {
    let url = match &id.source {
        KeySource::JwksUrl(url) => Some(url.clone()),
        KeySource::Discovery(issuer) => Some(discover(issuer, client).await?),
        KeySource::JwksFile(_) | KeySource::HmacSecret(_) | KeySource::None => None,
    };
    let (document, new_etag, max_age) = match (&id.source, url) {
        (_, Some(url)) => {
            let tag = etag.filter(|(u, _)| *u == url).map(|(_, t)| t.as_str());
            match fetch_url(&url, client, tag).await? {
                UrlResult::NotModified { max_age } => return Ok(Fetched::NotModified { max_age }),
                UrlResult::Body {
                    body,
                    etag,
                    max_age,
                } => (body, etag.map(|t| (url, t)), max_age),
            }
        }
        (KeySource::JwksFile(file), None) => {
            let doc = tokio::fs::read(&file.path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", file.path.display()))?;
            (doc, None, None)
        }
        (_, None) => {
            return Err(
                "HMAC secrets and introspection-only providers have nothing to fetch".to_owned(),
            )
        }
    };
    let (set, skipped) = KeySet::from_jwks(&document, &id.algorithms).map_err(|e| e.to_string())?;
    for s in skipped {
        tracing::warn!(provider = %id.provider, index = s.index, kid = ?s.kid, reason = %s.reason, "jwks key skipped");
    }
    Ok(Fetched::Keys {
        set,
        document,
        etag: new_etag,
        max_age,
    })
}

/// Reads the issuer's OIDC metadata and returns its `jwks_uri`, after checking that the
/// metadata names the same issuer (a mismatch means the document is not the issuer's:
/// OpenID Connect Discovery 1.0 §4.3) and that the URI may carry keys (https or loopback).
async fn discover(issuer: &str, client: &reqwest::Client) -> Result<String, String> {
    let url = discovery_url(issuer);
    let UrlResult::Body { body, .. } = fetch_url(&url, client, None).await? else {
        return Err("discovery document: unexpected 304".to_owned());
    };
    metadata_url(&body, issuer, "jwks_uri")
}

enum UrlResult {
    Body {
        body: Vec<u8>,
        etag: Option<String>,
        max_age: Option<Duration>,
    },
    NotModified {
        max_age: Option<Duration>,
    },
}

async fn fetch_url(
    url: &str,
    client: &reqwest::Client,
    etag: Option<&str>,
) -> Result<UrlResult, String> {
    let mut req = client.get(url).timeout(FETCH_TIMEOUT);
    if let Some(tag) = etag {
        req = req.header(IF_NONE_MATCH, tag);
    }
    let mut resp = req.send().await.map_err(|e| format!("fetch failed: {e}"))?;
    let max_age = cache_lifetime(resp.headers());
    if resp.status() == reqwest::StatusCode::NOT_MODIFIED && etag.is_some() {
        return Ok(UrlResult::NotModified { max_age });
    }
    if !resp.status().is_success() {
        return Err(format!("HTTP status {}", resp.status()));
    }
    let new_etag = resp
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 256)
        .map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("read failed: {e}"))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("document larger than {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(UrlResult::Body {
        body,
        etag: new_etag,
        max_age,
    })
}

/// `Cache-Control: max-age=N` → N seconds; `no-store` / `no-cache` → zero (refresh as soon
/// as `jwks_min_refresh` allows); anything else → no opinion.
pub fn cache_lifetime(headers: &http::HeaderMap) -> Option<Duration> {
    let mut lifetime = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return Some(Duration::ZERO);
            }
            if let Some(secs) = lower.strip_prefix("max-age=") {
                if let Ok(secs) = secs.trim_matches('"').parse::<u64>() {
                    lifetime = Some(Duration::from_secs(secs));
                }
            }
        }
    }
    lifetime
}

/// The HTTP client for key fetches: no redirects (a redirect could move key trust to another
/// host), rustls with the platform's roots.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    builder().build()
}

/// As `http_client`, also trusting the CA certificates in `pem`.
pub fn client_with_ca(pem: &[u8]) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = builder();
    for cert in reqwest::Certificate::from_pem_bundle(pem)? {
        b = b.add_root_certificate(cert);
    }
    b.build()
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(FETCH_TIMEOUT)
        .user_agent(concat!("authgate/", env!("CARGO_PKG_VERSION")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn cc(v: &str) -> Option<Duration> {
        let mut h = http::HeaderMap::new();
        h.insert(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        cache_lifetime(&h)
    }

    #[test]
    fn cache_control() {
        assert_eq!(cc("public, max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(cc("max-age=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(cc("no-store"), Some(Duration::ZERO));
        assert_eq!(cc("max-age=600, No-Cache"), Some(Duration::ZERO));
        assert_eq!(cc("public"), None);
        assert_eq!(cc("max-age=soon"), None);
    }
}
