//! Choosing the representation of a file to send: the file as stored, a
//! precompressed sibling, or the file compressed on the fly by the host
//! (RFC 9110 §12, proactive negotiation on `Accept-Encoding`).
//!
//! Every representation has its own entity tag, so validators never mix
//! representations: a cache holding the gzip variant cannot get a 304 (or a
//! range) for the Brotli one.

use crate::accept_encoding::{AcceptEncoding, Quality};
use crate::config::Config;
use crate::etag::EntityTag;
use crate::http_date::secs_from_ns;
use crate::types::{Compression, FileEntry, FileMeta, Sibling, Source};

/// The selected representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Representation {
    /// The stored bytes it is made from.
    pub source: Source,
    /// On-the-fly compression of `source` (only ever of the original).
    pub compress: Option<Compression>,
    /// Metadata of the stored bytes: the sibling's for a sibling.
    pub meta: FileMeta,
    /// Its entity tag.
    pub etag: EntityTag,
    /// Its `Last-Modified`, seconds since the epoch.
    pub last_modified: i64,
}

impl Representation {
    /// The file as stored.
    pub fn identity(file: &FileEntry) -> Self {
        Representation {
            source: Source::Original,
            compress: None,
            meta: file.meta,
            etag: EntityTag::for_file(&file.meta, None, false),
            last_modified: secs_from_ns(file.meta.mtime_ns),
        }
    }

    /// A precompressed sibling: its own bytes, so its own metadata, tag and
    /// modification time (as nginx's `gzip_static` does). The coding suffix
    /// keeps the tag distinct even if a sibling were a hard link to the
    /// original.
    pub fn sibling(sibling: &Sibling) -> Self {
        Representation {
            source: Source::Sibling(sibling.coding),
            compress: None,
            meta: sibling.meta,
            etag: EntityTag::for_file(&sibling.meta, Some(sibling.coding.token()), false),
            last_modified: secs_from_ns(sibling.meta.mtime_ns),
        }
    }

    /// The original compressed by the host as it is sent.
    ///
    /// Its entity tag is **weak** (`W/"…-gzip"`). A strong tag promises
    /// byte-for-byte identical content, but these bytes depend on the host's
    /// encoder library and version and on how it flushes between reads (which
    /// `chunk-size` influences), none of which the policy controls or sees;
    /// after a host upgrade the same strong tag could name different bytes.
    /// What the weak tag gives up does not apply here: strong comparison
    /// serves `If-Match` (state-changing requests, which this server has none
    /// of) and `If-Range`, and ranges are never taken from on-the-fly output.
    /// Weak comparison, which `If-None-Match` revalidation uses, works as
    /// before. The suffix differs per coding and from every sibling tag
    /// (those come from the sibling's own inode), so representations never
    /// share a tag.
    pub fn on_the_fly(file: &FileEntry, compression: Compression) -> Self {
        Representation {
            source: Source::Original,
            compress: Some(compression),
            meta: file.meta,
            etag: EntityTag::for_file(&file.meta, Some(compression.coding.token()), true),
            last_modified: secs_from_ns(file.meta.mtime_ns),
        }
    }

    /// Its length: what `Range` offsets index into. For on-the-fly output the
    /// length is unknown, which is one reason it is never ranged.
    pub fn stored_size(&self) -> u64 {
        self.meta.size
    }
}

/// The siblings the policy may serve, best first by the `precompressed`
/// order: only configured codings (the host should report no others, but a
/// decision naming one would be refused), one per coding, and never an empty
/// file (no valid gzip, Brotli or zstd stream is empty, so an empty sibling is
/// a broken build artefact, and serving it would turn the page into nothing).
pub fn usable_siblings<'f>(
    config: &'f Config,
    file: &'f FileEntry,
) -> impl Iterator<Item = &'f Sibling> + 'f {
    config.precompressed.iter().filter_map(move |&coding| {
        file.siblings
            .iter()
            .find(|s| s.coding == coding && s.meta.size > 0)
    })
}

/// Whether the host would compress this file on the fly for a client that
/// accepts it: a compressible type within the configured size bounds, and at
/// least one coding configured.
pub fn on_the_fly_eligible(config: &Config, size: u64, compressible_type: bool) -> bool {
    compressible_type
        && !config.compress.is_empty()
        && size >= config.compress_min_size
        && size <= config.compress_max_size
}

/// Whether the response may differ by `Accept-Encoding` (and so needs
/// `Vary: Accept-Encoding`, on every status that carries validators or
/// content: 200, 206, 304, 412, 416).
pub fn varies(config: &Config, file: &FileEntry, otf_eligible: bool) -> bool {
    otf_eligible || usable_siblings(config, file).next().is_some()
}

