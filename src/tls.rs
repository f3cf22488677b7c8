//! TLS material: the client listener's certificate and key, re-read when their files change
//! (cert-manager rotates a Secret by swapping its files; a bad new pair keeps the old one
//! serving), and the CA bundles of `https://` upstreams.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;

/// How often the certificate and key files are re-read (a hash compare when unchanged).
pub const CERT_POLL: Duration = Duration::from_secs(2);

/// Makes aws-lc-rs the process's rustls provider (pingora would otherwise install ring):
/// one crypto library for JWT signatures, key fetches and the listener. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A certificate/key problem: `key` is the config key it belongs to (`cert` or `key`).
#[derive(Debug)]
pub struct PairError {
    pub key: &'static str,
    pub message: String,
}

/// A certificate chain and its key, checked to belong together.
pub struct Pair {
    pub certified: Arc<CertifiedKey>,
    /// The leaf's notAfter, Unix seconds.
    pub not_after: i64,
    /// SHA-256 over both files' bytes: unchanged files are not parsed again.
    pub hash: [u8; 32],
}

/// Reads and checks a PEM certificate chain (leaf first) and its private key.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Pair, PairError> {
    let (cert_bytes, key_bytes) = read_pair(cert, key)?;
    let hash = pair_hash(&cert_bytes, &key_bytes);
    parse_pair(cert, &cert_bytes, key, &key_bytes, hash)
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), PairError> {
    let read = |path: &Path, which: &'static str| {
        std::fs::read(path).map_err(|e| PairError {
            key: which,
            message: format!("cannot read {}: {e}", path.display()),
        })
    };
    Ok((read(cert, "cert")?, read(key, "key")?))
}

fn pair_hash(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(Sha256::digest(cert));
    h.update(Sha256::digest(key));
    h.finalize().into()
}

fn parse_pair(
    cert: &Path,
    cert_bytes: &[u8],
    key: &Path,
    key_bytes: &[u8],
    hash: [u8; 32],
) -> Result<Pair, PairError> {
    let certs = parse_certs(cert_bytes).map_err(|message| PairError {
        key: "cert",
        message: format!("{}: {message}", cert.display()),
    })?;
    let not_after = x509_parser::parse_x509_certificate(&certs[0])
        .map(|(_, c)| c.validity().not_after.timestamp())
        .map_err(|e| PairError {
            key: "cert",
            message: format!(
                "{}: the first certificate does not parse: {e}",
                cert.display()
            ),
        })?;
    // The error from the PEM reader never includes key bytes.
    let private = PrivateKeyDer::from_pem_slice(key_bytes).map_err(|e| PairError {
        key: "key",
        message: format!("{}: no PEM private key: {e}", key.display()),
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(certs, private, &provider).map_err(|e| PairError {
        key: "key",
        message: format!("{} does not go with {}: {e}", key.display(), cert.display()),
    })?;
    Ok(Pair {
        certified: Arc::new(certified),
        not_after,
        hash,
    })
}

/// Every certificate of a PEM file; at least one, each a parsable X.509 certificate.
fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".to_owned());
    }
    for (i, c) in certs.iter().enumerate() {
        if let Err(e) = x509_parser::parse_x509_certificate(c) {
            return Err(format!("certificate #{} does not parse: {e}", i + 1));
        }
    }
    Ok(certs)
}

/// An upstream's `ca_file`: its certificates in pingora's form, and the file's SHA-256.
pub fn load_ca(path: &Path) -> Result<(Arc<pingora::protocols::tls::CaType>, [u8; 32]), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = parse_certs(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let wrapped: Vec<_> = certs
        .into_iter()
        .map(|c| pingora::utils::tls::WrappedX509::new(c.to_vec(), pingora::utils::tls::parse_x509))
        .collect();
    Ok((Arc::from(wrapped), Sha256::digest(&bytes).into()))
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
    pub fn new(cert: PathBuf, key: PathBuf, metrics: Arc<Metrics>) -> Result<Arc<Self>, PairError> {
        let pair = load_pair(&cert, &key)?;
        metrics.tls_cert_not_after.set(pair.not_after as f64);
        Ok(Arc::new(Self {
            cert,
            key,
            current: ArcSwap::new(pair.certified),
            seen: std::sync::Mutex::new((pair.hash, None)),
            metrics,
        }))
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

    /// Polls the files every `CERT_POLL`, forever (on the control runtime).
    pub async fn watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(CERT_POLL).await;
            let this = self.clone();
            // File reads and parsing stay off the async worker.
            let _ = tokio::task::spawn_blocking(move || this.reload()).await;
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
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
