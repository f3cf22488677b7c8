//! Test harness: the real `authgate` binary on an ephemeral port, a real JWKS server, a real
//! upstream that records what it received, tokens signed with the committed key fixtures,
//! and a raw HTTP/1.1 client so tests control every byte they send.

#![allow(dead_code)]

pub mod dpop;
pub mod h2;
pub mod http;
pub mod introspect;
pub mod redis;
pub mod tokens;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use authgate::httpd::{respond, serve, Handler};

pub use self::h2::{h2_never_reading, h2_request, h2_silent, tls_send};
pub use self::http::{get, send, Resp};
pub use self::tokens::Keys;

/// One runtime for every in-test server.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime")
    })
}

fn listen(handler: Handler) -> SocketAddr {
    rt().block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        rt().spawn(serve(l, handler));
        addr
    })
}

fn listen_tls(handler: Handler, acceptor: tokio_rustls::TlsAcceptor) -> SocketAddr {
    rt().block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        rt().spawn(async move {
            loop {
                let Ok((stream, _)) = l.accept().await else {
                    continue;
                };
                let (acceptor, handler) = (acceptor.clone(), handler.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        authgate::httpd::serve_connection(tls, handler).await;
                    }
                });
            }
        });
        addr
    })
}

/// A TLS acceptor for a certificate and key of `tests/fixtures/tls`.
pub fn tls_acceptor(cert: &str, key: &str) -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = fixtures().join("tls");
    let certs = CertificateDer::pem_file_iter(dir.join(cert))
        .expect("cert file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(dir.join(key)).expect("key");
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// What an https request through the gateway came back with.
#[derive(Debug)]
pub struct TlsResp {
    pub status: u16,
    pub version: ::http::Version,
    pub headers: ::http::HeaderMap,
    pub body: String,
    /// DER of the certificate the server presented.
    pub peer_cert: Vec<u8>,
}

/// An https client trusting the given CA files of `tests/fixtures/tls` (and nothing else).
pub fn https_client(cas: &[&str], http1_only: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only(cas.iter().map(|ca| {
            let pem = std::fs::read(fixtures().join("tls").join(ca)).expect("ca file");
            reqwest::Certificate::from_pem(&pem).expect("ca pem")
        }))
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10));
    if http1_only {
        b = b.http1_only();
    }
    b.build().expect("https client")
}

/// `https_client` trusting the fixture CAs, presenting `identity` (`client` for
/// `tls/client.pem` with `tls/client.key`), or no client certificate.
pub fn mtls_client(identity: Option<&str>, http1_only: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only(["ca.pem", "ca2.pem"].iter().map(|ca| {
            let pem = std::fs::read(fixtures().join("tls").join(ca)).expect("ca file");
            reqwest::Certificate::from_pem(&pem).expect("ca pem")
        }))
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10));
    if let Some(name) = identity {
        let dir = fixtures().join("tls");
        let mut pem = std::fs::read(dir.join(format!("{name}.pem"))).expect("client cert");
        pem.extend(std::fs::read(dir.join(format!("{name}.key"))).expect("client key"));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    if http1_only {
        b = b.http1_only();
    }
    b.build().expect("mtls client")
}

/// GET over https; `Err` carries the client's error text (handshake refused, ...).
pub fn https_get(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<TlsResp, String> {
    rt().block_on(async {
        let mut req = client.get(url);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let resp = req.send().await.map_err(|e| format!("{e:?}"))?;
        let peer_cert = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec))
            .unwrap_or_default();
        let status = resp.status().as_u16();
        let version = resp.version();
        let headers = resp.headers().clone();
        let body = resp.text().await.map_err(|e| format!("{e:?}"))?;
        Ok(TlsResp {
            status,
            version,
            headers,
            body,
            peer_cert,
        })
    })
}

/// The DER of the first certificate in a PEM file of `tests/fixtures/tls`.
pub fn cert_der(file: &str) -> Vec<u8> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    tokio_rustls::rustls::pki_types::CertificateDer::from_pem_file(
        fixtures().join("tls").join(file),
    )
    .expect("cert")
    .to_vec()
}

/// A JWKS endpoint whose document, status and delay the test controls.
#[derive(Clone)]
pub struct JwksServer {
    pub addr: SocketAddr,
    doc: Arc<Mutex<String>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    fetches: Arc<AtomicUsize>,
    headers: Arc<Mutex<Vec<(String, String)>>>,
    not_modified: Arc<AtomicUsize>,
    discovery: Arc<Mutex<Option<String>>>,
}

