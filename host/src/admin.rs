//! The admin listener: `GET /stats` (counters, one per line), `GET /metrics`
//! (Prometheus text format) and `POST /reload` (reload every policy and TLS
//! certificate, as SIGHUP does). Bind it to loopback only.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::serve::App;
use crate::stats;
use crate::tls::Certificates;

/// Reloads every TLS certificate (if HTTPS is on) and every policy, off the
/// async workers (reading files, compiling takes milliseconds). Each
/// certificate and each policy is replaced on its own, if it loads; the
/// error lists those refused (one line each), which keep their old version.
pub async fn reload(app: Arc<App>, certs: Option<Arc<Certificates>>) -> Result<(), String> {
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
    .await
    .map_err(|e| e.to_string())?;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.iter().map(|f| format!("{f}\n")).collect())
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
        (&Method::GET, "/stats") => {
            let mut body = stats::get().render();
            body.push_str(&app.stores.usage().render());
            if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
                body.push_str(&format!("open_fds {}\n", fds.count()));
            }
            let (idle, bytes) = app.sandbox.idle_instances();
            body.push_str(&format!(
                "idle_instances {idle}\nidle_instance_bytes {bytes}\n"
            ));
            body.push_str(&format!(
                "body_memory_in_use {}\nbody_memory_limit {}\n",
                app.body_budget.in_use(),
                app.body_budget.bytes()
            ));
            text(StatusCode::OK, body)
        }
        (&Method::GET, "/metrics") => {
            let fds = std::fs::read_dir("/proc/self/fd").ok().map(Iterator::count);
            let mut body = stats::get().render_prometheus(
                app.sites().map(|(name, site)| (name, &site.counters)),
                &app.stores.usage(),
                fds,
            );
            idle_gauges(&mut body, &app);
            body.push_str(&format!(
                "# HELP sluice_body_memory_bytes Response-body bytes held in memory now ([limits] body-memory).\n\
                 # TYPE sluice_body_memory_bytes gauge\n\
                 sluice_body_memory_bytes {}\n\
                 # HELP sluice_body_memory_limit_bytes The host-wide body budget.\n\
                 # TYPE sluice_body_memory_limit_bytes gauge\n\
                 sluice_body_memory_limit_bytes {}\n",
                app.body_budget.in_use(),
                app.body_budget.bytes()
            ));
            let mut res = text(StatusCode::OK, body);
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

/// The idle policy instances held host-wide (see `policy::idle`), as
/// Prometheus gauges.
fn idle_gauges(out: &mut String, app: &App) {
    let (idle, bytes) = app.sandbox.idle_instances();
    out.push_str(&format!(
        "# HELP sluice_idle_instances Idle policy instances held, all sites together.\n\
         # TYPE sluice_idle_instances gauge\nsluice_idle_instances {idle}\n\
         # HELP sluice_idle_instance_bytes Linear memory of the idle policy instances \
         (bounded by `idle-memory`).\n\
         # TYPE sluice_idle_instance_bytes gauge\nsluice_idle_instance_bytes {bytes}\n"
    ));
}

/// Serves the admin endpoints forever.
pub async fn serve(app: Arc<App>, certs: Option<Arc<Certificates>>, listener: TcpListener) {
    let mut pause = crate::server::AcceptPause::default();
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
