//! Zero-copy file bodies under stock hyper: placeholder chunks + `sendfile(2)`.
//!
//! hyper has no hook for sending a file descriptor. What it does guarantee,
//! with vectored writes on (`http1::Builder::writev(true)` and an I/O whose
//! `is_write_vectored()` is true), is that body `Bytes` are queued without
//! being copied or read and reach the I/O as `IoSlice`s pointing at each
//! chunk's own memory. So:
//!
//! 1. A process-wide [`Region`] is reserved with `PROT_NONE` and
//!    `MAP_NORESERVE`: address space only, never readable. Slices of it are
//!    *placeholders*.
//! 2. A [`SendfileBody`], when polled, registers the file region it is about
//!    to stand for in the connection's [`ZeroCopyLink`] (FIFO order is write
//!    order, because hyper writes a connection's responses in order) and yields
//!    a placeholder of the same length.
//! 3. [`SendfileIo`], the connection's I/O, recognises a slice inside the
//!    region, checks it against the front registration (offset inside the
//!    placeholder = bytes of that chunk already sent), and sends the file bytes
//!    with non-blocking `sendfile(2)` driven by tokio readiness, reporting them
//!    as written. Ordinary slices (heads, multipart boundaries) go by `writev`.
//!
//! Safety nets: anything that would *read* a placeholder (a flattening
//! writer, TLS, compression) faults on the `PROT_NONE` page instead of sending
//! zeros; a placeholder with no matching registration is an I/O error, not a
//! guess. And a `SendfileBody` can only be built from a `ZeroCopyLink`, which
//! only [`SendfileIo::new`] creates — on plain TCP, for HTTP/1 — so the
//! type system keeps placeholders off every other path.
//!
//! The socket is corked while a file body is in flight (nginx's
//! `tcp_nopush`): head, body and trailer leave in full segments; uncorking on
//! flush pushes the tail out.
//!
//! Each `sendfile` call is bounded by `sendfile-max-chunk`, and after a call
//! that filled a whole bound the I/O yields once (wakes itself, returns
//! `Pending`) so one fast download cannot monopolize its worker: nginx's
//! `sendfile_max_chunk`. (tokio's coop budget alone would allow 128 calls,
//! i.e. 256 MiB at the default 2 MiB bound, between yields.)
//!
//! # Why this is sound under hyper 1.x (checked against hyper 1.12's source)
//!
//! Paths are `src/proto/h1/`.
//! - **Strategy.** `Buffered::new` (io.rs) picks `WriteStrategy::Queue` iff
//!   the I/O's `is_write_vectored()`; `http1::Builder::writev(true)` forces it.
//!   `writev(false)` and `pipeline_flush(true)` (`set_flush_pipeline` calls
//!   `set_write_strategy_flatten`) select `Flatten`, whose `WriteBuf::buffer`
//!   copies each chunk with `extend_from_slice(buf.chunk())` — that would read
//!   a placeholder, and faults on `PROT_NONE` instead of sending zeros.
//!   [`crate::server`] sets `writev(true)` and never `pipeline_flush`.
//! - **No reads in Queue mode.** `WriteBuf::buffer` pushes the encoded chunk
//!   onto a `BufList`; `Buffered::poll_flush` fills up to 64 `IoSlice`s with
//!   `chunks_vectored` and calls `poll_write_vectored`, then `advance(n)`.
//!   `EncodedBuf`, `Chain`, `Take` and `BufList` only call `chunk`,
//!   `chunks_vectored` and `advance`; hyper's tracing logs lengths only.
//!   `poll_write` is used only by `poll_flush_flattened` (Flatten mode).
//! - **Partial writes.** After `advance(n)` the next `chunks_vectored` starts
//!   at the same chunk, `n` bytes further: the placeholder comes back as
//!   `ptr + n`, which is why `ptr - base` must equal the bytes of that
//!   registration already sent (checked; a mismatch is an I/O error). A
//!   return of `Ok(0)` with bytes queued is `WriteZero`, so we never return
//!   0 except for an all-empty write.
//! - **Framing.** With `Content-Length` (`Kind::Length`, encode.rs) `encode`
//!   queues the chunk itself (`BufKind::Exact`); a chunk longer than what is
//!   owed becomes `Limited(msg.take(limit))`, a *shorter* placeholder, which
//!   fails the length check rather than sending a wrong region.
//!   `encode_and_end` does the same. Chunked framing queues
//!   `ChunkSize.chain(chunk).chain("\r\n")`: ordinary, placeholder,
//!   ordinary, which `poll_write_vectored` handles by writing the ordinary
//!   prefix first. (File bodies always have an exact size, so sluice sends
//!   `Content-Length`.)
//! - **Pipelining / order.** `Conn::can_write_head` requires
//!   `can_headers_buf()`, i.e. an empty queue: the next response's head, and
//!   so the first poll of its body (when it registers), comes only after the
//!   previous body is fully written. Registrations of different responses
//!   never interleave; within a response, frames are queued in poll order,
//!   which is registration order. So the FIFO front is always the region the
//!   first placeholder slice stands for.
//! - **HEAD / 304.** `can_write_body()` is false for a response without a
//!   body, so hyper drops the body unpolled: nothing is registered.
//! - **Flush.** hyper calls the I/O's `poll_flush` only once the queue is
//!   empty (both branches of `Buffered::poll_flush`), which makes it the
//!   uncork point. Queue limits (`can_buffer`: < 16 buffers and < ~400 KiB
//!   queued) count a placeholder by its length, so a large placeholder is
//!   flushed before the body is polled again: one `sendfile` stream per file
//!   segment, no merging of adjacent placeholders needed (they only occur
//!   between the 1 GiB pieces of a larger segment).
//! - **Errors.** A write error (peer gone, file truncated) ends hyper's
//!   connection; the link and its registrations (and their `Arc<File>`s)
//!   die with it, so nothing leaks into a later connection.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::Segment;
use crate::stats;

