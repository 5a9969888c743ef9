//! sluice as a library (re-exported at the crate's root): a [`Sluice`] service, built from a root, a policy
//! and limits, that a platform mounts in its own hyper or axum server.
//!
//! [`Sluice`] implements [`tower_service::Service`] (so axum's
//! `Router::nest_service` and every tower layer take it) and
//! [`hyper::service::Service`] (so `hyper::server::conn` takes it as is),
//! over `http::Request<B>` for any body `B`: a static server ignores request
//! bodies. Its responses' body is [`Body`]. `sluice serve` runs the same
//! type on each connection it accepts.
//!
//! # Mounting it under axum
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sluice::Sluice;
//!
//! let files = Sluice::builder()
//!     .root("/srv/www")
//!     // .policy_file("tenant.wasm")   // the built-in default policy if not set
//!     // .limits(sluice::SandboxConfig { deadline_ms: 5, ..Default::default() })
//!     .build()?;
//! // Closes descriptors of open-file cache entries past their window.
//! tokio::spawn(files.clone().housekeeping());
//! let app = axum::Router::new()
//!     .route("/health", axum::routing::get(|| async { "ok" }))
//!     // axum strips `/static` before the service sees the path.
//!     .nest_service("/static", files);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # The transfer path
//!
//! Without more, bodies take the copying path (large-chunk reads; small
//! cached files leave in one write), which works over any connection. The
//! zero-copy path (`sendfile(2)`) needs the connection's I/O to be sluice's
//! [`SendfileIo`], which returns the connection's [`ZeroCopyLink`]; a
//! platform opts in by serving the connection with that I/O (and hyper's
//! HTTP/1 `writev(true)`, which `SendfileIo` relies on) and handing the link
//! in a [`ConnectionInfo`], either to [`Sluice::with_connection`] or as a
//! request extension (which wins; it is how it crosses a router). The link
//! is only used for HTTP/1 requests: HTTP/2 on the same plain connection
//! (h2c) takes the copying path.
//!
//! ```no_run
//! # async fn run(files: sluice::Sluice, tcp: tokio::net::TcpStream) {
//! use sluice::{ConnectionInfo, SendfileIo};
//!
//! let peer = tcp.peer_addr().ok();
//! let (io, link) = SendfileIo::new(tcp, 2 << 20);
//! let service = files.with_connection(ConnectionInfo {
//!     tls: false,
//!     peer,
//!     zero_copy: Some(link),
//! });
//! let _ = hyper::server::conn::http1::Builder::new()
//!     .writev(true) // required: see SendfileIo
//!     .serve_connection(io, service)
//!     .await;
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};

use crate::access_log::{Answer, RequestLine};
use crate::app::{request_host, App, StartError};
use crate::config::{
    AccessLogFormat, AccessLogTarget, CacheConfig, Config, ConfigError, SandboxConfig,
    TransferConfig,
};
use crate::handler::{self, host_response, Conn};
use crate::stats;
use crate::tls::Served;
use crate::transfer::budget::BodyBudget;
#[cfg(doc)]
use crate::transfer::zerocopy::SendfileIo;
use crate::transfer::zerocopy::ZeroCopyLink;
use crate::transfer::{Channel, Meter, ResponseBody};

/// Serves files from a root under a response policy: a `tower` and `hyper`
/// service. Cloning is cheap (two reference counts); clones share
/// everything (sites, policies, caches, access log).
#[derive(Clone)]
pub struct Sluice {
    app: Arc<App>,
    connection: ConnectionInfo,
    /// The connection's share of the host-wide body budget, when the
    /// server set one (`[limits] body-memory-per-connection`); else the
    /// whole budget.
    budget: Option<Arc<BodyBudget>>,
    /// On a TLS connection served by `sluice serve`: the certificate the
    /// connection was served, which a request's host must match (421).
    served: Option<Arc<Served>>,
    /// On an HTTPS connection over TCP when HTTP/3 is on: the `Alt-Svc`
    /// value every response carries (`h3=":PORT"; ma=...`).
    alt_svc: Option<HeaderValue>,
}

/// What the connection a request arrived on tells the service.
///
/// Set it per connection with [`Sluice::with_connection`], or insert it as a
/// request extension (which wins over the former). Without it: not TLS, no
/// peer address in the access log, the copying path.
#[derive(Clone, Default)]
pub struct ConnectionInfo {
    /// Whether the request arrived over TLS (the policy is told).
    pub tls: bool,
    /// The client's address, for the access log.
    pub peer: Option<SocketAddr>,
    /// The link of the [`SendfileIo`] serving *this* connection: enables the
    /// zero-copy path for its HTTP/1 requests. A link of another connection,
    /// or an I/O that is not a `SendfileIo`, would send the wrong bytes or
    /// fault, so only hand in the one `SendfileIo::new` returned with it.
    pub zero_copy: Option<ZeroCopyLink>,
}

