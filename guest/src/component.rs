//! The thin wit-bindgen glue: converts the generated WIT types to and from
//! `model`, and keeps the configuration `configure` installed. Everything that
//! decides anything lives in plain Rust modules that are tested natively.

use std::cell::RefCell;

use crate::config::Config;
use crate::model;

wit_bindgen::generate!({
    path: "../wit",
    world: "policy",
});

use sluice::policy::types as wit;

thread_local! {
    /// Set by `configure`; a component invoked directly (e.g. `wasmtime run
    /// --invoke`) runs with the defaults, as the WIT contract requires.
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

struct Policy;

impl Guest for Policy {
    fn configure(settings: Vec<wit::Setting>) -> Result<wit::Capabilities, String> {
        let pairs: Vec<(String, String)> =
            settings.into_iter().map(|s| (s.name, s.value)).collect();
        let config = Config::from_settings(&pairs)?;
        let caps = config.capabilities();
        CONFIG.with(|c| *c.borrow_mut() = Some(config));
        Ok(wit::Capabilities {
            index_names: caps.index_names,
            siblings: caps.siblings.into_iter().map(coding_to_wit).collect(),
        })
    }

    fn decide(req: wit::Request, found: wit::Entry) -> wit::Decision {
        let req = request_from_wit(req);
        let found = entry_from_wit(found);
        let decision = CONFIG.with(|c| {
            let mut slot = c.borrow_mut();
            let config = slot.get_or_insert_with(Config::default);
            crate::policy::decide(config, &req, &found)
        });
        decision_to_wit(decision)
    }
}

export!(Policy);

fn request_from_wit(r: wit::Request) -> model::Request {
    model::Request {
        method: r.method,
        path: r.path,
        raw_query: r.raw_query,
        headers: r
            .headers
            .into_iter()
            .map(|h| model::Header {
                name: h.name,
                value: h.value,
            })
            .collect(),
        tls: r.tls,
        version: match r.version {
            wit::HttpVersion::Http10 => model::HttpVersion::Http10,
            wit::HttpVersion::Http11 => model::HttpVersion::Http11,
            wit::HttpVersion::Http2 => model::HttpVersion::Http2,
            wit::HttpVersion::Http3 => model::HttpVersion::Http3,
        },
    }
}

fn coding_from_wit(c: wit::ContentCoding) -> model::ContentCoding {
    match c {
        wit::ContentCoding::Gzip => model::ContentCoding::Gzip,
        wit::ContentCoding::Br => model::ContentCoding::Br,
        wit::ContentCoding::Zstd => model::ContentCoding::Zstd,
    }
}

fn coding_to_wit(c: model::ContentCoding) -> wit::ContentCoding {
    match c {
        model::ContentCoding::Gzip => wit::ContentCoding::Gzip,
        model::ContentCoding::Br => wit::ContentCoding::Br,
        model::ContentCoding::Zstd => wit::ContentCoding::Zstd,
    }
}

fn meta_from_wit(m: wit::FileMeta) -> model::FileMeta {
    model::FileMeta {
        size: m.size,
        mtime_ns: m.mtime_ns,
        inode: m.inode,
        device: m.device,
    }
}

fn file_from_wit(f: wit::FileEntry) -> model::FileEntry {
    model::FileEntry {
        meta: meta_from_wit(f.meta),
        siblings: f
            .siblings
            .into_iter()
            .map(|s| model::Sibling {
                coding: coding_from_wit(s.coding),
                meta: meta_from_wit(s.meta),
            })
            .collect(),
    }
}

fn entry_from_wit(e: wit::Entry) -> model::Entry {
    match e {
        wit::Entry::Missing => model::Entry::Missing,
        wit::Entry::File(f) => model::Entry::File(file_from_wit(f)),
        wit::Entry::Directory(d) => model::Entry::Directory {
            index: d.index.map(|i| model::IndexEntry {
                name: i.name,
                file: file_from_wit(i.file),
            }),
        },
    }
}

fn source_to_wit(s: model::Source) -> wit::Source {
    match s {
        model::Source::Original => wit::Source::Original,
        model::Source::Sibling(c) => wit::Source::Sibling(coding_to_wit(c)),
    }
}

fn decision_to_wit(d: model::Decision) -> wit::Decision {
    wit::Decision {
        status: d.status,
        headers: d
            .headers
            .into_iter()
            .map(|h| wit::Header {
                name: h.name,
                value: h.value,
            })
            .collect(),
        body: match d.body {
            model::Body::Empty => wit::Body::Empty,
            model::Body::Inline(bytes) => wit::Body::Inline(bytes),
            model::Body::Full { source, compress } => wit::Body::Full(wit::FullBody {
                source: source_to_wit(source),
                compress: compress.map(|c| wit::Compression {
                    coding: coding_to_wit(c.coding),
                    level: c.level,
                }),
            }),
            model::Body::Ranges { source, ranges } => wit::Body::Ranges(wit::RangedBody {
                source: source_to_wit(source),
                ranges: ranges
                    .into_iter()
                    .map(|r| wit::ByteRange {
                        first: r.first,
                        last: r.last,
                    })
                    .collect(),
            }),
        },
        chunk_size: d.chunk_size,
        zero_copy: d.zero_copy,
    }
}
