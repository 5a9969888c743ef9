//! Hostile request paths (issue 5, item 4): a corpus of traversal, encoding,
//! Windows-style and symlink tricks, sent verbatim over raw TCP so no client
//! library normalizes them. Zero escapes, never a 5xx, the server stays up.

use std::os::unix::fs::symlink;
use std::path::Path;

use crate::harness::*;

pub(crate) const SECRET: &str = "TOP-SECRET-7f3a9c";

/// `outer/secret.txt` (the secret just outside the root) and `outer/www`,
/// a root full of symlinks that try to leave it.
pub(crate) fn hostile_site() -> (tempfile::TempDir, std::path::PathBuf) {
    let outer = tempfile::tempdir().unwrap();
    let o = outer.path();
    let root = o.join("www");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(o.join("secret.txt"), SECRET).unwrap();
    std::fs::write(o.join("secret.txt.gz"), SECRET).unwrap();
    std::fs::write(root.join("ok.txt"), "ok").unwrap();
    // Symlinks leaving the root: absolute, relative, deep relative, to a
    // directory, to a magic link, a loop.
    symlink(o.join("secret.txt"), root.join("abs-link")).unwrap();
    symlink("../secret.txt", root.join("rel-link")).unwrap();
    symlink(
        "../../../../../../../../etc/passwd",
        root.join("rel-link-deep"),
    )
    .unwrap();
    symlink(o, root.join("dir-link")).unwrap();
    symlink("loop-link", root.join("loop-link")).unwrap();
    symlink(".", root.join("self-link")).unwrap();
    symlink("/proc/self/root/etc", root.join("proc-link")).unwrap();
    std::fs::create_dir(root.join("inner")).unwrap();
    symlink("../..", root.join("inner/up-link")).unwrap();
    // Precompressed siblings that are symlinks leaving the root (aiohttp's
    // CVE class): the policy is offered only siblings inside the root.
    std::fs::write(root.join("a.txt"), "AAAA").unwrap();
    symlink(o.join("secret.txt"), root.join("a.txt.gz")).unwrap();
    std::fs::write(root.join("b.txt"), "BBBB").unwrap();
    symlink("../secret.txt", root.join("b.txt.br")).unwrap();
    symlink("../secret.txt.gz", root.join("b.txt.zst")).unwrap();
    // An index file that is a symlink leaving the root.
    std::fs::create_dir(root.join("index-dir")).unwrap();
    symlink(o.join("secret.txt"), root.join("index-dir/index.html")).unwrap();
    symlink(
        o.join("secret.txt.gz"),
        root.join("index-dir/index.html.gz"),
    )
    .unwrap();
    // A FIFO must not stall a worker.
    let status = std::process::Command::new("mkfifo")
        .arg(root.join("fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    (outer, root)
}

/// The corpus: the data file plus generated variants.
pub(crate) fn corpus() -> Vec<String> {
    let file = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/hostile-paths.txt"),
    )
    .unwrap();
    let mut out: Vec<String> = file
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let dots = [
        "..",
        "%2e%2e",
        "%2E%2E",
        ".%2e",
        "%2e.",
        "%252e%252e",
        "%c0%ae%c0%ae",
        "%e0%80%ae%e0%80%ae",
    ];
    let seps = [
        "/", "%2f", "%2F", "%5c", "\\", "%252f", "%c0%af", "/./", "//", "%5C",
    ];
    for d in dots {
        for s in seps {
            for depth in [1, 5] {
                out.push(format!("/{}secret.txt", format!("{d}{s}").repeat(depth)));
                out.push(format!(
                    "/inner/{}etc/passwd",
                    format!("{d}{s}").repeat(depth + 1)
                ));
            }
        }
    }
    for prefix in ["/dir-link/", "/inner/up-link/", "/self-link/", "/ok.txt/"] {
        for tail in [
            "secret.txt",
            "../secret.txt",
            "%2e%2e/secret.txt",
            "www/../secret.txt",
            "etc/passwd",
        ] {
            out.push(format!("{prefix}{tail}"));
        }
    }
    // Very long paths.
    out.push(format!(
        "/{}{}secret.txt",
        "a/".repeat(3000),
        "../".repeat(3001)
    ));
    out.push(format!("/{}etc/passwd", "%2e%2e/".repeat(2000)));
    out.push(format!("/{}", "x".repeat(5000)));
    out.push(format!("/{}f", "d/".repeat(2000)));
    out.push(format!("/{}", "a".repeat(70_000)));
    out.push(format!("/{}../secret.txt", "./".repeat(10_000)));
    out.push("/fifo".into());
    out.push("/fifo/".into());
    out
}

#[test]
fn hostile_paths_never_escape_the_root() {
    let (outer, root) = hostile_site();
    let mut server = Server::start(&root);
    let corpus = corpus();
    assert!(
        corpus.len() >= 200,
        "corpus has only {} paths",
        corpus.len()
    );
    let mut problems = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    for target in &corpus {
        for encoding in ["", "Accept-Encoding: gzip, br, zstd\r\n"] {
            let req = format!(
                "GET {target} HTTP/1.1\r\nHost: localhost\r\n{encoding}Connection: close\r\n\r\n"
            );
            let res = raw(server.addr, req.as_bytes());
            let text = String::from_utf8_lossy(&res);
            let status = raw_status(&res);
            *statuses.entry(status).or_insert(0u32) += 1;
            if text.contains(SECRET) || text.contains("root:x:") || text.contains("root:") {
                problems.push(format!("ESCAPE {target:?}: {text}"));
            } else if !(200..500).contains(&status) {
                problems.push(format!(
                    "status {status} for {target:?}: {}",
                    &text[..text.len().min(200)]
                ));
            }
        }
    }
    assert!(server.alive(), "the server died");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    eprintln!("{} hostile paths x 2, statuses: {statuses:?}", corpus.len());

    // The benign ones still work, and sibling symlinks leaving the root are
    // never used: the original is served instead.
    assert!(String::from_utf8_lossy(&raw_get(server.addr, "/ok.txt")).ends_with("\r\n\r\nok"));
    for (path, body) in [("/a.txt", "AAAA"), ("/b.txt", "BBBB")] {
        let res = raw(
            server.addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, br, zstd\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        let text = String::from_utf8_lossy(&res);
        assert_eq!(raw_status(&res), 200, "{text}");
        assert!(!text.contains(SECRET), "{path}: {text}");
        // Either the original as stored, or compressed on the fly from it.
        if !text.to_ascii_lowercase().contains("content-encoding") {
            assert!(text.ends_with(body), "{path}: {text}");
        }
    }
    drop(outer);
}
