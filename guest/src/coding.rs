//! The content codings the policy knows, in one table: adding one is a line
//! here plus its case in the WIT `content-coding` enum.

use crate::types::ContentCoding;

/// What the policy knows about one content coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coding {
    /// The WIT case.
    pub coding: ContentCoding,
    /// Its token in `Accept-Encoding` and `Content-Encoding`, and in the
    /// settings (`precompressed`, `compress`, `compress-level-TOKEN`).
    pub token: &'static str,
    /// The suffix of its precompressed siblings, without the dot; the
    /// settings accept it as a name too (`gz`, `zst`).
    pub suffix: &'static str,
    /// Other names for it in `Accept-Encoding` (RFC 9110 §8.4.1.3:
    /// `x-gzip` is `gzip`).
    pub aliases: &'static [&'static str],
    /// The encoder levels the host accepts (WIT `compression.level`).
    pub levels: (i32, i32),
    /// The default level for on-the-fly compression (`compress-level-TOKEN`).
    pub default_level: i32,
}

/// Number of codings in `CODINGS`.
pub const N: usize = 3;

/// Every coding, in the order of the WIT enum, so that `coding as usize`
/// indexes this table (a test checks it).
///
/// The default levels are moderate on purpose: compressing per request, the
/// higher levels cost far more CPU than they save bytes (precompress for
/// maximum ratio). gzip 6 and zstd 3 are zlib's and zstd's own defaults;
/// Brotli above ~5 gets much slower for little gain.
pub const CODINGS: [Coding; N] = [
    Coding {
        coding: ContentCoding::Gzip,
        token: "gzip",
        suffix: "gz",
        aliases: &["x-gzip"],
        levels: (1, 9),
        default_level: 6,
    },
    Coding {
        coding: ContentCoding::Br,
        token: "br",
        suffix: "br",
        aliases: &[],
        levels: (0, 11),
        default_level: 4,
    },
    Coding {
        coding: ContentCoding::Zstd,
        token: "zstd",
        suffix: "zst",
        aliases: &[],
        levels: (1, 19),
        default_level: 3,
    },
];

impl ContentCoding {
    /// Every coding, in WIT order.
    pub const ALL: [ContentCoding; N] = {
        let mut all = [ContentCoding::Gzip; N];
        let mut i = 0;
        while i < N {
            all[i] = CODINGS[i].coding;
            i += 1;
        }
        all
    };

    /// Its row in `CODINGS`.
    pub fn info(self) -> &'static Coding {
        &CODINGS[self.index()]
    }

    /// Its index in `CODINGS` (and in arrays indexed like it).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The token used in `Accept-Encoding` / `Content-Encoding`.
    pub fn token(self) -> &'static str {
        self.info().token
    }

    /// The coding an `Accept-Encoding` token names (case-insensitive).
    pub fn from_accept_token(token: &str) -> Option<ContentCoding> {
        CODINGS
            .iter()
            .find(|c| {
                c.token.eq_ignore_ascii_case(token)
                    || c.aliases.iter().any(|a| a.eq_ignore_ascii_case(token))
            })
            .map(|c| c.coding)
    }

    /// The coding a setting names, by token or sibling suffix
    /// (case-insensitive).
    pub fn from_setting(name: &str) -> Option<ContentCoding> {
        CODINGS
            .iter()
            .find(|c| c.token.eq_ignore_ascii_case(name) || c.suffix.eq_ignore_ascii_case(name))
            .map(|c| c.coding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_wit_order() {
        for (i, c) in CODINGS.iter().enumerate() {
            assert_eq!(c.coding as usize, i, "{}", c.token);
            assert_eq!(ContentCoding::ALL[i], c.coding);
            assert_eq!(c.coding.info(), c);
        }
    }

    #[test]
    fn tokens_and_names() {
        assert_eq!(ContentCoding::Gzip.token(), "gzip");
        assert_eq!(ContentCoding::Br.token(), "br");
        assert_eq!(ContentCoding::Zstd.token(), "zstd");
        assert_eq!(
            ContentCoding::from_accept_token("X-Gzip"),
            Some(ContentCoding::Gzip)
        );
        assert_eq!(ContentCoding::from_accept_token("gz"), None);
        assert_eq!(ContentCoding::from_accept_token("zst"), None);
        assert_eq!(
            ContentCoding::from_setting("ZST"),
            Some(ContentCoding::Zstd)
        );
        assert_eq!(ContentCoding::from_setting("gz"), Some(ContentCoding::Gzip));
        assert_eq!(ContentCoding::from_setting("x-gzip"), None);
        assert_eq!(ContentCoding::from_setting("deflate"), None);
    }

    #[test]
    fn default_levels_are_in_range() {
        for c in &CODINGS {
            assert!((c.levels.0..=c.levels.1).contains(&c.default_level));
        }
    }
}
