//! `decide()` as a plain function: every `Reject` it can produce, and what a grant carries.

use std::path::Path;
use std::sync::Arc;

use http::header::HOST;
use http::{HeaderMap, HeaderValue, Method};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::auth::cache::TokenCache;
use crate::auth::keystore::ProviderKeys;
use crate::config::{load_str, Config, KeySource, ProviderId};
use crate::formats::revocation::Revocations;

/// What `decide` reads, built here (the runtime's snapshot lives above `auth`).
struct Snapshot {
    config: Config,
    keys: Vec<Arc<ProviderKeys>>,
    token_cache: Option<TokenCache>,
    dpop: super::dpop::DpopState,
}

impl Context for Snapshot {
    fn config(&self) -> &Config {
        &self.config
    }

    fn keys(&self, provider: ProviderId) -> &ProviderKeys {
        &self.keys[provider.index()]
    }

    fn revocations(&self, _provider: ProviderId) -> Option<&dyn Revocations> {
        None
    }

    fn token_cache(&self) -> Option<&TokenCache> {
        self.token_cache.as_ref()
    }

    fn dpop(&self) -> Option<&super::dpop::DpopState> {
        Some(&self.dpop)
    }
}

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");
/// The clock of these tests: real time (key stores date their keys with it), fixed once.
fn now() -> f64 {
    static NOW: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *NOW.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            .floor()
    })
}

fn config_text() -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_token_bytes = 4096
[admin]
listen = "127.0.0.1:0"
[upstreams.up]
url = "http://127.0.0.1:9"
[providers.corp]
issuer = "https://corp"
audiences = ["api"]
jwks_file = "{FIX}/jwks.json"
algorithms = ["RS256", "ES256", "EdDSA"]
[providers.svc]
issuer = "https://svc"
audiences = ["api"]
hmac_secret_file = "{FIX}/hmac.secret"
algorithms = ["HS256"]
[headers]
forward_claims = {{ sub = "X-User-Id", "org.id" = "X-Org" }}
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
name = "write"
path_prefix = "/api"
methods = ["POST"]
require_scopes = ["write"]
require_claims = {{ "org.tier" = "gold" }}
providers = ["corp"]
upstream = "up"
"#
    )
}

/// A snapshot of `text` with its keys loaded, no token cache and its own DPoP state.
fn snapshot_of(text: &str) -> Snapshot {
    let config = load_str(text, Path::new("test.toml")).expect("config builds");
    let keys = config
        .providers
        .iter()
        .map(|p| ProviderKeys::new(p, None))
        .collect();
    Snapshot {
        config,
        keys,
        token_cache: None,
        dpop: super::dpop::DpopState::new(10_000),
    }
}

fn snapshot_with(keys_loaded: bool) -> Snapshot {
    let config = load_str(&config_text(), Path::new("test.toml")).expect("config builds");
    let keys = config
        .providers
        .iter()
        .map(|p| match &p.key_source {
            // A `jwks_file` provider's store loads the file when it is created.
            KeySource::JwksFile(_) if keys_loaded => ProviderKeys::new(p, None),
            // Keys not loaded: the same provider as if its keys came from a URL not yet fetched.
            KeySource::JwksFile(_) => {
                let mut unfetched = p.clone();
                unfetched.key_source = KeySource::JwksUrl("http://127.0.0.1:9/jwks.json".into());
                ProviderKeys::new(&unfetched, None)
            }
            _ => ProviderKeys::new(p, None),
        })
        .collect();
    let token_cache = TokenCache::new(&config.token_cache, &crate::metrics::Metrics::new());
    Snapshot {
        config,
        keys,
        token_cache,
        dpop: super::dpop::DpopState::new(10_000),
    }
}

fn snapshot() -> Snapshot {
    snapshot_with(true)
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIX}/rsa.pem")).unwrap()).unwrap()
}

fn claims() -> Value {
    json!({"iss": "https://corp", "aud": "api", "sub": "alice", "exp": now() + 60.0, "iat": now() - 1.0,
           "scope": "read write", "org": {"id": "o1", "tier": "gold"}})
}

