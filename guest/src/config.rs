//! The policy's knobs, set by the operator in the host's configuration (the
//! `[policy]` table) and handed over through `configure` as typed values
//! (WIT `setting-value`), with the host's limits on decisions
//! (`host-limits`).
//!
//! Every knob has a default, so an empty settings list is a complete
//! configuration (the WIT contract requires that for a component invoked
//! directly, with `DEFAULT_HOST_LIMITS`). Each knob takes its natural type
//! (an integer for sizes, levels and `max-ranges`, a boolean for switches,
//! an array for lists) and also the text spellings of the 0.1.0 settings
//! (`"16k"`, `"true"`, `"br, gzip"`). Unknown names, values of the wrong type
//! and bad values are errors: a typo stops the server at start-up instead of
//! being silently ignored. `guest/README.md` lists the knobs for operators;
//! keep it in step with this file.

use crate::coding::{self, CODINGS};
use crate::content_type::MediaPattern;
use crate::fields::{Field, FIELDS};
use crate::rules::{Autoindex, SiteRules};
use crate::types::{Capabilities, ContentCoding, HostLimits, Setting, SettingValue};

/// The host limits a component invoked directly must assume (WIT
/// `host-limits`).
pub const DEFAULT_HOST_LIMITS: HostLimits = HostLimits {
    max_ranges: 64,
    max_headers: 64,
    max_header_bytes: 16384,
    max_inline: 65536,
};

/// Default `max-ranges`, lowered to the host's `max-ranges` if that is less.
pub const DEFAULT_MAX_RANGES: u32 = 16;

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

/// Most entries of a directory listing the host gives (WIT `max-listing`).
pub const MAX_LISTING: u32 = 10_000;

/// The fewest bytes one rendered listing row takes (a JSON row with a
/// one-byte name is ~70; an HTML one ~150): `capabilities.listing` asks for
/// as many entries as could fit the host's inline-body limit at this size,
/// so the host never reads a directory further than a listing could show.
pub const MIN_LISTING_ROW: u32 = 64;

/// Parsed policy settings.
#[derive(Debug, Clone)]
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
    /// `compress-level-TOKEN` (`compress-level-gzip`, …): the encoder level
    /// for on-the-fly compression, per coding (indexed like
    /// `coding::CODINGS`, which has each coding's range and default).
    pub levels: [i32; coding::N],
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
    /// range requests (`Accept-Ranges: none`). Default 16, at most the
    /// host's `max-ranges` (64 by default), which also lowers the default.
    pub max_ranges: usize,
    /// `chunk-size`: read size for the host's copying path, bytes (0 = host
    /// default). Default `256k`. A transport hint: it goes to the host in
    /// `capabilities`, not in decisions.
    pub chunk_size: u32,
    /// `zero-copy`: whether the host may use sendfile(2). Default `true`. A
    /// transport hint, like `chunk-size`.
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
    /// A site's rules (`fallback`, `error-pages`, `clean-urls`, `autoindex`,
    /// `redirects`, `headers`), compiled here, once, at `configure`. Off and
    /// empty by default.
    pub rules: SiteRules,
    /// The host's limits on decisions, from `configure`.
    pub limits: HostLimits,
}

impl Default for Config {
    /// The defaults under the default host limits: what a component invoked
    /// directly runs with.
    fn default() -> Self {
        Config::defaults(DEFAULT_HOST_LIMITS)
    }
}

