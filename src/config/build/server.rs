//! `[server]`, `[admin]` and `[token_cache]`.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use toml::Spanned;

use super::{at, Ctx};
use crate::config::schema::{RawConfig, RawStore};
use crate::config::{CacheSettings, ClientCa, LogFormat, ServerSettings, ServerTls, StoreConfig};
use crate::formats::dpop::public_url_base;
use crate::formats::pem;

pub(super) fn build_server(cx: &mut Ctx<'_>, raw: &RawConfig) -> ServerSettings {
    let s = &raw.server;
    check_listen(cx, &s.listen, "server.listen");
    if s.threads == 0 || s.threads > 256 {
        cx.err(None, "server.threads", "must be between 1 and 256");
    }
    if !(256..=65536).contains(&s.max_token_bytes) {
        cx.err(
            None,
            "server.max_token_bytes",
            "must be between 256 and 65536",
        );
    }
    if !(1024..=1_048_575).contains(&s.max_header_bytes) {
        cx.err(
            None,
            "server.max_header_bytes",
            "must be between 1024 and 1048575",
        );
    }
    for (key, d) in [
        ("server.header_read_timeout", s.header_read_timeout),
        ("server.keepalive_timeout", s.keepalive_timeout),
        ("server.body_read_timeout", s.body_read_timeout),
        ("server.send_timeout", s.send_timeout),
    ] {
        // pingora counts keep-alive in whole seconds.
        if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
            cx.err(None, key, "must be between 1s and 1h");
        }
    }
    // Added saturating: two durations near `u64::MAX` seconds would overflow the sum.
    if s.shutdown_delay.saturating_add(s.shutdown_grace) > Duration::from_secs(600) {
        cx.err(
            None,
            "server.shutdown_grace",
            "shutdown_delay + shutdown_grace must be at most 10m",
        );
    }
    if s.read_buffer_bytes > 1 << 20 {
        cx.err(
            None,
            "server.read_buffer_bytes",
            "must be at most 1048576 (0: unbuffered)",
        );
    }
    if !(1..=65536).contains(&s.upstream_pool_size) {
        cx.err(
            None,
            "server.upstream_pool_size",
            "must be between 1 and 65536",
        );
    }
    let log_format = s
        .log_format
        .as_ref()
        .and_then(|f| match f.get_ref().as_str() {
            "json" => Some(LogFormat::Json),
            "text" => Some(LogFormat::Text),
            other => {
                cx.err(
                    at(f),
                    "server.log_format",
                    format!("{other:?} is not a log format: use \"json\" or \"text\""),
                );
                None
            }
        });
    let tls = s.tls.as_ref().and_then(|t| {
        let raw = t.get_ref();
        let (cert, key) = (cx.relative(&raw.cert), cx.relative(&raw.key));
        let client_ca = raw.client_ca.as_deref().and_then(|f| {
            let path = cx.relative(f);
            match pem::load_ca(&path) {
                Ok((certs, _)) if certs.is_empty() => {
                    cx.err(
                        at(t),
                        "server.tls.client_ca",
                        format!("{} holds no PEM certificate", path.display()),
                    );
                    None
                }
                Ok((certs, hash)) => Some(ClientCa {
                    path,
                    certs: certs.into(),
                    hash,
                }),
                Err(e) => {
                    cx.err(at(t), "server.tls.client_ca", e);
                    None
                }
            }
        });
        let client_cert_required = match raw.client_auth.as_deref() {
            None | Some("optional") => false,
            Some("required") => true,
            Some(other) => {
                cx.err(
                    at(t),
                    "server.tls.client_auth",
                    format!("{other:?} is not a mode: use \"optional\" or \"required\""),
                );
                false
            }
        };
        if raw.client_auth.is_some() && raw.client_ca.is_none() {
            cx.err(
                at(t),
                "server.tls.client_auth",
                "needs client_ca: the CAs client certificates must chain to",
            );
        }
        match pem::load_pair(&cert, &key) {
            Ok(pair) => Some(ServerTls {
                cert,
                key,
                http2: raw.http2,
                pair,
                client_ca,
                client_cert_required,
            }),
            Err(e) => {
                cx.err(at(t), format!("server.tls.{}", e.key), e.message);
                None
            }
        }
    });
    let public_url = s.public_url.as_ref().and_then(|u| {
        public_url_base(u.get_ref())
            .map_err(|e| cx.err(at(u), "server.public_url", e))
            .ok()
    });
    let trusted_client_cert_peers: Vec<ipnet::IpNet> = s
        .trusted_client_cert_peers
        .iter()
        .filter_map(|p| match parse_peer(p.get_ref()) {
            Ok(net) => Some(net),
            Err(e) => {
                cx.err(at(p), "server.trusted_client_cert_peers", e);
                None
            }
        })
        .collect();
    // A trusted peer can claim any client certificate: a range wider than a data center's
    // is most likely a mistake (`0.0.0.0/1` and `128.0.0.0/1` are `/0` in two parts).
    let broad: Vec<String> = trusted_client_cert_peers
        .iter()
        .filter(|n| match n {
            ipnet::IpNet::V4(v4) => v4.prefix_len() < 8,
            ipnet::IpNet::V6(v6) => v6.prefix_len() < 32,
        })
        .map(ToString::to_string)
        .collect();
    if !broad.is_empty() {
        cx.warnings.push(format!(
            "server.trusted_client_cert_peers lists {} : every peer in them can claim any client certificate; list only the proxies in front",
            broad.join(", ")
        ));
    }
    if !(1000..=100_000_000).contains(&s.dpop_replay_max_entries) {
        cx.err(
            None,
            "server.dpop_replay_max_entries",
            "must be between 1000 and 100000000",
        );
    }
    ServerSettings {
        listen: s.listen.get_ref().clone(),
        threads: s.threads,
        max_token_bytes: s.max_token_bytes,
        max_header_bytes: s.max_header_bytes,
        shutdown_delay: s.shutdown_delay,
        shutdown_grace: s.shutdown_grace,
        tls,
        header_read_timeout: s.header_read_timeout,
        keepalive_timeout: s.keepalive_timeout,
        body_read_timeout: s.body_read_timeout,
        send_timeout: s.send_timeout,
        read_buffer_bytes: s.read_buffer_bytes,
        work_stealing: s.work_stealing,
        fast_path: s.fast_path,
        upstream_pool_size: s.upstream_pool_size,
        keepalive_requests: s.keepalive_requests,
        log_format,
        log_subject: s.log_subject,
        public_url,
        trusted_client_cert_peers,
        dpop_replay_max_entries: s.dpop_replay_max_entries,
    }
}

