//! Listening, accepting, and serving each connection.
//!
//! Two listeners may run side by side: plain TCP (HTTP/1.1, and HTTP/2 with
//! prior knowledge, "h2c") and TLS (HTTP/1.1 or HTTP/2 by ALPN, certificate
//! by SNI: see [`crate::tls`]). A connection's first bytes tell HTTP/2 (its
//! preface) from HTTP/1 ([`crate::preface`]); HTTP/1 is served by hyper,
//! HTTP/2 by [`crate::http2`] (the `h2` crate directly), both answering
//! with the same [`Sluice`] service.
//!
//! Only a plain-TCP HTTP/1 request may take the zero-copy path: see
//! [`crate::transfer::Channel::for_request`], the one place that decides it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http2;
use crate::preface::{self, Rewind};
use crate::serve::{self, App};
use crate::service::{self, Body, ConnectionInfo, Sluice};
use crate::stats;
use crate::timeouts::{Activity, TimedIo, Timeouts, Tracked};
use crate::tls::{self, Certificates, Served};
use crate::transfer::zerocopy::{SendfileIo, ZeroCopyLink};

/// Concurrent HTTP/2 streams per connection (see [`http2::MAX_STREAMS`]).
pub const H2_MAX_STREAMS: u32 = http2::MAX_STREAMS;

/// The TLS listener and the certificates it serves (which a reload may
/// replace while it runs).
pub type TlsListener = (TcpListener, Arc<Certificates>);

/// What every client connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// The header, keep-alive and send timeouts; `first_request` also bounds
    /// the TLS handshake.
    pub timeouts: Timeouts,
    /// Connections open at once, both listeners together; at the cap,
    /// accepting pauses until one closes.
    pub max_connections: usize,
}

/// Accepts connections on the plain listener and, if given, the TLS one,
/// until `shutdown` completes (and sweeps the open-file caches once a
/// second, so descriptors of files no one asks for are closed). Connections
/// are held to `limits` (see [`crate::timeouts`]).
///
/// Shutdown is graceful: the listeners close at once (new connections are
/// refused), idle keep-alive connections are closed, HTTP/2 connections get
/// `GOAWAY`, and responses in flight may finish for up to `grace`; whatever
/// is left then is closed when this returns.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<TlsListener>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let sweeper = tokio::spawn(Sluice::from_app(app.clone()).housekeeping());
    let http1 = Arc::new(http1_builder());
    let h2 = http2::Settings {
        chunk: app.transfer.chunk_default.0.clamp(16 << 10, 8 << 20) as u32,
        send_timeout: limits.timeouts.send,
    };
    let closing = CancellationToken::new();
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    stats::get()
        .max_connections
        .store(limits.max_connections as u64, Ordering::Relaxed);
    {
        let accepted = |peer| Accepted {
            app: app.clone(),
            http1: http1.clone(),
            h2,
            peer,
            timeouts: limits.timeouts,
            closing: closing.clone(),
        };
        let release = || app.release_descriptors();
        let plain = accept_loop(listener, &slots, &connections, release, |tcp, peer| {
            plain_connection(accepted(peer), tcp)
        });
        let secure = async {
            match tls {
                Some((tls_listener, certs)) => {
                    let acceptor = TlsAcceptor::from(tls::server_config(certs.clone()));
                    accept_loop(tls_listener, &slots, &connections, release, |tcp, peer| {
                        tls_connection(accepted(peer), acceptor.clone(), certs.clone(), tcp)
                    })
                    .await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = plain => {}
            () = secure => {}
            () = shutdown => {}
        }
        // Leaving this block drops the accept loops and their listeners.
    }
    tracing::info!(
        connections = connections.len(),
        grace = ?grace,
        "shutting down: no new connections; letting responses in flight finish"
    );
    closing.cancel();
    connections.close();
    match tokio::time::timeout(grace, connections.wait()).await {
        Ok(()) => tracing::info!("every connection closed; exiting"),
        Err(_) => tracing::warn!("grace period over; closing the connections still open"),
    }
    sweeper.abort();
    Ok(())
}

/// Accepts connections; each holds one of `slots` until it closes.
///
/// At the cap (every slot taken) the loop holds the connection it has just
/// accepted, unanswered, until a slot frees, and accepts nothing more
/// meanwhile (nginx's `worker_connections` also stops accepting): further
/// clients wait in the kernel's listen queue, connected but unanswered, and
/// are served in turn; past the queue's length the kernel drops their SYNs
/// and they retry. Accepting to close (or to answer 503) would spend a
/// descriptor and a write on every excess client just when the server is
/// busiest. The slot is taken after `accept`, not before, so that with two
/// listeners a freed slot goes to a client that is waiting, not to a loop
/// blocked in `accept` on a quiet listener.
///
/// When `accept` fails for want of a descriptor (the connection cap leaves
/// room for two per connection, but HTTP/2 streams each hold their file),
/// `release` makes the open-file caches give back theirs, and the listener
/// pauses (see [`AcceptPause`]): the pending client stays queued and is
/// accepted once a descriptor is free, and the loop does not spin meanwhile.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    slots: &Arc<Semaphore>,
    connections: &TaskTracker,
    release: impl Fn() -> u64,
    mut spawn: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut pause = AcceptPause::default();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                let released = if AcceptPause::out_of_descriptors(&e) {
                    release()
                } else {
                    0
                };
                pause.failed(&e, released).await;
                continue;
            }
        };
        pause.accepted();
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                stats::add(&stats::get().connection_cap_waits, 1);
                tracing::debug!(%peer, "max-connections reached: waiting for a connection to close");
                slots.clone().acquire_owned().await.expect("never closed")
            }
        };
        let _ = tcp.set_nodelay(true);
        let connection = spawn(tcp, peer);
        connections.spawn(async move {
            connection.await;
            drop(slot);
        });
    }
}

