//! HTTP/2 connections, served with the `h2` crate directly.
//!
//! hyper's own HTTP/2 server, which sluice used before, polls a response
//! body for its next chunk *before* the stream has any send capacity for it
//! (hyper#4003), then holds the chunk while it waits for a window: a client
//! that opens 128 streams per connection with `SETTINGS_INITIAL_WINDOW_SIZE`
//! 0, reads the socket and grants nothing, had the server hold two chunks
//! per stream, on every connection, for as long as it kept the connection
//! alive (+1.3 GiB with 40 connections). Here each stream asks first:
//!
//! 1. it reserves capacity for its next chunk and waits until the client's
//!    windows (the stream's and the connection's) grant some — for at most
//!    the send timeout, after which the stream is reset (`CANCEL`), however
//!    lively the rest of the connection is (pings, window updates on other
//!    streams);
//! 2. only then it reads at most what was granted (`Body::poll_chunk`), each
//!    chunk charged to the host-wide body budget (`transfer::budget`);
//! 3. it hands the chunk to h2, which frames it out as the socket takes it.
//!
//! So a stream holds body bytes only while they can leave; per connection at
//! most `MAX_STREAMS` x one chunk is queued in h2 (a client that grants
//! windows but stops reading the socket is cut by the connection's send
//! timeout), and all connections together at most `[limits] body-memory`.
//!
//! Everything else hyper's server did for sluice is here too: requests go to
//! the same service as HTTP/1 ([`crate::connection`]), a client's `RST_STREAM`
//! cancels the stream's work, responses get a `Date`, the connection sends
//! keep-alive pings while streams are open (a peer that vanished is noticed
//! within about 50 s), `GOAWAY` on graceful shutdown, and the h2 crate's
//! protections against the classic floods stay on (rapid reset, resets a
//! client makes the server send, CONTINUATION and HPACK floods via the
//! header-list limit, PING and SETTINGS floods: see the e2e tests in
//! `tests/e2e/h2_attacks.rs`).

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use h2::server::{Connection, SendResponse};
use h2::{Ping, PingPong, Reason, RecvStream, SendStream};
use http::{Request, Response};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::service::Body;
use crate::stats;
use crate::timeouts::Activity;

mod coalesce;
pub use coalesce::Coalesce;

/// Concurrent HTTP/2 streams per connection (nginx's
/// `http2_max_concurrent_streams` default).
pub const MAX_STREAMS: u32 = 128;

/// Largest header list a client may send (the decoded header block: HPACK
/// and CONTINUATION floods are cut here), hyper's and nginx's 16 KiB.
pub const MAX_HEADER_LIST: u32 = 16 << 10;

/// How often a connection with open streams pings its peer, and how long
/// the answer may take before the connection is closed (hyper's settings,
/// which sluice had: a peer that vanished mid-download is noticed).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// What every HTTP/2 connection is configured with.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The largest chunk a stream reads at once (the policy's chunk size is
    /// the copying path's; h2 frames it anyway).
    pub chunk: u32,
    /// A stream granted no window for this long is reset; also the
    /// connection's send timeout (in `TimedIo`).
    pub send_timeout: Duration,
}

impl Settings {
    /// The h2 server builder every connection is made with (public for
    /// the floor example, `host/examples/h2_floor.rs`).
    pub fn builder(&self) -> h2::server::Builder {
        let mut b = h2::server::Builder::new();
        b.max_concurrent_streams(MAX_STREAMS)
            // What we accept from the client (request frames); the frames
            // we send are sized by the client's own SETTINGS_MAX_FRAME_SIZE.
            .max_frame_size(64 << 10)
            // Receive windows only bound request bodies, which a file server
            // does not read: small (memory per connection).
            .initial_window_size(64 << 10)
            .initial_connection_window_size(1 << 20)
            .max_header_list_size(MAX_HEADER_LIST)
            // One chunk may sit queued in h2 per stream (it holds our Bytes,
            // no copy): what a stream was granted and has read.
            .max_send_buffer_size(self.chunk as usize)
            // hyper's setting: a client that makes the server reset more
            // than this many streams (invalid frames) is sent GOAWAY.
            .max_local_error_reset_streams(Some(1024));
        b
    }
}

