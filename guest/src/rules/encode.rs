//! Percent-encoding and -decoding for the URLs the rules read and build.
//!
//! Rules files are written URL-encoded (Netlify's documentation says special
//! characters must be), while the host hands the policy decoded paths; so
//! sources are decoded once when the rules are compiled, and every value that
//! goes back into a URL is encoded again with the set for where it lands.
//! What the sets guarantee, and the property tests check: a `Location` built
//! from any request is visible ASCII, and a captured value can neither end
//! the path (`?`, `#`), nor start a new query parameter (`&`, `=`), nor turn
//! a path into a network-path reference (`//host`).

use std::borrow::Cow;

use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC};

pub(crate) use crate::location::{PATH, QUERY};

/// One path segment's value (a `:name` placeholder): `PATH`, and `/` too, so
/// a value from the query cannot add segments or make `//`.
pub(crate) const SEGMENT: &AsciiSet = &PATH.add(b'/');

/// A value in a query or fragment: everything but RFC 3986 `unreserved`.
/// Stricter than needed, so that no value can split a parameter.
pub(crate) const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Literal text of a target as the operator wrote it, already URL-encoded:
/// `%` stays (it starts their escapes), and only what can never appear in a
/// URI reference is encoded (controls, space, `"<>\^`{|}`, non-ASCII).
pub(crate) const LITERAL: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Literal text of a fragment: as `LITERAL`, and a second `#` too.
pub(crate) const FRAGMENT_LITERAL: &AsciiSet = &LITERAL.add(b'#');

/// A file name in a listing's link: everything but `unreserved`, so that the
/// link is the name whatever it contains (`?`, `#`, `%`, `:`, quotes,
/// newlines) and needs no HTML escaping.
pub(crate) const NAME: &AsciiSet = COMPONENT;

/// Appends `s` to `out`, encoded with `set`.
pub(crate) fn push(out: &mut String, s: &str, set: &'static AsciiSet) {
    out.extend(utf8_percent_encode(s, set));
}

/// Appends `?` and the request's raw query, cleaned like the directory
/// redirect's (`QUERY`: what the client sent stays as it is, anything not
/// allowed in a query is encoded). An empty query adds nothing.
pub(crate) fn push_query(out: &mut String, raw_query: Option<&str>) {
    if let Some(q) = raw_query.filter(|q| !q.is_empty()) {
        out.push('?');
        push(out, q, QUERY);
    }
}

/// Whether every `%` in `s` starts a `%XX` escape.
pub(crate) fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() || !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Percent-decodes a path or a piece of one. `None` if the result is not
/// UTF-8 (the host never hands over such a path, so a rule for one could not
/// match).
pub(crate) fn decode(s: &str) -> Option<Cow<'_, str>> {
    percent_decode(s.as_bytes()).decode_utf8().ok()
}

/// Decodes a query key or value as forms encode them: `+` is a space, then
/// percent-decoding. `None` if the result is not UTF-8.
pub(crate) fn decode_query(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('+') {
        return decode(s);
    }
    let spaced = s.replace('+', " ");
    decode(&spaced).map(|d| Cow::Owned(d.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str, set: &'static AsciiSet) -> String {
        let mut out = String::new();
        push(&mut out, s, set);
        out
    }

    #[test]
    fn sets() {
        assert_eq!(enc("a b/c?d#e&f", SEGMENT), "a%20b%2Fc%3Fd%23e&f");
        assert_eq!(enc("a b/c?d#e&f", PATH), "a%20b/c%3Fd%23e&f");
        assert_eq!(
            enc("a b/c?d#e&f=g+h", COMPONENT),
            "a%20b%2Fc%3Fd%23e%26f%3Dg%2Bh"
        );
        assert_eq!(enc("/a%20b?c=d&e#f", LITERAL), "/a%20b?c=d&e#f");
        assert_eq!(enc("/é \"x\"", LITERAL), "/%C3%A9%20%22x%22");
        assert_eq!(enc("a#b", FRAGMENT_LITERAL), "a%23b");
        assert_eq!(enc("<script>\n", NAME), "%3Cscript%3E%0A");
    }

    #[test]
    fn queries_pass_through_cleaned() {
        let mut out = String::from("/x");
        push_query(&mut out, Some("a=1&b=%20 c#"));
        assert_eq!(out, "/x?a=1&b=%20%20c%23");
        let mut out = String::from("/x");
        push_query(&mut out, Some(""));
        push_query(&mut out, None);
        assert_eq!(out, "/x");
    }

    #[test]
    fn escapes() {
        for ok in ["", "a", "%20", "a%2Fb%c3%A9", "%25%25"] {
            assert!(valid_escapes(ok), "{ok}");
        }
        for bad in ["%", "%2", "a%2", "%zz", "%2g", "100%", "%%20"] {
            assert!(!valid_escapes(bad), "{bad}");
        }
    }

    #[test]
    fn decoding() {
        assert_eq!(decode("/a%20b%2Fc").as_deref(), Some("/a b/c"));
        assert_eq!(decode("/caf%C3%A9").as_deref(), Some("/café"));
        assert_eq!(decode("/%FF"), None);
        assert_eq!(decode("100%").as_deref(), Some("100%"));
        assert_eq!(decode_query("a+b%2B").as_deref(), Some("a b+"));
        assert_eq!(decode_query("a%20b").as_deref(), Some("a b"));
    }
}
