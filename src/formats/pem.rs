//! PEM certificate chains and keys: the listener's pair (checked to belong together) and
//! upstream CA bundles. Pure parsing of bytes read from files; no pingora.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// A certificate/key problem: `key` is the config key it belongs to (`cert` or `key`).
#[derive(Debug)]
pub struct PairError {
    pub key: &'static str,
    pub message: String,
}

/// A certificate chain and its key, checked to belong together.
#[derive(Clone)]
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

pub fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), PairError> {
    let read = |path: &Path, which: &'static str| {
        std::fs::read(path).map_err(|e| PairError {
            key: which,
            message: format!("cannot read {}: {e}", path.display()),
        })
    };
    Ok((read(cert, "cert")?, read(key, "key")?))
}

pub fn pair_hash(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(Sha256::digest(cert));
    h.update(Sha256::digest(key));
    h.finalize().into()
}

pub fn parse_pair(
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

/// An upstream's `ca_file`: its certificates (DER), and the file's SHA-256.
pub fn load_ca(path: &Path) -> Result<(Vec<CertificateDer<'static>>, [u8; 32]), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = parse_certs(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((certs, Sha256::digest(&bytes).into()))
}

impl std::fmt::Debug for Pair {
    // The key stays out of every log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("certs", &self.certified.cert.len())
            .field("not_after", &self.not_after)
            .finish()
    }
}
