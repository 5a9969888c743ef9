//! HTTPS (HTTP/1.1 and HTTP/2 by ALPN) and h2c: a self-signed certificate
//! made at test time (rcgen), reqwest and a raw hyper h2 client on rustls
//! (ring), and curl.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::harness::{eventually, pseudo_random, runtime, sha256, sluice_bin, Options, Server};

const BIG: usize = 8 << 20;
const STREAM_FILE: usize = 4 << 20;

/// A self-signed certificate and its key, written as PEM files.
struct Pair {
    cert: PathBuf,
    key: PathBuf,
    pem: String,
    key_pem: String,
}

impl Pair {
    /// A new certificate for `names`, written to `dir/stem.pem` and
    /// `dir/stem.key` (replacing what is there: a renewal).
    fn write(dir: &Path, stem: &str, names: &[&str]) -> Pair {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let pair = Pair {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
            pem: ck.cert.pem(),
            key_pem: ck.signing_key.serialize_pem(),
        };
        pair.restore();
        pair
    }

    /// Writes this pair's files (again).
    fn restore(&self) {
        std::fs::write(&self.cert, &self.pem).unwrap();
        std::fs::write(&self.key, &self.key_pem).unwrap();
    }

    /// The certificate, DER.
    fn der(&self) -> rustls_pki_types::CertificateDer<'static> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap()
    }

    /// A rustls client trusting only this certificate, offering `alpn`.
    fn client_config(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A directory with the files, a certificate for 127.0.0.1/localhost and its key.
struct Site {
    dir: tempfile::TempDir,
    pair: Pair,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let www = dir.path().join("www");
        std::fs::create_dir(&www).unwrap();
        std::fs::write(www.join("big.bin"), pseudo_random(BIG, 9)).unwrap();
        std::fs::write(www.join("stream.bin"), pseudo_random(STREAM_FILE, 10)).unwrap();
        std::fs::write(www.join("text.txt"), text()).unwrap();
        let pair = Pair::write(dir.path(), "cert", &["localhost", "127.0.0.1"]);
        Site { dir, pair }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("www")
    }
    fn cert(&self) -> PathBuf {
        self.pair.cert.clone()
    }
    fn key(&self) -> PathBuf {
        self.pair.key.clone()
    }

    fn start(&self, config: Option<&str>) -> Server {
        let (cert, key) = (self.cert(), self.key());
        Server::start_with(
            &self.root(),
            Options {
                tls: Some((&cert, &key)),
                config,
                ..Options::default()
            },
        )
    }

    /// A rustls client trusting only this site's certificate, offering `alpn`.
    fn client_config(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        self.pair.client_config(alpn)
    }

    fn reqwest(&self, h2: bool) -> reqwest::blocking::Client {
        crate::harness::install_ring();
        let builder = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60));
        let builder = if h2 {
            builder
                .tls_backend_preconfigured((*self.client_config(&[b"h2"])).clone())
                .http2_prior_knowledge()
        } else {
            builder
                .tls_backend_preconfigured((*self.client_config(&[b"http/1.1"])).clone())
                .http1_only()
        };
        builder.build().unwrap()
    }
}

fn text() -> String {
    (0..20_000)
        .map(|i| format!("line {i}: the quick brown fox\n"))
        .collect()
}

fn https(server: &Server, path: &str) -> String {
    format!("https://localhost:{}{path}", server.tls.unwrap().port())
}

