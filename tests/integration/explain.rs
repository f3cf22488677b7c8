//! `authgate explain` (issue 13): the very decision, step by step, through the real binary;
//! it agrees with the live gateway and never prints the token.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::http::send;

use crate::support::http::request;
use crate::support::*;

/// `authgate explain` on the gateway's own config, keys fetched live from the test JWKS.
fn explain(s: &Setup, extra: &[&str], method: &str, path: &str) -> (String, Value) {
    let run = |json: bool| {
        let mut cmd = Command::new(bin());
        cmd.arg("explain").arg("-c").arg(s.gw.config_path());
        cmd.args(extra);
        if json {
            cmd.arg("--json");
        }
        let out = cmd
            .arg(method)
            .arg(format!("http://localhost{path}"))
            .output()
            .expect("run authgate explain");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = run(false);
    let doc = serde_json::from_str(&run(true)).expect("--json prints one JSON document");
    (text, doc)
}

#[test]
fn explain_names_the_deciding_step_and_agrees_with_the_gateway() {
    let s = Setup::start();
    let read = s.token("read");
    let mut old = good_claims("alice", "read");
    old["exp"] = json!(now() - 600);
    old["iat"] = json!(now() - 4000);
    let expired = s.keys.rs256().claims(old).sign();
    let cases: [(&str, &str, Option<&str>, &str); 6] = [
        ("GET", "/api/orders", Some(&read), "allowed"),
        ("GET", "/api/orders", Some(&expired), "expired"),
        ("GET", "/api/orders", None, "missing_token"),
        ("DELETE", "/api/orders/7", Some(&read), "insufficient_scope"),
        ("GET", "/nowhere", None, "no_route"),
        ("GET", "/public/%00", None, "bad_path"),
    ];
    for (method, path, token, want) in cases {
        let mut extra = vec![];
        if let Some(t) = token {
            extra = vec!["--token", t];
        }
        let (text, doc) = explain(&s, &extra, method, path);
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let live = request(s.gw.addr, method, path, &headers);
        let live_reason = if live.status == 200 {
            "-".to_owned()
        } else {
            live.reason()
        };
        assert_eq!(
            (doc["status"].as_u64(), doc["reason"].as_str()),
            (Some(u64::from(live.status)), Some(live_reason.as_str())),
            "{method} {path}: explain and the gateway disagree\n{text}"
        );
        if let Some(t) = token {
            let signature = t.rsplit('.').next().unwrap();
            assert!(
                !text.contains(signature) && !doc.to_string().contains(signature),
                "{method} {path}: the token was printed"
            );
        }
        match want {
            "allowed" => {
                assert!(text.contains("signature valid"), "{text}");
                assert!(text.contains("=> forwarded upstream (allowed)"), "{text}");
                assert!(
                    text.contains("claim header x-user-id added upstream"),
                    "{text}"
                );
            }
            "expired" => {
                let lines: Vec<&str> = text.lines().collect();
                let refused = lines
                    .iter()
                    .position(|l| l.contains("refused: expired"))
                    .expect(&text);
                assert!(
                    lines[refused - 1].contains(" claims ")
                        && lines[refused - 1].contains("exp 10m"),
                    "{text}"
                );
                assert!(text.contains("=> 401 expired"), "{text}");
                assert!(text.contains("error=\"invalid_token\""), "{text}");
            }
            "insufficient_scope" => {
                assert!(text.contains("scopes: [write MISSING]"), "{text}");
                assert!(
                    text.contains("route api-delete") && text.contains("also matching: api"),
                    "every matching route is listed, the winner first: {text}"
                );
                assert!(text.contains("=> 403 insufficient_scope"), "{text}");
            }
            reason => assert!(text.contains(&format!("refused: {reason}")), "{text}"),
        }
    }
}

/// `--jwks FILE` verifies offline and `--now` sets the clock: a token valid now is
/// explained as expired an hour later, with the same keys and no network.
#[test]
fn explain_offline_with_a_fixed_clock() {
    let s = Setup::start();
    let jwks = s.gw.dir().join("jwks.json");
    std::fs::write(&jwks, s.keys.standard_jwks()).unwrap();
    let token = s.token("read");
    let jwks = jwks.display().to_string();
    let later = (now() + 3600).to_string();
    let (_, doc) = explain(&s, &["--jwks", &jwks, "--token", &token], "GET", "/api/x");
    assert_eq!(doc["decision"], "allowed", "{doc}");
    let (text, doc) = explain(
        &s,
        &["--jwks", &jwks, "--token", &token, "--now", &later],
        "GET",
        "/api/x",
    );
    assert_eq!(doc["reason"], "expired", "{text}");
}

/// An unknown `kid` offline: the explanation says the gateway would refetch once before
/// refusing with `unknown_kid`.
#[test]
fn explain_says_an_unknown_kid_would_be_refetched() {
    let s = Setup::start();
    let jwks = s.gw.dir().join("rsa-only.json");
    std::fs::write(
        &jwks,
        crate::support::tokens::jwks_of(&[crate::support::tokens::jwk(
            &s.keys.rsa,
            jsonwebtoken::Algorithm::RS256,
            "rsa",
            true,
        )]),
    )
    .unwrap();
    let ec = s.keys.es256().claims(good_claims("alice", "read")).sign();
    let jwks = jwks.display().to_string();
    let (text, doc) = explain(&s, &["--jwks", &jwks, "--token", &ec], "GET", "/api/x");
    assert_eq!(doc["reason"], "unknown_kid", "{text}");
    assert!(
        text.contains("the gateway would fetch provider corp's keys once more"),
        "{text}"
    );
}

/// `explain` checks the head as the gateway does (`Content-Length` with `Transfer-Encoding`
/// is `bad_framing` there too) and never repeats a URL or header it cannot use: they may
/// carry a token.
#[test]
fn explain_checks_framing_and_never_echoes_bad_input() {
    let s = Setup::start();
    let (text, doc) = explain(
        &s,
        &[
            "-H",
            "Content-Length: 5",
            "-H",
            "Transfer-Encoding: chunked",
        ],
        "POST",
        "/public/x",
    );
    assert_eq!(doc["reason"], "bad_framing", "{text}");
    let live = send(
        s.gw.addr,
        b"POST /public/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(live.reason(), "bad_framing");
    let secret = "eyJzZWNyZXQ";
    for (args, url) in [
        (
            vec![],
            format!("http://local host/api?access_token={secret}"),
        ),
        (vec![], format!("/api/x?access_token={secret}")),
        (
            vec!["-H".to_owned(), format!("Authorization Bearer {secret}")],
            "http://localhost/api/x".to_owned(),
        ),
    ] {
        let out = Command::new(bin())
            .arg("explain")
            .arg("-c")
            .arg(s.gw.config_path())
            .args(&args)
            .arg("GET")
            .arg(&url)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{url}: {all}");
        assert!(!all.contains(secret), "{url}: the input was echoed: {all}");
    }
}
