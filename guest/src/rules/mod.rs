//! A whole site's rules in the policy, for the coming `sluice:policy@0.3.0`:
//! the pure logic, on its own plain types, not wired into `policy::decide` or
//! `Config` yet. Setting parsers take the same `SettingValue` shapes as
//! `config.rs`.
//!
//! So far: `redirects` (Netlify `_redirects` syntax), `headers` (`_headers`),
//! `fallback` (single-page apps), `error-pages`, `clean-urls` and `autoindex`
//! (HTML and JSON listings). Rule tables are compiled once into
//! `pattern::Index`, a trie of their patterns' segments. Every bound is a
//! `pub const` below; going over one is an error naming it and its value.

pub mod autoindex;
pub mod clean_urls;
pub(crate) mod encode;
pub mod error_pages;
pub mod fallback;
pub mod headers;
pub mod html;
pub mod json;
pub(crate) mod pattern;
pub mod redirects;

use std::borrow::Cow;

use crate::config;
use crate::types::SettingValue;

pub use autoindex::{Autoindex, Kind, ListingEntry};
pub use error_pages::ErrorPages;
pub use headers::{HeaderField, HeaderRules};
pub use redirects::{Action, RedirectMatch, Redirects};

/// Most bytes of rules text in one setting (`redirects`, `headers`): a whole
/// `_redirects` file of 10,000 typical lines is ~500 KiB.
pub const MAX_RULES_TEXT: usize = 1 << 20;
/// Most rules in one table: redirect lines, or `_headers` path blocks.
pub const MAX_RULES: usize = 10_000;
/// Most bytes in one line: room for a long `Content-Security-Policy` or a
/// long target URL, well below the host's 16 KiB of response headers.
pub const MAX_LINE: usize = 8 * 1024;
/// Most segments in a path pattern; bounds the work one rule costs per request.
pub const MAX_SEGMENTS: usize = 32;
/// Most captures (`:name` placeholders, path and query) in one rule.
pub const MAX_PLACEHOLDERS: usize = 16;
/// Most `KEY=VALUE` query conditions in one redirect rule.
pub const MAX_QUERY_CONDITIONS: usize = 8;
/// Most header lines in one `_headers` rule: the host's default
/// `max-headers` for a whole response.
pub const MAX_FIELDS_PER_RULE: usize = 64;

/// The text of a rules setting: a string is a file's text; an array has one
/// line an item (an item with newlines in it is several lines, numbered on).
/// Refused over `MAX_RULES_TEXT` bytes, before anything is copied.
fn rules_text<'v>(name: &str, value: &'v SettingValue) -> Result<Cow<'v, str>, String> {
    let (text, len) = match value {
        SettingValue::Text(s) => (Cow::Borrowed(s.as_str()), s.len()),
        SettingValue::Items(items) => {
            let len = items.iter().map(|i| i.len() + 1).sum::<usize>();
            if len > MAX_RULES_TEXT + 1 {
                return Err(too_long(name, len.saturating_sub(1)));
            }
            (Cow::Owned(items.join("\n")), len.saturating_sub(1))
        }
        _ => {
            return Err(config::expected(
                name,
                "an array of lines or a string",
                value,
            ))
        }
    };
    if len > MAX_RULES_TEXT {
        return Err(too_long(name, len));
    }
    Ok(text)
}

fn too_long(name: &str, len: usize) -> String {
    format!("{name}: {len} bytes of rules, more than the limit of {MAX_RULES_TEXT} (1 MiB)")
}

/// The lines of a rules text with their numbers (from 1): split at `\n`, a
/// `\r` before it dropped (CRLF files), a leading byte-order mark ignored.
/// A line over `MAX_LINE` bytes, or with a control character other than tab,
/// is an error naming the line.
fn lines(text: &str) -> impl Iterator<Item = Result<(usize, &str), String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.split('\n').enumerate().map(|(i, line)| {
        let n = i + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.len() > MAX_LINE {
            return Err(format!(
                "line {n}: {} bytes long, more than the limit of {MAX_LINE}",
                line.len()
            ));
        }
        if let Some(c) = line.chars().find(|&c| c.is_control() && c != '\t') {
            return Err(format!(
                "line {n}: control character U+{:04X} (only tab is allowed)",
                u32::from(c)
            ));
        }
        Ok((n, line))
    })
}

