//! Interop with an identity provider nobody here wrote: the npm package `oidc-provider` runs
//! as a real OP (client credentials grant, resource indicators, JWT and opaque access tokens,
//! OIDC discovery, key rotation, introspection with client secrets, `private_key_jwt` and
//! RFC 9701 signed answers, revocation, DPoP-bound (RFC 9449) and certificate-bound
//! (RFC 8705) access tokens); tokens obtained from it over HTTP go through authgate.
//! `make test` installs it (`npm ci` in `tests/interop`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::support::dpop::{ath, fresh_jti, x5t_s256, DpopKey};
use crate::support::tokens::TokenBuilder;
use crate::support::*;

/// A client of the OP: client_id and secret (client_secret_basic).
type Client = (&'static str, &'static str);

const ORDERS_CLIENT: Client = ("orders-client", "orders-client-secret-that-is-long-enough");
/// Registered with `dpop_bound_access_tokens`: no token without a DPoP proof.
const DPOP_CLIENT: Client = ("dpop-client", "dpop-client-secret-that-is-long-enough");
/// Registered with `tls_client_certificate_bound_access_tokens`: no token without a client
/// certificate (the `x-client-cert` header, as the OP runs on plain http).
const MTLS_CLIENT: Client = ("mtls-client", "mtls-client-secret-that-is-long-enough");

/// The resource parameter that makes the OP issue a JWT for audience orders-api.
const RESOURCE: &str = "&resource=https%3A%2F%2Forders.example.com";

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
        Self::spawn(keys, new_kid, None)
    }

    /// As `start`, with the `private_key_jwt` gateway client `authgate-jwt` registered: the
    /// OP writes that client's private key (P-256, PKCS#8 PEM) to `client_key` before it
    /// says it is ready.
    fn start_with_client_key(keys: &Path, new_kid: &str, client_key: &Path) -> Op {
        Self::spawn(keys, new_kid, Some(client_key))
    }

    fn spawn(keys: &Path, new_kid: &str, client_key: Option<&Path>) -> Op {
        let dir = interop_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: run `make test` (it runs `npm ci` in tests/interop)"
        );
        let mut command = Command::new("node");
        command
            .current_dir(&dir)
            .arg("op.mjs")
            .arg("0")
            .arg(keys)
            .arg(new_kid)
            .env_remove("OP_CLIENT_KEY_PEM")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(pem) = client_key {
            command.env("OP_CLIENT_KEY_PEM", pem);
        }
        let mut child = command
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

    /// A client-credentials access token for `scope`, fetched over HTTP: an RS256 JWT for
    /// audience orders-api (the request names the resource https://orders.example.com).
    fn token(&self, scope: &str) -> String {
        self.issue(scope, RESOURCE)
    }

    /// A client-credentials access token for `scope` without a resource: opaque, only the
    /// OP's introspection endpoint knows what it stands for.
    fn opaque_token(&self, scope: &str) -> String {
        self.issue(scope, "")
    }

    fn issue(&self, scope: &str, extra: &str) -> String {
        let r = self.grant(ORDERS_CLIENT, scope, extra, &[]);
        assert_eq!(r.status, 200, "token endpoint: {r:?}");
        access_token(&r)
    }

    /// A client-credentials access token of dpop-client bound to `key` (RFC 9449): an RS256
    /// JWT for audience orders-api with `cnf.jkt` when `resource`, else an opaque token
    /// whose introspection answer carries it. The test makes the proof for the token
    /// endpoint; the OP wants a server nonce in it, so the first proof is answered
    /// `use_dpop_nonce` with a `DPoP-Nonce`, and the second, carrying it, gets the token.
    fn dpop_token(&self, key: &DpopKey, scope: &str, resource: bool) -> String {
        let extra = if resource { RESOURCE } else { "" };
        let htu = format!("{}/token", self.issuer());
        let mut nonce = None;
        for _ in 0..2 {
            let proof = nonce_proof(key, "POST", &htu, None, nonce.as_deref());
            let r = self.grant(DPOP_CLIENT, scope, extra, &[("DPoP", &proof)]);
            if nonce.is_none() && r.status == 400 && r.json()["error"] == "use_dpop_nonce" {
                nonce = Some(r.header("dpop-nonce").expect("DPoP-Nonce").to_owned());
                continue;
            }
            assert_eq!(r.status, 200, "token endpoint: {r:?}");
            assert_eq!(r.json()["token_type"], "DPoP", "a DPoP-bound token");
            return access_token(&r);
        }
        panic!("the OP asked for a DPoP nonce twice");
    }

    /// A client-credentials access token of mtls-client bound to the certificate `cert` of
    /// the TLS fixtures (RFC 8705 `cnf["x5t#S256"]`): a JWT when `resource`, else opaque.
    fn mtls_token(&self, cert: &str, scope: &str, resource: bool) -> String {
        let extra = if resource { RESOURCE } else { "" };
        let der = base64::engine::general_purpose::STANDARD.encode(cert_der(cert));
        let r = self.grant(MTLS_CLIENT, scope, extra, &[("x-client-cert", &der)]);
        assert_eq!(r.status, 200, "token endpoint: {r:?}");
        access_token(&r)
    }

    /// The client credentials grant for `client`, `scope` and the form parameters `extra`.
    fn grant(&self, client: Client, scope: &str, extra: &str, headers: &[(&str, &str)]) -> Resp {
        let body = format!(
            "grant_type=client_credentials&scope={}{extra}",
            scope.replace(' ', "+")
        );
        self.post(client, "/token", &body, headers)
    }

    /// The OP's introspection answer for `token`, asked as the gateway client `authgate`.
    fn introspect(&self, token: &str) -> serde_json::Value {
        let body = format!("token={}", form(token));
        let r = self.post(
            ("authgate", GATEWAY_SECRET),
            "/token/introspection",
            &body,
            &[],
        );
        assert_eq!(r.status, 200, "introspection endpoint: {r:?}");
        r.json()
    }

    /// Revokes `token` at the OP (RFC 7009), as the client it was issued to.
    fn revoke(&self, token: &str) {
        let body = format!("token={}", form(token));
        let r = self.post_as_client("/token/revocation", &body);
        assert_eq!(r.status, 200, "revocation endpoint: {r:?}");
    }

    /// POSTs the form `body` to `path` as orders-client (client_secret_basic).
    fn post_as_client(&self, path: &str, body: &str) -> Resp {
        self.post(ORDERS_CLIENT, path, body, &[])
    }

    /// POSTs the form `body` to `path` as `client` (client_secret_basic), with `headers`.
    fn post(&self, client: Client, path: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
        let (id, secret) = client;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        let mut raw = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Basic {basic}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.port,
            body.len()
        );
        for (n, v) in headers {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        raw.push_str(body);
        let addr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        send(addr, raw.as_bytes())
    }
}

