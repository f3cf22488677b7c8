//! A provider's live keys: an `ArcSwapOption<KeySet>` read lock-free by requests, refreshed by
//! one background task per provider (`refresh`).
//!
//! The task is the only fetcher, so an unknown-`kid` refetch is single-flight by
//! construction: requests wake it and wait for the next attempt to finish. It refetches at
//! most once per `refetch_cooldown`, so tokens with invented kids never become a flood
//! against the provider. A failed fetch keeps the last good keys, but only for `max_stale`:
//! keys older than that fail closed (503) until the provider answers again.

mod refresh;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwapOption, Guard};
use jsonwebtoken::Algorithm;
use tokio::sync::{watch, Notify};

use crate::config::{KeySource, ProviderSettings};
use crate::formats::jwks::KeySet;
use crate::metrics::Metrics;

pub use refresh::{cache_lifetime, http_client, FETCH_TIMEOUT, MAX_JWKS_BYTES};

/// The identity of a key source: providers with equal identities share one store across
/// config reloads, so a reload does not refetch keys that did not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreIdentity {
    pub provider: String,
    pub source: KeySource,
    pub algorithms: Vec<Algorithm>,
    pub refresh: Duration,
    pub min_refresh: Duration,
    pub refetch_cooldown: Duration,
    pub max_stale: Duration,
    /// Extra trusted CA certificates (PEM) for https fetches.
    pub ca: Option<Vec<u8>>,
}

pub struct ProviderKeys {
    pub identity: StoreIdentity,
    current: ArcSwapOption<KeySet>,
    /// The JWKS document `current` was parsed from, to seed a successor store on reload.
    document: ArcSwapOption<Vec<u8>>,
    /// When the source last confirmed the keys (a fetch, a 304, a file read), in
    /// milliseconds on a monotonic clock (`monotonic_ms`); 0 before any. Keys older than
    /// `max_stale` are not used. Monotonic: a wall-clock step must not revive stale keys
    /// or expire fresh ones.
    confirmed_at: AtomicU64,
    /// Bumped after each change of the key set's content (never for a refetch of the same
    /// document): cached verifications made with other keys are not used.
    generation: AtomicU64,
    /// Bumped after every refresh attempt (fetched, failed or skipped by the cooldown).
    attempts: watch::Sender<u64>,
    wake: Notify,
}

// === impl ProviderKeys ===

impl ProviderKeys {
    /// A store for `provider`, usable at once where possible: an HMAC secret, a `jwks_file`
    /// (the document the config read), or the last good document of `previous`, a store for
    /// the same key source whose other settings changed in a reload (re-parsed with the new
    /// allow-list, so a reload never drops to 503 while the provider is slow or down).
    /// Otherwise empty until the first fetch, and requests get 503 meanwhile.
    pub fn new(provider: &ProviderSettings, previous: Option<&ProviderKeys>) -> Arc<Self> {
        let algs = &provider.algorithms;
        let seed_doc: Option<Arc<Vec<u8>>> = match &provider.key_source {
            KeySource::JwksFile(file) => Some(file.document.clone()),
            KeySource::JwksUrl(_) | KeySource::Discovery(_) => previous
                .filter(|p| p.identity.source == provider.key_source)
                .and_then(|p| p.document.load_full()),
            KeySource::HmacSecret(_) | KeySource::None => None,
        };
        // A seeded store is as fresh as the store it was seeded from.
        let confirmed_at = match &provider.key_source {
            KeySource::JwksUrl(_) | KeySource::Discovery(_) => previous
                .filter(|p| p.identity.source == provider.key_source)
                .map_or(0, |p| p.confirmed_at.load(Ordering::Relaxed)),
            KeySource::JwksFile(_) | KeySource::HmacSecret(_) => monotonic_ms(),
            // Never loaded: an introspection-only provider has no keys to go stale.
            KeySource::None => 0,
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
            confirmed_at: AtomicU64::new(confirmed_at),
            generation: AtomicU64::new(0),
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

    /// True when the source has not confirmed the keys for `max_stale` (an HMAC secret
    /// never goes stale).
    pub fn is_stale(&self) -> bool {
        if matches!(self.identity.source, KeySource::HmacSecret(_)) {
            return false;
        }
        self.age()
            .is_none_or(|age| age > self.identity.max_stale.as_secs_f64())
    }

    /// Seconds since the source last confirmed the keys; `None` before the first load.
    pub fn age(&self) -> Option<f64> {
        match self.confirmed_at.load(Ordering::Relaxed) {
            0 => None,
            t => Some(monotonic_ms().saturating_sub(t) as f64 / 1000.0),
        }
    }

    /// Usable keys: loaded and not stale.
    pub fn is_usable(&self) -> bool {
        self.is_loaded() && !self.is_stale()
    }

    /// Asks the background task for a refetch (a token named an unknown `kid`) and waits
    /// until it has made its next attempt, or `wait` passes.
    pub async fn refetch_and_wait(&self, wait: Duration) {
        let mut rx = self.attempts.subscribe();
        rx.mark_unchanged();
        self.wake.notify_one();
        let _ = tokio::time::timeout(wait, rx.changed()).await;
    }

    /// The key-set generation. Read it before `current()`: a cached verification is then
    /// tagged with a generation no newer than the keys that made it.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn publish(&self, set: KeySet, document: Vec<u8>) {
        let same = self
            .document
            .load()
            .as_deref()
            .is_some_and(|d| *d == document);
        if !same {
            self.document.store(Some(Arc::new(document)));
            self.current.store(Some(Arc::new(set)));
            // After the store: whoever sees the new generation sees the new keys.
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        self.confirm();
    }

    fn confirm(&self) {
        self.confirmed_at.store(monotonic_ms(), Ordering::Relaxed);
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
        if matches!(
            self.identity.source,
            KeySource::HmacSecret(_) | KeySource::None
        ) {
            return;
        }
        // A private CA gets a client of its own; everyone else shares one pool.
        let client = match &self.identity.ca {
            None => client,
            Some(pem) => match refresh::client_with_ca(pem) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(provider = %self.identity.provider, error = %e, "cannot use jwks_ca_file; keys will not load");
                    return;
                }
            },
        };
        let weak = Arc::downgrade(self);
        rt.spawn(refresh::run(weak, client, metrics));
    }
}

/// Milliseconds on a monotonic clock shared by every store of the process (never 0).
fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    start.elapsed().as_millis() as u64 + 1
}

// === impl StoreIdentity ===

impl StoreIdentity {
    pub fn of(p: &ProviderSettings) -> Self {
        Self {
            provider: p.name.clone(),
            source: p.key_source.clone(),
            algorithms: p.algorithms.clone(),
            refresh: p.jwks_refresh,
            min_refresh: p.jwks_min_refresh,
            refetch_cooldown: p.jwks_refetch_cooldown,
            max_stale: p.jwks_max_stale,
            ca: p.jwks_ca.clone(),
        }
    }
}
