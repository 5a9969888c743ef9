//! Which HTTP a new connection speaks: HTTP/2 clients start with the
//! connection preface (RFC 9113 §3.4), anything else is HTTP/1.
//!
//! On plain TCP the first bytes are looked at with `MSG_PEEK` ([`peek`]), so
//! nothing is taken from the socket and the chosen server's first read gets
//! the whole request: hyper then parses it once, from one `recvfrom`, into
//! its 8 KiB read buffer, which never has to grow (a 24-byte prefix handed
//! over alone made hyper read twice and grow the buffer to 16 KiB, held for
//! the connection's life). Only when the peeked bytes are a proper start of
//! the preface (a client sending it in pieces) is the rest awaited by
//! reading ([`sniff`], as on TLS, where the decrypted stream cannot be
//! peeked); the bytes read to tell are then handed back by [`Rewind`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The HTTP/2 client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the bytes already in a socket say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peeked {
    /// HTTP/1 (a byte the preface does not have there), or the end of the
    /// stream (hyper then sees it and closes).
    Http1,
    /// The whole preface.
    Http2,
    /// A proper start of the preface, and no more yet: only reading on
    /// tells (peeking again would return the same bytes at once).
    Undecided,
}

/// Waits for a plain socket's first bytes and looks at them without taking
/// them (`MSG_PEEK`); `n` is how many were seen (0 at the end of the stream).
pub async fn peek(tcp: &TcpStream) -> io::Result<(Peeked, usize)> {
    let mut first = [0u8; PREFACE.len()];
    let n = tcp.peek(&mut first).await?;
    Ok((classify(&first[..n]), n))
}

/// What `first`, a connection's first bytes, say.
fn classify(first: &[u8]) -> Peeked {
    if first.is_empty() || !PREFACE.starts_with(first) {
        Peeked::Http1
    } else if first.len() == PREFACE.len() {
        Peeked::Http2
    } else {
        Peeked::Undecided
    }
}

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

    /// The peek decides from whatever has arrived, and says when it cannot.
    #[test]
    fn a_peek_tells_or_waits_for_more() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Peeked::Http1);
        assert_eq!(classify(b"PUT"), Peeked::Http1);
        assert_eq!(classify(b""), Peeked::Http1);
        assert_eq!(classify(PREFACE), Peeked::Http2);
        assert_eq!(classify(b"P"), Peeked::Undecided);
        assert_eq!(classify(&PREFACE[..23]), Peeked::Undecided);
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n\r\nSX"), Peeked::Http1);
    }

    /// A peek takes nothing: the whole request is still there to read.
    #[tokio::test]
    async fn a_peek_leaves_the_bytes_in_the_socket() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let request = b"GET /a/longer/path/than/the/preface HTTP/1.1\r\n\r\n";
        client.write_all(request).await.unwrap();
        assert_eq!(peek(&server).await.unwrap(), (Peeked::Http1, PREFACE.len()));
        let mut got = vec![0u8; request.len()];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, request);
    }
}
