//! The decision: from a request and what is on disk to a response plan, or
//! to a rewrite (WIT `outcome`).
//!
//! This module only orchestrates; each rule lives in the module named for it.
//! The order of the steps is what matters here:
//!
//! 1. method (405 / OPTIONS 204), before looking at the path at all;
//! 2. hidden paths (404: `dotfiles`), so no rule can reach them;
//! 3. on the first call only (no hop): `redirects` rules, first match wins
//!    (a redirect, or a rewrite: `200`, or `404` with the target as its page);
//! 4. what is on disk: a file (on the first call, `clean-urls` redirects
//!    `/about.html` to `/about`), a directory (its index, the redirect to
//!    `/dir/`, or its listing with `autoindex`), or nothing servable: then,
//!    as rewrites, `clean-urls` (`/about.html`) on the first call, `fallback`
//!    for a navigation, and last the `error-pages` page of the 404;
//! 5. for a file: select the representation (`negotiate`), then evaluate the
//!    preconditions against it (`conditional`: 412 / 304), then `If-Range`
//!    and `Range` (206 / 416), else the whole representation (200);
//! 6. `headers` rules, by the path the client asked for, on every response.
//!
//! A call after an `error-page` rewrite (`hop::Purpose::ErrorPage`) only
//! serves the page's bytes with the error's status (no 304 or 206 of an
//! error body). `hop` says what each rewrite is for and why none can loop.
//!
//! Preconditions are only evaluated when a file is served: RFC 9110 §13.2.1
//! has them ignored when the response would otherwise be an error or a
//! redirect.

use crate::accept_encoding::AcceptEncoding;
use crate::cache_control;
use crate::conditional::{self, Precondition, Validators};
use crate::config::Config;
use crate::content_type;
use crate::dotfiles;
use crate::fields::{singleton, Field, Singleton};
use crate::header_rules;
use crate::hop::{self, Purpose};
use crate::http_date;
use crate::listing;
use crate::location;
use crate::negotiate::{self, Representation};
use crate::range::{self, Resolution};
use crate::rules::{clean_urls, fallback, Action, Autoindex, RedirectMatch};
use crate::types::{
    Body, Decision, DirectoryEntry, Entry, FileEntry, FullBody, Header, Outcome, RangedBody,
    Request, Source,
};

/// The methods a static file server supports.
pub const ALLOW: &str = "GET, HEAD, OPTIONS";

/// Decides the response to `req` given what the host found: a decision, or
/// a rewrite to decide again for another path.
pub fn decide(config: &Config, req: &Request, found: &Entry) -> Outcome {
    let outcome = match Purpose::of(req) {
        Purpose::ErrorPage(status) => Outcome::Respond(error_page(config, req, found, status)),
        purpose => route(config, req, found, purpose),
    };
    match outcome {
        Outcome::Respond(d) => {
            Outcome::Respond(header_rules::apply(config, hop::original_path(req), d))
        }
        rewrite => rewrite,
    }
}

/// Every step of `decide` but the last, for a call that is not an error
/// page's.
fn route(config: &Config, req: &Request, found: &Entry, purpose: Purpose) -> Outcome {
    match req.method.as_str() {
        "GET" | "HEAD" => {}
        // OPTIONS answers for the server (`*`) and for any path alike: the
        // allowed methods are the same everywhere, and answering 204 for a
        // missing path reveals nothing a GET would not.
        "OPTIONS" => return respond(empty(204, vec![Header::new("allow", ALLOW)])),
        // Methods are case-sensitive (RFC 9110 §9.1): `get` is not GET.
        _ => return error(config, req, 405),
    }
    if dotfiles::is_hidden(config, &req.path) {
        return error(config, req, 404);
    }
    let first = purpose == Purpose::First;
    if first && !config.rules.redirects.is_empty() {
        let exists = servable(config, req, found);
        if let Some(m) = config
            .rules
            .redirects
            .find(&req.path, req.raw_query.as_deref(), exists)
        {
            if let Some(outcome) = redirect_rule(config, req, found, m) {
                return outcome;
            }
        }
    }
    // Relative links in an index or a listing resolve against the directory
    // only with the slash; after a rewrite they resolve against the client's
    // address, not this path, so the slash no longer matters for an index.
    let slash = req.path.ends_with('/');
    let listings = config.rules.autoindex != Autoindex::Off;
    match found {
        Entry::Directory(DirectoryEntry {
            index: Some(index), ..
        }) if slash || !first => respond(serve(config, req, &index.file, &index.name, purpose)),
        Entry::Directory(DirectoryEntry { index: Some(_), .. }) => respond(redirect(config, req)),
        Entry::Directory(DirectoryEntry {
            index: None,
            listing: Some(list),
        }) if listings && slash => respond(listing::respond(config, &req.path, list)),
        Entry::Directory(DirectoryEntry {
            index: None,
            listing: Some(_),
        }) if listings && first => respond(redirect(config, req)),
        // Without an index or a listing there is nothing to redirect to, and
        // 404 at once does not reveal that the directory exists.
        Entry::Missing | Entry::Directory(_) => missing(config, req, purpose),
        // `/file.txt/` names a directory that does not exist (POSIX says
        // ENOTDIR); serving the file there would break its relative links.
        Entry::File(_) if slash => missing(config, req, purpose),
        Entry::File(file) => {
            if first && config.rules.clean_urls {
                let query = req.raw_query.as_deref();
                if let Some(to) = clean_urls::redirect(&req.path, query, &config.index_names) {
                    return respond(redirect_to(config, 301, to));
                }
            }
            respond(serve(config, req, file, last_segment(&req.path), purpose))
        }
    }
}