/// Selects the representation for a client with `accept` (`None`: no
/// `Accept-Encoding` field).
///
/// * No field: the file as stored. RFC 9110 would allow any coding, but
///   clients that send no `Accept-Encoding` are scripts and old tools that
///   may not decode anything.
/// * Otherwise the acceptable (q > 0) sibling with the highest weight, ties
///   going to the earlier coding in `precompressed`; failing that, and only
///   when `allow_on_the_fly` (the caller clears it for ranged requests) and
///   the file is `otf_eligible`, on-the-fly compression with the acceptable
///   coding of highest weight, ties by the `compress` order; failing that the
///   file as stored.
/// * Identity is preferred only when the client weighted it explicitly (by
///   name or `*`) above the best coding. When the client refused identity
///   (`identity;q=0`, `*;q=0`) and accepts nothing we have, the file is sent
///   as stored anyway, as RFC 9110 §12.5.3 allows, rather than 406.
pub fn select(
    config: &Config,
    file: &FileEntry,
    accept: Option<&AcceptEncoding>,
    otf_eligible: bool,
    allow_on_the_fly: bool,
) -> Representation {
    let Some(accept) = accept else {
        return Representation::identity(file);
    };
    let identity = accept.identity_quality();
    let beats_identity = |q: Quality| q > 0 && identity.is_none_or(|iq| q >= iq);

    if let Some((q, sibling)) =
        best(usable_siblings(config, file).map(|s| (accept.quality(s.coding), s)))
    {
        if beats_identity(q) {
            return Representation::sibling(sibling);
        }
    }
    if otf_eligible && allow_on_the_fly {
        if let Some((q, &coding)) = best(config.compress.iter().map(|c| (accept.quality(*c), c))) {
            if beats_identity(q) {
                return Representation::on_the_fly(
                    file,
                    Compression {
                        coding,
                        level: config.level(coding),
                    },
                );
            }
        }
    }
    Representation::identity(file)
}

