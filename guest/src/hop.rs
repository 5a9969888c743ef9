//! Internal rewrites (WIT `rewrite`, `hop`): what a hop is for, carried from
//! one `decide` call to the next in the rewrite's `reason`.
//!
//! The policy keeps no state between calls (instances are shared and
//! retired at will, decisions are cached), so a rewrite says in its reason
//! what the next call must do, and the host hands the reason back untouched
//! in `hop.reason`. The reasons are short, readable in the host's log, and
//! parsed back here:
//!
//! | reason | asked by | the next call |
//! |---|---|---|
//! | `clean-urls` | a missing `/about` (`clean-urls`) | serves `/about.html`; if missing too, may still take the `fallback` |
//! | `fallback` | a missing navigation (`fallback`) | serves the app's file, with `Vary: Accept` |
//! | `redirects line N` | a `200` rule of `redirects` | serves the target |
//! | `error-page S` | a `S` answer with an `error-pages` page, or a `404` rule (`error-page 404 (redirects line N)`) | serves the page's bytes with status `S`, never rewrites again |
//!
//! So the default policy's chains are short: at most three rewrites
//! (`clean-urls`, then `fallback`, then `error-page 404`), under the host's
//! `MAX_HOPS`. Redirect rules and the clean-URL redirect apply on the first
//! call only (Netlify's rules are one pass), and a rewrite never names the
//! path being decided or the original one: the policy cannot loop.

use crate::types::{Outcome, Request, Rewrite};

/// Most rewrites the host follows for one request (WIT "Rewrites").
pub const MAX_HOPS: u8 = 4;

pub const CLEAN_URLS: &str = "clean-urls";
pub const FALLBACK: &str = "fallback";
const ERROR_PAGE: &str = "error-page ";

/// What the current `decide` call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The client's request itself (no hop).
    First,
    /// `/about` → `/about.html`.
    CleanUrls,
    /// A missing navigation → the app's file.
    Fallback,
    /// A `200` redirect rule's target.
    Rewrite,
    /// The page for an error: its bytes, with this status (400-599).
    ErrorPage(u16),
}

impl Purpose {
    /// The purpose of the call deciding `req`.
    pub fn of(req: &Request) -> Purpose {
        let Some(hop) = &req.hop else {
            return Purpose::First;
        };
        let reason = hop.reason.as_str();
        if reason == CLEAN_URLS {
            return Purpose::CleanUrls;
        }
        if reason == FALLBACK {
            return Purpose::Fallback;
        }
        if let Some(rest) = reason.strip_prefix(ERROR_PAGE) {
            let whole = rest.len() == 3 || rest.get(3..).is_some_and(|d| d.starts_with(' '));
            let digits = rest
                .get(..3)
                .filter(|d| whole && d.bytes().all(|b| b.is_ascii_digit()));
            if let Some(status) = digits.and_then(|d| d.parse::<u16>().ok()) {
                if (400..=599).contains(&status) {
                    return Purpose::ErrorPage(status);
                }
            }
        }
        // Any other reason (a 200 rule's, or one this policy never gives)
        // serves the path as it is.
        Purpose::Rewrite
    }
}

/// The path the client asked for: `hop.original-path` after a rewrite.
pub fn original_path(req: &Request) -> &str {
    req.hop
        .as_ref()
        .map_or(req.path.as_str(), |h| h.original_path.as_str())
}

/// The reason of a rewrite to the page for `status`; `detail`, if any, is
/// added in parentheses for the log.
pub fn error_page_reason(status: u16, detail: Option<&str>) -> String {
    match detail {
        Some(d) => format!("{ERROR_PAGE}{status} ({d})"),
        None => format!("{ERROR_PAGE}{status}"),
    }
}

/// A rewrite of `req` to `path`, or `None` when it could loop: `path` is
/// the one being decided or the client's, or this call is the host's last
/// hop.
pub fn rewrite(req: &Request, path: &str, reason: String) -> Option<Outcome> {
    let count = req.hop.as_ref().map_or(0, |h| h.count);
    if path == req.path || path == original_path(req) || count >= MAX_HOPS {
        return None;
    }
    Some(Outcome::Rewrite(Rewrite {
        path: path.to_owned(),
        reason,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Hop, HttpVersion};

    fn req(path: &str, hop: Option<(&str, u8, &str)>) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            raw_query: None,
            headers: vec![],
            tls: false,
            version: HttpVersion::Http11,
            hop: hop.map(|(original, count, reason)| Hop {
                original_path: original.into(),
                count,
                reason: reason.into(),
            }),
        }
    }

    #[test]
    fn reasons_round_trip() {
        let of = |reason: &str| Purpose::of(&req("/p", Some(("/o", 1, reason))));
        assert_eq!(Purpose::of(&req("/p", None)), Purpose::First);
        assert_eq!(of(CLEAN_URLS), Purpose::CleanUrls);
        assert_eq!(of(FALLBACK), Purpose::Fallback);
        assert_eq!(of("redirects line 3"), Purpose::Rewrite);
        assert_eq!(of(&error_page_reason(404, None)), Purpose::ErrorPage(404));
        assert_eq!(
            of(&error_page_reason(404, Some("redirects line 9"))),
            Purpose::ErrorPage(404)
        );
        assert_eq!(of(&error_page_reason(503, None)), Purpose::ErrorPage(503));
        for other in [
            "",
            "error-page 200",
            "error-page 4040",
            "error-page 40",
            "error-page x",
            "error-page é00",
            "Fallback",
        ] {
            assert_eq!(of(other), Purpose::Rewrite, "{other:?}");
        }
        // Reasons fit the host's 256 bytes.
        assert!(error_page_reason(404, Some("redirects line 10000")).len() < 256);
    }

    #[test]
    fn rewrites_never_loop() {
        let first = req("/a", None);
        assert!(matches!(
            rewrite(&first, "/b", "x".into()),
            Some(Outcome::Rewrite(Rewrite { ref path, .. })) if path == "/b"
        ));
        assert!(rewrite(&first, "/a", "x".into()).is_none(), "to itself");
        let hop = req("/b", Some(("/a", 1, "x")));
        assert!(
            rewrite(&hop, "/b", "x".into()).is_none(),
            "to the path decided"
        );
        assert!(
            rewrite(&hop, "/a", "x".into()).is_none(),
            "back to the original"
        );
        assert!(rewrite(&hop, "/c", "x".into()).is_some());
        let last = req("/b", Some(("/a", MAX_HOPS, "x")));
        assert!(
            rewrite(&last, "/c", "x".into()).is_none(),
            "the host's last hop"
        );
        assert_eq!(original_path(&hop), "/a");
        assert_eq!(original_path(&first), "/a");
    }
}
