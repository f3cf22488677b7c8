//! A minimal HTTP/1.1 server on hyper, for the admin endpoints and the demo's issuer and
//! echo upstream. Not on the proxy path: pingora serves clients.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A request as handlers see it: head plus the whole body.
pub type Handled = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;
pub type Handler = Arc<dyn Fn(http::request::Parts, Bytes) -> Handled + Send + Sync>;

/// The pause after a failed `accept`, doubled for each failure in a row up to the longest,
/// and back to the shortest after a success. Out of descriptors (EMFILE, ENFILE) or memory,
/// `accept` fails while the connection stays queued: retrying at once fails again and spins
/// a core until some descriptor is freed.
const ACCEPT_PAUSE_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_PAUSE_LONGEST: Duration = Duration::from_secs(1);

/// Serves `handler` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, handler: Handler) {
    let mut pause = ACCEPT_PAUSE_FIRST;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                pause = ACCEPT_PAUSE_FIRST;
                tokio::spawn(serve_connection(stream, handler.clone()));
            }
            // That one connection broke while queued; the listener is fine.
            Err(e) if is_connection_error(&e) => {}
            Err(error) => {
                tracing::warn!(%error, retry_in = ?pause, "accept failed; pausing");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(ACCEPT_PAUSE_LONGEST);
            }
        }
    }
}

/// An `accept` error about the connection being accepted, not the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// Serves one HTTP/1.1 connection (plain TCP, or TLS already accepted) until it closes.
pub async fn serve_connection<S>(stream: S, handler: Handler)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        async move {
            let (parts, body) = req.into_parts();
            // A body that breaks off or is malformed is never handed to the handler.
            let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
                return Ok::<_, Infallible>(respond(400, "text/plain", "bad body\n"));
            };
            Ok(handler(parts, body).await)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

/// A response with a status, a content type and a body.
pub fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Set in the child that `accept_failures_back_off` runs under a low descriptor limit.
    const CHILD: &str = "AUTHGATE_TEST_ACCEPT_EMFILE";

    /// Out of descriptors, `accept` really fails (EMFILE) for as long as connections wait in
    /// the backlog: the loop must pause rather than spin a core, warn once per pause, with
    /// pauses that double, and serve again once descriptors are free, starting over from the
    /// shortest pause. The test runs itself again under `ulimit -n 64`, so that the limit
    /// hits nothing else.
    #[test]
    fn accept_failures_back_off() {
        if std::env::var_os(CHILD).is_some() {
            out_of_descriptors();
            return;
        }
        let out = std::process::Command::new("sh")
            .args(["-c", "ulimit -n 64 && exec \"$0\" --exact httpd::tests::accept_failures_back_off --nocapture --test-threads=1"])
            .arg(std::env::current_exe().expect("test binary"))
            .env(CHILD, "1")
            .output()
            .expect("run sh");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{stderr}"
        );
    }

    /// The child: two rounds of running out of descriptors and getting them back.
    fn out_of_descriptors() {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // Opened while descriptors remain; read again from the start for fresh figures.
        let mut stat = std::fs::File::open("/proc/self/stat").expect("/proc/self/stat");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let handler: Handler =
                Arc::new(|_, _| Box::pin(async { respond(200, "text/plain", "ok") }));
            tokio::spawn(serve(listener, handler));
            for round in 0..2 {
                let seen = logs.lines().len();
                let held = use_up_descriptors(addr);
                let cpu = cpu_ticks(&mut stat);
                tokio::time::sleep(Duration::from_secs(1)).await;
                let used = cpu_ticks(&mut stat) - cpu;
                // A spinning loop burns the whole second (100 ticks); pauses, almost none.
                assert!(used < 25, "round {round}: {used} ticks of CPU in 1 s");
                let warned = logs.lines().split_off(seen);
                // Pauses of 10, 20, 40 ... 640 ms: 7 warnings in the first second.
                assert!(
                    (3..=10).contains(&warned.len()),
                    "round {round}: {warned:#?}"
                );
                for (line, ms) in warned.iter().zip([10, 20, 40, 80, 160, 320, 640]) {
                    assert!(
                        line.contains("accept failed")
                            && line.contains("os error 24")
                            && line.contains(&format!("retry_in={ms}ms")),
                        "round {round}: {warned:#?}"
                    );
                }
                drop(held);
                let answer = tokio::time::timeout(Duration::from_secs(5), get(addr))
                    .await
                    .expect("served again within 5 s");
                assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            }
        });
    }

    /// Connects to `addr` until the process is out of descriptors; the connections wait in
    /// the listener's backlog (the server task does not run meanwhile).
    fn use_up_descriptors(addr: SocketAddr) -> Vec<std::net::TcpStream> {
        let mut held = Vec::new();
        loop {
            match std::net::TcpStream::connect(addr) {
                Ok(s) => held.push(s),
                Err(e) if e.raw_os_error() == Some(24) => break, // EMFILE
                Err(e) => panic!("connect: {e}"),
            }
        }
        assert!(!held.is_empty(), "no connection is waiting to be accepted");
        held
    }

    /// CPU time (user + system) this process has used, in clock ticks (1/100 s).
    fn cpu_ticks(stat: &mut std::fs::File) -> u64 {
        let mut text = String::new();
        stat.rewind().expect("rewind");
        stat.read_to_string(&mut text).expect("read stat");
        // Fields after the command name, which ends with the last `)`: state is field 3,
        // utime 14 and stime 15.
        let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
    }

    async fn get(addr: SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.expect("read");
        answer
    }

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
            bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