/// The first item with the highest weight (so earlier items win ties).
fn best<T>(items: impl Iterator<Item = (Quality, T)>) -> Option<(Quality, T)> {
    items.fold(None, |best, (q, item)| match best {
        Some((bq, _)) if bq >= q => best,
        _ => Some((q, item)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ContentCoding::{self, Br, Gzip, Zstd};

    fn meta(inode: u64, size: u64) -> FileMeta {
        FileMeta {
            size,
            mtime_ns: 1_700_000_000_000_000_000,
            inode,
            device: 1,
        }
    }

    fn file(size: u64, siblings: &[ContentCoding]) -> FileEntry {
        FileEntry {
            meta: meta(1, size),
            siblings: siblings
                .iter()
                .enumerate()
                .map(|(i, &coding)| Sibling {
                    coding,
                    meta: meta(100 + i as u64, size / 3 + 1),
                })
                .collect(),
        }
    }

    /// The coding (or "identity") and on-the-fly flag chosen.
    fn choose(f: &FileEntry, accept: Option<&str>, otf: bool) -> (String, bool) {
        let config = Config::default();
        let ae = accept.map(AcceptEncoding::parse);
        let rep = select(&config, f, ae.as_ref(), otf, true);
        match (rep.source, rep.compress) {
            (Source::Sibling(c), None) => (c.token().to_owned(), false),
            (Source::Original, Some(c)) => (c.coding.token().to_owned(), true),
            (Source::Original, None) => ("identity".to_owned(), false),
            (Source::Sibling(_), Some(_)) => panic!("compressed sibling"),
        }
    }

    #[test]
    fn sibling_selection_table() {
        let all = file(3000, &[Br, Zstd, Gzip]);
        let gz_only = file(3000, &[Gzip]);
        let cases: &[(&FileEntry, Option<&str>, &str)] = &[
            (&all, None, "identity"),
            (&all, Some(""), "identity"),
            (&all, Some("gzip, deflate, br, zstd"), "br"),
            (&all, Some("gzip, deflate"), "gzip"),
            (&all, Some("gzip;q=0.5, zstd;q=0.8"), "zstd"),
            (&all, Some("br;q=0.1, gzip;q=0.2"), "gzip"),
            (&all, Some("*"), "br"),
            (&all, Some("*;q=0.5, br;q=0"), "zstd"),
            (&all, Some("br;q=0, zstd;q=0, gzip;q=0"), "identity"),
            (&all, Some("identity"), "identity"),
            (&all, Some("identity, gzip;q=0.5"), "identity"),
            (&all, Some("identity;q=0.5, gzip;q=0.5"), "gzip"),
            (&all, Some("identity;q=0.4, gzip;q=0.5"), "gzip"),
            (&all, Some("gzip;q=0.3, *;q=0.9"), "br"),
            (&gz_only, Some("br"), "identity"),
            (&gz_only, Some("br, gzip;q=0.001"), "gzip"),
        ];
        for (f, accept, want) in cases {
            assert_eq!(choose(f, *accept, false).0, *want, "{accept:?}");
        }
    }

    #[test]
    fn precompressed_order_breaks_ties() {
        let f = file(3000, &[Gzip, Zstd, Br]);
        let config = Config {
            precompressed: vec![Gzip, Zstd, Br],
            ..Config::default()
        };
        let ae = AcceptEncoding::parse("br, zstd, gzip");
        assert_eq!(
            select(&config, &f, Some(&ae), false, true).source,
            Source::Sibling(Gzip)
        );
    }

    #[test]
    fn siblings_of_unconfigured_codings_or_empty_ones_are_not_used() {
        let f = file(3000, &[Br]);
        let config = Config {
            precompressed: vec![Gzip],
            ..Config::default()
        };
        let ae = AcceptEncoding::parse("br");
        assert_eq!(
            select(&config, &f, Some(&ae), false, true).source,
            Source::Original
        );
        let mut empty = file(3000, &[Br, Gzip]);
        empty.siblings[0].meta.size = 0;
        let ae = AcceptEncoding::parse("br, gzip");
        assert_eq!(
            select(&Config::default(), &empty, Some(&ae), false, true).source,
            Source::Sibling(Gzip)
        );
    }

    #[test]
    fn on_the_fly_only_without_a_usable_sibling() {
        let none = file(3000, &[]);
        assert_eq!(
            choose(&none, Some("gzip, br"), true),
            ("br".to_owned(), true)
        );
        assert_eq!(choose(&none, Some("gzip"), true), ("gzip".to_owned(), true));
        assert_eq!(
            choose(&none, Some("gzip;q=0.5, zstd"), true),
            ("zstd".to_owned(), true)
        );
        assert_eq!(
            choose(&none, Some("deflate"), true),
            ("identity".to_owned(), false)
        );
        assert_eq!(choose(&none, None, true), ("identity".to_owned(), false));
        assert_eq!(
            choose(&none, Some("identity, gzip;q=0.5"), true),
            ("identity".to_owned(), false)
        );
        assert_eq!(
            choose(&none, Some("gzip"), false),
            ("identity".to_owned(), false)
        );
        // A sibling wins even when the client weighs another coding higher.
        let gz = file(3000, &[Gzip]);
        assert_eq!(
            choose(&gz, Some("br, gzip;q=0.5"), true),
            ("gzip".to_owned(), false)
        );
        // A sibling the client refuses does not stop on-the-fly compression.
        assert_eq!(
            choose(&gz, Some("br, gzip;q=0"), true),
            ("br".to_owned(), true)
        );
    }

    #[test]
    fn ranged_requests_never_get_on_the_fly_output() {
        let none = file(3000, &[]);
        let ae = AcceptEncoding::parse("gzip");
        let rep = select(&Config::default(), &none, Some(&ae), true, false);
        assert_eq!((rep.source, rep.compress), (Source::Original, None));
        let gz = file(3000, &[Gzip]);
        assert_eq!(
            select(&Config::default(), &gz, Some(&ae), true, false).source,
            Source::Sibling(Gzip)
        );
    }

    #[test]
    fn on_the_fly_uses_the_configured_level() {
        let mut config = Config {
            compress: vec![Gzip],
            ..Config::default()
        };
        config.levels[Gzip.index()] = 9;
        let ae = AcceptEncoding::parse("gzip");
        let rep = select(&config, &file(3000, &[]), Some(&ae), true, true);
        assert_eq!(
            rep.compress,
            Some(Compression {
                coding: Gzip,
                level: 9
            })
        );
    }

    #[test]
    fn representations_have_distinct_tags_and_own_metadata() {
        let f = file(3000, &[Br, Gzip]);
        let identity = Representation::identity(&f);
        let br = Representation::sibling(&f.siblings[0]);
        let gzip = Representation::sibling(&f.siblings[1]);
        let otf = Representation::on_the_fly(
            &f,
            Compression {
                coding: Gzip,
                level: 6,
            },
        );
        let otf_br = Representation::on_the_fly(
            &f,
            Compression {
                coding: Br,
                level: 4,
            },
        );
        let tags = [
            &identity.etag,
            &br.etag,
            &gzip.etag,
            &otf.etag,
            &otf_br.etag,
        ];
        for (i, a) in tags.iter().enumerate() {
            for b in &tags[i + 1..] {
                assert!(!a.weak_eq(b), "{a} vs {b}");
            }
        }
        assert!(!identity.etag.weak && !br.etag.weak && otf.etag.weak);
        assert!(br.etag.tag.ends_with("-br"));
        assert_eq!(br.stored_size(), f.siblings[0].meta.size);
        assert_eq!(identity.stored_size(), 3000);
        assert_eq!(identity.last_modified, 1_700_000_000);
    }

    #[test]
    fn eligibility_and_vary() {
        let config = Config::default();
        assert!(on_the_fly_eligible(&config, 1024, true));
        assert!(!on_the_fly_eligible(&config, 1023, true));
        assert!(!on_the_fly_eligible(&config, 1 << 30, true));
        assert!(!on_the_fly_eligible(&config, 4096, false));
        let off = Config {
            compress: vec![],
            ..Config::default()
        };
        assert!(!on_the_fly_eligible(&off, 4096, true));
        assert!(varies(&config, &file(10, &[Gzip]), false));
        assert!(varies(&config, &file(10, &[]), true));
        assert!(!varies(&config, &file(10, &[]), false));
    }
}
