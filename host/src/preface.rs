//! Which HTTP a new connection speaks: HTTP/2 clients start with the
//! connection preface (RFC 9113 §3.4), anything else is HTTP/1. The bytes
//! read to tell are handed back to the chosen server by [`Rewind`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads from `io` until its first bytes tell HTTP/2 (the whole preface)
/// from HTTP/1 (a byte the preface does not have there, or the end of the
/// stream); returns whether it is HTTP/2 and the bytes read. HTTP/1 is told
/// by its first byte (no method starts with `PRI`), HTTP/2 by 24 bytes.
pub async fn sniff<I: AsyncRead + Unpin>(io: &mut I) -> io::Result<(bool, Bytes)> {
    let mut buf = Vec::with_capacity(PREFACE.len());
    loop {
        if !PREFACE.starts_with(&buf) {
            return Ok((false, buf.into()));
        }
        if buf.len() == PREFACE.len() {
            return Ok((true, buf.into()));
        }
        let mut more = [0u8; 24];
        let want = PREFACE.len() - buf.len();
        let n = io.read(&mut more[..want]).await?;
        if n == 0 {
            return Ok((false, buf.into()));
        }
        buf.extend_from_slice(&more[..n]);
    }
}

/// An I/O whose first reads return `prefix` (bytes already read from it).
pub struct Rewind<I> {
    prefix: Bytes,
    io: I,
}

impl<I> Rewind<I> {
    pub fn new(io: I, prefix: Bytes) -> Rewind<I> {
        Rewind { prefix, io }
    }

    pub fn get_ref(&self) -> &I {
        &self.io
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn tell(input: &[u8]) -> (bool, Vec<u8>) {
        let mut reader = input;
        let (h2, read) = sniff(&mut reader).await.unwrap();
        // Whatever was read comes back first, then the rest.
        let mut all = Vec::new();
        Rewind::new(reader, read.clone())
            .read_to_end(&mut all)
            .await
            .unwrap();
        assert_eq!(all, input);
        (h2, read.to_vec())
    }

    #[tokio::test]
    async fn http1_by_its_first_byte_http2_by_the_whole_preface() {
        assert!(!tell(b"GET / HTTP/1.1\r\n\r\n").await.0);
        assert!(!tell(b"POST / HTTP/1.1\r\n").await.0);
        let mut h2 = PREFACE.to_vec();
        h2.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
        assert_eq!(tell(&h2).await, (true, PREFACE.to_vec()));
        // A preface cut short, or wrong near its end: HTTP/1 (which then
        // answers 400 or closes).
        assert!(!tell(b"PRI * HTTP/2.0\r\n").await.0);
        assert!(!tell(b"PRI * HTTP/2.0\r\n\r\nSX").await.0);
        assert_eq!(tell(b"").await, (false, vec![]));
    }
}
