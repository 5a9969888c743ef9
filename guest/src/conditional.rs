//! Conditional requests (RFC 9110 §13): the preconditions, evaluated in the
//! order of §13.2.2 against the selected representation's validators.

use crate::etag::{Condition, EntityTag};
use crate::fields::{singleton, Field, Singleton};
use crate::http_date;
use crate::types::Request;

/// The validators of the selected representation.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    pub etag: &'a EntityTag,
    /// `Last-Modified`, whole seconds since the epoch.
    pub last_modified: i64,
}

/// The outcome of steps 1-4 of §13.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// All true (or absent): go on to `If-Range` and the method.
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates `If-Match`, `If-Unmodified-Since`, `If-None-Match` and
/// `If-Modified-Since`, in that order, for a representation that exists.
///
/// * `If-Match`: `*` or a *strong* match, else 412. Malformed elements are
///   skipped, so a field with no valid tag matches nothing (412).
/// * `If-Unmodified-Since`, only without `If-Match`: 412 if modified after
///   the date. Ignored if not exactly one valid HTTP-date.
/// * `If-None-Match`: `*` or a *weak* match means 304 for GET and HEAD (412
///   for other methods).
/// * `If-Modified-Since`, only without `If-None-Match` and for GET and HEAD:
///   304 if not modified after the date. Ignored if not exactly one valid
///   HTTP-date. (A date in the future should be ignored too, but the policy
///   has no clock; a client sending one gets a 304 it asked for.)
///
/// Dates compare at one-second resolution, the resolution of HTTP-date.
pub fn evaluate(req: &Request, v: Validators<'_>) -> Precondition {
    let safe = matches!(req.method.as_str(), "GET" | "HEAD");

    // Step 1 / 2.
    if let Some(value) = req.header(Field::IfMatch) {
        if !Condition::value_matches(&value, v.etag, true) {
            return Precondition::Failed;
        }
    } else if let Some(date) = single_date(req, Field::IfUnmodifiedSince) {
        if v.last_modified > date {
            return Precondition::Failed;
        }
    }

    // Step 3 / 4.
    if let Some(value) = req.header(Field::IfNoneMatch) {
        if Condition::value_matches(&value, v.etag, false) {
            return if safe {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if safe {
        if let Some(date) = single_date(req, Field::IfModifiedSince) {
            if v.last_modified <= date {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Proceed
}

/// Step 5: whether a `Range` may be honoured given `If-Range`.
///
/// Absent: yes. Otherwise the field must be either a strong entity tag that
/// strongly matches the representation's (a weak one never does), or an
/// HTTP-date exactly equal to its `Last-Modified`; anything else, including
/// a field sent twice or an unparseable value, means "send everything" (200),
/// which is always safe for the client.
pub fn if_range_allows(req: &Request, v: Validators<'_>) -> bool {
    match singleton(req, Field::IfRange) {
        Singleton::Absent => true,
        Singleton::Many => false,
        Singleton::One(value) => {
            let value = value.trim_matches([' ', '\t']);
            if value.starts_with('"') || value.starts_with("W/") {
                EntityTag::parse(value).is_some_and(|t| t.strong_eq(v.etag))
            } else {
                http_date::parse(value) == Some(v.last_modified)
            }
        }
    }
}

/// The date in a singleton date field, if it is exactly one valid HTTP-date.
fn single_date(req: &Request, field: Field) -> Option<i64> {
    match singleton(req, field) {
        Singleton::One(value) => http_date::parse(value),
        Singleton::Absent | Singleton::Many => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Header, HttpVersion};
    use Precondition::{Failed, NotModified, Proceed};

    const LM: i64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
    const AT_LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const BEFORE_LM: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const AFTER_LM: &str = "Sun, 06 Nov 1994 08:49:38 GMT";

    fn request(method: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.into(),
            path: "/f".into(),
            raw_query: None,
            headers: headers.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
            tls: false,
            version: HttpVersion::Http11,
            hop: None,
        }
    }

    fn eval_with(method: &str, etag: &EntityTag, headers: &[(&str, &str)]) -> Precondition {
        evaluate(
            &request(method, headers),
            Validators {
                etag,
                last_modified: LM,
            },
        )
    }

    fn eval(headers: &[(&str, &str)]) -> Precondition {
        eval_with("GET", &EntityTag::strong("v1"), headers)
    }

    #[test]
    fn no_preconditions() {
        assert_eq!(eval(&[]), Proceed);
    }

    #[test]
    fn if_match() {
        let cases: &[(&str, Precondition)] = &[
            ("\"v1\"", Proceed),
            ("\"v0\", \"v1\"", Proceed),
            ("*", Proceed),
            ("\"v2\"", Failed),
            ("W/\"v1\"", Failed),
            ("v1", Failed),
            ("", Failed),
        ];
        for (value, want) in cases {
            assert_eq!(eval(&[("if-match", value)]), *want, "{value:?}");
        }
        // Never matches a weak current tag, not even with the same opaque tag.
        assert_eq!(
            eval_with("GET", &EntityTag::weak("v1"), &[("if-match", "\"v1\"")]),
            Failed
        );
        assert_eq!(
            eval_with("GET", &EntityTag::weak("v1"), &[("if-match", "*")]),
            Proceed
        );
    }

    #[test]
    fn if_match_lines_are_combined() {
        assert_eq!(
            eval(&[("if-match", "\"v0\""), ("if-match", "\"v1\"")]),
            Proceed
        );
    }

    #[test]
    fn if_unmodified_since() {
        assert_eq!(eval(&[("if-unmodified-since", AT_LM)]), Proceed);
        assert_eq!(eval(&[("if-unmodified-since", AFTER_LM)]), Proceed);
        assert_eq!(eval(&[("if-unmodified-since", BEFORE_LM)]), Failed);
        assert_eq!(eval(&[("if-unmodified-since", "garbage")]), Proceed);
        assert_eq!(
            eval(&[
                ("if-unmodified-since", BEFORE_LM),
                ("if-unmodified-since", BEFORE_LM)
            ]),
            Proceed
        );
        // Ignored when If-Match is present (and true).
        assert_eq!(
            eval(&[("if-match", "*"), ("if-unmodified-since", BEFORE_LM)]),
            Proceed
        );
    }

    #[test]
    fn if_none_match() {
        let cases: &[(&str, Precondition)] = &[
            ("\"v1\"", NotModified),
            ("W/\"v1\"", NotModified),
            ("\"v0\", W/\"v1\"", NotModified),
            ("*", NotModified),
            ("\"v2\"", Proceed),
            ("v1", Proceed),
            ("", Proceed),
        ];
        for (value, want) in cases {
            assert_eq!(eval(&[("if-none-match", value)]), *want, "{value:?}");
        }
        assert_eq!(
            eval_with(
                "GET",
                &EntityTag::weak("v1"),
                &[("if-none-match", "\"v1\"")]
            ),
            NotModified
        );
    }

    #[test]
    fn if_none_match_is_304_only_for_get_and_head() {
        let tag = EntityTag::strong("v1");
        assert_eq!(
            eval_with("HEAD", &tag, &[("if-none-match", "\"v1\"")]),
            NotModified
        );
        assert_eq!(
            eval_with("DELETE", &tag, &[("if-none-match", "\"v1\"")]),
            Failed
        );
    }

    #[test]
    fn if_modified_since() {
        assert_eq!(eval(&[("if-modified-since", AT_LM)]), NotModified);
        assert_eq!(eval(&[("if-modified-since", AFTER_LM)]), NotModified);
        assert_eq!(eval(&[("if-modified-since", BEFORE_LM)]), Proceed);
        assert_eq!(
            eval(&[("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT")]),
            NotModified
        );
        assert_eq!(
            eval(&[("if-modified-since", "Sun Nov  6 08:49:37 1994")]),
            NotModified
        );
        assert_eq!(eval(&[("if-modified-since", "not a date")]), Proceed);
        assert_eq!(
            eval(&[("if-modified-since", AT_LM), ("if-modified-since", AT_LM)]),
            Proceed
        );
        assert_eq!(
            eval(&[("if-modified-since", &format!("{AT_LM}, {AT_LM}"))]),
            Proceed
        );
        let tag = EntityTag::strong("v1");
        assert_eq!(
            eval_with("HEAD", &tag, &[("if-modified-since", AT_LM)]),
            NotModified
        );
        assert_eq!(
            eval_with("POST", &tag, &[("if-modified-since", AT_LM)]),
            Proceed
        );
    }

    #[test]
    fn if_none_match_overrides_if_modified_since() {
        // A non-matching tag wins over a date that says "not modified".
        assert_eq!(
            eval(&[("if-none-match", "\"v2\""), ("if-modified-since", AFTER_LM)]),
            Proceed
        );
        assert_eq!(
            eval(&[
                ("if-none-match", "\"v1\""),
                ("if-modified-since", BEFORE_LM)
            ]),
            NotModified
        );
    }

    #[test]
    fn evaluation_order() {
        // If-Match failure beats If-None-Match success.
        assert_eq!(
            eval(&[("if-match", "\"v2\""), ("if-none-match", "\"v1\"")]),
            Failed
        );
        // If-Unmodified-Since failure beats If-Modified-Since.
        assert_eq!(
            eval(&[
                ("if-unmodified-since", BEFORE_LM),
                ("if-modified-since", AT_LM)
            ]),
            Failed
        );
        // Both passing, then If-None-Match decides.
        assert_eq!(
            eval(&[("if-match", "\"v1\""), ("if-none-match", "\"v1\"")]),
            NotModified
        );
    }

    fn if_range(value: &[&str], etag: &EntityTag) -> bool {
        let headers: Vec<(&str, &str)> = value.iter().map(|v| ("if-range", *v)).collect();
        if_range_allows(
            &request("GET", &headers),
            Validators {
                etag,
                last_modified: LM,
            },
        )
    }

    #[test]
    fn if_range_table() {
        let strong = EntityTag::strong("v1");
        let cases: &[(&[&str], bool)] = &[
            (&[], true),
            (&["\"v1\""], true),
            (&[" \"v1\" "], true),
            (&["\"v2\""], false),
            (&["W/\"v1\""], false),
            (&[AT_LM], true),
            (&["Sunday, 06-Nov-94 08:49:37 GMT"], true),
            (&[BEFORE_LM], false),
            (&[AFTER_LM], false),
            (&["garbage"], false),
            (&[""], false),
            (&["\"v1\", \"v2\""], false),
            (&["\"v1\"", "\"v1\""], false),
        ];
        for (values, want) in cases {
            assert_eq!(if_range(values, &strong), *want, "{values:?}");
        }
        // A weak current tag never satisfies If-Range.
        assert!(!if_range(&["\"v1\""], &EntityTag::weak("v1")));
        assert!(!if_range(&["W/\"v1\""], &EntityTag::weak("v1")));
    }
}
