//! Lifecycle: graceful shutdown on SIGTERM and SIGINT, with a real process,
//! real signals and real sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
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
