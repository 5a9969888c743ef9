//! Validation of the policy's untrusted decision into an executable [`Plan`].
//!
//! Every rule a decision can break has its own [`DecisionError`] variant, so
//! the log line names it. A rejected decision becomes a 500 before any byte
//! of the planned body is sent.
//!
//! Validation yields a [`Verdict`]: the decision checked against what the host
//! found, holding no descriptors, so a reusable policy's verdict can be kept
//! and bound again ([`Verdict::plan`]) to a later lookup with the same
//! metadata, which is what the decision cache's key guarantees.

pub mod reuse;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

use crate::coding::Coding;
use crate::config::TransferConfig;
use crate::contract::{
    wit, DecisionError, Transport, MAX_HEADERS, MAX_HEADER_BYTES, MAX_INLINE, MAX_RANGES,
    MAX_REASON,
};
use crate::resolve::{already_normal, Found, FoundFile, NormalPath, OpenedFile};
use crate::shared_cache::heap;

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

/// What follows the head, validated, naming its stored bytes by coding
/// (`None`: the file itself) rather than by descriptor.
#[derive(Debug, Clone)]
enum VerdictBody {
    Empty,
    Inline(Bytes),
    Full {
        stored: Option<Coding>,
        compress: Option<(Coding, i32)>,
    },
    Ranges {
        stored: Option<Coding>,
        ranges: Box<[(u64, u64)]>,
    },
}

/// A validated decision, independent of any open descriptor.
#[derive(Debug, Clone)]
pub struct Verdict {
    status: StatusCode,
    headers: HeaderMap,
    body: VerdictBody,
    chunk_size: usize,
    zero_copy: bool,
}

impl Verdict {
    /// The plan for a lookup with the metadata this verdict was validated
    /// against. `None` if `found` lacks a file the verdict draws bytes from
    /// (never for the same metadata: a cached verdict's key includes it).
    pub fn plan(&self, found: &Found) -> Option<Plan> {
        let stored = |coding: Option<Coding>| {
            let f = target(found)?;
            match coding {
                None => Some(f.file.clone()),
                Some(c) => f.sibling(c).cloned(),
            }
        };
        let body = match &self.body {
            VerdictBody::Empty => PlannedBody::Empty,
            VerdictBody::Inline(b) => PlannedBody::Inline(b.clone()),
            VerdictBody::Full {
                stored: s,
                compress,
            } => PlannedBody::Full {
                file: stored(*s)?,
                compress: *compress,
            },
            VerdictBody::Ranges { stored: s, ranges } => PlannedBody::Ranges {
                file: stored(*s)?,
                ranges: ranges.to_vec(),
            },
        };
        Some(Plan {
            status: self.status,
            headers: self.headers.clone(),
            body,
            chunk_size: self.chunk_size,
            zero_copy: self.zero_copy,
        })
    }

    /// The same verdict laid out to be kept: its header map cloned to its
    /// exact size (a map is built with room to spare; a clone's entries are
    /// exactly its length) and every byte buffer already shared (the first
    /// clone of a `Bytes` made from a `Vec` allocates its shared header,
    /// which would otherwise happen on the first cache hit, uncounted). What
    /// [`Verdict::heap_bytes`] counts is then what it holds.
    pub fn compacted(self) -> Verdict {
        let headers = self.headers.clone();
        let body = self.body.clone();
        drop(self.headers);
        drop(self.body);
        Verdict {
            headers,
            body,
            ..self
        }
    }

    /// The heap bytes this verdict holds, allocator overhead included (see
    /// [`heap`]), once [`Verdict::compacted`]; the decision cache's weight is
    /// this, the key and the entry's own costs. A unit test checks it
    /// against a counting allocator.
    pub fn heap_bytes(&self) -> u64 {
        heap_bytes_of_headers(&self.headers)
            + match &self.body {
                VerdictBody::Inline(b) => shared_bytes(b.len()),
                VerdictBody::Ranges { ranges, .. } => heap(size_of_val::<[(u64, u64)]>(ranges)),
                VerdictBody::Empty | VerdictBody::Full { .. } => 0,
            }
    }
}

/// A `Bytes` of `len` bytes copied from a slice and then cloned: its buffer
/// and, once shared, its 24-byte `Shared` header (an empty one is static).
fn shared_bytes(len: usize) -> u64 {
    if len == 0 {
        0
    } else {
        heap(len) + heap(3 * size_of::<usize>())
    }
}

