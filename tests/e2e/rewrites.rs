//! Internal rewrites (WIT 0.3 `outcome.rewrite`), driven by the evil
//! policy's `/rw/` cases: each hop resolved beneath the same root and
//! decided again with its `hop`; at most 4 rewrites; loops, bad paths and
//! long reasons refused with a 500 (a loop's with no body) and an escaped
//! log line; a rewrite can never leave the root.

use crate::harness::*;
use crate::sandbox::evil;

fn root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("file")).unwrap();
    std::fs::write(dir.path().join("file/a.txt"), "the file a").unwrap();
    // Beside the root, and a link to it from inside: a rewrite through the
    // link must find nothing.
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "SECRET").unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::create_dir(www.join("file")).unwrap();
    std::fs::write(www.join("file/a.txt"), "the file a").unwrap();
    std::os::unix::fs::symlink(&outside, www.join("file/out")).unwrap();
    dir
}

fn start(dir: &tempfile::TempDir) -> Server {
    Server::start_with(
        &dir.path().join("www"),
        Options {
            policy: Some(&evil()),
            ..Options::default()
        },
    )
}

#[test]
fn a_chain_of_up_to_four_rewrites_is_followed_hop_by_hop() {
    let dir = root();
    let server = start(&dir);
    let c = client();
    let get = |path: &str| {
        let res = c.get(server.url(path)).send().unwrap();
        (res.status().as_u16(), res.text().unwrap())
    };
    assert_eq!(get("/rw/chain/0"), (200, "no hop".into()));
    assert_eq!(
        get("/rw/chain/1"),
        (200, "hop 1 from /rw/chain/1 because chain 1".into())
    );
    assert_eq!(
        get("/rw/chain/4"),
        (200, "hop 4 from /rw/chain/4 because chain 1".into())
    );
    // A fifth rewrite is one too many: 500, no body, the chain logged.
    let (status, body) = get("/rw/chain/5");
    assert_eq!((status, body.as_str()), (500, ""));
    server.expect_log("rewrite loop: more than 4 rewrites");
    server.expect_log("/rw/chain/5 -> /rw/chain/4 (chain 5) -> /rw/chain/3");
    // A rewrite to a file: the file's bytes, planned against its entry.
    assert_eq!(get("/rw/file/a.txt"), (200, "the file a".into()));
    assert_eq!(get("/rw/file/nope.txt"), (404, "missing".into()));
}

#[test]
fn loops_are_refused_with_an_empty_500_and_an_escaped_log_line() {
    let dir = root();
    let server = start(&dir);
    let c = client();
    for path in ["/rw/loop/a", "/rw/loop/b", "/rw/self"] {
        let res = c.get(server.url(path)).send().unwrap();
        assert_eq!(res.status(), 500, "{path}");
        assert_eq!(res.headers()["content-length"], "0", "{path}");
        assert_eq!(res.text().unwrap(), "", "{path}");
    }
    server.expect_log(
        "rewrite loop: a rewrite to a path already decided for this request; answered 500 \
         policy=",
    );
    server.expect_log("/rw/loop/a -> /rw/loop/b (to b) -> /rw/loop/a (to a)");
    // The reason forges an ANSI colour and a log line: shown escaped.
    server.expect_log("/rw/self -> /rw/self (\\x1B[31mforged\\x0D\\x0AINFO sluice: all good)");
    let logs = server.logs();
    assert!(!logs.contains('\x1b'), "raw escape in the log:\n{logs}");
    assert!(!logs.contains("forged\r"), "{logs}");
    // The server is fine.
    assert_eq!(
        c.get(server.url("/rw/chain/2")).send().unwrap().status(),
        200
    );
}

#[test]
fn rewrites_cannot_leave_the_root_or_break_the_path_rules() {
    let dir = root();
    let server = start(&dir);
    let c = client();
    for case in ["up", "dots", "relative", "nul", "empty", "double", "reason"] {
        let res = c
            .get(server.url(&format!("/rw/bad/{case}")))
            .send()
            .unwrap();
        assert_eq!(res.status(), 500, "{case}");
        let body = res.text().unwrap();
        assert!(body.contains("invalid decision"), "{case}: {body}");
    }
    server.expect_log("rewrite path \"/../secret\" is not an absolute, normalized path");
    server.expect_log("rewrite path \"file/a.txt\"");
    server.expect_log("rewrite reason longer than 256 bytes");
    // Through a symbolic link out of the root: nothing there.
    let res = c.get(server.url("/rw/file/out/secret")).send().unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.text().unwrap(), "missing");
    assert_eq!(server.stat("invalid_decisions"), 7);
}