#[test]
fn https_over_http1_and_http2_serves_files_ranges_and_compression() {
    let site = Site::new();
    let server = site.start(None);
    let big = pseudo_random(BIG, 9);
    for (h2, version) in [
        (false, reqwest::Version::HTTP_11),
        (true, reqwest::Version::HTTP_2),
    ] {
        let client = site.reqwest(h2);
        // A large file, byte-identical.
        let res = client.get(https(&server, "/big.bin")).send().unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.version(), version);
        let body = res.bytes().unwrap();
        assert_eq!(sha256(&body), sha256(&big), "{version:?}");

        // One range.
        let res = client
            .get(https(&server, "/big.bin"))
            .header("range", "bytes=1000-1999")
            .send()
            .unwrap();
        assert_eq!(res.status(), 206);
        assert_eq!(&res.bytes().unwrap()[..], &big[1000..2000]);

        // Several: multipart/byteranges.
        let res = client
            .get(https(&server, "/big.bin"))
            .header("range", "bytes=0-9,5000000-5000009")
            .send()
            .unwrap();
        assert_eq!(res.status(), 206);
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("multipart/byteranges; boundary="), "{ct}");
        let body = res.bytes().unwrap();
        let find = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
        assert!(find(&big[0..10]) && find(&big[5_000_000..5_000_010]));
        assert!(
            find(b"content-range: bytes 5000000-5000009/8388608")
                || find(b"Content-Range: bytes 5000000-5000009/8388608")
        );

        // Compression on the fly.
        let res = client
            .get(https(&server, "/text.txt"))
            .header("accept-encoding", "gzip")
            .send()
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-encoding"], "gzip");
        let gz = res.bytes().unwrap();
        let mut plain = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain)
            .unwrap();
        assert_eq!(plain, text());
    }
    // The plain listener still serves beside it, zero-copy.
    let res = crate::harness::client()
        .get(server.url("/big.bin"))
        .send()
        .unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_11);
    assert_eq!(sha256(&res.bytes().unwrap()), sha256(&big));
    assert!(server.stat("sendfile_bytes") >= BIG as u64);
}

fn curl(args: &[&str], out: &Path) -> String {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-o"])
        .arg(out)
        .args(["-w", "%{http_code} %{http_version}"])
        .args(args)
        .output()
        .expect("curl is installed (tests/run)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn curl_speaks_http2_over_tls_and_h2c_prior_knowledge() {
    let site = Site::new();
    let server = site.start(None);
    let big = sha256(&pseudo_random(BIG, 9));
    let out = site.dir.path().join("out");
    let tls = server.tls.unwrap();
    let url = format!("https://127.0.0.1:{}/big.bin", tls.port());
    assert_eq!(curl(&["-k", "--http2", &url], &out), "200 2");
    assert_eq!(sha256(&std::fs::read(&out).unwrap()), big);
    assert_eq!(curl(&["-k", "--http1.1", &url], &out), "200 1.1");
    assert_eq!(sha256(&std::fs::read(&out).unwrap()), big);
    // Range and multipart over h2.
    assert_eq!(curl(&["-k", "--http2", "-r", "10-19", &url], &out), "206 2");
    assert_eq!(std::fs::read(&out).unwrap(), pseudo_random(BIG, 9)[10..20]);
    assert_eq!(
        curl(&["-k", "--http2", "-r", "0-1,10-19", &url], &out),
        "206 2"
    );
    // h2c on the plain port, HTTP/1.1 there too.
    let plain = server.url("/big.bin");
    assert_eq!(curl(&["--http2-prior-knowledge", &plain], &out), "200 2");
    assert_eq!(sha256(&std::fs::read(&out).unwrap()), big);
    let text = server.url("/text.txt");
    assert_eq!(
        curl(&["--http2-prior-knowledge", "--compressed", &text], &out),
        "200 2"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), self::text());
    assert_eq!(curl(&[&plain], &out), "200 1.1");
    assert_eq!(sha256(&std::fs::read(&out).unwrap()), big);
}

/// One TLS connection speaking HTTP/2, for driving streams by hand.
async fn h2_connect(
    site: &Site,
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    h2_connect_to(&site.pair, "localhost", addr).await
}

