//! Raw clients over TLS for tests that must control every field: HTTP/2 with any
//! `:authority`, `:path` and headers (the `h2` crate, no polite client in between), and
//! HTTP/1.1 bytes over TLS. Both trust only the fixture CAs (`tls/ca.pem`, `tls/ca2.pem`:
//! either listener pair verifies) and send SNI `localhost`, so
//! the authority a request names is independent of the certificate it is checked against.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

use super::http::{parse, Resp};
use super::{fixtures, rt};

fn connector(alpn: &[u8]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for ca in ["tls/ca.pem", "tls/ca2.pem"] {
        for cert in
            rustls::pki_types::CertificateDer::pem_file_iter(fixtures().join(ca)).expect("ca file")
        {
            roots.add(cert.expect("ca cert")).expect("add ca");
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls(
    addr: SocketAddr,
    alpn: &[u8],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    connector(alpn)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))
}

/// An HTTP/2 connection made by `builder` over TLS (ALPN `h2`), its driver spawned, ready for
/// a request.
async fn h2_client(
    addr: SocketAddr,
    builder: &h2::client::Builder,
) -> Result<h2::client::SendRequest<bytes::Bytes>, String> {
    let io = tls(addr, b"h2").await?;
    let (client, conn) = builder
        .handshake::<_, bytes::Bytes>(io)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client.ready().await.map_err(|e| format!("ready: {e}"))
}

/// One HTTP/2 request: `authority` becomes `:authority` (empty: none at all), `path` the
/// `:path` as given, `headers` are sent as they are (a `host` among them included).
/// `Err` when the stream or connection was reset instead of answered.
pub fn h2_request(
    addr: SocketAddr,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Resp, String> {
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(15), async {
            let mut client = h2_client(addr, &h2::client::Builder::new()).await?;
            let uri = if authority.is_empty() {
                http::Uri::builder().path_and_query(path).build()
            } else {
                http::Uri::builder()
                    .scheme("https")
                    .authority(authority)
                    .path_and_query(path)
                    .build()
            }
            .map_err(|e| format!("uri: {e}"))?;
            let mut req = http::Request::builder().method(method).uri(uri);
            for (n, v) in headers {
                req = req.header(*n, *v);
            }
            let req = req.body(()).map_err(|e| format!("request: {e}"))?;
            let (resp, _) = client
                .send_request(req, true)
                .map_err(|e| format!("send: {e}"))?;
            let resp = resp.await.map_err(|e| format!("response: {e}"))?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut body = resp.into_body();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.map_err(|e| format!("body: {e}"))?;
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            Ok(Resp {
                status,
                headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        })
        .await
        .map_err(|_| "timed out".to_owned())?
    })
}

/// Raw HTTP/1.1 bytes over TLS (ALPN `http/1.1`); reads until the server closes.
pub fn tls_send(addr: SocketAddr, raw: &[u8]) -> Resp {
    rt().block_on(async {
        let mut buf = Vec::new();
        let run = async {
            let mut io = tls(addr, b"http/1.1").await?;
            io.write_all(raw).await.map_err(|e| e.to_string())?;
            let _ = io.read_to_end(&mut buf).await;
            Ok::<(), String>(())
        };
        let _ = tokio::time::timeout(Duration::from_secs(15), run).await;
        parse(&buf)
    })
}

/// An HTTP/2 client that completes TLS (ALPN `h2`) and then sends nothing, not even the
/// connection preface: how long until the gateway closes (at most 15 s).
pub fn h2_silent(addr: SocketAddr) -> Duration {
    rt().block_on(async {
        let mut io = tls(addr, b"h2").await.expect("tls");
        let started = std::time::Instant::now();
        let mut buf = [0u8; 4096];
        // The server's SETTINGS may come first; then the close (or an error at it).
        let _ = tokio::time::timeout(Duration::from_secs(15), async {
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        started.elapsed()
    })
}

/// A GET on `path` from an HTTP/2 client that grants the server no flow-control window
/// (`SETTINGS_INITIAL_WINDOW_SIZE` 0) and never opens one: its answer's body can never be
/// sent. `Ok(status)` once the response head came and the stream was then reset, `Err` when
/// it was not within 15 s (or failed otherwise).
pub fn h2_never_reading(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<u16, String> {
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(15), async {
            let mut client =
                h2_client(addr, h2::client::Builder::new().initial_window_size(0)).await?;
            let mut req = http::Request::builder()
                .method("GET")
                .uri(format!("https://localhost{path}"));
            for (n, v) in headers {
                req = req.header(*n, *v);
            }
            let (resp, _) = client
                .send_request(req.body(()).expect("request"), true)
                .map_err(|e| format!("send: {e}"))?;
            let resp = resp.await.map_err(|e| format!("response: {e}"))?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            // Never releases capacity: the first data can never come, only a reset.
            match body.data().await {
                Some(Err(_)) => Ok(status),
                other => Err(format!("body without a window: {other:?}")),
            }
        })
        .await
        .map_err(|_| "not reset within 15 s".to_owned())?
    })
}
