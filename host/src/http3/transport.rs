//! h3's QUIC transport over quinn: `h3-quinn`'s, except that a request
//! stream's `finish` completes only once the client has acknowledged every
//! byte of the stream (or stopped it, or the connection has ended).
//!
//! quinn takes a response's bytes into its send buffer and returns; they
//! are then sent, and resent if lost, until the client acknowledges them,
//! and closing the connection discards whatever is still unacknowledged.
//! quinn says when a finished stream is wholly acknowledged
//! (`quinn::SendStream::stopped`), but `h3-quinn` keeps quinn's stream out
//! of reach (its types have no public constructors and h3's `RequestStream`
//! no accessor). So the request streams are wrapped here, and a request's
//! task, which ends when `finish` does, ends once its response has been
//! delivered: waiting for the tasks (as graceful shutdown does) is waiting
//! for delivery, precisely, with no heuristic.
//!
//! This costs a request nothing it did not already hold: quinn frees a
//! client's stream (and lets it open another, up to `max-streams`) only once
//! the stream's data is acknowledged, so the tasks waiting here are at most
//! `max-streams` per connection, as before; each waits about a round trip
//! (plus the client's acknowledgement delay, 25 ms by default).
//!
//! Everything else is `h3-quinn`'s own: the unidirectional streams (the
//! control stream, QPACK's, h3's grease stream) and closing the connection.
//! The request streams' reading and writing are `h3-quinn`'s code (MIT),
//! adapted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h3::error::Code;
use h3::quic::{self, ConnectionErrorIncoming, StreamErrorIncoming, StreamId, WriteBuf};
use quinn::VarInt;
use tokio_util::sync::ReusableBoxFuture;

type Accepted = Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError>;

/// A QUIC connection as h3 sees it: request streams from [`BidiStream`],
/// the rest from `h3-quinn`.
pub struct Connection {
    quinn: quinn::Connection,
    uni: h3_quinn::Connection,
    /// The next request stream the client opens.
    accepting: ReusableBoxFuture<'static, Accepted>,
    opening: Option<ReusableBoxFuture<'static, Accepted>>,
}

impl Connection {
    pub fn new(conn: quinn::Connection) -> Connection {
        Connection {
            uni: h3_quinn::Connection::new(conn.clone()),
            accepting: ReusableBoxFuture::new(accept_bi(conn.clone())),
            opening: None,
            quinn: conn,
        }
    }
}

async fn accept_bi(conn: quinn::Connection) -> Accepted {
    conn.accept_bi().await
}

impl<B: Buf> quic::Connection<B> for Connection {
    type RecvStream = h3_quinn::RecvStream;
    type OpenStreams = Opener;

    fn poll_accept_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::RecvStream, ConnectionErrorIncoming>> {
        quic::Connection::<B>::poll_accept_recv(&mut self.uni, cx)
    }

    fn poll_accept_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::BidiStream, ConnectionErrorIncoming>> {
        let accepted = ready!(self.accepting.poll(cx));
        self.accepting.set(accept_bi(self.quinn.clone()));
        let (send, recv) = accepted.map_err(connection_error)?;
        Poll::Ready(Ok(BidiStream::new(send, recv)))
    }

    fn opener(&self) -> Opener {
        Opener {
            quinn: self.quinn.clone(),
            uni: quic::Connection::<B>::opener(&self.uni),
            opening: None,
        }
    }
}