fn rs256(claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa".into());
    jsonwebtoken::encode(&h, claims, &rsa()).unwrap()
}

fn hs256(claims: &Value) -> String {
    let secret = std::fs::read(format!("{FIX}/hmac.secret")).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(&secret),
    )
    .unwrap()
}

/// A header map of `pairs`, in order, repeated names appended (the auth tests' requests).
pub(crate) fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        map.append(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

fn run<C: Context + ?Sized>(
    snap: &C,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<Grant, Denial> {
    let mut map = header_map(headers);
    // Every request names its host; `localhost` unless the test says otherwise.
    if !map.contains_key(HOST) && !target.starts_with("http") {
        map.insert(HOST, HeaderValue::from_static("localhost"));
    }
    decide(
        snap,
        &RequestHead {
            method: &method,
            version: http::Version::HTTP_11,
            target: target.as_bytes(),
            authority: None,
            headers: &map,
            raw_head: None,
            tls: false,
            client_cert: None,
        },
        now(),
    )
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn reason(r: Result<Grant, Denial>) -> Reject {
    r.expect_err("should be refused").reason
}

#[test]
fn grants_carry_route_path_and_claim_headers() {
    let snap = snapshot();
    let t = rs256(&claims());
    let g = run(
        &snap,
        Method::GET,
        "/api//x/../y?q=1",
        &[("authorization", &bearer(&t))],
    )
    .unwrap();
    assert_eq!(snap.config.routes.get(g.route).name, "api");
    assert_eq!(g.path_and_query, "/api/y?q=1");
    assert_eq!(g.provider, Some(ProviderId::new(0)));
    let h: Vec<(String, String)> = g
        .claim_headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        h,
        vec![
            ("x-org".into(), "o1".into()),
            ("x-user-id".into(), "alice".into())
        ]
    );
    let g = run(
        &snap,
        Method::POST,
        "/api/x",
        &[("authorization", &bearer(&t))],
    )
    .unwrap();
    assert_eq!(snap.config.routes.get(g.route).name, "write");
}

#[test]
fn auth_none_and_optional() {
    let snap = snapshot();
    let g = run(
        &snap,
        Method::GET,
        "/open/x",
        &[("authorization", "Bearer garbage")],
    )
    .unwrap();
    assert!(g.claim_headers.is_empty() && g.provider.is_none());
    let g = run(&snap, Method::GET, "/opt/x", &[]).unwrap();
    assert!(g.provider.is_none());
    assert_eq!(
        reason(run(
            &snap,
            Method::GET,
            "/opt/x",
            &[("authorization", "Bearer a.b.c")]
        )),
        Reject::MalformedToken
    );
}

/// Method, target, headers, expected refusal.
type Case<'a> = (Method, &'a str, Vec<(&'a str, String)>, Reject);

#[test]
fn every_decision_reject() {
    let snap = snapshot();
    let t = rs256(&claims());
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        bearer(&rs256(&c))
    };
    let cases: Vec<Case> = vec![
        (Method::GET, "/nope", vec![], Reject::NoRoute),
        (Method::GET, "/api/%2e%2e/%2e%2e", vec![], Reject::BadPath),
        (
            Method::GET,
            "/api/x",
            vec![("host", "a".into()), ("host", "b".into())],
            Reject::BadHost,
        ),
        (
            Method::GET,
            "/api/x",
            vec![("host", "bad host".into())],
            Reject::BadHost,
        ),
        (
            Method::GET,
            "/api/x",
            vec![("authorization", bearer(&t)), ("authorization", bearer(&t))],
            Reject::MultipleAuthorization,
        ),
        (Method::GET, "/api/x", vec![], Reject::MissingToken),
        (
            Method::GET,
            "/api/x",
            vec![("authorization", format!("Bearer {}", "a".repeat(5000)))],
            Reject::TokenTooLarge,
        ),
        (
            Method::GET,
            "/api/x",
            vec![("authorization", "Bearer x.y".into())],
            Reject::MalformedToken,
        ),
        (
            Method::GET,
            "/api/x",
            vec![("authorization", with(&|c| c["sub"] = json!("a\nb")))],
            Reject::UnsafeClaimValue,
        ),
        (
            Method::GET,
            "/api/x",
            vec![("authorization", with(&|c| c["exp"] = json!(now() - 100.0)))],
            Reject::Expired,
        ),
        (
            Method::GET,
            "/api/x",
            vec![("authorization", with(&|c| c["nbf"] = json!(now() + 100.0)))],
            Reject::NotYetValid,
        ),
        (
            Method::GET,
            "/api/x",
            vec![("authorization", with(&|c| c["aud"] = json!(["other"])))],
            Reject::BadAudience,
        ),
        (
            Method::GET,
            "/api/x",
            vec![(
                "authorization",
                with(&|c| c["iss"] = json!("https://other")),
            )],
            Reject::BadIssuer,
        ),
        (
            Method::GET,
            "/api/x",
            vec![("authorization", with(&|c| c["exp"] = json!("soon")))],
            Reject::BadClaims,
        ),
        (
            Method::POST,
            "/api/x",
            vec![("authorization", with(&|c| c["scope"] = json!("read")))],
            Reject::InsufficientScope,
        ),
        (
            Method::POST,
            "/api/x",
            vec![(
                "authorization",
                with(&|c| c["org"]["tier"] = json!("silver")),
            )],
            Reject::ClaimMismatch,
        ),
    ];
    for (method, target, headers, want) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let got = run(&snap, method.clone(), target, &h);
        assert_eq!(
            got.as_ref().err().map(|d| d.reason),
            Some(want),
            "{method} {target} {h:?}: {got:?}"
        );
    }
}

#[test]
fn header_tricks() {
    let snap = snapshot();
    let enc = |h: Value, c: &Value, key: &EncodingKey, alg: Algorithm| {
        use base64::Engine as _;
        let b = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let msg = format!(
            "{}.{}",
            b(h.to_string().as_bytes()),
            b(c.to_string().as_bytes())
        );
        let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, alg).unwrap();
        format!("Bearer {msg}.{sig}")
    };
    let c = claims();
    let k = rsa();
    let cases = [
        (json!({"alg": "none", "kid": "rsa"}), Reject::AlgNotAllowed),
        (json!({"alg": "RS512", "kid": "rsa"}), Reject::AlgNotAllowed),
        (json!({"alg": "PS256", "kid": "rsa"}), Reject::AlgNotAllowed),
        (
            json!({"alg": "RS256", "kid": "rsa", "crit": ["x"], "x": 1}),
            Reject::CritUnsupported,
        ),
        (
            json!({"alg": "RS256", "kid": "rsa", "crit": null}),
            Reject::CritUnsupported,
        ),
        (
            json!({"alg": "RS256", "kid": "unknown"}),
            Reject::UnknownKid,
        ),
        (json!({"alg": "RS256", "kid": "ec"}), Reject::AlgNotAllowed),
        (json!({"kid": "rsa"}), Reject::MalformedToken),
    ];
    for (header, want) in cases {
        let alg = match header["alg"].as_str() {
            Some("RS512") => Algorithm::RS512,
            Some("PS256") => Algorithm::PS256,
            _ => Algorithm::RS256,
        };
        let auth = enc(header.clone(), &c, &k, alg);
        assert_eq!(
            reason(run(
                &snap,
                Method::GET,
                "/api/x",
                &[("authorization", &auth)]
            )),
            want,
            "{header}"
        );
    }
    // The unknown-kid refusal names the provider to refetch.
    let auth = enc(
        json!({"alg": "RS256", "kid": "unknown"}),
        &c,
        &k,
        Algorithm::RS256,
    );
    let d = run(&snap, Method::GET, "/api/x", &[("authorization", &auth)]).unwrap_err();
    assert_eq!(d.provider, Some(ProviderId::new(0)));
    // A damaged signature. One whole character well inside it is changed: the last two
    // (what this test changed before) were already `AA` once in 256 tokens, as `exp`
    // changes every second, and the token then passed.
    let mut t = rs256(&c);
    let at = t.len() - 10;
    let flipped = if &t[at..=at] == "A" { "B" } else { "A" };
    t.replace_range(at..=at, flipped);
    assert_eq!(
        reason(run(
            &snap,
            Method::GET,
            "/api/x",
            &[("authorization", &bearer(&t))]
        )),
        Reject::BadSignature
    );
}

