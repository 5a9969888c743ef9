//! The copying path: large reads, the next one overlapped with sending the
//! current chunk, at most two chunks (and two reused buffers) alive per body.
//!
//! Used wherever bytes must pass through user space (compression, TLS,
//! HTTP/2) or the policy disallows zero-copy. Each chunk costs a read,
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
use std::task::{ready, Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use rustix::io::{Errno, ReadWriteFlags};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::PollSemaphore;

use super::budget::{BodyBudget, Charge, Charged, Waiter};
use super::compress::Encoder;
use super::Segment;
use crate::stats;

/// Reads a small body whole, if every file byte of it is already in the page
/// cache (`RWF_NOWAIT`, so it may run on an async worker) and the body budget
/// has room for it now. `None` when a read would wait for the disk, fails
/// (the file shrank, say), or the budget is spent: the caller then takes the
/// ordinary path, which waits (for the disk, or its turn) or reports the
/// failure, properly.
pub(crate) fn read_cached(
    file: &File,
    segments: &VecDeque<Segment>,
    total: u64,
    budget: &BodyBudget,
) -> Option<Bytes> {
    let size = usize::try_from(total).ok()?;
    let charge = budget.try_charge(size)?;
    let mut buf = Vec::with_capacity(size);
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
    Some(Bytes::from_owner(Charged {
        bytes: buf,
        charge: Some(charge),
    }))
}

/// Chunks alive at once per body: the one being sent and the one being read.
pub const CHUNKS_IN_FLIGHT: usize = 2;

/// A chunk buffer with the budget charge that covers it: a buffer kept for
/// reuse stays charged, so the budget counts every byte a body holds.
struct Buffer {
    buf: Vec<u8>,
    charge: Charge,
}

/// The body's chunk buffers, reused with their charges: at most
/// [`CHUNKS_IN_FLIGHT`] are ever allocated per body, and each is zeroed
/// once, not once per chunk.
#[derive(Default)]
struct Pool(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    buffers: Vec<Buffer>,
    /// The body, when it waits for budget: a buffer coming back must wake
    /// it, or it would wait for bytes while holding some (and bodies doing
    /// that would wait on each other).
    waiting: Option<Waker>,
    /// Whether buffers coming back are kept: not while the body's caller
    /// waits for something else (see `CopyBody::release_kept`).
    dropping: bool,
}

impl Pool {
    /// A kept buffer of at least `len` bytes; smaller ones are dropped
    /// (their charge given back).
    fn take(&self, len: usize) -> Option<Buffer> {
        let mut kept = self.0.lock().expect("not poisoned");
        while let Some(b) = kept.buffers.pop() {
            if b.buf.len() >= len {
                return Some(b);
            }
        }
        None
    }

    fn put(&self, b: Buffer) {
        let waiting = {
            let mut kept = self.0.lock().expect("not poisoned");
            if kept.dropping {
                return; // its charge is given back with it
            }
            kept.buffers.push(b);
            kept.waiting.take()
        };
        if let Some(w) = waiting {
            w.wake();
        }
    }

    /// Wakes `waker` when a buffer comes back.
    fn notify(&self, waker: &Waker) {
        self.0.lock().expect("not poisoned").waiting = Some(waker.clone());
    }

    /// Drops the kept buffers, and those coming back until [`Pool::keep`].
    fn clear(&self) {
        let mut kept = self.0.lock().expect("not poisoned");
        kept.buffers.clear();
        kept.dropping = true;
    }

    fn keep(&self) {
        self.0.lock().expect("not poisoned").dropping = false;
    }
}

/// What one chunk holds besides its bytes: its slot among the body's
/// [`CHUNKS_IN_FLIGHT`] and its charge to the host-wide body budget.
struct Hold {
    slot: OwnedSemaphorePermit,
    charge: Charge,
}

/// A chunk buffer that goes back to its pool with its charge, and returns
/// its slot, when hyper (or h2) drops it (the buffer first, so a new slot
/// always finds it); a buffer not pooled gives its charge back.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
    pool: Option<Arc<Pool>>,
    hold: Option<Hold>,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let (Some(pool), Some(Hold { slot, charge })) = (&self.pool, self.hold.take()) {
            pool.put(Buffer {
                buf: std::mem::take(&mut self.buf),
                charge,
            });
            drop(slot);
        }
    }
}

/// A read in progress: the buffer, how much of it to fill, and how much is
/// filled.
struct Filling {
    buf: Vec<u8>,
    want: usize,
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

