//! The policy's view of a request and of what was found, and the key that
//! names exactly that view.

use http::{Request, Version};

use crate::contract::wit;
use crate::policy::Fields;
use crate::resolve::{FileMeta, Found, FoundFile, NormalPath};

fn version(v: Version) -> wit::HttpVersion {
    match v {
        Version::HTTP_10 | Version::HTTP_09 => wit::HttpVersion::Http10,
        Version::HTTP_2 => wit::HttpVersion::Http2,
        Version::HTTP_3 => wit::HttpVersion::Http3,
        _ => wit::HttpVersion::Http11,
    }
}

/// The header fields the policy is given: those it declared, in the order
/// received, leaving out values that are not UTF-8 (as the WIT documents).
fn fields<'a, B>(
    req: &'a Request<B>,
    fields: &'a Fields,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    req.headers()
        .iter()
        .filter(|(name, _)| fields.wants(name))
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
}

fn query<'a, B>(req: &'a Request<B>, fields: &Fields) -> Option<&'a str> {
    if fields.query() {
        req.uri().query()
    } else {
        None
    }
}

/// Builds the WIT request, with only the fields the policy declared;
/// `path` is the one being decided (a rewrite's, after one: see `hop`).
pub fn to_wit<B>(
    req: &Request<B>,
    path: &NormalPath,
    hop: Option<&wit::Hop>,
    tls: bool,
    declared: &Fields,
) -> wit::Request {
    wit::Request {
        method: req.method().as_str().to_owned(),
        path: path.path.clone(),
        raw_query: query(req, declared).map(str::to_owned),
        headers: fields(req, declared)
            .map(|(name, value)| wit::Header {
                name: name.to_owned(),
                value: value.to_owned(),
            })
            .collect(),
        tls,
        version: version(req.version()),
        hop: hop.cloned(),
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
                coding: *c,
                meta: meta(&s.meta),
            })
            .collect(),
    }
}

/// Builds the WIT entry; `listing` is a directory's (read for a policy
/// asking for listings, when the directory has no index).
pub fn entry_to_wit(found: &Found, listing: Option<&wit::Listing>) -> wit::Entry {
    match found {
        Found::Missing => wit::Entry::Missing,
        Found::File(f) => wit::Entry::File(file(f)),
        Found::Directory { index } => wit::Entry::Directory(wit::DirectoryEntry {
            index: index.as_ref().map(|(name, f)| wit::IndexEntry {
                name: name.clone(),
                file: file(f),
            }),
            listing: listing.cloned(),
        }),
    }
}

