//! The transfer engine: executes a validated plan's body.
//!
//! Two paths, chosen per response:
//! - [`zerocopy`]: file segments leave by `sendfile(2)` (plain TCP, HTTP/1,
//!   identity coding, policy allows it);
//! - [`copy`]: overlapped large-chunk reads, optionally compressed.
//!
//! Both consume the same description of a body: a list of [`Segment`]s, so a
//! whole file, one range and a multipart/byteranges body are one mechanism.

pub mod budget;
pub mod compress;
pub mod copy;
pub mod multipart;
pub mod zerocopy;

/// Helpers shared by the transfer engine's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::fs::File;
    use std::io::{Seek, Write};
    use std::sync::Arc;

    /// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
    pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// An unlinked temporary file holding `data`.
    pub fn temp_file(data: &[u8]) -> Arc<File> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        f.rewind().unwrap();
        Arc::new(f)
    }
}

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::Response;
use http_body::{Body, Frame, SizeHint};

use crate::config::TransferConfig;
use crate::decision::{Plan, PlannedBody};
use budget::BodyBudget;
use copy::CopyBody;
use zerocopy::{SendfileBody, ZeroCopyLink};

/// One piece of a body: bytes made by the host, or a region of the file.
#[derive(Debug, Clone)]
pub enum Segment {
    Bytes(Bytes),
    File { offset: u64, len: u64 },
}

impl Segment {
    pub fn len(&self) -> u64 {
        match self {
            Segment::Bytes(b) => b.len() as u64,
            Segment::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which way a response's body leaves: the access log's `transfer` field and
/// the `path` label of `sluice_body_bytes_total` in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferPath {
    /// File regions by `sendfile(2)` (plain-TCP HTTP/1).
    Sendfile,
    /// Large-chunk reads through user space.
    Copy,
    /// Large-chunk reads, compressed on the fly.
    Compressed,
    /// Bytes in memory: a small cached file read whole, or a body the host
    /// or the policy made.
    Inline,
}

impl TransferPath {
    pub fn name(self) -> &'static str {
        match self {
            TransferPath::Sendfile => "sendfile",
            TransferPath::Copy => "copy",
            TransferPath::Compressed => "compressed",
            TransferPath::Inline => "inline",
        }
    }
}

/// Counts the body bytes a response actually hands to its connection. On the
/// zero-copy path the file regions are sent by the connection's I/O after the
/// body has ended, so the queued regions hold the meter too: whoever lets go
/// of it last sees the final count (the access log writes its line then).
pub trait Meter: Send + Sync {
    fn add(&self, bytes: u64);
}

/// Every response body sluice sends.
pub enum ResponseBody {
    Empty,
    Inline(Option<Bytes>),
    ZeroCopy(SendfileBody),
    Copy(Box<CopyBody>),
}

impl ResponseBody {
    /// The path this body takes; `None` for an empty body (HEAD, 304, ...).
    pub fn path(&self) -> Option<TransferPath> {
        match self {
            ResponseBody::Empty => None,
            ResponseBody::Inline(_) => Some(TransferPath::Inline),
            ResponseBody::ZeroCopy(_) => Some(TransferPath::Sendfile),
            ResponseBody::Copy(b) if b.compressed() => Some(TransferPath::Compressed),
            ResponseBody::Copy(_) => Some(TransferPath::Copy),
        }
    }

    /// Has this body count what it sends into `meter`. The zero-copy body
    /// counts what `sendfile(2)` sent, known only after its frames were
    /// polled; every other body's count is its data frames, which the caller
    /// counts as it polls them.
    pub fn attach(&mut self, meter: &Arc<dyn Meter>) {
        if let ResponseBody::ZeroCopy(b) = self {
            b.attach(meter.clone());
        }
    }

    /// Whether the body counts its bytes itself once attached (see [`attach`](Self::attach)).
    pub fn counts_itself(&self) -> bool {
        matches!(self, ResponseBody::ZeroCopy(_))
    }

    /// Gives back memory the body keeps only for reuse (see
    /// `CopyBody::release_kept`).
    pub fn release_kept(&mut self) {
        if let ResponseBody::Copy(b) = self {
            b.release_kept();
        }
    }

