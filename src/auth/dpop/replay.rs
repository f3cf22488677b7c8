//! DPoP proof replay: a proof's `jti` may be used once within its window (RFC 9449 §11.1).
//! Behind a trait, so a store shared by a fleet (issue 16) can take over from this one.
//!
//! The in-memory store is bounded and fails closed: when it is full of proofs whose window
//! has not ended, a new proof is refused (`Full`), never admitted by forgetting an old one
//! (an evicted `jti` could be replayed). Sixteen shards, each behind its own short lock,
//! keep requests from queueing on one.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// The store cannot record another proof now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the replay store is full")]
pub struct Full;

/// Where proofs are remembered until their window ends.
pub trait ReplayGuard: Send + Sync {
    /// `Ok(true)`: the first use of `key`, now remembered until `until_ms`; `Ok(false)`: a
    /// replay. Times are milliseconds on one monotonic clock the caller keeps.
    fn first_use(&self, key: &ProofKey, now_ms: u64, until_ms: u64) -> Result<bool, Full>;
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
    until: HashMap<ProofKey, u64>,
    /// No entry expires before this: a full shard is not swept again until then (under a
    /// flood each refusal would otherwise walk the whole shard).
    earliest: u64,
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
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).until.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReplayGuard for MemoryReplay {
    fn first_use(&self, key: &ProofKey, now_ms: u64, until_ms: u64) -> Result<bool, Full> {
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if shard.until.get(key).is_some_and(|&until| until > now_ms) {
            return Ok(false);
        }
        if shard.until.len() >= self.per_shard {
            if now_ms < shard.earliest {
                return Err(Full);
            }
            shard.until.retain(|_, until| *until > now_ms);
            shard.earliest = shard.until.values().copied().min().unwrap_or(u64::MAX);
            if shard.until.len() >= self.per_shard {
                return Err(Full);
            }
        }
        if shard.until.is_empty() || until_ms < shard.earliest {
            shard.earliest = until_ms;
        }
        shard.until.insert(*key, until_ms);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_window() {
        let r = MemoryReplay::new(100);
        let k = proof_key("jkt-a", "j-1");
        assert_eq!(r.first_use(&k, 1_000, 301_000), Ok(true));
        assert_eq!(r.first_use(&k, 2_000, 302_000), Ok(false), "a replay");
        assert_eq!(
            r.first_use(&k, 300_999, 600_000),
            Ok(false),
            "still in its window"
        );
        assert_eq!(
            r.first_use(&k, 301_000, 601_000),
            Ok(true),
            "the window ended"
        );
        // The same jti under another key is another proof.
        assert_eq!(
            r.first_use(&proof_key("jkt-b", "j-1"), 2_000, 302_000),
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
            match r.first_use(&proof_key("k", &i.to_string()), 1_000, 301_000) {
                Ok(true) => {}
                Ok(false) => panic!("{i} is no replay"),
                Err(Full) => refused += 1,
            }
        }
        assert!(r.len() <= 160, "{}", r.len());
        assert_eq!(refused, 5_000 - r.len());
        // Every remembered proof is still refused as a replay: nothing was evicted.
        let remembered = (0..5_000)
            .filter(|i| r.first_use(&proof_key("k", &i.to_string()), 2_000, 302_000) == Ok(false))
            .count();
        assert_eq!(remembered, r.len());
        // Once their window ends there is room again.
        assert_eq!(
            r.first_use(&proof_key("k", "late"), 301_000, 601_000),
            Ok(true)
        );
    }
}
