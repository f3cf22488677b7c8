//! Live config reload: file edits (rename-over, as editors and ConfigMaps do), SIGHUP, and a
//! broken file that must leave the running config in charge.

use std::time::Duration;

use crate::support::*;

fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Adds an open route `/health` to the running gateway's config file (rename-over) and
/// waits until it answers; returns the new config text.
fn add_health_route(s: &Setup) -> String {
    let path = s.gw.config_path();
    let original = std::fs::read_to_string(&path).unwrap();
    let added = format!("{original}\n[[routes]]\nname = \"health\"\npath = \"/health\"\nauth = \"none\"\nupstream = \"legacy\"\n");
    replace_file(&path, &added);
    assert!(
        eventually(Duration::from_secs(10), || get(s.gw.addr, "/health", &[])
            .status
            == 200),
        "new route never appeared"
    );
    added
}

#[test]
fn edited_config_is_applied_and_broken_one_is_refused() {
    let s = Setup::start();
    let path = s.gw.config_path();
    assert_eq!(get(s.gw.addr, "/health", &[]).status, 404);
    let added = add_health_route(&s);
    let reloads = |result: &str| {
        metric_value(
            &s.gw.metrics(),
            &format!("authgate_config_reloads_total{{result=\"{result}\"}}"),
        )
    };
    assert!(reloads("success") >= 1.0);

    // A broken edit: the running config keeps serving, and the log says where and why.
    let broken = added.replace(
        "path = \"/health\"",
        "path = \"/health\"\nmethodz = [\"GET\"]",
    );
    replace_file(&path, &broken);
    assert!(
        s.gw.wait_log("config reload failed", Duration::from_secs(10)),
        "{}",
        s.gw.logs()
    );
    assert!(s.gw.logs().contains("methodz"), "the error names the key");
    let logs = s.gw.logs();
    let located = logs
        .match_indices("authgate.toml:")
        .any(|(i, m)| logs[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()));
    assert!(located, "the error names the file and line: {logs}");
    assert_eq!(get(s.gw.addr, "/health", &[]).status, 200);
    assert_eq!(s.gw.get_with("/api/x", &s.token("read")).status, 200);
    assert!(reloads("error") >= 1.0);
    // One save is several file events, debounced: the broken file is reported once, not
    // per event. (That the 10 s poll does not report it again either is
    // `the_poll_reports_a_broken_secret_once`.)
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s.gw.log_count("config reload failed"), 1, "{}", s.gw.logs());
}

