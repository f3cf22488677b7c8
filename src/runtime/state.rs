//! The one piece of shared, reloadable state: `ArcSwap<Snapshot>`, plus what assembles new
//! snapshots (the control runtime their tasks run on, the key-fetch client, metrics).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Snapshot;
use crate::config::{Config, KeySource};
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
    /// The fleet store (`[store]`), opened at start: `None` without one. A store whose
    /// settings could not open one (logged) is `Some(Err)`: every question to it is an
    /// outage, never a skipped check.
    pub store: Option<Result<super::store::Store, super::store::StoreError>>,
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
    /// The state for the first config.
    pub fn new(
        config: Config,
        metrics: Arc<Metrics>,
        control: tokio::runtime::Handle,
        client: reqwest::Client,
    ) -> Arc<Self> {
        let store = config.store.as_ref().map(|settings| {
            let opened = super::store::Store::open(settings, &control, metrics.clone());
            if let Err(e) = &opened {
                tracing::error!(error = %e, "the fleet store cannot be opened: DPoP proofs follow store.dpop_replay_on_outage, store revocations store.revocation_without_copy");
            }
            opened
        });
        if let Some(settings) = &config.store {
            metrics.enable_store(settings.revocation_max_age);
        }
        let snapshot =
            Snapshot::assemble(config, None, &control, &client, &metrics, store.as_ref());
        Arc::new(Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            control,
            client,
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            store,
        })
    }

    /// The snapshot in force (lock-free).
    pub fn load(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in a new config in one store. Key stores and revocation lists whose source did
    /// not change carry over (no refetch); the rest start fresh and the dropped ones stop
    /// their tasks. Everything that can fail happened when the config was built.
    pub fn apply(&self, config: Config) {
        let old = self.snapshot.load_full();
        let snapshot = Snapshot::assemble(
            config,
            Some(&old),
            &self.control,
            &self.client,
            &self.metrics,
            self.store.as_ref(),
        );
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Ready when not draining and every provider with keys has usable ones (loaded, not
    /// stale).
    pub fn readiness(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("shutting down".to_owned());
        }
        let snap = self.load();
        let missing: Vec<String> = snap
            .config
            .providers
            .iter()
            .zip(snap.providers())
            .map(|(p, (_, r))| (p, &r.keys))
            // An introspection-only provider has no keys to wait for.
            .filter(|(p, k)| !matches!(p.key_source, KeySource::None) && !k.is_usable())
            .map(|(p, k)| {
                let why = if k.is_loaded() { "stale" } else { "not loaded" };
                format!("{} ({why})", p.name)
            })
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "no usable keys for provider(s): {}",
                missing.join(", ")
            ));
        }
        self.revocations_ready(&snap)
    }

    /// The fleet store's revocation copies: read (unless `fail_open`), and found current
    /// within `store.revocation_max_age`.
    fn revocations_ready(&self, snap: &Snapshot) -> Result<(), String> {
        let Some(settings) = &snap.config.store else {
            return Ok(());
        };
        let now_ms = super::unix_now() * 1000.0;
        let mut problems = Vec::new();
        for (p, (_, r)) in snap.config.providers.iter().zip(snap.providers()) {
            let Some(copy) = &r.revocations.store else {
                continue;
            };
            if !copy.is_loaded() {
                if !copy.fails_open() {
                    problems.push(format!("{} (not read from the store yet)", p.name));
                }
                continue;
            }
            let age = copy.age(now_ms as u64);
            if age > settings.revocation_max_age.as_secs_f64() {
                problems.push(format!(
                    "{} ({age:.0}s old; store.revocation_max_age is {:?})",
                    p.name, settings.revocation_max_age
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "no current revocation copy for provider(s): {}",
                problems.join(", ")
            ))
        }
    }

    /// Brings gauges that depend on the clock up to date (called before each scrape).
    pub fn refresh_gauges(&self) {
        let snap = self.load();
        for (p, (_, r)) in snap.config.providers.iter().zip(snap.providers()) {
            if let Some(age) = r.keys.age() {
                self.metrics.jwks_age.with_label_values(&[&p.name]).set(age);
            }
        }
        for (p, (_, r)) in snap.config.providers.iter().zip(snap.providers()) {
            if let Some(i) = &r.introspector {
                let (active, bytes, inactive) = i.cache.usage();
                let m = &self.metrics;
                let set = |kind: &str, n: u64| {
                    m.introspection_cache_entries
                        .with_label_values(&[&p.name, kind])
                        .set(n as i64)
                };
                set("active", active);
                set("inactive", inactive);
                m.introspection_cache_bytes
                    .with_label_values(&[&p.name])
                    .set(bytes as i64);
            }
        }
        let now_ms = (super::unix_now() * 1000.0) as u64;
        for (p, (_, r)) in snap.config.providers.iter().zip(snap.providers()) {
            if let Some(copy) = &r.revocations.store {
                let m = &self.metrics;
                m.revocation_age
                    .with_label_values(&[&p.name])
                    .set(copy.age(now_ms));
                m.revocation_entries
                    .with_label_values(&[&p.name])
                    .set(i64::try_from(copy.len()).unwrap_or(i64::MAX));
                m.revocation_unreadable
                    .with_label_values(&[&p.name])
                    .set(i64::try_from(copy.unreadable()).unwrap_or(i64::MAX));
            }
        }
        if let Some(n) = snap.dpop.replay.entries() {
            self.metrics.dpop_replay_entries.set(n as f64);
        }
        let (entries, bytes) = snap.token_cache.as_ref().map_or((0, 0), |c| c.usage());
        self.metrics.token_cache_entries.set(entries as f64);
        self.metrics.token_cache_bytes.set(bytes as f64);
    }
}
