//! What the fast path (`server.fast_path`, bodyless HTTP/1.1) must do exactly as the general
//! path does: every response framing, 1xx, HEAD/204/304, bodies streamed, clients that leave,
//! stale pooled connections, pipelining, `Connection` lists. `make test` runs these (like
//! every integration test) once per path.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

/// Whether this run's gateways take the fast path (`AUTHGATE_FAST_PATH`, default on).
fn fast_path() -> bool {
    std::env::var("AUTHGATE_FAST_PATH").as_deref() != Ok("false")
}

/// One request head as an upstream reads it.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    head: String,
    /// Which upstream connection (0 first) and which request on it (0 first).
    conn: usize,
    nth: usize,
}

/// A scripted upstream on raw sockets: `answer` gets each request head and the stream, and
/// says whether the connection is kept for another request.
struct RawUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Req>>>,
}

impl RawUpstream {
    fn start(answer: impl Fn(&Req, &mut TcpStream) -> bool + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let conns = Arc::new(AtomicUsize::new(0));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (answer, seen, conn) = (
                    answer.clone(),
                    seen2.clone(),
                    conns.fetch_add(1, Ordering::SeqCst),
                );
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    for nth in 0.. {
                        let mut head = String::new();
                        loop {
                            let mut line = String::new();
                            match reader.read_line(&mut line) {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                            head.push_str(&line);
                            if line == "\r\n" {
                                break;
                            }
                        }
                        // A body (by `Content-Length` only) is read and dropped.
                        let length = head
                            .lines()
                            .filter_map(|l| l.split_once(':'))
                            .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
                            .and_then(|(_, v)| v.trim().parse::<usize>().ok());
                        if let Some(n) = length {
                            let mut body = vec![0; n];
                            if reader.read_exact(&mut body).is_err() {
                                return;
                            }
                        }
                        let mut words = head.split(' ');
                        let req = Req {
                            method: words.next().unwrap_or("").to_owned(),
                            path: words.next().unwrap_or("").to_owned(),
                            head: head.clone(),
                            conn,
                            nth,
                        };
                        seen.lock().unwrap().push(req.clone());
                        if !answer(&req, &mut stream) {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, seen }
    }

    fn seen(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }
}

fn gateway_for(upstream: &RawUpstream) -> (JwksServer, Gateway) {
    gateway_with(upstream, "threads = 2")
}

/// With `server` lines under `[server]` in place of the standard `threads = 2`.
fn gateway_with(upstream: &RawUpstream, server: &str) -> (JwksServer, Gateway) {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let config = standard_config(&jwks.url(), &format!("http://{}", upstream.addr))
        .replace("threads = 2", server);
    (jwks, Gateway::start(&config))
}

/// A response as a client reads it off a kept-alive connection.
#[derive(Debug)]
struct Got {
    /// 1xx statuses before the final one.
    informational: Vec<u16>,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut status_line = String::new();
    r.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("header line");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        let (n, v) = line.split_once(':').expect("header");
        headers.push((n.trim().to_owned(), v.trim().to_owned()));
    }
    (status, headers)
}

/// Reads one response, its body framed as the client must frame it.
fn read_response(r: &mut impl BufRead, head_request: bool) -> Got {
    let mut informational = Vec::new();
    let (status, headers) = loop {
        let (status, headers) = read_head(r);
        if (100..200).contains(&status) {
            informational.push(status);
            continue;
        }
        break (status, headers);
    };
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if head_request || status == 204 || status == 304 {
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).expect("chunk size");
            let n = usize::from_str_radix(size.trim(), 16).expect("chunk size is hex");
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).expect("chunk");
            body.extend_from_slice(&chunk[..n]);
            if n == 0 {
                break;
            }
        }
    } else if let Some(n) = get("content-length") {
        let mut b = vec![0; n.parse().expect("length")];
        r.read_exact(&mut b).expect("body");
        body = b;
    } else {
        r.read_to_end(&mut body).expect("body to the close");
    }
    Got {
        informational,
        status,
        headers,
        body,
    }
}