#[test]
fn providers_are_chosen_by_issuer() {
    let snap = snapshot();
    let mut c = claims();
    c["iss"] = json!("https://svc");
    let g = run(
        &snap,
        Method::GET,
        "/api/x",
        &[("authorization", &bearer(&hs256(&c)))],
    )
    .unwrap();
    assert_eq!(g.provider, Some(ProviderId::new(1)));
    // An HS256 token naming the RSA provider's issuer: that provider does not allow HS256.
    let t = hs256(&claims());
    assert_eq!(
        reason(run(
            &snap,
            Method::GET,
            "/api/x",
            &[("authorization", &bearer(&t))]
        )),
        Reject::AlgNotAllowed
    );
    c["iss"] = json!("https://nobody");
    assert_eq!(
        reason(run(
            &snap,
            Method::GET,
            "/api/x",
            &[("authorization", &bearer(&hs256(&c)))]
        )),
        Reject::BadIssuer
    );
    // The write route accepts only corp, whose allow-list has no HS256.
    let mut c = claims();
    c["iss"] = json!("https://svc");
    assert_eq!(
        reason(run(
            &snap,
            Method::POST,
            "/api/x",
            &[("authorization", &bearer(&hs256(&c)))]
        )),
        Reject::AlgNotAllowed
    );
}