/// A listener's run of failed `accept`s and the pause it earns: 10 ms after
/// the first, doubling to at most 0.5 s (nginx disables accepting for
/// 0.5 s), so a process out of descriptors retries a few times a second
/// rather than spinning on a listener that stays readable. Logged once per
/// run (a warning), and again when accepting resumes.
#[derive(Default)]
pub(crate) struct AcceptPause {
    failures: u32,
}

impl AcceptPause {
    const FIRST: Duration = Duration::from_millis(10);
    const MOST: Duration = Duration::from_millis(500);

    /// EMFILE or ENFILE.
    pub(crate) fn out_of_descriptors(e: &std::io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
                || code == rustix::io::Errno::NFILE.raw_os_error()
        )
    }

    /// Counts and logs a failure, then waits.
    pub(crate) async fn failed(&mut self, e: &std::io::Error, released: u64) {
        stats::add(&stats::get().accept_errors, 1);
        if self.failures == 0 {
            tracing::warn!(
                error = %e,
                released_cached_descriptors = released,
                "accept failed: pausing the listener until it succeeds (logged once)"
            );
        } else {
            tracing::debug!(error = %e, failures = self.failures, "accept failed again");
        }
        let wait = Self::FIRST
            .saturating_mul(1 << self.failures.min(16))
            .min(Self::MOST);
        self.failures = self.failures.saturating_add(1);
        tokio::time::sleep(wait).await;
    }

    /// Ends a run of failures.
    pub(crate) fn accepted(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accepting again");
            self.failures = 0;
        }
    }
}

