//! One client connection, from accept to close: the TLS handshake (for the
//! TLS listener), telling HTTP/2 (its preface) from HTTP/1
//! ([`crate::preface`]), then HTTP/1 served by hyper or HTTP/2 by
//! [`crate::http2`] (the `h2` crate directly), both answering with the same
//! [`Sluice`] service, under the connection's timeouts
//! ([`crate::timeouts`]).
//!
//! Only a plain-TCP HTTP/1 request may take the zero-copy path: see
//! [`crate::transfer::Channel::for_request`], the one place that decides it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::http2;
use crate::http3;
use crate::preface::{self, Peeked, Rewind};
use crate::service::{Body, ConnectionInfo, Sluice};
use crate::stats;
use crate::timeouts::{Activity, TimedIo, Timeouts, Tracked};
use crate::tls::{Certificates, Served};
use crate::transfer::zerocopy::{SendfileIo, ZeroCopyLink};

/// The HTTP/1 connection builder, shared by all connections.
pub(crate) fn http1_builder() -> http1::Builder {
    let mut b = http1::Builder::new();
    // Queued (vectored) writes are what the zero-copy path relies on: see
    // transfer::zerocopy. Never turn them off here, and never enable
    // `pipeline_flush`: both switch hyper to its flattening writer, which
    // reads (copies) body chunks. (Over TLS they also save hyper a copy of
    // each chunk into its own buffer.)
    b.writev(true)
        .keep_alive(true)
        .timer(TokioTimer::new())
        // hyper's header timer starts when it begins waiting for a request,
        // so it would also cut idle keep-alive connections: the watchdog in
        // `run` keeps the two apart (crate::timeouts).
        .header_read_timeout(None);
    b
}

/// What a connection is handed when it is accepted.
pub(crate) struct Accepted {
    pub(crate) app: Arc<App>,
    pub(crate) http1: Arc<http1::Builder>,
    pub(crate) h2: http2::Settings,
    pub(crate) peer: SocketAddr,
    /// The TLS handshake, and then the first request, must each be done
    /// within `first_request` (a client that connects and stalls is
    /// closed); the other limits apply after.
    pub(crate) timeouts: Timeouts,
    /// Cancelled when the server shuts down: connections finish gracefully.
    pub(crate) closing: CancellationToken,
    /// The `Alt-Svc` value for responses on HTTPS connections over TCP,
    /// when HTTP/3 is on (see [`crate::listener::quic`]).
    pub(crate) alt_svc: Option<HeaderValue>,
}

/// One plain-TCP connection: HTTP/1 (zero-copy allowed) or h2c.
///
/// What a connection holds from accept until its first bytes arrive is this
/// future's state alone (the task is allocated at `spawn` with room for its
/// largest state): so the protocol's server is boxed in `run`, allocated only
/// once there is something to serve, and only for the protocol spoken. A test
/// below pins the sizes.
pub(crate) async fn plain(accepted: Accepted, mut tcp: TcpStream) {
    let activity = Activity::new();
    let told = within_first_request(&accepted, tell_plain(&mut tcp, &activity)).await;
    let Some((h2, prefix)) = told else {
        return;
    };
    let protocol: Protocol<SendfileIo, _> = if h2 {
        Protocol::Http2(Rewind::new(tcp, prefix))
    } else {
        let max_chunk = accepted.app.transfer.sendfile_max_chunk.0 as usize;
        let (io, link) = SendfileIo::with_prefix(tcp, max_chunk, prefix);
        Protocol::Http1(io, Some(link))
    };
    run(accepted, activity, protocol, false, None).await;
}

/// Whether a plain connection speaks HTTP/2, told from its first bytes
/// without taking them (see [`crate::preface`]); what had to be read to
/// tell (nothing, unless the client sent a part of the preface alone).
async fn tell_plain(tcp: &mut TcpStream, activity: &Activity) -> std::io::Result<(bool, Bytes)> {
    let (peeked, seen) = preface::peek(tcp).await?;
    if seen > 0 {
        activity.read_bytes();
    }
    match peeked {
        Peeked::Http1 => Ok((false, Bytes::new())),
        Peeked::Http2 => Ok((true, Bytes::new())),
        // Rare (a client that sends a part of the preface alone): boxed, so
        // that its state does not size every connection's task.
        Peeked::Undecided => Box::pin(preface::sniff(tcp)).await,
    }
}

