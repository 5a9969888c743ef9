//! `fallback`: single-page apps. A missing path is answered with one file
//! (status 200), so that client-side routes (`/users/42`) load the app, which
//! then renders the route.
//!
//! Only for **navigations**: a request whose `Accept` lists `text/html`
//! (with a non-zero weight), as browsers send when following a link or
//! typing an address, and whose last path segment has no file extension. A
//! missing `/app.js`, `/logo.png` or `/api/data.json`, or an `fetch()` with
//! `Accept: */*`, keeps its real 404: answering those with the app's HTML
//! would break scripts and caches in confusing ways (a script "loaded"
//! successfully that is HTML). `*/*` alone is not a navigation: every client
//! sends it. The fallback is for what does not exist: an existing file or
//! directory is served as usual, so the policy asks only when the path is
//! missing.

use super::file_path;
use crate::accept_encoding::parse_qvalue;
use crate::config;
use crate::content_type::extension;
use crate::fields::trim_ows;
use crate::types::SettingValue;

/// Parses `fallback`: the path of the file to serve, as on disk (not
/// URL-encoded), e.g. `/index.html`; empty for none (the default).
pub fn parse(name: &str, value: &SettingValue) -> Result<Option<String>, String> {
    let path = config::text(name, value)?;
    if path.is_empty() {
        return Ok(None);
    }
    file_path(path).map_err(|e| format!("{name}: {e}"))?;
    Ok(Some(path.to_owned()))
}

/// Whether a request for the missing `path`, with this `Accept` field (the
/// values of every `Accept` line, joined with `, `), gets the fallback.
pub fn wants_fallback(path: &str, accept: Option<&str>) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    extension(last).is_none() && accept.is_some_and(accepts_html)
}

/// Whether `text/html` is acceptable: listed (any case, any parameters)
/// with a weight above 0. A malformed weight makes the element count as not
/// listed.
fn accepts_html(accept: &str) -> bool {
    accept.split(',').any(|element| {
        let mut parts = element.split(';');
        let media = trim_ows(parts.next().unwrap_or(""));
        if !media.eq_ignore_ascii_case("text/html") {
            return false;
        }
        for param in parts {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            if trim_ows(key).eq_ignore_ascii_case("q") {
                return parse_qvalue(trim_ows(value)).is_some_and(|q| q > 0);
            }
        }
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BROWSER: &str =
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

    #[test]
    fn navigations_to_routes_get_the_fallback() {
        for path in [
            "/",
            "/users/42",
            "/users/42/",
            "/about",
            "/a/.hidden",
            "/v1.",
        ] {
            assert!(wants_fallback(path, Some(BROWSER)), "{path}");
        }
        for accept in [
            "text/html",
            "TEXT/HTML",
            "text/html;q=0.1",
            "text/html; charset=utf-8; q=1",
            "application/json, text/html;q=0.5",
            " text/html ",
            "text/html;level=1",
        ] {
            assert!(wants_fallback("/route", Some(accept)), "{accept}");
        }
    }

    #[test]
    fn files_keep_their_404() {
        for path in [
            "/app.js",
            "/logo.png",
            "/api/data.json",
            "/a/b.c/d.txt",
            "/v1.2",
        ] {
            assert!(!wants_fallback(path, Some(BROWSER)), "{path}");
        }
    }

    #[test]
    fn other_requests_keep_their_404() {
        for accept in [
            None,
            Some(""),
            Some("*/*"),
            Some("text/*"),
            Some("application/json"),
            Some("text/html;q=0"),
            Some("text/html;q=0.000"),
            Some("text/html;q=2"),
            Some("text/htm"),
            Some("text/html-x"),
            Some("application/xhtml+xml"),
        ] {
            assert!(!wants_fallback("/route", accept), "{accept:?}");
        }
    }

    #[test]
    fn the_setting() {
        let parse = |s: &str| parse("fallback", &SettingValue::Text(s.into()));
        assert_eq!(parse("/index.html"), Ok(Some("/index.html".into())));
        assert_eq!(
            parse(" /app/index.html "),
            Ok(Some("/app/index.html".into()))
        );
        assert_eq!(parse(""), Ok(None));
        assert_eq!(
            parse("index.html").unwrap_err(),
            "fallback: \"index.html\" is not an absolute path (starting with /)"
        );
        assert!(parse("/../x.html").unwrap_err().contains("not normalized"));
        assert!(parse("/app/").unwrap_err().contains("names a directory"));
        assert!(parse("/a\\b").unwrap_err().contains("backslash"));
        assert_eq!(
            super::parse("fallback", &SettingValue::Boolean(true)).unwrap_err(),
            "fallback: expected a string, got true"
        );
    }

    proptest! {
        #[test]
        fn never_panics(path in "/[^\u{0}]{0,20}", accept in any::<String>()) {
            let _ = wants_fallback(&path, Some(&accept));
        }
    }
}