/// Size of the placeholder reservation; file segments longer than this are
/// sent as several placeholders.
const REGION_LEN: usize = 1 << 30;

/// The reserved, inaccessible address range placeholders point into.
struct Region {
    base: usize,
}

fn region() -> &'static Region {
    static REGION: OnceLock<Region> = OnceLock::new();
    REGION.get_or_init(|| {
        // SAFETY: a fresh anonymous mapping that aliases nothing; PROT_NONE
        // means nothing can read or write it, MAP_NORESERVE that it costs no
        // memory. It is never unmapped, so `'static` slices of it stay valid.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                REGION_LEN,
                rustix::mm::ProtFlags::empty(),
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::NORESERVE,
            )
        }
        .expect("reserving placeholder address space (1 GiB, PROT_NONE) failed");
        Region { base: ptr as usize }
    })
}

/// A placeholder of `len` bytes (`len <= REGION_LEN`).
fn placeholder(len: usize) -> Bytes {
    debug_assert!(len <= REGION_LEN);
    // SAFETY: inside the reservation (see `region`). `Bytes::from_static`
    // keeps only the pointer and length; nothing on the zero-copy path
    // dereferences them (hyper's queued writer hands them to `SendfileIo`
    // as-is), and a read would fault rather than observe anything.
    let slice: &'static [u8] =
        unsafe { std::slice::from_raw_parts(region().base as *const u8, len) };
    Bytes::from_static(slice)
}

/// Offset of `slice` inside the region, if it is a placeholder.
fn placeholder_offset(slice: &[u8]) -> Option<usize> {
    let base = region().base;
    let p = slice.as_ptr() as usize;
    (p >= base && p < base + REGION_LEN).then(|| p - base)
}

/// One file region a placeholder stands for.
struct Pending {
    file: Arc<File>,
    offset: u64,
    len: usize,
    sent: usize,
}

#[derive(Default)]
struct LinkState {
    pending: VecDeque<Pending>,
}

/// The connection-scoped queue between its bodies and its I/O.
#[derive(Clone)]
pub struct ZeroCopyLink(Arc<Mutex<LinkState>>);

impl ZeroCopyLink {
    fn push(&self, file: Arc<File>, offset: u64, len: usize) {
        self.0
            .lock()
            .expect("not poisoned")
            .pending
            .push_back(Pending {
                file,
                offset,
                len,
                sent: 0,
            });
    }
}

/// A plain TCP connection that sends placeholders with `sendfile(2)`.
pub struct SendfileIo {
    io: TokioIo<TcpStream>,
    link: ZeroCopyLink,
    corked: bool,
    max_chunk: usize,
    /// The last `sendfile` filled a whole `max_chunk`: give the worker to
    /// other tasks before the next one.
    yield_next: bool,
}

impl SendfileIo {
    /// Wraps a plain TCP stream; `max_chunk` bounds each `sendfile` call so one
    /// large download cannot monopolize the worker (nginx's `sendfile_max_chunk`).
    pub fn new(tcp: TcpStream, max_chunk: usize) -> (SendfileIo, ZeroCopyLink) {
        let link = ZeroCopyLink(Arc::default());
        let io = SendfileIo {
            io: TokioIo::new(tcp),
            link: link.clone(),
            corked: false,
            max_chunk,
            yield_next: false,
        };
        (io, link)
    }

