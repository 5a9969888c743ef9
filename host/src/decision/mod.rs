//! Validation of the policy's untrusted decision into an executable [`Plan`].
//!
//! Every rule a decision can break has its own [`DecisionError`] variant, so
//! the log line names it. A rejected decision becomes a 500 before any byte
//! of the planned body is sent.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

use crate::coding::Coding;
use crate::config::TransferConfig;
use crate::policy::wit;
use crate::resolve::{Found, FoundFile, OpenedFile};

/// Most ranges a decision may ask for (the policy's own cap is usually lower).
pub const MAX_RANGES: usize = 64;
/// Most header fields a decision may set.
pub const MAX_HEADERS: usize = 64;
/// Most bytes of header names and values a decision may set.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest inline body.
pub const MAX_INLINE: usize = 64 * 1024;

/// Fields the host computes itself; a decision may not set them.
const HOST_OWNED: &[HeaderName] = &[
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::UPGRADE,
    header::TRAILER,
    header::TE,
    header::CONTENT_ENCODING,
];

/// A rule of the WIT contract the decision broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error("status {0} is not a final status code (200-599)")]
    Status(u16),
    #[error("more than {MAX_HEADERS} header fields or {MAX_HEADER_BYTES} bytes of them")]
    TooManyHeaders,
    #[error("header name {0:?} is not a valid field name")]
    HeaderName(String),
    #[error("value of header {0:?} is not a valid field value")]
    HeaderValue(String),
    #[error("header {0:?} is computed by the host")]
    HostOwnedHeader(String),
    #[error("content-range is only allowed on a 416 with an empty body, as `bytes */SIZE`")]
    ContentRange,
    #[error("inline body larger than {MAX_INLINE} bytes")]
    InlineTooLarge,
    #[error("status {0} cannot carry a body")]
    BodyNotAllowed(u16),
    #[error("a file body was planned but the request names no file")]
    NoFile,
    #[error("source sibling {0:?} was not offered by the host")]
    UnknownSibling(&'static str),
    #[error("compressing a precompressed sibling (double encoding)")]
    DoubleEncoding,
    #[error("ranges need status 206, and status 206 needs ranges")]
    RangeStatus,
    #[error("no ranges, or more than {MAX_RANGES}")]
    RangeCount,
    #[error("range {0}-{1} is empty, reversed or outside the representation of {2} bytes")]
    RangeBounds(u64, u64, u64),
    #[error("ranges are not ascending, or overlap, or touch (coalesce them)")]
    RangeOrder,
}

/// What follows the head, validated.
#[derive(Debug)]
pub enum PlannedBody {
    Empty,
    Inline(Bytes),
    /// A whole stored representation, possibly compressed on the fly.
    Full { file: OpenedFile, compress: Option<(Coding, i32)> },
    /// Validated, sorted, disjoint inclusive ranges of a stored representation.
    Ranges { file: OpenedFile, ranges: Vec<(u64, u64)> },
}

/// A decision the host can execute.
#[derive(Debug)]
pub struct Plan {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: PlannedBody,
    /// Read size for the copying path, clamped.
    pub chunk_size: usize,
    /// Whether the policy allows `sendfile(2)`.
    pub zero_copy: bool,
}

fn coding(c: wit::ContentCoding) -> Coding {
    match c {
        wit::ContentCoding::Gzip => Coding::Gzip,
        wit::ContentCoding::Br => Coding::Br,
        wit::ContentCoding::Zstd => Coding::Zstd,
    }
}

/// The file a decision can draw bytes from.
fn target(found: &Found) -> Option<&FoundFile> {
    match found {
        Found::File(f) => Some(f),
        Found::Directory { index: Some((_, f)) } => Some(f),
        _ => None,
    }
}

/// Resolves a decision's `source` against what the host found; returns the
/// file and the coding it is stored in.
fn source(found: &Found, source: &wit::Source) -> Result<(OpenedFile, Option<Coding>), DecisionError> {
    let file = target(found).ok_or(DecisionError::NoFile)?;
    match source {
        wit::Source::Original => Ok((file.file.clone(), None)),
        wit::Source::Sibling(c) => {
            let c = coding(*c);
            let sibling = file.sibling(c).ok_or(DecisionError::UnknownSibling(c.token()))?;
            Ok((sibling.clone(), Some(c)))
        }
    }
}