impl JwksServer {
    pub fn start(doc: String) -> Self {
        let doc = Arc::new(Mutex::new(doc));
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let fetches = Arc::new(AtomicUsize::new(0));
        let headers: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
        let not_modified = Arc::new(AtomicUsize::new(0));
        let discovery: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let disc = discovery.clone();
        let (d, s, w, f, h, nm) = (
            doc.clone(),
            status.clone(),
            delay_ms.clone(),
            fetches.clone(),
            headers.clone(),
            not_modified.clone(),
        );
        let handler: Handler = Arc::new(move |parts, _| {
            let (d, s, w, f, h, nm) = (
                d.clone(),
                s.clone(),
                w.clone(),
                f.clone(),
                h.clone(),
                nm.clone(),
            );
            let meta = disc.lock().unwrap().clone();
            Box::pin(async move {
                if parts.uri.path() == "/.well-known/openid-configuration" {
                    return match meta {
                        Some(doc) => respond(200, "application/json", doc),
                        None => respond(404, "text/plain", "no discovery"),
                    };
                }
                f.fetch_add(1, Ordering::SeqCst);
                let wait = w.load(Ordering::SeqCst);
                if wait > 0 {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                let extra = h.lock().unwrap().clone();
                let etag = extra
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("etag"))
                    .map(|(_, v)| v.clone());
                let asked = parts
                    .headers
                    .get("if-none-match")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let mut resp = if etag.is_some() && asked == etag {
                    nm.fetch_add(1, Ordering::SeqCst);
                    respond(304, "application/json", "")
                } else {
                    respond(
                        s.load(Ordering::SeqCst),
                        "application/json",
                        d.lock().unwrap().clone(),
                    )
                };
                for (n, v) in extra {
                    resp.headers_mut().insert(
                        ::http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                        ::http::HeaderValue::from_str(&v).unwrap(),
                    );
                }
                resp
            })
        });
        let addr = listen(handler);
        Self {
            addr,
            doc,
            status,
            delay_ms,
            fetches,
            headers,
            not_modified,
            discovery,
        }
    }

    /// Serves `doc` at `/.well-known/openid-configuration`.
    pub fn set_discovery(&self, doc: &str) {
        *self.discovery.lock().unwrap() = Some(doc.to_owned());
    }

    /// `http://127.0.0.1:PORT`: an issuer whose discovery document this server serves.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a response header (`Cache-Control`, `ETag` ...). With an `ETag`, a matching
    /// `If-None-Match` gets a 304.
    pub fn set_header(&self, name: &str, value: &str) {
        let mut h = self.headers.lock().unwrap();
        h.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        h.push((name.to_owned(), value.to_owned()));
    }
    /// How many 304s were served.
    pub fn not_modified(&self) -> usize {
        self.not_modified.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }
    pub fn set(&self, doc: String) {
        *self.doc.lock().unwrap() = doc;
    }
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// Every value of a header (names compared case-insensitively).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The one value of a header; panics if it is absent or repeated.
    pub fn one(&self, name: &str) -> &str {
        let all = self.all(name);
        assert_eq!(
            all.len(),
            1,
            "header {name} should be present exactly once in {:?}",
            self.headers
        );
        all[0]
    }
    pub fn has(&self, name: &str) -> bool {
        !self.all(name).is_empty()
    }
}

/// An HTTP upstream that answers 200 and records each request.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    delay_ms: Arc<AtomicU64>,
}

impl Upstream {
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// An https upstream with `tls/server.pem` (signed by `tls/ca.pem`, for 127.0.0.1 and
    /// localhost).
    pub fn start_tls() -> Self {
        Self::start_inner(Some(tls_acceptor("server.pem", "server.key")))
    }

    fn start_inner(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (s, w) = (seen.clone(), delay_ms.clone());
        let handler: Handler = Arc::new(move |parts, body| {
            let (s, w) = (s.clone(), w.clone());
            Box::pin(async move {
                let headers = parts
                    .headers
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                s.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    path: parts
                        .uri
                        .path_and_query()
                        .map_or("/".into(), |p| p.as_str().to_owned()),
                    headers,
                    body: body.to_vec(),
                });
                let wait = w.load(Ordering::SeqCst);
                if wait > 0 {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                respond(200, "text/plain", "upstream ok")
            })
        });
        let addr = match tls {
            None => listen(handler),
            Some(acceptor) => listen_tls(handler, acceptor),
        };
        Self {
            addr,
            seen,
            delay_ms,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    /// Every request received so far.
    pub fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    /// The most recent request; panics if none arrived.
    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream received no request")
    }
}

/// A running `authgate run -c <tmp>/authgate.toml`. Killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
}