/// The `access_token` of a token endpoint answer.
fn access_token(r: &Resp) -> String {
    r.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// A DPoP proof for `method` `htu` with `ath` of `token` and the server `nonce` (the OP's
/// or the gateway's) when one was handed out.
fn nonce_proof(
    key: &DpopKey,
    method: &str,
    htu: &str,
    token: Option<&str>,
    nonce: Option<&str>,
) -> String {
    let mut claims = json!({"jti": fresh_jti(), "htm": method, "htu": htu, "iat": now()});
    if let Some(t) = token {
        claims["ath"] = json!(ath(t));
    }
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    TokenBuilder::new(key.key, key.alg)
        .no_kid()
        .header("typ", json!("dpop+jwt"))
        .header("jwk", key.jwk.clone())
        .claims(claims)
        .sign()
}

fn form(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn header(token: &str) -> serde_json::Value {
    part(token, 0)
}

/// The (unverified) claims of a JWT.
fn claims(token: &str) -> serde_json::Value {
    part(token, 1)
}

fn part(token: &str, n: usize) -> serde_json::Value {
    let p = token.split('.').nth(n).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
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

/// The gateway's secret at the OP (client `authgate`, registered for client_secret_basic;
/// oidc-provider takes a secret in the form body as well).
const GATEWAY_SECRET: &str = "authgate-introspection-secret-long-enough";

/// Writes `secret` (with the trailing newline an editor leaves) to `dir/name`.
fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

/// A gateway in front of `up` with provider `op` for the OP's issuer (`provider`: the rest
/// of its table; it accepts tokens without `aud`, as the OP's opaque ones are), the claims
/// `client_id` and `scope` forwarded, and two routes for that provider: `/orders` needs
/// scope `read`, `/admin` scope `admin`.
fn introspecting_gateway(op: &Op, up: &Upstream, provider: &str) -> Gateway {
    introspecting_gateway_with(op, up, "", provider)
}

/// As `introspecting_gateway`, with `server` added to the `[server]` table (more keys, then
/// perhaps a `[server.tls]` table).
fn introspecting_gateway_with(op: &Op, up: &Upstream, server: &str, provider: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_delay = "0s"
{server}
[admin]
listen = "127.0.0.1:0"
[upstreams.orders]
url = "{}"
[providers.op]
issuer = "{}"
audiences = ["orders-api"]
require_aud = false
{provider}
[headers]
forward_claims = {{ client_id = "X-Client-Id", scope = "X-Scopes" }}
[[routes]]
name = "orders"
path_prefix = "/orders"
providers = ["op"]
require_scopes = ["read"]
upstream = "orders"
[[routes]]
name = "admin"
path_prefix = "/admin"
providers = ["op"]
require_scopes = ["admin"]
upstream = "orders"
"#,
        up.url(),
        op.issuer()
    ))
}

/// `authgate_introspection_requests_total` of provider `op` for `result`.
fn introspections(gw: &Gateway, result: &str) -> f64 {
    metric_value(
        &gw.metrics(),
        &format!(r#"authgate_introspection_requests_total{{provider="op",result="{result}"}}"#),
    )
}

/// Every introspection call of provider `op`, whatever came of it.
fn all_introspections(gw: &Gateway) -> f64 {
    [
        "active",
        "inactive",
        "timeout",
        "unreachable",
        "bad_status",
        "bad_response",
    ]
    .iter()
    .map(|r| introspections(gw, r))
    .sum()
}

/// Opaque access tokens of a real OP, validated by asking its introspection endpoint (found
/// by discovery, client_secret_basic): scopes from the answer, the answer cached for
/// `introspection_cache_ttl`, a revocation at the OP seen once it has passed. JWT access
/// tokens of the same OP on the same route are still verified locally, with no call.
#[test]
fn opaque_tokens_from_oidc_provider_by_introspection() {
    let work = tempfile::tempdir().unwrap();
    let op = Op::start(&work.path().join("op-keys.json"), "op-a");
    let up = Upstream::start();
    let secret = secret_file(work.path(), "client.secret", GATEWAY_SECRET);
    let ttl = Duration::from_secs(2);
    let gw = introspecting_gateway(
        &op,
        &up,
        &format!(
            r#"discovery = true
client_id = "authgate"
client_secret_file = {:?}
introspection_cache_ttl = "2s""#,
            secret.display().to_string()
        ),
    );
    gw.wait_ready();

    // A JWT access token: verified with the keys from discovery, never sent to the OP.
    let jwt = op.token("read");
    let r = gw.get_with("/orders/1", &jwt);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.last().one("x-client-id"), "orders-client");
    assert_eq!(all_introspections(&gw), 0.0, "a JWT is verified locally");

    let opaque = op.opaque_token("read write");
    assert!(!opaque.contains('.'), "not a JWT: {opaque}");
    let first = Instant::now();
    let r = gw.get_with("/orders/7", &opaque);
    assert_eq!(r.status, 200, "{r:?}\n{}", gw.logs());
    let seen = up.last();
    assert!(!seen.has("authorization"), "the token is not forwarded");
    assert_eq!(seen.one("x-client-id"), "orders-client");
    assert_eq!(seen.one("x-scopes"), "read write");
    assert_eq!(introspections(&gw, "active"), 1.0);
    // The cached answer is checked against each route's own requirements.
    let r = gw.get_with("/admin/7", &opaque);
    assert_eq!(
        (r.status, r.reason().as_str()),
        (403, "insufficient_scope"),
        "{r:?}"
    );
    assert_eq!(introspections(&gw, "active"), 1.0, "the answer was cached");

    // Revoked at the OP: the cached answer still lets it in until the TTL (counted from the
    // call, which came after `first`) has passed. A request answered before `first + ttl`
    // was decided on the cached answer, whatever the machine's load.
    op.revoke(&opaque);
    let revoked = Instant::now();
    let mut cached = 0;
    while first.elapsed() < ttl / 2 {
        let r = gw.get_with("/orders/8", &opaque);
        if first.elapsed() < ttl {
            assert_eq!(r.status, 200, "still cached: {r:?}");
            cached += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        cached > 0 || revoked.duration_since(first) >= ttl,
        "no request made while the answer was cached"
    );
    let mut requests = 0;
    let refused = eventually(Duration::from_secs(10), || {
        requests += 1;
        gw.get_with("/orders/9", &opaque).reason() == "inactive_token"
    });
    assert!(
        refused,
        "the revocation is seen after the TTL\n{}",
        gw.logs()
    );
    let r = gw.get_with("/orders/9", &opaque);
    assert_eq!(
        (r.status, r.reason().as_str()),
        (401, "inactive_token"),
        "{r:?}"
    );
    // A handful of calls for all those requests: answers are cached, active and inactive.
    let active = introspections(&gw, "active");
    assert!(
        (1.0..=3.0).contains(&active),
        "{active} calls answered active for {} requests",
        cached + requests + 3
    );
    assert_eq!(introspections(&gw, "inactive"), 1.0);
    let m = gw.metrics();
    assert!(
        metric_value(
            &m,
            r#"authgate_introspection_cache_lookups_total{provider="op",result="inactive_hit"}"#
        ) >= 1.0
    );
    // The JWT is unaffected, and still costs no call.
    let calls = all_introspections(&gw);
    assert_eq!(gw.get_with("/orders/1", &jwt).status, 200);
    assert_eq!(all_introspections(&gw), calls);
}

/// The gateway authenticates with `private_key_jwt` (an ES256 client assertion, kid gw1)
/// and asks for RFC 9701 signed answers, verified with the OP's keys from discovery.
#[test]
fn private_key_jwt_and_signed_introspection_answers() {
    let work = tempfile::tempdir().unwrap();
    let client_key = work.path().join("authgate-jwt.pem");
    let mut op = Op::start_with_client_key(&work.path().join("op-keys.json"), "op-a", &client_key);
    let up = Upstream::start();
    let gw = introspecting_gateway(
        &op,
        &up,
        &format!(
            r#"discovery = true
client_id = "authgate-jwt"
client_auth = "private_key_jwt"
client_key_file = {:?}
client_key_id = "gw1"
introspection_signed_response = true
jwks_refetch_cooldown = "1s""#,
            client_key.display().to_string()
        ),
    );
    gw.wait_ready();

    // With `introspection_signed_response`, an answer that is not a verified JWT would be
    // `bad_response` (503): a 200 is the OP's signed answer, checked.
    let opaque = op.opaque_token("read");
    let r = gw.get_with("/orders/7", &opaque);
    assert_eq!(r.status, 200, "{r:?}\n{}", gw.logs());
    assert_eq!(up.last().one("x-scopes"), "read");
    assert_eq!(gw.get_with("/orders/8", &opaque).status, 200);
    // A token the OP never issued: its signed answer says inactive.
    let unknown =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let r = gw.get_with("/orders/7", &unknown);
    assert_eq!(
        (r.status, r.reason().as_str()),
        (401, "inactive_token"),
        "{r:?}"
    );
    assert_eq!(introspections(&gw, "active"), 1.0);
    assert_eq!(introspections(&gw, "inactive"), 1.0);
    assert_eq!(all_introspections(&gw), 2.0, "{}", gw.logs());

    // The OP rotates its key: its answers are signed with a kid authgate has not fetched.
    // Like a JWT with an unknown kid, that makes it refetch the keys (once per
    // `jwks_refetch_cooldown`), not refuse until the next scheduled refresh.
    op.rotate("op-b");
    let fresh = op.opaque_token("read");
    assert!(
        eventually(Duration::from_secs(5), || gw
            .get_with("/orders/9", &fresh)
            .status
            == 200),
        "{}",
        gw.logs()
    );
    assert_eq!(gw.get_with("/orders/9", &opaque).status, 200);
}

/// client_secret_post against the endpoint configured by URL (no key source: every token
/// is introspected); a wrong secret is the gateway's problem, never the user's: the OP
/// answers 401 to the gateway, the user gets 503.
#[test]
fn client_secret_post_and_a_wrong_secret() {
    let work = tempfile::tempdir().unwrap();
    let op = Op::start(&work.path().join("op-keys.json"), "op-a");
    let up = Upstream::start();
    let endpoint = format!("{}/token/introspection", op.issuer());
    let secret = secret_file(work.path(), "client.secret", GATEWAY_SECRET);
    let post = introspecting_gateway(
        &op,
        &up,
        &format!(
            r#"introspection_url = "{endpoint}"
client_id = "authgate"
client_auth = "client_secret_post"
client_secret_file = {:?}"#,
            secret.display().to_string()
        ),
    );
    post.wait_ready();
    let opaque = op.opaque_token("read");
    let r = post.get_with("/orders/7", &opaque);
    assert_eq!(r.status, 200, "{r:?}\n{}", post.logs());
    assert_eq!(up.last().one("x-client-id"), "orders-client");
    assert_eq!(introspections(&post, "active"), 1.0);
    drop(post);

    let wrong = secret_file(
        work.path(),
        "wrong.secret",
        "not-the-secret-of-authgate-at-all",
    );
    let gw = introspecting_gateway(
        &op,
        &up,
        &format!(
            r#"discovery = true
client_id = "authgate"
client_secret_file = {:?}"#,
            wrong.display().to_string()
        ),
    );
    gw.wait_ready();
    for _ in 0..2 {
        let r = gw.get_with("/orders/7", &opaque);
        assert_eq!(
            (r.status, r.reason().as_str()),
            (503, "introspection_unavailable"),
            "{r:?}"
        );
        assert_eq!(r.header("www-authenticate"), None, "not a token error");
    }
    // Failures are not cached: each request asked, and heard 401.
    assert_eq!(introspections(&gw, "bad_status"), 2.0, "{}", gw.logs());
    assert_eq!(all_introspections(&gw), 2.0);
}

/// The rest of provider `op`'s table for the tests of bound tokens: keys by discovery, the
/// gateway client `authgate` (client_secret_basic) for opaque tokens, and `extra`.
fn bound_provider(work: &Path, extra: &str) -> String {
    let secret = secret_file(work, "client.secret", GATEWAY_SECRET);
    format!(
        "discovery = true\nclient_id = \"authgate\"\nclient_secret_file = {:?}\n{extra}",
        secret.display().to_string()
    )
}

/// A `[server.tls]` table with `tls/server.pem` (HTTP/2 and HTTP/1.1 by ALPN) and `extra`.
fn tls_listener(extra: &str) -> String {
    let tls = fixtures().join("tls");
    format!(
        "[server.tls]\ncert = {:?}\nkey = {:?}\n{extra}",
        tls.join("server.pem").display().to_string(),
        tls.join("server.key").display().to_string()
    )
}

/// `reason` of a gateway refusal's body; empty when it is not one.
fn reason(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A 401 of the gateway with `reason`.
fn assert_unauthorized(r: &Resp, reason: &str, what: &str) {
    assert_eq!(
        (r.status, r.reason().as_str()),
        (401, reason),
        "{what}: {r:?}"
    );
}

/// A 401 for a DPoP proof, with `reason` and the `DPoP` challenge of RFC 9449 §7.1 naming
/// an `error` and the algorithms accepted.
fn assert_dpop_refused(r: &Resp, reason: &str, what: &str) {
    assert_unauthorized(r, reason, what);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("DPoP ")
            && challenge.contains("error=\"")
            && challenge.contains("algs=\""),
        "{what}: {challenge:?}"
    );
}

/// A DPoP-bound JWT access token from the OP's token endpoint (the proof made by the test,
/// with the nonce the OP asks for), through authgate with `dpop = "required"` over
/// HTTP/1.1 and HTTP/2: with a fresh proof by the bound key it passes and the upstream gets
/// neither proof nor token; as a Bearer token, with a proof by another key, and with a proof
/// sent before (on either protocol) it is refused.
#[test]
fn dpop_bound_jwt_from_oidc_provider() {
    let keys = Keys::load();
    let work = tempfile::tempdir().unwrap();
    let op = Op::start(&work.path().join("op-keys.json"), "op-a");
    let key = DpopKey::new(&keys.ec, Algorithm::ES256);
    let token = op.dpop_token(&key, "read", true);
    assert_eq!(header(&token)["typ"], "at+jwt");
    let c = claims(&token);
    assert_eq!(c["client_id"], "dpop-client");
    assert_eq!(c["aud"], "orders-api");
    assert_eq!(
        c["cnf"]["jkt"],
        key.thumbprint(),
        "the OP binds the token to the proof's key"
    );

    let up = Upstream::start();
    let gw = introspecting_gateway_with(
        &op,
        &up,
        &tls_listener(""),
        &bound_provider(work.path(), r#"dpop = "required""#),
    );
    gw.wait_ready();
    // The listener's scheme and the authority as sent: no public_url is configured.
    let authority = format!("localhost:{}", gw.addr.port());
    let htu = format!("https://{authority}/orders/7");
    let dpop = format!("DPoP {token}");
    let bearer = format!("Bearer {token}");
    let other = DpopKey::new(&keys.rsa, Algorithm::RS256);
    for proto in Proto::BOTH {
        let send = |auth: &str, proof: Option<&str>| {
            let mut headers = vec![("Authorization", auth)];
            headers.extend(proof.map(|p| ("DPoP", p)));
            proto.request(&gw, "GET", &authority, "/orders/7", &headers)
        };
        let proof = key.proof("GET", &htu, Some(&token));
        let r = send(&dpop, Some(&proof));
        assert_eq!(r.status, 200, "{proto:?}: {r:?}\n{}", gw.logs());
        let seen = up.last();
        assert!(!seen.has("dpop"), "{proto:?}: the proof is not forwarded");
        assert!(!seen.has("authorization"), "{proto:?}: nor the token");
        assert_eq!(seen.one("x-client-id"), "dpop-client");
        assert_eq!(seen.one("x-scopes"), "read");

        // The same proof again, on new connections of either protocol.
        for again in Proto::BOTH {
            let r = again.request(
                &gw,
                "GET",
                &authority,
                "/orders/7",
                &[("Authorization", &dpop), ("DPoP", &proof)],
            );
            assert_dpop_refused(
                &r,
                "dpop_replay",
                &format!("{proto:?} proof replayed over {again:?}"),
            );
        }
        // Downgraded to a bearer token, with or without a fresh proof.
        let fresh = key.proof("GET", &htu, Some(&token));
        for proof in [None, Some(fresh.as_str())] {
            let r = send(&bearer, proof);
            let what = format!("{proto:?} as Bearer, proof {}", proof.is_some());
            assert_unauthorized(&r, "token_binding_required", &what);
        }
        // A valid proof by a key the token is not bound to.
        let r = send(&dpop, Some(&other.proof("GET", &htu, Some(&token))));
        assert_dpop_refused(&r, "dpop_binding_mismatch", &format!("{proto:?} other key"));
    }
    assert_eq!(
        up.count(),
        2,
        "only the two good requests reached the upstream"
    );
}

/// A DPoP-bound opaque token of the OP: the OP's introspection answer carries `cnf.jkt`,
/// which authgate (`dpop` left at its default, "allowed") holds the proof to. The proof's
/// `htu` is the plain listener's `http://127.0.0.1:PORT/path`. A plain bearer token of
/// another client still passes. With `dpop_nonce`, the client gets the gateway's nonce as it
/// got the OP's: `use_dpop_nonce` and a `DPoP-Nonce` to retry with.
#[test]
fn dpop_bound_opaque_token_by_introspection() {
    let keys = Keys::load();
    let work = tempfile::tempdir().unwrap();
    let op = Op::start(&work.path().join("op-keys.json"), "op-a");
    let key = DpopKey::new(&keys.ec, Algorithm::ES256);
    let token = op.dpop_token(&key, "read", false);
    assert!(!token.contains('.'), "an opaque token");
    let answer = op.introspect(&token);
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "DPoP");
    assert_eq!(
        answer["cnf"]["jkt"],
        key.thumbprint(),
        "the introspection answer names the key"
    );

    let up = Upstream::start();
    let gw = introspecting_gateway(&op, &up, &bound_provider(work.path(), ""));
    gw.wait_ready();
    let host = format!("127.0.0.1:{}", gw.addr.port());
    let htu = format!("http://{host}/orders/7");
    let dpop = format!("DPoP {token}");
    let send = |auth: &str, proof: Option<&str>| {
        let mut headers = vec![("Host", host.as_str()), ("Authorization", auth)];
        headers.extend(proof.map(|p| ("DPoP", p)));
        get(gw.addr, "/orders/7", &headers)
    };
    let r = send(&dpop, Some(&key.proof("GET", &htu, Some(&token))));
    assert_eq!(r.status, 200, "{r:?}\n{}", gw.logs());
    let seen = up.last();
    assert!(!seen.has("dpop"), "the proof is not forwarded");
    assert_eq!(seen.one("x-client-id"), "dpop-client");
    assert_eq!(introspections(&gw, "active"), 1.0);

    let r = send(&format!("Bearer {token}"), None);
    assert_unauthorized(&r, "token_binding_required", "as Bearer");
    let other = DpopKey::new(&keys.rsa, Algorithm::RS256);
    let r = send(&dpop, Some(&other.proof("GET", &htu, Some(&token))));
    assert_dpop_refused(&r, "dpop_binding_mismatch", "other key");

    // dpop = "allowed": an unbound token as Bearer is fine.
    let plain = op.opaque_token("read");
    assert_eq!(op.introspect(&plain)["cnf"], serde_json::Value::Null);
    let r = send(&format!("Bearer {plain}"), None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.last().one("x-client-id"), "orders-client");
    assert_eq!(up.count(), 2);
    drop(gw);

    // With dpop_nonce, authgate asks for its own nonce as the OP did, and the client's
    // retry carrying it passes; the answer brings the next one.
    let gw = introspecting_gateway(&op, &up, &bound_provider(work.path(), "dpop_nonce = true"));
    gw.wait_ready();
    let host = format!("127.0.0.1:{}", gw.addr.port());
    let htu = format!("http://{host}/orders/7");
    let send = |nonce: Option<&str>| {
        let proof = nonce_proof(&key, "GET", &htu, Some(&token), nonce);
        get(
            gw.addr,
            "/orders/7",
            &[("Host", &host), ("Authorization", &dpop), ("DPoP", &proof)],
        )
    };
    let r = send(None);
    assert_dpop_refused(&r, "use_dpop_nonce", "no nonce");
    assert!(
        r.header("www-authenticate")
            .unwrap_or_default()
            .contains(r#"error="use_dpop_nonce""#),
        "{r:?}"
    );
    let nonce = r.header("dpop-nonce").expect("DPoP-Nonce").to_owned();
    let r = send(Some(&nonce));
    assert_eq!(r.status, 200, "{r:?}\n{}", gw.logs());
    assert!(r.header("dpop-nonce").is_some(), "the next nonce: {r:?}");
    assert_dpop_refused(
        &send(Some("not-a-nonce-of-authgate")),
        "use_dpop_nonce",
        "a made-up nonce",
    );
}

/// An https client trusting `tls/ca.pem` that presents the TLS fixture `NAME.pem` (with
/// `NAME.key`) when the server asks for a client certificate.
fn client_with_cert(name: Option<&str>, http1_only: bool) -> reqwest::Client {
    let tls = fixtures().join("tls");
    let ca = std::fs::read(tls.join("ca.pem")).expect("ca file");
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca pem")])
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10));
    if let Some(name) = name {
        let mut pem = std::fs::read(tls.join(format!("{name}.pem"))).expect("cert");
        pem.extend(std::fs::read(tls.join(format!("{name}.key"))).expect("key"));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    if http1_only {
        b = b.http1_only();
    }
    b.build().expect("https client")
}

/// Certificate-bound tokens of the OP (RFC 8705: `cnf["x5t#S256"]` in the JWT, and in the
/// introspection answer of the opaque one) through authgate's TLS listener asking for a
/// client certificate of `tls/client-ca.pem` (`client_auth = "optional"`), over HTTP/1.1 and
/// HTTP/2: they pass with the certificate they are bound to, and are refused with another
/// certificate of the same CA or with none; a certificate of an untrusted CA gets no
/// further than the handshake, or a 401. An unbound token needs no certificate.
#[test]
fn certificate_bound_tokens_from_oidc_provider() {
    let work = tempfile::tempdir().unwrap();
    let op = Op::start(&work.path().join("op-keys.json"), "op-a");
    let x5t = x5t_s256("client.pem");
    let jwt = op.mtls_token("client.pem", "read", true);
    let c = claims(&jwt);
    assert_eq!(c["client_id"], "mtls-client");
    assert_eq!(
        c["cnf"]["x5t#S256"], x5t,
        "the OP binds the JWT to client.pem"
    );
    let opaque = op.mtls_token("client.pem", "read", false);
    assert!(!opaque.contains('.'), "an opaque token");
    assert_eq!(
        op.introspect(&opaque)["cnf"]["x5t#S256"],
        x5t,
        "the introspection answer names the certificate"
    );
    let plain = op.token("read");

    let up = Upstream::start();
    let client_ca = fixtures().join("tls/client-ca.pem");
    let gw = introspecting_gateway_with(
        &op,
        &up,
        &tls_listener(&format!(
            "client_ca = {:?}\nclient_auth = \"optional\"",
            client_ca.display().to_string()
        )),
        &bound_provider(work.path(), ""),
    );
    gw.wait_ready();
    let url = format!("https://localhost:{}/orders/7", gw.addr.port());
    for http1_only in [true, false] {
        let version = if http1_only {
            ::http::Version::HTTP_11
        } else {
            ::http::Version::HTTP_2
        };
        let request = |cert: Option<&str>, token: &str| {
            let bearer = format!("Bearer {token}");
            https_get(
                &client_with_cert(cert, http1_only),
                &url,
                &[("authorization", &bearer)],
            )
        };
        for (kind, token) in [("JWT", &jwt), ("opaque", &opaque)] {
            let what = |cert: &str| format!("{kind} token, {cert}, {version:?}");
            let r = request(Some("client"), token).expect("https request");
            assert_eq!(
                (r.status, r.version),
                (200, version),
                "{}: {r:?}\n{}",
                what("client.pem"),
                gw.logs()
            );
            assert_eq!(up.last().one("x-client-id"), "mtls-client");
            for cert in [Some("client2"), None] {
                let r = request(cert, token).expect("https request");
                assert_eq!(
                    (r.status, reason(&r.body).as_str()),
                    (401, "cert_binding_mismatch"),
                    "{}: {r:?}",
                    what(cert.unwrap_or("no certificate"))
                );
            }
            // A certificate of an untrusted CA: rustls refuses the chain with an alert. In
            // TLS 1.3 the client has sent its request by then, so it hears the alert, or the
            // close that follows it, while writing or reading; or, when the close wins the
            // race with the request's dispatch, hyper cancels it ("connection was not ready").
            let before = up.count();
            match request(Some("rogue"), token) {
                Err(e) => {
                    let e = e.to_lowercase();
                    assert!(
                        ["alert", "closed", "broken pipe", "reset", "not ready"]
                            .iter()
                            .any(|m| e.contains(m)),
                        "{}: {e}",
                        what("rogue.pem")
                    );
                }
                Ok(r) => assert_eq!(
                    (r.status, reason(&r.body).as_str()),
                    (401, "cert_binding_mismatch"),
                    "{}: {r:?}",
                    what("rogue.pem")
                ),
            }
            assert_eq!(up.count(), before, "nothing went upstream");
        }
        for cert in [None, Some("client2")] {
            let r = request(cert, &plain).expect("https request");
            assert_eq!(r.status, 200, "unbound token, {cert:?}, {version:?}: {r:?}");
        }
    }
}

/// TLS ended in front of authgate: the client certificate comes in the RFC 9440
/// `Client-Cert` header, believed from `trusted_client_cert_peers` only. A token bound to
/// client.pem by the OP passes with that certificate in the header from a trusted peer, not
/// with another or none; from a peer that is not trusted the header counts for nothing and
/// does not reach the upstream.
#[test]
fn certificate_bound_token_with_the_client_cert_header() {
    let work = tempfile::tempdir().unwrap();
    let op = Op::start(&work.path().join("op-keys.json"), "op-a");
    let jwt = op.mtls_token("client.pem", "read", true);
    assert_eq!(claims(&jwt)["cnf"]["x5t#S256"], x5t_s256("client.pem"));
    let plain = op.token("read");
    let up = Upstream::start();
    let field = |cert: &str| {
        format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(cert_der(cert))
        )
    };
    let (client, client2) = (field("client.pem"), field("client2.pem"));
    let send = |gw: &Gateway, token: &str, cert: Option<&str>| {
        let bearer = format!("Bearer {token}");
        let mut headers = vec![("Authorization", bearer.as_str())];
        headers.extend(cert.map(|c| ("Client-Cert", c)));
        get(gw.addr, "/orders/7", &headers)
    };

    let trusted = introspecting_gateway_with(
        &op,
        &up,
        r#"trusted_client_cert_peers = ["127.0.0.1/32"]"#,
        &bound_provider(work.path(), ""),
    );
    trusted.wait_ready();
    let r = send(&trusted, &jwt, Some(&client));
    assert_eq!(r.status, 200, "{r:?}\n{}", trusted.logs());
    assert_eq!(up.last().one("x-client-id"), "mtls-client");
    for cert in [Some(client2.as_str()), None] {
        let r = send(&trusted, &jwt, cert);
        assert_unauthorized(
            &r,
            "cert_binding_mismatch",
            "trusted peer, other or no certificate",
        );
    }
    drop(trusted);

    let untrusted = introspecting_gateway_with(
        &op,
        &up,
        r#"trusted_client_cert_peers = ["10.0.0.0/8"]"#,
        &bound_provider(work.path(), ""),
    );
    untrusted.wait_ready();
    let r = send(&untrusted, &jwt, Some(&client));
    assert_unauthorized(&r, "cert_binding_mismatch", "untrusted peer");
    let r = send(&untrusted, &plain, Some(&client));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        !up.last().has("client-cert"),
        "a Client-Cert header from an untrusted peer is stripped"
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
