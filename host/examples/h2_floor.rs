//! The floor under sluice's HTTP/2 row: the smallest server on sluice's
//! HTTP/2 stack (tokio with one worker, tokio-rustls with the ring provider,
//! the `h2` crate with `http2::Settings`' builder settings), answering every
//! request with the same static 4 KiB body and no file, policy or cache.
//! What it costs per request is what the stack costs; what sluice costs
//! beyond it is sluice's own (BENCHMARKS.md, "Issue 19: the HTTP/2 row,
//! profiled"; `tests/bench/h2_small.py` runs it beside sluice and nginx).
//!
//! ```sh
//! cargo build --release -p sluice --example h2_floor
//! target/release/examples/h2_floor --listen 127.0.0.1:8443 --cert cert.pem --key key.pem
//! ```
//!
//! `--inline` answers each stream in the connection's task instead of a task
//! per stream (what the spawn costs); `--coalesce` puts sluice's write
//! gathering (`http2::Coalesce`) between h2 and TLS, as sluice does (what
//! batching the writes gains on the bare stack).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use sluice::internals::http2 as h2s;

struct Args {
    listen: SocketAddr,
    cert: String,
    key: String,
    inline: bool,
    coalesce: bool,
}

fn args() -> Args {
    let mut a = std::env::args().skip(1);
    let (mut listen, mut cert, mut key) = (None, None, None);
    let (mut inline, mut coalesce) = (false, false);
    while let Some(arg) = a.next() {
        match arg.as_str() {
            "--listen" => listen = a.next().and_then(|v| v.parse().ok()),
            "--cert" => cert = a.next(),
            "--key" => key = a.next(),
            "--inline" => inline = true,
            "--coalesce" => coalesce = true,
            _ => usage(),
        }
    }
    match (listen, cert, key) {
        (Some(listen), Some(cert), Some(key)) => Args {
            listen,
            cert,
            key,
            inline,
            coalesce,
        },
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: h2_floor --listen ADDR --cert CERT.pem --key KEY.pem [--inline] [--coalesce]"
    );
    std::process::exit(2)
}

fn main() -> std::io::Result<()> {
    let args = args();
    let certs = CertificateDer::pem_file_iter(&args.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(std::io::Error::other)?;
    let key = PrivateKeyDer::from_pem_file(&args.key).map_err(std::io::Error::other)?;
    // sluice's `tls::server_config`: the ring provider, TLS 1.2 and 1.3, ALPN.
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    // `sluice serve --workers 1`: the multi-thread runtime with one worker.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = TcpListener::bind(args.listen).await?;
            eprintln!("h2_floor: listening on {}", listener.local_addr()?);
            let body = Bytes::from(vec![b'x'; 4096]);
            loop {
                let (tcp, _) = listener.accept().await?;
                tcp.set_nodelay(true)?;
                let (acceptor, body) = (acceptor.clone(), body.clone());
                let (inline, coalesce) = (args.inline, args.coalesce);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let served = if coalesce {
                        serve(h2s::Coalesce::new(tls), body, inline).await
                    } else {
                        serve(tls, body, inline).await
                    };
                    if let Err(e) = served {
                        eprintln!("h2_floor: connection: {e}");
                    }
                });
            }
        })
}

/// One connection with sluice's h2 builder settings (`http2::Settings`).
async fn serve<I>(io: I, body: Bytes, inline: bool) -> Result<(), h2::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // sluice's defaults: a 256 KiB chunk (the send buffer), 60 s send timeout.
    let settings = h2s::Settings {
        chunk: 256 << 10,
        send_timeout: Duration::from_secs(60),
    };
    let mut conn = settings.builder().handshake(io).await?;
    while let Some(accepted) = conn.accept().await {
        let (_req, respond) = accepted?;
        if inline {
            respond_with(respond, body.clone());
        } else {
            let body = body.clone();
            tokio::spawn(async move { respond_with(respond, body) });
        }
    }
    Ok(())
}

/// The response sluice sends for a 4 KiB file, with the same header names
/// and value lengths (what HPACK encodes), and the body in one DATA frame.
fn respond_with(mut respond: h2::server::SendResponse<Bytes>, body: Bytes) {
    let res = http::Response::builder()
        .header("content-type", "application/octet-stream")
        .header("etag", "\"990009-18ed6bf1955da643-1000\"")
        .header("last-modified", "Wed, 02 Dec 2026 11:00:00 GMT")
        .header("cache-control", "max-age=3600")
        .header("accept-ranges", "bytes")
        .header("content-length", "4096")
        .header("date", h2s::date())
        .body(())
        .expect("static headers");
    if let Ok(mut send) = respond.send_response(res, false) {
        let _ = send.send_data(body, true);
    }
}
