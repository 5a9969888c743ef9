//! The default policy component, driven by the stock `wasmtime` CLI alone
//! (`wasmtime run --invoke`), with no sluice code involved.

use std::path::{Path, PathBuf};
use std::process::Command;

fn wasmtime() -> PathBuf {
    std::env::var_os("WASMTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "wasmtime".into())
}

fn component() -> &'static Path {
    Path::new(env!("SLUICE_DEFAULT_POLICY"))
}

/// Calls `decide(REQ, ENTRY)` with WAVE-encoded arguments (the request
/// without `hop`: an absent option is `none`); returns the WAVE outcome.
fn decide(method: &str, path: &str, headers: &str, entry: &str) -> String {
    let call = format!(
        "decide({{method: \"{method}\", path: \"{path}\", raw-query: none, headers: [{headers}], tls: false, version: http11}}, {entry})"
    );
    let out = Command::new(wasmtime())
        .args(["run", "--invoke", &call])
        .arg(component())
        .output()
        .expect("the wasmtime CLI must be installed (tests/run installs it)");
    assert!(
        out.status.success(),
        "wasmtime failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const FILE: &str =
    "file({meta: {size: 1234, mtime-ns: 1700000000000000000, inode: 42, device: 7}, siblings: []})";

#[test]
fn cli_get_of_a_file_is_200_with_validators() {
    let out = decide("GET", "/notes.txt", "", FILE);
    assert!(out.starts_with("respond({status: 200,"), "{out}");
    assert!(
        out.contains(r#"{name: "content-type", value: "text/plain; charset=utf-8"}"#),
        "{out}"
    );
    assert!(
        out.contains(r#"{name: "last-modified", value: "Tue, 14 Nov 2023 22:13:20 GMT"}"#),
        "{out}"
    );
    assert!(out.contains(r#"name: "etag""#), "{out}");
    assert!(out.contains("body: full({source: original"), "{out}");
}

#[test]
fn cli_missing_file_is_404() {
    let out = decide("GET", "/nope", "", "missing");
    assert!(out.starts_with("respond({status: 404,"), "{out}");
}

#[test]
fn cli_post_is_405_with_allow() {
    let out = decide("POST", "/notes.txt", "", FILE);
    assert!(out.starts_with("respond({status: 405,"), "{out}");
    assert!(out.contains(r#"name: "allow""#), "{out}");
}

#[test]
fn cli_range_request_is_206() {
    let out = decide(
        "GET",
        "/notes.txt",
        r#"{name: "range", value: "bytes=0-99"}"#,
        FILE,
    );
    assert!(out.starts_with("respond({status: 206,"), "{out}");
    assert!(
        out.contains("ranges({source: original, ranges: [{first: 0, last: 99}]})"),
        "{out}"
    );
}