/// Whether the policy would serve something at the request path (a file, a
/// directory's index or its listing): `redirects` rules that are not forced
/// only apply when it would not (Netlify's shadowing).
fn servable(config: &Config, req: &Request, found: &Entry) -> bool {
    match found {
        Entry::Missing => false,
        Entry::File(_) => !req.path.ends_with('/'),
        Entry::Directory(DirectoryEntry { index: Some(_), .. }) => true,
        Entry::Directory(DirectoryEntry { listing, .. }) => {
            listing.is_some() && config.rules.autoindex != Autoindex::Off
        }
    }
}

/// The outcome of a matching `redirects` rule; `None` for a `200` rewrite
/// to the very path being decided, which is decided as it is.
fn redirect_rule(
    config: &Config,
    req: &Request,
    found: &Entry,
    m: RedirectMatch,
) -> Option<Outcome> {
    let line = m.line;
    match m.action {
        Action::Redirect { status, location } => {
            Some(respond(redirect_to(config, status, location)))
        }
        Action::Rewrite { status: 200, path } => {
            hop::rewrite(req, &path, format!("redirects line {line}"))
        }
        Action::Rewrite { status, path } => {
            let reason = hop::error_page_reason(status, Some(&format!("redirects line {line}")));
            Some(
                hop::rewrite(req, &path, reason)
                    .unwrap_or_else(|| respond(error_page(config, req, found, status))),
            )
        }
    }
}

/// Nothing servable at the request path: the rewrites that may still find
/// something (`clean-urls` on the first call, then `fallback` for a
/// navigation), else a 404.
fn missing(config: &Config, req: &Request, purpose: Purpose) -> Outcome {
    if purpose == Purpose::First && config.rules.clean_urls {
        if let Some(candidate) = clean_urls::candidate(&req.path) {
            if let Some(outcome) = hop::rewrite(req, &candidate, hop::CLEAN_URLS.to_owned()) {
                return outcome;
            }
        }
    }
    if let (Purpose::First | Purpose::CleanUrls, Some(app)) = (purpose, &config.rules.fallback) {
        // The client's address decides: `/users/42` is a route even when its
        // clean-URL candidate `/users/42.html` was tried first.
        let accept = req.header(Field::Accept);
        if fallback::wants_fallback(hop::original_path(req), accept.as_deref()) {
            if let Some(outcome) = hop::rewrite(req, app, hop::FALLBACK.to_owned()) {
                return outcome;
            }
        }
    }
    error(config, req, 404)
}

/// An error the policy answers itself (404, 405): the `error-pages` page
/// for it if there is one (a rewrite), else the short text.
fn error(config: &Config, req: &Request, status: u16) -> Outcome {
    if let Some(page) = config.rules.error_pages.get(status) {
        if let Some(outcome) = hop::rewrite(req, page, hop::error_page_reason(status, None)) {
            return outcome;
        }
    }
    respond(error_text(config, status))
}

/// The fields every answer with an error `status` carries: `Allow` for a
/// 405, and `Vary: Accept` for a 404 when `fallback` could have answered it
/// with the app had `Accept` been a browser's.
fn error_headers(config: &Config, status: u16) -> Vec<Header> {
    match status {
        405 => vec![Header::new("allow", ALLOW)],
        404 if config.rules.fallback.is_some() => vec![Header::new("vary", "Accept")],
        _ => vec![],
    }
}

