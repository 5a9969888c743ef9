//! The request handler: request → resolve → policy (or its reusable
//! decisions) → validate → transfer.

mod listing;
pub mod request;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

pub use crate::decision::reuse::DecisionCache;
use crate::decision::reuse::Reused;

use crate::app::{App, Loaded, Site};
use crate::contract::{wit, DecisionError, MAX_HOPS};
use crate::decision::{self, Verdict};
use crate::policy::CallError;
use crate::policy_text::PolicyText;
use crate::resolve::{normalize, Found, NormalPath};
use crate::shared_cache::Held;
use crate::stats;
use crate::transfer::budget::BodyBudget;
use crate::transfer::{self, Channel, ResponseBody};

/// What the connection tells the handler about itself.
#[derive(Clone, Copy)]
pub struct Conn<'a> {
    /// Whether the request arrived over TLS (given to the policy).
    pub tls: bool,
    pub channel: Channel<'a>,
    /// What the body's bytes are charged to: the connection's share of the
    /// host-wide body budget.
    pub budget: &'a Arc<BodyBudget>,
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

/// What the handler did besides the response, for the access log.
pub struct Outcome<'a> {
    /// The site (virtual host) that answered.
    pub site: &'a Site,
    /// Wall time of the policy call; `None` when the policy was not called
    /// (a decision-cache hit, or a request refused before it).
    pub policy_time: Option<Duration>,
}

thread_local! {
    /// The decision-cache key of the request being handled on this thread:
    /// built in place, so a hit allocates nothing for it.
    static KEY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Answers one request for `site` (chosen by the caller from the request's
/// host). Never fails: every problem becomes a status code.
///
/// It only waits (is `async`) for a turn to call the site's policy, when the
/// site's calls already occupy their share of the workers.
///
/// `req` is borrowed: the caller's future holds it, and a request moved in
/// would be held again by each future it passes through (it was three
/// times in every request's future).
pub async fn handle<'a, B>(
    app: &'a App,
    site: &'a Site,
    conn: Conn<'_>,
    req: &Request<B>,
) -> (Response<ResponseBody>, Outcome<'a>) {
    stats::add(&stats::get().requests, 1);
    let mut outcome = Outcome {
        site,
        policy_time: None,
    };
    let res = respond(app, &mut outcome, conn, req).await;
    outcome.site.counters.response(res.status().as_u16());
    (res, outcome)
}

async fn respond<B>(
    app: &App,
    outcome: &mut Outcome<'_>,
    conn: Conn<'_>,
    req: &Request<B>,
) -> Response<ResponseBody> {
    let site = outcome.site;
    let path = match normalize(req.uri().path()) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(path = req.uri().path(), error = %e, "bad request path");
            return host_response(StatusCode::BAD_REQUEST, "Bad Request\n");
        }
    };
    let loaded = site.loaded();
    // The rewrites taken so far (see `Chain`): each hop is resolved
    // beneath the same root and decided with its own call.
    let mut chain = Chain::new();
    loop {
        let at = chain.path().unwrap_or(&path);
        let found = match loaded.lookup(&site.root, at.relative()) {
            Ok(found) => found,
            Err(e) => {
                no_descriptors(at, e);
                return host_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable: the server has no file descriptor left\n",
                );
            }
        };
        // A directory without an index, for a policy that lists: read
        // afresh for every request (never kept in the open-file cache),
        // bounded (`resolve::listing`), on the blocking pool (`listing`);
        // held until the policy has answered, at most `LISTINGS_AT_ONCE`
        // host-wide.
        let held = match (&found, loaded.policy.capabilities().listing) {
            (Found::Directory { index: None }, max) if max > 0 => {
                // Boxed, as the policy call below: a future awaited here is
                // stored inline in this one, which every request's future
                // holds (and moves) whether it lists a directory or not.
                match Box::pin(listing::read(app, site, at, max)).await {
                    Ok(held) => Some(held),
                    Err(listing::Failed::NoDescriptors(e)) => {
                        no_descriptors(at, e);
                        return host_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "Service Unavailable: the server has no file descriptor left\n",
                        );
                    }
                    Err(e @ listing::Failed::Lost(_)) => {
                        tracing::error!(path = %at.path, error = %e, "cannot read the listing");
                        return host_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "Internal Server Error\n",
                        );
                    }
                }
            }
            _ => None,
        };
        let listing = held.as_ref().and_then(|h| h.listing.as_ref());
        let hop = chain.hop(&path);
        let seen = Seen {
            found: &found,
            listing,
        };
        let answer = verdict(app, outcome, &loaded, req, at, hop.as_ref(), conn.tls, seen).await;
        let verdict = match answer {
            Ok(Answer::Respond(v)) => v,
            Ok(Answer::Rewrite { path: next, reason }) => {
                if let Err(why) = chain.push(&path, next, reason) {
                    stats::add(&stats::get().invalid_decisions, 1);
                    tracing::warn!(
                        policy = loaded.policy.name(),
                        path = %path.path,
                        chain = %chain.shown(&path),
                        "rewrite loop: {why}; answered 500"
                    );
                    return empty_response(StatusCode::INTERNAL_SERVER_ERROR);
                }
                continue;
            }
            Err(response) => return *response,
        };
        let Some(plan) = verdict.plan(&found) else {
            // A verdict is only reused for the same metadata, siblings included.
            tracing::error!(path = %at.path, "a verdict names a file the lookup lacks");
            return host_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n");
        };
        let head_only = req.method() == Method::HEAD;
        return match transfer::execute(plan, head_only, conn.channel, &app.transfer, conn.budget) {
            Ok(res) => res,
            Err(e) => {
                tracing::error!(path = %at.path, error = %e, "cannot start the body");
                host_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
            }
        };
    }
}

