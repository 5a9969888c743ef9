//! Listening and accepting: the plain and TLS listeners, the connection
//! cap shared by both, the pause when descriptors run out, and graceful
//! shutdown. Each accepted connection is handed to [`crate::connection`],
//! which drives its protocol.
//!
//! Why a layer of its own: what happens *between* connections (how many
//! may be open, what an `accept` failure costs, when to stop accepting)
//! is decided here and nowhere else; what happens *on* a connection is
//! `connection`'s, and what a request gets is the handler's
//! ([`crate::handler`]) behind the service ([`crate::service`]).

pub mod quic;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::connection::{self, Accepted};
use crate::http2;
use crate::service::Sluice;
use crate::stats;
use crate::timeouts::Timeouts;
use crate::tls::{self, Certificates};
use quic::QuicListener;

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

/// Accepts connections on the plain listener and, if given, the TLS one and
/// the QUIC one (HTTP/3, [`quic`]), until `shutdown` completes (and sweeps the open-file caches once a
/// second, so descriptors of files no one asks for are closed). Connections
/// are held to `limits` (see [`crate::timeouts`]).
///
/// Shutdown is graceful: the listeners close at once (new connections are
/// refused), idle keep-alive connections are closed, HTTP/2 connections get
/// `GOAWAY`, and responses in flight may finish for up to `grace`; whatever
/// is left then is closed when this returns.
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<TlsListener>,
    quic: Option<QuicListener>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let sweeper = tokio::spawn(Sluice::from_app(app.clone()).housekeeping());
    let http1 = Arc::new(connection::http1_builder());
    let h2 = http2::Settings {
        chunk: app.transfer.chunk_default.0.clamp(16 << 10, 8 << 20) as u32,
        send_timeout: limits.timeouts.send,
    };
    let h3 = QuicListener::settings(h2.chunk, &limits.timeouts);
    let alt_svc = quic.as_ref().and_then(QuicListener::alt_svc);
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
            alt_svc: alt_svc.clone(),
        };
        let release = || app.release_descriptors();
        let plain = accept_loop(listener, &slots, &connections, release, |tcp, peer| {
            connection::plain(accepted(peer), tcp)
        });
        let secure = async {
            match tls {
                Some((tls_listener, certs)) => {
                    let acceptor = TlsAcceptor::from(tls::server_config(certs.clone()));
                    accept_loop(tls_listener, &slots, &connections, release, |tcp, peer| {
                        connection::tls(accepted(peer), acceptor.clone(), certs.clone(), tcp)
                    })
                    .await
                }
                None => std::future::pending().await,
            }
        };
        let quic_loop = async {
            match &quic {
                Some(q) => {
                    q.accept_loop(&slots, &connections, |incoming, handshaking| {
                        let peer = incoming.remote_address();
                        connection::quic(accepted(peer), incoming, q.certs.clone(), h3, handshaking)
                    })
                    .await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = plain => {}
            () = secure => {}
            () = quic_loop => {}
            () = shutdown => {}
        }
        // Leaving this block drops the accept loops and their listeners.
    }
    tracing::info!(
        connections = connections.len(),
        grace = ?grace,
        "shutting down: no new connections; letting responses in flight finish"
    );
    if let Some(q) = &quic {
        q.stop_accepting();
    }
    closing.cancel();
    connections.close();
    match tokio::time::timeout(grace, connections.wait()).await {
        Ok(()) => tracing::info!("every connection closed; exiting"),
        Err(_) => tracing::warn!("grace period over; closing the connections still open"),
    }
    if let Some(q) = &quic {
        // CONNECTION_CLOSE to whatever is left, and the last packets out.
        q.close(Duration::from_secs(1)).await;
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

/// Binds a listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