/// http's `HeaderMap` keeps one `Bucket` per name (hash, name, first value,
/// links: 104 bytes on 64-bit targets) and one `ExtraValue` per further
/// value (72), plus a table of 4-byte positions whose length is a power of
/// two with a quarter left free. These are private types: the sizes are
/// checked by the accounting test, which fails if an http release changes
/// them.
const HEADER_BUCKET: usize = 104;
const HEADER_EXTRA_VALUE: usize = 72;

fn heap_bytes_of_headers(headers: &HeaderMap) -> u64 {
    if headers.capacity() == 0 {
        return 0;
    }
    // `capacity()` is the table length less a quarter.
    let mut table = headers.capacity().next_power_of_two();
    if table - table / 4 < headers.capacity() {
        table *= 2;
    }
    let names = headers.keys_len();
    let mut bytes = heap(4 * table)
        + heap(HEADER_BUCKET * names)
        + heap(HEADER_EXTRA_VALUE * (headers.len() - names));
    for (name, value) in headers {
        // The one field the host adds itself, from static text (a policy
        // may not set it: `HOST_OWNED`).
        if name != header::CONTENT_ENCODING {
            bytes += shared_bytes(value.len());
        }
    }
    for name in headers.keys() {
        if !is_standard(name) {
            bytes += shared_bytes(name.as_str().len());
        }
    }
    bytes
}

/// Whether `name` is one of http's standard names, which point to static
/// text rather than a heap copy: parsed again, a standard name gives the
/// very same `&'static str`, a custom one a new copy.
fn is_standard(name: &HeaderName) -> bool {
    HeaderName::from_bytes(name.as_str().as_bytes())
        .is_ok_and(|again| std::ptr::eq(again.as_str(), name.as_str()))
}

/// What follows the head, validated.
#[derive(Debug)]
pub enum PlannedBody {
    Empty,
    Inline(Bytes),
    /// A whole stored representation, possibly compressed on the fly.
    Full {
        file: OpenedFile,
        compress: Option<(Coding, i32)>,
    },
    /// Validated, sorted, disjoint inclusive ranges of a stored representation.
    Ranges {
        file: OpenedFile,
        ranges: Vec<(u64, u64)>,
    },
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

/// The file a decision can draw bytes from.
fn target(found: &Found) -> Option<&FoundFile> {
    match found {
        Found::File(f) => Some(f),
        Found::Directory {
            index: Some((_, f)),
        } => Some(f),
        _ => None,
    }
}

/// Resolves a decision's `source` against what the host found; returns the
/// file and the coding it is stored in.
fn source<'a>(
    found: &'a Found,
    source: &wit::Source,
) -> Result<(&'a OpenedFile, Option<Coding>), DecisionError> {
    let file = target(found).ok_or(DecisionError::NoFile)?;
    match *source {
        wit::Source::Original => Ok((&file.file, None)),
        wit::Source::Sibling(c) => {
            let sibling = file
                .sibling(c)
                .ok_or(DecisionError::UnknownSibling(c.token()))?;
            Ok((sibling, Some(c)))
        }
    }
}