impl<B: Buf> quic::OpenStreams<B> for Connection {
    type BidiStream = BidiStream<B>;
    type SendStream = h3_quinn::SendStream<B>;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::BidiStream, StreamErrorIncoming>> {
        poll_open_bi(&self.quinn, &mut self.opening, cx)
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::SendStream, StreamErrorIncoming>> {
        quic::OpenStreams::<B>::poll_open_send(&mut self.uni, cx)
    }

    fn close(&mut self, code: Code, reason: &[u8]) {
        quic::OpenStreams::<B>::close(&mut self.uni, code, reason)
    }
}

/// Opens streams: unidirectional ones by `h3-quinn`; bidirectional ones
/// (which a server's h3 never opens) as [`BidiStream`]s, as h3's traits
/// require.
pub struct Opener {
    quinn: quinn::Connection,
    uni: h3_quinn::OpenStreams,
    opening: Option<ReusableBoxFuture<'static, Accepted>>,
}

async fn open_bi(conn: quinn::Connection) -> Accepted {
    conn.open_bi().await
}

fn poll_open_bi<B: Buf>(
    quinn: &quinn::Connection,
    opening: &mut Option<ReusableBoxFuture<'static, Accepted>>,
    cx: &mut Context<'_>,
) -> Poll<Result<BidiStream<B>, StreamErrorIncoming>> {
    let opening = opening.get_or_insert_with(|| ReusableBoxFuture::new(open_bi(quinn.clone())));
    let opened = ready!(opening.poll(cx));
    opening.set(open_bi(quinn.clone()));
    let (send, recv) = opened.map_err(|e| StreamErrorIncoming::ConnectionErrorIncoming {
        connection_error: connection_error(e),
    })?;
    Poll::Ready(Ok(BidiStream::new(send, recv)))
}

impl<B: Buf> quic::OpenStreams<B> for Opener {
    type BidiStream = BidiStream<B>;
    type SendStream = h3_quinn::SendStream<B>;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::BidiStream, StreamErrorIncoming>> {
        poll_open_bi(&self.quinn, &mut self.opening, cx)
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::SendStream, StreamErrorIncoming>> {
        quic::OpenStreams::<B>::poll_open_send(&mut self.uni, cx)
    }

    fn close(&mut self, code: Code, reason: &[u8]) {
        quic::OpenStreams::<B>::close(&mut self.uni, code, reason)
    }
}

/// A request stream: its sending side waits, in `finish`, for the client's
/// acknowledgement of everything sent.
pub struct BidiStream<B: Buf> {
    send: SendStream<B>,
    recv: RecvStream,
}

impl<B: Buf> BidiStream<B> {
    fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> BidiStream<B> {
        BidiStream {
            send: SendStream {
                stream: send,
                writing: None,
                finish: Finish::Open,
            },
            recv: RecvStream::new(recv),
        }
    }
}

impl<B: Buf> quic::BidiStream<B> for BidiStream<B> {
    type SendStream = SendStream<B>;
    type RecvStream = RecvStream;

    fn split(self) -> (SendStream<B>, RecvStream) {
        (self.send, self.recv)
    }
}

impl<B: Buf> quic::RecvStream for BidiStream<B> {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        self.recv.poll_data(cx)
    }

    fn stop_sending(&mut self, error_code: u64) {
        self.recv.stop_sending(error_code)
    }

    fn recv_id(&self) -> StreamId {
        self.recv.recv_id()
    }
}

impl<B: Buf> quic::SendStream<B> for BidiStream<B> {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_ready(cx)
    }

    fn send_data<D: Into<WriteBuf<B>>>(&mut self, data: D) -> Result<(), StreamErrorIncoming> {
        self.send.send_data(data)
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_finish(cx)
    }

    fn reset(&mut self, reset_code: u64) {
        self.send.reset(reset_code)
    }

    fn send_id(&self) -> StreamId {
        self.send.send_id()
    }
}

/// Where a stream's `finish` is.
enum Finish {
    Open,
    /// FIN queued: waiting for the client to acknowledge everything (or to
    /// stop the stream, or for the connection to end).
    Delivering(
        Pin<Box<dyn Future<Output = Result<Option<VarInt>, quinn::StoppedError>> + Send + Sync>>,
    ),
    Done,
}

/// The sending side of a request stream.
pub struct SendStream<B: Buf> {
    stream: quinn::SendStream,
    /// A frame h3 handed over that quinn has not taken all of yet.
    writing: Option<WriteBuf<B>>,
    finish: Finish,
}

