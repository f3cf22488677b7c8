//! The access log: one `authgate::access` event per request (see the README's field table).

use std::time::Duration;

/// One request's `authgate::access` event (see the README's field table).
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub route: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub decision: &'static str,
    pub reason: &'static str,
    /// For an upstream failure: its kind (`authgate_upstream_errors_total{kind}`).
    pub upstream_error: Option<&'static str>,
    /// For an upstream failure on a report-only route: the refusal the request would have had.
    pub would_reject: Option<&'static str>,
    pub status: u16,
    pub upstream_status: u16,
    pub duration: Duration,
    pub auth: Duration,
    pub upstream: Option<Duration>,
    pub sub: Option<&'a str>,
    /// How a granted token was held to its sender: `dpop`, `mtls`, `dpop+mtls`.
    pub binding: Option<&'static str>,
}

impl AccessLine<'_> {
    pub fn emit(&self) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::info!(
            target: "authgate::access",
            request_id = self.request_id,
            route = self.route,
            method = self.method,
            path = self.path,
            decision = self.decision,
            reason = self.reason,
            upstream_error = self.upstream_error,
            would_reject = self.would_reject,
            status = self.status,
            upstream_status = self.upstream_status,
            duration_ms = ms(self.duration),
            auth_ms = ms(self.auth),
            upstream_ms = self.upstream.map(ms),
            sub = self.sub,
            binding = self.binding,
        );
    }
}
