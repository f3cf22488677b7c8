//! authgate: a reverse-proxy authentication gateway. It validates OAuth 2.0 / OpenID Connect
//! JWT access tokens against live JWKS and TOML route policies, forwards the claims the
//! upstream needs as headers, strips what a client could spoof, and counts why it refused.
//!
//! `run` wires the parts: a control runtime (key refresh, config watch, admin endpoints) and
//! the pingora server that carries client traffic through `proxy::Gateway`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod cases;
pub mod config;
pub mod explain;
pub mod formats;
pub mod httpd;
pub mod metrics;
pub mod proxy;
pub mod revoke;
pub mod runtime;
pub mod tls;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};

use config::Config;
use metrics::Metrics;
use runtime::reload::{watch, Reloader};
use runtime::State;

/// Start-up failures: a bad listen address, a port in use, no runtime.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the control runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot build the JWKS HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("{0}")]
    State(String),
}

/// Addresses actually bound, handed to `on_ready`.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
}

/// How to run.
pub struct RunOptions {
    pub config: Config,
    /// Watch this file (and SIGHUP) for reloads; `None` for an embedded config.
    pub watch: Option<PathBuf>,
    /// Runtime for background work; the demo passes the one its issuer and echo run on.
    pub control: Option<tokio::runtime::Runtime>,
    /// Called once the proxy port accepts connections.
    pub on_ready: Option<Box<dyn FnOnce(Ready) + Send>>,
    /// Called right before the process exits early once drained (flush logs here): the
    /// process then ends with `std::process::exit(0)` instead of returning from `run`.
    pub before_exit: Option<Box<dyn FnOnce() + Send>>,
}

/// Creates the control runtime: one thread for key refreshes, reloads and admin requests,
/// apart from the proxy's workers.
pub fn control_runtime() -> Result<tokio::runtime::Runtime, StartError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("authgate-control")
        .enable_all()
        .build()
        .map_err(StartError::Runtime)
}

