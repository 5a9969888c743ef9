//! Fuzzes the request-path normalizer (`host/src/resolve/normalize.rs`, included
//! by path so this crate compiles without wasmtime).
//!
//! Run: `cd host/fuzz && cargo +nightly fuzz run normalize -- -max_total_time=120`

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/resolve/normalize.rs"]
#[allow(dead_code)]
mod normalize;

fuzz_target!(|data: &[u8]| {
    // Request targets reach the normalizer as &str (hyper's URI path).
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(n) = normalize::normalize(raw) else {
        return;
    };
    let path = n.path.as_str();
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    assert!(
        !path.contains('\0') && !path.contains('\\'),
        "{raw:?} -> {path:?}"
    );
    assert!(!path.chars().any(char::is_control), "{raw:?} -> {path:?}");
    // Segments: never empty (but for the root and a kept trailing slash), `.` or `..`.
    let inner = path.strip_prefix('/').unwrap();
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if !inner.is_empty() {
        for seg in inner.split('/') {
            assert!(
                !seg.is_empty() && seg != "." && seg != "..",
                "{raw:?} -> {path:?}"
            );
        }
    }
    assert!(!path.contains("//"), "{raw:?} -> {path:?}");
    // The relative form for openat2 never starts with '/' and never climbs.
    let rel = n.relative();
    assert!(
        !rel.starts_with('/') && !rel.is_empty(),
        "{raw:?} -> {rel:?}"
    );
    assert!(
        rel == "."
            || rel
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."),
        "{raw:?} -> {rel:?}"
    );
    assert_eq!(
        n.trailing_slash(),
        path.len() > 1 && path.ends_with('/'),
        "{raw:?} -> {path:?}"
    );
    // Idempotent: normalizing the output (re-encoding `%`) gives it back.
    let again = normalize::normalize(&path.replace('%', "%25")).expect("normal output normalizes");
    assert_eq!(again.path, n.path, "{raw:?}");
});
