//! Lifecycle: graceful shutdown on SIGTERM and SIGINT, socket activation,
//! the header, keep-alive and send timeouts and the connection cap, with a
//! real process, real signals and real sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::harness::*;

const BIG: usize = 16 << 20;

fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.bin"), pseudo_random(BIG, 7)).unwrap();
    std::fs::write(dir.path().join("small.txt"), "small").unwrap();
    dir
}

/// Sends a keep-alive GET and reads the head; returns the reader positioned
/// at the body and the body's length.
fn start_get(addr: std::net::SocketAddr, path: &str) -> (BufReader<TcpStream>, usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut len = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        if line == "\r\n" {
            return (r, len);
        }
    }
}

#[test]
fn sigterm_lets_transfers_in_flight_finish_and_refuses_new_ones() {
    for signal in ["TERM", "INT"] {
        let dir = site();
        let mut server = Server::start_with(
            dir.path(),
            Options {
                config: Some("[transfer]\nzero-copy = false\n"),
                ..Options::default()
            },
        );
        // A download in flight, read slowly, and an idle keep-alive connection.
        let (mut download, len) = start_get(server.addr, "/big.bin");
        assert_eq!(len, BIG);
        let mut first = vec![0; 64 << 10];
        download.read_exact(&mut first).unwrap();
        let (mut idle, small) = start_get(server.addr, "/small.txt");
        let mut body = vec![0; small];
        idle.read_exact(&mut body).unwrap();

        server.signal(signal);
        // New connections are refused once the listener is closed.
        assert!(
            eventually(Duration::from_secs(10), || TcpStream::connect(server.addr)
                .is_err()),
            "SIG{signal}: still accepting"
        );
        // The idle connection is closed rather than waited for.
        let mut rest = Vec::new();
        let _ = idle.read_to_end(&mut rest);
        assert!(rest.is_empty(), "SIG{signal}: idle connection got {rest:?}");
        // The download in flight finishes, byte for byte.
        let mut all = first;
        download.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), BIG, "SIG{signal}: truncated download");
        assert_eq!(sha256(&all), sha256(&pseudo_random(BIG, 7)));
        // Then the process exits, cleanly.
        let status = server.wait_exit(Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| s.success()),
            "SIG{signal}: {status:?}\n{}",
            server.logs()
        );
        assert!(
            server.logs().contains("shutdown requested"),
            "{}",
            server.logs()
        );
    }
}

#[test]
fn a_stalled_transfer_is_cut_at_the_grace_period() {
    let dir = site();
    let mut server = Server::start_with(
        dir.path(),
        Options {
            config: Some("shutdown-timeout-ms = 500\n"),
            ..Options::default()
        },
    );
    // A reader that never reads past the head: the transfer cannot finish.
    let (_stalled, len) = start_get(server.addr, "/big.bin");
    assert_eq!(len, BIG);
    let start = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "it waited for the grace period"
    );
    assert!(
        server.logs().contains("grace period over") || !server.alive(),
        "{}",
        server.logs()
    );
}

/// The descriptor's flags as the kernel reports them (`O_CLOEXEC` is 0o2000000).
fn fd_flags(pid: u32, fd: i32) -> u32 {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap();
    u32::from_str_radix(flags.trim(), 8).unwrap()
}

/// A started server answers on `addr`.
fn answers(addr: SocketAddr) -> bool {
    raw_status(&raw_get(addr, "/small.txt")) == 200
}

#[test]
fn socket_activation_serves_on_the_sockets_handed_over() {
    let dir = site();
    // By position: fd 3 is the plain listener.
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Server::start_with(
        dir.path(),
        Options {
            activate: &[http.as_fd()],
            ..Options::default()
        },
    );
    assert_eq!(server.addr, http.local_addr().unwrap(), "{}", server.logs());
    assert!(answers(server.addr));
    server.expect_log("passed by socket activation");
    // Taken over close-on-exec, as sd_listen_fds does.
    assert_ne!(fd_flags(server.pid(), 3) & 0o2000000, 0);
    drop(server);

    // By name: the admin socket first, then the plain one.
    let (admin, http) = (
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let server = Server::start_with(
        dir.path(),
        Options {
            activate: &[admin.as_fd(), http.as_fd()],
            fd_names: Some("admin:http"),
            ..Options::default()
        },
    );
    assert_eq!(server.addr, http.local_addr().unwrap());
    assert_eq!(server.admin, admin.local_addr().unwrap());
    assert!(answers(server.addr));
    assert!(server.stat("requests") >= 1);
}

#[test]
fn socket_activation_refuses_what_is_not_a_listening_tcp_socket() {
    let dir = site();
    let bin = sluice_bin();
    let bin = bin.as_path();
    let run = |fds: &[std::os::fd::BorrowedFd<'_>], names: Option<&str>| {
        let out = activated(bin, fds, names)
            .arg("serve")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = run(&[udp.as_fd()], None);
    assert!(
        err.contains("fd 3 (http) is not a listening TCP socket"),
        "{err}"
    );
    // A connected (not listening) TCP socket.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let connected = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let err = run(&[connected.as_fd()], None);
    assert!(err.contains("not listening"), "{err}");
    // An https socket without a certificate.
    let (a, b) = (
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let err = run(&[a.as_fd(), b.as_fd()], Some("http:https"));
    assert!(err.contains("no tls-cert"), "{err}");
}

/// Waits for the server to close `s` (EOF or reset); how long it took.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!("not closed within {limit:?}: {e}"),
        }
    }
}

