//! Adapting policies built against the frozen `sluice:policy@0.1.0`.
//!
//! The WIT promised that the host keeps loading policies built against older
//! versions it supports. The 0.1.0 types are the 0.2.0 ones minus what 0.2.0
//! added, so every conversion here is a field-for-field move. What 0.1.0 did
//! not have is filled in on the host's side: such a policy declares no request
//! fields (it gets every header and the query), its decisions are never
//! reused, and its transport hints come with each decision.

use crate::contract::wit::v0_1::sluice::policy::types as old;
use crate::contract::wit::{self as new, SettingValue};
use crate::contract::Transport;

/// Settings as 0.1.0 passed them: every value as text, arrays joined with
/// ", " (the grammar 0.1.0 policies split on).
pub(super) fn settings(settings: &[new::Setting]) -> Vec<old::Setting> {
    settings
        .iter()
        .map(|s| old::Setting {
            name: s.name.clone(),
            value: match &s.value {
                SettingValue::Text(t) => t.clone(),
                SettingValue::Integer(n) => n.to_string(),
                SettingValue::Boolean(b) => b.to_string(),
                SettingValue::Items(items) => items.join(", "),
            },
        })
        .collect()
}

pub(super) fn request(r: &new::Request) -> old::Request {
    old::Request {
        method: r.method.clone(),
        path: r.path.clone(),
        raw_query: r.raw_query.clone(),
        headers: r
            .headers
            .iter()
            .map(|h| old::Header {
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect(),
        tls: r.tls,
        version: match r.version {
            new::HttpVersion::Http10 => old::HttpVersion::Http10,
            new::HttpVersion::Http11 => old::HttpVersion::Http11,
            new::HttpVersion::Http2 => old::HttpVersion::Http2,
            new::HttpVersion::Http3 => old::HttpVersion::Http3,
        },
    }
}

pub(super) fn coding_from(c: old::ContentCoding) -> new::ContentCoding {
    match c {
        old::ContentCoding::Gzip => new::ContentCoding::Gzip,
        old::ContentCoding::Br => new::ContentCoding::Br,
        old::ContentCoding::Zstd => new::ContentCoding::Zstd,
    }
}

fn coding_to(c: new::ContentCoding) -> old::ContentCoding {
    match c {
        new::ContentCoding::Gzip => old::ContentCoding::Gzip,
        new::ContentCoding::Br => old::ContentCoding::Br,
        new::ContentCoding::Zstd => old::ContentCoding::Zstd,
    }
}

fn meta(m: &new::FileMeta) -> old::FileMeta {
    old::FileMeta {
        size: m.size,
        mtime_ns: m.mtime_ns,
        inode: m.inode,
        device: m.device,
    }
}

fn file(f: &new::FileEntry) -> old::FileEntry {
    old::FileEntry {
        meta: meta(&f.meta),
        siblings: f
            .siblings
            .iter()
            .map(|s| old::Sibling {
                coding: coding_to(s.coding),
                meta: meta(&s.meta),
            })
            .collect(),
    }
}

pub(super) fn entry(e: &new::Entry) -> old::Entry {
    match e {
        new::Entry::Missing => old::Entry::Missing,
        new::Entry::File(f) => old::Entry::File(file(f)),
        new::Entry::Directory(d) => old::Entry::Directory(old::DirectoryEntry {
            index: d.index.as_ref().map(|i| old::IndexEntry {
                name: i.name.clone(),
                file: file(&i.file),
            }),
        }),
    }
}

fn source(s: old::Source) -> new::Source {
    match s {
        old::Source::Original => new::Source::Original,
        old::Source::Sibling(c) => new::Source::Sibling(coding_from(c)),
    }
}

/// A 0.1.0 decision, and the transport hints it carried.
pub(super) fn decision(d: old::Decision) -> (new::Decision, Transport) {
    let body = match d.body {
        old::Body::Empty => new::Body::Empty,
        old::Body::Inline(bytes) => new::Body::Inline(bytes),
        old::Body::Full(f) => new::Body::Full(new::FullBody {
            source: source(f.source),
            compress: f.compress.map(|c| new::Compression {
                coding: coding_from(c.coding),
                level: c.level,
            }),
        }),
        old::Body::Ranges(r) => new::Body::Ranges(new::RangedBody {
            source: source(r.source),
            ranges: r
                .ranges
                .into_iter()
                .map(|r| new::ByteRange {
                    first: r.first,
                    last: r.last,
                })
                .collect(),
        }),
    };
    let decision = new::Decision {
        status: d.status,
        headers: d
            .headers
            .into_iter()
            .map(|h| new::Header {
                name: h.name,
                value: h.value,
            })
            .collect(),
        body,
    };
    (
        decision,
        Transport {
            chunk_size: d.chunk_size,
            zero_copy: d.zero_copy,
        },
    )
}
