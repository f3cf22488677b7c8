//! The verified-token cache: a signature check is the dearest part of a request, and the same
//! token usually comes back many times before it expires.
//!
//! Keyed by the SHA-256 of the token (the token itself is never stored), holding the verified
//! claims, bounded in entries and bytes (moka, TinyLFU admission). An entry is used only
//!
//! * for a route that accepts the provider that verified it,
//! * while that provider's keys are the ones it was verified with (`ProviderKeys::generation`
//!   changes whenever the key set's content does) and not stale,
//! * after the time-dependent checks pass again (`exp`, `nbf`, `iat` against now), and the
//!   revocation list, read live, does not name it,
//!
//! and lives at most until the token's `exp` (plus leeway) or `ttl`, whichever is first. The
//! cache belongs to a config snapshot: a config reload starts an empty one.

use std::sync::Arc;
use std::time::Duration;

use moka::notification::RemovalCause;
use moka::sync::Cache;
use prometheus::IntCounter;
use sha2::{Digest, Sha256};

use super::claims::Claims;
pub use crate::config::CacheSettings;
use crate::config::ProviderId;
use crate::metrics::Metrics;

/// SHA-256 of a token.
pub type TokenKey = [u8; 32];

/// One verified token.
#[derive(Debug)]
pub struct Entry {
    pub provider: ProviderId,
    /// `ProviderKeys::generation` read before the keys that verified the token.
    pub generation: u64,
    pub claims: Arc<Claims>,
    /// How long moka keeps it: until `exp` + leeway, at most `ttl`.
    pub lifetime: Duration,
    /// Bytes it is charged for (at least `max_bytes / max_entries`, so both bounds hold).
    pub weight: u32,
}

pub struct TokenCache {
    entries: Cache<TokenKey, Arc<Entry>>,
    settings: CacheSettings,
    hits: IntCounter,
    misses: IntCounter,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("settings", &self.settings)
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

struct ByEntry;

impl moka::Expiry<TokenKey, Arc<Entry>> for ByEntry {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        value: &Arc<Entry>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.lifetime)
    }
}

impl TokenCache {
    /// `None` when the cache is off.
    pub fn new(settings: &CacheSettings, metrics: &Metrics) -> Option<Self> {
        if !settings.enabled {
            return None;
        }
        let size = metrics.token_cache_evictions.with_label_values(&["size"]);
        let expired = metrics
            .token_cache_evictions
            .with_label_values(&["expired"]);
        let entries = Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|_k: &TokenKey, v: &Arc<Entry>| v.weight)
            .expire_after(ByEntry)
            .eviction_listener(move |_k, _v, cause| match cause {
                RemovalCause::Size => size.inc(),
                RemovalCause::Expired => expired.inc(),
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            })
            .build();
        Some(Self {
            entries,
            settings: settings.clone(),
            hits: metrics.token_cache_lookups.with_label_values(&["hit"]),
            misses: metrics.token_cache_lookups.with_label_values(&["miss"]),
        })
    }

    pub fn key(token: &str) -> TokenKey {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The entry for `key`, if any; the caller decides whether it still holds and reports
    /// the outcome with `hit` or `miss`.
    pub fn get(&self, key: &TokenKey) -> Option<Arc<Entry>> {
        self.entries.get(key)
    }

    pub fn hit(&self) {
        self.hits.inc();
    }

    pub fn miss(&self) {
        self.misses.inc();
    }

    /// Caches a token that passed every check. `payload_len`: the size of its encoded
    /// claims; `valid_for`: seconds until `exp` + leeway (`None`: no `exp`).
    pub fn insert(
        &self,
        key: TokenKey,
        provider: ProviderId,
        generation: u64,
        claims: Arc<Claims>,
        payload_len: usize,
        valid_for: Option<f64>,
    ) {
        // `exp` comes from the token: any finite number, 1e300 included. A lifetime that
        // does not fit a `Duration` is longer than `ttl` anyway.
        let lifetime = match valid_for {
            Some(s) if s.is_nan() || s <= 0.0 => return,
            Some(s) => Duration::try_from_secs_f64(s)
                .unwrap_or(Duration::MAX)
                .min(self.settings.ttl),
            None => self.settings.ttl,
        };
        let weight = entry_weight(payload_len, &self.settings);
        self.entries.insert(
            key,
            Arc::new(Entry {
                provider,
                generation,
                claims,
                lifetime,
                weight,
            }),
        );
    }

    /// Entries now, and the bytes they are charged for (moka settles counts lazily).
    pub fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }
}

