//! The running state, assembled from a `Config` in one place.
//!
//! A `Snapshot` is one config plus what runs for it: one `ProviderRuntime` per provider
//! (its key store, revocation list, lifetime histogram), one `UpstreamRuntime` per upstream
//! (its CA in pingora's form, its error counters), one `RouteRuntime` per route (its metric
//! handles), and the verified-token cache. Each is reached through the config's typed ids.
//! `State` holds the snapshot in force (`ArcSwap`) and `reload` swaps it.
//!
//! Arrows point down: `proxy` → `runtime` → (`auth`, `metrics`, `config`).

pub mod introspection;
pub mod poll;
pub mod reload;
pub mod revocations;
mod state;
pub mod store;

use std::sync::Arc;

use prometheus::{Histogram, IntCounter};

use crate::auth::cache::{TokenCache, TokenKey};
use crate::auth::dpop::DpopState;
use crate::auth::introspection::Lookup;
use crate::auth::keystore::{ProviderKeys, StoreIdentity};
use crate::auth::{Context, Reject};
use crate::config::{Config, ProviderId, RouteId, UpstreamId};
use crate::formats::revocation::Revocations;
use crate::metrics::{Metrics, RouteMetrics, NO_ROUTE};
use introspection::Introspector;
use revocations::{FileRevocations, ProviderRevocations};

pub use state::{InFlight, State};

/// What one request reads: a config and what runs for it. Swapped whole on reload; a
/// request keeps the one it started with.
pub struct Snapshot {
    pub config: Arc<Config>,
    routes: Vec<RouteRuntime>,
    no_route: RouteRuntime,
    providers: Vec<ProviderRuntime>,
    upstreams: Vec<UpstreamRuntime>,
    /// Verified tokens of this snapshot (`None`: the cache is off). A reload starts empty.
    pub token_cache: Option<TokenCache>,
    /// DPoP's replay store and nonce key: carried over by every reload (a reload must not
    /// forget a proof, or it could be replayed).
    pub dpop: Arc<DpopState>,
}

/// One provider's running parts.
pub struct ProviderRuntime {
    pub keys: Arc<ProviderKeys>,
    /// Its `revocation_file` and its copy of the fleet store's list, where configured.
    pub revocations: ProviderRevocations,
    /// `authgate_token_remaining_lifetime_seconds{provider}`.
    pub token_lifetime: Histogram,
    /// Where the provider introspects (none in an offline snapshot).
    pub introspector: Option<Arc<Introspector>>,
}

/// One upstream's running parts.
pub struct UpstreamRuntime {
    /// `ca_file`'s certificates in pingora's form (`None`: the system roots).
    pub ca: Option<Arc<pingora::protocols::tls::CaType>>,
    /// `authgate_upstream_errors_total{upstream,kind}`, by `UpstreamFailure::ALL`.
    errors: Vec<IntCounter>,
}

/// One route's metric handles (or those of requests that matched no route).
pub struct RouteRuntime {
    metrics: RouteMetrics,
}

/// Why a granted request got no answer from its upstream. Not a refusal (`Reject`): the
/// request was allowed, and the failure is the upstream's. Counted as
/// `authgate_requests_total{outcome="error"}` and `authgate_upstream_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    ConnectRefused,
    ConnectTimeout,
    Tls,
    ReadTimeout,
    WriteTimeout,
    Closed,
    Other,
}

// === impl UpstreamFailure ===

impl UpstreamFailure {
    pub const ALL: [Self; 7] = [
        Self::ConnectRefused,
        Self::ConnectTimeout,
        Self::Tls,
        Self::ReadTimeout,
        Self::WriteTimeout,
        Self::Closed,
        Self::Other,
    ];

