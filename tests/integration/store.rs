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

/// Redis closes the connections (an idle timeout, `CLIENT KILL`, a restart): the next call
/// finds its connection gone, is made again on a new one, and is answered, not failed.
#[test]
fn a_closed_connection_costs_no_call() {
    let redis = RedisServer::start(None);
    let store = Store::open(&settings(redis.url()), rt().handle(), metrics()).unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_connection().unwrap();
    for round in 0..3 {
        assert_eq!(first(&store, &format!("before-{round}"), 60_000), Ok(true));
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .exec(&mut c)
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            first(&store, &format!("after-{round}"), 60_000),
            Ok(true),
            "round {round}: the first call after the close"
        );
    }
}

/// A store that goes silent without closing anything (a hung proxy, a dropped NAT entry:
/// no reset, no TCP timeout) costs calls their deadline; once Redis can be reached again,
/// a new connection is made and calls are answered, without a restart.
#[test]
fn a_silent_connection_is_replaced() {
    use crate::support::redis::Relay;
    let redis = RedisServer::start(None);
    let relay = Relay::start(redis.port);
    let m = metrics();
    let store = Store::open(&settings(relay.url()), rt().handle(), m.clone()).unwrap();
    assert_eq!(first(&store, "before", 60_000), Ok(true));
    relay.silence();
    for key in ["silent-1", "silent-2", "silent-3"] {
        assert!(matches!(
            first(&store, key, 60_000),
            Err(StoreError::Timeout(_))
        ));
    }
    relay.heal();
    assert!(
        eventually(Duration::from_secs(10), || first(&store, "after", 60_000)
            == Ok(true)),
        "answered again on a new connection"
    );
    assert_eq!(first(&store, "before", 60_000), Ok(false), "the same Redis");
    assert!(m.store_reconnects.get() >= 1);
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

/// A gateway whose provider reads revocations from the store at `redis_url`, with the
/// `[store]` lines `extra`.
fn revoking_gateway(
    jwks: &crate::support::JwksServer,
    upstream: &crate::support::Upstream,
    redis_url: &str,
    extra: &str,
) -> crate::support::Gateway {
    let config = crate::support::standard_config(&jwks.url(), &upstream.url()).replace(
        "jwks_refetch_cooldown = \"1s\"",
        "jwks_refetch_cooldown = \"1s\"\nrevocation = \"store\"",
    );
    crate::support::Gateway::start(&format!(
        "{config}\n[store]\nredis_url = \"{redis_url}\"\ntimeout = \"300ms\"\n{extra}\n"
    ))
}

/// `authgate revoke -c CONFIG ARGS`: success, stdout, stderr.
fn revoke(gw: &crate::support::Gateway, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(crate::support::bin())
        .arg("revoke")
        .arg("-c")
        .arg(gw.config_path())
        .args(args)
        .output()
        .expect("run authgate revoke");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn token(keys: &crate::support::Keys, sub: &str, jti: &str, iat: i64) -> String {
    let mut c = crate::support::good_claims(sub, "read");
    c["jti"] = serde_json::json!(jti);
    c["iat"] = serde_json::json!(iat);
    keys.rs256().claims(c).sign()
}

/// How long a revocation written at one replica may take to be enforced by every replica:
/// the product's bound (about a second: the feed is immediate, the version check runs each
/// second) with room for a loaded test machine.
const FLEET_BOUND: Duration = Duration::from_secs(3);

/// Two replicas on the store at `redis_url` (with the `[store]` lines `extra`), ready.
struct Fleet {
    keys: crate::support::Keys,
    _jwks: crate::support::JwksServer,
    _upstream: crate::support::Upstream,
    a: crate::support::Gateway,
    b: crate::support::Gateway,
}

impl Fleet {
    fn start(redis_url: &str, extra: &str) -> Self {
        let keys = crate::support::Keys::load();
        let jwks = crate::support::JwksServer::start(keys.standard_jwks());
        let upstream = crate::support::Upstream::start();
        let a = revoking_gateway(&jwks, &upstream, redis_url, extra);
        let b = revoking_gateway(&jwks, &upstream, redis_url, extra);
        a.wait_ready();
        b.wait_ready();
        Self {
            keys,
            _jwks: jwks,
            _upstream: upstream,
            a,
            b,
        }
    }

    fn both(&self) -> [&crate::support::Gateway; 2] {
        [&self.a, &self.b]
    }

    /// A token of bob's with this `jti`.
    fn token(&self, jti: &str) -> String {
        token(&self.keys, "bob", jti, crate::support::now())
    }

    /// `authgate revoke --jti` through `via`'s config: both replicas refuse `token`
    /// within `FLEET_BOUND` of the write.
    fn revoke_everywhere(&self, via: &crate::support::Gateway, jti: &str, token: &str) {
        let (ok, out, err) = revoke(via, &["--provider", "corp", "--jti", jti]);
        assert!(ok, "{out}{err}");
        let written = Instant::now();
        for gw in self.both() {
            assert!(
                eventually(FLEET_BOUND.saturating_sub(written.elapsed()), || gw
                    .get_with("/api/x", token)
                    .reason()
                    == "revoked"),
                "{jti} enforced at every replica within {FLEET_BOUND:?}"
            );
        }
    }

    /// Both replicas become unready (their copies pass `revocation_max_age`) and still
    /// refuse `revoked` from the copy.
    fn unready_but_serving(&self, revoked: &str) {
        for gw in self.both() {
            assert!(
                eventually(Duration::from_secs(20), || crate::support::get(
                    gw.admin,
                    "/readyz",
                    &[]
                )
                .status
                    == 503),
                "unready once the copy is older than revocation_max_age"
            );
            let r = crate::support::get(gw.admin, "/readyz", &[]);
            assert!(
                r.body.contains("corp") && r.body.contains("revocation"),
                "{}",
                r.body
            );
            assert_eq!(gw.get_with("/api/x", revoked).reason(), "revoked");
        }
    }
}

/// Two replicas on one store: `authgate revoke` through the config of one is enforced by
/// both within the bound, a `jti` and a subject's cutoff alike; `--list` reads back what
/// was written as a revocation file.
#[test]
fn a_revocation_reaches_every_replica() {
    use crate::support::{now, JwksServer, Keys, Upstream};
    let redis = RedisServer::start(None);
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let a = revoking_gateway(&jwks, &upstream, &redis.url(), "");
    let b = revoking_gateway(&jwks, &upstream, &redis.url(), "");
    a.wait_ready();
    b.wait_ready();
    let now = now();
    let victim = token(&keys, "bob", "stolen-1", now);
    let other = token(&keys, "bob", "fine-1", now);
    let old_alice = token(&keys, "alice", "a-old", now - 60);
    let new_alice = token(&keys, "alice", "a-new", now - 2);
    for gw in [&a, &b] {
        for t in [&victim, &other, &old_alice, &new_alice] {
            assert_eq!(gw.get_with("/api/x", t).status, 200);
        }
    }

    let (ok, out, err) = revoke(&a, &["--provider", "corp", "--jti", "stolen-1"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("revoked jti \"stolen-1\""), "{out}");
    let written = Instant::now();
    for gw in [&a, &b] {
        assert!(
            eventually(FLEET_BOUND.saturating_sub(written.elapsed()), || gw
                .get_with("/api/x", &victim)
                .reason()
                == "revoked"),
            "the jti is enforced at every replica within {FLEET_BOUND:?}"
        );
        assert_eq!(gw.get_with("/api/x", &other).status, 200);
    }
    let r = b.get_with("/api/x", &victim);
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|h| h.contains("error=\"invalid_token\"")));

    // alice logged out 30 s ago: her tokens issued before are refused everywhere.
    let cutoff = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs((now - 30) as u64),
    )
    .to_string();
    let (ok, out, err) = revoke(
        &b,
        &[
            "--provider",
            "corp",
            "--subject",
            "alice",
            "--before",
            &cutoff,
        ],
    );
    assert!(
        ok && out.contains("revoked every token of subject \"alice\""),
        "{out}{err}"
    );
    let written = Instant::now();
    for gw in [&a, &b] {
        assert!(eventually(
            FLEET_BOUND.saturating_sub(written.elapsed()),
            || gw.get_with("/api/x", &old_alice).reason() == "revoked"
        ));
        assert_eq!(gw.get_with("/api/x", &new_alice).status, 200);
    }
    // An earlier cutoff never undoes a later one.
    let (ok, out, _) = revoke(
        &a,
        &[
            "--provider",
            "corp",
            "--subject",
            "alice",
            "--before",
            "1000000000",
        ],
    );
    assert!(ok && out.contains("already has a later cutoff"), "{out}");

    // `--list` is a revocation file of what the store holds.
    let (ok, out, err) = revoke(&a, &["--provider", "corp", "--list"]);
    assert!(ok, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let listed = dir.path().join("listed.toml");
    std::fs::write(&listed, &out).unwrap();
    let text = std::fs::read_to_string(&listed).unwrap();
    assert!(text.contains("\"stolen-1\""), "{text}");
    assert!(
        text.contains(&format!("\"alice\" = \"{cutoff}\"")),
        "{text}"
    );
    // Parsed as the gateway parses a revocation_file: a config that uses it loads.
    let with_file = crate::support::standard_config(&jwks.url(), &upstream.url()).replace(
        "jwks_refetch_cooldown = \"1s\"",
        &format!(
            "jwks_refetch_cooldown = \"1s\"\nrevocation_file = \"{}\"",
            listed.display()
        ),
    );
    let cfg = dir.path().join("authgate.toml");
    std::fs::write(&cfg, with_file).unwrap();
    let (ok, out, err) = crate::support::check_config(&cfg);
    assert!(ok, "{out}{err}");

    // `check` shows where revocations come from.
    let (ok, out, _) = crate::support::check_config(&a.config_path());
    assert!(
        ok && out.contains("  revocations from the fleet store\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("store {} (timeout 300ms", redis.url())),
        "{out}"
    );

    // What cannot be enforced is not written.
    let (ok, _, err) = revoke(&a, &["--provider", "nobody", "--jti", "x"]);
    assert!(!ok && err.contains("no provider \"nobody\""), "{err}");
    let (ok, _, err) = revoke(&a, &["--provider", "corp", "--jti", ""]);
    assert!(!ok && err.contains("--jti"), "{err}");
    let (ok, _, err) = revoke(&a, &["--provider", "corp"]);
    assert!(
        !ok && err.contains("--jti"),
        "one of --jti, --subject, --list: {err}"
    );
    let (ok, _, err) = revoke(&a, &["--provider", "corp", "--jti", "x", "--before", "1"]);
    assert!(
        !ok && err.contains("--before"),
        "--before is --subject's: {err}"
    );
    for late in ["10000-01-01T00:00:00Z", "253402300800", "1e300"] {
        let (ok, _, err) = revoke(
            &a,
            &["--provider", "corp", "--subject", "x", "--before", late],
        );
        assert!(
            !ok && err.contains("--before") && !err.contains("panicked"),
            "{late}: {err}"
        );
    }
    let m = a.metrics();
    assert_eq!(
        crate::support::metric_value(&m, "authgate_revocation_entries{provider=\"corp\"}"),
        2.0
    );
}

/// The store goes away: the last copy keeps serving (a revoked token stays refused, others
/// pass, no request waits), its age grows and `/readyz` fails past `revocation_max_age`.
/// Redis comes back (with its data): the replicas subscribe again, resync, are ready, and a
/// new revocation reaches both.
#[test]
fn an_outage_keeps_the_last_copy_and_a_restart_resyncs() {
    use crate::support::{metric_value, now};
    let mut redis = RedisServer::start_persistent();
    let fleet = Fleet::start(&redis.url(), "revocation_max_age = \"5s\"");
    let (a, b) = (&fleet.a, &fleet.b);
    let revoked = fleet.token("gone-1");
    let later = fleet.token("gone-2");
    let fine = token(&fleet.keys, "carol", "ok-1", now());
    fleet.revoke_everywhere(a, "gone-1", &revoked);

    redis.stop();
    let (ok, _, err) = revoke(a, &["--provider", "corp", "--jti", "gone-2"]);
    assert!(
        !ok && err.contains("127.0.0.1"),
        "an outage is an error: {err}"
    );
    for gw in fleet.both() {
        assert_eq!(gw.get_with("/api/x", &revoked).reason(), "revoked");
        assert_eq!(gw.get_with("/api/x", &fine).status, 200);
    }
    let age = |gw: &crate::support::Gateway| {
        metric_value(
            &gw.metrics(),
            "authgate_revocation_age_seconds{provider=\"corp\"}",
        )
    };
    fleet.unready_but_serving(&revoked);
    for gw in fleet.both() {
        assert!(age(gw) > 5.0);
        assert_eq!(gw.get_with("/api/x", &fine).status, 200);
    }
    assert_eq!(
        metric_value(&a.metrics(), "authgate_revocation_max_age_seconds"),
        5.0
    );

    redis.restart();
    for gw in fleet.both() {
        gw.wait_ready();
        assert!(age(gw) < 5.0);
        assert!(eventually(Duration::from_secs(20), || metric_value(
            &gw.metrics(),
            "authgate_store_reconnects_total"
        ) >= 1.0));
        assert_eq!(
            gw.get_with("/api/x", &revoked).reason(),
            "revoked",
            "the persisted list, read again"
        );
    }
    fleet.revoke_everywhere(b, "gone-2", &later);
}

/// Before the first copy is read: `fail_closed` (default) answers 503 and is not ready,
/// `fail_open` serves; once Redis answers, both enforce what it holds.
#[test]
fn without_a_first_copy_the_policy_decides() {
    use crate::support::{get, now, JwksServer, Keys, Upstream};
    let mut redis = RedisServer::start_persistent();
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let probe = revoking_gateway(&jwks, &upstream, &redis.url(), "");
    probe.wait_ready();
    assert!(revoke(&probe, &["--provider", "corp", "--jti", "pre-1"]).0);
    drop(probe);
    redis.stop();
    let closed = revoking_gateway(&jwks, &upstream, &redis.url(), "");
    let open = revoking_gateway(
        &jwks,
        &upstream,
        &redis.url(),
        "revocation_without_copy = \"fail_open\"",
    );
    open.wait_ready();
    let now = now();
    let revoked = token(&keys, "bob", "pre-1", now);
    let fine = token(&keys, "carol", "ok-1", now);
    let r = closed.get_with("/api/x", &fine);
    assert_eq!(
        (r.status, r.reason().as_str()),
        (503, "revocation_unavailable")
    );
    let ready = get(closed.admin, "/readyz", &[]);
    assert_eq!(ready.status, 503);
    assert!(
        ready.body.contains("not read from the store"),
        "{}",
        ready.body
    );
    assert_eq!(open.get_with("/api/x", &fine).status, 200);
    assert_eq!(
        open.get_with("/api/x", &revoked).status,
        200,
        "fail_open: not known to be revoked"
    );
    redis.restart();
    closed.wait_ready();
    for gw in [&closed, &open] {
        assert!(eventually(Duration::from_secs(10), || gw
            .get_with("/api/x", &revoked)
            .reason()
            == "revoked"));
        assert_eq!(gw.get_with("/api/x", &fine).status, 200);
    }
}

/// The replicas' links to Redis go silent (nothing closed, nothing answered): the copies
/// serve and grow old, `/readyz` says so; once Redis can be reached again the replicas
/// connect again on their own (the subscription notices by its ping), are ready, and a new
/// revocation reaches both.
#[test]
fn a_silent_store_is_reached_again() {
    use crate::support::redis::Relay;
    let redis = RedisServer::start(None);
    let relay = Relay::start(redis.port);
    let fleet = Fleet::start(&relay.url(), "revocation_max_age = \"5s\"");
    let revoked = fleet.token("hush-1");
    fleet.revoke_everywhere(&fleet.a, "hush-1", &revoked);
    relay.silence();
    fleet.unready_but_serving(&revoked);
    relay.heal();
    for gw in fleet.both() {
        gw.wait_ready();
        assert!(
            gw.wait_log("subscribed to revocations again", Duration::from_secs(20)),
            "the silent subscription is noticed and made again"
        );
    }
    fleet.revoke_everywhere(&fleet.b, "hush-2", &fleet.token("hush-2"));
}

/// Entries written into the store by hand that do not read as revocations (a cutoff that is
/// not a number, an id that is not UTF-8) are left out and counted; they do not stop the
/// full read, so a revocation that must be read whole (after a gap in the versions) is
/// still enforced, and the replica stays ready.
#[test]
fn a_bad_entry_is_left_out() {
    use crate::support::{get, metric_value, now, JwksServer, Keys, Upstream};
    let redis = RedisServer::start(None);
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let upstream = Upstream::start();
    let gw = revoking_gateway(&jwks, &upstream, &redis.url(), "");
    gw.wait_ready();
    let now = now();
    let first_token = token(&keys, "bob", "fine-1", now);
    let second = token(&keys, "bob", "fine-2", now);
    assert!(revoke(&gw, &["--provider", "corp", "--jti", "fine-1"]).0);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_connection().unwrap();
    let k = authgate::runtime::store::RevocationKeys::new("authgate", "corp");
    redis::cmd("HSET")
        .arg(&k.sub)
        .arg("mallory")
        .arg("next tuesday")
        .exec(&mut c)
        .unwrap();
    redis::cmd("ZADD")
        .arg(&k.jti)
        .arg(1)
        .arg(&b"\xff\xfe"[..])
        .exec(&mut c)
        .unwrap();
    // A version the replica never heard of: the next change is a gap, read whole.
    redis::cmd("INCR").arg(&k.version).exec(&mut c).unwrap();
    assert!(revoke(&gw, &["--provider", "corp", "--jti", "fine-2"]).0);
    assert!(eventually(FLEET_BOUND, || gw
        .get_with("/api/x", &second)
        .reason()
        == "revoked"));
    assert_eq!(gw.get_with("/api/x", &first_token).reason(), "revoked");
    let unreadable = "authgate_revocation_unreadable_entries{provider=\"corp\"}";
    assert!(eventually(Duration::from_secs(10), || metric_value(
        &gw.metrics(),
        unreadable
    ) == 2.0));
    assert_eq!(get(gw.admin, "/readyz", &[]).status, 200);
    assert!(gw.wait_log("do not read as revocations", Duration::from_secs(5)));
    let (ok, listing, err) = revoke(&gw, &["--provider", "corp", "--list"]);
    assert!(ok, "{err}");
    assert!(
        listing.contains("2 entries") && listing.contains("fine-2"),
        "{listing}"
    );
}

/// Redis comes back with older data (a snapshot restored, a failover to a replica that
/// missed the last write): the next revocation must not spell a version the replicas
/// already hold for other content, or they would take their copies for current and not
/// enforce it. The rollback is made by hand here: the last write undone, the version set
/// back to what it was before it.
#[test]
fn a_store_that_went_back_is_not_taken_for_current() {
    let redis = RedisServer::start(None);
    let fleet = Fleet::start(&redis.url(), "");
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_connection().unwrap();
    let k = authgate::runtime::store::RevocationKeys::new("authgate", "corp");
    let version =
        |c: &mut redis::Connection| -> u64 { redis::cmd("GET").arg(&k.version).query(c).unwrap() };
    fleet.revoke_everywhere(&fleet.a, "before-1", &fleet.token("before-1"));
    let before = version(&mut c);
    fleet.revoke_everywhere(&fleet.a, "lost-1", &fleet.token("lost-1"));
    // The rollback: what the replicas hold is one write ahead of Redis now.
    redis::cmd("ZREM")
        .arg(&k.jti)
        .arg("lost-1")
        .exec(&mut c)
        .unwrap();
    redis::cmd("SET")
        .arg(&k.version)
        .arg(before)
        .exec(&mut c)
        .unwrap();
    fleet.revoke_everywhere(&fleet.b, "after-1", &fleet.token("after-1"));
    assert!(version(&mut c) > before + 1, "a version never used before");
    // A version key that holds no usable version fails the write before anything is written.
    for bad in ["1152921504606846976", "-5", "nan", "x"] {
        redis::cmd("SET")
            .arg(&k.version)
            .arg(bad)
            .exec(&mut c)
            .unwrap();
        let (ok, _, err) = revoke(&fleet.a, &["--provider", "corp", "--jti", "never-1"]);
        assert!(!ok && err.contains("usable version"), "{bad}: {err}");
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(&k.jti)
            .arg("never-1")
            .query(&mut c)
            .unwrap();
        assert_eq!(score, None, "{bad}: nothing written");
    }
    redis::cmd("SET")
        .arg(&k.version)
        .arg(0)
        .exec(&mut c)
        .unwrap();
    fleet.revoke_everywhere(&fleet.a, "after-2", &fleet.token("after-2"));
}
