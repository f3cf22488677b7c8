//! One way to watch a file by polling, shared by revocation lists and the listener's TLS
//! pair: every `every`, `check` runs on the blocking pool (file reads and parsing stay off the
//! async workers), for as long as the watched object lives.

use std::sync::{Arc, Weak};
use std::time::Duration;

/// Calls `check(&owner)` every `every` until the last `Arc` of `owner` is dropped (a
/// provider that left the config) or the runtime shuts down. A check that panics is logged
/// (by the panic hook, and here with `what`) and the poll goes on.
pub fn spawn<T, F>(
    rt: &tokio::runtime::Handle,
    what: String,
    every: Duration,
    owner: &Arc<T>,
    check: F,
) where
    T: Send + Sync + 'static,
    F: Fn(&T) + Send + Sync + 'static,
{
    let weak: Weak<T> = Arc::downgrade(owner);
    let check = Arc::new(check);
    rt.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(owner) = weak.upgrade() else { return };
            let check = check.clone();
            match tokio::task::spawn_blocking(move || check(&owner)).await {
                Ok(()) => {}
                Err(e) if e.is_cancelled() => return,
                Err(e) => tracing::error!(poll = %what, error = %e, "file poll failed; retrying"),
            }
        }
    });
}
