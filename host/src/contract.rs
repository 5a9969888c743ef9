//! The WIT contract, `sluice:policy`, as the host speaks it: the generated
//! bindings ([`wit`]), the host's limits on every decision (handed to a
//! policy's `configure` as `host-limits`, and enforced both while a decision
//! is copied out of the guest and when it is validated), the rules a
//! decision can break ([`DecisionError`]) and how the host may move a
//! policy's file bytes ([`Transport`]).
//!
//! It is the ground floor: the sandbox (`policy`), validation (`decision`),
//! the configuration (policy settings) and the request handler all speak
//! these types, and this module imports none of them.

pub mod wit;

use crate::policy_text::PolicyText;

/// Most ranges a decision may ask for (the policy's own cap is usually lower).
pub const MAX_RANGES: usize = 64;
/// Most header fields a decision may set.
pub const MAX_HEADERS: usize = 64;
/// Most bytes of header names and values a decision may set.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest inline body.
pub const MAX_INLINE: usize = 64 * 1024;
/// Most rewrites one request may take (`max-hops` in the WIT): at most
/// `MAX_HOPS + 1` calls to `decide`.
pub const MAX_HOPS: u8 = 4;
/// Longest `rewrite.reason`, in bytes.
pub const MAX_REASON: usize = 256;
/// Most entries of a directory listing the host reads for a policy
/// (`capabilities.listing` is clamped to it: `max-listing` in the WIT).
pub const MAX_LISTING: u32 = 10_000;

/// A rule of the WIT contract the decision broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error("status {0} is not a final status code (200-599)")]
    Status(u16),
    #[error("more than {MAX_HEADERS} header fields or {MAX_HEADER_BYTES} bytes of them")]
    TooManyHeaders,
    #[error("header name {0:?} is not a valid field name")]
    HeaderName(PolicyText),
    #[error("value of header {0:?} is not a valid field value")]
    HeaderValue(PolicyText),
    #[error("header {0:?} is computed by the host")]
    HostOwnedHeader(PolicyText),
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
    #[error("rewrite path {0:?} is not an absolute, normalized path")]
    RewritePath(PolicyText),
    #[error("rewrite reason longer than {MAX_REASON} bytes")]
    RewriteReason,
    #[error("ranges are not ascending, or overlap, or touch (coalesce them)")]
    RangeOrder,
}

/// The host's limits on every decision, as handed to `configure`.
pub fn host_limits() -> wit::HostLimits {
    let cap = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    wit::HostLimits {
        max_ranges: cap(MAX_RANGES),
        max_headers: cap(MAX_HEADERS),
        max_header_bytes: cap(MAX_HEADER_BYTES),
        max_inline: cap(MAX_INLINE),
    }
}

/// How the host may move a policy's file bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    /// Read size for the copying path; 0 for the host default.
    pub chunk_size: u32,
    /// Whether `sendfile(2)` is allowed.
    pub zero_copy: bool,
}
