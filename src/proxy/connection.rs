//! The client connection loop: pingora's own, with our timeouts and our bound on heads.
//!
//! pingora reads the first request head of a connection with a fixed 60 s per read, waits
//! for the next request on a keep-alive connection forever, and buffers an unfinished head
//! up to 1 MiB before anything of ours runs. So this app reads each HTTP/1 request head
//! itself, into a buffer that never grows past `server.max_header_bytes` (a head that does
//! not end within it gets a 431 and the connection is closed), and hands the bytes to
//! pingora's parser as a prefix (`set_pipelined_prefix`), which then reads nothing more for
//! the head. A new connection's first byte must come within `server.header_read_timeout`,
//! a reused one's within `server.keepalive_timeout`; from its first byte, the whole head
//! must arrive within `server.header_read_timeout` (a deadline, not a per-read timeout, so
//! a client trickling one byte at a time cannot hold the connection). HTTP/2 connections
//! go to pingora, with `keepalive_timeout` as their idle timeout and `max_header_bytes` as
//! their header-list limit. An HTTP/1 connection carries at most `keepalive_requests`
//! requests. A bodyless request goes to the fast path (`super::fast`) when it is on; every
//! other request, and one the fast path hands back, to pingora-proxy.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::fast::{FastPath, Served};
use super::Gateway;
use crate::auth::{has_line_starting_any, Reject};
use crate::runtime::State;

pub struct Connections {
    proxy: Arc<HttpProxy<Gateway>>,
    state: Arc<State>,
    /// The client listener's TLS (`crate::tls::acceptor`), when it has any.
    tls: Option<Arc<Acceptor>>,
    /// `server.fast_path`: bodyless HTTP/1.1 requests served without pingora-proxy.
    fast: Option<FastPath>,
}

impl Connections {
    pub fn new(
        proxy: HttpProxy<Gateway>,
        state: Arc<State>,
        tls: Option<Arc<Acceptor>>,
        fast: Option<FastPath>,
    ) -> Self {
        Self {
            proxy: Arc::new(proxy),
            state,
            tls,
            fast,
        }
    }

    /// An HTTP/2 connection, served by pingora once its client has sent the connection
    /// preface: within `header_read_timeout`, or it is closed (pingora waits for the preface
    /// for ever, and logs an error when such a client finally leaves).
    async fn serve_h2(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
        within: Duration,
    ) -> Option<Stream> {
        let (counted, read) = super::preface::Counted::new(stream);
        let serve = self.proxy.process_new(Box::new(counted), shutdown);
        tokio::pin!(serve);
        tokio::select! {
            done = &mut serve => return done,
            () = tokio::time::sleep(within) => {}
        }
        if read.load(std::sync::atomic::Ordering::Relaxed) < super::preface::PREFACE {
            return None;
        }
        serve.await
    }
}

/// What reading one request head gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// The head is complete in the first `end` bytes of `buf` (what follows came with it:
    /// body bytes, or the next pipelined request).
    Complete { buf: BytesMut, end: usize },
    /// No end of head within `max_header_bytes`; `head_method`: the request is a `HEAD`
    /// (its answer has no content).
    TooLarge { head_method: bool },
    /// The client closed, sent nothing in time, or did not finish in time, or the server is
    /// shutting down: close without an answer.
    Closed,
}

/// Most bytes read from the client per read while looking for the end of a head.
const READ_CHUNK: usize = 4096;
/// After a 431, how much of what the client is still sending is read and dropped (so the
/// close does not turn into a reset that destroys the answer), and for how long.
const LINGER_BYTES: usize = 256 << 10;
const LINGER: Duration = Duration::from_secs(1);

