//! Request-target path → normalized, decoded path.
//!
//! The kernel enforces that resolution stays beneath the root (`open.rs`); this
//! module makes the path *meaningful* first, and refuses what no file name on
//! a sluice root can contain. Decoding happens before dot-segment removal so
//! `%2e%2e`, `%2f` and friends get exactly the treatment their decoded forms do.

use percent_encoding::percent_decode_str;

/// Why a request path was refused (the request gets 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The target is not an origin-form path (`/…`).
    #[error("request path does not start with '/'")]
    NotAbsolute,
    /// The decoded bytes are not UTF-8 (includes overlong encodings).
    #[error("request path is not valid UTF-8 after percent-decoding")]
    NotUtf8,
    /// A NUL byte, raw or encoded.
    #[error("request path contains a NUL byte")]
    Nul,
    /// A backslash, raw or encoded: a Windows separator on a Unix root.
    #[error("request path contains a backslash")]
    Backslash,
    /// A control character (C0 or DEL).
    #[error("request path contains a control character")]
    Control,
    /// `..` would climb above the root.
    #[error("request path climbs above the root")]
    AboveRoot,
}

/// A decoded, normalized request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    /// `/` + segments joined by `/` (+ `/` if the request ended with one).
    pub path: String,
    /// Segments, never empty, `.` or `..`.
    segments_end: usize,
}

impl NormalPath {
    /// The path relative to the root, for `openat2`: `"."` for the root.
    pub fn relative(&self) -> &str {
        let rel = &self.path[1..self.segments_end];
        if rel.is_empty() {
            "."
        } else {
            rel
        }
    }

    /// Whether the request path ended with `/`.
    pub fn trailing_slash(&self) -> bool {
        self.segments_end < self.path.len()
    }
}

/// Normalizes the path part of a request target.
pub fn normalize(raw: &str) -> Result<NormalPath, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    // Most paths are normal already and encode nothing: then the result is
    // the path itself, made with one allocation instead of three (the
    // decoded bytes, the segment list, the joined path). A unit test checks
    // that both ways agree on every short path of the characters that matter.
    if !raw.contains('%') {
        if let Some(normal) = already_normal(raw) {
            return Ok(normal);
        }
    }
    slow(raw)
}

/// [`normalize`] by decoding, splitting and joining.
fn slow(raw: &str) -> Result<NormalPath, PathError> {
    let decoded = percent_decode_str(raw).collect::<Vec<u8>>();
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        if let Some(c) = segment
            .chars()
            .find(|c| *c == '\0' || *c == '\\' || c.is_control())
        {
            return Err(match c {
                '\0' => PathError::Nul,
                '\\' => PathError::Backslash,
                _ => PathError::Control,
            });
        }
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop().ok_or(PathError::AboveRoot)?;
            }
            s => segments.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &segments {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() {
        path.push('/');
        return Ok(NormalPath {
            path,
            segments_end: 1,
        });
    }
    let segments_end = path.len();
    // A trailing slash (or a trailing `.`/`..` segment, which names a directory)
    // is kept so a policy can tell `/dir` from `/dir/`.
    if decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..") {
        path.push('/');
    }
    Ok(NormalPath { path, segments_end })
}

