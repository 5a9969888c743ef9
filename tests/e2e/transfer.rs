//! The transfer engine (issue 3): zero-copy `sendfile(2)` under hyper, the
//! overlapped copying path, and the faults both must survive. Every test runs
//! the real binary over 127.0.0.1; counters come from the admin `/stats`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::*;

/// The default policy: zero-copy allowed, 256 KiB copy chunks.
const ZERO_COPY: &str = "";
/// The copying path (policy forbids zero-copy), default chunk.
const COPY: &str = "[policy]\nzero-copy = \"false\"\n";

/// Both paths, named for assertion messages.
const PATHS: [(&str, &str); 2] = [("zero-copy", ZERO_COPY), ("copy", COPY)];

fn start(root: &Path, config: &str) -> Server {
    Server::start_with(
        root,
        Options {
            config: Some(config),
            ..Options::default()
        },
    )
}

/// A response head read off a raw connection.
struct Head {
    status: u16,
    headers: HashMap<String, String>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn content_length(&self) -> u64 {
        self.get("content-length")
            .expect("content-length")
            .parse()
            .unwrap()
    }
}

fn read_head(r: &mut impl BufRead) -> Head {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    assert!(line.starts_with("HTTP/1.1 "), "not a status line: {line:?}");
    let status = line[9..12].parse().unwrap();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("header line");
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').expect("header");
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    Head { status, headers }
}

/// A TCP connection whose receive buffer is set *before* connecting, so the
/// advertised window really is small.
fn connect_with_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    use rustix::net::{sockopt, AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    sockopt::set_socket_recv_buffer_size(&fd, rcvbuf).unwrap();
    rustix::net::connect(&fd, &addr).unwrap();
    TcpStream::from(fd)
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// Reads the rest of a connection until EOF or reset; panics on a timeout
/// (a hang). Returns the bytes and whether it ended by EOF.
fn read_until_closed(r: &mut impl Read) -> (Vec<u8>, &'static str) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, "eof"),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server hung: no EOF after {} bytes", out.len())
            }
            Err(_) => return (out, "reset"),
        }
    }
}

#[test]
fn large_download_leaves_by_sendfile() {
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(64 << 20, 31);
    std::fs::write(dir.path().join("big.bin"), &data).unwrap();
    let server = Server::start(dir.path());
    let before = server.stats();
    let res = client().get(server.url("/big.bin")).send().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-length"],
        (64u64 << 20).to_string().as_str()
    );
    let body = res.bytes().unwrap();
    assert_eq!(body.len(), data.len());
    assert_eq!(
        sha256(&body),
        sha256(&data),
        "zero-copy bytes differ (zeros from a placeholder?)"
    );
    let after = server.stats();
    assert_eq!(
        after["sendfile_bytes"] - before["sendfile_bytes"],
        64 << 20,
        "every body byte by sendfile"
    );
    assert_eq!(
        after["copy_bytes"], before["copy_bytes"],
        "no body byte through user space"
    );
    assert!(after["sendfile_calls"] > before["sendfile_calls"]);
}