    /// The next chunk of at most `limit` bytes (at least one): for a writer
    /// that can only send so much now (an HTTP/2 stream's window), so
    /// nothing is read, or charged to the body budget, that cannot leave.
    /// Never for the zero-copy body, whose frames only `SendfileIo` sends.
    pub fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
        limit: usize,
    ) -> Poll<Option<io::Result<Bytes>>> {
        let limit = limit.max(1);
        match self {
            ResponseBody::Empty => Poll::Ready(None),
            ResponseBody::Inline(slot) => Poll::Ready(match slot {
                Some(b) if b.len() > limit => Some(Ok(b.split_to(limit))),
                _ => slot.take().map(Ok),
            }),
            ResponseBody::ZeroCopy(_) => Poll::Ready(Some(Err(io::Error::other(
                "a zero-copy body can only be sent by its own connection's SendfileIo",
            )))),
            ResponseBody::Copy(b) => b.poll_chunk(cx, limit),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        match self.get_mut() {
            ResponseBody::Empty => Poll::Ready(None),
            ResponseBody::Inline(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::ZeroCopy(b) => Pin::new(b).poll_frame(cx),
            ResponseBody::Copy(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Empty => true,
            ResponseBody::Inline(b) => b.is_none(),
            ResponseBody::ZeroCopy(b) => b.is_end_stream(),
            ResponseBody::Copy(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Empty => SizeHint::with_exact(0),
            ResponseBody::Inline(b) => {
                SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseBody::ZeroCopy(b) => b.size_hint(),
            ResponseBody::Copy(b) => b.size_hint(),
        }
    }
}

/// How the connection can carry file bytes.
#[derive(Clone, Copy)]
pub struct Channel<'a> {
    /// Present only on plain-TCP HTTP/1 connections.
    pub zero_copy: Option<&'a ZeroCopyLink>,
}

impl<'a> Channel<'a> {
    /// The channel for one request. `link` exists only for plain TCP (it comes
    /// from [`zerocopy::SendfileIo::new`]; a TLS connection has none), and a
    /// plain-TCP connection may still speak HTTP/2 (h2c prior knowledge): h2
    /// frames and flow-controls its body itself, so a placeholder would be
    /// copied into a DATA frame. Only HTTP/1.x gets zero-copy. Every
    /// connection builds its channel here, so that rule has one home.
    pub fn for_request(link: Option<&'a ZeroCopyLink>, version: http::Version) -> Channel<'a> {
        let http1 = matches!(version, http::Version::HTTP_10 | http::Version::HTTP_11);
        Channel {
            zero_copy: link.filter(|_| http1),
        }
    }
}

/// Executes a plan: the response with its framing headers (`Content-Length`,
/// `Content-Range`, multipart `Content-Type`) and the body on the path the
/// connection and the plan allow. For `HEAD` the head is the same, but nothing
/// is read or registered.
pub fn respond(
    plan: Plan,
    head_only: bool,
    channel: Channel<'_>,
    config: &TransferConfig,
    budget: &Arc<BodyBudget>,
) -> io::Result<Response<ResponseBody>> {
    let Plan {
        status,
        mut headers,
        body,
        chunk_size,
        zero_copy,
    } = plan;
    let way = Way {
        channel,
        chunk: chunk_size,
        zero_copy,
        inline_max: config.inline_max.0,
        budget,
    };
    let body = body_for(body, &mut headers, head_only, &way)?;
    let mut res = Response::new(body);
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    Ok(res)
}

/// How a body may leave: the connection's channel, the plan's chunk size
/// and zero-copy permission, the inline bound, the budget it is charged to.
struct Way<'a> {
    channel: Channel<'a>,
    chunk: usize,
    zero_copy: bool,
    inline_max: u64,
    budget: &'a Arc<BodyBudget>,
}

fn body_for(
    planned: PlannedBody,
    headers: &mut HeaderMap,
    head_only: bool,
    way: &Way<'_>,
) -> io::Result<ResponseBody> {
    let Way {
        channel,
        chunk,
        zero_copy: zero_copy_allowed,
        inline_max,
        budget,
    } = *way;
    let (file, segments, encoder) = match planned {
        PlannedBody::Empty => return Ok(ResponseBody::Empty),
        PlannedBody::Inline(b) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
            return Ok(if head_only {
                ResponseBody::Empty
            } else {
                ResponseBody::Inline(Some(b))
            });
        }
        PlannedBody::Full { file, compress } => {
            let size = file.meta.size;
            let encoder = match compress {
                Some((coding, level)) => Some(compress::Encoder::new(coding, level, size)?),
                None => {
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
                    None
                }
            };
            let segments = if size == 0 {
                VecDeque::new()
            } else {
                VecDeque::from([Segment::File {
                    offset: 0,
                    len: size,
                }])
            };
            (file, segments, encoder)
        }
        PlannedBody::Ranges { file, ranges } => {
            let size = file.meta.size;
            let segments = if let [(first, last)] = ranges[..] {
                let range = format!("bytes {first}-{last}/{size}");
                headers.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&range).expect("ascii"),
                );
                VecDeque::from([Segment::File {
                    offset: first,
                    len: last - first + 1,
                }])
            } else {
                // Each part gets the representation's own type; the response's
                // type becomes the multipart one.
                let part_type = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let (content_type, segments) =
                    multipart::byteranges(&ranges, size, part_type.as_deref());
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_str(&content_type).expect("ascii"),
                );
                segments
            };
            headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(segments.iter().map(Segment::len).sum::<u64>()),
            );
            (file, segments, None)
        }
    };
    if head_only || (segments.is_empty() && encoder.is_none()) {
        return Ok(ResponseBody::Empty);
    }
    // Small, cached bodies: one pread and the head and body in one writev,
    // instead of cork + writev + sendfile + uncork (if the body budget has
    // room for them now; otherwise the ordinary path waits its turn).
    let total: u64 = segments.iter().map(Segment::len).sum();
    if encoder.is_none() && total <= inline_max {
        if let Some(bytes) = copy::read_cached(&file.file, &segments, total, budget) {
            return Ok(ResponseBody::Inline(Some(bytes)));
        }
    }
    match (channel.zero_copy, encoder) {
        (Some(link), None) if zero_copy_allowed => Ok(ResponseBody::ZeroCopy(SendfileBody::new(
            link, file.file, segments,
        ))),
        (_, encoder) => Ok(ResponseBody::Copy(Box::new(CopyBody::new(
            file.file, segments, chunk, encoder, budget,
        )))),
    }
}
