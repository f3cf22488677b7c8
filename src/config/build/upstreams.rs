//! `[upstreams.*]`: addresses resolved once, timeouts bounded, TLS and its CA read.

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::{at, check_duration, Ctx, HOUR};
use crate::config::schema::RawUpstream;
use crate::config::{Upstream, UpstreamTls};
use crate::formats::pem;

pub(super) fn build_upstream(
    cx: &mut Ctx<'_>,
    name: &str,
    up: &Spanned<RawUpstream>,
) -> Option<Upstream> {
    let span = at(up);
    let key = format!("upstreams.{name}.url");
    let raw = up.get_ref();
    let uri: http::Uri = match raw.url.parse() {
        Ok(u) => u,
        Err(e) => {
            cx.err(span, key, format!("not a URL: {e}"));
            return None;
        }
    };
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            cx.err(span, key, "must be an http:// or https:// URL");
            return None;
        }
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        cx.err(span, key, "must not have a path or query: the upstream receives the request's own normalized path");
        return None;
    }
    let Some(host) = uri.host() else {
        cx.err(span, key, "has no host");
        return None;
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tls_key = |k: &str| format!("upstreams.{name}.{k}");
    if !https {
        for (k, set) in [
            ("sni", raw.sni.is_some()),
            ("ca_file", raw.ca_file.is_some()),
            ("tls_verify", !raw.tls_verify),
        ] {
            if set {
                cx.err(span, tls_key(k), "applies to https:// upstreams only");
            }
        }
    }
    let tls = if https {
        let sni = raw.sni.clone().unwrap_or_else(|| host.to_owned());
        if sni.is_empty() {
            // pingora skips every certificate check when the SNI is empty.
            cx.err(span, tls_key("sni"), "must not be empty");
            return None;
        }
        let (ca, ca_hash) = match raw.ca_file.as_deref().map(|f| cx.relative(f)) {
            None => (None, None),
            Some(path) => match pem::load_ca(&path) {
                Ok((certs, hash)) => (Some(Arc::from(certs)), Some(hash)),
                Err(e) => {
                    cx.err(span, tls_key("ca_file"), e);
                    return None;
                }
            },
        };
        if !raw.tls_verify {
            cx.warnings.push(format!("upstreams.{name}.tls_verify = false: the upstream's certificate is not checked; anyone on the path can read and change its traffic"));
        }
        let mut h = Sha256::new();
        h.update(name.as_bytes());
        h.update(ca_hash.unwrap_or_default());
        let digest = h.finalize();
        let pool_key = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
        Some(UpstreamTls {
            sni,
            ca,
            ca_hash,
            verify: raw.tls_verify,
            pool_key,
        })
    } else {
        None
    };
    // Resolved once here: pingora's `HttpPeer::new` resolves with a blocking lookup and
    // panics when it fails.
    let addr = match (host, port).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        Ok(None) | Err(_) => {
            cx.err(span, key, format!("host {host:?} does not resolve"));
            return None;
        }
    };
    let timeout_key = |k: &str| format!("upstreams.{name}.{k}");
    for (k, d, min) in [
        (
            "connect_timeout",
            raw.connect_timeout,
            Duration::from_millis(1),
        ),
        ("read_timeout", raw.read_timeout, Duration::from_millis(1)),
        ("write_timeout", raw.write_timeout, Duration::from_millis(1)),
        ("idle_timeout", raw.idle_timeout, Duration::from_secs(1)),
    ] {
        check_duration(cx, span, timeout_key(k), d, min, HOUR);
    }
    Some(Upstream {
        name: name.to_owned(),
        addr,
        connect_timeout: raw.connect_timeout,
        read_timeout: raw.read_timeout,
        write_timeout: raw.write_timeout,
        idle_timeout: raw.idle_timeout,
        tls,
    })
}