/// An HTTP/2 connection whose handshake names `sni` and trusts only `pair`.
async fn h2_connect_to(
    pair: &Pair,
    sni: &str,
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(pair.client_config(&[b"h2"]))
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

fn get(path: &str) -> hyper::Request<Empty<Bytes>> {
    hyper::Request::get(format!("https://localhost{path}"))
        .body(Empty::new())
        .unwrap()
}

/// 100 streams on one connection, each downloading a 4 MiB file: all
/// byte-identical, and the server's memory stays within the stated bound
/// (128 streams x 2 chunks of 256 KiB = 64 MiB of body buffers at most).
#[test]
fn a_hundred_concurrent_h2_streams_on_one_connection() {
    let site = Site::new();
    let server = site.start(None);
    let want = sha256(&pseudo_random(STREAM_FILE, 10));
    let before = server.rss_kib();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(before));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (peak.clone(), done.clone(), server.pid());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
                let rss: u64 = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    .unwrap();
                peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let hashes = runtime().block_on(async {
        let send = h2_connect(&site, server.tls.unwrap()).await;
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let mut send = send.clone();
                tokio::spawn(async move {
                    use sha2::Digest;
                    let res = send.send_request(get("/stream.bin")).await.unwrap();
                    assert_eq!(res.status(), 200);
                    assert_eq!(res.version(), hyper::Version::HTTP_2);
                    let mut body = res.into_body();
                    let mut hash = sha2::Sha256::new();
                    while let Some(frame) = body.frame().await {
                        if let Ok(data) = frame.unwrap().into_data() {
                            hash.update(&data);
                        }
                    }
                    format!("{:x}", hash.finalize())
                })
            })
            .collect();
        let mut hashes = Vec::new();
        for t in tasks {
            hashes.push(t.await.unwrap());
        }
        hashes
    });
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(hashes.len(), 100);
    assert!(hashes.iter().all(|h| *h == want));
    let grew = peak.load(std::sync::atomic::Ordering::Relaxed) - before;
    eprintln!("100 h2 streams x 4 MiB: server RSS grew by {grew} KiB at most");
    // The bound is 64 MiB of body buffers plus fixed costs; 96 MiB leaves
    // room for allocator slack, not for a leak of 100 x 4 MiB.
    assert!(grew < 96 << 10, "server RSS grew by {grew} KiB");
}

/// Streams reset mid-transfer, a connection dropped mid-body, a client that
/// stalls after the handshake and one that never starts it: the server
/// closes or forgets them all and its descriptors return to the baseline.
#[test]
fn resets_and_stalls_leak_nothing() {
    let site = Site::new();
    let server = site.start(Some("handshake-timeout-ms = 1000\n"));
    let tls_addr = server.tls.unwrap();
    // Warm the open-file cache, so its descriptors are in the baseline.
    let warm = site.reqwest(true);
    for p in ["/big.bin", "/stream.bin"] {
        assert_eq!(warm.get(https(&server, p)).send().unwrap().status(), 200);
    }
    drop(warm);
    // The baseline is taken once the warm-up connection is gone; the
    // descriptors it counts (listeners, runtime, cache) vary by a few
    // between machines, so no fixed count is assumed.
    assert!(
        eventually(Duration::from_secs(20), || server.tcp_connections() == 0),
        "the warm-up connection is still open: {} TCP connections",
        server.tcp_connections()
    );
    let baseline = server.open_fds();

    runtime().block_on(async {
        let send = h2_connect(&site, tls_addr).await;
        // 20 streams: read a little of each, then drop it (RST_STREAM CANCEL).
        for _ in 0..20 {
            let res = send.clone().send_request(get("/big.bin")).await.unwrap();
            let mut body = res.into_body();
            let first = body.frame().await.unwrap().unwrap();
            assert!(first.is_data());
            drop(body);
        }
        // The connection still serves whole files after that.
        let res = send.clone().send_request(get("/stream.bin")).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), STREAM_FILE);
        drop(send);

        // HTTP/1.1 over TLS: the client drops the connection mid-body.
        let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(site.client_config(&[b"http/1.1"]))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut send1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let res = send1.send_request(get("/big.bin")).await.unwrap();
        let mut body = res.into_body();
        assert!(body.frame().await.unwrap().unwrap().is_data());
        drop(body);
        drop(send1);
        conn.abort();

        // Stalls: one completes the handshake then says nothing; one never
        // even starts the handshake. The server closes both (EOF to us).
        let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
        let mut stalled = tokio_rustls::TlsConnector::from(site.client_config(&[b"h2"]))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let mut silent = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(30), stalled.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
        let closed = tokio::time::timeout(Duration::from_secs(30), silent.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    });
    assert!(
        eventually(Duration::from_secs(30), || server.open_fds() <= baseline),
        "descriptors: {} now, {baseline} before",
        server.open_fds()
    );
}

