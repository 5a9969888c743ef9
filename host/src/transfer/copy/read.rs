//! The copying path's reads: what the page cache holds, copied in place
//! with `preadv2(RWF_NOWAIT)` on the async worker, and what would wait for
//! the disk read with `pread` on the blocking pool (compressed there, too).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSliceMut};
use std::sync::Arc;

use bytes::Bytes;
use rustix::io::{Errno, ReadWriteFlags};

use crate::stats;
use crate::transfer::budget::{BodyBudget, Charged};
use crate::transfer::compress::Encoder;
use crate::transfer::Segment;

/// Reads into `dst` at `at` what the page cache already holds
/// (`RWF_NOWAIT`: it never waits for the disk, so it may run on an async
/// worker). `None`: none of it is cached (`EAGAIN`), or the file system does
/// not take `RWF_NOWAIT` at all (`EOPNOTSUPP`: tmpfs on Linux 6.18, say),
/// which is read as a miss.
fn cached(file: &File, dst: &mut [u8], at: u64) -> io::Result<Option<usize>> {
    match rustix::io::preadv2(
        file,
        &mut [IoSliceMut::new(dst)],
        at,
        ReadWriteFlags::NOWAIT,
    ) {
        Ok(n) => Ok(Some(n)),
        Err(Errno::AGAIN | Errno::OPNOTSUPP) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

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
                    match cached(file, dst, from) {
                        Ok(Some(n)) if n > 0 => at += n,
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

/// A read in progress: the buffer, how much of it to fill, and how much is
/// filled.
pub(super) struct Filling {
    pub(super) buf: Vec<u8>,
    pub(super) want: usize,
    pub(super) filled: usize,
}

/// What a read produced.
pub(super) enum Output {
    /// `len` file bytes in a pooled buffer.
    Pooled(Vec<u8>, usize),
    /// Compressed bytes.
    Owned(Vec<u8>),
}

/// What the blocking side owns between reads.
pub(super) struct Reader {
    pub(super) file: Arc<File>,
    pub(super) segments: VecDeque<Segment>,
    pub(super) chunk: usize,
    pub(super) encoder: Option<Encoder>,
    /// Input buffer of the compressing path.
    pub(super) input: Vec<u8>,
}

impl Reader {
    /// Whether the front segment needs a read (or the encoder a finish).
    pub(super) fn needs_io(&self) -> bool {
        matches!(self.segments.front(), Some(Segment::File { .. }))
            || (self.segments.is_empty() && self.encoder.is_some())
    }

    /// Bytes the next read takes from the file, at most `limit`; when
    /// compressing, the most output one input chunk makes (what it is
    /// charged).
    pub(super) fn next_len(&self, limit: usize) -> usize {
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
    pub(super) fn fill(&mut self, f: &mut Filling, nowait: bool) -> io::Result<bool> {
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
                let Some(dst) = super::tests::cached_part(at, dst) else {
                    return Ok(false);
                };
                match cached(&self.file, dst, at)? {
                    Some(n) => n,
                    None => return Ok(false),
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
    pub(super) fn read_next(&mut self, mut f: Filling) -> io::Result<Option<Output>> {
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
