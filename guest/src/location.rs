//! The `Location` of the directory redirect (`/dir` → `/dir/`).
//!
//! The host hands over the path percent-decoded, so it has to be encoded
//! again: a name with a space, `%`, `?`, `#` or non-ASCII bytes must reach the
//! client as the same path, and the result must be a valid field value.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Bytes encoded in the path: all but RFC 3986 `pchar` (minus `pct-encoded`)
/// and the `/` separator. (`percent-encoding` always encodes non-ASCII bytes
/// and controls.)
pub(crate) const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@')
    .remove(b'/');

/// Bytes encoded in the query: all but RFC 3986 `query` (`pchar`, `/`, `?`)
/// and `%`, which stays because the query is still encoded as the client
/// sent it.
pub(crate) const QUERY: &AsciiSet = &PATH.remove(b'?').remove(b'%');

/// `path` + `/`, percent-encoded, followed by `?` and the raw query if the
/// request had one.
///
/// The path always leaves with exactly one leading `/`: a Location starting
/// with `//` would be a network-path reference, i.e. a redirect to another
/// host (the host never passes empty segments, so this is defence in depth).
pub fn directory(path: &str, raw_query: Option<&str>) -> String {
    let mut location = String::with_capacity(path.len() + 2);
    location.push('/');
    location.extend(utf8_percent_encode(path.trim_start_matches('/'), PATH));
    if !location.ends_with('/') {
        location.push('/');
    }
    if let Some(query) = raw_query {
        location.push('?');
        location.extend(utf8_percent_encode(query, QUERY));
    }
    location
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn appends_the_slash_and_keeps_the_query() {
        assert_eq!(directory("/docs", None), "/docs/");
        assert_eq!(directory("/a/b", Some("x=1&y=2")), "/a/b/?x=1&y=2");
        assert_eq!(directory("/a", Some("")), "/a/?");
        assert_eq!(directory("/a", Some("q=%20x")), "/a/?q=%20x");
    }

    #[test]
    fn encodes_the_decoded_path() {
        assert_eq!(directory("/my docs", None), "/my%20docs/");
        assert_eq!(directory("/100%", None), "/100%25/");
        assert_eq!(directory("/what?#", None), "/what%3F%23/");
        assert_eq!(directory("/café", None), "/caf%C3%A9/");
        assert_eq!(
            directory("/a\"<>\\^`{|}", None),
            "/a%22%3C%3E%5C%5E%60%7B%7C%7D/"
        );
        assert_eq!(directory("/a\r\nb", None), "/a%0D%0Ab/");
        assert_eq!(
            directory("/keep-._~!$&'()*+,;=:@", None),
            "/keep-._~!$&'()*+,;=:@/"
        );
    }

    #[test]
    fn never_produces_a_network_path() {
        assert_eq!(directory("//evil.example", None), "/evil.example/");
        assert_eq!(directory("", None), "/");
    }

    /// Every ASCII byte: RFC 3986 `pchar` and `/` are kept in the path,
    /// `?` and `%` too in the query, everything else is encoded.
    #[test]
    fn kept_bytes_are_exactly_the_rfc_3986_sets() {
        let pchar = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        for b in 1..=0x7fu8 {
            let c = char::from(b);
            let encoded = format!("%{b:02X}");
            let path = directory(&format!("/a{c}"), None);
            let want = if pchar(b) {
                c.to_string()
            } else {
                encoded.clone()
            };
            let want = if b == b'/' {
                "/a/".to_owned()
            } else {
                format!("/a{want}/")
            };
            assert_eq!(path, want, "path byte {b:#x}");
            let query = directory("/a", Some(&c.to_string()));
            let kept = pchar(b) || b == b'?' || b == b'%';
            let want = if kept { c.to_string() } else { encoded };
            assert_eq!(query, format!("/a/?{want}"), "query byte {b:#x}");
        }
    }

    #[test]
    fn cleans_an_invalid_query() {
        assert_eq!(
            directory("/a", Some("x=a b#c\u{e9}")),
            "/a/?x=a%20b%23c%C3%A9"
        );
    }

    proptest! {
        #[test]
        fn locations_are_safe_field_values(path in any::<String>(), query in prop::option::of(any::<String>())) {
            let loc = directory(&format!("/{path}"), query.as_deref());
            prop_assert!(loc.bytes().all(|b| b.is_ascii_graphic()));
            prop_assert!(loc.starts_with('/') && !loc.starts_with("//"));
            let path_part = loc.split('?').next().unwrap_or("");
            prop_assert!(path_part.ends_with('/'));
            prop_assert!(!loc.contains('#'));
        }
    }
}