/// A response with no body, made by the host (a rewrite loop: the WIT
/// says 500 with no body, the cause is in the log).
fn empty_response(status: StatusCode) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::Empty);
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The rewrites one request has taken (see "Rewrites" in the WIT): at most
/// `MAX_HOPS`, each to a path not yet decided for this request (the
/// client's included). It holds at most `MAX_HOPS + 1` paths and reasons
/// of at most `MAX_REASON` bytes, and nothing at all for a request that
/// takes no rewrite.
struct Chain {
    hops: Vec<(NormalPath, Box<str>)>,
}

impl Chain {
    fn new() -> Chain {
        Chain { hops: Vec::new() }
    }

    /// The path of the last rewrite; `None` before any.
    fn path(&self) -> Option<&NormalPath> {
        self.hops.last().map(|(p, _)| p)
    }

    /// The `hop` of the next call: `None` before any rewrite.
    fn hop(&self, original: &NormalPath) -> Option<wit::Hop> {
        let (_, reason) = self.hops.last()?;
        Some(wit::Hop {
            original_path: original.path.clone(),
            count: u8::try_from(self.hops.len()).unwrap_or(u8::MAX),
            reason: reason.to_string(),
        })
    }

    /// Takes a rewrite, or says why it is a loop (it is kept, for the log).
    fn push(
        &mut self,
        original: &NormalPath,
        next: NormalPath,
        reason: Box<str>,
    ) -> Result<(), &'static str> {
        let seen = next == *original || self.hops.iter().any(|(p, _)| *p == next);
        let taken = self.hops.len();
        self.hops.push((next, reason));
        if taken >= usize::from(MAX_HOPS) {
            Err("more than 4 rewrites (`max-hops`)")
        } else if seen {
            Err("a rewrite to a path already decided for this request")
        } else {
            Ok(())
        }
    }

    /// The chain for the log, `/a -> /b (reason) -> ...`, every path and
    /// reason escaped (the policy and the client chose them).
    fn shown(&self, original: &NormalPath) -> String {
        let mut text = PolicyText::from(original.path.as_str()).to_string();
        for (path, reason) in &self.hops {
            text.push_str(" -> ");
            text.push_str(PolicyText::from(path.path.as_str()).as_str());
            if !reason.is_empty() {
                text.push_str(" (");
                text.push_str(PolicyText::from(&**reason).as_str());
                text.push(')');
            }
        }
        text
    }
}

