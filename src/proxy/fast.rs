//! The fast path (`server.fast_path`): a bodyless HTTP/1.1 request without upgrade, served in
//! the connection's own task on pingora-core — the client's HTTP/1 session, a pooled upstream
//! connection from pingora-core's HTTP/1 connector, the head out, the response streamed back —
//! instead of pingora-proxy's per-request machinery. It shares everything that decides and
//! shapes a request with the general path (`Gateway::authorize`, `upstream_peer`,
//! `upstream_request`, `response_headers`, `failed`, the answers, the access log and
//! metrics); only the moving of bytes is its own.
//!
//! What it does not take is sent to the general path, unchanged: a request with a body
//! (`Content-Length` or `Transfer-Encoding`), an upgrade or `CONNECT`, HTTP/1.0, a
//! `Connection` header naming anything but `keep-alive` or `close` (pingora-proxy's
//! nomination rules apply to those), `HTTP2-Settings`; and every HTTP/2 request.

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use http::{Method, Version};
use pingora::connectors::TransportConnector;
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::protocols::http::v1::server::HttpSession as ClientSession;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pingora::upstreams::peer::Peer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use super::guard::guard;
use super::pool::Pool;
use super::respond::within_send_timeout;
use super::{
    failed, respond, response_headers, upstream_peer, upstream_request, Downstream, Gateway,
    RequestCtx,
};

pub struct FastPath {
    gateway: Gateway,
    /// New upstream connections (TCP and TLS); idle ones are kept in `super::pool`.
    connector: TransportConnector,
    /// Idle upstream connections kept per worker thread (`server.upstream_pool_size`).
    max_idle: usize,
    /// Tries per request, as pingora-proxy's `max_retries`: a request is sent again only
    /// when a reused upstream connection failed before any of the response was written.
    max_retries: usize,
}

/// An idle upstream connection's life when its upstream sets none (it always does).
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// What became of one request.
pub enum Served {
    /// Answered, and the connection may carry another request: the stream, and bytes of the
    /// next request read while this one was served.
    Again(Stream, Option<BytesMut>),
    /// Answered (or the client left): the connection is closed.
    Closed,
    /// Answered with `Connection: close`: the connection is to be closed gently (what the
    /// client may still be sending, a pipelined request, is read and dropped for a moment,
    /// so the close does not become a reset that destroys the answer in flight).
    Close(Stream),
    /// Not for the fast path (seen once its head was parsed): the stream and the head as
    /// received, for the general path to read again.
    General(Stream, BytesMut),
}

impl FastPath {
    pub fn new(
        gateway: Gateway,
        connector: TransportConnector,
        max_idle: usize,
        max_retries: usize,
    ) -> Self {
        Self {
            gateway,
            connector,
            max_idle,
            max_retries: max_retries.max(1),
        }
    }

    /// Serves the request whose complete head is `head` (nothing past it: the caller keeps
    /// what followed); `last`: the connection's last (`keepalive_requests`).
    pub async fn serve(
        &self,
        stream: Stream,
        head: BytesMut,
        last: bool,
        shutdown: &ShutdownWatch,
    ) -> Served {
        let mut client = ClientSession::new(stream);
        client.set_pipelined_prefix(head);
        // Bytes a client sends while its request is served are the next request: kept.
        client.set_pipelining_enabled(true);
        match client.read_request().await {
            Ok(Some(_)) => {}
            Ok(None) => return Served::Closed,
            Err(e) => {
                // As pingora-proxy, with its own code: a head it cannot read gets a bare 400
                // and the close.
                if *e.etype() == ErrorType::InvalidHTTPHeader {
                    let mut session = ServerSession::H1(client);
                    let _ = session.respond_error(400).await;
                    session.shutdown().await;
                }
                return Served::Closed;
            }
        }
        if !takes(client.req_header()) || !client.is_body_empty() {
            let head = BytesMut::from(&client.get_headers_raw_bytes()[..]);
            return Served::General(client.into_inner(), head);
        }
        if last || *shutdown.borrow() {
            // The connection's last request, or a draining server: answered with
            // `Connection: close`, then the close.
            client.set_server_keepalive(None);
        }
        let mut ctx = self.gateway.ctx();
        let denied = self
            .gateway
            .authorize(&Downstream::of_h1(&client), &mut ctx)
            .await;
        if let Some(snap) = &ctx.snap {
            client.set_write_timeout(Some(snap.config.server.send_timeout));
        }
        match denied {
            Some(answer) => {
                if respond::write_answer_h1(&mut client, &answer, &ctx.request_id)
                    .await
                    .is_err()
                {
                    client.set_server_keepalive(None);
                }
            }
            None => self.proxy(&mut client, &mut ctx, shutdown).await,
        }
        let status = client.response_written().map_or(0, |r| r.status.as_u16());
        // A panic here has been logged and counted by the hook; the answer is already out.
        let _ = guard(|| self.gateway.log_request(client.req_header(), status, &ctx));
        drop(ctx);
        if !client.will_keepalive() && client.response_written().is_some() {
            return Served::Close(client.into_inner());
        }
        match client.reuse().await {
            Ok(Some(next)) => {
                let (stream, prefix) = next.into_parts();
                Served::Again(stream, prefix)
            }
            _ => Served::Closed,
        }
    }

