//! Media types: what a file is (by its extension), how to label it, and
//! whether compressing it on the fly is worthwhile.

use crate::fields::is_token;

/// The media type of a file named `name` (`type/subtype`, lower case).
///
/// Operator overrides (`types`) come first, then a few corrections to
/// `mime_guess`'s table, then the table itself; unknown extensions are
/// `application/octet-stream`, which browsers will not sniff into HTML.
pub fn media_type(name: &str, overrides: &[(String, String)]) -> String {
    let Some(ext) = extension(name) else {
        return "application/octet-stream".to_owned();
    };
    if let Some((_, media)) = overrides.iter().find(|(e, _)| e.eq_ignore_ascii_case(ext)) {
        return media.clone();
    }
    let corrected = match ext.to_ascii_lowercase().as_str() {
        // RFC 9239: JavaScript is text/javascript, modules included.
        "mjs" | "cjs" => Some("text/javascript"),
        // Source maps are JSON (the table says text/plain).
        "map" => Some("application/json"),
        _ => None,
    };
    match corrected {
        Some(media) => media.to_owned(),
        None => guessed(ext),
    }
}

/// `mime_guess`'s first type for `ext`, as its essence (`type/subtype`,
/// lower case), or `application/octet-stream`. Its table's entries are
/// plain lower-case `type/subtype` strings, which are their own essence:
/// those are taken as they are, without `mime`'s parse (a tenth of an
/// uncached `decide` with its allocations, host/benches/RESULTS.md); any
/// other is parsed as before.
fn guessed(ext: &str) -> String {
    let guess = mime_guess::from_ext(ext);
    match guess.first_raw() {
        Some(raw) if is_plain_essence(raw) => raw.to_owned(),
        _ => guess
            .first_or_octet_stream()
            .essence_str()
            .to_ascii_lowercase(),
    }
}

/// `type/subtype` of lower-case token characters, nothing else.
fn is_plain_essence(raw: &str) -> bool {
    raw.split_once('/').is_some_and(|(kind, subtype)| {
        is_token(kind) && is_token(subtype) && !raw.bytes().any(|b| b.is_ascii_uppercase())
    })
}

/// The extension of the last path segment, without the dot; `None` for no
/// extension and for dotfiles without one (`.htaccess`).
pub fn extension(name: &str) -> Option<&str> {
    let base = name.rsplit('/').next().unwrap_or(name);
    match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => Some(ext),
        _ => None,
    }
}

/// The `Content-Type` value: the media type, plus `charset` for textual types
/// (whose bytes are otherwise decoded as windows-1252 or US-ASCII by some
/// clients). JSON takes no charset (RFC 8259 §11 defines none; it is always
/// UTF-8) and XML-based types carry their own encoding declaration, which a
/// charset parameter would override.
pub fn header_value(media: &str, charset: &str) -> String {
    if charset.is_empty() || !is_textual(media) {
        media.to_owned()
    } else {
        [media, "; charset=", charset].concat()
    }
}

fn is_textual(media: &str) -> bool {
    (media.starts_with("text/") && media != "text/xml")
        || matches!(
            media,
            "application/javascript" | "application/ecmascript" | "application/x-javascript"
        )
}

/// HTML, the entry point of a site (cached under `cache-html`).
pub fn is_html(media: &str) -> bool {
    matches!(media, "text/html" | "application/xhtml+xml")
}

/// File extensions of data that is already compressed. They are never
/// compressed on the fly, whatever `compress-types` says, so a broad pattern
/// (`*/*`) cannot make the host double-encode `app.js.gz`.
const COMPRESSED_EXTENSIONS: &[&str] = &[
    "gz", "tgz", "br", "zst", "zstd", "zip", "xz", "txz", "bz2", "tbz2", "lz", "lz4", "lzma", "7z",
    "rar", "jar", "apk", "jpg", "jpeg", "png", "gif", "webp", "avif", "heic", "jxl", "mp3", "mp4",
    "m4a", "m4v", "ogg", "oga", "ogv", "opus", "webm", "mkv", "mov", "flac", "aac", "woff",
    "woff2", "pdf", "docx", "xlsx", "pptx", "odt", "epub",
];

/// Whether a file of this media type and name is worth compressing on the fly.
pub fn is_compressible(media: &str, name: &str, patterns: &[MediaPattern]) -> bool {
    let already_compressed = extension(name).is_some_and(|ext| {
        COMPRESSED_EXTENSIONS
            .iter()
            .any(|c| c.eq_ignore_ascii_case(ext))
    });
    !already_compressed && patterns.iter().any(|p| p.matches(media))
}