impl Config {
    /// Every knob at its default, under the host's `limits`.
    pub fn defaults(limits: HostLimits) -> Self {
        Config {
            index_names: vec!["index.html".to_owned()],
            precompressed: vec![ContentCoding::Br, ContentCoding::Zstd, ContentCoding::Gzip],
            compress: vec![ContentCoding::Br, ContentCoding::Zstd, ContentCoding::Gzip],
            levels: CODINGS.map(|c| c.default_level),
            compress_min_size: 1024,
            compress_max_size: 16 * 1024 * 1024,
            compress_types: DEFAULT_COMPRESS_TYPES
                .iter()
                .filter_map(|p| MediaPattern::parse(p))
                .collect(),
            max_ranges: DEFAULT_MAX_RANGES.min(limits.max_ranges) as usize,
            chunk_size: 256 * 1024,
            zero_copy: true,
            dotfiles: Dotfiles::Deny,
            well_known: true,
            cache_immutable: "max-age=31536000, immutable".to_owned(),
            cache_html: "no-cache".to_owned(),
            cache_default: "max-age=3600".to_owned(),
            charset: "utf-8".to_owned(),
            types: Vec::new(),
            rules: SiteRules::default(),
            limits,
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
    /// Parses the operator's settings over the defaults, under the host's
    /// `limits`. Later settings of the same name override earlier ones.
    pub fn from_settings(settings: &[Setting], limits: HostLimits) -> Result<Config, String> {
        let mut config = Config::defaults(limits);
        for Setting { name, value } in settings {
            let name = name.as_str();
            match name {
                "index-names" => config.index_names = index_names(name, value)?,
                "precompressed" => config.precompressed = codings(name, value)?,
                "compress" => config.compress = codings(name, value)?,
                "compress-min-size" => config.compress_min_size = size(name, value)?,
                "compress-max-size" => config.compress_max_size = size(name, value)?,
                "compress-types" => {
                    config.compress_types = list(name, value)?
                        .into_iter()
                        .map(|p| {
                            MediaPattern::parse(p)
                                .ok_or_else(|| format!("{name}: not a media type pattern: {p:?}"))
                        })
                        .collect::<Result<_, _>>()?
                }
                "max-ranges" => {
                    let n = integer(name, value, 0, i64::from(limits.max_ranges))?;
                    config.max_ranges =
                        usize::try_from(n).map_err(|_| format!("{name}: out of range"))?;
                }
                "chunk-size" => {
                    config.chunk_size = u32::try_from(size(name, value)?)
                        .map_err(|_| format!("{name}: too large: {}", show(value)))?
                }
                "zero-copy" => config.zero_copy = boolean(name, value)?,
                "dotfiles" => {
                    config.dotfiles = match text(name, value)? {
                        "deny" => Dotfiles::Deny,
                        "allow" => Dotfiles::Allow,
                        _ => {
                            return Err(format!(
                                "{name}: expected deny or allow, got {}",
                                show(value)
                            ))
                        }
                    }
                }
                "well-known" => config.well_known = boolean(name, value)?,
                "cache-immutable" => config.cache_immutable = field_value(name, value)?,
                "cache-html" => config.cache_html = field_value(name, value)?,
                "cache-default" => config.cache_default = field_value(name, value)?,
                "charset" => {
                    let charset = text(name, value)?;
                    if !charset.is_empty() && !crate::fields::is_token(charset) {
                        return Err(format!("{name}: not a charset name: {charset:?}"));
                    }
                    config.charset = charset.to_owned();
                }
                "types" => config.types = types(name, value)?,
                _ if config.rules.set(name, value).transpose()?.is_some() => {}
                _ => match level_setting(name) {
                    Some(c) => {
                        let (min, max) = c.levels;
                        config.levels[c.coding.index()] =
                            integer(name, value, i64::from(min), i64::from(max))?
                    }
                    None => return Err(format!("unknown policy setting {name:?}")),
                },
            }
        }
        if config.compress_min_size > config.compress_max_size {
            return Err("compress-min-size is larger than compress-max-size".to_owned());
        }
        Ok(config)
    }

    /// What the policy asks of the host under this configuration.
    ///
    /// * `request-headers`: exactly the fields the policy reads
    ///   (`fields::FIELDS`, `Accept` only with a `fallback`).
    /// * `query`: the directory redirect keeps it (and redirect rules read
    ///   it).
    /// * `listing`: with `autoindex` on, as many entries as could fit the
    ///   host's inline-body limit (`MIN_LISTING_ROW`), at most
    ///   `MAX_LISTING`; else 0.
    /// * `reusable`: every decision is a pure function of `configure`'s and
    ///   `decide`'s arguments; the policy reads no clock (a date in the future
    ///   is not rejected for that reason, see `conditional`), no randomness,
    ///   and keeps no state but the configuration.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities {
            index_names: self.index_names.clone(),
            siblings: self.precompressed.clone(),
            request_headers: FIELDS
                .iter()
                .filter(|(field, _)| self.reads(*field))
                .map(|(_, name)| (*name).to_owned())
                .collect(),
            query: true,
            reusable: true,
            chunk_size: self.chunk_size,
            zero_copy: self.zero_copy,
            listing: self.listing(),
        }
    }