/// The request side of one HTTP/2 connection: answers a request with the
/// service's response (the same as HTTP/1's).
pub trait Service: Clone + Send + Sync + 'static {
    fn call(&self, req: Request<()>) -> impl Future<Output = Response<Body>> + Send + 'static;
}

/// Serves one HTTP/2 connection (after any TLS handshake) until the client
/// closes it, an error ends it, or, once `shutdown` is cancelled, its
/// streams in flight have finished (`GOAWAY` first).
pub async fn serve<I, S>(
    io: I,
    service: S,
    activity: Arc<Activity>,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<(), h2::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service,
{
    // Writes gathered per batch of frames (one TLS record and one system
    // call for several small responses): see `coalesce`.
    let io = Coalesce::new(io);
    let mut conn: Connection<_, Bytes> = settings.builder().handshake(io).await?;
    let mut keepalive = Keepalive::new(conn.ping_pong());
    let mut closing = false;
    loop {
        let accepted = {
            let accept = conn.accept();
            let mut accept = pin!(accept);
            let shutdown = shutdown.cancelled();
            let mut shutdown = pin!(shutdown);
            poll_fn(|cx| {
                if !closing && shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Shutdown);
                }
                if let Poll::Ready(dead) = keepalive.poll(cx) {
                    return Poll::Ready(Event::PeerGone(dead));
                }
                accept
                    .as_mut()
                    .poll(cx)
                    .map(|a| Event::Accepted(a.map(|r| r.map(Box::new))))
            })
            .await
        };
        match accepted {
            Event::Shutdown => {
                closing = true;
                conn.graceful_shutdown();
            }
            Event::PeerGone(reason) => {
                tracing::debug!(reason, "HTTP/2 peer did not answer a ping; closing");
                conn.abrupt_shutdown(Reason::NO_ERROR);
                // Flush the GOAWAY, bounded: the peer may be gone.
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    poll_fn(|cx| conn.poll_closed(cx)),
                )
                .await;
                return Ok(());
            }
            Event::Accepted(None) => return Ok(()),
            Event::Accepted(Some(Err(e))) => return Err(e),
            Event::Accepted(Some(Ok(accepted))) => {
                let (req, respond) = *accepted;
                let stream = Stream {
                    service: service.clone(),
                    activity: activity.clone(),
                    settings,
                    _open: keepalive.stream_opened(),
                };
                tokio::spawn(stream.run(req, respond));
            }
        }
    }
}

/// A request stream the connection accepted.
type Accepted = (Request<RecvStream>, SendResponse<Bytes>);

enum Event {
    Shutdown,
    PeerGone(&'static str),
    Accepted(Option<Result<Box<Accepted>, h2::Error>>),
}

/// Pings the peer while streams are open; completes when it stops
/// answering.
struct Keepalive {
    ping: Option<PingPong>,
    /// Streams open now (their tasks count themselves).
    open: Arc<AtomicUsize>,
    /// When the next ping is due, or when the outstanding one expires.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    waiting: bool,
}

/// A stream counted in [`Keepalive::open`] until it ends.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Keepalive {
    fn new(ping: Option<PingPong>) -> Keepalive {
        Keepalive {
            ping,
            open: Arc::default(),
            timer: Box::pin(tokio::time::sleep(KEEPALIVE_INTERVAL)),
            waiting: false,
        }
    }

    fn stream_opened(&self) -> Open {
        self.open.fetch_add(1, Ordering::Relaxed);
        Open(self.open.clone())
    }

    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<&'static str> {
        let Some(ping) = &mut self.ping else {
            return Poll::Pending;
        };
        loop {
            if self.waiting {
                match ping.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        self.waiting = false;
                        self.timer
                            .as_mut()
                            .reset(Instant::now() + KEEPALIVE_INTERVAL);
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready("ping failed"),
                    Poll::Pending => {}
                }
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if self.waiting {
                return Poll::Ready("no answer to a ping");
            }
            if self.open.load(Ordering::Relaxed) == 0 {
                // Idle: nothing to keep alive (the keep-alive timeout
                // applies); look again later.
                self.timer
                    .as_mut()
                    .reset(Instant::now() + KEEPALIVE_INTERVAL);
                continue;
            }
            if ping.send_ping(Ping::opaque()).is_err() {
                return Poll::Ready("cannot send a ping");
            }
            self.waiting = true;
            self.timer
                .as_mut()
                .reset(Instant::now() + KEEPALIVE_TIMEOUT);
        }
    }
}

