//! Serving connections: HTTP/1.1 with Title-Case header names and a 64 KiB cap on a request
//! head; each connection bounded in time while it reads a head (`--header-read-timeout`) and
//! while it waits for its next request (`--idle-timeout`); at most `--max-connections` at
//! once (more wait in the listen backlog); and a shutdown that lets the requests in progress
//! finish and closes every other connection at once.
//!
//! No timer per request or per connection. Each connection keeps, in one atomic word, what
//! it is doing and since when on a coarse clock; one sweeper task looks over all of them a
//! few times a second and closes those past their time. (hyper's own header timer armed a
//! timer for every request head, at ~5 % of GET throughput.) The whole request, once its
//! head is in, is bounded by `--request-timeout` in the framing (`http::Frame`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::response::Response;
use futures_util::task::AtomicWaker;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore};

use crate::http::{Frame, MAX_HEAD};
use crate::metrics::ConnectionMetrics;

/// Connections that completed their handshake and wait to be accepted; the kernel caps it
/// at `net.core.somaxconn`.
const BACKLOG: u32 = 65_535;

#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub header_read: Duration,
    pub idle: Duration,
    pub max_connections: usize,
}

/// Binds `addr` (a host name is resolved; the first address that binds wins) with a listen
/// backlog that absorbs bursts of connects.
pub async fn bind(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        match bind_one(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address")))
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// What a connection is doing, in the top two bits of its state word; the rest is the
/// coarse time it started doing it.
const HEAD: u64 = 0;
const BUSY: u64 = 1;
const IDLE: u64 = 2;
const PHASE_SHIFT: u32 = 62;
const SINCE_MASK: u64 = (1 << PHASE_SHIFT) - 1;

/// What the server asks of a connection.
const RUN: u8 = 0;
const GRACEFUL: u8 = 1;
const CLOSE: u8 = 2;

/// Milliseconds since the server started, as of the sweeper's last tick.
#[derive(Default)]
struct Coarse(AtomicU64);

impl Coarse {
    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct Conn {
    /// Phase and since, in one word, so the sweeper never pairs one's phase with another
    /// phase's start.
    state: AtomicU64,
    /// The registry's clock, so that a request's bookkeeping touches only its connection
    /// (a shared count of references would bounce between the cores on every request).
    clock: Arc<Coarse>,
    /// Bytes went to the socket since hyper last flushed: a response may be half written.
    unflushed: AtomicBool,
    signal: AtomicU8,
    waker: AtomicWaker,
}

impl Conn {
    fn set(&self, phase: u64, since: u64) {
        self.state
            .store(phase << PHASE_SHIFT | since & SINCE_MASK, Ordering::Release);
    }

    /// Now doing `phase`, since now.
    fn enter(&self, phase: u64) {
        self.set(phase, self.clock.now());
    }

    fn phase(&self) -> (u64, u64) {
        let s = self.state.load(Ordering::Acquire);
        (s >> PHASE_SHIFT, s & SINCE_MASK)
    }

    fn ask(&self, signal: u8) {
        if self.signal.fetch_max(signal, Ordering::AcqRel) < signal {
            self.waker.wake();
        }
    }

    /// Closing it now loses nothing: no request is being handled and no answer is part
    /// written.
    fn quiet(&self) -> bool {
        self.phase().0 != BUSY && !self.unflushed.load(Ordering::Relaxed)
    }
}

/// Every open connection, the coarse clock, and whether the server is draining.
struct Registry {
    started: Instant,
    /// Milliseconds since `started`.
    clock: Arc<Coarse>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    draining: AtomicBool,
    emptied: Notify,
    metrics: ConnectionMetrics,
}

impl Registry {
    fn tick(&self) -> u64 {
        let now = self.started.elapsed().as_millis() as u64;
        self.clock.0.store(now, Ordering::Relaxed);
        now
    }

    fn add(self: &Arc<Self>) -> (Arc<Conn>, Deregister) {
        let conn = Arc::new(Conn {
            state: AtomicU64::new(0),
            clock: self.clock.clone(),
            unflushed: AtomicBool::new(false),
            signal: AtomicU8::new(RUN),
            waker: AtomicWaker::new(),
        });
        conn.enter(HEAD);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().insert(id, conn.clone());
        self.metrics.open.inc();
        (
            conn,
            Deregister {
                registry: self.clone(),
                id,
            },
        )
    }

    /// Closes the connections past their time; while draining, also every quiet one.
    fn sweep(&self, limits: &ConnLimits, slack: u64) {
        let now = self.tick();
        let draining = self.draining.load(Ordering::Relaxed);
        // A phase's start is read off the coarse clock, up to `slack` early: a connection is
        // closed only once it surely had its whole time.
        let over = |since: u64, limit: Duration| {
            now.saturating_sub(since) >= limit.as_millis() as u64 + slack
        };
        for conn in self.conns.lock().values() {
            let (phase, since) = conn.phase();
            let timed_out = match phase {
                HEAD => over(since, limits.header_read).then_some(&self.metrics.header_timeouts),
                IDLE => over(since, limits.idle).then_some(&self.metrics.idle_timeouts),
                _ => None,
            };
            if let Some(counter) = timed_out {
                if conn.signal.load(Ordering::Relaxed) != CLOSE {
                    counter.inc();
                }
                conn.ask(CLOSE);
            } else if draining && conn.quiet() {
                conn.ask(CLOSE);
            }
        }
    }

    /// Stops keep-alive everywhere; closes at once every connection without a request in
    /// progress (a half-sent head included).
    fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
        for conn in self.conns.lock().values() {
            conn.ask(if conn.quiet() { CLOSE } else { GRACEFUL });
        }
    }

    async fn drained(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self.conns.lock().is_empty() {
                return;
            }
            emptied.await;
        }
    }
}

/// Takes a connection out of the registry when its task ends.
struct Deregister {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        let mut conns = self.registry.conns.lock();
        conns.remove(&self.id);
        self.registry.metrics.open.dec();
        if conns.is_empty() {
            self.registry.emptied.notify_waiters();
        }
    }
}

