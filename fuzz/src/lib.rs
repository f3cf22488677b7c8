//! The bodies of the fuzz targets: one function per target, over authgate's public API.
//! `fuzz_targets/*.rs` hand them to libFuzzer; `tests/integration/fuzz_corpus.rs` includes
//! this file as a module and replays every committed input through them on stable Rust in
//! `make test`, so a fixed crash stays fixed. Kept out of the gateway's library: nothing
//! here ships in the binary.
//!
//! Each target takes arbitrary bytes and asserts what must hold for any input: no panic,
//! and the function's own contract (a normalized path normalizes to itself; an extracted
//! bearer token is `b64token`; the gateway's head scanner and httparse agree on where a
//! head ends; a grant names a route whose provider verified the token).

use std::path::Path;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use authgate::auth::extract::{extract_bearer, extract_token, Credential};
use authgate::auth::{decide, RequestHead};
use authgate::config::build;
use authgate::config::routes::TokenSource;
use authgate::config::schema::RawConfig;
use authgate::formats::jwks::KeySet;
use authgate::formats::normalize::{normalize_authority, normalize_target};
use authgate::formats::revocation::RevocationSet;
use authgate::metrics::Metrics;
use authgate::proxy::connection::HeadSearch;
use authgate::runtime::Snapshot;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its directory under `fuzz/corpus/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("normalize", normalize),
    ("head", head),
    ("bearer", bearer),
    ("decide", decide_token),
    ("jwks", jwks),
    ("config", config),
    ("revocation", revocation),
    ("cache_control", cache_control),
    ("dpop", dpop),
];

/// Request-target normalization and authority parsing.
pub fn normalize(data: &[u8]) {
    if let Ok(t) = normalize_target(data) {
        let again = normalize_target(t.path_and_query().as_bytes())
            .expect("a normalized target normalizes again");
        assert_eq!(again.path, t.path, "normalization is idempotent");
        assert!(t.path.starts_with('/'));
        assert!(!t.path.contains("//"), "{}", t.path);
        for seg in t.path.split('/') {
            assert!(seg != "." && seg != "..", "{}", t.path);
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(a) = normalize_authority(s) {
            let again = normalize_authority(&a.to_string()).expect("normalizes again");
            assert_eq!(again, a);
        }
    }
}

/// The gateway's search for the end of an HTTP/1 request head (`proxy::connection`), which
/// bounds what it buffers, against httparse, which pingora parses the head with: where the
/// search says the head ends, httparse must find it complete there or refuse it, never
/// want more (pingora would then read on, unbounded by `max_header_bytes`); where httparse
/// finds a complete head, the search must find the same end.
pub fn head(data: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let parsed = httparse::Request::new(&mut headers).parse(data);
    let end = HeadSearch::default().end(data);
    if let Ok(httparse::Status::Complete(n)) = parsed {
        assert_eq!(end, Some(n), "httparse found the head complete at {n}");
    }
    if let Some(n) = end {
        let mut headers = [httparse::EMPTY_HEADER; 256];
        match httparse::Request::new(&mut headers).parse(&data[..n]) {
            Ok(httparse::Status::Complete(m)) => assert_eq!(m, n),
            Ok(httparse::Status::Partial) => panic!("httparse wants more than {n} bytes"),
            Err(_) => {}
        }
    }
    // Fed in two pieces, the search finds the same end.
    if data.len() > 1 {
        let mut search = HeadSearch::default();
        let cut = usize::from(data[0]) % data.len();
        let first = search.end(&data[..cut]);
        let whole = first.or_else(|| search.end(data));
        assert_eq!(whole, end, "split at {cut}");
    }
}

/// Bearer extraction from `Authorization` values (the input split at newlines).
pub fn bearer(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n').take(4) {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(http::header::AUTHORIZATION, v);
        }
    }
    if let Ok(Credential::Bearer(t) | Credential::Dpop(t)) = extract_bearer(&headers, 4096) {
        assert!(!t.is_empty() && t.len() <= 4096);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)));
    }
    // The same lines as `Cookie` fields and a token header, read by a route with every kind
    // of source: whatever comes out is one well-formed token, found in one of the sources.
    let mut more = HeaderMap::new();
    for (i, line) in data.split(|&b| b == b'\n').take(4).enumerate() {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            let name = if i == 3 { "x-token" } else { "cookie" };
            more.append(HeaderName::from_static(name), v);
        }
    }
    let sources = [
        TokenSource::Cookie("at".into()),
        TokenSource::Header(HeaderName::from_static("x-token")),
        TokenSource::Cookie("b".into()),
    ];
    if let Ok(Some(found)) = extract_token(&more, &sources, 4096) {
        let t = found.token;
        assert!(!t.is_empty() && t.len() <= 4096 && found.source < sources.len());
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)));
        let raw: Vec<&[u8]> = more.iter().map(|(_, v)| v.as_bytes()).collect();
        assert!(raw
            .iter()
            .any(|v| v.windows(t.len()).any(|w| w == t.as_bytes())));
    }
}

/// The key fixtures of the project (`tests/fixtures/keys`), found from the crate this file
/// is compiled in: the fuzz crate (`fuzz/`) or the project's integration tests.
fn fixtures() -> String {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        here.join("tests/fixtures/keys"),
        here.join("../tests/fixtures/keys"),
    ]
    .into_iter()
    .find(|p| p.is_dir())
    .expect("tests/fixtures/keys")
    .display()
    .to_string()
}
/// The fuzz clock: tokens' time claims are judged against it.
const NOW: f64 = 1_800_000_000.0;

fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let fix = fixtures();
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[upstreams.up]
url = "http://127.0.0.1:9"
[providers.corp]
issuer = "https://corp"
audiences = ["api"]
jwks_file = "{fix}/jwks.json"
algorithms = ["RS256", "PS256", "ES256", "EdDSA"]
max_token_lifetime = "1d"
[providers.svc]
issuer = "https://svc"
audiences = ["api", "svc"]
hmac_secret_file = "{fix}/hmac.secret"
algorithms = ["HS256"]
required_typ = "at+jwt"
[headers]
forward_claims = {{ sub = "X-User-Id", scope = "X-Scopes", "org.id" = "X-Org", roles = "X-Roles", n = "X-N" }}
[[routes]]
name = "open"
path_prefix = "/open"
auth = "none"
upstream = "up"
[[routes]]
name = "opt"
path_prefix = "/opt"
auth = "optional"
upstream = "up"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "up"
[[routes]]
name = "admin"
host = "admin.example"
path_prefix = "/api"
require_scopes = ["admin"]
require_claims = {{ "org.tier" = ["gold", "7", "true"] }}
upstream = "up"
[[routes]]
name = "report"
path_prefix = "/report"
require_scopes = ["admin"]
mode = "report"
upstream = "up"
[[routes]]
name = "web"
path_prefix = "/web"
token_sources = ["authorization", "cookie:at", "header:x-token"]
upstream = "up"
"#
        );
        let config =
            authgate::config::load_str(&text, Path::new("fuzz.toml")).expect("fuzz config");
        Snapshot::offline(config, &Metrics::new())
    })
}

/// `decide()` on a fixed snapshot with real keys. The input is split at the first two NUL
/// bytes into a request part and two JSON documents. Three ways in, by the first byte:
/// the token as given (malformed and forged tokens), or the JOSE header and claims signed
/// with the HMAC provider's secret, so the claim checks, the cache and the claim headers
/// behind a good signature are reached (`exp` ≥ 2^64 once panicked there).
pub fn decide_token(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == 0);
    let request = parts.next().unwrap_or_default();
    let first = parts.next().unwrap_or_default();
    let second = parts.next().unwrap_or_default();
    let (target, host) = match request.iter().position(|&b| b == b' ') {
        Some(i) => (&request[..i], Some(&request[i + 1..])),
        None => (request, None),
    };
    let token = match mode % 3 {
        0 => String::from_utf8_lossy(first).into_owned(),
        _ => {
            let secret = std::fs::read(format!("{}/hmac.secret", fixtures())).expect("hmac");
            let message = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(first),
                URL_SAFE_NO_PAD.encode(second)
            );
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
            let tag = aws_lc_rs::hmac::sign(&key, message.as_bytes());
            format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
        }
    };
    let mut headers = HeaderMap::new();
    // Bit 0x40: the token rides in a cookie (read on `/web`), after the request's own
    // cookie field when bit 0x20 adds one (the second document's bytes).
    let in_cookie = mode & 0x40 != 0;
    if in_cookie {
        if mode & 0x20 != 0 {
            if let Ok(v) = HeaderValue::from_bytes(second) {
                headers.append(http::header::COOKIE, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&format!("theme=1; at={token}")) {
            headers.append(http::header::COOKIE, v);
        }
    } else if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        headers.append(http::header::AUTHORIZATION, v);
    }
    // Every request names its host (one without is refused first): `localhost` unless the
    // input gives one.
    let host = match host {
        Some(h) => HeaderValue::from_bytes(h).ok(),
        None => Some(HeaderValue::from_static("localhost")),
    };
    if let Some(h) = host {
        headers.append(http::header::HOST, h);
    }
    let method = if mode & 0x80 == 0 {
        Method::GET
    } else {
        Method::POST
    };
    let head = RequestHead {
        method: &method,
        version: http::Version::HTTP_11,
        target,
        authority: None,
        headers: &headers,
        raw_head: None,
        tls: false,
        client_cert: None,
    };
    let snap = snapshot();
    // Twice: the second may be answered from the verified-token cache, and must agree.
    let first = decide(snap, &head, NOW);
    let second = decide(snap, &head, NOW);
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            assert_eq!((a.route, &a.path_and_query), (b.route, &b.path_and_query));
            assert_eq!(a.claim_headers, b.claim_headers);
            assert_eq!(
                a.would_reject.map(|d| d.reason),
                b.would_reject.map(|d| d.reason)
            );
        }
        (Err(a), Err(b)) => assert_eq!(a.reason, b.reason),
        _ => panic!("a cached decision differs: {first:?} vs {second:?}"),
    }
    if let Ok(grant) = first {
        let route = snap.config.routes.get(grant.route);
        if let Some(p) = grant.provider {
            assert!(
                route.providers.contains(&p),
                "verified by a provider of the route"
            );
        }
        // A cookie token never passes a POST: the fuzzed requests carry no Origin.
        if in_cookie && method == Method::POST && grant.would_reject.is_none() {
            assert!(
                grant.provider.is_none(),
                "a cross-site POST with a cookie token"
            );
        }
        // A would-be refusal (report-only route) carries nothing from the token.
        if grant.would_reject.is_some() {
            assert!(grant.claim_headers.is_empty() && grant.provider.is_none());
            assert!(grant.would_reject.is_some_and(|d| d.reason.is_reportable()));
        }
        for (name, value) in &grant.claim_headers {
            let _: &HeaderName = name;
            assert!(value.as_bytes().iter().all(|&b| b >= 0x20 && b != 0x7f));
        }
    }
}

/// A JWKS document, parsed for every algorithm.
pub fn jwks(data: &[u8]) {
    use jsonwebtoken::Algorithm::*;
    let _ = KeySet::from_jwks(
        data,
        &[
            RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
        ],
    );
}

/// The config loader: TOML, schema and every cross-check. Inputs that would make the
/// builder touch the outside (a file it reads, a host name it resolves) are skipped: files
/// are operator input whose contents the other targets fuzz, and a DNS lookup per input
/// would make the fuzzer crawl.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(raw) = toml::from_str::<RawConfig>(text) else {
        return;
    };
    let touches_files = raw.server.tls.is_some()
        || raw.providers.values().any(|p| {
            let p = p.get_ref();
            p.jwks_file.is_some()
                || p.hmac_secret_file.is_some()
                || p.jwks_ca_file.is_some()
                || p.revocation_file.is_some()
        })
        || raw
            .upstreams
            .values()
            .any(|u| u.get_ref().ca_file.is_some());
    let resolves = raw.upstreams.values().any(|u| {
        let url = &u.get_ref().url;
        url.parse::<http::Uri>().ok().is_some_and(|uri| {
            uri.host().is_some_and(|h| {
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_err()
            })
        })
    });
    if touches_files || resolves {
        return;
    }
    let hash = authgate::formats::sha256_hex(data);
    if let Err(errors) = build(raw, text, Path::new("fuzz.toml"), hash) {
        assert!(!errors.is_empty());
        for e in errors {
            assert!(!e.message.is_empty(), "{e:?}");
        }
    }
}

/// The revocation file format.
pub fn revocation(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(set) = RevocationSet::parse(text) {
            let _ = set.len();
        }
    }
}

/// `Cache-Control` of a JWKS response (the input split at newlines into header values).
pub fn cache_control(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n').take(4) {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(http::header::CACHE_CONTROL, v);
        }
    }
    let _ = authgate::auth::keystore::cache_lifetime(&headers);
}

/// A DPoP proof (RFC 9449) as the gateway checks it, by the first byte: the rest as the
/// proof itself (forms, base64, JSON); as the claims of a proof by the fixture EC key,
/// signed (`iat`, `htu`, `ath`, `jti` of any shape); as the JOSE header of a signed proof
/// (`alg`/`jwk` confusion, private members). Also the `Client-Cert` header and the RFC 7638
/// thumbprint of the input read as a JWK. A proof that passes must have been made for the
/// expected request by the key whose thumbprint it returns.
pub fn dpop(data: &[u8]) {
    use authgate::auth::dpop::{check_proof, Expected};
    use authgate::formats::dpop::{check_public, thumbprint};
    use jsonwebtoken::{Algorithm, EncodingKey};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    static EC: OnceLock<(EncodingKey, serde_json::Value)> = OnceLock::new();
    let (key, jwk) = EC.get_or_init(|| {
        let pem = std::fs::read(format!("{}/ec.pem", fixtures())).expect("ec fixture");
        let key = EncodingKey::from_ec_pem(&pem).expect("ec key");
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::ES256).expect("jwk");
        (key, serde_json::to_value(jwk).expect("jwk json"))
    });
    let sign = |header: &[u8], claims: &[u8]| {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let sig =
            jsonwebtoken::crypto::sign(message.as_bytes(), key, Algorithm::ES256).expect("sign");
        format!("{message}.{sig}")
    };
    let proof = match mode % 3 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => {
            let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
            sign(header.to_string().as_bytes(), rest)
        }
        _ => sign(
            rest,
            br#"{"jti":"j","htm":"GET","htu":"https://api.example.com/a","iat":1700000000}"#,
        ),
    };
    let expected = Expected {
        method: &Method::GET,
        htu: "https://api.example.com/a",
        access_token: (mode & 0x80 != 0).then_some("token"),
        algorithms: &[Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA],
        now: 1_700_000_000.0,
        max_age: 60.0,
        leeway: 5.0,
    };
    if let Ok(p) = check_proof(&proof, &expected) {
        assert_eq!(
            p.jkt,
            thumbprint(jwk).expect("fixture thumbprint"),
            "signed by the fixture key"
        );
        assert!(!p.jti.is_empty() && p.jti.len() <= 256);
        assert!((1_700_000_000.0 - 65.0..=1_700_000_005.0).contains(&p.iat));
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(rest) {
        let _ = check_public(&v);
        let _ = thumbprint(&v);
    }
    if let Ok(v) = HeaderValue::from_bytes(rest) {
        let mut h = HeaderMap::new();
        h.insert("client-cert", v);
        let _ = authgate::formats::client_cert::header_thumbprint(&h);
    }
}
