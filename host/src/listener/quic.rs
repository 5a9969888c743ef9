//! The QUIC listener: HTTP/3 on a UDP socket at the TLS listener's address
//! (`[http3] enabled`), and what happens between its connections — how many
//! may be open, when a client must first prove its address, what the
//! transport lets each connection hold.
//!
//! **The connection cap.** A QUIC connection takes a slot of the same
//! `max-connections` as TCP ones (the README's "client connections" is one
//! number for the host: a QUIC connection costs tasks, TLS state and
//! buffers like a TCP one, only no descriptor of its own), and one of
//! `[http3] max-connections`, which bounds what quinn buffers host-wide
//! (`send-window` each). There is no listen queue to leave a client in, as
//! `accept` pauses do for TCP: at the cap a new QUIC client is refused at once
//! (`CONNECTION_REFUSED`), which browsers take as a reason to use the TCP
//! listener, whose queue then holds them.
//!
//! **Address validation.** Each handshake in progress holds a slot, TLS
//! state and quinn's buffers for the client's first packets. Past
//! `[http3] retry-handshakes` handshakes at once, a new client is sent a
//! Retry (a token it must echo, one round trip): a flood from spoofed
//! addresses never gets past it, and costs the server that packet alone.
//! Every handshake, validated or not, must end within
//! `handshake-timeout-ms`.
//!
//! **The transport** (per connection, `transport`): at most `max-streams`
//! request streams and 3 unidirectional ones at once, receive windows of
//! 64 KiB per stream and 1 MiB per connection (they only bound request
//! bodies, which a file server does not read: as HTTP/2's), `send-window`
//! bytes of response data unacknowledged or queued, QUIC's idle timeout, no
//! datagrams; quinn's buffer for the packets of connections not yet
//! accepted is 64 KiB each and 16 MiB in all.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::Http3Config;
use crate::http3;
use crate::stats;
use crate::tls::{self, Certificates};

/// The QUIC listener, bound and configured.
pub struct QuicListener {
    endpoint: quinn::Endpoint,
    pub(crate) certs: Arc<Certificates>,
    config: Http3Config,
    /// What the kernel offers quinn's UDP layer (logged at start).
    pub offload: Offload,
}

/// Segmentation offloads on the UDP socket, as quinn's UDP layer detected
/// them: with GSO one `sendmsg` carries up to `gso_segments` packets (the
/// kernel splits them), with GRO one `recvmsg` returns up to `gro_segments`
/// coalesced ones: fewer system calls per byte, the main cost of QUIC
/// besides its user-space crypto.
#[derive(Debug, Clone, Copy)]
pub struct Offload {
    pub gso_segments: usize,
    pub gro_segments: usize,
}

