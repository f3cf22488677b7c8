//! A provider's revocation lists: its `revocation_file`, kept current (polled, a changed
//! content applied once two polls agree, a broken one reported and the last good list
//! kept), and its copy of the fleet store's list (`store::revocations`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::store::revocations::StoreRevocations;
use crate::config::RevocationFile;
use crate::formats::revocation::{RevocationSet, Revocations, Verdict};
use crate::formats::sha256_hex;
use crate::metrics::Metrics;

/// How often the file is checked for changes.
pub const POLL: Duration = Duration::from_secs(2);

/// A provider's lists: a token either one revokes is revoked.
#[derive(Default, Clone)]
pub struct ProviderRevocations {
    pub file: Option<Arc<FileRevocations>>,
    pub store: Option<Arc<StoreRevocations>>,
}

impl ProviderRevocations {
    pub fn is_some(&self) -> bool {
        self.file.is_some() || self.store.is_some()
    }
}

impl Revocations for ProviderRevocations {
    fn verdict(&self, jti: Option<&str>, sub: Option<&str>, iat: Option<f64>) -> Verdict {
        let file = self
            .file
            .as_ref()
            .map_or(Verdict::Clear, |f| f.verdict(jti, sub, iat));
        match (&self.store, file) {
            (_, Verdict::Revoked) | (None, _) => file,
            (Some(store), _) => store.verdict(jti, sub, iat),
        }
    }
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

// === impl FileRevocations ===

impl FileRevocations {
    /// The list for `file`, starting from what the config read (the file is read again
    /// only by `poll`).
    pub fn new(file: &RevocationFile) -> Arc<Self> {
        Arc::new(Self {
            path: file.path.clone(),
            current: ArcSwap::new(file.list.clone()),
            state: std::sync::Mutex::new(FileState {
                applied: file.hash.clone(),
                seen_once: None,
            }),
        })
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

    /// Polls the file every `POLL` until the last `Arc` is dropped (the provider left the
    /// config).
    pub fn spawn_watch(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        provider: String,
        metrics: Arc<Metrics>,
    ) {
        let what = format!("revocation_file of provider {provider}");
        super::poll::spawn(rt, what, POLL, self, move |list: &Self| match list.poll() {
            Ok(true) => {
                metrics
                    .revocation_reloads
                    .with_label_values(&[&provider, "success"])
                    .inc();
                tracing::info!(provider = %provider, file = %list.path.display(), "revocation list reloaded");
            }
            Ok(false) => {}
            Err(error) => {
                metrics
                    .revocation_reloads
                    .with_label_values(&[&provider, "error"])
                    .inc();
                tracing::error!(provider = %provider, %error, "revocation list reload failed; keeping the last good list");
            }
        });
    }
}

impl Revocations for FileRevocations {
    fn verdict(&self, jti: Option<&str>, sub: Option<&str>, iat: Option<f64>) -> Verdict {
        self.current.load().verdict(jti, sub, iat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_applies_when_two_polls_agree() {
        let dir = std::env::temp_dir().join(format!("authgate-rev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.toml");
        std::fs::write(&path, "jti = [\"a\"]").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let list = FileRevocations::new(&RevocationFile {
            path: path.clone(),
            list: Arc::new(RevocationSet::parse(&text).unwrap()),
            hash: sha256_hex(text.as_bytes()),
        });
        assert_eq!(list.poll(), Ok(false));
        std::fs::write(&path, "jti = [\"a\", \"b\"]").unwrap();
        assert_eq!(list.poll(), Ok(false), "seen once");
        assert!(!list.current.load().is_revoked(Some("b"), None, None));
        assert_eq!(list.poll(), Ok(true), "seen twice: applied");
        assert!(list.current.load().is_revoked(Some("b"), None, None));
        std::fs::write(&path, "jti = [").unwrap();
        assert_eq!(list.poll(), Ok(false));
        assert!(list.poll().is_err(), "a stable broken file is reported");
        assert!(
            list.current.load().is_revoked(Some("b"), None, None),
            "and the last good list stays"
        );
        assert_eq!(list.poll(), Ok(false), "reported once");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
