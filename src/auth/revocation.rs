//! Token revocation: revoked `jti`s, and per `sub` a "not before" instant (logout, role
//! change: every token of that subject issued before it is refused).
//!
//! `Revocations` is the small trait a request asks; `FileRevocations` implements it from a
//! TOML file, re-read when its content changes and kept at the last good version when a new
//! one does not parse. A store shared by many replicas (e.g. Redis) would implement the same
//! trait with a local, lock-free copy refreshed in the background: the request path must
//! not wait on the network (see README, "Revocation").
//!
//! ```toml
//! jti = ["4f1c0d", "b7e9aa"]
//! [subjects]
//! alice = "2026-11-23T10:00:00Z"   # RFC 3339, or Unix seconds
//! bob = 1795430000
//! ```

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Deserialize;

use super::claims::Claims;
use crate::config::sha256_hex;
use crate::metrics::Metrics;

/// How often the file is checked for changes.
pub const POLL: Duration = Duration::from_secs(2);

/// Asked once per verified token; must answer from memory, without blocking.
pub trait Revocations: Send + Sync {
    /// True when the token is revoked. `iat` is the token's issue time (Unix seconds).
    fn is_revoked(&self, jti: Option<&str>, sub: Option<&str>, iat: Option<f64>) -> bool;
}

/// One parsed revocation list.
#[derive(Debug, Default, PartialEq)]
pub struct RevocationSet {
    jtis: HashSet<String>,
    /// `sub` → Unix seconds; tokens of that subject issued before are revoked.
    not_before: HashMap<String, f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevocations {
    #[serde(default)]
    jti: Vec<String>,
    #[serde(default)]
    subjects: HashMap<String, RawInstant>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawInstant {
    Unix(i64),
    Rfc3339(String),
}

/// The file-backed list of one provider.
pub struct FileRevocations {
    pub path: PathBuf,
    current: ArcSwap<RevocationSet>,
    /// Hashes of the content in force and of a newer content seen once. Held across read,
    /// parse and store, so two reloads never interleave.
    state: std::sync::Mutex<FileState>,
}

struct FileState {
    applied: String,
    /// A new content is applied only once two polls in a row read it: a file being
    /// rewritten in place is never half-read into force.
    seen_once: Option<String>,
}

// === impl RevocationSet ===

impl RevocationSet {
    /// Parses the file format above; errors name the problem.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawRevocations =
            toml::from_str(text).map_err(|e| e.message().trim().to_owned())?;
        let mut not_before = HashMap::new();
        for (sub, at) in raw.subjects {
            let secs = match at {
                RawInstant::Unix(s) => s as f64,
                RawInstant::Rfc3339(s) => humantime::parse_rfc3339(&s)
                    .map_err(|e| format!("subjects.{sub}: {s:?} is not an RFC 3339 instant: {e}"))?
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|_| format!("subjects.{sub}: before 1970"))?
                    .as_secs_f64(),
            };
            not_before.insert(sub, secs);
        }
        Ok(Self {
            jtis: raw.jti.into_iter().collect(),
            not_before,
        })
    }

    pub fn len(&self) -> usize {
        self.jtis.len() + self.not_before.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Revocations for RevocationSet {
    fn is_revoked(&self, jti: Option<&str>, sub: Option<&str>, iat: Option<f64>) -> bool {
        if jti.is_some_and(|j| self.jtis.contains(j)) {
            return true;
        }
        match sub.and_then(|s| self.not_before.get(s)) {
            // Without `iat` the token cannot show it was issued after: refused.
            Some(&cutoff) => iat.is_none_or(|iat| iat < cutoff),
            None => false,
        }
    }
}

// === impl FileRevocations ===

impl FileRevocations {
    /// Loads `path` now; an unreadable or invalid file is an error (at start and reload the
    /// config refuses it).
    pub fn load(path: &Path) -> Result<Arc<Self>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let set = RevocationSet::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Arc::new(Self {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(set),
            state: std::sync::Mutex::new(FileState {
                applied: sha256_hex(text.as_bytes()),
                seen_once: None,
            }),
        }))
    }

