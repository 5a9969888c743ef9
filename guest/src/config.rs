//! The policy's knobs, set by the operator in the host's configuration (the
//! `[policy]` table) and handed over through `configure` as name/value strings.
//!
//! Every knob has a default, so an empty settings list is a complete
//! configuration (the WIT contract requires that for a component invoked
//! directly). Unknown names and bad values are errors: a typo stops the server
//! at start-up instead of being silently ignored. `guest/README.md` lists the
//! knobs for operators; keep it in step with this file.

use crate::content_type::MediaPattern;
use crate::model::{Capabilities, ContentCoding};

/// The host's cap on the number of ranges in one ranged body (WIT
/// `ranged-body`); `max-ranges` may not exceed it.
pub const HOST_MAX_RANGES: usize = 64;

/// Whether paths with a segment starting with `.` are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dotfiles {
    /// Answer 404, as if the file did not exist (`.git/`, `.env`, editor
    /// swap files… are far more often leaked by accident than served on
    /// purpose). `/.well-known/` is governed by `well-known`.
    Deny,
    /// Serve them like any other file.
    Allow,
}

/// Parsed policy settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `index-names`: file names tried, in order, when the request path is a
    /// directory. Default `index.html`.
    pub index_names: Vec<String>,
    /// `precompressed`: precompressed siblings (`NAME.br`, `NAME.zst`,
    /// `NAME.gz`) the host looks for, in order of preference; the order breaks
    /// ties between codings the client accepts equally. Default `br, zstd, gzip`.
    pub precompressed: Vec<ContentCoding>,
    /// `compress`: codings the host may produce on the fly, in order of
    /// preference. Empty disables on-the-fly compression. Default
    /// `br, zstd, gzip`.
    pub compress: Vec<ContentCoding>,
    /// `compress-level-gzip`: gzip level for on-the-fly compression, 1-9.
    /// Default 6 (zlib's own default: most of the gain for moderate CPU).
    pub level_gzip: i32,
    /// `compress-level-br`: Brotli quality, 0-11. Default 4: levels above ~5
    /// cost far more CPU than they save bytes when compressing per request.
    pub level_br: i32,
    /// `compress-level-zstd`: Zstandard level, 1-19. Default 3 (zstd's own
    /// default).
    pub level_zstd: i32,
    /// `compress-min-size`: smallest file compressed on the fly, bytes. Below
    /// ~1 KiB the coding's framing overhead eats the gain. Default `1k`.
    pub compress_min_size: u64,
    /// `compress-max-size`: largest file compressed on the fly, bytes. Bounds
    /// the CPU one request can cost; bigger files should be precompressed.
    /// Default `16m`.
    pub compress_max_size: u64,
    /// `compress-types`: media types worth compressing on the fly; each is
    /// `type/subtype` where `*` may stand for the whole type or for part of the
    /// subtype (`text/*`, `application/*+json`).
    pub compress_types: Vec<MediaPattern>,
    /// `max-ranges`: most ranges honoured in one `Range` request; a request
    /// with more is answered with the whole representation (200). 0 disables
    /// range requests (`Accept-Ranges: none`). Default 16, at most 64.
    pub max_ranges: usize,
    /// `chunk-size`: read size for the host's copying path, bytes (0 = host
    /// default). Default `256k`.
    pub chunk_size: u32,
    /// `zero-copy`: whether the host may use sendfile(2). Default `true`.
    pub zero_copy: bool,
    /// `dotfiles`: `deny` (default) or `allow`.
    pub dotfiles: Dotfiles,
    /// `well-known`: serve `/.well-known/…` (RFC 8615: ACME challenges,
    /// security.txt) even when `dotfiles` is `deny`. Default `true`.
    pub well_known: bool,
    /// `cache-immutable`: `Cache-Control` for fingerprinted file names
    /// (`app.3f2a9c1b.js`): their content never changes under that name.
    /// Empty sends no `Cache-Control`. Default `max-age=31536000, immutable`.
    pub cache_immutable: String,
    /// `cache-html`: `Cache-Control` for HTML, the entry points that name the
    /// fingerprinted assets and so must be revalidated. Default `no-cache`.
    pub cache_html: String,
    /// `cache-default`: `Cache-Control` for every other file. Default
    /// `max-age=3600`.
    pub cache_default: String,
    /// `charset`: charset parameter added to textual media types (`text/*`,
    /// JavaScript). Empty adds none. Default `utf-8`.
    pub charset: String,
    /// `types`: extra or overriding extension → media type mappings,
    /// `ext=type/subtype` comma-separated, e.g. `ts=text/plain`. Default none.
    pub types: Vec<(String, String)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            index_names: vec!["index.html".to_owned()],
            precompressed: vec![ContentCoding::Br, ContentCoding::Zstd, ContentCoding::Gzip],
            compress: vec![ContentCoding::Br, ContentCoding::Zstd, ContentCoding::Gzip],
            level_gzip: 6,
            level_br: 4,
            level_zstd: 3,
            compress_min_size: 1024,
            compress_max_size: 16 * 1024 * 1024,
            compress_types: DEFAULT_COMPRESS_TYPES
                .iter()
                .filter_map(|p| MediaPattern::parse(p))
                .collect(),
            max_ranges: 16,
            chunk_size: 256 * 1024,
            zero_copy: true,
            dotfiles: Dotfiles::Deny,
            well_known: true,
            cache_immutable: "max-age=31536000, immutable".to_owned(),
            cache_html: "no-cache".to_owned(),
            cache_default: "max-age=3600".to_owned(),
            charset: "utf-8".to_owned(),
            types: Vec::new(),
        }
    }
}

