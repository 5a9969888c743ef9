//! `Cache-Control` for file responses.
//!
//! Three classes: fingerprinted names (a content hash in the name, so the
//! bytes behind that name never change) are cached for a year and marked
//! `immutable` so browsers skip revalidation even on reload; HTML, which names
//! those assets and so must be fresh, is revalidated (`no-cache`); everything
//! else gets a moderate default. All three values are operator settings.

use crate::config::Config;
use crate::content_type::is_html;

/// The `Cache-Control` value for a file named `name` of type `media`; empty
/// means "send none".
pub fn for_file<'c>(config: &'c Config, name: &str, media: &str) -> &'c str {
    if is_fingerprinted(name) {
        &config.cache_immutable
    } else if is_html(media) {
        &config.cache_html
    } else {
        &config.cache_default
    }
}

/// Whether the last segment of `name` carries a content hash: a `.`- or
/// `-`-separated part of the name before its extension that looks like one
/// (see `is_hash`). Examples: `app.3f2a9c1b.js` (webpack, Parcel),
/// `main-5d41402abc4b2a76.css` (Next.js, Vite 4), `chunk-KNGDWQ2U.js`
/// (esbuild), `application-<sha256>.css` (Sprockets).
///
/// A false positive makes a browser keep a stale file for a year with no way
/// to refresh it, while a false negative only costs revalidations, so the
/// test errs towards "no".
pub fn is_fingerprinted(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    match base.rsplit_once('.') {
        Some((stem, ext)) if !ext.is_empty() => stem.split(['.', '-']).any(is_hash),
        _ => false,
    }
}

/// A hash-like part: at least 8 characters, containing both a digit and a
/// letter, and either all lower-case hexadecimal or all upper-case base32
/// (RFC 4648: `A-Z2-7`, esbuild's alphabet). Requiring a digit and a letter
/// rules out dates and version numbers (`20240101`) and plain words
/// (`CHANGELOG`, `deadbeef`); lower-case base32 and mixed-case base64 are not
/// recognized because too many ordinary names fit them (`bootstrap5`).
fn is_hash(part: &str) -> bool {
    let bytes = part.as_bytes();
    if bytes.len() < 8 || bytes.len() > 128 {
        return false;
    }
    let has_digit = bytes.iter().any(u8::is_ascii_digit);
    let has_letter = bytes.iter().any(u8::is_ascii_alphabetic);
    let lower_hex = bytes
        .iter()
        .all(|&b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let base32 = bytes
        .iter()
        .all(|&b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b));
    has_digit && has_letter && (lower_hex || base32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprinted_names() {
        for name in [
            "app.3f2a9c1b.js",
            "/static/js/main.3f2a9c1b.chunk.js",
            "main-5d41402abc4b2a76.css",
            "index-5d41402a.js",
            "chunk-KNGDWQ2U.js",
            "5d41402abc4b2a76.js",
            "application-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.css",
            "main.min.e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.css",
            "app.3f2a9c1b.js.map",
            "report-550e8400-e29b-41d4-a716-446655440000.pdf",
        ] {
            assert!(is_fingerprinted(name), "{name}");
        }
    }

    #[test]
    fn ordinary_names() {
        for name in [
            "app.js",
            "index.html",
            "jquery-3.7.1.min.js",
            "bootstrap5.css",
            "report-20240101.pdf",
            "CHANGELOG.md",
            "deadbeef.js",
            "abc1234.js",
            "ABCD1234.pdf",
            "INV20240001.pdf",
            "index-BRyPlnlf.js",
            "3f2a9c1b",
            "app.js.3f2a9c1b",
            "/3f2a9c1b5d/app.js",
            "",
            ".3f2a9c1b",
            "3F2A9C1B.js",
        ] {
            assert!(!is_fingerprinted(name), "{name}");
        }
    }

    #[test]
    fn classes() {
        let config = Config::default();
        assert_eq!(
            for_file(&config, "app.3f2a9c1b.js", "text/javascript"),
            "max-age=31536000, immutable"
        );
        assert_eq!(for_file(&config, "index.html", "text/html"), "no-cache");
        assert_eq!(
            for_file(&config, "page.xhtml", "application/xhtml+xml"),
            "no-cache"
        );
        assert_eq!(for_file(&config, "logo.png", "image/png"), "max-age=3600");
        // A fingerprinted HTML file is as immutable as any other.
        assert_eq!(
            for_file(&config, "page.3f2a9c1b.html", "text/html"),
            "max-age=31536000, immutable"
        );
    }

    #[test]
    fn classes_follow_the_configuration() {
        let config = Config {
            cache_immutable: "max-age=1".into(),
            cache_html: "max-age=2".into(),
            cache_default: "".into(),
            ..Config::default()
        };
        assert_eq!(
            for_file(&config, "a.3f2a9c1b.js", "text/javascript"),
            "max-age=1"
        );
        assert_eq!(for_file(&config, "a.html", "text/html"), "max-age=2");
        assert_eq!(for_file(&config, "a.png", "image/png"), "");
    }
}
