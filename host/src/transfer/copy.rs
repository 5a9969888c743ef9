//! The copying path: large reads, the next one overlapped with sending the
//! current chunk, at most two chunks (and two reused buffers) alive per body.
//!
//! Used wherever bytes must pass through user space (compression; later TLS
//! and HTTP/2) or the policy disallows zero-copy. Each chunk costs a read,
//! a write and a trip through hyper, so the chunk is the policy's choice
//! (default 256 KiB), clamped by the host. Reads never block an async worker:
//! page-cache hits are copied in place with `preadv2(RWF_NOWAIT)`, anything
//! that would wait for the disk is read with `pread` on the blocking pool.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use rustix::io::{Errno, ReadWriteFlags};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::PollSemaphore;

use super::compress::Encoder;
use super::Segment;
use crate::stats;

/// Reads a small body whole, if every file byte of it is already in the page
/// cache (`RWF_NOWAIT`, so it may run on an async worker). `None` when a read
/// would wait for the disk or fails (the file shrank, say): the caller then
/// takes the ordinary path, which waits, or reports the failure, properly.
pub(crate) fn read_cached(file: &File, segments: &VecDeque<Segment>, total: u64) -> Option<Bytes> {
    let mut buf = Vec::with_capacity(usize::try_from(total).ok()?);
    let mut file_bytes = 0;
    for segment in segments {
        match *segment {
            Segment::Bytes(ref b) => buf.extend_from_slice(b),
            Segment::File { offset, len } => {
                let start = buf.len();
                buf.resize(start + usize::try_from(len).ok()?, 0);
                let mut at = start;
                while at < buf.len() {
                    let dst = &mut buf[at..];
                    let from = offset + (at - start) as u64;
                    match rustix::io::preadv2(
                        file,
                        &mut [IoSliceMut::new(dst)],
                        from,
                        ReadWriteFlags::NOWAIT,
                    ) {
                        Ok(n) if n > 0 => at += n,
                        _ => return None,
                    }
                }
                file_bytes += len;
            }
        }
    }
    stats::add(&stats::get().inline_bytes, file_bytes);
    Some(Bytes::from(buf))
}

/// Chunks alive at once per body: the one being sent and the one being read.
pub const CHUNKS_IN_FLIGHT: usize = 2;

/// The body's chunk buffers, reused: at most [`CHUNKS_IN_FLIGHT`] are ever
/// allocated per body, and each is zeroed once, not once per chunk.
#[derive(Default)]
struct Pool(Mutex<Vec<Vec<u8>>>);

impl Pool {
    fn take(&self, len: usize) -> Vec<u8> {
        let mut buf = self
            .0
            .lock()
            .expect("not poisoned")
            .pop()
            .unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf
    }

    fn put(&self, buf: Vec<u8>) {
        self.0.lock().expect("not poisoned").push(buf);
    }
}

/// A chunk buffer that goes back to its pool, and returns its permit, when
/// hyper drops it (the buffer first, so a new permit always finds it).
struct Chunk {
    buf: Vec<u8>,
    len: usize,
    pool: Option<Arc<Pool>>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.put(std::mem::take(&mut self.buf));
        }
    }
}

/// A read in progress: the buffer and how much of it is filled.
struct Filling {
    buf: Vec<u8>,
    filled: usize,
}

/// What a read produced.
enum Output {
    /// `len` file bytes in a pooled buffer.
    Pooled(Vec<u8>, usize),
    /// Compressed bytes.
    Owned(Vec<u8>),
}

/// What the blocking side owns between reads.
struct Reader {
    file: Arc<File>,
    segments: VecDeque<Segment>,
    chunk: usize,
    encoder: Option<Encoder>,
    /// Input buffer of the compressing path.
    input: Vec<u8>,
}

impl Reader {
    /// Whether the front segment needs a read (or the encoder a finish).
    fn needs_io(&self) -> bool {
        matches!(self.segments.front(), Some(Segment::File { .. }))
            || (self.segments.is_empty() && self.encoder.is_some())
    }

