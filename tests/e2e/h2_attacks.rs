//! HTTP/2 clients that misbehave on purpose, written frame by frame
//! (`h2raw`): the server's memory stays bounded (asserted from
//! `/proc/PID/status`), every stalled stream or connection is cut, and a
//! well-behaved client is answered throughout.

use std::time::{Duration, Instant};

use crate::h2raw::*;
use crate::harness::*;

const BIG: usize = 16 << 20;

fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.bin"), pseudo_random(BIG, 31)).unwrap();
    std::fs::write(dir.path().join("small.txt"), "small\n").unwrap();
    dir
}

/// A client that keeps no connection open after its request.
fn one_shot(limit: Duration) -> reqwest::blocking::Client {
    install_ring();
    reqwest::blocking::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(limit)
        .build()
        .unwrap()
}

/// Whether the server closes `conn` within `limit` (whatever it sent
/// first is read and dropped).
fn closed_by_server(conn: &Conn, limit: Duration) -> bool {
    use std::io::Read;
    let mut tcp = conn.tcp.try_clone().unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    while start.elapsed() < limit {
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// A well-behaved client gets its small file (within `limit`).
fn control_answered(server: &Server, limit: Duration) {
    let client = one_shot(limit);
    let res = client.get(server.url("/small.txt")).send().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().unwrap(), "small\n");
}

/// The server's RSS now, less `baseline`, KiB.
fn grown(server: &Server, baseline: u64) -> u64 {
    server.rss_kib().saturating_sub(baseline)
}

/// Warms the server up (one whole file on each path), then its RSS.
fn baseline(server: &Server) -> u64 {
    let body = one_shot(Duration::from_secs(60))
        .get(server.url("/big.bin"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(body.len(), BIG);
    control_answered(server, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    server.rss_kib()
}

/// 128 streams per connection for a 16 MiB file, with
/// `SETTINGS_INITIAL_WINDOW_SIZE = 0`; the client reads the socket (and
/// answers pings: it keeps the connection alive) but never grants a window.
/// Under hyper's HTTP/2 server each stream held about two chunks (16
/// connections: ~1 GiB); here a stream reads nothing it cannot send, and is
/// reset at the send timeout.
#[test]
fn streams_granted_no_window_hold_no_body_and_are_reset_at_the_send_timeout() {
    const CONNS: usize = 16;
    const STREAMS: u32 = 128;
    let dir = site();
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some("send-timeout-ms = 3000\n"),
            ..Options::default()
        },
    );
    let baseline = baseline(&server);
    let conns: Vec<(Conn, Drain)> = (0..CONNS)
        .map(|_| {
            let mut c = Conn::open(server.addr, &[(INITIAL_WINDOW_SIZE, 0)]);
            let drain = c.drain(true);
            let mut out = Vec::new();
            for i in 0..STREAMS {
                out.extend(get(1 + 2 * i, "/big.bin"));
            }
            assert!(c.send(&out));
            (c, drain)
        })
        .collect();
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(20), || conns
            .iter()
            .all(|(_, d)| d.seen().responses == STREAMS as usize)),
        "every stream is answered its head"
    );
    // Give the server time to read what it would read (well within the
    // send timeout).
    std::thread::sleep(Duration::from_millis(1000));
    if started.elapsed() < Duration::from_millis(2500) {
        let grew = grown(&server, baseline);
        eprintln!(
            "{CONNS} connections x {STREAMS} zero-window streams: RSS +{} MiB",
            grew >> 10
        );
        assert!(
            grew < 32 << 10,
            "RSS grew by {grew} KiB for {} streams granted no window",
            CONNS * STREAMS as usize
        );
        assert_eq!(server.stat("body_memory_in_use"), 0);
    }
    control_answered(&server, Duration::from_secs(10));
    assert!(
        eventually(Duration::from_secs(30), || conns.iter().all(|(_, d)| d
            .seen()
            .resets
            .get(&CANCEL)
            == Some(&(STREAMS as usize)))),
        "every stalled stream is reset at the send timeout: {:?}",
        conns[0].1.seen()
    );
    assert!(server.stat("h2_streams_stalled") >= (CONNS * STREAMS as usize) as u64);
    assert!(conns.iter().all(|(_, d)| d.seen().data == 0));
    control_answered(&server, Duration::from_secs(10));
}