/// Statuses whose responses never carry content: 204 and 304 (RFC 9110
/// §6.4.1) and 205 (§15.3.6).
fn bodiless(status: StatusCode) -> bool {
    status == StatusCode::NO_CONTENT
        || status == StatusCode::RESET_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// Checks a `rewrite` as the WIT says: its path is a normalized absolute
/// path (as a request path is after normalizing; it is not decoded), its
/// reason at most `MAX_REASON` bytes (also measured before the copy, see
/// `policy::bounded`). Returns the path to resolve: beneath the site's own
/// root, like any request path.
pub fn check_rewrite(rewrite: &wit::Rewrite) -> Result<NormalPath, DecisionError> {
    if rewrite.reason.len() > MAX_REASON {
        return Err(DecisionError::RewriteReason);
    }
    already_normal(&rewrite.path)
        .ok_or_else(|| DecisionError::RewritePath(rewrite.path.as_str().into()))
}

/// Validates `decision` against what the host `found` and its transfer
/// limits; `transport` is the policy's (clamped and narrowed here).
pub fn validate(
    decision: wit::Decision,
    transport: Transport,
    found: &Found,
    limits: &TransferConfig,
) -> Result<Verdict, DecisionError> {
    let status = match decision.status {
        200..=599 => StatusCode::from_u16(decision.status)
            .map_err(|_| DecisionError::Status(decision.status))?,
        s => return Err(DecisionError::Status(s)),
    };
    if decision.headers.len() > MAX_HEADERS
        || decision
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len())
            .sum::<usize>()
            > MAX_HEADER_BYTES
    {
        return Err(DecisionError::TooManyHeaders);
    }
    let mut headers = HeaderMap::with_capacity(decision.headers.len() + 2);
    let mut content_range = None;
    for h in decision.headers {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| DecisionError::HeaderName(h.name.as_str().into()))?;
        let value = HeaderValue::from_str(&h.value)
            .map_err(|_| DecisionError::HeaderValue(h.name.as_str().into()))?;
        if HOST_OWNED.contains(&name) || is_hop_by_hop(&name) {
            return Err(DecisionError::HostOwnedHeader(h.name.as_str().into()));
        }
        if name == header::CONTENT_RANGE {
            // One field: with two, which one the client believes is anyone's guess.
            if content_range.replace(h.value).is_some() {
                return Err(DecisionError::ContentRange);
            }
            continue;
        }
        headers.append(name, value);
    }

    let body = match decision.body {
        wit::Body::Empty => VerdictBody::Empty,
        wit::Body::Inline(bytes) => {
            if bytes.len() > MAX_INLINE {
                return Err(DecisionError::InlineTooLarge);
            }
            VerdictBody::Inline(Bytes::from(bytes))
        }
        wit::Body::Full(full) => {
            let (_, stored) = source(found, &full.source)?;
            let compress = match (full.compress, stored) {
                (None, _) => None,
                (Some(_), Some(_)) => return Err(DecisionError::DoubleEncoding),
                (Some(c), None) => Some((c.coding, c.level)),
            };
            if let Some(c) = compress.map(|(c, _)| c).or(stored) {
                headers.insert(
                    header::CONTENT_ENCODING,
                    HeaderValue::from_static(c.token()),
                );
            }
            VerdictBody::Full { stored, compress }
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
                headers.insert(
                    header::CONTENT_ENCODING,
                    HeaderValue::from_static(c.token()),
                );
            }
            VerdictBody::Ranges {
                stored,
                ranges: ranges.into(),
            }
        }
    };

    let has_content = !matches!(body, VerdictBody::Empty);
    if bodiless(status) && has_content {
        return Err(DecisionError::BodyNotAllowed(status.as_u16()));
    }
    if matches!(body, VerdictBody::Ranges { .. }) != (status == StatusCode::PARTIAL_CONTENT) {
        return Err(DecisionError::RangeStatus);
    }
    if let Some(value) = content_range {
        let allowed = status == StatusCode::RANGE_NOT_SATISFIABLE
            && !has_content
            && target(found).is_some_and(|f| {
                std::iter::once(&f.file)
                    .chain(f.siblings.iter().map(|(_, s)| s))
                    .any(|r| value == format!("bytes */{}", r.meta.size))
            });
        if !allowed {
            return Err(DecisionError::ContentRange);
        }
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&value).map_err(|_| DecisionError::ContentRange)?,
        );
    }

    let chunk_size = match transport.chunk_size {
        0 => limits.chunk_default.0,
        n => u64::from(n).clamp(limits.chunk_min.0, limits.chunk_max.0),
    } as usize;
    Ok(Verdict {
        status,
        headers,
        body,
        chunk_size,
        zero_copy: transport.zero_copy && limits.zero_copy,
    })
}

