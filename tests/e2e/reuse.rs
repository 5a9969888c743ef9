//! Reusable decisions (WIT 0.2 `capabilities.reusable`) change nothing a
//! client can see: a server answering from its decision cache and one that
//! calls the policy every time give identical responses, apart from `Date`
//! (and the random multipart boundary), to random request mixes over files
//! that change between requests.

use std::net::SocketAddr;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::harness::*;

/// Both servers walk every path on every request (`valid-ms = 0`), so the
/// decision cache is the only difference between them.
const CACHED: &str = "[cache]\nvalid-ms = 0\n";
const UNCACHED: &str = "[cache]\nvalid-ms = 0\ndecisions = 0\n";

const PATHS: &[&str] = &[
    "/a.txt",
    "/b.css",
    "/a.txt?v=1",
    "/dir/",
    "/dir",
    "/dir/index.html",
    "/missing",
    "/.hidden",
    "/big.js",
];

#[derive(Debug, Clone)]
enum Op {
    Request {
        method: &'static str,
        path: usize,
        headers: Vec<(&'static str, Value)>,
    },
    /// Rewrites a file in place (same inode), with this many bytes.
    Rewrite { file: usize, len: usize },
    /// Replaces a file by rename (a new inode), as deploys do.
    Replace { file: usize, len: usize },
    /// Creates or removes `a.txt.gz`.
    ToggleSibling,
}

#[derive(Debug, Clone)]
enum Value {
    Fixed(&'static str),
    /// The ETag the last response for the same path carried.
    LastEtag,
}

const FILES: &[&str] = &["a.txt", "b.css", "dir/index.html", "big.js"];

fn write_file(root: &Path, name: &str, len: usize, seed: u64) {
    // Text, so on-the-fly compression applies to it.
    let text: Vec<u8> = pseudo_random(len, seed)
        .into_iter()
        .map(|b| b"abcdefgh \n"[usize::from(b) % 10])
        .collect();
    std::fs::write(root.join(name), text).unwrap();
}

fn header() -> impl Strategy<Value = (&'static str, Value)> {
    let fixed = |name: &'static str, values: &'static [&'static str]| {
        prop::sample::select(values).prop_map(move |v| (name, Value::Fixed(v)))
    };
    prop_oneof![
        fixed(
            "range",
            &[
                "bytes=0-3",
                "bytes=2-",
                "bytes=-5",
                "bytes=0-1,4-6",
                "bytes=100000-",
                "bytes=oops"
            ]
        ),
        fixed(
            "accept-encoding",
            &["gzip", "br;q=0.5, gzip", "identity;q=0", "*", "zstd, br"]
        ),
        fixed("if-none-match", &["*", "\"junk\"", "W/\"junk\""]),
        fixed(
            "if-modified-since",
            &[
                "Sun, 06 Nov 1994 08:49:37 GMT",
                "Fri, 01 Jan 2100 00:00:00 GMT"
            ]
        ),
        fixed("if-match", &["*", "\"junk\""]),
        fixed("if-range", &["\"junk\"", "Sun, 06 Nov 1994 08:49:37 GMT"]),
        fixed("user-agent", &["proptest"]),
        prop::sample::select(&["if-none-match", "if-range", "if-match"][..])
            .prop_map(|name| (name, Value::LastEtag)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (
            prop::sample::select(&["GET", "GET", "GET", "HEAD", "OPTIONS", "POST", "get"][..]),
            0..PATHS.len(),
            prop::collection::vec(header(), 0..4),
        )
            .prop_map(|(method, path, headers)| Op::Request { method, path, headers }),
        1 => (0..FILES.len(), 0usize..5000).prop_map(|(file, len)| Op::Rewrite { file, len }),
        1 => (0..FILES.len(), 0usize..5000).prop_map(|(file, len)| Op::Replace { file, len }),
        1 => Just(Op::ToggleSibling),
    ]
}

/// A response as a client sees it, minus what may differ between two correct
/// servers: `Date`, and the multipart boundary (random per response).
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn parse(raw: &[u8]) -> Seen {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut body = raw[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = raw_status(lines.next().unwrap().as_bytes());
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        let (name, mut value) = (name.to_ascii_lowercase(), value.trim().to_owned());
        if name == "date" {
            continue;
        }
        if let Some(boundary) = value.strip_prefix("multipart/byteranges; boundary=") {
            let boundary = boundary.to_owned();
            let text = String::from_utf8_lossy(&body).replace(&boundary, "BOUNDARY");
            body = text.into_bytes();
            value = "multipart/byteranges; boundary=BOUNDARY".into();
        }
        headers.push((name, value));
    }
    Seen {
        status,
        headers,
        body,
    }
}

fn send(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, String)]) -> Seen {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    parse(&raw(addr, req.as_bytes()))
}

#[test]
fn cached_and_uncached_decisions_are_indistinguishable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("dir")).unwrap();
    for (i, f) in FILES.iter().enumerate() {
        write_file(root, f, 3000, i as u64 + 1);
    }
    std::fs::write(root.join(".hidden"), "secret").unwrap();
    let cached = Server::start_with(
        root,
        Options {
            config: Some(CACHED),
            ..Options::default()
        },
    );
    let uncached = Server::start_with(
        root,
        Options {
            config: Some(UNCACHED),
            ..Options::default()
        },
    );

    let seed = std::cell::Cell::new(100u64);
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(op(), 1..24), |ops| {
        let mut last_etag: std::collections::HashMap<usize, String> = Default::default();
        for op in ops {
            match op {
                Op::Request {
                    method,
                    path,
                    headers,
                } => {
                    let headers: Vec<(&str, String)> = headers
                        .iter()
                        .filter_map(|(name, v)| {
                            Some((
                                *name,
                                match v {
                                    Value::Fixed(s) => (*s).to_owned(),
                                    Value::LastEtag => last_etag.get(&path)?.clone(),
                                },
                            ))
                        })
                        .collect();
                    // The uncached one first: its answer is the reference,
                    // and asking it first cannot warm the other's cache.
                    // Twice to the cached one: the second is a hit, unless
                    // the policy is not called for this request at all.
                    let want = send(uncached.addr, method, PATHS[path], &headers);
                    for _ in 0..2 {
                        let got = send(cached.addr, method, PATHS[path], &headers);
                        prop_assert_eq!(&got, &want, "{} {} {:?}", method, PATHS[path], headers);
                    }
                    if let Some((_, etag)) = want.headers.iter().find(|(n, _)| n == "etag") {
                        last_etag.insert(path, etag.clone());
                    }
                }
                Op::Rewrite { file, len } => {
                    seed.set(seed.get() + 1);
                    write_file(root, FILES[file], len, seed.get());
                }
                Op::Replace { file, len } => {
                    seed.set(seed.get() + 1);
                    write_file(root, "incoming.tmp", len, seed.get());
                    std::fs::rename(root.join("incoming.tmp"), root.join(FILES[file])).unwrap();
                }
                Op::ToggleSibling => {
                    let gz = root.join("a.txt.gz");
                    if gz.exists() {
                        std::fs::remove_file(gz).unwrap();
                    } else {
                        std::fs::write(gz, b"\x1f\x8b pretend gzip").unwrap();
                    }
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The comparison means something only if the cache answered.
    let hits = cached.stat("decision_cache_hits");
    assert!(hits > 50, "only {hits} decisions came from the cache");
    assert_eq!(uncached.stat("decision_cache_hits"), 0);
}

/// A repeated request does not enter wasm; a changed file does.
#[test]
fn repeated_requests_skip_the_policy_until_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
    let server = Server::start(dir.path());
    let get = || raw_get(server.addr, "/a.txt");
    assert_eq!(raw_status(&get()), 200);
    let calls = server.stat("policy_calls");
    for _ in 0..20 {
        assert_eq!(raw_status(&get()), 200);
    }
    assert_eq!(
        server.stat("policy_calls"),
        calls,
        "answered from the cache"
    );
    assert!(server.stat("decision_cache_hits") >= 20);
    std::fs::write(dir.path().join("a.txt"), "hello, world").unwrap();
    let body = get();
    assert!(
        body.ends_with(b"hello, world"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(server.stat("policy_calls"), calls + 1, "a new key");
}
