//! Every metric, defined in one place. Label values come from config names and enums, never
//! from request data, so cardinality stays bounded.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Route label for requests that matched no route.
pub const NO_ROUTE: &str = "-";

pub struct Metrics {
    registry: Registry,
    /// `outcome`: `allowed` (sent upstream), `rejected` (refused: see
    /// `rejections`), `error` (the upstream failed, see `upstream_errors`; a bug, counted in
    /// `rejections` as `internal_error`; or the client went away before a decision).
    pub requests: IntCounterVec,
    /// `reason`: `auth::Reject::label()`.
    pub rejections: IntCounterVec,
    /// On report-only routes: the refusals that were not enforced, by `reason`.
    pub report_only_rejections: IntCounterVec,
    /// Always 1 per route of the running config, labelled with its `mode`.
    pub route_info: IntGaugeVec,
    pub duration: HistogramVec,
    /// `result`: `success`, `not_modified` (304 to `If-None-Match`), `error`, `rate_limited`
    /// (an unknown-kid refetch inside the cooldown).
    pub jwks_fetches: IntCounterVec,
    pub jwks_keys: IntGaugeVec,
    /// Seconds since the provider last confirmed its keys (fetch, 304, file read).
    pub jwks_age: GaugeVec,
    /// `result`: `success`, `error`, `unchanged`.
    pub config_reloads: IntCounterVec,
    pub build_info: IntGaugeVec,
    /// `result`: `success`, `error` (the last good list stays).
    pub revocation_reloads: IntCounterVec,
    /// Always 1, labelled with the running config's SHA-256: fleet drift shows as several
    /// values across replicas.
    pub config_info: IntGaugeVec,
    pub config_last_reload_success: Gauge,
    /// `exp - now` of each accepted token, by provider: very long-lived tokens show up here.
    pub token_remaining_lifetime: HistogramVec,
    /// Time `decide` took (key refetch wait included), by route.
    pub auth_duration: HistogramVec,
    /// Upstream connect + request + response head, by route.
    pub upstream_duration: HistogramVec,
    /// `kind`: `runtime::UpstreamFailure::label()`.
    pub upstream_errors: IntCounterVec,
    /// `result`: `success`, `error` (the certificate in use stays).
    pub tls_cert_reloads: IntCounterVec,
    /// notAfter of the listener's certificate in use, Unix seconds.
    pub tls_cert_not_after: Gauge,
    /// `result`: `hit` (a cached verification was used), `miss`.
    pub token_cache_lookups: IntCounterVec,
    /// `cause`: `size` (over max_entries / max_bytes), `expired` (exp or ttl reached).
    pub token_cache_evictions: IntCounterVec,
    /// Set at scrape.
    pub token_cache_entries: Gauge,
    pub dpop_replay_entries: Gauge,
    pub token_cache_bytes: Gauge,
    /// RFC 7662 calls, by provider and `result`: `active`, `inactive`, or a failure
    /// (`timeout`, `unreachable`, `bad_status`, `bad_response`), each answered 503.
    pub introspection_requests: IntCounterVec,
    pub introspection_duration: HistogramVec,
    pub store_requests: IntCounterVec,
    pub store_duration: HistogramVec,
    /// The revocation feed's subscription made again after it was lost.
    pub store_reconnects: IntCounter,
    /// By provider, for `revocation = "store"`; set at scrape.
    pub revocation_age: GaugeVec,
    pub revocation_entries: IntGaugeVec,
    pub revocation_unreadable: IntGaugeVec,
    /// `store.revocation_max_age`, for the alert (absent without a store).
    pub revocation_max_age: Gauge,
    /// `result`: `hit` (an active answer was used), `inactive_hit`, `miss`.
    pub introspection_cache_lookups: IntCounterVec,
    /// By provider and `kind` (`active`, `inactive`); set at scrape.
    pub introspection_cache_entries: IntGaugeVec,
    /// Bytes the active answers are charged for, by provider; set at scrape.
    pub introspection_cache_bytes: IntGaugeVec,
    /// Panics caught anywhere in the process (a request that panicked is answered 500 and
    /// counted as `reason="internal_error"` besides).
    pub panics: IntCounter,
}

/// Latency buckets shared by the request, auth and upstream histograms (seconds).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