/// Connections that open every window wide and then never read the socket:
/// each holds at most its share of the body budget, all of them at most the
/// budget; while the budget has room a well-behaved client is served at
/// once, and when stalled connections have spent it, it is served as soon
/// as the send timeout cuts them.
#[test]
fn clients_that_stop_reading_hold_at_most_their_share_and_the_budget() {
    const SHARE: u64 = 4 << 20;
    const BUDGET: u64 = 24 << 20;
    let dir = site();
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some(
                "send-timeout-ms = 8000\n[limits]\nbody-memory = \"24m\"\n\
                 body-memory-per-connection = \"4m\"\n",
            ),
            ..Options::default()
        },
    );
    assert_eq!(server.stat("body_memory_limit"), BUDGET);
    let baseline = baseline(&server);
    let stalled = |n: usize| -> Vec<Conn> {
        (0..n)
            .map(|_| {
                let mut c = Conn::open(server.addr, &[(INITIAL_WINDOW_SIZE, 0x7fff_ffff)]);
                let mut out = window_update(0, 0x7fff_ffff - 65_535);
                for i in 0..128 {
                    out.extend(get(1 + 2 * i, "/big.bin"));
                }
                assert!(c.send(&out));
                c
            })
            .collect()
    };
    // Five connections: 20 MiB of shares, within the 24 MiB budget.
    let first = stalled(5);
    let mut most = 0;
    assert!(
        eventually(Duration::from_secs(20), || {
            let in_use = server.stat("body_memory_in_use");
            most = most.max(in_use);
            in_use >= 5 * SHARE - (1 << 20)
        }),
        "the stalled connections fill their shares: at most {most} bytes held"
    );
    assert!(server.stat("body_memory_in_use") <= 5 * SHARE);
    let t = Instant::now();
    control_answered(&server, Duration::from_secs(10));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "with budget to spare, the control client does not wait for the send timeout"
    );
    // Seven more: the budget is spent.
    let second = stalled(7);
    assert!(eventually(Duration::from_secs(10), || server
        .stat("body_memory_in_use")
        == BUDGET));
    let grew = grown(&server, baseline);
    eprintln!(
        "12 connections that stopped reading: RSS +{} MiB",
        grew >> 10
    );
    assert!(
        grew < (BUDGET >> 10) + (32 << 10),
        "RSS grew by {grew} KiB with a {} KiB body budget",
        BUDGET >> 10
    );
    // The control client waits its turn: the stalled connections are cut
    // at the send timeout, and it is served.
    control_answered(&server, Duration::from_secs(30));
    // (Reading their sockets to see them closed would let them go on.)
    assert!(
        eventually(Duration::from_secs(30), || server
            .metric("sluice_open_connections")
            == 0.0),
        "the stalled connections are closed at the send timeout"
    );
    assert!(eventually(Duration::from_secs(10), || server
        .stat("body_memory_in_use")
        == 0));
    server.expect_log("send timeout");
    drop((first, second));
}

/// Rapid reset (CVE-2023-44487): streams opened and reset at once, by the
/// thousand. The server stays bounded and answers others.
#[test]
fn rapid_reset_is_bounded() {
    let dir = site();
    let server = Server::start(dir.path());
    let baseline = baseline(&server);
    let mut c = Conn::open(server.addr, &[]);
    c.tcp
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let drain = c.drain(true);
    let mut sent = 0;
    'flood: for batch in 0..100u32 {
        let mut out = Vec::new();
        for i in 0..100u32 {
            let stream = 1 + 2 * (batch * 100 + i);
            out.extend(get(stream, "/big.bin"));
            out.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
        }
        if !c.send(&out) {
            break 'flood;
        }
        sent += 100;
    }
    control_answered(&server, Duration::from_secs(10));
    let grew = grown(&server, baseline);
    assert!(grew < 32 << 10, "RSS grew by {grew} KiB");
    let seen = drain.seen();
    eprintln!("rapid reset: {sent} streams sent; server: {seen:?}");
    drop(drain);
}

/// "MadeYouReset" (CVE-2025-8671): requests the *server* must reset (a
/// request without `:path` is malformed: a stream error, RFC 9113 §8.1.1),
/// thousands of them. The server resets a bounded number, then sends
/// GOAWAY ENHANCE_YOUR_CALM and closes.
#[test]
fn resets_the_server_is_made_to_send_end_in_goaway() {
    let dir = site();
    let server = Server::start(dir.path());
    let mut c = Conn::open(server.addr, &[]);
    c.tcp
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let drain = c.drain(true);
    // :method GET, :scheme http, :authority localhost; no :path.
    let mut malformed = vec![0x82, 0x86, 0x01, 9];
    malformed.extend(b"localhost");
    for batch in 0..30u32 {
        let mut out = Vec::new();
        for i in 0..100u32 {
            let stream = 1 + 2 * (batch * 100 + i);
            out.extend(frame(HEADERS, END_STREAM | END_HEADERS, stream, &malformed));
        }
        if !c.send(&out) {
            break;
        }
    }
    assert!(
        eventually(Duration::from_secs(20), || drain.seen().goaway
            == Some(ENHANCE_YOUR_CALM)),
        "{:?}",
        drain.seen()
    );
    let resets: usize = drain.seen().resets.values().sum();
    assert!(resets <= 1100, "{resets} resets before the GOAWAY");
    assert!(closed_by_server(&c, Duration::from_secs(20)));
    control_answered(&server, Duration::from_secs(10));
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, prefix: u8, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// One literal header field without indexing, new name.
fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    hpack_int(out, 0, 7, name.len());
    out.extend(name);
    hpack_int(out, 0, 7, value.len());
    out.extend(value);
}