    /// Bytes the next read takes from the file, at most `limit`; when
    /// compressing, the most output one input chunk makes (what it is
    /// charged).
    fn next_len(&self, limit: usize) -> usize {
        match self.segments.front() {
            Some(Segment::File { len, .. }) if self.encoder.is_none() => {
                (*len).min(self.chunk as u64).min(limit as u64) as usize
            }
            _ => Encoder::output_bound(self.chunk),
        }
    }

    /// Fills `f` with the next `f.want` bytes of the front file segment. With
    /// `nowait`, reads only what the page cache already holds
    /// (`RWF_NOWAIT`), so it may run on an async worker; returns `false` when
    /// it would have had to wait for the disk (what was read so far stays in
    /// `f`).
    fn fill(&mut self, f: &mut Filling, nowait: bool) -> io::Result<bool> {
        let Some(Segment::File { offset, len }) = self.segments.front().cloned() else {
            unreachable!("fill without a file segment in front");
        };
        let want = (len.min(f.want as u64) as usize).min(f.buf.len());
        while f.filled < want {
            let at = offset + f.filled as u64;
            let dst = &mut f.buf[f.filled..want];
            let n = if nowait {
                // Tests can make the page cache "miss" from a given offset on.
                #[cfg(test)]
                let Some(dst) = tests::cached_part(at, dst) else {
                    return Ok(false);
                };
                match rustix::io::preadv2(
                    &*self.file,
                    &mut [IoSliceMut::new(dst)],
                    at,
                    ReadWriteFlags::NOWAIT,
                ) {
                    Ok(n) => n,
                    // EOPNOTSUPP: the file system does not take RWF_NOWAIT
                    // at all (tmpfs on Linux 6.18, say): read it as a miss.
                    Err(Errno::AGAIN | Errno::OPNOTSUPP) => return Ok(false),
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
            want: self.chunk,
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

type ReadResult = (Reader, io::Result<Option<Output>>, Hold);

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
///
/// Memory: at most [`CHUNKS_IN_FLIGHT`] chunks exist per body, and each is
/// charged to the host-wide [`BodyBudget`] before it is read (an encoder's
/// state, too, for the body's life): a body that finds the budget spent
/// waits for its turn, holding nothing. A caller that can only send so much
/// now (an HTTP/2 stream's flow-control window) asks for at most that
/// ([`CopyBody::poll_chunk`]), so nothing is read that cannot leave.
pub struct CopyBody {
    reader: Option<Reader>,
    inflight: Option<JoinHandle<ReadResult>>,
    permits: PollSemaphore,
    /// A chunk slot acquired by a poll that then had to wait for budget.
    slot: Option<OwnedSemaphorePermit>,
    budget: Waiter,
    /// The encoder's state, charged before the first read and held until
    /// the body is dropped (`encoder_cost` bytes).
    encoder_charge: Option<Charge>,
    encoder_cost: usize,
    pool: Arc<Pool>,
    /// Exact remaining length, when not compressing.
    remaining: Option<u64>,
    /// The most the current poll may yield (`poll_chunk`'s limit).
    limit: usize,
    /// `release_kept` was called: the pool drops returning buffers until
    /// the next poll.
    released: bool,
    /// A chunk read ahead in place by [`CopyBody::prefetch`], or the rest of
    /// one larger than a limit, not yet yielded (or the error reading it met).
    ready: Option<io::Result<Bytes>>,
    done: bool,
}

impl CopyBody {
    pub fn new(
        file: Arc<File>,
        segments: VecDeque<Segment>,
        chunk: usize,
        encoder: Option<Encoder>,
        budget: &Arc<BodyBudget>,
    ) -> CopyBody {
        let remaining = encoder
            .is_none()
            .then(|| segments.iter().map(Segment::len).sum());
        // The encoder's own state, and the input buffer it reads into.
        let encoder_cost = encoder.as_ref().map_or(0, |e| e.memory() + chunk);
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
            slot: None,
            budget: budget.waiter(),
            encoder_charge: None,
            encoder_cost,
            pool: Arc::default(),
            remaining,
            limit: usize::MAX,
            released: false,
            ready: None,
            done: false,
        }
    }

    /// Gives back the buffers kept for reuse (and their charges), and those
    /// of chunks still in flight as they come back, until the next
    /// [`CopyBody::poll_chunk`]: for a caller about to wait for something
    /// other than this body (an HTTP/2 stream waiting for its window), which
    /// must not hold budget meanwhile — streams holding buffers while they
    /// wait for windows, and streams holding windows while they wait for
    /// budget, would wait on each other.
    pub fn release_kept(&mut self) {
        self.pool.clear();
        self.released = true;
    }

    /// Whether the body is compressed on the fly (its length is then unknown).
    pub fn compressed(&self) -> bool {
        self.remaining.is_none()
    }

    /// Whether reads go through the encoder (which keeps its own input
    /// buffer) rather than into pooled buffers.
    fn compressing(&self) -> bool {
        self.reader
            .as_ref()
            .expect("reader is home")
            .encoder
            .is_some()
    }

    /// The buffer and charge for the next read of `want` bytes: a kept
    /// buffer (already charged), or a new one once `charge` gives the
    /// bytes; `None` as the buffer when compressing (the output is
    /// charged, not a buffer). Sized for what the chunk will hold, so a
    /// small file costs a small buffer.
    fn buffer(
        &mut self,
        want: usize,
        charge: impl FnOnce(&mut Waiter) -> Option<Charge>,
    ) -> Option<(Option<Filling>, Charge)> {
        let filling = |buf| Filling {
            buf,
            want,
            filled: 0,
        };
        if self.compressing() {
            return charge(&mut self.budget).map(|c| (None, c));
        }
        if let Some(Buffer { buf, charge }) = self.pool.take(want) {
            return Some((Some(filling(buf)), charge));
        }
        let c = charge(&mut self.budget)?;
        Some((Some(filling(vec![0; want])), c))
    }

    fn start_read(&mut self, hold: Hold, filling: Option<Filling>) {
        let mut reader = self.reader.take().expect("no read in flight");
        self.inflight = Some(tokio::task::spawn_blocking(move || {
            let result = reader.read_next(filling.unwrap_or(Filling {
                buf: Vec::new(),
                want: 0,
                filled: 0,
            }));
            (reader, result, hold)
        }));
    }

    /// After a chunk from the blocking pool: starts the next one while the
    /// current one is being sent, if a chunk slot and the budget are free
    /// now. In place if the page cache now has it — the "cold" chunk was
    /// often only a readahead marker: `RWF_NOWAIT` implies `IOCB_NOIO`, so it
    /// stops short at a folio flagged for async readahead, and the blocking
    /// read that follows triggers the readahead and clears the flag —
    /// otherwise on the pool.
    fn prefetch(&mut self) {
        if self.inflight.is_some()
            || self.ready.is_some()
            || !self.reader.as_ref().is_some_and(Reader::needs_io)
        {
            return;
        }
        let Ok(slot) = self.permits.clone_inner().try_acquire_owned() else {
            return;
        };
        let want = self
            .reader
            .as_ref()
            .expect("reader is home")
            .next_len(self.limit);
        let Some((mut filling, charge)) = self.buffer(want, |b| b.try_charge(want)) else {
            return;
        };
        let hold = Hold { slot, charge };
        if let Some(f) = &mut filling {
            let reader = self.reader.as_mut().expect("reader is home");
            match reader.fill(f, true) {
                Ok(true) => {
                    let Filling { buf, filled, .. } = filling.expect("filled");
                    self.ready = Some(Ok(self.chunk(Output::Pooled(buf, filled), hold)));
                    return;
                }
                Ok(false) => {}
                Err(e) => {
                    self.ready = Some(Err(e));
                    return;
                }
            }
        }
        self.start_read(hold, filling);
    }

    /// Yields a chunk of at most `self.limit` bytes, keeping the rest for the
    /// next poll, and accounts for it.
    fn emit(&mut self, mut chunk: Bytes) -> Poll<Option<io::Result<Bytes>>> {
        if chunk.len() > self.limit {
            let rest = chunk.split_off(self.limit);
            self.ready = Some(Ok(rest));
        }
        if let Some(r) = &mut self.remaining {
            *r -= chunk.len() as u64;
        }
        Poll::Ready(Some(Ok(chunk)))
    }

    fn chunk(&mut self, output: Output, hold: Hold) -> Bytes {
        let chunk = match output {
            Output::Pooled(buf, len) => Chunk {
                buf,
                len,
                pool: Some(self.pool.clone()),
                hold: Some(hold),
            },
            Output::Owned(buf) => Chunk {
                len: buf.len(),
                buf,
                pool: None,
                hold: Some(hold),
            },
        };
        Bytes::from_owner(chunk)
    }

    /// The next chunk, of at most `limit` bytes (at least one): only what
    /// may leave now is read. `hyper`'s HTTP/1 writer asks without a limit
    /// (`poll_frame`); the HTTP/2 writer asks for what the stream's window
    /// can take.
    pub fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
        limit: usize,
    ) -> Poll<Option<io::Result<Bytes>>> {
        self.limit = limit.max(1);
        if self.released {
            self.released = false;
            self.pool.keep();
        }
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match self.ready.take() {
                Some(Ok(chunk)) => return self.emit(chunk),
                Some(Err(e)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {}
            }
            if let Some(handle) = &mut self.inflight {
                let joined = ready!(Pin::new(handle).poll(cx));
                self.inflight = None;
                let (reader, result, hold) = joined.map_err(io::Error::other)?;
                self.reader = Some(reader);
                match result {
                    Ok(Some(output)) => {
                        let chunk = self.chunk(output, hold);
                        // The file is (partly) cold: keep reading ahead.
                        self.prefetch();
                        return self.emit(chunk);
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        self.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            let reader = self
                .reader
                .as_mut()
                .expect("reader is home when nothing is in flight");
            match reader.segments.front() {
                Some(Segment::Bytes(_)) => {
                    let Some(Segment::Bytes(b)) = reader.segments.pop_front() else {
                        unreachable!()
                    };
                    return self.emit(b);
                }
                _ if !reader.needs_io() => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                _ => {}
            }
            if self.encoder_cost > 0 && self.encoder_charge.is_none() {
                // Charged to the whole budget's part for encoders, not to
                // the connection's share (see `Waiter::poll_charge_encoder`).
                self.encoder_charge = Some(ready!(self
                    .budget
                    .poll_charge_encoder(cx, self.encoder_cost)));
            }
            let slot = match self.slot.take() {
                Some(slot) => slot,
                None => ready!(self.permits.poll_acquire(cx))
                    .ok_or_else(|| io::Error::other("semaphore closed"))?,
            };
            let want = self
                .reader
                .as_ref()
                .expect("reader is home")
                .next_len(self.limit);
            let Some((mut filling, charge)) =
                self.buffer(want, |b| match b.poll_charge(cx, want) {
                    Poll::Ready(charge) => Some(charge),
                    Poll::Pending => None,
                })
            else {
                // Waiting for the budget: keep the slot, hold nothing else,
                // and look again when one of our own buffers comes back.
                self.pool.notify(cx.waker());
                self.slot = Some(slot);
                if let Some(b) = self.pool.take(want) {
                    // It came back meanwhile: use it.
                    self.pool.put(b);
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            };
            let hold = Hold { slot, charge };
            if let Some(f) = &mut filling {
                // Warm path: what the page cache holds, copied right here.
                let reader = self.reader.as_mut().expect("reader is home");
                match reader.fill(f, true) {
                    Ok(true) => {
                        let Filling { buf, filled, .. } = filling.expect("filled");
                        let chunk = self.chunk(Output::Pooled(buf, filled), hold);
                        return self.emit(chunk);
                    }
                    Ok(false) => {} // cold: finish this chunk on the blocking pool
                    Err(e) => {
                        self.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            self.start_read(hold, filling);
        }
    }
}

impl Body for CopyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        self.get_mut()
            .poll_chunk(cx, usize::MAX)
            .map(|c| c.map(|c| c.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        // Every byte yielded (an exact length run down) ends it too, so the
        // last chunk can carry the end of the stream (HTTP/2's END_STREAM).
        self.done || (self.remaining == Some(0) && self.ready.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Real temporary files, bodies polled as hyper polls them. Whether a
    //! real read finds the page cache warm is the kernel's business, so the
    //! cold (`pread` on the blocking pool) path is forced with
    //! [`cached_part`]: on the test's thread, `RWF_NOWAIT` reads behave as
    //! if nothing from a chosen file offset on were cached.

    use super::*;

    use std::cell::Cell;
    use std::collections::HashSet;
    use std::io::{Read, Write};
    use std::task::Waker;

    use http_body_util::BodyExt;

    use crate::coding::Coding;
    use crate::transfer::multipart;

    thread_local! {
        static COLD_FROM: Cell<u64> = const { Cell::new(u64::MAX) };
    }

    /// The part of a `RWF_NOWAIT` read into `dst` at `at` that the pretended
    /// page cache holds; `None` if it holds none of it.
    pub(super) fn cached_part(at: u64, dst: &mut [u8]) -> Option<&mut [u8]> {
        let cold = COLD_FROM.get();
        if at >= cold {
            return None;
        }
        let room = usize::try_from(cold - at).unwrap_or(usize::MAX);
        let len = dst.len().min(room);
        Some(&mut dst[..len])
    }

    /// Pretends every byte from `offset` on is not in the page cache, for
    /// reads on this thread, until the guard drops.
    fn cold_from(offset: u64) -> impl Drop {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                COLD_FROM.set(u64::MAX);
            }
        }
        COLD_FROM.set(offset);
        Reset
    }

    use crate::transfer::test_support::{pseudo_random, temp_file};

    /// A budget that never runs short in these tests.
    fn unlimited() -> Arc<BodyBudget> {
        BodyBudget::new(1 << 40)
    }

    /// Waits (boundedly) until every charge is back: a read in flight on
    /// the blocking pool when its body is dropped finishes there first.
    async fn settled(budget: &BodyBudget) {
        for _ in 0..1000 {
            if budget.in_use() == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{} bytes still charged", budget.in_use());
    }

    /// What a body of `segments` over `data` must consist of.
    fn render(segments: &VecDeque<Segment>, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for s in segments {
            match s {
                Segment::Bytes(b) => out.extend_from_slice(b),
                Segment::File { offset, len } => {
                    out.extend_from_slice(&data[*offset as usize..(*offset + *len) as usize])
                }
            }
        }
        out
    }

    fn whole(len: usize) -> VecDeque<Segment> {
        VecDeque::from([Segment::File {
            offset: 0,
            len: len as u64,
        }])
    }

    /// Polls once with a waker that does nothing.
    fn poll_once(body: &mut CopyBody) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        Pin::new(body).poll_frame(&mut Context::from_waker(Waker::noop()))
    }

    /// The next frame. A hang guard, not a timing assertion: a body stuck
    /// for half a minute fails the test instead of hanging it.
    async fn frame(body: &mut CopyBody) -> Option<io::Result<Frame<Bytes>>> {
        tokio::time::timeout(std::time::Duration::from_secs(30), body.frame())
            .await
            .expect("body stuck")
    }

    /// The next chunk, which must be there.
    async fn chunk(body: &mut CopyBody) -> Bytes {
        frame(body).await.unwrap().unwrap().into_data().unwrap()
    }

    /// Every frame to the end; the error that ended it, if one did (after
    /// which the body must end).
    async fn collect(body: &mut CopyBody) -> (Vec<u8>, Option<io::Error>) {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            match frame(body).await {
                None => return (out, None),
                Some(Ok(frame)) => out.extend_from_slice(&frame.into_data().unwrap()),
                Some(Err(e)) => {
                    assert!(frame(body).await.is_none(), "a frame after the error");
                    assert!(body.is_end_stream());
                    return (out, Some(e));
                }
            }
        }
        panic!("body did not end");
    }

    /// Whole files, single ranges and multipart/byteranges bodies, warm and
    /// cold, with chunk sizes that do not divide the segments: the bytes are
    /// exactly the file's, framed exactly as the segments say, and the size
    /// hint stays exact.
    #[tokio::test]
    async fn bytes_are_identical_for_whole_files_ranges_and_multipart() {
        let data = pseudo_random((1 << 20) + 4321, 11);
        let size = data.len() as u64;
        let (_, multi) = multipart::byteranges(
            &[
                (0, 0),
                (100, 70_000),
                (65_536, 65_536 * 3 + 17),
                (size - 9, size - 1),
            ],
            size,
            Some("text/plain"),
        );
        let bodies = [
            whole(data.len()),
            VecDeque::from([Segment::File {
                offset: 12_345,
                len: 500_001,
            }]),
            multi,
        ];
        for segments in bodies {
            let want = render(&segments, &data);
            for chunk in [16 << 10, (64 << 10) + 7] {
                for cold in [None, Some(0), Some(200_000)] {
                    let _cold = cold.map(cold_from);
                    let mut body = CopyBody::new(
                        temp_file(&data),
                        segments.clone(),
                        chunk,
                        None,
                        &unlimited(),
                    );
                    assert_eq!(body.size_hint().exact(), Some(want.len() as u64));
                    let (got, err) = collect(&mut body).await;
                    assert!(err.is_none(), "{err:?}");
                    assert!(got == want, "chunk {chunk}, cold {cold:?}: wrong bytes");
                    assert_eq!(body.size_hint().exact(), Some(0));
                    assert!(body.is_end_stream());
                }
            }
        }
    }

    /// A permit travels with each chunk: the chunks the consumer holds plus
    /// a read in flight plus a chunk read ahead never exceed two, holding two
    /// chunks stops the body, dropping one lets it go on; and the two
    /// buffers are reused, never a third allocated.
    #[tokio::test]
    async fn at_most_two_chunks_alive_per_body() {
        assert_eq!(CHUNKS_IN_FLIGHT, 2);
        let data = pseudo_random(20 * 16_384 + 5, 12);
        for cold in [None, Some(0), Some(7 * 16_384 + 100)] {
            let _cold = cold.map(cold_from);
            let mut body = CopyBody::new(
                temp_file(&data),
                whole(data.len()),
                16_384,
                None,
                &unlimited(),
            );
            let semaphore = body.permits.clone_inner();
            let accounted = |body: &CopyBody, held: usize| {
                semaphore.available_permits()
                    + held
                    + usize::from(body.inflight.is_some())
                    + usize::from(body.ready.is_some())
            };
            let mut got = Vec::new();
            let mut buffers = HashSet::new();
            let mut previous: Option<Bytes> = None;
            for _ in 0..100 {
                // Like hyper: the previous chunk is still being written while
                // the next one is asked for.
                let Some(frame) = frame(&mut body).await else {
                    break;
                };
                let chunk = frame.unwrap().into_data().unwrap();
                got.extend_from_slice(&chunk);
                buffers.insert(chunk.as_ptr() as usize);
                let held = 1 + usize::from(previous.is_some());
                assert_eq!(accounted(&body, held), CHUNKS_IN_FLIGHT, "cold {cold:?}");
                if previous.is_some() && body.remaining != Some(0) {
                    // Both slots are taken: the body must wait, however often polled.
                    for _ in 0..3 {
                        assert!(poll_once(&mut body).is_pending(), "cold {cold:?}");
                        tokio::task::yield_now().await;
                    }
                    assert_eq!(semaphore.available_permits(), 0);
                    assert!(body.inflight.is_none() && body.ready.is_none());
                }
                previous = Some(chunk);
            }
            drop(previous);
            assert!(frame(&mut body).await.is_none());
            assert!(got == data, "cold {cold:?}: wrong bytes");
            assert!(
                buffers.len() <= CHUNKS_IN_FLIGHT,
                "{} buffers",
                buffers.len()
            );
            assert_eq!(semaphore.available_permits(), CHUNKS_IN_FLIGHT);
        }
    }

    /// After a chunk that had to come from the blocking pool, the next one is
    /// started before it is asked for: on the pool while the file stays cold,
    /// in place (ready to yield at once) when the page cache has it.
    #[tokio::test]
    async fn cold_chunk_prefetches_the_next() {
        let data = pseudo_random(8 * 16_384, 13);
        let mut body = CopyBody::new(
            temp_file(&data),
            whole(data.len()),
            16_384,
            None,
            &unlimited(),
        );
        let mut got = Vec::new();
        {
            let _cold = cold_from(0);
            got.extend_from_slice(&chunk(&mut body).await);
            assert!(
                body.inflight.is_some(),
                "next chunk not started on the pool"
            );
            assert!(body.ready.is_none());
        }
        // Warm again: the read in flight finishes on the pool, and the one
        // after it is read ahead in place.
        got.extend_from_slice(&chunk(&mut body).await);
        assert!(body.inflight.is_none());
        assert!(body.ready.is_some(), "next chunk not read ahead in place");
        // It is there without waiting.
        let Poll::Ready(Some(Ok(third))) = poll_once(&mut body) else {
            panic!("read-ahead chunk not ready");
        };
        got.extend_from_slice(&third.into_data().unwrap());
        // Warm chunks are read when asked for, not ahead.
        assert!(body.inflight.is_none() && body.ready.is_none());
        let (rest, err) = collect(&mut body).await;
        assert!(err.is_none());
        got.extend_from_slice(&rest);
        assert!(got == data);
    }

    /// A chunk of which only the start is cached: the cached part is copied
    /// in place and the pool reads the rest into the same buffer.
    #[tokio::test]
    async fn partly_cached_chunk_is_finished_on_the_pool() {
        let data = pseudo_random(4 * 65_536, 14);
        let _cold = cold_from(65_536 + 1000);
        let mut body = CopyBody::new(
            temp_file(&data),
            whole(data.len()),
            65_536,
            None,
            &unlimited(),
        );
        assert!(chunk(&mut body).await == data[..65_536]);
        assert!(chunk(&mut body).await == data[65_536..131_072]);
        let (rest, err) = collect(&mut body).await;
        assert!(err.is_none());
        assert!(rest == data[131_072..]);
    }

    /// A page cache miss the kernel reports itself (`EAGAIN`): the file's
    /// pages are dropped with `POSIX_FADV_DONTNEED`. The kernel may read some
    /// back before the body gets there, so only the bytes are checked.
    #[tokio::test]
    async fn evicted_file_reads_correctly() {
        let data = pseudo_random(1 << 20, 15);
        let file = temp_file(&data);
        file.sync_all().unwrap();
        rustix::fs::fadvise(&*file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let mut body = CopyBody::new(file, whole(data.len()), 64 << 10, None, &unlimited());
        let (got, err) = collect(&mut body).await;
        assert!(err.is_none(), "{err:?}");
        assert!(got == data);
    }

    /// A file system that does not take `RWF_NOWAIT` at all (tmpfs on this
    /// kernel, hence a memfd: `EOPNOTSUPP`) is read on the blocking pool,
    /// like a page-cache miss, instead of failing the response.
    #[tokio::test]
    async fn file_system_without_nowait_is_read_on_the_pool() {
        let data = pseudo_random(300_000, 19);
        let fd =
            rustix::fs::memfd_create("sluice-copy-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let mut file = File::from(fd);
        file.write_all(&data).unwrap();
        let probe = rustix::io::preadv2(
            &file,
            &mut [IoSliceMut::new(&mut [0u8; 16])],
            0,
            ReadWriteFlags::NOWAIT,
        );
        let mut body = CopyBody::new(
            Arc::new(file),
            whole(data.len()),
            64 << 10,
            None,
            &unlimited(),
        );
        let (got, err) = collect(&mut body).await;
        assert!(err.is_none(), "{err:?} (RWF_NOWAIT here: {probe:?})");
        assert!(got == data);
    }

    /// The file shrinks after the first chunk: the body ends with an
    /// `UnexpectedEof` error, never padding; what came before is a prefix.
    #[tokio::test]
    async fn file_shrinking_mid_read_ends_with_an_error() {
        let data = pseudo_random(1 << 20, 16);
        for (cold, compress) in [(None, false), (Some(0), false), (None, true)] {
            let _cold = cold.map(cold_from);
            let file = temp_file(&data);
            let encoder =
                compress.then(|| Encoder::new(Coding::Gzip, 1, data.len() as u64).unwrap());
            let mut body = CopyBody::new(
                file.clone(),
                whole(data.len()),
                64 << 10,
                encoder,
                &unlimited(),
            );
            let first = chunk(&mut body).await;
            file.set_len(200_000).unwrap();
            let (rest, err) = collect(&mut body).await;
            let err = err.expect("a shrunk file cannot complete");
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
            let mut got = first.to_vec();
            got.extend_from_slice(&rest);
            if compress {
                let mut plain = Vec::new();
                // The stream was cut: decoding stops with an error, after a prefix.
                let _ = flate2::read::GzDecoder::new(&got[..]).read_to_end(&mut plain);
                assert!(plain.len() < data.len() && plain == data[..plain.len()]);
            } else {
                assert!(got.len() < data.len(), "cold {cold:?}");
                assert!(got == data[..got.len()], "cold {cold:?}: not a prefix");
            }
        }
    }

    /// Compressing: the body decodes to exactly the file region, read in
    /// chunks on the pool.
    #[tokio::test]
    async fn compressed_body_decodes_to_the_region() {
        let data = pseudo_random(300_000, 17);
        let segments = VecDeque::from([Segment::File {
            offset: 1000,
            len: 250_000,
        }]);
        let encoder = Encoder::new(Coding::Gzip, 1, data.len() as u64).unwrap();
        let mut body = CopyBody::new(
            temp_file(&data),
            segments,
            16_384,
            Some(encoder),
            &unlimited(),
        );
        assert_eq!(body.size_hint().exact(), None);
        let (got, err) = collect(&mut body).await;
        assert!(err.is_none(), "{err:?}");
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&got[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert!(plain == data[1000..251_000]);
    }

    /// Small bodies read whole: host bytes and file bytes in order; `None`
    /// when the file no longer holds the bytes.
    #[test]
    fn read_cached_reads_segments_or_gives_up() {
        let data = pseudo_random(10_000, 18);
        let file = temp_file(&data);
        let (_, segments) = multipart::byteranges(&[(0, 9), (5000, 5999)], 10_000, None);
        let total = segments.iter().map(Segment::len).sum();
        let budget = BodyBudget::new(64 << 10);
        let got = read_cached(&file, &segments, total, &budget).unwrap();
        assert!(got == render(&segments, &data));
        assert_eq!(budget.in_use(), got.len(), "the bytes are charged");
        drop(got);
        assert_eq!(budget.in_use(), 0, "and given back with them");
        // No room in the budget now: not read (the caller takes the
        // copying path, which waits its turn).
        let held = budget.try_charge((64 << 10) - 10).unwrap();
        assert!(read_cached(&file, &segments, total, &budget).is_none());
        drop(held);
        file.set_len(5500).unwrap();
        assert!(read_cached(&file, &segments, total, &budget).is_none());
        assert_eq!(budget.in_use(), 0);
    }

    /// Every chunk is charged to the host-wide budget before it is read,
    /// and its buffer stays charged while the body keeps it for reuse: a
    /// body finding the budget spent waits, holding nothing but its slot,
    /// and goes on when another body gives bytes back (when it ends).
    #[tokio::test]
    async fn chunks_wait_for_the_budget_and_give_it_back() {
        let data = pseudo_random(4 * 65_536, 21);
        let budget = BodyBudget::new(128 << 10);
        let mut body = CopyBody::new(temp_file(&data), whole(data.len()), 65_536, None, &budget);
        let first = chunk(&mut body).await;
        let second = chunk(&mut body).await;
        assert_eq!(budget.in_use(), 128 << 10);
        drop(first);
        assert_eq!(budget.in_use(), 128 << 10, "a kept buffer stays charged");
        // The third chunk reuses the first one's buffer and charge.
        let third = chunk(&mut body).await;
        assert_eq!(budget.in_use(), 128 << 10);
        assert!(budget.try_charge(1).is_none(), "budget spent");
        let mut other = CopyBody::new(temp_file(&data), whole(data.len()), 65_536, None, &budget);
        assert!(poll_once(&mut other).is_pending(), "waits for its turn");
        drop((second, third));
        let (rest, err) = collect(&mut body).await;
        assert!(err.is_none());
        assert!(rest == data[3 * 65_536..]);
        assert!(
            poll_once(&mut other).is_pending(),
            "the first body still holds its buffers"
        );
        drop(body);
        let got = chunk(&mut other).await;
        assert!(got == data[..65_536]);
        drop(got);
        drop(other);
        settled(&budget).await;
    }

    /// `poll_chunk` reads no more than the caller can send: chunks never
    /// exceed the limit, warm or cold, compressed or not, and the bytes are
    /// the same.
    #[tokio::test]
    async fn a_limit_bounds_what_is_read() {
        let data = pseudo_random(300_000, 22);
        for (cold, compress) in [(None, false), (Some(0), false), (None, true)] {
            let _cold = cold.map(cold_from);
            let encoder =
                compress.then(|| Encoder::new(Coding::Gzip, 1, data.len() as u64).unwrap());
            let budget = BodyBudget::new(1 << 30);
            let mut body = CopyBody::new(
                temp_file(&data),
                whole(data.len()),
                65_536,
                encoder,
                &budget,
            );
            let mut got = Vec::new();
            let mut limit = 1;
            for _ in 0..100_000 {
                let next = tokio::time::timeout(
                    std::time::Duration::from_secs(30),
                    std::future::poll_fn(|cx| body.poll_chunk(cx, limit)),
                )
                .await
                .expect("body stuck");
                let Some(c) = next else { break };
                let c = c.unwrap();
                assert!(!c.is_empty() && c.len() <= limit, "{} > {limit}", c.len());
                if !compress && cold.is_none() {
                    // Warm reads happen when asked, for exactly that much.
                    let rest = data.len() - got.len();
                    assert_eq!(
                        c.len(),
                        limit.min(65_536).min(rest),
                        "read other than asked"
                    );
                }
                got.extend_from_slice(&c);
                limit = (limit * 3 + 7) % 70_001 + 1;
            }
            if compress {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&got[..])
                    .read_to_end(&mut plain)
                    .unwrap();
                assert!(plain == data);
            } else {
                assert!(got == data, "cold {cold:?}");
            }
            drop(body);
            settled(&budget).await;
        }
    }

    /// An encoder's state is charged for the body's life, before the first
    /// read.
    #[tokio::test]
    async fn an_encoder_is_charged_while_it_lives() {
        let data = pseudo_random(200_000, 23);
        let budget = BodyBudget::new(1 << 30);
        let encoder = Encoder::new(Coding::Br, 4, data.len() as u64).unwrap();
        let memory = encoder.memory();
        let mut body = CopyBody::new(
            temp_file(&data),
            whole(data.len()),
            65_536,
            Some(encoder),
            &budget,
        );
        let first = chunk(&mut body).await;
        assert!(
            budget.in_use() >= memory + first.len(),
            "{} in use, encoder {memory}, chunk {}",
            budget.in_use(),
            first.len()
        );
        drop(first);
        drop(body);
        settled(&budget).await;
    }
}