/// A media type pattern from `compress-types`: `type/subtype` where the type
/// may be `*` and the subtype may contain one `*` standing for any run of
/// characters (`text/*`, `application/*+xml`, `*/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPattern {
    kind: String,
    subtype: String,
}

impl MediaPattern {
    /// Parses a pattern (case-insensitive; stored in lower case).
    pub fn parse(pattern: &str) -> Option<MediaPattern> {
        let (kind, subtype) = pattern.trim().split_once('/')?;
        let wildcards = subtype.bytes().filter(|&b| b == b'*').count();
        if !is_token(kind)
            || !is_token(subtype)
            || wildcards > 1
            || (kind.contains('*') && kind != "*")
        {
            return None;
        }
        Some(MediaPattern {
            kind: kind.to_ascii_lowercase(),
            subtype: subtype.to_ascii_lowercase(),
        })
    }

    /// Whether the pattern contains a wildcard.
    pub fn has_wildcard(&self) -> bool {
        self.kind == "*" || self.subtype.contains('*')
    }

    /// Whether `media` (`type/subtype`, lower case, no parameters) matches.
    pub fn matches(&self, media: &str) -> bool {
        let Some((kind, subtype)) = media.split_once('/') else {
            return false;
        };
        if self.kind != "*" && self.kind != kind {
            return false;
        }
        match self.subtype.split_once('*') {
            None => self.subtype == subtype,
            Some((prefix, suffix)) => {
                subtype.len() >= prefix.len() + suffix.len()
                    && subtype.starts_with(prefix)
                    && subtype.ends_with(suffix)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn patterns() -> Vec<MediaPattern> {
        Config::default().compress_types
    }

    /// The table entries taken as they are give what parsing them gave,
    /// for a spread of extensions (each of `mime_guess`'s first letters,
    /// the compressed ones, unknown ones, odd case).
    #[test]
    fn guesses_are_what_parsing_gave() {
        let mut exts: Vec<String> = COMPRESSED_EXTENSIONS
            .iter()
            .map(|e| e.to_string())
            .collect();
        exts.extend(
            [
                "html",
                "HTM",
                "css",
                "js",
                "json",
                "xml",
                "svg",
                "txt",
                "csv",
                "md",
                "wasm",
                "ico",
                "bmp",
                "ttf",
                "otf",
                "eot",
                "webmanifest",
                "xhtml",
                "rss",
                "atom",
                "ics",
                "pem",
                "crt",
                "exe",
                "dmg",
                "iso",
                "doc",
                "xls",
                "ppt",
                "rtf",
                "tex",
                "yaml",
                "toml",
                "php",
                "py",
                "rs",
                "c",
                "h",
                "sh",
                "bat",
                "swf",
                "mid",
                "wav",
                "avi",
                "3gp",
                "nosuchext",
                "a",
                "Z",
            ]
            .map(String::from),
        );
        for ext in &exts {
            let parsed = mime_guess::from_ext(ext)
                .first_or_octet_stream()
                .essence_str()
                .to_ascii_lowercase();
            assert_eq!(guessed(ext), parsed, "{ext}");
        }
        assert!(is_plain_essence("text/html"));
        assert!(!is_plain_essence("text/html; charset=utf-8"));
        assert!(!is_plain_essence("Text/HTML"));
        assert!(!is_plain_essence("text"));
    }

    #[test]
    fn media_types_by_extension() {
        let cases = [
            ("/index.html", "text/html"),
            ("/a/b/page.HTM", "text/html"),
            ("app.js", "text/javascript"),
            ("mod.mjs", "text/javascript"),
            ("app.js.map", "application/json"),
            ("style.css", "text/css"),
            ("data.json", "application/json"),
            ("logo.svg", "image/svg+xml"),
            ("photo.JPG", "image/jpeg"),
            ("app.wasm", "application/wasm"),
            ("site.webmanifest", "application/manifest+json"),
            ("font.woff2", "font/woff2"),
            ("notes.txt", "text/plain"),
            ("archive.tar.gz", "application/gzip"),
            ("LICENSE", "application/octet-stream"),
            ("file.unknownext", "application/octet-stream"),
            (".htaccess", "application/octet-stream"),
            ("trailing.", "application/octet-stream"),
        ];
        for (name, want) in cases {
            assert_eq!(media_type(name, &[]), want, "{name}");
        }
    }

    #[test]
    fn overrides_come_first() {
        let overrides = vec![
            ("ts".to_owned(), "text/plain".to_owned()),
            ("js".to_owned(), "application/x-custom".to_owned()),
        ];
        assert_eq!(media_type("a.TS", &overrides), "text/plain");
        assert_eq!(media_type("a.js", &overrides), "application/x-custom");
        assert_eq!(media_type("a.css", &overrides), "text/css");
    }

    #[test]
    fn extensions() {
        assert_eq!(extension("/a/b.c/d"), None);
        assert_eq!(extension("/a/b.c/d.e"), Some("e"));
        assert_eq!(extension("x.tar.gz"), Some("gz"));
        assert_eq!(extension(".env"), None);
        assert_eq!(extension(".env.local"), Some("local"));
        assert_eq!(extension(""), None);
    }

    #[test]
    fn charset_only_on_textual_types() {
        let cases = [
            ("text/html", "text/html; charset=utf-8"),
            ("text/plain", "text/plain; charset=utf-8"),
            ("text/css", "text/css; charset=utf-8"),
            ("text/javascript", "text/javascript; charset=utf-8"),
            (
                "application/javascript",
                "application/javascript; charset=utf-8",
            ),
            ("text/xml", "text/xml"),
            ("application/json", "application/json"),
            ("image/svg+xml", "image/svg+xml"),
            ("image/png", "image/png"),
        ];
        for (media, want) in cases {
            assert_eq!(header_value(media, "utf-8"), want, "{media}");
        }
        assert_eq!(header_value("text/html", ""), "text/html");
        assert_eq!(
            header_value("text/html", "iso-8859-1"),
            "text/html; charset=iso-8859-1"
        );
    }

    #[test]
    fn html_detection() {
        assert!(is_html("text/html"));
        assert!(is_html("application/xhtml+xml"));
        assert!(!is_html("text/plain"));
    }

    #[test]
    fn default_compressible_types() {
        let p = patterns();
        for (media, name, want) in [
            ("text/html", "a.html", true),
            ("text/css", "a.css", true),
            ("text/javascript", "a.js", true),
            ("application/json", "a.json", true),
            ("application/manifest+json", "a.webmanifest", true),
            ("application/rss+xml", "feed.rss", true),
            ("image/svg+xml", "a.svg", true),
            ("application/wasm", "a.wasm", true),
            ("image/png", "a.png", false),
            ("image/jpeg", "a.jpg", false),
            ("font/woff2", "a.woff2", false),
            ("application/gzip", "a.gz", false),
            ("application/zip", "a.zip", false),
            ("application/octet-stream", "a.bin", false),
            ("video/mp4", "a.mp4", false),
        ] {
            assert_eq!(is_compressible(media, name, &p), want, "{media}");
        }
    }

    #[test]
    fn compressed_extensions_win_over_broad_patterns() {
        let everything = vec![MediaPattern::parse("*/*").unwrap()];
        assert!(is_compressible(
            "application/octet-stream",
            "data.bin",
            &everything
        ));
        assert!(!is_compressible(
            "application/octet-stream",
            "app.js.br",
            &everything
        ));
        assert!(!is_compressible("text/plain", "notes.txt.GZ", &everything));
        assert!(!is_compressible("image/png", "a.png", &everything));
    }

    #[test]
    fn pattern_syntax() {
        for good in [
            "text/*",
            "*/*",
            "application/*+json",
            "image/svg+xml",
            "TEXT/Plain",
            "application/vnd.*",
        ] {
            assert!(MediaPattern::parse(good).is_some(), "{good}");
        }
        for bad in [
            "text",
            "text/",
            "/plain",
            "te*t/plain",
            "text/**",
            "text/a*b*",
            "text/pl ain",
            "a/b/c",
            "",
        ] {
            assert!(MediaPattern::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn pattern_matching() {
        let m = |p: &str, media: &str| MediaPattern::parse(p).unwrap().matches(media);
        assert!(m("text/*", "text/plain"));
        assert!(!m("text/*", "image/png"));
        assert!(m("*/*", "image/png"));
        assert!(m("application/*+json", "application/ld+json"));
        assert!(!m("application/*+json", "application/json"));
        assert!(!m("application/*+json", "application/+jso"));
        assert!(m("Text/Plain", "text/plain"));
        assert!(!m("text/plain", "text/plainx"));
        assert!(!m("text/*", "textplain"));
        assert!(m("application/vnd.*", "application/vnd.ms-fontobject"));
    }
}