/// A header block that never ends: HEADERS without END_HEADERS, then
/// CONTINUATION frames of valid literals (160 MiB if all were taken). The
/// header list is bounded (16 KiB), so the server refuses it long before.
#[test]
fn a_continuation_flood_is_cut() {
    let dir = site();
    let server = Server::start(dir.path());
    let baseline = baseline(&server);
    let mut c = Conn::open(server.addr, &[]);
    c.tcp
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let drain = c.drain(true);
    let mut piece = Vec::new();
    while piece.len() < 16_000 {
        hpack_literal(&mut piece, b"x-flood", &[b'a'; 100]);
    }
    assert!(c.send(&frame(HEADERS, END_STREAM, 1, &get_block("/small.txt"))));
    let mut sent = 0usize;
    for _ in 0..10_000 {
        if !c.send(&frame(CONTINUATION, 0, 1, &piece)) {
            break;
        }
        sent += piece.len();
    }
    assert!(
        eventually(Duration::from_secs(20), || {
            let s = drain.seen();
            s.closed || s.goaway.is_some() || !s.resets.is_empty()
        }),
        "the header block is refused: {:?}",
        drain.seen()
    );
    let grew = grown(&server, baseline);
    assert!(
        grew < 32 << 10,
        "RSS grew by {grew} KiB after {sent} bytes of CONTINUATION"
    );
    control_answered(&server, Duration::from_secs(10));
}

/// HPACK amplification: one 4,000-byte field in the dynamic table,
/// referenced 4,000 times by a one-byte index (16 MB decoded from 8 KB).
#[test]
fn an_hpack_bomb_is_refused() {
    let dir = site();
    let server = Server::start(dir.path());
    let baseline = baseline(&server);
    let mut c = Conn::open(server.addr, &[]);
    let drain = c.drain(true);
    let mut block = get_block("/small.txt");
    // Literal with incremental indexing, new name.
    block.push(0x40);
    hpack_int(&mut block, 0, 7, 6);
    block.extend(b"x-bomb");
    hpack_int(&mut block, 0, 7, 4000);
    block.extend([b'b'; 4000]);
    // The first dynamic entry is index 62.
    block.extend(std::iter::repeat_n(0x80 | 62, 4000));
    assert!(c.send(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block)));
    assert!(
        eventually(Duration::from_secs(20), || {
            let s = drain.seen();
            s.closed || s.goaway.is_some() || !s.resets.is_empty() || s.responses > 0
        }),
        "{:?}",
        drain.seen()
    );
    let s = drain.seen();
    assert!(
        s.data < 100,
        "the bomb was not answered as a request: {s:?}"
    );
    let grew = grown(&server, baseline);
    assert!(grew < 32 << 10, "RSS grew by {grew} KiB");
    control_answered(&server, Duration::from_secs(10));
}

/// PING and SETTINGS floods from a client that reads nothing back: the
/// server's answers cannot pile up without bound.
#[test]
fn ping_and_settings_floods_are_bounded() {
    let dir = site();
    let server = Server::start(dir.path());
    let baseline = baseline(&server);
    for flood in [
        frame(PING, 0, 0, &[7; 8]),
        settings(&[(INITIAL_WINDOW_SIZE, 65_535)]),
    ] {
        let mut c = Conn::open(server.addr, &[]);
        c.tcp
            .set_write_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let batch: Vec<u8> = std::iter::repeat_n(flood.clone(), 1000).flatten().collect();
        let started = Instant::now();
        let mut sent = 0;
        // 200,000 frames, or until the server stops reading (TCP pushes
        // back: a write times out) or closes.
        while sent < 200_000 && started.elapsed() < Duration::from_secs(60) {
            if !c.send(&batch) {
                break;
            }
            sent += 1000;
        }
        let grew = grown(&server, baseline);
        assert!(
            grew < 32 << 10,
            "RSS grew by {grew} KiB after {sent} frames"
        );
        control_answered(&server, Duration::from_secs(10));
    }
}
