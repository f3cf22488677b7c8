//! The log writer: lines are appended to a shared buffer that one thread writes to stdout in
//! batches, so a request pays a mutex and a copy for its access line, not a wake-up of
//! another thread and a `write(2)` of its own.
//!
//! `tracing-appender`'s non-blocking writer, used before, sends each line through a channel
//! and wakes its writer thread for it: under load that was one futex wake, one context
//! switch and one `write` per request, 12 µs of CPU per request next to 30 µs for the whole
//! proxying (`auth = "none"`, one thread; docs/PERFORMANCE.md). Here the writer thread, once
//! woken by a line arriving in an empty buffer, waits `BATCH` so that the lines of that
//! moment go out in one `write`; while lines keep arriving it never sleeps on the buffer
//! and nobody wakes it. A line is written at most about `BATCH` after it was logged. Lines
//! are never dropped: when stdout cannot keep up and `MAX_PENDING` bytes wait, the logging
//! thread waits for room (as `tracing-appender` did with `lossy(false)`).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long the writer lets lines gather after the first one of a batch.
const BATCH: Duration = Duration::from_millis(2);
/// Bytes waiting past which a logging thread waits for the writer.
const MAX_PENDING: usize = 4 << 20;

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// The writer is asleep waiting for a first line: whoever adds one wakes it.
    idle: bool,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Lines arrived (or the writer should stop).
    arrived: Condvar,
    /// The writer took what was waiting: room for more.
    taken: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A thread that panicked while holding the lock left a valid buffer behind.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `MakeWriter` given to tracing: every handle appends to the same buffer.
#[derive(Clone)]
pub struct Batched {
    shared: Arc<Shared>,
}

/// Flushes what is waiting and stops the writer thread when dropped.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A writer of batches to `out` on a thread of its own, and the guard that ends it.
pub fn batched<W: Write + Send + 'static>(mut out: W) -> (Batched, Guard) {
    let shared = Arc::new(Shared::default());
    let writer = shared.clone();
    let thread = std::thread::Builder::new()
        .name("authgate-log".to_owned())
        .spawn(move || {
            let mut spare = Vec::new();
            loop {
                let mut p = writer.lock();
                while p.buf.is_empty() && !p.closed {
                    p.idle = true;
                    p = writer.arrived.wait(p).unwrap_or_else(|e| e.into_inner());
                }
                let closed = p.closed;
                if !closed {
                    // Let the lines of this moment gather (unlocked meanwhile).
                    drop(p);
                    std::thread::sleep(BATCH);
                    p = writer.lock();
                }
                std::mem::swap(&mut p.buf, &mut spare);
                drop(p);
                writer.taken.notify_all();
                // Nothing to do about a failed write to stdout but go on.
                let _ = out.write_all(&spare).and_then(|()| out.flush());
                spare.clear();
                if closed && writer.lock().buf.is_empty() {
                    return;
                }
            }
        })
        .expect("spawn the log writer thread");
    (
        Batched {
            shared: shared.clone(),
        },
        Guard {
            shared,
            thread: Some(thread),
        },
    )
}

impl Write for Batched {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut p = self.shared.lock();
        while p.buf.len() > MAX_PENDING && !p.closed {
            p = self.shared.taken.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        p.buf.extend_from_slice(line);
        let wake = std::mem::take(&mut p.idle);
        drop(p);
        if wake {
            self.shared.arrived.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Batched {
    type Writer = Batched;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.arrived.notify_one();
        self.shared.taken.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` into a shared vector, counting its writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(b);
            s.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_in_order_in_few_writes() {
        let sink = Sink::default();
        let (w, guard) = batched(sink.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        w.write_all(format!("{t} {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard); // flushes
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{t} ")))
                .map(|i| i.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..10_000).collect::<Vec<_>>(), "thread {t}");
        }
        assert!(writes < 40_000 / 10, "{writes} writes for 40,000 lines");
    }

    #[test]
    fn a_lone_line_is_written_soon_without_a_flush() {
        let sink = Sink::default();
        let (mut w, _guard) = batched(sink.clone());
        w.write_all(b"one\n").unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while sink.0.lock().unwrap().0.is_empty() {
            assert!(
                std::time::Instant::now() < until,
                "the line was never written"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(sink.0.lock().unwrap().0, b"one\n");
    }
}
