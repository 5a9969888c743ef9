//! The policy's view of a request and of what was found.

use http::{Request, Version};

use crate::policy::wit;
use crate::resolve::{FileMeta, Found, FoundFile, NormalPath};

/// Builds the WIT request. Header values that are not UTF-8 are left out, as
/// the WIT documents.
pub fn to_wit<B>(req: &Request<B>, path: &NormalPath, tls: bool) -> wit::Request {
    wit::Request {
        method: req.method().as_str().to_owned(),
        path: path.path.clone(),
        raw_query: req.uri().query().map(str::to_owned),
        headers: req
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some(wit::Header {
                    name: name.as_str().to_owned(),
                    value: value.to_str().ok()?.to_owned(),
                })
            })
            .collect(),
        tls,
        version: match req.version() {
            Version::HTTP_10 | Version::HTTP_09 => wit::HttpVersion::Http10,
            Version::HTTP_2 => wit::HttpVersion::Http2,
            Version::HTTP_3 => wit::HttpVersion::Http3,
            _ => wit::HttpVersion::Http11,
        },
    }
}

fn meta(m: &FileMeta) -> wit::FileMeta {
    wit::FileMeta {
        size: m.size,
        mtime_ns: m.mtime_ns,
        inode: m.inode,
        device: m.device,
    }
}

fn file(f: &FoundFile) -> wit::FileEntry {
    wit::FileEntry {
        meta: meta(&f.file.meta),
        siblings: f
            .siblings
            .iter()
            .map(|(c, s)| wit::Sibling {
                coding: (*c).into(),
                meta: meta(&s.meta),
            })
            .collect(),
    }
}

/// Builds the WIT entry.
pub fn entry_to_wit(found: &Found) -> wit::Entry {
    match found {
        Found::Missing => wit::Entry::Missing,
        Found::File(f) => wit::Entry::File(file(f)),
        Found::Directory { index } => wit::Entry::Directory(wit::DirectoryEntry {
            index: index.as_ref().map(|(name, f)| wit::IndexEntry {
                name: name.clone(),
                file: file(f),
            }),
        }),
    }
}