/// Tells a connection's protocol from its first bytes (`tell`), within the
/// first-request timeout; `None` (and the connection is closed) if the
/// client fails or says too little in time.
///
/// Not `async`: the timeout future is awaited in the connection's own future,
/// which would otherwise hold `tell` twice (the argument and the copy moved
/// into the timeout).
fn within_first_request<F>(accepted: &Accepted, tell: F) -> FirstBytes<F>
where
    F: Future<Output = std::io::Result<(bool, Bytes)>>,
{
    let peer = accepted.peer;
    let told = tokio::time::timeout(accepted.timeouts.first_request, tell);
    FirstBytes { told, peer }
}

pin_project_lite::pin_project! {
    /// What [`within_first_request`] returns.
    struct FirstBytes<F> {
        #[pin]
        told: tokio::time::Timeout<F>,
        peer: SocketAddr,
    }
}

impl<F> Future for FirstBytes<F>
where
    F: Future<Output = std::io::Result<(bool, Bytes)>>,
{
    type Output = Option<(bool, Bytes)>;

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let peer = *this.peer;
        std::task::Poll::Ready(match std::task::ready!(this.told.poll(cx)) {
            Ok(Ok(told)) => Some(told),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "connection failed before its first request");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "no request in time; closing");
                None
            }
        })
    }
}

/// One TLS connection: the handshake (bounded in time), then HTTP/1.1 or
/// HTTP/2, always on the copying path.
pub(crate) async fn tls(
    accepted: Accepted,
    acceptor: TlsAcceptor,
    certs: Arc<Certificates>,
    tcp: TcpStream,
) {
    let activity = Activity::new();
    let (peer, limit) = (accepted.peer, accepted.timeouts.first_request);
    let mut stream = match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            // Plain HTTP to the TLS port lands here: rustls rejects the
            // bytes and the connection is closed.
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let session = stream.get_ref().1;
    let served = certs.served(session.server_name());
    // kTLS is not used (see `tls`): every TLS connection encrypts in user
    // space and takes the copying path; the access log names it per response.
    tracing::debug!(
        %peer,
        sni = session.server_name().unwrap_or("-"),
        alpn = ?session.alpn_protocol().map(String::from_utf8_lossy),
        "TLS established; copying path (no kTLS)"
    );
    // The client's first bytes say which HTTP it speaks (with ALPN `h2`,
    // its preface): nothing is sent to a client that has said nothing yet.
    let told = within_first_request(&accepted, async {
        let (h2, prefix) = preface::sniff(&mut stream).await?;
        if !prefix.is_empty() {
            activity.read_bytes();
        }
        Ok((h2, prefix))
    })
    .await;
    let Some((h2, prefix)) = told else {
        return;
    };
    let io = Rewind::new(stream, prefix);
    let protocol = if h2 {
        Protocol::Http2(io)
    } else {
        Protocol::Http1(TokioIo::new(io), None)
    };
    run(accepted, activity, protocol, true, served).await;
}