    /// Sends the granted request upstream and its response to the client; on a failure,
    /// the answer `failed` gives (when nothing was written yet) and the close.
    async fn proxy(
        &self,
        client: &mut ClientSession,
        ctx: &mut RequestCtx,
        shutdown: &ShutdownWatch,
    ) {
        let peer = match guard(|| upstream_peer(ctx)) {
            Ok(Ok(peer)) => peer,
            Ok(Err(e)) => return self.fail(client, ctx, &e).await,
            Err(_) => {
                let e = Error::explain(ErrorType::InternalError, "panic choosing the upstream");
                return self.fail(client, ctx, &e).await;
            }
        };
        let mut req = match upstream_head(client, ctx) {
            Ok(req) => req,
            Err(e) => return self.fail(client, ctx, &e).await,
        };
        let idempotent = client.req_header().method.is_idempotent();
        let key = peer.reuse_hash();
        let mut tries = 0;
        let error = loop {
            tries += 1;
            let (stream, reused) = match Pool::with(self.max_idle, |p| p.take(key)) {
                Some(stream) => (stream, true),
                None => match self.connector.new_stream(&*peer).await {
                    Ok(stream) => (stream, false),
                    // pingora marks connect errors as not to be retried (a new connection).
                    Err(e) => break e.into_up(),
                },
            };
            let mut upstream = UpstreamSession::new_with_options(stream, &*peer);
            upstream.read_timeout = peer.options.read_timeout;
            upstream.write_timeout = peer.options.write_timeout;
            let may_retry = reused && idempotent && tries < self.max_retries;
            match exchange(client, &mut upstream, req, ctx, shutdown).await {
                Ok(()) => {
                    // Kept when the upstream allows it and the response ended cleanly.
                    upstream.respect_keepalive();
                    if let Some(stream) = upstream.reuse().await {
                        let idle = peer.idle_timeout().unwrap_or(IDLE);
                        Pool::with(self.max_idle, |p| p.put(key, stream, idle));
                    }
                    return;
                }
                Err(mut e) => {
                    upstream.shutdown().await;
                    // pingora-proxy's rule: only an idempotent request, only after a failure
                    // on a reused connection before any response byte (`ReusedOnly`).
                    if e.esource() == &ErrorSource::Upstream && client.response_written().is_none()
                    {
                        e.retry.decide_reuse(reused);
                        if e.retry() && may_retry {
                            tracing::debug!(error = %e, tries, "retrying on a new upstream connection");
                            // Built again (the sent one went with the connection): no copy
                            // is kept for a retry that almost never comes.
                            req = match upstream_head(client, ctx) {
                                Ok(req) => req,
                                Err(e) => break e,
                            };
                            continue;
                        }
                    }
                    break e;
                }
            }
        };
        self.fail(client, ctx, &error).await;
    }

    /// After an error: the outcome and answer `failed` gives, and no keep-alive.
    async fn fail(&self, client: &mut ClientSession, ctx: &mut RequestCtx, e: &Error) {
        client.set_server_keepalive(None);
        let Some(answer) = failed(e, false, ctx) else {
            tracing::debug!(error = %e, request_id = %ctx.request_id, "client gone");
            return;
        };
        tracing::error!(
            "Fail to proxy: {e}, status: {}, request_id={}",
            answer.status,
            ctx.request_id
        );
        if client.response_written().is_none() {
            let _ = respond::write_answer_h1(client, &answer, &ctx.request_id).await;
        }
    }
}