fn client(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn send(s: &mut TcpStream, method: &str, path: &str, extra: &str) {
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n"
    )
    .unwrap();
}

/// Answers with the request's path as the body, keeping the connection.
fn echo_path(req: &Req, s: &mut TcpStream) -> bool {
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
        req.path.len(),
        req.path
    );
    true
}

/// The response each path of the scripted upstream gives (`/public/<kind>`).
fn framings(req: &Req, s: &mut TcpStream) -> bool {
    let kind = req.path.trim_start_matches("/public/");
    let reply: &[u8] = match kind {
        "length" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
        "close" => b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello",
        "head" => b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
        "204" => b"HTTP/1.1 204 No Content\r\n\r\n",
        "304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n",
        "trailer" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
        "hop" => b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Foo\r\nX-Foo: secret\r\nKeep-Alive: timeout=1\r\nContent-Length: 5\r\n\r\nhello",
        // The chunk-size line and its data in separate writes, then the last chunk in two.
        "split" => {
            for part in [
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n"[..],
                b"hello\r\n0\r\n",
                b"\r\n",
            ] {
                let _ = s.write_all(part);
                let _ = s.flush();
                std::thread::sleep(Duration::from_millis(50));
            }
            return true;
        }
        "early" => b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    };
    let _ = s.write_all(reply);
    kind != "close"
}

#[test]
fn every_response_framing_reaches_the_client_on_one_kept_connection() {
    let up = RawUpstream::start(framings);
    let (_jwks, gw) = gateway_for(&up);
    let (mut s, mut r) = client(gw.addr);
    for (method, kind, status, body) in [
        ("GET", "length", 200, &b"hello"[..]),
        ("GET", "chunked", 200, b"hello"),
        // Close-delimited upstream: re-chunked, so the client's connection is kept.
        ("GET", "close", 200, b"hello"),
        ("HEAD", "head", 200, b""),
        ("GET", "204", 204, b""),
        ("GET", "304", 304, b""),
        ("GET", "early", 200, b"ok"),
        // Reads that bring no body bytes (a chunk-size line alone, trailers) add no empty
        // chunk, which would end the body early and leave the rest to desync the connection.
        ("GET", "split", 200, b"hello"),
        ("GET", "trailer", 200, b"hello"),
        ("GET", "hop", 200, b"hello"),
        ("GET", "length", 200, b"hello"),
    ] {
        send(&mut s, method, &format!("/public/{kind}"), "");
        let got = read_response(&mut r, method == "HEAD");
        assert_eq!(
            (got.status, &got.body[..]),
            (status, body),
            "{kind}: {got:?}"
        );
        assert_ne!(got.header("connection"), Some("close"), "{kind}: {got:?}");
        match kind {
            "close" => assert_eq!(got.header("transfer-encoding"), Some("chunked"), "{got:?}"),
            "head" => assert_eq!(got.header("content-length"), Some("1000"), "{got:?}"),
            "304" => assert_eq!(got.header("etag"), Some("\"v1\""), "{got:?}"),
            "early" => assert_eq!(got.informational, vec![103], "{got:?}"),
            // The upstream's hop-by-hop headers are its own connection's.
            "hop" => assert!(
                got.header("x-foo").is_none() && got.header("keep-alive").is_none(),
                "{got:?}"
            ),
            _ => {}
        }
    }
}