impl QuicListener {
    /// Binds a UDP socket at `addr` and makes it a QUIC server endpoint
    /// serving `certs` (the TLS listener's: the same SNI choice, and a
    /// reload applies to new QUIC connections too).
    pub fn bind(
        addr: SocketAddr,
        certs: Arc<Certificates>,
        config: Http3Config,
    ) -> std::io::Result<QuicListener> {
        let socket = std::net::UdpSocket::bind(addr)?;
        // What quinn's UDP layer will find on this socket (it probes the
        // same way when the endpoint wraps it).
        let state = quinn::udp::UdpSocketState::new((&socket).into())?;
        let offload = Offload {
            gso_segments: state.max_gso_segments(),
            gro_segments: state.gro_segments(),
        };
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config(&certs, &config)?),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        Ok(QuicListener {
            endpoint,
            certs,
            config,
            offload,
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The `Alt-Svc` value HTTPS responses over TCP carry, naming this
    /// listener's port (the same host, so only the port); `None` when
    /// `alt-svc-max-age` is 0.
    pub fn alt_svc(&self) -> Option<HeaderValue> {
        if self.config.alt_svc_max_age == 0 {
            return None;
        }
        let port = self.local_addr().ok()?.port();
        HeaderValue::from_str(&format!(
            "h3=\":{port}\"; ma={}",
            self.config.alt_svc_max_age
        ))
        .ok()
    }

    /// Accepts QUIC connections until dropped (see the module's text for
    /// the caps and Retry); each connection, once accepted, is `spawn`ed on
    /// `connections` holding its slots.
    pub(crate) async fn accept_loop<F, Fut>(
        &self,
        slots: &Arc<Semaphore>,
        connections: &TaskTracker,
        mut spawn: F,
    ) where
        F: FnMut(quinn::Incoming, Handshaking) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let own = Arc::new(Semaphore::new(self.config.max_connections));
        let handshaking = Arc::new(AtomicUsize::new(0));
        while let Some(incoming) = self.endpoint.accept().await {
            if handshaking.load(Ordering::Relaxed) >= self.config.retry_handshakes
                && !incoming.remote_address_validated()
                && incoming.may_retry()
            {
                stats::add(&stats::get().quic_retries, 1);
                let _ = incoming.retry();
                continue;
            }
            let (Ok(slot), Ok(quic_slot)) = (
                slots.clone().try_acquire_owned(),
                own.clone().try_acquire_owned(),
            ) else {
                stats::add(&stats::get().quic_refused, 1);
                tracing::debug!(
                    peer = %incoming.remote_address(),
                    "connection cap reached: QUIC connection refused"
                );
                incoming.refuse();
                continue;
            };
            let guard = Handshaking::enter(&handshaking);
            let connection = spawn(incoming, guard);
            connections.spawn(async move {
                connection.await;
                drop((slot, quic_slot));
            });
        }
    }

    /// Stops taking new connections (refused from now on); those open
    /// finish under the server's grace.
    pub fn stop_accepting(&self) {
        self.endpoint.set_server_config(None);
    }

    /// Closes every connection still open and sends what is pending,
    /// waiting at most `limit` (the peers may be gone).
    pub async fn close(&self, limit: Duration) {
        self.endpoint
            .close(quinn::VarInt::from_u32(0x100), b"shutting down");
        let _ = tokio::time::timeout(limit, self.endpoint.wait_idle()).await;
    }

    /// The per-connection settings of HTTP/3 streams.
    pub fn settings(chunk: u32, timeouts: &crate::timeouts::Timeouts) -> http3::Settings {
        http3::Settings {
            chunk,
            send_timeout: timeouts.send,
            header_timeout: timeouts.header,
        }
    }
}

/// A handshake in progress, counted until dropped.
pub struct Handshaking(Arc<AtomicUsize>);

impl Handshaking {
    fn enter(count: &Arc<AtomicUsize>) -> Handshaking {
        count.fetch_add(1, Ordering::Relaxed);
        Handshaking(count.clone())
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// quinn's server configuration: TLS (`tls::quic_server_config`) and the
/// transport's bounds (see the module's text).
fn server_config(
    certs: &Arc<Certificates>,
    config: &Http3Config,
) -> std::io::Result<quinn::ServerConfig> {
    let tls = tls::quic_server_config(certs.clone());
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| std::io::Error::other(format!("QUIC TLS configuration: {e}")))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let idle = quinn::IdleTimeout::try_from(Duration::from_millis(config.idle_timeout_ms))
        .map_err(|e| std::io::Error::other(format!("http3: idle-timeout-ms: {e}")))?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(config.max_streams.into())
        .max_concurrent_uni_streams(http3::MAX_UNI_STREAMS.into())
        .max_idle_timeout(Some(idle))
        .stream_receive_window(quinn::VarInt::from_u32(64 << 10))
        .receive_window(quinn::VarInt::from_u32(1 << 20))
        .send_window(config.send_window.0)
        .datagram_receive_buffer_size(None);
    server
        .transport_config(Arc::new(transport))
        .max_incoming(4096)
        .incoming_buffer_size(64 << 10)
        .incoming_buffer_size_total(16 << 20);
    Ok(server)
}