/// Small cached bodies (whole files, single ranges and multipart) leave with
/// the head in one write; a body one byte over `inline-max` goes by sendfile.
#[test]
fn small_cached_bodies_leave_inline_with_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let small = pseudo_random(4096, 35);
    let over = pseudo_random(8193, 36);
    std::fs::write(dir.path().join("small.bin"), &small).unwrap();
    std::fs::write(dir.path().join("over.bin"), &over).unwrap();
    let server = start(dir.path(), "[transfer]\ninline-max = \"8k\"\n");
    let before = server.stats();
    let body = client()
        .get(server.url("/small.bin"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(&body[..], &small[..]);
    let ranged = client()
        .get(server.url("/small.bin"))
        .header("range", "bytes=10-19,100-199")
        .send()
        .unwrap();
    assert_eq!(ranged.status(), 206);
    let ranged = ranged.bytes().unwrap();
    assert!(ranged.windows(10).any(|w| w == &small[10..20]));
    assert!(ranged.windows(100).any(|w| w == &small[100..200]));
    let after = server.stats();
    assert_eq!(
        after["inline_bytes"] - before["inline_bytes"],
        4096 + 10 + 100
    );
    assert_eq!(after["sendfile_bytes"], before["sendfile_bytes"]);

    let body = client()
        .get(server.url("/over.bin"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(&body[..], &over[..]);
    let last = server.stats();
    assert_eq!(last["sendfile_bytes"] - after["sendfile_bytes"], 8193);
    assert_eq!(last["inline_bytes"], after["inline_bytes"]);
}

/// The test that would catch zeros: the copying path must send the very same
/// bytes, and count them as copied.
#[test]
fn copy_path_sends_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(64 << 20, 32);
    std::fs::write(dir.path().join("big.bin"), &data).unwrap();
    for (chunk, config) in [
        (256 << 10, COPY.to_owned()),
        (16 << 10, format!("{COPY}chunk-size = \"16k\"\n")),
    ] {
        let server = start(dir.path(), &config);
        let before = server.stats();
        let body = client()
            .get(server.url("/big.bin"))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(sha256(&body), sha256(&data), "copy path, chunk {chunk}");
        let after = server.stats();
        assert_eq!(
            after["copy_bytes"] - before["copy_bytes"],
            64 << 20,
            "chunk {chunk}"
        );
        assert_eq!(
            after["sendfile_bytes"], before["sendfile_bytes"],
            "chunk {chunk}"
        );
        assert_eq!(
            after["copy_reads"] - before["copy_reads"],
            (64 << 20) / chunk,
            "chunk {chunk}: reads of the policy's size"
        );
    }
}

/// A file that is not in the page cache: the copying path's non-blocking
/// cached read finds nothing and the chunk is read on the blocking pool.
#[test]
fn copy_path_reads_a_cold_file_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cold.bin");
    let data = pseudo_random(32 << 20, 34);
    std::fs::write(&path, &data).unwrap();
    let server = start(dir.path(), &format!("{COPY}chunk-size = \"1m\"\n"));
    for round in 0..3 {
        let f = std::fs::File::open(&path).unwrap();
        f.sync_all().unwrap();
        // Clean pages are dropped from the cache (best effort, as the kernel allows).
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let before = server.stats();
        let body = client()
            .get(server.url("/cold.bin"))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(sha256(&body), sha256(&data), "round {round}");
        let after = server.stats();
        assert_eq!(
            after["copy_bytes"] - before["copy_bytes"],
            32 << 20,
            "round {round}"
        );
        assert_eq!(
            after["copy_reads"] - before["copy_reads"],
            32,
            "round {round}"
        );
    }
}

#[test]
fn sendfile_calls_are_bounded_by_max_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(16 << 20, 33);
    std::fs::write(dir.path().join("big.bin"), &data).unwrap();
    let server = start(dir.path(), "[transfer]\nsendfile-max-chunk = \"64k\"\n");
    let before = server.stats();
    let body = client()
        .get(server.url("/big.bin"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(sha256(&body), sha256(&data));
    let after = server.stats();
    let calls = after["sendfile_calls"] - before["sendfile_calls"];
    assert_eq!(after["sendfile_bytes"] - before["sendfile_bytes"], 16 << 20);
    assert!(
        calls >= (16 << 20) / (64 << 10),
        "{calls} sendfile calls for 16 MiB at most 64 KiB each"
    );
}

/// Many requests in one write on one connection, GET and HEAD, small, large,
/// empty, ranged and missing files: every response byte is where it belongs.
#[test]
fn pipelined_keep_alive_requests_are_byte_correct() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("small.txt", b"tiny file\n".to_vec()),
        ("medium.bin", pseudo_random(300 << 10, 41)),
        ("large.bin", pseudo_random(5 << 20, 42)),
        ("empty.bin", Vec::new()),
    ];
    for (name, data) in &files {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    let configs = [
        ("zero-copy", ZERO_COPY.to_owned()),
        // Every sendfile is partial: hyper must re-offer the rest of each slice.
        (
            "zero-copy, 64k sendfile",
            "[transfer]\nsendfile-max-chunk = \"64k\"\n".to_owned(),
        ),
        ("copy 16k", format!("{COPY}chunk-size = \"16k\"\n")),
    ];
    for (label, config) in &configs {
        let server = start(dir.path(), config);
        let before = server.stats();
        // (request, expected status, expected body or None for "don't check")
        let mut expected: Vec<(String, u16, Option<Vec<u8>>, bool)> = Vec::new();
        for i in 0..64 {
            let (name, data) = &files[i % files.len()];
            let head = i % 5 == 3;
            let method = if head { "HEAD" } else { "GET" };
            let mut req = format!("{method} /{name} HTTP/1.1\r\nHost: localhost\r\n");
            // (Range is only defined for GET; a HEAD ignores it and gets 200.)
            let (status, body) = if i % 7 == 6 && data.len() > 100 {
                req.push_str("Range: bytes=10-99\r\n");
                if head {
                    (200, data.clone())
                } else {
                    (206, data[10..100].to_vec())
                }
            } else if i % 11 == 10 {
                req = format!("{method} /missing-{i} HTTP/1.1\r\nHost: localhost\r\n");
                expected.push((req + "\r\n", 404, None, head));
                continue;
            } else {
                (200, data.clone())
            };
            req.push_str("\r\n");
            expected.push((
                req,
                status,
                Some(if head { Vec::new() } else { body }),
                head,
            ));
        }
        let last = expected.last_mut().unwrap();
        last.0 = last
            .0
            .replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
        let all: String = expected.iter().map(|e| e.0.as_str()).collect();

        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(all.as_bytes()).unwrap(); // genuinely pipelined: one write
        let mut r = BufReader::new(s);
        for (i, (req, status, body, head)) in expected.iter().enumerate() {
            let h = read_head(&mut r);
            assert_eq!(h.status, *status, "{label}: response {i} to {req:?}");
            let len = h.content_length();
            if let Some(body) = body {
                if !*head {
                    assert_eq!(len, body.len() as u64, "{label}: response {i}");
                }
            }
            let mut got = vec![0u8; if *head { 0 } else { len as usize }];
            r.read_exact(&mut got).unwrap();
            if let Some(body) = body {
                assert!(
                    got == *body,
                    "{label}: response {i} to {req:?}: body differs"
                );
            }
        }
        let (rest, how) = read_until_closed(&mut r);
        assert!(
            rest.is_empty(),
            "{label}: {} stray bytes after the last response",
            rest.len()
        );
        assert_eq!(how, "eof", "{label}");
        let after = server.stats();
        if label.starts_with("zero-copy") {
            assert!(
                after["sendfile_bytes"] > before["sendfile_bytes"],
                "{label}"
            );
            assert_eq!(after["copy_bytes"], before["copy_bytes"], "{label}");
        } else {
            assert_eq!(after["sendfile_bytes"], before["sendfile_bytes"], "{label}");
        }
    }
}

/// 1,000 downloads dropped mid-transfer on each path: no descriptor leaks.
#[test]
fn aborted_downloads_leak_no_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.bin"), pseudo_random(4 << 20, 51)).unwrap();
    for (label, config) in PATHS {
        let server = start(dir.path(), config);
        // Warm up: the first transfers create the runtime's lazily made
        // descriptors (blocking-pool threads, the placeholder region...).
        for _ in 0..3 {
            assert_eq!(
                client()
                    .get(server.url("/big.bin"))
                    .send()
                    .unwrap()
                    .bytes()
                    .unwrap()
                    .len(),
                4 << 20
            );
        }
        let baseline = server.open_fds();
        let request = get_request("/big.bin");
        let mut buf = [0u8; 8192];
        for i in 0..1000 {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            match i % 4 {
                0 => {} // gone before the response
                1 => {
                    let _ = s.read(&mut buf); // the head and a little body
                }
                _ => {
                    // well into the body
                    let mut got = 0;
                    while got < 64 << 10 {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got += n,
                        }
                    }
                }
            }
            drop(s);
        }
        let settled = eventually(Duration::from_secs(20), || server.open_fds() <= baseline);
        assert!(
            settled,
            "{label}: open fds {} after 1000 aborted downloads, baseline {baseline}",
            server.open_fds()
        );
        // And the server still serves.
        assert_eq!(
            client()
                .get(server.url("/big.bin"))
                .send()
                .unwrap()
                .bytes()
                .unwrap()
                .len(),
            4 << 20
        );
    }
}

