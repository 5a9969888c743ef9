//! The walking skeleton: a real download, HEAD, 404, 405 and root escapes.

use crate::harness::*;

fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.bin"), pseudo_random(10 << 20, 7)).unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello, sluice\n").unwrap();
    dir
}

#[test]
fn ten_mib_file_arrives_byte_identical() {
    let dir = site();
    let server = Server::start(dir.path());
    let res = client().get(server.url("/big.bin")).send().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], "10485760");
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    let body = res.bytes().unwrap();
    assert_eq!(
        sha256(&body),
        sha256(&std::fs::read(dir.path().join("big.bin")).unwrap())
    );
}

#[test]
fn head_has_the_same_headers_and_no_body() {
    let dir = site();
    let server = Server::start(dir.path());
    let get = client().get(server.url("/hello.txt")).send().unwrap();
    let head = client().head(server.url("/hello.txt")).send().unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(head.status(), 200);
    for name in ["content-type", "content-length", "etag", "last-modified"] {
        assert_eq!(get.headers().get(name), head.headers().get(name), "{name}");
    }
    assert!(
        get.headers()["etag"].to_str().unwrap().starts_with('"'),
        "strong ETag"
    );
    assert_eq!(get.headers()["content-type"], "text/plain; charset=utf-8");
    // Over raw TCP, so nothing in a client library could hide a body.
    let raw = raw(
        server.addr,
        b"HEAD /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8(raw).unwrap();
    assert!(
        text.ends_with("\r\n\r\n"),
        "HEAD response carried a body: {text:?}"
    );
    assert!(text.contains("content-length: 14\r\n"));
}

#[test]
fn missing_is_404_and_post_is_405() {
    let dir = site();
    let server = Server::start(dir.path());
    assert_eq!(
        client()
            .get(server.url("/nope.txt"))
            .send()
            .unwrap()
            .status(),
        404
    );
    let post = client()
        .post(server.url("/hello.txt"))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(post.status(), 405);
    let allow = post.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("HEAD"), "{allow}");
}

#[test]
fn dot_dot_never_leaves_the_root() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("www");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("ok.txt"), "ok").unwrap();
    std::fs::write(outer.path().join("secret.txt"), "TOP-SECRET").unwrap();
    let server = Server::start(&root);
    for target in [
        "/../secret.txt",
        "/../etc/passwd",
        "/%2e%2e/secret.txt",
        "/%2E%2E/%2E%2E/etc/passwd",
        "/..%2fsecret.txt",
        "/ok.txt/../../secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/.%2e/secret.txt",
    ] {
        let res = raw_get(server.addr, target);
        let text = String::from_utf8_lossy(&res);
        assert!(
            !text.contains("TOP-SECRET") && !text.contains("root:"),
            "{target} escaped: {text}"
        );
        assert!(matches!(raw_status(&res), 400 | 404), "{target}: {text}");
    }
    assert_eq!(raw_status(&raw_get(server.addr, "/ok.txt")), 200);
}
