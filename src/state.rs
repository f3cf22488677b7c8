//! The one piece of shared, reloadable state: `ArcSwap<Snapshot>`, plus what builds snapshots
//! (key stores to reuse, the control runtime their refresh tasks run on, metrics).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::keystore::{ProviderKeys, StoreIdentity};
use crate::auth::revocation::FileRevocations;
use crate::config::{Config, Snapshot};
use crate::metrics::Metrics;

pub struct State {
    snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    control: tokio::runtime::Handle,
    client: reqwest::Client,
    /// Set on SIGTERM: `/readyz` fails while the listener drains.
    pub draining: AtomicBool,
    /// Requests between head received and response finished (see `InFlight`).
    pub in_flight: AtomicUsize,
}

/// Counts one request in `State::in_flight` for as long as it lives (it sits in the request
/// context, which pingora drops when the request is done, on every path).
pub struct InFlight(Arc<State>);

impl InFlight {
    pub fn new(state: &Arc<State>) -> Self {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl State ===

impl State {
    /// The state for the first config. Fails only when a revocation file that just
    /// validated cannot be read any more (revocation never silently turns off).
    pub fn new(
        config: Config,
        metrics: Arc<Metrics>,
        control: tokio::runtime::Handle,
        client: reqwest::Client,
    ) -> Result<Arc<Self>, String> {
        let snapshot = snapshot_for(config, None, &control, &client, &metrics)?;
        Ok(Arc::new(Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            control,
            client,
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }))
    }

    /// The snapshot in force (lock-free).
    pub fn load(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in a new config in one store. Key stores and revocation lists whose source did
    /// not change carry over (no refetch); the rest start fresh and the dropped ones stop
    /// their tasks. On error nothing changes.
    pub fn apply(&self, config: Config) -> Result<(), String> {
        let old = self.snapshot.load_full();
        let snapshot = snapshot_for(
            config,
            Some(&old),
            &self.control,
            &self.client,
            &self.metrics,
        )?;
        self.snapshot.store(Arc::new(snapshot));
        Ok(())
    }

    /// Ready when not draining and every provider has usable keys (loaded, not stale).
    pub fn readiness(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("shutting down".to_owned());
        }
        let snap = self.load();
        let missing: Vec<String> = snap
            .config
            .providers
            .iter()
            .zip(&snap.keys)
            .filter(|(_, k)| !k.is_usable())
            .map(|(p, k)| {
                let why = if k.is_loaded() { "stale" } else { "not loaded" };
                format!("{} ({why})", p.name)
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "no usable keys for provider(s): {}",
                missing.join(", ")
            ))
        }
    }

    /// Brings gauges that depend on the clock up to date (called before each scrape).
    pub fn refresh_gauges(&self) {
        let snap = self.load();
        for (p, k) in snap.config.providers.iter().zip(&snap.keys) {
            if let Some(age) = k.age() {
                self.metrics.jwks_age.with_label_values(&[&p.name]).set(age);
            }
        }
        let (entries, bytes) = snap.token_cache.as_ref().map_or((0, 0), |c| c.usage());
        self.metrics.token_cache_entries.set(entries as f64);
        self.metrics.token_cache_bytes.set(bytes as f64);
    }
}

/// Builds the snapshot for `config`, reusing what `old` has for unchanged sources. Anything
/// that can fail (loading a new revocation file) happens before any task is started or any
/// shared state is touched, so a refused reload changes nothing.
fn snapshot_for(
    config: Config,
    old: Option<&Snapshot>,
    control: &tokio::runtime::Handle,
    client: &reqwest::Client,
    metrics: &Arc<Metrics>,
) -> Result<Snapshot, String> {
    let mut revocations = Vec::with_capacity(config.providers.len());
    let mut new_lists = Vec::new();
    for p in &config.providers {
        let Some(path) = &p.revocation_file else {
            revocations.push(None);
            continue;
        };
        // A list already running keeps polling its file (edits apply within seconds).
        let reused = old
            .into_iter()
            .flat_map(|o| o.revocations.iter().flatten())
            .find(|r| r.path == *path);
        let list = match reused {
            Some(list) => list.clone(),
            None => {
                let list = FileRevocations::load(path)?;
                new_lists.push((list.clone(), p.name.clone()));
                list
            }
        };
        revocations.push(Some(list));
    }
    for (list, provider) in new_lists {
        list.spawn_watch(control, provider, metrics.clone());
    }
    let old_keys = old.map_or(&[][..], |o| &o.keys[..]);
    let keys = config
        .providers
        .iter()
        .map(|p| {
            let id = StoreIdentity::of(p);
            if let Some(existing) = old_keys.iter().find(|k| k.identity == id) {
                return existing.clone();
            }
            let same_source = old_keys.iter().find(|k| k.identity.source == p.key_source);
            let store = ProviderKeys::new(p, same_source.map(|s| s.as_ref()));
            store.spawn_refresh(control, client.clone(), metrics.clone());
            store
        })
        .collect();
    // Providers that left the config leave no gauges behind.
    if let Some(old) = old {
        for gone in old
            .config
            .providers
            .iter()
            .filter(|o| !config.providers.iter().any(|p| p.name == o.name))
        {
            let _ = metrics.jwks_keys.remove_label_values(&[&gone.name]);
            let _ = metrics.jwks_age.remove_label_values(&[&gone.name]);
        }
    }
    metrics.config_loaded(&config.content_hash);
    Ok(Snapshot::new(Arc::new(config), keys, revocations, metrics))
}
