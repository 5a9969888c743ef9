//! Adapting policies built against the frozen `sluice:policy@0.2.0`.
//!
//! 0.3.0 added to 0.2.0 only what a policy *may* use: a request's `hop`, a
//! directory's `listing`, the `listing` capability and the `rewrite`
//! outcome. So a 0.2.0 policy is given requests without a hop (it is never
//! asked to decide again: it cannot rewrite) and directories without a
//! listing (it asks for none), and its decision is the response, as if it
//! had answered `respond`. Its decision has 0.3.0's layout exactly, so it is
//! lifted by the same bounded reader (`bounded`); only the arguments and the
//! `configure` types are converted here, field for field.

use crate::contract::wit::v0_2::sluice::policy::types as old;
use crate::contract::wit::{self as new};

pub(super) use old::{Entry, Request};

fn header(h: &new::Header) -> old::Header {
    old::Header {
        name: h.name.clone(),
        value: h.value.clone(),
    }
}

fn coding(c: new::ContentCoding) -> old::ContentCoding {
    match c {
        new::ContentCoding::Gzip => old::ContentCoding::Gzip,
        new::ContentCoding::Br => old::ContentCoding::Br,
        new::ContentCoding::Zstd => old::ContentCoding::Zstd,
    }
}

fn coding_from(c: old::ContentCoding) -> new::ContentCoding {
    match c {
        old::ContentCoding::Gzip => new::ContentCoding::Gzip,
        old::ContentCoding::Br => new::ContentCoding::Br,
        old::ContentCoding::Zstd => new::ContentCoding::Zstd,
    }
}

pub(super) fn settings(settings: &[new::Setting]) -> Vec<old::Setting> {
    settings
        .iter()
        .map(|s| old::Setting {
            name: s.name.clone(),
            value: match &s.value {
                new::SettingValue::Text(t) => old::SettingValue::Text(t.clone()),
                new::SettingValue::Integer(n) => old::SettingValue::Integer(*n),
                new::SettingValue::Boolean(b) => old::SettingValue::Boolean(*b),
                new::SettingValue::Items(i) => old::SettingValue::Items(i.clone()),
            },
        })
        .collect()
}

pub(super) fn host_limits(l: new::HostLimits) -> old::HostLimits {
    old::HostLimits {
        max_ranges: l.max_ranges,
        max_headers: l.max_headers,
        max_header_bytes: l.max_header_bytes,
        max_inline: l.max_inline,
    }
}

/// 0.2.0's capabilities in 0.3.0's terms: it never asks for a listing.
pub(super) fn capabilities(c: old::Capabilities) -> new::Capabilities {
    new::Capabilities {
        index_names: c.index_names,
        siblings: c.siblings.into_iter().map(coding_from).collect(),
        request_headers: c.request_headers,
        query: c.query,
        reusable: c.reusable,
        chunk_size: c.chunk_size,
        zero_copy: c.zero_copy,
        listing: 0,
    }
}

/// The request without its hop (a 0.2.0 policy never rewrites, so the
/// host never decides again for it: the hop is always `none` here).
pub(super) fn request(r: &new::Request) -> old::Request {
    old::Request {
        method: r.method.clone(),
        path: r.path.clone(),
        raw_query: r.raw_query.clone(),
        headers: r.headers.iter().map(header).collect(),
        tls: r.tls,
        version: match r.version {
            new::HttpVersion::Http10 => old::HttpVersion::Http10,
            new::HttpVersion::Http11 => old::HttpVersion::Http11,
            new::HttpVersion::Http2 => old::HttpVersion::Http2,
            new::HttpVersion::Http3 => old::HttpVersion::Http3,
        },
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
                coding: coding(s.coding),
                meta: meta(&s.meta),
            })
            .collect(),
    }
}

/// The entry without a listing (a 0.2.0 policy asks for none).
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