/// Why a [`Sluice`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no root directory given (Builder::root)")]
    NoRoot,
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// Opening the root, compiling, configuring or canary-testing a policy,
    /// or opening the access log (the message names the step and the file).
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Builds a [`Sluice`]: a root, a policy, limits, and optionally everything
/// else the configuration file can say.
#[derive(Default)]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// Starts from a whole configuration (as `sluice serve --config` reads
    /// it); the other methods change parts of it.
    pub fn config(mut self, config: Config) -> Builder {
        self.config = config;
        self
    }

    /// The directory served (required).
    pub fn root(mut self, dir: impl Into<PathBuf>) -> Builder {
        self.config.root = Some(dir.into());
        self
    }

    /// A policy component (`.wasm`) instead of the built-in default policy.
    pub fn policy_file(mut self, path: impl Into<PathBuf>) -> Builder {
        self.config.policy_file = Some(path.into());
        self
    }

    /// A setting handed to the policy's `configure`, typed as given.
    pub fn policy_setting(mut self, name: &str, value: impl Into<toml::Value>) -> Builder {
        self.config.policy.insert(name.to_owned(), value.into());
        self
    }

    /// The policy's sandbox limits (CPU deadline, memory, stack, ...).
    pub fn limits(mut self, sandbox: SandboxConfig) -> Builder {
        self.config.sandbox = sandbox;
        self
    }

    /// Transfer-engine settings (chunk sizes, inline and sendfile bounds).
    pub fn transfer(mut self, transfer: TransferConfig) -> Builder {
        self.config.transfer = transfer;
        self
    }

    /// The open-file and decision caches.
    pub fn cache(mut self, cache: CacheConfig) -> Builder {
        self.config.cache = cache;
        self
    }

    /// The access log (off by default).
    pub fn access_log(mut self, target: AccessLogTarget, format: AccessLogFormat) -> Builder {
        self.config.access_log = target;
        self.config.access_log_format = format;
        self
    }

    /// Opens the root, compiles, configures and canary-tests the policy.
    pub fn build(self) -> Result<Sluice, BuildError> {
        if self.config.root.is_none() {
            return Err(BuildError::NoRoot);
        }
        self.config.check()?;
        let app = App::from_config(&self.config)?;
        Ok(Sluice::from_app(app))
    }
}

impl Sluice {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The service of an application built by [`App::from_config`].
    pub(crate) fn from_app(app: Arc<App>) -> Sluice {
        Sluice {
            app,
            connection: ConnectionInfo::default(),
            budget: None,
            served: None,
            alt_svc: None,
        }
    }

    /// This service for the requests of one connection.
    pub fn with_connection(&self, connection: ConnectionInfo) -> Sluice {
        Sluice {
            app: self.app.clone(),
            connection,
            budget: self.budget.clone(),
            served: self.served.clone(),
            alt_svc: self.alt_svc.clone(),
        }
    }

    /// This service with its bodies charged to `share` (a share of the
    /// app's body budget: one connection's).
    pub(crate) fn with_budget(mut self, share: Arc<BodyBudget>) -> Sluice {
        self.budget = Some(share);
        self
    }

    /// This service checking each request's host against the certificate
    /// its TLS connection was served (`None`: no check): a host served
    /// another certificate is answered 421 Misdirected Request, by the
    /// host, before any site (or its counters) is involved.
    pub(crate) fn with_certificate(mut self, served: Option<Arc<Served>>) -> Sluice {
        self.served = served;
        self
    }

    /// This service advertising HTTP/3 on every response (`Alt-Svc`), for
    /// the HTTPS connections over TCP of a server that also speaks it.
    pub(crate) fn with_alt_svc(mut self, alt_svc: Option<HeaderValue>) -> Sluice {
        self.alt_svc = alt_svc;
        self
    }

    /// Runs forever, closing the descriptors of open-file cache entries past
    /// their window once a second; spawn it next to the server
    /// (`sluice serve` does).
    pub async fn housekeeping(self) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            self.app.sweep();
        }
    }

    /// Answers one request. Never fails: every problem is a status code.
    pub fn handle<B>(
        &self,
        req: Request<B>,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        // The body is dropped here: a static server reads none, and the
        // request then needs to be neither `Send` nor `Sync` over awaits.
        let (mut parts, _body) = req.into_parts();
        let connection = parts
            .extensions
            .remove::<ConnectionInfo>()
            .unwrap_or_else(|| self.connection.clone());
        let req = Request::from_parts(parts, ());
        // The host is parsed once, for the certificate check and routing,
        // and only when one of them needs it.
        let host = (self.served.is_some() || self.app.has_vhosts())
            .then(|| request_host(&req))
            .flatten();
        let misdirected = self
            .served
            .as_ref()
            .is_some_and(|s| s.misdirected(host.as_deref()));
        let app = self.app.clone();
        let budget = self.budget.clone();
        let alt_svc = self.alt_svc.clone();
        // One `async` block: a block that awaited another kept in its own
        // state would hold that one twice (captured, and being awaited),
        // and this future is built and moved for every request.
        async move {
            let mut res = if misdirected {
                stats::add(&stats::get().requests, 1);
                tracing::debug!(peer = ?connection.peer, ?host, "misdirected request");
                host_answer(host_response(
                    StatusCode::MISDIRECTED_REQUEST,
                    "Misdirected Request: this connection's certificate is not this host's\n",
                ))
            } else {
                let site = app.site_for(host.as_deref());
                let budget = budget.unwrap_or_else(|| app.body_budget.clone());
                let line = app
                    .access_log
                    .as_ref()
                    .map(|_| RequestLine::new(&req, connection.peer));
                let conn = Conn {
                    tls: connection.tls,
                    channel: Channel::for_request(connection.zero_copy.as_ref(), req.version()),
                    budget: &budget,
                };
                let (res, outcome) = handler::handle(&app, site, conn, &req).await;
                let (parts, mut inner) = res.into_parts();
                let meter = match (&app.access_log, line) {
                    (Some(log), Some(line)) => {
                        let record: Arc<dyn Meter> = log.record(
                            line,
                            Answer {
                                status: parts.status.as_u16(),
                                vhost: outcome.site.name().clone(),
                                transfer: inner.path(),
                                policy_time: outcome.policy_time,
                            },
                        );
                        inner.attach(&record);
                        Some(record)
                    }
                    _ => None,
                };
                Response::from_parts(parts, Body { inner, meter })
            };
            if let Some(v) = alt_svc {
                res.headers_mut().insert(http::header::ALT_SVC, v);
            }
            res
        }
    }
}