/// Writes into `key` an encoding of exactly what [`to_wit`] and
/// [`entry_to_wit`] would give the policy, and nothing else: two requests
/// get equal keys if and only if the policy would be given equal inputs.
/// Every variable-length item is length-prefixed and every optional or
/// repeated one tagged, so the encoding is unambiguous.
#[allow(clippy::too_many_arguments)] // exactly the inputs of one call
pub fn write_key<B>(
    key: &mut Vec<u8>,
    req: &Request<B>,
    path: &NormalPath,
    hop: Option<&wit::Hop>,
    tls: bool,
    declared: &Fields,
    found: &Found,
    listing: Option<&wit::Listing>,
) {
    fn bytes(key: &mut Vec<u8>, b: &[u8]) {
        key.extend_from_slice(&(b.len() as u64).to_le_bytes());
        key.extend_from_slice(b);
    }
    fn meta(key: &mut Vec<u8>, m: &FileMeta) {
        key.extend_from_slice(&m.size.to_le_bytes());
        key.extend_from_slice(&m.mtime_ns.to_le_bytes());
        key.extend_from_slice(&m.inode.to_le_bytes());
        key.extend_from_slice(&m.device.to_le_bytes());
    }
    fn file(key: &mut Vec<u8>, f: &FoundFile) {
        meta(key, &f.file.meta);
        for (coding, sibling) in &f.siblings {
            key.extend_from_slice(&[b's', *coding as u8]);
            meta(key, &sibling.meta);
        }
        key.push(b'.');
    }

    key.clear();
    bytes(key, req.method().as_str().as_bytes());
    bytes(key, path.path.as_bytes());
    match hop {
        Some(hop) => {
            key.push(b'r');
            bytes(key, hop.original_path.as_bytes());
            key.push(hop.count);
            bytes(key, hop.reason.as_bytes());
        }
        None => key.push(b'-'),
    }
    match query(req, declared) {
        Some(q) => {
            key.push(b'q');
            bytes(key, q.as_bytes());
        }
        None => key.push(b'-'),
    }
    for (name, value) in fields(req, declared) {
        key.push(b'h');
        bytes(key, name.as_bytes());
        bytes(key, value.as_bytes());
    }
    key.push(b'.');
    key.extend_from_slice(&[u8::from(tls), version(req.version()) as u8]);
    match found {
        Found::Missing => key.push(b'm'),
        Found::File(f) => {
            key.push(b'f');
            file(key, f);
        }
        Found::Directory { index: None } => {
            key.push(b'd');
            match listing {
                Some(l) => {
                    key.push(b'l');
                    for e in &l.entries {
                        key.push(b'e');
                        bytes(key, e.name.as_bytes());
                        key.push(e.kind as u8);
                        key.extend_from_slice(&e.size.to_le_bytes());
                        key.extend_from_slice(&e.mtime_ns.to_le_bytes());
                    }
                    key.push(if l.truncated { b't' } else { b'.' });
                }
                None => key.push(b'-'),
            }
        }
        Found::Directory {
            index: Some((name, f)),
        } => {
            key.push(b'i');
            bytes(key, name.as_bytes());
            file(key, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coding::Coding;
    use crate::resolve::{normalize, OpenedFile};
    use http::HeaderName;
    use std::sync::Arc;

    fn req(uri: &str, headers: &[(&str, &[u8])]) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    fn declared(names: &[&'static str], query: bool) -> Fields {
        Fields::Declared {
            headers: names.iter().map(|n| HeaderName::from_static(n)).collect(),
            query,
        }
    }

    fn found(size: u64, gz: Option<u64>) -> Found {
        let opened = |size| OpenedFile {
            file: Arc::new(tempfile::tempfile().unwrap()),
            meta: FileMeta {
                size,
                mtime_ns: 7,
                inode: 3,
                device: 1,
            },
        };
        Found::File(FoundFile {
            file: opened(size),
            siblings: gz.map(|s| (Coding::Gzip, opened(s))).into_iter().collect(),
        })
    }

    fn key(r: &Request<()>, fields: &Fields, found: &Found) -> Vec<u8> {
        let path = normalize(r.uri().path()).unwrap();
        let mut k = Vec::new();
        write_key(&mut k, r, &path, None, false, fields, found, None);
        k
    }

    #[test]
    fn only_declared_fields_cross_and_name_the_key() {
        let fields = declared(&["range", "if-none-match"], false);
        let r = req(
            "/a.txt?x=1",
            &[
                ("user-agent", b"curl"),
                ("range", b"bytes=0-1"),
                ("x-bin", b"\xff"),
                ("if-none-match", b"\"a\""),
            ],
        );
        let path = normalize(r.uri().path()).unwrap();
        let w = to_wit(&r, &path, None, false, &fields);
        let names: Vec<_> = w.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["range", "if-none-match"]);
        assert_eq!(w.raw_query, None, "the query was not declared");
        let f = found(10, None);
        // Undeclared fields and the undeclared query do not change the key.
        let same = req(
            "/a.txt?y=2",
            &[("range", b"bytes=0-1"), ("if-none-match", b"\"a\"")],
        );
        assert_eq!(key(&r, &fields, &f), key(&same, &fields, &f));
        // Declared ones do, and so does their order.
        let other = req(
            "/a.txt",
            &[("range", b"bytes=0-2"), ("if-none-match", b"\"a\"")],
        );
        assert_ne!(key(&r, &fields, &f), key(&other, &fields, &f));
        let swapped = req(
            "/a.txt",
            &[("if-none-match", b"\"a\""), ("range", b"bytes=0-1")],
        );
        assert_ne!(key(&r, &fields, &f), key(&swapped, &fields, &f));
        // So does the query, once declared.
        let with_query = declared(&["range", "if-none-match"], true);
        assert_ne!(key(&r, &with_query, &f), key(&same, &with_query, &f));
        assert_eq!(
            to_wit(&r, &path, None, false, &with_query)
                .raw_query
                .as_deref(),
            Some("x=1")
        );
        // `Fields::All` (0.1.0) passes every UTF-8 field.
        assert_eq!(
            to_wit(&r, &path, None, false, &Fields::All).headers.len(),
            3
        );
    }

    #[test]
    fn the_hop_is_in_the_key() {
        let fields = declared(&[], false);
        let r = req("/index.html", &[]);
        let path = normalize("/index.html").unwrap();
        let f = found(10, None);
        let hop = |original: &str, count, reason: &str| wit::Hop {
            original_path: original.into(),
            count,
            reason: reason.into(),
        };
        let keys: Vec<Vec<u8>> = [
            None,
            Some(hop("/a", 1, "fallback")),
            Some(hop("/b", 1, "fallback")),
            Some(hop("/a", 2, "fallback")),
            Some(hop("/a", 1, "error-page 404")),
            Some(hop("/a", 1, "")),
        ]
        .iter()
        .map(|h| {
            let mut k = Vec::new();
            write_key(&mut k, &r, &path, h.as_ref(), false, &fields, &f, None);
            k
        })
        .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // And the hop reaches the policy.
        let h = hop("/a", 1, "fallback");
        let given = to_wit(&r, &path, Some(&h), false, &fields).hop.unwrap();
        assert_eq!(
            (
                given.original_path.as_str(),
                given.count,
                given.reason.as_str()
            ),
            ("/a", 1, "fallback")
        );
    }

    #[test]
    fn a_listing_is_in_the_key_entry_by_entry() {
        let fields = declared(&[], false);
        let r = req("/dir/", &[]);
        let path = normalize("/dir/").unwrap();
        let dir = Found::Directory { index: None };
        let entry = |name: &str, kind, size, mtime_ns| wit::ListingEntry {
            name: name.into(),
            kind,
            size,
            mtime_ns,
        };
        let listing =
            |entries: Vec<wit::ListingEntry>, truncated| wit::Listing { entries, truncated };
        use wit::EntryKind::*;
        let listings = [
            listing(vec![], false),
            listing(vec![], true),
            listing(vec![entry("a", File, 1, 1)], false),
            listing(vec![entry("b", File, 1, 1)], false),
            listing(vec![entry("a", Directory, 1, 1)], false),
            listing(vec![entry("a", File, 2, 1)], false),
            listing(vec![entry("a", File, 1, 2)], false),
            listing(vec![entry("a", File, 1, 1), entry("b", File, 1, 1)], false),
            // Names are length-prefixed: "ab" is not "a" then "b".
            listing(vec![entry("ab", File, 1, 1)], false),
        ];
        let mut keys: Vec<Vec<u8>> = listings
            .iter()
            .map(|l| {
                let mut k = Vec::new();
                write_key(&mut k, &r, &path, None, false, &fields, &dir, Some(l));
                k
            })
            .collect();
        let mut k = Vec::new();
        write_key(&mut k, &r, &path, None, false, &fields, &dir, None);
        keys.push(k);
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn the_entry_is_in_the_key() {
        let fields = declared(&[], false);
        let r = req("/a.txt", &[]);
        let keys = [
            key(&r, &fields, &found(10, None)),
            key(&r, &fields, &found(11, None)),
            key(&r, &fields, &found(10, Some(5))),
            key(&r, &fields, &found(10, Some(6))),
            key(&r, &fields, &Found::Missing),
            key(&r, &fields, &Found::Directory { index: None }),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let head = Request::builder()
            .method("HEAD")
            .uri("/a.txt")
            .body(())
            .unwrap();
        assert_ne!(
            key(&r, &fields, &found(10, None)),
            key(&head, &fields, &found(10, None))
        );
    }
}
