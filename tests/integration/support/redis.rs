//! A real `redis-server` (Debian's package; `make test` installs it) on a loopback port,
//! killed on drop. The port is picked free and, should another process take it before
//! Redis binds, Redis is started again on another: no port race fails a test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::fixtures;

pub struct RedisServer {
    child: Child,
    pub port: u16,
    tls: bool,
    _dir: tempfile::TempDir,
    args: Vec<String>,
}

impl RedisServer {
    /// Plain TCP; with `password`, `requirepass` (the default user's password).
    pub fn start(password: Option<&str>) -> Self {
        Self::start_with(password, false)
    }

    /// TLS only (`tls-port`), with the fixture certificate for 127.0.0.1 (`tls/server.pem`,
    /// issued by `tls/ca.pem`); clients are not asked for certificates.
    pub fn start_tls(password: Option<&str>) -> Self {
        Self::start_with(password, true)
    }

    /// Plain TCP, writing every change to its append-only file before answering: a
    /// `restart` keeps what was written (Redis run as a fleet store should persist).
    pub fn start_persistent() -> Self {
        let mut s = Self::start_with(None, false);
        s.stop();
        s.args
            .extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from));
        s.restart();
        s
    }

    fn start_with(password: Option<&str>, tls: bool) -> Self {
        for _ in 0..10 {
            if let Some(s) = Self::try_start(password, tls) {
                return s;
            }
        }
        panic!("redis-server did not start (is it installed? `make test` installs it)");
    }

    /// Kills Redis (SIGKILL: no goodbye to its clients' sockets beyond the kernel's).
    pub fn stop(&mut self) {
        self.resume_quietly();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts Redis again on the same port and data directory. The port was free a moment
    /// ago: should another process hold it meanwhile, this waits for it (up to 20 s).
    pub fn restart(&mut self) {
        for _ in 0..100 {
            if let Some(child) = Self::spawn(&self.args) {
                self.child = child;
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("redis-server did not start again on port {}", self.port);
    }

    /// `None` when the port was taken before Redis bound it.
    fn try_start(password: Option<&str>, tls: bool) -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("redis dir");
        let certs = fixtures().join("tls");
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        if tls {
            args.extend(
                [
                    "--port",
                    "0",
                    "--tls-port",
                    &port.to_string(),
                    "--tls-cert-file",
                    &certs.join("server.pem").display().to_string(),
                    "--tls-key-file",
                    &certs.join("server.key").display().to_string(),
                    "--tls-ca-cert-file",
                    &certs.join("ca.pem").display().to_string(),
                    "--tls-auth-clients",
                    "no",
                ]
                .map(String::from),
            );
        } else {
            args.extend(["--port".to_owned(), port.to_string()]);
        }
        if let Some(p) = password {
            args.extend(["--requirepass".to_owned(), p.to_owned()]);
        }
        let child = Self::spawn(&args)?;
        Some(Self {
            child,
            port,
            tls,
            _dir: dir,
            args,
        })
    }

    /// Runs `redis-server args` until it is ready; `None` when its port is in use.
    fn spawn(args: &[String]) -> Option<Child> {
        let mut child = Command::new("redis-server")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (is it installed? `make test` installs it)");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    let _ = tx.send(true);
                } else if line.contains("Address already in use") {
                    let _ = tx.send(false);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(true) => Some(child),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        }
    }

    /// `redis://127.0.0.1:PORT` (or `rediss://`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// SIGSTOP: Redis accepts nothing and answers nothing until `resume` (a hung store).
    pub fn pause(&self) {
        self.signal("STOP");
    }

    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} redis-server");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume_quietly();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    fn resume_quietly(&self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
    }
}

/// A TCP relay in front of Redis that can go silent the way a hung middlebox or a dropped
/// NAT entry does: the sockets stay open and take what is sent (the kernel acknowledges
/// it, so no TCP timeout ever fires), but nothing is passed on either way, and no socket is
/// ever closed. A client that keeps its connections never hears from Redis again; only a
/// new connection, made once the relay is `heal`ed, gets through.
pub struct Relay {
    pub port: u16,
    state: std::sync::Arc<RelayState>,
}

#[derive(Default)]
struct RelayState {
    /// Connections made before the last `silence` are silent for good.
    generation: std::sync::atomic::AtomicU64,
    silent: std::sync::atomic::AtomicBool,
    stopped: std::sync::atomic::AtomicBool,
}

impl Relay {
    pub fn start(redis_port: u16) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(RelayState::default());
        let st = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.stopped.load(SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", redis_port)) else {
                    continue;
                };
                let generation = st.generation.load(SeqCst);
                let dead_at_birth = st.silent.load(SeqCst);
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let st = st.clone();
                    std::thread::spawn(move || pump(from, to, &st, generation, dead_at_birth));
                }
            }
        });
        Self { port, state }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Every connection open now goes silent for good; new ones are silent until `heal`.
    pub fn silence(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.state.silent.store(true, SeqCst);
        self.state.generation.fetch_add(1, SeqCst);
    }

    /// New connections get through again (the silenced ones stay silent).
    pub fn heal(&self) {
        self.state
            .silent
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Passes bytes `from` → `to` while the connection lives; takes and drops them after.
fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    st: &RelayState,
    generation: u64,
    dead_at_birth: bool,
) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering::SeqCst;
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 16 * 1024];
    while !st.stopped.load(SeqCst) {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        let alive = !dead_at_birth && st.generation.load(SeqCst) == generation;
        if alive && to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    // A silenced connection is never closed while the relay runs (the loop above only
    // ends when the relay stops or a live peer closes).
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl Drop for Relay {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.state.stopped.store(true, SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}
