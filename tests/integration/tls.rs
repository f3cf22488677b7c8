//! TLS: the client listener (HTTP/2 and HTTP/1.1 by ALPN, certificate reload, a bad new pair
//! keeps the old one) and https upstreams (verified by default, against `ca_file` or the
//! system roots, with the SNI name checked).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

fn tls_config(jwks: &str, upstream: &str, cert: &Path, key: &Path) -> String {
    standard_config(jwks, upstream).replace(
        "[admin]",
        &format!(
            "[server.tls]\ncert = {:?}\nkey = {:?}\n\n[admin]",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
}

fn tls_file(name: &str) -> std::path::PathBuf {
    fixtures().join("tls").join(name)
}

#[test]
fn tls_listener_speaks_http2_and_http1_and_tells_the_upstream() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let gw = Gateway::start(&tls_config(
        &jwks.url(),
        &upstream.url(),
        &tls_file("server.pem"),
        &tls_file("server.key"),
    ));
    let token = keys.rs256().claims(good_claims("alice", "read")).sign();
    let bearer = format!("Bearer {token}");
    let url = format!("https://localhost:{}/api/orders?x=1", gw.addr.port());

    let h2 = https_client(&["ca.pem"], false);
    let r = https_get(&h2, &url, &[("authorization", &bearer)]).expect("https request");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.version, ::http::Version::HTTP_2, "ALPN offers h2");
    assert_eq!(r.body, "upstream ok");
    assert_eq!(r.peer_cert, cert_der("server.pem"));
    let seen = upstream.last();
    assert_eq!(seen.path, "/api/orders?x=1");
    assert_eq!(seen.one("x-forwarded-proto"), "https");
    assert_eq!(seen.one("x-user-id"), "alice");
    assert!(!seen.has("authorization"));

    // Refusals over HTTP/2 carry the same status and RFC 6750 challenge.
    let r = https_get(&h2, &url, &[]).expect("https request");
    assert_eq!(r.status, 401);
    assert!(r.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));

    let h1 = https_client(&["ca.pem"], true);
    let r = https_get(&h1, &url, &[("authorization", &bearer)]).expect("https request");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.version, ::http::Version::HTTP_11);

    // A client that does not trust the CA gets no session; plain HTTP gets no answer.
    let other = https_client(&["ca2.pem"], false);
    assert!(https_get(&other, &url, &[]).is_err());
    let plain = get(gw.addr, "/public/x", &[]);
    assert_ne!(plain.status, 200, "{plain:?}");
    // Every request above was counted, none as an error.
    let m = gw.metrics();
    assert_eq!(
        metric_value(
            &m,
            "authgate_requests_total{outcome=\"allowed\",route=\"api\"}"
        ),
        2.0
    );
    assert!(m.contains("authgate_tls_cert_not_after_timestamp_seconds 4"));
}

#[test]
fn tls_certificate_is_reloaded_and_a_bad_pair_keeps_the_old_one() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(tls_file("server.pem"), &crt).unwrap();
    std::fs::copy(tls_file("server.key"), &key).unwrap();
    let config = dir.path().join("authgate.toml");
    std::fs::write(
        &config,
        tls_config(
            &jwks.url(),
            &upstream.url(),
            Path::new("tls.crt"),
            Path::new("tls.key"),
        ),
    )
    .unwrap();
    let gw = Gateway::start_at(dir, &config, "info");
    let url = format!("https://127.0.0.1:{}/public/x", gw.addr.port());
    // A new client each time: a resumed TLS session would report the first certificate.
    let served = || {
        let client = https_client(&["ca.pem", "ca2.pem"], false);
        https_get(&client, &url, &[])
            .expect("https request")
            .peer_cert
    };
    assert_eq!(served(), cert_der("server.pem"));

    // Half a rotation: the new certificate with the old key. Refused; the old pair serves.
    let swap = |from: &str, to: &Path| {
        let tmp = to.with_extension("tmp");
        std::fs::copy(tls_file(from), &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    };
    swap("server2.pem", &crt);
    assert!(gw.wait_log("TLS certificate reload failed", Duration::from_secs(8)));
    assert!(gw.logs().contains("server.tls.key"), "names the key");
    assert_eq!(served(), cert_der("server.pem"));
    assert_eq!(
        metric_value(
            &gw.metrics(),
            "authgate_tls_cert_reloads_total{result=\"error\"}"
        ),
        1.0
    );

    // The matching key arrives: the new pair serves new connections.
    swap("server2.key", &key);
    assert!(
        eventually(Duration::from_secs(8), || served()
            == cert_der("server2.pem")),
        "new certificate served"
    );
    let m = gw.metrics();
    assert_eq!(
        metric_value(&m, "authgate_tls_cert_reloads_total{result=\"success\"}"),
        1.0
    );
    assert_eq!(
        metric_value(&m, "authgate_tls_cert_reloads_total{result=\"error\"}"),
        1.0,
        "a broken pair is reported once"
    );

    // A deleted key file changes nothing either.
    std::fs::remove_file(&key).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(served(), cert_der("server2.pem"));
}