/// A body larger than any buffer is passed on as it arrives: the upstream sends the rest
/// only once the client has the first megabyte (a gateway that buffered the whole body
/// would wait forever).
#[test]
fn large_bodies_are_streamed_not_buffered() {
    const PART: usize = 1 << 20;
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let up = RawUpstream::start(move |req, s| {
        let part = vec![b'a'; PART];
        let chunked = req.path.ends_with("chunked");
        if chunked {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            let _ = write!(s, "{PART:x}\r\n");
            let _ = s.write_all(&part);
            let _ = s.write_all(b"\r\n");
        } else {
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 4 * PART);
            let _ = s.write_all(&part);
        }
        // The rest only once the client said it has the first part.
        if go_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(20))
            .is_err()
        {
            return false;
        }
        if chunked {
            let _ = write!(s, "{:x}\r\n", 3 * PART);
            let _ = s.write_all(&vec![b'b'; 3 * PART]);
            let _ = s.write_all(b"\r\n0\r\n\r\n");
        } else {
            let _ = s.write_all(&vec![b'b'; 3 * PART]);
        }
        true
    });
    let (_jwks, gw) = gateway_for(&up);
    for path in ["/public/length", "/public/chunked"] {
        let (mut s, mut r) = client(gw.addr);
        send(&mut s, "GET", path, "");
        let (status, headers) = read_head(&mut r);
        assert_eq!(status, 200, "{path}: {headers:?}");
        let chunked = headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v == "chunked");
        // Read the wire until a megabyte of the body's first part has come through.
        let mut got = 0;
        let mut buf = vec![0; 64 << 10];
        while got < PART {
            let n = r.read(&mut buf).unwrap_or_else(|e| {
                panic!("{path}: the first part never came through ({got} bytes): {e}")
            });
            assert!(n > 0, "{path}: closed after {got} bytes");
            got += buf[..n].iter().filter(|&&b| b == b'a').count();
        }
        go_tx.send(()).unwrap();
        // The rest arrives too (framed as the head said).
        let mut rest = 0;
        let end: &[u8] = if chunked { b"0\r\n\r\n" } else { b"" };
        let mut tail = Vec::new();
        while rest < 3 * PART || (chunked && !tail.ends_with(end)) {
            let n = r.read(&mut buf).expect("the rest");
            assert!(n > 0, "{path}: closed after {rest} bytes of the rest");
            rest += buf[..n].iter().filter(|&&b| b == b'b').count();
            tail.extend_from_slice(&buf[..n]);
            let keep = tail.len().saturating_sub(8);
            tail.drain(..keep);
        }
        assert_eq!(rest, 3 * PART, "{path}");
    }
}

/// A client that leaves while the upstream is still working: the gateway drops the upstream
/// connection at once (the upstream sees it close long before it would have answered) and
/// logs the request once, with no status.
#[test]
fn a_client_that_leaves_frees_the_upstream_connection() {
    let (closed_tx, closed_rx) = mpsc::channel::<bool>();
    let closed_tx = Mutex::new(closed_tx);
    let up = RawUpstream::start(move |_, s| {
        // Wait up to 10 s for the gateway to close the connection; answer if it does not.
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 1];
        let closed = matches!(s.read(&mut b), Ok(0));
        let _ = closed_tx.lock().unwrap().send(closed);
        if !closed {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
        false
    });
    let (_jwks, gw) = gateway_for(&up);
    let (mut s, _r) = client(gw.addr);
    send(
        &mut s,
        "GET",
        "/public/slow",
        "X-Request-Id: leaves-early\r\n",
    );
    std::thread::sleep(Duration::from_millis(300));
    drop(s);
    drop(_r);
    assert_eq!(
        closed_rx.recv_timeout(Duration::from_secs(20)),
        Ok(true),
        "the upstream connection outlived the client"
    );
    let line = gw.access_line("leaves-early");
    assert_eq!(line["status"], 0, "{line}");
    assert_eq!(line["decision"], "allowed", "{line}");
}