    /// One poll: `Ok(true)` when a new list came into force. A changed content is applied
    /// when the previous poll read the same content; one that does not parse is reported
    /// (once stable) and the previous list stays.
    pub fn poll(&self) -> Result<bool, String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let hash = sha256_hex(text.as_bytes());
        if hash == state.applied {
            state.seen_once = None;
            return Ok(false);
        }
        if state.seen_once.as_deref() != Some(hash.as_str()) {
            state.seen_once = Some(hash);
            return Ok(false);
        }
        let set = RevocationSet::parse(&text).map_err(|e| format!("{}: {e}", self.path.display()));
        // Stable content is reported once, whether it applied or not.
        state.applied = hash;
        state.seen_once = None;
        self.current.store(Arc::new(set?));
        Ok(true)
    }

    pub fn entries(&self) -> usize {
        self.current.load().len()
    }

    /// Polls the file until the last `Arc` is dropped (the provider left the config).
    pub fn spawn_watch(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        provider: String,
        metrics: Arc<Metrics>,
    ) {
        let weak: Weak<Self> = Arc::downgrade(self);
        rt.spawn(async move {
            loop {
                tokio::time::sleep(POLL).await;
                let Some(me) = weak.upgrade() else { return };
                let path = me.path.clone();
                let result = tokio::task::spawn_blocking(move || me.poll()).await;
                match result {
                    Ok(Ok(true)) => {
                        metrics.revocation_reloads.with_label_values(&[&provider, "success"]).inc();
                        tracing::info!(provider = %provider, file = %path.display(), "revocation list reloaded");
                    }
                    Ok(Ok(false)) => {}
                    Ok(Err(error)) => {
                        metrics.revocation_reloads.with_label_values(&[&provider, "error"]).inc();
                        tracing::error!(provider = %provider, %error, "revocation list reload failed; keeping the last good list");
                    }
                    // The runtime is shutting down.
                    Err(e) if e.is_cancelled() => return,
                    Err(e) => {
                        tracing::error!(provider = %provider, error = %e, "revocation poll failed; retrying");
                    }
                }
            }
        });
    }
}

impl Revocations for FileRevocations {
    fn is_revoked(&self, jti: Option<&str>, sub: Option<&str>, iat: Option<f64>) -> bool {
        self.current.load().is_revoked(jti, sub, iat)
    }
}

/// Asks `list` about a verified token's claims. A `jti` or `sub` that is a number is
/// compared as its JSON text; one of another type cannot be matched, so it is refused.
pub fn check(list: &dyn Revocations, claims: &Claims) -> bool {
    let id = |k: &str| -> Result<Option<String>, ()> {
        match claims.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(()),
        }
    };
    let (Ok(jti), Ok(sub)) = (id("jti"), id("sub")) else {
        return true;
    };
    let iat = claims.get("iat").and_then(serde_json::Value::as_f64);
    list.is_revoked(jti.as_deref(), sub.as_deref(), iat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_answers() {
        let set = RevocationSet::parse(
            "jti = [\"j1\"]\n[subjects]\nalice = \"2026-01-01T00:00:00Z\"\nbob = 1000\n",
        )
        .unwrap();
        let cutoff = 1_767_225_600.0; // 2026-01-01T00:00:00Z
        assert!(set.is_revoked(Some("j1"), None, None));
        assert!(!set.is_revoked(Some("j2"), Some("carol"), Some(1.0)));
        assert!(set.is_revoked(None, Some("alice"), Some(cutoff - 1.0)));
        assert!(!set.is_revoked(None, Some("alice"), Some(cutoff)));
        assert!(
            set.is_revoked(None, Some("alice"), None),
            "no iat: cannot prove it is newer"
        );
        assert!(set.is_revoked(Some("x"), Some("bob"), Some(999.5)));
        assert!(!set.is_revoked(Some("x"), Some("bob"), Some(1000.0)));
    }

    #[test]
    fn odd_claim_types() {
        let set = RevocationSet::parse("jti = [\"42\"]\n").unwrap();
        let c = |v: serde_json::Value| v.as_object().cloned().unwrap();
        assert!(
            check(&set, &c(serde_json::json!({"jti": 42}))),
            "a numeric jti compares as text"
        );
        assert!(
            check(&set, &c(serde_json::json!({"jti": ["42"]}))),
            "an array jti cannot be matched: refused"
        );
        assert!(!check(
            &set,
            &c(serde_json::json!({"jti": "43", "sub": "x"}))
        ));
    }

    #[test]
    fn a_change_applies_when_two_polls_agree() {
        let dir = std::env::temp_dir().join(format!("authgate-rev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.toml");
        std::fs::write(&path, "jti = [\"a\"]").unwrap();
        let list = FileRevocations::load(&path).unwrap();
        assert_eq!(list.poll(), Ok(false));
        std::fs::write(&path, "jti = [\"a\", \"b\"]").unwrap();
        assert_eq!(list.poll(), Ok(false), "seen once");
        assert!(!list.is_revoked(Some("b"), None, None));
        assert_eq!(list.poll(), Ok(true), "seen twice: applied");
        assert!(list.is_revoked(Some("b"), None, None));
        std::fs::write(&path, "jti = [").unwrap();
        assert_eq!(list.poll(), Ok(false));
        assert!(list.poll().is_err(), "a stable broken file is reported");
        assert!(
            list.is_revoked(Some("b"), None, None),
            "and the last good list stays"
        );
        assert_eq!(list.poll(), Ok(false), "reported once");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_are_clear() {
        assert!(RevocationSet::parse("jtis = []")
            .unwrap_err()
            .contains("unknown field"));
        let e = RevocationSet::parse("[subjects]\nalice = \"yesterday\"").unwrap_err();
        assert!(
            e.contains("subjects.alice") && e.contains("RFC 3339"),
            "{e}"
        );
        assert_eq!(RevocationSet::parse("").unwrap(), RevocationSet::default());
    }
}
