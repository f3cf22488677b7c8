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