/// The file shrinks while it is being sent: the response ends early, the
/// connection closes, nothing hangs, every byte received is a true prefix.
#[test]
fn truncated_file_ends_the_response_without_padding() {
    for (label, config) in PATHS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shrinking.bin");
        let data = pseudo_random(64 << 20, 61);
        std::fs::write(&path, &data).unwrap();
        let server = start(dir.path(), config);
        let before = server.stat("truncated_files");

        let s = connect_with_rcvbuf(server.addr, 64 << 10);
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        (&s).write_all(get_request("/shrinking.bin").as_bytes())
            .unwrap();
        let mut r = BufReader::new(s);
        let head = read_head(&mut r);
        assert_eq!(head.status, 200, "{label}");
        assert_eq!(head.content_length(), 64 << 20, "{label}");
        let mut body = vec![0u8; 64 << 10];
        r.read_exact(&mut body).unwrap();

        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();

        let started = Instant::now();
        let (rest, how) = read_until_closed(&mut r);
        body.extend_from_slice(&rest);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{label}: took {:?}",
            started.elapsed()
        );
        assert!(
            body.len() < data.len(),
            "{label}: got all {} bytes of a truncated file",
            body.len()
        );
        assert!(
            body.len() <= 16 << 20,
            "{label}: {} bytes, far past the truncation at 8 MiB",
            body.len()
        );
        assert!(
            body == data[..body.len()],
            "{label}: the {} bytes received are not a prefix of the file",
            body.len()
        );
        assert!(matches!(how, "eof" | "reset"), "{label}");
        assert!(
            eventually(Duration::from_secs(5), || server.logs().contains("shrank")),
            "{label}: no log line; logs:\n{}",
            server.logs()
        );
        assert_eq!(server.stat("truncated_files"), before + 1, "{label}");
    }
}

