//! HTTP/3 connections (RFC 9114), served with `h3` over `quinn`'s QUIC.
//!
//! The listener ([`crate::listener::quic`]) accepts QUIC connections on the
//! TLS listener's address and hands each, once its handshake is done, to
//! [`crate::connection::quic`], which gives it the same service as an
//! HTTP/1 or HTTP/2 connection (routing, the 421 rule, the policy told
//! `version = http3`, the connection's share of the body budget) and calls
//! [`serve`] here. Each request stream then gets what an HTTP/2 stream gets
//! ([`crate::http2`]):
//!
//! 1. its body, on the copying path, one chunk of at most the policy's size
//!    at a time (`Body::poll_chunk`), each charged to the body budget;
//! 2. the chunk handed to h3, which copies it into quinn's send buffer as
//!    the stream's and the connection's flow control allow: the chunk (and
//!    its charge) is held until then. quinn's buffer is per connection at most
//!    `[http3] send-window` (data sent and not yet acknowledged, or queued),
//!    and QUIC connections are at most `[http3] max-connections`: so
//!    host-wide at most their product beside the body budget;
//! 3. a chunk the client takes none of for `send-timeout-ms` resets the
//!    stream (`H3_REQUEST_CANCELLED`), whatever the rest of the connection
//!    does (as for an HTTP/2 stream granted no window);
//! 4. after the last chunk, the body (its file, its charge) is dropped and the
//!    stream finished; its task ends once the client has acknowledged the
//!    whole response ([`transport`]), or resets it if that takes more
//!    than `send-timeout-ms`.
//!
//! Request bodies are not read (a static server has no use for them): each
//! stream's receive window is 64 KiB and the connection's 1 MiB (set on the
//! transport, `listener::quic`), so a client sending one holds at most that
//! of our memory; the stream's receiving side is stopped when it ends.
//!
//! The connection's timeouts are those of every other connection
//! ([`crate::timeouts`]): a request stream arriving counts as the next
//! request starting, its headers must be complete within the header
//! timeout, and between requests the keep-alive timeout applies; a peer
//! that vanished is noticed by QUIC's idle timeout (no packet, not even an
//! acknowledgement, for `[http3] idle-timeout-ms`). On graceful shutdown the
//! connection sends `GOAWAY` and lets the streams it accepted finish, then
//! closes. A stream has finished once the client has acknowledged all of its
//! response ([`transport`]: quinn's signal, not a guess from a quiet
//! connection), so closing discards nothing still owed, and a connection
//! with nothing owed closes at once.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h3::error::Code;
use h3::server::RequestStream;
use http::{Request, Response};
use http_body::Body as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http2::Service;
use crate::service::Body;
use crate::stats;
use crate::timeouts::Activity;

mod transport;

/// Largest header section a client may send (the decoded field section,
/// as HTTP/2's `MAX_HEADER_LIST`).
pub const MAX_FIELD_SECTION: u64 = 16 << 10;

/// Unidirectional streams a client may open at once: HTTP/3 needs three
/// (its control stream and QPACK's encoder and decoder streams); sluice
/// pushes nothing and offers no extension that would need more.
pub const MAX_UNI_STREAMS: u32 = 3;

/// What every HTTP/3 connection is configured with.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The largest chunk a stream reads at once (the policy's chunk size is
    /// the copying path's).
    pub chunk: u32,
    /// A chunk the client takes none of for this long resets its stream.
    pub send_timeout: Duration,
    /// A request stream's headers must be complete within this of its
    /// opening (the connection's watchdog also holds it to it).
    pub header_timeout: Duration,
}

/// A QUIC stream carrying one request, as h3 over quinn gives it.
type Stream = RequestStream<transport::BidiStream<Bytes>, Bytes>;

