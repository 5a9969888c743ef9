//! Connection timeouts, nginx's three: reading a request's header
//! (`client_header_timeout`), an idle keep-alive connection
//! (`keepalive_timeout`) and a client that stops reading what we send
//! (`send_timeout`).
//!
//! hyper has only part of this. Its HTTP/1 `header_read_timeout` starts when
//! it *begins waiting* for the next request, so it is one budget for "idle,
//! then the header" and would cut idle keep-alive connections at the header
//! timeout; HTTP/2 has no header timeout; neither version has a send timeout.
//! So each connection gets:
//!
//! - a [`TimedIo`] around its I/O (plain, sendfile or TLS, HTTP/1 or 2): a
//!   write that stays pending for the send timeout fails the connection, and
//!   reads note when the next request's first byte arrives;
//! - a [`Tracked`] service, which counts the requests in flight (from the
//!   service call until the response body ends or is dropped);
//! - [`Activity::expired`], the watchdog the connection runs beside hyper:
//!   while no request is in flight, the connection must see its next
//!   request's first byte within the keep-alive timeout (the first request
//!   within `first_request`), and the whole header within the header timeout
//!   of that byte.
//!
//! On HTTP/2 "first byte" means any frame (a PING answer too): an idle h2
//! connection that exchanges pings is closed after the header timeout rather
//! than the keep-alive one.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::{Request, Response};
use tokio::time::{Instant, Sleep};

/// A connection's time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The first request's header must be complete within this of the
    /// connection being handed to hyper (after any TLS handshake).
    pub first_request: Duration,
    /// A header must be complete within this of its first byte.
    pub header: Duration,
    /// Between requests, the next one's first byte must arrive within this.
    pub keepalive: Duration,
    /// A write may stay pending (the client reads nothing) at most this long.
    pub send: Duration,
    /// An idle HTTP/1 connection on plain TCP is parked after this long
    /// (`connection::serve_http1`); zero: never.
    pub park: Duration,
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Expired {
    #[error("no request in time")]
    FirstRequest,
    #[error("header read timeout")]
    Header,
    #[error("idle keep-alive timeout")]
    Idle,
}

/// No byte read since the connection went idle.
const NONE: u64 = u64::MAX;

/// `at` rounded up to a multiple of a quarter of `after` (at least 1 ms)
/// counted from one instant for the whole process, so the park timers of
/// many connections come at a few instants rather than each at its own
/// (each instant a timer comes is a wake-up of the worker).
fn park_grid(at: Instant, after: Duration) -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    let step = (after / 4).max(Duration::from_millis(1)).as_nanos();
    let since = at.saturating_duration_since(origin).as_nanos();
    let up = since.div_ceil(step) * step;
    origin + Duration::from_nanos(u64::try_from(up).unwrap_or(u64::MAX))
}