/// The policy's own short text for an error `status`.
fn error_text(config: &Config, status: u16) -> Decision {
    let phrase = match status {
        404 => "Not Found\n",
        405 => "Method Not Allowed\n",
        410 => "Gone\n",
        _ if status >= 500 => "Server Error\n",
        _ => "Client Error\n",
    };
    text(config, status, phrase, error_headers(config, status))
}

/// The call after an `error-page` rewrite: the page's bytes with the error's
/// `status`, whatever the method, and without validators or ranges (a 304 or
/// 206 of an error body would be answered for the wrong resource). A page
/// that is missing (or hidden) gives the policy's own text.
fn error_page(config: &Config, req: &Request, found: &Entry, status: u16) -> Decision {
    let page = match found {
        _ if dotfiles::is_hidden(config, &req.path) => None,
        Entry::File(file) if !req.path.ends_with('/') => Some((file, last_segment(&req.path))),
        Entry::Directory(DirectoryEntry {
            index: Some(index), ..
        }) => Some((&index.file, index.name.as_str())),
        _ => None,
    };
    let Some((_, name)) = page else {
        return error_text(config, status);
    };
    let media = content_type::media_type(name, &config.types);
    let mut headers = vec![Header::new(
        "content-type",
        content_type::header_value(&media, &config.charset),
    )];
    headers.extend(error_headers(config, status));
    decision(
        status,
        headers,
        Body::Full(FullBody {
            source: Source::Original,
            compress: None,
        }),
    )
}

fn respond(d: Decision) -> Outcome {
    Outcome::Respond(d)
}

/// Serves a regular file (or a directory's index) named `name`.
fn serve(
    config: &Config,
    req: &Request,
    file: &FileEntry,
    name: &str,
    purpose: Purpose,
) -> Decision {
    let media = content_type::media_type(name, &config.types);
    let compressible = content_type::is_compressible(&media, name, &config.compress_types);
    let otf_eligible = negotiate::on_the_fly_eligible(config, file.meta.size, compressible);
    // The fallback's answer depends on `Accept` (a navigation gets the app,
    // anything else a 404) as well as on `Accept-Encoding`.
    let vary = vary_value(
        negotiate::varies(config, file, otf_eligible),
        purpose == Purpose::Fallback,
    );

    // RFC 9110 §14.2: only GET has range semantics; HEAD ignores `Range` and
    // gets what a plain GET would. A `Range` that parses (bytes unit, valid
    // syntax, at most `max-ranges` specs) selects a representation that can be
    // ranged: a sibling or the stored file, never on-the-fly output, whose
    // length is unknown in advance and whose bytes are not ours to promise.
    // That choice stands even if the ranges are then not honoured (If-Range
    // mismatch, excessive overlap, 416), so that the validators the client
    // sees always belong to the bytes it gets. A `Range` rejected while
    // parsing (malformed, other unit, too many specs, sent twice) is treated
    // as absent.
    let ranges = match singleton(req, Field::Range) {
        Singleton::One(value) if req.method == "GET" && config.max_ranges > 0 => {
            range::parse(value, config.max_ranges).ok()
        }
        _ => None,
    };
    let accept = req
        .header(Field::AcceptEncoding)
        .map(|v| AcceptEncoding::parse(&v));
    let rep = negotiate::select(
        config,
        file,
        accept.as_ref(),
        otf_eligible,
        ranges.is_none(),
    );

    // What a 304 must repeat from the 200 (RFC 9110 §15.4.5). Room for
    // every field a 200 adds below (content-type, accept-ranges), so the
    // list is allocated once.
    let mut headers = Vec::with_capacity(6);
    headers.push(Header::new("etag", rep.etag.to_field()));
    headers.push(Header::new(
        "last-modified",
        http_date::format(rep.last_modified),
    ));
    let cache = cache_control::for_file(config, name, &media);
    if !cache.is_empty() {
        headers.push(Header::new("cache-control", cache));
    }
    if let Some(vary) = vary {
        headers.push(Header::new("vary", vary));
    }

    let validators = Validators {
        etag: &rep.etag,
        last_modified: rep.last_modified,
    };
    match conditional::evaluate(req, validators) {
        Precondition::Proceed => {}
        Precondition::NotModified => return empty(304, headers),
        Precondition::Failed => {
            let extra = vary.map(|v| Header::new("vary", v)).into_iter().collect();
            return text(config, 412, "Precondition Failed\n", extra);
        }
    }

    headers.insert(
        0,
        Header::new(
            "content-type",
            content_type::header_value(&media, &config.charset),
        ),
    );
    // On-the-fly output gets no Accept-Ranges: "bytes" would invite a client
    // to resume it with ranges we would take from other bytes, and "none"
    // would be false for the resource, whose stored representations can be
    // ranged. With `max-ranges = 0` nothing can.
    match (&rep.compress, config.max_ranges) {
        (Some(_), _) => {}
        (None, 0) => headers.push(Header::new("accept-ranges", "none")),
        (None, _) => headers.push(Header::new("accept-ranges", "bytes")),
    }

    if let Some(specs) = ranges {
        if conditional::if_range_allows(req, validators) {
            match range::resolve(&specs, rep.stored_size()) {
                Resolution::Satisfiable(ranges) => {
                    return decision(
                        206,
                        headers,
                        Body::Ranges(RangedBody {
                            source: rep.source,
                            ranges,
                        }),
                    );
                }
                Resolution::Unsatisfiable => return unsatisfiable(&rep, vary),
                Resolution::Ignored(_) => {}
            }
        }
    }
    decision(
        200,
        headers,
        Body::Full(FullBody {
            source: rep.source,
            compress: rep.compress,
        }),
    )
}

