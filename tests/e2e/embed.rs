//! The library API (issue 10, item 1): `sluice::Sluice` built in
//! this process and mounted under axum at a path prefix next to another
//! route, served on a real socket, driven by reqwest and raw TCP; and the
//! zero-copy opt-in, with sluice's `SendfileIo` under a plain hyper
//! connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;

use sluice::SendfileIo;
use sluice::{ConnectionInfo, Sluice};

use crate::harness::*;
use crate::paths::{corpus, hostile_site, SECRET};

const BIG: usize = 1 << 20;

/// A server running in this process; stopped when dropped.
struct Mounted {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

/// `root` served by sluice at `/static`, next to `/health`.
fn mount_under_axum(root: &Path) -> Mounted {
    let files = Sluice::builder().root(root).build().unwrap();
    let runtime = runtime();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(files.clone().housekeeping());
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "healthy" }))
        .nest_service("/static", files);
    runtime.spawn(async move { axum::serve(listener, app).await });
    Mounted {
        addr,
        _runtime: runtime,
    }
}

/// The hostile site's root, plus a larger file for ranges.
fn site() -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let (outer, root) = hostile_site();
    let big = pseudo_random(BIG, 10);
    std::fs::write(root.join("big.bin"), &big).unwrap();
    (outer, root, big)
}

#[test]
fn sluice_mounted_under_axum_serves_files_ranges_and_errors_next_to_other_routes() {
    let (_outer, root, big) = site();
    let server = mount_under_axum(&root);
    let url = |p: &str| format!("http://{}{p}", server.addr);
    let c = client();

    // The other route is the platform's.
    let res = c.get(url("/health")).send().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().unwrap(), "healthy");

    // axum strips the prefix: /static/ok.txt is the root's ok.txt ...
    let res = c.get(url("/static/ok.txt")).send().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], "2");
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(res.text().unwrap(), "ok");
    // ... and the root is not served outside the prefix.
    let res = c.get(url("/ok.txt")).send().unwrap();
    assert_eq!(res.status(), 404);
    assert_ne!(res.text().unwrap(), "ok");

    let res = c.get(url("/static/big.bin")).send().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(sha256(&res.bytes().unwrap()), sha256(&big));

    let res = c
        .get(url("/static/big.bin"))
        .header("range", "bytes=1000-1999")
        .send()
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes 1000-1999/{BIG}")
    );
    assert_eq!(&res.bytes().unwrap()[..], &big[1000..2000]);

    let res = c
        .get(url("/static/ok.txt"))
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(res.status(), 304);

    let res = c.head(url("/static/big.bin")).send().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], BIG.to_string());

    let res = c.get(url("/static/missing.txt")).send().unwrap();
    assert_eq!(res.status(), 404);
}

#[test]
fn hostile_paths_under_the_prefix_never_escape_the_root() {
    let (_outer, root, _) = site();
    let server = mount_under_axum(&root);
    let mut problems = Vec::new();
    let mut served = 0;
    for target in corpus() {
        let res = raw_get(server.addr, &format!("/static{target}"));
        let text = String::from_utf8_lossy(&res);
        let status = raw_status(&res);
        if text.contains(SECRET) || text.contains("root:x:") {
            problems.push(format!("ESCAPE {target:?}: {text}"));
        } else if !(200..500).contains(&status) {
            problems.push(format!("status {status} for {target:?}"));
        }
        served += 1;
    }
    assert!(served >= 200);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Still serving.
    let res = raw_get(server.addr, "/static/ok.txt");
    assert!(String::from_utf8_lossy(&res).ends_with("\r\n\r\nok"));
}

/// A platform that serves a plain-TCP connection with sluice's `SendfileIo`
/// and hands its link in (here as a request extension, as a router would
/// carry it) gets the zero-copy path: the file leaves by `sendfile(2)`.
#[test]
fn a_platform_handing_in_the_link_gets_zero_copy() {
    let (_outer, root, big) = site();
    let files = Sluice::builder().root(&root).build().unwrap();
    let runtime = runtime();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                return;
            };
            let files = files.clone();
            tokio::spawn(async move {
                let (io, link) = SendfileIo::new(tcp, 2 << 20);
                let service = hyper::service::service_fn(move |mut req| {
                    req.extensions_mut().insert(ConnectionInfo {
                        tls: false,
                        peer: Some(peer),
                        zero_copy: Some(link.clone()),
                    });
                    tower_call(files.clone(), req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .writev(true)
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    let sent = || {
        sluice::internals::stats::get()
            .sendfile_bytes
            .load(Ordering::Relaxed)
    };
    let before = sent();
    let res = client()
        .get(format!("http://{addr}/big.bin"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(sha256(&res.bytes().unwrap()), sha256(&big));
    assert!(
        sent() - before >= BIG as u64,
        "the body did not leave by sendfile"
    );
}

/// Calls the service through its `tower::Service` implementation.
async fn tower_call(
    mut files: Sluice,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<sluice::Body>, std::convert::Infallible> {
    use tower_service::Service;
    std::future::poll_fn(|cx| {
        Service::<hyper::Request<hyper::body::Incoming>>::poll_ready(&mut files, cx)
    })
    .await?;
    files.call(req).await
}
