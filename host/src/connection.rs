//! One client connection, from accept to close: the TLS handshake (for the
//! TLS listener), telling HTTP/2 (its preface) from HTTP/1
//! ([`crate::preface`]), then HTTP/1 served by hyper or HTTP/2 by
//! [`crate::http2`] (the `h2` crate directly), both answering with the same
//! [`Sluice`] service, under the connection's timeouts
//! ([`crate::timeouts`]).
//!
//! Only a plain-TCP HTTP/1 request may take the zero-copy path: see
//! [`crate::transfer::Channel::for_request`], the one place that decides it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::http2;
use crate::http3;
use crate::preface::{self, Rewind};
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
pub(crate) async fn plain(accepted: Accepted, mut tcp: TcpStream) {
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
        alt_svc,
    } = accepted;
    let _open = stats::Connection::open();
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
    let connection = async {
        match protocol {
            Protocol::Http1(io, _) => {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    // Boxed, as for HTTP/2 (see `http2::Service for Sluice`).
                    let answer = Box::pin(answer.handle(req));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::Channel;
    use http::Version;
    use tokio::net::TcpListener;

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
