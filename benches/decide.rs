//! Micro-benchmarks of the pure decision path: `decide()` per algorithm (verified, and from
//! the verified-token cache), route lookup with 10 and 1,000 routes, claim-to-header
//! rendering, config parse+build. No network: keys come from the test fixtures.
//! Compare ratios within one run (`make bench`); absolute times on shared machines are noise.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use authgate::auth::cache::TokenCache;
use authgate::auth::claims::{render_header_value, ClaimPath};
use authgate::auth::introspection::{IntrospectionCache, Lookup};
use authgate::auth::{decide, Context, RequestHead};
use authgate::config::load_str;
use authgate::config::ProviderId;
use authgate::runtime::Snapshot;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");

fn config(extra_routes: usize) -> String {
    let mut c = format!(
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
jwks_file = "{FIX}/jwks.json"
algorithms = ["RS256", "PS256", "ES256", "EdDSA"]
[headers]
forward_claims = {{ sub = "X-User-Id", scope = "X-Scopes" }}
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "up"
"#
    );
    for i in 0..extra_routes {
        c.push_str(&format!("[[routes]]\nname = \"r{i}\"\npath_prefix = \"/svc{i}/v1\"\nauth = \"none\"\nupstream = \"up\"\n"));
    }
    c
}

fn snapshot(text: &str) -> Snapshot {
    let config = load_str(text, Path::new("bench.toml")).expect("bench config");
    // A `jwks_file` provider's store holds the document the config read.
    Snapshot::offline(config, &authgate::metrics::Metrics::new())
}

/// The fixture key in `pem`, for `alg`.
fn signing_key(alg: Algorithm, pem: &str) -> EncodingKey {
    let pem = std::fs::read(format!("{FIX}/{pem}")).unwrap();
    match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap()
}

fn token(alg: Algorithm, kid: &str, pem: &str) -> String {
    token_with(alg, kid, pem, json!({}))
}

/// `token` with `extra` claims (a `cnf`).
fn token_with(alg: Algorithm, kid: &str, pem: &str, extra: serde_json::Value) -> String {
    let key = signing_key(alg, pem);
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = json!({"iss": "https://corp", "aud": "api", "sub": "alice", "scope": "read write",
                        "iat": now, "exp": now + 3600});
    if let (Some(c), serde_json::Value::Object(extra)) = (claims.as_object_mut(), extra) {
        c.extend(extra);
    }
    jsonwebtoken::encode(&h, &claims, &key).unwrap()
}

/// The headers of a request to `api.example.com` carrying `name: value`.
fn headers_with(name: &'static str, value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(name, HeaderValue::from_str(value).unwrap());
    headers.insert("host", HeaderValue::from_static("api.example.com"));
    headers
}

/// A `GET` of `target` with `headers`, as the gateway hands it to `decide`.
fn get<'a>(target: &'a [u8], headers: &'a HeaderMap) -> RequestHead<'a> {
    RequestHead {
        method: &Method::GET,
        version: http::Version::HTTP_11,
        target,
        authority: None,
        headers,
        raw_head: None,
        tls: false,
        client_cert: None,
    }
}

fn now() -> f64 {
    jsonwebtoken::get_current_timestamp() as f64
}

fn bench_decide(c: &mut Criterion) {
    // Cache off: every iteration verifies the signature. `decide_cached`: the same token
    // from the verified-token cache.
    let uncached = snapshot(&format!("{}[token_cache]\nenabled = false\n", config(0)));
    let cached = snapshot(&config(0));
    let mut g = c.benchmark_group("decide");
    for (name, alg, kid, pem) in [
        ("RS256", Algorithm::RS256, "rsa", "rsa.pem"),
        ("PS256", Algorithm::PS256, "rsa-ps", "rsa.pem"),
        ("ES256", Algorithm::ES256, "ec", "ec.pem"),
        ("EdDSA", Algorithm::EdDSA, "ed", "ed.pem"),
    ] {
        let headers = headers_with("authorization", &format!("Bearer {}", token(alg, kid, pem)));
        let head = get(b"/api/orders/7?x=1", &headers);
        assert!(
            decide(&uncached, &head, now()).is_ok(),
            "{name} must verify"
        );
        assert!(decide(&cached, &head, now()).is_ok(), "{name} must verify");
        g.bench_function(name, |b| {
            b.iter(|| decide(black_box(&uncached), black_box(&head), now()))
        });
        g.bench_function(format!("{name}_cached"), |b| {
            b.iter(|| decide(black_box(&cached), black_box(&head), now()))
        });
    }
    bench_token_sources(&mut g);
    bench_dpop_decide(&cached, &mut g);
    bench_revocations(&mut g);
    g.finish();
}