/// Hop-by-hop fields besides the standard ones in `HOST_OWNED`.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(name.as_str(), "keep-alive" | "proxy-connection")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::resolve::FileMeta;

    const SIZE: u64 = 100;
    const GZ_SIZE: u64 = 40;

    fn opened(size: u64) -> OpenedFile {
        OpenedFile {
            file: Arc::new(tempfile::tempfile().unwrap()),
            meta: FileMeta {
                size,
                mtime_ns: 0,
                inode: 1,
                device: 1,
            },
        }
    }

    /// A 100-byte file with a 40-byte gzip sibling.
    fn file() -> Found {
        Found::File(FoundFile {
            file: opened(SIZE),
            siblings: vec![(Coding::Gzip, opened(GZ_SIZE))],
        })
    }

    fn limits() -> TransferConfig {
        TransferConfig::default()
    }

    fn h(name: &str, value: &str) -> wit::Header {
        wit::Header {
            name: name.into(),
            value: value.into(),
        }
    }

    fn d(status: u16, headers: Vec<wit::Header>, body: wit::Body) -> wit::Decision {
        wit::Decision {
            status,
            headers,
            body,
        }
    }

    const TRANSPORT: Transport = Transport {
        chunk_size: 0,
        zero_copy: true,
    };

    /// Validates and binds to the same lookup, as the handler does.
    fn validate(
        decision: wit::Decision,
        found: &Found,
        limits: &TransferConfig,
    ) -> Result<Plan, DecisionError> {
        super::validate(decision, TRANSPORT, found, limits).map(|v| v.plan(found).unwrap())
    }

    fn full(source: wit::Source, compress: Option<wit::ContentCoding>) -> wit::Body {
        wit::Body::Full(wit::FullBody {
            source,
            compress: compress.map(|coding| wit::Compression { coding, level: 6 }),
        })
    }

    fn ranges(source: wit::Source, r: &[(u64, u64)]) -> wit::Body {
        wit::Body::Ranges(wit::RangedBody {
            source,
            ranges: r
                .iter()
                .map(|&(first, last)| wit::ByteRange { first, last })
                .collect(),
        })
    }

    use wit::ContentCoding::{Br, Gzip};
    use wit::Source::{Original, Sibling};

    /// Every rule, with a decision breaking it and what it is checked against.
    #[test]
    fn every_rule_has_a_bad_decision() {
        let missing = Found::Missing;
        let f = file();
        let no_index = Found::Directory { index: None };
        let empty = || wit::Body::Empty;
        let many: Vec<(u64, u64)> = (0..=MAX_RANGES as u64).map(|i| (i * 2, i * 2)).collect();
        let cases: Vec<(&str, wit::Decision, &Found, DecisionError)> = vec![
            (
                "1xx",
                d(101, vec![], empty()),
                &missing,
                DecisionError::Status(101),
            ),
            (
                "zero",
                d(0, vec![], empty()),
                &missing,
                DecisionError::Status(0),
            ),
            (
                "199",
                d(199, vec![], empty()),
                &missing,
                DecisionError::Status(199),
            ),
            (
                "600",
                d(600, vec![], empty()),
                &missing,
                DecisionError::Status(600),
            ),
            (
                "max",
                d(u16::MAX, vec![], empty()),
                &missing,
                DecisionError::Status(u16::MAX),
            ),
            (
                "65 headers",
                d(
                    200,
                    (0..=MAX_HEADERS).map(|_| h("x-a", "b")).collect(),
                    empty(),
                ),
                &missing,
                DecisionError::TooManyHeaders,
            ),
            (
                "16 KiB of headers",
                d(200, vec![h("x-a", &"v".repeat(MAX_HEADER_BYTES))], empty()),
                &missing,
                DecisionError::TooManyHeaders,
            ),
            (
                "name with space",
                d(200, vec![h("bad name", "x")], empty()),
                &missing,
                DecisionError::HeaderName("bad name".into()),
            ),
            (
                "empty name",
                d(200, vec![h("", "x")], empty()),
                &missing,
                DecisionError::HeaderName("".into()),
            ),
            (
                "name with colon",
                d(200, vec![h("a:b", "x")], empty()),
                &missing,
                DecisionError::HeaderName("a:b".into()),
            ),
            (
                "non-ASCII name",
                d(200, vec![h("é", "x")], empty()),
                &missing,
                DecisionError::HeaderName("é".into()),
            ),
            (
                "CRLF injection",
                d(200, vec![h("x-a", "a\r\nset-cookie: x=1")], empty()),
                &missing,
                DecisionError::HeaderValue("x-a".into()),
            ),
            (
                "NUL in value",
                d(200, vec![h("x-a", "a\0b")], empty()),
                &missing,
                DecisionError::HeaderValue("x-a".into()),
            ),
            (
                "DEL in value",
                d(200, vec![h("x-a", "a\x7fb")], empty()),
                &missing,
                DecisionError::HeaderValue("x-a".into()),
            ),
            // Bytes >= 0x80 in a value are obs-text: obsolete but valid field syntax, so accepted.
            (
                "content-length",
                d(200, vec![h("Content-Length", "5")], empty()),
                &missing,
                DecisionError::HostOwnedHeader("Content-Length".into()),
            ),
            (
                "transfer-encoding",
                d(200, vec![h("transfer-encoding", "chunked")], empty()),
                &missing,
                DecisionError::HostOwnedHeader("transfer-encoding".into()),
            ),
            (
                "connection",
                d(200, vec![h("connection", "close")], empty()),
                &missing,
                DecisionError::HostOwnedHeader("connection".into()),
            ),
            (
                "keep-alive",
                d(200, vec![h("Keep-Alive", "5")], empty()),
                &missing,
                DecisionError::HostOwnedHeader("Keep-Alive".into()),
            ),
            (
                "upgrade",
                d(200, vec![h("upgrade", "h2c")], empty()),
                &missing,
                DecisionError::HostOwnedHeader("upgrade".into()),
            ),
            (
                "trailer",
                d(200, vec![h("trailer", "x")], empty()),
                &missing,
                DecisionError::HostOwnedHeader("trailer".into()),
            ),
            (
                "te",
                d(200, vec![h("TE", "trailers")], empty()),
                &missing,
                DecisionError::HostOwnedHeader("TE".into()),
            ),
            (
                "proxy-connection",
                d(200, vec![h("proxy-connection", "close")], empty()),
                &missing,
                DecisionError::HostOwnedHeader("proxy-connection".into()),
            ),
            (
                "content-encoding",
                d(200, vec![h("content-encoding", "gzip")], empty()),
                &missing,
                DecisionError::HostOwnedHeader("content-encoding".into()),
            ),
            (
                "content-range on a 200",
                d(200, vec![h("content-range", "bytes */100")], empty()),
                &f,
                DecisionError::ContentRange,
            ),
            (
                "content-range on a 206",
                d(
                    206,
                    vec![h("content-range", "bytes 0-0/100")],
                    ranges(Original, &[(0, 0)]),
                ),
                &f,
                DecisionError::ContentRange,
            ),
            (
                "416 with a wrong size",
                d(416, vec![h("content-range", "bytes */99")], empty()),
                &f,
                DecisionError::ContentRange,
            ),
            (
                "416 with a body",
                d(
                    416,
                    vec![h("content-range", "bytes */100")],
                    wit::Body::Inline(b"x".to_vec()),
                ),
                &f,
                DecisionError::ContentRange,
            ),
            (
                "416 with no file",
                d(416, vec![h("content-range", "bytes */0")], empty()),
                &missing,
                DecisionError::ContentRange,
            ),
            (
                "two content-ranges",
                d(
                    416,
                    vec![
                        h("content-range", "bytes */100"),
                        h("content-range", "bytes */40"),
                    ],
                    empty(),
                ),
                &f,
                DecisionError::ContentRange,
            ),
            (
                "inline over 64 KiB",
                d(200, vec![], wit::Body::Inline(vec![0; MAX_INLINE + 1])),
                &missing,
                DecisionError::InlineTooLarge,
            ),
            (
                "304 with a body",
                d(304, vec![], wit::Body::Inline(b"x".to_vec())),
                &missing,
                DecisionError::BodyNotAllowed(304),
            ),
            (
                "205 with a body",
                d(205, vec![], wit::Body::Inline(b"x".to_vec())),
                &missing,
                DecisionError::BodyNotAllowed(205),
            ),
            (
                "204 with a file",
                d(204, vec![], full(Original, None)),
                &f,
                DecisionError::BodyNotAllowed(204),
            ),
            (
                "file body, no file",
                d(200, vec![], full(Original, None)),
                &missing,
                DecisionError::NoFile,
            ),
            (
                "file body, a directory without index",
                d(200, vec![], full(Original, None)),
                &no_index,
                DecisionError::NoFile,
            ),
            (
                "ranges, no file",
                d(206, vec![], ranges(Original, &[(0, 0)])),
                &missing,
                DecisionError::NoFile,
            ),
            (
                "sibling not offered",
                d(200, vec![], full(Sibling(Br), None)),
                &f,
                DecisionError::UnknownSibling("br"),
            ),
            (
                "ranges of a sibling not offered",
                d(206, vec![], ranges(Sibling(Br), &[(0, 0)])),
                &f,
                DecisionError::UnknownSibling("br"),
            ),
            (
                "compressing a sibling",
                d(200, vec![], full(Sibling(Gzip), Some(Br))),
                &f,
                DecisionError::DoubleEncoding,
            ),
            (
                "ranges on a 200",
                d(200, vec![], ranges(Original, &[(0, 0)])),
                &f,
                DecisionError::RangeStatus,
            ),
            (
                "206 without ranges",
                d(206, vec![], full(Original, None)),
                &f,
                DecisionError::RangeStatus,
            ),
            (
                "206 inline",
                d(206, vec![], wit::Body::Inline(b"x".to_vec())),
                &f,
                DecisionError::RangeStatus,
            ),
            (
                "no ranges",
                d(206, vec![], ranges(Original, &[])),
                &f,
                DecisionError::RangeCount,
            ),
            (
                "65 ranges",
                d(206, vec![], ranges(Original, &many)),
                &f,
                DecisionError::RangeCount,
            ),
            (
                "reversed",
                d(206, vec![], ranges(Original, &[(5, 4)])),
                &f,
                DecisionError::RangeBounds(5, 4, SIZE),
            ),
            (
                "past the end",
                d(206, vec![], ranges(Original, &[(0, SIZE)])),
                &f,
                DecisionError::RangeBounds(0, SIZE, SIZE),
            ),
            (
                "past the sibling's end",
                d(206, vec![], ranges(Sibling(Gzip), &[(0, GZ_SIZE)])),
                &f,
                DecisionError::RangeBounds(0, GZ_SIZE, GZ_SIZE),
            ),
            (
                "u64::MAX",
                d(206, vec![], ranges(Original, &[(u64::MAX, u64::MAX)])),
                &f,
                DecisionError::RangeBounds(u64::MAX, u64::MAX, SIZE),
            ),
            (
                "descending",
                d(206, vec![], ranges(Original, &[(10, 20), (0, 5)])),
                &f,
                DecisionError::RangeOrder,
            ),
            (
                "overlapping",
                d(206, vec![], ranges(Original, &[(0, 10), (10, 20)])),
                &f,
                DecisionError::RangeOrder,
            ),
            (
                "touching",
                d(206, vec![], ranges(Original, &[(0, 10), (11, 20)])),
                &f,
                DecisionError::RangeOrder,
            ),
            (
                "duplicate",
                d(206, vec![], ranges(Original, &[(3, 3), (3, 3)])),
                &f,
                DecisionError::RangeOrder,
            ),
        ];
        let mut rules = std::collections::HashSet::new();
        for (what, decision, found, expected) in cases {
            let Err(got) = validate(decision, found, &limits()) else {
                panic!("{what}: accepted")
            };
            assert_eq!(got, expected, "{what}");
            // The log line names the rule.
            assert!(!got.to_string().is_empty());
            rules.insert(std::mem::discriminant(&got));
        }
        // Every DecisionError variant is covered above.
        assert_eq!(
            rules.len(),
            15,
            "a DecisionError variant has no bad decision in the table"
        );
    }

    #[test]
    fn good_decisions_become_plans() {
        let plan = validate(
            d(
                200,
                vec![
                    h("Content-Type", "text/plain"),
                    h("x-a", "1"),
                    h("x-a", "2"),
                ],
                wit::Body::Inline(b"hi".to_vec()),
            ),
            &Found::Missing,
            &limits(),
        )
        .unwrap();
        assert_eq!(plan.status, StatusCode::OK);
        assert_eq!(plan.headers["content-type"], "text/plain");
        assert_eq!(
            plan.headers.get_all("x-a").iter().count(),
            2,
            "repeated fields are kept"
        );
        assert!(matches!(plan.body, PlannedBody::Inline(ref b) if b.as_ref() == b"hi"));

        // Limits: exactly at them is fine.
        let at_limit = d(
            200,
            (0..MAX_HEADERS).map(|_| h("x-a", "b")).collect(),
            wit::Body::Inline(vec![0; MAX_INLINE]),
        );
        validate(at_limit, &Found::Missing, &limits()).unwrap();

        for status in [200, 201, 204, 301, 304, 404, 451, 500, 599] {
            let plan = validate(
                d(status, vec![], wit::Body::Empty),
                &Found::Missing,
                &limits(),
            )
            .unwrap();
            assert_eq!(plan.status.as_u16(), status);
        }

        let plan = validate(d(200, vec![], full(Original, None)), &file(), &limits()).unwrap();
        assert!(
            matches!(plan.body, PlannedBody::Full { ref file, compress: None } if file.meta.size == SIZE)
        );
        assert!(plan.headers.get("content-encoding").is_none());

        let plan = validate(
            d(200, vec![], full(Sibling(Gzip), None)),
            &file(),
            &limits(),
        )
        .unwrap();
        assert!(
            matches!(plan.body, PlannedBody::Full { ref file, compress: None } if file.meta.size == GZ_SIZE)
        );
        assert_eq!(
            plan.headers["content-encoding"], "gzip",
            "the host adds Content-Encoding"
        );

        let plan = validate(d(200, vec![], full(Original, Some(Br))), &file(), &limits()).unwrap();
        assert!(matches!(
            plan.body,
            PlannedBody::Full {
                compress: Some((Coding::Br, 6)),
                ..
            }
        ));
        assert_eq!(plan.headers["content-encoding"], "br");

        // An index file counts as the file.
        let index = Found::Directory {
            index: Some((
                "index.html".into(),
                FoundFile {
                    file: opened(7),
                    siblings: vec![],
                },
            )),
        };
        let plan = validate(d(200, vec![], full(Original, None)), &index, &limits()).unwrap();
        assert!(matches!(plan.body, PlannedBody::Full { ref file, .. } if file.meta.size == 7));

        let plan = validate(
            d(
                206,
                vec![],
                ranges(Original, &[(0, 0), (2, 10), (SIZE - 1, SIZE - 1)]),
            ),
            &file(),
            &limits(),
        )
        .unwrap();
        assert!(
            matches!(plan.body, PlannedBody::Ranges { ref ranges, .. } if ranges == &[(0, 0), (2, 10), (99, 99)])
        );
        let max: Vec<(u64, u64)> = (0..MAX_RANGES as u64)
            .map(|i| (i, i))
            .map(|(a, _)| (a * 2, a * 2))
            .collect();
        let big = Found::File(FoundFile {
            file: opened(1000),
            siblings: vec![],
        });
        validate(d(206, vec![], ranges(Original, &max)), &big, &limits()).unwrap();
        let plan = validate(
            d(206, vec![], ranges(Sibling(Gzip), &[(0, GZ_SIZE - 1)])),
            &file(),
            &limits(),
        )
        .unwrap();
        assert_eq!(plan.headers["content-encoding"], "gzip");

        // 416 with the size of the file or of a reported sibling.
        for size in [SIZE, GZ_SIZE] {
            let cr = format!("bytes */{size}");
            let plan = validate(
                d(416, vec![h("Content-Range", &cr)], wit::Body::Empty),
                &file(),
                &limits(),
            )
            .unwrap();
            assert_eq!(plan.headers["content-range"], cr.as_str());
        }
    }

    #[test]
    fn a_verdict_binds_to_a_later_lookup_of_the_same_metadata() {
        let verdict = super::validate(
            d(200, vec![], full(Sibling(Gzip), None)),
            TRANSPORT,
            &file(),
            &limits(),
        )
        .unwrap();
        // Another lookup (other descriptors) with the same metadata.
        let later = file();
        let plan = verdict.plan(&later).unwrap();
        assert!(
            matches!(plan.body, PlannedBody::Full { ref file, .. } if file.meta.size == GZ_SIZE)
        );
        // A lookup without that sibling cannot be planned (never the same key).
        let without = Found::File(FoundFile {
            file: opened(SIZE),
            siblings: vec![],
        });
        assert!(verdict.plan(&without).is_none());
        assert!(verdict.plan(&Found::Missing).is_none());
        assert!(verdict.heap_bytes() > 0);
    }

    #[test]
    fn chunk_size_is_clamped_and_zero_copy_narrowed() {
        let l = limits();
        let with = |transport: Transport, l: &TransferConfig| {
            super::validate(
                d(200, vec![], wit::Body::Empty),
                transport,
                &Found::Missing,
                l,
            )
            .unwrap()
            .plan(&Found::Missing)
            .unwrap()
        };
        let chunk = |n: u32| {
            with(
                Transport {
                    chunk_size: n,
                    zero_copy: true,
                },
                &l,
            )
            .chunk_size as u64
        };
        assert_eq!(chunk(0), l.chunk_default.0);
        assert_eq!(chunk(1), l.chunk_min.0);
        assert_eq!(chunk(u32::MAX), l.chunk_max.0);
        assert_eq!(chunk(64 << 10), 64 << 10);

        let mut off = limits();
        off.zero_copy = false;
        assert!(!with(TRANSPORT, &off).zero_copy);
        let no = Transport {
            chunk_size: 0,
            zero_copy: false,
        };
        assert!(!with(no, &l).zero_copy);
        assert!(with(TRANSPORT, &l).zero_copy);
    }
}