/// Counts a request answered 503 for want of a descriptor, and logs it: at
/// most one line a second, saying how many went unlogged, so a process out
/// of descriptors does not also flood its log.
fn no_descriptors(path: &NormalPath, e: crate::resolve::NoDescriptors) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static LOGGED_AT: AtomicU64 = AtomicU64::new(0);
    static UNLOGGED: AtomicU64 = AtomicU64::new(0);
    stats::add(&stats::get().no_descriptors, 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if LOGGED_AT.swap(now, Relaxed) == now {
        UNLOGGED.fetch_add(1, Relaxed);
        return;
    }
    tracing::warn!(
        path = %path.path,
        error = %e,
        also_unlogged = UNLOGGED.swap(0, Relaxed),
        "no descriptor left to open the file, even after the open-file caches gave theirs \
         back: answered 503"
    );
}

/// The policy's validated outcome for one hop of this request (the
/// request itself, or a rewrite's path with its `hop`): from the decision
/// cache when the policy is reusable and has answered these exact inputs
/// before, otherwise from a call into the policy ([`decide`]), with its own
/// deadline.
///
/// A hit never waits, so it is answered here without entering [`decide`],
/// whose future (the WIT request and entry, a turn being waited for) is
/// boxed: inline, it would make every request's future, hits included, that
/// much larger to build and move (it was 4.3 KB in all, measured with
/// callgrind: `tests/bench/callgrind_small.py`).
#[allow(clippy::too_many_arguments)]
async fn verdict<B>(
    app: &App,
    outcome: &mut Outcome<'_>,
    loaded: &Loaded,
    req: &Request<B>,
    path: &NormalPath,
    hop: Option<&wit::Hop>,
    tls: bool,
    seen: Seen<'_>,
) -> Result<Answer, Box<Response<ResponseBody>>> {
    let caps = loaded.policy.capabilities();
    let key = loaded.decisions.as_ref().map(|cache| {
        KEY.with_borrow_mut(|key| {
            request::write_key(
                key,
                req,
                path,
                hop,
                tls,
                &caps.fields,
                seen.found,
                seen.listing,
            );
            let hash = cache.hash(key);
            cache
                .get(key, hash)
                .ok_or_else(|| (Box::<[u8]>::from(&key[..]), hash))
        })
    });
    let key = match key {
        Some(Ok(hit)) => {
            stats::add(&stats::get().decision_cache_hits, 1);
            return Ok(match &*hit {
                Reused::Respond(_) => Answer::Respond(Decided::Cached(hit)),
                Reused::Rewrite { path, reason } => Answer::Rewrite {
                    path: path.clone(),
                    reason: reason.clone(),
                },
            });
        }
        Some(Err(miss)) => Some(miss),
        None => None,
    };
    Box::pin(decide(app, outcome, loaded, req, path, hop, tls, seen, key)).await
}

