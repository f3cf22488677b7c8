//! Panics: a bug must cost one request a 500, never the connection, the access-log line
//! or the metric. Each pingora phase runs our code inside `guard`; the process-wide hook
//! logs every panic as one line and counts it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::metrics::Metrics;

/// The code under `guard` panicked (already logged and counted by the hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panicked;

/// Runs `f`, turning a panic into `Err(Panicked)`. The request state `f` touches is
/// dropped or left as it was: a request that panicked is answered and logged as
/// `internal_error`, nothing of it is reused.
pub fn guard<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| Panicked)
}

/// Replaces the default hook (a multi-line message on stderr, a backtrace with
/// `RUST_BACKTRACE`) with one `error` log line and `authgate_panics_total`. The message is
/// logged only when it is a static string: a formatted one can carry request data (an
/// `unwrap` on a parse error prints the input), and a token must never reach a log.
pub fn install_hook(metrics: Arc<Metrics>) {
    std::panic::set_hook(Box::new(move |info| {
        metrics.panics.inc();
        let message = info
            .payload()
            .downcast_ref::<&'static str>()
            .copied()
            .unwrap_or("(formatted message withheld: it may carry request data)");
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            %location,
            message,
            thread = thread.name().unwrap_or("-"),
            "panic: a bug (in a request's phase: answered 500 internal_error; elsewhere: that task or connection ends)"
        );
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_value() {
        assert_eq!(guard(|| 7), Ok(7));
        let mut touched = false;
        let r = guard(|| {
            touched = true;
            let v: Vec<u8> = Vec::new();
            v[usize::from(touched)]
        });
        assert_eq!(r, Err(Panicked));
        assert!(touched);
    }
}