    /// The `kind` label of `authgate_upstream_errors_total`, and the access log's
    /// `upstream_error`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::ConnectRefused => "connect_refused",
            Self::ConnectTimeout => "connect_timeout",
            Self::Tls => "tls",
            Self::ReadTimeout => "read_timeout",
            Self::WriteTimeout => "write_timeout",
            Self::Closed => "closed",
            Self::Other => "other",
        }
    }

    const fn is_timeout(self) -> bool {
        matches!(
            self,
            Self::ConnectTimeout | Self::ReadTimeout | Self::WriteTimeout
        )
    }

    /// 504 for a timeout, 502 for the rest.
    pub const fn status(self) -> u16 {
        if self.is_timeout() {
            504
        } else {
            502
        }
    }

    /// The answer's `reason` and the access log's `reason`.
    pub const fn reason(self) -> &'static str {
        if self.is_timeout() {
            "upstream_timeout"
        } else {
            "upstream_unavailable"
        }
    }

    /// Short, fixed text for the answer's `error_description`.
    pub const fn description(self) -> &'static str {
        if self.is_timeout() {
            "upstream timed out"
        } else {
            "upstream unavailable"
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

// === impl Snapshot ===

impl Snapshot {
    /// The snapshot for `config` with what `providers` holds for each of its providers
    /// (in the order of `config.providers`).
    fn from_parts(
        config: Config,
        providers: Vec<ProviderRuntime>,
        dpop: Option<Arc<DpopState>>,
        metrics: &Metrics,
    ) -> Self {
        let dpop =
            dpop.unwrap_or_else(|| Arc::new(DpopState::new(config.server.dpop_replay_max_entries)));
        dpop.set_window(&config);
        let routes = config
            .routes
            .iter()
            .map(|r| RouteRuntime::new(&r.name, metrics))
            .collect();
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| UpstreamRuntime {
                ca: u.tls.as_ref().and_then(|t| t.ca.as_deref()).map(pingora_ca),
                errors: UpstreamFailure::ALL
                    .iter()
                    .map(|k| {
                        metrics
                            .upstream_errors
                            .with_label_values(&[&u.name, k.label()])
                    })
                    .collect(),
            })
            .collect();
        let token_cache = TokenCache::new(&config.token_cache, metrics);
        metrics.routes_loaded(
            config
                .routes
                .iter()
                .map(|r| (r.name.as_str(), r.mode.label())),
        );
        Self {
            config: Arc::new(config),
            routes,
            no_route: RouteRuntime::new(NO_ROUTE, metrics),
            providers,
            upstreams,
            token_cache,
            dpop,
        }
    }

    /// A snapshot that runs no background task: key stores hold what the config read
    /// (HMAC secrets, `jwks_file`s) and URL providers stay unloaded; revocation lists are
    /// the files read at load (the fleet store is not asked). For benchmarks, fuzzing and
    /// tools that decide offline.
    pub fn offline(config: Config, metrics: &Metrics) -> Self {
        let providers = config
            .providers
            .iter()
            .map(|p| ProviderRuntime {
                keys: ProviderKeys::new(p, None),
                revocations: ProviderRevocations {
                    file: p.revocation_file.as_ref().map(FileRevocations::new),
                    store: None,
                },
                token_lifetime: metrics
                    .token_remaining_lifetime
                    .with_label_values(&[&p.name]),
                introspector: None,
            })
            .collect();
        Self::from_parts(config, providers, None, metrics)
    }

    /// Builds the snapshot for `config`, reusing what `old` runs for unchanged sources:
    /// key stores with the same identity, revocation lists of the same file, the fleet
    /// store's copies (`store`) of the same provider. New ones start their tasks on
    /// `control`; dropped ones stop theirs when the old snapshot goes.
    pub fn assemble(
        config: Config,
        old: Option<&Snapshot>,
        control: &tokio::runtime::Handle,
        client: &reqwest::Client,
        metrics: &Arc<Metrics>,
        store: Option<&Result<store::Store, store::StoreError>>,
    ) -> Self {
        let old_providers = old.map_or(&[][..], |o| &o.providers[..]);
        let providers = config
            .providers
            .iter()
            .map(|p| {
                let id = StoreIdentity::of(p);
                let keys = match old_providers.iter().find(|o| o.keys.identity == id) {
                    Some(existing) => existing.keys.clone(),
                    None => {
                        let same_source = old_providers
                            .iter()
                            .find(|o| o.keys.identity.source == p.key_source);
                        let store = ProviderKeys::new(p, same_source.map(|s| s.keys.as_ref()));
                        store.spawn_refresh(control, client.clone(), metrics.clone());
                        store
                    }
                };
                // A list already running keeps polling its file (edits apply within seconds).
                let file = p.revocation_file.as_ref().map(|file| {
                    let running = old_providers
                        .iter()
                        .filter_map(|o| o.revocations.file.as_ref())
                        .find(|r| r.path == file.path);
                    match running {
                        Some(list) => list.clone(),
                        None => {
                            let list = FileRevocations::new(file);
                            list.spawn_watch(control, p.name.clone(), metrics.clone());
                            list
                        }
                    }
                });
                // The store keeps one copy per provider, shared by every snapshot.
                let fail_open = config
                    .store
                    .as_ref()
                    .is_some_and(|s| s.revocation_fail_open);
                let from_store = match store {
                    _ if !p.revocation_store => None,
                    Some(Ok(store)) => Some(store.revocations(&p.name, fail_open, control)),
                    // Refused by the config check; a store that could not open never
                    // reads one.
                    Some(Err(_)) | None => Some(store::revocations::StoreRevocations::never_read(
                        &p.name, fail_open,
                    )),
                };
                let revocations = ProviderRevocations {
                    file,
                    store: from_store,
                };
                // Same provider, same introspection settings: keep its client and answers
                // (they are re-checked against the new config on every use).
                let introspector = p.introspection.as_ref().map(|settings| {
                    let running = old.and_then(|o| {
                        o.config
                            .providers
                            .iter()
                            .zip(&o.providers)
                            .find(|(op, _)| op.name == p.name)
                            .and_then(|(_, r)| r.introspector.clone())
                            .filter(|i| i.settings == *settings)
                    });
                    running.unwrap_or_else(|| {
                        Arc::new(Introspector::new(p, settings.clone(), metrics.clone()))
                    })
                });
                ProviderRuntime {
                    keys,
                    revocations,
                    introspector,
                    token_lifetime: metrics
                        .token_remaining_lifetime
                        .with_label_values(&[&p.name]),
                }
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
                for kind in ["active", "inactive"] {
                    let _ = metrics
                        .introspection_cache_entries
                        .remove_label_values(&[&gone.name, kind]);
                }
                let _ = metrics
                    .introspection_cache_bytes
                    .remove_label_values(&[&gone.name]);
                let _ = metrics.revocation_age.remove_label_values(&[&gone.name]);
                let _ = metrics
                    .revocation_entries
                    .remove_label_values(&[&gone.name]);
            }
        }
        metrics.config_loaded(&config.content_hash);
        Self::from_parts(config, providers, old.map(|o| o.dpop.clone()), metrics)
    }

    pub fn provider(&self, id: ProviderId) -> &ProviderRuntime {
        &self.providers[id.index()]
    }

    pub fn upstream(&self, id: UpstreamId) -> &UpstreamRuntime {
        &self.upstreams[id.index()]
    }

    /// The metric handles of route `id`, or of "no route".
    pub fn route(&self, id: Option<RouteId>) -> &RouteRuntime {
        id.and_then(|i| self.routes.get(i.index()))
            .unwrap_or(&self.no_route)
    }

    /// Every provider with its id, in config order.
    pub fn providers(&self) -> impl Iterator<Item = (ProviderId, &ProviderRuntime)> {
        self.providers
            .iter()
            .enumerate()
            .map(|(i, p)| (ProviderId::new(i), p))
    }
}

