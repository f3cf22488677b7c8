//! Header names with a fixed meaning to the gateway, by canonical name (`canonical_header`:
//! lowercase, `_` as `-`). The proxy strips them from client requests; the config refuses
//! them where a setting would give them another meaning (a claim header, a token source, a
//! CSRF proof).

/// Headers a client could use to make the upstream act on another path, host, method or
/// client address than the one authorized (`X-Original-URL: /admin` on Symfony or IIS,
/// `X-Forwarded-Host` on host-based routing, method overrides), and what proxies on the way
/// add (`Forwarded`, `X-Real-IP`): never forwarded from a client. The gateway sets
/// `X-Forwarded-For`, `-Proto` and `-Host` itself.
const REWRITE_EXACT: &[&str] = &[
    "forwarded",
    "x-forwarded",
    "x-host",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
const REWRITE_PREFIXES: &[&str] = &["x-forwarded-", "x-original-"];

/// Headers that, set by a front proxy or an authenticating gateway, tell an upstream who the
/// user is or what the TLS connection proved: from a client they are a claim no one checked
/// (`Remote-User: admin` on a server behind nginx's `auth_request` convention,
/// `X-SSL-Client-Verify: SUCCESS` on one behind a TLS terminator), and `Proxy` is the httpoxy
/// variable for CGI-style servers. Never forwarded from a client; unlike the lists above, the
/// config may still name them as claim headers (the gateway then sets them itself).
const IDENTITY_EXACT: &[&str] = &[
    "remote-user",
    "x-remote-user",
    "x-authenticated-user",
    "x-authenticated-userid",
    "x-client-cert",
    "x-client-verify",
    "front-end-https",
    "x-url-scheme",
    "x-remote-addr",
    "x-originating-ip",
    "fastly-client-ip",
    "forwarded-for",
    "proxy",
];
const IDENTITY_PREFIXES: &[&str] = &["x-auth-request-", "x-ssl-", "ssl-client-", "x-envoy-"];

/// Identity and TLS-state headers a client must not set (`IDENTITY_EXACT`, `IDENTITY_PREFIXES`).
pub fn is_identity(canonical: &str) -> bool {
    IDENTITY_EXACT.contains(&canonical)
        || IDENTITY_PREFIXES.iter().any(|p| canonical.starts_with(p))
}

/// Headers the gateway sets itself: the client's copies go in every spelling (its
/// `X-Request-Id` is taken over when it is a short token; an `x_request_id` would reach a
/// CGI-style server as a second one).
const GATEWAY_SET: &[&str] = &["x-request-id"];

/// Hop-by-hop headers (RFC 9110 §7.6.1) and proxy credentials: never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "http2-settings",
];

/// Message framing and routing: what the request is and where it goes.
const FRAMING: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

/// Proofs of possession the gateway checks: a DPoP proof (RFC 9449) and a client
/// certificate passed on by a TLS-terminating proxy (RFC 9440). Used up at the gateway, never
/// forwarded (the upstream would act on something it did not check, or on a spoofed one).
const SENDER_PROOF: &[&str] = &["dpop", "client-cert", "client-cert-chain"];

/// The DPoP proof and `Client-Cert` headers.
pub fn is_sender_proof(canonical: &str) -> bool {
    SENDER_PROOF.contains(&canonical)
}

/// Rewrite, forwarding and client-address headers (`REWRITE_EXACT`, `REWRITE_PREFIXES`).
pub fn is_rewrite(canonical: &str) -> bool {
    REWRITE_EXACT.contains(&canonical) || REWRITE_PREFIXES.iter().any(|p| canonical.starts_with(p))
}

/// Headers the gateway sets itself (`X-Request-Id`).
pub fn is_gateway_set(canonical: &str) -> bool {
    GATEWAY_SET.contains(&canonical)
}

/// Hop-by-hop headers and proxy credentials.
pub fn is_hop_by_hop(canonical: &str) -> bool {
    HOP_BY_HOP.contains(&canonical)
}

/// Framing and routing headers.
pub fn is_framing(canonical: &str) -> bool {
    FRAMING.contains(&canonical)
}

/// Whatever the gateway or a proxy on the way gives its own meaning: framing, hop-by-hop,
/// rewrite and forwarding headers, those the gateway sets, and proofs of possession.
pub fn is_managed(canonical: &str) -> bool {
    is_framing(canonical)
        || is_hop_by_hop(canonical)
        || is_rewrite(canonical)
        || is_gateway_set(canonical)
        || is_sender_proof(canonical)
}