/// `path` if it is already what [`normalize`] makes, read as it is (not
/// percent-decoded): absolute, no empty, `.` or `..` segments, no NUL,
/// backslash or control character, a trailing `/` allowed. This is how a
/// policy's rewrite path is checked: the policy names a file, not a URL.
pub fn already_normal(path: &str) -> Option<NormalPath> {
    let rest = path.strip_prefix('/')?;
    let body = rest.strip_suffix('/').unwrap_or(rest);
    if body.is_empty() {
        return (path == "/").then(|| NormalPath {
            path: path.to_owned(),
            segments_end: 1,
        });
    }
    let bad = |c: char| c == '\\' || c == '\0' || c.is_control();
    let normal = body
        .split('/')
        .all(|s| !matches!(s, "" | "." | "..") && !s.contains(bad));
    normal.then(|| NormalPath {
        path: path.to_owned(),
        segments_end: 1 + body.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths() {
        let n = normalize("/a/b.txt").unwrap();
        assert_eq!(
            (n.path.as_str(), n.relative(), n.trailing_slash()),
            ("/a/b.txt", "a/b.txt", false)
        );
        let n = normalize("/").unwrap();
        assert_eq!(
            (n.path.as_str(), n.relative(), n.trailing_slash()),
            ("/", ".", false)
        );
        let n = normalize("//a//./b/../c/").unwrap();
        assert_eq!(
            (n.path.as_str(), n.relative(), n.trailing_slash()),
            ("/a/c/", "a/c", true)
        );
        let n = normalize("/a%20b/%E2%82%AC").unwrap();
        assert_eq!(n.path, "/a b/€");
    }

    #[test]
    fn hostile_paths() {
        for (raw, err) in [
            ("/../etc/passwd", PathError::AboveRoot),
            ("/%2e%2e/etc/passwd", PathError::AboveRoot),
            ("/%2E%2E%2fetc", PathError::AboveRoot),
            ("/a/..%2f..%2fetc", PathError::AboveRoot),
            ("/a%00.txt", PathError::Nul),
            ("/..%5c..%5cwindows", PathError::Backslash),
            ("/a\\b", PathError::Backslash),
            ("/%c0%ae%c0%ae/etc", PathError::NotUtf8),
            ("/%ff", PathError::NotUtf8),
            ("/a%0d%0aset-cookie:x", PathError::Control),
            ("etc/passwd", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
        ] {
            assert_eq!(normalize(raw), Err(err), "{raw}");
        }
    }

    #[test]
    fn rewrite_paths_must_be_normal_already() {
        for ok in ["/", "/a", "/a/", "/a/b.html", "/100%25/x", "/a b/€"] {
            let n = already_normal(ok).unwrap_or_else(|| panic!("{ok}"));
            assert_eq!(n.path, ok);
            assert_eq!(
                n.trailing_slash(),
                ok.len() > 1 && ok.ends_with('/'),
                "{ok}"
            );
        }
        assert_eq!(already_normal("/a/b/").unwrap().relative(), "a/b");
        assert_eq!(already_normal("/").unwrap().relative(), ".");
        for bad in [
            "",
            "a",
            "//",
            "/a//b",
            "/./a",
            "/a/.",
            "/../etc/passwd",
            "/a/..",
            "/a\\b",
            "/a\0b",
            "/a\nb",
            "/a//",
        ] {
            assert!(already_normal(bad).is_none(), "{bad:?}");
        }
    }

    /// The shortcut for paths already normal gives what decoding,
    /// splitting and joining give, on every path of up to 6 characters
    /// drawn from those that normalizing treats specially (`%2e` is `.`).
    #[test]
    fn the_shortcut_agrees_with_the_full_normalization() {
        let alphabet = [
            '/', '.', 'a', '\\', '\0', '\n', '\u{7f}', 'é', ' ', '%', '2', 'e',
        ];
        let mut paths = vec![String::from("/")];
        let mut checked = 0;
        for _ in 0..5 {
            let mut next = Vec::new();
            for p in &paths {
                for c in alphabet {
                    let mut q = p.clone();
                    q.push(c);
                    assert_eq!(normalize(&q), slow(&q), "{q:?}");
                    checked += 1;
                    next.push(q);
                }
            }
            paths = next;
        }
        assert_eq!(
            checked,
            (1..=5).map(|n| alphabet.len().pow(n)).sum::<usize>()
        );
    }

    #[test]
    fn dot_dot_inside_the_root_is_resolved() {
        assert_eq!(normalize("/a/../b").unwrap().path, "/b");
        assert_eq!(normalize("/a/%2e%2e/").unwrap().path, "/");
    }
}