/// One stream: the request's answer, then its body as the windows allow.
struct Stream<S> {
    service: S,
    activity: Arc<Activity>,
    settings: Settings,
    _open: Open,
}

/// Why a stream ended early (for the debug log).
#[derive(Debug)]
enum Ended {
    /// The client reset it (or the connection went).
    Reset,
    /// No window for the send timeout: reset by us.
    Stalled,
    /// The body failed (a file that shrank): reset by us.
    Body,
}

impl<S: Service> Stream<S> {
    async fn run(self, req: Request<RecvStream>, mut respond: SendResponse<Bytes>) {
        // The request is in flight (for the connection's timeouts) until its
        // body has ended or the stream is gone.
        let _in_flight = self.activity.request_started();
        // A static server reads no request body: dropping it releases its
        // flow-control capacity back to the connection.
        let (parts, _body) = req.into_parts();
        let answer = self.service.call(Request::from_parts(parts, ()));
        let mut answer = pin!(answer);
        let res = poll_fn(|cx| {
            if respond.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            answer.as_mut().poll(cx).map(Some)
        })
        .await;
        let Some(res) = res else {
            return; // reset by the client before we answered
        };
        let (mut parts, mut body) = res.into_parts();
        parts
            .headers
            .entry(http::header::DATE)
            .or_insert_with(crate::date::now);
        let end = body.is_end_stream();
        let Ok(mut send) = respond.send_response(Response::from_parts(parts, ()), end) else {
            return;
        };
        if end {
            return;
        }
        if let Err(why) = self.send_body(&mut send, &mut body).await {
            tracing::debug!(?why, "HTTP/2 stream ended early");
        }
    }

    /// Sends `body` on `send`, reading each chunk only once the windows
    /// grant room for it.
    async fn send_body(&self, send: &mut SendStream<Bytes>, body: &mut Body) -> Result<(), Ended> {
        loop {
            let want = body.next_chunk_size(self.settings.chunk);
            send.reserve_capacity(want as usize);
            let granted = match send.capacity() {
                0 => {
                    // Waiting on the client: hold no body memory meanwhile
                    // (streams holding buffers while waiting for windows,
                    // and streams holding windows while waiting for budget,
                    // would wait on each other).
                    body.release_kept();
                    self.granted(send).await?
                }
                n => n,
            };
            let chunk = poll_fn(|cx| {
                if send.poll_reset(cx).is_ready() {
                    return Poll::Ready(Err(Ended::Reset));
                }
                body.poll_chunk(cx, granted).map(Ok)
            })
            .await?;
            match chunk {
                None => {
                    send.reserve_capacity(0);
                    return send.send_data(Bytes::new(), true).map_err(|_| Ended::Reset);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "HTTP/2 body failed; resetting the stream");
                    send.send_reset(Reason::INTERNAL_ERROR);
                    return Err(Ended::Body);
                }
                Some(Ok(bytes)) => {
                    let end = body.is_end_stream();
                    send.send_data(bytes, end).map_err(|_| Ended::Reset)?;
                    if end {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Waits until the stream is granted send capacity; resets it if that
    /// takes longer than the send timeout.
    async fn granted(&self, send: &mut SendStream<Bytes>) -> Result<usize, Ended> {
        let waited = tokio::time::timeout(
            self.settings.send_timeout,
            poll_fn(|cx| loop {
                if send.poll_reset(cx).is_ready() {
                    return Poll::Ready(Err(Ended::Reset));
                }
                match send.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(0))) => continue,
                    Poll::Ready(Some(Ok(n))) => return Poll::Ready(Ok(n)),
                    Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(Err(Ended::Reset)),
                    Poll::Pending => return Poll::Pending,
                }
            }),
        )
        .await;
        match waited {
            Ok(granted) => granted,
            Err(_) => {
                stats::add(&stats::get().h2_streams_stalled, 1);
                send.send_reset(Reason::CANCEL);
                Err(Ended::Stalled)
            }
        }
    }
}