/// `ES256_cached` with a revocation list of 100,000 `jti`s and 10,000 subjects: the check
/// each request makes against a `revocation_file` or a fleet store's copy (the same set).
fn bench_revocations(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let dir = std::env::temp_dir().join(format!("authgate-bench-rev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("revoked.toml");
    let mut text = String::from("jti = [\n");
    for i in 0..100_000 {
        text.push_str(&format!("\"jti-{i}\",\n"));
    }
    text.push_str("]\n[subjects]\n");
    for i in 0..10_000 {
        text.push_str(&format!("user-{i} = 1700000000\n"));
    }
    std::fs::write(&list, text).unwrap();
    let with_list = snapshot(&config(0).replace(
        "algorithms = [\"RS256\", \"PS256\", \"ES256\", \"EdDSA\"]",
        &format!(
            "algorithms = [\"RS256\", \"PS256\", \"ES256\", \"EdDSA\"]\nrevocation_file = \"{}\"",
            list.display()
        ),
    ));
    let t = token_with(
        Algorithm::ES256,
        "ec",
        "ec.pem",
        json!({"jti": "not-revoked"}),
    );
    let headers = headers_with("authorization", &format!("Bearer {t}"));
    let head = get(b"/api/orders/7?x=1", &headers);
    assert!(decide(&with_list, &head, now()).is_ok(), "not revoked");
    g.bench_function("ES256_cached_revocations_110k", |b| {
        b.iter(|| decide(black_box(&with_list), black_box(&head), now()))
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A DPoP-bound ES256 token from the verified-token cache with a fresh ES256 proof per
/// request, as real clients send (`ES256_cached` without a proof is its baseline): the
/// proof's signature, claims, thumbprint, `htu`, and the replay store. Signing the proofs
/// is setup, not measured.
fn bench_dpop_decide(
    cached: &Snapshot,
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
) {
    use jsonwebtoken::jwk::Jwk;
    let key = signing_key(Algorithm::ES256, "ec.pem");
    let jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    let jkt = authgate::formats::dpop::thumbprint(&serde_json::to_value(&jwk).unwrap()).unwrap();
    let bound = token_with(
        Algorithm::ES256,
        "ec",
        "ec.pem",
        json!({"cnf": {"jkt": jkt}}),
    );
    let ath = {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&bound))
    };
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("dpop+jwt".into());
    h.jwk = Some(jwk);
    let n = std::cell::Cell::new(0u64);
    let request = || {
        n.set(n.get() + 1);
        let claims = json!({"htm": "GET", "htu": "http://api.example.com/api/orders/7",
                            "iat": now(), "jti": format!("bench-{}", n.get()), "ath": ath});
        let proof = jsonwebtoken::encode(&h, &claims, &key).unwrap();
        let mut headers = headers_with("authorization", &format!("DPoP {bound}"));
        headers.insert("dpop", HeaderValue::from_str(&proof).unwrap());
        headers
    };
    let headers = request();
    let head = get(b"/api/orders/7?x=1", &headers);
    let granted = decide(cached, &head, now()).expect("a DPoP-bound request must pass");
    assert_eq!(granted.bound.label(), Some("dpop"));
    assert!(
        decide(cached, &head, now()).is_err(),
        "and its proof only once"
    );
    g.bench_function("ES256_cached_dpop_ES256", |b| {
        b.iter_batched(
            request,
            |headers| {
                decide(
                    black_box(cached),
                    black_box(&get(b"/api/orders/7?x=1", &headers)),
                    now(),
                )
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

/// The token from a cookie (among others) instead of `Authorization`, verified-token cache
/// on; and an opaque token decided from a cached introspection answer (the answer cache's
/// lookup included, the call itself not: that is I/O).
fn bench_token_sources(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "bench-secret").unwrap();
    let text = format!(
        "{}[providers.idp]\nissuer = \"https://idp\"\naudiences = [\"api\"]\nintrospection_url = \"http://127.0.0.1:9/i\"\nclient_id = \"gw\"\nclient_secret_file = {:?}\n[[routes]]\nname = \"web\"\npath_prefix = \"/web\"\nproviders = [\"corp\"]\ntoken_sources = [\"authorization\", \"cookie:access_token\"]\nupstream = \"up\"\n[[routes]]\nname = \"opaque\"\npath_prefix = \"/opaque\"\nproviders = [\"idp\"]\nupstream = \"up\"\n",
        config(0).replace("[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"up\"\n", ""),
        secret.display().to_string()
    );
    let snap = snapshot(&text);
    let jwt = token(Algorithm::ES256, "ec", "ec.pem");
    let headers = headers_with(
        "cookie",
        &format!("theme=dark; access_token={jwt}; lang=en"),
    );
    let head = get(b"/web/cart", &headers);
    assert!(
        decide(&snap, &head, now()).is_ok(),
        "cookie token must verify"
    );
    g.bench_function("ES256_cached_cookie", |b| {
        b.iter(|| decide(black_box(&snap), black_box(&head), now()))
    });

    let idp = &snap.config.providers[1];
    let answers = IntrospectionCache::new(idp.introspection.as_ref().unwrap());
    let opaque = "ory_at_Vq3k9mX0bJ2LwzPfY7Hs1dEoRtUaCg4N.Kp8ZiQe5Wn6Ym0Tx";
    let now_s = now();
    let serde_json::Value::Object(claims) = json!({"active": true, "iss": "https://idp",
        "aud": "api", "sub": "alice", "scope": "read write", "iat": now_s, "exp": now_s + 3600.0})
    else {
        unreachable!()
    };
    answers.insert_active(TokenCache::key(opaque), std::sync::Arc::new(claims), now_s);
    let cx = Answers {
        snap: &snap,
        answers: &answers,
    };
    let headers = headers_with("authorization", &format!("Bearer {opaque}"));
    let head = get(b"/opaque/orders", &headers);
    assert!(
        decide(&cx, &head, now()).is_ok(),
        "the cached answer must pass"
    );
    g.bench_function("opaque_introspected_cached", |b| {
        b.iter(|| decide(black_box(&cx), black_box(&head), now()))
    });
}

/// The snapshot, with the introspection answers of `answers` (what the runtime's
/// introspector keeps).
struct Answers<'a> {
    snap: &'a Snapshot,
    answers: &'a IntrospectionCache,
}

impl Context for Answers<'_> {
    fn config(&self) -> &authgate::config::Config {
        self.snap.config()
    }
    fn keys(&self, p: ProviderId) -> &authgate::auth::keystore::ProviderKeys {
        self.snap.keys(p)
    }
    fn revocations(
        &self,
        p: ProviderId,
    ) -> Option<&dyn authgate::formats::revocation::Revocations> {
        self.snap.revocations(p)
    }
    fn token_cache(&self) -> Option<&TokenCache> {
        self.snap.token_cache()
    }
    fn introspection(
        &self,
        _p: ProviderId,
        token: &authgate::auth::cache::TokenKey,
    ) -> Option<Lookup> {
        self.answers.get(token)
    }
    fn dpop(&self) -> Option<&authgate::auth::dpop::DpopState> {
        self.snap.dpop()
    }
}

fn bench_routes(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_lookup");
    for n in [10usize, 1000] {
        let snap = snapshot(&config(n - 1));
        let target = format!("/svc{}/v1/items/42", n - 2);
        let routes = &snap.config.routes;
        assert!(routes.match_route(None, &target, &Method::GET).is_some());
        g.bench_function(format!("{n}_routes"), |b| {
            b.iter(|| routes.match_route(black_box(None), black_box(&target), &Method::GET))
        });
    }
    g.finish();
}

fn bench_claims(c: &mut Criterion) {
    let claims: authgate::auth::claims::Claims = serde_json::from_value(json!({
        "sub": "user-1234", "scope": "read write admin", "roles": ["a", "b", "c"],
        "org": {"id": 42, "tier": "gold"}}))
    .unwrap();
    let paths: Vec<_> = ["sub", "scope", "roles", "org.id", "org"]
        .iter()
        .map(|p| ClaimPath::parse(p).unwrap())
        .collect();
    c.bench_function("claims_to_headers_5", |b| {
        b.iter(|| {
            for p in &paths {
                let v = p.lookup(black_box(&claims)).unwrap();
                black_box(render_header_value(v).unwrap());
            }
        })
    });
}

fn bench_config(c: &mut Criterion) {
    let text = config(999);
    c.bench_function("config_parse_build_1000_routes", |b| {
        b.iter(|| load_str(black_box(&text), Path::new("bench.toml")).unwrap())
    });
}

/// A DPoP proof check alone: the proof's own JWS with the key it carries, its claims, the
/// thumbprint (`decide/ES256_cached_dpop_ES256` is the whole request).
fn bench_dpop(c: &mut Criterion) {
    use authgate::auth::dpop::{check_proof, Expected};
    use jsonwebtoken::jwk::Jwk;
    let mut g = c.benchmark_group("dpop");
    let token = token(Algorithm::RS256, "rsa", "rsa.pem");
    let ath = {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(token.as_bytes()))
    };
    for (name, alg, pem) in [
        ("check_proof_ES256", Algorithm::ES256, "ec.pem"),
        ("check_proof_RS256", Algorithm::RS256, "rsa.pem"),
        ("check_proof_EdDSA", Algorithm::EdDSA, "ed.pem"),
    ] {
        let key = signing_key(alg, pem);
        let mut h = Header::new(alg);
        h.typ = Some("dpop+jwt".into());
        h.jwk = Some(Jwk::from_encoding_key(&key, alg).unwrap());
        let claims = json!({"htm": "GET", "htu": "https://api.example.com/api/orders/7",
                            "iat": now(), "jti": "bench-1", "ath": ath});
        let proof = jsonwebtoken::encode(&h, &claims, &key).unwrap();
        let expected = Expected {
            method: &Method::GET,
            htu: "https://api.example.com/api/orders/7",
            access_token: Some(&token),
            algorithms: &[Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA],
            now: now(),
            max_age: 300.0,
            leeway: 5.0,
        };
        assert!(check_proof(&proof, &expected).is_ok(), "{name}");
        g.bench_function(name, |b| {
            b.iter(|| check_proof(black_box(&proof), black_box(&expected)))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_decide,
    bench_routes,
    bench_claims,
    bench_config,
    bench_dpop
);
criterion_main!(benches);
