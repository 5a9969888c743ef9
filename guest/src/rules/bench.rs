//! The issue's benchmark, natively: what matching costs with 1,000 redirect
//! rules and 200 header rules, against one uncached `policy::decide`.
//!
//! ```sh
//! cargo test -p sluice-guest --release -- --ignored --nocapture rules_bench
//! ```
//!
//! Ignored by default (timings in a debug build mean nothing). Prints the
//! median of 7 runs of 200,000 calls each, in nanoseconds per call. The rule
//! sets are shaped like a real site's: most redirects are old blog posts
//! under one prefix, some have placeholders and splats, some start with a
//! placeholder (tried for every path), some match on the query; header rules
//! are a global `/*` block, per-type ones (`/*.js`) and many per-section ones.

use std::hint::black_box;
use std::time::Instant;

use super::{HeaderRules, Redirects};
use crate::config::Config;
use crate::policy;
use crate::types::{
    ContentCoding, Entry, FileEntry, FileMeta, Header, HttpVersion, Request, Sibling,
};

/// 1,000 redirect rules.
pub(crate) fn redirect_rules() -> String {
    let mut text = String::from("# a site's redirects\n");
    for i in 0..700 {
        let (year, month) = (2015 + i / 100, 1 + i % 12);
        text += &format!("/blog/{year}/{month:02}/old-post-{i}  /posts/old-post-{i}  301\n");
    }
    for i in 0..100 {
        text += &format!("/docs/v{i}/*  /docs/:splat  301\n");
    }
    for i in 0..100 {
        text += &format!("/products/{i}/:slug  /shop/{i}/:slug  302\n");
    }
    for i in 0..50 {
        text += &format!("/team/member-{i}  /about/team#member-{i}  301\n");
    }
    for i in 0..30 {
        text += &format!("/:lang/legacy-{i}  /:lang/new-{i}  301\n");
    }
    for i in 0..20 {
        text += &format!("/store-{i} id=:id  /blog/:id  301\n");
    }
    assert_eq!(text.lines().count(), 1001);
    text
}

/// 200 header rules.
pub(crate) fn header_rules() -> String {
    let mut text = String::from(
        "/*\n  X-Frame-Options: DENY\n  X-Content-Type-Options: nosniff\n  Referrer-Policy: strict-origin-when-cross-origin\n\
         /assets/*\n  Cache-Control: public, max-age=31536000, immutable\n\
         /*.js\n  X-Kind: script\n/*.css\n  X-Kind: style\n/*.woff2\n  Access-Control-Allow-Origin: *\n",
    );
    for i in 0..150 {
        text += &format!("/app/section-{i}/*\n  X-Section: {i}\n");
    }
    for i in 0..45 {
        text += &format!("/api/v{i}/*\n  Access-Control-Allow-Origin: *\n  Access-Control-Allow-Methods: GET, HEAD\n");
    }
    text
}

/// Median nanoseconds per call of `f` over 7 runs of `N` calls.
fn time(mut f: impl FnMut()) -> f64 {
    const N: u32 = 200_000;
    for _ in 0..N / 10 {
        f();
    }
    let mut runs: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..N {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(N)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn request(path: &str) -> Request {
    Request {
        method: "GET".into(),
        path: path.into(),
        raw_query: None,
        headers: vec![Header::new("accept-encoding", "gzip, deflate, br, zstd")],
        tls: true,
        version: HttpVersion::Http11,
        hop: None,
    }
}

fn file() -> Entry {
    let meta = |size, inode| FileMeta {
        size,
        mtime_ns: 1_700_000_000_000_000_000,
        inode,
        device: 1,
    };
    Entry::File(FileEntry {
        meta: meta(48_000, 7),
        siblings: vec![
            Sibling {
                coding: ContentCoding::Br,
                meta: meta(12_000, 8),
            },
            Sibling {
                coding: ContentCoding::Gzip,
                meta: meta(15_000, 9),
            },
        ],
    })
}

#[test]
#[ignore = "a benchmark: run with --release --ignored --nocapture"]
fn rules_bench() {
    let start = Instant::now();
    let redirects = Redirects::parse_text(&redirect_rules()).unwrap();
    let headers = HeaderRules::parse_text(&header_rules()).unwrap();
    let compile = start.elapsed();
    assert_eq!((redirects.len(), headers.len()), (1000, 200));

    let config = Config::default();
    let (req, entry) = (request("/assets/app.3f2a9c1b.js"), file());
    let decide = time(|| {
        black_box(policy::decide(
            black_box(&config),
            black_box(&req),
            black_box(&entry),
        ));
    });

    let find = |path: &'static str, query: Option<&'static str>, exists: bool| {
        let r = &redirects;
        time(move || {
            black_box(r.find(black_box(path), black_box(query), black_box(exists)));
        })
    };
    let for_path = |path: &'static str| {
        let h = &headers;
        time(move || {
            black_box(h.for_path(black_box(path)));
        })
    };
    // Sanity: the hits hit and the misses miss.
    assert!(redirects
        .find("/blog/2018/05/old-post-352", None, false)
        .is_some());
    assert!(redirects
        .find("/docs/v42/guide/intro", None, false)
        .is_some());
    assert!(redirects.find("/store-7", Some("id=42"), false).is_some());
    assert!(redirects
        .find("/about/company/history", None, false)
        .is_none());
    assert!(redirects
        .find("/blog/2018/05/new-post", None, false)
        .is_none());
    assert_eq!(headers.for_path("/assets/app.3f2a9c1b.js").len(), 5);

    let rows = [
        (
            "redirects: miss, /about/company/history",
            find("/about/company/history", None, false),
        ),
        (
            "redirects: miss under /blog/2018/05/ (8 rules below it)",
            find("/blog/2018/05/new-post", None, false),
        ),
        (
            "redirects: existing file (only forced rules)",
            find("/blog/2018/05/old-post-352", None, true),
        ),
        (
            "redirects: hit, /blog/2018/05/old-post-352",
            find("/blog/2018/05/old-post-352", None, false),
        ),
        (
            "redirects: hit, splat /docs/v42/guide/intro?x=1",
            find("/docs/v42/guide/intro", Some("x=1"), false),
        ),
        (
            "redirects: hit, query /store-7?id=42",
            find("/store-7", Some("id=42"), false),
        ),
        (
            "headers: /about/company/history (1 rule, 3 fields)",
            for_path("/about/company/history"),
        ),
        (
            "headers: /assets/app.3f2a9c1b.js (3 rules, 5 fields)",
            for_path("/assets/app.3f2a9c1b.js"),
        ),
        (
            "headers: /app/section-99/x.css (3 rules, 5 fields)",
            for_path("/app/section-99/x.css"),
        ),
    ];
    println!(
        "\ncompile 1,000 redirect + 200 header rules: {:.2} ms",
        compile.as_secs_f64() * 1e3
    );
    println!(
        "{:<58} {:>8}",
        "native, median of 7 x 200,000 calls", "ns/call"
    );
    println!(
        "{:<58} {:>8.0}",
        "policy::decide, GET of a file with br/gzip siblings", decide
    );
    for (name, ns) in &rows {
        println!("{name:<58} {ns:>8.0}");
    }
    let worst_find = rows[..6].iter().map(|r| r.1).fold(0.0, f64::max);
    let worst_headers = rows[6..].iter().map(|r| r.1).fold(0.0, f64::max);
    println!(
        "decide + slowest redirect lookup + slowest header lookup: {:.2}x decide alone",
        (decide + worst_find + worst_headers) / decide
    );
}
