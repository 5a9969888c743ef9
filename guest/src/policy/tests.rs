//! End-to-end tests of `decide`: request + entry in, decision out, checked
//! against the rules of RFC 9110 and of the WIT contract.

use proptest::prelude::*;

use super::*;
use crate::config::Dotfiles;
use crate::types::{
    ByteRange, Compression, ContentCoding, FileMeta, HttpVersion, IndexEntry, Sibling, Source,
};

const MTIME_NS: i64 = 1_700_000_000_123_456_789;
const LAST_MODIFIED: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
const BEFORE: &str = "Tue, 14 Nov 2023 22:13:19 GMT";

/// A request under construction.
struct Req(Request);

fn get(path: &str) -> Req {
    method("GET", path)
}

fn method(method: &str, path: &str) -> Req {
    Req(Request {
        method: method.into(),
        path: path.into(),
        raw_query: None,
        headers: vec![],
        tls: false,
        version: HttpVersion::Http11,
        hop: None,
    })
}

impl Req {
    fn h(mut self, name: &str, value: &str) -> Req {
        self.0.headers.push(Header::new(name, value));
        self
    }

    fn query(mut self, q: &str) -> Req {
        self.0.raw_query = Some(q.into());
        self
    }
}

fn meta(size: u64) -> FileMeta {
    FileMeta {
        size,
        mtime_ns: MTIME_NS,
        inode: 42,
        device: 1,
    }
}

fn file_entry(size: u64, siblings: &[(ContentCoding, u64)]) -> FileEntry {
    FileEntry {
        meta: meta(size),
        siblings: siblings
            .iter()
            .enumerate()
            .map(|(i, &(coding, size))| Sibling {
                coding,
                meta: FileMeta {
                    size,
                    mtime_ns: MTIME_NS + 1_000_000_000,
                    inode: 100 + i as u64,
                    device: 1,
                },
            })
            .collect(),
    }
}

fn file(size: u64) -> Entry {
    Entry::File(file_entry(size, &[]))
}

fn file_with(size: u64, siblings: &[(ContentCoding, u64)]) -> Entry {
    Entry::File(file_entry(size, siblings))
}

fn dir(index: Option<(&str, u64)>) -> Entry {
    Entry::Directory(DirectoryEntry {
        index: index.map(|(name, size)| IndexEntry {
            name: name.into(),
            file: file_entry(size, &[]),
        }),
        listing: None,
    })
}

/// `decide`'s outcome, checked against the contract.
fn outcome_with(config: &Config, req: &Request, found: &Entry) -> Outcome {
    let outcome = decide(config, req, found);
    match &outcome {
        Outcome::Respond(d) => check_contract(config, req, found, d),
        Outcome::Rewrite(r) => check_rewrite(req, r),
    }
    outcome
}

/// The decision for `req`; panics on a rewrite (none without site rules).
fn run_with(config: &Config, req: Req, found: &Entry) -> Decision {
    match outcome_with(config, &req.0, found) {
        Outcome::Respond(d) => d,
        Outcome::Rewrite(r) => panic!("rewrite {r:?} for {:?}", req.0.path),
    }
}

/// WIT "Rewrites": a normalized path, a reason of at most 256 bytes, never
/// the path being decided or the client's, and never past the last hop.
fn check_rewrite(req: &Request, r: &crate::types::Rewrite) {
    assert!(r.reason.len() <= 256, "reason {:?}", r.reason);
    let rest = r.path.strip_prefix('/').expect("absolute");
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    assert!(
        rest.is_empty()
            || rest
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(['\\', '\0'])),
        "not normalized: {:?}",
        r.path
    );
    assert_ne!(r.path, req.path, "rewrite to itself");
    assert_ne!(
        r.path,
        crate::hop::original_path(req),
        "rewrite to the original"
    );
    assert!(req.hop.as_ref().map_or(0, |h| h.count) < crate::hop::MAX_HOPS);
}

fn run(req: Req, found: &Entry) -> Decision {
    run_with(&Config::default(), req, found)
}

fn body_text(d: &Decision) -> &str {
    match &d.body {
        Body::Inline(b) => std::str::from_utf8(b).unwrap(),
        other => panic!("not an inline body: {other:?}"),
    }
}

fn full(source: Source, compress: Option<Compression>) -> Body {
    Body::Full(FullBody { source, compress })
}

fn ranges(source: Source, list: &[(u64, u64)]) -> Body {
    Body::Ranges(RangedBody {
        source,
        ranges: list
            .iter()
            .map(|&(first, last)| ByteRange { first, last })
            .collect(),
    })
}

const IDENTITY: Body = Body::Full(FullBody {
    source: Source::Original,
    compress: None,
});