/// One QUIC connection (HTTP/3): the handshake (bounded in time, like the
/// TLS one; `handshaking` is held until it ends), then HTTP/3 requests
/// answered by the same service as HTTP/1 and HTTP/2, on the copying path,
/// held to the certificate the handshake chose (421), under the same
/// timeouts.
pub(crate) async fn quic<G: Send>(
    accepted: Accepted,
    incoming: quinn::Incoming,
    certs: Arc<Certificates>,
    settings: http3::Settings,
    handshaking: G,
) {
    let activity = Activity::new();
    let (peer, limit) = (accepted.peer, accepted.timeouts.first_request);
    let handshake = async { incoming.accept()?.await };
    let conn = match tokio::time::timeout(limit, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            stats::add(&stats::get().quic_handshake_failures, 1);
            tracing::debug!(%peer, error = %e, "QUIC handshake failed");
            return;
        }
        Err(_) => {
            stats::add(&stats::get().quic_handshake_failures, 1);
            tracing::debug!(%peer, "QUIC handshake timed out");
            return;
        }
    };
    drop(handshaking);
    stats::add(&stats::get().h3_connections, 1);
    let sni = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.server_name);
    let served = certs.served(sni.as_deref());
    tracing::debug!(%peer, sni = sni.as_deref().unwrap_or("-"), "QUIC established (HTTP/3)");
    let Accepted {
        app,
        timeouts,
        closing,
        ..
    } = accepted;
    let _open = stats::Connection::open();
    let share = app.body_budget.share(app.body_memory_per_connection);
    let answer = Sluice::from_app(app)
        .with_connection(ConnectionInfo {
            tls: true,
            peer: Some(peer),
            zero_copy: None,
        })
        .with_budget(share)
        .with_certificate(served.map(Arc::new));
    let connection = http3::serve(conn.clone(), answer, activity.clone(), settings, closing);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%peer, error = %error, "HTTP/3 connection ended with an error");
            }
        }
        why = activity.expired(&timeouts) => {
            tracing::debug!(%peer, "{why}; closing");
            // H3_NO_ERROR, as nginx closes an idle HTTP/3 connection.
            conn.close(quinn::VarInt::from_u32(0x100), b"");
        }
    }
}

/// A connection's I/O, by the protocol it speaks: hyper's I/O traits for
/// HTTP/1 (with the zero-copy link on plain TCP), tokio's for HTTP/2.
enum Protocol<H1, H2> {
    Http1(H1, Option<ZeroCopyLink>),
    Http2(H2),
}

/// Every request on a connection is answered by the service; on a TLS
/// connection it also checks the request's host against the connection's
/// certificate (421, see [`Served`] and `Sluice::with_certificate`).
///
/// Boxed: the request's future is large (a policy call, a lookup, a body
/// plan), and hyper and h2 move the future a service returns; a pointer
/// moves for less than the future's bytes (a profile of 304s at 32
/// connections showed the copies).
impl http2::Service for Sluice {
    fn call(&self, req: Request<()>) -> impl Future<Output = Response<Body>> + Send + 'static {
        Box::pin(self.handle(req))
    }
}

/// Serves a connection until it ends; closes it when it outlives one of its
/// timeouts, and shuts it down gracefully with the server.
///
/// Not `async` itself: it builds the serving future and boxes it, so the
/// future of the connection's task (`plain`, `tls`) holds one pointer for
/// all of this rather than room for it beside its own state (an `async fn`
/// that awaits another holds the callee's state in its own).
fn run<H1, H2>(
    accepted: Accepted,
    activity: Arc<Activity>,
    protocol: Protocol<H1, H2>,
    tls: bool,
    served: Option<Served>,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    H1: Parking,
    H2: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Accepted {
        app,
        http1,
        h2,
        peer,
        timeouts,
        closing,
        alt_svc,
    } = accepted;
    let open = stats::Connection::open();
    let link = match &protocol {
        Protocol::Http1(_, link) => link.clone(),
        Protocol::Http2(_) => None,
    };
    let share = app.body_budget.share(app.body_memory_per_connection);
    let answer = Sluice::from_app(app)
        .with_connection(ConnectionInfo {
            tls,
            peer: Some(peer),
            zero_copy: link,
        })
        .with_budget(share)
        .with_certificate(served.map(Arc::new))
        .with_alt_svc(alt_svc.filter(|_| tls));
    // Boxed, and only the arm taken: an HTTP/1 connection does not carry
    // room for an HTTP/2 server's state, nor the reverse.
    let connection: Serving = match protocol {
        Protocol::Http1(io, _) => Box::pin(serve_http1(
            io,
            answer,
            http1,
            activity.clone(),
            timeouts,
            closing,
        )),
        Protocol::Http2(io) => Box::pin(serve_http2(
            io,
            answer,
            h2,
            activity.clone(),
            timeouts,
            closing,
        )),
    };
    Box::pin(watch(connection, activity, timeouts, peer, tls, open))
}

/// A connection's protocol server, boxed (see `run`).
type Serving = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Runs `connection` beside its watchdog, until either ends.
async fn watch(
    connection: Serving,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    peer: SocketAddr,
    tls: bool,
    _open: stats::Connection,
) {
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%peer, tls, error, "connection ended with an error");
            }
        }
        why = activity.expired(&timeouts) => {
            tracing::debug!(%peer, tls, "{why}; closing");
        }
    }
}