/// A pooled upstream connection the upstream dropped: an idempotent request is sent again on
/// a new connection (the client sees nothing); a POST is not (502).
#[test]
fn a_stale_pooled_connection_is_retried_only_for_idempotent_requests() {
    let up = RawUpstream::start(|req, s| {
        // The first connection answers its first request, then reads the second and closes
        // without a word (an upstream restarting, a keep-alive timeout lost in flight).
        if req.conn == 0 && req.nth == 1 {
            return false;
        }
        echo_path(req, s)
    });
    // One worker thread: one pool of idle upstream connections (each thread has its own).
    let (_jwks, gw) = gateway_with(&up, "threads = 1");
    let first = get(gw.addr, "/public/one", &[]);
    assert_eq!((first.status, first.body.as_str()), (200, "/public/one"));
    let second = get(gw.addr, "/public/two", &[]);
    assert_eq!(
        (second.status, second.body.as_str()),
        (200, "/public/two"),
        "{second:?}"
    );
    let seen: Vec<_> = up
        .seen()
        .iter()
        .map(|r| (r.path.clone(), r.conn, r.nth))
        .collect();
    assert_eq!(
        seen,
        [
            ("/public/one".to_owned(), 0, 0),
            ("/public/two".to_owned(), 0, 1),
            ("/public/two".to_owned(), 1, 0)
        ],
        "sent again on a new connection"
    );

    // A POST (no body) on a stale connection is not sent twice.
    let up = RawUpstream::start(|req, s| {
        if req.conn == 0 && req.nth == 1 {
            return false;
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        true
    });
    let (_jwks2, gw) = gateway_with(&up, "threads = 1");
    assert_eq!(get(gw.addr, "/public/one", &[]).status, 200);
    let post = crate::support::http::request(gw.addr, "POST", "/public/two", &[]);
    assert_eq!(
        (post.status, post.reason().as_str()),
        (502, "upstream_unavailable"),
        "{post:?}"
    );
    assert_eq!(
        up.seen().iter().filter(|r| r.method == "POST").count(),
        1,
        "a POST is never sent twice"
    );
}

/// Requests pipelined in one write, and (on the fast path) one sent while the first waits
/// for a slow upstream, are all answered, in order, on the same connection.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = RawUpstream::start(|req, s| {
        if req.path.ends_with("slow") {
            std::thread::sleep(Duration::from_millis(500));
        }
        echo_path(req, s)
    });
    let (_jwks, gw) = gateway_for(&up);
    let (mut s, mut r) = client(gw.addr);
    s.write_all(
        b"GET /public/a HTTP/1.1\r\nHost: localhost\r\n\r\nGET /public/b HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .unwrap();
    for want in ["/public/a", "/public/b"] {
        let got = read_response(&mut r, false);
        assert_eq!(
            (got.status, &got.body[..]),
            (200, want.as_bytes()),
            "{got:?}"
        );
    }
    // The second request arrives while the first is at the (slow) upstream. pingora-proxy
    // (the general path) reads it as data after the end of the first request's body, and
    // fails the first with a 400 and the close: a known limit of the general path, which
    // the fast path does not share (README, "The fast path").
    if !fast_path() {
        return;
    }
    send(&mut s, "GET", "/public/slow", "");
    std::thread::sleep(Duration::from_millis(150));
    send(&mut s, "GET", "/public/c", "");
    for want in ["/public/slow", "/public/c"] {
        let got = read_response(&mut r, false);
        assert_eq!(
            (got.status, &got.body[..]),
            (200, want.as_bytes()),
            "{got:?}"
        );
    }
}

