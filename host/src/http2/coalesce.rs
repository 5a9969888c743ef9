//! Gathers the h2 crate's small writes into one write per batch of frames.
//!
//! h2 writes a DATA frame's payload from the caller's `Bytes` (no copy) and,
//! to do so, flushes its codec before it buffers the next frame: every
//! response with a body of 256 bytes or more is its own `poll_write` and its
//! own `poll_flush`. Over TLS, tokio-rustls turns each of those into a TLS
//! record and a `writev(2)`: at 8 connections x 32 streams of 4 KiB files,
//! one record and one system call per response, where nginx fills 16 KiB
//! records (BENCHMARKS.md, "Issue 19: the HTTP/2 row, profiled").
//!
//! [`Coalesce`] sits between h2 and the connection's I/O and copies writes
//! into a buffer of at most [`GATHER`] bytes. A flush that follows new
//! writes is answered at once, without writing, and the task is woken to
//! come back: h2 goes on framing the responses that are ready, and the
//! buffer is written when it would overflow or on the next flush that
//! follows no new write — which h2 makes every time it runs out of frames
//! (`Connection::poll` ends by flushing its codec). So a batch of responses
//! leaves in one write, at the cost of one more poll of the connection's
//! task per batch.
//!
//! A write too large to gather (a large file's DATA frames) is not copied:
//! it goes to the I/O in the same vectored call as whatever is gathered
//! before it. The buffer is allocated when a small write comes and freed
//! once written, so an idle connection holds none.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes gathered before they are written: one full TLS record's
/// plaintext (16 KiB), nginx's `ssl_buffer_size`.
pub const GATHER: usize = 16 << 10;

/// An I/O whose small writes are gathered until a flush finds nothing new.
pub struct Coalesce<I> {
    io: I,
    /// Gathered bytes; `buf[written..]` not yet handed to `io`.
    buf: Vec<u8>,
    written: usize,
    /// A write was gathered since the last flush: the next flush is
    /// answered without writing (and the task woken).
    fresh: bool,
}

impl<I> Coalesce<I> {
    pub fn new(io: I) -> Coalesce<I> {
        Coalesce {
            io,
            buf: Vec::new(),
            written: 0,
            fresh: false,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.written..]
    }

    /// Everything gathered was written: let the buffer go.
    fn consumed(&mut self, n: usize) {
        self.written += n;
        if self.written == self.buf.len() {
            self.buf = Vec::new();
            self.written = 0;
            self.fresh = false;
        }
    }
}