/// The upstream's request head: the client's, shaped by `upstream_request` (as on the general
/// path), without its `Connection` (`keep-alive` or `close` only, anything else went to the
/// general path: the upstream connection is the gateway's own, kept alive).
fn upstream_head(client: &ClientSession, ctx: &RequestCtx) -> Result<Box<RequestHeader>> {
    let mut req = Box::new(client.req_header().clone());
    req.remove_header(&CONNECTION);
    match guard(|| upstream_request(&Downstream::of_h1(client), &mut req, ctx)) {
        Ok(Ok(())) => Ok(req),
        Ok(Err(e)) => Err(e),
        Err(_) => Error::e_explain(
            ErrorType::InternalError,
            "panic building the upstream request",
        ),
    }
}

/// Whether a parsed request is one the fast path takes (see the module doc).
fn takes(req: &RequestHeader) -> bool {
    req.version == Version::HTTP_11
        && req.method != Method::CONNECT
        && !req.headers.contains_key(CONTENT_LENGTH)
        && !req.headers.contains_key(TRANSFER_ENCODING)
        && !req.headers.contains_key(UPGRADE)
        && !req.headers.contains_key("http2-settings")
        && req.headers.get_all(CONNECTION).iter().all(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .all(|t| {
                    t.is_empty()
                        || t.eq_ignore_ascii_case(b"keep-alive")
                        || t.eq_ignore_ascii_case(b"close")
                })
        })
}

/// One request and its response: the head out; the response head read while the client is
/// watched (one that leaves ends it; bytes it sends are kept for its next request); 1xx
/// passed on; the body streamed as it comes, re-chunked when it has no length.
async fn exchange(
    client: &mut ClientSession,
    upstream: &mut UpstreamSession,
    req: Box<RequestHeader>,
    ctx: &mut RequestCtx,
    shutdown: &ShutdownWatch,
) -> Result<()> {
    upstream
        .write_request_header(req)
        .await
        .map_err(Error::into_up)?;
    let mut resp = loop {
        tokio::select! {
            read = upstream.read_response() => { read.map_err(Error::into_up)?; }
            gone = client.read_body_or_idle(true) => {
                // Only an error can come back: no body is expected, and bytes are stashed.
                return Err(gone.err().unwrap_or_else(|| {
                    Error::explain(ErrorType::ConnectionClosed, "client sent a body")
                }).into_down());
            }
        }
        let Some(head) = upstream.resp_header() else {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "no response head")
                .map_err(Error::into_up);
        };
        match head.status.as_u16() {
            // No upgrade was asked for.
            101 => {
                return Error::e_explain(ErrorType::InvalidHTTPHeader, "101 without an upgrade")
                    .map_err(Error::into_up)
            }
            100..=199 => {
                let info = Box::new(head.clone());
                within_send_timeout(
                    client.get_write_timeout(),
                    client.write_response_header(info),
                )
                .await
                .map_err(Error::into_down)?;
            }
            _ => break Box::new(head.clone()),
        }
    };
    response_headers(&mut resp, ctx)?;
    // As pingora-proxy: a body without a length is re-chunked, so the client connection
    // can be kept (pingora's writer would otherwise announce keep-alive and then close).
    let no_body =
        client.req_header().method == Method::HEAD || matches!(resp.status.as_u16(), 204 | 304);
    if !no_body
        && !resp.headers.contains_key(TRANSFER_ENCODING)
        && !resp.headers.contains_key(CONTENT_LENGTH)
        && !upstream.is_body_done()
    {
        resp.set_version(Version::HTTP_11);
        resp.insert_header(TRANSFER_ENCODING, "chunked")?;
    }
    // A drain that began while the upstream worked: this answer is the connection's last.
    if *shutdown.borrow() {
        client.set_server_keepalive(None);
    }
    within_send_timeout(
        client.get_write_timeout(),
        client.write_response_header(resp),
    )
    .await
    .map_err(Error::into_down)?;
    while let Some(chunk) = upstream.read_body_bytes().await.map_err(Error::into_up)? {
        // A read that brought no body bytes (a chunk-size line alone, trailers) writes
        // nothing: to pingora's chunked writer an empty write is the last chunk.
        if chunk.is_empty() {
            continue;
        }
        client.write_body(&chunk).await.map_err(Error::into_down)?;
    }
    within_send_timeout(client.get_write_timeout(), client.finish_body())
        .await
        .map_err(Error::into_down)?;
    Ok(())
}