#[test]
fn tls_files_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.toml");
    let check = |text: String| {
        std::fs::write(&path, text).unwrap();
        let (ok, _, err) = check_config(&path);
        assert!(!ok);
        err
    };
    let (jwks, upstream) = ("http://127.0.0.1:9/jwks.json", "http://127.0.0.1:9");
    let base = standard_config(jwks, upstream);
    let check_pair = |cert: &Path, key: &Path| check(tls_config(jwks, upstream, cert, key));
    let err = check_pair(Path::new("missing.pem"), &tls_file("server.key"));
    assert!(
        err.contains("server.tls.cert") && err.contains("missing.pem"),
        "{err}"
    );
    let err = check_pair(&tls_file("server2.pem"), &tls_file("server.key"));
    assert!(
        err.contains("server.tls.key") && err.contains("does not go with"),
        "{err}"
    );
    let err = check_pair(&tls_file("server.key"), &tls_file("server.key"));
    assert!(
        err.contains("server.tls.cert") && err.contains("no PEM certificate"),
        "{err}"
    );
    // TLS settings on a plain-http upstream are a mistake, not ignored.
    let err = check(base.replace(
        "read_timeout = \"1s\"",
        "read_timeout = \"1s\"\nca_file = \"ca.pem\"",
    ));
    assert!(
        err.contains("upstreams.legacy.ca_file") && err.contains("https://"),
        "{err}"
    );
}

/// One gateway, one https upstream, five ways to trust it.
#[test]
fn https_upstreams_are_verified_by_default() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let plain = Upstream::start();
    let secure = Upstream::start_tls();
    let port = secure.addr.port();
    let ca = tls_file("ca.pem").display().to_string();
    let ca2 = tls_file("ca2.pem").display().to_string();
    let mut config = standard_config(&jwks.url(), &plain.url());
    for (name, settings) in [
        ("with_ca", format!("ca_file = {ca:?}")),
        ("system_roots", String::new()),
        ("wrong_ca", format!("ca_file = {ca2:?}")),
        (
            "wrong_name",
            format!("ca_file = {ca:?}\nsni = \"other.example\""),
        ),
        ("unverified", "tls_verify = false".to_owned()),
        ("by_name", format!("ca_file = {ca:?}\nsni = \"localhost\"")),
    ] {
        config.push_str(&format!(
            "\n[upstreams.{name}]\nurl = \"https://127.0.0.1:{port}\"\nconnect_timeout = \"2s\"\n{settings}\n\n[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nauth = \"none\"\nupstream = \"{name}\"\n"
        ));
    }
    let gw = Gateway::start(&config);
    for (name, status) in [
        ("with_ca", 200),
        ("system_roots", 502),
        ("wrong_ca", 502),
        ("wrong_name", 502),
        ("unverified", 200),
        ("by_name", 200),
    ] {
        let before = secure.count();
        let r = get(gw.addr, &format!("/{name}/x"), &[]);
        assert_eq!(r.status, status, "{name}: {r:?}");
        if status == 200 {
            assert_eq!(r.body, "upstream ok");
            assert_eq!(secure.count(), before + 1, "{name}");
            assert_eq!(secure.last().path, format!("/{name}/x"));
        } else {
            assert_eq!(r.reason(), "upstream_unavailable", "{name}");
            assert_eq!(
                secure.count(),
                before,
                "{name}: nothing reached the upstream"
            );
            assert!(
                metric_value(
                    &gw.metrics(),
                    &format!("authgate_upstream_errors_total{{kind=\"tls\",upstream=\"{name}\"}}")
                ) >= 1.0,
                "{name}: counted as a TLS error"
            );
        }
    }
    assert!(
        gw.logs()
            .contains("upstreams.unverified.tls_verify = false"),
        "disabling verification is logged"
    );
}