/// The rules the host enforces on every decision (WIT `decision`, within
/// `config.limits`), plus the HTTP rules that hold for every response of this
/// policy.
fn check_contract(config: &Config, req: &Request, found: &Entry, d: &Decision) {
    let limits = config.limits;
    assert!((200..=599).contains(&d.status), "status {}", d.status);
    assert!(d.headers.len() <= limits.max_headers as usize);
    let header_bytes: usize = d.headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    assert!(header_bytes <= limits.max_header_bytes as usize);
    for h in &d.headers {
        assert!(
            !h.name.is_empty() && h.name.bytes().all(crate::fields::is_tchar),
            "bad name {:?}",
            h.name
        );
        assert!(
            h.value
                .bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic()),
            "bad value {:?}: {:?}",
            h.name,
            h.value
        );
        let name = h.name.to_ascii_lowercase();
        for forbidden in [
            "content-length",
            "transfer-encoding",
            "connection",
            "keep-alive",
            "upgrade",
            "trailer",
            "te",
            "proxy-connection",
            "content-encoding",
        ] {
            assert_ne!(name, forbidden, "policy must not send {forbidden}");
        }
        if name == "content-range" {
            assert_eq!(d.status, 416);
            assert_eq!(d.body, Body::Empty);
            let size: u64 = h
                .value
                .strip_prefix("bytes */")
                .expect("bytes */SIZE")
                .parse()
                .unwrap();
            // The file served: the entry's, or its directory's index.
            let f = match found {
                Entry::File(f) => f,
                Entry::Directory(DirectoryEntry {
                    index: Some(index), ..
                }) => &index.file,
                _ => panic!("416 without a file"),
            };
            assert!(size == f.meta.size || f.siblings.iter().any(|s| s.meta.size == size));
        }
    }
    let count = |n: &str| {
        d.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(n))
            .count()
    };
    for singleton in [
        "content-type",
        "etag",
        "last-modified",
        "cache-control",
        "vary",
        "accept-ranges",
        "location",
    ] {
        assert!(count(singleton) <= 1, "{singleton} twice");
    }
    match &d.body {
        Body::Inline(b) => assert!(b.len() <= limits.max_inline as usize),
        // An error page (`error-pages`, a 404 redirect rule): the page's
        // stored bytes as they are, with no validators of its own.
        Body::Full(FullBody { source, compress }) if d.status != 200 => {
            assert!(
                (400..=599).contains(&d.status),
                "full body with {}",
                d.status
            );
            assert_eq!((*source, *compress), (Source::Original, None));
            assert!(d.header("etag").is_none() && d.header("last-modified").is_none());
            check_source(found, *source);
        }
        Body::Full(FullBody { source, compress }) => {
            if compress.is_some() {
                assert_eq!(*source, Source::Original, "compressing a sibling");
            }
            check_source(found, *source);
        }
        Body::Ranges(RangedBody { source, ranges }) => {
            assert_eq!(d.status, 206);
            assert_eq!(req.method, "GET");
            assert!(!ranges.is_empty() && ranges.len() <= limits.max_ranges as usize);
            let size = source_size(found, *source);
            for r in ranges {
                assert!(r.first <= r.last && r.last < size);
            }
            for w in ranges.windows(2) {
                assert!(w[0].last.checked_add(1).unwrap() < w[1].first);
            }
        }
        // Other statuses carry a short text, unless the host allows less
        // inline body than the texts need (all are under 64 bytes).
        Body::Empty => assert!(
            [204, 304, 416].contains(&d.status) || limits.max_inline < 64,
            "empty {}",
            d.status
        ),
    }
    // A file's 200 and 206 carry its validators; a listing (inline) has
    // none to give.
    if matches!(d.status, 200 | 206) {
        assert!(d.header("content-type").is_some());
        assert!(matches!(d.body, Body::Inline(_)) || d.header("etag").is_some());
    }
}

fn entry_file(found: &Entry) -> &FileEntry {
    match found {
        Entry::File(f) => f,
        Entry::Directory(DirectoryEntry { index: Some(i), .. }) => &i.file,
        _ => panic!("no file for a file body"),
    }
}

fn check_source(found: &Entry, source: Source) {
    let _ = source_size(found, source);
}

fn source_size(found: &Entry, source: Source) -> u64 {
    let f = entry_file(found);
    match source {
        Source::Original => f.meta.size,
        Source::Sibling(c) => {
            f.siblings
                .iter()
                .find(|s| s.coding == c)
                .expect("unreported sibling")
                .meta
                .size
        }
    }
}

// ---------------------------------------------------------------- methods

