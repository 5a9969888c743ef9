//! `multipart/byteranges` framing (RFC 9110 §14.6), written by the host.

use std::collections::VecDeque;

use bytes::Bytes;

use super::Segment;

/// A boundary no one can predict, so no file can be made to contain it: 64
/// bits from the OS's randomness (`getrandom(2)`, one call per multipart
/// response). Should the OS refuse (a seccomp filter, say), `fastrand`: still
/// distinct per response, but seeded from the clock, so guessable.
fn boundary() -> String {
    let bits = getrandom::u64().unwrap_or_else(|_| fastrand::u64(..));
    format!("sluice-{bits:016x}")
}

/// The body segments and `Content-Type` of a multipart/byteranges response.
pub fn byteranges(
    ranges: &[(u64, u64)],
    size: u64,
    part_type: Option<&str>,
) -> (String, VecDeque<Segment>) {
    byteranges_with(&boundary(), ranges, size, part_type)
}

/// [`byteranges`] with a given boundary.
fn byteranges_with(
    boundary: &str,
    ranges: &[(u64, u64)],
    size: u64,
    part_type: Option<&str>,
) -> (String, VecDeque<Segment>) {
    let mut segments = VecDeque::with_capacity(ranges.len() * 2 + 1);
    for (i, &(first, last)) in ranges.iter().enumerate() {
        let mut head = String::with_capacity(96);
        if i > 0 {
            head.push_str("\r\n");
        }
        head.push_str("--");
        head.push_str(boundary);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The body as a client receives it: host bytes as they are, file
    /// segments filled from `file`.
    fn render(segments: &VecDeque<Segment>, file: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for segment in segments {
            match segment {
                Segment::Bytes(b) => out.extend_from_slice(b),
                Segment::File { offset, len } => {
                    out.extend_from_slice(&file[*offset as usize..(*offset + *len) as usize])
                }
            }
        }
        out
    }

    const FILE: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

    /// RFC 9110 §14.6 (with RFC 2046's multipart syntax): each part is
    /// `--boundary CRLF`, its header fields, an empty line and the range's
    /// bytes; the CRLF before every later delimiter belongs to that
    /// delimiter; the body ends with `CRLF --boundary-- CRLF`. Field names
    /// are case-insensitive, so the host's lower-case ones are fine.
    #[test]
    fn two_ranges_with_part_type_golden_bytes() {
        let (content_type, segments) = byteranges_with(
            "THIS_STRING_SEPARATES",
            &[(0, 4), (10, 19)],
            62,
            Some("application/pdf"),
        );
        assert_eq!(
            content_type,
            "multipart/byteranges; boundary=THIS_STRING_SEPARATES"
        );
        let expected = "--THIS_STRING_SEPARATES\r\n\
                        content-type: application/pdf\r\n\
                        content-range: bytes 0-4/62\r\n\
                        \r\n\
                        01234\r\n\
                        --THIS_STRING_SEPARATES\r\n\
                        content-type: application/pdf\r\n\
                        content-range: bytes 10-19/62\r\n\
                        \r\n\
                        abcdefghij\r\n\
                        --THIS_STRING_SEPARATES--\r\n";
        let body = render(&segments, FILE);
        assert_eq!(String::from_utf8(body).unwrap(), expected);
        // Content-Length is the sum of the segments: exactly the bytes above.
        let len: u64 = segments.iter().map(Segment::len).sum();
        assert_eq!(len, expected.len() as u64);
    }

    #[test]
    fn three_ranges_without_part_type_golden_bytes() {
        let (content_type, segments) =
            byteranges_with("b0und", &[(0, 0), (5, 9), (60, 61)], 62, None);
        assert_eq!(content_type, "multipart/byteranges; boundary=b0und");
        let expected = "--b0und\r\n\
                        content-range: bytes 0-0/62\r\n\
                        \r\n\
                        0\r\n\
                        --b0und\r\n\
                        content-range: bytes 5-9/62\r\n\
                        \r\n\
                        56789\r\n\
                        --b0und\r\n\
                        content-range: bytes 60-61/62\r\n\
                        \r\n\
                        YZ\r\n\
                        --b0und--\r\n";
        let body = render(&segments, FILE);
        assert_eq!(String::from_utf8(body).unwrap(), expected);
        assert_eq!(
            segments.iter().map(Segment::len).sum::<u64>(),
            expected.len() as u64
        );
    }

    /// File bytes are file segments (so they can leave by sendfile), in the
    /// order asked, and everything else is host bytes.
    #[test]
    fn file_bytes_are_file_segments_in_order() {
        let (_, segments) = byteranges_with("x", &[(3, 7), (1, 2), (3, 7)], 62, Some("text/plain"));
        let files: Vec<(u64, u64)> = segments
            .iter()
            .filter_map(|s| match s {
                Segment::File { offset, len } => Some((*offset, *len)),
                Segment::Bytes(_) => None,
            })
            .collect();
        assert_eq!(files, [(3, 5), (1, 2), (3, 5)]);
        assert_eq!(segments.len(), 7);
        for (i, s) in segments.iter().enumerate() {
            assert_eq!(matches!(s, Segment::File { .. }), i % 2 == 1, "{i}");
        }
    }

    /// The boundary the server uses: a valid RFC 2046 boundary (1-70 of its
    /// characters), the same in the Content-Type and the body, and
    /// different per response.
    #[test]
    fn real_boundaries_are_valid_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..64 {
            let (content_type, segments) = byteranges(&[(0, 0), (2, 3)], 62, None);
            let boundary = content_type
                .strip_prefix("multipart/byteranges; boundary=")
                .expect("multipart content type")
                .to_owned();
            assert!((1..=70).contains(&boundary.len()), "{boundary}");
            assert!(
                boundary
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"'()+_,-./:=?".contains(&b)),
                "{boundary}"
            );
            let body = String::from_utf8(render(&segments, FILE)).unwrap();
            assert!(body.starts_with(&format!("--{boundary}\r\n")), "{body}");
            assert!(body.ends_with(&format!("\r\n--{boundary}--\r\n")), "{body}");
            assert_eq!(body.matches(&format!("--{boundary}")).count(), 3);
            assert!(seen.insert(boundary), "boundary repeated");
        }
    }
}