impl Context for Snapshot {
    fn config(&self) -> &Config {
        &self.config
    }

    fn keys(&self, provider: ProviderId) -> &ProviderKeys {
        &self.provider(provider).keys
    }

    fn revocations(&self, provider: ProviderId) -> Option<&dyn Revocations> {
        let r = &self.provider(provider).revocations;
        r.is_some().then_some(r as &dyn Revocations)
    }

    fn token_cache(&self) -> Option<&TokenCache> {
        self.token_cache.as_ref()
    }

    fn introspection(&self, provider: ProviderId, token: &TokenKey) -> Option<Lookup> {
        self.provider(provider).introspector.as_ref()?.lookup(token)
    }

    fn dpop(&self) -> Option<&DpopState> {
        Some(&self.dpop)
    }
}

/// Seconds since the Unix epoch: the clock `decide` is given.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

// === impl UpstreamRuntime ===

impl UpstreamRuntime {
    /// `authgate_upstream_errors_total` of this upstream for `failure`.
    pub fn errors(&self, failure: UpstreamFailure) -> &IntCounter {
        &self.errors[failure.index()]
    }
}

// === impl RouteRuntime ===

impl RouteRuntime {
    fn new(route: &str, metrics: &Metrics) -> Self {
        Self {
            metrics: metrics.for_route(route, Reject::ALL.len()),
        }
    }

    pub fn metrics(&self) -> &RouteMetrics {
        &self.metrics
    }

    /// `authgate_rejections_total` of this route for `reason`.
    pub fn rejection(&self, reason: Reject) -> &IntCounter {
        self.metrics.rejection(reason.index(), reason.label())
    }

    /// `authgate_report_only_rejections_total` of this route for `reason`.
    pub fn would_reject(&self, reason: Reject) -> &IntCounter {
        self.metrics.would_reject(reason.index(), reason.label())
    }
}

/// An upstream's CA certificates in pingora's form.
fn pingora_ca(
    certs: &[rustls::pki_types::CertificateDer<'static>],
) -> Arc<pingora::protocols::tls::CaType> {
    let wrapped: Vec<_> = certs
        .iter()
        .map(|c| pingora::utils::tls::WrappedX509::new(c.to_vec(), pingora::utils::tls::parse_x509))
        .collect();
    Arc::from(wrapped)
}
