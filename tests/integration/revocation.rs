//! Revocation: revoked `jti`s and per-subject cutoffs from a file re-read on change; a broken
//! edit keeps the last good list.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[test]
fn revoked_tokens_are_refused_and_edits_apply_live() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("revoked.toml");
    std::fs::write(&list, "jti = [\"dead-jti\"]\n").unwrap();
    let config = standard_config(&jwks.url(), &up.url()).replace(
        "jwks_refetch_cooldown = \"1s\"",
        "jwks_refetch_cooldown = \"1s\"\nrevocation_file = \"revoked.toml\"",
    );
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, config).unwrap();
    let gw = Gateway::start_at(dir, &path, "info");
    gw.wait_ready();
    let now = now();
    let token = |sub: &str, jti: &str, iat: i64| {
        let mut c = good_claims(sub, "read");
        c["jti"] = json!(jti);
        c["iat"] = json!(iat);
        keys.rs256().claims(c).sign()
    };
    let dead = token("bob", "dead-jti", now);
    let r = gw.get_with("/api/x", &dead);
    assert_eq!(r.status, 401);
    assert_eq!(r.reason(), "revoked");
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));
    let old_alice = token("alice", "a1", now - 60);
    let new_alice = token("alice", "a2", now - 5);
    assert_eq!(gw.get_with("/api/x", &old_alice).status, 200);

    // alice logged out 30 s ago: her older tokens stop working, newer ones do not.
    // (Files are replaced by rename, as a ConfigMap or an editor does.)
    let replace = |text: &str| {
        let tmp = list.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &list).unwrap();
    };
    replace(&format!(
        "jti = [\"dead-jti\"]\n[subjects]\nalice = {}\n",
        now - 30
    ));
    assert!(eventually(Duration::from_secs(8), || gw
        .get_with("/api/x", &old_alice)
        .reason()
        == "revoked"));
    assert_eq!(gw.get_with("/api/x", &new_alice).status, 200);
    assert_eq!(gw.get_with("/api/x", &dead).reason(), "revoked");

    // A broken edit keeps the last good list.
    let errors = || {
        metric_value(
            &gw.metrics(),
            "authgate_revocation_reloads_total{provider=\"corp\",result=\"error\"}",
        )
    };
    let before = errors();
    replace("jti = [\"dead-jti\"\n");
    assert!(
        eventually(Duration::from_secs(8), || errors() > before),
        "{}",
        gw.logs()
    );
    assert_eq!(gw.get_with("/api/x", &old_alice).reason(), "revoked");
    assert_eq!(gw.get_with("/api/x", &dead).reason(), "revoked");
    let m = gw.metrics();
    assert!(
        metric_value(
            &m,
            "authgate_revocation_reloads_total{provider=\"corp\",result=\"success\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        metric_value(
            &m,
            "authgate_revocation_reloads_total{provider=\"corp\",result=\"error\"}"
        ) >= 1.0,
        "{m}"
    );
}

#[test]
fn a_broken_revocation_file_is_a_config_error() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("revoked.toml"),
        "[subjects]\nalice = \"yesterday\"\n",
    )
    .unwrap();
    let config = standard_config(&jwks.url(), "http://127.0.0.1:9").replace(
        "jwks_refetch_cooldown = \"1s\"",
        "jwks_refetch_cooldown = \"1s\"\nrevocation_file = \"revoked.toml\"",
    );
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, config).unwrap();
    let (ok, _, err) = check_config(&path);
    assert!(!ok);
    assert!(
        err.contains("providers.corp.revocation_file") && err.contains("subjects.alice"),
        "{err}"
    );
}