/// The bytes an entry is charged: an estimate of what it holds (the decoded claims are about
/// 3/4 of their base64, held as a JSON map at roughly twice that, plus key and bookkeeping),
/// but never less than `max_bytes / max_entries`, so that `max_bytes` of weight also means
/// at most `max_entries` entries.
fn entry_weight(payload_len: usize, s: &CacheSettings) -> u32 {
    let estimate = 32 + 256 + (payload_len as u64 * 3 / 4) * 2;
    let floor = s.max_bytes / s.max_entries.max(1);
    estimate.max(floor).min(u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_entries: u64, max_bytes: u64) -> CacheSettings {
        CacheSettings {
            enabled: true,
            max_entries,
            max_bytes,
            ttl: Duration::from_secs(300),
        }
    }

    #[test]
    fn both_bounds_hold() {
        let m = Metrics::new();
        // 1,000 distinct tokens whose claims take `payload_len` bytes.
        let fill = |c: &TokenCache, payload_len| {
            for i in 0..1000u32 {
                let key = TokenCache::key(&i.to_string());
                c.insert(
                    key,
                    ProviderId::new(0),
                    0,
                    Arc::default(),
                    payload_len,
                    Some(60.0),
                );
            }
        };
        // Entry bound: 100 entries in 1 MiB, small tokens.
        let c = TokenCache::new(&settings(100, 1 << 20), &m).unwrap();
        fill(&c, 400);
        let (n, bytes) = c.usage();
        assert!(n <= 100, "{n} entries");
        assert!(bytes <= 1 << 20);
        // Byte bound: large tokens fill 64 KiB long before 10,000 entries.
        let c = TokenCache::new(&settings(10_000, 64 << 10), &m).unwrap();
        fill(&c, 8000);
        let (n, bytes) = c.usage();
        assert!(bytes <= 64 << 10, "{bytes} bytes");
        assert!(n <= (64 << 10) / 12_000 + 1, "{n} entries");
        assert!(
            m.render().windows(5).any(|w| w == b"size\""),
            "evictions counted"
        );
    }

    /// The key is the SHA-256 of the token: expected digests from
    /// `printf %s TOKEN | sha256sum`, not from the code under test.
    #[test]
    fn keys_are_sha256_of_the_token() {
        let hex = |k: TokenKey| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
        let vectors = [
            (
                "a.b.c",
                "845e30448809e2bc8958eb025bfc795235d13b077a53d0c3abbd2385170dc9b8",
            ),
            (
                "a.b.d",
                "8735b2d224f2007c5958549be0c2a02dfceef5671b78d79c884d48262e387d8f",
            ),
            (
                jwt,
                "c6ea33102884abb92ba3283a0f1e30cbfd34adcbe764303ebc20ec8710fca8ae",
            ),
        ];
        for (token, sha256) in vectors {
            let key = TokenCache::key(token);
            assert_eq!(hex(key), sha256, "{token}");
            assert_eq!(key, TokenCache::key(token), "{token}: same token, same key");
            // The token is never stored: not even its first bytes are in the key.
            let head = &token.as_bytes()[..5];
            assert!(!key.windows(head.len()).any(|w| w == head), "{token}");
        }
        // One character apart, two entries: a token never finds another's claims.
        let m = Metrics::new();
        let c = TokenCache::new(&settings(10, 1 << 20), &m).unwrap();
        let (abc, abd) = (TokenCache::key("a.b.c"), TokenCache::key("a.b.d"));
        assert_ne!(abc, abd);
        c.insert(abc, ProviderId::new(3), 0, Arc::default(), 10, Some(60.0));
        assert!(c.get(&abd).is_none());
        assert_eq!(
            c.get(&TokenCache::key("a.b.c")).map(|e| e.provider),
            Some(ProviderId::new(3))
        );
    }

    #[test]
    fn expired_tokens_are_not_kept() {
        let m = Metrics::new();
        let c = TokenCache::new(&settings(10, 1 << 20), &m).unwrap();
        let key = TokenCache::key("a.b.c");
        c.insert(key, ProviderId::new(0), 0, Arc::default(), 10, Some(0.0));
        assert!(c.get(&key).is_none(), "already past exp + leeway");
        c.insert(
            key,
            ProviderId::new(0),
            0,
            Arc::default(),
            10,
            Some(f64::NAN),
        );
        assert!(c.get(&key).is_none(), "no lifetime: not kept");
        // Issue 11: `exp` ≥ 2^64 s once panicked here; such an entry lives `ttl`.
        for far in [2f64.powi(64), 1e300, f64::INFINITY] {
            let k = TokenCache::key(&far.to_string());
            c.insert(k, ProviderId::new(0), 0, Arc::default(), 10, Some(far));
            assert_eq!(
                c.get(&k).map(|e| e.lifetime),
                Some(Duration::from_secs(300))
            );
        }
        c.insert(key, ProviderId::new(0), 0, Arc::default(), 10, Some(0.2));
        assert!(c.get(&key).is_some());
        std::thread::sleep(Duration::from_millis(300));
        assert!(c.get(&key).is_none(), "gone at exp + leeway");
        assert!(TokenCache::new(
            &CacheSettings {
                enabled: false,
                ..settings(10, 10)
            },
            &m
        )
        .is_none());
    }
}