#[test]
fn sighup_reloads_and_listen_changes_are_refused() {
    // The config path is a symlink into another directory and the target is edited in place:
    // the directory watch sees nothing, so only SIGHUP (or the 10 s poll) can reload it.
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let up = Upstream::start();
    let real_dir = tempfile::tempdir().unwrap();
    let real = real_dir.path().join("real.toml");
    let original = standard_config(&jwks.url(), &up.url());
    std::fs::write(&real, &original).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("authgate.toml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let gw = Gateway::start_at(dir, &link, "info");
    let changed = original.replace(
        "name = \"public\"\npath_prefix = \"/public\"",
        "name = \"public\"\npath_prefix = \"/open\"",
    );
    assert_ne!(changed, original);
    std::fs::write(&real, &changed).unwrap();
    gw.signal("HUP");
    assert!(eventually(Duration::from_secs(5), || get(
        gw.addr,
        "/open/x",
        &[]
    )
    .status
        == 200));
    assert!(
        gw.wait_log("\"trigger\":\"sighup\"", Duration::from_secs(1)),
        "{}",
        gw.logs()
    );
    assert_eq!(get(gw.addr, "/public/x", &[]).status, 404);
    let path = real;
    let s = Setup {
        keys,
        jwks,
        upstream: up,
        gw,
    };

    let relisten = changed.replace(
        "listen = \"127.0.0.1:0\"\nthreads",
        "listen = \"127.0.0.1:1\"\nthreads",
    );
    assert_ne!(relisten, changed);
    std::fs::write(&path, &relisten).unwrap();
    s.gw.signal("HUP");
    assert!(
        s.gw.wait_log("restart to apply", Duration::from_secs(10)),
        "{}",
        s.gw.logs()
    );
    assert_eq!(
        get(s.gw.addr, "/open/x", &[]).status,
        200,
        "still the last good config"
    );
}

#[test]
fn reload_under_traffic_drops_nothing() {
    let s = Setup::start();
    let path = s.gw.config_path();
    let original = std::fs::read_to_string(&path).unwrap();
    let token = s.token("read");
    let addr = s.gw.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, token) = (stop.clone(), token.clone());
            std::thread::spawn(move || {
                let mut bad = Vec::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = get(
                        addr,
                        "/api/x",
                        &[("Authorization", &format!("Bearer {token}"))],
                    );
                    if r.status != 200 {
                        bad.push(r.status);
                    }
                    n += 1;
                }
                (n, bad)
            })
        })
        .collect();
    for i in 0..20 {
        let text = if i % 3 == 2 {
            "this is not toml [".to_owned()
        } else {
            format!("{original}\n# edit {i}\n")
        };
        replace_file(&path, &text);
        std::thread::sleep(Duration::from_millis(120));
    }
    replace_file(&path, &original);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let (n, bad) = w.join().unwrap();
        total += n;
        assert!(bad.is_empty(), "failed requests during reloads: {bad:?}");
    }
    assert!(total > 50, "only {total} requests were made");
}

#[test]
fn a_provider_change_keeps_its_keys_while_the_idp_is_down() {
    let s = Setup::start();
    let t = s.token("read");
    assert_eq!(s.gw.get_with("/api/x", &t).status, 200);
    s.jwks.set_status(500);
    let path = s.gw.config_path();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("jwks_refresh = \"5m\"", "jwks_refresh = \"4m\"");
    replace_file(&path, &text);
    assert!(
        s.gw.wait_log("config reloaded", Duration::from_secs(10)),
        "{}",
        s.gw.logs()
    );
    // The new key store was seeded from the old one's document: no 503 while the IdP fails.
    assert_eq!(s.gw.get_with("/api/x", &t).status, 200);
}

#[test]
fn a_rotated_hmac_secret_applies_on_sighup() {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hs.key");
    let old_secret = b"old-secret-old-secret-old-secret-0123456789".to_vec();
    let new_secret = b"new-secret-new-secret-new-secret-0123456789".to_vec();
    std::fs::write(&secret, &old_secret).unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[upstreams.u]\nurl = \"{}\"\n\
         [providers.svc]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\nhmac_secret_file = \"hs.key\"\nalgorithms = [\"HS256\"]\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"u\"\n",
        up.url()
    );
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, config).unwrap();
    let gw = Gateway::start_at(dir, &path, "info");
    let mint = |s: &[u8]| {
        let k = EncodingKey::from_secret(s);
        crate::support::tokens::TokenBuilder::new(&k, Algorithm::HS256)
            .claims(good_claims("svc", ""))
            .sign()
    };
    let (old_t, new_t) = (mint(&old_secret), mint(&new_secret));
    assert_eq!(gw.get_with("/api/x", &old_t).status, 200);
    std::fs::write(&secret, &new_secret).unwrap();
    gw.signal("HUP");
    assert!(
        accepted_within(&gw, &new_t, Duration::from_secs(10)),
        "{}",
        gw.logs()
    );
    assert_eq!(
        gw.get_with("/api/x", &old_t).reason(),
        "bad_signature",
        "the leaked secret no longer works"
    );
}

