//! The introspection answer cache of one provider: what its endpoint said about tokens,
//! keyed by the token's SHA-256 (the token itself is never stored).
//!
//! * An **active** answer holds the token's claims, not a decision: every request checks
//!   them again (`exp`, `nbf`, `iat`, issuer, audience, revocation, then the route's scopes
//!   and claim rules), so an answer cached for one route never grants another route
//!   anything (ory/oathkeeper#743). It lives until the token's `exp` or `ttl`, whichever is
//!   first, counted from when the endpoint answered: a lookup never extends it
//!   (ory/oathkeeper#968), and a new answer is only asked for once it is gone.
//! * An **inactive** answer is remembered for `negative_ttl`, so a refused token coming
//!   back does not cost a call each time.
//!
//! Both are bounded in entries, the active one in bytes too (moka, TinyLFU admission), so a
//! flood of invented tokens cannot grow memory (zmartzone/lua-resty-openidc#523).

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use serde_json::Value;

use super::cache::TokenKey;
use super::claims::Claims;
use crate::config::IntrospectionSettings;

/// A cached answer, as a lookup returns it.
#[derive(Debug, Clone)]
pub enum Lookup {
    Active(Arc<Claims>),
    Inactive,
}

struct Active {
    claims: Arc<Claims>,
    lifetime: Duration,
    weight: u32,
}

pub struct IntrospectionCache {
    active: Cache<TokenKey, Arc<Active>>,
    inactive: Cache<TokenKey, ()>,
    ttl: Duration,
    min_weight: u64,
}

struct ByEntry;

impl moka::Expiry<TokenKey, Arc<Active>> for ByEntry {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        value: &Arc<Active>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.lifetime)
    }

    /// A new answer for a token replaces the old one with its own lifetime, never the old
    /// entry's remainder (nor an extension of it).
    fn expire_after_update(
        &self,
        _key: &TokenKey,
        value: &Arc<Active>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.lifetime)
    }
}

impl IntrospectionCache {
    pub fn new(s: &IntrospectionSettings) -> Self {
        let active = Cache::builder()
            .max_capacity(s.cache_max_bytes)
            .weigher(|_k: &TokenKey, v: &Arc<Active>| v.weight)
            .expire_after(ByEntry)
            .build();
        let inactive = Cache::builder()
            .max_capacity(s.cache_max_entries)
            .time_to_live(s.negative_ttl)
            .build();
        Self {
            active,
            inactive,
            ttl: s.cache_ttl,
            min_weight: s.cache_max_bytes / s.cache_max_entries.max(1),
        }
    }

    pub fn get(&self, key: &TokenKey) -> Option<Lookup> {
        if let Some(a) = self.active.get(key) {
            return Some(Lookup::Active(a.claims.clone()));
        }
        self.inactive.get(key).map(|()| Lookup::Inactive)
    }

    /// Keeps an active answer until its `exp` (seconds since the epoch), at most `ttl`. A
    /// zero `ttl` keeps nothing.
    pub fn insert_active(&self, key: TokenKey, claims: Arc<Claims>, now: f64) {
        let until_exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_f64)
            .map(|exp| exp - now);
        let lifetime = match until_exp {
            Some(s) if s.is_nan() || s <= 0.0 => return,
            Some(s) => Duration::try_from_secs_f64(s)
                .unwrap_or(Duration::MAX)
                .min(self.ttl),
            None => self.ttl,
        };
        if lifetime.is_zero() {
            return;
        }
        // What the parsed claims take in memory (an answer of many small values costs ten
        // times its JSON), plus key and bookkeeping; never less than max_bytes /
        // max_entries, so both bounds hold.
        let estimate = 32 + 256 + claims.iter().map(|(k, v)| entry_bytes(k, v)).sum::<u64>();
        let weight = estimate.max(self.min_weight).min(u64::from(u32::MAX)) as u32;
        self.inactive.invalidate(&key);
        self.active.insert(
            key,
            Arc::new(Active {
                claims,
                lifetime,
                weight,
            }),
        );
    }

    pub fn insert_inactive(&self, key: TokenKey) {
        self.active.invalidate(&key);
        self.inactive.insert(key, ());
    }

    /// (active entries, their bytes, inactive entries), settled first.
    pub fn usage(&self) -> (u64, u64, u64) {
        self.active.run_pending_tasks();
        self.inactive.run_pending_tasks();
        (
            self.active.entry_count(),
            self.active.weighted_size(),
            self.inactive.entry_count(),
        )
    }
}

