//! A provider's live keys: an `ArcSwapOption<KeySet>` read lock-free by requests, refreshed by
//! one background task per provider.
//!
//! The task is the only fetcher, so an unknown-`kid` refetch is single-flight by
//! construction: requests wake it and wait for the next attempt to finish. It refetches at
//! most once per `refetch_cooldown`, so tokens with invented kids never become a flood
//! against the provider. A failed fetch keeps the last good keys.

use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::{ArcSwapOption, Guard};
use jsonwebtoken::Algorithm;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::jwks::KeySet;
use crate::config::{KeySource, ProviderSettings};
use crate::metrics::Metrics;

/// Largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// Retry delays after a failed fetch.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Time limit of one JWKS fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The identity of a key source: providers with equal identities share one store across
/// config reloads, so a reload does not refetch keys that did not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreIdentity {
    pub provider: String,
    pub source: KeySource,
    pub algorithms: Vec<Algorithm>,
    pub refresh: Duration,
    pub refetch_cooldown: Duration,
}

pub struct ProviderKeys {
    pub identity: StoreIdentity,
    current: ArcSwapOption<KeySet>,
    /// The JWKS document `current` was parsed from, to seed a successor store on reload.
    document: ArcSwapOption<Vec<u8>>,
    /// Bumped after every refresh attempt (fetched, failed or skipped by the cooldown).
    attempts: watch::Sender<u64>,
    wake: Notify,
}

// === impl ProviderKeys ===

impl ProviderKeys {
    /// A store for `provider`, usable at once where possible: an HMAC secret, a `jwks_file`
    /// (read now), or the last good document of `previous`, a store for the same key source
    /// whose other settings changed in a reload (re-parsed with the new allow-list, so a
    /// reload never drops to 503 while the provider is slow or down). Otherwise empty until
    /// the first fetch, and requests get 503 meanwhile.
    pub fn new(provider: &ProviderSettings, previous: Option<&ProviderKeys>) -> Arc<Self> {
        let algs = &provider.algorithms;
        let seed_doc: Option<Arc<Vec<u8>>> = match &provider.key_source {
            KeySource::JwksFile(path) => std::fs::read(path).ok().map(Arc::new),
            KeySource::JwksUrl(_) => previous
                .filter(|p| p.identity.source == provider.key_source)
                .and_then(|p| p.document.load_full()),
            KeySource::HmacSecret(_) => None,
        };
        let (initial, document) = match (&provider.key_source, seed_doc) {
            (KeySource::HmacSecret(secret), _) => {
                (Some(Arc::new(KeySet::from_hmac_secret(secret, algs))), None)
            }
            (_, Some(doc)) => match KeySet::from_jwks(&doc, algs) {
                Ok((set, _)) => (Some(Arc::new(set)), Some(doc)),
                Err(_) => (None, None),
            },
            (_, None) => (None, None),
        };
        Arc::new(Self {
            identity: StoreIdentity::of(provider),
            current: ArcSwapOption::new(initial),
            document: ArcSwapOption::new(document),
            attempts: watch::channel(0).0,
            wake: Notify::new(),
        })
    }

    /// The keys in force now (lock-free).
    pub fn current(&self) -> Guard<Option<Arc<KeySet>>> {
        self.current.load()
    }

    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// Asks the background task for a refetch (a token named an unknown `kid`) and waits
    /// until it has made its next attempt, or `wait` passes.
    pub async fn refetch_and_wait(&self, wait: Duration) {
        let mut rx = self.attempts.subscribe();
        rx.mark_unchanged();
        self.wake.notify_one();
        let _ = tokio::time::timeout(wait, rx.changed()).await;
    }

    fn publish(&self, set: KeySet, document: Vec<u8>) {
        self.document.store(Some(Arc::new(document)));
        self.current.store(Some(Arc::new(set)));
    }

    fn attempt_done(&self) {
        self.attempts.send_modify(|n| *n += 1);
    }

    /// Starts the refresh task on `rt`. It ends when the last `Arc` to this store is dropped
    /// (the provider left the config, or its key source changed).
    pub fn spawn_refresh(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        client: reqwest::Client,
        metrics: Arc<Metrics>,
    ) {
        if matches!(self.identity.source, KeySource::HmacSecret(_)) {
            return;
        }
        let weak = Arc::downgrade(self);
        rt.spawn(refresh_loop(weak, client, metrics));
    }
}

async fn refresh_loop(weak: Weak<ProviderKeys>, client: reqwest::Client, metrics: Arc<Metrics>) {
    let mut backoff = RETRY_MIN;
    loop {
        let Some(store) = weak.upgrade() else { return };
        let id = store.identity.clone();
        let result = fetch_keys(&id, &client).await;
        let last_fetch = Instant::now();
        // After a failure, retry sooner than the refresh interval (1s, 2s, 4s ... 60s).
        let wait = if result.is_ok() {
            backoff = RETRY_MIN;
            id.refresh
        } else {
            let w = backoff.min(id.refresh);
            backoff = (backoff * 2).min(RETRY_MAX);
            w
        };
        record(&store, &id, result, &metrics);
        store.attempt_done();
        // Wait for the refresh interval or a wake-up, without keeping the store alive.
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

fn record(
    store: &ProviderKeys,
    id: &StoreIdentity,
    result: Result<(KeySet, Vec<u8>), String>,
    metrics: &Metrics,
) {
    match result {
        Ok((set, document)) => {
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
        }
        Err(error) => {
            metrics
                .jwks_fetches
                .with_label_values(&[&id.provider, "error"])
                .inc();
            tracing::warn!(
                provider = %id.provider,
                %error,
                keeping_last_good = store.is_loaded(),
                "jwks refresh failed"
            );
        }
    }
}

async fn fetch_keys(
    id: &StoreIdentity,
    client: &reqwest::Client,
) -> Result<(KeySet, Vec<u8>), String> {
    let doc = match &id.source {
        KeySource::JwksUrl(url) => fetch_url(url, client).await?,
        KeySource::JwksFile(path) => tokio::fs::read(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        KeySource::HmacSecret(_) => return Err("HMAC keys are not fetched".to_owned()),
    };
    let (set, skipped) = KeySet::from_jwks(&doc, &id.algorithms).map_err(|e| e.to_string())?;
    for s in skipped {
        tracing::warn!(provider = %id.provider, index = s.index, kid = ?s.kid, reason = %s.reason, "jwks key skipped");
    }
    Ok((set, doc))
}

async fn fetch_url(url: &str, client: &reqwest::Client) -> Result<Vec<u8>, String> {
    let mut resp = client
        .get(url)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("fetch failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP status {}", resp.status()));
    }
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
    Ok(body)
}

/// The HTTP client for key fetches: no redirects (a redirect could move key trust to another
/// host), rustls with the platform's roots.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(FETCH_TIMEOUT)
        .user_agent(concat!("authgate/", env!("CARGO_PKG_VERSION")))
        .build()
}

// === impl StoreIdentity ===

impl StoreIdentity {
    pub fn of(p: &ProviderSettings) -> Self {
        Self {
            provider: p.name.clone(),
            source: p.key_source.clone(),
            algorithms: p.algorithms.clone(),
            refresh: p.jwks_refresh,
            refetch_cooldown: p.jwks_refetch_cooldown,
        }
    }
}