/// A call into the policy for one hop (see [`verdict`]); `key` is the
/// decision cache's key for its inputs, when the policy is reusable.
///
/// Fair sharing between tenants: a call first takes one of the site's turns
/// (`policy-workers`, by default half the workers), waiting for one without
/// holding a worker; so however loaded one tenant's policy is, its calls
/// occupy at most that many workers. A call that is typically slow, or that
/// first makes and warms up a new instance, runs under `block_in_place`,
/// which hands this worker's other tasks to another thread for the
/// duration: requests queued behind the call are not delayed by it.
#[allow(clippy::too_many_arguments)]
async fn decide<B>(
    app: &App,
    outcome: &mut Outcome<'_>,
    loaded: &Loaded,
    req: &Request<B>,
    path: &NormalPath,
    hop: Option<&wit::Hop>,
    tls: bool,
    seen: Seen<'_>,
    key: Option<(Box<[u8]>, u64)>,
) -> Result<Answer, Box<Response<ResponseBody>>> {
    let found = seen.found;
    let policy = &loaded.policy;
    let caps = policy.capabilities();
    let wit_req = request::to_wit(req, path, hop, tls, &caps.fields);
    let wit_entry = request::entry_to_wit(found, seen.listing);
    let site = outcome.site;
    let _turn = match site.calls.try_acquire() {
        Ok(turn) => turn,
        Err(_) => site.calls.acquire().await.expect("never closed"),
    };
    // After the turn: the call takes one of the site's idle instances.
    let call = policy.call();
    let started = Instant::now();
    let answer = if call.is_slow() {
        off_the_workers(|| call.decide(&wit_req, &wit_entry))
    } else {
        call.decide(&wit_req, &wit_entry)
    };
    // Every hop's call counts.
    let took = started.elapsed();
    outcome.policy_time = Some(outcome.policy_time.unwrap_or_default() + took);
    let invalid = |rule: DecisionError| {
        stats::add(&stats::get().invalid_decisions, 1);
        tracing::warn!(policy = policy.name(), path = %path.path, %rule, "policy returned an invalid decision");
        Box::new(host_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error: the response policy returned an invalid decision\n",
        ))
    };
    let (answer, transport) = answer.map_err(|e| match e {
        // Over a limit, found before it was copied out of the guest.
        CallError::Invalid(rule) => invalid(rule),
        e => {
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
        }
    })?;
    let reused = match answer {
        wit::Outcome::Respond(decision) => Reused::Respond(
            decision::validate(decision, transport, found, &app.transfer).map_err(invalid)?,
        ),
        wit::Outcome::Rewrite(rewrite) => {
            let path = decision::check_rewrite(&rewrite).map_err(invalid)?;
            Reused::Rewrite {
                path,
                reason: rewrite.reason.into_boxed_str(),
            }
        }
    };
    let held = match (&loaded.decisions, key) {
        (Some(cache), Some((key, hash))) => cache.insert(key, hash, reused),
        _ => {
            return Ok(match reused {
                Reused::Respond(verdict) => Answer::Respond(Decided::Fresh(verdict)),
                Reused::Rewrite { path, reason } => Answer::Rewrite { path, reason },
            })
        }
    };
    Ok(match &*held {
        Reused::Respond(_) => Answer::Respond(Decided::Cached(held)),
        Reused::Rewrite { path, reason } => Answer::Rewrite {
            path: path.clone(),
            reason: reason.clone(),
        },
    })
}

/// What the host found for one hop: the lookup, and a directory's listing.
#[derive(Clone, Copy)]
struct Seen<'a> {
    found: &'a Found,
    listing: Option<&'a wit::Listing>,
}

/// What one hop of a request ends in.
enum Answer {
    /// The response.
    Respond(Decided),
    /// Decide again for `path` (checked, not yet resolved).
    Rewrite { path: NormalPath, reason: Box<str> },
}

/// A validated decision: kept in the decision cache (a `Reused::Respond`),
/// or made for this request alone (a policy whose decisions are not
/// reusable).
enum Decided {
    Cached(Held<Reused>),
    Fresh(Verdict),
}

impl Decided {
    /// The verdict bound to this hop's descriptors; `None` when it names a
    /// file the lookup lacks.
    fn plan(&self, found: &Found) -> Option<decision::Plan> {
        match self {
            Decided::Cached(held) => match &**held {
                Reused::Respond(verdict) => verdict.plan(found),
                // Only made from a `Respond` (see `verdict`).
                Reused::Rewrite { .. } => None,
            },
            Decided::Fresh(verdict) => verdict.plan(found),
        }
    }
}