/// The TCP stream inside what pingora's plain listener handed over.
fn l4_stream(stream: Stream) -> Option<pingora::protocols::l4::stream::Stream> {
    stream
        .into_any()
        .downcast::<pingora::protocols::l4::stream::Stream>()
        .ok()
        .map(|b| *b)
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
        let (header_read, idle, max_head, max_requests) = {
            let snap = self.state.load();
            let s = &snap.config.server;
            (
                s.header_read_timeout,
                s.keepalive_timeout,
                s.max_header_bytes,
                s.keepalive_requests,
            )
        };
        let stream = match &self.tls {
            None => stream,
            // The handshake within `header_read_timeout` (pingora's listener gives it no
            // bound: a client that never sends its hello would hold the task for ever).
            Some(tls) => {
                // pingora's listener is plain TCP here: its stream is an L4 one.
                let Some(l4) = l4_stream(stream) else {
                    tracing::error!("a TLS connection that is not a TCP stream: closed");
                    return None;
                };
                match pingora::time::timeout(header_read, tls.tls_handshake(l4)).await {
                    Ok(Ok(tls_stream)) => Box::new(tls_stream),
                    // A failed or unfinished handshake: the client gets rustls's alert, if
                    // any, and the close (pingora logged these at debug level, as here).
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return None;
                    }
                    Err(_) => return None,
                }
            }
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.serve_h2(stream, shutdown, header_read).await;
        }
        let mut stream = stream;
        let mut settings: Option<pingora::apps::HttpPersistentSettings> = None;
        let mut first_wait = header_read;
        // Bytes read past a bodyless request: the start of the next, pipelined one.
        let mut pending = BytesMut::new();
        let mut served: u32 = 0;
        loop {
            let start = std::mem::take(&mut pending);
            let head = if start.is_empty() {
                let mut watch = shutdown.clone();
                tokio::select! {
                    head = read_head(&mut stream, start, max_head, first_wait, header_read) => head,
                    // A connection parked between requests closes when the server drains.
                    _ = watch.wait_for(|stop| *stop) => Head::Closed,
                }
            } else {
                // A request that has begun to arrive is read and answered, draining or not
                // (then with `Connection: close`).
                read_head(&mut stream, start, max_head, first_wait, header_read).await
            };
            let (prefix, carries) = match head {
                // pingora, with pipelining off, drops what it finds past a request and
                // closes: a pipelined request would be lost unanswered. After a request
                // that cannot carry anything more, the gateway keeps those bytes for the
                // next round itself (after one that can, they stay pingora's: its body).
                Head::Complete { mut buf, end } => {
                    let carries = may_carry_more(&buf[..end]);
                    if end < buf.len() && !carries {
                        pending = buf.split_off(end);
                    }
                    (buf, carries)
                }
                Head::TooLarge { head_method } => {
                    refuse_head(&mut stream, &self.state, head_method).await;
                    return None;
                }
                Head::Closed => return None,
            };
            served = served.saturating_add(1);
            // `keepalive_requests`: the last request of a connection is answered with
            // `Connection: close`.
            let last = max_requests != 0 && served >= max_requests;
            let prefix = match &self.fast {
                Some(fast) if !carries => match fast.serve(stream, prefix, last, shutdown).await {
                    Served::Again(next, more) => {
                        stream = next;
                        // What the client sent while it was served came after `pending`.
                        if let Some(more) = more {
                            pending.unsplit(more);
                        }
                        first_wait = idle;
                        continue;
                    }
                    Served::Closed => return None,
                    Served::Close(mut stream) => {
                        linger(&mut stream).await;
                        return None;
                    }
                    Served::General(back, head) => {
                        stream = back;
                        head
                    }
                },
                _ => prefix,
            };
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                None => session
                    .set_keepalive((!*shutdown.borrow()).then_some(whole_seconds(header_read))),
                Some(s) => {
                    s.apply_to_session(&mut session);
                    // Bytes read past a request are handed over only as our prefix: with
                    // pingora's pipelining on, its own saved bytes would be replaced by it.
                    session.set_pipelining_enabled(false);
                    if session.get_keepalive().is_some() {
                        session.set_keepalive((!*shutdown.borrow()).then_some(whole_seconds(idle)));
                    }
                }
            }
            if last {
                session.set_keepalive_reuses_remaining(Some(0));
            }
            session.set_pipelined_prefix(prefix);
            let (next, next_settings) = self
                .proxy
                .process_new_http(session, shutdown)
                .await?
                .consume();
            stream = next;
            settings = next_settings;
            first_wait = idle;
        }
    }

    async fn cleanup(&self) {
        // Wakes keep-alive connections parked between requests so they close.
        self.proxy.http_cleanup().await;
    }
}

