//! The decision: from a request and what is on disk to a response plan.
//!
//! This module only orchestrates; each rule lives in the module named for it.
//! The order of the steps is what matters here:
//!
//! 1. method (405 / OPTIONS 204), before looking at the path at all;
//! 2. hidden paths (404), then what is on disk (404, directory redirect,
//!    index);
//! 3. for a file: select the representation (`negotiate`), then evaluate the
//!    preconditions against it (`conditional`: 412 / 304), then `If-Range`
//!    and `Range` (206 / 416), else the whole representation (200).
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
use crate::http_date;
use crate::location;
use crate::negotiate::{self, Representation};
use crate::range::{self, Resolution};
use crate::types::{
    Body, Decision, DirectoryEntry, Entry, FileEntry, FullBody, Header, RangedBody, Request,
};

/// The methods a static file server supports.
pub const ALLOW: &str = "GET, HEAD, OPTIONS";

/// Decides the response to `req` given what the host found.
pub fn decide(config: &Config, req: &Request, found: &Entry) -> Decision {
    match req.method.as_str() {
        "GET" | "HEAD" => {}
        // OPTIONS answers for the server (`*`) and for any path alike: the
        // allowed methods are the same everywhere, and answering 204 for a
        // missing path reveals nothing a GET would not.
        "OPTIONS" => return empty(204, vec![Header::new("allow", ALLOW)]),
        // Methods are case-sensitive (RFC 9110 §9.1): `get` is not GET.
        _ => {
            return text(
                config,
                405,
                "Method Not Allowed\n",
                vec![Header::new("allow", ALLOW)],
            )
        }
    }
    if dotfiles::is_hidden(config, &req.path) {
        return not_found(config);
    }
    match found {
        Entry::Missing | Entry::Directory(DirectoryEntry { index: None }) => not_found(config),
        Entry::Directory(DirectoryEntry { index: Some(index) }) if req.path.ends_with('/') => {
            serve(config, req, &index.file, &index.name)
        }
        // Relative links in the index resolve against the directory only with
        // the slash. Without an index there is nothing to redirect to, and
        // 404 at once does not reveal that the directory exists.
        Entry::Directory(DirectoryEntry { index: Some(_) }) => redirect(config, req),
        // `/file.txt/` names a directory that does not exist (POSIX says
        // ENOTDIR); serving the file there would break its relative links.
        Entry::File(_) if req.path.ends_with('/') => not_found(config),
        Entry::File(file) => serve(config, req, file, last_segment(&req.path)),
    }
}

/// Serves a regular file (or a directory's index) named `name`.
fn serve(config: &Config, req: &Request, file: &FileEntry, name: &str) -> Decision {
    let media = content_type::media_type(name, &config.types);
    let compressible = content_type::is_compressible(&media, name, &config.compress_types);
    let otf_eligible = negotiate::on_the_fly_eligible(config, file.meta.size, compressible);
    let vary = negotiate::varies(config, file, otf_eligible);

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

    // What a 304 must repeat from the 200 (RFC 9110 §15.4.5).
    let mut headers = vec![
        Header::new("etag", rep.etag.to_string()),
        Header::new("last-modified", http_date::format(rep.last_modified)),
    ];
    let cache = cache_control::for_file(config, name, &media);
    if !cache.is_empty() {
        headers.push(Header::new("cache-control", cache));
    }
    if vary {
        headers.push(vary_header());
    }

    let validators = Validators {
        etag: &rep.etag,
        last_modified: rep.last_modified,
    };
    match conditional::evaluate(req, validators) {
        Precondition::Proceed => {}
        Precondition::NotModified => return empty(304, headers),
        Precondition::Failed => {
            let extra = if vary { vec![vary_header()] } else { vec![] };
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
fn unsatisfiable(rep: &Representation, vary: bool) -> Decision {
    let mut headers = vec![
        Header::new("content-range", format!("bytes */{}", rep.stored_size())),
        Header::new("accept-ranges", "bytes"),
    ];
    if vary {
        headers.push(vary_header());
    }
    empty(416, headers)
}

/// The directory redirect. 301 rather than 308: only GET and HEAD get here,
/// so preserving the method (308's point) changes nothing, and every client,
/// HTTP/1.0 ones included, understands 301. Like the 200 it leads to, it may
/// be cached: a directory rarely turns into a file.
fn redirect(config: &Config, req: &Request) -> Decision {
    let target = location::directory(&req.path, req.raw_query.as_deref());
    text(
        config,
        301,
        "Moved Permanently\n",
        redirect_headers(config, target),
    )
}

/// A permanent redirect is cacheable by default (RFC 9111 §4.2.2); give it
/// the default lifetime explicitly rather than leave caches to guess.
fn redirect_headers(config: &Config, target: String) -> Vec<Header> {
    let mut headers = vec![Header::new("location", target)];
    if !config.cache_default.is_empty() {
        headers.push(Header::new("cache-control", config.cache_default.clone()));
    }
    headers
}

fn not_found(config: &Config) -> Decision {
    text(config, 404, "Not Found\n", vec![])
}

fn vary_header() -> Header {
    Header::new("vary", "Accept-Encoding")
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
mod tests;