pin_project_lite::pin_project! {
    /// The socket, noting when a head starts to arrive and whether hyper left bytes
    /// unflushed; hyper's own answer to a request it cannot parse goes out as the documented
    /// JSON.
    struct Watched {
        #[pin]
        io: TcpStream,
        conn: Arc<Conn>,
        // What replaced hyper's last write, and how much of it is written.
        rewritten: Option<(Vec<u8>, usize)>,
    }
}

/// Where in `buf` hyper's automatic answer to an unparsable request starts, and its status:
/// a status line of 400, 414 or 431 and no header but `Connection: close`, `Content-Length:
/// 0` and `Date`, at the end of the write (hyper closes the connection after it). The framing's answers always
/// carry a log id, so none of them looks like this.
fn automatic_answer(buf: &[u8]) -> Option<(usize, http::StatusCode)> {
    const LINE: &[u8] = b"HTTP/1.1 ";
    // It is under 100 bytes: only the end of a write is looked at, and only one that ends
    // a head (an answer's body, the common case, is passed over at once).
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let from = buf.len().saturating_sub(128);
    let at = from + buf[from..].windows(LINE.len()).rposition(|w| w == LINE)?;
    let head = std::str::from_utf8(&buf[at..])
        .ok()?
        .strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()?
        .get(LINE.len()..LINE.len() + 3)?
        .parse()
        .ok()?;
    let only_framing_headers = lines
        .all(|l| l == "Connection: close" || l == "Content-Length: 0" || l.starts_with("Date: "));
    let status = http::StatusCode::from_u16(status).ok()?;
    (only_framing_headers && [400, 414, 431].contains(&status.as_u16())).then_some((at, status))
}