impl<I: AsyncWrite + Unpin> Coalesce<I> {
    /// Writes what is gathered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending().is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.consumed(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Coalesce<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Coalesce<I> {
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
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if this.pending().len() + total <= GATHER {
            if this.buf.capacity() == 0 {
                this.buf.reserve_exact(GATHER);
            }
            for b in bufs {
                this.buf.extend_from_slice(b);
            }
            this.fresh = true;
            return Poll::Ready(Ok(total));
        }
        // Too large to gather: in one call with what is gathered before it.
        loop {
            let pending = this.buf.len() - this.written;
            if pending == 0 {
                return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
            }
            let mut slices = [IoSlice::new(&[]); 8];
            slices[0] = IoSlice::new(&this.buf[this.written..]);
            let k = bufs.len().min(slices.len() - 1);
            slices[1..=k].copy_from_slice(&bufs[..k]);
            let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, &slices[..=k]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n <= pending {
                this.consumed(n);
                continue;
            }
            this.consumed(pending);
            return Poll::Ready(Ok(n - pending));
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.fresh {
            // More frames may follow in this poll (h2 flushes before each
            // DATA frame it writes from the caller's buffer); the flush
            // that comes when it has none left writes them all.
            this.fresh = false;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.fresh = false;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    /// An I/O that records each write call's bytes, takes at most `limit`
    /// bytes per call, and is full (pending) while `full` is set.
    #[derive(Default)]
    struct Sink {
        writes: Vec<Vec<u8>>,
        limit: Option<usize>,
        full: bool,
        flushes: usize,
    }

    impl AsyncWrite for Sink {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if this.full {
                return Poll::Pending;
            }
            let mut all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            all.truncate(this.limit.unwrap_or(usize::MAX));
            let n = all.len();
            this.writes.push(all);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn write(c: &mut Coalesce<Sink>, cx: &mut Context<'_>, bytes: &[u8]) -> usize {
        match Pin::new(c).poll_write(cx, bytes) {
            Poll::Ready(Ok(n)) => n,
            other => panic!("{other:?}"),
        }
    }

    fn flush(c: &mut Coalesce<Sink>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(c).poll_flush(cx)
    }

    #[test]
    fn writes_are_gathered_until_a_flush_finds_nothing_new() {
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut c = Coalesce::new(Sink::default());
        // Three responses, each followed by a flush (as h2 does).
        for i in 0..3u8 {
            assert_eq!(write(&mut c, &mut cx, &[i; 4000]), 4000);
            assert!(flush(&mut c, &mut cx).is_ready());
        }
        assert!(c.io.writes.is_empty(), "nothing written yet");
        assert!(woken.0.load(Ordering::Relaxed) >= 1, "the task comes back");
        // The flush that follows no new write writes them all, at once.
        assert!(flush(&mut c, &mut cx).is_ready());
        assert_eq!(c.io.writes.len(), 1);
        assert_eq!(c.io.writes[0].len(), 12_000);
        assert_eq!(c.io.flushes, 1);
        assert_eq!(c.buf.capacity(), 0, "the buffer is let go once written");
    }

    #[test]
    fn a_write_that_would_overflow_goes_out_with_what_is_gathered_uncopied() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut c = Coalesce::new(Sink::default());
        assert_eq!(write(&mut c, &mut cx, &[1; 100]), 100);
        // A large DATA frame: one call with the gathered bytes before it.
        let big = vec![2u8; GATHER];
        assert_eq!(write(&mut c, &mut cx, &big), GATHER);
        assert_eq!(c.io.writes.len(), 1);
        assert_eq!(c.io.writes[0].len(), 100 + GATHER);
        assert_eq!(&c.io.writes[0][..100], &[1; 100][..]);
        assert!(c.pending().is_empty());
        // Nothing gathered is left: the flush goes straight through.
        assert!(flush(&mut c, &mut cx).is_ready());
        assert_eq!(c.io.flushes, 1);
    }

    #[test]
    fn partial_and_pending_writes_lose_and_repeat_nothing() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut c = Coalesce::new(Sink {
            limit: Some(1000),
            ..Sink::default()
        });
        let sent: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        assert_eq!(write(&mut c, &mut cx, &sent[..3000]), 3000);
        assert!(flush(&mut c, &mut cx).is_ready()); // deferred
        c.io.full = true;
        assert!(flush(&mut c, &mut cx).is_pending(), "the socket is full");
        c.io.full = false;
        assert!(flush(&mut c, &mut cx).is_ready());
        // Too large to gather with what is left: the gathered bytes go
        // first, in pieces; the caller is told only of its own bytes.
        assert_eq!(write(&mut c, &mut cx, &sent[3000..3500]), 500);
        let big: Vec<u8> = sent[3500..].to_vec();
        let mut off = 0;
        let mut extra = vec![0u8; GATHER];
        extra[..big.len()].copy_from_slice(&big);
        while off < GATHER {
            match Pin::new(&mut c).poll_write(&mut cx, &extra[off..]) {
                Poll::Ready(Ok(n)) => off += n,
                other => panic!("{other:?}"),
            }
        }
        assert!(Pin::new(&mut c).poll_shutdown(&mut cx).is_ready());
        let got: Vec<u8> = c.io.writes.concat();
        assert_eq!(&got[..3500], &sent[..3500]);
        assert_eq!(&got[3500..], &extra[..]);
    }
}
