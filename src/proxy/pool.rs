//! The fast path's idle upstream connections: one pool per worker thread, most recently
//! used first.
//!
//! pingora-core's pool spawns a task per released connection to watch it while it is idle
//! (a `Notify`, a oneshot and a task per request); measured, that was about a twelfth of
//! the fast path's CPU per request. Here a release is a push and a take a pop, under a lock
//! nobody else holds (the pool is its thread's). A connection is checked when it is taken
//! (closed by the upstream, or holding bytes nobody asked for: dropped) and every second by
//! the thread's sweeper, which also drops those idle past their upstream's `idle_timeout`.
//! So a connection the upstream closes lingers at most a second; pingora's watcher closes
//! it at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use pingora::protocols::Stream;
use tokio::io::AsyncReadExt;

/// How often each thread's sweeper runs.
const SWEEP: Duration = Duration::from_secs(1);

pub struct Pool {
    idle: Mutex<Idle>,
    max: usize,
}

#[derive(Default)]
struct Idle {
    /// By `Peer::reuse_hash`: connections, the most recently released last.
    by_key: HashMap<u64, Vec<Parked>>,
    count: usize,
}

struct Parked {
    stream: Stream,
    until: Instant,
}

thread_local! {
    static POOL: OnceLock<Arc<Pool>> = const { OnceLock::new() };
}

impl Pool {
    fn new(max: usize) -> Self {
        Self {
            idle: Mutex::new(Idle::default()),
            max,
        }
    }

    /// Runs `f` on this thread's pool (holding at most `max` connections), made on first
    /// use with its sweeper (which needs a tokio runtime: the worker's).
    pub fn with<T>(max: usize, f: impl FnOnce(&Pool) -> T) -> T {
        POOL.with(|cell| {
            let pool = cell.get_or_init(|| {
                let pool = Arc::new(Pool::new(max));
                let weak = Arc::downgrade(&pool);
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(SWEEP).await;
                        match weak.upgrade() {
                            Some(pool) => pool.sweep(),
                            None => return,
                        }
                    }
                });
                pool
            });
            f(pool)
        })
    }

    /// A live idle connection for `key`, if there is one.
    pub fn take(&self, key: u64) -> Option<Stream> {
        loop {
            let parked = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                let parked = idle.by_key.get_mut(&key)?.pop()?;
                idle.count -= 1;
                parked
            };
            let mut stream = parked.stream;
            if parked.until > Instant::now() && reusable(&mut stream) {
                return Some(stream);
            }
        }
    }

    /// Keeps `stream` for `key` for at most `idle_timeout` (dropped, so closed, when the
    /// pool is full or the connection is not clean).
    pub fn put(&self, key: u64, mut stream: Stream, idle_timeout: Duration) {
        if !reusable(&mut stream) {
            return;
        }
        let parked = Parked {
            stream,
            until: Instant::now() + idle_timeout,
        };
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.count >= self.max {
            return;
        }
        idle.count += 1;
        idle.by_key.entry(key).or_default().push(parked);
    }

    /// Drops the connections idle too long, or closed or written to by their upstream.
    fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut count = 0;
        idle.by_key.retain(|_, parked| {
            parked.retain_mut(|p| p.until > now && reusable(&mut p.stream));
            count += parked.len();
            !parked.is_empty()
        });
        idle.count = count;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle.lock().unwrap().count
    }
}

/// Whether an idle connection is still clean: nothing to read (no close, no stray bytes).
/// pingora's own check, the same way (`unconstrained`: the task budget must not turn a
/// ready read into "pending").
fn reusable(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    match tokio::task::unconstrained(stream.read(&mut byte)).now_or_never() {
        None => true,
        Some(Ok(0)) | Some(Err(_)) => false,
        Some(Ok(_)) => {
            tracing::debug!("bytes on an idle upstream connection: closed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (Stream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(client));
        (stream, server)
    }

    #[tokio::test]
    async fn takes_the_last_released_live_connection_only() {
        let pool = Pool::new(2);
        let (a, _a_peer) = pair().await;
        let (b, b_peer) = pair().await;
        let (c, _c_peer) = pair().await;
        let (a_id, b_id) = (a.id(), b.id());
        pool.put(1, a, Duration::from_secs(60));
        pool.put(1, b, Duration::from_secs(60));
        // Full: the third is dropped.
        pool.put(2, c, Duration::from_secs(60));
        assert_eq!(pool.len(), 2);
        assert!(pool.take(2).is_none());
        // `b` was closed by its upstream: skipped (and dropped), `a` comes out.
        drop(b_peer);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let got = pool.take(1).expect("a live one");
        assert_eq!(got.id(), a_id);
        assert_ne!(got.id(), b_id);
        assert_eq!(pool.len(), 0);
    }

    #[tokio::test]
    async fn the_sweep_drops_expired_closed_and_dirty_connections() {
        let pool = Pool::new(8);
        let (live, _live_peer) = pair().await;
        let (expired, _e) = pair().await;
        let (closed, closed_peer) = pair().await;
        let (dirty, mut dirty_peer) = pair().await;
        let live_id = live.id();
        pool.put(1, live, Duration::from_secs(60));
        pool.put(1, expired, Duration::ZERO);
        pool.put(1, closed, Duration::from_secs(60));
        pool.put(1, dirty, Duration::from_secs(60));
        drop(closed_peer);
        dirty_peer.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        pool.sweep();
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.take(1).map(|s| s.id()), Some(live_id));
    }
}