#[test]
fn plain_http_to_the_tls_port_is_refused_and_the_server_lives() {
    let site = Site::new();
    let mut server = site.start(None);
    let answer = crate::harness::raw_get(server.tls.unwrap(), "/big.bin");
    // No HTTP response (at most a TLS alert), and the connection is closed
    // (raw_get read to the end).
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    assert!(answer.len() < 64, "{} bytes", answer.len());
    assert!(server.alive());
    let res = site
        .reqwest(true)
        .get(https(&server, "/text.txt"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
}

fn start_failure(args: &[&std::ffi::OsStr]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(sluice_bin())
        .arg("serve")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("listening"), "{stdout}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_certificates_and_keys_are_refused_at_start() {
    let site = Site::new();
    let other = Site::new();
    let cert = site.cert();
    let key = site.key();
    let missing = site.dir.path().join("missing.pem");
    let garbage = site.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let flag = |s: &str| std::ffi::OsString::from(s);

    let err = start_failure(&[
        &flag("--tls-cert"),
        missing.as_os_str(),
        &flag("--tls-key"),
        key.as_os_str(),
    ]);
    assert!(
        err.contains("cannot read the TLS certificate") && err.contains("missing.pem"),
        "{err}"
    );

    let err = start_failure(&[
        &flag("--tls-cert"),
        garbage.as_os_str(),
        &flag("--tls-key"),
        key.as_os_str(),
    ]);
    assert!(err.contains("holds no PEM certificate"), "{err}");

    let err = start_failure(&[
        &flag("--tls-cert"),
        cert.as_os_str(),
        &flag("--tls-key"),
        garbage.as_os_str(),
    ]);
    assert!(err.contains("holds no PEM private key"), "{err}");

    let err = start_failure(&[
        &flag("--tls-cert"),
        cert.as_os_str(),
        &flag("--tls-key"),
        other.key().as_os_str(),
    ]);
    assert!(err.contains("does not match the certificate"), "{err}");
}

/// The policy is told the truth about the connection: `tls` and `version`
/// (the evil test policy's `/whoami` echoes them).
#[test]
fn the_policy_sees_tls_and_the_http_version() {
    let site = Site::new();
    let (cert, key) = (site.cert(), site.key());
    let policy = crate::harness::build_component("sluice-evil-policy");
    let server = Server::start_with(
        &site.root(),
        Options {
            policy: Some(&policy),
            tls: Some((&cert, &key)),
            ..Options::default()
        },
    );
    let out = site.dir.path().join("whoami");
    let https = format!("https://127.0.0.1:{}/whoami", server.tls.unwrap().port());
    let plain = server.url("/whoami");
    for (args, want) in [
        (vec!["-k", "--http2", https.as_str()], "tls=true version=2"),
        (
            vec!["-k", "--http1.1", https.as_str()],
            "tls=true version=1.1",
        ),
        (
            vec!["--http2-prior-knowledge", plain.as_str()],
            "tls=false version=2",
        ),
        (vec!["--http1.1", plain.as_str()], "tls=false version=1.1"),
        (vec!["--http1.0", plain.as_str()], "tls=false version=1.0"),
    ] {
        curl(&args, &out);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), want, "{args:?}");
    }
}

/// A TLS handshake whose ClientHello names `sni` (none when `None`: the
/// client then connects to the IP address, which is never sent as SNI), by
/// a client trusting only `trust`. Ok with the leaf certificate the server
/// sent, if the client verified it for that name; the client's error if not.
fn handshake(addr: SocketAddr, sni: Option<&str>, trust: &Pair) -> Result<Vec<u8>, String> {
    let mut conn = client_connection(addr, sni, trust);
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // Each round trip moves the handshake on or fails (EOF, timeout, alert).
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    Ok(conn.peer_certificates().unwrap()[0].to_vec())
}

fn client_connection(
    addr: SocketAddr,
    sni: Option<&str>,
    trust: &Pair,
) -> rustls::ClientConnection {
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_owned()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    rustls::ClientConnection::new(trust.client_config(&[b"http/1.1"]), name).unwrap()
}