/// The documented JSON answer in place of hyper's empty one.
fn json_answer(status: http::StatusCode) -> Vec<u8> {
    let message = match status.as_u16() {
        431 => format!("the request head exceeds {MAX_HEAD} bytes"),
        414 => "the request target is too long".to_string(),
        _ => "the request is not HTTP/1.1 that can be read".to_string(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let log_id = crate::logid::new_log_id(now);
    let err = crate::error::ApiError::new(exbind_api::ErrorCode::InvalidParameters)
        .status(status)
        .message(message)
        .into_body();
    let body = crate::http::error_json(err, &log_id);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nX-Tt-Logid: {log_id}\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default(),
        crate::http::JSON_UTF8,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

impl Watched {
    /// Writes what is left of a rewritten answer.
    fn poll_rewritten(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        while let Some((bytes, done)) = this.rewritten.as_mut() {
            match std::task::ready!(this.io.as_mut().poll_write(cx, &bytes[*done..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *done += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
            if *done == bytes.len() {
                *this.rewritten = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes a write that ends with hyper's automatic answer, in its JSON form.
    fn rewrite(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Option<Poll<io::Result<usize>>> {
        let (at, status) = automatic_answer(buf)?;
        let mut bytes = buf[..at].to_vec();
        bytes.extend_from_slice(&json_answer(status));
        *self.as_mut().project().rewritten = Some((bytes, 0));
        Some(match self.poll_rewritten(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // Taken whole; the rest goes out before anything else (flush, shutdown).
            _ => Poll::Ready(Ok(buf.len())),
        })
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if buf.filled().len() > before && this.conn.phase().0 == IDLE {
            this.conn.enter(HEAD);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.as_mut().poll_rewritten(cx))?;
        self.conn.unflushed.store(true, Ordering::Relaxed);
        if let Some(taken) = self.as_mut().rewrite(cx, buf) {
            return taken;
        }
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.as_mut().poll_rewritten(cx))?;
        self.conn.unflushed.store(true, Ordering::Relaxed);
        // The automatic answer is hyper's last slice.
        if bufs
            .iter()
            .rev()
            .find(|b| !b.is_empty())
            .is_some_and(|b| automatic_answer(b).is_some())
        {
            let whole: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if let Some(taken) = self.as_mut().rewrite(cx, &whole) {
                return taken;
            }
        }
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().poll_rewritten(cx))?;
        let this = self.project();
        let polled = this.io.poll_flush(cx);
        if polled.is_ready() {
            this.conn.unflushed.store(false, Ordering::Relaxed);
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().poll_rewritten(cx))?;
        self.project().io.poll_shutdown(cx)
    }
}

/// The framing, noting when a request is in progress.
struct Service {
    frame: Frame,
    conn: Arc<Conn>,
}

impl hyper::service::Service<http::Request<Incoming>> for Service {
    type Response = Response;
    type Error = Infallible;
    type Future = Answering<crate::http::Answer>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        self.conn.set(BUSY, 0);
        Answering {
            inner: self.frame.answer(req),
            conn: self.conn.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    struct Answering<F> {
        #[pin]
        inner: F,
        conn: Arc<Conn>,
    }
}

/// The answer is made: hyper writes it (unflushed until then), then waits for the next
/// request.
fn answered(conn: &Conn) {
    conn.unflushed.store(true, Ordering::Relaxed);
    conn.enter(IDLE);
}

impl<F> Future for Answering<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Ok(resp) = std::task::ready!(this.inner.poll(cx));
        if resp.body().size_hint().exact().is_some() {
            answered(this.conn);
            return Poll::Ready(Ok(resp));
        }
        // A stream (the event stream): the request is in progress until it ends.
        let conn = this.conn.clone();
        Poll::Ready(Ok(resp.map(|inner| {
            Body::new(Streaming {
                inner,
                conn,
                ended: false,
            })
        })))
    }
}

pin_project_lite::pin_project! {
    /// A streamed answer, which marks its connection answered when it ends.
    struct Streaming {
        #[pin]
        inner: Body,
        conn: Arc<Conn>,
        ended: bool,
    }

    impl PinnedDrop for Streaming {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.ended {
                answered(this.conn);
            }
        }
    }
}

impl HttpBody for Streaming {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, axum::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) && !*this.ended {
            *this.ended = true;
            answered(this.conn);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `listener` until `shutdown` resolves; then stops accepting, lets the requests in
/// progress finish (within `drain`), and closes every other connection at once.
pub async fn serve(
    listener: TcpListener,
    frame: Frame,
    limits: ConnLimits,
    metrics: ConnectionMetrics,
    drain: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let registry = Arc::new(Registry {
        started: Instant::now(),
        clock: Arc::default(),
        conns: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        draining: AtomicBool::new(false),
        emptied: Notify::new(),
        metrics,
    });
    // The sweeper's tick: a twentieth of the shortest timeout, within 10-250 ms. A
    // connection is closed between its timeout and two ticks after it.
    let slack = (limits.header_read.min(limits.idle) / 20)
        .clamp(Duration::from_millis(10), Duration::from_millis(250));
    let sweeper = tokio::spawn({
        let registry = registry.clone();
        async move {
            let mut every = tokio::time::interval(slack);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                registry.sweep(&limits, slack.as_millis() as u64);
            }
        }
    });
    let mut builder = http1::Builder::new();
    // A little more than the cap, so that a head just over it is read whole and gets the
    // framing's JSON answer; hyper answers a longer one itself (431, rewritten as JSON).
    // A client that shuts its sending side after the request (`nc -N`, say) still gets
    // its answer.
    builder
        .title_case_headers(true)
        .half_close(true)
        .max_buf_size(MAX_HEAD + 8 * 1024);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut shutdown = pin!(shutdown);
    loop {
        // At the cap, connections wait in the listen backlog until one closes.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("never closed"),
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (conn, deregister) = registry.add();
        let io = TokioIo::new(Watched {
            io: stream,
            conn: conn.clone(),
            rewritten: None,
        });
        let service = Service {
            frame: frame.clone(),
            conn: conn.clone(),
        };
        let http = builder.serve_connection(io, service);
        tokio::spawn(async move {
            let _held = (permit, deregister);
            let mut http = pin!(http);
            let mut graceful = false;
            poll_fn(|cx| {
                conn.waker.register(cx.waker());
                match conn.signal.load(Ordering::Acquire) {
                    CLOSE => return Poll::Ready(()),
                    GRACEFUL if !graceful => {
                        graceful = true;
                        http.as_mut().graceful_shutdown();
                    }
                    _ => {}
                }
                http.as_mut().poll(cx).map(|_| ())
            })
            .await;
        });
    }
    drop(listener);
    registry.drain();
    if tokio::time::timeout(drain, registry.drained())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish in time");
    }
    sweeper.abort();
}