    fn set_cork(&mut self, on: bool) {
        if self.corked != on {
            // Best effort: without the cork the bytes still go, in more segments.
            let _ = rustix::net::sockopt::set_tcp_cork(self.io.inner(), on);
            self.corked = on;
        }
    }

    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        slice: &[u8],
        at: usize,
    ) -> Poll<io::Result<usize>> {
        if std::mem::take(&mut self.yield_next) {
            // nginx's sendfile_max_chunk: after a full chunk, let the other
            // connections on this worker run. hyper re-offers the same
            // slices when the task is polled again.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mut state = self.link.0.lock().expect("not poisoned");
        let Some(front) = state.pending.front_mut() else {
            return Poll::Ready(Err(io::Error::other(
                "placeholder without a registered file region",
            )));
        };
        if at != front.sent || at + slice.len() != front.len {
            return Poll::Ready(Err(io::Error::other(
                "placeholder does not match the registered file region",
            )));
        }
        let want = slice.len().min(self.max_chunk);
        let mut offset = front.offset + front.sent as u64;
        let tcp = self.io.inner();
        let n = loop {
            ready!(tcp.poll_write_ready(cx))?;
            match tcp.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(tcp, &*front.file, Some(&mut offset), want)
                    .map_err(io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        };
        if n == 0 {
            // The file ended early: it was truncated after we opened it. The
            // response cannot be completed honestly; ending the connection is
            // the only signal HTTP/1.1 has (no padding, no hang).
            stats::add(&stats::get().truncated_files, 1);
            tracing::warn!(
                expected = front.len,
                sent = front.sent,
                "file shrank while being sent; closing connection"
            );
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file truncated during sendfile",
            )));
        }
        front.sent += n;
        if front.sent == front.len {
            state.pending.pop_front();
        } else if n == self.max_chunk {
            self.yield_next = true;
        }
        stats::add(&stats::get().sendfile_bytes, n as u64);
        stats::add(&stats::get().sendfile_calls, 1);
        Poll::Ready(Ok(n))
    }
}

impl Read for SendfileIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for SendfileIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(first) = bufs.iter().position(|b| !b.is_empty()) else {
            return Poll::Ready(Ok(0));
        };
        let bufs = &bufs[first..];
        if !this.corked && !this.link.0.lock().expect("not poisoned").pending.is_empty() {
            this.set_cork(true);
        }
        if let Some(at) = placeholder_offset(&bufs[0]) {
            return this.poll_sendfile(cx, &bufs[0], at);
        }
        // Ordinary bytes up to the next placeholder go by writev; the
        // placeholder waits for the next call (hyper re-offers the rest).
        let ordinary = bufs
            .iter()
            .position(|b| placeholder_offset(b).is_some())
            .unwrap_or(bufs.len());
        Pin::new(&mut this.io).poll_write_vectored(cx, &bufs[..ordinary])
    }

    fn is_write_vectored(&self) -> bool {
        // Must stay true: it is what makes hyper queue body chunks instead of
        // copying (and so reading) them.
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.corked && this.link.0.lock().expect("not poisoned").pending.is_empty() {
            this.set_cork(false);
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A body whose file segments leave by `sendfile(2)`.
pub struct SendfileBody {
    link: ZeroCopyLink,
    file: Arc<File>,
    segments: VecDeque<Segment>,
    remaining: u64,
}

impl SendfileBody {
    pub fn new(link: &ZeroCopyLink, file: Arc<File>, segments: VecDeque<Segment>) -> SendfileBody {
        let remaining = segments.iter().map(Segment::len).sum();
        SendfileBody {
            link: link.clone(),
            file,
            segments,
            remaining,
        }
    }
}

impl Body for SendfileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        let chunk = match this.segments.pop_front() {
            None => return Poll::Ready(None),
            Some(Segment::Bytes(b)) => b,
            Some(Segment::File { offset, len }) => {
                let piece = len.min(REGION_LEN as u64);
                if piece < len {
                    this.segments.push_front(Segment::File {
                        offset: offset + piece,
                        len: len - piece,
                    });
                }
                // Registered now, when hyper takes the chunk, not when the
                // response was built: HEAD and 304 never poll their bodies.
                this.link.push(this.file.clone(), offset, piece as usize);
                placeholder(piece as usize)
            }
        };
        this.remaining -= chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.segments.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