/// The HTTP/1 connection builder, shared by all connections.
fn http1_builder() -> http1::Builder {
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
struct Accepted {
    app: Arc<App>,
    http1: Arc<http1::Builder>,
    h2: http2::Settings,
    peer: SocketAddr,
    /// The TLS handshake, and then the first request, must each be done
    /// within `first_request` (a client that connects and stalls is
    /// closed); the other limits apply after.
    timeouts: Timeouts,
    /// Cancelled when the server shuts down: connections finish gracefully.
    closing: CancellationToken,
}

/// One plain-TCP connection: HTTP/1 (zero-copy allowed) or h2c.
async fn plain_connection(accepted: Accepted, mut tcp: TcpStream) {
    let activity = Activity::new();
    let Some((h2, prefix)) = sniff(&accepted, &activity, &mut tcp).await else {
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

/// Reads a connection's first bytes, within the first-request timeout:
/// whether it speaks HTTP/2, and what was read.
async fn sniff<I: AsyncRead + Unpin>(
    accepted: &Accepted,
    activity: &Activity,
    io: &mut I,
) -> Option<(bool, bytes::Bytes)> {
    let peer = accepted.peer;
    match tokio::time::timeout(accepted.timeouts.first_request, preface::sniff(io)).await {
        Ok(Ok((h2, prefix))) => {
            if !prefix.is_empty() {
                activity.read_bytes();
            }
            Some((h2, prefix))
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "connection failed before its first request");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "no request in time; closing");
            None
        }
    }
}

/// One TLS connection: the handshake (bounded in time), then HTTP/1.1 or
/// HTTP/2, always on the copying path.
async fn tls_connection(
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
    let Some((h2, prefix)) = sniff(&accepted, &activity, &mut stream).await else {
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

/// A connection's I/O, by the protocol it speaks: hyper's I/O traits for
/// HTTP/1 (with the zero-copy link on plain TCP), tokio's for HTTP/2.
enum Protocol<H1, H2> {
    Http1(H1, Option<ZeroCopyLink>),
    Http2(H2),
}

/// What every request on a connection is answered by: the service, except
/// that a request on a TLS connection whose certificate is not its host's
/// is answered 421 (see [`Served`]).
#[derive(Clone)]
struct Answer {
    sluice: Sluice,
    served: Option<Arc<Served>>,
    peer: SocketAddr,
}

impl Answer {
    fn answer<B>(&self, req: Request<B>) -> impl Future<Output = Response<Body>> + Send + 'static {
        let misdirected = self
            .served
            .as_ref()
            .is_some_and(|s| s.misdirected(serve::request_host(&req).as_deref()));
        if misdirected {
            // Answered by the host, before any site (nor its counters) is
            // involved.
            stats::add(&stats::get().requests, 1);
            tracing::debug!(peer = %self.peer, host = ?serve::request_host(&req), "misdirected request");
        }
        // Boxed: the request's future is large (a policy call, a lookup, a
        // body plan), and hyper and h2 move the future a service returns;
        // a pointer moves for less than the future's bytes (a profile of
        // 304s at 32 connections showed the copies).
        let answer = (!misdirected).then(|| Box::pin(self.sluice.handle(req)));
        async move {
            match answer {
                Some(answer) => answer.await,
                None => service::host_answer(serve::host_response(
                    StatusCode::MISDIRECTED_REQUEST,
                    "Misdirected Request: this connection's certificate is not this host's\n",
                )),
            }
        }
    }
}

impl http2::Service for Answer {
    fn call(&self, req: Request<()>) -> impl Future<Output = Response<Body>> + Send + 'static {
        self.answer(req)
    }
}

/// Serves a connection until it ends; closes it when it outlives one of its
/// timeouts, and shuts it down gracefully with the server.
async fn run<H1, H2>(
    accepted: Accepted,
    activity: Arc<Activity>,
    protocol: Protocol<H1, H2>,
    tls: bool,
    served: Option<Served>,
) where
    H1: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H2: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Accepted {
        app,
        http1,
        h2,
        peer,
        timeouts,
        closing,
    } = accepted;
    let _open = stats::Connection::open();
    let link = match &protocol {
        Protocol::Http1(_, link) => link.clone(),
        Protocol::Http2(_) => None,
    };
    let share = app.body_budget.share(app.body_memory_per_connection);
    let answer = Answer {
        sluice: Sluice::from_app(app)
            .with_connection(ConnectionInfo {
                tls,
                peer: Some(peer),
                zero_copy: link,
            })
            .with_budget(share),
        served: served.map(Arc::new),
        peer,
    };
    let connection = async {
        match protocol {
            Protocol::Http1(io, _) => {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let answer = answer.answer(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let service = Tracked::new(service, activity.clone());
                let io = TimedIo::new(io, activity.clone(), timeouts.send);
                let conn = http1.serve_connection(io, service);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    result = conn.as_mut() => return result.map_err(|e| describe(&e)),
                    () = closing.cancelled() => {}
                }
                conn.as_mut().graceful_shutdown();
                conn.await.map_err(|e| describe(&e))
            }
            Protocol::Http2(io) => {
                let io = TimedIo::new(io, activity.clone(), timeouts.send);
                http2::serve(io, answer, activity.clone(), h2, closing)
                    .await
                    .map_err(|e| describe(&e))
            }
        }
    };
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

/// Binds a listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::Channel;
    use http::Version;

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
