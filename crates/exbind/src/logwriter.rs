//! Where the server's log lines go: a shared buffer that a background thread writes to stderr
//! every few milliseconds. A request's log line costs a short memcpy under a lock, with no
//! channel and no wake-up per line, so logging keeps off the request path.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// Buffered lines beyond this are dropped (and counted) rather than stall requests.
const MAX_BUFFERED: usize = 8 * 1024 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(20);

struct Shared {
    buf: Mutex<Vec<u8>>,
    stop: AtomicBool,
    wake: Condvar,
    dropped: AtomicU64,
}

pub struct BatchWriter(Arc<Shared>);

/// Stops the flusher and writes what is left when dropped.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn stderr() -> (BatchWriter, Guard) {
    let shared = Arc::new(Shared {
        buf: Mutex::new(Vec::with_capacity(64 * 1024)),
        stop: AtomicBool::new(false),
        wake: Condvar::new(),
        dropped: AtomicU64::new(0),
    });
    let s = shared.clone();
    let thread = std::thread::Builder::new()
        .name("exbind-log".into())
        .spawn(move || {
            let mut out = Vec::with_capacity(64 * 1024);
            loop {
                {
                    let mut buf = s.buf.lock();
                    if buf.is_empty() && !s.stop.load(Ordering::Acquire) {
                        s.wake.wait_for(&mut buf, FLUSH_EVERY);
                    }
                    std::mem::swap(&mut *buf, &mut out);
                }
                let dropped = s.dropped.swap(0, Ordering::Relaxed);
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&out);
                if dropped > 0 {
                    let _ = writeln!(
                        err,
                        "exbind: {dropped} log lines dropped: stderr was too slow"
                    );
                }
                let _ = err.flush();
                out.clear();
                if s.stop.load(Ordering::Acquire) && s.buf.lock().is_empty() {
                    return;
                }
                std::thread::sleep(FLUSH_EVERY);
            }
        })
        .expect("log thread");
    (
        BatchWriter(shared.clone()),
        Guard {
            shared,
            thread: Some(thread),
        },
    )
}

/// What one log line is written through: a borrow, so making one per line costs nothing
/// (a clone of the `Arc` would have the threads contend on its count).
pub struct Sink<'a>(&'a Shared);

impl Write for Sink<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut buf = self.0.buf.lock();
        if buf.len() + data.len() > MAX_BUFFERED {
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            buf.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = Sink<'a>;
    fn make_writer(&'a self) -> Sink<'a> {
        Sink(&self.0)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
