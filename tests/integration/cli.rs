//! The command line: `check` explains a config or its errors, `--version`.

use std::process::Command;

use crate::support::*;

#[test]
fn shipped_configs_pass_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in ["config/demo.toml", "config/authgate.toml"] {
        let (ok, out, err) = check_config(&root.join(f));
        assert!(ok, "{f}: {err}");
        assert!(out.contains("routes (most specific first)"), "{out}");
    }
}

#[test]
fn check_names_file_line_key_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let good = standard_config(&jwks.url(), "http://127.0.0.1:9");
    let bad = good.replace(
        "upstream = \"legacy\"\n\n[[routes]]\nname = \"opt\"",
        "upstream = \"legacyy\"\n\n[[routes]]\nname = \"opt\"",
    );
    assert_ne!(good, bad);
    std::fs::write(&path, &bad).unwrap();
    let (ok, _, err) = check_config(&path);
    assert!(!ok);
    assert!(err.contains("bad.toml:"), "{err}");
    assert!(err.contains("routes[0].upstream"), "{err}");
    assert!(err.contains("unknown upstream \"legacyy\""), "{err}");

    std::fs::write(&path, good.replace("threads = 2", "threads = \"two\"")).unwrap();
    let (ok, _, err) = check_config(&path);
    assert!(!ok);
    assert!(err.contains("bad.toml:4:"), "line of the bad value: {err}");
    assert!(err.contains("threads"), "{err}");

    // Two routes that would match the same requests equally.
    let dup = format!(
        "{good}\n[[routes]]\nname = \"api2\"\npath_prefix = \"/api/\"\nupstream = \"legacy\"\n"
    );
    std::fs::write(&path, dup).unwrap();
    let (ok, _, err) = check_config(&path);
    assert!(!ok);
    assert!(err.contains("same specificity"), "{err}");
}

#[test]
fn version() {
    let out = Command::new(bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// `authgate check | head` closes the pipe before everything is written: the command
/// ends quietly with success (it used to panic on the broken pipe, exit 101).
#[test]
fn check_into_a_closed_pipe_exits_quietly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(bin())
        .args(["check", "--config"])
        .arg(root.join("config/authgate.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}

/// `--log-format` takes `json` or `text`; a typo is an error that names the choices
/// (it used to mean text, silently).
#[test]
fn a_misspelled_log_format_is_an_error() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(bin())
        .args(["--log-format", "jsno", "check", "--config"])
        .arg(root.join("config/authgate.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("jsno") && err.contains("json") && err.contains("text"),
        "{err}"
    );
    let ok = Command::new(bin())
        .args(["--log-format", "json", "check", "--config"])
        .arg(root.join("config/authgate.toml"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