/// Default `compress-types`: textual formats and a few binary ones that are
/// known to compress well. Already-compressed formats (images other than SVG
/// and icons, audio, video, archives, WOFF/WOFF2 fonts) are deliberately absent.
pub const DEFAULT_COMPRESS_TYPES: &[&str] = &[
    "text/*",
    "application/javascript",
    "application/ecmascript",
    "application/json",
    "application/*+json",
    "application/xml",
    "application/*+xml",
    "application/wasm",
    "image/svg+xml",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/bmp",
    "font/ttf",
    "font/otf",
    "application/vnd.ms-fontobject",
];

impl Config {
    /// Parses the operator's settings over the defaults. Later settings of the
    /// same name override earlier ones.
    pub fn from_settings(settings: &[(String, String)]) -> Result<Config, String> {
        let mut config = Config::default();
        for (name, value) in settings {
            let value = value.trim();
            let name = name.as_str();
            match name {
                "index-names" => config.index_names = index_names(value)?,
                "precompressed" => config.precompressed = codings(name, value)?,
                "compress" => config.compress = codings(name, value)?,
                "compress-level-gzip" => config.level_gzip = integer(name, value, 1, 9)?,
                "compress-level-br" => config.level_br = integer(name, value, 0, 11)?,
                "compress-level-zstd" => config.level_zstd = integer(name, value, 1, 19)?,
                "compress-min-size" => config.compress_min_size = size(name, value)?,
                "compress-max-size" => config.compress_max_size = size(name, value)?,
                "compress-types" => {
                    config.compress_types = list(value)
                        .map(|p| {
                            MediaPattern::parse(p)
                                .ok_or_else(|| format!("{name}: not a media type pattern: {p:?}"))
                        })
                        .collect::<Result<_, _>>()?
                }
                "max-ranges" => {
                    let n = integer(name, value, 0, HOST_MAX_RANGES as i64)?;
                    config.max_ranges =
                        usize::try_from(n).map_err(|_| format!("{name}: out of range"))?;
                }
                "chunk-size" => {
                    config.chunk_size = u32::try_from(size(name, value)?)
                        .map_err(|_| format!("{name}: too large: {value:?}"))?
                }
                "zero-copy" => config.zero_copy = boolean(name, value)?,
                "dotfiles" => {
                    config.dotfiles = match value {
                        "deny" => Dotfiles::Deny,
                        "allow" => Dotfiles::Allow,
                        _ => return Err(format!("{name}: expected deny or allow, got {value:?}")),
                    }
                }
                "well-known" => config.well_known = boolean(name, value)?,
                "cache-immutable" => config.cache_immutable = field_value(name, value)?,
                "cache-html" => config.cache_html = field_value(name, value)?,
                "cache-default" => config.cache_default = field_value(name, value)?,
                "charset" => {
                    if !value.is_empty() && !crate::fields::is_token(value) {
                        return Err(format!("{name}: not a charset name: {value:?}"));
                    }
                    config.charset = value.to_owned();
                }
                "types" => config.types = types(name, value)?,
                _ => return Err(format!("unknown policy setting {name:?}")),
            }
        }
        if config.compress_min_size > config.compress_max_size {
            return Err("compress-min-size is larger than compress-max-size".to_owned());
        }
        Ok(config)
    }

