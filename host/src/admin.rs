//! The admin listener: `GET /stats` (counters, one per line), `GET /metrics`
//! (Prometheus text format) and `POST /reload` (reload every policy and TLS
//! certificate, as SIGHUP does). Bind it to loopback only. What the first
//! two show is rendered in `metrics`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

mod metrics;

use crate::app::App;
use crate::tls::Certificates;

/// Why a reload was not complete.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Certificates and policies that did not load, one line each (`site:
    /// error`, or the certificate's error naming its files); they keep their
    /// old versions, the others were replaced.
    #[error("{}", .0.iter().map(|f| format!("{f}\n")).collect::<String>())]
    Refused(Vec<String>),
    /// The blocking task that reloads panicked or was cancelled.
    #[error("the reload did not run to its end: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Reloads every TLS certificate (if HTTPS is on) and every policy, off the
/// async workers (reading files, compiling takes milliseconds). Each
/// certificate and each policy is replaced on its own, if it loads; the
/// error lists those refused, which keep their old version.
pub async fn reload(app: Arc<App>, certs: Option<Arc<Certificates>>) -> Result<(), ReloadError> {
    let failures = tokio::task::spawn_blocking(move || {
        let mut failures: Vec<String> = certs
            .map(|c| c.reload())
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        failures.extend(app.reload().iter().map(|(site, e)| format!("{site}: {e}")));
        failures
    })
    .await?;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ReloadError::Refused(failures))
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res
}

async fn handle(
    app: Arc<App>,
    certs: Option<Arc<Certificates>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/stats") => text(StatusCode::OK, metrics::stats_text(&app)),
        (&Method::GET, "/metrics") => {
            let mut res = text(StatusCode::OK, metrics::prometheus(&app));
            res.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            res
        }
        (&Method::POST, "/reload") => match reload(app, certs).await {
            Ok(()) => text(StatusCode::OK, "reloaded\n".into()),
            Err(e) => text(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("reload refused for these; their old versions keep serving:\n{e}"),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    })
}

/// Serves the admin endpoints forever.
pub async fn serve(app: Arc<App>, certs: Option<Arc<Certificates>>, listener: TcpListener) {
    let mut pause = crate::listener::AcceptPause::default();
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of descriptors, say: wait rather than spin.
                pause.failed(&e, 0).await;
                continue;
            }
        };
        pause.accepted();
        let (app, certs) = (app.clone(), certs.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(app.clone(), certs.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
