//! The admin listener: `/metrics`, `/healthz` (liveness), `/readyz` (readiness). It is a
//! separate socket, so nothing here is reachable through the proxy port.

use std::sync::Arc;

use crate::httpd::{respond, Handler};
use crate::runtime::State;

pub fn handler(state: Arc<State>) -> Handler {
    Arc::new(move |parts, _body| {
        let state = state.clone();
        Box::pin(async move {
            match parts.uri.path() {
                "/metrics" => {
                    state.refresh_gauges();
                    respond(200, "text/plain; version=0.0.4", state.metrics.render())
                }
                "/healthz" => respond(200, "text/plain", "ok\n"),
                "/readyz" => match state.readiness() {
                    Ok(()) => respond(200, "text/plain", "ready\n"),
                    Err(why) => respond(503, "text/plain", format!("not ready: {why}\n")),
                },
                _ => respond(404, "text/plain", "not found\n"),
            }
        })
    })
}
