//! The request fields the policy reads, and small pieces of HTTP field
//! syntax (RFC 9110 §5) shared by the parsers.

use crate::types::Request;

/// A request field the policy reads. Every read goes through one of these
/// (`Request::header`, `Request::header_values`, `singleton`), and
/// `configure` declares in `capabilities.request-headers` exactly the
/// `FIELDS` its configuration reads (`Config::reads`), so the host passes
/// every field the policy reads and no other. `Accept` is only read for the
/// `fallback` rule: declaring it always would make every browser's `Accept`
/// part of the decision-cache key for nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    IfMatch,
    IfNoneMatch,
    IfModifiedSince,
    IfUnmodifiedSince,
    IfRange,
    Range,
    AcceptEncoding,
    Accept,
}

/// Every `Field` with its (lower-case) name, in declaration order, so that
/// `field as usize` indexes it (a test checks it).
pub const FIELDS: [(Field, &str); 8] = [
    (Field::IfMatch, "if-match"),
    (Field::IfNoneMatch, "if-none-match"),
    (Field::IfModifiedSince, "if-modified-since"),
    (Field::IfUnmodifiedSince, "if-unmodified-since"),
    (Field::IfRange, "if-range"),
    (Field::Range, "range"),
    (Field::AcceptEncoding, "accept-encoding"),
    (Field::Accept, "accept"),
];

impl Field {
    /// The field name, lower case.
    pub fn name(self) -> &'static str {
        FIELDS[self as usize].1
    }
}

/// How often a field defined to occur at most once appeared in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Singleton<'a> {
    /// Not sent.
    Absent,
    /// Sent once, with this value.
    One(&'a str),
    /// Sent more than once. Such a field is invalid (it cannot be combined
    /// into a list, RFC 9110 §5.3), and each caller decides what invalid means
    /// for it.
    Many,
}

/// Looks up a singleton field (`Range`, `If-Range`, `If-Modified-Since`,
/// `If-Unmodified-Since`).
pub fn singleton(req: &Request, field: Field) -> Singleton<'_> {
    let mut values = req.header_values(field);
    match (values.next(), values.next()) {
        (None, _) => Singleton::Absent,
        (Some(v), None) => Singleton::One(v),
        (Some(_), Some(_)) => Singleton::Many,
    }
}

/// Strips optional whitespace (`OWS`: spaces and tabs) from both ends.
pub fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// `tchar` (RFC 9110 §5.6.2).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `token = 1*tchar`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Header, HttpVersion};

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            raw_query: None,
            headers: headers.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
            tls: false,
            version: HttpVersion::Http11,
            hop: None,
        }
    }

    #[test]
    fn singleton_counts_occurrences_case_insensitively() {
        let r = request(&[
            ("range", "bytes=0-1"),
            ("If-Range", "\"a\""),
            ("if-range", "\"b\""),
        ]);
        assert_eq!(singleton(&r, Field::Range), Singleton::One("bytes=0-1"));
        assert_eq!(singleton(&r, Field::IfRange), Singleton::Many);
        assert_eq!(singleton(&r, Field::IfModifiedSince), Singleton::Absent);
    }

    #[test]
    fn the_field_table_is_in_declaration_order() {
        for (i, (field, name)) in FIELDS.iter().enumerate() {
            assert_eq!(*field as usize, i);
            assert_eq!(field.name(), *name);
            assert_eq!(name.to_ascii_lowercase(), *name);
        }
    }

    #[test]
    fn tokens() {
        assert!(is_token("gzip"));
        assert!(is_token("x-gzip"));
        assert!(is_token("*"));
        assert!(!is_token(""));
        assert!(!is_token("a b"));
        assert!(!is_token("a;b"));
        assert!(!is_token("é"));
        assert_eq!(trim_ows(" \t x \t"), "x");
    }
}