#[test]
fn get_serves_a_file_with_validators() {
    let d = run(get("/a.txt"), &file(10));
    assert_eq!(d.status, 200);
    assert_eq!(d.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(d.header("last-modified"), Some(LAST_MODIFIED));
    assert_eq!(d.header("etag"), Some("\"2a-17979cfe3d85cd15-a\""));
    assert_eq!(d.header("accept-ranges"), Some("bytes"));
    assert_eq!(d.header("cache-control"), Some("max-age=3600"));
    assert_eq!(d.body, IDENTITY);
}

#[test]
fn head_is_get() {
    for found in [
        file(10),
        file(5000),
        file_with(5000, &[(ContentCoding::Br, 900)]),
        dir(Some(("index.html", 3))),
    ] {
        for headers in [
            vec![],
            vec![("accept-encoding", "br, gzip")],
            vec![("if-none-match", "\"nope\"")],
        ] {
            let path = if matches!(found, Entry::Directory(_)) {
                "/d/"
            } else {
                "/app.js"
            };
            let mut g = get(path);
            let mut h = method("HEAD", path);
            for (n, v) in &headers {
                g = g.h(n, v);
                h = h.h(n, v);
            }
            assert_eq!(run(g, &found), run(h, &found));
        }
    }
}

#[test]
fn other_methods_are_405_with_allow() {
    for m in [
        "POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "get", "Head", "PROPFIND",
    ] {
        for found in [file(1), Entry::Missing] {
            let d = run(method(m, "/a.txt"), &found);
            assert_eq!(d.status, 405, "{m}");
            assert_eq!(d.header("allow"), Some("GET, HEAD, OPTIONS"));
            assert_eq!(d.header("content-type"), Some("text/plain; charset=utf-8"));
            assert_eq!(body_text(&d), "Method Not Allowed\n");
        }
    }
}

#[test]
fn options_is_204_with_allow_for_any_path() {
    for (path, found) in [
        ("*", Entry::Missing),
        ("/a.txt", file(1)),
        ("/nothing", Entry::Missing),
        ("/.git", file(1)),
    ] {
        let d = run(method("OPTIONS", path), &found);
        assert_eq!(d.status, 204);
        assert_eq!(d.header("allow"), Some(ALLOW));
        assert_eq!(d.body, Body::Empty);
    }
}

#[test]
fn options_ignores_preconditions() {
    let d = run(
        method("OPTIONS", "/a.txt").h("if-match", "\"nope\""),
        &file(1),
    );
    assert_eq!(d.status, 204);
}

// ---------------------------------------------------------------- paths

#[test]
fn missing_is_404() {
    let d = run(get("/x"), &Entry::Missing);
    assert_eq!(d.status, 404);
    assert_eq!(body_text(&d), "Not Found\n");
    assert_eq!(d.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(d.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn preconditions_do_not_apply_to_404() {
    let d = run(get("/x").h("if-match", "*"), &Entry::Missing);
    assert_eq!(d.status, 404);
}

#[test]
fn dotfiles_are_404_even_when_present() {
    for path in ["/.env", "/.git/config", "/a/.htpasswd"] {
        assert_eq!(run(get(path), &file(10)).status, 404, "{path}");
    }
    assert_eq!(run(get("/.well-known/security.txt"), &file(10)).status, 200);
    let allow = Config {
        dotfiles: Dotfiles::Allow,
        ..Config::default()
    };
    assert_eq!(run_with(&allow, get("/.env"), &file(10)).status, 200);
}

#[test]
fn hidden_directories_are_not_redirected() {
    assert_eq!(run(get("/.git"), &dir(Some(("index.html", 1)))).status, 404);
}

#[test]
fn directory_with_slash_serves_its_index() {
    let d = run(get("/docs/"), &dir(Some(("index.html", 300))));
    assert_eq!(d.status, 200);
    assert_eq!(d.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(d.header("cache-control"), Some("no-cache"));
    assert_eq!(d.body, IDENTITY);
}

#[test]
fn index_type_comes_from_the_index_name() {
    let d = run(get("/"), &dir(Some(("index.txt", 3))));
    assert_eq!(d.header("content-type"), Some("text/plain; charset=utf-8"));
}

#[test]
fn directory_without_slash_redirects() {
    let d = run(get("/docs"), &dir(Some(("index.html", 300))));
    assert_eq!(d.status, 301);
    assert_eq!(d.header("location"), Some("/docs/"));
    assert_eq!(d.header("cache-control"), Some("max-age=3600"));
    assert_eq!(body_text(&d), "Moved Permanently\n");
    let head = run(method("HEAD", "/docs"), &dir(Some(("index.html", 300))));
    assert_eq!(head.status, 301);
}

#[test]
fn redirect_keeps_the_query_and_encodes_the_path() {
    let d = run(
        get("/my docs/ünï").query("a=1&b=%20"),
        &dir(Some(("index.html", 1))),
    );
    assert_eq!(
        d.header("location"),
        Some("/my%20docs/%C3%BCn%C3%AF/?a=1&b=%20")
    );
}

#[test]
fn redirect_ignores_preconditions() {
    let d = run(
        get("/docs").h("if-none-match", "*"),
        &dir(Some(("index.html", 1))),
    );
    assert_eq!(d.status, 301);
}

#[test]
fn directory_without_index_is_404_with_or_without_slash() {
    assert_eq!(run(get("/docs/"), &dir(None)).status, 404);
    assert_eq!(run(get("/docs"), &dir(None)).status, 404);
}

#[test]
fn file_with_trailing_slash_is_404() {
    assert_eq!(run(get("/a.txt/"), &file(3)).status, 404);
}

// ---------------------------------------------------------------- metadata

#[test]
fn content_types_and_cache_classes() {
    let cases = [
        ("/index.html", "text/html; charset=utf-8", "no-cache"),
        (
            "/app.3f2a9c1b.js",
            "text/javascript; charset=utf-8",
            "max-age=31536000, immutable",
        ),
        (
            "/main-5d41402abc4b2a76.css",
            "text/css; charset=utf-8",
            "max-age=31536000, immutable",
        ),
        ("/logo.png", "image/png", "max-age=3600"),
        ("/data.json", "application/json", "max-age=3600"),
        ("/README", "application/octet-stream", "max-age=3600"),
    ];
    for (path, ctype, cache) in cases {
        let d = run(get(path), &file(10));
        assert_eq!(d.header("content-type"), Some(ctype), "{path}");
        assert_eq!(d.header("cache-control"), Some(cache), "{path}");
    }
}

#[test]
fn empty_cache_setting_sends_no_cache_control() {
    let config = Config {
        cache_default: String::new(),
        ..Config::default()
    };
    assert_eq!(
        run_with(&config, get("/a.png"), &file(10)).header("cache-control"),
        None
    );
}

#[test]
fn type_overrides_and_charset_setting() {
    let config = Config {
        types: vec![("ts".into(), "text/plain".into())],
        charset: String::new(),
        ..Config::default()
    };
    assert_eq!(
        run_with(&config, get("/a.ts"), &file(10)).header("content-type"),
        Some("text/plain")
    );
}

#[test]
fn pre_1970_files_get_a_valid_last_modified() {
    let entry = Entry::File(FileEntry {
        meta: FileMeta {
            mtime_ns: -1,
            ..meta(5)
        },
        siblings: vec![],
    });
    let d = run(get("/old.txt"), &entry);
    assert_eq!(
        d.header("last-modified"),
        Some("Wed, 31 Dec 1969 23:59:59 GMT")
    );
}

/// `chunk-size` and `zero-copy` go to the host once, in `capabilities`
/// (WIT 0.2.0); decisions do not depend on them.
#[test]
fn chunk_size_and_zero_copy_are_capabilities_not_decisions() {
    let config = Config {
        chunk_size: 4096,
        zero_copy: false,
        ..Config::default()
    };
    let caps = config.capabilities();
    assert_eq!((caps.chunk_size, caps.zero_copy), (4096, false));
    for (m, path, found) in [
        ("GET", "/a.txt", file(5)),
        ("GET", "/x", Entry::Missing),
        ("POST", "/", Entry::Missing),
    ] {
        assert_eq!(
            run_with(&config, method(m, path), &found),
            run(method(m, path), &found)
        );
    }
}

// ---------------------------------------------------------------- encodings

#[test]
fn precompressed_sibling_is_preferred() {
    let found = file_with(
        5000,
        &[(ContentCoding::Br, 900), (ContentCoding::Gzip, 1200)],
    );
    let d = run(
        get("/app.js").h("accept-encoding", "gzip, deflate, br"),
        &found,
    );
    assert_eq!(d.status, 200);
    assert_eq!(d.body, full(Source::Sibling(ContentCoding::Br), None));
    assert_eq!(
        d.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(d.header("vary"), Some("Accept-Encoding"));
    assert_eq!(d.header("accept-ranges"), Some("bytes"));
    assert_eq!(d.header("etag"), Some("\"64-17979cfe79209715-384-br\""));
    // The sibling's own modification time.
    assert_eq!(
        d.header("last-modified"),
        Some("Tue, 14 Nov 2023 22:13:21 GMT")
    );
}

#[test]
fn gzip_sibling_for_gzip_only_clients() {
    let found = file_with(
        5000,
        &[(ContentCoding::Br, 900), (ContentCoding::Gzip, 1200)],
    );
    let d = run(get("/app.js").h("accept-encoding", "gzip"), &found);
    assert_eq!(d.body, full(Source::Sibling(ContentCoding::Gzip), None));
}

#[test]
fn siblings_apply_to_any_type_but_otf_only_to_compressible_ones() {
    let d = run(
        get("/data.bin").h("accept-encoding", "gzip"),
        &file_with(5000, &[(ContentCoding::Gzip, 10)]),
    );
    assert_eq!(d.body, full(Source::Sibling(ContentCoding::Gzip), None));
    let d = run(get("/data.bin").h("accept-encoding", "gzip"), &file(5000));
    assert_eq!(d.body, IDENTITY);
    assert_eq!(d.header("vary"), None);
}

#[test]
fn on_the_fly_compression() {
    let d = run(get("/app.js").h("accept-encoding", "gzip"), &file(5000));
    assert_eq!(d.status, 200);
    assert_eq!(
        d.body,
        full(
            Source::Original,
            Some(Compression {
                coding: ContentCoding::Gzip,
                level: 6
            })
        )
    );
    assert_eq!(
        d.header("etag"),
        Some("W/\"2a-17979cfe3d85cd15-1388-gzip\"")
    );
    assert_eq!(d.header("vary"), Some("Accept-Encoding"));
    assert_eq!(d.header("accept-ranges"), None);
    assert_eq!(d.header("last-modified"), Some(LAST_MODIFIED));
    let d = run(
        get("/app.js").h("accept-encoding", "gzip, deflate, br, zstd"),
        &file(5000),
    );
    assert_eq!(
        d.body,
        full(
            Source::Original,
            Some(Compression {
                coding: ContentCoding::Br,
                level: 4
            })
        )
    );
}

#[test]
fn no_on_the_fly_compression_outside_the_bounds() {
    for (path, size) in [
        ("/small.js", 1023),
        ("/huge.js", 17 << 20),
        ("/photo.png", 5000),
        ("/a.js.gz", 5000),
    ] {
        let d = run(get(path).h("accept-encoding", "gzip"), &file(size));
        assert_eq!(d.body, IDENTITY, "{path}");
        assert_eq!(d.header("vary"), None, "{path}");
    }
    let config = Config {
        compress: vec![],
        ..Config::default()
    };
    let d = run_with(
        &config,
        get("/app.js").h("accept-encoding", "gzip"),
        &file(5000),
    );
    assert_eq!(d.body, IDENTITY);
}

#[test]
fn no_accept_encoding_means_identity_but_still_vary() {
    let d = run(
        get("/app.js"),
        &file_with(5000, &[(ContentCoding::Br, 900)]),
    );
    assert_eq!(d.body, IDENTITY);
    assert_eq!(d.header("vary"), Some("Accept-Encoding"));
    assert_eq!(d.header("etag"), Some("\"2a-17979cfe3d85cd15-1388\""));
}

#[test]
fn refused_identity_still_gets_identity_when_nothing_else_fits() {
    let d = run(
        get("/photo.png").h("accept-encoding", "identity;q=0"),
        &file(5000),
    );
    assert_eq!(d.status, 200);
    assert_eq!(d.body, IDENTITY);
    let d = run(
        get("/app.js").h("accept-encoding", "br;q=0, *;q=0"),
        &file(5000),
    );
    assert_eq!(d.body, IDENTITY);
}

#[test]
fn accept_encoding_lines_are_combined() {
    let d = run(
        get("/app.js")
            .h("accept-encoding", "br;q=0")
            .h("accept-encoding", "gzip"),
        &file(5000),
    );
    assert_eq!(
        d.body,
        full(
            Source::Original,
            Some(Compression {
                coding: ContentCoding::Gzip,
                level: 6
            })
        )
    );
}

// ---------------------------------------------------------------- conditionals

fn etag_of(d: &Decision) -> String {
    d.header("etag").unwrap().to_owned()
}

#[test]
fn if_none_match_gives_304_with_the_cache_headers() {
    let found = file_with(5000, &[(ContentCoding::Br, 900)]);
    let first = run(get("/app.js").h("accept-encoding", "br"), &found);
    let tag = etag_of(&first);
    let d = run(
        get("/app.js")
            .h("accept-encoding", "br")
            .h("if-none-match", &tag),
        &found,
    );
    assert_eq!(d.status, 304);
    assert_eq!(d.body, Body::Empty);
    assert_eq!(d.header("etag"), Some(tag.as_str()));
    assert_eq!(d.header("vary"), Some("Accept-Encoding"));
    assert_eq!(d.header("cache-control"), Some("max-age=3600"));
    assert!(d.header("last-modified").is_some());
    assert_eq!(d.header("content-type"), None);
    assert_eq!(d.header("accept-ranges"), None);
}

#[test]
fn validators_are_per_representation() {
    let found = file_with(5000, &[(ContentCoding::Br, 900)]);
    let br_tag = etag_of(&run(get("/app.js").h("accept-encoding", "br"), &found));
    // A client now sending no Accept-Encoding holds the wrong representation.
    let d = run(get("/app.js").h("if-none-match", &br_tag), &found);
    assert_eq!(d.status, 200);
    assert_eq!(d.body, IDENTITY);
}

#[test]
fn weak_on_the_fly_tags_revalidate() {
    let first = run(get("/app.js").h("accept-encoding", "gzip"), &file(5000));
    let tag = etag_of(&first);
    assert!(tag.starts_with("W/"));
    let d = run(
        get("/app.js")
            .h("accept-encoding", "gzip")
            .h("if-none-match", &tag),
        &file(5000),
    );
    assert_eq!(d.status, 304);
    // But If-Match uses strong comparison.
    let d = run(
        get("/app.js")
            .h("accept-encoding", "gzip")
            .h("if-match", &tag),
        &file(5000),
    );
    assert_eq!(d.status, 412);
}

#[test]
fn if_modified_since() {
    assert_eq!(
        run(
            get("/a.txt").h("if-modified-since", LAST_MODIFIED),
            &file(5)
        )
        .status,
        304
    );
    assert_eq!(
        run(get("/a.txt").h("if-modified-since", BEFORE), &file(5)).status,
        200
    );
    assert_eq!(
        run(get("/a.txt").h("if-modified-since", "bogus"), &file(5)).status,
        200
    );
    assert_eq!(
        run(
            method("HEAD", "/a.txt").h("if-modified-since", LAST_MODIFIED),
            &file(5)
        )
        .status,
        304
    );
}

#[test]
fn if_none_match_takes_precedence_over_if_modified_since() {
    let d = run(
        get("/a.txt")
            .h("if-none-match", "\"other\"")
            .h("if-modified-since", LAST_MODIFIED),
        &file(5),
    );
    assert_eq!(d.status, 200);
}

#[test]
fn if_match_and_if_unmodified_since_give_412() {
    let d = run(get("/a.txt").h("if-match", "\"other\""), &file(5));
    assert_eq!(d.status, 412);
    assert_eq!(body_text(&d), "Precondition Failed\n");
    assert_eq!(run(get("/a.txt").h("if-match", "*"), &file(5)).status, 200);
    assert_eq!(
        run(get("/a.txt").h("if-unmodified-since", BEFORE), &file(5)).status,
        412
    );
    assert_eq!(
        run(
            get("/a.txt").h("if-unmodified-since", LAST_MODIFIED),
            &file(5)
        )
        .status,
        200
    );
    let tag = etag_of(&run(get("/a.txt"), &file(5)));
    assert_eq!(run(get("/a.txt").h("if-match", &tag), &file(5)).status, 200);
}

#[test]
fn precondition_failure_keeps_vary_when_the_resource_varies() {
    let d = run(get("/app.js").h("if-match", "\"other\""), &file(5000));
    assert_eq!(d.status, 412);
    assert_eq!(d.header("vary"), Some("Accept-Encoding"));
}

#[test]
fn not_modified_beats_an_unsatisfiable_range() {
    let tag = etag_of(&run(get("/a.txt"), &file(5)));
    let d = run(
        get("/a.txt")
            .h("if-none-match", &tag)
            .h("range", "bytes=100-"),
        &file(5),
    );
    assert_eq!(d.status, 304);
}

// ---------------------------------------------------------------- ranges

#[test]
fn single_range() {
    let d = run(get("/a.bin").h("range", "bytes=0-499"), &file(10_000));
    assert_eq!(d.status, 206);
    assert_eq!(d.body, ranges(Source::Original, &[(0, 499)]));
    assert_eq!(d.header("content-type"), Some("application/octet-stream"));
    assert_eq!(d.header("accept-ranges"), Some("bytes"));
    assert!(d.header("etag").is_some() && d.header("last-modified").is_some());
    assert_eq!(d.header("content-range"), None);
}

#[test]
fn open_ended_and_suffix_ranges() {
    assert_eq!(
        run(get("/a.bin").h("range", "bytes=9000-"), &file(10_000)).body,
        ranges(Source::Original, &[(9000, 9999)])
    );
    assert_eq!(
        run(get("/a.bin").h("range", "bytes=-500"), &file(10_000)).body,
        ranges(Source::Original, &[(9500, 9999)])
    );
}

#[test]
fn multiple_ranges_coalesced() {
    let d = run(
        get("/a.bin").h("range", "bytes=500-599, 0-99, 90-199, 200-299"),
        &file(10_000),
    );
    assert_eq!(d.status, 206);
    assert_eq!(d.body, ranges(Source::Original, &[(0, 299), (500, 599)]));
}

#[test]
fn unsatisfiable_range_is_416_with_the_representation_size() {
    let d = run(get("/a.bin").h("range", "bytes=10000-"), &file(10_000));
    assert_eq!(d.status, 416);
    assert_eq!(d.header("content-range"), Some("bytes */10000"));
    assert_eq!(d.body, Body::Empty);
    assert_eq!(d.header("content-type"), None);
    let d = run(get("/a.bin").h("range", "bytes=-0"), &file(10_000));
    assert_eq!(d.status, 416);
    let d = run(get("/empty.bin").h("range", "bytes=0-"), &file(0));
    assert_eq!(d.header("content-range"), Some("bytes */0"));
}

#[test]
fn unsatisfiable_range_of_a_sibling_reports_the_sibling_size() {
    let found = file_with(10_000, &[(ContentCoding::Gzip, 2000)]);
    let d = run(
        get("/app.js")
            .h("accept-encoding", "gzip")
            .h("range", "bytes=5000-"),
        &found,
    );
    assert_eq!(d.status, 416);
    assert_eq!(d.header("content-range"), Some("bytes */2000"));
    assert_eq!(d.header("vary"), Some("Accept-Encoding"));
}

#[test]
fn ignored_ranges_give_200() {
    for value in [
        "bytes=5-1",
        "bytes=abc",
        "items=0-1",
        "bytes=0-,0-",
        "",
        "bytes = 0-1",
    ] {
        let d = run(get("/a.bin").h("range", value), &file(10_000));
        assert_eq!(d.status, 200, "{value:?}");
        assert_eq!(d.body, IDENTITY, "{value:?}");
    }
}

#[test]
fn too_many_ranges_give_200() {
    let value = format!(
        "bytes={}",
        (0..17)
            .map(|i| format!("{}-{}", i * 10, i * 10))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(
        run(get("/a.bin").h("range", &value), &file(10_000)).status,
        200
    );
    let config = Config {
        max_ranges: 17,
        ..Config::default()
    };
    assert_eq!(
        run_with(&config, get("/a.bin").h("range", &value), &file(10_000)).status,
        206
    );
}

#[test]
fn max_ranges_zero_disables_ranges() {
    let config = Config {
        max_ranges: 0,
        ..Config::default()
    };
    let d = run_with(
        &config,
        get("/a.bin").h("range", "bytes=0-1"),
        &file(10_000),
    );
    assert_eq!(d.status, 200);
    assert_eq!(d.header("accept-ranges"), Some("none"));
}

#[test]
fn two_range_fields_are_ignored() {
    let d = run(
        get("/a.bin")
            .h("range", "bytes=0-1")
            .h("range", "bytes=2-3"),
        &file(10_000),
    );
    assert_eq!(d.status, 200);
}

#[test]
fn head_ignores_range() {
    let d = run(
        method("HEAD", "/a.bin").h("range", "bytes=0-1"),
        &file(10_000),
    );
    assert_eq!(d.status, 200);
    assert_eq!(d.body, IDENTITY);
    assert_eq!(d.header("accept-ranges"), Some("bytes"));
}

#[test]
fn ranges_of_a_precompressed_sibling() {
    let found = file_with(10_000, &[(ContentCoding::Br, 3000)]);
    let d = run(
        get("/app.js")
            .h("accept-encoding", "br")
            .h("range", "bytes=0-99,-100"),
        &found,
    );
    assert_eq!(d.status, 206);
    assert_eq!(
        d.body,
        ranges(Source::Sibling(ContentCoding::Br), &[(0, 99), (2900, 2999)])
    );
    assert!(d.header("etag").unwrap().ends_with("-br\""));
    assert_eq!(d.header("vary"), Some("Accept-Encoding"));
}

#[test]
fn ranged_requests_get_identity_instead_of_on_the_fly_output() {
    let d = run(
        get("/app.js")
            .h("accept-encoding", "gzip")
            .h("range", "bytes=0-99"),
        &file(10_000),
    );
    assert_eq!(d.status, 206);
    assert_eq!(d.body, ranges(Source::Original, &[(0, 99)]));
    assert_eq!(d.header("etag"), Some("\"2a-17979cfe3d85cd15-2710\""));
    assert_eq!(d.header("vary"), Some("Accept-Encoding"));
    // Ignored because excessive, but the representation stays the rangeable one.
    let d = run(
        get("/app.js")
            .h("accept-encoding", "gzip")
            .h("range", "bytes=0-,0-"),
        &file(10_000),
    );
    assert_eq!((d.status, d.body), (200, IDENTITY));
    // A malformed Range is as if absent: compression is back.
    let d = run(
        get("/app.js")
            .h("accept-encoding", "gzip")
            .h("range", "bytes=x"),
        &file(10_000),
    );
    assert!(matches!(
        d.body,
        Body::Full(FullBody {
            compress: Some(_),
            ..
        })
    ));
}

#[test]
fn if_range_with_the_current_strong_tag_allows_the_range() {
    let tag = etag_of(&run(get("/a.bin"), &file(10_000)));
    let d = run(
        get("/a.bin").h("range", "bytes=0-9").h("if-range", &tag),
        &file(10_000),
    );
    assert_eq!(d.status, 206);
}

#[test]
fn if_range_mismatch_sends_everything() {
    for value in [
        "\"stale\"",
        "W/\"2a-17979cfe3d85cd15-2710\"",
        BEFORE,
        "nonsense",
    ] {
        let d = run(
            get("/a.bin").h("range", "bytes=0-9").h("if-range", value),
            &file(10_000),
        );
        assert_eq!((d.status, &d.body), (200, &IDENTITY), "{value}");
    }
}

#[test]
fn if_range_with_the_exact_last_modified_allows_the_range() {
    let d = run(
        get("/a.bin")
            .h("range", "bytes=0-9")
            .h("if-range", LAST_MODIFIED),
        &file(10_000),
    );
    assert_eq!(d.status, 206);
}

#[test]
fn if_range_mismatch_with_unsatisfiable_range_sends_everything() {
    let d = run(
        get("/a.bin")
            .h("range", "bytes=50000-")
            .h("if-range", "\"stale\""),
        &file(10_000),
    );
    assert_eq!(d.status, 200);
}

#[test]
fn if_range_without_range_is_ignored() {
    let d = run(get("/a.bin").h("if-range", "\"stale\""), &file(10_000));
    assert_eq!((d.status, d.body), (200, IDENTITY));
}

#[test]
fn huge_files_do_not_overflow() {
    let d = run(get("/big.bin").h("range", "bytes=-1, 0-0"), &file(u64::MAX));
    assert_eq!(
        d.body,
        ranges(Source::Original, &[(0, 0), (u64::MAX - 1, u64::MAX - 1)])
    );
    let d = run(
        get("/big.bin").h("range", "bytes=18446744073709551615-"),
        &file(u64::MAX),
    );
    assert_eq!(
        d.header("content-range"),
        Some("bytes */18446744073709551615")
    );
}

// ---------------------------------------------------------------- properties

fn arb_header() -> impl Strategy<Value = (String, String)> {
    let names = prop::sample::select(vec![
        "range",
        "if-range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "accept-encoding",
        "x-other",
    ]);
    let values = prop_oneof![
        any::<String>(),
        "bytes=[0-9]{0,4}-[0-9]{0,4}(,[0-9]{0,3}-[0-9]{0,3}){0,3}",
        "(W/)?\"[a-z0-9-]{0,30}\"",
        Just(LAST_MODIFIED.to_owned()),
        Just(BEFORE.to_owned()),
        Just("*".to_owned()),
        "(gzip|br|zstd|identity|\\*)(;q=[01](\\.[0-9]{0,3})?)?(, ?(gzip|br|zstd|identity|\\*)(;q=0\\.[0-9]))*",
    ];
    (names, values).prop_map(|(n, v)| (n.to_owned(), v))
}

fn arb_meta() -> impl Strategy<Value = FileMeta> {
    (
        prop_oneof![0u64..5000, any::<u64>()],
        any::<i64>(),
        any::<u64>(),
    )
        .prop_map(|(size, mtime_ns, inode)| FileMeta {
            size,
            mtime_ns,
            inode,
            device: 1,
        })
}

fn arb_file() -> impl Strategy<Value = FileEntry> {
    let coding = prop::sample::select(vec![
        ContentCoding::Gzip,
        ContentCoding::Br,
        ContentCoding::Zstd,
    ]);
    (
        arb_meta(),
        prop::collection::vec((coding, arb_meta()), 0..3),
    )
        .prop_map(|(meta, siblings)| FileEntry {
            meta,
            siblings: siblings
                .into_iter()
                .map(|(coding, meta)| Sibling { coding, meta })
                .collect(),
        })
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        Just(Entry::Missing),
        arb_file().prop_map(Entry::File),
        prop::option::of(arb_file()).prop_map(|f| Entry::Directory(DirectoryEntry {
            index: f.map(|file| IndexEntry {
                name: "index.html".into(),
                file
            }),
            listing: None,
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_decision_keeps_the_contract(
        m in prop::sample::select(vec!["GET", "HEAD", "OPTIONS", "POST"]),
        path in prop_oneof!["/[a-z.]{0,8}(/[a-zA-Z0-9 .%?#é-]{0,10}){0,3}/?", any::<String>().prop_map(|s| format!("/{s}"))],
        query in prop::option::of(any::<String>()),
        headers in prop::collection::vec(arb_header(), 0..6),
        found in arb_entry(),
    ) {
        let mut req = method(m, &path);
        for (n, v) in &headers {
            req = req.h(n, v);
        }
        if let Some(q) = query {
            req = req.query(&q);
        }
        let has_range = headers.iter().any(|(n, _)| n == "range");
        let head = Req(Request { method: "HEAD".into(), ..req.0.clone() });
        let d = run(req, &found);
        let h = run(head, &found);
        prop_assert!(!matches!(h.body, Body::Ranges(_)), "HEAD got ranges");
        if m == "GET" && !has_range {
            // HEAD answers what GET would (Range aside, which HEAD ignores).
            prop_assert_eq!(d, h);
        }
    }
}

/// Request fields the policy must not depend on: what a browser sends
/// besides the declared ones.
const UNDECLARED: &[&str] = &[
    "host",
    "user-agent",
    "accept",
    "accept-language",
    "cookie",
    "referer",
    "cache-control",
    "content-type",
    "x-other",
];

/// A request field with a value that means something for it, or an
/// undeclared field with any value.
fn arb_any_header() -> impl Strategy<Value = (String, String)> {
    let date = prop_oneof![
        Just(LAST_MODIFIED.to_owned()),
        Just(BEFORE.to_owned()),
        "(Mon|Tue|Sun), [0-2][0-9] (Jan|Nov) (19[0-9]{2}|20[0-4][0-9]) 0[0-9]:[0-5][0-9]:[0-5][0-9] GMT",
    ];
    let tags = prop_oneof![
        Just("*".to_owned()),
        "(W/)?\"[0-9a-f-]{0,12}\"(, (W/)?\"[0-9a-f-]{0,12}\")?",
    ];
    prop_oneof![
        "bytes=[0-9]{0,4}-[0-9]{0,4}(,[0-9]{0,3}-[0-9]{0,3}){0,3}"
            .prop_map(|v| ("range".to_owned(), v)),
        prop_oneof![tags.clone(), date.clone()].prop_map(|v| ("if-range".to_owned(), v)),
        tags.clone().prop_map(|v| ("if-match".to_owned(), v)),
        tags.prop_map(|v| ("if-none-match".to_owned(), v)),
        date.clone().prop_map(|v| ("if-modified-since".to_owned(), v)),
        date.prop_map(|v| ("if-unmodified-since".to_owned(), v)),
        "(gzip|br|zstd|identity|\\*)(;q=[01](\\.[0-9]{0,3})?)?(, ?(gzip|br|zstd|identity|\\*)(;q=0\\.[0-9]))*"
            .prop_map(|v| ("accept-encoding".to_owned(), v)),
        arb_header(),
        (prop::sample::select(UNDECLARED), any::<String>()).prop_map(|(n, v)| (n.to_owned(), v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// `capabilities.request-headers` names every field the policy reads:
    /// given only the declared fields, as the host will give them, every
    /// decision is the one it makes seeing all of them.
    #[test]
    fn only_declared_fields_matter(
        m in prop::sample::select(vec!["GET", "GET", "GET", "HEAD", "OPTIONS", "POST"]),
        path in "(/[a-z0-9]{1,6}){1,2}(\\.(txt|js|html|png))?/?",
        query in prop::option::of("[a-z=&%0-9]{0,10}"),
        headers in prop::collection::vec(arb_any_header(), 0..10),
        found in arb_entry(),
    ) {
        let declared = Config::default().capabilities().request_headers;
        let mut all = method(m, &path);
        let mut only_declared = method(m, &path);
        for (n, v) in &headers {
            all = all.h(n, v);
            if declared.contains(n) {
                only_declared = only_declared.h(n, v);
            }
        }
        if let Some(q) = query {
            all = all.query(&q);
            only_declared = only_declared.query(&q);
        }
        prop_assert_eq!(run(all, &found), run(only_declared, &found));
    }
}

/// The inline bodies the policy makes respect `host-limits.max-inline`: with
/// no room, the status and headers go out with an empty body.
#[test]
fn inline_bodies_fit_the_host_limit() {
    let config = Config::defaults(crate::types::HostLimits {
        max_inline: 0,
        ..crate::config::DEFAULT_HOST_LIMITS
    });
    for (req, found, status) in [
        (method("POST", "/"), Entry::Missing, 405),
        (get("/x"), Entry::Missing, 404),
        (get("/dir"), dir(Some(("index.html", 5))), 301),
        (get("/a.txt").h("if-match", "\"nope\""), file(5), 412),
    ] {
        let d = run_with(&config, req, &found);
        assert_eq!((d.status, d.body), (status, Body::Empty));
    }
    assert_eq!(body_text(&run(get("/x"), &Entry::Missing)), "Not Found\n");
}

mod site;
