//! A whole site's rules in the policy: SPA fallback, custom error pages, clean
//! URLs, directory listings, and Netlify-style `_redirects` and `_headers`.
//!
//! This is the pure logic the default policy uses for `sluice:policy@0.3.0`
//! (internal rewrites, directory listings). It works on its own plain types,
//! not on the WIT ones; its setting parsers take the same `SettingValue`
//! shapes as `config.rs`, and `SiteRules::set` is how `Config::from_settings`
//! compiles them, once, into `Config::rules`. `policy::decide` applies them
//! (the order is in its header and in `guest/README.md`), with `hop`,
//! `listing` and `header_rules` beside it.
//!
//! # Settings
//!
//! | Setting | Value | Default | Module |
//! |---|---|---|---|
//! | `fallback` | path of a file, e.g. `"/index.html"` | none (`""`) | `fallback` |
//! | `error-pages` | `STATUS=/path` items, status 400-599 | none | `error_pages` |
//! | `clean-urls` | boolean | `false` | `clean_urls` |
//! | `autoindex` | `"off"`, `"html"` or `"json"` | `"off"` | `autoindex`, `html`, `json` |
//! | `redirects` | `_redirects` lines: an array (a line an item) or a file's text | none | `redirects` |
//! | `headers` | `_headers` lines: an array (a line an item) or a file's text | none | `headers` |
//!
//! Paths in `fallback` and `error-pages` are written as on disk; patterns and
//! targets in `redirects` and `headers` are URL-encoded, as Netlify's files
//! are.
//!
//! * **`fallback`**: a missing path answered with the file, status 200, when
//!   the request is a navigation (`Accept` lists `text/html`; `*/*` alone
//!   does not count) and its last segment has no extension.
//! * **`error-pages`**: the file served as the body of that status.
//! * **`clean-urls`**: a missing `/about` serves `/about.html`; an existing
//!   `/about.html` answers 301 to `/about` (query kept), and `index.html`
//!   (an `index-names` entry) 301 to its directory.
//! * **`autoindex`**: directories without an index are listed, hidden
//!   entries left out by the `dotfiles` rule, within the host's inline-body
//!   limit (marked truncated when cut).
//!
//! # The `_redirects` subset
//!
//! `FROM [KEY=VALUE…] TO [STATUS[!]]`, one rule a line, `#` comments (whole
//! lines, or from a token starting with `#`), blank lines ignored. First
//! matching rule wins, in file order.
//!
//! * `FROM` is a path, decoded when compiled (the host hands the policy a
//!   decoded path). Segments are literals (ASCII case-insensitive, like
//!   Netlify), `:name` placeholders (one whole, non-empty segment) or, as the
//!   last segment only, `*` (the rest of the path, possibly empty). A
//!   trailing `/` is optional on both sides.
//! * `KEY=VALUE` query conditions: the parameter must be present with exactly
//!   `VALUE`, or with any non-empty value, captured, for `KEY=:name`.
//! * `TO`: a path, or for 3xx an `http(s)://` URL. `:name` and `:splat` are
//!   substituted (each value percent-encoded for where it lands in a
//!   `Location`).
//! * `STATUS`: 301 (default), 302, 303, 307, 308 redirect; 200 rewrites
//!   (serves `TO`), 404 rewrites with status 404 (custom not-found page).
//!   Without `!` a rule applies only when nothing exists at the path
//!   (Netlify's shadowing); `!` forces it.
//! * The request's query passes through to a redirect target that has none
//!   of its own, unless the rule matched on query conditions (which consume
//!   it, as in Netlify's example).
//!
//! Refused, each with a message naming the line and the feature: domain-level
//! sources (`https://host/…`), proxying (a 200/404 to a URL), `*` anywhere
//! but the end of `FROM`, statuses other than the seven, placeholders in the
//! host of a target, targets starting with `//`, and conditions (`Country=`,
//! `Language=`, `Role=`, `Cookie=`, `Sign=`…), which need what the policy
//! does not have. Netlify's `FROM/* 200` shorthand (no target) is a missing
//! target: it only serves proxying.
//!
//! # The `_headers` subset
//!
//! A path line (starting with `/`), then `Name: value` lines (indented by
//! convention). Path segments as above, plus one `*` anywhere in the last
//! segment (`/*.js`, `/assets/*`), matching any remainder including `/`.
//! Every matching rule applies, in file order; a field set by several rules
//! (or twice in one) gets its values joined with `, `, as Netlify does
//! (`set-cookie` excepted: one field each; a value already in the list is
//! not repeated). Header names must be tokens, values visible ASCII; fields
//! the host owns (framing, hop-by-hop) are refused.
//!
//! # Limits
//!
//! Every bound is a `pub const` here: the text of a rules setting
//! (`MAX_RULES_TEXT`, 1 MiB), rules in one table (`MAX_RULES`, 10,000),
//! bytes in a line (`MAX_LINE`, 8 KiB), segments in a pattern
//! (`MAX_SEGMENTS`, 32), captures in a rule (`MAX_PLACEHOLDERS`, 16), query
//! conditions in a rule (`MAX_QUERY_CONDITIONS`, 8), header lines in a
//! `_headers` rule (`MAX_FIELDS_PER_RULE`, 64). Going over one is an error
//! naming the limit and its value. Listings are rendered within the byte
//! limit they are given, never cut inside a row.
//!
//! # Cost
//!
//! Rule tables are compiled once, at `configure` (1,000 redirects and 200
//! header rules: ~2 ms natively), into a trie of their patterns' segments
//! (`pattern::Index`): literal edges, case-folded, and a placeholder edge.
//! A lookup walks the trie along the request's segments and tries, in file
//! order, only the rules whose segments lead where the path does, without
//! allocating until one matches. `bench.rs` measures it against
//! `policy::decide` (`cargo test -p sluice-guest --release -- --ignored
//! --nocapture rules_bench`): with the issue's 1,000 + 200 rules, a redirect
//! miss costs ~0.1 µs, a hit ~0.3 µs, the header rules ~0.1-0.3 µs, next to
//! ~1.4 µs for an uncached decide.
//!
//! # Rewrites and hops
//!
//! A rewrite (`Action::Rewrite`, `fallback`, `error-pages`, `clean-urls`)
//! yields a decoded, normalized path for the host to resolve before the
//! policy decides again (WIT `rewrite`; `crate::hop`). Rules apply on the
//! first call only (as Netlify's are one pass): the rewritten path still
//! goes through the policy's other checks (dotfiles first of all) but not
//! through `redirects` again, so rules cannot loop.