/// Serves one HTTP/3 connection (its QUIC handshake done) until the client
/// closes it, an error ends it, or, once `shutdown` is cancelled, the
/// streams it accepted have finished (`GOAWAY` first), their responses
/// acknowledged by the client. Bounded by the shutdown grace (the listener
/// stops waiting for the connection then).
pub async fn serve<S: Service>(
    conn: quinn::Connection,
    service: S,
    activity: Arc<Activity>,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<(), h3::error::ConnectionError> {
    let mut h3 = h3::server::builder()
        .max_field_section_size(MAX_FIELD_SECTION)
        .build::<_, Bytes>(transport::Connection::new(conn.clone()))
        .await?;
    let mut closing = false;
    // The request streams' tasks: on shutdown, the connection ends once
    // they have (h3's `accept` alone would wait for the client's GOAWAY).
    let streams = TaskTracker::new();
    let result = loop {
        let accepted = tokio::select! {
            accepted = h3.accept() => accepted,
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                // GOAWAY naming the last stream accepted: the client sends
                // its further requests elsewhere; those accepted finish.
                if let Err(e) = h3.shutdown(0).await {
                    break Err(e);
                }
                streams.close();
                continue;
            }
            () = streams.wait(), if closing => break Ok(()),
        };
        match accepted {
            Ok(Some(resolver)) => {
                // A new request stream: its header timeout runs from now.
                activity.read_bytes();
                let stream = RequestTask {
                    service: service.clone(),
                    activity: activity.clone(),
                    settings,
                };
                streams.spawn(stream.run(resolver));
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // Every stream's task has ended, so what it sent has been acknowledged
    // (`transport`): closing discards nothing a client was promised.
    // H3_NO_ERROR: every stream has ended (or the connection already has).
    conn.close(quinn::VarInt::from_u32(0x100), b"");
    match result {
        Err(e) if e.is_h3_no_error() => Ok(()),
        r => r,
    }
}

/// One request stream: its headers, the service's answer, then its body.
struct RequestTask<S> {
    service: S,
    activity: Arc<Activity>,
    settings: Settings,
}

/// Why a stream ended early (for the debug log).
#[derive(Debug)]
enum Ended {
    /// The client stopped or reset it (or the connection went).
    Reset,
    /// The client took nothing for the send timeout: reset by us.
    Stalled,
    /// The body failed (a file that shrank): reset by us.
    Body,
}

impl<S: Service> RequestTask<S> {
    async fn run(self, resolver: h3::server::RequestResolver<transport::Connection, Bytes>) {
        // Headers within the header timeout (the watchdog closes the
        // connection otherwise; this bounds the task too).
        let resolved =
            tokio::time::timeout(self.settings.header_timeout, resolver.resolve_request()).await;
        let (req, mut stream) = match resolved {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "HTTP/3 request refused");
                return;
            }
            Err(_) => return,
        };
        // In flight (for the connection's timeouts) until its body has
        // ended or the stream is gone.
        let _in_flight = self.activity.request_started();
        // A static server reads no request body: what a client sends of one
        // waits in the stream's receive window (64 KiB) until the response
        // ends, and is then refused (`STOP_SENDING`).
        let (parts, ()) = req.into_parts();
        let answer = self.service.call(Request::from_parts(parts, ()));
        let res = answer.await;
        let (mut parts, mut body) = res.into_parts();
        parts
            .headers
            .entry(http::header::DATE)
            .or_insert_with(crate::date::now);
        stats::add(&stats::get().h3_requests, 1);
        let sent = tokio::time::timeout(
            self.settings.send_timeout,
            stream.send_response(Response::from_parts(parts, ())),
        )
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                self.stalled(&mut stream);
                return;
            }
        }
        let result = if body.is_end_stream() {
            Ok(())
        } else {
            self.send_body(&mut stream, &mut body).await
        };
        // Its file, its budget charge and its access-log line go now: what
        // is left is quinn's.
        drop(body);
        match result {
            Ok(()) => {
                // The request side is no longer of interest. Then FIN, and
                // wait until the client has acknowledged the whole response
                // (`transport`): the task, and so a graceful shutdown, ends
                // once it is delivered. A response not wholly acknowledged
                // within the send timeout is reset, as a stalled one.
                stream.stop_sending(Code::H3_NO_ERROR);
                let finish = stream.finish();
                match tokio::time::timeout(self.settings.send_timeout, finish).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, "HTTP/3 stream not delivered"),
                    Err(_) => self.stalled(&mut stream),
                }
            }
            Err(why) => tracing::debug!(?why, "HTTP/3 stream ended early"),
        }
    }

    /// Sends `body` on `stream`, a chunk at a time: the next is read only
    /// once quinn has taken the last.
    async fn send_body(&self, stream: &mut Stream, body: &mut Body) -> Result<(), Ended> {
        loop {
            let want = body.next_chunk_size(self.settings.chunk);
            let chunk = poll_fn(|cx| body.poll_chunk(cx, want as usize)).await;
            match chunk {
                None => return Ok(()),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "HTTP/3 body failed; resetting the stream");
                    stream.stop_stream(Code::H3_INTERNAL_ERROR);
                    return Err(Ended::Body);
                }
                Some(Ok(bytes)) => {
                    let end = body.is_end_stream();
                    let send = stream.send_data(bytes);
                    match tokio::time::timeout(self.settings.send_timeout, send).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return Err(Ended::Reset),
                        Err(_) => {
                            self.stalled(stream);
                            return Err(Ended::Stalled);
                        }
                    }
                    if end {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Resets a stream the client took nothing of for the send timeout.
    fn stalled(&self, stream: &mut Stream) {
        stats::add(&stats::get().h3_streams_stalled, 1);
        stream.stop_stream(Code::H3_REQUEST_CANCELLED);
        stream.stop_sending(Code::H3_REQUEST_CANCELLED);
    }
}