/// A keep-alive connection that has had one whole exchange.
fn served_connection(addr: SocketAddr) -> TcpStream {
    let (mut r, len) = start_get(addr, "/small.txt");
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    assert_eq!(body, b"small");
    r.into_inner()
}

#[test]
fn slowloris_connections_are_closed_at_the_header_timeout_without_starving_others() {
    let dir = site();
    let server = Server::start_with(
        dir.path(),
        Options {
            // The first request's own limit (handshake-timeout-ms) is long,
            // so only the header timeout can close them.
            config: Some("header-timeout-ms = 1000\nhandshake-timeout-ms = 60000\n"),
            ..Options::default()
        },
    );
    let baseline = server.open_fds();
    // 2000 connections, each with half a header (the process' descriptor
    // limit here is 20000).
    const N: usize = 2000;
    let mut loris: Vec<TcpStream> = (0..N)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(b"GET /small.txt HTTP/1.1\r\nHost: local")
                .unwrap();
            s
        })
        .collect();
    // A normal client is still served while they are all held.
    assert!(answers(server.addr));
    // And each of them is closed at the header timeout.
    for s in &mut loris {
        closed_within(s, Duration::from_secs(20));
    }
    assert!(
        eventually(Duration::from_secs(10), || server
            .metric("sluice_open_connections")
            == 0.0),
        "connections still counted open"
    );
    assert!(
        eventually(Duration::from_secs(10), || server.open_fds()
            <= baseline + 2),
        "descriptors leaked: {} -> {}",
        baseline,
        server.open_fds()
    );
    server.expect_log("header read timeout");

    // On a keep-alive connection too: after one exchange, a header trickled
    // a byte at a time is cut at the header timeout after its first byte.
    let mut s = served_connection(server.addr);
    let start = Instant::now();
    let trickle = b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let mut cut = false;
    for b in trickle.iter().cycle().take(200) {
        if s.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = start.elapsed() + closed_within(&mut s, Duration::from_secs(20));
    assert!(cut || elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed early: {elapsed:?}"
    );
}

#[test]
fn idle_keepalive_connections_are_closed_at_the_keepalive_timeout_not_the_header_one() {
    let dir = site();
    // Idle past the header timeout is fine: only keep-alive applies.
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some("header-timeout-ms = 300\nkeepalive-timeout-ms = 3000\n"),
            ..Options::default()
        },
    );
    let mut s = served_connection(server.addr);
    std::thread::sleep(Duration::from_millis(1000));
    write!(s, "GET /small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status:?}");
    drop(r);

    // Idle past the keep-alive timeout is not.
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some("keepalive-timeout-ms = 1000\n"),
            ..Options::default()
        },
    );
    let mut s = served_connection(server.addr);
    let idle = closed_within(&mut s, Duration::from_secs(20));
    assert!(idle >= Duration::from_millis(900), "closed early: {idle:?}");
    server.expect_log("idle keep-alive timeout");
    assert!(eventually(Duration::from_secs(10), || server
        .metric("sluice_open_connections")
        == 0.0));
}

