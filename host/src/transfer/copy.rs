//! The copying path: large `pread`s on the blocking pool, the next read
//! overlapped with sending the current chunk, at most two chunks alive.
//!
//! Used wherever bytes must pass through user space (compression; later TLS
//! and HTTP/2) or the policy disallows zero-copy. The per-chunk cost (a thread
//! hand-off) is what makes chunk size matter, so the chunk is the policy's
//! choice (default 256 KiB), clamped by the host.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::PollSemaphore;

use super::compress::Encoder;
use super::Segment;
use crate::stats;

/// Chunks alive at once per body: the one being sent and the one being read.
pub const CHUNKS_IN_FLIGHT: usize = 2;

/// A chunk buffer that returns its permit when hyper drops it.
struct Chunk {
    buf: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

/// What the blocking side owns between reads.
struct Reader {
    file: Arc<File>,
    segments: VecDeque<Segment>,
    chunk: usize,
    encoder: Option<Encoder>,
}

impl Reader {
    /// Whether the front segment needs a read (or the encoder a finish).
    fn needs_io(&self) -> bool {
        matches!(self.segments.front(), Some(Segment::File { .. })) || (self.segments.is_empty() && self.encoder.is_some())
    }

    /// Reads (and compresses) the next output chunk. Blocking.
    fn read_next(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            let Some(Segment::File { offset, len }) = self.segments.front().cloned() else {
                return match self.encoder.take() {
                    Some(e) => e.finish().map(Some),
                    None => Ok(None),
                };
            };
            let want = len.min(self.chunk as u64) as usize;
            let mut buf = Vec::with_capacity(want);
            while buf.len() < want {
                let at = offset + buf.len() as u64;
                let n = rustix::io::pread(&*self.file, rustix::buffer::spare_capacity(&mut buf), at)?;
                if n == 0 {
                    stats::add(&stats::get().truncated_files, 1);
                    tracing::warn!(offset = at, "file shrank while being sent; closing connection");
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file truncated during read"));
                }
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
            match &mut self.encoder {
                None => return Ok(Some(buf)),
                Some(e) => {
                    let out = e.push(&buf)?;
                    if !out.is_empty() {
                        return Ok(Some(out));
                    }
                }
            }
        }
    }
}

type ReadResult = (Reader, io::Result<Option<Vec<u8>>>, OwnedSemaphorePermit);

/// A body read from a file in large chunks, optionally compressed.
pub struct CopyBody {
    reader: Option<Reader>,
    inflight: Option<JoinHandle<ReadResult>>,
    permits: PollSemaphore,
    /// Exact remaining length, when not compressing.
    remaining: Option<u64>,
    done: bool,
}

impl CopyBody {
    pub fn new(file: Arc<File>, segments: VecDeque<Segment>, chunk: usize, encoder: Option<Encoder>) -> CopyBody {
        let remaining = encoder.is_none().then(|| segments.iter().map(Segment::len).sum());
        CopyBody {
            reader: Some(Reader { file, segments, chunk, encoder }),
            inflight: None,
            permits: PollSemaphore::new(Arc::new(Semaphore::new(CHUNKS_IN_FLIGHT))),
            remaining,
            done: false,
        }
    }

    fn start_read(&mut self, permit: OwnedSemaphorePermit) {
        let mut reader = self.reader.take().expect("no read in flight");
        self.inflight = Some(tokio::task::spawn_blocking(move || {
            let result = reader.read_next();
            (reader, result, permit)
        }));
    }

    /// Starts reading the next chunk while the current one is being sent, if
    /// a chunk slot is free.
    fn prefetch(&mut self) {
        if self.inflight.is_none() && self.reader.as_ref().is_some_and(Reader::needs_io) {
            if let Ok(permit) = self.permits.clone_inner().try_acquire_owned() {
                self.start_read(permit);
            }
        }
    }
}

impl Body for CopyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(handle) = &mut this.inflight {
                let joined = ready!(Pin::new(handle).poll(cx));
                this.inflight = None;
                let (reader, result, permit) = joined.map_err(io::Error::other)?;
                this.reader = Some(reader);
                match result {
                    Ok(Some(buf)) => {
                        if let Some(r) = &mut this.remaining {
                            *r -= buf.len() as u64;
                        }
                        let chunk = Bytes::from_owner(Chunk { buf, _permit: permit });
                        this.prefetch();
                        return Poll::Ready(Some(Ok(Frame::data(chunk))));
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            let reader = this.reader.as_mut().expect("reader is home when nothing is in flight");
            match reader.segments.front() {
                Some(Segment::Bytes(_)) => {
                    let Some(Segment::Bytes(b)) = reader.segments.pop_front() else { unreachable!() };
                    if let Some(r) = &mut this.remaining {
                        *r -= b.len() as u64;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                _ if !reader.needs_io() => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                _ => {}
            }
            let permit = ready!(this.permits.poll_acquire(cx)).ok_or_else(|| io::Error::other("semaphore closed"))?;
            this.start_read(permit);
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

use std::future::Future;