/// The file is replaced by rename mid-download: the open descriptor keeps
/// serving the old bytes, all of them.
#[test]
fn file_replaced_by_rename_keeps_serving_the_old_bytes() {
    for (label, config) in PATHS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.bin");
        let old = pseudo_random(32 << 20, 71);
        std::fs::write(&path, &old).unwrap();
        let server = start(dir.path(), config);

        let s = connect_with_rcvbuf(server.addr, 64 << 10);
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        (&s).write_all(b"GET /doc.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut r = BufReader::new(s);
        let head = read_head(&mut r);
        assert_eq!(head.content_length(), old.len() as u64, "{label}");
        let mut body = vec![0u8; 64 << 10];
        r.read_exact(&mut body).unwrap();

        let tmp = dir.path().join(".doc.bin.new");
        std::fs::write(&tmp, pseudo_random(40 << 20, 72)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();

        let (rest, how) = read_until_closed(&mut r);
        body.extend_from_slice(&rest);
        assert_eq!(how, "eof", "{label}");
        assert_eq!(body.len(), old.len(), "{label}");
        assert_eq!(
            sha256(&body),
            sha256(&old),
            "{label}: a mix of old and new bytes"
        );
        // A new request sees the new file.
        let new = client()
            .get(server.url("/doc.bin"))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(new.len(), 40 << 20, "{label}");
    }
}

/// A sparse file past 4 GiB: sizes and offsets are 64-bit all the way.
#[test]
fn sparse_file_over_4gib_is_ranged_correctly_near_its_end() {
    const SIZE: u64 = (4 << 30) + (1 << 20);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.bin");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(SIZE).unwrap();
    // Real bytes around the 4 GiB boundary and at the very end; zeros elsewhere.
    let around = (1u64 << 32) - 1000;
    let pattern = pseudo_random(2000, 81);
    f.write_all_at(&pattern, around).unwrap();
    let tail = pseudo_random(4096, 82);
    f.write_all_at(&tail, SIZE - 4096).unwrap();
    drop(f);
    let byte = |at: u64| -> u8 {
        if (around..around + 2000).contains(&at) {
            pattern[(at - around) as usize]
        } else if at >= SIZE - 4096 {
            tail[(at - (SIZE - 4096)) as usize]
        } else {
            0
        }
    };
    let expect = |first: u64, last: u64| -> Vec<u8> { (first..=last).map(byte).collect() };

    for (label, config) in PATHS {
        let server = start(dir.path(), config);
        let head = client().head(server.url("/huge.bin")).send().unwrap();
        assert_eq!(head.status(), 200, "{label}");
        assert_eq!(
            head.headers()["content-length"],
            SIZE.to_string().as_str(),
            "{label}"
        );

        for (first, last) in [
            (4294967290u64, 4294967400u64),
            (SIZE - 100, SIZE - 1),
            (4294967000, 4294967295),
        ] {
            let res = client()
                .get(server.url("/huge.bin"))
                .header("range", format!("bytes={first}-{last}"))
                .send()
                .unwrap();
            assert_eq!(res.status(), 206, "{label} {first}-{last}");
            assert_eq!(
                res.headers()["content-range"],
                format!("bytes {first}-{last}/{SIZE}").as_str(),
                "{label}"
            );
            let body = res.bytes().unwrap();
            assert_eq!(
                body.len() as u64,
                last - first + 1,
                "{label} {first}-{last}"
            );
            assert!(
                body[..] == expect(first, last)[..],
                "{label} {first}-{last}: wrong bytes"
            );
        }
        // Suffix range: the last 50 bytes.
        let res = client()
            .get(server.url("/huge.bin"))
            .header("range", "bytes=-50")
            .send()
            .unwrap();
        assert_eq!(res.status(), 206, "{label}");
        assert!(
            res.bytes().unwrap()[..] == expect(SIZE - 50, SIZE - 1)[..],
            "{label}: suffix range"
        );

        // Several ranges, one straddling 2^32: multipart/byteranges.
        let ranges = [
            (4294967200u64, 4294967250u64),
            (4294967290, 4294967310),
            (SIZE - 10, SIZE - 1),
        ];
        let spec = ranges
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect::<Vec<_>>()
            .join(",");
        let res = client()
            .get(server.url("/huge.bin"))
            .header("range", format!("bytes={spec}"))
            .send()
            .unwrap();
        assert_eq!(res.status(), 206, "{label}");
        let ctype = res.headers()["content-type"].to_str().unwrap().to_owned();
        let boundary = ctype
            .strip_prefix("multipart/byteranges; boundary=")
            .unwrap_or_else(|| panic!("{ctype}"))
            .to_owned();
        let declared: usize = res.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = res.bytes().unwrap().to_vec();
        assert_eq!(body.len(), declared, "{label}");
        let parts = multipart_parts(&body, &boundary);
        assert_eq!(parts.len(), ranges.len(), "{label}");
        for ((content_range, data), (first, last)) in parts.iter().zip(ranges) {
            assert_eq!(
                content_range,
                &format!("bytes {first}-{last}/{SIZE}"),
                "{label}"
            );
            assert!(
                data[..] == expect(first, last)[..],
                "{label}: part {first}-{last}"
            );
        }
    }
}

/// Splits a multipart/byteranges body into (content-range, data) parts.
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delim = format!("--{boundary}");
    let end = format!("\r\n--{boundary}--\r\n");
    assert!(
        body.starts_with(delim.as_bytes()),
        "body does not start with the boundary"
    );
    assert!(
        body.ends_with(end.as_bytes()),
        "body does not end with the closing boundary"
    );
    let inner = &body[..body.len() - end.len()];
    let sep = format!("\r\n{delim}\r\n");
    let mut parts = Vec::new();
    let mut rest = &inner[delim.len() + 2..];
    loop {
        let split = rest.windows(sep.len()).position(|w| w == sep.as_bytes());
        let (part, next) = match split {
            Some(i) => (&rest[..i], Some(&rest[i + sep.len()..])),
            None => (rest, None),
        };
        let h = part
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("part headers");
        let headers = String::from_utf8(part[..h].to_vec()).unwrap();
        let range = headers
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-range:")
                    .map(|v| v.trim().to_owned())
            })
            .expect("content-range in part");
        parts.push((range, part[h + 4..].to_vec()));
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    parts
}