#[test]
fn keys_not_loaded_is_503() {
    let snap = snapshot_with(false);
    let t = rs256(&claims());
    assert_eq!(
        reason(run(
            &snap,
            Method::GET,
            "/api/x",
            &[("authorization", &bearer(&t))]
        )),
        Reject::KeysUnavailable
    );
}

#[test]
fn reject_table_is_consistent() {
    let mut labels = std::collections::HashSet::new();
    for (i, r) in Reject::ALL.into_iter().enumerate() {
        assert_eq!(r.index(), i, "ALL is in declaration order");
        assert!(labels.insert(r.label()), "duplicate label {}", r.label());
        assert!(r
            .label()
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_'));
        match r.status() {
            // RFC 9449's DPoP codes go with the `DPoP` scheme.
            401 if r.dpop_challenge() => assert!(
                matches!(
                    r.oauth_error(),
                    Some("invalid_dpop_proof" | "use_dpop_nonce" | "invalid_token")
                ),
                "{r:?}"
            ),
            401 => assert!(
                r == Reject::MissingToken || r.oauth_error() == Some("invalid_token"),
                "{r:?}"
            ),
            // A CSRF refusal is no token error: RFC 6750 has no code for it.
            403 if r == Reject::CsrfFailed => assert_eq!(r.oauth_error(), None),
            403 => assert_eq!(r.oauth_error(), Some("insufficient_scope"), "{r:?}"),
            // 502 and 504 are upstream failures (`runtime::UpstreamFailure`), never refusals.
            400 | 404 | 408 | 431 | 500 | 503 => {}
            s => panic!("unexpected status {s} for {r:?}"),
        }
        assert!(!r.description().is_empty());
    }
}

mod binding;
mod head;
mod introspected;

/// Report-only routes let through exactly the token and authorization refusals (401, 403,
/// and 503 for keys not loaded), never a request-safety one (issue 13).
#[test]
fn reportable_reasons_are_the_token_and_authorization_ones() {
    for r in Reject::ALL {
        let token_or_authz = matches!(r.status(), 401 | 403 | 503) && r != Reject::TokenTooLarge;
        assert_eq!(r.is_reportable(), token_or_authz, "{r:?}");
    }
}
