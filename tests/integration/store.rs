//! The fleet store's connection (issue 16, groundwork) against a real `redis-server`: first
//! writer wins across connections, passwords from settings (never in the URL), TLS with a
//! private CA, a hung store answered by the deadline, a gone one an error.

use std::time::{Duration, Instant};

use authgate::config::StoreConfig;
use authgate::runtime::store::{Store, StoreError};

use crate::support::redis::RedisServer;
use crate::support::{eventually, fixtures, rt};

fn metrics() -> std::sync::Arc<authgate::metrics::Metrics> {
    std::sync::Arc::new(authgate::metrics::Metrics::new())
}

fn settings(redis_url: String) -> StoreConfig {
    StoreConfig {
        redis_url,
        password: None,
        ca: None,
        timeout: Duration::from_millis(300),
        dpop_local_on_outage: false,
        key_prefix: "authgate".into(),
        revocation_max_age: Duration::from_secs(300),
        revocation_fail_open: false,
    }
}

fn first(store: &Store, key: &str, ttl_ms: u64) -> Result<bool, StoreError> {
    rt().block_on(store.first_use(key, ttl_ms))
}

/// `SET NX PX` through two connections, as two replicas would hold: one first writer per
/// key and window, and the key free again once its window is over.
#[test]
fn first_use_is_once_across_connections() {
    let redis = RedisServer::start(None);
    let a = Store::open(&settings(redis.url()), rt().handle(), metrics()).unwrap();
    let b = Store::open(&settings(redis.url()), rt().handle(), metrics()).unwrap();
    assert_eq!(first(&a, "proof-1", 60_000), Ok(true));
    assert_eq!(first(&b, "proof-1", 60_000), Ok(false), "the other replica");
    assert_eq!(first(&a, "proof-1", 60_000), Ok(false));
    assert_eq!(first(&b, "proof-2", 60_000), Ok(true));
    // A short window ends: the key may be written again.
    assert_eq!(first(&a, "short", 100), Ok(true));
    assert!(eventually(Duration::from_secs(5), || first(
        &b, "short", 100
    ) == Ok(true)));
}

/// The password comes from the settings (a file, in the config to come); a URL with a
/// password is refused; a wrong one is an error, never an answer.
#[test]
fn passwords_come_from_the_settings() {
    let redis = RedisServer::start(Some("store-secret-long-enough"));
    let mut s = settings(redis.url());
    let anonymous = Store::open(&s, rt().handle(), metrics()).unwrap();
    assert!(matches!(
        first(&anonymous, "k", 1000),
        Err(StoreError::Unavailable(_))
    ));
    s.password = Some("wrong".into());
    let wrong = Store::open(&s, rt().handle(), metrics()).unwrap();
    let e = first(&wrong, "k", 1000).unwrap_err();
    assert!(!format!("{e} {e:?}").contains("wrong"), "{e:?}");
    s.password = Some("store-secret-long-enough".into());
    let right = Store::open(&s, rt().handle(), metrics()).unwrap();
    assert_eq!(first(&right, "k", 1000), Ok(true));
    assert!(!format!("{s:?}").contains("store-secret"), "Debug hides it");
    let inline = settings(format!(
        "redis://:store-secret-long-enough@127.0.0.1:{}",
        redis.port
    ));
    assert!(matches!(
        Store::open(&inline, rt().handle(), metrics()),
        Err(StoreError::Misconfigured(m)) if m.contains("password")
    ));
}

/// `rediss://` with the CA of a private PKI; without that CA the handshake fails.
#[test]
fn tls_with_a_private_ca() {
    authgate::tls::install_crypto_provider();
    let redis = RedisServer::start_tls(None);
    let mut s = settings(redis.url());
    s.ca = Some(std::fs::read(fixtures().join("tls/ca.pem")).unwrap());
    let store = Store::open(&s, rt().handle(), metrics()).unwrap();
    assert_eq!(first(&store, "tls-key", 1000), Ok(true));
    assert_eq!(first(&store, "tls-key", 1000), Ok(false));
    let untrusting = Store::open(&settings(redis.url()), rt().handle(), metrics()).unwrap();
    assert!(first(&untrusting, "tls-key-2", 1000).is_err());
}

