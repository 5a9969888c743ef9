//! Listening, accepting, and running hyper on each connection.
//!
//! Two listeners may run side by side: plain TCP (HTTP/1.1, and HTTP/2 with
//! prior knowledge, "h2c") and TLS (HTTP/1.1 or HTTP/2 by ALPN, certificate
//! by SNI: see [`crate::tls`]). hyper-util's
//! auto builder tells HTTP/1 from HTTP/2 by the client's first bytes (the h2
//! preface), so both listeners serve both versions with one builder.
//!
//! Only a plain-TCP HTTP/1 request may take the zero-copy path: see
//! [`crate::transfer::Channel::for_request`], the one place that decides it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::TransferConfig;
use crate::serve::{self, App};
use crate::service::{self, ConnectionInfo, Sluice};
use crate::stats;
use crate::timeouts::{Activity, TimedIo, Timeouts, Tracked};
use crate::tls::{self, Certificates, Served};
use crate::transfer::zerocopy::{SendfileIo, ZeroCopyLink};

/// Concurrent HTTP/2 streams per connection (nginx's
/// `http2_max_concurrent_streams` default).
pub const H2_MAX_STREAMS: u32 = 128;

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
    let http = Arc::new(builder(&app.transfer));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    stats::get()
        .max_connections
        .store(limits.max_connections as u64, Ordering::Relaxed);
    {
        let accepted = |peer| Accepted {
            app: app.clone(),
            http: http.clone(),
            peer,
            timeouts: limits.timeouts,
            watcher: graceful.watcher(),
        };
        let release = || app.release_descriptors();
        let plain = accept_loop(listener, &slots, release, |tcp, peer| {
            plain_connection(accepted(peer), tcp)
        });
        let secure = async {
            match tls {
                Some((tls_listener, certs)) => {
                    let acceptor = TlsAcceptor::from(tls::server_config(certs.clone()));
                    accept_loop(tls_listener, &slots, release, |tcp, peer| {
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
        connections = graceful.count(),
        grace = ?grace,
        "shutting down: no new connections; letting responses in flight finish"
    );
    match tokio::time::timeout(grace, graceful.shutdown()).await {
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
        tokio::spawn(async move {
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

/// The connection builder, shared by all connections.
///
/// HTTP/2 memory bound. The server sends file bodies on the copying path:
/// per stream at most two chunks are alive (the one h2 is sending, the one
/// being read: `transfer::copy`), i.e. 2 x the policy's chunk size (default
/// 256 KiB, so 512 KiB; at most 2 x `chunk-max`). h2 takes a chunk only when
/// the stream has send capacity, and buffers at most `max_send_buf_size` of
/// it beyond what the peer's windows allow. So a connection holds at most
/// `H2_MAX_STREAMS` x 2 x chunk (128 x 512 KiB = 64 MiB at the defaults) of
/// body buffers, plus its fixed costs: the receive windows below (request
/// bodies; a static server reads almost none), hpack tables (4 KiB each way)
/// and, over TLS, rustls's buffers (about 64 KiB of ciphertext queued plus
/// one 16 KiB record each way).
fn builder(transfer: &TransferConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        // Queued (vectored) writes are what the zero-copy path relies on:
        // see transfer::zerocopy. Never turn them off here, and never enable
        // `pipeline_flush`: both switch hyper to its flattening writer, which
        // reads (copies) body chunks. (Over TLS they also save hyper a copy
        // of each chunk into its own buffer.)
        .writev(true)
        .keep_alive(true)
        .timer(TokioTimer::new())
        // hyper's header timer starts when it begins waiting for a request,
        // so it would also cut idle keep-alive connections: the watchdog in
        // `run` keeps the two apart (crate::timeouts).
        .header_read_timeout(None);
    let chunk = transfer.chunk_default.0.clamp(16 << 10, 8 << 20) as usize;
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        // What we accept from the client (request frames); the frames we send
        // are sized by the client's own SETTINGS_MAX_FRAME_SIZE. 64 KiB keeps
        // a client's large frames at one allocation each, not 16 KiB pieces.
        .max_frame_size(64 << 10)
        // Receive windows: they only bound request bodies, which a file
        // server barely gets, so they stay small (memory per connection).
        .initial_stream_window_size(64 << 10)
        .initial_connection_window_size(1 << 20)
        // A whole chunk may sit queued in h2 per stream (it holds the Bytes,
        // no copy); more would only add memory, not speed.
        .max_send_buf_size(chunk)
        // A peer that vanishes mid-download is noticed by pings.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// One plain-TCP connection: HTTP/1 (zero-copy allowed) or h2c.
/// What a connection is handed when it is accepted.
struct Accepted {
    app: Arc<App>,
    http: Arc<auto::Builder<TokioExecutor>>,
    peer: SocketAddr,
    /// The TLS handshake, and then the first request, must each be done
    /// within `first_request` (a client that connects and stalls is
    /// closed); the other limits apply after.
    timeouts: Timeouts,
    /// Shuts the connection down gracefully when the server does.
    watcher: Watcher,
}

async fn plain_connection(accepted: Accepted, tcp: TcpStream) {
    let max_chunk = accepted.app.transfer.sendfile_max_chunk.0 as usize;
    let (io, link) = SendfileIo::new(tcp, max_chunk);
    run(accepted, io, false, Some(link), None).await;
}

/// One TLS connection: the handshake (bounded in time), then HTTP/1.1 or
/// HTTP/2, always on the copying path.
async fn tls_connection(
    accepted: Accepted,
    acceptor: TlsAcceptor,
    certs: Arc<Certificates>,
    tcp: TcpStream,
) {
    let (peer, limit) = (accepted.peer, accepted.timeouts.first_request);
    let stream = match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
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
    run(accepted, TokioIo::new(stream), true, None, served).await;
}

/// Serves a connection until it ends; closes it when it outlives one of its
/// timeouts, and shuts it down gracefully with the server. Requests on a TLS
/// connection whose certificate is not their host's are answered 421 (see
/// [`Served`]).
async fn run<I>(
    accepted: Accepted,
    io: I,
    tls: bool,
    link: Option<ZeroCopyLink>,
    served: Option<Served>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let Accepted {
        app,
        http,
        peer,
        timeouts,
        watcher,
    } = accepted;
    let _open = stats::Connection::open();
    let activity = Activity::new();
    let sluice = Sluice::from_app(app).with_connection(ConnectionInfo {
        tls,
        peer: Some(peer),
        zero_copy: link,
    });
    let service = service_fn(move |req: Request<Incoming>| {
        let misdirected = served
            .as_ref()
            .is_some_and(|s| s.misdirected(serve::request_host(&req).as_deref()));
        if misdirected {
            // Answered by the host, before any site (nor its counters) is
            // involved.
            stats::add(&stats::get().requests, 1);
            tracing::debug!(%peer, host = ?serve::request_host(&req), "misdirected request");
        }
        let answer = (!misdirected).then(|| sluice.handle(req));
        async move {
            Ok::<_, Infallible>(match answer {
                Some(answer) => answer.await,
                None => service::host_answer(serve::host_response(
                    StatusCode::MISDIRECTED_REQUEST,
                    "Misdirected Request: this connection's certificate is not this host's\n",
                )),
            })
        }
    });
    let service = Tracked::new(service, activity.clone());
    let io = TimedIo::new(io, activity.clone(), timeouts.send);
    let connection = watcher.watch(http.serve_connection(io, service));
    tokio::select! {
        result = connection => {
            if let Err(e) = result {
                // hyper's errors name the step; the cause (a send timeout,
                // say) is in their sources.
                let mut error = e.to_string();
                let mut cause = e.source();
                while let Some(c) = cause {
                    error = format!("{error}: {c}");
                    cause = c.source();
                }
                tracing::debug!(%peer, tls, error, "connection ended with an error");
            }
        }
        why = activity.expired(&timeouts) => {
            tracing::debug!(%peer, tls, "{why}; closing");
        }
    }
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
