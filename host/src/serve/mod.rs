//! The request handler: request → resolve → policy → validate → transfer.

mod request;
mod site;

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

pub use site::{App, Site, SiteSpec};

use crate::decision;
use crate::policy::CallError;
use crate::resolve::normalize;
use crate::stats;
use crate::transfer::{self, Channel, ResponseBody};

/// What the connection tells the handler about itself.
#[derive(Clone, Copy)]
pub struct Conn<'a> {
    pub tls: bool,
    pub channel: Channel<'a>,
}

/// A short plain-text response made by the host itself (errors the policy
/// never saw, or could not answer).
pub fn host_response(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::Inline(Some(Bytes::from_static(
        text.as_bytes(),
    ))));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Answers one request. Never fails: every problem becomes a status code.
pub fn handle<B>(
    app: &App,
    conn: Conn<'_>,
    req: Request<B>,
) -> Result<Response<ResponseBody>, Infallible> {
    stats::add(&stats::get().requests, 1);
    let site = app.site_for(&req);
    let path = match normalize(req.uri().path()) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(path = req.uri().path(), error = %e, "bad request path");
            return Ok(host_response(StatusCode::BAD_REQUEST, "Bad Request\n"));
        }
    };
    let policy = site.policy();
    let caps = policy.capabilities();
    let found = site
        .root
        .lookup(path.relative(), &caps.index_names, &caps.siblings);

    let wit_req = request::to_wit(&req, &path, conn.tls);
    let wit_entry = request::entry_to_wit(&found);
    let decision = match policy.decide(&wit_req, &wit_entry) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(policy = policy.name(), path = %path.path, error = %e, "policy failed");
            return Ok(match e {
                CallError::Deadline(_) | CallError::Exhausted(_) | CallError::Instantiate(_) => {
                    host_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Service Unavailable: the response policy did not answer\n",
                    )
                }
                CallError::Trap(_) => host_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error: the response policy failed\n",
                ),
            });
        }
    };
    let plan = match decision::validate(decision, &found, &app.transfer) {
        Ok(p) => p,
        Err(rule) => {
            stats::add(&stats::get().invalid_decisions, 1);
            tracing::warn!(policy = policy.name(), path = %path.path, %rule, "policy returned an invalid decision");
            return Ok(host_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error: the response policy returned an invalid decision\n",
            ));
        }
    };

    let mut headers = plan.headers;
    let head_only = req.method() == Method::HEAD;
    let body = match transfer::body(
        plan.body,
        &mut headers,
        head_only,
        conn.channel,
        plan.chunk_size,
        plan.zero_copy,
        app.transfer.inline_max.0,
    ) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(path = %path.path, error = %e, "cannot start the body");
            return Ok(host_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error\n",
            ));
        }
    };
    let mut res = Response::new(body);
    *res.status_mut() = plan.status;
    *res.headers_mut() = headers;
    Ok(res)
}
