//! HTTP/2 responses that are ready together leave together: sluice gathers
//! h2's frames into one write per batch (`http2::Coalesce`), where h2 alone
//! writes every response with a body on its own (one TLS record and one
//! `writev` each).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::h2raw::{
    frame, settings, window_update, ACK, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PREFACE,
    RST_STREAM, SETTINGS,
};
use crate::harness::{pseudo_random, Options, Server};

const FILES: u32 = 32;
const SIZE: usize = 4096;

/// The write system calls the server has made so far (`syscw` of
/// `/proc/PID/io`: `write` and `writev`, which is how every socket write of
/// the server is made).
fn writes(server: &Server) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{}/io", server.pid())).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("syscw:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `GET /NN.bin` over https, HPACK literals without indexing.
fn get(stream: u32, file: u32) -> Vec<u8> {
    let path = format!("/{file:02}.bin");
    let mut block = vec![0x82, 0x87, 0x01, 9];
    block.extend(b"localhost");
    block.extend([0x04, path.len() as u8]);
    block.extend(path.as_bytes());
    frame(HEADERS, END_STREAM | END_HEADERS, stream, &block)
}

/// Reads frames until every stream in `streams` has ended with DATA;
/// returns the DATA bytes received. Answers SETTINGS.
fn responses<S: Read + Write>(tls: &mut S, buf: &mut Vec<u8>, streams: u32) -> usize {
    let (mut ended, mut data) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut chunk = vec![0u8; 64 << 10];
    while ended < streams {
        assert!(Instant::now() < deadline, "{ended} of {streams} responses");
        let mut at = 0;
        while buf.len() >= at + 9 {
            let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
            if buf.len() < at + 9 + len {
                break;
            }
            let (kind, flags) = (buf[at + 3], buf[at + 4]);
            match kind {
                DATA => {
                    data += len;
                    if flags & END_STREAM != 0 {
                        ended += 1;
                    }
                }
                SETTINGS if flags & ACK == 0 => {
                    tls.write_all(&frame(SETTINGS, ACK, 0, &[])).unwrap()
                }
                RST_STREAM | GOAWAY => panic!("reset or GOAWAY: {:?}", &buf[at..at + 9 + len]),
                _ => {}
            }
            at += 9 + len;
        }
        buf.drain(..at);
        if ended < streams {
            let n = tls.read(&mut chunk).unwrap();
            assert!(n > 0, "the server closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    data
}

/// 32 requests for 4 KiB files in one TLS record, on a connection whose
/// earlier requests warmed the server's caches: their 32 responses (133 KiB
/// with frames and headers) leave in a handful of writes of up to 16 KiB of
/// records, not one write each. One worker, so that the streams' tasks all
/// run before the connection's task writes again (with two, a batch may be
/// split between workers, and the count would be the scheduler's).
/// Fails without `Coalesce` (h2 alone: 32 writes or more, one per response).
#[test]
fn small_responses_ready_together_leave_in_a_few_writes() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    for i in 0..FILES {
        std::fs::write(
            www.join(format!("{i:02}.bin")),
            pseudo_random(SIZE, u64::from(i)),
        )
        .unwrap();
    }
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let server = Server::start_with(
        &www,
        Options {
            tls: Some((&cert, &key)),
            workers: Some(1),
            ..Options::default()
        },
    );
    let addr: SocketAddr = server.tls.unwrap();

    let mut roots = RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);

    // A window for the connection as large as h2load's: the default
    // 64 KiB would hold the batch back for the client's updates.
    let mut hello = PREFACE.to_vec();
    hello.extend(settings(&[]));
    hello.extend(window_update(0, 1 << 30));
    let batch = |first: u32| -> Vec<u8> {
        (0..FILES)
            .flat_map(|i| get(first + 2 * i, i))
            .collect::<Vec<u8>>()
    };
    let mut buf = Vec::new();
    // Warm-up: every file once (policy decisions, open files, page cache).
    hello.extend(batch(1));
    tls.write_all(&hello).unwrap();
    assert_eq!(responses(&mut tls, &mut buf, FILES), FILES as usize * SIZE);

    let before = writes(&server);
    tls.write_all(&batch(1 + 2 * FILES)).unwrap();
    assert_eq!(responses(&mut tls, &mut buf, FILES), FILES as usize * SIZE);
    let made = writes(&server) - before;
    eprintln!("{FILES} responses of {SIZE} B: {made} writes");
    // 133 KiB in writes of 16 KiB is 9; a few more leave room for a batch
    // the scheduler splits. One write per response is 32.
    assert!(made <= 16, "{made} writes for {FILES} responses");
}