    /// Whether decisions under this configuration may read `field`.
    pub fn reads(&self, field: Field) -> bool {
        field != Field::Accept || self.rules.fallback.is_some()
    }

    /// `capabilities.listing`: see `capabilities`.
    pub fn listing(&self) -> u32 {
        if self.rules.autoindex == Autoindex::Off {
            return 0;
        }
        (self.limits.max_inline / MIN_LISTING_ROW).clamp(1, MAX_LISTING)
    }

    /// The on-the-fly encoder level configured for `coding`.
    pub fn level(&self, coding: ContentCoding) -> i32 {
        self.levels[coding.index()]
    }
}

/// The coding a `compress-level-TOKEN` setting is for.
fn level_setting(name: &str) -> Option<&'static coding::Coding> {
    let token = name.strip_prefix("compress-level-")?;
    CODINGS.iter().find(|c| c.token == token)
}

/// A value as the operator wrote it, for error messages (TOML spelling).
fn show(value: &SettingValue) -> String {
    match value {
        SettingValue::Text(s) => format!("{s:?}"),
        SettingValue::Integer(n) => n.to_string(),
        SettingValue::Boolean(b) => b.to_string(),
        SettingValue::Items(items) => format!("{items:?}"),
    }
}

pub(crate) fn expected(name: &str, what: &str, value: &SettingValue) -> String {
    format!("{name}: expected {what}, got {}", show(value))
}

/// A string setting (trimmed).
pub(crate) fn text<'v>(name: &str, value: &'v SettingValue) -> Result<&'v str, String> {
    match value {
        SettingValue::Text(s) => Ok(s.trim()),
        _ => Err(expected(name, "a string", value)),
    }
}

/// A list setting: an array, or a comma-separated string. Items are trimmed
/// and empty ones dropped.
pub(crate) fn list<'v>(name: &str, value: &'v SettingValue) -> Result<Vec<&'v str>, String> {
    let items: Vec<&str> = match value {
        SettingValue::Text(s) => s.split(',').collect(),
        SettingValue::Items(items) => items.iter().map(String::as_str).collect(),
        _ => {
            return Err(expected(
                name,
                "an array or a comma-separated string",
                value,
            ))
        }
    };
    Ok(items
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect())
}

fn index_names(name: &str, value: &SettingValue) -> Result<Vec<String>, String> {
    list(name, value)?
        .into_iter()
        .map(|n| {
            // The host refuses a policy asking for such names; refusing them
            // here tells the operator which setting is wrong.
            if n.contains('/') || n == "." || n == ".." {
                Err(format!("{name}: not a file name: {n:?}"))
            } else {
                Ok(n.to_owned())
            }
        })
        .collect()
}

