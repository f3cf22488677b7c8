//! RFC 9440's `Client-Cert` header: the client certificate a TLS-terminating proxy in front
//! saw, as a structured-field byte sequence (`:` base64 of the DER `:`). Only believed from
//! `server.trusted_client_cert_peers`; the caller decides that.

use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use http::HeaderMap;
use sha2::{Digest, Sha256};

/// Standard base64, with or without `=` padding: RFC 8941 §3.3.5 asks byte-sequence parsers
/// not to fail on padding left out.
const BYTES: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Largest `Client-Cert` value read (a certificate is a few KiB; a chain goes elsewhere).
const MAX_VALUE: usize = 16 * 1024;

/// SHA-256 of the certificate in the one `Client-Cert` field: what `cnf["x5t#S256"]`
/// names. `None` for no field, two fields (which one?), or a value that is not one
/// byte sequence of a plausible DER certificate.
pub fn header_thumbprint(headers: &HeaderMap) -> Option<[u8; 32]> {
    let mut fields = headers.get_all("client-cert").iter();
    let value = fields.next()?;
    if fields.next().is_some() || value.len() > MAX_VALUE {
        return None;
    }
    let inner = value
        .as_bytes()
        .trim_ascii()
        .strip_prefix(b":")?
        .strip_suffix(b":")?;
    let der = BYTES.decode(inner).ok()?;
    // A DER certificate is a SEQUENCE (0x30) with a long-form length.
    if der.len() < 64 || der[0] != 0x30 {
        return None;
    }
    Some(Sha256::digest(&der).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("client-cert", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn byte_sequence_of_a_certificate() {
        let der: Vec<u8> = [0x30, 0x82, 0x01, 0x00]
            .into_iter()
            .chain(std::iter::repeat_n(7, 81))
            .collect();
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
        let field = format!(":{}:", STANDARD.encode(&der));
        let want: [u8; 32] = Sha256::digest(&der).into();
        assert_eq!(header_thumbprint(&with(&[&field])), Some(want));
        assert_eq!(
            header_thumbprint(&with(&[&format!(" {field} ")])),
            Some(want)
        );
        let unpadded = format!(":{}:", STANDARD_NO_PAD.encode(&der));
        assert_ne!(unpadded, field, "the test's DER needs padding");
        assert_eq!(
            header_thumbprint(&with(&[&unpadded])),
            Some(want),
            "padding left out"
        );
        for bad in [
            STANDARD.encode(&der),                        // not a byte sequence
            format!(":{}", STANDARD.encode(&der)),        // unterminated
            format!(":{}:", STANDARD.encode([0x30; 8])),  // too short for a certificate
            format!(":{}:", STANDARD.encode([0x04; 80])), // not a SEQUENCE
            ":not base64!:".to_owned(),
        ] {
            assert_eq!(header_thumbprint(&with(&[&bad])), None, "{bad}");
        }
        assert_eq!(
            header_thumbprint(&with(&[&field, &field])),
            None,
            "two fields"
        );
        assert_eq!(header_thumbprint(&HeaderMap::new()), None);
    }
}
