//! Live reload: the config file's directory is watched (a Kubernetes ConfigMap update swaps a
//! `..data` symlink, and a watch on the file itself dies after the first such swap; editors
//! write a temp file and rename it), SIGHUP forces a reload, and a slow poll backs both up.
//! Bursts are debounced and unchanged content (same SHA-256) is skipped. Every path ends in
//! `Reloader::reload`: load → build → one `ArcSwap` store, or keep the old config and say why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::State;
use crate::config::{load_file, Config, ConfigErrors};
use crate::formats::sha256_hex;

/// Quiet time after the last file event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Safety-net poll interval, for file systems whose events get lost.
const POLL: Duration = Duration::from_secs(10);

pub struct Reloader {
    path: PathBuf,
    state: Arc<State>,
    /// The last failure reported: the config file's hash and the problem. Also serializes
    /// reloads (file event, SIGHUP, poll). Never taken by requests.
    last_failed: Mutex<Option<(Option<String>, String)>>,
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A change in the config file's directory (debounced).
    File,
    /// SIGHUP: reload even a broken file already reported.
    Sighup,
    /// The safety-net poll: quiet when nothing changed.
    Poll,
}

impl Trigger {
    /// The log's `trigger` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Sighup => "sighup",
            Self::Poll => "poll",
        }
    }
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied,
    Unchanged,
    Failed,
}

// === impl Reloader ===

impl Reloader {
    pub fn new(path: PathBuf, state: Arc<State>) -> Arc<Self> {
        Arc::new(Self {
            path,
            state,
            last_failed: Mutex::new(None),
        })
    }

    pub fn reload(&self, trigger: Trigger) -> ReloadOutcome {
        let mut last_failed = self.last_failed.lock().unwrap_or_else(|p| p.into_inner());
        let metrics = &self.state.metrics;
        let current = self.state.load();
        let file_hash = std::fs::read(&self.path)
            .ok()
            .map(|bytes| sha256_hex(&bytes));
        // Skip the build when the bytes are those running, unless the config reads secrets or
        // CAs from other files (only a build sees those change).
        let reads_secrets = current.config.fingerprint != current.config.content_hash;
        if !reads_secrets && file_hash.as_deref() == Some(current.config.content_hash.as_str()) {
            *last_failed = None;
            if trigger != Trigger::Poll {
                metrics
                    .config_reloads
                    .with_label_values(&["unchanged"])
                    .inc();
            }
            return ReloadOutcome::Unchanged;
        }
        // A failure already reported (same file, same problem) stays quiet, unless a SIGHUP
        // asks again: the poll runs every few seconds and one save is several events. The
        // build still runs, so a fixed secret or CA file is picked up without a config edit.
        let mut failed = |report: String, log: &dyn Fn(&str)| {
            let seen = Some((file_hash.clone(), report.clone()));
            if trigger != Trigger::Sighup && *last_failed == seen {
                return None;
            }
            log(&report);
            *last_failed = seen;
            Some(ReloadOutcome::Failed)
        };
        let outcome = match load_file(&self.path) {
            Err(errors) => {
                let log = |errors: &str| tracing::error!(trigger = trigger.as_str(), file = %self.path.display(), %errors, "config reload failed; keeping the running config");
                match failed(ConfigErrors(errors).to_string(), &log) {
                    Some(outcome) => outcome,
                    None => return ReloadOutcome::Unchanged,
                }
            }
            Ok(new) if new.fingerprint == current.config.fingerprint => {
                *last_failed = None;
                ReloadOutcome::Unchanged
            }
            Ok(new) => match not_live(&current.config, &new) {
                Some(why) => {
                    let log = |problem: &str| tracing::error!(trigger = trigger.as_str(), file = %self.path.display(), %problem, "config reload refused (restart to apply); keeping the running config");
                    match failed(why, &log) {
                        Some(outcome) => outcome,
                        None => return ReloadOutcome::Unchanged,
                    }
                }
                None => {
                    let hash = new.content_hash.clone();
                    let routes = new.routes.len();
                    for warning in &new.warnings {
                        tracing::warn!(%warning, "risky config setting");
                    }
                    self.state.apply(new);
                    *last_failed = None;
                    tracing::info!(trigger = trigger.as_str(), file = %self.path.display(), sha256 = %hash, routes, "config reloaded");
                    ReloadOutcome::Applied
                }
            },
        };
        let label = match outcome {
            ReloadOutcome::Applied => Some("success"),
            // The poll finds "unchanged" every few seconds; only asked-for reloads count it.
            ReloadOutcome::Unchanged if trigger == Trigger::Poll => None,
            ReloadOutcome::Unchanged => Some("unchanged"),
            ReloadOutcome::Failed => Some("error"),
        };
        if let Some(label) = label {
            metrics.config_reloads.with_label_values(&[label]).inc();
        }
        outcome
    }
}