#[test]
fn a_reader_that_stops_reading_is_closed_at_the_send_timeout() {
    const LARGE: usize = 48 << 20;
    let dir = site();
    std::fs::write(dir.path().join("large.bin"), pseudo_random(LARGE, 9)).unwrap();
    // The sendfile path, then the copying path.
    for zero_copy in [true, false] {
        let server = Server::start_with(
            dir.path(),
            Options {
                config: Some(&format!(
                    "send-timeout-ms = 1000\n[transfer]\nzero-copy = {zero_copy}\n"
                )),
                ..Options::default()
            },
        );
        let path = if zero_copy { "sendfile" } else { "copy" };
        let before = server.metric(&format!("sluice_body_bytes_total{{path=\"{path}\"}}"));
        // After the first scrape: its keep-alive connection stays open.
        let baseline = server.open_fds();
        // Reads the head and a little of the body, then nothing.
        let (mut r, len) = start_get(server.addr, "/large.bin");
        assert_eq!(len, LARGE);
        let mut first = vec![0; 64 << 10];
        r.read_exact(&mut first).unwrap();
        assert!(
            eventually(Duration::from_secs(20), || server
                .metric("sluice_open_connections")
                == 0.0),
            "zero-copy {zero_copy}: the stalled connection is still open\n{}",
            server.logs()
        );
        server.expect_log("send timeout");
        // The body was on the expected path, and it was cut short.
        let after = server.metric(&format!("sluice_body_bytes_total{{path=\"{path}\"}}"));
        assert!(
            after > before,
            "zero-copy {zero_copy}: not on the {path} path"
        );
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
        assert!(first.len() + rest.len() < LARGE);
        assert!(
            eventually(Duration::from_secs(10), || server.open_fds() <= baseline),
            "zero-copy {zero_copy}: descriptors leaked: {} -> {}",
            baseline,
            server.open_fds()
        );
    }
}

#[test]
fn at_the_connection_cap_new_clients_wait_until_one_closes() {
    let dir = site();
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some("max-connections = 2\n"),
            ..Options::default()
        },
    );
    // Set when the server starts serving, just after it prints its
    // listeners: eventually, not at once.
    assert!(eventually(Duration::from_secs(10), || server
        .metric("sluice_max_connections")
        == 2.0));
    let first = served_connection(server.addr);
    let second = served_connection(server.addr);
    // The third is accepted but waits for a slot, unanswered.
    let mut third = TcpStream::connect(server.addr).unwrap();
    write!(third, "GET /small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let mut buf = [0; 1];
    let waited = third.read(&mut buf);
    assert!(
        waited
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "served past the cap: {waited:?}"
    );
    assert!(server.metric("sluice_connection_cap_waits_total") >= 1.0);
    assert_eq!(server.metric("sluice_open_connections"), 2.0);
    // One closes: the third is accepted and answered.
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut r = BufReader::new(third);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status:?}");
    drop(second);
}

/// One HTTP/2 frame: length, type, flags, stream, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

#[test]
fn an_http2_reader_that_stops_reading_is_closed_at_the_send_timeout() {
    const LARGE: usize = 48 << 20;
    let dir = site();
    std::fs::write(dir.path().join("large.bin"), pseudo_random(LARGE, 9)).unwrap();
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some("send-timeout-ms = 1000\n"),
            ..Options::default()
        },
    );
    // h2c with prior knowledge, written by hand so that the client can stop
    // reading: windows opened wide (flow control is not what stops the
    // server), one GET, then nothing read.
    let mut s = TcpStream::connect(server.addr).unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE (4) = 2^31 - 1.
    out.extend(h2_frame(0x4, 0, 0, &[0, 4, 0x7f, 0xff, 0xff, 0xff]));
    // The connection's window too (WINDOW_UPDATE on stream 0).
    out.extend(h2_frame(
        0x8,
        0,
        0,
        &(0x7fff_ffffu32 - 65_535).to_be_bytes(),
    ));
    // HEADERS, END_STREAM | END_HEADERS: GET (static 2), http (6), then
    // :authority (1) and :path (4) as literals (HPACK, RFC 7541).
    let mut block = vec![0x82, 0x86, 0x41, 9];
    block.extend(b"localhost");
    block.extend([0x44, 10]);
    block.extend(b"/large.bin");
    out.extend(h2_frame(0x1, 0x5, 1, &block));
    s.write_all(&out).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || server
            .metric("sluice_open_connections")
            == 0.0),
        "the stalled h2 connection is still open\n{}",
        server.logs()
    );
    server.expect_log("send timeout");
    // It was served (over HTTP/2, so on the copying path) and cut short.
    assert!(server.metric("sluice_body_bytes_total{path=\"copy\"}") > 0.0);
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    assert!(all.len() < LARGE);
}

/// Reads what the server sends until `done` holds of it, the server closes,
/// or 10 s pass.
fn read_until(s: &mut TcpStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let mut all = Vec::new();
    let mut buf = [0; 4096];
    while !done(&all) && Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    all
}

/// Sends `bytes` a few at a time, `pause` apart.
fn trickle(s: &mut TcpStream, bytes: &[u8], piece: usize, pause: Duration) {
    for part in bytes.chunks(piece) {
        s.write_all(part).unwrap();
        std::thread::sleep(pause);
    }
}

