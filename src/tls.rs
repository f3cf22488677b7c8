//! TLS material: the client listener's certificate and key, re-read when their files change
//! (cert-manager rotates a Secret by swapping its files; a bad new pair keeps the old one
//! serving), and the CA bundles of `https://` upstreams.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::formats::pem::{pair_hash, parse_pair, read_pair, Pair, PairError};
use crate::metrics::Metrics;

/// How often the certificate and key files are re-read (a hash compare when unchanged).
pub const CERT_POLL: Duration = Duration::from_secs(2);

/// Makes aws-lc-rs the process's rustls provider (pingora would otherwise install ring):
/// one crypto library for JWT signatures, key fetches and the listener. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The client listener's TLS acceptor: TLS 1.2 and 1.3 (rustls, aws-lc-rs), `certs` choosing
/// the certificate, `client_certs` checking client certificates when set, ALPN `h2` before
/// `http/1.1` when `http2` (none otherwise, as pingora's own listener does).
///
/// Built here rather than by pingora's `TlsSettings`, whose rustls config keeps rustls's
/// defaults: sessions resumed only from a 256-entry in-memory cache, each full handshake
/// storing two, so with more than ~128 clients in rotation nothing was resumed (1,000
/// clients: 0 resumed, where nginx and HAProxy resumed all; `benches/tls_load.py`). Here
/// sessions resume by stateless tickets (RFC 5077 construction, AES-256-GCM, a random key
/// made at start and rotated every 6 hours, as rustls's `Ticketer` does), so any number of
/// clients resume. No 0-RTT data (it could be replayed).
pub fn acceptor(
    certs: Arc<dyn ResolvesServerCert>,
    client_certs: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    http2: bool,
) -> Result<pingora::listeners::tls::Acceptor, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| e.to_string())?;
    let builder = match client_certs {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certs);
    if http2 {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| e.to_string())?;
    Ok(pingora::listeners::tls::Acceptor::from_server_config(
        Arc::new(config),
    ))
}

/// The listener's certificate, swapped whole when its files change.
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// Hash of the pair in use, and of the last pair that failed (reported once).
    seen: std::sync::Mutex<([u8; 32], Option<[u8; 32]>)>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Stands for "a file could not be read" among content hashes of failed pairs.
const UNREADABLE: [u8; 32] = [0; 32];

/// What a re-read did.
#[derive(Debug, PartialEq, Eq)]
pub enum CertReload {
    Applied,
    Unchanged,
    Failed,
}

impl CertStore {
    /// The store for the pair the config loaded (its files are not read again until they
    /// change).
    pub fn new(cert: PathBuf, key: PathBuf, pair: Pair, metrics: Arc<Metrics>) -> Arc<Self> {
        metrics.tls_cert_not_after.set(pair.not_after as f64);
        Arc::new(Self {
            cert,
            key,
            current: ArcSwap::new(pair.certified),
            seen: std::sync::Mutex::new((pair.hash, None)),
            metrics,
        })
    }

    /// Re-reads both files; a changed, valid pair replaces the one in use. A pair that does
    /// not load (half-written, mismatched, unreadable) leaves the old one serving.
    pub fn reload(&self) -> CertReload {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (cert, key) = match read_pair(&self.cert, &self.key) {
            Ok(bytes) => bytes,
            Err(e) => return self.failed(&mut seen, UNREADABLE, e),
        };
        let hash = pair_hash(&cert, &key);
        if hash == seen.0 {
            seen.1 = None;
            return CertReload::Unchanged;
        }
        if seen.1 == Some(hash) {
            return CertReload::Unchanged;
        }
        match parse_pair(&self.cert, &cert, &self.key, &key, hash) {
            Ok(pair) => {
                self.current.store(pair.certified);
                *seen = (pair.hash, None);
                self.metrics.tls_cert_not_after.set(pair.not_after as f64);
                self.metrics
                    .tls_cert_reloads
                    .with_label_values(&["success"])
                    .inc();
                tracing::info!(cert = %self.cert.display(), not_after = pair.not_after, "TLS certificate reloaded");
                CertReload::Applied
            }
            Err(e) => self.failed(&mut seen, hash, e),
        }
    }

    /// Counts and logs a failed re-read once per distinct bad content (`marker`).
    fn failed(
        &self,
        seen: &mut ([u8; 32], Option<[u8; 32]>),
        marker: [u8; 32],
        e: PairError,
    ) -> CertReload {
        if seen.1 == Some(marker) {
            return CertReload::Unchanged;
        }
        seen.1 = Some(marker);
        self.metrics
            .tls_cert_reloads
            .with_label_values(&["error"])
            .inc();
        tracing::error!(key = %format!("server.tls.{}", e.key), problem = %e.message, "TLS certificate reload failed; keeping the certificate in use");
        CertReload::Failed
    }

    /// Polls the files every `CERT_POLL`, for as long as the listener holds the store.
    pub fn watch(self: &Arc<Self>, rt: &tokio::runtime::Handle) {
        let what = format!("server.tls {}", self.cert.display());
        crate::runtime::poll::spawn(rt, what, CERT_POLL, self, |store: &Self| {
            store.reload();
        });
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The listener's client-certificate check: chains to `client_ca` (RFC 8705 §2 leaves
/// which CAs to the server). `required`: no handshake without one; otherwise a client
/// without a certificate connects, and only certificate-bound tokens need one.
pub fn client_verifier(
    ca: &[CertificateDer<'static>],
    required: bool,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca {
        roots.add(cert.clone()).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(|e| e.to_string())
}

/// Completes a TLS handshake with the gateway's own listener (the start-up readiness probe,
/// on loopback). The certificate is not checked: this only asks whether the listener is
/// up, and it may be issued by a CA this process does not know.
pub async fn probe_handshake(stream: tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncWriteExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let Ok(builder) = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
    else {
        return false;
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::IpAddress(
        std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST).into(),
    );
    match connector.connect(name, stream).await {
        Ok(mut tls) => {
            let _ = tls.shutdown().await;
            true
        }
        Err(_) => false,
    }
}

/// Accepts any server certificate whose handshake signature is valid: the readiness probe's
/// verifier, and nothing else's.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
