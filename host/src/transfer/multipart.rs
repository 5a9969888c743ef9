//! `multipart/byteranges` framing (RFC 9110 §14.6), written by the host.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::Segment;

/// A boundary unlikely to occur in any file: 64 bits from a per-process
/// sequence mixed with the start time.
fn boundary() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t ^ u64::from(std::process::id()).rotate_left(32)
    });
    // splitmix64 of the sequence: distinct per response, not guessable from
    // the previous one without the seed.
    let mut z = seed.wrapping_add(
        SEQ.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("sluice-{:016x}", z ^ (z >> 31))
}

/// The body segments and `Content-Type` of a multipart/byteranges response.
pub fn byteranges(
    ranges: &[(u64, u64)],
    size: u64,
    part_type: Option<&str>,
) -> (String, VecDeque<Segment>) {
    let boundary = boundary();
    let mut segments = VecDeque::with_capacity(ranges.len() * 2 + 1);
    for (i, &(first, last)) in ranges.iter().enumerate() {
        let mut head = String::with_capacity(96);
        if i > 0 {
            head.push_str("\r\n");
        }
        head.push_str("--");
        head.push_str(&boundary);
        head.push_str("\r\n");
        if let Some(t) = part_type {
            head.push_str("content-type: ");
            head.push_str(t);
            head.push_str("\r\n");
        }
        head.push_str(&format!(
            "content-range: bytes {first}-{last}/{size}\r\n\r\n"
        ));
        segments.push_back(Segment::Bytes(Bytes::from(head)));
        segments.push_back(Segment::File {
            offset: first,
            len: last - first + 1,
        });
    }
    segments.push_back(Segment::Bytes(Bytes::from(format!(
        "\r\n--{boundary}--\r\n"
    ))));
    (
        format!("multipart/byteranges; boundary={boundary}"),
        segments,
    )
}