/// The protocol of a plain connection is told from its first bytes without
/// taking them from the socket (a peek): when those bytes are only a part of
/// the HTTP/2 preface the server must wait for more, whether the client then
/// completes the preface (h2c, served), turns out to speak HTTP/1 (a method
/// starting with `P`), or stops (closed at the first-request timeout, as a
/// client that sends nothing is).
#[test]
fn a_preface_sent_in_pieces_is_told_and_silence_is_still_timed_out() {
    let dir = site();
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some("handshake-timeout-ms = 1500\nheader-timeout-ms = 60000\n"),
            ..Options::default()
        },
    );
    // h2c, the preface a byte at a time (24 pieces, 20 ms apart), then
    // SETTINGS and a GET in two pieces.
    let mut s = TcpStream::connect(server.addr).unwrap();
    trickle(
        &mut s,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        1,
        Duration::from_millis(20),
    );
    let mut rest = h2_frame(0x4, 0, 0, &[]);
    let mut block = vec![0x82, 0x86, 0x41, 9];
    block.extend(b"localhost");
    block.extend([0x44, 10]);
    block.extend(b"/small.txt");
    rest.extend(h2_frame(0x1, 0x5, 1, &block));
    trickle(&mut s, &rest, rest.len() / 2 + 1, Duration::from_millis(50));
    let got = read_until(&mut s, |b| b.windows(5).any(|w| w == b"small"));
    assert!(
        got.len() >= 9 && got[3] == 0x4,
        "not an HTTP/2 SETTINGS first: {got:?}"
    );
    assert!(got.windows(5).any(|w| w == b"small"), "no body: {got:?}");

    // HTTP/1 whose first bytes are also the preface's: `P`, then the rest.
    // It gets the answer the same request gets in one piece.
    let request = b"PUT /small.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n";
    let status = |s: &mut TcpStream| {
        let got = read_until(s, |b| b.windows(2).any(|w| w == b"\r\n"));
        String::from_utf8_lossy(&got)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    };
    let mut whole = TcpStream::connect(server.addr).unwrap();
    whole.write_all(request).unwrap();
    let expected = status(&mut whole);
    assert!(expected.starts_with("HTTP/1.1 "), "{expected:?}");
    for (piece, pause) in [(1, 20), (3, 50), (16, 100)] {
        let mut s = TcpStream::connect(server.addr).unwrap();
        trickle(&mut s, request, piece, Duration::from_millis(pause));
        assert_eq!(status(&mut s), expected, "sent {piece} bytes at a time");
    }

    // A part of the preface, then nothing; and nothing at all: both closed
    // at the first-request timeout (1.5 s), not before.
    for first in [&b"PRI * HTTP/2.0\r\n"[..], b""] {
        let mut s = TcpStream::connect(server.addr).unwrap();
        let start = Instant::now();
        s.write_all(first).unwrap();
        let elapsed = start.elapsed() + closed_within(&mut s, Duration::from_secs(20));
        assert!(
            elapsed >= Duration::from_millis(1400),
            "{first:?}: closed after {elapsed:?}"
        );
    }
    server.expect_log("no request in time");
}

