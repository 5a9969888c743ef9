//! Listening, accepting, and running hyper on each connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpStream};

use crate::serve::{self, App, Conn};
use crate::stats;
use crate::transfer::zerocopy::SendfileIo;
use crate::transfer::Channel;

/// Accepts connections forever (and sweeps the open-file caches once a
/// second, so descriptors of files no one asks for are closed).
pub async fn serve(app: Arc<App>, listener: TcpListener) -> std::io::Result<()> {
    {
        let app = app.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                app.sweep();
            }
        });
    }
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move { connection(app, tcp, peer).await });
    }
}

/// Serves one plain-TCP HTTP/1 connection.
async fn connection(app: Arc<App>, tcp: TcpStream, peer: SocketAddr) {
    let _open = stats::Connection::open();
    let _ = tcp.set_nodelay(true);
    let (io, link) = SendfileIo::new(tcp, app.transfer.sendfile_max_chunk.0 as usize);
    let service = service_fn(move |req| {
        let (app, link) = (app.clone(), link.clone());
        async move {
            let conn = Conn {
                tls: false,
                channel: Channel {
                    zero_copy: Some(&link),
                },
            };
            serve::handle(&app, conn, req).await
        }
    });
    let result = http1::Builder::new()
        // Queued (vectored) writes are what the zero-copy path relies on:
        // see transfer::zerocopy. Never turn them off here, and never enable
        // `pipeline_flush`: both switch hyper to its flattening writer, which
        // reads (copies) body chunks.
        .writev(true)
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(io, service)
        .await;
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Binds the listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