    /// What the host should look for on disk under this configuration.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities {
            index_names: self.index_names.clone(),
            siblings: self.precompressed.clone(),
        }
    }

    /// The on-the-fly encoder level configured for `coding`.
    pub fn level(&self, coding: ContentCoding) -> i32 {
        match coding {
            ContentCoding::Gzip => self.level_gzip,
            ContentCoding::Br => self.level_br,
            ContentCoding::Zstd => self.level_zstd,
        }
    }
}

/// Comma-separated list items, trimmed, empty items dropped.
fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn index_names(value: &str) -> Result<Vec<String>, String> {
    list(value)
        .map(|n| {
            // The host ignores such names; refusing them here tells the operator.
            if n.contains('/') || n == "." || n == ".." {
                Err(format!("index-names: not a file name: {n:?}"))
            } else {
                Ok(n.to_owned())
            }
        })
        .collect()
}

/// A coding list; `none` (or an empty value) is the empty list. Duplicates
/// are dropped so the host is not asked to look for a sibling twice.
fn codings(name: &str, value: &str) -> Result<Vec<ContentCoding>, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for token in list(value) {
        let c = coding(token).ok_or_else(|| format!("{name}: unknown coding {token:?}"))?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

fn coding(token: &str) -> Option<ContentCoding> {
    match token.to_ascii_lowercase().as_str() {
        "gzip" | "gz" => Some(ContentCoding::Gzip),
        "br" => Some(ContentCoding::Br),
        "zstd" | "zst" => Some(ContentCoding::Zstd),
        _ => None,
    }
}

/// A byte size: a number with an optional `k`/`m`/`g` (KiB/MiB/GiB) suffix.
fn size(name: &str, value: &str) -> Result<u64, String> {
    let lower = value.to_ascii_lowercase();
    let (digits, unit) = match lower.as_bytes().last() {
        Some(b'k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some(b'm') => (&lower[..lower.len() - 1], 1 << 20),
        Some(b'g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower.as_str(), 1),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("{name}: not a size: {value:?}"))
}

fn integer(name: &str, value: &str, min: i64, max: i64) -> Result<i32, String> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| format!("{name}: expected an integer from {min} to {max}, got {value:?}"))
}

fn boolean(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "on" | "yes" => Ok(true),
        "false" | "off" | "no" => Ok(false),
        _ => Err(format!("{name}: not a boolean: {value:?}")),
    }
}

/// A value that will be sent as a header field value: the host refuses (500)
/// decisions with invalid field values, so a bad one is caught at start-up.
fn field_value(name: &str, value: &str) -> Result<String, String> {
    if value
        .bytes()
        .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    {
        Ok(value.to_owned())
    } else {
        Err(format!("{name}: not a valid header field value: {value:?}"))
    }
}

/// `ext=type/subtype, …`; extensions are matched case-insensitively.
fn types(name: &str, value: &str) -> Result<Vec<(String, String)>, String> {
    list(value)
        .map(|item| {
            let (ext, media) = item
                .split_once('=')
                .map(|(e, m)| (e.trim().trim_start_matches('.'), m.trim()))
                .ok_or_else(|| format!("{name}: expected ext=type/subtype, got {item:?}"))?;
            let valid_media = MediaPattern::parse(media).is_some_and(|p| !p.has_wildcard());
            if ext.is_empty() || ext.contains(['.', '/']) || !valid_media {
                return Err(format!("{name}: expected ext=type/subtype, got {item:?}"));
            }
            Ok((ext.to_ascii_lowercase(), media.to_ascii_lowercase()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_settings(&settings(pairs))
    }

    #[test]
    fn empty_settings_are_the_defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.index_names, vec!["index.html"]);
        assert_eq!(c.max_ranges, 16);
        assert_eq!(c.compress_min_size, 1024);
        assert_eq!(c.compress_types.len(), DEFAULT_COMPRESS_TYPES.len());
        assert_eq!(c.capabilities().siblings, c.precompressed);
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse(&[("chunk-size", "64k"), ("precompressed", "gzip")]).unwrap();
        assert_eq!(c.chunk_size, 64 * 1024);
        assert_eq!(c.precompressed, vec![ContentCoding::Gzip]);
        assert_eq!(c.index_names, vec!["index.html"]);
    }

    #[test]
    fn every_knob_parses() {
        let c = parse(&[
            ("index-names", "index.html, index.htm"),
            ("precompressed", "zst, GZ"),
            ("compress", "gzip"),
            ("compress-level-gzip", "9"),
            ("compress-level-br", "0"),
            ("compress-level-zstd", "19"),
            ("compress-min-size", "0"),
            ("compress-max-size", "1g"),
            ("compress-types", "text/*, application/*+json"),
            ("max-ranges", "64"),
            ("chunk-size", "1m"),
            ("zero-copy", "off"),
            ("dotfiles", "allow"),
            ("well-known", "no"),
            ("cache-immutable", "max-age=60"),
            ("cache-html", ""),
            ("cache-default", "no-store"),
            ("charset", ""),
            ("types", "ts=text/plain, .MD=text/markdown"),
        ])
        .unwrap();
        assert_eq!(c.index_names, vec!["index.html", "index.htm"]);
        assert_eq!(
            c.precompressed,
            vec![ContentCoding::Zstd, ContentCoding::Gzip]
        );
        assert_eq!(c.compress, vec![ContentCoding::Gzip]);
        assert_eq!((c.level_gzip, c.level_br, c.level_zstd), (9, 0, 19));
        assert_eq!(c.level(ContentCoding::Br), 0);
        assert_eq!((c.compress_min_size, c.compress_max_size), (0, 1 << 30));
        assert_eq!(c.compress_types.len(), 2);
        assert_eq!(c.max_ranges, 64);
        assert_eq!(c.chunk_size, 1 << 20);
        assert!(!c.zero_copy);
        assert_eq!(c.dotfiles, Dotfiles::Allow);
        assert!(!c.well_known);
        assert_eq!(c.cache_immutable, "max-age=60");
        assert_eq!(c.cache_html, "");
        assert_eq!(c.cache_default, "no-store");
        assert_eq!(c.charset, "");
        assert_eq!(
            c.types,
            vec![
                ("ts".to_owned(), "text/plain".to_owned()),
                ("md".to_owned(), "text/markdown".to_owned())
            ]
        );
    }

    #[test]
    fn coding_lists_accept_none_and_drop_duplicates() {
        assert!(parse(&[("compress", "none")]).unwrap().compress.is_empty());
        assert!(parse(&[("precompressed", "")])
            .unwrap()
            .precompressed
            .is_empty());
        assert_eq!(
            parse(&[("compress", "gzip, gzip, br")]).unwrap().compress,
            vec![ContentCoding::Gzip, ContentCoding::Br]
        );
    }

    #[test]
    fn unknown_and_bad_settings_are_errors() {
        for bad in [
            ("chunk-sise", "1"),
            ("chunk-size", "lots"),
            ("chunk-size", "8g"),
            ("precompressed", "lzma"),
            ("compress", "deflate"),
            ("zero-copy", "maybe"),
            ("compress-level-gzip", "0"),
            ("compress-level-br", "12"),
            ("compress-level-zstd", "20"),
            ("compress-level-zstd", "3.5"),
            ("compress-min-size", "-1"),
            ("compress-max-size", "99999999999999999999"),
            ("compress-types", "text"),
            ("compress-types", "text/**"),
            ("max-ranges", "65"),
            ("max-ranges", "-1"),
            ("dotfiles", "hide"),
            ("well-known", "1"),
            ("cache-default", "max-age=1\r\nx: y"),
            ("charset", "utf 8"),
            ("types", "ts"),
            ("types", "=text/plain"),
            ("types", "ts=text/*"),
            ("types", "a/b=text/plain"),
            ("index-names", "a/index.html"),
            ("index-names", ".."),
        ] {
            assert!(parse(&[bad]).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn min_size_above_max_size_is_an_error() {
        assert!(parse(&[("compress-min-size", "2m"), ("compress-max-size", "1m")]).is_err());
    }

    #[test]
    fn later_settings_override_earlier_ones() {
        let c = parse(&[("max-ranges", "3"), ("max-ranges", "5")]).unwrap();
        assert_eq!(c.max_ranges, 5);
    }

    #[test]
    fn values_are_trimmed() {
        let c = parse(&[("max-ranges", " 8 "), ("zero-copy", " false")]).unwrap();
        assert_eq!(c.max_ranges, 8);
        assert!(!c.zero_copy);
    }
}