impl<B> tower_service::Service<Request<B>> for Sluice {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    /// Always ready: requests wait for a policy turn inside the call, not
    /// here (a static server has no back-pressure to signal).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // `map` holds the answer's future once (an `async` block awaiting
        // it would hold it twice: captured, and being awaited).
        Box::pin(self.handle(req).map(Ok))
    }
}

impl<B> hyper::service::Service<Request<B>> for Sluice {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<B>) -> Self::Future {
        // `map` holds the answer's future once (an `async` block awaiting
        // it would hold it twice: captured, and being awaited).
        Box::pin(self.handle(req).map(Ok))
    }
}

/// A response the host makes itself, outside any site (so with no access-log
/// record), in [`Sluice`]'s body type.
pub(crate) fn host_answer(res: Response<ResponseBody>) -> Response<Body> {
    res.map(|inner| Body { inner, meter: None })
}

/// The body of every response [`Sluice`] gives: `Bytes` frames, or an
/// `io::Error` when the file cannot be read (or shrank) mid-body, after
/// which the connection should be closed. On the zero-copy path its frames
/// are placeholders only [`SendfileIo`] can send; elsewhere they are the
/// bytes.
pub struct Body {
    inner: ResponseBody,
    /// The access log's record: counts the bytes, written when dropped.
    meter: Option<Arc<dyn Meter>>,
}

impl Body {
    /// Gives back memory kept only for reuse, before a wait.
    pub(crate) fn release_kept(&mut self) {
        self.inner.release_kept();
    }

    /// The size of the next chunk to ask for: the rest of the body when it
    /// is known and smaller than `chunk` (the policy's chunk size), else
    /// `chunk`; at least one byte.
    pub(crate) fn next_chunk_size(&self, chunk: u32) -> u32 {
        http_body::Body::size_hint(self)
            .exact()
            .map_or(chunk, |n| n.min(u64::from(chunk)) as u32)
            .max(1)
    }

    /// The next chunk of at most `limit` bytes (at least one): for a
    /// writer that can only send so much now, like an HTTP/2 stream within
    /// its flow-control window (see `ResponseBody::poll_chunk`).
    pub(crate) fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
        limit: usize,
    ) -> Poll<Option<io::Result<Bytes>>> {
        let chunk = self.inner.poll_chunk(cx, limit);
        if let (Some(meter), Poll::Ready(Some(Ok(data)))) = (&self.meter, &chunk) {
            if !self.inner.counts_itself() {
                meter.add(data.len() as u64);
            }
        }
        chunk
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Some(meter), Poll::Ready(Some(Ok(frame)))) = (&this.meter, &frame) {
            if let Some(data) = frame.data_ref() {
                if !this.inner.counts_itself() {
                    meter.add(data.len() as u64);
                }
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    /// Every request builds and moves these futures (the boxed service
    /// future is one allocation per request): they were 4,272 and 1,680
    /// bytes, when a request was held three times and the policy call's
    /// state inline; callgrind measured their moves at ~1,700 instructions
    /// per request (BENCHMARKS.md, issue 19). A bound broken here is work
    /// added to every request.
    #[test]
    fn a_request_future_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let sluice = super::Sluice::builder().root(dir.path()).build().unwrap();
        let request = || http::Request::builder().uri("/a").body(()).unwrap();
        let service = std::mem::size_of_val(&sluice.handle(request()));
        let app = &sluice.app;
        let conn = crate::handler::Conn {
            tls: false,
            channel: crate::transfer::Channel { zero_copy: None },
            budget: &app.body_budget,
        };
        let req = request();
        let handler = std::mem::size_of_val(&crate::handler::handle(app, &app.default, conn, &req));
        eprintln!("Sluice::handle {service} B, handler::handle {handler} B");
        assert!(
            service <= 1280,
            "Sluice::handle's future is {service} bytes"
        );
        assert!(
            handler <= 768,
            "handler::handle's future is {handler} bytes"
        );
    }
}