pub mod autoindex;
#[cfg(test)]
mod bench;
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

/// The settings of this module, parsed, with their defaults (everything off,
/// no rules).
#[derive(Debug, Clone, Default)]
pub struct SiteRules {
    /// `fallback`: the file answered (200) for a missing navigation path.
    pub fallback: Option<String>,
    /// `error-pages`: files served with an error status.
    pub error_pages: ErrorPages,
    /// `clean-urls`: `/about` serves `about.html`, `/about.html` redirects.
    pub clean_urls: bool,
    /// `autoindex`: listings of directories without an index.
    pub autoindex: Autoindex,
    /// `redirects`: `_redirects` rules.
    pub redirects: Redirects,
    /// `headers`: `_headers` rules.
    pub headers: HeaderRules,
}

impl SiteRules {
    /// Parses the setting `name` into `self`: `None` if the name is not one
    /// of this module's (so `Config::from_settings` can try its own), else
    /// whether the value was valid.
    pub fn set(&mut self, name: &str, value: &SettingValue) -> Option<Result<(), String>> {
        let result = match name {
            "fallback" => fallback::parse(name, value).map(|v| self.fallback = v),
            "error-pages" => ErrorPages::parse(name, value).map(|v| self.error_pages = v),
            "clean-urls" => clean_urls::parse(name, value).map(|v| self.clean_urls = v),
            "autoindex" => Autoindex::parse(name, value).map(|v| self.autoindex = v),
            "redirects" => Redirects::parse(name, value).map(|v| self.redirects = v),
            "headers" => HeaderRules::parse(name, value).map(|v| self.headers = v),
            _ => return None,
        };
        Some(result)
    }
}

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
    use SettingValue::{Boolean, Integer, Items, Text};

    fn items(lines: &[&str]) -> SettingValue {
        Items(lines.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn site_rules_take_their_settings_and_leave_others() {
        let mut rules = SiteRules::default();
        assert!(rules.set("chunk-size", &Integer(1)).is_none());
        for (name, value) in [
            ("fallback", Text("/index.html".into())),
            ("error-pages", items(&["404=/404.html"])),
            ("clean-urls", Boolean(true)),
            ("autoindex", Text("json".into())),
            ("redirects", items(&["/old/*  /new/:splat  301"])),
            (
                "headers",
                items(&["/api/*", "  Access-Control-Allow-Origin: *"]),
            ),
        ] {
            rules.set(name, &value).unwrap().unwrap();
        }
        assert_eq!(rules.fallback.as_deref(), Some("/index.html"));
        assert_eq!(rules.error_pages.get(404), Some("/404.html"));
        assert!(rules.clean_urls);
        assert_eq!(rules.autoindex, Autoindex::Json);
        assert_eq!(rules.redirects.len(), 1);
        assert_eq!(rules.headers.len(), 1);
        let err = rules.set("autoindex", &Text("xml".into())).unwrap();
        assert!(err.unwrap_err().starts_with("autoindex: "));
    }

    #[test]
    fn defaults_are_off() {
        let rules = SiteRules::default();
        assert_eq!(rules.fallback, None);
        assert_eq!(rules.error_pages.get(404), None);
        assert!(!rules.clean_urls);
        assert_eq!(rules.autoindex, Autoindex::Off);
        assert!(rules.redirects.is_empty() && rules.headers.is_empty());
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
