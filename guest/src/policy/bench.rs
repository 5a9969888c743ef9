//! The host benchmark's uncached call (`host/benches/policy.rs`,
//! `uncached-declared-fields`), natively: `policy::decide` for a `GET` of
//! `/assets/app.js` (123,456 bytes, no siblings) with the two declared
//! fields of the benchmark's request (`accept-encoding`, `if-none-match`),
//! under the default configuration. What the guest's own work costs per
//! call, without wasmtime around it; run it under `perf record` to split
//! that work by function (host/benches/RESULTS.md):
//!
//! ```sh
//! cargo test -p sluice-guest --release -- --ignored --nocapture decide_bench
//! ```

use std::hint::black_box;
use std::time::Instant;

use crate::config::Config;
use crate::policy;
use crate::types::{Entry, FileEntry, FileMeta, Header, HttpVersion, Request};

pub(crate) fn request() -> (Request, Entry) {
    let req = Request {
        method: "GET".into(),
        path: "/assets/app.js".into(),
        raw_query: None,
        headers: vec![
            Header::new("accept-encoding", "gzip, deflate, br, zstd"),
            Header::new("if-none-match", "\"abc-123\""),
        ],
        tls: false,
        version: HttpVersion::Http11,
        hop: None,
    };
    let entry = Entry::File(FileEntry {
        meta: FileMeta {
            size: 123_456,
            mtime_ns: 1_700_000_000_000_000_000,
            inode: 42,
            device: 7,
        },
        siblings: vec![],
    });
    (req, entry)
}

#[test]
#[ignore = "a benchmark: run with --release --ignored --nocapture"]
fn decide_bench() {
    let config = Config::default();
    let (req, entry) = request();
    let calls: u32 = std::env::var("DECIDE_BENCH_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                black_box(policy::decide(
                    black_box(&config),
                    black_box(&req),
                    black_box(&entry),
                ));
            }
            start.elapsed().as_nanos() as f64 / f64::from(calls)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    println!(
        "policy::decide, native, ns per call (median of 5 runs of {calls}): {:.0}",
        runs[2]
    );
}