    /// Fills `f` with the front file segment's next chunk. With `nowait`,
    /// reads only what the page cache already holds (`RWF_NOWAIT`), so it
    /// may run on an async worker; returns `false` when it would have had to
    /// wait for the disk (what was read so far stays in `f`).
    fn fill(&mut self, f: &mut Filling, nowait: bool) -> io::Result<bool> {
        let Some(Segment::File { offset, len }) = self.segments.front().cloned() else {
            unreachable!("fill without a file segment in front");
        };
        let want = len.min(self.chunk as u64) as usize;
        while f.filled < want {
            let at = offset + f.filled as u64;
            let dst = &mut f.buf[f.filled..want];
            let n = if nowait {
                match rustix::io::preadv2(
                    &*self.file,
                    &mut [IoSliceMut::new(dst)],
                    at,
                    ReadWriteFlags::NOWAIT,
                ) {
                    Ok(n) => n,
                    Err(Errno::AGAIN) => return Ok(false),
                    Err(e) => return Err(e.into()),
                }
            } else {
                rustix::io::pread(&*self.file, dst, at)?
            };
            if n == 0 {
                stats::add(&stats::get().truncated_files, 1);
                tracing::warn!(
                    offset = at,
                    "file shrank while being sent; closing connection"
                );
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file truncated during read",
                ));
            }
            f.filled += n;
        }
        stats::add(&stats::get().copy_bytes, want as u64);
        stats::add(&stats::get().copy_reads, 1);
        if let Some(Segment::File { offset, len }) = self.segments.front_mut() {
            *offset += want as u64;
            *len -= want as u64;
            if *len == 0 {
                self.segments.pop_front();
            }
        }
        Ok(true)
    }

    /// Produces the next output chunk. Blocking.
    fn read_next(&mut self, mut f: Filling) -> io::Result<Option<Output>> {
        if self.encoder.is_none() {
            return match self.segments.front() {
                Some(Segment::File { .. }) => {
                    self.fill(&mut f, false)?;
                    Ok(Some(Output::Pooled(f.buf, f.filled)))
                }
                _ => Ok(None),
            };
        }
        // Compressing: the input buffer is the reader's own.
        let mut input = Filling {
            buf: std::mem::take(&mut self.input),
            filled: 0,
        };
        if input.buf.len() < self.chunk {
            input.buf.resize(self.chunk, 0);
        }
        let result = loop {
            if !matches!(self.segments.front(), Some(Segment::File { .. })) {
                break match self.encoder.take() {
                    Some(e) => e.finish().map(|out| Some(Output::Owned(out))),
                    None => Ok(None),
                };
            }
            input.filled = 0;
            if let Err(e) = self.fill(&mut input, false) {
                break Err(e);
            }
            let encoder = self.encoder.as_mut().expect("compressing");
            match encoder.push(&input.buf[..input.filled]) {
                Ok(out) if out.is_empty() => continue,
                Ok(out) => break Ok(Some(Output::Owned(out))),
                Err(e) => break Err(e),
            }
        };
        self.input = input.buf;
        result
    }
}

type ReadResult = (Reader, io::Result<Option<Output>>, OwnedSemaphorePermit);

/// A body read from a file in large chunks, optionally compressed.
///
/// Uncompressed chunks are first read on the async worker with
/// `preadv2(RWF_NOWAIT)`, which copies what the page cache holds and never
/// waits for the disk; only a chunk that would wait goes to the blocking
/// pool, and after such a chunk the next one is started at once (in place if
/// cached by then, else on the pool) while the current one is sent. A warm
/// file so costs no thread hand-off per chunk; a cold one never stalls the
/// worker and keeps its read overlapped. Compression always runs on the
/// blocking pool.
pub struct CopyBody {
    reader: Option<Reader>,
    inflight: Option<JoinHandle<ReadResult>>,
    permits: PollSemaphore,
    pool: Arc<Pool>,
    /// Exact remaining length, when not compressing.
    remaining: Option<u64>,
    /// A chunk read ahead in place by [`CopyBody::prefetch`], not yet yielded
    /// (or the error reading it met).
    ready: Option<io::Result<Bytes>>,
    done: bool,
}

impl CopyBody {
    pub fn new(
        file: Arc<File>,
        segments: VecDeque<Segment>,
        chunk: usize,
        encoder: Option<Encoder>,
    ) -> CopyBody {
        let remaining = encoder
            .is_none()
            .then(|| segments.iter().map(Segment::len).sum());
        CopyBody {
            reader: Some(Reader {
                file,
                segments,
                chunk,
                encoder,
                input: Vec::new(),
            }),
            inflight: None,
            permits: PollSemaphore::new(Arc::new(Semaphore::new(CHUNKS_IN_FLIGHT))),
            pool: Arc::default(),
            remaining,
            ready: None,
            done: false,
        }
    }