// The definitions below are static: a bad name, label or bucket list is a programming error.
fn counters(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn int_gauges(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn gauge(name: &str, help: &str) -> Gauge {
    Gauge::new(name, help).expect("static metric definition")
}

fn histograms(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("static metric definition")
}

// === impl Metrics ===

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = counters(
            "authgate_requests_total",
            "Requests handled, by route and outcome.",
            &["route", "outcome"],
        );
        let report_only_rejections = counters(
            "authgate_report_only_rejections_total",
            "Refusals a report-only route would have made, not enforced (the request went upstream)",
            &["route", "reason"],
        );
        let route_info = int_gauges(
            "authgate_route_info",
            "Always 1 per route of the running config; mode is enforce or report",
            &["route", "mode"],
        );
        let rejections = counters(
            "authgate_rejections_total",
            "Requests refused, by route and reason (see README, status and reason table).",
            &["route", "reason"],
        );
        let duration = histograms(
            "authgate_request_duration_seconds",
            "Time from request head received to response finished, by route.",
            &["route"],
            LATENCY_BUCKETS,
        );
        let auth_duration = histograms(
            "authgate_auth_duration_seconds",
            "Time spent deciding (routing, token checks, any key refetch wait), by route.",
            &["route"],
            LATENCY_BUCKETS,
        );
        let upstream_duration = histograms(
            "authgate_upstream_duration_seconds",
            "Time from choosing the upstream to its response head (connect included), by route.",
            &["route"],
            LATENCY_BUCKETS,
        );
        let upstream_errors = counters(
            "authgate_upstream_errors_total",
            "Requests that failed on the way to or from the upstream, by upstream and kind.",
            &["upstream", "kind"],
        );
        let tls_cert_reloads = counters(
            "authgate_tls_cert_reloads_total",
            "Re-reads of a changed listener certificate/key pair, by result.",
            &["result"],
        );
        let token_cache_lookups = counters(
            "authgate_token_cache_lookups_total",
            "Verified-token cache lookups of tokens with a valid form, by result.",
            &["result"],
        );
        let token_cache_evictions = counters(
            "authgate_token_cache_evictions_total",
            "Verified-token cache entries removed, by cause (size: over a bound; expired: exp or ttl).",
            &["cause"],
        );
        let token_cache_entries = gauge(
            "authgate_token_cache_entries",
            "Tokens in the verified-token cache.",
        );
        let dpop_replay_entries = gauge(
            "authgate_dpop_replay_entries",
            "DPoP proofs remembered against replay (bounded by server.dpop_replay_max_entries).",
        );
        let token_cache_bytes = gauge(
            "authgate_token_cache_bytes",
            "Bytes the verified-token cache's entries are charged for (bounded by max_bytes).",
        );
        let tls_cert_not_after = gauge(
            "authgate_tls_cert_not_after_timestamp_seconds",
            "notAfter of the listener certificate in use, Unix seconds (absent without TLS).",
        );
        let jwks_fetches = counters(
            "authgate_jwks_fetches_total",
            "JWKS fetches, by provider and result.",
            &["provider", "result"],
        );
        let jwks_keys = int_gauges(
            "authgate_jwks_keys",
            "Usable keys currently loaded, by provider.",
            &["provider"],
        );
        let jwks_age = GaugeVec::new(
            Opts::new(
                "authgate_jwks_age_seconds",
                "Seconds since the provider last confirmed its keys; over jwks_max_stale they are not used.",
            ),
            &["provider"],
        )
        .expect("static metric definition");
        let config_reloads = counters(
            "authgate_config_reloads_total",
            "Config reloads, by result.",
            &["result"],
        );
        let token_remaining_lifetime = histograms(
            "authgate_token_remaining_lifetime_seconds",
            "Time an accepted token had left before exp, by provider.",
            &["provider"],
            &[
                30.0,
                60.0,
                300.0,
                900.0,
                1800.0,
                3600.0,
                4.0 * 3600.0,
                12.0 * 3600.0,
                86400.0,
                7.0 * 86400.0,
                30.0 * 86400.0,
            ],
        );
        let revocation_reloads = counters(
            "authgate_revocation_reloads_total",
            "Revocation list reloads after a change of the file, by provider and result.",
            &["provider", "result"],
        );
        let config_info = int_gauges(
            "authgate_config_info",
            "Always 1; sha256 labels the running config's content hash.",
            &["sha256"],
        );
        let config_last_reload_success = gauge(
            "authgate_config_last_reload_success_timestamp_seconds",
            "When the running config was loaded (start or last successful reload), Unix seconds.",
        );
        let build_info = int_gauges(
            "authgate_build_info",
            "Always 1; labels carry the version.",
            &["version"],
        );
        let introspection_requests = counters(
            "authgate_introspection_requests_total",
            "Token introspection calls, by provider and result (active, inactive, timeout, unreachable, bad_status, bad_response).",
            &["provider", "result"],
        );
        let introspection_duration = histograms(
            "authgate_introspection_duration_seconds",
            "Time of one introspection call (waiting for a free slot included), by provider.",
            &["provider"],
            LATENCY_BUCKETS,
        );
        let store_requests = counters(
            "authgate_store_requests_total",
            "Calls to the fleet store (Redis), by operation and result (ok, timeout, error).",
            &["op", "result"],
        );
        let store_duration = histograms(
            "authgate_store_duration_seconds",
            "Time of one fleet store call (waiting for the connection included), by operation.",
            &["op"],
            LATENCY_BUCKETS,
        );
        let store_reconnects = IntCounter::new(
            "authgate_store_reconnects_total",
            "Times the fleet store's revocation subscription was made again after it was lost.",
        )
        .expect("static metric definition");
        let revocation_age = GaugeVec::new(
            Opts::new(
                "authgate_revocation_age_seconds",
                "Seconds since the provider's copy of the fleet store's revocations was last found current (since start, before the first copy).",
            ),
            &["provider"],
        )
        .expect("static metric definition");
        let revocation_entries = int_gauges(
            "authgate_revocation_entries",
            "Revoked jtis and subjects in the provider's copy of the fleet store's revocations.",
            &["provider"],
        );
        let revocation_unreadable = int_gauges(
            "authgate_revocation_unreadable_entries",
            "Entries in the fleet store that did not read as revocations at the provider's last full read (left out; written by hand?).",
            &["provider"],
        );
        let revocation_max_age = gauge(
            "authgate_revocation_max_age_seconds",
            "store.revocation_max_age: /readyz fails when a revocation copy is older.",
        );
        let introspection_cache_lookups = counters(
            "authgate_introspection_cache_lookups_total",
            "Introspection answer cache lookups, by provider and result (hit, inactive_hit, miss).",
            &["provider", "result"],
        );
        let introspection_cache_entries = int_gauges(
            "authgate_introspection_cache_entries",
            "Introspection answers kept, by provider and kind (active, inactive).",
            &["provider", "kind"],
        );
        let introspection_cache_bytes = int_gauges(
            "authgate_introspection_cache_bytes",
            "Bytes the kept active introspection answers are charged for, by provider.",
            &["provider"],
        );
        let panics = IntCounter::new(
            "authgate_panics_total",
            "Panics in the process; each is a bug (the log line has its location).",
        )
        .expect("static metric definition");
        for c in [
            Box::new(panics.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(requests.clone()),
            Box::new(rejections.clone()),
            Box::new(report_only_rejections.clone()),
            Box::new(route_info.clone()),
            Box::new(duration.clone()),
            Box::new(jwks_fetches.clone()),
            Box::new(jwks_keys.clone()),
            Box::new(jwks_age.clone()),
            Box::new(config_reloads.clone()),
            Box::new(build_info.clone()),
            Box::new(token_remaining_lifetime.clone()),
            Box::new(config_info.clone()),
            Box::new(revocation_reloads.clone()),
            Box::new(config_last_reload_success.clone()),
            Box::new(auth_duration.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(token_cache_lookups.clone()),
            Box::new(token_cache_evictions.clone()),
            Box::new(token_cache_entries.clone()),
            Box::new(dpop_replay_entries.clone()),
            Box::new(token_cache_bytes.clone()),
            Box::new(introspection_requests.clone()),
            Box::new(introspection_duration.clone()),
            Box::new(store_requests.clone()),
            Box::new(store_duration.clone()),
            Box::new(store_reconnects.clone()),
            Box::new(revocation_age.clone()),
            Box::new(revocation_entries.clone()),
            Box::new(revocation_unreadable.clone()),
            Box::new(introspection_cache_lookups.clone()),
            Box::new(introspection_cache_entries.clone()),
            Box::new(introspection_cache_bytes.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for result in ["success", "error", "unchanged"] {
            config_reloads.with_label_values(&[result]);
        }
        for result in ["hit", "miss"] {
            token_cache_lookups.with_label_values(&[result]);
        }
        for cause in ["size", "expired"] {
            token_cache_evictions.with_label_values(&[cause]);
        }
        Self {
            panics,
            registry,
            requests,
            rejections,
            report_only_rejections,
            route_info,
            duration,
            jwks_fetches,
            jwks_keys,
            jwks_age,
            config_reloads,
            build_info,
            config_info,
            config_last_reload_success,
            revocation_reloads,
            token_remaining_lifetime,
            auth_duration,
            upstream_duration,
            upstream_errors,
            tls_cert_reloads,
            tls_cert_not_after,
            token_cache_lookups,
            token_cache_evictions,
            token_cache_entries,
            dpop_replay_entries,
            token_cache_bytes,
            introspection_requests,
            introspection_duration,
            store_requests,
            store_duration,
            store_reconnects,
            revocation_age,
            revocation_entries,
            revocation_unreadable,
            revocation_max_age,
            introspection_cache_lookups,
            introspection_cache_entries,
            introspection_cache_bytes,
        }
    }

    /// `authgate_revocation_max_age_seconds` exists only on a gateway with a fleet store.
    pub fn enable_store(&self, revocation_max_age: std::time::Duration) {
        let _ = self
            .registry
            .register(Box::new(self.revocation_max_age.clone()));
        self.revocation_max_age
            .set(revocation_max_age.as_secs_f64());
    }

    /// The TLS series exist only on a gateway that terminates TLS.
    pub fn enable_tls(&self) {
        let _ = self
            .registry
            .register(Box::new(self.tls_cert_reloads.clone()));
        let _ = self
            .registry
            .register(Box::new(self.tls_cert_not_after.clone()));
        for result in ["success", "error"] {
            self.tls_cert_reloads.with_label_values(&[result]);
        }
    }

    /// Handles for one route's series, resolved once per snapshot so a request touches only
    /// atomics (a `*Vec` lookup takes a read lock). `reasons`: how many rejection reasons
    /// there are (`rejection` takes one's position and label).
    pub fn for_route(&self, route: &str, reasons: usize) -> RouteMetrics {
        RouteMetrics {
            allowed: self.requests.with_label_values(&[route, "allowed"]),
            rejected: self.requests.with_label_values(&[route, "rejected"]),
            error: self.requests.with_label_values(&[route, "error"]),
            duration: self.duration.with_label_values(&[route]),
            auth_duration: self.auth_duration.with_label_values(&[route]),
            upstream_duration: self.upstream_duration.with_label_values(&[route]),
            rejections: self.rejections.clone(),
            by_reason: (0..reasons).map(|_| OnceLock::new()).collect(),
            would_reject: self.report_only_rejections.clone(),
            would_by_reason: (0..reasons).map(|_| OnceLock::new()).collect(),
            route: route.to_owned(),
        }
    }

    /// `authgate_route_info` for the routes now in force (`(name, mode)`), and no others.
    pub fn routes_loaded<'a>(&self, routes: impl Iterator<Item = (&'a str, &'static str)>) {
        self.route_info.reset();
        for (name, mode) in routes {
            self.route_info.with_label_values(&[name, mode]).set(1);
        }
    }

    /// Records the config now in force.
    pub fn config_loaded(&self, sha256: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[sha256]).set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.config_last_reload_success.set(now);
    }

    /// Text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// One route's request counters and latency histogram.
pub struct RouteMetrics {
    pub allowed: IntCounter,
    pub rejected: IntCounter,
    pub error: IntCounter,
    pub duration: Histogram,
    pub auth_duration: Histogram,
    pub upstream_duration: Histogram,
    rejections: IntCounterVec,
    /// Resolved on first use, so unused reasons add no series.
    by_reason: Box<[OnceLock<IntCounter>]>,
    would_reject: IntCounterVec,
    would_by_reason: Box<[OnceLock<IntCounter>]>,
    route: String,
}

impl RouteMetrics {
    /// `authgate_rejections_total{route, reason=label}`; `index` is the reason's position
    /// (below `reasons` of `for_route`).
    pub fn rejection(&self, index: usize, label: &'static str) -> &IntCounter {
        self.by_reason[index]
            .get_or_init(|| self.rejections.with_label_values(&[&self.route, label]))
    }

    /// `authgate_report_only_rejections_total{route, reason=label}`, as `rejection`.
    pub fn would_reject(&self, index: usize, label: &'static str) -> &IntCounter {
        self.would_by_reason[index]
            .get_or_init(|| self.would_reject.with_label_values(&[&self.route, label]))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
