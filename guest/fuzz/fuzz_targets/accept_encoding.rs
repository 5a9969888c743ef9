//! `Accept-Encoding` parsing: never panics, weights stay within [0, 1], and
//! the negotiation built on it always picks something servable.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_guest::accept_encoding::{parse_qvalue, AcceptEncoding, Q_MAX};
use sluice_guest::config::Config;
use sluice_guest::types::{ContentCoding, FileEntry, FileMeta, Sibling, Source};
use sluice_guest::negotiate;

fuzz_target!(|value: &str| {
    let ae = AcceptEncoding::parse(value);
    for coding in ContentCoding::ALL {
        assert!(ae.quality(coding) <= Q_MAX);
    }
    assert!(ae.identity_quality().is_none_or(|q| q <= Q_MAX));
    if let Some(q) = parse_qvalue(value) {
        assert!(q <= Q_MAX);
    }

    let meta = FileMeta {
        size: 4096,
        mtime_ns: 0,
        inode: 1,
        device: 1,
    };
    let file = FileEntry {
        meta,
        siblings: vec![Sibling {
            coding: ContentCoding::Gzip,
            meta: FileMeta {
                inode: 2,
                size: 900,
                ..meta
            },
        }],
    };
    static CONFIG: OnceLock<Config> = OnceLock::new();
    let config = CONFIG.get_or_init(Config::default);
    let rep = negotiate::select(config, &file, Some(&ae), true, true);
    match (rep.source, rep.compress) {
        (Source::Sibling(c), None) => assert!(c == ContentCoding::Gzip && ae.quality(c) > 0),
        (Source::Original, Some(c)) => {
            assert!(ae.quality(c.coding) > 0 && ae.quality(ContentCoding::Gzip) == 0)
        }
        (Source::Original, None) => {}
        (Source::Sibling(_), Some(_)) => panic!("compressed a sibling"),
    }
});
