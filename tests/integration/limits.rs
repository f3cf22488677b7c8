//! Client timeouts: a slow request head (slowloris) and an idle keep-alive connection are
//! closed by the gateway, on its own clock.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

fn limits_config(jwks: &str, upstream: &str) -> String {
    standard_config(jwks, upstream).replace(
        "shutdown_grace = \"1s\"",
        // Buffered reads and the work-stealing runtime here (pingora's defaults); every
        // other test runs ours: unbuffered, one runtime per thread.
        "shutdown_grace = \"1s\"\nheader_read_timeout = \"1s\"\nkeepalive_timeout = \"2s\"\nread_buffer_bytes = 65536\nwork_stealing = true",
    )
}

/// Reads until the peer closes; returns what came and how long it took.
fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, Duration) {
    let t = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return (buf, t.elapsed()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn a_stalled_request_head_is_closed_after_header_read_timeout() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let gw = Gateway::start(&limits_config(&jwks.url(), &upstream.url()));

    // Half a head, then silence.
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let (got, waited) = read_until_closed(&mut s);
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(4),
        "slowloris held on for {waited:?}"
    );
    assert!(!String::from_utf8_lossy(&got).contains(" 200 "));
    assert_eq!(upstream.count(), 0);

    // A connection that never sends a byte goes the same way.
    let mut s = TcpStream::connect(gw.addr).unwrap();
    let (_, waited) = read_until_closed(&mut s);
    assert!(
        waited < Duration::from_secs(4),
        "idle new connection held for {waited:?}"
    );

    // A head sent in time is served.
    assert_eq!(get(gw.addr, "/public/x", &[]).status, 200);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_keepalive_timeout() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let gw = Gateway::start(&limits_config(&jwks.url(), &upstream.url()));

    let mut s = TcpStream::connect(gw.addr).unwrap();
    let req = b"GET /public/x HTTP/1.1\r\nHost: localhost\r\n\r\n";
    s.write_all(req).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut chunk = [0u8; 4096];
    let n = s.read(&mut chunk).unwrap();
    assert!(String::from_utf8_lossy(&chunk[..n]).starts_with("HTTP/1.1 200"));
    // The connection stays usable within the idle timeout...
    std::thread::sleep(Duration::from_millis(1000));
    s.write_all(req).unwrap();
    let n = s.read(&mut chunk).unwrap();
    assert!(String::from_utf8_lossy(&chunk[..n]).starts_with("HTTP/1.1 200"));
    // ...and is closed once idle for longer (2s here; pingora's default is forever).
    let (rest, waited) = read_until_closed(&mut s);
    assert!(rest.is_empty());
    assert!(
        waited >= Duration::from_millis(1500),
        "closed too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "idle connection held for {waited:?}"
    );
    assert_eq!(upstream.count(), 2);
}

/// Issue 11, finding 2: a head over `max_header_bytes` is cut while it is being read (the
/// gateway once buffered up to 1 MiB per connection first): 431 with the usual refusal,
/// before the client has even finished sending, logged and counted.
#[test]
fn a_head_over_max_header_bytes_is_refused_while_it_is_read() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let gw = Gateway::start(&standard_config(&jwks.url(), &upstream.url()));
    gw.wait_ready();
    let mut s = TcpStream::connect(gw.addr).unwrap();
    let mut head = b"GET /public/x HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
    head.resize(40 << 10, b'a');
    s.write_all(&head).unwrap();
    // No end of head sent: the answer comes anyway, once 32 KiB have been read.
    let (got, _) = read_until_closed(&mut s);
    let r = crate::support::http::parse(&got);
    assert_eq!(r.status, 431, "{r:?}");
    assert_eq!(r.reason(), "headers_too_large");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(gw.wait_log("headers_too_large", Duration::from_secs(5)));
    assert_eq!(
        metric_value(
            &gw.metrics(),
            "authgate_rejections_total{reason=\"headers_too_large\",route=\"-\"}"
        ),
        1.0
    );
    // Just under the limit is served; HTTP/1.0 and bare-LF heads too. HTTP/1.0 without any
    // host is refused: the upstream would pick its default virtual host.
    let mut ok =
        b"GET /public/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: ".to_vec();
    ok.resize((32 << 10) - 4, b'a');
    ok.extend_from_slice(b"\r\n\r\n");
    assert_eq!(send(gw.addr, &ok).status, 200);
    let r = send(gw.addr, b"GET /public/x HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.reason().as_str()), (400, "bad_host"), "{r:?}");
    assert_eq!(
        send(
            gw.addr,
            b"GET /public/x HTTP/1.0\r\nHost: localhost\r\n\r\n"
        )
        .status,
        200
    );
    assert_eq!(
        send(
            gw.addr,
            b"\r\nGET /public/x HTTP/1.1\nHost: localhost\nConnection: close\n\n"
        )
        .status,
        200
    );
    assert_eq!(upstream.count(), 3);
}

/// A client sending a head one byte at a time, each byte well within the read timeout,
/// is cut `header_read_timeout` after its first byte (it was once per read, so such a
/// client could hold a connection for `max_header_bytes` reads).
#[test]
fn a_trickled_head_is_cut_at_the_head_deadline() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let gw = Gateway::start(&limits_config(&jwks.url(), &upstream.url()));
    let mut s = TcpStream::connect(gw.addr).unwrap();
    let head = b"GET /public/x HTTP/1.1\r\nHost: localhost\r\nX-Slow: 123456789\r\n\r\n";
    let started = Instant::now();
    let mut closed_after = None;
    for b in head {
        // 300 ms a byte: the whole head would take ~17 s; the deadline is 1 s.
        if s.write_all(&[*b]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut one = [0u8; 1];
        match s.read(&mut one) {
            Ok(0) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(_) => panic!("an answer to an unfinished head"),
            Err(_) => {} // nothing yet: still open
        }
    }
    let closed_after = closed_after.expect("the trickled head was never cut");
    assert!(
        closed_after < Duration::from_secs(6),
        "held {closed_after:?}"
    );
    assert_eq!(upstream.count(), 0);
}

/// What 100 clients sending 1 MiB heads cost (issue 11 measured +111 MB of RSS): each is cut
/// at `max_header_bytes`, so the gateway's peak resident size grows by a few MiB, not by
/// the megabytes the clients send.
#[test]
fn large_heads_from_many_clients_do_not_grow_memory() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let gw = Gateway::start(&standard_config(&jwks.url(), &upstream.url()));
    gw.wait_ready();
    assert_eq!(get(gw.addr, "/public/x", &[]).status, 200);
    let before = gw.memory_kib("VmHWM");
    let addr = gw.addr;
    let clients: Vec<_> = (0..100)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut head = b"GET /public/x HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
                head.resize(1 << 20, b'a');
                // The gateway stops reading at 32 KiB: the send fails or stalls.
                let _ = s.write_all(&head);
                let (got, _) = read_until_closed(&mut s);
                crate::support::http::parse(&got).status
            })
        })
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(statuses.iter().all(|&s| s == 431 || s == 0), "{statuses:?}");
    let grew_kib = gw.memory_kib("VmHWM").saturating_sub(before);
    eprintln!("peak RSS grew by {grew_kib} KiB for 100 heads of 1 MiB");
    assert!(
        grew_kib < 16 << 10,
        "peak RSS grew by {grew_kib} KiB for 100 heads of 1 MiB"
    );
    assert_eq!(upstream.count(), 1);
    assert_eq!(get(gw.addr, "/public/x", &[]).status, 200);
}