/// `GET path` over HTTP/1.1 on a TLS connection whose handshake names `sni`
/// and whose `Host` is `host`: the status and the body.
fn get_over_tls(
    addr: SocketAddr,
    sni: &str,
    trust: &Pair,
    host: &str,
    path: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::StreamOwned::new(client_connection(addr, Some(sni), trust), tcp);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut out = Vec::new();
    // The server closes after the response; a missing close_notify is no
    // concern here.
    let _ = tls.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (crate::harness::raw_status(&out), body)
}

/// A default site and three virtual hosts: `a.test` and `b.test` with
/// certificates of their own, `c.test` on the default certificate (which
/// also covers `localhost`, `127.0.0.1` and `unknown.test`). Each root's
/// `who.txt` names its site.
struct Hosts {
    dir: tempfile::TempDir,
    default: Pair,
    a: Pair,
    b: Pair,
}

const DEFAULT_NAMES: [&str; 4] = ["localhost", "127.0.0.1", "unknown.test", "c.test"];

impl Hosts {
    fn new() -> Hosts {
        let dir = tempfile::tempdir().unwrap();
        for site in ["default", "a", "b", "c"] {
            let root = dir.path().join(site);
            std::fs::create_dir(&root).unwrap();
            std::fs::write(root.join("who.txt"), site).unwrap();
        }
        Hosts {
            default: Pair::write(dir.path(), "default", &DEFAULT_NAMES),
            a: Pair::write(dir.path(), "a", &["a.test"]),
            b: Pair::write(dir.path(), "b", &["b.test"]),
            dir,
        }
    }

    fn config(&self) -> String {
        let path = |p: &Path| format!("{:?}", p.display().to_string());
        let root = |site: &str| path(&self.dir.path().join(site));
        format!(
            "[[vhost]]\nhost = \"A.test\"\nroot = {}\ntls-cert = {}\ntls-key = {}\n\
             [[vhost]]\nhost = \"b.test\"\nroot = {}\ntls-cert = {}\ntls-key = {}\n\
             [[vhost]]\nhost = \"c.test\"\nroot = {}\n",
            root("a"),
            path(&self.a.cert),
            path(&self.a.key),
            root("b"),
            path(&self.b.cert),
            path(&self.b.key),
            root("c"),
        )
    }

    fn start(&self) -> Server {
        let config = self.config();
        Server::start_with(
            &self.dir.path().join("default"),
            Options {
                tls: Some((&self.default.cert, &self.default.key)),
                config: Some(&config),
                ..Options::default()
            },
        )
    }
}

#[test]
fn sni_picks_each_vhosts_certificate_and_other_names_get_the_default() {
    let hosts = Hosts::new();
    let server = hosts.start();
    let addr = server.tls.unwrap();
    for (sni, pair) in [
        (Some("a.test"), &hosts.a),
        (Some("A.TEST"), &hosts.a),
        (Some("b.test"), &hosts.b),
        (Some("c.test"), &hosts.default),
        (Some("unknown.test"), &hosts.default),
        (None, &hosts.default),
    ] {
        let served = handshake(addr, sni, pair).unwrap_or_else(|e| panic!("SNI {sni:?}: {e}"));
        assert_eq!(served, pair.der().to_vec(), "SNI {sni:?}");
    }
    // A client that trusts only the default certificate is refused for a.test.
    let e = handshake(addr, Some("a.test"), &hosts.default).unwrap_err();
    assert!(e.contains("invalid peer certificate"), "{e}");

    // curl, verifying each name against its own certificate only, over both
    // HTTP versions: the certificate and the site both follow the name.
    let out = hosts.dir.path().join("out");
    let port = addr.port();
    for (name, pair, site) in [
        ("a.test", &hosts.a, "a"),
        ("b.test", &hosts.b, "b"),
        ("c.test", &hosts.default, "c"),
        ("unknown.test", &hosts.default, "default"),
    ] {
        let resolve = format!("{name}:{port}:127.0.0.1");
        let url = format!("https://{name}:{port}/who.txt");
        let cacert = pair.cert.to_str().unwrap();
        for (version, want) in [("--http2", "200 2"), ("--http1.1", "200 1.1")] {
            let args = ["--resolve", &resolve, "--cacert", cacert, version, &url];
            assert_eq!(curl(&args, &out), want, "{name}");
            assert_eq!(std::fs::read_to_string(&out).unwrap(), site, "{name}");
        }
    }
}