/// The binary under test: `AUTHGATE_BIN` when set (`make soak` runs the release build),
/// else the one cargo built for these tests.
pub fn bin() -> String {
    std::env::var("AUTHGATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_authgate").to_owned())
}

/// `authgate check --config PATH`: success, stdout, stderr.
pub fn check_config(path: &Path) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(path)
        .output()
        .expect("run authgate check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

impl Gateway {
    /// Writes `config` and starts the gateway; returns once it logged `authgate ready`.
    pub fn start(config: &str) -> Gateway {
        Self::start_with_log(config, "info")
    }

    /// As `start`, with `AUTHGATE_LOG` set to `log` (e.g. `debug`).
    pub fn start_with_log(config: &str, log: &str) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("authgate.toml");
        std::fs::write(&path, config).expect("write config");
        Self::start_at(dir, &path, log)
    }

    /// Starts with an existing config file inside `dir` (kept alive by the gateway).
    pub fn start_at(dir: tempfile::TempDir, path: &Path, log: &str) -> Gateway {
        Self::start_at_env(dir, path, log, &[])
    }

    /// As `start`, with extra environment variables.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("authgate.toml");
        std::fs::write(&path, config).expect("write config");
        Self::start_at_env(dir, &path, "info", env)
    }

    pub fn start_at_env(
        dir: tempfile::TempDir,
        path: &Path,
        log: &str,
        env: &[(&str, &str)],
    ) -> Gateway {
        let mut child = Command::new(bin())
            .args(["run", "--config"])
            .arg(path)
            .env("AUTHGATE_LOG_FORMAT", "json")
            .env("AUTHGATE_LOG", log)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn authgate");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let logs = logs.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains("authgate ready") {
                        let _ = tx.send(line.clone());
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        // Only the readers hold senders now: a gateway that exits (a refused config) ends
        // the wait at once instead of after the timeout.
        drop(tx);
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "gateway did not become ready; logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        let v: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
        let addr = v["proxy"].as_str().expect("proxy").parse().expect("addr");
        let admin = v["admin"].as_str().expect("admin").parse().expect("addr");
        Gateway {
            child,
            addr,
            admin,
            logs,
            dir,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("authgate.toml")
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle` (returns false after `within`).
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if self.logs.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn log_count(&self, needle: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// GET with `Authorization: Bearer <token>`.
    pub fn get_with(&self, path: &str, token: &str) -> Resp {
        get(
            self.addr,
            path,
            &[("Authorization", &format!("Bearer {token}"))],
        )
    }

    /// Waits until `/readyz` says 200 (keys loaded).
    pub fn wait_ready(&self) {
        let ok = eventually(Duration::from_secs(10), || {
            get(self.admin, "/readyz", &[]).status == 200
        });
        assert!(ok, "gateway never became ready; logs:\n{}", self.logs());
    }

    pub fn metrics(&self) -> String {
        get(self.admin, "/metrics", &[]).body
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `/proc/PID/status` figure in KiB (`VmRSS`, `VmHWM` — the peak resident size).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Waits for the process to exit; `None` if it still runs after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }
}

impl Gateway {
    /// The access-log line (JSON) of `request_id`, once written (pingora's logging phase runs
    /// after the answer); fails the test after 5 s.
    pub fn access_line(&self, request_id: &str) -> serde_json::Value {
        let find = || {
            self.logs()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["target"] == "authgate::access" && v["request_id"] == request_id)
        };
        assert!(
            eventually(Duration::from_secs(5), || find().is_some()),
            "no access line for {request_id}"
        );
        find().unwrap()
    }
}

/// The standard config, edited by `edit`, in front of a port that nothing listens on.
pub fn gateway_with_dead_upstream(edit: impl FnOnce(String) -> String) -> (JwksServer, Gateway) {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.standard_jwks());
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = Gateway::start(&edit(standard_config(
        &jwks.url(),
        &format!("http://{dead}"),
    )));
    (jwks, gw)
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one series in a Prometheus text exposition (0 when absent).
pub fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Polls `f` until it returns true or `within` passes.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A config with one JWKS provider `corp` (RS256, ES256, EdDSA, PS256 allowed), the
/// upstream `legacy`, and the routes of the issue's example.
pub fn standard_config(jwks_url: &str, upstream: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
threads = 2
shutdown_delay = "0s"
shutdown_grace = "1s"

[admin]
listen = "127.0.0.1:0"

[upstreams.legacy]
url = "{upstream}"
read_timeout = "1s"
connect_timeout = "1s"

[providers.corp]
issuer = "{ISSUER}"
audiences = ["orders-api"]
jwks_url = "{jwks_url}"
algorithms = ["RS256", "PS256", "ES256", "EdDSA"]
leeway = "30s"
jwks_refresh = "5m"
jwks_refetch_cooldown = "1s"

[headers]
forward_claims = {{ sub = "X-User-Id", scope = "X-Scopes", "org.id" = "X-Org-Id", roles = "X-Roles", n = "X-Number", obj = "X-Obj" }}
strip = ["X-Internal-*"]
forward_token = false

[[routes]]
name = "public"
path_prefix = "/public"
auth = "none"
upstream = "legacy"

[[routes]]
name = "opt"
path_prefix = "/opt"
auth = "optional"
upstream = "legacy"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "legacy"

[[routes]]
name = "api-delete"
path_prefix = "/api"
methods = ["DELETE"]
require_scopes = ["write"]
upstream = "legacy"

[[routes]]
name = "admin-exact"
path = "/admin/status"
auth = "none"
upstream = "legacy"

[[routes]]
name = "admin"
host = "admin.example.com"
path_prefix = "/admin"
require_scopes = ["admin"]
require_claims = {{ "org.tier" = ["gold", "platinum"] }}
upstream = "legacy"

[[routes]]
name = "admin-wild"
host = "*.example.com"
path_prefix = "/admin"
require_scopes = ["superadmin"]
upstream = "legacy"
"#
    )
}

pub const ISSUER: &str = "https://issuer.example.com";
pub const AUDIENCE: &str = "orders-api";

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims that pass the standard config.
pub fn good_claims(sub: &str, scope: &str) -> serde_json::Value {
    serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "scope": scope,
        "iat": now(), "exp": now() + 600,
        "org": {"id": "org-7", "tier": "gold"},
    })
}

/// A standard setup: JWKS with every fixture key, an upstream, and the gateway.
pub struct Setup {
    pub keys: Keys,
    pub jwks: JwksServer,
    pub upstream: Upstream,
    pub gw: Gateway,
}

impl Setup {
    pub fn start() -> Setup {
        Self::start_with(|config| config)
    }

    /// The standard setup behind a TLS listener (`tls/server.pem`, HTTP/2 and HTTP/1.1 by
    /// ALPN), for tests that send the same request over both protocols.
    pub fn start_tls() -> Setup {
        Self::start_tls_with(|config| config)
    }

    /// `start_tls` with `edit` applied to the standard config first.
    pub fn start_tls_with(edit: impl FnOnce(String) -> String) -> Setup {
        let tls = fixtures().join("tls");
        Self::start_with(|config| {
            edit(config).replace(
                "[admin]",
                &format!(
                    "[server.tls]\ncert = {:?}\nkey = {:?}\n\n[admin]",
                    tls.join("server.pem").display().to_string(),
                    tls.join("server.key").display().to_string()
                ),
            )
        })
    }

    /// The standard setup with `edit` applied to the standard config.
    pub fn start_with(edit: impl FnOnce(String) -> String) -> Setup {
        let keys = Keys::load();
        let jwks = JwksServer::start(keys.standard_jwks());
        let upstream = Upstream::start();
        let gw = Gateway::start(&edit(standard_config(&jwks.url(), &upstream.url())));
        gw.wait_ready();
        Setup {
            keys,
            jwks,
            upstream,
            gw,
        }
    }

    /// An RS256 token (kid `rsa`) with `good_claims`.
    pub fn token(&self, scope: &str) -> String {
        self.keys.rs256().claims(good_claims("alice", scope)).sign()
    }
}

/// The protocol a request goes over, for tests that must hold on both (a TLS gateway).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 over TLS, the authority in `Host`.
    H1,
    /// HTTP/2, the authority in `:authority` and no `Host`.
    H2,
}

impl Proto {
    pub const BOTH: [Proto; 2] = [Proto::H1, Proto::H2];

    /// `method path` for `authority`, with `headers` as they are. An HTTP/2 stream reset
    /// instead of an answer is reported as status 0.
    pub fn request(
        self,
        gw: &Gateway,
        method: &str,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Resp {
        match self {
            Proto::H1 => {
                let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n");
                for (n, v) in headers {
                    raw.push_str(&format!("{n}: {v}\r\n"));
                }
                raw.push_str("Connection: close\r\n\r\n");
                tls_send(gw.addr, raw.as_bytes())
            }
            Proto::H2 => {
                h2_request(gw.addr, method, authority, path, headers).unwrap_or_else(|e| Resp {
                    status: 0,
                    headers: Vec::new(),
                    body: e,
                })
            }
        }
    }
}