#[test]
fn zero_length_file_is_200_with_an_empty_body() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.txt"), b"").unwrap();
    std::fs::write(dir.path().join("after.txt"), b"after\n").unwrap();
    for (label, config) in PATHS {
        let server = start(dir.path(), config);
        let res = client().get(server.url("/empty.txt")).send().unwrap();
        assert_eq!(res.status(), 200, "{label}");
        assert_eq!(res.headers()["content-length"], "0", "{label}");
        assert!(res.bytes().unwrap().is_empty(), "{label}");
        // Raw, keep-alive: the next response starts right after the empty one.
        let raw = raw(
            server.addr,
            b"GET /empty.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /after.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let mut r = BufReader::new(&raw[..]);
        let h = read_head(&mut r);
        assert_eq!((h.status, h.content_length()), (200, 0), "{label}");
        let h = read_head(&mut r);
        assert_eq!((h.status, h.content_length()), (200, 6), "{label}");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"after\n", "{label}");
    }
}

/// A slow reader with a small window: correct bytes, and on the copying path
/// the server's memory stays bounded (at most two chunks in flight).
#[test]
fn slow_reader_gets_correct_bytes_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(64 << 20, 91);
    std::fs::write(dir.path().join("big.bin"), &data).unwrap();
    // Small, so no chunk buffer stays behind in the allocator to hide growth.
    std::fs::write(dir.path().join("warm.bin"), pseudo_random(64 << 10, 92)).unwrap();
    // 8 MiB chunks (the largest allowed): two in flight is 16 MiB, a third
    // would make 24, reading ahead unbounded 64. Allow two chunks + 4 MiB.
    let copy_8m = format!("{COPY}chunk-size = \"8m\"\n");
    for (label, config) in [("zero-copy", ZERO_COPY), ("copy 8m", copy_8m.as_str())] {
        let server = start(dir.path(), config);
        // Warm up the same code paths (blocking pool, buffers) first.
        for _ in 0..2 {
            client()
                .get(server.url("/warm.bin"))
                .send()
                .unwrap()
                .bytes()
                .unwrap();
        }
        let baseline = server.rss_kib();

        let s = connect_with_rcvbuf(server.addr, 32 << 10);
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        (&s).write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut r = BufReader::with_capacity(16 << 10, s);
        let head = read_head(&mut r);
        assert_eq!(head.content_length(), data.len() as u64, "{label}");
        let mut body = Vec::with_capacity(data.len());
        let mut buf = vec![0u8; 16 << 10];
        let mut peak = baseline;
        let slow_until = Instant::now() + Duration::from_secs(3);
        let mut reads = 0u32;
        while Instant::now() < slow_until {
            let n = r.read(&mut buf).unwrap();
            assert!(n > 0, "{label}: early EOF");
            body.extend_from_slice(&buf[..n]);
            std::thread::sleep(Duration::from_millis(2));
            reads += 1;
            if reads.is_multiple_of(25) {
                peak = peak.max(server.rss_kib());
            }
        }
        assert!(
            body.len() < data.len() / 2,
            "{label}: the reader was not slow ({} bytes)",
            body.len()
        );
        let (rest, how) = read_until_closed(&mut r);
        body.extend_from_slice(&rest);
        assert_eq!(how, "eof", "{label}");
        assert_eq!(body.len(), data.len(), "{label}");
        assert_eq!(sha256(&body), sha256(&data), "{label}");
        eprintln!("{label}: RSS {baseline} KiB before, peak {peak} KiB while slowly reading");
        assert!(
            peak < baseline + (20 << 10),
            "{label}: RSS grew from {baseline} KiB to {peak} KiB while a slow reader was served"
        );
    }
}