/// Settings bound at start-up: a change to one is refused whole, never half-applied.
fn not_live(old: &Config, new: &Config) -> Option<String> {
    let (o, n) = (&old.server, &new.server);
    let fixed = [
        ("server.listen", o.listen != n.listen, ""),
        ("admin.listen", old.admin.listen != new.admin.listen, ""),
        ("server.threads", o.threads != n.threads, ""),
        (
            "server.tls",
            o.tls != n.tls,
            " (the files it names are re-read when they change)",
        ),
        (
            "server.work_stealing",
            o.work_stealing != n.work_stealing,
            "",
        ),
        ("server.fast_path", o.fast_path != n.fast_path, ""),
        (
            "server.read_buffer_bytes",
            o.read_buffer_bytes != n.read_buffer_bytes,
            "",
        ),
        (
            "server.upstream_pool_size",
            o.upstream_pool_size != n.upstream_pool_size,
            "",
        ),
        ("server.log_format", o.log_format != n.log_format, ""),
        (
            "store",
            old.store != new.store,
            " (the connection is made at start)",
        ),
        (
            "server.dpop_replay_max_entries",
            o.dpop_replay_max_entries != n.dpop_replay_max_entries,
            " (the replay store outlives reloads)",
        ),
    ];
    fixed
        .into_iter()
        .find(|&(_, changed, _)| changed)
        .map(|(key, _, note)| format!("{key} cannot change while running{note}"))
}

/// Runs forever on the control runtime: directory events, SIGHUP and the poll.
pub async fn watch(reloader: Arc<Reloader>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Trigger>();
    let _watcher = start_dir_watch(&reloader.path, tx.clone());
    spawn_sighup(tx.clone());
    let poll_tx = tx;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(POLL).await;
            if poll_tx.send(Trigger::Poll).is_err() {
                return;
            }
        }
    });
    while let Some(mut trigger) = rx.recv().await {
        if trigger == Trigger::File {
            // Debounce: a ConfigMap swap or an editor's save is several events.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(Trigger::File)) => continue,
                    Ok(Some(t)) => {
                        trigger = t;
                        break;
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
        }
        let r = reloader.clone();
        let _ = tokio::task::spawn_blocking(move || r.reload(trigger)).await;
    }
}

fn start_dir_watch(
    path: &Path,
    tx: mpsc::UnboundedSender<Trigger>,
) -> Option<notify::RecommendedWatcher> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Opening and reading a file are events too (inotify's IN_OPEN, IN_ACCESS,
        // IN_CLOSE_NOWRITE): the reload's own read of the file would trigger the next
        // reload, forever. Only what changes the directory's content counts.
        if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            let _ = tx.send(Trigger::File);
        }
    });
    match watcher {
        Ok(mut w) => match w.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch config directory; relying on SIGHUP and polling");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "file watching unavailable; relying on SIGHUP and polling");
            None
        }
    }
}

fn spawn_sighup(tx: mpsc::UnboundedSender<Trigger>) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot install SIGHUP handler");
            return;
        };
        while hup.recv().await.is_some() {
            if tx.send(Trigger::Sighup).is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::not_live;
    use crate::config::{load_str, Config};

    const TLS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    const LISTEN: &str = "listen = \"127.0.0.1:0\"";

    /// `server`: the `[server]` table's body.
    fn config(server: &str, admin_listen: &str) -> Config {
        let text = format!(
            "[server]\n{server}\n\
             [admin]\nlisten = \"{admin_listen}\"\n\
             [upstreams.up]\nurl = \"http://127.0.0.1:9\"\n\
             [[routes]]\nname = \"open\"\npath_prefix = \"/\"\nupstream = \"up\"\nauth = \"none\"\n"
        );
        load_str(&text, Path::new("t.toml")).expect("test config builds")
    }

    /// Every setting bound at start-up refuses the reload, naming itself; a live one does not.
    #[test]
    fn start_up_settings_refuse_a_reload() {
        let any = "127.0.0.1:0";
        let old = config(LISTEN, any);
        let with = |extra: &str| format!("{LISTEN}\n{extra}");
        let tls = with(&format!(
            "[server.tls]\ncert = \"{TLS}/server.pem\"\nkey = \"{TLS}/server.key\""
        ));
        let cases = [
            ("listen = \"127.0.0.1:1\"".to_owned(), any, "server.listen"),
            (LISTEN.to_owned(), "127.0.0.1:1", "admin.listen"),
            (with("threads = 3"), any, "server.threads"),
            (tls, any, "server.tls"),
            (with("work_stealing = true"), any, "server.work_stealing"),
            (with("fast_path = false"), any, "server.fast_path"),
            (
                with("read_buffer_bytes = 4096"),
                any,
                "server.read_buffer_bytes",
            ),
            (
                with("upstream_pool_size = 16"),
                any,
                "server.upstream_pool_size",
            ),
            (with("log_format = \"json\""), any, "server.log_format"),
        ];
        for (server, admin, key) in cases {
            let why = not_live(&old, &config(&server, admin))
                .unwrap_or_else(|| panic!("{key} was not refused"));
            assert!(why.starts_with(&format!("{key} cannot change")), "{why}");
        }
        let live = config(&with("keepalive_timeout = \"5s\""), any);
        assert_eq!(not_live(&old, &live), None);
    }
}
