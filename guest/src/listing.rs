//! The response for a directory listing (`autoindex`): the host's listing
//! (WIT `directory-entry.listing`), hidden entries dropped, rendered by
//! `rules::html` or `rules::json` as an inline body within the host's
//! `max-inline`.
//!
//! * `Content-Type` of the format; `Cache-Control: no-cache` (a listing
//!   changes with the directory and carries no validator to revalidate
//!   with, so every use asks again); `X-Content-Type-Options: nosniff`.
//! * HTML gets `Content-Security-Policy: default-src 'none';
//!   style-src 'unsafe-inline'`: the page runs no script and loads nothing,
//!   so a name that somehow escaped its escaping still could not.
//! * A listing that does not fit even empty (a host with a tiny
//!   `max-inline`) is a `500` saying so, not an empty `200`.

use crate::config::Config;
use crate::rules::{autoindex, html, json, Autoindex, ListingEntry};
use crate::types::{Body, Decision, Header, Listing};

/// The listing of the directory at `dir_path` (ending with `/`).
pub fn respond(config: &Config, dir_path: &str, listing: &Listing) -> Decision {
    let mut entries: Vec<ListingEntry> = listing.entries.iter().map(ListingEntry::from).collect();
    autoindex::retain_listed(config, dir_path, &mut entries);
    let limit = config.limits.max_inline as usize;
    let truncated = listing.truncated;
    let body = match config.rules.autoindex {
        Autoindex::Html => html::render_html(dir_path, &entries, truncated, limit),
        Autoindex::Json => json::render_json(dir_path, &entries, truncated, limit),
        Autoindex::Off => Vec::new(),
    };
    let Some(content_type) = config.rules.autoindex.content_type() else {
        return failed(config, "Internal Server Error: listings are off\n");
    };
    if body.is_empty() {
        return failed(
            config,
            "Internal Server Error: an empty listing does not fit the host's max-inline\n",
        );
    }
    let mut headers = vec![
        Header::new("content-type", content_type),
        Header::new("cache-control", "no-cache"),
        Header::new("x-content-type-options", "nosniff"),
    ];
    if config.rules.autoindex == Autoindex::Html {
        headers.push(Header::new(
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'",
        ));
    }
    Decision {
        status: 200,
        headers,
        body: Body::Inline(body),
    }
}

fn failed(config: &Config, text: &str) -> Decision {
    let fits = u32::try_from(text.len()).is_ok_and(|n| n <= config.limits.max_inline);
    Decision {
        status: 500,
        headers: vec![
            Header::new("content-type", "text/plain; charset=utf-8"),
            Header::new("x-content-type-options", "nosniff"),
        ],
        body: if fits {
            Body::Inline(text.as_bytes().to_vec())
        } else {
            Body::Empty
        },
    }
}
