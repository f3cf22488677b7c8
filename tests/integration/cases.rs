//! `authgate test` (issue 13): the repository's own policy cases pass, a policy change under a
//! case that pins it fails the run, and every case gets the same answer from `explain` (which
//! `test` runs) as from the live gateway.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::http::request;
use crate::support::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Every shipped case file, with the config it tests.
fn shipped() -> Vec<(PathBuf, PathBuf)> {
    vec![
        (
            root().join("config/authgate.toml"),
            root().join("config/tests/authgate.cases.toml"),
        ),
        (
            root().join("config/demo.toml"),
            root().join("config/tests/demo.cases.toml"),
        ),
    ]
}

fn run_test(config: &Path, cases: &Path) -> (bool, String, String) {
    let out = Command::new(bin())
        .arg("test")
        .arg("-c")
        .arg(config)
        .arg(cases)
        .output()
        .expect("run authgate test");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_cases_pass() {
    for (config, cases) in shipped() {
        let (ok, out, err) = run_test(&config, &cases);
        assert!(ok, "{}: {out}{err}", cases.display());
        assert!(out.trim_end().ends_with(" passed, 0 failed"), "{out}");
        assert!(!out.contains("FAIL"), "{out}");
    }
}

/// Narrowing a route's scopes under the case that pins it fails the run, naming the case,
/// what differed and the step that decided; exit status 1.
#[test]
fn a_policy_change_under_a_pinning_case_fails() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(root().join("config/authgate.toml")).unwrap();
    let narrowed = original.replace(
        "require_scopes = [\"write\"]",
        "require_scopes = [\"delete\"]",
    );
    assert_ne!(original, narrowed);
    let config = dir.path().join("authgate.toml");
    std::fs::write(&config, narrowed).unwrap();
    let (ok, out, _) = run_test(&config, &root().join("config/tests/authgate.cases.toml"));
    assert!(!ok, "{out}");
    let fail = out
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains("a writer deletes"))
        .unwrap_or_else(|| panic!("the pinning case is named: {out}"));
    assert!(
        fail.contains("status 403 (expected 200)")
            && fail.contains("authorize: scopes: [delete MISSING]"),
        "{fail}"
    );
    assert!(out.trim_end().ends_with("passed, 1 failed"), "{out}");
}

/// The same requests (tokens signed for the real clock) sent to a live gateway on the same
/// config, its providers' keys served from the case file's test JWKS: the gateway answers
/// each exactly as `explain` says.
#[test]
fn explain_and_the_live_gateway_agree_on_every_shipped_case() {
    let jwks_text = std::fs::read_to_string(root().join("tests/fixtures/keys/jwks.json")).unwrap();
    let jwks = JwksServer::start(jwks_text);
    let up = Upstream::start();
    for (config, cases) in shipped() {
        let text = std::fs::read_to_string(&config).unwrap();
        // The example configs' fixed ports, upstreams and key URLs, made this test's.
        let live = text
            .replace("listen = \"0.0.0.0:8080\"", "listen = \"127.0.0.1:0\"")
            .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
            .replace("listen = \"127.0.0.1:9090\"", "listen = \"127.0.0.1:0\"")
            .replace("http://127.0.0.1:8000", &up.url())
            .replace("http://127.0.0.1:18000", &up.url())
            .replace("http://127.0.0.1:8001/jwks.json", &jwks.url())
            .replace("http://127.0.0.1:18001/jwks.json", &jwks.url());
        assert!(
            live.contains(&jwks.url())
                && live
                    .lines()
                    .filter(|l| l.starts_with("listen = "))
                    .all(|l| l.ends_with(":0\"")),
            "{}: the rewrite missed a fixed port or key URL",
            config.display()
        );
        let gw = Gateway::start(&live);
        let explained =
            authgate::cases::explained(&config, &cases, Some(now() as f64)).expect("cases load");
        assert!(explained.len() >= 10, "{}", cases.display());
        for (name, req, e) in explained {
            let url: ::http::Uri = req.url.parse().unwrap();
            let mut headers: Vec<(String, String)> = req.headers.clone();
            headers.push(("host".into(), url.authority().unwrap().to_string()));
            if let Some(t) = &req.token {
                headers.push(("authorization".into(), format!("Bearer {t}")));
            }
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let path = url.path_and_query().map_or("/", |p| p.as_str());
            let r = request(gw.addr, &req.method, path, &headers);
            let reason = if r.status == 200 {
                "-".to_owned()
            } else {
                r.reason()
            };
            assert_eq!(
                (r.status, reason.as_str()),
                (e.status, e.reason),
                "{name}: the live gateway and explain disagree\n{}",
                e.text()
            );
        }
    }
}

/// An HMAC provider: described tokens are signed with its configured secret (no test keys
/// needed), and a case that expects the wrong answer fails.
#[test]
fn hmac_providers_can_be_tested() {
    let dir = tempfile::tempdir().unwrap();
    let secret = root().join("tests/fixtures/keys/hmac.secret");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstreams.up]\nurl = \"http://127.0.0.1:9\"\n\
         [providers.svc]\nissuer = \"https://svc\"\naudiences = [\"api\"]\n\
         hmac_secret_file = {:?}\nalgorithms = [\"HS256\"]\n\
         [headers]\nforward_claims = {{ sub = \"X-User-Id\" }}\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nrequire_scopes = [\"read\"]\nupstream = \"up\"\n",
        secret.display().to_string()
    );
    let config_path = dir.path().join("svc.toml");
    std::fs::write(&config_path, config).unwrap();
    let cases = dir.path().join("svc.cases.toml");
    std::fs::write(
        &cases,
        "[[case]]\nname = \"reader\"\nrequest = \"GET http://svc.test/api/x\"\n\
         token = { provider = \"svc\", claims = { sub = \"robot\", scope = \"read\" } }\n\
         expect = { status = 200, upstream_headers = { \"X-User-Id\" = \"robot\" } }\n\
         [[case]]\nname = \"wrongly expected\"\nrequest = \"GET http://svc.test/api/x\"\n\
         token = { provider = \"svc\", claims = { sub = \"robot\", scope = \"write\" } }\n\
         expect = { status = 200 }\n",
    )
    .unwrap();
    let (ok, out, err) = run_test(&config_path, &cases);
    assert!(!ok, "{out}{err}");
    assert!(
        out.contains("FAIL") && out.contains("wrongly expected") && out.contains("status 403"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("1 passed, 1 failed"), "{out}");
}