/// A response without its `date` line (the only line that may differ
/// between two answers to the same request).
fn without_date(response: &[u8]) -> String {
    String::from_utf8_lossy(response)
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// An idle plain HTTP/1 connection is parked (hyper's state dropped after
/// `park-idle-ms`, 500 ms here, the socket kept): the client sees nothing of it. The next
/// request on it, alone or pipelined with another, gets the same bytes as
/// on a connection that was never idle, and it stays keep-alive.
#[test]
fn a_parked_idle_connection_answers_as_before() {
    let dir = site();
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some("park-idle-ms = 500\n"),
            ..Options::default()
        },
    );
    let request = b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let done = |n: usize| move |b: &[u8]| b.windows(5).filter(|w| *w == b"small").count() >= n;
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(request).unwrap();
    let first = read_until(&mut s, done(1));
    assert!(
        first.starts_with(b"HTTP/1.1 200"),
        "{}",
        without_date(&first)
    );
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1200)); // parked by now
        s.write_all(request).unwrap();
        assert_eq!(
            without_date(&read_until(&mut s, done(1))),
            without_date(&first)
        );
    }
    // Two requests in one write after a park: both answered, in order.
    std::thread::sleep(Duration::from_millis(1200));
    s.write_all(&[&request[..], &request[..]].concat()).unwrap();
    let two = read_until(&mut s, done(2));
    assert_eq!(
        without_date(&two),
        without_date(&[first.clone(), first.clone()].concat())
    );
    // Half a header, a park's time, then the rest: one answer.
    std::thread::sleep(Duration::from_millis(1200));
    s.write_all(&request[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    s.write_all(&request[10..]).unwrap();
    assert_eq!(
        without_date(&read_until(&mut s, done(1))),
        without_date(&first)
    );
    // A client that closes while parked is forgotten.
    drop(s);
    assert!(
        eventually(Duration::from_secs(10), || server
            .metric("sluice_open_connections")
            == 0.0),
        "the closed connection is still counted open"
    );
}

/// Idle keep-alive connections are parked (hyper's ~17 KiB of buffers and
/// state released) after `park-idle-ms` (500 ms here), each once, however many there are;
/// a busy one is not.
#[test]
fn idle_keepalive_connections_are_parked() {
    let dir = site();
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some("park-idle-ms = 500\n"),
            ..Options::default()
        },
    );
    let before = server.stat("parked_connections");
    const N: u64 = 500;
    let mut open = Vec::new();
    for _ in 0..N {
        let mut s = TcpStream::connect(server.addr).unwrap();
        served(&mut s);
        open.push(s);
    }
    // A busy connection (a request every 100 ms for 3 s) is not parked;
    // by then every idle one is, once.
    let mut busy = TcpStream::connect(server.addr).unwrap();
    for _ in 0..30 {
        served(&mut busy);
        std::thread::sleep(Duration::from_millis(100));
    }
    served(&mut busy);
    assert_eq!(server.stat("parked_connections") - before, N);
    // Idle, it is parked too.
    assert!(
        eventually(Duration::from_secs(10), || server
            .stat("parked_connections")
            == before + N + 1),
        "parked: {}",
        server.stat("parked_connections") - before
    );
    // Each still answers.
    for s in open.iter_mut().step_by(50) {
        served(s);
    }
    assert_eq!(server.metric("sluice_open_connections"), (N + 1) as f64);
}

/// `park-idle-ms` says when an idle connection is parked: at 2 s a client
/// pausing under a second between requests is not, an idle one is in the
/// end; 0 never parks (2 s is the default).
#[test]
fn park_idle_ms_decides_when_and_zero_never_parks() {
    let dir = site();
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some("park-idle-ms = 2000\n"),
            ..Options::default()
        },
    );
    let mut s = TcpStream::connect(server.addr).unwrap();
    for _ in 0..3 {
        served(&mut s);
        std::thread::sleep(Duration::from_millis(800));
    }
    served(&mut s);
    assert_eq!(server.stat("parked_connections"), 0);
    assert!(
        eventually(Duration::from_secs(10), || server
            .stat("parked_connections")
            == 1),
        "an idle connection was never parked"
    );
    served(&mut s);

    let never = Server::start_with(
        dir.path(),
        Options {
            config: Some("park-idle-ms = 0\n"),
            ..Options::default()
        },
    );
    let mut s = TcpStream::connect(never.addr).unwrap();
    served(&mut s);
    std::thread::sleep(Duration::from_millis(3000));
    served(&mut s);
    assert_eq!(never.stat("parked_connections"), 0);
}

/// Connections pausing less than `park-idle-ms` between requests are never
/// parked, and the park timer never wakes them: what parking is allowed to
/// cost a connection it does not park is nothing (a wake-up of each
/// connection every `park-idle-ms` made parking cost CPU per request even
/// where nothing parked, BENCHMARKS "Parking: the cause and the default").
/// Idle afterwards, each is parked once.
#[test]
fn connections_pausing_under_park_idle_ms_are_never_woken_to_park() {
    let dir = site();
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some("park-idle-ms = 2000\n"),
            ..Options::default()
        },
    );
    const N: u64 = 10;
    let mut open: Vec<TcpStream> = (0..N)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    // 5 s of requests every 250 ms on each: 2.5 times park-idle-ms.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        for s in open.iter_mut() {
            served(s);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(server.stat("parked_connections"), 0);
    assert_eq!(
        server.stat("park_checks"),
        0,
        "the park timer woke busy connections"
    );
    assert!(
        eventually(Duration::from_secs(15), || server
            .stat("parked_connections")
            == N),
        "parked: {}",
        server.stat("parked_connections")
    );
    for s in open.iter_mut() {
        served(s);
    }
}

/// Asks for /small.txt on a keep-alive connection and reads the 200.
fn served(s: &mut TcpStream) {
    s.write_all(b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let got = read_until(s, |b| b.ends_with(b"small"));
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
}