impl<B: Buf> quic::SendStream<B> for SendStream<B> {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        if let Some(data) = &mut self.writing {
            while data.has_remaining() {
                let written = ready!(Pin::new(&mut self.stream).poll_write(cx, data.chunk()))
                    .map_err(write_error)?;
                data.advance(written);
            }
        }
        self.writing = None;
        Poll::Ready(Ok(()))
    }

    fn send_data<D: Into<WriteBuf<B>>>(&mut self, data: D) -> Result<(), StreamErrorIncoming> {
        if self.writing.is_some() {
            // h3 calls poll_ready first; as h3-quinn, refuse rather than lose.
            return Err(StreamErrorIncoming::ConnectionErrorIncoming {
                connection_error: ConnectionErrorIncoming::InternalError(
                    "send_data called while the stream was not ready".into(),
                ),
            });
        }
        self.writing = Some(data.into());
        Ok(())
    }

    /// Finishes the stream (FIN after what quinn holds), then completes once
    /// the client has acknowledged all of it: `Ok` when it has, the client's
    /// code if it stopped the stream first, the connection's error if the
    /// connection ended first.
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        if let Finish::Open = self.finish {
            self.stream
                .finish()
                .map_err(|e| StreamErrorIncoming::Unknown(Box::new(e)))?;
            self.finish = Finish::Delivering(Box::pin(self.stream.stopped()));
        }
        let Finish::Delivering(delivered) = &mut self.finish else {
            return Poll::Ready(Ok(()));
        };
        let delivered = ready!(delivered.as_mut().poll(cx));
        self.finish = Finish::Done;
        Poll::Ready(match delivered {
            Ok(None) => Ok(()),
            Ok(Some(code)) => Err(StreamErrorIncoming::StreamTerminated {
                error_code: code.into_inner(),
            }),
            Err(quinn::StoppedError::ConnectionLost(e)) => {
                Err(StreamErrorIncoming::ConnectionErrorIncoming {
                    connection_error: connection_error(e),
                })
            }
            Err(e) => Err(StreamErrorIncoming::Unknown(Box::new(e))),
        })
    }

    fn reset(&mut self, reset_code: u64) {
        let _ = self
            .stream
            .reset(VarInt::from_u64(reset_code).unwrap_or(VarInt::MAX));
    }

    fn send_id(&self) -> StreamId {
        stream_id(self.stream.id())
    }
}

type ReadChunk = ReusableBoxFuture<
    'static,
    (
        quinn::RecvStream,
        Result<Option<quinn::Chunk>, quinn::ReadError>,
    ),
>;

/// The receiving side of a request stream (h3-quinn's).
pub struct RecvStream {
    /// `None` while `read` has it.
    stream: Option<quinn::RecvStream>,
    read: ReadChunk,
}

impl RecvStream {
    fn new(stream: quinn::RecvStream) -> RecvStream {
        RecvStream {
            stream: Some(stream),
            // Replaced before it is first polled; boxed on first use.
            read: ReusableBoxFuture::new(async { unreachable!() }),
        }
    }
}

impl quic::RecvStream for RecvStream {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        if let Some(mut stream) = self.stream.take() {
            self.read.set(async move {
                let chunk = stream.read_chunk(usize::MAX, true).await;
                (stream, chunk)
            });
        }
        let (stream, chunk) = ready!(self.read.poll(cx));
        self.stream = Some(stream);
        Poll::Ready(Ok(chunk.map_err(read_error)?.map(|c| c.bytes)))
    }

    fn stop_sending(&mut self, error_code: u64) {
        // h3 stops a stream between reads (h3-quinn would panic otherwise).
        if let Some(stream) = &mut self.stream {
            let _ = stream.stop(VarInt::from_u64(error_code).unwrap_or(VarInt::MAX));
        }
    }

    fn recv_id(&self) -> StreamId {
        let stream = self.stream.as_ref().expect("no read in progress");
        stream_id(stream.id())
    }
}

fn stream_id(id: quinn::StreamId) -> StreamId {
    StreamId::try_from(u64::from(id)).expect("a QUIC stream id is a valid h3 stream id")
}

fn connection_error(e: quinn::ConnectionError) -> ConnectionErrorIncoming {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => {
            ConnectionErrorIncoming::ApplicationClose {
                error_code: close.error_code.into_inner(),
            }
        }
        quinn::ConnectionError::TimedOut => ConnectionErrorIncoming::Timeout,
        e => ConnectionErrorIncoming::Undefined(Arc::new(e)),
    }
}

fn read_error(e: quinn::ReadError) -> StreamErrorIncoming {
    match e {
        quinn::ReadError::Reset(code) => StreamErrorIncoming::StreamTerminated {
            error_code: code.into_inner(),
        },
        quinn::ReadError::ConnectionLost(e) => StreamErrorIncoming::ConnectionErrorIncoming {
            connection_error: connection_error(e),
        },
        e => StreamErrorIncoming::Unknown(Box::new(e)),
    }
}

fn write_error(e: quinn::WriteError) -> StreamErrorIncoming {
    match e {
        quinn::WriteError::Stopped(code) => StreamErrorIncoming::StreamTerminated {
            error_code: code.into_inner(),
        },
        quinn::WriteError::ConnectionLost(e) => StreamErrorIncoming::ConnectionErrorIncoming {
            connection_error: connection_error(e),
        },
        e => StreamErrorIncoming::Unknown(Box::new(e)),
    }
}
