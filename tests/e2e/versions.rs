//! WIT versions: the host keeps serving policies built against
//! `sluice:policy@0.2.0` and `@0.1.0` (the WIT promised it), and refuses a
//! component built against a version it does not support, naming it.

use std::path::PathBuf;

use crate::harness::*;

fn fixture_0_1() -> PathBuf {
    workspace().join("tests/fixtures/policy-0.1.0.wasm")
}

fn fixture_0_2() -> PathBuf {
    workspace().join("tests/fixtures/policy-0.2.0.wasm")
}

/// The default policy as it was built against 0.2.0: loaded through the
/// 0.2 adapter (no hop, no listing, its decision the response), its
/// declared fields and reusable decisions kept.
#[test]
fn a_0_2_policy_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let text = "0123456789".repeat(300);
    std::fs::write(dir.path().join("a.txt"), &text).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/x.txt"), "x").unwrap();
    let server = Server::start_with(
        dir.path(),
        Options {
            policy: Some(&fixture_0_2()),
            ..Options::default()
        },
    );
    server.expect_log("sluice:policy@0.2.0");
    let c = client();
    let res = c.get(server.url("/a.txt")).send().unwrap();
    assert_eq!(res.status(), 200);
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(res.text().unwrap(), text);
    let res = c
        .get(server.url("/a.txt"))
        .header("range", "bytes=0-4")
        .send()
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.text().unwrap(), "01234");
    let res = c
        .get(server.url("/a.txt"))
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(c.get(server.url("/nope")).send().unwrap().status(), 404);
    // A directory without an index: 0.2.0 has no listings to give.
    let res = c.get(server.url("/sub/")).send().unwrap();
    assert_eq!(res.status(), 404);
    // Its decisions are reusable, as it declared.
    assert_eq!(c.get(server.url("/a.txt")).send().unwrap().status(), 200);
    assert!(server.stat("decision_cache_hits") > 0);
}

#[test]
fn a_0_1_policy_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let text = "0123456789".repeat(300);
    std::fs::write(dir.path().join("a.txt"), &text).unwrap();
    let server = Server::start_with(
        dir.path(),
        Options {
            policy: Some(&fixture_0_1()),
            ..Options::default()
        },
    );
    server.expect_log("sluice:policy@0.1.0");
    let c = client();
    let res = c.get(server.url("/a.txt")).send().unwrap();
    assert_eq!(res.status(), 200);
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(res.text().unwrap(), text);
    // Every request header still reaches a 0.1.0 policy: ranges,
    // conditionals and negotiation all work.
    let res = c
        .get(server.url("/a.txt"))
        .header("range", "bytes=0-4")
        .send()
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.text().unwrap(), "01234");
    let res = c
        .get(server.url("/a.txt"))
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(res.status(), 304);
    let res = c
        .get(server.url("/a.txt"))
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert_eq!(c.get(server.url("/nope")).send().unwrap().status(), 404);
    // Its decisions are never reused: it never declared them pure.
    assert_eq!(server.stat("decision_cache_hits"), 0);
}

#[test]
fn an_unsupported_version_is_refused_by_name() {
    let mut bytes = std::fs::read(fixture_0_1()).unwrap();
    let (from, to) = (b"sluice:policy/types@0.1.0", b"sluice:policy/types@0.9.0");
    let mut replaced = 0;
    for i in 0..bytes.len() - from.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            replaced += 1;
        }
    }
    assert!(replaced > 0, "the fixture names its package version");
    let dir = tempfile::tempdir().unwrap();
    let relabelled = dir.path().join("relabelled.wasm");
    std::fs::write(&relabelled, bytes).unwrap();
    let out = std::process::Command::new(sluice_bin())
        .arg("serve")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--policy"])
        .arg(&relabelled)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("built against sluice:policy@0.9.0")
            && stderr.contains("supports sluice:policy@0.3.0, @0.2.0, @0.1.0"),
        "{stderr}"
    );
}
