//! DPoP proof replay: a proof's `jti` may be used once within its window (RFC 9449 §11.1).
//! Behind a trait, so a store shared by a fleet (issue 16) can take over from this one.
//!
//! The store remembers each proof's `iat`, and forgets it only once the widest window any
//! provider accepts (`window_ms`, given on every call) has passed it. What it has forgotten
//! it knows by a horizon: a proof with an `iat` at or before the latest `iat` it let go is
//! refused as a replay, whatever the window is now. A reload that widens `dpop_max_age`, or
//! two providers with different windows, can then never reopen a forgotten proof.
//!
//! The in-memory store is bounded and fails closed: when it is full of proofs whose window
//! has not ended, a new proof is refused (`Full`), never admitted by forgetting an open one.
//! Sixteen shards, each behind its own short lock, keep requests from queueing on one.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// The store cannot record another proof now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the replay store is full")]
pub struct Full;

/// Where proofs are remembered until their window ends.
pub trait ReplayGuard: Send + Sync {
    /// `Ok(true)`: the first use of `key`, remembered from now on; `Ok(false)`: a replay,
    /// or a proof older than what the store can vouch for. `iat_ms` is the proof's `iat`,
    /// `now_ms` the clock the `iat` was checked against (milliseconds since the epoch);
    /// `window_ms` how long after its `iat` any provider still accepts a proof.
    fn first_use(
        &self,
        key: &ProofKey,
        iat_ms: u64,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<bool, Full>;

    /// Proofs held now, where the store can tell (a gauge).
    fn entries(&self) -> Option<usize> {
        None
    }
}

/// SHA-256 of the proof's key thumbprint and `jti`: a `jti` is scoped to the key that
/// signed it, and the store holds no client data.
pub type ProofKey = [u8; 32];

pub fn proof_key(jkt: &str, jti: &str) -> ProofKey {
    let mut h = Sha256::new();
    h.update(jkt.as_bytes());
    h.update([0]);
    h.update(jti.as_bytes());
    h.finalize().into()
}

const SHARDS: usize = 16;

pub struct MemoryReplay {
    shards: [Mutex<Shard>; SHARDS],
    per_shard: usize,
}

#[derive(Default)]
struct Shard {
    /// Each remembered proof's `iat`.
    iat: HashMap<ProofKey, u64>,
    /// The smallest `iat` held: a full shard is not swept again before it can expire
    /// (under a flood each refusal would otherwise walk the whole shard).
    oldest: u64,
    /// The latest `iat` this shard forgot: proofs at or before it are not vouched for.
    horizon: u64,
}

impl MemoryReplay {
    /// At most `max_entries` proofs remembered at once (fewer when the shards fill
    /// unevenly).
    pub fn new(max_entries: usize) -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            per_shard: (max_entries / SHARDS).max(1),
        }
    }

    /// Proofs remembered now (expired ones included until a sweep).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).iat.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReplayGuard for MemoryReplay {
    fn entries(&self) -> Option<usize> {
        Some(self.len())
    }

    fn first_use(
        &self,
        key: &ProofKey,
        iat_ms: u64,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<bool, Full> {
        let expired = |iat: u64| iat.saturating_add(window_ms) <= now_ms;
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if iat_ms <= shard.horizon {
            return Ok(false);
        }
        if let Some(&seen) = shard.iat.get(key) {
            if !expired(seen) {
                return Ok(false);
            }
            // A `jti` used again after its first proof's window: only a later proof with
            // it is new (the same proof at its window's very edge is a replay).
            shard.iat.remove(key);
            shard.horizon = shard.horizon.max(seen);
            if iat_ms <= shard.horizon {
                return Ok(false);
            }
        }
        if shard.iat.len() >= self.per_shard {
            if !expired(shard.oldest) {
                return Err(Full);
            }
            let mut horizon = shard.horizon;
            shard.iat.retain(|_, &mut iat| {
                let keep = !expired(iat);
                if !keep {
                    horizon = horizon.max(iat);
                }
                keep
            });
            shard.horizon = horizon;
            shard.oldest = shard.iat.values().copied().min().unwrap_or(u64::MAX);
            if shard.iat.len() >= self.per_shard {
                return Err(Full);
            }
            if iat_ms <= shard.horizon {
                return Ok(false);
            }
        }
        if shard.iat.is_empty() || iat_ms < shard.oldest {
            shard.oldest = iat_ms;
        }
        shard.iat.insert(*key, iat_ms);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 300_000;

    #[test]
    fn once_per_window() {
        let r = MemoryReplay::new(100);
        let k = proof_key("jkt-a", "j-1");
        assert_eq!(r.first_use(&k, 1_000, 1_000, W), Ok(true));
        assert_eq!(r.first_use(&k, 1_000, 2_000, W), Ok(false), "a replay");
        assert_eq!(
            r.first_use(&k, 1_000, 300_999, W),
            Ok(false),
            "still in its window"
        );
        // The same proof at its window's very edge: still a replay.
        assert_eq!(r.first_use(&k, 1_000, 301_000, W), Ok(false), "at the edge");
        // The same jti in a later proof, once the first one's window is over: new, once.
        let k = proof_key("jkt-a", "j-2");
        assert_eq!(r.first_use(&k, 1_000, 1_000, W), Ok(true));
        assert_eq!(r.first_use(&k, 301_000, 301_000, W), Ok(true));
        assert_eq!(r.first_use(&k, 301_000, 301_001, W), Ok(false));
        // The same jti under another key is another proof.
        assert_eq!(
            r.first_use(&proof_key("jkt-b", "j-1"), 1_000, 2_000, W),
            Ok(true)
        );
        assert_ne!(proof_key("ab", "c"), proof_key("a", "bc"));
    }

    /// A flood of fresh proofs: the store stays within its bound and refuses the rest
    /// instead of forgetting a proof whose window is open; expired ones make room again.
    #[test]
    fn bounded_and_fails_closed() {
        let r = MemoryReplay::new(160);
        let mut refused = 0;
        for i in 0..5_000 {
            match r.first_use(&proof_key("k", &i.to_string()), 1_000, 1_000, W) {
                Ok(true) => {}
                Ok(false) => panic!("{i} is no replay"),
                Err(Full) => refused += 1,
            }
        }
        assert!(r.len() <= 160, "{}", r.len());
        assert_eq!(refused, 5_000 - r.len());
        // Every remembered proof is still refused as a replay: nothing was evicted.
        let remembered = (0..5_000)
            .filter(|i| r.first_use(&proof_key("k", &i.to_string()), 1_000, 2_000, W) == Ok(false))
            .count();
        assert!(remembered >= r.len());
        // Once their window ends there is room again.
        assert_eq!(
            r.first_use(&proof_key("k", "late"), 301_000, 301_000, W),
            Ok(true)
        );
    }

    /// A proof forgotten under a short window is not taken again when the window grows (a
    /// reload raising `dpop_max_age`, a provider with a longer one): the horizon refuses it.
    #[test]
    fn a_wider_window_never_reopens_a_forgotten_proof() {
        let r = MemoryReplay::new(16);
        let short = 10_000;
        // Fill one shard (keys sharing a first byte) and let its proofs expire.
        let keys: Vec<ProofKey> = (0u32..)
            .map(|i| proof_key("k", &i.to_string()))
            .filter(|k| k[0] % 16 == 0)
            .take(2)
            .collect();
        assert_eq!(r.first_use(&keys[0], 1_000, 1_000, short), Ok(true));
        // Full (one per shard); the first proof's window is over: it is swept.
        assert_eq!(r.first_use(&keys[1], 12_000, 12_000, short), Ok(true));
        // Now a provider accepts 60 s: the first proof is within that, and still refused.
        assert_eq!(r.first_use(&keys[0], 1_000, 13_000, 60_000), Ok(false));
        // Without a sweep, a widened window keeps the entry alive.
        let r = MemoryReplay::new(1_000);
        let k = proof_key("k", "x");
        assert_eq!(r.first_use(&k, 1_000, 1_000, short), Ok(true));
        assert_eq!(r.first_use(&k, 1_000, 20_000, 60_000), Ok(false));
    }
}