/// An HTTP/1 connection's I/O, and whether hyper can be let go of while the
/// connection is idle.
pub(crate) trait Parking:
    hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static
{
    /// Whether [`serve_http1`] parks idle connections on this I/O.
    const PARKS: bool;

    /// Waits for the client's next bytes, taking nothing: how many are
    /// there (0: the client closed).
    fn next_bytes(&self) -> impl Future<Output = std::io::Result<usize>> + Send + '_;

    /// Puts back bytes read but not used: the next reads return them first.
    fn unread(&mut self, bytes: Bytes);
}

/// Plain TCP: parked.
impl Parking for SendfileIo {
    const PARKS: bool = true;

    fn next_bytes(&self) -> impl Future<Output = std::io::Result<usize>> + Send + '_ {
        self.peek()
    }

    fn unread(&mut self, bytes: Bytes) {
        SendfileIo::unread(self, bytes);
    }
}

/// TLS: never parked. The decrypted stream cannot be peeked (rustls may hold
/// plaintext already read), and a TLS connection holds rustls' buffers
/// anyway.
impl<I: AsyncRead + AsyncWrite + Unpin + Send + 'static> Parking for TokioIo<Rewind<I>> {
    const PARKS: bool = false;

    fn next_bytes(&self) -> impl Future<Output = std::io::Result<usize>> + Send + '_ {
        std::future::pending()
    }

    fn unread(&mut self, _: Bytes) {
        unreachable!("TLS connections are not parked")
    }
}

/// HTTP/1 by hyper, until the connection ends (gracefully at shutdown).
///
/// hyper holds an 8 KiB read buffer, an 8 KiB write buffer and a header map
/// for a connection's whole life, and has no setting to release them. So an
/// idle connection on plain TCP is *parked*: once it has been idle for
/// `park-idle-ms` (`Timeouts::park`) (a request served, nothing in flight, nothing left to
/// write, no byte of the next request), hyper is asked to close it
/// gracefully *without shutting the socket down*, which for an idle
/// connection writes nothing (a response in progress would get `connection:
/// close`, which is why nothing may be in flight or unwritten: hyper's own
/// state is then idle too, since this task also runs hyper and is not
/// polling it meanwhile); the socket and whatever hyper had read but not
/// used (pipelined bytes) come back, hyper's state is dropped, and the
/// connection waits for its next bytes with a peek. They start a new hyper
/// connection on the same socket, which reads them first. The client sees
/// the same bytes as without parking; the timeouts are the watchdog's and
/// do not change.
async fn serve_http1<H1: Parking>(
    io: H1,
    answer: Sluice,
    http1: Arc<http1::Builder>,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    closing: CancellationToken,
) -> Result<(), String> {
    let mut io = TimedIo::new(io, activity.clone(), timeouts.send);
    loop {
        // Sluice's own hyper service: its future is boxed, as for HTTP/2
        // (see `http2::Service for Sluice`), and so `Unpin`, as parking
        // needs (`poll_without_shutdown`).
        let service = Tracked::new(answer.clone(), activity.clone());
        // Boxed: a parked connection's future holds none of hyper's state.
        let mut conn = Box::pin(http1.serve_connection(io, service));
        let idle = async {
            // `park-idle-ms`: long enough that a client pausing briefly
            // between requests is not parked (a parked connection's next
            // request builds hyper's state again: two 8 KiB buffers and a
            // header map, ~13 µs of CPU measured), short enough that idle
            // connections (most of them, at any time, on a busy server) hold
            // a few hundred bytes rather than hyper's ~17 KiB. A connection
            // that keeps making requests is never woken by it (`idle_for`).
            if H1::PARKS && !timeouts.park.is_zero() {
                activity.idle_for(timeouts.park).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            biased;
            result = conn.as_mut() => return result.map_err(|e| describe(&e)),
            () = closing.cancelled() => {
                conn.as_mut().graceful_shutdown();
                return conn.await.map_err(|e| describe(&e));
            }
            () = idle => {}
        }
        // Idle: hyper closes without a byte written and hands the socket back.
        conn.as_mut().graceful_shutdown();
        std::future::poll_fn(|cx| conn.poll_without_shutdown(cx))
            .await
            .map_err(|e| describe(&e))?;
        // Everything but the socket and the unused bytes is dropped here,
        // before waiting (hyper's read buffer comes back as `read_buf`,
        // with its 8 KiB capacity even when empty).
        let hyper::server::conn::http1::Parts {
            io: back, read_buf, ..
        } = Pin::into_inner(conn).into_parts();
        io = back;
        if !read_buf.is_empty() {
            io.get_mut().unread(read_buf);
            continue;
        }
        drop(read_buf);
        stats::add(&stats::get().parked_connections, 1);
        tokio::select! {
            biased;
            () = closing.cancelled() => return Ok(()),
            seen = io.get_mut().next_bytes() => match seen {
                Ok(0) => return Ok(()),
                Ok(_) => activity.read_bytes(),
                Err(e) => return Err(describe(&e)),
            },
        }
    }
}

/// HTTP/2 by [`http2::serve`], until the connection ends.
async fn serve_http2<H2>(
    io: H2,
    answer: Sluice,
    h2: http2::Settings,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    closing: CancellationToken,
) -> Result<(), String>
where
    H2: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TimedIo::new(io, activity.clone(), timeouts.send);
    http2::serve(io, answer, activity, h2, closing)
        .await
        .map_err(|e| describe(&e))
}

