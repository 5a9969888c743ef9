//! The access log (issue 10, item 3): the real server writing it to a file,
//! real requests, every field of every line parsed back, in both formats;
//! and a client that disconnects mid-body, whose line says what was sent.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::harness::*;

const BIG: usize = 1 << 20;

/// One parsed line, whatever the format.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    remote_addr: String,
    time: String,
    method: String,
    uri: String,
    protocol: String,
    status: u16,
    bytes: u64,
    referer: String,
    user_agent: String,
    vhost: String,
    transfer: String,
    policy_us: Option<u64>,
}

/// Splits a `combined` line with the documented extra fields (`-` for none):
/// `$remote_addr - $remote_user [$time_local] "$request" $status
/// $body_bytes_sent "$http_referer" "$http_user_agent" vhost="NAME"
/// transfer=PATH policy_us=N`.
fn parse_combined(line: &str) -> Line {
    split_combined(line).unwrap_or_else(|| panic!("not a combined line: {line:?}"))
}

/// The quoted values never hold `"`: it is written `\x22`, as nginx does.
fn split_combined(line: &str) -> Option<Line> {
    let (remote_addr, rest) = line.split_once(" - - [")?;
    let (time, rest) = rest.split_once("] \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let mut request = request.splitn(3, ' ');
    let (method, uri, protocol) = (request.next()?, request.next()?, request.next()?);
    let (status, rest) = rest.split_once(' ')?;
    let (bytes, rest) = rest.split_once(" \"")?;
    let (referer, rest) = rest.split_once("\" \"")?;
    let (user_agent, rest) = rest.split_once("\" vhost=\"")?;
    let (vhost, rest) = rest.split_once("\" transfer=")?;
    let (transfer, policy) = rest.split_once(" policy_us=")?;
    Some(Line {
        remote_addr: remote_addr.into(),
        time: time.into(),
        method: method.into(),
        uri: uri.into(),
        protocol: protocol.into(),
        status: status.parse().ok()?,
        bytes: bytes.parse().ok()?,
        referer: referer.into(),
        user_agent: user_agent.into(),
        vhost: vhost.into(),
        transfer: transfer.into(),
        policy_us: (policy != "-").then(|| policy.parse().unwrap()),
    })
}

fn parse_json(line: &str) -> Line {
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let text = |k: &str| match &v[k] {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => panic!("{k} is {other}"),
    };
    assert_eq!(v.as_object().unwrap().len(), 12, "{line}");
    Line {
        remote_addr: text("remote_addr"),
        time: text("time"),
        method: text("method"),
        uri: text("uri"),
        protocol: text("protocol"),
        status: v["status"].as_u64().unwrap() as u16,
        bytes: v["bytes_sent"].as_u64().unwrap(),
        referer: text("referer"),
        user_agent: text("user_agent"),
        vhost: text("vhost"),
        transfer: text("transfer"),
        policy_us: v["policy_us"].as_u64(),
    }
}

/// Waits until the log has at least `n` lines and returns them parsed.
fn lines(path: &Path, json: bool, n: usize) -> Vec<Line> {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(10), || read().lines().count() >= n),
        "fewer than {n} lines:\n{}",
        read()
    );
    read()
        .lines()
        .map(|l| {
            if json {
                parse_json(l)
            } else {
                parse_combined(l)
            }
        })
        .collect()
}

fn sites() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("small.txt"), "hello").unwrap();
    let big = pseudo_random(BIG, 3);
    std::fs::write(www.join("big.bin"), &big).unwrap();
    std::fs::write(www.join("page.html"), "<p>sluice</p>\n".repeat(500)).unwrap();
    let tenant = dir.path().join("tenant");
    std::fs::create_dir(&tenant).unwrap();
    std::fs::write(tenant.join("t.txt"), "tenant!").unwrap();
    (dir, big)
}

fn start(dir: &Path, format: &str) -> (Server, std::path::PathBuf) {
    let log = dir.join(format!("access-{format}.log"));
    let config = format!(
        "access-log = {log:?}\naccess-log-format = \"{format}\"\n\
         [[vhost]]\nhost = \"tenant.test\"\nroot = {:?}\n",
        dir.join("tenant")
    );
    let server = Server::start_with(
        &dir.join("www"),
        Options {
            config: Some(&config),
            ..Options::default()
        },
    );
    (server, log)
}