/// A gateway whose one provider reads its HMAC secret from `secret`, a file in another
/// directory than the config, which the directory watch does not cover: a change to it
/// changes only the config's fingerprint.
fn gateway_with_secret_elsewhere(up: &Upstream, secret: &std::path::Path) -> Gateway {
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[upstreams.u]\nurl = \"{}\"\n\
         [providers.svc]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\nhmac_secret_file = {:?}\nalgorithms = [\"HS256\"]\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"u\"\n",
        up.url(),
        secret.display().to_string(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, config).unwrap();
    Gateway::start_at(dir, &path, "info")
}

/// Whether `token` is let through on `/api/x` within `within`.
fn accepted_within(gw: &Gateway, token: &str, within: Duration) -> bool {
    eventually(within, || gw.get_with("/api/x", token).status == 200)
}

fn hs256_token(secret: &str) -> String {
    let k = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    crate::support::tokens::TokenBuilder::new(&k, jsonwebtoken::Algorithm::HS256)
        .claims(good_claims("svc", ""))
        .sign()
}

/// The safety-net poll (`POLL` = 10 s in `config/watch.rs`) applies a change the file watcher
/// cannot see. The first poll comes `POLL` after the watcher starts, so no poll can have run
/// within `POLL` of the gateway's spawn: the rotation is not applied before then, and is
/// applied by the poll, within a bound. Only the first poll: once a reload has run, the
/// watcher also sees the gateway's own read of the config (notify reports opens) and
/// reloads every 200 ms, so a later change does not wait for a poll.
#[test]
fn the_poll_applies_a_secret_the_watcher_cannot_see() {
    const POLL: Duration = Duration::from_secs(10);
    let up = Upstream::start();
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("hs.key");
    let (old_key, new_key) = (
        "first-secret-first-secret-first-0123456789",
        "second-secret-second-secret-second-0123456",
    );
    let (old_t, new_t) = (hs256_token(old_key), hs256_token(new_key));
    replace_file(&secret, old_key);
    let spawned = std::time::Instant::now();
    let gw = gateway_with_secret_elsewhere(&up, &secret);
    assert_eq!(gw.get_with("/api/x", &old_t).status, 200);

    replace_file(&secret, new_key);
    let r = gw.get_with("/api/x", &new_t);
    // Answered within `POLL` of the spawn, so before any poll: the only other way in is the
    // directory watch. (A start slower than `POLL` leaves nothing to tell here.)
    if spawned.elapsed() < POLL {
        assert_eq!(
            r.reason(),
            "bad_signature",
            "applied before the poll: {r:?}"
        );
    }
    assert!(
        accepted_within(&gw, &new_t, Duration::from_secs(25)),
        "never applied: {}",
        gw.logs()
    );
    assert!(
        spawned.elapsed() >= POLL,
        "applied {:?} after the spawn: not by the poll: {}",
        spawned.elapsed(),
        gw.logs()
    );
    assert_eq!(gw.get_with("/api/x", &old_t).reason(), "bad_signature");
    let logs = gw.logs();
    let reloads: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("config reloaded"))
        .collect();
    assert!(
        reloads.len() == 1 && reloads[0].contains("\"trigger\":\"poll\""),
        "{reloads:?}"
    );
}

/// A broken secret the watcher cannot see is reported by the poll, once: the following
/// polls skip a config already reported.
#[test]
fn the_poll_reports_a_broken_secret_once() {
    let up = Upstream::start();
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("hs.key");
    let key = "first-secret-first-secret-first-0123456789";
    replace_file(&secret, key);
    let gw = gateway_with_secret_elsewhere(&up, &secret);
    let token = hs256_token(key);
    assert_eq!(gw.get_with("/api/x", &token).status, 200);

    replace_file(&secret, "too-short");
    assert!(
        gw.wait_log("config reload failed", Duration::from_secs(25)),
        "never reported: {}",
        gw.logs()
    );
    let logs = gw.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("config reload failed"))
        .unwrap_or_default();
    assert!(
        line.contains("\"trigger\":\"poll\"") && line.contains("hmac_secret_file"),
        "{line}"
    );
    // The next poll runs within 10 s of the one that reported: 12 s of quiet spans it.
    assert!(
        !eventually(Duration::from_secs(12), || gw
            .log_count("config reload failed")
            > 1),
        "reported again: {}",
        gw.logs()
    );
    assert_eq!(
        gw.get_with("/api/x", &token).status,
        200,
        "the running config stays"
    );
    // A fixed secret is picked up by the poll, with no config edit and no SIGHUP: the
    // failure remembered is the problem, not just the config file's hash (it was).
    let fixed = "second-secret-second-secret-second-0123456";
    replace_file(&secret, fixed);
    assert!(
        accepted_within(&gw, &hs256_token(fixed), Duration::from_secs(25)),
        "a fixed secret was never applied: {}",
        gw.logs()
    );
}

