//! The `Location` of the directory redirect (`/dir` → `/dir/`).
//!
//! The host hands over the path percent-decoded, so it has to be encoded
//! again: a name with a space, `%`, `?`, `#` or non-ASCII bytes must reach the
//! client as the same path, and the result must be a valid field value.

use std::fmt::Write;

/// `path` + `/`, percent-encoded, followed by `?` and the raw query if the
/// request had one.
///
/// The path always leaves with exactly one leading `/`: a Location starting
/// with `//` would be a network-path reference, i.e. a redirect to another
/// host (the host never passes empty segments, so this is defence in depth).
pub fn directory(path: &str, raw_query: Option<&str>) -> String {
    let mut location = String::with_capacity(path.len() + 2);
    location.push('/');
    for &b in path.trim_start_matches('/').as_bytes() {
        push_encoded(&mut location, b, is_path_byte);
    }
    if !location.ends_with('/') {
        location.push('/');
    }
    if let Some(query) = raw_query {
        location.push('?');
        for &b in query.as_bytes() {
            // `%` stays: the query is still encoded as the client sent it.
            push_encoded(&mut location, b, |b| b == b'%' || is_query_byte(b));
        }
    }
    location
}

fn push_encoded(out: &mut String, b: u8, keep: impl Fn(u8) -> bool) {
    if keep(b) {
        out.push(char::from(b));
    } else {
        let _ = write!(out, "%{b:02X}");
    }
}

/// RFC 3986 `pchar` (minus `pct-encoded`) and the `/` separator.
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)
}

/// RFC 3986 `query`: `pchar`, `/` and `?`.
fn is_query_byte(b: u8) -> bool {
    is_path_byte(b) || b == b'?'
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