/// One TLS client with a session store of its own, as a separate client machine would have.
fn own_client() -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(tls_file("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A TLS connection to `addr` with `config`, one request read to its end (TLS 1.3 session
/// tickets come after the handshake); returns how the handshake went.
fn tls_round(
    addr: std::net::SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> rustls::HandshakeKind {
    use std::io::{Read, Write};
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /public/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    // The close may come without close_notify's being read: what matters is the answer.
    let _ = tls.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    tls.conn.handshake_kind().expect("handshake done")
}

/// A TLS gateway whose handshake, preface and head wait, and each write to a client, last 1 s.
fn short_timeouts() -> (Keys, JwksServer, Upstream, Gateway) {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let gw = Gateway::start(
        &tls_config(
            &jwks.url(),
            &upstream.url(),
            &tls_file("server.pem"),
            &tls_file("server.key"),
        )
        .replace(
            "shutdown_grace = \"1s\"",
            "shutdown_grace = \"1s\"\nheader_read_timeout = \"1s\"\nsend_timeout = \"1s\"",
        ),
    );
    (keys, jwks, upstream, gw)
}

/// Sessions resume for any number of clients (stateless tickets; rustls's default, a
/// 256-entry server-side cache with two entries per full handshake, resumed none of 300),
/// and a client that connects and never says hello is closed at `header_read_timeout`
/// (pingora's listener gave the handshake no bound).
#[test]
fn sessions_resume_for_many_clients_and_a_silent_client_is_cut() {
    let (_keys, _jwks, _upstream, gw) = short_timeouts();
    let clients: Vec<_> = (0..300).map(|_| own_client()).collect();
    for c in &clients {
        assert_eq!(tls_round(gw.addr, c), rustls::HandshakeKind::Full);
    }
    let resumed = clients
        .iter()
        .filter(|c| tls_round(gw.addr, c) == rustls::HandshakeKind::Resumed)
        .count();
    assert_eq!(
        resumed,
        clients.len(),
        "resumed sessions of {} clients",
        clients.len()
    );

    // Connected, silent: closed within the second, with a margin for a busy machine.
    let mut silent = std::net::TcpStream::connect(gw.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let closed = matches!(std::io::Read::read(&mut silent, &mut buf), Ok(0));
    assert!(closed, "closed by the gateway, not by the read timeout");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

/// HTTP/2 clients that hold a connection without taking part: one that never sends the
/// connection preface is closed at `header_read_timeout` (pingora waited for ever), and one
/// that never opens a flow-control window has its stream reset at `send_timeout` (it held
/// the stream, and the upstream connection behind it, for as long as it stayed).
#[test]
fn http2_clients_that_never_speak_or_never_read_are_cut() {
    let (keys, _jwks, upstream, gw) = short_timeouts();
    let waited = h2_silent(gw.addr);
    assert!(waited < Duration::from_secs(6), "closed after {waited:?}");

    let token = keys.rs256().claims(good_claims("alice", "read")).sign();
    let bearer = format!("Bearer {token}");
    let reset = h2_never_reading(gw.addr, "/api/orders", &[("authorization", &bearer)]);
    assert_eq!(reset, Ok(200), "the answer's head, then a reset");
    assert_eq!(upstream.count(), 1);
    // The gateway still answers.
    let r = h2_request(
        gw.addr,
        "GET",
        "localhost",
        "/api/orders",
        &[("authorization", &bearer)],
    )
    .expect("answered");
    assert_eq!(r.status, 200);
}
