//! The one piece of shared, reloadable state: `ArcSwap<Snapshot>`, plus what builds snapshots
//! (key stores to reuse, the control runtime their refresh tasks run on, metrics).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::keystore::{ProviderKeys, StoreIdentity};
use crate::config::{Config, Snapshot};
use crate::metrics::Metrics;

pub struct State {
    snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    control: tokio::runtime::Handle,
    client: reqwest::Client,
    /// Set on SIGTERM: `/readyz` fails while the listener drains.
    pub draining: AtomicBool,
}

// === impl State ===

impl State {
    pub fn new(
        config: Config,
        metrics: Arc<Metrics>,
        control: tokio::runtime::Handle,
        client: reqwest::Client,
    ) -> Arc<Self> {
        let keys = Self::stores_for(&config, &[], &control, &client, &metrics);
        metrics.config_loaded(&config.content_hash);
        Arc::new(Self {
            snapshot: ArcSwap::from_pointee(Snapshot::new(Arc::new(config), keys, &metrics)),
            metrics,
            control,
            client,
            draining: AtomicBool::new(false),
        })
    }

    /// The snapshot in force (lock-free).
    pub fn load(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in a new config in one store. Key stores whose source did not change carry
    /// over (no refetch); the rest start fresh and the dropped ones stop their tasks.
    pub fn apply(&self, config: Config) {
        let old = self.snapshot.load();
        self.metrics.config_loaded(&config.content_hash);
        let keys = Self::stores_for(
            &config,
            &old.keys,
            &self.control,
            &self.client,
            &self.metrics,
        );
        self.snapshot.store(Arc::new(Snapshot::new(
            Arc::new(config),
            keys,
            &self.metrics,
        )));
    }

    fn stores_for(
        config: &Config,
        old: &[Arc<ProviderKeys>],
        control: &tokio::runtime::Handle,
        client: &reqwest::Client,
        metrics: &Arc<Metrics>,
    ) -> Vec<Arc<ProviderKeys>> {
        config
            .providers
            .iter()
            .map(|p| {
                let id = StoreIdentity::of(p);
                if let Some(existing) = old.iter().find(|k| k.identity == id) {
                    return existing.clone();
                }
                let same_source = old.iter().find(|k| k.identity.source == p.key_source);
                let store = ProviderKeys::new(p, same_source.map(|s| s.as_ref()));
                store.spawn_refresh(control, client.clone(), metrics.clone());
                store
            })
            .collect()
    }

    /// Ready when not draining and every provider has usable keys (loaded, not stale).
    pub fn readiness(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("shutting down".to_owned());
        }
        let snap = self.load();
        let now = unix_now();
        let missing: Vec<String> = snap
            .config
            .providers
            .iter()
            .zip(&snap.keys)
            .filter(|(_, k)| !k.is_usable(now))
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
        let now = unix_now();
        for (p, k) in snap.config.providers.iter().zip(&snap.keys) {
            if let Some(age) = k.age(now) {
                self.metrics.jwks_age.with_label_values(&[&p.name]).set(age);
            }
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