/// What a connection's I/O, service and watchdog share. Times are
/// nanoseconds since `epoch`, so they fit in atomics: HTTP/2 runs each
/// request's service future on a task of its own.
///
/// Nothing wakes the watchdog when they change (that would cost the
/// connection's task an extra poll per request): it sleeps until the
/// earliest moment a deadline could fall, given what it last saw, and looks
/// again then.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// A request has started: the keep-alive limit applies from now on.
    served: AtomicBool,
    /// When the last request in flight ended (or the connection started).
    idle_since: AtomicU64,
    /// When the first byte after `idle_since` arrived, or [`NONE`].
    first_byte: AtomicU64,
    /// A write is pending (the client is not reading what was sent).
    writing: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(NONE),
            writing: AtomicBool::new(false),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(NONE - 1)
    }

    fn at(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }

    /// Bytes arrived from the client.
    pub(crate) fn read_bytes(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.first_byte.load(Ordering::Relaxed) == NONE
        {
            let _ = self.first_byte.compare_exchange(
                NONE,
                self.now(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// A request's header is complete and its service called.
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        self.served.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// When an idle connection may be parked: `after` past the end of its
    /// last request, rounded up to the park grid; none while it is not idle
    /// (nothing served yet, a request in flight, a write pending, a byte of
    /// the next request read).
    fn park_at(&self, after: Duration) -> Option<Instant> {
        let idle = self.served.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Relaxed) == 0
            && !self.writing.load(Ordering::Relaxed)
            && self.first_byte.load(Ordering::Relaxed) == NONE;
        idle.then(|| {
            park_grid(
                self.at(self.idle_since.load(Ordering::Relaxed)) + after,
                after,
            )
        })
    }

    /// Completes once the connection has served a request and then been idle
    /// for `after` (at most a quarter more, see [`park_grid`]): nothing in
    /// flight, nothing left to write, no byte of the next request.
    ///
    /// It must be polled whenever the connection's task is (HTTP/1 on one
    /// task: every change of this state happens in a poll of that task), and
    /// it costs a connection that keeps making requests no wake-up: each
    /// poll that finds the connection idle moves its timer to the new
    /// deadline, which is later than the one set, and tokio only records a
    /// later deadline (one atomic compare-and-swap; its timer wheel moves the
    /// entry when the old one comes, without waking the task). It was a
    /// timer that woke the task every `after` to look: 1,000 clients pausing
    /// 0.7 s at `after` 2 s cost ~1,500 more `epoll_wait` and hyper polls
    /// per 8,000 requests, and the timers firing at scattered instants each
    /// woke the worker (BENCHMARKS "Parking: the cause and the default").
    pub(crate) async fn idle_for(&self, after: Duration) {
        let first = self
            .park_at(after)
            .unwrap_or_else(|| park_grid(Instant::now() + after, after));
        let sleep = tokio::time::sleep_until(first);
        tokio::pin!(sleep);
        std::future::poll_fn(|cx| loop {
            let at = self.park_at(after);
            if let Some(at) = at {
                if at != sleep.deadline() {
                    sleep.as_mut().reset(at);
                }
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer came: idle long enough, or busy all along (a request
            // in flight for `after`, a slow write): look again `after` later.
            match at {
                Some(_) => return Poll::Ready(()),
                None => {
                    crate::stats::add(&crate::stats::get().park_checks, 1);
                    sleep
                        .as_mut()
                        .reset(park_grid(Instant::now() + after, after));
                }
            }
        })
        .await
    }

    /// The connection's next deadline and what passing it means; none while
    /// a request is in flight (then only the send timeout applies).
    fn deadline(&self, t: &Timeouts) -> Option<(Instant, Expired)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let idle = self.at(self.idle_since.load(Ordering::Relaxed));
        let first_byte = match self.first_byte.load(Ordering::Relaxed) {
            NONE => None,
            ns => Some(self.at(ns) + t.header),
        };
        let first_request = (idle + t.first_request, Expired::FirstRequest);
        Some(match (self.served.load(Ordering::Relaxed), first_byte) {
            (true, Some(header)) => (header, Expired::Header),
            (true, None) => (idle + t.keepalive, Expired::Idle),
            (false, Some(header)) if header < first_request.0 => (header, Expired::Header),
            (false, _) => first_request,
        })
    }

    /// Completes when the connection has outlived a deadline: the
    /// connection's owner then closes it.
    pub async fn expired(&self, t: &Timeouts) -> Expired {
        loop {
            let now = Instant::now();
            let deadline = self.deadline(t);
            if let Some((at, why)) = deadline {
                if at <= now {
                    return why;
                }
            }
            // Whatever happens next starts at `now` or later: a request
            // ending starts at least a header or keep-alive timeout, a first
            // byte at least a header timeout. Until the earliest of those,
            // only the deadline already known can pass.
            let soonest = now + t.header.min(t.keepalive);
            let wake = match deadline {
                None => soonest,
                // A header has started: later bytes change nothing.
                Some((at, Expired::Header)) => at,
                Some((at, _)) => at.min(soonest),
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// A request in flight; the connection goes idle when the last one drops.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            a.idle_since.store(a.now(), Ordering::Relaxed);
            a.first_byte.store(NONE, Ordering::Relaxed);
        }
    }
}

/// A connection's I/O with the send timeout, noting reads for the watchdog.
///
/// A hand-written wrapper because the I/O is hyper's `Read`/`Write` (the
/// sendfile path writes through its own `SendfileIo`, below tokio's traits),
/// where the timeout crates wrap tokio's.
pub struct TimedIo<I> {
    io: I,
    activity: Arc<Activity>,
    send: Duration,
    /// Runs while a write is pending; reset when one starts pending.
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl<I> TimedIo<I> {
    /// The wrapped I/O.
    pub(crate) fn get_mut(&mut self) -> &mut I {
        &mut self.io
    }

    pub fn new(io: I, activity: Arc<Activity>, send: Duration) -> TimedIo<I> {
        TimedIo {
            io,
            activity,
            send,
            timer: Box::pin(tokio::time::sleep(send)),
            armed: false,
        }
    }

    /// nginx's `send_timeout`: the time is between two successive writes
    /// that make progress, not for the whole response.
    fn guard<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            if self.armed {
                self.armed = false;
                self.activity.writing.store(false, Ordering::Relaxed);
            }
            return r;
        }
        if !self.armed {
            self.armed = true;
            self.activity.writing.store(true, Ordering::Relaxed);
            self.timer.as_mut().reset(Instant::now() + self.send);
        }
        ready!(self.timer.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "send timeout: the client read nothing for {} ms",
                self.send.as_millis()
            ),
        )))
    }
}

