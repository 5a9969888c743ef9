//! `h3load`: an HTTP/3 load generator, for benchmarking sluice's HTTP/3 the
//! way `h2load` benchmarks its HTTP/2 (`tests/bench/h3.py` runs the two side
//! by side). Debian's `h2load` and `curl` speak no HTTP/3, so this is built on
//! the crates the server itself uses for it (quinn, h3, h3-quinn, rustls with
//! ring), on one tokio thread like `h2load -t1`.
//!
//! ```sh
//! cargo build --release --example h3load
//! target/release/examples/h3load -k -c8 -m32 -D4s https://127.0.0.1:8443/4k/00.bin ...
//! target/release/examples/h3load -k -c1 -m1 -n2 https://127.0.0.1:8443/big.bin
//! ```
//!
//! - `-c N` connections (each on its own UDP socket), `-m N` requests in
//!   flight on each, `-n N` requests in all or `-D DURATION` (`4s`, `500ms`;
//!   requests still in flight at the end are not counted, as h2load's);
//!   the URLs on the command line or one per line in `-i FILE`, taken in
//!   turn; all must name the same `https://HOST:PORT`.
//! - `-k` accepts any certificate (the handshake's signature is still
//!   checked); `--cacert FILE` verifies against the PEM certificates in FILE
//!   instead. One of the two is required. The client offers TLS 1.3 with
//!   `TLS13_AES_128_GCM_SHA256` only (what h2load negotiates with sluice and
//!   nginx, so the two compare) and ALPN `h3`.
//! - A request succeeds when its status is 2xx or 3xx and its body has the
//!   `content-length` the response announced (a truncated body is a
//!   failure); other statuses are failed, transport errors and
//!   `--timeout` (30 s) errored.
//! - Exit status: 0 when every request succeeded, 1 when any did not, 2
//!   when the run could not start (bad arguments, a failed handshake).
//! - Output (stdout), h2load's shape: time, req/s, MB/s (10^6 bytes of
//!   bodies), requests done/succeeded/failed/errored, status classes, body
//!   bytes, latency (request sent to body end) p50/p99/max, what QUIC did
//!   (datagrams, losses, congestion events).
//!
//! Receive windows default to 16 MiB per stream and unbounded per
//! connection (`--window`), so on loopback the client's flow control does
//! not limit one stream (h2load's default windows are 1 GiB).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::{Buf, Bytes};
use clap::Parser;
use http::{Request, Uri};
use quinn::rustls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Parser, Debug)]
#[command(
    name = "h3load",
    about = "HTTP/3 load generator (h2load's options, for QUIC)"
)]
struct Args {
    /// Connections, each on its own UDP socket.
    #[arg(short = 'c', long = "clients", default_value_t = 1)]
    clients: usize,
    /// Requests in flight at once on each connection.
    #[arg(short = 'm', long = "max-concurrent-streams", default_value_t = 1)]
    streams: usize,
    /// Requests in all (default 1 unless -D is given).
    #[arg(short = 'n', long = "requests", conflicts_with = "duration")]
    requests: Option<u64>,
    /// Run for this long (`4s`, `500ms`, `2m`) instead of -n.
    #[arg(short = 'D', long = "duration", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// A file of URLs, one per line (instead of, or besides, the arguments).
    #[arg(short = 'i', long = "input-file")]
    input: Option<PathBuf>,
    /// Accept any server certificate.
    #[arg(short = 'k', long = "insecure")]
    insecure: bool,
    /// Verify the server's certificate against these PEM certificates.
    #[arg(long = "cacert", conflicts_with = "insecure")]
    cacert: Option<PathBuf>,
    /// A request not finished within this is errored.
    #[arg(long = "timeout", value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
    /// The client's receive window per stream, bytes.
    #[arg(long = "window", default_value_t = 16 << 20)]
    window: u32,
    /// The URLs to request, in turn.
    urls: Vec<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = n.parse().map_err(|_| format!("not a duration: {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("not a duration: {s:?} (ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// What the run counts, shared by every stream.
#[derive(Default)]
struct Tally {
    done: u64,
    succeeded: u64,
    failed: u64,
    errored: u64,
    timeout: u64,
    /// By status class: 2xx, 3xx, 4xx, 5xx.
    classes: [u64; 4],
    /// Body bytes of finished requests.
    body_bytes: u64,
    /// Microseconds from sending the request to the end of its body.
    latencies_us: Vec<u32>,
    /// The first few errors, for the report.
    errors: Vec<String>,
}

impl Tally {
    fn error(&mut self, e: String) {
        if self.errors.len() < 5 {
            self.errors.push(e);
        }
    }
}

/// How a request ended.
enum Outcome {
    /// Its status and body bytes (the body as long as announced).
    Response(u16, u64),
    /// The stream or connection failed, or the body was short or long.
    Error(String),
}

/// Which requests to make: `-n` tickets, or until a deadline.
struct Plan {
    urls: Vec<Uri>,
    next: AtomicU64,
    limit: Option<u64>,
    deadline: Option<tokio::time::Instant>,
    timeout: Duration,
}

impl Plan {
    /// The next request's URL, or `None` when the run is over.
    fn take(&self) -> Option<&Uri> {
        if self
            .deadline
            .is_some_and(|d| tokio::time::Instant::now() >= d)
        {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if self.limit.is_some_and(|n| i >= n) {
            return None;
        }
        Some(&self.urls[(i % self.urls.len() as u64) as usize])
    }
}

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

fn main() {
    if let Err(e) = start(Args::parse()) {
        eprintln!("h3load: {e:#}");
        std::process::exit(2);
    }
}

fn start(args: Args) -> anyhow::Result<()> {
    let urls = urls(&args)?;
    if args.clients == 0 || args.streams == 0 {
        bail!("-c and -m must be at least 1");
    }
    let authority = urls[0].authority().expect("checked").clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let addr: SocketAddr = (host, authority.port_u16().unwrap_or(443))
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))?;
    let config = client_config(&args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args, urls, addr, host.to_owned(), config))
}

/// The URLs from the arguments and `-i`, checked to be `https` and to name
/// one authority.
fn urls(args: &Args) -> anyhow::Result<Vec<Uri>> {
    let mut text = args.urls.clone();
    if let Some(file) = &args.input {
        let list = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
        text.extend(
            list.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    if text.is_empty() {
        bail!("no URL given (arguments or -i FILE)");
    }
    let mut urls = Vec::with_capacity(text.len());
    for t in &text {
        let u: Uri = t.parse().with_context(|| format!("bad URL {t:?}"))?;
        if u.scheme_str() != Some("https") || u.authority().is_none() {
            bail!("{t:?}: HTTP/3 URLs are https://HOST[:PORT]/PATH");
        }
        if !urls.is_empty() && u.authority() != urls.first().and_then(Uri::authority) {
            bail!("{t:?}: every URL must name the same host and port as the first");
        }
        urls.push(u);
    }
    Ok(urls)
}

/// quinn's client configuration: TLS 1.3, AES-128-GCM, ALPN `h3`, the
/// chosen certificate check, and the receive windows.
fn client_config(args: &Args) -> anyhow::Result<quinn::ClientConfig> {
    let provider = Arc::new(CryptoProvider {
        cipher_suites: vec![ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
        ..ring::default_provider()
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut tls = if args.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else if let Some(file) = &args.cacert {
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(file).with_context(|| format!("{}", file.display()))?
        {
            roots.add(cert.with_context(|| format!("{}", file.display()))?)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        bail!("say how to check the server's certificate: -k (any) or --cacert FILE");
    };
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .stream_receive_window(args.window.into())
        .receive_window(quinn::VarInt::MAX)
        .max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
            30_000,
        ))));
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// `-k`: any certificate is accepted; the handshake's signature is still
/// verified (with the certificate's key), so the server holds its key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One connection: its endpoint (UDP socket), QUIC connection and h3 sender.
struct Client {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: SendRequest,
}

async fn connect(
    addr: SocketAddr,
    server_name: &str,
    config: &quinn::ClientConfig,
) -> anyhow::Result<Client> {
    let local: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse()?
    } else {
        "0.0.0.0:0".parse()?
    };
    let mut endpoint = quinn::Endpoint::client(local)?;
    endpoint.set_default_client_config(config.clone());
    let conn = endpoint
        .connect(addr, server_name)?
        .await
        .with_context(|| format!("QUIC handshake with {addr}"))?;
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
        .await
        .context("HTTP/3 connection setup")?;
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    Ok(Client {
        endpoint,
        conn,
        send,
    })
}

async fn run(
    args: Args,
    urls: Vec<Uri>,
    addr: SocketAddr,
    server_name: String,
    config: quinn::ClientConfig,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        clients.push(connect(addr, &server_name, &config).await?);
    }
    let handshakes = t0.elapsed();
    let alpn = clients[0]
        .conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .map(|p| String::from_utf8_lossy(&p).into_owned())
        .unwrap_or_else(|| "-".into());

    let start = Instant::now();
    let plan = Arc::new(Plan {
        next: AtomicU64::new(0),
        limit: match (args.requests, args.duration) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => Some(1),
        },
        deadline: args
            .duration
            .map(|d| tokio::time::Instant::from_std(start) + d),
        timeout: args.timeout,
        urls,
    });
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for c in &clients {
        for _ in 0..args.streams {
            tasks.spawn(stream_slot(c.send.clone(), plan.clone(), tally.clone()));
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = match args.duration {
        Some(d) => d.min(start.elapsed()),
        None => start.elapsed(),
    };

    let mut quic = (0u64, 0u64, 0u64, 0u64);
    for c in clients {
        let s = c.conn.stats();
        quic.0 += s.udp_tx.datagrams;
        quic.1 += s.udp_rx.datagrams;
        quic.2 += s.path.lost_packets;
        quic.3 += s.path.congestion_events;
        drop(c.send);
        c.conn.close(quinn::VarInt::from_u32(0x100), b"");
        let _ = tokio::time::timeout(Duration::from_secs(1), c.endpoint.wait_idle()).await;
    }

    let mut t = tally.lock().unwrap();
    let secs = elapsed.as_secs_f64();
    println!(
        "finished in {secs:.2}s, {:.2} req/s, {:.2}MB/s",
        t.done as f64 / secs,
        t.body_bytes as f64 / secs / 1e6
    );
    println!(
        "requests: {} total, {} done, {} succeeded, {} failed, {} errored, {} timeout",
        plan.next
            .load(Ordering::Relaxed)
            .min(plan.limit.unwrap_or(u64::MAX)),
        t.done,
        t.succeeded,
        t.failed,
        t.errored,
        t.timeout
    );
    println!(
        "status codes: {} 2xx, {} 3xx, {} 4xx, {} 5xx",
        t.classes[0], t.classes[1], t.classes[2], t.classes[3]
    );
    println!("traffic: {} bytes of bodies", t.body_bytes);
    t.latencies_us.sort_unstable();
    let pct = |p: f64| -> u32 {
        let v = &t.latencies_us;
        if v.is_empty() {
            return 0;
        }
        v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
    };
    println!(
        "latency us: p50 {}, p99 {}, max {}",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "connections: {} x {} streams, handshakes {:.1} ms; ALPN {alpn}, TLS13_AES_128_GCM_SHA256",
        args.clients,
        args.streams,
        handshakes.as_secs_f64() * 1e3
    );
    println!(
        "quic: {} datagrams sent, {} received, {} packets lost, {} congestion events",
        quic.0, quic.1, quic.2, quic.3
    );
    for e in &t.errors {
        println!("error: {e}");
    }
    if t.succeeded != t.done || t.errored + t.timeout > 0 || t.done == 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// One of a connection's `-m` request slots: requests one URL after
/// another until the plan says stop.
async fn stream_slot(mut send: SendRequest, plan: Arc<Plan>, tally: Arc<Mutex<Tally>>) {
    while let Some(url) = plan.take() {
        let began = Instant::now();
        let request = request(&mut send, url.clone());
        let outcome = match plan.deadline {
            // Still in flight at the end of the run: not counted.
            Some(end) if end < tokio::time::Instant::now() + plan.timeout => {
                match tokio::time::timeout_at(end, request).await {
                    Ok(o) => Some(o),
                    Err(_) => return,
                }
            }
            _ => tokio::time::timeout(plan.timeout, request).await.ok(),
        };
        let mut t = tally.lock().unwrap();
        match outcome {
            None => {
                t.timeout += 1;
                t.error(format!("{url}: no response within {:?}", plan.timeout));
            }
            Some(Outcome::Error(e)) => {
                t.errored += 1;
                t.error(format!("{url}: {e}"));
            }
            Some(Outcome::Response(status, bytes)) => {
                t.done += 1;
                t.body_bytes += bytes;
                let us = began.elapsed().as_micros().min(u32::MAX.into()) as u32;
                t.latencies_us.push(us);
                if (200..400).contains(&status) {
                    t.succeeded += 1;
                } else {
                    t.failed += 1;
                    t.error(format!("{url}: status {status}"));
                }
                if (200..600).contains(&status) {
                    t.classes[usize::from(status / 100 - 2)] += 1;
                }
            }
        }
    }
}

/// One GET: the status and the body's length, checked against
/// `content-length`.
async fn request(send: &mut SendRequest, url: Uri) -> Outcome {
    let req = Request::get(url).body(()).expect("a GET of a parsed URL");
    let mut stream = match send.send_request(req).await {
        Ok(s) => s,
        Err(e) => return Outcome::Error(format!("sending the request: {e}")),
    };
    if let Err(e) = stream.finish().await {
        return Outcome::Error(format!("finishing the request: {e}"));
    }
    let response = match stream.recv_response().await {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("receiving the response: {e}")),
    };
    let status = response.status().as_u16();
    let length = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut bytes = 0u64;
    loop {
        match stream.recv_data().await {
            Ok(Some(mut chunk)) => {
                bytes += chunk.remaining() as u64;
                chunk.advance(chunk.remaining());
            }
            Ok(None) => break,
            Err(e) => return Outcome::Error(format!("after {bytes} body bytes: {e}")),
        }
    }
    match length {
        Some(n) if n != bytes && status != 304 => {
            Outcome::Error(format!("{bytes} body bytes, content-length {n}"))
        }
        _ => Outcome::Response(status, bytes),
    }
}