/// Reads one request head into a buffer of at most `max_head + 1` bytes (reads stop as soon
/// as the head is complete; what they brought past it stays in the buffer). The first byte
/// must come within `first_wait`, the rest of the head within `whole` of it.
pub async fn read_head<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    start: BytesMut,
    max_head: usize,
    first_wait: Duration,
    whole: Duration,
) -> Head {
    let limit = max_head + 1;
    let mut buf = if start.is_empty() {
        BytesMut::with_capacity(READ_CHUNK.min(limit))
    } else {
        start
    };
    let mut deadline = Instant::now() + first_wait;
    let mut search = HeadSearch::default();
    if search.find_start(&buf) {
        deadline = Instant::now() + whole;
    }
    loop {
        let too_large = match search.end(&buf) {
            Some(end) if end <= max_head => return Head::Complete { buf, end },
            Some(_) => true,
            None => buf.len() > max_head,
        };
        if too_large {
            let head_method = search
                .start
                .is_some_and(|at| buf[at..].starts_with(b"HEAD "));
            return Head::TooLarge { head_method };
        }
        let room = (limit - buf.len()).min(READ_CHUNK);
        if buf.capacity() - buf.len() < room {
            // Grown once, to the bound: `BytesMut` doubles, which would hold up to twice
            // `max_header_bytes` for a head that stops just short of it.
            let mut bigger = BytesMut::with_capacity(limit);
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        let mut limited = (&mut *stream).take(room as u64);
        // pingora's timer (a lazily armed wheel): cheaper per read than tokio's, and armed
        // only when the read has to wait.
        let left = deadline.saturating_duration_since(Instant::now());
        match pingora::time::timeout(left, limited.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Head::Closed,
            Ok(Ok(_)) => {}
        }
        // Blank lines a client may send before a request (RFC 9112 §2.2) do not start the
        // head or its deadline.
        if search.start.is_none() && search.find_start(&buf) {
            deadline = Instant::now() + whole;
        }
    }
}

/// Whether a request with this head can be followed by bytes that are its own (a body, or
/// a tunnel after an upgrade or CONNECT), not a next request. Errs towards yes: a false
/// yes only hands the bytes to pingora, as before.
fn may_carry_more(head: &[u8]) -> bool {
    let first = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    head[first..].starts_with(b"CONNECT")
        || has_line_starting_any(head, &[b"content-length", b"transfer-encoding", b"upgrade"])
}

/// Where a head starts and how far its end has been looked for, so that a head arriving
/// a byte at a time is scanned once in all, not once per read.
#[derive(Debug, Default)]
pub struct HeadSearch {
    /// The first byte past the leading empty lines (CR and LF), which an HTTP/1 parser
    /// skips before the request line; `None` until one has arrived.
    start: Option<usize>,
    /// Bytes already looked at (for the start, then for the end).
    scanned: usize,
}

impl HeadSearch {
    /// Looks for the first non-blank byte among the bytes not yet seen.
    fn find_start(&mut self, buf: &[u8]) -> bool {
        let from = self.scanned.min(buf.len());
        if let Some(i) = buf[from..].iter().position(|&b| b != b'\r' && b != b'\n') {
            self.start = Some(from + i);
            self.scanned = from + i;
            return true;
        }
        self.scanned = buf.len();
        false
    }

    /// The end of the head (just past its empty line: `\n\n` or `\n\r\n`, the bare-LF
    /// forms httparse accepts included), or `None` while it has not arrived.
    pub fn end(&mut self, buf: &[u8]) -> Option<usize> {
        if self.start.is_none() && !self.find_start(buf) {
            return None;
        }
        let start = self.start?;
        let from = self.scanned.saturating_sub(2).max(start).min(buf.len());
        self.scanned = buf.len();
        memchr::memchr_iter(b'\n', &buf[from..]).find_map(|i| {
            let at = from + i;
            match (buf.get(at + 1), buf.get(at + 2)) {
                (Some(b'\n'), _) => Some(at + 2),
                (Some(b'\r'), Some(b'\n')) => Some(at + 3),
                _ => None,
            }
        })
    }
}

/// Answers a head over `max_header_bytes` with 431 (the usual JSON refusal), counts and
/// logs it like any refusal, and closes after reading a little of what the client is still
/// sending (a close with unread input is a reset, which can destroy the answer in flight).
async fn refuse_head(stream: &mut Stream, state: &State, head_method: bool) {
    let reason = Reject::HeadersTooLarge;
    let request_id = super::fresh_request_id();
    let started = std::time::Instant::now();
    let _ = stream
        .write_all(&super::respond::rejection_bytes(
            reason,
            &request_id,
            head_method,
        ))
        .await;
    let _ = stream.flush().await;
    super::log_refused_head(state, reason, &request_id, started);
    linger(stream).await;
}

/// Closes after an answer gently: the write side first (the client sees the answer end),
/// then what the client is still sending is read and dropped, up to `LINGER_BYTES` for up
/// to `LINGER` (a close with unread input is a reset, which can destroy the answer).
async fn linger(stream: &mut Stream) {
    let _ = pingora::time::timeout(LINGER, stream.shutdown()).await;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    let until = Instant::now() + LINGER;
    while drained < LINGER_BYTES {
        let left = until.saturating_duration_since(Instant::now());
        match pingora::time::timeout(left, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(bytes: &[u8]) -> Option<usize> {
        HeadSearch::default().end(bytes)
    }

    #[test]
    fn finds_the_end_of_a_head() {
        assert_eq!(end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"), Some(27));
        assert_eq!(end(b"GET / HTTP/1.1\nHost: a\n\n"), Some(24));
        assert_eq!(end(b"GET / HTTP/1.1\r\nHost: a\n\r\n"), Some(26));
        assert_eq!(
            end(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
            Some(22),
            "leading blank lines"
        );
        assert_eq!(end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(end(b"\r\n\r\n"), None);
        // Searched incrementally: an end that straddles two reads is found, and blank
        // lines arriving one by one are looked at once each.
        let head = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut search = HeadSearch::default();
        assert_eq!(search.end(&head[..1]), None);
        assert_eq!(search.end(&head[..2]), None);
        assert_eq!(search.start, None);
        assert_eq!(search.end(&head[..27]), None);
        assert_eq!(search.start, Some(2));
        assert_eq!(search.scanned, 27);
        assert_eq!(search.end(head), Some(29));
    }

    async fn read(chunks: &[&[u8]], max: usize) -> Head {
        let mut mock = tokio_test_stream(chunks);
        read_head(
            &mut mock,
            BytesMut::new(),
            max,
            Duration::from_secs(5),
            Duration::from_secs(5),
        )
        .await
    }

    /// A reader that returns `chunks` one per read, then EOF.
    fn tokio_test_stream(chunks: &[&[u8]]) -> impl tokio::io::AsyncRead + Unpin {
        let mut b = tokio::io::duplex(1 << 20);
        let data: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        tokio::spawn(async move {
            for c in data {
                let _ = b.1.write_all(&c).await;
                tokio::task::yield_now().await;
            }
        });
        b.0
    }

    #[tokio::test]
    async fn heads_are_bounded_while_they_are_read() {
        let head = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            read(&[&head[..5], &head[5..]], 1024).await,
            Head::Complete {
                buf: BytesMut::from(&head[..]),
                end: head.len()
            }
        );
        // Exactly at the limit is fine; one byte more is not.
        let mut at_limit = b"GET /x HTTP/1.1\r\nX: ".to_vec();
        at_limit.resize(1024 - 4, b'a');
        at_limit.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(
            read(&[&at_limit], 1024).await,
            Head::Complete { .. }
        ));
        let mut over = at_limit.clone();
        over.insert(20, b'a');
        assert_eq!(
            read(&[&over], 1024).await,
            Head::TooLarge { head_method: false }
        );
        let mut head = over.clone();
        head.splice(0..3, *b"HEAD");
        assert_eq!(
            read(&[&head], 1024).await,
            Head::TooLarge { head_method: true }
        );
        // A megabyte sent as one stream is cut at the limit, never buffered.
        let big = vec![b'a'; 1 << 20];
        assert_eq!(
            read(&[b"GET / HTTP/1.1\r\nX: ", &big], 32 << 10).await,
            Head::TooLarge { head_method: false }
        );
        assert_eq!(
            read(&[b"GET / HT"], 1024).await,
            Head::Closed,
            "EOF mid-head"
        );
    }

    #[test]
    fn what_may_follow_a_head() {
        assert!(!may_carry_more(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(may_carry_more(
            b"POST / HTTP/1.1\r\ncontent-LENGTH: 3\r\n\r\n"
        ));
        assert!(may_carry_more(
            b"POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n"
        ));
        assert!(may_carry_more(
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"
        ));
        assert!(may_carry_more(b"\r\nCONNECT a:443 HTTP/1.1\r\n\r\n"));
    }

    #[tokio::test]
    async fn the_whole_head_has_a_deadline() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let reader = tokio::spawn(async move {
            read_head(
                &mut server,
                BytesMut::new(),
                1024,
                Duration::from_secs(60),
                Duration::from_millis(300),
            )
            .await
        });
        // A byte every 100 ms: each read is quick, yet the head (3 s at that pace) is cut
        // 300 ms after its first byte. Bounds far apart: no timing flake on a busy machine.
        let start = Instant::now();
        for b in b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" {
            if client.write_all(&[*b]).await.is_err() || reader.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(reader.await.unwrap(), Head::Closed);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
}