#[test]
fn every_field_of_every_line_in_both_formats() {
    let (dir, big) = sites();
    for format in ["combined", "json"] {
        let (mut server, log) = start(dir.path(), format);
        let c = client();
        let get = |path: &str| {
            c.get(server.url(path))
                .header("user-agent", "probe/1.0 \"quoted\"")
                .header("referer", "http://example.test/from")
        };
        // Each request's path is unique (query), so lines are found by it.
        let res = get("/small.txt?n=200").send().unwrap();
        assert_eq!(res.bytes().unwrap().len(), 5);
        let res = get("/big.bin?n=full").send().unwrap();
        assert_eq!(res.bytes().unwrap().len(), BIG);
        let res = get("/big.bin?n=206")
            .header("range", "bytes=100-100099")
            .send()
            .unwrap();
        assert_eq!(res.status(), 206);
        assert_eq!(&res.bytes().unwrap()[..], &big[100..100_100]);
        // Twice the same inputs: the second is answered by the decision cache.
        let mut etag = None;
        for _ in 0..2 {
            let res = get("/small.txt").send().unwrap();
            etag = Some(res.headers()["etag"].clone());
            res.bytes().unwrap();
        }
        let etag = etag.unwrap();
        let res = get("/small.txt?n=304")
            .header("if-none-match", etag)
            .send()
            .unwrap();
        assert_eq!(res.status(), 304);
        assert_eq!(get("/nope?n=404").send().unwrap().status(), 404);
        let res = get("/page.html?n=gzip")
            .header("accept-encoding", "gzip")
            .send()
            .unwrap();
        assert_eq!(res.headers()["content-encoding"], "gzip");
        let gzipped = res.bytes().unwrap().len() as u64;
        let res = c.head(server.url("/big.bin?n=head")).send().unwrap();
        assert_eq!(res.headers()["content-length"], BIG.to_string());
        let res = c
            .get(server.url("/t.txt?n=vhost"))
            .header("host", "tenant.test")
            .send()
            .unwrap();
        assert_eq!(res.text().unwrap(), "tenant!");

        let json = format == "json";
        let all = lines(&log, json, 10);
        assert_eq!(all.len(), 10, "{all:#?}");
        let by: HashMap<&str, &Line> = all.iter().map(|l| (l.uri.as_str(), l)).collect();
        let line = |uri: &str| {
            *by.get(uri)
                .unwrap_or_else(|| panic!("no line for {uri}: {all:#?}"))
        };
        for l in &all {
            assert_eq!(l.remote_addr, "127.0.0.1");
            assert_eq!(l.protocol, "HTTP/1.1");
            if json {
                // RFC 3339, UTC.
                assert!(l.time.len() >= 20 && l.time.ends_with('Z'), "{}", l.time);
            } else {
                // nginx's $time_local: 10/Oct/2000:13:55:36 +0000
                let t = &l.time;
                assert_eq!(t.len(), 26, "{t}");
                assert!(
                    t.ends_with(" +0000") && &t[2..3] == "/" && &t[6..7] == "/",
                    "{t}"
                );
            }
            if l.method == "GET" && l.vhost == "(default)" {
                assert_eq!(l.referer, "http://example.test/from");
                let ua = if json {
                    "probe/1.0 \"quoted\""
                } else {
                    "probe/1.0 \\x22quoted\\x22"
                };
                assert_eq!(l.user_agent, ua);
            }
        }
        let expect = |uri: &str, method: &str, status: u16, bytes: u64, transfer: &str| {
            let l = line(uri);
            assert_eq!(
                (l.method.as_str(), l.status, l.bytes, l.transfer.as_str()),
                (method, status, bytes, transfer),
                "{uri}: {l:?}"
            );
        };
        expect("/small.txt?n=200", "GET", 200, 5, "inline");
        expect("/big.bin?n=full", "GET", 200, BIG as u64, "sendfile");
        expect("/big.bin?n=206", "GET", 206, 100_000, "sendfile");
        expect("/small.txt?n=304", "GET", 304, 0, "-");
        expect(
            "/nope?n=404",
            "GET",
            404,
            line("/nope?n=404").bytes,
            "inline",
        );
        assert!(line("/nope?n=404").bytes > 0);
        expect("/page.html?n=gzip", "GET", 200, gzipped, "compressed");
        expect("/big.bin?n=head", "HEAD", 200, 0, "-");
        expect("/t.txt?n=vhost", "GET", 200, 7, "inline");
        assert_eq!(line("/t.txt?n=vhost").vhost, "tenant.test");
        assert_eq!(line("/small.txt?n=200").vhost, "(default)");
        assert_eq!(line("/t.txt?n=vhost").user_agent, "-");
        // A request calls the policy; a repeat of the same inputs is a
        // decision-cache hit, with no policy time.
        assert!(line("/small.txt?n=200").policy_us.is_some());
        let repeats: Vec<_> = all
            .iter()
            .filter(|l| l.uri == "/small.txt")
            .map(|l| {
                (
                    l.status,
                    l.bytes,
                    l.transfer.as_str(),
                    l.policy_us.is_some(),
                )
            })
            .collect();
        assert_eq!(
            repeats,
            [(200, 5, "inline", true), (200, 5, "inline", false)]
        );

        // On SIGTERM everything is flushed and the server exits cleanly.
        server.signal("TERM");
        let status = server.wait_exit(Duration::from_secs(30)).expect("exited");
        assert!(status.success(), "{status:?}");
        assert_eq!(lines(&log, json, 10).len(), 10);
    }
}

/// A client that reads part of a large body and goes away: the line says
/// how many bytes were sent, fewer than the file, on both transfer paths.
#[test]
fn a_disconnecting_client_logs_the_bytes_sent() {
    let dir = tempfile::tempdir().unwrap();
    let size: u64 = 256 << 20;
    // Sparse: sendfile and reads see zeros; nothing is written to disk.
    std::fs::File::create(dir.path().join("huge.bin"))
        .unwrap()
        .set_len(size)
        .unwrap();
    for (zero_copy, transfer) in [(true, "sendfile"), (false, "copy")] {
        let log = dir.path().join(format!("access-{transfer}.log"));
        let config = format!("access-log = {log:?}\n[transfer]\nzero-copy = {zero_copy}\n");
        let server = Server::start_with(
            dir.path(),
            Options {
                config: Some(&config),
                ..Options::default()
            },
        );
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut got = 0;
        let mut buf = vec![0; 64 << 10];
        while got < (4 << 20) {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed early");
            got += n;
        }
        drop(s);
        let all = lines(&log, false, 1);
        let l = &all[0];
        assert_eq!((l.status, l.transfer.as_str()), (200, transfer), "{l:?}");
        assert!(
            l.bytes >= (4 << 20) - 1024 && l.bytes < size,
            "{transfer}: logged {} of {size} bytes after the client read {got}",
            l.bytes
        );
    }
}