/// A request whose host is served another certificate than its connection
/// was gets 421; hosts that share the connection's certificate are served
/// by `Host`, as on the plain listener.
#[test]
fn a_request_for_a_host_with_another_certificate_is_misdirected() {
    let hosts = Hosts::new();
    let server = hosts.start();
    let addr = server.tls.unwrap();
    let (a, default) = (&hosts.a, &hosts.default);
    for (sni, trust, host, want) in [
        ("a.test", a, "a.test", (200, "a")),
        ("a.test", a, "A.TEST:443", (200, "a")),
        ("unknown.test", default, "c.test", (200, "c")),
        ("c.test", default, "localhost", (200, "default")),
        (
            "unknown.test",
            default,
            "no-such-vhost.test",
            (200, "default"),
        ),
    ] {
        let (status, body) = get_over_tls(addr, sni, trust, host, "/who.txt");
        assert_eq!((status, body.as_str()), want, "SNI {sni}, Host {host}");
    }
    for (sni, trust, host) in [
        ("a.test", a, "b.test"),
        ("a.test", a, "c.test"),
        ("a.test", a, "localhost"),
        ("unknown.test", default, "a.test"),
        ("c.test", default, "b.test:443"),
    ] {
        let (status, body) = get_over_tls(addr, sni, trust, host, "/who.txt");
        assert_eq!(status, 421, "SNI {sni}, Host {host}: {body}");
        assert!(body.starts_with("Misdirected Request"), "{body}");
    }
    // HTTP/2: a stream for another certificate's host is refused, the
    // connection goes on serving its own.
    runtime().block_on(async {
        let send = h2_connect_to(a, "a.test", addr).await;
        for (authority, want) in [("a.test", 200), ("b.test", 421), ("a.test", 200)] {
            let req = hyper::Request::get(format!("https://{authority}/who.txt"))
                .body(Empty::new())
                .unwrap();
            let res = send.clone().send_request(req).await.unwrap();
            assert_eq!(res.status(), want, "{authority}");
        }
    });
    // The plain listener has no certificate to hold requests to.
    let res = crate::harness::raw(
        server.addr,
        b"GET /who.txt HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(crate::harness::raw_status(&res), 200);
    assert!(
        res.ends_with(b"\r\n\r\nb"),
        "{}",
        String::from_utf8_lossy(&res)
    );
}

/// `/reload` and SIGHUP read every certificate again: new connections get
/// the new one; one that cannot be served is refused with the reason and
/// the old one keeps serving; connections already open go on.
#[test]
fn reload_swaps_certificates_and_refuses_bad_ones() {
    let hosts = Hosts::new();
    let server = hosts.start();
    let addr = server.tls.unwrap();
    let served = |name: &str, pair: &Pair| handshake(addr, Some(name), pair);
    let rt = runtime();
    let before = rt.block_on(h2_connect_to(&hosts.a, "a.test", addr));

    // A renewal on disk changes nothing until the reload.
    let a2 = Pair::write(hosts.dir.path(), "a", &["a.test"]);
    assert_eq!(served("a.test", &hosts.a).unwrap(), hosts.a.der().to_vec());
    let (status, text) = server.reload();
    assert_eq!((status, text.as_str()), (200, "reloaded\n"));
    assert_eq!(served("a.test", &a2).unwrap(), a2.der().to_vec());
    assert!(served("a.test", &hosts.a).is_err(), "the old one is gone");
    assert_eq!(served("b.test", &hosts.b).unwrap(), hosts.b.der().to_vec());
    assert_eq!(server.stat("certificate_reloads"), 3);
    // The connection opened before the reload still serves.
    rt.block_on(async {
        let res = before.clone().send_request(get("/who.txt")).await.unwrap();
        assert_eq!(res.status(), 421, "localhost is not a.test's");
        let req = hyper::Request::get("https://a.test/who.txt")
            .body(Empty::new())
            .unwrap();
        let res = before.clone().send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
    });

    let other = Pair::write(hosts.dir.path(), "other", &["a.test"]);
    let cases: [(&str, &dyn Fn(), &str); 4] = [
        (
            "the key of another certificate",
            &|| {
                std::fs::copy(&other.key, &a2.key).unwrap();
            },
            "vhost a.test: the TLS key",
        ),
        (
            "a certificate file without PEM",
            &|| std::fs::write(&a2.cert, "not a certificate\n").unwrap(),
            "holds no PEM certificate",
        ),
        (
            "a missing key file",
            &|| std::fs::remove_file(&a2.key).unwrap(),
            "cannot read the TLS key",
        ),
        (
            "a half-written key",
            &|| std::fs::write(&a2.key, &a2.key_pem[..a2.key_pem.len() / 2]).unwrap(),
            "holds no PEM private key",
        ),
    ];
    for (i, (what, damage, reason)) in cases.iter().enumerate() {
        a2.restore();
        damage();
        let (status, text) = server.reload();
        assert_eq!(status, 422, "{what} was accepted: {text}");
        assert!(
            text.contains(reason) && text.contains("vhost a.test: "),
            "{what}: {text}"
        );
        assert_eq!(text.lines().count(), 2, "only a.test was refused: {text}");
        assert_eq!(
            served("a.test", &a2).unwrap(),
            a2.der().to_vec(),
            "{what} replaced the served certificate"
        );
        assert_eq!(server.stat("certificate_reload_failures"), i as u64 + 1);
    }
    assert!(server.logs().contains("certificate reload refused"));
    let e = "the old certificate keeps serving";
    assert!(server.logs().contains(e), "{}", server.logs());

    // SIGHUP: the default and a.test renewed at once.
    let a3 = Pair::write(hosts.dir.path(), "a", &["a.test"]);
    let d2 = Pair::write(hosts.dir.path(), "default", &DEFAULT_NAMES);
    server.signal("HUP");
    assert!(
        crate::harness::eventually(Duration::from_secs(20), || served("a.test", &a3).is_ok()),
        "SIGHUP did not swap a.test's certificate"
    );
    assert_eq!(handshake(addr, None, &d2).unwrap(), d2.der().to_vec());
    assert_eq!(served("unknown.test", &d2).unwrap(), d2.der().to_vec());
    let metrics = crate::harness::client()
        .get(format!("http://{}/metrics", server.admin))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("sluice_certificate_reloads_total{result=\"refused\"} 4"),
        "{metrics}"
    );
}