/// Runs `f` where it does not hold up the tasks queued on this worker:
/// `block_in_place` on the multi-threaded runtime (the server's); inline
/// elsewhere (a current-thread runtime cannot hand its tasks over).
fn off_the_workers<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The handler driven in-process, request in, response out (tower-http's
/// `oneshot` style): no sockets, the real default policy, real files.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::transfer::Channel;
    use http_body_util::BodyExt;
    use std::sync::Arc;

    fn build(root: &std::path::Path, extra: &str) -> Arc<App> {
        let mut config: Config = toml::from_str(extra).unwrap();
        config.root = Some(root.to_owned());
        App::from_config(&config).unwrap()
    }

    fn oneshot(app: &App, req: Request<()>) -> (StatusCode, http::HeaderMap, Vec<u8>) {
        let (status, headers, body, _) = oneshot_timed(app, req);
        (status, headers, body)
    }

    /// [`oneshot`], and whether (how long) the policy was called.
    fn oneshot_timed(
        app: &App,
        req: Request<()>,
    ) -> (StatusCode, http::HeaderMap, Vec<u8>, Option<Duration>) {
        let conn = Conn {
            tls: false,
            // No zero-copy link: bodies take the copying (or inline) path.
            channel: Channel { zero_copy: None },
            budget: &app.body_budget,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (res, outcome) = runtime.block_on(handle(app, &app.default, conn, &req));
        let called = outcome.policy_time;
        let (parts, body) = res.into_parts();
        let bytes = runtime.block_on(body.collect()).unwrap().to_bytes();
        (parts.status, parts.headers, bytes.to_vec(), called)
    }

    fn get(path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(path);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn files_ranges_conditionals_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello, world").unwrap();
        let app = build(dir.path(), "");
        let (status, headers, body) = oneshot(&app, get("/a.txt", &[]));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"hello, world");
        assert_eq!(headers["content-length"], "12");
        let etag = headers["etag"].to_str().unwrap().to_owned();

        let (status, headers, body) = oneshot(&app, get("/a.txt", &[("range", "bytes=7-")]));
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(headers["content-range"], "bytes 7-11/12");
        assert_eq!(body, b"world");

        let (status, _, body) = oneshot(&app, get("/a.txt", &[("if-none-match", &etag)]));
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());

        let head = Request::builder()
            .method("HEAD")
            .uri("/a.txt")
            .body(())
            .unwrap();
        let (status, headers, body) = oneshot(&app, head);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-length"], "12");
        assert!(body.is_empty());

        assert_eq!(oneshot(&app, get("/nope", &[])).0, StatusCode::NOT_FOUND);
        assert_eq!(
            oneshot(&app, get("/%2e%2e/etc/passwd", &[])).0,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn the_decision_cache_answers_repeats_and_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "one").unwrap();
        let app = build(dir.path(), "");
        let hits = || {
            stats::get()
                .decision_cache_hits
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        assert_eq!(oneshot(&app, get("/a.txt", &[])).2, b"one");
        let before = hits();
        assert_eq!(oneshot(&app, get("/a.txt", &[])).2, b"one");
        assert!(hits() > before, "a repeat is a hit");
        std::fs::write(dir.path().join("a.txt"), "three").unwrap();
        let (_, headers, body) = oneshot(&app, get("/a.txt", &[]));
        assert_eq!(body, b"three");
        assert_eq!(headers["content-length"], "5");
        // With both caches off, the same answers.
        let app = build(dir.path(), "[cache]\nvalid-ms = 0\ndecisions = 0\n");
        assert_eq!(oneshot(&app, get("/a.txt", &[])).2, b"three");
    }

    /// A rewrite chain (the default policy's `fallback`) is cached hop by
    /// hop: a repeat is answered without entering wasm for either hop, and
    /// each hop is resolved afresh, so a changed target file is seen.
    #[test]
    fn a_rewrite_chain_is_reused_hop_by_hop_and_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "app one").unwrap();
        let app = build(dir.path(), "[policy]\nfallback = \"/index.html\"\n");
        let nav = || get("/app/settings/42", &[("accept", "text/html")]);
        let (status, _, body, called) = oneshot_timed(&app, nav());
        assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"app one"[..]));
        assert!(called.is_some());
        let (status, _, body, called) = oneshot_timed(&app, nav());
        assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"app one"[..]));
        assert_eq!(called, None, "both hops answered from the cache");
        std::fs::write(dir.path().join("index.html"), "app number two").unwrap();
        let (status, headers, body, called) = oneshot_timed(&app, nav());
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"app number two");
        assert_eq!(headers["content-length"], "14");
        assert!(
            called.is_some(),
            "the second hop's entry changed: a new key"
        );
        // A missing asset is not the app.
        assert_eq!(
            oneshot(&app, get("/app/missing.js", &[("accept", "*/*")])).0,
            StatusCode::NOT_FOUND
        );
    }
}