    /// A buffer for the next chunk, unless the reader compresses (it keeps
    /// its own input buffer).
    /// Sized for what the chunk will hold, so a small file costs a small
    /// buffer.
    fn filling(&self) -> Option<Filling> {
        let reader = self.reader.as_ref().expect("reader is home");
        let want = match reader.segments.front() {
            Some(Segment::File { len, .. }) => (*len).min(reader.chunk as u64) as usize,
            _ => 0,
        };
        reader.encoder.is_none().then(|| Filling {
            buf: self.pool.take(want),
            filled: 0,
        })
    }

    fn start_read(&mut self, permit: OwnedSemaphorePermit, filling: Option<Filling>) {
        let mut reader = self.reader.take().expect("no read in flight");
        self.inflight = Some(tokio::task::spawn_blocking(move || {
            let result = reader.read_next(filling.unwrap_or(Filling {
                buf: Vec::new(),
                filled: 0,
            }));
            (reader, result, permit)
        }));
    }

    /// After a chunk from the blocking pool: starts the next one while the
    /// current one is being sent, if a chunk slot is free. In place if the
    /// page cache now has it — the "cold" chunk was often only a readahead
    /// marker: `RWF_NOWAIT` implies `IOCB_NOIO`, so it stops short at a folio
    /// flagged for async readahead, and the blocking read that follows
    /// triggers the readahead and clears the flag — otherwise on the pool.
    fn prefetch(&mut self) {
        if self.inflight.is_some()
            || self.ready.is_some()
            || !self.reader.as_ref().is_some_and(Reader::needs_io)
        {
            return;
        }
        let Ok(permit) = self.permits.clone_inner().try_acquire_owned() else {
            return;
        };
        let mut filling = self.filling();
        if let Some(f) = &mut filling {
            let reader = self.reader.as_mut().expect("reader is home");
            match reader.fill(f, true) {
                Ok(true) => {
                    let Filling { buf, filled } = filling.expect("filled");
                    self.ready = Some(Ok(self.chunk(Output::Pooled(buf, filled), permit)));
                    return;
                }
                Ok(false) => {}
                Err(e) => {
                    self.ready = Some(Err(e));
                    return;
                }
            }
        }
        self.start_read(permit, filling);
    }

    /// Yields a chunk, accounting for it.
    fn emit(&mut self, chunk: Bytes) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        if let Some(r) = &mut self.remaining {
            *r -= chunk.len() as u64;
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn chunk(&mut self, output: Output, permit: OwnedSemaphorePermit) -> Bytes {
        let chunk = match output {
            Output::Pooled(buf, len) => Chunk {
                buf,
                len,
                pool: Some(self.pool.clone()),
                _permit: permit,
            },
            Output::Owned(buf) => Chunk {
                len: buf.len(),
                buf,
                pool: None,
                _permit: permit,
            },
        };
        Bytes::from_owner(chunk)
    }
}

impl Body for CopyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.ready.take() {
                Some(Ok(chunk)) => return this.emit(chunk),
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {}
            }
            if let Some(handle) = &mut this.inflight {
                let joined = ready!(Pin::new(handle).poll(cx));
                this.inflight = None;
                let (reader, result, permit) = joined.map_err(io::Error::other)?;
                this.reader = Some(reader);
                match result {
                    Ok(Some(output)) => {
                        let chunk = this.chunk(output, permit);
                        // The file is (partly) cold: keep reading ahead.
                        this.prefetch();
                        return this.emit(chunk);
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            let reader = this
                .reader
                .as_mut()
                .expect("reader is home when nothing is in flight");
            match reader.segments.front() {
                Some(Segment::Bytes(_)) => {
                    let Some(Segment::Bytes(b)) = reader.segments.pop_front() else {
                        unreachable!()
                    };
                    return this.emit(b);
                }
                _ if !reader.needs_io() => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                _ => {}
            }
            let permit = ready!(this.permits.poll_acquire(cx))
                .ok_or_else(|| io::Error::other("semaphore closed"))?;
            let mut filling = this.filling();
            if let Some(f) = &mut filling {
                // Warm path: what the page cache holds, copied right here.
                let reader = this.reader.as_mut().expect("reader is home");
                match reader.fill(f, true) {
                    Ok(true) => {
                        let Filling { buf, filled } = filling.expect("filled");
                        let chunk = this.chunk(Output::Pooled(buf, filled), permit);
                        return this.emit(chunk);
                    }
                    Ok(false) => {} // cold: finish this chunk on the blocking pool
                    Err(e) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            this.start_read(permit, filling);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