/// A hung store (stopped, its socket open) costs a call its deadline and an error, never
/// a wait without end; once it answers again, so do the calls. A store that is gone is an
/// error at once. (A restart on the same port, resync included, comes with the features.)
#[test]
fn a_hung_or_gone_store_is_bounded() {
    let redis = RedisServer::start(None);
    let store = Store::open(&settings(redis.url()), rt().handle(), metrics()).unwrap();
    rt().block_on(store.ping()).unwrap();
    redis.pause();
    let started = Instant::now();
    assert_eq!(
        first(&store, "during-pause", 1000),
        Err(StoreError::Timeout(Duration::from_millis(300)))
    );
    // Bounded: the deadline, not the kernel's TCP timeouts (a loose bound, for a busy box).
    assert!(started.elapsed() < Duration::from_secs(5));
    redis.resume();
    assert!(eventually(Duration::from_secs(10), || rt()
        .block_on(store.ping())
        .is_ok()));
    drop(redis);
    assert!(first(&store, "while-down", 1000).is_err());
}

/// Two replicas on one store: a DPoP proof accepted by one is a replay at the other. With
/// the store hung, `fail_closed` answers 503 and `local` lets this replica's own check stand.
#[test]
fn a_proof_is_accepted_once_per_fleet() {
    use crate::support::dpop::DpopKey;
    use crate::support::{get, good_claims, standard_config, Gateway, JwksServer, Keys, Upstream};
    use jsonwebtoken::Algorithm;
    let redis = RedisServer::start(None);
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let with_store = |policy: &str| {
        let gw = Gateway::start(&format!(
            "{}\n[store]\nredis_url = \"{}\"\ntimeout = \"300ms\"\ndpop_replay_on_outage = \"{policy}\"\n",
            standard_config(&jwks.url(), &upstream.url()),
            redis.url()
        ));
        gw.wait_ready();
        gw
    };
    let a = with_store("fail_closed");
    let b = with_store("local");
    let client = DpopKey::new(&keys.ec, Algorithm::ES256);
    let mut claims = good_claims("alice", "read");
    claims["cnf"] = serde_json::json!({ "jkt": client.thumbprint() });
    let bound = keys.es256().claims(claims).sign();
    let auth = format!("DPoP {bound}");
    let send = |gw: &Gateway, proof: &str| {
        get(
            gw.addr,
            "/api/x",
            &[("authorization", &auth), ("dpop", proof)],
        )
    };
    let proof = client.proof("GET", "http://localhost/api/x", Some(&bound));
    assert_eq!(send(&a, &proof).status, 200);
    assert_eq!(
        send(&b, &proof).reason(),
        "dpop_replay",
        "the other replica"
    );
    let proof = client.proof("GET", "http://localhost/api/x", Some(&bound));
    assert_eq!(send(&b, &proof).status, 200);
    assert_eq!(send(&a, &proof).reason(), "dpop_replay");
    // The store hangs: each replica by its policy, within the store's timeout.
    redis.pause();
    let r = send(
        &a,
        &client.proof("GET", "http://localhost/api/x", Some(&bound)),
    );
    assert_eq!(
        (r.status, r.reason().as_str()),
        (503, "dpop_replay_unavailable")
    );
    let proof = client.proof("GET", "http://localhost/api/x", Some(&bound));
    assert_eq!(
        send(&b, &proof).status,
        200,
        "local: this replica's check stands"
    );
    assert_eq!(
        send(&b, &proof).reason(),
        "dpop_replay",
        "and still holds here"
    );
    redis.resume();
    // Bearer tokens never ask the store.
    let plain = keys.es256().claims(good_claims("bob", "read")).sign();
    redis.pause();
    assert_eq!(a.get_with("/api/x", &plain).status, 200);
    // Every call counted by result: two first uses and one timeout at `a`.
    let m = a.metrics();
    let calls = |result: &str| {
        crate::support::metric_value(
            &m,
            &format!("authgate_store_requests_total{{op=\"first_use\",result=\"{result}\"}}"),
        )
    };
    assert_eq!((calls("ok"), calls("timeout")), (2.0, 1.0));
}
