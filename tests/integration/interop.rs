//! Interop with an identity provider nobody here wrote: the npm package `oidc-provider` runs
//! as a real OP (client credentials grant, resource indicators, JWT access tokens, OIDC
//! discovery, key rotation); tokens obtained from it over HTTP go through authgate.
//! `make test` installs it (`npm ci` in `tests/interop`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;

use crate::support::*;

/// The running OP; killed when dropped.
struct Op {
    process: KillOnDrop,
    port: u16,
    /// Lines the OP printed on stdout.
    lines: std::sync::mpsc::Receiver<String>,
    /// What it printed on stderr, for the failure message when it does not answer.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

/// How long the OP may take to start or to rotate its key (node, oidc-provider and an RSA
/// key generation on a machine busy with a parallel test run).
const OP_WAIT: Duration = Duration::from_secs(60);

impl Op {
    /// Starts `op.mjs` on a free port with the keys in `keys`, adding `new_kid` first.
    fn start(keys: &Path, new_kid: &str) -> Op {
        let dir = interop_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: run `make test` (it runs `npm ci` in tests/interop)"
        );
        let mut child = Command::new("node")
            .current_dir(&dir)
            .arg("op.mjs")
            .arg("0")
            .arg(keys)
            .arg(new_kid)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node must be installed for the interop tests");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut op = Op {
            process: KillOnDrop(child),
            port: 0,
            lines,
            stderr,
        };
        let ready = op.wait_line("OP_READY ");
        op.port = ready.trim().parse().expect("OP_READY <port>");
        op
    }

    /// Puts a fresh signing key `kid` first, on the same port (the older keys stay
    /// published).
    fn rotate(&mut self, kid: &str) {
        use std::io::Write as _;
        let stdin = self.process.0.stdin.as_mut().expect("OP stdin");
        writeln!(stdin, "rotate {kid}").expect("write to the OP");
        stdin.flush().expect("flush");
        assert_eq!(self.wait_line("OP_ROTATED ").trim(), kid);
    }

    /// The rest of the first stdout line starting with `prefix`; panics with the OP's
    /// stderr when it exits or stays silent for `OP_WAIT`.
    fn wait_line(&mut self, prefix: &str) -> String {
        let deadline = std::time::Instant::now() + OP_WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Err(e) => {
                    let status = self.process.0.try_wait().ok().flatten();
                    panic!(
                        "the OP did not print {prefix:?} ({e}; exit status {status:?}); its stderr:\n{}",
                        self.stderr.lock().unwrap()
                    );
                }
            }
        }
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client-credentials access token for `scope`, fetched over HTTP.
    fn token(&self, scope: &str) -> String {
        let body = format!(
            "grant_type=client_credentials&scope={}&resource=https%3A%2F%2Forders.example.com",
            scope.replace(' ', "+")
        );
        let basic = base64::engine::general_purpose::STANDARD
            .encode("orders-client:orders-client-secret-that-is-long-enough");
        let raw = format!(
            "POST /token HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Basic {basic}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        let addr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let r = send(addr, raw.as_bytes());
        assert_eq!(r.status, 200, "token endpoint: {r:?}");
        r.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn header(token: &str) -> serde_json::Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn tokens_from_oidc_provider_pass_through_discovery_and_rotation() {
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("op-keys.json");
    let mut op = Op::start(&keys, "op-a");
    let up = Upstream::start();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_delay = "0s"
[admin]
listen = "127.0.0.1:0"
[upstreams.orders]
url = "{}"
[providers.op]
issuer = "{}"
discovery = true
audiences = ["orders-api"]
algorithms = ["RS256"]
required_typ = "at+jwt"
max_token_lifetime = "10m"
jwks_refetch_cooldown = "1s"
[headers]
forward_claims = {{ sub = "X-Client", scope = "X-Scopes" }}
[[routes]]
name = "read"
path_prefix = "/orders"
require_scopes = ["read"]
upstream = "orders"
[[routes]]
name = "write"
path_prefix = "/orders"
methods = ["DELETE"]
require_scopes = ["write"]
upstream = "orders"
"#,
        up.url(),
        op.issuer()
    );
    let gw = Gateway::start(&config);
    gw.wait_ready();

    let read = op.token("read");
    assert_eq!(header(&read)["typ"], "at+jwt");
    assert_eq!(header(&read)["kid"], "op-a");
    let r = gw.get_with("/orders/7", &read);
    assert_eq!(r.status, 200, "{r:?}");
    let seen = up.last();
    assert_eq!(seen.one("x-client"), "orders-client");
    assert_eq!(seen.one("x-scopes"), "read");
    assert!(!seen.has("authorization"));
    let auth = format!("Bearer {read}");
    let r =
        crate::support::http::request(gw.addr, "DELETE", "/orders/7", &[("Authorization", &auth)]);
    assert_eq!(r.status, 403, "read-only token: {r:?}");
    let write = op.token("read write");
    let auth = format!("Bearer {write}");
    let r =
        crate::support::http::request(gw.addr, "DELETE", "/orders/7", &[("Authorization", &auth)]);
    assert_eq!(r.status, 200, "{r:?}");
    // A token changed after signing fails.
    let mut parts: Vec<String> = read.split('.').map(str::to_owned).collect();
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"sub":"admin","scope":"read write","aud":"orders-api"}"#);
    assert_eq!(
        gw.get_with("/orders/7", &parts.join(".")).reason(),
        "bad_signature"
    );

    // Key rotation at the OP: a new signing key, the old one still published. The first
    // token with the new kid makes authgate refetch.
    op.rotate("op-b");
    let rotated = op.token("read");
    assert_eq!(header(&rotated)["kid"], "op-b");
    assert!(
        eventually(Duration::from_secs(5), || gw
            .get_with("/orders/8", &rotated)
            .status
            == 200),
        "{}",
        gw.logs()
    );
    assert_eq!(
        gw.get_with("/orders/9", &read).status,
        200,
        "the old key is still published"
    );
}

/// A JWKS over https whose certificate comes from a private CA: trusted with `jwks_ca_file`,
/// refused without it.
#[test]
fn https_jwks_with_a_private_ca() {
    let keys = Keys::load();
    let work = tempfile::tempdir().unwrap();
    let doc = work.path().join("jwks.json");
    std::fs::write(&doc, keys.standard_jwks()).unwrap();
    let mut server = KillOnDrop(
        Command::new("node")
            .current_dir(interop_dir())
            .arg("https-jwks.mjs")
            .arg(&doc)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node must be installed for the interop tests"),
    );
    let stdout = server.0.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("HTTPS_READY ")
        .expect("https server ready")
        .parse()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/jwks.json");
    let up = Upstream::start();
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.pem");
    let base = standard_config(&url, &up.url());
    let trusted = base.replace(
        "jwks_refresh = \"5m\"",
        &format!("jwks_refresh = \"5m\"\njwks_ca_file = \"{}\"", ca.display()),
    );
    let gw = Gateway::start(&trusted);
    gw.wait_ready();
    let t = keys.rs256().claims(good_claims("alice", "read")).sign();
    assert_eq!(gw.get_with("/api/x", &t).status, 200);
    drop(gw);

    let untrusted = Gateway::start(&base);
    assert!(
        untrusted.wait_log("jwks refresh failed", Duration::from_secs(5)),
        "{}",
        untrusted.logs()
    );
    assert_eq!(get(untrusted.admin, "/readyz", &[]).status, 503);
    assert_eq!(
        untrusted.get_with("/api/x", &t).reason(),
        "keys_unavailable"
    );
}

/// A child process that is killed when the test ends, panicking or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