impl<I: Read + Unpin> Read for TimedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The inner I/O reads into a view of the same memory, so we see how
        // much it read (the cursor itself does not tell), as hyper-util's
        // TokioIo does.
        // SAFETY: `as_mut` is only handed to a ReadBuf, which never
        // de-initializes bytes; `advance(n)` covers exactly the `n` bytes
        // the inner read initialized and filled.
        let n = unsafe {
            let mut inner = hyper::rt::ReadBuf::uninit(buf.as_mut());
            ready!(Pin::new(&mut this.io).poll_read(cx, inner.unfilled()))?;
            inner.filled().len()
        };
        if n > 0 {
            unsafe { buf.advance(n) };
            this.activity.read_bytes();
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: Write + Unpin> Write for TimedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.guard(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.guard(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        // The zero-copy path depends on this staying what the inner I/O says.
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.guard(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.guard(cx, r)
    }
}

/// The same, for I/O spoken through tokio's traits (the HTTP/2 server's).
impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for TimedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.activity.read_bytes();
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for TimedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.guard(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.guard(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.guard(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.guard(cx, r)
    }
}

/// A connection's service, counting its requests in flight.
pub struct Tracked<S> {
    service: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub fn new(service: S, activity: Arc<Activity>) -> Tracked<S> {
        Tracked { service, activity }
    }
}

impl<S, R, B> hyper::service::Service<Request<R>> for Tracked<S>
where
    S: hyper::service::Service<Request<R>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, req: Request<R>) -> Self::Future {
        let guard = self.activity.request_started();
        TrackedFuture {
            future: self.service.call(req),
            guard: Some(guard),
        }
    }
}

pin_project_lite::pin_project! {
    /// The service's future; its guard moves into the response body.
    pub struct TrackedFuture<F> {
        #[pin]
        future: F,
        guard: Option<InFlight>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.future.poll(cx))?;
        let guard = this.guard.take();
        Poll::Ready(Ok(res.map(|body| TrackedBody { body, guard })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends its request's time in flight when it ends
    /// (or is dropped, if the connection fails first).
    pub struct TrackedBody<B> {
        #[pin]
        body: B,
        guard: Option<InFlight>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.body.poll_frame(cx));
        if frame.is_none() {
            this.guard.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        first_request: Duration::from_secs(10),
        header: Duration::from_secs(60),
        keepalive: Duration::from_secs(75),
        send: Duration::from_secs(60),
        park: Duration::ZERO,
    };

    fn reason(a: &Activity, t: &Timeouts) -> Option<Expired> {
        a.deadline(t).map(|(_, why)| why)
    }

    /// The limit a connection is held to in each of its states.
    #[tokio::test]
    async fn deadlines_follow_the_connection_state() {
        let a = Activity::new();
        assert_eq!(
            a.deadline(&T),
            Some((a.epoch + T.first_request, Expired::FirstRequest))
        );
        a.read_bytes();
        // The first request stays bounded by first_request, or by the header
        // timeout if that is shorter.
        assert_eq!(reason(&a, &T), Some(Expired::FirstRequest));
        let short_header = Timeouts {
            header: Duration::from_secs(1),
            ..T
        };
        assert_eq!(reason(&a, &short_header), Some(Expired::Header));
        let req = a.request_started();
        assert_eq!(reason(&a, &T), None, "only the send timeout in flight");
        a.read_bytes(); // a pipelined request's bytes, while in flight
        drop(req);
        let idle = a.at(a.idle_since.load(Ordering::Relaxed));
        assert_eq!(a.deadline(&T), Some((idle + T.keepalive, Expired::Idle)));
        a.read_bytes();
        let first = a.at(a.first_byte.load(Ordering::Relaxed));
        assert_eq!(a.deadline(&T), Some((first + T.header, Expired::Header)));
        tokio::time::sleep(Duration::from_millis(5)).await;
        a.read_bytes(); // later bytes do not extend the header's time
        assert_eq!(a.deadline(&T), Some((first + T.header, Expired::Header)));
    }

    #[tokio::test]
    async fn the_watchdog_fires_when_idle_and_not_while_in_flight() {
        let t = Timeouts {
            keepalive: Duration::from_millis(50),
            first_request: Duration::from_millis(50),
            ..T
        };
        let a = Activity::new();
        let req = a.request_started();
        let watch = tokio::spawn({
            let a = a.clone();
            async move { a.expired(&t).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!watch.is_finished(), "fired with a request in flight");
        drop(req);
        let start = Instant::now();
        assert_eq!(watch.await.unwrap(), Expired::Idle);
        assert!(start.elapsed() >= t.keepalive);
    }

    /// Unwoken, the watchdog still sees a header deadline that falls before
    /// the keep-alive one it was sleeping towards.
    #[tokio::test]
    async fn the_watchdog_sees_a_header_start_while_idle() {
        let t = Timeouts {
            header: Duration::from_millis(100),
            keepalive: Duration::from_secs(60),
            first_request: Duration::from_secs(60),
            ..T
        };
        let a = Activity::new();
        drop(a.request_started());
        let watch = tokio::spawn({
            let a = a.clone();
            async move { a.expired(&t).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        a.read_bytes();
        let start = Instant::now();
        let why = tokio::time::timeout(Duration::from_secs(10), watch).await;
        assert_eq!(why.unwrap().unwrap(), Expired::Header);
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
