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
