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
//!   [`crate::connection`] sets `writev(true)` and never `pipeline_flush`.
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

use super::{Meter, Segment};
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
    /// The response's byte meter (access log), told what `sendfile` sent.
    meter: Option<Arc<dyn Meter>>,
}

#[derive(Default)]
struct LinkState {
    pending: VecDeque<Pending>,
}

/// The connection-scoped queue between its bodies and its I/O.
#[derive(Clone)]
pub struct ZeroCopyLink(Arc<Mutex<LinkState>>);

impl ZeroCopyLink {
    fn push(&self, file: Arc<File>, offset: u64, len: usize, meter: Option<Arc<dyn Meter>>) {
        self.0
            .lock()
            .expect("not poisoned")
            .pending
            .push_back(Pending {
                file,
                offset,
                len,
                sent: 0,
                meter,
            });
    }
}

/// A plain TCP connection that sends placeholders with `sendfile(2)`.
pub struct SendfileIo {
    io: TokioIo<TcpStream>,
    /// Bytes already read from the socket (to tell HTTP/1 from HTTP/2),
    /// returned by the first reads.
    prefix: Bytes,
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
        SendfileIo::with_prefix(tcp, max_chunk, Bytes::new())
    }

    /// [`SendfileIo::new`] for a socket from which `prefix` was already
    /// read: the first reads return it.
    pub(crate) fn with_prefix(
        tcp: TcpStream,
        max_chunk: usize,
        prefix: Bytes,
    ) -> (SendfileIo, ZeroCopyLink) {
        let link = ZeroCopyLink(Arc::default());
        let io = SendfileIo {
            io: TokioIo::new(tcp),
            prefix,
            link: link.clone(),
            corked: false,
            max_chunk,
            yield_next: false,
        };
        (io, link)
    }

    /// Puts back bytes read from the socket but not used (hyper's read
    /// buffer when an idle connection is parked): the next reads return them
    /// first.
    pub(crate) fn unread(&mut self, bytes: Bytes) {
        if self.prefix.is_empty() {
            // Copied: `bytes` may be a few bytes of hyper's 8 KiB buffer.
            self.prefix = Bytes::copy_from_slice(&bytes);
        } else {
            let mut all = Vec::with_capacity(bytes.len() + self.prefix.len());
            all.extend_from_slice(&bytes);
            all.extend_from_slice(&self.prefix);
            self.prefix = all.into();
        }
    }

    /// Waits until the client sends something (or closes), taking nothing:
    /// how many bytes are there (0: the client closed).
    pub(crate) async fn peek(&self) -> io::Result<usize> {
        self.io.inner().peek(&mut [0u8; 1]).await
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
        if let Some(m) = &front.meter {
            m.add(n as u64);
        }
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
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            if this.prefix.is_empty() {
                // An empty tail of a `Bytes` still holds its buffer.
                this.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
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
    meter: Option<Arc<dyn Meter>>,
}

impl SendfileBody {
    /// Counts what this body sends into `meter`: its own bytes (multipart
    /// boundaries) as they are yielded, its file regions as `sendfile`
    /// sends them.
    pub fn attach(&mut self, meter: Arc<dyn Meter>) {
        self.meter = Some(meter);
    }

    pub fn new(link: &ZeroCopyLink, file: Arc<File>, segments: VecDeque<Segment>) -> SendfileBody {
        let remaining = segments.iter().map(Segment::len).sum();
        SendfileBody {
            link: link.clone(),
            file,
            segments,
            remaining,
            meter: None,
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
            Some(Segment::Bytes(b)) => {
                if let Some(m) = &this.meter {
                    m.add(b.len() as u64);
                }
                b
            }
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
                this.link.push(
                    this.file.clone(),
                    offset,
                    piece as usize,
                    this.meter.clone(),
                );
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

#[cfg(test)]
mod tests {
    //! In-process tests over real loopback sockets and real temporary files.
    //! [`drive`] plays hyper's queued writer: it offers every queued chunk as
    //! an `IoSlice` of the chunk's own memory and advances by what was
    //! written, so a partly sent placeholder comes back as `ptr + n`.

    use super::*;

    use std::future::poll_fn;
    use std::io::{Read, Write as _};
    use std::sync::atomic::Ordering;
    use std::sync::mpsc;
    use std::thread::JoinHandle;
    use std::time::Duration;

    use bytes::Buf;
    use tokio::net::{TcpListener, TcpSocket};

    use crate::transfer::test_support::{pseudo_random, temp_file};

    /// A connected pair: the server side as a [`SendfileIo`], the client as
    /// a blocking std socket (read on its own thread). `rcvbuf`/`sndbuf`
    /// shrink the client's receive and the server's send buffer.
    async fn pair(
        max_chunk: usize,
        rcvbuf: Option<u32>,
        sndbuf: Option<usize>,
    ) -> (SendfileIo, ZeroCopyLink, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(n) = rcvbuf {
            // Before connecting, so the advertised window stays small.
            socket.set_recv_buffer_size(n).unwrap();
        }
        let (client, accepted) = tokio::join!(socket.connect(addr), listener.accept());
        let client = client.unwrap().into_std().unwrap();
        client.set_nonblocking(false).unwrap();
        // A hang guard, not a timing assertion: a stuck test fails instead.
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (server, _) = accepted.unwrap();
        if let Some(n) = sndbuf {
            rustix::net::sockopt::set_socket_send_buffer_size(&server, n).unwrap();
        }
        let (io, link) = SendfileIo::new(server, max_chunk);
        (io, link, client)
    }

    /// Reads the client side to EOF on a thread, after `gate` opens (a
    /// message, or its sender dropped), `chunk` bytes per `read`.
    fn read_all(
        mut client: std::net::TcpStream,
        gate: Option<mpsc::Receiver<()>>,
        chunk: usize,
    ) -> JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            if let Some(gate) = gate {
                let _ = gate.recv();
            }
            let mut out = Vec::new();
            let mut buf = vec![0u8; chunk];
            loop {
                match client.read(&mut buf) {
                    Ok(0) => return out,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("client read failed after {} bytes: {e}", out.len()),
                }
            }
        })
    }

    #[derive(Default, Debug)]
    struct Log {
        /// What each successful `poll_write_vectored` returned.
        writes: Vec<usize>,
        /// How many times it returned `Pending`.
        pendings: usize,
        /// The socket was corked while a placeholder was being sent.
        corked_during_body: bool,
    }

    /// A hang guard, not a timing assertion: a write stuck for half a minute
    /// fails the test instead of hanging it.
    async fn guard<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(30), f)
            .await
            .expect("write stuck")
    }

    /// hyper's queued writer, in small: offers all of `queue`, advances by
    /// the count written, until the queue is empty; then flushes. Calls
    /// `on_pending(bytes written so far)` whenever the I/O returns `Pending`.
    async fn drive(
        io: &mut SendfileIo,
        queue: &mut VecDeque<Bytes>,
        log: &mut Log,
        mut on_pending: impl FnMut(usize),
    ) -> io::Result<()> {
        let mut written = 0;
        for _ in 0..1_000_000 {
            while queue.front().is_some_and(Bytes::is_empty) {
                queue.pop_front();
            }
            let Some(front) = queue.front() else {
                return guard(poll_fn(|cx| Pin::new(&mut *io).poll_flush(cx))).await;
            };
            let front_len = front.len();
            let front_is_placeholder = placeholder_offset(front).is_some();
            let n = guard(poll_fn(|cx| {
                let slices: Vec<IoSlice<'_>> = queue.iter().map(|b| IoSlice::new(b)).collect();
                let r = Pin::new(&mut *io).poll_write_vectored(cx, &slices);
                if r.is_pending() {
                    log.pendings += 1;
                    on_pending(written);
                }
                r
            }))
            .await?;
            if n == 0 {
                // What hyper does with a zero-length write of queued bytes.
                return Err(io::ErrorKind::WriteZero.into());
            }
            if front_is_placeholder {
                assert!(
                    n <= front_len,
                    "one write ({n}) went past the front placeholder ({front_len})"
                );
                log.corked_during_body |= io.corked;
            }
            log.writes.push(n);
            written += n;
            let mut left = n;
            while left > 0 {
                let front = queue.front_mut().expect("wrote more than was queued");
                let step = left.min(front.len());
                // Moves the pointer only: a placeholder is never read.
                front.advance(step);
                left -= step;
                if front.is_empty() {
                    queue.pop_front();
                }
            }
        }
        panic!("write loop did not finish");
    }

    /// The frames `body` yields, as hyper would queue them.
    async fn frames(mut body: SendfileBody) -> VecDeque<Bytes> {
        let mut out = VecDeque::new();
        for _ in 0..1000 {
            match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                Some(frame) => out.push_back(frame.unwrap().into_data().unwrap()),
                None => return out,
            }
        }
        panic!("body did not end");
    }

    fn pending_len(link: &ZeroCopyLink) -> usize {
        link.0.lock().unwrap().pending.len()
    }

    fn cork_is_on(io: &SendfileIo) -> bool {
        rustix::net::sockopt::tcp_cork(io.io.inner()).unwrap()
    }

    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n";

    /// A tiny send buffer and a client that reads nothing until the server
    /// has hit EAGAIN, then reads slowly: `sendfile` returns short counts and
    /// `WouldBlock`, hyper re-offers `ptr + n`, and what arrives is exactly
    /// the head and then the file region, in order.
    #[tokio::test]
    async fn partial_writes_and_eagain_deliver_exactly_the_region() {
        let data = pseudo_random(2 << 20, 1);
        let file = temp_file(&data);
        let (offset, len) = (4097usize, (1 << 20) + 333);
        // No max-chunk yields here: every Pending is the socket being full.
        let (mut io, link, client) = pair(REGION_LEN, Some(4096), Some(4096)).await;
        let (open, gate) = mpsc::channel();
        let reader = read_all(client, Some(gate), 1000);

        let body = SendfileBody::new(
            &link,
            file,
            VecDeque::from([Segment::File {
                offset: offset as u64,
                len: len as u64,
            }]),
        );
        let mut queue = frames(body).await;
        assert_eq!(queue.len(), 1);
        assert_eq!(pending_len(&link), 1, "registered when polled");
        queue.push_front(Bytes::from_static(HEAD));

        let mut log = Log::default();
        drive(&mut io, &mut queue, &mut log, |_| {
            let _ = open.send(());
        })
        .await
        .unwrap();

        assert_eq!(
            log.writes[0],
            HEAD.len(),
            "head first, short count: {log:?}"
        );
        assert!(log.pendings > 0, "never hit EAGAIN: {log:?}");
        let body_writes = &log.writes[1..];
        assert!(
            body_writes.len() > 2 && body_writes[0] < len,
            "sendfile never returned a short count: {log:?}"
        );
        assert_eq!(body_writes.iter().sum::<usize>(), len);
        assert!(log.corked_during_body);
        assert_eq!(pending_len(&link), 0, "retired once all written");
        assert!(!io.corked && !cork_is_on(&io), "uncorked on flush");

        drop(io);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), HEAD.len() + len);
        assert!(got[..HEAD.len()] == *HEAD);
        assert!(
            got[HEAD.len()..] == data[offset..offset + len],
            "wrong bytes"
        );
    }

    /// The head and the first body slice come in one call: the ordinary
    /// slices before the placeholder are written (one `writev`) and that
    /// short count returned; the placeholder goes by sendfile on the next
    /// call, and ordinary bytes after it (chunked framing) after it.
    #[tokio::test]
    async fn head_and_body_in_one_call() {
        let data = pseudo_random(100_000, 2);
        let file = temp_file(&data);
        let (mut io, link, client) = pair(2 << 20, None, None).await;
        let reader = read_all(client, None, 64 << 10);

        link.push(file, 1000, 50_000, None);
        let head: [&'static [u8]; 3] = [
            b"HTTP/1.1 200 OK\r\n",
            b"transfer-encoding: chunked\r\n\r\n",
            b"c350\r\n",
        ];
        let trailer: &'static [u8] = b"\r\n0\r\n\r\n";
        let mut queue: VecDeque<Bytes> = head.iter().map(|h| Bytes::from_static(h)).collect();
        queue.push_back(placeholder(50_000));
        queue.push_back(Bytes::from_static(trailer));

        let slices: Vec<IoSlice<'_>> = queue.iter().map(|b| IoSlice::new(b)).collect();
        let n = guard(poll_fn(|cx| {
            Pin::new(&mut io).poll_write_vectored(cx, &slices)
        }))
        .await
        .unwrap();
        let head_len: usize = head.iter().map(|h| h.len()).sum();
        assert_eq!(
            n, head_len,
            "only the ordinary slices before the placeholder"
        );
        assert!(io.corked, "corked once a file body is pending");
        assert!(cork_is_on(&io));
        drop(slices);

        for _ in 0..head.len() {
            queue.pop_front();
        }
        let mut log = Log::default();
        drive(&mut io, &mut queue, &mut log, |_| {}).await.unwrap();
        assert_eq!(log.writes.iter().sum::<usize>(), 50_000 + trailer.len());
        assert_eq!(*log.writes.last().unwrap(), trailer.len(), "{log:?}");
        assert_eq!(pending_len(&link), 0);
        assert!(!cork_is_on(&io));

        drop(io);
        let got = reader.join().unwrap();
        let mut want = head.concat();
        want.extend_from_slice(&data[1000..51_000]);
        want.extend_from_slice(trailer);
        assert!(got == want, "got {} bytes, want {}", got.len(), want.len());
    }

    /// A placeholder that does not match the front registration — none at
    /// all, a shorter one (what hyper's `Limited` would make), one that
    /// claims bytes already sent — is an I/O error and sends nothing: no
    /// zeros, no other region. Ordinary bytes before it still go.
    #[tokio::test]
    async fn mismatched_placeholder_is_an_error_and_sends_nothing() {
        let data = pseudo_random(10_000, 3);
        type Setup = fn(&ZeroCopyLink, Arc<File>) -> VecDeque<Bytes>;
        let cases: [(&str, Setup); 5] = [
            ("no registration", |_, _| VecDeque::from([placeholder(100)])),
            ("shorter than registered", |link, file| {
                link.push(file, 0, 200, None);
                VecDeque::from([placeholder(100)])
            }),
            ("longer than registered", |link, file| {
                link.push(file, 0, 200, None);
                VecDeque::from([placeholder(300)])
            }),
            ("ahead of what was sent", |link, file| {
                link.push(file, 0, 200, None);
                VecDeque::from([placeholder(200).slice(50..)])
            }),
            ("after a head", |_, _| {
                VecDeque::from([Bytes::from_static(HEAD), placeholder(100)])
            }),
        ];
        for (label, setup) in cases {
            let (mut io, link, client) = pair(2 << 20, None, None).await;
            let reader = read_all(client, None, 4096);
            let mut queue = setup(&link, temp_file(&data));
            let has_head = queue.len() == 2;
            let mut log = Log::default();
            let err = drive(&mut io, &mut queue, &mut log, |_| {})
                .await
                .expect_err(label);
            assert_eq!(err.kind(), io::ErrorKind::Other, "{label}: {err}");
            assert!(err.to_string().contains("placeholder"), "{label}: {err}");
            drop(io);
            let got = reader.join().unwrap();
            if has_head {
                assert_eq!(got, HEAD, "{label}");
            } else {
                assert!(got.is_empty(), "{label}: {} bytes sent", got.len());
            }
        }
    }

    /// Adjacent placeholders (back-to-back segments, here of one file and
    /// contiguous) are each checked against their own registration and sent
    /// in order: one call never spans two of them (`drive` asserts it).
    /// sluice does not merge them into one `sendfile` — see the module docs:
    /// hyper flushes a large placeholder before polling the next one.
    #[tokio::test]
    async fn adjacent_placeholders_are_sent_in_order() {
        let data = pseudo_random(300_000, 4);
        let file = temp_file(&data);
        let (mut io, link, client) = pair(2 << 20, Some(16 << 10), None).await;
        let reader = read_all(client, None, 8192);

        let body = SendfileBody::new(
            &link,
            file,
            VecDeque::from([
                Segment::File {
                    offset: 0,
                    len: 70_000,
                },
                Segment::File {
                    offset: 70_000,
                    len: 90_000,
                },
                Segment::Bytes(Bytes::from_static(b"--")),
                Segment::File { offset: 5, len: 1 },
                Segment::File {
                    offset: 200_000,
                    len: 100_000,
                },
            ]),
        );
        let mut queue = frames(body).await;
        assert_eq!(queue.len(), 5);
        assert_eq!(pending_len(&link), 4);
        let mut log = Log::default();
        drive(&mut io, &mut queue, &mut log, |_| {}).await.unwrap();
        assert_eq!(pending_len(&link), 0);
        drop(io);
        let got = reader.join().unwrap();
        let mut want = data[..160_000].to_vec();
        want.extend_from_slice(b"--");
        want.push(data[5]);
        want.extend_from_slice(&data[200_000..]);
        assert!(got == want, "got {} bytes, want {}", got.len(), want.len());
    }

    /// A segment longer than the placeholder region is yielded as adjacent
    /// placeholders, each registered for its own part of the file.
    #[tokio::test]
    async fn segment_longer_than_the_region_is_split() {
        // Sparse: no disk blocks, nothing sent.
        let file = tempfile::tempfile().unwrap();
        let len = REGION_LEN as u64 + 3;
        file.set_len(len + 10).unwrap();
        let (_io, link, _client) = pair(2 << 20, None, None).await;
        let mut body = SendfileBody::new(
            &link,
            Arc::new(file),
            VecDeque::from([Segment::File { offset: 10, len }]),
        );
        assert_eq!(body.size_hint().exact(), Some(len));
        let first = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert_eq!(placeholder_offset(&first), Some(0));
        assert_eq!(first.len(), REGION_LEN);
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        let second = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert_eq!((placeholder_offset(&second), second.len()), (Some(0), 3));
        assert!(body.is_end_stream());
        assert!(poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
            .await
            .is_none());
        let state = link.0.lock().unwrap();
        let regs: Vec<(u64, usize, usize)> = state
            .pending
            .iter()
            .map(|p| (p.offset, p.len, p.sent))
            .collect();
        assert_eq!(regs, [(10, REGION_LEN, 0), (10 + REGION_LEN as u64, 3, 0)]);
    }

    /// After a call that filled a whole `max_chunk`, the I/O yields once
    /// (`Pending`, having woken itself) and then carries on from where it was.
    #[tokio::test]
    async fn full_max_chunk_yields_and_resumes() {
        let data = pseudo_random(64 << 10, 5);
        let file = temp_file(&data);
        let (mut io, link, client) = pair(4096, None, None).await;
        let reader = read_all(client, None, 64 << 10);
        link.push(file, 0, data.len(), None);
        let mut queue = VecDeque::from([placeholder(data.len())]);
        let mut log = Log::default();
        drive(&mut io, &mut queue, &mut log, |_| {}).await.unwrap();
        assert!(log.writes.iter().all(|&n| n <= 4096), "{log:?}");
        assert!(log.pendings > 0, "never yielded: {log:?}");
        drop(io);
        assert!(reader.join().unwrap() == data);
    }

    fn truncations() -> u64 {
        crate::stats::get().truncated_files.load(Ordering::Relaxed)
    }

    /// The file was truncated before its region was sent: `sendfile` sends
    /// what is left, then returns 0, which is an `UnexpectedEof` error (so
    /// hyper ends the connection) — no padding, no hang.
    #[tokio::test]
    async fn file_truncated_before_sending_is_an_error_without_padding() {
        let data = pseudo_random(1 << 20, 6);
        let file = temp_file(&data);
        let (mut io, link, client) = pair(2 << 20, None, None).await;
        let reader = read_all(client, None, 64 << 10);
        let before = truncations();
        link.push(file.clone(), 0, data.len(), None);
        file.set_len(300_001).unwrap();
        let mut queue = VecDeque::from([Bytes::from_static(HEAD), placeholder(data.len())]);
        let mut log = Log::default();
        let err = drive(&mut io, &mut queue, &mut log, |_| {})
            .await
            .expect_err("a truncated file cannot complete");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        assert_eq!(log.writes.iter().sum::<usize>(), HEAD.len() + 300_001);
        assert!(truncations() > before);
        drop(io);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), HEAD.len() + 300_001);
        assert!(got[HEAD.len()..] == data[..300_001]);
    }

    /// The file shrinks while the socket is full: the bytes sent before
    /// and after are exactly the file's prefix up to the new end, then the
    /// transfer fails.
    #[tokio::test]
    async fn file_truncated_mid_send_is_an_error_without_padding() {
        let data = pseudo_random(2 << 20, 7);
        let file = temp_file(&data);
        let (mut io, link, client) = pair(REGION_LEN, Some(4096), Some(4096)).await;
        let (open, gate) = mpsc::channel();
        let reader = read_all(client, Some(gate), 4096);
        link.push(file.clone(), 0, data.len(), None);
        let mut queue = VecDeque::from([placeholder(data.len())]);
        let mut log = Log::default();
        let mut cut = None;
        let err = drive(&mut io, &mut queue, &mut log, |sent| {
            if cut.is_none() {
                // Three pages past what sendfile has taken so far, so no
                // page already queued on the socket is the one cut.
                let at = sent + 3 * 4096 + 123;
                file.set_len(at as u64).unwrap();
                cut = Some(at);
                let _ = open.send(());
            }
        })
        .await
        .expect_err("a truncated file cannot complete");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        let cut = cut.expect("the socket never filled");
        assert_eq!(log.writes.iter().sum::<usize>(), cut);
        drop(io);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), cut);
        assert!(got == data[..cut]);
    }

    /// Serves `requests` (sent at once, pipelined) with real hyper over a
    /// [`SendfileIo`], configured as [`crate::connection`] does (`writev(true)`);
    /// every response is `segment` of `file`, sent by sendfile. Returns what
    /// the client received up to EOF and how hyper's connection ended.
    async fn through_hyper(
        file: Arc<File>,
        segment: (u64, u64),
        requests: &[u8],
    ) -> (Vec<u8>, Result<(), hyper::Error>, ZeroCopyLink) {
        let (io, link, client) = pair(2 << 20, None, None).await;
        (&client).write_all(requests).unwrap();
        let reader = read_all(client, None, 64 << 10);
        let service_link = link.clone();
        let service = hyper::service::service_fn(move |_req| {
            let (offset, len) = segment;
            let body = SendfileBody::new(
                &service_link,
                file.clone(),
                VecDeque::from([Segment::File { offset, len }]),
            );
            let response = http::Response::builder()
                .header(http::header::CONTENT_LENGTH, len)
                .body(body)
                .unwrap();
            std::future::ready(Ok::<_, std::convert::Infallible>(response))
        });
        let served = guard(
            hyper::server::conn::http1::Builder::new()
                .writev(true)
                .serve_connection(io, service),
        )
        .await;
        (reader.join().unwrap(), served, link)
    }

    /// Splits one response off the front of `bytes`: its head, and its
    /// body if `with_body` (by its Content-Length).
    fn split_response(bytes: &mut &[u8], with_body: bool) -> (String, Vec<u8>) {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head")
            + 4;
        let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .expect("content-length");
        let body_len = if with_body {
            len.min(bytes.len() - end)
        } else {
            0
        };
        let body = bytes[end..end + body_len].to_vec();
        *bytes = &bytes[end + body_len..];
        (head, body)
    }

    /// Through hyper itself: pipelined GET, HEAD, GET on one connection.
    /// Bodies arrive byte-identical (zeros would mean a placeholder was
    /// read), HEAD registers nothing, and every registration is retired.
    #[tokio::test]
    async fn pipelined_requests_through_hyper() {
        let data = pseudo_random(3 << 20, 8);
        let (offset, len) = (777usize, (2 << 20) + 1);
        let requests = b"GET /a HTTP/1.1\r\nhost: t\r\n\r\n\
                         HEAD /a HTTP/1.1\r\nhost: t\r\n\r\n\
                         GET /a HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n";
        let (got, served, link) =
            through_hyper(temp_file(&data), (offset as u64, len as u64), requests).await;
        served.unwrap();
        assert_eq!(pending_len(&link), 0);
        let mut rest = &got[..];
        for with_body in [true, false, true] {
            let (head, body) = split_response(&mut rest, with_body);
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            if with_body {
                assert!(body == data[offset..offset + len], "wrong body");
            }
        }
        assert!(
            rest.is_empty(),
            "{} bytes after the last response",
            rest.len()
        );
    }

    /// Through hyper: the file was truncated under a response. The client
    /// gets the head and the bytes that exist, then the connection ends —
    /// no padding to the promised length, no hang.
    #[tokio::test]
    async fn truncated_file_ends_the_connection_through_hyper() {
        let data = pseudo_random(4 << 20, 9);
        let file = temp_file(&data);
        file.set_len((1 << 20) + 5).unwrap();
        // One request: nothing left unread when the server closes, so the
        // close is a FIN, not a reset.
        let requests = b"GET /a HTTP/1.1\r\nhost: t\r\n\r\n";
        let (got, served, _link) = through_hyper(file, (0, 4 << 20), requests).await;
        assert!(served.is_err(), "hyper finished a truncated body");
        let mut rest = &got[..];
        let (head, body) = split_response(&mut rest, true);
        assert!(
            head.contains(&format!("content-length: {}", 4 << 20)),
            "{head}"
        );
        assert_eq!(body.len(), (1 << 20) + 5);
        assert!(body == data[..body.len()]);
        assert!(rest.is_empty(), "bytes after the cut: {}", rest.len());
    }
}