/// `10.0.0.0/8`, or a lone address (a /32 or /128). A network with host bits set
/// (`10.1.2.3/8`: which was meant?) and `/0` (every peer could claim any certificate, and
/// certificates are public) are refused.
fn parse_peer(p: &str) -> Result<ipnet::IpNet, String> {
    // `127.0.0.010`: decimal 10 here, octal 8 to `inet_aton` and many tools.
    let address = p.split('/').next().unwrap_or_default();
    if address.contains('.')
        && !address.contains(':')
        && address
            .split('.')
            .any(|octet| octet.len() > 1 && octet.starts_with('0'))
    {
        return Err(format!(
            "{p:?} has an octet with a leading zero (decimal here, octal to other tools): write it without"
        ));
    }
    let net = p
        .parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| p.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
        .ok_or_else(|| format!("{p:?} is not an IP address or CIDR (10.0.0.0/8, fd00::/8)"))?;
    if net.prefix_len() == 0 {
        return Err(format!(
            "{p:?} trusts every peer: anyone could send any client certificate (they are public); list the proxies in front"
        ));
    }
    if net.trunc() != net {
        return Err(format!(
            "{p:?} has host bits set: write the network ({})",
            net.trunc()
        ));
    }
    Ok(net)
}

pub(super) fn check_listen(cx: &mut Ctx<'_>, listen: &Spanned<String>, key: &str) {
    if SocketAddr::from_str(listen.get_ref()).is_err() {
        cx.err(
            at(listen),
            key,
            format!("{:?} is not an IP:port address", listen.get_ref()),
        );
    }
}

/// `[token_cache]`.
pub(super) fn build_token_cache(cx: &mut Ctx<'_>, raw: &RawConfig) -> CacheSettings {
    let tc = &raw.token_cache;
    if !(1..=10_000_000).contains(&tc.max_entries) {
        cx.err(
            None,
            "token_cache.max_entries",
            "must be between 1 and 10000000",
        );
    }
    if !(1 << 16..=1 << 34).contains(&tc.max_bytes) {
        cx.err(
            None,
            "token_cache.max_bytes",
            "must be between 65536 (64 KiB) and 17179869184 (16 GiB)",
        );
    }
    if tc.ttl < Duration::from_secs(1) || tc.ttl > Duration::from_secs(86400) {
        cx.err(None, "token_cache.ttl", "must be between 1s and 24h");
    }
    CacheSettings {
        enabled: tc.enabled,
        max_entries: tc.max_entries,
        max_bytes: tc.max_bytes,
        ttl: tc.ttl,
    }
}