/// An error with its causes (hyper's errors name the step; the cause, a
/// send timeout say, is in their sources).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut error = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        error = format!("{error}: {c}");
        cause = c.source();
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::Channel;
    use http::Version;
    use tokio::net::TcpListener;

    /// The size of the future `f` returns, without calling it.
    macro_rules! future_size {
        ($f:expr, $($arg:ty),*) => {{
            fn size<F: Future, C: Fn($($arg),*) -> F>(_: &C) -> usize {
                std::mem::size_of::<F>()
            }
            size(&$f)
        }};
    }

    /// What an idle plain connection holds besides hyper's buffers: the
    /// task (the `plain` future, all a connection that has sent nothing
    /// costs), the boxed `run` and the boxed protocol server. They grew to
    /// 10.6 KiB inline once (every arm's state in the task); a bound broken
    /// here is memory multiplied by every open connection.
    #[test]
    fn an_idle_connection_holds_small_futures() {
        let plain = future_size!(plain, Accepted, TcpStream);
        let watch = future_size!(
            watch,
            Serving,
            Arc<Activity>,
            Timeouts,
            SocketAddr,
            bool,
            stats::Connection
        );
        let http1 = future_size!(
            serve_http1::<SendfileIo>,
            SendfileIo,
            Sluice,
            Arc<http1::Builder>,
            Arc<Activity>,
            Timeouts,
            CancellationToken
        );
        let http2 = future_size!(
            serve_http2::<Rewind<TcpStream>>,
            Rewind<TcpStream>,
            Sluice,
            http2::Settings,
            Arc<Activity>,
            Timeouts,
            CancellationToken
        );
        eprintln!("plain {plain} B, watch {watch} B, http1 {http1} B, http2 {http2} B");
        assert!(plain <= 1024, "plain's future is {plain} bytes");
        assert!(watch <= 512, "watch's future is {watch} bytes");
        assert!(http1 <= 1536, "serve_http1's future is {http1} bytes");
    }

    /// Zero-copy only for HTTP/1 on plain TCP: h2c shares the plain
    /// connection (and its link) but must never get it, nor may TLS (no link).
    #[tokio::test]
    async fn only_plain_http1_gets_zero_copy() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_io, link) = SendfileIo::new(tcp, 1 << 20);
        for v in [Version::HTTP_10, Version::HTTP_11] {
            assert!(Channel::for_request(Some(&link), v).zero_copy.is_some());
            assert!(Channel::for_request(None, v).zero_copy.is_none());
        }
        for v in [Version::HTTP_09, Version::HTTP_2, Version::HTTP_3] {
            assert!(Channel::for_request(Some(&link), v).zero_copy.is_none());
        }
    }
}
