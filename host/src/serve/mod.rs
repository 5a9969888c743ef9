//! The request handler: request → resolve → policy (or its reusable
//! decisions) → validate → transfer.

pub mod request;
pub mod reuse;
mod site;

use std::cell::RefCell;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

pub use reuse::DecisionCache;
pub use site::{App, Loaded, Site, SiteSpec};

use crate::decision::{self, Verdict};
use crate::resolve::{normalize, Found, NormalPath};
use crate::stats;
use crate::transfer::{self, Channel, ResponseBody};

/// What the connection tells the handler about itself.
#[derive(Clone, Copy)]
pub struct Conn<'a> {
    /// Whether the request arrived over TLS (given to the policy).
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

thread_local! {
    /// The decision-cache key of the request being handled on this thread:
    /// built in place, so a hit allocates nothing for it.
    static KEY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
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
    let loaded = site.loaded();
    let found = loaded.lookup(&site.root, path.relative());
    let verdict = match verdict(app, &loaded, &req, &path, conn.tls, &found) {
        Ok(v) => v,
        Err(response) => return Ok(*response),
    };
    let Some(plan) = verdict.plan(&found) else {
        // A verdict is only reused for the same metadata, siblings included.
        tracing::error!(path = %path.path, "a verdict names a file the lookup lacks");
        return Ok(host_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error\n",
        ));
    };
    let head_only = req.method() == Method::HEAD;
    match transfer::respond(plan, head_only, conn.channel, &app.transfer) {
        Ok(res) => Ok(res),
        Err(e) => {
            tracing::error!(path = %path.path, error = %e, "cannot start the body");
            Ok(host_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error\n",
            ))
        }
    }
}

/// The policy's validated decision for this request: from the decision
/// cache when the policy is reusable and has answered these exact inputs
/// before, otherwise from a call into the policy.
fn verdict<B>(
    app: &App,
    loaded: &Loaded,
    req: &Request<B>,
    path: &NormalPath,
    tls: bool,
    found: &Found,
) -> Result<Arc<Verdict>, Box<Response<ResponseBody>>> {
    let policy = &loaded.policy;
    let caps = policy.capabilities();
    let key = loaded.decisions.as_ref().map(|cache| {
        KEY.with_borrow_mut(|key| {
            request::write_key(key, req, path, tls, &caps.fields, found);
            cache.get(key).ok_or_else(|| Box::<[u8]>::from(&key[..]))
        })
    });
    let key = match key {
        Some(Ok(hit)) => {
            stats::add(&stats::get().decision_cache_hits, 1);
            return Ok(hit);
        }
        Some(Err(miss)) => Some(miss),
        None => None,
    };

    let wit_req = request::to_wit(req, path, tls, &caps.fields);
    let wit_entry = request::entry_to_wit(found);
    let (decision, transport) = policy.decide(&wit_req, &wit_entry).map_err(|e| {
        tracing::warn!(policy = policy.name(), path = %path.path, error = %e, "policy failed");
        Box::new(if e.is_unavailable() {
            host_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable: the response policy did not answer\n",
            )
        } else {
            host_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error: the response policy failed\n",
            )
        })
    })?;
    let verdict = decision::validate(decision, transport, found, &app.transfer).map_err(|rule| {
        stats::add(&stats::get().invalid_decisions, 1);
        tracing::warn!(policy = policy.name(), path = %path.path, %rule, "policy returned an invalid decision");
        Box::new(host_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error: the response policy returned an invalid decision\n",
        ))
    })?;
    let verdict = Arc::new(verdict);
    if let (Some(cache), Some(key)) = (&loaded.decisions, key) {
        cache.insert(key, verdict.clone());
    }
    Ok(verdict)
}