/// `[store]`: the URL (no password in it), the password and CA read from files.
pub(super) fn build_store(cx: &mut Ctx<'_>, s: &Spanned<RawStore>) -> Option<StoreConfig> {
    let span = at(s);
    let raw = s.get_ref();
    let before = cx.errors.len();
    let url = raw.redis_url.as_str();
    let tls = url.starts_with("rediss://");
    let rest = url
        .strip_prefix("rediss://")
        .or_else(|| url.strip_prefix("redis://"));
    match rest {
        None => cx.err(
            span,
            "store.redis_url",
            "must start with redis:// or rediss://",
        ),
        Some(rest) if rest.contains(['?', '#']) => cx.err(
            span,
            "store.redis_url",
            "takes no query or fragment (a password=… there would be a secret inline): the settings go in [store]",
        ),
        Some(rest)
            if rest
                .split_once('/')
                .is_some_and(|(_, db)| !db.is_empty() && !db.bytes().all(|b| b.is_ascii_digit())) =>
        {
            cx.err(
                span,
                "store.redis_url",
                "the path after the host must be a database number (redis://host:6379/2) or nothing",
            )
        }
        Some(rest) => {
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.rsplit_once('@').is_some_and(|(user, _)| {
                user.contains([':', '@']) || user.to_ascii_lowercase().contains("%3a")
            }) {
                cx.err(
                    span,
                    "store.redis_url",
                    "carries a password: put it in password_file (never inline)",
                );
            }
        }
    }
    let password = raw.password_file.as_deref().and_then(|f| {
        let (path, bytes) = cx.read_secret(span, "store.password_file", f)?;
        match String::from_utf8(bytes) {
            Ok(p) if !p.is_empty() => Some(p),
            _ => {
                cx.err(
                    span,
                    "store.password_file",
                    format!("{} holds no UTF-8 password", path.display()),
                );
                None
            }
        }
    });
    let ca = raw
        .ca_file
        .as_deref()
        .and_then(|f| cx.read_ca(span, "store.ca_file", f));
    if ca.is_some() && !tls {
        cx.err(span, "store.ca_file", "only applies to rediss:// (TLS)");
    }
    let timeout = raw.timeout.unwrap_or(Duration::from_millis(250));
    if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(10) {
        cx.err(span, "store.timeout", "must be between 10ms and 10s");
    }
    let dpop_local_on_outage = match raw.dpop_replay_on_outage.as_deref() {
        None | Some("fail_closed") => false,
        Some("local") => true,
        Some(other) => {
            cx.err(
                span,
                "store.dpop_replay_on_outage",
                format!("{other:?} is not a policy: use \"fail_closed\" or \"local\""),
            );
            false
        }
    };
    let key_prefix = raw
        .key_prefix
        .clone()
        .unwrap_or_else(|| "authgate".to_owned());
    if !super::is_label(&key_prefix) {
        cx.err(
            span,
            "store.key_prefix",
            "must be 1-64 characters of [A-Za-z0-9_.-]",
        );
    }
    let revocation_max_age = raw.revocation_max_age.unwrap_or(Duration::from_secs(300));
    if revocation_max_age < Duration::from_secs(5)
        || revocation_max_age > Duration::from_secs(7 * 86_400)
    {
        cx.err(
            span,
            "store.revocation_max_age",
            "must be between 5s and 7d (the copy is checked every second)",
        );
    }
    let revocation_fail_open = match raw.revocation_without_copy.as_deref() {
        None | Some("fail_closed") => false,
        Some("fail_open") => true,
        Some(other) => {
            cx.err(
                span,
                "store.revocation_without_copy",
                format!("{other:?} is not a policy: use \"fail_closed\" or \"fail_open\""),
            );
            false
        }
    };
    if cx.errors.len() > before {
        return None;
    }
    Some(StoreConfig {
        redis_url: raw.redis_url.clone(),
        password,
        ca,
        timeout,
        dpop_local_on_outage,
        key_prefix,
        revocation_max_age,
        revocation_fail_open,
    })
}
