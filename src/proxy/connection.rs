//! The client connection loop: pingora's own, with our timeouts.
//!
//! pingora reads the first request head of a connection with a fixed 60 s per read and then
//! waits for the next request on a keep-alive connection forever. This app replaces that
//! HTTP/1 loop (everything else goes to pingora's): each read of a new connection's first
//! head waits at most `server.header_read_timeout`, an idle keep-alive connection is closed
//! after `server.keepalive_timeout`. HTTP/2 connections use `keepalive_timeout` as their
//! idle timeout.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;

use super::Gateway;
use crate::state::State;

pub struct Connections {
    proxy: Arc<HttpProxy<Gateway>>,
    state: Arc<State>,
}

impl Connections {
    pub fn new(proxy: HttpProxy<Gateway>, state: Arc<State>) -> Self {
        Self {
            proxy: Arc::new(proxy),
            state,
        }
    }
}

/// pingora counts keep-alive timeouts in whole seconds (0 means forever); never 0 here.
fn whole_seconds(d: std::time::Duration) -> u64 {
    d.as_secs().max(1)
}

#[async_trait]
impl ServerApp for Connections {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.proxy.process_new(stream, shutdown).await;
        }
        let (header_read, idle) = {
            let snap = self.state.load();
            let s = &snap.config.server;
            (
                whole_seconds(s.header_read_timeout),
                whole_seconds(s.keepalive_timeout),
            )
        };
        let mut session = ServerSession::new_http1(stream);
        // While pingora reads a head, the keep-alive timeout bounds each read.
        session.set_keepalive((!*shutdown.borrow()).then_some(header_read));
        let mut result = self.proxy.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = result.map(|r| r.consume()) {
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            if session.get_keepalive().is_some() {
                session.set_keepalive((!*shutdown.borrow()).then_some(idle));
            }
            result = self.proxy.process_new_http(session, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        // Wakes keep-alive connections parked between requests so they close.
        self.proxy.http_cleanup().await;
    }
}