/// Checks that `path` names a file the way the host would hand a request path
/// over: absolute, normalized (no empty, `.` or `..` segments), no NUL,
/// backslash or control characters, and not a directory (no trailing `/`).
/// Used for the paths the operator gives in `fallback` and `error-pages`,
/// which are written as on disk (not URL-encoded).
fn file_path(path: &str) -> Result<(), String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!(
            "{path:?} is not an absolute path (starting with /)"
        ));
    };
    if let Some(c) = path.chars().find(|&c| c.is_control() || c == '\\') {
        return Err(format!(
            "{path:?} contains {}",
            if c == '\\' {
                "a backslash".to_owned()
            } else {
                format!("control character U+{:04X}", u32::from(c))
            }
        ));
    }
    if rest.is_empty() || rest.ends_with('/') {
        return Err(format!("{path:?} names a directory, not a file"));
    }
    if rest
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!(
            "{path:?} is not normalized (empty, . or .. segment)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use SettingValue::{Integer, Items, Text};

    fn items(lines: &[&str]) -> SettingValue {
        Items(lines.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn rules_text_takes_a_string_or_lines() {
        assert_eq!(rules_text("r", &Text("a\nb".into())).unwrap(), "a\nb");
        assert_eq!(rules_text("r", &items(&["a", "b"])).unwrap(), "a\nb");
        assert_eq!(rules_text("r", &items(&[])).unwrap(), "");
        let err = rules_text("r", &Integer(3)).unwrap_err();
        assert_eq!(err, "r: expected an array of lines or a string, got 3");
    }

    #[test]
    fn rules_text_is_bounded_before_copying() {
        let big = "x".repeat(MAX_RULES_TEXT + 1);
        assert_eq!(
            rules_text("redirects", &Text(big)).unwrap_err(),
            "redirects: 1048577 bytes of rules, more than the limit of 1048576 (1 MiB)"
        );
        assert!(rules_text("r", &Text("x".repeat(MAX_RULES_TEXT))).is_ok());
        // As lines: the newlines joining them count.
        let half = "x".repeat(MAX_RULES_TEXT / 2);
        let err = rules_text("r", &Items(vec![half.clone(), half.clone()])).unwrap_err();
        assert!(err.contains("1048577 bytes"), "{err}");
        let fits = Items(vec![half.clone(), half[1..].to_owned()]);
        assert_eq!(rules_text("r", &fits).unwrap().len(), MAX_RULES_TEXT);
    }

    #[test]
    fn lines_are_numbered_and_checked() {
        let got: Vec<_> = lines("\u{feff}a\r\n\nb\tc\n").collect();
        assert_eq!(
            got,
            vec![Ok((1, "a")), Ok((2, "")), Ok((3, "b\tc")), Ok((4, ""))]
        );
        let long = format!("ok\n{}", "x".repeat(MAX_LINE + 1));
        assert_eq!(
            lines(&long).nth(1).unwrap().unwrap_err(),
            "line 2: 8193 bytes long, more than the limit of 8192"
        );
        assert!(lines(&"x".repeat(MAX_LINE)).next().unwrap().is_ok());
        assert_eq!(
            lines("a\rb").next().unwrap().unwrap_err(),
            "line 1: control character U+000D (only tab is allowed)"
        );
        assert_eq!(
            lines("a\u{0}b").next().unwrap().unwrap_err(),
            "line 1: control character U+0000 (only tab is allowed)"
        );
        assert!(lines("\u{85}").next().unwrap().is_err(), "C1 controls too");
    }

    #[test]
    fn file_paths_must_be_normalized() {
        for ok in [
            "/index.html",
            "/a/b c/100%.html",
            "/.well-known/x",
            "/é.html",
        ] {
            assert_eq!(file_path(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("index.html", "not an absolute path"),
            ("", "not an absolute path"),
            ("/", "names a directory"),
            ("/docs/", "names a directory"),
            ("//x", "not normalized"),
            ("/a//b", "not normalized"),
            ("/a/../b", "not normalized"),
            ("/./b", "not normalized"),
            ("/a/..", "not normalized"),
            ("/a\\b", "a backslash"),
            ("/a\0b", "control character U+0000"),
            ("/a\nb", "control character U+000A"),
        ] {
            let err = file_path(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