#[test]
fn vhost_certificate_problems_stop_the_start() {
    let hosts = Hosts::new();
    let config_file = hosts.dir.path().join("sluice.toml");
    let flag = |s: &str| std::ffi::OsString::from(s);
    let start = |vhost_tls: &str, listener: bool| {
        std::fs::write(
            &config_file,
            format!(
                "[[vhost]]\nhost = \"a.test\"\nroot = {:?}\n{vhost_tls}",
                hosts.dir.path().join("a").display().to_string()
            ),
        )
        .unwrap();
        let mut args = vec![flag("--config"), config_file.clone().into()];
        if listener {
            args.extend([
                flag("--tls-cert"),
                hosts.default.cert.clone().into(),
                flag("--tls-key"),
                hosts.default.key.clone().into(),
            ]);
        }
        start_failure(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>())
    };
    let both = |cert: &Path, key: &Path| {
        format!(
            "tls-cert = {:?}\ntls-key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        )
    };
    let missing = hosts.dir.path().join("missing.pem");
    let err = start(&both(&missing, &hosts.a.key), true);
    assert!(
        err.contains("vhost a.test: cannot read the TLS certificate")
            && err.contains("missing.pem"),
        "{err}"
    );
    let err = start(&both(&hosts.a.cert, &hosts.b.key), true);
    assert!(
        err.contains("vhost a.test: the TLS key") && err.contains("does not match the certificate"),
        "{err}"
    );
    let err = start(&both(&hosts.a.cert, &hosts.a.key), false);
    assert!(
        err.contains("vhost a.test: tls-cert needs a TLS listener"),
        "{err}"
    );
    let err = start(
        &format!("tls-cert = {:?}\n", hosts.a.cert.display().to_string()),
        true,
    );
    assert!(
        err.contains("vhost a.test: tls-cert is given without tls-key"),
        "{err}"
    );
}