/// Statuses whose responses never carry content (RFC 9110 §6.4.1).
fn bodiless(status: StatusCode) -> bool {
    status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED
}

/// Validates `decision` against what the host `found` and its transfer limits.
pub fn validate(decision: wit::Decision, found: &Found, limits: &TransferConfig) -> Result<Plan, DecisionError> {
    let status = match decision.status {
        200..=599 => StatusCode::from_u16(decision.status).map_err(|_| DecisionError::Status(decision.status))?,
        s => return Err(DecisionError::Status(s)),
    };
    if decision.headers.len() > MAX_HEADERS
        || decision.headers.iter().map(|h| h.name.len() + h.value.len()).sum::<usize>() > MAX_HEADER_BYTES
    {
        return Err(DecisionError::TooManyHeaders);
    }
    let mut headers = HeaderMap::with_capacity(decision.headers.len() + 2);
    let mut content_range = None;
    for h in decision.headers {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| DecisionError::HeaderName(h.name.clone()))?;
        let value = HeaderValue::from_str(&h.value).map_err(|_| DecisionError::HeaderValue(h.name.clone()))?;
        if HOST_OWNED.contains(&name) || is_hop_by_hop(&name) {
            return Err(DecisionError::HostOwnedHeader(h.name));
        }
        if name == header::CONTENT_RANGE {
            content_range = Some(h.value);
            continue;
        }
        headers.append(name, value);
    }

    let body = match decision.body {
        wit::Body::Empty => PlannedBody::Empty,
        wit::Body::Inline(bytes) => {
            if bytes.len() > MAX_INLINE {
                return Err(DecisionError::InlineTooLarge);
            }
            PlannedBody::Inline(Bytes::from(bytes))
        }
        wit::Body::Full(full) => {
            let (file, stored) = source(found, &full.source)?;
            let compress = match (full.compress, stored) {
                (None, _) => None,
                (Some(_), Some(_)) => return Err(DecisionError::DoubleEncoding),
                (Some(c), None) => Some((coding(c.coding), c.level)),
            };
            if let Some(c) = compress.map(|(c, _)| c).or(stored) {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c.token()));
            }
            PlannedBody::Full { file, compress }
        }
        wit::Body::Ranges(ranged) => {
            let (file, stored) = source(found, &ranged.source)?;
            if ranged.ranges.is_empty() || ranged.ranges.len() > MAX_RANGES {
                return Err(DecisionError::RangeCount);
            }
            let size = file.meta.size;
            let mut prev: Option<u64> = None;
            let mut ranges = Vec::with_capacity(ranged.ranges.len());
            for r in ranged.ranges {
                if r.first > r.last || r.last >= size {
                    return Err(DecisionError::RangeBounds(r.first, r.last, size));
                }
                // Ascending and separated by at least one byte.
                if prev.is_some_and(|p| r.first <= p.saturating_add(1)) {
                    return Err(DecisionError::RangeOrder);
                }
                prev = Some(r.last);
                ranges.push((r.first, r.last));
            }
            if let Some(c) = stored {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c.token()));
            }
            PlannedBody::Ranges { file, ranges }
        }
    };

    let has_content = !matches!(body, PlannedBody::Empty);
    if bodiless(status) && has_content {
        return Err(DecisionError::BodyNotAllowed(status.as_u16()));
    }
    if matches!(body, PlannedBody::Ranges { .. }) != (status == StatusCode::PARTIAL_CONTENT) {
        return Err(DecisionError::RangeStatus);
    }
    if let Some(value) = content_range {
        let allowed = status == StatusCode::RANGE_NOT_SATISFIABLE
            && !has_content
            && target(found).is_some_and(|f| {
                std::iter::once(&f.file).chain(f.siblings.iter().map(|(_, s)| s)).any(|r| value == format!("bytes */{}", r.meta.size))
            });
        if !allowed {
            return Err(DecisionError::ContentRange);
        }
        headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&value).map_err(|_| DecisionError::ContentRange)?);
    }

    let chunk_size = match decision.chunk_size {
        0 => limits.chunk_default.0,
        n => u64::from(n).clamp(limits.chunk_min.0, limits.chunk_max.0),
    } as usize;
    Ok(Plan { status, headers, body, chunk_size, zero_copy: decision.zero_copy && limits.zero_copy })
}

/// Hop-by-hop fields besides the standard ones in `HOST_OWNED`.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(name.as_str(), "keep-alive" | "proxy-connection")
}