/// `Connection: close` is honoured (answered with `Connection: close`, then closed), and the
/// headers a `Connection` list names never reach the upstream.
#[test]
fn connection_lists_are_honoured_and_their_headers_dropped() {
    let up = RawUpstream::start(framings);
    let (_jwks, gw) = gateway_for(&up);
    let (mut s, mut r) = client(gw.addr);
    send(
        &mut s,
        "GET",
        "/public/length",
        "Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n",
    );
    let got = read_response(&mut r, false);
    assert_eq!(got.status, 200, "{got:?}");
    send(&mut s, "GET", "/public/length", "Connection: close\r\n");
    let got = read_response(&mut r, false);
    assert_eq!((got.status, got.header("connection")), (200, Some("close")));
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).ok(), Some(0), "closed after it");
    for req in up.seen() {
        let head = req.head.to_ascii_lowercase();
        assert!(!head.contains("x-secret"), "{head}");
        assert!(!head.contains("keep-alive"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
    }
}

/// A drain that begins while the upstream is working: the answer says `Connection: close`,
/// and the connection then ends with a close, not a reset, though the client had already
/// sent its next request (which it must send again elsewhere). The general path answers
/// such a pipelined request with a 400 (see `pipelined_requests_are_answered_in_order`).
#[test]
fn a_drain_mid_request_answers_with_close_and_closes_gently() {
    if !fast_path() {
        return;
    }
    let up = RawUpstream::start(|req, s| {
        std::thread::sleep(Duration::from_millis(600));
        echo_path(req, s)
    });
    let (_jwks, gw) = gateway_for(&up);
    let (mut s, mut r) = client(gw.addr);
    send(&mut s, "GET", "/public/slow", "");
    std::thread::sleep(Duration::from_millis(150));
    gw.signal("TERM");
    std::thread::sleep(Duration::from_millis(150));
    send(&mut s, "GET", "/public/after", "");
    let got = read_response(&mut r, false);
    assert_eq!(
        (got.status, &got.body[..], got.header("connection")),
        (200, &b"/public/slow"[..], Some("close")),
        "{got:?}"
    );
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest)),
        Err(e) => panic!("the connection was reset, not closed: {e}"),
    }
    assert!(
        !up.seen().iter().any(|r| r.path == "/public/after"),
        "a request read during a drain after a `close` answer went upstream"
    );
}

/// `keepalive_requests`: a connection carries that many requests (bodyless or not, on
/// either path); the last is answered with `Connection: close`, and the connection closes.
#[test]
fn a_connection_carries_at_most_keepalive_requests() {
    let up = RawUpstream::start(framings);
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let gw = Gateway::start(
        &standard_config(&jwks.url(), &format!("http://{}", up.addr))
            .replace("threads = 2", "threads = 2\nkeepalive_requests = 3"),
    );
    let (mut s, mut r) = client(gw.addr);
    send(&mut s, "GET", "/public/length", "");
    let first = read_response(&mut r, false);
    // A request with a body (the general path) counts too.
    send(&mut s, "POST", "/public/length", "Content-Length: 1\r\n");
    s.write_all(b"x").unwrap();
    let second = read_response(&mut r, false);
    send(&mut s, "GET", "/public/length", "");
    let third = read_response(&mut r, false);
    for (n, got) in [(1, &first), (2, &second), (3, &third)] {
        assert_eq!(got.status, 200, "request {n}: {got:?}");
        let close = got.header("connection") == Some("close");
        assert_eq!(close, n == 3, "request {n}: {got:?}");
    }
    let mut rest = Vec::new();
    assert_eq!(
        r.read_to_end(&mut rest).ok(),
        Some(0),
        "closed after the third"
    );
}

/// The ready line says which path bodyless HTTP/1.1 requests take: `server.fast_path`
/// (default true), unless `AUTHGATE_FAST_PATH` says otherwise.
#[test]
fn the_ready_line_names_the_path() {
    let ready = |gw: &Gateway| -> serde_json::Value {
        assert!(gw.wait_log("authgate ready", Duration::from_secs(5)));
        let logs = gw.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("authgate ready"))
            .expect("ready line");
        serde_json::from_str(line).expect("JSON")
    };
    let up = RawUpstream::start(framings);
    let (_jwks, gw) = gateway_for(&up);
    assert_eq!(ready(&gw)["fast_path"], fast_path(), "{}", gw.logs());
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let off = Gateway::start(
        &standard_config(&jwks.url(), &format!("http://{}", up.addr))
            .replace("threads = 2", "threads = 2\nfast_path = false"),
    );
    assert_eq!(ready(&off)["fast_path"], false, "{}", off.logs());
    assert_eq!(get(off.addr, "/public/length", &[]).body, "hello");
}