/// 416 with the one `Content-Range` a policy may send: the length of the
/// representation the ranges were resolved against. The body must be empty.
fn unsatisfiable(rep: &Representation, vary: Option<&str>) -> Decision {
    let mut headers = vec![
        Header::new("content-range", format!("bytes */{}", rep.stored_size())),
        Header::new("accept-ranges", "bytes"),
    ];
    if let Some(vary) = vary {
        headers.push(Header::new("vary", vary));
    }
    empty(416, headers)
}

/// The directory redirect. 301 rather than 308: only GET and HEAD get here,
/// so preserving the method (308's point) changes nothing, and every client,
/// HTTP/1.0 ones included, understands 301. Like the 200 it leads to, it may
/// be cached: a directory rarely turns into a file.
fn redirect(config: &Config, req: &Request) -> Decision {
    let target = location::directory(&req.path, req.raw_query.as_deref());
    redirect_to(config, 301, target)
}

/// A redirect to `location` (a valid field value). A permanent one (301,
/// 308) is cacheable by default (RFC 9111 §4.2.2): give it the default
/// lifetime explicitly rather than leave caches to guess. The temporary ones
/// are not cacheable without explicit freshness, and get none.
fn redirect_to(config: &Config, status: u16, location: String) -> Decision {
    let mut headers = vec![Header::new("location", location)];
    let permanent = matches!(status, 301 | 308);
    if permanent && !config.cache_default.is_empty() {
        headers.push(Header::new("cache-control", config.cache_default.clone()));
    }
    let phrase = match status {
        301 => "Moved Permanently\n",
        302 => "Found\n",
        303 => "See Other\n",
        307 => "Temporary Redirect\n",
        _ => "Permanent Redirect\n",
    };
    text(config, status, phrase, headers)
}

/// `Vary` for a file response: `Accept-Encoding` when the representation
/// was negotiated, `Accept` when the fallback answered.
fn vary_value(encoding: bool, accept: bool) -> Option<&'static str> {
    match (encoding, accept) {
        (true, true) => Some("Accept-Encoding, Accept"),
        (true, false) => Some("Accept-Encoding"),
        (false, true) => Some("Accept"),
        (false, false) => None,
    }
}

/// The last segment of a request path (empty for `/`).
fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A short plain-text response made by the policy itself. `nosniff` stops
/// browsers from rendering it as HTML, whatever text ends up in it. A host
/// that allows less inline body than the text (`host-limits.max-inline`)
/// gets the status and headers with an empty body.
fn text(config: &Config, status: u16, text: &str, mut headers: Vec<Header>) -> Decision {
    headers.push(Header::new("content-type", "text/plain; charset=utf-8"));
    headers.push(Header::new("x-content-type-options", "nosniff"));
    let fits = u32::try_from(text.len()).is_ok_and(|n| n <= config.limits.max_inline);
    let body = if fits {
        Body::Inline(text.as_bytes().to_vec())
    } else {
        Body::Empty
    };
    decision(status, headers, body)
}

fn empty(status: u16, headers: Vec<Header>) -> Decision {
    decision(status, headers, Body::Empty)
}

fn decision(status: u16, headers: Vec<Header>, body: Body) -> Decision {
    Decision {
        status,
        headers,
        body,
    }
}

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;