/// A coding list; `none` (alone) or no items is the empty list. Duplicates
/// are dropped so the host is not asked to look for a sibling twice.
fn codings(name: &str, value: &SettingValue) -> Result<Vec<ContentCoding>, String> {
    let items = list(name, value)?;
    if let [only] = items.as_slice() {
        if only.eq_ignore_ascii_case("none") {
            return Ok(Vec::new());
        }
    }
    let mut out = Vec::new();
    for token in items {
        let c = ContentCoding::from_setting(token)
            .ok_or_else(|| format!("{name}: unknown coding {token:?}"))?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// A byte size: a non-negative integer, or text in the grammar of WIT
/// `setting-value` (see `parse_size`).
fn size(name: &str, value: &SettingValue) -> Result<u64, String> {
    match value {
        SettingValue::Integer(n) => u64::try_from(*n).ok(),
        SettingValue::Text(s) => parse_size(s),
        _ => None,
    }
    .ok_or_else(|| expected(name, "a byte size (65536, \"64k\", \"8MiB\")", value))
}

/// Parses a byte size as WIT `setting-value` documents it, the grammar the
/// host reads its own sizes with: digits, then optionally `k`, `m` or `g`
/// (KiB, MiB, GiB), then optionally `b` or `ib`, case-insensitive, with
/// whitespace around the whole: `65536`, `64k`, `8MiB`, `16kb`. `None` for
/// anything else, and for sizes that overflow a `u64`.
pub fn parse_size(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let rest = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, unit) = match rest.as_bytes().last() {
        Some(b'k') => (&rest[..rest.len() - 1], 1u64 << 10),
        Some(b'm') => (&rest[..rest.len() - 1], 1 << 20),
        Some(b'g') => (&rest[..rest.len() - 1], 1 << 30),
        _ => (rest, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// An integer from `min` to `max`: an integer, or its decimal text.
fn integer(name: &str, value: &SettingValue, min: i64, max: i64) -> Result<i32, String> {
    match value {
        SettingValue::Integer(n) => Some(*n),
        SettingValue::Text(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .filter(|n| (min..=max).contains(n))
    .and_then(|n| i32::try_from(n).ok())
    .ok_or_else(|| expected(name, &format!("an integer from {min} to {max}"), value))
}

/// A boolean, or its text: `true`/`false`, `on`/`off`, `yes`/`no`.
pub(crate) fn boolean(name: &str, value: &SettingValue) -> Result<bool, String> {
    match value {
        SettingValue::Boolean(b) => Ok(*b),
        SettingValue::Text(s) => match s.trim() {
            "true" | "on" | "yes" => Ok(true),
            "false" | "off" | "no" => Ok(false),
            _ => Err(expected(name, "a boolean", value)),
        },
        _ => Err(expected(name, "a boolean", value)),
    }
}

/// A value that will be sent as a header field value: the host refuses (500)
/// decisions with invalid field values, so a bad one is caught at start-up.
fn field_value(name: &str, value: &SettingValue) -> Result<String, String> {
    let value = text(name, value)?;
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
fn types(name: &str, value: &SettingValue) -> Result<Vec<(String, String)>, String> {
    list(name, value)?
        .into_iter()
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

    use crate::types::ContentCoding::{Br, Gzip, Zstd};
    use SettingValue::{Boolean, Integer, Items, Text};

    /// Settings written as text, as 0.1.0 passed every value.
    fn parse(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let typed: Vec<(&str, SettingValue)> = pairs
            .iter()
            .map(|(n, v)| (*n, Text(v.to_string())))
            .collect();
        parse_typed(typed)
    }

    fn parse_typed(pairs: Vec<(&str, SettingValue)>) -> Result<Config, String> {
        parse_with(pairs, DEFAULT_HOST_LIMITS)
    }

    fn parse_with(pairs: Vec<(&str, SettingValue)>, limits: HostLimits) -> Result<Config, String> {
        let settings: Vec<Setting> = pairs
            .into_iter()
            .map(|(name, value)| Setting {
                name: name.to_owned(),
                value,
            })
            .collect();
        Config::from_settings(&settings, limits)
    }

    fn items(list: &[&str]) -> SettingValue {
        Items(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn empty_settings_are_the_defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(format!("{c:?}"), format!("{:?}", Config::default()));
        assert_eq!(c.index_names, vec!["index.html"]);
        assert_eq!(c.max_ranges, 16);
        assert_eq!(c.compress_min_size, 1024);
        assert_eq!(c.compress_types.len(), DEFAULT_COMPRESS_TYPES.len());
        assert_eq!(c.capabilities().siblings, c.precompressed);
        assert_eq!(c.limits, DEFAULT_HOST_LIMITS);
        assert_eq!(c.levels, [6, 4, 3], "gzip 6, br 4, zstd 3 (in WIT order)");
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse(&[("chunk-size", "64k"), ("precompressed", "gzip")]).unwrap();
        assert_eq!(c.chunk_size, 64 * 1024);
        assert_eq!(c.precompressed, vec![Gzip]);
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
        assert_eq!(c.precompressed, vec![Zstd, Gzip]);
        assert_eq!(c.compress, vec![Gzip]);
        assert_eq!((c.level(Gzip), c.level(Br), c.level(Zstd)), (9, 0, 19));
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
            vec![Gzip, Br]
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

    #[test]
    fn typed_values_are_accepted() {
        let c = parse_typed(vec![
            ("index-names", items(&["index.html", "a, b.html"])),
            ("precompressed", items(&["zst", "GZ"])),
            ("compress", items(&[])),
            ("compress-level-gzip", Integer(9)),
            ("compress-min-size", Integer(0)),
            ("compress-max-size", Text("1GiB".into())),
            ("compress-types", items(&["text/*", "application/*+json"])),
            ("max-ranges", Integer(64)),
            ("chunk-size", Integer(65536)),
            ("zero-copy", Boolean(false)),
            ("well-known", Boolean(true)),
            ("types", items(&["ts=text/plain"])),
        ])
        .unwrap();
        // An array item is one element: a comma inside it is not a separator.
        assert_eq!(c.index_names, vec!["index.html", "a, b.html"]);
        assert_eq!(c.precompressed, vec![Zstd, Gzip]);
        assert!(c.compress.is_empty());
        assert_eq!(c.level(Gzip), 9);
        assert_eq!((c.compress_min_size, c.compress_max_size), (0, 1 << 30));
        assert_eq!(c.compress_types.len(), 2);
        assert_eq!(c.max_ranges, 64);
        assert_eq!(c.chunk_size, 65536);
        assert!(!c.zero_copy && c.well_known);
        assert_eq!(c.types, vec![("ts".to_owned(), "text/plain".to_owned())]);
        assert!(parse_typed(vec![("precompressed", items(&["none"]))])
            .unwrap()
            .precompressed
            .is_empty());
    }

    #[test]
    fn values_of_the_wrong_type_are_errors() {
        for (name, value) in [
            ("chunk-size", Boolean(true)),
            ("chunk-size", Integer(-1)),
            ("chunk-size", Integer(1 << 32)),
            ("chunk-size", items(&["1"])),
            ("compress-level-br", Boolean(true)),
            ("compress-level-br", Integer(12)),
            ("max-ranges", Integer(65)),
            ("zero-copy", Integer(1)),
            ("zero-copy", Text("1".into())),
            ("well-known", items(&["true"])),
            ("dotfiles", Boolean(false)),
            ("cache-html", Integer(0)),
            ("cache-default", items(&["no-cache"])),
            ("charset", Boolean(false)),
            ("index-names", Integer(1)),
            ("precompressed", Boolean(false)),
            ("types", Integer(3)),
            ("precompressed", items(&["br, gzip"])),
        ] {
            let shown = show(&value);
            let err = parse_typed(vec![(name, value)]).expect_err(name);
            assert!(err.starts_with(name), "{err}");
            assert!(
                err.contains(&shown) || err.contains("unknown coding"),
                "{err} should show {shown}"
            );
        }
    }

    /// The grammar of WIT `setting-value` (and of the host's `parse_size`),
    /// with the host's own test examples first.
    #[test]
    fn byte_sizes() {
        let ok: &[(&str, u64)] = &[
            ("64k", 65536),
            ("8MiB", 8 << 20),
            (" 12 ", 12),
            ("65536", 65536),
            ("0", 0),
            ("1K", 1024),
            ("16kb", 16 << 10),
            ("16KB", 16 << 10),
            ("2kib", 2048),
            ("3m", 3 << 20),
            ("1g", 1 << 30),
            ("1GiB", 1 << 30),
            ("5b", 5),
            ("5B", 5),
            ("5ib", 5),
            ("007k", 7 << 10),
            ("16777216g", 1 << 54),
        ];
        for (text, bytes) in ok {
            assert_eq!(parse_size(text), Some(*bytes), "{text:?}");
        }
        for bad in [
            "lots",
            "",
            " ",
            "k",
            "b",
            "kb",
            "-1",
            "+1",
            "1.5k",
            "1 k",
            "1t",
            "1kk",
            "1bk",
            "0x10",
            "1_000",
            "18446744073709551616",
            "17179869184g",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        let c = parse(&[("chunk-size", "8MiB"), ("compress-max-size", "2gb")]).unwrap();
        assert_eq!((c.chunk_size, c.compress_max_size), (8 << 20, 2 << 30));
    }

    #[test]
    fn max_ranges_is_capped_by_the_host() {
        let limits = HostLimits {
            max_ranges: 8,
            ..DEFAULT_HOST_LIMITS
        };
        // The default is lowered to the host's limit ...
        assert_eq!(parse_with(vec![], limits).unwrap().max_ranges, 8);
        // ... and an explicit value may not exceed it.
        assert_eq!(
            parse_with(vec![("max-ranges", Integer(8))], limits)
                .unwrap()
                .max_ranges,
            8
        );
        assert!(parse_with(vec![("max-ranges", Integer(9))], limits).is_err());
        let roomy = HostLimits {
            max_ranges: 200,
            ..DEFAULT_HOST_LIMITS
        };
        assert_eq!(parse_with(vec![], roomy).unwrap().max_ranges, 16);
        assert_eq!(
            parse_with(vec![("max-ranges", Integer(200))], roomy)
                .unwrap()
                .max_ranges,
            200
        );
    }

    #[test]
    fn capabilities_carry_the_transport_hints() {
        let c = parse_typed(vec![
            ("chunk-size", Text("64k".into())),
            ("zero-copy", Boolean(false)),
            ("index-names", items(&["index.htm"])),
            ("precompressed", items(&["gzip"])),
        ])
        .unwrap();
        let caps = c.capabilities();
        assert_eq!(caps.index_names, vec!["index.htm"]);
        assert_eq!(caps.siblings, vec![Gzip]);
        assert_eq!((caps.chunk_size, caps.zero_copy), (64 << 10, false));
        assert!(caps.query && caps.reusable);
        assert_eq!(
            caps.request_headers,
            [
                "if-match",
                "if-none-match",
                "if-modified-since",
                "if-unmodified-since",
                "if-range",
                "range",
                "accept-encoding",
            ]
        );
        let defaults = Config::default().capabilities();
        assert_eq!((defaults.chunk_size, defaults.zero_copy), (256 << 10, true));
        assert_eq!(defaults.listing, 0, "no listings unless autoindex is on");
    }

    #[test]
    fn site_rules_are_settings() {
        let c = parse_typed(vec![
            ("fallback", Text("/index.html".into())),
            ("autoindex", Text("html".into())),
            ("redirects", items(&["/old/*  /new/:splat  301"])),
        ])
        .unwrap();
        assert_eq!(c.rules.fallback.as_deref(), Some("/index.html"));
        assert_eq!(c.rules.redirects.len(), 1);
        let caps = c.capabilities();
        // The fallback reads Accept, so the host must pass it.
        assert_eq!(
            caps.request_headers.last().map(String::as_str),
            Some("accept")
        );
        assert_eq!(caps.listing, 65536 / MIN_LISTING_ROW);
        let small = parse_with(
            vec![("autoindex", Text("json".into()))],
            HostLimits {
                max_inline: 10,
                ..DEFAULT_HOST_LIMITS
            },
        )
        .unwrap();
        assert_eq!(small.capabilities().listing, 1);
        let huge = parse_with(
            vec![("autoindex", Text("json".into()))],
            HostLimits {
                max_inline: u32::MAX,
                ..DEFAULT_HOST_LIMITS
            },
        )
        .unwrap();
        assert_eq!(huge.capabilities().listing, MAX_LISTING);
        // Errors name the setting (and, for rules, the line).
        let err = parse_typed(vec![("redirects", items(&["/a /b 301", "/c"]))]).unwrap_err();
        assert!(err.starts_with("redirects: line 2: "), "{err}");
        let err = parse_typed(vec![("error-pages", items(&["404=x"]))]).unwrap_err();
        assert!(err.starts_with("error-pages: "), "{err}");
        // An unknown name is still unknown.
        assert!(parse_typed(vec![("fallbacks", Text("/i.html".into()))])
            .unwrap_err()
            .contains("unknown policy setting \"fallbacks\""));
    }
}