/// Runs the gateway until SIGTERM (graceful) or SIGINT (fast).
pub fn run(opts: RunOptions) -> Result<(), StartError> {
    let control = match opts.control {
        Some(rt) => rt,
        None => control_runtime()?,
    };
    tls::install_crypto_provider();
    for warning in &opts.config.warnings {
        tracing::warn!(%warning, "risky config setting");
    }
    let metrics = Arc::new(Metrics::new());
    proxy::guard::install_hook(metrics.clone());
    let client = auth::keystore::http_client().map_err(StartError::Client)?;
    let server_settings = opts.config.server.clone();
    let admin_listen = opts.config.admin.listen.clone();
    let certs = server_settings.tls.as_ref().map(|t| {
        metrics.enable_tls();
        let store = tls::CertStore::new(
            t.cert.clone(),
            t.key.clone(),
            t.pair.clone(),
            metrics.clone(),
        );
        store.watch(control.handle());
        // The listener holds the store for the process's life; so does this clone, so the
        // poll (which holds it weakly) never depends on how pingora keeps its resolver.
        std::mem::forget(store.clone());
        store
    });
    let state = State::new(opts.config, metrics, control.handle().clone(), client);

    // Admin: bound here, served on the control runtime.
    let admin_std = bind("admin listener", &admin_listen)?;
    let admin_addr = admin_std.local_addr().map_err(|source| StartError::Bind {
        what: "admin listener",
        addr: admin_listen.clone(),
        source,
    })?;
    {
        let _guard = control.enter();
        let listener =
            tokio::net::TcpListener::from_std(admin_std).map_err(|source| StartError::Bind {
                what: "admin listener",
                addr: admin_listen.clone(),
                source,
            })?;
        control.spawn(httpd::serve(listener, admin::handler(state.clone())));
    }

    // Proxy: pingora binds by address, so port 0 is resolved to a free port first.
    let proxy_addr = free_addr(&server_settings.listen)?;
    if let Some(path) = opts.watch {
        control.spawn(watch(Reloader::new(path, state.clone())));
    }
    let fast_path_on = fast_path(server_settings.fast_path)?;
    spawn_ready_probe(
        &control,
        proxy_addr,
        admin_addr,
        (server_settings.tls.is_some(), fast_path_on),
        opts.on_ready,
    );

    let conf = ServerConf {
        threads: server_settings.threads,
        // pingora's defaults (300 s + 300 s) would hold a pod far past Kubernetes' 30 s. The
        // delay before closing the listener is ours (`DrainSignal`); pingora's grace period
        // is the time in-flight requests get after that.
        grace_period_seconds: Some(server_settings.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: server_settings.upstream_pool_size,
        // One single-threaded runtime per worker thread (connections stay on the thread
        // that accepted them) unless asked: measured cheaper per request (docs/PERFORMANCE.md).
        work_stealing: server_settings.work_stealing,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    // Called once, by whichever ends the process first: the drain, or SIGINT.
    let before_exit: ExitHook = Arc::new(std::sync::Mutex::new(opts.before_exit));
    control.spawn(exit_when_drained(
        server.watch_execution_phase(),
        state.clone(),
        server_settings.shutdown_grace,
        before_exit.clone(),
    ));
    let drain = DrainSignal {
        state: state.clone(),
        delay: server_settings.shutdown_delay,
        before_exit,
    };
    let mut http = pingora::proxy::http_proxy(
        &server.configuration,
        proxy::Gateway {
            state: state.clone(),
        },
    );
    let mut options = pingora::apps::HttpServerOptions::default();
    options.h2_idle_timeout = Some(server_settings.keepalive_timeout);
    http.server_options = Some(options);
    // HTTP/2 heads are bounded as HTTP/1 ones are (pingora's default is 64 KiB). The HTTP/2
    // layer counts 32 bytes more per field than the head's own bytes, and answers a list
    // over its bound itself with a bare 431; so its bound is twice `max_header_bytes`, and
    // a head between the two reaches `decide`, which refuses it with the usual 431 (JSON
    // body, request id, access line, metric).
    let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
    h2.max_header_list_size(
        u32::try_from(server_settings.max_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX),
    );
    http.h2_options = Some(h2);
    // TLS is done by the connection app (with our rustls config: see `tls::acceptor`), so
    // pingora's listener is plain TCP either way.
    let tls = match (&server_settings.tls, certs) {
        (Some(t), Some(certs)) => {
            let verifier = match &t.client_ca {
                Some(ca) => Some(
                    tls::client_verifier(&ca.certs, t.client_cert_required).map_err(|e| {
                        StartError::State(format!(
                            "server.tls.client_ca {}: {e}",
                            ca.path.display()
                        ))
                    })?,
                ),
                None => None,
            };
            Some(Arc::new(tls::acceptor(certs, verifier, t.http2).map_err(
                |e| StartError::State(format!("TLS listener: {e}")),
            )?))
        }
        _ => None,
    };
    let fast = fast_path_on.then(|| {
        let options =
            pingora::connectors::ConnectorOptions::from_server_conf(&server.configuration);
        proxy::fast::FastPath::new(
            proxy::Gateway {
                state: state.clone(),
            },
            pingora::connectors::TransportConnector::new(Some(options)),
            server_settings.upstream_pool_size,
            server.configuration.max_retries,
        )
    });
    let mut service = pingora::services::listening::Service::new(
        "authgate proxy".to_owned(),
        proxy::connection::Connections::new(http, state, tls, fast),
    );
    // pingora's 64 KiB read buffer stays with every connection, idle ones included.
    let buffers = pingora::protocols::l4::stream::L4BufferSettings::default()
        .read(server_settings.read_buffer_bytes);
    let listener =
        pingora::listeners::ListenerConfig::tcp(proxy_addr.to_string()).l4_buffer(buffers);
    service.add_listener(listener);
    server.add_service(service);
    // The control runtime must outlive the server; leak it deliberately (the process exits
    // right after `run` returns, and dropping a runtime from here could block on its tasks).
    std::mem::forget(control);
    server.run(RunArgs {
        shutdown_signal: Box::new(drain),
    });
    tracing::info!("authgate stopped");
    Ok(())
}

/// `server.fast_path`, unless `AUTHGATE_FAST_PATH` (`true` or `false`) says otherwise: the
/// test suite runs once per path with it.
fn fast_path(configured: bool) -> Result<bool, StartError> {
    match std::env::var("AUTHGATE_FAST_PATH").as_deref() {
        Err(_) => Ok(configured),
        Ok("true") => Ok(true),
        Ok("false") => Ok(false),
        Ok(other) => Err(StartError::State(format!(
            "AUTHGATE_FAST_PATH must be true or false, not {other:?}"
        ))),
    }
}

fn bind(what: &'static str, addr: &str) -> Result<StdListener, StartError> {
    let l = StdListener::bind(addr).map_err(|source| StartError::Bind {
        what,
        addr: addr.to_owned(),
        source,
    })?;
    l.set_nonblocking(true).map_err(|source| StartError::Bind {
        what,
        addr: addr.to_owned(),
        source,
    })?;
    Ok(l)
}

/// `addr` with port 0 replaced by a port that is free now; checks the address is bindable.
fn free_addr(addr: &str) -> Result<SocketAddr, StartError> {
    let l = bind("proxy listener", addr)?;
    l.local_addr().map_err(|source| StartError::Bind {
        what: "proxy listener",
        addr: addr.to_owned(),
        source,
    })
}

/// Logs `ready` (and calls `on_ready`) once the proxy port accepts connections.
fn spawn_ready_probe(
    control: &tokio::runtime::Runtime,
    proxy: SocketAddr,
    admin: SocketAddr,
    (tls, fast_path): (bool, bool),
    on_ready: Option<Box<dyn FnOnce(Ready) + Send>>,
) {
    control.spawn(async move {
        let probe = if proxy.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), proxy.port())
        } else {
            proxy
        };
        for _ in 0..600 {
            let up = match tokio::net::TcpStream::connect(probe).await {
                Err(_) => false,
                Ok(_) if !tls => true,
                // A TLS listener is probed with a whole handshake: a bare connect would
                // make pingora log a failed handshake.
                Ok(stream) => tls::probe_handshake(stream).await,
            };
            if up {
                tracing::info!(proxy = %proxy, admin = %admin, fast_path, version = env!("CARGO_PKG_VERSION"), "authgate ready");
                if let Some(f) = on_ready {
                    f(Ready { proxy, admin });
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::error!(proxy = %proxy, "proxy listener did not come up within 30s");
    });
}

/// pingora sleeps the whole grace period after closing the listener, even with nothing left
/// to finish. Once it is in that period, this ends the process as soon as no request is in
/// flight (checked twice, 100 ms apart, so a request whose head was just read is seen);
/// otherwise pingora's own timer ends it at `shutdown_grace`.
async fn exit_when_drained(
    mut phases: tokio::sync::broadcast::Receiver<pingora::server::ExecutionPhase>,
    state: Arc<State>,
    grace: Duration,
    before_exit: ExitHook,
) {
    use pingora::server::ExecutionPhase;
    loop {
        match phases.recv().await {
            Ok(ExecutionPhase::ShutdownGracePeriod) => break,
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
    let started = tokio::time::Instant::now();
    let idle = || state.in_flight.load(Ordering::Acquire) == 0;
    while started.elapsed() < grace {
        if idle() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if idle() {
                tracing::info!(after = ?started.elapsed(), "drained: no request in flight; exiting");
                exit_now(&before_exit, 0);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(
        in_flight = state.in_flight.load(Ordering::Acquire),
        "shutdown_grace ended with requests in flight"
    );
}

/// SIGTERM, the Kubernetes way: `/readyz` turns 503 at once, the listener keeps accepting
/// for `shutdown_delay` while endpoints are removed, then pingora's graceful shutdown closes it
/// and gives in-flight requests `shutdown_grace`. SIGINT stops at once. (pingora's own watcher
/// closes the listener the moment SIGTERM arrives, which drops requests from load balancers
/// that have not yet seen the pod go unready.)
struct DrainSignal {
    state: Arc<State>,
    delay: Duration,
    before_exit: ExitHook,
}

/// What to run right before the process exits (flush logs), shared by every way out.
type ExitHook = Arc<std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>>;

/// Runs the exit hook (once) and ends the process with `code`.
fn exit_now(hook: &ExitHook, code: i32) -> ! {
    let f = hook.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(f) = f {
        f();
    }
    std::process::exit(code);
}

#[async_trait::async_trait]
impl ShutdownSignalWatch for DrainSignal {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        // SIGINT stops at once, by ending the process: pingora's own fast shutdown can leave
        // its accept loop spinning on a runtime being shut down (a log line per turn).
        tokio::select! {
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping now");
                exit_now(&self.before_exit, 130);
            }
            _ = term.recv() => {}
            _ = quit.recv() => {}
        }
        self.state.draining.store(true, Ordering::Relaxed);
        tracing::info!(delay = ?self.delay, "SIGTERM: readiness off; still serving until the delay ends");
        tokio::select! {
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping now");
                exit_now(&self.before_exit, 130);
            }
            () = tokio::time::sleep(self.delay) => {}
        }
        tracing::info!("closing the listener; draining in-flight requests");
        ShutdownSignal::GracefulTerminate
    }
}