/// The reload's own read of the config must not look like a change: with inotify, opening
/// and reading the file are events in the watched directory, and each reload triggered the
/// next, every debounce interval, forever.
#[test]
fn an_idle_gateway_does_not_reload_itself() {
    let s = Setup::start();
    add_health_route(&s);
    // Every reload attempt after the edit's own (debounced) one: `unchanged` counts the
    // attempts a file event or SIGHUP made that found nothing new.
    let attempts = || {
        let m = s.gw.metrics();
        metric_value(&m, "authgate_config_reloads_total{result=\"unchanged\"}")
            + metric_value(&m, "authgate_config_reloads_total{result=\"success\"}")
    };
    // The edit's events settle within one debounce (200 ms); then nothing may move.
    std::thread::sleep(Duration::from_millis(600));
    let settled = attempts();
    assert!(
        !eventually(Duration::from_secs(3), || attempts() > settled),
        "the gateway reloads by itself: {} attempts after {settled}\n{}",
        attempts(),
        s.gw.logs()
    );
}

/// A Kubernetes ConfigMap volume: `authgate.toml -> ..data/authgate.toml`, `..data -> ..<ts>`;
/// an update writes a new `..<ts2>` directory and renames a new `..data` link over the old one.
#[test]
fn configmap_style_symlink_swap_is_reloaded() {
    use std::os::unix::fs::symlink;
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let original = standard_config(&jwks.url(), &up.url());
    let write_version = |name: &str, text: &str| {
        std::fs::create_dir(root.join(name)).unwrap();
        std::fs::write(root.join(name).join("authgate.toml"), text).unwrap();
    };
    write_version("..2026_11_23_1", &original);
    symlink("..2026_11_23_1", root.join("..data")).unwrap();
    symlink("..data/authgate.toml", root.join("authgate.toml")).unwrap();
    let link = root.join("authgate.toml");
    let gw = Gateway::start_at(dir, &link, "info");
    gw.wait_ready();
    let info_before: Vec<String> = gw
        .metrics()
        .lines()
        .filter(|l| l.starts_with("authgate_config_info{"))
        .map(str::to_owned)
        .collect();
    assert_eq!(info_before.len(), 1, "{info_before:?}");

    for (i, prefix) in ["/first", "/second"].iter().enumerate() {
        let text = original.replace(
            "path_prefix = \"/public\"",
            &format!("path_prefix = \"{prefix}\""),
        );
        let version = format!("..2026_11_23_{}", i + 2);
        write_version(&version, &text);
        symlink(&version, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        assert!(
            eventually(Duration::from_secs(8), || get(
                gw.addr,
                &format!("{prefix}/x"),
                &[]
            )
            .status
                == 200),
            "update {i} not picked up: {}",
            gw.logs()
        );
    }
    assert_eq!(get(gw.addr, "/public/x", &[]).status, 404);
    let m = gw.metrics();
    let info_after: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("authgate_config_info{"))
        .collect();
    assert_eq!(
        info_after.len(),
        1,
        "only the running config's hash: {info_after:?}"
    );
    assert_ne!(info_after[0], info_before[0]);
    assert!(metric_value(&m, "authgate_config_last_reload_success_timestamp_seconds") > 1.7e9);
}