/// Bytes one JSON value takes once parsed (`serde_json::Value` and what it owns), close
/// enough to bound memory: the enum itself, string and vector buffers, map entries.
fn value_bytes(v: &Value) -> u64 {
    const VALUE: u64 = std::mem::size_of::<Value>() as u64;
    VALUE
        + match v {
            Value::String(s) => s.capacity() as u64,
            Value::Array(a) => {
                (a.capacity() - a.len()) as u64 * VALUE + a.iter().map(value_bytes).sum::<u64>()
            }
            Value::Object(m) => m.iter().map(|(k, v)| entry_bytes(k, v)).sum(),
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
}

/// A map entry: its key, its value, and the tree node's share.
fn entry_bytes(key: &str, v: &Value) -> u64 {
    const NODE: u64 = 48;
    NODE + key.len() as u64 + value_bytes(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::cache::TokenCache;
    use crate::config::{ClientAuth, IntrospectionEndpoint};

    fn settings(ttl: u64, entries: u64) -> IntrospectionSettings {
        IntrospectionSettings {
            endpoint: IntrospectionEndpoint::Url("http://127.0.0.1:1/i".into()),
            client_id: "gw".into(),
            client_auth: ClientAuth::SecretBasic(b"s".to_vec()),
            token_type_hint: None,
            timeout: Duration::from_secs(1),
            ca: None,
            signed_response: false,
            cache_ttl: Duration::from_secs(ttl),
            negative_ttl: Duration::from_secs(5),
            cache_max_entries: entries,
            cache_max_bytes: 1 << 20,
            max_in_flight: 4,
        }
    }

    fn claims(exp: f64) -> Arc<Claims> {
        let serde_json::Value::Object(m) = serde_json::json!({ "exp": exp }) else {
            unreachable!()
        };
        Arc::new(m)
    }

    #[test]
    fn lifetimes() {
        let c = IntrospectionCache::new(&settings(300, 100));
        let now = 1000.0;
        let k = |s: &str| TokenCache::key(s);
        c.insert_active(k("a"), claims(now + 60.0), now);
        assert!(matches!(c.get(&k("a")), Some(Lookup::Active(_))));
        // Past exp, or no lifetime: not kept.
        c.insert_active(k("b"), claims(now - 1.0), now);
        assert!(c.get(&k("b")).is_none());
        // No numeric `exp` (JSON has no NaN: it is null): kept for ttl; using it checks the
        // claims again, and a malformed or missing `exp` fails there.
        c.insert_active(k("c"), claims(f64::NAN), now);
        assert_eq!(
            c.active.get(&k("c")).unwrap().lifetime,
            Duration::from_secs(300)
        );
        // exp far away: ttl bounds it.
        c.insert_active(k("d"), claims(1e300), now);
        assert_eq!(
            c.active.get(&k("d")).unwrap().lifetime,
            Duration::from_secs(300)
        );
        assert_eq!(
            c.active.get(&k("a")).unwrap().lifetime,
            Duration::from_secs(60)
        );
        // An inactive answer replaces an active one, and the other way round.
        c.insert_inactive(k("a"));
        assert!(matches!(c.get(&k("a")), Some(Lookup::Inactive)));
        c.insert_active(k("a"), claims(now + 60.0), now);
        assert!(matches!(c.get(&k("a")), Some(Lookup::Active(_))));
        // ttl 0: nothing is kept.
        let off = IntrospectionCache::new(&settings(0, 100));
        off.insert_active(k("a"), claims(now + 60.0), now);
        assert!(off.get(&k("a")).is_none());
    }

    #[test]
    fn bounded() {
        let c = IntrospectionCache::new(&settings(300, 50));
        for i in 0..2000u32 {
            c.insert_inactive(TokenCache::key(&i.to_string()));
            c.insert_active(TokenCache::key(&format!("a{i}")), claims(1e10), 1000.0);
        }
        let (active, bytes, inactive) = c.usage();
        assert!(active <= 50, "{active}");
        // An answer of many small values is charged for what it takes parsed, about ten
        // times its JSON (the attack of issue 14's review: 60 KB of `[0,0,...]`).
        let serde_json::Value::Object(big) =
            serde_json::json!({ "exp": 1e10, "x": vec![0; 20_000] })
        else {
            unreachable!()
        };
        let json_len = serde_json::to_vec(&big).unwrap().len() as u64;
        let weight = 32 + 256 + big.iter().map(|(k, v)| entry_bytes(k, v)).sum::<u64>();
        assert!(
            weight > 10 * json_len,
            "{weight} for {json_len} bytes of JSON"
        );
        assert!(bytes <= 1 << 20, "{bytes}");
        assert!(inactive <= 50, "{inactive}");
    }
}
